"""The yardstick for `python -m bench large-message --compare-bare`: a minimal confluent-kafka
script that sends one payload and reads it back, with nothing of the harness in between.

One process, one producer, one consumer. The consumer is assigned and polling before the
clock starts, so its fetch is already waiting at the broker; the clock runs from produce()
until poll() hands the message to Python. The payload is the harness's (same kind and size).
One JSON line per repetition on stdout, then one with the process's peak RSS. With
--settings-on-stdin the first line on stdin is `{"client_settings": {...}}` (security settings,
kept off the command line) for both clients.

    python -m bench.large_message.bare --bootstrap-servers 127.0.0.1:9092 --topic T --size 999999964 --reps 1
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from streamstore.orders import PAYLOAD_KINDS, make_payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_message.bare")
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True, help="an existing, empty topic with one partition")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--payload", choices=PAYLOAD_KINDS, default="order")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per repetition")
    parser.add_argument("--settings-on-stdin", action="store_true",
                        help='read {"client_settings": {...}} (librdkafka settings) from the first line on stdin')
    args = parser.parse_args(argv)
    settings = json.loads(sys.stdin.readline())["client_settings"] if args.settings_on_stdin else {}

    payload = make_payload(args.payload, args.size)
    producer = Producer({
        **settings,
        "bootstrap.servers": args.bootstrap_servers,
        # librdkafka's maximum, the only way to send a message near 1 GB.
        "message.max.bytes": 1_000_000_000,
        # Send at once: there is only one message.
        "linger.ms": 0,
        # The harness uses the same bounds, so neither side gives up first.
        "message.timeout.ms": int(args.timeout * 1000),
        "socket.timeout.ms": 300_000,
    })
    consumer = Consumer({
        **settings,
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": "bench-bare-roundtrip",
        # Accept a 1 GB message (raises the fetch limits with it).
        "message.max.bytes": 1_000_000_000,
        "enable.auto.commit": False,
        "socket.timeout.ms": 300_000,
    })
    consumer.assign([TopicPartition(args.topic, 0, 0)])
    consumer.poll(1.0)
    producer.list_topics(args.topic, timeout=10)
    for _ in range(args.reps):
        started_ns = time.monotonic_ns()
        producer.produce(args.topic, payload)
        producer.flush(args.timeout)
        acked_ns = time.monotonic_ns()
        message = None
        deadline = time.monotonic() + args.timeout
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
        received_ns = time.monotonic_ns()
        if message is None or message.error() or len(message.value()) != args.size:
            problem = "no message" if message is None else (message.error() or f"{len(message.value())} bytes")
            print(json.dumps({"error": f"round trip failed: {problem}"}), flush=True)
            return 3
        del message
        print(json.dumps({"produce_ms": (acked_ns - started_ns) / 1e6,
                          "end_to_end_ms": (received_ns - started_ns) / 1e6}), flush=True)
    consumer.close()
    # ru_maxrss is in KiB on Linux.
    print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
