"""The result file's schema: its version history, the kinds of result, and the upgrades that let
this harness read files written by earlier versions. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from bench.results.window import lag_summary, throughput_summary

# Schema versions of result.json. Bump on any change a reader must know about, and say what
# changed here; load_result refuses versions it does not list.
#   1  first version: scenario, fingerprint, environment, broker, counts, latency_us summaries
#      with encoded cumulative histograms, per-second series, events, warnings, large_message.
#   2  one name per metric: large-message rows say service_time_ms (was produce_latency_ms, also
#      under samples) and carry their counts as the core writes them (counts.broker_offset_delta,
#      was the row's broker_messages; counts_not_measured, was counts_note); the run folder's interval logs
#      are service_time.hlog and end_to_end.hlog (were delivery.hlog and e2e.hlog).
#      load_result reads version 1 files by renaming those fields in memory.
#   3  large-message: each row carries `java` (Kafka's EndToEndLatency at the same size and codec,
#      or null without --peer java), the section `peer` (which tool, null without --peer) and the
#      scenario `peer`. load_result reads versions 1 and 2 with those as null.
#   4  one window for every headline figure (bench/results/metrics.py MEASURED): `throughput`
#      holds acked_per_s, acked_mb_s and consumed_per_s over the measured window, with
#      measured_s; the old acked / elapsed figure is elapsed_acked_per_s. A new `lag` section
#      (max_messages, max_time_ms over the window). Latency summaries cover the window too (were
#      every second after warm-up, drain included). Large-message rows say transfer_rate_mb_s
#      (was throughput_mb_s: a per-message rate, not a throughput). load_result reads version 3
#      files with throughput and lag recomputed from their series and a warning that their
#      latency summaries include the drain.
#      Also in version 4, the environment measured once at run start, with no holes:
#      environment.harness_version (the installed package), harness_commit only from a checkout,
#      environment.not_measured and broker.not_measured (null field -> reason); broker.version
#      for every broker with broker.version_source ("embedded broker jar" |
#      "inter.broker.protocol.version"); broker.settings null when they could not be read.
#      Locust: scenario.user_rate, .users and .duration_s (asked) replace the nominal
#      scenario.rate; producing_s and elapsed_s from the workers' first send, last send and last
#      ack. load_result gives a file without these fields (versions 1-3, and version 4 files
#      written before them) the version source inferred (only the embedded broker's version was
#      recorded then) and a reason for every null.
#   5  per-partition figures and transactions: a `partitions` section (per partition acked,
#      consumed, broker_offset_delta, lag_max, with transactions committed, aborted and markers;
#      `skew`, the busiest partition over the mean; `not_measured`), a `transactions` section
#      (null without transactions) and latency_us.commit (the commit_transaction() call).
#      scenario.message_size and scenario.keys may be distribution tables.
#      Also in version 5, resources and bottleneck verdicts: per-second host_cpu_percent and, per
#      process (producers, tracker, coordinator, embedded broker nodes), cpu_percent_by_process,
#      main_thread_cpu_percent_by_process and rss_mb_by_process in `series`; a `resources`
#      section (processes with role, pids and figures over the measured window, a summary per
#      role, not_measured) or null with `resources_not_measured`; `verdicts`, the list of
#      bottleneck verdicts (bench/analysis/bottlenecks.py). load_result reads version 4 files with
#      partitions and transactions null, and resources and verdicts null with the reason "not
#      recorded".
#      Also in version 5, the kind "capacity" (capacity.json of `bench capacity`: the search's
#      settings, one row per step, the answer), the kind "ab" (bench ab's ab.json, rounds of two
#      sides) and environment.load_average_1m (the 1-minute load at run start); an older reader
#      refuses an unknown kind in one line and reads the new field as absent.
#      Also in version 5, the broker's own metrics (its JMX exporter or --broker-metrics-url):
#      broker_*_by_node series and resources.broker_metrics (null with
#      resources.broker_metrics_not_measured); absent in older files, read as not recorded.
#      Also in version 5, consumer events: a `rebalances` section (one entry per add-consumer,
#      kill-consumer, stop-consumer: pauses, lag before and at its peak, time to recover,
#      duplicates; the group's lag per second) and `killed` on a groups[].consumers entry; the
#      scenario fields group_protocol, session_timeout_ms, heartbeat_interval_ms. Absent in older
#      files: no consumer events, the classic protocol.
#      Also in version 5, `backlog` (null without the scenario field backlog): the build, drain
#      rate, time to steady lag and end-to-end latency while catching up (bench/core/backlog.py);
#      such a run's top-level warmup_s counts from t0 to the end of its warm-up after the
#      consumers' start. Absent in older files, read as no backlog.
#      Also in version 5, host_steal_percent in `series` (CPU time the hypervisor gave other
#      guests), resources.summary.host.steal_percent_mean/_max and the verdict kind host-steal.
#      Absent in older files: steal not recorded.
SCHEMA_VERSION = 5
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2, 3, 4, 5})

RESULT_KINDS = frozenset({"run", "large-message", "locust", "capacity", "ab"})


def _renamed(mapping: Any, old: str, new: str) -> None:
    if isinstance(mapping, dict) and old in mapping and new not in mapping:
        mapping[new] = mapping.pop(old)


def upgrade_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A version 1 result in version 2's names (see SCHEMA_VERSION); the values are unchanged.
    load_result then takes it on to the current version."""
    for row in (document.get("large_message") or {}).get("rows") or []:
        _renamed(row, "produce_latency_ms", "service_time_ms")
        _renamed(row.get("samples"), "produce_latency_ms", "service_time_ms")
        if isinstance(row.get("counts"), dict) and "broker_messages" in row:
            row["counts"]["broker_offset_delta"] = row.pop("broker_messages")
        if "counts_note" in row:
            # Version 1 kept one free-text note for all null counts of the row.
            note = row.pop("counts_note")
            row["counts_not_measured"] = {"counts": note} if note else {}
        row.setdefault("counts_not_measured", {})
    document["schema_version"] = 2
    return document


def upgrade_v2(document: dict[str, Any]) -> dict[str, Any]:
    """A version 2 result in version 3's shape: no peer was measured, so its fields are null."""
    large = document.get("large_message")
    if isinstance(large, dict):
        large.setdefault("peer", None)
        for row in large.get("rows") or []:
            row.setdefault("java", None)
        if isinstance(document.get("scenario"), dict):
            document["scenario"].setdefault("peer", None)
    document["schema_version"] = 3
    return document


# What an environment field of an older file was, when it was null there.
_ENVIRONMENT_FIELDS = ("host", "cpu_model", "cpu_count", "os", "python", "confluent_kafka", "librdkafka",
                       "harness_version", "harness_commit")  # not load_average_1m: absent stays absent
EMBEDDED_JAR = "embedded broker jar"


def measured_environment(document: dict[str, Any], written_as: int) -> dict[str, Any]:
    """A result written before the environment and broker were measured with reasons (no
    broker.version_source) in that shape. Those files recorded a broker version only for the
    embedded broker (so its source is the jar) and no harness version; every null gets the reason
    "not recorded", so comparing with such a file says what is missing."""
    written = f"not recorded (a schema version {written_as} file)"
    environment = document.get("environment")
    if isinstance(environment, dict):
        environment.setdefault("harness_version", None)
        not_measured = environment.setdefault("not_measured", {})
        for key in _ENVIRONMENT_FIELDS:
            if environment.get(key) is None:
                not_measured.setdefault(key, written)
    broker = document.get("broker")
    if isinstance(broker, dict):
        not_measured = broker.setdefault("not_measured", {})
        if broker.get("version") is not None:
            broker.setdefault("version_source", EMBEDDED_JAR)
        else:
            broker.setdefault("version_source", None)
            not_measured.setdefault("version", f"{written}; that harness measured only the embedded broker's version")
    scenario = document.get("scenario")
    locust = document.get("locust")
    if document.get("kind") == "locust" and isinstance(scenario, dict) and isinstance(locust, dict):
        # The old `rate` was user_rate x users, not a measured rate.
        scenario.pop("rate", None)
        scenario.setdefault("user_rate", locust.get("user_rate"))
        scenario.setdefault("users", locust.get("users"))
    return document


# Said in an upgraded version 3 result: its latency summaries were taken over another window.
V3_LATENCY_WINDOW = "latency summaries of this schema version 3 file cover the drain too (version 4: the measured window)"


def upgrade_v3(document: dict[str, Any]) -> dict[str, Any]:
    """A version 3 result in version 4's shape: throughput and lag over the measured window,
    recomputed from the stored per-second series; large-message rows renamed."""
    series = document.get("series") or {}
    old = document.get("throughput") if isinstance(document.get("throughput"), dict) else {}
    if series and "measured_s" not in old:
        scenario = document.get("scenario") or {}
        size = scenario.get("message_size") if isinstance(scenario.get("message_size"), int) else None
        document["throughput"] = {**throughput_summary(series, document.get("warmup_s") or 0, size),
                                  "producing_s": old.get("producing_s"), "elapsed_s": old.get("elapsed_s"),
                                  "elapsed_acked_per_s": old.get("acked_per_s")}
    if series and "lag" not in document:
        document["lag"] = lag_summary(series, document.get("warmup_s") or 0)
    if document.get("latency_us"):
        document["warnings"] = [*(document.get("warnings") or []), V3_LATENCY_WINDOW]
    for row in (document.get("large_message") or {}).get("rows") or []:
        _renamed(row, "throughput_mb_s", "transfer_rate_mb_s")
        _renamed(row.get("java"), "throughput_mb_s", "transfer_rate_mb_s")
    document["schema_version"] = 4
    return document


def upgrade_v4(document: dict[str, Any], written_as: int = 4) -> dict[str, Any]:
    """A version 4 result in version 5's shape. No per-partition figures or transactions were kept,
    so both sections are null (never an empty table that would read as "no partitions");
    resources and verdicts were not recorded."""
    document.setdefault("partitions", None)
    document.setdefault("transactions", None)
    reason = f"not recorded (a schema version {written_as} file)"
    if "resources" not in document:
        document["resources"], document["resources_not_measured"] = None, reason
    if "verdicts" not in document:
        document["verdicts"], document["verdicts_not_measured"] = None, reason
    document["schema_version"] = 5
    return document


def upgrade(document: dict[str, Any]) -> dict[str, Any]:
    """A result of any supported version in the current version's shape."""
    written_as = document["schema_version"]
    if document["schema_version"] == 1:
        document = upgrade_v1(document)
    if document["schema_version"] == 2:
        document = upgrade_v2(document)
    if document["schema_version"] == 3:
        document = upgrade_v3(document)
    if not isinstance(document.get("broker"), dict) or "version_source" not in document["broker"]:
        document = measured_environment(document, written_as)
    if document["schema_version"] == 4:
        document = upgrade_v4(document, written_as)
    return document


