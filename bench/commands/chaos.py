"""`python -m bench chaos SCENARIO --fault kill@20+5`: a measured run while the embedded broker
is killed and restarted, or paused, on a schedule; the result marks the faults."""

from __future__ import annotations

import argparse

from bench.broker.faults import check_schedule, fault_summary, parse_fault, schedule_warnings
from bench.commands import run as run_command
from bench.core.runner import run_scenario
from streamstore.errors import UsageError

NAME = "chaos"
HELP = "run a scenario while the embedded broker is killed/restarted or paused on a schedule"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run_command.add_arguments(parser)
    parser.add_argument("--fault", dest="faults", action="append", default=[], metavar="KIND@AT+FOR",
                        help="kill@20+5: SIGKILL the broker 20 s into the run, start it again 5 s later; "
                             "pause@40+5: SIGSTOP it for 5 s (repeatable, must not overlap)")
    parser.add_argument("--state-dir", help="state dir of the embedded broker to fault, when not the default "
                                            "(.state/broker-PORT) that `python -m bench broker start` uses")


def run(args: argparse.Namespace) -> int:
    faults = [parse_fault(text) for text in args.faults]
    if not faults:
        raise UsageError("--fault: give at least one fault, e.g. --fault kill@20+5 (without faults use `bench run`)")
    scenario = run_command.scenario_from_args(args)
    check_schedule(faults, scenario.duration_s)
    for warning in schedule_warnings(faults, scenario.duration_s):
        print(f"warning: {warning}", flush=True)
    code, folder, result = run_scenario(scenario, args.bootstrap_servers, args.results_dir, args.broker,
                                        args.keep_broker, write_report=not args.no_report, faults=faults,
                                        broker_state_dir=args.state_dir)
    print(run_command.summary_text(result, folder))
    for event in result["events"]:
        if event["kind"].startswith(("broker-", "fault-")):
            print(f"fault event at {event['t_s']:7.3f} s: {event['kind']} ({event['detail']})")
    summary = fault_summary(result)
    print(f"faults: lost acknowledged orders {summary['lost']:,}, failed deliveries {summary['failed']:,}, "
          f"duplicates {summary['duplicated']:,}, longest stall {summary['longest_stall_s']} s without an ack")
    return code
