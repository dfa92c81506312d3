"""The nodes a fault can act on, one interface for the single embedded broker and a cluster's nodes.

Both are `KafkaNode`s (bench/broker/embedded.py): an id, and kill (SIGKILL, returns once the
process is gone), start (returns once it answers), stop (SIGTERM, SIGKILL after a grace period),
pause (SIGSTOP) and resume (SIGCONT). The single embedded broker is node 1 (its KRaft node.id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bench.broker.embedded import KafkaNode

# A restarted broker replays its log first; on a busy 2-core machine that plus JVM start-up
# has taken 20 s, so allow far more before calling the restart failed.
RESTART_TIMEOUT_S = 120.0
# A clean shutdown moves leadership away first; a loaded node has needed a few seconds.
STOP_GRACE_S = 30.0


class Node(Protocol):
    node_id: int

    def kill(self) -> Any: ...
    def start(self, timeout_s: float = RESTART_TIMEOUT_S) -> Any: ...
    def stop(self, grace_s: float = STOP_GRACE_S) -> Any: ...
    def pause(self) -> Any: ...
    def resume(self) -> Any: ...


def nodes_of(broker_or_cluster: Any) -> Mapping[int, Node]:
    """node id -> node: the single embedded broker, or a cluster's nodes (`.nodes`)."""
    if isinstance(broker_or_cluster, KafkaNode):
        return {broker_or_cluster.node_id: broker_or_cluster}
    return {node.node_id: node for node in broker_or_cluster.nodes}
