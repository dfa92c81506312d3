"""The child processes of one `bench run`: the producers and the consumer processes (trackers), what
the coordinator shares with them, and the consumer events that add, kill or stop a consumer
process during the run.

Children are forked from multiprocessing's fork server, never from the coordinator (its librdkafka
threads and fork do not mix): the server is a fresh interpreter, started on first use, that has
imported the producer and the tracker once; a fresh interpreter per child (spawn) imported them
again each time: 170-180 ms of CPU per child on a quiet 2-core machine, more on a busy one."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

from bench.broker.fault_spec import ConsumerStep
from bench.core.groups import added_slot, commit_group_starts
from bench.core.producer import CHILD_START_TIMEOUT_S, INTERRUPT_DRAIN_S, producer_main
from bench.core.protocol import ConsumerChange, ConsumerSlot, Inbox, Stop, tracker_name
from bench.core.run_modes import BOTH, CONSUME_ONLY, PRODUCE_ONLY
from bench.core.scenario import Scenario
from bench.core.tracker import tracker_main

NS_PER_S = 1_000_000_000
# What the fork server imports before it forks the first child: each child's own code.
FORKSERVER_PRELOAD = ["bench.core.producer", "bench.core.tracker"]


def child_context():
    """The multiprocessing context every child of a run starts from (see the module's docstring)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)  # no effect once the server runs
    return context


@dataclasses.dataclass
class RunProcesses:
    """The run's child processes and what the coordinator shares with them."""

    inbox: Inbox        # every child's reports
    controls: list      # queues: the Drain (and a group's Stop) for each consumer process
    start: Any          # event: t0_ns is set, go
    stop: Any           # event: stop producing (Ctrl+C, a failure)
    outage: Any         # event: a node the run's faults killed or stopped is not answering yet
    t0_ns: Any          # shared perf_counter_ns at which producing starts
    children: list
    consumer: Any       # slot -> (control queue, process): a consumer process for a slot, not started
    killed: set = dataclasses.field(default_factory=set)  # pids of consumer processes killed on purpose
    catch_up_ns: Any = None  # with a backlog: shared perf_counter_ns at which the consumers start
    later: list = dataclasses.field(default_factory=list)  # produce-only: the trackers, once producing ended

    @classmethod
    def spawn(cls, scenario: Scenario, bootstrap_servers: str, run_id: bytes, start_offsets: dict[int, int],
              slots: list[ConsumerSlot], tracker=tracker_main, mode: str = BOTH) -> RunProcesses:
        """tracker: the consumer processes' target (the runner passes its own name, which tests replace).
        mode (bench/core/run_modes.py): consume-only has no producers; produce-only's trackers are
        started by `start_later` once producing has ended."""
        context = child_context()
        reports = context.Queue()
        start, stop, outage, t0_ns = context.Event(), context.Event(), context.Event(), context.Value("q", 0)
        catch_up_ns = context.Value("q", 0) if scenario.backlog else None
        commit_group_starts(scenario, bootstrap_servers, slots, start_offsets)

        def consumer(slot: ConsumerSlot):
            control = context.Queue()
            return control, context.Process(
                target=tracker, name="bench-" + tracker_name(slot.group, slot.consumer).replace(" ", "-"), daemon=True,
                args=(scenario, bootstrap_servers, run_id, start_offsets, reports, control, start, t0_ns, slot,
                      catch_up_ns, mode == CONSUME_ONLY, mode != PRODUCE_ONLY))

        consumers = [consumer(slot) for slot in slots]
        trackers = [process for _, process in consumers]
        children = [] if mode == PRODUCE_ONLY else list(trackers)
        children += [context.Process(target=producer_main, name=f"bench-producer-{i}", daemon=True,
                                     args=(i, scenario, bootstrap_servers, run_id, reports, start, t0_ns, stop, outage,
                                           catch_up_ns))
                     for i in range(0 if mode == CONSUME_ONLY else scenario.producers)]
        return cls(Inbox(reports), [control for control, _ in consumers], start, stop, outage, t0_ns, children,
                   consumer, catch_up_ns=catch_up_ns, later=trackers if mode == PRODUCE_ONLY else [])

    def start_later(self, slots: list[ConsumerSlot], on_other) -> None:
        """Produce-only: start the trackers now (producing has ended) and wait until they are ready."""
        started, self.later = self.later, []
        for child in started:
            child.start()
        self.children += started
        self.inbox.wait_ready([tracker_name(s.group, s.consumer) for s in slots], CHILD_START_TIMEOUT_S,
                              [child.sentinel for child in started], on_other=on_other)

    def add_consumer(self, slot: ConsumerSlot) -> None:
        """add-consumer: one more consumer process, started now (its control queue follows the others)."""
        control, process = self.consumer(slot)
        self.controls.append(control)
        self.children.append(process)
        process.start()

    def kill_consumer(self, index: int) -> int:
        """kill-consumer: SIGKILL the consumer process of slot `index` (the order of `controls`); its pid."""
        process = [child for child in self.children if child.name.startswith("bench-tracker")][index]
        self.killed.add(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        return process.pid

    def death(self) -> str | None:
        """The failure of a child that died (not one a consumer event killed), if one did."""
        for child in self.children:
            if child.exitcode is not None and child.exitcode != 0 and child.pid not in self.killed:
                return f"{child.name} died (exit code {child.exitcode})"
        return None

    def stop_all(self) -> None:
        self.stop.set()
        for child in self.children:
            if child.pid is None:  # start() failed or was never reached
                continue
            child.join(timeout=INTERRUPT_DRAIN_S + 5)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)


def consumer_event(processes: RunProcesses, slots: Sequence[ConsumerSlot], slot_order: list[tuple[int, int]],
                   step: ConsumerStep, t0_ns: int) -> str:
    """A consumer event, in the fault thread: the process acted on now; the coordinator's books
    follow through the report queue. slot_order: (group, consumer) in the order of the control
    queues (an added process is appended). What it did, for the event's detail."""
    kind, group, consumer = step.fault.kind, step.group, step.consumer
    second = max(0, (time.perf_counter_ns() - t0_ns) // NS_PER_S)
    who = f"{tracker_name(group, consumer)} of group {group}"
    if kind == "add-consumer":
        slot = added_slot(slots, group, consumer)
        slot_order.append((group, consumer))
        processes.add_consumer(slot)
        processes.inbox.reports.put(ConsumerChange(slot, second, killed=False))
        return f"started {who}"
    index = slot_order.index((group, consumer))
    if kind == "kill-consumer":
        try:
            pid = processes.kill_consumer(index)
        except ProcessLookupError:  # it died by itself first: the run's failure says so
            return f"{who} had already ended; nothing to kill"
        processes.inbox.reports.put(ConsumerChange(slots[0], second, killed=True, group=group, consumer=consumer))
        return f"SIGKILL {who} pid {pid}"
    processes.controls[index].put(Stop())
    return f"{who} commits, leaves its group and ends"
