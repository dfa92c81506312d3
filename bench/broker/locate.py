"""Which embedded broker or cluster a command means: the one that answers at its address.

`find_embedded(address)` is the one lookup every command uses (`broker stop|status|logs`,
`chaos`, `failover-table`, `proxy`, and `ensure_broker` for every run): it reads the state dirs
under `.state/` of the working directory (a cluster's `cluster.json`, a single broker's
`server.properties` and pid files) and returns the one whose client ports (bound or advertised)
include a port of the address, as an `EmbeddedCluster` (the single broker is a 1-node cluster,
`EmbeddedCluster.of_node`). A running one wins over stopped ones; where two could still match,
one line names them and the flag that picks one (`--state-dir`). `--state-dir` names one
directly, wherever it is.

A broker started by this tool with its state elsewhere (another working dir, `--state-dir
/tmp/x`) is never acted on unasked: `answering_embedded(address)` finds it among the running
Kafka processes (their command line names the server.properties this tool wrote), so a command
that finds nothing can say exactly what to type.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from pathlib import Path

from bench.broker.cluster import LAYOUT_FILE, EmbeddedCluster
from bench.broker.embedded import DEFAULT_KAFKA_VERSION, PROPERTIES_HEADER, STATE_ROOT, EmbeddedBroker
from bench.broker.probe import parse_bootstrap_servers
from streamstore.errors import UsageError

LOCAL_HOSTS = ("localhost", "127.0.0.1")
# Listeners clients do not use: the quorum's and the replication one.
_INTERNAL_LISTENERS = ("CONTROLLER", "BROKER")


def local_ports(address: str) -> set[int]:
    """The ports of the address's local (127.0.0.1/localhost) servers: where an embedded one can be."""
    return {port for host, port in parse_bootstrap_servers(address) if host in LOCAL_HOSTS}


def _properties(path: Path) -> dict[str, str] | None:
    """server.properties as written by the embedded broker, else None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    if not text.startswith(PROPERTIES_HEADER):
        return None
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def _listener_ports(properties: dict[str, str], key: str, names: Iterable[str] | None = None) -> list[int]:
    """Ports of the listeners in properties[key] ("NAME://host:port,..."): of `names`, or of the
    client listeners when names is None."""
    ports = []
    for listener in filter(None, properties.get(key, "").split(",")):
        name, _, address = listener.partition("://")
        wanted = name in names if names is not None else name not in _INTERNAL_LISTENERS
        if wanted and address.rpartition(":")[2].isdigit():
            ports.append(int(address.rpartition(":")[2]))
    return ports


def recorded(state_dir: Path | str) -> EmbeddedCluster | None:
    """The cluster (cluster.json) or single broker (its server.properties) recorded in state_dir,
    as it was started; None when state_dir holds neither."""
    state_dir = Path(state_dir).resolve()
    if EmbeddedCluster.exists(state_dir):
        return EmbeddedCluster.open(state_dir)
    properties = _properties(state_dir / "server.properties")
    if properties is None:
        return None
    bound, controller = _listener_ports(properties, "listeners"), _listener_ports(properties, "listeners", ["CONTROLLER"])
    if not bound or not controller:
        return None
    version_path = state_dir / "kafka.version"
    version = version_path.read_text().strip() if version_path.is_file() else DEFAULT_KAFKA_VERSION
    return EmbeddedCluster.of_node(EmbeddedBroker(port=bound[0], controller_port=controller[0], state_dir=state_dir,
                                                  kafka_version=version))


def client_ports(cluster: EmbeddedCluster) -> set[int]:
    """Every port clients may reach the cluster at: each node's bound and advertised client port."""
    ports = set()
    for node in cluster.nodes:
        ports |= {node.port, node.config.advertised_port or node.port}
        properties = _properties(node.config.properties_path) or {}
        ports |= set(_listener_ports(properties, "advertised.listeners"))
    return ports


def kind(nodes: int) -> str:
    """`single broker` / `3-node cluster`."""
    return "single broker" if nodes == 1 else f"{nodes}-node cluster"


def describe(cluster: EmbeddedCluster) -> str:
    """`the single broker in DIR` / `the 3-node cluster in DIR`."""
    return f"the {kind(len(cluster.nodes))} in {cluster.state_dir}"


def recorded_under(root: Path = STATE_ROOT) -> list[EmbeddedCluster]:
    """Every embedded broker and cluster recorded in a state dir directly under root."""
    found = []
    with contextlib.suppress(OSError):
        for state_dir in sorted(path for path in root.iterdir() if path.is_dir()):
            with contextlib.suppress(UsageError):  # a layout this version cannot read is nobody's
                cluster = recorded(state_dir)
                if cluster is not None:
                    found.append(cluster)
    return found


def find_embedded(address: str, state_dir: Path | str | None = None, nodes: int | None = None, *,
                  running: bool = False, nodes_flag: bool = False, root: Path = STATE_ROOT) -> EmbeddedCluster | None:
    """The embedded broker or cluster that answers (or answered) at address, from its state.

    state_dir: that one, running or not (its cluster.json, else the single broker recorded
    there; None when it holds neither). Otherwise the one among the state dirs under root whose
    client ports include a local port of address, of `nodes` nodes when given (1: the single
    broker). running: only a running one counts (None when none runs); else a running one wins,
    and a stopped one is returned when it is the only match. UsageError when two remain: one line naming them and `--state-dir` (and
    `--nodes N` when the command has that flag and their sizes differ).
    """
    if state_dir is not None:
        cluster = recorded(state_dir)
        if cluster is not None and nodes is not None and len(cluster.nodes) != nodes:
            raise UsageError(f"--nodes {nodes}: {cluster.state_dir} holds a {kind(len(cluster.nodes))}")
        return cluster
    ports = local_ports(address)
    matches = [cluster for cluster in recorded_under(root)
               if client_ports(cluster) & ports and (nodes is None or len(cluster.nodes) == nodes)]
    live = [cluster for cluster in matches if cluster.is_running()]
    if running or live:
        matches = live
    if len(matches) > 1:
        which = " and ".join(describe(cluster) for cluster in matches)
        state = ("both run" if live else "neither runs") if len(matches) == 2 else ("all run" if live else "none runs")
        sizes = sorted({len(cluster.nodes) for cluster in matches})
        flag = ("--state-dir" if not nodes_flag or len(sizes) < len(matches)
                else " or ".join(f"--nodes {size}" for size in sizes) + " (or --state-dir)")
        raise UsageError(f"{len(matches)} embedded brokers could be the one at {address} ({which}; {state}): "
                         f"pick one with {flag}")
    return matches[0] if matches else None


@dataclasses.dataclass(frozen=True)
class Answering:
    """A running broker or cluster started by this tool, found by its processes."""

    state_dir: Path
    nodes: int
    pids: tuple[int, ...]

    def describe(self) -> str:
        return f"the embedded {kind(self.nodes)} in {self.state_dir}"


def _kafka_processes() -> Iterable[tuple[int, Path]]:
    """(pid, server.properties path) of every running Kafka JVM started from a properties file."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        arguments = [argument for argument in arguments if argument]
        if b"kafka.Kafka" in arguments and arguments[-1].endswith(b"server.properties"):
            yield int(entry.name), Path(arguments[-1].decode(errors="replace"))


def answering_embedded(address: str) -> Answering | None:
    """The running broker or cluster started by this tool (its server.properties says so) that
    listens at a local port of address; None when none does."""
    ports = local_ports(address)
    for pid, path in _kafka_processes():
        properties = _properties(path)
        if properties is None or not ports & set(_listener_ports(properties, "listeners")
                                                 + _listener_ports(properties, "advertised.listeners")):
            continue
        node_dir = path.parent
        if (node_dir.parent / LAYOUT_FILE).is_file():
            cluster = EmbeddedCluster.open(node_dir.parent)
            pids = tuple(node.pid for node in cluster.nodes if node.pid is not None)
            return Answering(node_dir.parent, len(cluster.nodes), pids or (pid,))
        return Answering(node_dir, 1, (pid,))
    return None
