"""Runs Kafka's own Java tools (kafka-tools jar of the broker's Kafka version, from the embedded
broker's jar cache) with the JDK, one process per measurement, with a timeout.

What the settings map to and how the output is read live in `bench/peers/java_tools.py`; this
module only starts the JVM, feeds it a properties file and turns a failure into one line.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.broker.jars import DEFAULT_KAFKA_VERSION, provision_jars
from bench.broker.versions import log_config_option
from bench.core.scenario import Scenario
from bench.peers.java_tools import (
    CONSUMER_PERFORMANCE,
    END_TO_END_LATENCY,
    PRODUCER_PERFORMANCE,
    ConsumerPerformanceFigures,
    EndToEndFigures,
    JavaOutputError,
    ProducerPerformanceFigures,
    end_to_end_heap_options,
    end_to_end_properties,
    failure_reason,
    parse_consumer_performance,
    parse_end_to_end_latency,
    parse_producer_performance,
    producer_performance_properties,
    properties_text,
)
from streamstore.errors import RunFailed, UsageError

# ProducerPerformance keeps a 200-byte flat-out run's batches in its 32 MiB buffer: 1 GiB is ample.
PRODUCER_PERFORMANCE_HEAP = ("-Xmx1g",)
# ConsumerPerformance gives up after this long without a record.
CONSUMER_PERFORMANCE_IDLE_S = 30.0
# The JVM start, metadata and connections, before the first message.
TOOL_START_ALLOWANCE_S = 60.0


class JavaPeer:
    """Kafka's Java tools of one Kafka version against one broker."""

    def __init__(self, bootstrap_servers: str, kafka_version: str | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.kafka_version = kafka_version or DEFAULT_KAFKA_VERSION
        java = shutil.which("java")
        if java is None:
            raise UsageError("java not found on PATH: --peer java runs Kafka's own tools with a JDK 17 "
                             "(e.g. apt-get install openjdk-17-jdk-headless)")
        self.java = java
        self.libs, _ = provision_jars(self.kafka_version)

    def describe(self) -> str:
        return f"Kafka {self.kafka_version} kafka-tools ({self.java})"

    def _run(self, main_class: str, heap: Sequence[str], arguments: Sequence[str], timeout_s: float) -> str:
        # Client log lines (warnings and errors only) go to stderr, where a failure's reason is read.
        command = [self.java, *heap, log_config_option(self.kafka_version, tools=True), "-cp", f"{self.libs}/*",
                   main_class, *arguments]
        tool = main_class.rsplit(".", 1)[-1]
        try:
            completed = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                       timeout=timeout_s)
        except subprocess.TimeoutExpired as expired:
            raise RunFailed(failure_reason(tool, None, _text(expired.stdout), _text(expired.stderr))
                            + f" (no result within {timeout_s:,.0f} s)") from None
        if completed.returncode != 0:
            raise RunFailed(failure_reason(tool, completed.returncode, completed.stdout, completed.stderr))
        return completed.stdout

    def producer_performance(self, scenario: Scenario, topic: str, records: int, payloads: Sequence[bytes],
                             timeout_s: float) -> ProducerPerformanceFigures:
        """ProducerPerformance flat out (--throughput -1) with the scenario's producer settings.

        payloads: the harness's own values when they are text without newlines (the tool reads a
        UTF-8 file of lines), so both send the same bytes; else the tool's random letters of the
        same size.
        """
        properties = producer_performance_properties(scenario, self.bootstrap_servers)
        with tempfile.TemporaryDirectory(prefix="bench-java-") as folder:
            arguments = ["--topic", topic, "--num-records", str(records), "--throughput", "-1",
                         "--producer.config", _write(Path(folder) / "producer.properties", properties)]
            if payload_file_usable(payloads):
                payload_path = Path(folder) / "payloads.txt"
                payload_path.write_bytes(b"\n".join(payloads))
                arguments += ["--payload-file", str(payload_path)]
            elif isinstance(scenario.message_size, int):
                arguments += ["--record-size", str(scenario.message_size)]
            else:
                raise UsageError("--peer java: ProducerPerformance takes one --record-size; a message_size "
                                 "distribution of random payloads has no payload file it can read")
            stdout = self._run(PRODUCER_PERFORMANCE, PRODUCER_PERFORMANCE_HEAP, arguments, timeout_s)
        try:
            return parse_producer_performance(stdout)
        except JavaOutputError as error:
            raise RunFailed(f"{error}: {stdout.strip().splitlines()[-1:] or 'no output'}") from None

    def consumer_performance(self, topic: str, records: int, group_id: str, timeout_s: float) -> ConsumerPerformanceFigures:
        """ConsumerPerformance (kafka-consumer-perf-test) reading `records` from the topic's
        beginning under a new group, with the Java consumer's defaults (docs/performance.md)."""
        stdout = self._run(CONSUMER_PERFORMANCE, PRODUCER_PERFORMANCE_HEAP,
                           ["--bootstrap-server", self.bootstrap_servers, "--topic", topic, "--messages", str(records),
                            # The longest wait for a record before the tool gives up (ms).
                            "--group", group_id, "--timeout", str(int(CONSUMER_PERFORMANCE_IDLE_S * 1000))],
                           TOOL_START_ALLOWANCE_S + timeout_s)
        try:
            return parse_consumer_performance(stdout)
        except JavaOutputError as error:
            raise RunFailed(f"{error}: {stdout.strip().splitlines()[-1:] or 'no output'}") from None

    def end_to_end_latency(self, topic: str, size_bytes: int, compression: str, level: int, acks: str, messages: int,
                           max_request_bytes: int, timeout_s: float) -> EndToEndFigures:
        """EndToEndLatency: `messages` messages of `size_bytes`, one in flight (its payload is one
        repeated letter, so compression shrinks it to almost nothing)."""
        properties = end_to_end_properties(size_bytes, compression, level, max_request_bytes, timeout_s)
        with tempfile.TemporaryDirectory(prefix="bench-java-") as folder:
            stdout = self._run(END_TO_END_LATENCY, end_to_end_heap_options(size_bytes),
                               [self.bootstrap_servers, topic, str(messages), acks, str(size_bytes),
                                _write(Path(folder) / "client.properties", properties)],
                               TOOL_START_ALLOWANCE_S + messages * timeout_s)
        try:
            return parse_end_to_end_latency(stdout, messages)
        except JavaOutputError as error:
            raise RunFailed(f"{error}: {stdout.strip().splitlines()[-1:] or 'no output'}") from None


def payload_file_usable(payloads: Sequence[bytes]) -> bool:
    """Whether ProducerPerformance can read these values back byte for byte from a file of lines."""
    try:
        return all(b"\n" not in value and value.decode("utf-8") for value in payloads)
    except UnicodeDecodeError:
        return False


def _write(path: Path, properties: Mapping[str, str]) -> str:
    path.write_text(properties_text(properties), encoding="utf-8")
    return str(path)


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace")
    return output or ""
