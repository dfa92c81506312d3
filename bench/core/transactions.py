"""Transactions around the send path: a producer process that is transactional begins a
transaction, sends `transaction_size` orders through the one send path (bench/core/delivery.py),
and commits it, or aborts it when the schedule says so (`transaction_abort_ratio`).

What the broker's offsets hold afterwards, per partition: the committed records, the aborted
records (written, then marked aborted; a read_committed consumer skips them) and one control
record per transaction and partition it wrote to (the commit or abort marker). So the account
keeps, per partition, committed and aborted records (from each delivery report's partition) and
markers, and the result checks committed + aborted + markers = the broker's offset delta.

Before each commit or abort the producer flushes, so every record of the transaction has its
delivery report (and the transaction its partitions) first; the commit latency is then the
commit_transaction() call alone: EndTxn to the coordinator and the markers written. End-to-end
latency read with read_committed includes the wait for the commit (a record becomes visible
only once its transaction commits).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException

# How long init, commit, abort and the flush before them may take (a broker restarting inside a
# run is the slow case); beyond that the producer fails the run with librdkafka's error.
TRANSACTION_TIMEOUT_S = 60.0
# A commit that failed with a retriable error is tried again this many times.
COMMIT_RETRIES = 3


def aborts(index: int, ratio: float) -> bool:
    """Whether transaction `index` (0, 1, ...) is aborted: exactly `ratio` of every run of
    transactions, spread evenly (ratio 0.1: the 10th, 20th, ...)."""
    return math.floor((index + 1) * ratio + 1e-9) > math.floor(index * ratio + 1e-9)


def transactional_id(run_id: bytes, producer_index: int) -> str:
    """One per producer process and run: a transactional id fences any earlier producer that used
    it, so two processes (or two runs) must never share one."""
    return f"bench-{run_id.hex()}-{producer_index}"


class Transactions:
    """One producer's transactions: begin, end (commit or abort by the schedule), the per-second
    commit latencies and the account the result and the audit need."""

    def __init__(self, client, size: int, abort_ratio: float, partitions_acked: Counter[int]):
        self.client = client
        self.size, self.abort_ratio = size, abort_ratio
        # The delivery callbacks count acked records per partition here (DeliveryAccount).
        self.partitions_acked = partitions_acked
        self.index = 0
        self.start_sequence = 0
        self.open = False
        self.commit_us: list[int] = []
        self.aborted_ranges: list[tuple[int, int]] = []
        self.committed = self.aborted = 0
        self.by_partition: dict[str, Counter[int]] = {"committed": Counter(), "aborted": Counter(), "markers": Counter()}

    def init(self) -> None:
        self.client.init_transactions(TRANSACTION_TIMEOUT_S)

    def begin(self, sequence: int) -> None:
        self.client.begin_transaction()
        self.start_sequence, self.open = sequence, True

    def remaining(self, sequence: int) -> int:
        """Orders still to send in the open transaction."""
        return self.start_sequence + self.size - sequence

    def end(self, sequence: int) -> None:
        """Commit or abort the open transaction (sequences start_sequence..sequence-1). An empty
        one (the run ended right after a begin) is aborted and not counted: it wrote nothing."""
        self.open = False
        self.client.flush(TRANSACTION_TIMEOUT_S)
        partitions = {p: n for p, n in self.partitions_acked.items() if n}
        self.partitions_acked.clear()
        if sequence == self.start_sequence:
            self.client.abort_transaction(TRANSACTION_TIMEOUT_S)
            return
        abort = aborts(self.index, self.abort_ratio)
        if not abort:
            abort = not self._commit()
        if abort:
            self.client.abort_transaction(TRANSACTION_TIMEOUT_S)
            self.aborted += 1
            self.aborted_ranges.append((self.start_sequence, sequence))
        else:
            self.committed += 1
        self.by_partition["aborted" if abort else "committed"].update(partitions)
        self.by_partition["markers"].update(partitions.keys())
        self.index += 1

    def _commit(self) -> bool:
        """commit_transaction(), timed; False when the broker requires an abort instead."""
        for attempt in range(COMMIT_RETRIES + 1):
            started = time.perf_counter_ns()
            try:
                self.client.commit_transaction(TRANSACTION_TIMEOUT_S)
            except KafkaException as error:
                kafka_error = error.args[0]
                if kafka_error.txn_requires_abort():
                    return False
                if kafka_error.retriable() and attempt < COMMIT_RETRIES:
                    continue
                raise
            self.commit_us.append((time.perf_counter_ns() - started) // 1000)
            return True
        return False

    def take_commit_us(self) -> list[int]:
        taken = self.commit_us[:]
        self.commit_us.clear()
        return taken

    def summary(self) -> dict[str, Any]:
        """What ProducerDone carries: counts, the aborted sequence ranges (the audit expects
        them never consumed under read_committed) and per-partition records and markers."""
        return {"committed": self.committed, "aborted": self.aborted,
                "committed_records": sum(self.by_partition["committed"].values()),
                "aborted_records": sum(self.by_partition["aborted"].values()),
                "markers": sum(self.by_partition["markers"].values()),
                "aborted_ranges": list(self.aborted_ranges),
                "by_partition": {name: dict(counts) for name, counts in self.by_partition.items()}}


def merged_by_partition(summaries: list[Mapping[str, Any]]) -> dict[str, dict[int, int]]:
    """committed / aborted / markers -> partition -> count over every producer."""
    merged: dict[str, Counter[int]] = {"committed": Counter(), "aborted": Counter(), "markers": Counter()}
    for summary in summaries:
        for name, counts in summary["by_partition"].items():
            merged[name].update({int(p): n for p, n in counts.items()})
    return {name: dict(counts) for name, counts in merged.items()}


def transactions_section(summaries: list[Mapping[str, Any]], *, isolation_level: str, aborted_consumed: int | None,
                         offset_delta: int | None) -> dict[str, Any]:
    """The result's `transactions`: counts over every producer, what the tracker made of the
    aborted ones, and the offsets check: committed + aborted records + markers against the
    broker's offset delta (null with the reason when the offsets could not be read)."""
    totals = {name: sum(summary[name] for summary in summaries)
              for name in ("committed", "aborted", "committed_records", "aborted_records", "markers")}
    expected = totals["committed_records"] + totals["aborted_records"] + totals["markers"]
    return {
        "transactions": totals["committed"] + totals["aborted"], **totals,
        "isolation_level": isolation_level,
        # read_committed: must be 0 (the audit counts any); read_uncommitted reads them all.
        "aborted_consumed": aborted_consumed,
        "offsets": {"rule": "committed_records + aborted_records + markers = broker_offset_delta "
                            "(one commit or abort marker per transaction and partition it wrote to)",
                    "expected_delta": expected, "broker_offset_delta": offset_delta,
                    "holds": None if offset_delta is None else expected == offset_delta},
    }
