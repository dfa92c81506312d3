"""The coordinator's side of the measurement: it folds the children's reports into HDR
histograms and per-second series, keeps what the audit needs, and knows when a second is
closed (every reporter has reported past it). `bench run` feeds it the protocol messages of
its own children; the Locust master feeds it the tracker's messages and the workers' reports.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from bench.core.audit import (
    OFFSETS,
    AuditOutcome,
    OffsetRanges,
    ProducerAccount,
    TrackerAccount,
    clip_ranges,
    evaluate_audit,
)
from bench.core.availability import ActivityLog
from bench.core.group_reads import GroupRead
from bench.core.groups import GroupMeasurements, worst_audit
from bench.core.protocol import (
    ChildFailed,
    ConsumerChange,
    ProducerDone,
    ProducerSecond,
    TrackerDone,
    TrackerSecond,
    producer_name,
    tracker_name,
)
from bench.core.recorder import RunRecorder


class RunMeasurements:
    def __init__(self, warmup_s: float, reporters: Iterable[str] = (), groups: GroupMeasurements | None = None):
        self.recorder = RunRecorder(warmup_s)
        # Offset audit: every acked offset per partition, from the producers' reports.
        self.acked_offsets: defaultdict[int, OffsetRanges] = defaultdict(OffsetRanges)
        self.producers: dict[int, ProducerDone] = {}
        self.tracker_done: TrackerDone | None = None
        self.failure: str | None = None
        # Children that failed with an exception, with their tracebacks (the run's errors.log).
        self.child_failures: list[ChildFailed] = []
        # reporter -> the last second it reported; a second closes when all are past it.
        self.reported_through: dict[str, int] = {name: -1 for name in reporters}
        # Per-partition acks and consumed messages, and the gaps between them (failover figures).
        self.partition_acks = ActivityLog()
        self.partition_consumed = ActivityLog()
        # Fan-out (bench/core/groups.py): every group's figures; the recorder keeps group 0's.
        self.groups = groups
        # Consume-only: per partition the [start, end) offsets the audit holds the reads against.
        self.audited: dict[int, tuple[int, int]] | None = None

    def audit_within(self, ranges: Mapping[int, tuple[int, int]]) -> None:
        """Consume-only: the broker's offsets [start, end) per partition are what must have been read
        (the acked offsets of the offset audit); reads beyond them are not audited."""
        self.audited = dict(ranges)
        self.add_acked_ranges({p: [(start, end)] for p, (start, end) in ranges.items()})
    def set_warmup(self, warmup_s: float) -> None:
        """The warm-up, in seconds after t0, once it is known (a backlog run's starts with its
        catch-up): every recorder's measured window and live percentiles follow it."""
        recorders = [self.recorder, *self.recorder.latency.values()]
        if self.groups is not None:
            recorders += self.groups.end_to_end.values()
        for recorder in recorders:
            recorder.warmup_s = warmup_s

    def handle(self, message) -> None:
        """One protocol message from a producer or the tracker."""
        if isinstance(message, ProducerSecond):
            self.recorder.add_producer_report(message.second, message.sent, message.acked, message.failed,
                                              message.service_s, message.response_us, message.send_delay_us)
            self.recorder.add_client_latency(message.second, message.client_latency)
            self.recorder.add_commit_latency(message.second, message.commit_us)
            self.recorder.add_client_stats(message.second, message.client_stats)
            self.add_acked_ranges(message.acked_ranges)
            self.partition_acks.add(message.second, message.acked_by_partition, message.ack_gaps)
            self.reported_through[producer_name(message.producer)] = message.second
        elif isinstance(message, TrackerSecond):
            if message.group == 0:
                self.recorder.add_tracker_report(max(0, message.second), message.consumed, message.end_to_end_us,
                                                 message.lag, message.lag_time_ms)
                self.partition_consumed.add(max(0, message.second), message.consumed_by_partition, message.consume_gaps)
            if self.groups is not None:
                self.groups.add_second(message)
            name = tracker_name(message.group, message.consumer)
            if name in self.reported_through:
                self.reported_through[name] = max(self.reported_through[name], message.second)
        elif isinstance(message, ProducerDone):
            self.producers[message.producer] = message
            self.reported_through.pop(producer_name(message.producer), None)
        elif isinstance(message, TrackerDone):
            self.reported_through.pop(tracker_name(message.group, message.consumer), None)
            if self.groups is None:
                self.tracker_done = message
            else:
                self.groups.add_done(message)
                if self.groups.all_done():
                    self.tracker_done = self.groups.group_done(0)
        elif isinstance(message, ConsumerChange):
            if message.killed:
                self.consumer_killed(message.group, message.consumer)
            else:
                self.consumer_added(message.slot, message.second)
        elif isinstance(message, GroupRead):
            if self.groups is not None:
                self.groups.add_read(message)
        elif isinstance(message, ChildFailed):
            self.failure = self.failure or f"{message.who} failed: {message.error}"
            if message.traceback:
                self.child_failures.append(message)
        self.close_finished_seconds()

    def consumer_killed(self, group: int, consumer: int) -> None:
        """A consumer process the run's faults killed: no more reports, its account is what it reported."""
        self.groups.kill(group, consumer)
        self.reported_through.pop(tracker_name(group, consumer), None)
        if self.groups.all_done():
            self.tracker_done = self.groups.group_done(0)

    def consumer_added(self, slot, second: int) -> None:
        """A consumer process added during the run: seconds close once it has reported past them too."""
        self.groups.add_slot(slot)
        self.reported_through[tracker_name(slot.group, slot.consumer)] = second - 1

    def add_acked_ranges(self, ranges: Mapping[int, Iterable[tuple[int, int]]]) -> None:
        for partition, pairs in ranges.items():
            for start, end in pairs:
                self.acked_offsets[int(partition)].add_range(start, end)

    def close_finished_seconds(self) -> None:
        """Seal the seconds every reporter is past (an open second holds a ~400 KB histogram)."""
        if self.reported_through:
            self.recorder.close_through(min(self.reported_through.values()))
            if self.groups is not None:
                self.groups.close_through(min(self.reported_through.values()))

    def closed_through(self) -> int:
        return min(self.reported_through.values()) if self.reported_through else self.recorder.last_second

    def drain_target(self, method: str, read_committed: bool = True) -> int | dict[int, int]:
        """What the tracker must have consumed: the offset after the last acked one per partition
        (offset audit) or the acked count (sequence audit), less the records of aborted
        transactions, which a read_committed tracker never sees."""
        if method == OFFSETS:
            return {p: offsets.ends[-1] for p, offsets in self.acked_offsets.items() if offsets.ends}
        return self.recorder.totals()["acked"] - (self.aborted_records() if read_committed else 0)

    def aborted_records(self) -> int:
        return sum((p.transactions or {}).get("aborted_records", 0) for p in self.producers.values())

    def audit(self, method: str, producers: Iterable[ProducerAccount] | None = None) -> AuditOutcome:
        """Lost and duplicated (None when no tracker reported its account); with fan-out the
        worst group's (bench/core/groups.py)."""
        if self.groups is None:
            return self._audit_of(self.tracker_done, method, producers)
        return worst_audit(self.group_audits(method, producers))

    def group_audits(self, method: str, producers: Iterable[ProducerAccount] | None = None) -> list[AuditOutcome]:
        """Each group's audit, over the union of what its consumer processes read."""
        producers = None if producers is None else list(producers)
        return [self._audit_of(self.groups.group_done(group), method, producers) for group in self.groups.groups]

    def _audit_of(self, done: TrackerDone | None, method: str, producers: Iterable[ProducerAccount] | None) -> AuditOutcome:
        if producers is None:
            producers = [ProducerAccount(p.producer, p.sent, p.acked, p.failed_sequences, p.timed_out,
                                         None if p.transactions is None else p.transactions["aborted_ranges"])
                         for p in self.producers.values()]
        tracker = None
        if done is not None:
            consumed = done.consumed_offsets if self.audited is None else {
                p: clip_ranges(ranges, *self.audited.get(p, (0, 0))) for p, ranges in done.consumed_offsets.items()}
            tracker = TrackerAccount(done.seen, done.duplicated, done.foreign, consumed, done.offsets_consumed_twice)
        acked = {p: offsets.ranges() for p, offsets in self.acked_offsets.items()}
        return evaluate_audit(method, producers, tracker, acked)
