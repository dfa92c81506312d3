"""What a result's summary must hold, recomputed independently from its interval logs: the
`.hlog` files keep every second of a run, and a summary covers the measured window of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.results.window import measured_indices


def hlog_intervals(path: Path) -> dict[int, HdrHistogram]:
    """Second -> histogram of that second, read from the log's own lines (format 1.3)."""
    intervals = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith(("#", '"')):
            continue
        start, _length, _max, encoded = line.split(",", 3)
        intervals[round(float(start))] = HdrHistogram.decode(encoded)
    return intervals


def hlog_total(path: Path) -> int:
    return sum(histogram.get_total_count() for histogram in hlog_intervals(path).values())


def hlog_merged(path: Path, seconds: Any = None) -> HdrHistogram:
    """Every interval of the log added up (or those of `seconds`), with hdrh alone."""
    merged = HdrHistogram(1, 3_600_000_000, 3)
    for second, histogram in hlog_intervals(path).items():
        if seconds is None or second in seconds:
            merged.add(histogram)
    return merged


def window_count(path: Path, result: dict[str, Any]) -> int:
    """How many of the log's samples fall in the result's measured window."""
    window = set(measured_indices(result))
    return sum(histogram.get_total_count() for second, histogram in hlog_intervals(path).items() if second in window)


def window_sum(result: dict[str, Any], key: str) -> int:
    """A per-second count series summed over the measured window."""
    values = result["series"][key]
    return sum(values[i] for i in measured_indices(result))
