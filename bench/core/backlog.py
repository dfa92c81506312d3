"""Backlog and catch-up (scenario field `backlog`): the coordinator's side.

The run's timeline (seconds count from the first send, t0):
  build     every producer sends its share of the backlog flat out (bench/core/producer.py),
            waits until each message of it is delivered and says `BacklogBuilt`; the consumer
            processes are connected, their partitions paused, and report lag each second.
  catch-up  once every producer has built its share, `BacklogStart.begin` sets the shared start
            time: the consumers resume and the producers go on at the scenario's rate (or flat
            out) for duration_s.
  measured  warm-up counts from the consumers' start (`warmup_from_s`): the headline figures
            cover the steady run after the build, as in a run without a backlog.
The result's `backlog` section (docs/result-format.md) holds the build, the drain rate, the time
until the lag is back at its steady level and the end-to-end latency over the catch-up window
(bench/analysis/backlog.py).
"""

from __future__ import annotations

import math
import time
from typing import Any

from bench.analysis.backlog import catch_up
from bench.core.protocol import BacklogBuilt
from bench.core.recorder import LatencyRecorder
from bench.core.scenario import Scenario
from bench.results.formatting import format_us
from bench.results.metrics import BACKLOG_WINDOWS, METRICS

NS_PER_S = 1_000_000_000
# The producers' schedule starts this long after the last share was built, so all start together.
CATCH_UP_DELAY_NS = 100_000_000


class BacklogStart:
    """Knows when every producer has built its share, and starts the catch-up."""

    def __init__(self, scenario: Scenario, catch_up_ns: Any):
        self.scenario = scenario
        self.catch_up_ns = catch_up_ns  # shared multiprocessing Value('q'); 0 until the start
        self.shares: dict[int, int] = {}  # producer -> messages of its built share
        self.built_s: float | None = None
        self.started_s: float | None = None

    def built(self, message: BacklogBuilt, t0_ns: int, measured) -> str | None:
        """One producer's share is built; after the last one the catch-up starts (the run's
        warm-up then counts from it: `measured` is the run's RunMeasurements) and the event's text
        is returned, else None."""
        if not self.note(message, t0_ns):
            return None
        started_s = self.begin(t0_ns)
        measured.set_warmup(self.warmup_from_s(0))
        return (f"backlog of {self.scenario.backlog_messages():,} messages built in {self.built_s:.1f} s; "
                f"consumers start at {started_s:.1f} s")

    def note(self, message: BacklogBuilt, t0_ns: int) -> bool:
        """One producer's share is built; True when that was the last one (call `begin`)."""
        self.shares[message.producer] = message.messages
        if len(self.shares) < self.scenario.producers or self.built_s is not None:
            return False
        self.built_s = (time.perf_counter_ns() - t0_ns) / NS_PER_S
        return True

    def begin(self, t0_ns: int) -> float:
        """Start the catch-up; its start in seconds after t0."""
        start_ns = time.perf_counter_ns() + CATCH_UP_DELAY_NS
        self.catch_up_ns.value = start_ns
        self.started_s = (start_ns - t0_ns) / NS_PER_S
        return self.started_s

    def warmup_from_s(self, seconds: int) -> float:
        """The run's warm-up in seconds after t0: the scenario's warm-up from the first whole
        second after the consumers' start; before it starts (or if it never did) every second."""
        if self.started_s is None:
            return float(seconds)
        return math.ceil(self.started_s) + self.scenario.warmup_s


def backlog_section(scenario: Scenario, start: BacklogStart, series: dict[str, Any],
                    end_to_end: LatencyRecorder | None) -> dict[str, Any]:
    """result.json's `backlog`: the build, and the catch-up's figures with the window each covers."""
    messages = scenario.backlog_messages()
    figures = catch_up(series, start.started_s, scenario.mean_message_size(), messages)
    not_measured = dict(figures.not_measured)
    latency = None
    if end_to_end is None:
        not_measured["end_to_end_us"] = "no consumer measured end-to-end latency"
    elif figures.window:
        latency = end_to_end.summary(figures.window)
        latency.pop("histogram")
    else:
        not_measured["end_to_end_us"] = not_measured.get("drain_per_s", "no catch-up window")
    windows = dict(BACKLOG_WINDOWS)
    if figures.time_to_steady_s is None and figures.drain_window_s is not None:
        windows["catch_up"] = BACKLOG_WINDOWS["not_caught_up"]
    windows.pop("not_caught_up")
    return {
        "messages": messages,
        "value_bytes": round(messages * scenario.mean_message_size()),
        "built_s": None if start.built_s is None else round(start.built_s, 3),
        "consumers_started_s": None if start.started_s is None else round(start.started_s, 3),
        "lag_at_start_messages": figures.lag_at_start_messages,
        "steady_lag_messages": figures.steady_lag_messages,
        "steady_band_messages": figures.steady_band_messages,
        "steady_window_s": list(figures.steady_window_s) if figures.steady_window_s else None,
        "time_to_steady_s": figures.time_to_steady_s,
        "catch_up_window_s": [round(t, 3) for t in figures.drain_window_s] if figures.drain_window_s else None,
        "drain_per_s": figures.drain_per_s,
        "drain_mb_s": figures.drain_mb_s,
        "end_to_end_us": latency,
        "windows": windows,
        "not_measured": not_measured,
    }


def backlog_warnings(section: dict[str, Any] | None, warmup_s: float) -> list[str]:
    """When the measured window (warm-up ends at warmup_s after t0) begins before the catch-up
    ended, its headline figures hold part of the catch-up: said, with the warm-up that avoids it."""
    if not section or section["consumers_started_s"] is None:
        return []
    started, settled = section["consumers_started_s"], section["time_to_steady_s"]
    if settled is None:
        return ["the lag did not come back to its steady level: the measured window's latency and lag figures "
                "include the catch-up"]
    caught_up_s = started + settled
    if caught_up_s <= warmup_s:
        return []
    needed = math.ceil(caught_up_s) - math.ceil(started)
    return [f"the measured window starts before the lag was back at its steady level ({caught_up_s:.1f} s after the "
            f"first send): its latency and lag figures include part of the catch-up; warmup_s = {needed} or more "
            f"leaves it out"]


def backlog_lines(section: dict[str, Any] | None) -> list[str]:
    """The console's lines for a backlog run (after the run's summary)."""
    if not section:
        return []

    def figure(name: str, unit: str, number_format: str = ",.1f") -> str:
        value = METRICS[name].read({"backlog": section})
        if value is None:
            return f"{METRICS[name].label}: n/a"
        return f"{METRICS[name].label} {format(value, number_format)}{unit}"

    started = section["consumers_started_s"]
    lines = [f"backlog: {section['messages']:,} messages ({section['value_bytes'] / 1e6:,.1f} MB of values) built in "
             + (f"{section['built_s']:.1f} s; consumers started at {started:.1f} s" if started is not None
                else "(not finished: the consumers never started)")]
    if started is None:
        return lines
    steady = section["steady_lag_messages"]
    lines.append("catch-up: " + ", ".join([
        figure("backlog_drain_rate", " msg/s", ",.0f"), figure("backlog_drain_mb", " MB/s", ",.2f"),
        figure("backlog_time_to_steady", " s"),
        f"steady lag {steady:,.0f} messages" if steady is not None else "steady lag n/a"]))
    latency = section["end_to_end_us"]
    if latency and latency.get("count"):
        lines.append(", ".join(f"{METRICS[f'backlog_end_to_end_{stat}'].label} {format_us(latency[stat])}"
                               for stat in ("p50", "p99", "max"))
                     + f" (n={latency['count']:,}; {section['windows']['catch_up']})")
    reasons: dict[str, list[str]] = {}
    for name, reason in section["not_measured"].items():
        reasons.setdefault(reason, []).append(name)
    lines += [f"catch-up {', '.join(names)} not measured: {reason}" for reason, names in reasons.items()]
    return lines
