"""What the Locust workers measured, merged on the master, and the run's result built from it:
each worker's counts, failed sequences and service-time histogram, and when it first sent, last
sent and last saw an ack; the run's duration is from the first send to the last ack as the
workers report them, as in `bench run` (not the test's wall time, not a nominal rate)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from bench.core.audit import ProducerAccount, run_verdict, trace_sample_every
from bench.core.merge import RunMeasurements
from bench.core.partitions import partitions_section
from bench.core.result import RunResult, broker_section, clamped_warnings, latency_summaries, run_counts, run_throughput
from bench.core.scenario import Scenario
from bench.locust.options import parse_load_steps
from bench.results.fingerprint import fingerprint_of
from bench.results.histograms import decode_histogram, encode_histogram, new_latency_histogram
from bench.results.window import measured_seconds

# The worker name of the local runner's own producer in the merged counts.
LOCAL_WORKER = "local"
NO_SEND = "no worker reported a send"
NO_ACK = "no worker reported an ack"


class WorkerAccounts:
    """What each worker (or the local runner) reported: counts, failed sequences, its service-time
    histogram, how far it has reported, its send and ack times; folded into the run's recorder as
    reports arrive."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        # Every worker's service time, whole run (Locust's own request count must equal its total).
        self.all_service_time = new_latency_histogram()

    def add(self, worker_id: str, report: Mapping[str, Any], measured: RunMeasurements) -> None:
        worker = self.by_id.get(worker_id)
        if worker is None:  # not setdefault: it would build a histogram for every report
            worker = self.by_id[worker_id] = {"producer": report["producer"], "acked": 0, "failed": 0, "sent": 0,
                                              "hdr_count": 0, "service_time": new_latency_histogram(),
                                              "failed_sequences": [], "through": -1, "final": False,
                                              "first_send_at": None, "last_send_at": None, "last_ack_at": None}
        recorder = measured.recorder
        for second_text, data in report["seconds"].items():
            second = max(0, int(second_text))
            recorder.add_producer_report(second, data["sent"], data["acked"], data["failed"], [], [], [])
            worker["acked"] += data["acked"]
            worker["failed"] += data["failed"]
            # Added bucket by bucket in C: re-recording the values one by one (hdrh's iterator
            # and record_value are pure Python) cost the master more than a worker's sending.
            histograms = {name: decode_histogram(data[name]) for name in ("service_time", "response_time", "send_delay")
                          if data[name]}
            for name, histogram in histograms.items():
                recorder.latency[name].add_histogram(second, histogram)
            if "service_time" in histograms:
                histogram = histograms["service_time"]
                worker["hdr_count"] += histogram.get_total_count()
                worker["service_time"].add(histogram)
                self.all_service_time.add(histogram)
        worker["sent"] = report["sent_total"]
        worker["failed_sequences"].extend(report["failed_sequences"])
        measured.add_acked_ranges(report["acked_offsets"])
        worker["final"] = report["final"]
        for key in ("first_send_at", "last_send_at", "last_ack_at"):
            if report.get(key) is not None:
                worker[key] = report[key]
        if report["through"] is not None:
            worker["through"] = report["through"]

    def reported_through(self) -> list[int]:
        """The last second each still-running worker has reported."""
        return [w["through"] for w in self.by_id.values() if not w["final"]]

    def deliveries(self) -> int:
        """Acks and failures reported so far by every worker: grows while deliveries still come."""
        return sum(w["acked"] + w["failed"] for w in self.by_id.values())

    def not_final(self) -> list[str]:
        return [worker_id for worker_id, w in self.by_id.items() if not w["final"]]

    def producer_accounts(self) -> list[ProducerAccount]:
        return [ProducerAccount(w["producer"], w["sent"], w["acked"], w["failed_sequences"]) for w in self.by_id.values()]

    def timing(self) -> tuple[dict[str, Any], dict[str, str]]:
        """When the run sent and was acked, from the workers' times: producing_s (first send ->
        last send), elapsed_s (first send -> last ack: the run's duration); a figure not measured
        is None, with the reason in the second dict."""
        first_send = min((w["first_send_at"] for w in self.by_id.values() if w["first_send_at"] is not None), default=None)
        last_send = max((w["last_send_at"] for w in self.by_id.values() if w["last_send_at"] is not None), default=None)
        last_ack = max((w["last_ack_at"] for w in self.by_id.values() if w["last_ack_at"] is not None), default=None)
        not_measured: dict[str, str] = {}
        producing_s = elapsed_s = None
        if first_send is None:
            not_measured = {"producing_s": NO_SEND, "elapsed_s": NO_SEND}
        else:
            producing_s = round(max(0.0, (last_send or first_send) - first_send), 3)
            if last_ack is None:
                not_measured = {"elapsed_s": NO_ACK}
            else:
                elapsed_s = round(max(0.0, last_ack - first_send), 3)
        return {"producing_s": producing_s, "elapsed_s": elapsed_s, "first_send_at": first_send,
                "last_ack_at": last_ack}, not_measured

    def section(self) -> dict[str, dict[str, Any]]:
        """Each worker's counts, send and ack times and own delivery histogram (whole run, warm-up
        included, as hdr_count): one slow worker shows, and the merged summary can be checked
        against the union."""
        keys = ("producer", "sent", "acked", "failed", "hdr_count", "first_send_at", "last_send_at", "last_ack_at")
        return {worker_id: {**{k: w[k] for k in keys}, "service_time_histogram": _encoded_or_none(w["service_time"])}
                for worker_id, w in self.by_id.items()}


def asked_users(options) -> int:
    """The users asked for: the largest --load-steps count, else -u."""
    steps = parse_load_steps(getattr(options, "load_steps", "") or "")
    return max(users for users, _ in steps) if steps else int(getattr(options, "num_users", None) or 1)


def asked_run_time_s(options) -> float | None:
    """How long the test was asked to run (-t, or the --load-steps total); None: until stopped."""
    steps = parse_load_steps(getattr(options, "load_steps", "") or "")
    if steps:
        return float(sum(seconds for _, seconds in steps))
    run_time = getattr(options, "run_time", None)
    return float(run_time) if run_time else None


def locust_scenario(scenario: Scenario, user_rate: float, users: int, run_time_s: float | None) -> dict[str, Any]:
    """The scenario as a Locust result records it: Locust's load is users x a per-user rate
    asked (settings, not a measured rate), so `rate` gives way to `user_rate` and `users`, and
    `duration_s` is the run time asked (null: until stopped)."""
    values = scenario.to_dict()
    values.pop("rate")
    return {**values, "user_rate": user_rate, "users": users, "duration_s": run_time_s}


def locust_result(run, ended_at: float, offset_deltas: tuple[dict[int, int] | None, str]) -> RunResult:
    """The test's result as the master (or local runner) writes it; run: the LocustRun.
    offset_deltas: per partition, the records the topic gained (None: unread, and why)."""
    per_partition = offset_deltas[0]
    offset_delta = (None if per_partition is None else sum(per_partition.values()), offset_deltas[1])
    totals = run.recorder.totals()
    audit = run.measured.audit(run.method, run.workers.producer_accounts())
    verdict = run_verdict(interrupted=False, failure=run.failure, failed=totals["failed"], lost=audit.lost)
    # From the first send to the last ack, as the workers measured them (as in `bench run`).
    timing, not_measured = run.workers.timing()
    duration_s = timing["elapsed_s"]
    options = run.environment.parsed_options
    scenario = locust_scenario(run.scenario, run.rate_per_user, asked_users(options), asked_run_time_s(options))
    stats = run.environment.runner.stats.total
    series = run.recorder.series()
    resources = ({"resources": run.resources.add_to(series, run.scenario.warmup_s)} if run.resources is not None
                 else {"resources_not_measured": "the test ended before it started"})
    hosts = {worker_id.rsplit("_", 1)[0] for worker_id in run.workers.by_id}
    warnings = clamped_warnings(run.recorder)
    warnings += [f"{name} not measured: {reason}" for name, reason in not_measured.items()]
    if audit.lost_examples:
        warnings.append(f"lost, first ones: {', '.join(audit.lost_examples)}")
    return RunResult(
        kind="locust", run_id=run.run_id.hex(), scenario=scenario, fingerprint=fingerprint_of(scenario),
        environment=run.machine, broker=broker_section(run.broker, run.topic_settings, run.topic_settings_unread),
        started_at=run.started_at, ended_at=ended_at, duration_s=duration_s,
        warmup_s=run.scenario.warmup_s, verdict=verdict, audit=audit.method,
        counts=run_counts(totals, failed=totals["failed"], audit=audit, tracker_ran=run.tracker is not None,
                          broker_offset_delta=offset_delta[0], offset_delta_reason=offset_delta[1]),
        throughput=run_throughput(series, run.scenario.warmup_s, run.scenario.mean_message_size(), acked=totals["acked"],
                                  producing_s=timing["producing_s"], elapsed_s=timing["elapsed_s"]),
        latency_us=latency_summaries(run.recorder, run.tracked, tracked=run.tracker is not None,
                                     sample_every=trace_sample_every(run.tracked)),
        series=series, warnings=warnings,
        same_host=hosts <= {socket.gethostname(), LOCAL_WORKER},
        sections={"partitions": partitions_section(
            acked=None, acked_unknown="the Locust workers report acks per second, not per partition",
            consumed=run.measured.partition_consumed.totals(), offset_delta=per_partition,
            lag_by_partition=series.get("lag_messages_by_partition") or {},
            window=measured_seconds(series.get("t_s") or [], run.scenario.warmup_s, series.get("sent")),
            offsets_unread=offset_deltas[1]) if run.tracker is not None else None,
            "locust": {
            "users": run.peak_users,
            "user_rate": run.rate_per_user,
            "first_send_at": timing["first_send_at"],
            "last_ack_at": timing["last_ack_at"],
            "request_count": stats.num_requests,
            "failure_count": stats.num_failures,
            "hdr_total_count": run.workers.all_service_time.get_total_count(),
            "workers": run.workers.section(),
            "tracker": run.tracker is not None,
        }, **resources})




def _encoded_or_none(histogram) -> str | None:
    return encode_histogram(histogram) if histogram.get_total_count() else None
