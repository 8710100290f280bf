"""Population targets from a file, for the command line: margins {variable: {level: count}} and totals
{column: total}.

    .json / .toml   {"margins": {"stype": {"E": 4421, "H": 755, "M": 1018}}, "totals": {"api99": 3914069}},
                    or the same entries at the top level (a table of levels is a margin, a number a total)
    .csv            columns variable, level, total: one row per margin level; a row with an empty level is a
                    total of that column

Levels are read as text; `matched_levels` gives each margin the data column's own values (the level "1" of a
numeric column is the value 1).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandas as pd

from .errors import InputError


def read_targets(path) -> tuple[dict, dict]:
    """(margins, totals) from a .json, .toml or .csv file (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no targets file {str(path)!r}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return _from_mapping(json.loads(path.read_text()), path)
        if suffix == ".toml":
            return _from_mapping(tomllib.loads(path.read_text()), path)
        if suffix == ".csv":
            return _from_rows(pd.read_csv(path, dtype={"variable": str, "level": str}), path)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {str(path)!r}: {' '.join(str(exc).split())}") from None
    raise InputError(f"{str(path)!r}: unknown targets file type {suffix or '(none)'}; use .json, .toml or .csv")


def _from_mapping(raw, path) -> tuple[dict, dict]:
    if not isinstance(raw, dict):
        raise InputError(f"{path.name}: expected a table of margins and totals")
    if set(raw) <= {"margins", "totals"} and raw:
        margins, totals = raw.get("margins", {}), raw.get("totals", {})
    else:
        margins = {k: v for k, v in raw.items() if isinstance(v, dict)}
        totals = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    for variable, levels in margins.items():
        if not isinstance(levels, dict) or not all(_is_number(v) for v in levels.values()):
            raise InputError(f"{path.name}: margin {variable!r} must be a table of level = count")
    bad = [k for k, v in totals.items() if not _is_number(v)]
    if bad:
        raise InputError(f"{path.name}: totals {bad} must be numbers")
    return {k: dict(v) for k, v in margins.items()}, dict(totals)


def _from_rows(frame, path) -> tuple[dict, dict]:
    missing = sorted({"variable", "level", "total"} - set(frame.columns))
    if missing:
        raise InputError(f"{path.name}: a targets CSV needs the columns variable, level, total; missing {missing}")
    if frame["variable"].isna().any() or frame["total"].isna().any():
        raise InputError(f"{path.name}: every row needs a variable and a total")
    margins, totals = {}, {}
    for variable, level, total in frame[["variable", "level", "total"]].itertuples(index=False):
        if pd.isna(level) or level == "":
            totals[variable] = float(total)
        else:
            margins.setdefault(variable, {})[level] = float(total)
    return margins, totals


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def matched_levels(frame: pd.DataFrame, margins: dict) -> dict:
    """The margins with each level given as the data column's own value where its text matches (a file's "1"
    for a column of integers is the integer 1)."""
    out = {}
    for variable, levels in margins.items():
        if variable not in frame.columns:
            raise InputError(f"margin variable {variable!r} is not a column of the data")
        values = {str(v): v for v in pd.unique(frame[variable].dropna())}
        out[variable] = {values.get(str(level), level): total for level, total in levels.items()}
    return out
