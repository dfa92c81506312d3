"""Consumer groups and fan-out: `consumer_groups` independent groups, each reading the whole
topic, with `consumers_per_group` tracker processes in each.

Every consumer process is the run's tracker (bench/core/tracker.py) with a `ConsumerSlot`:
its group, its index and the group's id (`bench-tracker-<run id>-g<group>`). A group of one
process assigns itself every partition, as the one tracker always did; a group of several
joins its group id and reads what group assignment gives each member, from the start offsets
the coordinator commits for the group before the run. With the defaults (one group of one
process) nothing changes: one slot, the run's own group id, the name TRACKER.

The coordinator's side is here: `GroupMeasurements` folds each group's reports (end-to-end
latency histogram, consumed count, lag per partition, each process's consumed count), the
group's audit takes the union of its processes' TrackerDone accounts (`merged_done`: lost =
acked but read by no process of the group; duplicated = read twice, by one process or by two)
and goes through the one audit, `evaluate_audit`. Headline figures of a fan-out run: counts,
end-to-end latency and lag are group 0's; lost and duplicated are the worst group's
(`worst_audit`), so an order any group missed fails the run.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition

from bench.core.audit import AuditOutcome, OffsetRanges
from bench.core.clients import describe_error, high_watermarks, scenario_admin, scenario_watermarks
from bench.core.group_protocol import configure_groups
from bench.core.group_reads import GroupRead, GroupReads
from bench.core.protocol import ConsumerSlot, Drain, Stop, TrackerDone, TrackerSecond, tracker_name
from bench.core.recorder import LatencyRecorder, fold_latencies
from bench.core.scenario import Scenario
from bench.core.scenario_checks import has_consumer_events, joins_groups
from bench.results.formatting import format_us
from bench.results.metrics import LATENCY_LABELS
from streamstore.errors import RunFailed


def consumer_slots(scenario: Scenario, run_id: str) -> list[ConsumerSlot]:
    """One slot per consumer process of the run, group by group."""
    if not fans_out(scenario):
        return [ConsumerSlot()]
    subscribe = joins_groups(scenario)
    return [ConsumerSlot(group, consumer, f"bench-tracker-{run_id}-g{group}", subscribe)
            for group in range(scenario.consumer_groups) for consumer in range(scenario.consumers_per_group)]


def fans_out(scenario: Scenario) -> bool:
    """Whether the run has more than its one tracker (and so a `groups` section)."""
    return scenario.consumer_groups > 1 or scenario.consumers_per_group > 1 or has_consumer_events(scenario)


def added_slot(slots: Sequence[ConsumerSlot], group: int, consumer: int) -> ConsumerSlot:
    """The slot of a consumer process added to a group during the run (add-consumer)."""
    first = next(slot for slot in slots if slot.group == group)
    return ConsumerSlot(group, consumer, first.group_id, True)


def commit_group_starts(scenario: Scenario, bootstrap_servers: str, slots: Sequence[ConsumerSlot],
                        start_offsets: Mapping[int, int], timeout_s: float = 30.0) -> None:
    """The run's start offsets as the committed offsets of every joining group: its members read
    from where the run began, not from an earlier run's end nor the topic's beginning. A run
    without such a group opens no client here."""
    group_ids = sorted({slot.group_id for slot in slots if slot.subscribe})
    if not group_ids:
        return
    configure_groups(scenario, bootstrap_servers, group_ids, timeout_s)
    admin, topic = scenario_admin(scenario, bootstrap_servers), scenario.topic
    requests = [ConsumerGroupTopicPartitions(group_id, [TopicPartition(topic, p, offset)
                                                        for p, offset in sorted(start_offsets.items())])
                for group_id in group_ids]
    # One group per request: the admin API takes a single group at a time.
    for request in requests:
        for future in admin.alter_consumer_group_offsets([request], request_timeout=timeout_s).values():
            try:
                future.result()
            except KafkaException as error:
                raise RunFailed(f"cannot set the start offsets of consumer group {request.group_id}: "
                                f"{describe_error(error)}") from None


def _bits_or(bitmaps: Iterable[bytes]) -> tuple[bytes, int]:
    """The union of sequence bitmaps, and how many bits were set in more than one of them."""
    union, total = 0, 0
    for bits in bitmaps:
        value = int.from_bytes(bits, "little")
        total += value.bit_count()
        union |= value
    length = max(1, (union.bit_length() + 7) // 8)
    return union.to_bytes(length, "little"), total - union.bit_count()


def merged_done(dones: Sequence[TrackerDone]) -> TrackerDone:
    """One group's audit input from its processes' accounts. Pure. A sequence or offset read by
    two processes (a partition handed over before its reader committed) is a duplicate, like
    one read twice by the same process."""
    if len(dones) == 1:
        return dones[0]
    seen, overlap = {}, 0
    for producer in sorted({p for done in dones for p in done.seen}):
        seen[producer], twice = _bits_or(done.seen[producer] for done in dones if producer in done.seen)
        overlap += twice
    consumed: defaultdict[int, OffsetRanges] = defaultdict(OffsetRanges)
    offsets_twice = 0
    for done in dones:
        for partition, ranges in done.consumed_offsets.items():
            for start, end in ranges:
                offsets_twice += consumed[partition].add_range(start, end)
    return TrackerDone(seen=seen, duplicated=sum(d.duplicated for d in dones) + overlap,
                       foreign=sum(d.foreign for d in dones),
                       consumed_offsets={p: ranges.ranges() for p, ranges in sorted(consumed.items())},
                       offsets_consumed_twice=sum(d.offsets_consumed_twice for d in dones) + offsets_twice,
                       group=dones[0].group,
                       first_read_ns=min((d.first_read_ns for d in dones if d.first_read_ns), default=None),
                       last_read_ns=max((d.last_read_ns for d in dones if d.last_read_ns), default=None))


def worst_audit(outcomes: Sequence[AuditOutcome]) -> AuditOutcome:
    """The run's headline audit of a fan-out run: a group that was not audited (its consumers
    did not all report) if any, else the group that lost the most, then duplicated the most."""
    for group, outcome in enumerate(outcomes):
        if outcome.lost is None:
            reason = outcome.not_audited or "not audited"
            return AuditOutcome(outcome.method, None, None, not_audited=f"group {group}: {reason}")
    return max(outcomes, key=lambda outcome: (outcome.lost, outcome.duplicated or 0))


class GroupMeasurements:
    """Each group's reports, folded as they arrive (the run's RunRecorder keeps group 0's too)."""

    def __init__(self, slots: Sequence[ConsumerSlot], warmup_s: float):
        self.slots = list(slots)
        self.groups = sorted({slot.group for slot in slots})
        self.end_to_end = {group: LatencyRecorder(warmup_s) for group in self.groups}
        self.consumed: dict[tuple[int, int], Counter[int]] = {(s.group, s.consumer): Counter() for s in slots}
        self.lag: dict[int, dict[int, dict[int, int]]] = {group: {} for group in self.groups}
        self.positions: dict[tuple[int, int], dict[int, int]] = {(s.group, s.consumer): {} for s in slots}
        self.done: dict[tuple[int, int], TrackerDone] = {}
        # Joining groups: what each member reported as it read (bench/core/group_reads.py), the
        # members killed on purpose (their account is what they reported), the gaps in reading.
        self.reads = GroupReads()
        self.killed: set[tuple[int, int]] = set()
        self.gaps: dict[int, list[tuple[int, int, int]]] = {group: [] for group in self.groups}

    def add_slot(self, slot: ConsumerSlot) -> None:
        """A consumer process added during the run."""
        key = (slot.group, slot.consumer)
        self.slots.append(slot)
        self.consumed[key], self.positions[key] = Counter(), {}

    def add_read(self, read: GroupRead) -> None:
        self.reads.add(read)

    def kill(self, group: int, consumer: int) -> None:
        self.killed.add((group, consumer))

    def add_second(self, message: TrackerSecond) -> None:
        key, second = (message.group, message.consumer), max(0, message.second)
        self.consumed[key][second] += message.consumed
        self.end_to_end[message.group].record(second, fold_latencies(message.end_to_end_us))
        if message.lag is not None:
            self.lag[message.group].setdefault(second, {}).update(message.lag)
        self.positions[key].update(message.positions)
        self.gaps[message.group].extend(message.consume_gaps)

    def add_done(self, message: TrackerDone) -> None:
        self.done[(message.group, message.consumer)] = message

    def all_done(self) -> bool:
        return all(key in self.done or key in self.killed for key in self.consumed)

    def close_through(self, second: int) -> None:
        for recorder in self.end_to_end.values():
            recorder.close_through(second)

    def members(self, group: int) -> list[tuple[int, int]]:
        return [(s.group, s.consumer) for s in self.slots if s.group == group]

    def group_done(self, group: int) -> TrackerDone | None:
        """The group's merged account, None until every process of the group reported."""
        dones = [self.done.get(key) or (self.reads.stand_in(*key) if key in self.killed else None)
                 for key in self.members(group)]
        return None if any(done is None for done in dones) else merged_done(dones)

    def read_to(self, group: int, ends: Mapping[int, int]) -> bool:
        """Has some process of the group read every partition up to `ends` (partition -> offset)?"""
        members = self.members(group)
        return all(max(self.positions[key].get(p, 0) for key in members) >= end for p, end in ends.items())

    def section(self, audits: Sequence[AuditOutcome], window: Sequence[int], seconds: int) -> list[dict[str, Any]]:
        """result.json's `groups`: one entry per group (docs/result-format.md); lag per second of
        the run's series (`seconds` of them: a tracker's last report may fall after them)."""
        measured_s = len(window)
        entries = []
        for group, audit in zip(self.groups, audits):
            consumers = []
            for key in self.members(group):
                in_window = sum(self.consumed[key].get(second, 0) for second in window)
                consumers.append({"consumer": tracker_name(*key), "consumed": sum(self.consumed[key].values()),
                                  "consumed_per_s": round(in_window / measured_s, 1) if measured_s else None,
                                  **({"killed": True} if key in self.killed else {})})
            lag_series = [sum(lags.values()) if (lags := self.lag[group].get(s)) is not None else None
                          for s in range(seconds)]
            end_to_end = self.end_to_end[group].summary(window)
            end_to_end.pop("histogram")
            entries.append({
                "group": group, "group_id": self.group_id(group), "consumers": consumers,
                "consumed": sum(c["consumed"] for c in consumers), "lost": audit.lost, "duplicated": audit.duplicated,
                "not_audited": audit.not_audited, "end_to_end_us": end_to_end,
                "lag_max_messages": max((lag_series[s] for s in window if s < len(lag_series) and lag_series[s] is not None),
                                        default=None),
                "lag_messages": lag_series})
        return entries

    def group_id(self, group: int) -> str | None:
        return next(slot.group_id for slot in self.slots if slot.group == group)


def drain_ends(scenario: Scenario, bootstrap_servers: str, start_offsets: Mapping[int, int], measured) -> dict[int, int] | None:
    """Where a group of several processes reads to: every partition that grew during the run, to
    its high watermark now (producing has ended). None with one process per group, and when no
    node answered (the run's failure says so; the drain then ends by its timeout)."""
    if not joins_groups(scenario):
        return None
    try:
        ends = high_watermarks(scenario_watermarks(scenario, bootstrap_servers))
    except RunFailed as error:
        measured.failure = measured.failure or f"cannot read where the consumer groups must drain to: {error}"
        return None
    return {p: end for p, end in ends.items() if end > start_offsets.get(p, 0)}


def start_drain(measured, controls: Sequence[Any], drain: Drain, ends: Mapping[int, int] | None) -> Callable[[], bool]:
    """Hand every consumer process the drain; the coordinator's test of when it is over."""
    if measured.groups is None:
        controls[0].put(drain)
        return lambda: measured.tracker_done is not None
    fanout = FanoutDrain(measured.groups, controls)
    fanout.start(drain, ends)
    return fanout.finished


class FanoutDrain:
    """The drain of a fan-out run: each consumer process gets the Drain; a group of several
    processes reads until, by its members' positions, it has read to the end offsets the
    coordinator read when producing ended, then each member gets a Stop."""

    def __init__(self, groups: GroupMeasurements, controls: Sequence[Any]):
        self.groups = groups
        self.controls = controls
        self.ends: Mapping[int, int] | None = None
        self.stopped: set[int] = set()

    def start(self, drain: Drain, ends: Mapping[int, int] | None) -> None:
        """ends: the offsets a group of several processes reads to (None: one process per group,
        each tracker drains by `drain.target` itself)."""
        self.ends = ends
        for slot, control in zip(self.groups.slots, self.controls):
            if (slot.group, slot.consumer) not in self.groups.killed:
                control.put(Drain(None, drain.drain_s, drain.idle, drain.reconnect_s) if slot.subscribe else drain)

    def finished(self) -> bool:
        """Every consumer process reported its account; on the way, stop each group that read everything."""
        if self.ends is not None:
            for group in self.groups.groups:
                if group not in self.stopped and self.groups.read_to(group, self.ends):
                    self.stopped.add(group)
                    for slot, control in zip(self.groups.slots, self.controls):
                        if slot.group == group and (slot.group, slot.consumer) not in self.groups.killed:
                            control.put(Stop())
        return self.groups.all_done()


def group_lines(groups: Sequence[Mapping[str, Any]]) -> list[str]:
    """The console's line per group, after the run's summary."""
    lines = []
    for entry in groups:
        end_to_end = entry["end_to_end_us"]
        p99 = format_us(end_to_end["p99"]) if end_to_end.get("p99") is not None else "n/a"
        audit = (f"lost {entry['lost']:,}, duplicated {entry['duplicated']:,}" if entry["lost"] is not None
                 else f"not audited ({entry['not_audited']})")
        rates = ", ".join(f"{c['consumed_per_s']:,.0f}" if c["consumed_per_s"] is not None else "n/a"
                          for c in entry["consumers"])
        lines.append(f"group {entry['group']} ({len(entry['consumers'])} consumer(s)): consumed {entry['consumed']:,}, "
                     f"{audit}, {LATENCY_LABELS['end_to_end'][0]} p99 {p99}, msg/s per consumer {rates}")
    return lines
