"""docker-compose.yaml cannot run here (no Docker engine): check it says what the embedded
broker and the embedded cluster do, so users with Docker measure the same broker configuration."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from bench.broker.cluster import EmbeddedCluster
from bench.broker.embedded import (
    BROKER_HEAP_OPTS,
    CLUSTER_NODE_HEAP,
    DEFAULT_KAFKA_VERSION,
    LARGE_MESSAGE_BROKER_SETTINGS,
    SINGLE_NODE_BROKER_SETTINGS,
    EmbeddedBroker,
    heap_opts,
    replicated_cluster_settings,
)

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yaml"
# The image's launcher handles these itself; every other KAFKA_* variable becomes a broker setting.
JVM_VARIABLES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS"}
CLUSTER_SERVICES = ("kafka-1", "kafka-2", "kafka-3")
# Listeners and paths differ by nature (container vs. state dir); everything else agrees.
LOCATION_SPECIFIC = {"listeners", "log.dirs", "controller.quorum.voters", "advertised.listeners"}


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


@pytest.fixture(scope="module")
def kafka_service() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]["kafka"]


def broker_settings_from_environment(environment: dict[str, str]) -> dict[str, str]:
    """The image's rule (apache/kafka, as cp-kafka): KAFKA_FOO_BAR=v -> foo.bar=v ('___' -> '-', '__' -> '_')."""
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
    shared = (compose_settings.keys() & embedded_settings.keys()) - LOCATION_SPECIFIC
    assert {key: compose_settings[key] for key in shared} == {key: embedded_settings[key] for key in shared}
    assert compose_settings["advertised.listeners"] == "PLAINTEXT://localhost:9092"


def test_compose_jvm_options_equal_the_embedded_broker(kafka_service):
    environment = kafka_service["environment"]
    assert environment["KAFKA_HEAP_OPTS"].split() == list(BROKER_HEAP_OPTS)


def test_compose_runs_the_seed_broker_in_kraft_mode(kafka_service):
    # The embedded broker's release: users with Docker measure the same broker.
    assert kafka_service["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"
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


def _listener_names(listeners: str) -> list[str]:
    return [listener.split("://")[0] for listener in listeners.split(",")]


def test_compose_cluster_profile_states_the_replicated_and_large_message_settings(services):
    for name in CLUSTER_SERVICES:
        compose_settings = broker_settings_from_environment(services[name]["environment"])
        for expected in (LARGE_MESSAGE_BROKER_SETTINGS, replicated_cluster_settings(3)):
            assert {key: compose_settings.get(key) for key in expected} == expected, name


def test_compose_cluster_nodes_and_embedded_cluster_nodes_agree(services, tmp_path):
    cluster = EmbeddedCluster(state_dir=tmp_path / "cluster", nodes=3, port=19092)
    for node_id, name in enumerate(CLUSTER_SERVICES, start=1):
        environment = services[name]["environment"]
        compose_settings = broker_settings_from_environment(environment)
        embedded_settings = cluster.node(node_id).server_properties()
        shared = (compose_settings.keys() & embedded_settings.keys()) - LOCATION_SPECIFIC
        assert {key: compose_settings[key] for key in shared} == {key: embedded_settings[key] for key in shared}, name
        assert compose_settings["node.id"] == str(node_id)
        for key in ("listeners", "advertised.listeners"):
            assert _listener_names(compose_settings[key]) == _listener_names(embedded_settings[key]), (name, key)
        voters = [voter.split("@")[0] for voter in compose_settings["controller.quorum.voters"].split(",")]
        assert voters == [voter.split("@")[0] for voter in embedded_settings["controller.quorum.voters"].split(",")]
        # The host port the node publishes is the one its CLIENT listener advertises.
        host_port = services[name]["ports"][0].split(":")[1]
        assert compose_settings["advertised.listeners"].startswith(f"CLIENT://localhost:{host_port},")
        assert environment["KAFKA_HEAP_OPTS"].split() == list(heap_opts(CLUSTER_NODE_HEAP))


def test_compose_cluster_is_a_profile_beside_the_default_single_node(services):
    assert "profiles" not in services["kafka"]  # `docker compose up -d` still starts the single node only
    cluster_ids = set()
    for name in CLUSTER_SERVICES:
        service = services[name]
        assert service["profiles"] == ["cluster"]
        assert service["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"
        assert service["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
        cluster_ids.add(service["environment"]["CLUSTER_ID"])
    assert len(cluster_ids) == 1
    assert cluster_ids != {services["kafka"]["environment"]["CLUSTER_ID"]}
    assert len(base64.urlsafe_b64decode(cluster_ids.pop() + "==")) == 16
