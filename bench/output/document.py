"""A report as a list of blocks, rendered twice: to Markdown (images linked) and to HTML (images
embedded as base64, so the file can be mailed or uploaded as one artifact).

A report is built from sections (one list per kind of report): each has a title and a builder
of its body; a section with no body is left out, and the contents line at the top links every
section that is there. Adding a panel to a report is adding one Section to its list.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results.store import write_text_atomic


@dataclass(frozen=True)
class Block:
    kind: str  # "h1" | "h2" | "h3" | "p" | "ul" | "table" | "img" | "nav" | "summary"
    text: str = ""
    items: tuple[str, ...] = ()
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def heading(text: str, level: int = 2) -> Block:
    return Block(f"h{level}", text)


def paragraph(text: str) -> Block:
    return Block("p", text)


def bullet_list(items: Sequence[str]) -> Block:
    return Block("ul", items=tuple(items))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> Block:
    return Block("table", header=tuple(header), rows=tuple(tuple(r) for r in rows))


def image(file_name: str) -> Block:
    return Block("img", file_name)


def summary(lines: Sequence[str]) -> Block:
    """The lines a reader needs first, boxed (class "summary" in HTML)."""
    return Block("summary", items=tuple(lines))


def anchor(title: str) -> str:
    """The id of a heading, as GitHub makes it from the heading's text (so Markdown links work too)."""
    return re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-")


@dataclass(frozen=True)
class Section:
    title: str
    build: Callable[..., list[Block]]  # (the report's inputs) -> body blocks; [] leaves the section out


def assemble(title: str, intro: Sequence[Block], sections: Sequence[Section], *inputs: Any) -> list[Block]:
    """The page: its title, the intro blocks, a contents line linking the sections, then each
    section that has a body under its heading."""
    bodies = [(section, section.build(*inputs)) for section in sections]
    present = [(section, body) for section, body in bodies if body]
    blocks = [heading(title, 1), *intro, Block("nav", items=tuple(section.title for section, _ in present))]
    for section, body in present:
        blocks += [heading(section.title), *body]
    return blocks


# ---------------------------------------------------------------------------------------------
# Rendering


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            out.append("#" * int(block.kind[1]) + " " + block.text)
        elif block.kind == "p":
            out.append(block.text)
        elif block.kind in ("ul", "summary"):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif block.kind == "nav":
            out.append("Contents: " + " · ".join(f"[{item}](#{anchor(item)})" for item in block.items))
        elif block.kind == "table":
            lines = [_markdown_row(block.header), "|" + "---|" * len(block.header)]
            lines += [_markdown_row(row) for row in block.rows]
            out.append("\n".join(lines))
        elif block.kind == "img":
            out.append(f"![{Path(block.text).stem.replace('_', ' ')}]({block.text})")
    return "\n\n".join(out) + "\n"


_HTML_STYLE = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
div.summary{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em}
div.summary ul{margin:.2em 0;padding-left:1.2em}nav{margin:.8em 0;line-height:1.8}nav a{margin-right:.9em}
"""


def to_html(blocks: Sequence[Block], title: str, image_folder: Path) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_HTML_STYLE}</style></head><body>"]
    for block in blocks:
        if block.kind == "h1":
            out.append(f"<h1>{html.escape(block.text)}</h1>")
        elif block.kind in ("h2", "h3"):
            out.append(f"<{block.kind} id='{anchor(block.text)}'>{html.escape(block.text)}</{block.kind}>")
        elif block.kind == "p":
            out.append(f"<p>{html.escape(block.text)}</p>")
        elif block.kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block.items) + "</ul>")
        elif block.kind == "summary":
            out.append("<div class='summary'><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block.items)
                       + "</ul></div>")
        elif block.kind == "nav":
            out.append("<nav>" + "".join(f"<a href='#{anchor(i)}'>{html.escape(i)}</a>" for i in block.items) + "</nav>")
        elif block.kind == "table":
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif block.kind == "img":
            data = base64.b64encode((image_folder / block.text).read_bytes()).decode("ascii")
            out.append(f"<p><img alt='{html.escape(block.text)}' src='data:image/png;base64,{data}'></p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_documents(folder: Path, blocks: Sequence[Block], title: str, stem: str = "report") -> list[Path]:
    markdown, page = folder / f"{stem}.md", folder / f"{stem}.html"
    write_text_atomic(markdown, to_markdown(blocks))
    write_text_atomic(page, to_html(blocks, title, folder))
    return [markdown, page]
