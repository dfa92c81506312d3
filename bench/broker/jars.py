"""The broker's jars (of the releases bench/broker/versions.py names): their download with Maven
into a cache outside git (`$XDG_CACHE_HOME/streamstore-bench/kafka-<version>/libs`,
default `~/.cache`), once per version."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.broker.versions import (
    DEFAULT_KAFKA_VERSION,
    SUPPORTED_RELEASES,
    is_supported,
    pom_path,
    version_key,
)
from streamstore.errors import RunFailed, UsageError

# Re-exported: the broker modules know the versions by this module.
__all__ = ["DEFAULT_KAFKA_VERSION", "version_key"]

DOCKER_ALTERNATIVE = "with Docker instead: docker compose up -d"

# Maven fetches the broker's jars (tens of MB) once per version: minutes on a slow link, never
# an hour. A download that hangs (a proxy that never answers) ends here, with one line.
MAVEN_TIMEOUT_S = 900.0

def missing_tool(tool: str, purpose: str, install_hint: str) -> UsageError:
    return UsageError(f"{tool} not found on PATH: {purpose} ({install_hint}); {DOCKER_ALTERNATIVE}")


def run_bounded(command: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run a tool (stdin closed, output captured as text) for at most timeout_s seconds.

    On expiry the tool and every process it started (Maven's JVM under its shell script) are
    killed, as one process group, and subprocess.TimeoutExpired is raised. The group is its own
    session, so Ctrl+C reaches only this process: it kills the group too.
    """
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except BaseException:  # the timeout, Ctrl+C
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def check_kafka_version(kafka_version: str) -> str:
    if not is_supported(kafka_version):
        raise UsageError(
            f"--kafka-version {kafka_version!r}: the embedded broker runs Apache Kafka {SUPPORTED_RELEASES} "
            f"(default {DEFAULT_KAFKA_VERSION}); for other versions use Docker: docker compose up -d"
        )
    return kafka_version


def jar_cache_dir(kafka_version: str) -> Path:
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_root / "streamstore-bench" / f"kafka-{kafka_version}" / "libs"


@contextlib.contextmanager
def file_lock(lock_path: Path, remove: bool = False) -> Iterator[None]:
    """An exclusive flock on lock_path; remove=True deletes the file on release, so it exists
    only while someone holds or waits for the lock (nothing is left behind by a failed start).

    Removing a lock file is safe only if a waiter that was queued on the removed file notices:
    after taking the lock it checks that the path still names the file it locked, and takes
    the lock again on the new file otherwise.
    """
    while True:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(lock_path, "a")
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if os.stat(lock_path).st_ino == os.fstat(lock_file.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        lock_file.close()
    try:
        yield
    finally:
        if remove:
            lock_path.unlink(missing_ok=True)
        fcntl.flock(lock_file, fcntl.LOCK_UN)
        lock_file.close()


def provision_jars(kafka_version: str = DEFAULT_KAFKA_VERSION, timeout_s: float | None = None) -> tuple[Path, bool]:
    """Returns the directory holding the broker's jars, and whether they were downloaded now
    (RunFailed when Maven takes longer than timeout_s, default MAVEN_TIMEOUT_S).

    Maven writes into a temporary directory that is renamed into place, under a file lock, so
    concurrent callers neither download twice nor see half a directory.
    """
    check_kafka_version(kafka_version)
    libs = jar_cache_dir(kafka_version)
    if libs.is_dir():
        return libs, False
    with file_lock(libs.parent / "download.lock"):
        if libs.is_dir():
            return libs, False
        mvn = shutil.which("mvn")
        if mvn is None:
            raise missing_tool(
                "mvn", "Maven downloads the Kafka broker jars on first use", "e.g. apt-get install maven"
            )
        staging = libs.parent / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        command = [mvn, "-q", "-B", "-f", str(pom_path(kafka_version)), f"-Dkafka.version={kafka_version}",
                   "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
        timeout_s = MAVEN_TIMEOUT_S if timeout_s is None else timeout_s
        try:
            completed = run_bounded(command, timeout_s)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise RunFailed(f"Maven did not finish downloading Apache Kafka {kafka_version}'s jars within "
                            f"{timeout_s:g} s (stopped): check the network or Maven's proxy settings "
                            f"(~/.m2/settings.xml), then try again; {DOCKER_ALTERNATIVE}") from None
        if completed.returncode != 0 or not any(staging.glob(f"kafka_2.13-{kafka_version}.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            errors = [line for line in completed.stdout.splitlines() if "ERROR" in line]
            detail = errors[0].strip() if errors else (completed.stderr.strip() or "no jars").splitlines()[-1]
            raise UsageError(f"Maven could not resolve Apache Kafka {kafka_version}: {detail}")
        staging.rename(libs)
        return libs, True
