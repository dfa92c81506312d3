"""The master side of the Locust user (or the local runner's): the tracker process, the merge
of the workers' reports, and the result folder at test end — through the same measurement
core as `bench run` (bench/core: protocol, merge, audit, result)."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gevent
from locust.runners import STATE_RUNNING, STATE_SPAWNING, LocalRunner, MasterRunner

from bench.analysis.thresholds import Limit
from bench.broker.ensure import BrokerInUse, measure_broker
from bench.core.audit import audit_method
from bench.core.clients import scenario_watermarks
from bench.core.delivery import DrainDeadline
from bench.core.merge import RunMeasurements
from bench.core.producer import CHILD_START_TIMEOUT_S
from bench.core.protocol import TRACKER, Drain, Inbox, TrackerSecond
from bench.core.recorder import RunRecorder
from bench.core.resources import RunResources, Watched, fixed_pid
from bench.core.result import (
    OFFSETS_NOT_READ,
    write_run_folder,
)
from bench.core.runner import prepare_topic
from bench.core.scenario import Scenario
from bench.core.tracker import tracker_main
from bench.locust.options import tracked_scenario
from bench.locust.result import LOCAL_WORKER, WorkerAccounts, locust_result
from bench.locust.worker import options_bootstrap
from bench.output.report import write_run_report
from bench.results.environment import capture_environment
from bench.results.metrics import METRICS
from streamstore.errors import StreamStoreError

logger = logging.getLogger("bench.locust")

NS_PER_S = 1_000_000_000


# How long the master waits for each worker's last report beyond the worker's own flush, which
# gives up after the scenario's drain_timeout_s without a delivery (Locust workers report every 3 s).
FINAL_REPORT_GRACE_S = 10.0


# How often the gevent side reads the tracker process's reports while it waits for one.
TRACKER_PUMP_INTERVAL_S = 0.05


# After its drain time the tracker still sends its final report and exits; this long at most.
TRACKER_EXIT_GRACE_S = 5.0


# Seconds between the master's live status lines.
STATUS_INTERVAL_S = 5.0


class TrackerProcess:
    """The measurement core's tracker process (bench/core/tracker.py) for one Locust test.

    Its own process, not a thread of this gevent process: a native thread here competes for
    the GIL with every user, so receive times were taken late (at 2,000 msg/s an end-to-end p50
    of ~56 ms against a 3.6 ms delivery p50). The gevent side never waits on it: `pump()` reads
    only what has arrived.
    """

    def __init__(self, bootstrap: str, scenario: Scenario, run_id: bytes, started_at: float,
                 start_offsets: Mapping[int, int], measured: RunMeasurements):
        """scenario: as tracked_scenario gives it (rate 0 = flat out: lower priority, offset audit)."""
        context = multiprocessing.get_context("spawn")  # librdkafka threads and fork do not mix
        # The child imports locust (spawn re-runs the `locust` script as its main module), so
        # it is gevent-patched too: a Queue's put would wait for a feeder greenlet that never
        # runs while the child blocks in consume(). SimpleQueue.put writes synchronously.
        self.inbox = Inbox(context.SimpleQueue(), sleep=gevent.sleep, poll_interval_s=TRACKER_PUMP_INTERVAL_S)
        # Only this side puts on it (its feeder greenlet runs); the child reads it with get_nowait.
        self.control = context.Queue()
        self.measured = measured
        start = context.Event()
        # The tracker numbers seconds from t0 (perf_counter_ns); the producers from started_at.
        t0_ns = context.Value("q", time.perf_counter_ns() - int((time.time() - started_at) * NS_PER_S))
        self.process = context.Process(target=tracker_main, name="locust-kafka-tracker", daemon=True,
                                       args=(scenario, bootstrap, run_id, dict(start_offsets), self.inbox.reports,
                                             self.control, start, t0_ns))
        self.process.start()
        self.error: str | None = None
        self.last_progress = time.monotonic()
        # The last second the tracker has reported. Kept here, not in `measured`: that one
        # would close seconds on the tracker's word alone, before the workers reported them.
        self.reported_through = -1
        self.inbox.wait_ready([TRACKER], CHILD_START_TIMEOUT_S, [self.process.sentinel])
        start.set()

    def pump(self) -> None:
        """Record every report that has arrived (never waits for one)."""
        for message in self.inbox.arrived():
            self.measured.handle(message)
            if isinstance(message, TrackerSecond):
                self.reported_through = max(self.reported_through, message.second)
            if getattr(message, "consumed", 0):
                self.last_progress = time.monotonic()
        if self.measured.failure and self.error is None:
            self.error = self.measured.failure
        if self.measured.tracker_done is None and self.error is None and self._exited():
            self.error = "the tracker process died"

    def _exited(self) -> bool:
        # Its sentinel, not Process.exitcode: gevent reaps children itself, so exitcode can stay None.
        return bool(multiprocessing.connection.wait([self.process.sentinel], 0))

    def finish(self, drain: Drain) -> None:
        """Let it consume until it has the drain target or drain_s passed without progress, then end it."""
        self.control.put(drain)
        self.last_progress = time.monotonic()
        # The tracker gives up after drain_s without consuming; its final report follows.
        while (self.measured.tracker_done is None and self.error is None
               and time.monotonic() < self.last_progress + drain.drain_s + TRACKER_EXIT_GRACE_S):
            self.pump()
            gevent.sleep(TRACKER_PUMP_INTERVAL_S)
        if self.measured.tracker_done is None and self.error is None:
            self.error = f"no final report from the tracker within {drain.drain_s + TRACKER_EXIT_GRACE_S:g} s of its last progress"
        deadline = time.monotonic() + TRACKER_EXIT_GRACE_S
        while not self._exited() and time.monotonic() < deadline:
            gevent.sleep(TRACKER_PUMP_INTERVAL_S)
        if not self._exited():
            self.process.terminate()
        self.control.close()


class LocustRun:
    """One test as the master (or local runner) sees it: merged measurements and the result."""

    def __init__(self, environment, scenario: Scenario, rate_per_user: float, limits: list[Limit]):
        self.environment = environment
        self.scenario = scenario
        self.rate_per_user = rate_per_user
        self.limits = limits
        self.tracked = tracked_scenario(scenario, rate_per_user)
        self.method = audit_method(self.tracked)
        self.run_id = uuid.uuid4().bytes
        self.started_at = time.time()
        self.measured = RunMeasurements(scenario.warmup_s)
        self.recorder = self.measured.recorder
        self.workers = WorkerAccounts()
        self.peak_users = 0
        self.tracker: TrackerProcess | None = None
        self.start_offsets: dict[int, int] = {}
        self.topic_settings: dict[str, str] | None = {}
        self.topic_settings_unread: str | None = None  # why topic_settings is None
        self.failure: str | None = None
        self._greenlets: list = []
        # Measured once, at the start, as `bench run` does (the broker in start()).
        self.machine = capture_environment()
        self.broker: BrokerInUse | None = None
        self.resources: RunResources | None = None

    def start(self) -> None:
        bootstrap = options_bootstrap(self.environment)
        self.broker = in_native_thread(measure_broker, bootstrap, self.scenario.producer_config)
        self.start_offsets, self.topic_settings, self.topic_settings_unread = in_native_thread(
            prepare_topic, self.scenario, bootstrap)
        # Second 0 starts now, as the tracker and the producers start, not before the broker was
        # measured and the topic prepared.
        self.started_at = time.time()
        if not self.environment.parsed_options.no_tracker:
            # Its scenario's rate tells tracker_main whether this is a flat-out test (then it
            # yields the CPU to the producers and catches up in the drain, as in `bench run`).
            self.tracker = TrackerProcess(bootstrap, self.tracked, self.run_id, self.started_at,
                                          self.start_offsets, self.measured)
        self.resources = _watch_resources(isinstance(self.environment.runner, LocalRunner), self.tracker, self.broker,
                                          self.started_at)
        self._greenlets.append(gevent.spawn(self._status_forever))
        if isinstance(self.environment.runner, LocalRunner):
            self._greenlets.append(gevent.spawn(self._pull_local_reports_forever))

    def _watch_worker(self, worker_id: str, report: Mapping[str, Any]) -> None:
        if self.resources is None or worker_id == LOCAL_WORKER or worker_id in self.workers.by_id:
            return
        host = worker_id.rsplit("_", 1)[0]
        if host == socket.gethostname() and report.get("pid"):
            self.resources.sampler.add(Watched(f"worker-{report['producer']}", "producer", fixed_pid(report["pid"]),
                                               python=True))
        else:
            self.resources.not_measured[f"worker-{report['producer']}"] = f"runs on host {host}, not visible from here"

    def _pull_local_reports_forever(self) -> None:
        """The local runner's producer reports once a second, as a worker would to a master."""
        while True:
            gevent.sleep(1.0)
            producer = self.environment.kafka_producer
            if producer is not None:
                self.add_worker_report(LOCAL_WORKER, producer.take_report())

    def add_worker_report(self, worker_id: str, report: Mapping[str, Any]) -> None:
        if report.get("run_id") != self.run_id.hex():
            return  # a report of an earlier test that arrived late
        self._watch_worker(worker_id, report)
        self.workers.add(worker_id, report, self.measured)
        self._pump_tracker()
        self._close_finished_seconds()

    def _pump_tracker(self) -> None:
        if self.tracker is not None:
            self.tracker.pump()

    def _close_finished_seconds(self) -> None:
        """Seal the seconds every reporter is past (an open second holds a ~400 KB histogram)."""
        through = self._reported_through()
        if through is not None:
            self.recorder.close_through(through)

    def _reported_through(self) -> int | None:
        """The last second that every worker and the tracker have reported (None: all are done)."""
        runner = self.environment.runner
        expected = {client.id for client in runner.clients.all} if isinstance(runner, MasterRunner) else {LOCAL_WORKER}
        if not expected <= self.workers.by_id.keys():
            return -1  # a worker that has not reported yet may still hold any second
        reported_through = self.workers.reported_through()
        if self.tracker is not None and self.measured.tracker_done is None:
            reported_through.append(self.tracker.reported_through)
        return min(reported_through) if reported_through else None

    def _status_forever(self) -> None:
        while True:
            gevent.sleep(STATUS_INTERVAL_S)
            self._pump_tracker()
            logger.info("kafka: %s", self.status_line())

    def status_line(self) -> str:
        """Counts through the last second that every reporter has reported. Workers report with
        Locust's stats, every 3 s (WORKER_REPORT_INTERVAL), and the tracker every second, so the
        newest counts compared a tracker that had consumed up to now with acks up to 4 s old:
        consumed ran ahead of acked, by 240,000 orders flat out."""
        through = self._reported_through()
        return status_text(self.recorder, self.recorder.last_second if through is None else through,
                           self.workers.all_service_time, self.tracker is not None)

    def finish(self) -> tuple[Path, dict[str, Any]]:
        """Wait for the last reports and the tracker, then write the result folder."""
        ended_at = time.time()
        gevent.killall(self._greenlets)
        self._wait_for_final_reports()
        if self.tracker is not None:
            self.tracker.finish(Drain(self.measured.drain_target(self.method), self.scenario.drain_timeout_s, True))
            if self.tracker.error and self.failure is None:
                self.failure = f"tracker failed: {self.tracker.error}"
        self.recorder.close_through(self.recorder.seconds())
        if self.resources is not None:
            self.resources.stop()
        bootstrap = options_bootstrap(self.environment)
        offset_delta = in_native_thread(_offset_delta, bootstrap, self.scenario, self.start_offsets)
        folder, document = write_run_folder(self.environment.parsed_options.results_dir,
                                            locust_result(self, ended_at, offset_delta), self.recorder)
        write_run_report(folder, document)
        return folder, document

    def _wait_for_final_reports(self) -> None:
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return
        # A headless master quits without telling its workers to stop first (they would stop on
        # "quit", after the master stopped listening); ask them now, so their last
        # deliveries are flushed and reported before the result is written.
        for client in runner.clients.all:
            if client.state in (STATE_RUNNING, STATE_SPAWNING):
                runner.send_message("stop", client_id=client.id)
        wait_s = self.scenario.drain_timeout_s + FINAL_REPORT_GRACE_S
        deadline = DrainDeadline(wait_s)  # waits on while the workers' reports still bring deliveries
        while self.workers.not_final() and not deadline.expired(self.workers.deliveries()):
            gevent.sleep(0.1)
        missing = self.workers.not_final()
        if missing:
            self.failure = f"no final report from worker(s) {', '.join(missing)} within {wait_s:g} s of their last delivery"


def _watch_resources(local: bool, tracker: TrackerProcess | None, broker: BrokerInUse, started_at: float) -> RunResources:
    """CPU and RSS each second of this process (with the local runner, the producer too), the
    tracker, the embedded broker, and each worker on this host once it reports
    (bench/core/resources.py), on the seconds the workers count from `started_at`."""
    watched = [Watched("locust-local" if local else "locust-master", "producer" if local else "coordinator",
                       fixed_pid(os.getpid()), python=True)]
    if tracker is not None:
        watched.append(Watched("tracker", "tracker", fixed_pid(tracker.process.pid), python=True))
    t0_ns = time.perf_counter_ns() - int((time.time() - started_at) * NS_PER_S)
    return RunResources.started(watched, broker.observed_embedded, t0_ns)


def status_text(recorder: RunRecorder, through: int, service_time, tracked: bool) -> str:
    """The master's status line: counts through second `through` (-1: nothing yet), service-time
    p99 so far from the workers' merged histogram."""
    if through < 0:
        return "waiting for the first report of every worker and the tracker"
    counts = recorder.counts_by_second
    acked, failed, consumed = (sum(counts[name][second] for second in range(through + 1))
                               for name in ("acked", "failed", "consumed"))
    p99 = service_time.get_value_at_percentile(99.0) if service_time.get_total_count() else None
    e2e = recorder.latency["end_to_end"].interval_stats.get(through)
    lag = recorder.lag_messages.get(through)
    parts = [
        f"counts through t={through + 1}s (the newest second all workers and the tracker have reported): "
        f"acked {acked:,} ({acked / (through + 1):,.0f}/s)",
        f"failed {failed:,}",
        f"consumed {consumed:,}" if tracked else "no tracker",
        f"lag {lag:,} msgs" if lag is not None else "lag -",
        f"{METRICS['end_to_end_p99'].label} in that second {_ms(e2e[1] if e2e else None)}",
        f"{METRICS['service_time_p99'].label} so far {_ms(p99)}",
    ]
    return ", ".join(parts)


def _ms(value_us: float | None) -> str:
    return "-" if value_us is None else f"{value_us / 1000:.2f} ms"


def in_native_thread(function, *args):
    """Run a blocking Kafka call in gevent's native threadpool while the other greenlets go on.

    A StreamStoreError is carried back and raised here: one escaping the thread would make
    gevent print its traceback.
    """
    def guarded():
        try:
            return function(*args), None
        except StreamStoreError as error:
            return None, error

    value, error = gevent.get_hub().threadpool.apply(guarded)
    if error is not None:
        raise error
    return value


def _offset_delta(bootstrap: str, scenario: Scenario,
                  start_offsets: Mapping[int, int]) -> tuple[dict[int, int] | None, str]:
    """How many records each partition gained during the test by the broker's own offsets, read
    with the scenario's client settings (a SASL/SSL cluster answers nothing without them); None
    with the reason when they could not be read."""
    try:
        end = scenario_watermarks(scenario, bootstrap)
    except StreamStoreError as error:
        return None, f"{OFFSETS_NOT_READ}: {error}"
    return {p: high - start_offsets.get(p, 0) for p, (_, high) in end.items()}, OFFSETS_NOT_READ
