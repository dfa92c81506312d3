"""`python -m bench broker start|stop|status|logs|provision`: the embedded Apache Kafka broker."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.broker.embedded import DEFAULT_KAFKA_VERSION, DEFAULT_PORT, EmbeddedBroker, provision_jars
from bench.broker.probe import broker_answers

NAME = "broker"
HELP = "start, stop, inspect or provision the embedded Apache Kafka broker (KRaft, 127.0.0.1)"

_FOLLOW_POLL_S = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("start", "stop", "status", "logs", "provision"),
        help="provision only downloads the broker jars (for CI and first-run setup)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="client port on 127.0.0.1 (default %(default)s)")
    parser.add_argument("--controller-port", type=int, help="KRaft controller port (default: --port + 1)")
    parser.add_argument(
        "--kafka-version", default=DEFAULT_KAFKA_VERSION, help="Apache Kafka version, 3.3.x-3.9.x (default %(default)s)"
    )
    parser.add_argument("--state-dir", type=Path, help="data, logs and pid file (default: .state/broker-<port>)")
    parser.add_argument("--timeout", type=float, default=120.0, help="start: seconds to wait for the broker to answer")
    parser.add_argument("-n", "--lines", type=int, default=40, help="logs: how many lines to show (default %(default)s)")
    parser.add_argument("-f", "--follow", action="store_true", help="logs: keep printing new lines until Ctrl+C")


def run(args: argparse.Namespace) -> int:
    if args.action == "provision":
        return _provision(args.kafka_version)
    broker = EmbeddedBroker(
        port=args.port, controller_port=args.controller_port, state_dir=args.state_dir, kafka_version=args.kafka_version
    )
    return {"start": _start, "stop": _stop, "status": _status, "logs": _logs}[args.action](broker, args)


def _provision(kafka_version: str) -> int:
    began = time.monotonic()
    libs, downloaded = provision_jars(kafka_version)
    jar_count = len(list(libs.glob("*.jar")))
    if downloaded:
        print(f"Apache Kafka {kafka_version}: downloaded {jar_count} jars to {libs} in {time.monotonic() - began:.1f} s")
    else:
        print(f"Apache Kafka {kafka_version}: {jar_count} jars already in {libs}")
    return 0


def _start(broker: EmbeddedBroker, args: argparse.Namespace) -> int:
    began = time.monotonic()
    if not broker.start(timeout_s=args.timeout):
        print(f"already running: Apache Kafka {broker.version} at {broker.bootstrap_servers} (pid {broker.pid})")
        return 0
    print(
        f"started Apache Kafka {broker.version} at {broker.bootstrap_servers} (pid {broker.pid}) "
        f"in {time.monotonic() - began:.1f} s"
    )
    print(f"log: {broker.log_path}")
    return 0


def _stop(broker: EmbeddedBroker, args: argparse.Namespace) -> int:
    began = time.monotonic()
    if broker.stop():
        print(f"stopped the broker at {broker.bootstrap_servers} in {time.monotonic() - began:.1f} s")
    else:
        print(f"not running: no embedded broker in {broker.state_dir}")
    return 0


def _status(broker: EmbeddedBroker, args: argparse.Namespace) -> int:
    pid = broker.pid
    if pid is not None:
        answering = "answering" if broker_answers(broker.bootstrap_servers, timeout_s=5.0) else "NOT answering"
        print(f"running: Apache Kafka {broker.version} at {broker.bootstrap_servers} (pid {pid}, {answering})")
        print(f"state: {broker.state_dir}")
        return 0
    print(f"stopped: no embedded broker in {broker.state_dir}")
    if broker_answers(broker.bootstrap_servers, timeout_s=2.0):
        print(f"note: another Kafka broker answers at {broker.bootstrap_servers}")
    return 0


def _logs(broker: EmbeddedBroker, args: argparse.Namespace) -> int:
    if not broker.log_path.exists():
        print(f"no broker log yet: {broker.log_path}")
        return 0
    for line in broker.log_tail(args.lines):
        print(line)
    if args.follow:
        with open(broker.log_path, errors="replace") as log:
            log.seek(0, 2)
            try:
                while True:
                    line = log.readline()
                    if line:
                        print(line, end="", flush=True)
                    else:
                        time.sleep(_FOLLOW_POLL_S)
            except KeyboardInterrupt:
                pass
    return 0
