"""What every command of the project shares: one-line errors and exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from streamstore.config import default_bootstrap_servers
from streamstore.errors import EXIT_INTERRUPTED, EXIT_USAGE, StreamStoreError


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse prints a whole usage block on a bad flag; we print one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def add_bootstrap_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        default=default_bootstrap_servers(),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092)",
    )


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command, turning expected failures into one line on stderr and an exit code."""
    try:
        return command(args)
    except StreamStoreError as error:
        sys.stderr.write(f"error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
