"""Shake out races before CI does: run a selection of tests N times in a row while busy
processes keep every core loaded, with pytest started the way a CI runner may start it (as a
background job of a non-interactive shell: SIGINT and SIGQUIT ignored), and the whole thing
bounded in time.

    .venv/bin/python tests/stress.py --repeat 20 tests/test_failover.py::test_a_rolling_restart_under_load_loses_nothing
    make stress                        # the default selection below, STRESS_REPEAT=5 times

Exit code: pytest's (0 = every repetition passed), or 3 when the time bound ended the run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# How long pytest may take to stop its brokers and clusters once told to end.
END_GRACE_S = 120

# The tests that start and stop processes or nodes: where timing and inherited state bite.
DEFAULT_SELECTION = (
    "tests/test_failover.py::test_a_rolling_restart_under_load_loses_nothing",
    "tests/test_streamstore.py::test_tracker_stops_cleanly_and_commits",
    "tests/test_run.py::test_interrupted_run_writes_a_valid_result_marked_interrupted",
)


def _spin(stop) -> None:
    """Burn one core until told to stop (or the parent is gone)."""
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:
        for _ in range(200_000):
            pass


def _as_background_job() -> None:
    # Between fork and exec of pytest: what a non-interactive shell does for `command &`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    os.setpgrp()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _end(pytest: subprocess.Popen) -> None:
    """SIGTERM, which tests/conftest.py turns into an interrupted session that tears its fixtures
    down (the brokers they started are daemons of their own); what is left after a grace period
    is killed with pytest's process group (it has one of its own)."""
    pytest.terminate()
    try:
        pytest.wait(timeout=END_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(pytest.pid, signal.SIGKILL)
        pytest.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="*", default=list(DEFAULT_SELECTION), help="pytest node ids (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each test (default: %(default)s)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="processes that keep a core busy meanwhile (default: one per core, %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=60.0,
                        help="end the run (exit 3) after this long (default: %(default)s)")
    parser.add_argument("--foreground", action="store_true",
                        help="start pytest with this shell's SIGINT/SIGQUIT, not as a background job")
    parser.add_argument("--maxfail", type=int, default=0, help="stop after this many failures (default: none)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.busy < 0 or args.max_minutes <= 0:
        parser.error("--repeat must be at least 1, --busy at least 0 and --max-minutes positive")

    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "--durations=5",
               f"--repeat={args.repeat}", *(["--maxfail", str(args.maxfail)] if args.maxfail else []), *args.tests]
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    print(f"stress: {args.repeat} x {len(args.tests)} test selection(s), {args.busy} busy process(es), "
          f"at most {args.max_minutes:g} min, pytest {'in the foreground' if args.foreground else 'as a background job'}",
          flush=True)
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)
    pytest = subprocess.Popen(command, cwd=ROOT, preexec_fn=os.setpgrp if args.foreground else _as_background_job)
    try:
        code = pytest.wait(timeout=args.max_minutes * 60)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as stopped:
        _end(pytest)
        timed_out = isinstance(stopped, subprocess.TimeoutExpired)
        print(f"stress: ended {'by the time bound' if timed_out else 'early'}: not every repetition ran", flush=True)
        code = 3 if timed_out else 130
    finally:
        stop.set()
        for spinner in spinners:
            spinner.join(timeout=5)
            if spinner.is_alive():
                spinner.kill()
    print(f"stress: exit {code} after {time.monotonic() - began:.0f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
