"""compare.md and a self-contained compare.html: runs named by what differs between them, a
summary of the headline changes first, then the sections of COMPARE_SECTIONS, linked from the top."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis.compare import DeltaRow
from bench.analysis.failover import FAILOVER_COLUMNS, Notes, failover_rows, producing_end_s
from bench.analysis.naming import scenario_differences
from bench.analysis.stats import derive_warnings
from bench.output import plots
from bench.output.document import Block, Section, assemble, bullet_list, heading, paragraph, summary, table, write_documents
from bench.results.formatting import describe_environment, describe_scenario, format_delta, format_value

# The changes the summary names (metric table names), when measured.
HEADLINE_METRICS = ("throughput", "service_time_p50", "service_time_p99", "end_to_end_p50", "end_to_end_p99",
                    "lost", "duplicated", "longest_ack_gap", "new_leader")


@dataclass(frozen=True)
class Comparison:
    names: Sequence[str]  # what differs ("acks=all"), one per run; the first is the reference
    folders: Sequence[str]  # where each run came from
    runs: Sequence[Mapping[str, Any]]
    rows: Sequence[DeltaRow]
    not_comparable: Mapping[str, Sequence[str]]  # folder -> differing fields (compared with --force)
    plot_files: Sequence[str] = ()


def _cell(row: DeltaRow, index: int) -> str:
    return format_delta(row.changes[index], row.differences[index], row.unit) + (" (worse)" if row.is_worse(index) else "")


def _summary_section(c: Comparison) -> list[Block]:
    """What differs, how many figures got worse, and the headline figures side by side."""
    differences = scenario_differences(c.runs)
    lines = ["What differs: " + ("; ".join(f"{field} {' / '.join(values)}" for field, values in differences)
                                 if differences else "nothing in the scenarios (reruns)")]
    for index, name in enumerate(c.names[1:], start=1):
        measured = [row for row in c.rows if row.values[0] is not None and row.values[index] is not None]
        worse = [row.label for row in measured if row.is_worse(index)]
        lines.append(f"{name} vs {c.names[0]}: worse in {len(worse)} of {len(measured)} figures of one run each "
                     "(whether a change is beyond noise takes repeated runs to tell)")
    by_name = {row.name: row for row in c.rows}
    headline = [(row.label, *(format_value(v, row.unit) for v in row.values),
                 *(_cell(row, index) for index in range(1, len(c.names))))
                for metric in HEADLINE_METRICS if (row := by_name.get(metric)) and any(v is not None for v in row.values)]
    header = ["headline figure", *c.names, *(f"{name} vs {c.names[0]}" for name in c.names[1:])]
    return [summary(lines), table(header, headline)]


def _runs_section(c: Comparison) -> list[Block]:
    return [bullet_list([f"{name}: {folder}, started {run.get('started_at')}, status {run.get('status')}; "
                         f"{describe_scenario(run)} ({describe_environment(run)})"
                         for name, folder, run in zip(c.names, c.folders, c.runs)])]


def _not_comparable_section(c: Comparison) -> list[Block]:
    if not c.not_comparable:
        return []
    name_of = dict(zip(c.folders, c.names))
    return [paragraph("These runs measured different scenarios (compared anyway with --force):"),
            bullet_list([f"{name_of.get(folder, folder)} differs from {c.names[0]}: {'; '.join(fields)}"
                         for folder, fields in c.not_comparable.items()])]


def _deltas_section(c: Comparison) -> list[Block]:
    header = ["metric", *c.names, *(f"{name} vs {c.names[0]}" for name in c.names[1:])]
    body = [(row.label, *(format_value(v, row.unit) for v in row.values),
             *(_cell(row, index) for index in range(1, len(c.names))))
            for row in c.rows if any(v is not None for v in row.values)]
    return [paragraph(f"Changes are relative to {c.names[0]} (absolute where it is 0); latencies exclude warm-up; "
                      "failover figures are the worst over a run's faults. Significance: see bench regress."),
            table(header, body)]


def _failover_section(c: Comparison) -> list[Block]:
    notes, body = Notes(), []
    for name, run in zip(c.names, c.runs):
        faults = (run.get("failover") or {}).get("faults") or []
        rows, _ = failover_rows(faults, producing_end_s(run), notes)
        body += [(name, *row) for row in rows]
    if not body:
        return []
    blocks = [table(("run", *FAILOVER_COLUMNS), body)]
    return blocks + ([paragraph("Notes:"), bullet_list(notes.lines())] if notes.texts else [])


def _warnings_section(c: Comparison) -> list[Block]:
    blocks = []
    for name, run in zip(c.names, c.runs):
        warnings = derive_warnings(run)
        if warnings:
            blocks += [heading(f"Warnings: {name}", 3), bullet_list(warnings)]
    return blocks


def _plots_section(c: Comparison) -> list[Block]:
    return [Block("img", name) for name in c.plot_files]


# A comparison's report, top-down; each builder takes the Comparison and returns the section's body.
COMPARE_SECTIONS = (
    Section("Summary", _summary_section),
    Section("Runs", _runs_section),
    Section("Not comparable", _not_comparable_section),
    Section("Deltas", _deltas_section),
    Section("Failover (per run, fault and node)", _failover_section),
    Section("Warnings", _warnings_section),
    Section("Plots", _plots_section),
)


def compare_report_blocks(comparison: Comparison) -> list[Block]:
    return assemble(f"Comparison: {' vs '.join(comparison.names)}", [], COMPARE_SECTIONS, comparison)


def write_compare_report(
    folder: Path, names: Sequence[str], runs: Sequence[Mapping[str, Any]], rows: Sequence[DeltaRow],
    not_comparable: Mapping[str, Sequence[str]], folders: Sequence[str] | None = None,
) -> list[Path]:
    plot_paths = plots.write_compare_plots(list(zip(names, runs)), folder)
    comparison = Comparison(names, folders or names, runs, rows, not_comparable, [p.name for p in plot_paths])
    return plot_paths + write_documents(folder, compare_report_blocks(comparison), f"Comparison {' vs '.join(names)}",
                                        stem="compare")
