"""The embedded Apache Kafka broker: lifecycle through the CLI, clear errors, large messages."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from conftest import free_port_pair
from kafka_truth import PROJECT_ROOT

from bench.broker.embedded import DEFAULT_KAFKA_VERSION, LARGE_MESSAGE_BROKER_SETTINGS
from bench.broker.ensure import describe_broker_settings, ensure_broker
from bench.broker.probe import broker_answers
from bench.broker.settings import JVM_PERFORMANCE_OPTS_VARIABLE
from streamstore.admin import connect_admin, ensure_topic
from streamstore.config import consumer_config, producer_config
from streamstore.errors import RunFailed


def bench_broker(*args: str, env: dict[str, str] | None = None, timeout: float = 240,
                 cwd: Path | None = None) -> subprocess.CompletedProcess:
    if cwd is not None:  # this checkout's bench, whatever the working dir
        env = {**(env or os.environ), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bench", "broker", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
    )


def process_alive(pid: int) -> bool:
    """False once the process is gone or a zombie (init reaps the detached broker a bit later)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def broker_flags(tmp_path: Path) -> list[str]:
    port, controller_port = free_port_pair()
    return ["--port", str(port), "--controller-port", str(controller_port), "--state-dir", str(tmp_path / "broker")]


def test_start_status_stop_and_idempotent_start(broker_flags):
    port = broker_flags[1]
    started = bench_broker("start", *broker_flags)
    try:
        assert started.returncode == 0, started.stderr
        first_line = started.stdout.splitlines()[0]
        assert first_line.startswith(f"started Apache Kafka {DEFAULT_KAFKA_VERSION} at 127.0.0.1:{port} (pid ")
        pid = int(first_line.split("(pid ")[1].split(")")[0])
        # The broker outlives the command that started it.
        assert broker_answers(f"127.0.0.1:{port}", timeout_s=10)
        # KAFKA_JVM_PERFORMANCE_OPTS (the suite sets it, tests/conftest.py) replaces Kafka's
        # defaults on the JVM's command line, as with Kafka's launcher, and the command says so.
        jvm_options = os.environ[JVM_PERFORMANCE_OPTS_VARIABLE].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert argv[argv.index(jvm_options[0]):][:len(jvm_options)] == jvm_options and "-XX:+UseG1GC" not in argv
        assert started.stdout.splitlines()[-1] == (f"JVM options from {JVM_PERFORMANCE_OPTS_VARIABLE} (instead of "
                                                   f"Kafka's defaults): {os.environ[JVM_PERFORMANCE_OPTS_VARIABLE]}")

        again = bench_broker("start", *broker_flags)
        assert again.returncode == 0
        assert again.stdout.startswith(f"already running: Apache Kafka {DEFAULT_KAFKA_VERSION} at 127.0.0.1:{port} (pid {pid})")

        status = bench_broker("status", *broker_flags)
        assert status.returncode == 0
        assert status.stdout.splitlines()[0] == (
            f"running: Apache Kafka {DEFAULT_KAFKA_VERSION} at 127.0.0.1:{port} (pid {pid}, answering)"
        )

        logs = bench_broker("logs", "-n", "5", *broker_flags)
        assert logs.returncode == 0
        assert len(logs.stdout.splitlines()) == 5
    finally:
        stopped = bench_broker("stop", *broker_flags)
    assert stopped.returncode == 0
    assert stopped.stdout.startswith(f"stopped the broker at 127.0.0.1:{port}")
    assert not process_alive(pid)
    assert not broker_answers(f"127.0.0.1:{port}", timeout_s=2)

    status = bench_broker("status", *broker_flags)
    assert status.returncode == 0
    assert status.stdout.startswith("stopped: no embedded broker in ")
    assert bench_broker("stop", *broker_flags).stdout.startswith("not running: ")


def test_a_relative_state_dir_names_the_same_broker_from_anywhere(tmp_path):
    port, controller_port = free_port_pair()
    relative = ["--port", str(port), "--controller-port", str(controller_port), "--state-dir", "rel-broker"]
    started = bench_broker("start", *relative, cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        pid = int(started.stdout.split("(pid ")[1].split(")")[0])
        for cwd, state_dir in ((tmp_path, "rel-broker"), (PROJECT_ROOT, str(tmp_path / "rel-broker"))):
            status = bench_broker("status", *relative[:4], "--state-dir", state_dir, cwd=cwd)
            assert status.stdout.startswith("running: ") and f"(pid {pid}, answering)" in status.stdout, status.stdout
    finally:
        stopped = bench_broker("stop", *relative, cwd=tmp_path)
    assert stopped.stdout.startswith(f"stopped the broker at 127.0.0.1:{port}"), stopped.stdout + stopped.stderr
    assert not process_alive(pid)


def _path_without(tool: str, tmp_path: Path) -> str:
    """A PATH with the usual tools except `tool` (java or mvn), as on a machine lacking it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for other in {"java", "mvn"} - {tool}:
        (bin_dir / other).symlink_to(subprocess.check_output(["which", other], text=True).strip())
    return str(bin_dir)


def test_missing_java_is_one_clear_line(broker_flags, tmp_path):
    env = {**os.environ, "PATH": _path_without("java", tmp_path)}
    started = bench_broker("start", *broker_flags, env=env)
    assert started.returncode == 2
    assert started.stderr.splitlines() == [
        "error: java not found on PATH: the embedded Kafka broker needs a JDK 17 "
        "(e.g. apt-get install openjdk-17-jdk-headless); with Docker instead: docker compose up -d"
    ]


def test_missing_maven_is_one_clear_line_when_jars_are_not_cached(broker_flags, tmp_path):
    env = {**os.environ, "PATH": _path_without("mvn", tmp_path), "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    started = bench_broker("start", *broker_flags, env=env)
    assert started.returncode == 2
    assert started.stderr.splitlines() == [
        "error: mvn not found on PATH: Maven downloads the Kafka broker jars on first use "
        "(e.g. apt-get install maven); with Docker instead: docker compose up -d"
    ]


def _hanging_tool(bin_dir: Path, name: str, pid_file: Path) -> None:
    """A `name` on PATH that never ends, like a download through a proxy that never answers:
    a shell script whose child (as Maven's JVM under its script) writes its pid and sleeps."""
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pid_file}\nwait\n")
    tool.chmod(0o755)


def _gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_maven_that_hangs_is_stopped_at_its_timeout_with_one_line(tmp_path, monkeypatch, capsys):
    import bench.broker.jars as jars
    from bench.cli import main

    pid_file = tmp_path / "mvn-child.pid"
    _hanging_tool(tmp_path / "bin", "mvn", pid_file)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(jars, "MAVEN_TIMEOUT_S", 2.0)
    began = time.monotonic()
    assert main(["broker", "provision"]) == 3
    assert time.monotonic() - began < 30
    assert capsys.readouterr().err.splitlines() == [
        f"error: Maven did not finish downloading Apache Kafka {DEFAULT_KAFKA_VERSION}'s jars within 2 s (stopped): "
        "check the network or Maven's proxy settings (~/.m2/settings.xml), then try again; "
        "with Docker instead: docker compose up -d"]
    # The whole process group went, not only the script; no half-downloaded directory is left.
    assert _gone_within(int(pid_file.read_text()), 10)
    cache = tmp_path / "empty-cache" / "streamstore-bench" / f"kafka-{DEFAULT_KAFKA_VERSION}"
    assert sorted(path.name for path in cache.iterdir()) == ["download.lock"]


def test_storage_format_that_hangs_is_stopped_at_its_timeout_with_one_line(broker_flags, tmp_path, monkeypatch, capsys):
    import bench.broker.node_config as node_config
    from bench.cli import main

    pid_file = tmp_path / "java-child.pid"
    _hanging_tool(tmp_path / "bin", "java", pid_file)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(node_config, "FORMAT_TIMEOUT_S", 2.0)
    began = time.monotonic()
    assert main(["broker", "start", *broker_flags]) == 3
    assert time.monotonic() - began < 30
    state_dir = Path(broker_flags[-1])
    assert capsys.readouterr().err.splitlines() == [
        f"error: formatting the broker storage in {state_dir / 'data'} did not finish within 2 s (stopped); "
        "is the machine overloaded, or the disk stuck?"]
    assert _gone_within(int(pid_file.read_text()), 10)
    # Not marked formatted, so the next start formats again; and nothing runs.
    assert not (state_dir / "formatted-by.version").exists()
    assert main(["broker", "status", *broker_flags]) == 0
    assert capsys.readouterr().out.startswith("stopped: ")


def test_unsupported_kafka_version_is_one_clear_line(broker_flags):
    started = bench_broker("start", "--kafka-version", "4.5.0", *broker_flags)
    assert started.returncode == 2
    assert len(started.stderr.splitlines()) == 1
    assert started.stderr.startswith(
        "error: --kafka-version '4.5.0': the embedded broker runs Apache Kafka 3.3.x-3.9.x and 4.0.x-4.4.x")


def test_port_in_use_is_a_usage_error(broker_flags):
    port = int(broker_flags[1])
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", port))
        occupant.listen()
        started = bench_broker("start", *broker_flags)
    assert started.returncode == 2
    assert started.stderr == (f"error: port {port} on 127.0.0.1 is in use by another process "
                              "(another broker? choose --port/--controller-port)\n")
    # Nothing left behind: no lock file, and no state dir that the refused start made.
    state_dir = Path(broker_flags[-1])
    assert not state_dir.exists()
    # A state dir that was there before (an earlier broker's data) stays; its lock file goes.
    state_dir.mkdir()
    (state_dir / "server.properties").write_text("# an earlier broker's\n")
    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", port))
        occupant.listen()
        assert bench_broker("start", *broker_flags).returncode == 2
    assert sorted(path.name for path in state_dir.iterdir()) == ["server.properties"]


def test_broker_dying_at_startup_reports_its_log_tail(broker_flags):
    state_dir = Path(broker_flags[-1])
    # Storage formatted for another node: Kafka refuses to start with it.
    (state_dir / "data").mkdir(parents=True)
    (state_dir / "data" / "meta.properties").write_text("version=1\ncluster.id=lqZI-Of5SESzooaktuCOZQ\nnode.id=7\n")
    started = bench_broker("start", *broker_flags)
    assert started.returncode == 3
    lines = started.stderr.splitlines()
    assert lines[0].startswith("error: embedded Kafka broker exited with code 1 during startup (log: ")
    assert any("node.id" in line or "node id" in line.lower() for line in lines[1:]), started.stderr
    assert bench_broker("status", *broker_flags).stdout.startswith("stopped: ")


def test_broker_reports_the_large_message_settings(kafka_bootstrap):
    settings = describe_broker_settings(kafka_bootstrap)
    assert {key: settings[key] for key in LARGE_MESSAGE_BROKER_SETTINGS} == LARGE_MESSAGE_BROKER_SETTINGS


def test_100_mb_message_round_trip(kafka_bootstrap, unique_topic):
    """Default broker limits (1 MiB messages, 100 MiB requests) reject this; ours accept it."""
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic)
    payload = os.urandom(100 * 1000 * 1000)
    producer = Producer(producer_config(kafka_bootstrap, compression="none"))
    failures = []
    producer.produce(unique_topic, payload, on_delivery=lambda error, message: error and failures.append(error))
    assert producer.flush(120) == 0
    assert failures == []

    consumer = Consumer(consumer_config(kafka_bootstrap, group_id=f"{unique_topic}-reader"))
    consumer.subscribe([unique_topic])
    try:
        deadline = time.monotonic() + 120
        message = None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(1.0)
            if candidate is not None:
                assert candidate.error() is None, candidate.error()
                message = candidate
    finally:
        consumer.close()
    assert message is not None, "the 100 MB message was not consumed within 120 s"
    assert hashlib.sha256(message.value()).digest() == hashlib.sha256(payload).digest()


def test_ensure_broker_uses_an_answering_broker_as_it_is(kafka_bootstrap):
    with ensure_broker(kafka_bootstrap, mode="auto") as broker:
        assert broker.started_here is False
        assert broker.settings["message.max.bytes"] == LARGE_MESSAGE_BROKER_SETTINGS["message.max.bytes"]
        # Started before, in a state dir of its own: still the embedded broker, found from the log
        # dir it reports, and so its exact version is known.
        section = broker.section({})
        assert section["embedded"] is True and section["version"] == DEFAULT_KAFKA_VERSION
        assert section["version_source"] == "embedded broker jar" and section["not_measured"] == {}
    assert broker_answers(kafka_bootstrap, timeout_s=5)


def test_ensure_broker_external_fails_clearly_when_nothing_answers():
    port, _ = free_port_pair()
    began = time.monotonic()
    # A refused connection answers at once: the message says why, and claims no wait.
    with pytest.raises(RunFailed, match=rf"^no Kafka broker answers at 127\.0\.0\.1:{port}: nothing accepts "
                                        r"connections there$"):
        with ensure_broker(f"127.0.0.1:{port}", mode="external"):
            pass
    assert time.monotonic() - began < 5
    # Something that accepts connections but never speaks Kafka: the whole timeout, as waited.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", port))
        silent.listen()
        with pytest.raises(RunFailed, match=rf"^no Kafka broker answers at 127\.0\.0\.1:{port}: no answer to a "
                                            r"metadata request \(waited 2 s\)$"):
            with ensure_broker(f"127.0.0.1:{port}", mode="external", external_timeout_s=2):
                pass


def test_ensure_broker_auto_starts_and_stops_the_embedded_broker(tmp_path):
    port, _ = free_port_pair()
    bootstrap = f"127.0.0.1:{port}"
    said = []
    with ensure_broker(bootstrap, mode="auto", state_dir=tmp_path / "broker", announce=said.append) as broker:
        assert broker.started_here is True
        assert broker.version == DEFAULT_KAFKA_VERSION
        assert broker_answers(bootstrap, timeout_s=5)
        assert broker.describe("run") == f"{bootstrap} (embedded, started for this run, Kafka {DEFAULT_KAFKA_VERSION})"
    assert not broker_answers(bootstrap, timeout_s=2)
    # The user is told about a broker that comes and goes with the command.
    assert said == [f"starting the embedded Kafka broker at {bootstrap} (nothing answers there; state in {tmp_path / 'broker'})",
                    f"stopped the embedded Kafka broker at {bootstrap}, which this command started "
                    "(--keep-broker leaves it running)"]


def test_older_kafka_on_newer_data_is_a_usage_error(broker_flags):
    state_dir = Path(broker_flags[-1])
    state_dir.mkdir(parents=True)
    (state_dir / "formatted-by.version").write_text("4.9.0\n")
    started = bench_broker("start", *broker_flags)
    assert started.returncode == 2
    assert started.stderr == (
        f"error: {state_dir} holds data of Apache Kafka 4.9.0, which {DEFAULT_KAFKA_VERSION} cannot read: "
        "choose another --state-dir (or delete that one)\n"
    )
