"""One typed result for every engine, one builder and one run-folder writer.

`bench run` / `bench chaos`, the Locust master and the large-message sweep all describe what
they measured as a `RunResult`; `write_run_folder` writes result.json (atomically) and the
`.hlog` interval logs. The dict form is the file format (docs/result-format.md).

Measured or null: a count that was not measured is None, and `Counts.not_measured` says why;
the reasons become warnings in the file, so a reader never mistakes "not measured" for 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.analysis.bottlenecks import bottleneck_verdicts
from bench.analysis.stats import derive_warnings
from bench.broker.ensure import BrokerInUse
from bench.core.audit import AuditOutcome, Verdict
from bench.core.recorder import RunRecorder
from bench.core.scenario import Scenario
from bench.results.formatting import utc_iso
from bench.results.histograms import write_interval_log
from bench.results.metrics import HLOG_LATENCIES
from bench.results.store import run_folder, write_result
from bench.results.window import lag_summary, throughput_summary

COUNT_FIELDS = ("sent", "acked", "failed", "consumed", "lost", "duplicated", "malformed", "broker_offset_delta")
# Interval-log file per latency metric (the measured window's histograms live in result.json).
HLOG_FILES = {name: f"{name}.hlog" for name in HLOG_LATENCIES}
# The tracker reads trace headers and offsets, not values (random and text payloads are not
# orders), so it cannot say whether a value was malformed.
MALFORMED_NOT_CHECKED = "the tracker does not parse message values"
NO_PRODUCER_RAN = "consume-only: no producer of this run (the topic's producers know what they sent)"
OFFSETS_NOT_READ = "the broker's offsets could not be read"
NO_REPORT_PER_MESSAGE = ("delivery_reports = \"failures\": no delivery report per message, so no per-message "
                         "send -> ack time; see client_latency_us (librdkafka's own int_latency and rtt)")


@dataclass(frozen=True)
class Counts:
    sent: int | None
    acked: int | None
    failed: int | None
    consumed: int | None
    lost: int | None
    duplicated: int | None
    malformed: int | None
    broker_offset_delta: int | None
    # count name -> why it is None
    not_measured: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in COUNT_FIELDS:
            if getattr(self, name) is None and name not in self.not_measured:
                raise ValueError(f"count {name} is None without a reason")

    def to_dict(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in COUNT_FIELDS}

    def warnings(self) -> list[str]:
        """A warning for each count not measured, except malformed where the engine never checks
        values (`bench run`, Locust): that is how they work, said once in docs/result-format.md,
        and the reason stays in the result's `counts_not_measured`."""
        return [f"{name} not measured: {reason}" for name, reason in self.not_measured.items()
                if not (name == "malformed" and reason == MALFORMED_NOT_CHECKED)]


def sum_counts(parts: Mapping[str, Counts]) -> Counts:
    """The counts of separately measured parts (the cells of a sweep) added up, part name ->
    counts. A count one part did not measure is not measured in the sum either: its reason names
    each such part, so the total never passes a partial sum off as the whole."""
    totals: dict[str, int | None] = {}
    not_measured: dict[str, str] = {}
    for name in COUNT_FIELDS:
        reasons = [f"{part}: {counts.not_measured[name]}" for part, counts in parts.items()
                   if getattr(counts, name) is None]
        if reasons:
            totals[name], not_measured[name] = None, "; ".join(reasons)
        else:
            totals[name] = sum(getattr(counts, name) for counts in parts.values())
    return Counts(**totals, not_measured=not_measured)


def run_counts(totals: Mapping[str, int], *, failed: int, audit: AuditOutcome, tracker_ran: bool,
               broker_offset_delta: int | None, offset_delta_reason: str = OFFSETS_NOT_READ,
               malformed: int | None = None, malformed_reason: str = MALFORMED_NOT_CHECKED,
               producer_ran: bool = True) -> Counts:
    """The counts of a producer + tracker run, with a reason for each one not measured
    (producer_ran False: a consume-only run, whose sent, acked and failed are someone else's)."""
    not_measured: dict[str, str] = {}
    if not producer_ran:
        not_measured.update(dict.fromkeys(("sent", "acked", "failed"), NO_PRODUCER_RAN))
    if not tracker_ran:
        not_measured["consumed"] = "no tracker ran"
    if audit.not_audited:
        not_measured["lost"] = not_measured["duplicated"] = audit.not_audited
    if malformed is None:
        not_measured["malformed"] = malformed_reason
    if broker_offset_delta is None:
        not_measured["broker_offset_delta"] = offset_delta_reason
    if not producer_ran:
        totals, failed = {**totals, "sent": None, "acked": None}, None
    return Counts(sent=totals["sent"], acked=totals["acked"], failed=failed,
                  consumed=totals["consumed"] if tracker_ran else None, lost=audit.lost,
                  duplicated=audit.duplicated, malformed=malformed, broker_offset_delta=broker_offset_delta,
                  not_measured=not_measured)


def broker_section(broker: BrokerInUse, topic_settings: Mapping[str, str] | None,
                   topic_settings_unread: str | None = None) -> dict[str, Any]:
    """The result's `broker`, as measured when the run started (BrokerInUse.section), with the
    topic settings (None, and the reason in `not_measured`, when no node answered for them)."""
    section = broker.section(topic_settings or {})
    fields = topic_settings_fields(topic_settings, topic_settings_unread)
    section["topic_settings"] = fields["topic_settings"]
    section["not_measured"] = {**section["not_measured"], **fields.get("not_measured", {})}
    return section


def topic_settings_fields(topic_settings: Mapping[str, str] | None, unread: str | None) -> dict[str, Any]:
    """`topic_settings`, or None and `not_measured` saying why when no node answered for them."""
    if topic_settings is None:
        return {"topic_settings": None, "not_measured": {"topic_settings": unread or "not read"}}
    return {"topic_settings": dict(topic_settings)}


@dataclass(frozen=True)
class RunResult:
    kind: str                       # run | locust | large-message
    run_id: str
    scenario: Mapping[str, Any]     # the scenario as run (Scenario.to_dict())
    fingerprint: str
    # Both measured once, when the run started (capture_environment, measure_broker).
    environment: Mapping[str, Any]
    broker: Mapping[str, Any]
    started_at: float               # wall clock, seconds since the epoch
    ended_at: float
    duration_s: float | None       # None: not measured (the warnings say why)
    warmup_s: float
    verdict: Verdict
    counts: Counts
    audit: str | None               # sequences | offsets | None (not audited)
    latency_us: Mapping[str, Any]
    series: Mapping[str, Any]
    throughput: Mapping[str, Any] | None = None
    events: Sequence[Mapping[str, Any]] = ()
    warnings: Sequence[str] = ()
    same_host: bool = True
    # Engine-specific sections: "large_message", "locust".
    sections: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "kind": self.kind,
            "run_id": self.run_id,
            "scenario": dict(self.scenario),
            "fingerprint": self.fingerprint,
            "environment": {**self.environment, "producer_and_tracker_same_host": self.same_host},
            "broker": dict(self.broker),
            "started_at": utc_iso(self.started_at),
            "ended_at": utc_iso(self.ended_at),
            "duration_s": round(self.duration_s, 3) if self.duration_s is not None else None,
            "warmup_s": self.warmup_s,
            "status": self.verdict.status,
            "failure": self.verdict.failure,
            "audit": self.audit,
            "counts": self.counts.to_dict(),
            "counts_not_measured": dict(self.counts.not_measured),
            "throughput": dict(self.throughput) if self.throughput is not None else None,
            "lag": lag_summary(self.series, self.warmup_s) if "lag_messages" in self.series else None,
            "latency_us": dict(self.latency_us),
            "series": dict(self.series),
            "events": sorted(self.events, key=lambda event: event["t_s"]),
            "warnings": [*self.warnings, *self.counts.warnings()],
            "large_message": None,
            "failover": None,
            "partitions": None,
            "transactions": None,
            "backlog": None,
            "run_mode": None,
            # Engines that sample resources put them in `sections`; the others say why not.
            "resources": None,
            "resources_not_measured": f"the {self.kind} engine does not sample resources",
            **self.sections,
        }
        if result["resources"] is not None:
            result.pop("resources_not_measured")
        result["warnings"] = derive_warnings(result)
        result["verdicts"] = bottleneck_verdicts(result)
        return result


def latency_summaries(recorder: RunRecorder, scenario: Scenario, *, tracked: bool, sample_every: int,
                      service_sample_every: int = 1, produced: bool = True) -> dict[str, Any]:
    """Summary percentiles of each latency the run measured (response time and send delay only
    with a schedule, end-to-end only with a tracker). sample_every / service_sample_every: 1 when
    every message's end-to-end / service time was recorded, n when only every n-th message's."""
    window = recorder.measured_window()
    if not produced:  # consume-only: end-to-end latency of the traced records is all there is
        return {"end_to_end": {**recorder.latency["end_to_end"].summary(window), "sample_every": 1}} if tracked else {}
    latency = {"service_time": recorder.latency["service_time"].summary(window)}
    latency["service_time"]["sample_every"] = service_sample_every
    if scenario.rate:
        latency["response_time"] = recorder.latency["response_time"].summary(window)
        latency["send_delay"] = recorder.latency["send_delay"].summary(window)
    if scenario.delivery_reports == "failures":
        # Null, never 0: without a report per message there is no send -> ack time to take.
        for name in ("service_time", "response_time"):
            if name in latency:
                latency[name]["not_measured"] = NO_REPORT_PER_MESSAGE
    if tracked:
        latency["end_to_end"] = recorder.latency["end_to_end"].summary(window)
        latency["end_to_end"]["sample_every"] = sample_every
        if scenario.transaction_size and scenario.isolation_level == "read_committed":
            # A record becomes visible to a read_committed consumer only once its transaction commits.
            latency["end_to_end"]["includes_commit"] = True
    if scenario.transaction_size:
        latency["commit"] = recorder.latency["commit"].summary(window)
    return latency


# How the console and the report name each delivery_reports mode.
DELIVERY_REPORT_MODES = {"all": "every message (per-message service time)",
                         "failures": "failures only (acked = accepted - failed after the flush)"}


def delivery_report_sections(scenario: Scenario, recorder: RunRecorder) -> dict[str, Any]:
    """The result's `delivery_reports` (the mode that ran) and, with failures-only reports,
    `client_latency_us`: librdkafka's own int_latency and rtt over the measured window."""
    sections: dict[str, Any] = {"delivery_reports": scenario.delivery_reports}
    if scenario.delivery_reports == "failures":
        sections["client_latency_us"] = recorder.client_latency_summary()
    return sections


def run_throughput(series: Mapping[str, Any], warmup_s: float, message_bytes: int | None, *, acked: int,
                   producing_s: float | None, elapsed_s: float | None, consumed: int | None = None,
                   reading_s: float | None = None) -> dict[str, Any]:
    """The result's `throughput`: the measured-window figures (the one throughput every report,
    compare and the gate read), and the timing of the whole run beside them: `producing_s`
    (first to last send), `elapsed_s` (first send to last ack) and `elapsed_acked_per_s` (acked /
    elapsed_s, warm-up included: the figure `bench calibrate` sets beside a bare loop); for the
    consumer side `reading_s` (the first to the last batch group 0's consumer process(es) read)
    and `elapsed_consumed_per_s` (consumed / reading_s: what `bench calibrate --side consumer`
    sets beside a bare consume loop)."""
    return {**throughput_summary(series, warmup_s, message_bytes),
            "producing_s": round(producing_s, 3) if producing_s is not None else None,
            "elapsed_s": round(elapsed_s, 3) if elapsed_s is not None else None,
            "elapsed_acked_per_s": round(acked / elapsed_s, 1) if elapsed_s else None,
            "reading_s": round(reading_s, 3) if reading_s is not None else None,
            "elapsed_consumed_per_s": round(consumed / reading_s, 1) if reading_s and consumed is not None else None}


def clamped_warnings(recorder: RunRecorder) -> list[str]:
    return [f"{recorder.latency[name].clamped:,} {name} latencies above 1 h were clamped to 1 h"
            for name in recorder.latency if recorder.latency[name].clamped]


def write_run_folder(results_root: str | os.PathLike, result: RunResult, recorder: RunRecorder | None = None) -> tuple[Path, dict]:
    """A new run folder with result.json and, from the recorder, one .hlog per measured latency."""
    document = result.to_dict()
    folder = run_folder(results_root, result.scenario["name"], result.started_at)
    if recorder is not None:
        seconds = recorder.seconds()
        for name, file_name in HLOG_FILES.items():
            if name in document["latency_us"]:
                write_interval_log(folder / file_name, recorder.latency[name].interval_list(seconds), result.started_at)
    write_result(folder, document)
    return folder, document
