"""How often the `bench ab` gate is wrong on a shared machine: false alarms and detections.

    .venv/bin/python tests/gate_trials.py --bootstrap-servers 127.0.0.1:9092 --trials 10

While a process it starts keeps one core busy (the busy neighbour), it runs the gate
(`bench ab scenarios/ci-gate.toml --check`, the checks .ci/run uses) `--trials` times with
two identical sides, each of which must pass (exit 0; an exit 1 is a false alarm), and `--trials`
times with side B's end-to-end latency doubled (the tracker sleeps `--consumer-delay-ms` after each
consumed batch, tests/seams.py), each of which must fail (exit 1; an exit 0 is a miss). What delay
doubles the latency depends on the machine: 9 ms did on one shared by other engineers' test
suites (end-to-end p50 ~15-30 ms), where a quiet one (3.6 ms) needs about 2 ms; each trial prints
B/A, so a run shows what it tested. Trials alternate
between the two kinds. Prints one line per trial and the counts, with the load average before
and after. Not a pytest module: tests/test_ab.py is its short version.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from seams import slowed_tracker_on  # noqa: E402

import bench.core.runner  # noqa: E402
from bench.cli import main  # noqa: E402

CI_SCENARIO = Path(__file__).parent.parent / "scenarios" / "ci-gate.toml"


def trial(bootstrap: str, results: Path, slowed: bool, args: argparse.Namespace, number: int) -> tuple[int, str]:
    real = bench.core.runner.tracker_main
    if slowed:
        bench.core.runner.tracker_main = slowed_tracker_on("-b", args.consumer_delay_ms)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["ab", str(CI_SCENARIO), "--rounds", str(args.rounds), "--duration", str(args.duration),
                         "--warmup", str(args.warmup), "--check", "--set", f"topic=ab-trials-{number}",
                         "--bootstrap-servers", bootstrap, "--broker", "external", "--results-dir", str(results)])
    finally:
        bench.core.runner.tracker_main = real
    [ab_file] = sorted(results.glob("*/ab.json"))[-1:]
    document = json.loads(ab_file.read_text())
    e2e = document["metrics"].get("end_to_end_p50") or {}
    worse = [c["check"] for c in document["checks"] if c["b_worse"]]
    ratio = e2e.get("b_over_a") or {}
    per_round = " ".join(f"{side.upper()} {[round(v / 1000, 1) for v in (e2e.get(side) or {}).get('rounds', [])]}"
                         for side in ("a", "b"))
    return code, (f"end-to-end p50 ms {per_round}; B/A {ratio.get('mean', float('nan')):.2f} ({ratio.get('low', float('nan')):.2f}-"
                  f"{ratio.get('high', float('nan')):.2f}), {e2e.get('verdict')}; worse: {', '.join(worse) or 'none'}")


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=12)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--consumer-delay-ms", type=float, default=9.0,
                        help="side B's tracker sleeps this long after each batch in the doubled trials")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="keep each trial's ab.json here (default: a scratch folder removed at the end)")
    args = parser.parse_args()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    false_alarms = misses = 0
    load_before = os.getloadavg()[0]
    started = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="gate-trials-") as scratch_dir:
            scratch = args.results_dir or Path(scratch_dir)
            for number in range(1, 2 * args.trials + 1):
                slowed = number % 2 == 0
                code, line = trial(args.bootstrap_servers, scratch / str(number), slowed, args, number)
                kind = "doubled" if slowed else "unchanged"
                if code not in (0, 1):
                    print(f"trial {number} ({kind}): exit {code}, the gate could not judge; {line}", flush=True)
                    return 3
                wrong = (code == 0) if slowed else (code == 1)
                false_alarms += wrong and not slowed
                misses += wrong and slowed
                print(f"trial {number} ({kind}): exit {code}{' WRONG' if wrong else ''}; {line}; "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        spinner.kill()
        spinner.wait()
    print(f"false alarms {false_alarms} of {args.trials} unchanged; detections {args.trials - misses} of {args.trials} "
          f"doubled; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"{(time.time() - started) / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(run())
