"""One measured run of a scenario (`bench run`, `bench chaos`, `bench calibrate`): producer
process(es) and the tracker process, coordinated from the calling process, which records,
shows progress and writes the result folder.

Processes (spawned: librdkafka threads and fork do not mix):
  producer i  bench/core/producer.py: open loop at rate/producers, or flat out at rate 0
  tracker     bench/core/tracker.py: end-to-end latency, lag each second, the audit's input
  coordinator here: folds their reports (bench/core/merge.py), prints progress, lets the
              tracker drain after the producers finish, then audits (bench/core/audit.py)
              and writes one RunResult (bench/core/result.py).

Public entry points: `run_scenario`, and `run_on_broker` for an engine that holds the broker.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.broker.ensure import BrokerInUse, ensure_broker, no_embedded_reason
from bench.broker.fault_spec import broker_faults
from bench.broker.faults import Fault, parse_faults
from bench.core.audit import OFFSET_COUNTS, OFFSETS, audit_method
from bench.core.backlog import BacklogStart
from bench.core.clients import check_client_settings, high_watermarks, scenario_watermarks
from bench.core.fault_watch import FaultWatch
from bench.core.group_protocol import check_protocol_support
from bench.core.groups import (
    GroupMeasurements,
    consumer_slots,
    drain_ends,
    fans_out,
    start_drain,
)
from bench.core.merge import RunMeasurements
from bench.core.processes import RunProcesses, consumer_event
from bench.core.producer import CHILD_START_TIMEOUT_S, INTERRUPT_DRAIN_S
from bench.core.progress import Progress, describe_run, second_line
from bench.core.protocol import BacklogBuilt, ConsumerSlot, Drain, producer_name, tracker_name
from bench.core.resources import RunResources, Watched, fixed_pid, this_process
from bench.core.run_modes import BOTH, CONSUME_ONLY, PRODUCE_ONLY, check_mode, mode_section
from bench.core.run_topic import consume_only_start, prepare_topic
from bench.core.run_writer import RunTimes, write_run
from bench.core.scenario import Scenario
from bench.core.tracker import tracker_main
from bench.results.environment import capture_environment
from bench.results.store import DEFAULT_RESULTS_ROOT, check_results_root
from streamstore.errors import RunFailed, UsageError

NS_PER_S = 1_000_000_000
# t0 is set this far in the future, so every producer starts on the same schedule.
START_DELAY_NS = 200_000_000


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, turned into the same path as Ctrl+C (before producing began: exit 130, no result)."""


def _raise_interrupted(signum, frame) -> None:
    raise _Interrupted()




class _Run:
    def __init__(self, scenario: Scenario, broker: BrokerInUse, results_root: Path, out: TextIO,
                 faults: Sequence[Fault] = (), sample_resources: bool = True, mode: str = BOTH,
                 consume_from: str = "end"):
        self.scenario = scenario
        self.mode, self.consume_from = mode, consume_from
        self.audited_to: dict[int, int] | None = None  # consume-only: where the audit reads to
        self.broker = broker
        self.bootstrap_servers = broker.bootstrap_servers
        self.results_root = Path(results_root)
        self.progress = Progress(out)
        self.run_id = uuid.uuid4()
        self.method = OFFSETS if mode == CONSUME_ONLY else audit_method(scenario)
        self.slots, self.measured = _measurements(scenario, self.run_id.hex, mode)
        # Consumer processes in the order of their control queues (added ones appended).
        self.slot_order = [(slot.group, slot.consumer) for slot in self.slots]
        self.interrupted = False
        self.signalled = False  # Ctrl+C or SIGTERM arrived while producing or draining
        self.events: list[dict[str, Any]] = []
        self.shown_second = -1
        self.t0_ns: int | None = None
        self.faults = tuple(faults)
        self.fault_watch = FaultWatch(scenario, broker, self.faults) if faults else None
        if self.fault_watch is not None:
            self.fault_watch.consumer_action = lambda step: consumer_event(self.processes, self.slots, self.slot_order,
                                                                           step, self.t0_ns)
        self.resources: RunResources | None = None
        self.sample_resources = sample_resources
        # Measured once, at run start (the broker's facts were measured by ensure_broker).
        self.environment = capture_environment()

    def execute(self) -> tuple[int, Path, dict[str, Any]]:
        if self.mode == CONSUME_ONLY:
            self.scenario, start_offsets, self.topic_settings, self.topic_settings_unread = consume_only_start(
                self.scenario, self.bootstrap_servers, self.consume_from)
        else:
            start_offsets, self.topic_settings, self.topic_settings_unread = prepare_topic(self.scenario,
                                                                                          self.bootstrap_servers)
        self.start_offsets = start_offsets
        self.processes = processes = RunProcesses.spawn(self.scenario, self.bootstrap_servers, self.run_id.bytes,
                                                        start_offsets, self.slots, tracker_main, self.mode)
        self.inbox = processes.inbox
        self.backlog = BacklogStart(self.scenario, processes.catch_up_ns) if self.scenario.backlog else None
        previous = {signal.SIGINT: signal.getsignal(signal.SIGINT),
                    signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_interrupted)}
        try:
            for child in processes.children:
                child.start()
            self.inbox.wait_ready(self.measured.reported_through, CHILD_START_TIMEOUT_S,
                                  [child.sentinel for child in processes.children])
            # From here on a signal is only noted and `_collect` acts on it (a KeyboardInterrupt could
            # leave the report queue's lock held). An inherited SIG_IGN for SIGINT stays, as Unix intends.
            for signum, handler in previous.items():
                if not (signum == signal.SIGINT and handler is signal.SIG_IGN):
                    signal.signal(signum, self._note_signal)
            processes.t0_ns.value = self.t0_ns = time.perf_counter_ns() + START_DELAY_NS
            self.started_at = time.time() + START_DELAY_NS / NS_PER_S
            self.resources = _watch_resources(processes, self.broker, self.t0_ns) if self.sample_resources else None
            processes.start.set()
            self._produce()
            self._end_faults()
            if self.measured.failure is None and processes.later:  # produce-only: the audit reads afterwards
                self._event("audit", "producing ended: the tracker starts reading the topic for the audit")
                processes.start_later(self.slots, self.measured.handle)
            if self.measured.failure is None:
                self._drain()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._end_faults()
            processes.stop_all()
            if self.resources is not None:
                self.resources.stop()
            if self.fault_watch is not None:
                self.fault_watch.stop()
            self.progress.end_line()
        return self._write()

    def _produce(self) -> None:
        self.events += phase_events(self.scenario)
        if self.fault_watch is not None:
            self.fault_watch.start(self.t0_ns, self.processes.outage)
        self.progress.message(
            f"run {self.run_id.hex[:8]}: {self.scenario.name} -> {self.scenario.topic} at {self.bootstrap_servers}, "
            + f"{describe_run(self.scenario, self.mode, self.consume_from)}, {self.scenario.duration_s:g} s "
              f"(warm-up {self.scenario.warmup_s:g} s)"
            + (f", faults {' '.join(str(f) for f in sorted(self.faults, key=lambda f: f.at_s))}" if self.faults else ""))
        if self.mode == CONSUME_ONLY:
            end_ns = self.t0_ns + int(self.scenario.duration_s * NS_PER_S)
            self._collect(lambda: time.perf_counter_ns() >= end_ns)
        else:
            self._collect(lambda: len(self.measured.producers) == self.scenario.producers)

    def _drain(self) -> None:
        acked = sum(outcome.acked for outcome in self.measured.producers.values())
        reconnect_s = self.fault_watch.reconnect_s() if self.fault_watch is not None else 0.0
        drain_s, idle, detail = _drain_plan(self.scenario, self.mode, self.interrupted, acked, reconnect_s)
        self._event("drain", detail)
        ends = drain_ends(self.scenario, self.bootstrap_servers, self.start_offsets, self.measured)
        target, self.audited_to = _drain_target(self.scenario, self.bootstrap_servers, self.method, self.mode,
                                                self.start_offsets, self.measured)
        self._collect(start_drain(self.measured, self.processes.controls, Drain(target, drain_s, idle, reconnect_s), ends))

    def _end_faults(self) -> None:
        """End the current fault: the broker is up again before the drain."""
        if self.fault_watch is not None:
            self.fault_watch.end()
            if self.fault_watch.error is not None and self.measured.failure is None:
                self.measured.failure = self.fault_watch.error

    def _note_signal(self, signum, frame) -> None:
        self.signalled = True

    def _collect(self, done) -> None:
        """Handle reports until done(); after Ctrl+C/SIGTERM, stop producing and drain briefly."""
        while not done() and self.measured.failure is None:
            if self.signalled and not self.interrupted:
                self.interrupted = True
                self.processes.stop.set()
                self._event("interrupted", "stopped producing; draining briefly")
                self.progress.message("interrupted: stopping producers, draining briefly (result marked interrupted)")
            message = self.inbox.get(0.5)
            if message is None:
                self.measured.failure = self.measured.failure or self.processes.death()
                continue
            self.measured.handle(message)
            if isinstance(message, BacklogBuilt) and (started := self.backlog.built(message, self.t0_ns, self.measured)):
                self._event("catch-up", started)
                self.progress.message(started)
            self._show_progress()
        if self.measured.failure is not None:
            self.processes.stop.set()

    def _show_progress(self) -> None:
        through = self.measured.closed_through()
        if through > self.shown_second:
            self.shown_second = through
            self.progress.update(second_line(self.measured.recorder, self.scenario, through))

    def _event(self, kind: str, detail: str) -> None:
        t_s = (time.perf_counter_ns() - self.t0_ns) / NS_PER_S if self.t0_ns else 0.0
        self.events.append({"t_s": round(t_s, 3), "kind": kind, "detail": detail})

    def _write(self) -> tuple[int, Path, dict[str, Any]]:
        return write_run(self.scenario, self.broker, self.results_root, self.run_id.hex, self.measured, self.method,
                         RunTimes(self.started_at, time.time(), self.t0_ns), interrupted=self.interrupted,
                         environment=self.environment, topic_settings=(self.topic_settings, self.topic_settings_unread),
                         start_offsets=self.start_offsets, events=self.events, fault_watch=self.fault_watch,
                         resources=self.resources, backlog=self.backlog,
                         mode=mode_section(self.mode, self.consume_from, self.start_offsets, self.audited_to))


def phase_events(scenario: Scenario) -> list[dict[str, Any]]:
    """The phases' starts as events, planned, so plots can mark the steps."""
    events, phase_start_s = [], 0.0
    for phase in scenario.phases:
        events.append({"t_s": phase_start_s, "kind": "phase", "detail": f"{phase.rate:,.0f} msg/s for {phase.duration_s:g} s"})
        phase_start_s += phase.duration_s
    return events


def _drain_plan(scenario: Scenario, mode: str, interrupted: bool, acked: int, reconnect_s: float) -> tuple[float, bool, str]:
    """(seconds the drain waits, whether they count from the last progress, its event's detail)."""
    if interrupted:
        return INTERRUPT_DRAIN_S, False, f"waiting up to {INTERRUPT_DRAIN_S:g} s for the tracker to consume {acked:,} acked orders"
    drain_s = scenario.drain_timeout_s
    first = f"; {drain_s + reconnect_s:g} s for the first, as it reconnects to a restarted broker" if reconnect_s else ""
    what = "read to the topic's end offsets" if mode == CONSUME_ONLY else f"consume {acked:,} acked orders"
    return drain_s, True, f"waiting for the tracker to {what} (it gives up after {drain_s:g} s without progress{first})"


def _drain_target(scenario: Scenario, bootstrap_servers: str, method: str, mode: str, start_offsets: dict[int, int],
                  measured: RunMeasurements) -> tuple[int | dict[int, int], dict[int, int] | None]:
    """What the tracker drains to, and (consume-only) the end offsets the audit reads to. With the
    counts audit no report names an acked offset (and a consume-only run has none at all): the
    tracker reads to the end of every partition that grew since the run began, by the broker's
    offsets now; a consume-only run's audit holds the reads against those offsets."""
    if method != OFFSET_COUNTS and mode != CONSUME_ONLY:
        return measured.drain_target(method, scenario.isolation_level == "read_committed"), None
    try:
        ends = high_watermarks(scenario_watermarks(scenario, bootstrap_servers))
    except RunFailed as error:
        measured.failure = measured.failure or f"cannot read where the tracker must drain to: {error}"
        return {}, None
    target = {p: end for p, end in ends.items() if end > start_offsets.get(p, 0)}
    if mode != CONSUME_ONLY:
        return target, None
    measured.audit_within({p: (start_offsets.get(p, 0), end) for p, end in target.items()})
    return target, ends


def _measurements(scenario: Scenario, run_id: str, mode: str) -> tuple[list[ConsumerSlot], RunMeasurements]:
    """The run's consumer processes (bench/core/groups.py) and what folds every child's reports
    (the children that report while producing: no tracker in a produce-only run)."""
    slots = consumer_slots(scenario, run_id)
    reporters = [*(tracker_name(s.group, s.consumer) for s in slots if mode != PRODUCE_ONLY),
                 *map(producer_name, range(0 if mode == CONSUME_ONLY else scenario.producers))]
    # With a backlog the warm-up counts from the consumers' start (set then): until then, all of it.
    warmup_s = math.inf if scenario.backlog else scenario.warmup_s
    measured = RunMeasurements(warmup_s, reporters, GroupMeasurements(slots, warmup_s) if fans_out(scenario) else None)
    measured.recorder.produced = mode != CONSUME_ONLY
    return slots, measured


def _watch_resources(processes: RunProcesses, broker: BrokerInUse, t0_ns: int) -> RunResources:
    """CPU and RSS of every process of the run each second, sampled in the coordinator
    (bench/core/resources.py)."""
    children = [Watched(child.name.removeprefix("bench-"), "tracker" if child.name.startswith("bench-tracker") else "producer",
                        fixed_pid(child.pid), python=True) for child in processes.children]
    return RunResources.started([*children, this_process()], broker.observed_embedded, t0_ns, broker.metrics_url)


def run_scenario(
    scenario: Scenario,
    bootstrap_servers: str,
    results_root: str | os.PathLike = DEFAULT_RESULTS_ROOT,
    broker_mode: str = "auto",
    keep_broker: bool = False,
    out: TextIO | None = None,
    broker_state_dir: str | os.PathLike | None = None,
    sample_resources: bool = True,
    broker_metrics_url: str | None = None,
    mode: str = BOTH,
    consume_from: str = "end",
) -> tuple[int, Path, dict[str, Any]]:
    """Run one scenario end to end; returns (exit code, run folder, result dict).

    The exit code is 0 (complete), 3 (deliveries failed, orders lost, a process died) or 130
    (interrupted); the result folder is written in every case once producing has started.
    Set-up problems (bad topic, broker unreachable) raise UsageError / RunFailed instead.
    sample_resources=False leaves out the resource sampler (to measure what it costs).
    broker_metrics_url: a Prometheus endpoint with the broker's own metrics (an external broker's).
    mode: BOTH, PRODUCE_ONLY or CONSUME_ONLY (bench/core/run_modes.py); consume_from: where a
    consume-only run starts, "end" or "beginning".
    """
    out = out if out is not None else sys.stdout
    parse_faults(scenario.faults)  # a bad fault is one line before any broker starts
    check_mode(scenario, mode)
    check_client_settings(scenario, bootstrap_servers)
    check_results_root(results_root)
    # The scenario's client settings (SASL, SSL) also reach the broker checks.
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    with ensure_broker(bootstrap_servers, broker_mode, keep=keep_broker, state_dir=broker_state_dir,
                       client_settings=scenario.producer_config, announce=say, metrics_url=broker_metrics_url) as broker:
        if broker.started_here:
            say(f"broker {broker.describe('run')}")
        return run_on_broker(scenario, broker, results_root, out, broker_state_dir, sample_resources, mode, consume_from)


def run_on_broker(scenario: Scenario, broker: BrokerInUse, results_root: str | os.PathLike, out: TextIO,
                  broker_state_dir: str | os.PathLike | None = None,
                  sample_resources: bool = True, mode: str = BOTH,
                  consume_from: str = "end") -> tuple[int, Path, dict[str, Any]]:
    """One measured run on a broker the caller holds (`ensure_broker`): what `run_scenario` does
    inside its broker block, for an engine that runs many (the capacity search's steps)."""
    faults = parse_faults(scenario.faults)
    broker.check_room(scenario.planned_bytes())
    check_protocol_support(scenario, None if "settings" in broker.not_measured else broker.settings)
    if broker_faults(faults) and broker.embedded is None:
        raise UsageError(f"broker faults need the embedded broker: "
                         f"{no_embedded_reason(broker.bootstrap_servers, broker_state_dir)}")
    return _Run(scenario, broker, Path(results_root), out, faults, sample_resources, mode, consume_from).execute()
