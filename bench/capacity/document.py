"""The capacity search's result: one row per step from that step's run result, the answer, and
`capacity.json` (the result format's kind "capacity", written atomically after every step, so an
interrupted or crashed search leaves a valid partial file). Pure but for `write_capacity`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.analysis.capacity import Answer, Judgement
from bench.analysis.thresholds import Limit
from bench.results.formatting import format_us, utc_iso
from bench.results.metrics import LATENCY_LABELS, METRICS
from bench.results.store import CAPACITY_FILE_NAME, write_result

# The percentiles a step row keeps of each latency (the summary's keys).
ROW_PERCENTILES = ("p50", "p99", "p99_9", "max")
ROW_COUNTS = ("sent", "acked", "failed", "consumed", "lost", "duplicated", "broker_offset_delta")


def focus_latency(limits: Sequence[Limit]) -> str:
    """The latency the SLOs are about (the first latency limit's), shown per step and plotted;
    end-to-end when no SLO names a latency."""
    for limit in limits:
        if limit.metric.path[0] == "latency_us":
            return limit.metric.path[1]
    return "end_to_end"


def step_row(index: int, purpose: str, rate: float, producers: int, folder: Path, capacity_folder: Path,
             result: Mapping[str, Any], judgement: Judgement, wall_s: float) -> dict[str, Any]:
    """One row of the step table from the step's run result and its judgement."""
    latency = {kind: {key: summary.get(key) for key in ROW_PERCENTILES}
               for kind, summary in (result.get("latency_us") or {}).items() if summary.get("count")}
    counts = result.get("counts") or {}
    slope = judgement.lag_slope
    return {
        "index": index, "purpose": purpose, "rate": rate, "producers": producers,
        "run_folder": str(folder.relative_to(capacity_folder)) if folder.is_relative_to(capacity_folder) else str(folder),
        "run_id": result.get("run_id"), "status": result.get("status"), "wall_s": round(wall_s, 1),
        "sent_per_s": round(judgement.sent_per_s, 1) if judgement.sent_per_s is not None else None,
        "achieved_per_s": METRICS["throughput"].read(result),
        "consumed_per_s": METRICS["consumed_throughput"].read(result),
        "measured_s": (result.get("throughput") or {}).get("measured_s"),
        "latency_us": latency,
        "lag_max": METRICS["lag_max"].read(result),
        "lag_slope_per_s": round(slope.per_s, 2) if slope is not None else None,
        "lag_slope_se": round(slope.standard_error, 2) if slope is not None and slope.standard_error is not None else None,
        "counts": {name: counts.get(name) for name in ROW_COUNTS},
        "verdict": "pass" if judgement.passed else "fail",
        "harness_limited": judgement.harness_limited, "harness_only": judgement.harness_only,
        "reasons": list(judgement.reasons),
        "retried_with_producers": None,
        "verdicts": result.get("verdicts"),
    }


def step_line(row: Mapping[str, Any], kind: str) -> str:
    """A judged step on the console: what it achieved, its percentiles, the lag slope, the verdict."""
    summary = row["latency_us"].get(kind)
    figures = (f"p50 {format_us(summary['p50'])} p99 {format_us(summary['p99'])} p99.9 {format_us(summary['p99_9'])}"
               if summary else "not measured")
    achieved = f"{row['achieved_per_s']:,.0f}" if row["achieved_per_s"] is not None else "-"
    slope = f"{row['lag_slope_per_s']:+,.0f}/s" if row["lag_slope_per_s"] is not None else "-"
    verdict = "pass" if row["verdict"] == "pass" else "FAIL: " + "; ".join(row["reasons"])
    return f"         achieved {achieved} msg/s, {LATENCY_LABELS[kind][0]} {figures}, lag slope {slope}: {verdict}"


def answer_section(found: Answer, steps: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """The answer: the highest passing rate with its figures (its last passing step's), the rate
    above it that failed and why, and whether the harness or the system under test set the limit."""
    judged = [row for row in steps if row["verdict"] in ("pass", "fail")]
    best = next((row for row in reversed(judged) if row["rate"] == found.rate and row["verdict"] == "pass"), None)
    failing = next((row for row in judged if row["rate"] == found.failed_above and row["verdict"] == "fail"), None)
    limit = None
    if failing is not None:
        limit = ("harness" if failing.get("harness_only") else "harness and system" if failing["harness_limited"]
                 else "system")
    return {
        "rate": found.rate, "confirmed": found.confirmed,
        "achieved_per_s": best["achieved_per_s"] if best else None,
        "latency_us": best["latency_us"] if best else None,
        "step": best["index"] if best else None,
        "failed_above": found.failed_above,
        "failed_reasons": failing["reasons"] if failing else [],
        "limited_by": limit,
        "text": answer_text(found, best, failing, kind),
    }


def _percentiles(row: Mapping[str, Any], kind: str) -> str:
    summary = (row.get("latency_us") or {}).get(kind)
    if not summary:
        return f"{LATENCY_LABELS[kind][0]} not measured"
    return (f"{LATENCY_LABELS[kind][0]} p50 {format_us(summary['p50'])}, p99 {format_us(summary['p99'])}, "
            f"p99.9 {format_us(summary['p99_9'])}")


def answer_text(found: Answer, best: Mapping[str, Any] | None, failing: Mapping[str, Any] | None, kind: str) -> str:
    """The answer in one or two sentences, as the console, the report and the docs say it."""
    why = "; ".join(failing["reasons"]) if failing else ""
    if best is None:
        if failing is None:
            return "no step was judged"
        return f"no tested rate met the SLO: the lowest, {failing['rate']:,.0f} msg/s, failed: {why}"
    achieved = best["achieved_per_s"]
    text = (f"max sustainable rate {found.rate:,.0f} msg/s ({'confirmed' if found.confirmed else 'NOT confirmed'}; "
            f"achieved {achieved:,.0f} msg/s): {_percentiles(best, kind)}")
    if failing is None:
        return text + "; no tested rate failed"
    text += f"; {failing['rate']:,.0f} msg/s failed: {why}"
    processes = f"{failing['producers']} producer process{'es' if failing['producers'] > 1 else ''}"
    if failing.get("harness_only"):
        text += f" — the harness's limit (the generator, {processes}), not Kafka's"
    elif failing["harness_limited"]:
        text += f" — the generator ({processes}) fell behind too: the harness may have set this limit"
    return text


def capacity_document(*, run_id: str, scenario: Mapping[str, Any], fingerprint: str, started_at: float,
                      ended_at: float, status: str, failure: str | None, slo: Sequence[str], search: Mapping[str, Any],
                      steps: Sequence[Mapping[str, Any]], found: Answer, kind: str,
                      first_step: Mapping[str, Any] | None, warnings: Sequence[str]) -> dict[str, Any]:
    """The whole capacity.json; environment and broker as the first step measured them."""
    return {
        "kind": "capacity", "run_id": run_id, "scenario": dict(scenario), "fingerprint": fingerprint,
        "environment": (first_step or {}).get("environment"), "broker": (first_step or {}).get("broker"),
        "started_at": utc_iso(started_at), "ended_at": utc_iso(ended_at), "status": status, "failure": failure,
        "slo": list(slo), "latency_kind": kind, "search": dict(search), "steps": list(steps),
        "answer": answer_section(found, steps, kind), "warnings": [*warnings, *steal_warnings(steps)],
    }


def steal_warnings(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """One warning naming the steps whose run had the host-steal verdict: a neighbour on the
    hypervisor moved their figures, so the answer may not repeat (docs/capacity.md)."""
    stolen = [row for row in steps if any(verdict.get("kind") == "host-steal" for verdict in row.get("verdicts") or ())]
    if not stolen:
        return []
    worst = max(verdict["steal_percent"] for row in stolen for verdict in row["verdicts"] if verdict["kind"] == "host-steal")
    return [f"the hypervisor stole CPU time (up to {worst:g} % on average over a step) in {len(stolen)} of "
            f"{len(steps)} steps ({', '.join(str(row['index']) for row in stolen)}): another guest on this host moved "
            "their figures, so the answer may not repeat"]


def write_capacity(folder: Path, document: Mapping[str, Any]) -> Path:
    return write_result(folder, document, CAPACITY_FILE_NAME)


STEP_TABLE_HEADER = ("step", "purpose", "asked msg/s", "producers", "achieved msg/s", "p50", "p99", "p99.9",
                     "lag slope", "verdict")


def step_table(document: Mapping[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Every step as text cells (the console and the report), percentiles of the SLO's latency;
    the verdict cell says why a step failed."""
    kind = document.get("latency_kind") or "end_to_end"
    rows = []
    for row in document.get("steps") or []:
        summary = (row.get("latency_us") or {}).get(kind) or {}
        achieved = row.get("achieved_per_s")
        slope = row.get("lag_slope_per_s")
        verdict = row["verdict"]
        if row.get("reasons") and verdict not in ("pass", "interrupted"):
            verdict += ": " + "; ".join(row["reasons"])
        if row.get("retried_with_producers"):
            verdict += f" (retried with {row['retried_with_producers']} producers)"
        rows.append((str(row["index"]), row["purpose"], f"{row['rate']:,.0f}", str(row["producers"]),
                     f"{achieved:,.0f}" if achieved is not None else "-",
                     format_us(summary.get("p50")), format_us(summary.get("p99")), format_us(summary.get("p99_9")),
                     f"{slope:+,.1f}/s" if slope is not None else "-", verdict))
    return STEP_TABLE_HEADER, rows
