"""The ```console blocks of README.md and docs/*.md: parsed, checked against the CLI, normalised.

A block is a run of `$ command` lines (a trailing `\\` continues a command on the next line),
each followed by the output the command printed. An HTML comment on the line before a block
says how it is made:

    <!-- console: broker keep="^(complete|counts):" -->

Marks (any number, separated by spaces):
  (none)    fast and deterministic, no broker: `make docs` re-runs it, and the test suite
            re-runs it and compares its output exactly (after the normalisations below).
  broker    needs a broker: `make docs` starts the embedded one on a port of its own
            (`DOCS_PORT`) for the block; the test only checks that its commands parse.
  slow      takes more than a few seconds (a timeout, many processes): `make docs` runs it,
            the test only checks that its commands parse.
  long      a long run, a cluster or large messages: only `make docs ALL=1` runs it.
  manual    `make docs` never runs it (Ctrl+C, a SASL broker, a JVM peer ...): the words after
            `manual` say why. Its output stays as pasted; the test checks that its commands parse.
  keep=RE   only output lines matching the regular expression RE are written (and compared);
            each run of left-out lines becomes one `...` line.

Output is written as it was printed, except (rewrites, applied by `make docs` and the test):
the scratch working directory reads `/tmp/docs`, and the docs broker's port (and its
controller port, +1) read 9092 (and 9093), the ports the commands use by default. A port a
command names can be moved the same way (`make docs DOCS_ARGS="--map-port 19092=29910"`: the
command runs on 29910 and 19092 is written), for a machine where the written port is taken.
Comparison (the test) also maps what differs between two identical runs to placeholders
(`normalise`): run-folder stamps, timestamps, pids, Locust host and worker names, and the
durations after "in"/"after"/"within".
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH_SHOWN = "/tmp/docs"
SHOWN_PORT = 9092
MARKS = {"broker", "slow", "long", "manual"}
_MARK = re.compile(r"^<!--\s*console:(.*?)-->\s*$")


@dataclass
class Command:
    lines: list[str]                      # as written, without the leading "$ "
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The shell command: continuation lines joined."""
        return " ".join(line.rstrip("\\").strip() for line in self.lines)


@dataclass
class Block:
    path: Path
    first: int                            # index of the ```console line
    last: int                             # index of the closing ``` line
    marks: set[str]
    keep: str | None
    commands: list[Command]
    indent: str = ""                      # a block inside a list item is indented

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.first + 1}"

    @property
    def fast(self) -> bool:
        return not (self.marks & MARKS)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _marks(comment: str) -> tuple[set[str], str | None]:
    if comment.strip().startswith("manual"):
        return {"manual"}, None  # the rest is the reason
    marks, keep = set(), None
    for word in shlex.split(comment):
        if word.startswith("keep="):
            keep = word[5:]
        elif word in MARKS:
            marks.add(word)
        else:
            raise ValueError(f"unknown console mark {word!r} (known: {', '.join(sorted(MARKS))}, keep=RE)")
    return marks, keep


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        if lines[index].strip() != "```console":
            index += 1
            continue
        indent = lines[index][:len(lines[index]) - len(lines[index].lstrip())]
        mark = _MARK.match(lines[index - 1].strip()) if index else None
        marks, keep = _marks(mark[1]) if mark else (set(), None)
        first, commands, index = index, [], index + 1
        while lines[index].strip() != "```":
            line = lines[index].removeprefix(indent)
            if line.startswith("$ "):
                commands.append(Command([line[2:]]))
                while commands[-1].lines[-1].endswith("\\"):
                    index += 1
                    commands[-1].lines.append(lines[index].removeprefix(indent))
            elif commands:
                commands[-1].output.append(line)
            index += 1
        found.append(Block(path, first, index, marks, keep, commands, indent))
        index += 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks(path)]


# -- what a command is, without running it ---------------------------------------------------

def _parsers():
    from bench.cli import build_parser
    from streamstore import producer, tracker
    from streamstore.cli import OneLineArgumentParser

    def streamstore(module, prog):
        parser = OneLineArgumentParser(prog=prog)
        module.add_arguments(parser)
        return parser

    return {"bench": build_parser, "streamstore.producer": lambda: streamstore(producer, "producer"),
            "streamstore.tracker": lambda: streamstore(tracker, "tracker")}


# Importing locust monkey-patches the process for gevent, which breaks a pytest-xdist worker's own
# threads: a Locust command is parsed in a child Python process instead.
_LOCUST_PARSE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from locust.argument_parser import get_parser
from bench.locust.options import add_arguments
from docs_console import _parse
parser = get_parser(default_config_files=())
add_arguments(parser)
print(json.dumps(_parse(parser, json.loads(sys.argv[2]))))
"""


@functools.cache
def _locust_problem(argv: tuple[str, ...]) -> str | None:
    completed = subprocess.run([sys.executable, "-c", _LOCUST_PARSE, str(Path(__file__).parent), json.dumps(argv)],
                               capture_output=True, text=True, cwd=ROOT, timeout=120)
    if completed.returncode != 0:
        return f"locust's parser did not run: {(completed.stderr.strip().splitlines() or ['no output'])[-1]}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(argv)
    except SystemExit as stop:
        if stop.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {stop.code}"
        return None
    return _check_checks(getattr(args, "check", None))


def _check_checks(values) -> str | None:
    """`--check` values (regress, locust) in today's syntax, not only a string."""
    from bench.analysis.thresholds import deprecation_lines, parse_checks
    from streamstore.errors import UsageError
    try:
        old = deprecation_lines(parse_checks(values or None))
    except UsageError as error:
        return str(error)
    return "; ".join(old) or None


def _missing_files(argv: list[str]) -> list[str]:
    return [arg for arg in argv if re.match(r"^(scenarios|tests)/[\w./-]+\.(toml|py)$", arg)
            and not (ROOT / arg).exists()]


def check_command(text: str) -> str | None:
    """Why `text` would not parse against the current CLI (None: it parses). Not run."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError as error:
        return f"not a shell command: {error}"
    problems = []
    while words:
        part = words[:words.index("&&")] if "&&" in words else words
        words = words[len(part) + 1:]
        while part and re.match(r"^[A-Z_]+=", part[0]):
            part = part[1:]  # VAR=value before the command
        problem = _check_argv(part)
        if problem:
            problems.append(problem)
    return "; ".join(problems) or None


def _check_argv(argv: list[str]) -> str | None:
    if not argv or argv[0] in ("echo", "cd"):
        return None
    missing = _missing_files(argv)
    if missing:
        return "no such file: " + ", ".join(missing)
    if argv[0] == "locust":
        return _locust_problem(tuple(argv[1:]))
    if argv[0] == "make":
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
        unknown = [arg for arg in argv[1:] if "=" not in arg and not arg.startswith("-") and arg not in targets]
        return f"no make target {', '.join(unknown)}" if unknown else None
    if Path(argv[0]).name.startswith("python") and argv[1:2] and argv[1].endswith(".py"):
        return None if (ROOT / argv[1]).exists() else f"no such file: {argv[1]}"
    if argv[0] == "bench":
        argv = ["python", "-m", "bench", *argv[1:]]
    if Path(argv[0]).name.startswith("python") and argv[1:2] == ["-m"] and len(argv) > 2:
        if argv[2] == "pytest":
            return None
        parsers = _parsers()
        if argv[2] in parsers:
            return _parse(parsers[argv[2]](), argv[3:])
    return f"not a command the docs check knows: {' '.join(argv[:3])}"


# -- output as written, and as compared --------------------------------------------------------

def map_ports(text: str, ports: dict[int, int]) -> str:
    """Each port number `a` in text written as `ports[a]` (not digits of a longer number)."""
    if not ports:
        return text
    alternatives = "|".join(str(port) for port in sorted(ports, reverse=True))
    return re.sub(rf"(?<![\d,.])({alternatives})(?!\d)", lambda m: str(ports[int(m[1])]), text)


def rewrite(text: str, scratch: Path | None, ports: dict[int, int]) -> str:
    """What `make docs` writes for what a command printed (see the module docstring); `ports`
    maps each port the command really used to the port the docs show."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    if scratch is not None:
        text = text.replace(str(scratch.resolve()), SCRATCH_SHOWN).replace(str(scratch), SCRATCH_SHOWN)
    text = map_ports(text, ports)
    return "\n".join(line.rstrip() for line in text.splitlines())


def keep_lines(lines: list[str], keep: str | None) -> list[str]:
    if keep is None:
        return lines
    pattern, kept = re.compile(keep), []
    for line in lines:
        if pattern.search(line):
            kept.append(line)
        elif not kept or kept[-1] != "...":
            kept.append("...")
    return kept


_NORMALISE = [
    (re.compile(r"\d{8}T\d{6}"), "<stamp>"),                                        # run folders
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?Z?"), "<time>"),       # timestamps
    (re.compile(r"\b(pids?) \d+(?:, \d+)*"), r"\1 <pid>"),
    (re.compile(r"^\[<time>\] [^/\s]+/", re.MULTILINE), "[<time>] <host>/"),        # Locust log host
    (re.compile(r"\b[\w.-]+_[0-9a-f]{32}\b"), "<worker>"),                          # Locust worker ids
    (re.compile(r"\b(in|after|within) \d+(?:\.\d+)? ?(s|ms)\b"), r"\1 <duration>"),
]


def normalise(text: str) -> str:
    """What two runs of the same command may print differently, as placeholders."""
    for pattern, placeholder in _NORMALISE:
        text = pattern.sub(placeholder, text)
    return text
