"""`python -m bench report RUN_DIR [RUN_DIR ...]`: redraw plots and reports from result.json alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.output.capacity_report import write_capacity_report
from bench.output.report import write_run_report
from bench.results.store import CAPACITY_FILE_NAME, RESULT_FILE_NAME
from streamstore.errors import UsageError

NAME = "report"
HELP = "regenerate the plots, report.md and report.html of run folders from their result.json (no broker needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="a results/<time>-<scenario> folder (or a capacity search's)")


def run(args: argparse.Namespace) -> int:
    for folder in args.run_dirs:
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a run folder (expected a folder holding {RESULT_FILE_NAME})")
    for folder in args.run_dirs:
        capacity = not (folder / RESULT_FILE_NAME).exists() and (folder / CAPACITY_FILE_NAME).exists()
        written = write_capacity_report(folder) if capacity else write_run_report(folder)
        print(f"{folder}: {', '.join(path.name for path in written)}")
    return 0
