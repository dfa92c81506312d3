"""The capacity search's figure: latency percentiles (p50, p99, p99.9 of the SLO's latency)
against the achieved rate of every judged step, log latency axis, the SLO's latency limits as
horizontal lines, the knee (the maximum sustainable rate) marked. Several searches overlay, one
colour each."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from bench.output.plots.figure import FIGURE_SIZE, RUN_COLOURS, ms_axis, save
from bench.results.formatting import describe_environment, describe_scenario
from bench.results.metrics import METRICS, latency_title

# Line style per percentile: the p99 that SLOs usually name stands out.
PERCENTILE_STYLES = {"p50": ("p50", ":", 1.3), "p99": ("p99", "-", 2.0), "p99_9": ("p99.9", "--", 1.3)}


def _points(document: Mapping[str, Any], kind: str, key: str) -> list[tuple[float, float, bool]]:
    """(achieved msg/s, latency ms, passed) per asked rate, from its last judged step (a
    confirmation, or the retry with more producers, stands for the rate), sorted by rate."""
    last: dict[float, Mapping[str, Any]] = {}
    for row in document.get("steps") or []:
        if row.get("verdict") in ("pass", "fail"):
            last[row["rate"]] = row
    points = []
    for rate in sorted(last):
        row = last[rate]
        value = ((row.get("latency_us") or {}).get(kind) or {}).get(key)
        if row.get("achieved_per_s") and value:
            points.append((row["achieved_per_s"], value / 1000, row["verdict"] == "pass"))
    return points


def _slo_lines(ax, documents: Sequence[Mapping[str, Any]], kind: str) -> None:
    """A horizontal line per latency SLO on the plotted latency (each text once)."""
    texts = dict.fromkeys(text for document in documents for text in document.get("slo") or [])
    for index, text in enumerate(texts):
        name = text.split("<")[0].split(">")[0].strip()
        metric = METRICS.get(name)
        if metric is None or metric.path[:2] != ("latency_us", kind):
            continue
        limit_ms = _limit_ms(text)
        if limit_ms is not None:
            ax.axhline(limit_ms, color="#d62728", linewidth=1.2, linestyle=("-.", ":", "--")[index % 3], label=f"SLO {text}")


def _limit_ms(text: str) -> float | None:
    from bench.analysis.thresholds import parse_check  # the one parser of the syntax

    limit = parse_check(text)
    return getattr(limit, "limit", None) / 1000 if getattr(limit, "limit", None) is not None else None


def plot_capacity(searches: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> Path | None:
    """The throughput-vs-latency figure of one search or several overlaid; None when no step
    measured the latency."""
    kind = searches[0][1].get("latency_kind") or "end_to_end"
    if not any(_points(document, kind, "p99") for _, document in searches):
        return None
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    single = len(searches) == 1
    for index, (label, document) in enumerate(searches):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        for key, (name, style, width) in PERCENTILE_STYLES.items():
            points = _points(document, kind, key)
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            line_colour = RUN_COLOURS[list(PERCENTILE_STYLES).index(key)] if single else colour
            ax.plot(xs, ys, linestyle=style, linewidth=width, color=line_colour,
                    label=name if single else f"{label} {name}")
            ax.scatter([x for x, _, ok in points if not ok], [y for _, y, ok in points if not ok], marker="x",
                       color=line_colour, s=36, zorder=3)
            ax.scatter([x for x, _, ok in points if ok], [y for _, y, ok in points if ok], marker="o",
                       color=line_colour, s=16, zorder=3)
        answer = document.get("answer") or {}
        if answer.get("achieved_per_s"):
            ax.axvline(answer["achieved_per_s"], color=colour if not single else "#333333", linestyle="--", linewidth=1.2)
            ax.annotate(f"knee: {answer['rate']:,.0f} msg/s" + ("" if answer.get("confirmed") else " (unconfirmed)"),
                        xy=(answer["achieved_per_s"], 1), xycoords=("data", "axes fraction"),
                        xytext=(4, -14 - 12 * index), textcoords="offset points", fontsize=8,
                        color=colour if not single else "#333333")
    _slo_lines(ax, [document for _, document in searches], kind)
    ms_axis(ax)
    ax.set_xlabel("achieved rate (acked msg/s over each step's measured window; o passed, x failed)")
    ax.set_xlim(left=0)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Capacity: {latency_title(kind)} against throughput", fontsize=12)
    lines = []
    for label, document in searches:
        prefix = f"{label}: " if not single else "scenario: "
        lines += textwrap.wrap(prefix + describe_scenario(document), 150)
    if single:
        lines += textwrap.wrap("environment: " + describe_environment(searches[0][1]), 150)
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7.5, color="#444", va="bottom", ha="left")
    fig.tight_layout(rect=(0, (0.12 + 0.13 * len(lines)) / fig.get_figheight(), 1, 1))
    return save(fig, path)
