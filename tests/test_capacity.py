"""`bench capacity` against the real broker: a search that finds its answer within its time
bound (the answer confirmed, the next higher rate failed, every step's counts the broker's), a
search where the broker's responses are delayed beyond the SLO (no rate meets it: exit 1 with the
reason), and Ctrl+C (a valid partial capacity.json, exit 130).

Steps are short (3 measured seconds after 2 of warm-up): these tests check the search, not the
figures. The tracker of the first test has a speed ceiling (seams.slowed_tracker: at most 50
orders per 100 ms, under 500/s), so where the search must fail does not depend on how fast the
machine is.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import BROKER_START_TIMEOUT_S, free_port_pair
from kafka_truth import (
    PROJECT_ROOT,
    STEADY_SCENARIO,
    bench_command,
    broker_message_count,
    count_problems,
    signalable_child,
)
from seams import slowed_tracker

from bench.analysis.capacity import Criteria, SearchSettings
from bench.broker.embedded import EmbeddedBroker
from bench.broker.proxy import ClientProxy
from bench.capacity.search import CapacityOptions, run_capacity, step_folders
from bench.commands.capacity import slo_limits
from bench.core.scenario import Scenario
from bench.results.store import load_result

SHORT_STEPS = ("--step-s", "3", "--warmup", "2")
# The tests judge the search, not the generator's punctuality on a shared machine.
SEND_DELAY_LIMIT_MS = 100


def summed_counts(folder, document) -> dict[str, int]:
    """The counts of every step added up (all steps wrote to the one topic)."""
    totals: dict[str, int] = {}
    for step in step_folders(document, folder):
        for name, value in load_result(step)["counts"].items():
            if value is not None:
                totals[name] = totals.get(name, 0) + value
    return totals


@pytest.mark.slow
@pytest.mark.timing
def test_a_generous_search_finds_a_confirmed_rate_below_the_first_failed_one_in_time(kafka_bootstrap, unique_topic,
                                                                                     tmp_path, monkeypatch):
    monkeypatch.setattr("bench.core.runner.tracker_main", slowed_tracker(100, max_batch=50))
    limits = slo_limits(["end_to_end_p99<2s"])
    options = CapacityOptions(slo=("end_to_end_p99<2s",), limits=limits,
                              search=SearchSettings(start_rate=200, min_rate=50, tolerance=0.5),
                              criteria=Criteria(send_delay_limit_us=SEND_DELAY_LIMIT_MS * 1000),
                              step_s=3, warmup_s=2, max_time_s=150, max_producers=1)
    scenario = Scenario.from_toml(STEADY_SCENARIO, {"topic": unique_topic, "partitions": 1})
    out = io.StringIO()
    began = time.monotonic()
    code, folder, document = run_capacity(scenario, options, kafka_bootstrap, tmp_path, broker_mode="external", out=out)
    took = time.monotonic() - began
    print(out.getvalue())
    assert took < options.max_time_s, f"the search took {took:.0f} s, bound {options.max_time_s:g} s"
    assert code == 0 and document["status"] == "complete"
    answer = document["answer"]
    assert answer["confirmed"], answer
    steps = document["steps"]
    at_answer = [row for row in steps if row["rate"] == answer["rate"]]
    assert len(at_answer) >= 2 and all(row["verdict"] == "pass" for row in at_answer)
    assert steps[-1]["purpose"] in ("confirm", "recheck") and steps[-1]["verdict"] == "pass"
    # The next higher rate tested failed, and why is said.
    higher = min(row["rate"] for row in steps if row["rate"] > answer["rate"])
    assert answer["failed_above"] == higher
    # It failed twice (a failed step is rechecked before its rate counts as failed).
    failed_there = [row for row in steps if row["rate"] == higher and row["verdict"] == "fail"]
    assert len(failed_there) >= 2 and all(row["reasons"] for row in failed_there), steps
    assert answer["text"].startswith(f"max sustainable rate {answer['rate']:,.0f} msg/s (confirmed")
    assert answer["rate"] < 500  # the tracker's ceiling: every rate above 500/s fails
    # Every step's counts, added up, are what the broker holds.
    held = broker_message_count(kafka_bootstrap, unique_topic)
    assert not count_problems(summed_counts(folder, document), held)
    assert load_result(folder) == json.loads((folder / "capacity.json").read_text())


@pytest.fixture(scope="module")
def delayed_broker(tmp_path_factory):
    """(bootstrap address through a proxy that delays every broker response by 100 ms, proxy)."""
    port, controller_port = free_port_pair()
    proxy = ClientProxy("127.0.0.1", port, delay_s=0.1).start()
    broker = EmbeddedBroker(port=port, controller_port=controller_port, state_dir=tmp_path_factory.mktemp("delayed-broker"),
                            extra_properties={"advertised.listeners": f"PLAINTEXT://{proxy.address}"})
    try:
        broker.start(timeout_s=BROKER_START_TIMEOUT_S)
        yield proxy.address
    finally:
        broker.stop(grace_s=10)
        proxy.stop()


@pytest.mark.timing
def test_with_responses_delayed_beyond_the_slo_no_rate_meets_it_exit_1_with_the_reason(delayed_broker, unique_topic,
                                                                                        tmp_path):
    completed = bench_command(
        "capacity", str(STEADY_SCENARIO), "--slo", "end_to_end_p99<50ms", "--bootstrap-servers", delayed_broker,
        "--broker", "external", "--topic", unique_topic, "--results-dir", str(tmp_path), "--no-report",
        "--start-rate", "200", "--min-rate", "100", "--send-delay-limit", str(SEND_DELAY_LIMIT_MS), "--no-recheck",
        *SHORT_STEPS,
        timeout=240)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    last = completed.stdout.splitlines()[-1]
    assert last.startswith("no tested rate met the SLO: the lowest, 100 msg/s, failed: SLO end_to_end_p99<50ms: measured")
    (folder,) = tmp_path.iterdir()
    document = load_result(folder)
    assert [row["rate"] for row in document["steps"]] == [200, 100]
    assert all(row["verdict"] == "fail" for row in document["steps"])
    assert document["answer"]["rate"] is None and document["answer"]["text"] == last
    # The injected 100 ms is in every step's end-to-end median.
    assert all(row["latency_us"]["end_to_end"]["p50"] >= 100_000 for row in document["steps"])
    held = broker_message_count(delayed_broker, unique_topic)
    assert not count_problems(summed_counts(folder, document), held)


def test_ctrl_c_ends_the_search_with_a_valid_partial_result_and_exit_130(kafka_bootstrap, unique_topic, tmp_path):
    args = [sys.executable, "-m", "bench", "capacity", str(STEADY_SCENARIO), "--slo", "end_to_end_p99<5s",
            "--bootstrap-servers", kafka_bootstrap, "--broker", "external", "--topic", unique_topic,
            "--results-dir", str(tmp_path), "--no-report", "--start-rate", "100", *SHORT_STEPS]
    with signalable_child(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT) as child:
        seen = []
        for line in child.stdout:  # the first step judged: the search is in its second
            seen.append(line)
            if line.lstrip().startswith("achieved"):
                break
        assert seen and seen[-1].lstrip().startswith("achieved"), "".join(seen) + child.stderr.read()
        child.send_signal(signal.SIGINT)
        rest, errors = child.communicate(timeout=60)
    assert child.returncode == 130, "".join(seen) + rest + errors
    assert "interrupted: the search ends with the steps measured so far" in rest
    (folder,) = tmp_path.iterdir()
    document = load_result(folder)
    assert document["status"] == "interrupted", document
    assert document["steps"][0]["verdict"] in ("pass", "fail", "harness-limit"), document
    # The steps that ran to the end account for every message; the interrupted one purged what
    # was still in flight (failed, possibly written by the broker), as an interrupted bench run does.
    # (A signal before the next step produced ends the search without a row for it.)
    assert all(row["verdict"] != "interrupted" for row in document["steps"][:-1])
    for row in document["steps"]:
        counts = row["counts"]
        assert counts["acked"] + counts["failed"] == counts["sent"], row
        assert counts["consumed"] == counts["broker_offset_delta"] >= counts["acked"], row
    held = broker_message_count(kafka_bootstrap, unique_topic)
    assert not count_problems(summed_counts(folder, document), held, faults=True)
