"""Every matplotlib figure of the project (Agg backend: no display needed).

Run plots (`write_run_plots`) come from a result dict alone, so `bench report` can redraw them
without a broker; `write_compare_plots` overlays several runs, one colour per run.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402
from PIL import Image  # noqa: E402  (Pillow comes with matplotlib)

from bench.results.formatting import describe_environment, describe_scenario, format_bytes  # noqa: E402
from bench.results.histograms import decode_histogram  # noqa: E402
from bench.results.metrics import METRICS, PLOTTED_LATENCIES, SERIES, latency_series_key, latency_title  # noqa: E402

LATENCY_KINDS = {kind: latency_title(kind) for kind in PLOTTED_LATENCIES}
# The HDR axis: x = 1 / (1 - p), so each "nine" gets the same width.
HDR_TICKS = {50.0: "50%", 90.0: "90%", 99.0: "99%", 99.9: "99.9%", 99.99: "99.99%", 99.999: "99.999%"}
FIGURE_SIZE = (10, 5.6)
DPI = 110
RUN_COLOURS = plt.get_cmap("tab10").colors


Run = tuple[str, Mapping[str, Any]]  # (label, result)


# ---------------------------------------------------------------------------------------------
# Shared pieces


def percentile_curve(encoded_histogram: str, points: int = 120) -> tuple[list[float], list[float]]:
    """(x = 1/(1-p), latency in ms) from p = 0 up to the last percentile the count resolves."""
    histogram = decode_histogram(encoded_histogram)
    count = histogram.get_total_count()
    if count == 0:
        return [], []
    # Beyond 1 - 1/count every percentile is the max: stop there (and at 99.999 %).
    x_max = min(float(count), 1e5)
    xs = [math.exp(math.log(x_max) * i / (points - 1)) for i in range(points)]
    percentiles = [100.0 * (1 - 1 / x) for x in xs]
    values = histogram.get_percentile_to_value_dict(percentiles)
    return xs, [values[p] / 1000 for p in percentiles]


def _hdr_axis(ax, x_max: float) -> None:
    ax.set_xscale("log")
    ticks = [1 / (1 - p / 100) for p in HDR_TICKS if 1 / (1 - p / 100) <= x_max * 1.01]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: HDR_TICKS.get(round(100 * (1 - 1 / x), 3), "")))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, max(x_max, 2))
    ax.set_xlabel("percentile")


def _minor_label(value: float, _position: Any) -> str:
    """Label 2x and 5x between decades so a narrow log range still reads in plain numbers."""
    leading = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
    return f"{value:g}" if leading in (2, 5) else ""


def _ms_axis(ax, label: str = "latency (ms, log scale)") -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_ylabel(label)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _caption(fig, runs: Sequence[Run]) -> None:
    lines = []
    for label, result in runs:
        prefix = f"{label}: " if len(runs) > 1 else "scenario: "
        lines.extend(textwrap.wrap(prefix + describe_scenario(result), 150))
        if len(runs) == 1:
            lines.extend(textwrap.wrap("environment: " + describe_environment(result), 150))
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7.5, color="#444", va="bottom", ha="left")
    caption_inches = 0.12 + 0.13 * len(lines)
    fig.tight_layout(rect=(0, caption_inches / fig.get_figheight(), 1, 1))


def _save(fig, path: Path) -> Path:
    # A 256-colour palette is indistinguishable for line plots and a third of the RGBA size:
    # it keeps a long run's folder (and report.html, which embeds every plot) small.
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=DPI)
    plt.close(fig)
    rendered.seek(0)
    with Image.open(rendered) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def _series(result: Mapping[str, Any], key: str) -> tuple[list[float], list[float | None]]:
    series = result.get("series") or {}
    return list(series.get("t_s") or []), list(series.get(key) or [])


def _ms(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v / 1000 for v in values]


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _mark_time(ax, result: Mapping[str, Any], show_labels: bool = True) -> None:
    """Shade the warm-up and draw a labelled vertical line for each event (faults, phases)."""
    warmup_s = result.get("warmup_s") or 0
    if warmup_s:
        ax.axvspan(0, warmup_s, color="#999", alpha=0.15, label="warm-up (excluded)" if show_labels else None)
    for index, event in enumerate(result.get("events") or []):
        ax.axvline(event["t_s"], color="#d62728", linestyle="--", linewidth=1)
        if show_labels:  # staggered so that events close in time do not print over each other
            ax.annotate(event["kind"], xy=(event["t_s"], 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -12 - 11 * (index % 3)), textcoords="offset points", color="#d62728", fontsize=8,
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def _has_latency(result: Mapping[str, Any], kind: str) -> bool:
    return bool(((result.get("latency_us") or {}).get(kind) or {}).get("count"))


# ---------------------------------------------------------------------------------------------
# One run


def plot_latency_percentiles(runs: Sequence[Run], path: Path) -> Path | None:
    """Percentile distribution on the HDR axis: one panel per latency kind, one colour per run."""
    kinds = [k for k in LATENCY_KINDS if any(_has_latency(r, k) for _, r in runs)]
    if not kinds:
        return None
    single = len(runs) == 1
    fig, axes = plt.subplots(1, 1 if single else len(kinds), figsize=FIGURE_SIZE, squeeze=False, sharey=True)
    x_max = 2.0
    for index, kind in enumerate(kinds):
        ax = axes[0][0 if single else index]
        for run_index, (label, result) in enumerate(runs):
            if not _has_latency(result, kind):
                continue
            xs, ys = percentile_curve(result["latency_us"][kind]["histogram"])
            x_max = max(x_max, xs[-1])
            colour = RUN_COLOURS[(index if single else run_index) % len(RUN_COLOURS)]
            ax.plot(xs, ys, color=colour, linewidth=1.8, label=LATENCY_KINDS[kind] if single else label)
        if not single:
            ax.set_title(LATENCY_KINDS[kind], fontsize=10)
    for ax in axes[0]:
        _hdr_axis(ax, x_max)
        _ms_axis(ax)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Latency percentile distribution (warm-up excluded)", fontsize=12)
    _caption(fig, runs)
    return _save(fig, path)


def plot_latency_over_time(runs: Sequence[Run], path: Path) -> Path | None:
    """p50 / p99 / max per second for each latency kind that has a series."""
    # A flat-out run has a response-time series of nulls only (nothing was scheduled).
    kinds = [k for k in LATENCY_KINDS if any(v is not None for _, r in runs for v in _series(r, latency_series_key(k, "p99"))[1])]
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
                seconds, values = _series(result, latency_series_key(kind, statistic))
                if not values:
                    continue
                colour = RUN_COLOURS[(statistic_index if single else run_index) % len(RUN_COLOURS)]
                ax.plot(seconds, _ms(values), style, color=colour, linewidth=width,
                        label=statistic if single else f"{label} {statistic}")
        _mark_time(ax, runs[0][1], show_labels=row == 0)
        _ms_axis(ax, "ms (log)")
        ax.set_title(LATENCY_KINDS[kind] + " per second", fontsize=10)
        if single:
            ax.legend(fontsize=7.5, loc="upper right", ncol=3)
        else:
            ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1][0].set_xlabel("time since start (s)")
    fig.suptitle("Latency over time", fontsize=12)
    _caption(fig, runs)
    return _save(fig, path)


def plot_throughput(runs: Sequence[Run], path: Path) -> Path | None:
    keys = {"sent": "sent", "acked": "acked by broker", "consumed": "consumed"}
    if not any(_series(r, k)[1] for _, r in runs for k in keys):
        return None
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    single = len(runs) == 1
    styles = {"sent": ":", "acked": "-", "consumed": "--"}
    for run_index, (label, result) in enumerate(runs):
        for key_index, (key, key_label) in enumerate(keys.items()):
            seconds, values = _series(result, key)
            if not values:
                continue
            colour = RUN_COLOURS[(key_index if single else run_index) % len(RUN_COLOURS)]
            ax.plot(seconds, _nan(values), styles[key], color=colour, linewidth=1.5,
                    label=key_label if single else f"{label} {key}")
    _mark_time(ax, runs[0][1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("messages per second")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=8, loc="lower center", ncol=3)
    ax.set_title("Throughput per second", fontsize=12)
    _caption(fig, runs)
    return _save(fig, path)


def plot_consumer_lag(runs: Sequence[Run], path: Path) -> Path | None:
    if not any(_series(r, k)[1] for _, r in runs for k in ("lag_messages", "lag_time_ms")):
        return None
    fig, (messages_ax, time_ax) = plt.subplots(2, 1, figsize=(FIGURE_SIZE[0], 7), sharex=True)
    for run_index, (label, result) in enumerate(runs):
        colour = RUN_COLOURS[run_index % len(RUN_COLOURS)]
        seconds, lag = _series(result, "lag_messages")
        if lag:
            messages_ax.plot(seconds, _nan(lag), color=colour, linewidth=1.5, label=label)
        seconds, lag_ms = _series(result, "lag_time_ms")
        if lag_ms:
            time_ax.plot(seconds, _nan(lag_ms), color=colour, linewidth=1.5, label=label)
    for ax in (messages_ax, time_ax):
        _mark_time(ax, runs[0][1], show_labels=ax is messages_ax)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.35)
    messages_ax.set_ylabel("messages behind\n(high watermark - position)")
    messages_ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    time_ax.set_ylabel("time lag (ms)\n(now - last consumed timestamp)")
    time_ax.set_xlabel("time since start (s)")
    messages_ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("Consumer lag", fontsize=12)
    _caption(fig, runs)
    return _save(fig, path)


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
            latency_ax.plot(seconds, _ms(values), linewidth=1.5, label=label)
    _ms_axis(latency_ax, "p99 per second (ms, log)")
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
        isr_ax.step(seconds[:len(values)], _nan(values), where="post", linewidth=1.2, label=f"ISR size p{partition}")
    urp = series.get("under_replicated")
    if urp:
        isr_ax.step(seconds[:len(urp)], _nan(urp), where="post", color="black", linestyle="--", linewidth=1.5,
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
    _caption(fig, runs[:1])
    return _save(fig, path)


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


def _java_by_compression(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float, float | None]]]:
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
    java_groups = _java_by_compression(rows)
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
            ax.plot(sizes, _nan(end_to_end), "s--", color=colour, label=f"{compression}: end-to-end")
    for compression, points in java_groups.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], "^:", color=colours[compression],
                label=f"{compression}: Java EndToEndLatency end-to-end (mean)")
    _size_axis(ax)
    _ms_axis(ax)
    ax.legend(fontsize=8)
    ax.set_title("Large messages: latency by size and compression", fontsize=12)
    _caption(fig, runs)
    written.append(_save(fig, folder / "large_message_latency.png"))

    fig, (throughput_ax, memory_ax) = plt.subplots(1, 2, figsize=(FIGURE_SIZE[0] + 2, FIGURE_SIZE[1]))
    for compression, points in java_groups.items():
        throughput_ax.plot([p[0] for p in points], _nan([p[2] for p in points]), "^:", color=colours[compression],
                           label=f"{compression}: Java")
    for compression, group in groups.items():
        colour = colours[compression]
        sizes = [r["size_bytes"] for r in group]
        throughput_ax.plot(sizes, _nan([r.get("transfer_rate_mb_s") for r in group]), "o-", color=colour, label=compression)
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
    _ms_axis(memory_ax, "peak RSS (MB, log scale)")
    memory_ax.set_title("client memory", fontsize=10)
    fig.suptitle("Large messages: transfer rate and client memory", fontsize=12)
    _caption(fig, runs)
    written.append(_save(fig, folder / "large_message_throughput_memory.png"))
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
        ax.plot(sizes, _nan([r.get("compression_ratio") for r in group]), "o-", color=colour, label=compression)
        skipped = [r for r in group if r.get("compression_skipped")]
        if skipped:
            ax.plot([r["size_bytes"] for r in skipped], [r["compression_ratio"] for r in skipped], "o", color="white",
                    markeredgecolor=colour, label=f"{compression}: skipped (sent uncompressed)")
    ax.axhline(1, color="black", linestyle=":", linewidth=1, label="no compression")
    _size_axis(ax)
    _ms_axis(ax, "compression ratio (payload / wire bytes, log scale)")
    ax.legend(fontsize=8)
    ax.set_title("Large messages: compression ratio", fontsize=12)
    _caption(fig, [("sweep", result)])
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Entry points


RUN_PLOTS = (
    ("latency_percentiles.png", plot_latency_percentiles),
    ("latency_over_time.png", plot_latency_over_time),
    ("throughput.png", plot_throughput),
    ("consumer_lag.png", plot_consumer_lag),
    ("failover.png", plot_failover),
)


def write_run_plots(result: Mapping[str, Any], folder: Path) -> list[Path]:
    """Every plot a result supports, written into `folder`; returns the files written."""
    folder = Path(folder)
    if result.get("kind") == "large-message":
        return plot_large_message(result, folder)
    runs = [(str((result.get("scenario") or {}).get("name") or "run"), result)]
    return [p for name, plot in RUN_PLOTS if (p := plot(runs, folder / name)) is not None]


def write_compare_plots(runs: Sequence[Run], folder: Path) -> list[Path]:
    """The run plots with every run overlaid, one colour per run."""
    folder = Path(folder)
    return [p for name, plot in RUN_PLOTS if (p := plot(runs, folder / f"compare_{name}")) is not None]
