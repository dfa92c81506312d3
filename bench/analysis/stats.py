"""Pure statistics over result dicts: measured window, per-second samples, spread over rounds,
Mann-Whitney U, warnings.

No I/O and no printing here: compare, regress, report and the runner all call these.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.results.metrics import METRICS
from bench.results.window import series_samples

# A generator on schedule sends within a few ms of the intended time (sleep granularity,
# GC pauses); beyond this its response time is dominated by its own lateness.
GENERATOR_BEHIND_SEND_DELAY_P99_US = 5_000
# Per-second throughput whose standard deviation exceeds this share of its mean is not a
# steady state: percentiles from such a run describe a moving target.
UNSTABLE_THROUGHPUT_CV = 0.10


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    if mean == 0:
        return None
    return statistics.stdev(values) / mean


def relative_change(baseline: float, candidate: float) -> float | None:
    """(candidate - baseline) / baseline; None when the baseline is zero."""
    if baseline == 0:
        return None
    return (candidate - baseline) / baseline


# ---------------------------------------------------------------------------------------------
# Spread over rounds (benchmarks that repeat a measurement, e.g. `bench calibrate`)


@dataclasses.dataclass(frozen=True)
class Spread:
    """Mean of repeated measurements and how far they strayed from it, as pyperf shows a
    benchmark: "mean ± spread (low-high, n rounds)". `spread` is the largest distance of one
    round from the mean, so mean ± spread holds every round."""

    mean: float
    spread: float
    low: float
    high: float
    rounds: int


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread needs at least one value")
    mean = statistics.fmean(values)
    low, high = min(values), max(values)
    return Spread(mean, max(high - mean, mean - low), low, high, len(values))


def ratio_spread(numerators: Sequence[float], denominators: Sequence[float]) -> Spread:
    """The spread of round-by-round ratios numerators[i] / denominators[i] (the two measured in
    the same round, so drift on a shared machine hits both)."""
    if len(numerators) != len(denominators):
        raise ValueError(f"ratio_spread: {len(numerators)} numerators for {len(denominators)} denominators")
    if any(denominator == 0 for denominator in denominators):
        raise ValueError("ratio_spread: a denominator is zero")
    return spread([n / d for n, d in zip(numerators, denominators)])


# ---------------------------------------------------------------------------------------------
# Mann-Whitney U (normal approximation with tie and continuity correction)


def _average_ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """1-based ranks (ties share their average rank) and the size of each tie group."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_sizes = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        average = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = average
        tie_sizes.append(end - start + 1)
        start = end + 1
    return ranks, tie_sizes


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_u(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided") -> tuple[float, float]:
    """U statistic of `x` and its p-value against `y`.

    alternative: "greater" (x tends to be larger than y), "less", or "two-sided".
    Normal approximation with tie correction and continuity correction (as
    scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=True)); adequate from about
    8 samples per side, which a run of tens of seconds provides.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs samples on both sides")
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"unknown alternative {alternative!r}")
    ranks, tie_sizes = _average_ranks([*x, *y])
    u_x = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean_u = n1 * n2 / 2
    tie_term = sum(t**3 - t for t in tie_sizes) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12 * ((n + 1) - tie_term)
    if variance <= 0:  # every value tied: no evidence of any difference
        return u_x, 1.0
    sd = math.sqrt(variance)
    p_greater = _normal_sf((u_x - mean_u - 0.5) / sd)
    p_less = _normal_sf((mean_u - u_x - 0.5) / sd)
    if alternative == "greater":
        return u_x, min(1.0, p_greater)
    if alternative == "less":
        return u_x, min(1.0, p_less)
    return u_x, min(1.0, 2 * min(p_greater, p_less))


# ---------------------------------------------------------------------------------------------
# Warnings a reader must see next to the figures


COUNT_MEANINGS = {"failed": "deliveries failed", "lost": "orders acked but never consumed",
                  "duplicated": "orders consumed more than once"}


def count_warnings(counts: Mapping[str, Any], keys: Sequence[str] = tuple(COUNT_MEANINGS)) -> list[str]:
    """The warning each non-zero failure count gives, e.g. "10,002 deliveries failed"."""
    return [f"{counts[key]:,} {COUNT_MEANINGS[key]}" for key in keys if counts.get(key)]


# Event kinds a fault leaves in a result (bench/broker/faults.py, bench/core/fault_watch.py).
FAULT_EVENT_PREFIXES = ("broker-", "consumer-", "fault-")


def run_faults(result: Mapping[str, Any]) -> tuple[str, ...]:
    """The faults a run ran under: the scenario's; for a result written before faults were a
    scenario field, its failover records' or, failing those, its fault events' kinds."""
    faults = tuple((result.get("scenario") or {}).get("faults") or ())
    if faults:
        return faults
    records = (result.get("failover") or {}).get("faults") or []
    if records:
        return tuple(dict.fromkeys(record["fault"] for record in records))
    return tuple(dict.fromkeys(event["kind"] for event in result.get("events") or []
                               if str(event.get("kind", "")).startswith(FAULT_EVENT_PREFIXES)))


def derive_warnings(result: Mapping[str, Any]) -> list[str]:
    """Warnings from the result's own figures, after those the producer of the result stored."""
    warnings = list(result.get("warnings") or [])

    def add(text: str) -> None:
        if text not in warnings:
            warnings.append(text)

    status = result.get("status")
    if status and status != "complete":
        add(f"run {status}: {result.get('failure') or 'no reason recorded'}")

    send_delay = (result.get("latency_us") or {}).get("send_delay") or {}
    if (send_delay.get("p99") or 0) > GENERATOR_BEHIND_SEND_DELAY_P99_US:
        add(
            f"generator fell behind: {METRICS['send_delay_p99'].label} = {send_delay['p99'] / 1000:.1f} ms "
            "(response time includes that lateness; service time does not)"
        )

    # A fault run's throughput dips by design; its failover section says by how much and when.
    throughput_cv = None if run_faults(result) else coefficient_of_variation(series_samples(result, "acked"))
    if throughput_cv is not None and throughput_cv > UNSTABLE_THROUGHPUT_CV:
        add(
            f"unstable: per-second throughput varies by more than {UNSTABLE_THROUGHPUT_CV:.0%} "
            f"(coefficient of variation {throughput_cv:.0%})"
        )

    for text in count_warnings(result.get("counts") or {}):
        add(text)

    if (result.get("environment") or {}).get("producer_and_tracker_same_host") is False:
        add("producer and tracker ran on different hosts: end-to-end latency includes clock offset")
    return warnings
