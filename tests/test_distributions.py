"""Message sizes and keys as distributions: the samplers (pure), the scenario fields, and runs on
the real broker whose per-partition counts match the broker's offsets and show the skew."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka_truth import assert_counts_match_broker

from bench.core.delivery import payload_pool
from bench.core.distributions import (
    KEY_POOL_SIZE,
    KeyDistribution,
    SizeDistribution,
    size_pool,
    stratified_indices,
)
from bench.core.partitions import partitions_section
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from streamstore.admin import topic_watermarks
from streamstore.config import consumer_config
from streamstore.errors import UsageError

ZIPF = {"distribution": "zipf", "count": 100, "s": 1.2}


# -- pure: samplers -------------------------------------------------------------------------


def test_stratified_indices_hold_each_share_to_within_one_slot():
    weights = [5.0, 3.0, 1.5, 0.5]
    indices = stratified_indices(weights, 1000)
    counts = Counter(indices)
    assert len(indices) == 1000
    for index, weight in enumerate(weights):
        assert abs(counts[index] - 1000 * weight / sum(weights)) < 1


def test_zipf_key_pool_follows_one_over_rank_to_the_s():
    pool = KeyDistribution("zipf", 100, 1.2).pool()
    counts = Counter(pool)
    assert len(pool) == KEY_POOL_SIZE and len(counts) == 100
    harmonic = sum(rank ** -1.2 for rank in range(1, 101))
    for rank in (1, 2, 10, 100):
        expected = KEY_POOL_SIZE * rank ** -1.2 / harmonic
        assert abs(counts[b"k%02d" % (rank - 1)] - expected) < 1, rank
    # The head is hot: key 0 alone carries more than a sixth of the traffic.
    assert counts[b"k00"] / KEY_POOL_SIZE > 1 / 6


def test_uniform_key_pool_is_even_and_keys_are_one_length():
    distribution = KeyDistribution("uniform", 1000)
    counts = Counter(distribution.pool())
    assert len(counts) == 1000 and max(counts.values()) - min(counts.values()) <= 1
    assert {len(key) for key in counts} == {distribution.key_bytes()} == {4}


def test_uniform_sizes_span_the_range_with_the_exact_mean():
    sizes = SizeDistribution("uniform", (100, 10_000)).pool(8192)
    assert min(sizes) == 100 and max(sizes) == 10_000
    assert sum(sizes) / len(sizes) == pytest.approx(5050, abs=1)
    # Every tenth of the range holds a tenth of the slots.
    deciles = Counter(min(9, (size - 100) * 10 // 9901) for size in sizes)
    assert all(abs(count - 819.2) <= 1 for count in deciles.values())


def test_weighted_sizes_keep_their_weights_and_large_pools_stay_within_the_memory_budget():
    sizes = SizeDistribution("weighted", (200, 10_000), (9.0, 1.0)).pool(1000)
    assert Counter(sizes) == {200: 900, 10_000: 100}
    large = size_pool(SizeDistribution("uniform", (1_000_000, 3_000_000)), max_bytes=64_000_000)
    assert sum(large) <= 64_000_000 and min(large) >= 1_000_000 and max(large) <= 3_000_000 and len(large) >= 16


def test_pools_are_the_same_every_time():
    distribution = KeyDistribution("zipf", 50, 1.5)
    assert distribution.pool() == distribution.pool()


def test_the_payload_pool_holds_both_distributions_at_one_length():
    scenario = Scenario.from_mapping({"payload": "text", "keys": ZIPF,
                                      "message_size": {"distribution": "uniform", "min": "1KB", "max": "2KB"}})
    values, keys = payload_pool(scenario)
    assert len(values) == len(keys) == KEY_POOL_SIZE
    assert min(map(len, values)) == 1000 and max(map(len, values)) == 2000
    assert sum(map(len, values)) / len(values) == scenario.mean_message_size()


# -- pure: the scenario fields ----------------------------------------------------------------


def test_distributions_round_trip_through_the_result_file_and_change_the_fingerprint():
    plain = Scenario.from_mapping({"message_size": 200})
    zipf = Scenario.from_mapping({"keys": ZIPF})
    weighted = Scenario.from_mapping({"message_size": {"distribution": "weighted", "sizes": ["200B", "1KB"],
                                                       "weights": [3, 1]}})
    assert Scenario.from_mapping(zipf.to_dict()) == zipf
    assert Scenario.from_mapping(weighted.to_dict()) == weighted
    assert weighted.to_dict()["message_size"] == {"distribution": "weighted", "sizes": [200, 1000], "weights": [3.0, 1.0]}
    assert weighted.mean_message_size() == 400
    # A fixed distribution is the plain size, so it fingerprints as one.
    assert Scenario.from_mapping({"message_size": {"distribution": "fixed", "size": 200}}).fingerprint() == plain.fingerprint()
    other_s = Scenario.from_mapping({"keys": {**ZIPF, "s": 0.8}})
    assert len({plain.fingerprint(), zipf.fingerprint(), weighted.fingerprint(), other_s.fingerprint()}) == 4


@pytest.mark.parametrize(("values", "message"), [
    ({"keys": {"distribution": "zipf", "count": 100}}, "keys: a zipf distribution takes count, s (got count)"),
    ({"keys": {"distribution": "pareto", "count": 3}}, "keys.distribution: 'pareto' is not allowed (allowed: uniform, zipf)"),
    ({"keys": {"distribution": "uniform", "count": 0}}, "keys.count: 0 is out of range"),
    ({"keys": {**ZIPF, "s": -1}}, "keys.s: -1 is out of range"),
    ({"message_size": {"distribution": "uniform", "min": "2KB", "max": "1KB"}}, "message_size.max: 1,000 is below min (2,000)"),
    ({"message_size": {"distribution": "weighted", "sizes": [200, 300], "weights": [1]}},
     "message_size.weights: expected one weight per size (2 numbers)"),
    ({"message_size": {"distribution": "weighted", "sizes": [200], "weights": [0]}}, "message_size.weights[0]: 0 is out of range"),
    ({"message_size": {"distribution": "uniform", "min": 1, "max": "2GB"}}, "message_size: 2,000,000,000 bytes is above the client limit"),
    ({"message_size": {"distribution": "uniform", "min": "1XB", "max": 2}}, "message_size.min: unknown size unit 'XB'"),
])
def test_bad_distributions_are_one_clear_line(values, message):
    with pytest.raises(UsageError) as caught:
        Scenario.from_mapping(values)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_partition_section_shows_the_skew_and_names_what_it_could_not_measure():
    section = partitions_section(acked=None, consumed={0: 600, 1: 300, 2: 300}, offset_delta={0: 600, 1: 300, 2: 300},
                                 lag_by_partition={"0": [5, 9, None], "1": [1, 2, 0]}, window=[0, 1])
    assert section["skew"] == 1.5
    assert section["by_partition"]["0"] == {"acked": None, "consumed": 600, "broker_offset_delta": 600, "lag_max": 9}
    assert section["by_partition"]["2"]["lag_max"] is None
    assert "no partition per ack" in section["not_measured"]["acked"]


# -- real broker ------------------------------------------------------------------------------


def _run(tmp_path: Path, bootstrap: str, topic: str, **fields):
    values = {"name": "test-distributions", "topic": topic, "partitions": 6, "rate": 300, "duration_s": 3,
              "warmup_s": 0, "drain_timeout_s": 20, "linger_ms": 5}
    values.update(fields)
    return run_scenario(Scenario.from_mapping(values), bootstrap, tmp_path / "results", "external", out=io.StringIO())


def test_zipf_keys_skew_partitions_and_per_partition_counts_match_the_broker(kafka_bootstrap, unique_topic, tmp_path):
    code, _, result = _run(tmp_path, kafka_bootstrap, unique_topic, keys=ZIPF)
    assert code == 0, result["failure"]
    assert_counts_match_broker(result, kafka_bootstrap)
    rows = result["partitions"]["by_partition"]
    held = {p: high - low for p, (low, high) in topic_watermarks(kafka_bootstrap, unique_topic).items()}
    assert sorted(rows) == [str(p) for p in range(6)]
    for partition, count in held.items():
        row = rows[str(partition)]
        assert row["consumed"] == row["acked"] == row["broker_offset_delta"] == count, (partition, row, count)
    # Zipf's hot key lands on one partition: the busiest carries well over a sixth.
    assert result["partitions"]["skew"] > 1.3, rows
    assert sum(held.values()) == result["counts"]["acked"] == 900


def test_size_distributions_arrive_in_range(kafka_bootstrap, unique_topic, tmp_path):
    sizes = {"distribution": "weighted", "sizes": [300, 3000], "weights": [3, 1]}
    code, _, result = _run(tmp_path, kafka_bootstrap, unique_topic, message_size=sizes, payload="text", partitions=2,
                           rate=400, duration_s=2)
    assert code == 0, result["failure"]
    assert_counts_match_broker(result, kafka_bootstrap)
    consumer = Consumer(consumer_config(kafka_bootstrap, group_id=f"{unique_topic}-check", extra={"enable.auto.commit": False}))
    consumer.assign([TopicPartition(unique_topic, p, 0) for p in range(2)])
    seen: Counter[int] = Counter()
    try:
        while sum(seen.values()) < result["counts"]["acked"]:
            for message in consumer.consume(500, 5.0) or []:
                assert message.error() is None
                seen[len(message.value())] += 1
    finally:
        consumer.close()
    assert set(seen) == {300, 3000}
    # The pool holds 3:1 exactly; the run sends its first 800 slots, which hold it to a few percent.
    assert seen[300] / sum(seen.values()) == pytest.approx(0.75, abs=0.05)
