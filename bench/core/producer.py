"""The producer process: payload pool, the flat-out and scheduled send loops, and delivery
accounting, reported to the coordinator once a second (bench/core/protocol.py).

At a fixed rate message j is intended at t0 + j/rate; each delivery records service time
(send -> ack, librdkafka's `Message.latency()`), send delay (actual - intended) and response
time (intended -> ack = send delay + service time). At rate 0 it sends flat out and records
service time only. The hot path only appends raw numbers to lists; histograms are built by
the coordinator.
"""

from __future__ import annotations

import functools
import gc
import signal
import time
from collections import defaultdict

from confluent_kafka import KafkaError, Message

from bench.core.audit import audits_offsets, offset_ranges, trace_sample_every
from bench.core.clients import describe_error, scenario_producer_config
from bench.core.protocol import ChildFailed, ProducerDone, ProducerSecond, Ready, producer_name
from bench.core.scenario import Scenario
from streamstore.orders import Order, make_payload
from streamstore.producer import OrderProducer
from streamstore.trace import TRACE_HEADER, TRACE_STRUCT, read_trace

NS_PER_S = 1_000_000_000
# A producer cycles through a pool of pre-built payloads: building an order (uuid, JSON) per
# message would cost more than sending it. Power of two so the slot is `sequence & mask`.
PAYLOAD_POOL_SIZE = 256
# ... but never more than this much memory for the pool (large messages get fewer slots).
PAYLOAD_POOL_MAX_BYTES = 64 * 1000**2
# Flat out, look at the clock every this many messages (a clock read per message is ~2 %).
CLOCK_CHECK_EVERY = 64
# When librdkafka's queue is full, serve delivery reports this long before retrying.
QUEUE_FULL_POLL_S = 0.05
# A fixed-rate producer ahead of schedule waits in poll() (serving deliveries) when the next
# send is further away than this; closer, it sleeps (poll's timeout has whole-ms resolution).
POLL_WAIT_ABOVE_NS = 2_000_000
# How long producers may take to deliver what is queued when the run is interrupted.
INTERRUPT_DRAIN_S = 2.0
# Producers get at least this long to deliver the tail of a normal run.
MIN_FLUSH_S = 10.0
# Connected within this long, or the run fails.
CHILD_START_TIMEOUT_S = 60.0


def payload_pool(scenario: Scenario) -> tuple[list[bytes], list[bytes | None]]:
    """Values and keys a producer cycles through (a power-of-two count)."""
    slots = PAYLOAD_POOL_SIZE
    while slots > 1 and slots * scenario.message_size > PAYLOAD_POOL_MAX_BYTES:
        slots //= 2
    orders = [Order.new() for _ in range(slots)]
    values = [make_payload(scenario.payload, scenario.message_size, order) for order in orders]
    keys = [order.order_id.encode() if scenario.keys == "order_id" else None for order in orders]
    return values, keys


class ProducerLoop:
    """One producer process's send loop and delivery accounting (see the module docstring)."""

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
        self.reports.put(ProducerSecond(self.index, self.second, sent - self.sent_at_last_report, acked,
                                        self.failed_in_second, self.service_s[:], self.response_us[:],
                                        self.send_delay_us[:], acked_ranges))
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
        self.reports.put(ProducerDone(self.index, sent, self.acked_total, self.failed_sequences,
                                      producing_s, elapsed_s, self.first_error, undelivered))


def producer_main(index: int, scenario: Scenario, bootstrap_servers: str, run_id: bytes,
                   reports, start, t0_ns, stop) -> None:
    # The coordinator owns Ctrl+C: it tells us through `stop` and we drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        loop = ProducerLoop(index, scenario, bootstrap_servers, run_id, reports)
        # Everything built so far (modules, payload pool) lives for the whole run: keep it out
        # of the collector's scans, which otherwise show up as send-delay spikes.
        gc.freeze()
        reports.put(Ready(producer_name(index)))
        start.wait()
        loop.run(t0_ns.value, stop)
    except Exception as error:  # reported to the coordinator as one line, which ends the run
        reports.put(ChildFailed(producer_name(index), describe_error(error)))
