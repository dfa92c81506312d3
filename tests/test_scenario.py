"""The scenario model: parsing, validation (one clear line per bad field), fingerprint, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.field_checks import parse_size
from bench.core.scenario import Phase, Scenario, max_message_size, merge_overrides, parse_set_option
from streamstore.config import MAX_VALUE_BYTES
from streamstore.errors import UsageError

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.mark.parametrize("text, expected", [
    (200, 200), ("200", 200), ("1KB", 1000), ("10MB", 10_000_000), ("1GB", 1_000_000_000),
    ("64KiB", 65536), ("1.5KB", 1500), ("2 mb", 2_000_000), ("512B", 512),
])
def test_sizes_are_decimal_unless_binary_suffix(text, expected):
    assert parse_size(text, "message_size") == expected


@pytest.mark.parametrize("text, words", [
    ("3XB", ["unknown size unit 'XB'", "KB"]),
    ("lots", ["expected a size like"]),
    ("1.5B", ["not a whole number"]),
    (True, ["expected a size like"]),
])
def test_bad_sizes_name_the_field_and_the_units(text, words):
    with pytest.raises(UsageError) as caught:
        parse_size(text, "message_size")
    assert str(caught.value).startswith("message_size: ")
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("values, message", [
    ({"bogus": 1}, "unknown field 'bogus'"),
    ({"rate": -1}, "rate: -1 is out of range (allowed >= 0)"),
    ({"message_size": "3XB"}, "message_size: unknown size unit 'XB'"),
    ({"message_size": "1GB"}, "message_size: 1,000,000,000 bytes is above the client limit; at most 999,999,920 bytes"),
    ({"message_size": 999_999_885, "keys": "order_id"}, "at most 999,999,884 bytes"),
    ({"message_size": 0}, "message_size: 0 is out of range"),
    ({"compression": "gzip", "compression_level": 10}, "compression_level: 10 is out of range (allowed -1..9)"),
    ({"compression": "lz4", "compression_level": 13}, "compression_level: 13 is out of range (allowed -1..12)"),
    ({"compression": "snappy", "compression_level": 3}, "compression_level: snappy has no levels"),
    ({"compression": "brotli"}, "compression: 'brotli' is not allowed (allowed: none, gzip, snappy, lz4, zstd)"),
    ({"payload": "json"}, "payload: 'json' is not allowed (allowed: order, text, random)"),
    ({"acks": "2"}, "acks: '2' is not allowed (allowed: all, 0, 1)"),
    ({"keys": "uuid"}, "keys: 'uuid' is not allowed (allowed: none, order_id, or a table"),
    ({"partitions": 0}, "partitions: 0 is out of range (allowed 1..10000)"),
    ({"producers": 1.5}, "producers: expected a whole number"),
    ({"duration_s": 0}, "duration_s: 0 is out of range (allowed > 0)"),
    ({"duration_s": 10, "warmup_s": 10}, "warmup_s: 10 must be shorter than duration_s (10)"),
    ({"topic": "no spaces"}, "topic: 'no spaces' is not a Kafka topic name"),
    ({"idempotence": True, "acks": "1"}, "idempotence: needs acks = \"all\""),
    ({"idempotence": "yes"}, "idempotence: expected true or false"),
    ({"producer_config": {"linger.ms": 1}}, "producer_config: 'linger.ms' is set by the scenario field 'linger_ms'"),
    ({"consumer_config": {"fetch.wait.max.ms": [1]}}, "consumer_config: 'fetch.wait.max.ms' must be a string"),
    ({"phases": [{"duration_s": 5}]}, "phases[0]: expected a table with exactly duration_s and rate"),
    ({"phases": [{"duration_s": 5, "rate": 0}]}, "phases[0].rate: 0 is out of range (allowed > 0)"),
    ({"phases": [{"duration_s": 5, "rate": 10}], "rate": 20}, "rate: with phases it is derived from them"),
    ({"replication_factor": 2, "min_insync_replicas": 3},
     "min_insync_replicas: 3 is more than replication_factor (2); no acks=all write could ever succeed"),
    ({"min_insync_replicas": 0}, "min_insync_replicas: 0 is out of range (allowed 1..32)"),
    ({"min_insync_replicas": "2"}, "min_insync_replicas: expected a whole number, not '2'"),
    ({"unclean_leader_election": "no"}, "unclean_leader_election: expected true or false, not 'no'"),
])
def test_each_bad_field_is_one_clear_line(values, message):
    with pytest.raises(UsageError) as caught:
        Scenario.from_mapping(values)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_size_limit_is_the_client_limit_minus_headers_and_key():
    assert max_message_size("none") < MAX_VALUE_BYTES
    assert Scenario(message_size=max_message_size("none")).message_size == max_message_size("none")
    assert max_message_size("none") - max_message_size("order_id") == 36


def test_every_shipped_scenario_file_loads():
    files = sorted(SCENARIOS.glob("*.toml"))
    assert len(files) >= 4
    for path in files:
        scenario = Scenario.from_toml(path)
        assert scenario.name == path.stem


def test_phases_derive_duration_and_peak_rate():
    scenario = Scenario.from_toml(SCENARIOS / "burst.toml")
    assert scenario.duration_s == sum(p.duration_s for p in scenario.phases)
    assert scenario.rate == max(p.rate for p in scenario.phases)
    assert Scenario(rate=50.0, duration_s=3.0, warmup_s=0.0).schedule() == (Phase(3.0, 50.0),)


def test_overriding_rate_on_a_phased_scenario_makes_it_steady():
    scenario = Scenario.from_toml(SCENARIOS / "burst.toml", {"rate": 500})
    assert scenario.phases == ()
    assert scenario.rate == 500.0
    assert scenario.duration_s == 50.0


def test_set_options_parse_toml_values_and_client_settings():
    assert parse_set_option("rate=5000") == ("rate", 5000)
    assert parse_set_option("compression=gzip") == ("compression", "gzip")
    assert parse_set_option("idempotence=true") == ("idempotence", True)
    assert parse_set_option("producer_config.sasl.mechanism=PLAIN") == ("producer_config.sasl.mechanism", "PLAIN")
    with pytest.raises(UsageError, match="expected key=value"):
        parse_set_option("rate")
    merged = merge_overrides({"producer_config": {"socket": {"timeout": {"ms": 1000}}}},
                             {"producer_config.client.id": "bench"})
    assert merged["producer_config"] == {"socket.timeout.ms": 1000, "client.id": "bench"}


@pytest.mark.parametrize("name, message", [
    ("duraton_s", "unknown field 'duraton_s'; did you mean duration_s?"),
    ("replication_facter", "unknown field 'replication_facter'; did you mean replication_factor?"),
    ("xyzzy", "unknown field 'xyzzy' (known fields: acks, backlog, batch_size, "),
])
def test_an_unknown_field_gets_did_you_mean_or_the_list(name, message):
    with pytest.raises(UsageError) as caught:
        Scenario.from_mapping({name: 3}, source="orders.toml")
    assert str(caught.value).startswith(f"orders.toml: {message}")


def test_set_blames_set_for_an_unknown_field_not_the_file():
    with pytest.raises(UsageError) as caught:
        parse_set_option("replication_facter=3")
    assert str(caught.value) == ("--set replication_facter=3: unknown field 'replication_facter'; "
                                 "did you mean replication_factor?")
    with pytest.raises(UsageError, match=r"^--set rate\.x=1: only producer_config and consumer_config take dotted"):
        parse_set_option("rate.x=1")


def test_a_bare_name_is_found_in_scenarios_and_a_missing_one_lists_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the checkout's scenarios/ is found from anywhere
    assert Scenario.from_toml("steady-orders") == Scenario.from_toml(SCENARIOS / "steady-orders.toml")
    assert Scenario.from_toml("steady-orders.toml").name == "steady-orders"
    with pytest.raises(UsageError) as caught:
        Scenario.from_toml("steady-order")
    text = str(caught.value)
    assert text.startswith("scenario file steady-order does not exist (did you mean steady-orders?); ")
    assert f"{SCENARIOS}/ holds burst, ci-gate, " in text and "steady-orders-gzip" in text
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "mine.toml").write_text("rate = 10\n")
    assert Scenario.from_toml("mine").rate == 10.0  # the working directory's scenarios/ first
    with pytest.raises(UsageError, match=r"^scenario file nope.toml does not exist; scenarios/ holds mine "):
        Scenario.from_toml("nope.toml")


def test_the_retired_test_fields_are_ignored_when_off_and_refused_when_set():
    assert Scenario.from_mapping({"fault_consumer_delay_ms": 0.0, "fault_tracker_stall_s": 0.0}) == Scenario()
    with pytest.raises(UsageError, match=r"fault_consumer_delay_ms is no longer a scenario field; use the "
                                         r"slow-consumer fault"):
        Scenario.from_mapping({"fault_consumer_delay_ms": 20})


def test_toml_file_errors_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        Scenario.from_toml(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("rate = = 3\n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        Scenario.from_toml(broken)
    bad_field = tmp_path / "bad.toml"
    bad_field.write_text("rate = 100\nlinger = 5\n")
    with pytest.raises(UsageError, match=r"bad.toml: unknown field 'linger'"):
        Scenario.from_toml(bad_field)


def test_secrets_are_redacted_and_do_not_change_the_fingerprint():
    config = {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "bench",
              "sasl.password": "hunter2"}
    scenario = Scenario.from_mapping({"producer_config": config, "consumer_config": config})
    as_dict = scenario.to_dict()
    assert "hunter2" not in repr(as_dict)
    assert as_dict["producer_config"]["sasl.password"] == "***"
    assert scenario.producer_config["sasl.password"] == "hunter2"  # the client still gets it
    rotated = Scenario.from_mapping({"producer_config": {**config, "sasl.password": "other"}, "consumer_config": config})
    assert rotated.fingerprint() == scenario.fingerprint()


def test_fingerprint_covers_load_shape_not_labels_or_length():
    base = Scenario()
    same_load = Scenario(name="other", topic="elsewhere", duration_s=120.0, warmup_s=10.0, drain_timeout_s=3.0)
    assert same_load.fingerprint() == base.fingerprint()
    for change in ({"rate": 2000.0}, {"message_size": 201}, {"compression": "gzip"}, {"acks": "1"},
                   {"partitions": 2}, {"producers": 2}, {"linger_ms": 0.0}, {"keys": "order_id"},
                   {"payload": "text"}, {"producer_config": {"socket.nagle.disable": True}},
                   {"faults": ("slow-consumer=20ms@5+10",)}, {"faults": ("kill@5+5",)}):
        assert Scenario(**change).fingerprint() != base.fingerprint(), change
    assert len(base.fingerprint()) == 16


def test_round_trip_through_to_dict():
    for path in sorted(SCENARIOS.glob("*.toml")):
        scenario = Scenario.from_toml(path)
        assert Scenario.from_mapping(scenario.to_dict()) == scenario


def test_replication_fields_become_topic_settings():
    assert Scenario().topic_config() == {}
    scenario = Scenario.from_toml(SCENARIOS / "replicated-orders.toml")
    assert (scenario.replication_factor, scenario.min_insync_replicas, scenario.acks, scenario.idempotence) == (
        3, 2, "all", True)
    assert scenario.topic_config() == {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
    assert Scenario(unclean_leader_election=True).topic_config() == {"unclean.leader.election.enable": "true"}
    assert Scenario.from_mapping(scenario.to_dict()).topic_config() == scenario.topic_config()


def test_replication_fields_count_in_the_fingerprint_once_set():
    # Scenario() as fingerprinted before these fields existed: baselines keep matching.
    assert Scenario().fingerprint() == "c48fac47a5684dd2"
    base = Scenario(replication_factor=3)
    for change in ({"min_insync_replicas": 2}, {"min_insync_replicas": 1}, {"unclean_leader_election": False},
                   {"unclean_leader_election": True}):
        assert Scenario(replication_factor=3, **change).fingerprint() != base.fingerprint(), change
    assert (Scenario(replication_factor=3, min_insync_replicas=2).fingerprint()
            != Scenario(replication_factor=3, min_insync_replicas=1).fingerprint())
