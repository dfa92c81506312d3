"""Errors that end a command with one clear line, and the exit codes they map to.

Exit codes (shared by every command of the project):
  0 success
  1 regression or threshold violated
  2 usage or configuration error
  3 the run itself failed (broker unreachable, delivery failures, lost orders)
  130 interrupted by Ctrl+C
"""

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_RUN_FAILED = 3
EXIT_INTERRUPTED = 130


class StreamStoreError(Exception):
    """A failure that is reported as one line, never a traceback."""

    exit_code = EXIT_RUN_FAILED


class UsageError(StreamStoreError):
    """Bad input: flags, scenario fields, files the user pointed at."""

    exit_code = EXIT_USAGE


class RunFailed(StreamStoreError):
    """The run could not do its job: broker unreachable, deliveries failed."""

    exit_code = EXIT_RUN_FAILED
