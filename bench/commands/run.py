"""`python -m bench run SCENARIO`: one measured run, written to a result folder."""

from __future__ import annotations

import argparse

from bench.analysis.stats import count_warnings
from bench.commands._options import add_broker_arguments, add_results_argument
from bench.core.backlog import backlog_lines
from bench.core.groups import group_lines
from bench.core.result import DELIVERY_REPORT_MODES
from bench.core.run_modes import BOTH, CONSUME_ONLY, PRODUCE_ONLY
from bench.core.run_topic import CONSUME_FROM
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario, parse_set_option
from bench.output.rebalances import rebalance_lines
from bench.output.resources import broker_metrics_line, resource_line, verdict_lines
from bench.results.formatting import format_us
from bench.results.metrics import CLIENT_LATENCY_LABELS, METRICS
from streamstore.errors import UsageError

NAME = "run"
HELP = "run a scenario at its target rate and measure delivery, response and end-to-end latency, lag, counts"

# Explicit flags for the fields changed most often; anything else goes through --set.
_FLAG_FIELDS = {"rate": "rate", "duration": "duration_s", "warmup": "warmup_s", "message_size": "message_size",
                "compression": "compression", "producers": "producers", "topic": "topic"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario TOML file, or the name of one in scenarios/ "
                                         "(scenarios/steady-orders.toml or steady-orders)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario field (repeatable), e.g. --set rate=5000 --set producer_config.client.id=me")
    parser.add_argument("--rate", type=float, help="messages/s over all producers; 0 = as fast as possible")
    parser.add_argument("--duration", type=float, help="seconds of producing")
    parser.add_argument("--warmup", type=float, help="seconds excluded from the summary")
    parser.add_argument("--message-size", help="bytes, or 1KB / 10MB / 1GB (powers of 1000)")
    parser.add_argument("--compression", help="none, gzip, snappy, lz4 or zstd")
    parser.add_argument("--producers", type=int, help="producer processes")
    parser.add_argument("--topic", help="topic to use (created if missing)")
    sides = parser.add_mutually_exclusive_group()
    sides.add_argument("--produce-only", dest="mode", action="store_const", const=PRODUCE_ONLY, default=BOTH,
                       help="no consumer while producing; the audit reads the topic after producing ends")
    sides.add_argument("--consume-only", dest="mode", action="store_const", const=CONSUME_ONLY,
                       help="no producer: consume the topic something else fills for the duration, audited "
                            "against the broker's offsets")
    parser.add_argument("--consume-from", choices=CONSUME_FROM, default="end",
                        help="--consume-only: read what arrives from now on (end, the default) or all the topic holds")
    add_broker_arguments(parser, metrics_url=True)
    add_results_argument(parser)
    parser.add_argument("--no-report", action="store_true", help="skip plots and report.md/html")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    overrides = dict(parse_set_option(text) for text in args.overrides)
    for flag, field in _FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    return Scenario.from_toml(args.scenario, overrides)


def run(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    if args.consume_from != "end" and args.mode != CONSUME_ONLY:
        raise UsageError("--consume-from: only with --consume-only")
    code, folder, result = run_scenario(scenario, args.bootstrap_servers, args.results_dir, args.broker,
                                        args.keep_broker, broker_metrics_url=args.broker_metrics_url,
                                        mode=args.mode, consume_from=args.consume_from)
    if not args.no_report:
        write_report(folder, result)
    print(summary_text(result, folder))
    return code


def write_report(folder, result: dict) -> None:
    """report.md, report.html and the plots of one run folder."""
    from bench.output.report import write_run_report  # matplotlib: only when a report is wanted

    write_run_report(folder, result)


def throughput_lines(result: dict) -> list[str]:
    """The measured-window throughput, the figure that report, compare and the gate read, said once."""
    throughput = result.get("throughput") or {}
    acked, megabytes = METRICS["throughput"].read(result), METRICS["throughput_mb"].read(result)
    consumed = METRICS["consumed_throughput"].read(result)
    if acked is None and consumed is not None:  # consume-only
        return [f"throughput: {consumed:,.0f} consumed msg/s over the {throughput['measured_s']} measured seconds "
                "(after warm-up)"]
    if acked is None:
        return []
    rate = f"{acked:,.0f} acked msg/s" + (f" ({megabytes:,.2f} MB/s)" if megabytes is not None else "")
    return [f"throughput: {rate} over the {throughput['measured_s']} measured seconds (after warm-up, before the drain)"]


def delivery_report_lines(result: dict) -> list[str]:
    """Which delivery-report mode ran and, in failures-only mode, librdkafka's own latencies."""
    mode = result.get("delivery_reports")
    if mode is None:
        return []
    lines = [f"delivery reports: {DELIVERY_REPORT_MODES.get(mode, mode)}"]
    for name, summary in result["latency_us"].items():
        if summary.get("not_measured"):
            lines.append(f"{name:<14} not measured: {summary['not_measured']}")
    for window, summary in (result.get("client_latency_us") or {}).items():
        label = CLIENT_LATENCY_LABELS[window][0]
        if summary is None:
            lines.append(f"{label}: no samples")
            continue
        lines.append(f"{label}  avg {format_us(summary['avg'])}  p50 {format_us(summary['p50'])}  "
                     f"p99 {format_us(summary['p99'])}  max {format_us(summary['max'])}  "
                     f"({summary['intervals']} broker-intervals; p50/p99 of the worst)")
    return lines


def summary_text(result: dict, folder) -> str:
    counts = result["counts"]
    lines = [f"{result['status']}: {folder}",
             "counts: " + ", ".join(f"{key} {value:,}" for key, value in counts.items() if value is not None)]
    lines += throughput_lines(result)
    for name, summary in result["latency_us"].items():
        if summary["count"]:
            lines.append(f"{name:<14} p50 {format_us(summary['p50']):>9}  p99 {format_us(summary['p99']):>9}  "
                         f"p99.9 {format_us(summary['p99_9']):>9}  max {format_us(summary['max']):>9}  (n={summary['count']:,}"
                         + (f", every {summary['sample_every']}th message)" if summary.get("sample_every", 1) > 1 else ")"))
    lines += group_lines(result.get("groups") or [])
    lines += rebalance_lines(result)
    lines += backlog_lines(result.get("backlog"))
    lines += delivery_report_lines(result)
    lines.append(resource_line(result))
    lines += filter(None, [broker_metrics_line(result)])
    lines += [f"bottleneck: {line}" for line in verdict_lines(result)]
    # A run that did not complete ends with "<status>: <failure>"; the warnings carry the same
    # text as "run <status>: ...", shown once.
    ending = f"{result['status']}: {result['failure']}" if result["status"] != "complete" and result["failure"] else None
    # The counts line states every count and a failed run's last line the failed and lost ones,
    # with thousands separators; the result's count warnings ("9,994 deliveries failed") only
    # repeat them here.
    restated = set(count_warnings(counts, ("failed", "lost")))
    restated |= {f"run {ending}"} if ending else set()
    lines += [f"warning: {warning}" for warning in result["warnings"] if warning not in restated]
    if ending:
        lines.append(ending)
    return "\n".join(lines)
