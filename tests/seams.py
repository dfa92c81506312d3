"""Test-only changes to the product's processes, kept out of bench/ and streamstore/.

The tracker runs in a spawned process, so a test cannot monkeypatch it from its own process: it
monkeypatches the name the coordinator starts instead (`bench.core.runner.tracker_main`, or
`bench.locust.master.tracker_main`) with one of the entry points below. Each is a module-level
function bound with functools.partial, so it pickles by name; the spawned child imports this
module (tests/ is on its sys.path, as on the parent's), patches the tracker's consumer inside
itself and runs the real `tracker_main`.

- `stalled_tracker(log_start)`: the tracker reads nothing until the broker's log of partition 0
  starts at `log_start` or later (a test has it delete the first acked orders), then reads the
  partitions again from the run's start offsets (what was prefetched meanwhile is dropped), so
  exactly the deleted orders were acked and never read. It waits on that event, not for a time:
  a fixed stall loses the race to a deletion that a starved machine makes late. After
  STALL_LIMIT_S without it, it reads anyway (the test then fails on its counts, not by hanging).
- `slowed_tracker(delay_ms, max_batch=None)`: the tracker sleeps delay_ms after every batch for
  the whole run (and takes at most max_batch messages per batch, so its speed has a ceiling that
  does not depend on how the producer batched), a slower consumer path with the same scenario
  (and fingerprint) as an unslowed run, which the regression gate must catch. (Users slow the
  consumer with the `slow-consumer` fault, which is part of the scenario and so never compared
  with a run without it.)
- `slowed_tracker_on(topic_suffix, delay_ms)`: `slowed_tracker(delay_ms)` for the runs whose topic
  ends with topic_suffix, the plain tracker for the others: one side of a `bench ab` (its runs'
  topics end with -a and -b) gets the slower consumer path.
- `drop_first_acked(bootstrap, count)`: for the large-message sweep, a cell that produces all its
  messages, has the broker delete the first `count` (AdminClient.delete_records), then consumes:
  exactly those are lost.
"""

from __future__ import annotations

import functools
import time

from confluent_kafka import KafkaException, TopicPartition

NS_PER_S = 1_000_000_000
# The stalled tracker asks the broker for the log start this often, and reads anyway after the
# limit (counted from the run's start).
CHECK_EVERY_NS = 100_000_000
STALL_LIMIT_S = 120.0


def stalled_tracker(log_start: int) -> functools.partial:
    return functools.partial(_stalled_tracker_main, log_start)


def slowed_tracker(delay_ms: float, max_batch: int | None = None) -> functools.partial:
    return functools.partial(_slowed_tracker_main, delay_ms, max_batch)


def slowed_tracker_on(topic_suffix: str, delay_ms: float, max_batch: int | None = None) -> functools.partial:
    return functools.partial(_slowed_tracker_on_main, topic_suffix, delay_ms, max_batch)


def _slowed_tracker_on_main(topic_suffix: str, delay_ms: float, max_batch: int | None, scenario, *args) -> None:
    if scenario.topic.endswith(topic_suffix):
        _slowed_tracker_main(delay_ms, max_batch, scenario, *args)
        return
    from bench.core import tracker as module

    module.tracker_main(scenario, *args)


def _stalled_tracker_main(log_start: int, scenario, bootstrap_servers, run_id, start_offsets, reports, control,
                          start, t0_ns, *slot) -> None:
    from bench.core import tracker as module

    class StalledTracker(module.OrderTracker):
        reassigned = False
        checked_ns = 0

        def consume(self, count, timeout):
            if not self.reassigned:
                if not self._dropped():
                    time.sleep(timeout or 0.01)
                    return []
                # Assigned again from the start offsets: what librdkafka prefetched during the
                # stall is discarded, so the broker's log as it is now is what is read.
                self.reassigned = True
                self.client.assign([TopicPartition(scenario.topic, p, offset) for p, offset in start_offsets.items()])
                return []
            return super().consume(count, timeout)

        def _dropped(self) -> bool:
            now = time.perf_counter_ns()
            if now > t0_ns.value + int(STALL_LIMIT_S * NS_PER_S):
                return True
            if now - self.checked_ns < CHECK_EVERY_NS:
                return False
            self.checked_ns = now
            try:
                low, _high = self.client.get_watermark_offsets(TopicPartition(scenario.topic, 0), timeout=2, cached=False)
            except KafkaException:  # the topic's leader not known yet: asked again next time
                return False
            return low >= log_start

    module.OrderTracker = StalledTracker
    module.tracker_main(scenario, bootstrap_servers, run_id, start_offsets, reports, control, start, t0_ns, *slot)


def _slowed_tracker_main(delay_ms: float, max_batch: int | None, scenario, *args) -> None:
    from bench.core import tracker as module

    class SlowedTracker(module.OrderTracker):
        def consume(self, count, timeout):
            messages = super().consume(min(count, max_batch or count), timeout)
            if messages:
                time.sleep(delay_ms / 1000)
            return messages

    module.OrderTracker = SlowedTracker
    module.tracker_main(scenario, *args)


def drop_first_acked(bootstrap_servers: str, count: int):
    """A replacement for `CellRun._exchange` (monkeypatched in-process: the sweep's cells run in
    the test's process; only its producer and consumer are workers)."""
    from streamstore.admin import connect_admin

    def exchange(cell, topic: str, start: int) -> None:
        for rep in range(1, cell.reps + 1):
            cell.progress.start(cell.size, cell.compression, rep, cell.reps)
            cell._produce(topic)
        end = cell.topics.high_watermark(topic)
        admin = connect_admin(bootstrap_servers)  # kept until the deletion is done
        [future] = admin.delete_records([TopicPartition(topic, 0, min(start + count, end))]).values()
        future.result(timeout=30)
        if not cell.acked:
            return
        # The consumer starts after the deletion and stops at the log's end: end-to-end times
        # are not latencies here and are not recorded.
        cell._start_consumer(topic, start, cell.acked, end)
        while cell._next_message() is not None:
            pass

    return exchange
