"""`bench capacity`'s engine: the search over rates, each step one measured run of the core
(`run_on_broker`, the same run as `bench run`, into the search folder's steps/), judged and
chosen by the pure logic of bench/analysis/capacity.py.

The broker is ensured once for the whole search. capacity.json is rewritten after every step.
Ctrl+C or SIGTERM ends the search with what it measured (status interrupted); `max_time_s`
ends it before a step that would not fit.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.analysis.capacity import (
    LIMITED_ONCE,
    RETRY,
    REVERTED,
    Criteria,
    ProducerScaling,
    SearchSettings,
    StepOutcome,
    answer,
    judge_step,
    next_step,
)
from bench.analysis.thresholds import Limit
from bench.broker.ensure import BrokerInUse, ensure_broker
from bench.capacity.document import capacity_document, focus_latency, step_line, step_row, write_capacity
from bench.core.clients import check_client_settings
from bench.core.runner import run_on_broker
from bench.core.scenario import Scenario
from bench.results.fingerprint import fingerprint_of
from bench.results.store import check_results_root, run_folder
from streamstore.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION, EXIT_RUN_FAILED, RunFailed, UsageError

# Before the first step, a step is guessed to take this long beyond its producing seconds
# (processes starting, the drain, the result); afterwards the last step's wall time is used.
STEP_OVERHEAD_GUESS_S = 10.0


@dataclasses.dataclass(frozen=True)
class CapacityOptions:
    slo: tuple[str, ...]
    limits: tuple[Limit, ...]
    search: SearchSettings
    criteria: Criteria
    step_s: float
    warmup_s: float
    max_time_s: float
    max_producers: int
    verbose: bool = False
    # A Prometheus endpoint with the broker's own metrics (--broker-metrics-url), read by each step.
    broker_metrics_url: str | None = None

    def describe(self) -> dict[str, Any]:
        """The search's settings as capacity.json keeps them."""
        return {**dataclasses.asdict(self.search), **dataclasses.asdict(self.criteria), "step_s": self.step_s,
                "warmup_s": self.warmup_s, "max_time_s": self.max_time_s, "max_producers": self.max_producers}




def scaling_line(change: str, rate: float, producers: int) -> str:
    """The console line for a change of the search's producer processes (ProducerScaling)."""
    count = f"{producers} producer{'s' if producers > 1 else ''}"
    return {RETRY: f"         the generator set this limit: retrying {rate:,.0f} msg/s with {count}",
            LIMITED_ONCE: f"         the generator fell behind once: {rate:,.0f} msg/s runs again with {count} "
                          "before any are added",
            REVERTED: f"         {rate:,.0f} msg/s failed with more producers too: back to {count} for the rest"}[change]


class CapacitySearch:
    def __init__(self, base: Scenario, options: CapacityOptions, results_root: Path, out: TextIO):
        if base.faults:
            raise UsageError("capacity: the scenario has faults; a capacity search measures the system without them")
        self.base, self.options, self.out = base, options, out
        self.kind = focus_latency(options.limits)
        self.started_at = time.time()
        self.run_id = uuid.uuid4().hex
        check_results_root(results_root)
        self.folder = run_folder(results_root, f"capacity-{base.name}", self.started_at)
        self.steps_root = self.folder / "steps"
        self.steps: list[dict[str, Any]] = []
        self.history: list[StepOutcome] = []
        self.scaling = ProducerScaling(base.producers, options.max_producers, options.search.recheck_fails)
        self.first_result: dict[str, Any] | None = None
        self.status, self.failure = "running", None
        self.signalled = self.recording = False
        self.warnings: list[str] = []

    # -- the loop ---------------------------------------------------------------------------

    def run(self, bootstrap_servers: str, broker_mode: str, keep_broker: bool) -> tuple[int, Path, dict[str, Any]]:
        check_client_settings(self.base, bootstrap_servers)
        # Ctrl+C and SIGTERM between steps end the search, as they end a step; while a finished
        # step is being recorded they are only noted, and act once its row is in capacity.json.
        # An inherited SIG_IGN for SIGINT (a background job) stays, as Unix intends.
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_signal)}
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_signal)
        began = time.monotonic()
        try:
            with ensure_broker(bootstrap_servers, broker_mode, keep=keep_broker,
                               client_settings=self.base.producer_config, announce=self.say,
                               metrics_url=self.options.broker_metrics_url) as broker:
                self.say(f"capacity {self.run_id[:8]}: {self.base.name} -> {self.base.topic} at {broker.describe('search')}, "
                         f"SLO {' and '.join(self.options.slo)}, steps of {self.options.step_s:g} measured s "
                         f"(+{self.options.warmup_s:g} s warm-up), at most {self.options.max_time_s:g} s")
                self._search(broker, began)
        except KeyboardInterrupt:
            self.status = "interrupted"
            self.say("interrupted: the search ends with the steps measured so far")
        except RunFailed as error:
            self.status, self.failure = "failed", str(error)
        except UsageError as error:
            if not self.steps:  # bad input found before any step: no folder left behind
                shutil.rmtree(self.folder, ignore_errors=True)
                raise
            self.status, self.failure = "failed", str(error)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self._finish()

    def _on_signal(self, signum, frame) -> None:
        self.signalled = True
        if not self.recording:
            raise KeyboardInterrupt

    def _search(self, broker: BrokerInUse, began: float) -> None:
        plan = next_step(self.history, self.options.search)
        retry = False
        while plan is not None:
            elapsed = time.monotonic() - began
            if elapsed + self._next_step_guess() > self.options.max_time_s:
                self.status = "max-time"
                self.say(f"--max-time {self.options.max_time_s:g} s: no time for another step after {elapsed:.0f} s")
                return
            purpose = "retry" if retry else plan.purpose
            row = self._step(broker, len(self.steps) + 1, purpose, plan.rate)
            if row["verdict"] == "interrupted":
                raise KeyboardInterrupt
            self.history, change = self.scaling.after_step(StepOutcome(plan.rate, row["verdict"] == "pass"),
                                                           row["harness_limited"], self.history)
            if change is not None:
                self.say(scaling_line(change, plan.rate, self.scaling.producers))
            retry = change == RETRY
            if retry:
                row["retried_with_producers"] = self.scaling.producers
                row["verdict"] = "harness-limit"
            else:
                plan = next_step(self.history, self.options.search)
            self._write()
            self.recording = False
            if self.signalled:
                raise KeyboardInterrupt
        self.status = "complete"

    def _next_step_guess(self) -> float:
        if self.steps:
            return self.steps[-1]["wall_s"]
        return self.options.warmup_s + self.options.step_s + 1 + STEP_OVERHEAD_GUESS_S

    def _step(self, broker: BrokerInUse, index: int, purpose: str, rate: float) -> dict[str, Any]:
        options = self.options
        scenario = dataclasses.replace(self.base, rate=rate, producers=self.scaling.producers, phases=(),
                                       warmup_s=options.warmup_s, duration_s=options.warmup_s + options.step_s + 1)
        self.say(f"step {index:>2} ({purpose}): {rate:,.0f} msg/s, {self.scaling.producers} producer"
                 f"{'s' if self.scaling.producers > 1 else ''} ...")
        # A run's own console (a line a second) shows only with --verbose or on a terminal,
        # where it rewrites one line.
        run_out = self.out if options.verbose or self.out.isatty() else io.StringIO()
        started = time.monotonic()
        code, folder, result = run_on_broker(scenario, broker, self.steps_root, run_out)
        self.recording = True  # until the step's row is written (_search)
        wall_s = time.monotonic() - started
        self.first_result = self.first_result or result
        judgement = judge_step(result, rate, options.limits, options.criteria)
        row = step_row(index, purpose, rate, self.scaling.producers, folder, self.folder, result, judgement, wall_s)
        if code == EXIT_INTERRUPTED:  # in the table with what it measured, judged neither way
            row.update(verdict="interrupted", harness_limited=False, reasons=["interrupted (Ctrl+C or SIGTERM)"])
        self.steps.append(row)
        if row["verdict"] != "interrupted":
            self.say(step_line(row, self.kind))
        return row

    # -- the result -------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        found = answer(self.history, self.options.search.recheck_fails)
        warnings = list(self.warnings)
        if self.status == "max-time" and found.rate is not None and not found.confirmed:
            warnings.append("--max-time ended the search before the answer was confirmed")
        # The scenario as each step ran it, less the rate the search chose step by step.
        scenario = dataclasses.replace(self.base, warmup_s=self.options.warmup_s,
                                       duration_s=self.options.warmup_s + self.options.step_s + 1).to_dict()
        del scenario["rate"]
        return capacity_document(run_id=self.run_id, scenario=scenario, fingerprint=fingerprint_of(scenario),
                                 started_at=self.started_at, ended_at=time.time(), status=self.status,
                                 failure=self.failure, slo=self.options.slo, search=self.options.describe(),
                                 steps=self.steps, found=found, kind=self.kind, first_step=self.first_result,
                                 warnings=warnings)

    def _write(self) -> dict[str, Any]:
        document = self.document()
        write_capacity(self.folder, document)
        return document

    def _finish(self) -> tuple[int, Path, dict[str, Any]]:
        document = self._write()
        if self.status == "interrupted":
            return EXIT_INTERRUPTED, self.folder, document
        if self.status == "failed":
            return EXIT_RUN_FAILED, self.folder, document
        return (EXIT_OK if document["answer"]["rate"] is not None else EXIT_REGRESSION), self.folder, document

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def run_capacity(base: Scenario, options: CapacityOptions, bootstrap_servers: str, results_root: Path,
                 broker_mode: str = "auto", keep_broker: bool = False,
                 out: TextIO | None = None) -> tuple[int, Path, dict[str, Any]]:
    """The whole search; (exit code, search folder, capacity.json as a dict). Exit 0 with an
    answer, 1 when no tested rate met the SLO, 3 when a step could not run, 130 interrupted."""
    search = CapacitySearch(base, options, Path(results_root), out if out is not None else sys.stdout)
    return search.run(bootstrap_servers, broker_mode, keep_broker)


def step_folders(document: dict[str, Any], folder: Path) -> Sequence[Path]:
    """The run folders of a search's steps (for tests and reports)."""
    return [folder / row["run_folder"] for row in document["steps"] if row.get("run_folder")]
