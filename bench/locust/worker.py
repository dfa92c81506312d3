"""The worker side of the Locust user: one producer per Locust process, whose deliveries fire
Locust's request event and are kept as raw numbers, shipped to the master every report as
encoded per-second HdrHistograms (Locust's own percentiles keep about two digits)."""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import time
from collections import Counter, defaultdict
from typing import Any

import gevent
from confluent_kafka import KafkaError, KafkaException, Message

from bench.core.audit import OffsetRanges, audits_offsets, offset_ranges, trace_sample_every
from bench.core.clients import scenario_producer_config
from bench.core.producer import payload_pool
from bench.core.recorder import fold_latencies, record_counts
from bench.core.scenario import Scenario
from bench.output.results import decode_histogram, encode_histogram, new_latency_histogram
from streamstore.producer import OrderProducer
from streamstore.trace import TRACE_HEADER, TRACE_STRUCT, read_trace

# A flat-out user produces this many messages per task run before yielding: enough to make
# Locust's per-task overhead negligible, few enough that the poll greenlet runs every ~millisecond.
FLAT_OUT_BATCH = 100


# Sleep of a producer whose local queue is full, and of the poll greenlet when no delivery
# report was waiting: short, so deliveries are timed close to when librdkafka has them.
QUEUE_FULL_WAIT_S = 0.001


IDLE_POLL_WAIT_S = 0.0005


# The process that imported the locustfile. Locust loads it before `--processes` forks the
# workers, so in a forked worker this is the pid of its parent (the master).
_LOCUSTFILE_PID = os.getpid()
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


# Without prctl (not Linux), how often a forked worker checks that its master still exists.
PARENT_CHECK_INTERVAL_S = 0.5


def die_with_master() -> None:
    """End this worker when the process that forked it ends, however that process ends.

    Locust's master reaps its `--processes` workers at exit only if they have already exited:
    it never signals one that still runs. A master that stops before the test (a bad option,
    an unreachable broker) so left its workers running under init, holding the terminal's
    pipe open and printing "Didn't get heartbeat from master" a minute later. The kernel's
    parent-death signal covers every way the master can end, SIGKILL included. SIGKILL here
    too: with the master gone, nothing can collect what a worker would say or send on exit.
    A worker started on its own (`--worker`, not forked) keeps Locust's behaviour.
    """
    if os.getpid() == _LOCUSTFILE_PID:
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        gevent.spawn(_exit_when_orphaned)
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The master may have ended between the fork and now, before the signal was armed.
    if os.getppid() != _LOCUSTFILE_PID:
        os._exit(0)


def _exit_when_orphaned() -> None:
    while os.getppid() == _LOCUSTFILE_PID:
        gevent.sleep(PARENT_CHECK_INTERVAL_S)
    os._exit(0)


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


def options_bootstrap(environment) -> str:
    return environment.parsed_options.kafka_bootstrap_servers


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
