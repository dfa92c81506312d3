"""`python -m bench large-message`: planning and pre-flight logic, and sweeps against the real broker."""

from __future__ import annotations

import math
import os
import time
import zlib

import pytest
from kafka_truth import assert_sweep_counts_match_broker
from seams import drop_first_acked

from bench.cli import main
from bench.core.audit import Verdict
from bench.large_message.cell import CellRun
from bench.large_message.plan import (
    DEFAULT_SIZES,
    Limit,
    batch_bytes_bound,
    known_unsendable,
    largest_passing_size,
    parse_size_list,
    plan_sizes,
    preflight_problem,
    size_label,
)
from bench.large_message.progress import estimate_remaining_s
from bench.large_message.result import (
    NOTHING_RECEIVED,
    cell_counts,
    cell_row,
    memory_findings,
    not_sent_row,
    sweep_counts,
    sweep_verdict,
)
from bench.large_message.worker import ReceivedTally
from bench.results.store import load_result
from streamstore.admin import connect_admin, ensure_topic, topic_watermarks
from streamstore.config import CLIENT_MESSAGE_MAX_BYTES, MAX_VALUE_BYTES
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
    assert row["service_time_ms"] == {"p50": 20.0, "max": 30.0}
    assert row["transfer_rate_mb_s"] == 40.0  # 1 MB in a 25 ms end-to-end p50
    assert row["compression_skipped"] is True and row["compression_ratio"] < 1
    compressed = cell_row(1_000_000, "gzip", [1.0], [2.0], [1_200], None, None, None, None)
    assert compressed["compression_skipped"] is False and compressed["compression_ratio"] == 833.3
    failed = cell_row(1_000_000, "none", [], [], [], None, None, None, "produce: timed out")
    assert failed["reps"] == 0 and failed["end_to_end_ms"] is None and failed["transfer_rate_mb_s"] is None


def test_memory_target_is_judged_on_the_largest_size_only():
    rows = [cell_row(size, "none", [1.0], [1.0], [size], None, 2 * size + 30_000_000, 3 * size, None)
            for size in (1_000, 300_000_000)]
    findings = memory_findings(rows)
    assert [(f["client"], f["met"]) for f in findings] == [("producer", True), ("consumer", False)]
    # Small sizes alone: the interpreter dominates, no verdict.
    assert memory_findings(rows[:1]) == []


def test_consumer_tally_checks_size_crc32_and_offsets():
    tally = ReceivedTally(size_bytes=5, crc32=zlib.crc32(b"hello"))
    assert tally.add(10, b"hello") == {"offset": 10, "size_bytes": 5, "crc32": zlib.crc32(b"hello"), "intact": True,
                                       "duplicate": False}
    assert tally.add(11, b"hellO")["intact"] is False  # same size, other bytes: the crc32 tells
    assert tally.add(12, b"hell")["intact"] is False
    assert tally.add(10, b"hello")["duplicate"] is True
    assert tally.counts() == {"received": 4, "distinct": 3, "malformed": 2, "duplicated": 1}
    # Done at `count` distinct offsets, or once the offset before end_offset was read.
    assert tally.finished(count=3, end_offset=None) == "complete"
    assert tally.finished(count=5, end_offset=None) is None
    assert tally.finished(count=5, end_offset=13) == "end_offset"
    assert tally.finished(count=5, end_offset=14) is None


def test_cell_counts_come_from_what_was_measured():
    received = {"received": 4, "distinct": 3, "malformed": 0, "duplicated": 1}
    counts = cell_counts(sent=3, acked=3, consumer=received, consumer_end="complete", broker_offset_delta=3)
    assert counts.to_dict() == {"sent": 3, "acked": 3, "failed": 0, "consumed": 4, "lost": 0, "duplicated": 1,
                                "malformed": 0, "broker_offset_delta": 3}
    assert counts.warnings() == []
    # The consumer waited its whole timeout for the third: lost.
    counts = cell_counts(3, 3, {**received, "received": 2, "distinct": 2, "duplicated": 0}, "timeout", 3)
    assert counts.lost == 1 and counts.consumed == 2 and counts.warnings() == []
    # A produce failed mid-cell: counts so far; every acked message had been received.
    counts = cell_counts(2, 1, {**NOTHING_RECEIVED, "received": 1, "distinct": 1}, None, 1, "produce: timed out")
    assert (counts.sent, counts.acked, counts.failed, counts.lost) == (2, 1, 1, 0)
    # The consumer died before the acked message came: loss cannot be told from not-yet-received,
    # and a broker that did not answer leaves its offsets unread; each null says why.
    counts = cell_counts(1, 1, NOTHING_RECEIVED, None, None, "consumer process exited with code -9")
    assert counts.lost is None and counts.consumed == 0 and counts.broker_offset_delta is None
    assert counts.warnings()[0].startswith("lost not measured: 1 acked message(s) not received yet")
    assert "exited with code -9" in counts.warnings()[0]
    assert counts.warnings()[1] == "broker_offset_delta not measured: the broker's offsets could not be read"


COMPLETE = {"sent": 3, "acked": 3, "failed": 0, "consumed": 3, "lost": 0, "duplicated": 0, "malformed": 0,
            "broker_offset_delta": 3}


def _tried_row(size: int, counts: dict, error: str | None = None, not_measured=None) -> dict:
    return {**cell_row(size, "none", [1.0], [2.0], [size], None, None, None, error),
            "counts": counts, "counts_not_measured": not_measured or {}}


def test_sweep_counts_sum_the_cells_and_not_sent_cells_add_nothing():
    losing = {**COMPLETE, "consumed": 1, "lost": 2}
    not_sent = not_sent_row(MAX_VALUE_BYTES, "none", "not sent: ...")
    rows = [_tried_row(1_000, COMPLETE), _tried_row(10_000, losing, "lost 2 of 3 acked message(s): gone"), not_sent]
    totals = sweep_counts(rows)
    assert totals.to_dict() == {"sent": 6, "acked": 6, "failed": 0, "consumed": 4, "lost": 2, "duplicated": 0,
                                "malformed": 0, "broker_offset_delta": 6}
    assert totals.warnings() == []
    # Not measured in one cell: not measured in the sum, and the reason names the cell.
    unknown = {**COMPLETE, "consumed": 0, "lost": None, "broker_offset_delta": None}
    rows = [_tried_row(1_000, COMPLETE), _tried_row(10_000, unknown, "consume: died",
                                                    {"lost": "x", "broker_offset_delta": "y"})]
    totals = sweep_counts(rows)
    assert totals.lost is None and totals.broker_offset_delta is None and totals.acked == 6
    assert totals.warnings() == ["lost not measured: 10 KB none: x", "broker_offset_delta not measured: 10 KB none: y"]


def test_the_sweep_verdict_is_the_cores_rule():
    lost_row = _tried_row(10_000, {**COMPLETE, "consumed": 1, "lost": 2}, "lost 2 of 3 acked message(s): gone")
    failed_delivery = _tried_row(100_000, {**COMPLETE, "acked": 2, "failed": 1, "consumed": 2}, "produce: timed out")
    differs = _tried_row(1_000_000, COMPLETE, "consume: message at offset 1 differs from what was sent")
    not_sent = not_sent_row(MAX_VALUE_BYTES, "none", "not sent: ...")

    def verdict(rows, interrupted=False):
        return sweep_verdict(rows, sweep_counts(rows), interrupted)

    assert verdict([_tried_row(1_000, COMPLETE), not_sent]) == Verdict("complete", None, 0)
    # Lost and failed deliveries are in the counts; the first such cell's error says where.
    lost = verdict([_tried_row(1_000, COMPLETE), lost_row, failed_delivery])
    assert (lost.status, lost.exit_code) == ("failed", 3)
    assert lost.failure == ("1 deliveries failed, 2 acked orders lost "
                            "(first error: 10 KB none: lost 2 of 3 acked message(s): gone)")
    # A cell that failed otherwise fails the sweep by itself, and names the cell.
    other = verdict([lost_row, differs, not_sent])
    assert other.status == "failed" and other.failure.startswith("1 of 3 cells failed; first: 1 MB none: consume:")
    # Interrupted wins (exit 130), whatever the cells did.
    interrupted = verdict([lost_row], interrupted=True)
    assert (interrupted.status, interrupted.exit_code) == ("interrupted", 130)


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
    (["--client-config", "{dir}/owned.toml"], "'compression.type' is set by the sweep itself"),
    (["--client-config", "{dir}/typo.toml"], "librdkafka refuses the settings: No such configuration property"),
    (["--client-config", "{dir}/missing.toml"], "--client-config"),
    (["--client-config", "{dir}/client-id.toml", "--peer", "java"], "--peer java: --client-config holds librdkafka settings"),
])
def test_bad_input_is_one_line_and_exit_2(flags, message, capsys, tmp_path):
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "owned.toml").write_text('"compression.type" = "zstd"\n')
    (settings / "typo.toml").write_text('[security]\nprotocl = "SASL_SSL"\n')
    (settings / "client-id.toml").write_text('"client.id" = "mine"\n')
    results = tmp_path / "results"
    results.mkdir()
    # Nothing listens on port 1: these must fail before contacting a broker.
    code = run_sweep("127.0.0.1:1", results, *(flag.format(dir=settings) for flag in flags))
    error = capsys.readouterr().err
    assert code == 2
    assert message in error and error.count("\n") == 1
    assert not any(results.iterdir())


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


def test_random_payload_makes_librdkafka_skip_gzip_and_the_result_says_so(kafka_bootstrap, unique_topic, tmp_path):
    # An existing --topic is kept: the counts are checked against its offsets afterwards.
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, max_message_bytes=CLIENT_MESSAGE_MAX_BYTES)
    assert run_sweep(kafka_bootstrap, tmp_path, "--sizes", "100KB", "--compression", "gzip",
                     "--payload", "random", "--reps", "2", "--topic", unique_topic) == 0
    result = load_result(only_run_folder(tmp_path))
    row = rows_by_cell(result)[(100_000, "gzip")]
    assert row["error"] is None and row["compression_skipped"] is True
    assert row["wire_bytes"] > 100_000
    assert any("compression skipped" in warning for warning in result["warnings"])
    assert row["counts"]["consumed"] == row["reps"] == 2
    assert_sweep_counts_match_broker(result, kafka_bootstrap)


def test_acked_messages_the_broker_drops_are_lost_and_fail_the_sweep(kafka_bootstrap, unique_topic, tmp_path,
                                                                     monkeypatch, capsys):
    """The cell's exchange, replaced from the test (seams.drop_first_acked), deletes the first 2 of
    3 acked messages on the broker (delete_records) before the consumer reads anything: the audit
    must count exactly those 2 as lost."""
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic, max_message_bytes=CLIENT_MESSAGE_MAX_BYTES)
    monkeypatch.setattr(CellRun, "_exchange", drop_first_acked(kafka_bootstrap, 2))
    code = run_sweep(kafka_bootstrap, tmp_path, "--sizes", "1KB", "--compression", "none", "--reps", "3",
                     "--topic", unique_topic)
    out = capsys.readouterr().out
    assert code == 3, out
    result = load_result(only_run_folder(tmp_path))
    row = rows_by_cell(result)[(1_000, "none")]
    # The broker's offsets grew by 3: all were written.
    assert row["counts"] == {"sent": 3, "acked": 3, "failed": 0, "consumed": 1, "lost": 2, "duplicated": 0,
                             "malformed": 0, "broker_offset_delta": 3}
    assert row["error"].startswith("lost 2 of 3 acked message(s)")
    assert result["status"] == "failed"
    assert result["failure"].startswith("0 deliveries failed, 2 acked orders lost (first error: 1 KB none: lost 2 of 3")
    assert result["counts"] == row["counts"]
    assert "FAILED: lost 2 of 3 acked message(s)" in out
    # The broker's own offsets: 3 written (all acked), the first 2 gone, 1 held (the one consumed).
    assert topic_watermarks(kafka_bootstrap, unique_topic) == {0: (2, 3)}


# A bug in the producer worker, put there from outside the product: every Python process started
# with this PYTHONPATH runs sitecustomize first; only the producer worker breaks.
_BROKEN_PRODUCER_WORKER = """
import sys

if "bench.large_message.worker" in sys.orig_argv and "producer" in sys.orig_argv:
    from streamstore.producer import OrderProducer

    def produce(self, *args, **kwargs):
        raise ZeroDivisionError("a bug in the producer worker")

    OrderProducer.produce = produce
"""


def test_a_worker_that_dies_with_an_exception_leaves_its_traceback_beside_the_result(kafka_bootstrap, tmp_path,
                                                                                     monkeypatch, capsys):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_BROKEN_PRODUCER_WORKER)
    monkeypatch.setenv("PYTHONPATH", f"{hook}:{os.environ.get('PYTHONPATH', '')}")
    results = tmp_path / "results"
    code = run_sweep(kafka_bootstrap, results, "--sizes", "1KB", "--compression", "none", "--reps", "1")
    captured = capsys.readouterr()
    assert code == 3, captured.out
    # The console: one line for the cell, no traceback.
    assert "Traceback" not in captured.out + captured.err
    reason = "producer process exited with code 1: ZeroDivisionError: a bug in the producer worker"
    folder = only_run_folder(results)
    (row,) = load_result(folder)["large_message"]["rows"]
    assert row["error"] == f"{reason} (traceback in errors.log)", row
    assert row["error"] in captured.out
    log = (folder / "errors.log").read_text()
    assert log.startswith("producer process failed (") and reason in log.splitlines()[0]
    assert "Traceback (most recent call last):" in log and "in produce" in log
    assert log.rstrip().endswith("ZeroDivisionError: a bug in the producer worker")


def test_a_bare_script_that_dies_with_an_exception_leaves_its_traceback_beside_the_result(kafka_bootstrap, tmp_path,
                                                                                          monkeypatch, capsys):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n\n"
        "if 'bench.large_message.bare' in sys.orig_argv:\n"
        "    import streamstore.orders\n\n"
        "    def make_payload(*args, **kwargs):\n"
        "        raise ZeroDivisionError('a bug in the bare script')\n\n"
        "    streamstore.orders.make_payload = make_payload\n")
    monkeypatch.setenv("PYTHONPATH", f"{hook}:{os.environ.get('PYTHONPATH', '')}")
    results = tmp_path / "results"
    run_sweep(kafka_bootstrap, results, "--sizes", "1KB", "--compression", "none", "--reps", "1", "--compare-bare")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    folder = only_run_folder(results)
    bare = load_result(folder)["large_message"]["bare_comparison"]
    assert bare["error"] == "ZeroDivisionError: a bug in the bare script (traceback in errors.log)", bare
    assert f"bare comparison failed: {bare['error']}" in captured.out
    log = (folder / "errors.log").read_text()
    assert log.startswith("bare script failed (") and "in make_payload" in log


@pytest.mark.slow
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
        assert row["end_to_end_ms"]["p50"] > 0 and row["service_time_ms"]["p50"] > 0
        assert row["producer_peak_rss_bytes"] > 100_000_000 and row["consumer_peak_rss_bytes"] > 100_000_000
    assert cells[(100_000_000, "none")]["wire_bytes"] > 100_000_000
    # Count truth: each cell's topic offsets (read from the broker before it was deleted) grew
    # by exactly its reps, each acked message was consumed once and intact, and the totals agree.
    assert all(row["counts"]["broker_offset_delta"] == row["reps"] == row["counts"]["consumed"] > 0
               for row in cells.values())
    assert_sweep_counts_match_broker(result, kafka_bootstrap)
    assert result["counts"]["malformed"] == 0 and result["large_message"]["not_sent"] == []
    # The padded order compresses: the broker stored a small fraction of it.
    gzip_row = cells[(100_000_000, "gzip")]
    assert gzip_row["compression_ratio"] > 50 and not gzip_row["compression_skipped"]
    if gzip_row["broker_stored_bytes"] is not None:
        assert gzip_row["broker_stored_bytes"] == gzip_row["wire_bytes"]
    for name in (*LARGE_MESSAGE_PLOTS, "resources.png", "report.md", "report.html", "result.json"):
        assert (folder / name).stat().st_size > 0, name
    assert "100 MB  gzip" in out and str(folder) in out
    # Resources each second of the sweep: the worker processes as they came and went (one pair
    # per size), the broker's JVM, each cell's start marked on the same clock.
    series, resources = result["series"], result["resources"]
    assert len(series["t_s"]) >= math.floor(result["duration_s"]) - 2
    processes = resources["processes"]
    assert processes["producer"]["role"] == "producer" and processes["consumer"]["role"] == "tracker"
    assert len(processes["producer"]["pids"]) == len({size for size, _ in cells})
    producer_rss = [value for value in series["rss_mb_by_process"]["producer"] if value is not None]
    assert max(producer_rss) > 100  # it held a 100 MB message
    assert any(value for value in series["cpu_percent_by_process"]["consumer"] if value is not None)
    assert [event["kind"] for event in result["events"]] == [f"{size_label(size)} {compression}"
                                                             for size, compression in cells]
    assert all(0 <= event["t_s"] <= series["t_s"][-1] for event in result["events"])
    # Without --peer java no cell has a Java figure (tests/test_java_peer.py runs the peer).
    assert all(row["java"] is None for row in cells.values())
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
    assert result["large_message"]["not_sent"] == ["1 GB (client max) none"]
    assert_sweep_counts_match_broker(result, kafka_bootstrap)
    assert result["counts"]["consumed"] == result["counts"]["acked"] == 1


def test_uncompressed_batches_above_the_librdkafka_request_limit_are_not_sent():
    assert known_unsendable(268_000_000, "none", "order") is None
    reason = known_unsendable(MAX_VALUE_BYTES, "none", "order")
    assert "268,435,455 bytes" in reason and "varint into 4 reserved bytes" in reason and "not a Kafka limit" in reason
    assert known_unsendable(MAX_VALUE_BYTES, "gzip", "order") is None
    assert known_unsendable(MAX_VALUE_BYTES, "gzip", "random") is not None
