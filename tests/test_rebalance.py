"""Rebalances: consumer events in the fault syntax (add-consumer, kill-consumer, stop-consumer),
their figures (bench/analysis/rebalance.py), and both group protocols on the real broker."""

from __future__ import annotations

import io

import pytest

from bench.analysis.rebalance import group_lag, idle_intervals, lag_figures, rebalance_entries
from bench.broker.fault_spec import parse_fault, plan_consumer_events
from bench.commands.run import summary_text
from bench.core.audit import SequenceAudit
from bench.core.group_protocol import check_protocol_support, member_settings
from bench.core.group_reads import GroupRead, GroupReads
from bench.core.groups import merged_done
from bench.core.protocol import TrackerDone
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.output.report import run_report_blocks, to_markdown
from bench.results.metrics import METRICS
from bench.results.store import load_result
from streamstore.errors import UsageError
from tests.kafka_truth import assert_counts_match_broker, bench_command, broker_message_count

# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("kill-consumers@3", "did you mean kill-consumer?"),
    ("kill:consumer@3", "did you mean kill-consumer?"),
    ("kill-consumer@3+5", "takes only a start"),
    ("stop-consumer=20ms@3", "takes only a start"),
    ("kill-consumer:grp1@3", "the target of kill-consumer is a consumer group, groupG"),
    ("add-consumer:group0/1@3", "name the group only"),
    ("add-consumer@3s", r"without unit \(@3\)"),
])
def test_a_malformed_consumer_event_is_one_line_naming_its_fault(text, message):
    with pytest.raises(UsageError, match=message) as raised:
        parse_fault(text)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("fields, message", [
    ({"faults": ["kill-consumer@3"]}, "leaves group 0 without a consumer"),
    ({"consumers_per_group": 2, "faults": ["kill-consumer:group1@3"]}, "no consumer group 1"),
    ({"consumers_per_group": 2, "faults": ["kill-consumer:group0/2@3"]}, "consumer 2 of group 0 is not running"),
    ({"consumers_per_group": 2, "faults": ["kill-consumer@3", "stop-consumer@4"]}, "without a consumer"),
    ({"consumers_per_group": 2, "faults": ["kill-consumer@30"]}, "does not end within"),
    ({"consumer_groups": 4, "consumers_per_group": 2, "faults": ["add-consumer@3"]}, "at most 8"),
    ({"consumers_per_group": 2, "transaction_size": 0, "group_protocol": "kip848"}, "group_protocol"),
    ({"group_protocol": "consumer"}, "only consumers that join a group use it"),
    ({"session_timeout_ms": 6000}, "only consumers that join a group use it"),
    ({"consumers_per_group": 2, "session_timeout_ms": 6000, "heartbeat_interval_ms": 6000}, "must be shorter"),
    ({"consumers_per_group": 2, "consumer_config": {"session.timeout.ms": 6000}}, "scenario field 'session_timeout_ms'"),
    ({"consumers_per_group": 2, "consumer_config": {"group.protocol": "consumer"}}, "scenario field 'group_protocol'"),
    ({"consumers_per_group": 2, "group_protocol": "consumer",
      "consumer_config": {"partition.assignment.strategy": "range"}}, "classic-protocol setting"),
])
def test_bad_rebalance_scenarios_are_one_clear_line(fields, message):
    with pytest.raises(UsageError, match=message) as raised:
        Scenario(duration_s=20, **fields)
    assert "\n" not in str(raised.value)


def test_the_consumer_protocol_is_refused_on_a_broker_that_serves_only_classic():
    scenario = Scenario(consumers_per_group=2, group_protocol="consumer")
    with pytest.raises(UsageError, match=r"serves only classic groups .*from 4\.0"):
        check_protocol_support(scenario, {"group.coordinator.rebalance.protocols": "classic"})
    check_protocol_support(scenario, {"group.coordinator.rebalance.protocols": "classic,consumer"})
    with pytest.raises(UsageError, match="no group.coordinator.rebalance.protocols setting"):
        check_protocol_support(scenario, {"num.partitions": "1"})  # before Kafka 3.7
    check_protocol_support(scenario, None)  # not readable: tried, the join fails the run if it must
    # Under the consumer protocol the broker times the session: no client setting for it.
    assert member_settings(Scenario(consumers_per_group=2, group_protocol="consumer", session_timeout_ms=6000)) == {
        "group.protocol": "consumer"}
    assert member_settings(Scenario(consumers_per_group=2, session_timeout_ms=6000)) == {
        "group.protocol": "classic", "session.timeout.ms": 6000}


def test_a_bad_consumer_event_on_the_command_line_exits_2_with_one_line():
    completed = bench_command("chaos", "steady-orders", "--duration", "10", "--set", "consumers_per_group=2",
                              "--fault", "kill-consumer:group0/3@4", timeout=60)
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: --fault kill-consumer:group0/3@4: consumer 3 of group 0 is not running at 4 s (running: 0, 1)"]


# -- pure logic --------------------------------------------------------------------------------


def test_events_resolve_to_processes_and_fingerprint_with_the_protocol():
    faults = [parse_fault(text) for text in ("add-consumer@2", "kill-consumer@4", "stop-consumer:group0/0@5")]
    steps = plan_consumer_events(faults, groups=1, per_group=2)
    assert [(step.fault.kind, step.group, step.consumer) for step in steps] == [
        ("add-consumer", 0, 2), ("kill-consumer", 0, 2), ("stop-consumer", 0, 0)]
    assert str(parse_fault("kill-consumer:group1/0@20")) == "kill-consumer:group1/0@20"
    classic = Scenario(consumers_per_group=2, faults=("kill-consumer@3",))
    assert classic.fingerprint() != Scenario(consumers_per_group=2, faults=("kill-consumer@3",),
                                             group_protocol="consumer").fingerprint()
    before = {k: v for k, v in Scenario().to_dict().items()
              if k not in ("group_protocol", "session_timeout_ms", "heartbeat_interval_ms")}
    from bench.results.fingerprint import fingerprint_of
    assert fingerprint_of(before) == Scenario().fingerprint()


def _bits(*sequences: int) -> tuple[int, bytes]:
    audit = SequenceAudit()
    for sequence in sequences:
        audit.mark(0, sequence)
    return 0, bytes(audit.seen[0])


def test_reported_reads_stand_in_for_a_killed_member_and_date_its_duplicates():
    reads = GroupReads()
    reads.add(GroupRead(0, 1, 1, {0: _bits(0, 1, 2)}, positions={0: 3}))
    reads.add(GroupRead(0, 0, 1, {0: _bits(5)}, positions={1: 1}))
    reads.add(GroupRead(0, 0, 4, {0: _bits(1, 2, 3)}, positions={0: 4}, duplicated=1))  # 1, 2 again; one own re-read
    assert dict(reads.duplicated[0]) == {4: 3}
    killed = reads.stand_in(0, 1)
    assert int.from_bytes(killed.seen[0], "little") == 0b111 and killed.consumer == 1
    survivor = TrackerDone({0: _bits(1, 2, 3, 5)[1]}, 1, 0, {}, 0, group=0, consumer=0)
    merged = merged_done([killed, survivor])
    assert merged.duplicated == 3  # the audit's count is the one the seconds add up to
    assert reads.positions[0] == {1: {0: 3, 1: 1}, 4: {0: 4}}


def test_pauses_lag_and_duplicates_per_event_from_synthetic_reads():
    second = 1_000_000_000
    t0 = 10 * second
    # Partition 0 read until 3.0 s, again from 9.5 s; partition 1 read throughout but idle 4.0-4.5 s.
    # Both idle from 10.8 s to 12 s, after producing ended at 11 s: the end of the run, no pause.
    spans = {0: {0: [(t0 + second, t0 + 3 * second), (t0 + 9_500_000_000, t0 + 10_800_000_000)],
                 1: [(t0 + second, t0 + 10_800_000_000)]}}
    gaps = {0: [(1, t0 + 4 * second, t0 + 4_500_000_000), (0, t0 + 10_800_000_000, t0 + 12 * second),
                (1, t0 + 10_800_000_000, t0 + 12 * second)]}
    assert idle_intervals(spans[0][0], [], t0, 100_000_000) == [(3.0, 9.5)]
    lag = {0: [0, 0, 0, 300, 600, 900, 1200, 1500, 1800, 100, 0, 0]}
    entries = rebalance_entries([{"t_s": 3.2, "kind": "consumer-kill", "group": 0, "consumer": 1,
                                  "fault": "kill-consumer@3"}], spans, gaps, lag, {0: {2: 4, 9: 120}},
                                t0_ns=t0, end_s=12.0, producing_s=11.0, gap_floor_ms=100)
    [entry] = entries
    assert entry["pause_ms_by_partition"] == {"0": 6500.0, "1": 500.0}
    assert entry["partition_pause_max_ms"] == 6500.0 and entry["pause_ms"] == 500.0  # both idle 4.0-4.5 s only
    assert (entry["lag_before_messages"], entry["lag_peak_messages"], entry["recover_s"]) == (0, 1800, 7.8)
    assert entry["duplicated"] == 120  # the duplicate before the event is not its
    assert lag_figures([0, 0, 5, 900, 900], 2.5, 5)["recover_s"] is None
    assert group_lag({0: {0: 10, 1: 10}, 1: {0: 10}}, {0: 0, 1: 0}, {0: {0: 10, 1: 5}, 1: {0: 12, 1: 5}}, 2) == [5, 13]


# -- the real broker ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_killing_one_of_two_consumers_is_measured_and_loses_nothing(kafka_bootstrap, unique_topic, tmp_path, protocol):
    scenario = Scenario(name="rebalance", topic=unique_topic, partitions=3, rate=300, duration_s=10, warmup_s=1,
                        consumers_per_group=2, group_protocol=protocol, session_timeout_ms=6000,
                        heartbeat_interval_ms=1000, faults=("kill-consumer@2",))
    code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external", out=io.StringIO())
    assert code == 0, result["failure"]
    document = load_result(folder)
    [group] = document["groups"]
    duplicated = group["duplicated"]
    assert isinstance(duplicated, int) and document["counts"]["lost"] == group["lost"] == 0
    # Every order the killed consumer read and had not committed was read again by the other.
    assert_counts_match_broker(document, kafka_bootstrap, faults=True, reread=duplicated)
    held = broker_message_count(kafka_bootstrap, unique_topic)
    assert held == document["counts"]["acked"] == 3000 and group["consumed"] - duplicated == held
    assert [c.get("killed", False) for c in group["consumers"]] == [False, True]
    [event] = document["rebalances"]["events"]
    assert (event["kind"], event["group"], event["consumer"]) == ("consumer-kill", 0, 1)
    assert document["rebalances"]["group_protocol"] == protocol
    assert isinstance(event["pause_ms"], float) and isinstance(event["duplicated"], int)
    # The killed member's partitions waited for its session to expire (6 s from its last heartbeat).
    assert event["partition_pause_max_ms"] >= 3000, event
    assert event["duplicated"] == duplicated  # the one event's window holds every re-read
    assert event["lag_peak_messages"] > event["lag_before_messages"], event
    assert event["recover_s"] is not None, event
    assert METRICS["rebalance_partition_pause"].read(document) == event["partition_pause_max_ms"]
    assert METRICS["rebalance_duplicated"].read(document) == duplicated
    line = next(line for line in summary_text(document, folder).splitlines() if line.startswith("rebalance "))
    assert line.startswith(f"rebalance kill-consumer@2 (group 0, consumer 1) at {event['t_s']:.3f} s, group protocol "
                           f"{protocol} (session timeout 6,000 ms, heartbeat 1,000 ms)")
    assert "| kill-consumer@2 | 0/1 |" in to_markdown(run_report_blocks(document, []))


def test_an_added_consumer_joins_and_a_stopped_one_hands_over_cleanly(kafka_bootstrap, unique_topic, tmp_path):
    scenario = Scenario(name="rebalance-scale", topic=unique_topic, partitions=3, rate=300, duration_s=7, warmup_s=1,
                        consumers_per_group=2, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                        faults=("add-consumer@1", "stop-consumer:group0/0@4"))
    code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external", out=io.StringIO())
    assert code == 0, result["failure"]
    document = load_result(folder)
    [group] = document["groups"]
    assert [c["consumer"] for c in group["consumers"]] == ["tracker", "tracker g0c1", "tracker g0c2"]
    assert group["consumers"][2]["consumed"] > 0, "the added consumer read nothing"
    assert_counts_match_broker(document, kafka_bootstrap, faults=True, reread=group["duplicated"])
    events = document["rebalances"]["events"]
    assert [(e["kind"], e["consumer"]) for e in events] == [("consumer-add", 2), ("consumer-stop", 0)]
    assert sum(e["duplicated"] for e in events) <= group["duplicated"]
    assert all(isinstance(e["pause_ms"], float) for e in events)
