"""Topic and broker helpers: create or validate topics, read limits and offsets."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from streamstore.config import CLIENT_MESSAGE_MAX_BYTES, admin_config, consumer_config
from streamstore.errors import RunFailed, UsageError

T = TypeVar("T")

# How long to wait for the broker to answer one admin request before calling it unreachable.
ADMIN_TIMEOUT_S = 10.0


def connect_admin(bootstrap_servers: str, extra: Mapping[str, object] | None = None,
                  timeout_s: float = ADMIN_TIMEOUT_S) -> AdminClient:
    """An AdminClient that has already answered a metadata request (else RunFailed)."""
    admin = AdminClient(admin_config(bootstrap_servers, extra))
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as error:
        raise RunFailed(
            f"Kafka broker at {bootstrap_servers} did not answer within {timeout_s:.0f} s ({_reason(error)}); "
            "start one with `python -m bench broker start` or set KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    return admin


def _reason(error: KafkaException) -> str:
    return error.args[0].str() if error.args and hasattr(error.args[0], "str") else str(error)


def ensure_topic(
    admin: AdminClient,
    topic: str,
    partitions: int = 1,
    replication_factor: int = 1,
    max_message_bytes: int = CLIENT_MESSAGE_MAX_BYTES,
    timeout_s: float = ADMIN_TIMEOUT_S,
    config: Mapping[str, str] | None = None,
    client_settings: Mapping[str, object] | None = None,
) -> bool:
    """Create the topic if missing; return True when it was created now. Either way it returns
    once every broker serves the topic (RunFailed when one does not within timeout_s).

    config: topic settings to create it with (e.g. min.insync.replicas). An existing topic is
    used as it is: its partition count and these settings are checked, not changed.
    client_settings: the librdkafka settings (SASL, SSL) to reach each broker on its own with.
    """
    config = dict(config or {})
    # Ask for all topics: a metadata request naming the topic would make a broker with
    # auto.create.topics.enable create it with default settings.
    metadata = admin.list_topics(timeout=timeout_s)
    existing = metadata.topics.get(topic)
    if existing is not None and existing.error is None:
        _wait_until_every_broker_serves(metadata.brokers, topic, client_settings, timeout_s)
        _check_existing_topic(admin, topic, len(existing.partitions), partitions, config, timeout_s)
        return False
    if replication_factor > len(metadata.brokers):
        raise UsageError(
            f"replication factor {replication_factor} needs {replication_factor} brokers, but the cluster has "
            f"{len(metadata.brokers)} running (start one with: python -m bench broker start --nodes {replication_factor})"
        )
    new_topic = NewTopic(
        topic,
        num_partitions=partitions,
        replication_factor=replication_factor,
        # Match the client's 1 GB limit so the topic never rejects what the producer may send.
        config={"max.message.bytes": str(max_message_bytes), **config},
    )
    future = admin.create_topics([new_topic], operation_timeout=timeout_s)[topic]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as error:
        if error.args and getattr(error.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
            # In a cluster the node that answered the metadata request may not have known the
            # topic yet: it exists all the same, and is checked like one that was listed.
            served = _wait_until_every_broker_serves(metadata.brokers, topic, client_settings, timeout_s)
            _check_existing_topic(admin, topic, served, partitions, config, timeout_s)
            return False
        raise RunFailed(f"could not create topic '{topic}': {_reason(error)}") from None
    _wait_until_every_broker_serves(metadata.brokers, topic, client_settings, timeout_s)
    return True


def _wait_until_every_broker_serves(brokers: Mapping[int, object], topic: str,
                                    client_settings: Mapping[str, object] | None, timeout_s: float) -> int:
    """Wait until each broker's own metadata has the topic with a leader for every partition;
    the topic's partition count.

    Each broker learns of a new topic on its own, a moment after the controller created it. A
    client whose first metadata comes from one not yet told sees "unknown topic": a consumer
    may not ask again for minutes and reads nothing, a config or offset request fails.
    """
    deadline = time.monotonic() + timeout_s
    partition_count = 0
    for broker in brokers.values():
        # One broker only: its metadata, not the cluster's freshest.
        single = AdminClient(admin_config(f"{broker.host}:{broker.port}", {**(client_settings or {}), "log_level": 0}))
        while True:
            with contextlib.suppress(KafkaException):
                described = single.list_topics(topic, timeout=2.0).topics.get(topic)
                if (described is not None and described.error is None and described.partitions
                        and all(p.leader >= 0 for p in described.partitions.values())):
                    partition_count = len(described.partitions)
                    break
            if time.monotonic() > deadline:
                raise RunFailed(f"broker {broker.id} does not serve topic '{topic}' within {timeout_s:.0f} s")
            time.sleep(0.1)
    return partition_count


def _check_existing_topic(admin: AdminClient, topic: str, partition_count: int, partitions: int,
                          config: Mapping[str, str], timeout_s: float) -> None:
    delete_hint = f"delete it (python -m bench topic delete {topic}) or choose another topic"
    if partition_count != partitions:
        raise UsageError(f"topic '{topic}' exists with {partition_count} partitions, "
                         f"not the {partitions} asked for; {delete_hint}")
    if config:
        actual = topic_configs(admin, topic, timeout_s)
        for name, value in config.items():
            if actual.get(name) != value:
                raise UsageError(f"topic '{topic}' exists with {name}={actual.get(name)}, "
                                 f"not the {value} asked for; {delete_hint}")


def delete_topic(admin: AdminClient, topic: str, timeout_s: float = ADMIN_TIMEOUT_S) -> None:
    future = admin.delete_topics([topic], operation_timeout=timeout_s)[topic]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as error:
        raise RunFailed(f"could not delete topic '{topic}': {_reason(error)}") from None


def _describe(admin: AdminClient, resource: ConfigResource, timeout_s: float) -> dict[str, str]:
    def describe(wait_s: float):
        return admin.describe_configs([resource], request_timeout=wait_s)[resource].result(timeout=wait_s)

    try:
        entries = retry_while_catching_up(describe, timeout_s)
    except KafkaException as error:
        raise RunFailed(f"could not read {resource}: {_reason(error)}") from None
    return {name: entry.value for name, entry in entries.items()}


def broker_configs(admin: AdminClient, timeout_s: float = ADMIN_TIMEOUT_S) -> dict[str, str]:
    """The configuration of the first broker in the cluster metadata that answers: a node that is
    down or restarting does not, and the next one is asked (each gets a share of timeout_s)."""
    deadline = time.monotonic() + timeout_s
    broker_ids = sorted(admin.list_topics(timeout=timeout_s).brokers)
    failure: RunFailed | None = None
    for broker_id in broker_ids:
        share_s = min(deadline - time.monotonic(), max(2.0, timeout_s / len(broker_ids)))
        if share_s <= 0:
            break
        try:
            return _describe(admin, ConfigResource(ConfigResource.Type.BROKER, str(broker_id)), share_s)
        except RunFailed as error:
            failure = error
    raise failure or RunFailed(f"no broker answered for its configuration within {timeout_s:.0f} s")


def topic_configs(admin: AdminClient, topic: str, timeout_s: float = ADMIN_TIMEOUT_S) -> dict[str, str]:
    """The topic's settings. A node that has just started may not know the topic yet, and the
    request goes to any node: it is asked again until timeout_s (RunFailed after)."""
    return _describe(admin, ConfigResource(ConfigResource.Type.TOPIC, topic), timeout_s)


def topic_watermarks(
    bootstrap_servers: str,
    topic: str,
    extra: Mapping[str, object] | None = None,
    timeout_s: float = ADMIN_TIMEOUT_S,
    missing_ok: bool = False,
) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} offsets of every partition of the topic.

    The metadata may come from a node that has just started and does not know the topic yet:
    it is asked again until timeout_s, then RunFailed. missing_ok: a topic no node knows is {}
    at once (for a caller waiting for it to appear)."""
    # A throwaway consumer (no group join, no commits) is the client API for watermarks.
    consumer = Consumer(consumer_config(bootstrap_servers, group_id="streamstore-watermarks", extra=extra))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            metadata = retry_while_catching_up(lambda wait_s: consumer.list_topics(topic=topic, timeout=wait_s),
                                               max(0.1, deadline - time.monotonic()))
            listed = metadata.topics.get(topic)
            if listed is not None and listed.error is None and listed.partitions:
                break
            code = listed.error.code() if listed is not None and listed.error is not None else None
            if missing_ok and code in (None, KafkaError.UNKNOWN_TOPIC_OR_PART):
                return {}
            if time.monotonic() > deadline:
                raise KafkaException(listed.error if code is not None else
                                     KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "the topic has no partitions"))
            time.sleep(0.1)
        return {
            partition: _watermarks(consumer, TopicPartition(topic, partition), timeout_s)
            for partition in sorted(listed.partitions)
        }
    except KafkaException as error:
        raise RunFailed(f"could not read offsets of topic '{topic}': {_reason(error)}") from None
    finally:
        consumer.close()


# What a node answers for a moment while it, or the leader of a partition, changes: a failover
# (the new leader has not taken over yet), a node that has just started (its metadata has not
# caught up: it does not know a topic that exists), a node shutting down (the connection drops).
# A request to a node that has just died may also end with its broker handle destroyed
# (_DESTROY_BROKER: librdkafka dropped the node from its metadata); the next one goes elsewhere.
_CATCHING_UP = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                          KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT,
                          KafkaError._ALL_BROKERS_DOWN, KafkaError.NOT_CONTROLLER, KafkaError._DESTROY_BROKER})


def retry_while_catching_up(call: Callable[[float], T], timeout_s: float) -> T:
    """call(seconds it may wait), asked again while the cluster answers with a transient error
    (see _CATCHING_UP), until timeout_s in all; then the last error is raised."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call(max(0.1, deadline - time.monotonic()))
        except KafkaException as error:
            code = error.args[0].code() if error.args and hasattr(error.args[0], "code") else None
            if code not in _CATCHING_UP or time.monotonic() + 0.1 > deadline:
                raise
            time.sleep(0.1)


def _watermarks(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> tuple[int, int]:
    return retry_while_catching_up(lambda wait_s: consumer.get_watermark_offsets(partition, timeout=wait_s), timeout_s)


def message_count(watermarks: Mapping[int, tuple[int, int]]) -> int:
    """Messages currently held across partitions (high - low summed)."""
    return sum(high - low for low, high in watermarks.values())

