"""Planning the large-message sweep (pure: no I/O, no printing): the sizes and repetitions to
sweep, compression levels, timeouts, the sweep's options, and the pre-flight check of every size
against the client, broker and topic limits before anything is sent."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from bench.core.field_checks import parse_size
from bench.core.scenario import COMPRESSION_LEVELS
from bench.results.redaction import redact_secrets
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


# ---------------------------------------------------------------------------------------------
# Planning


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


# Up to this size EndToEndLatency's first message (in a cold JVM, which also fetches metadata and opens
# connections) would weigh on the figure: the Java peer sends one more message and leaves it out.
JAVA_WARMUP_MAX_SIZE = 100_000_000


def java_messages(size_bytes: int, reps: int) -> tuple[int, bool]:
    """(messages EndToEndLatency sends for a cell, whether the first is a warm-up left out)."""
    warmup = size_bytes <= JAVA_WARMUP_MAX_SIZE
    return reps + (1 if warmup else 0), warmup


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
# Pre-flight: what blocks a size, and what it would need


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
    return (f"not sent: librdkafka (2.5 and later, this one included) cannot deliver a batch above "
            f"{PRODUCE_RECORD_SET_MAX_BYTES:,} bytes after compression: it writes the ProduceRequest's record-set "
            "length as a varint into 4 reserved bytes, and a length that needs a 5th byte is left out instead of "
            "failing, so the broker reads no records (NullPointerException) and the client times out. A "
            "librdkafka bug, not a Kafka limit: Kafka's Java client sends it (--peer java)")


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
# Client settings and the options of a sweep

# What the sweep sets itself on its producer, consumer and admin clients: --client-config may not
# change them (they are what the sweep measures with, or what makes a 1 GB message pass).
SWEEP_OWNED_CLIENT_KEYS = dict.fromkeys((
    "bootstrap.servers", "metadata.broker.list", "group.id", "logger",
    "message.max.bytes", "compression.type", "compression.codec", "compression.level",
    "message.timeout.ms", "delivery.timeout.ms", "socket.timeout.ms", "linger.ms", "queue.buffering.max.ms",
    "queue.buffering.max.kbytes", "delivery.report.only.error", "statistics.interval.ms",
    "enable.auto.commit", "auto.offset.reset", "fetch.max.bytes", "receive.message.max.bytes",
), "the sweep itself and cannot be changed")


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
    # "java": Kafka's EndToEndLatency beside each cell (bench/peers/java.py); None: the harness alone.
    peer: str | None = None
    # librdkafka settings for every client of the sweep (security: SASL, SSL), see --client-config.
    client_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def reps_for(self, size_bytes: int) -> int:
        return self.reps if self.reps is not None else adaptive_reps(size_bytes, self.quick)

    def cells(self) -> list[tuple[int, str, int]]:
        return [(size, compression, self.reps_for(size)) for size in self.sizes for compression in self.compressions]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "large-message", "sizes": list(self.sizes), "compressions": list(self.compressions),
            "compression_level": self.level, "payload": self.payload,
            "reps": {str(size): self.reps_for(size) for size in self.sizes}, "quick": self.quick,
            "topic": self.topic, "compare_bare": self.compare_bare, "peer": self.peer,
            "client_config": redact_secrets(dict(self.client_settings)),
        }

    def fingerprint(self) -> str:
        """16 hex chars over what makes two sweeps comparable (not the topic, --compare-bare or
        --peer, which add measurements beside the harness's; client settings when there are any,
        secret values redacted first)."""
        fields = {k: v for k, v in self.to_dict().items() if k not in ("topic", "compare_bare", "peer")}
        if not fields["client_config"]:
            del fields["client_config"]  # fingerprints of sweeps without settings stay as they were
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
