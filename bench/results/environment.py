"""Where and with what a result was measured: host, CPU, Python and client library versions,
and the harness's own version. Captured once, when a run starts (`capture_environment`), never
when its file is written; a fact that could not be measured is null, and `not_measured` says why.

The harness version is the installed package's (`streamstore-bench`). The git commit is recorded
only when this module is the tracked file of a git checkout (`python -m bench` from a clone, or
an editable install): after `pip install .` the module lives in site-packages, whose parents may
well be some checkout (the one holding the venv) that is not what runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

PACKAGE = "streamstore-bench"
GIT_TIMEOUT_S = 5.0
# This module's path inside a checkout of the harness.
_MODULE_IN_CHECKOUT = Path("bench", "results", "environment.py")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def harness_version() -> tuple[str | None, str | None]:
    """(the installed package's version, None) or (None, why there is none)."""
    try:
        return importlib.metadata.version(PACKAGE), None
    except importlib.metadata.PackageNotFoundError:
        return None, f"the {PACKAGE} package is not installed (run from a source tree without pip install)"


def checkout_root(module: Path | None = None) -> Path | None:
    """The work tree this module was imported from, when it is one: the directory that holds
    `bench/results/environment.py` and a `.git` (a directory, or a file in a git worktree).
    None for an installed copy (site-packages holds no .git, and git must not be let walk up
    from there into whatever checkout holds the venv)."""
    module = (module or Path(__file__)).resolve()
    root = module.parents[len(_MODULE_IN_CHECKOUT.parts) - 1]
    return root if (root / ".git").exists() else None


def parse_git_status(text: str, module: Path = _MODULE_IN_CHECKOUT) -> tuple[str | None, str | None]:
    """Pure: (commit, None) or (None, reason) from `git status --porcelain=v2 --branch
    --untracked-files=all` output. "-dirty" when a tracked file has changes; None when this
    module is itself untracked (then the checkout is not where the running code comes from)."""
    commit, dirty = None, False
    for line in text.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split()[2]
        elif line.startswith("? ") and line[2:] == module.as_posix():
            return None, f"{module.as_posix()} is not tracked by the checkout it sits in"
        elif line[:2] in ("1 ", "2 ", "u "):
            dirty = True
    if commit is None or commit == "(initial)":
        return None, "the checkout has no commit yet"
    return f"{commit}-dirty" if dirty else commit, None


def harness_commit(module: Path | None = None) -> tuple[str | None, str | None]:
    """(the checkout's commit, with "-dirty" when a tracked file changed, None) or (None, why).
    One `git status` call, with a timeout."""
    root = checkout_root(module)
    if root is None:
        return None, "not running from a git checkout (an installed package)"
    # The checkout's own repository, whatever GIT_DIR/GIT_WORK_TREE say.
    env = {key: value for key, value in os.environ.items() if key not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    try:
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain=v2", "--branch", "--untracked-files=all"],
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True, env=env,
        ).stdout
    except FileNotFoundError:
        return None, "git is not installed"
    except subprocess.TimeoutExpired:
        return None, f"git status took over {GIT_TIMEOUT_S:g} s"
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"git status failed: {str(getattr(error, 'stderr', '') or error).strip()[:200]}"
    return parse_git_status(status)


def capture_environment() -> dict[str, Any]:
    """Where and with what a result is measured (the runner adds broker facts separately).
    Called once, when a run starts. Every key is present; a null one is named in
    `not_measured` with the reason."""
    import confluent_kafka  # only for its version strings

    not_measured: dict[str, str] = {}
    version, version_reason = harness_version()
    commit, commit_reason = harness_commit()
    environment = {
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "harness_version": version,
        "harness_commit": commit,
        # How busy the machine was when the run started: a comparison with a run measured at
        # another load says so (bench/analysis/compare.py weak_comparison).
        "load_average_1m": _load_average(),
    }
    reasons = {"cpu_model": "neither /proc/cpuinfo nor the platform names the CPU",
               "cpu_count": "the OS does not tell the CPU count",
               "harness_version": version_reason, "harness_commit": commit_reason,
               "load_average_1m": "the OS does not report a load average"}
    for key, value in environment.items():
        if value is None:
            not_measured[key] = reasons.get(key) or "not reported"
    environment["not_measured"] = not_measured
    return environment
