"""Kafka's own Java tools as a peer (pure: no processes, no I/O): the Java producer settings that
match a scenario, the JVM heap a tool needs, and the parsing of what the tools print.

The tools are `org.apache.kafka.tools.ProducerPerformance` (kafka-producer-perf-test) and
`org.apache.kafka.tools.EndToEndLatency` from the kafka-tools jar of the broker's Kafka version.
`bench/peers/java.py` runs them; docs/performance.md says what maps to what and what differs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from bench.core.scenario import Scenario

PRODUCER_PERFORMANCE = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERFORMANCE = "org.apache.kafka.tools.ConsumerPerformance"
END_TO_END_LATENCY = "org.apache.kafka.tools.EndToEndLatency"

# librdkafka's codec names are the Java client's, "none" included; levels have one key per codec.
JAVA_LEVEL_KEYS = {"gzip": "compression.gzip.level", "lz4": "compression.lz4.level", "zstd": "compression.zstd.level"}

# JVM heap: the tool's own objects plus what each message costs. EndToEndLatency holds, per
# message, the value it built, the producer's batch, the consumer's fetch buffer, the received
# value and two Strings of both for its comparison: seven copies at most (1 GB: -Xmx7.5g).
TOOL_BASE_HEAP_BYTES = 512 * 1024**2
END_TO_END_COPIES = 7
# A socket write or read of a heap buffer goes through a temporary direct buffer of its size.
DIRECT_MEMORY_COPIES = 2

_PP_TOTAL = re.compile(
    r"(?P<records>\d+) records sent, (?P<rate>[\d.]+) records/sec \((?P<mb>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99\.9th\."
)
_E2E_FIRST = re.compile(r"^0\t(?P<ms>[\d.]+)$", re.MULTILINE)
_E2E_AVG = re.compile(r"^Avg latency: (?P<ms>[\d.]+) ms$", re.MULTILINE)
_E2E_PERCENTILES = re.compile(r"^Percentiles: 50th = (?P<p50>\d+), 99th = (?P<p99>\d+), 99\.9th = (?P<p999>\d+)$",
                              re.MULTILINE)
# Lines worth showing when a tool fails: the exception (Kafka's or the JVM's) or a log error.
_FAILURE_LINE = re.compile(r"(Exception|Error|ERROR|error:|timed out|USAGE)")


class JavaOutputError(ValueError):
    """The tool's output lacks the figures (it failed, or printed something this parser does not know)."""


def java_bool(value: bool) -> str:
    return "true" if value else "false"


def producer_performance_properties(scenario: Scenario, bootstrap_servers: str) -> dict[str, str]:
    """The Java producer settings that match the scenario's librdkafka producer.

    Mapped: acks, compression (and level), linger, batch size, idempotence. Left at the Java
    client's defaults, and said so in docs/performance.md: max.in.flight (5 vs librdkafka's
    1,000,000) and buffer.memory (32 MiB vs librdkafka's 1 GiB queue).
    """
    properties = {
        "bootstrap.servers": bootstrap_servers,
        "acks": scenario.acks,
        "compression.type": scenario.compression,
        # The Java client takes whole milliseconds.
        "linger.ms": str(math.ceil(scenario.linger_ms)),
        "batch.size": str(scenario.batch_size),
        # The Java client turns idempotence on by default, librdkafka off: say it either way.
        "enable.idempotence": java_bool(scenario.idempotence),
    }
    if scenario.compression in JAVA_LEVEL_KEYS and scenario.compression_level != -1:
        properties[JAVA_LEVEL_KEYS[scenario.compression]] = str(scenario.compression_level)
    return properties


def end_to_end_properties(size_bytes: int, compression: str, level: int, max_request_bytes: int,
                          timeout_s: float) -> dict[str, str]:
    """Settings for EndToEndLatency's producer and consumer (one file serves both; each ignores
    the other's keys). The tool itself sets acks, linger.ms=0 and the consumer's group."""
    timeout_ms = str(math.ceil(timeout_s * 1000))
    properties = {
        "compression.type": compression,
        # The Java producer refuses a request above 1 MiB by default: allow the broker's limit.
        "max.request.size": str(max_request_bytes),
        # One message must fit in the producer's buffer (default 32 MiB).
        "buffer.memory": str(max(32 * 1024**2, size_bytes + 1024**2)),
        # A large message on a busy machine takes longer than the 30 s default.
        "request.timeout.ms": timeout_ms,
        "delivery.timeout.ms": timeout_ms,
        # The consumer must take the whole message in one fetch.
        "max.partition.fetch.bytes": str(max_request_bytes),
        "fetch.max.bytes": str(max_request_bytes),
    }
    if compression in JAVA_LEVEL_KEYS and level != -1:
        properties[JAVA_LEVEL_KEYS[compression]] = str(level)
    return properties


def end_to_end_heap_options(size_bytes: int) -> list[str]:
    heap_mb = (TOOL_BASE_HEAP_BYTES + END_TO_END_COPIES * size_bytes) // 1024**2 + 1
    direct_mb = (TOOL_BASE_HEAP_BYTES + DIRECT_MEMORY_COPIES * size_bytes) // 1024**2 + 1
    return [f"-Xmx{heap_mb}m", f"-XX:MaxDirectMemorySize={direct_mb}m"]


def properties_text(properties: Mapping[str, str]) -> str:
    """A Java .properties file (values here never need escaping: numbers, names, host:port)."""
    return "".join(f"{key}={value}\n" for key, value in properties.items())


@dataclasses.dataclass(frozen=True)
class ProducerPerformanceFigures:
    """ProducerPerformance's final line: records acked over (first send -> producer closed)."""

    records: int
    records_per_s: float
    mb_per_s: float
    avg_latency_ms: float
    max_latency_ms: float
    # Whole milliseconds, from the tool's sample of latencies.
    p50_ms: int
    p95_ms: int
    p99_ms: int
    p99_9_ms: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_producer_performance(stdout: str) -> ProducerPerformanceFigures:
    matches = list(_PP_TOTAL.finditer(stdout))
    if not matches:
        raise JavaOutputError("ProducerPerformance printed no final summary line")
    found = matches[-1]
    return ProducerPerformanceFigures(
        records=int(found["records"]), records_per_s=float(found["rate"]), mb_per_s=float(found["mb"]),
        avg_latency_ms=float(found["avg"]), max_latency_ms=float(found["max"]), p50_ms=int(found["p50"]),
        p95_ms=int(found["p95"]), p99_ms=int(found["p99"]), p99_9_ms=int(found["p999"]))


@dataclasses.dataclass(frozen=True)
class EndToEndFigures:
    """EndToEndLatency over `messages` messages, one in flight: send, wait for the ack, poll until
    the message is back. The first message also pays for metadata and connections, so the figure
    compared is the mean of the others (the tool prints message 0's time and the mean of all)."""

    messages: int
    first_ms: float
    mean_ms: float  # all messages, as the tool prints it
    mean_after_first_ms: float | None  # None when only one message was sent
    # Whole milliseconds, over all messages (the tool's own percentiles).
    p50_ms: int
    p99_ms: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_end_to_end_latency(stdout: str, messages: int) -> EndToEndFigures:
    first, mean, percentiles = _E2E_FIRST.search(stdout), _E2E_AVG.search(stdout), _E2E_PERCENTILES.search(stdout)
    if not (first and mean and percentiles):
        raise JavaOutputError("EndToEndLatency printed no latency summary")
    first_ms, mean_ms = float(first["ms"]), float(mean["ms"])
    after_first = (mean_ms * messages - first_ms) / (messages - 1) if messages > 1 else None
    return EndToEndFigures(messages=messages, first_ms=round(first_ms, 3), mean_ms=round(mean_ms, 3),
                           mean_after_first_ms=None if after_first is None else round(max(after_first, 0.0), 3),
                           p50_ms=int(percentiles["p50"]), p99_ms=int(percentiles["p99"]))


# ConsumerPerformance's result: a header line, then one line of comma-separated figures.
_CP_FIELDS = ("start.time", "end.time", "data.consumed.in.MB", "MB.sec", "data.consumed.in.nMsg", "nMsg.sec",
              "rebalance.time.ms", "fetch.time.ms", "fetch.MB.sec", "fetch.nMsg.sec")


@dataclasses.dataclass(frozen=True)
class ConsumerPerformanceFigures:
    """ConsumerPerformance's line: `records` read; `records_per_s` over its whole run (group join
    included), `fetch_records_per_s` over its fetch time only (the join, `rebalance_ms`, left out)."""

    records: int
    records_per_s: float
    rebalance_ms: int
    fetch_ms: int
    fetch_records_per_s: float
    fetch_mb_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_consumer_performance(stdout: str) -> ConsumerPerformanceFigures:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    for header, values in zip(lines, lines[1:]):
        if [name.strip() for name in header.split(",")] == list(_CP_FIELDS):
            figures = dict(zip(_CP_FIELDS, (value.strip() for value in values.split(","))))
            try:
                return ConsumerPerformanceFigures(
                    records=int(figures["data.consumed.in.nMsg"]), records_per_s=float(figures["nMsg.sec"]),
                    rebalance_ms=int(figures["rebalance.time.ms"]), fetch_ms=int(figures["fetch.time.ms"]),
                    fetch_records_per_s=float(figures["fetch.nMsg.sec"]), fetch_mb_per_s=float(figures["fetch.MB.sec"]))
            except (KeyError, ValueError):
                break
    raise JavaOutputError("ConsumerPerformance printed no result line")


def failure_reason(tool: str, returncode: int | None, stdout: str, stderr: str) -> str:
    """One line: what the tool said when it failed (its exception first), else its exit code."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    telling = [line for line in lines if _FAILURE_LINE.search(line) and not line.startswith("at ")]
    # The exception's own line (`Exception in thread "main" ...: message`) says most; log lines follow.
    chosen = next((line for line in telling if "Exception" in line), telling[0] if telling else None)
    status = "timed out" if returncode is None else f"exit code {returncode}"
    if chosen is None:
        return f"{tool} failed ({status}) without saying why"
    return f"{tool} failed ({status}): {chosen[:300]}"
