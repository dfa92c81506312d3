"""`python -m bench large-message`: planning and pre-flight logic, and sweeps against the real broker."""

from __future__ import annotations

import time

import pytest

from bench.cli import main
from bench.large_message.plan import (
    DEFAULT_SIZES,
    Limit,
    batch_bytes_bound,
    known_unsendable,
    largest_passing_size,
    parse_size_list,
    plan_sizes,
    preflight_problem,
)
from bench.large_message.progress import estimate_remaining_s
from bench.large_message.result import cell_row, memory_findings
from bench.output.results import load_result
from streamstore.admin import connect_admin, ensure_topic, topic_watermarks
from streamstore.config import MAX_VALUE_BYTES
from streamstore.errors import UsageError

LARGE_MESSAGE_PLOTS = ("large_message_latency.png", "large_message_throughput_memory.png", "large_message_compression.png")


def run_sweep(bootstrap: str, results_dir, *flags: str) -> int:
    return main(["large-message", "--broker", "external", "--bootstrap-servers", bootstrap,
                 "--results-dir", str(results_dir), *flags])


def only_run_folder(results_dir):
    folders = [path for path in results_dir.iterdir() if path.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def rows_by_cell(result) -> dict:
    return {(row["size_bytes"], row["compression"]): row for row in result["large_message"]["rows"]}


# ---------------------------------------------------------------------------------------------
# Pure logic


def test_sizes_parse_with_units_and_max_keyword():
    assert parse_size_list("10MB, 1KB,max,1KB") == [1_000, 10_000_000, MAX_VALUE_BYTES]
    with pytest.raises(UsageError, match="--sizes"):
        parse_size_list("ten")
    with pytest.raises(UsageError, match="at least 1 byte"):
        parse_size_list("0")


def test_default_ladder_ends_at_the_client_max_and_quick_stops_at_100_mb():
    assert plan_sizes(None, quick=False, max_size=None)[-1] == MAX_VALUE_BYTES
    assert plan_sizes(None, quick=True, max_size=None)[-1] == 100_000_000
    # A cap between two rungs becomes the last rung.
    assert plan_sizes(None, quick=False, max_size=50_000_000)[-2:] == [10_000_000, 50_000_000]
    assert plan_sizes([1_000, 5_000_000], quick=False, max_size=1_000_000) == [1_000]
    with pytest.raises(UsageError, match="no size left"):
        plan_sizes([5_000_000], quick=False, max_size=1_000)
    assert list(DEFAULT_SIZES) == sorted(DEFAULT_SIZES)


def test_preflight_names_the_client_limit():
    problem = preflight_problem([1_000, 1_000_000_000], [])
    assert "client limit" in problem and "999,999,964" in problem and "1,000,000,000" in problem
    assert preflight_problem([1_000, MAX_VALUE_BYTES], []) is None


def test_preflight_names_every_blocking_setting_and_what_it_needs():
    limits = [Limit("broker socket.request.max.bytes", 104_857_600, "request"),
              Limit("broker message.max.bytes", 1_048_588, "batch"),
              Limit("broker log.segment.bytes", 1_073_741_824, "batch")]
    problem = preflight_problem([1_000, 200_000_000], limits)
    assert "200 MB (200,000,000 bytes) cannot pass" in problem
    assert f"broker message.max.bytes is 1,048,588, it needs at least {batch_bytes_bound(200_000_000):,}" in problem
    assert "socket.request.max.bytes is 104,857,600" in problem
    assert "log.segment.bytes" not in problem
    assert f"lower --max-size to {largest_passing_size(limits):,}" in problem
    # The largest passing size really passes, one byte more does not.
    largest = largest_passing_size(limits)
    assert preflight_problem([largest], limits) is None
    assert preflight_problem([largest + 1], limits) is not None


def test_row_reports_skipped_compression_and_ratio():
    row = cell_row(1_000_000, "gzip", [10.0, 30.0, 20.0], [15.0, 40.0, 25.0], [1_000_070], 1_000_070,
                   50_000_000, 40_000_000, None)
    assert row["produce_latency_ms"] == {"p50": 20.0, "max": 30.0}
    assert row["throughput_mb_s"] == 40.0  # 1 MB in a 25 ms end-to-end p50
    assert row["compression_skipped"] is True and row["compression_ratio"] < 1
    compressed = cell_row(1_000_000, "gzip", [1.0], [2.0], [1_200], None, None, None, None)
    assert compressed["compression_skipped"] is False and compressed["compression_ratio"] == 833.3
    failed = cell_row(1_000_000, "none", [], [], [], None, None, None, "produce: timed out")
    assert failed["reps"] == 0 and failed["end_to_end_ms"] is None and failed["throughput_mb_s"] is None


def test_memory_target_is_judged_on_the_largest_size_only():
    rows = [cell_row(size, "none", [1.0], [1.0], [size], None, 2 * size + 30_000_000, 3 * size, None)
            for size in (1_000, 300_000_000)]
    findings = memory_findings(rows)
    assert [(f["client"], f["met"]) for f in findings] == [("producer", True), ("consumer", False)]
    # Small sizes alone: the interpreter dominates, no verdict.
    assert memory_findings(rows[:1]) == []


def test_eta_uses_measured_rates():
    cells = [(100_000_000, "gzip", 2)]
    assert estimate_remaining_s(cells, {"gzip": 10_000_000}) > estimate_remaining_s(cells, {"gzip": 100_000_000})


# ---------------------------------------------------------------------------------------------
# Command line, before any broker is needed


@pytest.mark.parametrize("flags, message", [
    (["--sizes", "1GB"], "above the client limit: librdkafka caps message.max.bytes at 1,000,000,000"),
    (["--compression", "gzip", "--compare-bare"], "add none to --compression"),
    (["--level", "12"], "gzip accepts -1 or 0..9"),
    (["--compression", "brotli"], "choose among none, gzip"),
    (["--reps", "0"], "--reps must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(flags, message, capsys, tmp_path):
    # Nothing listens on port 1: these must fail before contacting a broker.
    code = run_sweep("127.0.0.1:1", tmp_path, *flags)
    error = capsys.readouterr().err
    assert code == 2
    assert message in error and error.count("\n") == 1
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Against the real broker


def test_preflight_against_a_topic_with_a_small_limit_fails_before_sending(kafka_bootstrap, unique_topic, capsys,
                                                                           tmp_path):
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, max_message_bytes=1_000_000)
    started = time.monotonic()
    code = run_sweep(kafka_bootstrap, tmp_path, "--topic", unique_topic, "--sizes", "1KB,10MB")
    elapsed_s = time.monotonic() - started
    error = capsys.readouterr().err
    assert code == 2
    assert (f"10 MB (10,000,000 bytes) cannot pass: topic '{unique_topic}' max.message.bytes is 1,000,000, "
            f"it needs at least {batch_bytes_bound(10_000_000):,}") in error
    assert error.count("\n") == 1
    assert elapsed_s < 30, f"pre-flight took {elapsed_s:.1f} s"
    # Nothing was sent, not even the 1 KB that would have passed.
    assert topic_watermarks(kafka_bootstrap, unique_topic) == {0: (0, 0)}
    assert not any(tmp_path.iterdir())


def test_random_payload_makes_librdkafka_skip_gzip_and_the_result_says_so(kafka_bootstrap, tmp_path):
    assert run_sweep(kafka_bootstrap, tmp_path, "--sizes", "100KB", "--compression", "gzip",
                     "--payload", "random", "--reps", "1") == 0
    result = load_result(only_run_folder(tmp_path))
    row = rows_by_cell(result)[(100_000, "gzip")]
    assert row["error"] is None and row["compression_skipped"] is True
    assert row["wire_bytes"] > 100_000
    assert any("compression skipped" in warning for warning in result["warnings"])


def test_quick_sweep_end_to_end(kafka_bootstrap, tmp_path, capsys):
    started = time.monotonic()
    assert run_sweep(kafka_bootstrap, tmp_path, "--quick") == 0
    elapsed_s = time.monotonic() - started
    out = capsys.readouterr().out
    folder = only_run_folder(tmp_path)
    result = load_result(folder)
    assert result["kind"] == "large-message" and result["status"] == "complete"
    cells = rows_by_cell(result)
    assert max(size for size, _ in cells) == 100_000_000
    for compression in ("none", "gzip"):
        row = cells[(100_000_000, compression)]
        # error None means the consumer got the message with the producer's size and crc32.
        assert row["error"] is None and row["reps"] >= 1
        assert row["end_to_end_ms"]["p50"] > 0 and row["produce_latency_ms"]["p50"] > 0
        assert row["producer_peak_rss_bytes"] > 100_000_000 and row["consumer_peak_rss_bytes"] > 100_000_000
    assert cells[(100_000_000, "none")]["wire_bytes"] > 100_000_000
    # Count truth: each cell's topic offsets (read from the broker before it was deleted) grew
    # by exactly its reps, and the totals agree.
    assert all(row["broker_messages"] == row["reps"] > 0 for row in cells.values())
    counts = result["counts"]
    assert counts["broker_offset_delta"] == counts["acked"] == counts["consumed"] == sum(r["reps"] for r in cells.values())
    assert counts["failed"] == counts["lost"] == 0
    # The padded order compresses: the broker stored a small fraction of it.
    gzip_row = cells[(100_000_000, "gzip")]
    assert gzip_row["compression_ratio"] > 50 and not gzip_row["compression_skipped"]
    if gzip_row["broker_stored_bytes"] is not None:
        assert gzip_row["broker_stored_bytes"] == gzip_row["wire_bytes"]
    for name in (*LARGE_MESSAGE_PLOTS, "report.md", "report.html", "result.json"):
        assert (folder / name).stat().st_size > 0, name
    assert "100 MB  gzip" in out and str(folder) in out
    # The sweep's topics are gone.
    topics = connect_admin(kafka_bootstrap).list_topics(timeout=10).topics
    assert not [topic for topic in topics if topic.startswith(f"bench-large-message-{result['run_id'][:8]}")]
    print(f"quick sweep: {elapsed_s:.0f} s")


@pytest.mark.slow
def test_the_client_max_message_round_trips(kafka_bootstrap, tmp_path):
    """999,999,964 bytes with gzip through the real broker (about 2 GB RSS per client); without
    compression the batch is above librdkafka's request limit, so the cell is reported, not sent."""
    assert run_sweep(kafka_bootstrap, tmp_path, "--sizes", "max", "--reps", "1") == 0
    result = load_result(only_run_folder(tmp_path))
    row = rows_by_cell(result)[(MAX_VALUE_BYTES, "gzip")]
    assert row["error"] is None and row["reps"] == 1, row["error"]
    assert rows_by_cell(result)[(MAX_VALUE_BYTES, "none")]["not_sent"] is True
    assert any("not sent" in warning for warning in result["warnings"])


def test_uncompressed_batches_above_the_librdkafka_request_limit_are_not_sent():
    assert known_unsendable(268_000_000, "none", "order") is None
    assert "4-byte varint" in known_unsendable(MAX_VALUE_BYTES, "none", "order")
    assert known_unsendable(MAX_VALUE_BYTES, "gzip", "order") is None
    assert known_unsendable(MAX_VALUE_BYTES, "gzip", "random") is not None
