"""Flags that several subcommands share, so they read the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.broker.ensure import BROKER_MODES
from bench.output.results import DEFAULT_RESULTS_ROOT
from streamstore.cli import add_bootstrap_argument


def add_broker_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, keep: bool = True) -> None:
    add_bootstrap_argument(parser)
    parser.add_argument("--broker", choices=BROKER_MODES, default="auto",
                        help="auto: use what answers, else start the embedded broker (default); "
                             "external: must answer; embedded: the embedded broker")
    if keep:
        parser.add_argument("--keep-broker", action="store_true",
                            help="leave an embedded broker this command started running")


def add_results_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    # --results is the older spelling, kept so existing scripts go on working.
    parser.add_argument("--results-dir", "--results", dest="results_dir", type=Path, default=DEFAULT_RESULTS_ROOT,
                        help="folder for run folders (default: results)")
