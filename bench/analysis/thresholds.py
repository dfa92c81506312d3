"""Absolute thresholds on a result (`locust --check`): pure, no Locust import, so any
command can check a result file against them."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.analysis.stats import series_samples
from streamstore.errors import UsageError


@dataclass(frozen=True)
class Threshold:
    text: str
    metric: str  # latency "service_time.p99" etc., or a count/throughput name
    compare: str  # "<", "<=", ">", ">="
    limit: float  # in the metric's stored unit (µs for latencies)


_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


_LATENCY_STATS = ("p50", "p90", "p99", "p99_9", "p99_99", "max", "mean")


_LATENCY_METRICS = {"delivery": "service_time", "e2e": "end_to_end", "response": "response_time"}


_LATENCY_UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000}


_OTHER_METRICS = ("delivered_per_s", "failed", "lost", "duplicated")


_THRESHOLD = re.compile(r"^(?P<metric>[a-z0-9_]+?)\s*(?P<compare><=|>=|<|>)\s*(?P<limit>\d+(?:\.\d+)?)$")


_LATENCY_NAME = re.compile(rf"^(?P<stat>{'|'.join(_LATENCY_STATS)})_(?P<kind>{'|'.join(_LATENCY_METRICS)})_(?P<unit>us|ms|s)$")


def parse_thresholds(text: str) -> list[Threshold]:
    """`p99_delivery_ms<50,p99_9_e2e_ms<200,failed<=0,delivered_per_s>=1000`."""
    thresholds = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        match = _THRESHOLD.match(item)
        if not match:
            raise UsageError(f"--check {item!r}: expected METRIC<LIMIT (e.g. p99_delivery_ms<50)")
        latency = _LATENCY_NAME.match(match["metric"])
        limit = float(match["limit"])
        if latency:
            metric = f"{_LATENCY_METRICS[latency['kind']]}.{latency['stat']}"
            limit *= _LATENCY_UNITS_US[latency["unit"]]
        elif match["metric"] in _OTHER_METRICS:
            metric = match["metric"]
        else:
            raise UsageError(
                f"--check {item!r}: unknown metric {match['metric']!r} (STAT_KIND_UNIT with STAT in "
                f"{'/'.join(_LATENCY_STATS)}, KIND in {'/'.join(_LATENCY_METRICS)}, UNIT us/ms/s; "
                f"or {', '.join(_OTHER_METRICS)})"
            )
        thresholds.append(Threshold(item, metric, match["compare"], limit))
    return thresholds


def threshold_value(threshold: Threshold, result: Mapping[str, Any]) -> float | None:
    if "." in threshold.metric:
        kind, stat = threshold.metric.split(".")
        return ((result.get("latency_us") or {}).get(kind) or {}).get(stat)
    if threshold.metric == "delivered_per_s":
        samples = series_samples(result, "acked")
        return sum(samples) / len(samples) if samples else None
    return (result.get("counts") or {}).get(threshold.metric)


def failed_thresholds(thresholds: Sequence[Threshold], result: Mapping[str, Any]) -> list[str]:
    """One line per threshold the result does not meet (a missing value does not meet it)."""
    failures = []
    for threshold in thresholds:
        value = threshold_value(threshold, result)
        if value is None:
            failures.append(f"{threshold.text}: no value measured")
        elif not _COMPARISONS[threshold.compare](value, threshold.limit):
            shown = f"{value / 1000:g} ms" if "." in threshold.metric else f"{value:g}"
            failures.append(f"{threshold.text}: measured {shown}")
    return failures
