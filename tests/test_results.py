"""bench/results/: result files, histograms, interval logs, redaction (pure, no broker)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hdrh.log import HistogramLogReader

from bench.results import environment as environment_module
from bench.results.environment import capture_environment, checkout_root, harness_commit, parse_git_status
from bench.results.histograms import decode_histogram, new_latency_histogram, summarize_histogram, write_interval_log
from bench.results.redaction import redact_secrets
from bench.results.schema import SCHEMA_VERSION
from bench.results.store import load_result, run_folder, write_result
from streamstore.errors import UsageError


def _histogram(values):
    histogram = new_latency_histogram()
    for value in values:
        histogram.record_value(value)
    return histogram


def _minimal_result(**overrides):
    return {"kind": "run", "scenario": {"name": "unit"}, "status": "complete", **overrides}


def test_histogram_range_and_precision():
    histogram = new_latency_histogram()
    assert histogram.record_value(1)
    assert histogram.record_value(3_600_000_000)
    assert not histogram.record_value(3_600_000_000 * 2), "beyond 1 h must be out of range"
    assert histogram.significant_figures == 3


def test_summarize_histogram_percentiles_within_hdr_precision():
    values = list(range(1, 10_001))  # 1..10000 µs, uniform
    summary = summarize_histogram(_histogram(values))
    assert summary["count"] == 10_000
    assert summary["min"] == 1
    assert summary["p50"] == pytest.approx(5000, rel=1e-3)
    assert summary["p90"] == pytest.approx(9000, rel=1e-3)
    assert summary["p99"] == pytest.approx(9900, rel=1e-3)
    assert summary["p99_9"] == pytest.approx(9990, rel=1e-3)
    assert summary["max"] == pytest.approx(10_000, rel=1e-3)
    assert summary["mean"] == pytest.approx(5000.5, rel=1e-3)
    assert decode_histogram(summary["histogram"]).get_total_count() == 10_000


def test_summary_min_survives_merging_an_empty_histogram():
    merged = new_latency_histogram()
    merged.add(_histogram([500, 900]))
    merged.add(new_latency_histogram())  # a second without samples
    assert summarize_histogram(merged)["min"] == 500


def test_summarize_empty_histogram_is_null_not_zero():
    summary = summarize_histogram(new_latency_histogram())
    assert summary["count"] == 0
    assert summary["p99"] is None and summary["max"] is None and summary["mean"] is None


def test_decode_damaged_histogram_is_usage_error():
    with pytest.raises(UsageError, match="cannot be decoded"):
        decode_histogram("HISTFAAAnot-a-histogram")


def test_run_folder_name_and_collisions(tmp_path):
    started = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    first = run_folder(tmp_path, "steady orders/1", started)
    second = run_folder(tmp_path, "steady orders/1", started)
    assert first.name == "20240506T050809-steady_orders_1"  # converted to UTC, name made safe
    assert second.name == "20240506T050809-steady_orders_1-2"
    assert first.is_dir() and second.is_dir()


def test_write_and_load_round_trip(tmp_path):
    result = _minimal_result(latency_us={"service_time": summarize_histogram(_histogram([5, 50, 500]))})
    path = write_result(tmp_path, result)
    assert path == tmp_path / "result.json"
    loaded = load_result(tmp_path)
    assert loaded["schema_version"] == SCHEMA_VERSION
    assert loaded["latency_us"]["service_time"]["count"] == 3
    assert load_result(path) == loaded
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temp file left behind"


def test_write_result_redacts_secrets(tmp_path):
    result = _minimal_result(
        scenario={
            "name": "secure",
            "producer_config": {"sasl.username": "alice", "sasl.password": "hunter2", "ssl.keystore.password": "k"},
        },
        broker={"settings": {"password.encoder.secret": "s", "sasl.oauthbearer.config": "clientSecret=x"}},
    )
    text = write_result(tmp_path, result).read_text()
    for secret in ("hunter2", '"k"', '"s"', "clientSecret"):
        assert secret not in text
    loaded = load_result(tmp_path)
    assert loaded["scenario"]["producer_config"] == {
        "sasl.username": "alice", "sasl.password": "***", "ssl.keystore.password": "***"
    }


def test_redact_secrets_rules():
    settings = {
        "sasl.password": "a", "ssl.key.password": "b", "ssl.keystore.password": "c", "api_token": "d",
        "client.secret": "e", "ssl.key.pem": "-----BEGIN", "bootstrap.servers": "host:9092",
        "nested": [{"my_password": "f"}], "sasl.password.unset": None,
    }
    redacted = redact_secrets(settings)
    assert redacted == {
        "sasl.password": "***", "ssl.key.password": "***", "ssl.keystore.password": "***", "api_token": "***",
        "client.secret": "***", "ssl.key.pem": "***", "bootstrap.servers": "host:9092",
        "nested": [{"my_password": "***"}], "sasl.password.unset": None,
    }
    assert settings["sasl.password"] == "a", "the input is not modified"


def test_unwritable_folder_is_one_line_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        write_result(tmp_path / "missing", _minimal_result())
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(UsageError, match="not writable"):
            write_result(locked, _minimal_result())


def test_failed_serialisation_leaves_previous_result_intact(tmp_path):
    write_result(tmp_path, _minimal_result(status="complete"))
    with pytest.raises(ValueError):
        write_result(tmp_path, _minimal_result(duration_s=float("nan")))
    assert load_result(tmp_path)["status"] == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"schema_version": 99, "kind": "run"}', "schema_version 99; this harness reads version 1"),
        ('{"schema_version": 1, "kind": "run"', "corrupt: not valid JSON"),
        ("[1, 2]", "not a StreamStore Bench result file"),
        ('{"kind": "run"}', "not a StreamStore Bench result file"),
        ('{"schema_version": 1, "kind": "weird"}', "unknown result kind 'weird'"),
    ],
)
def test_load_result_refuses_bad_files(tmp_path, content, message):
    (tmp_path / "result.json").write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        load_result(tmp_path)


def test_load_result_missing(tmp_path):
    with pytest.raises(UsageError, match="no result file or run folder"):
        load_result(tmp_path / "nope")
    with pytest.raises(UsageError, match="has no result.json"):
        load_result(tmp_path)


def test_interval_log_read_back_by_hdrh_reader(tmp_path):
    start = 1_700_000_000.25
    seconds = [_histogram([100, 200]), None, _histogram([1_000, 2_000, 3_000]).encode().decode()]
    path = write_interval_log(tmp_path / "service_time.hlog", seconds, start)
    reader = HistogramLogReader(str(path), new_latency_histogram())
    first = reader.get_next_interval_histogram()
    third = reader.get_next_interval_histogram()
    assert reader.get_next_interval_histogram() is None
    reader.close()
    assert reader.get_start_time_sec() == pytest.approx(start)
    assert first.get_total_count() == 2 and third.get_total_count() == 3
    assert first.get_start_time_stamp() == pytest.approx(start * 1000)
    assert third.get_start_time_stamp() == pytest.approx((start + 2) * 1000), "the empty second is skipped"
    assert third.get_end_time_stamp() - third.get_start_time_stamp() == pytest.approx(1000)
    assert third.get_max_value() == pytest.approx(3000, rel=1e-3)


def test_environment_fields_and_harness_version():
    environment = capture_environment()
    assert environment["cpu_count"] == os.cpu_count()
    assert environment["python"] == sys.version.split()[0]
    assert environment["confluent_kafka"].startswith("2.")
    assert environment["librdkafka"].startswith("2.")
    assert environment["harness_version"] == importlib.metadata.version("streamstore-bench")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(environment_module.__file__)).stdout.strip()
    assert environment["harness_commit"].startswith(head)  # the tests run from a checkout
    assert all(environment[key] is not None for key in environment if key != "not_measured")
    assert environment["not_measured"] == {}
    json.dumps(environment)


def test_harness_commit_only_from_the_checkout_that_holds_the_module(tmp_path):
    """An installed copy (site-packages inside some checkout, the venv's) records no commit:
    git is never let walk up from there into a checkout that is not what runs."""
    checkout = tmp_path / "checkout"
    installed = checkout / ".venv" / "lib" / "python3.11" / "site-packages" / "bench" / "results" / "environment.py"
    installed.parent.mkdir(parents=True)
    installed.write_text("")
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    assert checkout_root(installed) is None
    assert harness_commit(installed) == (None, "not running from a git checkout (an installed package)")
    assert checkout_root(Path(environment_module.__file__)) == Path(environment_module.__file__).resolve().parents[2]


def test_git_status_is_read_once_for_commit_dirtiness_and_tracking():
    clean = "# branch.oid abc123\n# branch.head main\n"
    assert parse_git_status(clean) == ("abc123", None)
    assert parse_git_status(clean + "1 .M N... 100644 100644 100644 a b bench/cli.py\n") == ("abc123-dirty", None)
    assert parse_git_status(clean + "? notes.txt\n") == ("abc123", None)  # untracked files are not changes
    commit, reason = parse_git_status(clean + "? bench/results/environment.py\n")
    assert commit is None and "not tracked" in reason
    assert parse_git_status("# branch.oid (initial)\n") == (None, "the checkout has no commit yet")


def test_version_1_files_are_read_in_the_current_names():
    """The committed large-message fixture was written as version 1 (produce_latency_ms, the row's
    broker_messages, counts_note); readers see today's names and the same values."""
    path = Path(__file__).parent / "fixtures" / "large-message" / "result.json"
    assert json.loads(path.read_text())["schema_version"] == 1
    original_rows = json.loads(path.read_text())["large_message"]["rows"]
    document = load_result(path)
    assert document["schema_version"] == SCHEMA_VERSION == 5
    assert document["large_message"]["peer"] is None
    for original, row in zip(original_rows, document["large_message"]["rows"], strict=True):
        assert row["java"] is None
        assert "produce_latency_ms" not in row and row["service_time_ms"] == original["produce_latency_ms"]
        assert "counts_note" not in row and isinstance(row["counts_not_measured"], dict)


def test_version_2_large_message_files_read_with_no_peer(tmp_path):
    """Version 3 added the Java peer's fields; a version 2 sweep had no peer, so they read as null."""
    row = {"size_bytes": 1000, "compression": "none", "service_time_ms": {"p50": 1.0, "max": 1.0},
           "counts_not_measured": {}}
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"schema_version": 2, "kind": "large-message", "scenario": {"name": "large-message"},
                                "large_message": {"rows": [row]}}))
    document = load_result(path)
    assert document["schema_version"] == SCHEMA_VERSION and document["scenario"]["peer"] is None
    assert document["large_message"]["peer"] is None and document["large_message"]["rows"][0]["java"] is None
    assert document["large_message"]["rows"][0]["service_time_ms"] == {"p50": 1.0, "max": 1.0}


def test_version_3_files_name_what_they_did_not_measure(tmp_path):
    """Version 4 measures the broker's version for every broker and names every null. An older
    file's embedded version came from the jar; its missing facts read as "not recorded"; an old
    Locust result's nominal rate (users x per-user rate) is no longer a scenario rate."""
    path = tmp_path / "result.json"
    path.write_text(json.dumps({
        "schema_version": 3, "kind": "locust", "scenario": {"name": "locust-orders", "rate": 2000.0},
        "environment": {"cpu_model": "X", "harness_commit": None},
        "broker": {"bootstrap_servers": "127.0.0.1:9092", "version": None, "embedded": False},
        "locust": {"users": 4, "user_rate": 500.0}}))
    document = load_result(path)
    assert document["schema_version"] == 5 and document["partitions"] is None
    assert document["environment"]["harness_version"] is None
    assert document["environment"]["not_measured"]["harness_commit"] == "not recorded (a schema version 3 file)"
    assert document["broker"]["version_source"] is None
    assert document["broker"]["not_measured"]["version"].startswith("not recorded (a schema version 3 file)")
    assert "rate" not in document["scenario"]
    assert (document["scenario"]["user_rate"], document["scenario"]["users"]) == (500.0, 4)
    embedded = load_result(Path(__file__).parent / "fixtures" / "baseline")["broker"]
    assert (embedded["version"], embedded["version_source"], embedded["not_measured"]) == ("3.8.1", "embedded broker jar", {})
