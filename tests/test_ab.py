"""`bench ab` against real brokers: alternating rounds of two sides, the verdict per metric, and
`--check` as a gate that holds on a shared machine (a busy neighbour keeps one core busy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kafka_truth import assert_counts_match_broker, broker_message_count
from seams import slowed_tracker_on

from bench.analysis.rounds import NO_DIFFERENCE
from bench.broker.embedded import EmbeddedBroker
from bench.broker.versions import DEFAULT_KAFKA_VERSION
from bench.cli import main
from bench.results.store import load_result

CI_SCENARIO = Path(__file__).parent.parent / "scenarios" / "ci-gate.toml"
# Short rounds: 8 s runs, 2 s warm-up (5 measured seconds); 3 rounds is the fewest --check takes.
SHORT = ("--rounds", "3", "--duration", "8", "--warmup", "2")
# The tracker sleeps this long after each consumed batch on side B: end-to-end p50 about 2x at
# 1,000 msg/s (docs/reports.md: 3.73 -> 7.63 ms with the same seam).
CONSUMER_DELAY_MS = 9


def _ab(tmp_path: Path, bootstrap: str, topic: str, *extra: str) -> tuple[int, dict]:
    results = tmp_path / "results"
    code = main(["ab", str(CI_SCENARIO), *SHORT, "--set", f"topic={topic}", "--bootstrap-servers", bootstrap,
                 "--broker", "external", "--results-dir", str(results), *extra])
    [ab_file] = sorted(results.glob("*/ab.json"))[-1:]
    document = json.loads(ab_file.read_text())
    assert document["status"] == "complete", document["failure"]
    folders = [entry[side]["folder"] for entry in document["rounds"] for side in "ab"]
    folders += [run["folder"] for run in document["warmup_runs"]]
    assert sorted(folders) == sorted(path.parent.name for path in ab_file.parent.glob("*/result.json"))
    # Each side's runs share its topic: per topic the broker holds what they acknowledged. A
    # warm-up run may fail on a fresh broker of a busy machine (that is what it is for): its
    # timed-out deliveries may have been written, so the broker may hold more, never fewer.
    by_topic: dict[str, list[dict]] = {}
    for name in folders:
        result = load_result(ab_file.parent / name)
        by_topic.setdefault(result["scenario"]["topic"], []).append(result)
    assert sorted(by_topic) == [f"{topic}-a", f"{topic}-b"]
    for side_topic, results in by_topic.items():
        held = broker_message_count(bootstrap, side_topic)
        acked, sent = (sum(r["counts"][key] for r in results) for key in ("acked", "sent"))
        assert acked <= held <= sent and all(r["counts"]["lost"] == 0 for r in results), (side_topic, held, results)
        assert all(r["counts"]["consumed"] == r["counts"]["acked"] == r["counts"]["sent"] and not r["counts"]["duplicated"]
                   for r in results if r["status"] == "complete")
        if all(r["status"] == "complete" for r in results):
            assert acked == held, (side_topic, held)
    return code, document


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "0"], "--rounds must be at least 1, got 0"),
    (["--rounds", "2", "--check", "end_to_end_p50:+50%"], "--check METRIC:+N% needs --rounds 3 or more"),
    (["--a-tree", "/nonexistent"], "--a-tree /nonexistent: not a checkout of this harness"),
    (["--check", "end_to_end_p50:-50%"], "end_to_end_p50 gets worse when it goes up"),
    (["--b-broker-set", "num.io.threads"], "--b-broker-set 'num.io.threads': expected a broker setting KEY=VALUE"),
    (["--a-kafka-version", "2.8.0"], "--kafka-version '2.8.0': the embedded broker runs Apache Kafka"),
    (["--a-kafka-version", DEFAULT_KAFKA_VERSION], "both sides would run on the same broker"),
    (["--b-kafka-version", "3.8.1", "--state-dir", "x"], "--state-dir: each side's own broker has its own state dir"),
    (["--b-broker-set", "num.io.threads=4", "--broker", "external"], "start a broker per side: not with --broker external"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    code = main(["ab", str(CI_SCENARIO), "--bootstrap-servers", "127.0.0.1:1", "--broker", "external",
                 "--results-dir", str(tmp_path), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "no ab folder for a command that measured nothing"


@pytest.fixture
def busy_neighbour():
    """A process that keeps one core busy for the test's length (2 cores: half the machine)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.timing
@pytest.mark.slow
def test_gate_with_a_busy_neighbour_passes_identical_sides_and_fails_a_doubled_end_to_end(
        kafka_bootstrap, unique_topic, tmp_path, monkeypatch, busy_neighbour, capsys):
    code, same = _ab(tmp_path / "same", kafka_bootstrap, f"{unique_topic}-same", "--check")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert same["status"] == "complete" and same["compared_rounds"] == 3
    assert [entry["order"] for entry in same["rounds"]] == ["ab", "ba", "ab"]
    assert same["metrics"]["end_to_end_p50"]["verdict"].startswith(NO_DIFFERENCE), printed
    assert "ab: the two sides are the same scenario" in printed and "ab: ok, B within all 6 checks" in printed

    monkeypatch.setattr("bench.core.runner.tracker_main", slowed_tracker_on("-b", CONSUMER_DELAY_MS))
    code, slowed = _ab(tmp_path / "slowed", kafka_bootstrap, f"{unique_topic}-slowed", "--check")
    printed = capsys.readouterr().out
    assert code == 1, printed
    end_to_end = slowed["metrics"]["end_to_end_p50"]
    assert end_to_end["b_over_a"]["mean"] >= 1.5, printed
    [check] = [c for c in slowed["checks"] if c["check"] == "end_to_end_p50:+50%"]
    assert check["b_worse"] and check["reason"].startswith("WORSE: B worse than A by over 25% in every round"), printed


@pytest.mark.timing
@pytest.mark.slow
def test_a_20ms_response_delay_on_side_b_shows_as_b_over_a_and_fails_the_check(proxied_broker, unique_topic, tmp_path,
                                                                                capsys):
    broker, bootstrap = proxied_broker
    # As the latency-truth test runs: without linger the baseline p50 is the round trip, steady.
    # A 20 ms delay is 5x that: short runs show it (after the warm-up run, which pays for the
    # fresh topics' first metadata and leader lookups).
    code, document = _ab(tmp_path, bootstrap, unique_topic, "--state-dir", str(broker.state_dir),
                         "--rate", "500", "--set", "linger_ms=0", "--duration", "4", "--warmup", "1",
                         "--b-set", 'faults=["delay:node1=20ms@0+4"]',
                         "--check", "end_to_end_p50:+50%")
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert document["sides"]["b"]["label"] == "faults=['delay:node1=20ms@0+4']"
    assert document["sides"]["a"]["label"] == "faults=[]"
    end_to_end = document["metrics"]["end_to_end_p50"]
    assert end_to_end["b_over_a"]["low"] >= 1.5, end_to_end
    assert len(end_to_end["a"]["rounds"]) == len(end_to_end["b"]["rounds"]) == 3
    assert "check end_to_end_p50:+50%: WORSE" in printed
    assert printed.strip().splitlines()[-1] == "ab: B is worse beyond 1 of 1 checks"


def test_sides_on_their_own_brokers_differ_in_kafka_version_and_a_broker_setting(tmp_path, capsys):
    """Each side gets an embedded broker of its own, started for the rounds: A on the previous
    Kafka line, B on the default with num.io.threads=4; kept running here so the test can read
    each broker's offsets, then stopped."""
    results = tmp_path / "results"
    code = main(["ab", str(CI_SCENARIO), "--rounds", "1", "--duration", "3", "--warmup", "1", "--warmup-runs", "0",
                 "--a-kafka-version", "3.8.1", "--b-broker-set", "num.io.threads=4", "--keep-broker",
                 "--results-dir", str(results)])
    printed = capsys.readouterr().out
    [ab_file] = results.glob("*/ab.json")
    document = json.loads(ab_file.read_text())
    kept = {side: line.rsplit("--state-dir ", 1)[1] for line in printed.splitlines()
            for side in "AB" if line.startswith(f"side {side}'s broker left running at ")}
    try:
        assert code == 0, printed
        assert document["sides"]["a"]["label"] == "kafka 3.8.1, broker num.io.threads=2"
        assert document["sides"]["b"]["label"] == f"kafka {DEFAULT_KAFKA_VERSION}, broker num.io.threads=4"
        assert document["sides"]["b"]["broker"] == {"kafka_version": DEFAULT_KAFKA_VERSION,
                                                    "settings": {"num.io.threads": "4"}}
        [entry] = document["rounds"]
        for side, version in (("a", "3.8.1"), ("b", DEFAULT_KAFKA_VERSION)):
            result = load_result(ab_file.parent / entry[side]["folder"])
            # Measured by the run on the broker it used, not taken from the command line.
            assert result["broker"]["version"] == version and result["broker"]["embedded"] is True
            assert result["broker"]["settings"]["num.io.threads"] == ("4" if side == "b" else "2")
            assert_counts_match_broker(result, result["broker"]["bootstrap_servers"])
        assert sorted(kept) == ["A", "B"], printed
    finally:
        for state_dir in kept.values():
            EmbeddedBroker(port=0, controller_port=1, state_dir=state_dir).stop(grace_s=10)
