"""Pure comparison logic: Mann-Whitney U, checks, comparability and golden regression verdicts.

The fixture result folders come from tests/fixtures/make_fixtures.py (see its docstring).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.analysis import compare
from bench.analysis.stats import derive_warnings, mann_whitney_u, ratio_spread, spread
from bench.analysis.thresholds import parse_check
from bench.results.schema import V3_LATENCY_WINDOW
from bench.results.store import load_result
from bench.results.window import measured_indices, series_samples
from streamstore.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return load_result(FIXTURES / name)


# The verdict logic on fixed thresholds (the defaults are chosen from measured noise and may move).
GOLDEN_CHECKS = ("throughput:-20%", "service_time_p50:+50%", "service_time_p99:+50%",
                 "response_time_p99:+50%", "end_to_end_p50:+50%", "end_to_end_p99:+50%")


def outcomes(baseline: str, candidate: str, checks=GOLDEN_CHECKS) -> dict[str, str]:
    verdicts = compare.regress(fixture(baseline), fixture(candidate), [parse_check(c) for c in checks])
    return {v.check.metric.name: v.outcome for v in verdicts}


# --- Mann-Whitney U ------------------------------------------------------------------------------

# Expected values from scipy.stats.mannwhitneyu(x, y, alternative=..., method="asymptotic",
# use_continuity=True), scipy 1.16 (scipy is not a dependency; these are its printed answers).
SCIPY_X = [12, 15, 11, 19, 15, 14, 13, 18, 15, 16]
SCIPY_Y = [10, 11, 11, 13, 12, 10, 14, 11, 12, 15]


@pytest.mark.parametrize("alternative, expected_p", [
    ("two-sided", 0.010513555402603233), ("greater", 0.005256777701301616), ("less", 0.9957911099308924),
])
def test_mann_whitney_matches_scipy_with_ties(alternative, expected_p):
    u, p = mann_whitney_u(SCIPY_X, SCIPY_Y, alternative)
    assert u == 84.0
    assert p == pytest.approx(expected_p, rel=1e-12)


def test_mann_whitney_identical_and_all_tied_samples():
    assert mann_whitney_u(list(range(8)), list(range(8))) == (32.0, 1.0)
    assert mann_whitney_u([5, 5, 5], [5, 5, 5], "greater")[1] == 1.0


def test_mann_whitney_separated_samples_are_significant():
    _, p = mann_whitney_u([20 + i for i in range(10)], list(range(10)), "greater")
    assert p < 1e-3
    _, p_wrong_way = mann_whitney_u([20 + i for i in range(10)], list(range(10)), "less")
    assert p_wrong_way > 0.99


# --- measured window -----------------------------------------------------------------------------

def test_measured_window_excludes_warmup_last_sending_second_and_drain():
    result = fixture("baseline")
    seconds = result["series"]["t_s"]
    indices = measured_indices(result)
    assert [seconds[i] for i in indices] == list(range(6, 30)), "t_s 1-5 warm-up, 30 partial, 31-32 drain"
    assert len(series_samples(result, "acked")) == 24


# --- checks --------------------------------------------------------------------------------------

# --- golden verdicts on fixture files ------------------------------------------------------------

GOLDEN = {
    # candidate: expected outcome per default check
    "rerun": {"throughput": "ok", "service_time_p50": "ok", "service_time_p99": "ok",
              "response_time_p99": "ok", "end_to_end_p50": "ok", "end_to_end_p99": "ok"},
    "latency-2x": {"throughput": "ok", "service_time_p50": "regression", "service_time_p99": "regression",
                   "response_time_p99": "regression", "end_to_end_p50": "regression", "end_to_end_p99": "regression"},
    "one-spike": {"throughput": "ok", "service_time_p50": "ok", "service_time_p99": "not significant",
                  "response_time_p99": "not significant", "end_to_end_p50": "ok", "end_to_end_p99": "not significant"},
    "slow-and-starved": {"throughput": "regression", "service_time_p50": "regression",
                         "service_time_p99": "regression", "response_time_p99": "regression",
                         "end_to_end_p50": "regression", "end_to_end_p99": "regression"},
}


@pytest.mark.parametrize("candidate", sorted(GOLDEN))
def test_golden_verdicts(candidate):
    assert outcomes("baseline", candidate) == GOLDEN[candidate]


def test_same_run_is_no_regression():
    assert set(outcomes("baseline", "baseline").values()) == {"ok"}


def test_beyond_threshold_but_not_significant_says_so():
    verdicts = compare.regress(fixture("baseline"), fixture("one-spike"), [parse_check("service_time_p99:+50%")])
    (verdict,) = verdicts
    assert verdict.change > 3, "the cumulative p99 moved by more than 300 %"
    assert verdict.p_value > 0.05
    assert not verdict.is_regression
    assert verdict.reason.startswith("not a regression:") and "not significant (p = " in verdict.reason


def test_regression_reason_shows_values_change_and_p_value():
    (verdict,) = compare.regress(fixture("baseline"), fixture("latency-2x"), [parse_check("service_time_p50:+50%")])
    assert verdict.is_regression
    assert verdict.p_value < 1e-4  # over block means: 12 independent samples per run, not 24 seconds
    assert verdict.reason.startswith("REGRESSION: 2.01 ms -> 4 ms (+99.2%)")
    assert verdict.samples == (24 // verdict.block_s, 24 // verdict.block_s)
    assert f"means of {verdict.block_s} s blocks" in verdict.reason


def test_every_violation_is_listed():
    checks = [parse_check(c) for c in ("throughput:-20%", "service_time_p50:+50%", "end_to_end_p99:+50%")]
    verdicts = compare.regress(fixture("baseline"), fixture("slow-and-starved"), checks)
    assert [v.check.metric.name for v in verdicts if v.is_regression] == ["throughput", "service_time_p50", "end_to_end_p99"]


def test_change_below_absolute_floor_is_not_a_regression():
    # 2x the latency, significant, but the absolute change (~2 ms) is under a 5 ms floor.
    (verdict,) = compare.regress(fixture("baseline"), fixture("latency-2x"), [parse_check("service_time_p50:+50%:5ms")])
    assert verdict.outcome == compare.BELOW_FLOOR
    assert "under the 5 ms floor" in verdict.reason


def test_improvement_is_reported_as_such():
    (verdict,) = compare.regress(fixture("latency-2x"), fixture("baseline"), [parse_check("service_time_p50:+20%")])
    assert verdict.outcome == compare.IMPROVED


def test_too_few_samples_is_inconclusive():
    short = fixture("rerun")
    short["series"] = {key: values[:10] if isinstance(values, list) else values  # 4 measured seconds
                       for key, values in short["series"].items()}
    (verdict,) = compare.regress(fixture("baseline"), short, [parse_check("service_time_p99:+50%")])
    assert verdict.outcome == compare.INCONCLUSIVE
    # The fixture warms up for 5 s: 8 measured seconds need 5 + 9 s.
    assert "run for at least 14 s (warm-up + 9 s)" in verdict.reason


def test_missing_metric_is_reported_when_asked_and_dropped_from_defaults():
    no_response = fixture("rerun")
    baseline = fixture("baseline")
    for result in (no_response, baseline):
        del result["latency_us"]["response_time"]
        del result["series"]["response_time_p99_us"]
    check = [parse_check("response_time_p99:+50%")]
    assert compare.regress(baseline, no_response, check)[0].outcome == compare.MISSING
    assert compare.regress(baseline, no_response, check, explicit=False) == []


# --- comparability -------------------------------------------------------------------------------

def test_not_comparable_lists_the_differing_fingerprint_fields():
    with pytest.raises(UsageError, match=r"not comparable: scenarios differ in message_size: 200 vs 1000$"):
        compare.regress(fixture("baseline"), fixture("other-size"), [parse_check("throughput:-10%")])


def test_fields_outside_the_fingerprint_do_not_make_runs_incomparable():
    renamed = fixture("rerun")
    renamed["scenario"]["name"] = "renamed"
    renamed["scenario"]["duration_s"] = 60.0
    assert compare.differing_fields(fixture("baseline"), renamed) == []


def test_only_material_fields_are_listed():
    other = fixture("other-size")
    other["scenario"]["name"] = "something-else"  # differs, but not part of the fingerprint
    assert compare.differing_fields(fixture("baseline"), other) == ["message_size: 200 vs 1000"]


def test_a_run_with_a_fault_is_not_comparable_to_one_without():
    # with-fault has the baseline's scenario and a broker kill that shows only in its events (as in
    # results written before faults were a scenario field): same fingerprint, still refused.
    baseline, faulted = fixture("baseline"), fixture("with-fault")
    assert baseline["fingerprint"] == faulted["fingerprint"]
    assert compare.differing_fields(baseline, faulted) == ["faults: none vs broker-kill broker-restart"]
    with pytest.raises(UsageError, match=r"not comparable: .*faults: none vs broker-kill broker-restart"):
        compare.regress(baseline, faulted, [parse_check("throughput:-10%")])
    # As written now, the fault is in the scenario (and its fingerprint): one reason, not two.
    slow = {**baseline, "scenario": {**baseline["scenario"], "faults": ["slow-consumer=20ms@5+10"]},
            "fingerprint": "0123456789abcdef"}
    assert compare.differing_fields(baseline, slow) == ["faults: none vs slow-consumer=20ms@5+10"]
    assert compare.differing_fields(slow, slow) == []


def test_large_message_results_are_refused():
    with pytest.raises(UsageError, match="'large-message' result; compare and regress take run or locust results"):
        compare.regress(fixture("baseline"), fixture("large-message"), [])


# --- delta table and warnings --------------------------------------------------------------------

def test_delta_rows_against_first_run():
    rows = {row.label: row for row in compare.delta_rows([fixture("baseline"), fixture("latency-2x")])}
    p50 = rows["service time p50"]
    assert p50.values == (fixture("baseline")["latency_us"]["service_time"]["p50"],
                          fixture("latency-2x")["latency_us"]["service_time"]["p50"])
    assert p50.changes[0] is None and p50.changes[1] == pytest.approx(0.992, abs=0.001)
    assert {"throughput (acked)", "service time p99.9", "end-to-end max", "consumer lag max"} <= set(rows)


def _derived_warnings(result):
    """The warnings derived from a result's figures (not the note an upgrade of an old file adds)."""
    return [warning for warning in derive_warnings(result) if warning != V3_LATENCY_WINDOW]


def test_derived_warnings():
    # A fault run's throughput dips by design: not called unstable; the same figures without the
    # fault events are.
    warnings = _derived_warnings(fixture("with-fault"))
    assert len(warnings) == 1 and warnings[0].startswith("generator fell behind: send delay p99 = ")
    unfaulted = {**fixture("with-fault"), "events": []}
    assert _derived_warnings(unfaulted)[1].startswith("unstable: per-second throughput varies by more than 10%")
    assert _derived_warnings(fixture("baseline")) == []
    failed = {**fixture("baseline"), "status": "failed", "failure": "broker unreachable",
              "counts": {"lost": 3, "duplicated": 0}}
    assert _derived_warnings(failed) == ["run failed: broker unreachable", "3 orders acked but never consumed"]


def test_another_machine_kind_or_broker_is_not_comparable_unless_allowed():
    baseline, candidate = fixture("baseline"), fixture("rerun")
    # The host name and the harness commit may differ: CI machines of one kind, commits under test.
    candidate["environment"] = {**candidate["environment"], "host": "elsewhere", "harness_commit": "other"}
    assert compare.differing_environment(baseline, candidate) == []
    candidate["environment"]["cpu_model"] = "Other CPU"
    candidate["broker"] = {**(candidate.get("broker") or {}), "version": "9.9.9"}
    reasons = compare.differing_environment(baseline, candidate)
    assert any(r.startswith("environment cpu_model:") for r in reasons) and any(r.startswith("broker version:") for r in reasons)
    with pytest.raises(UsageError, match="not comparable: environments differ"):
        compare.regress(baseline, candidate, [parse_check("throughput:-20%")])
    (verdict,) = compare.regress(baseline, candidate, [parse_check("throughput:-20%")], any_environment=True)
    assert verdict.outcome == "ok"


def test_the_default_checks_fail_a_2x_latency_and_pass_a_rerun():
    assert set(outcomes("baseline", "rerun", compare.DEFAULT_CHECKS).values()) == {"ok"}
    regressions = {m for m, o in outcomes("baseline", "latency-2x", compare.DEFAULT_CHECKS).items() if o == "regression"}
    assert {"service_time_p50", "end_to_end_p50"} <= regressions



def test_spread_is_the_mean_and_the_largest_distance_of_a_round_from_it():
    figures = spread([0.89, 0.93, 0.97])
    assert figures.mean == pytest.approx(0.93) and figures.spread == pytest.approx(0.04)
    assert (figures.low, figures.high, figures.rounds) == (0.89, 0.97, 3)
    # Lopsided rounds: mean ± spread still holds every round.
    lopsided = spread([1.0, 1.0, 4.0])
    assert lopsided.mean == 2.0 and lopsided.spread == 2.0
    single = spread([5.0])
    assert (single.mean, single.spread, single.rounds) == (5.0, 0.0, 1)
    with pytest.raises(ValueError):
        spread([])


def test_ratio_spread_takes_each_round_against_its_own_round():
    # Drift hits both loops of a round alike: the ratios are steady although the rates doubled.
    figures = ratio_spread([90.0, 180.0], [100.0, 200.0])
    assert figures.mean == pytest.approx(0.9) and figures.spread == pytest.approx(0.0)
    assert ratio_spread([1.0, 3.0], [2.0, 2.0]) == spread([0.5, 1.5])
    with pytest.raises(ValueError):
        ratio_spread([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        ratio_spread([1.0], [0.0])


def test_embedded_and_external_brokers_compare_on_the_protocol_version_both_report():
    """An embedded 3.8.1 (its jar) and an external broker known by its inter.broker.protocol.version
    compare on what both know: the protocol version, which the embedded broker reports too."""
    embedded = {"version": "3.8.1", "version_source": "embedded broker jar", "bootstrap_servers": "127.0.0.1:9092",
                "settings": {"inter.broker.protocol.version": "3.8-IV0"}}
    external = {"version": "3.8-IV0", "version_source": "inter.broker.protocol.version",
                "bootstrap_servers": "127.0.0.1:9092", "settings": {"inter.broker.protocol.version": "3.8-IV0"}}
    assert compare.broker_version_difference(embedded, external) is None
    newer = {**external, "version": "3.9-IV0", "settings": {"inter.broker.protocol.version": "3.9-IV0"}}
    assert compare.broker_version_difference(embedded, newer) == (
        "broker version: '3.8.1' (embedded broker jar) vs '3.9-IV0' (inter.broker.protocol.version), "
        "inter.broker.protocol.version '3.8-IV0' vs '3.9-IV0'")
    unmeasured = {"version": None, "not_measured": {"version": "it reports no inter.broker.protocol.version"}}
    assert compare.broker_version_difference(embedded, unmeasured) == (
        "broker version: not measured in the candidate (it reports no inter.broker.protocol.version)")
