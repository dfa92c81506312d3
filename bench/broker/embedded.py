"""The embedded Apache Kafka broker: the real broker run from its Maven Central jars with the JDK.

One node in KRaft combined mode (broker and controller in one JVM), bound to 127.0.0.1, data,
logs and pid file in a state dir (default `.state/broker-<port>` in the working directory, so
the installed package never holds data). The jars come from `bench.broker.jars`. A node of a
multi-node cluster is the same `KafkaNode` with another `NodeConfig` (bench/broker/cluster.py).

The broker's settings (`LARGE_MESSAGE_BROKER_SETTINGS`, `SINGLE_NODE_BROKER_SETTINGS`,
`replicated_cluster_settings`, the JVM options) live in bench/broker/settings.py, the single
source of truth, and are re-exported here.

The split: `NodeConfig` (bench/broker/node_config.py) is what a node is (ids, ports, paths,
server.properties, storage), `KafkaNode` runs one (start, wait, stop, kill, pause),
`EmbeddedBroker` is the single-node broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from bench.broker.exporter import prepare_agent, warm_exporter
from bench.broker.jars import (
    DEFAULT_KAFKA_VERSION,
    DOCKER_ALTERNATIVE,
    check_kafka_version,
    file_lock,
    provision_jars,
)
from bench.broker.node_config import (
    PROPERTIES_HEADER,
    NodeConfig,
    check_storage_version,
    find_java,
    format_storage,
    is_kafka_process,
    log_tail,
    new_cluster_id,
    port_is_free,
    recorded_pid,
)
from bench.broker.probe import broker_answers, wait_for_group_coordinator
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
    "NodeConfig", "PROPERTIES_HEADER", "new_cluster_id", "port_is_free",
]

DEFAULT_PORT = 9092
# Broker state lives under the working directory (the checkout, for `make` users), never
# inside the installed package.
STATE_ROOT = Path(".state")

_SINGLE_NODE_ID = 1
_PROBE_TIMEOUT_S = 1.0
# A killed JVM's threads close its sockets a moment after the process counts as dead.
_PORT_RELEASE_S = 5.0
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


def _refuse_busy_ports(ports) -> None:
    for port in ports:
        if not port_is_free(port):
            raise UsageError(f"port {port} on 127.0.0.1 is in use by another process "
                             "(another broker? choose --port/--controller-port)")


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

    def running_pid(self) -> int | None:
        """The process id while it runs, else None, and nothing else: for a thread that watches
        the node while a fault restarts it (`pid` removes a stale pid file, which could be the
        new one being written)."""
        pid = recorded_pid(self.config.pid_path)
        return pid if pid is not None and is_kafka_process(pid, self.config.properties_path, None) else None

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None (a stale pid file is removed)."""
        pid = recorded_pid(self.config.pid_path)
        if pid is None or self._is_our_process(pid):
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
        return is_kafka_process(pid, self.config.properties_path, self._process)

    def server_properties(self) -> dict[str, str]:
        return self.config.server_properties()

    def log_tail(self, lines: int = 20) -> list[str]:
        return log_tail(self.config, lines)

    def start(self, timeout_s: float = 120.0) -> bool:
        """Starts the node and waits until it answers a metadata request at its bound port.

        Returns False (and does nothing) when this state dir's node already runs.
        """
        java = find_java()
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
        _refuse_busy_ports(config.ports)
        check_storage_version(config)
        libs, _ = provision_jars(config.kafka_version)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        config.properties_path.write_text(PROPERTIES_HEADER + "\n" + "\n".join(lines) + "\n")
        format_storage(config, java, libs, self.cluster_id or new_cluster_id())
        config.log_path.parent.mkdir(parents=True, exist_ok=True)
        agent = prepare_agent(config.state_dir, config.metrics_agent)
        with open(config.console_log_path, "ab") as console:
            self._process = subprocess.Popen(
                config.java_command(java, libs, "kafka.Kafka", str(config.properties_path), agent=agent),
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
                return warm_exporter(self.config.state_dir)  # its first scrape is slow: not a run's
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
        _release(self.config, pid)
        return pid

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
        _release(self.config, pid)
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

    def start(self, timeout_s: float = 120.0) -> bool:
        """KafkaNode.start, then waits for a group coordinator (probe.wait_for_group_coordinator),
        so a fresh broker's first run does not wait for __consumer_offsets. A caller that set up
        its own listeners (a proxy, SASL) knows how to reach them and is left to do it."""
        started = super().start(timeout_s)
        if started and not any(key.startswith(("listener", "advertised.")) for key in self.extra_properties):
            try:
                wait_for_group_coordinator(self.bootstrap_servers, timeout_s)
            except RunFailed:
                self.stop(grace_s=5)
                raise
        return started

    controller_port = property(lambda self: self.config.controller_port)
    kafka_version = property(lambda self: self.config.kafka_version)
    extra_properties = property(lambda self: self.config.extra_properties)
