"""The large-message sweep's cells, findings and result (pure, except that `sweep_result` reads
the clock).

A cell is one size x compression: its row holds its figures and its measured counts (the core's
`Counts`, with a reason for each one not measured). The sweep is an adapter to the core's result:
its counts are the sum over the tried cells, its status the core's `run_verdict`, and its rows and
findings the result's `large_message` section.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench.broker.ensure import BrokerInUse
from bench.core.audit import OFFSETS, Verdict, run_verdict
from bench.core.result import OFFSETS_NOT_READ, Counts, RunResult, broker_section, sum_counts
from bench.large_message.plan import SweepOptions, size_label
from bench.peers.java_tools import END_TO_END_LATENCY, EndToEndFigures
from bench.results.metrics import METRICS
from streamstore.config import MAX_VALUE_BYTES, PRODUCE_RECORD_SET_MAX_BYTES

# Targets for the largest message: peak RSS per client, and the harness's overhead against a
# bare confluent-kafka script.
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
    counts: Counts | None = None,
) -> dict[str, Any]:
    """One size x compression as result.json stores it (latencies in ms, p50 and max over reps).

    counts: the cell's measured counts (`cell_counts`), None for a cell that was not sent.
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
        "service_time_ms": p50_max(produce_ms),
        "end_to_end_ms": end_to_end,
        # The transfer rate of one message in flight (not a throughput under load): uncompressed
        # payload through the whole pipeline (produce call -> consumed) at the end-to-end p50.
        "transfer_rate_mb_s": round(size_bytes / 1e6 / (end_to_end["p50"] / 1000), 3) if end_to_end else None,
        "wire_bytes": wire,
        "broker_stored_bytes": broker_stored_bytes,
        # broker_offset_delta: how far the cell's topic offsets grew (read from the broker).
        "counts": counts.to_dict() if counts is not None else None,
        # Count name -> why the cell did not measure it (the sweep's warnings name the cell).
        "counts_not_measured": dict(counts.not_measured) if counts is not None else {},
        # Four significant figures: 0.9999 (batch overhead) must not round to 1.
        "compression_ratio": float(f"{size_bytes / wire:.4g}") if wire else None,
        # librdkafka sends the batch uncompressed when compressing does not make it smaller.
        "compression_skipped": compression != "none" and wire is not None and wire >= size_bytes,
        "producer_peak_rss_bytes": producer_peak_rss_bytes,
        "consumer_peak_rss_bytes": consumer_peak_rss_bytes,
        "samples": {"service_time_ms": [round(v, 3) for v in produce_ms],
                    "end_to_end_ms": [round(v, 3) for v in end_to_end_ms]},
        "error": error,
        # Kafka's EndToEndLatency at the same size and codec (`java_cell`), null without --peer java.
        "java": None,
    }


# What EndToEndLatency sends: a value of one repeated letter (its own choice), so a codec shrinks it to
# almost nothing; without compression its size on the wire is the harness's.
JAVA_PAYLOAD = "one repeated letter (EndToEndLatency's own payload; compresses to almost nothing)"


def java_cell(size_bytes: int, figures: EndToEndFigures | None, warmup: bool, error: str | None,
              broker_offset_delta: int | None) -> dict[str, Any]:
    """Kafka's EndToEndLatency beside a cell: end_to_end_ms is the mean over its messages (one at a
    time: send, wait for the ack, poll it back), leaving out a warm-up first message when one was
    sent; null with the tool's reason when it failed. broker_offset_delta: how far its topic's
    offsets grew (the tool checks each message it reads back against the one it sent)."""
    end_to_end = None
    if figures is not None:
        end_to_end = figures.mean_after_first_ms if warmup and figures.mean_after_first_ms is not None else figures.mean_ms
    return {
        "tool": END_TO_END_LATENCY,
        "messages": figures.messages if figures else None,
        "warmup_message_left_out": warmup if figures else None,
        "end_to_end_ms": end_to_end,
        "transfer_rate_mb_s": round(size_bytes / 1e6 / (end_to_end / 1000), 3) if end_to_end else None,
        # As the tool prints them: its first message, and its percentiles in whole ms over all messages.
        "tool_output": figures.to_dict() if figures else None,
        "broker_offset_delta": broker_offset_delta,
        "error": error,
    }


def not_sent_row(size_bytes: int, compression: str, reason: str) -> dict[str, Any]:
    """A cell known to be unsendable: listed with the reason, never tried, so it has no counts."""
    return {**cell_row(size_bytes, compression, [], [], [], None, None, None, reason), "not_sent": True}


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

# Consumer replies that end a cell after the consumer's own full wait: a message missing then is
# lost. "error" (or no reply at all) ends it early, and loss cannot be told from not-yet-received.
CONSUMER_FINISHED = ("complete", "end_offset", "timeout")
NOTHING_RECEIVED = {"received": 0, "distinct": 0, "malformed": 0, "duplicated": 0}


def cell_counts(sent: int, acked: int, consumer: Mapping[str, int], consumer_end: str | None,
                broker_offset_delta: int | None, unfinished_reason: str | None = None) -> Counts:
    """The counts of one cell from what was measured.

    sent: produce attempts; acked: of those, acknowledged by the broker; consumer: the consumer's
    running tallies (received, distinct offsets, malformed, duplicated); consumer_end: the
    reason of its "done" reply (None when it sent none); broker_offset_delta: how far the cell's
    topic offsets grew (None when the broker did not answer). lost = acked - distinct messages
    received, known when every acked message was received or the consumer waited its full
    timeout; else not measured, with the reason (unfinished_reason: what cut the cell short).
    """
    distinct = consumer["distinct"]
    lost: int | None = max(0, acked - distinct)
    not_measured = {}
    if distinct < acked and consumer_end not in CONSUMER_FINISHED:
        lost = None
        not_measured["lost"] = (f"{acked - distinct} acked message(s) not received yet when the consumer stopped "
                                f"({unfinished_reason or consumer_end or 'no reply'})")
    if broker_offset_delta is None:
        not_measured["broker_offset_delta"] = OFFSETS_NOT_READ
    return Counts(sent=sent, acked=acked, failed=sent - acked, consumed=consumer["received"], lost=lost,
                  duplicated=consumer["duplicated"], malformed=consumer["malformed"],
                  broker_offset_delta=broker_offset_delta, not_measured=not_measured)


def cell_name(row: Mapping[str, Any]) -> str:
    return f"{row['size_label']} {row['compression']}"


def tried_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cells that were tried: those known to be unsendable (not sent) contribute no counts."""
    return [row for row in rows if not row.get("not_sent")]


def failed_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cells that were tried and failed (cells known to be unsendable are not tried)."""
    return [row for row in rows if row["error"] and not row.get("not_sent")]


def row_counts(row: Mapping[str, Any]) -> Counts:
    return Counts(**row["counts"], not_measured=row["counts_not_measured"])


def sweep_counts(rows: Sequence[Mapping[str, Any]]) -> Counts:
    """The sweep's counts: each the sum over the tried cells, not measured when a cell's is."""
    return sum_counts({cell_name(row): row_counts(row) for row in tried_rows(rows)})


def sweep_verdict(rows: Sequence[Mapping[str, Any]], counts: Counts, interrupted: bool) -> Verdict:
    """Status, failure and exit code by the core's one rule. A cell that failed deliveries or lost
    acked messages shows in the counts (its error is the first error); one that failed otherwise
    (a consume error, a message that differs, a worker that would not start) fails the sweep."""
    failed = failed_rows(rows)
    in_counts = [row for row in failed if row["counts"]["failed"] or row["counts"]["lost"]]
    other = [row for row in failed if row not in in_counts]
    failure = (f"{len(other)} of {len(rows)} cells failed; first: {cell_name(other[0])}: {other[0]['error']}"
               if other else None)
    first_error = f"{cell_name(in_counts[0])}: {in_counts[0]['error']}" if in_counts else None
    return run_verdict(interrupted=interrupted, failure=failure, failed=counts.failed or 0, lost=counts.lost,
                       first_error=first_error)


def format_row(row: Mapping[str, Any]) -> str:
    """One line per cell for the console."""
    label = f"{size_label(row['size_bytes']):>18}  {row['compression']:<5}"
    if row.get("error"):
        shown = row["error"] if row.get("not_sent") else f"FAILED: {row['error']}"
        return f"{label}  {shown}"
    ratio = row.get("compression_ratio")
    skipped = " (compression skipped)" if row.get("compression_skipped") else ""
    wire = f"wire {row['wire_bytes']:,} B (x{ratio:g}){skipped}" if ratio else "wire ?"
    peaks = [row.get("producer_peak_rss_bytes"), row.get("consumer_peak_rss_bytes")]
    memory = "/".join("?" if p is None else f"{p / 1e6:,.0f}" for p in peaks)

    def figure(value: float | None, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width},.1f}"

    produce, end_to_end = row["service_time_ms"], row["end_to_end_ms"]
    return (
        f"{label}  x{row['reps']}  {METRICS['service_time_p50'].label} {figure(produce and produce['p50'], 10)} ms  "
        f"{METRICS['end_to_end_p50'].label} {figure(end_to_end and end_to_end['p50'], 10)} ms  "
        f"{figure(row['transfer_rate_mb_s'], 8)} MB/s  "
        f"peak RSS prod/cons {memory} MB  {wire}"
    )


def format_java_row(row: Mapping[str, Any]) -> str:
    """The Java peer's line for a cell, printed under the harness's."""
    label = f"{size_label(row['size_bytes']):>18}  {row['compression']:<5}"
    java = row["java"]
    if java["error"]:
        return f"{label}  Java EndToEndLatency: not measured: {java['error']}"
    counted = java["messages"] - (1 if java["warmup_message_left_out"] else 0)
    return (f"{label}  Java EndToEndLatency  {METRICS['end_to_end_mean'].label} {java['end_to_end_ms']:>10,.1f} ms (of {counted})  "
            f"{java['transfer_rate_mb_s']:>8,.1f} MB/s")


def sweep_warnings(payload: str, rows: Sequence[Mapping[str, Any]], bare: Mapping[str, Any] | None) -> list[str]:
    """What a reader of the sweep must know beyond its counts (their own warnings come with them)."""
    warnings = []
    for row in tried_rows(rows):
        acked, grew = row["counts"]["acked"], row["counts"]["broker_offset_delta"]
        if grew is not None and grew != acked:
            warnings.append(f"{cell_name(row)}: the broker's offsets grew by {grew:,} but {acked:,} message(s) were acked")
    skipped = sorted({row["size_label"] for row in rows if row["compression_skipped"]})
    if skipped:
        warnings.append(f"compression skipped by librdkafka (compressed batch not smaller) for: {', '.join(skipped)}; "
                        f"payload '{payload}' does not compress")
    not_sent = [cell_name(row) for row in rows if row.get("not_sent")]
    if not_sent:
        warnings.append(f"not sent (librdkafka cannot deliver an uncompressed batch above "
                        f"{PRODUCE_RECORD_SET_MAX_BYTES:,} bytes): {', '.join(not_sent)}")
    java_failed = [f"{cell_name(row)}: {row['java']['error']}" for row in rows if (row.get("java") or {}).get("error")]
    if java_failed:
        warnings.append(f"Java EndToEndLatency not measured for {len(java_failed)} cell(s); first: {java_failed[0]}")
    for finding in memory_findings(rows):
        if not finding["met"]:
            warnings.append(f"{finding['client']} peak RSS {finding['ratio_to_payload']:g}x the payload for "
                            f"{size_label(finding['size_bytes'])} {finding['compression']} "
                            f"(target <= {PEAK_RSS_TARGET_RATIO}x)")
    if bare and bare.get("ratio") and not bare["met"]:
        warnings.append(f"harness end-to-end {bare['ratio']:g}x the bare script's (target <= "
                        f"{BARE_END_TO_END_TARGET_RATIO}x)")
    return warnings


def sweep_result(options: SweepOptions, run_id: str, rows: Sequence[Mapping[str, Any]], bare: Mapping[str, Any] | None,
                 environment: Mapping[str, Any], broker: BrokerInUse, topic_settings: Mapping[str, str] | None,
                 started_at: float, interrupted: bool,
                 extra_warnings: Sequence[str] = (), peer_version: str | None = None,
                 series: Mapping[str, Any] | None = None, resources: Mapping[str, Any] | None = None,
                 events: Sequence[Mapping[str, Any]] = ()) -> RunResult:
    """The sweep as the core's result (kind "large-message"): no latency histograms, the figures
    are per cell in the `large_message` section; the series are the resources of each second of
    the sweep (`resources`), and `events` mark where each cell began."""
    ended_at = time.time()
    counts = sweep_counts(rows)
    return RunResult(
        kind="large-message", run_id=run_id, scenario=options.to_dict(), fingerprint=options.fingerprint(),
        environment=environment, broker=broker_section(broker, topic_settings or {}), started_at=started_at,
        ended_at=ended_at,
        duration_s=ended_at - started_at, warmup_s=0, verdict=sweep_verdict(rows, counts, interrupted), counts=counts,
        # Per cell: lost = acked - distinct offsets its consumer received.
        audit=OFFSETS, latency_us={}, series=dict(series or {}), events=list(events),
        warnings=[*sweep_warnings(options.payload, rows, bare), *extra_warnings],
        sections={"large_message": {
            "rows": list(rows),
            "not_sent": [cell_name(row) for row in rows if row.get("not_sent")],
            "client_max_value_bytes": MAX_VALUE_BYTES,
            "wire_bytes_source": WIRE_BYTES_SOURCE,
            "memory": memory_findings(rows),
            "bare_comparison": bare,
            # The peer measured beside each cell (row["java"]), or null without --peer.
            "peer": {"name": "java", "tool": END_TO_END_LATENCY, "kafka_version": peer_version,
                     "payload": JAVA_PAYLOAD} if options.peer == "java" else None,
        },
            **({"resources": dict(resources)} if resources is not None else
               {"resources_not_measured": "resource sampling was turned off for this sweep"})})
