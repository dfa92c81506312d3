"""The `python -m bench` root: finds the subcommand modules and maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import bench.commands
from streamstore.errors import EXIT_INTERRUPTED, EXIT_USAGE, StreamStoreError


class _OneLineArgumentParser(argparse.ArgumentParser):
    """argparse prints the whole usage block on a bad flag; we print one line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _command_modules():
    for info in sorted(pkgutil.iter_modules(bench.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"bench.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineArgumentParser(
        prog="python -m bench",
        description="StreamStore Bench: load-test and benchmark Apache Kafka with order traffic.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineArgumentParser)
    subparsers.required = True
    for module in _command_modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except StreamStoreError as error:
        sys.stderr.write(f"error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
