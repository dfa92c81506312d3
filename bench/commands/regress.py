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
    MISSING,
    OK,
    differing_environment,
    environment_slug,
    regress,
    weak_comparison,
)
from bench.analysis.thresholds import RELATIVE_METRICS, Check, Limit, deprecation_lines, evaluate_limits, parse_checks
from bench.commands import run as run_command
from bench.commands._options import add_broker_arguments, add_results_argument
from bench.core.scenario import Scenario, parse_set_option
from bench.output.regress_report import regress_summary_blocks
from bench.output.report import bullet_list, to_markdown
from bench.results.formatting import format_change, format_value
from bench.results.store import DEFAULT_RESULTS_ROOT, load_result, result_path, write_result, write_text_atomic
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
    parser.add_argument("--check", action="append", metavar="CHECK",
                        help=f"a gate, repeatable or comma-separated: METRIC:+N%%[:FLOOR] against the baseline "
                             f"(metrics: {', '.join(RELATIVE_METRICS)}) or an absolute limit on the candidate, "
                             f"e.g. service_time_p99<50ms or lost<=0 (the syntax of locust --check; docs/reports.md). "
                             f"Default, chosen from the measured noise of identical reruns (docs/reports.md): "
                             f"{' '.join(DEFAULT_CHECKS)}".replace("%%", "%").replace("%", "%%"))
    parser.add_argument("--any-environment", action="store_true",
                        help="judge a candidate measured on another machine kind, client library or broker than "
                             "the baseline (refused by default: such runs are not comparable)")
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
    code, folder, result = run_scenario(scenario, args.bootstrap_servers, args.results_dir, args.broker)
    run_command.write_report(folder, result)
    print(f"candidate run: {folder} ({'complete' if code == EXIT_OK else f'exit code {code}'})")
    return code, str(folder)


def _baseline_path(args: argparse.Namespace, candidate: dict[str, Any]) -> Path:
    """Where the baseline is (or will be written). A path is taken as given. A name (default: the
    candidate's scenario name) means the baseline in --baselines-dir measured in the candidate's
    environment: `<name>.json` or `<name>.<environment>.json`; when none matches, the path a
    baseline for this environment would be stored at."""
    if args.baseline is not None:
        given = Path(args.baseline)
        if given.exists() or given.suffix == ".json" or "/" in args.baseline:
            return given
    name = args.baseline or candidate["scenario"]["name"]
    default = args.baselines_dir / f"{name}.json"
    stored = [path for path in [default, *sorted(args.baselines_dir.glob(f"{name}.*.json"))] if path.is_file()]
    for path in stored:
        if not differing_environment(load_result(path), candidate):
            return path
    return args.baselines_dir / f"{name}.{environment_slug(candidate)}.json" if stored else default


def run(args: argparse.Namespace) -> int:
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, not {args.alpha}")
    parsed = parse_checks(args.check or DEFAULT_CHECKS)
    for line in deprecation_lines(parsed):
        print(f"warning: {line}")
    checks = [check for check in parsed if isinstance(check, Check)]
    limits = [check for check in parsed if isinstance(check, Limit)]
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
            raise UsageError(f"no baseline at {baseline_path} for this environment ({environment_slug(candidate)}); "
                             "create it from a good run here with --update-baseline")
        _store_baseline(baseline_path, candidate)
        print(f"no baseline yet: stored {args.candidate} as baseline {baseline_path}")
        return EXIT_OK

    baseline = load_result(baseline_path)
    environment = differing_environment(baseline, candidate)
    if environment and args.any_environment:
        print("warning: judging across environments (--any-environment): " + "; ".join(environment))
    verdicts = regress(baseline, candidate, checks, alpha=args.alpha, explicit=args.check is not None,
                       any_environment=args.any_environment)
    regressions = [v for v in verdicts if v.is_regression]
    undecided = [v for v in verdicts if v.outcome in (INCONCLUSIVE, MISSING)]
    limit_outcomes = evaluate_limits(limits, candidate)
    broken = [o for o in limit_outcomes if not o.met]
    if regressions or broken:
        outcome = f"REGRESSION in {len(regressions)} of {len(verdicts)} checks" + (
            f", {len(broken)} of {len(limit_outcomes)} limits not met" if limits else "")
    elif undecided:
        outcome = f"cannot decide {len(undecided)} of {len(verdicts)} checks"
    else:
        outcome = f"ok, {len(verdicts)} checks passed" + (f", {len(limit_outcomes)} limits met" if limits else "")

    print(f"baseline:  {baseline_path}  ({baseline.get('started_at')})")
    print(f"candidate: {args.candidate}  ({candidate.get('started_at')})")
    weaknesses = weak_comparison(baseline, candidate)
    for line in weaknesses:
        print(f"weak comparison: {line}")
    if weaknesses:
        print("weak comparison: whatever differs between the two machines' states counts as the candidate's "
              "change here; bench ab measures the reference in the same job, in alternating rounds")
    for limit_outcome in limit_outcomes:
        print(f"limit {limit_outcome.describe()}  {'met' if limit_outcome.met else 'NOT MET'}")
    width = max((len(v.check.describe()) for v in verdicts), default=5)
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
        if weaknesses:
            blocks.append(bullet_list([f"weak comparison: {line}" for line in weaknesses]))
        write_text_atomic(args.summary, to_markdown(blocks))
    print(f"regress: {outcome}")

    if regressions or broken:
        if args.update_baseline:
            print(f"baseline {baseline_path} not updated: the gate failed")
        return EXIT_REGRESSION
    if undecided:
        if args.update_baseline:
            print(f"baseline {baseline_path} not updated: the gate could not decide")
        # The reasons are printed above, one per check.
        raise UsageError(f"regress cannot decide {len(undecided)} of {len(verdicts)} checks (reasons above)")
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
