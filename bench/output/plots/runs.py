"""Figures of one or several runs: latency percentiles, latency, throughput and lag over time,
failover."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter

from bench.output.plots.figure import (
    FIGURE_SIZE,
    LATENCY_KINDS,
    RUN_COLOURS,
    Run,
    caption,
    has_latency,
    hdr_axis,
    mark_time,
    ms_axis,
    nan_for_none,
    percentile_curve,
    save,
    series_of,
    to_ms,
)
from bench.results.metrics import SERIES, latency_series_key

# ---------------------------------------------------------------------------------------------
# One run


def plot_latency_percentiles(runs: Sequence[Run], path: Path) -> Path | None:
    """Percentile distribution on the HDR axis: one panel per latency kind, one colour per run."""
    kinds = [k for k in LATENCY_KINDS if any(has_latency(r, k) for _, r in runs)]
    if not kinds:
        return None
    single = len(runs) == 1
    fig, axes = plt.subplots(1, 1 if single else len(kinds), figsize=FIGURE_SIZE, squeeze=False, sharey=True)
    x_max = 2.0
    for index, kind in enumerate(kinds):
        ax = axes[0][0 if single else index]
        for run_index, (label, result) in enumerate(runs):
            if not has_latency(result, kind):
                continue
            xs, ys = percentile_curve(result["latency_us"][kind]["histogram"])
            x_max = max(x_max, xs[-1])
            colour = RUN_COLOURS[(index if single else run_index) % len(RUN_COLOURS)]
            ax.plot(xs, ys, color=colour, linewidth=1.8, label=LATENCY_KINDS[kind] if single else label)
        if not single:
            ax.set_title(LATENCY_KINDS[kind], fontsize=10)
    for ax in axes[0]:
        hdr_axis(ax, x_max)
        ms_axis(ax)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Latency percentile distribution (warm-up excluded)", fontsize=12)
    caption(fig, runs)
    return save(fig, path)


def plot_latency_over_time(runs: Sequence[Run], path: Path) -> Path | None:
    """p50 / p99 / max per second for each latency kind that has a series."""
    # A flat-out run has a response-time series of nulls only (nothing was scheduled).
    kinds = [k for k in LATENCY_KINDS if any(v is not None for _, r in runs for v in series_of(r, latency_series_key(k, "p99"))[1])]
    if not kinds:
        return None
    fig, axes = plt.subplots(len(kinds), 1, figsize=(FIGURE_SIZE[0], 2.6 + 2.4 * len(kinds)), sharex=True, squeeze=False)
    single = len(runs) == 1
    # With several runs, max lines would hide the p50/p99 comparison under clutter.
    styles = {"p50": ("-", 1.2), "p99": ("-", 1.8), "max": (":", 1.2)} if single else {"p50": (":", 1.4), "p99": ("-", 1.8)}
    for row, kind in enumerate(kinds):
        ax = axes[row][0]
        for run_index, (label, result) in enumerate(runs):
            for statistic_index, (statistic, (style, width)) in enumerate(styles.items()):
                seconds, values = series_of(result, latency_series_key(kind, statistic))
                if not values:
                    continue
                colour = RUN_COLOURS[(statistic_index if single else run_index) % len(RUN_COLOURS)]
                ax.plot(seconds, to_ms(values), style, color=colour, linewidth=width,
                        label=statistic if single else f"{label} {statistic}")
        mark_time(ax, runs[0][1], show_labels=row == 0)
        ms_axis(ax, "ms (log)")
        ax.set_title(LATENCY_KINDS[kind] + " per second", fontsize=10)
        if single:
            ax.legend(fontsize=7.5, loc="upper right", ncol=3)
        else:
            ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1][0].set_xlabel("time since start (s)")
    fig.suptitle("Latency over time", fontsize=12)
    caption(fig, runs)
    return save(fig, path)


def plot_throughput(runs: Sequence[Run], path: Path) -> Path | None:
    keys = {"sent": "sent", "acked": "acked by broker", "consumed": "consumed"}
    if not any(series_of(r, k)[1] for _, r in runs for k in keys):
        return None
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    single = len(runs) == 1
    styles = {"sent": ":", "acked": "-", "consumed": "--"}
    for run_index, (label, result) in enumerate(runs):
        for key_index, (key, key_label) in enumerate(keys.items()):
            seconds, values = series_of(result, key)
            if not values:
                continue
            colour = RUN_COLOURS[(key_index if single else run_index) % len(RUN_COLOURS)]
            ax.plot(seconds, nan_for_none(values), styles[key], color=colour, linewidth=1.5,
                    label=key_label if single else f"{label} {key}")
    mark_time(ax, runs[0][1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("messages per second")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=8, loc="lower center", ncol=3)
    ax.set_title("Throughput per second", fontsize=12)
    caption(fig, runs)
    return save(fig, path)


def plot_consumer_lag(runs: Sequence[Run], path: Path) -> Path | None:
    if not any(series_of(r, k)[1] for _, r in runs for k in ("lag_messages", "lag_time_ms")):
        return None
    fig, (messages_ax, time_ax) = plt.subplots(2, 1, figsize=(FIGURE_SIZE[0], 7), sharex=True)
    for run_index, (label, result) in enumerate(runs):
        colour = RUN_COLOURS[run_index % len(RUN_COLOURS)]
        seconds, lag = series_of(result, "lag_messages")
        if lag:
            messages_ax.plot(seconds, nan_for_none(lag), color=colour, linewidth=1.5, label=label)
        seconds, lag_ms = series_of(result, "lag_time_ms")
        if lag_ms:
            time_ax.plot(seconds, nan_for_none(lag_ms), color=colour, linewidth=1.5, label=label)
    for ax in (messages_ax, time_ax):
        mark_time(ax, runs[0][1], show_labels=ax is messages_ax)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.35)
    messages_ax.set_ylabel("messages behind\n(high watermark - position)")
    messages_ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    time_ax.set_ylabel("time lag (ms)\n(now - last consumed timestamp)")
    time_ax.set_xlabel("time since start (s)")
    messages_ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Consumer lag", fontsize=12)
    caption(fig, runs)
    return save(fig, path)


def _shade_faults(ax, failover: Mapping[str, Any], show_labels: bool) -> None:
    """Each fault's time shaded (start to end), and lighter until its node was back."""
    for index, fault in enumerate(failover.get("faults") or []):
        end_s = fault["end_s"] if fault["end_s"] is not None else fault["start_s"]
        ax.axvspan(fault["start_s"], end_s, color="#d62728", alpha=0.18)
        if fault.get("back_s") and fault["back_s"] > end_s:
            ax.axvspan(end_s, fault["back_s"], color="#d62728", alpha=0.07)
        if show_labels:
            target = "the consumer" if fault["node_id"] is None else f"node {fault['node_id']} ({fault['role']})"
            ax.annotate(f"{fault['fault']}: {target}", xy=(fault["start_s"], 1),
                        xycoords=("data", "axes fraction"), xytext=(3, -12 - 11 * (index % 3)),
                        textcoords="offset points", color="#d62728", fontsize=8,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def plot_failover(runs: Sequence[Run], path: Path) -> Path | None:
    """A fault run at a glance: latency p99, acks per partition, ISR sizes and under-replicated
    partitions per second, every fault shaded (the first run with faults only)."""
    result = next((r for _, r in runs if r.get("failover")), None)
    if result is None:
        return None
    failover, seconds = result["failover"], list((result.get("series") or {}).get("t_s") or [])
    fig, (latency_ax, acks_ax, isr_ax) = plt.subplots(3, 1, figsize=(FIGURE_SIZE[0], 9), sharex=True)
    for key, label in ((key, SERIES[key][0]) for key in ("service_time_p99_us", "end_to_end_p99_us")):
        values = (result.get("series") or {}).get(key)
        if values:
            latency_ax.plot(seconds, to_ms(values), linewidth=1.5, label=label)
    ms_axis(latency_ax, "p99 per second (ms, log)")
    latency_ax.legend(fontsize=8, loc="upper right")
    series = failover.get("series") or {}
    by_partition = series.get("acked_by_partition") or series.get("consumed_by_partition") or {}
    what = "acked" if series.get("acked_by_partition") else "consumed"
    for partition, values in sorted(by_partition.items(), key=lambda item: int(item[0])):
        acks_ax.plot(seconds[:len(values)], values, linewidth=1.2, label=f"partition {partition}")
    acks_ax.set_ylabel(f"{what} per second\nper partition")
    acks_ax.set_ylim(bottom=0)
    acks_ax.legend(fontsize=8, loc="upper right", ncol=4)
    for partition, values in sorted((series.get("isr_size") or {}).items(), key=lambda item: int(item[0])):
        isr_ax.step(seconds[:len(values)], nan_for_none(values), where="post", linewidth=1.2, label=f"ISR size p{partition}")
    urp = series.get("under_replicated")
    if urp:
        isr_ax.step(seconds[:len(urp)], nan_for_none(urp), where="post", color="black", linestyle="--", linewidth=1.5,
                    label="under-replicated partitions")
    isr_ax.set_ylabel("replicas")
    replicas = [v for values in (series.get("isr_size") or {}).values() for v in values if v is not None]
    isr_ax.set_ylim(-0.1, max(replicas, default=1) + 0.6)
    isr_ax.yaxis.set_major_locator(FixedLocator(range(0, 10)))
    isr_ax.legend(fontsize=8, loc="lower right", ncol=4)
    isr_ax.set_xlabel("time since start (s)")
    for ax in (latency_ax, acks_ax, isr_ax):
        _shade_faults(ax, failover, show_labels=ax is latency_ax)
        ax.grid(True, alpha=0.35)
    fig.suptitle("Faults and failover", fontsize=12)
    caption(fig, runs[:1])
    return save(fig, path)


