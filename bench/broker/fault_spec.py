"""The fault syntax, pure: `KIND[:TARGET][=AMOUNT]@AT[+FOR]`, parsed and checked against a run.

  kill@20+5                 SIGKILL the (single) broker 20 s in, start it again 5 s later
  kill:leader@20+10         the leader of partition 0 of the run's topic, found when the fault begins
  kill:leader/2@20+10       the leader of partition 2
  pause:follower@20+5       a follower of partition 0 (SIGSTOP, SIGCONT 5 s later)
  pause:followers@20+9      every follower of partition 0
  kill:controller@20+10     the active KRaft controller
  kill:node2@20+10          node id 2
  stop:node2@20+10          clean shutdown, start again 10 s later
  rolling-restart@20        every node in turn: clean shutdown, start, wait until back in the ISR
  isolate:leader@20+5       cut the node's client connections (its proxy), replication goes on
  delay:node1=200ms@20+10   hold every byte the node sends to clients 200 ms (its proxy)

Roles are resolved when the fault begins, not when it is parsed: who leads changes during a run.
Faults may overlap when they name different targets (`pause:followers@5+9` with
`kill:leader@11+10`); two faults on the same target may not, nor may anything overlap or follow a
rolling restart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from streamstore.errors import UsageError

# Kinds that last FOR seconds, and the one that ends when it is done.
TIMED_KINDS = ("kill", "pause", "stop", "isolate", "delay")
ROLLING_RESTART = "rolling-restart"
FAULT_KINDS = (*TIMED_KINDS, ROLLING_RESTART)
# Kinds that act through the per-node client proxy.
PROXY_KINDS = ("isolate", "delay")
# Targets that name a partition's replicas.
_PARTITION_ROLES = ("leader", "follower", "followers")
ROLES = ("leader", "follower", "followers", "controller")
# "" is the broker of a single-node run (today's `kill@20+5`).
_FAULT_TEXT = re.compile(
    r"^(?P<kind>[a-z-]+)(?::(?P<target>[a-z]+\d*(?:/\d+)?))?(?:=(?P<amount>\d+(?:\.\d+)?)ms)?"
    r"@(?P<at>\d+(?:\.\d+)?)(?:\+(?P<for>\d+(?:\.\d+)?))?$")
_TARGET = re.compile(r"^(?:(?P<role>leader|followers?)(?:/(?P<partition>\d+))?|controller|node(?P<node>\d+))$")
SYNTAX = ("KIND[:TARGET][=DELAYms]@AT+FOR with KIND one of " + ", ".join(FAULT_KINDS)
          + " and TARGET leader[/P], follower[/P], followers[/P], controller or nodeN, e.g. kill@20+5, kill:leader@20+10, "
            "pause:follower@20+5, delay:node1=200ms@20+10 or rolling-restart@20")


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    for_s: float
    # "" (the single broker), "leader", "follower", "followers", "controller" or "node<id>".
    target: str = ""
    # The partition of the run's topic a leader/follower target refers to.
    partition: int = 0
    # delay only: how long the proxy holds each byte the node sends.
    delay_ms: float = 0.0

    @property
    def node_id(self) -> int | None:
        """The node a `nodeN` target names; None for a role or the single broker."""
        return int(self.target[4:]) if self.target.startswith("node") else None

    def __str__(self) -> str:
        target = ""
        if self.target:
            target = f":{self.target}" + (f"/{self.partition}" if self.partition and self.target in _PARTITION_ROLES else "")
        amount = f"={self.delay_ms:g}ms" if self.kind == "delay" else ""
        length = "" if self.kind == ROLLING_RESTART else f"+{self.for_s:g}"
        return f"{self.kind}{target}{amount}@{self.at_s:g}{length}"


def parse_fault(text: str) -> Fault:
    match = _FAULT_TEXT.match(text.strip())
    if not match or match["kind"] not in FAULT_KINDS:
        raise UsageError(f"--fault {text!r}: expected {SYNTAX}")
    kind, target_text = match["kind"], match["target"] or ""
    target, partition = target_text, 0
    if target_text:
        target_match = _TARGET.match(target_text)
        if not target_match:
            raise UsageError(f"--fault {text!r}: unknown target {target_text!r}; expected {SYNTAX}")
        if target_match["role"]:
            target, partition = target_match["role"], int(target_match["partition"] or 0)
    if kind == ROLLING_RESTART:
        if target or match["for"] or match["amount"]:
            raise UsageError(f"--fault {text!r}: rolling-restart takes only a start, e.g. rolling-restart@20")
        return Fault(kind, float(match["at"]), 0.0)
    if match["for"] is None:
        raise UsageError(f"--fault {text!r}: expected {SYNTAX}")
    if (kind == "delay") != (match["amount"] is not None):
        raise UsageError(f"--fault {text!r}: a delay, and only a delay, takes =MILLISECONDSms, e.g. delay:node1=200ms@20+10")
    if kind in PROXY_KINDS and not target:
        raise UsageError(f"--fault {text!r}: {kind} needs a target, e.g. {kind}:leader")
    fault = Fault(kind, float(match["at"]), float(match["for"]), target, partition, float(match["amount"] or 0))
    if fault.for_s <= 0:
        raise UsageError(f"--fault {text!r}: the fault must last more than 0 s")
    return fault


def parse_faults(texts: Sequence[str]) -> tuple[Fault, ...]:
    return tuple(parse_fault(text) for text in texts)


def check_schedule(faults: Sequence[Fault], duration_s: float) -> None:
    """Faults must fit in the run; faults on the same target must not overlap; a rolling restart
    (its length is not known before it runs) only has to begin within the run, and nothing may
    overlap or follow it."""
    ordered = sorted(faults, key=lambda fault: fault.at_s)
    for fault in ordered:
        if fault.at_s + fault.for_s > duration_s or (fault.kind == ROLLING_RESTART and fault.at_s >= duration_s):
            raise UsageError(f"--fault {fault}: does not end within the {duration_s:g} s run")
    for index, earlier in enumerate(ordered):
        for later in ordered[index + 1:]:
            if earlier.kind == ROLLING_RESTART:
                raise UsageError(f"--fault {later}: comes after --fault {earlier}, whose length is not known in advance")
            overlaps = later.at_s < earlier.at_s + earlier.for_s
            same_target = (earlier.target, earlier.partition) == (later.target, later.partition)
            if overlaps and (same_target or later.kind == ROLLING_RESTART):
                raise UsageError(f"--fault {later}: overlaps --fault {earlier}")


def check_targets(faults: Sequence[Fault], node_count: int, partitions: int, proxied: bool) -> None:
    """What can be checked before the run: roles need a cluster, node ids and partitions must exist,
    proxy faults need the nodes' proxies."""
    for fault in faults:
        if node_count == 1 and (fault.target in ("follower", "followers") or fault.kind == ROLLING_RESTART):
            raise UsageError(f"--fault {fault}: needs a cluster of several nodes (bench broker start --nodes 3); "
                             "this broker is a single node")
        if fault.node_id is not None and not 1 <= fault.node_id <= node_count:
            raise UsageError(f"--fault {fault}: no node {fault.node_id}; the nodes are 1..{node_count}")
        if fault.partition >= partitions:
            raise UsageError(f"--fault {fault}: the run's topic has partitions 0..{partitions - 1}")
        if fault.kind in PROXY_KINDS and not proxied:
            raise UsageError(f"--fault {fault}: {fault.kind} acts through a proxy in front of each node; "
                             "start the cluster with its client proxies (bench broker start --nodes 3 --proxy)")
        if not fault.target and node_count > 1 and fault.kind != ROLLING_RESTART:
            raise UsageError(f"--fault {fault}: name the node of the {node_count}-node cluster to fault, "
                             f"e.g. {fault.kind}:leader or {fault.kind}:node1")
