"""The CI gate against a real broker: an identical rerun passes, a 2x slower consumer path fails.

Runs scenarios/ci-gate.toml three times (shortened to 40 s: the gate's statistics need 4 independent
blocks of seconds, each as long as the series' correlation length measured in that run, which a
slowed consumer on a host with a noisy neighbour stretched to 8 s: 32 measured seconds; duration is
not part of the fingerprint) through
`bench regress --scenario`, the path .ci/run uses.
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
    args = ["regress", "--scenario", str(CI_SCENARIO), "--set", "duration_s=40", "--set", "warmup_s=3",
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

    # An identical rerun raises no alarm. On batch means a noisy p99 series may have too few
    # independent blocks in a short run: that check says "cannot decide" (exit 2), never REGRESSION.
    code = _gate(kafka_bootstrap, f"{unique_topic}-2", tmp_path)
    printed = capsys.readouterr().out
    assert code in (0, 2) and "REGRESSION" not in printed, printed
    if code == 0:
        assert printed.strip().splitlines()[-1] == f"regress: ok, {len(DEFAULT_CHECKS)} checks passed"

    summary = tmp_path / "summary.md"
    monkeypatch.setattr("bench.core.runner.tracker_main", slowed_tracker(CONSUMER_DELAY_MS))
    code = _gate(kafka_bootstrap, f"{unique_topic}-3", tmp_path, "--summary", str(summary))
    printed = capsys.readouterr().out
    assert code == 1, printed
    # The slower consumer path shows in end-to-end latency (its p50 or its p99, whichever has the
    # independent blocks to be significant), and in no figure the tracker does not touch.
    regressions = [line.split(":")[0].strip() for line in printed.splitlines() if ": REGRESSION: " in line]
    assert regressions and all(name.startswith("end_to_end_") for name in regressions), printed
    assert "| end_to_end_p50:+50% (floor 1 ms) |" in summary.read_text()
