"""docker-compose.yaml cannot run here (no Docker engine): check it says what the embedded
broker does, so users with Docker measure the same broker configuration."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from bench.broker.embedded import BROKER_HEAP_OPTS, LARGE_MESSAGE_BROKER_SETTINGS, SINGLE_NODE_BROKER_SETTINGS, EmbeddedBroker

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yaml"
# cp-kafka's launcher handles these itself; every other KAFKA_* variable becomes a broker setting.
JVM_VARIABLES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS"}


@pytest.fixture(scope="module")
def kafka_service() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]["kafka"]


def broker_settings_from_environment(environment: dict[str, str]) -> dict[str, str]:
    """cp-kafka's rule: KAFKA_FOO_BAR=v -> foo.bar=v ('___' -> '-', '__' -> '_')."""
    settings = {}
    for name, value in environment.items():
        if name.startswith("KAFKA_") and name not in JVM_VARIABLES:
            key = name[len("KAFKA_"):].lower().replace("___", "-").replace("__", "\0").replace("_", ".")
            settings[key.replace("\0", "_")] = str(value)
    return settings


def test_compose_broker_settings_equal_the_embedded_broker(kafka_service):
    compose_settings = broker_settings_from_environment(kafka_service["environment"])
    for expected in (LARGE_MESSAGE_BROKER_SETTINGS, SINGLE_NODE_BROKER_SETTINGS):
        assert {key: compose_settings.get(key) for key in expected} == expected


def test_compose_and_embedded_broker_share_every_setting_they_both_state(kafka_service):
    compose_settings = broker_settings_from_environment(kafka_service["environment"])
    embedded_settings = EmbeddedBroker(port=9092).server_properties()
    # Listeners and paths differ by nature (container vs. state dir); everything else agrees.
    location_specific = {"listeners", "log.dirs", "controller.quorum.voters", "advertised.listeners"}
    shared = (compose_settings.keys() & embedded_settings.keys()) - location_specific
    assert {key: compose_settings[key] for key in shared} == {key: embedded_settings[key] for key in shared}
    assert compose_settings["advertised.listeners"] == "PLAINTEXT://localhost:9092"


def test_compose_jvm_options_equal_the_embedded_broker(kafka_service):
    environment = kafka_service["environment"]
    assert environment["KAFKA_HEAP_OPTS"].split() == list(BROKER_HEAP_OPTS)


def test_compose_runs_the_seed_broker_in_kraft_mode(kafka_service):
    assert kafka_service["image"] == "confluentinc/cp-kafka:7.8.3"
    assert kafka_service["container_name"] == "kafka_server"
    assert kafka_service["ports"] == ["127.0.0.1:9092:9092"]
    assert kafka_service["volumes"] == ["kafka_kraft:/var/lib/kafka/data"]
    assert kafka_service["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "kafka-broker-api-versions" in " ".join(kafka_service["healthcheck"]["test"])
    assert "kafka_kraft" in yaml.safe_load(COMPOSE_FILE.read_text())["volumes"]


def test_compose_cluster_id_is_a_kafka_uuid(kafka_service):
    cluster_id = kafka_service["environment"]["CLUSTER_ID"]
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
