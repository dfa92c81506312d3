"""The large-message sweep: latency, throughput, wire size and client memory by message size
and compression, up to the largest message the client can send (999,999,964 bytes).

For each size the parent starts one producer and one consumer process
(`bench/large_message/worker.py`), so each one's peak memory is its own; for each compression
it creates a fresh topic, has the consumer wait at the partition, asks the producer for one
message at a time (repetitions are sequential: one message in flight), and deletes the topic.
Everything that can be known before sending (client and broker limits) is checked first.

This module does the work against the broker; the pure parts live beside it: `plan` (sizes,
limits, pre-flight, options), `result` (rows, findings, the result document), `progress` (the
display and its estimates), `process` (talking to a worker process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench.large_message.plan import (
    SLOWEST_RATE_BYTES_PER_S,
    Limit,
    SweepOptions,
    consume_timeout_s,
    delivery_timeout_s,
    known_unsendable,
    level_for,
    limits_from_configs,
    preflight_problem,
)
from bench.large_message.process import WORKER_GRACE_S, WORKER_START_TIMEOUT_S, CellFailed, WorkerProcess
from bench.large_message.progress import SweepProgress
from bench.large_message.result import bare_comparison, cell_row
from streamstore.admin import broker_configs, delete_topic, ensure_topic, topic_configs, topic_watermarks
from streamstore.errors import UsageError


def read_limits(admin: AdminClient, topic: str | None) -> tuple[list[Limit], dict[str, str], dict[str, str] | None]:
    """(limits, broker configs, the existing topic's configs or None)."""
    broker = broker_configs(admin)
    existing = None
    if topic is not None and topic in admin.list_topics(timeout=10).topics:
        existing = topic_configs(admin, topic)
    return limits_from_configs(broker, existing, topic), broker, existing


def preflight(options: SweepOptions, admin: AdminClient) -> tuple[dict[str, str], dict[str, str] | None]:
    """Raise UsageError naming the blocking setting before anything is sent."""
    limits, broker, topic = read_limits(admin, options.topic)
    problem = preflight_problem(options.sizes, limits)
    if problem:
        raise UsageError(problem)
    return broker, topic


def _stored_bytes(log_dirs: str | None, topic: str) -> int | None:
    """Bytes of the partition's log segments when the broker's log dir is on this host."""
    for log_dir in (log_dirs or "").split(","):
        partition_dir = Path(log_dir.strip()) / f"{topic}-0"
        if log_dir.strip() and partition_dir.is_dir():
            return sum(path.stat().st_size for path in partition_dir.glob("*.log"))
    return None


class LargeMessageSweep:
    """Runs the cells of a sweep against one broker and collects their rows."""

    def __init__(self, options: SweepOptions, bootstrap_servers: str, admin: AdminClient,
                 broker_settings: Mapping[str, str], progress: SweepProgress,
                 on_row: Callable[[dict[str, Any]], None] = lambda row: None) -> None:
        self.options = options
        self.bootstrap_servers = bootstrap_servers
        self.admin = admin
        self.broker_settings = broker_settings
        self.progress = progress
        self.on_row = on_row
        self.rows: list[dict[str, Any]] = []
        self.bare: dict[str, Any] | None = None
        self.run_id = uuid.uuid4().hex
        self._topics_to_delete: list[str] = []

    def run(self) -> None:
        try:
            for size in self.options.sizes:
                self._run_size(size)
        finally:
            self._delete_topics()

    def _new_topic(self, purpose: str) -> tuple[str, int]:
        """(topic, offset where this cell's messages start)."""
        if self.options.topic is not None:
            created = ensure_topic(self.admin, self.options.topic,
                                   max_message_bytes=int(self.broker_settings["message.max.bytes"]))
            if created:
                self._topics_to_delete.append(self.options.topic)
            high = topic_watermarks(self.bootstrap_servers, self.options.topic)[0][1]
            return self.options.topic, high
        topic = f"bench-large-message-{self.run_id[:8]}-{purpose}"
        # The broker's own limit, so the sweep measures the broker as configured.
        ensure_topic(self.admin, topic, max_message_bytes=int(self.broker_settings["message.max.bytes"]))
        self._topics_to_delete.append(topic)
        return topic, 0

    def _delete_topics(self) -> None:
        while self._topics_to_delete:
            topic = self._topics_to_delete.pop()
            delete_topic(self.admin, topic)

    def _run_size(self, size: int) -> None:
        producer = consumer = None
        try:
            for compression in self.options.compressions:
                reps = self.options.reps_for(size)
                unsendable = known_unsendable(size, compression, self.options.payload)
                if unsendable:
                    row = {**cell_row(size, compression, [], [], [], None, None, None, unsendable), "not_sent": True}
                    self.rows.append(row)
                    self.progress.cell_done()
                    self.on_row(row)
                    continue
                try:
                    if producer is None or producer.process.poll() is not None:
                        producer, crc32 = self._start_producer(size)
                    if consumer is None or consumer.process.poll() is not None:
                        consumer = self._start_consumer()
                    row = self._run_cell(size, compression, reps, producer, consumer, crc32)
                except CellFailed as failure:
                    row = cell_row(size, compression, [], [], [], None, None, None, str(failure))
                    for worker in (producer, consumer):
                        if worker is not None:
                            worker.kill()
                    producer = consumer = None
                self.rows.append(row)
                self.progress.cell_done()
                self.on_row(row)
                if self.options.compare_bare and compression == "none" and size == max(self.options.sizes):
                    self._compare_bare(size, row)
        finally:
            for worker in (producer, consumer):
                if worker is not None:
                    worker.close()

    def _start_producer(self, size: int) -> tuple[WorkerProcess, int]:
        producer = WorkerProcess("producer", ["--bootstrap-servers", self.bootstrap_servers, "--size", str(size),
                                        "--payload", self.options.payload], self.progress.draw)
        ready = producer.receive(WORKER_START_TIMEOUT_S + size / SLOWEST_RATE_BYTES_PER_S)
        return producer, ready["crc32"]

    def _start_consumer(self) -> WorkerProcess:
        return WorkerProcess("consumer", ["--bootstrap-servers", self.bootstrap_servers,
                                    "--group", f"bench-large-message-{self.run_id[:8]}"], self.progress.draw)

    def _run_cell(self, size: int, compression: str, reps: int, producer: WorkerProcess, consumer: WorkerProcess,
                  crc32: int) -> dict[str, Any]:
        topic, offset = self._new_topic(f"{size}-{compression}")
        deliver_s = delivery_timeout_s(size)
        consume_s = consume_timeout_s(size)
        consumer.send(cmd="consume", topic=topic, offset=offset, count=reps, timeout_s=consume_s)
        if consumer.receive(WORKER_START_TIMEOUT_S)["event"] != "ready":
            raise CellFailed("consumer did not get ready")
        produce_ms, end_to_end_ms, wire = [], [], []
        error = None
        for rep in range(1, reps + 1):
            self.progress.start(size, compression, rep, reps)
            producer.send(cmd="produce", topic=topic, compression=compression,
                          level=level_for(compression, self.options.level),
                          timeout_s=deliver_s)
            produced = producer.receive(deliver_s + WORKER_GRACE_S)
            if produced["error"]:
                error = f"produce: {produced['error']}"
                break
            consumed = consumer.receive(consume_s + WORKER_GRACE_S)
            if consumed["error"]:
                error = f"consume: {consumed['error']}"
                break
            if consumed["size_bytes"] != size or consumed["crc32"] != crc32:
                error = (f"consume: message at offset {consumed['offset']} differs from what was sent "
                         f"({consumed['size_bytes']:,} bytes, crc32 {consumed['crc32']:#x} vs {crc32:#x})")
                break
            produce_ms.append((produced["acked_ns"] - produced["sent_ns"]) / 1e6)
            end_to_end_ms.append((consumed["received_ns"] - produced["sent_ns"]) / 1e6)
            if produced["wire_bytes"] is not None and produced["batches"] == 1:
                wire.append(produced["wire_bytes"])
            self.progress.rep_done(size, compression, end_to_end_ms[-1] / 1000)
        if error is not None:
            # The workers may be mid-message: start fresh ones for the next cell.
            raise CellFailed(error)
        producer.send(cmd="peak")
        consumer.send(cmd="peak")
        producer_peak = producer.receive(WORKER_GRACE_S)["peak_rss_bytes"]
        consumer_peak = consumer.receive(WORKER_GRACE_S)["peak_rss_bytes"]
        broker_messages = topic_watermarks(self.bootstrap_servers, topic)[0][1] - offset
        stored = None
        if self.options.topic is None:
            log_bytes = _stored_bytes(self.broker_settings.get("log.dirs"), topic)
            stored = log_bytes // reps if log_bytes is not None else None
            self._topics_to_delete.remove(topic)
            delete_topic(self.admin, topic)
        return cell_row(size, compression, produce_ms, end_to_end_ms, wire, stored, producer_peak, consumer_peak, None,
                        broker_messages)

    def _compare_bare(self, size: int, harness_row: Mapping[str, Any]) -> None:
        """The bare script right after the harness's cell, same size and payload, same reps."""
        if harness_row.get("error"):
            self.bare = {"size_bytes": size, "error": "harness cell failed; nothing to compare"}
            return
        topic, _ = self._new_topic(f"{size}-bare")
        reps = harness_row["reps"]
        self.progress.start(size, "bare", 1, reps)
        timeout_s = delivery_timeout_s(size)
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "bench.large_message.bare", "--bootstrap-servers", self.bootstrap_servers,
                 "--topic", topic, "--size", str(size), "--payload", self.options.payload, "--reps", str(reps),
                 "--timeout", str(timeout_s)],
                capture_output=True, text=True, timeout=reps * 2 * timeout_s + WORKER_GRACE_S,
            )
            lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
        except subprocess.TimeoutExpired:
            lines = [{"error": f"bare script gave no answer within {reps * 2 * timeout_s:.0f} s"}]
        finally:
            if self.options.topic is None:
                self._topics_to_delete.remove(topic)
                delete_topic(self.admin, topic)
        errors = [line["error"] for line in lines if "error" in line]
        samples = [line["end_to_end_ms"] for line in lines if "end_to_end_ms" in line]
        if errors or not samples:
            detail = errors[0] if errors else (completed.stderr.strip().splitlines() or ["no output"])[-1]
            self.bare = {"size_bytes": size, "error": detail}
            return
        peak = next((line["peak_rss_bytes"] for line in lines if "peak_rss_bytes" in line), None)
        self.bare = bare_comparison(harness_row["samples"]["end_to_end_ms"], samples, size, peak)
