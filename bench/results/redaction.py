"""Secrets never reach a result file, a report or a fingerprint: every value whose key looks like
a secret is replaced."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REDACTED = "***"
# librdkafka settings that hold secrets without saying so in their name.
_SECRET_KEYS = frozenset({"ssl.key.pem", "sasl.oauthbearer.config"})
_SECRET_WORDS = ("password", "secret", "token")


def _is_secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(word in lowered for word in _SECRET_WORDS)


def redact_secrets(mapping: Any) -> Any:
    """A copy with the value of every secret-looking key replaced by "***", at any depth."""
    if isinstance(mapping, Mapping):
        return {
            key: (REDACTED if _is_secret_key(key) and value is not None else redact_secrets(value))
            for key, value in mapping.items()
        }
    if isinstance(mapping, (list, tuple)):
        return [redact_secrets(item) for item in mapping]
    return mapping

