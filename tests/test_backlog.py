"""Backlog and catch-up (scenario field `backlog`, bench/core/backlog.py): a backlog built while
the consumers are paused, then drained while the producers go on at the scenario's rate."""

from __future__ import annotations

import io
import math

import pytest

from bench.analysis.backlog import NOT_KEPT_UP, NOT_SETTLED, NOT_STARTED, TOO_SHORT, catch_up
from bench.commands.run import summary_text
from bench.core.producer import backlog_share
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.results.metrics import METRICS
from bench.results.store import load_result
from streamstore.errors import UsageError
from tests.kafka_truth import assert_counts_match_broker, broker_message_count


def test_a_backlog_is_messages_or_value_bytes():
    assert Scenario(backlog=200_000).backlog_messages() == 200_000
    sized = Scenario(backlog="50MB", message_size=200)
    assert sized.backlog == "50000000B" and sized.backlog_messages() == 250_000
    assert Scenario(backlog="1001B", message_size=200).backlog_messages() == 6  # at least that many bytes
    assert Scenario(backlog="50MB").fingerprint() == Scenario(backlog="50000000B").fingerprint()
    assert Scenario().fingerprint() == Scenario(backlog=0).fingerprint() != Scenario(backlog=10).fingerprint()
    assert [backlog_share(10, 3, i) for i in range(3)] == [4, 3, 3]


@pytest.mark.parametrize("value, message", [(-1, "out of range"), (1.5, "whole number"), ("0B", "no bytes"),
                                            ("5 parsecs", "unknown size unit")])
def test_a_bad_backlog_is_one_clear_line(value, message):
    with pytest.raises(UsageError, match=f"backlog: .*{message}") as raised:
        Scenario(backlog=value)
    assert "\n" not in str(raised.value)


def _series(lags, consumed, sent):
    return {"t_s": list(range(1, len(lags) + 1)), "lag_messages": lags, "consumed": consumed, "sent": sent}


def test_the_catch_up_ends_when_the_lag_is_back_within_the_steady_band():
    # Consumers start at 2.5 s; the lag falls into the steady band (at most 5) in the second ending at 5 s.
    lags = [1000, 2000, 2500, 900, 5, 4, 6, 3, 5, 2, 0]
    consumed = [0, 0, 1500, 2600, 1900, 100, 100, 100, 100, 100, 100]
    sent = [1000, 1000, 100, 100, 100, 100, 100, 100, 100, 100, 0]
    figures = catch_up(_series(lags, consumed, sent), 2.5, 200)
    # Producing seconds after the start: indices 2..8 (9, the last with sends, is partial and left
    # out); the steady window is their last third, indices 7 and 8 (t 7..9 s), lags 3 and 5.
    assert figures.steady_window_s == (7, 9) and figures.steady_band_messages == 5
    assert figures.steady_lag_messages == 4
    assert figures.time_to_steady_s == 2.5  # end of second index 4 (t = 5) - 2.5
    assert figures.window == (2, 3, 4) and figures.drain_window_s == (2.5, 5.0)
    assert figures.drain_per_s == round((1500 + 2600 + 1900) / 2.5, 1)
    assert figures.drain_mb_s == round(figures.drain_per_s * 200 / 1e6, 3)
    assert figures.lag_at_start_messages == 2000 and not figures.not_measured


def test_a_lag_still_falling_in_the_steady_window_has_no_time_to_steady():
    lags = [9500, 9000, 8000, 7000, 6000, 5000, 4000, 3000]
    figures = catch_up(_series(lags, [0, 500] + [1000] * 6, [100] * 7 + [0]), 1.0, 200)
    assert figures.time_to_steady_s is None and figures.not_measured["time_to_steady_s"] == NOT_SETTLED
    # The drain rate still covers the consumers' start to the last whole producing second.
    assert figures.drain_window_s == (1.0, 6.0) and figures.drain_per_s == round((500 + 4000) / 5, 1)


def test_a_lag_that_only_grows_never_came_back():
    # Consumers slower than the producers: the lag grows past the backlog and stays there.
    lags = [500, 900, 1200, 1500, 1800, 2100, 2400, 2700]
    figures = catch_up(_series(lags, [0] + [700] * 7, [1000] * 7 + [0]), 0.5, 200, backlog_messages=1000)
    assert figures.time_to_steady_s is None and figures.not_measured["time_to_steady_s"] == NOT_KEPT_UP
    assert figures.steady_lag_messages is None and figures.not_measured["steady_lag_messages"] == NOT_KEPT_UP
    assert figures.drain_window_s == (0.5, 6.0) and figures.drain_per_s == round(700 * 5 / 5.5, 1)


def test_a_run_too_short_or_never_started_says_why():
    short = catch_up(_series([10, 0, 0], [0, 10, 0], [10, 10, 0]), 0.2, 200)
    assert short.time_to_steady_s is None and short.not_measured["time_to_steady_s"] == TOO_SHORT
    never = catch_up(_series([10, 20], [0, 0], [10, 10]), None, 200)
    assert never.drain_per_s is None and set(never.not_measured.values()) == {NOT_STARTED}


def test_a_backlog_of_200000_orders_is_drained_while_producing_goes_on(kafka_bootstrap, unique_topic, tmp_path):
    # 24 s at the rate: the lag must be back in its band before the last third (the steady window),
    # 16 s after the consumers' start, so a drain of 15,000 msg/s on a crowded machine (measured
    # there: 15,600 while six brokers' tests shared its two cores) still settles.
    scenario = Scenario(name="backlog", topic=unique_topic, partitions=3, backlog=200_000, rate=500, duration_s=24,
                        warmup_s=1)
    console = io.StringIO()
    code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external", out=console)
    assert code == 0, result["failure"]
    document = load_result(folder)
    # Every acked order, the backlog's too, audited by its sequence; the counts are the broker's.
    assert_counts_match_broker(document, kafka_bootstrap)
    counts = document["counts"]
    assert document["audit"] == "sequences" and (counts["lost"], counts["duplicated"]) == (0, 0)
    assert counts["acked"] == broker_message_count(kafka_bootstrap, unique_topic) == 200_000 + 500 * 24
    backlog = document["backlog"]
    started = backlog["consumers_started_s"]
    assert backlog["messages"] == 200_000 and 0 < backlog["built_s"] < started
    # Paused means paused: nothing consumed in the seconds wholly before the consumers' start,
    # while the lag grew (a second's lag sample may fall while the backlog is still being
    # written, so its size is checked on the catch-up's latencies below, not on this sample).
    series = document["series"]
    assert sum(series["consumed"][:math.floor(started)]) == 0
    assert max(lag for lag in series["lag_messages"][:math.ceil(started)] if lag is not None) > 0
    # The catch-up's figures are measured numbers, each read through the metric table.
    assert METRICS["backlog_drain_rate"].read(document) > 0 and METRICS["backlog_drain_mb"].read(document) > 0
    assert backlog["not_measured"] == {}, backlog["not_measured"]
    assert 0 < METRICS["backlog_time_to_steady"].read(document) < scenario.duration_s
    assert backlog["steady_lag_messages"] <= backlog["steady_band_messages"] < 200_000
    # End-to-end latency while catching up: the backlog's orders waited since the build.
    catch_up_latency = backlog["end_to_end_us"]
    assert catch_up_latency["count"] >= 200_000 and catch_up_latency["max"] >= (started - backlog["built_s"]) * 1e6
    assert METRICS["backlog_end_to_end_p99"].read(document) == catch_up_latency["p99"]
    # The measured window's warm-up counts from the consumers' start.
    assert document["warmup_s"] == math.ceil(started) + scenario.warmup_s
    assert any(event["kind"] == "catch-up" for event in document["events"])
    text = summary_text(document, folder)
    assert "backlog: 200,000 messages" in text and METRICS["backlog_drain_rate"].label in text
