"""The result file's schema: its version history, the kinds of result, and the upgrades that let
this harness read files written by earlier versions. Pure: no I/O."""

from __future__ import annotations

from typing import Any

# Schema versions of result.json. Bump on any change a reader must know about, and say what
# changed here; load_result refuses versions it does not list.
#   1  first version: scenario, fingerprint, environment, broker, counts, latency_us summaries
#      with encoded cumulative histograms, per-second series, events, warnings, large_message.
#   2  one name per metric: large-message rows say service_time_ms (was produce_latency_ms, also
#      under samples) and carry their counts as the core writes them (counts.broker_offset_delta,
#      was the row's broker_messages; counts_not_measured, was counts_note); the run folder's interval logs
#      are service_time.hlog and end_to_end.hlog (were delivery.hlog and e2e.hlog).
#      load_result reads version 1 files by renaming those fields in memory.
#   3  large-message: each row carries `java` (Kafka's EndToEndLatency at the same size and codec,
#      or null without --peer java), the section `peer` (which tool, null without --peer) and the
#      scenario `peer`. load_result reads versions 1 and 2 with those as null.
SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2, 3})

RESULT_KINDS = frozenset({"run", "large-message", "locust"})


def _renamed(mapping: Any, old: str, new: str) -> None:
    if isinstance(mapping, dict) and old in mapping and new not in mapping:
        mapping[new] = mapping.pop(old)


def upgrade_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A version 1 result in version 2's names (see SCHEMA_VERSION); the values are unchanged.
    load_result then takes it on to the current version."""
    for row in (document.get("large_message") or {}).get("rows") or []:
        _renamed(row, "produce_latency_ms", "service_time_ms")
        _renamed(row.get("samples"), "produce_latency_ms", "service_time_ms")
        if isinstance(row.get("counts"), dict) and "broker_messages" in row:
            row["counts"]["broker_offset_delta"] = row.pop("broker_messages")
        if "counts_note" in row:
            # Version 1 kept one free-text note for all null counts of the row.
            note = row.pop("counts_note")
            row["counts_not_measured"] = {"counts": note} if note else {}
        row.setdefault("counts_not_measured", {})
    document["schema_version"] = 2
    return document


def upgrade_v2(document: dict[str, Any]) -> dict[str, Any]:
    """A version 2 result in version 3's shape: no peer was measured, so its fields are null."""
    large = document.get("large_message")
    if isinstance(large, dict):
        large.setdefault("peer", None)
        for row in large.get("rows") or []:
            row.setdefault("java", None)
        if isinstance(document.get("scenario"), dict):
            document["scenario"].setdefault("peer", None)
    document["schema_version"] = 3
    return document


def upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A result of any supported version in the current version's shape."""
    if document["schema_version"] == 1:
        document = upgrade_v1(document)
    if document["schema_version"] == 2:
        document = upgrade_v2(document)
    return document


