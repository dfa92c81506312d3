"""The figures of each consumer event (a rebalance): pure, over what the run measured.

Per event, for the event's group, from the event until the group's next event (or the end of
the run):
- pause per partition: the longest time no member of the group read the partition (a gap in its
  reading that ends after the event; it may begin just before it: a killed member's partitions
  were last read a moment before the kill). Gaps under `gap_floor_ms` are the normal rhythm of
  batches and count as 0.
- group pause: the longest time the group read nothing at all (every partition idle at once).
Idle time after producing ended is not a pause (nothing was left to read).
- lag spike: the group's peak lag (messages, every partition, read or orphaned) after the event
  against its peak over the seconds just before it (the last second before the event left out:
  a killed member's report of it may never have left the process, so its positions are stale).
- time to recover: from the event to the end of the first second after the peak whose lag is
  back at or below the level before it; None (with the reason) when it never came back in the run.
- duplicates: orders the group read a second time in the event's window (uncommitted offsets the
  next owner read again), from the audit's per-second account.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Seconds before an event whose lag is its "before" level.
BEFORE_S = 5
NS_PER_MS = 1_000_000

Interval = tuple[float, float]  # seconds from t0


def idle_intervals(spans: Sequence[tuple[int, int]], gaps: Sequence[tuple[int, int]], t0_ns: int,
                   floor_ns: int) -> list[Interval]:
    """When a partition was not read: between its reading spans (by any member) and inside one
    member's reading (its own kept gaps), each at least floor_ns long; seconds from t0."""
    idle = [(start, end) for start, end in gaps if end - start >= floor_ns]
    reach = None
    for first, last in sorted(spans):
        if reach is not None and first - reach >= floor_ns:
            idle.append((reach, first))
        reach = last if reach is None else max(reach, last)
    return _merged([((start - t0_ns) / 1e9, (end - t0_ns) / 1e9) for start, end in idle])


def _merged(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _intersect(left: Sequence[Interval], right: Sequence[Interval]) -> list[Interval]:
    both, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        start, end = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if start < end:
            both.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return both


def _longest_ms(intervals: Sequence[Interval], after_s: float, before_s: float, producing_s: float) -> float:
    """The longest interval ending after `after_s` and beginning before `before_s`, in ms (0: none);
    idle time after producing ended (`producing_s`) is no pause: nothing was left to read."""
    lengths = [max(0.0, min(end, producing_s) - start) for start, end in intervals if end > after_s and start < before_s]
    return round(max(lengths, default=0.0) * 1000, 1)


def lag_figures(lag: Sequence[int | None], event_s: float, until_s: float) -> dict[str, Any]:
    """Lag before, peak after, time to recover; lag[s] is the lag at the end of second s (t = s + 1)."""
    first_after = int(event_s)
    before = [v for s, v in enumerate(lag) if v is not None and event_s - BEFORE_S - 1 <= s + 1 <= event_s - 1]
    after = [(s, v) for s, v in enumerate(lag) if v is not None and first_after <= s and s + 1 <= until_s + 1]
    if not before or not after:
        return {"lag_before_messages": max(before, default=None), "lag_peak_messages": None, "recover_s": None,
                "recover_not_measured": "no lag sample before or after the event"}
    level = max(before)
    peak_second, peak = max(after, key=lambda item: item[1])
    figures = {"lag_before_messages": level, "lag_peak_messages": peak}
    if peak <= level:
        return {**figures, "recover_s": 0.0}
    back = next((s for s, v in after if s > peak_second and v <= level), None)
    if back is None:
        return {**figures, "recover_s": None, "recover_not_measured": "lag was not back to its level before the event "
                                                                        "within the run"}
    return {**figures, "recover_s": round(back + 1 - event_s, 3)}


def rebalance_entries(events: Sequence[Mapping[str, Any]], spans: Mapping[int, Mapping[int, Sequence[tuple[int, int]]]],
                      gaps: Mapping[int, Sequence[tuple[int, int, int]]], lag: Mapping[int, Sequence[int | None]] | None,
                      duplicated: Mapping[int, Mapping[int, int]], *, t0_ns: int, end_s: float, producing_s: float,
                      gap_floor_ms: float, lag_not_measured: str | None = None) -> list[dict[str, Any]]:
    """One entry per consumer event (events: {t_s, kind, group, consumer, fault}; spans: group ->
    partition -> [(first_ns, last_ns)]; gaps: group -> [(partition, start_ns, end_ns)] inside one
    member's reading; lag: group -> lag per second, None when not measured; duplicated: group ->
    second -> orders read again; end_s: the end of the run's seconds, producing_s: when producing
    ended, s from t0)."""
    floor_ns = int(gap_floor_ms * NS_PER_MS)
    entries = []
    for index, event in enumerate(events):
        group, at_s = event["group"], event["t_s"]
        until_s = next((later["t_s"] for later in events[index + 1:] if later["group"] == group), end_s)
        idle = {p: idle_intervals(partition_spans, [(s, e) for q, s, e in gaps.get(group, ()) if q == p], t0_ns, floor_ns)
                for p, partition_spans in sorted(spans.get(group, {}).items())}
        everywhere: list[Interval] | None = None
        for intervals in idle.values():
            everywhere = intervals if everywhere is None else _intersect(everywhere, intervals)
        pauses = {str(p): _longest_ms(intervals, at_s, until_s, producing_s) for p, intervals in idle.items()}
        entry = {"fault": event["fault"], "kind": event["kind"], "group": group, "consumer": event["consumer"],
                 "t_s": at_s, "until_s": round(until_s, 3),
                 "pause_ms": _longest_ms(everywhere or [], at_s, until_s, producing_s) if idle else None,
                 "partition_pause_max_ms": max(pauses.values(), default=None), "pause_ms_by_partition": pauses,
                 "duplicated": sum(n for s, n in duplicated.get(group, {}).items()
                                   if int(at_s) <= s and (until_s == end_s or s < int(until_s)))}
        if lag is None:
            entry.update(lag_before_messages=None, lag_peak_messages=None, recover_s=None,
                         recover_not_measured=lag_not_measured)
        else:
            entry.update(lag_figures(lag.get(group, []), at_s, until_s))
        entries.append(entry)
    return entries


def group_lag(acked_by_second: Mapping[int, Mapping[int, int]], start: Mapping[int, int],
              positions: Mapping[int, Mapping[int, int]], seconds: int) -> list[int]:
    """A group's lag per second over every partition: acked end offset minus the position of the
    partition's current reader (an orphaned partition's last reader's), never below 0."""
    acked_end, lag = dict(start), []
    for second in range(seconds):
        for partition, count in acked_by_second.get(second, {}).items():
            acked_end[partition] = acked_end.get(partition, 0) + count
        at = positions.get(second, {})
        lag.append(sum(max(0, end - at.get(p, start.get(p, 0))) for p, end in acked_end.items()))
    return lag
