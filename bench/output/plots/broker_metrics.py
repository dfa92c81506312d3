"""The broker panel of a run, beside the resources panel: each node's bytes in and out per second
and its request handlers' idle share, from the broker's own metrics (bench/core/broker_metrics.py),
with the line under which the verdicts call the broker busy (bench/analysis/bottlenecks.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from bench.analysis.bottlenecks import HANDLER_IDLE_BUSY_PERCENT
from bench.output.plots.figure import FIGURE_SIZE, RUN_COLOURS, Run, caption, legend_outside, mark_time, nan_for_none, save
from bench.results.metrics import BROKER_METRIC_SERIES, broker_series_key

_BYTES = ("broker_bytes_in_per_s", "broker_bytes_out_per_s")
_IDLE = "broker_request_handler_idle_percent"
_MB = 1e6


def _measured(runs: Sequence[Run]) -> list[Run]:
    return [(label, result) for label, result in runs
            if ((result.get("resources") or {}).get("broker_metrics") or {}).get("nodes")]


def plot_broker_metrics(runs: Sequence[Run], path: Path) -> Path | None:
    """Two panels sharing time: bytes in (solid) and out (dashed) in MB/s, request handlers idle
    (%); one colour per node (and run). None when no run read the broker's metrics."""
    measured = _measured(runs)
    if not measured:
        return None
    fig, (bytes_ax, idle_ax) = plt.subplots(2, 1, figsize=(FIGURE_SIZE[0], 7), sharex=True)
    colour_index = 0
    for label, result in measured:
        series = result.get("series") or {}
        seconds = list(series.get("t_s") or [])
        prefix = "" if len(measured) == 1 else f"{label} "
        for node in result["resources"]["broker_metrics"]["nodes"]:
            colour = RUN_COLOURS[colour_index % len(RUN_COLOURS)]
            colour_index += 1
            for key, style in zip(_BYTES, ("-", "--")):
                values = (series.get(broker_series_key(key)) or {}).get(node) or []
                megabytes = [None if value is None else value / _MB for value in values]
                direction = "in" if key == _BYTES[0] else "out"
                bytes_ax.plot(seconds[:len(values)], nan_for_none(megabytes), style, color=colour, linewidth=1.5,
                              label=f"{prefix}{node} {direction}")
            idle = (series.get(broker_series_key(_IDLE)) or {}).get(node) or []
            idle_ax.plot(seconds[:len(idle)], nan_for_none(idle), "-", color=colour, linewidth=1.5, label=prefix + node)
    bytes_ax.set_ylabel("broker bytes in (solid), out (dashed)\n(MB/s)")
    idle_ax.set_ylabel(f"{BROKER_METRIC_SERIES[_IDLE][0].split(' (')[0]}\n({BROKER_METRIC_SERIES[_IDLE][1]})")
    idle_ax.axhline(HANDLER_IDLE_BUSY_PERCENT, color="#d62728", linestyle=":", linewidth=1)
    idle_ax.set_ylim(0, 105)
    idle_ax.set_xlabel("time since start (s)")
    for ax in (bytes_ax, idle_ax):
        mark_time(ax, measured, show_labels=ax is bytes_ax)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.35)
        legend_outside(ax)
    fig.suptitle(f"Broker's own metrics per second (dotted red: handlers idle {HANDLER_IDLE_BUSY_PERCENT:g} %, "
                 "below which the verdicts call it busy)", fontsize=12)
    caption(fig, measured)
    return save(fig, path)
