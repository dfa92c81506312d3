"""The flat-out send path (bench/core/delivery.py) against the real broker, where librdkafka's
queue overflows: `produce_batch` then queues only part of a batch and reports the rest in the
messages' dicts. Counts, offsets and the trace cadence must stay exact through every retry."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from kafka_truth import broker_message_count

from bench.core.audit import TRACE_SAMPLE_EVERY
from bench.core.clients import scenario_producer_config
from bench.core.delivery import DeliveryAccount, DrainDeadline, Sender, payload_pool
from bench.core.scenario import Scenario
from streamstore.admin import connect_admin, ensure_topic, topic_watermarks
from streamstore.trace import read_trace

RUN_ID = bytes(range(16))
# Far below what one flat-out burst queues: most batches overflow it.
SMALL_QUEUE = 300


def _flat_out(topic: str, **fields) -> Scenario:
    return Scenario.from_mapping({"name": "delivery", "topic": topic, "partitions": 2, "rate": 0, "duration_s": 1,
                                  "warmup_s": 0, **fields})


def _sender(scenario: Scenario, bootstrap: str, extra: dict, waits: list[int],
            service_sample_every: int = 1) -> tuple[Sender, Producer]:
    client = Producer({**scenario_producer_config(scenario, bootstrap), **extra})
    client.list_topics(scenario.topic, timeout=30)
    account = DeliveryAccount(scenario, 0, service_sample_every, queued=client.__len__)

    def wait() -> None:
        waits.append(len(client))
        client.poll(0.05)

    return Sender(client, scenario, RUN_ID, account, *payload_pool(scenario), wait), client


@pytest.mark.parametrize("reports, service_sample_every", [("all", 1), ("all", TRACE_SAMPLE_EVERY),
                                                            ("failures", TRACE_SAMPLE_EVERY)],
                         ids=["every-service-time", "sampled-service-time", "failures-only"])
def test_a_full_queue_loses_no_count_offset_or_trace(kafka_bootstrap, unique_topic, reports, service_sample_every):
    scenario = _flat_out(unique_topic, delivery_reports=reports)
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, 2)
    waits: list[int] = []
    # A message limit on librdkafka's queue far below one burst (a test setting, not a default).
    sender, client = _sender(scenario, kafka_bootstrap, {"queue.buffering.max.messages": SMALL_QUEUE}, waits,
                             service_sample_every)
    total = 20_000
    for _ in range(total // 100):  # as the Locust user calls it: bursts not aligned with the trace cycle
        sender.send_flat_out(100)
    assert client.flush(60) == 0
    report = sender.account.take_second(0)
    assert len(waits) > 10, "the queue never overflowed: the test tests nothing"
    assert sender.sequence == report.sent == report.acked == total and report.failed == 0
    watermarks = topic_watermarks(kafka_bootstrap, unique_topic)
    if reports == "failures":
        # No report per acked message: acked = accepted - failed, no latency, no offsets.
        assert report.service_s == [] and report.acked_ranges == {}
    else:
        # Every acked message's latency, or exactly the traced ones' (the acked count is the offsets').
        assert len(report.service_s) == -(-total // service_sample_every)
        assert all(latency > 0 for latency in report.service_s)
        # The acked offsets are exactly the broker's records, partition by partition.
        assert report.acked_ranges == {p: [(low, high)] for p, (low, high) in watermarks.items() if high > low}
    assert broker_message_count(kafka_bootstrap, unique_topic) == total
    # No "_error" left in the reused message dicts after the overflows.
    assert not any("_error" in message for message in sender._batch_pool)
    # Sequences 0, 64, 128, ... carry the trace header, each once; every other message none.
    traced = _traced_sequences(kafka_bootstrap, unique_topic, total)
    assert traced == list(range(0, total, TRACE_SAMPLE_EVERY))


def test_service_time_is_sampled_only_as_the_trace_is():
    at_rate = Scenario.from_mapping({"name": "delivery", "topic": "t", "rate": 100, "duration_s": 1, "warmup_s": 0})
    with pytest.raises(ValueError):
        DeliveryAccount(at_rate, 0, TRACE_SAMPLE_EVERY)  # every message is traced at a fixed rate
    with pytest.raises(ValueError):
        DeliveryAccount(_flat_out("t"), 0, 8)


@pytest.mark.parametrize("start", [0, 1], ids=["traced-produce", "untraced-batch"])
def test_a_message_librdkafka_refuses_fails_the_send_as_produce_would(kafka_bootstrap, unique_topic, start):
    scenario = _flat_out(unique_topic, message_size=2_000, delivery_reports="all")
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, 2)
    waits: list[int] = []
    # The client's own size limit below the message: librdkafka refuses it locally.
    sender, client = _sender(scenario, kafka_bootstrap, {"message.max.bytes": 1_000}, waits)
    sender.sequence = start  # 0: the traced message first (produce()), 1: an untraced batch first
    with pytest.raises(KafkaException) as raised:
        sender.send_flat_out(10)
    assert raised.value.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert waits == [] and len(client) == 0
    assert not any("_error" in message for message in sender._batch_pool)


def test_with_failures_only_reports_a_refused_batch_message_counts_as_failed_at_once(kafka_bootstrap, unique_topic):
    """produce_batch leaves an `_error` in a message it refused: never accepted, so no report will
    come; it counts as sent and failed at once, with its sequence, and sending goes on."""
    scenario = _flat_out(unique_topic, message_size=2_000, delivery_reports="failures")
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, 2)
    waits: list[int] = []
    sender, client = _sender(scenario, kafka_bootstrap, {"message.max.bytes": 1_000}, waits, TRACE_SAMPLE_EVERY)
    sender.sequence = 1  # an untraced batch first: sequences 1..10
    sender.send_flat_out(10)
    assert client.flush(30) == 0
    report = sender.account.take_second(0)
    assert (report.sent, report.acked, report.failed) == (10, 0, 10)
    assert sender.account.failed_sequences == list(range(1, 11)) and sender.sequence == 11
    assert report.errors and not any("_error" in message for message in sender._batch_pool)
    assert broker_message_count(kafka_bootstrap, unique_topic) == 0


def test_failures_only_acked_is_accepted_less_failed_less_still_queued():
    queued = [5]
    account = DeliveryAccount(_flat_out("t", delivery_reports="failures"), 0, TRACE_SAMPLE_EVERY,
                              queued=lambda: queued[0])
    account.sent = 100
    assert account.take_second(0).acked == 95
    account.sent, queued[0] = 10, 20  # the queue grew: never a negative second
    assert account.take_second(1).acked == 0
    account.failed, queued[0] = 3, 0  # flushed: exact
    assert account.take_second(2).acked == 12 and account.acked_total == 107
    with pytest.raises(ValueError):
        DeliveryAccount(_flat_out("t", delivery_reports="failures"), 0, TRACE_SAMPLE_EVERY)


def _traced_sequences(bootstrap: str, topic: str, total: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
    sequences, seen = [], 0
    try:
        while seen < total:
            batch = consumer.consume(1_000, timeout=10)
            assert batch, f"only {seen:,} of {total:,} records readable"
            for message in batch:
                assert message.error() is None, message.error()
                seen += 1
                trace = read_trace(message.headers())
                if trace is not None:
                    assert trace.run_id == RUN_ID and trace.producer == 0
                    sequences.append(trace.sequence)
    finally:
        consumer.close()
    return sorted(sequences)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_drain_gives_up_after_its_time_without_a_delivery_not_after_its_time():
    """A slow broker that keeps acking is waited for past drain_timeout_s; one that goes silent
    is given up on drain_timeout_s after its last delivery; an interrupted run's wait is fixed."""
    clock = FakeClock()
    deadline = DrainDeadline(10.0, clock=clock)
    queued = 4_000
    for _ in range(30):  # a delivery every 5 s for 150 s
        assert not deadline.expired(queued)
        clock.now += 5
        queued -= 100
    assert not deadline.expired(queued)  # this delivery came at 150 s
    clock.now += 9.9
    assert not deadline.expired(queued)
    clock.now += 0.2
    assert deadline.expired(queued)  # silent for 10.1 s

    fixed = DrainDeadline(2.0, progress_extends=False, clock=(clock := FakeClock()))
    for queued in (300, 200, 100):
        assert not fixed.expired(queued)
        clock.now += 0.9
    assert fixed.expired(50)


def test_a_reconnecting_broker_gets_the_idle_time_from_now_plus_its_backoff():
    clock = FakeClock()
    deadline = DrainDeadline(10.0, clock=clock)
    assert not deadline.expired(100)
    clock.now = 8.0
    deadline.wait_more(15.0)  # still in the outage at 8 s: 10 + 15 s from now
    clock.now = 32.9
    assert not deadline.expired(100)
    clock.now = 33.0
    assert deadline.expired(100)
