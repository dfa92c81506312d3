"""The trace header a measured order carries: run id, producer, sequence, send time.

One binary header (not three) so the producer builds one tuple per message and the tracker
unpacks one struct. Orders without it (the seed's producer, other tools) are still orders:
readers get None and skip end-to-end latency and the audit for them.

send_time_ns is `time.time_ns()` at send: end-to-end latency from it is only valid when
producer and tracker share one clock (one host).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

TRACE_HEADER = "ss-trace"
# run id (16 raw uuid bytes), producer index, sequence within that producer, send time.
# Public so a hot loop can bind TRACE_STRUCT.pack instead of calling encode_trace.
TRACE_STRUCT = struct.Struct(">16sHQq")
TRACE_VALUE_BYTES = TRACE_STRUCT.size


def _varint_bytes(length: int) -> int:
    """Bytes of a zigzag varint: librdkafka sizes header names and values with one each."""
    zigzag = length << 1
    count = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        count += 1
    return count


# What the trace header adds to a record in librdkafka's size check inside produce().
TRACE_HEADERS_BYTES = (
    _varint_bytes(len(TRACE_HEADER)) + len(TRACE_HEADER) + _varint_bytes(TRACE_VALUE_BYTES) + TRACE_VALUE_BYTES
)


class Trace(NamedTuple):
    run_id: bytes
    producer: int
    sequence: int
    send_time_ns: int


def encode_trace(run_id: bytes, producer: int, sequence: int, send_time_ns: int) -> bytes:
    return TRACE_STRUCT.pack(run_id, producer, sequence, send_time_ns)


def read_trace(headers: Sequence[tuple[str, bytes]] | None) -> Trace | None:
    """The trace of a message's headers, or None when it has none (or a damaged one)."""
    if not headers:
        return None
    for name, value in headers:
        if name == TRACE_HEADER and value is not None and len(value) == TRACE_VALUE_BYTES:
            return Trace(*TRACE_STRUCT.unpack(value))
    return None
