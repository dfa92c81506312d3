"""Shared fixtures: a real Kafka broker for the whole session, and a fresh topic per test.

The broker is `KAFKA_BOOTSTRAP_SERVERS` when set, otherwise an embedded Apache Kafka broker
on free ports with its state under pytest's tmp dir, so concurrent pytest runs never collide.

Under pytest-xdist (`make test` runs `-n N --dist loadgroup`) each worker is its own session:
it starts its own broker on its own free ports under its own tmp dir. The brokers a test may
fault are shared: the 3-node cluster (`kafka_cluster`) once per run, the single broker
(`embedded_broker`) once per module; every test that uses one is put in one xdist group, so
they all run on the worker that owns it, one after another. Tests using a module-scoped fixture are grouped by module for the same reason.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import pytest

from bench.broker.cluster import ClusterLayout, EmbeddedCluster, NodePorts
from bench.broker.embedded import EmbeddedBroker, new_cluster_id
from bench.broker.ports import free_ports as chosen_free_ports
from bench.broker.probe import broker_answers
from bench.broker.settings import CLUSTER_NODE_HEAP, JVM_PERFORMANCE_OPTS_VARIABLE, heap_opts

# Generous: other engineers' brokers and tests share the 2 cores.
BROKER_START_TIMEOUT_S = 180.0

# A broker that tests fault carries order traffic only: the heap of a cluster node, not the
# 4 GiB the session broker needs for the 1 GB large-message test.
FAULTED_BROKER_HEAP = heap_opts(CLUSTER_NODE_HEAP)

# Brokers a test may fault: fixture name -> the xdist group that keeps their tests on one worker
# ({module}: one per test module).
SHARED_BROKER_GROUPS = {"kafka_cluster": "kafka-cluster", "embedded_broker": "owned-broker-{module}"}


# The JVM options of every broker the tests start (the embedded broker reads them as Kafka's
# launcher does, bench/broker/settings.py), also through `python -m bench` in a subprocess: C1
# only and the serial collector. A test broker lives minutes; with Kafka's defaults, C2 compiling
# its hot paths took about as much CPU as its traffic (measured: a broker start 6.9 -> 4.5 s of
# CPU, a 10 s run at 2,000 msg/s 9.3 -> 4.8 s), on a suite that is bound by CPU.
TEST_BROKER_JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(JVM_PERFORMANCE_OPTS_VARIABLE, TEST_BROKER_JVM_OPTS)
    # SIGTERM (a time bound, `kill`) ends the session as Ctrl+C does: fixtures are torn down, so the
    # brokers and clusters they started (daemons of their own) are stopped, not left behind.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    _check_xdist_groups(config)


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


def free_ports(count: int, consecutive: bool = False) -> list[int]:
    """count distinct ports nothing listens on now, none of them one an outgoing connection may
    take, reserved from every other process's choice while our broker starts."""
    return chosen_free_ports(count, consecutive=consecutive)


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


def _xdist_group(item: pytest.Item) -> str | None:
    """The group a test must share a worker with, or None when it may run anywhere."""
    names = set(getattr(item, "fixturenames", ()))
    for fixture, group in SHARED_BROKER_GROUPS.items():
        if fixture in names:
            return group.format(module=item.module.__name__)
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    if any(defs and defs[-1].scope == "module" for defs in definitions):
        return item.module.__name__
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (--dist loadgroup)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Slow tests first (stable otherwise): started last, one of them would be the run's tail.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        group = _xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


class _GroupsTakeEffect:
    """--dist loadgroup works by a suffix pytest-xdist writes into each grouped test's node id; with a
    pytest that ignores it (structured node ids, pytest 9.2: pytest-xdist issue 1386) the groups
    would be spread over workers without a word, each starting its own cluster. Refuse that."""

    @pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook wrote the suffixes
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        lost = [item.nodeid for item in items
                if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]]
        if lost:
            raise pytest.UsageError(f"--dist loadgroup has no effect with pytest {pytest.__version__} and this "
                                    f"pytest-xdist ({lost[0]} has no group suffix): install the versions pyproject.toml pins")


def _check_xdist_groups(config: pytest.Config) -> None:
    config.pluginmanager.register(_GroupsTakeEffect(), "bench-xdist-groups-take-effect")
    # The same said up front, where the message is shown (a worker's error loses it).
    if config.getoption("dist", None) == "loadgroup" and not hasattr(config, "workerinput"):
        import xdist
        if _version(pytest.__version__) >= (9, 2) and _version(xdist.__version__) <= (3, 8):
            raise pytest.UsageError(f"--dist loadgroup does not group with pytest {pytest.__version__} and pytest-xdist "
                                    f"{xdist.__version__} (pytest-xdist issue 1386): pip install -e '.[test]' "
                                    "installs the pytest that pyproject.toml pins")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def _started_embedded_broker(tmp_path_factory: pytest.TempPathFactory, name: str, **options) -> EmbeddedBroker:
    port, controller_port = free_port_pair()
    broker = EmbeddedBroker(port=port, controller_port=controller_port, state_dir=tmp_path_factory.mktemp(name), **options)
    broker.start(timeout_s=BROKER_START_TIMEOUT_S)
    return broker


@pytest.fixture(scope="module")
def proxied_broker(tmp_path_factory: pytest.TempPathFactory):
    """(broker, bootstrap through the proxy): a broker that advertises its client proxy, the proxy
    run as `bench proxy start` runs it, so a `delay:` fault delays every response."""
    from bench.broker.proxy_control import ProxySet

    port, controller_port = free_port_pair()
    proxy_port, _ = free_port_pair()
    state_dir = tmp_path_factory.mktemp("proxied")
    proxies = ProxySet(state_dir, {1: (proxy_port, port)}).start()
    broker = EmbeddedBroker(port=port, controller_port=controller_port, state_dir=state_dir,
                            extra_properties={"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}"})
    try:
        broker.start(timeout_s=BROKER_START_TIMEOUT_S)
        yield broker, f"127.0.0.1:{proxy_port}"
    finally:
        broker.stop(grace_s=10)
        proxies.stop()


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


def _is_paused(pid: int | None) -> bool:
    """True when the process is stopped by SIGSTOP (state T in /proc)."""
    if pid is None:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (FileNotFoundError, IndexError):
        return False


def _left_down(processes: list) -> list[str]:
    """Resumes or restarts every broker process a test left paused or stopped; what it found."""
    found = []
    for process in processes:
        name = "the broker" if isinstance(process, EmbeddedBroker) else f"node {process.node_id}"
        if process.pid is None:
            process.start(timeout_s=BROKER_START_TIMEOUT_S)
            found.append(f"{name} stopped")
            continue
        if _is_paused(process.pid):
            found.append(f"{name} paused")
        # Always: a SIGSTOP sent just now may not show in /proc yet, and SIGCONT discards it.
        process.resume()
    return found


# Per module, not per run: a killed broker recovers every log it holds before it answers again, and
# on a shared one the logs of earlier modules' 2,000 msg/s runs made that restart outlast the run.
@pytest.fixture(scope="module")
def _owned_broker(tmp_path_factory: pytest.TempPathFactory):
    broker = _started_embedded_broker(tmp_path_factory, "owned-broker", heap_opts=FAULTED_BROKER_HEAP)
    try:
        yield broker
    finally:
        broker.stop(grace_s=10)


@pytest.fixture
def embedded_broker(_owned_broker: EmbeddedBroker):
    """A broker process the test may kill or pause, started once per test module. The test must
    leave it running and answering: checked, and put right, after it."""
    assert broker_answers(_owned_broker.bootstrap_servers, timeout_s=60.0), "the owned broker does not answer"
    yield _owned_broker
    left = _left_down([_owned_broker])
    if left:
        pytest.fail(f"the test left {', '.join(left)}; restored for the next test")


@pytest.fixture(scope="session")
def _shared_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A killed node is fenced when its broker session expires: 4 s here instead of Kafka's 9 s,
    so a 10 s kill shows a failover well inside it even on a busy machine (heartbeats every
    0.5 s keep live nodes well within it)."""
    cluster = EmbeddedCluster(state_dir=tmp_path_factory.mktemp("cluster"), layout=free_cluster_layout(3),
                              extra_properties={"broker.session.timeout.ms": "4000",
                                                "broker.heartbeat.interval.ms": "500"})
    try:
        cluster.start(timeout_s=BROKER_START_TIMEOUT_S)
        yield cluster
    finally:
        cluster.stop(grace_s=30)


@pytest.fixture
def kafka_cluster(_shared_cluster: EmbeddedCluster):
    """A 3-node embedded cluster, one per run, so a test may kill, stop or pause nodes. Every node is
    running and listed by every node when the test starts; a test must leave every node running
    again: checked, and put right, after it."""
    _shared_cluster.wait_until_complete(timeout_s=120)
    yield _shared_cluster
    left = _left_down(list(_shared_cluster.nodes))
    if left:
        pytest.fail(f"the test left {', '.join(left)}; restored for the next test")


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    # Topic names allow [a-zA-Z0-9._-] only; parametrized test names carry brackets etc.
    test_name = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name[:40]).strip("-")
    return f"test-{test_name}-{uuid.uuid4().hex[:8]}"
