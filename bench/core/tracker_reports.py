"""The tracker's report of each second: what it consumed, the lag of the partitions it reads,
and (a group member) what it read for the per-group audit, with the commit of the positions its
previous report carried."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException, TopicPartition

from bench.core.clients import is_fatal
from bench.core.protocol import ConsumerSlot, TrackerSecond
from streamstore.tracker import OrderTracker

if TYPE_CHECKING:
    from bench.core.tracker import TrackerState


def lag_of(tracker: OrderTracker, partitions: list[TopicPartition], start_offsets: Mapping[int, int],
         cached: bool = True) -> dict[int, int]:
    """High watermark minus position per partition, from the consumer's cached fetch state
    (no broker round trip, so sampling does not stall consuming). cached=False: asked of the
    broker (a paused consumer fetches nothing, so its cached state stands still)."""
    lag = {}
    for position in tracker.client.position(partitions):
        _, high = tracker.client.get_watermark_offsets(position, cached=True) if cached else (0, -1)
        if high < 0:
            _, high = tracker.client.get_watermark_offsets(position, timeout=1.0)
        offset = position.offset if position.offset >= 0 else start_offsets[position.partition]
        lag[position.partition] = max(0, high - offset)
    return lag


def assigned_partitions(tracker: OrderTracker, every_partition: list[TopicPartition], slot: ConsumerSlot) -> list[TopicPartition]:
    return tracker.client.assignment() if slot.subscribe else every_partition


def group_read(state: TrackerState, slot: ConsumerSlot, second: int):
    return state.reads.take(slot.group, slot.consumer, second, state.audit.duplicated, state.offsets_consumed_twice,
                            state.foreign)


@dataclass
class SecondReporter:
    """The tracker's per-second report: what it consumed, and the lag of the partitions it reads
    (every one, or a group member's assignment)."""

    reports: object
    tracker: OrderTracker
    every_partition: list[TopicPartition]
    start_offsets: Mapping[int, int]
    slot: ConsumerSlot
    # A member commits the positions of its previous report: by then that report has surely left
    # the process, so a SIGKILL never hides a committed read from the audit.
    reported: dict[int, int] = field(default_factory=dict)

    def __call__(self, state: TrackerState, second: int) -> None:
        partitions = assigned_partitions(self.tracker, self.every_partition, self.slot)
        tracker_report(self.reports, self.tracker, partitions, self.start_offsets, state, second, self.slot)
        if state.reads is None:
            return
        self.reports.put(group_read(state, self.slot, second))
        mine = {tp.partition for tp in partitions}
        commit = [TopicPartition(tp.topic, tp.partition, self.reported[tp.partition])
                  for tp in partitions if tp.partition in self.reported]
        if commit:
            try:
                self.tracker.client.commit(offsets=commit, asynchronous=True)
            except KafkaException:
                pass  # no coordinator this moment: the next report commits again
        self.reported = {p: offset for p, offset in state.positions.items() if p in mine}


def tracker_report(reports, tracker: OrderTracker, partitions, start_offsets, state: TrackerState, second: int,
                    slot: ConsumerSlot) -> None:
    try:
        lag = lag_of(tracker, partitions, start_offsets, cached=not state.paused)
    except KafkaException as error:
        if is_fatal(error):
            raise
        lag = None  # the broker did not answer this second: no sample rather than a guess
    if lag is None:
        lag_time_ms = None
    elif sum(lag.values()) == 0:
        lag_time_ms = 0.0
    elif state.last_timestamp_ms is not None:
        lag_time_ms = max(0.0, time.time() * 1000 - state.last_timestamp_ms)
    else:
        lag_time_ms = None
    reports.put(TrackerSecond(second, state.consumed_in_second, state.end_to_end_us, lag, lag_time_ms,
                              *state.partition_consumed.take(), group=slot.group, consumer=slot.consumer,
                              positions=dict(state.positions or {})))
    state.consumed_total += state.consumed_in_second
    state.consumed_in_second = 0
    state.end_to_end_us = []
