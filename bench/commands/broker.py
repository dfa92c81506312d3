"""`python -m bench broker start|stop|status|logs|provision`: the embedded Apache Kafka broker,
or with `--nodes N` (N >= 2) the embedded N-node cluster (bench/broker/cluster.py)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.broker.cluster import EmbeddedCluster
from bench.broker.embedded import (
    CLUSTER_NODE_HEAP,
    DEFAULT_KAFKA_VERSION,
    DEFAULT_PORT,
    EmbeddedBroker,
    KafkaNode,
    heap_opts,
    provision_jars,
)
from bench.broker.exporter import EXPORTER_VERSION, exporter_endpoint, provision_agent
from bench.broker.locate import answering_embedded, describe, find_embedded, recorded_under
from bench.broker.probe import broker_answers
from bench.broker.settings import JVM_PERFORMANCE_OPTS_VARIABLE, custom_jvm_performance_opts
from bench.broker.versions import SUPPORTED_RELEASES
from streamstore.errors import UsageError

NAME = "broker"
HELP = "start, stop, inspect or provision the embedded Apache Kafka broker (KRaft, 127.0.0.1)"

_FOLLOW_POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("start", "stop", "status", "logs", "provision"),
        help="provision only downloads the broker jars (for CI and first-run setup)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="client port on 127.0.0.1 (default %(default)s)")
    parser.add_argument("--controller-port", type=int, help="KRaft controller port (default: --port + 1)")
    parser.add_argument(
        "--kafka-version", default=DEFAULT_KAFKA_VERSION,
        help=f"Apache Kafka version, {SUPPORTED_RELEASES} (default %(default)s)"
    )
    parser.add_argument("--state-dir", type=Path,
                        help="data, logs and pid file (start: default .state/broker-<port>, a cluster "
                             ".state/cluster-<port>; status/stop/logs: default the one under .state/ at --port)")
    parser.add_argument("--nodes", type=int,
                        help="start: N >= 2 runs an N-node cluster (client ports --port.., default 1 = one broker); "
                             "status/stop/logs find the broker or cluster at --port by itself, --nodes N picks "
                             "one of N nodes")
    parser.add_argument("--node", type=int, default=1, help="logs: which cluster node (default %(default)s)")
    parser.add_argument("--heap", help=f"JVM heap and direct-memory cap per broker (default: 4g for one broker, "
                                       f"{CLUSTER_NODE_HEAP} per cluster node)")
    parser.add_argument("--advertised-ports", help="start, cluster: the client port each node advertises "
                                                   "(comma-separated, one per node; default the bound ports)")
    parser.add_argument("--timeout", type=float, default=120.0, help="start: seconds to wait for the broker to answer")
    parser.add_argument("-n", "--lines", type=int, default=40, help="logs: how many lines to show (default %(default)s)")
    parser.add_argument("-f", "--follow", action="store_true", help="logs: keep printing new lines until Ctrl+C")


def run(args: argparse.Namespace) -> int:
    if args.action == "provision":
        return _provision(args.kafka_version)
    return {"start": _start, "stop": _stop, "status": _status, "logs": _logs}[args.action](_cluster(args), args)


def _cluster(args: argparse.Namespace) -> EmbeddedCluster:
    """The cluster the flags name; the single broker is a 1-node one.

    start: --nodes N >= 2 (an existing layout in the state dir must match). Other actions: the
    broker or cluster that answers (or answered) at --port, from its state (bench/broker/locate.py):
    --state-dir's, else the one under .state/ whose client ports include --port; when none, the
    single broker's default state dir (stop: when none runs).
    """
    if args.nodes is not None and args.nodes < 1:
        raise UsageError(f"--nodes {args.nodes}: expected 1 or more")
    if args.action == "start":
        if (args.nodes or 1) == 1:
            if args.advertised_ports:
                raise UsageError("--advertised-ports: only for a cluster (--nodes 2 or more)")
            return _single_broker(args)
        return EmbeddedCluster(
            state_dir=args.state_dir, nodes=args.nodes, port=args.port, controller_port=args.controller_port,
            advertised_ports=_ports(args.advertised_ports) if args.advertised_ports else None,
            kafka_version=args.kafka_version, heap=args.heap,
        )
    found = find_embedded(_address(args), args.state_dir, args.nodes, running=args.action == "stop", nodes_flag=True)
    if found is not None:
        return found
    if args.nodes is not None and args.nodes > 1:
        where = args.state_dir or f".state/ for port {args.port}"
        raise UsageError(f"no embedded {args.nodes}-node cluster in {where} (no cluster.json)")
    return _single_broker(args)


def _address(args: argparse.Namespace) -> str:
    return f"127.0.0.1:{args.port}"


def _single_broker(args: argparse.Namespace) -> EmbeddedCluster:
    return EmbeddedCluster.of_node(EmbeddedBroker(
        port=args.port, controller_port=args.controller_port, state_dir=args.state_dir, kafka_version=args.kafka_version,
        **({"heap_opts": heap_opts(args.heap)} if args.heap else {}),
    ))


def _the_single_broker(cluster: EmbeddedCluster) -> KafkaNode | None:
    """The node when the cluster is the single broker, which keeps its own wording."""
    return cluster.nodes[0] if len(cluster.nodes) == 1 else None


def _ports(text: str) -> list[int]:
    try:
        return [int(port) for port in text.split(",")]
    except ValueError:
        raise UsageError(f"--advertised-ports {text!r}: expected comma-separated port numbers") from None


def _provision(kafka_version: str) -> int:
    began = time.monotonic()
    libs, downloaded = provision_jars(kafka_version)
    jar_count = len(list(libs.glob("*.jar")))
    if downloaded:
        print(f"Apache Kafka {kafka_version}: downloaded {jar_count} jars to {libs} in {time.monotonic() - began:.1f} s")
    else:
        print(f"Apache Kafka {kafka_version}: {jar_count} jars already in {libs}")
    # The broker runs without its metrics agent, so a missing one is said, not an error.
    agent, reason = provision_agent()
    print(f"JMX exporter {EXPORTER_VERSION}: {agent}" if agent else
          f"JMX exporter {EXPORTER_VERSION}: not provisioned ({reason}); brokers start without their metrics")
    return 0


def _start(cluster: EmbeddedCluster, args: argparse.Namespace) -> int:
    began = time.monotonic()
    started = cluster.start(timeout_s=args.timeout)
    elapsed = time.monotonic() - began
    single = _the_single_broker(cluster)
    what = (f"Apache Kafka {single.version} at {single.bootstrap_servers} (pid {single.pid})" if single
            else f"a {len(cluster.nodes)}-node Apache Kafka {cluster.version} cluster")
    print(f"started {what} in {elapsed:.1f} s" if started else f"already running: {what}")
    if single:
        if started:
            print(f"log: {single.log_path}")
    else:
        for node in cluster.nodes:
            print(f"  node {node.node_id}: {node.bootstrap_servers} (pid {node.pid}, log {node.log_path})")
        print(f"bootstrap servers: {cluster.bootstrap_servers}")
        print(f"state: {cluster.state_dir}")
    custom = custom_jvm_performance_opts()
    if started and custom:
        print(f"JVM options from {JVM_PERFORMANCE_OPTS_VARIABLE} (instead of Kafka's defaults): {custom}")
    return 0


def _stop(cluster: EmbeddedCluster, args: argparse.Namespace) -> int:
    began = time.monotonic()
    stopped = cluster.stop()
    single = _the_single_broker(cluster)
    if stopped:
        what = (f"the broker at {single.bootstrap_servers}" if single
                else f"the {len(cluster.nodes)}-node cluster in {cluster.state_dir}")
        print(f"stopped {what} in {time.monotonic() - began:.1f} s")
        return 0
    answering = answering_embedded(_address(args))
    if answering is not None:
        # Found by its process, not by the state the flags name: say what stops it, never stop it unasked.
        if args.state_dir is not None:
            why = f"not the one in {Path(args.state_dir).resolve()}"
        elif args.nodes and args.nodes != answering.nodes:
            why = f"not {'a single broker' if args.nodes == 1 else f'a {args.nodes}-node cluster'} (--nodes {args.nodes})"
        else:
            why = "with its state outside .state/ here"
        raise UsageError(f"nothing stopped: the broker at {_address(args)} is {answering.describe()} "
                         f"(pid{'s' if len(answering.pids) > 1 else ''} {', '.join(map(str, answering.pids))}), {why}; to stop it, type: "
                         f"python -m bench broker stop --state-dir {answering.state_dir}")
    if args.state_dir is None:
        print(f"not running: no embedded broker under .state/ runs at {_address(args)}" + _running_elsewhere(args))
    else:
        print(f"not running: no embedded broker in {cluster.state_dir}" if single
              else f"not running: no node of the embedded cluster in {cluster.state_dir} runs")
    return 0


def _running_elsewhere(args: argparse.Namespace) -> str:
    """`; the 3-node cluster in DIR runs: python -m bench broker stop --port P` for each broker
    under .state/ that runs."""
    others = [cluster for cluster in recorded_under() if cluster.is_running()]
    return "".join(f"; {describe(other)} runs: python -m bench broker stop --port {other.nodes[0].port}"
                   for other in others)


def _status(cluster: EmbeddedCluster, args: argparse.Namespace) -> int:
    nodes = [(node, node.pid) for node in cluster.nodes]
    single = _the_single_broker(cluster)
    if single is not None:
        _, pid = nodes[0]
        if pid is not None:
            print(f"running: Apache Kafka {single.version} at {single.bootstrap_servers} (pid {pid}, {_answering(single)})")
            print(f"state: {single.state_dir}")
            print(f"metrics: {_metrics(single)}")
        else:
            print(f"stopped: no embedded broker in {single.state_dir}")
            answering = answering_embedded(_address(args))
            if answering is not None:
                print(f"note: {answering.describe()} answers at {_address(args)}: "
                      f"python -m bench broker status --state-dir {answering.state_dir}")
            elif broker_answers(single.bootstrap_servers, timeout_s=2.0):
                print(f"note: another Kafka broker answers at {single.bootstrap_servers}")
        return 0
    running = sum(pid is not None for _, pid in nodes)
    print(f"cluster: {running} of {len(nodes)} nodes running, Apache Kafka {cluster.version}, state {cluster.state_dir}")
    for node, pid in nodes:
        if pid is None:
            print(f"  node {node.node_id}: not running ({node.bootstrap_servers})")
        else:
            print(f"  node {node.node_id}: running at {node.bootstrap_servers} (pid {pid}, {_answering(node)}), "
                  f"metrics {_metrics(node)}")
    return 0


def _metrics(node: KafkaNode) -> str:
    """Where the node's JMX exporter serves its metrics, or why it has none."""
    url, reason = exporter_endpoint(node.config.state_dir)
    return url or f"none ({reason})"


def _answering(node: KafkaNode) -> str:
    return "answering" if broker_answers(node.config.bound_address, timeout_s=5.0) else "NOT answering"


def _logs(cluster: EmbeddedCluster, args: argparse.Namespace) -> int:
    # --node picks a cluster's node; the single broker ignores it.
    broker = _the_single_broker(cluster) or cluster.node(args.node)
    if not broker.log_path.exists():
        print(f"no broker log yet: {broker.log_path}")
        return 0
    for line in broker.log_tail(args.lines):
        print(line)
    if args.follow:
        with open(broker.log_path, errors="replace") as log:
            log.seek(0, 2)
            try:
                while True:
                    line = log.readline()
                    if line:
                        print(line, end="", flush=True)
                    else:
                        time.sleep(_FOLLOW_POLL_S)
            except KeyboardInterrupt:
                pass
    return 0
