"""The seed's producer and tracker, end to end against a real broker."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Producer
from kafka_truth import signalable_child

from streamstore.admin import connect_admin, ensure_topic, message_count, topic_configs, topic_watermarks
from streamstore.config import producer_config
from streamstore.errors import RunFailed

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def run_module(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


def produce_orders(bootstrap, topic, *args):
    return run_module("streamstore.producer", "--bootstrap-servers", bootstrap, "--topic", topic, *args)


def track(bootstrap, topic, *args, group=None):
    group = group or f"group-{uuid.uuid4().hex[:8]}"
    return run_module("streamstore.tracker", "--bootstrap-servers", bootstrap, "--topic", topic,
                      "--group", group, *args)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_orders_round_trip_with_seed_output(kafka_bootstrap, unique_topic, compression):
    produced = produce_orders(kafka_bootstrap, unique_topic, "--count", "3", "--compression", compression,
                              "--user", "Ada Lovelace", "--item", "sushi", "--quantity", "2")
    assert produced.returncode == 0, produced.stderr
    lines = produced.stdout.splitlines()
    assert len(lines) == 6
    order_ids = []
    for offset, (confirmation, value) in enumerate(zip(lines[::2], lines[1::2])):
        match = re.fullmatch(rf"Order ({UUID}) successfully produced to {unique_topic} \[0\] at offset {offset}",
                             confirmation)
        assert match, confirmation
        order_ids.append(match.group(1))
        order_id = match.group(1)
        assert value == f'Message value: {{"order_id":"{order_id}","user":"Ada Lovelace","item":"sushi","quantity":2}}'
    assert message_count(topic_watermarks(kafka_bootstrap, unique_topic)) == 3

    tracked = track(kafka_bootstrap, unique_topic, "--max-messages", "3")
    assert tracked.returncode == 0, tracked.stderr
    lines = tracked.stdout.splitlines()
    assert lines[0] == f"Consumer is running and subscribed to '{unique_topic}' topic..."
    for offset, order_id in enumerate(order_ids):
        received, described = lines[1 + 2 * offset], lines[2 + 2 * offset]
        assert received.startswith(f'Received message: {{"order_id":"{order_id}"')
        assert received.endswith(f"from topic: {unique_topic} partition: 0 offset: {offset}")
        assert described == f"Received Order: 2 X sushi from Ada Lovelace (Order ID: {order_id})"
    assert lines[-1] == "Tracker stopped: 3 message(s) received, 0 malformed."


def test_producer_creates_topic_with_client_size_limit(kafka_bootstrap, unique_topic):
    assert produce_orders(kafka_bootstrap, unique_topic).returncode == 0
    assert topic_configs(connect_admin(kafka_bootstrap), unique_topic)["max.message.bytes"] == "1000000000"


def test_offsets_of_a_topic_no_node_serves_are_an_error_unless_the_caller_waits_for_it(kafka_bootstrap, unique_topic):
    """An unknown topic is what a node that has just started answers for an existing one: it is
    asked again up to the timeout, then a RunFailed naming the reason, never an empty {} that
    would read as a topic holding nothing. A caller waiting for the topic to appear gets {}."""
    # The reason is the node's answer, or, on a busy machine, that none came within the second.
    with pytest.raises(RunFailed, match=f"could not read offsets of topic '{unique_topic}': .*([Uu]nknown topic|[Tt]imed out)"):
        topic_watermarks(kafka_bootstrap, unique_topic, timeout_s=1.0)
    assert topic_watermarks(kafka_bootstrap, unique_topic, missing_ok=True) == {}


def test_malformed_messages_are_counted_and_polling_continues(kafka_bootstrap, unique_topic):
    ensure_topic(connect_admin(kafka_bootstrap), unique_topic)
    # A plain client with no headers or keys, as any other producer of orders would be.
    producer = Producer(producer_config(kafka_bootstrap, "none"))
    for value in (b"not json", b'{"order_id": 1, "user": "u", "item": "i", "quantity": 1}', b"[1]",
                  b'{"order_id": "from-elsewhere", "user": "Bob", "item": "tea", "quantity": 1}'):
        producer.produce(unique_topic, value)
    assert producer.flush(30) == 0

    tracked = track(kafka_bootstrap, unique_topic, "--max-messages", "4")
    assert tracked.returncode == 0, tracked.stderr
    malformed = [line for line in tracked.stdout.splitlines() if line.startswith("Malformed order")]
    assert malformed[0].startswith(f"Malformed order at {unique_topic} partition 0 offset 0: not JSON (")
    assert malformed[1:] == [
        f"Malformed order at {unique_topic} partition 0 offset 1: field 'order_id' should be str, got int",
        f"Malformed order at {unique_topic} partition 0 offset 2: expected a JSON object, got list",
    ]
    assert "Received Order: 1 X tea from Bob (Order ID: from-elsewhere)" in tracked.stdout
    assert tracked.stdout.splitlines()[-1] == "Tracker stopped: 4 message(s) received, 3 malformed."


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_tracker_stops_cleanly_and_commits(kafka_bootstrap, unique_topic, stop_signal):
    assert produce_orders(kafka_bootstrap, unique_topic, "--count", "2").returncode == 0
    group = f"group-{uuid.uuid4().hex[:8]}"
    with signalable_child([sys.executable, "-m", "streamstore.tracker", "--bootstrap-servers", kafka_bootstrap,
                           "--topic", unique_topic, "--group", group],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as tracker:
        seen = []
        deadline = time.monotonic() + 60
        while sum(line.startswith("Received Order") for line in seen) < 2 and time.monotonic() < deadline:
            seen.append(tracker.stdout.readline().rstrip("\n"))
        tracker.send_signal(stop_signal)
        rest, stderr = tracker.communicate(timeout=30)
    assert tracker.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert rest.splitlines()[-1] == "Tracker stopped: 2 message(s) received, 0 malformed."

    # The offsets were committed on close: the same group finds nothing new.
    again = track(kafka_bootstrap, unique_topic, "--idle-timeout", "3", group=group)
    assert again.stdout.splitlines()[-1] == "Tracker stopped: 0 message(s) received, 0 malformed."


def test_unreachable_broker_gives_one_clear_line_quickly(unique_topic):
    started = time.monotonic()
    produced = produce_orders("127.0.0.1:1", unique_topic)
    elapsed = time.monotonic() - started
    assert produced.returncode == 3
    assert elapsed < 20
    assert produced.stderr.strip().splitlines() == [
        "error: Kafka broker at 127.0.0.1:1 did not answer within 10 s (Failed to get metadata: Local: Broker "
        "transport failure); start one with `python -m bench broker start` or set KAFKA_BOOTSTRAP_SERVERS"
    ]
    assert "Traceback" not in produced.stderr


@pytest.mark.parametrize("flag, value, message", [
    ("--count", "0", "--count must be at least 1, got 0"),
    ("--quantity", "-1", "--quantity must be at least 1, got -1"),
])
def test_producer_bad_input(flag, value, message, unique_topic):
    produced = produce_orders("127.0.0.1:1", unique_topic, flag, value)
    assert produced.returncode == 2
    assert produced.stderr.strip() == f"error: {message}"
