"""The large-message sweep: latency, throughput, wire size and client memory by message size
and compression, up to the largest message the client can send (999,999,964 bytes).

For each size the parent starts one producer and one consumer process
(`bench/large_message/worker.py`), so each one's peak memory is its own; for each compression
it creates a fresh topic, has the consumer wait at the partition, asks the producer for one
message at a time (repetitions are sequential: one message in flight), and deletes the topic.
Everything that can be known before sending (client and broker limits) is checked first.

This module does the work against the broker; the pure parts live beside it: `plan` (sizes,
limits, pre-flight, options), `result` (rows, findings, the result document), `progress` (the
display and its estimates), `process` (talking to a worker process).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from confluent_kafka.admin import AdminClient

from bench.core.protocol import ChildFailed
from bench.large_message.cell import CellRun
from bench.large_message.plan import (
    SLOWEST_RATE_BYTES_PER_S,
    Limit,
    SweepOptions,
    known_unsendable,
    limits_from_configs,
    preflight_problem,
    size_label,
)
from bench.large_message.process import (
    WORKER_START_TIMEOUT_S,
    CellFailed,
    SweepInterrupted,
    WorkerProcess,
)
from bench.large_message.progress import SweepProgress
from bench.large_message.result import (
    NOTHING_RECEIVED,
    cell_counts,
    cell_row,
    not_sent_row,
)
from bench.large_message.topics import SweepTopics
from bench.large_message.yardsticks import bare_row, java_row
from bench.peers.java import JavaPeer
from streamstore.admin import (
    broker_configs,
    topic_configs,
)
from streamstore.errors import UsageError


def read_limits(admin: AdminClient, topic: str | None) -> tuple[list[Limit], dict[str, str], dict[str, str] | None]:
    """(limits, broker configs, the existing topic's configs or None)."""
    broker = broker_configs(admin)
    existing = None
    if topic is not None and topic in admin.list_topics(timeout=10).topics:
        existing = topic_configs(admin, topic)
    return limits_from_configs(broker, existing, topic), broker, existing


def preflight(options: SweepOptions, admin: AdminClient) -> tuple[dict[str, str], dict[str, str] | None]:
    """Raise UsageError naming the blocking setting before anything is sent."""
    limits, broker, topic = read_limits(admin, options.topic)
    problem = preflight_problem(options.sizes, limits)
    if problem:
        raise UsageError(problem)
    return broker, topic




@contextlib.contextmanager
def _ended_on_failure(worker: WorkerProcess) -> Iterator[None]:
    """A worker that fails (or is interrupted) before its caller holds it is killed here."""
    try:
        yield
    except BaseException:
        worker.kill()
        worker.close()
        raise


class LargeMessageSweep:
    """Runs the cells of a sweep against one broker and collects their rows.

    java: Kafka's Java tools, run beside each cell once the size's worker processes have ended
    (so their memory is free); `on_java` is called with the row then.

    Ctrl+C and SIGTERM are only noted (`note_signal`, installed by the command); the sweep acts on
    them where it waits for a worker's reply (every WAIT_TICK_S) and between cells: it kills the
    workers, deletes its topics and raises SweepInterrupted. A Java tool or the bare script
    running at that moment finishes first.
    """

    def __init__(self, options: SweepOptions, bootstrap_servers: str, admin: AdminClient,
                 broker_settings: Mapping[str, str], progress: SweepProgress,
                 on_row: Callable[[dict[str, Any]], None] = lambda row: None,
                 java: JavaPeer | None = None,
                 on_java: Callable[[dict[str, Any]], None] = lambda row: None) -> None:
        self.options = options
        self.java, self.on_java = java, on_java
        self.broker_settings = broker_settings
        self.bootstrap_servers = bootstrap_servers
        self.progress = progress
        self.on_row = on_row
        self.rows: list[dict[str, Any]] = []
        self.bare: dict[str, Any] | None = None
        self.run_id = uuid.uuid4().hex
        self.topics = SweepTopics(admin, bootstrap_servers, options.client_settings, broker_settings, options.topic,
                                  self.run_id)
        # Workers that died with a traceback (the command writes them to errors.log).
        self.worker_failures: list[ChildFailed] = []
        self.signalled = False
        # The worker processes running now, by role: the resource sampler follows them.
        self.running: dict[str, WorkerProcess] = {}
        # Each cell's start, on the clock of `clock_s` (the sweep's own: its resources' seconds).
        self.events: list[dict[str, Any]] = []
        self.clock_s: Callable[[], float] = lambda: 0.0

    def pid_of(self, role: str) -> int | None:
        """The pid of the worker process of this role running now (None between workers)."""
        worker = self.running.get(role)
        return worker.process.pid if worker is not None and worker.process.poll() is None else None

    def note_signal(self, signum, frame) -> None:
        """The signal handler: only notes it (raised inside a pipe read, it could leave a reply half read)."""
        self.signalled = True

    def _check_stop(self) -> None:
        if self.signalled:
            raise SweepInterrupted()

    def _waiting(self) -> None:
        self.progress.draw()
        self._check_stop()

    def run(self) -> None:
        try:
            for size in self.options.sizes:
                self._check_stop()
                first_row = len(self.rows)
                self._run_size(size)
                if self.java is not None:
                    for row in self.rows[first_row:]:
                        self._check_stop()
                        row["java"] = java_row(self.java, self.topics, self.progress, self.options, self.broker_settings,
                                               row["size_bytes"], row["compression"])
                        self.on_java(row)
        finally:
            self.topics.delete_all()

    def _add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.progress.cell_done()
        self.on_row(row)

    def _run_size(self, size: int) -> None:
        producer = consumer = None
        try:
            for compression in self.options.compressions:
                self._check_stop()
                reps = self.options.reps_for(size)
                unsendable = known_unsendable(size, compression, self.options.payload)
                if unsendable:
                    self._add(not_sent_row(size, compression, unsendable))
                    continue
                try:
                    if producer is None or producer.process.poll() is not None:
                        producer, payload = self._start_producer(size)
                    if consumer is None or consumer.process.poll() is not None:
                        consumer = self._start_worker("consumer", ["--group", f"bench-large-message-{self.run_id[:8]}"])
                except CellFailed as failure:
                    # Nothing was sent and no topic created: every count is a measured zero.
                    counts = cell_counts(0, 0, NOTHING_RECEIVED, None, broker_offset_delta=0)
                    row = cell_row(size, compression, [], [], [], None, None, None, str(failure), counts)
                    broken = True
                else:
                    self.events.append({"t_s": round(self.clock_s(), 3), "kind": f"{size_label(size)} {compression}",
                                        "detail": f"cell: {reps} message(s) of {size:,} bytes, compression {compression}"})
                    cell = CellRun(size, compression, reps, self.options.level, payload, producer, consumer, self.topics,
                                   self.progress)
                    row, broken = cell.run(), cell.broken
                if broken:
                    # The workers may be mid-message: start fresh ones for the next cell.
                    for worker in (producer, consumer):
                        if worker is not None:
                            worker.kill()
                    producer = consumer = None
                self._add(row)
                if self.options.compare_bare and compression == "none" and size == max(self.options.sizes):
                    self.bare = bare_row(self.bootstrap_servers, self.topics, self.progress, self.options, size, row,
                                         self.worker_failures)
        except SweepInterrupted:
            for worker in (producer, consumer):  # perhaps mid-message: no goodbye
                if worker is not None:
                    worker.kill()
            raise
        finally:
            for worker in (producer, consumer):
                if worker is not None:
                    worker.close()
            self.running.clear()

    def _start_worker(self, role: str, arguments: list[str]) -> WorkerProcess:
        worker = WorkerProcess(role, ["--bootstrap-servers", self.bootstrap_servers, *arguments], self._waiting,
                               self.worker_failures)
        # Settings (secrets among them) go through the pipe, not the command line.
        self.running[role] = worker
        with _ended_on_failure(worker):
            worker.send(client_settings=dict(self.options.client_settings))
        return worker

    def _start_producer(self, size: int) -> tuple[WorkerProcess, dict[str, int]]:
        producer = self._start_worker("producer", ["--size", str(size), "--payload", self.options.payload])
        with _ended_on_failure(producer):
            ready = producer.receive(WORKER_START_TIMEOUT_S + size / SLOWEST_RATE_BYTES_PER_S)
        return producer, {"size_bytes": ready["size_bytes"], "crc32": ready["crc32"]}
