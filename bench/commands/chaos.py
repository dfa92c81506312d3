"""`python -m bench chaos SCENARIO --fault kill:leader@20+10`: a measured run while the embedded
broker, or a node of the embedded cluster chosen by role or id, is killed, stopped, paused,
isolated or delayed on a schedule; the result marks the faults and measures the failover."""

from __future__ import annotations

import argparse
import dataclasses

from bench.analysis.failover import fault_target
from bench.broker.faults import fault_summary, parse_fault, schedule_warnings
from bench.commands import run as run_command
from bench.core.runner import run_scenario
from bench.core.scenario import Scenario
from bench.results.formatting import format_us
from bench.results.metrics import METRICS
from streamstore.errors import UsageError

NAME = "chaos"
HELP = "run a scenario while broker nodes are killed, stopped, paused, isolated or delayed on a schedule"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run_command.add_arguments(parser)
    parser.add_argument("--fault", dest="faults", action="append", default=[], metavar="KIND[:TARGET][=DELAYms]@AT[+FOR]",
                        help="kill@20+5: SIGKILL the broker 20 s into the run, start it again 5 s later; "
                             "pause@40+5: SIGSTOP it for 5 s; on a cluster kill:leader@20+10, pause:follower@20+5, "
                             "kill:controller@20+10, stop:node2@20+10, rolling-restart@20, isolate:leader@20+5, "
                             "delay:node1=200ms@20+10; on any broker slow-consumer=20ms@10+15: the run's consumer "
                             "sleeps 20 ms after each batch it reads from 10 s to 25 s (repeatable, must not overlap "
                             "on one target; added to the scenario's faults; docs/faults.md)")
    parser.add_argument("--state-dir", help="state dir of the embedded broker or cluster to fault (default: the one "
                                            "under .state/ that answers at --bootstrap-servers)")


def scenario_with_faults(args: argparse.Namespace) -> Scenario:
    """The scenario from its file and flags, with the --fault schedule added to its own faults."""
    scenario = run_command.scenario_from_args(args)
    for text in args.faults:
        parse_fault(text)  # one line naming the bad --fault before anything else
    scenario = dataclasses.replace(scenario, faults=(*scenario.faults, *args.faults))
    if not scenario.faults:
        raise UsageError("--fault: give at least one fault, e.g. --fault kill@20+5 (without faults use `bench run`)")
    return scenario


def run(args: argparse.Namespace) -> int:
    scenario = scenario_with_faults(args)
    faults = [parse_fault(text) for text in scenario.faults]
    for warning in schedule_warnings(faults, scenario.duration_s):
        print(f"warning: {warning}", flush=True)
    code, folder, result = run_scenario(scenario, args.bootstrap_servers, args.results_dir, args.broker,
                                        args.keep_broker, broker_state_dir=args.state_dir,
                                        broker_metrics_url=args.broker_metrics_url)
    if not args.no_report:
        run_command.write_report(folder, result)
    print(run_command.summary_text(result, folder))
    for event in result["events"]:
        if event["kind"].startswith(("broker-", "fault-", "consumer-")):
            print(f"fault event at {event['t_s']:7.3f} s: {event['kind']} ({event['detail']})")
    summary = {name: "not measured" if value is None else f"{value:,}" for name, value in fault_summary(result).items()}
    print(f"faults: lost acknowledged orders {summary['lost']}, failed deliveries {summary['failed']}, "
          f"duplicates {summary['duplicated']}")
    for line in failover_lines(result.get("failover")):
        print(line)
    return code


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def failover_lines(failover) -> list[str]:
    """One line per fault: node and role, unavailability, new leader, p99.9 during vs before; for
    a slow consumer, the gap without a consumed message and end-to-end latency during vs before."""
    lines = []
    for fault in (failover or {}).get("faults", []):
        head = f"failover {fault['fault']} on {fault_target(fault)} at {fault['start_s']:.3f} s: "
        if fault["node_id"] is None:
            latency = fault["latency_us"].get("end_to_end", {})
            during, before = latency.get("during", {}), latency.get("before", {})
            lines.append(head + f"longest gap without a consumed message {_ms(fault['longest_consume_gap_ms'])}, "
                         f"{METRICS['end_to_end_p50'].label} {format_us(during.get('p50'))} during vs "
                         f"{format_us(before.get('p50'))} before, {METRICS['end_to_end_p99'].label} "
                         f"{format_us(during.get('p99'))} vs {format_us(before.get('p99'))}")
            continue
        latency = fault["latency_us"].get("service_time", {})
        during, before = latency.get("during", {}), latency.get("before", {})
        lines.append(
            head + f"longest gap without an ack {_ms(fault['longest_ack_gap_ms'])}, without a consumed message "
            f"{_ms(fault['longest_consume_gap_ms'])}, new leader in metadata after {_ms(fault['new_leader_ms'])}, "
            f"{METRICS['service_time_p99_9'].label} {format_us(during.get('p99_9'))} during vs {format_us(before.get('p99_9'))} before")
    return lines
