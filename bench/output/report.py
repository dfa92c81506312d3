"""report.md and self-contained report.html for a run folder, a comparison or a regression gate.

A report is a list of blocks rendered twice: to Markdown (images linked) and to HTML (images
embedded as base64, so the file can be mailed or uploaded as one artifact).
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis.compare import DeltaRow, Verdict
from bench.analysis.failover import FAILOVER_COLUMNS, failover_row
from bench.analysis.stats import derive_warnings
from bench.output import plots
from bench.results.formatting import describe_environment, describe_scenario, format_change, format_us, format_value
from bench.results.metrics import CLIENT_LATENCY_LABELS, LATENCY_LABELS, METRICS, SUMMARY_PERCENTILES, latency_title
from bench.results.store import load_result, write_text_atomic
from streamstore.errors import UsageError


@dataclass(frozen=True)
class Block:
    kind: str  # "h1" | "h2" | "h3" | "p" | "ul" | "table" | "img"
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
        elif block.kind == "ul":
            out.append("\n".join(f"- {item}" for item in block.items))
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
"""


def to_html(blocks: Sequence[Block], title: str, image_folder: Path) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_HTML_STYLE}</style></head><body>"]
    for block in blocks:
        if block.kind in ("h1", "h2", "h3"):
            out.append(f"<{block.kind}>{html.escape(block.text)}</{block.kind}>")
        elif block.kind == "p":
            out.append(f"<p>{html.escape(block.text)}</p>")
        elif block.kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block.items) + "</ul>")
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


# ---------------------------------------------------------------------------------------------
# A run


def _latency_table(result: Mapping[str, Any]) -> Block | None:
    latencies = result.get("latency_us") or {}
    rows = []
    for kind in LATENCY_LABELS:
        summary = latencies.get(kind)
        if summary and summary.get("count"):
            sampled = summary.get("sample_every", 1)
            count = f"{summary['count']:,}" + (f" (1 in {sampled})" if sampled > 1 else "")
            rows.append((latency_title(kind), count, format_us(summary.get("min")),
                         *(format_us(summary.get(key)) for key in SUMMARY_PERCENTILES), format_us(summary.get("max"))))
    if not rows:
        return None
    header = ("latency", "count", "min", *(key.replace("_", ".") for key in SUMMARY_PERCENTILES), "max")
    return table(header, rows)


def _delivery_report_blocks(result: Mapping[str, Any]) -> list[Block]:
    """Failures-only delivery reports: why service time is missing, and librdkafka's own latencies."""
    if result.get("delivery_reports") != "failures":
        return []
    reasons = {summary["not_measured"] for summary in (result.get("latency_us") or {}).values()
               if isinstance(summary, Mapping) and summary.get("not_measured")}
    blocks = [heading("librdkafka's own latency (failures-only delivery reports)"),
              paragraph("Delivery reports for failed messages only; " + "; ".join(sorted(reasons)) + "."
                        if reasons else "Delivery reports for failed messages only.")]
    client = result.get("client_latency_us") or {}
    rows = []
    for window in CLIENT_LATENCY_LABELS:
        for statistic in ("avg", "p50", "p99", "max"):
            metric = METRICS[f"{window}_{statistic}"]
            rows.append((metric.label, format_us(metric.read(result))))
        figures = client.get(window)
        if figures:
            rows.append((f"{CLIENT_LATENCY_LABELS[window][0]} intervals (out of range)",
                         f"{figures['intervals']:,} ({figures['intervals_out_of_range']:,})"))
    blocks += [table(("figure", "value"), rows), paragraph(f"Window: {METRICS['rtt_p99'].window}.")]
    return blocks


# The figures of a run's summary table besides its latencies and counts (metric table names).
SUMMARY_METRICS = ("throughput", "throughput_mb", "consumed_throughput", "lag_max", "lag_time_max")


def _throughput_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    seconds = (result.get("throughput") or {}).get("measured_s")
    window = f" (over {seconds} measured seconds)" if seconds else ""
    rows = []
    for name in SUMMARY_METRICS:
        metric = METRICS[name]
        value = metric.read(result)
        if value is not None:
            rows.append((metric.label + window, format_value(value, metric.unit)))
    return rows


def _large_message_table(result: Mapping[str, Any]) -> Block | None:
    rows = ((result.get("large_message") or {}).get("rows")) or []
    if not rows:
        return None

    def milliseconds(value: Any, statistic: str) -> str:
        value = value.get(statistic) if isinstance(value, Mapping) else value
        return "-" if value is None else format_us(value * 1000)

    def number(value: Any, scale: float = 1, unit: str = "") -> str:
        return "-" if value is None else f"{value / scale:,.1f}{unit}"

    peer = any(row.get("java") for row in rows)

    def java(row: Mapping[str, Any]) -> tuple[str, ...]:
        if not peer:
            return ()
        figures = row.get("java") or {}
        if figures.get("error"):
            return (f"not measured: {figures['error']}",)
        return (milliseconds(figures.get("end_to_end_ms"), "mean"),)

    body = [(
        f"{row['size_bytes']:,}", str(row.get("compression")), str(row.get("reps", "-")),
        milliseconds(row.get("service_time_ms"), "p50"), milliseconds(row.get("service_time_ms"), "max"),
        milliseconds(row.get("end_to_end_ms"), "p50"), number(row.get("transfer_rate_mb_s")),
        number(row.get("compression_ratio"), unit="x") + (" (skipped)" if row.get("compression_skipped") else ""),
        number(row.get("producer_peak_rss_bytes"), 1e6), number(row.get("consumer_peak_rss_bytes"), 1e6),
        row.get("error") or "", *java(row),
    ) for row in rows]
    return table(("size (bytes)", "compression", "reps", METRICS["service_time_p50"].label, METRICS["service_time_max"].label,
                  METRICS["end_to_end_p50"].label, "transfer rate MB/s", "ratio", "producer RSS MB", "consumer RSS MB", "error",
                  *(("Java EndToEndLatency end-to-end (mean)",) if peer else ())), body)


def _flat_items(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            items.extend(_flat_items(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", json.dumps(value) if not isinstance(value, str) else value))
    return items


def run_report_blocks(result: Mapping[str, Any], plot_files: Sequence[str]) -> list[Block]:
    scenario_name = (result.get("scenario") or {}).get("name") or result.get("kind")
    blocks = [
        heading(f"{result.get('kind', 'run')} report: {scenario_name}", 1),
        paragraph(f"Status: {result.get('status')}{' - ' + result['failure'] if result.get('failure') else ''}. "
                  f"Started {result.get('started_at')}, ended {result.get('ended_at')}."),
        paragraph(f"Scenario: {describe_scenario(result)}."),
        paragraph(f"Environment: {describe_environment(result)}."),
    ]
    warnings = derive_warnings(result)
    blocks += [heading("Warnings"), bullet_list(warnings or ["none"])]
    latency = _latency_table(result)
    if latency:
        blocks += [heading("Latency (warm-up excluded)"), latency]
    blocks += _delivery_report_blocks(result)
    throughput = _throughput_rows(result)
    counts = result.get("counts") or {}
    if throughput or counts:
        blocks += [heading("Throughput, lag and counts"),
                   table(("figure", "value"), throughput + [(f"count {k}", f"{v:,}") for k, v in counts.items()
                                                            if isinstance(v, int)])]
    faults = (result.get("failover") or {}).get("faults") or []
    if faults:
        blocks += [heading("Failover (per fault and node)"), table(FAILOVER_COLUMNS, [failover_row(f) for f in faults])]
    large = _large_message_table(result)
    if large:
        blocks += [heading("Large-message sweep"), large]
    if result.get("events"):
        blocks += [heading("Events"), table(("t (s)", "event", "detail"),
                                            [(f"{e['t_s']:g}", e["kind"], e.get("detail") or "") for e in result["events"]])]
    if plot_files:
        blocks.append(heading("Plots"))
        blocks += [image(name) for name in plot_files]
    blocks += [heading("Scenario as run"), table(("field", "value"), _flat_items(result.get("scenario") or {}))]
    environment = {**(result.get("environment") or {}), "broker": result.get("broker") or {}}
    blocks += [heading("Environment"), table(("field", "value"), _flat_items(environment))]
    return blocks


def write_run_report(folder: str | os.PathLike, result: Mapping[str, Any] | None = None) -> list[Path]:
    """Plots, report.md and report.html into a run folder (from its result.json when not given).

    The runner calls this after writing result.json; `bench report` calls it to regenerate.
    """
    folder = Path(folder)
    if result is None:
        result = load_result(folder)
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write the report into {folder}: folder is not writable")
    plot_paths = plots.write_run_plots(result, folder)
    blocks = run_report_blocks(result, [p.name for p in plot_paths])
    title = f"{(result.get('scenario') or {}).get('name') or result.get('kind')} - StreamStore Bench"
    return plot_paths + write_documents(folder, blocks, title)


# ---------------------------------------------------------------------------------------------
# A comparison


def compare_report_blocks(
    labels: Sequence[str],
    runs: Sequence[Mapping[str, Any]],
    rows: Sequence[DeltaRow],
    not_comparable: Mapping[str, Sequence[str]],
    plot_files: Sequence[str],
) -> list[Block]:
    blocks = [heading(f"Comparison: {' vs '.join(labels)}", 1)]
    blocks.append(bullet_list([f"{label}: {describe_scenario(run)} ({describe_environment(run)})"
                               for label, run in zip(labels, runs)]))
    if not_comparable:
        blocks += [heading("Not comparable"),
                   paragraph("These runs measured different scenarios (compared anyway with --force):"),
                   bullet_list([f"{label} differs from {labels[0]}: {'; '.join(fields)}"
                                for label, fields in not_comparable.items()])]
    header = ["metric", *labels] + [f"{label} vs {labels[0]}" for label in labels[1:]]
    body = []
    for row in rows:
        if all(v is None for v in row.values):
            continue
        changes = [format_change(c) + (" (worse)" if _is_worse(row, c) else "") for c in row.changes[1:]]
        body.append((f"{row.label} ({row.unit})", *(format_value(v, row.unit) for v in row.values), *changes))
    blocks += [heading("Deltas"), paragraph(f"Changes are relative to {labels[0]}; "
                                            "latencies exclude warm-up. Significance: see bench regress."),
               table(header, body)]
    for label, run in zip(labels, runs):
        warnings = derive_warnings(run)
        if warnings:
            blocks += [heading(f"Warnings: {label}", 3), bullet_list(warnings)]
    if plot_files:
        blocks.append(heading("Plots"))
        blocks += [image(name) for name in plot_files]
    return blocks


def _is_worse(row: DeltaRow, change: float | None) -> bool:
    if change is None:
        return False
    return change > 0 if row.worse_when == "higher" else change < 0


def write_compare_report(
    folder: Path, labels: Sequence[str], runs: Sequence[Mapping[str, Any]], rows: Sequence[DeltaRow],
    not_comparable: Mapping[str, Sequence[str]],
) -> list[Path]:
    plot_paths = plots.write_compare_plots(list(zip(labels, runs)), folder)
    blocks = compare_report_blocks(labels, runs, rows, not_comparable, [p.name for p in plot_paths])
    return plot_paths + write_documents(folder, blocks, f"Comparison {' vs '.join(labels)}", stem="compare")


# ---------------------------------------------------------------------------------------------
# A regression gate


def regress_summary_blocks(
    baseline_label: str, candidate_label: str, verdicts: Sequence[Verdict], alpha: float, outcome_line: str,
) -> list[Block]:
    body = [(
        v.check.describe() + (f" (floor {format_value(v.check.floor, v.check.metric.unit)})" if v.check.floor else ""),
        format_value(v.baseline, v.check.metric.unit), format_value(v.candidate, v.check.metric.unit),
        format_change(v.change), "-" if v.p_value is None else f"{v.p_value:.3g}",
        f"{v.samples[0]}/{v.samples[1]}", v.outcome.upper() if v.is_regression else v.outcome,
    ) for v in verdicts]
    return [
        heading(f"bench regress: {outcome_line}", 2),
        paragraph(f"Baseline {baseline_label}, candidate {candidate_label}. A regression needs a change beyond "
                  f"the threshold and the floor, and a one-sided Mann-Whitney U test with p < {alpha:g} on "
                  f"independent samples: the means of blocks of seconds as long as each series' autocorrelation."),
        table(("check", "baseline", "candidate", "change", "p", "blocks", "verdict"), body),
        bullet_list([v.reason for v in verdicts]),
    ]
