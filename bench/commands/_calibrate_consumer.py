"""`python -m bench calibrate --side consumer`: what does the harness's consumer cost?

One backlog, written once by a flat-out `bench run --produce-only` (the harness's own orders,
every 64th with the trace header; its audit reads it once, so every reader after it finds the
topic in the page cache alike), then read from its beginning, side by side and alternating
(A B C, then C B A, ...) by: one `bench run --consume-only` tracker process (offsets noted for the
audit, trace headers read for end-to-end latency, per-second reports), the bare confluent-kafka
consume loops of bench/peers/bare_loops.py with the same consumer settings, and with `--peer java`
Kafka's own ConsumerPerformance. The harness and the bare loops are timed from the first batch
read to the last; ConsumerPerformance by its fetch time (its group join left out).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import uuid

from bench.analysis.stats import Spread, ratio_spread, spread
from bench.broker.ensure import ensure_broker
from bench.core.clients import check_client_settings, scenario_watermarks
from bench.core.run_modes import CONSUME_ONLY, PRODUCE_ONLY
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.peers.bare_loops import BARE_CONSUME_LOOPS, run_bare_consume_loop
from bench.peers.java import TOOL_START_ALLOWANCE_S, JavaPeer
from streamstore.admin import connect_admin, delete_topic, ensure_topic
from streamstore.errors import EXIT_OK, EXIT_REGRESSION, RunFailed

BENCH_CONSUME = "bench run --consume-only"
JAVA_CONSUMER = "Java ConsumerPerformance"
# The targets: the tracker at least this share of the fastest bare loop and of ConsumerPerformance.
TARGET_OF_BARE = 0.9
TARGET_OF_JAVA = 1.0
# The consume-only run's own duration: the rest of the backlog is read in its drain.
CONSUME_ONLY_S = 1.0


def run_consumer_side(args: argparse.Namespace, scenario: Scenario, format_spread) -> int:
    """scenario: the calibration scenario (its producer settings fill the backlog)."""
    print(f"calibrate --side consumer: a backlog of {scenario.message_size:,}-byte {scenario.payload} messages "
          f"({args.duration:g} s of a flat-out bench run --produce-only), {scenario.partitions} partition(s), "
          f"read {args.rounds} round(s) from its beginning, broker {args.bootstrap_servers}", flush=True)
    check_client_settings(scenario, args.bootstrap_servers)
    loops = {f"bare {loop.name}": loop for loop in BARE_CONSUME_LOOPS}
    names = [*loops, BENCH_CONSUME] + ([JAVA_CONSUMER] if args.peer == "java" else [])
    rates: dict[str, list[float]] = {name: [] for name in names}
    with ensure_broker(args.bootstrap_servers, args.broker, keep=args.keep_broker,
                       announce=lambda line: print(line, flush=True)) as broker:
        bootstrap = broker.bootstrap_servers
        peer = JavaPeer(bootstrap, broker.version) if args.peer == "java" else None
        if peer:
            print(f"peer: {peer.describe()}", flush=True)
        admin = connect_admin(bootstrap, scenario.producer_config)
        measured = dataclasses.replace(scenario, topic=f"{scenario.topic}-consume-{uuid.uuid4().hex[:8]}")
        ensure_topic(admin, measured.topic, measured.partitions, measured.replication_factor,
                     config=measured.topic_config(), client_settings=measured.producer_config)
        try:
            backlog, starts = _fill(measured, bootstrap, args)
            for round_number in range(1, args.rounds + 1):
                for name in names if round_number % 2 else names[::-1]:
                    if name in loops:
                        result = run_bare_consume_loop(loops[name], measured, bootstrap, starts, backlog)
                        rate, detail = result.rate, f"{result.acked:,} read in {result.elapsed_s:.2f} s"
                    elif name == BENCH_CONSUME:
                        rate, detail = _bench(measured, bootstrap, args, backlog)
                    else:
                        figures = peer.consumer_performance(measured.topic, backlog, f"bench-calibrate-{uuid.uuid4().hex}",
                                                            TOOL_START_ALLOWANCE_S + 20 * args.duration)
                        if figures.records != backlog:
                            raise RunFailed(f"{JAVA_CONSUMER} read {figures.records:,}, the backlog holds {backlog:,}")
                        rate = figures.fetch_records_per_s
                        detail = (f"{figures.records:,} read in {figures.fetch_ms / 1000:.2f} s of fetch time; "
                                  f"{figures.rebalance_ms:,} ms group join left out")
                    print(f"round {round_number}  {name:<34} {rate:>10,.0f} msg/s  ({detail})", flush=True)
                    rates[name].append(rate)
        finally:
            delete_topic(admin, measured.topic)
    return _summary(rates, format_spread, args.min_ratio)


def _fill(scenario: Scenario, bootstrap: str, args: argparse.Namespace) -> tuple[int, dict[int, int]]:
    """The backlog: a flat-out produce-only run, audited (read once) afterwards; (records, start offsets)."""
    starts = {p: low for p, (low, _) in scenario_watermarks(scenario, bootstrap).items()}
    filler = dataclasses.replace(scenario, rate=0.0, duration_s=args.duration, warmup_s=0.0)
    code, folder, result = run_scenario(filler, bootstrap, args.results_dir, "external", out=io.StringIO(),
                                        mode=PRODUCE_ONLY)
    if code != EXIT_OK:
        raise RunFailed(f"filling the backlog failed ({result['failure']}); see {folder}")
    backlog = result["counts"]["acked"]
    held = sum(high for _, high in scenario_watermarks(scenario, bootstrap).values()) - sum(starts.values())
    if held != backlog:
        raise RunFailed(f"the backlog run acked {backlog:,} but the broker's offsets grew by {held:,}")
    print(f"backlog: {backlog:,} messages ({folder})", flush=True)
    return backlog, starts


def _bench(scenario: Scenario, bootstrap: str, args: argparse.Namespace, backlog: int) -> tuple[float, str]:
    reader = dataclasses.replace(scenario, duration_s=CONSUME_ONLY_S, warmup_s=0.0)
    code, folder, result = run_scenario(reader, bootstrap, args.results_dir, "external", out=io.StringIO(),
                                        mode=CONSUME_ONLY, consume_from="beginning")
    counts = result["counts"]
    if code != EXIT_OK or counts["consumed"] != backlog:
        raise RunFailed(f"bench run --consume-only read {counts['consumed']} of {backlog:,} "
                        f"({result['failure'] or 'complete'}); see {folder}")
    throughput = result["throughput"]
    return throughput["elapsed_consumed_per_s"], (f"{counts['consumed']:,} read in {throughput['reading_s']:.2f} s, "
                                                  f"lost {counts['lost']:,}, duplicated {counts['duplicated']:,}; {folder}")


def _summary(rates: dict[str, list[float]], format_spread, min_ratio: float | None) -> int:
    for name, values in rates.items():
        print(f"{name:<34} {format_spread(spread(values), ',.0f', ' msg/s')}")
    bare = {name: spread(values).mean for name, values in rates.items() if name.startswith("bare ")}
    fastest = max(bare, key=bare.get)

    def ratio_line(numerator: str, denominator: str, target: float | None) -> Spread:
        ratio = ratio_spread(rates[numerator], rates[denominator])
        verdict = "" if target is None else f"; target >= {target:g}: {'met' if ratio.mean >= target else 'MISSED'}"
        print(f"ratio {format_spread(ratio, '.3f')}: {numerator} / {denominator}{verdict}")
        return ratio

    print(f"the bare loop (fastest): {fastest}")
    judged = ratio_line(BENCH_CONSUME, fastest, TARGET_OF_BARE)
    if JAVA_CONSUMER in rates:
        ratio_line(BENCH_CONSUME, JAVA_CONSUMER, TARGET_OF_JAVA)
        ratio_line(fastest, JAVA_CONSUMER, None)
    if min_ratio is not None and judged.mean < min_ratio:
        print(f"below --min-ratio {min_ratio:g}: ratio {judged.mean:.3f} ({BENCH_CONSUME} / {fastest})")
        return EXIT_REGRESSION
    return EXIT_OK
