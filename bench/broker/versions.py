"""The Apache Kafka releases the embedded broker runs, and what differs between their lines
(pure: names, paths and settings, no I/O).

Two lines: 3.3-3.9 and 4.0-4.4. What Kafka 4 changed that the embedded broker meets:
- log4j 1 (reload4j) gave way to log4j 2: another pom (the slf4j binding) and another logging
  configuration file, named by another JVM option, for the broker and for Kafka's Java tools;
- ZooKeeper mode, the message format settings and `inter.broker.protocol.version` are gone
  (the embedded broker always ran KRaft and set none of them; the version of a broker this
  tool did not start is then not readable from its settings, see bench/broker/ensure.py);
- the new group coordinator and the consumer group protocol (KIP-848) are on by default
  (`group.coordinator.rebalance.protocols` = classic,consumer): reported with every result.
docs/broker.md has the table per release.
"""

from __future__ import annotations

import re
from pathlib import Path

KAFKA_RESOURCES = Path(__file__).resolve().parent / "kafka"

# The newest release that passes the whole test suite here (docs/broker.md says how it was chosen).
DEFAULT_KAFKA_VERSION = "4.4.0"
SUPPORTED_RELEASES = "3.3.x-3.9.x and 4.0.x-4.4.x"
# Lines whose jars, StorageTool usage and logging backend this package knows.
_SUPPORTED_VERSION = re.compile(r"^(?:3\.[3-9]|4\.[0-4])\.\d+$")


def is_supported(kafka_version: str) -> bool:
    return bool(_SUPPORTED_VERSION.match(kafka_version))


def version_key(kafka_version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in kafka_version.split("."))


def is_kafka4(kafka_version: str) -> bool:
    return version_key(kafka_version)[0] >= 4


def pom_path(kafka_version: str) -> Path:
    """The pom that lists the line's jars: Kafka 4 needs the log4j 2 binding, 3.x reload4j."""
    return KAFKA_RESOURCES / ("pom-kafka4.xml" if is_kafka4(kafka_version) else "pom.xml")


def log_config_option(kafka_version: str, tools: bool = False) -> str:
    """The JVM option that points the broker (or, tools=True, a Java tool) at its logging file:
    log4j 2 reads `log4j2.configurationFile`, log4j 1 `log4j.configuration` (a URL)."""
    prefix = "tools-" if tools else ""
    if is_kafka4(kafka_version):
        return f"-Dlog4j2.configurationFile={KAFKA_RESOURCES / f'{prefix}log4j2.properties'}"
    return f"-Dlog4j.configuration=file:{KAFKA_RESOURCES / f'{prefix}log4j.properties'}"
