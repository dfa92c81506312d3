"""Per-partition availability: acks (or consumed messages) per partition and the gaps between them.

`PartitionActivity` lives in a producer's delivery account and in the tracker: each ack (each
consumed batch) notes its partition with one call. It counts them per partition and keeps every
gap between two consecutive ones of the same partition that is at least `MIN_GAP_NS` long, as
(partition, start_ns, end_ns) on `time.perf_counter_ns()`, the clock the coordinator's t0 is on
(CLOCK_MONOTONIC is one clock for every process on the host). Short gaps are the normal
rhythm of batches and are not kept, so a run's report stays small.

`ActivityLog` is the coordinator's side: per-second counts per partition and the gaps of every
reporter, relative to the run's t0 in ms, ready for bench/analysis/failover.py.

A partition whose acks stop and never resume has no closing ack: `close()` at the end of the
producer's (the tracker's) work ends its gap there, so a stall that outlasts the run is kept.
A partition never acked at all has no gap (nothing to measure from).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

NS_PER_MS = 1_000_000
# Batches of one partition are acked every few ms at the rates measured here, and a GC pause or
# a scheduler hiccup on a busy 2-core machine reaches ~100 ms; a gap above this is kept.
MIN_GAP_NS = 100 * NS_PER_MS

# (partition, start_ns, end_ns)
Gap = tuple[int, int, int]


class PartitionActivity:
    """Counts per partition and the long gaps, since the last `take()`."""

    __slots__ = ("last_ns", "counts", "gaps", "min_gap_ns")

    def __init__(self, min_gap_ns: int = MIN_GAP_NS):
        self.min_gap_ns = min_gap_ns
        self.last_ns: dict[int, int] = {}
        self.counts: Counter[int] = Counter()
        self.gaps: list[Gap] = []

    def note(self, partition: int, now_ns: int | None = None, count: int = 1) -> None:
        now = time.perf_counter_ns() if now_ns is None else now_ns
        last = self.last_ns.get(partition)
        if last is not None and now - last >= self.min_gap_ns:
            self.gaps.append((partition, last, now))
        self.last_ns[partition] = now
        self.counts[partition] += count

    def note_batch(self, partitions: Iterable[int], now_ns: int | None = None) -> None:
        """A batch received at one moment (the tracker's consume): one note per partition in it."""
        now = time.perf_counter_ns() if now_ns is None else now_ns
        for partition, count in Counter(partitions).items():
            self.note(partition, now, count)

    def close(self, now_ns: int | None = None) -> None:
        """The end of the activity: a partition silent for at least the minimum gap since its
        last note gets that gap, ending now."""
        now = time.perf_counter_ns() if now_ns is None else now_ns
        for partition, last in self.last_ns.items():
            if now - last >= self.min_gap_ns:
                self.gaps.append((partition, last, now))
            self.last_ns[partition] = now

    def take(self) -> tuple[dict[int, int], list[Gap]]:
        """(counts per partition, gaps) since the last take."""
        counts, gaps = dict(self.counts), self.gaps[:]
        self.counts.clear()
        self.gaps.clear()
        return counts, gaps


class ActivityLog:
    """The coordinator's record of one kind of activity (acks or consumed) over the run."""

    def __init__(self) -> None:
        self.by_second: defaultdict[int, Counter[int]] = defaultdict(Counter)
        self.gaps_ns: list[Gap] = []

    def add(self, second: int, counts: Mapping[int, int], gaps: Iterable[Gap]) -> None:
        self.by_second[second].update(counts)
        self.gaps_ns.extend(gaps)

    def gaps_ms(self, t0_ns: int) -> list[dict[str, Any]]:
        """Every kept gap as {partition, start_ms, end_ms, gap_ms}, times from the run's t0."""
        return [{"partition": partition, "start_ms": round((start - t0_ns) / NS_PER_MS, 1),
                 "end_ms": round((end - t0_ns) / NS_PER_MS, 1), "gap_ms": round((end - start) / NS_PER_MS, 1)}
                for partition, start, end in sorted(self.gaps_ns, key=lambda gap: gap[1])]

    def totals(self) -> dict[int, int]:
        """partition -> count over the whole run."""
        totals: Counter[int] = Counter()
        for counts in self.by_second.values():
            totals.update(counts)
        return dict(totals)

    def series(self, seconds: int) -> dict[str, list[int]]:
        """partition (as text, a JSON key) -> count in each second 0..seconds-1."""
        partitions = sorted({p for counts in self.by_second.values() for p in counts})
        return {str(p): [self.by_second.get(second, Counter()).get(p, 0) for second in range(seconds)]
                for p in partitions}
