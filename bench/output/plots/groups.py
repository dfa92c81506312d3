"""The consumer-groups panel of a fan-out run: each group's end-to-end percentiles side by side,
and each group's lag over time, so a group that falls behind the others shows at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from bench.output.plots.figure import FIGURE_SIZE, RUN_COLOURS, Run, caption, ms_axis, nan_for_none, save
from bench.results.metrics import LATENCY_LABELS

_STATISTICS = ("p50", "p99", "max")


def plot_groups(runs: Sequence[Run], path: Path) -> Path | None:
    """Left: the first fan-out run's end-to-end p50, p99 and max per group (measured window).
    Right: its lag per group per second. None when no run has a `groups` section."""
    runs = [(label, result) for label, result in runs if result.get("groups")]
    if not runs:
        return None
    label, result = runs[0]
    groups = result["groups"]
    fig, (latency_ax, lag_ax) = plt.subplots(1, 2, figsize=FIGURE_SIZE, gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(_STATISTICS)
    for index, statistic in enumerate(_STATISTICS):
        xs = [entry["group"] + (index - (len(_STATISTICS) - 1) / 2) * width for entry in groups]
        values = [entry["end_to_end_us"].get(statistic) for entry in groups]
        latency_ax.bar(xs, [float("nan") if v is None else v / 1000 for v in values], width,
                       color=RUN_COLOURS[index % len(RUN_COLOURS)], label=statistic)
    ms_axis(latency_ax, f"{LATENCY_LABELS['end_to_end'][0]} (ms, log scale), {label}")
    latency_ax.set_xlabel("consumer group")
    latency_ax.set_xticks([entry["group"] for entry in groups])
    latency_ax.legend(fontsize=8, loc="best", framealpha=0.9)
    seconds = list((result.get("series") or {}).get("t_s") or [])
    for entry in groups:
        values = entry.get("lag_messages") or []
        lag_ax.plot(seconds[:len(values)], nan_for_none(values[:len(seconds)]), linewidth=1.2,
                    label=f"group {entry['group']} ({len(entry['consumers'])} consumer(s))")
    lag_ax.set_xlabel("time since start (s)")
    lag_ax.set_ylabel("consumer lag (messages)")
    lag_ax.set_ylim(bottom=0)
    lag_ax.grid(True, alpha=0.35)
    if lag_ax.lines:
        lag_ax.legend(fontsize=8, framealpha=0.9)
    caption(fig, runs[:1])
    return save(fig, path)
