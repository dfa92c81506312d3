"""Faults during one `bench run`: the injector that causes broker faults on schedule, the sampler
that watches leaders and ISRs meanwhile, and the run's `failover` section built from both and
from what the run measured (bench/analysis/failover.py).

Both live in the coordinating process, never in a producer, whose timing they would disturb.
A slow-consumer fault is acted on by the tracker itself (bench/core/tracker.py), by the same
clock; here it gets its events and its record, so its figures are measured like a broker fault's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from bench.analysis.failover import failover_section
from bench.broker.ensure import BrokerInUse
from bench.broker.fault_spec import SLOW_CONSUMER, broker_faults, check_targets, consumer_events, plan_consumer_events
from bench.broker.faults import ROLLING_RESTART_CUT_SHORT, Fault, FaultInjector
from bench.broker.nodes import nodes_of
from bench.broker.proxy_control import remote_proxies
from bench.broker.roles import AnyNodeMetadata, active_controller
from bench.broker.sampler import MetadataSampler
from bench.core.availability import MIN_GAP_NS, NS_PER_MS
from bench.core.clients import reconnect_allowance_s, scenario_admin
from bench.core.merge import RunMeasurements
from bench.core.recorder import RunRecorder
from bench.core.scenario import Scenario

NS_PER_S = 1_000_000_000


class FaultWatch:
    """Causes a run's faults and watches the cluster while they last.

    `start(t0_ns)` when producing begins; `end()` once producing is over (the broker is up again
    before the drain; safe to call twice); then `events`, `error` and `section(...)`.
    """

    def __init__(self, scenario: Scenario, broker: BrokerInUse, faults: Sequence[Fault]):
        self.scenario = scenario
        self.bootstrap_servers = broker.bootstrap_servers
        self.slow_consumer = [fault for fault in faults if fault.kind == SLOW_CONSUMER]
        self.injector: FaultInjector | None = None
        # Consumer events, each resolved to its process; `consumer_action(step)` (the runner's) acts.
        self.consumer_steps = plan_consumer_events(faults, scenario.consumer_groups, scenario.consumers_per_group)
        self.consumer_action = None
        if broker_faults(faults):
            proxies = remote_proxies(broker.embedded.state_dir)
            check_targets(faults, len(nodes_of(broker.embedded)), scenario.partitions, proxied=bool(proxies))
            self.injector = FaultInjector(
                broker.embedded, [*broker_faults(faults), *consumer_events(faults)], admin=self._metadata(),
                topic=scenario.topic, controller=lambda: active_controller(self.bootstrap_servers, broker.embedded.version),
                proxies=proxies)
        elif self.consumer_steps:
            self.injector = FaultInjector(None, consumer_events(faults))
        if self.injector is not None:
            self.injector.on_consumer_event = self._consumer_event
        self.ended = False
        self.t0_ns = 0
        self.sampler: MetadataSampler | None = None
        self.schedule_end: threading.Timer | None = None
        self.events: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.error: str | None = None

    def _consumer_event(self, fault: Fault) -> tuple[str, int]:
        """The next consumer event's step (events run in the order planned), acted on by the run."""
        step = self.consumer_steps.pop(0)
        return self.consumer_action(step), step.consumer

    def _metadata(self) -> AnyNodeMetadata:
        return AnyNodeMetadata(scenario_admin(self.scenario, self.bootstrap_servers), self.scenario.producer_config)

    def start(self, t0_ns: int, outage=None) -> None:
        """outage: an event set while a node a fault killed or stopped is not answering yet."""
        self.t0_ns = t0_ns
        self.sampler = MetadataSampler(self._metadata(), self.scenario.topic, t0_ns / NS_PER_S).start()
        if self.injector is not None:
            if outage is not None:
                self.injector.on_outage = lambda down: outage.set() if down else outage.clear()
            self.injector.start(t0_ns / NS_PER_S)
            # The faults end with the run's schedule, not after the producers' flush: a node a
            # fault still holds down when producing ends is brought back now, and the producers
            # keep flushing until it answers (on_outage), so nothing queued for it is purged.
            end_in_s = (t0_ns - time.perf_counter_ns()) / NS_PER_S + self.scenario.duration_s
            self.schedule_end = threading.Timer(max(0.0, end_in_s), self.injector.cancelled.set)
            self.schedule_end.daemon = True
            self.schedule_end.start()

    def end(self) -> None:
        """End the current fault and keep the events; the sampler keeps watching until `stop`."""
        if self.ended:
            return
        self.ended = True
        if self.schedule_end is not None:
            self.schedule_end.cancel()
        if self.injector is not None:
            self.injector.stop()
            self.events, self.records = list(self.injector.events), list(self.injector.records)
            self.error = f"fault injection failed: {self.injector.error}" if self.injector.error is not None else None
        if self.t0_ns:
            self._slow_consumer_records((time.perf_counter_ns() - self.t0_ns) / NS_PER_S)

    def reconnect_s(self) -> float:
        """How much later the tracker's first message may come after a node restart (0 without)."""
        restarted = any(event["kind"] == "broker-up" for event in self.events)
        return reconnect_allowance_s(self.scenario.consumer_config) if restarted else 0.0

    def _slow_consumer_records(self, elapsed_s: float) -> None:
        """The slow-consumer faults that began before the end: the tracker slept from AT to AT+FOR
        (or the end, if the run stopped first) by the run's clock."""
        for fault in self.slow_consumer:
            if fault.at_s >= elapsed_s:
                continue
            end_s = round(min(fault.at_s + fault.for_s, elapsed_s), 3)
            self.records.append({"fault": str(fault), "kind": fault.kind, "node_id": None, "role": "consumer",
                                 "partition": None, "start_s": fault.at_s, "end_s": end_s, "back_s": None})
            self.events += [
                {"t_s": fault.at_s, "kind": "consumer-slow",
                 "detail": f"the tracker sleeps {fault.delay_ms:g} ms after each batch it reads"},
                {"t_s": end_s, "kind": "consumer-normal", "detail": "the tracker reads without sleeping again"}]

    def stop(self) -> None:
        self.end()
        if self.sampler is not None:
            self.sampler.stop()

    def warnings(self) -> list[str]:
        """What the faults did not do as asked: a rolling restart the end of the run cut short."""
        return [event["detail"] for event in self.events if event["kind"] == ROLLING_RESTART_CUT_SHORT]

    def section(self, measured: RunMeasurements, recorder: RunRecorder, t0_ns: int) -> dict[str, Any]:
        """The result's `failover` section."""
        acks, consumed = measured.partition_acks, measured.partition_consumed
        sampler, flat_out = self.sampler, self.scenario.rate == 0
        # Acks per partition come from per-message delivery reports.
        untracked = ("flat out (rate 0) acks are not tracked per partition" if flat_out else
                     "failures-only delivery reports: acks are not reported per message" if
                     self.scenario.delivery_reports == "failures" else None)
        section = failover_section(
            self.records, acks.gaps_ms(t0_ns), consumed.gaps_ms(t0_ns),
            {p for counts in acks.by_second.values() for p in counts},
            {p for counts in consumed.by_second.values() for p in counts},
            sampler.samples if sampler is not None else [], recorder.seconds(),
            {name: recorder.latency[name].intervals for name in ("service_time", "end_to_end")},
            gap_threshold_ms=MIN_GAP_NS / NS_PER_MS, sample_every_s=sampler.every_s if sampler else None,
            missed_samples=sampler.missed if sampler else 0,
            acks_tracked=untracked, warmup_s=self.scenario.warmup_s)
        section["series"]["acked_by_partition"] = None if untracked else acks.series(recorder.seconds())
        section["series"]["consumed_by_partition"] = consumed.series(recorder.seconds())
        return section
