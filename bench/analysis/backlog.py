"""The catch-up of a backlog run, from its per-second series. Pure.

A backlog run (scenario field `backlog`) sends its backlog while the consumers are paused; they
start at `consumers_started_s` (seconds after the first send) while the producers go on at the
scenario's rate. From the once-a-second lag samples:

- steady window: the last third (at least STEADY_MIN_SECONDS) of the whole seconds between the
  consumers' start and the last second with sends (a partial second, left out as the measured
  window leaves it out); the steady lag is the median of its samples, its band their maximum.
- caught up: the first second after the consumers' start whose lag sample is within the band.
  When that second lies inside the steady window itself, the lag had not settled before it, so
  the run cannot say when it did: the time is None with the reason (run longer).
- the catch-up window: the consumers' start to the end of that second. Drain rate = messages
  consumed in it / its length (nothing is consumed before the start: the partitions are paused).
  No steady level exists when the steady window's lag is not below the backlog (the consumers
  did not keep up): None too, with that reason. Resolution: one second, the lag's sampling interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STEADY_MIN_SECONDS = 2
STEADY_SHARE = 1 / 3
NOT_SETTLED = ("the lag was not back within its steady band before the last third of the producing seconds "
               "after the consumers' start (the steady window): run longer (duration_s) to see it settle")
TOO_SHORT = (f"fewer than {STEADY_MIN_SECONDS + 1} whole producing seconds after the consumers' start: "
             "no steady lag to come back to (run longer: duration_s)")
NOT_KEPT_UP = ("the lag never came down from the backlog (the steady window's lag is not below it): the consumers "
               "did not keep up with the producers")
NOT_STARTED = "the consumers never started (the run ended while building the backlog)"


@dataclass(frozen=True)
class CatchUp:
    """What the series say about one catch-up; `window` are the series indices of the catch-up
    window (for the end-to-end latency over it), `not_measured` figure -> why it is None."""

    consumers_started_s: float | None
    lag_at_start_messages: int | None
    steady_lag_messages: float | None
    steady_band_messages: int | None
    steady_window_s: tuple[float, float] | None
    time_to_steady_s: float | None
    drain_window_s: tuple[float, float] | None
    drain_per_s: float | None
    drain_mb_s: float | None
    window: tuple[int, ...]
    not_measured: Mapping[str, str]


def catch_up(series: Mapping[str, Any], consumers_started_s: float | None, message_bytes: float | None,
             backlog_messages: int = 0) -> CatchUp:
    """The catch-up figures from result["series"] (t_s, sent, consumed, lag_messages)."""
    if consumers_started_s is None:
        reasons = dict.fromkeys(("steady_lag_messages", "time_to_steady_s", "drain_per_s"), NOT_STARTED)
        return CatchUp(None, None, None, None, None, None, None, None, None, (), reasons)
    seconds, sent = series.get("t_s") or [], series.get("sent") or []
    lags, consumed = series.get("lag_messages") or [], series.get("consumed") or []
    first = min(int(math.floor(consumers_started_s)), len(seconds))
    sending = [i for i, count in enumerate(sent) if count]
    end = sending[-1] if sending else first  # the last second with sends is partial: left out
    lag_at_start = _lag(lags, first - 1) if first >= 1 else None
    producing = list(range(first, end))
    reasons: dict[str, str] = {}
    steady_level = band = steady_window = caught = None
    if len(producing) <= STEADY_MIN_SECONDS:
        reasons["steady_lag_messages"] = reasons["time_to_steady_s"] = TOO_SHORT
    else:
        steady = producing[-max(STEADY_MIN_SECONDS, round(len(producing) * STEADY_SHARE)):]
        samples = [lag for i in steady if (lag := _lag(lags, i)) is not None]
        if not samples:
            reasons["steady_lag_messages"] = reasons["time_to_steady_s"] = "no lag sample in the steady window"
        else:
            steady_level, band = statistics.median(samples), max(samples)
            steady_window = (seconds[steady[0]] - 1, seconds[steady[-1]])
            caught = next((i for i in producing if (lag := _lag(lags, i)) is not None and lag <= band), None)
            if band >= max(lag_at_start or 0, backlog_messages):
                caught = steady_level = band = steady_window = None
                reasons["steady_lag_messages"] = reasons["time_to_steady_s"] = NOT_KEPT_UP
            elif caught is None or caught >= steady[0]:
                caught, reasons["time_to_steady_s"] = None, NOT_SETTLED
    # Drain rate over the catch-up window, or (not caught up) up to the end of producing.
    last = caught if caught is not None else (end - 1)
    drain_per_s = drain_mb_s = drain_window = None
    if last >= first and last < len(seconds):
        drain_window = (consumers_started_s, float(seconds[last]))
        length = drain_window[1] - drain_window[0]
        drained = sum(consumed[i] for i in range(first, last + 1) if i < len(consumed))
        drain_per_s = round(drained / length, 1) if length > 0 else None
        if drain_per_s is not None and message_bytes:
            drain_mb_s = round(drain_per_s * message_bytes / 1e6, 3)
    if drain_per_s is None:
        reasons["drain_per_s"] = "no whole second of consuming after the consumers' start"
    return CatchUp(
        consumers_started_s=consumers_started_s, lag_at_start_messages=lag_at_start,
        steady_lag_messages=steady_level, steady_band_messages=band, steady_window_s=steady_window,
        time_to_steady_s=None if caught is None else round(seconds[caught] - consumers_started_s, 3),
        drain_window_s=drain_window, drain_per_s=drain_per_s, drain_mb_s=drain_mb_s,
        window=tuple(range(first, last + 1)) if drain_window else (), not_measured=reasons)


def _lag(lags: Sequence[int | None], index: int) -> int | None:
    return lags[index] if 0 <= index < len(lags) else None
