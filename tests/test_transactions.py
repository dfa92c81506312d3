"""Transactional producers and the tracker's isolation level: the abort schedule and the audit's
arithmetic (pure), and runs on the real broker whose counts are checked against the broker's
offsets and against what a consumer of each isolation level reads there."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from bench.core.audit import SEQUENCES, ProducerAccount, SequenceAudit, TrackerAccount, audit_method, evaluate_audit
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.core.transactions import aborts, transactions_section
from bench.output.report import run_report_blocks, to_markdown
from bench.results.metrics import METRICS
from streamstore.admin import topic_watermarks
from streamstore.config import consumer_config
from streamstore.errors import UsageError

# -- pure -------------------------------------------------------------------------------------


def test_the_abort_schedule_aborts_exactly_the_ratio_spread_evenly():
    assert [t for t in range(30) if aborts(t, 0.1)] == [9, 19, 29]
    assert sum(aborts(t, 0.25) for t in range(1000)) == 250
    assert not any(aborts(t, 0.0) for t in range(100))


def test_aborted_sequences_are_not_lost_and_any_consumed_is_counted():
    audit = SequenceAudit()
    for sequence in [*range(0, 10), *range(20, 30), 12]:  # 10..19 aborted, but 12 arrived anyway
        audit.mark(0, sequence)
    tracker = TrackerAccount(seen={0: bytes(audit.seen[0])})
    outcome = evaluate_audit(SEQUENCES, [ProducerAccount(0, 30, 30, aborted=[(10, 20)])], tracker)
    assert (outcome.lost, outcome.duplicated, outcome.aborted_consumed) == (0, 0, 1)
    # A committed order missing is still lost; without transactions aborted_consumed is null.
    plain = evaluate_audit(SEQUENCES, [ProducerAccount(0, 31, 31)], tracker)
    assert plain.lost == 10 and plain.aborted_consumed is None  # 10, 11, 13..19 and 30


def test_the_offsets_check_adds_records_and_markers():
    summary = {"committed": 9, "aborted": 1, "committed_records": 90, "aborted_records": 10, "markers": 12,
               "aborted_ranges": [(90, 100)], "by_partition": {}}
    section = transactions_section([summary, summary], isolation_level="read_committed", aborted_consumed=0,
                                   offset_delta=224)
    assert section["transactions"] == 20 and section["offsets"]["expected_delta"] == 224
    assert section["offsets"]["holds"] is True
    unread = transactions_section([summary], isolation_level="read_committed", aborted_consumed=0, offset_delta=None)
    assert unread["offsets"]["holds"] is None


@pytest.mark.parametrize(("values", "message"), [
    ({"transaction_abort_ratio": 0.1}, "transaction_abort_ratio: needs transactions; set transaction_size"),
    ({"transaction_size": 10, "acks": "1"}, 'transaction_size: transactions need acks = "all" (not 1)'),
    ({"transaction_size": 10, "transaction_abort_ratio": 1}, "transaction_abort_ratio: 1 aborts every transaction"),
    ({"transaction_size": 10, "delivery_reports": "failures"}, 'delivery_reports: transactions need "all"'),
    ({"transaction_size": -1}, "transaction_size: -1 is out of range"),
    ({"isolation_level": "committed"}, "isolation_level: 'committed' is not allowed (allowed: read_committed, read_uncommitted)"),
    ({"consumer_config": {"isolation.level": "read_uncommitted"}}, "'isolation.level' is set by the scenario field 'isolation_level'"),
    ({"producer_config": {"transactional.id": "x"}}, "'transactional.id' is set by the scenario field 'transaction_size'"),
])
def test_bad_transaction_fields_are_one_clear_line(values, message):
    with pytest.raises(UsageError) as caught:
        Scenario.from_mapping(values)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_transactional_scenario_is_idempotent_traced_and_not_comparable_to_a_plain_one():
    plain = Scenario.from_mapping({"rate": 0})
    transactional = Scenario.from_mapping({"rate": 0, "transaction_size": 100, "transaction_abort_ratio": 0.1})
    assert transactional.idempotence and transactional.delivery_reports == "all"
    assert audit_method(transactional) == SEQUENCES  # every message traced: aborted sequences are known
    assert len({plain.fingerprint(), transactional.fingerprint(),
                Scenario.from_mapping({"rate": 0, "transaction_size": 100}).fingerprint()}) == 3
    # Older results (no such fields) keep their fingerprint: the defaults are left out.
    assert Scenario.from_mapping({"rate": 0, "isolation_level": "read_committed"}).fingerprint() == plain.fingerprint()
    assert METRICS["commit_p99"].path == ("latency_us", "commit", "p99")


# -- real broker ------------------------------------------------------------------------------


def _run(tmp_path: Path, bootstrap: str, topic: str, **fields):
    values = {"name": "test-transactions", "topic": topic, "partitions": 3, "rate": 300, "duration_s": 3,
              "warmup_s": 0, "drain_timeout_s": 20, "linger_ms": 5, "transaction_size": 30,
              "transaction_abort_ratio": 0.1}
    values.update(fields)
    return run_scenario(Scenario.from_mapping(values), bootstrap, tmp_path / "results", "external", out=io.StringIO())


def _read_all(bootstrap: str, topic: str, isolation_level: str) -> int:
    """How many records a consumer of this isolation level reads from the topic (to its end)."""
    ends = {p: high for p, (_, high) in topic_watermarks(bootstrap, topic).items()}
    consumer = Consumer(consumer_config(bootstrap, group_id=f"{topic}-{isolation_level}",
                                        extra={"enable.auto.commit": False, "isolation.level": isolation_level}))
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    count, done = 0, set()
    try:
        while len(done) < len(ends):
            for message in consumer.consume(500, 2.0) or []:
                assert message.error() is None
                count += 1
            done = {p.partition for p in consumer.position([TopicPartition(topic, p) for p in ends])
                    if p.offset >= ends[p.partition]}
    finally:
        consumer.close()
    return count


def _assert_offsets_hold(result, bootstrap: str, topic: str) -> dict:
    """committed + aborted + markers = the broker's offset delta, in total and per partition, as
    the broker reports its offsets now."""
    section = result["transactions"]
    held = {p: high - low for p, (low, high) in topic_watermarks(bootstrap, topic).items()}
    assert section["offsets"]["holds"] and section["offsets"]["expected_delta"] == sum(held.values())
    assert result["counts"]["broker_offset_delta"] == sum(held.values())
    for partition, count in held.items():
        row = result["partitions"]["by_partition"][str(partition)]
        assert row["committed"] + row["aborted"] + row["markers"] == row["broker_offset_delta"] == count, row
    counts = result["counts"]
    assert counts["acked"] == counts["sent"] == section["committed_records"] + section["aborted_records"]
    assert counts["failed"] == counts["lost"] == counts["duplicated"] == 0
    assert section["markers"] >= section["transactions"]  # each transaction wrote at least one partition
    return section


def test_read_committed_never_sees_an_aborted_order_and_sees_every_committed_one(kafka_bootstrap, unique_topic, tmp_path):
    code, _, result = _run(tmp_path, kafka_bootstrap, unique_topic)
    assert code == 0, result["failure"]
    section = _assert_offsets_hold(result, kafka_bootstrap, unique_topic)
    assert (section["transactions"], section["aborted"]) == (30, 3)
    assert section["aborted_records"] == 90 and section["aborted_consumed"] == 0
    assert result["counts"]["consumed"] == section["committed_records"] == 810
    # The broker agrees: read_committed reads the committed records, read_uncommitted every record.
    assert _read_all(kafka_bootstrap, unique_topic, "read_committed") == 810
    assert _read_all(kafka_bootstrap, unique_topic, "read_uncommitted") == 900
    commit = result["latency_us"]["commit"]
    assert commit["count"] > 0 and commit["p50"] > 0
    assert result["latency_us"]["end_to_end"]["includes_commit"] is True
    report = to_markdown(run_report_blocks(result, []))
    assert "| aborted_consumed | 0 |" in report and "(holds)" in report and "## Per partition (skew" in report


def test_read_uncommitted_flat_out_sees_the_aborted_orders_and_counts_them(kafka_bootstrap, unique_topic, tmp_path):
    code, _, result = _run(tmp_path, kafka_bootstrap, unique_topic, rate=0, duration_s=2, transaction_size=200,
                           transaction_abort_ratio=0.5, isolation_level="read_uncommitted")
    assert code == 0, result["failure"]
    section = _assert_offsets_hold(result, kafka_bootstrap, unique_topic)
    assert section["aborted"] >= 1 and section["aborted_records"] > 0
    assert section["aborted_consumed"] == section["aborted_records"]
    assert result["counts"]["consumed"] == result["counts"]["acked"]
