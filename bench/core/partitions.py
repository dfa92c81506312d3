"""The result's `partitions` section: per partition, what was acked, what the tracker consumed,
what the broker's offsets grew by and the largest lag, so a key distribution's skew shows (and
each partition's counts can be checked against its offsets). With transactions also each
partition's committed and aborted records and its commit/abort markers, which the broker's
offsets count too: committed + aborted + markers = broker_offset_delta, partition by partition.

Pure: the coordinator passes what it measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACKED_UNKNOWN = ("delivery_reports = \"failures\" flat out: no report per acked message, so no partition per ack; "
                 "consumed and broker_offset_delta per partition still hold")
OFFSETS_UNREAD = "the broker's offsets could not be read after the run"


def partitions_section(*, acked: Mapping[int, int] | None, consumed: Mapping[int, int],
                       offset_delta: Mapping[int, int] | None, lag_by_partition: Mapping[str, list],
                       window: list[int], transactions: Mapping[str, Mapping[int, int]] | None = None,
                       offsets_unread: str = OFFSETS_UNREAD, acked_unknown: str = ACKED_UNKNOWN) -> dict[str, Any]:
    """{"by_partition": {"0": {...}, ...}, "not_measured": {figure: reason}}.

    acked: acked records per partition (None: not known, see ACKED_UNKNOWN); consumed: what the
    tracker read per partition (duplicates and foreign records included: what it fetched);
    offset_delta: high watermark after the run minus before; lag_by_partition: the per-second
    lag series (result["series"]["lag_messages_by_partition"]); window: the measured seconds'
    indices; transactions: figure ("committed", "aborted", "markers") -> partition -> count.
    """
    known = set(consumed) | set(acked or {}) | set(offset_delta or {}) | {int(p) for p in lag_by_partition}
    for counts in (transactions or {}).values():
        known |= set(counts)
    rows: dict[str, dict[str, Any]] = {}
    for partition in sorted(known):
        lags = lag_by_partition.get(str(partition)) or []
        inside = [lags[i] for i in window if i < len(lags) and lags[i] is not None]
        row = {"acked": None if acked is None else acked.get(partition, 0),
               "consumed": consumed.get(partition, 0),
               "broker_offset_delta": None if offset_delta is None else offset_delta.get(partition, 0),
               "lag_max": max(inside) if inside else None}
        for figure, counts in (transactions or {}).items():
            row[figure] = counts.get(partition, 0)
        rows[str(partition)] = row
    not_measured = {}
    if acked is None:
        not_measured["acked"] = acked_unknown
    if offset_delta is None:
        not_measured["broker_offset_delta"] = offsets_unread
    if rows and all(row["lag_max"] is None for row in rows.values()):
        not_measured["lag_max"] = "no lag sample inside the measured window"
    return {"by_partition": rows, "skew": skew(rows), "not_measured": not_measured}


def skew(rows: Mapping[str, Mapping[str, Any]], figure: str = "consumed") -> float | None:
    """The busiest partition's count over the mean count (1.0: even); None without records."""
    counts = [row[figure] for row in rows.values() if row.get(figure) is not None]
    total = sum(counts)
    if not counts or not total:
        return None
    return round(max(counts) * len(counts) / total, 3)
