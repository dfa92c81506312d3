"""The embedded Apache Kafka broker: the real broker run from its Maven Central jars with the JDK.

One node in KRaft combined mode (broker and controller in one JVM), bound to 127.0.0.1, data,
logs and pid file in a state dir (default `.state/broker-<port>` in the working directory, so
the installed package never holds data). The jars come from `bench.broker.jars`. A node of a
multi-node cluster is the same `KafkaNode` with another `NodeConfig` (bench/broker/cluster.py).

The broker's settings (`LARGE_MESSAGE_BROKER_SETTINGS`, `SINGLE_NODE_BROKER_SETTINGS`,
`replicated_cluster_settings`, the JVM options) live in bench/broker/settings.py, the single
source of truth, and are re-exported here.

The split: `NodeConfig` is what a node is (ids, ports, paths, server.properties), `KafkaNode`
runs one (format, start, wait, stop, kill, pause), `EmbeddedBroker` is the single-node broker.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from bench.broker.jars import (
    DEFAULT_KAFKA_VERSION,
    DOCKER_ALTERNATIVE,
    KAFKA_RESOURCES,
    check_kafka_version,
    file_lock,
    missing_tool,
    provision_jars,
    run_bounded,
    version_key,
)
from bench.broker.probe import broker_answers
from bench.broker.settings import (
    BROKER_HEAP_OPTS,
    BROKER_MESSAGE_MAX_BYTES,
    BROKER_PERFORMANCE_JVM_OPTS,
    CLUSTER_NODE_HEAP,
    LARGE_MESSAGE_BROKER_SETTINGS,
    REPORTED_BROKER_SETTING_NAMES,
    SINGLE_NODE_BROKER_SETTINGS,
    heap_opts,
    replicated_cluster_settings,
)
from streamstore.errors import RunFailed, UsageError

# Re-exported: commands and tests know the broker by this module.
__all__ = [
    "DEFAULT_KAFKA_VERSION", "DOCKER_ALTERNATIVE", "check_kafka_version", "provision_jars",
    "BROKER_MESSAGE_MAX_BYTES",
    "LARGE_MESSAGE_BROKER_SETTINGS",
    "SINGLE_NODE_BROKER_SETTINGS",
    "replicated_cluster_settings",
    "BROKER_HEAP_OPTS",
    "CLUSTER_NODE_HEAP",
    "heap_opts",
    "BROKER_PERFORMANCE_JVM_OPTS",
    "REPORTED_BROKER_SETTING_NAMES",
]

DEFAULT_PORT = 9092
# Broker state lives under the working directory (the checkout, for `make` users), never
# inside the installed package.
STATE_ROOT = Path(".state")

_SINGLE_NODE_ID = 1
# The first line of every server.properties a node writes: how its processes are known as ours.
PROPERTIES_HEADER = "# Written by bench/broker/embedded.py on every start."
_PROBE_TIMEOUT_S = 1.0
# A killed JVM's threads close its sockets a moment after the process counts as dead.
_PORT_RELEASE_S = 5.0
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

    def java_command(self, java: str, libs: Path, main_class: str, *arguments: str) -> list[str]:
        return [
            java,
            *self.heap_opts,
            *BROKER_PERFORMANCE_JVM_OPTS,
            f"-Dlog4j.configuration=file:{KAFKA_RESOURCES / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.log_path.parent}",
            "-cp", f"{libs}/*",
            main_class,
            *arguments,
        ]


def _find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise missing_tool("java", "the embedded Kafka broker needs a JDK 17", "e.g. apt-get install openjdk-17-jdk-headless")
    return java


def _format_storage(config: NodeConfig, java: str, libs: Path, cluster_id: str) -> None:
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


def _check_storage_version(config: NodeConfig) -> None:
    """An older broker cannot read metadata a newer one wrote; say so before it crashes."""
    with contextlib.suppress(FileNotFoundError):
        formatted_by = config.formatted_by_path.read_text().strip()
        if version_key(config.kafka_version) < version_key(formatted_by):
            raise UsageError(
                f"{config.state_dir} holds data of Apache Kafka {formatted_by}, which {config.kafka_version} "
                "cannot read: choose another --state-dir (or delete that one)"
            )


def _is_kafka_process(pid: int, properties_path: Path, child: subprocess.Popen | None) -> bool:
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


def _startup_failure(node: KafkaNode, reason: str) -> RunFailed:
    tail = node.log_tail(200)
    # The broker's last ERROR and its stack trace say why; the config dump before it does not.
    errors = [index for index, line in enumerate(tail) if " ERROR " in line]
    tail = "\n".join(f"    {line}" for line in (tail[errors[-1]:][:20] if errors else tail[-20:]))
    name = "embedded Kafka broker" if node.config.broker_port is None else f"Kafka node {node.node_id}"
    return RunFailed(f"{name} {reason} (log: {node.log_path}); last log lines:\n{tail}")


def _release(config: NodeConfig, pid: int | None) -> None:
    """After a node's process ended: reap it if it is our child, and wait (briefly) until the
    kernel has closed its listening sockets, so an immediate restart finds its ports free."""
    if pid is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    config.pid_path.unlink(missing_ok=True)
    deadline = time.monotonic() + _PORT_RELEASE_S
    while not all(port_is_free(port) for port in config.ports) and time.monotonic() < deadline:
        time.sleep(0.05)


class KafkaNode:
    """One Apache Kafka process (KRaft combined mode) owned through its state dir.

    The process runs in its own session, so it outlives the Python process that started it;
    any later object with the same state dir finds it again through the pid file.
    """

    def __init__(self, config: NodeConfig, cluster_id: str | None = None) -> None:
        self.config = config
        # Every node of a cluster is formatted with the cluster's id; one node makes its own.
        self.cluster_id = cluster_id
        self._process: subprocess.Popen | None = None

    node_id = property(lambda self: self.config.node_id)
    port = property(lambda self: self.config.port)
    state_dir = property(lambda self: self.config.state_dir)
    bootstrap_servers = property(lambda self: self.config.bootstrap_servers)
    log_path = property(lambda self: self.config.log_path)
    console_log_path = property(lambda self: self.config.console_log_path)

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None (a stale pid file is removed)."""
        try:
            pid = int(self.config.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if self._is_our_process(pid):
            return pid
        self.config.pid_path.unlink(missing_ok=True)
        return None

    @property
    def version(self) -> str:
        """The Kafka version of the running broker (it may differ from the one asked for)."""
        if self.pid is not None:
            with contextlib.suppress(FileNotFoundError):
                return self.config.version_path.read_text().strip()
        return self.config.kafka_version

    def is_running(self) -> bool:
        return self.pid is not None

    def _is_our_process(self, pid: int) -> bool:
        return _is_kafka_process(pid, self.config.properties_path, self._process)

    def server_properties(self) -> dict[str, str]:
        return self.config.server_properties()

    def log_tail(self, lines: int = 20) -> list[str]:
        tail: list[str] = []
        for path in (self.console_log_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                tail += path.read_text(errors="replace").splitlines()[-lines:]
        return tail[-lines:]

    def start(self, timeout_s: float = 120.0) -> bool:
        """Starts the node and waits until it answers a metadata request at its bound port.

        Returns False (and does nothing) when this state dir's node already runs.
        """
        java = _find_java()
        new_state_dir = not self.state_dir.exists()
        try:
            with file_lock(self.state_dir / "start.lock", remove=True):
                if self.is_running():
                    return False
                self._spawn(java)
        except UsageError:
            if new_state_dir:
                # Made for this start only: a start refused before it wrote anything (busy port,
                # no Maven) leaves no empty state dir behind (rmdir removes it only while empty).
                with contextlib.suppress(OSError):
                    self.state_dir.rmdir()
            raise
        self.wait_until_answering(timeout_s)
        return True

    def _spawn(self, java: str) -> None:
        config = self.config
        for port in config.ports:
            if not port_is_free(port):
                raise UsageError(f"port {port} on 127.0.0.1 is in use by another process "
                                 "(another broker? choose --port/--controller-port)")
        _check_storage_version(config)
        libs, _ = provision_jars(config.kafka_version)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        config.properties_path.write_text(PROPERTIES_HEADER + "\n" + "\n".join(lines) + "\n")
        _format_storage(config, java, libs, self.cluster_id or new_cluster_id())
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(config.console_log_path, "ab") as console:
            self._process = subprocess.Popen(
                config.java_command(java, libs, "kafka.Kafka", str(config.properties_path)),
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=config.state_dir, start_new_session=True,
            )
        config.pid_path.write_text(f"{self._process.pid}\n")
        config.version_path.write_text(f"{config.kafka_version}\n")

    def wait_until_answering(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            # The child's own exit code (the pid file check could misread a JVM mid-exec).
            exit_code = self._process.poll()
            if exit_code is not None:
                self.config.pid_path.unlink(missing_ok=True)
                raise _startup_failure(self, f"exited with code {exit_code} during startup")
            if broker_answers(self.config.bound_address, timeout_s=_PROBE_TIMEOUT_S):
                return
            if time.monotonic() > deadline:
                self.stop(grace_s=5)
                raise _startup_failure(self, f"did not answer at {self.config.bound_address} within {timeout_s:.0f} s")
            time.sleep(0.2)

    def signal(self, signum: int) -> int | None:
        """Sends signum to the running process; returns its pid (None when not running)."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return pid

    def kill(self) -> int | None:
        """SIGKILL, returning once the process is gone; its pid, or None when not running."""
        pid = self.signal(signal.SIGKILL)
        while pid is not None and self._is_our_process(pid):
            time.sleep(0.01)
        self._released(pid)
        return pid

    def _released(self, pid: int | None) -> None:
        _release(self.config, pid)

    def pause(self) -> int | None:
        return self.signal(signal.SIGSTOP)

    def resume(self) -> int | None:
        return self.signal(signal.SIGCONT)

    def stop(self, grace_s: float = 30.0) -> bool:
        """SIGTERM (a clean, controlled shutdown), then SIGKILL after grace_s.

        Returns False when no broker was running.
        """
        pid = self.signal(signal.SIGCONT)  # a paused JVM cannot shut down
        if pid is None:
            return False
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self._is_our_process(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._is_our_process(pid):
            self.kill()
        self._released(pid)
        return True


class EmbeddedBroker(KafkaNode):
    """The single-node broker: node 1, one PLAINTEXT listener, controller on port + 1."""

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        state_dir: Path | str | None = None,
        kafka_version: str = DEFAULT_KAFKA_VERSION,
        extra_properties: Mapping[str, str] | None = None,
        heap_opts: tuple[str, ...] = BROKER_HEAP_OPTS,
    ) -> None:
        controller_port = controller_port if controller_port is not None else port + 1
        if controller_port == port:
            raise UsageError(f"--controller-port must differ from --port ({port})")
        super().__init__(NodeConfig(
            node_id=_SINGLE_NODE_ID,
            port=port,
            controller_port=controller_port,
            # Absolute: the JVM runs in its state dir, and a running broker is recognized by the
            # properties path on its command line, which must be the same from any working dir.
            state_dir=(Path(state_dir) if state_dir else STATE_ROOT / f"broker-{port}").resolve(),
            quorum_voters=f"{_SINGLE_NODE_ID}@127.0.0.1:{controller_port}",
            settings=SINGLE_NODE_BROKER_SETTINGS,
            kafka_version=check_kafka_version(kafka_version),
            heap_opts=heap_opts,
            extra_properties=dict(extra_properties or {}),
        ))

    controller_port = property(lambda self: self.config.controller_port)
    kafka_version = property(lambda self: self.config.kafka_version)
    extra_properties = property(lambda self: self.config.extra_properties)
