"""The audit sees real loss: the broker drops acknowledged orders before the tracker reads them.

The tracker is stalled at the start (`seams.stalled_tracker`, test-only); meanwhile the test
deletes the partition's first records (AdminClient.delete_records) once the broker holds them.
The tracker then starts at the new log start, so exactly the deleted orders were acked and never
consumed: `lost` must equal that number, the run is failed and exits 3, and every count agrees
with the broker's own offsets.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from kafka_truth import RecordDropper, assert_counts_match_broker
from seams import stalled_tracker

from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from streamstore.admin import topic_watermarks
from streamstore.errors import EXIT_RUN_FAILED

# The tracker stalls this long: far longer than producing plus the deletion take.
STALL_S = 8.0
# Topic creation and the producer and tracker processes starting, before the run's start.
SETUP_ALLOWANCE_S = 60.0


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
    monkeypatch.setattr("bench.core.runner.tracker_main", stalled_tracker(STALL_S))
    # The stall counts from the run's start (t0, after the topic and the processes are set up, which
    # takes seconds on a busy machine); the dropper waits from before the set-up, so its own limit
    # only guards against a hang, and whether it dropped in time is judged from the run's start.
    dropper = RecordDropper(kafka_bootstrap, unique_topic, wait_for, drop_below, within_s=SETUP_ALLOWANCE_S + STALL_S)
    dropper.start()
    code, _, result = run_scenario(scenario, kafka_bootstrap, tmp_path, "external", out=io.StringIO())
    dropper.join(timeout=5)
    assert dropper.error is None, dropper.error
    started_at = dt.datetime.fromisoformat(result["started_at"]).timestamp()
    assert dropper.dropped_at is not None and dropper.dropped_at < started_at + STALL_S, "dropped after the stall"
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
