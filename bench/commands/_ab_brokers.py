"""A broker per side for `bench ab`, when the sides differ in the broker itself: its Apache Kafka
version (`--a-kafka-version`/`--b-kafka-version`) or a broker setting (`--a-broker-set`/
`--b-broker-set KEY=VALUE`). Each side then gets an embedded broker of its own, started by the
harness before the rounds and stopped after them (its data removed), so the rounds alternate
between two set-ups that differ in that one thing: same machine, same hour, same harness."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import shutil
from collections.abc import Callable, Iterator, Mapping

from bench.broker.embedded import STATE_ROOT, EmbeddedBroker
from bench.broker.jars import check_kafka_version
from bench.broker.ports import free_ports
from bench.broker.settings import LARGE_MESSAGE_BROKER_SETTINGS, SINGLE_NODE_BROKER_SETTINGS
from bench.broker.versions import DEFAULT_KAFKA_VERSION
from streamstore.errors import RunFailed, UsageError

# What the embedded broker gets without a side's own setting (Kafka's default where not named).
HARNESS_BROKER_SETTINGS = {**SINGLE_NODE_BROKER_SETTINGS, **LARGE_MESSAGE_BROKER_SETTINGS}
_PROPERTY = re.compile(r"[a-z][a-z0-9._-]*")
# A JVM, its log recovery and the first metadata answer; a busy machine takes several times longer.
SIDE_BROKER_START_TIMEOUT_S = 180.0


@dataclasses.dataclass(frozen=True)
class SideBroker:
    """What a side's own broker is: its Kafka version and the settings it gets beyond the defaults."""
    kafka_version: str
    settings: Mapping[str, str]

    def describe(self) -> str:
        return ", ".join([f"kafka {self.kafka_version}", *(f"broker {k}={v}" for k, v in sorted(self.settings.items()))])

    def to_dict(self) -> dict:
        return {"kafka_version": self.kafka_version, "settings": dict(self.settings)}


def add_side_broker_arguments(parser: argparse.ArgumentParser) -> None:
    for side in "ab":
        parser.add_argument(f"--{side}-kafka-version", metavar="VERSION",
                            help=f"side {side.upper()} on its own embedded broker of this Apache Kafka version")
        parser.add_argument(f"--{side}-broker-set", action="append", default=[], metavar="KEY=VALUE",
                            help=f"side {side.upper()} on its own embedded broker with this setting (repeatable)")


def _broker_setting(flag: str, text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not _PROPERTY.fullmatch(key) or not value.strip():
        raise UsageError(f"{flag} {text!r}: expected a broker setting KEY=VALUE, e.g. num.io.threads=8")
    return key, value.strip()


def side_brokers(args: argparse.Namespace) -> dict[str, SideBroker] | None:
    """Each side's broker, or None when neither side asks for one of its own."""
    asked = any(getattr(args, f"{side}_kafka_version") or getattr(args, f"{side}_broker_set") for side in "ab")
    if not asked:
        return None
    brokers = {}
    for side in "ab":
        version = check_kafka_version(getattr(args, f"{side}_kafka_version") or DEFAULT_KAFKA_VERSION)
        flag = f"--{side}-broker-set"
        brokers[side] = SideBroker(version, dict(_broker_setting(flag, text) for text in getattr(args, f"{side}_broker_set")))
    if brokers["a"] == brokers["b"]:
        raise UsageError(f"both sides would run on the same broker ({brokers['a'].describe()}): "
                         "give the sides different versions or settings")
    if args.state_dir is not None:
        raise UsageError("--state-dir: each side's own broker has its own state dir; leave it out")
    if args.broker == "external":
        raise UsageError("--a-/--b-kafka-version and --a-/--b-broker-set start a broker per side: "
                         "not with --broker external")
    return brokers


@contextlib.contextmanager
def started_side_brokers(brokers: Mapping[str, SideBroker], name: str, announce: Callable[[str], None],
                         keep: bool = False) -> Iterator[dict[str, EmbeddedBroker]]:
    """Each side's broker running for the block; stopped afterwards and its data removed, unless
    keep (then each one's stop command is announced)."""
    root = (STATE_ROOT / "ab" / name).resolve()
    started: dict[str, EmbeddedBroker] = {}
    try:
        for side, wanted in brokers.items():
            port, controller_port = free_ports(2)
            broker = EmbeddedBroker(port=port, controller_port=controller_port, state_dir=root / side,
                                    kafka_version=wanted.kafka_version, extra_properties=wanted.settings)
            announce(f"side {side.upper()}: starting its own broker ({wanted.describe()}) at {broker.bootstrap_servers}")
            try:
                broker.start(timeout_s=SIDE_BROKER_START_TIMEOUT_S)
            except RunFailed as error:
                raise RunFailed(f"side {side.upper()}'s broker ({wanted.describe()}) did not start: {error}") from None
            started[side] = broker
        yield started
    finally:
        if keep and len(started) == len(brokers):
            for side, broker in started.items():
                announce(f"side {side.upper()}'s broker left running at {broker.bootstrap_servers}: "
                         f"python -m bench broker stop --state-dir {broker.state_dir}")
        else:
            for broker in started.values():
                broker.stop(grace_s=30)
            shutil.rmtree(root, ignore_errors=True)
            with contextlib.suppress(OSError):
                root.parent.rmdir()


def broker_labels(labels: tuple[str, str], brokers: dict[str, SideBroker]) -> tuple[str, str]:
    """The sides' names with what differs in their brokers ("kafka 3.8.1" / "kafka 4.4.0")."""
    a, b = brokers["a"], brokers["b"]
    keys = sorted(key for key in {*a.settings, *b.settings} if a.settings.get(key) != b.settings.get(key))

    def show(broker: SideBroker) -> str:
        parts = [f"kafka {broker.kafka_version}"] if a.kafka_version != b.kafka_version else []
        return ", ".join(parts + [f"broker {key}={broker.settings.get(key, HARNESS_BROKER_SETTINGS.get(key, 'default'))}" for key in keys])

    if labels == ("A", "B"):
        return show(a), show(b)
    return f"{labels[0]}, {show(a)}", f"{labels[1]}, {show(b)}"
