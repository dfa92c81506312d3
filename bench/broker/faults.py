"""Broker faults on a schedule: kill -9 and restart, or SIGSTOP and SIGCONT, the embedded broker.

A fault is written `KIND@AT+FOR`: `kill@20+5` sends SIGKILL 20 s after the run started and
starts the broker again 5 s later (a crash and a restart; the restart itself takes a few
seconds more); `pause@40+5` freezes the broker process for 5 s (a long GC pause or a hung
disk: connections stay open, nothing answers). The injector runs in a background thread and
records every fault as a result event, so plots mark them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.broker.embedded import EmbeddedBroker
from streamstore.errors import StreamStoreError, UsageError

FAULT_KINDS = ("kill", "pause")
_FAULT_TEXT = re.compile(r"^(?P<kind>[a-z]+)@(?P<at>\d+(?:\.\d+)?)\+(?P<for>\d+(?:\.\d+)?)$")
# A restarted broker replays its log first; on a busy 2-core machine that plus JVM start-up
# has taken 20 s, so allow far more before calling the restart failed.
RESTART_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    for_s: float

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_s:g}+{self.for_s:g}"


def parse_fault(text: str) -> Fault:
    match = _FAULT_TEXT.match(text.strip())
    if not match or match["kind"] not in FAULT_KINDS:
        raise UsageError(
            f"--fault {text!r}: expected KIND@AT+FOR with KIND one of {', '.join(FAULT_KINDS)} and seconds, "
            "e.g. kill@20+5 or pause@40+5"
        )
    fault = Fault(match["kind"], float(match["at"]), float(match["for"]))
    if fault.for_s <= 0:
        raise UsageError(f"--fault {text!r}: the fault must last more than 0 s")
    return fault


def check_schedule(faults: Sequence[Fault], duration_s: float) -> None:
    """Faults must fit in the run and must not overlap (one broker, one fault at a time)."""
    ordered = sorted(faults, key=lambda fault: fault.at_s)
    for fault in ordered:
        if fault.at_s + fault.for_s > duration_s:
            raise UsageError(f"--fault {fault}: does not end within the {duration_s:g} s run")
    for earlier, later in zip(ordered, ordered[1:]):
        if later.at_s < earlier.at_s + earlier.for_s:
            raise UsageError(f"--fault {later}: overlaps --fault {earlier}")


# A killed broker answered again 15-25 s after its restart began on a 2-core machine
# (docs/faults.md, 2026-11-26): the JVM starts, the log is recovered, and the KRaft controller
# refuses the new incarnation until the killed one's session (broker.session.timeout.ms) expires.
KILL_RECOVERY_S = 25.0


def schedule_warnings(faults: Sequence[Fault], duration_s: float) -> list[str]:
    """Kills whose restart leaves the run too little time to see the broker back.

    A warning, not a refusal: how long a restart takes depends on the machine, the log to
    recover and the broker's session timeout, none known before the run, and a run that ends
    inside the outage is a fair experiment (its stall, failed deliveries and exit code say
    what happened). The user must know before waiting for it, though: such a run usually
    ends with deliveries purged and exit 3, which reads like a harness failure otherwise.
    """
    warnings = []
    for fault in sorted(faults, key=lambda fault: fault.at_s):
        restart_s = fault.at_s + fault.for_s
        if fault.kind == "kill" and duration_s - restart_s < KILL_RECOVERY_S:
            warnings.append(
                f"--fault {fault}: the broker restarts {restart_s:g} s into the {duration_s:g} s run, "
                f"{duration_s - restart_s:g} s before it ends, and a killed broker took up to {KILL_RECOVERY_S:g} s "
                "to answer again: acks may not resume before the run ends, and deliveries still queued when the "
                f"producers' flush ends are purged (failed, exit 3); --duration {restart_s + KILL_RECOVERY_S:g} "
                "or more lets the run see the broker back")
    return warnings


def longest_stall_s(acked: Sequence[int | None], sent: Sequence[int | None],
                    failed: Sequence[int | None] | None = None) -> int:
    """The longest run of whole seconds without one acknowledgement while messages were
    waiting for one (sent, and neither acked nor failed yet), per-second series of a result.

    A stall runs to the end of the run when acks never resumed (a broker that was not back
    before the producers gave up stalls until their purge, the last second); a second with
    nothing waiting (after the last ack, between rate phases) is not a stall, nor are the
    seconds before the first ack (the ramp-up).
    """
    waiting = longest = current = 0
    acks_began = False
    for second, acks in enumerate(acked):
        sends = _at(sent, second)
        if acks:
            acks_began, current = True, 0
        elif acks_began and (waiting or sends):
            current += 1
            longest = max(longest, current)
        else:
            current = 0
        waiting = max(0, waiting + sends - (acks or 0) - _at(failed, second))
    return longest


def _at(series: Sequence[int | None] | None, second: int) -> int:
    return (series[second] or 0) if series is not None and second < len(series) else 0


def fault_summary(result: Mapping[str, Any]) -> dict[str, int]:
    """The figures a fault experiment is judged by, from a result."""
    counts = result["counts"]
    return {
        "lost": counts["lost"],
        "failed": counts["failed"],
        "duplicated": counts["duplicated"],
        "longest_stall_s": longest_stall_s(result["series"]["acked"], result["series"]["sent"],
                                           result["series"].get("failed")),
    }


class FaultInjector:
    """Runs a fault schedule against an embedded broker, in a daemon thread.

    `events` collects {"t_s", "kind", "detail"} dicts (t_s from `start()`), the result's
    events format. `stop()` cancels what has not started and always leaves the broker as it
    found it: resumed if paused, running again if killed.
    """

    def __init__(self, broker: EmbeddedBroker, faults: Iterable[Fault]):
        self.broker = broker
        self.faults = sorted(faults, key=lambda fault: fault.at_s)
        self.events: list[dict[str, Any]] = []
        self.error: StreamStoreError | None = None
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._paused_pid: int | None = None
        self._killed = False

    def start(self, started_at_perf_counter: float | None = None) -> FaultInjector:
        if self.faults and not self.broker.is_running():
            raise UsageError(f"faults need the embedded broker in {self.broker.state_dir} running; it is not")
        self._started_at = time.perf_counter() if started_at_perf_counter is None else started_at_perf_counter
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the whole schedule to have run (every fault started and ended)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stop(self) -> None:
        """Cancel the faults not yet started and end the current one now."""
        self._cancelled.set()
        if self._thread is not None:
            self._thread.join()

    def _event(self, kind: str, detail: str) -> None:
        self.events.append({"t_s": round(time.perf_counter() - self._started_at, 3), "kind": kind, "detail": detail})

    def _wait_until(self, offset_s: float) -> bool:
        """Sleep until offset_s after start; False when cancelled first."""
        return not self._cancelled.wait(max(0.0, self._started_at + offset_s - time.perf_counter()))

    def _run(self) -> None:
        try:
            for fault in self.faults:
                if not self._wait_until(fault.at_s):
                    break
                # A restart that took long can delay the next fault; it still lasts for_s.
                began_s = time.perf_counter() - self._started_at
                if fault.kind == "kill":
                    self._kill()
                else:
                    self._pause()
                # The end of a fault always happens, even when cancelled meanwhile.
                self._wait_until(began_s + fault.for_s)
                if fault.kind == "kill":
                    self._restart()
                else:
                    self._resume()
        except StreamStoreError as error:
            self.error = error
            self._event("fault-error", str(error))
        finally:
            self._resume()
            if self._killed:
                self._restart()

    def _kill(self) -> None:
        pid = self.broker.pid
        if pid is None:
            raise UsageError("the embedded broker is no longer running; nothing to kill")
        os.kill(pid, signal.SIGKILL)
        self._killed = True
        while self.broker.pid is not None:
            time.sleep(0.01)
        self._event("broker-kill", f"SIGKILL broker pid {pid}")

    def _restart(self) -> None:
        if not self._killed:
            return
        began = time.perf_counter()
        self._killed = False
        self._event("broker-restart", "starting the broker again")
        self.broker.start(timeout_s=RESTART_TIMEOUT_S)
        self._event("broker-up", f"broker pid {self.broker.pid} answering after {time.perf_counter() - began:.1f} s")

    def _pause(self) -> None:
        pid = self.broker.pid
        if pid is None:
            raise UsageError("the embedded broker is no longer running; nothing to pause")
        os.kill(pid, signal.SIGSTOP)
        self._paused_pid = pid
        self._event("broker-pause", f"SIGSTOP broker pid {pid}")

    def _resume(self) -> None:
        if self._paused_pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._paused_pid, signal.SIGCONT)
        self._event("broker-resume", f"SIGCONT broker pid {self._paused_pid}")
        self._paused_pid = None
