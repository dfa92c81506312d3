"""What every figure shares: the Agg backend (chosen before pyplot is imported), sizes and
colours, the HDR percentile axis, millisecond axes, captions naming the runs, and saving.

The plots package is the only code that imports matplotlib (an import-linter contract)."""

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

from bench.results.formatting import describe_environment, describe_scenario  # noqa: E402
from bench.results.histograms import decode_histogram  # noqa: E402
from bench.results.metrics import PLOTTED_LATENCIES, latency_title  # noqa: E402

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


def hdr_axis(ax, x_max: float) -> None:
    ax.set_xscale("log")
    ticks = [1 / (1 - p / 100) for p in HDR_TICKS if 1 / (1 - p / 100) <= x_max * 1.01]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: HDR_TICKS.get(round(100 * (1 - 1 / x), 3), "")))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1, max(x_max, 2))
    ax.set_xlabel("percentile (log scale of 1 / (1 - p): each nine gets the same width)")


def _minor_label(value: float, _position: Any) -> str:
    """Label 2x and 5x between decades so a narrow log range still reads in plain numbers."""
    leading = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
    return f"{value:g}" if leading in (2, 5) else ""


def ms_axis(ax, label: str = "latency (ms, log scale)") -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_ylabel(label)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def caption(fig, runs: Sequence[Run]) -> None:
    """The footer: the scenario and environment of one run; for several, each run's name, start
    time and scenario (the legends name runs by what differs, the footer says when they ran)."""
    lines = []
    for label, result in runs:
        if len(runs) > 1:
            lines.extend(textwrap.wrap(f"{label}: started {result.get('started_at') or 'time not recorded'}; "
                                       + describe_scenario(result), 160))
        else:
            lines.extend(textwrap.wrap("scenario: " + describe_scenario(result), 160))
            lines.extend(textwrap.wrap(f"environment: {describe_environment(result)}; started {result.get('started_at')}",
                                       160))
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7.5, color="#444", va="bottom", ha="left")
    caption_inches = 0.12 + 0.13 * len(lines)
    fig.tight_layout(rect=(0, caption_inches / fig.get_figheight(), 1, 1))


def legend_outside(ax, **options: Any) -> None:
    """The legend right of the plot, never over data or over the event labels at the top."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **options)


# Two curves within this relative distance at this share of their points draw as one line
# (their minimum and first points may differ by a few hundred µs and still coincide to the eye).
COINCIDE_TOLERANCE = 0.05
COINCIDE_SHARE = 0.9


def coincides(ys: Sequence[float], other: Sequence[float]) -> bool:
    """Whether two curves sampled at the same points lie on top of each other."""
    pairs = [(a, b) for a, b in zip(ys, other) if not (math.isnan(a) or math.isnan(b))]
    close = sum(abs(a - b) <= COINCIDE_TOLERANCE * max(abs(a), abs(b), 1e-9) for a, b in pairs)
    return len(ys) == len(other) and bool(pairs) and close >= COINCIDE_SHARE * len(pairs)


def group_identical(series: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[list[str], Sequence[Any]]]:
    """Series with equal values grouped, in first-seen order: (their labels, the values)."""
    groups: list[tuple[list[str], Sequence[Any]]] = []
    for label, values in series:
        for labels, seen in groups:
            if list(seen) == list(values):
                labels.append(label)
                break
        else:
            groups.append(([label], values))
    return groups


def save(fig, path: Path) -> Path:
    # A 256-colour palette is indistinguishable for line plots and a third of the RGBA size:
    # it keeps a long run's folder (and report.html, which embeds every plot) small.
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=DPI)
    plt.close(fig)
    rendered.seek(0)
    with Image.open(rendered) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def series_of(result: Mapping[str, Any], key: str) -> tuple[list[float], list[float | None]]:
    series = result.get("series") or {}
    return list(series.get("t_s") or []), list(series.get(key) or [])


def to_ms(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v / 1000 for v in values]


def nan_for_none(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def mark_time(ax, runs: Sequence[Run], show_labels: bool = True) -> None:
    """Shade the first run's warm-up and draw a labelled vertical line for each event (faults,
    phases) of every run: red for one run, each run's colour when several are overlaid."""
    warmup_s = runs[0][1].get("warmup_s") or 0
    if warmup_s:
        ax.axvspan(0, warmup_s, color="#999", alpha=0.15, label="warm-up (excluded)" if show_labels else None)
    extent_s = max(time_extent(result) for _, result in runs)
    index = 0
    for run_index, (_, result) in enumerate(runs):
        colour = "#d62728" if len(runs) == 1 else RUN_COLOURS[run_index % len(RUN_COLOURS)]
        for event in result.get("events") or []:
            ax.axvline(event["t_s"], color=colour, linestyle="--", linewidth=1)
            # Staggered so that events close in time do not print over each other; legends sit
            # outside the plot (legend_outside), so a label never lands on one.
            if show_labels:
                event_label(ax, event["kind"], event["t_s"], index, extent_s, colour)
            index += 1


def time_extent(result: Mapping[str, Any]) -> float:
    """The last second a time plot of the result shows (its series or its last event)."""
    seconds = (result.get("series") or {}).get("t_s") or [0]
    return max([seconds[-1], *(event["t_s"] for event in result.get("events") or [])])


def event_label(ax, text: str, t_s: float, index: int, extent_s: float, colour: str = "#d62728") -> None:
    """A label at the top of an event's line, right of it; left of it near the right edge, where
    it would run out of the plot into the legend."""
    left = extent_s > 0 and t_s > 0.8 * extent_s
    ax.annotate(text, xy=(t_s, 1), xycoords=("data", "axes fraction"), xytext=(-3 if left else 3, -12 - 11 * (index % 3)),
                textcoords="offset points", color=colour, fontsize=8, ha="right" if left else "left",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def has_latency(result: Mapping[str, Any], kind: str) -> bool:
    return bool(((result.get("latency_us") or {}).get(kind) or {}).get("count"))


