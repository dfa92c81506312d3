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
    coincides,
    event_label,
    group_identical,
    has_latency,
    hdr_axis,
    legend_outside,
    mark_time,
    ms_axis,
    nan_for_none,
    percentile_curve,
    save,
    series_of,
    time_extent,
    to_ms,
)
from bench.results.metrics import SERIES, latency_series_key

# ---------------------------------------------------------------------------------------------
# One run


# The x axis of a percentile plot reaches at least this far (1 / (1 - 99.99 %)): the tails are
# the point of an HDR plot, and runs of different lengths share one axis.
HDR_X_MIN_EXTENT = 1e4
# Line styles and markers per latency kind: curves that coincide (response time = service time
# when the generator kept up) still show both.
KIND_STYLES = {"service_time": ("-", "o", 2.4), "response_time": ("--", "s", 1.8), "end_to_end": (":", "^", 1.8)}


def plot_latency_percentiles(runs: Sequence[Run], path: Path) -> Path | None:
    fig = percentile_figure(runs)
    return None if fig is None else save(fig, path)


def percentile_figure(runs: Sequence[Run]):
    """Percentile distribution on the HDR axis up to 99.99 %. One run: its latency kinds in one
    panel, each in its own style, a coinciding curve said so in the legend. Several runs: one
    panel per kind, stacked, one colour per run; legends right of the plots."""
    kinds = [k for k in LATENCY_KINDS if any(has_latency(r, k) for _, r in runs)]
    if not kinds:
        return None
    single = len(runs) == 1
    rows = 1 if single else len(kinds)
    fig, axes = plt.subplots(rows, 1, figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] if single else 1.2 + 2.9 * rows),
                             squeeze=False, sharex=True)
    x_max = HDR_X_MIN_EXTENT
    drawn_on: dict[int, list[tuple[str, list[float]]]] = {}  # per panel: the curves drawn so far
    for index, kind in enumerate(kinds):
        ax = axes[0 if single else index][0]
        drawn = drawn_on.setdefault(id(ax), [])
        for run_index, (label, result) in enumerate(runs):
            if not has_latency(result, kind):
                continue
            xs, ys = percentile_curve(result["latency_us"][kind]["histogram"])
            x_max = max(x_max, xs[-1])
            style, marker, width = KIND_STYLES[kind] if single else ("-", None, 1.8)
            name = LATENCY_KINDS[kind] if single else label
            same = [other for other, other_ys in drawn if coincides(ys, other_ys)]
            ax.plot(xs, ys, linestyle=style, marker=marker, markevery=(4 * len(drawn), 12), markersize=4, linewidth=width,
                    color=RUN_COLOURS[(index if single else run_index) % len(RUN_COLOURS)],
                    label=name + (f" (coincides with {same[0].split(' (')[0]})" if same else ""))
            drawn.append((name, ys))
        if not single:
            ax.set_title(LATENCY_KINDS[kind], fontsize=10, loc="left")
    for row in axes:
        ax = row[0]
        hdr_axis(ax, x_max)
        ms_axis(ax)
        legend_outside(ax)
        if ax is not axes[-1][0]:
            ax.set_xlabel("")
    fig.suptitle("Latency percentile distribution (warm-up excluded)", fontsize=12)
    caption(fig, runs)
    return fig


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
        mark_time(ax, runs, show_labels=row == 0)
        ms_axis(ax, "ms (log)")
        ax.set_title(LATENCY_KINDS[kind] + " per second", fontsize=10)
        legend_outside(ax)
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
    mark_time(ax, runs)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("messages per second")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.grid(True, alpha=0.35)
    legend_outside(ax)
    ax.set_title("Throughput per second (sent, acked and consumed coincide when the broker keeps up)", fontsize=11)
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
        mark_time(ax, runs, show_labels=ax is messages_ax)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.35)
    messages_ax.set_ylabel("messages behind\n(high watermark - position)")
    messages_ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    time_ax.set_ylabel("time lag (ms)\n(now - last consumed timestamp)")
    time_ax.set_xlabel("time since start (s)")
    legend_outside(messages_ax)
    fig.suptitle("Consumer lag", fontsize=12)
    caption(fig, runs)
    return save(fig, path)


def _shade_faults(ax, failover: Mapping[str, Any], show_labels: bool, extent_s: float) -> None:
    """Each fault's time shaded (start to end), and lighter until its node was back."""
    for index, fault in enumerate(failover.get("faults") or []):
        end_s = fault["end_s"] if fault["end_s"] is not None else fault["start_s"]
        ax.axvspan(fault["start_s"], end_s, color="#d62728", alpha=0.18)
        if fault.get("back_s") and fault["back_s"] > end_s:
            ax.axvspan(end_s, fault["back_s"], color="#d62728", alpha=0.07)
        if show_labels:  # inside the top of the plot; legends are outside it
            target = "the consumer" if fault["node_id"] is None else f"node {fault['node_id']} ({fault['role']})"
            event_label(ax, f"{fault['fault']}: {target}", fault["start_s"], index, extent_s)


def _partition_series(ax, seconds: Sequence[float], by_partition: Mapping[str, Sequence[Any]], label: str,
                      step: bool = False) -> None:
    """One line per partition; partitions whose lines are identical share one line and one
    legend entry ("partitions 0, 1, 2"), so lines on top of each other are never hidden."""
    ordered = sorted(by_partition.items(), key=lambda item: int(item[0]))
    for index, (partitions, values) in enumerate(group_identical(ordered)):
        name = f"{label} {partitions[0]}" if len(partitions) == 1 else f"{label}s {', '.join(partitions)} (same)"
        draw = ax.step if step else ax.plot
        options = {"where": "post"} if step else {}
        draw(seconds[:len(values)], nan_for_none(values), linewidth=1.3, label=name,
             linestyle=("-", "--", "-.", ":")[index % 4], **options)


def _failover_column(axes: Sequence[Any], label: str, result: Mapping[str, Any], first: bool) -> None:
    latency_ax, acks_ax, isr_ax = axes
    failover, seconds = result["failover"], list((result.get("series") or {}).get("t_s") or [])
    for key, style in (("service_time_p99_us", "-"), ("end_to_end_p99_us", "--")):
        values = (result.get("series") or {}).get(key)
        if values:
            latency_ax.plot(seconds, to_ms(values), style, linewidth=1.5, label=SERIES[key][0])
    latency_ax.set_title(label, fontsize=10, loc="left")
    series = failover.get("series") or {}
    by_partition = series.get("acked_by_partition") or series.get("consumed_by_partition") or {}
    what = "acked" if series.get("acked_by_partition") else "consumed"
    _partition_series(acks_ax, seconds, by_partition, "partition")
    _partition_series(isr_ax, seconds, series.get("isr_size") or {}, "ISR size, partition", step=True)
    urp = series.get("under_replicated")
    if urp:
        isr_ax.step(seconds[:len(urp)], nan_for_none(urp), where="post", color="black", linestyle="--", linewidth=1.5,
                    label="under-replicated partitions")
    replicas = [v for values in (series.get("isr_size") or {}).values() for v in values if v is not None]
    isr_ax.set_ylim(-0.1, max(replicas, default=1) + 0.6)
    isr_ax.yaxis.set_major_locator(FixedLocator(range(0, 10)))
    isr_ax.set_xlabel("time since start (s)")
    acks_ax.set_ylim(bottom=0)
    if first:
        ms_axis(latency_ax, "p99 per second (ms, log)")
        acks_ax.set_ylabel(f"{what} per second\nper partition")
        isr_ax.set_ylabel("replicas")
    else:
        ms_axis(latency_ax, "")
    for ax in axes:
        _shade_faults(ax, failover, show_labels=ax is latency_ax, extent_s=time_extent(result))
        ax.grid(True, alpha=0.35)


def plot_failover(runs: Sequence[Run], path: Path) -> Path | None:
    fig = failover_figure(runs)
    return None if fig is None else save(fig, path)


def failover_figure(runs: Sequence[Run]):
    """A fault run at a glance: latency p99, acks per partition, ISR sizes and under-replicated
    partitions per second, every fault shaded; one column per run with faults, rows sharing
    their y axis so runs compare at a glance. None when no run had faults."""
    faulted = [(label, result) for label, result in runs if result.get("failover")]
    if not faulted:
        return None
    columns = len(faulted)
    fig, axes = plt.subplots(3, columns, figsize=(FIGURE_SIZE[0] + 4 * (columns - 1), 9.5), sharex=True,
                             sharey="row", squeeze=False)
    for column, (label, result) in enumerate(faulted):
        _failover_column([axes[row][column] for row in range(3)], label if columns > 1 else "", result, column == 0)
    for row in range(3):
        legend_outside(axes[row][columns - 1])
    fig.suptitle("Faults and failover" + (" (one column per run)" if columns > 1 else ""), fontsize=12)
    caption(fig, faulted)
    return fig
