"""`python -m bench calibrate`: what does measuring cost?

Side by side on the same broker, alternating (A B, then B A, ...) so drift on a shared machine
hits both: the throughput of a bare confluent-kafka produce/poll loop (examples/producer.py
style, with a delivery callback) and of `bench run` at rate 0 with full measurement (trace
header, service-time histograms, tracker process, per-second reports) — same message, same
client settings. Both count acked messages over first send -> last ack. Also prints what one
hdrh `record_value` costs and what the batched recording costs per message.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import random
import statistics
import time
import uuid

from confluent_kafka import Producer

from bench.broker.ensure import ensure_broker
from bench.commands._options import add_broker_arguments, add_results_argument
from bench.core.clients import check_client_settings, scenario_producer_config
from bench.core.delivery import payload_pool
from bench.core.producer import CLOCK_CHECK_EVERY, QUEUE_FULL_POLL_S
from bench.core.recorder import fold_latencies, record_counts
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario, merge_overrides, parse_set_option
from bench.output.results import new_latency_histogram
from streamstore.admin import connect_admin, delete_topic, ensure_topic
from streamstore.errors import EXIT_OK, EXIT_REGRESSION, RunFailed, UsageError

NAME = "calibrate"
HELP = "measure bench run's overhead: bare produce/poll loop vs bench run at rate 0, side by side"

# The measurement the target is set for: 200-byte orders, acks=all, no compression, one producer.
CALIBRATION_SCENARIO = {"name": "calibrate", "topic": "bench-calibrate", "message_size": 200, "payload": "order",
                        "compression": "none", "acks": "all", "producers": 1, "partitions": 1, "warmup_s": 0,
                        # The tracker catches up after producing; a 10 s flat-out run leaves a backlog.
                        "drain_timeout_s": 120}
RECORDING_SAMPLES = 200_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="bare/bench pairs, order alternating (default 2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change the calibration scenario, e.g. --set message_size=1KB (rate stays 0)")
    parser.add_argument("--min-ratio", type=float, default=None,
                        help="exit 1 when bench/bare is below this (e.g. 0.90); default: only print")
    add_broker_arguments(parser)
    add_results_argument(parser)


def bare_loop_throughput(scenario: Scenario, bootstrap_servers: str, duration_s: float) -> tuple[int, float]:
    """(acked, seconds from first send to last ack) of the plainest correct producer."""
    producer = Producer(scenario_producer_config(scenario, bootstrap_servers))
    producer.list_topics(scenario.topic, timeout=30)
    value = payload_pool(scenario)[0][0]
    topic = scenario.topic
    outcome = {"acked": 0, "failed": 0}

    def delivery_report(error, message):
        outcome["failed" if error is not None else "acked"] += 1

    started = time.perf_counter()
    end = started + duration_s
    sent = 0
    while sent % CLOCK_CHECK_EVERY or time.perf_counter() < end:
        try:
            producer.produce(topic, value, callback=delivery_report)
        except BufferError:
            producer.poll(QUEUE_FULL_POLL_S)
            continue
        sent += 1
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if outcome["failed"]:
        raise RunFailed(f"bare loop: {outcome['failed']:,} deliveries failed")
    return outcome["acked"], elapsed


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


def _measure(which: str, scenario: Scenario, bootstrap_servers: str, args: argparse.Namespace, round_number: int) -> float:
    """Acked msg/s of one bare loop or one `bench run`, printed as one line."""
    if which == "bare":
        acked, elapsed = bare_loop_throughput(scenario, bootstrap_servers, args.duration)
        print(f"round {round_number}  bare loop  {acked / elapsed:>10,.0f} msg/s  ({acked:,} acked in {elapsed:.2f} s)", flush=True)
        return acked / elapsed
    code, folder, result = run_scenario(scenario, bootstrap_servers, args.results_dir, "external",
                                        out=io.StringIO(), write_report=False)
    if code != EXIT_OK:
        raise RunFailed(f"bench run failed ({result['failure']}); see {folder}")
    rate = result["throughput"]["acked_per_s"]
    end_to_end = result["latency_us"]["end_to_end"]
    print(f"round {round_number}  bench run  {rate:>10,.0f} msg/s  ({result['counts']['acked']:,} acked "
          f"in {result['throughput']['elapsed_s']:.2f} s, consumed {result['counts']['consumed']:,}, "
          f"{result['audit']} audit: lost {result['counts']['lost']:,}, duplicated {result['counts']['duplicated']:,}; "
          f"service time p99 {result['latency_us']['service_time']['p99'] / 1000:.1f} ms, end-to-end sampled "
          f"1/{end_to_end['sample_every']}; {folder})", flush=True)
    return rate


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration:g}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
    overrides = dict(parse_set_option(text) for text in args.overrides)
    values = merge_overrides(CALIBRATION_SCENARIO, overrides)
    values.update(rate=0, duration_s=args.duration)
    scenario = Scenario.from_mapping(values, source="calibration scenario")
    print(f"calibrate: {scenario.message_size:,}-byte {scenario.payload} messages, acks={scenario.acks}, "
          f"compression {scenario.compression}, {scenario.producers} producer(s), {args.duration:g} s per "
          f"measurement, {args.rounds} round(s), broker {args.bootstrap_servers}", flush=True)
    check_client_settings(scenario, args.bootstrap_servers)
    bare_rates, bench_rates = [], []
    with ensure_broker(args.bootstrap_servers, args.broker, keep=args.keep_broker,
                       announce=lambda line: print(line, flush=True)) as broker:
        admin = connect_admin(broker.bootstrap_servers, scenario.producer_config)
        for round_number in range(1, args.rounds + 1):
            order = ("bare", "bench") if round_number % 2 else ("bench", "bare")
            for which in order:
                # A fresh topic per measurement, deleted after it: flat out, each one writes
                # gigabytes the broker would otherwise keep for its 7-day retention.
                measured = dataclasses.replace(scenario, topic=f"{scenario.topic}-{uuid.uuid4().hex[:8]}")
                ensure_topic(admin, measured.topic, measured.partitions, measured.replication_factor,
                             config=measured.topic_config())
                try:
                    rate = _measure(which, measured, broker.bootstrap_servers, args, round_number)
                finally:
                    delete_topic(admin, measured.topic)
                (bare_rates if which == "bare" else bench_rates).append(rate)
    bare, bench = statistics.fmean(bare_rates), statistics.fmean(bench_rates)
    ratio = bench / bare
    per_call, per_message = recording_cost_us()
    print(f"bare loop  {bare:>10,.0f} msg/s (mean of {len(bare_rates)})")
    print(f"bench run  {bench:>10,.0f} msg/s (mean of {len(bench_rates)})")
    print(f"ratio      {ratio:.3f} (bench run / bare loop; target >= 0.90)")
    print(f"recording: hdrh record_value {per_call:.2f} µs per call; batched (Counter, one record_value per "
          f"distinct µs) {per_message:.3f} µs per message, off the producer process")
    if args.min_ratio is not None and ratio < args.min_ratio:
        print(f"below --min-ratio {args.min_ratio:g}")
        return EXIT_REGRESSION
    return EXIT_OK
