"""The nodes a fault can act on, one interface for the single embedded broker and a cluster's nodes.

A node has an id and can be killed (SIGKILL, returns once the process is gone), started again,
stopped cleanly (SIGTERM, SIGKILL after a grace period), paused (SIGSTOP) and resumed (SIGCONT).
The single embedded broker is node 1 (its KRaft node.id); a cluster's nodes carry their own ids.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from typing import Any, Protocol

from bench.broker.embedded import EmbeddedBroker
from streamstore.errors import UsageError

# A restarted broker replays its log first; on a busy 2-core machine that plus JVM start-up
# has taken 20 s, so allow far more before calling the restart failed.
RESTART_TIMEOUT_S = 120.0
# A clean shutdown moves leadership away first; a loaded node has needed a few seconds.
STOP_GRACE_S = 30.0


class Node(Protocol):
    node_id: int

    def kill(self) -> None: ...
    def start(self, timeout_s: float = RESTART_TIMEOUT_S) -> Any: ...
    def stop(self, grace_s: float = STOP_GRACE_S) -> Any: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


class SingleBrokerNode:
    """The single embedded broker (KRaft combined mode) as node 1."""

    node_id = 1

    def __init__(self, broker: EmbeddedBroker):
        self.broker = broker
        self._paused_pid: int | None = None

    @property
    def pid(self) -> int | None:
        return self.broker.pid

    def kill(self) -> None:
        pid = self.broker.pid
        if pid is None:
            raise UsageError("the embedded broker is no longer running; nothing to kill")
        os.kill(pid, signal.SIGKILL)
        while self.broker.pid is not None:
            time.sleep(0.01)

    def start(self, timeout_s: float = RESTART_TIMEOUT_S) -> Any:
        return self.broker.start(timeout_s=timeout_s)

    def stop(self, grace_s: float = STOP_GRACE_S) -> Any:
        return self.broker.stop(grace_s=grace_s)

    def pause(self) -> None:
        pid = self.broker.pid
        if pid is None:
            raise UsageError("the embedded broker is no longer running; nothing to pause")
        os.kill(pid, signal.SIGSTOP)
        self._paused_pid = pid

    def resume(self) -> None:
        if self._paused_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._paused_pid, signal.SIGCONT)
            self._paused_pid = None


def nodes_of(broker_or_cluster: Any) -> Mapping[int, Node]:
    """node id -> node: the single embedded broker, or a cluster's own nodes (`.nodes`)."""
    if isinstance(broker_or_cluster, EmbeddedBroker):
        return {SingleBrokerNode.node_id: SingleBrokerNode(broker_or_cluster)}
    return {node.node_id: node for node in broker_or_cluster.nodes}
