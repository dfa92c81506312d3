"""Compare and reports a reader can trust: runs named by what differs, failover rows in the delta
table, failover plotted for every run, the whole percentile range visible with legends outside the
data, and a run's report that starts with its summary and links its sections.

Pure on fixture results (tests/fixtures), plus one pair of short runs against the real broker."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bench.analysis.compare import delta_rows
from bench.analysis.naming import run_names, scenario_differences
from bench.results.store import load_result

FIXTURES = Path(__file__).parent / "fixtures"


def _with(result: dict, **scenario) -> dict:
    changed = copy.deepcopy(result)
    changed["scenario"].update(scenario)
    return changed


def _fault_run(acks: str, lost: int, gap_ms: float, leader_ms: float | None) -> dict:
    """The with-fault fixture as a failover-table row runs it (acks=all: idempotent, min ISR 2),
    with the failover section a 3-node cluster run writes."""
    durable = acks == "all"
    result = _with(load_result(FIXTURES / "with-fault"), acks=acks, idempotence=durable, replication_factor=3,
                   min_insync_replicas=2 if durable else None, faults=["kill:leader@15+2"],
                   topic=f"orders-failover-{acks}")
    result["counts"]["lost"] = lost
    seconds = len(result["series"]["t_s"])
    result["failover"] = {"faults": [{
        "fault": "kill:leader@15+2", "kind": "kill", "node_id": 2, "role": "leader", "partition": 0,
        "start_s": 15.0, "end_s": 17.0, "back_s": 19.5, "longest_ack_gap_ms": gap_ms, "longest_consume_gap_ms": gap_ms + 40,
        "new_leader_ms": leader_ms, "not_measured": {} if leader_ms else {"new_leader_ms": "no sample showed one"},
        "latency_us": {"service_time": {"during": {"p99_9": 90_000}, "before": {"p99_9": 4_000}}}}],
        "series": {"under_replicated": [0] * 15 + [3] * 5 + [0] * (seconds - 20),
                   "isr_size": {p: [3] * 15 + [2] * 5 + [3] * (seconds - 20) for p in ("0", "1", "2")},
                   "acked_by_partition": {p: [160 + int(p)] * seconds for p in ("0", "1", "2")}}}
    return result


# ---------------------------------------------------------------------------------------------
# Names


def test_runs_are_named_by_the_setting_that_tells_them_apart():
    durable, fast = _fault_run("all", 0, 2_100.0, 1_900.0), _fault_run("1", 12, 2_600.0, None)
    # acks, idempotence and min ISR all differ (and the topic, which is no name): acks suffices.
    assert run_names([durable, fast], ["run-a", "run-b"]) == ["acks=all", "acks=1"]
    assert [field for field, _ in scenario_differences([durable, fast])] == ["acks", "idempotence", "min_insync_replicas"]
    assert scenario_differences([durable, fast])[2] == ("min_insync_replicas", ("2", "default"))


def test_names_add_fields_until_every_run_has_its_own_and_fall_back_to_the_folders():
    base = load_result(FIXTURES / "baseline")
    gzip_all, gzip_one, plain_one = (_with(base, compression="gzip", acks="all"), _with(base, compression="gzip", acks="1"),
                                     _with(base, compression="none", acks="1"))
    assert run_names([gzip_all, gzip_one, plain_one], ["a", "b", "c"]) == [
        "acks=all, compression=gzip", "acks=1, compression=gzip", "acks=1, compression=none"]
    # Reruns of one scenario: nothing differs, so their folders name them.
    assert run_names([base, load_result(FIXTURES / "rerun")], ["baseline", "rerun"]) == ["baseline", "rerun"]
    # Runs that still share a name after every differing field keep their folder beside it.
    assert run_names([gzip_all, gzip_one, copy.deepcopy(gzip_one)], ["a", "b", "c"]) == [
        "acks=all", "acks=1 (b)", "acks=1 (c)"]


# ---------------------------------------------------------------------------------------------
# The delta table and the summary


def test_the_delta_table_of_fault_runs_has_lost_duplicated_gap_and_leader_rows():
    rows = {row.name: row for row in delta_rows([_fault_run("all", 0, 2_100.0, 1_900.0),
                                                 _fault_run("1", 12, 2_600.0, None)])}
    assert {"lost", "duplicated", "longest_ack_gap", "longest_consume_gap", "new_leader"} <= set(rows)
    lost = rows["lost"]
    assert lost.values == (0, 12) and lost.changes == (None, None) and lost.differences == (None, 12)
    assert lost.is_worse(1)
    assert rows["longest_ack_gap"].values == (2_100.0, 2_600.0) and rows["new_leader"].values == (1_900.0, None)
    # Runs without faults have no failover rows.
    assert "longest_ack_gap" not in {row.name for row in delta_rows([load_result(FIXTURES / "baseline")] * 2)}


def test_compare_report_says_b_vs_a_and_shows_failover_for_both_runs(tmp_path):
    from bench.output.compare_report import write_compare_report

    runs = [_fault_run("all", 0, 2_100.0, 1_900.0), _fault_run("1", 12, 2_600.0, None)]
    written = write_compare_report(tmp_path, ["acks=all", "acks=1"], runs, delta_rows(runs), {}, ["20250115-a", "20250115-b"])
    assert "compare_failover.png" in [path.name for path in written]
    markdown = (tmp_path / "compare.md").read_text()
    assert "| metric | acks=all | acks=1 | acks=1 vs acks=all |" in markdown
    assert "| lost | 0 messages | 12 messages | +12 messages (worse) |" in markdown
    assert "| longest ack gap | 2,100 ms | 2,600 ms | +23.8% (worse) |" in markdown
    assert "- What differs: acks all / 1; idempotence true / false; min_insync_replicas 2 / default" in markdown
    assert "| acks=all | kill:leader@15+2 |" in markdown and "| acks=1 | kill:leader@15+2 |" in markdown
    assert markdown.index("## Summary") < markdown.index("## Deltas") < markdown.index("## Plots")


def test_a_run_report_starts_with_its_summary_and_links_every_section():
    from bench.output.document import anchor
    from bench.output.report import run_report_blocks

    blocks = run_report_blocks(_fault_run("all", 0, 2_100.0, 1_900.0), ["failover.png"])
    nav = next(block for block in blocks if block.kind == "nav")
    headings = [block.text for block in blocks if block.kind == "h2"]
    assert list(nav.items) == headings and headings[0] == "Summary"
    assert len({anchor(title) for title in headings}) == len(headings)
    lines = blocks[blocks.index(next(b for b in blocks if b.kind == "summary"))].items
    assert lines[0].startswith("Verdict: complete; every acked order consumed exactly once (0 lost, 0 duplicated")
    assert any(line.startswith("service time (send -> ack): p50 ") for line in lines)
    assert lines[-1].startswith("Failover: kill:leader@15+2 on node 2 (leader) at 15.0 s, back at 19.5 s; "
                                "longest ack gap 2,100 ms")
    scenario = next(block.text for block in blocks if block.kind == "p")
    for setting in ("acks=all", "replication factor 3", "min ISR 2", "idempotence on", "compression none", "3 partitions"):
        assert setting in scenario


# ---------------------------------------------------------------------------------------------
# Figures (their data, not their pixels)


def test_the_failover_figure_has_a_column_for_each_run():
    from bench.output.plots.runs import failover_figure

    fig = failover_figure([("acks=all", _fault_run("all", 0, 2_100.0, 1_900.0)),
                           ("acks=1", _fault_run("1", 12, 2_600.0, None))])
    try:
        axes = [ax for ax in fig.axes if ax.get_lines()]
        assert len(axes) == 6, "three panels per run"
        assert [ax.get_title(loc="left") for ax in fig.axes[:2]] == ["acks=all", "acks=1"]
        # Identical ISR lines of three partitions are one line that says so, not three hidden ones.
        isr = fig.axes[4]
        assert [line.get_label() for line in isr.get_lines()] == ["ISR size, partitions 0, 1, 2 (same)",
                                                                  "under-replicated partitions"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_the_percentile_figure_reaches_99_99_and_keeps_its_legends_off_the_data():
    import matplotlib.pyplot as plt

    from bench.output.plots.runs import percentile_figure

    runs = [("acks=all", load_result(FIXTURES / "baseline")), ("acks=1", load_result(FIXTURES / "latency-2x"))]
    fig = percentile_figure(runs)
    try:
        fig.canvas.draw()
        assert "99.99%" in [tick.get_text() for tick in fig.axes[-1].get_xticklabels()]  # the shared x axis
        for ax in fig.axes:
            assert ax.get_xlim()[1] >= 1e4  # 1 / (1 - 99.99 %)
            legend = ax.get_legend()
            assert [text.get_text() for text in legend.get_texts()] == ["acks=all", "acks=1"]
            assert legend.get_window_extent().x0 >= ax.get_window_extent().x1, "legend right of the plot"
    finally:
        plt.close(fig)


def test_curves_that_coincide_are_said_to():
    import matplotlib.pyplot as plt

    from bench.output.plots.runs import percentile_figure

    fig = percentile_figure([("run", load_result(FIXTURES / "baseline"))])
    try:
        labels = [line.get_label() for line in fig.axes[0].get_lines()]
        styles = {line.get_linestyle() for line in fig.axes[0].get_lines()}
        assert "response time (intended send -> ack) (coincides with service time)" in labels
        assert len(styles) == len(labels)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Against the real broker


@pytest.mark.slow
def test_compare_of_an_acks_all_and_an_acks_1_run_names_them_so(kafka_bootstrap, unique_topic, tmp_path):
    from kafka_truth import assert_counts_match_broker, bench_command, bench_run

    folders = {}
    for acks in ("all", "1"):
        # A long drain: on a busy machine a fresh topic's first acks can take longer than the
        # default 10 s, and a purged delivery would fail the run (this test is about the names).
        run = bench_run(kafka_bootstrap, f"{unique_topic}-{acks}", tmp_path / acks, "--duration", "3", "--warmup", "1",
                        "--rate", "100", "--set", f"acks={acks}", "--set", "drain_timeout_s=60")
        assert run.completed.returncode == 0, run.completed.stdout[-2000:] + run.completed.stderr
        assert_counts_match_broker(run.result, kafka_bootstrap)
        folders[acks] = run.folder
    completed = bench_command("compare", str(folders["all"]), str(folders["1"]), "--force", "--out", str(tmp_path / "c"))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert f"acks=all: {folders['all']}" in lines[1] and f"acks=1: {folders['1']}" in lines[2]
    assert lines[3].split() == ["metric", "acks=all", "acks=1", "acks=1", "vs", "acks=all"]
    assert "| metric | acks=all | acks=1 | acks=1 vs acks=all |" in (tmp_path / "c" / "compare.md").read_text()


def test_a_fault_that_acted_after_producing_ended_is_marked_in_the_table():
    """A controller kill scheduled at 8 s acted at 30.2 s on a busy machine (finding the
    controller took that long), after the 24 s run stopped producing: the row must say so."""
    from bench.analysis.failover import Notes, table_row

    result = _fault_run("all", 0, 0.0, 13_447.0)
    result["throughput"]["producing_s"] = 24.0
    result["failover"]["faults"][0].update(start_s=30.2, end_s=30.2, back_s=81.2)
    notes = Notes()
    row = table_row(result, notes)
    assert row[3:6] == ["30.2 [1]", "81.2 [2]", "24.0"]
    assert notes.texts[0] == ("the fault acted at 30.2 s, after producing ended at 24.0 s: the run measured nothing "
                              "of it; run longer (--duration)")
    assert notes.texts[1].startswith("short run: node 2 was back at 81.2 s and producing ended at 24.0 s")
