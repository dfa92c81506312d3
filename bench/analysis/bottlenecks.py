"""Bottleneck verdicts: what limited a run, from its resources and per-second series. Pure.

`bottleneck_verdicts(result)` returns result["verdicts"], a list of dicts, each with `kind`,
`text` (one line for a person) and the evidence it rests on. Kinds:

- generator-saturated: a producer process's Python thread (it holds the GIL, so it can use one
  core however many threads librdkafka adds) busy >= SATURATED_PERCENT of the time for at least
  `min_seconds` of the measured window. Busy is on a CPU plus runnable and waiting for one (Linux
  schedstat): on a crowded host a thread that always wants a CPU gets only a share of one, and
  is just as much the limit. Or the producers sent less than BEHIND_SHARE of the asked rate while
  the host's CPUs were saturated. Either way the figure is the harness's limit, not Kafka's.
- host-saturated: the host's CPUs (all cores) at >= SATURATED_PERCENT for `min_seconds`: the
  producers, tracker and broker share this machine.
- broker-busy: an embedded broker process using >= SATURATED_PERCENT of every core of the host,
  or a broker node whose request handler threads were idle less than HANDLER_IDLE_BUSY_PERCENT
  of the time (Kafka's RequestHandlerAvgIdlePercent, from its metrics endpoint) for `min_seconds`:
  Kafka's own sign that requests queue for a handler, which also holds for a broker elsewhere.
- host-steal: the hypervisor ran other guests on this machine's virtual CPUs for >= STEAL_PERCENT
  of the CPU time in `min_seconds` (Linux `steal`): not a limit of the run, a neighbour it cannot
  see; its figures move with that neighbour's load, latency tails and the generator's send delay
  first.
- tracker-behind: consumer lag grew over the measured window by more than
  max(TRACKER_BEHIND_MIN_SLOPE, TRACKER_BEHIND_SHARE of the acked rate) messages per second.

`min_seconds` is max(SATURATED_MIN_S, SATURATED_SHARE of the measured seconds): a run spends at
least half of its window saturated before the verdict is given, never less than 3 s.
docs/measurement.md explains the thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.analysis.resources import main_thread_demand, resource_window, window_values
from bench.results.metrics import broker_series_key
from bench.results.window import linear_slope

# A process's main thread (or the host's CPUs) this busy is saturated: 100 % is never reached in
# a 1 s sample of a busy thread (sampling edges, the moments it waits for the GIL or a lock).
SATURATED_PERCENT = 90.0
SATURATED_MIN_S = 3
SATURATED_SHARE = 0.5
# Producers that sent less than this share of the asked rate fell behind their schedule.
BEHIND_SHARE = 0.9
# Lag growing faster than this (messages per second, and share of the acked rate) is a tracker
# that cannot keep up, not the jitter of a tracker that polls in batches.
TRACKER_BEHIND_MIN_SLOPE = 100.0
TRACKER_BEHIND_SHARE = 0.02
# Request handlers idle less than this share of the time: the broker's usual "busy" sign (Kafka's
# operations docs alert below 20-30 %).
HANDLER_IDLE_BUSY_PERCENT = 20.0
# CPU time stolen by the hypervisor (other guests) at or above this share: a neighbour on the
# host. A few percent comes and goes on shared clouds; on 2 cores, 5 % is a tenth of a core.
STEAL_PERCENT = 5.0


def min_seconds(window_s: int) -> int:
    return max(SATURATED_MIN_S, math.ceil(SATURATED_SHARE * window_s))


def _saturated(values: Sequence[float], threshold: float) -> list[float]:
    return [value for value in values if value >= threshold]


def _asked_rate(result: Mapping[str, Any]) -> float | None:
    scenario = result.get("scenario") or {}
    if scenario.get("phases"):
        return None  # a changing rate: the mean sent rate is no schedule to compare with
    rate = scenario.get("rate")
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def _generator(result, series, window, need, host_busy: list[float]) -> list[dict[str, Any]]:
    processes = (result.get("resources") or {}).get("processes") or {}
    verdicts = []
    for name, info in processes.items():
        if info.get("role") != "producer":
            continue
        demand = main_thread_demand(series, name)
        if demand is not None:
            values, with_wait = window_values(demand[0], window), demand[1]
            measure = "Python thread on a CPU or waiting for one" if with_wait else "Python thread on a CPU"
        else:
            values = window_values((series.get("cpu_percent_by_process") or {}).get(name), window)
            measure = "process CPU"
        busy = _saturated(values, SATURATED_PERCENT)
        if len(busy) >= need:
            percent = round(sum(busy) / len(busy))
            cpu = window_values((series.get("main_thread_cpu_percent_by_process") or {}).get(name), window)
            on_cpu = f", on a CPU {sum(cpu) / len(cpu):.0f} %" if demand and demand[1] and cpu else ""
            verdicts.append({
                "kind": "generator-saturated", "process": name, "measure": measure, "busy_percent": percent,
                "seconds": len(busy), "threshold_percent": SATURATED_PERCENT,
                "text": f"generator saturated: {name} busy {percent} % of the time for {len(busy)} s ({measure}"
                        f"{on_cpu}) — this figure is the harness's limit, add producers or Locust workers"})
    asked = _asked_rate(result)
    sent = window_values(series.get("sent"), window)
    if not verdicts and asked and sent and len(host_busy) >= need:
        achieved = sum(sent) / len(sent)
        if achieved < BEHIND_SHARE * asked:
            host = round(sum(host_busy) / len(host_busy))
            verdicts.append({
                "kind": "generator-saturated", "process": None, "measure": "host CPU", "busy_percent": host,
                "seconds": len(host_busy), "threshold_percent": SATURATED_PERCENT,
                "sent_per_s": round(achieved, 1), "asked_per_s": asked,
                "text": f"generator saturated: the producers sent {achieved:,.0f} of {asked:,.0f} msg/s asked while the "
                        f"host's CPUs were {host} % busy for {len(host_busy)} s — this figure is the harness's limit on "
                        "this machine, add producers or Locust workers on other hosts"})
    return verdicts


def _tracker(result, series, window) -> list[dict[str, Any]]:
    lag = window_values(series.get("lag_messages"), window)
    # The lag's least-squares slope, as the capacity search judges a step's lag (three points at least).
    fit = linear_slope(list(range(len(lag))), lag) if len(lag) >= 3 else None
    slope = fit.per_s if fit is not None else None
    acked = window_values(series.get("acked"), window)
    acked_rate = sum(acked) / len(acked) if acked else 0.0
    limit = max(TRACKER_BEHIND_MIN_SLOPE, TRACKER_BEHIND_SHARE * acked_rate)
    if slope is None or slope < limit or lag[-1] <= lag[0]:
        return []
    verdict = {"kind": "tracker-behind", "lag_slope_per_s": round(slope, 1), "threshold_per_s": round(limit, 1),
               "text": f"tracker behind: lag grew {slope:,.0f} msg/s over the measured window"}
    demand = main_thread_demand(series, "tracker")
    main = window_values(demand[0], window) if demand else []
    if main:
        verdict["tracker_busy_percent"] = round(sum(main) / len(main))
        verdict["text"] += f" (the tracker's Python thread busy {verdict['tracker_busy_percent']} % of the time)"
    if (result.get("scenario") or {}).get("rate") == 0:
        verdict["text"] += ": flat out, the tracker yields the CPU to the producers by design and catches up in the drain"
    else:
        verdict["text"] += ": lag and end-to-end latency measure the tracker here, not Kafka"
    return [verdict]


def _handlers_busy(series, window, need) -> list[dict[str, Any]]:
    verdicts = []
    for node, idle in (series.get(broker_series_key("broker_request_handler_idle_percent")) or {}).items():
        busy = [value for value in window_values(idle, window) if value < HANDLER_IDLE_BUSY_PERCENT]
        if len(busy) >= need:
            percent = round(sum(busy) / len(busy))
            verdicts.append({"kind": "broker-busy", "process": node, "request_handler_idle_percent": percent,
                             "seconds": len(busy), "threshold_idle_percent": HANDLER_IDLE_BUSY_PERCENT,
                             "text": f"broker busy: {node}'s request handlers idle only {percent} % of the time for "
                                     f"{len(busy)} s (Kafka's RequestHandlerAvgIdlePercent; below "
                                     f"{HANDLER_IDLE_BUSY_PERCENT:g} % requests queue for a handler)"})
    return verdicts


def _broker(result, series, window, need) -> list[dict[str, Any]]:
    resources = result.get("resources") or {}
    verdicts = _handlers_busy(series, window, need)
    cores = resources.get("cpu_count")
    if not cores:
        return verdicts
    for name, info in (resources.get("processes") or {}).items():
        if info.get("role") != "broker":
            continue
        values = window_values((series.get("cpu_percent_by_process") or {}).get(name), window)
        busy = _saturated(values, SATURATED_PERCENT * cores)
        if len(busy) >= need:
            percent = round(sum(busy) / len(busy))
            verdicts.append({"kind": "broker-busy", "process": name, "cpu_percent": percent, "seconds": len(busy),
                             "threshold_percent": SATURATED_PERCENT * cores,
                             "text": f"broker busy: {name} at {percent} % CPU ({cores} cores = {100 * cores} %) "
                                     f"for {len(busy)} s"})
    return verdicts


def bottleneck_verdicts(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What limited the run (see the module docstring); empty when nothing did, or when the run
    measured none of it (result["resources"] null: its reason says why)."""
    series = result.get("series") or {}
    window = resource_window(series, result.get("warmup_s") or 0)
    if not window:
        return []
    need = min_seconds(len(window))
    host_busy = _saturated(window_values(series.get("host_cpu_percent"), window), SATURATED_PERCENT)
    verdicts = _generator(result, series, window, need, host_busy)
    verdicts += _broker(result, series, window, need)
    verdicts += _tracker(result, series, window)
    stolen = _saturated(window_values(series.get("host_steal_percent"), window), STEAL_PERCENT)
    if len(stolen) >= need:
        steal = round(sum(stolen) / len(stolen), 1)
        verdicts.append({"kind": "host-steal", "steal_percent": steal, "seconds": len(stolen),
                         "threshold_percent": STEAL_PERCENT,
                         "text": f"CPU stolen: the hypervisor ran other guests for {steal:g} % of this machine's CPU "
                                 f"time in {len(stolen)} s — figures move with their load (latency tails and the "
                                 "generator's send delay first); compare such runs only in alternating rounds"})
    if len(host_busy) >= need:
        host = round(sum(host_busy) / len(host_busy))
        verdicts.append({"kind": "host-saturated", "cpu_percent": host, "seconds": len(host_busy),
                         "threshold_percent": SATURATED_PERCENT,
                         "text": f"host saturated: its CPUs {host} % busy for {len(host_busy)} s — producers, tracker and "
                                 "broker share this machine, so its figures are this machine's limit"})
    return verdicts
