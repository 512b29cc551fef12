# -*- test-case-name: tests.test_store -*-
"""
Errors, names and argument checks: L{StoreError} and its L{CODES}, the
constants the areas share (L{ROLES}, L{ECS_SCOPE}, the name patterns), and
the checks every operation makes before any SQL runs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

CODES = ("not_found", "conflict", "bad_request", "unavailable", "storage")
"""
The values of L{StoreError.code}: an unknown item, a clash with what is
stored (duplicate, still referenced, held by someone else), an invalid
argument, a database that cannot be used (locked for too long, not an
ECS database, schema newer than this code, store closed), and one that
cannot be written (C{storage}: disk full, read-only file or folder, I/O
error; what was asked is not done, and reads still work).
"""

ROLES = ("viewer", "operator", "expert", "admin")
"""User roles, weakest first: each role includes the ones before it."""

TOKEN_KINDS = ("session", "api")

ECS_SCOPE = "ecs"
"""The control scope of the whole ECS (the others are partition ids)."""

NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
LONG_NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
_TOKEN_HASH_RE = re.compile(r"[0-9a-f]{64}")
_TEXT_MAX = 10_000
_LIMIT_MAX = 100_000


class StoreError(Exception):
    """
    A store operation failed.

    @ivar code: one of L{CODES}.
    @ivar reason: what went wrong, naming the item.
    @ivar holder: for a refused L{Store.take_control}, the current holder.
    @ivar since: for a refused L{Store.take_control}, when they took it.
    """

    def __init__(
        self, code: str, reason: str, *, holder: str | None = None, since: float | None = None
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown StoreError code {code!r}")
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.holder = holder
        self.since = since

    def __repr__(self) -> str:
        return f"StoreError({self.code!r}, {self.reason!r})"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(value: object, what: str, long: bool = False) -> str:
    """
    Return C{value} if it is a valid name (L{NAME_RE}; L{LONG_NAME_RE}, up to
    200 characters, when C{long}), else raise C{StoreError("bad_request")}.
    """
    pattern = LONG_NAME_RE if long else NAME_RE
    if not isinstance(value, str) or not pattern.fullmatch(value):
        limit = 200 if long else 128
        raise StoreError(
            "bad_request",
            f"invalid {what} {_show(value)}: use 1 to {limit} letters, digits or _ . : @ -",
        )
    return value


def _check_text(value: object, what: str, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > _TEXT_MAX or (not value and not empty):
        raise StoreError("bad_request", f"invalid {what} {_show(value)}")
    return value


def _check_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StoreError("bad_request", f"invalid {what} {_show(value)}: a finite number is needed")
    return float(value)


def _check_int(value: object, what: str, low: int = 1, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"from {low}" + (f" to {high}" if high is not None else "")
        raise StoreError("bad_request", f"invalid {what} {_show(value)}: an integer {bounds} is needed")
    return value


def _to_json(value: object, what: str) -> str:
    if not isinstance(value, Mapping):
        raise StoreError("bad_request", f"{what} must be a JSON object, not {type(value).__name__}")
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise StoreError("bad_request", f"{what} is not valid JSON: {e}") from None


def _check_roles(roles: object) -> tuple[str, ...]:
    if isinstance(roles, str) or not isinstance(roles, Iterable):
        raise StoreError("bad_request", f"roles must be a list of {', '.join(ROLES)}, not {_show(roles)}")
    given = list(roles)
    unknown = [r for r in given if r not in ROLES]
    if unknown:
        raise StoreError(
            "bad_request", f"unknown roles {', '.join(map(_show, unknown))}: use {', '.join(ROLES)}"
        )
    if not given:
        raise StoreError("bad_request", "a user needs at least one role")
    return tuple(r for r in ROLES if r in given)


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")


class _AnyType:
    """The type of L{ANY}."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _AnyType()
"""For L{Store.detectors}: no filter on the partition."""
