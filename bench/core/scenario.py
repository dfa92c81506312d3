"""The scenario: one frozen, validated description of a measured load.

A scenario comes from a TOML file in `scenarios/`, from `--set key=value` / explicit CLI flags,
or from Locust options (`Scenario.from_mapping`). Every path ends in the same constructor, and
the constructor validates: a bad field is one `UsageError` line naming the field and what it
accepts.

Units:
  sizes (`message_size`, `batch_size`) are bytes; a text size takes a decimal suffix
  B, KB (1000), MB (1000**2), GB (1000**3) — decimal, so "1GB" is the same 1e9 as librdkafka's
  `message.max.bytes` limit — or a binary one KiB, MiB, GiB.
  rates are messages per second over all producer processes together; 0 = as fast as possible.
  durations are seconds (`_s`), librdkafka times milliseconds (`_ms`).

The rate schedule is either `rate` for `duration_s`, or `phases`: a list of
{duration_s, rate} steps (a ramp or a burst); `duration_s` is then their sum and `rate`
the peak, both derived.
"""

from __future__ import annotations

import dataclasses
import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.core.distributions import (
    KeyDistribution,
    SizeDistribution,
    parse_keys,
    parse_message_size,
    pool_mean,
    size_pool,
)
from bench.core.field_checks import (
    check_choice,
    check_client_config,
    check_int,
    check_name,
    check_number,
    flatten_settings,
    parse_size,
)
from bench.core.scenario_checks import (
    Phase,
    backlog_messages,
    check_backlog,
    check_compression_level,
    check_consumers,
    check_delivery_reports,
    check_faults,
    check_group_protocol,
    check_phases,
    check_replication,
    check_topic_name,
    check_transactions,
    phases_fields,
)
from bench.core.scenario_files import resolve_scenario_path, scenarios_held, unknown_name
from bench.results.fingerprint import fingerprint_of
from bench.results.redaction import redact_secrets
from streamstore.config import CLIENT_MESSAGE_MAX_BYTES, MAX_VALUE_BYTES
from streamstore.errors import UsageError
from streamstore.orders import PAYLOAD_KINDS
from streamstore.trace import TRACE_HEADERS_BYTES

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# librdkafka's usable compression.level per codec; -1 is the codec's own default everywhere.
# (librdkafka's property range is -1..12, so zstd stops at 12 here too.)
COMPRESSION_LEVELS = {"none": (-1, -1), "snappy": (-1, -1), "gzip": (0, 9), "lz4": (0, 12), "zstd": (0, 12)}
ACKS = ("all", "0", "1")
KEY_MODES = ("none", "order_id")
# Which deliveries get a report in Python: every one ("all": per-message service and response
# times, acked offsets) or only the failed ones ("failures": librdkafka's
# delivery.report.only.error; acked = accepted - failed once flushed). None picks by rate.
DELIVERY_REPORTS = ("all", "failures")
# The mode a scenario that does not say runs in: flat out "failures" (measured faster with the
# same exact counts, docs/performance.md), at a fixed rate or with transactions "all" (response
# time, and a transaction's partitions, need a report per message).
DEFAULT_DELIVERY_REPORTS = {"flat_out": "failures", "fixed_rate": "all"}
# keys = "order_id" sends the order's id text as the key.
ORDER_ID_KEY_BYTES = len(str(uuid.UUID(int=0)))
# librdkafka's batch.size range.
BATCH_SIZE_RANGE = (1, 2_147_483_647)

# Producer/consumer settings that a scenario field owns: setting them through the extra
# config dicts would silently disagree with the field that the result file reports.
_FIELD_OWNED_PRODUCER_KEYS = {key: f"the scenario field {field!r}; set that instead" for key, field in {
    "acks": "acks", "request.required.acks": "acks",
    "compression.type": "compression", "compression.codec": "compression",
    "compression.level": "compression_level",
    "linger.ms": "linger_ms", "queue.buffering.max.ms": "linger_ms",
    "batch.size": "batch_size", "enable.idempotence": "idempotence",
    "delivery.report.only.error": "delivery_reports",
    "transactional.id": "transaction_size",
}.items()}
_FIELD_OWNED_CONSUMER_KEYS = {key: f"the scenario field {field!r}; set that instead" for key, field in {
    "isolation.level": "isolation_level", "group.protocol": "group_protocol", "session.timeout.ms": "session_timeout_ms",
    "heartbeat.interval.ms": "heartbeat_interval_ms"}.items()}

# Fields of older result files, no longer scenario fields: ignored when 0 (off), refused otherwise.
_RETIRED_FIELDS = {"fault_consumer_delay_ms": 'the slow-consumer fault, e.g. faults = ["slow-consumer=20ms@0+30"]',
                   "fault_tracker_stall_s": "nothing: it was a test seam"}


def key_size(keys: str | KeyDistribution) -> int:
    """Bytes of each message's key (every key of a distribution has the same length)."""
    if isinstance(keys, KeyDistribution):
        return keys.key_bytes()
    return ORDER_ID_KEY_BYTES if keys == "order_id" else 0


def max_message_size(keys: str | KeyDistribution) -> int:
    """The largest value librdkafka accepts with the trace headers and the chosen key."""
    return MAX_VALUE_BYTES - TRACE_HEADERS_BYTES - key_size(keys)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str = "adhoc"
    topic: str = "bench-orders"
    partitions: int = 3
    replication_factor: int = 1
    # Topic settings; None leaves the broker's default (not set on the topic, not checked).
    min_insync_replicas: int | None = None
    unclean_leader_election: bool | None = None
    # Bytes, or a distribution of sizes (bench/core/distributions.py).
    message_size: int | SizeDistribution = 200
    payload: str = "order"
    compression: str = "none"
    compression_level: int = -1
    rate: float = 1000.0
    duration_s: float = 30.0
    warmup_s: float = 5.0
    phases: tuple[Phase, ...] = ()
    producers: int = 1
    acks: str = "all"
    linger_ms: float = 5.0
    batch_size: int = 1_000_000
    idempotence: bool = False
    # "none" | "order_id", or a distribution of keys (bench/core/distributions.py).
    keys: str | KeyDistribution = "none"
    # "all" | "failures"; None: "failures" flat out, "all" at a fixed rate (resolved on construction).
    delivery_reports: str | None = None
    producer_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    consumer_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # After producing, the tracker gives up after this long without consuming any of the run's messages.
    drain_timeout_s: float = 10.0
    # Messages per transaction (0: none). Each producer process is transactional, with its own
    # transactional.id, and commits or aborts every transaction_size messages.
    transaction_size: int = 0
    # Share of transactions aborted: transaction t aborts when floor((t+1)r) > floor(tr), so
    # exactly that share of every 1/r transactions.
    transaction_abort_ratio: float = 0.0
    # The tracker's isolation.level: read_committed sees committed transactions only.
    isolation_level: str = "read_committed"
    # Faults during the run, in the --fault syntax (docs/faults.md), e.g. "kill:leader@20+10" or
    # "slow-consumer=20ms@10+15".
    faults: tuple[str, ...] = ()
    consumer_groups: int = 1  # fan-out: groups each reading the whole topic (bench/core/groups.py)
    consumers_per_group: int = 1  # consumer processes in each group
    # "classic" (client-side assignment) or "consumer" (KIP-848: the broker assigns); a group member's
    # session timeout and heartbeat (None: the protocol's default): docs/scenarios.md.
    group_protocol: str = "classic"
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None
    backlog: int | str = 0  # messages, or value bytes ("50MB"), sent before the consumers start (bench/core/backlog.py)

    def __post_init__(self) -> None:
        _validate(self)

    def topic_config(self) -> dict[str, str]:
        """The topic settings this scenario sets (created with them, an existing topic checked)."""
        config = {}
        if self.min_insync_replicas is not None:
            config["min.insync.replicas"] = str(self.min_insync_replicas)
        if self.unclean_leader_election is not None:
            config["unclean.leader.election.enable"] = "true" if self.unclean_leader_election else "false"
        return config

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "scenario") -> Scenario:
        """A scenario from plain values (TOML table, Locust options, a result file's scenario).

        Sizes may be text ("1KB"); nested client-config tables are flattened to dotted keys.
        """
        return cls(**_normalised_fields(values, source))

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
        """Read a scenario file, apply overrides (from `--set` or flags), validate.

        path: a file, or the name of one in `scenarios/` (`steady-orders`)."""
        path = resolve_scenario_path(path)
        try:
            with path.open("rb") as handle:
                values = tomllib.load(handle)
        except FileNotFoundError:
            raise UsageError(f"scenario file {path} does not exist{scenarios_held(path)}") from None
        except IsADirectoryError:
            raise UsageError(f"scenario file {path} is a folder, not a TOML file") from None
        except OSError as error:
            raise UsageError(f"cannot read scenario file {path}: {error.strerror or error}") from None
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"scenario file {path} is not valid TOML: {error}") from None
        values.setdefault("name", path.stem)
        return cls.from_mapping(merge_overrides(values, overrides or {}), source=str(path))

    # -- use --------------------------------------------------------------------------------

    def backlog_messages(self) -> int:
        return backlog_messages(self)  # 0: no backlog

    def schedule(self) -> tuple[Phase, ...]:
        """The rate schedule as phases (a steady scenario is one phase)."""
        return self.phases or (Phase(self.duration_s, self.rate),)

    def planned_bytes(self) -> int | None:
        """The record bytes a run writes to the brokers' logs, every replica counted (uncompressed,
        so an upper bound); None flat out, where the rate is whatever the brokers take."""
        if self.rate == 0 and not self.phases:
            return None
        messages = sum(phase.rate * phase.duration_s for phase in self.schedule()) + self.backlog_messages()
        return round(messages * self.mean_message_size() * self.replication_factor)

    def value_sizes(self) -> list[int]:
        """The value sizes a producer cycles through (one for a fixed size)."""
        if isinstance(self.message_size, SizeDistribution):
            return size_pool(self.message_size)
        return [self.message_size]

    def mean_message_size(self) -> float:
        """Mean value bytes per message as sent (over the pool's whole cycles: exact for a fixed size)."""
        return pool_mean(self.value_sizes())

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values, secret settings redacted."""
        values = dataclasses.asdict(self)
        values["producer_config"] = dict(self.producer_config)
        values["consumer_config"] = dict(self.consumer_config)
        for field in ("message_size", "keys"):
            value = getattr(self, field)
            if isinstance(value, (SizeDistribution, KeyDistribution)):
                values[field] = value.to_dict()
        return redact_secrets(values)

    def fingerprint(self) -> str:
        """16 hex chars over the fields that make two runs comparable (bench/results/fingerprint.py)."""
        return fingerprint_of(self.to_dict())


FIELD_NAMES = frozenset(field.name for field in dataclasses.fields(Scenario))


def _normalised_fields(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The fields of a scenario as the class takes them: sizes parsed, acks spelled one way,
    client-config tables flattened, phases parsed; an unknown or retired field refused."""
    fields = dict(values)
    for retired, successor in _RETIRED_FIELDS.items():
        if retired in fields and fields.pop(retired) not in (0, 0.0):
            raise UsageError(f"{source}: {retired} is no longer a scenario field; use {successor}")
    unknown = sorted(set(fields) - FIELD_NAMES)
    if unknown:
        raise UsageError(f"{source}: {unknown_field(unknown[0])}")
    if "batch_size" in fields:
        fields["batch_size"] = parse_size(fields["batch_size"], "batch_size")
    if "acks" in fields and isinstance(fields["acks"], int) and not isinstance(fields["acks"], bool):
        fields["acks"] = str(fields["acks"])
    if fields.get("acks") == "-1":
        fields["acks"] = "all"
    for config_field in ("producer_config", "consumer_config"):
        if config_field in fields:
            if not isinstance(fields[config_field], Mapping):
                raise UsageError(f"{config_field}: expected a table of librdkafka settings")
            fields[config_field] = flatten_settings(fields[config_field])
    if fields.get("phases") in ([], ()):
        del fields["phases"]
    if "phases" in fields:
        fields.update(phases_fields(fields))
    return fields


def unknown_field(name: str) -> str:
    return unknown_name("field", name, FIELD_NAMES)


# -- validation ------------------------------------------------------------------------------


def _validate(scenario: Scenario) -> None:
    """Every field's check, with the one-line UsageError a user sees; normalizes numbers and settings."""
    check_name("name", scenario.name)
    check_topic_name(scenario.topic)
    check_int("partitions", scenario.partitions, 1, 10_000)
    check_int("replication_factor", scenario.replication_factor, 1, 32)
    check_replication(scenario)
    check_choice("payload", scenario.payload, PAYLOAD_KINDS)
    check_choice("compression", scenario.compression, COMPRESSIONS)
    check_choice("acks", scenario.acks, ACKS)
    object.__setattr__(scenario, "keys", parse_keys(scenario.keys, KEY_MODES))
    check_compression_level(scenario, COMPRESSION_LEVELS)
    size = parse_message_size(scenario.message_size)
    object.__setattr__(scenario, "message_size", size)
    largest = size.largest if isinstance(size, SizeDistribution) else size
    check_int("message_size", largest, 1, None)
    limit = max_message_size(scenario.keys)
    if largest > limit:
        raise UsageError(
            f"message_size: {largest:,} bytes is above the client limit; at most {limit:,} bytes "
            f"(librdkafka message.max.bytes {CLIENT_MESSAGE_MAX_BYTES:,} minus record, trace header"
            f"{' and key' if key_size(scenario.keys) else ''} overhead)"
        )
    check_int("batch_size", scenario.batch_size, *BATCH_SIZE_RANGE)
    check_number("rate", scenario.rate, 0, None)
    check_number("duration_s", scenario.duration_s, 0, None, open_low=True)
    check_number("warmup_s", scenario.warmup_s, 0, None)
    check_number("drain_timeout_s", scenario.drain_timeout_s, 0, None)
    check_number("linger_ms", scenario.linger_ms, 0, 900_000)
    # Whole numbers from TOML are fine; store floats so equal scenarios compare and hash equal.
    for field in ("rate", "duration_s", "warmup_s", "drain_timeout_s", "linger_ms"):
        object.__setattr__(scenario, field, float(getattr(scenario, field)))
    if scenario.warmup_s >= scenario.duration_s:
        raise UsageError(f"warmup_s: {scenario.warmup_s:g} must be shorter than duration_s ({scenario.duration_s:g})")
    check_int("producers", scenario.producers, 1, 64)
    if not isinstance(scenario.idempotence, bool):
        raise UsageError(f"idempotence: expected true or false, not {scenario.idempotence!r}")
    if scenario.idempotence and scenario.acks != "all":
        raise UsageError(f"idempotence: needs acks = \"all\" (librdkafka refuses acks={scenario.acks} with idempotence)")
    check_phases(scenario)
    check_delivery_reports(scenario, DEFAULT_DELIVERY_REPORTS, DELIVERY_REPORTS)
    check_transactions(scenario)
    check_faults(scenario)
    check_consumers(scenario)
    check_group_protocol(scenario)
    check_backlog(scenario)
    producer_config = check_client_config("producer_config", scenario.producer_config, _FIELD_OWNED_PRODUCER_KEYS)
    object.__setattr__(scenario, "producer_config", producer_config)
    object.__setattr__(scenario, "consumer_config", check_client_config("consumer_config", scenario.consumer_config,
                                                                              _FIELD_OWNED_CONSUMER_KEYS))


# -- overrides ------------------------------------------------------------------------------


def parse_set_option(text: str) -> tuple[str, Any]:
    """`key=value` from `--set`; the value is TOML when it parses as such, else a string."""
    key, separator, raw = text.partition("=")
    key = key.strip()
    if not separator or not key:
        raise UsageError(f"--set {text!r}: expected key=value (e.g. --set rate=5000)")
    field, dot, _ = key.partition(".")
    if field not in FIELD_NAMES:
        raise UsageError(f"--set {text}: {unknown_field(field)}")
    if dot and field not in ("producer_config", "consumer_config"):
        raise UsageError(f"--set {text}: only producer_config and consumer_config take dotted settings; "
                         f"use --set {field}=VALUE")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def merge_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """File values with overrides applied; `producer_config.KEY` sets one librdkafka setting.

    Overriding `rate` or `duration_s` on a phased scenario replaces the phases by a steady rate.
    """
    merged = dict(values)
    for key, value in overrides.items():
        config, dot, setting = key.partition(".")
        if dot and config in ("producer_config", "consumer_config"):
            merged[config] = {**flatten_settings(merged.get(config, {})), setting: value}
        elif key == "phases":
            raise UsageError("phases: cannot be set from the command line; edit the scenario file")
        else:
            merged[key] = value
    if "phases" in merged and ({"rate", "duration_s"} & set(overrides)):
        phases = phases_fields({"phases": merged.pop("phases")})
        merged.setdefault("rate", phases["rate"])
        merged.setdefault("duration_s", phases["duration_s"])
    return merged
