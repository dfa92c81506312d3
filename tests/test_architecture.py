"""The docs keep up with the code: every module is in docs/architecture.md, and no link or module
path in README.md and docs/*.md points at a file that is not there (a move leaves stale paths).

Pure: no broker, no git; the folders are walked as they are on disk.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "streamstore")
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# [text](target) and [text](target "title"); images too. Not reference-style links.
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Code spans and fenced blocks can hold text that only looks like a link.
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
# A repository path to a Python or TOML file inside a code span, e.g. `bench/core/runner.py`.
_PATH_IN_CODE = re.compile(r"`((?:bench|streamstore|tests|scenarios)/[\w./-]+\.(?:py|toml))(?:::[\w\[\]-]+)?`")


def _modules() -> list[str]:
    paths = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                paths.append(path.relative_to(ROOT).as_posix())
    return sorted(paths)


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _links(text: str) -> list[str]:
    text = _CODE_SPAN.sub("", _FENCE.sub("", text))
    return _LINK.findall(text)


def test_every_module_is_in_the_architecture_doc():
    modules = _modules()
    assert modules, f"no .py files found under {PACKAGES} in {ROOT}"
    documented = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [path for path in modules if f"`{path}`" not in documented]
    assert not missing, "docs/architecture.md does not mention (as `path`): " + ", ".join(missing)


def test_relative_links_in_the_docs_point_to_existing_files():
    broken = []
    for doc in _markdown_files():
        for target in _links(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
                continue  # http:, mailto: ... and links within the same page
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing files: " + "; ".join(broken)


def test_module_paths_named_in_the_docs_exist():
    stale = []
    for doc in _markdown_files():
        text = _FENCE.sub("", doc.read_text(encoding="utf-8"))
        for path in _PATH_IN_CODE.findall(text):
            if not (ROOT / path).exists():
                stale.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not stale, "paths to missing files: " + "; ".join(stale)


def test_the_link_finder_sees_links_and_skips_code():
    text = "see [a](docs/a.md) and [b](b.md#part)\n`[c](c.md)`\n```\n[d](d.md)\n```\n"
    assert _links(text) == ["docs/a.md", "b.md#part"]


def test_each_command_is_found_by_its_name_and_imports_only_itself():
    """`python -m bench X` imports only X's module, found by name (x-y in x_y.py): each module's
    NAME must be its file's name, and a command's start must not pay for the other commands."""
    import importlib
    import subprocess
    import sys

    from bench.cli import command_module_names

    for command, module_name in command_module_names().items():
        assert importlib.import_module(f"bench.commands.{module_name}").NAME == command
    # A command that fails at once on its input (exit 2), then what the process had imported.
    probe = "import sys; from bench.cli import main; print(main(['report', '/nonexistent']), *sys.modules)"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    code, *imported = completed.stdout.split()
    assert code == "2" and "bench.commands.report" in imported, completed.stdout + completed.stderr
    assert not set(imported) & {"bench.commands.run", "bench.commands.ab", "bench.commands.capacity"}, imported
