"""One measured run of a scenario: producer process(es) and the tracker process, coordinated
from the calling process, which records, shows progress and writes the result folder.

Processes (spawned: librdkafka threads and fork do not mix):
  producer i  open-loop at rate/producers: message j is intended at t0 + j/rate; it records
              service time (send -> ack, librdkafka's `Message.latency()`), send delay
              (actual - intended) and response time (intended -> ack = send delay + service
              time). At rate 0 it sends flat out and records service time only.
  tracker     reads the topic from the offsets it had before the run: end-to-end latency from
              the trace header, lag per partition and time lag each second, and what the audit
              (lost / duplicated) needs.
  coordinator receives one report per second from each, folds them into HDR histograms
              (bench/recorder.py), prints progress, and after the producers finish lets the
              tracker drain until it has everything acked or the drain timeout passes.

The producers only append raw numbers to lists on the hot path; histograms are built here.
Public entry point: `run_scenario`.

Trace header and audit. At a fixed rate every message carries the `ss-trace` header (run id,
producer, sequence, send time): end-to-end latency for every message, and the sequence audit
(lost = sent sequences neither consumed nor failed, duplicated = sequences consumed twice).
Flat out (rate 0) the header would cost about a quarter of the producer's CPU, so only every
TRACE_SAMPLE_EVERY-th message carries it (end-to-end latency is sampled, and says so in the
result), and the audit uses offsets instead: each delivery report's (partition, offset) is
shipped as ranges, the tracker notes every offset it consumes, and lost = acked offsets never
consumed, duplicated = consumed offsets no delivery report claimed (a retry's first copy) plus
offsets consumed twice. Both audits are exact. With acks=0 the broker returns no offsets, so a
flat-out run with acks=0 keeps the header on every message and the sequence audit.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
import queue
import signal
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from bench.analysis.stats import derive_warnings
from bench.broker.embedded import BrokerInUse, ensure_broker
from bench.broker.faults import Fault, FaultInjector
from bench.core.recorder import OffsetRanges, RunRecorder, SequenceAudit, audit_offsets, lost_sequences, offset_ranges
from bench.core.scenario import Scenario
from bench.output.progress import Progress, progress_line
from bench.output.results import (
    DEFAULT_RESULTS_ROOT,
    check_results_root,
    environment_metadata,
    run_folder,
    utc_iso,
    write_interval_log,
    write_result,
)
from streamstore.admin import connect_admin, ensure_topic, topic_configs, topic_watermarks
from streamstore.config import consumer_config, producer_config
from streamstore.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, RunFailed, UsageError
from streamstore.orders import Order, make_payload
from streamstore.producer import OrderProducer
from streamstore.trace import TRACE_HEADER, TRACE_STRUCT, TRACE_VALUE_BYTES, Trace, read_trace
from streamstore.tracker import OrderTracker

# A producer cycles through a pool of pre-built payloads: building an order (uuid, JSON) per
# message would cost more than sending it. Power of two so the slot is `sequence & mask`.
PAYLOAD_POOL_SIZE = 256
# ... but never more than this much memory for the pool (large messages get fewer slots).
PAYLOAD_POOL_MAX_BYTES = 64 * 1000**2
# Flat out, look at the clock every this many messages (a clock read per message is ~2 %).
CLOCK_CHECK_EVERY = 64
# Flat out, only every this many messages carries the trace header (see the module docstring).
# Power of two so the test is `sequence & mask`; 1/64 of a flat-out second is still thousands
# of end-to-end samples.
TRACE_SAMPLE_EVERY = 64
# When librdkafka's queue is full, serve delivery reports this long before retrying.
QUEUE_FULL_POLL_S = 0.05
# A fixed-rate producer ahead of schedule waits in poll() (serving deliveries) when the next
# send is further away than this; closer, it sleeps (poll's timeout has whole-ms resolution).
POLL_WAIT_ABOVE_NS = 2_000_000
# How long producers may take to deliver what is queued when the run ends, and how long the
# tracker may drain, after Ctrl+C.
INTERRUPT_DRAIN_S = 2.0
# Producers get at least this long to deliver the tail of a normal run.
MIN_FLUSH_S = 10.0
# Children must be connected and ready within this time.
CHILD_START_TIMEOUT_S = 60.0
# t0 is set this far in the future, so every producer starts on the same schedule.
START_DELAY_NS = 200_000_000
# Flat out (rate 0) the figure is the producer's throughput, and on a small machine a tracker
# consuming at full speed takes CPU from the producer and the broker it measures. There it
# runs at a lower priority and catches up in the drain (end-to-end latency flat out is the
# backlog anyway). At a fixed rate it keeps normal priority so end-to-end latency is true.
FLAT_OUT_TRACKER_NICENESS = 10
# The tracker blocks at most this long waiting for a message (bounds lag sampling jitter).
TRACKER_WAIT_S = 0.05
TRACKER_BATCH = 5000
# How often the tracker looks for the coordinator's "drain" message (a queue read is not free).
CONTROL_CHECK_NS = 100_000_000
# Topic settings copied into the result: the ones that change what a run measures.
REPORTED_TOPIC_SETTINGS = ("max.message.bytes", "compression.type", "min.insync.replicas", "segment.bytes",
                           "retention.ms", "message.timestamp.type", "unclean.leader.election.enable")
NS_PER_S = 1_000_000_000


# ---------------------------------------------------------------------------------------------
# Client settings and payloads (shared with `bench calibrate`'s bare loop)


def scenario_producer_config(scenario: Scenario, bootstrap_servers: str) -> dict:
    extra = {
        # The scenario's durability choice: "all" waits for every in-sync replica.
        "acks": scenario.acks,
        # The scenario's batching delay: latency traded for fewer, larger requests.
        "linger.ms": scenario.linger_ms,
        # The scenario's batch size cap in bytes.
        "batch.size": scenario.batch_size,
        # Exactly-once per partition when asked (needs acks=all, checked by Scenario).
        "enable.idempotence": scenario.idempotence,
        # -1 leaves the codec's own default level.
        "compression.level": scenario.compression_level,
        **scenario.producer_config,
    }
    return producer_config(bootstrap_servers, compression=scenario.compression, extra=extra)


def scenario_consumer_config(scenario: Scenario, bootstrap_servers: str, run_id: str) -> dict:
    extra = {
        # Offsets are assigned explicitly per run; committing them would only cost requests.
        "enable.auto.commit": False,
        **scenario.consumer_config,
    }
    return consumer_config(bootstrap_servers, group_id=f"bench-tracker-{run_id}", extra=extra)


def check_client_settings(scenario: Scenario, bootstrap_servers: str) -> None:
    """librdkafka refuses unknown or invalid settings only when a client is created: create
    (and drop) one of each, so a typo is one UsageError line before anything connects."""
    for field_name, make_client in (
        ("producer_config", lambda: Producer(scenario_producer_config(scenario, bootstrap_servers))),
        ("consumer_config", lambda: Consumer(scenario_consumer_config(scenario, bootstrap_servers, "settings-check"))),
    ):
        try:
            client = make_client()
        except KafkaException as error:
            raise UsageError(f"{field_name}: librdkafka refuses the settings: {_describe_error(error)}") from None
        if isinstance(client, Consumer):
            client.close()


def payload_pool(scenario: Scenario) -> tuple[list[bytes], list[bytes | None]]:
    """Values and keys a producer cycles through (a power-of-two count)."""
    slots = PAYLOAD_POOL_SIZE
    while slots > 1 and slots * scenario.message_size > PAYLOAD_POOL_MAX_BYTES:
        slots //= 2
    orders = [Order.new() for _ in range(slots)]
    values = [make_payload(scenario.payload, scenario.message_size, order) for order in orders]
    keys = [order.order_id.encode() if scenario.keys == "order_id" else None for order in orders]
    return values, keys


def audits_offsets(scenario: Scenario) -> bool:
    """Whether a run audits by offsets (flat out, sampled trace) or by sequences (every message traced)."""
    return scenario.rate == 0 and scenario.acks != "0"


def trace_sample_every(scenario: Scenario) -> int:
    return TRACE_SAMPLE_EVERY if audits_offsets(scenario) else 1


# ---------------------------------------------------------------------------------------------
# Producer process


class _ProducerLoop:
    def __init__(self, index: int, scenario: Scenario, bootstrap_servers: str, run_id: bytes, reports):
        self.index = index
        self.scenario = scenario
        self.run_id = run_id
        self.reports = reports
        self.producer = OrderProducer(scenario_producer_config(scenario, bootstrap_servers), scenario.topic)
        # Metadata now, so the first timed message does not wait for it.
        self.producer.client.list_topics(scenario.topic, timeout=CHILD_START_TIMEOUT_S / 2)
        self.values, self.keys = payload_pool(scenario)
        self.service_s: list[float] = []
        self.response_us: list[int] = []
        self.send_delay_us: list[int] = []
        self.failed_sequences: list[int] = []
        # Offset audit: offsets acked this second, per partition.
        self.acked_offsets: defaultdict[int, list[int]] = defaultdict(list)
        self.failed_in_second = 0
        self.first_error: str | None = None
        self.acked_total = 0
        self.second = 0
        self.sent_at_last_report = 0
        self.next_second_ns = 0
        self.stop = None

    # Delivery callbacks run inside poll()/flush() in this thread.
    def flat_out_callback(self):
        """The rate-0 delivery callback: a closure over the list's append (no attribute lookups
        per delivery); _report empties the lists in place so the closure stays valid."""
        record_service = self.service_s.append
        failed = self._failed
        if not audits_offsets(self.scenario):
            def on_delivery(error: KafkaError | None, message: Message) -> None:
                if error is None:
                    record_service(message.latency())
                else:
                    failed(error, message)

            return on_delivery
        acked_offsets = self.acked_offsets

        def on_delivery_with_offset(error: KafkaError | None, message: Message) -> None:
            if error is None:
                record_service(message.latency())
                acked_offsets[message.partition()].append(message.offset())
            else:
                failed(error, message)

        return on_delivery_with_offset

    def on_delivery_scheduled(self, send_delay_us: int, sequence: int, error: KafkaError | None, message: Message) -> None:
        if error is None:
            latency_s = message.latency()
            self.service_s.append(latency_s)
            self.response_us.append(send_delay_us + round(latency_s * 1_000_000))
        else:
            self._failed(error, message, sequence)

    def _failed(self, error: KafkaError, message: Message, sequence: int | None = None) -> None:
        self.failed_in_second += 1
        if sequence is None:
            # Flat out the sequence comes from the trace header; but a failed delivery report
            # may carry no headers (seen for "Message size too large"), so the scheduled path
            # passes the sequence along instead: a failure must never count as a lost order.
            trace = read_trace(message.headers())
            sequence = trace.sequence if trace is not None else None
        if sequence is not None:
            self.failed_sequences.append(sequence)
        if self.first_error is None:
            self.first_error = error.str()

    def report_due(self, now_ns: int, sent: int) -> bool:
        """Send the report of every second that has ended; True when asked to stop."""
        while now_ns >= self.next_second_ns:
            self._report(sent)
            self.second += 1
            self.next_second_ns += NS_PER_S
        return self.stop.is_set()

    def _report(self, sent: int) -> None:
        acked = len(self.service_s)
        self.acked_total += acked
        acked_ranges = {partition: offset_ranges(offsets) for partition, offsets in self.acked_offsets.items()}
        self.reports.put(("producer", self.index, self.second, sent - self.sent_at_last_report, acked,
                          self.failed_in_second, self.service_s[:], self.response_us[:], self.send_delay_us[:],
                          acked_ranges))
        self.sent_at_last_report = sent
        # Emptied in place, not replaced: the flat-out callback holds service_s.append and acked_offsets.
        self.acked_offsets.clear()
        self.service_s.clear()
        self.response_us.clear()
        self.send_delay_us.clear()
        self.failed_in_second = 0

    def run(self, t0_ns: int, stop) -> None:
        self.stop = stop
        self.next_second_ns = t0_ns + NS_PER_S
        if self.scenario.rate == 0:
            sent = self._flat_out(t0_ns, t0_ns + int(self.scenario.duration_s * NS_PER_S))
        else:
            sent = self._scheduled(t0_ns)
        producing_s = (time.perf_counter_ns() - t0_ns) / NS_PER_S
        self._finish(t0_ns, sent, producing_s)

    def _flat_out(self, t0_ns: int, end_ns: int) -> int:
        client = self.producer.client
        # The hot path binds the C methods directly: OrderProducer.produce's Python frame and
        # retry loop cost a measurable share of a ~5 µs message; BufferError is handled here.
        produce, poll, pack, time_ns, clock = client.produce, client.poll, TRACE_STRUCT.pack, time.time_ns, time.perf_counter_ns
        topic, values, keys, run_id, index = self.scenario.topic, self.values, self.keys, self.run_id, self.index
        mask = len(values) - 1
        untraced_mask = trace_sample_every(self.scenario) - 1
        on_delivery = self.flat_out_callback()
        while clock() < t0_ns:
            poll(0.001)
        sequence = 0
        while True:
            if not sequence % CLOCK_CHECK_EVERY:
                now = clock()
                if now >= end_ns or (now >= self.next_second_ns and self.report_due(now, sequence)):
                    return sequence
            slot = sequence & mask
            try:
                # Headers as a one-key dict: cheaper to build per message than [(name, value)].
                produce(topic, values[slot], keys[slot], on_delivery=on_delivery,
                        headers=None if sequence & untraced_mask else {TRACE_HEADER: pack(run_id, index, sequence, time_ns())})
            except BufferError:
                poll(QUEUE_FULL_POLL_S)
                continue
            sequence += 1
            poll(0)

    def _scheduled(self, t0_ns: int) -> int:
        client = self.producer.client
        produce, poll, pack, time_ns, clock = client.produce, client.poll, TRACE_STRUCT.pack, time.time_ns, time.perf_counter_ns
        topic, values, keys, run_id, index = self.scenario.topic, self.values, self.keys, self.run_id, self.index
        mask = len(values) - 1
        producers = self.scenario.producers
        sequence = 0
        phase_start_ns = t0_ns
        for phase in self.scenario.schedule():
            rate = phase.rate / producers
            interval_ns = NS_PER_S / rate
            # Producers interleave their schedules instead of sending in lock-step.
            offset_ns = interval_ns * index / producers
            for step in range(round(phase.duration_s * rate)):
                intended_ns = phase_start_ns + int(offset_ns + step * interval_ns)
                now = clock()
                while now < intended_ns:
                    if now >= self.next_second_ns and self.report_due(now, sequence):
                        return sequence
                    wait_ns = intended_ns - now
                    if wait_ns > POLL_WAIT_ABOVE_NS:
                        poll((wait_ns - POLL_WAIT_ABOVE_NS // 2) / NS_PER_S)
                    else:
                        poll(0)
                        time.sleep(wait_ns / NS_PER_S)
                    now = clock()
                if now >= self.next_second_ns and self.report_due(now, sequence):
                    return sequence
                slot = sequence & mask
                while True:
                    actual_ns = clock()
                    send_delay_us = (actual_ns - intended_ns) // 1000
                    try:
                        produce(topic, values[slot], keys[slot],
                                on_delivery=functools.partial(self.on_delivery_scheduled, send_delay_us, sequence),
                                headers={TRACE_HEADER: pack(run_id, index, sequence, time_ns())})
                        break
                    except BufferError:
                        poll(QUEUE_FULL_POLL_S)
                self.send_delay_us.append(send_delay_us)
                sequence += 1
                poll(0)
            phase_start_ns += int(phase.duration_s * NS_PER_S)
        return sequence

    def _finish(self, t0_ns: int, sent: int, producing_s: float) -> None:
        """Deliver what is queued (reports keep coming each second), then the final report."""
        client = self.producer.client
        flush_s = INTERRUPT_DRAIN_S if self.stop.is_set() else max(MIN_FLUSH_S, self.scenario.drain_timeout_s)
        deadline_ns = time.perf_counter_ns() + int(flush_s * NS_PER_S)
        while len(client) and time.perf_counter_ns() < deadline_ns:
            client.flush(0.1)
            self.report_due(time.perf_counter_ns(), sent)
        undelivered = len(client)
        if undelivered:
            # Their delivery callbacks now fire with a purge error: counted as failed, not lost.
            client.purge()
            client.flush(1.0)
        elapsed_s = (time.perf_counter_ns() - t0_ns) / NS_PER_S
        self._report(sent)
        self.reports.put(("producer-done", self.index, sent, self.acked_total, self.failed_sequences,
                          producing_s, elapsed_s, self.first_error, undelivered))


def _producer_main(index: int, scenario: Scenario, bootstrap_servers: str, run_id: bytes,
                   reports, start, t0_ns, stop) -> None:
    # The coordinator owns Ctrl+C: it tells us through `stop` and we drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        loop = _ProducerLoop(index, scenario, bootstrap_servers, run_id, reports)
        # Everything built so far (modules, payload pool) lives for the whole run: keep it out
        # of the collector's scans, which otherwise show up as send-delay spikes.
        gc.freeze()
        reports.put(("ready", f"producer {index}"))
        start.wait()
        loop.run(t0_ns.value, stop)
    except Exception as error:  # reported to the coordinator as one line, which ends the run
        reports.put(("error", f"producer {index}", _describe_error(error)))


# ---------------------------------------------------------------------------------------------
# Tracker process


@dataclass
class TrackerState:
    """What the tracker has seen since its last per-second report (and the audit overall)."""

    # Offset audit (flat out): untraced messages are this run's too; every offset is noted.
    audits_offsets: bool = False
    audit: SequenceAudit = field(default_factory=SequenceAudit)
    consumed_offsets: defaultdict[int, OffsetRanges] = field(default_factory=lambda: defaultdict(OffsetRanges))
    offsets_consumed_twice: int = 0
    consumed_total: int = 0
    consumed_in_second: int = 0
    foreign: int = 0
    end_to_end_us: list[int] = field(default_factory=list)
    last_timestamp_ms: int | None = None


def absorb_messages(messages: list[Message], run_id: bytes, state: TrackerState, received_ns: int) -> None:
    """Account for one batch of consumed messages: end-to-end latency and the audit for this
    run's messages (all received at received_ns, wall clock), the rest counted as foreign
    (another run's trace; or, in the sequence audit, no trace)."""
    end_to_end_us, mark = state.end_to_end_us, state.audit.mark
    by_offset, consumed_offsets = state.audits_offsets, state.consumed_offsets
    for message in messages:
        headers = message.headers()
        if not headers:
            trace = None
        # Fast path: the trace is the only header the runner's producers send.
        elif len(headers) == 1 and headers[0][0] == TRACE_HEADER and len(headers[0][1]) == TRACE_VALUE_BYTES:
            trace = Trace(*TRACE_STRUCT.unpack(headers[0][1]))
        else:
            trace = read_trace(headers)
        if trace is not None and trace.run_id == run_id:
            end_to_end_us.append((received_ns - trace.send_time_ns) // 1000)
            if not by_offset:
                mark(trace.producer, trace.sequence)
        elif trace is not None or not by_offset:
            state.foreign += 1
            continue
        if by_offset and consumed_offsets[message.partition()].add(message.offset()):
            state.offsets_consumed_twice += 1
        state.consumed_in_second += 1
    state.last_timestamp_ms = messages[-1].timestamp()[1]


def _lag(tracker: OrderTracker, partitions: list[TopicPartition], start_offsets: Mapping[int, int]) -> dict[int, int]:
    """High watermark minus position per partition, from the consumer's cached fetch state
    (no broker round trip, so sampling does not stall consuming)."""
    lag = {}
    for position in tracker.client.position(partitions):
        _, high = tracker.client.get_watermark_offsets(position, cached=True)
        if high < 0:
            _, high = tracker.client.get_watermark_offsets(position, timeout=1.0)
        offset = position.offset if position.offset >= 0 else start_offsets[position.partition]
        lag[position.partition] = max(0, high - offset)
    return lag


def tracker_main(scenario: Scenario, bootstrap_servers: str, run_id: bytes, start_offsets: dict[int, int],
                 reports, control, start, t0_ns, offset_audit: bool = False) -> None:
    """The tracker process's target (also the Locust user's tracker, bench/locust_kafka.py).

    Reads from start_offsets (partition -> offset) after `start` is set; `reports.put` gets
    ("ready", "tracker"), then ("tracker", second, consumed, end_to_end_us, lag, lag_time_ms)
    for each second since `t0_ns.value` (perf_counter_ns), and at the end ("tracker-done",
    {producer: seen bitmap}, duplicated, foreign) or ("error", "tracker", text). It ends after
    `control` gets ("drain", acked, drain_s, idle): once it has acked orders, or after drain_s
    (with idle: drain_s without consuming any of this run's messages, so a long backlog drains).
    At rate 0 it runs at a lower priority (FLAT_OUT_TRACKER_NICENESS).
    With offset_audit (see the module docstring) untraced messages count as this run's,
    "drain" carries {partition: offset after the last acked one} instead of the acked count,
    and ("tracker-offsets", {partition: consumed [start, end) ranges}, offsets consumed twice)
    comes just before "tracker-done".
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if scenario.rate == 0:
        os.nice(FLAT_OUT_TRACKER_NICENESS)
    try:
        _track(scenario, bootstrap_servers, run_id, start_offsets, reports, control, start, t0_ns, offset_audit)
    except Exception as error:  # reported to the coordinator as one line, which ends the run
        reports.put(("error", "tracker", _describe_error(error)))


def _track(scenario: Scenario, bootstrap_servers: str, run_id: bytes, start_offsets: dict[int, int],
           reports, control, start, t0_ns, offset_audit: bool) -> None:
    tracker = OrderTracker(scenario_consumer_config(scenario, bootstrap_servers, run_id.hex()), [scenario.topic],
                           start_offsets)
    partitions = [TopicPartition(scenario.topic, p) for p in sorted(start_offsets)]
    state = TrackerState(audits_offsets=offset_audit)
    fault_delay_s = scenario.fault_consumer_delay_ms / 1000
    clock, time_ns = time.perf_counter_ns, time.time_ns
    reports.put(("ready", "tracker"))
    start.wait()
    second, next_second_ns = 0, t0_ns.value + NS_PER_S
    drain_target: int | None = None
    drain_deadline_ns = next_control_ns = drain_idle_ns = 0
    try:
        while True:
            try:
                messages = tracker.consume(TRACKER_BATCH, 0) or tracker.consume(1, TRACKER_WAIT_S)
            except KafkaException as error:
                # A broker down or restarting arrives as an error event (transport failure, all
                # brokers down); the consumer reconnects by itself, so only a fatal error ends it.
                if _is_fatal(error):
                    raise
                messages = []
            if messages:
                consumed_before = state.consumed_in_second
                absorb_messages(messages, run_id, state, time_ns())
                if drain_idle_ns and state.consumed_in_second > consumed_before:
                    drain_deadline_ns = clock() + drain_idle_ns
                if fault_delay_s:
                    time.sleep(fault_delay_s)
            now = clock()
            while now >= next_second_ns:
                _tracker_report(reports, tracker, partitions, start_offsets, state, second)
                second, next_second_ns = second + 1, next_second_ns + NS_PER_S
            if drain_target is None and now >= next_control_ns:
                next_control_ns = now + CONTROL_CHECK_NS
                try:
                    _, drain_target, drain_s, idle = control.get_nowait()
                    drain_deadline_ns = now + int(drain_s * NS_PER_S)
                    drain_idle_ns = int(drain_s * NS_PER_S) if idle else 0
                except queue.Empty:
                    pass
            if drain_target is not None and (_drained(state, drain_target) or now >= drain_deadline_ns):
                break
        _tracker_report(reports, tracker, partitions, start_offsets, state, second)
        if offset_audit:
            reports.put(("tracker-offsets", {p: offsets.ranges() for p, offsets in state.consumed_offsets.items()},
                         state.offsets_consumed_twice))
        reports.put(("tracker-done", {p: bytes(bits) for p, bits in state.audit.seen.items()},
                     state.audit.duplicated, state.foreign))
    finally:
        tracker.close()


def _drained(state: TrackerState, target: int | Mapping[int, int]) -> bool:
    """Has the tracker consumed everything acked? target: the acked count (sequence audit) or
    the offset after the last acked one per partition (offset audit)."""
    if state.audits_offsets:
        return all(state.consumed_offsets[p].ends[-1:] >= [end] for p, end in target.items())
    return state.consumed_total + state.consumed_in_second - state.audit.duplicated >= target


def _tracker_report(reports, tracker: OrderTracker, partitions, start_offsets, state: TrackerState, second: int) -> None:
    try:
        lag = _lag(tracker, partitions, start_offsets)
    except KafkaException as error:
        if _is_fatal(error):
            raise
        lag = None  # the broker did not answer this second: no sample rather than a guess
    if lag is None:
        lag_time_ms = None
    elif sum(lag.values()) == 0:
        lag_time_ms = 0.0
    elif state.last_timestamp_ms is not None:
        lag_time_ms = max(0.0, time.time() * 1000 - state.last_timestamp_ms)
    else:
        lag_time_ms = None
    reports.put(("tracker", second, state.consumed_in_second, state.end_to_end_us, lag, lag_time_ms))
    state.consumed_total += state.consumed_in_second
    state.consumed_in_second = 0
    state.end_to_end_us = []


def _is_fatal(error: KafkaException) -> bool:
    return bool(error.args) and isinstance(error.args[0], KafkaError) and error.args[0].fatal()


def _describe_error(error: Exception) -> str:
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return error.args[0].str().strip()  # librdkafka's range errors end with a newline
    return f"{type(error).__name__}: {error}"


# ---------------------------------------------------------------------------------------------
# Coordinator


@dataclass
class _ProducerOutcome:
    sent: int
    acked: int
    failed_sequences: list[int]
    producing_s: float
    elapsed_s: float
    first_error: str | None
    undelivered: int


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into the same path as Ctrl+C (before producing began: exit 130, no result)."""


def _raise_interrupted(signum, frame) -> None:
    raise _Interrupted()


class _Run:
    def __init__(self, scenario: Scenario, broker: BrokerInUse, results_root: Path, out: TextIO,
                 faults: Sequence[Fault] = ()):
        self.scenario = scenario
        self.broker = broker
        self.bootstrap_servers = broker.bootstrap_servers
        self.results_root = Path(results_root)
        self.progress = Progress(out)
        self.run_id = uuid.uuid4()
        self.recorder = RunRecorder(scenario.warmup_s)
        self.outcomes: dict[int, _ProducerOutcome] = {}
        self.tracker_outcome: tuple | None = None
        # Offset audit: every acked offset per partition, from the producers' reports.
        self.acked_offsets: defaultdict[int, OffsetRanges] = defaultdict(OffsetRanges)
        # ... and every consumed offset per partition, from the tracker's last report.
        self.consumed_offsets: dict[int, list[tuple[int, int]]] = {}
        self.offsets_consumed_twice = 0
        self.reported_through: dict[str, int] = {}
        self.failure: str | None = None
        self.interrupted = False
        self.events: list[dict[str, Any]] = []
        self.shown_second = -1
        self.injector = FaultInjector(broker.embedded, faults) if faults else None

    # -- set-up -----------------------------------------------------------------------------

    def prepare_topic(self) -> dict[int, int]:
        admin = connect_admin(self.bootstrap_servers, extra=self.scenario.producer_config)
        ensure_topic(admin, self.scenario.topic, self.scenario.partitions, self.scenario.replication_factor)
        settings = topic_configs(admin, self.scenario.topic)
        self.topic_settings = {k: settings[k] for k in REPORTED_TOPIC_SETTINGS if k in settings}
        watermarks = topic_watermarks(self.bootstrap_servers, self.scenario.topic, self.scenario.consumer_config)
        return {partition: high for partition, (_, high) in watermarks.items()}

    def execute(self) -> tuple[int, Path]:
        start_offsets = self.start_offsets_high = self.prepare_topic()
        context = multiprocessing.get_context("spawn")
        self.reports = context.Queue()
        control = context.Queue()
        start, stop = context.Event(), context.Event()
        t0_ns = context.Value("q", 0)
        run_id = self.run_id.bytes
        children = [context.Process(target=tracker_main, name="bench-tracker", daemon=True,
                                    args=(self.scenario, self.bootstrap_servers, run_id, start_offsets,
                                          self.reports, control, start, t0_ns, audits_offsets(self.scenario)))]
        children += [context.Process(target=_producer_main, name=f"bench-producer-{i}", daemon=True,
                                     args=(i, self.scenario, self.bootstrap_servers, run_id, self.reports, start, t0_ns, stop))
                     for i in range(self.scenario.producers)]
        self.children = children
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupted)
        try:
            for child in children:
                child.start()
            self._wait_ready(len(children))
            # A second closes only when every process has reported past it.
            self.reported_through = {"tracker": -1, **{f"producer {i}": -1 for i in range(self.scenario.producers)}}
            t0_ns.value = time.perf_counter_ns() + START_DELAY_NS
            self.t0_ns = t0_ns.value
            self.started_at = time.time() + START_DELAY_NS / NS_PER_S
            start.set()
            phase_start_s = 0.0
            for phase in self.scenario.phases:  # planned, so plots can mark the steps
                self.events.append({"t_s": phase_start_s, "kind": "phase",
                                    "detail": f"{phase.rate:,.0f} msg/s for {phase.duration_s:g} s"})
                phase_start_s += phase.duration_s
            if self.injector:
                self.injector.start(self.t0_ns / NS_PER_S)
            self.progress.message(
                f"run {self.run_id.hex[:8]}: {self.scenario.name} -> {self.scenario.topic} at {self.bootstrap_servers}, "
                f"{_describe_rate(self.scenario)}, {self.scenario.duration_s:g} s (warm-up {self.scenario.warmup_s:g} s)")
            self._collect(lambda: len(self.outcomes) == self.scenario.producers, stop)
            self._end_faults()
            if self.failure is None:
                acked = sum(outcome.acked for outcome in self.outcomes.values())
                if self.interrupted:
                    drain_s, idle = INTERRUPT_DRAIN_S, False
                    self._event("drain", f"waiting up to {drain_s:g} s for the tracker to consume {acked:,} acked orders")
                else:
                    drain_s, idle = self.scenario.drain_timeout_s, True
                    self._event("drain", f"waiting for the tracker to consume {acked:,} acked orders "
                                         f"(it gives up after {drain_s:g} s without progress)")
                if audits_offsets(self.scenario):
                    drain_target = {p: offsets.ends[-1] for p, offsets in self.acked_offsets.items() if offsets.ends}
                else:
                    drain_target = acked
                control.put(("drain", drain_target, drain_s, idle))
                self._collect(lambda: self.tracker_outcome is not None, stop)
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
            self._end_faults()
            self._stop_children(stop)
            self.progress.end_line()
        return self._write()

    def _end_faults(self) -> None:
        """End the current fault (the broker is up again before the drain) and keep its events."""
        if self.injector is None:
            return
        self.injector.stop()
        self.events = sorted(self.events + self.injector.events, key=lambda event: event["t_s"])
        if self.injector.error is not None and self.failure is None:
            self.failure = f"fault injection failed: {self.injector.error}"
        self.injector = None

    def _wait_ready(self, expected: int) -> None:
        deadline = time.monotonic() + CHILD_START_TIMEOUT_S
        ready = 0
        while ready < expected:
            try:
                message = self.reports.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RunFailed(f"producer/tracker processes not ready within {CHILD_START_TIMEOUT_S:.0f} s") from None
            if message[0] == "error":
                raise RunFailed(f"{message[1]} could not start: {message[2]}")
            ready += message[0] == "ready"

    def _collect(self, done, stop) -> None:
        """Handle reports until done(); Ctrl+C/SIGTERM set stop and keep draining."""
        while not done() and self.failure is None:
            try:
                try:
                    message = self.reports.get(timeout=0.5)
                except queue.Empty:
                    self._check_children()
                    continue
                self._handle(message)
                self._show_progress()
            except KeyboardInterrupt:  # Ctrl+C, or SIGTERM as _Interrupted
                if not self.interrupted:
                    self.interrupted = True
                    stop.set()
                    self._event("interrupted", "stopped producing; draining briefly")
                    self.progress.message("interrupted: stopping producers, draining briefly (result marked interrupted)")
        if self.failure is not None:
            stop.set()

    def _check_children(self) -> None:
        for child in self.children:
            if child.exitcode is not None and child.exitcode != 0:
                self.failure = f"{child.name} died (exit code {child.exitcode})"

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "producer":
            _, index, second, sent, acked, failed, service_s, response_us, send_delay_us, acked_ranges = message
            self.recorder.add_producer_report(second, sent, acked, failed, service_s, response_us, send_delay_us)
            for partition, ranges in acked_ranges.items():
                for start, end in ranges:
                    self.acked_offsets[partition].add_range(start, end)
            self.reported_through[f"producer {index}"] = second
        elif kind == "tracker":
            _, second, consumed, end_to_end_us, lag, lag_time_ms = message
            self.recorder.add_tracker_report(second, consumed, end_to_end_us, lag, lag_time_ms)
            self.reported_through["tracker"] = second
        elif kind == "producer-done":
            self.outcomes[message[1]] = _ProducerOutcome(*message[2:])
            self.reported_through.pop(f"producer {message[1]}", None)
        elif kind == "tracker-offsets":
            self.consumed_offsets, self.offsets_consumed_twice = message[1:]
        elif kind == "tracker-done":
            self.tracker_outcome = message[1:]
            self.reported_through.pop("tracker", None)
        elif kind == "error":
            self.failure = f"{message[1]} failed: {message[2]}"
        if self.reported_through:
            self.recorder.close_through(min(self.reported_through.values()))

    def _show_progress(self) -> None:
        through = min(self.reported_through.values()) if self.reported_through else self.recorder.last_second
        if through <= self.shown_second:
            return
        self.shown_second = through
        counts = self.recorder.counts_by_second
        lag = self.recorder.lag_messages.get(through)
        self.progress.update(progress_line(
            through + 1, counts["sent"][through], counts["acked"][through], counts["consumed"][through],
            self._p99_so_far("service_time", through),
            self._p99_so_far("response_time", through) if self.scenario.rate else None,
            self._p99_so_far("end_to_end", through), lag))

    def _p99_so_far(self, name: str, second: int) -> int | None:
        recorder = self.recorder.latency[name]
        if recorder.cumulative.get_total_count():
            return recorder.cumulative.get_value_at_percentile(99.0)
        stats = recorder.interval_stats.get(second)  # still in warm-up: the last second's p99
        return stats[1] if stats else None

    def _stop_children(self, stop) -> None:
        stop.set()
        for child in self.children:
            if child.pid is None:  # start() failed or was never reached
                continue
            child.join(timeout=INTERRUPT_DRAIN_S + 5)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)

    def _event(self, kind: str, detail: str) -> None:
        t_s = (time.perf_counter_ns() - self.t0_ns) / NS_PER_S if hasattr(self, "t0_ns") else 0.0
        self.events.append({"t_s": round(t_s, 3), "kind": kind, "detail": detail})

    # -- result -----------------------------------------------------------------------------

    def _write(self) -> tuple[int, Path]:
        ended_at = time.time()
        self.recorder.close_through(self.recorder.last_second)
        totals = self.recorder.totals()
        seen, duplicated, foreign = self.tracker_outcome or ({}, 0, 0)
        lost = 0
        lost_examples: list[str] = []
        if audits_offsets(self.scenario):
            acked_offsets = {p: offsets.ranges() for p, offsets in self.acked_offsets.items()}
            lost, unclaimed, first = audit_offsets(acked_offsets, self.consumed_offsets)
            duplicated = unclaimed + self.offsets_consumed_twice
            lost_examples = [f"partition {p} offset {offset}" for p, offset in first]
        for index, outcome in sorted(self.outcomes.items()) if not audits_offsets(self.scenario) else ():
            count, first = lost_sequences(seen.get(index), outcome.sent, outcome.failed_sequences)
            # Failed deliveries whose report carried no trace header are not lost either; their
            # sequences are unknown, so only the count is corrected (and examples are unsure).
            failed_untraced = outcome.sent - outcome.acked - len(outcome.failed_sequences)
            lost += max(0, count - failed_untraced)
            if not failed_untraced:
                lost_examples += [f"{index}/{sequence}" for sequence in first]
        try:
            after = topic_watermarks(self.bootstrap_servers, self.scenario.topic, self.scenario.consumer_config)
            offset_delta = sum(high for _, high in after.values()) - sum(self.start_offsets_high.values())
        except RunFailed:
            offset_delta = None
        warnings = []
        if any(recorder.clamped for recorder in self.recorder.latency.values()):
            warnings.append("latencies above 1 h were clamped to 1 h")
        if foreign:
            warnings.append(f"{foreign} messages on the topic did not come from this run (another producer?)")
        if offset_delta is not None and offset_delta != totals["acked"] and self.scenario.acks != "0":
            warnings.append(f"broker offsets grew by {offset_delta:,} but {totals['acked']:,} deliveries were acked")
        purged = sum(outcome.undelivered for outcome in self.outcomes.values())
        if purged:
            warnings.append(f"{purged:,} messages were not delivered before the flush deadline and were purged (counted as failed)")
        if lost_examples:
            unit = "" if audits_offsets(self.scenario) else " (producer/sequence)"
            warnings.append(f"lost{unit}, first ones: {', '.join(lost_examples[:10])}")
        failed_deliveries = sum(o.sent - o.acked for o in self.outcomes.values())
        failed = max(totals["failed"], failed_deliveries)
        status, failure = "complete", self.failure
        if self.interrupted:
            status, failure = "interrupted", failure or "interrupted by the user (Ctrl+C or SIGTERM)"
        elif failure is not None:
            status = "failed"
        elif failed or lost:
            status = "failed"
            first_error = next((o.first_error for o in self.outcomes.values() if o.first_error), None)
            failure = f"{failed:,} deliveries failed, {lost:,} acked orders lost"
            failure += f" (first error: {first_error})" if first_error else ""
        producing_s = max((o.producing_s for o in self.outcomes.values()), default=0.0)
        elapsed_s = max((o.elapsed_s for o in self.outcomes.values()), default=0.0)
        latency = {name: self.recorder.latency[name].summary() for name in ("service_time", "end_to_end")}
        # 1: every message's end-to-end latency; 64: only every 64th message carried the trace.
        latency["end_to_end"]["sample_every"] = trace_sample_every(self.scenario)
        if self.scenario.rate:
            latency["response_time"] = self.recorder.latency["response_time"].summary()
            latency["send_delay"] = self.recorder.latency["send_delay"].summary()
        result: dict[str, Any] = {
            "kind": "run",
            "run_id": self.run_id.hex,
            "scenario": self.scenario.to_dict(),
            "fingerprint": self.scenario.fingerprint(),
            "environment": {**environment_metadata(), "producer_and_tracker_same_host": True},
            "broker": {"bootstrap_servers": self.bootstrap_servers, "version": self.broker.version,
                       "embedded": self.broker.embedded is not None, "settings": self.broker.settings,
                       "topic_settings": self.topic_settings},
            "started_at": utc_iso(self.started_at),
            "ended_at": utc_iso(ended_at),
            "duration_s": round(producing_s, 3),
            "warmup_s": self.scenario.warmup_s,
            "status": status,
            "failure": failure,
            # How lost/duplicated were counted (see the module docstring).
            "audit": "offsets" if audits_offsets(self.scenario) else "sequences",
            "counts": {"sent": totals["sent"], "acked": totals["acked"], "failed": failed,
                       "consumed": totals["consumed"], "lost": lost, "duplicated": duplicated,
                       # The tracker does not parse values (random/text payloads are not orders).
                       "malformed": None,
                       "broker_offset_delta": offset_delta},
            # acked / (first send -> last ack): what `bench calibrate` compares with a bare loop.
            "throughput": {"producing_s": round(producing_s, 3), "elapsed_s": round(elapsed_s, 3),
                           "acked_per_s": round(totals["acked"] / elapsed_s, 1) if elapsed_s else None},
            "latency_us": latency,
            "series": self.recorder.series(),
            "events": self.events,
            "warnings": warnings,
            "large_message": None,
        }
        result["warnings"] = derive_warnings(result)
        folder = run_folder(self.results_root, self.scenario.name, self.started_at)
        seconds = self.recorder.seconds()
        write_interval_log(folder / "delivery.hlog", self.recorder.latency["service_time"].interval_list(seconds), self.started_at)
        write_interval_log(folder / "e2e.hlog", self.recorder.latency["end_to_end"].interval_list(seconds), self.started_at)
        write_result(folder, result)
        self.result = result
        if self.interrupted:
            code = EXIT_INTERRUPTED
        elif status == "failed":
            code = EXIT_RUN_FAILED
        else:
            code = EXIT_OK
        return code, folder


def _describe_rate(scenario: Scenario) -> str:
    if scenario.phases:
        return "phases " + ", ".join(f"{p.rate:,.0f}/s for {p.duration_s:g} s" for p in scenario.phases)
    return "flat out (rate 0)" if scenario.rate == 0 else f"{scenario.rate:,.0f} msg/s"


def run_scenario(
    scenario: Scenario,
    bootstrap_servers: str,
    results_root: str | os.PathLike = DEFAULT_RESULTS_ROOT,
    broker_mode: str = "auto",
    keep_broker: bool = False,
    out: TextIO | None = None,
    write_report: bool = True,
    faults: Sequence[Fault] = (),
    broker_state_dir: str | os.PathLike | None = None,
) -> tuple[int, Path, dict[str, Any]]:
    """Run one scenario end to end; returns (exit code, run folder, result dict).

    The exit code is 0 (complete), 3 (deliveries failed, orders lost, a process died) or 130
    (interrupted); the result folder is written in every case once producing has started.
    Set-up problems (bad topic, broker unreachable) raise UsageError / RunFailed instead.
    """
    out = out if out is not None else sys.stdout
    check_client_settings(scenario, bootstrap_servers)
    check_results_root(results_root)
    # The scenario's client settings (SASL, SSL) also reach the broker checks.
    with ensure_broker(bootstrap_servers, broker_mode, keep=keep_broker, state_dir=broker_state_dir,
                       client_settings=scenario.producer_config) as broker:
        if faults and broker.embedded is None:
            raise UsageError(f"faults need the embedded broker, and the broker at {bootstrap_servers} is not one started "
                             "by `python -m bench broker start` (or give its --state-dir)")
        run = _Run(scenario, broker, Path(results_root), out, faults)
        code, folder = run.execute()
    if write_report:
        from bench.output.report import write_run_report  # matplotlib: only when a report is wanted

        write_run_report(folder, run.result)
    return code, folder, run.result
