"""The order tracker: `python -m streamstore.tracker`, and the OrderTracker it uses."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamstore.cli import OneLineArgumentParser, add_bootstrap_argument, run_command
from streamstore.config import ORDERS_TOPIC, TRACKER_GROUP_ID, consumer_config
from streamstore.errors import EXIT_OK, RunFailed, UsageError
from streamstore.orders import MalformedOrder, parse_order

# The seed's poll timeout: long enough not to spin, short enough to notice Ctrl+C promptly.
POLL_TIMEOUT_S = 1.0


class OrderTracker:
    """A consumer of order topics. It keeps no messages: callers handle each as it arrives."""

    def __init__(self, config: dict, topics: list[str], start_offsets: Mapping[int, int] | None = None,
                 on_assign=None, on_revoke=None):
        """start_offsets {partition: offset} reads topics[0] from exactly there, without joining
        the group: a measured run reads what it produced, not what earlier runs left behind.
        Without, it joins the group; on_assign/on_revoke(consumer, partitions) are its rebalance callbacks."""
        self.topics = topics
        self.client = Consumer(config)
        if start_offsets is None:
            callbacks = {name: callback for name, callback in (("on_assign", on_assign), ("on_revoke", on_revoke))
                         if callback is not None}
            self.client.subscribe(topics, **callbacks)
        else:
            self.client.assign([TopicPartition(topics[0], p, offset) for p, offset in start_offsets.items()])

    def consume(self, max_messages: int = 1, timeout_s: float = POLL_TIMEOUT_S) -> list[Message]:
        """Messages received within the timeout; partition EOF events are dropped, errors raised."""
        messages = self.client.consume(num_messages=max_messages, timeout=timeout_s)
        if not any(map(Message.error, messages)):  # the usual batch, checked in C
            return messages
        received = []
        for message in messages:
            error = message.error()
            if error is None:
                received.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
        return received

    def close(self) -> None:
        """Leave the group, committing the offsets of what was consumed."""
        self.client.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bootstrap_argument(parser)
    parser.add_argument("--topic", default=ORDERS_TOPIC, help="topic to follow (default: orders)")
    parser.add_argument("--group", default=TRACKER_GROUP_ID, help="consumer group (default: order_tracker_group)")
    parser.add_argument("--max-messages", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--idle-timeout", type=float, default=None,
                        help="stop after this many seconds without a message")


def _stop_on_sigterm(stop: threading.Event) -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())


def track_orders(args: argparse.Namespace, extra: Mapping[str, object] | None = None) -> int:
    if args.max_messages is not None and args.max_messages < 1:
        raise UsageError(f"--max-messages must be at least 1, got {args.max_messages}")
    if args.idle_timeout is not None and args.idle_timeout <= 0:
        raise UsageError(f"--idle-timeout must be positive, got {args.idle_timeout}")
    stop = threading.Event()
    _stop_on_sigterm(stop)
    tracker = OrderTracker(consumer_config(args.bootstrap_servers, args.group, extra), [args.topic])
    print(f"Consumer is running and subscribed to '{args.topic}' topic...", flush=True)
    received = malformed = 0
    last_message_at = time.monotonic()
    try:
        while not stop.is_set():
            if args.max_messages is not None and received >= args.max_messages:
                break
            if args.idle_timeout is not None and time.monotonic() - last_message_at >= args.idle_timeout:
                print(f"No message for {args.idle_timeout:g} s, stopping.")
                break
            try:
                messages = tracker.consume(1, POLL_TIMEOUT_S)
            except KafkaException as error:
                # Transient broker errors are reported and polling goes on; fatal ones end the run.
                kafka_error = error.args[0]
                if kafka_error.fatal():
                    raise RunFailed(f"consumer failed: {kafka_error.str()}") from None
                print(f"Consumer error: {kafka_error.str()}", file=sys.stderr, flush=True)
                continue
            for message in messages:
                received += 1
                last_message_at = time.monotonic()
                value = message.value()
                try:
                    order = parse_order(value)
                except MalformedOrder as reason:
                    malformed += 1
                    print(f"Malformed order at {message.topic()} partition {message.partition()} "
                          f"offset {message.offset()}: {reason}", flush=True)
                    continue
                print(f"Received message: {value.decode()} from topic: {message.topic()} "
                      f"partition: {message.partition()} offset: {message.offset()}")
                print(f"Received Order: {order.describe()}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        tracker.close()
        print(f"Tracker stopped: {received} message(s) received, {malformed} malformed.", flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m streamstore.tracker",
                                   description="Follow StreamStore orders on Kafka and print each one.")
    add_arguments(parser)
    return run_command(track_orders, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
