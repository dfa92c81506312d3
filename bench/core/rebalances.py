"""The result's `rebalances` section: one entry per consumer event (add-consumer, kill-consumer,
stop-consumer), its figures computed by bench/analysis/rebalance.py from what the run's group
members reported (bench/core/group_reads.py) and the producers' acks per partition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.analysis.rebalance import group_lag, rebalance_entries
from bench.core.availability import MIN_GAP_NS, NS_PER_MS
from bench.core.group_reads import owner_positions
from bench.core.merge import RunMeasurements
from bench.core.scenario import Scenario

LAG_NOT_TRACKED = ("the producers' acks are not tracked per partition (flat out, or failures-only delivery reports), "
                   "so the lag of a partition no member reads is not known")


def rebalances_fields(scenario: Scenario, measured: RunMeasurements, fault_watch, start_offsets: Mapping[int, int],
                      t0_ns: int | None, seconds: int, producing_s: float) -> dict[str, Any]:
    """{"rebalances": {...}} for a run with consumer events, else nothing."""
    events = [event for event in (fault_watch.events if fault_watch is not None else [])
              if event["kind"] in ("consumer-add", "consumer-kill", "consumer-stop")]
    if not events or measured.groups is None or t0_ns is None:
        return {}
    reads = measured.groups.reads
    tracked = bool(scenario.rate) and scenario.delivery_reports == "all"
    lag = None
    if tracked:
        acked = {second: dict(counts) for second, counts in measured.partition_acks.by_second.items()}
        lag = {group: group_lag(acked, start_offsets, owner_positions(reads.positions[group], start_offsets, range(seconds)),
                                seconds) for group in measured.groups.groups}
    entries = rebalance_entries(
        [{"t_s": e["t_s"], "kind": e["kind"], "group": e["group"], "consumer": e["consumer"], "fault": e["fault"]}
         for e in events],
        {group: reads.group_spans(group) for group in measured.groups.groups}, measured.groups.gaps, lag,
        {group: dict(reads.duplicated[group]) for group in measured.groups.groups}, t0_ns=t0_ns, end_s=float(seconds),
        producing_s=producing_s,
        gap_floor_ms=MIN_GAP_NS / NS_PER_MS, lag_not_measured=None if tracked else LAG_NOT_TRACKED)
    return {"rebalances": {"group_protocol": scenario.group_protocol, "session_timeout_ms": scenario.session_timeout_ms,
                           "heartbeat_interval_ms": scenario.heartbeat_interval_ms,
                           "gap_floor_ms": MIN_GAP_NS / NS_PER_MS, "events": entries,
                           "lag_messages": None if lag is None else {str(group): series for group, series in lag.items()}}}
