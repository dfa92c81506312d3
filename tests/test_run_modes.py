"""Runs with one side only (bench/core/run_modes.py): --produce-only audits by reading the topic
afterwards, --consume-only reads a topic something else fills and audits it against the broker's
offsets."""

from __future__ import annotations

import io
import threading

from confluent_kafka import Producer

from bench.core.run_modes import CONSUME_ONLY, CONSUME_ONLY_NOT_KNOWN, PRODUCE_ONLY
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.results.store import load_result
from streamstore.admin import connect_admin, ensure_topic, topic_watermarks
from tests.kafka_truth import assert_counts_match_broker, bench_command, broker_message_count


def _fill(bootstrap: str, topic: str, count: int) -> None:
    """count untraced 200-byte records, as a producer that is not the harness writes them."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, b"o" * 200)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0


def test_produce_only_audits_by_reading_the_topic_afterwards(kafka_bootstrap, unique_topic, tmp_path):
    scenario = Scenario(name="produce-only", topic=unique_topic, partitions=2, rate=1000, duration_s=3, warmup_s=1)
    code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external", out=io.StringIO(),
                                        mode=PRODUCE_ONLY)
    assert code == 0, result["failure"]
    document = load_result(folder)
    assert_counts_match_broker(document, kafka_bootstrap)
    assert document["counts"]["acked"] == document["counts"]["consumed"] == 3000
    assert document["run_mode"]["mode"] == PRODUCE_ONLY and "afterwards" in document["run_mode"]["audit"]
    # No consumer while producing: no lag and no end-to-end latency, and nothing consumed then.
    assert "end_to_end" not in document["latency_us"] and document["lag"]["max_messages"] is None
    series = document["series"]
    last_send = max(i for i, sent in enumerate(series["sent"]) if sent)
    assert sum(series["consumed"][:last_send]) == 0 and all(lag is None for lag in series["lag_messages"][:last_send])
    assert any(event["kind"] == "audit" for event in document["events"])


def test_consume_only_reads_a_topic_it_did_not_fill_and_audits_it_by_its_offsets(kafka_bootstrap, unique_topic,
                                                                                  tmp_path):
    # The topic holds orders of a produce-only bench run (traced) and records of another producer (not).
    filled = Scenario(name="filler", topic=unique_topic, partitions=3, rate=1000, duration_s=2, warmup_s=0)
    code, _, result = run_scenario(filled, kafka_bootstrap, tmp_path / "filler", "external", out=io.StringIO(),
                                   mode=PRODUCE_ONLY)
    assert code == 0, result["failure"]
    _fill(kafka_bootstrap, unique_topic, 10_000)
    completed = bench_command("run", "steady-orders", "--bootstrap-servers", kafka_bootstrap, "--broker", "external",
                              "--topic", unique_topic, "--results-dir", str(tmp_path / "results"), "--no-report",
                              "--consume-only", "--consume-from", "beginning", "--duration", "2", "--warmup", "0")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    [folder] = (tmp_path / "results").iterdir()
    document = load_result(folder)
    assert_counts_match_broker(document, kafka_bootstrap)
    counts = document["counts"]
    assert counts["consumed"] == 12_000 and (counts["lost"], counts["duplicated"]) == (0, 0)
    assert counts["sent"] is None and "no producer" in document["counts_not_measured"]["acked"]
    run_mode = document["run_mode"]
    assert run_mode["mode"] == CONSUME_ONLY and run_mode["not_known"] == CONSUME_ONLY_NOT_KNOWN
    assert run_mode["start_offsets"] == {"0": 0, "1": 0, "2": 0}
    assert sum(run_mode["audited_to"].values()) == 12_000
    # End-to-end latency only for the records with the harness's trace header.
    assert document["latency_us"]["end_to_end"]["count"] == 2_000
    assert "throughput: " in completed.stdout and "consumed msg/s" in completed.stdout


def test_consume_only_from_the_end_reads_what_arrives_while_it_runs(kafka_bootstrap, unique_topic, tmp_path):
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, 2, 1)
    _fill(kafka_bootstrap, unique_topic, 500)  # before the run: not read
    stop = threading.Event()

    def keep_filling() -> None:
        while not stop.is_set():
            _fill(kafka_bootstrap, unique_topic, 100)

    filler = threading.Thread(target=keep_filling, daemon=True)
    filler.start()
    try:
        scenario = Scenario(name="consume-only", topic=unique_topic, partitions=2, duration_s=2, warmup_s=0)
        code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external",
                                            out=io.StringIO(), mode=CONSUME_ONLY)
    finally:
        stop.set()
        filler.join(timeout=60)
    assert code == 0, result["failure"]
    document = load_result(folder)
    run_mode, counts = document["run_mode"], document["counts"]
    starts = {int(p): offset for p, offset in run_mode["start_offsets"].items()}
    ends = {int(p): offset for p, offset in run_mode["audited_to"].items()}
    assert sum(starts.values()) >= 500  # it began at the end: the earlier records are not read
    audited = sum(ends[p] - starts[p] for p in starts)
    assert audited > 0 and (counts["lost"], counts["duplicated"]) == (0, 0)
    # Every audited offset was read; what it read past them arrived during the drain.
    held = broker_message_count(kafka_bootstrap, unique_topic)
    after = sum(high for _, high in topic_watermarks(kafka_bootstrap, unique_topic).values())
    assert audited <= counts["consumed"] <= after - sum(starts.values()) and held == after
    assert counts["broker_offset_delta"] >= audited


def test_one_sided_runs_refuse_what_they_cannot_do_in_one_line(kafka_bootstrap, unique_topic, tmp_path):
    common = ("run", "steady-orders", "--bootstrap-servers", kafka_bootstrap, "--broker", "external",
              "--results-dir", str(tmp_path), "--no-report", "--duration", "1", "--warmup", "0")
    for args, message in [(("--consume-only", "--topic", unique_topic), f"topic '{unique_topic}' does not exist"),
                          (("--consume-from", "beginning"), "--consume-from: only with --consume-only"),
                          (("--produce-only", "--set", "backlog=100"), "--produce-only: a backlog needs")]:
        completed = bench_command(*common, *args)
        assert completed.returncode == 2, completed.stdout + completed.stderr
        assert message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    assert not any(tmp_path.iterdir())
