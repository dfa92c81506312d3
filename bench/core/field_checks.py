"""Pure checks of one value a user gave (a scenario field, a --set, a settings table), each
failing with the one-line UsageError a user sees; and the size syntax (200, 1KB, 10MB, 1GB)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streamstore.errors import UsageError

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any, field: str) -> int:
    """Bytes from 200, "200", "1KB" (1000), "10MB", "1GB" (1e9), "64KiB" (65536)."""
    if isinstance(value, bool):
        raise UsageError(f"{field}: expected a size like 200, 1KB, 10MB or 1GB, not {value!r}")
    if isinstance(value, int):
        number, unit = value, ""
    elif isinstance(value, str) and (match := _SIZE_TEXT.match(value)):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise UsageError(f"{field}: expected a size like 200, 1KB, 10MB or 1GB, not {value!r}")
    if unit not in _SIZE_UNITS:
        raise UsageError(
            f"{field}: unknown size unit {match.group(2)!r} in {value!r} (use B, KB, MB, GB = powers of 1000, or KiB, MiB, GiB)"
        )
    size = number * _SIZE_UNITS[unit]
    if size != int(size):
        raise UsageError(f"{field}: {value!r} is not a whole number of bytes")
    return int(size)


def flatten_settings(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """TOML reads `sasl.mechanism = "PLAIN"` as nested tables; librdkafka wants dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_client_config(source: str, config: Any, owned: Mapping[str, str]) -> dict[str, Any]:
    """Extra librdkafka settings as a user gave them (a scenario's producer_config, the sweep's
    --client-config): a table of strings, numbers and booleans, none of them a key the harness
    sets itself. owned: key -> what sets it, the end of the refusal "'key' is set by ..."."""
    if not isinstance(config, Mapping):
        raise UsageError(f"{source}: expected a table of librdkafka settings")
    for key, value in config.items():
        if key in owned:
            raise UsageError(f"{source}: {key!r} is set by {owned[key]}")
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise UsageError(f"{source}: {key!r} must be a string, number or boolean, not {value!r}")
    return dict(config)


def check_name(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{field}: expected a non-empty text, not {value!r}")


def check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{field}: {value!r} is not allowed (allowed: {', '.join(allowed)})")


def check_int(field: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{field}: expected a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise UsageError(f"{field}: {value} is out of range (allowed {allowed})")


def check_number(field: str, value: Any, low: float, high: float | None, open_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise UsageError(f"{field}: expected a number, not {value!r}")
    too_low = value <= low if open_low else value < low
    if too_low or (high is not None and value > high):
        bound = f"> {low}" if open_low else f">= {low}"
        allowed = f"{bound} and <= {high}" if high is not None else bound
        raise UsageError(f"{field}: {value} is out of range (allowed {allowed})")
