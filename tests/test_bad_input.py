"""The bad-input catalogue (docs/bad-input.md): every entry is one clear line, its exit code,
no traceback, and no run folder left behind looking like a result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic
from conftest import free_port_pair
from kafka_truth import STEADY_SCENARIO, assert_counts_match_broker, bench_command

from streamstore.admin import connect_admin

NOWHERE = "127.0.0.1:1"  # nothing listens on port 1: these must fail before any broker is needed


def assert_one_line(completed: subprocess.CompletedProcess, exit_code: int, message: str) -> None:
    assert completed.returncode == exit_code, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert message in lines[0], lines[0]


def assert_no_run_folder(results: Path) -> None:
    assert not results.exists() or not list(results.glob("*/result.json")), list(results.iterdir())


def run_with(tmp_path: Path, *args: str, scenario: Path = STEADY_SCENARIO, bootstrap: str = NOWHERE,
             command: str = "run") -> subprocess.CompletedProcess:
    return bench_command(command, str(scenario), "--bootstrap-servers", bootstrap, "--broker", "external",
                         "--results", str(tmp_path / "results"), "--no-report", *args)


def scenario_file(tmp_path: Path, old: str, new: str) -> Path:
    text = STEADY_SCENARIO.read_text()
    assert old in text
    path = tmp_path / "scenario.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("rate = 2000 ", "rat = 2000 ", "scenario.toml: unknown field 'rat'; did you mean rate?"),
    ("duration_s = 60", "durations = 60", "scenario.toml: unknown field 'durations'; did you mean duration_s?"),
    ("rate = 2000 ", 'rate = "fast" ', "rate: expected a number, not 'fast'"),
    ("partitions = 3", "partitions = 2.5", "partitions: expected a whole number, not 2.5"),
    ("compression = \"none\"", "compression = \"brotli\"", "compression: 'brotli' is not allowed"),
    ("duration_s = 60", "duration_s = 60\n[", "is not valid TOML"),
])
def test_scenario_file_typos_and_wrong_types(tmp_path, old, new, message):
    completed = run_with(tmp_path, scenario=scenario_file(tmp_path, old, new))
    assert_one_line(completed, 2, message)
    assert_no_run_folder(tmp_path / "results")


@pytest.mark.parametrize("flags, message", [
    (["--message-size", "2GB"], "message_size: 2,000,000,000 bytes is above the client limit"),
    (["--message-size", "0"], "message_size: 0 is out of range"),
    (["--rate", "-5"], "rate: -5.0 is out of range (allowed >= 0)"),
    (["--duration", "5", "--warmup", "5"], "warmup_s: 5 must be shorter than duration_s (5)"),
    (["--producers", "0"], "producers: 0 is out of range (allowed 1..64)"),
    (["--set", "idempotence=true", "--set", "acks=1"], "idempotence: needs acks = \"all\""),
    (["--bootstrap-servers", "localhost"], "--bootstrap-servers 'localhost': expected host:port"),
    (["--rate", "fast"], "argument --rate: invalid float value: 'fast'"),
    (["--broker-metrics-url", "kafka-1:7071"], "argument --broker-metrics-url: 'kafka-1:7071' is not an http:// or "
                                               "https:// URL"),
])
def test_impossible_sizes_rates_and_addresses(tmp_path, flags, message):
    assert_one_line(run_with(tmp_path, *flags), 2, message)
    assert_no_run_folder(tmp_path / "results")


@pytest.mark.parametrize("scenario, args, command, message", [
    (STEADY_SCENARIO, ["--set", "replication_facter=3"], "run",
     "error: --set replication_facter=3: unknown field 'replication_facter'; did you mean replication_factor?"),
    (Path("steady-order"), [], "run", "error: scenario file steady-order does not exist (did you mean steady-orders?); "
                                      "scenarios/ holds burst, ci-gate, "),
    (STEADY_SCENARIO, ["--fault", "kill:leader@20s+10s"], "chaos",
     "error: --fault 'kill:leader@20s+10s': @20s: the time is a number of seconds without unit (@20)"),
    (STEADY_SCENARIO, ["--fault", "kill-leader@20+10"], "chaos",
     "error: --fault 'kill-leader@20+10': unknown kind 'kill-leader'; did you mean kill:leader?"),
])
def test_a_misspelt_field_file_or_fault_names_the_culprit_and_what_was_meant(tmp_path, scenario, args, command, message):
    assert_one_line(run_with(tmp_path, *args, scenario=scenario, command=command), 2, message)
    assert_no_run_folder(tmp_path / "results")


def test_a_scenario_is_found_by_its_bare_name(tmp_path):
    """steady-orders is scenarios/steady-orders.toml: the run gets as far as the broker."""
    assert_one_line(run_with(tmp_path, scenario=Path("steady-orders")), 3, f"error: no Kafka broker answers at {NOWHERE}")


def test_unwritable_results_folder_is_refused_before_the_run(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    completed = bench_command("run", str(STEADY_SCENARIO), "--bootstrap-servers", NOWHERE,
                              "--results", str(blocker / "results"), "--no-report")
    assert_one_line(completed, 2, f"error: cannot create a run folder in {blocker / 'results'}: Not a directory")


def test_unreachable_broker_is_exit_3_within_15_s(tmp_path):
    port, _ = free_port_pair()
    began = time.monotonic()
    completed = run_with(tmp_path, bootstrap=f"127.0.0.1:{port}")
    # 15 s waiting for an answer, plus the interpreter and imports of a busy machine.
    assert time.monotonic() - began < 22
    assert_one_line(completed, 3, f"error: no Kafka broker answers at 127.0.0.1:{port}: nothing accepts connections there")
    assert_no_run_folder(tmp_path / "results")


def test_remote_address_in_auto_mode_cannot_start_an_embedded_broker(tmp_path):
    # 192.0.2.1 is TEST-NET-1: nothing answers there, and the embedded broker is local only.
    completed = bench_command("run", str(STEADY_SCENARIO), "--bootstrap-servers", "192.0.2.1:9092",
                              "--results", str(tmp_path / "results"), "--no-report")
    assert_one_line(completed, 2, "error: no embedded broker can run at 192.0.2.1:9092: it listens on "
                                  "localhost/127.0.0.1 only (use --broker external for a remote broker)")


def test_missing_java_when_the_embedded_broker_is_needed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()  # a PATH without java
    port, _ = free_port_pair()
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "run", str(STEADY_SCENARIO), "--broker", "embedded",
         "--bootstrap-servers", f"127.0.0.1:{port}", "--results", str(tmp_path / "results"), "--no-report"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": str(bin_dir)},
        cwd=STEADY_SCENARIO.parent.parent,
    )
    assert_one_line(completed, 2, "error: java not found on PATH: the embedded Kafka broker needs a JDK 17")
    assert_no_run_folder(tmp_path / "results")


def test_a_topic_whose_limit_cannot_carry_the_size_fails_the_run_honestly(kafka_bootstrap, unique_topic, tmp_path):
    """The broker refuses every order: exit 3, a result marked failed that says why, and
    failed deliveries are not counted as lost orders."""
    admin = connect_admin(kafka_bootstrap)
    admin.create_topics([NewTopic(unique_topic, 1, 1, config={"max.message.bytes": "1000"})])[unique_topic].result(30)
    completed = run_with(tmp_path, "--topic", unique_topic, "--set", "partitions=1", "--message-size", "2000",
                         "--rate", "100", "--duration", "2", "--warmup", "1", bootstrap=kafka_bootstrap)
    assert completed.returncode == 3, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    assert ("failed: 200 deliveries failed, 0 acked orders lost (first error: Broker: Message size too large)"
            in completed.stdout.splitlines())
    [result_file] = (tmp_path / "results").glob("*/result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "failed"
    assert_counts_match_broker(result, kafka_bootstrap, faults=True)
    assert result["counts"]["failed"] == 200 and result["counts"]["acked"] == 0


@pytest.mark.parametrize("content, message", [
    ('{"schema_version": 1, "kind": "run", "scen', "is corrupt: not valid JSON"),
    ('{"hello": "world"}', "is not a StreamStore Bench result file (no schema_version)"),
    ("[1, 2, 3]", "is not a StreamStore Bench result file (no schema_version)"),
    ('{"schema_version": 99, "kind": "run"}', "has schema_version 99; this harness reads version 1, 2"),
    ('{"schema_version": 1, "kind": "benchmark"}', "has unknown result kind 'benchmark'"),
])
@pytest.mark.parametrize("command", ["compare", "regress", "report"])
def test_corrupt_foreign_and_unknown_result_files(tmp_path, content, message, command):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "result.json").write_text(content)
    good = Path(__file__).parent / "fixtures" / "baseline"
    arguments = {"compare": [str(good), str(bad)], "regress": ["--candidate", str(bad), "--baseline", str(good)],
                 "report": [str(bad)]}[command]
    completed = bench_command(command, *arguments, "--out", str(tmp_path / "out")) if command == "compare" \
        else bench_command(command, *arguments)
    assert_one_line(completed, 2, message)
