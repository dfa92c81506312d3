"""Faults by role and measured failover: the syntax, the pure figures, and runs against real brokers.

The pure parts (syntax, gaps, leader changes, windows) need no broker. The runs check their counts
against the broker's own offsets.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from kafka_truth import STEADY_SCENARIO

from bench.analysis.failover import (
    failover_section,
    leaders_before,
    longest_gaps,
    metadata_series,
    new_leader_ms,
    window_end_ms,
    window_percentiles,
)
from bench.broker.fault_spec import Fault, check_schedule, check_targets, parse_fault
from bench.core.availability import ActivityLog, PartitionActivity
from bench.core.recorder import record_counts
from bench.core.scenario import Scenario
from bench.results.histograms import encode_histogram, new_latency_histogram
from streamstore.errors import UsageError

MS = 1_000_000


@pytest.mark.parametrize("text, fault", [
    ("kill@20+5", Fault("kill", 20.0, 5.0)),
    ("kill:leader@20+10", Fault("kill", 20.0, 10.0, "leader", 0)),
    ("kill:leader/2@20+10", Fault("kill", 20.0, 10.0, "leader", 2)),
    ("pause:follower@20+5", Fault("pause", 20.0, 5.0, "follower", 0)),
    ("pause:followers/1@20+9", Fault("pause", 20.0, 9.0, "followers", 1)),
    ("kill:controller@20+10", Fault("kill", 20.0, 10.0, "controller")),
    ("stop:node2@20+10", Fault("stop", 20.0, 10.0, "node2")),
    ("rolling-restart@20", Fault("rolling-restart", 20.0, 0.0)),
    ("isolate:leader@20+5", Fault("isolate", 20.0, 5.0, "leader")),
    ("delay:node1=200ms@20+10", Fault("delay", 20.0, 10.0, "node1", 0, 200.0)),
])
def test_fault_syntax_reads_back_what_it_writes(text, fault):
    assert parse_fault(text) == fault
    assert str(fault) == text
    assert parse_fault(str(fault)) == fault


@pytest.mark.parametrize("text, message", [
    ("kill:boss@20+5", "unknown target 'boss'"),
    ("rolling-restart:leader@20", "rolling-restart takes only a start"),
    ("rolling-restart@20+5", "rolling-restart takes only a start"),
    ("delay:node1@20+5", "delay needs how long to delay, =MILLISECONDSms"),
    ("kill:node1=5ms@20+5", "=5ms: only delay and slow-consumer take =MILLISECONDSms"),
    ("isolate@20+5", "isolate needs a target"),
    ("kill:leader@20", r"no \+FOR: how long the fault lasts"),
])
def test_bad_fault_text_says_what_is_wrong_in_one_line(text, message):
    with pytest.raises(UsageError, match=f"^--fault '{re.escape(text)}': .*{message}") as caught:
        parse_fault(text)
    assert "\n" not in str(caught.value)


def test_targets_are_checked_against_the_cluster_before_the_run():
    check_targets([parse_fault("kill:leader@5+5"), parse_fault("kill:controller@5+5")], 1, 3, proxied=False)
    check_targets([parse_fault("pause:follower/2@5+5"), parse_fault("kill:node3@20+5")], 3, 3, proxied=False)
    for fault, nodes, message in [
        ("pause:follower@5+5", 1, "needs a cluster of several nodes"),
        ("rolling-restart@5", 1, "needs a cluster of several nodes"),
        ("kill:node4@5+5", 3, r"no node 4; the nodes are 1..3"),
        ("kill:leader/3@5+5", 3, r"partitions 0..2"),
        ("isolate:leader@5+5", 3, "acts through a proxy"),
        ("kill@5+5", 3, "name the node of the 3-node cluster"),
    ]:
        with pytest.raises(UsageError, match=message):
            check_targets([parse_fault(fault)], nodes, 3, proxied=False)


def test_faults_on_different_targets_may_overlap_and_a_rolling_restart_must_be_the_last():
    check_schedule([parse_fault("pause:followers@5+9"), parse_fault("kill:leader@11+10")], 30)
    with pytest.raises(UsageError, match=r"^--fault kill:leader@8\+5: overlaps --fault kill:leader@5\+5$"):
        check_schedule([parse_fault("kill:leader@5+5"), parse_fault("kill:leader@8+5")], 30)
    check_schedule([parse_fault("kill:leader@5+5"), parse_fault("rolling-restart@20")], 30)
    with pytest.raises(UsageError, match="whose length is not known in advance"):
        check_schedule([parse_fault("rolling-restart@5"), parse_fault("kill:leader@20+5")], 30)
    with pytest.raises(UsageError, match="overlaps"):
        check_schedule([parse_fault("kill:leader@5+10"), parse_fault("rolling-restart@10")], 30)


def test_faults_are_a_scenario_field_and_fault_free_fingerprints_do_not_change():
    plain = Scenario.from_toml(STEADY_SCENARIO)
    faulted = Scenario.from_toml(STEADY_SCENARIO, {"faults": ["kill:leader@5+5"], "duration_s": 30})
    assert faulted.faults == ("kill:leader@5+5",)
    assert "faults" not in {k for k in plain.to_dict() if plain.to_dict()[k]}
    # The fingerprint of a scenario without faults is computed without the field (and without
    # delivery_reports at "all", which every run had before that field existed).
    assert plain.delivery_reports == "all"
    import dataclasses
    import hashlib
    import json
    values = {k: v for k, v in plain.to_dict().items() if k not in ("name", "topic", "duration_s", "warmup_s",
              "drain_timeout_s", "phases", "faults",
              "min_insync_replicas", "unclean_leader_election", "delivery_reports",
              "transaction_size", "transaction_abort_ratio", "isolation_level",
              "consumer_groups", "consumers_per_group", "group_protocol",
              "session_timeout_ms", "heartbeat_interval_ms", "backlog")}
    assert plain.fingerprint() == hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":"))
                                                 .encode()).hexdigest()[:16]
    assert faulted.fingerprint() != dataclasses.replace(faulted, faults=()).fingerprint()
    with pytest.raises(UsageError, match="does not end within the 30 s run"):
        Scenario.from_toml(STEADY_SCENARIO, {"faults": ["kill:leader@25+10"], "duration_s": 30})


def test_partition_activity_keeps_counts_and_only_the_long_gaps():
    activity = PartitionActivity(min_gap_ns=100 * MS)
    for partition, at_ms in [(0, 0), (1, 5), (0, 50), (0, 400), (1, 90), (1, 95)]:
        activity.note(partition, at_ms * MS)
    counts, gaps = activity.take()
    assert counts == {0: 3, 1: 3}
    assert gaps == [(0, 50 * MS, 400 * MS)]
    assert activity.take() == ({}, [])
    # A batch of the tracker notes each partition once, at the batch's time, with its count.
    activity.note_batch([2, 2, 1], 700 * MS)
    counts, gaps = activity.take()
    assert counts == {2: 2, 1: 1} and gaps == [(1, 95 * MS, 700 * MS)]
    # At the end, a partition silent since its last note gets the gap up to the end; one noted
    # within the minimum gap gets none.
    activity.note(1, 900 * MS)
    activity.close(950 * MS)
    assert activity.take() == ({1: 1}, [(1, 700 * MS, 900 * MS), (0, 400 * MS, 950 * MS), (2, 700 * MS, 950 * MS)])

    log = ActivityLog()
    log.add(0, {0: 3}, [(0, 1050 * MS, 1400 * MS)])
    log.add(2, {0: 1, 1: 2}, [])
    assert log.series(3) == {"0": [3, 0, 1], "1": [0, 0, 2]}
    assert log.gaps_ms(t0_ns=1000 * MS) == [{"partition": 0, "start_ms": 50.0, "end_ms": 400.0, "gap_ms": 350.0}]


def _gap(partition, start_ms, end_ms):
    return {"partition": partition, "start_ms": start_ms, "end_ms": end_ms, "gap_ms": end_ms - start_ms}


def test_unavailability_is_the_longest_gap_overlapping_the_fault():
    gaps = [_gap(0, 1000, 1200), _gap(0, 19_900, 29_000), _gap(1, 20_100, 24_000), _gap(2, 40_000, 41_000)]
    assert longest_gaps(gaps, 20_000, 30_000) == {0: 9100, 1: 3900}
    # The fault's effect lasts until the ack gap it caused closes, if that is later than its end.
    record = {"start_s": 20.0, "end_s": 25.0}
    assert window_end_ms(record, gaps) == 29_000
    assert window_end_ms({"start_s": 20.0, "end_s": 30.0}, gaps) == 30_000


def _state(*leaders_isr):
    return {p: (leader, (1, 2, 3), tuple(isr)) for p, (leader, isr) in enumerate(leaders_isr)}


SAMPLES = [
    (19.75, _state((1, [1, 2, 3]), (2, [2, 3, 1]))),
    (20.25, _state((1, [1, 2, 3]), (2, [2, 3, 1]))),
    (29.00, _state((2, [2, 3]), (2, [2, 3]))),
    (29.25, _state((2, [2, 3]), (2, [2, 3]))),
    (40.50, _state((2, [2, 3, 1]), (2, [2, 3, 1]))),
]


def test_new_leader_is_the_first_sample_naming_another_leader():
    assert leaders_before(SAMPLES, 20.0) == {0: 1, 1: 2}
    assert new_leader_ms(SAMPLES, node_id=1, start_s=20.0) == ({"0": 9000.0}, None)
    # Node 3 led nothing: nothing to measure, and the reason says so.
    assert new_leader_ms(SAMPLES, node_id=3, start_s=20.0) == ({}, "node 3 led no partition of the topic when the fault began")
    # Node 2 kept its leadership of partition 1: measured as never (None), not as 0.
    assert new_leader_ms(SAMPLES, node_id=2, start_s=20.0) == ({"1": None}, None)


def test_metadata_series_per_second():
    series = metadata_series(SAMPLES, 42)
    assert series["under_replicated"][19] == 0 and series["under_replicated"][29] == 2
    assert series["under_replicated"][30] is None      # no sample that second: unknown, not 0
    assert series["isr_size"]["0"][29] == 2 and series["isr_size"]["0"][40] == 3
    assert series["leader"]["0"][20] == 1 and series["leader"]["0"][29] == 2


def _intervals(values_by_second):
    intervals = {}
    for second, values in values_by_second.items():
        histogram = new_latency_histogram()
        record_counts(histogram, Counter(values))
        intervals[second] = encode_histogram(histogram)
    return intervals


def test_latency_during_and_before_a_fault_merge_the_seconds_of_each_window():
    intervals = _intervals({9: [1000] * 30, 10: [2000] * 10, 11: [900_000] * 10, 12: [5000] * 10})
    during = window_percentiles(intervals, 11, 12)
    assert during["p50"] == pytest.approx(900_000, rel=0.01)
    before = window_percentiles(intervals, 9, 11)
    assert before["p50"] == pytest.approx(1000, rel=0.01) and before["p99_9"] == pytest.approx(2000, rel=0.01)
    assert window_percentiles(intervals, 30, 31) == {"p50": None, "p99": None, "p99_9": None}


def test_failover_section_for_a_leader_kill():
    record = {"fault": "kill:leader@20+10", "kind": "kill", "node_id": 1, "role": "leader", "partition": 0,
              "start_s": 20.0, "end_s": 30.0, "back_s": 41.0}
    ack_gaps = [_gap(0, 19_990, 29_050)]
    consume_gaps = [_gap(0, 19_995, 29_300), _gap(1, 25_000, 25_200)]
    intervals = {"service_time": _intervals({s: [2000] for s in range(10, 20)} | {29: [9_000_000]})}
    section = failover_section([record], ack_gaps, consume_gaps, [0, 1, 2], [0, 1, 2], SAMPLES, 42, intervals,
                               gap_threshold_ms=100, sample_every_s=0.25, missed_samples=0, acks_tracked=None,
                               warmup_s=5)
    [fault] = section["faults"]
    assert fault["unavailable_ack_ms"] == {"0": 9060, "1": 0.0, "2": 0.0}
    assert fault["longest_ack_gap_ms"] == 9060 and fault["longest_consume_gap_ms"] == 9305
    assert fault["new_leader_ms"] == 9000.0 and "new_leader_ms" not in fault["not_measured"]
    # During: seconds 20..29 (the ack gap closed at 29.05 s); before: the 10 seconds 10..19.
    assert fault["latency_window_s"] == [20, 30] and fault["latency_before_window_s"] == [10, 20]
    assert fault["latency_us"]["service_time"]["before"]["p99_9"] == pytest.approx(2000, rel=0.01)
    assert fault["latency_us"]["service_time"]["during"]["p99_9"] == pytest.approx(9_000_000, rel=0.01)
    # Flat out acks are not tracked per partition: null with the reason, never 0.
    flat = failover_section([record], [], consume_gaps, [], [0, 1, 2], SAMPLES, 42, intervals, gap_threshold_ms=100,
                            sample_every_s=0.25, missed_samples=0, acks_tracked="flat out", warmup_s=5)["faults"][0]
    assert flat["unavailable_ack_ms"] is None and flat["longest_ack_gap_ms"] is None
    assert flat["not_measured"]["longest_ack_gap_ms"] == "flat out"


def test_the_failover_plot_shades_the_fault_and_shows_acks_and_isr(tmp_path):
    from test_plots import FIXTURES, assert_real_png

    from bench.output import plots
    from bench.results.store import load_result

    result = load_result(FIXTURES / "with-fault")
    seconds = len(result["series"]["t_s"])
    record = {"fault": "kill:leader@20+10", "kind": "kill", "node_id": 1, "role": "leader", "partition": 0,
              "start_s": 20.0, "end_s": 30.0, "back_s": 41.0}
    result["failover"] = failover_section([record], [_gap(0, 19_990, 29_050)], [], [0, 1], [0, 1], SAMPLES, seconds,
                                          {}, gap_threshold_ms=100, sample_every_s=0.25, missed_samples=0,
                                          acks_tracked=None, warmup_s=5)
    result["failover"]["series"]["acked_by_partition"] = {"0": [500] * seconds, "1": [400] * seconds}
    [path] = [p for p in plots.write_run_plots(result, tmp_path) if p.name == "failover.png"]
    assert_real_png(path)
    # The report lists each fault with its node and figures.
    from bench.output.report import run_report_blocks, to_markdown

    markdown = to_markdown(run_report_blocks(result, ["failover.png"]))
    assert "## Failover (per fault and node)" in markdown
    # The node was back after the 30 s run stopped producing: marked, and the note says so.
    assert "| kill:leader@20+10 | 1 (leader) | 20.0 | 30.0 | 41.0 [1] | 9,060 | 0 | 9,000 |" in markdown
    assert "- [1] short run: node 1 was back at 41.0 s and producing ended at 30.0 s" in markdown
    # A run without faults has no failover plot.
    (tmp_path / "plain").mkdir()
    written = plots.write_run_plots(load_result(FIXTURES / "with-fault"), tmp_path / "plain")
    assert "failover.png" not in [p.name for p in written]


# ---------------------------------------------------------------------------------------------
# Against a real broker: the figures of a fault run, counts checked against the broker's offsets.


def test_a_paused_leader_shows_as_a_gap_without_acks_per_partition(embedded_broker, unique_topic, tmp_path):
    """The single broker leads every partition: pausing it for 3 s stops acks and consumption on
    all of them for about that long; leadership cannot move, and the result says so."""
    from kafka_truth import assert_counts_match_broker
    from test_faults import bench_chaos

    completed, result = bench_chaos(embedded_broker, unique_topic, tmp_path,
                                    "--rate", "1000", "--duration", "12", "--warmup", "1", "--fault", "pause:leader@4+3")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert_counts_match_broker(result, embedded_broker.bootstrap_servers, faults=True)
    assert result["scenario"]["faults"] == ["pause:leader@4+3"]
    [fault] = result["failover"]["faults"]
    assert (fault["node_id"], fault["role"], fault["kind"]) == (1, "leader", "pause")
    # The end is scheduled from the schedule's start (4 + 3 s), not from when the pause took effect.
    assert 4 <= fault["start_s"] < 5 and fault["end_s"] >= 7
    # Each of the 3 partitions waited for the SIGCONT: a gap of the pause's length, give or take a
    # batch interval before it and the catch-up after it.
    assert sorted(fault["unavailable_ack_ms"]) == ["0", "1", "2"]
    for gap_ms in [*fault["unavailable_ack_ms"].values(), *fault["unavailable_consume_ms"].values()]:
        assert 2_500 <= gap_ms <= 8_000, fault
    assert fault["new_leader_ms"] is None and fault["not_measured"]["new_leader_ms"]
    during, before = (fault["latency_us"]["service_time"][w]["p99_9"] for w in ("during", "before"))
    assert during >= 2_500_000 and before < during
    pause_events = [e for e in result["events"] if e["kind"] in ("broker-pause", "broker-resume")]
    assert [(e["node_id"], e["role"]) for e in pause_events] == [(1, "leader"), (1, "leader")]
    assert "failover pause:leader@4+3 on node 1 (leader)" in completed.stdout


def test_bench_proxy_start_leaves_no_file_open_in_the_starting_process(tmp_path):
    """The background proxies write to client-proxies.log; the command that starts them closes
    its own handle of that file (an unclosed file is a ResourceWarning when it is collected)."""
    import gc
    import warnings

    from conftest import free_ports

    from bench.broker.proxy_control import remote_proxies
    from bench.cli import main

    listen, upstream = free_ports(2)
    state_dir = str(tmp_path / "proxied")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert main(["proxy", "start", "--state-dir", state_dir, "--node", f"1={listen}:{upstream}"]) == 0
        gc.collect()
    try:
        assert list(remote_proxies(state_dir)) == [1]
        leaked = [str(w.message) for w in caught if "client-proxies.log" in str(w.message)]
        assert not leaked, leaked
    finally:
        assert main(["proxy", "stop", "--state-dir", state_dir]) == 0
    assert not remote_proxies(state_dir)


def test_an_isolated_leader_cuts_its_clients_off_through_the_proxy(proxied_broker, unique_topic, tmp_path):
    from kafka_truth import assert_counts_match_broker, bench_command

    from bench.results.store import load_result

    broker, bootstrap = proxied_broker
    completed = bench_command(
        "chaos", str(STEADY_SCENARIO), "--bootstrap-servers", bootstrap, "--broker", "external",
        "--state-dir", str(broker.state_dir), "--topic", unique_topic, "--results", str(tmp_path), "--no-report",
        "--set", "idempotence=true", "--rate", "1000", "--duration", "12", "--warmup", "1",
        "--fault", "isolate:leader@3+3", "--fault", "delay:node1=300ms@8+2", timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    [folder] = [path.parent for path in tmp_path.glob("*/result.json")]
    result = load_result(folder)
    assert_counts_match_broker(result, bootstrap, faults=True)
    isolate, delay = result["failover"]["faults"]
    assert (isolate["kind"], isolate["node_id"], isolate["role"]) == ("isolate", 1, "leader")
    assert 2_500 <= isolate["longest_ack_gap_ms"] <= 8_000, isolate
    # The broker process never stopped: only its clients were cut off (no restart, no back_s).
    assert isolate["back_s"] is None and broker.is_running()
    # 300 ms on every response: each ack arrives at least that late while the delay lasts.
    assert delay["latency_us"]["service_time"]["during"]["p50"] >= 300_000
    assert delay["not_measured"]["new_leader_ms"] == "a delay fault moves no leadership"
    kinds = [e["kind"] for e in result["events"] if e["kind"].startswith("broker-")]
    assert kinds == ["broker-isolate", "broker-reconnect", "broker-delay", "broker-undelay"]


# ---------------------------------------------------------------------------------------------
# On the run's 3-node cluster (conftest kafka_cluster: combined broker+controller nodes, a killed
# node fenced after 4 s), RF 3.


def cluster_chaos(cluster, topic, results_root, *args):
    """`bench chaos` on the cluster, RF 3; (completed process, result)."""
    from kafka_truth import bench_command

    from bench.results.store import load_result

    completed = bench_command(
        "chaos", str(STEADY_SCENARIO), "--bootstrap-servers", cluster.bootstrap_servers, "--broker", "external",
        "--state-dir", str(cluster.state_dir), "--topic", topic, "--results", str(results_root), "--no-report",
        "--set", "replication_factor=3", *args, timeout=900)
    folders = list(results_root.glob("*/result.json"))
    assert len(folders) == 1, completed.stdout + completed.stderr
    return completed, load_result(folders[0])


@pytest.mark.slow
def test_a_killed_leader_with_acks_all_loses_nothing_and_fails_over_within_the_kill(kafka_cluster, unique_topic,
                                                                                     tmp_path):
    """The leader of a partition is killed 20 s into a 60 s run at 2,000 orders/s and restarted 10 s
    later. The partition is one whose leader is not also the active controller: killing both at
    once first needs a new controller, whose fresh sessions delay the fencing of the dead node
    (measured: a new leader only when the node came back, 10 s later; docs/faults.md)."""
    from kafka_truth import assert_counts_match_broker

    from bench.broker.roles import active_controller, topic_state
    from streamstore.admin import connect_admin, ensure_topic

    admin = connect_admin(kafka_cluster.bootstrap_servers)
    ensure_topic(admin, unique_topic, 3, 3, config={"min.insync.replicas": "2"})
    controller = active_controller(kafka_cluster.bootstrap_servers)
    partition = next(p for p, state in sorted(topic_state(admin, unique_topic).items()) if state.leader != controller)
    completed, result = cluster_chaos(
        kafka_cluster, unique_topic, tmp_path, "--set", "idempotence=true", "--set", "min_insync_replicas=2",
        "--rate", "2000", "--duration", "60", "--warmup", "5", "--fault", f"kill:leader/{partition}@20+10")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert_counts_match_broker(result, kafka_cluster.bootstrap_servers, faults=True)
    assert result["counts"]["lost"] == 0 and result["counts"]["duplicated"] == 0
    [fault] = result["failover"]["faults"]
    assert fault["role"] == "leader" and fault["node_id"] != controller and fault["partition"] == partition
    assert fault["back_s"] is not None and fault["back_s"] > fault["end_s"]
    # The partition waited for a new leader: a real gap, and shorter than the 10 s the node was dead.
    assert 1_000 < fault["unavailable_ack_ms"][str(partition)] < 10_000, fault
    assert fault["new_leader_ms"] is not None and fault["new_leader_ms"] < 10_000
    assert max(v for v in result["failover"]["series"]["under_replicated"] if v is not None) >= 1
    print(completed.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("reports", ["all", "failures"])
def test_acks_1_loses_exactly_the_acked_orders_missing_from_the_log(kafka_cluster, unique_topic, tmp_path, reports):
    """Both followers of partition 0 are frozen while its leader acks alone (acks=1); then the leader
    is killed and the followers resumed: one of them leads with a log that never had those orders.
    (With 2 of 3 combined nodes frozen the controller quorum is down, so the ISR cannot shrink: the
    stale followers are still "in sync" and the election is a clean one.) With failures-only
    reports the acked count is accepted - failed and the loss the same exact one."""
    from confluent_kafka import Consumer, TopicPartition

    from bench.core.clients import high_watermarks
    from streamstore.admin import topic_watermarks
    from streamstore.trace import read_trace

    completed, result = cluster_chaos(
        kafka_cluster, unique_topic, tmp_path, "--set", 'acks="1"', "--set", f'delivery_reports="{reports}"',
        "--rate", "2000", "--duration", "35",
        "--warmup", "2", "--fault", "pause:followers@5+9", "--fault", "kill:leader@11+10")
    assert completed.returncode == 3, completed.stdout + completed.stderr
    assert result["status"] == "failed" and result["delivery_reports"] == reports
    counts = result["counts"]
    assert counts["lost"] > 0 and counts["failed"] == 0
    # An independent consumer reads the whole log: the run's orders in it are the acked ones less the lost.
    ends = high_watermarks(topic_watermarks(kafka_cluster.bootstrap_servers, unique_topic))
    consumer = Consumer({"bootstrap.servers": kafka_cluster.bootstrap_servers, "group.id": f"check-{unique_topic}",
                         "enable.auto.commit": False, "log_level": 0})
    consumer.assign([TopicPartition(unique_topic, p, 0) for p in ends])
    present, seen = set(), 0
    run_id = bytes.fromhex(result["run_id"])
    while seen < sum(ends.values()):
        for message in consumer.consume(5000, 10):
            assert message.error() is None, message.error()
            seen += 1
            trace = read_trace(message.headers())
            if trace is not None and trace.run_id == run_id:
                present.add((trace.producer, trace.sequence))
    consumer.close()
    assert counts["lost"] == counts["acked"] - len(present), (counts, len(present))
    assert counts["broker_offset_delta"] == sum(ends.values()) == counts["consumed"]
    assert [f["role"] for f in result["failover"]["faults"]] == ["follower", "follower", "leader"]
    if reports == "failures":  # no ack per message: ack gaps are null with the reason, never 0
        assert all(f["longest_ack_gap_ms"] is None for f in result["failover"]["faults"])
        assert result["failover"]["series"]["acked_by_partition"] is None
    print(f"delivery_reports={reports}: lost {counts['lost']:,} of {counts['acked']:,} acked, "
          f"{len(present):,} in the log")


@pytest.mark.slow
def test_a_rolling_restart_under_load_loses_nothing(kafka_cluster, unique_topic, tmp_path):
    """A node restarts in 15 s here, in 45 s when the machine is busy: the 90 s run has time for
    all three, or the result names the nodes its end left alone (the one being restarted then is
    always brought back first). Either way every node it stopped is back in sync, nothing is lost."""
    from kafka_truth import assert_counts_match_broker

    completed, result = cluster_chaos(
        kafka_cluster, unique_topic, tmp_path, "--set", "idempotence=true", "--set", "min_insync_replicas=2",
        "--rate", "1000", "--duration", "90", "--warmup", "2", "--fault", "rolling-restart@3")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert_counts_match_broker(result, kafka_cluster.bootstrap_servers, faults=True)
    assert result["counts"]["lost"] == 0
    records = result["failover"]["faults"]
    restarted = [r["node_id"] for r in records]
    assert restarted == [1, 2, 3][:len(restarted)] and restarted, records
    assert all(r["back_s"] is not None for r in records), records
    in_sync = [e["node_id"] for e in result["events"] if e["kind"] == "broker-in-sync"]
    assert in_sync == restarted
    cut_short = [e["detail"] for e in result["events"] if e["kind"] == "rolling-restart-cut-short"]
    if len(restarted) < 3:
        left = ", ".join(str(n) for n in range(len(restarted) + 1, 4))
        assert cut_short == [f"rolling restart cut short: the run ended before node(s) {left} were restarted "
                             f"({len(restarted)} of 3 restarted)"]
        assert cut_short[0] in result["warnings"]
    else:
        assert cut_short == []
    print(f"restarted nodes {restarted}, back in sync at {[r['back_s'] for r in records]} s")


def test_the_failover_table_row_is_the_worst_over_a_runs_faults():
    """A row shows when the faults happened, the worst figure of each column in the column's
    one unit, and every "n/a" with a note under the table that says why."""
    from bench.analysis.failover import TABLE_COLUMNS, Notes, markdown_table, table_row

    def fault(start_s, back_s, gap_ms, leader_ms, during_us):
        return {"fault": "kill:followers@5+9", "kind": "kill", "node_id": 2, "role": "follower", "start_s": start_s,
                "end_s": start_s + 9, "back_s": back_s, "longest_ack_gap_ms": gap_ms, "longest_consume_gap_ms": None,
                "new_leader_ms": leader_ms,
                "not_measured": {"longest_consume_gap_ms": "the tracker consumed nothing during the run",
                                 **({} if leader_ms else {"new_leader_ms": "node 2 led no partition of the topic"})},
                "latency_us": {"service_time": {"during": {"p99_9": during_us}, "before": {"p99_9": 2_000}}}}

    result = {"scenario": {"acks": "1", "faults": ["kill:followers@5+9"], "duration_s": 30.0},
              "throughput": {"producing_s": 30.0}, "status": "failed",
              "counts": {"lost": 3767, "duplicated": None}, "counts_not_measured": {"duplicated": "no audit"},
              "failover": {"faults": [fault(7.2, 22.1, 9_000.4, None, 14_600_000),
                                      fault(7.3, None, 14_818.0, 13_364.0, 9_000)]}}
    notes = Notes()
    row = table_row(result, notes)
    assert row == ["kill:followers@5+9", "1", "failed", "7.2, 7.3", "22.1 [1], n/a [2]", "30.0", "3,767", "n/a [3]",
                   "14,818", "n/a [4]", "13,364", "14,600.0", "2.0"]
    assert notes.lines() == [
        "[1] short run: node 2 was back at 22.1 s and producing ended at 30.0 s: the run did not see the cluster "
        "settle for 10 s after the fault, so figures may miss its tail; --duration 33 or more does",
        "[2] the node did not answer again before the run ended: run longer (--duration)",
        "[3] no audit", "[4] the tracker consumed nothing during the run"]
    # One unit per column, in its header; cells are bare numbers.
    assert all(("(ms)" in column or "(s)" in column) for column in TABLE_COLUMNS[3:6] + TABLE_COLUMNS[8:])
    table = markdown_table([row], notes)
    assert table.splitlines()[0].startswith("| fault (as scheduled) | acks | status | fault at (s) | node back (s) |")
    assert table.splitlines()[-5:] == ["Notes:", *notes.lines()]
    assert not [cell for cell in row if cell.endswith((" ms", " s"))]


def test_a_slow_consumer_record_reads_as_the_consumer_not_a_node():
    from bench.analysis.failover import failover_rows
    from bench.commands.chaos import failover_lines

    record = {"fault": "slow-consumer=20ms@8+6", "kind": "slow-consumer", "node_id": None, "role": "consumer",
              "partition": None, "start_s": 8.0, "end_s": 14.0, "back_s": None,
              "longest_ack_gap_ms": 247.0, "longest_consume_gap_ms": 249.0, "new_leader_ms": None,
              "latency_us": {"service_time": {"during": {"p99_9": 312_000}, "before": {"p99_9": 475_000}},
                             "end_to_end": {"during": {"p50": 18_100, "p99": 302_000},
                                            "before": {"p50": 9_660, "p99": 429_000}}}}
    assert failover_lines({"faults": [record]}) == [
        "failover slow-consumer=20ms@8+6 on the consumer at 8.000 s: longest gap without a consumed message 249 ms, "
        "end-to-end p50 18.1 ms during vs 9.66 ms before, end-to-end p99 302 ms vs 429 ms"]
    rows, notes = failover_rows([record])
    assert rows[0][:2] == ["slow-consumer=20ms@8+6", "the consumer"]
    assert rows[0][4] == "n/a [1]" and notes[0] == "[1] a slow-consumer fault restarts no node"
