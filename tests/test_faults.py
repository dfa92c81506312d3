"""Broker faults: the injector itself, and runs that survive a killed or paused broker."""

from __future__ import annotations

import time

import pytest

from bench.broker import broker_answers
from bench.chaos import Fault, FaultInjector, check_schedule, longest_stall_s, parse_fault
from streamstore.errors import UsageError


@pytest.mark.parametrize("text, fault", [
    ("kill@20+5", Fault("kill", 20.0, 5.0)),
    ("pause@0.5+2.5", Fault("pause", 0.5, 2.5)),
])
def test_fault_text(text, fault):
    assert parse_fault(text) == fault
    assert parse_fault(str(fault)) == fault


@pytest.mark.parametrize("text", ["kill", "kill@20", "stop@20+5", "kill@-1+5", "kill@20+0", "pause@x+1"])
def test_bad_fault_text_is_one_line(text):
    with pytest.raises(UsageError, match=r"^--fault .*(expected KIND@AT\+FOR|must last more than 0 s)"):
        parse_fault(text)


def test_schedule_must_fit_the_run_and_not_overlap():
    check_schedule([parse_fault("kill@5+5"), parse_fault("pause@10+2")], duration_s=20)
    with pytest.raises(UsageError, match=r"^--fault pause@8\+2: overlaps --fault kill@5\+5$"):
        check_schedule([parse_fault("pause@8+2"), parse_fault("kill@5+5")], duration_s=20)
    with pytest.raises(UsageError, match=r"^--fault kill@20\+1: starts at or after the end of the 20 s run$"):
        check_schedule([parse_fault("kill@20+1")], duration_s=20)


@pytest.mark.parametrize("acked, stall", [
    ([0, 0, 5, 5, 0, 0, 0, 5, 0], 3),   # leading zeros are ramp-up, trailing ones the end
    ([None, 3, None, 3], 1),
    ([0, 0], 0),
    ([4, 4, 4], 0),
])
def test_longest_stall(acked, stall):
    assert longest_stall_s(acked) == stall


def test_pause_freezes_the_broker_and_resumes_it(embedded_broker):
    injector = FaultInjector(embedded_broker, [parse_fault("pause@0.2+3")]).start()
    time.sleep(1.0)
    assert not broker_answers(embedded_broker.bootstrap_servers, timeout_s=1.0)
    injector.join()
    assert broker_answers(embedded_broker.bootstrap_servers, timeout_s=10.0)
    assert [event["kind"] for event in injector.events] == ["broker-pause", "broker-resume"]
    pause, resume = injector.events
    assert 0.2 <= pause["t_s"] < 1.0 and 3.2 <= resume["t_s"] < 4.5


def test_stop_during_a_pause_resumes_the_broker_at_once(embedded_broker):
    injector = FaultInjector(embedded_broker, [parse_fault("pause@0+600")]).start()
    time.sleep(0.5)
    began = time.monotonic()
    injector.stop()
    assert time.monotonic() - began < 2
    assert broker_answers(embedded_broker.bootstrap_servers, timeout_s=10.0)


def test_kill_and_restart(embedded_broker):
    pid_before = embedded_broker.pid
    injector = FaultInjector(embedded_broker, [parse_fault("kill@0.2+1")]).start()
    injector.join()
    assert injector.error is None
    assert [event["kind"] for event in injector.events] == ["broker-kill", "broker-restart"]
    assert embedded_broker.pid not in (None, pid_before)
    assert broker_answers(embedded_broker.bootstrap_servers, timeout_s=10.0)
