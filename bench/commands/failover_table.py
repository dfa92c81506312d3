"""`python -m bench failover-table SCENARIO --bootstrap-servers ...`: the same
scenario under each fault, with acks=all (idempotent, min.insync.replicas 2) and acks=1, one run
folder each, and a markdown table of lost, duplicated, the longest unavailability and p99.9
service time during vs before each fault (docs/failover.md)."""

from __future__ import annotations

import argparse
import dataclasses
import uuid

from bench.analysis.failover import markdown_table, table_row
from bench.commands import run as run_command
from bench.core.runner import run_scenario
from streamstore.errors import EXIT_INTERRUPTED, EXIT_OK

NAME = "failover-table"
HELP = "run a scenario under each fault with acks=all and acks=1 on the embedded cluster; print the failover table"

DEFAULT_FAULTS = ("kill:leader@15+10", "kill:follower@15+10", "kill:controller@15+10", "pause:leader@15+10",
                  "rolling-restart@10")
# The settings each row compares: durable (idempotent, a write needs 2 in-sync copies) and fast.
ACKS_SETTINGS = {"all": {"acks": "all", "idempotence": True, "min_insync_replicas": 2},
                 "1": {"acks": "1", "idempotence": False, "min_insync_replicas": None}}
# A rolling restart of 3 nodes took about a minute here: its runs are this much longer.
ROLLING_RESTART_EXTRA_S = 45.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    run_command.add_arguments(parser)
    parser.add_argument("--state-dir", help="state dir of the embedded cluster (default: the one under .state/ that "
                                            "answers at --bootstrap-servers, e.g. from bench broker start --nodes 3)")
    parser.add_argument("--fault", dest="faults", action="append", default=[], metavar="FAULT",
                        help=f"faults to tabulate, one run each (default: {' '.join(DEFAULT_FAULTS)})")
    parser.add_argument("--acks", dest="acks", action="append", choices=tuple(ACKS_SETTINGS), default=[],
                        help="acks settings to compare (default: all and 1)")


def run(args: argparse.Namespace) -> int:
    base = run_command.scenario_from_args(args)
    rows = []
    # Fresh topics: a topic left by an earlier table has other settings and would be refused.
    suffix = uuid.uuid4().hex[:6]
    for fault in args.faults or DEFAULT_FAULTS:
        for acks in args.acks or tuple(ACKS_SETTINGS):
            extra_s = ROLLING_RESTART_EXTRA_S if fault.startswith("rolling-restart") else 0.0
            scenario = dataclasses.replace(base, name=f"{base.name}-failover", faults=(fault,),
                                           duration_s=base.duration_s + extra_s,
                                           topic=f"{base.topic}-failover-{suffix}-{len(rows)}", replication_factor=3,
                                           **ACKS_SETTINGS[acks])
            print(f"== {fault} with acks={acks}", flush=True)
            _, folder, result = run_scenario(scenario, args.bootstrap_servers, args.results_dir, args.broker,
                                             args.keep_broker, broker_state_dir=args.state_dir)
            if not args.no_report:
                run_command.write_report(folder, result)
            print(f"   {result['status']}: {folder}", flush=True)
            rows.append(table_row(result))
            if result["status"] == "interrupted":
                # Ctrl+C or SIGTERM ends the table, with the rows measured so far.
                print(markdown_table(rows))
                return EXIT_INTERRUPTED
    # A run that lost orders is a finding of the table, not a failure of the command.
    print(markdown_table(rows))
    return EXIT_OK
