"""What sampling resources each second costs a flat-out producer: the same `bench run` (steady-orders
at rate 0, one producer) with the resource sampler on and off, alternating in one script run on one
broker, and the ratio of acked msg/s round by round (off / on: above 1 is what sampling costs).

    .venv/bin/python tests/sampling_cost.py --bootstrap-servers 127.0.0.1:31950 --rounds 5 --duration 10

Prints one line per run, the ratio's mean and range, and the load average; say it with the figures.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.analysis.stats import ratio_spread  # noqa: E402
from bench.core.runner import run_scenario  # noqa: E402
from bench.core.scenario import Scenario  # noqa: E402


def one_run(bootstrap: str, root: Path, sampling: bool, round_index: int, duration_s: float) -> float:
    scenario = Scenario.from_toml("steady-orders", {"rate": 0, "duration_s": duration_s, "warmup_s": 2,
                                                    "topic": f"sampling-cost-{round_index}-{int(sampling)}"})
    code, _folder, result = run_scenario(scenario, bootstrap, root, "external", out=io.StringIO(),
                                         sample_resources=sampling)
    if code != 0:
        raise SystemExit(f"run failed (exit {code}): {result.get('failure')}")
    return result["throughput"]["acked_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sampling-cost-"))
    on, off = [], []
    print(f"load average before: {os.getloadavg()}", flush=True)
    try:
        for round_index in range(args.rounds):
            order = (True, False) if round_index % 2 == 0 else (False, True)
            for sampling in order:
                acked = one_run(args.bootstrap_servers, root, sampling, round_index, args.duration)
                (on if sampling else off).append(acked)
                print(f"round {round_index + 1} sampling {'on ' if sampling else 'off'}: {acked:,.0f} acked msg/s",
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = ratio_spread(off, on)
    print(f"off / on: mean {ratio.mean:.3f} (range {ratio.low:.3f}-{ratio.high:.3f}) over {args.rounds} rounds; "
          f"sampling costs {100 * (ratio.mean - 1):+.1f} % of flat-out throughput")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
