"""Names for runs shown side by side, from what differs between their scenarios: a compare of an
acks=all and an acks=1 run calls them "acks=all" and "acks=1", not by their start times. Pure.

A name takes the fewest differing fields that tell the runs apart, the fields that define a run
first (a failover table's acks=all row also turns idempotence on; "acks=all" names it, and the
full difference is listed by `scenario_differences`). Runs whose scenarios agree keep the names
they were given (their folders), and the timestamps go to the footers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.results.formatting import format_bytes

# The fields that define a run, most telling first; any other differing field follows, by name.
NAME_PRIORITY = ("kind", "acks", "idempotence", "min_insync_replicas", "replication_factor", "compression",
                 "compression_level", "partitions", "message_size", "payload", "rate", "phases", "producers",
                 "users", "user_rate", "linger_ms", "batch_size", "keys", "delivery_reports", "faults",
                 "unclean_leader_election", "duration_s", "warmup_s")
# Fields that say where or under which label a run went, not what it measured: never a name.
NOT_NAMES = frozenset({"name", "topic", "drain_timeout_s", "fault_consumer_delay_ms", "fault_tracker_stall_s"})
_SIZES = ("message_size", "batch_size")


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fields(result: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": result.get("kind"), **_flat(result.get("scenario") or {})}


def value_text(field: str, value: Any) -> str:
    """A scenario value as a name shows it: `true`, `default` for an unset broker setting."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "true" if value else "false"
    if field in _SIZES and isinstance(value, (int, float)):
        return format_bytes(value).replace(" ", "")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], Mapping):  # phases
            return "+".join(f"{p.get('rate', 0):g}/s*{p.get('duration_s', 0):g}s" for p in value)
        return " ".join(str(item) for item in value) or "none"
    return str(value)


def _order(field: str) -> tuple[int, str]:
    return (NAME_PRIORITY.index(field) if field in NAME_PRIORITY else len(NAME_PRIORITY), field)


def scenario_differences(results: Sequence[Mapping[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    """Every field whose value is not the same in all runs: (field, its value in each run), the
    defining fields first."""
    fields = [_fields(result) for result in results]
    names = {key for flat in fields for key in flat} - NOT_NAMES
    differing = sorted((key for key in names if len({repr(flat.get(key)) for flat in fields}) > 1), key=_order)
    return [(key, tuple(value_text(key, flat.get(key)) for flat in fields)) for key in differing]


def _collisions(names: Sequence[str]) -> int:
    return len(names) - len(set(names))


def run_names(results: Sequence[Mapping[str, Any]], fallbacks: Sequence[str]) -> list[str]:
    """One name per run: "field=value[, field=value]" over the fewest differing fields (in
    NAME_PRIORITY order) that tell the runs apart; the fallback (e.g. the run's folder) when the
    scenarios agree, and the fallback in brackets after a name still shared."""
    chosen: list[tuple[str, tuple[str, ...]]] = []
    names = [""] * len(results)
    for field, values in scenario_differences(results):
        candidate = [", ".join(filter(None, (name, f"{field}={value}"))) for name, value in zip(names, values)]
        # A field adds to the names only when it tells more runs apart.
        if not chosen or _collisions(candidate) < _collisions(names):
            chosen.append((field, values))
            names = candidate
        if _collisions(names) == 0:
            break
    if not chosen:
        return list(fallbacks)
    return [name if names.count(name) == 1 else f"{name} ({fallback})" for name, fallback in zip(names, fallbacks)]
