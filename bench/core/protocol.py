"""What the producer and tracker processes tell their coordinator, and how it listens.

Every message is a frozen dataclass (pickled through a multiprocessing queue): one place says
what a report holds, and both coordinators (`bench run` in bench/core/runner.py, the Locust
master in bench/locust/master.py) read the same fields. Children put:

  Ready(who)                        once connected, before waiting for the start signal
  ProducerSecond / TrackerSecond    one per second of the run, in order
  BacklogBuilt(producer, messages)  with a `backlog`: once its share is sent and acked, before it
                                    waits for the catch-up's start (bench/core/backlog.py)
  ProducerDone / TrackerDone        once, last
  ChildFailed(who, error, traceback) instead of the rest, when the child cannot go on: one line
                                    for the console, the traceback for the run's errors.log

and the tracker reads one `Drain` from its control queue when producing has ended (a consumer
of a group of several processes then reads a `Stop` once its group has read everything).
With fan-out (bench/core/groups.py) every consumer process is a tracker: its reports carry its
group and index; group 0's consumer 0 is the TRACKER of a run with one consumer.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import queue
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamstore.errors import RunFailed

TRACKER = "tracker"


def producer_name(index: int) -> str:
    return f"producer {index}"


def tracker_name(group: int = 0, consumer: int = 0) -> str:
    """The name a consumer process reports under: TRACKER for the first (the only one by default)."""
    return TRACKER if (group, consumer) == (0, 0) else f"{TRACKER} g{group}c{consumer}"


@dataclass(frozen=True)
class Ready:
    who: str


@dataclass(frozen=True)
class ChildFailed:
    who: str
    error: str  # one line, for the console and the result's failure
    traceback: str = ""  # the exception's traceback, for errors.log
    at: float = field(default_factory=time.time)  # when it failed (epoch seconds)


# Beside result.json: the traceback of every child process that failed with an exception.
ERRORS_LOG = "errors.log"


def write_child_errors(path: Path, failures: Iterable[ChildFailed]) -> Path:
    """Append each failure's traceback to `path` (created if missing), under a line naming the child."""
    with open(path, "a", encoding="utf-8") as log:
        for failure in failures:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(failure.at))
            log.write(f"{failure.who} failed ({stamp}): {failure.error}\n{failure.traceback.rstrip()}\n\n")
    return path


@dataclass(frozen=True)
class ProducerSecond:
    """One producer's second: counts, raw latencies (service time in librdkafka's seconds,
    the others in µs) and, for the offset audit, the acked offsets as [start, end) ranges."""

    producer: int
    second: int
    sent: int
    acked: int
    failed: int
    service_s: list[float]
    response_us: list[int]
    send_delay_us: list[int]
    acked_ranges: Mapping[int, list[tuple[int, int]]] = field(default_factory=dict)
    # Failed deliveries of the second by librdkafka's error text.
    errors: Mapping[str, int] = field(default_factory=dict)
    # Acks per partition, and gaps between acks (bench/core/availability.py); scheduled sends only.
    acked_by_partition: Mapping[int, int] = field(default_factory=dict)
    ack_gaps: list[tuple[int, int, int]] = field(default_factory=list)
    # Failures-only reports: librdkafka's per-broker latency windows of the second
    # (bench/core/client_stats.py).
    client_latency: list[Mapping[str, Any]] = field(default_factory=list)
    # Transactions: the commit_transaction() calls that ended in the second, in µs.
    commit_us: list[int] = field(default_factory=list)
    # librdkafka's newest statistics of the second: queue depth, retries, batch size, rtt
    # (bench/core/client_stats.py producer_figures); None when none arrived.
    client_stats: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BacklogBuilt:
    """A producer's share of the backlog is sent and every message of it delivered (or failed)."""

    producer: int
    messages: int


@dataclass(frozen=True)
class ProducerDone:
    producer: int
    sent: int
    acked: int
    failed_sequences: list[int]
    producing_s: float
    elapsed_s: float
    first_error: str | None
    # Still queued at the flush deadline and purged (their callbacks counted them as failed).
    undelivered: int
    # Failed with a timeout: possibly persisted (the broker may have written them).
    timed_out: int = 0
    # Transactions: Transactions.summary() (bench/core/transactions.py); None without.
    transactions: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TrackerSecond:
    second: int
    consumed: int
    end_to_end_us: list[int]
    # Messages behind the high watermark per partition; None when the broker did not answer.
    lag: Mapping[int, int] | None
    lag_time_ms: float | None
    # Consumed per partition, and gaps between consumed batches (bench/core/availability.py).
    consumed_by_partition: Mapping[int, int] = field(default_factory=dict)
    consume_gaps: list[tuple[int, int, int]] = field(default_factory=list)
    # Fan-out: which consumer process reports, and (consumers of a group of several) the offset
    # after the last message it read per partition, so the coordinator knows when the group is done.
    group: int = 0
    consumer: int = 0
    positions: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackerDone:
    """The audit's raw material (see bench/core/audit.py): sequence bitmaps per producer, or
    the consumed offset ranges per partition."""

    seen: Mapping[int, bytes]
    duplicated: int
    foreign: int
    consumed_offsets: Mapping[int, list[tuple[int, int]]]
    offsets_consumed_twice: int
    group: int = 0
    consumer: int = 0
    # perf_counter_ns when its first and its last batch of messages arrived (None: it read none).
    first_read_ns: int | None = None
    last_read_ns: int | None = None


@dataclass(frozen=True)
class Drain:
    """Producing has ended: consume until `target` (the acked count, or with the offset audit
    the offset after the last acked one per partition) or `drain_s` passed (with idle: that
    long without consuming any of this run's messages, so a long backlog still drains). After a
    broker restart the first message may come `reconnect_s` later: the consumer's reconnect
    backoff has grown while the broker was down."""

    target: int | Mapping[int, int]
    drain_s: float
    idle: bool
    reconnect_s: float = 0.0


@dataclass(frozen=True)
class ConsumerSlot:
    """Which consumer process a tracker is (bench/core/groups.py). The default is the run's one
    tracker: it assigns itself every partition under the run's own group id."""

    group: int = 0
    consumer: int = 0
    group_id: str | None = None  # None: the run's tracker group id
    # Join group_id and read what group assignment gives it (from the offsets the coordinator
    # committed for the group at the run's start) instead of assigning itself every partition.
    subscribe: bool = False


@dataclass(frozen=True)
class ConsumerChange:
    """A consumer process a consumer event added or killed (bench/core/processes.py): put on the
    report queue by the coordinator's fault thread, so the one thread that folds reports keeps the books."""

    slot: ConsumerSlot
    second: int
    killed: bool
    group: int = 0
    consumer: int = 0


@dataclass(frozen=True)
class Stop:
    """A consumer of a group of several processes: the group has read up to the drain's end
    offsets (the coordinator adds up its consumers' positions); report and end."""


class Inbox:
    """The coordinator's end of the children's report queue.

    `sleep` None: a blocking process (bench run) waits in the queue's own get. Given (the
    Locust master: gevent.sleep), the queue is polled so other greenlets run while it waits.
    """

    def __init__(self, reports, sleep: Callable[[float], Any] | None = None, poll_interval_s: float = 0.05):
        self.reports = reports
        self.sleep = sleep
        self.poll_interval_s = poll_interval_s

    def get(self, timeout_s: float) -> Any | None:
        """The next report, or None when none arrived within timeout_s."""
        if self.sleep is None:
            try:
                return self.reports.get(timeout=timeout_s)
            except queue.Empty:
                return None
        deadline = time.monotonic() + timeout_s
        while self.reports.empty():
            if time.monotonic() >= deadline:
                return None
            self.sleep(min(self.poll_interval_s, max(0.0, deadline - time.monotonic())))
        return self.reports.get()

    def arrived(self) -> Iterable[Any]:
        """Every report already waiting (never waits)."""
        while True:
            message = self.get(0) if self.sleep is None else (None if self.reports.empty() else self.reports.get())
            if message is None:
                return
            yield message

    def wait_ready(self, names: Iterable[str], timeout_s: float, sentinels: Iterable[int] = (),
                   on_other: Callable[[Any], None] | None = None) -> None:
        """Until every child in `names` said Ready; RunFailed when one fails, dies or is late."""
        waiting = set(names)
        sentinels = list(sentinels)
        deadline = time.monotonic() + timeout_s
        while waiting:
            message = self.get(min(0.5, max(0.0, deadline - time.monotonic())))
            if isinstance(message, ChildFailed):
                raise RunFailed(f"{message.who} could not start: {message.error}{_saved_traceback(message)}")
            if isinstance(message, Ready):
                waiting.discard(message.who)
            elif message is not None and on_other is not None:
                on_other(message)
            if message is None and sentinels and multiprocessing.connection.wait(sentinels, 0):
                raise RunFailed(f"{', '.join(sorted(waiting))}: the process died while starting")
            if waiting and time.monotonic() >= deadline:
                raise RunFailed(f"{', '.join(sorted(waiting))} not ready within {timeout_s:.0f} s")


def _saved_traceback(failure: ChildFailed) -> str:
    """A child that fails before the run has a folder: its traceback goes to a file of its own,
    which the one-line error names."""
    if not failure.traceback:
        return ""
    handle, name = tempfile.mkstemp(prefix="bench-errors-", suffix=".log")
    os.close(handle)
    return f" (traceback in {write_child_errors(Path(name), [failure])})"
