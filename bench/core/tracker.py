"""The tracker process: reads the run's topic from where it stood before the run, and reports
end-to-end latency (from the trace header), consumer lag each second and what the audit needs.

One module for `bench run` and the Locust master; it talks to its coordinator only through
the typed messages of bench/core/protocol.py.
"""

from __future__ import annotations

import os
import queue
import signal
import time
import traceback
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import compress, groupby

from confluent_kafka import KafkaException, Message, TopicPartition

from bench.broker.fault_spec import SLOW_CONSUMER, consumer_delay_s, parse_faults
from bench.core.audit import OffsetRanges, SequenceAudit, audits_offsets, offset_ranges
from bench.core.availability import PartitionActivity
from bench.core.clients import describe_error, is_fatal, scenario_consumer_config
from bench.core.group_protocol import member_settings
from bench.core.group_reads import ReadCollector
from bench.core.protocol import ChildFailed, ConsumerSlot, Drain, Ready, Stop, TrackerDone, tracker_name
from bench.core.scenario import Scenario
from bench.core.tracker_reports import SecondReporter, assigned_partitions, group_read
from streamstore.trace import TRACE_HEADER, TRACE_STRUCT, TRACE_VALUE_BYTES, Trace, read_trace
from streamstore.tracker import OrderTracker

NS_PER_S = 1_000_000_000
# Flat out (rate 0) the figure is the producer's throughput, and on a small machine a tracker
# consuming at full speed takes CPU from the producer and the broker it measures. There it
# runs at a lower priority and catches up in the drain (end-to-end latency flat out is the
# backlog anyway). At a fixed rate it keeps normal priority so end-to-end latency is true.
FLAT_OUT_TRACKER_NICENESS = 10
# The tracker blocks at most this long waiting for a message (bounds lag sampling jitter).
TRACKER_WAIT_S = 0.05
TRACKER_BATCH = 5000
# How often the tracker looks for the coordinator's Drain (a queue read is not free).
CONTROL_CHECK_NS = 100_000_000
# The run's one tracker (group 0, consumer 0, every partition assigned): the default slot.
THE_TRACKER = ConsumerSlot()



@dataclass
class TrackerState:
    """What the tracker has seen since its last per-second report (and the audit overall)."""

    # Offset audit (flat out): untraced messages are this run's too; every offset is noted.
    audits_offsets: bool = False
    audit: SequenceAudit = field(default_factory=SequenceAudit)
    consumed_offsets: defaultdict[int, OffsetRanges] = field(default_factory=lambda: defaultdict(OffsetRanges))
    offsets_consumed_twice: int = 0
    consumed_total: int = 0
    consumed_in_second: int = 0
    foreign: int = 0
    end_to_end_us: list[int] = field(default_factory=list)
    last_timestamp_ms: int | None = None
    partition_consumed: PartitionActivity = field(default_factory=PartitionActivity)
    # A consumer of a group of several processes: the offset after the last message read per partition.
    positions: dict[int, int] | None = None
    # A member of a joining group: its reads since its last GroupRead (bench/core/group_reads.py).
    reads: ReadCollector | None = None
    # With a backlog: not consuming yet (its partitions paused) until the catch-up starts.
    paused: bool = False
    # Consume-only: every record is the run's (any trace header's run id; untraced ones too).
    any_run: bool = False
    # perf_counter_ns when the first and the last batch arrived (the consumer's own throughput).
    first_read_ns: int | None = None
    last_read_ns: int | None = None


def _trace_of(headers) -> Trace | None:
    # Fast path: the trace is the only header the runner's producers send.
    if len(headers) == 1 and headers[0][0] == TRACE_HEADER and len(headers[0][1]) == TRACE_VALUE_BYTES:
        return Trace(*TRACE_STRUCT.unpack(headers[0][1]))
    return read_trace(headers)


def absorb_messages(messages: list[Message], run_id: bytes, state: TrackerState, received_ns: int) -> None:
    """Account for one batch of consumed messages: end-to-end latency and the audit for this
    run's messages (all received at received_ns, wall clock), the rest counted as foreign
    (another run's trace; or, in the sequence audit, no trace)."""
    if state.audits_offsets:
        _absorb_by_offset(messages, run_id, state, received_ns)
        return
    end_to_end_us, mark = state.end_to_end_us, state.audit.mark
    by_offset, consumed_offsets, reads, any_run = (state.audits_offsets, state.consumed_offsets, state.reads,
                                                   state.any_run)
    if reads is not None and not by_offset:
        first_seen = reads.sequences

        def mark(producer: int, sequence: int) -> None:
            if not state.audit.mark(producer, sequence):
                first_seen[producer].append(sequence)
    for message in messages:
        headers = message.headers()
        if not headers:
            trace = None
        # Fast path: the trace is the only header the runner's producers send.
        elif len(headers) == 1 and headers[0][0] == TRACE_HEADER and len(headers[0][1]) == TRACE_VALUE_BYTES:
            trace = Trace(*TRACE_STRUCT.unpack(headers[0][1]))
        else:
            trace = read_trace(headers)
        if trace is not None and (trace.run_id == run_id or any_run):
            end_to_end_us.append((received_ns - trace.send_time_ns) // 1000)
            if not by_offset:
                mark(trace.producer, trace.sequence)
        elif trace is not None or not by_offset:
            state.foreign += 1
            continue
        if by_offset and consumed_offsets[message.partition()].add(message.offset()):
            state.offsets_consumed_twice += 1
        state.consumed_in_second += 1
    state.last_timestamp_ms = messages[-1].timestamp()[1]
    state.partition_consumed.note_batch(message.partition() for message in messages)
    if reads is not None:
        reads.note_batch(messages, time.perf_counter_ns(), by_offset)


def _absorb_by_offset(messages: list[Message], run_id: bytes, state: TrackerState, received_ns: int) -> None:
    """The offset audit's batch (flat out: every 64th message traced; consume-only: any record):
    the Python work per message is what limits a consumer reading a backlog, so the batch is
    taken apart by C-level maps; only the traced messages get a Python step each, and the offsets
    are noted as ranges per partition (one comparison in C for the usual contiguous run)."""
    headers = list(map(Message.headers, messages))
    kept = messages
    traced = list(compress(range(len(messages)), headers))
    if traced:
        foreign = set()
        for index in traced:
            trace = _trace_of(headers[index])
            if trace is not None and (trace.run_id == run_id or state.any_run):
                state.end_to_end_us.append((received_ns - trace.send_time_ns) // 1000)
            elif trace is not None:  # another run's order: not this run's to audit
                foreign.add(index)
        if foreign:
            state.foreign += len(foreign)
            kept = list(messages)
            for index in sorted(foreign, reverse=True):
                del kept[index]
    partitions = list(map(Message.partition, messages))
    if kept:
        kept_partitions = partitions if kept is messages else list(map(Message.partition, kept))
        offsets = list(map(Message.offset, kept))
        # A batch holds each partition's messages in runs (one per fetch response): one note per run.
        position = 0
        for partition, run in groupby(kept_partitions):
            count = len(list(run))
            _note_offsets(state, partition, offsets[position:position + count])
            position += count
        state.consumed_in_second += len(kept)
    state.last_timestamp_ms = messages[-1].timestamp()[1]
    state.partition_consumed.note_batch(partitions)
    if state.reads is not None:
        state.reads.note_batch(messages, time.perf_counter_ns(), True)


def _note_offsets(state: TrackerState, partition: int, offsets: list[int]) -> None:
    """One partition's offsets of a batch, in the order read: an offset read before (in this
    batch or an earlier one) counts as read twice."""
    ranges = offset_ranges(offsets)
    noted = state.consumed_offsets[partition]
    twice = len(offsets) - sum(end - start for start, end in ranges)
    for start, end in ranges:
        twice += noted.add_range(start, end)
    state.offsets_consumed_twice += twice


def tracker_main(scenario: Scenario, bootstrap_servers: str, run_id: bytes, start_offsets: dict[int, int],
                 reports, control, start, t0_ns, slot: ConsumerSlot = THE_TRACKER, catch_up_ns=None,
                 any_run: bool = False, end_to_end: bool = True) -> None:
    """The tracker process's target, for `bench run` and the Locust master alike.

    Reads from start_offsets (partition -> offset) after `start` is set and speaks the
    messages of bench/core/protocol.py: Ready, a TrackerSecond for each second since
    `t0_ns.value` (perf_counter_ns), then TrackerDone (or ChildFailed). It ends after `control`
    gives it a Drain and it has consumed the target or waited long enough.
    `scenario.rate` 0 (flat out): it runs at a lower priority (FLAT_OUT_TRACKER_NICENESS) and,
    with the offset audit, untraced messages count as this run's.
    `slot`: which consumer process of the run's groups it is (bench/core/groups.py); a
    subscribing one also takes a `Stop` from `control` after the Drain.
    `catch_up_ns` (a backlog run): its partitions stay paused, so nothing is fetched, until that
    shared perf_counter_ns is set and reached (or a Drain comes first); it reports each second
    meanwhile, the lag asked of the broker.
    `any_run` (consume-only): every record it reads is the run's, audited by offset, at normal
    priority. `end_to_end` False (produce-only, started after producing): it reports no latencies
    (an order read then waited for the audit, not for a consumer), and its seconds begin when it does.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if scenario.rate == 0 and not any_run:
        os.nice(FLAT_OUT_TRACKER_NICENESS)
    try:
        _track(scenario, bootstrap_servers, run_id, start_offsets, reports, control, start, t0_ns, slot, catch_up_ns,
               any_run, end_to_end)
    except Exception as error:  # one line and its traceback to the coordinator, which ends the run
        reports.put(ChildFailed(tracker_name(slot.group, slot.consumer), describe_error(error), traceback.format_exc()))


def _track(scenario: Scenario, bootstrap_servers: str, run_id: bytes, start_offsets: dict[int, int],
           reports, control, start, t0_ns, slot: ConsumerSlot, catch_up_ns=None, any_run: bool = False,
           end_to_end: bool = True) -> None:
    offset_audit = audits_offsets(scenario) or any_run
    state = TrackerState(audits_offsets=offset_audit, positions={} if slot.subscribe else None, any_run=any_run,
                         reads=ReadCollector() if slot.subscribe else None)
    config = scenario_consumer_config(scenario, bootstrap_servers, run_id.hex())
    if slot.group_id is not None:
        config["group.id"] = slot.group_id
    if slot.subscribe:
        config.update(member_settings(scenario))
        tracker = _joined(config, scenario.topic, run_id, state, reports, slot, t0_ns)
    else:
        tracker = OrderTracker(config, [scenario.topic], start_offsets)
    every_partition = [TopicPartition(scenario.topic, p) for p in sorted(start_offsets)]
    report = SecondReporter(reports, tracker, every_partition, start_offsets, slot)
    # slow-consumer faults: the tracker sleeps after each batch it reads while one lasts.
    slow_faults = [fault for fault in parse_faults(scenario.faults) if fault.kind == SLOW_CONSUMER]
    clock, time_ns = time.perf_counter_ns, time.time_ns
    reports.put(Ready(tracker_name(slot.group, slot.consumer)))
    if catch_up_ns is not None:
        state.paused = True
        tracker.client.pause(assigned_partitions(tracker, every_partition, slot))
    if slot.subscribe:  # a member that stops polling stalls its group's rebalance: it polls until the start
        while not start.is_set():
            _read_early(tracker, run_id, state)
    start.wait()
    # A tracker started after t0 (a consumer added during the run, or a produce-only run's tracker)
    # reports from the second it is in, not before.
    second = max(0, (clock() - t0_ns.value) // NS_PER_S)
    next_second_ns = t0_ns.value + (second + 1) * NS_PER_S
    drain_target: int | Mapping[int, int] | None = None
    draining = stopped = False
    drain_deadline_ns = next_control_ns = drain_idle_ns = 0
    try:
        while True:
            try:
                messages = tracker.consume(TRACKER_BATCH, 0) or tracker.consume(1, TRACKER_WAIT_S)
            except KafkaException as error:
                # A broker down or restarting arrives as an error event (transport failure, all
                # brokers down); the consumer reconnects by itself, so only a fatal error ends it.
                if is_fatal(error):
                    raise
                messages = []
            if messages:
                state.last_read_ns = clock()
                state.first_read_ns = state.first_read_ns or state.last_read_ns
                consumed_before = state.consumed_in_second
                absorb_messages(messages, run_id, state, time_ns())
                if not end_to_end:
                    state.end_to_end_us.clear()
                if state.positions is not None:  # in order per partition: the last one stands
                    for message in messages:
                        state.positions[message.partition()] = message.offset() + 1
                if drain_idle_ns and state.consumed_in_second > consumed_before:
                    drain_deadline_ns = clock() + drain_idle_ns
                if slow_faults and (delay_s := consumer_delay_s(slow_faults, (clock() - t0_ns.value) / NS_PER_S)):
                    time.sleep(delay_s)
            now = clock()
            if state.paused and (draining or (catch_up_ns.value and now >= catch_up_ns.value)):
                state.paused = False
                tracker.client.resume(assigned_partitions(tracker, every_partition, slot))
            while now >= next_second_ns:
                report(state, second)
                second, next_second_ns = second + 1, next_second_ns + NS_PER_S
            if (not draining or slot.subscribe) and now >= next_control_ns:  # a member may be stopped any time
                next_control_ns = now + CONTROL_CHECK_NS
                try:
                    order: Drain | Stop = control.get_nowait()
                    if isinstance(order, Stop):
                        stopped = True
                    else:
                        draining, drain_target = True, order.target
                        drain_deadline_ns = now + int((order.drain_s + order.reconnect_s) * NS_PER_S)
                        drain_idle_ns = int(order.drain_s * NS_PER_S) if order.idle else 0
                except queue.Empty:
                    pass
            if stopped or (draining and (now >= drain_deadline_ns
                                         or (drain_target is not None and _drained(state, drain_target)))):
                break
        state.partition_consumed.close()
        report(state, second)
        reports.put(TrackerDone(
            seen={p: bytes(bits) for p, bits in state.audit.seen.items()}, duplicated=state.audit.duplicated,
            foreign=state.foreign, consumed_offsets={p: offsets.ranges() for p, offsets in state.consumed_offsets.items()},
            offsets_consumed_twice=state.offsets_consumed_twice, group=slot.group, consumer=slot.consumer,
            first_read_ns=state.first_read_ns, last_read_ns=state.last_read_ns))
    finally:
        tracker.close()


def _drained(state: TrackerState, target: int | Mapping[int, int]) -> bool:
    """Has the tracker consumed everything acked? target: the acked count (sequence audit) or
    the offset after the last acked one per partition (offset audit)."""
    if state.audits_offsets:
        return all(state.consumed_offsets[p].ends[-1:] >= [end] for p, end in target.items())
    return state.consumed_total + state.consumed_in_second - state.audit.duplicated >= target


def _joined(config: dict, topic: str, run_id: bytes, state: TrackerState, reports, slot: ConsumerSlot,
            t0_ns) -> OrderTracker:
    """A consumer that has joined its group and got its first assignment (maybe none: more
    consumers than partitions), so the group is settled before producing starts; one added during
    the run (t0 already set) does not wait. On a revocation it reports what it read (a GroupRead)
    and commits it, so the partition's next owner goes on from there."""
    assigned = []

    def on_revoke(consumer, partitions) -> None:
        if t0_ns.value:
            second = max(0, (time.perf_counter_ns() - t0_ns.value) // NS_PER_S)
            reports.put(group_read(state, slot, second))
        try:
            consumer.commit(asynchronous=False)
        except KafkaException:
            pass  # nothing read since the last commit: nothing to commit

    tracker = OrderTracker(config, [topic], None, on_assign=lambda consumer, partitions: assigned.append(True),
                           on_revoke=on_revoke)
    while not assigned and not t0_ns.value:
        _read_early(tracker, run_id, state)
    return tracker


def _read_early(tracker: OrderTracker, run_id: bytes, state: TrackerState) -> None:
    """One poll before the run starts, which serves the group's rebalance callbacks; what it reads
    is another producer's (this run has not produced yet): counted as foreign."""
    messages = tracker.consume(1, TRACKER_WAIT_S)
    if messages:
        absorb_messages(messages, run_id, state, time.time_ns())
