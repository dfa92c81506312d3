"""`python -m bench capacity SCENARIO --slo "end_to_end_p99<50ms"`: the highest rate that meets
the SLOs, found by measured steps (bench/capacity/search.py), written as a search folder with
capacity.json, the step runs, the throughput-vs-latency plot and a report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.analysis.capacity import LAG_SLOPE_FRACTION, Criteria, SearchSettings
from bench.analysis.stats import GENERATOR_BEHIND_SEND_DELAY_P99_US
from bench.analysis.thresholds import Limit, deprecation_lines, parse_checks
from bench.capacity.document import step_table
from bench.capacity.search import CapacityOptions, run_capacity
from bench.commands._options import add_broker_arguments, add_results_argument
from bench.core.field_checks import check_number
from bench.core.scenario import Scenario, parse_set_option
from bench.results.metrics import METRICS
from streamstore.errors import UsageError

NAME = "capacity"
HELP = "find the highest rate that meets latency SLOs: raise the rate, bisect, confirm; table, plot and report"

DEFAULT_STEP_S = 20.0
DEFAULT_MAX_TIME_S = 1800.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario TOML file, or the name of one in scenarios/")
    parser.add_argument("--slo", action="append", default=[], metavar="LIMIT", required=True,
                        help="a limit every passing step meets, in the --check syntax (repeatable), "
                             "e.g. --slo 'end_to_end_p99<50ms' --slo 'service_time_p99_9<200ms'")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario field (repeatable), e.g. --set partitions=6")
    parser.add_argument("--topic", help="topic to use (created if missing)")
    parser.add_argument("--producers", type=int, help="producer processes to start with (default: the scenario's)")
    parser.add_argument("--max-producers", type=int,
                        help="a step the generator cannot keep up with is retried with twice the producers, "
                             "up to this many (default: the CPU count, or the scenario's producers if more)")
    parser.add_argument("--start-rate", type=float, default=SearchSettings.start_rate,
                        help="msg/s of the first step (default %(default)g)")
    parser.add_argument("--min-rate", type=float, default=SearchSettings.min_rate,
                        help="when the first step fails, halve down to this rate before giving up (default %(default)g)")
    parser.add_argument("--max-rate", type=float, help="never ask more than this (default: no limit)")
    parser.add_argument("--tolerance", type=float, default=SearchSettings.tolerance * 100,
                        help="bisect until the last pass is within this %% of the first fail (default %(default)g)")
    parser.add_argument("--no-recheck", action="store_true",
                        help="believe a rate's first failed step (default: run it again; two agreeing steps decide)")
    parser.add_argument("--step-s", type=float, default=DEFAULT_STEP_S,
                        help="measured seconds per step, after its warm-up (default %(default)g)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds of each step (default: the scenario's)")
    parser.add_argument("--max-time", type=float, default=DEFAULT_MAX_TIME_S,
                        help="seconds the whole search may take; no step starts that would not fit (default %(default)g)")
    parser.add_argument("--send-delay-limit", type=float, default=GENERATOR_BEHIND_SEND_DELAY_P99_US / 1000,
                        help=f"ms of {METRICS['send_delay_p99'].label} beyond which the generator fell behind "
                             "(default %(default)g)")
    parser.add_argument("--lag-slope", type=float, default=LAG_SLOPE_FRACTION * 100,
                        help="%% of the rate per second the consumer lag may grow by over a step (default %(default)g)")
    parser.add_argument("--verbose", action="store_true", help="show each step's run output (a line a second)")
    add_broker_arguments(parser, metrics_url=True)
    add_results_argument(parser)
    parser.add_argument("--no-report", action="store_true", help="skip the plot and report.md/html")


def slo_limits(texts: list[str]) -> tuple[Limit, ...]:
    checks = parse_checks(texts, flag="--slo")
    for check in checks:
        if not isinstance(check, Limit):
            raise UsageError(f"--slo {check.describe()!r}: an SLO is an absolute limit (METRIC<LIMIT), "
                             "e.g. end_to_end_p99<50ms; relative checks are for bench regress")
    if not checks:
        raise UsageError("--slo: give at least one limit, e.g. --slo 'end_to_end_p99<50ms'")
    return tuple(checks)


def options_from_args(args: argparse.Namespace, base: Scenario) -> CapacityOptions:
    limits = slo_limits(args.slo)
    check_number("--start-rate", args.start_rate, 0, None, open_low=True)
    check_number("--min-rate", args.min_rate, 0, args.start_rate, open_low=True)
    if args.max_rate is not None:
        check_number("--max-rate", args.max_rate, args.start_rate, None)
    check_number("--tolerance", args.tolerance, 0, 100, open_low=True)
    check_number("--step-s", args.step_s, 1, None)
    warmup = base.warmup_s if args.warmup is None else args.warmup
    check_number("--warmup", warmup, 0, None)
    check_number("--max-time", args.max_time, 0, None, open_low=True)
    check_number("--send-delay-limit", args.send_delay_limit, 0, None, open_low=True)
    check_number("--lag-slope", args.lag_slope, 0, None, open_low=True)
    max_producers = args.max_producers if args.max_producers is not None else max(os.cpu_count() or 1, base.producers)
    if not 1 <= max_producers <= 64:
        raise UsageError(f"--max-producers: {max_producers} is outside 1..64")
    if max_producers < base.producers:
        raise UsageError(f"--max-producers {max_producers} is below the {base.producers} producers it starts with")
    return CapacityOptions(
        slo=tuple(limit.describe() for limit in limits), limits=limits,
        search=SearchSettings(start_rate=args.start_rate, min_rate=args.min_rate, max_rate=args.max_rate,
                              tolerance=args.tolerance / 100, recheck_fails=not args.no_recheck),
        criteria=Criteria(send_delay_limit_us=args.send_delay_limit * 1000, lag_slope_fraction=args.lag_slope / 100),
        step_s=args.step_s, warmup_s=warmup, max_time_s=args.max_time, max_producers=max_producers,
        verbose=args.verbose, broker_metrics_url=getattr(args, "broker_metrics_url", None))


def run(args: argparse.Namespace) -> int:
    overrides = dict(parse_set_option(text) for text in args.overrides)
    for flag, field in (("topic", "topic"), ("producers", "producers")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    base = Scenario.from_toml(args.scenario, overrides)
    if base.backlog:
        raise UsageError("backlog: the capacity search runs steady steps; measure a catch-up with bench run")
    options = options_from_args(args, base)
    for line in deprecation_lines(options.limits):
        print(line.replace("--check", "--slo"))
    code, folder, document = run_capacity(base, options, args.bootstrap_servers, args.results_dir, args.broker,
                                          args.keep_broker)
    if not args.no_report and document["steps"]:
        from bench.output.capacity_report import write_capacity_report  # matplotlib only when drawing

        write_capacity_report(folder, document)
    print(summary_text(document, folder))
    return code


def summary_text(document: dict, folder: Path) -> str:
    header, rows = step_table(document)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = [f"{document['status']}: {folder}"]
    lines += ["  ".join(cell.rjust(width) if i < len(header) - 1 else cell for i, (cell, width) in enumerate(zip(cells, widths)))
              for cells in (header, *rows)]
    lines += [f"warning: {warning}" for warning in document["warnings"]]
    if document.get("failure"):
        lines.append(f"failed: {document['failure']}")
    lines.append(document["answer"]["text"])
    return "\n".join(lines)
