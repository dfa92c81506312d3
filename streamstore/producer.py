"""The order producer: `python -m streamstore.producer`, and the OrderProducer it uses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, Producer

from streamstore.admin import connect_admin, ensure_topic
from streamstore.cli import OneLineArgumentParser, add_bootstrap_argument, run_command
from streamstore.config import COMPRESSION_TYPES, ORDERS_TOPIC, producer_config
from streamstore.errors import EXIT_OK, EXIT_RUN_FAILED, UsageError
from streamstore.orders import DEFAULT_ITEM, DEFAULT_QUANTITY, DEFAULT_USER, Order

DeliveryCallback = Callable[[KafkaError | None, Message], None]

# How long produce() waits for delivery reports to free space when the local queue is full.
_QUEUE_FULL_POLL_S = 0.05


class OrderProducer:
    """Sends message values to one topic; delivery outcomes arrive through callbacks.

    produce() never waits for the broker: it only serves delivery reports when librdkafka's
    local queue is full (BufferError), which is what makes room. Callbacks run inside
    poll()/flush(), in the calling thread.
    """

    def __init__(self, config: dict, topic: str):
        self.topic = topic
        self.client = Producer(config)

    def produce(
        self,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        while True:
            try:
                self.client.produce(self.topic, value, key, on_delivery=on_delivery, headers=headers)
                return
            except BufferError:
                self.client.poll(_QUEUE_FULL_POLL_S)

    def poll(self, timeout_s: float = 0.0) -> int:
        return self.client.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        return self.client.flush(timeout_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_bootstrap_argument(parser)
    parser.add_argument("--topic", default=ORDERS_TOPIC, help="topic to send to (default: orders)")
    parser.add_argument("--count", type=int, default=1, help="number of orders to send (default: 1)")
    parser.add_argument("--user", default=DEFAULT_USER)
    parser.add_argument("--item", default=DEFAULT_ITEM)
    parser.add_argument("--quantity", type=int, default=DEFAULT_QUANTITY)
    parser.add_argument("--compression", choices=COMPRESSION_TYPES, default="gzip", help="(default: gzip)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions when the topic is created (default: 1)")
    parser.add_argument("--replication-factor", type=int, default=1, help="when the topic is created (default: 1)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for delivery confirmations (default: 30)")


def send_orders(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError(f"--count must be at least 1, got {args.count}")
    if args.quantity < 1:
        raise UsageError(f"--quantity must be at least 1, got {args.quantity}")
    admin = connect_admin(args.bootstrap_servers)
    ensure_topic(admin, args.topic, args.partitions, args.replication_factor)
    producer = OrderProducer(producer_config(args.bootstrap_servers, args.compression), args.topic)
    failures = 0

    def report(order: Order, value: bytes) -> DeliveryCallback:
        def on_delivery(error: KafkaError | None, message: Message) -> None:
            nonlocal failures
            if error is not None:
                failures += 1
                print(f"Delivery failed for order {order.order_id}: {error.str()}", file=sys.stderr)
                return
            print(f"Order {order.order_id} successfully produced to {message.topic()} "
                  f"[{message.partition()}] at offset {message.offset()}")
            print(f"Message value: {value.decode()}")

        return on_delivery

    for _ in range(args.count):
        order = Order.new(args.user, args.item, args.quantity)
        value = order.to_json()
        producer.produce(value, on_delivery=report(order, value))
        producer.poll(0)
    undelivered = producer.flush(args.timeout)
    if undelivered:
        print(f"error: {undelivered} order(s) not confirmed within {args.timeout:.0f} s", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_RUN_FAILED if failures else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m streamstore.producer",
                                   description="Send StreamStore orders to Kafka with delivery confirmations.")
    add_arguments(parser)
    return run_command(send_orders, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
