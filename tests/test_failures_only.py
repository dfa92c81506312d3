"""Failures-only delivery reports (`delivery_reports = "failures"`): the pure parts.

The producer counts accepted and failed messages, the acked count follows after the flush, the
counts audit compares it with the distinct offsets the tracker read, and librdkafka's own
per-broker latencies stand in for the per-message service time. Against the real broker:
tests/test_delivery.py, tests/test_run.py and tests/test_loss.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench.core.audit import (
    OFFSET_COUNTS,
    OFFSETS,
    SEQUENCES,
    ProducerAccount,
    TrackerAccount,
    audit_method,
    audit_offset_counts,
    evaluate_audit,
)
from bench.core.client_stats import broker_windows, client_latency_warnings, summarize_client_latency
from bench.core.clients import scenario_producer_config
from bench.core.scenario import Scenario
from bench.results.metrics import METRICS
from streamstore.errors import UsageError


def _scenario(**fields) -> Scenario:
    return Scenario.from_mapping({"name": "f", "topic": "t", "duration_s": 5, "warmup_s": 1, **fields})


def test_the_mode_defaults_by_rate_and_is_validated():
    assert _scenario(rate=0).delivery_reports == "failures"
    assert _scenario(rate=100).delivery_reports == "all"
    assert _scenario(phases=[{"duration_s": 2, "rate": 10}, {"duration_s": 3, "rate": 20}]).delivery_reports == "all"
    assert _scenario(rate=100, delivery_reports="failures").delivery_reports == "failures"
    assert _scenario(rate=0, delivery_reports="all").delivery_reports == "all"
    with pytest.raises(UsageError, match=r"^delivery_reports: 'some' is not allowed \(allowed: all, failures\)$"):
        _scenario(delivery_reports="some")
    with pytest.raises(UsageError, match="'delivery.report.only.error' is set by the scenario field 'delivery_reports'"):
        _scenario(producer_config={"delivery.report.only.error": True})
    # The mode that ran is in the scenario a result stores, and reads back the same.
    failures = _scenario(rate=0)
    assert Scenario.from_mapping(failures.to_dict()) == failures
    assert scenario_producer_config(failures, "127.0.0.1:1")["delivery.report.only.error"] is True
    assert scenario_producer_config(_scenario(rate=10), "127.0.0.1:1")["delivery.report.only.error"] is False


def test_the_mode_is_in_the_fingerprint_and_all_keeps_the_old_one():
    every = _scenario(rate=0, delivery_reports="all")
    failures = dataclasses.replace(every, delivery_reports="failures")
    assert every.fingerprint() != failures.fingerprint()
    from bench.results.fingerprint import fingerprint_of
    old = {key: value for key, value in every.to_dict().items() if key != "delivery_reports"}
    assert fingerprint_of(old) == every.fingerprint()  # a baseline from before the field still matches


def test_audit_method_by_mode():
    assert audit_method(_scenario(rate=0, delivery_reports="all")) == OFFSETS
    assert audit_method(_scenario(rate=0)) == OFFSET_COUNTS
    assert audit_method(_scenario(rate=0, acks="0")) == SEQUENCES
    assert audit_method(_scenario(rate=10, delivery_reports="failures")) == SEQUENCES


@pytest.mark.parametrize("acked, consumed, twice, timed_out, expected", [
    (100, {0: [(0, 100)]}, 0, 0, (0, 0)),
    (100, {0: [(30, 100)]}, 0, 0, (30, 0)),                      # the first 30 deleted before being read
    (100, {0: [(0, 60)], 1: [(0, 20)]}, 0, 0, (20, 0)),
    (100, {0: [(0, 102)]}, 1, 0, (0, 3)),                        # two extra records, one offset read twice
    (100, {0: [(0, 102)]}, 0, 2, (0, 0)),                        # two timed out: possibly persisted, not duplicates
    (100, {}, 0, 0, (100, 0)),
])
def test_counts_audit(acked, consumed, twice, timed_out, expected):
    assert audit_offset_counts(acked, consumed, twice, timed_out) == expected


def test_counts_audit_takes_acked_and_timeouts_from_every_producer():
    producers = [ProducerAccount(0, 60, 55, (), timed_out=5), ProducerAccount(1, 50, 50)]
    tracker = TrackerAccount(consumed_offsets={0: [(0, 113)]})
    outcome = evaluate_audit(OFFSET_COUNTS, producers, tracker)
    assert (outcome.method, outcome.lost, outcome.duplicated) == (OFFSET_COUNTS, 0, 3)
    assert evaluate_audit(OFFSET_COUNTS, producers, TrackerAccount(consumed_offsets={0: [(0, 100)]})).lost == 5


def _window(cnt, avg, p50, p99, high, outofrange=0):
    return {"min": 1, "max": high, "avg": avg, "sum": avg * cnt, "cnt": cnt, "stddev": 1, "hdrsize": 1, "p50": p50,
            "p75": p50, "p90": p99, "p95": p99, "p99": p99, "p99_99": high, "outofrange": outofrange}


def test_client_latency_from_librdkafka_statistics():
    idle = _window(0, 0, 0, 0, 0)
    first = {"brokers": {"127.0.0.1:9092/1": {"int_latency": _window(10, 100, 90, 300, 400), "rtt": _window(2, 2000, 1900, 2500, 2600)},
                         "127.0.0.1:9092/bootstrap": {"int_latency": idle, "rtt": idle}}}
    second = {"brokers": {"127.0.0.1:9092/1": {"int_latency": _window(30, 200, 150, 500, 150_000, 3), "rtt": idle}}}
    entries = broker_windows(json.loads(json.dumps(first))) + broker_windows(second)
    assert [entry["broker"] for entry in entries] == ["127.0.0.1:9092/1"] * 2  # the idle bootstrap entry is no figure
    summary = summarize_client_latency(entries)
    assert summary["int_latency"] == {"avg": 175.0, "p50": 150, "p99": 500, "max": 150_000, "samples": 40, "intervals": 2,
                                      "intervals_out_of_range": 1, "range_us": 100_000}
    assert summary["rtt"]["avg"] == 2000.0 and summary["rtt"]["intervals"] == 1
    assert summarize_client_latency([]) == {"int_latency": None, "rtt": None}
    # A null window says why.
    assert [w.split(",")[0] for w in client_latency_warnings(summarize_client_latency([]))] == [
        "int_latency: null", "rtt: null"]
    warnings = client_latency_warnings(summary)
    assert len(warnings) == 1 and warnings[0].startswith("int_latency: 1 of 2 intervals")
    # The metric table reads them where the result keeps them.
    result = {"client_latency_us": summary}
    assert METRICS["int_latency_p99"].read(result) == 500 and METRICS["rtt_max"].read(result) == 2600
    assert METRICS["int_latency_p99"].label == "librdkafka queue latency (int_latency) p99"
    assert METRICS["int_latency_avg"].read({"client_latency_us": {"int_latency": None}}) is None
