"""The resources section of a result: per-process and per-role figures over the measured window,
from the per-second resource series (bench/core/resources.py samples them; the names are in
bench/results/metrics.py RESOURCE_SERIES). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.results.metrics import RESOURCE_ROLES
from bench.results.window import measured_seconds, rounded_mean


def window_values(values: Sequence[float | None] | None, window: Sequence[int]) -> list[float]:
    """The non-null values of one series inside the window."""
    values = values or []
    return [values[i] for i in window if i < len(values) and values[i] is not None]


def resource_window(series: Mapping[str, Any], warmup_s: float) -> list[int]:
    return measured_seconds(series.get("t_s") or [], warmup_s, series.get("sent"))


def process_figures(series: Mapping[str, Any], name: str, window: Sequence[int]) -> dict[str, Any]:
    cpu = window_values((series.get("cpu_percent_by_process") or {}).get(name), window)
    rss = window_values((series.get("rss_mb_by_process") or {}).get(name), window)
    figures: dict[str, Any] = {"cpu_percent_mean": rounded_mean(cpu), "cpu_percent_max": max(cpu, default=None),
                               "rss_mb_max": max(rss, default=None), "seconds": len(cpu)}
    main = (series.get("main_thread_cpu_percent_by_process") or {}).get(name)
    if main is not None:
        figures["main_thread_cpu_percent_mean"] = rounded_mean(window_values(main, window))
        wait = (series.get("main_thread_wait_percent_by_process") or {}).get(name)
        figures["main_thread_wait_percent_mean"] = rounded_mean(window_values(wait, window)) if wait is not None else None
    return figures


def main_thread_demand(series: Mapping[str, Any], name: str) -> tuple[list[float | None], bool] | None:
    """Per second, how much of the time a process's main thread wanted a CPU: on one plus
    runnable and waiting for one (% of the time), and whether the waiting was measured (only
    on-CPU time otherwise). None for a process without a main-thread series."""
    cpu = (series.get("main_thread_cpu_percent_by_process") or {}).get(name)
    if cpu is None:
        return None
    wait = (series.get("main_thread_wait_percent_by_process") or {}).get(name)
    if wait is None or len(wait) != len(cpu):
        return list(cpu), False
    return [None if c is None else c + (w or 0.0) for c, w in zip(cpu, wait)], True


def resources_section(series: Mapping[str, Any], processes: Mapping[str, Mapping[str, Any]], warmup_s: float, *,
                      cpu_count: int | None, every_s: float, not_measured: Mapping[str, str]) -> dict[str, Any]:
    """result["resources"]: each process (role, pids, figures over the measured window), a
    summary per role (its busiest process by mean CPU, its largest RSS) and for the host, and
    what was not measured (role -> why)."""
    window = resource_window(series, warmup_s)
    described = {name: {**dict(info), **process_figures(series, name, window)} for name, info in processes.items()}
    host = window_values(series.get("host_cpu_percent"), window)
    steal = window_values(series.get("host_steal_percent"), window)
    summary: dict[str, Any] = {"host": {"cpu_percent_mean": rounded_mean(host), "cpu_percent_max": max(host, default=None),
                                        "steal_percent_mean": rounded_mean(steal),
                                        "steal_percent_max": max(steal, default=None)}}
    for role in RESOURCE_ROLES:
        members = {name: figures for name, figures in described.items() if figures["role"] == role}
        if not members:
            continue
        busiest = max(members, key=lambda name: members[name]["cpu_percent_mean"] or -1.0)
        rss = [figures["rss_mb_max"] for figures in members.values() if figures["rss_mb_max"] is not None]
        summary[role] = {"busiest": busiest, "cpu_percent_mean": members[busiest]["cpu_percent_mean"],
                         "rss_mb_max": max(rss, default=None)}
        for key in ("main_thread_cpu_percent_mean", "main_thread_wait_percent_mean"):
            if key in members[busiest]:
                summary[role][key] = members[busiest][key]
    return {"every_s": every_s, "cpu_count": cpu_count, "processes": described, "summary": summary,
            "not_measured": dict(not_measured)}
