"""One cell of the large-message sweep: one size x compression, its repetitions one message at a
time, what the consumer received, and the audit of that against what the broker acknowledged.

The consumer waits at the partition before the first message is produced, so its receive time
minus the producer's send time is the end-to-end latency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bench.large_message.plan import consume_timeout_s, delivery_timeout_s, level_for
from bench.large_message.process import WORKER_GRACE_S, WORKER_START_TIMEOUT_S, CellFailed, WorkerProcess
from bench.large_message.progress import SweepProgress
from bench.large_message.result import NOTHING_RECEIVED, cell_counts, cell_row


class CellTopics(Protocol):
    """What a cell needs of the sweep's topics (see `SweepTopics`)."""

    def new(self, purpose: str) -> tuple[str, int]: ...

    def high_watermark(self, topic: str) -> int: ...

    def messages_since(self, topic: str, offset: int) -> int | None: ...

    def release(self, topic: str, messages: int) -> int | None: ...


class CellRun:
    """Runs one cell with the size's producer and consumer processes and builds its row.

    `broken` says the workers may be mid-message after a failure: the caller replaces them.
    """

    def __init__(self, size: int, compression: str, reps: int, level: int, payload: Mapping[str, int],
                 producer: WorkerProcess, consumer: WorkerProcess, topics: CellTopics, progress: SweepProgress) -> None:
        self.size, self.compression, self.reps, self.level = size, compression, reps, level
        # The producer's payload as it reported it: size_bytes and crc32, checked by the consumer.
        self.payload = payload
        self.producer, self.consumer, self.topics, self.progress = producer, consumer, topics, progress
        self.deliver_s, self.consume_s = delivery_timeout_s(size), consume_timeout_s(size)
        self.produce_ms: list[float] = []
        self.end_to_end_ms: list[float] = []
        self.wire: list[int] = []
        self.sent = self.acked = 0
        self.tally = dict(NOTHING_RECEIVED)
        self.consumer_end: str | None = None
        self.error: str | None = None
        self.broken = False

    def run(self) -> dict[str, Any]:
        topic, start = self.topics.new(f"{self.size}-{self.compression}")
        try:
            self._exchange(topic, start)
        except CellFailed as failure:
            self.error, self.broken = str(failure), True
        peaks = self._peaks() if not self.broken else (None, None)
        broker_offset_delta = self.topics.messages_since(topic, start)
        # A broken cell's topic stays until the end of the sweep: its workers are still to be killed.
        stored = None if self.broken else self.topics.release(topic, self.acked)
        counts = cell_counts(self.sent, self.acked, self.tally, self.consumer_end, broker_offset_delta, self.error)
        if counts.lost and self.error is None:
            self.error = f"lost {counts.lost:,} of {self.acked:,} acked message(s): {self._loss_cause()}"
        return cell_row(self.size, self.compression, self.produce_ms, self.end_to_end_ms, self.wire, stored, *peaks,
                        self.error, counts)

    def _exchange(self, topic: str, start: int) -> None:
        self._start_consumer(topic, start, self.reps, None)
        for rep in range(1, self.reps + 1):
            self.progress.start(self.size, self.compression, rep, self.reps)
            produced = self._produce(topic)
            consumed = self._next_message()
            if consumed is None:
                return  # the consumer gave up waiting: the audit counts what is missing
            self.end_to_end_ms.append((consumed["received_ns"] - produced["sent_ns"]) / 1e6)
            self.progress.rep_done(self.size, self.compression, self.end_to_end_ms[-1] / 1000)
        while self._next_message() is not None:
            pass

    def _produce(self, topic: str) -> dict[str, Any]:
        self.producer.send(cmd="produce", topic=topic, compression=self.compression,
                           level=level_for(self.compression, self.level), timeout_s=self.deliver_s)
        self.sent += 1
        produced = self.producer.receive(self.deliver_s + WORKER_GRACE_S)
        if produced["error"]:
            raise CellFailed(f"produce: {produced['error']}")
        self.acked += 1
        self.produce_ms.append((produced["acked_ns"] - produced["sent_ns"]) / 1e6)
        if produced["wire_bytes"] is not None and produced["batches"] == 1:
            self.wire.append(produced["wire_bytes"])
        return produced

    def _start_consumer(self, topic: str, offset: int, count: int, end_offset: int | None) -> None:
        self.consumer.send(cmd="consume", topic=topic, offset=offset, count=count, end_offset=end_offset,
                           timeout_s=self.consume_s, size_bytes=self.payload["size_bytes"], crc32=self.payload["crc32"])
        ready = self.consumer.receive(WORKER_START_TIMEOUT_S)
        if ready["event"] != "ready":
            raise CellFailed(f"consumer did not get ready: {ready.get('error') or ready}")

    def _next_message(self) -> dict[str, Any] | None:
        """The consumer's next message not seen before in this cell, or None once it is done."""
        while True:
            reply = self.consumer.receive(self.consume_s + WORKER_GRACE_S)
            self.tally = {key: reply[key] for key in self.tally}
            if reply["event"] == "done":
                self.consumer_end = reply["reason"]
                if reply["error"]:
                    raise CellFailed(f"consume: {reply['error']}")
                return None
            if not reply["intact"]:
                raise CellFailed(f"consume: message at offset {reply['offset']} differs from what was sent "
                                 f"({reply['size_bytes']:,} bytes, crc32 {reply['crc32']:#x} vs "
                                 f"{self.payload['size_bytes']:,} bytes, crc32 {self.payload['crc32']:#x})")
            if not reply["duplicate"]:
                return reply

    def _peaks(self) -> tuple[int | None, int | None]:
        try:
            self.producer.send(cmd="peak")
            self.consumer.send(cmd="peak")
            return (self.producer.receive(WORKER_GRACE_S)["peak_rss_bytes"],
                    self.consumer.receive(WORKER_GRACE_S)["peak_rss_bytes"])
        except CellFailed as failure:
            self.error, self.broken = f"peak memory: {failure}", True
            return None, None

    def _loss_cause(self) -> str:
        if self.consumer_end == "timeout":
            return f"no message within {self.consume_s:,.0f} s"
        return "the consumer read past their offsets (the broker no longer held them)"
