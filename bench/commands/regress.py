"""`python -m bench regress --baseline ... --candidate RUN`: the pass/fail gate for CI.

Every check is evaluated and printed, then the exit code: 0 ok, 1 regression, 2 usage or
configuration error (not comparable, too few samples to decide), 3 the candidate run failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.analysis.compare import (
    DEFAULT_ALPHA,
    DEFAULT_CHECKS,
    INCONCLUSIVE,
    METRICS,
    MISSING,
    OK,
    parse_check,
    regress,
)
from bench.commands._options import add_broker_arguments, add_results_argument
from bench.core.scenario import Scenario, parse_set_option
from bench.output.report import regress_summary_blocks, to_markdown
from bench.output.results import (
    DEFAULT_RESULTS_ROOT,
    format_change,
    format_value,
    load_result,
    result_path,
    write_result,
    write_text_atomic,
)
from streamstore.errors import EXIT_OK, EXIT_REGRESSION, RunFailed, UsageError

NAME = "regress"
HELP = "gate a candidate run against a baseline: exit 1 on a significant regression beyond the thresholds"

DEFAULT_BASELINES_DIR = DEFAULT_RESULTS_ROOT / "baselines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", metavar="RUN_OR_BASELINE",
                        help="a run folder, a baseline .json, or a scenario name in --baselines-dir "
                             "(default: the candidate's scenario name)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--candidate", metavar="RUN", help="the run folder (or result .json) to judge")
    source.add_argument("--scenario", metavar="FILE", help="run this scenario now (like bench run) and judge that run")
    parser.add_argument("--check", action="append", metavar="METRIC:+N%[:FLOOR]",
                        help=f"a gate, repeatable (default: {' '.join(DEFAULT_CHECKS)}); "
                             f"metrics: {', '.join(METRICS)}".replace("%", "%%"))
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="significance level of the Mann-Whitney U test (default %(default)s)")
    parser.add_argument("--summary", type=Path, metavar="FILE", help="also write the verdict as markdown (CI job summary)")
    parser.add_argument("--update-baseline", action="store_true",
                        help="when the gate passes (or no baseline exists yet), store the candidate as the baseline")
    parser.add_argument("--baselines-dir", type=Path, default=DEFAULT_BASELINES_DIR,
                        help="where named baselines live (default %(default)s)")
    running = parser.add_argument_group("with --scenario")
    running.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a scenario field (repeatable)")
    add_broker_arguments(running, keep=False)
    add_results_argument(running)


def _run_candidate(args: argparse.Namespace) -> tuple[int, str]:
    """Run --scenario now; returns the run's exit code and its folder."""
    from bench.core.runner import run_scenario  # only this path needs Kafka clients

    scenario = Scenario.from_toml(args.scenario, dict(parse_set_option(text) for text in args.overrides))
    code, folder, _ = run_scenario(scenario, args.bootstrap_servers, args.results_dir, args.broker)
    print(f"candidate run: {folder} ({'complete' if code == EXIT_OK else f'exit code {code}'})")
    return code, str(folder)


def _baseline_path(args: argparse.Namespace, candidate: dict[str, Any]) -> Path:
    """Where the baseline is (or will be written): a path as given, else <baselines-dir>/<name>.json."""
    if args.baseline is None:
        return args.baselines_dir / f"{candidate['scenario']['name']}.json"
    given = Path(args.baseline)
    if given.exists() or given.suffix == ".json" or "/" in args.baseline:
        return given
    return args.baselines_dir / f"{args.baseline}.json"


def run(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, not {args.alpha}")
    checks = [parse_check(text) for text in (args.check or DEFAULT_CHECKS)]
    if args.overrides and not args.scenario:
        raise UsageError("--set needs --scenario (a finished run cannot be changed)")
    if args.scenario:
        code, args.candidate = _run_candidate(args)
        if code != EXIT_OK:
            return code
    candidate = load_result(args.candidate)
    if candidate.get("status") != "complete":
        raise RunFailed(f"candidate {args.candidate} did not complete (status {candidate.get('status')}: "
                        f"{candidate.get('failure') or 'no reason recorded'})")
    baseline_path = _baseline_path(args, candidate)

    if not result_path(baseline_path).exists():
        if not args.update_baseline:
            raise UsageError(f"no baseline at {baseline_path} (create it from a good run with --update-baseline)")
        _store_baseline(baseline_path, candidate)
        print(f"no baseline yet: stored {args.candidate} as baseline {baseline_path}")
        return EXIT_OK

    baseline = load_result(baseline_path)
    verdicts = regress(baseline, candidate, checks, alpha=args.alpha, explicit=args.check is not None)
    regressions = [v for v in verdicts if v.is_regression]
    undecided = [v for v in verdicts if v.outcome in (INCONCLUSIVE, MISSING)]
    if regressions:
        outcome = f"REGRESSION in {len(regressions)} of {len(verdicts)} checks"
    elif undecided:
        outcome = f"cannot decide {len(undecided)} of {len(verdicts)} checks"
    else:
        outcome = f"ok, {len(verdicts)} checks passed"

    print(f"baseline:  {baseline_path}  ({baseline.get('started_at')})")
    print(f"candidate: {args.candidate}  ({candidate.get('started_at')})")
    width = max(len(v.check.describe()) for v in verdicts)
    print(f"{'check':<{width}}  {'baseline':>12}  {'candidate':>12}  {'change':>8}  {'p':>8}  verdict")
    for v in verdicts:
        unit = v.check.metric.unit
        p_value = "-" if v.p_value is None else f"{v.p_value:.2g}"
        print(f"{v.check.describe():<{width}}  {format_value(v.baseline, unit):>12}  {format_value(v.candidate, unit):>12}  "
              f"{format_change(v.change):>8}  {p_value:>8}  {v.outcome.upper() if v.is_regression else v.outcome}")
    for v in verdicts:
        if v.outcome != OK:
            print(f"  {v.check.metric.name}: {v.reason}")
    if args.summary:
        blocks = regress_summary_blocks(str(baseline_path), str(args.candidate), verdicts, args.alpha, outcome)
        write_text_atomic(args.summary, to_markdown(blocks))
    print(f"regress: {outcome}")

    if regressions:
        return EXIT_REGRESSION
    if undecided:
        raise UsageError("regress cannot decide: " + "; ".join(f"{v.check.metric.name}: {v.reason}" for v in undecided))
    if args.update_baseline:
        _store_baseline(baseline_path, candidate)
        print(f"baseline {baseline_path} updated from {args.candidate}")
    return EXIT_OK


def _store_baseline(path: Path, candidate: dict[str, Any]) -> None:
    if path.is_dir():
        raise UsageError(f"--update-baseline writes a baseline .json file; {path} is a run folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {path.parent}: {error.strerror or error}") from None
    write_result(path.parent, candidate, file_name=path.name)
