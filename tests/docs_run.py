"""`make docs`: re-run the console blocks of README.md and docs/*.md and write their output in place.

    .venv/bin/python tests/docs_run.py [--fast | --all] [--port N] [--file docs/locust.md ...]

Each markdown file runs in a scratch working directory of its own (a copy of `scenarios/`,
`results/baselines/` and `tests/fixtures/`, and `.venv`, like a fresh clone), its blocks in order, so a
command can name a run folder that an earlier block wrote: `results/<UTC>-NAME` in a command
stands for the newest `NAME` folder there, and is written back with the real stamp. A `broker`
block gets the embedded broker on `--port` (started for the first block that needs it, stopped
at the end of the file, state in the scratch dir); a `python -m bench broker start|stop|status|logs`
without a port in a block acts on that broker. How blocks are marked and what is normalised:
tests/docs_console.py.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_console import (  # noqa: E402
    ROOT,
    SHOWN_PORT,
    Block,
    Command,
    blocks,
    keep_lines,
    map_ports,
    markdown_files,
    rewrite,
)

RUN_FOLDER = re.compile(r"results/\d{8}T\d{6}-([A-Za-z0-9_.-]+?)(?=/|\s|$)")
_OWN_BROKER = re.compile(r"^python -m bench broker (start|stop|status|logs)\b")
_PICKS_BROKER = re.compile(r"--(port|state-dir|bootstrap-servers)\b")


def make_scratch(base: Path) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "scenarios", base / "scenarios")
    shutil.copytree(ROOT / "results" / "baselines", base / "results" / "baselines")
    shutil.copytree(ROOT / "tests" / "fixtures", base / "tests" / "fixtures")
    (base / ".venv").symlink_to(Path(sys.prefix))  # so `.venv/bin/python` works as in a checkout
    return base


class Session:
    """One markdown file's scratch directory, last exit status and, when needed, its broker."""

    def __init__(self, scratch: Path, port: int, timeout_s: float = 900, moved: dict[int, int] | None = None):
        self.scratch, self.port, self.timeout_s = scratch, port, timeout_s
        # Written port -> the port used here (each with its controller port, +1).
        self.to_real = {SHOWN_PORT: port, SHOWN_PORT + 1: port + 1}
        for shown, real in (moved or {}).items():
            self.to_real.update({shown: real, shown + 1: real + 1})
        self.to_shown = {real: shown for shown, real in self.to_real.items()}
        self.status, self.broker_up = 0, False
        self.folders: dict[str, str] = {}  # run folder as written -> the one made here
        bin_dir = Path(sys.executable).parent
        drop = ("KAFKA_", "LOCUST_", "VIRTUAL_ENV")
        self.env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1",
                        COLUMNS="100", KAFKA_BOOTSTRAP_SERVERS=f"localhost:{port}")

    def _shell(self, text: str) -> tuple[int, str]:
        """Runs one command as a shell would (its own process group, `$?` the last status).
        Output goes to a file, not a pipe, so a process the command left behind cannot hold the
        block open; what is left in its group when it ends is killed and named."""
        with tempfile.TemporaryFile("w+") as out:
            process = subprocess.Popen(["bash", "-c", f"(exit {self.status}); {text}"], cwd=self.scratch,
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = process.wait(timeout=self.timeout_s)
            finally:
                _end_group(process.pid, text)
            out.seek(0)
            return code, out.read()

    def _with_folders(self, line: str) -> str:
        """A run folder the docs name stands for a real one: the first time it is named, the
        newest folder of that scenario not yet standing for another name."""
        def real(match: re.Match) -> str:
            if match[0] not in self.folders:
                taken = set(self.folders.values())
                folders = [str(f.relative_to(self.scratch)) for f in sorted((self.scratch / "results").glob(f"*T*-{match[1]}"))]
                fresh = [f for f in folders if f not in taken]
                if not fresh:
                    return match[0]
                self.folders[match[0]] = fresh[-1]
            return self.folders[match[0]]

        return RUN_FOLDER.sub(real, line)

    def run(self, command: Command, block: Block) -> Command:
        """Runs one command; returns it as it is to be written (real folders, real output)."""
        lines = [self._with_folders(line) for line in command.lines]
        text = map_ports(Command(lines).text, self.to_real)
        if "broker" in block.marks:
            own = _OWN_BROKER.match(text) and not _PICKS_BROKER.search(text)
            if own:
                text = re.sub(r"(\s+#\s.*)?$", lambda m: f" --port {self.port}{m[0]}", text, count=1)
            elif not self.broker_up and not text.startswith(("echo ", "python -m bench broker ")):
                self.start_broker()
            if own and " broker start" in text:
                self.broker_up = True
            elif own and " broker stop" in text:
                self.broker_up = False
        self.status, output = self._shell(text)
        return Command(lines, rewrite(output, self.scratch, self.to_shown).splitlines())

    def start_broker(self) -> None:
        status, output = self._shell(f"python -m bench broker start --port {self.port}")
        if status != 0:
            raise SystemExit(f"docs: the embedded broker did not start on port {self.port}:\n{output}")
        self.broker_up = True

    def close(self) -> None:
        """Stops every broker or cluster a block left running in the scratch directory."""
        self.broker_up = False
        for state in sorted((self.scratch / ".state").glob("*-*")):
            if (state / "cluster.json").exists() or (state / "server.properties").exists():
                self._shell(f"python -m bench broker stop --state-dir {state}")


def _end_group(group: int, text: str, grace_s: float = 5.0) -> None:
    """Kills what is left of a command's process group once `grace_s` has passed (a helper such
    as multiprocessing's resource tracker ends by itself right after its parent)."""
    deadline = time.monotonic() + grace_s
    try:
        while time.monotonic() < deadline:
            os.killpg(group, 0)
            time.sleep(0.1)
        os.killpg(group, signal.SIGKILL)
        print(f"docs: `{text}` left processes running {grace_s:.0f} s after it ended; killed them", file=sys.stderr)
    except ProcessLookupError:
        pass


def render(block: Block, commands: list[Command]) -> list[str]:
    lines = ["```console"]
    for command in commands:
        lines += ["$ " + command.lines[0], *command.lines[1:], *keep_lines(command.output, block.keep)]
    return [(block.indent + line).rstrip() for line in [*lines, "```"]]


def run_block(session: Session, block: Block) -> list[str]:
    return render(block, [session.run(command, block) for command in block.commands])


def wanted(block: Block, mode: str, only: list[str]) -> bool:
    if "manual" in block.marks or not block.commands:
        return False
    if only:  # PATH:LINE, the line of the block's ```console or of its mark
        path = str(block.path.relative_to(ROOT))
        return any(f"{path}:{line}" in only for line in (block.first + 1, block.first))
    if mode == "fast":
        return block.fast
    return mode == "all" or "long" not in block.marks


def regenerate(path: Path, mode: str, port: int, scratch_base: Path, moved: dict[int, int],
               only: list[str]) -> list[str]:
    """Re-runs the wanted blocks of one file and rewrites it; returns the blocks it changed."""
    todo = [block for block in blocks(path) if wanted(block, mode, only)]
    if not todo:
        return []
    session = Session(make_scratch(scratch_base / path.stem), port, moved=moved)
    lines = path.read_text(encoding="utf-8").splitlines()
    changed, replacements = [], []
    try:
        for block in todo:
            print(f"docs: {block.where} ({' '.join(sorted(block.marks)) or 'fast'})", flush=True)
            new = run_block(session, block)
            if new != lines[block.first:block.last + 1]:
                changed.append(block.where)
            replacements.append((block, new))
    finally:
        session.close()
    for block, new in reversed(replacements):
        lines[block.first:block.last + 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make docs", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fast", dest="mode", action="store_const", const="fast", default="default",
                      help="only the blocks without a broker (what the test compares)")
    mode.add_argument("--all", dest="mode", action="store_const", const="all",
                      help="also the blocks marked long (clusters, long runs, large messages)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DOCS_PORT") or 19192),
                        help="client port of the docs' embedded broker (default $DOCS_PORT, else 19192)")
    parser.add_argument("--map-port", action="append", default=[], metavar="SHOWN=REAL",
                        help="run a command's port SHOWN (and SHOWN+1) on REAL (and REAL+1), write SHOWN")
    parser.add_argument("--block", action="append", default=[], metavar="PATH:LINE",
                        help="only this block, of any mark but manual (repeatable; LINE as make docs prints it)")
    parser.add_argument("--file", action="append", default=[],
                        help="only files whose path contains this (repeatable)")
    args = parser.parse_args(argv)
    files = [path for path in markdown_files()
             if not args.file or any(part in str(path.relative_to(ROOT)) for part in args.file)]
    moved = {int(shown): int(real) for shown, real in (pair.split("=", 1) for pair in args.map_port)}
    scratch_base = Path(tempfile.mkdtemp(prefix="bench-docs-"))
    try:
        changed = [where for path in files
                   for where in regenerate(path, args.mode, args.port, scratch_base, moved, args.block)]
    finally:
        shutil.rmtree(scratch_base, ignore_errors=True)
    print("docs: " + (f"{len(changed)} block(s) rewritten: " + ", ".join(changed) if changed else "every block is current"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
