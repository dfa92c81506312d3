"""The yardsticks beside the sweep's cells: the bare confluent-kafka script right after the
harness's largest uncompressed cell, and Kafka's EndToEndLatency at each cell's size and codec.
Each runs on a fresh topic of the sweep and returns its figures, or its error as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from bench.core.protocol import ChildFailed
from bench.large_message.plan import SweepOptions, delivery_timeout_s, java_messages, level_for
from bench.large_message.process import WORKER_GRACE_S, keep_traceback
from bench.large_message.progress import SweepProgress
from bench.large_message.result import bare_comparison, java_cell
from bench.large_message.topics import SweepTopics
from bench.peers.java import JavaPeer
from streamstore.errors import RunFailed


def java_row(java: JavaPeer, topics: SweepTopics, progress: SweepProgress, options: SweepOptions,
             broker_settings: Mapping[str, str], size: int, compression: str) -> dict[str, Any]:
    """EndToEndLatency at the cell's size and codec on a fresh topic (acks=all, as the sweep's
    producer); a failure is the row's Java error, not the sweep's."""
    messages, warmup = java_messages(size, options.reps_for(size))
    topic, start = topics.new(f"{size}-{compression}-java")
    progress.start(size, f"{compression} Java", 1, 1)
    figures, error = None, None
    try:
        figures = java.end_to_end_latency(
            topic, size, compression, level_for(compression, options.level), "all", messages,
            int(broker_settings["message.max.bytes"]), delivery_timeout_s(size))
    except RunFailed as failure:
        error = str(failure)
    grew = topics.messages_since(topic, start)
    topics.release(topic, 0)
    return java_cell(size, figures, warmup, error, grew)


def bare_row(bootstrap_servers: str, topics: SweepTopics, progress: SweepProgress, options: SweepOptions, size: int,
             harness_row: Mapping[str, Any], worker_failures: list[ChildFailed]) -> dict[str, Any]:
    """The bare script right after the harness's cell, same size and payload, same reps."""
    if harness_row.get("error"):
        return {"size_bytes": size, "error": "harness cell failed; nothing to compare"}
    topic, _ = topics.new(f"{size}-bare")
    reps = harness_row["reps"]
    progress.start(size, "bare", 1, reps)
    timeout_s = delivery_timeout_s(size)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "bench.large_message.bare", "--bootstrap-servers", bootstrap_servers,
             "--topic", topic, "--size", str(size), "--payload", options.payload, "--reps", str(reps),
             "--timeout", str(timeout_s), "--settings-on-stdin"],
            input=json.dumps({"client_settings": dict(options.client_settings)}) + "\n",
            capture_output=True, text=True, timeout=reps * 2 * timeout_s + WORKER_GRACE_S,
        )
        lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    except subprocess.TimeoutExpired:
        lines = [{"error": f"bare script gave no answer within {reps * 2 * timeout_s:.0f} s"}]
    finally:
        topics.release(topic, 0)
    errors = [line["error"] for line in lines if "error" in line]
    samples = [line["end_to_end_ms"] for line in lines if "end_to_end_ms" in line]
    if errors or not samples:
        detail = errors[0] if errors else keep_traceback(
            worker_failures, "bare script", (completed.stderr.strip().splitlines() or ["no output"])[-1],
            completed.stderr)
        return {"size_bytes": size, "error": detail}
    peak = next((line["peak_rss_bytes"] for line in lines if "peak_rss_bytes" in line), None)
    return bare_comparison(harness_row["samples"]["end_to_end_ms"], samples, size, peak)
