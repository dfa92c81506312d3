"""Which seconds of a run count: the measured window (bench/results/metrics.py MEASURED), and
the figures a result's summary takes over it. Pure: the result builder, the analysis and the
upgrade of older result files all call these, so the summary, the report, compare and the gate
read one figure."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def measured_seconds(seconds: Sequence[float], warmup_s: float, sent: Sequence[int] | None) -> list[int]:
    """Indices of the per-second series that form the steady state.

    Second i covers [t_s - 1, t_s) with t_s = seconds[i]. Excluded: warm-up seconds
    (t_s <= warmup_s), the last second with sends (a partial second) and the drain seconds after
    it (nothing is sent while the tracker catches up). Without a "sent" series (a consumer
    alone) every post-warm-up second counts.
    """
    end = len(seconds)
    if sent:
        sending = [i for i, count in enumerate(sent) if count]
        end = sending[-1] if sending else 0
    return [i for i in range(end) if seconds[i] > warmup_s]


def measured_indices(result: Mapping[str, Any]) -> list[int]:
    """`measured_seconds` of a result dict."""
    series = result.get("series") or {}
    return measured_seconds(series.get("t_s") or [], result.get("warmup_s") or 0, series.get("sent"))


def series_samples(result: Mapping[str, Any], key: str) -> list[float]:
    """The non-null values of one per-second series inside the measured window."""
    values = (result.get("series") or {}).get(key)
    if not values:
        return []
    return [values[i] for i in measured_indices(result) if i < len(values) and values[i] is not None]


def rounded_mean(values: Sequence[float]) -> float | None:
    """The mean to one decimal, None for no values (a figure not measured, never 0)."""
    return round(sum(values) / len(values), 1) if values else None


def throughput_summary(series: Mapping[str, Any], warmup_s: float, message_bytes: int | None) -> dict[str, Any]:
    """The run's throughput over the measured window: acked (and consumed) messages per second,
    the acked payload in MB/s when every message has one size, and how many seconds it covers.
    None for a figure the run did not measure (no measured second, no tracker)."""
    window = measured_seconds(series.get("t_s") or [], warmup_s, series.get("sent"))
    acked = [series["acked"][i] for i in window] if series.get("acked") else []
    consumed = [series["consumed"][i] for i in window] if series.get("consumed") else []
    acked_per_s = rounded_mean(acked)
    return {
        "measured_s": len(window),
        "acked_per_s": acked_per_s,
        "acked_mb_s": round(acked_per_s * message_bytes / 1e6, 3) if acked_per_s is not None and message_bytes else None,
        "consumed_per_s": rounded_mean(consumed),
    }


def lag_summary(series: Mapping[str, Any], warmup_s: float) -> dict[str, Any]:
    """Maximum consumer lag (messages, and time in ms) over the measured window; None when the
    run measured no lag there."""
    window = measured_seconds(series.get("t_s") or [], warmup_s, series.get("sent"))

    def peak(key: str) -> float | None:
        values = series.get(key) or []
        inside = [values[i] for i in window if i < len(values) and values[i] is not None]
        return max(inside) if inside else None

    return {"max_messages": peak("lag_messages"), "max_time_ms": peak("lag_time_ms")}


@dataclass(frozen=True)
class Slope:
    per_s: float             # least-squares slope (units per second)
    standard_error: float | None  # None with fewer than 3 points


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> Slope | None:
    """The least-squares slope of ys over xs and its standard error; None below 2 points or
    when every x is the same."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    if n < 3:
        return Slope(slope, None)
    residual = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in zip(xs, ys))
    return Slope(slope, math.sqrt(residual / (n - 2) / sxx))


def lag_slope(result: Mapping[str, Any]) -> Slope | None:
    """The slope of the consumer lag (messages per second) over the run's measured window."""
    series = result.get("series") or {}
    lags, seconds = series.get("lag_messages") or [], series.get("t_s") or []
    points = [(seconds[i], lags[i]) for i in measured_indices(result) if i < len(lags) and lags[i] is not None]
    return linear_slope([t for t, _ in points], [lag for _, lag in points])
