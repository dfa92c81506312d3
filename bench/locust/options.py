"""The Locust user's options: Locust custom arguments turned into one frozen Scenario (the
same object `bench run` reads from a TOML file), checked before any user is spawned."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from bench.analysis.thresholds import Limit, parse_checks
from bench.core.groups import fans_out
from bench.core.scenario import Scenario, merge_overrides, parse_set_option
from bench.results.store import DEFAULT_RESULTS_ROOT
from streamstore.config import default_bootstrap_servers
from streamstore.errors import UsageError

RESULT_NAME_PREFIX = "locust-"


# Option names (dest) of the Kafka arguments; values None mean "not given" so a scenario
# file's field stays as it is.
_SCENARIO_OPTIONS = {
    "kafka_topic": "topic",
    "kafka_partitions": "partitions",
    "message_size": "message_size",
    "payload": "payload",
    "compression": "compression",
    "compression_level": "compression_level",
    "acks": "acks",
    "linger_ms": "linger_ms",
    "warmup": "warmup_s",
}


def add_arguments(parser) -> None:
    """Locust custom arguments (so LOCUST_<NAME> env vars and locust.conf work too)."""
    # On the parser itself, not a group: only Locust's add_argument knows is_secret, and only
    # parser arguments appear in the web UI.
    def add(flag: str, **kwargs) -> None:
        # Locust reads LOCUST_<NAME> only for arguments that name their environment variable.
        parser.add_argument(flag, env_var="LOCUST_" + flag[2:].upper().replace("-", "_"), **kwargs)

    add("--kafka-bootstrap-servers", default=default_bootstrap_servers(),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092)")
    add("--scenario", default="",
        help="scenario TOML to start from (the files of `bench run`); the options below override it")
    add("--kafka-topic", default=None, help="topic to produce to (default: bench-orders)")
    add("--kafka-partitions", type=int, default=None, help="partitions when the topic is created")
    add("--message-size", default=None, help="message value size: 200, 1KB, 1MB ... (default 200)")
    add("--payload", default=None, help="order | text | random (default order)")
    add("--compression", default=None, help="none | gzip | snappy | lz4 | zstd (default none)")
    add("--compression-level", type=int, default=None, help="codec level, -1 = codec default")
    add("--acks", default=None, help="all | 1 | 0 (default all)")
    add("--linger-ms", type=float, default=None, help="librdkafka linger.ms (default 5)")
    add("--warmup", type=float, default=None,
        help="seconds at the start left out of the summary percentiles (default 0)")
    add("--user-rate", type=float, default=None,
        help="messages/s per user; 0 = as fast as possible (default: the scenario's rate "
        "divided by --users, else 0)")
    add("--load-steps", default="",
        help="user-count steps USERS@SECONDS,... (e.g. 2@10,4@10,8@20); -r sets the ramp between them")
    add("--kafka-config", default="",
        help="extra librdkafka producer settings KEY=VALUE,KEY=VALUE (e.g. security.protocol=SASL_SSL)")
    add("--sasl-username", default="", help="sasl.username for the producer and tracker")
    add("--sasl-password", default="", is_secret=True,
        help="sasl.password (shown masked in the web UI, never written to results)")
    add("--check", default="",
        help="absolute limits, comma-separated, e.g. 'service_time_p99<50ms,end_to_end_p99<200ms,lost<=0': "
        "exit code 1 when one is not met (the syntax of bench regress --check; docs/reports.md)")
    add("--no-tracker", action="store_true", default=False,
        help="skip the tracker (no end-to-end latency, lag or loss audit)")
    add("--results-dir", default=str(DEFAULT_RESULTS_ROOT), help="where run folders go (default results)")


def _parse_key_values(text: str, option: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        try:
            key, value = parse_set_option(item)
        except UsageError:
            raise UsageError(f"--{option} {item!r}: expected KEY=VALUE (e.g. socket.timeout.ms=60000)") from None
        settings[key] = value
    return settings


def scenario_from_options(options) -> Scenario:
    """The Scenario of a Locust run: the --scenario file (if any) with the options applied."""
    overrides: dict[str, Any] = {
        field: getattr(options, dest) for dest, field in _SCENARIO_OPTIONS.items() if getattr(options, dest) is not None
    }
    for key, value in _parse_key_values(options.kafka_config, "kafka-config").items():
        overrides[f"producer_config.{key}"] = value
    for key, value in _sasl_settings(options).items():
        overrides[f"producer_config.{key}"] = value
        overrides[f"consumer_config.{key}"] = value
    if options.scenario:
        base = Scenario.from_toml(options.scenario)
        if base.phases:
            raise UsageError(f"{options.scenario}: rate phases do not apply to Locust; use --load-steps for steps")
        if base.transaction_size:
            # Commit and abort block until the coordinator answers: in gevent that stalls every user.
            raise UsageError(f"{options.scenario}: transactions do not apply to Locust (a commit blocks the whole "
                             "worker); run it with bench run")
        if fans_out(base):
            raise UsageError(f"{options.scenario}: consumer groups do not apply to Locust yet, nor consumer events "
                             "(its master runs the one tracker); run it with bench run")
        if base.backlog:
            raise UsageError(f"{options.scenario}: a backlog does not apply to Locust (its users produce from the "
                             "start and its master runs the one tracker); run it with bench run")
        values = {**base.to_dict(), "producer_config": dict(base.producer_config),
                  "consumer_config": dict(base.consumer_config)}
        values.pop("phases")
        name = RESULT_NAME_PREFIX + base.name
    else:
        values = {"warmup_s": 0.0}
        name = RESULT_NAME_PREFIX + "orders"
    values["name"] = name
    merged = merge_overrides(values, overrides)
    # Locust's statistics take one report per request: every delivery is reported.
    merged["delivery_reports"] = "all"
    # Locust's -t decides how long the test runs; the result records the real duration.
    merged["duration_s"] = max(float(merged.get("duration_s") or 0), float(merged.get("warmup_s") or 0) + 1)
    return Scenario.from_mapping(merged, source="locust options")


def _sasl_settings(options) -> dict[str, str]:
    settings = {}
    if options.sasl_username:
        settings["sasl.username"] = options.sasl_username
    if options.sasl_password:
        settings["sasl.password"] = options.sasl_password
    return settings


def user_rate(options, scenario: Scenario) -> float:
    """Messages per second for one user (0 = flat out)."""
    if options.user_rate is not None:
        if options.user_rate < 0 or options.user_rate != options.user_rate:
            raise UsageError(f"--user-rate: {options.user_rate} must be 0 (flat out) or a positive rate")
        return float(options.user_rate)
    if options.scenario and scenario.rate:
        return scenario.rate / max(1, options.num_users or 1)
    return 0.0


_LOAD_STEP = re.compile(r"^\s*(\d+)\s*@\s*(\d+(?:\.\d+)?)\s*s?\s*$")


def parse_load_steps(text: str) -> tuple[tuple[int, float], ...]:
    """`2@10,4@10,8@20` -> ((2, 10.0), (4, 10.0), (8, 20.0)): users held for seconds."""
    steps = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        match = _LOAD_STEP.match(item)
        if not match or int(match[1]) < 0 or float(match[2]) <= 0:
            raise UsageError(f"--load-steps {item!r}: expected USERS@SECONDS (e.g. 4@10), seconds > 0")
        steps.append((int(match[1]), float(match[2])))
    return tuple(steps)


def tracked_scenario(scenario: Scenario, rate_per_user: float) -> Scenario:
    """The scenario as the runner's producer and tracker rules see it: rate 0 exactly when the
    users send flat out (the sampled trace header and offset audit, a lower-priority tracker)."""
    return dataclasses.replace(scenario, rate=rate_per_user)


def validate_options(options) -> tuple[Scenario, float, list[Limit]]:
    """Everything a bad option can break, checked before a user is spawned."""
    scenario = scenario_from_options(options)
    rate = user_rate(options, scenario)
    limits = parse_checks(options.check)
    relative = [check.describe() for check in limits if not isinstance(check, Limit)]
    if relative:
        raise UsageError(f"--check {relative[0]!r} compares with a baseline: run bench regress on the result folder; "
                         "locust --check takes absolute limits such as service_time_p99<50ms")
    parse_load_steps(options.load_steps)
    tracker_metrics = [limit.describe() for limit in limits
                       if limit.metric.name.startswith("end_to_end") or limit.metric.name in ("lost", "duplicated")]
    if options.no_tracker and tracker_metrics:
        raise UsageError(f"--check {tracker_metrics[0]!r} needs the tracker (end-to-end latency, lost and duplicated "
                         "are measured by it); drop --no-tracker")
    return scenario, rate, limits
