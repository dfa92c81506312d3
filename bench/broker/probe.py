"""Is a Kafka broker answering at these addresses, and what does it say about itself? Used
before every run (and by the embedded broker while it starts), with the run's client settings
so a SASL/SSL cluster is asked the way it must be asked."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streamstore.config import admin_config
from streamstore.errors import RunFailed, UsageError


def _accepts_connections(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def parse_bootstrap_servers(bootstrap_servers: str) -> list[tuple[str, int]]:
    addresses = []
    for server in bootstrap_servers.split(","):
        server = server.strip()
        if "://" in server:
            server = server.split("://", 1)[1]
        host, separator, port_text = server.rpartition(":")
        if not separator or not host or not port_text.isdigit():
            raise UsageError(f"--bootstrap-servers {bootstrap_servers!r}: expected host:port[,host:port...]")
        addresses.append((host.strip("[]"), int(port_text)))
    return addresses


# Errors that mean the broker answered but refused these credentials or this TLS handshake:
# waiting longer will not help, and "no broker answers" would send the user the wrong way.
_CREDENTIAL_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL})


@dataclass(frozen=True)
class BrokerProblem:
    """Why no broker answered: refused is True when one answered but rejected the client."""
    reason: str
    refused: bool = False


def broker_problem(bootstrap_servers: str, timeout_s: float = 5.0,
                   client_settings: Mapping[str, object] | None = None) -> BrokerProblem | None:
    """None when a broker at the address answers a metadata request within timeout_s, else why not."""
    addresses = parse_bootstrap_servers(bootstrap_servers)
    # A refused TCP connect answers "no" in microseconds; librdkafka would retry until timeout.
    if not any(_accepts_connections(host, port, min(timeout_s, 2.0)) for host, port in addresses):
        return BrokerProblem("nothing accepts connections there")
    refusals: list[str] = []

    def note_refusal(error: KafkaError) -> None:
        if error.code() in _CREDENTIAL_ERRORS:
            refusals.append(error.str())

    # librdkafka logs every refused connection to stderr; the caller reports the outcome.
    admin = AdminClient(admin_config(bootstrap_servers, {**(client_settings or {}), "log_level": 0,
                                                         "error_cb": note_refusal}))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            return None
        except KafkaException:
            admin.poll(0)  # serves error_cb
            if refusals:
                return BrokerProblem(refusals[0], refused=True)
            if time.monotonic() >= deadline:
                return BrokerProblem("no answer to a metadata request")


def broker_answers(bootstrap_servers: str, timeout_s: float = 5.0,
                   client_settings: Mapping[str, object] | None = None) -> bool:
    """True when a broker at the address answers a metadata request within timeout_s."""
    return broker_problem(bootstrap_servers, timeout_s, client_settings) is None


# A group nobody joins: describing it makes the broker create __consumer_offsets.
_WARM_UP_GROUP = "streamstore-bench-coordinator-warm-up"


def wait_for_group_coordinator(bootstrap_servers: str, timeout_s: float,
                               client_settings: Mapping[str, object] | None = None) -> None:
    """Returns once a group coordinator answers (RunFailed after timeout_s).

    A fresh broker creates __consumer_offsets (50 partitions by default) when a client first
    looks for a group coordinator, and applies every later metadata change only after it: on a
    busy machine that took 12 s, in which a topic created by a run was not served and its first
    run measured the creation. Doing it while the broker starts keeps both out of runs.
    """
    admin = AdminClient(admin_config(bootstrap_servers, {**(client_settings or {}), "log_level": 0}))
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        future = admin.describe_consumer_groups([_WARM_UP_GROUP],
                                                request_timeout=max(1.0, min(5.0, deadline - time.monotonic())))
        try:
            future[_WARM_UP_GROUP].result()
            return
        except KafkaException as error:
            last_error = error.args[0].str() if error.args else str(error)
        time.sleep(0.2)
    raise RunFailed(f"no group coordinator answered at {bootstrap_servers} within {timeout_s:.0f} s: {last_error}")
