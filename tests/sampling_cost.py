"""What sampling resources each second costs a flat-out producer: the same `bench run` (steady-orders
at rate 0, one producer) in three modes, rotated round by round in one script run on one broker:

- `off`: no resource sampler;
- `on`: the run as every run samples (once a second: its processes, the host, and the embedded
  broker's JMX exporter scraped);
- `on+N`: the same, plus a second sampler of the same processes and exporters at N samples a
  second (the same code, `ResourceSampler`, whose samples are thrown away): the cost made N+1
  times larger, so that it stands out of the rounds' noise.

A once-a-second cost of ~1 % cannot be told from rounds that vary by several per cent (off / on
alone); N extra samples cost N times one sample, so (off / on+N - 1) / N is what one sample a
second costs, measured where it is large enough to see. N is the rate the extra sampler actually
kept (a scrape that takes longer than 1/N s delays the next one), counted, not assumed.

    .venv/bin/python tests/sampling_cost.py --bootstrap-servers 127.0.0.1:29500 --rounds 6 --duration 8

Prints one line per run (acked msg/s; the broker's and the coordinator's CPU where sampled), the
ratios with their range over rounds, and the load average; say it with the figures. Needs a broker
started by this tool (`bench broker start`) for the exporter scrapes to be part of the cost.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.core.runner as runner  # noqa: E402
from bench.analysis.stats import ratio_spread  # noqa: E402
from bench.core.broker_metrics import broker_metrics  # noqa: E402
from bench.core.resources import ResourceSampler  # noqa: E402
from bench.core.scenario import Scenario  # noqa: E402
from streamstore.admin import connect_admin, delete_topic  # noqa: E402

OFF, ON = "off", "on"


class CountingSampler(ResourceSampler):
    """The run's sampler as it is, counting the samples it took."""

    taken = 0

    def _sample(self, second: int) -> None:
        super()._sample(second)
        self.taken += 1


class ExtraSampling:
    """Wraps the runner's resource sampling: beside the run's own sampler, a second one of the same
    processes and broker endpoints at `per_s` samples a second, from the same start to the same stop."""

    def __init__(self, per_s: float):
        self.per_s = per_s
        self.rate_kept: float | None = None
        self._watch = runner._watch_resources

    def __enter__(self) -> ExtraSampling:
        def watch(processes, broker, t0_ns):
            resources = self._watch(processes, broker, t0_ns)
            extra = CountingSampler(resources.sampler.watched.values(), t0_ns, every_s=1 / self.per_s,
                                    broker_metrics=broker_metrics(broker.observed_embedded, broker.metrics_url))
            started = time.monotonic()
            extra.start()
            stop_run_sampler = resources.stop

            def stop() -> None:
                extra.stop()
                if extra.broker_metrics is not None:
                    extra.broker_metrics.end()
                self.rate_kept = extra.taken / (time.monotonic() - started)
                stop_run_sampler()

            resources.stop = stop
            return resources

        runner._watch_resources = watch
        return self

    def __exit__(self, *exc) -> None:
        runner._watch_resources = self._watch


def cpu_means(result: dict) -> str:
    processes = (result.get("resources") or {}).get("processes") or {}
    shown = [f"{name} CPU {figures['cpu_percent_mean']:.1f} %" for name, figures in processes.items()
             if (name.startswith("broker") or name == "coordinator") and figures.get("cpu_percent_mean") is not None]
    return ", ".join(shown)


def one_run(bootstrap: str, root: Path, mode: str, extra_per_s: float, round_index: int,
            duration_s: float) -> tuple[float, float | None]:
    """One flat-out run: (acked msg/s over the measured window, extra samples a second kept or None)."""
    scenario = Scenario.from_toml("steady-orders", {"rate": 0, "duration_s": duration_s, "warmup_s": 2,
                                                    "topic": f"sampling-cost-{round_index}-{mode.replace('+', '-')}"})
    extra = ExtraSampling(extra_per_s) if mode not in (OFF, ON) else None
    with extra or contextlib.nullcontext():
        code, _folder, result = runner.run_scenario(scenario, bootstrap, root, "external", out=io.StringIO(),
                                                    sample_resources=mode != OFF)
    if code != 0:
        raise SystemExit(f"run failed (exit {code}): {result.get('failure')}")
    # A flat-out run writes GBs: deleted at once, so the page cache and disk of later rounds do
    # not fill up (reclaiming them cost the kernel 40 % of the CPU in a run that kept them).
    delete_topic(connect_admin(bootstrap), scenario.topic)
    acked = result["throughput"]["acked_per_s"]
    kept = extra.rate_kept if extra is not None else None
    shown = f"; {kept:.1f} extra samples/s kept" if kept is not None else ""
    print(f"round {round_index + 1} {mode:<6}: {acked:,.0f} acked msg/s  {cpu_means(result)}{shown}", flush=True)
    return acked, kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--extra-per-s", type=float, default=20, help="N: extra samples a second in the on+N runs")
    args = parser.parse_args()
    amplified = f"on+{args.extra_per_s:g}"
    modes = [OFF, ON, amplified]
    root = Path(tempfile.mkdtemp(prefix="sampling-cost-"))
    acked: dict[str, list[float]] = {mode: [] for mode in modes}
    kept: list[float] = []
    print(f"load average before: {os.getloadavg()}", flush=True)
    try:
        for round_index in range(args.rounds):
            for mode in modes[round_index % 3:] + modes[:round_index % 3]:  # each mode first in turn
                figure, rate_kept = one_run(args.bootstrap_servers, root, mode, args.extra_per_s, round_index,
                                            args.duration)
                acked[mode].append(figure)
                if rate_kept is not None:
                    kept.append(rate_kept)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    direct = ratio_spread(acked[OFF], acked[ON])
    scaled = ratio_spread(acked[OFF], acked[amplified])
    per_s = mean(kept)
    print(f"off / on: mean {direct.mean:.3f} (range {direct.low:.3f}-{direct.high:.3f}) over {args.rounds} rounds")
    print(f"off / {amplified}: mean {scaled.mean:.3f} (range {scaled.low:.3f}-{scaled.high:.3f}); "
          f"the extra sampler kept {per_s:.1f} samples/s (range {min(kept):.1f}-{max(kept):.1f})")
    print(f"one sample a second costs (off / {amplified} - 1) / {per_s:.1f} = {100 * (scaled.mean - 1) / per_s:+.2f} % "
          f"of flat-out throughput (range over rounds {100 * (scaled.low - 1) / per_s:+.2f} to "
          f"{100 * (scaled.high - 1) / per_s:+.2f} %)")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
