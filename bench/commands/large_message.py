"""`python -m bench large-message`: the large-message sweep up to the 1 GB client limit."""

from __future__ import annotations

import argparse
import math
import signal
import time
from pathlib import Path

from bench.broker.ensure import ensure_broker
from bench.commands._options import add_broker_arguments, add_results_argument, read_client_config
from bench.core.field_checks import check_client_config
from bench.core.protocol import ERRORS_LOG, write_child_errors
from bench.core.resources import RunResources, Watched, this_process
from bench.core.result import write_run_folder
from bench.core.scenario import COMPRESSIONS
from bench.large_message.plan import (
    DEFAULT_COMPRESSIONS,
    QUICK_MAX_SIZE,
    SWEEP_OWNED_CLIENT_KEYS,
    SweepOptions,
    check_level,
    parse_size_list,
    plan_sizes,
    preflight_problem,
    size_label,
)
from bench.large_message.process import SweepInterrupted
from bench.large_message.progress import SweepProgress, format_duration
from bench.large_message.result import format_java_row, format_row, sweep_result
from bench.large_message.sweep import LargeMessageSweep, preflight
from bench.output.report import write_run_report
from bench.peers.java import JavaPeer
from bench.results.environment import capture_environment
from bench.results.metrics import LATENCY_LABELS
from streamstore.admin import connect_admin
from streamstore.config import (
    CLIENT_MESSAGE_MAX_BYTES,
    MAX_VALUE_BYTES,
    RECORD_OVERHEAD_BYTES,
)
from streamstore.errors import UsageError
from streamstore.orders import PAYLOAD_KINDS

NAME = "large-message"
HELP = "sweep message sizes up to the 1 GB client limit, gzip on and off: latency, throughput, wire size, memory"

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 1KB,10MB,max (powers of 1000; max = "
                                        f"{MAX_VALUE_BYTES:,} bytes); default: 1KB, 10KB ... 100MB, 300MB, max")
    parser.add_argument("--compression", default=",".join(DEFAULT_COMPRESSIONS),
                        help="comma-separated codecs among none,gzip,snappy,lz4,zstd (default: %(default)s)")
    parser.add_argument("--level", type=int, default=-1, help="compression.level (gzip 0-9; default -1 = codec default)")
    parser.add_argument("--payload", choices=PAYLOAD_KINDS, default="order",
                        help="order: an order padded to size (compressible, default); text: repeated prose; "
                             "random: incompressible (librdkafka then skips gzip)")
    parser.add_argument("--reps", type=int, help="repetitions per size and codec (default: adaptive, 5 for small "
                                                "sizes down to 1 for the largest)")
    parser.add_argument("--quick", action="store_true", help=f"stop at {size_label(QUICK_MAX_SIZE)}, fewer repetitions (CI)")
    parser.add_argument("--max-size", help="largest size to sweep (e.g. 200MB or max)")
    parser.add_argument("--topic", help="use this topic for every message (created if missing, kept); "
                                        "default: a fresh topic per size and codec, deleted right after")
    parser.add_argument("--compare-bare", action="store_true",
                        help="also time a bare confluent-kafka script on the largest size without compression")
    parser.add_argument("--peer", choices=("java",), default=None,
                        help="also run Kafka's own EndToEndLatency (Java client, the broker's Kafka version) at each "
                             "size and codec, including the uncompressed cells librdkafka cannot send")
    parser.add_argument("--client-config", type=Path, metavar="FILE",
                        help="TOML file of librdkafka settings for every client of the sweep (producer, consumer, "
                             'admin), e.g. "security.protocol" = "SASL_SSL"')
    add_broker_arguments(parser)
    add_results_argument(parser)


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    compressions = tuple(dict.fromkeys(c.strip() for c in args.compression.split(",") if c.strip()))
    unknown = [c for c in compressions if c not in COMPRESSIONS]
    if unknown or not compressions:
        raise UsageError(f"--compression {args.compression!r}: choose among {', '.join(COMPRESSIONS)}")
    check_level(compressions, args.level)
    if args.reps is not None and args.reps < 1:
        raise UsageError(f"--reps must be at least 1, got {args.reps}")
    max_size = None
    if args.max_size is not None:
        max_size = parse_size_list(args.max_size, "--max-size")[-1]
    sizes = plan_sizes(parse_size_list(args.sizes) if args.sizes else None, args.quick, max_size)
    if args.compare_bare and "none" not in compressions:
        raise UsageError("--compare-bare times the largest size without compression: add none to --compression")
    if args.topic is not None and args.compare_bare:
        raise UsageError("--compare-bare needs fresh topics: drop --topic")
    # The sweep owns some settings (compression, sizes): refused here, before anything connects.
    settings = read_client_config(args.client_config, _check_sweep_settings) if args.client_config else {}
    if args.peer == "java" and settings:
        raise UsageError("--peer java: --client-config holds librdkafka settings, which Kafka's Java tools do not "
                         "take; run the Java peer against a broker that needs none")
    return SweepOptions(tuple(sizes), compressions, args.level, args.payload, args.reps, args.quick, args.topic,
                        args.compare_bare, peer=args.peer, client_settings=settings)


def _check_sweep_settings(config: dict) -> dict:
    """--client-config may not set what the sweep sets itself (each cell's compression, limits)."""
    return check_client_config("--client-config", config, SWEEP_OWNED_CLIENT_KEYS)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    # The client limit needs no broker: say so before starting or contacting one.
    problem = preflight_problem(options.sizes, [])
    if problem:
        raise UsageError(problem)
    print(f"large-message sweep: {', '.join(size_label(s) for s in options.sizes)}; "
          f"compression {', '.join(options.compressions)}; payload {options.payload}")
    if MAX_VALUE_BYTES in options.sizes:
        print(f"1 GB (client max) = {MAX_VALUE_BYTES:,} bytes: librdkafka's message.max.bytes cap of "
              f"{CLIENT_MESSAGE_MAX_BYTES:,} minus {RECORD_OVERHEAD_BYTES} bytes of record overhead (no key, no headers)")
    # The client settings (SASL, SSL) reach every client: broker checks, admin, producer, consumer.
    with ensure_broker(args.bootstrap_servers, args.broker, args.keep_broker,
                       client_settings=options.client_settings, announce=_say) as broker:
        admin = connect_admin(broker.bootstrap_servers, options.client_settings)
        broker_settings, topic_settings = preflight(options, admin)
        print(f"broker {broker.describe('sweep')}; pre-flight passed: every size fits the client, broker and topic limits")
        java = JavaPeer(broker.bootstrap_servers, broker.version) if options.peer == "java" else None
        if java is not None:
            print(f"peer: {java.describe()}: EndToEndLatency after each size's cells, same size, codec and acks; "
                  "its payload is one repeated letter")
        progress = SweepProgress(options.cells())
        sweep = LargeMessageSweep(options, broker.bootstrap_servers, admin, broker_settings, progress,
                                  on_row=lambda row: (progress.finish(), print(format_row(row), flush=True)),
                                  java=java,
                                  on_java=lambda row: (progress.finish(), print(format_java_row(row), flush=True)))
        started_at = time.time()
        environment = capture_environment()  # once, at the start of the sweep
        t0_ns = time.perf_counter_ns()
        sweep.clock_s = lambda: (time.perf_counter_ns() - t0_ns) / 1e9
        resources = RunResources.started(
            [this_process(), Watched("producer", "producer", lambda: sweep.pid_of("producer"), python=True),
             Watched("consumer", "tracker", lambda: sweep.pid_of("consumer"), python=True)], broker.embedded, t0_ns)
        interrupted = False
        # Ctrl+C and SIGTERM (a cancelled CI job, `kill`) are only noted; the sweep acts on them
        # where it waits for a worker and between cells: result kept, marked interrupted, exit 130.
        previous = {signum: signal.signal(signum, sweep.note_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            sweep.run()
        except SweepInterrupted:
            interrupted = True
        finally:
            resources.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            progress.finish()
        if interrupted:
            _say("interrupted: stopped the sweep, its workers and topics (result marked interrupted)")
        series: dict = {"t_s": list(range(1, math.ceil(sweep.clock_s()) + 1))}
        resources_section = resources.add_to(series, warmup_s=0)
        result = sweep_result(options, sweep.run_id, sweep.rows, sweep.bare, environment, broker, topic_settings,
                              started_at, interrupted, resources.warnings(),
                              peer_version=java.kafka_version if java else None, series=series,
                              resources=resources_section, events=sweep.events)
    folder, document = write_run_folder(args.results_dir, result)
    if sweep.worker_failures:  # each failed cell's one-line error names this file
        write_child_errors(folder / ERRORS_LOG, sweep.worker_failures)
    write_run_report(folder, document)
    print(summary_text(document, folder))
    return result.verdict.exit_code


def _say(line: str) -> None:
    print(line, flush=True)


def summary_text(result: dict, folder: Path) -> str:
    large = result["large_message"]
    lines = []
    for finding in large["memory"]:
        verdict = "ok" if finding["met"] else "ABOVE TARGET"
        lines.append(f"peak RSS {finding['client']:<8} {size_label(finding['size_bytes'])} {finding['compression']}: "
                     f"{finding['peak_rss_bytes'] / 1e6:,.0f} MB = {finding['ratio_to_payload']:g}x the payload "
                     f"(target <= {finding['target_ratio']:g}x) {verdict}")
    bare = large.get("bare_comparison")
    if bare and bare.get("ratio") is not None:
        verdict = "ok" if bare["met"] else "ABOVE TARGET"
        lines.append(f"{LATENCY_LABELS['end_to_end'][0]} {size_label(bare['size_bytes'])} none: "
                     f"harness {bare['harness_end_to_end_ms']:,.0f} ms, "
                     f"bare confluent-kafka script {bare['bare_end_to_end_ms']:,.0f} ms = {bare['ratio']:g}x "
                     f"(target <= {bare['target_ratio']:g}x) {verdict}")
    elif bare:
        lines.append(f"bare comparison failed: {bare['error']}")
    lines += [f"warning: {warning}" for warning in result["warnings"]]
    lines.append(f"{result['status']} in {format_duration(result['duration_s'])} (wall time of the sweep): {folder}")
    return "\n".join(lines)
