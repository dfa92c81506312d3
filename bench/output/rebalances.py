"""What a person reads about a run's consumer events: one console line per event, and the
report's table (labels from the metric table)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.results.formatting import format_value
from bench.results.metrics import METRICS

_FIGURES = (("rebalance_pause", "pause_ms"), ("rebalance_partition_pause", "partition_pause_max_ms"),
            ("rebalance_lag_peak", "lag_peak_messages"), ("rebalance_recover", "recover_s"),
            ("rebalance_duplicated", "duplicated"))


def _figure(entry: Mapping[str, Any], name: str, key: str) -> str:
    value = entry.get(key)
    if value is None:
        return "n/a"
    return f"{value:,}" if key == "duplicated" else format_value(value, METRICS[name].unit)


def _protocol(section: Mapping[str, Any]) -> str:
    timing = ", ".join(f"{label} {section[key]:,} ms" for key, label in (("session_timeout_ms", "session timeout"),
                                                                         ("heartbeat_interval_ms", "heartbeat"))
                       if section.get(key) is not None)
    return f"group protocol {section['group_protocol']}" + (f" ({timing})" if timing else "")


def rebalance_lines(result: Mapping[str, Any]) -> list[str]:
    """The console's line per consumer event, after the groups' lines."""
    section = result.get("rebalances")
    if not section:
        return []
    lines = []
    for entry in section["events"]:
        pause, longest, peak, recover, again = (_figure(entry, name, key) for name, key in _FIGURES)
        before = entry.get("lag_before_messages")
        lines.append(f"rebalance {entry['fault']} (group {entry['group']}, consumer {entry['consumer']}) at "
                     f"{entry['t_s']:.3f} s, {_protocol(section)}: group read nothing for {pause}, a partition for "
                     f"{longest} at most; lag peak {peak} (before {'n/a' if before is None else f'{before:,}'}), "
                     f"back after {recover}; read again {again}")
    return lines


def rebalance_table(result: Mapping[str, Any]) -> tuple[str, tuple[str, ...], list[tuple[str, ...]]] | None:
    """(intro, header, rows) of the report's table, None without consumer events."""
    section = result.get("rebalances")
    if not section:
        return None
    header = ("event", "group/consumer", "at", *(METRICS[name].label for name, _ in _FIGURES), "pause per partition")
    rows = [(entry["fault"], f"{entry['group']}/{entry['consumer']}", f"{entry['t_s']:.3f} s",
             *(_figure(entry, name, key) for name, key in _FIGURES),
             ", ".join(f"{p}: {format_value(ms, 'ms')}" for p, ms in entry["pause_ms_by_partition"].items()))
            for entry in section["events"]]
    intro = (f"{_protocol(section)}. Per consumer event, until its group's next event or the end of the run: pauses "
             f"under {section['gap_floor_ms']:g} ms are the normal rhythm of batches and count as 0; the lag peak is "
             "the group's, every partition counted (one no member reads too); time to recover runs until the lag is "
             "back at its level before the event; duplicates are orders the group read again.")
    return intro, header, rows
