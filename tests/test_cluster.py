"""The embedded multi-node cluster: the CLI lifecycle, replication as the broker reports it, and
a cluster that keeps serving acks=all producers after a node is killed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from conftest import free_ports
from kafka_truth import PROJECT_ROOT, assert_counts_match_broker, bench_command, bench_run, broker_message_count
from test_broker import process_alive

from bench.broker.cluster import EmbeddedCluster
from bench.broker.embedded import DEFAULT_KAFKA_VERSION, PROPERTIES_HEADER, EmbeddedBroker
from bench.broker.probe import broker_answers
from bench.results.store import load_result
from streamstore.admin import connect_admin, ensure_topic, topic_configs
from streamstore.config import admin_config, producer_config
from streamstore.errors import UsageError

START_TIMEOUT_S = 300
REPLICATED_SCENARIO = PROJECT_ROOT / "scenarios" / "replicated-orders.toml"


def free_port_block(count: int) -> int:
    """The first of count consecutive free ports (the CLI lays a cluster out consecutively)."""
    return free_ports(count, consecutive=True)[0]


def listed_partitions(bootstrap: str, topic: str) -> dict:
    """{partition id: PartitionMetadata}; empty while the answering node does not know the topic yet."""
    metadata = connect_admin(bootstrap).list_topics(timeout=10)
    return dict(metadata.topics[topic].partitions) if topic in metadata.topics else {}


def wait_for_isr(bootstrap: str, topic: str, expected: list[int], within_s: float) -> dict:
    """The topic's partitions once every one has exactly `expected` in sync."""
    deadline = time.monotonic() + within_s
    while True:
        partitions = listed_partitions(bootstrap, topic)
        if partitions and all(sorted(p.isrs) == expected for p in partitions.values()):
            return partitions
        if time.monotonic() > deadline:
            isrs = {p.id: sorted(p.isrs) for p in partitions.values()}
            raise AssertionError(f"in-sync replicas {isrs}, expected {expected} everywhere within {within_s:g} s")
        time.sleep(0.5)


def test_cli_starts_lists_shows_logs_of_and_stops_a_3_node_cluster(tmp_path: Path):
    base = free_port_block(9)
    flags = ["--port", str(base), "--state-dir", str(tmp_path / "cluster")]
    started = bench_command("broker", "start", "--nodes", "3", *flags, timeout=START_TIMEOUT_S)
    pids = []
    try:
        assert started.returncode == 0, started.stderr
        lines = started.stdout.splitlines()
        assert lines[0].startswith(f"started a 3-node Apache Kafka {DEFAULT_KAFKA_VERSION} cluster in ")
        for node_id, line in zip((1, 2, 3), lines[1:4], strict=True):
            assert line.startswith(f"  node {node_id}: 127.0.0.1:{base + node_id - 1} (pid ")
            pids.append(int(line.split("(pid ")[1].split(",")[0]))
        bootstrap = ",".join(f"127.0.0.1:{base + k}" for k in range(3))
        assert f"bootstrap servers: {bootstrap}" in lines
        layout = json.loads((tmp_path / "cluster" / "cluster.json").read_text())
        assert [node["port"] for node in layout["nodes"]] == [base, base + 1, base + 2]
        assert len(connect_admin(bootstrap).list_topics(timeout=10).brokers) == 3

        # A later command finds the cluster through its state dir alone.
        status = bench_command("broker", "status", "--state-dir", str(tmp_path / "cluster"))
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[0].startswith("cluster: 3 of 3 nodes running")
        for node_id, pid in zip((1, 2, 3), pids, strict=True):
            assert f"  node {node_id}: running at 127.0.0.1:{base + node_id - 1} (pid {pid}, answering)" in status.stdout

        logs = bench_command("broker", "logs", "--node", "2", "-n", "5", *flags)
        assert logs.returncode == 0, logs.stderr
        log_lines = logs.stdout.splitlines()
        assert len(log_lines) == 5
        node_2_log = (tmp_path / "cluster" / "node-2" / "logs" / "server.log").read_text().splitlines()
        assert all(line in node_2_log for line in log_lines)
        assert any("id=2]" in line or "nodeId=2" in line for line in node_2_log)
    finally:
        stopped = bench_command("broker", "stop", *flags, timeout=START_TIMEOUT_S)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"stopped the 3-node cluster in {tmp_path / 'cluster'} in ")
    assert pids and not any(process_alive(pid) for pid in pids)
    status = bench_command("broker", "status", *flags)
    assert status.stdout.splitlines()[0].startswith("cluster: 0 of 3 nodes running")
    assert not broker_answers(f"127.0.0.1:{base}", timeout_s=2)


def test_a_topic_with_replication_3_has_three_in_sync_replicas(kafka_cluster, unique_topic):
    bootstrap = kafka_cluster.bootstrap_servers
    assert ensure_topic(connect_admin(bootstrap), unique_topic, partitions=3, replication_factor=3)
    partitions = wait_for_isr(bootstrap, unique_topic, [1, 2, 3], within_s=60)
    assert sorted(partitions) == [0, 1, 2]
    assert all(sorted(partition.replicas) == [1, 2, 3] for partition in partitions.values())


def test_ensure_topic_returns_once_every_node_serves_the_new_topic(kafka_cluster, unique_topic):
    """Each node learns of a new topic on its own: once ensure_topic returns, every node's own
    metadata has it with a leader for each partition, and its settings read on the first try."""
    assert ensure_topic(connect_admin(kafka_cluster.bootstrap_servers), unique_topic, partitions=3, replication_factor=3)
    for address in kafka_cluster.bootstrap_servers.split(","):
        # One node alone: its own metadata, asked once, no retry.
        single = AdminClient(admin_config(address))
        listed = single.list_topics(unique_topic, timeout=10).topics[unique_topic]
        assert listed.error is None and len(listed.partitions) == 3, address
        assert all(p.leader >= 0 for p in listed.partitions.values()), address
        assert topic_configs(single, unique_topic)["min.insync.replicas"], address
    assert not ensure_topic(connect_admin(kafka_cluster.bootstrap_servers), unique_topic, partitions=3,
                            replication_factor=3)


def test_killing_one_node_leaves_the_cluster_serving_acks_all(kafka_cluster, unique_topic):
    bootstrap = kafka_cluster.bootstrap_servers
    ensure_topic(connect_admin(bootstrap), unique_topic, partitions=3, replication_factor=3,
                 config={"min.insync.replicas": "2"})
    wait_for_isr(bootstrap, unique_topic, [1, 2, 3], within_s=60)
    victim = kafka_cluster.node(2)
    pid = victim.kill()
    try:
        assert pid is not None and not process_alive(pid) and not victim.is_running()
        orders = 3000
        errors: list[str] = []
        acked = []

        def delivered(error, message):
            if error is not None:
                errors.append(str(error))
            else:
                acked.append(message.offset())

        producer = Producer(producer_config(bootstrap, compression="none", extra={
            "acks": "all", "enable.idempotence": True, "linger.ms": 5}))
        for sequence in range(orders):
            producer.produce(unique_topic, value=f"order-{sequence}".encode(), on_delivery=delivered)
            producer.poll(0)
        assert producer.flush(180) == 0
        assert errors == []
        assert len(acked) == orders
        # What the broker holds, read from the surviving nodes: exactly the acked orders.
        assert broker_message_count(bootstrap, unique_topic) == orders
        # Node 2 really left: every partition's in-sync replicas are the two survivors.
        wait_for_isr(bootstrap, unique_topic, [1, 3], within_s=60)
    finally:
        victim.start(timeout_s=START_TIMEOUT_S)
    kafka_cluster.wait_until_complete(timeout_s=120)
    wait_for_isr(bootstrap, unique_topic, [1, 2, 3], within_s=120)
    assert broker_message_count(bootstrap, unique_topic) == orders


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for_state(pid: int, wanted: bool, state: str = "T", within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while (process_state(pid) == state) != wanted:
        assert time.monotonic() < deadline, f"pid {pid} state {process_state(pid)}"
        time.sleep(0.01)


def test_pause_and_resume_a_node(kafka_cluster):
    node = kafka_cluster.node(3)
    pid = node.pause()
    try:
        wait_for_state(pid, wanted=True)  # stopped
    finally:
        node.resume()
    wait_for_state(pid, wanted=False)
    assert node.is_running() and node.pid == pid


@pytest.mark.parametrize("node_id", [0, 4])
def test_an_unknown_node_is_a_usage_error(kafka_cluster, node_id):
    with pytest.raises(UsageError, match=f"--node {node_id}: the cluster has nodes 1..3"):
        kafka_cluster.node(node_id)


def test_a_replicated_scenario_runs_on_the_cluster_with_its_topic_settings(kafka_cluster, unique_topic, tmp_path):
    run = bench_run(kafka_cluster.bootstrap_servers, unique_topic, tmp_path, "--duration", "8", "--warmup", "2",
                    "--rate", "500", scenario=REPLICATED_SCENARIO)
    assert run.completed.returncode == 0, run.completed.stdout + run.completed.stderr
    assert run.result["scenario"]["min_insync_replicas"] == 2
    assert run.result["scenario"]["unclean_leader_election"] is False
    topic_settings = run.result["broker"]["topic_settings"]
    assert topic_settings["min.insync.replicas"] == "2"
    assert topic_settings["unclean.leader.election.enable"] == "false"
    assert_counts_match_broker(run.result, kafka_cluster.bootstrap_servers)
    # Every node's own metrics were read; the leaders of the 3 partitions took the run's bytes in.
    metrics = run.result["resources"]["broker_metrics"]
    assert metrics is not None, run.result["resources"].get("broker_metrics_not_measured")
    assert sorted(metrics["nodes"]) == ["broker-node1", "broker-node2", "broker-node3"]
    assert sum(node["bytes_in_run"] for node in metrics["nodes"].values()) > run.result["counts"]["acked"] * 200
    partitions = wait_for_isr(kafka_cluster.bootstrap_servers, unique_topic, [1, 2, 3], within_s=60)
    assert len(partitions) == 3 and all(sorted(p.replicas) == [1, 2, 3] for p in partitions.values())


def test_an_existing_topic_with_other_replication_settings_is_refused(kafka_cluster, unique_topic):
    admin = connect_admin(kafka_cluster.bootstrap_servers)
    ensure_topic(admin, unique_topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "1"})
    with pytest.raises(UsageError, match=f"topic '{unique_topic}' exists with min.insync.replicas=1, not the 2 asked"):
        ensure_topic(admin, unique_topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    assert not ensure_topic(admin, unique_topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "1"})


def test_replication_above_the_brokers_running_is_one_clear_line(kafka_bootstrap, unique_topic, tmp_path):
    run = bench_run(kafka_bootstrap, unique_topic, tmp_path, scenario=REPLICATED_SCENARIO)
    assert run.completed.returncode == 2
    assert run.completed.stderr.strip() == (
        "error: replication factor 3 needs 3 brokers, but the cluster has 1 running "
        "(start one with: python -m bench broker start --nodes 3)"
    )
    assert run.folder is None
    assert unique_topic not in connect_admin(kafka_bootstrap).list_topics(timeout=10).topics


def test_a_node_advertises_the_client_port_it_is_given_and_keeps_replication_apart(tmp_path):
    """Pure: the properties a proxied cluster starts with (nothing is started or written)."""
    cluster = EmbeddedCluster(state_dir=tmp_path / "c", nodes=3, port=40000, advertised_ports=[41000, 41001, 41002])
    node = cluster.node(2)
    properties = node.server_properties()
    assert properties["listeners"] == "CLIENT://127.0.0.1:40001,BROKER://127.0.0.1:40004,CONTROLLER://127.0.0.1:40007"
    assert properties["advertised.listeners"] == "CLIENT://127.0.0.1:41001,BROKER://127.0.0.1:40004"
    assert properties["inter.broker.listener.name"] == "BROKER"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:40006,2@127.0.0.1:40007,3@127.0.0.1:40008"
    assert properties["node.id"] == "2"
    assert properties["offsets.topic.replication.factor"] == "3"
    assert node.bootstrap_servers == "127.0.0.1:41001"
    assert cluster.bootstrap_servers == "127.0.0.1:41000,127.0.0.1:41001,127.0.0.1:41002"
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("flags, message", [
    (["--nodes", "0"], "error: --nodes 0: expected 1 or more"),
    (["--nodes", "3", "--advertised-ports", "1,2"], "error: --advertised-ports: expected 3 ports (one per node), got 2"),
    (["--nodes", "3", "--heap", "lots"], "error: --heap 'lots': expected a JVM size like 512m, 1g or 4g"),
    (["--advertised-ports", "1"], "error: --advertised-ports: only for a cluster (--nodes 2 or more)"),
])
def test_bad_cluster_flags_are_one_line(tmp_path, flags, message):
    completed = bench_command("broker", "start", "--port", "40000", "--state-dir", str(tmp_path / "c"), *flags)
    assert completed.returncode == 2
    assert completed.stderr.strip() == message
    assert not (tmp_path / "c").exists()


def test_a_silent_local_cluster_address_names_the_cluster_start_command(tmp_path):
    ports = free_ports(3)
    bootstrap = ",".join(f"127.0.0.1:{port}" for port in ports)
    completed = bench_command("run", str(REPLICATED_SCENARIO), "--bootstrap-servers", bootstrap,
                              "--results-dir", str(tmp_path / "results"), "--duration", "3", "--warmup", "1")
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"error: nothing answers at {bootstrap}, and a command starts no embedded cluster: "
        f"start one with python -m bench broker start --nodes 3 --port {ports[0]}"
    )
    assert not list((tmp_path / "results").glob("*/result.json"))


def test_a_restart_keeps_the_recorded_layout_and_heap_unless_told(tmp_path):
    """Pure: cluster.json decides the cluster id and heap of a later start on the same state dir."""
    first = EmbeddedCluster(state_dir=tmp_path, nodes=3, port=40000, heap="4g")
    (tmp_path / "cluster.json").write_text(first.layout.to_json())
    again = EmbeddedCluster(state_dir=tmp_path, nodes=3, port=40000)
    assert again.layout == first.layout
    assert "-Xmx4g" in again.node(1).config.heap_opts
    assert EmbeddedCluster(state_dir=tmp_path, nodes=3, port=40000, heap="2g").layout.heap == "2g"
    with pytest.raises(UsageError, match="holds another cluster"):
        EmbeddedCluster(state_dir=tmp_path, nodes=2, port=40000)
    assert EmbeddedCluster.open(tmp_path).layout == first.layout


def bench_in(cwd: Path, *args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` run from cwd (its .state/ is cwd's), with this checkout's bench."""
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})


def write_single_broker_state(state_dir: Path, port: int) -> None:
    """A stopped single broker's state dir as `broker start` leaves it (its server.properties)."""
    broker = EmbeddedBroker(port=port, controller_port=free_ports(1)[0], state_dir=state_dir)
    state_dir.mkdir(parents=True)
    lines = [f"{key}={value}" for key, value in broker.server_properties().items()]
    broker.config.properties_path.write_text(PROPERTIES_HEADER + "\n" + "\n".join(lines) + "\n")


def test_later_commands_find_the_cluster_broker_start_left_in_the_working_dir(tmp_path, unique_topic):
    """`broker start --nodes 3`, then chaos and stop with neither --state-dir nor --nodes: both find
    the cluster from its state under .state/; elsewhere, a stop names the command that stops it."""
    base = free_port_block(9)
    address = f"127.0.0.1:{base}"
    started = bench_in(tmp_path, "broker", "start", "--nodes", "3", "--port", str(base))
    state_dir = tmp_path / ".state" / f"cluster-{base}"
    pids = [int(line.split("(pid ")[1].split(",")[0]) for line in started.stdout.splitlines() if "(pid " in line]
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert len(pids) == 3 and all(process_alive(pid) for pid in pids)

        # From another working dir nothing is stopped: one line says exactly what to type.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        refused = bench_in(elsewhere, "broker", "stop", "--port", str(base))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr == (
            f"error: nothing stopped: the broker at {address} is the embedded 3-node cluster in {state_dir} "
            f"(pids {', '.join(map(str, pids))}), with its state outside .state/ here; to stop it, type: "
            f"python -m bench broker stop --state-dir {state_dir}\n")
        assert all(process_alive(pid) for pid in pids)
        faults = ["--fault", "kill:leader@3+4", "--topic", unique_topic, "--no-report"]
        chaos_elsewhere = bench_in(elsewhere, "chaos", str(REPLICATED_SCENARIO), "--bootstrap-servers", address,
                                   "--results-dir", str(elsewhere / "results"), *faults)
        assert chaos_elsewhere.returncode == 2, chaos_elsewhere.stdout + chaos_elsewhere.stderr
        assert chaos_elsewhere.stderr.strip().endswith(
            f"the one that does is the embedded 3-node cluster in {state_dir}: add --state-dir {state_dir}")

        # From the working dir that started it, chaos finds the cluster by its address alone.
        chaos = bench_in(tmp_path, "chaos", str(REPLICATED_SCENARIO), "--bootstrap-servers", address,
                         "--results-dir", str(tmp_path / "results"), "--duration", "10", "--warmup", "1", *faults,
                         timeout=900)
        assert chaos.returncode == 0, chaos.stdout + chaos.stderr
        [folder] = [path.parent for path in (tmp_path / "results").glob("*/result.json")]
        result = load_result(folder)
        assert result["broker"]["embedded"] is True
        [fault] = result["failover"]["faults"]
        assert fault["role"] == "leader" and fault["node_id"] in (1, 2, 3)
        assert pids[fault["node_id"] - 1] not in [pid for pid in pids if process_alive(pid)]  # killed, restarted
        assert_counts_match_broker(result, address, faults=True)
        assert result["counts"]["lost"] == 0
        pids = [int((state_dir / f"node-{k}" / "broker.pid").read_text()) for k in (1, 2, 3)]
        assert all(process_alive(pid) for pid in pids)
    finally:
        stopped = bench_in(tmp_path, "broker", "stop", "--port", str(base))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.startswith(f"stopped the 3-node cluster in {state_dir} in ")
    assert not any(process_alive(pid) for pid in pids)

    # Stopped, a cluster and a single broker recorded for the same port: one line names the flag.
    write_single_broker_state(tmp_path / ".state" / f"broker-{base}", base)
    status = bench_in(tmp_path, "broker", "status", "--port", str(base))
    assert status.returncode == 2, status.stdout + status.stderr
    assert status.stderr == (
        f"error: 2 embedded brokers could be the one at {address} (the single broker in "
        f"{tmp_path / '.state' / f'broker-{base}'} and the 3-node cluster in {state_dir}; neither runs): "
        "pick one with --nodes 1 or --nodes 3 (or --state-dir)\n")
    picked = bench_in(tmp_path, "broker", "status", "--port", str(base), "--state-dir", str(state_dir))
    assert picked.stdout.startswith(f"cluster: 0 of 3 nodes running, Apache Kafka {DEFAULT_KAFKA_VERSION}, state {state_dir}\n")


@pytest.fixture
def short_tmp_path():
    """A tmp dir with a short path: the proxies' control socket lives in the state dir, and a unix
    socket path has at most 107 bytes, which pytest's tmp_path under an xdist worker (popen-gwN/)
    and a long test name exceed."""
    path = Path(tempfile.mkdtemp(prefix="bench-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_proxy_commands_find_the_state_dir_of_the_cluster_they_front(short_tmp_path):
    """Proxies start before their cluster: in the state dir `broker start --nodes 3 --port P` will
    use; status and stop find them there with no --state-dir."""
    tmp_path = short_tmp_path
    listen, upstream = free_ports(3), free_ports(3)
    routes = [f"--node={k + 1}={listen[k]}:{upstream[k]}" for k in range(3)]
    state_dir = (tmp_path / ".state" / f"cluster-{upstream[0]}").resolve()
    started = bench_in(tmp_path, "proxy", "start", *routes)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert started.stdout.endswith(f"control {state_dir}/client-proxies.sock\n")
        status = bench_in(tmp_path, "proxy", "status")
        assert status.stdout == f"client proxies for nodes 1, 2, 3 at {state_dir}/client-proxies.sock\n"
        stopped = bench_in(tmp_path, "proxy", "stop")
        assert stopped.stdout == f"stopped the client proxies for {state_dir}\n", stopped.stdout + stopped.stderr
    finally:
        bench_in(tmp_path, "proxy", "stop", "--state-dir", str(state_dir))
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    deadline = time.monotonic() + 30
    while process_alive(pid):  # `stop` asks; the proxies close their sockets and end a moment later
        assert time.monotonic() < deadline, f"the proxy process {pid} still runs 30 s after stop"
        time.sleep(0.1)
    status = bench_in(tmp_path, "proxy", "status", "--bootstrap-servers", f"127.0.0.1:{listen[0]}")
    assert status.returncode == 0
    assert status.stdout == (f"no client proxies run under {(tmp_path / '.state').resolve()}, and no embedded broker "
                             f"there answers at 127.0.0.1:{listen[0]}\n")
