"""Versioned result files: run folders, atomic result.json, HDR histograms and interval logs.

Everything that writes or reads a result goes through this module, so the format lives in one
place (see docs/result-format.md).
"""

from __future__ import annotations

import binascii
import datetime as dt
import json
import os
import platform
import re
import socket
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from streamstore.errors import UsageError

# Schema versions of result.json. Bump on any change a reader must know about, and say what
# changed here; load_result refuses versions it does not list.
#   1  first version: scenario, fingerprint, environment, broker, counts, latency_us summaries
#      with encoded cumulative histograms, per-second series, events, warnings, large_message.
#   2  one name per metric: large-message rows say service_time_ms (was produce_latency_ms, also
#      under samples) and carry their counts as the core writes them (counts.broker_offset_delta,
#      was the row's broker_messages; counts_not_measured, was counts_note); the run folder's interval logs
#      are service_time.hlog and end_to_end.hlog (were delivery.hlog and e2e.hlog).
#      load_result reads version 1 files by renaming those fields in memory.
#   3  large-message: each row carries `java` (Kafka's EndToEndLatency at the same size and codec,
#      or null without --peer java), the section `peer` (which tool, null without --peer) and the
#      scenario `peer`. load_result reads versions 1 and 2 with those as null.
SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, 2, 3})

RESULT_FILE_NAME = "result.json"
# Where run folders go unless a command is told otherwise (relative to the working directory).
DEFAULT_RESULTS_ROOT = Path("results")
RESULT_KINDS = frozenset({"run", "large-message", "locust"})

# Latency histograms are in microseconds: 1 µs resolution floor, 1 hour ceiling (a stalled
# 1 GB gzip delivery still fits), 3 significant figures (0.1 % value error).
LATENCY_LOWEST_US = 1
LATENCY_HIGHEST_US = 3_600_000_000
LATENCY_SIGNIFICANT_FIGURES = 3

# The latencies a result can hold (result["latency_us"] keys): short name and what it spans.
LATENCY_LABELS = {
    "service_time": ("service time", "send -> ack"),
    "response_time": ("response time", "intended send -> ack"),
    "send_delay": ("send delay", "actual - intended send"),
    "end_to_end": ("end-to-end", "send -> consumed"),
}


def latency_title(kind: str) -> str:
    """"service time (send -> ack)": the name with the span it measures."""
    name, span = LATENCY_LABELS[kind]
    return f"{name} ({span})"


# Keys of the summary dict, in order, with the percentile each one reads.
SUMMARY_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99}

REDACTED = "***"
# librdkafka settings that hold secrets without saying so in their name.
_SECRET_KEYS = frozenset({"ssl.key.pem", "sasl.oauthbearer.config"})
_SECRET_WORDS = ("password", "secret", "token")

_FOLDER_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------------------------------------
# Histograms


def new_latency_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds with the project's range and precision."""
    return HdrHistogram(LATENCY_LOWEST_US, LATENCY_HIGHEST_US, LATENCY_SIGNIFICANT_FIGURES)


def encode_histogram(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def decode_histogram(encoded: str) -> HdrHistogram:
    """The histogram from its `encode()` text; a damaged text is a bad input file."""
    if not isinstance(encoded, str) or not encoded:
        raise UsageError("histogram in result file is missing or not a string")
    try:
        return HdrHistogram.decode(encoded)
    except (binascii.Error, zlib.error, ValueError, TypeError, IndexError) as error:
        raise UsageError(f"histogram in result file cannot be decoded ({error})") from None


def summarize_histogram(histogram: HdrHistogram) -> dict[str, Any]:
    """count, min, mean, p50 .. p99_99, max and the encoded histogram.

    An empty histogram has count 0 and null statistics: a latency of 0 would be a lie.
    """
    count = histogram.get_total_count()
    summary: dict[str, Any] = {"count": count}
    if count == 0:
        summary.update({"min": None, "mean": None, **{k: None for k in SUMMARY_PERCENTILES}, "max": None})
    else:
        # min from the 0th percentile: hdrh's add() of an empty histogram resets min_value to 0.
        by_percentile = histogram.get_percentile_to_value_dict([0.0, *SUMMARY_PERCENTILES.values()])
        summary["min"] = by_percentile[0.0]
        summary["mean"] = round(histogram.get_mean_value(), 1)
        summary.update({key: by_percentile[p] for key, p in SUMMARY_PERCENTILES.items()})
        summary["max"] = histogram.get_max_value()
    summary["histogram"] = encode_histogram(histogram)
    return summary


# ---------------------------------------------------------------------------------------------
# Run folders and result.json


def _utc(started_at: dt.datetime | float) -> dt.datetime:
    if isinstance(started_at, dt.datetime):
        if started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        return started_at.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(started_at, tz=dt.UTC)


def run_folder(results_root: str | os.PathLike, scenario_name: str, started_at: dt.datetime | float) -> Path:
    """Create and return `<results_root>/<UTC yyyymmddTHHMMSS>-<scenario_name>`.

    The folder is created here, so two runs starting in the same second get `-2`, `-3`, ...
    instead of writing into each other.
    """
    stamp = _utc(started_at).strftime("%Y%m%dT%H%M%S")
    safe_name = _FOLDER_UNSAFE.sub("_", scenario_name).strip("._") or "run"
    root = Path(results_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        base = root / f"{stamp}-{safe_name}"
        candidate, attempt = base, 1
        while True:
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                attempt += 1
                candidate = base.with_name(f"{base.name}-{attempt}")
    except OSError as error:
        raise _run_folder_error(root, error) from None


def check_results_root(results_root: str | os.PathLike) -> None:
    """Fail before a run, not after it, when no run folder can be created in results_root."""
    root = Path(results_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as error:
        raise _run_folder_error(root, error) from None


def _run_folder_error(root: Path, error: OSError) -> UsageError:
    if isinstance(error, PermissionError):
        return UsageError(f"cannot create a run folder in {root}: permission denied")
    return UsageError(f"cannot create a run folder in {root}: {error.strerror or error}")


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; results and reports are meant to be shared like any other file.
_FILE_MODE = 0o666 & ~_process_umask()


def write_text_atomic(target: Path, text: str) -> None:
    """Write via a temp file in the same folder and os.replace: readers never see half a file."""
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except FileNotFoundError:
        raise UsageError(f"cannot write {target}: folder {target.parent} does not exist") from None
    except PermissionError:
        raise UsageError(f"cannot write {target}: folder {target.parent} is not writable") from None
    except OSError as error:
        raise UsageError(f"cannot write {target}: {error.strerror or error}") from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except OSError as error:
        os.unlink(temp_name)
        raise UsageError(f"cannot write {target}: {error.strerror or error}") from None
    except BaseException:
        os.unlink(temp_name)
        raise


def write_result(folder: str | os.PathLike, result: Mapping[str, Any], file_name: str = RESULT_FILE_NAME) -> Path:
    """Write `result` as `<folder>/result.json` atomically, with secrets redacted.

    Sets `schema_version` to the current version. Non-finite floats are refused (they are not
    JSON); callers store null for "no value".
    """
    if result.get("kind") not in RESULT_KINDS:
        raise ValueError(f"result kind must be one of {sorted(RESULT_KINDS)}, not {result.get('kind')!r}")
    document = {"schema_version": SCHEMA_VERSION, **redact_secrets(result)}
    document["schema_version"] = SCHEMA_VERSION
    text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    target = Path(folder) / file_name
    write_text_atomic(target, text)
    return target


def result_path(path_or_folder: str | os.PathLike) -> Path:
    """The result.json inside a run folder, or the file itself (e.g. a baseline)."""
    path = Path(path_or_folder)
    return path / RESULT_FILE_NAME if path.is_dir() else path


def load_result(path_or_folder: str | os.PathLike) -> dict[str, Any]:
    """Read a result file (a run folder or a .json file); any problem is one UsageError line."""
    path = result_path(path_or_folder)
    if not path.exists():
        if Path(path_or_folder).is_dir():
            raise UsageError(f"{path_or_folder} has no {RESULT_FILE_NAME}: not a run folder")
        raise UsageError(f"no result file or run folder at {path_or_folder}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is corrupt: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    if not isinstance(document, dict) or "schema_version" not in document:
        raise UsageError(f"{path} is not a StreamStore Bench result file (no schema_version)")
    version = document["schema_version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise UsageError(
            f"{path} has schema_version {version!r}; this harness reads version {supported} "
            "(use the harness version that wrote it, or rerun)"
        )
    kind = document.get("kind")
    if kind not in RESULT_KINDS:
        raise UsageError(f"{path} has unknown result kind {kind!r} (expected one of {', '.join(sorted(RESULT_KINDS))})")
    if version == 1:
        document = upgrade_v1(document)
    return upgrade_v2(document) if document["schema_version"] == 2 else document


def _renamed(mapping: Any, old: str, new: str) -> None:
    if isinstance(mapping, dict) and old in mapping and new not in mapping:
        mapping[new] = mapping.pop(old)


def upgrade_v1(document: dict[str, Any]) -> dict[str, Any]:
    """A version 1 result in version 2's names (see SCHEMA_VERSION); the values are unchanged.
    load_result then takes it on to the current version."""
    for row in (document.get("large_message") or {}).get("rows") or []:
        _renamed(row, "produce_latency_ms", "service_time_ms")
        _renamed(row.get("samples"), "produce_latency_ms", "service_time_ms")
        if isinstance(row.get("counts"), dict) and "broker_messages" in row:
            row["counts"]["broker_offset_delta"] = row.pop("broker_messages")
        if "counts_note" in row:
            # Version 1 kept one free-text note for all null counts of the row.
            note = row.pop("counts_note")
            row["counts_not_measured"] = {"counts": note} if note else {}
        row.setdefault("counts_not_measured", {})
    document["schema_version"] = 2
    return document


def upgrade_v2(document: dict[str, Any]) -> dict[str, Any]:
    """A version 2 result in version 3's shape: no peer was measured, so its fields are null."""
    large = document.get("large_message")
    if isinstance(large, dict):
        large.setdefault("peer", None)
        for row in large.get("rows") or []:
            row.setdefault("java", None)
        if isinstance(document.get("scenario"), dict):
            document["scenario"].setdefault("peer", None)
    document["schema_version"] = SCHEMA_VERSION
    return document


# ---------------------------------------------------------------------------------------------
# HdrHistogram interval logs

# The log's Interval_Max column is in milliseconds (HistogramLogAnalyzer's default unit);
# our histograms hold microseconds.
_MAX_VALUE_UNIT_RATIO = 1000.0


def write_interval_log(
    path: str | os.PathLike,
    intervals: Iterable[HdrHistogram | str | None],
    start_time_s: float,
    interval_s: float = 1.0,
) -> Path:
    """Write an HdrHistogram interval log (format 1.3, as Java's HistogramLogWriter does).

    `intervals[i]` is the histogram (or its encoded text) of second i after `start_time_s`
    (epoch seconds); None or an empty histogram is a second without samples and is skipped,
    which readers handle (timestamps say where each interval is).
    Written atomically. hdrh's own `output_start_time` crashes, so the header is written here.
    """
    started = dt.datetime.fromtimestamp(start_time_s, tz=dt.UTC)
    lines = [
        "#[Histogram log format version 1.3]",
        f"#[StartTime: {start_time_s:.3f} (seconds since epoch), {started.isoformat(sep=' ')}]",
        f"#[BaseTime: {start_time_s:.3f} (seconds since epoch)]",
        "#[Values in microseconds; Interval_Max in milliseconds]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for index, interval in enumerate(intervals):
        if interval is None:
            continue
        histogram = decode_histogram(interval) if isinstance(interval, str) else interval
        if histogram.get_total_count() == 0:
            continue
        max_ms = histogram.get_max_value() / _MAX_VALUE_UNIT_RATIO
        lines.append(f"{index * interval_s:.3f},{interval_s:.3f},{max_ms:.3f},{encode_histogram(histogram)}")
    target = Path(path)
    write_text_atomic(target, "\n".join(lines) + "\n")
    return target


# ---------------------------------------------------------------------------------------------
# Secrets and environment


def _is_secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return lowered in _SECRET_KEYS or any(word in lowered for word in _SECRET_WORDS)


def redact_secrets(mapping: Any) -> Any:
    """A copy with the value of every secret-looking key replaced by "***", at any depth."""
    if isinstance(mapping, Mapping):
        return {
            key: (REDACTED if _is_secret_key(key) and value is not None else redact_secrets(value))
            for key, value in mapping.items()
        }
    if isinstance(mapping, (list, tuple)):
        return [redact_secrets(item) for item in mapping]
    return mapping


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def harness_commit() -> str | None:
    """The git commit of this checkout (with "-dirty" when it has changes), or None."""
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit or None


def environment_metadata() -> dict[str, Any]:
    """Where and with what a result was measured (the runner adds broker facts separately)."""
    import confluent_kafka  # only for its version strings

    return {
        "host": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "harness_commit": harness_commit(),
    }


def utc_iso(moment: dt.datetime | float) -> str:
    """ISO-8601 UTC text for started_at / ended_at."""
    return _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# One-line descriptions for captions and report headers


def format_bytes(size: float) -> str:
    """Decimal units, as the scenario's sizes: 1 GB = 1e9 bytes; odd sizes stay exact."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= factor:
            scaled = size / factor
            return f"{scaled:g} {unit}" if abs(scaled - round(scaled, 3)) < 1e-9 else f"{size:,.0f} B"
    return f"{size:,.0f} B"


def format_us(value: float | None) -> str:
    """A latency in the unit a person reads: µs below 1 ms, ms below 10 s, else s."""
    if value is None:
        return "-"
    if value < 1_000:
        return f"{value:.0f} µs"
    if value < 10_000_000:
        return f"{value / 1000:.3g} ms" if value < 100_000 else f"{value / 1000:,.0f} ms"
    return f"{value / 1e6:.3g} s"


def format_value(value: float | None, unit: str) -> str:
    """A figure with its unit; latencies ("µs") are scaled by format_us."""
    if value is None:
        return "-"
    if unit == "µs":
        return format_us(value)
    if unit == "messages":
        return f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}" if abs(value) < 100 else f"{value:,.0f} {unit}"


def format_change(change: float | None) -> str:
    return "-" if change is None else f"{change:+.1%}"


def describe_scenario(result: Mapping[str, Any]) -> str:
    """The scenario as a person reads it: what load, what message, which client settings."""
    scenario = result.get("scenario") or {}
    parts = [str(scenario.get("name") or result.get("kind") or "run")]
    rows = (result.get("large_message") or {}).get("rows") or []
    if rows:  # a sweep: its own sizes and codecs, not the template scenario's rate and size
        sizes = sorted({row["size_bytes"] for row in rows})
        codecs = list(dict.fromkeys(str(row.get("compression")) for row in rows))
        parts.append(f"sizes {', '.join(format_bytes(size) for size in sizes)}")
        parts.append(f"compression {'/'.join(codecs)}")
        if "payload" in scenario:
            parts.append(f"{scenario['payload']} payload")
        return ", ".join(parts)
    if scenario.get("phases"):
        steps = ", ".join(f"{p['rate']:g}/s x {p['duration_s']:g}s" for p in scenario["phases"])
        parts.append(f"phases {steps}")
    elif "rate" in scenario:
        parts.append("max rate" if not scenario["rate"] else f"{scenario['rate']:g} msg/s")
    if "duration_s" in scenario:
        parts.append(f"{scenario['duration_s']:g} s (warm-up {scenario.get('warmup_s', 0):g} s)")
    if "message_size" in scenario:
        parts.append(f"{format_bytes(scenario['message_size'])} {scenario.get('payload', '')}".strip())
    if "partitions" in scenario:
        parts.append(f"{scenario['partitions']} partition{'s' if scenario['partitions'] != 1 else ''}")
    if scenario.get("producers", 1) != 1:
        parts.append(f"{scenario['producers']} producers")
    for key, label in (("acks", "acks="), ("compression", "compression "), ("linger_ms", "linger.ms=")):
        if key in scenario:
            parts.append(f"{label}{scenario[key]:g}" if isinstance(scenario[key], float) else f"{label}{scenario[key]}")
    return ", ".join(parts)


def describe_environment(result: Mapping[str, Any]) -> str:
    """Host, CPU, versions and harness commit of a result, in one line."""
    environment = result.get("environment") or {}
    broker = result.get("broker") or {}
    parts = []
    if environment.get("host"):
        parts.append(f"host {environment['host']}")
    if environment.get("cpu_model") or environment.get("cpu_count"):
        parts.append(f"{environment.get('cpu_count') or '?'} x {environment.get('cpu_model') or 'unknown CPU'}")
    if environment.get("python"):
        parts.append(f"Python {environment['python']}")
    if environment.get("librdkafka"):
        parts.append(f"librdkafka {environment['librdkafka']}")
    if broker.get("version"):
        parts.append(f"Kafka {broker['version']}{' (embedded)' if broker.get('embedded') else ''}")
    if environment.get("harness_commit"):
        parts.append(f"commit {environment['harness_commit'][:12]}")
    return ", ".join(parts) or "environment not recorded"
