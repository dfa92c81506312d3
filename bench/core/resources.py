"""Resources each second: CPU and RSS of every process of a run (producers, tracker, the
coordinator, each embedded broker node) and the host's CPU, sampled by a thread of the
coordinating process (never inside a producer, whose timing it would disturb) on the run's own
clock, so sample k covers second k-1 of the per-second series (bench/results/window.py).

psutil keeps its CPU figures per `Process` object (the first `cpu_percent` call of an object
returns 0.0, which is no measurement): one object per pid, kept for the whole run, and a second
whose process had no earlier sample is null. A broker node that a fault restarts has a new pid,
so its pid is looked up again every second.

Per process: `cpu_percent` (all its threads, % of one core: a JVM can show 200 % on 2 cores),
`rss_mb`, and for a Python process (producers, tracker, coordinator) its main thread, which runs
the Python code and holds the GIL: `main_thread_cpu_percent` (on a CPU) and, on Linux,
`main_thread_wait_percent` (runnable but waiting for a CPU, from /proc's schedstat). librdkafka's
own threads make a producer process use more than one core, but its Python thread cannot: that
thread on a CPU or waiting for one ~100 % of the time is a generator that cannot go faster, on
a quiet machine and on a crowded one alike (bench/analysis/bottlenecks.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from bench.analysis.resources import resource_window, resources_section
from bench.core.broker_metrics import BrokerMetrics, broker_metrics

NS_PER_S = 1_000_000_000
# One sample per second of the run, matching the per-second series.
SAMPLE_EVERY_S = 1.0
MB = 1_000_000


@dataclass(frozen=True)
class Watched:
    """One process whose resources a run records."""

    name: str                         # producer-0, tracker, coordinator, broker-node1
    role: str                         # producer | tracker | coordinator | broker | worker
    pid: Callable[[], int | None]     # where it runs now (None: not running)
    python: bool = False              # its main thread is measured too


def fixed_pid(pid: int | None) -> Callable[[], int | None]:
    return lambda: pid


class _Process:
    """One pid's psutil object and its main thread's last CPU and run-queue times."""

    def __init__(self, pid: int, python: bool):
        self.pid = pid
        self.process = psutil.Process(pid)
        self.python = python
        self.process.cpu_percent(None)  # the first call only starts psutil's interval
        self.main = self._main_thread_s()
        self.at = time.perf_counter()

    def _main_thread_s(self) -> tuple[float, float | None] | None:
        """(seconds on a CPU, seconds runnable but waiting for one) of the main thread (Linux: its
        id is the process id; /proc's schedstat has both), or on a CPU only from psutil."""
        if not self.python:
            return None
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/schedstat") as schedstat:
                run_ns, wait_ns = schedstat.read().split()[:2]
            return int(run_ns) / NS_PER_S, int(wait_ns) / NS_PER_S
        except (OSError, ValueError):
            pass
        for thread in self.process.threads():
            if thread.id == self.pid:
                return thread.user_time + thread.system_time, None
        return None

    def sample(self) -> tuple[float, float | None, float | None, float]:
        """(cpu %, main thread cpu %, main thread waiting for a cpu %, rss MB) since the last
        sample of this object."""
        now = time.perf_counter()
        cpu = self.process.cpu_percent(None)
        rss = self.process.memory_info().rss / MB
        main = self._main_thread_s()
        main_cpu = main_wait = None
        if main is not None and self.main is not None and now > self.at:
            main_cpu = round(100.0 * (main[0] - self.main[0]) / (now - self.at), 1)
            if main[1] is not None and self.main[1] is not None:
                main_wait = round(100.0 * (main[1] - self.main[1]) / (now - self.at), 1)
        self.main, self.at = main, now
        return round(cpu, 1), main_cpu, main_wait, round(rss, 1)


def _host_busy() -> tuple[float, float, float]:
    """(busy, total, stolen) CPU seconds of the host, as psutil.cpu_percent counts them, without
    its module-wide state (another caller in this process would move its interval). Stolen: time
    a virtual CPU was ready to run but the hypervisor ran another guest (Linux `steal`; 0 where
    the platform does not report it); it counts as busy, as in psutil."""
    times = psutil.cpu_times()
    total = sum(times) - getattr(times, "guest", 0) - getattr(times, "guest_nice", 0)
    idle = times.idle + getattr(times, "iowait", 0)
    return total - idle, total, getattr(times, "steal", 0.0)


class ResourceSampler:
    """The sampling thread. `samples`: second -> {"host_cpu_percent": pct, "host_steal_percent": pct, "processes":
    {name: (cpu, main, rss)}}; a process not running (or not yet sampled once) is missing from
    its second, a second the thread missed (it woke late) is missing."""

    def __init__(self, watched: Iterable[Watched], t0_ns: int, every_s: float = SAMPLE_EVERY_S,
                 broker_metrics: BrokerMetrics | None = None):
        self.watched: dict[str, Watched] = {w.name: w for w in watched}
        # The broker's own metrics, scraped by this thread on the same seconds.
        self.broker_metrics = broker_metrics
        self.t0_ns = t0_ns
        self.every_s = every_s
        self.samples: dict[int, dict[str, Any]] = {}
        self.pids: dict[str, list[int]] = {}
        self._objects: dict[str, _Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._host = _host_busy()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def start(self) -> ResourceSampler:
        self._refresh()
        self._thread.start()
        return self

    def add(self, watched: Watched) -> None:
        """A process that joined the run later (a Locust worker); sampled from the next second."""
        with self._lock:
            self.watched.setdefault(watched.name, watched)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        if self.broker_metrics is not None:
            self.broker_metrics.begin()  # here, not before the producers start: it may wait on a network
        every_ns = int(self.every_s * NS_PER_S)
        k = max(1, (time.perf_counter_ns() - self.t0_ns) // every_ns + 1)
        while not self._stop.wait(max(0.0, (self.t0_ns + k * every_ns - time.perf_counter_ns()) / NS_PER_S)):
            late = (time.perf_counter_ns() - self.t0_ns) // every_ns
            k = max(k, late)  # woke more than a second late: the sample covers the seconds since
            self._sample(k - 1)
            k += 1

    def _refresh(self) -> dict[str, _Process]:
        """The psutil object of each watched process's current pid (a new one when it changed)."""
        with self._lock:
            watched = list(self.watched.values())
        current = {}
        for w in watched:
            pid = w.pid()
            if pid is None:
                continue
            known = self._objects.get(w.name)
            if known is not None and known.pid == pid:
                current[w.name] = known
                continue
            try:
                self._objects[w.name] = _Process(pid, w.python)
                self.pids.setdefault(w.name, []).append(pid)
            except psutil.Error:
                self._objects.pop(w.name, None)
        return current

    def _sample(self, second: int) -> None:
        busy, total, stolen = _host_busy()
        host = steal = None
        if total > self._host[1]:
            host = round(100.0 * (busy - self._host[0]) / (total - self._host[1]), 1)
            steal = round(100.0 * (stolen - self._host[2]) / (total - self._host[1]), 1)
        self._host = (busy, total, stolen)
        processes = {}
        for name, process in self._refresh().items():
            try:
                processes[name] = process.sample()
            except psutil.Error:  # it ended during this second
                self._objects.pop(name, None)
        self.samples[second] = {"host_cpu_percent": host, "host_steal_percent": steal, "processes": processes}
        if self.broker_metrics is not None:
            self.broker_metrics.sample(second)

    def series(self, seconds: int) -> dict[str, Any]:
        """The per-second series for seconds 0..seconds-1 (t_s = second + 1), null where nothing
        was measured: result["series"] keys (bench/results/metrics.py RESOURCE_SERIES)."""
        rows = [self.samples.get(second) for second in range(seconds)]

        def column(name: str, index: int) -> list[float | None]:
            return [row["processes"][name][index] if row and name in row["processes"] else None for row in rows]

        names = list(self.watched)
        broker = self.broker_metrics.series(seconds) if self.broker_metrics is not None else {}
        return {
            **broker,
            "host_cpu_percent": [row["host_cpu_percent"] if row else None for row in rows],
            "host_steal_percent": [row["host_steal_percent"] if row else None for row in rows],
            "cpu_percent_by_process": {name: column(name, 0) for name in names},
            "main_thread_cpu_percent_by_process": {name: column(name, 1) for name in names if self.watched[name].python},
            "main_thread_wait_percent_by_process": {name: column(name, 2) for name in names if self.watched[name].python},
            "rss_mb_by_process": {name: column(name, 3) for name in names},
        }

    def processes(self) -> dict[str, dict[str, Any]]:
        """Each watched process: its role and the pids it ran as (several after a restart)."""
        return {name: {"role": w.role, "pids": self.pids.get(name, [])} for name, w in self.watched.items()}


def this_process(name: str = "coordinator", role: str = "coordinator") -> Watched:
    return Watched(name, role, fixed_pid(os.getpid()), python=True)


def broker_processes(embedded) -> tuple[list[Watched], dict[str, str]]:
    """The embedded broker's nodes to watch (embedded: the EmbeddedCluster found at the address,
    or None), or why the broker's processes are not measured."""
    if embedded is None:
        return [], {"broker": "not a broker started by this tool on this host: its processes are not visible here"}
    return [Watched(f"broker-node{node.node_id}", "broker", node.running_pid) for node in embedded.nodes], {}


class RunResources:
    """A run's resource sampling, from start to the result's series and `resources` section."""

    def __init__(self, watched: Iterable[Watched], not_measured: dict[str, str], t0_ns: int,
                 metrics: BrokerMetrics | None = None):
        self.sampler = ResourceSampler(watched, t0_ns, broker_metrics=metrics)
        self.not_measured = dict(not_measured)

    @classmethod
    def started(cls, watched: Iterable[Watched], embedded, t0_ns: int, metrics_url: str | None = None) -> RunResources:
        """Sampling of the run's own processes and the embedded broker's nodes, and the broker's
        own metrics (its exporters, or metrics_url), begun."""
        brokers, not_measured = broker_processes(embedded)
        metrics = broker_metrics(embedded, metrics_url)
        return cls([*watched, *brokers], not_measured, t0_ns, metrics).start()

    def start(self) -> RunResources:
        self.sampler.start()
        return self

    def stop(self) -> None:
        self.sampler.stop()
        if self.sampler.broker_metrics is not None:
            self.sampler.broker_metrics.end()

    def add_to(self, series: dict[str, Any], warmup_s: float) -> dict[str, Any]:
        """Adds the resource series to the run's series (same seconds); the `resources` section."""
        series.update(self.sampler.series(len(series.get("t_s") or [])))
        section = resources_section(series, self.sampler.processes(), warmup_s, cpu_count=psutil.cpu_count(),
                                    every_s=self.sampler.every_s, not_measured=self.not_measured)
        metrics = self.sampler.broker_metrics
        if metrics is not None and metrics.endpoints:
            section["broker_metrics"] = metrics.section(series, resource_window(series, warmup_s))
        else:
            section["broker_metrics"] = None
            reasons = metrics.not_measured if metrics is not None else {}
            section["broker_metrics_not_measured"] = "; ".join(f"{name}: {why}" for name, why in reasons.items()) \
                or "no broker metrics endpoint"
        return section

    def warnings(self) -> list[str]:
        """One line each for what the user asked for and did not get (an unreachable --broker-metrics-url)."""
        metrics = self.sampler.broker_metrics
        return metrics.warnings() if metrics is not None else []
