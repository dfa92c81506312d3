"""Run folders and result files on disk: folder naming, atomic writes, writing and loading
`result.json` (with the schema checked and older versions upgraded)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.results.formatting import utc_datetime
from bench.results.redaction import redact_secrets
from bench.results.schema import RESULT_KINDS, SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, upgrade
from streamstore.errors import UsageError

RESULT_FILE_NAME = "result.json"
# A capacity search's folder holds this instead (its steps are run folders under steps/).
CAPACITY_FILE_NAME = "capacity.json"
# Where run folders go unless a command is told otherwise (relative to the working directory).
DEFAULT_RESULTS_ROOT = Path("results")
_FOLDER_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_folder(results_root: str | os.PathLike, scenario_name: str, started_at: dt.datetime | float) -> Path:
    """Create and return `<results_root>/<UTC yyyymmddTHHMMSS>-<scenario_name>`.

    The folder is created here, so two runs starting in the same second get `-2`, `-3`, ...
    instead of writing into each other.
    """
    stamp = utc_datetime(started_at).strftime("%Y%m%dT%H%M%S")
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


def _create_temp_file(target: Path) -> tuple[int, str]:
    """A new temp file beside `target`, created with mode 0666 less the process umask (as any
    file a user writes; mkstemp's 0600 would keep results from being shared). Reading the umask
    would mean setting it, which no other thread may see."""
    for _ in range(100):
        name = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {target}")


def write_text_atomic(target: Path, text: str) -> None:
    """Write via a temp file in the same folder and os.replace: readers never see half a file."""
    try:
        fd, temp_name = _create_temp_file(target)
    except FileNotFoundError:
        raise UsageError(f"cannot write {target}: folder {target.parent} does not exist") from None
    except PermissionError:
        raise UsageError(f"cannot write {target}: folder {target.parent} is not writable") from None
    except OSError as error:
        raise UsageError(f"cannot write {target}: {error.strerror or error}") from None
    try:
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
    """The result.json inside a run folder (capacity.json inside a capacity search's folder), or
    the file itself (e.g. a baseline)."""
    path = Path(path_or_folder)
    if not path.is_dir():
        return path
    if not (path / RESULT_FILE_NAME).exists() and (path / CAPACITY_FILE_NAME).exists():
        return path / CAPACITY_FILE_NAME
    return path / RESULT_FILE_NAME


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
    return upgrade(document)


