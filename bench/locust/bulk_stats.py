"""Locust's request statistics fed in bulk: one update per closed second of deliveries instead
of one `request` event per message.

Firing Locust's request event for every delivery cost a worker about 45 % of its CPU at full
speed (the event, then `StatsEntry.log` twice: the entry and the total). `log_deliveries` makes
the same changes to Locust's `RequestStats` as that many `log_request` calls (each delivery's
response time in ms, librdkafka's latency) plus, per failed delivery, a `log_request` without a
response time and a `log_error` — the state Locust's console, web UI, CSV files and the worker
-> master reports read: `num_requests`, `num_none_requests`, `num_failures`,
`total_response_time`, `min_response_time`, `max_response_time`, `response_times` (bucketed
by `locust.stats.bucket_response_time`, looked up at call time so a replaced bucketing is
honoured), `num_reqs_per_sec`, `num_fail_per_sec`, `last_request_timestamp`,
`total_content_length`, the response-times cache of the master's entries, and `errors`.

These are Locust internals (locust 2.x `StatsEntry`/`StatsError`), not an API; the test
`tests/test_locust.py::test_bulk_stats_equal_locust_own_logging` logs the same deliveries
through Locust's own `log_request`/`log_error` and through this, and fails when they differ.
Every delivery of a second is logged at the one time of the call (the second's close).
Listeners of Locust's `request` event no longer see Kafka deliveries.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping

import locust.stats
from locust.stats import RequestStats, StatsEntry, StatsError

MS_PER_S = 1000.0


def log_deliveries(stats: RequestStats, method: str, name: str, latency_counts: Mapping[float, int],
                   errors: Mapping[str, int], content_length: int, now: float | None = None) -> None:
    """Log acked deliveries and failed ones (error text -> count) as Locust requests of
    `method`/`name`, each of `content_length` bytes. latency_counts: librdkafka latency (s) ->
    deliveries with it, i.e. `Counter(latencies)`, folded once by the caller for this and its
    HDR histogram alike (librdkafka's latencies are whole µs, so a second has few distinct ones)."""
    failed = sum(errors.values())
    requests = sum(latency_counts.values()) + failed
    if not requests:
        return
    now = time.time() if now is None else now
    buckets: Counter[int] = Counter()
    total_ms = 0.0
    bucket = locust.stats.bucket_response_time
    for latency_s, count in latency_counts.items():
        response_ms = latency_s * MS_PER_S
        buckets[bucket(response_ms)] += count
        total_ms += response_ms * count
    extremes = (min(latency_counts) * MS_PER_S, max(latency_counts) * MS_PER_S) if latency_counts else None
    for entry in (stats.total, stats.entries[(name, method)]):
        _log_entry(entry, now, requests, failed, total_ms, extremes, buckets, content_length * requests)
    for text, count in errors.items():
        key = StatsError.create_key(method, name, text)
        error = stats.errors.get(key)
        if error is None:
            error = stats.errors[key] = StatsError(method, name, text)
        error.occurred()  # first_seen/last_seen as Locust sets them
        error.occurrences += count - 1


def _log_entry(entry: StatsEntry, now: float, requests: int, failed: int, total_ms: float,
               extremes: tuple[float, float] | None, buckets: Mapping[int, int], content_length: int) -> None:
    second = int(now)
    # As StatsEntry.log: the master's entries keep a copy of the distribution per second.
    if entry.use_response_times_cache and entry.last_request_timestamp and second > int(entry.last_request_timestamp):
        entry._cache_response_times(second - 1)
    entry.num_requests += requests
    entry.num_none_requests += failed
    entry.num_reqs_per_sec[second] += requests
    entry.last_request_timestamp = now
    entry.total_content_length += content_length
    if extremes is not None:
        low, high = extremes
        entry.total_response_time += total_ms
        entry.min_response_time = low if entry.min_response_time is None else min(entry.min_response_time, low)
        entry.max_response_time = max(entry.max_response_time, high)
        for key, count in buckets.items():
            entry.response_times[key] += count
    if failed:
        entry.num_failures += failed
        entry.num_fail_per_sec[second] += failed
