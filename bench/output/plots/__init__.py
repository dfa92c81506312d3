"""Every matplotlib figure of the project (Agg backend: no display needed).

Run plots (`write_run_plots`) come from a result dict alone, so `bench report` can redraw them
without a broker; `write_compare_plots` overlays several runs, one colour per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.output.plots.figure import Run, percentile_curve
from bench.output.plots.large_message import java_by_compression, plot_large_message
from bench.output.plots.resources import plot_resources
from bench.output.plots.runs import (
    plot_consumer_lag,
    plot_failover,
    plot_latency_over_time,
    plot_latency_percentiles,
    plot_throughput,
)

__all__ = ["Run", "java_by_compression", "percentile_curve", "write_compare_plots", "write_run_plots"]


# ---------------------------------------------------------------------------------------------
# Entry points


RUN_PLOTS = (
    ("latency_percentiles.png", plot_latency_percentiles),
    ("latency_over_time.png", plot_latency_over_time),
    ("throughput.png", plot_throughput),
    ("consumer_lag.png", plot_consumer_lag),
    ("failover.png", plot_failover),
    ("resources.png", plot_resources),
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

