"""Checks of a scenario that span several fields (replication, phases, faults, transactions),
each failing with the one-line UsageError a user sees. Split from bench/core/scenario.py, which
calls them on construction; `scenario` is the Scenario being built (may be normalized in place)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from bench.broker.fault_spec import CONSUMER_EVENTS, check_schedule, parse_faults, plan_consumer_events
from bench.core.field_checks import check_choice, check_int, check_number, parse_size
from streamstore.errors import UsageError

ISOLATION_LEVELS = ("read_committed", "read_uncommitted")
GROUP_PROTOCOLS = ("classic", "consumer")
# Client settings librdkafka refuses with group.protocol=consumer (the broker assigns, and times
# the session): what to use instead.
CLASSIC_ONLY_SETTINGS = {"partition.assignment.strategy": "the broker assigns; group.remote.assignor picks its assignor",
                         "group.protocol.type": "the consumer protocol has no protocol type"}
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Messages per transaction at most (a transaction's records wait in the producer until it ends).
MAX_TRANSACTION_SIZE = 1_000_000
# Consumer processes of a run at most (consumer_groups x consumers_per_group): each is a Python
# process that takes CPU from the producers and the broker it measures on a small machine.
MAX_CONSUMER_PROCESSES = 8


@dataclasses.dataclass(frozen=True)
class Phase:
    """One step of a rate schedule."""

    duration_s: float
    rate: float


def check_compression_level(scenario, levels) -> None:
    """compression_level within the codec's range (levels: codec -> (low, high); -1 = the codec's default)."""
    low, high = levels[scenario.compression]
    if high == -1 and scenario.compression_level != -1:
        raise UsageError(f"compression_level: {scenario.compression} has no levels (allowed -1 = default)")
    check_int("compression_level", scenario.compression_level, -1, high)
    if scenario.compression_level != -1 and scenario.compression_level < low:
        raise UsageError(f"compression_level: {scenario.compression_level} is out of range for {scenario.compression} "
                         f"(allowed -1 or {low}..{high})")


def check_delivery_reports(scenario, defaults, choices) -> None:
    """None resolves by rate (defaults: "flat_out"/"fixed_rate" -> mode), so a result states the mode that ran."""
    if scenario.delivery_reports is None:
        mode = "fixed_rate" if scenario.rate or scenario.transaction_size else "flat_out"
        object.__setattr__(scenario, "delivery_reports", defaults[mode])
    check_choice("delivery_reports", scenario.delivery_reports, choices)


def check_topic_name(topic) -> None:
    if not isinstance(topic, str) or not _TOPIC_NAME.match(topic) or topic in {".", ".."}:
        raise UsageError(f"topic: {topic!r} is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")


def check_replication(scenario) -> None:
    if scenario.min_insync_replicas is not None:
        check_int("min_insync_replicas", scenario.min_insync_replicas, 1, 32)
        if scenario.min_insync_replicas > scenario.replication_factor:
            raise UsageError(
                f"min_insync_replicas: {scenario.min_insync_replicas} is more than replication_factor "
                f"({scenario.replication_factor}); no acks=all write could ever succeed"
            )
    if scenario.unclean_leader_election is not None and not isinstance(scenario.unclean_leader_election, bool):
        raise UsageError(f"unclean_leader_election: expected true or false, not {scenario.unclean_leader_election!r}")


def check_phases(scenario) -> None:
    if not isinstance(scenario.phases, tuple) or not all(isinstance(p, Phase) for p in scenario.phases):
        raise UsageError("phases: expected a list of {duration_s, rate} tables")
    for index, phase in enumerate(scenario.phases):
        check_number(f"phases[{index}].duration_s", phase.duration_s, 0, None, open_low=True)
        check_number(f"phases[{index}].rate", phase.rate, 0, None, open_low=True)
    if scenario.phases:
        if abs(sum(p.duration_s for p in scenario.phases) - scenario.duration_s) > 1e-9:
            raise UsageError("duration_s: with phases it is their sum; leave duration_s out")
        if scenario.rate != max(p.rate for p in scenario.phases):
            raise UsageError("rate: with phases the rate comes from them; leave rate out")

def check_faults(scenario) -> None:
    if isinstance(scenario.faults, str) or not isinstance(scenario.faults, (list, tuple)):
        raise UsageError('faults: expected a list of faults like ["kill:leader@20+10"]')
    parsed = parse_faults([text if isinstance(text, str) else repr(text) for text in scenario.faults])
    check_schedule(parsed, scenario.duration_s)
    object.__setattr__(scenario, "faults", tuple(str(fault) for fault in parsed))


def check_transactions(scenario) -> None:
    """transaction_size, transaction_abort_ratio, isolation_level. A transactional producer is
    idempotent (librdkafka enables it), so `idempotence` is set to say so in the result; it
    needs acks=all and a delivery report per message (the audit needs each transaction's
    partitions: one commit or abort marker per partition and transaction)."""
    check_int("transaction_size", scenario.transaction_size, 0, MAX_TRANSACTION_SIZE)
    check_number("transaction_abort_ratio", scenario.transaction_abort_ratio, 0, 1)
    object.__setattr__(scenario, "transaction_abort_ratio", float(scenario.transaction_abort_ratio))
    check_choice("isolation_level", scenario.isolation_level, ISOLATION_LEVELS)
    if not scenario.transaction_size:
        if scenario.transaction_abort_ratio:
            raise UsageError("transaction_abort_ratio: needs transactions; set transaction_size (messages per transaction)")
        return
    if scenario.transaction_abort_ratio >= 1:
        raise UsageError("transaction_abort_ratio: 1 aborts every transaction; allowed 0 <= ratio < 1")
    if scenario.acks != "all":
        raise UsageError(f'transaction_size: transactions need acks = "all" (not {scenario.acks})')
    if scenario.delivery_reports == "failures":
        raise UsageError('delivery_reports: transactions need "all" (a report per message tells the audit '
                         "which partitions each transaction wrote)")
    object.__setattr__(scenario, "idempotence", True)


def check_consumers(scenario) -> None:
    """consumer_groups and consumers_per_group: whole numbers >= 1, at most MAX_CONSUMER_PROCESSES
    consumer processes in all. A group of several processes joins with group assignment and
    reads past transaction markers it cannot see, so it is not combined with transactions."""
    check_int("consumer_groups", scenario.consumer_groups, 1, MAX_CONSUMER_PROCESSES)
    check_int("consumers_per_group", scenario.consumers_per_group, 1, MAX_CONSUMER_PROCESSES)
    processes = scenario.consumer_groups * scenario.consumers_per_group
    if processes > MAX_CONSUMER_PROCESSES:
        raise UsageError(f"consumer_groups x consumers_per_group: {scenario.consumer_groups} x "
                         f"{scenario.consumers_per_group} = {processes} consumer processes; at most "
                         f"{MAX_CONSUMER_PROCESSES} in all")
    if scenario.consumers_per_group > 1 and scenario.transaction_size:
        raise UsageError("consumers_per_group: more than 1 does not combine with transaction_size yet "
                         "(use consumer_groups for fan-out with transactions)")
    parsed = parse_faults(scenario.faults)
    if has_consumer_events(scenario) and scenario.transaction_size:
        raise UsageError("faults: consumer events (add-consumer, kill-consumer, stop-consumer) do not combine "
                         "with transaction_size yet")
    plan_consumer_events(parsed, scenario.consumer_groups, scenario.consumers_per_group, MAX_CONSUMER_PROCESSES)


def has_consumer_events(scenario) -> bool:
    return any(text.split("@", 1)[0].split(":", 1)[0] in CONSUMER_EVENTS for text in scenario.faults)


def joins_groups(scenario) -> bool:
    """Whether the run's consumer processes join their groups (group assignment, a rebalance on each
    consumer event) rather than each assigning itself every partition: with several processes in a
    group, or consumer events."""
    return scenario.consumers_per_group > 1 or has_consumer_events(scenario)


def check_group_protocol(scenario) -> None:
    """group_protocol, session_timeout_ms, heartbeat_interval_ms: they shape how group members
    share partitions, so they need members that join a group; the consumer protocol refuses the
    client settings of the classic one (librdkafka refuses them at consumer creation)."""
    check_choice("group_protocol", scenario.group_protocol, GROUP_PROTOCOLS)
    for field in ("session_timeout_ms", "heartbeat_interval_ms"):
        if getattr(scenario, field) is not None:
            check_int(field, getattr(scenario, field), 1, 3_600_000)
    session, heartbeat = scenario.session_timeout_ms, scenario.heartbeat_interval_ms
    if session is not None and heartbeat is not None and heartbeat >= session:
        raise UsageError(f"heartbeat_interval_ms: {heartbeat} must be shorter than session_timeout_ms ({session})")
    changed = [field for field, default in (("group_protocol", "classic"), ("session_timeout_ms", None),
                                            ("heartbeat_interval_ms", None)) if getattr(scenario, field) != default]
    if changed and not joins_groups(scenario):
        raise UsageError(f"{changed[0]}: only consumers that join a group use it (consumers_per_group > 1, or a "
                         "consumer event such as kill-consumer@10); this run's consumers each read every partition")
    if scenario.group_protocol == "consumer":
        for key, instead in CLASSIC_ONLY_SETTINGS.items():
            if key in scenario.consumer_config:
                raise UsageError(f"consumer_config: {key} is a classic-protocol setting, refused with "
                                 f"group_protocol = \"consumer\" ({instead})")


def consumer_warnings(scenario) -> list[str]:
    """What a valid consumer layout still wastes: consumers beyond the partition count idle."""
    if scenario.consumers_per_group > scenario.partitions:
        return [f"consumers_per_group {scenario.consumers_per_group} is more than the topic's "
                f"{scenario.partitions} partitions: {scenario.consumers_per_group - scenario.partitions} "
                f"consumer(s) of each group get no partition and idle"]
    return []


# Messages of a backlog at most: its sequences are one bitmap per producer in the tracker, and it
# is sent flat out before the run's rate, so a typo of a few zeros should not fill the broker's disk.
MAX_BACKLOG_MESSAGES = 1_000_000_000


def check_backlog(scenario) -> None:
    """backlog: a whole number of messages (0: none), or a size text ("50MB") of value bytes,
    normalized to its exact byte count ("50000000B") so equal backlogs compare equal."""
    value = scenario.backlog
    if isinstance(value, str):
        size = parse_size(value, "backlog")
        if size < 1:
            raise UsageError(f"backlog: {value!r} is no bytes; give a size like 50MB, or 0 for no backlog")
        object.__setattr__(scenario, "backlog", f"{size}B")
        messages = backlog_messages(scenario)
    else:
        check_int("backlog", value, 0, MAX_BACKLOG_MESSAGES)
        messages = value
    if messages > MAX_BACKLOG_MESSAGES:
        raise UsageError(f"backlog: {messages:,} messages is more than {MAX_BACKLOG_MESSAGES:,}")


def backlog_messages(scenario) -> int:
    """How many messages the backlog holds: the count given, or a size in value bytes divided by
    the mean message size, rounded up (so the backlog holds at least that many bytes)."""
    value = scenario.backlog
    if not isinstance(value, str):
        return value
    size, mean = parse_size(value, "backlog"), scenario.mean_message_size()
    whole = int(size // mean)
    return whole if whole * mean >= size else whole + 1


def phases_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Phases as `Phase` objects, with duration_s (their sum) and rate (their peak) derived.

    A given duration_s or rate must agree with the derived one (a result file's scenario
    carries both); anything else is a contradiction the user must resolve.
    """
    raw = fields["phases"]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise UsageError("phases: expected a non-empty list of {duration_s, rate} tables")
    phases = []
    for index, entry in enumerate(raw):
        if isinstance(entry, Phase):
            entry = dataclasses.asdict(entry)
        if not isinstance(entry, Mapping) or set(entry) != {"duration_s", "rate"}:
            raise UsageError(f"phases[{index}]: expected a table with exactly duration_s and rate")
        for key in ("duration_s", "rate"):
            check_number(f"phases[{index}].{key}", entry[key], 0, None, open_low=True)
        phases.append(Phase(float(entry["duration_s"]), float(entry["rate"])))
    derived = {"duration_s": sum(p.duration_s for p in phases), "rate": max(p.rate for p in phases)}
    for key, value in derived.items():
        if key in fields and fields[key] != value:
            raise UsageError(f"{key}: with phases it is derived from them ({value:g}); leave {key} out")
    return {"phases": tuple(phases), **derived}
