"""The CI gate against a real broker: an identical rerun passes, a 2x slower consumer path fails.

Runs scenarios/ci-gate.toml three times (shortened to 15 s; duration is not part of the
fingerprint) through `bench regress --scenario`, the path .ci/run uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka_truth import assert_counts_match_broker
from seams import slowed_tracker

from bench.analysis.compare import DEFAULT_CHECKS  # what CI uses: chosen from measured rerun noise
from bench.cli import main
from bench.results.store import load_result

# Latencies and timings that other tests on the same cores would distort (make test runs these alone).
pytestmark = pytest.mark.timing

# The tracker sleeps this long after each consumed batch (seams.slowed_tracker: the same scenario,
# so the same fingerprint, with a slower consumer path): end-to-end p50 goes from ~5 ms to ~13 ms
# at 1,000 msg/s (measured: 5.26 -> 13.5 ms, +157 %), a regression the gate must catch.
CONSUMER_DELAY_MS = 20
CI_SCENARIO = Path(__file__).parent.parent / "scenarios" / "ci-gate.toml"


def _gate(kafka_bootstrap, topic, tmp_path, *extra):
    """Run the gate on a fresh topic; the candidate's counts must match what the broker holds."""
    runs_before = set((tmp_path / "results").glob("*-ci-gate"))
    args = ["regress", "--scenario", str(CI_SCENARIO), "--set", "duration_s=15", "--set", "warmup_s=3",
            "--set", f"topic={topic}", "--bootstrap-servers", kafka_bootstrap, "--broker", "external",
            "--results", str(tmp_path / "results"), "--baselines-dir", str(tmp_path / "baselines")]
    code = main([*args, *extra])
    [candidate] = set((tmp_path / "results").glob("*-ci-gate")) - runs_before
    assert_counts_match_broker(load_result(candidate), kafka_bootstrap)
    return code


@pytest.mark.slow
def test_gate_passes_identical_rerun_and_catches_a_2x_slower_consumer(kafka_bootstrap, unique_topic, tmp_path, capsys,
                                                                      monkeypatch):
    assert _gate(kafka_bootstrap, f"{unique_topic}-1", tmp_path, "--update-baseline") == 0
    baseline = load_result(tmp_path / "baselines" / "ci-gate.json")
    assert baseline["status"] == "complete" and baseline["counts"]["lost"] == 0
    capsys.readouterr()

    assert _gate(kafka_bootstrap, f"{unique_topic}-2", tmp_path) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"regress: ok, {len(DEFAULT_CHECKS)} checks passed"

    summary = tmp_path / "summary.md"
    monkeypatch.setattr("bench.core.runner.tracker_main", slowed_tracker(CONSUMER_DELAY_MS))
    code = _gate(kafka_bootstrap, f"{unique_topic}-3", tmp_path, "--summary", str(summary))
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert "end_to_end_p50: REGRESSION: " in printed
    assert "| end_to_end_p50:+50% (floor 1 ms) |" in summary.read_text()
