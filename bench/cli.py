"""The `python -m bench` root: finds the subcommand modules and runs the chosen one."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import bench.commands
from streamstore.cli import OneLineArgumentParser, run_command


def _command_modules():
    for info in sorted(pkgutil.iter_modules(bench.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"bench.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m bench",
        description="StreamStore Bench: load-test and benchmark Apache Kafka with order traffic.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    subparsers.required = True
    for module in _command_modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args._run, args)
