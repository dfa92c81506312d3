"""Flags that several subcommands share, so they read the same everywhere."""

from __future__ import annotations

import argparse
import tomllib
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer

from bench.broker.ensure import BROKER_MODES
from bench.core.field_checks import flatten_settings
from bench.results.store import DEFAULT_RESULTS_ROOT
from streamstore.cli import add_bootstrap_argument
from streamstore.config import consumer_config, producer_config
from streamstore.errors import UsageError


def add_broker_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, keep: bool = True,
                         metrics_url: bool = False) -> None:
    """The broker flags; metrics_url=True adds --broker-metrics-url (commands whose runs have
    per-second series: run, chaos, capacity)."""
    add_bootstrap_argument(parser)
    parser.add_argument("--broker", choices=BROKER_MODES, default="auto",
                        help="auto: use what answers, else start the embedded broker (default); "
                             "external: must answer; embedded: the embedded broker")
    if keep:
        parser.add_argument("--keep-broker", action="store_true",
                            help="leave an embedded broker this command started running")
    if metrics_url:
        parser.add_argument("--broker-metrics-url", type=_http_url, metavar="URL",
                            help="a Prometheus endpoint with the broker's own metrics (JMX exporter, standard Kafka "
                                 "names), read each second; the embedded broker has its own (docs/measurement.md)")


def _http_url(text: str) -> str:
    """--broker-metrics-url: an http(s) URL with a host; anything else is one line, exit 2."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL, e.g. http://kafka-1:7071/metrics")
    return text


def add_results_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    # --results is the older spelling, kept so existing scripts go on working.
    parser.add_argument("--results-dir", "--results", dest="results_dir", type=Path, default=DEFAULT_RESULTS_ROOT,
                        help="folder for run folders (default: results)")


def read_client_config(path: Path, check: Callable[[dict[str, Any]], dict[str, Any]] = dict) -> dict[str, Any]:
    """--client-config FILE: TOML librdkafka settings (tables flatten to dotted keys), refused
    by `check` (a command's own rules) or by librdkafka itself (a client of each kind is created
    and dropped), so a typo is one line before anything connects."""
    try:
        settings = check(flatten_settings(tomllib.loads(path.read_text())))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"--client-config {path}: {error}") from None
    try:
        Producer(producer_config("127.0.0.1:1", "none", settings))
        Consumer(consumer_config("127.0.0.1:1", "bench-settings-check", settings)).close()
    except KafkaException as error:
        reason = error.args[0].str() if error.args and hasattr(error.args[0], "str") else str(error)
        raise UsageError(f"--client-config {path}: librdkafka refuses the settings: {reason}") from None
    return settings
