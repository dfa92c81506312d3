"""A scenario's fingerprint: which of its fields make two runs comparable. Pure, over the
scenario as a result file stores it, so comparing two results needs nothing but the files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Fields that do not change what is measured, so two runs that differ only in them are
# comparable: the label, where the load goes (topic name), how long it lasts (percentiles
# of a 30 s and a 60 s run at the same rate compare) and how long to wait for stragglers.
# Faults, the slow consumer among them, are in it: a run with a fault is not comparable to one
# without. Secret values never enter the fingerprint either. fault_consumer_delay_ms and
# fault_tracker_stall_s are not scenario fields any more (they were test seams); older result
# files hold them (as 0), left out as they always were, so their fingerprints still match.
NOT_FINGERPRINTED = frozenset({"name", "topic", "duration_s", "warmup_s", "drain_timeout_s", "fault_consumer_delay_ms",
                               "fault_tracker_stall_s"})
# Left at the broker's default these are left out, so fingerprints (and baselines) from before
# the fields existed still match; so are phases and faults when there are none.
_OMITTED_WHEN_EMPTY = ("min_insync_replicas", "unclean_leader_election", "phases", "faults", "session_timeout_ms",
                       "heartbeat_interval_ms")
# Left out at the value every run had before the field existed, for the same reason: a report
# per delivery was the only mode, so only "failures" (which measures differently) changes it.
# Transactions and the tracker's isolation level likewise (read_committed was librdkafka's
# default, and nothing was transactional), and one consumer group of one process (the one
# tracker), the classic group protocol (the only one before group_protocol), and no backlog.
# message_size and keys need nothing here: a fixed size and "none"/"order_id" are stored
# as before, and a distribution is a table, so it fingerprints differently from any fixed value
# and from any other distribution.
_OMITTED_AT = {"delivery_reports": "all", "transaction_size": 0, "transaction_abort_ratio": 0.0,
               "isolation_level": "read_committed", "consumer_groups": 1, "consumers_per_group": 1,
               "group_protocol": "classic", "backlog": 0}


def fingerprint_of(scenario: Mapping[str, Any]) -> str:
    """16 hex chars over the fingerprinted fields of a scenario dict (secrets already redacted,
    so rotating a password does not break comparison with a baseline)."""
    values = {key: value for key, value in scenario.items() if key not in NOT_FINGERPRINTED}
    for field in _OMITTED_WHEN_EMPTY:
        if field in values and (values[field] is None or values[field] in ((), [])):
            values.pop(field)
    for field, value in _OMITTED_AT.items():
        if values.get(field, value) == value:
            values.pop(field, None)
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def changes_fingerprint(scenario: Mapping[str, Any], key: str, other_value: Any) -> bool:
    """Whether setting one field to another value (None: removing it) changes the fingerprint."""
    changed = dict(scenario)
    if other_value is None:
        changed.pop(key, None)
    else:
        changed[key] = other_value
    return fingerprint_of(changed) != fingerprint_of(scenario)
