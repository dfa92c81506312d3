"""Resources each second and the bottleneck verdicts drawn from them: the pure verdict function
on hand-made results, older result files upgraded, and real runs on the embedded broker (a
starved generator is called saturated, a run well within its means is not)."""

from __future__ import annotations

import io
import json

import pytest
from kafka_truth import assert_counts_match_broker

from bench.analysis.bottlenecks import bottleneck_verdicts, min_seconds
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.output.resources import resource_line, verdict_lines
from bench.results.store import load_result

SECONDS = 10


def _result(*, producer_cpu=None, producer_wait=None, host=None, lag=None, broker=None, rate=0, sent=None,
            warmup_s=0, seconds=SECONDS, steal=None) -> dict:
    """A result with `seconds` measured seconds (plus the last, partial one) and the given
    per-second resources; a figure not given is null."""
    n = seconds + 1
    series = {"t_s": list(range(1, n + 1)), "sent": sent or [1000] * n, "acked": [1000] * n,
              "lag_messages": lag or [0] * n, "host_cpu_percent": host or [None] * n,
              "host_steal_percent": steal or [None] * n,
              "cpu_percent_by_process": {"producer-0": [50.0] * n, "tracker": [5.0] * n},
              "main_thread_cpu_percent_by_process": {"producer-0": producer_cpu or [10.0] * n, "tracker": [3.0] * n},
              "main_thread_wait_percent_by_process": {"producer-0": producer_wait or [0.0] * n, "tracker": [0.0] * n},
              "rss_mb_by_process": {"producer-0": [40.0] * n, "tracker": [40.0] * n}}
    processes = {"producer-0": {"role": "producer"}, "tracker": {"role": "tracker"}}
    if broker:
        series["cpu_percent_by_process"]["broker-node1"] = broker
        processes["broker-node1"] = {"role": "broker"}
    return {"scenario": {"rate": rate}, "warmup_s": warmup_s, "series": series,
            "resources": {"cpu_count": 2, "processes": processes}}


def _kinds(result: dict) -> list[str]:
    return [verdict["kind"] for verdict in bottleneck_verdicts(result)]


def test_a_producer_thread_busy_for_most_of_the_window_is_a_saturated_generator():
    verdicts = bottleneck_verdicts(_result(producer_cpu=[99.0] * 11))
    assert [v["kind"] for v in verdicts] == ["generator-saturated"]
    assert verdicts[0]["process"] == "producer-0" and verdicts[0]["seconds"] == SECONDS
    assert verdicts[0]["text"].startswith("generator saturated: producer-0 busy 99 % of the time for 10 s")
    assert "the harness's limit" in verdicts[0]["text"]


def test_waiting_for_a_cpu_counts_as_busy_on_a_crowded_host():
    """A thread that always wants a CPU but gets only a share of one is as much the limit."""
    verdicts = bottleneck_verdicts(_result(producer_cpu=[30.0] * 11, producer_wait=[65.0] * 11))
    assert verdicts[0]["kind"] == "generator-saturated" and verdicts[0]["busy_percent"] == 95
    assert "on a CPU 30 %" in verdicts[0]["text"]


@pytest.mark.parametrize("cpu", [[60.0] * 11, [99.0] * 2 + [20.0] * 9, [99.0] * 4 + [20.0] * 7])
def test_a_producer_with_headroom_or_a_short_burst_is_not_saturated(cpu):
    assert min_seconds(SECONDS) == 5  # half the window
    assert "generator-saturated" not in _kinds(_result(producer_cpu=cpu))


def test_a_generator_behind_its_rate_on_a_saturated_host_is_the_harness_limit():
    result = _result(host=[100.0] * 11, rate=100_000, sent=[40_000] * 11)
    verdicts = bottleneck_verdicts(result)
    assert [v["kind"] for v in verdicts] == ["generator-saturated", "host-saturated"]
    assert verdicts[0]["measure"] == "host CPU" and verdicts[0]["sent_per_s"] == 40_000
    assert "sent 40,000 of 100,000 msg/s asked" in verdicts[0]["text"]


def test_a_saturated_host_with_the_generator_on_schedule_is_only_the_host():
    assert _kinds(_result(host=[97.0] * 11, rate=1000)) == ["host-saturated"]


def test_growing_lag_is_a_tracker_behind_and_flat_lag_is_not():
    verdicts = bottleneck_verdicts(_result(lag=[i * 8000 for i in range(11)]))
    assert [v["kind"] for v in verdicts] == ["tracker-behind"]
    assert verdicts[0]["lag_slope_per_s"] == 8000.0 and "lag grew 8,000 msg/s" in verdicts[0]["text"]
    assert _kinds(_result(lag=[0, 300, 50, 280, 10, 400, 0, 350, 20, 300, 0])) == []


def test_cpu_the_hypervisor_gave_other_guests_for_most_of_the_window_is_a_neighbour_said_so():
    verdicts = bottleneck_verdicts(_result(host=[60.0] * 11, steal=[12.0] * 8 + [1.0] * 3))
    assert [v["kind"] for v in verdicts] == ["host-steal"]
    assert verdicts[0]["steal_percent"] == 12.0 and verdicts[0]["seconds"] == 8
    assert verdicts[0]["text"].startswith("CPU stolen: the hypervisor ran other guests for 12 % of this machine's CPU "
                                          "time in 8 s")
    # A little steal, or a burst shorter than half the window, is no verdict; nor is none reported.
    assert _kinds(_result(steal=[3.0] * 11)) == _kinds(_result(steal=[20.0] * 4 + [0.0] * 7)) == []
    assert _kinds(_result(steal=None)) == []


def test_a_capacity_search_warns_when_its_steps_ran_beside_a_neighbour_on_the_hypervisor():
    from bench.capacity.document import steal_warnings

    steal = {"kind": "host-steal", "steal_percent": 14.5}
    steps = [{"index": 1, "verdicts": []}, {"index": 2, "verdicts": [steal]}, {"index": 3, "verdicts": None},
             {"index": 4, "verdicts": [{"kind": "host-steal", "steal_percent": 6.0}]}]
    assert steal_warnings(steps) == [
        "the hypervisor stole CPU time (up to 14.5 % on average over a step) in 2 of 4 steps (2, 4): another guest on "
        "this host moved their figures, so the answer may not repeat"]
    assert steal_warnings(steps[:1]) == []


def test_a_broker_using_every_core_is_busy():
    assert _kinds(_result(broker=[190.0] * 11)) == ["broker-busy"]
    assert _kinds(_result(broker=[120.0] * 11)) == []


def test_no_measured_second_no_verdict_and_the_reason_when_resources_are_missing():
    assert bottleneck_verdicts(_result(seconds=0, producer_cpu=[99.0])) == []
    result = {"series": {}, "resources": None, "resources_not_measured": "the large-message sweep has none",
              "verdicts": []}
    assert verdict_lines(result) == ["none found, and resources not measured: the large-message sweep has none"]
    assert resource_line(result) == "resources not measured: the large-message sweep has none"


def test_a_version_4_result_reads_with_resources_and_verdicts_not_recorded(tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"schema_version": 4, "kind": "run", "scenario": {"name": "old"},
                                "broker": {"version_source": None, "not_measured": {}}, "series": {}}))
    document = load_result(path)
    assert document["resources"] is None and document["verdicts"] is None
    assert document["resources_not_measured"] == document["verdicts_not_measured"] == \
        "not recorded (a schema version 4 file)"
    assert verdict_lines(document) == ["not judged: not recorded (a schema version 4 file)"]


def _scenario(topic: str, **fields) -> Scenario:
    values = {"name": "test-resources", "topic": topic, "partitions": 2, "duration_s": 6, "warmup_s": 1,
              "drain_timeout_s": 20, "linger_ms": 1, "producers": 1}
    values.update(fields)
    return Scenario.from_mapping(values)


@pytest.mark.timing
def test_a_flat_out_producer_is_a_saturated_generator(kafka_bootstrap, unique_topic, tmp_path):
    """One producer process asked for more than it can send (flat out): its Python thread is
    busy all the time, and the verdict says the figure is the harness's limit."""
    code, folder, result = run_scenario(_scenario(unique_topic, rate=0), kafka_bootstrap, tmp_path, "external",
                                        out=io.StringIO())
    assert code == 0, result["failure"]
    assert_counts_match_broker(result, kafka_bootstrap)
    saturated = [v for v in result["verdicts"] if v["kind"] == "generator-saturated"]
    assert saturated and saturated[0]["process"] == "producer-0", (result["verdicts"], result["resources"]["summary"])
    assert load_result(folder)["verdicts"] == result["verdicts"]


@pytest.mark.timing
def test_a_run_within_its_means_records_every_process_and_is_not_called_saturated(kafka_bootstrap, unique_topic,
                                                                                   tmp_path):
    code, _, result = run_scenario(_scenario(unique_topic, rate=300), kafka_bootstrap, tmp_path, "external",
                                   out=io.StringIO())
    assert code == 0, (result["failure"], result["series"]["acked"])
    assert_counts_match_broker(result, kafka_bootstrap)
    assert "generator-saturated" not in [v["kind"] for v in result["verdicts"]], result["verdicts"]
    resources, series = result["resources"], result["series"]
    roles = {name: info["role"] for name, info in resources["processes"].items()}
    assert {name: role for name, role in roles.items() if role != "broker"} == {
        "tracker": "tracker", "producer-0": "producer", "coordinator": "coordinator"}
    if result["broker"]["embedded"]:  # the suite's own broker (or one started by `bench broker start`)
        assert roles["broker-node1"] == "broker" and resources["not_measured"] == {}
        assert resources["summary"]["broker"]["busiest"] == "broker-node1"
    else:  # KAFKA_BOOTSTRAP_SERVERS names a broker this tool did not start
        assert "broker" in resources["not_measured"]
    # Aligned with the run's seconds; every measured second of every process has its figures.
    for key in ("cpu_percent_by_process", "rss_mb_by_process"):
        assert all(len(values) == len(series["t_s"]) for values in series[key].values())
    # Steal beside host CPU, each second a share of it (0 on a host that reports none).
    measured_seconds = range(1, result["throughput"]["measured_s"] + 1)
    assert len(series["host_steal_percent"]) == len(series["t_s"])
    assert all(0 <= series["host_steal_percent"][i] <= series["host_cpu_percent"][i] + 0.1 for i in measured_seconds)
    assert resources["summary"]["host"]["steal_percent_mean"] is not None
    for name, info in resources["processes"].items():
        assert info["seconds"] == result["throughput"]["measured_s"], name
        assert info["rss_mb_max"] > 10, name
    assert resources["processes"]["producer-0"]["main_thread_cpu_percent_mean"] < 90
    # librdkafka's statistics in every run, beside the same seconds.
    measured = range(1, result["throughput"]["measured_s"] + 1)
    assert all(series["client_batch_messages_avg"][i] >= 1 for i in measured), series["client_batch_messages_avg"]
    assert all(series["client_rtt_avg_us"][i] > 0 and series["client_queue_messages"][i] >= 0 for i in measured)


def test_librdkafka_statistics_give_queue_depth_retries_batch_size_and_round_trip_per_second():
    from bench.core.client_stats import StatsCollector, client_stats_series

    def document(msg_cnt, retries, batch_cnt):
        return json.dumps({"msg_cnt": msg_cnt, "brokers": {
            "b1": {"txretries": retries, "rtt": {"cnt": 10, "avg": 1000, "p99": 3000}},
            "b2": {"txretries": 1, "rtt": {"cnt": 30, "avg": 2000, "p99": 9000}},
            "bootstrap": {"txretries": 0, "rtt": {"cnt": 0, "avg": 0, "p99": 0}}},
            "topics": {"t": {"batchsize": {"cnt": batch_cnt, "avg": 1500}, "batchcnt": {"cnt": batch_cnt, "avg": 7}}}})

    collector = StatsCollector("t", latency_windows=False)
    assert collector.take_figures() is None  # no statistics yet: nothing, not zeros
    collector.on_stats(document(120, 4, 3))
    first = collector.take_figures()
    assert first == {"queue_messages": 120, "batch_bytes_avg": 1500, "batch_messages_avg": 7, "rtt_avg_us": 1750.0,
                     "rtt_p99_us": 9000, "retries": 5}
    collector.on_stats(document(80, 6, 0))
    second = collector.take_figures()
    assert second["retries"] == 2 and second["batch_bytes_avg"] is None  # no batch in that interval
    assert collector.take() == []  # latency windows only with failures-only reports
    series = client_stats_series({0: [first, second], 2: [second]}, 3)
    assert series["client_queue_messages"] == [200, None, 80] and series["client_retries"] == [7, None, 2]
    assert series["client_batch_bytes_avg"] == [1500.0, None, None] and series["client_rtt_p99_us"] == [9000, None, 9000]
