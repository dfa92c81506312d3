"""Figures and results as a person reads them: sizes, latencies, changes, one-line descriptions
of a scenario and an environment, UTC timestamps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def utc_datetime(started_at: dt.datetime | float) -> dt.datetime:
    if isinstance(started_at, dt.datetime):
        if started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        return started_at.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(started_at, tz=dt.UTC)



def utc_iso(moment: dt.datetime | float) -> str:
    """ISO-8601 UTC text for started_at / ended_at."""
    return utc_datetime(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")



def format_bytes(size: float) -> str:
    """Decimal units, as the scenario's sizes: 1 GB = 1e9 bytes; odd sizes stay exact."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= factor:
            scaled = size / factor
            return f"{scaled:g} {unit}" if abs(scaled - round(scaled, 3)) < 1e-9 else f"{size:,.0f} B"
    return f"{size:,.0f} B"


def format_size_field(value: Any) -> str:
    """A scenario's `message_size`: a size, or its distribution in a few words."""
    if not isinstance(value, Mapping):
        return format_bytes(value)
    if value.get("distribution") == "uniform":
        return f"{format_bytes(value['min'])}-{format_bytes(value['max'])} uniform"
    pairs = zip(value.get("sizes", []), value.get("weights", []))
    return "weighted " + ", ".join(f"{format_bytes(size)} x{weight:g}" for size, weight in pairs)


def format_us(value: float | None) -> str:
    """A latency in the unit a person reads: µs below 1 ms, ms below 10 s, else s."""
    if value is None:
        return "-"
    if value < 1_000:
        return f"{value:.0f} µs"
    if value < 10_000_000:
        return f"{value / 1000:.3g} ms" if value < 100_000 else f"{value / 1000:,.0f} ms"
    return f"{value / 1e6:.3g} s"


def format_value(value: float | None, unit: str) -> str:
    """A figure with its unit; latencies ("µs") are scaled by format_us."""
    if value is None:
        return "-"
    if unit == "µs":
        return format_us(value)
    if unit == "messages":
        return f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"


def format_change(change: float | None) -> str:
    return "-" if change is None else f"{change:+.1%}"


def format_delta(change: float | None, difference: float | None, unit: str) -> str:
    """A change against a reference: relative, or absolute where the reference is 0 (lost 0 -> 12
    is "+12 messages", not a ratio)."""
    if change is not None or difference is None:
        return format_change(change)
    if difference == 0:
        return "±0"
    return ("+" if difference > 0 else "-") + format_value(abs(difference), unit)


def describe_scenario(result: Mapping[str, Any]) -> str:
    """The scenario as a person reads it: what load, what message, which client settings."""
    scenario = result.get("scenario") or {}
    parts = [str(scenario.get("name") or result.get("kind") or "run")]
    rows = (result.get("large_message") or {}).get("rows") or []
    if rows:  # a sweep: its own sizes and codecs, not the template scenario's rate and size
        sizes = sorted({row["size_bytes"] for row in rows})
        codecs = list(dict.fromkeys(str(row.get("compression")) for row in rows))
        parts.append(f"sizes {', '.join(format_bytes(size) for size in sizes)}")
        parts.append(f"compression {'/'.join(codecs)}")
        if "payload" in scenario:
            parts.append(f"{scenario['payload']} payload")
        return ", ".join(parts)
    if scenario.get("phases"):
        steps = ", ".join(f"{p['rate']:g}/s x {p['duration_s']:g}s" for p in scenario["phases"])
        parts.append(f"phases {steps}")
    elif "rate" in scenario:
        parts.append("max rate" if not scenario["rate"] else f"{scenario['rate']:g} msg/s")
    elif "user_rate" in scenario:  # Locust: users x a per-user rate, as asked
        per_user = "max rate" if not scenario["user_rate"] else f"{scenario['user_rate']:g} msg/s"
        parts.append(f"{scenario.get('users')} users at {per_user} each")
    if scenario.get("duration_s") is not None:
        parts.append(f"{scenario['duration_s']:g} s (warm-up {scenario.get('warmup_s', 0):g} s)")
    if "message_size" in scenario:
        parts.append(f"{format_size_field(scenario['message_size'])} {scenario.get('payload', '')}".strip())
    if isinstance(scenario.get("keys"), Mapping):
        keys = scenario["keys"]
        parts.append(f"keys {keys['distribution']} over {keys['count']:,}"
                     + (f" (s={keys['s']:g})" if "s" in keys else ""))
    if "partitions" in scenario:
        parts.append(f"{scenario['partitions']} partition{'s' if scenario['partitions'] != 1 else ''}")
    if scenario.get("producers", 1) != 1:
        parts.append(f"{scenario['producers']} producers")
    # The settings that decide durability and cost, each said even at its default: a reader
    # comparing two runs must not have to guess whether idempotence was on.
    if "replication_factor" in scenario:
        parts.append(f"replication factor {scenario['replication_factor']}")
    if "min_insync_replicas" in scenario:
        parts.append(f"min ISR {scenario['min_insync_replicas'] if scenario['min_insync_replicas'] is not None else 'broker default'}")
    for key, label in (("acks", "acks="), ("idempotence", "idempotence "), ("compression", "compression "),
                       ("linger_ms", "linger.ms=")):
        if key in scenario:
            value = scenario[key]
            text = ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value
            parts.append(f"{label}{text}")
    if scenario.get("faults"):
        parts.append("faults " + " ".join(scenario["faults"]))
    return ", ".join(parts)


def describe_environment(result: Mapping[str, Any]) -> str:
    """Host, CPU, versions and harness commit of a result, in one line."""
    environment = result.get("environment") or {}
    broker = result.get("broker") or {}
    parts = []
    if environment.get("host"):
        parts.append(f"host {environment['host']}")
    if environment.get("cpu_model") or environment.get("cpu_count"):
        parts.append(f"{environment.get('cpu_count') or '?'} x {environment.get('cpu_model') or 'unknown CPU'}")
    if environment.get("python"):
        parts.append(f"Python {environment['python']}")
    if environment.get("librdkafka"):
        parts.append(f"librdkafka {environment['librdkafka']}")
    if broker.get("version"):
        parts.append(f"Kafka {broker['version']}{' (embedded)' if broker.get('embedded') else ''}")
    if environment.get("harness_version"):
        parts.append(f"harness {environment['harness_version']}")
    if environment.get("harness_commit"):
        parts.append(f"commit {environment['harness_commit'][:12]}")
    return ", ".join(parts) or "environment not recorded"
