"""The audit sees real loss: the broker drops acknowledged orders before the tracker reads them.

The tracker is stalled at the start (`seams.stalled_tracker`, test-only) until the test has
deleted the partition's first records (AdminClient.delete_records), which it does once the broker
holds them. The tracker then starts at the new log start, so exactly the deleted orders were acked and never
consumed: `lost` must equal that number, the run is failed and exits 3, and every count agrees
with the broker's own offsets.
"""

from __future__ import annotations

import io

import pytest
from kafka_truth import RecordDropper, assert_counts_match_broker
from seams import stalled_tracker

from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from streamstore.admin import topic_watermarks
from streamstore.errors import EXIT_RUN_FAILED

# How long the dropper waits for the records it deletes: topic creation and the producer and
# tracker processes starting, then producing them (a guard against a hang, not a race).
DROPPER_LIMIT_S = 90.0


@pytest.mark.parametrize("rate, reports, wait_for, drop_below, audit", [
    (400, "all", 800, 300, "sequences"),  # every order traced: lost = sequences never consumed
    (400, "failures", 800, 300, "sequences"),  # the same, acked = accepted - failed
    (0, "all", 20_000, 7_000, "offsets"),  # flat out: lost = acked offsets never consumed
    (0, "failures", 20_000, 7_000, "counts"),  # flat out, failures-only: lost = acked - distinct offsets consumed
])
def test_acked_orders_dropped_by_the_broker_are_lost_exactly(kafka_bootstrap, unique_topic, tmp_path, monkeypatch,
                                                             rate, reports, wait_for, drop_below, audit):
    scenario = Scenario.from_mapping({
        "name": "loss", "topic": unique_topic, "partitions": 1, "rate": rate, "duration_s": 2.5, "warmup_s": 0,
        "drain_timeout_s": 30, "delivery_reports": reports})
    monkeypatch.setattr("bench.core.runner.tracker_main", stalled_tracker(drop_below))
    dropper = RecordDropper(kafka_bootstrap, unique_topic, wait_for, drop_below, within_s=DROPPER_LIMIT_S)
    dropper.start()
    code, _, result = run_scenario(scenario, kafka_bootstrap, tmp_path, "external", out=io.StringIO())
    dropper.join(timeout=5)
    assert dropper.error is None, dropper.error
    assert dropper.dropped_at is not None
    counts = result["counts"]
    low, high = topic_watermarks(kafka_bootstrap, unique_topic)[0]
    assert result["audit"] == audit and result["delivery_reports"] == reports
    assert low == drop_below
    assert counts["lost"] == drop_below, result["warnings"]
    assert counts["acked"] == counts["sent"] == counts["broker_offset_delta"] == high
    assert counts["consumed"] == high - low and counts["duplicated"] == 0
    assert_counts_match_broker(result, kafka_bootstrap, dropped=drop_below)
    assert result["status"] == "failed" and code == EXIT_RUN_FAILED
    assert f"{drop_below:,} acked orders lost" in result["failure"]
