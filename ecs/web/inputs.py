# -*- test-case-name: tests.test_web -*-
"""
Checking what a client sent to the ECA's API (L{ecs.web.api}), before any of
it reaches the center: the JSON body (size first, then type, then fields),
query parameters and the fields of a body.  Every refusal names what was
wrong: L{bad} raises a 400 L{ControlError} with the field, L{ApiError} is
for the other statuses (413 here, 405 elsewhere).  A body nested deeper
than L{MAX_DEPTH} is refused with 400 (the parser's own C{RecursionError}
too), never a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn

from twisted.web.iweb import IRequest

from ecs import runinfo
from ecs.control import ROLES, ControlError

#: The largest request body, in bytes (the default of L{ecs.web.api.WebAPI}).
MAX_BODY = 1 << 20
#: The deepest nesting of arrays and objects a JSON body may have (no route
#: needs more than 3; the parser and everything after it recurse).
MAX_DEPTH = 32
#: The largest C{limit} a list query may ask for.
MAX_LIMIT = 10000
#: The longest an alarm may be shelved, in seconds.
MAX_SHELVE = 30 * 86400.0
#: The longest reason for shelving an alarm, in characters.
MAX_SHELVE_REASON = 500

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")


class ApiError(Exception):
    """An HTTP error that is not a L{ControlError} (413, 429, 405 ...)."""

    def __init__(self, status: int, code: str, reason: str, headers: dict[bytes, bytes] | None = None,
                 **details: Any) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.headers = headers or {}
        self._body = {"error": code, "reason": reason, **details}

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return self._body


def bad(field: str, reason: str) -> NoReturn:
    """Raise a 400 naming C{field}."""
    raise ControlError("bad_request", f"{field}: {reason}", field=field)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


# -- the body -------------------------------------------------------------------


def body(request: IRequest, allowed: Iterable[str], max_body: int, required: bool = True) -> dict[str, Any]:
    """
    The JSON object body, size- and type-checked before it is parsed.

    The size is checked on C{Content-Length} first and then by reading at most
    one byte more than C{max_body} (Twisted has already buffered the body,
    beyond 100 KiB in a temporary file), never by loading an unbounded body.
    Fields outside C{allowed} are refused by name.
    """
    length = request.getHeader(b"content-length")
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            bad("Content-Length", "not a number")
        if size > max_body:
            raise ApiError(413, "too_large", f"body larger than {max_body} bytes")
    content = request.content
    data = b""
    if content is not None:
        content.seek(0)
        data = content.read(max_body + 1)
    if len(data) > max_body:
        raise ApiError(413, "too_large", f"body larger than {max_body} bytes")
    if not data:
        if required:
            bad("body", "a JSON object is required")
        return {}
    ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if ctype != b"application/json":
        bad("Content-Type", "must be application/json")
    try:
        parsed = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        bad("body", "not valid JSON")
    except RecursionError:
        bad("body", f"nested deeper than {MAX_DEPTH} levels")
    if depth(parsed) > MAX_DEPTH:
        bad("body", f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(parsed, dict):
        bad("body", "must be a JSON object")
    known = set(allowed)
    for key in parsed:
        if key not in known:
            bad(str(key), "unknown field")
    return parsed


def depth(value: Any) -> int:
    """How deeply C{value} nests lists and dicts (a scalar: 0), counted
    without recursion, so that no nesting can exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        level += 1
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break  # deep enough to refuse: no need to walk the rest
        stack.extend((child, level) for child in item)
    return deepest


# -- the query --------------------------------------------------------------------


def query(request: IRequest, name: str) -> str | None:
    """The last C{?name=} value as text; None when absent or empty (C{?name=} means "not given")."""
    values: list[bytes] | None = request.args.get(name.encode())
    if not values or not values[-1]:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        bad(name, "not UTF-8")


def query_flag(request: IRequest, name: str) -> bool:
    """C{?name=1} (or true, yes) or C{?name=0} (false, no, empty, absent)."""
    value = query(request, name)
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    bad(name, "must be 1 or 0")


def query_int(request: IRequest, name: str, default: int | None, low: int, high: int) -> int | None:
    """C{?name=N} with C{low <= N <= high}, or C{default} when absent."""
    value = query(request, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        bad(name, "must be an integer")
    if not low <= number <= high:
        bad(name, f"must be between {low} and {high}")
    return number


def iso_time(value: str, field: str, example: str) -> float:
    """An ISO-8601 time (UTC when it has no offset) as seconds since the epoch; refused naming C{field}."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        bad(field, f"{example} (e.g. 2026-12-07T18:00:00Z)")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def query_time(request: IRequest, name: str) -> float | None:
    """
    C{?name=} as seconds since the epoch (a number, or an ISO-8601 time,
    UTC when it has no offset), or None: the one reading of C{since} and
    C{until} for every route (runs, audit, logs, logbook).
    """
    value = query(request, name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = iso_time(value, name, "must be seconds since the epoch or an ISO-8601 time")
    if not math.isfinite(seconds):
        bad(name, "must be finite")
    return seconds


# -- fields of a body ---------------------------------------------------------------


def text(fields: dict[str, Any], field: str) -> str:
    """A required non-empty string."""
    value = fields.get(field)
    if not isinstance(value, str) or not value:
        bad(field, "must be a non-empty string")
    return value


def boolean(fields: dict[str, Any], field: str) -> bool:
    """An optional boolean (false when absent)."""
    value = fields.get(field, False)
    if not isinstance(value, bool):
        bad(field, "must be true or false")
    return value


def text_list(fields: dict[str, Any], field: str) -> list[str]:
    """A list of non-empty strings."""
    value = fields.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        bad(field, "must be a list of non-empty strings")
    return value


def roles(fields: dict[str, Any]) -> list[str]:
    """C{roles}: a list of known role names."""
    names = text_list(fields, "roles")
    for role in names:
        if role not in ROLES:
            bad("roles", f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return names


def configure_body(fields: dict[str, Any]) -> dict[str, Any]:
    """C{{"tag", "auto"}} or C{{"configs", "auto"}}, exactly one of tag and configs."""
    if ("tag" in fields) == ("configs" in fields):
        bad("tag", "give either tag or configs")
    result: dict[str, Any] = {"auto": boolean(fields, "auto")}
    if "tag" in fields:
        result["tag"] = text(fields, "tag")
    else:
        result["configs"] = text_list(fields, "configs")
        if not result["configs"]:
            bad("configs", "must not be empty")
    return result


#: The fields a start and a stop may carry: what the run record says (checked by L{run_body}).
RUN_FIELDS = {"start": ("type", "comment", "conditions"), "stop": ("comment",)}


def run_body(fields: dict[str, Any]) -> dict[str, Any]:
    """
    A start's C{{"type", "comment", "conditions"}} or a stop's
    C{{"comment"}}, each optional, checked for form (L{ecs.runinfo}): the
    type is a name (the center checks it is a declared one), a comment
    text, the conditions an object of scalars.  Empty comments are dropped.
    """
    result: dict[str, Any] = {}
    try:
        if fields.get("type") is not None:
            result["type"] = runinfo.check_type(fields["type"])
        comment = runinfo.check_comment(fields.get("comment"))
        if comment is not None:
            result["comment"] = comment
        if fields.get("conditions") is not None:
            result["conditions"] = runinfo.check_conditions(fields["conditions"])
    except runinfo.RunInfoError as e:
        bad(e.field, e.reason)
    return result


def shelve_body(fields: dict[str, Any], now: float) -> tuple[float, str]:
    """
    C{{"until": ISO-8601 time (UTC when it has no offset) or seconds from
    now, "reason": text}} of an alarm's shelving: the absolute time and the
    reason.  The time must be in the future and at most 30 days away, the
    reason 1 to 500 characters.
    """
    until = fields.get("until")
    if isinstance(until, bool) or until is None:
        bad("until", "required: an ISO-8601 time or seconds from now")
    if isinstance(until, (int, float)):
        if not math.isfinite(until) or until <= 0:
            bad("until", "seconds from now must be more than 0")
        when = now + float(until)
    elif isinstance(until, str):
        when = iso_time(until, "until", "not an ISO-8601 time nor a number of seconds")
        if when <= now:
            bad("until", "must be in the future")
    else:
        bad("until", "must be an ISO-8601 time or a number of seconds")
    if when > now + MAX_SHELVE:
        bad("until", "at most 30 days from now")
    reason = fields.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        bad("reason", "required: why the alarm is shelved")
    if len(reason) > MAX_SHELVE_REASON:
        bad("reason", f"at most {MAX_SHELVE_REASON} characters")
    return when, reason


__all__ = [
    "MAX_BODY",
    "MAX_DEPTH",
    "MAX_LIMIT",
    "MAX_SHELVE",
    "MAX_SHELVE_REASON",
    "RUN_FIELDS",
    "ApiError",
    "bad",
    "body",
    "boolean",
    "configure_body",
    "depth",
    "iso_time",
    "query",
    "query_flag",
    "query_int",
    "query_time",
    "roles",
    "run_body",
    "shelve_body",
    "text",
    "text_list",
]
