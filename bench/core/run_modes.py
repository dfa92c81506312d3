"""Runs with one side only (`bench run --produce-only`, `--consume-only`): what each leaves out,
and what the result says it could not know.

  produce-only  the producers as always; no consumer process runs while they produce (no lag, no
                end-to-end latency). Once producing has ended the run's tracker(s) start and read
                the topic from where the run began: the usual audit, done afterwards.
  consume-only  no producer: the tracker(s) read a topic something else fills, from its end (what
                arrives during the run) or its beginning, for duration_s, then to the end offsets
                the broker has when that time is up. Every record counts (the trace header is
                read when there is one, for end-to-end latency); the audit is the broker's offsets:
                every offset in [start, end) read once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.broker.fault_spec import CONSUMER_EVENTS
from streamstore.errors import UsageError

BOTH = "produce-and-consume"
PRODUCE_ONLY = "produce-only"
CONSUME_ONLY = "consume-only"

PRODUCE_ONLY_NOT_KNOWN = {
    "lag": "no consumer ran while producing",
    "end_to_end": "no consumer ran while producing (an order read afterwards waited for the audit, not for a consumer)",
}
PRODUCE_ONLY_AUDIT = ("after producing ended, the run's tracker(s) read the topic from where the run began: the "
                      "usual audit of every acked order, done afterwards")
CONSUME_ONLY_NOT_KNOWN = {
    "sent, acked, failed": "no producer of this run: what the topic's producers sent, and which sends failed, is "
                           "theirs to know",
    "lost": "an order a producer was told was acked but the broker does not hold cannot be counted here; an offset "
            "not read may also be a transaction marker or an aborted record, which no consumer is given",
    "end_to_end": "measured only for records with the harness's trace header (a bench run's, e.g. --produce-only); "
                  "other records have none",
}
CONSUME_ONLY_AUDIT = ("the broker's offsets: every offset from where the run started to the high watermark when its "
                      "duration was up, read exactly once (lost = not read, duplicated = read twice)")
NO_PRODUCER = "consume-only: no producer of this run"


def check_mode(scenario, mode: str) -> None:
    """What a one-sided run cannot do, as one UsageError line."""
    if mode == BOTH:
        return
    if scenario.backlog:
        raise UsageError(f"--{mode}: a backlog needs producers and consumers in the same run; drop backlog")
    if mode == CONSUME_ONLY and scenario.faults:
        raise UsageError("--consume-only: faults are timed against the run's producers; drop faults")
    if mode == PRODUCE_ONLY and any(fault.split("@")[0].split(":")[0] in CONSUMER_EVENTS for fault in scenario.faults):
        raise UsageError("--produce-only: consumer events need consumers while producing; drop them")


def mode_section(mode: str, consume_from: str | None, start_offsets: Mapping[int, int],
                 audited_to: Mapping[int, int] | None) -> dict[str, Any] | None:
    """result.json's `run_mode` (null for a run with both sides)."""
    if mode == BOTH:
        return None
    if mode == PRODUCE_ONLY:
        return {"mode": mode, "audit": PRODUCE_ONLY_AUDIT, "not_known": dict(PRODUCE_ONLY_NOT_KNOWN)}
    return {"mode": mode, "consume_from": consume_from, "audit": CONSUME_ONLY_AUDIT,
            "start_offsets": {str(p): offset for p, offset in sorted(start_offsets.items())},
            "audited_to": None if audited_to is None else {str(p): end for p, end in sorted(audited_to.items())},
            "not_known": dict(CONSUME_ONLY_NOT_KNOWN)}


def mode_warnings(mode: str) -> list[str]:
    if mode == PRODUCE_ONLY:
        return ["produce-only: no consumer ran while producing (lag and end-to-end latency not measured); "
                "the audit read the topic after producing ended"]
    if mode == CONSUME_ONLY:
        return ["consume-only: no producer of this run; audited against the broker's offsets (run_mode.not_known "
                "says what that cannot know)"]
    return []
