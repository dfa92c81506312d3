"""Shared fixtures: a real Kafka broker for the whole session, and a fresh topic per test.

The broker is `KAFKA_BOOTSTRAP_SERVERS` when set, otherwise an embedded Apache Kafka broker
on free ports with its state under pytest's tmp dir, so concurrent pytest runs never collide.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import uuid

import pytest

from bench.broker.cluster import ClusterLayout, EmbeddedCluster, NodePorts
from bench.broker.embedded import EmbeddedBroker, new_cluster_id
from bench.broker.probe import broker_answers

# Generous: other engineers' brokers and tests share the 2 cores.
BROKER_START_TIMEOUT_S = 180.0


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a time bound, `kill`) ends the session as Ctrl+C does: fixtures are torn down, so the
    # brokers and clusters they started (daemons of their own) are stopped, not left behind.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--repeat", type=int, default=1, metavar="N",
                     help="run each selected test N times in a row (tests/stress.py, make stress)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    count = metafunc.config.getoption("repeat")
    if count > 1:
        metafunc.fixturenames.append("repetition")
        metafunc.parametrize("repetition", range(1, count + 1), indirect=True, ids=lambda i: f"{i}-of-{count}")


@pytest.fixture
def repetition(request: pytest.FixtureRequest) -> int:
    """Which of the --repeat runs of a test this is (1 when not repeated)."""
    return getattr(request, "param", 1)


def free_ports(count: int) -> list[int]:
    """count distinct ports nothing listens on now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def free_port_pair() -> tuple[int, int]:
    """Two ports nothing listens on now (client port, controller port)."""
    client, controller = free_ports(2)
    return client, controller


def free_cluster_layout(nodes: int = 3) -> ClusterLayout:
    """A cluster layout on free ports (client, inter-broker, controller per node)."""
    ports = free_ports(3 * nodes)
    return ClusterLayout(tuple(
        NodePorts(k + 1, ports[3 * k], ports[3 * k + 1], ports[3 * k + 2], ports[3 * k]) for k in range(nodes)
    ), cluster_id=new_cluster_id())


def _started_embedded_broker(tmp_path_factory: pytest.TempPathFactory, name: str) -> EmbeddedBroker:
    port, controller_port = free_port_pair()
    broker = EmbeddedBroker(port=port, controller_port=controller_port, state_dir=tmp_path_factory.mktemp(name))
    broker.start(timeout_s=BROKER_START_TIMEOUT_S)
    return broker


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory):
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        if not broker_answers(external, timeout_s=15.0):
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={external}: no Kafka broker answers there")
        yield external
        return
    broker = _started_embedded_broker(tmp_path_factory, "session-broker")
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def embedded_broker(tmp_path_factory: pytest.TempPathFactory):
    """A broker process this test module owns, so it may kill or pause it."""
    broker = _started_embedded_broker(tmp_path_factory, "owned-broker")
    try:
        yield broker
    finally:
        broker.stop(grace_s=10)


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A 3-node embedded cluster this test module owns, so it may kill, stop or pause nodes.
    Tests that do must leave every node running again."""
    cluster = EmbeddedCluster(state_dir=tmp_path_factory.mktemp("cluster"), layout=free_cluster_layout(3))
    try:
        cluster.start(timeout_s=BROKER_START_TIMEOUT_S)
        yield cluster
    finally:
        cluster.stop(grace_s=30)


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    # Topic names allow [a-zA-Z0-9._-] only; parametrized test names carry brackets etc.
    test_name = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name[:40]).strip("-")
    return f"test-{test_name}-{uuid.uuid4().hex[:8]}"
