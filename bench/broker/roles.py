"""Who plays which role right now: the leader and followers of a partition (admin metadata) and
the active KRaft controller (the quorum's LeaderId, from Kafka's own MetadataQuorumCommand).

The metadata a client gets names a random live broker as "controller" under KRaft, not the
active quorum leader, so the controller comes from the quorum itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from bench.broker.fault_spec import Fault
from bench.broker.jars import DEFAULT_KAFKA_VERSION, jar_cache_dir
from bench.broker.versions import log_config_option
from streamstore.config import admin_config
from streamstore.errors import RunFailed, UsageError

# Metadata answers in milliseconds; a node just killed can hold a request until its connection
# times out, so the admin client gets this long to reach another.
METADATA_TIMEOUT_S = 10.0
# The quorum command is a JVM start: seconds on a busy 2-core machine.
QUORUM_COMMAND_TIMEOUT_S = 90.0
_LEADER_ID = re.compile(r"^LeaderId:\s*(\d+)\s*$", re.MULTILINE)


class AnyNodeMetadata:
    """`list_topics` from whichever node answers, asking one node at a time.

    One admin client over the whole cluster sends a request to any node it knows and waits out
    its whole timeout when that node is frozen (SIGSTOP) or cut off; while two of three nodes are
    frozen that is most requests. Here each node gets a short try. A client bootstrapped from
    one node still learns the others and may ask one of them, so when no try answered, a new
    client per node (it knows only that node until it has answered) tries again.
    """

    def __init__(self, admin, extra: Mapping[str, object] | None = None, per_node_timeout_s: float = 1.5):
        brokers = admin.list_topics(timeout=METADATA_TIMEOUT_S).brokers
        self.per_node_timeout_s = per_node_timeout_s
        self.extra = {**(extra or {}), "log_level": 0}
        self.addresses = [f"{broker.host}:{broker.port}" for _, broker in sorted(brokers.items())]
        self.admins = [admin] if len(brokers) < 2 else [AdminClient(admin_config(a, self.extra)) for a in self.addresses]
        self.preferred = 0

    def list_topics(self, topic: str | None = None, timeout: float = METADATA_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        failure: KafkaException | None = None
        fresh = False
        while True:
            for step in range(len(self.admins)):
                index = (self.preferred + step) % len(self.admins)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise failure or KafkaException(KafkaError(KafkaError._TIMED_OUT, "no node answered"))
                if fresh and len(self.admins) > 1:
                    self.admins[index] = AdminClient(admin_config(self.addresses[index], self.extra))
                try:
                    metadata = self.admins[index].list_topics(topic, timeout=min(self.per_node_timeout_s, remaining))
                except KafkaException as error:
                    failure = error
                    continue
                self.preferred = index
                return metadata
            fresh = True


@dataclass(frozen=True)
class PartitionState:
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


def topic_state(admin, topic: str, timeout_s: float = METADATA_TIMEOUT_S) -> dict[int, PartitionState]:
    """partition -> leader, replicas and in-sync replicas, as the cluster's metadata says now. A
    node that has just started may not know the topic yet: asked again until timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = admin.list_topics(topic, timeout=max(0.1, deadline - time.monotonic()))
        except KafkaException as error:
            raise RunFailed(f"metadata of {topic} not readable: {error.args[0].str()}") from None
        described = metadata.topics.get(topic)
        if described is not None and described.error is None:
            return {p: PartitionState(state.leader, tuple(state.replicas), tuple(state.isrs))
                    for p, state in described.partitions.items()}
        if time.monotonic() + 0.1 > deadline:
            raise RunFailed(f"metadata of {topic} not readable: {described.error if described else 'no such topic'}")
        time.sleep(0.1)


def active_controller(bootstrap_servers: str, kafka_version: str = DEFAULT_KAFKA_VERSION) -> int:
    """The node id of the active KRaft controller (`LeaderId` of `kafka-metadata-quorum describe --status`)."""
    java = shutil.which("java")
    if java is None:
        raise UsageError("java not found on PATH: the active controller is read with Kafka's MetadataQuorumCommand")
    classpath = f"{jar_cache_dir(kafka_version)}/*"
    try:
        completed = subprocess.run(
            # The tool's jars and logging file are those of the cluster's own release.
            [java, "-Xmx256m", log_config_option(kafka_version, tools=True), "-cp", classpath,
             "org.apache.kafka.tools.MetadataQuorumCommand",
             "--bootstrap-server", bootstrap_servers, "describe", "--status"],
            capture_output=True, text=True, timeout=QUORUM_COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"the metadata quorum did not answer within {QUORUM_COMMAND_TIMEOUT_S:g} s") from None
    match = _LEADER_ID.search(completed.stdout)
    if completed.returncode != 0 or not match:
        detail = (completed.stderr.strip() or completed.stdout.strip() or "no output").splitlines()[-1]
        raise RunFailed(f"the active controller could not be read: {detail}")
    return int(match[1])


def resolve_targets(fault: Fault, node_ids: Collection[int], admin, topic: str,
                    controller: Callable[[], int]) -> list[tuple[int, str]]:
    """[(node id, role)] the fault acts on, decided now. role: leader, follower, controller,
    node (named by id) or broker (the single broker); `followers` gives every follower."""
    if not fault.target:
        if len(node_ids) != 1:
            raise UsageError(f"--fault {fault}: name the node of the cluster to fault, e.g. {fault.kind}:leader")
        return [(next(iter(node_ids)), "broker")]
    if fault.node_id is not None:
        if fault.node_id not in node_ids:
            raise UsageError(f"--fault {fault}: no node {fault.node_id} (nodes {sorted(node_ids)})")
        return [(fault.node_id, "node")]
    if fault.target == "controller":
        return [(next(iter(node_ids)) if len(node_ids) == 1 else controller(), "controller")]
    state = topic_state(admin, topic).get(fault.partition)
    if state is None:
        raise UsageError(f"--fault {fault}: {topic} has no partition {fault.partition}")
    if fault.target == "leader":
        if state.leader < 0:
            raise RunFailed(f"--fault {fault}: partition {fault.partition} has no leader right now")
        return [(state.leader, "leader")]
    # In-sync followers first: pausing one of those is what a follower fault is about.
    followers = [node for node in state.isr if node != state.leader]
    followers += [node for node in state.replicas if node != state.leader and node not in followers]
    if not followers:
        raise UsageError(f"--fault {fault}: partition {fault.partition} has no follower (replicas {list(state.replicas)})")
    return [(node, "follower") for node in (followers if fault.target == "followers" else followers[:1])]


def in_sync_everywhere(admin, node_id: int, timeout_s: float = METADATA_TIMEOUT_S) -> bool:
    """Is the node in the ISR of every partition (of every topic) it replicates?"""
    metadata = admin.list_topics(timeout=timeout_s)
    return all(node_id in state.isrs
               for topic in metadata.topics.values() for state in topic.partitions.values()
               if node_id in state.replicas)
