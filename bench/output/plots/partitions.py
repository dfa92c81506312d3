"""The per-partition panel: records per partition (consumed, and with transactions committed,
aborted and markers stacked) beside each partition's lag over time, so a skewed key
distribution shows which partitions it loads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from bench.output.plots.figure import FIGURE_SIZE, RUN_COLOURS, Run, caption, nan_for_none, save

# With transactions, a partition's offsets hold these (bottom to top).
_TRANSACTION_PARTS = (("committed", "#2ca02c"), ("aborted", "#d62728"), ("markers", "#7f7f7f"))


def plot_partitions(runs: Sequence[Run], path: Path) -> Path | None:
    """Left: records per partition, one bar group per run (skew in the legend). Right: the
    first run's lag per partition per second. None when no run has the `partitions` section."""
    runs = [(label, result) for label, result in runs if (result.get("partitions") or {}).get("by_partition")]
    if not runs:
        return None
    fig, (count_ax, lag_ax) = plt.subplots(1, 2, figsize=FIGURE_SIZE, gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(runs)
    for run_index, (label, result) in enumerate(runs):
        rows = result["partitions"]["by_partition"]
        partitions = sorted(rows, key=int)
        xs = [int(p) + (run_index - (len(runs) - 1) / 2) * width for p in partitions]
        skew = result["partitions"].get("skew")
        name = f"{label}, skew {skew:g}" if skew is not None else label
        if all("committed" in rows[p] for p in partitions):
            bottom = [0] * len(partitions)
            for part, colour in _TRANSACTION_PARTS:
                heights = [rows[p][part] for p in partitions]
                count_ax.bar(xs, heights, width, bottom=bottom, color=colour, label=f"{name}: {part}" if run_index == 0
                             else None, edgecolor=RUN_COLOURS[run_index % len(RUN_COLOURS)])
                bottom = [b + h for b, h in zip(bottom, heights)]
        else:
            count_ax.bar(xs, [rows[p]["consumed"] for p in partitions], width,
                         color=RUN_COLOURS[run_index % len(RUN_COLOURS)], label=f"{name}: consumed")
        delta = [rows[p].get("broker_offset_delta") for p in partitions]
        if all(d is not None for d in delta):
            count_ax.scatter(xs, delta, marker="_", s=300, color="black", zorder=3,
                             label="broker offset delta" if run_index == 0 else None)
    count_ax.set_xlabel("partition")
    count_ax.set_xticks(sorted({int(p) for _, result in runs for p in result["partitions"]["by_partition"]}))
    count_ax.set_ylabel("records")
    count_ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    count_ax.grid(True, axis="y", alpha=0.35)
    label, first = runs[0]
    series = first.get("series") or {}
    seconds = list(series.get("t_s") or [])
    for partition, values in sorted((series.get("lag_messages_by_partition") or {}).items(), key=lambda item: int(item[0])):
        lag_ax.plot(seconds[:len(values)], nan_for_none(values), linewidth=1.2, label=f"partition {partition}")
    lag_ax.set_xlabel("time since start (s)")
    lag_ax.set_ylabel(f"consumer lag (messages), {label}")
    lag_ax.set_ylim(bottom=0)
    lag_ax.grid(True, alpha=0.35)
    if lag_ax.lines:
        lag_ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.suptitle("Per partition: records and lag", fontsize=12)
    caption(fig, runs)
    return save(fig, path)
