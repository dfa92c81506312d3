"""Choosing ports for brokers: two processes never get the same port while its node starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.broker import ports


@pytest.fixture
def reservations(tmp_path, monkeypatch):
    folder = tmp_path / "reservations"
    monkeypatch.setattr(ports, "RESERVATIONS", folder)
    return folder


def test_a_port_once_chosen_is_not_chosen_again_while_reserved(reservations, monkeypatch):
    # A span of 8 ports: 8 single choices must be 8 different ports, and the 9th finds none.
    monkeypatch.setattr(ports, "_ATTEMPTS", 400)
    span = _free_span(8)
    chosen = [ports.free_ports(1, span=span)[0] for _ in range(8)]
    assert sorted(chosen) == list(range(span[0], span[1] + 1))
    with pytest.raises(ports.RunFailed, match="no 1 free ports"):
        ports.free_ports(1, span=span)


def test_another_process_does_not_get_a_port_this_one_reserved(reservations):
    span = _free_span(2)
    mine = ports.free_ports(1, span=span)[0]
    code = (
        "import sys; from pathlib import Path; from bench.broker import ports;"
        f"ports.RESERVATIONS = Path({str(reservations)!r});"
        f"print(ports.free_ports(1, span={span!r})[0])"
    )
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(theirs.stdout) != mine
    assert {int(theirs.stdout), mine} == {span[0], span[1]}


def test_a_stale_reservation_is_taken_over_and_a_failed_choice_gives_back_its_ports(reservations, monkeypatch):
    span = _free_span(2)
    reservations.mkdir()
    old = reservations / str(span[0])
    old.touch()
    stale = time.time() - ports.RESERVATION_S - 1
    os.utime(old, (stale, stale))
    (reservations / str(span[1])).touch()  # fresh: somebody else's
    monkeypatch.setattr(ports, "_ATTEMPTS", 50)
    with pytest.raises(ports.RunFailed):
        ports.free_ports(2, consecutive=True, span=span)
    # The stale one was taken over and then given back when its neighbour could not be had.
    assert not old.exists()
    assert ports.free_ports(1, span=span) == [span[0]]


def _free_span(size: int) -> tuple[int, int]:
    """size consecutive ports nothing listens on, below the ephemeral range."""
    low, high = ports.chosen_port_span() or (20000, 30000)
    for base in range(low + 5000, high - size, 97):
        if all(ports.port_is_free(port) for port in range(base, base + size)):
            return base, base + size - 1
    raise AssertionError("no free span")
