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
  slow-consumer=20ms@10+15  the run's consumer (the tracker) sleeps 20 ms after each batch it reads
  add-consumer@10           one more consumer process joins consumer group 0 (`:group1`: group 1)
  kill-consumer@10          SIGKILL group 0's newest consumer process (`:group1/0`: group 1's consumer 0)
  stop-consumer:group1@10   group 1's newest consumer process commits, leaves its group and ends

Roles are resolved when the fault begins, not when it is parsed: who leads changes during a run.
Faults may overlap when they name different targets (`pause:followers@5+9` with
`kill:leader@11+10`); two faults on the same target may not, nor may anything overlap or follow a
rolling restart. A slow consumer acts on the run's own tracker, not on a broker: it needs no
embedded broker and overlaps broker faults freely; so do the consumer events (add, kill, stop a
consumer process of a group: a rebalance), which take only a start.

A malformed fault names its faulty part ("unknown kind 'kil'; did you mean kill?", "@20s: the
time is a number of seconds without unit").
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from streamstore.errors import UsageError

# Kinds that last FOR seconds, and the one that ends when it is done.
SLOW_CONSUMER = "slow-consumer"
TIMED_KINDS = ("kill", "pause", "stop", "isolate", "delay", SLOW_CONSUMER)
ROLLING_RESTART = "rolling-restart"
# Consumer events: a consumer process of a group joins, is killed (SIGKILL) or closes cleanly.
CONSUMER_EVENTS = ("add-consumer", "kill-consumer", "stop-consumer")
FAULT_KINDS = (*TIMED_KINDS, ROLLING_RESTART, *CONSUMER_EVENTS)
# Kinds that act through the per-node client proxy.
PROXY_KINDS = ("isolate", "delay")
# Kinds that take =DELAYms.
AMOUNT_KINDS = ("delay", SLOW_CONSUMER)
# Targets that name a partition's replicas.
_PARTITION_ROLES = ("leader", "follower", "followers")
ROLES = ("leader", "follower", "followers", "controller")
_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")
_AMOUNT = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)ms$")
_GROUP_TARGET = re.compile(r"^group(?P<group>\d+)(?:/(?P<consumer>\d+))?$")
_TARGET = re.compile(r"^(?:(?P<role>leader|followers?)(?:/(?P<partition>\d+))?|controller|node(?P<node>\d+))$")
SYNTAX = "KIND[:TARGET][=DELAYms]@AT[+FOR]"
EXAMPLES = ("kill@20+5", "kill:leader@20+10", "pause:follower@20+5", "delay:node1=200ms@20+10",
            "slow-consumer=20ms@10+15", "rolling-restart@20", "add-consumer@10", "kill-consumer@10",
            "stop-consumer@10")
# What "did you mean" picks from: every kind, and every kind with every role (kill-leader -> kill:leader).
_SPELLINGS = (*FAULT_KINDS, *(f"{kind}:{role}" for kind in TIMED_KINDS if kind != SLOW_CONSUMER for role in ROLES),
              *(f"{kind}:group0" for kind in CONSUMER_EVENTS))


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    for_s: float
    # "" (the single broker), "leader", "follower", "followers", "controller" or "node<id>".
    target: str = ""
    # The partition of the run's topic a leader/follower target refers to.
    partition: int = 0
    # delay: how long the proxy holds each byte the node sends; slow-consumer: how long the
    # tracker sleeps after each batch it reads.
    delay_ms: float = 0.0
    # Consumer events: the consumer group (target "groupG"; group 0 without a target) and the
    # consumer process it names (None: the group's newest live one).
    group: int = 0
    consumer: int | None = None

    @property
    def node_id(self) -> int | None:
        """The node a `nodeN` target names; None for a role or the single broker."""
        return int(self.target[4:]) if self.target.startswith("node") else None

    def __str__(self) -> str:
        target = ""
        if self.kind in CONSUMER_EVENTS:
            if self.target:
                target = f":{self.target}" + (f"/{self.consumer}" if self.consumer is not None else "")
            return f"{self.kind}{target}@{self.at_s:g}"
        if self.target:
            target = f":{self.target}" + (f"/{self.partition}" if self.partition and self.target in _PARTITION_ROLES else "")
        amount = f"={self.delay_ms:g}ms" if self.kind in AMOUNT_KINDS else ""
        length = "" if self.kind == ROLLING_RESTART else f"+{self.for_s:g}"
        return f"{self.kind}{target}{amount}@{self.at_s:g}{length}"


def parse_fault(text: str) -> Fault:
    """A fault from its text; a malformed one is a UsageError naming the part that is wrong."""
    stripped = text.strip()
    head, at_sign, when = stripped.partition("@")
    kind_target, equals, amount_text = head.partition("=")
    kind, colon, target_text = kind_target.partition(":")
    if kind not in FAULT_KINDS:
        close = difflib.get_close_matches(kind_target, _SPELLINGS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else f"the kinds are {', '.join(FAULT_KINDS)}"
        _refuse(text, f"unknown kind {kind!r}; {hint}")
    if not at_sign:
        _refuse(text, f"no @AT: when the fault begins, in seconds into the run, e.g. {_example(kind)}")
    at_text, plus, for_text = when.partition("+")
    at_s = _seconds(text, "@", at_text, "the time")
    if kind in CONSUMER_EVENTS:
        return _consumer_event(text, kind, target_text if colon else None, at_s, bool(plus or equals))
    target, partition = _target(text, kind, target_text) if colon else ("", 0)
    if kind == ROLLING_RESTART:
        if target or plus or equals:
            _refuse(text, "rolling-restart takes only a start, e.g. rolling-restart@20")
        return Fault(kind, at_s, 0.0)
    if not plus:
        _refuse(text, f"no +FOR: how long the fault lasts, in seconds, e.g. {_example(kind)}")
    for_s = _seconds(text, "+", for_text, "the length")
    if kind in AMOUNT_KINDS and not equals:
        _refuse(text, f"{kind} needs how long to delay, =MILLISECONDSms, e.g. {_example(kind)}")
    if equals and kind not in AMOUNT_KINDS:
        _refuse(text, f"={amount_text}: only delay and slow-consumer take =MILLISECONDSms, "
                      f"e.g. delay:node1=200ms@20+10")
    delay_ms = 0.0
    if equals:
        amount = _AMOUNT.match(amount_text)
        if not amount:
            _refuse(text, f"={amount_text}: the delay is a number of milliseconds with its unit, e.g. =200ms")
        delay_ms = float(amount["amount"])
        if delay_ms <= 0 or delay_ms > 60_000:
            _refuse(text, f"={amount_text}: the delay must be more than 0 ms and at most 60,000 ms")
    if kind in PROXY_KINDS and not target:
        _refuse(text, f"{kind} needs a target, e.g. {kind}:leader")
    if kind == SLOW_CONSUMER and target:
        _refuse(text, "slow-consumer acts on the run's own consumer and takes no target, e.g. slow-consumer=20ms@10+15")
    if for_s <= 0:
        _refuse(text, "the fault must last more than 0 s")
    return Fault(kind, at_s, for_s, target, partition, delay_ms)


def _consumer_event(text: str, kind: str, target_text: str | None, at_s: float, extra: bool) -> Fault:
    """add-consumer / kill-consumer / stop-consumer [:groupG[/C]] @AT: an event, no length or amount."""
    if extra:
        _refuse(text, f"{kind} takes only a start (and a group), e.g. {kind}@10 or {kind}:group1@10")
    if target_text is None:
        return Fault(kind, at_s, 0.0)
    match = _GROUP_TARGET.match(target_text)
    if not match:
        _refuse(text, f"unknown target {target_text!r}; the target of {kind} is a consumer group, groupG "
                      f"(0 = the first), or one consumer process of it, groupG/C, e.g. {kind}:group1@10")
    consumer = None if match["consumer"] is None else int(match["consumer"])
    if kind == "add-consumer" and consumer is not None:
        _refuse(text, "add-consumer adds a new consumer process to a group; name the group only, "
                      f"e.g. add-consumer:group{match['group']}@10")
    return Fault(kind, at_s, 0.0, f"group{match['group']}", group=int(match["group"]), consumer=consumer)


def _refuse(text: str, problem: str) -> None:
    raise UsageError(f"--fault {text!r}: {problem} (syntax {SYNTAX}; docs/faults.md)")


def _example(kind: str) -> str:
    return next((example for example in EXAMPLES if example.startswith(kind)), EXAMPLES[0])


def _seconds(text: str, sign: str, value: str, what: str) -> float:
    """@AT or +FOR: seconds as a plain number."""
    if _SECONDS.match(value):
        return float(value)
    with_unit = re.match(r"^(\d+(?:\.\d+)?)\s*([a-z]+)$", value)
    if with_unit:
        plain = f" ({sign}{with_unit[1]})" if with_unit[2] in ("s", "sec", "secs", "second", "seconds") else ""
        _refuse(text, f"{sign}{value}: {what} is a number of seconds without unit{plain}")
    if not value:
        _refuse(text, f"{sign}: {what} is missing, a number of seconds such as {sign}20")
    _refuse(text, f"{sign}{value}: {what} is a number of seconds (0 or more), e.g. {sign}20")
    raise AssertionError("unreachable: _refuse raises")


def _target(text: str, kind: str, target_text: str) -> tuple[str, int]:
    match = _TARGET.match(target_text)
    if not match and target_text.startswith(("consumer", "group")):
        _refuse(text, f"unknown target {target_text!r}; did you mean {kind}-consumer? (e.g. {kind}-consumer@10)")
    if not match:
        close = difflib.get_close_matches(target_text, (*ROLES, "node1"), n=1, cutoff=0.6)
        hint = f"did you mean {kind}:{close[0]}?" if close else \
            "the targets are leader[/P], follower[/P], followers[/P], controller and nodeN"
        _refuse(text, f"unknown target {target_text!r}; {hint}")
    if match["role"]:
        return match["role"], int(match["partition"] or 0)
    return target_text, 0


def parse_faults(texts: Sequence[str]) -> tuple[Fault, ...]:
    return tuple(parse_fault(text) for text in texts)


def check_schedule(faults: Sequence[Fault], duration_s: float) -> None:
    """Faults must fit in the run; faults on the same target must not overlap; a rolling restart
    (its length is not known before it runs) only has to begin within the run, and nothing may
    overlap or follow it."""
    for fault in faults:
        if fault.at_s + fault.for_s > duration_s or (fault.kind in (ROLLING_RESTART, *CONSUMER_EVENTS)
                                                     and fault.at_s >= duration_s):
            raise UsageError(f"--fault {fault}: does not end within the {duration_s:g} s run")
    slow = sorted((fault for fault in faults if fault.kind == SLOW_CONSUMER), key=lambda fault: fault.at_s)
    for earlier, later in zip(slow, slow[1:]):
        if later.at_s < earlier.at_s + earlier.for_s:
            raise UsageError(f"--fault {later}: overlaps --fault {earlier}")
    ordered = sorted(broker_faults(faults), key=lambda fault: fault.at_s)
    for index, earlier in enumerate(ordered):
        for later in ordered[index + 1:]:
            if earlier.kind == ROLLING_RESTART:
                raise UsageError(f"--fault {later}: comes after --fault {earlier}, whose length is not known in advance")
            overlaps = later.at_s < earlier.at_s + earlier.for_s
            same_target = (earlier.target, earlier.partition) == (later.target, later.partition)
            if overlaps and (same_target or later.kind == ROLLING_RESTART):
                raise UsageError(f"--fault {later}: overlaps --fault {earlier}")


def broker_faults(faults: Sequence[Fault]) -> list[Fault]:
    """The faults that act on the broker or its nodes (all but the slow consumer and the consumer events)."""
    return [fault for fault in faults if fault.kind != SLOW_CONSUMER and fault.kind not in CONSUMER_EVENTS]


def consumer_events(faults: Sequence[Fault]) -> list[Fault]:
    """The consumer events (add, kill, stop a consumer process), in the order they happen."""
    return sorted((fault for fault in faults if fault.kind in CONSUMER_EVENTS), key=lambda fault: fault.at_s)


def consumer_delay_s(faults: Sequence[Fault], t_s: float) -> float:
    """How long the tracker sleeps after a batch read t_s into the run (0 outside slow-consumer faults)."""
    return next((fault.delay_ms / 1000 for fault in faults
                 if fault.kind == SLOW_CONSUMER and fault.at_s <= t_s < fault.at_s + fault.for_s), 0.0)


def check_targets(faults: Sequence[Fault], node_count: int, partitions: int, proxied: bool) -> None:
    """What can be checked before the run: roles need a cluster, node ids and partitions must exist,
    proxy faults need the nodes' proxies."""
    for fault in broker_faults(faults):
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


@dataclass(frozen=True)
class ConsumerStep:
    """One consumer event resolved against the run's groups: which process it adds, kills or stops."""

    fault: Fault
    group: int
    consumer: int  # the process's index in its group (a new one for add-consumer)


def plan_consumer_events(faults: Sequence[Fault], groups: int, per_group: int,
                         max_processes: int | None = None) -> list[ConsumerStep]:
    """The consumer events in time order, each resolved to one process: an added one gets the next
    index of its group, a kill or stop without a named process takes the group's newest live one.
    Refused (UsageError): a group that does not exist, a named process not running then, a group
    left without a consumer (nobody would read its partitions), more processes than max_processes."""
    live = {group: list(range(per_group)) for group in range(groups)}
    next_index = dict.fromkeys(live, per_group)
    started, steps = groups * per_group, []
    for fault in consumer_events(faults):
        if fault.group not in live:
            raise UsageError(f"--fault {fault}: no consumer group {fault.group}; the run's groups are 0..{groups - 1} "
                             "(consumer_groups)")
        members = live[fault.group]
        if fault.kind == "add-consumer":
            consumer = next_index[fault.group]
            next_index[fault.group] += 1
            members.append(consumer)
            started += 1
            if max_processes is not None and started > max_processes:
                raise UsageError(f"--fault {fault}: {started} consumer processes in all; at most {max_processes}")
        else:
            consumer = members[-1] if fault.consumer is None else fault.consumer
            if consumer not in members:
                raise UsageError(f"--fault {fault}: consumer {consumer} of group {fault.group} is not running at "
                                 f"{fault.at_s:g} s (running: {', '.join(map(str, members)) or 'none'})")
            if len(members) == 1:
                raise UsageError(f"--fault {fault}: leaves group {fault.group} without a consumer, so nobody would "
                                 "read its partitions; add one first (add-consumer) or run more (consumers_per_group)")
            members.remove(consumer)
        steps.append(ConsumerStep(fault, fault.group, consumer))
    return steps
