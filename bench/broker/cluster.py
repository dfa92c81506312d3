"""The embedded multi-node Kafka cluster: N real Apache Kafka nodes on 127.0.0.1 in KRaft mode.

Every node is a combined broker+controller (`process.roles=broker,controller`) and the
controller quorum is static: all N nodes vote (`controller.quorum.voters`). Why combined: a
separate quorum would add 3 more JVMs on a 2-core machine, and with combined nodes "kill the
active controller" kills a node that also leads partitions and serves clients, the harder and
more realistic fault. A quorum of N survives the loss of (N - 1) // 2 nodes: one of 3.

Layout: node k (1-based) has its own client, inter-broker and controller port, its state
folder `<state_dir>/node-<k>/` (data, logs, server.properties, pid file) and is started by the
same `KafkaNode` code as the single broker. `<state_dir>/cluster.json` records the layout
(ports, cluster id, heap), so `broker status|logs --node K|stop` work from a later command.
With `--port P` the ports are consecutive: clients P..P+N-1, inter-broker P+N.., controllers
P+2N.. (or from `--controller-port`).

Each node has three listeners: CLIENT (bound at `port`, advertised at `advertised_port`,
default the same), BROKER (replication) and CONTROLLER. A TCP proxy can own a node's advertised
port to cut that node off from clients while replication continues; start the proxy first.

Node control API, for fault injection (all methods return once the effect is visible):

    cluster = EmbeddedCluster(state_dir, nodes=3, port=39100)   # or EmbeddedCluster.open(state_dir)
    cluster.start()                      # every node, concurrently; waits until all N brokers are registered
    cluster.bootstrap_servers            # "127.0.0.1:P1,127.0.0.1:P2,..." (advertised addresses)
    cluster.nodes                        # [KafkaNode], node_id 1..N
    node = cluster.node(2)               # node_id, port, pid, bootstrap_servers, log_path, state_dir
    node.kill()                          # SIGKILL; returns the pid once the process is gone
    node.start()                         # restart (after kill/stop); waits until it answers
    node.stop(grace_s=30)                # clean (controlled) shutdown, SIGKILL after the grace
    node.pause(); node.resume()          # SIGSTOP / SIGCONT
    node.is_running()
    cluster.stop()                       # the whole cluster, clean then killed after the grace
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from bench.broker.embedded import (
    CLUSTER_NODE_HEAP,
    DEFAULT_KAFKA_VERSION,
    DEFAULT_PORT,
    STATE_ROOT,
    KafkaNode,
    NodeConfig,
    check_kafka_version,
    heap_opts,
    new_cluster_id,
    replicated_cluster_settings,
)
from streamstore.config import admin_config
from streamstore.errors import RunFailed, UsageError

LAYOUT_FILE = "cluster.json"
_LAYOUT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class NodePorts:
    node_id: int
    port: int
    broker_port: int
    controller_port: int
    advertised_port: int


@dataclasses.dataclass(frozen=True)
class ClusterLayout:
    """What cluster.json records: enough to find, restart and stop every node later."""

    nodes: tuple[NodePorts, ...]
    cluster_id: str
    kafka_version: str = DEFAULT_KAFKA_VERSION
    heap: str = CLUSTER_NODE_HEAP

    @classmethod
    def consecutive(cls, nodes: int, port: int, controller_port: int | None = None,
                    advertised_ports: Sequence[int] | None = None, **fields) -> ClusterLayout:
        if nodes < 2:
            raise UsageError(f"--nodes {nodes}: a cluster has 2 or more nodes (1 is the single broker)")
        if advertised_ports is not None and len(advertised_ports) != nodes:
            raise UsageError(f"--advertised-ports: expected {nodes} ports (one per node), got {len(advertised_ports)}")
        first_controller = controller_port if controller_port is not None else port + 2 * nodes
        return cls(tuple(
            NodePorts(k + 1, port + k, port + nodes + k, first_controller + k,
                      advertised_ports[k] if advertised_ports else port + k)
            for k in range(nodes)
        ), **fields)

    def to_json(self) -> str:
        return json.dumps({"layout_version": _LAYOUT_VERSION, **dataclasses.asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> ClusterLayout:
        try:
            values = json.loads(text)
            if values.pop("layout_version") != _LAYOUT_VERSION:
                raise ValueError("unknown layout_version")
            nodes = tuple(NodePorts(**node) for node in values.pop("nodes"))
            return cls(nodes=nodes, **values)
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{source} is not a cluster layout this version understands ({error})") from None

    def ports(self) -> list[int]:
        return [port for node in self.nodes for port in (node.port, node.broker_port, node.controller_port)]


def wait_until_all_listed(nodes: Sequence[KafkaNode], timeout_s: float, state_dir: Path) -> None:
    """Returns once each node's metadata lists all nodes as brokers; RunFailed after timeout_s."""
    expected = {node.node_id for node in nodes}
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        admin = AdminClient(admin_config(node.config.bound_address, {"log_level": 0}))
        listed: set[int] = set()
        while listed != expected:
            with contextlib.suppress(KafkaException):
                listed = set(admin.list_topics(timeout=2.0).brokers)
            if listed == expected:
                break
            if time.monotonic() > deadline:
                raise RunFailed(f"node {node.node_id} lists brokers {sorted(listed)} after {timeout_s:.0f} s, "
                                f"not all of 1..{len(nodes)} (logs: {state_dir}/node-*/logs)")
            time.sleep(0.2)


class EmbeddedCluster:
    """N combined broker+controller nodes, one static quorum, owned through a state dir."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        nodes: int = 3,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        advertised_ports: Sequence[int] | None = None,
        kafka_version: str = DEFAULT_KAFKA_VERSION,
        heap: str | None = None,
        layout: ClusterLayout | None = None,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        """A new layout from nodes/port/..., or `layout` as given (explicit ports, e.g. free ones).
        heap: per node, e.g. "4g" (default: the recorded one on a restart, else CLUSTER_NODE_HEAP)."""
        # Absolute, as a single broker's: its nodes are recognized by paths on their command lines.
        self.state_dir = (Path(state_dir) if state_dir else STATE_ROOT / f"cluster-{port}").resolve()
        if heap is not None:
            heap_opts(heap)  # refuse a bad size before anything starts
        if layout is None:
            recorded = self._recorded_layout()
            layout = ClusterLayout.consecutive(
                nodes, port, controller_port, advertised_ports,
                cluster_id=recorded.cluster_id if recorded else new_cluster_id(),
                kafka_version=check_kafka_version(kafka_version),
                # A restart keeps the heap the cluster was started with unless told otherwise.
                heap=heap or (recorded.heap if recorded else CLUSTER_NODE_HEAP),
            )
            if recorded is not None and recorded.nodes != layout.nodes:
                raise UsageError(
                    f"{self.state_dir} holds another cluster ({len(recorded.nodes)} nodes, client ports "
                    f"{', '.join(str(n.port) for n in recorded.nodes)}): choose another --state-dir"
                )
        self.layout: ClusterLayout | None = layout
        if len(set(self.layout.ports())) != len(self.layout.ports()):
            raise UsageError(f"cluster ports overlap: {self.layout.ports()}")
        self.extra_properties = dict(extra_properties or {})
        self.nodes = [KafkaNode(self._node_config(ports), self.layout.cluster_id) for ports in self.layout.nodes]

    @classmethod
    def open(cls, state_dir: Path | str) -> EmbeddedCluster:
        """The cluster recorded in state_dir/cluster.json (UsageError when there is none)."""
        path = Path(state_dir) / LAYOUT_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UsageError(f"no embedded cluster in {state_dir} (no {LAYOUT_FILE})") from None
        return cls(state_dir=state_dir, layout=ClusterLayout.from_json(text, path))

    @classmethod
    def of_node(cls, node: KafkaNode) -> EmbeddedCluster:
        """One node (the single embedded broker) as a 1-node cluster, with its own settings and
        state dir and no cluster.json, so a command starts, stops and inspects both alike."""
        cluster = cls.__new__(cls)
        cluster.state_dir, cluster.layout, cluster.extra_properties, cluster.nodes = node.state_dir, None, {}, [node]
        return cluster

    @staticmethod
    def exists(state_dir: Path | str) -> bool:
        return (Path(state_dir) / LAYOUT_FILE).is_file()

    def _node_config(self, ports: NodePorts) -> NodeConfig:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.layout.nodes)
        return NodeConfig(
            node_id=ports.node_id,
            port=ports.port,
            broker_port=ports.broker_port,
            controller_port=ports.controller_port,
            advertised_port=ports.advertised_port,
            state_dir=self.state_dir / f"node-{ports.node_id}",
            quorum_voters=voters,
            settings=replicated_cluster_settings(len(self.layout.nodes)),
            kafka_version=self.layout.kafka_version,
            heap_opts=heap_opts(self.layout.heap),
            extra_properties=self.extra_properties,
        )

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def version(self) -> str:
        return self.nodes[0].version

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise UsageError(f"--node {node_id}: the cluster has nodes 1..{len(self.nodes)}")

    def is_running(self) -> bool:
        """True when any node runs."""
        return any(node.is_running() for node in self.nodes)

    def _recorded_layout(self) -> ClusterLayout | None:
        return recorded_layout(self.state_dir)

    def _record_layout(self) -> None:
        """Writes cluster.json (a restart may change the heap or Kafka version, never the nodes)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / LAYOUT_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(self.layout.to_json())
        temporary.rename(path)

    def start(self, timeout_s: float = 180.0) -> bool:
        """Starts every node that is not running, concurrently (no node answers before a quorum
        of controllers runs), and waits until all N brokers are registered.

        Returns False when every node already ran. A failed start stops the nodes it started.
        """
        if self.layout is not None:
            self._record_layout()
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            futures = {pool.submit(node.start, timeout_s): node for node in self.nodes}
            concurrent.futures.wait(futures)
        failures = [future.exception() for future in futures if future.exception() is not None]
        started = [node for future, node in futures.items() if future.exception() is None and future.result()]
        if failures:
            _stop_nodes(started, grace_s=10)
            raise failures[0]
        try:
            self.wait_until_complete(timeout_s)
        except RunFailed:
            _stop_nodes(started, grace_s=10)
            raise
        return bool(started)

    def wait_until_complete(self, timeout_s: float = 60.0) -> None:
        """Waits until every node's own metadata lists every node as a broker (each broker's
        metadata cache catches up on its own, so asking one node is not enough)."""
        wait_until_all_listed(self.nodes, timeout_s, self.state_dir)

    def stop(self, grace_s: float = 30.0) -> bool:
        """Clean shutdown of every node at once (each broker's controlled shutdown needs the
        controller quorum, which stops last within each node), SIGKILL after grace_s.

        Returns False when no node was running.
        """
        return _stop_nodes(self.nodes, grace_s)


def _stop_nodes(nodes: Iterable[KafkaNode], grace_s: float) -> bool:
    """Stops the nodes at once; False when there were none."""
    nodes = list(nodes)
    if not nodes:
        return False
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        return any(list(pool.map(lambda node: node.stop(grace_s), nodes)))


def recorded_layout(state_dir: Path) -> ClusterLayout | None:
    """The layout a cluster's state dir records in cluster.json, if any."""
    path = state_dir / LAYOUT_FILE
    with contextlib.suppress(FileNotFoundError):
        return ClusterLayout.from_json(path.read_text(), path)
    return None
