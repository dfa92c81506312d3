"""Faults on a schedule against the embedded broker or the nodes of an embedded cluster, and the
thread that runs them.

The syntax (bench/broker/fault_spec.py, docs/faults.md): `kill@20+5` sends SIGKILL to the single
broker 20 s after the run started and starts it again 5 s later; `pause@40+5` freezes it for 5 s;
on a cluster a target names the node by role or id, resolved when the fault begins
(`kill:leader@20+10`, `pause:follower@20+5`, `kill:controller@20+10`, `stop:node2@20+10`),
`rolling-restart@20` restarts every node in turn, and `isolate:`/`delay:` act through the node's
client proxy (bench/broker/proxy.py). The injector records every fault as result events (with
the node id and role) and as one fault record each, for the failover figures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException

from bench.broker.fault_spec import (
    CONSUMER_EVENTS,
    FAULT_KINDS,
    ROLLING_RESTART,
    Fault,
    check_schedule,
    parse_fault,
    parse_faults,
)
from bench.broker.nodes import RESTART_TIMEOUT_S, STOP_GRACE_S, nodes_of
from bench.broker.roles import in_sync_everywhere, resolve_targets
from streamstore.errors import RunFailed, StreamStoreError, UsageError

__all__ = ["FAULT_KINDS", "Fault", "FaultInjector", "check_schedule", "parse_fault", "parse_faults",
           "schedule_warnings", "fault_summary", "KILL_RECOVERY_S", "RESTART_TIMEOUT_S"]
# How long a restarted node may take to be back in the ISR of all its partitions in a rolling restart.
IN_SYNC_TIMEOUT_S = 180.0


# A killed broker answered again 15-25 s after its restart began on a 2-core machine
# (docs/faults.md, 2026-11-26): the JVM starts, the log is recovered, and the KRaft controller
# refuses the new incarnation until the killed one's session (broker.session.timeout.ms) expires.
KILL_RECOVERY_S = 25.0


def schedule_warnings(faults: Sequence[Fault], duration_s: float) -> list[str]:
    """Kills whose restart leaves the run too little time to see the broker back.

    A warning, not a refusal: how long a restart takes depends on the machine, the log to
    recover and the broker's session timeout, none known before the run, and a run that ends
    inside the outage is a fair experiment (its stall, failed deliveries and exit code say
    what happened). The user must know before waiting for it, though: such a run usually
    ends with deliveries purged and exit 3, which reads like a harness failure otherwise.
    """
    warnings = []
    for fault in sorted(faults, key=lambda fault: fault.at_s):
        restart_s = fault.at_s + fault.for_s
        if fault.kind == "kill" and duration_s - restart_s < KILL_RECOVERY_S:
            warnings.append(
                f"--fault {fault}: the broker restarts {restart_s:g} s into the {duration_s:g} s run, "
                f"{duration_s - restart_s:g} s before it ends, and a killed broker took up to {KILL_RECOVERY_S:g} s "
                "to answer again: acks may not resume before the run ends, and the producers then hold what they "
                "queued until it answers (the run ends that much later, its acks after the measured window); "
                f"--duration {restart_s + KILL_RECOVERY_S:g} or more lets the run see the broker back")
    return warnings


def fault_summary(result: Mapping[str, Any]) -> dict[str, int | None]:
    """The counts a fault experiment is judged by, from a result (the failover section has the
    gaps and the new leader, per fault)."""
    counts = result["counts"]
    return {
        "lost": counts["lost"],
        "failed": counts["failed"],
        "duplicated": counts["duplicated"],
    }


class FaultInjector:
    """Runs a fault schedule against the single embedded broker or a cluster's nodes, in a daemon thread.

    `events` collects {"t_s", "kind", "detail", "node_id", "role"} dicts (t_s from `start()`), the
    result's events format; `records` one dict per fault acting on one node ({fault, kind,
    node_id, role, partition, start_s, end_s, back_s}): the input of the failover figures.
    `stop()` cancels what has not started and always leaves the nodes as it found them: resumed
    if paused, running again if killed or stopped, proxies passing traffic again.

    Roles need `admin` (a confluent_kafka AdminClient) and `topic`; the controller role needs
    `controller` (returns the active controller's node id); isolate and delay need `proxies`
    (node id -> ClientProxy).
    """

    def __init__(self, broker, faults: Iterable[Fault], *, admin=None, topic: str | None = None,
                 controller: Callable[[], int] | None = None, proxies: Mapping[int, Any] | None = None):
        self.broker = broker
        # None: consumer events only (they need no embedded broker).
        self.nodes = nodes_of(broker) if broker is not None else {}
        self.faults = sorted(faults, key=lambda fault: fault.at_s)
        self.admin, self.topic, self.controller = admin, topic, controller
        self.proxies = dict(proxies or {})
        # Nodes killed or stopped and not answering again yet; on_outage(True) when the first goes
        # down, on_outage(False) when the last is back (set by FaultWatch: producers keep flushing).
        self.nodes_down: set[int] = set()
        self.on_outage: Callable[[bool], None] | None = None
        # Consumer events (add, kill, stop a consumer process): the run's action; (what it did, the
        # index of the process in its group).
        self.on_consumer_event: Callable[[Fault], tuple[str, int]] | None = None
        self.events: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.error: StreamStoreError | None = None
        self.cancelled = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        # Faults in effect, ended even if the run stops meanwhile: index -> (fault, began_s, records).
        self.active: dict[int, tuple[Fault, float, list[dict[str, Any]]]] = {}

    def start(self, started_at_perf_counter: float | None = None) -> FaultInjector:
        if any(fault.kind not in CONSUMER_EVENTS for fault in self.faults) and not self.broker.is_running():
            raise UsageError(f"faults need the embedded broker in {self.broker.state_dir} running; it is not")
        self._started_at = time.perf_counter() if started_at_perf_counter is None else started_at_perf_counter
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the whole schedule to have run (every fault started and ended)."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def stop(self) -> None:
        """Cancel the faults not yet started and end the current one now."""
        self.cancelled.set()
        if self._thread is not None:
            self._thread.join()

    def now(self) -> float:
        return round(time.perf_counter() - self._started_at, 3)

    def event(self, kind: str, detail: str, node_id: int | None = None, role: str | None = None) -> None:
        event: dict[str, Any] = {"t_s": self.now(), "kind": kind, "detail": detail}
        if node_id is not None:
            event.update(node_id=node_id, role=role)
        self.events.append(event)

    def _wait_until(self, offset_s: float) -> bool:
        """Sleep until offset_s after start; False when cancelled first."""
        return not self.cancelled.wait(max(0.0, self._started_at + offset_s - time.perf_counter()))

    def _run(self) -> None:
        """Begin each fault at its time and end it for_s after it began (a restart that took long
        can delay what comes next; each fault still lasts its for_s). Actions run one at a time."""
        waiting = list(self.faults)
        try:
            while waiting or self.active:
                ends = [(began + fault.for_s, index) for index, (fault, began, _) in self.active.items()]
                next_end = min(ends, default=None)
                if next_end is not None and (not waiting or next_end[0] <= waiting[0].at_s):
                    # The end of a fault always happens, even when cancelled meanwhile.
                    self._wait_until(next_end[0])
                    self._end(next_end[1])
                    continue
                if not self._wait_until(waiting[0].at_s):
                    break
                fault = waiting.pop(0)
                if fault.kind in CONSUMER_EVENTS:
                    detail, consumer = self.on_consumer_event(fault)
                    self.event(f"consumer-{fault.kind.split('-')[0]}", detail)
                    self.events[-1].update(group=fault.group, consumer=consumer, fault=str(fault))
                elif fault.kind == ROLLING_RESTART:
                    rolling_restart(self, fault)
                else:
                    self._begin(fault)
        except StreamStoreError as error:
            self.error = error
            self.event("fault-error", str(error))
        finally:
            for index in sorted(self.active, reverse=True):
                self._end(index)

    def _controller(self) -> int:
        if self.controller is None:
            raise UsageError("the controller role needs the cluster's quorum (bench broker start --nodes N)")
        return self.controller()

    def proxy(self, node_id: int):
        proxy = self.proxies.get(node_id)
        if proxy is None:
            raise UsageError(f"node {node_id} has no client proxy; isolate and delay need the cluster's proxies")
        return proxy

    def _begin(self, fault: Fault) -> None:
        targets = resolve_targets(fault, self.nodes.keys(), self.admin, self.topic or "", self._controller)
        records = []
        self.active[len(self.records)] = (fault, time.perf_counter() - self._started_at, records)
        for node_id, role in targets:
            record = {"fault": str(fault), "kind": fault.kind, "node_id": node_id, "role": role,
                      "partition": fault.partition if role in ("leader", "follower") else None,
                      "start_s": self.now(), "end_s": None, "back_s": None}
            self.records.append(record)
            records.append(record)
            begin_fault_on(self, fault.kind, node_id, role, fault.delay_ms)
            # The fault starts when it acts on the node (its event), not when its target was chosen.
            record["start_s"] = self.events[-1]["t_s"]

    def _end(self, index: int) -> None:
        fault, _, records = self.active.pop(index)
        for record in records:
            record["end_s"] = self.now()
            record["back_s"] = end_fault_on(self, fault.kind, record["node_id"], record["role"])


def mark_down(injector: FaultInjector, node_id: int, down: bool) -> None:
    was_down = bool(injector.nodes_down)
    (injector.nodes_down.add if down else injector.nodes_down.discard)(node_id)
    if injector.on_outage is not None and was_down != bool(injector.nodes_down):
        injector.on_outage(bool(injector.nodes_down))


def begin_fault_on(injector: FaultInjector, kind: str, node_id: int, role: str, delay_ms: float = 0.0) -> None:
    """Act on one node: the start of a fault of this kind (its event recorded)."""
    node, who = injector.nodes[node_id], f"node {node_id} ({role})"
    if kind in ("kill", "pause") and not node.is_running():
        raise UsageError(f"{who} is not running; nothing to {kind}")
    if kind in ("kill", "stop"):
        mark_down(injector, node_id, True)
    if kind == "kill":
        pid = node.kill()
        injector.event("broker-kill", f"SIGKILL {who}" + (f" pid {pid}" if pid else ""), node_id, role)
    elif kind == "stop":
        injector.event("broker-stop", f"clean shutdown of {who}", node_id, role)
        node.stop(grace_s=STOP_GRACE_S)
    elif kind == "pause":
        node.pause()
        injector.event("broker-pause", f"SIGSTOP {who}", node_id, role)
    elif kind == "isolate":
        injector.proxy(node_id).cut()
        injector.event("broker-isolate", f"client connections of {who} cut (replication goes on)", node_id, role)
    else:
        injector.proxy(node_id).delay_s = delay_ms / 1000
        injector.event("broker-delay", f"{delay_ms:g} ms added to every response of {who}", node_id, role)


def end_fault_on(injector: FaultInjector, kind: str, node_id: int, role: str) -> float | None:
    """Undo a fault on a node; the time (from start) it answered again, if restarted."""
    node, who = injector.nodes[node_id], f"node {node_id} ({role})"
    if kind == "pause":
        node.resume()
        injector.event("broker-resume", f"SIGCONT {who}", node_id, role)
    elif kind == "isolate":
        injector.proxy(node_id).restore()
        injector.event("broker-reconnect", f"client connections of {who} pass again", node_id, role)
    elif kind == "delay":
        injector.proxy(node_id).delay_s = 0.0
        injector.event("broker-undelay", f"responses of {who} no longer delayed", node_id, role)
    else:
        began = time.perf_counter()
        injector.event("broker-restart", f"starting {who} again", node_id, role)
        try:
            node.start(timeout_s=RESTART_TIMEOUT_S)
        finally:
            mark_down(injector, node_id, False)  # back, or failed to come back: nothing to wait for
        injector.event("broker-up", f"{who} answering after {time.perf_counter() - began:.1f} s", node_id, role)
        return injector.now()
    return None


# The event of a rolling restart the end of the run cut short (FaultWatch turns it into a warning).
ROLLING_RESTART_CUT_SHORT = "rolling-restart-cut-short"


def rolling_restart(injector: FaultInjector, fault: Fault) -> None:
    """Each node in turn: clean shutdown, start, wait until it is back in the ISR of all its
    partitions (so the next shutdown never takes the last in-sync copy away). When the run ends
    meanwhile, the node being restarted is brought back and the ones after it are left alone,
    named in a ROLLING_RESTART_CUT_SHORT event: how long restarts take is the machine's."""
    node_ids = sorted(injector.nodes)
    for position, node_id in enumerate(node_ids):
        if injector.cancelled.is_set():
            left = ", ".join(str(n) for n in node_ids[position:])
            injector.event(ROLLING_RESTART_CUT_SHORT, f"rolling restart cut short: the run ended before node(s) {left} "
                                                      f"were restarted ({position} of {len(node_ids)} restarted)")
            return
        record = {"fault": str(fault), "kind": fault.kind, "node_id": node_id, "role": "node", "partition": None,
                  "start_s": injector.now(), "end_s": None, "back_s": None}
        injector.records.append(record)
        begin_fault_on(injector, "stop", node_id, "node")
        record["start_s"] = injector.events[-1]["t_s"]
        record["end_s"] = injector.now()
        end_fault_on(injector, "stop", node_id, "node")
        _wait_in_sync(injector.admin, node_id)
        record["back_s"] = injector.now()
        injector.event("broker-in-sync", f"rolling restart: node {node_id} back in the ISR of all its partitions",
                       node_id, "node")


def _wait_in_sync(admin, node_id: int) -> None:
    if admin is None:
        return
    deadline = time.monotonic() + IN_SYNC_TIMEOUT_S
    unanswered = ""
    while True:
        try:
            if in_sync_everywhere(admin, node_id):
                return
        except KafkaException as error:  # no node answered this once: the next node stops only after
            unanswered = f" (metadata last unanswered: {error.args[0].str() if error.args else error})"
        if time.monotonic() > deadline:
            raise RunFailed(f"node {node_id} not back in the ISR of its partitions within {IN_SYNC_TIMEOUT_S:g} s"
                            + unanswered)
        time.sleep(0.2)
