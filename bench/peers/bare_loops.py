"""The bare confluent-kafka loops the harness's speed is judged against: the plainest correct
producers, with nothing of the harness (no trace header, no histograms, no tracker).

Four of them, because confluent-kafka offers three speeds of sending and two kinds of reports:

- `produce()` with a per-message delivery callback (confluent-kafka's examples/producer.py);
- `produce_batch()` with a per-message delivery callback (one Python call per batch);
- `produce_batch()` with failures-only reports (`delivery.report.only.error=true`: the callback
  runs for failed messages only; acked = accepted - failed once flushed, exact);
- `produce_batch()` without callbacks (no Python work per delivery at all).

Each sends one value flat out for a duration, then flushes; throughput = acked messages over
first send -> last ack. Acked counts come from the callbacks where there are callbacks, and are
checked against the topic's offsets on the broker; without callbacks the broker's offsets are the count.

On the consumer side two bare loops read a backlog with the harness's consumer settings:
consume() in batches (as the tracker reads) and poll() per message.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from bench.core.clients import scenario_consumer_config, scenario_producer_config, scenario_watermarks
from bench.core.producer import CLOCK_CHECK_EVERY, QUEUE_FULL_POLL_S
from bench.core.scenario import Scenario
from streamstore.errors import RunFailed

# The clock check interval and the wait for room in a full queue are bench run producer's own
# (CLOCK_CHECK_EVERY, QUEUE_FULL_POLL_S), so the loops differ from it only in what they measure.
# Messages per produce_batch() call: large enough that the per-call cost vanishes, small enough
# that a full queue refuses only part of a batch.
BATCH_MESSAGES = 1024
FLUSH_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True)
class LoopResult:
    acked: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.acked / self.elapsed_s


class _Outcome:
    def __init__(self) -> None:
        self.acked = self.failed = self.accepted = 0
        self.first_error: str | None = None

    def on_delivery(self, error: KafkaError | None, _message) -> None:
        if error is None:
            self.acked += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or error.str()


def _loop_produce_callback(producer: Producer, topic: str, value: bytes, end: float, outcome: _Outcome) -> None:
    callback = outcome.on_delivery
    sent = 0
    while sent % CLOCK_CHECK_EVERY or time.perf_counter() < end:
        try:
            producer.produce(topic, value, callback=callback)
        except BufferError:
            producer.poll(QUEUE_FULL_POLL_S)
            continue
        sent += 1
        producer.poll(0)


def _send_batch(producer: Producer, topic: str, batch: list[dict], callback, outcome: _Outcome) -> None:
    """One batch, the part a full queue refused sent again after a poll; counts what was accepted."""
    pending = batch
    while pending:
        try:
            queued = (producer.produce_batch(topic, pending, on_delivery=callback) if callback
                      else producer.produce_batch(topic, pending))
        except BufferError:
            queued = 0
        outcome.accepted += queued
        if queued == len(pending):
            return
        refused = []
        for message in pending:
            error = message.pop("_error", None)
            if error is not None:
                if error.code() != KafkaError._QUEUE_FULL:
                    raise RunFailed(f"produce_batch refused a message: {error.str()}")
                refused.append(message)
        pending = refused if queued or refused else pending
        producer.poll(QUEUE_FULL_POLL_S)


def _loop_batch(callback: bool) -> Callable[[Producer, str, bytes, float, _Outcome], None]:
    def loop(producer: Producer, topic: str, value: bytes, end: float, outcome: _Outcome) -> None:
        batch = [{"value": value} for _ in range(BATCH_MESSAGES)]
        on_delivery = outcome.on_delivery if callback else None
        while time.perf_counter() < end:
            _send_batch(producer, topic, batch, on_delivery, outcome)
            producer.poll(0)

    return loop


@dataclasses.dataclass(frozen=True)
class BareLoop:
    name: str
    callbacks: bool
    loop: Callable[[Producer, str, bytes, float, _Outcome], None]
    # The callback runs for failed messages only (delivery.report.only.error).
    failures_only: bool = False

    @property
    def exact_counts(self) -> bool:
        """Whether the loop itself knows how many were acked (the harness's audit needs that)."""
        return self.callbacks


BARE_LOOPS = (
    BareLoop("produce()+callback", True, _loop_produce_callback),
    BareLoop("produce_batch()+callback", True, _loop_batch(callback=True)),
    BareLoop("produce_batch() failures-only", True, _loop_batch(callback=True), failures_only=True),
    BareLoop("produce_batch() no callback", False, _loop_batch(callback=False)),
)


def run_bare_loop(loop: BareLoop, scenario: Scenario, bootstrap_servers: str, value: bytes,
                  duration_s: float) -> LoopResult:
    """One bare loop on the scenario's (fresh, single-partition or not) topic."""
    config = scenario_producer_config(scenario, bootstrap_servers)
    config["delivery.report.only.error"] = loop.failures_only
    producer = Producer(config)
    producer.list_topics(scenario.topic, timeout=30)
    before = sum(high for _, high in scenario_watermarks(scenario, bootstrap_servers).values())
    outcome = _Outcome()
    started = time.perf_counter()
    loop.loop(producer, scenario.topic, value, started + duration_s, outcome)
    left = producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    stored = sum(high for _, high in scenario_watermarks(scenario, bootstrap_servers).values()) - before
    if left:
        raise RunFailed(f"bare loop {loop.name}: {left:,} messages still unacknowledged after {FLUSH_TIMEOUT_S:g} s")
    if loop.failures_only:
        # Every accepted message was reported exactly once: the failed ones to the callback.
        outcome.acked = outcome.accepted - outcome.failed
    if outcome.failed:
        raise RunFailed(f"bare loop {loop.name}: {outcome.failed:,} deliveries failed ({outcome.first_error})")
    if loop.callbacks and outcome.acked != stored:
        raise RunFailed(f"bare loop {loop.name}: {outcome.acked:,} acked but the broker's offsets grew by {stored:,}")
    return LoopResult(stored, elapsed)


# -- the consumer side: bare consume loops (bench calibrate --side consumer) -----------------------
# Messages per consume() call: the harness's tracker asks for as many (bench/core/tracker.py).
CONSUME_BATCH = 5000
# A loop that has read nothing for this long has stalled: it fails instead of waiting for ever.
CONSUME_IDLE_S = 60.0


def _consume_batches(consumer: Consumer, until: int) -> int:
    """consume() in batches of CONSUME_BATCH until `until` messages: the loop of confluent-kafka's
    examples/consumer.py with consume() instead of poll()."""
    read = 0
    while read < until:
        # Never more than are left: consume() waits for a full batch up to its timeout.
        messages = consumer.consume(min(CONSUME_BATCH, until - read), CONSUME_IDLE_S)
        if not messages:
            raise RunFailed(f"bare consume loop: nothing read for {CONSUME_IDLE_S:g} s after {read:,} messages")
        for message in messages:
            if message.error() is not None and message.error().code() != KafkaError._PARTITION_EOF:
                raise RunFailed(f"bare consume loop: {message.error().str()}")
        read += sum(1 for message in messages if message.error() is None)
    return read


def _poll_each(consumer: Consumer, until: int) -> int:
    """poll() for one message at a time (confluent-kafka's examples/consumer.py as it is)."""
    read = 0
    while read < until:
        message = consumer.poll(CONSUME_IDLE_S)
        if message is None:
            raise RunFailed(f"bare poll loop: nothing read for {CONSUME_IDLE_S:g} s after {read:,} messages")
        if message.error() is None:
            read += 1
        elif message.error().code() != KafkaError._PARTITION_EOF:
            raise RunFailed(f"bare poll loop: {message.error().str()}")
    return read


@dataclasses.dataclass(frozen=True)
class BareConsumeLoop:
    name: str
    loop: Callable[[Consumer, int], int]


BARE_CONSUME_LOOPS = (BareConsumeLoop("consume(5000)", _consume_batches), BareConsumeLoop("poll()", _poll_each))


def run_bare_consume_loop(loop: BareConsumeLoop, scenario: Scenario, bootstrap_servers: str,
                          start_offsets: dict[int, int], expected: int) -> LoopResult:
    """Read `expected` messages from start_offsets (partition -> offset) with the harness's consumer
    settings, nothing done per message; timed as the tracker is, from the first batch (or message)
    that arrived to the last (`reading_s` in a result), so connecting and the first fetch are out."""
    config = scenario_consumer_config(scenario, bootstrap_servers, f"bare-{time.time_ns()}")
    consumer = Consumer(config)
    try:
        consumer.assign([TopicPartition(scenario.topic, p, offset) for p, offset in start_offsets.items()])
        first = loop.loop(consumer, 1)
        started = time.perf_counter()
        read = first + loop.loop(consumer, expected - first)
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    if read != expected:
        raise RunFailed(f"bare {loop.name}: read {read:,} messages, the backlog holds {expected:,}")
    return LoopResult(read, elapsed)
