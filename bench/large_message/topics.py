"""The sweep's topics: a fresh one per cell, deleted after it (its stored bytes measured first
when the broker's log dir is on this host), or the user's --topic, kept."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from streamstore.admin import delete_topic, ensure_topic, topic_watermarks
from streamstore.errors import RunFailed


def _stored_bytes(log_dirs: str | None, topic: str) -> int | None:
    """Bytes of the partition's log segments when the broker's log dir is on this host."""
    for log_dir in (log_dirs or "").split(","):
        partition_dir = Path(log_dir.strip()) / f"{topic}-0"
        if log_dir.strip() and partition_dir.is_dir():
            return sum(path.stat().st_size for path in partition_dir.glob("*.log"))
    return None



class SweepTopics:
    """The sweep's topics: a fresh one per cell (deleted after it), or the user's --topic (kept)."""

    def __init__(self, admin: AdminClient, bootstrap_servers: str, client_settings: Mapping[str, Any],
                 broker_settings: Mapping[str, str], fixed_topic: str | None, run_id: str) -> None:
        self.admin, self.bootstrap_servers, self.client_settings = admin, bootstrap_servers, client_settings
        self.broker_settings, self.fixed_topic, self.run_id = broker_settings, fixed_topic, run_id
        self._to_delete: list[str] = []

    def new(self, purpose: str) -> tuple[str, int]:
        """(topic, offset where this cell's messages start)."""
        # The broker's own limit, so the sweep measures the broker as configured.
        max_message_bytes = int(self.broker_settings["message.max.bytes"])
        if self.fixed_topic is not None:
            if ensure_topic(self.admin, self.fixed_topic, max_message_bytes=max_message_bytes,
                            client_settings=self.client_settings):
                self._to_delete.append(self.fixed_topic)
            return self.fixed_topic, self.high_watermark(self.fixed_topic)
        topic = f"bench-large-message-{self.run_id[:8]}-{purpose}"
        ensure_topic(self.admin, topic, max_message_bytes=max_message_bytes, client_settings=self.client_settings)
        self._to_delete.append(topic)
        return topic, 0

    def high_watermark(self, topic: str) -> int:
        return topic_watermarks(self.bootstrap_servers, topic, self.client_settings)[0][1]

    def messages_since(self, topic: str, offset: int) -> int | None:
        """How far the topic's offsets grew since `offset` (None when the broker does not answer)."""
        try:
            return self.high_watermark(topic) - offset
        except RunFailed:
            return None

    def release(self, topic: str, messages: int) -> int | None:
        """Delete a fresh topic now (its stored bytes per message first, when the log is on this host)."""
        if self.fixed_topic is not None:
            return None
        log_bytes = _stored_bytes(self.broker_settings.get("log.dirs"), topic)
        self._to_delete.remove(topic)
        delete_topic(self.admin, topic)
        return log_bytes // messages if log_bytes is not None and messages else None

    def delete_all(self) -> None:
        while self._to_delete:
            delete_topic(self.admin, self._to_delete.pop())
