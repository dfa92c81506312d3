"""What one embedded Kafka node is, without its process: ids, ports, paths, server.properties,
its storage (formatted once with the cluster's id) and how its JVM is recognised among the
machine's processes. bench/broker/embedded.py runs nodes from it."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import shutil
import socket
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from bench.broker.jars import DEFAULT_KAFKA_VERSION, missing_tool, run_bounded, version_key
from bench.broker.settings import BROKER_HEAP_OPTS, LARGE_MESSAGE_BROKER_SETTINGS, broker_performance_jvm_opts
from bench.broker.versions import log_config_option
from streamstore.errors import RunFailed, UsageError

# The first line of every server.properties a node writes: how its processes are known as ours.
PROPERTIES_HEADER = "# Written by bench/broker/embedded.py on every start."
# StorageTool format is one JVM start (seconds; tens on a loaded 2-core machine).
FORMAT_TIMEOUT_S = 180.0


def new_cluster_id() -> str:
    """A cluster id in Kafka's Uuid text form: 16 random bytes, URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's own generator rejects a leading '-' (it reads as a CLI flag).
        if not cluster_id.startswith("-"):
            return cluster_id


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The broker sets SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """One node's identity, ports, files and server.properties (no process).

    broker_port None: one PLAINTEXT listener for clients and brokers (the single-node layout).
    Otherwise three listeners: CLIENT (what clients use; advertised at advertised_port, which a
    proxy in front of the node may own), BROKER (replication, never proxied) and CONTROLLER.
    """

    node_id: int
    port: int
    controller_port: int
    state_dir: Path
    quorum_voters: str
    settings: Mapping[str, str]
    kafka_version: str = DEFAULT_KAFKA_VERSION
    broker_port: int | None = None
    advertised_port: int | None = None
    heap_opts: tuple[str, ...] = BROKER_HEAP_OPTS
    # Test set-ups (an advertised proxy address, a SASL listener) on top of the defaults.
    extra_properties: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Prometheus' JMX exporter attached to the broker (bench/broker/exporter.py); off only to
    # measure what it costs.
    metrics_agent: bool = True

    @property
    def bootstrap_servers(self) -> str:
        """The address clients use: the advertised one."""
        return f"127.0.0.1:{self.advertised_port or self.port}"

    @property
    def bound_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(port for port in (self.port, self.broker_port, self.controller_port) if port is not None)

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "server.log"

    @property
    def console_log_path(self) -> Path:
        """The JVM's own stdout/stderr: where a crash before log4j is up ends up."""
        return self.state_dir / "logs" / "console.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def version_path(self) -> Path:
        return self.state_dir / "kafka.version"

    @property
    def formatted_by_path(self) -> Path:
        return self.state_dir / "formatted-by.version"

    @property
    def properties_path(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    def listener_properties(self) -> dict[str, str]:
        # 127.0.0.1 only: a benchmark broker with no authentication must not be reachable
        # from the network.
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        if self.broker_port is None:
            return {
                "listeners": f"PLAINTEXT://{self.bound_address},{controller}",
                "advertised.listeners": f"PLAINTEXT://{self.bootstrap_servers}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
            }
        broker = f"BROKER://127.0.0.1:{self.broker_port}"
        return {
            "listeners": f"CLIENT://{self.bound_address},{broker},{controller}",
            "advertised.listeners": f"CLIENT://{self.bootstrap_servers},{broker}",
            "listener.security.protocol.map": "CLIENT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            # Replication has its own listener, so cutting clients off a node (a proxy on the
            # CLIENT port) leaves its followers fetching.
            "inter.broker.listener.name": "BROKER",
        }

    def server_properties(self) -> dict[str, str]:
        return {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum_voters,
            **self.listener_properties(),
            "log.dirs": str(self.data_dir),
            # Kafka's default, as in cp-kafka and the seed: other clients (Locust, Kafka's perf
            # tools) may produce to topics they did not create; the harness creates its own
            # topics with explicit settings, so auto-created defaults never shape a measurement.
            "auto.create.topics.enable": "true",
            **self.settings,
            **LARGE_MESSAGE_BROKER_SETTINGS,
            **self.extra_properties,
        }

    def java_command(self, java: str, libs: Path, main_class: str, *arguments: str,
                     agent: tuple[str, ...] | list[str] = ()) -> list[str]:
        return [
            java,
            *agent,
            *self.heap_opts,
            *broker_performance_jvm_opts(),
            log_config_option(self.kafka_version),
            f"-Dkafka.logs.dir={self.log_path.parent}",
            "-cp", f"{libs}/*",
            main_class,
            *arguments,
        ]


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise missing_tool("java", "the embedded Kafka broker needs a JDK 17", "e.g. apt-get install openjdk-17-jdk-headless")
    return java


def format_storage(config: NodeConfig, java: str, libs: Path, cluster_id: str) -> None:
    """KRaft refuses to start on an unformatted log dir; format it once, keep it after."""
    if (config.data_dir / "meta.properties").exists():
        return
    timeout_s = FORMAT_TIMEOUT_S
    try:
        completed = run_bounded(config.java_command(java, libs, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                                    "-c", str(config.properties_path), "--ignore-formatted"), timeout_s)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"formatting the broker storage in {config.data_dir} did not finish within {timeout_s:g} s "
                        "(stopped); is the machine overloaded, or the disk stuck?") from None
    if completed.returncode != 0:
        output = (completed.stderr.strip() or completed.stdout.strip()).splitlines()
        raise RunFailed(f"formatting the broker storage in {config.data_dir} failed: {output[-1] if output else ''}")
    config.formatted_by_path.write_text(f"{config.kafka_version}\n")


def check_storage_version(config: NodeConfig) -> None:
    """An older broker cannot read metadata a newer one wrote; say so before it crashes."""
    with contextlib.suppress(FileNotFoundError):
        formatted_by = config.formatted_by_path.read_text().strip()
        if version_key(config.kafka_version) < version_key(formatted_by):
            raise UsageError(
                f"{config.state_dir} holds data of Apache Kafka {formatted_by}, which {config.kafka_version} "
                "cannot read: choose another --state-dir (or delete that one)"
            )


def recorded_pid(pid_path: Path) -> int | None:
    """The pid a node's pid file holds, whether or not that process still runs."""
    try:
        return int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_kafka_process(pid: int, properties_path: Path, child: subprocess.Popen | None) -> bool:
    """pid is the Kafka JVM started with properties_path, alive and no zombie."""
    if child is not None and child.pid == pid and child.poll() is not None:
        return False  # our child exited (poll reaps it, so it is no zombie either)
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    # The pid may have been reused by an unrelated process since the file was written.
    return b"kafka.Kafka" in cmdline and str(properties_path).encode() in cmdline




def log_tail(config: NodeConfig, lines: int = 20) -> list[str]:
    """The last lines of the node's console and server logs."""
    tail: list[str] = []
    for path in (config.console_log_path, config.log_path):
        with contextlib.suppress(FileNotFoundError):
            tail += path.read_text(errors="replace").splitlines()[-lines:]
    return tail[-lines:]
