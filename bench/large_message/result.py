"""The large-message sweep's rows, findings and result document (pure, except that
`sweep_result` reads the clock and the environment metadata)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench.broker.ensure import BrokerInUse
from bench.large_message.plan import SweepOptions, size_label
from bench.output.results import environment_metadata, utc_iso
from streamstore.config import MAX_VALUE_BYTES, PRODUCE_RECORD_SET_MAX_BYTES

# Targets of issue 4: peak RSS per client for the largest message, and the harness's overhead
# against a bare confluent-kafka script.
PEAK_RSS_TARGET_RATIO = 2.2
# Below this the interpreter and client libraries (~30 MB per process) dominate peak RSS, so a
# ratio to the payload says nothing about how the payload is handled.
PEAK_RSS_TARGET_MIN_SIZE = 100_000_000
BARE_END_TO_END_TARGET_RATIO = 1.15

WIRE_BYTES_SOURCE = (
    "librdkafka statistics: topics.<topic>.batchsize, the record batch as the producer sent it "
    "(after compression); broker_stored_bytes: the partition's log segment files in the broker's "
    "log.dirs, when the broker runs on this host"
)


def cell_row(
    size_bytes: int,
    compression: str,
    produce_ms: Sequence[float],
    end_to_end_ms: Sequence[float],
    wire_bytes: Sequence[int],
    broker_stored_bytes: int | None,
    producer_peak_rss_bytes: int | None,
    consumer_peak_rss_bytes: int | None,
    error: str | None,
    broker_messages: int | None = None,
    counts: Mapping[str, int | None] | None = None,
    counts_note: str | None = None,
) -> dict[str, Any]:
    """One size x compression as result.json stores it (latencies in ms, p50 and max over reps).

    counts: the cell's message counts (`cell_counts`), None for a cell that was not sent;
    counts_note: why a count is null.
    """

    def p50_max(values: Sequence[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3)}

    end_to_end = p50_max(end_to_end_ms)
    wire = int(statistics.median(wire_bytes)) if wire_bytes else None
    return {
        "size_bytes": size_bytes,
        "size_label": size_label(size_bytes),
        "compression": compression,
        "reps": len(end_to_end_ms),
        "produce_latency_ms": p50_max(produce_ms),
        "end_to_end_ms": end_to_end,
        # Uncompressed payload through the whole pipeline (produce call -> consumed), at p50.
        "throughput_mb_s": round(size_bytes / 1e6 / (end_to_end["p50"] / 1000), 3) if end_to_end else None,
        "wire_bytes": wire,
        "broker_stored_bytes": broker_stored_bytes,
        # How far the cell's topic offsets grew (read from the broker): one per acked message.
        "broker_messages": broker_messages,
        "counts": dict(counts) if counts is not None else None,
        "counts_note": counts_note,
        # Four significant figures: 0.9999 (batch overhead) must not round to 1.
        "compression_ratio": float(f"{size_bytes / wire:.4g}") if wire else None,
        # librdkafka sends the batch uncompressed when compressing does not make it smaller.
        "compression_skipped": compression != "none" and wire is not None and wire >= size_bytes,
        "producer_peak_rss_bytes": producer_peak_rss_bytes,
        "consumer_peak_rss_bytes": consumer_peak_rss_bytes,
        "samples": {"produce_latency_ms": [round(v, 3) for v in produce_ms],
                    "end_to_end_ms": [round(v, 3) for v in end_to_end_ms]},
        "error": error,
    }


def memory_findings(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Peak RSS of each client over the payload size, for the largest size that succeeded
    (when it is large enough for the ratio to mean something)."""
    succeeded = [row for row in rows if not row.get("error") and row["size_bytes"] >= PEAK_RSS_TARGET_MIN_SIZE]
    if not succeeded:
        return []
    largest = max(row["size_bytes"] for row in succeeded)
    findings = []
    for row in succeeded:
        if row["size_bytes"] != largest:
            continue
        for client in ("producer", "consumer"):
            peak = row.get(f"{client}_peak_rss_bytes")
            if peak is None:
                continue
            ratio = peak / row["size_bytes"]
            findings.append({
                "size_bytes": largest, "compression": row["compression"], "client": client,
                "peak_rss_bytes": peak, "ratio_to_payload": round(ratio, 3),
                "target_ratio": PEAK_RSS_TARGET_RATIO, "met": ratio <= PEAK_RSS_TARGET_RATIO,
            })
    return findings


def bare_comparison(harness_end_to_end_ms: Sequence[float], bare_end_to_end_ms: Sequence[float],
                    size_bytes: int, bare_peak_rss_bytes: int | None) -> dict[str, Any]:
    harness = statistics.median(harness_end_to_end_ms)
    bare = statistics.median(bare_end_to_end_ms)
    return {
        "size_bytes": size_bytes, "compression": "none",
        "harness_end_to_end_ms": round(harness, 3), "bare_end_to_end_ms": round(bare, 3),
        "harness_samples_ms": [round(v, 3) for v in harness_end_to_end_ms],
        "bare_samples_ms": [round(v, 3) for v in bare_end_to_end_ms],
        "ratio": round(harness / bare, 3), "target_ratio": BARE_END_TO_END_TARGET_RATIO,
        "met": harness / bare <= BARE_END_TO_END_TARGET_RATIO,
        "bare_peak_rss_bytes": bare_peak_rss_bytes,
    }


# ---------------------------------------------------------------------------------------------
# Counts: measured per cell, summed over cells

COUNT_KEYS = ("sent", "acked", "failed", "consumed", "lost", "duplicated", "malformed")
# Consumer replies that end a cell after the consumer's own full wait: a message missing then is
# lost. "error" (or no reply at all) ends it early, and loss cannot be told from not-yet-received.
CONSUMER_FINISHED = ("complete", "end_offset", "timeout")


def cell_counts(sent: int, acked: int, consumer: Mapping[str, int], consumer_end: str | None,
                unfinished_reason: str | None = None) -> tuple[dict[str, int | None], str | None]:
    """(counts, note) of one cell from what was measured.

    sent: produce attempts; acked: of those, acknowledged by the broker; consumer: the consumer's
    running tallies (received, distinct offsets, malformed, duplicated); consumer_end: the
    reason of its "done" reply (None when it sent none). lost = acked - distinct messages
    received, known when every acked message was received or the consumer waited its full
    timeout; else null, with the note saying why (unfinished_reason: what cut the cell short).
    """
    distinct = consumer["distinct"]
    lost: int | None = max(0, acked - distinct)
    note = None
    if distinct < acked and consumer_end not in CONSUMER_FINISHED:
        lost = None
        note = (f"lost not measured: {acked - distinct} acked message(s) not received yet when the consumer stopped "
                f"({unfinished_reason or consumer_end or 'no reply'})")
    counts = {"sent": sent, "acked": acked, "failed": sent - acked, "consumed": consumer["received"], "lost": lost,
              "duplicated": consumer["duplicated"], "malformed": consumer["malformed"]}
    return counts, note


def cell_name(row: Mapping[str, Any]) -> str:
    return f"{row['size_label']} {row['compression']}"


def tried_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cells that were tried: those known to be unsendable (not sent) contribute no counts."""
    return [row for row in rows if not row.get("not_sent")]


def total_counts(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, int | None], list[str]]:
    """(the sweep's counts, warnings): each the sum over tried cells, null when a cell's is
    (the warning names the cell and why); broker_offset_delta sums the cells' broker_messages."""
    tried = tried_rows(rows)
    totals: dict[str, int | None] = {}
    warnings = []
    for key in COUNT_KEYS:
        values = [row["counts"][key] for row in tried]
        totals[key] = sum(values) if None not in values else None
    for row in tried:
        if row.get("counts_note"):
            warnings.append(f"{cell_name(row)}: {row['counts_note']}")
    # A cell that sent nothing (its processes did not start) has no topic to read.
    unread = [cell_name(row) for row in tried if row["broker_messages"] is None and row["counts"]["sent"]]
    delta = sum(row["broker_messages"] or 0 for row in tried)
    totals["broker_offset_delta"] = None if unread else delta
    if unread:
        warnings.append(f"broker_offset_delta is null: the broker's offsets were not read for {', '.join(unread)}")
    for row in tried:
        acked = row["counts"]["acked"]
        if row["broker_messages"] is not None and row["broker_messages"] != acked:
            warnings.append(f"{cell_name(row)}: the broker's offsets grew by {row['broker_messages']:,} "
                            f"but {acked:,} message(s) were acked")
    return totals, warnings


def sweep_status(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """("complete" | "failed", failure): failed when a cell lost acked messages or failed."""
    problems = []
    losing = [row for row in tried_rows(rows) if row["counts"]["lost"]]
    if losing:
        lost = sum(row["counts"]["lost"] for row in losing)
        problems.append(f"{lost:,} acked message(s) lost in {len(losing)} cell(s); first: {cell_name(losing[0])}: "
                        f"{losing[0]['counts']['lost']:,} of {losing[0]['counts']['acked']:,}")
    failed = [row for row in failed_rows(rows) if not row["counts"]["lost"]]
    if failed:
        problems.append(f"{len(failed)} of {len(rows)} cells failed; first: {cell_name(failed[0])}: {failed[0]['error']}")
    return ("failed", "; ".join(problems)) if problems else ("complete", None)


def format_row(row: Mapping[str, Any]) -> str:
    """One line per cell for the console."""
    label = f"{size_label(row['size_bytes']):>18}  {row['compression']:<5}"
    if row.get("error"):
        return f"{label}  {row['error']}" if row.get("not_sent") else f"{label}  FAILED: {row['error']}"
    ratio = row.get("compression_ratio")
    skipped = " (compression skipped)" if row.get("compression_skipped") else ""
    wire = f"wire {row['wire_bytes']:,} B (x{ratio:g}){skipped}" if ratio else "wire ?"
    peaks = [row.get("producer_peak_rss_bytes"), row.get("consumer_peak_rss_bytes")]
    memory = "/".join("?" if p is None else f"{p / 1e6:,.0f}" for p in peaks)

    def figure(value: float | None, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width},.1f}"

    produce, end_to_end = row["produce_latency_ms"], row["end_to_end_ms"]
    return (
        f"{label}  x{row['reps']}  produce p50 {figure(produce and produce['p50'], 10)} ms  "
        f"end-to-end p50 {figure(end_to_end and end_to_end['p50'], 10)} ms  {figure(row['throughput_mb_s'], 8)} MB/s  "
        f"peak RSS prod/cons {memory} MB  {wire}"
    )


def failed_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cells that were tried and failed (cells known to be unsendable are not tried)."""
    return [row for row in rows if row["error"] and not row.get("not_sent")]


def sweep_result(options: SweepOptions, run_id: str, rows: Sequence[Mapping[str, Any]], bare: Mapping[str, Any] | None,
                 broker: BrokerInUse, topic_settings: Mapping[str, str] | None, started_at: float, status: str,
                 failure: str | None, extra_warnings: Sequence[str] = ()) -> dict[str, Any]:
    """The result.json document of a sweep (kind "large-message", schema v1)."""
    ended_at = time.time()
    counts, warnings = total_counts(rows)
    warnings += list(extra_warnings)
    skipped = sorted({row["size_label"] for row in rows if row["compression_skipped"]})
    if skipped:
        warnings.append(
            f"compression skipped by librdkafka (compressed batch not smaller) for: {', '.join(skipped)}; "
            f"payload '{options.payload}' does not compress"
        )
    not_sent = [cell_name(row) for row in rows if row.get("not_sent")]
    if not_sent:
        warnings.append(f"not sent (librdkafka cannot deliver an uncompressed batch above "
                        f"{PRODUCE_RECORD_SET_MAX_BYTES:,} bytes): {', '.join(not_sent)}")
    for finding in memory_findings(rows):
        if not finding["met"]:
            warnings.append(
                f"{finding['client']} peak RSS {finding['ratio_to_payload']:g}x the payload for "
                f"{size_label(finding['size_bytes'])} {finding['compression']} (target <= {PEAK_RSS_TARGET_RATIO}x)"
            )
    if bare and bare.get("ratio") and not bare["met"]:
        warnings.append(f"harness end-to-end {bare['ratio']:g}x the bare script's (target <= "
                        f"{BARE_END_TO_END_TARGET_RATIO}x)")
    environment = environment_metadata()
    environment["producer_and_tracker_same_host"] = True
    return {
        "kind": "large-message",
        "run_id": run_id,
        "scenario": options.to_dict(),
        "fingerprint": options.fingerprint(),
        "environment": environment,
        "broker": {"bootstrap_servers": broker.bootstrap_servers, "version": broker.version,
                   "embedded": broker.embedded is not None, "settings": dict(broker.settings),
                   "topic_settings": dict(topic_settings) if topic_settings else {}},
        "started_at": utc_iso(started_at), "ended_at": utc_iso(ended_at),
        "duration_s": round(ended_at - started_at, 3), "warmup_s": 0,
        "status": status, "failure": failure,
        # Sums over the tried cells (each cell's own counts are in its row); see docs/result-format.md.
        "counts": counts,
        "latency_us": {}, "series": {}, "events": [], "warnings": warnings,
        "large_message": {
            "rows": list(rows),
            "not_sent": not_sent,
            "client_max_value_bytes": MAX_VALUE_BYTES,
            "wire_bytes_source": WIRE_BYTES_SOURCE,
            "memory": memory_findings(rows),
            "bare_comparison": bare,
        },
    }
