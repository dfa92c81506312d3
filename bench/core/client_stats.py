"""librdkafka's own latency figures, from its statistics (`statistics.interval.ms`, `stats_cb`).

With failures-only delivery reports no per-message service time can be taken; what the client
knows about its latency per broker is then the figure: `int_latency` (a message's time in the
producer's internal queue, produce() -> the request being built) and `rtt` (request round trip
to the broker), each a window of one statistics interval with avg, p50, p99 and max in µs.

librdkafka's percentiles come from histograms with fixed ranges (DESIGN.md §4): rtt 0-500 ms,
internal queue latencies 0-100 ms. A value beyond the range is counted in `outofrange` and the
percentiles are then approximate (measured here: int_latency p50 near 2 s in a backlogged
interval); avg and max are exact. The summary says how many intervals went out of range.

Pure apart from `StatsCollector.on_stats`, the callback the producer process installs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

# librdkafka window name -> its histogram's fixed upper bound in µs.
CLIENT_LATENCY_RANGES_US = {"int_latency": 100_000, "rtt": 500_000}
CLIENT_LATENCY_STATISTICS = ("avg", "p50", "p99", "max")
# librdkafka's statistics interval while a run collects them.
STATISTICS_INTERVAL_MS = 1000


def broker_windows(stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per broker that had samples in this interval: name, and per window cnt,
    avg, p50, p99, max and outofrange (µs). Brokers without samples (the bootstrap entries,
    an idle broker) are left out: their zeros are no measurement."""
    entries = []
    for name, broker in sorted((stats.get("brokers") or {}).items()):
        entry: dict[str, Any] = {"broker": name}
        for window in CLIENT_LATENCY_RANGES_US:
            figures = broker.get(window) or {}
            if figures.get("cnt"):
                entry[window] = {key: figures.get(key, 0) for key in ("cnt", *CLIENT_LATENCY_STATISTICS, "outofrange")}
        if len(entry) > 1:
            entries.append(entry)
    return entries


class StatsCollector:
    """The producer process's stats_cb: keeps each interval's per-broker windows until taken."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.errors = 0

    def on_stats(self, text: str) -> None:
        try:
            self.pending.extend(broker_windows(json.loads(text)))
        except (ValueError, AttributeError, TypeError):
            self.errors += 1  # a damaged statistics document: that interval has no figures

    def take(self) -> list[dict[str, Any]]:
        taken, self.pending = self.pending, []
        return taken


def summarize_client_latency(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per window over the given per-broker intervals: avg weighted by sample count, p50 and p99
    of the worst interval (a percentile of percentiles would mean nothing), max, how many
    intervals, how many of them had values beyond the histogram's range, and that range.
    A window without samples is None."""
    summary: dict[str, Any] = {}
    entries = list(entries)
    for window, range_us in CLIENT_LATENCY_RANGES_US.items():
        figures = [entry[window] for entry in entries if window in entry]
        count = sum(f["cnt"] for f in figures)
        if not count:
            summary[window] = None
            continue
        summary[window] = {
            "avg": round(sum(f["avg"] * f["cnt"] for f in figures) / count, 1),
            "p50": max(f["p50"] for f in figures),
            "p99": max(f["p99"] for f in figures),
            "max": max(f["max"] for f in figures),
            "samples": count,
            "intervals": len(figures),
            "intervals_out_of_range": sum(1 for f in figures if f.get("outofrange")),
            "range_us": range_us,
        }
    return summary


def client_latency_warnings(summary: Mapping[str, Any]) -> list[str]:
    """Why a window is null (no statistics interval with samples fell in the measured window), and
    where its percentiles are approximate."""
    unmeasured = [f"{window}: null, no librdkafka statistics interval with samples fell in the measured window "
                  f"(statistics every {STATISTICS_INTERVAL_MS} ms; a window that short, or producers starved of CPU)"
                  for window, figures in summary.items() if figures is None]
    return unmeasured + [f"{window}: {figures['intervals_out_of_range']} of {figures['intervals']} intervals had values above "
            f"librdkafka's nominal {figures['range_us'] // 1000} ms histogram range (counted out of range): read its "
            f"p50/p99 as approximate there, avg and max as exact"
            for window, figures in summary.items() if figures and figures["intervals_out_of_range"]]
