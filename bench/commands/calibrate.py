"""`python -m bench calibrate`: what does measuring cost?

Side by side on the same broker, alternating (A B C, then C B A, ...) so drift on a shared
machine hits all alike: the throughput of four bare confluent-kafka loops
(`bench/peers/bare_loops.py`: produce()+callback, produce_batch()+callback, produce_batch() with
failures-only reports, produce_batch() without callbacks), of `bench run` at rate 0 with full
measurement (trace header, tracker process, audit, per-second reports), of the same with
`--produce-only` (its tracker reads the topic after producing: what reading during the run
costs, on cores the tracker shares with the producer and the broker) and, with `--peer java`,
of Kafka's own Java ProducerPerformance — same message, same producer settings. All count acked
messages over first send -> last ack. `bench run` is judged against the fastest bare loop that
keeps exact counts. Every rate and ratio is shown as mean ± spread over the rounds
(bench/analysis/stats.py), each ratio taken round by round. Also prints what one hdrh
`record_value` costs and what the batched recording costs per message.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import random
import statistics
import time
import uuid

from bench.analysis.stats import Spread, ratio_spread, spread
from bench.broker.ensure import ensure_broker
from bench.commands._options import add_broker_arguments, add_results_argument
from bench.core.clients import check_client_settings, scenario_watermarks
from bench.core.delivery import payload_pool
from bench.core.recorder import fold_latencies, record_counts
from bench.core.run_modes import BOTH, PRODUCE_ONLY
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario, merge_overrides, parse_set_option
from bench.peers.bare_loops import BARE_LOOPS, BareLoop, run_bare_loop
from bench.peers.java import TOOL_START_ALLOWANCE_S, JavaPeer
from bench.results.formatting import format_us
from bench.results.histograms import new_latency_histogram
from bench.results.metrics import METRICS
from streamstore.admin import connect_admin, delete_topic, ensure_topic
from streamstore.errors import EXIT_OK, EXIT_REGRESSION, RunFailed, UsageError

NAME = "calibrate"
HELP = "measure bench run's overhead: bare confluent-kafka loops (and Kafka's Java producer) vs bench run, side by side"

# The measurement the target is set for: 200-byte orders, acks=all, no compression, one producer.
CALIBRATION_SCENARIO = {"name": "calibrate", "topic": "bench-calibrate", "message_size": 200, "payload": "order",
                        "compression": "none", "acks": "all", "producers": 1, "partitions": 1, "warmup_s": 0,
                        # The tracker catches up after producing; a 10 s flat-out run leaves a backlog.
                        "drain_timeout_s": 120}
RECORDING_SAMPLES = 200_000
BENCH_RUN = "bench run"
BENCH_RUN_PRODUCE_ONLY = "bench run --produce-only"
HARNESS_MODES = {BENCH_RUN: BOTH, BENCH_RUN_PRODUCE_ONLY: PRODUCE_ONLY}
JAVA = "Java ProducerPerformance"
# ProducerPerformance sends a count, not for a duration: duration x its own last rate, or in
# round 1 the median rate of the loops measured before it (the harness goes first in round 1),
# or this when nothing was measured yet. Its line shows how long it really took.
JAVA_GUESS_MSG_PER_S = 500_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of every loop, order reversed each round (default 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the calibration scenario, e.g. --set message_size=1KB (rate stays 0)")
    parser.add_argument("--min-ratio", type=float, default=None,
                        help="exit 1 when bench run / the fastest bare loop (mean of the rounds' ratios) is below "
                             "this (e.g. 0.90); default: only print")
    parser.add_argument("--peer", choices=("java",), default=None,
                        help="also measure Kafka's own Java producer (ProducerPerformance from the broker's "
                             "Kafka version) with the same message and producer settings; with --side consumer "
                             "its consumer (ConsumerPerformance) on the same backlog")
    parser.add_argument("--side", choices=("producer", "consumer"), default="producer",
                        help="producer (default): the send path; consumer: one consume-only tracker against a "
                             "backlog of --duration seconds of flat-out orders, beside bare consume loops")
    add_broker_arguments(parser)
    add_results_argument(parser)


def recording_cost_us(samples: int = RECORDING_SAMPLES) -> tuple[float, float]:
    """(µs per record_value call, µs per message for the batched fold) on lognormal latencies."""
    rng = random.Random(1)
    latencies_s = [round(rng.lognormvariate(8.5, 0.7)) / 1e6 for _ in range(samples)]
    latencies_us = [round(value * 1e6) for value in latencies_s]
    histogram = new_latency_histogram()
    started = time.perf_counter()
    for value in latencies_us:
        histogram.record_value(value)
    per_call = (time.perf_counter() - started) / samples * 1e6
    histogram = new_latency_histogram()
    started = time.perf_counter()
    record_counts(histogram, fold_latencies(latencies_s, to_us=1_000_000))
    per_message = (time.perf_counter() - started) / samples * 1e6
    return per_call, per_message




def _bare(loop: BareLoop, scenario: Scenario, bootstrap_servers: str, args: argparse.Namespace, round_number: int) -> float:
    result = run_bare_loop(loop, scenario, bootstrap_servers, payload_pool(scenario)[0][0], args.duration)
    print(f"round {round_number}  {'bare ' + loop.name:<34} {result.rate:>10,.0f} msg/s  "
          f"({result.acked:,} acked in {result.elapsed_s:.2f} s)", flush=True)
    return result.rate


def _bench_run(name: str, scenario: Scenario, bootstrap_servers: str, args: argparse.Namespace,
               round_number: int) -> float:
    code, folder, result = run_scenario(scenario, bootstrap_servers, args.results_dir, "external",
                                        out=io.StringIO(), mode=HARNESS_MODES[name])
    if code != EXIT_OK:
        raise RunFailed(f"bench run failed ({result['failure']}); see {folder}")
    # acked / (first send -> last ack), as the bare loops are timed; not the measured window.
    rate = result["throughput"]["elapsed_acked_per_s"]
    end_to_end = result["latency_us"].get("end_to_end")
    end_to_end_text = (f"end-to-end sampled 1/{end_to_end['sample_every']}" if end_to_end
                       else "no end-to-end: the tracker read after producing")
    service = result["latency_us"]["service_time"]
    if service.get("not_measured"):  # failures-only reports: librdkafka's round trip instead
        rtt = (result.get("client_latency_us") or {}).get("rtt") or {}
        service_text = f"{METRICS['rtt_p99'].label} {format_us(rtt.get('p99'))}"
    else:
        service_text = (f"{METRICS['service_time_p99'].label} {format_us(METRICS['service_time_p99'].read(result))} "
                        f"sampled 1/{service['sample_every']}")
    print(f"round {round_number}  {name:<34} {rate:>10,.0f} msg/s  ({result['counts']['acked']:,} acked "
          f"in {result['throughput']['elapsed_s']:.2f} s, consumed {result['counts']['consumed']:,}, "
          f"delivery reports {result['scenario']['delivery_reports']}, {result['audit']} audit: "
          f"lost {result['counts']['lost']:,}, duplicated {result['counts']['duplicated']:,}; "
          f"{service_text}, {end_to_end_text}; {folder})", flush=True)
    return rate


def _java_rate_guess(rates: dict[str, list[float]]) -> float:
    if rates.get(JAVA):
        return rates[JAVA][-1]
    measured = [rate for name, values in rates.items() for rate in values]
    return statistics.median(measured) if measured else JAVA_GUESS_MSG_PER_S


def _java(peer: JavaPeer, scenario: Scenario, args: argparse.Namespace, round_number: int, guess: float) -> float:
    records = max(1, round(args.duration * guess))
    figures = peer.producer_performance(scenario, scenario.topic, records, payload_pool(scenario)[0],
                                        TOOL_START_ALLOWANCE_S + 10 * args.duration)
    # The tool counts its acks; the topic is fresh, so its offsets must have grown by as many.
    stored = sum(high for _, high in scenario_watermarks(scenario, peer.bootstrap_servers).values())
    if stored != figures.records:
        raise RunFailed(f"{JAVA}: it reported {figures.records:,} acked but the broker's offsets grew by {stored:,}")
    print(f"round {round_number}  {JAVA:<34} {figures.records_per_s:>10,.0f} msg/s  ({figures.records:,} acked in "
          f"{figures.records / figures.records_per_s:.2f} s; its latency avg {figures.avg_latency_ms:,.1f} ms, "
          f"p99 {figures.p99_ms:,} ms)", flush=True)
    return figures.records_per_s


def _order(names: list[str], round_number: int) -> list[str]:
    return names if round_number % 2 else names[::-1]


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration:g}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
    overrides = dict(parse_set_option(text) for text in args.overrides)
    values = merge_overrides(CALIBRATION_SCENARIO, overrides)
    values.update(rate=0, duration_s=args.duration)
    scenario = Scenario.from_mapping(values, source="calibration scenario")
    if args.side == "consumer":
        from bench.commands._calibrate_consumer import run_consumer_side  # it uses this module's format_spread

        return run_consumer_side(args, scenario, format_spread)
    if args.peer == "java" and scenario.producer_config:
        raise UsageError("--peer java: producer_config holds librdkafka settings, which the Java client does not "
                         "take; calibrate without them")
    print(f"calibrate: {scenario.message_size:,}-byte {scenario.payload} messages, acks={scenario.acks}, "
          f"compression {scenario.compression}, linger.ms {scenario.linger_ms:g}, batch.size {scenario.batch_size:,}, "
          f"{scenario.producers} producer(s), {args.duration:g} s per measurement, {args.rounds} round(s), "
          f"broker {args.bootstrap_servers}"
          + (f", judged against --min-ratio {args.min_ratio:g}" if args.min_ratio is not None else ""), flush=True)
    check_client_settings(scenario, args.bootstrap_servers)
    loops = {f"bare {loop.name}": loop for loop in BARE_LOOPS}
    names = [*loops, *HARNESS_MODES] + ([JAVA] if args.peer == "java" else [])
    rates: dict[str, list[float]] = {name: [] for name in names}
    with ensure_broker(args.bootstrap_servers, args.broker, keep=args.keep_broker,
                       announce=lambda line: print(line, flush=True)) as broker:
        peer = JavaPeer(broker.bootstrap_servers, broker.version) if args.peer == "java" else None
        if peer:
            print(f"peer: {peer.describe()}", flush=True)
        admin = connect_admin(broker.bootstrap_servers, scenario.producer_config)
        for round_number in range(1, args.rounds + 1):
            for name in _order(names, round_number):
                # A fresh topic per measurement, deleted after it: flat out, each one writes
                # gigabytes the broker would otherwise keep for its 7-day retention.
                measured = dataclasses.replace(scenario, topic=f"{scenario.topic}-{uuid.uuid4().hex[:8]}")
                ensure_topic(admin, measured.topic, measured.partitions, measured.replication_factor,
                             config=measured.topic_config(), client_settings=measured.producer_config)
                try:
                    if name in loops:
                        rate = _bare(loops[name], measured, broker.bootstrap_servers, args, round_number)
                    elif name in HARNESS_MODES:
                        rate = _bench_run(name, measured, broker.bootstrap_servers, args, round_number)
                    else:
                        rate = _java(peer, measured, args, round_number, _java_rate_guess(rates))
                finally:
                    delete_topic(admin, measured.topic)
                rates[name].append(rate)
    reporting = {name for name, loop in loops.items() if loop.exact_counts}
    return _summary(rates, reporting, args.min_ratio)


def format_spread(figures: Spread, number_format: str, unit: str = "") -> str:
    """"0.930 ± 0.040 (0.890-0.970, 3 rounds)", pyperf's way of showing repeated measurements;
    one round has no spread to show."""
    def number(value: float) -> str:
        return format(value, number_format)

    if figures.rounds == 1:
        return f"{number(figures.mean)}{unit} (1 round, no spread)"
    return (f"{number(figures.mean)} ± {number(figures.spread)}{unit} "
            f"({number(figures.low)}-{number(figures.high)}, {figures.rounds} rounds)")


def _summary(rates: dict[str, list[float]], reporting: set[str], min_ratio: float | None) -> int:
    """reporting: the bare loops that keep exact acked counts (a report per message, or failures-only
    reports), as the audit must.

    Each ratio is taken round by round (both loops measured in that round) and shown as mean ±
    spread over the rounds; --min-ratio judges the mean of bench run / the fastest loop that keeps
    exact counts."""
    for name, values in rates.items():
        print(f"{name:<34} {format_spread(spread(values), ',.0f', ' msg/s')}")
    means = {name: spread(values).mean for name, values in rates.items()}
    bare = {name: mean for name, mean in means.items() if name.startswith("bare ")}
    fastest_name = max(bare, key=bare.get)
    print(f"the bare loop (fastest): {fastest_name}")
    target = (f"target >= {min_ratio:g} (--min-ratio)" if min_ratio is not None
              else "no target: give --min-ratio to judge it")

    def ratio_line(numerator: str, denominator: str, note: str = "") -> Spread:
        ratio = ratio_spread(rates[numerator], rates[denominator])
        print(f"ratio {format_spread(ratio, '.3f')}: {numerator} / {denominator}{note}")
        return ratio

    # Exact counts need a report per message or failures-only reports; the fastest loop that
    # keeps them is what the harness can at best approach, and what it is judged against.
    reporting_name = max(reporting & bare.keys(), key=bare.get, default=fastest_name)
    if reporting_name == fastest_name:
        ratio = ratio_line(BENCH_RUN, fastest_name, f", the fastest loop that keeps exact counts; {target}")
    else:
        ratio_line(BENCH_RUN, fastest_name)
        ratio = ratio_line(BENCH_RUN, reporting_name, f", the fastest loop that keeps exact counts; {target}")
        ratio_line(reporting_name, fastest_name, ": what keeping exact counts costs")
    if BENCH_RUN_PRODUCE_ONLY in rates:
        ratio_line(BENCH_RUN_PRODUCE_ONLY, reporting_name, ": the harness with its tracker reading after producing")
        ratio_line(BENCH_RUN, BENCH_RUN_PRODUCE_ONLY, ": what the tracker reading during the run costs")
    if JAVA in means:
        ratio_line(BENCH_RUN, JAVA)
        ratio_line(fastest_name, JAVA)
    per_call, per_message = recording_cost_us()
    print(f"recording: hdrh record_value {per_call:.2f} µs per call; batched (Counter, one record_value per "
          f"distinct µs) {per_message:.3f} µs per message, off the producer process")
    if min_ratio is None:
        return EXIT_OK
    if ratio.mean < min_ratio:
        print(f"below --min-ratio {min_ratio:g}: ratio {ratio.mean:.3f} (bench run / {reporting_name})")
        return EXIT_REGRESSION
    print(f"meets --min-ratio {min_ratio:g}: ratio {ratio.mean:.3f} (bench run / {reporting_name})")
    return EXIT_OK
