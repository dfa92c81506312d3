"""`python -m bench ab A [B] --rounds N`: two sides measured in alternating rounds on one set-up.

A side is a scenario (file or name) with its own `--a-set` / `--b-set` overrides; with one
scenario, B is the same file, so `bench ab steady-orders --b-set acks=1` compares a client
setting. Rounds alternate the order (A B, then B A, ...) so drift on a shared machine hits both
sides alike. Each run is an ordinary `bench run` of the one measurement core
(bench/core/runner.py), its run folder inside the ab folder; `ab.json` (kind "ab") holds every
round's figures, each side's mean and spread, B/A round by round, and a verdict per metric
(bench/analysis/rounds.py). `--check` takes the threshold syntax of `bench regress` and exits 1
when B is worse beyond it: the gate for shared machines, where the reference is measured in the
same job.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.analysis.compare import DEFAULT_CHECKS, DELTA_METRICS
from bench.analysis.rounds import (
    MIN_CHECK_ROUNDS,
    compared_rounds,
    figures_document,
    judge_rounds,
    metric_table,
    separation_chance,
)
from bench.analysis.thresholds import Check, Limit, deprecation_lines, evaluate_limits, parse_checks
from bench.broker.ensure import ensure_broker
from bench.commands._ab_brokers import (
    SideBroker,
    add_side_broker_arguments,
    broker_labels,
    side_brokers,
    started_side_brokers,
)
from bench.commands._options import add_broker_arguments, add_results_argument
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario, parse_set_option
from bench.results.environment import capture_environment
from bench.results.formatting import format_value, utc_iso
from bench.results.metrics import METRICS
from bench.results.store import RESULT_FILE_NAME, load_result, run_folder, write_result
from streamstore.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REGRESSION, EXIT_RUN_FAILED, RunFailed, UsageError

NAME = "ab"
HELP = "measure two scenarios (or two --set variants) in alternating rounds: per metric B/A with its range and a verdict"

AB_FILE_NAME = "ab.json"
AB_PLOT_NAME = "ab_latency_percentiles.png"
# The metrics the table shows: compare's delta rows, in their order (those both sides measured).
AB_METRICS = DELTA_METRICS
_SHORTCUTS = {"rate": "rate", "duration": "duration_s", "warmup": "warmup_s"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario_a", metavar="A", help="scenario file or name of side A")
    parser.add_argument("scenario_b", metavar="B", nargs="?", help="scenario of side B (default: the same as A)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each one run of A and one of B (default 3)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario field on both sides (repeatable)")
    parser.add_argument("--a-set", dest="a_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of side A only, e.g. --a-set acks=all")
    parser.add_argument("--b-set", dest="b_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of side B only, e.g. --b-set acks=1 or --b-set producer_config.linger.ms=20")
    parser.add_argument("--rate", type=float, help="messages/s on both sides")
    parser.add_argument("--duration", type=float, help="seconds of producing per run")
    parser.add_argument("--warmup", type=float, help="seconds excluded from each run's summary")
    parser.add_argument("--warmup-runs", type=int, default=1,
                        help="short runs of each side before round 1, not compared: the first runs on a fresh broker "
                             "and topic are the slowest, and would count against whichever side went first (default 1)")
    parser.add_argument("--check", action="append", metavar="CHECK", nargs="?", const=",".join(DEFAULT_CHECKS),
                        help="exit 1 when B is worse than A beyond it: METRIC:+N%% as in bench regress (B worse in "
                             f"every round and the mean change beyond N%%; needs --rounds {MIN_CHECK_ROUNDS} or more), "
                             "or an absolute limit every B round must meet (service_time_p99<50ms); "
                             "--check alone: bench regress's default set, " + " ".join(DEFAULT_CHECKS).replace("%", "%%"))
    parser.add_argument("--a-tree", type=Path, metavar="DIR",
                        help="run side A from another checkout of this harness (e.g. the previous revision, "
                             "`git worktree add DIR HEAD~1`): every run of both sides is then a `bench run` child "
                             "process, A's from DIR, B's from here; A's scenario file is DIR's own when it has one")
    parser.add_argument("--state-dir", help="state dir of the embedded broker (for a side with broker faults)")
    add_side_broker_arguments(parser)
    add_broker_arguments(parser)
    add_results_argument(parser)


def _set_texts(args: argparse.Namespace, own: list[str]) -> list[str]:
    """A side's overrides as `--set` texts (also what a child `bench run` is given)."""
    shortcuts = [f"{field}={getattr(args, flag)}" for flag, field in _SHORTCUTS.items() if getattr(args, flag) is not None]
    return [*args.overrides, *own, *shortcuts]


def _side_scenario(file: str, texts: list[str]) -> Scenario:
    return Scenario.from_toml(file, dict(parse_set_option(text) for text in texts))


@dataclasses.dataclass
class _Side:
    scenario: Scenario
    file: str
    texts: list[str]     # its --set overrides, topic included
    tree: Path | None    # run as a `bench run` child process from this checkout (None: in this process)

    def warm_up(self) -> _Side:
        """This side for a short run before the rounds: its warm-up and 3 s more (the whole run
        when it has faults, which are scheduled within it)."""
        if self.scenario.faults:
            return self
        duration = min(self.scenario.duration_s, self.scenario.warmup_s + 3)
        return dataclasses.replace(self, scenario=dataclasses.replace(self.scenario, duration_s=duration),
                                   texts=[*self.texts, f"duration_s={duration:g}"])

    def run(self, bootstrap_servers: str, state_dir: str | None, folder: Path) -> tuple[int, Path, dict[str, Any]]:
        if self.tree is None:
            return run_scenario(self.scenario, bootstrap_servers, folder, "external", out=io.StringIO(),
                                broker_state_dir=state_dir)
        return _child_run(self, bootstrap_servers, folder)


def _child_run(side: _Side, bootstrap_servers: str, folder: Path) -> tuple[int, Path, dict[str, Any]]:
    """One `bench run` as a child process of side.tree's code (its checkout first on the path),
    its run folder in `folder`. Ctrl+C reaches the child too (same process group): it writes its
    result marked interrupted and exits 130."""
    before = set(folder.iterdir())
    own_file = side.tree / side.file
    command = [sys.executable, "-m", "bench", "run", str(own_file if own_file.is_file() else Path(side.file).resolve()),
               *(f"--set={text}" for text in side.texts), "--bootstrap-servers", bootstrap_servers,
               "--broker", "external", "--results-dir", str(folder.resolve()), "--no-report"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(side.tree.resolve()),
                                                                              os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(command, cwd=side.tree, env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    while True:
        try:
            output, _ = child.communicate()
            break
        except KeyboardInterrupt:
            continue  # the child got the same SIGINT: let it write its interrupted result
    created = [path for path in set(folder.iterdir()) - before if (path / RESULT_FILE_NAME).is_file()]
    if len(created) != 1:
        last = output.strip().splitlines()[-1:] or ["no output"]
        raise RunFailed(f"bench run from {side.tree} wrote no run folder (exit code {child.returncode}): {last[0]}")
    return child.returncode, created[0], load_result(created[0])


def side_labels(a: Scenario, b: Scenario) -> tuple[str, str]:
    """Each side named by what differs between them ("acks=all" / "acks=1"), else its name."""
    da, db = a.to_dict(), b.to_dict()
    keys = [key for key in da if key not in ("topic",) and da.get(key) != db.get(key)]
    if not keys:
        return "A", "B"
    if "name" in keys and len(keys) > 3:
        return a.name, b.name
    keys = [key for key in keys if key != "name"] or keys

    def show(values: dict[str, Any]) -> str:
        return ", ".join(f"{key}={values.get(key)}" for key in keys)

    return show(da), show(db)


def _checks(args: argparse.Namespace) -> tuple[list[Check], list[Limit]]:
    if args.check is None:
        return [], []
    parsed = parse_checks(args.check)
    for line in deprecation_lines(parsed):
        print(f"warning: {line}")
    checks = [c for c in parsed if isinstance(c, Check)]
    if checks and args.rounds < MIN_CHECK_ROUNDS:
        raise UsageError(f"--check METRIC:+N% needs --rounds {MIN_CHECK_ROUNDS} or more (with fewer, two identical "
                         f"sides separate by chance too often: 1 in {1 / separation_chance(args.rounds, args.rounds):g})")
    return checks, [c for c in parsed if isinstance(c, Limit)]


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {args.rounds}")
    if args.warmup_runs < 0:
        raise UsageError(f"--warmup-runs must be 0 or more, got {args.warmup_runs}")
    checks, limits = _checks(args)
    if args.a_tree is not None and not (args.a_tree / "bench" / "__main__.py").is_file():
        raise UsageError(f"--a-tree {args.a_tree}: not a checkout of this harness (no bench/__main__.py)")
    brokers = side_brokers(args)
    files = {"a": args.scenario_a, "b": args.scenario_b or args.scenario_a}
    texts = {"a": _set_texts(args, args.a_overrides), "b": _set_texts(args, args.b_overrides)}
    a, b = _side_scenario(files["a"], texts["a"]), _side_scenario(files["b"], texts["b"])
    if a.topic == b.topic:  # each side its own topic: the sides may differ in topic settings
        texts["a"].append(f"topic={a.topic}-a")
        texts["b"].append(f"topic={b.topic}-b")
        a, b = dataclasses.replace(a, topic=f"{a.topic}-a"), dataclasses.replace(b, topic=f"{b.topic}-b")
    labels = side_labels(a, b)
    if brokers is not None:
        labels = broker_labels(labels, brokers)
    if args.a_tree is not None and labels == ("A", "B"):
        labels = (f"{a.name} from {args.a_tree}", f"{b.name} from here")
    trees = {"a": args.a_tree, "b": Path.cwd() if args.a_tree is not None else None}
    sides = {side: _Side(scenario, files[side], texts[side], trees[side]) for side, scenario in (("a", a), ("b", b))}
    folder = run_folder(args.results_dir, f"ab-{a.name}-vs-{b.name}", time.time())
    started = time.time()
    sides_text = f"A = B = {a.name}" if labels == ("A", "B") else f"A = {labels[0]}, B = {labels[1]}"
    print(f"ab: {sides_text}; {args.rounds} round(s) of {a.duration_s:g} s + {b.duration_s:g} s runs, "
          f"order A B then B A; run folders in {folder}", flush=True)
    if labels == ("A", "B"):
        print("ab: the two sides are the same scenario: the rounds measure the noise of this set-up", flush=True)
    rounds: list[dict[str, Any]] = []
    warm_ups: list[dict[str, Any]] = []
    status, failure = "complete", None
    try:
        with _set_ups(args, a, brokers, folder) as set_ups:
            for _ in range(args.warmup_runs):
                for side in "ab":
                    _, run_dir, result = sides[side].warm_up().run(*set_ups[side], folder)
                    warm_ups.append({"side": side, "folder": run_dir.name, "status": result["status"]})
                    print(f"warm-up {side.upper()}: {round_line(result)}  ({run_dir.name}, not compared)", flush=True)
                    if result["status"] == "interrupted":
                        raise KeyboardInterrupt
            for number in range(1, args.rounds + 1):
                entry: dict[str, Any] = {"round": number, "order": "ab" if number % 2 else "ba", "a": None, "b": None}
                rounds.append(entry)
                for side in entry["order"]:
                    print(f"round {number}/{args.rounds} {side.upper()}: running ({sides[side].scenario.duration_s:g} s)",
                          flush=True)
                    code, run_dir, result = sides[side].run(*set_ups[side], folder)
                    entry[side], entry[f"{side}_folder"] = result, run_dir.name
                    print(f"round {number}/{args.rounds} {side.upper()}: {round_line(result)}  ({run_dir.name})",
                          flush=True)
                    if code != EXIT_OK:
                        status = "interrupted" if result["status"] == "interrupted" else "failed"
                        failure = f"round {number} {side.upper()}: {result.get('failure') or result['status']}"
                        break
                if status != "complete":
                    break
    except KeyboardInterrupt:
        status, failure = "interrupted", f"interrupted in round {len(rounds)}"
    except RunFailed as error:
        status, failure = "failed", f"round {len(rounds)}: {error}"
    except UsageError as error:
        if not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)  # nothing measured: leave no empty ab folder behind
            raise
        status, failure = "failed", f"round {len(rounds)}: {error}"  # keep what was measured
    return _finish(args, folder, labels, sides, rounds, warm_ups, checks, limits, started, status, failure, brokers)


@contextlib.contextmanager
def _set_ups(args: argparse.Namespace, a: Scenario, brokers: dict[str, SideBroker] | None, folder: Path):
    """{side: (bootstrap servers, embedded broker state dir)}: one broker for both sides, or each
    side's own when they differ in the broker."""
    announce = lambda line: print(line, flush=True)  # noqa: E731
    if brokers is None:
        with ensure_broker(args.bootstrap_servers, args.broker, keep=args.keep_broker, state_dir=args.state_dir,
                           client_settings=a.producer_config, announce=announce) as broker:
            yield {side: (broker.bootstrap_servers, args.state_dir) for side in "ab"}
        return
    with started_side_brokers(brokers, folder.name, announce, keep=args.keep_broker) as started:
        yield {side: (broker.bootstrap_servers, str(broker.state_dir)) for side, broker in started.items()}


def round_line(result: dict[str, Any]) -> str:
    figures = [f"{METRICS[name].label} {format_value(METRICS[name].read(result), METRICS[name].unit)}"
               for name in ("throughput", "service_time_p50", "end_to_end_p50", "end_to_end_p99")
               if METRICS[name].read(result) is not None]
    return f"{result['status']}, " + ", ".join(figures)


def _finish(args, folder: Path, labels, sides, rounds, warm_ups, checks, limits, started: float, status: str,
            failure: str | None, brokers: dict[str, SideBroker] | None = None) -> int:
    pairs = compared_rounds(rounds)
    table = metric_table(pairs, AB_METRICS)
    judged = [judge_rounds(check, table.get(check.metric.name) or _figures_for(check, pairs)) for check in checks]
    limit_outcomes = [outcome for _, b in pairs for outcome in evaluate_limits(limits, b)]
    print_table(labels, table, len(pairs))
    for outcome in judged:
        print(f"check {outcome.check.describe()}: {outcome.reason}")
    for outcome in limit_outcomes:
        if not outcome.met:
            print(f"limit {outcome.describe()} in a B round: NOT MET")
    worse = [o for o in judged if o.failed] + [o for o in limit_outcomes if not o.met]
    document = {
        "kind": "ab", "status": status, "failure": failure, "started_at": utc_iso(started), "ended_at": utc_iso(time.time()),
        "environment": capture_environment(),
        "sides": {side: {"label": label, "scenario": sides[side].scenario.to_dict(),
                         "fingerprint": sides[side].scenario.fingerprint(),
                         "tree": None if sides[side].tree is None else str(sides[side].tree),
                         "broker": None if brokers is None else brokers[side].to_dict()}
                  for side, label in zip("ab", labels)},
        "rounds": [{"round": r["round"], "order": r["order"],
                    **{side: None if r[side] is None else {"folder": r[f"{side}_folder"], "status": r[side]["status"]}
                       for side in "ab"}} for r in rounds],
        "warmup_runs": warm_ups,
        "compared_rounds": len(pairs),
        "metrics": {name: figures_document(figures) for name, figures in table.items()},
        "checks": [{"check": o.check.describe(), "b_worse": o.failed, "reason": o.reason} for o in judged]
        + [{"check": o.limit.describe(), "b_worse": not o.met, "reason": o.describe()} for o in limit_outcomes],
    }
    write_result(folder, document, file_name=AB_FILE_NAME)
    plotted = write_ab_plot(folder, labels, pairs)
    print(f"{status}: {folder / AB_FILE_NAME}{f', {plotted.name}' if plotted else ''} "
          f"({len(pairs)} of {args.rounds} rounds compared)")
    if status == "interrupted":
        return EXIT_INTERRUPTED
    if status == "failed":
        print(f"failed: {failure}")
        return EXIT_RUN_FAILED
    if checks or limits:
        print(f"ab: B is worse beyond {len(worse)} of {len(judged) + len(limit_outcomes)} checks" if worse
              else f"ab: ok, B within all {len(judged) + len(limit_outcomes)} checks")
    return EXIT_REGRESSION if worse else EXIT_OK


def write_ab_plot(folder: Path, labels: tuple[str, str], pairs) -> Path | None:
    """Every compared round's latency percentiles, overlaid (matplotlib only when drawing)."""
    from bench.output.plots.ab import plot_ab_rounds

    return plot_ab_rounds(labels, pairs, folder / AB_PLOT_NAME)


def _figures_for(check: Check, pairs):
    return metric_table(pairs, [check.metric.name]).get(check.metric.name)


def print_table(labels: tuple[str, str], table, compared: int) -> None:
    if not table:
        print("no round in which both sides completed: nothing to compare")
        return
    print(f"A = {labels[0]}, B = {labels[1]}; {compared} round(s), each figure over its run's measured window")
    width = max(len(METRICS[name].label) for name in table)
    print(f"{'metric':<{width}}  {'A rounds':<28}  {'B rounds':<28}  {'A mean ± spread':>20}  {'B mean ± spread':>20}  "
          f"{'B/A (range)':>22}  verdict")
    for name, figures in table.items():
        unit = METRICS[name].unit
        ratio = "-" if figures.ratio is None else \
            f"{figures.ratio.mean:.2f} ({figures.ratio.low:.2f}-{figures.ratio.high:.2f})"
        print(f"{METRICS[name].label:<{width}}  {_each(figures.a, unit):<28}  {_each(figures.b, unit):<28}  "
              f"{_mean(figures.a_spread, unit):>20}  {_mean(figures.b_spread, unit):>20}  {ratio:>22}  {figures.verdict}")


def _each(values, unit: str) -> str:
    return " ".join(format_value(value, unit) for value in values)


def _mean(summary, unit: str) -> str:
    return f"{format_value(summary.mean, unit)} ± {format_value(summary.spread, unit)}"
