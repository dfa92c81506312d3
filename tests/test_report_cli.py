"""`bench report`, `bench compare` and `bench regress` end to end on fixture folders (no broker)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.results.store import load_result

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def run_copy(tmp_path):
    """A writable copy of a fixture run folder."""
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target
    return copy


def test_report_regenerates_plots_and_documents(run_copy, capsys):
    folder = run_copy("with-fault")
    assert main(["report", str(folder)]) == 0
    names = {p.name for p in folder.iterdir()}
    assert {"latency_percentiles.png", "latency_over_time.png", "throughput.png", "consumer_lag.png",
            "report.md", "report.html", "result.json"} == names
    markdown = (folder / "report.md").read_text()
    assert "generator fell behind: send delay p99 = " in markdown
    assert "unstable" not in markdown  # a fault run's throughput dips because of its fault
    assert "| service time (send -> ack) | " in markdown
    assert "![latency percentiles](latency_percentiles.png)" in markdown
    assert "broker-kill" in markdown
    page = (folder / "report.html").read_text()
    assert page.count("src='data:image/png;base64,iVBORw0KGgo") == 4, "all four plots embedded"
    assert "<img" in page and "latency_percentiles.png'" in page
    assert f"{folder}: latency_percentiles.png" in capsys.readouterr().out


def test_report_large_message_folder(run_copy):
    folder = run_copy("large-message")
    assert main(["report", str(folder)]) == 0
    markdown = (folder / "report.md").read_text()
    assert "## Large-message sweep" in markdown
    assert "| 999,999,964 | gzip |" in markdown
    assert "Broker: Message size too large" in markdown
    assert (folder / "large_message_latency.png").exists()
    assert "![large message compression](large_message_compression.png)" in markdown


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("content, message", [
    ('{"schema_version": 99, "kind": "run"}', "has schema_version 99; this harness reads version 1, 2, 3, 4, 5"),
    ('{"schema_version": 1, "kind": "run", "scen', "is corrupt: not valid JSON"),
])
def test_report_refuses_unknown_schema_and_corrupt_file(tmp_path, content, message):
    (tmp_path / "result.json").write_text(content)
    completed = _run_cli("report", str(tmp_path))
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], completed.stderr


def test_report_on_a_missing_folder_is_exit_2(tmp_path):
    completed = _run_cli("report", str(tmp_path / "nope"))
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: {tmp_path / 'nope'} is not a run folder (expected a folder holding result.json)"


def test_compare_writes_table_and_files(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(FIXTURES / "baseline"), str(FIXTURES / "latency-2x"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "service time p50" in printed and "+99.2%" in printed
    assert {p.name for p in out.iterdir()} == {
        "compare_latency_percentiles.png", "compare_latency_over_time.png", "compare_throughput.png",
        "compare_consumer_lag.png", "compare.md", "compare.html"}
    assert "| service time p50 | 2.01 ms | 4 ms | +99.2% (worse) |" in (out / "compare.md").read_text()


def test_compare_not_comparable_needs_force(tmp_path, capsys):
    runs = [str(FIXTURES / "baseline"), str(FIXTURES / "other-size")]
    assert main(["compare", *runs, "--out", str(tmp_path / "a")]) == 2
    assert "not comparable with baseline: other-size differs in message_size: 200 vs 1000" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["compare", *runs, "--out", str(tmp_path / "b"), "--force"]) == 0
    assert "NOT COMPARABLE: other-size differs from baseline in message_size: 200 vs 1000" in capsys.readouterr().out
    assert "## Not comparable" in (tmp_path / "b" / "compare.md").read_text()


@pytest.mark.parametrize("candidate, exit_code, final_line", [
    ("rerun", 0, "regress: ok, 6 checks passed"),
    ("one-spike", 0, "regress: ok, 6 checks passed"),
    ("latency-2x", 1, "regress: REGRESSION in 2 of 6 checks"),  # the p50s; a 2x tail is within +200 %
    ("slow-and-starved", 1, "regress: REGRESSION in 3 of 6 checks"),
])
def test_regress_exit_codes(candidate, exit_code, final_line, capsys, tmp_path):
    summary = tmp_path / "summary.md"
    code = main(["regress", "--baseline", str(FIXTURES / "baseline"), "--candidate", str(FIXTURES / candidate),
                 "--summary", str(summary)])
    printed = capsys.readouterr().out
    assert code == exit_code
    assert printed.strip().splitlines()[-1] == final_line
    assert f"## bench regress: {final_line.removeprefix('regress: ')}" in summary.read_text()
    if candidate == "one-spike":
        assert "service_time_p99: not a regression: " in printed and "not significant (p = " in printed


def test_regress_not_comparable_is_exit_2(capsys):
    code = main(["regress", "--baseline", str(FIXTURES / "baseline"), "--candidate", str(FIXTURES / "other-size")])
    assert code == 2
    assert capsys.readouterr().err == "error: not comparable: scenarios differ in message_size: 200 vs 1000\n"


def _baseline_with_broker(tmp_path: Path, **broker) -> Path:
    """The baseline fixture's file, written again with another broker section (raw JSON, as an
    older harness or another broker would have written it)."""
    document = json.loads((FIXTURES / "baseline" / "result.json").read_text())
    document["broker"].update(broker)
    for key in [key for key, value in broker.items() if value == "drop"]:
        document["broker"].pop(key)
        document["schema_version"] = 3
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("broker, line", [
    # A baseline that could not measure its broker's version (an external Kafka 4 broker): a
    # hole is not a match.
    ({"version": None, "version_source": None, "embedded": False,
      "not_measured": {"version": "not the embedded broker, and it reports no inter.broker.protocol.version"}},
     "broker version: not measured in the baseline (not the embedded broker, and it reports no "
     "inter.broker.protocol.version)"),
    # An older file that recorded no version (its harness measured only the embedded broker's).
    ({"version": None, "embedded": False, "version_source": "drop", "not_measured": "drop"},
     "broker version: not measured in the baseline (not recorded (a schema version 3 file); that harness "
     "measured only the embedded broker's version)"),
    ({"version": "3.9.0"}, "broker version: '3.9.0' vs '3.8.1'"),
    # Measured differently: an external broker's protocol version against the embedded jar's
    # release, compared on the protocol version both report.
    ({"version": "3.9-IV0", "version_source": "inter.broker.protocol.version", "embedded": False},
     "broker version: '3.9-IV0' (inter.broker.protocol.version) vs '3.8.1' (embedded broker jar), measured "
     "differently and not both report inter.broker.protocol.version"),
])
def test_regress_against_another_or_unmeasured_broker_version_is_not_comparable(tmp_path, broker, line):
    baseline = _baseline_with_broker(tmp_path, **broker)
    completed = _run_cli("regress", "--candidate", str(FIXTURES / "rerun"), "--baseline", str(baseline))
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert completed.stderr.count("\n") == 1, completed.stderr
    assert completed.stderr.startswith(f"error: not comparable: environments differ or were not measured ({line})")
    assert "--any-environment" in completed.stderr
    judged = _run_cli("regress", "--candidate", str(FIXTURES / "rerun"), "--baseline", str(baseline), "--any-environment")
    assert judged.returncode == 0, judged.stdout + judged.stderr
    assert f"warning: judging across environments (--any-environment): {line}" in judged.stdout


def test_regress_failed_candidate_is_exit_3(tmp_path, capsys):
    failed = load_result(FIXTURES / "rerun")
    failed.update(status="failed", failure="broker unreachable at 127.0.0.1:1")
    (tmp_path / "result.json").write_text(json.dumps(failed))
    assert main(["regress", "--baseline", str(FIXTURES / "baseline"), "--candidate", str(tmp_path)]) == 3
    assert "did not complete (status failed: broker unreachable at 127.0.0.1:1)" in capsys.readouterr().err


def test_regress_bad_check_is_exit_2(capsys):
    code = main(["regress", "--baseline", str(FIXTURES / "baseline"), "--candidate", str(FIXTURES / "rerun"),
                 "--check", "throughput:+10%"])
    assert code == 2
    assert "write throughput:-10%" in capsys.readouterr().err


def test_update_baseline_creates_then_gates(tmp_path, capsys):
    baselines = tmp_path / "baselines"
    args = ["regress", "--baselines-dir", str(baselines), "--update-baseline"]
    # No baseline yet: the candidate becomes it (named after its scenario).
    assert main([*args, "--candidate", str(FIXTURES / "baseline")]) == 0
    stored = baselines / "steady-orders.json"
    assert load_result(stored)["run_id"] == load_result(FIXTURES / "baseline")["run_id"]
    # A regression does not replace the baseline.
    assert main([*args, "--candidate", str(FIXTURES / "latency-2x")]) == 1
    assert load_result(stored)["run_id"] == load_result(FIXTURES / "baseline")["run_id"]
    # A passing run does; the baseline can be named by scenario.
    assert main([*args, "--baseline", "steady-orders", "--candidate", str(FIXTURES / "rerun")]) == 0
    assert load_result(stored)["run_id"] == load_result(FIXTURES / "rerun")["run_id"]
    assert f"baseline {stored} updated from" in capsys.readouterr().out


def test_regress_without_baseline_says_how_to_create_one(tmp_path, capsys):
    code = main(["regress", "--baselines-dir", str(tmp_path), "--candidate", str(FIXTURES / "rerun")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: no baseline at {tmp_path / 'steady-orders.json'} for this environment "
        "(synthetic-cpu-2-0ghz-2cpu-kafka-3.8.1); create it from a good run here with --update-baseline\n")


def test_example_workflow_gate_command_matches_the_cli():
    """The example workflow parses, its gate command parses against the CLI, and the baselines it
    judges against come from a cache of the same runner kind (never a committed file measured on
    another machine), saved only from main or a manual run, with "not judged" on a first run."""
    yaml = pytest.importorskip("yaml")
    import shlex

    from bench.cli import build_parser
    from bench.core.scenario import Scenario

    workflow = yaml.safe_load((Path(__file__).parent.parent / ".github" / "workflows" / "bench.yml").read_text())
    job = workflow["jobs"]["bench"]
    steps = job["steps"]
    gate = next(step["run"] for step in steps if "bench regress" in step.get("run", ""))
    command = gate.replace("set -o pipefail;", "").split("|")[0]
    command = command.replace('"$GITHUB_STEP_SUMMARY"', "summary.md").replace('"$BASELINES"', job["env"]["BASELINES"])
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "bench"]
    args = build_parser().parse_args(argv[3:])
    root = Path(__file__).parent.parent
    assert args.baseline == Scenario.from_toml(root / args.scenario).name == "ci-gate"
    assert args.update_baseline and args.broker == "external" and "tee regress.log" in gate
    caches = {step["uses"].split("@")[0]: step for step in steps if step.get("uses", "").startswith("actions/cache")}
    restore, save = caches["actions/cache/restore"]["with"], caches["actions/cache/save"]["with"]
    assert restore["path"] == save["path"] == str(args.baselines_dir)
    assert "runner.os" in restore["key"] and restore["key"] == save["key"] and restore["restore-keys"] in restore["key"]
    assert "SAVE_BASELINE == 'true'" in caches["actions/cache/save"]["if"]
    assert "github.event_name == 'push'" in job["env"]["SAVE_BASELINE"]
    assert any("not judged" in step.get("run", "") and "no baseline yet" in step["run"] for step in steps)
