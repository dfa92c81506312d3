"""What a person reads about a run's resources and bottleneck verdicts: the run summary's lines,
the report's table (bench/output/report.py) and the Locust master's log. The figures come from
result["resources"] and result["verdicts"] (bench/analysis/resources.py, bottlenecks.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.results.metrics import BROKER_METRICS_WINDOW, RESOURCE_SERIES, RESOURCE_WINDOW

RESOURCE_COLUMNS = ("process", "role", f"{RESOURCE_SERIES['cpu_percent_by_process'][0]} mean (%)", "max (%)",
                    f"{RESOURCE_SERIES['main_thread_cpu_percent_by_process'][0]} mean (%)",
                    f"{RESOURCE_SERIES['main_thread_wait_percent_by_process'][0]} mean (%)",
                    f"{RESOURCE_SERIES['rss_mb_by_process'][0]} max (MB)")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def verdict_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per bottleneck verdict, or why there is none."""
    verdicts = result.get("verdicts")
    if verdicts is None:
        return [f"not judged: {result.get('verdicts_not_measured') or 'no verdicts recorded'}"]
    if verdicts:
        return [verdict["text"] for verdict in verdicts]
    if result.get("resources") is None:
        return [f"none found, and resources not measured: {result.get('resources_not_measured') or 'no reason recorded'}"]
    return ["none: no producer, tracker, broker or host limit reached over the measured window"]


def resource_rows(result: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """The report's table: each process's figures over the measured window, then the host."""
    resources = result.get("resources")
    if not isinstance(resources, Mapping):
        return []
    rows = [(name, info.get("role", ""), _figure(info.get("cpu_percent_mean")), _figure(info.get("cpu_percent_max")),
             _figure(info.get("main_thread_cpu_percent_mean")), _figure(info.get("main_thread_wait_percent_mean")),
             _figure(info.get("rss_mb_max")))
            for name, info in (resources.get("processes") or {}).items()]
    host = (resources.get("summary") or {}).get("host") or {}
    cores = resources.get("cpu_count")
    rows.append((f"host ({cores} cores; % of all)" if cores else "host (% of all cores)", "host",
                 _figure(host.get("cpu_percent_mean")), _figure(host.get("cpu_percent_max")), "-", "-", "-"))
    return rows


def resource_notes(result: Mapping[str, Any]) -> list[str]:
    """What the table covers, and what it leaves out and why."""
    resources = result.get("resources")
    if not isinstance(resources, Mapping):
        return [f"Resources not measured: {result.get('resources_not_measured') or 'no reason recorded'}."]
    notes = [f"Window: {RESOURCE_WINDOW}. CPU in % of one core (a process with several threads can pass 100 %); "
             "the main thread is the one that runs Python (it holds the GIL); waiting for a CPU: runnable, but "
             "every core was busy with something else."]
    notes += [f"{role} not measured: {reason}." for role, reason in (resources.get("not_measured") or {}).items()]
    line = broker_metrics_line(result)
    if line is not None:
        notes += [line[0].upper() + line[1:] + ".", *filter(None, [broker_metrics_note(result)])]
    elif resources.get("broker_metrics_not_measured"):
        notes.append(f"Broker metrics not measured: {resources['broker_metrics_not_measured']}.")
    return notes


def resource_line(result: Mapping[str, Any]) -> str | None:
    """The run summary's one line: mean CPU of each process and of the host over the window."""
    resources = result.get("resources")
    if not isinstance(resources, Mapping):
        return f"resources not measured: {result.get('resources_not_measured') or 'no reason recorded'}"
    parts = []
    for name, info in (resources.get("processes") or {}).items():
        main, wait = info.get("main_thread_cpu_percent_mean"), info.get("main_thread_wait_percent_mean")
        parts.append(f"{name} {_figure(info.get('cpu_percent_mean'))} %"
                     + (f" (main thread {_figure(main)} %" if main is not None else "")
                     + (f", {_figure(wait)} % waiting for a CPU)" if main is not None and wait is not None
                        else ")" if main is not None else ""))
    host = (resources.get("summary") or {}).get("host") or {}
    line = "CPU (mean over the measured window, % of one core): " + ", ".join(parts)
    line += f"; host {_figure(host.get('cpu_percent_mean'))} % of {resources.get('cpu_count')} cores"
    if host.get("steal_percent_mean"):  # only where the hypervisor took some
        line += f" (of which stolen by the hypervisor {_figure(host['steal_percent_mean'])} %)"
    missing = resources.get("not_measured") or {}
    return line + "".join(f"; {role} not measured: {reason}" for role, reason in missing.items())


def _mb(bytes_per_s: float | None) -> str:
    return "-" if bytes_per_s is None else f"{bytes_per_s / 1e6:,.2f}"


def broker_metrics_line(result: Mapping[str, Any]) -> str | None:
    """The run summary's line of the broker's own metrics per node; None when they were not read
    (an endpoint the user gave that did not answer is a warning of its own; the report says why)."""
    resources = result.get("resources")
    metrics = resources.get("broker_metrics") if isinstance(resources, Mapping) else None
    if not isinstance(metrics, Mapping):
        return None
    parts = []
    for name, node in (metrics.get("nodes") or {}).items():
        parts.append(f"{name} in {_mb(node.get('bytes_in_per_s_mean'))} MB/s, "
                     f"out {_mb(node.get('bytes_out_per_s_mean'))} MB/s, "
                     f"request handlers idle {_figure(node.get('request_handler_idle_percent_mean'))} %")
    missing = "".join(f"; {name} not measured: {why}" for name, why in (metrics.get("not_measured") or {}).items())
    return "broker (its own metrics, mean over the measured window): " + ", ".join(parts) + missing


def broker_metrics_note(result: Mapping[str, Any]) -> str | None:
    """The report's sentence on where the broker's own metrics come from and what they cover."""
    resources = result.get("resources")
    metrics = resources.get("broker_metrics") if isinstance(resources, Mapping) else None
    if not isinstance(metrics, Mapping):
        return None
    return (f"Broker metrics: {metrics.get('source')}; {BROKER_METRICS_WINDOW} "
            f"(scrape {_figure(metrics.get('scrape_ms_mean'))} ms mean).")
