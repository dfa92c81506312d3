"""The `python -m bench` root: finds the subcommand modules and runs the chosen one.

A command named `x-y` lives in `bench/commands/x_y.py`. Only the chosen command's module is
imported (the others and what they import cost every start about 0.3 s of CPU); `--help` and a
mistyped command import them all, to list them.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import bench.commands
from streamstore.cli import OneLineArgumentParser, run_command


def command_module_names() -> dict[str, str]:
    """Command name -> its module's name, found without importing the modules."""
    names = sorted(info.name for info in pkgutil.iter_modules(bench.commands.__path__) if not info.name.startswith("_"))
    return {name.replace("_", "-"): name for name in names}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with `only` the root and that one command."""
    parser = OneLineArgumentParser(
        prog="python -m bench",
        description="StreamStore Bench: load-test and benchmark Apache Kafka with order traffic.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineArgumentParser)
    subparsers.required = True
    for command, module_name in command_module_names().items():
        if only is not None and command != only:
            continue
        module = importlib.import_module(f"bench.commands.{module_name}")
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in command_module_names() else None
    args = build_parser(only=chosen).parse_args(argv)
    return run_command(args._run, args)
