"""report.md and self-contained report.html for a run folder, and the summary of a regression
gate (the blocks and their rendering are bench/output/document.py; a comparison's report is
bench/output/compare_report.py).

A run's report reads top-down: a summary (verdict, throughput, the percentiles that matter,
lost and duplicated, failover in one line), then the sections of RUN_SECTIONS, linked from the top.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.analysis.failover import FAILOVER_COLUMNS, failover_rows, failover_summary, producing_end_s
from bench.analysis.stats import derive_warnings
from bench.core.backlog import backlog_lines
from bench.output import plots
from bench.output.compare_report import write_compare_report
from bench.output.document import (
    Block,
    Section,
    assemble,
    bullet_list,
    image,
    paragraph,
    summary,
    table,
    to_html,
    to_markdown,
    write_documents,
)
from bench.output.rebalances import rebalance_table
from bench.output.resources import RESOURCE_COLUMNS, resource_notes, resource_rows, verdict_lines
from bench.results.formatting import describe_environment, describe_scenario, format_us, format_value
from bench.results.metrics import CLIENT_LATENCY_LABELS, LATENCY_LABELS, METRICS, SUMMARY_PERCENTILES, latency_title
from bench.results.store import load_result
from streamstore.errors import UsageError

__all__ = ["Block", "to_html", "to_markdown", "write_compare_report", "write_documents", "write_run_report",
           "run_report_blocks", "SUMMARY_METRICS", "RUN_SECTIONS"]


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
    blocks = [paragraph("Delivery reports for failed messages only; " + "; ".join(sorted(reasons)) + "."
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


def _partitions_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    """Per-partition counts: the skew of the keys."""
    section = result.get("partitions") or {}
    rows = section.get("by_partition") or {}
    if not rows:
        return []
    columns = [c for c in ("acked", "consumed", "committed", "aborted", "markers", "broker_offset_delta", "lag_max")
               if any(c in row for row in rows.values())]
    return [paragraph(f"Skew (busiest partition / mean): {section.get('skew')}."),
            table(("partition", *columns), [(p, *("-" if rows[p].get(c) is None else f"{rows[p][c]:,}" for c in columns))
                                            for p in sorted(rows, key=int)])]


def _groups_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    """Fan-out: each consumer group's count, audit, end-to-end latency and lag, and each process's rate."""
    groups = result.get("groups") or []
    if not groups:
        return []
    latency = LATENCY_LABELS["end_to_end"][0]

    def count(value: Any) -> str:
        return "-" if value is None else f"{value:,}"

    rows = [(str(g["group"]), g["group_id"] or "-", count(g["consumed"]), count(g["lost"]), count(g["duplicated"]),
             *(format_us(g["end_to_end_us"].get(k)) for k in ("p50", "p99", "max")), count(g["lag_max_messages"]),
             ", ".join("-" if c["consumed_per_s"] is None else f"{c['consumer']} {c['consumed_per_s']:,.0f}"
                       for c in g["consumers"])) for g in groups]
    return [paragraph("Each group reads the whole topic and is audited on its own; the headline consumed count, "
                      "latency and lag are group 0's, lost and duplicated the worst group's."),
            table(("group", "group id", "consumed", "lost", "duplicated", f"{latency} p50", f"{latency} p99",
                   f"{latency} max", "lag max", "msg/s per consumer process"), rows)]


def _rebalances_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    """Consumer events: each one's pauses, lag peak, time to recover and duplicates."""
    found = rebalance_table(result)
    if found is None:
        return []
    intro, header, rows = found
    return [paragraph(intro), table(header, rows)]


def _backlog_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    """A backlog run: the build and the catch-up's figures, each with its window (as on the console)."""
    section = result.get("backlog")
    return [bullet_list([*backlog_lines(section), *(f"{name} window: {text}" for name, text in section["windows"].items())])
            ] if section else []


def _transactions_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    """The transactions' account: committed + aborted records + markers = the broker's offset delta."""
    transactions = result.get("transactions")
    if not transactions:
        return []
    figures = [(k, f"{v:,}" if isinstance(v, int) else str(v)) for k, v in transactions.items() if k != "offsets"]
    offsets = transactions["offsets"]
    figures.append(("offsets check", f"{offsets['expected_delta']:,} expected, broker {offsets['broker_offset_delta']}"
                                     f" ({'holds' if offsets['holds'] else 'not checked' if offsets['holds'] is None else 'FAILS'})"))
    return [table(("figure", "value"), figures)]


def _flat_items(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            items.extend(_flat_items(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", json.dumps(value) if not isinstance(value, str) else value))
    return items


# The latencies whose percentiles the summary gives, and which percentiles.
SUMMARY_LATENCIES = ("service_time", "end_to_end")
SUMMARY_LATENCY_STATISTICS = ("p50", "p99", "p99_9")


def _verdict_line(result: Mapping[str, Any]) -> str:
    counts = result.get("counts") or {}
    status = str(result.get("status") or "status not recorded")
    if result.get("failure"):
        status += f" ({result['failure']})"
    lost, duplicated = counts.get("lost"), counts.get("duplicated")
    if lost is None or duplicated is None:
        not_measured = result.get("counts_not_measured") or {}
        audit = "lost/duplicated not measured: " + (not_measured.get("lost") or not_measured.get("duplicated")
                                                    or "no audit")
    elif lost == duplicated == 0:
        audit = f"every acked order consumed exactly once (0 lost, 0 duplicated of {counts.get('acked') or 0:,} acked)"
    else:
        audit = f"{lost:,} lost, {duplicated:,} duplicated of {counts.get('acked') or 0:,} acked"
    warnings = derive_warnings(result)
    return f"Verdict: {status}; {audit}; " + (f"{len(warnings)} warning(s), see Warnings" if warnings else "no warnings")


def _latency_line(result: Mapping[str, Any], kind: str) -> str | None:
    summary_us = (result.get("latency_us") or {}).get(kind) or {}
    if not summary_us.get("count"):
        return None
    figures = ", ".join(f"{statistic.replace('_', '.')} {format_us(summary_us.get(statistic))}"
                        for statistic in SUMMARY_LATENCY_STATISTICS)
    return f"{latency_title(kind)}: {figures}"


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The summary at the top of a run's report: what a reader needs before any table."""
    lines = [_verdict_line(result)]
    throughput = [f"{METRICS[name].label} {format_value(value, METRICS[name].unit)}"
                  for name in ("throughput", "consumed_throughput") if (value := METRICS[name].read(result)) is not None]
    if throughput:
        seconds = (result.get("throughput") or {}).get("measured_s")
        lines.append(", ".join(throughput) + (f" (over {seconds} measured seconds)" if seconds else ""))
    kinds = list(SUMMARY_LATENCIES)
    send_delay_p99 = ((result.get("latency_us") or {}).get("send_delay") or {}).get("p99")
    if send_delay_p99 and send_delay_p99 >= 1000:  # the generator was late: response time tells more
        kinds.insert(1, "response_time")
    lines += [line for kind in kinds if (line := _latency_line(result, kind))]
    failover = failover_summary(result)
    if failover:
        lines.append("Failover: " + failover)
    lines += [f"Bottleneck: {verdict['text']}" for verdict in result.get("verdicts") or []]
    return lines


def _summary_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    return [summary(summary_lines(result))]


def _warnings_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    return [bullet_list(derive_warnings(result) or ["none"])]


def _verdicts_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    return [bullet_list(verdict_lines(result))]


def _resources_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    rows = resource_rows(result)
    return [*([table(RESOURCE_COLUMNS, rows)] if rows else []), paragraph(" ".join(resource_notes(result)))]


def _latency_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    latency = _latency_table(result)
    return [latency] if latency else []


def _client_latency_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    return _delivery_report_blocks(result)


def _counts_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    throughput = _throughput_rows(result)
    counts = result.get("counts") or {}
    if not (throughput or counts):
        return []
    return [table(("figure", "value"), throughput + [(f"count {k}", f"{v:,}") for k, v in counts.items()
                                                     if isinstance(v, int)])]


def _failover_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    faults = (result.get("failover") or {}).get("faults") or []
    if not faults:
        return []
    rows, notes = failover_rows(faults, producing_end_s(result))
    return [table(FAILOVER_COLUMNS, rows)] + ([paragraph("Notes:"), bullet_list(notes)] if notes else [])


def _large_message_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    large = _large_message_table(result)
    return [large] if large else []


def _events_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    if not result.get("events"):
        return []
    return [table(("t (s)", "event", "detail"), [(f"{e['t_s']:g}", e["kind"], e.get("detail") or "")
                                                 for e in result["events"]])]


def _plots_section(_result: Mapping[str, Any], plot_files: Sequence[str]) -> list[Block]:
    return [image(name) for name in plot_files]


def _scenario_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    return [table(("field", "value"), _flat_items(result.get("scenario") or {}))]


def _environment_section(result: Mapping[str, Any], _plots: Sequence[str]) -> list[Block]:
    environment = {**(result.get("environment") or {}), "broker": result.get("broker") or {}}
    return [table(("field", "value"), _flat_items(environment))]


# A run's report, top-down. Each builder takes (result, plot file names) and returns the
# section's body; an empty body leaves the section (and its link) out.
RUN_SECTIONS = (
    Section("Summary", _summary_section),
    Section("Warnings", _warnings_section),
    Section("Bottleneck verdicts", _verdicts_section),
    Section("Latency (warm-up excluded)", _latency_section),
    Section("librdkafka's own latency (failures-only delivery reports)", _client_latency_section),
    Section("Throughput, lag and counts", _counts_section),
    Section("Per partition", _partitions_section),
    Section("Consumer groups", _groups_section),
    Section("Rebalances (consumer events)", _rebalances_section),
    Section("Backlog and catch-up", _backlog_section),
    Section("Transactions", _transactions_section),
    Section("Resources", _resources_section),
    Section("Failover (per fault and node)", _failover_section),
    Section("Large-message sweep", _large_message_section),
    Section("Plots", _plots_section),
    Section("Events", _events_section),
    Section("Scenario as run", _scenario_section),
    Section("Environment", _environment_section),
)


def run_report_blocks(result: Mapping[str, Any], plot_files: Sequence[str]) -> list[Block]:
    scenario_name = (result.get("scenario") or {}).get("name") or result.get("kind")
    intro = [
        paragraph(f"Scenario: {describe_scenario(result)}."),
        paragraph(f"Status: {result.get('status')}{' - ' + result['failure'] if result.get('failure') else ''}. "
                  f"Started {result.get('started_at')}, ended {result.get('ended_at')}. "
                  f"Environment: {describe_environment(result)}."),
    ]
    return assemble(f"{result.get('kind', 'run')} report: {scenario_name}", intro, RUN_SECTIONS, result, plot_files)


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
