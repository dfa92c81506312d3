"""The figure of `bench ab`: every round's latency percentiles overlaid, one colour per side, so
the spread of the rounds shows next to the difference between the sides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from bench.output.plots.figure import LATENCY_KINDS, RUN_COLOURS, has_latency, hdr_axis, ms_axis, percentile_curve, save

# The line style of round i (the colour says the side).
_ROUND_STYLES = ("-", "--", ":", "-.")


def plot_ab_rounds(labels: tuple[str, str], rounds: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
                   path: Path) -> Path | None:
    """One panel per latency kind both sides measured; in each, the percentile curve of every
    round of A and of B (measured window), the legend under the panels, outside the data."""
    kinds = [kind for kind in LATENCY_KINDS
             if rounds and all(has_latency(a, kind) and has_latency(b, kind) for a, b in rounds)]
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 5.2), squeeze=False, sharey=True)
    x_max = 2.0
    for ax, kind in zip(axes[0], kinds):
        for number, pair in enumerate(rounds, start=1):
            for side, (result, label) in enumerate(zip(pair, labels)):
                xs, ys = percentile_curve(result["latency_us"][kind]["histogram"])
                x_max = max(x_max, xs[-1])
                ax.plot(xs, ys, color=RUN_COLOURS[side], linewidth=1.4, alpha=0.85,
                        linestyle=_ROUND_STYLES[(number - 1) % len(_ROUND_STYLES)],
                        label=f"{'AB'[side]} ({label}), round {number}")
        ax.set_title(LATENCY_KINDS[kind], fontsize=10)
    for ax in axes[0]:
        hdr_axis(ax, x_max)
        ms_axis(ax)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"A/B rounds: {labels[0]} (A) vs {labels[1]} (B), every round (warm-up excluded)", fontsize=11)
    fig.subplots_adjust(bottom=0.16 + 0.035 * len(rounds), top=0.88, wspace=0.08)
    return save(fig, path)
