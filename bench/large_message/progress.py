"""The sweep's progress display: a bar with the current cell and an ETA for the whole sweep,
estimated from the rates measured so far (the estimates are pure functions)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from bench.large_message.plan import size_label

# Progress estimates before anything is measured: per-cell set-up (processes, topic, consumer
# warm-up), per-repetition overhead, and a first guess of bytes per second per compression.
CELL_OVERHEAD_S = 3.0
REP_OVERHEAD_S = 0.2
INITIAL_RATE_BYTES_PER_S = {"none": 150_000_000}
INITIAL_COMPRESSED_RATE_BYTES_PER_S = 60_000_000
PROGRESS_REFRESH_S = 0.5


def estimate_rep_s(size_bytes: int, compression: str, rates: Mapping[str, float]) -> float:
    initial = INITIAL_RATE_BYTES_PER_S.get(compression, INITIAL_COMPRESSED_RATE_BYTES_PER_S)
    return REP_OVERHEAD_S + size_bytes / rates.get(compression, initial)


def estimate_remaining_s(cells: Sequence[tuple[int, str, int]], rates: Mapping[str, float]) -> float:
    """Seconds for the (size, compression, reps) cells still to run, at the rates seen so far."""
    return sum(CELL_OVERHEAD_S + reps * estimate_rep_s(size, compression, rates) for size, compression, reps in cells)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class SweepProgress:
    """A bar with the current cell and an ETA for the whole sweep (plain lines off a TTY)."""

    def __init__(self, cells: Sequence[tuple[int, str, int]], stream: TextIO = sys.stderr) -> None:
        self.pending = list(cells)
        self.total_s = estimate_remaining_s(cells, {})
        self.stream = stream
        self.interactive = stream.isatty()
        self.rates: dict[str, float] = {}
        self.started = time.monotonic()
        self.current = ""
        self.cell_started = self.started
        self.cell_estimate_s = 0.0
        self._last_draw = 0.0

    def start(self, size_bytes: int, compression: str, rep: int, reps: int) -> None:
        self.current = f"{size_label(size_bytes)} {compression} rep {rep}/{reps}"
        if rep == 1:
            self.cell_started = time.monotonic()
            self.cell_estimate_s = estimate_remaining_s(self.pending[:1], self.rates)
        self.draw(force=True, line=not self.interactive and rep == 1)

    def rep_done(self, size_bytes: int, compression: str, elapsed_s: float) -> None:
        # Only messages big enough for their transfer to dominate say anything about the rate.
        if size_bytes >= 1_000_000 and elapsed_s > REP_OVERHEAD_S:
            self.rates[compression] = size_bytes / (elapsed_s - REP_OVERHEAD_S)

    def cell_done(self) -> None:
        if self.pending:
            self.pending.pop(0)

    def eta_s(self) -> float:
        in_cell = max(0.0, self.cell_estimate_s - (time.monotonic() - self.cell_started))
        return in_cell + estimate_remaining_s(self.pending[1:], self.rates)

    def draw(self, force: bool = False, line: bool = False) -> None:
        now = time.monotonic()
        if not force and (not self.interactive or now - self._last_draw < PROGRESS_REFRESH_S):
            return
        self._last_draw = now
        elapsed = now - self.started
        eta = self.eta_s()
        fraction = elapsed / (elapsed + eta) if elapsed + eta > 0 else 0.0
        text = (f"{self.current:<34} elapsed {format_duration(elapsed)}  ETA {format_duration(eta)}")
        if self.interactive:
            filled = int(fraction * 24)
            self.stream.write(f"\r[{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%} {text}\033[K")
        elif line:
            self.stream.write(f"[{fraction:4.0%}] {text}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\r\033[K")
            self.stream.flush()
