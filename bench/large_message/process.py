"""The parent's side of a worker process (`bench.large_message.worker`): start it, send it JSON
commands, wait for its JSON replies with a deadline, and say why it died."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.core.protocol import ERRORS_LOG, ChildFailed

# The parent waits this much longer than a worker's own deadline before killing it.
WORKER_GRACE_S = 30.0
WORKER_START_TIMEOUT_S = 60.0
# How often a wait for a reply wakes up to let the caller redraw its progress display.
WAIT_TICK_S = 0.5
TRACEBACK_START = "Traceback (most recent call last):"


def keep_traceback(failures: list[ChildFailed], who: str, error: str, stderr: str) -> str:
    """The one-line error, naming errors.log when the process's stderr held a Python traceback
    (then added to failures, for the sweep's errors.log)."""
    if TRACEBACK_START not in stderr:
        return error
    failures.append(ChildFailed(who, error, stderr[stderr.index(TRACEBACK_START):]))
    return f"{error} (traceback in {ERRORS_LOG})"


class CellFailed(Exception):
    """One size x compression could not be measured; the sweep records it and goes on."""


class SweepInterrupted(Exception):
    """Ctrl+C or SIGTERM was noted: the sweep stops where it waits for a worker, or between cells."""


class WorkerProcess:
    """A worker process (`bench.large_message.worker`) spoken to in JSON lines.

    `on_wait` is called at least every WAIT_TICK_S while a reply is awaited (progress display; it
    may raise SweepInterrupted). A worker that dies with a traceback on stderr adds it to
    `failures` (the sweep's errors.log); the reason it gives stays one line.
    """

    def __init__(self, role: str, arguments: Sequence[str], on_wait: Callable[[], None] = lambda: None,
                 failures: list[ChildFailed] | None = None) -> None:
        self.role = role
        self.on_wait = on_wait
        self.failures = failures
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.large_message.worker", role, *arguments],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=False,
        )
        self._buffer = b""

    def send(self, **command: Any) -> None:
        try:
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise CellFailed(self._died()) from None

    def receive(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise CellFailed(f"{self.role} process gave no answer within {timeout_s:.0f} s (killed)")
            readable, _, _ = select.select([fd], [], [], min(remaining, WAIT_TICK_S))
            self.on_wait()
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise CellFailed(self._died())
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _died(self) -> str:
        code = self.process.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read()
        lines = [line for line in stderr.splitlines() if line.strip()]
        # Killed by the kernel's OOM killer shows as SIGKILL with no last words.
        reason = lines[-1] if lines else ("killed (out of memory?)" if code == -9 else "no output")
        text = f"{self.role} process exited with code {code}: {reason}"
        return text if self.failures is None else keep_traceback(self.failures, f"{self.role} process", text, stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        self._stderr.close()
