"""The capacity search's pure logic, with made-up steps: the lag slope, a step's judgement, the
rates the search tries (raise, lower, bisect, confirm) and its answer; and the search folder's
report and comparison drawn from a capacity.json alone (no broker)."""

from __future__ import annotations

import io
import random
import time

import pytest

from bench.analysis.capacity import (
    FAILED,
    PASSED,
    UNDECIDED,
    Criteria,
    SearchSettings,
    StepOutcome,
    adds_producers,
    answer,
    judge_step,
    lag_grows,
    next_step,
    rate_verdict,
)
from bench.analysis.thresholds import parse_checks
from bench.capacity.search import CapacityOptions, CapacitySearch
from bench.cli import main
from bench.commands.capacity import slo_limits
from bench.core.scenario import Scenario
from bench.results.window import lag_slope, linear_slope
from streamstore.errors import UsageError

# -- the lag slope --------------------------------------------------------------------------


def test_the_slope_of_a_straight_line_is_exact_with_no_error():
    slope = linear_slope([1, 2, 3, 4, 5], [10, 30, 50, 70, 90])
    assert slope.per_s == pytest.approx(20.0)
    assert slope.standard_error == pytest.approx(0.0)


def test_two_points_give_a_slope_without_an_error_and_one_point_none():
    assert linear_slope([1, 2], [0, 5]).standard_error is None
    assert linear_slope([1], [0]) is None
    assert linear_slope([3, 3, 3], [1, 2, 3]) is None


def test_a_growing_lag_fails_and_a_noisy_flat_lag_does_not():
    noise = random.Random(7)
    seconds = list(range(1, 21))
    flat = [50 + noise.uniform(-40, 40) for _ in seconds]
    growing = [50 + 100 * t + noise.uniform(-40, 40) for t in seconds]
    assert not lag_grows(linear_slope(seconds, flat), rate=5000)
    assert lag_grows(linear_slope(seconds, growing), rate=5000)  # 100 msg/s > 1 % of 5,000


def test_a_short_step_s_noise_is_not_taken_for_growth():
    # Four samples: a slope of 20 msg/s above 1 % of the rate, but well within its own noise.
    slope = linear_slope([1, 2, 3, 4], [10, 80, 5, 95])
    assert slope.per_s > 10
    assert not lag_grows(slope, rate=1000)


# -- a step's judgement ---------------------------------------------------------------------


def step_result(rate: float, *, e2e_p99_us: int = 5_000, sent: float | None = None, acked: float | None = None,
                lag: list[float] | None = None, lost: int = 0, send_delay_p99_us: int = 500, verdicts=None,
                status: str = "complete") -> dict:
    """A `bench run` result as judge_step reads it: 2 s of warm-up, 5 measured seconds."""
    sent = rate if sent is None else sent
    lag = lag if lag is not None else [20.0] * 8
    result = {
        "status": status, "failure": None if status == "complete" else "a producer died", "warmup_s": 2,
        "counts": {"sent": 100, "acked": 100, "failed": 0, "lost": lost},
        "throughput": {"acked_per_s": sent if acked is None else acked, "measured_s": 5},
        "latency_us": {"end_to_end": {"p50": 1000, "p99": e2e_p99_us, "p99_9": e2e_p99_us, "max": e2e_p99_us, "count": 10},
                       "send_delay": {"p99": send_delay_p99_us, "count": 10}},
        # Seconds 1-2 warm-up, 3-7 measured, 8 the last (partial) second with sends.
        "series": {"t_s": list(range(1, 9)), "sent": [sent] * 8, "lag_messages": lag},
    }
    if verdicts is not None:
        result["verdicts"] = verdicts
    return result


E2E_50MS = parse_checks(["end_to_end_p99<50ms"])


def test_a_step_within_every_limit_passes():
    judgement = judge_step(step_result(1000), 1000, E2E_50MS)
    assert judgement.passed and judgement.reasons == () and not judgement.harness_limited


def test_a_step_over_the_slo_fails_and_says_by_how_much():
    judgement = judge_step(step_result(1000, e2e_p99_us=72_000), 1000, E2E_50MS)
    assert not judgement.passed and not judgement.harness_limited
    assert judgement.reasons == ("SLO end_to_end_p99<50ms: measured 72 ms",)


def test_a_generator_that_sent_less_than_asked_is_the_harness_s_limit():
    judgement = judge_step(step_result(10_000, sent=8_000), 10_000, E2E_50MS)
    assert not judgement.passed and judgement.harness_limited
    assert "generator could not keep up: sent 8,000 msg/s of 10,000 asked" in judgement.reasons


def test_a_late_generator_fails_by_its_send_delay_limit():
    result = step_result(1000, send_delay_p99_us=30_000)
    assert judge_step(result, 1000, E2E_50MS).harness_limited
    assert judge_step(result, 1000, E2E_50MS, Criteria(send_delay_limit_us=50_000)).passed


def test_a_generator_saturated_verdict_makes_the_step_the_harness_s_limit_and_other_verdicts_do_not():
    saturated = [{"kind": "generator-saturated", "text": "generator saturated: producer process at 99 % CPU for 14 s"}]
    judgement = judge_step(step_result(1000, verdicts=saturated), 1000, E2E_50MS)
    assert judgement.harness_limited and not judgement.passed
    assert judgement.reasons == ("generator saturated: producer process at 99 % CPU for 14 s",)
    busy = [{"kind": "broker-busy", "text": "request handlers 95 % busy"}]
    assert judge_step(step_result(1000, verdicts=busy), 1000, E2E_50MS).passed


def test_lost_orders_a_growing_lag_unacknowledged_sends_and_a_failed_run_each_fail_a_step():
    assert "3 acked orders lost" in judge_step(step_result(1000, lost=3), 1000, E2E_50MS).reasons
    growing = judge_step(step_result(1000, lag=[10, 20, 500, 1000, 1500, 2000, 2500, 3000]), 1000, E2E_50MS)
    assert any(reason.startswith("consumer lag grew 500 msg/s") for reason in growing.reasons)
    assert growing.lag_slope.per_s == pytest.approx(500)
    unacked = judge_step(step_result(1000, acked=600), 1000, E2E_50MS)
    assert "broker acknowledged 600 msg/s of 1,000 sent" in unacked.reasons
    died = judge_step(step_result(1000, status="failed"), 1000, E2E_50MS)
    assert "run failed: a producer died" in died.reasons


def test_the_lag_slope_covers_the_measured_window_only():
    # A warm-up spike and the last partial second are left out: the window's lag is flat.
    result = step_result(1000, lag=[5000, 3000, 20, 20, 20, 20, 20, 9000])
    assert lag_slope(result).per_s == pytest.approx(0.0)


# -- the search -----------------------------------------------------------------------------


def search(capacity: float, settings: SearchSettings, noisy_pass_at: float | None = None,
           stalled_at: float | None = None, limit: int = 40) -> list[StepOutcome]:
    """Run the search against a system that passes every rate up to `capacity` (and, once,
    `noisy_pass_at` above it; and fails `stalled_at` below it once); the history of steps it took."""
    history: list[StepOutcome] = []
    while (planned := next_step(history, settings)) is not None:
        first_time = not any(t.rate == planned.rate for t in history)
        passed = (planned.rate <= capacity and not (planned.rate == stalled_at and first_time)) \
            or (planned.rate == noisy_pass_at and first_time)
        history.append(StepOutcome(planned.rate, passed))
        assert len(history) < limit, f"the search did not end: {history}"
    return history


def test_the_search_doubles_then_bisects_to_the_tolerance_and_confirms_the_answer():
    settings = SearchSettings(start_rate=1000, tolerance=0.05)
    history = search(11_000, settings)
    rates = [t.rate for t in history]
    assert rates[:5] == [1000, 2000, 4000, 8000, 16000]
    found = answer(history)
    assert found.confirmed and found.rate <= 11_000
    assert (found.failed_above - found.rate) / found.failed_above <= 0.05
    assert history[-1] == StepOutcome(found.rate, True) and rates.count(found.rate) == 2


def test_without_rechecks_a_pass_its_confirmation_does_not_repeat_counts_as_failed():
    settings = SearchSettings(start_rate=1000, tolerance=0.5, recheck_fails=False)
    # 2,000 passes once by chance, then fails its confirmation: the answer falls back to 1,000.
    history = search(1500, settings, noisy_pass_at=2000)
    assert [(t.rate, t.passed) for t in history] == [(1000, True), (2000, True), (4000, False), (2000, False),
                                                     (1000, True)]
    found = answer(history, recheck_fails=False)
    assert (found.rate, found.confirmed, found.failed_above) == (1000, True, 2000)


def test_a_rate_s_steps_decide_by_majority_once_two_agree():
    assert [rate_verdict(passes, fails) for passes, fails in ((1, 0), (0, 1), (1, 1), (2, 1), (1, 2), (0, 2))] == \
        [PASSED, UNDECIDED, UNDECIDED, PASSED, FAILED, FAILED]
    assert rate_verdict(1, 1, recheck_fails=False) == FAILED


def test_one_stalled_step_does_not_cap_the_answer_it_is_rechecked():
    settings = SearchSettings(start_rate=1000, tolerance=0.05)
    # 4,000 holds, but its first step stalls: rechecked, it passes, and the search goes on past it.
    history = search(11_000, settings, stalled_at=4000)
    steps = [(t.rate, t.passed) for t in history]
    # One pass against one fail decides nothing: a third step does.
    assert steps[:6] == [(1000, True), (2000, True), (4000, False), (4000, True), (4000, True), (8000, True)]
    assert next_step(history[:3], settings).purpose == "recheck"
    found = answer(history)
    assert found.confirmed and 10_000 <= found.rate <= 11_000
    # Without the recheck that stall caps the answer below 4,000.
    stalled = answer(search(11_000, SearchSettings(start_rate=1000, recheck_fails=False), stalled_at=4000),
                     recheck_fails=False)
    assert stalled.rate < 4000


def test_a_pass_its_confirmation_does_not_repeat_needs_a_third_step():
    settings = SearchSettings(start_rate=1000, tolerance=0.5)
    # 2,000 passes once by chance, fails its confirmation, and fails the deciding third step.
    history = search(1500, settings, noisy_pass_at=2000)
    assert [(t.rate, t.passed) for t in history if t.rate == 2000] == [(2000, True), (2000, False), (2000, False)]
    found = answer(history)
    assert (found.rate, found.confirmed, found.failed_above) == (1000, True, 2000)


def test_a_first_step_that_fails_lowers_the_rate_down_to_the_minimum_then_gives_up():
    settings = SearchSettings(start_rate=1000, min_rate=200)
    history = search(0, settings)
    assert [t.rate for t in history] == [1000, 1000, 500, 500, 250, 250]
    assert answer(history).rate is None


def test_the_search_stops_raising_at_the_maximum_rate():
    history = search(1e9, SearchSettings(start_rate=1000, max_rate=5000))
    assert [t.rate for t in history] == [1000, 2000, 4000, 5000, 5000]
    assert answer(history).confirmed


def test_producers_are_added_once_the_generator_s_limit_repeats_at_a_rate():
    assert not adds_producers(1, producers=1, max_producers=2)
    assert adds_producers(2, producers=1, max_producers=2)
    assert adds_producers(1, producers=1, max_producers=2, recheck_fails=False)
    assert not adds_producers(5, producers=2, max_producers=2)


def _simulated_search(tmp_path, outcome, recheck_fails: bool = True) -> CapacitySearch:
    """The search engine's loop with each step's run replaced by outcome(rate, producers, nth step
    at that rate and producer count) -> (passed, generator-limited)."""
    limits = slo_limits(["end_to_end_p99<50ms"])
    options = CapacityOptions(slo=("end_to_end_p99<50ms",), limits=limits,
                              search=SearchSettings(start_rate=1000, tolerance=0.05, recheck_fails=recheck_fails),
                              criteria=Criteria(),
                              step_s=1, warmup_s=0, max_time_s=10_000, max_producers=2)
    engine = CapacitySearch(Scenario.from_mapping({"name": "simulated", "topic": "simulated"}), options, tmp_path,
                            io.StringIO())
    seen: dict[tuple[float, int], int] = {}

    def step(broker, index, purpose, rate):
        key = (rate, engine.scaling.producers)
        seen[key] = seen.get(key, 0) + 1
        passed, limited = outcome(rate, engine.scaling.producers, seen[key])
        row = {"index": index, "purpose": purpose, "rate": rate, "producers": engine.scaling.producers, "wall_s": 1.0,
               "verdict": "pass" if passed else "fail", "harness_limited": limited}
        engine.steps.append(row)
        return row

    engine._step, engine._write = step, lambda: None
    engine._search(None, time.monotonic())
    return engine


def test_one_stalled_generator_step_does_not_double_the_producers_for_the_rest_of_the_search(tmp_path):
    """One producer holds up to 64,000 msg/s and cannot send 128,000; two producers share the cores
    with the broker and hold only up to 40,000. The first step at 32,000 stalls (the generator fell
    behind once): it runs again with one producer, and the answer is one producer's, not the 40,000
    of a search that went on with two."""
    def outcome(rate, producers, nth):
        if producers == 1:
            if rate == 32_000 and nth == 1:
                return False, True
            return rate <= 64_000, rate > 64_000
        return rate <= 40_000, False

    engine = _simulated_search(tmp_path, outcome)
    steps = [(row["rate"], row["producers"], row["verdict"]) for row in engine.steps]
    assert steps[5:8] == [(32_000, 1, "fail"), (32_000, 1, "pass"), (32_000, 1, "pass")], steps
    # 128,000 is the generator's limit twice: then, and only then, a second producer.
    assert [row["verdict"] for row in engine.steps if row["rate"] == 128_000] == ["fail", "harness-limit", "fail",
                                                                                   "fail"]
    # It failed with two producers as well: they did not help, and the rates below run with one.
    last_at_128k = max(index for index, row in enumerate(engine.steps) if row["rate"] == 128_000)
    assert all(row["producers"] == 1 for row in engine.steps[last_at_128k + 1:]), steps
    found = answer(engine.history)
    assert found.confirmed and 62_000 <= found.rate <= 64_000, steps
    printed = engine.out.getvalue()
    assert "the generator fell behind once: 32,000 msg/s runs again with 1 producer before any are added" in printed
    assert "128,000 msg/s failed with more producers too: back to 1 producer for the rest" in printed


def test_without_rechecks_one_generator_limited_step_adds_producers_at_once(tmp_path):
    def outcome(rate, producers, nth):
        limited = rate == 4_000 and producers == 1  # a generator-limited step is a failed one
        return rate <= 4_000 and not limited, limited

    checked = _simulated_search(tmp_path / "checked", outcome)
    assert [(row["rate"], row["producers"], row["verdict"]) for row in checked.steps][2:5] == [
        (4000, 1, "fail"), (4000, 1, "harness-limit"), (4000, 2, "pass")]
    unchecked = _simulated_search(tmp_path / "unchecked", outcome, recheck_fails=False)
    assert [(row["rate"], row["producers"], row["verdict"]) for row in unchecked.steps][2:4] == [
        (4000, 1, "harness-limit"), (4000, 2, "pass")]


def test_bisected_rates_read_as_round_numbers():
    history = search(13_333, SearchSettings(start_rate=1000, tolerance=0.02))
    assert all(t.rate == float(f"{t.rate:.3g}") for t in history)


# -- the command's input ------------------------------------------------------------------


def test_slo_takes_the_check_syntax_and_refuses_a_relative_check_in_one_line():
    limits = slo_limits(["end_to_end_p99<50ms", "service_time_p99_9<200ms,lost<=0"])
    assert [limit.describe() for limit in limits] == ["end_to_end_p99<50ms", "service_time_p99_9<200ms", "lost<=0"]
    with pytest.raises(UsageError, match=r"^--slo 'end_to_end_p99:\+25%': an SLO is an absolute limit"):
        slo_limits(["end_to_end_p99:+25%"])
    with pytest.raises(UsageError, match=r"^--slo 'end_to_end_p99<50': a latency limit needs a unit"):
        slo_limits(["end_to_end_p99<50"])


@pytest.mark.parametrize(("flags", "message"), [
    (["--step-s", "0"], "error: --step-s: 0.0 is out of range"),
    (["--min-rate", "5000"], "error: --min-rate: 5000.0 is out of range"),
    (["--slo", "p99<5"], "error: --slo 'p99<5': unknown metric 'p99'"),
])
def test_bad_flags_are_one_line_and_exit_2_before_any_broker_is_asked(flags, message, capsys, tmp_path):
    args = ["capacity", "steady-orders", "--bootstrap-servers", "127.0.0.1:1", "--broker", "external",
            "--results-dir", str(tmp_path), "--slo", "end_to_end_p99<50ms", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# -- the search folder without a broker -------------------------------------------------------


def capacity_folder(root, name: str, capacity: float) -> tuple:
    """A search folder as `bench capacity` writes it, from made-up steps against a system whose
    end-to-end p99 grows with the cube of the rate and is 45 ms at `capacity` msg/s."""
    from bench.capacity.document import capacity_document, step_row, write_capacity
    from bench.results.store import run_folder

    folder = run_folder(root, f"capacity-{name}", 1_764_000_000)
    history, rows = [], []
    for index, rate in enumerate((1000, 2000, 4000, 4000, 3000, 3500, 3500, 3000), start=1):
        result = step_result(rate, e2e_p99_us=int(45_000 * (rate / capacity) ** 3))
        judgement = judge_step(result, rate, E2E_50MS)
        rows.append(step_row(index, "raise", rate, 1, folder / "steps" / str(index), folder, result, judgement, 12.0))
        history.append(StepOutcome(rate, judgement.passed))
    document = capacity_document(run_id="r", scenario={"name": name, "partitions": 3}, fingerprint="f",
                                 started_at=1_764_000_000, ended_at=1_764_000_100, status="complete", failure=None,
                                 slo=["end_to_end_p99<50ms"], search={"step_s": 20, "warmup_s": 5}, steps=rows,
                                 found=answer(history), kind="end_to_end", first_step=None, warnings=[])
    write_capacity(folder, document)
    return folder, document


def test_report_redraws_a_search_folder_and_compare_overlays_two(tmp_path, capsys):
    first, document = capacity_folder(tmp_path, "a", 3200)
    second, _ = capacity_folder(tmp_path, "b", 1800)
    assert document["answer"]["rate"] == 3000 and document["answer"]["confirmed"]
    assert document["answer"]["failed_above"] == 3500
    assert document["answer"]["text"].startswith("max sustainable rate 3,000 msg/s (confirmed; achieved 3,000 msg/s)")
    assert main(["report", str(first)]) == 0
    assert capsys.readouterr().out == f"{first}: capacity.png, report.md, report.html\n"
    report = (first / "report.md").read_text()
    assert "| 6 | raise | 3,500 | 1 | 3,500 msg/s |" in report and "SLO end_to_end_p99<50ms: measured" in report
    out = tmp_path / "compare"
    assert main(["compare", str(first), str(second), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split()[:4] == [first.name, "end_to_end_p99<50ms", "3,000", "yes"]
    assert printed[2].split()[:4] == [second.name, "end_to_end_p99<50ms", "1,000", "no"]
    assert sorted(path.name for path in out.iterdir()) == ["compare.html", "compare.md", "compare_capacity.png"]


def test_a_capacity_search_and_a_run_do_not_compare(tmp_path, capsys):
    first, _ = capacity_folder(tmp_path, "a", 3200)
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text('{"schema_version": 4, "kind": "run"}')
    assert main(["compare", str(first), str(run), "--out", str(tmp_path / "c")]) == 2
    assert "is a 'run' result; a capacity search compares with capacity searches" in capsys.readouterr().err


@pytest.mark.parametrize(("e2e_p99_us", "limited_by", "ending"), [
    (5_000, "harness", "— the harness's limit (the generator, 1 producer process), not Kafka's"),
    (72_000, "harness and system", "— the generator (1 producer process) fell behind too: the harness may have set this limit"),
    (None, "system", "failed: SLO end_to_end_p99<50ms: measured 72 ms"),
])
def test_the_answer_says_whether_the_generator_or_the_system_set_the_limit(tmp_path, e2e_p99_us, limited_by, ending):
    from bench.capacity.document import answer_section, step_row

    failing = (step_result(2000, sent=1500, e2e_p99_us=e2e_p99_us) if e2e_p99_us is not None
               else step_result(2000, e2e_p99_us=72_000))
    steps = [(1000, step_result(1000)), (2000, failing), (2000, failing), (1000, step_result(1000))]
    rows, history = [], []
    for index, (rate, result) in enumerate(steps, start=1):
        judgement = judge_step(result, rate, E2E_50MS)
        rows.append(step_row(index, "raise", rate, 1, tmp_path / str(index), tmp_path, result, judgement, 10.0))
        history.append(StepOutcome(rate, judgement.passed))
    section = answer_section(answer(history), rows, "end_to_end")
    assert section["limited_by"] == limited_by
    assert section["text"].endswith(ending), section["text"]
    assert section["rate"] == 1000 and section["confirmed"] and section["failed_above"] == 2000
