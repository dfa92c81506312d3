"""Prometheus' JMX exporter (`jmx_prometheus_javaagent`, from Maven Central) attached to every
embedded broker node: the broker's own metrics over HTTP on 127.0.0.1, read once a second during
a run (bench/core/broker_metrics.py).

The agent jar is fetched with Maven once, into the same cache as the broker's jars
(`~/.cache/streamstore-bench/jmx-exporter-<version>/`), and used from there offline. A node
gets its own free loopback port and a small exporter config that selects only the MBeans a run
reads (a full Kafka scrape is thousands of series); the port and the config's path are recorded
in the node's state dir (`jmx-exporter.json`), so any later command finds the endpoint. Without
the jar (no Maven, no network on the first use) the node starts without the agent and the file
says why: the broker metrics of its runs are then null with that reason, never 0.

The metric names are those of the JMX exporter's standard Kafka config
(`example_configs/kafka-2_0_0.yml` in the exporter's repository: lowercase, `_total` on the
per-second meters), so a Prometheus endpoint a user already runs for an external cluster
(`--broker-metrics-url`) is read by the same code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from bench.broker.jars import MAVEN_TIMEOUT_S, file_lock, run_bounded
from bench.broker.node_config import port_is_free
from bench.broker.ports import free_ports
from bench.broker.versions import KAFKA_RESOURCES
from streamstore.errors import RunFailed

EXPORTER_VERSION = "1.0.1"
EXPORTER_POM = KAFKA_RESOURCES / "pom-jmx-exporter.xml"
STATE_FILE = "jmx-exporter.json"
CONFIG_FILE = "jmx-exporter.yaml"

# Only the MBeans a run reads: the broker-wide meters (no per-topic ones), the request handler
# and network processor idle figures, the produce request's total time and the under-replicated
# partitions. Each rule names its output as the standard Kafka config does.
EXPORTER_CONFIG = """\
# Written by bench/broker/exporter.py on every start of this node.
lowercaseOutputName: true
lowercaseOutputLabelNames: true
includeObjectNames:
  - "kafka.server:type=BrokerTopicMetrics,name=BytesInPerSec"
  - "kafka.server:type=BrokerTopicMetrics,name=BytesOutPerSec"
  - "kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec"
  - "kafka.server:type=KafkaRequestHandlerPool,name=RequestHandlerAvgIdlePercent"
  - "kafka.network:type=SocketServer,name=NetworkProcessorAvgIdlePercent"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,request=Produce"
  - "kafka.server:type=ReplicaManager,name=UnderReplicatedPartitions"
rules:
  - pattern: 'kafka.server<type=BrokerTopicMetrics, name=(BytesIn|BytesOut|MessagesIn)PerSec><>Count'
    name: kafka_server_brokertopicmetrics_$1_total
    type: COUNTER
  - pattern: 'kafka.server<type=KafkaRequestHandlerPool, name=RequestHandlerAvgIdlePercent><>Count'
    name: kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_count
    type: COUNTER
  - pattern: 'kafka.network<type=SocketServer, name=NetworkProcessorAvgIdlePercent><>Value'
    name: kafka_network_socketserver_networkprocessoravgidlepercent
    type: GAUGE
  - pattern: 'kafka.network<type=RequestMetrics, name=TotalTimeMs, request=Produce><>(50|99)thPercentile'
    name: kafka_network_requestmetrics_totaltimems
    type: GAUGE
    labels:
      request: Produce
      quantile: "0.$1"
  - pattern: 'kafka.server<type=ReplicaManager, name=UnderReplicatedPartitions><>Value'
    name: kafka_server_replicamanager_underreplicatedpartitions
    type: GAUGE
"""


def agent_cache_dir(version: str = EXPORTER_VERSION) -> Path:
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_root / "streamstore-bench" / f"jmx-exporter-{version}"


def provision_agent(version: str = EXPORTER_VERSION, timeout_s: float = MAVEN_TIMEOUT_S) -> tuple[Path | None, str | None]:
    """(the agent jar, None), or (None, why it cannot be had). Never raises: a broker without
    the agent still runs, only its metrics are missing."""
    folder = agent_cache_dir(version)
    jar = folder / f"jmx_prometheus_javaagent-{version}.jar"
    if jar.is_file():
        return jar, None
    with file_lock(folder.parent / f"jmx-exporter-{version}.lock"):
        if jar.is_file():
            return jar, None
        mvn = shutil.which("mvn")
        if mvn is None:
            return None, "the JMX exporter agent is not cached and mvn is not on PATH to fetch it"
        staging = folder.parent / f"jmx-exporter-{version}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        command = [mvn, "-q", "-B", "-f", str(EXPORTER_POM), f"-Dexporter.version={version}",
                   "dependency:copy-dependencies", "-DexcludeTransitive=true", f"-DoutputDirectory={staging}"]
        try:
            completed = run_bounded(command, timeout_s)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            return None, f"Maven did not fetch the JMX exporter agent {version} within {timeout_s:g} s"
        if completed.returncode != 0 or not (staging / jar.name).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            errors = [line.strip() for line in completed.stdout.splitlines() if "ERROR" in line]
            return None, f"Maven could not fetch the JMX exporter agent {version}: {errors[0] if errors else 'no jar'}"
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        return jar, None


def _previous_port(state_dir: Path) -> int | None:
    """The port the node's exporter had before, when it is free again: a node that a fault
    restarts keeps its endpoint, as it keeps its broker ports (and a run reading it goes on)."""
    try:
        port = json.loads((state_dir / STATE_FILE).read_text()).get("port")
    except (OSError, ValueError, AttributeError):
        return None
    # Free as the agent's server sees it (it binds with SO_REUSEADDR, as the broker does).
    return port if isinstance(port, int) and port_is_free(port) else None


def prepare_agent(state_dir: Path, wanted: bool = True) -> list[str]:
    """The JVM option that attaches the agent to the node about to start in state_dir (empty
    without the jar, or not wanted), with its port, config and URL (or the reason) recorded in
    the state dir."""
    jar, reason = provision_agent() if wanted else (None, "the node was started without the JMX exporter")
    record: dict[str, object] = {"version": EXPORTER_VERSION, "url": None, "reason": reason}
    options: list[str] = []
    port = None
    if jar is not None:
        try:
            # Below the ephemeral range, as the broker's own ports (bench/broker/ports.py says why).
            port = _previous_port(state_dir) or free_ports(1)[0]
        except RunFailed as error:
            record["reason"] = f"no free port for the JMX exporter: {error}"
    if jar is not None and port is not None:
        config = state_dir / CONFIG_FILE
        config.write_text(EXPORTER_CONFIG)
        # Loopback only, as the broker's own listeners: its metrics are nobody else's business.
        options = [f"-javaagent:{jar}=127.0.0.1:{port}:{config}"]
        record.update(url=f"http://127.0.0.1:{port}/metrics", port=port, config=str(config))
    (state_dir / STATE_FILE).write_text(json.dumps(record) + "\n")
    return options


def exporter_endpoint(state_dir: Path) -> tuple[str | None, str | None]:
    """(URL of the node's exporter, None) or (None, why it has none), from its state dir."""
    try:
        record = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None, "the node was started without the JMX exporter (by an earlier version of this tool)"
    except (OSError, ValueError) as error:
        return None, f"the node's {STATE_FILE} cannot be read: {error}"
    return record.get("url"), None if record.get("url") else record.get("reason") or "no reason recorded"


def warm_exporter(state_dir: Path, timeout_s: float = 30.0) -> None:
    """One scrape of a node that has just started: the exporter's first answer takes seconds on a
    loaded machine (classes, the JIT), which a run's first second must not pay. Best effort."""
    url, _reason = exporter_endpoint(state_dir)
    if url is not None:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                response.read()
        except OSError:
            pass  # a run that reads it says what it finds
