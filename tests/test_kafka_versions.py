"""The Kafka releases the embedded broker runs: which are accepted and what differs per line
(pure), the consumer group protocol (KIP-848) on the default 4.x broker, and one short run on
the previous default, 3.8.1, so the 3.x line keeps working beside 4.x."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupType, Producer
from conftest import BROKER_START_TIMEOUT_S, free_port_pair
from kafka_truth import assert_counts_match_broker, bench_run, broker_message_count

from bench.broker.embedded import DEFAULT_KAFKA_VERSION, EmbeddedBroker
from bench.broker.ensure import describe_broker_settings
from bench.broker.jars import check_kafka_version
from bench.broker.versions import is_kafka4, log_config_option, pom_path
from streamstore.admin import connect_admin, ensure_topic
from streamstore.errors import UsageError

# The previous default: the newest 3.x line this project measured its baselines on.
PREVIOUS_DEFAULT = "3.8.1"


# ---------------------------------------------------------------------------------------------
# Pure: which releases, and what differs between the lines


@pytest.mark.parametrize("version", ["3.3.2", "3.8.1", "3.9.1", "4.0.0", "4.2.2", "4.4.0"])
def test_both_lines_are_accepted(version):
    assert check_kafka_version(version) == version


@pytest.mark.parametrize("version", ["3.2.3", "4.5.0", "5.0.0", "2.8.2", "4.4", "latest"])
def test_other_releases_are_one_clear_usage_error(version):
    with pytest.raises(UsageError, match=r"runs Apache Kafka 3\.3\.x-3\.9\.x and 4\.0\.x-4\.4\.x"):
        check_kafka_version(version)


def test_the_default_is_a_4x_release():
    assert is_kafka4(DEFAULT_KAFKA_VERSION) and check_kafka_version(DEFAULT_KAFKA_VERSION)


def test_each_line_gets_its_own_pom_and_logging_file():
    assert pom_path("3.8.1").name == "pom.xml" and pom_path("4.0.0").name == "pom-kafka4.xml"
    assert pom_path("3.8.1").is_file() and pom_path("4.4.0").is_file()
    # log4j 1 reads a URL from log4j.configuration; log4j 2 a path from log4j2.configurationFile.
    assert log_config_option("3.8.1").startswith("-Dlog4j.configuration=file:/")
    assert log_config_option("3.8.1").endswith("/log4j.properties")
    assert log_config_option("4.1.0").startswith("-Dlog4j2.configurationFile=/")
    assert log_config_option("4.1.0").endswith("/log4j2.properties")
    assert log_config_option("4.1.0", tools=True).endswith("/tools-log4j2.properties")
    for option in (log_config_option("3.8.1"), log_config_option("4.4.0", tools=True)):
        assert Path(option.split("=", 1)[1].removeprefix("file:")).is_file()


# ---------------------------------------------------------------------------------------------
# Real broker: the consumer group protocol on the default 4.x broker


def test_a_consumer_group_protocol_consumer_reads_every_order_on_the_default_broker(kafka_bootstrap, unique_topic):
    """KIP-848: the 4.x broker serves the consumer protocol by default, and the installed
    librdkafka joins with it: the broker assigns all partitions and the group is of that type."""
    settings = describe_broker_settings(kafka_bootstrap, ("group.coordinator.rebalance.protocols",))
    assert "consumer" in settings["group.coordinator.rebalance.protocols"].split(",")
    admin = connect_admin(kafka_bootstrap)
    ensure_topic(admin, unique_topic, partitions=3, replication_factor=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for number in range(300):
        producer.produce(unique_topic, str(number).encode(), key=str(number).encode())
    assert producer.flush(60) == 0
    group = f"{unique_topic}-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({
        "bootstrap.servers": kafka_bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        # KIP-848: heartbeats and the assignment come from the broker.
        "group.protocol": "consumer",
    })
    assigned: set[int] = set()
    consumer.subscribe([unique_topic], on_assign=lambda _consumer, partitions: assigned.update(p.partition for p in partitions))
    values, deadline = set(), time.monotonic() + 120
    try:
        while len(values) < 300 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.add(int(message.value()))
        described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    finally:
        consumer.close()
    assert assigned == {0, 1, 2}
    assert values == set(range(300)) and broker_message_count(kafka_bootstrap, unique_topic) == 300
    assert described.type == ConsumerGroupType.CONSUMER


# ---------------------------------------------------------------------------------------------
# Real broker: a short run on the previous 3.x default


def test_a_short_run_on_kafka_3_8_1_still_works(tmp_path, unique_topic):
    port, controller_port = free_port_pair()
    broker = EmbeddedBroker(port=port, controller_port=controller_port, state_dir=tmp_path / "broker",
                            kafka_version=PREVIOUS_DEFAULT)
    broker.start(timeout_s=BROKER_START_TIMEOUT_S)
    try:
        # log4j 1 still configures the 3.x broker: its own file, in its own format.
        assert " INFO " in broker.log_path.read_text()
        # A fresh broker on a loaded machine has stalled for over 10 s on the first produce
        # requests (creating the offsets topic): a longer flush deadline than the default.
        run = bench_run(broker.bootstrap_servers, unique_topic, tmp_path / "results",
                        "--rate", "200", "--duration", "3", "--warmup", "1", "--set", "drain_timeout_s=60")
        assert run.completed.returncode == 0, run.completed.stdout + run.completed.stderr
        assert run.result["broker"]["version"] == PREVIOUS_DEFAULT
        assert run.result["broker"]["version_source"] == "embedded broker jar"
        # The 3.x broker still reports its protocol version, and serves only the classic protocol.
        assert run.result["broker"]["settings"]["inter.broker.protocol.version"] == "3.8-IV0"
        assert run.result["broker"]["settings"]["group.coordinator.rebalance.protocols"] == "classic"
        assert run.result["counts"]["acked"] > 0
        assert_counts_match_broker(run.result, broker.bootstrap_servers)
    finally:
        broker.stop()
