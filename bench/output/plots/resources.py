"""The resources panel of a run: CPU of each process (and of its main thread, the one that runs
Python), the host's CPU, and each process's RSS per second, with the saturation line the
bottleneck verdicts use (bench/analysis/bottlenecks.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from bench.analysis.bottlenecks import SATURATED_PERCENT
from bench.analysis.resources import main_thread_demand
from bench.output.plots.figure import FIGURE_SIZE, RUN_COLOURS, Run, caption, legend_outside, mark_time, nan_for_none, save
from bench.results.metrics import RESOURCE_SERIES

_LINE_STYLES = ("-", "--", ":", "-.")


def plot_resources(runs: Sequence[Run], path: Path) -> Path | None:
    """Three panels sharing time: process CPU (% of one core), host CPU (% of all cores), RSS."""
    measured = [(label, result) for label, result in runs if result.get("resources")]
    if not measured:
        return None
    fig, (cpu_ax, host_ax, rss_ax) = plt.subplots(3, 1, figsize=(FIGURE_SIZE[0], 9), sharex=True)
    single = len(measured) == 1
    colour_index = 0
    for run_index, (label, result) in enumerate(measured):
        series = result.get("series") or {}
        seconds = list(series.get("t_s") or [])
        prefix = "" if single else f"{label} "
        style = _LINE_STYLES[run_index % len(_LINE_STYLES)]
        for name, cpu in (series.get("cpu_percent_by_process") or {}).items():
            colour = RUN_COLOURS[colour_index % len(RUN_COLOURS)]
            colour_index += 1
            cpu_ax.plot(seconds[:len(cpu)], nan_for_none(cpu), style, color=colour, linewidth=1.5, label=prefix + name)
            demand = main_thread_demand(series, name)
            if demand is not None:
                what = "main thread busy (on or waiting for a CPU)" if demand[1] else "main thread CPU"
                cpu_ax.plot(seconds[:len(demand[0])], nan_for_none(demand[0]), style, color=colour, linewidth=0.9,
                            alpha=0.6, label=f"{prefix}{name} {what}")
            rss = (series.get("rss_mb_by_process") or {}).get(name) or []
            rss_ax.plot(seconds[:len(rss)], nan_for_none(rss), style, color=colour, linewidth=1.5, label=prefix + name)
        host = series.get("host_cpu_percent") or []
        cores = result["resources"].get("cpu_count")
        host_ax.plot(seconds[:len(host)], nan_for_none(host), style, color=RUN_COLOURS[run_index % len(RUN_COLOURS)],
                     linewidth=1.5, label=f"{prefix}host ({cores} cores)")
        steal = series.get("host_steal_percent") or []
        if any(steal):  # on bare metal, or a quiet host, there is nothing to draw
            host_ax.plot(seconds[:len(steal)], nan_for_none(steal), style, color=RUN_COLOURS[run_index % len(RUN_COLOURS)],
                         linewidth=0.9, alpha=0.6, label=f"{prefix}{RESOURCE_SERIES['host_steal_percent'][0]}")
    for ax in (cpu_ax, host_ax):
        ax.axhline(SATURATED_PERCENT, color="#d62728", linestyle=":", linewidth=1)
    cpu_ax.set_ylabel(f"{RESOURCE_SERIES['cpu_percent_by_process'][0]}\n({RESOURCE_SERIES['cpu_percent_by_process'][1]})")
    host_ax.set_ylabel(f"{RESOURCE_SERIES['host_cpu_percent'][0]}\n({RESOURCE_SERIES['host_cpu_percent'][1]})")
    host_ax.set_ylim(0, 105)
    rss_ax.set_ylabel(f"{RESOURCE_SERIES['rss_mb_by_process'][0]} ({RESOURCE_SERIES['rss_mb_by_process'][1]})")
    rss_ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    rss_ax.set_xlabel("time since start (s)")
    for ax in (cpu_ax, host_ax, rss_ax):
        mark_time(ax, measured, show_labels=ax is cpu_ax)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.35)
        legend_outside(ax)
    fig.suptitle(f"Resources per second (dotted red: {SATURATED_PERCENT:g} %, where the verdicts call it saturated)",
                 fontsize=12)
    caption(fig, measured)
    return save(fig, path)
