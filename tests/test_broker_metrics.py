"""The broker's own metrics: Prometheus' JMX exporter on every embedded node, read each second of
a run, and a --broker-metrics-url that does not answer.

Pure tests for the text format and the counter-to-rate logic; the rest against the session's
embedded broker, which the harness started with the agent attached."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from bench.analysis.bottlenecks import bottleneck_verdicts
from bench.analysis.broker_metrics import counter_growth, parse_exposition, per_second
from bench.analysis.resources import resource_window
from bench.broker.exporter import exporter_endpoint
from bench.broker.locate import answering_embedded
from bench.core.broker_metrics import scrape
from bench.results.metrics import BROKER_METRIC_SERIES, broker_series_key
from tests.kafka_truth import assert_counts_match_broker, bench_run

# What the exporter serves (1.0.1, the harness's config): HELP/TYPE lines, a counter with
# `_total` and one with `_count_total`, quantiles as labels, and what a user's endpoint with the
# standard Kafka config adds: per-topic meters, which are not the broker-wide figure.
EXPOSITION = """\
# HELP kafka_server_brokertopicmetrics_bytesin_total Attribute exposed for management
# TYPE kafka_server_brokertopicmetrics_bytesin_total counter
kafka_server_brokertopicmetrics_bytesin_total 1000.0
kafka_server_brokertopicmetrics_bytesin_total{topic="orders"} 900.0
# TYPE kafka_server_brokertopicmetrics_bytesout_total counter
kafka_server_brokertopicmetrics_bytesout_total 4000.0
# TYPE kafka_server_brokertopicmetrics_messagesin_total counter
kafka_server_brokertopicmetrics_messagesin_total 10.0
# TYPE kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_count_total counter
kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_count_total 5.0E9
# TYPE kafka_network_socketserver_networkprocessoravgidlepercent gauge
kafka_network_socketserver_networkprocessoravgidlepercent 0.875
# TYPE kafka_network_requestmetrics_totaltimems gauge
kafka_network_requestmetrics_totaltimems{quantile="0.50",request="Produce"} 2.0
kafka_network_requestmetrics_totaltimems{quantile="0.99",request="Produce"} 36.12
kafka_network_requestmetrics_totaltimems{quantile="0.99",request="Fetch"} 500.0
# TYPE kafka_server_replicamanager_underreplicatedpartitions gauge
kafka_server_replicamanager_underreplicatedpartitions 0.0
# TYPE jvm_threads_current gauge
jvm_threads_current 90.0
"""


def test_the_text_format_gives_the_broker_wide_figures_only():
    assert parse_exposition(EXPOSITION) == {
        "bytes_in": 1000.0, "bytes_out": 4000.0, "messages_in": 10.0, "handler_idle_ns": 5e9,
        "network_idle_ratio": 0.875, "produce_p50_ms": 2.0, "produce_p99_ms": 36.12, "under_replicated": 0.0}
    # An older exporter writes the idle meter's counter without `_total`.
    older = "# TYPE x_count untyped\nkafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent_count 7.0\n"
    assert parse_exposition(older) == {"handler_idle_ns": 7.0}


def test_counters_become_rates_per_second_and_a_reset_or_a_first_scrape_gives_none():
    before = parse_exposition(EXPOSITION)
    after = {**before, "bytes_in": 3000.0, "bytes_out": 4000.0, "messages_in": 20.0,
             "handler_idle_ns": before["handler_idle_ns"] + 0.4e9}
    figures = per_second(before, after, 2.0)
    assert set(figures) == set(BROKER_METRIC_SERIES)
    assert figures["broker_bytes_in_per_s"] == 1000.0
    assert figures["broker_bytes_out_per_s"] == 0.0  # measured: nothing went out
    assert figures["broker_messages_in_per_s"] == 5.0
    assert figures["broker_request_handler_idle_percent"] == 20.0  # 0.4 s idle per thread over 2 s
    assert figures["broker_network_processor_idle_percent"] == 87.5
    assert figures["broker_produce_total_time_p99_ms"] == 36.12
    # A node that restarted starts its counters again: no rate, never a negative one.
    assert per_second(after, before, 1.0)["broker_bytes_in_per_s"] is None
    first = per_second(None, before, 0.0)
    assert first["broker_bytes_in_per_s"] is None and first["broker_network_processor_idle_percent"] == 87.5
    assert set(per_second(before, None, 1.0).values()) == {None}  # the scrape failed
    # A fully idle pool scraped a few ms late is still 100 %, not more.
    late = {**before, "handler_idle_ns": before["handler_idle_ns"] + 1.02e9}
    assert per_second(before, late, 1.0)["broker_request_handler_idle_percent"] == 100.0
    assert counter_growth(before, after, "bytes_in") == 2000.0 and counter_growth(after, before, "bytes_in") is None


def test_request_handlers_idle_under_20_percent_for_most_of_the_window_is_a_busy_broker():
    def result(idle):
        seconds = len(idle)
        return {"warmup_s": 0, "scenario": {"rate": 100}, "resources": {"cpu_count": 2, "processes": {}},
                "series": {"t_s": list(range(1, seconds + 1)), "sent": [100] * (seconds - 1) + [0],
                           broker_series_key("broker_request_handler_idle_percent"): {"broker-node1": idle}}}

    [verdict] = bottleneck_verdicts(result([12.0] * 10))
    assert verdict["kind"] == "broker-busy" and verdict["request_handler_idle_percent"] == 12
    assert "RequestHandlerAvgIdlePercent" in verdict["text"]
    assert bottleneck_verdicts(result([60.0] * 10)) == []
    assert bottleneck_verdicts(result([12.0] * 2 + [60.0] * 8)) == []  # a short dip is not a busy broker


def _embedded_data_dir(bootstrap: str) -> Path:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("the broker's own metrics and log files are read from the embedded broker")
    broker = answering_embedded(bootstrap)
    assert broker is not None, f"no embedded broker this tool started answers at {bootstrap}"
    return broker.state_dir


# Timing: the window check lines up the broker's seconds with the harness's acks. On a machine
# that other workers' runs starve (acks 0-450/s of the 2,000 asked, lagging a second behind), the
# bytes a window's acks stand for arrived partly in the second before, and it reads 20 % off.
@pytest.mark.timing
def test_the_exporters_bytes_in_matches_what_the_broker_wrote(kafka_bootstrap, unique_topic, tmp_path):
    state_dir = _embedded_data_dir(kafka_bootstrap)
    url, reason = exporter_endpoint(state_dir)
    assert url is not None, f"the embedded broker runs without its exporter: {reason}"
    assert "bytes_in" in scrape(url, timeout_s=30.0)  # a JVM that just started answers its first scrape slowly
    run = bench_run(kafka_bootstrap, unique_topic, tmp_path, "--rate", "2000", "--duration", "8", "--warmup", "2",
                    "--message-size", "200")
    assert run.completed.returncode == 0, run.completed.stdout + run.completed.stderr
    result = run.result
    assert_counts_match_broker(result, kafka_bootstrap)
    metrics = result["resources"]["broker_metrics"]
    assert metrics is not None, result["resources"].get("broker_metrics_not_measured")
    node = metrics["nodes"]["broker-node1"]
    # What the broker appended to the topic's log: BytesInPerSec counts the record batches as
    # they arrive (payload, key, headers, record and batch overhead), which is exactly what the
    # log grows by; acked x 200 B would leave out the trace header and the batch framing.
    log_bytes = sum(path.stat().st_size for path in (state_dir / "data").glob(f"{unique_topic}-*/*.log"))
    records = result["counts"]["broker_offset_delta"]
    assert log_bytes > records * 200
    # The whole run, counter against log: the same bytes (equal here; 1 % for a stray record of
    # another client on this worker's broker between the run's first and last scrape).
    assert node["bytes_in_run"] == pytest.approx(log_bytes, rel=0.01), (node, log_bytes)
    # The measured window, second by second: the exporter's rate summed over the seconds it was
    # read, against the records acked in those seconds at the log's bytes per record.
    series = result["series"]
    rates = series[broker_series_key("broker_bytes_in_per_s")]["broker-node1"]
    seconds = [i for i in resource_window(series, result["warmup_s"]) if rates[i] is not None]
    assert len(seconds) >= 3, rates
    exported = sum(rates[i] for i in seconds)
    produced = sum(series["acked"][i] for i in seconds) * log_bytes / records
    assert exported == pytest.approx(produced, rel=0.10), (exported, produced, rates, series["acked"])
    idle = series[broker_series_key("broker_request_handler_idle_percent")]["broker-node1"]
    assert all(0 <= idle[i] <= 100 for i in seconds)
    assert "broker (its own metrics" in run.completed.stdout


def test_an_unreachable_metrics_url_is_one_warning_and_null_metrics(kafka_bootstrap, unique_topic, tmp_path):
    # A port held bound but not listening: every connection to it is refused, for as long as the run.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/metrics"
        # What is tested is the warning, not speed: few, larger produce requests (linger 50 ms) and a
        # long flush, since a loaded CI machine's broker once took 10 s per request at 500/s.
        run = bench_run(kafka_bootstrap, unique_topic, tmp_path, "--rate", "200", "--duration", "3", "--warmup", "1",
                        "--set", "linger_ms=50", "--set", "drain_timeout_s=60", "--broker-metrics-url", url)
    assert run.completed.returncode == 0, run.completed.stdout + run.completed.stderr
    assert_counts_match_broker(run.result, kafka_bootstrap)
    mentions = [line for line in run.completed.stdout.splitlines() if "broker metrics" in line]
    assert len(mentions) == 1 and mentions[0].startswith("warning: broker metrics not measured"), mentions
    assert url in mentions[0] and "Traceback" not in run.completed.stderr
    resources = run.result["resources"]
    assert resources["broker_metrics"] is None
    assert url in resources["broker_metrics_not_measured"]
    assert not any(key.startswith("broker_") for key in run.result["series"] if key.endswith("_by_node")
                   and any(value is not None for values in run.result["series"][key].values() for value in values))


def test_without_the_agent_jar_a_node_starts_bare_and_its_metrics_are_null_with_the_reason(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from bench.broker.exporter import prepare_agent
    from bench.core.resources import RunResources

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    state_dir = tmp_path / "node"
    state_dir.mkdir()
    assert prepare_agent(state_dir) == []  # no -javaagent option: the broker starts without it
    url, reason = exporter_endpoint(state_dir)
    assert url is None and "mvn is not on PATH" in reason
    cluster = SimpleNamespace(nodes=[SimpleNamespace(node_id=1, config=SimpleNamespace(state_dir=state_dir),
                                                     running_pid=lambda: None)])
    resources = RunResources.started([], cluster, time.perf_counter_ns())
    resources.stop()
    series = {"t_s": [1, 2, 3], "sent": [10, 10, 0]}
    section = resources.add_to(series, 0)
    assert section["broker_metrics"] is None
    assert "broker-node1" in section["broker_metrics_not_measured"] and "mvn is not on PATH" in section[
        "broker_metrics_not_measured"]
    assert not any(key.endswith("_by_node") and values for key, values in series.items())
    assert resources.warnings() == []  # the user asked for nothing that failed: no warning
