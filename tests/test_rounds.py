"""Pure statistics of independent samples: batch means of autocorrelated seconds, A/B rounds,
and how much a stored baseline can say (bench/analysis/rounds.py, compare.weak_comparison)."""

from __future__ import annotations

import math
import random

import pytest

from bench.analysis import compare
from bench.analysis.rounds import (
    NO_DIFFERENCE,
    ONE_ROUND,
    autocorrelation,
    batch_means,
    block_length,
    compared_rounds,
    judge_rounds,
    metric_table,
    separation_chance,
    side_by_side,
)
from bench.analysis.stats import mann_whitney_u
from bench.analysis.thresholds import parse_check


def _ar1(n: int, phi: float, seed: int, level: float = 10.0) -> list[float]:
    """A series whose seconds carry over (as a busy neighbour's load does): x_t = phi x_(t-1) + e."""
    rng = random.Random(seed)
    value, series = 0.0, []
    for _ in range(n):
        value = phi * value + rng.gauss(0, 1)
        series.append(level + value)
    return series


def test_uncorrelated_seconds_are_their_own_blocks():
    rng = random.Random(3)
    noise = [rng.gauss(5, 1) for _ in range(60)]
    assert abs(autocorrelation(noise, 1)) < 2 / math.sqrt(60)
    assert block_length(noise) == 1
    assert autocorrelation([4.0] * 10, 1) == 0.0 and block_length([4.0] * 10) == 1


def test_correlated_seconds_get_blocks_as_long_as_their_correlation():
    series = _ar1(60, 0.8, seed=1)
    assert autocorrelation(series, 1) > 0.5
    # phi = 0.8: integrated autocorrelation time (1 + phi) / (1 - phi) = 9 (a 60 s series
    # underestimates it).
    assert 3 <= block_length(series) <= 15
    assert batch_means([1, 2, 3, 4, 5, 6, 7], 3) == [2, 5]  # the partial block is dropped
    with pytest.raises(ValueError):
        batch_means([1.0], 0)


@pytest.mark.parametrize("phi", [0.5, 0.85])
def test_batch_means_cut_the_false_alarms_that_per_second_samples_raise(phi):
    """Pairs of 24 s runs of the same correlated process: Mann-Whitney on the seconds calls
    many pairs different (phi 0.5: 15 %, 0.85: 29 %, nominal 5 %); on block means, a pair with
    fewer than 4 blocks being too short to judge, about half as many or fewer (8 %, 12 %)."""
    per_second = blocks = 0
    pairs = 200
    for seed in range(pairs):
        a, b = _ar1(24, phi, seed), _ar1(24, phi, seed + 10_000)
        per_second += mann_whitney_u(b, a, "greater")[1] < 0.05
        block = max(block_length(a), block_length(b))
        if len(a) >= 4 * block:
            blocks += mann_whitney_u(batch_means(b, block), batch_means(a, block), "greater")[1] < 0.05
    assert per_second > 0.12 * pairs  # the old test: far above its nominal 5 %
    assert blocks <= 0.6 * per_second, (per_second, blocks)


def test_rounds_that_overlap_are_no_difference_within_noise():
    figures = side_by_side([5.0, 6.0, 5.5], [5.8, 5.2, 6.1], "higher")
    assert figures.verdict == NO_DIFFERENCE and not figures.b_worse
    assert figures.ratio.low == pytest.approx(5.8 / 5.0 - (5.8 / 5.0 - 5.2 / 6.0)) and figures.ratio.rounds == 3
    assert figures.a_spread.mean == pytest.approx(5.5)


def test_rounds_that_separate_give_a_direction_and_judge_worse_or_better():
    slower = side_by_side([5.0, 6.0, 5.5], [11.0, 12.5, 10.9], "higher")
    assert slower.verdict == "B higher in every round (worse)" and slower.b_worse
    assert slower.ratio.low > 1.8
    faster_throughput = side_by_side([1000, 990, 1010], [1200, 1190, 1250], "lower")
    assert faster_throughput.verdict == "B higher in every round (better)" and not faster_throughput.b_worse
    with pytest.raises(ValueError):
        side_by_side([1.0], [1.0, 2.0], "higher")
    assert side_by_side([5.0], [11.0], "higher").verdict == ONE_ROUND
    within_floor = side_by_side([5000, 5100, 5050], [5300, 5400, 5350], "higher", floor=1000, unit="µs")
    assert within_floor.verdict == f"{NO_DIFFERENCE} (B higher in every round, by less than the 1 ms floor)"


def test_separation_chance_is_the_exact_mann_whitney_p_of_no_overlap():
    assert separation_chance(3, 3) == pytest.approx(1 / 20)
    assert separation_chance(5, 5) == pytest.approx(1 / 252)


def test_a_check_fails_only_when_worse_in_every_round_beyond_threshold_and_floor():
    check = parse_check("end_to_end_p50:+50%")
    doubled = judge_rounds(check, side_by_side([5000, 6000, 5500], [11000, 12500, 10900], "higher"))
    assert doubled.failed and doubled.reason.startswith("WORSE: B worse than A by over 25% in every round, mean change +")
    assert "the rounds do not overlap" in doubled.reason
    # A busy second round lifts both of its runs: the rounds overlap, each pair still says 2x.
    drifting = judge_rounds(check, side_by_side([5000, 16000, 5500], [11000, 30000, 10900], "higher"))
    assert drifting.failed and "overlap" not in drifting.reason
    slightly = judge_rounds(check, side_by_side([5000, 6000, 5500], [6100, 6200, 6300], "higher"))
    assert not slightly.failed and slightly.reason.startswith("ok: not worse by 25% in every round")
    within = judge_rounds(check, side_by_side([5000, 6000, 5500], [6600, 7800, 7300], "higher"))
    assert not within.failed and "within 50%" in within.reason  # every round +30 %, the mean too
    one_round_better = judge_rounds(check, side_by_side([5000, 16000, 5500], [11000, 12500, 10900], "higher"))
    assert not one_round_better.failed and one_round_better.reason.startswith("ok: not worse by 25% in every round")
    # A burst of load on the B runs of two rounds (a gate trial on a busy machine, ms): every
    # pair leans B's way and the mean ratio is 2.3, but the first round shows 7 %: no change of B.
    burst = judge_rounds(check, side_by_side([5700, 5800, 7200], [6100, 10200, 28400], "higher"))
    assert not burst.failed and burst.reason.startswith("ok: not worse by 25% in every round")
    tiny = judge_rounds(check, side_by_side([100, 110, 120], [400, 410, 420], "higher"))
    assert not tiny.failed and "under the floor" in tiny.reason  # 0.3 ms: under the 1 ms floor
    throughput = judge_rounds(parse_check("throughput:-20%"), side_by_side([1000, 990, 1010], [700, 650, 720], "lower"))
    assert throughput.failed
    assert not judge_rounds(check, None).failed
    assert not judge_rounds(check, side_by_side([5000], [11000], "higher")).failed  # one round judges nothing


def test_metric_table_uses_rounds_where_both_sides_completed():
    def result(p50, status="complete"):
        return {"status": status, "latency_us": {"end_to_end": {"p50": p50}}}

    rounds = [{"a": result(5000), "b": result(10000)}, {"a": result(5200), "b": result(1, "interrupted")},
              {"a": result(5100), "b": None}, {"a": result(4900), "b": result(9900)}]
    pairs = compared_rounds(rounds)
    assert len(pairs) == 2
    table = metric_table(pairs, ["end_to_end_p50", "service_time_p50"])
    assert list(table) == ["end_to_end_p50"] and table["end_to_end_p50"].a == (5000, 4900)


def _with(environment: dict, started_at: str = "2026-12-02T10:00:00.000Z") -> dict:
    return {"environment": {"host": "h1", "cpu_count": 2, "load_average_1m": 0.3, **environment},
            "started_at": started_at}


def test_a_stored_baseline_says_when_host_day_or_load_make_it_weak():
    assert compare.weak_comparison(_with({}), _with({})) == []
    reasons = compare.weak_comparison(_with({}, "2026-11-28T10:00:00.000Z"),
                                      _with({"host": "h2", "load_average_1m": 3.5}))
    assert reasons[0].startswith("another host: the baseline was measured on 'h1', the candidate on 'h2'")
    assert reasons[1].startswith("another day: the baseline was measured 4.0 days")
    assert reasons[2] == "busy machine: the candidate ran at load 3.50 on 2 CPUs"
    unrecorded = compare.weak_comparison(_with({"load_average_1m": None}), _with({}))
    assert unrecorded == ["the baseline's machine load was not recorded"]
