"""Broker faults: the injector itself, and runs that survive a killed or paused broker."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port_pair
from kafka_truth import (
    PROJECT_ROOT,
    STEADY_SCENARIO,
    assert_counts_match_broker,
    bench_command,
    default_signal_dispositions,
)

from bench.broker.embedded import EmbeddedBroker
from bench.broker.ensure import room_problem
from bench.broker.fault_spec import broker_faults, consumer_delay_s
from bench.broker.faults import (
    KILL_RECOVERY_S,
    Fault,
    FaultInjector,
    check_schedule,
    fault_summary,
    parse_fault,
    schedule_warnings,
)
from bench.broker.probe import broker_answers
from bench.results.store import load_result
from streamstore.admin import connect_admin
from streamstore.errors import UsageError


@pytest.mark.parametrize("text, fault", [
    ("kill@20+5", Fault("kill", 20.0, 5.0)),
    ("pause@0.5+2.5", Fault("pause", 0.5, 2.5)),
])
def test_fault_text(text, fault):
    assert parse_fault(text) == fault
    assert parse_fault(str(fault)) == fault


@pytest.mark.parametrize("text, problem", [
    ("kill", "no @AT: when the fault begins, in seconds into the run, e.g. kill@20+5"),
    ("kill@20", "no +FOR: how long the fault lasts, in seconds, e.g. kill@20+5"),
    ("halt@20+5", "unknown kind 'halt'; the kinds are kill, pause, stop, isolate, delay, slow-consumer, rolling-restart, "
                  "add-consumer, kill-consumer, stop-consumer"),
    ("kil@20+5", "unknown kind 'kil'; did you mean kill?"),
    ("kill-leader@20+10", "unknown kind 'kill-leader'; did you mean kill:leader?"),
    ("slow_consumer=20ms@5+5", "unknown kind 'slow_consumer'; did you mean slow-consumer?"),
    ("kill:leeder@20+5", "unknown target 'leeder'; did you mean kill:leader?"),
    ("kill:leader@20s+10s", "@20s: the time is a number of seconds without unit (@20)"),
    ("kill:leader@20+10s", "+10s: the length is a number of seconds without unit (+10)"),
    ("kill@-1+5", "@-1: the time is a number of seconds (0 or more), e.g. @20"),
    ("pause@x+1", "@x: the time is a number of seconds (0 or more), e.g. @20"),
    ("kill@20+", "+: the length is missing, a number of seconds such as +20"),
    ("kill@20+0", "the fault must last more than 0 s"),
    ("slow-consumer@5+5", "slow-consumer needs how long to delay, =MILLISECONDSms, e.g. slow-consumer=20ms@10+15"),
    ("slow-consumer=20@5+5", "=20: the delay is a number of milliseconds with its unit, e.g. =200ms"),
    ("slow-consumer:leader=20ms@5+5",
     "slow-consumer acts on the run's own consumer and takes no target, e.g. slow-consumer=20ms@10+15"),
])
def test_bad_fault_text_names_the_faulty_part_in_one_line(text, problem):
    with pytest.raises(UsageError) as caught:
        parse_fault(text)
    assert str(caught.value) == f"--fault {text!r}: {problem} (syntax KIND[:TARGET][=DELAYms]@AT[+FOR]; docs/faults.md)"


def test_a_slow_consumer_is_a_fault_of_the_tracker_not_of_a_broker():
    fault = parse_fault("slow-consumer=20ms@10+15")
    assert fault == Fault("slow-consumer", 10.0, 15.0, delay_ms=20.0) and str(fault) == "slow-consumer=20ms@10+15"
    assert broker_faults([fault, parse_fault("kill@5+5")]) == [parse_fault("kill@5+5")]
    # It overlaps broker faults (they act elsewhere), never another slow consumer.
    check_schedule([fault, parse_fault("kill@12+5")], duration_s=30)
    with pytest.raises(UsageError, match=r"^--fault slow-consumer=5ms@20\+2: overlaps --fault slow-consumer=20ms@10\+15$"):
        check_schedule([fault, parse_fault("slow-consumer=5ms@20+2")], duration_s=30)
    assert [consumer_delay_s([fault], t) for t in (9.99, 10, 24.99, 25)] == [0.0, 0.02, 0.02, 0.0]


def test_schedule_must_fit_the_run_and_not_overlap():
    check_schedule([parse_fault("kill@5+5"), parse_fault("pause@10+2")], duration_s=20)
    with pytest.raises(UsageError, match=r"^--fault pause@8\+2: overlaps --fault kill@5\+5$"):
        check_schedule([parse_fault("pause@8+2"), parse_fault("kill@5+5")], duration_s=20)
    with pytest.raises(UsageError, match=r"^--fault kill@19\+2: does not end within the 20 s run$"):
        check_schedule([parse_fault("kill@19+2")], duration_s=20)


def test_fault_summary_is_the_counts_a_fault_is_judged_by():
    assert fault_summary({"counts": {"lost": 0, "failed": 12, "duplicated": None}}) == {
        "lost": 0, "failed": 12, "duplicated": None}


def test_a_kill_that_leaves_too_little_run_time_is_warned_about():
    warnings = schedule_warnings([parse_fault("kill@5+3")], 10)
    assert warnings == [
        f"--fault kill@5+3: the broker restarts 8 s into the 10 s run, 2 s before it ends, and a killed broker took "
        f"up to {KILL_RECOVERY_S:g} s to answer again: acks may not resume before the run ends, and the producers "
        "then hold what they queued until it answers (the run ends that much later, its acks after the measured "
        f"window); --duration {8 + KILL_RECOVERY_S:g} or more lets the run see the broker back"]
    # Enough time after the restart, or a pause (the broker process never went away): nothing to say.
    assert schedule_warnings([parse_fault("kill@20+5")], 25 + KILL_RECOVERY_S) == []
    assert schedule_warnings([parse_fault("pause@5+3")], 10) == []


def _wait_for_event(injector: FaultInjector, kind: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not any(event["kind"] == kind for event in injector.events):
        assert time.monotonic() < deadline, f"no {kind} event within {within_s} s"
        time.sleep(0.02)


def test_pause_freezes_the_broker_and_resumes_it(embedded_broker):
    injector = FaultInjector(embedded_broker, [parse_fault("pause@0.2+3")]).start()
    _wait_for_event(injector, "broker-pause")
    assert not broker_answers(embedded_broker.bootstrap_servers, timeout_s=1.0)
    injector.join()
    assert broker_answers(embedded_broker.bootstrap_servers, timeout_s=10.0)
    assert [event["kind"] for event in injector.events] == ["broker-pause", "broker-resume"]
    pause, resume = injector.events
    assert 0.2 <= pause["t_s"] < 1.0 and 3.2 <= resume["t_s"] < 4.5


def test_stop_during_a_pause_resumes_the_broker_at_once(embedded_broker):
    injector = FaultInjector(embedded_broker, [parse_fault("pause@0+600")]).start()
    _wait_for_event(injector, "broker-pause")
    began = time.monotonic()
    injector.stop()
    assert time.monotonic() - began < 2
    assert broker_answers(embedded_broker.bootstrap_servers, timeout_s=10.0)


def bench_chaos(broker, topic, results_root, *args, timeout=600):
    """`python -m bench chaos` on the module's own broker (acks=all + idempotence); the result."""
    completed = bench_command(
        "chaos", str(STEADY_SCENARIO), "--bootstrap-servers", broker.bootstrap_servers,
        "--state-dir", str(broker.state_dir), "--topic", topic, "--results", str(results_root), "--no-report",
        "--set", "idempotence=true", "--set", "acks=\"all\"", *args, timeout=timeout,
    )
    folders = list(results_root.glob("*/result.json"))
    assert len(folders) == 1, completed.stdout + completed.stderr
    return completed, load_result(folders[0])


def fault_times(result) -> dict[str, float]:
    return {event["kind"]: event["t_s"] for event in result["events"] if event["kind"].startswith("broker-")}


def test_run_survives_a_paused_broker(embedded_broker, unique_topic, tmp_path):
    completed, result = bench_chaos(embedded_broker, unique_topic, tmp_path,
                                    "--rate", "1000", "--duration", "14", "--warmup", "2", "--fault", "pause@4+4")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert result["status"] == "complete"
    assert_counts_match_broker(result, embedded_broker.bootstrap_servers, faults=True)
    times = fault_times(result)
    assert 4 <= times["broker-pause"] < 5 and 8 <= times["broker-resume"] < 9.5, times
    # Acks stop while the broker is frozen; the run reports the gap and every order arrives.
    [fault] = result["failover"]["faults"]
    assert fault["longest_ack_gap_ms"] >= 3_000
    assert f"longest gap without an ack {fault['longest_ack_gap_ms']:,.0f} ms" in completed.stdout
    assert result["latency_us"]["service_time"]["max"] >= 3_000_000
    assert "faults: lost acknowledged orders 0," in completed.stdout
    # The start line echoes the schedule, so the output alone says what was done to the broker.
    assert "(warm-up 2 s), faults pause@4+4\n" in completed.stdout


def test_run_survives_a_killed_and_restarted_broker(embedded_broker, unique_topic, tmp_path):
    # A killed broker recovers every log this module's runs left before it answers again (20-35 s
    # on a busy machine, longer on Kafka 4.x): the producers' flush waits for it (drain_timeout_s),
    # so the run sees the broker back whatever the restart takes, as a user's long run would.
    completed, result = bench_chaos(embedded_broker, unique_topic, tmp_path,
                                    "--rate", "1000", "--duration", "25", "--warmup", "2", "--fault", "kill@4+1",
                                    "--set", "drain_timeout_s=90")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert result["status"] == "complete"
    assert_counts_match_broker(result, embedded_broker.bootstrap_servers, faults=True)
    times = fault_times(result)
    assert 4 <= times["broker-kill"] < 5 and times["broker-restart"] >= 5 and times["broker-up"] > times["broker-restart"]
    assert result["counts"]["lost"] == 0
    assert embedded_broker.is_running()


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill@20+5", "pause@20+5"])
def test_60_s_at_2000_per_s_loses_no_acknowledged_order(embedded_broker, unique_topic, tmp_path, fault):
    """The issue's target: 60 s at 2,000 orders/s with a fault 20 s in; the figures are printed."""
    completed, result = bench_chaos(embedded_broker, unique_topic, tmp_path,
                                    "--rate", "2000", "--duration", "60", "--warmup", "5", "--fault", fault)
    print(completed.stdout.splitlines()[-1])
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert_counts_match_broker(result, embedded_broker.bootstrap_servers, faults=True)
    assert result["counts"]["lost"] == 0


# ---------------------------------------------------------------------------------------------
# Interruptions: SIGTERM (what CI and `kill` send) leaves a valid result marked interrupted.
# (Ctrl+C during `bench run` is tested in tests/test_run.py.)


def _terminate_after(command: list[str], first_output: str, timeout: float = 240,
                     stop_signal: int = signal.SIGTERM) -> tuple[subprocess.Popen, str]:
    """Start a bench command (in a session of its own), send it stop_signal once a stdout line
    starts with first_output."""
    process = subprocess.Popen([sys.executable, "-m", "bench", *command], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_signal_dispositions, start_new_session=True)
    seen = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        if line.startswith(first_output) or time.monotonic() > deadline:
            break
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=120)
    return process, "".join(seen) + stdout + stderr


def _processes_in_session(session_id: int) -> list[int]:
    """Live processes (no zombies) of a session, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_large_message_sweep_is_acted_on_between_reports(kafka_bootstrap, tmp_path, stop_signal):
    """As `bench run`: the handler only notes the signal, the sweep stops where it waits for a
    worker, kills its workers, deletes its topics and keeps a result marked interrupted (130)."""
    process, output = _terminate_after(
        ["large-message", "--bootstrap-servers", kafka_bootstrap, "--broker", "external",
         "--sizes", "1KB,10KB,100KB,1MB", "--reps", "5", "--results", str(tmp_path)],
        first_output="  ", stop_signal=stop_signal)  # the first finished row of the table
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert "interrupted: stopped the sweep, its workers and topics (result marked interrupted)" in output
    [folder] = [path.parent for path in tmp_path.glob("*/result.json")]
    result = load_result(folder)
    assert result["status"] == "interrupted", result["failure"]
    rows = result["large_message"]["rows"]
    assert 1 <= len(rows) < 8 and all(row["error"] is None for row in rows), rows
    assert not (folder / "errors.log").exists()
    # Nothing of the sweep is left: no worker process, no topic.
    assert _processes_in_session(process.pid) == []
    topics = connect_admin(kafka_bootstrap).list_topics(timeout=10).topics
    assert not [name for name in topics if name.startswith(f"bench-large-message-{result['run_id'][:8]}")]


def test_sigterm_stops_the_embedded_broker_the_run_started(tmp_path):
    port, _ = free_port_pair()
    state_dir = PROJECT_ROOT / ".state" / f"broker-{port}"
    try:
        process, output = _terminate_after(
            ["run", str(STEADY_SCENARIO), "--bootstrap-servers", f"127.0.0.1:{port}", "--broker", "auto",
             "--rate", "200", "--duration", "60", "--warmup", "0", "--results", str(tmp_path), "--no-report"],
            first_output="t=")
        assert process.returncode == 130, output
        # bench run says that it starts a broker, which one, and that it stopped it again.
        assert f"starting the embedded Kafka broker at 127.0.0.1:{port} (nothing answers there" in output
        assert f"broker 127.0.0.1:{port} (embedded, started for this run, Kafka " in output
        assert f"stopped the embedded Kafka broker at 127.0.0.1:{port}, which this command started" in output
        [folder] = [path.parent for path in tmp_path.glob("*/result.json")]
        assert load_result(folder)["status"] == "interrupted"
        assert not EmbeddedBroker(port=port, state_dir=state_dir).is_running()
        assert not broker_answers(f"127.0.0.1:{port}", timeout_s=2)
    finally:
        EmbeddedBroker(port=port, state_dir=state_dir).stop(grace_s=5)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_a_run_that_would_fill_the_embedded_brokers_disk_is_refused_before_producing(embedded_broker, unique_topic, tmp_path):
    # 10^8 orders/s of 1 MB for 1,000 s: far beyond any disk, so the refusal cannot depend on this machine's.
    completed = bench_command(
        "chaos", str(STEADY_SCENARIO), "--bootstrap-servers", embedded_broker.bootstrap_servers,
        "--state-dir", str(embedded_broker.state_dir), "--topic", unique_topic, "--results", str(tmp_path),
        "--no-report", "--rate", "100000000", "--duration", "1000", "--message-size", "1MB", "--fault", "pause@4+4",
    )
    assert completed.returncode == 2, completed.stdout + completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr
    assert "this run writes about 100,000,000.0 GB to the embedded broker's log" in lines[0], lines[0]
    assert not list(tmp_path.glob("*/result.json"))
    # Refused before producing: the topic was never created.
    assert unique_topic not in connect_admin(embedded_broker.bootstrap_servers).list_topics(timeout=10).topics


@pytest.mark.parametrize("free, planned, refused", [
    (10 * 10**9, 8 * 10**9, False),     # fits with the margin
    (10 * 10**9, 9_500_000_000, True),  # fits, but not with the margin
    (5 * 10**8, None, True),            # flat out: under the margin alone
    (5 * 10**9, None, False),
])
def test_room_problem(free, planned, refused):
    problem = room_problem(free, planned, "/state")
    assert (problem is not None) == refused
    if refused:
        assert "/state" in problem and "GB" in problem
