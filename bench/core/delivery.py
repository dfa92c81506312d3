"""The one send path: `Sender` produces orders (flat out in bursts, or one at its intended time)
and `DeliveryAccount` keeps what their delivery reports said, one second at a time.

Both engines use them: the producer process of `bench run` (bench/core/producer.py) and the
producer of a Locust process (bench/locust/worker.py). What differs between them is passed in:
how to wait when librdkafka's queue is full (a blocking `poll` in a process, a gevent yield in
Locust). Locust's statistics are fed from the account's seconds in bulk, not per delivery.

At a fixed rate message j is intended at a given time; its delivery records service time
(send -> ack, librdkafka's `Message.latency()`), send delay (actual - intended) and response
time (intended -> ack = send delay + service time). Flat out only service time is recorded; in
`bench run` only the traced messages' (every 64th), while every delivery still notes its offset.
The hot path only appends raw numbers to lists; histograms are built later, off the hot path.

With `delivery_reports = "failures"` (librdkafka's delivery.report.only.error) the callbacks run
for failed messages only: the account counts what the client accepted and what failed, and the
acked count is accepted - failed - still queued (`len(client)`, which holds every message whose
report has not been served). Each second's figure is at most the few pending report events low;
after the flush (nothing queued) the total is exact. No service or response time is taken.
"""

from __future__ import annotations

import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TypeAlias

from confluent_kafka import KafkaError, KafkaException, Message

from bench.core.audit import audits_offsets, offset_ranges, trace_sample_every
from bench.core.availability import PartitionActivity
from bench.core.distributions import PAYLOAD_POOL_MAX_BYTES, KeyDistribution
from bench.core.protocol import ProducerSecond
from bench.core.scenario import Scenario
from streamstore.orders import Order, make_payload
from streamstore.trace import TRACE_HEADER, TRACE_STRUCT, read_trace

# A producer cycles through a pool of pre-built payloads: building an order (uuid, JSON) per
# message would cost more than sending it. Power of two so the slot is `sequence & mask`.
PAYLOAD_POOL_SIZE = 256

DeliveryCallback: TypeAlias = Callable[[KafkaError | None, Message], None]


class DrainDeadline:
    """When waiting for the deliveries still to come after producing gives up: once `idle_s` pass
    without one (the tracker's drain has the same rule). A slow broker that still acks is waited
    for, so its slowness shows in the latencies instead of as purged, "failed" messages; a silent
    one is given up on. `progress_extends=False` makes it a fixed deadline (an interrupted run)."""

    def __init__(self, idle_s: float, progress_extends: bool = True, clock: Callable[[], float] = time.monotonic):
        self.idle_s, self.progress_extends, self.clock = idle_s, progress_extends, clock
        self.seen: int | None = None
        self.deadline = clock() + idle_s

    def expired(self, deliveries: int) -> bool:
        """Whether to give up now; `deliveries` is a count that changes when a delivery comes
        (the deliveries still queued, `len(client)`, or those reported so far)."""
        now = self.clock()
        if self.progress_extends and self.seen is not None and deliveries != self.seen:
            self.deadline = max(self.deadline, now + self.idle_s)
        self.seen = deliveries
        return now >= self.deadline

    def wait_more(self, extra_s: float) -> None:
        """Count the idle time from now, plus extra_s (a broker that is reconnecting)."""
        self.deadline = max(self.deadline, self.clock() + self.idle_s + extra_s)


def payload_pool(scenario: Scenario) -> tuple[list[bytes], list[bytes | None]]:
    """Values and keys a producer cycles through: two lists of one power-of-two length.

    A size or key distribution (bench/core/distributions.py) is drawn here, before the run: its
    pool is longer, and the shorter of the two lists repeats (the same objects, no copies), so
    the send loop indexes both with one mask and pays nothing per message for the distribution.
    """
    sizes = scenario.value_sizes()  # a distribution's pool is within the memory budget already
    slots = len(sizes)
    if slots == 1:
        slots = PAYLOAD_POOL_SIZE
        while slots > 1 and slots * sizes[0] > PAYLOAD_POOL_MAX_BYTES:
            slots //= 2
    orders = [Order.new() for _ in range(slots)]
    values = [make_payload(scenario.payload, sizes[i % len(sizes)], order) for i, order in enumerate(orders)]
    if isinstance(scenario.keys, KeyDistribution):
        keys: list[bytes | None] = list(scenario.keys.pool())
    else:
        keys = [order.order_id.encode() if scenario.keys == "order_id" else None for order in orders]
    length = max(len(values), len(keys))
    return [values[i % len(values)] for i in range(length)], [keys[i % len(keys)] for i in range(length)]


def batch_message(value: bytes, key: bytes | None) -> dict[str, bytes]:
    """One message as `Producer.produce_batch` takes it (no headers: batch mode has none)."""
    return {"value": value} if key is None else {"value": value, "key": key}


def _transaction_callback(record_service: Callable[[float], None], in_transaction: dict[int, int],
                          failed: Callable[[KafkaError, Message], None]) -> DeliveryCallback:
    """Transactions use the sequence audit (every message traced) and need each ack's partition."""
    def on_delivery_in_transaction(error: KafkaError | None, message: Message) -> None:
        if error is None:
            record_service(message.latency())
            in_transaction[message.partition()] += 1
        else:
            failed(error, message)

    return on_delivery_in_transaction


class DeliveryAccount:
    """Counts and raw latencies of one producer's deliveries since the last `take_second`.

    The lists are emptied in place, never replaced: the delivery callbacks hold their bound
    `append`s, which saves an attribute lookup per delivery.
    """

    def __init__(self, scenario: Scenario, producer_index: int, service_sample_every: int = 1,
                 queued: Callable[[], int] | None = None):
        self.scenario = scenario
        self.producer_index = producer_index
        # Failures-only reports: acked follows from accepted - failed - queued (the client's length).
        self.failures_only = scenario.delivery_reports == "failures"
        if self.failures_only and queued is None:
            raise ValueError("failures-only delivery reports need the client's queue length")
        self.queued = queued
        self.accepted_total = self.failed_total = 0
        # Failures that may still have been written ("possibly persisted": librdkafka gave up
        # waiting, the broker may have stored it); the audit counts them neither lost nor duplicated.
        self.timed_out = 0
        # 1: every delivery's service time; n: only the traced messages' (every n-th flat out).
        # Sampling needs the offset audit, whose per-message offsets then give the acked count.
        if service_sample_every != 1 and service_sample_every != trace_sample_every(scenario):
            raise ValueError(f"service time can be sampled 1/{trace_sample_every(scenario)} here, not 1/{service_sample_every}")
        self.service_sample_every = service_sample_every
        self.sent = 0
        self.service_s: list[float] = []
        self.response_us: list[int] = []
        self.send_delay_us: list[int] = []
        # Offset audit: offsets acked since the last take, per partition.
        self.acked_offsets: defaultdict[int, list[int]] = defaultdict(list)
        self.failed = 0
        # Failed deliveries by librdkafka's error text (for Locust's error table).
        self.errors: Counter[str] = Counter()
        # Over the whole run.
        self.acked_total = 0
        self.failed_sequences: list[int] = []
        self.first_error: str | None = None
        # Acks per partition and the gaps between them (scheduled sends only: flat out pays no extra call).
        self.partition_acks = PartitionActivity()
        # Transactions: acked records per partition since the transaction began (bench/core/transactions.py).
        self.transaction_partitions: Counter[int] | None = Counter() if scenario.transaction_size else None

    def flat_out_callbacks(self) -> tuple[DeliveryCallback, DeliveryCallback]:
        """The delivery callbacks shared by every flat-out message, (untraced, traced): closures
        over bound methods, in the variant this scenario needs, so a delivery costs one or two
        appends. They differ only when service time is sampled: then an untraced delivery notes
        its offset alone (a delivery report's Python call is most of a flat-out send's cost, so
        what it does besides must be minimal)."""
        record_service = self.service_s.append
        failed = self.on_failed
        if self.failures_only:
            # Called for failed deliveries only (delivery.report.only.error).
            return failed, failed
        if self.transaction_partitions is not None:
            on_delivery_in_transaction = _transaction_callback(record_service, self.transaction_partitions, failed)
            return on_delivery_in_transaction, on_delivery_in_transaction
        if not audits_offsets(self.scenario):
            def on_delivery(error: KafkaError | None, message: Message) -> None:
                if error is None:
                    record_service(message.latency())
                else:
                    failed(error, message)

            return on_delivery, on_delivery
        acked_offsets = self.acked_offsets

        def on_delivery_with_offset(error: KafkaError | None, message: Message) -> None:
            if error is None:
                record_service(message.latency())
                acked_offsets[message.partition()].append(message.offset())
            else:
                failed(error, message)

        if self.service_sample_every == 1:
            return on_delivery_with_offset, on_delivery_with_offset

        def on_delivery_offset_only(error: KafkaError | None, message: Message) -> None:
            if error is None:
                acked_offsets[message.partition()].append(message.offset())
            else:
                failed(error, message)

        return on_delivery_offset_only, on_delivery_with_offset

    def scheduled_callback(self, sequence: int, send_delay_us: int) -> Callable[[KafkaError | None, Message], None]:
        return functools.partial(self._on_scheduled_delivery, sequence, send_delay_us)

    def _on_scheduled_delivery(self, sequence: int, send_delay_us: int, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.on_failed(error, message, sequence)
            return
        latency_s = message.latency()
        self.partition_acks.note(message.partition())
        if self.transaction_partitions is not None:
            self.transaction_partitions[message.partition()] += 1
        self.service_s.append(latency_s)
        self.response_us.append(send_delay_us + round(latency_s * 1_000_000))

    def on_failed(self, error: KafkaError, message: Message | None, sequence: int | None = None) -> None:
        """A failed delivery (message None: produce_batch refused it, so it was never accepted)."""
        self.failed += 1
        if error.code() == KafkaError._MSG_TIMED_OUT:
            self.timed_out += 1
        if sequence is None:
            # Flat out the sequence comes from the trace header; a failed delivery report may
            # carry no headers (seen for "Message size too large"), so the scheduled path passes
            # the sequence along. A failure whose sequence stays unknown is still counted: the
            # audit subtracts sent - acked - known failures from what looks lost.
            trace = read_trace(message.headers()) if message is not None else None
            sequence = trace.sequence if trace is not None else None
        if sequence is not None:
            self.failed_sequences.append(sequence)
        text = error.str()
        self.errors[text] += 1
        if self.first_error is None:
            self.first_error = text

    def take_second(self, second: int, client_latency: list | None = None,
                    commit_us: list[int] | None = None, client_stats: dict | None = None) -> ProducerSecond:
        """What was sent and delivered since the last take, as one second's report."""
        self.accepted_total += self.sent
        self.failed_total += self.failed
        if self.failures_only:
            # Reports served so far, less the failures; never below what was already counted.
            acked = max(0, self.accepted_total - self.failed_total - self.queued() - self.acked_total)
        elif self.service_sample_every == 1:
            acked = len(self.service_s)
        else:
            acked = sum(len(offsets) for offsets in self.acked_offsets.values())
        self.acked_total += acked
        report = ProducerSecond(
            self.producer_index, second, self.sent, acked, self.failed, self.service_s[:], self.response_us[:],
            self.send_delay_us[:], {partition: offset_ranges(offsets) for partition, offsets in self.acked_offsets.items()},
            dict(self.errors),
            *self.partition_acks.take(), client_latency or [], commit_us or [], client_stats,
        )
        self.sent = self.failed = 0
        self.errors.clear()
        self.service_s.clear()
        self.response_us.clear()
        self.send_delay_us.clear()
        self.acked_offsets.clear()
        return report


class Sender:
    """Produces this producer's orders, numbered by one sequence, with the trace header.

    `wait_queue_full()` runs when librdkafka's local queue is full; every send is followed by a
    non-blocking `poll(0)`, so delivery reports are served (and timed) as soon as they are in.
    """

    def __init__(self, client, scenario: Scenario, run_id: bytes, account: DeliveryAccount,
                 values: list[bytes], keys: list[bytes | None], wait_queue_full: Callable[[], object]):
        self.client = client
        self.scenario = scenario
        self.run_id = run_id
        self.account = account
        self.values, self.keys = values, keys
        self.wait_queue_full = wait_queue_full
        self.sequence = 0
        self._flat_out_callback, self._traced_callback = account.flat_out_callbacks()
        self._untraced_mask = trace_sample_every(scenario) - 1
        # The message dicts `produce_batch` takes, built once: twice the cycle of payload slots
        # and traced positions (both powers of two), so any batch is one slice of it.
        cycle = max(len(values), self._untraced_mask + 1)
        self._batch_pool = [batch_message(values[i % len(values)], keys[i % len(keys)]) for i in range(2 * cycle)]

    def send_flat_out(self, count: int) -> None:
        """Produce `count` orders back to back. Flat out the trace header rides on every n-th
        message only (the result says n): that one goes through `produce()` (the only call that
        takes headers), the untraced ones between two traced ones through one `produce_batch()`
        and one `poll(0)`: the Python loop, call and poll per message are what a flat-out producer
        saves (a third of its CPU). The offset audit covers every message.
        """
        # Local names for the C methods: a Python frame or attribute lookup per message is a
        # measurable share of a ~2 µs send.
        produce, produce_batch, poll = self.client.produce, self.client.produce_batch, self.client.poll
        pack, time_ns = TRACE_STRUCT.pack, time.time_ns
        topic, values, keys, run_id, batch_pool = self.scenario.topic, self.values, self.keys, self.run_id, self._batch_pool
        index, on_delivery, on_traced = self.account.producer_index, self._flat_out_callback, self._traced_callback
        mask, untraced_mask, pool_mask = len(values) - 1, self._untraced_mask, len(batch_pool) // 2 - 1
        sequence = first = self.sequence
        end = sequence + count
        while sequence < end:
            position = sequence & untraced_mask
            if position == 0:
                slot = sequence & mask
                try:
                    # Headers as a one-key dict: cheaper to build per message than [(name, value)].
                    produce(topic, values[slot], keys[slot], on_delivery=on_traced,
                            headers={TRACE_HEADER: pack(run_id, index, sequence, time_ns())})
                except BufferError:
                    sequence, first, end = self._wait_queue_full(sequence, first, end)
                    continue
                sequence += 1
            else:
                # Up to the next traced message; the pool is twice its cycle, so a slice never wraps.
                size = min(end - sequence, untraced_mask + 1 - position)
                start = sequence & pool_mask
                batch = batch_pool[start:start + size]
                queued = produce_batch(topic, batch, on_delivery=on_delivery)
                if queued < size:
                    sequence, first, end = self._wait_queue_full(sequence, first, end, batch)
                    continue
                sequence += size
            poll(0)
        self.account.sent += sequence - first
        self.sequence = sequence

    def _wait_queue_full(self, sequence: int, first: int, end: int, batch: list[dict] | None = None) -> tuple[int, int, int]:
        """librdkafka's queue is full: count what was queued, wait, and carry on from the
        sequence the sender is at then (in Locust other users of this producer send meanwhile).

        `batch`: the `produce_batch` call starting at `sequence` that refused some messages.
        It reports a message it could not queue as an `_error` entry in that message's dict
        instead of raising: the entries are removed (the dicts are reused). The batch counts as
        sent up to its first message refused for a full queue (that one and the rest are sent
        again). Any other refusal fails the run as `produce()` would have by raising, except with
        failures-only reports, where the message was never accepted: it counts as sent and failed
        at once.
        """
        if batch is not None:
            errors = [(position, message.pop("_error")) for position, message in enumerate(batch) if "_error" in message]
            resend_from = min((p for p, error in errors if error.code() == KafkaError._QUEUE_FULL), default=len(batch))
            refused = [(p, error) for p, error in errors if error.code() != KafkaError._QUEUE_FULL and p < resend_from]
            if refused and not self.account.failures_only:
                raise KafkaException(refused[0][1])
            for position, error in refused:
                self.account.on_failed(error, None, sequence + position)
            sequence += resend_from
        self.account.sent += sequence - first
        self.sequence = sequence
        self.wait_queue_full()
        remaining = end - sequence
        sequence = self.sequence
        return sequence, sequence, sequence + remaining

    def send_scheduled(self, intended_ns: int) -> None:
        """Produce the next order, intended at `intended_ns` (perf_counter_ns), traced."""
        while True:
            # Re-read after a wait: in Locust other users of this producer may have sent meanwhile.
            sequence = self.sequence
            slot = sequence & (len(self.values) - 1)
            send_delay_us = max(0, (time.perf_counter_ns() - intended_ns) // 1000)
            try:
                self.client.produce(self.scenario.topic, self.values[slot], self.keys[slot],
                                    on_delivery=self.account.scheduled_callback(sequence, send_delay_us),
                                    headers={TRACE_HEADER: TRACE_STRUCT.pack(self.run_id, self.account.producer_index,
                                                                             sequence, time.time_ns())})
                break
            except BufferError:
                self.wait_queue_full()
        self.account.send_delay_us.append(send_delay_us)
        self.account.sent += 1
        self.sequence = sequence + 1
        self.client.poll(0)
