"""The capacity search's logic, pure: whether one step (a measured run at one rate) passes, the
slope of the consumer lag over it, which rate to try next, and the answer. No I/O: the engine
(bench/capacity/) runs the steps and calls these, and the tests call them with made-up steps.

A step passes only if every SLO holds over its measured window, the generator kept up (it sent
the rate it was asked, on time), the consumer lag did not grow over the step and nothing was
lost or failed. A step the generator could not keep up with measured the harness, not Kafka:
it is `harness_limited`, and the engine retries it with more producer processes when it can.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.analysis.stats import GENERATOR_BEHIND_SEND_DELAY_P99_US
from bench.analysis.thresholds import Limit, evaluate_limits
from bench.results.metrics import METRICS
from bench.results.window import Slope, lag_slope, series_samples

# A generator that keeps up sends the rate it was asked in every measured second (a scheduled
# sender is exact to a message per second); below this share of it, it fell behind.
MIN_SENT_FRACTION = 0.98
# The broker keeps up when it acknowledges what was sent: acks lag sends by the latency only.
MIN_ACKED_FRACTION = 0.95
# Consumer lag may grow by at most this share of the asked rate per second over a step...
LAG_SLOPE_FRACTION = 0.01
# ... and never fails a step below this many messages per second of growth, or when the growth
# is within this many standard errors of the slope of zero (a few noisy samples of a short step).
LAG_SLOPE_FLOOR = 10.0
LAG_SLOPE_SIGNIFICANCE = 2.0
# The verdict kind a resources sampler gives a run whose producer process was saturated.
GENERATOR_SATURATED = "generator-saturated"


@dataclass(frozen=True)
class Criteria:
    """What a step must show besides the SLOs."""

    send_delay_limit_us: float = GENERATOR_BEHIND_SEND_DELAY_P99_US
    lag_slope_fraction: float = LAG_SLOPE_FRACTION


def lag_grows(slope: Slope, rate: float, fraction: float = LAG_SLOPE_FRACTION) -> bool:
    """Whether a lag slope says the consumer fell behind at this rate: faster than `fraction` of
    the rate (at least LAG_SLOPE_FLOOR msg/s), and clearly more than its own noise."""
    if slope.per_s <= max(fraction * rate, LAG_SLOPE_FLOOR):
        return False
    return slope.standard_error is None or slope.per_s > LAG_SLOPE_SIGNIFICANCE * slope.standard_error


@dataclass(frozen=True)
class Judgement:
    """One step's verdict: passed, and why not (`reasons`); `harness_limited` when the generator,
    not Kafka, could not keep up."""

    passed: bool
    reasons: tuple[str, ...]
    harness_limited: bool
    sent_per_s: float | None
    lag_slope: Slope | None
    harness_only: bool = False  # every reason is the generator's: the system under test was not the limit


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def judge_step(result: Mapping[str, Any], rate: float, limits: Sequence[Limit], criteria: Criteria = Criteria()) -> Judgement:
    """Whether a step's result (a `bench run` result dict at `rate`) passes; every reason it does not."""
    reasons: list[str] = []
    harness: list[str] = []
    failure = result.get("failure") or "no reason recorded"
    if result.get("status") != "complete":
        reasons.append(f"run {result.get('status')}: {failure}")
    counts = result.get("counts") or {}
    for name, words in (("failed", "deliveries failed"), ("lost", "acked orders lost")):
        if counts.get(name) is None:
            reasons.append(f"{name} not measured: {(result.get('counts_not_measured') or {}).get(name, 'no reason')}")
        elif counts[name] and f"{counts[name]:,} {words}" not in failure:  # said once
            reasons.append(f"{counts[name]:,} {words}")
    for outcome in evaluate_limits(limits, result):
        if not outcome.met:
            reasons.append(f"SLO {outcome.describe()}")
    sent = _mean(series_samples(result, "sent"))
    acked = (result.get("throughput") or {}).get("acked_per_s")
    if sent is None:
        reasons.append("no measured second (is the step longer than its warm-up?)")
    elif sent < MIN_SENT_FRACTION * rate:
        harness.append(f"generator could not keep up: sent {sent:,.0f} msg/s of {rate:,.0f} asked")
    send_delay = ((result.get("latency_us") or {}).get("send_delay") or {}).get("p99")
    if send_delay is not None and send_delay > criteria.send_delay_limit_us:
        harness.append(f"generator fell behind: {METRICS['send_delay_p99'].label} {send_delay / 1000:.1f} ms "
                       f"> {criteria.send_delay_limit_us / 1000:g} ms")
    for verdict in result.get("verdicts") or []:
        if verdict.get("kind") == GENERATOR_SATURATED:
            harness.append(verdict.get("text") or "generator saturated: no detail")  # its text names it
    if acked is not None and sent is not None and acked < MIN_ACKED_FRACTION * sent:
        reasons.append(f"broker acknowledged {acked:,.0f} msg/s of {sent:,.0f} sent")
    slope = lag_slope(result)
    if slope is None:
        reasons.append("consumer lag not measured over the step")
    elif lag_grows(slope, rate, criteria.lag_slope_fraction):
        reasons.append(f"consumer lag grew {slope.per_s:,.0f} msg/s over the step")
    all_reasons = tuple(harness + reasons)
    return Judgement(not all_reasons, all_reasons, bool(harness), sent, slope, bool(harness) and not reasons)


# ---------------------------------------------------------------------------------------------
# The search


@dataclass(frozen=True)
class SearchSettings:
    start_rate: float = 1000.0
    min_rate: float = 100.0
    max_rate: float | None = None
    factor: float = 2.0       # raise (and lower) by this factor until the first fail (pass)
    tolerance: float = 0.05   # bisect until (first fail - last pass) / first fail is within this
    # A failed step is run again before its rate counts as failed: one stalled step on a shared
    # machine (a GC pause, a neighbour) fails a rate that holds, and would cap the answer.
    recheck_fails: bool = True


@dataclass(frozen=True)
class StepOutcome:
    """What the search keeps of one judged step."""

    rate: float
    passed: bool


PASSED, FAILED, UNDECIDED = "passed", "failed", "undecided"


def rate_verdict(passes: int, fails: int, recheck_fails: bool = True) -> str:
    """A rate's verdict from its steps. Rechecking, the majority decides once two steps agree: a
    single failed step is undecided (run it again), and so is one pass against one fail. Without
    rechecks any failed step fails the rate."""
    if not fails:
        return PASSED
    if not recheck_fails or (fails >= 2 and fails > passes):
        return FAILED
    return PASSED if passes >= 2 and passes > fails else UNDECIDED


def adds_producers(limited_steps: int, producers: int, max_producers: int, recheck_fails: bool = True) -> bool:
    """Is a rate the generator could not keep up with retried with more producer processes now?
    limited_steps: its generator-limited steps at this rate and producer count, this one included.
    Rechecking, one such step is treated as any failed step (a stall may have caused it: the rate
    runs again with the same producers) and producers are added once it repeats; a search that
    added them after one stall would judge every later rate with producers competing for the
    cores, and answer lower than one that did not."""
    return producers < max_producers and (limited_steps >= 2 or not recheck_fails)


RETRY, LIMITED_ONCE, REVERTED = "retry", "limited-once", "reverted"


@dataclass
class ProducerScaling:
    """How many producer processes the search's steps use. A rate the generator cannot reach
    (adds_producers) is retried with twice the producers; its steps with fewer do not count. When
    that rate fails with more producers too, they did not help (on a small machine they compete
    with the broker for the cores): the search goes back to the producers it had, for good, so the
    rates below are judged as they were before."""

    producers: int
    max_producers: int
    recheck_fails: bool = True
    limited: dict[tuple[float, int], list[StepOutcome]] = field(default_factory=dict)
    scaled: tuple[float, int] | None = None  # (rate, producers before) of the last retry with more
    settled: bool = False  # more producers did not help: no more are added

    def after_step(self, outcome: StepOutcome, harness_limited: bool,
                   history: Sequence[StepOutcome]) -> tuple[list[StepOutcome], str | None]:
        """(the search's history with this step accounted for, what changed: RETRY, LIMITED_ONCE,
        REVERTED or None)."""
        strikes = self.limited.setdefault((outcome.rate, self.producers), [])
        if harness_limited:
            strikes.append(outcome)
        can_add = not self.settled and self.producers < self.max_producers
        if harness_limited and can_add and adds_producers(len(strikes), self.producers, self.max_producers,
                                                          self.recheck_fails):
            self.scaled = (outcome.rate, self.producers)
            self.producers = min(self.producers * 2, self.max_producers)
            return [step for step in history if not any(step is strike for strike in strikes)], RETRY
        history = [*history, outcome]
        if self.scaled is not None and outcome.rate == self.scaled[0]:
            at_rate = [step.passed for step in history if step.rate == outcome.rate]
            if rate_verdict(at_rate.count(True), at_rate.count(False), self.recheck_fails) == FAILED:
                self.producers, self.scaled, self.settled = self.scaled[1], None, True
                return history, REVERTED
        return history, LIMITED_ONCE if harness_limited and can_add else None


@dataclass(frozen=True)
class Bracket:
    """The highest rate that passed below the lowest that failed, each judged by rate_verdict;
    `undecided`: the lowest rate whose steps do not agree yet."""

    passed: float | None
    failed: float | None
    confirmations: int  # passing steps at `passed`
    undecided: float | None = None


def bracket(history: Sequence[StepOutcome], recheck_fails: bool = True) -> Bracket:
    tallies: dict[float, list[int]] = {}
    for step in history:
        tallies.setdefault(step.rate, [0, 0])[0 if step.passed else 1] += 1
    verdicts = {rate: rate_verdict(passes, fails, recheck_fails) for rate, (passes, fails) in tallies.items()}
    failed = min((rate for rate, verdict in verdicts.items() if verdict == FAILED), default=None)
    passing = [rate for rate, verdict in verdicts.items() if verdict == PASSED and (failed is None or rate < failed)]
    best = max(passing, default=None)
    undecided = min((rate for rate, verdict in verdicts.items() if verdict == UNDECIDED), default=None)
    return Bracket(best, failed, tallies[best][0] if best is not None else 0, undecided)


@dataclass(frozen=True)
class Next:
    purpose: str  # start | raise | lower | bisect | confirm | recheck
    rate: float


def _round_rate(rate: float) -> float:
    """Rates to three significant figures, so the table reads 12,500 and not 12,437.5."""
    if rate <= 0:
        return rate
    digits = 2 - int(math.floor(math.log10(rate)))
    return float(round(rate, digits))


def next_step(history: Sequence[StepOutcome], settings: SearchSettings) -> Next | None:
    """The next rate to try, or None when the search is over (converged and confirmed, or no
    rate down to min_rate passed). A rate whose steps disagree is run again first."""
    if not history:
        return Next("start", settings.start_rate)
    found = bracket(history, settings.recheck_fails)
    if found.undecided is not None:
        return Next("recheck", found.undecided)
    if found.passed is None:
        lower = _round_rate(found.failed / settings.factor)
        return Next("lower", lower) if lower >= settings.min_rate else None
    if found.failed is None:
        if settings.max_rate is not None and found.passed >= settings.max_rate:
            return _confirm(found)
        higher = _round_rate(found.passed * settings.factor)
        return Next("raise", min(higher, settings.max_rate) if settings.max_rate is not None else higher)
    middle = _round_rate((found.passed + found.failed) / 2)
    if (found.failed - found.passed) / found.failed <= settings.tolerance or middle in (found.passed, found.failed):
        return _confirm(found)
    return Next("bisect", middle)


def _confirm(found: Bracket) -> Next | None:
    return None if found.confirmations >= 2 else Next("confirm", found.passed)


@dataclass(frozen=True)
class Answer:
    rate: float | None        # the highest rate that passed below every failed one, None if none
    confirmed: bool           # it passed again when run a second time
    failed_above: float | None  # the lowest failed rate (None: none failed)


def answer(history: Sequence[StepOutcome], recheck_fails: bool = True) -> Answer:
    found = bracket(history, recheck_fails)
    return Answer(found.passed, found.confirmations >= 2, found.failed)
