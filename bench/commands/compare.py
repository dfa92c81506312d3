"""`python -m bench compare RUN_A RUN_B [RUN_C ...]`: overlaid plots and a delta table."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench.analysis.compare import delta_rows, differing_fields, require_comparable_kind
from bench.analysis.naming import run_names
from bench.output.report import write_compare_report
from bench.results.formatting import format_delta, format_value
from bench.results.store import DEFAULT_RESULTS_ROOT, load_result, result_path
from streamstore.errors import UsageError

NAME = "compare"
HELP = "compare runs: overlaid percentile and time-series plots plus a table of deltas (md, html, png)"

# Long folder names make the compare folder unwieldy; each run contributes at most this much.
_LABEL_IN_FOLDER_NAME = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders or result .json files (2 or more); the first is the reference")
    parser.add_argument("--out", type=Path, help="output folder (default results/compare-<A>-vs-<B>...)")
    parser.add_argument("--force", action="store_true", help="compare runs whose scenarios differ (marked 'not comparable')")


def _label(run: str) -> str:
    path = result_path(run)
    return path.parent.name if path.name == "result.json" else path.stem


def run(args: argparse.Namespace) -> int:
    if len(args.runs) < 2:
        raise UsageError("compare needs at least two runs (RUN_A RUN_B ...)")
    results = [load_result(run) for run in args.runs]
    labels = [_label(run) for run in args.runs]
    labels = [label if labels.count(label) == 1 else f"{label} ({index + 1})" for index, label in enumerate(labels)]
    for label, result in zip(labels, results):
        require_comparable_kind(result, label)

    not_comparable = {label: fields for label, result in zip(labels[1:], results[1:])
                      if (fields := differing_fields(results[0], result))}
    if not_comparable and not args.force:
        reasons = "; ".join(f"{label} differs in {', '.join(fields)}" for label, fields in not_comparable.items())
        raise UsageError(f"not comparable with {labels[0]}: {reasons} (use --force to compare anyway)")

    out = args.out or DEFAULT_RESULTS_ROOT / ("compare-" + "-vs-".join(
        re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:_LABEL_IN_FOLDER_NAME] for label in labels))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {out}: {error.strerror or error}") from None

    # Runs are shown by what differs between them ("acks=all" / "acks=1"); their folders and start
    # times are listed once, above the table and in the footers.
    names = run_names(results, labels)
    rows = [row for row in delta_rows(results) if any(value is not None for value in row.values)]
    for label, fields in not_comparable.items():
        print(f"NOT COMPARABLE: {label} differs from {labels[0]} in {', '.join(fields)}")
    for name, run_arg, result in zip(names, args.runs, results):
        print(f"{name}: {run_arg} (started {result.get('started_at')})")
    header = ["metric", *names, *(f"{name} vs {names[0]}" for name in names[1:])]
    lines = [[row.label, *(format_value(value, row.unit) for value in row.values),
              *(format_delta(change, difference, row.unit) + (" (worse)" if row.is_worse(index + 1) else "")
                for index, (change, difference) in enumerate(zip(row.changes[1:], row.differences[1:])))]
             for row in rows]
    widths = [max(len(line[column]) for line in [header, *lines]) for column in range(len(header))]
    for line in [header, *lines]:
        print("  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                        for column, (cell, width) in enumerate(zip(line, widths))).rstrip())
    written = write_compare_report(out, names, results, rows, not_comparable, labels)
    print(f"written to {out}/: {', '.join(path.name for path in written)}")
    return 0
