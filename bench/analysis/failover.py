"""Failover figures, pure: per fault, how long each partition went without an ack and without a
consumed message, how long until metadata showed a new leader, and latency percentiles while
the fault lasted against the same length just before it; per second, under-replicated
partitions and ISR sizes from the coordinator's metadata samples.

Inputs are plain values (the fault records of bench/broker/faults.py, the gaps of
bench/core/availability.py in ms from t0, metadata samples, encoded per-second histograms);
no I/O. A figure that cannot be measured is None with its reason in `not_measured`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.results.histograms import decode_histogram, new_latency_histogram
from bench.results.metrics import SUMMARY_PERCENTILES

# Percentiles compared during vs before a fault.
WINDOW_PERCENTILES = ("p50", "p99", "p99_9")
FAILOVER_LATENCIES = ("service_time", "end_to_end")

# (t_s, {partition: (leader, replicas, isr)})
Sample = tuple[float, Mapping[int, tuple[int, Sequence[int], Sequence[int]]]]


def longest_gaps(gaps: Iterable[Mapping[str, Any]], start_ms: float, end_ms: float) -> dict[int, float]:
    """partition -> the longest gap overlapping [start_ms, end_ms] (gaps as ActivityLog.gaps_ms)."""
    longest: dict[int, float] = {}
    for gap in gaps:
        if gap["end_ms"] > start_ms and gap["start_ms"] < end_ms:
            longest[gap["partition"]] = max(longest.get(gap["partition"], 0.0), gap["gap_ms"])
    return longest


def unavailability(gaps: Sequence[Mapping[str, Any]], active_partitions: Iterable[int], start_ms: float,
                   end_ms: float) -> dict[str, float]:
    """partition (text) -> longest gap in ms overlapping the window; 0.0 for an active partition
    with no kept gap there (it never paused as long as the threshold)."""
    longest = longest_gaps(gaps, start_ms, end_ms)
    return {str(p): longest.get(p, 0.0) for p in sorted(set(active_partitions) | set(longest))}


def window_end_ms(record: Mapping[str, Any], ack_gaps: Sequence[Mapping[str, Any]]) -> float:
    """Where a fault's effect ends: its end, or later the end of an ack gap it caused (messages
    held during the fault are acked when the gap closes, and their latency belongs to it)."""
    start_ms = record["start_s"] * 1000
    end_ms = (record["end_s"] if record["end_s"] is not None else record["start_s"]) * 1000
    overlapping = [gap["end_ms"] for gap in ack_gaps if gap["end_ms"] > start_ms and gap["start_ms"] < end_ms]
    return max([end_ms, *overlapping])


def leaders_before(samples: Sequence[Sample], t_s: float) -> dict[int, int]:
    """partition -> leader in the last sample at or before t_s."""
    before = [state for sample_t, state in samples if sample_t <= t_s]
    return {p: leader for p, (leader, _, _) in before[-1].items()} if before else {}


def new_leader_ms(samples: Sequence[Sample], node_id: int, start_s: float) -> tuple[dict[str, float | None], str | None]:
    """For each partition the node led when the fault began: ms until a sample showed another
    leader (None: it never did). The reason when nothing can be said for any partition."""
    led = [p for p, leader in leaders_before(samples, start_s).items() if leader == node_id]
    if not samples:
        return {}, "no metadata sample was taken"
    if not led:
        return {}, f"node {node_id} led no partition of the topic when the fault began"
    found: dict[str, float | None] = {}
    for partition in sorted(led):
        found[str(partition)] = next(
            (round((t_s - start_s) * 1000, 1) for t_s, state in samples
             if t_s > start_s and partition in state and state[partition][0] not in (node_id, -1)), None)
    return found, None


def window_percentiles(intervals: Mapping[int, str], first_second: int, end_second: int) -> dict[str, int | None]:
    """p50/p99/p99.9 (µs) over the per-second histograms of seconds first_second..end_second-1."""
    merged = new_latency_histogram()
    for second in range(max(0, first_second), end_second):
        if intervals.get(second):
            merged.add(decode_histogram(intervals[second]))
    if not merged.get_total_count():
        return {name: None for name in WINDOW_PERCENTILES}
    return {name: merged.get_value_at_percentile(SUMMARY_PERCENTILES[name]) for name in WINDOW_PERCENTILES}


def metadata_series(samples: Sequence[Sample], seconds: int) -> dict[str, Any]:
    """Per second (0..seconds-1): the most under-replicated partitions seen in a sample, each
    partition's smallest ISR and its leader at the last sample; None for a second without one."""
    by_second: dict[int, list[Mapping[int, tuple[int, Sequence[int], Sequence[int]]]]] = {}
    for t_s, state in samples:
        if 0 <= t_s < seconds:
            by_second.setdefault(int(t_s), []).append(state)
    partitions = sorted({p for _, state in samples for p in state})
    urp, isr_size, leader = [], {str(p): [] for p in partitions}, {str(p): [] for p in partitions}
    for second in range(seconds):
        states = by_second.get(second, [])
        urp.append(max((sum(len(isr) < len(replicas) for _, replicas, isr in state.values()) for state in states),
                       default=None))
        for p in partitions:
            present = [state[p] for state in states if p in state]
            isr_size[str(p)].append(min((len(isr) for _, _, isr in present), default=None))
            leader[str(p)].append(present[-1][0] if present else None)
    return {"under_replicated": urp, "isr_size": isr_size, "leader": leader}


def fault_figures(record: Mapping[str, Any], ack_gaps: Sequence[Mapping[str, Any]],
                  consume_gaps: Sequence[Mapping[str, Any]], acked_partitions: Iterable[int],
                  consumed_partitions: Iterable[int], samples: Sequence[Sample],
                  intervals: Mapping[str, Mapping[int, str]], acks_tracked: str | None,
                  warmup_s: float = 0.0) -> dict[str, Any]:
    """The failover figures of one fault record. acks_tracked: None, or why acks per partition
    were not tracked (flat out). The window before a fault never reaches into the warm-up."""
    not_measured: dict[str, str] = {}
    start_ms = record["start_s"] * 1000
    end_ms = window_end_ms(record, ack_gaps)
    figures: dict[str, Any] = {**record}
    if acks_tracked is None:
        figures["unavailable_ack_ms"] = unavailability(ack_gaps, acked_partitions, start_ms, end_ms)
    else:
        figures["unavailable_ack_ms"] = None
        not_measured["unavailable_ack_ms"] = acks_tracked
    figures["unavailable_consume_ms"] = unavailability(consume_gaps, consumed_partitions, start_ms, end_ms)
    figures["longest_ack_gap_ms"] = max(figures["unavailable_ack_ms"].values(), default=None) \
        if figures["unavailable_ack_ms"] is not None else None
    if figures["longest_ack_gap_ms"] is None and "unavailable_ack_ms" not in not_measured:
        not_measured["longest_ack_gap_ms"] = "no partition was acked during the run"
    elif figures["longest_ack_gap_ms"] is None:
        not_measured["longest_ack_gap_ms"] = acks_tracked
    figures["longest_consume_gap_ms"] = max(figures["unavailable_consume_ms"].values(), default=None)
    if figures["longest_consume_gap_ms"] is None:
        not_measured["longest_consume_gap_ms"] = "the tracker consumed nothing during the run"
    if record["kind"] in ("kill", "stop", "pause", "isolate", "rolling-restart"):
        by_partition, reason = new_leader_ms(samples, record["node_id"], record["start_s"])
        figures["new_leader_ms_by_partition"] = by_partition
        known = [ms for ms in by_partition.values() if ms is not None]
        figures["new_leader_ms"] = max(known) if known and len(known) == len(by_partition) else None
        if figures["new_leader_ms"] is None:
            not_measured["new_leader_ms"] = reason or "metadata showed no other leader before the run ended"
    else:
        figures["new_leader_ms_by_partition"], figures["new_leader_ms"] = {}, None
        not_measured["new_leader_ms"] = f"a {record['kind']} fault moves no leadership"
    # Latencies are kept per whole second (of the ack, or of the consumption): during = the
    # seconds the fault's window touches, before = as many whole seconds just before, after warm-up.
    first, end = math.floor(record["start_s"]), math.ceil(end_ms / 1000)
    before_first = max(math.ceil(warmup_s), first - (end - first))
    figures["latency_window_s"] = [first, end]
    figures["latency_before_window_s"] = [before_first, first] if before_first < first else None
    figures["latency_us"] = {}
    for name in FAILOVER_LATENCIES:
        if name in intervals:
            figures["latency_us"][name] = {
                "during": window_percentiles(intervals[name], first, end),
                "before": window_percentiles(intervals[name], before_first, first)}
    if figures["latency_before_window_s"] is None:
        not_measured["latency_us.before"] = "the fault began within the warm-up"
    figures["not_measured"] = not_measured
    return figures


def failover_section(records: Sequence[Mapping[str, Any]], ack_gaps: Sequence[Mapping[str, Any]],
                     consume_gaps: Sequence[Mapping[str, Any]], acked_partitions: Iterable[int],
                     consumed_partitions: Iterable[int], samples: Sequence[Sample], seconds: int,
                     intervals: Mapping[str, Mapping[int, str]], *, gap_threshold_ms: float,
                     sample_every_s: float | None, missed_samples: int, acks_tracked: str | None,
                     warmup_s: float = 0.0) -> dict[str, Any]:
    """The result's `failover` section."""
    acked_partitions, consumed_partitions = sorted(set(acked_partitions)), sorted(set(consumed_partitions))
    return {
        "gap_threshold_ms": gap_threshold_ms,
        "metadata_sample_every_s": sample_every_s,
        "metadata_samples_missed": missed_samples,
        "faults": [fault_figures(record, ack_gaps, consume_gaps, acked_partitions, consumed_partitions, samples,
                                 intervals, acks_tracked, warmup_s) for record in records],
        "series": metadata_series(samples, seconds),
        "ack_gaps": list(ack_gaps),
        "consume_gaps": list(consume_gaps),
    }


# ---------------------------------------------------------------------------------------------
# Tables: one unit per column (in its header), every "n/a" numbered and explained in the notes.

# A restarted node back less than this long before producing ended: the run did not watch the
# cluster settle (leaders move back, the ISR fills), so its figures may miss the tail of the fault.
SETTLE_S = 10.0
# Faults that restart a node (and so have a time it was back).
RESTARTING = ("kill", "stop", "rolling-restart")


class Notes:
    """Numbered notes under a table: the same text keeps its number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"

    def na(self, why: str) -> str:
        return "n/a " + self.mark(why)

    def lines(self) -> list[str]:
        return [f"[{index + 1}] {text}" for index, text in enumerate(self.texts)]


def _ms(value: float | None, notes: Notes, why: str) -> str:
    return notes.na(why) if value is None else f"{value:,.0f}"


def _us_as_ms(value: int | None, notes: Notes, why: str) -> str:
    return notes.na(why) if value is None else f"{value / 1000:,.1f}"


def _reason(fault: Mapping[str, Any], key: str, default: str) -> str:
    return (fault.get("not_measured") or {}).get(key) or default


def _latency_cells(fault: Mapping[str, Any], notes: Notes) -> list[str]:
    latency = (fault.get("latency_us") or {}).get("service_time")
    if not latency:
        why = "service time was not measured (failures-only delivery reports time no single message)"
        return [notes.na(why), notes.na(why)]
    return [_us_as_ms((latency.get("during") or {}).get("p99_9"), notes, "no message was acked while the fault lasted"),
            _us_as_ms((latency.get("before") or {}).get("p99_9"), notes,
                      _reason(fault, "latency_us.before", "no message was acked in the seconds before the fault"))]


def _back_cell(fault: Mapping[str, Any], notes: Notes, producing_end_s: float | None) -> str:
    if fault.get("back_s") is None:
        if fault.get("kind") in RESTARTING:
            return notes.na("the node did not answer again before the run ended: run longer (--duration)")
        return notes.na(f"a {fault.get('kind')} fault restarts no node")
    text = f"{fault['back_s']:.1f}"
    if producing_end_s is not None and fault["back_s"] > producing_end_s - SETTLE_S:
        text += " " + notes.mark(
            f"short run: node {fault.get('node_id')} was back at {fault['back_s']:.1f} s and producing ended at "
            f"{producing_end_s:.1f} s: the run did not see the cluster settle for {SETTLE_S:g} s after the fault, so "
            f"figures may miss its tail; --duration {math.ceil(fault['back_s'] + SETTLE_S)} or more does")
    return text


def start_cell(fault: Mapping[str, Any], notes: Notes, producing_end_s: float | None) -> str:
    """When the fault acted; marked when that was after producing ended (finding its target and
    acting on it can take that long on a busy machine): then the run measured nothing of it."""
    text = f"{fault['start_s']:.1f}"
    if producing_end_s is not None and fault["start_s"] >= producing_end_s:
        text += " " + notes.mark(f"the fault acted at {fault['start_s']:.1f} s, after producing ended at "
                                 f"{producing_end_s:.1f} s: the run measured nothing of it; run longer (--duration)")
    return text


def _figure_cells(fault: Mapping[str, Any], notes: Notes) -> list[str]:
    return [_ms(fault.get("longest_ack_gap_ms"), notes, _reason(fault, "longest_ack_gap_ms", "not measured")),
            _ms(fault.get("longest_consume_gap_ms"), notes, _reason(fault, "longest_consume_gap_ms", "not measured")),
            _ms(fault.get("new_leader_ms"), notes, _reason(fault, "new_leader_ms", "not measured")),
            *_latency_cells(fault, notes)]


FIGURE_COLUMNS = ("longest ack gap (ms)", "longest consume gap (ms)", "new leader after (ms)",
                  "service p99.9 during (ms)", "service p99.9 before (ms)")
FAILOVER_COLUMNS = ("fault", "node", "start (s)", "end (s)", "node back (s)", *FIGURE_COLUMNS)


def fault_target(fault: Mapping[str, Any]) -> str:
    """What a fault record acted on: "node 2 (leader)", or "the consumer" (a slow-consumer fault)."""
    if fault.get("node_id") is None:
        return "the consumer" if fault.get("role") == "consumer" else str(fault.get("role"))
    return f"node {fault['node_id']} ({fault['role']})"


def producing_end_s(result: Mapping[str, Any]) -> float | None:
    """When the run stopped producing (s from its start), as measured, else as scheduled."""
    measured = (result.get("throughput") or {}).get("producing_s")
    return measured if measured is not None else (result.get("scenario") or {}).get("duration_s")


def failover_rows(faults: Sequence[Mapping[str, Any]], end_s: float | None = None,
                  notes: Notes | None = None) -> tuple[list[list[str]], list[str]]:
    """A result's fault records as report rows (one per fault and node) and the notes their
    "n/a" and short-run marks point to (numbered on in `notes` when several tables share them)."""
    notes = notes if notes is not None else Notes()
    rows = [[fault["fault"], fault_target(fault).removeprefix("node "), start_cell(fault, notes, end_s),
             notes.na("the fault never ended: the run ended first") if fault.get("end_s") is None
             else f"{fault['end_s']:.1f}", _back_cell(fault, notes, end_s), *_figure_cells(fault, notes)]
            for fault in faults]
    return rows, notes.lines()


def failover_summary(result: Mapping[str, Any]) -> str | None:
    """A fault run's failover in one line: where and when each fault acted, and the worst figures."""
    faults = (result.get("failover") or {}).get("faults") or []
    if not faults:
        return None

    def worst(key: str) -> str:
        known = [f[key] for f in faults if f.get(key) is not None]
        return f"{max(known):,.0f} ms" if known else "not measured"

    where = "; ".join(
        f"{f['fault']} on {fault_target(f)} at {f['start_s']:.1f} s"
        + (f", back at {f['back_s']:.1f} s" if f.get("back_s") is not None else "") for f in faults)
    end_s = producing_end_s(result)
    late = [f for f in faults if f.get("back_s") is not None and end_s is not None and f["back_s"] > end_s - SETTLE_S]
    return (f"{where}; longest ack gap {worst('longest_ack_gap_ms')}, longest consume gap "
            f"{worst('longest_consume_gap_ms')}, new leader after {worst('new_leader_ms')}"
            + (f" (short run: producing ended at {end_s:.1f} s, before the cluster settled)" if late else ""))


TABLE_COLUMNS = ("fault (as scheduled)", "acks", "status", "fault at (s)", "node back (s)", "producing ended (s)",
                 "lost", "duplicated", *FIGURE_COLUMNS)


def table_row(result: Mapping[str, Any], notes: Notes) -> list[str]:
    """One row of the failover table from a fault run's result: the actual times of its faults,
    and the worst figures over them."""
    faults = (result.get("failover") or {}).get("faults") or []
    counts = result["counts"]
    not_measured = result.get("counts_not_measured") or {}
    end_s = producing_end_s(result)

    # Each fault's cells with notes of their own: only the note of a cell the row shows is kept.
    fault_notes = Notes()
    figure_cells = [_figure_cells(fault, fault_notes) for fault in faults]

    def worst(cells: Iterable[str]) -> str:
        cells = list(cells)
        numbers = [cell for cell in cells if not cell.startswith("n/a")]
        if numbers:
            return max(numbers, key=lambda cell: float(cell.replace(",", "")))
        if not cells:
            return notes.na("the run recorded no fault (it ended before the first)")
        return notes.na(fault_notes.texts[int(cells[0].split("[")[1].rstrip("]")) - 1])

    return [
        ", ".join(dict.fromkeys(f["fault"] for f in faults)) or ", ".join(result["scenario"].get("faults") or []),
        str(result["scenario"]["acks"]), result["status"],
        ", ".join(start_cell(f, notes, end_s) for f in faults) or notes.na("the run ended before the first fault"),
        ", ".join(_back_cell(f, notes, end_s) for f in faults) or "-",
        "-" if end_s is None else f"{end_s:.1f}",
        notes.na(not_measured.get("lost") or "not measured") if counts["lost"] is None else f"{counts['lost']:,}",
        notes.na(not_measured.get("duplicated") or "not measured") if counts["duplicated"] is None
        else f"{counts['duplicated']:,}",
        *(worst(cells[column] for cells in figure_cells) for column in range(len(FIGURE_COLUMNS))),
    ]


def markdown_table(rows: Iterable[Sequence[str]], notes: Notes | None = None) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Faults are named as scheduled (@AT+FOR, seconds into the run); \"fault at\" and \"node back\" are "
              "when they happened. Figures are the worst over a row's faults."]
    if notes is not None and notes.texts:
        lines += ["", "Notes:", *notes.lines()]
    return "\n".join(lines)
