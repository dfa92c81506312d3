"""`python -m bench failover-table SCENARIO --bootstrap-servers ...`: the same
scenario under each fault, with acks=all (idempotent, min.insync.replicas 2) and acks=1, one run
folder each, and a markdown table of lost, duplicated, the longest unavailability and p99.9
service time during vs before each fault (docs/failover.md).

The table cannot mislead: each row shows when its faults actually happened and when the node was
back (a target is resolved and a node restarted on a busy machine, so times drift from the
schedule), a run too short to see the cluster settle is marked, every "n/a" is numbered and
explained under the table, and each column has one unit (in its header). One progress line per
row; `--verbose` prints each run's per-second lines as `bench run` does."""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import uuid

from bench.analysis.failover import Notes, markdown_table, table_row
from bench.broker.faults import parse_fault, schedule_warnings
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
    parser.add_argument("--verbose", action="store_true",
                        help="print each run's per-second progress and summary (default: one line per row)")


class _Captured(io.StringIO):
    """What a run prints, kept instead of shown (one line per row is shown); its last lines are
    printed when the run did not complete, so the reason is not lost."""

    def isatty(self) -> bool:
        return False


def run(args: argparse.Namespace) -> int:
    base = run_command.scenario_from_args(args)
    rows: list[list[str]] = []
    notes = Notes()
    faults = args.faults or DEFAULT_FAULTS
    acks_settings = args.acks or tuple(ACKS_SETTINGS)
    plan = [(fault, acks) for fault in faults for acks in acks_settings]
    for fault in faults:
        duration_s = base.duration_s + (ROLLING_RESTART_EXTRA_S if fault.startswith("rolling-restart") else 0.0)
        for warning in schedule_warnings([parse_fault(fault)], duration_s):
            print(f"warning: {warning}", flush=True)
    # Fresh topics: a topic left by an earlier table has other settings and would be refused.
    suffix = uuid.uuid4().hex[:6]
    for index, (fault, acks) in enumerate(plan):
        extra_s = ROLLING_RESTART_EXTRA_S if fault.startswith("rolling-restart") else 0.0
        scenario = dataclasses.replace(base, name=f"{base.name}-failover", faults=(fault,),
                                       duration_s=base.duration_s + extra_s,
                                       topic=f"{base.topic}-failover-{suffix}-{len(rows)}", replication_factor=3,
                                       **ACKS_SETTINGS[acks])
        head = f"[{index + 1}/{len(plan)}] {fault} with acks={acks}, {scenario.duration_s:g} s:"
        print(head if args.verbose else head + " ", end="\n" if args.verbose else "", flush=True)
        out = sys.stdout if args.verbose else _Captured()
        _, folder, result = run_scenario(scenario, args.bootstrap_servers, args.results_dir, args.broker,
                                         args.keep_broker, out=out, broker_state_dir=args.state_dir)
        if not args.no_report:
            run_command.write_report(folder, result)
        counts = result["counts"]
        print(f"{result['status']}, lost {counts['lost']}, duplicated {counts['duplicated']}: {folder}", flush=True)
        if isinstance(out, _Captured) and result["status"] != "complete":
            print("".join(f"   {line}\n" for line in out.getvalue().splitlines()[-5:]), end="", flush=True)
        rows.append(table_row(result, notes))
        if result["status"] == "interrupted":
            # Ctrl+C or SIGTERM ends the table, with the rows measured so far.
            print(markdown_table(rows, notes))
            return EXIT_INTERRUPTED
    # A run that lost orders is a finding of the table, not a failure of the command.
    print(markdown_table(rows, notes))
    return EXIT_OK
