"""Two of Locust's console lines that mislead in a Kafka test, held back on the master.

- Its periodic stats table (every 2 s unless `--only-summary`) keeps printing while the master
  finishes the test: waiting for the workers' last reports, the tracker's drain and the result
  (seconds, tens of seconds flat out). The users have stopped, so each table repeats the last
  one, and the final summary repeats it once more. Tables are held from test stop until the
  next test starts or Locust quits, which is when it prints the summary.
- "Discarded report from unrecognized worker": Locust's master forgets a worker between its
  "client_stopped" and "client_ready" messages (with `--stop-timeout`, for seconds), and calls
  a stats report it receives meanwhile unrecognized. Nothing is lost: Locust's request stats
  and the Kafka hooks merge that report all the same. The line is held back for the workers
  this test has heard from, and still shown for a worker it does not know.
"""

from __future__ import annotations

import logging

# Locust's loggers (locust/stats.py console_logger, locust/runners.py logger).
STATS_LOGGER = "locust.stats_logger"
RUNNERS_LOGGER = "locust.runners"
DISCARDED_REPORT = "Discarded report from unrecognized worker %s"


class _StatsTablesAfterStop(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.holding = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.holding


class _KnownWorkerReports(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.known: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == DISCARDED_REPORT and record.args and record.args[0] in self.known)


class MasterConsole:
    """Installed once per master (or local runner) process; the hooks in bench/locust/user.py
    call these methods from Locust's events."""

    def __init__(self) -> None:
        self._tables = _StatsTablesAfterStop()
        self._reports = _KnownWorkerReports()
        logging.getLogger(STATS_LOGGER).addFilter(self._tables)
        logging.getLogger(RUNNERS_LOGGER).addFilter(self._reports)

    def test_started(self) -> None:
        self._tables.holding = False

    def test_stopped(self) -> None:
        self._tables.holding = True

    def quitting(self) -> None:
        """Locust prints its final summary right after the quitting event."""
        self._tables.holding = False

    def worker_reported(self, client_id: str) -> None:
        self._reports.known.add(client_id)
