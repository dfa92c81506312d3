"""Latency histograms: the project's range and precision, encoding, summaries, and HdrHistogram
interval logs (`.hlog`)."""

from __future__ import annotations

import binascii
import datetime as dt
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.results.metrics import SUMMARY_PERCENTILES
from bench.results.store import write_text_atomic
from streamstore.errors import UsageError

# Latency histograms are in microseconds: 1 µs resolution floor, 1 hour ceiling (a stalled
# 1 GB gzip delivery still fits), 3 significant figures (0.1 % value error).
LATENCY_LOWEST_US = 1
LATENCY_HIGHEST_US = 3_600_000_000
LATENCY_SIGNIFICANT_FIGURES = 3



def new_latency_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds with the project's range and precision."""
    return HdrHistogram(LATENCY_LOWEST_US, LATENCY_HIGHEST_US, LATENCY_SIGNIFICANT_FIGURES)


def encode_histogram(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def decode_histogram(encoded: str) -> HdrHistogram:
    """The histogram from its `encode()` text; a damaged text is a bad input file."""
    if not isinstance(encoded, str) or not encoded:
        raise UsageError("histogram in result file is missing or not a string")
    try:
        return HdrHistogram.decode(encoded)
    except (binascii.Error, zlib.error, ValueError, TypeError, IndexError) as error:
        raise UsageError(f"histogram in result file cannot be decoded ({error})") from None


def summarize_histogram(histogram: HdrHistogram) -> dict[str, Any]:
    """count, min, mean, p50 .. p99_99, max and the encoded histogram.

    An empty histogram has count 0 and null statistics: a latency of 0 would be a lie.
    """
    count = histogram.get_total_count()
    summary: dict[str, Any] = {"count": count}
    if count == 0:
        summary.update({"min": None, "mean": None, **{k: None for k in SUMMARY_PERCENTILES}, "max": None})
    else:
        # min from the 0th percentile: hdrh's add() of an empty histogram resets min_value to 0.
        by_percentile = histogram.get_percentile_to_value_dict([0.0, *SUMMARY_PERCENTILES.values()])
        summary["min"] = by_percentile[0.0]
        summary["mean"] = round(histogram.get_mean_value(), 1)
        summary.update({key: by_percentile[p] for key, p in SUMMARY_PERCENTILES.items()})
        summary["max"] = histogram.get_max_value()
    summary["histogram"] = encode_histogram(histogram)
    return summary


# HdrHistogram interval logs

# The log's Interval_Max column is in milliseconds (HistogramLogAnalyzer's default unit);
# our histograms hold microseconds.
_MAX_VALUE_UNIT_RATIO = 1000.0


def write_interval_log(
    path: str | os.PathLike,
    intervals: Iterable[HdrHistogram | str | None],
    start_time_s: float,
    interval_s: float = 1.0,
) -> Path:
    """Write an HdrHistogram interval log (format 1.3, as Java's HistogramLogWriter does).

    `intervals[i]` is the histogram (or its encoded text) of second i after `start_time_s`
    (epoch seconds); None or an empty histogram is a second without samples and is skipped,
    which readers handle (timestamps say where each interval is).
    Written atomically. hdrh's own `output_start_time` crashes, so the header is written here.
    """
    started = dt.datetime.fromtimestamp(start_time_s, tz=dt.UTC)
    lines = [
        "#[Histogram log format version 1.3]",
        f"#[StartTime: {start_time_s:.3f} (seconds since epoch), {started.isoformat(sep=' ')}]",
        f"#[BaseTime: {start_time_s:.3f} (seconds since epoch)]",
        "#[Values in microseconds; Interval_Max in milliseconds]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for index, interval in enumerate(intervals):
        if interval is None:
            continue
        histogram = decode_histogram(interval) if isinstance(interval, str) else interval
        if histogram.get_total_count() == 0:
            continue
        max_ms = histogram.get_max_value() / _MAX_VALUE_UNIT_RATIO
        lines.append(f"{index * interval_s:.3f},{interval_s:.3f},{max_ms:.3f},{encode_histogram(histogram)}")
    target = Path(path)
    write_text_atomic(target, "\n".join(lines) + "\n")
    return target


