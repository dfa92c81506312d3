"""Consumer groups and fan-out (bench/core/groups.py): every group reads every acked order once."""

from __future__ import annotations

import io

import pytest

from bench.commands.run import summary_text
from bench.core.audit import SequenceAudit
from bench.core.groups import consumer_slots, fans_out, merged_done
from bench.core.protocol import TRACKER, ConsumerSlot, TrackerDone, tracker_name
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.output.report import run_report_blocks, to_markdown
from bench.results.fingerprint import fingerprint_of
from bench.results.metrics import METRICS
from bench.results.store import load_result
from streamstore.errors import UsageError
from tests.kafka_truth import assert_counts_match_broker, broker_message_count


@pytest.mark.parametrize("fields, message", [
    ({"consumer_groups": 0}, "consumer_groups"),
    ({"consumers_per_group": 1.5}, "consumers_per_group"),
    ({"consumer_groups": 3, "consumers_per_group": 3}, "at most 8 in all"),
    ({"consumers_per_group": 2, "transaction_size": 10}, "does not combine with transaction_size"),
])
def test_bad_consumer_layouts_are_one_clear_line(fields, message):
    with pytest.raises(UsageError, match=message) as raised:
        Scenario(**fields)
    assert "\n" not in str(raised.value)


def test_the_default_layout_is_the_one_tracker_and_keeps_every_fingerprint():
    scenario = Scenario()
    assert not fans_out(scenario) and consumer_slots(scenario, "abc") == [ConsumerSlot()]
    assert tracker_name() == TRACKER
    before = {key: value for key, value in scenario.to_dict().items()
              if key not in ("consumer_groups", "consumers_per_group")}
    assert fingerprint_of(before) == scenario.fingerprint()
    assert Scenario(consumer_groups=2).fingerprint() != scenario.fingerprint()
    slots = consumer_slots(Scenario(consumer_groups=2, consumers_per_group=2), "abc")
    assert [(s.group, s.consumer, s.group_id, s.subscribe) for s in slots] == [
        (0, 0, "bench-tracker-abc-g0", True), (0, 1, "bench-tracker-abc-g0", True),
        (1, 0, "bench-tracker-abc-g1", True), (1, 1, "bench-tracker-abc-g1", True)]


def test_more_consumers_than_partitions_is_a_warning_not_an_error():
    from bench.core.scenario_checks import consumer_warnings

    assert consumer_warnings(Scenario(partitions=3, consumers_per_group=4)) == [
        "consumers_per_group 4 is more than the topic's 3 partitions: 1 consumer(s) of each group get no partition and idle"]
    assert consumer_warnings(Scenario(partitions=3, consumers_per_group=3)) == []


def _seen(*sequences: int) -> bytes:
    audit = SequenceAudit()
    for sequence in sequences:
        audit.mark(0, sequence)
    return bytes(audit.seen[0])


def test_a_group_audit_counts_an_order_two_processes_read_as_duplicated():
    first = TrackerDone({0: _seen(0, 1, 2)}, 0, 1, {0: [(0, 3)]}, 0, group=1, consumer=0)
    second = TrackerDone({0: _seen(2, 3)}, 1, 0, {0: [(2, 4)]}, 0, group=1, consumer=1)
    merged = merged_done([first, second])
    assert int.from_bytes(merged.seen[0], "little") == 0b1111
    assert (merged.duplicated, merged.foreign, merged.group) == (2, 1, 1)  # one within a process, one across
    assert merged.consumed_offsets == {0: [(0, 4)]} and merged.offsets_consumed_twice == 1


def test_three_groups_of_two_each_consume_every_acked_order_exactly_once(kafka_bootstrap, unique_topic, tmp_path):
    scenario = Scenario(name="fanout", topic=unique_topic, partitions=3, rate=300, duration_s=3, warmup_s=1,
                        consumer_groups=3, consumers_per_group=2)
    console = io.StringIO()
    code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external", out=console)
    assert code == 0, f"{result['failure']}\n{console.getvalue()}\n{result['events']}"
    document = load_result(folder)
    assert_counts_match_broker(document, kafka_bootstrap)
    held = broker_message_count(kafka_bootstrap, unique_topic)
    counts = document["counts"]
    assert held == counts["acked"] == counts["broker_offset_delta"] == 900
    groups = document["groups"]
    assert [entry["group"] for entry in groups] == [0, 1, 2]
    assert len({entry["group_id"] for entry in groups}) == 3
    for entry in groups:
        # Each group read the whole topic, each order once, between its two processes.
        assert (entry["consumed"], entry["lost"], entry["duplicated"]) == (held, 0, 0), entry
        assert [c["consumer"] for c in entry["consumers"]] == [tracker_name(entry["group"], c) for c in (0, 1)]
        assert sum(c["consumed"] for c in entry["consumers"]) == held
        assert all(c["consumed"] > 0 for c in entry["consumers"]), "group assignment gave a consumer nothing"
        assert entry["end_to_end_us"]["count"] > 0 and entry["end_to_end_us"]["p50"] <= entry["end_to_end_us"]["p99"]
        assert len(entry["lag_messages"]) == len(document["series"]["t_s"])
    # The metric table reads the worst group and the slowest consumer process.
    assert METRICS["group_lost"].read(document) == METRICS["group_duplicated"].read(document) == 0
    assert METRICS["consumer_throughput_min"].read(document) == min(
        c["consumed_per_s"] for entry in groups for c in entry["consumers"]) > 0
    assert METRICS["group_end_to_end_p99"].read(document) == max(entry["end_to_end_us"]["p99"] for entry in groups)
    # The headline figures are group 0's.
    assert counts["consumed"] == groups[0]["consumed"]
    assert document["latency_us"]["end_to_end"]["count"] == groups[0]["end_to_end_us"]["count"]
    report = to_markdown(run_report_blocks(document, []))
    assert all(f"| {entry['group']} | {entry['group_id']} | {held:,} | 0 | 0 |" in report for entry in groups)
    lines = [line for line in summary_text(document, folder).splitlines() if line.startswith("group ")]
    assert len(lines) == 3 and lines[1].startswith(f"group 1 (2 consumer(s)): consumed {held:,}, lost 0, duplicated 0")


def test_the_groups_panel_is_drawn_for_a_fan_out_run_only(tmp_path):
    from bench.output.plots.groups import plot_groups

    entry = {"group": 0, "consumers": [{}, {}], "end_to_end_us": {"p50": 2000, "p99": 9000, "max": 12000},
             "lag_messages": [3, None, 0]}
    result = {"scenario": {"name": "fanout"}, "series": {"t_s": [1, 2, 3]},
              "groups": [entry, {**entry, "group": 1, "end_to_end_us": {"p50": None, "p99": None, "max": None}}]}
    written = plot_groups([("fanout", result)], tmp_path / "consumer_groups.png")
    assert written == tmp_path / "consumer_groups.png" and written.stat().st_size > 0
    assert plot_groups([("one tracker", {**result, "groups": None})], tmp_path / "none.png") is None


def test_groups_of_one_process_each_read_every_partition_and_audit_by_offsets_flat_out(kafka_bootstrap, unique_topic,
                                                                                       tmp_path):
    scenario = Scenario(name="fanout-flat", topic=unique_topic, partitions=2, rate=0, duration_s=1, warmup_s=0,
                        consumer_groups=2)
    code, folder, result = run_scenario(scenario, kafka_bootstrap, tmp_path / "results", "external", out=io.StringIO())
    assert code == 0, result["failure"]
    document = load_result(folder)
    assert document["audit"] in ("counts", "offsets")
    assert_counts_match_broker(document, kafka_bootstrap)
    held = broker_message_count(kafka_bootstrap, unique_topic)
    assert [(g["consumed"], g["lost"], g["duplicated"], len(g["consumers"])) for g in document["groups"]] == [
        (held, 0, 0, 1), (held, 0, 0, 1)]
