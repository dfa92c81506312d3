"""Free ports for brokers the harness starts on ports it chooses itself (and for the tests' brokers).

They are chosen below the kernel's ephemeral range (net.ipv4.ip_local_port_range). A port from
that range, which is what bind(0) returns, can be given to any outgoing connection on the machine
as its local port in the seconds before the JVM binds it; the node then dies with "Unable to
start acceptor" (seen in a test suite, where hundreds of client connections come and go).

A port chosen is also reserved, machine-wide, for a while: between the choice and the JVM binding
it, "nothing listens there" stays true, and another process (a test worker, a bench run, the
JMX exporter of another node) could choose it too. The reservation is a file created exclusively
in a shared folder, so only one process gets a port in that window.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
from pathlib import Path

from bench.broker.node_config import port_is_free
from streamstore.errors import RunFailed

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default ephemeral range, when the kernel does not say.
DEFAULT_EPHEMERAL_RANGE = (32768, 60999)
# Below the usual ephemeral range and above most well-known services' ports.
LOWEST_CHOSEN_PORT = 20000
_ATTEMPTS = 200
# Where the reservations live: one empty file a port, shared by every process on the machine.
RESERVATIONS = Path(tempfile.gettempdir()) / "streamstore-bench-ports"
# Longer than a node takes to bind its ports on a crowded machine (a JVM start under load).
RESERVATION_S = 180.0


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(field) for field in EPHEMERAL_RANGE_FILE.read_text().split())
        return low, high
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE


def chosen_port_span() -> tuple[int, int] | None:
    """The ports below the ephemeral range to choose from; None when there are too few."""
    high = ephemeral_range()[0] - 1
    return (LOWEST_CHOSEN_PORT, high) if high - LOWEST_CHOSEN_PORT >= 1000 else None


def _reserve(port: int) -> bool:
    """True when this process now holds the port's reservation: nobody held it, or theirs is
    older than RESERVATION_S."""
    RESERVATIONS.mkdir(parents=True, exist_ok=True)
    path = RESERVATIONS / str(port)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        return True
    except FileExistsError:
        pass
    try:
        if time.time() - path.stat().st_mtime < RESERVATION_S:
            return False
        # Of the processes that find it stale, only one can move it away.
        path.rename(path.with_name(f"{port}.stale.{os.getpid()}"))
    except OSError:
        return False
    path.with_name(f"{port}.stale.{os.getpid()}").unlink(missing_ok=True)
    return _reserve(port)


def _reserve_all(ports: list[int]) -> bool:
    """Reserve every one of ports, or none (the ones taken are given back)."""
    taken: list[int] = []
    for port in ports:
        if not _reserve(port):
            for given_back in taken:
                (RESERVATIONS / str(given_back)).unlink(missing_ok=True)
            return False
        taken.append(port)
    return True


def _ephemeral_ports(count: int) -> list[int]:
    """Fallback where nothing lies below the ephemeral range: what the OS hands out now."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def free_ports(count: int, consecutive: bool = False, span: tuple[int, int] | None = None) -> list[int]:
    """count ports nothing listens on now, outside the ephemeral range (consecutive ones when
    asked: a cluster's layout). span: (lowest, highest) to choose from instead of the default."""
    span = span or chosen_port_span()
    if span is None:
        if consecutive:
            raise RunFailed(f"no room below the ephemeral port range {ephemeral_range()} for {count} consecutive ports")
        return _ephemeral_ports(count)
    low, high = span
    for _ in range(_ATTEMPTS):
        if consecutive:
            base = random.randrange(low, high - count + 2)
            ports = list(range(base, base + count))
        else:
            ports = random.sample(range(low, high + 1), count)
        if all(port_is_free(port) for port in ports) and _reserve_all(ports):
            return ports
    raise RunFailed(f"no {count} free ports between {low} and {high} after {_ATTEMPTS} tries")
