"""The embedded Apache Kafka broker: the real broker run from its Maven Central jars with the JDK.

One node in KRaft combined mode (broker and controller in one JVM), bound to 127.0.0.1, data,
logs and pid file in a state dir (default `.state/broker-<port>` in the working directory, so
the installed package never holds data). The jars are
resolved once per Kafka version with Maven into a cache outside git
(`$XDG_CACHE_HOME/streamstore-bench/kafka-<version>/libs`, default `~/.cache`).

`LARGE_MESSAGE_BROKER_SETTINGS` and the JVM options below are the single source of truth for
the broker side of the 1 GB story; docker-compose.yaml repeats them and tests/test_compose.py
checks that the two agree.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from bench.broker.probe import broker_answers
from streamstore.config import CLIENT_MESSAGE_MAX_BYTES
from streamstore.errors import RunFailed, UsageError

DEFAULT_KAFKA_VERSION = "3.8.1"
DEFAULT_PORT = 9092
# Broker state lives under the working directory (the checkout, for `make` users), never
# inside the installed package.
STATE_ROOT = Path(".state")
KAFKA_RESOURCES = Path(__file__).resolve().parent / "kafka"
DOCKER_ALTERNATIVE = "with Docker instead: docker compose up -d"

# Broker headroom over the client's 1e9 cap, so the client is always the limit that bites.
BROKER_MESSAGE_MAX_BYTES = CLIENT_MESSAGE_MAX_BYTES * 105 // 100

LARGE_MESSAGE_BROKER_SETTINGS: dict[str, str] = {
    # Largest record batch the broker accepts (checked after compression): a 1e9 client
    # message plus batch overhead and headers must fit.
    "message.max.bytes": str(BROKER_MESSAGE_MAX_BYTES),
    # The whole produce request (batch + request header) is read into one buffer; the default
    # 100 MiB would drop the connection long before message.max.bytes is reached.
    "socket.request.max.bytes": str(CLIENT_MESSAGE_MAX_BYTES * 110 // 100),
    # A follower must be able to fetch the largest batch (no followers on one node, but a
    # value below message.max.bytes is a trap when this config is copied to a cluster).
    "replica.fetch.max.bytes": str(BROKER_MESSAGE_MAX_BYTES),
    # A batch larger than a segment cannot be appended at all: 1 GiB > message.max.bytes.
    "log.segment.bytes": str(1024**3),
    # Each I/O thread that appends a large batch keeps a direct buffer of its size (see
    # BROKER_HEAP_OPTS); Kafka's default 8 would need ~9 GB of direct memory for a 1 GB sweep.
    # Two still let fetches proceed while one thread appends a 1 GB batch, on this 2-core box.
    "num.io.threads": "2",
}

# Settings a single-node cluster needs; the compose file carries them too.
SINGLE_NODE_BROKER_SETTINGS: dict[str, str] = {
    # Internal topics default to replication 3, which one broker can never satisfy.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    # The default 3 s delay waits for more group members before the first assignment; runs
    # here start one tracker, so it would only add 3 s to every run and test.
    "group.initial.rebalance.delay.ms": "0",
}

# A produce request is read into one heap buffer of its size (1 GB at most here): 4 GiB heap.
# The JDK moves heap buffers through a temporary direct buffer of the same size, kept cached per
# thread afterwards: one network thread per large producer plus each I/O thread that appended
# a large batch keep up to ~1 GB each, so with num.io.threads=2 a single large producer needs
# 3 x 1.05e9 bytes. The cap leaves room for that, and makes a runaway fail inside the broker
# ("Cannot reserve ... direct buffer memory") instead of taking the machine other engineers share.
# (-Djdk.nio.maxCachedBufferSize would avoid the caching, but then every socket read of a large
# request allocates and zeroes a new buffer of the remaining size: 14 s of broker CPU per
# 100 MB message instead of 0.1 s, measured.)
BROKER_HEAP_OPTS: tuple[str, ...] = ("-Xmx4g", "-XX:MaxDirectMemorySize=4g")
# Kafka's own launcher defaults (kafka-run-class.sh): G1 with short pauses.
BROKER_PERFORMANCE_JVM_OPTS: tuple[str, ...] = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)

# Broker settings worth recording next to a result (read back from the broker itself).
REPORTED_BROKER_SETTING_NAMES: tuple[str, ...] = (
    *LARGE_MESSAGE_BROKER_SETTINGS,
    "num.partitions",
    "default.replication.factor",
    "min.insync.replicas",
    "log.flush.interval.messages",
    "num.network.threads",
    "compression.type",
    "inter.broker.protocol.version",
)

# Versions whose jars, StorageTool usage and log4j 1 backend this module knows; 4.x switched
# to log4j2 and changed storage formatting.
_SUPPORTED_VERSION = re.compile(r"^3\.([3-9])\.\d+$")
_NODE_ID = 1
_PROBE_TIMEOUT_S = 1.0


def _missing_tool(tool: str, purpose: str, install_hint: str) -> UsageError:
    return UsageError(f"{tool} not found on PATH: {purpose} ({install_hint}); {DOCKER_ALTERNATIVE}")


def check_kafka_version(kafka_version: str) -> str:
    if not _SUPPORTED_VERSION.match(kafka_version):
        raise UsageError(
            f"--kafka-version {kafka_version!r}: the embedded broker runs Apache Kafka 3.3.x-3.9.x "
            f"(default {DEFAULT_KAFKA_VERSION}); for other versions use Docker: docker compose up -d"
        )
    return kafka_version


def _version_key(kafka_version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in kafka_version.split("."))


def jar_cache_dir(kafka_version: str) -> Path:
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_root / "streamstore-bench" / f"kafka-{kafka_version}" / "libs"


@contextlib.contextmanager
def _file_lock(lock_path: Path, remove: bool = False) -> Iterator[None]:
    """An exclusive flock on lock_path; remove=True deletes the file on release, so it exists
    only while someone holds or waits for the lock (nothing is left behind by a failed start).

    Removing a lock file is safe only if a waiter that was queued on the removed file notices:
    after taking the lock it checks that the path still names the file it locked, and takes
    the lock again on the new file otherwise.
    """
    while True:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(lock_path, "a")
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(lock_file.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        lock_file.close()
    try:
        yield
    finally:
        if remove:
            lock_path.unlink(missing_ok=True)
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()


def provision_jars(kafka_version: str = DEFAULT_KAFKA_VERSION) -> tuple[Path, bool]:
    """Returns the directory holding the broker's jars, and whether they were downloaded now.

    Maven writes into a temporary directory that is renamed into place, under a file lock, so
    concurrent callers neither download twice nor see half a directory.
    """
    check_kafka_version(kafka_version)
    libs = jar_cache_dir(kafka_version)
    if libs.is_dir():
        return libs, False
    with _file_lock(libs.parent / "download.lock"):
        if libs.is_dir():
            return libs, False
        mvn = shutil.which("mvn")
        if mvn is None:
            raise _missing_tool(
                "mvn", "Maven downloads the Kafka broker jars on first use", "e.g. apt-get install maven"
            )
        staging = libs.parent / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        completed = subprocess.run(
            [
                mvn, "-q", "-B", "-f", str(KAFKA_RESOURCES / "pom.xml"),
                f"-Dkafka.version={kafka_version}",
                "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0 or not any(staging.glob(f"kafka_2.13-{kafka_version}.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            errors = [line for line in completed.stdout.splitlines() if "ERROR" in line]
            detail = errors[0].strip() if errors else (completed.stderr.strip() or "no jars").splitlines()[-1]
            raise UsageError(f"Maven could not resolve Apache Kafka {kafka_version}: {detail}")
        staging.rename(libs)
        return libs, True


def new_cluster_id() -> str:
    """A cluster id in Kafka's Uuid text form: 16 random bytes, URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka's own generator rejects a leading '-' (it reads as a CLI flag).
        if not cluster_id.startswith("-"):
            return cluster_id


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The broker sets SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedBroker:
    """One Apache Kafka broker process (KRaft combined mode) owned through its state dir.

    The process runs in its own session, so it outlives the Python process that started it;
    any later EmbeddedBroker with the same state dir finds it again through the pid file.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        state_dir: Path | str | None = None,
        kafka_version: str = DEFAULT_KAFKA_VERSION,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 1
        if self.controller_port == self.port:
            raise UsageError(f"--controller-port must differ from --port ({port})")
        self.state_dir = Path(state_dir) if state_dir else (STATE_ROOT / f"broker-{port}").resolve()
        self.kafka_version = check_kafka_version(kafka_version)
        # Test set-ups (an advertised proxy address, a SASL listener) on top of the defaults.
        self.extra_properties = dict(extra_properties or {})
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / "server.log"

    @property
    def console_log_path(self) -> Path:
        """The JVM's own stdout/stderr: where a crash before log4j is up ends up."""
        return self.state_dir / "logs" / "console.log"

    @property
    def _pid_path(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def _version_path(self) -> Path:
        return self.state_dir / "kafka.version"

    @property
    def _properties_path(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def _data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else None (a stale pid file is removed)."""
        try:
            pid = int(self._pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if self._is_our_broker_process(pid):
            return pid
        self._pid_path.unlink(missing_ok=True)
        return None

    @property
    def version(self) -> str:
        """The Kafka version of the running broker (it may differ from the one asked for)."""
        if self.pid is not None:
            with contextlib.suppress(FileNotFoundError):
                return self._version_path.read_text().strip()
        return self.kafka_version

    def is_running(self) -> bool:
        return self.pid is not None

    def _is_our_broker_process(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid and self._process.poll() is not None:
            return False  # our child exited (poll reaps it, so it is no zombie either)
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        # The pid may have been reused by an unrelated process since the file was written.
        return b"kafka.Kafka" in cmdline and str(self._properties_path).encode() in cmdline

    def server_properties(self) -> dict[str, str]:
        controller = f"127.0.0.1:{self.controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.voters": f"{_NODE_ID}@{controller}",
            # 127.0.0.1 only: a benchmark broker with no authentication must not be reachable
            # from the network.
            "listeners": f"PLAINTEXT://{self.bootstrap_servers},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap_servers}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._data_dir),
            # Kafka's default, as in cp-kafka and the seed: other clients (Locust, Kafka's perf
            # tools) may produce to topics they did not create; the harness creates its own
            # topics with explicit settings, so auto-created defaults never shape a measurement.
            "auto.create.topics.enable": "true",
            **SINGLE_NODE_BROKER_SETTINGS,
            **LARGE_MESSAGE_BROKER_SETTINGS,
            **self.extra_properties,
        }

    def _write_server_properties(self) -> None:
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        self._properties_path.write_text("# Written by bench/broker.py on every start.\n" + "\n".join(lines) + "\n")

    def _java_command(self, java: str, libs: Path, main_class: str, *arguments: str) -> list[str]:
        return [
            java,
            *BROKER_HEAP_OPTS,
            *BROKER_PERFORMANCE_JVM_OPTS,
            f"-Dlog4j.configuration=file:{KAFKA_RESOURCES / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.log_path.parent}",
            "-cp", f"{libs}/*",
            main_class,
            *arguments,
        ]

    @property
    def _formatted_by_path(self) -> Path:
        return self.state_dir / "formatted-by.version"

    def _check_storage_version(self) -> None:
        """An older broker cannot read metadata a newer one wrote; say so before it crashes."""
        with contextlib.suppress(FileNotFoundError):
            formatted_by = self._formatted_by_path.read_text().strip()
            if _version_key(self.kafka_version) < _version_key(formatted_by):
                raise UsageError(
                    f"{self.state_dir} holds data of Apache Kafka {formatted_by}, which {self.kafka_version} "
                    "cannot read: choose another --state-dir (or delete that one)"
                )

    def _format_storage(self, java: str, libs: Path) -> None:
        """KRaft refuses to start on an unformatted log dir; format it once, keep it after."""
        if (self._data_dir / "meta.properties").exists():
            return
        completed = subprocess.run(
            self._java_command(
                java, libs, "kafka.tools.StorageTool",
                "format", "-t", new_cluster_id(), "-c", str(self._properties_path), "--ignore-formatted",
            ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            output = (completed.stderr.strip() or completed.stdout.strip()).splitlines()
            raise RunFailed(f"formatting the broker storage in {self._data_dir} failed: {output[-1] if output else ''}")
        self._formatted_by_path.write_text(f"{self.kafka_version}\n")

    def log_tail(self, lines: int = 20) -> list[str]:
        tail: list[str] = []
        for path in (self.console_log_path, self.log_path):
            with contextlib.suppress(FileNotFoundError):
                tail += path.read_text(errors="replace").splitlines()[-lines:]
        return tail[-lines:]

    def _startup_failure(self, reason: str) -> RunFailed:
        tail = self.log_tail(200)
        # The broker's last ERROR and its stack trace say why; the config dump before it does not.
        errors = [index for index, line in enumerate(tail) if " ERROR " in line]
        tail = tail[errors[-1]:][:20] if errors else tail[-20:]
        tail = "\n".join(f"    {line}" for line in tail)
        return RunFailed(f"embedded Kafka broker {reason} (log: {self.log_path}); last log lines:\n{tail}")

    def start(self, timeout_s: float = 120.0) -> bool:
        """Starts the broker and waits until it answers a metadata request.

        Returns False (and does nothing) when this state dir's broker already runs.
        """
        java = shutil.which("java")
        if java is None:
            raise _missing_tool(
                "java", "the embedded Kafka broker needs a JDK 17", "e.g. apt-get install openjdk-17-jdk-headless"
            )
        new_state_dir = not self.state_dir.exists()
        try:
            with _file_lock(self.state_dir / "start.lock", remove=True):
                return self._start_locked(java, timeout_s)
        except UsageError:
            if new_state_dir:
                # Made for this start only: a start refused before it wrote anything (busy port,
                # no Maven) leaves no empty state dir behind (rmdir removes it only while empty).
                with contextlib.suppress(OSError):
                    self.state_dir.rmdir()
            raise

    def _start_locked(self, java: str, timeout_s: float) -> bool:
        if self.is_running():
            return False
        for port in (self.port, self.controller_port):
            if not _port_is_free(port):
                raise UsageError(
                    f"port {port} on 127.0.0.1 is in use by another process "
                    "(another broker? choose --port/--controller-port)"
                )
        self._check_storage_version()
        libs, _ = provision_jars(self.kafka_version)
        self._write_server_properties()
        self._format_storage(java, libs)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.console_log_path, "ab") as console:
            self._process = subprocess.Popen(
                self._java_command(java, libs, "kafka.Kafka", str(self._properties_path)),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,
            )
        self._pid_path.write_text(f"{self._process.pid}\n")
        self._version_path.write_text(f"{self.kafka_version}\n")
        self._wait_until_answering(timeout_s)
        return True

    def _wait_until_answering(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            exit_code = self._process.poll()
            if exit_code is not None:
                self._pid_path.unlink(missing_ok=True)
                raise self._startup_failure(f"exited with code {exit_code} during startup")
            if broker_answers(self.bootstrap_servers, timeout_s=_PROBE_TIMEOUT_S):
                return
            if time.monotonic() > deadline:
                self.stop(grace_s=5)
                raise self._startup_failure(f"did not answer at {self.bootstrap_servers} within {timeout_s:.0f} s")
            time.sleep(0.2)

    def stop(self, grace_s: float = 30.0) -> bool:
        """SIGTERM (a clean, controlled shutdown), then SIGKILL after grace_s.

        Returns False when no broker was running.
        """
        pid = self.pid
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self._is_our_broker_process(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._is_our_broker_process(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self._is_our_broker_process(pid):
                time.sleep(0.05)
        self._pid_path.unlink(missing_ok=True)
        return True
