"""The one --check syntax (bench/analysis/thresholds.py): both forms, old spellings, bad text. Pure."""

from __future__ import annotations

import pytest

from bench.analysis.thresholds import (
    Check,
    Limit,
    deprecation_lines,
    evaluate_limits,
    parse_check,
    parse_checks,
)
from bench.results.metrics import LATENCY_FLOOR_US
from streamstore.errors import UsageError

RESULT = {"latency_us": {"service_time": {"p99": 60_000}, "end_to_end": {"p99_9": 800}},
          "counts": {"failed": 0, "lost": None}, "warmup_s": 0, "throughput": {"acked_per_s": 20.0},
          "series": {"t_s": [1, 2, 3], "sent": [20, 20, 0], "acked": [20, 20, 0]}}


def test_relative_forms():
    check = parse_check("service_time_p99:+25%")
    assert isinstance(check, Check)
    assert (check.metric.name, check.threshold, check.floor) == ("service_time_p99", 0.25, LATENCY_FLOOR_US)
    assert parse_check("service_time_p99:25%:2ms").floor == 2_000
    assert parse_check("end_to_end_max:+100%:500us").floor == 500
    assert parse_check("throughput:-10%").threshold == pytest.approx(0.10)
    assert parse_check("lag_max:+50%:1000").floor == 1000


def test_absolute_forms_and_units():
    limits = parse_checks(["service_time_p99<50ms, end_to_end_p99_9<=900us", "failed<=0,throughput>=10"])
    assert [(c.metric.name, c.compare, c.limit) for c in limits] == [
        ("service_time_p99", "<", 50_000), ("end_to_end_p99_9", "<=", 900), ("failed", "<=", 0), ("throughput", ">=", 10)]
    assert all(isinstance(c, Limit) and c.new_spelling is None for c in limits)
    assert deprecation_lines(limits) == []


def test_old_locust_spellings_parse_to_the_same_limit_with_a_deprecation_line():
    old = parse_checks("p99_delivery_ms<50,p99_9_e2e_us<=900,delivered_per_s>=10")
    new = parse_checks("service_time_p99<50ms,end_to_end_p99_9<=900us,throughput>=10")
    assert [(c.metric.name, c.compare, c.limit) for c in old] == [(c.metric.name, c.compare, c.limit) for c in new]
    assert deprecation_lines(old) == [
        "--check 'p99_delivery_ms<50' is an old spelling; write 'service_time_p99<50ms'",
        "--check 'p99_9_e2e_us<=900' is an old spelling; write 'end_to_end_p99_9<=900us'",
        "--check 'delivered_per_s>=10' is an old spelling; write 'throughput>=10'",
    ]


def test_limits_on_a_result():
    outcomes = evaluate_limits(parse_checks("service_time_p99<50ms,failed<=0,throughput>=10,lost<=0"), RESULT)
    assert [o.met for o in outcomes] == [False, True, True, False]
    # 60 ms breaks its limit; 20 msg/s over the measured seconds passes; lost was not measured.
    assert outcomes[0].describe() == "service_time_p99<50ms: measured 60 ms"
    assert outcomes[3].describe() == "lost<=0: no value measured"


@pytest.mark.parametrize("text, message", [
    ("service_time_p99", "expected METRIC<LIMIT or METRIC:\\+PERCENT%"),
    ("latency:+10%", "unknown metric 'latency'"),
    ("latency<3ms", "unknown metric 'latency'"),
    ("throughput:+10%", "throughput gets worse when it goes down; write throughput:-10%"),
    ("service_time_p99:-10%", "gets worse when it goes up"),
    ("throughput:-10%:5ms", "floor must be a number in msg/s"),
    ("service_time_p99<50", "a latency limit needs a unit"),
    ("lost<1ms", "lost is in messages; write the number without a unit"),
    ("lost:+10%", "lost has no per-second series"),
    ("p99_delivery_ms=5", "expected METRIC<LIMIT"),
])
def test_bad_text_is_one_clear_error(text, message):
    with pytest.raises(UsageError, match=message):
        parse_check(text)
