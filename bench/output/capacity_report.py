"""report.md and report.html of a capacity search (from capacity.json alone, so `bench report`
redraws them), and the overlay of several searches for `bench compare`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.output.document import Block, bullet_list, heading, image, paragraph, table, write_documents
from bench.results.formatting import describe_environment, describe_scenario, format_us, format_value
from bench.results.metrics import METRICS, latency_title
from bench.results.store import load_result
from streamstore.errors import UsageError

PLOT_FILE = "capacity.png"


def step_table_block(document: Mapping[str, Any]) -> Block:
    """Every step, from capacity.json (the same cells the console prints)."""
    steps = document.get("steps") or []
    kind = document.get("latency_kind") or "end_to_end"
    header = ("step", "purpose", "asked msg/s", "producers", "achieved msg/s", f"{kind} p50", "p99", "p99.9",
              "lag slope msg/s", "verdict", "why")
    rows = []
    for row in steps:
        summary = (row.get("latency_us") or {}).get(kind) or {}
        slope = row.get("lag_slope_per_s")
        why = "; ".join(row.get("reasons") or []) if row["verdict"] != "pass" else ""
        if row.get("retried_with_producers"):
            why += f" (retried with {row['retried_with_producers']} producers)"
        rows.append((str(row["index"]), row["purpose"], f"{row['rate']:,.0f}", str(row["producers"]),
                     format_value(row.get("achieved_per_s"), "msg/s"), format_us(summary.get("p50")),
                     format_us(summary.get("p99")), format_us(summary.get("p99_9")),
                     f"{slope:+,.1f}" if slope is not None else "-", row["verdict"], why))
    return table(header, rows)


def capacity_report_blocks(document: Mapping[str, Any], plot_files: Sequence[str]) -> list[Block]:
    answer = document.get("answer") or {}
    search = document.get("search") or {}
    blocks = [
        heading(f"capacity report: {(document.get('scenario') or {}).get('name')}", 1),
        paragraph(answer.get("text") or "no answer"),
        paragraph(f"Status: {document.get('status')}{' - ' + document['failure'] if document.get('failure') else ''}. "
                  f"Started {document.get('started_at')}, ended {document.get('ended_at')}."),
        paragraph(f"SLO: {' and '.join(document.get('slo') or [])}. Each step: {search.get('step_s', 0):g} measured "
                  f"seconds after {search.get('warmup_s', 0):g} s of warm-up; it passes when every SLO holds, the "
                  f"generator keeps up ({METRICS['send_delay_p99'].label} under {search.get('send_delay_limit_us', 0) / 1000:g} ms, the "
                  f"asked rate sent), the consumer lag does not grow (slope under "
                  f"{search.get('lag_slope_fraction', 0):.0%} of the rate per second) and nothing fails or is lost."),
        paragraph(f"Scenario: {describe_scenario(document)}."),
        paragraph(f"Environment: {describe_environment(document)}."),
    ]
    if document.get("warnings"):
        blocks += [heading("Warnings"), bullet_list(document["warnings"])]
    blocks += [heading(f"Steps ({latency_title(document.get('latency_kind') or 'end_to_end')})"),
               step_table_block(document),
               paragraph("Each step's run folder (result.json, .hlog) is under steps/ of this folder.")]
    if plot_files:
        blocks.append(heading("Plots"))
        blocks += [image(name) for name in plot_files]
    return blocks


def write_capacity_report(folder: str | os.PathLike, document: Mapping[str, Any] | None = None) -> list[Path]:
    """capacity.png, report.md and report.html into a search folder (from capacity.json when not given)."""
    folder = Path(folder)
    if document is None:
        document = load_result(folder)
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write the report into {folder}: folder is not writable")
    from bench.output.plots.capacity import plot_capacity  # matplotlib only when drawing

    name = (document.get("scenario") or {}).get("name") or "capacity"
    plot = plot_capacity([(name, document)], folder / PLOT_FILE)
    blocks = capacity_report_blocks(document, [plot.name] if plot else [])
    return ([plot] if plot else []) + write_documents(folder, blocks, f"capacity {name} - StreamStore Bench")


def capacity_compare_rows(labels: Sequence[str], documents: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """The answers side by side: asked and achieved maximum rate, its percentiles, what failed above."""
    rows = []
    for label, document in zip(labels, documents):
        answer = document.get("answer") or {}
        kind = document.get("latency_kind") or "end_to_end"
        summary = (answer.get("latency_us") or {}).get(kind) or {}
        rate = answer.get("rate")
        rows.append((label, " and ".join(document.get("slo") or []), f"{rate:,.0f}" if rate is not None else "none",
                     "yes" if answer.get("confirmed") else "no", format_value(answer.get("achieved_per_s"), "msg/s"),
                     format_us(summary.get("p50")), format_us(summary.get("p99")), format_us(summary.get("p99_9")),
                     answer.get("limited_by") or "-"))
    return rows


COMPARE_HEADER = ("search", "SLO", "max rate msg/s", "confirmed", "achieved", "p50", "p99", "p99.9", "limited by")


def write_capacity_compare(folder: Path, labels: Sequence[str], documents: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Both (all) curves on one plot, and compare.md/html with the answers side by side."""
    from bench.output.plots.capacity import plot_capacity  # matplotlib only when drawing

    plot = plot_capacity(list(zip(labels, documents)), folder / f"compare_{PLOT_FILE}")
    blocks = [heading(f"Capacity comparison: {' vs '.join(labels)}", 1),
              bullet_list([f"{label}: {describe_scenario(d)} ({describe_environment(d)})" for label, d in zip(labels, documents)]),
              table(COMPARE_HEADER, capacity_compare_rows(labels, documents))]
    if plot:
        blocks += [heading("Plots"), image(plot.name)]
    return ([plot] if plot else []) + write_documents(folder, blocks, f"Capacity comparison {' vs '.join(labels)}",
                                                      stem="compare")
