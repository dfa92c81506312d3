"""The broker's settings, in one place: the large-message settings, the single-node and the
replicated-cluster settings, and the JVM options. The embedded broker and cluster use them;
docker-compose.yaml repeats them and tests/test_compose.py checks that the two agree."""

from __future__ import annotations

import os
import re
import shlex

from streamstore.config import CLIENT_MESSAGE_MAX_BYTES
from streamstore.errors import UsageError

# Broker headroom over the client's 1e9 cap, so the client is always the limit that bites.
BROKER_MESSAGE_MAX_BYTES = CLIENT_MESSAGE_MAX_BYTES * 105 // 100

LARGE_MESSAGE_BROKER_SETTINGS: dict[str, str] = {
    # Largest record batch the broker accepts (checked after compression): a 1e9 client
    # message plus batch overhead and headers must fit.
    "message.max.bytes": str(BROKER_MESSAGE_MAX_BYTES),
    # The whole produce request (batch + request header) is read into one buffer; the default
    # 100 MiB would drop the connection long before message.max.bytes is reached.
    "socket.request.max.bytes": str(CLIENT_MESSAGE_MAX_BYTES * 110 // 100),
    # A follower must be able to fetch the largest batch (no followers on one node; in a
    # cluster a value below message.max.bytes would leave the largest batches unreplicated).
    "replica.fetch.max.bytes": str(BROKER_MESSAGE_MAX_BYTES),
    # A batch larger than a segment cannot be appended at all: 1 GiB > message.max.bytes.
    "log.segment.bytes": str(1024**3),
    # Each I/O thread that appends a large batch keeps a direct buffer of its size (see
    # BROKER_HEAP_OPTS); Kafka's default 8 would need ~9 GB of direct memory for a 1 GB sweep.
    # Two still let fetches proceed while one thread appends a 1 GB batch, on this 2-core box.
    "num.io.threads": "2",
}

# The lowest session timeout and heartbeat a consumer-protocol group (KIP-848) may ask for, as the
# classic protocol allows (its group.min.session.timeout.ms is 6 s): Kafka's 45 s and 5 s bounds
# would make a killed consumer's rebalance under the consumer protocol take 45 s at least, and the
# two protocols could not be compared with the same session timeout. Defaults stay Kafka's.
GROUP_PROTOCOL_BOUNDS: dict[str, str] = {
    "group.consumer.min.session.timeout.ms": "6000",
    "group.consumer.min.heartbeat.interval.ms": "1000",
}

# Settings a single-node cluster needs; the compose file carries them too.
SINGLE_NODE_BROKER_SETTINGS: dict[str, str] = {
    # Internal topics default to replication 3, which one broker can never satisfy.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    # The default 3 s delay waits for more group members before the first assignment; runs
    # here start one tracker, so it would only add 3 s to every run and test.
    "group.initial.rebalance.delay.ms": "0",
    **GROUP_PROTOCOL_BOUNDS,
}

def replicated_cluster_settings(nodes: int) -> dict[str, str]:
    """Settings of every node of an N-node cluster (N >= 2); the compose 3-node profile carries them.

    Internal topics get Kafka's default replication 3 where the cluster has that many nodes, so
    killing one node loses no consumer offsets or transaction state.
    """
    replicas = min(nodes, 3)
    return {
        # Consumer-group offsets survive a node's death (Kafka's default 3, capped by the nodes).
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        # A transaction commit needs one copy besides the leader's once there are 3 replicas.
        "transaction.state.log.min.isr": str(min(2, replicas)),
        # Topics created without a replication factor (auto-created ones) are replicated too.
        "default.replication.factor": str(replicas),
        # Kafka's default, stated: a topic's own min.insync.replicas (scenario field
        # min_insync_replicas) decides; a cluster-wide 2 would break RF 1 topics with acks=all.
        "min.insync.replicas": "1",
        # Kafka's default, stated: a lagging replica never becomes leader unless a topic says so
        # (scenario field unclean_leader_election), so a fault cannot silently lose acked orders.
        "unclean.leader.election.enable": "false",
        # As on one node: runs start one tracker, the 3 s wait for more members only delays it.
        "group.initial.rebalance.delay.ms": "0",
        **GROUP_PROTOCOL_BOUNDS,
    }


# A produce request is read into one heap buffer of its size (1 GB at most here): 4 GiB heap.
# The JDK moves heap buffers through a temporary direct buffer of the same size, kept cached per
# thread afterwards: one network thread per large producer plus each I/O thread that appended
# a large batch keep up to ~1 GB each, so with num.io.threads=2 a single large producer needs
# 3 x 1.05e9 bytes. The cap leaves room for that, and makes a runaway fail inside the broker
# ("Cannot reserve ... direct buffer memory") instead of taking the machine other engineers share.
# (-Djdk.nio.maxCachedBufferSize would avoid the caching, but then every socket read of a large
# request allocates and zeroes a new buffer of the remaining size: 14 s of broker CPU per
# 100 MB message instead of 0.1 s, measured.)
BROKER_HEAP_OPTS: tuple[str, ...] = ("-Xmx4g", "-XX:MaxDirectMemorySize=4g")
# A node of a multi-node cluster: three JVMs at 4 GiB heap + 4 GiB direct each could claim all
# 24 GiB of a development machine, and ordinary order traffic needs a fraction of it. 1 GiB
# covers messages up to ~200 MB; `broker start --heap 4g` restores the 1 GB sizing per node
# (docs/broker.md: what a 3-node 1 GB run needs).
CLUSTER_NODE_HEAP = "1g"


def heap_opts(heap: str) -> tuple[str, ...]:
    """-Xmx and the direct-memory cap at the same size (a large request needs both, see above)."""
    if not re.fullmatch(r"[1-9][0-9]*[mMgG]", heap):
        raise UsageError(f"--heap {heap!r}: expected a JVM size like 512m, 1g or 4g")
    return (f"-Xmx{heap}", f"-XX:MaxDirectMemorySize={heap}")

# Kafka's own launcher defaults (kafka-run-class.sh): G1 with short pauses.
BROKER_PERFORMANCE_JVM_OPTS: tuple[str, ...] = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
# As Kafka's launcher does, KAFKA_JVM_PERFORMANCE_OPTS replaces those when it is set. The test suite
# sets a lighter JIT there (tests/conftest.py): its brokers live for minutes, and compiling their
# hot paths with C2 cost more CPU than the tests' traffic did.
JVM_PERFORMANCE_OPTS_VARIABLE = "KAFKA_JVM_PERFORMANCE_OPTS"


def custom_jvm_performance_opts() -> str | None:
    """KAFKA_JVM_PERFORMANCE_OPTS as set, or None when it is not (Kafka's defaults apply)."""
    return os.environ.get(JVM_PERFORMANCE_OPTS_VARIABLE, "").strip() or None


def broker_performance_jvm_opts() -> tuple[str, ...]:
    """The JVM options of an embedded node besides its heap: KAFKA_JVM_PERFORMANCE_OPTS when set, else Kafka's defaults."""
    custom = custom_jvm_performance_opts()
    return tuple(shlex.split(custom)) if custom else BROKER_PERFORMANCE_JVM_OPTS

# Broker settings worth recording next to a result (read back from the broker itself).
REPORTED_BROKER_SETTING_NAMES: tuple[str, ...] = (
    *LARGE_MESSAGE_BROKER_SETTINGS,
    "num.partitions",
    "default.replication.factor",
    "min.insync.replicas",
    "log.flush.interval.messages",
    "num.network.threads",
    "compression.type",
    # Kafka 3.x only (4.0 removed it): the protocol version an external 3.x broker is known by.
    "inter.broker.protocol.version",
    # Which group protocols the broker serves (classic; consumer, KIP-848, on by default from 4.0).
    "group.coordinator.rebalance.protocols",
)
