"""Where scenario files are, and the hints for names that are not there: a bare name
(`steady-orders`) resolves to `scenarios/steady-orders.toml`; a misspelt file, field or name gets
"did you mean" and what there is to choose from."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

# `scenarios/` of the working directory, then of the checkout this harness runs from.
SCENARIO_DIRS = (Path("scenarios"), Path(__file__).resolve().parents[2] / "scenarios")


def unknown_name(what: str, name: str, known: Iterable[str]) -> str:
    """"unknown field 'rat'; did you mean rate?", or the list of names when none is close."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown {what} {name!r}; did you mean {close[0]}?"
    return f"unknown {what} {name!r} (known {what}s: {', '.join(known)})"


def resolve_scenario_path(text: str | Path) -> Path:
    """The file as given when it exists, else `scenarios/NAME[.toml]` for a bare name."""
    path = Path(text)
    if path.exists() or path.parent != Path("."):
        return path
    for folder in SCENARIO_DIRS:
        for candidate in (folder / path.name, folder / f"{path.name}.toml"):
            if candidate.is_file():
                return candidate
    return path


def scenarios_held(missing: Path) -> str:
    """The end of "scenario file X does not exist": a close name and what `scenarios/` holds."""
    for folder in SCENARIO_DIRS:
        names = sorted(entry.stem for entry in folder.glob("*.toml")) if folder.is_dir() else []
        if names:
            close = difflib.get_close_matches(missing.stem, names, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"{hint}; {folder}/ holds {', '.join(names)} (a path, or one of these names)"
    return ""
