"""Plots from fixture result files: every expected file exists and is a real, non-trivial PNG."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bench.output import plots
from bench.results.store import load_result

FIXTURES = Path(__file__).parent / "fixtures"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_real_png(path: Path, min_width: int = 800) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # IHDR: the first chunk
    assert width >= min_width and height >= 400, f"{path.name} is {width}x{height}"
    # A titled figure with empty axes is about 5.5 KB (palette PNG); ours carry curves, text
    # and grids on top of that.
    assert len(data) > 12_000, f"{path.name} is only {len(data)} bytes"


def test_run_plots_from_fixture(tmp_path):
    written = plots.write_run_plots(load_result(FIXTURES / "with-fault"), tmp_path)
    assert [p.name for p in written] == ["latency_percentiles.png", "latency_over_time.png",
                                         "throughput.png", "consumer_lag.png"]
    for path in written:
        assert_real_png(path)


def test_large_message_plots_from_fixture(tmp_path):
    written = plots.write_run_plots(load_result(FIXTURES / "large-message"), tmp_path)
    assert [p.name for p in written] == ["large_message_latency.png", "large_message_throughput_memory.png",
                                         "large_message_compression.png"]
    for path in written:
        assert_real_png(path)


def test_compare_plots_overlay_runs(tmp_path):
    runs = [(name, load_result(FIXTURES / name)) for name in ("baseline", "latency-2x", "one-spike")]
    written = plots.write_compare_plots(runs, tmp_path)
    assert [p.name for p in written] == ["compare_latency_percentiles.png", "compare_latency_over_time.png",
                                         "compare_throughput.png", "compare_consumer_lag.png"]
    for path in written:
        assert_real_png(path)


def test_run_without_series_or_latencies_writes_no_empty_plots(tmp_path):
    result = {"kind": "run", "scenario": {"name": "empty"}, "status": "failed", "latency_us": {}, "series": {}}
    assert plots.write_run_plots(result, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_percentile_curve_reaches_the_tail():
    result = load_result(FIXTURES / "baseline")
    histogram_text = result["latency_us"]["service_time"]["histogram"]
    xs, ys_ms = plots.percentile_curve(histogram_text)
    summary = result["latency_us"]["service_time"]
    assert xs[0] == 1.0 and xs[-1] == pytest.approx(min(summary["count"], 1e5))
    assert ys_ms == sorted(ys_ms), "a percentile curve never goes down"
    # The last point is the 1 - 1/count percentile: the slowest messages but one.
    assert summary["p99_9"] / 1000 <= ys_ms[-1] <= summary["max"] / 1000
    assert ys_ms[0] == pytest.approx(summary["min"] / 1000, rel=1e-3)


def test_flat_out_run_with_null_response_time_series_plots(tmp_path):
    # At rate 0 nothing is scheduled: response time exists only as a series of nulls, which a
    # log axis cannot show (it once raised "Data cannot be log-scaled").
    result = load_result(FIXTURES / "with-fault")
    series = result["series"]
    for statistic in ("p50", "p99", "max"):
        series[f"response_time_{statistic}_us"] = [None] * len(series["t_s"])
    result["latency_us"].pop("response_time", None)
    written = plots.write_run_plots(result, tmp_path)
    assert [p.name for p in written] == ["latency_percentiles.png", "latency_over_time.png",
                                         "throughput.png", "consumer_lag.png"]
    for path in written:
        assert_real_png(path)


def test_large_message_plots_carry_the_java_peer_even_where_the_harness_did_not_send(tmp_path):
    """Java figures are drawn for every cell the Java tool measured, the not-sent ones included,
    and the report table gets their column."""
    from bench.output.report import _large_message_table

    result = load_result(FIXTURES / "large-message")
    rows = result["large_message"]["rows"]
    for row in rows:
        row["java"] = {"end_to_end_ms": 10.0 + row["size_bytes"] / 1e6, "transfer_rate_mb_s": 50.0, "error": None}
    rows.append({**rows[-1], "size_bytes": 300_000_000, "compression": "none", "not_sent": True, "error": "not sent",
                 "service_time_ms": None, "end_to_end_ms": None,
                 "java": {"end_to_end_ms": 44_000.0, "transfer_rate_mb_s": 6.8, "error": None}})
    assert (300_000_000, 44_000.0, 6.8) in plots.java_by_compression(rows)["none"]
    written = plots.write_run_plots(result, tmp_path)
    assert [p.name for p in written][:2] == ["large_message_latency.png", "large_message_throughput_memory.png"]
    for path in written:
        assert_real_png(path)
    table = _large_message_table(result)
    assert table.header[-1] == "Java EndToEndLatency end-to-end (mean)"
    assert all(row[-1] != "-" for row in table.rows), "every cell has its Java figure"


@pytest.mark.parametrize("transactions", [False, True])
def test_per_partition_panel_is_drawn_from_the_partitions_section(tmp_path, transactions):
    """A version 4 fixture has no per-partition figures (null after the upgrade, no panel); with
    the section (as version 5 writes it) the panel is drawn, stacked with transactions."""
    result = load_result(FIXTURES / "with-fault")
    assert result["partitions"] is None
    rows = {str(p): {"acked": n, "consumed": n, "broker_offset_delta": n, "lag_max": 3} for p, n in enumerate((400, 60, 200))}
    if transactions:
        for row in rows.values():
            row.update(committed=row["consumed"], aborted=10, markers=4, broker_offset_delta=row["consumed"] + 14)
    result["partitions"] = {"by_partition": rows, "skew": 2.0, "not_measured": {}}
    written = plots.write_run_plots(result, tmp_path)
    assert written[-1].name == "partitions.png"
    assert_real_png(written[-1])
