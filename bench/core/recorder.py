"""What a run measures, kept cheaply: HDR histograms per second and cumulative, per-second
series, and the lost/duplicate audit.

Recording cost. hdrh's `record_value` is pure Python (about 0.6 µs a call measured here; `python -m bench
calibrate` prints it), too much to pay per message on the produce path.
The producer and tracker processes only append raw latencies to a list; once a second the
list travels to the coordinating process, which folds it with `collections.Counter` (C) into
(value, count) pairs at the histogram's resolution (`fold_latencies`) and records each
distinct bucket once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.core.client_stats import client_stats_series, summarize_client_latency
from bench.results.histograms import (
    LATENCY_HIGHEST_US,
    LATENCY_LOWEST_US,
    LATENCY_SIGNIFICANT_FIGURES,
    decode_histogram,
    encode_histogram,
    new_latency_histogram,
    summarize_histogram,
)
from bench.results.metrics import LATENCY_LABELS, LATENCY_SERIES, PER_SECOND_COUNTS, latency_series_key
from bench.results.window import measured_seconds

LATENCY_NAMES = tuple(LATENCY_LABELS)


# Below this many µs the histogram keeps every value; above, a bucket spans 2**k µs
# (2048 sub-buckets per power of two give 3 significant figures).
_EXACT_BELOW_US = 2 ** math.ceil(math.log2(2 * 10**LATENCY_SIGNIFICANT_FIGURES))
_EXACT_BITS = _EXACT_BELOW_US.bit_length() - 1


def fold_latencies(values: Iterable[float], to_us: float = 1) -> Counter[int]:
    """(µs, count) pairs at the histogram's own resolution, ready for `record_counts`.

    Counter (C) folds the raw values first; each distinct value is then rounded down to the
    lowest value of its histogram bucket, so a second of latencies spread over 1-100 ms
    records a few thousand pairs instead of ~100,000 (the histogram is identical: the same
    bucket gets the same count). to_us scales the values: 1e6 for librdkafka's seconds.
    """
    return fold_counts(Counter(values), to_us)


def fold_counts(value_counts: Mapping[float, int], to_us: float = 1) -> Counter[int]:
    """`fold_latencies` for values already folded into (value, count) pairs (`Counter(values)`),
    for a caller that needs those exact pairs too."""
    counts: Counter[int] = Counter()
    for value, count in value_counts.items():
        micros = round(value * to_us)
        if micros >= _EXACT_BELOW_US:
            shift = micros.bit_length() - _EXACT_BITS
            micros = (micros >> shift) << shift
        counts[micros] += count
    return counts


def record_counts(histogram: HdrHistogram, counts: Mapping[int, int]) -> int:
    """Record (µs, count) pairs, clamped to 1 µs .. 1 h (hdrh would drop them silently).

    Below 1 µs is the histogram's resolution (a send delay of 0 is common), recorded as 1 µs;
    above 1 h is a real loss of information, so those samples are counted and returned.
    """
    clamped = 0
    for value, count in counts.items():
        if value < LATENCY_LOWEST_US:
            value = LATENCY_LOWEST_US
        elif value > LATENCY_HIGHEST_US:
            value, clamped = LATENCY_HIGHEST_US, clamped + count
        histogram.record_value(value, count)
    return clamped


class LatencyRecorder:
    """One latency: a histogram per second (for the interval log, the series and the summary over
    the measured window) and the running histogram of every second after warm-up (for the live
    p99 of the progress line).

    Several processes report the same second (one per producer); a second stays open until
    `close_through` says every reporter is past it, then it is encoded and its memory freed
    (an open histogram is ~400 KB; a 10-minute run cannot keep 600 of them).
    """

    def __init__(self, warmup_s: float):
        self.warmup_s = warmup_s
        self.cumulative = new_latency_histogram()
        self.clamped = 0
        self._open: dict[int, HdrHistogram] = {}
        self.intervals: dict[int, str] = {}
        self.interval_stats: dict[int, tuple[int, int, int]] = {}  # second -> p50, p99, max

    def record(self, second: int, counts: Mapping[int, int]) -> None:
        if not counts:
            return
        if second in self.intervals:
            raise ValueError(f"second {second} was already closed")
        histogram = self._open.get(second)
        if histogram is None:
            histogram = self._open[second] = new_latency_histogram()
        self.clamped += record_counts(histogram, counts)

    def add_histogram(self, second: int, histogram: HdrHistogram) -> None:
        """Add a histogram recorded elsewhere (a Locust worker's second, already clamped)."""
        if not histogram.get_total_count():
            return
        if second in self.intervals:
            raise ValueError(f"second {second} was already closed")
        open_histogram = self._open.get(second)
        if open_histogram is None:
            open_histogram = self._open[second] = new_latency_histogram()
        open_histogram.add(histogram)

    def close_through(self, last_second: int) -> None:
        """Seal every open second up to and including last_second."""
        for second in sorted(s for s in self._open if s <= last_second):
            histogram = self._open.pop(second)
            # Second s covers [s, s+1) after start; it is warm-up while it ends within warmup_s.
            if second + 1 > self.warmup_s:
                self.cumulative.add(histogram)
            self.intervals[second] = encode_histogram(histogram)
            by_percentile = histogram.get_percentile_to_value_dict([50.0, 99.0])
            self.interval_stats[second] = (by_percentile[50.0], by_percentile[99.0], histogram.get_max_value())

    def interval_list(self, seconds: int) -> list[str | None]:
        """Encoded histogram of each second 0..seconds-1, None for a second without samples."""
        return [self.intervals.get(second) for second in range(seconds)]

    def summary(self, window: Iterable[int]) -> dict[str, Any]:
        """Count, percentiles and the encoded histogram of the closed seconds in `window` (the
        measured window: every headline figure covers the same seconds)."""
        histogram = new_latency_histogram()
        for second in window:
            encoded = self.intervals.get(second)
            if encoded is not None:
                histogram.add(decode_histogram(encoded))
        return summarize_histogram(histogram)


class RunRecorder:
    """Everything one run measures, fed by per-second reports from producers and tracker."""

    def __init__(self, warmup_s: float):
        self.warmup_s = warmup_s
        self.latency = {name: LatencyRecorder(warmup_s) for name in LATENCY_NAMES}
        self.counts_by_second = {name: Counter() for name in PER_SECOND_COUNTS}
        self.lag_messages: dict[int, int] = {}
        self.lag_by_partition: dict[int, dict[int, int]] = {}
        self.lag_time_ms: dict[int, float] = {}
        # librdkafka's per-broker latency windows per second (failures-only reports).
        self.client_latency: dict[int, list] = {}
        # librdkafka's producer figures per second, one entry per producer that had statistics.
        self.client_stats: dict[int, list] = {}
        self.last_second = -1
        # False for a consume-only run: no "sent" series bounds the measured window.
        self.produced = True

    def add_producer_report(self, second: int, sent: int, acked: int, failed: int,
                            service_s: list[float], response_us: list[int], send_delay_us: list[int]) -> None:
        self._count(second, sent=sent, acked=acked, failed=failed)
        self.latency["service_time"].record(second, fold_latencies(service_s, to_us=1_000_000))
        self.latency["response_time"].record(second, fold_latencies(response_us))
        self.latency["send_delay"].record(second, fold_latencies(send_delay_us))

    def add_commit_latency(self, second: int, commit_us: list[int]) -> None:
        if commit_us:
            self.latency["commit"].record(second, fold_latencies(commit_us))

    def add_client_latency(self, second: int, entries: list) -> None:
        if entries:
            self.client_latency.setdefault(second, []).extend(entries)

    def add_client_stats(self, second: int, figures: Mapping[str, Any] | None) -> None:
        if figures:
            self.client_stats.setdefault(second, []).append(figures)

    def client_latency_summary(self) -> dict[str, Any]:
        """librdkafka's int_latency and rtt over the measured window (bench/core/client_stats.py)."""
        return summarize_client_latency(entry for second in self.measured_window()
                                        for entry in self.client_latency.get(second, ()))

    def add_tracker_report(self, second: int, consumed: int, end_to_end_us: list[int],
                           lag_by_partition: Mapping[int, int] | None, lag_time_ms: float | None) -> None:
        self._count(second, consumed=consumed)
        self.latency["end_to_end"].record(second, fold_latencies(end_to_end_us))
        # Several consumer processes of one group report the partitions each reads: merged.
        if lag_by_partition is not None:
            lags = self.lag_by_partition.setdefault(second, {})
            lags.update(lag_by_partition)
            self.lag_messages[second] = sum(lags.values())
        if lag_time_ms is not None:
            self.lag_time_ms[second] = max(lag_time_ms, self.lag_time_ms.get(second, lag_time_ms))

    def _count(self, second: int, **counts: int) -> None:
        for name, count in counts.items():
            self.counts_by_second[name][second] += count
        self.last_second = max(self.last_second, second)

    def close_through(self, last_second: int) -> None:
        for recorder in self.latency.values():
            recorder.close_through(last_second)

    def totals(self) -> dict[str, int]:
        return {name: sum(counter.values()) for name, counter in self.counts_by_second.items()}

    def seconds(self) -> int:
        return self.last_second + 1

    def measured_window(self) -> list[int]:
        """The seconds every summary figure covers (bench/results/window.py)."""
        sent = self.counts_by_second["sent"]
        return measured_seconds([second + 1 for second in range(self.seconds())], self.warmup_s,
                                [sent.get(second, 0) for second in range(self.seconds())] if self.produced else None)

    def p99_so_far(self, name: str, second: int) -> int | None:
        """The live p99 of a latency: over every measured second so far; while still in
        warm-up (nothing measured yet) the p99 of the given second alone."""
        recorder = self.latency[name]
        if recorder.cumulative.get_total_count():
            return recorder.cumulative.get_value_at_percentile(99.0)
        stats = recorder.interval_stats.get(second)
        return stats[1] if stats else None

    def series(self) -> dict[str, Any]:
        """Per-second series as docs/result-format.md lists them (t_s = end of the second)."""
        seconds = range(self.seconds())
        series: dict[str, Any] = {"t_s": [second + 1 for second in seconds]}
        for name, counter in self.counts_by_second.items():
            series[name] = [counter.get(second, 0) for second in seconds]
        for name, stats in LATENCY_SERIES.items():
            interval_stats = self.latency[name].interval_stats
            for stat in stats:
                position = {"p50": 0, "p99": 1, "max": 2}[stat]
                series[latency_series_key(name, stat)] = [
                    interval_stats[second][position] if second in interval_stats else None for second in seconds
                ]
        series["lag_messages"] = [self.lag_messages.get(second) for second in seconds]
        partitions = sorted({p for lags in self.lag_by_partition.values() for p in lags})
        series["lag_messages_by_partition"] = {
            str(partition): [self.lag_by_partition.get(second, {}).get(partition) for second in seconds]
            for partition in partitions
        }
        series["lag_time_ms"] = [self.lag_time_ms.get(second) for second in seconds]
        if self.client_stats:
            series.update(client_stats_series(self.client_stats, self.seconds()))
        return series
