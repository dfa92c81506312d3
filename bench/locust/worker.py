"""The worker side of the Locust user: one producer per Locust process, whose deliveries are
kept as raw numbers by the core's account; each closed second goes into Locust's own statistics
in bulk (bench/locust/bulk_stats.py) and to the master as encoded HdrHistograms with the next
report (Locust's own percentiles keep about two digits)."""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import gevent

from bench.core.audit import OffsetRanges
from bench.core.clients import scenario_producer_config
from bench.core.delivery import DeliveryAccount, DrainDeadline, Sender, payload_pool
from bench.core.protocol import ProducerSecond
from bench.core.recorder import fold_counts, record_counts
from bench.core.scenario import Scenario
from bench.locust.bulk_stats import log_deliveries
from bench.results.histograms import encode_histogram, new_latency_histogram
from streamstore.producer import OrderProducer

# Locust's request type of a delivery (its name is the topic).
LOCUST_METHOD = "produce"
# A flat-out user produces this many messages per task run before yielding: enough to make
# Locust's per-task overhead negligible, few enough that the poll greenlet runs every ~millisecond.
FLAT_OUT_BATCH = 100


# Sleep of a producer whose local queue is full, and of the poll greenlet when no delivery
# report was waiting: short, so deliveries are timed close to when librdkafka has them.
QUEUE_FULL_WAIT_S = 0.001


IDLE_POLL_WAIT_S = 0.0005


# The process that imported the locustfile. Locust loads it before `--processes` forks the
# workers, so in a forked worker this is the pid of its parent (the master).
_LOCUSTFILE_PID = os.getpid()
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


# Without prctl (not Linux), how often a forked worker checks that its master still exists.
PARENT_CHECK_INTERVAL_S = 0.5


def die_with_master() -> None:
    """End this worker when the process that forked it ends, however that process ends.

    Locust's master reaps its `--processes` workers at exit only if they have already exited:
    it never signals one that still runs. A master that stops before the test (a bad option,
    an unreachable broker) so left its workers running under init, holding the terminal's
    pipe open and printing "Didn't get heartbeat from master" a minute later. The kernel's
    parent-death signal covers every way the master can end, SIGKILL included. SIGKILL here
    too: with the master gone, nothing can collect what a worker would say or send on exit.
    A worker started on its own (`--worker`, not forked) keeps Locust's behaviour.
    """
    if os.getpid() == _LOCUSTFILE_PID:
        return
    if not _arm_parent_death_signal():
        gevent.spawn(_exit_when_orphaned)


def _arm_parent_death_signal() -> bool:
    """In a forked worker: SIGKILL when the master ends (Linux prctl); False where there is none.

    Armed right after the fork (os.register_at_fork below), not at Locust's init: a worker
    still connecting to a master that already stopped (a bad option found before the workers
    connected) would otherwise retry for a minute, holding the master's output pipe open."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return False
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The master may have ended between the fork and now, before the signal was armed.
    if os.getppid() != _LOCUSTFILE_PID:
        os._exit(0)
    return True


# Every process forked from the one that imported the locustfile is a `--processes` worker.
os.register_at_fork(after_in_child=lambda: os.getppid() == _LOCUSTFILE_PID and _arm_parent_death_signal())


def _exit_when_orphaned() -> None:
    while os.getppid() == _LOCUSTFILE_PID:
        gevent.sleep(PARENT_CHECK_INTERVAL_S)
    os._exit(0)


def encode_latencies(values: list, to_us: float = 1) -> str | None:
    """One report's raw latencies (µs, or librdkafka's seconds with to_us=1e6) as an encoded
    histogram; folded first, so a value shared by many messages is recorded once."""
    return encode_counts(Counter(values), to_us)


def encode_counts(value_counts: Mapping[float, int], to_us: float = 1) -> str | None:
    """`encode_latencies` of latencies already folded into (value, count) pairs."""
    if not value_counts:
        return None
    histogram = new_latency_histogram()
    record_counts(histogram, fold_counts(value_counts, to_us))
    return encode_histogram(histogram)


def options_bootstrap(environment) -> str:
    return environment.parsed_options.kafka_bootstrap_servers


class WorkerProducer:
    """The producer of one Locust process and what it measured since the last report.

    Sending and delivery accounting are the shared send path (bench/core/delivery.py). The poll
    greenlet closes each second: its service times are folded once (`Counter`), and those
    counts go into Locust's statistics at once and into the second's HDR histogram when a
    report is taken (every 3 s), so both count the same deliveries.
    """

    def __init__(self, environment, scenario: Scenario, run_id: bytes, started_at: float, producer_index: int):
        self.environment = environment
        self.scenario = scenario
        self.run_id = run_id
        self.started_at = started_at
        self.producer_index = producer_index
        self.producer = OrderProducer(scenario_producer_config(scenario, options_bootstrap(environment)),
                                      scenario.topic)
        self.client = self.producer.client
        self.final = False
        self.account = DeliveryAccount(scenario, producer_index)
        # The same payloads as `bench run` sends, so the two measure the same thing. A full
        # queue is freed by the poll greenlet: a blocking poll here would stall every user.
        values, keys = payload_pool(scenario)
        self.sender = Sender(self.client, scenario, run_id, self.account, values, keys,
                             functools.partial(gevent.sleep, QUEUE_FULL_WAIT_S))
        # Locust's response length per request: every value has the scenario's size, except
        # below a bare order's JSON, where this is their mean.
        self._content_length = round(sum(map(len, values)) / len(values))
        # What the run's duration is measured from (wall clock, as `started_at`): this
        # process's first send, its last send as the poll greenlet saw it (within one loop of
        # the send), its last ack (timed as poll returned it). The first send swaps in the
        # plain send path, so timing it costs nothing after.
        self.first_send_at: float | None = None
        self.last_send_at: float | None = None
        self.last_ack_at: float | None = None
        self._seen_sequence = 0
        self.send_flat_out = self._first_send_flat_out
        self.send = self._first_send_scheduled
        self._second = int(time.time() - started_at)
        # Seconds that are over and not reported yet, each with its service times folded.
        self._seconds: dict[int, tuple[ProducerSecond, Counter[float]]] = {}
        self._acked_ranges: dict[int, OffsetRanges] = defaultdict(OffsetRanges)
        self._failed_sequences_reported = 0
        self.totals = Counter()
        self._poller = gevent.spawn(self._poll_forever)

    def _note_first_send(self) -> None:
        if self.first_send_at is None:
            self.first_send_at = time.time()
        self.send_flat_out = self.sender.send_flat_out
        self.send = self.sender.send_scheduled

    def _first_send_flat_out(self, count: int) -> None:
        self._note_first_send()
        self.sender.send_flat_out(count)

    def _first_send_scheduled(self, intended_ns: int) -> None:
        self._note_first_send()
        self.sender.send_scheduled(intended_ns)

    def _poll(self, poll) -> int:
        """poll(0) (or flush(0)), noting when it brought acks and when new sends were seen;
        returns what the call returned."""
        # Sends first: they happened before this call (users run between polls), acks in it.
        if self.sender.sequence != self._seen_sequence:
            self._seen_sequence = self.sender.sequence
            self.last_send_at = time.time()
        acked_before = len(self.account.service_s)  # every ack appends one (emptied only by _close_second)
        served = poll(0)
        if len(self.account.service_s) != acked_before:
            self.last_ack_at = time.time()
        return served

    def _close_second(self, force: bool = False) -> None:
        """Move the current second's data to _seconds once the clock is past it."""
        second = int(time.time() - self.started_at)
        if second <= self._second and not force:
            return
        report = self.account.take_second(self._second)
        # Folded once for both: Locust's statistics now and the HDR histogram of the report.
        service_counts = Counter(report.service_s)
        log_deliveries(self.environment.stats, LOCUST_METHOD, self.scenario.topic, service_counts, report.errors,
                       self._content_length)
        self._seconds[self._second] = dataclasses.replace(report, service_s=[]), service_counts
        for partition, ranges in report.acked_ranges.items():
            for start, end in ranges:
                self._acked_ranges[partition].add_range(start, end)
        self._second = max(second, self._second + 1)

    def _poll_forever(self) -> None:
        poll = self.client.poll
        while True:
            served = self._poll(poll)
            self._close_second()
            gevent.sleep(0 if served else IDLE_POLL_WAIT_S)

    def stop(self, timeout_s: float) -> int:
        """Wait (cooperatively) for outstanding deliveries until timeout_s passes without one;
        returns how many never came."""
        deadline = DrainDeadline(timeout_s)
        while (queued := len(self.client)) and not deadline.expired(queued):
            gevent.sleep(0.01)
        self._poller.kill()
        undelivered = self._poll(self.producer.flush)
        self._close_second(force=True)
        self.final = True
        return undelivered

    def take_report(self) -> dict[str, Any]:
        """The seconds that are over (all of them once stopped), encoded; they leave this process."""
        if not self.final:
            self._close_second()
        seconds = {}
        for second in sorted(self._seconds):
            report, service_counts = self._seconds.pop(second)
            self.totals.update(sent=report.sent, acked=report.acked, failed=report.failed)
            seconds[str(second)] = {
                "sent": report.sent, "acked": report.acked, "failed": report.failed,
                "service_time": encode_counts(service_counts, 1_000_000),
                "response_time": encode_latencies(report.response_us),
                "send_delay": encode_latencies(report.send_delay_us),
            }
        all_failed = self.account.failed_sequences
        failed_sequences = all_failed[self._failed_sequences_reported:]
        self._failed_sequences_reported = len(all_failed)
        # String keys and [start, end] lists: what Locust's message encoding carries unchanged.
        acked_offsets = {str(p): [list(r) for r in ranges.ranges()] for p, ranges in self._acked_ranges.items()}
        self._acked_ranges.clear()
        return {
            "run_id": self.run_id.hex(), "producer": self.producer_index, "seconds": seconds,
            # The master samples this process's CPU and RSS when it runs on the same host.
            "pid": os.getpid(),
            "through": None if self.final else self._second - 1, "final": self.final,
            "sent_total": self.sender.sequence, "failed_sequences": failed_sequences,
            "acked_offsets": acked_offsets,
            "first_send_at": self.first_send_at, "last_send_at": self.last_send_at, "last_ack_at": self.last_ack_at,
        }
