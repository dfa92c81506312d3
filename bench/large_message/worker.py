"""The producer and consumer processes of the large-message sweep (`bench/large_message.py`).

Each role runs in its own process so that its peak resident memory is its own: the parent
starts one producer and one consumer per message size and talks to them with one JSON object
per line (commands on stdin, replies on stdout). The producer builds the payload once and
reuses it for every repetition and compression of its size.

Both processes stamp times with `time.monotonic_ns()`: on Linux that is CLOCK_MONOTONIC, one
clock for the whole machine, so the consumer's receive time minus the producer's send time is
an end-to-end time without putting a header (which would lower the 1 GB limit) in the message.

The first line on stdin holds the client settings for every client of the worker
(`{"client_settings": {...}}`: security settings stay off the command line).

The consumer counts what it receives in a cell: every message is checked against the size
and crc32 of the producer's payload (the parent passes them on from the producer's "ready"),
and its offset against the offsets already seen (a message seen twice is a duplicate). Each
reply carries the running tallies, so a cell cut short still has the counts measured so far.

    python -m bench.large_message.worker producer --bootstrap-servers H:P --size N --payload order
    python -m bench.large_message.worker consumer --bootstrap-servers H:P
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from confluent_kafka import KafkaException

from streamstore.config import consumer_config, producer_config
from streamstore.orders import PAYLOAD_KINDS, make_payload
from streamstore.producer import OrderProducer
from streamstore.tracker import OrderTracker

# librdkafka emits statistics this often; the wire size of a batch is read from the first
# report after its ack, so this bounds the extra wait per repetition (outside the timing).
STATISTICS_INTERVAL_MS = 100
# Give up waiting for that report after this long (the wire size is then unknown, not wrong).
STATISTICS_WAIT_S = 2.0
# The consumer polls this long after assign() before it says it is ready: by then its fetch
# request is parked at the broker, so a message is delivered as soon as the broker has it.
CONSUMER_WARMUP_S = 1.0
# A consumer poll returns at least this often, so a deadline is noticed.
CONSUMER_POLL_S = 0.5


def peak_rss_bytes() -> int:
    """Peak resident memory (VmHWM) of this process since start or the last reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    """Linux resets VmHWM to the current RSS when "5" is written to clear_refs (Linux >= 4.0):
    so each compression of a size gets its own peak while the payload stays built."""
    Path("/proc/self/clear_refs").write_text("5")


def _reply(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _commands() -> Iterator[dict]:
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


def _client_settings() -> dict:
    """The first line on stdin: the librdkafka settings every client of this worker uses."""
    return json.loads(sys.stdin.readline())["client_settings"]


def _error_text(error: Exception) -> str:
    if isinstance(error, KafkaException) and error.args and hasattr(error.args[0], "str"):
        return error.args[0].str()
    return str(error) or type(error).__name__


def sweep_producer_config(bootstrap_servers: str, compression: str, level: int, delivery_timeout_s: float,
                          on_statistics, on_delivery_error, client_settings: Mapping[str, object] | None = None) -> dict:
    """The order producer's settings, tuned for one huge message at a time (the user's client
    settings first: the command refuses any of the keys set here)."""
    return producer_config(bootstrap_servers, compression, {
        **(client_settings or {}),
        # -1 is the codec's own default (zlib's 6 for gzip).
        "compression.level": level,
        # Sized by the parent to the message and codec: gzip of 1 GB takes minutes here.
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        # One produce request carries up to 1 GB: give the broker time to read and write it.
        "socket.timeout.ms": 300_000,
        # One message at a time: waiting for more to batch would only add to its latency.
        "linger.ms": 0,
        # librdkafka's default (1 GiB), stated because it must hold one 1e9-byte message;
        # repetitions are sequential, so a second one is never queued.
        "queue.buffering.max.kbytes": 1_048_576,
        # A delivery report copies the whole payload into Python: report failures only and
        # time the ack with flush().
        "delivery.report.only.error": True,
        "on_delivery": on_delivery_error,
        # The batch size after compression (what goes on the wire) is in these reports.
        "statistics.interval.ms": STATISTICS_INTERVAL_MS,
        "stats_cb": on_statistics,
    })


def sweep_consumer_config(bootstrap_servers: str, group_id: str, client_settings: Mapping[str, object] | None = None) -> dict:
    return consumer_config(bootstrap_servers, group_id, {
        **(client_settings or {}),
        # The consumer is assigned its partition and offset; there is nothing to commit.
        "enable.auto.commit": False,
        # A 1 GB fetch response takes a while to arrive and decompress.
        "socket.timeout.ms": 300_000,
    })


class _Statistics:
    """Sums librdkafka's per-window batch sizes for one topic (bytes after compression)."""

    def __init__(self) -> None:
        self.topic = ""
        self.batch_bytes = 0
        self.batch_count = 0
        self.last_report_us = 0

    def reset(self, topic: str) -> None:
        self.topic, self.batch_bytes, self.batch_count = topic, 0, 0

    def __call__(self, statistics_json: str) -> None:
        statistics = json.loads(statistics_json)
        batch_sizes = statistics.get("topics", {}).get(self.topic, {}).get("batchsize", {})
        self.batch_bytes += batch_sizes.get("sum", 0)
        self.batch_count += batch_sizes.get("cnt", 0)
        # "ts" is librdkafka's CLOCK_MONOTONIC in microseconds.
        self.last_report_us = statistics["ts"]


class ReceivedTally:
    """What the consumer received in one cell, checked against what the producer sent."""

    def __init__(self, size_bytes: int, crc32: int) -> None:
        self.size_bytes, self.crc32 = size_bytes, crc32
        self.offsets: set[int] = set()
        self.received = self.malformed = self.duplicated = 0

    def add(self, offset: int, value: bytes) -> dict:
        """Count one message; its verdict (intact: the producer's size and crc32; duplicate: an
        offset already received in this cell)."""
        size_bytes, crc32 = len(value), zlib.crc32(value)
        self.received += 1
        duplicate = offset in self.offsets
        self.offsets.add(offset)
        self.duplicated += duplicate
        intact = size_bytes == self.size_bytes and crc32 == self.crc32
        self.malformed += not intact
        return {"offset": offset, "size_bytes": size_bytes, "crc32": crc32, "intact": intact, "duplicate": duplicate}

    def counts(self) -> dict:
        return {"received": self.received, "distinct": len(self.offsets), "malformed": self.malformed,
                "duplicated": self.duplicated}

    def finished(self, count: int, end_offset: int | None) -> str | None:
        """Why the cell needs no more messages: `count` distinct ones, or the last offset before
        `end_offset` (what the broker held when asked), past which nothing of the cell can come."""
        if len(self.offsets) >= count:
            return "complete"
        if end_offset is not None and self.offsets and max(self.offsets) >= end_offset - 1:
            return "end_offset"
        return None


def run_producer(bootstrap_servers: str, size_bytes: int, payload_kind: str) -> None:
    client_settings = _client_settings()
    build_started = time.monotonic()
    payload = make_payload(payload_kind, size_bytes)
    # zlib.crc32 runs at memory speed over the bytes themselves (no copy); the consumer compares
    # size and crc32 of every message with these.
    _reply(event="ready", crc32=zlib.crc32(payload), size_bytes=len(payload),
           build_s=round(time.monotonic() - build_started, 3))
    statistics = _Statistics()
    delivery_errors: list[str] = []
    producer: OrderProducer | None = None
    producer_key = None
    for command in _commands():
        if command["cmd"] == "peak":
            _reply(event="peak", peak_rss_bytes=peak_rss_bytes())
            # Flushed and acked: librdkafka's copy is gone; the next cell starts from here.
            producer = producer_key = None
            reset_peak_rss()
            continue
        key = (command["topic"], command["compression"], command["level"], command["timeout_s"])
        if key != producer_key:
            config = sweep_producer_config(
                bootstrap_servers, command["compression"], command["level"], command["timeout_s"],
                statistics, lambda error, message: delivery_errors.append(error.str()), client_settings,
            )
            producer, producer_key = OrderProducer(config, command["topic"]), key
            # Metadata and connection now, so the first repetition does not pay for them.
            producer.client.list_topics(command["topic"], timeout=10)
        statistics.reset(command["topic"])
        delivery_errors.clear()
        sent_ns = time.monotonic_ns()
        try:
            producer.produce(payload)
            undelivered = producer.flush(command["timeout_s"])
        except (KafkaException, BufferError, ValueError) as error:
            _reply(event="produced", error=_error_text(error))
            continue
        acked_ns = time.monotonic_ns()
        error = delivery_errors[0] if delivery_errors else None
        if undelivered and error is None:
            error = f"not acknowledged within {command['timeout_s']:.0f} s (message.timeout.ms)"
        waited_until = time.monotonic() + STATISTICS_WAIT_S
        while statistics.last_report_us * 1000 < acked_ns and time.monotonic() < waited_until:
            producer.poll(STATISTICS_INTERVAL_MS / 1000 / 2)
        complete = statistics.last_report_us * 1000 >= acked_ns
        _reply(
            event="produced", error=error, sent_ns=sent_ns, acked_ns=acked_ns,
            wire_bytes=statistics.batch_bytes if complete else None,
            batches=statistics.batch_count if complete else None,
        )


def run_consumer(bootstrap_servers: str, group_id: str) -> None:
    client_settings = _client_settings()
    tracker: OrderTracker | None = None
    for command in _commands():
        if command["cmd"] == "peak":
            _reply(event="peak", peak_rss_bytes=peak_rss_bytes())
            reset_peak_rss()
            continue
        # cmd "consume": read the cell's messages of `topic` partition 0 from `offset`.
        if tracker is not None:
            tracker.close()
        tracker = OrderTracker(sweep_consumer_config(bootstrap_servers, group_id, client_settings), [command["topic"]],
                               start_offsets={0: command["offset"]})
        consume_cell(tracker, command)


def consume_cell(tracker: OrderTracker, command: dict) -> None:
    """Reply "ready" once the fetch waits at the broker, "consumed" for each message, and "done"
    when the cell needs no more (`count` distinct messages, or the one before `end_offset`), when
    `timeout_s` passed without a message, or on an error."""
    tally = ReceivedTally(command["size_bytes"], command["crc32"])
    count, end_offset, timeout_s = command["count"], command.get("end_offset"), command["timeout_s"]

    def take(message, received_ns: int) -> None:
        verdict = tally.add(message.offset(), message.value() or b"")
        _reply(event="consumed", received_ns=received_ns, **verdict, **tally.counts())

    try:
        # Messages already there (a consumer started after its cell's acks) count like any other.
        early = [(message, time.monotonic_ns()) for message in tracker.consume(1, CONSUMER_WARMUP_S)]
        _reply(event="ready")
        for message, received_ns in early:
            take(message, received_ns)
        del early
        reason = tally.finished(count, end_offset)
        while reason is None:
            deadline = time.monotonic() + timeout_s
            messages = []
            while not messages and time.monotonic() < deadline:
                messages = tracker.consume(1, CONSUMER_POLL_S)
            if not messages:
                reason = "timeout"
                break
            # Keep nothing: the message goes as soon as its size and checksum are known.
            take(messages[0], time.monotonic_ns())
            del messages
            reason = tally.finished(count, end_offset)
    except KafkaException as error:
        _reply(event="done", reason="error", error=_error_text(error), **tally.counts())
        return
    _reply(event="done", reason=reason, error=None, **tally.counts())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_message.worker")
    parser.add_argument("role", choices=("producer", "consumer"))
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--size", type=int, help="producer: message size in bytes")
    parser.add_argument("--payload", choices=PAYLOAD_KINDS, default="order")
    parser.add_argument("--group", default="bench-large-message", help="consumer: group id (nothing is committed)")
    args = parser.parse_args(argv)
    # The sweep owns Ctrl+C (a terminal sends it to the whole process group): it ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.role == "producer":
        run_producer(args.bootstrap_servers, args.size, args.payload)
    else:
        run_consumer(args.bootstrap_servers, args.group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
