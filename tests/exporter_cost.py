"""What reading the broker's own metrics each second costs: the same `bench run` (steady-orders at
a fixed rate) on a broker with Prometheus' JMX exporter attached and scraped once a second, and on
one without it, alternating, in one script run; the broker's mean CPU over each run's measured
window (the resource sampler's psutil figure) and the scrape time per second. First, on an idle
broker, the CPU one scrape costs the JVM (back-to-back scrapes against its idle CPU): on a busy
2-core machine the runs' CPU varies far more from one run to the next than a scrape costs.

    .venv/bin/python tests/exporter_cost.py --port 31710 --rounds 2 --duration 20 --rate 2000

Each side is its own broker on its own port and state dir (a fresh JVM each round, so neither
side runs on a warmer JIT). Prints one line per run and the means; say the load average with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.broker.embedded import EmbeddedBroker  # noqa: E402
from bench.broker.exporter import exporter_endpoint  # noqa: E402
from bench.core.broker_metrics import scrape  # noqa: E402
from bench.core.runner import run_scenario  # noqa: E402
from bench.core.scenario import Scenario  # noqa: E402


def one_run(agent: bool, port: int, root: Path, args: argparse.Namespace, round_index: int) -> dict:
    broker = EmbeddedBroker(port=port, state_dir=root / f"broker-{'agent' if agent else 'bare'}-{round_index}")
    broker.config = dataclasses.replace(broker.config, metrics_agent=agent)
    broker.start(timeout_s=180)
    try:
        scenario = Scenario.from_toml("steady-orders", {"rate": args.rate, "duration_s": args.duration, "warmup_s": 5,
                                                        "topic": f"jmx-cost-{round_index}-{int(agent)}"})
        code, _folder, result = run_scenario(scenario, broker.bootstrap_servers, root / "results", "external",
                                             out=io.StringIO())
    finally:
        broker.stop()
    resources = result["resources"]
    cpu = resources["processes"]["broker-node1"]["cpu_percent_mean"]
    metrics = resources.get("broker_metrics") or {}
    return {"agent": agent, "code": code, "broker_cpu": cpu, "host_cpu": resources["summary"]["host"]["cpu_percent_mean"],
            "scrape_ms_mean": metrics.get("scrape_ms_mean"), "scrape_ms_max": metrics.get("scrape_ms_max"),
            "acked_per_s": result["throughput"]["acked_per_s"]}


def scrape_cpu(port: int, root: Path, scrapes: int = 200) -> tuple[float, float]:
    """(broker CPU ms per scrape, wall ms per scrape): the JVM's CPU time over `scrapes`
    back-to-back scrapes, less its CPU over as long idle, on a broker with no load."""
    broker = EmbeddedBroker(port=port, state_dir=root / "broker-scrape")
    broker.start(timeout_s=180)
    try:
        url, _reason = exporter_endpoint(broker.state_dir)
        process = psutil.Process(broker.pid)
        for _ in range(20):  # the first scrapes load classes and warm the JIT
            scrape(url, timeout_s=30)

        def cpu_s() -> float:
            times = process.cpu_times()
            return times.user + times.system

        began, before = time.perf_counter(), cpu_s()
        for _ in range(scrapes):
            scrape(url, timeout_s=30)
        wall, busy = time.perf_counter() - began, cpu_s() - before
        began, before = time.perf_counter(), cpu_s()
        time.sleep(wall)
        idle = (cpu_s() - before) * wall / (time.perf_counter() - began)
    finally:
        broker.stop()
    return 1000 * (busy - idle) / scrapes, 1000 * wall / scrapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=31710)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--scrapes-only", action="store_true", help="only the CPU per scrape on an idle broker")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="exporter-cost-"))
    rows = []
    try:
        cpu_ms, wall_ms = scrape_cpu(args.port, root)
        print(f"one scrape costs the broker {cpu_ms:.2f} ms of CPU ({cpu_ms / 10:.2f} % of one core at one a second), "
              f"{wall_ms:.1f} ms wall (200 back-to-back on an idle broker)", flush=True)
        if args.scrapes_only:
            return 0
        for round_index in range(args.rounds):
            order = (True, False) if round_index % 2 == 0 else (False, True)
            for agent in order:
                row = one_run(agent, args.port, root, args, round_index)
                rows.append(row)
                print(f"round {round_index + 1} {'agent' if agent else 'bare '}: broker CPU {row['broker_cpu']} % of one "
                      f"core, host {row['host_cpu']} %, acked {row['acked_per_s']:,.0f}/s, scrape "
                      f"{row['scrape_ms_mean']} ms mean / {row['scrape_ms_max']} ms max, exit {row['code']}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for agent in (True, False):
        cpu = [row["broker_cpu"] for row in rows if row["agent"] is agent and row["broker_cpu"] is not None]
        if not cpu:
            continue
        print(f"{'agent' if agent else 'bare '} mean broker CPU: {sum(cpu) / len(cpu):.1f} % of one core over {len(cpu)} runs")
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
