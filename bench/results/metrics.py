"""The metric vocabulary: each latency a result can hold, its label, and the percentiles a summary
reads. Everything that names a latency (plots, reports, compare, thresholds, progress, `.hlog`
file names) takes the name from here."""

from __future__ import annotations

# The latencies a result can hold (result["latency_us"] keys): short name and what it spans.
LATENCY_LABELS = {
    "service_time": ("service time", "send -> ack"),
    "response_time": ("response time", "intended send -> ack"),
    "send_delay": ("send delay", "actual - intended send"),
    "end_to_end": ("end-to-end", "send -> consumed"),
}


def latency_title(kind: str) -> str:
    """"service time (send -> ack)": the name with the span it measures."""
    name, span = LATENCY_LABELS[kind]
    return f"{name} ({span})"


# Keys of the summary dict, in order, with the percentile each one reads.
SUMMARY_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99}
