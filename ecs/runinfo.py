# -*- test-case-name: tests.test_runinfo -*-
"""
What a run carries beside its configurations (issue 14): its type (one of
a declared list), the start and end comments, the shift crew and free
C{key: value} conditions; the checks every front end and the store share,
and the CSV form of run records.

A leaf module (no project imports), so that the settings (the declared
run types), the store, the web API, the command line and the shell all
check the same way.  Every check raises L{RunInfoError} naming the field
and what was wrong.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

#: The run types when the settings declare none (C{runs.types} in C{etc/ecs.yaml}).
DEFAULT_RUN_TYPES = ("physics", "calibration", "cosmics", "test")

#: What a run type (and a condition's key) may be.
TYPE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

#: The longest start or end comment, in characters.
MAX_COMMENT = 2000
#: The most conditions a run may carry.
MAX_CONDITIONS = 32
#: The longest text value of a condition, in characters.
MAX_CONDITION_TEXT = 200


class RunInfoError(ValueError):
    """A run's type, comment or conditions refused: the C{field} and the C{reason}."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_type(value: object, allowed: Iterable[str] | None = None) -> str:
    """
    A run type: a short name and, with C{allowed}, one of them (the refusal
    lists them).
    """
    if not isinstance(value, str) or not TYPE_RE.fullmatch(value):
        raise RunInfoError("type", "must be a name of 1 to 64 letters, digits or _ . : -")
    if allowed is not None:
        names = list(allowed)
        if value not in names:
            raise RunInfoError("type", f"unknown run type {value!r} (allowed: {', '.join(names)})")
    return value


def check_comment(value: object, field: str = "comment") -> str | None:
    """A comment: text of at most L{MAX_COMMENT} characters; empty or blank is no comment (None)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise RunInfoError(field, "must be text")
    if len(value) > MAX_COMMENT:
        raise RunInfoError(field, f"at most {MAX_COMMENT} characters (got {len(value)})")
    if "\x00" in value:
        raise RunInfoError(field, "must not contain NUL characters")
    return value.strip() or None


def check_conditions(value: object) -> dict[str, str | int | float | bool | None]:
    """
    Free conditions: a mapping of at most L{MAX_CONDITIONS} keys (names as
    L{TYPE_RE}) to scalars (text up to L{MAX_CONDITION_TEXT} characters, a
    finite number, true/false or null).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RunInfoError("conditions", "must be an object of key: value")
    if len(value) > MAX_CONDITIONS:
        raise RunInfoError("conditions", f"at most {MAX_CONDITIONS} keys (got {len(value)})")
    result: dict[str, str | int | float | bool | None] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not TYPE_RE.fullmatch(key):
            raise RunInfoError("conditions", f"key {key!r}: use 1 to 64 letters, digits or _ . : -")
        where = f"conditions.{key}"
        if isinstance(item, str):
            if len(item) > MAX_CONDITION_TEXT:
                raise RunInfoError(where, f"text of at most {MAX_CONDITION_TEXT} characters")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise RunInfoError(where, "must be a finite number")
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) >= 2**63:
                raise RunInfoError(where, "number too large")
        elif item is not None and not isinstance(item, bool):
            raise RunInfoError(where, "must be text, a number, true/false or null (no lists or objects)")
        result[key] = item
    return result


def parse_condition(text: str) -> tuple[str, str | int | float | bool | None]:
    """
    C{key=value} from a command line: the value is a number, C{true},
    C{false} or C{null} when it reads as one, else text.
    """
    key, sep, raw = text.partition("=")
    if not sep:
        raise RunInfoError("condition", f"{text!r}: give KEY=VALUE")
    value: str | int | float | bool | None = raw
    if raw in ("true", "false", "null"):
        value = {"true": True, "false": False, "null": None}[raw]
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                pass
            else:
                value = number if math.isfinite(number) else raw
    checked = check_conditions({key.strip(): value})
    return next(iter(checked.items()))


# -- CSV -------------------------------------------------------------------------------

#: The columns of L{runs_csv}, in order.
CSV_COLUMNS = (
    "number", "partition", "type", "tag", "operator", "crew", "started", "ended", "outcome",
    "start_comment", "end_comment", "conditions", "configs", "note",
)


def _iso(seconds: object) -> str:
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds):
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
    return ""


def _cell(value: object) -> str:
    """Text for a cell; text a spreadsheet would take for a formula starts with a quote."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def runs_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """Run records (as C{GET /api/runs} gives them) as CSV with a header row, times in UTC ISO-8601."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        crew = row.get("crew") or {}
        configs = row.get("configs") or {}
        writer.writerow([
            _cell(row.get("number")),
            _cell(row.get("partition")),
            _cell(row.get("type")),
            _cell(row.get("tag")),
            _cell(row.get("operator")),
            _cell("; ".join(f"{k}={v}" for k, v in crew.items() if v)) if isinstance(crew, Mapping) else "",
            _iso(row.get("started")),
            _iso(row.get("ended")),
            _cell(row.get("outcome") or ("" if row.get("ended") else "running")),
            _cell(row.get("start_comment")),
            _cell(row.get("end_comment")),
            json.dumps(row.get("conditions") or {}, sort_keys=True, separators=(",", ":")),
            _cell("; ".join(
                f"{system}={c.get('config_id')} v{c.get('version')}"
                for system, c in sorted(configs.items()) if isinstance(c, Mapping)
            )) if isinstance(configs, Mapping) else "",
            _cell(row.get("note")),
        ])
    return out.getvalue()


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_RUN_TYPES",
    "MAX_COMMENT",
    "MAX_CONDITIONS",
    "MAX_CONDITION_TEXT",
    "TYPE_RE",
    "RunInfoError",
    "check_comment",
    "check_conditions",
    "check_type",
    "parse_condition",
    "runs_csv",
]
