"""The group protocol of a run's joining consumer groups: `classic` (the members' client picks the
assignment, the client times the session) or `consumer` (KIP-848: the broker assigns and times
the session). docs/scenarios.md has the table of what each side supports.

What differs, and where it is set:
- classic: `session_timeout_ms` / `heartbeat_interval_ms` are each member's librdkafka settings.
- consumer: librdkafka refuses those (they are the broker's), so the coordinator sets them as the
  group's own configs (`consumer.session.timeout.ms`, `consumer.heartbeat.interval.ms`, Kafka 4.0+)
  before any member joins; the broker bounds them (`group.consumer.min.session.timeout.ms`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import confluent_kafka
from confluent_kafka import KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from bench.core.clients import describe_error, scenario_admin
from bench.core.scenario import Scenario
from streamstore.errors import UsageError

# librdkafka's first release with the consumer protocol production-ready (2.12.0), as its version int.
CONSUMER_PROTOCOL_LIBRDKAFKA = (0x020C0000, "2.12.0")
# The broker setting that lists the group protocols it serves.
PROTOCOLS_SETTING = "group.coordinator.rebalance.protocols"


def member_settings(scenario: Scenario) -> dict[str, object]:
    """librdkafka settings of a member of a joining group."""
    # Which protocol the member joins with: the scenario's choice.
    settings: dict[str, object] = {"group.protocol": scenario.group_protocol}
    if scenario.group_protocol == "classic":
        if scenario.session_timeout_ms is not None:
            # How long the broker waits for a silent (killed) member before it rebalances.
            settings["session.timeout.ms"] = scenario.session_timeout_ms
        if scenario.heartbeat_interval_ms is not None:
            # How often a member tells the coordinator it is alive (and learns of a rebalance).
            settings["heartbeat.interval.ms"] = scenario.heartbeat_interval_ms
    return settings


def check_protocol_support(scenario: Scenario, broker_settings: Mapping[str, str] | None) -> None:
    """Refuse (one line, exit 2) a consumer protocol the client or the broker cannot serve. A broker
    whose settings could not be read is tried: its members' join then fails the run."""
    if scenario.group_protocol != "consumer":
        return
    version, text = CONSUMER_PROTOCOL_LIBRDKAFKA
    if confluent_kafka.libversion()[1] < version:
        raise UsageError(f"group_protocol = \"consumer\": needs librdkafka {text} or newer; this is "
                         f"{confluent_kafka.libversion()[0]}")
    if broker_settings is None:
        return
    served = broker_settings.get(PROTOCOLS_SETTING)
    if served is None:
        raise UsageError(f"group_protocol = \"consumer\": the broker has no {PROTOCOLS_SETTING} setting (Kafka before "
                         "3.7), so it serves only classic groups; Kafka serves the consumer protocol by default from 4.0")
    if "consumer" not in served.split(","):
        raise UsageError(f"group_protocol = \"consumer\": the broker serves only {served} groups "
                         f"({PROTOCOLS_SETTING}={served}; Kafka serves the consumer protocol by default from 4.0)")


def configure_groups(scenario: Scenario, bootstrap_servers: str, group_ids: Iterable[str], timeout_s: float = 30.0) -> None:
    """Under the consumer protocol, the session timeout and heartbeat as each group's own configs."""
    configs = {name: value for name, value in (("consumer.session.timeout.ms", scenario.session_timeout_ms),
                                               ("consumer.heartbeat.interval.ms", scenario.heartbeat_interval_ms))
               if value is not None}
    if scenario.group_protocol != "consumer" or not configs:
        return
    admin = scenario_admin(scenario, bootstrap_servers)
    for group_id in sorted(set(group_ids)):
        resource = ConfigResource(ResourceType.GROUP, group_id, incremental_configs=[
            ConfigEntry(name, str(value), incremental_operation=AlterConfigOpType.SET) for name, value in configs.items()])
        for future in admin.incremental_alter_configs([resource], request_timeout=timeout_s).values():
            try:
                future.result()
            except KafkaException as error:
                raise UsageError(f"session_timeout_ms / heartbeat_interval_ms under group_protocol = \"consumer\": the "
                                 f"broker refuses them as group {group_id}'s configs: {describe_error(error)}") from None
