"""Every matplotlib figure of the project (Agg backend: no display needed).

Run plots (`write_run_plots`) come from a result dict alone, so `bench report` can redraw them
without a broker; `write_compare_plots` overlays several runs, one colour per run.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Run", "java_by_compression", "percentile_curve", "write_compare_plots", "write_run_plots"]

# matplotlib is imported when a figure is drawn, not when a command that draws none starts: its
# import costs about a second, and on a fresh home it first prints a font-cache notice.
_LAZY = {"Run": "figure", "percentile_curve": "figure", "java_by_compression": "large_message"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"bench.output.plots.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Entry points


def _run_plots() -> tuple:
    from bench.output.plots import resources, runs
    from bench.output.plots.broker_metrics import plot_broker_metrics
    from bench.output.plots.groups import plot_groups
    from bench.output.plots.partitions import plot_partitions

    return (
        ("latency_percentiles.png", runs.plot_latency_percentiles),
        ("latency_over_time.png", runs.plot_latency_over_time),
        ("throughput.png", runs.plot_throughput),
        ("consumer_lag.png", runs.plot_consumer_lag),
        ("failover.png", runs.plot_failover),
        ("partitions.png", plot_partitions),
        ("consumer_groups.png", plot_groups),
        ("resources.png", resources.plot_resources),
        ("broker_metrics.png", plot_broker_metrics),
    )


def write_run_plots(result: Mapping[str, Any], folder: Path) -> list[Path]:
    """Every plot a result supports, written into `folder`; returns the files written."""
    folder = Path(folder)
    if result.get("kind") == "large-message":
        from bench.output.plots.large_message import plot_large_message
        from bench.output.plots.resources import plot_resources

        resources = plot_resources([("sweep", result)], folder / "resources.png")
        return plot_large_message(result, folder) + ([resources] if resources is not None else [])
    runs = [(str((result.get("scenario") or {}).get("name") or "run"), result)]
    return [p for name, plot in _run_plots() if (p := plot(runs, folder / name)) is not None]


def write_compare_plots(runs: Sequence[tuple[str, Mapping[str, Any]]], folder: Path) -> list[Path]:
    """The run plots with every run overlaid, one colour per run."""
    folder = Path(folder)
    return [p for name, plot in _run_plots() if (p := plot(runs, folder / f"compare_{name}")) is not None]

