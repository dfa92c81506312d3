"""Pure statistics over independent samples: A/B rounds (`bench ab`) and batch means of
per-second series (`bench regress`). No I/O and no printing.

Why not the seconds themselves: a run's per-second latencies are autocorrelated (a busy
neighbour, a GC pause or a slow fetch cycle lasts several seconds), so treating them as
independent makes any shift of the machine's state "significant" (p = 1e-9 for a 10 % change).
Two ways to independent samples:

- rounds: each round a whole run, the two sides alternating (A B B A ...) on the same set-up,
  so drift on a shared machine hits both sides alike; a round's figure is one sample.
- batch means: a run's seconds cut into blocks at least as long as the series' correlation
  lasts (its integrated autocorrelation time), the mean of each block one sample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.analysis.stats import Spread, ratio_spread, spread
from bench.analysis.thresholds import Check
from bench.results.formatting import format_value
from bench.results.metrics import METRICS

# ---------------------------------------------------------------------------------------------
# Batch means


def autocorrelation(values: Sequence[float], lag: int) -> float:
    """Sample autocorrelation at `lag` (0 for a constant series: nothing carries over)."""
    n = len(values)
    if lag <= 0:
        return 1.0
    if lag >= n:
        return 0.0
    mean = statistics.fmean(values)
    variance = sum((v - mean) ** 2 for v in values)
    if variance == 0:
        return 0.0
    return sum((values[i] - mean) * (values[i + lag] - mean) for i in range(n - lag)) / variance


def block_length(values: Sequence[float]) -> int:
    """Seconds per block so block means are about independent: the integrated autocorrelation
    time 1 + 2 * sum(rho_k), summed while rho_k stays positive (Geyer's initial positive
    sequence), rounded up. Not capped: a series correlated over most of the run gives fewer
    blocks than a test needs, and the caller says the run is too short to judge, rather than
    judging correlated blocks as independent. Short series underestimate the correlation, so
    the blocks are, if anything, too short."""
    n = len(values)
    if n < 4:
        return 1
    tau = 1.0
    for lag in range(1, n // 2):
        rho = autocorrelation(values, lag)
        if rho <= 0:
            break
        tau += 2 * rho
    return max(1, math.ceil(tau))


def batch_means(values: Sequence[float], block: int) -> list[float]:
    """Means of consecutive blocks of `block` values; a partial block at the end is dropped
    (it would weigh as much as a whole one)."""
    if block < 1:
        raise ValueError(f"block must be at least 1, not {block}")
    return [statistics.fmean(values[i:i + block]) for i in range(0, len(values) - block + 1, block)]


# ---------------------------------------------------------------------------------------------
# A/B rounds


NO_DIFFERENCE = "no difference within noise"
ONE_ROUND = "one round: no noise to judge by (--rounds 3 or more)"


def separation_chance(rounds_a: int, rounds_b: int) -> float:
    """The chance that every round of one side lands beyond every round of the other in a
    given direction when the two sides are the same (the exact one-sided Mann-Whitney p of
    U = 0): 1 / C(a + b, a). 3 rounds each: 1/20; 5 each: 1/252."""
    return 1 / math.comb(rounds_a + rounds_b, rounds_a)


@dataclass(frozen=True)
class SideBySide:
    """One metric of an A/B comparison: every round's figure, each side's spread, B/A."""

    a: tuple[float, ...]
    b: tuple[float, ...]
    a_spread: Spread
    b_spread: Spread
    ratio: Spread | None  # B/A, round by round (the two measured in the same round)
    higher: str | None  # "a" or "b" when every round of one side is above every round of the other
    worse_when: str
    floor: float = 0.0  # a smaller difference of the means is noise even when the rounds separate
    unit: str = ""

    @property
    def verdict(self) -> str:
        if len(self.a) < 2:
            return ONE_ROUND
        if self.higher is None:
            return NO_DIFFERENCE
        direction = "higher" if self.higher == "b" else "lower"
        if abs(self.b_spread.mean - self.a_spread.mean) < self.floor:
            return (f"{NO_DIFFERENCE} (B {direction} in every round, by less than the "
                    f"{format_value(self.floor, self.unit)} floor)")
        worse = (self.higher == "b") == (self.worse_when == "higher")
        return f"B {direction} in every round ({'worse' if worse else 'better'})"

    @property
    def b_worse(self) -> bool:
        return len(self.a) >= 2 and self.higher is not None and (self.higher == "b") == (self.worse_when == "higher")


def side_by_side(a: Sequence[float], b: Sequence[float], worse_when: str, floor: float = 0.0,
                 unit: str = "") -> SideBySide:
    """The figures of the rounds that both sides measured (a[i] and b[i] from round i). The sides "overlap" (no difference
    within noise) unless every B round lies beyond every A round in one direction."""
    if not a or len(a) != len(b):
        raise ValueError(f"side_by_side needs the same rounds on both sides, not {len(a)} and {len(b)}")
    higher = "b" if min(b) > max(a) else "a" if max(b) < min(a) else None
    ratio = ratio_spread(b, a) if all(a) else None
    return SideBySide(tuple(a), tuple(b), spread(a), spread(b), ratio, higher, worse_when, floor, unit)


@dataclass(frozen=True)
class RoundCheck:
    check: Check
    figures: SideBySide | None
    failed: bool
    reason: str


# A `--check` needs at least this many rounds: with 3 per side, the rounds of two identical
# sides separate in the bad direction by chance 1 time in 20 (separation_chance).
MIN_CHECK_ROUNDS = 3


def judge_rounds(check: Check, figures: SideBySide | None) -> RoundCheck:
    """B is worse beyond the check when all three hold: every round's pair (A and B measured back
    to back, so load that comes and goes hits both) shows B worse by at least half the
    threshold, the mean of the rounds' ratios B/A is beyond the threshold (the means' change
    when an A figure is 0), and the means are at least the metric's floor apart (sub-millisecond
    noise never fails a build). A change of the code shows in every round; a burst of a
    neighbour's load lifts one or two runs, whose ratio alone must not carry the mean."""
    metric = check.metric
    if figures is None:
        return RoundCheck(check, None, False, f"{metric.name}: not measured on both sides")
    sign = 1 if metric.worse_when == "higher" else -1
    if figures.ratio is not None:
        change = figures.ratio.mean - 1
    else:
        change = figures.b_spread.mean / figures.a_spread.mean - 1 if figures.a_spread.mean else None
    absolute = figures.b_spread.mean - figures.a_spread.mean
    shown = (f"B/A {figures.ratio.mean:.3f} ({figures.ratio.low:.3f}-{figures.ratio.high:.3f})" if figures.ratio
             else "B/A not defined (an A figure is 0)")
    each = check.threshold / 2
    worse_in_each = len(figures.a) >= 2 and all(
        sign * (b - a) > 0 and (not a or sign * (b / a - 1) > each) for a, b in zip(figures.a, figures.b))
    if not worse_in_each:
        return RoundCheck(check, figures, False, f"ok: not worse by {each:.0%} in every round ({figures.verdict}); "
                                                 f"{shown}")
    if change is None or sign * change <= check.threshold:
        return RoundCheck(check, figures, False, f"ok: worse in every round but within {check.threshold:.0%}; {shown}")
    if abs(absolute) < check.floor:
        return RoundCheck(check, figures, False, f"ok: worse in every round but under the floor; {shown}")
    separated = "; the rounds do not overlap" if figures.b_worse else ""
    return RoundCheck(check, figures, True, f"WORSE: B worse than A by over {each:.0%} in every round, mean change "
                                            f"{change:+.1%} beyond {check.threshold:.0%}{separated}; {shown}")


def compared_rounds(rounds: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(A result, B result) of every round in which both sides completed; `rounds` holds dicts
    with "a" and "b" results (None for a side that did not run or did not complete)."""
    return [(r["a"], r["b"]) for r in rounds
            if r.get("a") is not None and r.get("b") is not None
            and r["a"].get("status") == "complete" and r["b"].get("status") == "complete"]


def metric_table(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
                 names: Sequence[str]) -> dict[str, SideBySide]:
    """Per metric of `names` (the metric table's), the rounds side by side; a metric left out
    when a round of either side did not measure it."""
    table = {}
    for name in names:
        metric = METRICS[name]
        a = [metric.read(result_a) for result_a, _ in pairs]
        b = [metric.read(result_b) for _, result_b in pairs]
        if pairs and None not in a and None not in b:
            table[name] = side_by_side(a, b, metric.worse_when, metric.floor, metric.unit)
    return table


def figures_document(figures: SideBySide) -> dict[str, Any]:
    """One metric's figures as the ab result file keeps them."""
    def side(values: tuple[float, ...], summary: Spread) -> dict[str, Any]:
        return {"rounds": list(values), "mean": summary.mean, "spread": summary.spread,
                "low": summary.low, "high": summary.high}

    ratio = None if figures.ratio is None else {
        "mean": figures.ratio.mean, "spread": figures.ratio.spread, "low": figures.ratio.low, "high": figures.ratio.high}
    return {"a": side(figures.a, figures.a_spread), "b": side(figures.b, figures.b_spread), "b_over_a": ratio,
            "verdict": figures.verdict}
