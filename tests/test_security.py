"""Security: SASL settings reach every client, secrets never reach an output, and the
embedded broker is reachable from this host only."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path

import pytest
from conftest import BROKER_START_TIMEOUT_S, free_port_pair
from kafka_truth import STEADY_SCENARIO, assert_counts_match_broker, assert_sweep_counts_match_broker, bench_command

from bench.broker.embedded import EmbeddedBroker
from bench.results.store import load_result
from streamstore.admin import connect_admin

# Planted in the broker's user list and the scenario; no output of the harness may contain it.
PLANTED_SECRET = "planted-Secret-7f3a9c"
SASL_USER = "bench"
SASL_CLIENT_SETTINGS = {
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "PLAIN",
    "sasl.username": SASL_USER,
    "sasl.password": PLANTED_SECRET,
}

_TCP_LISTEN = "0A"


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """{socket inode: (local address, port)} of every listening TCP socket on this host."""
    listening = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] != _TCP_LISTEN:
                    continue
                address_hex, port_hex = fields[1].split(":")
                raw = bytes.fromhex(address_hex)
                # /proc prints the address as native-endian 32-bit words.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                listening[int(fields[9])] = (socket.inet_ntop(family, raw), int(port_hex, 16))
    return listening


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _non_loopback_address() -> str | None:
    """An address of this host other than loopback (the one outgoing traffic would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by a UDP connect
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    """A broker with a SASL/PLAIN listener (user bench, the planted secret as password) next to
    its plaintext one; the plaintext listener only serves the broker's own start-up probe."""
    port, controller_port = free_port_pair()
    sasl_port, _ = free_port_pair()
    broker = EmbeddedBroker(
        port=port,
        controller_port=controller_port,
        state_dir=tmp_path_factory.mktemp("sasl-broker"),
        extra_properties={
            "listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},"
                         f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{SASL_USER}" password="{PLANTED_SECRET}" user_{SASL_USER}="{PLANTED_SECRET}";',
        },
    )
    broker.start(timeout_s=BROKER_START_TIMEOUT_S)
    try:
        yield f"127.0.0.1:{sasl_port}"
    finally:
        broker.stop(grace_s=10)


def test_embedded_broker_listens_on_loopback_only(sasl_broker):
    broker_pids = [
        int(entry.name) for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _is_kafka_for(entry, sasl_broker)
    ]
    assert len(broker_pids) == 1, broker_pids
    listening = _listening_sockets()
    bound = [listening[inode] for inode in _socket_inodes(broker_pids[0]) if inode in listening]
    # Client, SASL and controller listeners at least (the JVM may add none of its own).
    assert len(bound) >= 3, bound
    # Java binds IPv6 sockets; 127.0.0.1 shows as ::ffff:127.0.0.1, a wildcard as :: or 0.0.0.0.
    assert all(_loopback(address) for address, _ in bound), bound
    other_address = _non_loopback_address()
    if other_address is not None:
        for _, port in bound:
            with pytest.raises(OSError):
                socket.create_connection((other_address, port), timeout=2).close()


def _loopback(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    return (getattr(parsed, "ipv4_mapped", None) or parsed).is_loopback


def _is_kafka_for(proc_entry: Path, bootstrap: str) -> bool:
    try:
        cmdline = (proc_entry / "cmdline").read_bytes()
    except OSError:
        return False
    if b"kafka.Kafka" not in cmdline:
        return False
    properties = Path(cmdline.split(b"\0")[-2].decode())
    try:
        return f"SASL_PLAINTEXT://{bootstrap}" in properties.read_text()
    except OSError:
        return False


def _sasl_scenario(path: Path, password: str) -> Path:
    """The steady scenario with SASL settings for producer, tracker and admin, as a user writes it."""
    settings = {**SASL_CLIENT_SETTINGS, "sasl.password": password}
    table = "\n".join(f'"{key}" = "{value}"' for key, value in settings.items())
    text = STEADY_SCENARIO.read_text().replace("[producer_config]\n[consumer_config]\n",
                                               f"[producer_config]\n{table}\n[consumer_config]\n{table}\n")
    assert password in text
    path.write_text(text)
    return path


def test_sasl_settings_reach_every_client_and_the_secret_no_output(sasl_broker, unique_topic, tmp_path):
    scenario = _sasl_scenario(tmp_path / "sasl-orders.toml", PLANTED_SECRET)
    results = tmp_path / "results"
    # What is tested is where the settings go, not speed: this module's broker starts cold, and on
    # a loaded CI machine it acknowledged about 100 orders/s at first; a low rate, few larger
    # produce requests (linger 50 ms) and a long flush keep that from purging deliveries.
    completed = bench_command(
        "run", str(scenario), "--bootstrap-servers", sasl_broker, "--broker", "external", "--topic", unique_topic,
        "--results", str(results), "--rate", "200", "--duration", "4", "--warmup", "1",
        "--set", "linger_ms=50", "--set", "drain_timeout_s=60",
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # The broker has no plaintext path to this address: admin (topic, watermarks, broker
    # settings), producer and tracker all authenticated, or nothing would have been counted.
    [folder] = [path.parent for path in results.glob("*/result.json")]
    result = load_result(folder)
    assert_counts_match_broker(result, sasl_broker, extra=SASL_CLIENT_SETTINGS)
    assert result["counts"]["consumed"] == 800
    assert result["scenario"]["producer_config"]["sasl.password"] == "***"
    assert result["scenario"]["producer_config"]["sasl.username"] == SASL_USER
    outputs = {"stdout": completed.stdout, "stderr": completed.stderr}
    for path in folder.rglob("*"):
        if path.is_file():
            outputs[str(path)] = path.read_bytes().decode("latin-1")
    assert {"result.json", "report.md", "report.html"} <= {Path(name).name for name in outputs}
    leaks = [name for name, text in outputs.items() if PLANTED_SECRET in text]
    assert leaks == []
    report = bench_command("report", str(folder))
    assert report.returncode == 0, report.stderr
    assert PLANTED_SECRET not in report.stdout + report.stderr


def test_sasl_settings_reach_every_client_of_the_large_message_sweep(sasl_broker, tmp_path):
    """--client-config reaches the broker checks, the admin calls (pre-flight, topic, offsets),
    the producer and consumer processes and the bare script: the SASL address has no
    plaintext path, so any client without the settings fails the sweep."""
    settings = tmp_path / "client.toml"
    settings.write_text("".join(f'"{key}" = "{value}"\n' for key, value in SASL_CLIENT_SETTINGS.items()))
    results = tmp_path / "results"
    completed = bench_command(
        "large-message", "--bootstrap-servers", sasl_broker, "--broker", "external", "--sizes", "1KB",
        "--compression", "none", "--reps", "2", "--compare-bare", "--client-config", str(settings),
        "--results-dir", str(results),
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    [folder] = [path.parent for path in results.glob("*/result.json")]
    result = load_result(folder)
    # Its topic's offsets, read by the sweep's own admin client before it deleted the topic.
    assert_sweep_counts_match_broker(result, sasl_broker, extra=SASL_CLIENT_SETTINGS)
    assert result["counts"]["consumed"] == result["counts"]["broker_offset_delta"] == 2
    assert result["large_message"]["bare_comparison"]["ratio"] > 0
    topics = connect_admin(sasl_broker, SASL_CLIENT_SETTINGS).list_topics(timeout=10).topics
    assert not [topic for topic in topics if topic.startswith(f"bench-large-message-{result['run_id'][:8]}")]
    assert result["scenario"]["client_config"]["sasl.password"] == "***"
    outputs = [completed.stdout, completed.stderr] + [path.read_bytes().decode("latin-1")
                                                      for path in folder.rglob("*") if path.is_file()]
    assert not [text for text in outputs if PLANTED_SECRET in text]


def test_wrong_sasl_password_is_one_line_naming_the_refusal_exit_3(sasl_broker, unique_topic, tmp_path):
    scenario = _sasl_scenario(tmp_path / "wrong-password.toml", "not-the-password")
    began = time.monotonic()
    completed = bench_command(
        "run", str(scenario), "--bootstrap-servers", sasl_broker, "--broker", "external", "--topic", unique_topic,
        "--results", str(tmp_path / "results"), "--duration", "4", "--warmup", "1",
    )
    # The broker answers with a refusal at once: no waiting out the 15 s meant for silence.
    assert time.monotonic() - began < 15
    assert completed.returncode == 3
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"error: Kafka broker at {sasl_broker} refused the client: ")
    assert "SASL authentication error: Authentication failed: Invalid username or password" in line
    assert "not-the-password" not in line
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
