"""The metric table: every figure a result holds, defined once.

A metric's name, label, unit, where result.json keeps it, which way is worse, its per-second
series and the window it covers live here and nowhere else. Plots, reports, compare, the
threshold syntax (`--check`, `--slo`), progress lines, the Locust log and the `.hlog` file names
all take them from this table (`tests/test_metrics.py` greps the code for stray names).

Windows (docs/measurement.md says the same in prose):
- MEASURED: the seconds after warm-up, up to but not including the last second with sends (a
  partial second) and the drain after it. Every headline figure (throughput, latency
  percentiles, maximum lag) covers this window, in the summary, the report, compare and the gate.
- WHOLE_RUN: from the first send to the end of the drain; the counts and the audit, which must
  account for every message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MEASURED = "measured window (after warm-up, before the last partial second and the drain)"
WHOLE_RUN = "whole run (first send to the end of the drain)"

# The latencies a result can hold (result["latency_us"] keys): label and the span it measures.
LATENCY_LABELS = {
    "service_time": ("service time", "send -> ack"),
    "response_time": ("response time", "intended send -> ack"),
    "send_delay": ("send delay", "actual - intended send"),
    "end_to_end": ("end-to-end", "send -> consumed"),
    # Transactions: the producer's commit_transaction() call, after a flush (EndTxn and markers).
    "commit": ("commit latency", "commit_transaction() call"),
}
# The latencies drawn as distributions and kept as interval logs (send delay is a diagnostic).
PLOTTED_LATENCIES = ("service_time", "response_time", "end_to_end")
# Latencies written as `<name>.hlog` beside result.json (one interval per second).
HLOG_LATENCIES = ("service_time", "end_to_end")

# librdkafka's own latency figures (result["client_latency_us"], failures-only delivery reports):
# statistics window -> label and the span it measures. Per broker and statistics interval;
# bench/core/client_stats.py summarizes them.
CLIENT_LATENCY_LABELS = {
    "int_latency": ("librdkafka queue latency (int_latency)", "produce() -> request built"),
    "rtt": ("librdkafka request round trip (rtt)", "request sent -> response"),
}
CLIENT_LATENCY_WINDOW = (f"{MEASURED}; from librdkafka's 1 s statistics intervals per broker: avg weighted by samples, "
                         "p50 and p99 of the worst interval, max over all")

# Keys of a latency summary, in order, with the percentile each one reads.
SUMMARY_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99}
LATENCY_STATISTICS = (*SUMMARY_PERCENTILES, "max", "mean")

# Counts of result["counts"], each with what it counts (over the WHOLE_RUN window).
COUNTS = {
    "sent": "messages handed to the client",
    "acked": "messages the broker acknowledged",
    "failed": "deliveries that failed",
    "consumed": "messages the tracker consumed",
    "lost": "orders acked but never consumed",
    "duplicated": "orders consumed more than once",
    "malformed": "consumed values that were not orders",
    "broker_offset_delta": "records the topic gained, by the broker's offsets",
}
# Fan-out (result["groups"], one entry per consumer group, bench/core/groups.py): key -> what it holds.
GROUP_FIGURES = {
    "consumed": "messages the group's consumer processes consumed (whole run)",
    "lost": "acked orders no process of the group consumed",
    "duplicated": "orders the group consumed more than once, by one process or by two",
    "end_to_end_us": "the group's end-to-end latency summary (measured window)",
    "lag_max_messages": "the group's largest per-second lag (measured window)",
    "lag_messages": "the group's lag per second, its processes' partitions summed",
    "consumed_per_s": "one consumer process's consumed msg/s (measured window)",
}
# The worst group's figure of a fan-out run (the headline lost and duplicated are the worst
# group's too; consumed, end-to-end latency and lag are group 0's).
WORST_GROUP = "each consumer group; the worst of them"

# A backlog run (result["backlog"], bench/core/backlog.py): the window each of its figures covers.
CATCH_UP = "catch-up window (the consumers' start to the end of the first second whose lag is back within the steady band)"
BACKLOG_WINDOWS = {
    "build": "the first send until every producer's share of the backlog was delivered (consumers paused)",
    "catch_up": CATCH_UP,
    "not_caught_up": "the consumers' start to the end of the last whole producing second (the lag never came back "
                     "to its steady band)",
    "steady": "steady window (the last third, at least 2 s, of the whole producing seconds after the consumers' "
              "start): steady lag = median of its lag samples, band = their maximum",
    "measured": f"{MEASURED}; warm-up counted from the first whole second after the consumers' start",
}

# Counts produced by the producer and tracker each second (result["series"] keys, msg/s).
PER_SECOND_COUNTS = ("sent", "acked", "failed", "consumed")

# Per-second series of result["series"] (t_s is the end of each second): key -> (label, unit).
SERIES = {
    **{name: (f"{name} per second", "msg/s") for name in PER_SECOND_COUNTS},
    "service_time_p50_us": ("service time p50 per second", "µs"),
    "service_time_p99_us": ("service time p99 per second", "µs"),
    "service_time_max_us": ("service time max per second", "µs"),
    "response_time_p99_us": ("response time p99 per second", "µs"),
    "end_to_end_p50_us": ("end-to-end p50 per second", "µs"),
    "end_to_end_p99_us": ("end-to-end p99 per second", "µs"),
    "end_to_end_max_us": ("end-to-end max per second", "µs"),
    "lag_messages": ("consumer lag", "messages"),
    "lag_time_ms": ("consumer time lag", "ms"),
    "host_cpu_percent": ("host CPU", "% of all cores"),
    # Part of host CPU: time the hypervisor gave this machine's virtual CPUs to other guests.
    "host_steal_percent": ("host CPU stolen by the hypervisor (steal)", "% of all cores"),
    # librdkafka's statistics, the newest interval of each second (bench/core/client_stats.py):
    # summed or averaged over producers, the slowest producer's round trip.
    "client_queue_messages": ("librdkafka queue depth (msg_cnt)", "messages"),
    "client_retries": ("librdkafka retries (txretries)", "per second"),
    "client_batch_bytes_avg": ("librdkafka batch size avg (batchsize)", "bytes"),
    "client_batch_messages_avg": ("librdkafka messages per batch avg (batchcnt)", "messages"),
    "client_rtt_avg_us": ("librdkafka broker round trip avg (rtt)", "µs"),
    "client_rtt_p99_us": ("librdkafka broker round trip p99 (rtt)", "µs"),
}
# Resources sampled once a second by the coordinator (bench/core/resources.py), kept in
# result["series"] beside the other per-second series: key -> (label, unit). The *_by_process
# series are {process name: [...]} (producer-0, tracker, coordinator, broker-node1, ...).
RESOURCE_SERIES = {
    "host_cpu_percent": SERIES["host_cpu_percent"],
    "host_steal_percent": SERIES["host_steal_percent"],
    "cpu_percent_by_process": ("CPU", "% of one core"),
    "main_thread_cpu_percent_by_process": ("main thread CPU", "% of one core"),
    "main_thread_wait_percent_by_process": ("main thread waiting for a CPU", "% of the time"),
    "rss_mb_by_process": ("RSS", "MB"),
}
# The broker's own metrics, read once a second from its Prometheus endpoint (the JMX exporter the
# harness attaches to each embedded node, or --broker-metrics-url): key -> (label, unit). In
# result["series"] each is `<key>_by_node`, {node name: [...]} (broker-node1, ...), beside the
# resource series (bench/analysis/broker_metrics.py says what each Kafka metric is).
BROKER_METRIC_SERIES = {
    "broker_bytes_in_per_s": ("broker bytes in (BytesInPerSec)", "bytes/s"),
    "broker_bytes_out_per_s": ("broker bytes out (BytesOutPerSec)", "bytes/s"),
    "broker_messages_in_per_s": ("broker messages in (MessagesInPerSec)", "msg/s"),
    "broker_request_handler_idle_percent": ("request handler idle (RequestHandlerAvgIdlePercent)", "% of the time"),
    "broker_network_processor_idle_percent": ("network processor idle (NetworkProcessorAvgIdlePercent, Kafka's window)",
                                              "% of the time"),
    "broker_produce_total_time_p50_ms": ("produce request total time p50 (TotalTimeMs, Kafka's recent sample)", "ms"),
    "broker_produce_total_time_p99_ms": ("produce request total time p99 (TotalTimeMs, Kafka's recent sample)", "ms"),
    "broker_under_replicated_partitions": ("under-replicated partitions (UnderReplicatedPartitions)", "partitions"),
}
BROKER_METRICS_WINDOW = f"{MEASURED}; the broker's own metrics, scraped once a second by the coordinating process"


def broker_series_key(key: str) -> str:
    """The result["series"] key of a broker metric: one list per node."""
    return f"{key}_by_node"


# The roles a watched process plays; result["resources"]["summary"] has one entry per role (the
# busiest process of the role) and "host".
RESOURCE_ROLES = ("producer", "tracker", "coordinator", "broker")
RESOURCE_WINDOW = f"{MEASURED}; sampled once a second by the coordinating process (psutil)"
# Smallest CPU (percentage points) and RSS (MB) change that can be a regression.
CPU_FLOOR = 5.0
RSS_FLOOR_MB = 50.0

# The per-second latency statistics in SERIES: latency -> statistics.
LATENCY_SERIES = {"service_time": ("p50", "p99", "max"), "response_time": ("p99",), "end_to_end": ("p50", "p99", "max")}


def latency_series_key(kind: str, statistic: str) -> str:
    return f"{kind}_{statistic}_us"


def latency_title(kind: str) -> str:
    """"service time (send -> ack)": the name with the span it measures."""
    name, span = LATENCY_LABELS[kind]
    return f"{name} ({span})"


# In a metric's path: every item of the list there, the worst of them counts.
EACH = "*"
# A fault run's figures per fault (result["failover"]["faults"], bench/analysis/failover.py).
FAULT_WINDOW = ("each fault's window (its start to the end of the longest gap it caused); "
                "the worst over the run's faults")


# A run's consumer events (result["rebalances"]["events"], bench/analysis/rebalance.py).
REBALANCE_WINDOW = ("each consumer event's window (the event to its group's next event or the end of the run); "
                    "the worst over the run's events")


@dataclass(frozen=True)
class Metric:
    """One figure of a result: where it is kept and how to read and judge it."""

    name: str
    label: str
    unit: str  # "µs" for latencies
    worse_when: str  # "higher" or "lower"
    path: tuple[str, ...]  # keys into result.json
    window: str
    series_key: str | None = None  # the per-second series a significance test uses
    floor: float = 0.0  # smallest absolute change (in `unit`) that can be a regression

    def read(self, result: Mapping[str, Any]) -> float | None:
        return _read(result, self.path, self.worse_when)


def _read(value: Any, path: tuple[str, ...], worse_when: str) -> float | None:
    """The number at `path`; EACH in the path reads every item of a list there and keeps the
    worst (a fault run's longest gap over its faults), None when no item has the figure."""
    for index, key in enumerate(path):
        if key == EACH:
            if not isinstance(value, list):
                return None
            found = [v for item in value if (v := _read(item, path[index + 1:], worse_when)) is not None]
            return (max if worse_when == "higher" else min)(found) if found else None
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# Smallest latency change that can be a regression: sub-millisecond noise never fails a build.
LATENCY_FLOOR_US = 1_000
# Smallest lag change that can be a regression (messages, ms).
LAG_FLOOR = 100.0


def _build() -> dict[str, Metric]:
    metrics = [
        Metric("throughput", "throughput (acked)", "msg/s", "lower", ("throughput", "acked_per_s"), MEASURED, "acked"),
        Metric("throughput_mb", "throughput (acked payload)", "MB/s", "lower", ("throughput", "acked_mb_s"), MEASURED),
        Metric("consumed_throughput", "throughput (consumed)", "msg/s", "lower", ("throughput", "consumed_per_s"),
               MEASURED, "consumed"),
        Metric("lag_max", "consumer lag max", "messages", "higher", ("lag", "max_messages"), MEASURED,
               "lag_messages", LAG_FLOOR),
        Metric("lag_time_max", "consumer time lag max", "ms", "higher", ("lag", "max_time_ms"), MEASURED,
               "lag_time_ms", LAG_FLOOR),
        # How unevenly the keys spread the records: the busiest partition over the mean (1 = even).
        Metric("partition_skew", "partition skew (busiest / mean, consumed)", "ratio", "higher", ("partitions", "skew"),
               WHOLE_RUN),
    ]
    metrics += [Metric(name, name, "messages", "higher" if name in ("failed", "lost", "duplicated", "malformed") else "lower",
                       ("counts", name), WHOLE_RUN) for name in COUNTS]
    metrics += [
        Metric("longest_ack_gap", "longest ack gap", "ms", "higher",
               ("failover", "faults", EACH, "longest_ack_gap_ms"), FAULT_WINDOW),
        Metric("longest_consume_gap", "longest consume gap", "ms", "higher",
               ("failover", "faults", EACH, "longest_consume_gap_ms"), FAULT_WINDOW),
        Metric("new_leader", "new leader after", "ms", "higher",
               ("failover", "faults", EACH, "new_leader_ms"), FAULT_WINDOW),
    ]
    metrics += [
        Metric("rebalance_pause", "rebalance pause (group read nothing)", "ms", "higher",
               ("rebalances", "events", EACH, "pause_ms"), REBALANCE_WINDOW),
        Metric("rebalance_partition_pause", "rebalance pause (longest of one partition)", "ms", "higher",
               ("rebalances", "events", EACH, "partition_pause_max_ms"), REBALANCE_WINDOW),
        Metric("rebalance_lag_peak", "rebalance lag peak", "messages", "higher",
               ("rebalances", "events", EACH, "lag_peak_messages"), REBALANCE_WINDOW, None, LAG_FLOOR),
        Metric("rebalance_recover", "rebalance time to recover (lag back to its level before)", "s", "higher",
               ("rebalances", "events", EACH, "recover_s"), REBALANCE_WINDOW),
        Metric("rebalance_duplicated", "rebalance duplicates (read again)", "messages", "higher",
               ("rebalances", "events", EACH, "duplicated"), REBALANCE_WINDOW),
    ]
    for kind, (label, _span) in LATENCY_LABELS.items():
        for statistic in LATENCY_STATISTICS:
            series = latency_series_key(kind, statistic) if statistic in LATENCY_SERIES.get(kind, ()) else None
            metrics.append(Metric(f"{kind}_{statistic}", f"{label} {statistic.replace('_', '.')}", "µs", "higher",
                                  ("latency_us", kind, statistic), MEASURED, series, LATENCY_FLOOR_US))
    for window, (label, _span) in CLIENT_LATENCY_LABELS.items():
        for statistic in ("avg", "p50", "p99", "max"):
            metrics.append(Metric(f"{window}_{statistic}", f"{label} {statistic}", "µs", "higher",
                                  ("client_latency_us", window, statistic), CLIENT_LATENCY_WINDOW, None, LATENCY_FLOOR_US))
    metrics += [
        Metric("group_lost", "lost (worst group)", "messages", "higher", ("groups", EACH, "lost"), WORST_GROUP),
        Metric("group_duplicated", "duplicated (worst group)", "messages", "higher", ("groups", EACH, "duplicated"),
               WORST_GROUP),
        Metric("group_end_to_end_p99", f"{LATENCY_LABELS['end_to_end'][0]} p99 (worst group)", "µs", "higher",
               ("groups", EACH, "end_to_end_us", "p99"), f"{MEASURED}; {WORST_GROUP}", None, LATENCY_FLOOR_US),
        Metric("group_lag_max", "consumer lag max (worst group)", "messages", "higher", ("groups", EACH, "lag_max_messages"),
               f"{MEASURED}; {WORST_GROUP}", None, LAG_FLOOR),
        Metric("consumer_throughput_min", "throughput (consumed, slowest consumer process)", "msg/s", "lower",
               ("groups", EACH, "consumers", EACH, "consumed_per_s"), f"{MEASURED}; each consumer process, the slowest"),
    ]
    metrics += [
        Metric("backlog_drain_rate", "drain rate (consumed while catching up)", "msg/s", "lower",
               ("backlog", "drain_per_s"), CATCH_UP),
        Metric("backlog_drain_mb", "drain rate (consumed value bytes while catching up)", "MB/s", "lower",
               ("backlog", "drain_mb_s"), CATCH_UP),
        Metric("backlog_time_to_steady", "time until the lag is back at its steady level", "s", "higher",
               ("backlog", "time_to_steady_s"), CATCH_UP),
        *(Metric(f"backlog_end_to_end_{statistic}", f"{LATENCY_LABELS['end_to_end'][0]} {statistic} while catching up",
                 "µs", "higher", ("backlog", "end_to_end_us", statistic), CATCH_UP, None, LATENCY_FLOOR_US)
          for statistic in ("p50", "p99", "max")),
    ]
    metrics.append(Metric("host_cpu_percent", "host CPU mean", "% of all cores", "higher",
                          ("resources", "summary", "host", "cpu_percent_mean"), RESOURCE_WINDOW, None, CPU_FLOOR))
    metrics.append(Metric("host_steal_percent", "host CPU stolen by the hypervisor mean (steal)", "% of all cores",
                          "higher", ("resources", "summary", "host", "steal_percent_mean"), RESOURCE_WINDOW, None,
                          CPU_FLOOR))
    for role in RESOURCE_ROLES:
        metrics += [
            Metric(f"{role}_cpu_percent", f"{role} CPU mean (busiest {role} process)", "% of one core", "higher",
                   ("resources", "summary", role, "cpu_percent_mean"), RESOURCE_WINDOW, None, CPU_FLOOR),
            Metric(f"{role}_rss_mb", f"{role} RSS max (largest {role} process)", "MB", "higher",
                   ("resources", "summary", role, "rss_mb_max"), RESOURCE_WINDOW, None, RSS_FLOOR_MB)]
    metrics += [
        Metric("broker_bytes_in_per_s", "broker bytes in mean (all nodes)", "bytes/s", "lower",
               ("resources", "broker_metrics", "summary", "bytes_in_per_s_mean"), BROKER_METRICS_WINDOW),
        Metric("broker_request_handler_idle_percent", "broker request handler idle mean (least idle node)",
               "% of the time", "lower", ("resources", "broker_metrics", "summary", "request_handler_idle_percent_mean"),
               BROKER_METRICS_WINDOW, None, CPU_FLOOR)]
    metrics.append(Metric("producer_main_thread_cpu_percent", "producer main thread CPU mean (busiest producer)",
                          "% of one core", "higher", ("resources", "summary", "producer", "main_thread_cpu_percent_mean"),
                          RESOURCE_WINDOW, None, CPU_FLOOR))
    return {metric.name: metric for metric in metrics}


METRICS = _build()
