"""The one threshold syntax, shared by `locust --check` and `bench regress --check`: pure, no
Locust import, no I/O and no printing.

Two forms over the names of the metric table (bench/results/metrics.py):

  METRIC<LIMIT     an absolute limit on one result: `service_time_p99<50ms`, `lost<=0`,
                   `throughput>=1000` (operators < <= > >=; latencies need a unit us/ms/s)
  METRIC:+N%       a relative check of a candidate against a baseline (bench regress only):
                   `service_time_p99:+25%`, `throughput:-10%`, optionally `:FLOOR` (`:2ms`)

Latency metrics are `<kind>_<statistic>`: kind service_time, response_time, send_delay or
end_to_end (the `latency_us` keys of result.json), statistic p50 p90 p99 p99_9 p99_99 max mean.
The spellings of earlier versions (`p99_delivery_ms<50`, `delivered_per_s>=1000`) still parse;
the parsed object then carries the new spelling for the caller to print as a deprecation line.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.results.metrics import LATENCY_LABELS, LATENCY_STATISTICS, METRICS, Metric
from streamstore.errors import UsageError

# The metrics a relative check can take: those with a per-second series.
RELATIVE_METRICS = tuple(name for name, metric in METRICS.items() if metric.series_key)


@dataclass(frozen=True)
class Limit:
    """An absolute limit: the result's value must satisfy `value <compare> limit`."""

    text: str
    metric: Metric
    compare: str  # "<", "<=", ">", ">="
    limit: float  # in the metric's stored unit (µs for latencies)
    new_spelling: str | None = None  # set when `text` used an old spelling

    def describe(self) -> str:
        return self.new_spelling or self.text


@dataclass(frozen=True)
class Check:
    """A relative check: how much worse than the baseline a candidate may be."""

    metric: Metric
    threshold: float  # fraction, always positive
    floor: float

    def describe(self) -> str:
        sign = "+" if self.metric.worse_when == "higher" else "-"
        return f"{self.metric.name}:{sign}{self.threshold:.0%}"


_COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_UNITS_US = {"us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000}
_LIMIT = re.compile(r"^(?P<metric>[a-z0-9_]+?)\s*(?P<compare><=|>=|<|>)\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>us|µs|ms|s)?$")
_CHECK = re.compile(r"^(?P<metric>[a-z_0-9]+):(?P<sign>[+-]?)(?P<percent>\d+(?:\.\d+)?)%(?::(?P<floor>[^:]+))?$")
_FLOOR = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>us|µs|ms|s)?$")
# Old `locust --check` spellings: STAT_KIND_UNIT with the short kind names, and delivered_per_s.
_OLD_KINDS = {"delivery": "service_time", "e2e": "end_to_end", "response": "response_time"}
_OLD_LATENCY = re.compile(rf"^(?P<stat>{'|'.join(LATENCY_STATISTICS)})_(?P<kind>{'|'.join(_OLD_KINDS)})_(?P<unit>us|ms|s)$")
_OLD_NAMES = {"delivered_per_s": "throughput"}
EXAMPLES = "e.g. service_time_p99<50ms, lost<=0, throughput>=1000, or against a baseline service_time_p99:+25%"


def _unknown(text: str, name: str, flag: str) -> UsageError:
    return UsageError(f"{flag} {text!r}: unknown metric {name!r} (latencies are KIND_STAT with KIND in "
                      f"{'/'.join(LATENCY_LABELS)} and STAT in {'/'.join(LATENCY_STATISTICS)}; others: "
                      f"{', '.join(name for name, m in METRICS.items() if m.unit != 'µs')})")


def _parse_limit(text: str, match: re.Match, flag: str) -> Limit:
    name, number, unit, new_spelling = match["metric"], float(match["number"]), match["unit"], None
    old = _OLD_LATENCY.match(name)
    if old and unit is None:
        name, unit = f"{_OLD_KINDS[old['kind']]}_{old['stat']}", old["unit"]
        new_spelling = f"{name}{match['compare']}{match['number']}{unit}"
    elif name in _OLD_NAMES:
        name = _OLD_NAMES[name]
        new_spelling = f"{name}{match['compare']}{match['number']}{unit or ''}"
    if name not in METRICS:
        raise _unknown(text, name, flag)
    metric = METRICS[name]
    if metric.unit == "µs":
        if unit is None:
            raise UsageError(f"{flag} {text!r}: a latency limit needs a unit: us, ms or s (e.g. {name}<50ms)")
        number *= _UNITS_US[unit]
    elif unit is not None:
        raise UsageError(f"{flag} {text!r}: {name} is in {metric.unit}; write the number without a unit")
    return Limit(text, metric, match["compare"], number, new_spelling)


def _parse_relative(text: str, match: re.Match, flag: str) -> Check:
    name = match["metric"]
    if name not in METRICS:
        raise _unknown(text, name, flag)
    metric = METRICS[name]
    if metric.series_key is None:
        raise UsageError(f"{flag} {text!r}: {name} has no per-second series to compare "
                         f"(relative checks take {', '.join(RELATIVE_METRICS)}); give it an absolute limit instead")
    bad_sign = "+" if metric.worse_when == "higher" else "-"
    if match["sign"] and match["sign"] != bad_sign:
        word = "up" if metric.worse_when == "higher" else "down"
        raise UsageError(f"{flag} {text!r}: {name} gets worse when it goes {word}; write {name}:{bad_sign}{match['percent']}%")
    floor = metric.floor
    if match["floor"]:
        floor_match = _FLOOR.match(match["floor"].strip())
        if not floor_match or (floor_match["unit"] and metric.unit != "µs"):
            raise UsageError(f"{flag} {text!r}: floor must be a number in {metric.unit}"
                             + (" or with us/ms/s" if metric.unit == "µs" else ""))
        floor = float(floor_match["number"]) * (_UNITS_US[floor_match["unit"] or "us"] if metric.unit == "µs" else 1)
    return Check(metric, float(match["percent"]) / 100, floor)


def parse_check(text: str, flag: str = "--check") -> Limit | Check:
    """One `--check` item in either form (see the module docstring); `flag` names the option in
    an error (`bench capacity --slo` takes the same syntax)."""
    item = text.strip()
    relative = _CHECK.match(item)
    if relative:
        return _parse_relative(item, relative, flag)
    limit = _LIMIT.match(item)
    if limit:
        return _parse_limit(item, limit, flag)
    raise UsageError(f"{flag} {item!r}: expected METRIC<LIMIT or METRIC:+PERCENT% ({EXAMPLES})")


def parse_checks(texts: Sequence[str] | str | None, flag: str = "--check") -> list[Limit | Check]:
    """Every item of one or more `--check` values; each value may hold a comma-separated list."""
    if isinstance(texts, str):
        texts = [texts]
    return [parse_check(item, flag) for text in texts or () for item in text.split(",") if item.strip()]


def deprecation_lines(checks: Sequence[Limit | Check]) -> list[str]:
    return [f"--check {c.text!r} is an old spelling; write {c.new_spelling!r}"
            for c in checks if isinstance(c, Limit) and c.new_spelling]


@dataclass(frozen=True)
class LimitOutcome:
    limit: Limit
    value: float | None
    met: bool

    def describe(self) -> str:
        if self.value is None:
            return f"{self.limit.describe()}: no value measured"
        unit = self.limit.metric.unit
        shown = f"{self.value / 1000:g} ms" if unit == "µs" else f"{self.value:g} {unit}"
        return f"{self.limit.describe()}: measured {shown}"


def evaluate_limits(limits: Sequence[Limit], result: Mapping[str, Any]) -> list[LimitOutcome]:
    """One outcome per limit (a value that was not measured does not meet its limit)."""
    outcomes = []
    for limit in limits:
        value = limit.metric.read(result)
        met = value is not None and _COMPARISONS[limit.compare](value, limit.limit)
        outcomes.append(LimitOutcome(limit, value, met))
    return outcomes
