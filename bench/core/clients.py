"""The scenario's librdkafka settings for every client a run opens: producer, consumer and
admin alike, so a SASL/SSL cluster's settings reach every connection in every engine."""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from bench.core.scenario import Scenario
from streamstore.admin import connect_admin, topic_watermarks
from streamstore.config import consumer_config, producer_config
from streamstore.errors import UsageError


def scenario_producer_config(scenario: Scenario, bootstrap_servers: str) -> dict:
    extra = {
        # The scenario's durability choice: "all" waits for every in-sync replica.
        "acks": scenario.acks,
        # The scenario's batching delay: latency traded for fewer, larger requests.
        "linger.ms": scenario.linger_ms,
        # The scenario's batch size cap in bytes.
        "batch.size": scenario.batch_size,
        # Exactly-once per partition when asked (needs acks=all, checked by Scenario).
        "enable.idempotence": scenario.idempotence,
        # -1 leaves the codec's own default level.
        "compression.level": scenario.compression_level,
        # "failures": the Python delivery callback runs for failed messages only.
        "delivery.report.only.error": scenario.delivery_reports == "failures",
        **scenario.producer_config,
    }
    return producer_config(bootstrap_servers, compression=scenario.compression, extra=extra)


def scenario_consumer_config(scenario: Scenario, bootstrap_servers: str, run_id: str) -> dict:
    extra = {
        # Offsets are assigned explicitly per run; committing them would only cost requests.
        "enable.auto.commit": False,
        # The scenario's choice: read_committed skips aborted transactions' records and waits for
        # each commit (librdkafka's default too); read_uncommitted reads every record at once.
        "isolation.level": scenario.isolation_level,
        # Once its local queue holds queued.min.messages (100,000), librdkafka waits this long
        # before it fetches again (default 1000 ms): a consumer reading a backlog faster than
        # that idles most of each second (240,000 against 1.3 million msg/s measured here on one
        # partition, docs/performance.md). 10 ms keeps it fetching.
        "fetch.queue.backoff.ms": 10,
        **scenario.consumer_config,
    }
    return consumer_config(bootstrap_servers, group_id=f"bench-tracker-{run_id}", extra=extra)


def check_client_settings(scenario: Scenario, bootstrap_servers: str) -> None:
    """librdkafka refuses unknown or invalid settings only when a client is created: create
    (and drop) one of each, so a typo is one UsageError line before anything connects."""
    for field_name, make_client in (
        ("producer_config", lambda: Producer(scenario_producer_config(scenario, bootstrap_servers))),
        ("consumer_config", lambda: Consumer(scenario_consumer_config(scenario, bootstrap_servers, "settings-check"))),
    ):
        try:
            client = make_client()
        except KafkaException as error:
            raise UsageError(f"{field_name}: librdkafka refuses the settings: {describe_error(error)}") from None
        if isinstance(client, Consumer):
            client.close()


def scenario_admin(scenario: Scenario, bootstrap_servers: str) -> AdminClient:
    """An answering AdminClient with the scenario's settings (an admin client is a producer-
    type client in librdkafka, so the producer settings are the ones it understands)."""
    return connect_admin(bootstrap_servers, extra=scenario.producer_config)


def scenario_watermarks(scenario: Scenario, bootstrap_servers: str) -> dict[int, tuple[int, int]]:
    """(low, high) per partition of the scenario's topic, read with its consumer settings."""
    return topic_watermarks(bootstrap_servers, scenario.topic, scenario.consumer_config)


def high_watermarks(watermarks: Mapping[int, tuple[int, int]]) -> dict[int, int]:
    return {partition: high for partition, (_, high) in watermarks.items()}


# librdkafka's reconnect.backoff.max.ms default; it applies -25 % to +50 % jitter to each backoff.
RECONNECT_BACKOFF_MAX_MS = 10_000
RECONNECT_JITTER = 1.5


def reconnect_allowance_s(config: Mapping[str, object]) -> float:
    """How long a client may wait before it tries a restarted broker again: after a long outage
    its reconnect backoff has grown to reconnect.backoff.max.ms, jitter included."""
    return RECONNECT_JITTER * float(config.get("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)) / 1000


def is_fatal(error: KafkaException) -> bool:
    return bool(error.args) and isinstance(error.args[0], KafkaError) and error.args[0].fatal()


def describe_error(error: Exception) -> str:
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return error.args[0].str().strip()  # librdkafka's range errors end with a newline
    return f"{type(error).__name__}: {error}"
