"""Count truth: the counts a result reports must equal what the broker holds.

Every test that produces through the harness calls `assert_counts_match_broker(result, bootstrap)`
after its run, so a harness that miscounts (drops a delivery report, double-counts a retry,
stops consuming early) fails the suite instead of publishing wrong figures. It needs the run's
topic to have been empty before the run (tests use `unique_topic`).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from bench.results.store import load_result
from streamstore.admin import connect_admin, message_count, topic_watermarks

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STEADY_SCENARIO = PROJECT_ROOT / "scenarios" / "steady-orders.toml"


def default_signal_dispositions() -> None:
    """A Popen preexec_fn: SIGINT and SIGTERM as in a terminal, whatever pytest was started with
    (`nohup`, or `&` in a script, leaves SIGINT ignored, and a child inherits that)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def signalable_child(args, **popen_kwargs) -> Iterator[subprocess.Popen]:
    """subprocess.Popen(args, **popen_kwargs) for a child the test will signal, with SIGINT and
    SIGTERM at their defaults (default_signal_dispositions); killed on the way out if the test
    failed before it ended, so a failure leaves no child behind."""
    with subprocess.Popen(args, preexec_fn=default_signal_dispositions, **popen_kwargs) as child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()


def bench_command(*args: str, timeout: float = 300, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m bench ARGS` as a user runs it (own process: exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=PROJECT_ROOT)


@dataclass
class BenchRun:
    completed: subprocess.CompletedProcess
    folder: Path | None
    result: dict[str, Any] | None


def bench_run(bootstrap_servers: str, topic: str, results_root: Path, *args: str,
              scenario: Path = STEADY_SCENARIO, timeout: float = 300) -> BenchRun:
    """`python -m bench run` against an answering broker into its own results folder.

    `results_root` must be used for this one run: its only run folder is the result.
    """
    completed = bench_command(
        "run", str(scenario), "--bootstrap-servers", bootstrap_servers, "--broker", "external",
        "--topic", topic, "--results", str(results_root), "--no-report", *args, timeout=timeout,
    )
    folders = sorted(path.parent for path in Path(results_root).glob("*/result.json"))
    assert len(folders) <= 1, f"one run wrote {len(folders)} result folders: {folders}"
    folder = folders[0] if folders else None
    return BenchRun(completed, folder, load_result(folder) if folder else None)


def broker_message_count(bootstrap_servers: str, topic: str, extra: Mapping[str, object] | None = None) -> int:
    return message_count(topic_watermarks(bootstrap_servers, topic, extra))


def count_problems(counts: Mapping[str, int], held: int, faults: bool = False, dropped: int = 0,
                   reread: int = 0) -> list[str]:
    """What is wrong between a result's counts and the broker's message count (empty when true).

    Without faults every sent order is acknowledged once and consumed once. With faults
    (broker killed or paused) a delivery can time out after the broker wrote it, and a retry
    can write it twice, so the broker may hold more than was acknowledged; but never fewer
    distinct orders than were acknowledged, and the tracker must still read all it holds.
    `dropped`: acknowledged records the test deleted on the broker before the tracker read
    them; they are exactly the lost ones, and the offsets still grew by them.
    `reread`: orders a consumer group read again after a rebalance (uncommitted offsets the next
    owner read again): the broker holds them once, the group consumed them twice.
    """
    if counts["acked"] is None:  # consume-only: no producer of the run; the broker's offsets are all there is
        return _consume_only_problems(counts, held, dropped)
    problems = []
    sent, acked, failed = counts["sent"], counts["acked"], counts["failed"]
    consumed, duplicated = counts["consumed"], counts["duplicated"]
    if acked + failed != sent:
        problems.append(f"acked {acked} + failed {failed} != sent {sent}: some deliveries have no outcome")
    if counts["lost"] != dropped:
        problems.append(f"lost {counts['lost']} != {dropped} acknowledged orders the broker dropped")
    if consumed != held + reread:
        problems.append(f"consumed {consumed} != {held} messages the broker holds + {reread} read again")
    written = held + dropped
    if "broker_offset_delta" in counts and counts["broker_offset_delta"] != written:
        problems.append(f"broker_offset_delta {counts['broker_offset_delta']} != {written} messages the broker wrote")
    distinct = consumed - duplicated
    if distinct + dropped < acked:
        problems.append(f"{distinct} distinct orders consumed + {dropped} dropped < {acked} acknowledged")
    if distinct > sent:
        problems.append(f"{distinct} distinct orders consumed > {sent} sent")
    if reread and duplicated != reread:
        problems.append(f"duplicated {duplicated} != {reread} orders read again after rebalances")
    if not faults:
        if failed or duplicated - reread:
            problems.append(f"failed {failed}, duplicated {duplicated} without any fault")
        if written != acked:
            problems.append(f"the broker wrote {written} messages, {acked} were acknowledged")
    return problems


def _consume_only_problems(counts: Mapping[str, int], held: int, dropped: int) -> list[str]:
    """A consume-only run read a topic it did not fill (from its beginning, nothing written since):
    it read each record the broker holds once, and the offsets count the dropped ones too."""
    problems = []
    if counts["consumed"] != held:
        problems.append(f"consumed {counts['consumed']} != {held} messages the broker holds")
    if counts["lost"] != dropped:
        problems.append(f"lost {counts['lost']} != {dropped} records the broker dropped")
    if counts["duplicated"]:
        problems.append(f"duplicated {counts['duplicated']} without any fault")
    if counts["broker_offset_delta"] != held + dropped:
        problems.append(f"broker_offset_delta {counts['broker_offset_delta']} != {held + dropped} records the broker wrote")
    return problems


def assert_counts_match_broker(
    result: Mapping[str, Any],
    bootstrap_servers: str,
    faults: bool = False,
    extra: Mapping[str, object] | None = None,
    dropped: int = 0,
    reread: int = 0,
) -> None:
    """Fail with every disagreement between `result["counts"]` and the broker's offsets
    (`dropped`: acked records the test itself deleted on the broker, see RecordDropper)."""
    counts = result["counts"]
    held = broker_message_count(bootstrap_servers, result["scenario"]["topic"], extra)
    problems = count_problems(counts, held, faults, dropped, reread)
    assert not problems, "count truth violated:\n  " + "\n  ".join(problems) + f"\ncounts: {dict(counts)}"


def wait_for_records(bootstrap: str, topic: str, count: int, within_s: float) -> None:
    """Return once the broker holds `count` records in the topic (all partitions): the event
    "the run is producing", instead of a fixed sleep. The topic may not exist yet."""
    deadline = time.monotonic() + within_s
    while sum(high for _low, high in topic_watermarks(bootstrap, topic, missing_ok=True).values()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker never held {count} records in {topic} within {within_s:g} s")
        time.sleep(0.05)


class RecordDropper(threading.Thread):
    """Deletes partition 0's records below `drop_below` once the broker holds `wait_for` of them
    (AdminClient.delete_records), to make the broker lose acked orders a stalled tracker has
    not read yet. `within_s`: how long it waits for them before it gives up."""

    def __init__(self, bootstrap: str, topic: str, wait_for: int, drop_below: int, within_s: float):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.wait_for, self.drop_below = bootstrap, topic, wait_for, drop_below
        self.within_s = within_s
        self.dropped_at: float | None = None  # time.time(), comparable with a result's started_at
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for_records(self.bootstrap, self.topic, self.wait_for, self.within_s)
            admin = connect_admin(self.bootstrap)
            [future] = admin.delete_records([TopicPartition(self.topic, 0, self.drop_below)]).values()
            future.result(timeout=30)
            self.dropped_at = time.time()
        except BaseException as error:  # reported by the test
            self.error = error


def assert_sweep_counts_match_broker(result: Mapping[str, Any], bootstrap_servers: str,
                                     extra: Mapping[str, object] | None = None) -> None:
    """A large-message sweep: every tried cell's counts against the broker offsets of its own
    topic (its `broker_offset_delta`, read from the broker before the sweep deleted a fresh
    topic), the totals as the sums over the cells, and with --topic (kept) the totals against the
    topic's offsets now. Cells that were not sent have no counts."""
    rows = result["large_message"]["rows"]
    tried = [row for row in rows if not row.get("not_sent")]
    problems = []
    for row in rows:
        name = f"{row['size_label']} {row['compression']}"
        if row.get("not_sent"):
            if row["counts"] is not None:
                problems.append(f"{name}: not sent, but has counts {row['counts']}")
            continue
        counts = row["counts"]
        problems += [f"{name}: {problem}" for problem in count_problems(counts, counts["broker_offset_delta"])]
    for key, total in result["counts"].items():
        cells = sum(row["counts"][key] for row in tried)
        if total != cells:
            problems.append(f"counts.{key} {total} != {cells}, the sum over the cells")
    assert not problems, "count truth violated:\n  " + "\n  ".join(problems) + f"\ncounts: {result['counts']}"
    if result["scenario"]["topic"]:
        assert_counts_match_broker(result, bootstrap_servers, extra=extra)
