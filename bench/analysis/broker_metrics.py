"""The broker's own metrics, from the Prometheus text format its JMX exporter serves, turned into
the per-second figures of a run (pure: text and numbers in, numbers out).

The names are those of the JMX exporter's standard Kafka config (bench/broker/exporter.py writes
the same for the embedded broker). What each one is in Kafka:
- BytesInPerSec, BytesOutPerSec, MessagesInPerSec: meters whose cumulative `Count` is exported as
  a counter; the broker-wide one has no `topic` label. A counter's rate over the second between
  two scrapes is the figure; a counter that went down (the node restarted) gives no figure.
- RequestHandlerAvgIdlePercent: a meter marked with each handler thread's idle nanoseconds
  divided by the number of threads, so its count grows by 1e9 a second when every handler idles:
  the rate over a second, / 1e9, is the share of that second the handlers were idle.
- NetworkProcessorAvgIdlePercent: a gauge, 0..1, Kafka's own average over its metrics window
  (not this second alone).
- TotalTimeMs of Produce requests: Kafka's percentiles (a reservoir that favours the last
  minutes, not this second alone).
- UnderReplicatedPartitions: a gauge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.results.metrics import BROKER_METRIC_SERIES
from bench.results.window import rounded_mean

NS_PER_S = 1e9
# Exposition sample name (and the labels it must carry) -> the raw figure kept from a scrape.
# Counters appear with `_total` added by newer exporters and without it in older ones.
_COUNTERS = {
    "kafka_server_brokertopicmetrics_bytesin_total": "bytes_in",
    "kafka_server_brokertopicmetrics_bytesout_total": "bytes_out",
    "kafka_server_brokertopicmetrics_messagesin_total": "messages_in",
    "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_count_total": "handler_idle_ns",
    "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_count": "handler_idle_ns",
}
_GAUGES = {
    "kafka_network_socketserver_networkprocessoravgidlepercent": "network_idle_ratio",
    "kafka_server_replicamanager_underreplicatedpartitions": "under_replicated",
}
_PRODUCE_TIME = "kafka_network_requestmetrics_totaltimems"
_QUANTILES = {0.5: "produce_p50_ms", 0.99: "produce_p99_ms"}
# The names a scrape asks for (`name[]=`): the exporter then skips its other collectors' output.
SCRAPED_NAMES = (*_COUNTERS, *_GAUGES, _PRODUCE_TIME)

# Raw figure -> series key (bench/results/metrics.py BROKER_METRIC_SERIES) it becomes.
_RATES = {"bytes_in": "broker_bytes_in_per_s", "bytes_out": "broker_bytes_out_per_s",
          "messages_in": "broker_messages_in_per_s"}
_AS_IS = {"produce_p50_ms": "broker_produce_total_time_p50_ms", "produce_p99_ms": "broker_produce_total_time_p99_ms",
          "under_replicated": "broker_under_replicated_partitions"}


def parse_exposition(text: str) -> dict[str, float]:
    """The raw figures of one scrape (missing ones are absent). Per-topic and per-partition
    samples of the same names are left out: the broker-wide figure has no such label."""
    raw: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {key.lower(): value for key, value in sample.labels.items()}
            if "topic" in labels or "partition" in labels:
                continue
            if sample.name in _COUNTERS:
                raw[_COUNTERS[sample.name]] = float(sample.value)
            elif sample.name in _GAUGES:
                raw[_GAUGES[sample.name]] = float(sample.value)
            elif sample.name == _PRODUCE_TIME and labels.get("request", "").lower() == "produce":
                quantile = _QUANTILES.get(round(float(labels.get("quantile", "nan")), 4))
                if quantile is not None:
                    raw[quantile] = float(sample.value)
    return raw


def _rate(before: Mapping[str, float] | None, after: Mapping[str, float], key: str, elapsed_s: float) -> float | None:
    if before is None or key not in before or key not in after or elapsed_s <= 0 or after[key] < before[key]:
        return None
    return (after[key] - before[key]) / elapsed_s


def counter_growth(first: Mapping[str, float] | None, last: Mapping[str, float] | None, key: str) -> float | None:
    """How much a counter grew from the first scrape to the last (None: not in both, or it went
    down, a node restarted in between)."""
    if not first or not last or key not in first or key not in last or last[key] < first[key]:
        return None
    return last[key] - first[key]


def per_second(before: Mapping[str, float] | None, after: Mapping[str, float] | None,
               elapsed_s: float) -> dict[str, float | None]:
    """One second's figures (BROKER_METRIC_SERIES keys) from two scrapes elapsed_s apart (before
    None: the first scrape, so no rates yet; after None: the scrape failed, nothing)."""
    figures: dict[str, float | None] = dict.fromkeys(BROKER_METRIC_SERIES)
    if after is None:
        return figures
    for raw, key in _RATES.items():
        rate = _rate(before, after, raw, elapsed_s)
        figures[key] = None if rate is None else round(rate, 1)
    idle = _rate(before, after, "handler_idle_ns", elapsed_s)
    # Scrapes a few ms off their second put a fully idle pool slightly above 100 %.
    figures["broker_request_handler_idle_percent"] = None if idle is None else round(min(100.0, 100.0 * idle / NS_PER_S), 1)
    network = after.get("network_idle_ratio")
    figures["broker_network_processor_idle_percent"] = None if network is None else round(100.0 * network, 1)
    for raw, key in _AS_IS.items():
        figures[key] = None if after.get(raw) is None else round(after[raw], 2)
    return figures


def node_summary(series: Mapping[str, Any], node: str, window: Sequence[int]) -> dict[str, Any]:
    """A node's figures over the measured window: means, the handlers' least idle second, the
    most under-replicated partitions, and the bytes in summed over the window."""
    def values(key: str) -> list[float]:
        column = (series.get(f"{key}_by_node") or {}).get(node) or []
        return [column[i] for i in window if i < len(column) and column[i] is not None]

    bytes_in = values("broker_bytes_in_per_s")
    idle = values("broker_request_handler_idle_percent")
    under = values("broker_under_replicated_partitions")
    return {
        "bytes_in_per_s_mean": rounded_mean(bytes_in), "bytes_out_per_s_mean": rounded_mean(values("broker_bytes_out_per_s")),
        "messages_in_per_s_mean": rounded_mean(values("broker_messages_in_per_s")),
        "bytes_in_window": round(sum(bytes_in)) if bytes_in else None, "seconds": len(bytes_in),
        "request_handler_idle_percent_mean": rounded_mean(idle), "request_handler_idle_percent_min": min(idle, default=None),
        "network_processor_idle_percent_mean": rounded_mean(values("broker_network_processor_idle_percent")),
        "produce_total_time_p99_ms_max": max(values("broker_produce_total_time_p99_ms"), default=None),
        "under_replicated_partitions_max": max(under, default=None),
    }
