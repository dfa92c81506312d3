"""librdkafka settings for the order producer, the tracker and admin calls.

Every setting carries a comment saying why it has its value. Callers pass `extra` for anything
else (security settings, tuning); `extra` wins over the defaults here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"
ORDERS_TOPIC = "orders"
TRACKER_GROUP_ID = "order_tracker_group"

# librdkafka refuses message.max.bytes above 1e9: this is what "1 GB" means in this project.
CLIENT_MESSAGE_MAX_BYTES = 1_000_000_000
# librdkafka checks the uncompressed record inside produce(): with no key and no headers a
# record adds 36 bytes to its value, so the largest value that passes is 1e9 - 36.
RECORD_OVERHEAD_BYTES = 36
MAX_VALUE_BYTES = CLIENT_MESSAGE_MAX_BYTES - RECORD_OVERHEAD_BYTES  # 999,999,964
# A librdkafka bug (2.5 and later, 2.16 included), not a protocol limit: the record-set length of
# a flexible ProduceRequest (v9+, every broker since Kafka 2.8) goes as a varint into 4 reserved
# bytes; one that needs a 5th byte is dropped instead of failing, the broker reads null records
# and the client times out. So at most 2^28 - 1 bytes of (possibly compressed) batch per request.
# Measured here: 268,400,000 bytes arrive, 268,500,000 never do. docs/broker.md has the detail.
PRODUCE_RECORD_SET_MAX_BYTES = 2**28 - 1

COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")


# librdkafka logs every failed connection attempt to stderr (many lines a second while a broker
# is down). They go to this logger instead: silent unless the application configures logging,
# so a failure reaches the user as one clear line.
LIBRDKAFKA_LOGGER = logging.getLogger("streamstore.librdkafka")
LIBRDKAFKA_LOGGER.addHandler(logging.NullHandler())


def default_bootstrap_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP_SERVERS


def _merged(base: dict, extra: Mapping[str, object] | None) -> dict:
    merged = dict(base)
    if extra:
        merged.update({key: value for key, value in extra.items()})
    return merged


def producer_config(
    bootstrap_servers: str,
    compression: str = "gzip",
    extra: Mapping[str, object] | None = None,
) -> dict:
    return _merged(
        {
            "bootstrap.servers": bootstrap_servers,
            # librdkafka's log lines go through Python logging (see LIBRDKAFKA_LOGGER).
            "logger": LIBRDKAFKA_LOGGER,
            # The seed's 1 GB client limit (librdkafka's maximum).
            "message.max.bytes": CLIENT_MESSAGE_MAX_BYTES,
            # The seed compresses orders with gzip; "none" is librdkafka's spelling of off.
            "compression.type": compression,
            # Give up on a delivery after 2 minutes so an unreachable broker ends in an error,
            # not a hang (librdkafka's default is 5 minutes).
            "message.timeout.ms": 120_000,
        },
        extra,
    )


def consumer_config(
    bootstrap_servers: str,
    group_id: str = TRACKER_GROUP_ID,
    extra: Mapping[str, object] | None = None,
) -> dict:
    return _merged(
        {
            "bootstrap.servers": bootstrap_servers,
            # librdkafka's log lines go through Python logging (see LIBRDKAFKA_LOGGER).
            "logger": LIBRDKAFKA_LOGGER,
            "group.id": group_id,
            # A new group reads the topic from its beginning, as the seed's tracker does.
            "auto.offset.reset": "earliest",
            # Accept anything the producer may send (1 GB); this also raises fetch.max.bytes
            # and receive.message.max.bytes to match.
            "message.max.bytes": CLIENT_MESSAGE_MAX_BYTES,
        },
        extra,
    )


def admin_config(bootstrap_servers: str, extra: Mapping[str, object] | None = None) -> dict:
    return _merged(
        {
            "bootstrap.servers": bootstrap_servers,
            # librdkafka's log lines go through Python logging (see LIBRDKAFKA_LOGGER).
            "logger": LIBRDKAFKA_LOGGER,
        },
        extra,
    )
