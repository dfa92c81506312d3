"""`python -m bench topic delete`: the way out when a topic left by one command has another
partition count than the next command asks for (against the real broker)."""

from __future__ import annotations

import pytest
from kafka_truth import bench_command

from streamstore.admin import connect_admin, ensure_topic
from streamstore.errors import UsageError


def test_a_topic_with_other_partitions_is_deleted_and_the_next_command_can_create_its_own(kafka_bootstrap, unique_topic):
    admin = connect_admin(kafka_bootstrap)
    ensure_topic(admin, unique_topic, partitions=3)
    # What `bench run` or Locust then say: the message names the way out.
    with pytest.raises(UsageError, match=rf"^topic '{unique_topic}' exists with 3 partitions, not the 1 asked for; "
                                         rf"delete it \(python -m bench topic delete {unique_topic}\) or choose"):
        ensure_topic(admin, unique_topic, partitions=1)
    deleted = bench_command("topic", "delete", unique_topic, "--bootstrap-servers", kafka_bootstrap)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"deleted topic '{unique_topic}' (3 partitions) at {kafka_bootstrap}\n"
    # Gone when the command returns, so the next one recreates it at once, as it asks.
    assert unique_topic not in admin.list_topics(timeout=10).topics
    assert ensure_topic(admin, unique_topic, partitions=1) is True
    assert len(admin.list_topics(timeout=10).topics[unique_topic].partitions) == 1


def test_missing_internal_and_bad_settings_are_one_line(kafka_bootstrap, unique_topic, tmp_path):
    missing = bench_command("topic", "delete", unique_topic, "--bootstrap-servers", kafka_bootstrap)
    assert (missing.returncode, missing.stderr) == (
        2, f"error: no topic '{unique_topic}' at {kafka_bootstrap} (--if-exists makes that no error)\n")
    tolerated = bench_command("topic", "delete", unique_topic, "--if-exists", "--bootstrap-servers", kafka_bootstrap)
    assert tolerated.returncode == 0 and "nothing to delete" in tolerated.stdout, tolerated.stderr
    internal = bench_command("topic", "delete", "__consumer_offsets", "--bootstrap-servers", kafka_bootstrap)
    assert (internal.returncode, internal.stderr) == (
        2, "error: topic '__consumer_offsets' is one of Kafka's internal topics; it is not deleted from here\n")
    typo = tmp_path / "client.toml"
    typo.write_text('[security]\nprotocl = "SASL_SSL"\n')
    refused = bench_command("topic", "delete", unique_topic, "--client-config", str(typo),
                            "--bootstrap-servers", kafka_bootstrap)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: --client-config {typo}: librdkafka refuses the settings: "
                                     "No such configuration property")
