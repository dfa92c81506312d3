"""The run's topic: created or checked with the scenario's settings, and where the run starts
reading it (every engine's run starts here; a consume-only run reads a topic it does not create)."""

from __future__ import annotations

import dataclasses

from bench.core.clients import high_watermarks, scenario_admin, scenario_watermarks
from bench.core.scenario import Scenario
from streamstore.admin import ensure_topic, topic_configs, topic_watermarks
from streamstore.errors import RunFailed, UsageError

# Topic settings copied into the result: the ones that change what a run measures.
REPORTED_TOPIC_SETTINGS = ("max.message.bytes", "compression.type", "min.insync.replicas", "segment.bytes",
                           "retention.ms", "message.timestamp.type", "unclean.leader.election.enable")
# Where a consume-only run starts reading: what arrives from now on, or all the topic holds.
CONSUME_FROM = ("end", "beginning")


def prepare_topic(scenario: Scenario, bootstrap_servers: str) -> tuple[dict[int, int], dict[str, str] | None, str | None]:
    """Create or check the topic with the scenario's settings, served by every broker; its high
    watermarks (where this run starts), the settings a result reports, and why they are None when
    no node answered for them (the run goes on without). Every engine's run starts here."""
    admin = scenario_admin(scenario, bootstrap_servers)
    ensure_topic(admin, scenario.topic, scenario.partitions, scenario.replication_factor,
                 config=scenario.topic_config(), client_settings=scenario.producer_config)
    reported, unread = _reported_settings(scenario, bootstrap_servers, admin)
    start = high_watermarks(scenario_watermarks(scenario, bootstrap_servers))
    if len(start) != scenario.partitions:
        # A tracker assigned to fewer partitions would report their orders lost, with lag 0.
        raise RunFailed(f"the broker lists {len(start)} of the {scenario.partitions} partitions of topic "
                        f"'{scenario.topic}' after creating it")
    return start, reported, unread


def _reported_settings(scenario: Scenario, bootstrap_servers: str, admin=None) -> tuple[dict[str, str] | None, str | None]:
    try:
        settings = topic_configs(admin or scenario_admin(scenario, bootstrap_servers), scenario.topic)
        return {k: settings[k] for k in REPORTED_TOPIC_SETTINGS if k in settings}, None
    except RunFailed as error:
        return None, str(error)


def consume_only_start(scenario: Scenario, bootstrap_servers: str,
                       consume_from: str) -> tuple[Scenario, dict[int, int], dict[str, str] | None, str | None]:
    """A consume-only run's topic, which something else fills: it must exist (it is not created);
    the scenario as run takes its partition count; the offsets the run starts from (its high
    watermarks, or its low ones from the beginning) and the reported settings."""
    watermarks = topic_watermarks(bootstrap_servers, scenario.topic, scenario.consumer_config, missing_ok=True)
    if not watermarks:
        raise UsageError(f"--consume-only: topic '{scenario.topic}' does not exist; a consume-only run reads a topic "
                         "something else fills (give it with --topic)")
    scenario = dataclasses.replace(scenario, partitions=len(watermarks))
    start = {p: (low if consume_from == "beginning" else high) for p, (low, high) in watermarks.items()}
    return (scenario, start, *_reported_settings(scenario, bootstrap_servers))

