"""Pure comparison of result dicts: comparability, delta tables and regression verdicts.

No I/O and no printing: `bench compare` and `bench regress` render what these return.

A regression needs all three of:
  1. a change in the metric's bad direction beyond the check's threshold (e.g. p99 +25 %),
  2. an absolute change of at least the metric's floor (sub-millisecond noise never fails a build),
  3. a significant difference between independent samples of the two runs: one-sided
     Mann-Whitney U in the bad direction, p < alpha, over batch means of the per-second series
     (blocks of seconds as long as the series' autocorrelation lasts, bench/analysis/rounds.py):
     seconds themselves are not independent, and a test that took them as such called any shift
     of a shared machine's state significant.

A stored baseline is another machine's or another day's measurement: `weak_comparison` says
when the candidate's host, day or load makes the comparison weak (the gate still judges).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.analysis.rounds import batch_means, block_length
from bench.analysis.stats import mann_whitney_u, relative_change, run_faults
from bench.analysis.thresholds import Check
from bench.results.fingerprint import changes_fingerprint
from bench.results.formatting import format_value
from bench.results.metrics import METRICS, PLOTTED_LATENCIES
from bench.results.window import series_samples
from streamstore.errors import UsageError

COMPARABLE_KINDS = frozenset({"run", "locust"})
DEFAULT_ALPHA = 0.05
# Below this many independent samples (block means) per side U says nothing: at 4 and 4 the
# smallest one-sided p is 1/70. And below this many seconds a series' autocorrelation (the block
# length) cannot be estimated.
MIN_BLOCKS = 4
MIN_SECONDS = 8

# Chosen from the measured spread of identical reruns (docs/reports.md, "How the default checks
# were chosen"): 10 reruns of scenarios/ci-gate.toml on a quiet 2-core machine moved no p50 or p99
# in the bad direction against their baseline (changes -17 % .. 0 %), while on a busy machine the
# same code has shown p99 at 2.1x its baseline. So p50s get +50 % (a 2x latency, +100 %, fails)
# and tails +200 % (above the 2x that load alone causes); throughput -20 % (reruns: 0 %).
DEFAULT_CHECKS = ("throughput:-20%", "service_time_p50:+50%", "end_to_end_p50:+50%",
                  "service_time_p99:+200%", "response_time_p99:+200%", "end_to_end_p99:+200%")


# ---------------------------------------------------------------------------------------------
# Comparability


def require_comparable_kind(result: Mapping[str, Any], label: str) -> None:
    if result.get("kind") not in COMPARABLE_KINDS:
        raise UsageError(f"{label} is a {result.get('kind')!r} result; compare and regress take run or locust results")


# What makes two measurements' environments comparable: the machine kind, the client library and
# the broker (version, settings, on this host or across a network; not whether this harness
# started it). Not the host name (CI machines of one kind have many) and not the harness commit
# (a regression gate compares commits on purpose). A fact either side did not measure makes the
# two not comparable: a gate that skipped it would judge a Kafka 3.9 run against a 3.8 baseline.
ENVIRONMENT_KEYS = ("cpu_model", "cpu_count", "confluent_kafka", "librdkafka")
# A broker's version as a broker tells a client (Kafka 3.x): the embedded broker reports it too
# (in its settings), so an embedded 3.8.1 and an external "3.8-IV0" compare on it.
PROTOCOL_VERSION = "inter.broker.protocol.version"
_LOCAL_HOSTS = ("localhost", "127.", "[::1]", "::1")


def broker_placement(result: Mapping[str, Any]) -> str | None:
    """"local" when every bootstrap server is on this host, else "remote" (a network between
    client and broker changes every latency); None when not recorded."""
    servers = (result.get("broker") or {}).get("bootstrap_servers")
    if not servers:
        return None
    hosts = [server.strip().rsplit(":", 1)[0] for server in str(servers).split(",") if server.strip()]
    return "local" if all(host.startswith(_LOCAL_HOSTS) for host in hosts) else "remote"


def _unmeasured(section: Mapping[str, Any], key: str) -> str:
    return (section.get("not_measured") or {}).get(key) or "not recorded"


def _protocol_version(broker: Mapping[str, Any]) -> str | None:
    if broker.get("version_source") == PROTOCOL_VERSION:
        return broker.get("version")
    return (broker.get("settings") or {}).get(PROTOCOL_VERSION)


def broker_version_difference(a: Mapping[str, Any], b: Mapping[str, Any],
                              labels: tuple[str, str] = ("baseline", "candidate")) -> str | None:
    """Why two `broker` sections' versions differ or cannot be compared (None when they agree).
    Measured the same way, the versions are compared; measured differently (the embedded broker's
    jar, another broker's protocol setting), on the protocol version both brokers report."""
    for broker, label in zip((a, b), labels):
        if broker.get("version") is None:
            return f"broker version: not measured in the {label} ({_unmeasured(broker, 'version')})"
    if a.get("version_source") == b.get("version_source"):
        return None if a["version"] == b["version"] else f"broker version: {a['version']!r} vs {b['version']!r}"
    shown = " vs ".join(f"{broker['version']!r} ({broker.get('version_source') or 'source not recorded'})"
                        for broker in (a, b))
    protocols = _protocol_version(a), _protocol_version(b)
    if None in protocols:
        return f"broker version: {shown}, measured differently and not both report {PROTOCOL_VERSION}"
    if protocols[0] != protocols[1]:
        return f"broker version: {shown}, {PROTOCOL_VERSION} {protocols[0]!r} vs {protocols[1]!r}"
    return None


def differing_environment(first: Mapping[str, Any], second: Mapping[str, Any],
                          labels: tuple[str, str] = ("baseline", "candidate")) -> list[str]:
    """Why two results cannot be compared for their environments (empty if they can): a fact
    that differs, or one that either side did not measure (null, with the reason it recorded)."""
    reasons = []
    a, b = first.get("environment") or {}, second.get("environment") or {}
    for key in ENVIRONMENT_KEYS:
        missing = [f"environment {key}: not measured in the {label} ({_unmeasured(part, key)})"
                   for label, part in zip(labels, (a, b)) if part.get(key) is None]
        if missing:
            reasons.extend(missing)
        elif a[key] != b[key]:
            reasons.append(f"environment {key}: {a[key]!r} vs {b[key]!r}")
    broker_a, broker_b = first.get("broker") or {}, second.get("broker") or {}
    version = broker_version_difference(broker_a, broker_b, labels)
    if version:
        reasons.append(version)
    placement_a, placement_b = broker_placement(first), broker_placement(second)
    if placement_a and placement_b and placement_a != placement_b:
        reasons.append(f"broker placement: {placement_a} vs {placement_b}")
    settings_a, settings_b = broker_a.get("settings") or {}, broker_b.get("settings") or {}
    for key in sorted(set(settings_a) & set(settings_b)):
        if settings_a[key] != settings_b[key]:
            reasons.append(f"broker setting {key}: {settings_a[key]!r} vs {settings_b[key]!r}")
    return reasons


def environment_slug(result: Mapping[str, Any]) -> str:
    """A file-name-safe name of the environment a result was measured in (its machine kind and
    broker), e.g. `intel-r-xeon-r-processor-2cpu-kafka-3.8.1`: baselines of one scenario for
    several environments sit side by side as `<scenario>.<slug>.json`."""
    environment, broker = result.get("environment") or {}, result.get("broker") or {}
    cpu = re.sub(r"[^a-z0-9]+", "-", str(environment.get("cpu_model") or "unknown-cpu").lower()).strip("-")
    version = re.sub(r"[^a-z0-9.]+", "-", str(broker.get("version") or "unknown").lower()).strip("-")
    return f"{cpu}-{environment.get('cpu_count') or 'n'}cpu-kafka-{version}"


def differing_fields(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[str]:
    """Why two results are not comparable (empty when their fingerprints agree and they ran
    under the same faults).

    Lists the scenario fields that enter the fingerprint and differ; fields that do not
    matter (name, duration, ...) are left out. A run with a fault is never comparable to one
    without, also when an older result kept its faults out of the scenario (and the fingerprint).
    """
    if first.get("kind") != second.get("kind"):
        return [f"kind: {first.get('kind')!r} vs {second.get('kind')!r}"]
    faults_a, faults_b = run_faults(first), run_faults(second)
    fault_reasons = [f"faults: {' '.join(faults_a) or 'none'} vs {' '.join(faults_b) or 'none'}"] \
        if faults_a != faults_b else []
    if first.get("fingerprint") == second.get("fingerprint") and first.get("fingerprint"):
        return fault_reasons
    scenario_a, scenario_b = first.get("scenario") or {}, second.get("scenario") or {}
    differing = [key for key in sorted(set(scenario_a) | set(scenario_b)) if scenario_a.get(key) != scenario_b.get(key)]
    material = [key for key in differing if changes_fingerprint(scenario_a, key, scenario_b.get(key))] or differing
    reasons = [f"{key}: {scenario_a.get(key)!r} vs {scenario_b.get(key)!r}" for key in material
               if not (key == "faults" and fault_reasons)]
    return fault_reasons + reasons or [f"fingerprint: {first.get('fingerprint')!r} vs {second.get('fingerprint')!r}"]


# ---------------------------------------------------------------------------------------------
# Delta table (bench compare)


@dataclass(frozen=True)
class DeltaRow:
    name: str  # the metric table's name
    label: str
    unit: str
    worse_when: str
    values: tuple[float | None, ...]  # one per run, in the order given
    changes: tuple[float | None, ...]  # relative to the first run; None for the first run itself
    differences: tuple[float | None, ...] = ()  # absolute, against the first run (a count from 0 has no ratio)

    def is_worse(self, index: int) -> bool:
        """Whether run `index` is worse than the first run in this row."""
        difference = self.differences[index] if index < len(self.differences) else None
        if not difference:
            return False
        return difference > 0 if self.worse_when == "higher" else difference < 0


# The rows of the delta table: metric names from the metric table, in this order (latencies
# only when a run measured them, failover rows only for fault runs).
# A run's consumer events (bench/analysis/rebalance.py): shown when a run had any.
REBALANCE_ROWS = ("rebalance_pause", "rebalance_partition_pause", "rebalance_lag_peak", "rebalance_recover",
                  "rebalance_duplicated")
DELTA_METRICS = ("throughput", "throughput_mb", "consumed_throughput",
                 *(f"{kind}_{statistic}" for kind in PLOTTED_LATENCIES for statistic in ("p50", "p99", "p99_9", "max")),
                 "lag_max", "lag_time_max", "failed", "lost", "duplicated",
                 "longest_ack_gap", "longest_consume_gap", "new_leader", *REBALANCE_ROWS)
_FAILOVER_ROWS = ("longest_ack_gap", "longest_consume_gap", "new_leader")


def delta_rows(results: Sequence[Mapping[str, Any]]) -> list[DeltaRow]:
    """One row per metric of DELTA_METRICS that any run measured, with changes against run 1.
    Every figure covers the window the metric table gives it (the measured window, counts the
    whole run, failover figures each fault's window)."""
    rows = []
    faulted = any(result.get("failover") for result in results)
    rebalanced = any(result.get("rebalances") for result in results)
    for name in DELTA_METRICS:
        metric = METRICS[name]
        values = tuple(metric.read(result) for result in results)
        if metric.path[0] == "latency_us" and all(value is None for value in values):
            continue
        if name in _FAILOVER_ROWS and not faulted or name in REBALANCE_ROWS and not rebalanced:
            continue
        base = values[0]
        changes = tuple(
            None if index == 0 or base is None or value is None else relative_change(base, value)
            for index, value in enumerate(values)
        )
        differences = tuple(None if index == 0 or base is None or value is None else value - base
                            for index, value in enumerate(values))
        rows.append(DeltaRow(name, metric.label, metric.unit, metric.worse_when, values, changes, differences))
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
    samples: tuple[int, int]  # independent samples: block means (baseline, candidate)
    outcome: str
    reason: str
    block_s: int = 1  # seconds per block

    @property
    def is_regression(self) -> bool:
        return self.outcome == REGRESSION


def verdict(check: Check, baseline: Mapping[str, Any], candidate: Mapping[str, Any], alpha: float) -> Verdict:
    metric = check.metric
    base_value, cand_value = metric.read(baseline), metric.read(candidate)
    base_seconds = series_samples(baseline, metric.series_key)
    cand_seconds = series_samples(candidate, metric.series_key)
    # One block length for both runs, from the more correlated of the two.
    block = max(block_length(base_seconds), block_length(cand_seconds))
    base_samples, cand_samples = batch_means(base_seconds, block), batch_means(cand_seconds, block)
    counts = (len(base_samples), len(cand_samples))

    def make(outcome: str, reason: str, change=None, p_value=None) -> Verdict:
        return Verdict(check, base_value, cand_value, change, p_value, counts, outcome, reason, block)

    if base_value is None or cand_value is None:
        side = "baseline" if base_value is None else "candidate"
        return make(MISSING, f"no {metric.label} in the {side}")
    needed = max(MIN_SECONDS, MIN_BLOCKS * block)
    if min(len(base_seconds), len(cand_seconds)) < needed:
        # The measured seconds are those after warm-up, without the last (partial) sending second.
        shorter = baseline if len(base_seconds) < len(cand_seconds) else candidate
        needed_s = (shorter.get("warmup_s") or 0) + needed + 1
        return make(INCONCLUSIVE, f"only {min(len(base_seconds), len(cand_seconds))} measured seconds of "
                                  f"{metric.series_key} (need {needed} per run: {MIN_BLOCKS} blocks of {block} s, "
                                  f"the series' correlation length, and at least {MIN_SECONDS} s): run for at least "
                                  f"{needed_s:g} s (warm-up + {needed + 1} s)")

    worse_sign = 1 if metric.worse_when == "higher" else -1
    change = relative_change(base_value, cand_value)
    absolute = cand_value - base_value
    alternative = "greater" if metric.worse_when == "higher" else "less"
    _, p_worse = mann_whitney_u(cand_samples, base_samples, alternative)
    _, p_better = mann_whitney_u(cand_samples, base_samples, "less" if alternative == "greater" else "greater")
    worse_fraction = worse_sign * change if change is not None else (float("inf") if worse_sign * absolute > 0 else 0.0)
    shown = f"{format_value(base_value, metric.unit)} -> {format_value(cand_value, metric.unit)}"
    shown += f" ({change:+.1%})" if change is not None else ""
    samples = f"{counts[0]}/{counts[1]} means of {block} s blocks"

    if worse_fraction > check.threshold:
        if abs(absolute) < check.floor:
            return make(BELOW_FLOOR, f"not a regression: {shown} is beyond {check.threshold:.0%} but under the "
                                     f"{format_value(check.floor, metric.unit)} floor", change, p_worse)
        if p_worse >= alpha:
            return make(NOT_SIGNIFICANT, f"not a regression: {shown} is beyond {check.threshold:.0%} but not "
                                         f"significant (p = {p_worse:.3g} >= {alpha:g}, {samples})", change, p_worse)
        return make(REGRESSION, f"REGRESSION: {shown}, beyond {check.threshold:.0%} and significant "
                                f"(p = {p_worse:.3g} < {alpha:g}, {samples})", change, p_worse)
    if -worse_fraction > check.threshold and p_better < alpha and abs(absolute) >= check.floor:
        return make(IMPROVED, f"improved: {shown} (p = {p_better:.3g})", change, p_worse)
    return make(OK, f"ok: {shown} within {check.threshold:.0%}", change, p_worse)


def regress(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    checks: Sequence[Check],
    alpha: float = DEFAULT_ALPHA,
    explicit: bool = True,
    any_environment: bool = False,
) -> list[Verdict]:
    """One verdict per check. Raises UsageError when the runs are not comparable: other
    scenarios, or (unless `any_environment`) another machine kind, client library or broker.

    With `explicit` False (the default check set), checks of metrics neither run has
    (e.g. response time at rate 0) are dropped instead of reported missing.
    """
    require_comparable_kind(baseline, "the baseline")
    require_comparable_kind(candidate, "the candidate")
    differences = differing_fields(baseline, candidate)
    if differences:
        raise UsageError("not comparable: scenarios differ in " + "; ".join(differences))
    environment = differing_environment(baseline, candidate)
    if environment and not any_environment:
        raise UsageError("not comparable: environments differ or were not measured (" + "; ".join(environment)
                         + "); take a baseline here with --update-baseline, or judge anyway with --any-environment")
    verdicts = [verdict(check, baseline, candidate, alpha) for check in checks]
    if not explicit:
        verdicts = [v for v in verdicts if not (v.outcome == MISSING and v.baseline is None and v.candidate is None)]
    return verdicts


# ---------------------------------------------------------------------------------------------
# How much a stored baseline can say about this candidate

# Another day's measurement on a shared machine: other neighbours, other cache and disk state.
STALE_BASELINE_S = 24 * 3600
# Load (1-minute average, runnable processes) per CPU above which a machine is busy: latencies
# measured there carry other processes' scheduling, not only the harness's and the broker's.
BUSY_LOAD_PER_CPU = 0.5


def _load_per_cpu(result: Mapping[str, Any]) -> float | None:
    environment = result.get("environment") or {}
    load, cpus = environment.get("load_average_1m"), environment.get("cpu_count")
    return load / cpus if isinstance(load, (int, float)) and cpus else None


def _started(result: Mapping[str, Any]) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(result.get("started_at"))).timestamp()
    except ValueError:
        return None


def weak_comparison(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """Why a stored baseline is a weak reference for this candidate (empty when nothing says so):
    another host of the same kind, another day, a busy machine on either side, or a load that was
    not recorded. The gate still judges; this says how far to trust it. A reference measured in
    the same job, in alternating rounds (`bench ab`), has none of these weaknesses."""
    reasons = []
    a, b = baseline.get("environment") or {}, candidate.get("environment") or {}
    if a.get("host") and b.get("host") and a["host"] != b["host"]:
        reasons.append(f"another host: the baseline was measured on {a['host']!r}, the candidate on {b['host']!r} "
                       "(same machine kind, other neighbours)")
    started_a, started_b = _started(baseline), _started(candidate)
    if started_a is not None and started_b is not None and abs(started_b - started_a) > STALE_BASELINE_S:
        reasons.append(f"another day: the baseline was measured {abs(started_b - started_a) / 86400:.1f} days "
                       "before or after the candidate")
    for label, result in (("baseline", baseline), ("candidate", candidate)):
        per_cpu = _load_per_cpu(result)
        if per_cpu is None:
            reasons.append(f"the {label}'s machine load was not recorded")
        elif per_cpu > BUSY_LOAD_PER_CPU:
            environment = result.get("environment") or {}
            reasons.append(f"busy machine: the {label} ran at load {environment['load_average_1m']:.2f} on "
                           f"{environment['cpu_count']} CPUs")
    return reasons
