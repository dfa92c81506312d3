"""A Locust Kafka user that keeps gevent running, with exact HDR latencies merged across workers.

Locust runs every user of a process on one gevent loop, so any confluent-kafka call that waits
(poll(t>0), flush, consume, close, watermark queries) stalls the whole process. Here:

- each worker process has one producer, created on test_start (after Locust forked it and
  after the master's options arrived), never at import;
- tasks only call produce(); a full local queue (BufferError) yields with gevent.sleep while
  the one background greenlet serves delivery reports with poll(0);
- every delivery fires Locust's `request` event, and its raw latency is appended to a list;
  each report (every 3 s) folds the lists into per-second HdrHistograms (µs), shipped encoded
  with `report_to_master` and added up on the master in `worker_report` (Locust's own
  percentiles keep about two significant digits);
- the master (or the local runner) starts `bench run`'s tracker process once per test for
  end-to-end latency, consumer lag and the lost/duplicate audit, and at test end writes the same
  result folder as `bench run` (kind "locust"), then checks the `--check` thresholds;
- flat out, as in `bench run`, only every 64th message carries the trace header and the loss
  audit compares acked with consumed offsets; at a fixed rate every message is traced.

`scenarios/orders.py` is the locustfile; `register(events)` wires these hooks to an Events.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import multiprocessing.connection
import operator
import re
import socket
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gevent
from confluent_kafka import KafkaError, KafkaException, Message
from locust import LoadTestShape, User, task
from locust.runners import STATE_RUNNING, STATE_SPAWNING, LocalRunner, MasterRunner, WorkerRunner

from bench.analysis.stats import derive_warnings, series_samples
from bench.broker.embedded import describe_broker_settings
from bench.core.recorder import OffsetRanges, RunRecorder, audit_offsets, fold_latencies, lost_sequences, offset_ranges, record_counts
from bench.core.runner import (
    CHILD_START_TIMEOUT_S,
    NS_PER_S,
    audits_offsets,
    payload_pool,
    scenario_producer_config,
    trace_sample_every,
    tracker_main,
)
from bench.core.scenario import Scenario, merge_overrides, parse_set_option
from bench.output.report import write_run_report
from bench.output.results import (
    DEFAULT_RESULTS_ROOT,
    decode_histogram,
    encode_histogram,
    environment_metadata,
    new_latency_histogram,
    run_folder,
    utc_iso,
    write_interval_log,
    write_result,
)
from streamstore.admin import connect_admin, ensure_topic, topic_configs, topic_watermarks
from streamstore.config import default_bootstrap_servers
from streamstore.errors import EXIT_REGRESSION, EXIT_RUN_FAILED, RunFailed, StreamStoreError, UsageError
from streamstore.producer import OrderProducer
from streamstore.trace import TRACE_HEADER, TRACE_STRUCT, read_trace

logger = logging.getLogger(__name__)

RESULT_NAME_PREFIX = "locust-"
# The worker name of the local runner's own producer in the merged counts.
LOCAL_WORKER = "local"

# A flat-out user produces this many messages per task run before yielding: enough to make
# Locust's per-task overhead negligible, few enough that the poll greenlet runs every ~millisecond.
FLAT_OUT_BATCH = 100
# Sleep of a producer whose local queue is full, and of the poll greenlet when no delivery
# report was waiting: short, so deliveries are timed close to when librdkafka has them.
QUEUE_FULL_WAIT_S = 0.001
IDLE_POLL_WAIT_S = 0.0005
# How long the master waits for each worker's last report after the workers stopped (Locust
# workers report every 3 s).
FINAL_REPORT_TIMEOUT_S = 10.0
# How often the gevent side reads the tracker process's reports while it waits for one.
TRACKER_PUMP_INTERVAL_S = 0.05
# After its drain time the tracker still sends its final report and exits; this long at most.
TRACKER_EXIT_GRACE_S = 5.0
# Seconds between the master's live status lines.
STATUS_INTERVAL_S = 5.0

# Option names (dest) of the Kafka arguments; values None mean "not given" so a scenario
# file's field stays as it is.
_SCENARIO_OPTIONS = {
    "kafka_topic": "topic",
    "kafka_partitions": "partitions",
    "message_size": "message_size",
    "payload": "payload",
    "compression": "compression",
    "compression_level": "compression_level",
    "acks": "acks",
    "linger_ms": "linger_ms",
    "warmup": "warmup_s",
}


# ---------------------------------------------------------------------------------------------
# Options


def add_arguments(parser) -> None:
    """Locust custom arguments (so LOCUST_<NAME> env vars and locust.conf work too)."""
    # On the parser itself, not a group: only Locust's add_argument knows is_secret, and only
    # parser arguments appear in the web UI.
    def add(flag: str, **kwargs) -> None:
        # Locust reads LOCUST_<NAME> only for arguments that name their environment variable.
        parser.add_argument(flag, env_var="LOCUST_" + flag[2:].upper().replace("-", "_"), **kwargs)

    add("--kafka-bootstrap-servers", default=default_bootstrap_servers(),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092)")
    add("--scenario", default="",
        help="scenario TOML to start from (the files of `bench run`); the options below override it")
    add("--kafka-topic", default=None, help="topic to produce to (default: bench-orders)")
    add("--kafka-partitions", type=int, default=None, help="partitions when the topic is created")
    add("--message-size", default=None, help="message value size: 200, 1KB, 1MB ... (default 200)")
    add("--payload", default=None, help="order | text | random (default order)")
    add("--compression", default=None, help="none | gzip | snappy | lz4 | zstd (default none)")
    add("--compression-level", type=int, default=None, help="codec level, -1 = codec default")
    add("--acks", default=None, help="all | 1 | 0 (default all)")
    add("--linger-ms", type=float, default=None, help="librdkafka linger.ms (default 5)")
    add("--warmup", type=float, default=None,
        help="seconds at the start left out of the summary percentiles (default 0)")
    add("--user-rate", type=float, default=None,
        help="messages/s per user; 0 = as fast as possible (default: the scenario's rate "
        "divided by --users, else 0)")
    add("--load-steps", default="",
        help="user-count steps USERS@SECONDS,... (e.g. 2@10,4@10,8@20); -r sets the ramp between them")
    add("--kafka-config", default="",
        help="extra librdkafka producer settings KEY=VALUE,KEY=VALUE (e.g. security.protocol=SASL_SSL)")
    add("--sasl-username", default="", help="sasl.username for the producer and tracker")
    add("--sasl-password", default="", is_secret=True,
        help="sasl.password (shown masked in the web UI, never written to results)")
    add("--check", default="",
        help="thresholds, comma-separated, e.g. 'p99_delivery_ms<50,p99_e2e_ms<200': "
        "exit code 1 when one fails")
    add("--no-tracker", action="store_true", default=False,
        help="skip the tracker (no end-to-end latency, lag or loss audit)")
    add("--results-dir", default=str(DEFAULT_RESULTS_ROOT), help="where run folders go (default results)")


def _parse_key_values(text: str, option: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        try:
            key, value = parse_set_option(item)
        except UsageError:
            raise UsageError(f"--{option} {item!r}: expected KEY=VALUE (e.g. socket.timeout.ms=60000)") from None
        settings[key] = value
    return settings


def scenario_from_options(options) -> Scenario:
    """The Scenario of a Locust run: the --scenario file (if any) with the options applied."""
    overrides: dict[str, Any] = {
        field: getattr(options, dest) for dest, field in _SCENARIO_OPTIONS.items() if getattr(options, dest) is not None
    }
    for key, value in _parse_key_values(options.kafka_config, "kafka-config").items():
        overrides[f"producer_config.{key}"] = value
    for key, value in _sasl_settings(options).items():
        overrides[f"producer_config.{key}"] = value
        overrides[f"consumer_config.{key}"] = value
    if options.scenario:
        base = Scenario.from_toml(options.scenario)
        if base.phases:
            raise UsageError(f"{options.scenario}: rate phases do not apply to Locust; use --load-steps for steps")
        values = {**base.to_dict(), "producer_config": dict(base.producer_config),
                  "consumer_config": dict(base.consumer_config)}
        values.pop("phases")
        name = RESULT_NAME_PREFIX + base.name
    else:
        values = {"warmup_s": 0.0}
        name = RESULT_NAME_PREFIX + "orders"
    values["name"] = name
    merged = merge_overrides(values, overrides)
    # Locust's -t decides how long the test runs; the result records the real duration.
    merged["duration_s"] = max(float(merged.get("duration_s") or 0), float(merged.get("warmup_s") or 0) + 1)
    return Scenario.from_mapping(merged, source="locust options")


def _sasl_settings(options) -> dict[str, str]:
    settings = {}
    if options.sasl_username:
        settings["sasl.username"] = options.sasl_username
    if options.sasl_password:
        settings["sasl.password"] = options.sasl_password
    return settings


def user_rate(options, scenario: Scenario) -> float:
    """Messages per second for one user (0 = flat out)."""
    if options.user_rate is not None:
        if options.user_rate < 0 or options.user_rate != options.user_rate:
            raise UsageError(f"--user-rate: {options.user_rate} must be 0 (flat out) or a positive rate")
        return float(options.user_rate)
    if options.scenario and scenario.rate:
        return scenario.rate / max(1, options.num_users or 1)
    return 0.0


_LOAD_STEP = re.compile(r"^\s*(\d+)\s*@\s*(\d+(?:\.\d+)?)\s*s?\s*$")


def parse_load_steps(text: str) -> tuple[tuple[int, float], ...]:
    """`2@10,4@10,8@20` -> ((2, 10.0), (4, 10.0), (8, 20.0)): users held for seconds."""
    steps = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        match = _LOAD_STEP.match(item)
        if not match or int(match[1]) < 0 or float(match[2]) <= 0:
            raise UsageError(f"--load-steps {item!r}: expected USERS@SECONDS (e.g. 4@10), seconds > 0")
        steps.append((int(match[1]), float(match[2])))
    return tuple(steps)


# ---------------------------------------------------------------------------------------------
# Thresholds (pure)


@dataclasses.dataclass(frozen=True)
class Threshold:
    text: str
    metric: str  # latency "service_time.p99" etc., or a count/throughput name
    compare: str  # "<", "<=", ">", ">="
    limit: float  # in the metric's stored unit (µs for latencies)


_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_LATENCY_STATS = ("p50", "p90", "p99", "p99_9", "p99_99", "max", "mean")
_LATENCY_METRICS = {"delivery": "service_time", "e2e": "end_to_end", "response": "response_time"}
_LATENCY_UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000}
_OTHER_METRICS = ("delivered_per_s", "failed", "lost", "duplicated")
_THRESHOLD = re.compile(r"^(?P<metric>[a-z0-9_]+?)\s*(?P<compare><=|>=|<|>)\s*(?P<limit>\d+(?:\.\d+)?)$")
_LATENCY_NAME = re.compile(rf"^(?P<stat>{'|'.join(_LATENCY_STATS)})_(?P<kind>{'|'.join(_LATENCY_METRICS)})_(?P<unit>us|ms|s)$")


def parse_thresholds(text: str) -> list[Threshold]:
    """`p99_delivery_ms<50,p99_9_e2e_ms<200,failed<=0,delivered_per_s>=1000`."""
    thresholds = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        match = _THRESHOLD.match(item)
        if not match:
            raise UsageError(f"--check {item!r}: expected METRIC<LIMIT (e.g. p99_delivery_ms<50)")
        latency = _LATENCY_NAME.match(match["metric"])
        limit = float(match["limit"])
        if latency:
            metric = f"{_LATENCY_METRICS[latency['kind']]}.{latency['stat']}"
            limit *= _LATENCY_UNITS_US[latency["unit"]]
        elif match["metric"] in _OTHER_METRICS:
            metric = match["metric"]
        else:
            raise UsageError(
                f"--check {item!r}: unknown metric {match['metric']!r} (STAT_KIND_UNIT with STAT in "
                f"{'/'.join(_LATENCY_STATS)}, KIND in {'/'.join(_LATENCY_METRICS)}, UNIT us/ms/s; "
                f"or {', '.join(_OTHER_METRICS)})"
            )
        thresholds.append(Threshold(item, metric, match["compare"], limit))
    return thresholds


def threshold_value(threshold: Threshold, result: Mapping[str, Any]) -> float | None:
    if "." in threshold.metric:
        kind, stat = threshold.metric.split(".")
        return ((result.get("latency_us") or {}).get(kind) or {}).get(stat)
    if threshold.metric == "delivered_per_s":
        samples = series_samples(result, "acked")
        return sum(samples) / len(samples) if samples else None
    return (result.get("counts") or {}).get(threshold.metric)


def failed_thresholds(thresholds: Sequence[Threshold], result: Mapping[str, Any]) -> list[str]:
    """One line per threshold the result does not meet (a missing value does not meet it)."""
    failures = []
    for threshold in thresholds:
        value = threshold_value(threshold, result)
        if value is None:
            failures.append(f"{threshold.text}: no value measured")
        elif not _COMPARISONS[threshold.compare](value, threshold.limit):
            shown = f"{value / 1000:g} ms" if "." in threshold.metric else f"{value:g}"
            failures.append(f"{threshold.text}: measured {shown}")
    return failures


# ---------------------------------------------------------------------------------------------
# Histograms travelling between processes


def histogram_counts(encoded: str) -> dict[int, int]:
    """(value, count) pairs of an encoded histogram; recording them again rebuilds it exactly
    (each value is its bucket's representative, so it lands in the same bucket)."""
    histogram = decode_histogram(encoded)
    return {item.value_iterated_to: item.count_at_value_iterated_to for item in histogram.get_recorded_iterator()}


def encode_latencies(values: list, to_us: float = 1) -> str | None:
    """One report's raw latencies (µs, or librdkafka's seconds with to_us=1e6) as an encoded
    histogram; folded first, so a value shared by many messages is recorded once."""
    if not values:
        return None
    histogram = new_latency_histogram()
    record_counts(histogram, fold_latencies(values, to_us))
    return encode_histogram(histogram)


# ---------------------------------------------------------------------------------------------
# Worker side: one producer per process


class WorkerProducer:
    """The producer of one Locust process and what it measured since the last report.

    Per delivery only what Locust needs (its request event) and one list append run; the
    histograms are built from the raw values when a report is taken (every 3 s). The current
    second's values live in plain lists that the poll greenlet moves away when the second ends.
    """

    def __init__(self, environment, scenario: Scenario, run_id: bytes, started_at: float, producer_index: int):
        self.environment = environment
        self.scenario = scenario
        self.run_id = run_id
        self.started_at = started_at
        self.producer_index = producer_index
        self.producer = OrderProducer(scenario_producer_config(scenario, options_bootstrap(environment)),
                                      scenario.topic)
        self.client = self.producer.client
        self.sequence = 0
        self.final = False
        # The same payloads as `bench run` sends, so the two measure the same thing.
        self._values, self._keys = payload_pool(scenario)
        # The current second: counts and raw latencies (service in seconds as librdkafka gives
        # them, response and send delay in µs); emptied in place, the delivery callback holds them.
        self._second = int(time.time() - started_at)
        self._sent = self._failed = self._failed_untraced = 0
        self._service_s: list[float] = []
        self._response_us: list[int] = []
        self._send_delay_us: list[int] = []
        # Earlier seconds not reported yet: second -> [sent, acked, failed, service s, response µs, send delay µs].
        self._seconds: dict[int, list] = {}
        self._failed_sequences: list[int] = []
        # Flat out, as in `bench run`: the trace header on every n-th message only, and the
        # loss audit by the acked offsets (per partition, this second) instead of sequences.
        self._untraced_mask = trace_sample_every(scenario) - 1
        self._acked_offsets: defaultdict[int, list[int]] = defaultdict(list)
        self._acked_ranges: dict[int, OffsetRanges] = defaultdict(OffsetRanges)
        self.totals = Counter()
        self._on_delivery = self._flat_out_callback()
        self._poller = gevent.spawn(self._poll_forever)

    def _flat_out_callback(self):
        """The delivery callback of flat-out sends, shared by every message: a closure over
        bound methods, so a delivery costs one append and Locust's request event."""
        record_service = self._service_s.append
        fire_request = self.environment.events.request.fire
        failed = self._on_failed
        topic = self.scenario.topic
        if not audits_offsets(self.scenario):
            def on_delivery(error: KafkaError | None, message: Message) -> None:
                latency_s = message.latency()
                if error is None:
                    record_service(latency_s)
                    fire_request(request_type="produce", name=topic, response_time=latency_s * 1000.0,
                                 response_length=len(message), exception=None, context={})
                else:
                    failed(error, message, latency_s, None)

            return on_delivery
        acked_offsets = self._acked_offsets

        def on_delivery_with_offset(error: KafkaError | None, message: Message) -> None:
            latency_s = message.latency()
            if error is None:
                record_service(latency_s)
                acked_offsets[message.partition()].append(message.offset())
                fire_request(request_type="produce", name=topic, response_time=latency_s * 1000.0,
                             response_length=len(message), exception=None, context={})
            else:
                failed(error, message, latency_s, None)

        return on_delivery_with_offset

    def send_flat_out(self, count: int) -> None:
        """Produce `count` orders back to back (one Locust task run)."""
        produce, pack, time_ns = self.client.produce, TRACE_STRUCT.pack, time.time_ns
        topic, values, keys, run_id, index = self.scenario.topic, self._values, self._keys, self.run_id, self.producer_index
        mask, untraced_mask, on_delivery = len(values) - 1, self._untraced_mask, self._on_delivery
        # Users of this process share the sequence; nothing else runs until this yields.
        sequence, remaining = self.sequence, count
        while remaining:
            slot = sequence & mask
            try:
                produce(topic, values[slot], keys[slot], on_delivery=on_delivery,
                        headers=None if sequence & untraced_mask else {TRACE_HEADER: pack(run_id, index, sequence, time_ns())})
            except BufferError:
                self._sent += sequence - self.sequence
                self.sequence = sequence
                # The poll greenlet frees the queue; a blocking poll here would stall every user.
                gevent.sleep(QUEUE_FULL_WAIT_S)
                sequence = self.sequence
                continue
            sequence += 1
            remaining -= 1
        self._sent += sequence - self.sequence
        self.sequence = sequence

    def send(self, intended_ns: int) -> None:
        """Produce one order scheduled for intended_ns (perf_counter_ns), at a fixed rate."""
        while True:
            sequence = self.sequence
            slot = sequence & (len(self._values) - 1)
            send_delay_us = max(0, (time.perf_counter_ns() - intended_ns) // 1000)
            try:
                self.client.produce(self.scenario.topic, self._values[slot], self._keys[slot],
                                    on_delivery=functools.partial(self._on_scheduled_delivery, sequence, send_delay_us),
                                    headers={TRACE_HEADER: TRACE_STRUCT.pack(self.run_id, self.producer_index,
                                                                             sequence, time.time_ns())})
                break
            except BufferError:
                gevent.sleep(QUEUE_FULL_WAIT_S)
        self.sequence = sequence + 1
        self._send_delay_us.append(send_delay_us)
        self._sent += 1

    def _on_scheduled_delivery(self, sequence: int, send_delay_us: int, error: KafkaError | None,
                               message: Message) -> None:
        latency_s = message.latency()
        if error is not None:
            self._on_failed(error, message, latency_s, sequence)
            return
        self._service_s.append(latency_s)
        self._response_us.append(round(latency_s * 1_000_000) + send_delay_us)
        self.environment.events.request.fire(request_type="produce", name=self.scenario.topic,
                                             response_time=latency_s * 1000.0, response_length=len(message),
                                             exception=None, context={})

    def _on_failed(self, error: KafkaError, message: Message, latency_s: float, sequence: int | None) -> None:
        self._failed += 1
        if sequence is None:
            trace = read_trace(message.headers())
            sequence = trace.sequence if trace is not None else None
        if sequence is None:
            # Some failed reports carry no headers ("Message size too large"): its sequence is
            # unknown, so the loss audit is corrected by the count.
            self._failed_untraced += 1
        else:
            self._failed_sequences.append(sequence)
        self.environment.events.request.fire(request_type="produce", name=self.scenario.topic,
                                             response_time=latency_s * 1000.0, response_length=len(message),
                                             exception=KafkaException(error), context={})

    def _close_second(self, force: bool = False) -> None:
        """Move the current second's data to _seconds once the clock is past it."""
        second = int(time.time() - self.started_at)
        if second <= self._second and not force:
            return
        self._seconds[self._second] = [self._sent, len(self._service_s), self._failed, self._service_s[:],
                                       self._response_us[:], self._send_delay_us[:]]
        for partition, offsets in self._acked_offsets.items():
            for start, end in offset_ranges(offsets):
                self._acked_ranges[partition].add_range(start, end)
        self._acked_offsets.clear()  # in place: the delivery callback holds it
        self._sent = self._failed = 0
        self._service_s.clear()
        self._response_us.clear()
        self._send_delay_us.clear()
        self._second = max(second, self._second + 1)

    def _poll_forever(self) -> None:
        poll = self.client.poll
        while True:
            served = poll(0)
            self._close_second()
            gevent.sleep(0 if served else IDLE_POLL_WAIT_S)

    def stop(self, timeout_s: float) -> int:
        """Wait (cooperatively) for outstanding deliveries; returns how many never came."""
        deadline = time.monotonic() + timeout_s
        while len(self.client) and time.monotonic() < deadline:
            gevent.sleep(0.01)
        self._poller.kill()
        undelivered = self.producer.flush(0)
        self._close_second(force=True)
        self.final = True
        return undelivered

    def take_report(self) -> dict[str, Any]:
        """The seconds that are over (all of them once stopped), encoded; they leave this process."""
        if not self.final:
            self._close_second()
        seconds = {}
        for second in sorted(self._seconds):
            sent, acked, failed, service_s, response_us, send_delay_us = self._seconds.pop(second)
            self.totals.update(sent=sent, acked=acked, failed=failed)
            seconds[str(second)] = {
                "sent": sent, "acked": acked, "failed": failed,
                "service_time": encode_latencies(service_s, 1_000_000),
                "response_time": encode_latencies(response_us),
                "send_delay": encode_latencies(send_delay_us),
            }
        failed_sequences, self._failed_sequences = self._failed_sequences, []
        # String keys and [start, end] lists: what Locust's message encoding carries unchanged.
        acked_offsets = {str(p): [list(r) for r in ranges.ranges()] for p, ranges in self._acked_ranges.items()}
        self._acked_ranges.clear()
        return {
            "run_id": self.run_id.hex(), "producer": self.producer_index, "seconds": seconds,
            "through": None if self.final else self._second - 1, "final": self.final,
            "sent_total": self.sequence, "failed_sequences": failed_sequences,
            "failed_untraced": self._failed_untraced, "acked_offsets": acked_offsets,
        }


def options_bootstrap(environment) -> str:
    return environment.parsed_options.kafka_bootstrap_servers


# ---------------------------------------------------------------------------------------------
# Master side: the tracker thread and the merge of worker reports


class TrackerProcess:
    """The runner's tracker process (bench.runner.tracker_main) for one Locust test.

    Its own process, not a thread of this gevent process: a native thread here competes for
    the GIL with every user, so receive times were taken late (at 2,000 msg/s an end-to-end p50
    of ~56 ms against a 3.6 ms delivery p50). The gevent side never waits on it: `pump()` reads
    only what has arrived.
    """

    def __init__(self, bootstrap: str, scenario: Scenario, run_id: bytes, started_at: float,
                 start_offsets: Mapping[int, int]):
        """scenario: as tracked_scenario gives it (rate 0 = flat out: lower priority, offset audit)."""
        context = multiprocessing.get_context("spawn")  # librdkafka threads and fork do not mix
        # The child imports locust (spawn re-runs the `locust` script as its main module), so
        # it is gevent-patched too: a Queue's put would wait for a feeder greenlet that never
        # runs while the child blocks in consume(). SimpleQueue.put writes synchronously.
        self.reports = context.SimpleQueue()
        # Only this side puts on it (its feeder greenlet runs); the child reads it with get_nowait.
        self.control = context.Queue()
        start = context.Event()
        # The tracker numbers seconds from t0 (perf_counter_ns); the producers from started_at.
        t0_ns = context.Value("q", time.perf_counter_ns() - int((time.time() - started_at) * NS_PER_S))
        self.process = context.Process(target=tracker_main, name="locust-kafka-tracker", daemon=True,
                                       args=(scenario, bootstrap, run_id, dict(start_offsets), self.reports,
                                             self.control, start, t0_ns, audits_offsets(scenario)))
        self.process.start()
        self.seen: dict[int, bytes] = {}
        self.consumed_offsets: dict[int, list[tuple[int, int]]] = {}
        self.offsets_consumed_twice = 0
        self.duplicated = 0
        self.foreign = 0
        self.done = False
        self.error: str | None = None
        self.reported_through = -1
        self.last_progress = time.monotonic()
        self._wait(lambda message: message[0] == "ready", CHILD_START_TIMEOUT_S, "start")
        start.set()

    def pump(self, recorder: RunRecorder) -> None:
        """Record every report that has arrived (never waits for one)."""
        while not self.reports.empty():
            self._handle(self.reports.get(), recorder)
        if not self.done and self.error is None and self._exited():
            self.error = "the tracker process died"

    def _exited(self) -> bool:
        # Its sentinel, not Process.exitcode: gevent reaps children itself, so exitcode can stay None.
        return bool(multiprocessing.connection.wait([self.process.sentinel], 0))

    def _handle(self, message: tuple, recorder: RunRecorder | None) -> None:
        kind = message[0]
        if kind == "tracker" and recorder is not None:
            _, second, consumed, end_to_end_us, lag, lag_time_ms = message
            recorder.add_tracker_report(max(0, second), consumed, end_to_end_us, lag, lag_time_ms)
            self.reported_through = max(self.reported_through, second)
            if consumed:
                self.last_progress = time.monotonic()
        elif kind == "tracker-offsets":
            self.consumed_offsets, self.offsets_consumed_twice = message[1:]
        elif kind == "tracker-done":
            self.seen, self.duplicated, self.foreign = message[1:]
            self.done = True
        elif kind == "error":
            self.error = message[2]

    def _wait(self, arrived, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            while not self.reports.empty():
                message = self.reports.get()
                if message[0] == "error":
                    raise RunFailed(f"tracker could not {what}: {message[2]}")
                self._handle(message, None)
                if arrived(message):
                    return
            if self._exited():
                raise RunFailed("the tracker process died")
            if time.monotonic() >= deadline:
                raise RunFailed(f"the tracker did not {what} within {timeout_s:g} s")
            gevent.sleep(TRACKER_PUMP_INTERVAL_S)

    def finish(self, recorder: RunRecorder, drain_target: int | Mapping[int, int], drain_s: float) -> None:
        """Let it consume until it has every acked order or drain_s passed without progress,
        then end it. drain_target: the acked count, or with the offset audit the offset after
        the last acked one per partition."""
        self.control.put(("drain", drain_target, drain_s, True))
        self.last_progress = time.monotonic()
        # The tracker gives up after drain_s without consuming; its final report follows.
        while (not self.done and self.error is None
               and time.monotonic() < self.last_progress + drain_s + TRACKER_EXIT_GRACE_S):
            self.pump(recorder)
            gevent.sleep(TRACKER_PUMP_INTERVAL_S)
        if not self.done and self.error is None:
            self.error = f"no final report from the tracker within {drain_s + TRACKER_EXIT_GRACE_S:g} s of its last progress"
        deadline = time.monotonic() + TRACKER_EXIT_GRACE_S
        while not self._exited() and time.monotonic() < deadline:
            gevent.sleep(TRACKER_PUMP_INTERVAL_S)
        if not self._exited():
            self.process.terminate()
        self.control.close()


class LocustRun:
    """One test as the master (or local runner) sees it: merged measurements and the result."""

    def __init__(self, environment, scenario: Scenario, rate_per_user: float, thresholds: list[Threshold]):
        self.environment = environment
        self.scenario = scenario
        self.rate_per_user = rate_per_user
        self.thresholds = thresholds
        self.run_id = uuid.uuid4().bytes
        self.started_at = time.time()
        self.recorder = RunRecorder(scenario.warmup_s)
        self.all_delivery = new_latency_histogram()
        self.workers: dict[str, dict[str, Any]] = {}
        self.peak_users = 0
        self.tracker: TrackerProcess | None = None
        # Offset audit (flat out): every acked offset per partition, from the worker reports.
        self.acked_offsets: defaultdict[int, OffsetRanges] = defaultdict(OffsetRanges)
        self.start_watermarks: dict[int, tuple[int, int]] = {}
        self.failure: str | None = None
        self._greenlets: list = []

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        bootstrap = options_bootstrap(self.environment)
        in_native_thread(_prepare_topic, bootstrap, self.scenario)
        self.start_watermarks = in_native_thread(topic_watermarks, bootstrap, self.scenario.topic,
                                                 self.scenario.consumer_config)
        if not self.environment.parsed_options.no_tracker:
            # Its scenario's rate tells tracker_main whether this is a flat-out test (then it
            # yields the CPU to the producers and catches up in the drain, as in `bench run`).
            self.tracker = TrackerProcess(bootstrap, tracked_scenario(self.scenario, self.rate_per_user),
                                          self.run_id, self.started_at,
                                          {p: high for p, (_, high) in self.start_watermarks.items()})
        self._greenlets.append(gevent.spawn(self._status_forever))
        if isinstance(self.environment.runner, LocalRunner):
            self._greenlets.append(gevent.spawn(self._pull_local_reports_forever))

    def _pull_local_reports_forever(self) -> None:
        """The local runner's producer reports once a second, as a worker would to a master."""
        while True:
            gevent.sleep(1.0)
            producer = self.environment.kafka_producer
            if producer is not None:
                self.add_worker_report(LOCAL_WORKER, producer.take_report())

    # -- merge -----------------------------------------------------------------------------------

    def add_worker_report(self, worker_id: str, report: Mapping[str, Any]) -> None:
        if report.get("run_id") != self.run_id.hex():
            return  # a report of an earlier test that arrived late
        worker = self.workers.setdefault(worker_id, {"producer": report["producer"], "acked": 0, "failed": 0,
                                                     "sent": 0, "hdr_count": 0, "failed_sequences": [],
                                                     "failed_untraced": 0,
                                                     "through": -1, "final": False})
        for second_text, data in report["seconds"].items():
            second = max(0, int(second_text))
            self.recorder.add_producer_report(second, data["sent"], data["acked"], data["failed"], [], [], [])
            worker["acked"] += data["acked"]
            worker["failed"] += data["failed"]
            for name in ("service_time", "response_time", "send_delay"):
                if data[name]:
                    self.recorder.latency[name].record(second, histogram_counts(data[name]))
            if data["service_time"]:
                histogram = decode_histogram(data["service_time"])
                worker["hdr_count"] += histogram.get_total_count()
                self.all_delivery.add(histogram)
        worker["sent"] = report["sent_total"]
        worker["failed_sequences"].extend(report["failed_sequences"])
        worker["failed_untraced"] = report["failed_untraced"]
        for partition, ranges in report["acked_offsets"].items():
            for start, end in ranges:
                self.acked_offsets[int(partition)].add_range(start, end)
        worker["final"] = report["final"]
        if report["through"] is not None:
            worker["through"] = report["through"]
        self._drain_tracker_reports()
        self._close_finished_seconds()

    def _drain_tracker_reports(self) -> None:
        if self.tracker is not None:
            self.tracker.pump(self.recorder)

    def _close_finished_seconds(self) -> None:
        """Seal the seconds every reporter is past (an open second holds a ~400 KB histogram)."""
        runner = self.environment.runner
        expected = {client.id for client in runner.clients.all} if isinstance(runner, MasterRunner) else {LOCAL_WORKER}
        if not expected <= self.workers.keys():
            return  # a worker that has not reported yet may still hold any second
        reported_through = [w["through"] for w in self.workers.values() if not w["final"]]
        if self.tracker is not None:
            reported_through.append(self.tracker.reported_through)
        if reported_through:
            self.recorder.close_through(min(reported_through))

    def _status_forever(self) -> None:
        while True:
            gevent.sleep(STATUS_INTERVAL_S)
            self._drain_tracker_reports()
            logger.info("kafka: %s", self.status_line())

    def status_line(self) -> str:
        totals = self.recorder.totals()
        elapsed = max(1e-9, time.time() - self.started_at)
        p99 = self.all_delivery.get_value_at_percentile(99.0) if self.all_delivery.get_total_count() else None
        e2e = self.recorder.latency["end_to_end"]
        lag = self.recorder.lag_messages.get(max(self.recorder.lag_messages)) if self.recorder.lag_messages else None
        e2e_p99 = None
        if e2e.interval_stats:
            e2e_p99 = e2e.interval_stats[max(e2e.interval_stats)][1]
        parts = [
            f"acked {totals['acked']} ({totals['acked'] / elapsed:.0f}/s)",
            f"failed {totals['failed']}",
            f"delivery p99 {_ms(p99)}",
            f"consumed {totals['consumed']}",
            f"e2e p99 (last closed second) {_ms(e2e_p99)}",
            f"lag {lag if lag is not None else '-'} msgs",
        ]
        return ", ".join(parts)

    # -- end -----------------------------------------------------------------------------------

    def finish(self, status: str = "complete") -> tuple[Path, dict[str, Any]]:
        """Wait for the last reports and the tracker, then write the result folder."""
        ended_at = time.time()
        gevent.killall(self._greenlets)
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            # A headless master quits without telling its workers to stop first (they would stop on
            # "quit", after the master stopped listening); ask them now, so their last
            # deliveries are flushed and reported before the result is written.
            for client in runner.clients.all:
                if client.state in (STATE_RUNNING, STATE_SPAWNING):
                    runner.send_message("stop", client_id=client.id)
            deadline = time.monotonic() + FINAL_REPORT_TIMEOUT_S
            while not all(w["final"] for w in self.workers.values()) and time.monotonic() < deadline:
                gevent.sleep(0.1)
            missing = [worker_id for worker_id, w in self.workers.items() if not w["final"]]
            if missing:
                self.failure = f"no final report from worker(s) {', '.join(missing)} within {FINAL_REPORT_TIMEOUT_S:g} s"
        totals = self.recorder.totals()
        if self.tracker is not None:
            drain_target = totals["acked"]
            if audits_offsets(tracked_scenario(self.scenario, self.rate_per_user)):
                drain_target = {p: offsets.ends[-1] for p, offsets in self.acked_offsets.items() if offsets.ends}
            self.tracker.finish(self.recorder, drain_target, self.scenario.drain_timeout_s)
            if self.tracker.error and self.failure is None:
                self.failure = f"tracker failed: {self.tracker.error}"
        self.recorder.close_through(self.recorder.seconds())
        result = self._result(ended_at, status if self.failure is None else "failed")
        bootstrap = options_bootstrap(self.environment)
        folder = run_folder(self.environment.parsed_options.results_dir, self.scenario.name, self.started_at)
        seconds = self.recorder.seconds()
        write_interval_log(folder / "delivery.hlog", self.recorder.latency["service_time"].interval_list(seconds),
                           self.started_at)
        if self.tracker is not None:
            write_interval_log(folder / "e2e.hlog", self.recorder.latency["end_to_end"].interval_list(seconds),
                               self.started_at)
        result["broker"] = in_native_thread(_broker_metadata, bootstrap, self.scenario.topic, self.start_watermarks)
        result["counts"]["broker_offset_delta"] = result["broker"].pop("offset_delta")
        write_result(folder, result)
        write_run_report(folder, result)
        return folder, result

    def _result(self, ended_at: float, status: str) -> dict[str, Any]:
        totals = self.recorder.totals()
        lost = duplicated = 0
        if self.tracker is not None and audits_offsets(tracked_scenario(self.scenario, self.rate_per_user)):
            lost, unclaimed, _ = audit_offsets({p: offsets.ranges() for p, offsets in self.acked_offsets.items()},
                                               self.tracker.consumed_offsets)
            duplicated = unclaimed + self.tracker.offsets_consumed_twice
        elif self.tracker is not None:
            duplicated = self.tracker.duplicated
            for worker in self.workers.values():
                count, _ = lost_sequences(self.tracker.seen.get(worker["producer"]), worker["sent"],
                                          worker["failed_sequences"])
                lost += max(0, count - worker["failed_untraced"])
        failure = self.failure
        if status == "complete" and lost:
            # As in `bench run`: acked but never consumed is a failed run, whatever the thresholds.
            status = "failed"
            failure = f"{lost:,} acked orders lost (the tracker consumed none of them for {self.scenario.drain_timeout_s:g} s)"
        duration_s = round(max(ended_at - self.started_at, self.scenario.warmup_s + 0.1), 3)
        scenario = dataclasses.replace(self.scenario, duration_s=duration_s,
                                       rate=self.rate_per_user * self.peak_users)
        latency = {"service_time": self.recorder.latency["service_time"].summary()}
        if self.rate_per_user:
            latency["response_time"] = self.recorder.latency["response_time"].summary()
            latency["send_delay"] = self.recorder.latency["send_delay"].summary()
        if self.tracker is not None:
            latency["end_to_end"] = self.recorder.latency["end_to_end"].summary()
            latency["end_to_end"]["sample_every"] = trace_sample_every(tracked_scenario(self.scenario, self.rate_per_user))
        stats = self.environment.runner.stats.total
        hosts = {worker_id.rsplit("_", 1)[0] for worker_id in self.workers}
        result = {
            "kind": "locust",
            "run_id": self.run_id.hex(),
            "scenario": scenario.to_dict(),
            "fingerprint": scenario.fingerprint(),
            "environment": {**environment_metadata(),
                            "producer_and_tracker_same_host": hosts <= {socket.gethostname(), "local"}},
            "started_at": utc_iso(self.started_at),
            "ended_at": utc_iso(ended_at),
            "duration_s": duration_s,
            "warmup_s": self.scenario.warmup_s,
            "status": status,
            "failure": failure,
            "counts": {"sent": totals["sent"], "acked": totals["acked"], "failed": totals["failed"],
                       "consumed": totals["consumed"] if self.tracker else 0, "lost": lost,
                       "duplicated": duplicated, "malformed": 0, "broker_offset_delta": None},
            "latency_us": latency,
            "series": self.recorder.series(),
            "events": [],
            "warnings": [],
            "large_message": None,
            "locust": {
                "users": self.peak_users,
                "user_rate": self.rate_per_user,
                "request_count": stats.num_requests,
                "failure_count": stats.num_failures,
                "hdr_total_count": self.all_delivery.get_total_count(),
                "workers": {worker_id: {k: w[k] for k in ("producer", "sent", "acked", "failed", "hdr_count")}
                            for worker_id, w in self.workers.items()},
                "tracker": self.tracker is not None,
            },
        }
        if self.recorder.latency["service_time"].clamped:
            result["warnings"].append(f"{self.recorder.latency['service_time'].clamped} delivery latencies above 1 h clamped")
        result["warnings"].extend(derive_warnings(result))
        return result


def _ms(value_us: float | None) -> str:
    return "-" if value_us is None else f"{value_us / 1000:.2f} ms"


def in_native_thread(function, *args):
    """Run a blocking Kafka call in gevent's native threadpool while the other greenlets go on.

    A StreamStoreError is carried back and raised here: one escaping the thread would make
    gevent print its traceback.
    """
    def guarded():
        try:
            return function(*args), None
        except StreamStoreError as error:
            return None, error

    value, error = gevent.get_hub().threadpool.apply(guarded)
    if error is not None:
        raise error
    return value


def _prepare_topic(bootstrap: str, scenario: Scenario) -> None:
    admin = connect_admin(bootstrap, scenario.consumer_config)
    ensure_topic(admin, scenario.topic, scenario.partitions, scenario.replication_factor)


def _broker_metadata(bootstrap: str, topic: str, start_watermarks: Mapping[int, tuple[int, int]]) -> dict[str, Any]:
    try:
        settings = describe_broker_settings(bootstrap)
        topic_settings = topic_configs(connect_admin(bootstrap), topic)
        end = topic_watermarks(bootstrap, topic)
        offset_delta = sum(high - start_watermarks.get(p, (0, 0))[1] for p, (_, high) in end.items())
    except StreamStoreError:
        settings, topic_settings, offset_delta = {}, {}, None
    return {"bootstrap_servers": bootstrap, "version": None, "embedded": None, "settings": settings,
            "topic_settings": {k: topic_settings[k] for k in ("max.message.bytes", "segment.bytes",
                                                                  "min.insync.replicas", "compression.type")
                               if k in topic_settings},
            "offset_delta": offset_delta}


# ---------------------------------------------------------------------------------------------
# The user, the load shape and the event hooks


class KafkaOrdersUser(User):
    """Produces orders through its process's producer: flat out, or at --user-rate msg/s."""

    abstract = True

    def on_start(self) -> None:
        self.kafka: WorkerProducer = self.environment.kafka_producer
        self.rate = self.environment.kafka_user_rate
        self.interval_ns = int(1e9 / self.rate) if self.rate else 0
        self.next_send_ns = time.perf_counter_ns()

    @task
    def produce_orders(self) -> None:
        if not self.rate:
            self.kafka.send_flat_out(FLAT_OUT_BATCH)
            gevent.sleep(0)  # let the poll greenlet and the other users run
            return
        # Fixed rate: send what is due by now, each with its intended time, so a user that fell
        # behind shows it as send delay and response time instead of hiding it.
        now = time.perf_counter_ns()
        while self.next_send_ns <= now:
            self.kafka.send(self.next_send_ns)
            self.next_send_ns += self.interval_ns
        gevent.sleep((self.next_send_ns - time.perf_counter_ns()) / 1e9)


class OrderLoadShape(LoadTestShape):
    """-u/-r/-t as usual, or the --load-steps user counts (with -r as the ramp between steps)."""

    use_common_options = True

    def tick(self):
        options = self.runner.environment.parsed_options
        run_time = self.get_run_time()
        steps = parse_load_steps(options.load_steps)
        spawn_rate = options.spawn_rate or 1
        if steps:
            elapsed = 0.0
            for users, seconds in steps:
                elapsed += seconds
                if run_time < elapsed:
                    return users, spawn_rate
            return None
        if options.run_time and run_time >= options.run_time:
            return None
        return options.num_users or 1, spawn_rate


def tracked_scenario(scenario: Scenario, rate_per_user: float) -> Scenario:
    """The scenario as the runner's producer and tracker rules see it: rate 0 exactly when the
    users send flat out (the sampled trace header and offset audit, a lower-priority tracker)."""
    return dataclasses.replace(scenario, rate=rate_per_user)


def validate_options(options) -> tuple[Scenario, float, list[Threshold]]:
    """Everything a bad option can break, checked before a user is spawned."""
    scenario = scenario_from_options(options)
    rate = user_rate(options, scenario)
    thresholds = parse_thresholds(options.check)
    parse_load_steps(options.load_steps)
    if options.no_tracker and any(t.metric.startswith("end_to_end") or t.metric in ("lost", "duplicated")
                                  for t in thresholds):
        raise UsageError("--check on e2e latency, lost or duplicated needs the tracker; drop --no-tracker")
    return scenario, rate, thresholds


def register(events) -> None:
    """Wire the Kafka user's hooks to a Locust Events object (the locustfile's `locust.events`)."""
    # report_to_master and worker_report do not pass the environment; init tells us which it is.
    state: dict[str, Any] = {"environment": None}

    @events.init_command_line_parser.add_listener
    def on_parser(parser, **_kwargs):
        add_arguments(parser)

    @events.init.add_listener
    def on_init(environment, **_kwargs):
        state["environment"] = environment
        environment.kafka_run = None
        environment.kafka_producer = None
        environment.kafka_exit_code = None
        if isinstance(environment.runner, WorkerRunner):
            return  # the master checks the options and sends them with the spawn message
        try:
            scenario, _, _ = validate_options(environment.parsed_options)
            in_native_thread(_prepare_topic, options_bootstrap(environment), scenario)
        except StreamStoreError as error:
            sys.stderr.write(f"error: {error}\n")
            sys.stderr.flush()
            sys.exit(error.exit_code)  # before any user is spawned
        if environment.web_ui is not None:
            @environment.web_ui.app.route("/kafka")
            def kafka_status():
                run = environment.kafka_run
                return {"status": run.status_line() if run else "no test running"}

    @events.test_start.add_listener
    def on_test_start(environment, **_kwargs):
        options = environment.parsed_options
        if not isinstance(environment.runner, WorkerRunner):
            try:
                scenario, rate, thresholds = validate_options(options)
                run = LocustRun(environment, scenario, rate, thresholds)
                run.start()
            except StreamStoreError as error:
                logger.error("error: %s", error)
                _raise_exit_code(environment, error.exit_code)
                gevent.spawn(environment.runner.quit)
                return
            environment.kafka_run = run
            # Workers read these from the options that travel with the spawn message.
            options.kafka_run_id = run.run_id.hex()
            options.kafka_started_at = run.started_at
            options.kafka_user_rate_resolved = rate
        if not isinstance(environment.runner, MasterRunner):
            scenario = scenario_from_options(options)
            index = max(0, getattr(environment.runner, "worker_index", 0))
            environment.kafka_user_rate = options.kafka_user_rate_resolved
            environment.kafka_producer = WorkerProducer(environment, tracked_scenario(scenario, environment.kafka_user_rate),
                                                        bytes.fromhex(options.kafka_run_id),
                                                        options.kafka_started_at, index)

    @events.spawning_complete.add_listener
    def on_spawned(user_count, **_kwargs):
        run = state["environment"].kafka_run
        if run is not None:
            run.peak_users = max(run.peak_users, user_count)

    @events.report_to_master.add_listener
    def on_report_to_master(client_id, data, **_kwargs):
        environment = state["environment"]
        producer = environment.kafka_producer
        if producer is not None:
            data["kafka"] = producer.take_report()
            if data["kafka"]["final"]:
                environment.kafka_producer = None

    @events.worker_report.add_listener
    def on_worker_report(client_id, data, **_kwargs):
        run = state["environment"].kafka_run
        if run is not None and "kafka" in data:
            run.add_worker_report(client_id, data["kafka"])

    @events.test_stop.add_listener
    def on_test_stop(environment, **_kwargs):
        producer = environment.kafka_producer
        if producer is not None and not producer.final:
            undelivered = producer.stop(producer.scenario.drain_timeout_s)
            if undelivered:
                logger.error("error: %d message(s) not delivered when the test stopped", undelivered)
            if environment.kafka_run is not None:  # local runner: no master to report to
                environment.kafka_producer = None
                environment.kafka_run.add_worker_report(LOCAL_WORKER, producer.take_report())
            # A worker's last report (final) goes with its next stats message to the master.
        run = environment.kafka_run
        if run is None:
            return
        try:
            folder, result = run.finish()  # worker reports keep arriving while it waits for them
        except StreamStoreError as error:
            logger.error("error: %s", error)
            _raise_exit_code(environment, error.exit_code)
            return
        finally:
            environment.kafka_run = None
        logger.info("kafka: result written to %s", folder)
        logger.info("kafka: %s", summary_line(result))
        failures = failed_thresholds(run.thresholds, result)
        for failure in failures:
            logger.error("threshold failed: %s", failure)
        if result["status"] == "failed":
            logger.error("error: %s", result["failure"])
            _raise_exit_code(environment, EXIT_RUN_FAILED)
        elif failures:
            _raise_exit_code(environment, EXIT_REGRESSION)

    @events.quitting.add_listener
    def on_quitting(environment, **_kwargs):
        if environment.kafka_exit_code is not None:
            environment.process_exit_code = environment.kafka_exit_code


def _raise_exit_code(environment, code: int) -> None:
    environment.kafka_exit_code = max(code, environment.kafka_exit_code or 0)


def summary_line(result: Mapping[str, Any]) -> str:
    counts = result["counts"]
    latency = result["latency_us"]
    locust = result["locust"]
    parts = [f"sent {counts['sent']}, acked {counts['acked']}, failed {counts['failed']}"]
    if locust["tracker"]:
        parts.append(f"consumed {counts['consumed']}, lost {counts['lost']}, duplicated {counts['duplicated']}")
    service = latency["service_time"]
    parts.append(f"delivery p50 {_ms(service['p50'])} p99 {_ms(service['p99'])} p99.9 {_ms(service['p99_9'])} "
                 f"max {_ms(service['max'])}")
    if "end_to_end" in latency:
        e2e = latency["end_to_end"]
        parts.append(f"e2e p50 {_ms(e2e['p50'])} p99 {_ms(e2e['p99'])}")
    workers = ", ".join(f"{w['hdr_count']}" for w in locust["workers"].values())
    parts.append(f"HDR total {locust['hdr_total_count']} = workers [{workers}]; Locust requests "
                 f"{locust['request_count']} ({locust['failure_count']} failed)")
    return "; ".join(parts)
