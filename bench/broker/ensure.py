"""Which broker a command runs against: what answers at --bootstrap-servers, or the embedded
broker started for the command (and stopped after it unless kept)."""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.broker.cluster import EmbeddedCluster
from bench.broker.embedded import DEFAULT_KAFKA_VERSION, REPORTED_BROKER_SETTING_NAMES, EmbeddedBroker
from bench.broker.locate import answering_embedded, find_embedded, recorded
from bench.broker.probe import broker_answers, broker_problem, parse_bootstrap_servers
from streamstore.admin import broker_configs, connect_admin
from streamstore.errors import RunFailed, StreamStoreError, UsageError

BROKER_MODES = ("auto", "external", "embedded")
# Room a broker needs beyond the records themselves (index files, segment rolls, its own logs):
# Kafka stops a broker whose only log dir fails, which is what a full disk does.
DISK_MARGIN_BYTES = 1_000_000_000


def room_problem(free_bytes: int, planned_bytes: int | None, where: str) -> str | None:
    """Pure: why a load that writes planned_bytes (None: unknown, flat out) would fill the disk
    with free_bytes left under `where`; None when it fits."""
    needed = (planned_bytes or 0) + DISK_MARGIN_BYTES
    if free_bytes >= needed:
        return None
    if planned_bytes is None:
        return (f"only {free_bytes / 1e9:.1f} GB free under {where}: the embedded broker stops when its disk "
                f"fills (keep at least {DISK_MARGIN_BYTES / 1e9:g} GB free)")
    return (f"this run writes about {planned_bytes / 1e9:,.1f} GB to the embedded broker's log but only "
            f"{free_bytes / 1e9:,.1f} GB is free under {where} (the broker stops when its disk fills): "
            "shorten the run, lower the rate or the message size, or free space")


@dataclass
class BrokerInUse:
    """The broker a command runs against, and what its result metadata says about it."""

    bootstrap_servers: str
    # True when this command started the embedded broker (and so stops it at the end).
    started_here: bool
    # The embedded cluster (the single broker as a 1-node one) when it is the one in use (started
    # here or before), else None.
    embedded: EmbeddedCluster | None = None
    settings: dict[str, str] = field(default_factory=dict)
    # The broker's version as measured when the command started (`measure_broker`): the
    # embedded broker's exact release, or what another broker tells a client; how it was
    # measured; and, when it could not be, why (field name -> reason).
    measured_version: str | None = None
    version_source: str | None = None
    not_measured: dict[str, str] = field(default_factory=dict)
    # The embedded broker, whether this command may act on it (`embedded`) or only recognised it
    # (started elsewhere with its state in another dir).
    recognised_embedded: bool = False
    # The embedded broker or cluster found at the address, also one only recognised: its
    # processes are watched (resources each second, read-only), never acted on.
    observed_embedded: EmbeddedCluster | None = None
    # A Prometheus endpoint with the broker's own metrics the user gave (--broker-metrics-url);
    # None: the embedded nodes' exporters, when there are any.
    metrics_url: str | None = None

    @property
    def version(self) -> str | None:
        """The exact Kafka release when known (the embedded broker's, also one only recognised), else None."""
        if self.version_source == EMBEDDED_JAR:
            return self.measured_version
        return self.embedded.version if self.embedded else None

    def section(self, topic_settings: Mapping[str, str] | None) -> dict[str, Any]:
        """The result's `broker`: where it answered, its version and how that was measured,
        whether it was the embedded one, and the broker and topic settings that shape the figures."""
        settings = None if "settings" in self.not_measured else dict(self.settings)
        return {"bootstrap_servers": self.bootstrap_servers, "version": self.measured_version,
                "version_source": self.version_source,
                "embedded": self.embedded is not None or self.recognised_embedded,
                "settings": settings, "topic_settings": dict(topic_settings) if topic_settings else {},
                "not_measured": dict(self.not_measured)}

    def check_room(self, planned_bytes: int | None) -> None:
        """UsageError when the load would fill the disk under the embedded broker's log (every
        node of an embedded cluster shares it; planned_bytes counts every replica). A broker
        elsewhere is not checked: its disk is not visible from here."""
        if self.embedded is None:
            return
        problem = room_problem(shutil.disk_usage(self.embedded.state_dir).free, planned_bytes, str(self.embedded.state_dir))
        if problem is not None:
            raise UsageError(problem)

    def describe(self, purpose: str) -> str:
        """`127.0.0.1:9092 (embedded, started for this run, Kafka 3.8.1)`: where a command runs and
        whether it started that broker itself (then it also stops it). purpose: run, sweep ..."""
        embedded = self.embedded is not None or self.recognised_embedded
        origin = f"embedded, started for this {purpose}" if self.started_here else "embedded" if embedded else "external"
        version = f", Kafka {self.measured_version}" if self.measured_version else ""
        return f"{self.bootstrap_servers} ({origin}{version})"


def _local_embedded_broker(bootstrap_servers: str, state_dir: Path | str | None, kafka_version: str) -> EmbeddedBroker:
    addresses = parse_bootstrap_servers(bootstrap_servers)
    host, port = addresses[0]
    if len(addresses) > 1 and all(host in ("localhost", "127.0.0.1") for host, _ in addresses):
        raise UsageError(
            f"nothing answers at {bootstrap_servers}, and a command starts no embedded cluster: "
            f"start one with python -m bench broker start --nodes {len(addresses)} --port {port}"
        )
    if len(addresses) != 1 or host not in ("localhost", "127.0.0.1"):
        raise UsageError(
            f"no embedded broker can run at {bootstrap_servers}: it listens on localhost/127.0.0.1 only "
            "(use --broker external for a remote broker)"
        )
    return EmbeddedBroker(port=port, state_dir=state_dir, kafka_version=kafka_version)


@contextlib.contextmanager
def ensure_broker(
    bootstrap_servers: str,
    mode: str = "auto",
    keep: bool = False,
    state_dir: Path | str | None = None,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    external_timeout_s: float = 15.0,
    client_settings: Mapping[str, object] | None = None,
    announce: Callable[[str], None] | None = None,
    metrics_url: str | None = None,
) -> Iterator[BrokerInUse]:
    """Makes sure a broker answers at bootstrap_servers for the duration of the block.

    auto: use whatever answers; if nothing does and the address is local, start the embedded
    broker. external: a broker must already answer (RunFailed otherwise). embedded: the
    embedded broker, started if needed. A broker started here is stopped at exit unless keep.
    client_settings (security settings) are used for every request to the broker. announce,
    when given, is told when the embedded broker is started and stopped here: a broker that
    appears and goes without a word leaves the user wondering what answered, or what the
    seconds of start-up were. metrics_url: where the broker's own metrics are (--broker-metrics-url).
    """
    answers = functools.partial(broker_answers, bootstrap_servers, client_settings=client_settings)
    if mode not in BROKER_MODES:
        raise UsageError(f"--broker {mode!r}: expected one of {', '.join(BROKER_MODES)}")
    embedded: EmbeddedCluster | None = None
    started_here = False
    problem = None
    if mode != "embedded":
        began = time.monotonic()
        problem = broker_problem(bootstrap_servers, external_timeout_s if mode == "external" else 5.0, client_settings)
        if problem is not None and problem.refused:
            raise RunFailed(f"Kafka broker at {bootstrap_servers} refused the client: {problem.reason}")
    if mode == "external" or (mode == "auto" and problem is None):
        if problem is not None:
            # The wait as it was: a refused connection answers at once, a silent address only
            # after the whole timeout; "waited 15 s" printed after one second misleads.
            waited = time.monotonic() - began
            raise RunFailed(f"no Kafka broker answers at {bootstrap_servers}: {problem.reason}"
                            + (f" (waited {waited:.0f} s)" if waited >= 1 else ""))
        # The embedded broker or cluster answering there, from its state (or --state-dir's).
        found = find_embedded(bootstrap_servers, state_dir, running=True)
        embedded = found if found is not None and found.is_running() else None
    else:
        embedded = EmbeddedCluster.of_node(_local_embedded_broker(bootstrap_servers, state_dir, kafka_version))
        if not embedded.is_running() and answers(timeout_s=2.0):
            raise UsageError(
                f"--broker embedded: a broker that is not the embedded one already answers at {bootstrap_servers}"
            )
        if not embedded.is_running() and announce:
            reason = "nothing answers there" if mode == "auto" else "--broker embedded"
            announce(f"starting the embedded Kafka broker at {bootstrap_servers} ({reason}; state in {embedded.state_dir})")
        started_here = embedded.start()
    try:
        broker = measure_broker(bootstrap_servers, client_settings, embedded, started_here)
        broker.metrics_url = metrics_url
        yield broker
    finally:
        if started_here and not keep:
            embedded.stop()
            if announce:
                announce(f"stopped the embedded Kafka broker at {bootstrap_servers}, which this command started "
                         "(--keep-broker leaves it running)")


# How a broker's version was measured (the result's broker.version_source).
EMBEDDED_JAR = "embedded broker jar"
PROTOCOL_VERSION_SETTING = "inter.broker.protocol.version"


def measure_broker(bootstrap_servers: str, client_settings: Mapping[str, object] | None = None,
                   embedded: EmbeddedCluster | None = None, started_here: bool = False) -> BrokerInUse:
    """What the broker at bootstrap_servers is, measured now (at run start): its settings, whether
    it is the embedded broker, and its version with the way it was measured. One started before
    with its state elsewhere (`bench broker start --state-dir /tmp/x`, a test's) is recognised
    from its process (`answering_embedded`) and recorded as embedded, with its release; it is
    still not acted on unasked (`embedded` stays None: no fault, no disk check).

    The embedded broker knows its exact release (the jar it runs). Another broker is asked for
    `inter.broker.protocol.version` (Kafka 3.x answers its release's protocol, e.g. "3.8-IV0";
    Kafka 4.0 removed the setting): that one is the version, and says so in version_source.
    """
    broker = BrokerInUse(bootstrap_servers, started_here, embedded)
    try:
        configs = broker_configs(connect_admin(bootstrap_servers, {**(client_settings or {}), "log_level": 0}))
    except StreamStoreError as error:
        configs, reason = {}, f"the broker's configuration could not be read: {error}"
        broker.not_measured["settings"] = reason
    broker.settings = {name: configs[name] for name in REPORTED_BROKER_SETTING_NAMES if name in configs}
    recognised = broker.embedded
    if recognised is None:
        with contextlib.suppress(UsageError, OSError):
            answering = answering_embedded(bootstrap_servers)
            recognised = recorded(answering.state_dir) if answering is not None else None
    if recognised is not None:
        broker.recognised_embedded = True
        broker.observed_embedded = recognised
        broker.measured_version, broker.version_source = recognised.version, EMBEDDED_JAR
    elif configs.get(PROTOCOL_VERSION_SETTING):
        broker.measured_version, broker.version_source = configs[PROTOCOL_VERSION_SETTING], PROTOCOL_VERSION_SETTING
    else:
        broker.not_measured["version"] = broker.not_measured.get("settings") or (
            f"not the embedded broker, and it reports no {PROTOCOL_VERSION_SETTING} (Kafka 4.0 removed it)")
    return broker


def no_embedded_reason(bootstrap_servers: str, state_dir: Path | str | None) -> str:
    """Why no embedded broker was found at bootstrap_servers, and what to type when one started by
    this tool answers there with its state elsewhere (one line, for a command that needs one)."""
    where = f"in {Path(state_dir).resolve()}" if state_dir is not None else "under .state/ here"
    answering = answering_embedded(bootstrap_servers)
    if answering is not None:
        return (f"no embedded broker {where} answers at {bootstrap_servers}; the one that does is "
                f"{answering.describe()}: add --state-dir {answering.state_dir}")
    return (f"the broker at {bootstrap_servers} is not one started by `python -m bench broker start` "
            f"(no embedded broker {where} answers there)")


def describe_broker_settings(
    bootstrap_servers: str, names: tuple[str, ...] = REPORTED_BROKER_SETTING_NAMES,
    client_settings: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """The named settings as the cluster's first broker reports them (for result metadata)."""
    configs = broker_configs(connect_admin(bootstrap_servers, {**(client_settings or {}), "log_level": 0}))
    return {name: configs[name] for name in names if name in configs}
