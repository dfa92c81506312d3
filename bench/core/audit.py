"""The loss audit: which acked orders the tracker never consumed, which it consumed twice.

Two exact methods (see docs/measurement.md):
  sequences  every message carries the trace header (run id, producer, sequence): lost = sent
             sequences neither consumed nor failed; duplicated = sequences consumed twice.
  offsets    flat out only every TRACE_SAMPLE_EVERY-th message carries the header (the header
             costs about a quarter of a flat-out producer's CPU): each delivery report's
             (partition, offset) is shipped as ranges, the tracker notes every offset it
             consumes; lost = acked offsets never consumed, duplicated = consumed offsets no
             delivery report claimed (a retry's first copy) plus offsets consumed twice.
  counts     flat out with failures-only delivery reports (no report, so no offset, per acked
             message): the tracker notes every offset it consumes as in `offsets`; lost = acked
             (accepted - failed) - distinct offsets consumed, duplicated = the excess the other
             way plus offsets consumed twice. Exact while no message is written twice (a retried
             send's first copy would hide one lost one; idempotence rules that out), and the
             sequences of the traced messages are not needed.
With acks=0 the broker returns no offsets, so a flat-out run with acks=0 uses sequences; so does a
run with transactions (every message traced): the aborted transactions' sequences are known, and
the audit expects them never consumed under read_committed, counting any that are
(`aborted_consumed`); an aborted order is never lost.
A delivery that failed with a timeout may still have been written ("possibly persisted"): no
method counts it lost, and `counts` does not count its copy as a duplicate.

`evaluate_audit` turns what the producers and the tracker reported into the lost/duplicated
counts, and `run_verdict` turns the counts into status, failure text and exit code: every
engine (bench run, chaos, calibrate, the Locust user) calls these two, and the large-message
sweep, whose consumers count per cell, calls `run_verdict`; nothing else decides.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.core.scenario import Scenario
from streamstore.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED

SEQUENCES = "sequences"
OFFSETS = "offsets"
OFFSET_COUNTS = "counts"
# Flat out, only every this many messages carries the trace header. Power of two so the test
# is `sequence & mask`; 1/64 of a flat-out second is still thousands of end-to-end samples.
TRACE_SAMPLE_EVERY = 64
# How many lost orders a result names as examples.
LOST_EXAMPLES = 10


def audit_method(scenario: Scenario) -> str:
    """offsets flat out (sampled trace; counts with failures-only reports), sequences at a
    fixed rate or with acks=0."""
    if scenario.rate != 0 or scenario.acks == "0" or scenario.transaction_size:
        return SEQUENCES
    return OFFSET_COUNTS if scenario.delivery_reports == "failures" else OFFSETS


def audits_offsets(scenario: Scenario) -> bool:
    """Whether the tracker notes consumed offsets (and the trace rides on every n-th message only)."""
    return audit_method(scenario) in (OFFSETS, OFFSET_COUNTS)


def trace_sample_every(scenario: Scenario) -> int:
    """1: every message carries the trace header; TRACE_SAMPLE_EVERY: only every n-th."""
    return TRACE_SAMPLE_EVERY if audits_offsets(scenario) else 1


class SequenceAudit:
    """Which sequences of which producer the tracker has seen: one bit each.

    A bitmap keeps a 10-minute run at 20,000 msg/s (12 million sequences) in 1.5 MB and
    travels between processes as bytes.
    """

    def __init__(self) -> None:
        self.seen: dict[int, bytearray] = {}
        self.duplicated = 0

    def mark(self, producer: int, sequence: int) -> bool:
        """Note one consumed sequence; True when it had been seen before (a duplicate)."""
        bits = self.seen.get(producer)
        if bits is None:
            bits = self.seen[producer] = bytearray()
        index, mask = sequence >> 3, 1 << (sequence & 7)
        if index >= len(bits):
            bits.extend(bytes(max(index + 1 - len(bits), len(bits))))
        if bits[index] & mask:
            self.duplicated += 1
            return True
        bits[index] |= mask
        return False


def sequence_bits(ranges: Iterable[tuple[int, int]]) -> int:
    """Sequences start..end-1 of each range as bits of one integer (bit i = sequence i)."""
    bits = 0
    for start, end in ranges:
        bits |= ((1 << (end - start)) - 1) << start
    return bits


def aborted_seen(seen: bytes | None, aborted: Iterable[tuple[int, int]]) -> int:
    """How many sequences of aborted transactions were consumed anyway. Pure."""
    return (int.from_bytes(seen or b"", "little") & sequence_bits(aborted)).bit_count()


def lost_sequences(seen: bytes | None, sent: int, failed: Iterable[int], limit: int = 10,
                   aborted: Iterable[tuple[int, int]] = ()) -> tuple[int, list[int]]:
    """How many of sequences 0..sent-1 were acked (not failed) but never seen, and the first few.

    Pure: `seen` is a SequenceAudit bitmap (bit i = sequence i), `failed` the sequences
    whose delivery failed (those are not lost: the producer knows they did not arrive),
    `aborted` the [start, end) sequence ranges of aborted transactions (not lost either).
    """
    failed_bits = bytearray((sent + 7) // 8)
    for sequence in failed:
        if sequence < sent:
            failed_bits[sequence >> 3] |= 1 << (sequence & 7)
    accounted = (int.from_bytes(seen or b"", "little") | int.from_bytes(failed_bits, "little")
                 | sequence_bits(aborted))
    missing = ((1 << sent) - 1) & ~accounted
    first: list[int] = []
    remaining = missing
    while remaining and len(first) < limit:
        lowest = remaining & -remaining
        first.append(lowest.bit_length() - 1)
        remaining ^= lowest
    return missing.bit_count(), first


# -- the offset audit -------------------------------------------------------------------------
# Offsets are half-open ranges [start, end) per partition: a flat-out producer's deliveries and
# the tracker's reads are nearly contiguous, so a run of millions of messages is a few ranges.


class OffsetRanges:
    """The distinct offsets of one partition as sorted, disjoint, non-adjacent ranges."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, offset: int) -> bool:
        """Note one offset; True when it was already there."""
        ends = self.ends
        if ends and offset == ends[-1]:  # the common case: the next offset in order
            ends[-1] += 1
            return False
        return self.add_range(offset, offset + 1) > 0

    def add_range(self, start: int, end: int) -> int:
        """Note offsets start..end-1; returns how many of them were already there."""
        starts, ends = self.starts, self.ends
        if not ends or start > ends[-1]:
            starts.append(start)
            ends.append(end)
            return 0
        first = bisect_left(ends, start)    # first range ending at or after start (touching it)
        stop = bisect_right(starts, end)    # ranges starting at or before end touch it too
        overlap = sum(max(0, min(end, ends[i]) - max(start, starts[i])) for i in range(first, stop))
        if first < stop:
            start, end = min(start, starts[first]), max(end, ends[stop - 1])
        starts[first:stop] = [start]
        ends[first:stop] = [end]
        return overlap

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends))


def offset_ranges(offsets: list[int]) -> list[tuple[int, int]]:
    """The distinct offsets of a list as [start, end) ranges (what a producer ships each second)."""
    if not offsets:
        return []
    first, count = offsets[0], len(offsets)
    # Deliveries of one partition arrive in offset order: one comparison in C, no sort.
    if offsets[-1] - first + 1 == count and offsets == list(range(first, first + count)):
        return [(first, first + count)]
    merged = OffsetRanges()
    for offset in sorted(offsets):
        merged.add(offset)
    return merged.ranges()


def _range_difference(ranges: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of sorted disjoint `ranges` not covered by sorted disjoint `minus`."""
    left: list[tuple[int, int]] = []
    index = 0
    for start, end in ranges:
        while index < len(minus) and minus[index][1] <= start:
            index += 1
        cursor, scan = start, index
        while scan < len(minus) and minus[scan][0] < end:
            if minus[scan][0] > cursor:
                left.append((cursor, minus[scan][0]))
            cursor = max(cursor, minus[scan][1])
            scan += 1
        if cursor < end:
            left.append((cursor, end))
    return left


def audit_offsets(acked: Mapping[int, list[tuple[int, int]]], consumed: Mapping[int, list[tuple[int, int]]],
                  limit: int = 10) -> tuple[int, int, list[tuple[int, int]]]:
    """(lost, unclaimed, first lost (partition, offset) pairs) from offset ranges per partition.

    Pure. lost: acked offsets never consumed. unclaimed: consumed offsets no delivery report
    claimed — the first copy of a retried send (its ack was lost, the retry got another offset),
    or a message another producer wrote to the topic during the run.
    """
    lost, unclaimed, first = 0, 0, []
    for partition in sorted(set(acked) | set(consumed)):
        acked_ranges, consumed_ranges = acked.get(partition, []), consumed.get(partition, [])
        for start, end in _range_difference(acked_ranges, consumed_ranges):
            lost += end - start
            first += [(partition, offset) for offset in range(start, min(end, start + limit - len(first)))]
        unclaimed += sum(end - start for start, end in _range_difference(consumed_ranges, acked_ranges))
    return lost, unclaimed, first


def clip_ranges(ranges: Iterable[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """The parts of [a, b) ranges inside [start, end). Pure."""
    return [(max(a, start), min(b, end)) for a, b in ranges if min(b, end) > max(a, start)]


def audit_offset_counts(acked: int, consumed: Mapping[int, list[tuple[int, int]]], consumed_twice: int,
                        possibly_persisted: int = 0) -> tuple[int, int]:
    """(lost, duplicated) of the counts method. Pure. acked: accepted - failed over every
    producer; consumed: the distinct offsets the tracker read per partition; possibly_persisted:
    failures that may have been written anyway (a timeout), so up to that many records beyond
    the acked count are not duplicates."""
    distinct = sum(end - start for ranges in consumed.values() for start, end in ranges)
    lost = max(0, acked - distinct)
    return lost, max(0, distinct - acked - possibly_persisted) + consumed_twice


# -- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProducerAccount:
    """What one producer knows at the end: how many it sent and acked, which failed."""

    producer: int
    sent: int
    acked: int
    failed_sequences: Sequence[int] = ()
    # Failed with a timeout: possibly persisted.
    timed_out: int = 0
    # Sequence ranges [start, end) of aborted transactions; None: the producer was not transactional.
    aborted: Sequence[tuple[int, int]] | None = None


@dataclass(frozen=True)
class TrackerAccount:
    """What the tracker saw: sequence bitmaps per producer (sequence audit) or the consumed
    offset ranges per partition (offset audit)."""

    seen: Mapping[int, bytes] = field(default_factory=dict)
    duplicated: int = 0
    foreign: int = 0
    consumed_offsets: Mapping[int, list[tuple[int, int]]] = field(default_factory=dict)
    offsets_consumed_twice: int = 0


@dataclass(frozen=True)
class AuditOutcome:
    method: str | None
    lost: int | None
    duplicated: int | None
    lost_examples: tuple[str, ...] = ()
    # Why lost/duplicated are null (nothing consumed them), else None.
    not_audited: str | None = None
    # Transactions: orders of aborted transactions the tracker consumed (None without transactions).
    aborted_consumed: int | None = None


def evaluate_audit(method: str, producers: Iterable[ProducerAccount], tracker: TrackerAccount | None,
                   acked_offsets: Mapping[int, list[tuple[int, int]]] | None = None) -> AuditOutcome:
    """Pure: lost and duplicated from what the producers and the tracker reported.

    tracker None (no tracker ran): nothing was consumed, so nothing can be called lost or not;
    both are None and `not_audited` says why.
    """
    if tracker is None:
        return AuditOutcome(None, None, None, not_audited="no tracker ran, so lost and duplicated were not audited")
    if method == OFFSET_COUNTS:
        producers = list(producers)
        lost, duplicated = audit_offset_counts(sum(p.acked for p in producers), tracker.consumed_offsets,
                                               tracker.offsets_consumed_twice, sum(p.timed_out for p in producers))
        return AuditOutcome(method, lost, duplicated)
    if method == OFFSETS:
        lost, unclaimed, first = audit_offsets(acked_offsets or {}, tracker.consumed_offsets)
        return AuditOutcome(method, lost, unclaimed + tracker.offsets_consumed_twice,
                            tuple(f"partition {p} offset {offset}" for p, offset in first))
    lost, examples, aborted_consumed, transactional = 0, [], 0, False
    for producer in sorted(producers, key=lambda p: p.producer):
        seen = tracker.seen.get(producer.producer)
        count, first = lost_sequences(seen, producer.sent, producer.failed_sequences, aborted=producer.aborted or ())
        transactional = transactional or producer.aborted is not None
        aborted_consumed += aborted_seen(seen, producer.aborted or ())
        # A failed delivery whose report carried no trace header has an unknown sequence: it
        # shows up as "not seen" here but is not lost, so the count is corrected and its
        # examples are unsure.
        failed_untraced = producer.sent - producer.acked - len(producer.failed_sequences)
        lost += max(0, count - failed_untraced)
        if not failed_untraced:
            examples += [f"{producer.producer}/{sequence}" for sequence in first]
    return AuditOutcome(method, lost, tracker.duplicated, tuple(examples[:LOST_EXAMPLES]),
                        aborted_consumed=aborted_consumed if transactional else None)


@dataclass(frozen=True)
class Verdict:
    status: str   # complete | interrupted | failed
    failure: str | None
    exit_code: int


def run_verdict(*, interrupted: bool, failure: str | None, failed: int, lost: int | None,
                first_error: str | None = None) -> Verdict:
    """Pure: the one rule for every engine. Interrupted wins (130); a failure of the run
    itself, a failed delivery or an acked order lost is `failed` (3); else complete (0)."""
    if interrupted:
        return Verdict("interrupted", failure or "interrupted by the user (Ctrl+C or SIGTERM)", EXIT_INTERRUPTED)
    if failure is not None:
        return Verdict("failed", failure, EXIT_RUN_FAILED)
    if failed or lost:
        text = f"{failed:,} deliveries failed, {lost or 0:,} acked orders lost"
        text += f" (first error: {first_error})" if first_error else ""
        return Verdict("failed", text, EXIT_RUN_FAILED)
    return Verdict("complete", None, EXIT_OK)
