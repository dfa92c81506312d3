"""`bench run` against a real broker: counts, histograms, interval logs, coordinated omission,
the audit on real consumed messages, bad input, interruption."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from hdrh.log import HistogramLogReader
from kafka_truth import assert_counts_match_broker, bench_command, default_signal_dispositions, wait_for_records
from seams import slowed_tracker
from window_truth import hlog_total, window_count, window_sum

from bench.cli import main as bench_main
from bench.commands.run import summary_text
from bench.core import runner
from bench.core.audit import audit_offsets, lost_sequences, offset_ranges
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.core.tracker import TrackerState, absorb_messages
from bench.results.histograms import decode_histogram, new_latency_histogram
from bench.results.store import load_result
from streamstore.admin import connect_admin, ensure_topic, topic_watermarks
from streamstore.config import consumer_config, producer_config
from streamstore.errors import RunFailed
from streamstore.trace import TRACE_HEADER, encode_trace
from streamstore.tracker import OrderTracker

PROJECT = Path(__file__).resolve().parent.parent


def _scenario(topic: str, **fields) -> Scenario:
    values = {"name": "test-run", "topic": topic, "partitions": 2, "rate": 400, "duration_s": 3, "warmup_s": 0,
              "drain_timeout_s": 20, "linger_ms": 1}
    values.update(fields)
    return Scenario.from_mapping(values)


def _run(scenario: Scenario, bootstrap: str, tmp_path: Path):
    return run_scenario(scenario, bootstrap, tmp_path / "results", "external", out=io.StringIO())


def _hdrh_reader_total(path: Path) -> int:
    """The log's total as hdrh's own HistogramLogReader reads it (the format is readable by it)."""
    reader = HistogramLogReader(str(path), new_latency_histogram())
    total = 0
    while (interval := reader.get_next_interval_histogram()) is not None:
        total += interval.get_total_count()
    return total


def test_topic_settings_and_offsets_no_node_answers_for_are_null_with_the_reason(kafka_bootstrap, unique_topic, tmp_path,
                                                                                   monkeypatch):
    """What a node that has just come back answers for longer than the admin reads wait (here
    made to happen) leaves those figures null with the reason; the run itself completes."""
    import bench.core.run_topic as run_topic
    import bench.core.run_writer as run_writer

    unknown = "Broker: Unknown topic or partition"

    def topic_configs(admin, topic, timeout_s=10.0):
        raise RunFailed(f"could not read ConfigResource(ResourceType.TOPIC,{topic}): {unknown}")

    reads = []

    def scenario_watermarks(scenario, bootstrap_servers):
        reads.append(scenario.topic)
        if len(reads) > 1:  # the read after the run
            raise RunFailed(f"could not read offsets of topic '{scenario.topic}': {unknown}")
        return topic_watermarks(bootstrap_servers, scenario.topic)

    monkeypatch.setattr(run_topic, "topic_configs", topic_configs)
    monkeypatch.setattr(run_topic, "scenario_watermarks", scenario_watermarks)  # the read before the run
    monkeypatch.setattr(run_writer, "scenario_watermarks", scenario_watermarks)  # and the one after it
    code, folder, _ = _run(_scenario(unique_topic, rate=200, duration_s=1), kafka_bootstrap, tmp_path)
    document = load_result(folder)
    assert code == 0 and document["status"] == "complete", document["failure"]
    assert document["broker"]["topic_settings"] is None
    assert document["broker"]["not_measured"]["topic_settings"].endswith(unknown)
    assert document["counts"]["broker_offset_delta"] is None
    assert any(w.startswith("broker_offset_delta not measured: could not read offsets") for w in document["warnings"])


def test_fixed_rate_run_counts_histograms_and_interval_logs_agree(kafka_bootstrap, unique_topic, tmp_path, monkeypatch):
    scenario = _scenario(unique_topic)
    console = io.StringIO()
    captured_at = []  # the environment is measured once, when the run starts, not when it is written
    monkeypatch.setattr(runner, "capture_environment",
                        lambda capture=runner.capture_environment: captured_at.append(time.time()) or capture())
    code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external", out=console,)
    assert code == 0, result["failure"]
    assert len(captured_at) == 1 and captured_at[0] < dt.datetime.fromisoformat(result["started_at"]).timestamp()
    assert result["environment"]["not_measured"] == {} and result["environment"]["harness_version"]
    broker = result["broker"]  # the fixture's broker, started before the run: still the embedded one
    assert (broker["embedded"], broker["version_source"], broker["not_measured"]) == (True, "embedded broker jar", {})
    # Not a terminal: one plain progress line per second, no carriage returns.
    progress = [line for line in console.getvalue().splitlines() if line.startswith("t=")]
    assert len(progress) >= scenario.duration_s and "\r" not in console.getvalue()
    document = load_result(folder)
    assert document["status"] == "complete"
    counts = document["counts"]
    expected = round(scenario.rate * scenario.duration_s)
    assert counts["sent"] == counts["acked"] == counts["consumed"] == expected
    assert counts["failed"] == counts["lost"] == counts["duplicated"] == 0
    # The broker's own offsets, read independently of the run.
    assert counts["broker_offset_delta"] == sum(high - low for low, high in topic_watermarks(kafka_bootstrap, unique_topic).values())
    latency = document["latency_us"]
    # The interval logs hold every second; the summaries the measured window of them.
    assert hlog_total(folder / "service_time.hlog") == counts["acked"] == _hdrh_reader_total(folder / "service_time.hlog")
    assert hlog_total(folder / "end_to_end.hlog") == counts["consumed"]
    assert latency["service_time"]["count"] == latency["response_time"]["count"] == window_sum(document, "acked") > 0
    assert latency["service_time"]["count"] == window_count(folder / "service_time.hlog", document)
    assert latency["send_delay"]["count"] == window_sum(document, "sent")
    assert latency["end_to_end"]["count"] == window_count(folder / "end_to_end.hlog", document) == window_sum(document, "consumed")
    # At a fixed rate every message carries the trace: every sequence is audited.
    assert document["audit"] == "sequences" and latency["end_to_end"]["sample_every"] == latency["service_time"]["sample_every"] == 1
    for summary in latency.values():
        assert decode_histogram(summary["histogram"]).get_total_count() == summary["count"]
        assert summary["p50"] <= summary["p99"] <= summary["p99_9"] <= summary["max"]
    series = document["series"]
    assert sum(series["sent"]) == counts["sent"] and sum(series["consumed"]) == counts["consumed"]
    assert len(series["t_s"]) == len(series["lag_messages"]) >= scenario.duration_s
    assert set(series["lag_messages_by_partition"]) == {"0", "1"}
    assert document["fingerprint"] == scenario.fingerprint()
    assert document["throughput"]["acked_per_s"] == round(window_sum(document, "acked") / document["throughput"]["measured_s"], 1)


def test_warmup_seconds_are_in_the_series_but_not_the_summary(kafka_bootstrap, unique_topic, tmp_path):
    code, folder, result = _run(_scenario(unique_topic, duration_s=3, warmup_s=1), kafka_bootstrap, tmp_path)
    assert code == 0, result["failure"]
    assert result["latency_us"]["service_time"]["count"] == window_count(folder / "service_time.hlog", result)
    assert result["latency_us"]["service_time"]["count"] < result["counts"]["acked"]
    assert hlog_total(folder / "service_time.hlog") == result["counts"]["acked"]


def _pause_child(name: str, bootstrap: str, topic: str, records: int, pause_s: float, paused: list) -> threading.Thread:
    """SIGSTOP the run's child process `name` once the broker holds `records` of the run's
    records (it is sending steadily then), SIGCONT pause_s later."""

    def pause() -> None:
        wait_for_records(bootstrap, topic, records, within_s=60)
        child = next(c for c in multiprocessing.active_children() if c.name == name)
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(pause_s)  # the length of the stall under test
        os.kill(child.pid, signal.SIGCONT)
        paused.append(child.pid)

    thread = threading.Thread(target=pause, daemon=True)
    thread.start()
    return thread


@pytest.mark.timing
def test_a_stalled_generator_shows_in_response_time_not_service_time(kafka_bootstrap, unique_topic, tmp_path):
    """Coordinated omission: the producer process is stopped for 1.5 s. Messages it should have
    sent meanwhile go out late; their response time (from the intended send) shows the stall,
    their service time (from the actual send) does not."""
    paused: list[int] = []
    # 1,000 records: 2 s of steady sending at 500/s.
    pauser = _pause_child("bench-producer-0", kafka_bootstrap, unique_topic, records=1_000, pause_s=1.5, paused=paused)
    code, _, result = _run(_scenario(unique_topic, rate=500, duration_s=5), kafka_bootstrap, tmp_path)
    pauser.join(timeout=10)
    assert paused, "the producer was never paused"
    assert code == 0, result["failure"]
    latency = result["latency_us"]
    assert latency["response_time"]["p99"] >= 1_000_000
    assert latency["send_delay"]["p99"] >= 1_000_000
    # The messages sent but not yet acked when the process stopped (the rate times a round trip:
    # a handful, more when the broker answers slower) wait out the stall in their service time
    # too, so the stall reaches service time's p99.9 (its 3rd-worst of 2,500) on some runs, never
    # its p99 (the 25th-worst); response time's p99 lies inside the ~750 late messages.
    assert latency["service_time"]["p99"] < latency["response_time"]["p99"] / 10
    assert result["counts"]["acked"] == result["counts"]["consumed"] == 2500
    assert any("generator fell behind" in warning for warning in result["warnings"])


@pytest.mark.timing
def test_a_paused_broker_shows_in_response_time_p99_9(embedded_broker, unique_topic, tmp_path):
    bootstrap = embedded_broker.bootstrap_servers
    paused: list[int] = []

    def pause_broker() -> None:
        wait_for_records(bootstrap, unique_topic, 1_000, within_s=60)  # 2 s of steady sending at 500/s
        os.kill(embedded_broker.pid, signal.SIGSTOP)
        time.sleep(1.2)  # the length of the stall under test
        os.kill(embedded_broker.pid, signal.SIGCONT)
        paused.append(embedded_broker.pid)

    pauser = threading.Thread(target=pause_broker, daemon=True)
    pauser.start()
    code, _, result = _run(_scenario(unique_topic, rate=500, duration_s=6), bootstrap, tmp_path)
    pauser.join(timeout=10)
    assert paused
    assert code == 0, result["failure"]
    assert result["latency_us"]["response_time"]["p99_9"] >= 800_000
    assert result["counts"]["acked"] == result["counts"]["consumed"] == 3000


def test_audit_on_real_consumed_messages_finds_exactly_the_dropped_and_repeated(kafka_bootstrap, unique_topic):
    """A producer that skips some sequences and repeats others; the tracker's accounting of the
    consumed messages must name exactly those."""
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, partitions=2)
    run_id = uuid.uuid4().bytes
    sent, dropped, repeated = 300, {7, 120, 299}, {0, 55, 56, 200}
    producer = Producer(producer_config(kafka_bootstrap, compression="none"))
    foreign = 0
    for sequence in range(sent):
        copies = 0 if sequence in dropped else 2 if sequence in repeated else 1
        for _ in range(copies):
            producer.produce(unique_topic, b"{}", headers={TRACE_HEADER: encode_trace(run_id, 0, sequence, time.time_ns())})
    producer.produce(unique_topic, b'{"order_id": "x", "user": "u", "item": "i", "quantity": 1}')  # no trace
    foreign += 1
    producer.produce(unique_topic, b"{}", headers={TRACE_HEADER: encode_trace(uuid.uuid4().bytes, 0, 1, time.time_ns())})
    foreign += 1  # another run's message
    assert producer.flush(30) == 0
    expected_messages = sent - len(dropped) + len(repeated) + foreign
    tracker = OrderTracker(consumer_config(kafka_bootstrap, group_id=f"audit-{uuid.uuid4().hex}"), [unique_topic],
                           start_offsets={0: 0, 1: 0})
    state = TrackerState()
    received = 0
    deadline = time.monotonic() + 30
    try:
        while received < expected_messages and time.monotonic() < deadline:
            messages = tracker.consume(500, 0.5)
            if messages:
                received += len(messages)
                absorb_messages(messages, run_id, state, time.time_ns())
    finally:
        tracker.close()
    assert received == expected_messages
    assert state.foreign == foreign
    assert state.audit.duplicated == len(repeated)
    lost, first = lost_sequences(bytes(state.audit.seen[0]), sent, failed=[])
    assert (lost, first) == (len(dropped), sorted(dropped))
    assert len(state.end_to_end_us) == sent - len(dropped) + len(repeated)


def test_offset_audit_on_real_consumed_messages_finds_exactly_the_lost_and_unclaimed(kafka_bootstrap, unique_topic):
    """The flat-out audit: acked offsets come from real delivery reports, consumed ones from the
    tracker's accounting of a real consumer. Some acked messages are withheld from the tracker
    (lost), some sends lose their delivery report (a retry's first copy: unclaimed), some
    messages reach the tracker twice, one belongs to another run."""
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, partitions=2)
    run_id = uuid.uuid4().bytes
    producer = Producer(producer_config(kafka_bootstrap, compression="none"))
    acked: dict[int, list[int]] = {0: [], 1: []}
    reports_lost = {3, 77, 150}
    for sequence in range(300):
        # Every 64th carries the trace, as flat out; the rest are bare values.
        headers = {TRACE_HEADER: encode_trace(run_id, 0, sequence, time.time_ns())} if sequence % 64 == 0 else None

        def on_delivery(error, message, sequence=sequence):
            assert error is None
            if sequence not in reports_lost:
                acked[message.partition()].append(message.offset())

        producer.produce(unique_topic, b"{}", key=str(sequence).encode(), headers=headers, on_delivery=on_delivery)
    producer.produce(unique_topic, b"{}", headers={TRACE_HEADER: encode_trace(uuid.uuid4().bytes, 0, 1, time.time_ns())})
    assert producer.flush(30) == 0
    tracker = OrderTracker(consumer_config(kafka_bootstrap, group_id=f"audit-{uuid.uuid4().hex}"), [unique_topic],
                           start_offsets={0: 0, 1: 0})
    consumed = []
    deadline = time.monotonic() + 30
    try:
        while len(consumed) < 301 and time.monotonic() < deadline:
            consumed += tracker.consume(500, 0.5) or []
    finally:
        tracker.close()
    assert len(consumed) == 301
    withheld = [m for m in consumed if int(m.key() or b"-1") in {10, 200}]
    repeated = [m for m in consumed if int(m.key() or b"-1") in {5, 6, 250}]
    state = TrackerState(audits_offsets=True)
    withheld_ids = {id(m) for m in withheld}
    absorb_messages([m for m in consumed if id(m) not in withheld_ids], run_id, state, time.time_ns())
    absorb_messages(repeated, run_id, state, time.time_ns())
    assert state.foreign == 1
    assert state.offsets_consumed_twice == len(repeated)
    assert len(state.end_to_end_us) == len(range(0, 300, 64))
    lost, unclaimed, first = audit_offsets({p: offset_ranges(o) for p, o in acked.items()},
                                           {p: r.ranges() for p, r in state.consumed_offsets.items()})
    assert lost == len(withheld)
    assert sorted(first) == sorted((m.partition(), m.offset()) for m in withheld)
    assert unclaimed == len(reports_lost)


def test_flat_out_run_samples_the_trace_and_audits_by_offsets(kafka_bootstrap, unique_topic, tmp_path):
    code, folder, result = _run(_scenario(unique_topic, rate=0, duration_s=2, producers=1, delivery_reports="all"),
                                kafka_bootstrap, tmp_path)
    assert code == 0, result["failure"]
    document = load_result(folder)
    assert document["audit"] == "offsets" and document["delivery_reports"] == "all"
    counts = document["counts"]
    assert counts["sent"] == counts["acked"] == counts["consumed"] == counts["broker_offset_delta"] > 1000
    assert counts["lost"] == counts["duplicated"] == 0
    end_to_end = document["latency_us"]["end_to_end"]
    # Sequences 0, 64, 128, ... carry the trace.
    assert end_to_end["sample_every"] == 64 and hlog_total(folder / "end_to_end.hlog") == (counts["sent"] + 63) // 64
    # Service time from the same traced messages; every acked one is still counted and audited.
    service_time = document["latency_us"]["service_time"]
    assert service_time["sample_every"] == 64 and hlog_total(folder / "service_time.hlog") == (counts["sent"] + 63) // 64
    assert service_time["count"] == window_count(folder / "service_time.hlog", document)


# timing: librdkafka's statistics intervals must fall in the 3 s measured window, which producers
# starved of CPU by other workers' brokers can miss (the window is then null, with a warning).
@pytest.mark.timing
def test_flat_out_run_with_failures_only_reports_counts_exactly_and_records_librdkafka_latency(
        kafka_bootstrap, unique_topic, tmp_path):
    """The flat-out default: acked = accepted - failed, the counts audit, service time null with the
    reason, librdkafka's int_latency and rtt instead, end-to-end still per traced message."""
    scenario = _scenario(unique_topic, rate=0, duration_s=4, warmup_s=1, producers=2)
    assert scenario.delivery_reports == "failures"
    code, folder, result = _run(scenario, kafka_bootstrap, tmp_path)
    assert code == 0, result["failure"]
    document = load_result(folder)
    assert document["audit"] == "counts" and document["delivery_reports"] == "failures"
    counts = document["counts"]
    assert counts["sent"] == counts["acked"] == counts["consumed"] == counts["broker_offset_delta"] > 1000
    assert counts["acked"] == sum(high - low for low, high in topic_watermarks(kafka_bootstrap, unique_topic).values())
    assert counts["lost"] == counts["duplicated"] == counts["failed"] == 0
    assert sum(document["series"]["acked"]) == counts["acked"]
    service_time = document["latency_us"]["service_time"]
    assert service_time["count"] == 0 and service_time["p99"] is None and "no delivery report per message" in service_time["not_measured"]
    assert not (folder / "service_time.hlog").exists() or hlog_total(folder / "service_time.hlog") == 0
    end_to_end = document["latency_us"]["end_to_end"]
    # Every traced order was consumed and timed (on a busy machine the tracker may read them all
    # after the measured window, so the whole run's log is what is checked).
    assert end_to_end["sample_every"] == 64 and hlog_total(folder / "end_to_end.hlog") == (counts["sent"] + 63) // 64
    for window in ("int_latency", "rtt"):
        figures = document["client_latency_us"][window]
        assert figures is not None and figures["samples"] > 0 and 0 < figures["avg"] <= figures["max"], figures
    text = summary_text(document, folder)
    assert "delivery reports: failures only" in text and "librdkafka queue latency (int_latency)" in text


@pytest.mark.parametrize("arguments, message", [
    (["--set", "linger=5"], "unknown field 'linger'"),
    (["--message-size", "3XB"], "message_size: unknown size unit 'XB'"),
    (["--rate", "-5"], "rate: -5.0 is out of range (allowed >= 0)"),
    (["--message-size", "1GB"], "message_size: 1,000,000,000 bytes is above the client limit; at most 999,999,920 bytes"),
    (["--set", "compression=gzip", "--set", "compression_level=12"], "compression_level: 12 is out of range (allowed -1..9)"),
    (["--set", "rate"], "--set 'rate': expected key=value"),
    (["--set", "acks=2"], "acks: '2' is not allowed (allowed: all, 0, 1)"),
    (["--set", "producer_config.foo.bar=1"], 'producer_config: librdkafka refuses the settings: No such configuration property: "foo.bar"'),
    (["--set", "producer_config.queue.buffering.max.messages=-5"], "value -5 is outside allowed range"),
    (["--set", "consumer_config.fetch.wait.max.ms=abc"], "consumer_config: librdkafka refuses the settings"),
])
def test_bad_scenario_input_is_one_line_and_exit_2(arguments, message, capsys):
    code = bench_main(["run", str(PROJECT / "scenarios" / "steady-orders.toml"), "--bootstrap-servers", "127.0.0.1:1",
                       "--broker", "external", *arguments])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_missing_scenario_file_is_exit_2(tmp_path, capsys):
    assert bench_main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_writes_a_valid_result_marked_interrupted(kafka_bootstrap, unique_topic, tmp_path, stop_signal):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "run", str(PROJECT / "scenarios" / "steady-orders.toml"),
               "--bootstrap-servers", kafka_bootstrap, "--broker", "external", "--topic", unique_topic,
               "--rate", "300", "--duration", "60", "--warmup", "0", "--results", str(results), "--no-report"]
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_signal_dispositions)
    # Wait for the first progress line: producing has started.
    first_line = process.stdout.readline()
    assert first_line.startswith("run "), first_line + process.stderr.read()
    process.stdout.readline()
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    folders = list(results.iterdir())
    assert len(folders) == 1
    document = load_result(folders[0])
    assert document["status"] == "interrupted"
    assert document["duration_s"] < 30
    counts = document["counts"]
    assert counts["acked"] > 0 and counts["lost"] == 0
    assert counts["sent"] == counts["acked"] + counts["failed"]
    # Every message the broker wrote was consumed. On a slow broker some are still unacked when
    # the 2 s interrupt flush ends: purged, they count as failed, yet some of them were written
    # ("possibly persisted"), so the broker may hold more than was acked, never more than was sent.
    assert counts["consumed"] == counts["broker_offset_delta"]
    assert counts["acked"] <= counts["broker_offset_delta"] <= counts["acked"] + counts["failed"]
    if counts["failed"] == 0:
        assert counts["consumed"] == counts["acked"]
    assert "interrupted" in stdout


# A bug in the producer process, put there from outside the product: every Python process of the
# command (its spawned children too) runs sitecustomize at start-up.
_BROKEN_PRODUCER = """
import bench.core.producer as producer

original = producer.ProducerLoop.report_due


def report_due(self, now_ns):
    if self.second >= 2:
        raise ZeroDivisionError("a bug in the producer")
    return original(self, now_ns)


producer.ProducerLoop.report_due = report_due
"""


def test_a_child_that_fails_with_an_exception_leaves_its_traceback_beside_the_result(kafka_bootstrap, unique_topic,
                                                                                      tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_BROKEN_PRODUCER)
    results = tmp_path / "results"
    completed = bench_command(
        "run", str(PROJECT / "scenarios" / "steady-orders.toml"), "--bootstrap-servers", kafka_bootstrap,
        "--broker", "external", "--topic", unique_topic, "--rate", "200", "--duration", "30", "--warmup", "0",
        "--results", str(results), "--no-report", env={**os.environ, "PYTHONPATH": f"{hook}:{PROJECT}"})
    assert completed.returncode == 3, completed.stdout + completed.stderr
    # The console: one line says what failed and where the traceback is; no traceback on it.
    assert "Traceback" not in completed.stdout + completed.stderr
    assert completed.stdout.splitlines()[-1] == ("failed: producer 0 failed: ZeroDivisionError: a bug in the producer "
                                                 "(traceback in errors.log)")
    [folder] = [path.parent for path in results.glob("*/result.json")]
    assert load_result(folder)["failure"] == completed.stdout.splitlines()[-1].removeprefix("failed: ")
    log = (folder / "errors.log").read_text()
    assert log.startswith("producer 0 failed (")
    assert "Traceback (most recent call last):" in log and 'raise ZeroDivisionError("a bug in the producer")' in log
    assert log.rstrip().endswith("ZeroDivisionError: a bug in the producer")


def test_errors_log_names_each_failed_child_its_time_and_error_above_its_traceback(tmp_path):
    from bench.core.protocol import ChildFailed, write_child_errors

    path = write_child_errors(tmp_path / "errors.log", [
        ChildFailed("producer 1", "ValueError: x", "Traceback (most recent call last):\nValueError: x\n", at=0.0),
        ChildFailed("tracker", "KafkaError: y", "Traceback (most recent call last):\nKafkaError: y", at=86_400.5)])
    assert path.read_text() == ("producer 1 failed (1970-01-01T00:00:00Z): ValueError: x\n"
                                "Traceback (most recent call last):\nValueError: x\n\n"
                                "tracker failed (1970-01-02T00:00:00Z): KafkaError: y\n"
                                "Traceback (most recent call last):\nKafkaError: y\n\n")


def test_a_child_that_fails_while_starting_names_the_file_with_its_traceback(kafka_bootstrap, unique_topic, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import bench.core.producer as producer\n\n\n"
        "def broken(self, *args):\n"
        "    raise ZeroDivisionError('a bug in the producer')\n\n\n"
        "producer.ProducerLoop.__init__ = broken\n")
    completed = bench_command(
        "run", str(PROJECT / "scenarios" / "steady-orders.toml"), "--bootstrap-servers", kafka_bootstrap,
        "--broker", "external", "--topic", unique_topic, "--rate", "200", "--duration", "5", "--warmup", "0",
        "--results", str(tmp_path / "results"), "--no-report", env={**os.environ, "PYTHONPATH": f"{hook}:{PROJECT}"})
    assert completed.returncode == 3, completed.stdout + completed.stderr
    [line] = completed.stderr.splitlines()
    prefix = "error: producer 0 could not start: ZeroDivisionError: a bug in the producer (traceback in "
    assert line.startswith(prefix) and line.endswith(".log)"), line
    log = Path(line[len(prefix):-1])
    try:
        assert "Traceback (most recent call last):" in log.read_text() and "in broken" in log.read_text()
    finally:
        log.unlink()


@pytest.mark.timing
def test_phased_run_sends_each_phase_at_its_rate(kafka_bootstrap, unique_topic, tmp_path):
    scenario = Scenario.from_mapping({"name": "test-phases", "topic": unique_topic, "warmup_s": 0, "producers": 2,
                                      "phases": [{"duration_s": 2, "rate": 200}, {"duration_s": 2, "rate": 800}]})
    code, _, result = _run(scenario, kafka_bootstrap, tmp_path)
    assert code == 0, result["failure"]
    assert result["counts"]["sent"] == result["counts"]["consumed"] == 200 * 2 + 800 * 2
    sent = result["series"]["sent"]
    # A message intended just before a second boundary may go out just after it (a late generator).
    assert abs(sum(sent[:2]) - 400) <= 40 and abs(sum(sent[2:4]) - 1600) <= 40
    assert [e["detail"] for e in result["events"] if e["kind"] == "phase"] == ["200 msg/s for 2 s", "800 msg/s for 2 s"]


def test_a_slow_consumer_fault_slows_end_to_end_latency_while_it_lasts(kafka_bootstrap, unique_topic, tmp_path):
    """slow-consumer=25ms@5+2 in an 8 s run at 500/s: the tracker sleeps 25 ms after each batch from
    5 s to 7 s, measured as end-to-end latency in that window; the fault is in the scenario (and so
    in its fingerprint), its events and its failover record."""
    scenario = _scenario(unique_topic, rate=500, duration_s=8, warmup_s=2, faults=["slow-consumer=25ms@5+2"])
    code, folder, result = _run(scenario, kafka_bootstrap, tmp_path)
    assert code == 0, result["failure"]
    assert_counts_match_broker(result, kafka_bootstrap)
    assert result["scenario"]["faults"] == ["slow-consumer=25ms@5+2"]
    assert result["fingerprint"] != dataclasses.replace(scenario, faults=()).fingerprint()
    assert [(e["t_s"], e["kind"]) for e in result["events"] if e["kind"].startswith("consumer-")] == [
        (5.0, "consumer-slow"), (7.0, "consumer-normal")]
    [record] = result["failover"]["faults"]
    assert (record["fault"], record["kind"], record["role"], record["node_id"]) == (
        "slow-consumer=25ms@5+2", "slow-consumer", "consumer", None)
    assert record["latency_window_s"][0] == 5 and record["latency_before_window_s"][0] >= 2  # after warm-up
    # Each 25 ms sleep holds what arrives meanwhile (at 500/s a message every 2 ms): the median
    # message waits ~12 ms for the batch after it. Only a lower bound holds on any machine: load
    # adds latency, and a freshly started broker's first seconds can be slower than the fault.
    assert record["latency_us"]["end_to_end"]["during"]["p50"] >= 10_000, record["latency_us"]
    assert "unstable" not in " ".join(result["warnings"])


def test_calibrate_measures_both_loops_and_gates_on_min_ratio(kafka_bootstrap, tmp_path):
    topic = f"calibrate-{uuid.uuid4().hex[:8]}"
    completed = bench_command("calibrate", "--bootstrap-servers", kafka_bootstrap, "--broker", "external",
                              "--duration", "1", "--rounds", "1", "--set", f"topic={topic}",
                              "--results-dir", str(tmp_path), "--min-ratio", "1000")
    assert completed.returncode == 1, completed.stdout + completed.stderr  # no harness is 1000x the bare loop
    lines = completed.stdout.splitlines()
    assert lines[0].endswith(", judged against --min-ratio 1000"), lines[0]
    rates = {}
    for label in ("bare produce()+callback", "bare produce_batch()+callback", "bare produce_batch() failures-only",
                  "bare produce_batch() no callback", "bench run", "bench run --produce-only"):
        # Names are padded to one column, so "bench run" does not match "bench run --produce-only".
        [measured] = [line for line in lines if line.startswith(f"round 1  {label:<34} ")]
        rates[label] = float(measured[len(f"round 1  {label}"):].split()[0].replace(",", ""))
        summary = next(line for line in lines if line.startswith(f"{label:<34} ") and "(1 round, no spread)" in line)
        assert summary.split()[-6] == f"{rates[label]:,.0f}", summary
        assert rates[label] > 0
    fastest = max((label for label in rates if label.startswith("bare")), key=rates.__getitem__)
    assert f"the bare loop (fastest): {fastest}" in lines
    # Judged against the fastest loop that keeps exact counts (every loop but the one without callbacks).
    exact = max((label for label in rates if label.startswith("bare") and "no callback" not in label),
                key=rates.__getitem__)
    ratio_line = next(line for line in lines if line.startswith("ratio") and line.endswith(
        f"(1 round, no spread): bench run / {exact}, the fastest loop that keeps exact counts; target >= 1000 (--min-ratio)"))
    assert abs(float(ratio_line.split()[1]) - rates["bench run"] / rates[exact]) < 0.002
    assert "delivery reports failures, counts audit: lost 0, duplicated 0" in completed.stdout
    # The same run with the tracker reading after producing: what reading during the run costs.
    [produce_only] = [line for line in lines if line.startswith(f"round 1  {'bench run --produce-only':<34} ")]
    assert "lost 0, duplicated 0" in produce_only and "no end-to-end: the tracker read after producing" in produce_only
    cost_line = next(line for line in lines if line.endswith(
        "(1 round, no spread): bench run / bench run --produce-only: what the tracker reading during the run costs"))
    assert abs(float(cost_line.split()[1]) - rates["bench run"] / rates["bench run --produce-only"]) < 0.002
    assert lines[-1] == f"below --min-ratio 1000: ratio {ratio_line.split()[1]} (bench run / {exact})"
    # Each measurement's topic is deleted after it: a flat-out second writes hundreds of MB.
    remaining = connect_admin(kafka_bootstrap).list_topics(timeout=10).topics
    assert not [name for name in remaining if name.startswith(topic)]


def test_calibrate_prints_each_rate_and_ratio_with_its_spread_and_the_target_it_was_given(capsys):
    """Round-by-round ratios, mean ± spread (low-high, rounds) as pyperf shows them; the mean is judged."""
    from bench.commands.calibrate import _summary

    rates = {"bare produce()+callback": [300_000.0, 100_000.0], "bare produce_batch()+callback": [400_000.0, 200_000.0],
             "bare produce_batch() no callback": [500_000.0, 250_000.0], "bench run": [450_000.0, 200_000.0]}
    reporting = {"bare produce()+callback", "bare produce_batch()+callback"}
    assert _summary(rates, reporting, 0.85) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "bare produce()+callback            200,000 ± 100,000 msg/s (100,000-300,000, 2 rounds)",
        "bare produce_batch()+callback      300,000 ± 100,000 msg/s (200,000-400,000, 2 rounds)",
        "bare produce_batch() no callback   375,000 ± 125,000 msg/s (250,000-500,000, 2 rounds)",
        "bench run                          325,000 ± 125,000 msg/s (200,000-450,000, 2 rounds)"]
    # 450/500 = 0.9 and 200/250 = 0.8, not 325/375 = 0.867.
    assert lines[5] == "ratio 0.850 ± 0.050 (0.800-0.900, 2 rounds): bench run / bare produce_batch() no callback"
    # Judged against the fastest loop that keeps exact counts: 450/400 and 200/200.
    assert lines[6] == ("ratio 1.062 ± 0.062 (1.000-1.125, 2 rounds): bench run / bare produce_batch()+callback, "
                        "the fastest loop that keeps exact counts; target >= 0.85 (--min-ratio)")
    assert lines[7] == ("ratio 0.800 ± 0.000 (0.800-0.800, 2 rounds): bare produce_batch()+callback / "
                        "bare produce_batch() no callback: what keeping exact counts costs")
    assert lines[-1] == "meets --min-ratio 0.85: ratio 1.062 (bench run / bare produce_batch()+callback)"
    assert _summary(rates, reporting, 1.07) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("below --min-ratio 1.07: ratio 1.062 ")
    assert _summary(rates, reporting, None) == 0
    out = capsys.readouterr().out
    assert "no target: give --min-ratio to judge it" in out and "min-ratio 0" not in out


def test_drain_outlasts_its_timeout_while_the_tracker_keeps_consuming(kafka_bootstrap, unique_topic, tmp_path,
                                                                       monkeypatch):
    # The tracker reads at most 5 orders per 100 ms (50/s, seams.slowed_tracker), so it is about 300
    # orders behind when the producers stop after 2 s; drain_timeout_s counts only time without
    # progress, so the drain outlasts it and reads to the end. (A consumer slowed by its own fetch
    # settings is not slow enough when the producer packs large batches.)
    monkeypatch.setattr("bench.core.runner.tracker_main", slowed_tracker(100, max_batch=5))
    scenario = _scenario(unique_topic, rate=200, duration_s=2, drain_timeout_s=2)
    code, _, result = _run(scenario, kafka_bootstrap, tmp_path)
    assert code == 0, result["failure"]
    counts = result["counts"]
    assert counts["consumed"] == counts["acked"] == counts["broker_offset_delta"] == 400 and counts["lost"] == 0
    drain = next(event for event in result["events"] if event["kind"] == "drain")
    series = result["series"]
    # t_s is the end of each second: these seconds began more than drain_timeout_s into the drain.
    consumed_late = sum(consumed for t_s, consumed in zip(series["t_s"], series["consumed"]) if t_s - 1 >= drain["t_s"] + 2)
    assert consumed_late > 0, series["consumed"]


def test_the_summary_states_each_count_once():
    """A failed run's counts appear on the counts line and in its last line, with separators;
    the result's own count warnings would only repeat them ("warning: 10,002 deliveries failed")."""
    from bench.analysis.stats import derive_warnings
    from bench.commands.run import summary_text

    failure = "10,002 deliveries failed, 0 acked orders lost (first error: Local: Purged in queue)"
    result = {"status": "failed", "failure": failure, "warmup_s": 0,
              "counts": {"sent": 20_000, "acked": 9_998, "failed": 10_002, "consumed": 9_998, "lost": 0,
                         "duplicated": 0},
              "throughput": {"measured_s": 1, "acked_per_s": 9_998.0, "elapsed_s": 20.0}, "latency_us": {},
              "series": {"t_s": [1, 2], "sent": [10_000, 10_000], "acked": [9_998, 0]},
              "warnings": ["10,002 messages were not delivered before the flush deadline and were purged "
                           "(counted as failed)"]}
    result["warnings"] = derive_warnings(result)
    assert "10,002 deliveries failed" in result["warnings"]  # what the file keeps
    lines = summary_text(result, "results/x").splitlines()
    assert lines[1] == "counts: sent 20,000, acked 9,998, failed 10,002, consumed 9,998, lost 0, duplicated 0"
    assert [line for line in lines if line.startswith("warning:")] == [
        "warning: 10,002 messages were not delivered before the flush deadline and were purged (counted as failed)"]
    assert lines[-1] == f"failed: {failure}"
