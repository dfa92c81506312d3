"""What each member of a joining consumer group has read, reported as it goes (`GroupRead`), so a
member killed with SIGKILL, which never sends its TrackerDone, still has an account.

The member's side (`ReadCollector`, in bench/core/tracker.py): the sequences it saw for the
first time, the offset ranges it read (offset audit), the first and last moment it read each
partition and the position after its last read, since its previous GroupRead. It sends one after
each per-second report and one from its revocation callback before it commits. A member commits
only positions it has already reported (the previous report's), so everything a killed member
read and did not report is read again by the partition's next owner: the audit stays exact, and
the re-read shows up as duplicates.

The coordinator's side (`GroupReads`): each member's account so far (the stand-in TrackerDone of
a killed member), and per group the duplicates of each second (a sequence or offset another
member had read before, plus the member's own re-reads), the spans of reading per partition and
the owner's position per partition each second: the raw material of the rebalance figures
(bench/analysis/rebalance.py).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bench.core.audit import OffsetRanges
from bench.core.protocol import TrackerDone


@dataclass(frozen=True)
class GroupRead:
    """A group member's reads since its previous GroupRead (see the module docstring)."""

    group: int
    consumer: int
    second: int
    # producer -> (first byte index, bitmap bytes from there): sequences seen for the first time.
    sequences: Mapping[int, tuple[int, bytes]] = field(default_factory=dict)
    # Offset audit: partition -> [start, end) ranges read.
    offsets: Mapping[int, list[tuple[int, int]]] = field(default_factory=dict)
    # partition -> (first, last) perf_counter_ns at which it was read.
    spans: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    # partition -> the offset after the last message read (partitions read since the previous one).
    positions: Mapping[int, int] = field(default_factory=dict)
    # Cumulative, within the process: sequences read twice, offsets read twice, foreign messages.
    duplicated: int = 0
    offsets_twice: int = 0
    foreign: int = 0


class ReadCollector:
    """A member's reads since the last `take()`."""

    def __init__(self) -> None:
        self.sequences: defaultdict[int, list[int]] = defaultdict(list)
        self.offsets: defaultdict[int, OffsetRanges] = defaultdict(OffsetRanges)
        self.spans: dict[int, tuple[int, int]] = {}
        self.positions: dict[int, int] = {}

    def note_batch(self, messages, now_ns: int, offsets: bool) -> None:
        """One consumed batch (read at now_ns): spans and positions, and with the offset audit the ranges."""
        spans, positions = self.spans, self.positions
        for message in messages:
            partition, offset = message.partition(), message.offset()
            positions[partition] = offset + 1
            if offsets:
                self.offsets[partition].add(offset)
        for partition in {message.partition() for message in messages}:
            first = spans.get(partition, (now_ns, now_ns))[0]
            spans[partition] = (first, now_ns)

    def take(self, group: int, consumer: int, second: int, duplicated: int, offsets_twice: int,
             foreign: int) -> GroupRead:
        read = GroupRead(group, consumer, second, {p: _bitmap(seqs) for p, seqs in self.sequences.items() if seqs},
                         {p: ranges.ranges() for p, ranges in self.offsets.items()}, dict(self.spans),
                         dict(self.positions), duplicated, offsets_twice, foreign)
        self.sequences.clear()
        self.offsets.clear()
        self.spans.clear()
        self.positions.clear()
        return read


def _bitmap(sequences: list[int]) -> tuple[int, bytes]:
    low, high = min(sequences) >> 3, max(sequences) >> 3
    bits = bytearray(high - low + 1)
    for sequence in sequences:
        bits[(sequence >> 3) - low] |= 1 << (sequence & 7)
    return low, bytes(bits)


class _Account:
    """One member's reads so far, as its GroupReads said."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.offsets: defaultdict[int, OffsetRanges] = defaultdict(OffsetRanges)
        self.duplicated = self.offsets_twice = self.foreign = 0


class GroupReads:
    """The coordinator's fold of every member's GroupReads, per group."""

    def __init__(self) -> None:
        self.members: dict[tuple[int, int], _Account] = {}
        self.union_seen: defaultdict[int, dict[int, int]] = defaultdict(dict)
        self.union_offsets: defaultdict[int, defaultdict[int, OffsetRanges]] = defaultdict(lambda: defaultdict(OffsetRanges))
        # group -> second -> orders read a second time in that second (by another member or the same).
        self.duplicated: defaultdict[int, Counter[int]] = defaultdict(Counter)
        # group -> partition -> [(first_ns, last_ns)] spans of reading.
        self.spans: defaultdict[int, defaultdict[int, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        # group -> second -> partition -> position of the member that read it last in that second.
        self.positions: defaultdict[int, dict[int, dict[int, int]]] = defaultdict(dict)

    def add(self, read: GroupRead) -> None:
        key, group = (read.group, read.consumer), read.group
        account = self.members.setdefault(key, _Account())
        union_seen, twice = self.union_seen[group], 0
        for producer, (low, bits) in read.sequences.items():
            value = int.from_bytes(bits, "little") << (8 * low)
            own, everyone = account.seen.get(producer, 0), union_seen.get(producer, 0)
            twice += (value & everyone).bit_count() - (value & own).bit_count()
            account.seen[producer], union_seen[producer] = own | value, everyone | value
        for partition, ranges in read.offsets.items():
            for start, end in ranges:
                twice += (self.union_offsets[group][partition].add_range(start, end)
                          - account.offsets[partition].add_range(start, end))
        twice += (read.duplicated - account.duplicated) + (read.offsets_twice - account.offsets_twice)
        account.duplicated, account.offsets_twice, account.foreign = read.duplicated, read.offsets_twice, read.foreign
        if twice:
            self.duplicated[group][max(0, read.second)] += twice
        for partition, span in read.spans.items():
            self.spans[group][partition].append(span)
        if read.positions:
            self.positions[group].setdefault(max(0, read.second), {}).update(read.positions)

    def stand_in(self, group: int, consumer: int) -> TrackerDone:
        """The account of a member that never sent its TrackerDone (killed): what it reported."""
        account = self.members.get((group, consumer), _Account())
        return TrackerDone(
            seen={p: value.to_bytes(max(1, (value.bit_length() + 7) // 8), "little") for p, value in account.seen.items()},
            duplicated=account.duplicated, foreign=account.foreign,
            consumed_offsets={p: ranges.ranges() for p, ranges in account.offsets.items()},
            offsets_consumed_twice=account.offsets_twice, group=group, consumer=consumer)

    def group_spans(self, group: int) -> dict[int, list[tuple[int, int]]]:
        return {p: sorted(spans) for p, spans in self.spans[group].items()}


def owner_positions(updates: Mapping[int, Mapping[int, int]], start: Mapping[int, int], seconds: Iterable[int]
                    ) -> dict[int, dict[int, int]]:
    """second -> partition -> position of the partition's current reader at the end of that second,
    carried forward from the start offsets (pure)."""
    current, by_second = dict(start), {}
    for second in seconds:
        current.update(updates.get(second, {}))
        by_second[second] = dict(current)
    return by_second
