"""Count truth: the counts a result reports must equal what the broker holds.

Every test that produces through the harness calls `assert_counts_match_broker(result, bootstrap)`
after its run, so a harness that miscounts (drops a delivery report, double-counts a retry,
stops consuming early) fails the suite instead of publishing wrong figures. It needs the run's
topic to have been empty before the run (tests use `unique_topic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamstore.admin import message_count, topic_watermarks


def broker_message_count(bootstrap_servers: str, topic: str, extra: Mapping[str, object] | None = None) -> int:
    return message_count(topic_watermarks(bootstrap_servers, topic, extra))


def count_problems(counts: Mapping[str, int], held: int, faults: bool = False) -> list[str]:
    """What is wrong between a result's counts and the broker's message count (empty when true).

    Without faults every sent order is acknowledged once and consumed once. With faults
    (broker killed or paused) a delivery can time out after the broker wrote it, and a retry
    can write it twice, so the broker may hold more than was acknowledged; but never fewer
    distinct orders than were acknowledged, and the tracker must still read all it holds.
    """
    problems = []
    sent, acked, failed = counts["sent"], counts["acked"], counts["failed"]
    consumed, duplicated = counts["consumed"], counts["duplicated"]
    if acked + failed != sent:
        problems.append(f"acked {acked} + failed {failed} != sent {sent}: some deliveries have no outcome")
    if counts["lost"] != 0:
        problems.append(f"lost {counts['lost']}: acknowledged orders the tracker never saw")
    if consumed != held:
        problems.append(f"consumed {consumed} != {held} messages the broker holds")
    if "broker_offset_delta" in counts and counts["broker_offset_delta"] != held:
        problems.append(f"broker_offset_delta {counts['broker_offset_delta']} != {held} messages the broker holds")
    distinct = consumed - duplicated
    if distinct < acked:
        problems.append(f"{distinct} distinct orders consumed < {acked} acknowledged")
    if distinct > sent:
        problems.append(f"{distinct} distinct orders consumed > {sent} sent")
    if not faults:
        if failed or duplicated:
            problems.append(f"failed {failed}, duplicated {duplicated} without any fault")
        if held != acked:
            problems.append(f"the broker holds {held} messages, {acked} were acknowledged")
    return problems


def assert_counts_match_broker(
    result: Mapping[str, Any],
    bootstrap_servers: str,
    faults: bool = False,
    extra: Mapping[str, object] | None = None,
) -> None:
    """Fail with every disagreement between `result["counts"]` and the broker's offsets."""
    counts = result["counts"]
    held = broker_message_count(bootstrap_servers, result["scenario"]["topic"], extra)
    problems = count_problems(counts, held, faults)
    assert not problems, "count truth violated:\n  " + "\n  ".join(problems) + f"\ncounts: {dict(counts)}"
