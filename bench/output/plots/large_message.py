"""Figures of a large-message sweep (result["large_message"]["rows"]): latency, transfer rate
and client memory by size and compression, and the compression ratio."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from bench.output.plots.figure import (
    FIGURE_SIZE,
    RUN_COLOURS,
    caption,
    ms_axis,
    nan_for_none,
    save,
)
from bench.results.formatting import format_bytes
from bench.results.metrics import METRICS

# ---------------------------------------------------------------------------------------------
# Large-message sweep (result["large_message"]["rows"])


def _milliseconds(value: Any, statistic: str = "p50") -> float | None:
    """Row latencies are either a number of ms or {"p50": ms, "max": ms}."""
    if isinstance(value, Mapping):
        value = value.get(statistic)
    return value if isinstance(value, (int, float)) else None


def _by_compression(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["size_bytes"]):
        if not row.get("error"):
            groups.setdefault(str(row.get("compression")), []).append(row)
    return groups


def _size_axis(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_bytes(x)))
    ax.set_xlabel("message size (log scale)")
    ax.grid(True, which="major", alpha=0.35)


def java_by_compression(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float, float | None]]]:
    """(size, Java end-to-end ms, Java MB/s) per codec, for every cell the Java peer measured
    (the uncompressed cells librdkafka cannot send included)."""
    groups: dict[str, list[tuple[int, float, float | None]]] = {}
    for row in sorted(rows, key=lambda r: r["size_bytes"]):
        java = row.get("java") or {}
        if isinstance(java.get("end_to_end_ms"), (int, float)):
            groups.setdefault(str(row.get("compression")), []).append(
                (row["size_bytes"], java["end_to_end_ms"], java.get("transfer_rate_mb_s")))
    return groups


def plot_large_message(result: Mapping[str, Any], folder: Path) -> list[Path]:
    rows = ((result.get("large_message") or {}).get("rows")) or []
    groups = _by_compression(rows)
    java_groups = java_by_compression(rows)
    if not groups and not java_groups:
        return []
    colours = {compression: RUN_COLOURS[index % len(RUN_COLOURS)]
               for index, compression in enumerate(dict.fromkeys([*groups, *java_groups]))}
    runs = [("sweep", result)]
    written = []

    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    for compression, group in groups.items():
        colour = colours[compression]
        sizes = [r["size_bytes"] for r in group]
        ax.plot(sizes, [_milliseconds(r.get("service_time_ms")) for r in group], "o-", color=colour,
                label=f"{compression}: service time, send -> ack (p50)")
        end_to_end = [_milliseconds(r.get("end_to_end_ms")) for r in group]
        if any(v is not None for v in end_to_end):
            ax.plot(sizes, nan_for_none(end_to_end), "s--", color=colour, label=f"{compression}: end-to-end")
    for compression, points in java_groups.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], "^:", color=colours[compression],
                label=f"{compression}: Java EndToEndLatency end-to-end (mean)")
    _size_axis(ax)
    ms_axis(ax)
    ax.legend(fontsize=8)
    ax.set_title("Large messages: latency by size and compression", fontsize=12)
    caption(fig, runs)
    written.append(save(fig, folder / "large_message_latency.png"))

    fig, (throughput_ax, memory_ax) = plt.subplots(1, 2, figsize=(FIGURE_SIZE[0] + 2, FIGURE_SIZE[1]))
    for compression, points in java_groups.items():
        throughput_ax.plot([p[0] for p in points], nan_for_none([p[2] for p in points]), "^:", color=colours[compression],
                           label=f"{compression}: Java")
    for compression, group in groups.items():
        colour = colours[compression]
        sizes = [r["size_bytes"] for r in group]
        throughput_ax.plot(sizes, nan_for_none([r.get("transfer_rate_mb_s") for r in group]), "o-", color=colour, label=compression)
        for key, style, who in (("producer_peak_rss_bytes", "o-", "producer"), ("consumer_peak_rss_bytes", "s--", "consumer")):
            rss = [r.get(key) for r in group]
            if any(v is not None for v in rss):
                memory_ax.plot(sizes, [math.nan if v is None else v / 1e6 for v in rss], style, color=colour,
                               label=f"{compression}: {who}")
    # Reference lines: one copy of the payload, and the 2.2x target for the largest message.
    all_sizes = sorted({r["size_bytes"] for group in groups.values() for r in group}
                       | {p[0] for points in java_groups.values() for p in points})
    memory_ax.plot(all_sizes, [s / 1e6 for s in all_sizes], ":", color="black", linewidth=1.2, label="payload size")
    memory_ax.plot(all_sizes, [2.2 * s / 1e6 for s in all_sizes], ":", color="#999", linewidth=1.2,
                   label="2.2 x payload")
    for ax in (throughput_ax, memory_ax):
        _size_axis(ax)
        ax.legend(fontsize=8)
    throughput_ax.set_ylabel(f"MB/s (uncompressed payload / {METRICS['end_to_end_p50'].label})")
    throughput_ax.set_title("transfer rate of one message in flight", fontsize=10)
    ms_axis(memory_ax, "peak RSS (MB, log scale)")
    memory_ax.set_title("client memory", fontsize=10)
    fig.suptitle("Large messages: transfer rate and client memory", fontsize=12)
    caption(fig, runs)
    written.append(save(fig, folder / "large_message_throughput_memory.png"))
    compression_plot = plot_large_message_compression(result, folder / "large_message_compression.png")
    return written + ([compression_plot] if compression_plot else [])


def plot_large_message_compression(result: Mapping[str, Any], path: Path) -> Path | None:
    """Uncompressed size over bytes on the wire, per codec; hollow markers where librdkafka
    sent the batch uncompressed because compressing did not make it smaller."""
    groups = {c: g for c, g in _by_compression((result.get("large_message") or {}).get("rows") or []).items()
              if c != "none" and any(r.get("compression_ratio") for r in g)}
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    for index, (compression, group) in enumerate(groups.items()):
        colour = RUN_COLOURS[(index + 1) % len(RUN_COLOURS)]
        sizes = [r["size_bytes"] for r in group]
        ax.plot(sizes, nan_for_none([r.get("compression_ratio") for r in group]), "o-", color=colour, label=compression)
        skipped = [r for r in group if r.get("compression_skipped")]
        if skipped:
            ax.plot([r["size_bytes"] for r in skipped], [r["compression_ratio"] for r in skipped], "o", color="white",
                    markeredgecolor=colour, label=f"{compression}: skipped (sent uncompressed)")
    ax.axhline(1, color="black", linestyle=":", linewidth=1, label="no compression")
    _size_axis(ax)
    ms_axis(ax, "compression ratio (payload / wire bytes, log scale)")
    ax.legend(fontsize=8)
    ax.set_title("Large messages: compression ratio", fontsize=12)
    caption(fig, [("sweep", result)])
    return save(fig, path)


