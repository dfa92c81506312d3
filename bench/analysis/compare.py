"""Pure comparison of result dicts: comparability, delta tables and regression verdicts.

No I/O and no printing: `bench compare` and `bench regress` render what these return.

A regression needs all three of:
  1. a change in the metric's bad direction beyond the check's threshold (e.g. p99 +25 %),
  2. an absolute change of at least the metric's floor (sub-millisecond noise never fails a build),
  3. a significant difference between the per-second samples of the two runs: one-sided
     Mann-Whitney U in the bad direction, p < alpha.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.analysis.stats import mann_whitney_u, relative_change, series_samples
from bench.core.scenario import Scenario
from bench.output.results import LATENCY_LABELS, format_value
from streamstore.errors import UsageError

COMPARABLE_KINDS = frozenset({"run", "locust"})
DEFAULT_ALPHA = 0.05
# Below this many per-second samples per side the normal approximation of U says nothing.
MIN_SAMPLES = 8

# Latencies compared (send delay is the generator's lateness, a warning, not a service level).
LATENCY_KINDS = {kind: LATENCY_LABELS[kind][0] for kind in ("service_time", "response_time", "end_to_end")}
LATENCY_FLOOR_US = 1_000


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    worse_when: str  # "higher" or "lower"
    series_key: str  # the per-second series the significance test uses
    floor: float  # smallest absolute change (in `unit`) that can be a regression
    summary: Callable[[Mapping[str, Any]], float | None]


def _latency_summary(kind: str, statistic: str) -> Callable[[Mapping[str, Any]], float | None]:
    def read(result: Mapping[str, Any]) -> float | None:
        return ((result.get("latency_us") or {}).get(kind) or {}).get(statistic)

    return read


def _mean_of_series(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    def read(result: Mapping[str, Any]) -> float | None:
        samples = series_samples(result, key)
        return sum(samples) / len(samples) if samples else None

    return read


def _max_of_series(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    def read(result: Mapping[str, Any]) -> float | None:
        samples = series_samples(result, key)
        return max(samples) if samples else None

    return read


def _build_metrics() -> dict[str, Metric]:
    metrics = [
        Metric("throughput", "throughput (acked)", "msg/s", "lower", "acked", 0.0, _mean_of_series("acked")),
        Metric("consumed_throughput", "throughput (consumed)", "msg/s", "lower", "consumed", 0.0,
               _mean_of_series("consumed")),
        Metric("lag_max", "consumer lag max", "messages", "higher", "lag_messages", 100.0,
               _max_of_series("lag_messages")),
        Metric("lag_time_max", "consumer time lag max", "ms", "higher", "lag_time_ms", 100.0,
               _max_of_series("lag_time_ms")),
    ]
    # Latency metrics that have a per-second series (docs/result-format.md "series").
    for kind, statistic, series_statistic in (
        ("service_time", "p50", "p50"), ("service_time", "p99", "p99"), ("service_time", "max", "max"),
        ("response_time", "p99", "p99"),
        ("end_to_end", "p50", "p50"), ("end_to_end", "p99", "p99"), ("end_to_end", "max", "max"),
    ):
        metrics.append(Metric(
            f"{kind}_{statistic}", f"{LATENCY_KINDS[kind]} {statistic}", "µs", "higher",
            f"{kind}_{series_statistic}_us", LATENCY_FLOOR_US, _latency_summary(kind, statistic),
        ))
    return {metric.name: metric for metric in metrics}


METRICS = _build_metrics()


# ---------------------------------------------------------------------------------------------
# Checks: METRIC:+10%[:FLOOR]


@dataclass(frozen=True)
class Check:
    metric: Metric
    threshold: float  # fraction, always positive: how much worse is tolerated
    floor: float

    def describe(self) -> str:
        sign = "+" if self.metric.worse_when == "higher" else "-"
        return f"{self.metric.name}:{sign}{self.threshold:.0%}"


_CHECK = re.compile(r"^(?P<metric>[a-z_0-9]+):(?P<sign>[+-]?)(?P<percent>\d+(?:\.\d+)?)%(?::(?P<floor>[^:]+))?$")
_FLOOR = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>us|µs|ms|s)?$")
_LATENCY_UNIT_US = {None: 1, "us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000}


def parse_check(text: str) -> Check:
    """`service_time_p99:+25%`, `throughput:-10%`, optionally `:FLOOR` (`2ms`, `500us`, `50`)."""
    match = _CHECK.match(text.strip())
    if not match:
        raise UsageError(f"bad --check {text!r}: expected METRIC:+PERCENT% (e.g. service_time_p99:+25%)")
    name = match["metric"]
    if name not in METRICS:
        raise UsageError(f"bad --check {text!r}: unknown metric {name!r} (known: {', '.join(sorted(METRICS))})")
    metric = METRICS[name]
    bad_sign = "+" if metric.worse_when == "higher" else "-"
    if match["sign"] and match["sign"] != bad_sign:
        word = "up" if metric.worse_when == "higher" else "down"
        raise UsageError(
            f"bad --check {text!r}: {name} gets worse when it goes {word}; write {name}:{bad_sign}{match['percent']}%"
        )
    floor = metric.floor
    if match["floor"]:
        floor_match = _FLOOR.match(match["floor"].strip())
        if not floor_match or (floor_match["unit"] and metric.unit != "µs"):
            raise UsageError(f"bad --check {text!r}: floor must be a number in {metric.unit}"
                             + (" or with us/ms/s" if metric.unit == "µs" else ""))
        floor = float(floor_match["number"]) * (_LATENCY_UNIT_US[floor_match["unit"]] if metric.unit == "µs" else 1)
    return Check(metric, float(match["percent"]) / 100, floor)


# Wide enough for a noisy shared 2-core machine (tail latency there moves by tens of percent
# between identical runs), tight enough that a 2x latency or a halved throughput fails.
DEFAULT_CHECKS = ("throughput:-20%", "service_time_p50:+50%", "service_time_p99:+50%",
                  "response_time_p99:+50%", "end_to_end_p50:+50%", "end_to_end_p99:+50%")


# ---------------------------------------------------------------------------------------------
# Comparability


def require_comparable_kind(result: Mapping[str, Any], label: str) -> None:
    if result.get("kind") not in COMPARABLE_KINDS:
        raise UsageError(f"{label} is a {result.get('kind')!r} result; compare and regress take run or locust results")


def _changes_fingerprint(scenario: Mapping[str, Any], key: str, other_value: Any) -> bool:
    """Whether swapping one field changes Scenario.fingerprint() (the scenario module decides
    which fields are material; an invalid combination counts as material)."""
    try:
        before = Scenario.from_mapping(scenario).fingerprint()
        changed = dict(scenario)
        if other_value is None:
            changed.pop(key, None)
        else:
            changed[key] = other_value
        return Scenario.from_mapping(changed).fingerprint() != before
    except (UsageError, TypeError, ValueError):
        return True


def differing_fields(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """Why two results are not comparable (empty when their fingerprints agree).

    Lists the scenario fields that enter the fingerprint and differ; fields that do not
    matter (name, duration, ...) are left out.
    """
    if first.get("kind") != second.get("kind"):
        return [f"kind: {first.get('kind')!r} vs {second.get('kind')!r}"]
    if first.get("fingerprint") == second.get("fingerprint") and first.get("fingerprint"):
        return []
    scenario_a, scenario_b = first.get("scenario") or {}, second.get("scenario") or {}
    differing = [key for key in sorted(set(scenario_a) | set(scenario_b)) if scenario_a.get(key) != scenario_b.get(key)]
    material = [key for key in differing if _changes_fingerprint(scenario_a, key, scenario_b.get(key))] or differing
    reasons = [f"{key}: {scenario_a.get(key)!r} vs {scenario_b.get(key)!r}" for key in material]
    return reasons or [f"fingerprint: {first.get('fingerprint')!r} vs {second.get('fingerprint')!r}"]


# ---------------------------------------------------------------------------------------------
# Delta table (bench compare)


@dataclass(frozen=True)
class DeltaRow:
    label: str
    unit: str
    worse_when: str
    values: tuple[float | None, ...]  # one per run, in the order given
    changes: tuple[float | None, ...]  # relative to the first run; None for the first run itself


def _max_lag(result: Mapping[str, Any], key: str) -> float | None:
    values = (result.get("series") or {}).get(key) or []
    warmup_s = result.get("warmup_s") or 0
    seconds = (result.get("series") or {}).get("t_s") or []
    after_warmup = [v for t, v in zip(seconds, values) if t > warmup_s and v is not None]
    return max(after_warmup) if after_warmup else None


def delta_rows(results: Sequence[Mapping[str, Any]]) -> list[DeltaRow]:
    """Throughput, p50/p99/p99.9/max of each latency and max lag, with changes against run 1.

    Max lag here spans the drain too (everything after warm-up): the worst a consumer saw.
    """
    specs: list[tuple[str, str, str, Callable[[Mapping[str, Any]], float | None]]] = [
        ("throughput (acked)", "msg/s", "lower", METRICS["throughput"].summary),
        ("throughput (consumed)", "msg/s", "lower", METRICS["consumed_throughput"].summary),
    ]
    for kind, kind_label in LATENCY_KINDS.items():
        if any(((r.get("latency_us") or {}).get(kind) or {}).get("count") for r in results):
            for statistic, statistic_label in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max")):
                specs.append((f"{kind_label} {statistic_label}", "µs", "higher", _latency_summary(kind, statistic)))
    specs.append(("consumer lag max", "messages", "higher", lambda r: _max_lag(r, "lag_messages")))
    specs.append(("consumer time lag max", "ms", "higher", lambda r: _max_lag(r, "lag_time_ms")))

    rows = []
    for label, unit, worse_when, read in specs:
        values = tuple(read(result) for result in results)
        base = values[0]
        changes = tuple(
            None if index == 0 or base is None or value is None else relative_change(base, value)
            for index, value in enumerate(values)
        )
        rows.append(DeltaRow(label, unit, worse_when, values, changes))
    return rows


# ---------------------------------------------------------------------------------------------
# Regression verdicts (bench regress)

REGRESSION = "regression"
OK = "ok"
IMPROVED = "improved"
NOT_SIGNIFICANT = "not significant"
BELOW_FLOOR = "below floor"
INCONCLUSIVE = "inconclusive"
MISSING = "missing"


@dataclass(frozen=True)
class Verdict:
    check: Check
    baseline: float | None
    candidate: float | None
    change: float | None  # relative, signed
    p_value: float | None  # one-sided, in the bad direction
    samples: tuple[int, int]  # per-second samples (baseline, candidate)
    outcome: str
    reason: str

    @property
    def is_regression(self) -> bool:
        return self.outcome == REGRESSION


def verdict(check: Check, baseline: Mapping[str, Any], candidate: Mapping[str, Any], alpha: float) -> Verdict:
    metric = check.metric
    base_value, cand_value = metric.summary(baseline), metric.summary(candidate)
    base_samples, cand_samples = series_samples(baseline, metric.series_key), series_samples(candidate, metric.series_key)
    counts = (len(base_samples), len(cand_samples))

    def make(outcome: str, reason: str, change=None, p_value=None) -> Verdict:
        return Verdict(check, base_value, cand_value, change, p_value, counts, outcome, reason)

    if base_value is None or cand_value is None:
        side = "baseline" if base_value is None else "candidate"
        return make(MISSING, f"no {metric.label} in the {side}")
    if min(counts) < MIN_SAMPLES:
        return make(INCONCLUSIVE, f"only {min(counts)} per-second samples of {metric.series_key} "
                                  f"(need {MIN_SAMPLES} per run): run longer")

    worse_sign = 1 if metric.worse_when == "higher" else -1
    change = relative_change(base_value, cand_value)
    absolute = cand_value - base_value
    alternative = "greater" if metric.worse_when == "higher" else "less"
    _, p_worse = mann_whitney_u(cand_samples, base_samples, alternative)
    _, p_better = mann_whitney_u(cand_samples, base_samples, "less" if alternative == "greater" else "greater")
    worse_fraction = worse_sign * change if change is not None else (float("inf") if worse_sign * absolute > 0 else 0.0)
    shown = f"{format_value(base_value, metric.unit)} -> {format_value(cand_value, metric.unit)}"
    shown += f" ({change:+.1%})" if change is not None else ""

    if worse_fraction > check.threshold:
        if abs(absolute) < check.floor:
            return make(BELOW_FLOOR, f"not a regression: {shown} is beyond {check.threshold:.0%} but under the "
                                     f"{format_value(check.floor, metric.unit)} floor", change, p_worse)
        if p_worse >= alpha:
            return make(NOT_SIGNIFICANT, f"not a regression: {shown} is beyond {check.threshold:.0%} but not "
                                         f"significant (p = {p_worse:.3g} >= {alpha:g})", change, p_worse)
        return make(REGRESSION, f"REGRESSION: {shown}, beyond {check.threshold:.0%} and significant "
                                f"(p = {p_worse:.3g} < {alpha:g})", change, p_worse)
    if -worse_fraction > check.threshold and p_better < alpha and abs(absolute) >= check.floor:
        return make(IMPROVED, f"improved: {shown} (p = {p_better:.3g})", change, p_worse)
    return make(OK, f"ok: {shown} within {check.threshold:.0%}", change, p_worse)


def regress(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    checks: Sequence[Check],
    alpha: float = DEFAULT_ALPHA,
    explicit: bool = True,
) -> list[Verdict]:
    """One verdict per check. Raises UsageError when the runs are not comparable.

    With `explicit` False (the default check set), checks of metrics neither run has
    (e.g. response time at rate 0) are dropped instead of reported missing.
    """
    require_comparable_kind(baseline, "the baseline")
    require_comparable_kind(candidate, "the candidate")
    differences = differing_fields(baseline, candidate)
    if differences:
        raise UsageError("not comparable: scenarios differ in " + "; ".join(differences))
    verdicts = [verdict(check, baseline, candidate, alpha) for check in checks]
    if not explicit:
        verdicts = [v for v in verdicts if not (v.outcome == MISSING and v.baseline is None and v.candidate is None)]
    return verdicts
