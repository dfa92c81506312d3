"""The large-message sweep: latency, throughput, wire size and client memory by message size
and compression, up to the largest message the client can send (999,999,964 bytes).

For each size the parent starts one producer and one consumer process
(`bench/large_message_worker.py`), so each one's peak memory is its own; for each compression
it creates a fresh topic, has the consumer wait at the partition, asks the producer for one
message at a time (repetitions are sequential: one message in flight), and deletes the topic.
Everything that can be known before sending (client and broker limits) is checked first.

Pure functions (planning, pre-flight, rows, estimates) do no I/O; `run_sweep` does the work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka.admin import AdminClient

from bench.broker.embedded import BrokerInUse
from bench.core.scenario import COMPRESSION_LEVELS, parse_size
from bench.output.results import environment_metadata, utc_iso
from streamstore.admin import broker_configs, delete_topic, ensure_topic, topic_configs, topic_watermarks
from streamstore.config import (
    CLIENT_MESSAGE_MAX_BYTES,
    MAX_VALUE_BYTES,
    PRODUCE_RECORD_SET_MAX_BYTES,
    RECORD_OVERHEAD_BYTES,
)
from streamstore.errors import UsageError

# Decimal units (1 KB = 1000 bytes); the last rung is the client maximum.
DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 300_000_000, MAX_VALUE_BYTES)
QUICK_MAX_SIZE = 100_000_000
DEFAULT_COMPRESSIONS = ("none", "gzip")
SIZE_MAX_KEYWORD = "max"

# A record batch adds a 61-byte header to its records (Kafka's DefaultRecordBatch), and the
# produce request a header with the client id and topic name (at most 249 characters) around it.
RECORD_BATCH_HEADER_BYTES = 61
PRODUCE_REQUEST_OVERHEAD_BYTES = 512

# Slowest rate worth waiting for on a shared 2-core machine (gzip level 9 of random data runs at
# ~20 MB/s alone here, a busy CPU halves that, and the embedded broker read 100 MB at ~6 MB/s
# while other engineers' loads ran): a message gets a fixed allowance plus its size at this
# rate before the sweep calls it failed (1 GB: about 10 minutes).
DELIVERY_BASE_TIMEOUT_S = 120.0
SLOWEST_RATE_BYTES_PER_S = 2_000_000
# The parent waits this much longer than a worker's own deadline before killing it.
WORKER_GRACE_S = 30.0
WORKER_START_TIMEOUT_S = 60.0

# Progress estimates before anything is measured: per-cell set-up (processes, topic, consumer
# warm-up), per-repetition overhead, and a first guess of bytes per second per compression.
CELL_OVERHEAD_S = 3.0
REP_OVERHEAD_S = 0.2
INITIAL_RATE_BYTES_PER_S = {"none": 150_000_000}
INITIAL_COMPRESSED_RATE_BYTES_PER_S = 60_000_000
PROGRESS_REFRESH_S = 0.5

# Targets of issue 4: peak RSS per client for the largest message, and the harness's overhead
# against a bare confluent-kafka script.
PEAK_RSS_TARGET_RATIO = 2.2
# Below this the interpreter and client libraries (~30 MB per process) dominate peak RSS, so a
# ratio to the payload says nothing about how the payload is handled.
PEAK_RSS_TARGET_MIN_SIZE = 100_000_000
BARE_END_TO_END_TARGET_RATIO = 1.15

WIRE_BYTES_SOURCE = (
    "librdkafka statistics: topics.<topic>.batchsize, the record batch as the producer sent it "
    "(after compression); broker_stored_bytes: the partition's log segment files in the broker's "
    "log.dirs, when the broker runs on this host"
)


# ---------------------------------------------------------------------------------------------
# Planning (pure)


def size_label(size_bytes: int) -> str:
    """'100 MB', '1.5 KB', '999 B'; the client maximum is '1 GB (client max)'."""
    if size_bytes == MAX_VALUE_BYTES:
        return "1 GB (client max)"
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size_bytes >= factor:
            return f"{size_bytes / factor:g} {unit}"
    return f"{size_bytes} B"


def parse_size_list(text: str, flag: str = "--sizes") -> list[int]:
    """'1KB,10MB,max' -> sorted distinct byte counts; 'max' is the client maximum."""
    sizes = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        size = MAX_VALUE_BYTES if item.lower() == SIZE_MAX_KEYWORD else parse_size(item, flag)
        if size < 1:
            raise UsageError(f"{flag}: sizes must be at least 1 byte, got {item!r}")
        sizes.add(size)
    if not sizes:
        raise UsageError(f"{flag}: expected sizes like 1KB,10MB,max")
    return sorted(sizes)


def plan_sizes(sizes: Sequence[int] | None, quick: bool, max_size: int | None) -> list[int]:
    """The sizes to sweep: the given ones or the default ladder, capped by --quick/--max-size.

    A --max-size between two rungs of the default ladder becomes the last rung itself.
    """
    cap = min(max_size if max_size is not None else sys.maxsize, QUICK_MAX_SIZE if quick else sys.maxsize)
    planned = [size for size in (sizes or DEFAULT_SIZES) if size <= cap]
    if not sizes and max_size is not None and max_size <= cap and max_size not in planned:
        planned.append(max_size)
    if not planned:
        raise UsageError(f"no size left to sweep: every size is above the cap of {cap:,} bytes (--max-size/--quick)")
    return planned


def adaptive_reps(size_bytes: int, quick: bool) -> int:
    """Several repetitions where they are cheap, one where a repetition costs seconds."""
    if size_bytes <= 1_000_000:
        return 3 if quick else 5
    if size_bytes <= 10_000_000:
        return 1 if quick else 3
    if size_bytes <= 100_000_000:
        return 1 if quick else 2
    return 1


def delivery_timeout_s(size_bytes: int) -> float:
    return DELIVERY_BASE_TIMEOUT_S + size_bytes / SLOWEST_RATE_BYTES_PER_S


def consume_timeout_s(size_bytes: int) -> float:
    """From the consumer's ready to the message in hand: the delivery, then fetch and inflate."""
    return 2 * delivery_timeout_s(size_bytes)


def levelled(compression: str) -> bool:
    """Whether the codec has compression levels (none and snappy do not)."""
    return COMPRESSION_LEVELS[compression] != (-1, -1)


def level_for(compression: str, level: int) -> int:
    return level if levelled(compression) else -1


def check_level(compressions: Sequence[str], level: int) -> None:
    if level == -1:
        return
    with_levels = [c for c in compressions if levelled(c)]
    if not with_levels:
        raise UsageError(f"--level {level}: none of {', '.join(compressions)} has compression levels (gzip, lz4, zstd do)")
    for compression in with_levels:
        low, high = COMPRESSION_LEVELS[compression]
        if not low <= level <= high:
            raise UsageError(f"--level {level}: {compression} accepts -1 or {low}..{high} (-1 = the codec's default)")


# ---------------------------------------------------------------------------------------------
# Pre-flight (pure): what blocks a size, and what it would need


@dataclasses.dataclass(frozen=True)
class Limit:
    """A size limit read from the broker: the whole batch or the whole request must fit."""

    setting: str  # as the user would look it up, e.g. "broker message.max.bytes"
    value: int
    covers: str  # "batch" or "request"


def batch_bytes_bound(size_bytes: int) -> int:
    """An upper bound of the record batch carrying one value of size_bytes, uncompressed.

    Compressed batches are usually smaller, but librdkafka sends a batch uncompressed when
    compression does not make it smaller, so this is what the broker must accept.
    """
    return size_bytes + RECORD_OVERHEAD_BYTES + RECORD_BATCH_HEADER_BYTES


def known_unsendable(size_bytes: int, compression: str, payload: str) -> str | None:
    """Why a cell cannot be delivered although every setting allows it, or None.

    Only an uncompressed batch is sure to exceed the request limit: none, or random data that
    librdkafka sends uncompressed; a compressible payload shrinks far below it.
    """
    if batch_bytes_bound(size_bytes) <= PRODUCE_RECORD_SET_MAX_BYTES:
        return None
    if compression != "none" and payload != "random":
        return None
    return (f"not sent: an uncompressed batch above {PRODUCE_RECORD_SET_MAX_BYTES:,} bytes never arrives "
            "(librdkafka 2.16 encodes the ProduceRequest record-set size in a 4-byte varint)")


def needed_bytes(size_bytes: int, limit: Limit) -> int:
    batch = batch_bytes_bound(size_bytes)
    return batch + PRODUCE_REQUEST_OVERHEAD_BYTES if limit.covers == "request" else batch


def largest_passing_size(limits: Sequence[Limit]) -> int:
    """The largest value size every limit (and the client) lets through."""
    largest = MAX_VALUE_BYTES
    for limit in limits:
        overhead = needed_bytes(0, limit)
        largest = min(largest, limit.value - overhead)
    return largest


def preflight_problem(sizes: Sequence[int], limits: Sequence[Limit]) -> str | None:
    """One line naming what blocks the largest blocked size, or None when every size can pass."""
    for size in sorted(sizes, reverse=True):
        if size > MAX_VALUE_BYTES:
            return (
                f"{size:,} bytes is above the client limit: librdkafka caps message.max.bytes at "
                f"{CLIENT_MESSAGE_MAX_BYTES:,}, so the largest value it sends (no key, no headers) is "
                f"{MAX_VALUE_BYTES:,} bytes (--sizes max)"
            )
        blocking = [limit for limit in limits if needed_bytes(size, limit) > limit.value]
        if blocking:
            needs = "; ".join(
                f"{limit.setting} is {limit.value:,}, it needs at least {needed_bytes(size, limit):,}" for limit in blocking
            )
            largest = largest_passing_size(limits)
            lower = f"or lower --max-size to {largest:,}" if largest > 0 else "no size can pass"
            return f"{size_label(size)} ({size:,} bytes) cannot pass: {needs} ({lower})"
    return None


def limits_from_configs(broker: Mapping[str, str], topic: Mapping[str, str] | None, topic_name: str | None) -> list[Limit]:
    """The limits that apply: an existing topic's own settings, else the broker's defaults
    (the sweep creates its topics with the broker's message.max.bytes)."""
    limits = [Limit("broker socket.request.max.bytes", int(broker["socket.request.max.bytes"]), "request")]
    if topic is not None:
        limits.append(Limit(f"topic '{topic_name}' max.message.bytes", int(topic["max.message.bytes"]), "batch"))
        limits.append(Limit(f"topic '{topic_name}' segment.bytes", int(topic["segment.bytes"]), "batch"))
    else:
        limits.append(Limit("broker message.max.bytes", int(broker["message.max.bytes"]), "batch"))
        limits.append(Limit("broker log.segment.bytes", int(broker["log.segment.bytes"]), "batch"))
    return limits


# ---------------------------------------------------------------------------------------------
# Rows and findings (pure)


def cell_row(
    size_bytes: int,
    compression: str,
    produce_ms: Sequence[float],
    end_to_end_ms: Sequence[float],
    wire_bytes: Sequence[int],
    broker_stored_bytes: int | None,
    producer_peak_rss_bytes: int | None,
    consumer_peak_rss_bytes: int | None,
    error: str | None,
    broker_messages: int | None = None,
) -> dict[str, Any]:
    """One size x compression as result.json stores it (latencies in ms, p50 and max over reps)."""

    def p50_max(values: Sequence[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {"p50": round(statistics.median(values), 3), "max": round(max(values), 3)}

    end_to_end = p50_max(end_to_end_ms)
    wire = int(statistics.median(wire_bytes)) if wire_bytes else None
    return {
        "size_bytes": size_bytes,
        "size_label": size_label(size_bytes),
        "compression": compression,
        "reps": len(end_to_end_ms),
        "produce_latency_ms": p50_max(produce_ms),
        "end_to_end_ms": end_to_end,
        # Uncompressed payload through the whole pipeline (produce call -> consumed), at p50.
        "throughput_mb_s": round(size_bytes / 1e6 / (end_to_end["p50"] / 1000), 3) if end_to_end else None,
        "wire_bytes": wire,
        "broker_stored_bytes": broker_stored_bytes,
        # How far the cell's topic offsets grew (read from the broker): one message per rep.
        "broker_messages": broker_messages,
        # Four significant figures: 0.9999 (batch overhead) must not round to 1.
        "compression_ratio": float(f"{size_bytes / wire:.4g}") if wire else None,
        # librdkafka sends the batch uncompressed when compressing does not make it smaller.
        "compression_skipped": compression != "none" and wire is not None and wire >= size_bytes,
        "producer_peak_rss_bytes": producer_peak_rss_bytes,
        "consumer_peak_rss_bytes": consumer_peak_rss_bytes,
        "samples": {"produce_latency_ms": [round(v, 3) for v in produce_ms],
                    "end_to_end_ms": [round(v, 3) for v in end_to_end_ms]},
        "error": error,
    }


def memory_findings(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Peak RSS of each client over the payload size, for the largest size that succeeded
    (when it is large enough for the ratio to mean something)."""
    succeeded = [row for row in rows if not row.get("error") and row["size_bytes"] >= PEAK_RSS_TARGET_MIN_SIZE]
    if not succeeded:
        return []
    largest = max(row["size_bytes"] for row in succeeded)
    findings = []
    for row in succeeded:
        if row["size_bytes"] != largest:
            continue
        for client in ("producer", "consumer"):
            peak = row.get(f"{client}_peak_rss_bytes")
            if peak is None:
                continue
            ratio = peak / row["size_bytes"]
            findings.append({
                "size_bytes": largest, "compression": row["compression"], "client": client,
                "peak_rss_bytes": peak, "ratio_to_payload": round(ratio, 3),
                "target_ratio": PEAK_RSS_TARGET_RATIO, "met": ratio <= PEAK_RSS_TARGET_RATIO,
            })
    return findings


def bare_comparison(harness_end_to_end_ms: Sequence[float], bare_end_to_end_ms: Sequence[float],
                    size_bytes: int, bare_peak_rss_bytes: int | None) -> dict[str, Any]:
    harness = statistics.median(harness_end_to_end_ms)
    bare = statistics.median(bare_end_to_end_ms)
    return {
        "size_bytes": size_bytes, "compression": "none",
        "harness_end_to_end_ms": round(harness, 3), "bare_end_to_end_ms": round(bare, 3),
        "harness_samples_ms": [round(v, 3) for v in harness_end_to_end_ms],
        "bare_samples_ms": [round(v, 3) for v in bare_end_to_end_ms],
        "ratio": round(harness / bare, 3), "target_ratio": BARE_END_TO_END_TARGET_RATIO,
        "met": harness / bare <= BARE_END_TO_END_TARGET_RATIO,
        "bare_peak_rss_bytes": bare_peak_rss_bytes,
    }


def estimate_rep_s(size_bytes: int, compression: str, rates: Mapping[str, float]) -> float:
    initial = INITIAL_RATE_BYTES_PER_S.get(compression, INITIAL_COMPRESSED_RATE_BYTES_PER_S)
    return REP_OVERHEAD_S + size_bytes / rates.get(compression, initial)


def estimate_remaining_s(cells: Sequence[tuple[int, str, int]], rates: Mapping[str, float]) -> float:
    """Seconds for the (size, compression, reps) cells still to run, at the rates seen so far."""
    return sum(CELL_OVERHEAD_S + reps * estimate_rep_s(size, compression, rates) for size, compression, reps in cells)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def format_row(row: Mapping[str, Any]) -> str:
    """One line per cell for the console."""
    label = f"{size_label(row['size_bytes']):>18}  {row['compression']:<5}"
    if row.get("error"):
        return f"{label}  {row['error']}" if row.get("not_sent") else f"{label}  FAILED: {row['error']}"
    ratio = row.get("compression_ratio")
    skipped = " (compression skipped)" if row.get("compression_skipped") else ""
    wire = f"wire {row['wire_bytes']:,} B (x{ratio:g}){skipped}" if ratio else "wire ?"
    peaks = [row.get("producer_peak_rss_bytes"), row.get("consumer_peak_rss_bytes")]
    memory = "/".join("?" if p is None else f"{p / 1e6:,.0f}" for p in peaks)
    return (
        f"{label}  x{row['reps']}  produce p50 {row['produce_latency_ms']['p50']:>10,.1f} ms  "
        f"end-to-end p50 {row['end_to_end_ms']['p50']:>10,.1f} ms  {row['throughput_mb_s']:>8,.1f} MB/s  "
        f"peak RSS prod/cons {memory} MB  {wire}"
    )


# ---------------------------------------------------------------------------------------------
# Progress


class SweepProgress:
    """A bar with the current cell and an ETA for the whole sweep (plain lines off a TTY)."""

    def __init__(self, cells: Sequence[tuple[int, str, int]], stream: TextIO = sys.stderr) -> None:
        self.pending = list(cells)
        self.total_s = estimate_remaining_s(cells, {})
        self.stream = stream
        self.interactive = stream.isatty()
        self.rates: dict[str, float] = {}
        self.started = time.monotonic()
        self.current = ""
        self.cell_started = self.started
        self.cell_estimate_s = 0.0
        self._last_draw = 0.0

    def start(self, size_bytes: int, compression: str, rep: int, reps: int) -> None:
        self.current = f"{size_label(size_bytes)} {compression} rep {rep}/{reps}"
        if rep == 1:
            self.cell_started = time.monotonic()
            self.cell_estimate_s = estimate_remaining_s(self.pending[:1], self.rates)
        self.draw(force=True, line=not self.interactive and rep == 1)

    def rep_done(self, size_bytes: int, compression: str, elapsed_s: float) -> None:
        # Only messages big enough for their transfer to dominate say anything about the rate.
        if size_bytes >= 1_000_000 and elapsed_s > REP_OVERHEAD_S:
            self.rates[compression] = size_bytes / (elapsed_s - REP_OVERHEAD_S)

    def cell_done(self) -> None:
        if self.pending:
            self.pending.pop(0)

    def eta_s(self) -> float:
        in_cell = max(0.0, self.cell_estimate_s - (time.monotonic() - self.cell_started))
        return in_cell + estimate_remaining_s(self.pending[1:], self.rates)

    def draw(self, force: bool = False, line: bool = False) -> None:
        now = time.monotonic()
        if not force and (not self.interactive or now - self._last_draw < PROGRESS_REFRESH_S):
            return
        self._last_draw = now
        elapsed = now - self.started
        eta = self.eta_s()
        fraction = elapsed / (elapsed + eta) if elapsed + eta > 0 else 0.0
        text = (f"{self.current:<34} elapsed {format_duration(elapsed)}  ETA {format_duration(eta)}")
        if self.interactive:
            filled = int(fraction * 24)
            self.stream.write(f"\r[{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%} {text}\033[K")
        elif line:
            self.stream.write(f"[{fraction:4.0%}] {text}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\r\033[K")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------
# Worker processes


class CellFailed(Exception):
    """One size x compression could not be measured; the sweep records it and goes on."""


class _Worker:
    """A worker process (`bench.large_message.worker`) spoken to in JSON lines."""

    def __init__(self, role: str, arguments: Sequence[str], progress: SweepProgress) -> None:
        self.role = role
        self.progress = progress
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.large_message.worker", role, *arguments],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=False,
        )
        self._buffer = b""

    def send(self, **command: Any) -> None:
        try:
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise CellFailed(self._died()) from None

    def receive(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise CellFailed(f"{self.role} process gave no answer within {timeout_s:.0f} s (killed)")
            readable, _, _ = select.select([fd], [], [], min(remaining, PROGRESS_REFRESH_S))
            self.progress.draw()
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise CellFailed(self._died())
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _died(self) -> str:
        code = self.process.wait()
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().splitlines() if line.strip()]
        # Killed by the kernel's OOM killer shows as SIGKILL with no last words.
        reason = lines[-1] if lines else ("killed (out of memory?)" if code == -9 else "no output")
        return f"{self.role} process exited with code {code}: {reason}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        self._stderr.close()


# ---------------------------------------------------------------------------------------------
# The sweep


@dataclasses.dataclass(frozen=True)
class SweepOptions:
    sizes: tuple[int, ...]
    compressions: tuple[str, ...]
    level: int = -1
    payload: str = "order"
    reps: int | None = None  # None: adaptive_reps
    quick: bool = False
    topic: str | None = None  # None: a fresh topic per size x compression, deleted after
    compare_bare: bool = False

    def reps_for(self, size_bytes: int) -> int:
        return self.reps if self.reps is not None else adaptive_reps(size_bytes, self.quick)

    def cells(self) -> list[tuple[int, str, int]]:
        return [(size, compression, self.reps_for(size)) for size in self.sizes for compression in self.compressions]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "large-message", "sizes": list(self.sizes), "compressions": list(self.compressions),
            "compression_level": self.level, "payload": self.payload,
            "reps": {str(size): self.reps_for(size) for size in self.sizes}, "quick": self.quick,
            "topic": self.topic, "compare_bare": self.compare_bare,
        }

    def fingerprint(self) -> str:
        """16 hex chars over what makes two sweeps comparable (not the topic or --compare-bare)."""
        fields = {k: v for k, v in self.to_dict().items() if k not in ("topic", "compare_bare")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


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

    def _start_producer(self, size: int) -> tuple[_Worker, int]:
        producer = _Worker("producer", ["--bootstrap-servers", self.bootstrap_servers, "--size", str(size),
                                        "--payload", self.options.payload], self.progress)
        ready = producer.receive(WORKER_START_TIMEOUT_S + size / SLOWEST_RATE_BYTES_PER_S)
        return producer, ready["crc32"]

    def _start_consumer(self) -> _Worker:
        return _Worker("consumer", ["--bootstrap-servers", self.bootstrap_servers,
                                    "--group", f"bench-large-message-{self.run_id[:8]}"], self.progress)

    def _run_cell(self, size: int, compression: str, reps: int, producer: _Worker, consumer: _Worker,
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


def failed_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cells that were tried and failed (cells known to be unsendable are not tried)."""
    return [row for row in rows if row["error"] and not row.get("not_sent")]


def sweep_result(options: SweepOptions, sweep: LargeMessageSweep, broker: BrokerInUse,
                 topic_settings: Mapping[str, str] | None, started_at: float, status: str,
                 failure: str | None) -> dict[str, Any]:
    """The result.json document of a sweep (kind "large-message", schema v1)."""
    rows = sweep.rows
    ended_at = time.time()
    failed = failed_rows(rows)
    # A rep counts once its message came back from the consumer with the producer's size and
    # crc32, so every acked message of a completed cell was consumed.
    acked = sum(row["reps"] for row in rows)
    measured = [row.get("broker_messages") for row in rows if row["reps"]]
    broker_offset_delta = sum(measured) if None not in measured else None
    warnings = []
    if broker_offset_delta is not None and broker_offset_delta != acked:
        warnings.append(f"broker offsets grew by {broker_offset_delta:,} but {acked:,} messages were acked")
    skipped = sorted({row["size_label"] for row in rows if row["compression_skipped"]})
    if skipped:
        warnings.append(
            f"compression skipped by librdkafka (compressed batch not smaller) for: {', '.join(skipped)}; "
            f"payload '{options.payload}' does not compress"
        )
    not_sent = [f"{row['size_label']} {row['compression']}" for row in rows if row.get("not_sent")]
    if not_sent:
        warnings.append(f"not sent (librdkafka cannot deliver an uncompressed batch above "
                        f"{PRODUCE_RECORD_SET_MAX_BYTES:,} bytes): {', '.join(not_sent)}")
    for finding in memory_findings(rows):
        if not finding["met"]:
            warnings.append(
                f"{finding['client']} peak RSS {finding['ratio_to_payload']:g}x the payload for "
                f"{size_label(finding['size_bytes'])} {finding['compression']} (target <= {PEAK_RSS_TARGET_RATIO}x)"
            )
    if sweep.bare and sweep.bare.get("ratio") and not sweep.bare["met"]:
        warnings.append(f"harness end-to-end {sweep.bare['ratio']:g}x the bare script's (target <= "
                        f"{BARE_END_TO_END_TARGET_RATIO}x)")
    environment = environment_metadata()
    environment["producer_and_tracker_same_host"] = True
    return {
        "kind": "large-message",
        "run_id": sweep.run_id,
        "scenario": options.to_dict(),
        "fingerprint": options.fingerprint(),
        "environment": environment,
        "broker": {"bootstrap_servers": broker.bootstrap_servers, "version": broker.version,
                   "embedded": broker.embedded is not None, "settings": dict(broker.settings),
                   "topic_settings": dict(topic_settings) if topic_settings else {}},
        "started_at": utc_iso(started_at), "ended_at": utc_iso(ended_at),
        "duration_s": round(ended_at - started_at, 3), "warmup_s": 0,
        "status": status, "failure": failure,
        "counts": {"sent": acked + len(failed), "acked": acked, "failed": len(failed), "consumed": acked,
                   "lost": 0, "duplicated": 0, "malformed": 0, "broker_offset_delta": broker_offset_delta},
        "latency_us": {}, "series": {}, "events": [], "warnings": warnings,
        "large_message": {
            "rows": rows,
            "client_max_value_bytes": MAX_VALUE_BYTES,
            "wire_bytes_source": WIRE_BYTES_SOURCE,
            "memory": memory_findings(rows),
            "bare_comparison": sweep.bare,
        },
    }
