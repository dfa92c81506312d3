"""The end of a measured run of `bench run`: the recorder's seconds closed, the audit, the broker's
offsets read again, and the one typed result written as the run folder (result.json, .hlog,
errors.log when a child process failed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.broker.ensure import BrokerInUse
from bench.core.audit import OFFSETS, AuditOutcome, run_verdict, trace_sample_every
from bench.core.backlog import BacklogStart, backlog_section, backlog_warnings
from bench.core.client_stats import client_latency_warnings
from bench.core.clients import scenario_watermarks
from bench.core.fault_watch import FaultWatch
from bench.core.merge import RunMeasurements
from bench.core.partitions import OFFSETS_UNREAD, partitions_section
from bench.core.protocol import ERRORS_LOG, write_child_errors
from bench.core.rebalances import rebalances_fields
from bench.core.resources import RunResources
from bench.core.result import (
    RunResult,
    broker_section,
    clamped_warnings,
    delivery_report_sections,
    latency_summaries,
    run_counts,
    run_throughput,
    write_run_folder,
)
from bench.core.run_modes import CONSUME_ONLY, NO_PRODUCER, PRODUCE_ONLY, mode_warnings
from bench.core.scenario import Scenario
from bench.core.scenario_checks import consumer_warnings
from bench.core.transactions import merged_by_partition, transactions_section
from bench.results.window import measured_seconds
from streamstore.errors import RunFailed

# The backlog goes out in flat-out bursts, whose deliveries note no partition.
BACKLOG_ACKED_UNKNOWN = ("a backlog is sent flat out, whose deliveries note no partition; consumed and "
                         "broker_offset_delta per partition still hold")


@dataclass(frozen=True)
class RunTimes:
    started_at: float   # wall clock of the first intended send, seconds since the epoch
    ended_at: float     # wall clock when the run ended (after the drain)
    t0_ns: int | None   # perf_counter_ns of the first intended send


def write_run(scenario: Scenario, broker: BrokerInUse, results_root: Path, run_id: str, measured: RunMeasurements,
              method: str, times: RunTimes, *, interrupted: bool, environment: Mapping[str, Any],
              topic_settings: tuple[Mapping[str, str] | None, str | None], start_offsets: dict[int, int],
              events: Sequence[Mapping[str, Any]], fault_watch: FaultWatch | None,
              resources: RunResources | None = None,
              backlog: BacklogStart | None = None,
              mode: Mapping[str, Any] | None = None) -> tuple[int, Path, dict[str, Any]]:
    """The run's result from what it measured, written as its run folder; (exit code, folder, result).
    mode: the run_mode section of a one-sided run (bench/core/run_modes.py), None for both sides."""
    recorder = measured.recorder
    one_side = mode["mode"] if mode else None
    if backlog is not None:  # the warm-up counts from the consumers' start (all of it if they never started)
        measured.set_warmup(backlog.warmup_from_s(recorder.seconds()))
    warmup_s = recorder.warmup_s
    recorder.close_through(recorder.last_second)
    totals = recorder.totals()
    outcomes = measured.producers.values()
    audit = measured.audit(method)
    offset_deltas, offset_unread = _broker_offset_deltas(scenario, broker.bootstrap_servers, start_offsets)
    offset_delta = None if offset_deltas is None else sum(offset_deltas.values())
    failed = max(totals["failed"], sum(o.sent - o.acked for o in outcomes))
    first_error = next((o.first_error for o in outcomes if o.first_error), None)
    failure = measured.failure
    if measured.child_failures:  # the console keeps one line; the tracebacks go beside the result
        failure = f"{failure} (traceback in {ERRORS_LOG})"
    summaries = [o.transactions for o in outcomes if o.transactions is not None]
    if failure is None and audit.aborted_consumed and scenario.isolation_level == "read_committed":
        failure = f"{audit.aborted_consumed:,} orders of aborted transactions were consumed with read_committed"
    verdict = run_verdict(interrupted=interrupted, failure=failure, failed=failed,
                          lost=audit.lost, first_error=first_error)
    producing_s = max((o.producing_s for o in outcomes), default=0.0)
    elapsed_s = max((o.elapsed_s for o in outcomes), default=0.0)
    series = recorder.series()  # every per-second series of the run: built once
    if one_side == CONSUME_ONLY:  # no producer: its series are not measured, not zero
        for key in ("sent", "acked", "failed"):
            series.pop(key)
    backlog_figures = backlog_section(scenario, backlog, series, recorder.latency["end_to_end"]) if backlog else None
    resources_fields = ({"resources": resources.add_to(series, warmup_s)} if resources is not None
                        else {"resources": None, "resources_not_measured": "resource sampling was turned off for this run"})
    result = RunResult(
        kind="run", run_id=run_id, scenario=scenario.to_dict(), fingerprint=scenario.fingerprint(),
        environment=environment,
        broker=broker_section(broker, topic_settings[0], topic_settings[1]),
        started_at=times.started_at, ended_at=times.ended_at, warmup_s=warmup_s,
        duration_s=times.ended_at - times.started_at if one_side == CONSUME_ONLY else producing_s,
        verdict=verdict, audit=audit.method,
        counts=run_counts(totals, failed=failed, audit=audit, tracker_ran=True, broker_offset_delta=offset_delta,
                          offset_delta_reason=offset_unread, producer_ran=one_side != CONSUME_ONLY),
        throughput=run_throughput(series, warmup_s, scenario.mean_message_size(),
                                  acked=totals["acked"], producing_s=producing_s, elapsed_s=elapsed_s,
                                  consumed=totals["consumed"], reading_s=_reading_s(measured)),
        latency_us=latency_summaries(recorder, scenario, tracked=one_side != PRODUCE_ONLY,
                                     sample_every=trace_sample_every(scenario),
                                     service_sample_every=trace_sample_every(scenario), produced=one_side != CONSUME_ONLY),
        series=series, events=[*events, *(fault_watch.events if fault_watch else [])],
        warnings=_run_warnings(scenario, measured, totals, audit, offset_delta if one_side != CONSUME_ONLY else None,
                               summaries)
        + (fault_watch.warnings() if fault_watch else []) + (resources.warnings() if resources else [])
        + backlog_warnings(backlog_figures, warmup_s) + mode_warnings(one_side),
        sections={**({"failover": fault_watch.section(measured, recorder, times.t0_ns)} if fault_watch else {}),
                  **(delivery_report_sections(scenario, recorder) if one_side != CONSUME_ONLY
                     else {"delivery_reports": None}),
                  "partitions": _partitions(scenario, measured, method, offset_deltas, offset_unread, series, summaries,
                                            warmup_s, one_side),
                  "backlog": backlog_figures, "run_mode": dict(mode) if mode else None,
                  "transactions": transactions_section(summaries, isolation_level=scenario.isolation_level,
                                                       aborted_consumed=audit.aborted_consumed, offset_delta=offset_delta)
                  if scenario.transaction_size else None, **resources_fields,
                  **({"groups": measured.groups.section(measured.group_audits(method), recorder.measured_window(),
                                                                recorder.seconds())}
                     if measured.groups is not None else {}),
                  **rebalances_fields(scenario, measured, fault_watch, start_offsets, times.t0_ns, recorder.seconds(),
                                    producing_s)})
    folder, document = write_run_folder(results_root, result, recorder)
    if measured.child_failures:
        write_child_errors(folder / ERRORS_LOG, measured.child_failures)
    return verdict.exit_code, folder, document


def _reading_s(measured: RunMeasurements) -> float | None:
    """From the first to the last batch group 0's consumer process(es) read; None if none was read."""
    done = measured.tracker_done
    if done is None or done.first_read_ns is None or done.last_read_ns is None:
        return None
    return (done.last_read_ns - done.first_read_ns) / 1e9


def _broker_offset_deltas(scenario: Scenario, bootstrap_servers: str,
                          start_offsets: dict[int, int]) -> tuple[dict[int, int] | None, str]:
    """How many records each partition gained during the run, by the broker's own offsets; None
    and why when no node answered for them (after a fault, within the admin timeout)."""
    try:
        after = scenario_watermarks(scenario, bootstrap_servers)
    except RunFailed as error:
        return None, str(error)
    return {partition: high - start_offsets.get(partition, 0) for partition, (_, high) in after.items()}, ""


def _partitions(scenario: Scenario, measured: RunMeasurements, method: str, offset_deltas: dict[int, int] | None,
                offset_unread: str, series: Mapping[str, Any], summaries: list[Mapping[str, Any]],
                warmup_s: float, one_side: str | None) -> dict[str, Any]:
    """The result's `partitions` (bench/core/partitions.py) from what the run measured."""
    transactions = merged_by_partition(summaries) if scenario.transaction_size else None
    if transactions is not None:  # every transactional delivery noted its partition
        acked: dict[int, int] | None = {p: transactions["committed"].get(p, 0) + transactions["aborted"].get(p, 0)
                                        for p in {*transactions["committed"], *transactions["aborted"]}}
    elif one_side == CONSUME_ONLY:
        acked = None
    elif method == OFFSETS:
        acked: dict[int, int] | None = {p: sum(end - start for start, end in offsets.ranges())
                                        for p, offsets in measured.acked_offsets.items()}
    elif (scenario.rate or scenario.phases) and not scenario.backlog:  # every scheduled delivery notes its partition
        acked = measured.partition_acks.totals()
    else:
        acked = None
    window = measured_seconds(series.get("t_s") or [], warmup_s, series.get("sent"))
    return partitions_section(acked=acked, consumed=measured.partition_consumed.totals(), offset_delta=offset_deltas,
                              lag_by_partition=series.get("lag_messages_by_partition") or {}, window=window,
                              transactions=transactions, offsets_unread=offset_unread or OFFSETS_UNREAD,
                              **({"acked_unknown": BACKLOG_ACKED_UNKNOWN} if scenario.backlog else
                                 {"acked_unknown": NO_PRODUCER} if one_side == CONSUME_ONLY else {}))


def _run_warnings(scenario: Scenario, measured: RunMeasurements, totals: dict[str, int], audit: AuditOutcome,
                  offset_delta: int | None, summaries: list[Mapping[str, Any]]) -> list[str]:
    warnings = clamped_warnings(measured.recorder) + consumer_warnings(scenario)
    if measured.tracker_done is not None and measured.tracker_done.foreign:
        warnings.append(f"{measured.tracker_done.foreign:,} messages on the topic did not come from this run (another producer?)")
    # With transactions the offsets also hold one commit or abort marker per transaction and partition.
    markers = sum(summary["markers"] for summary in summaries)
    if offset_delta is not None and offset_delta != totals["acked"] + markers and scenario.acks != "0":
        warnings.append(f"broker offsets grew by {offset_delta:,} but {totals['acked']:,} deliveries were acked"
                        + (f" and {markers:,} transaction markers written" if scenario.transaction_size else ""))
    purged = sum(outcome.undelivered for outcome in measured.producers.values())
    if purged:
        warnings.append(f"{purged:,} messages were not delivered before the flush deadline and were purged (counted as failed)")
    timed_out = sum(outcome.timed_out for outcome in measured.producers.values())
    if timed_out:
        warnings.append(f"{timed_out:,} deliveries failed with a timeout and are possibly persisted (the broker may have "
                        f"written them): the audit counts them neither lost nor duplicated")
    if scenario.delivery_reports == "failures":
        warnings += client_latency_warnings(measured.recorder.client_latency_summary())
    if audit.lost_examples:
        unit = " (producer/sequence)" if audit.method == "sequences" else ""
        warnings.append(f"lost{unit}, first ones: {', '.join(audit.lost_examples)}")
    return warnings
