"""Child processes a test will signal.

A child inherits its parent's signal dispositions: started from a background job of a
non-interactive shell (as a CI runner may start the suite), SIGINT and SIGQUIT are ignored, and
Python keeps an inherited SIG_IGN for SIGINT instead of installing its KeyboardInterrupt handler.
A test that sends SIGINT or SIGTERM therefore starts the child with both at their defaults, so it
passes however the suite was launched.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator

SIGNALS_A_TEST_SENDS = (signal.SIGINT, signal.SIGTERM)


def _default_dispositions() -> None:
    # Runs in the child between fork and exec: only async-signal-safe work.
    for signum in SIGNALS_A_TEST_SENDS:
        signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def signalable_child(args, **popen_kwargs) -> Iterator[subprocess.Popen]:
    """subprocess.Popen(args, **popen_kwargs), with SIGINT and SIGTERM at their default disposition
    in the child whatever the test process inherited; killed on the way out if the test failed
    before it ended, so a failure leaves no child behind."""
    with subprocess.Popen(args, preexec_fn=_default_dispositions, **popen_kwargs) as child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()
