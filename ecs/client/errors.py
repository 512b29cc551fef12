# -*- test-case-name: tests.test_client_parts -*-
"""
The errors of the C{ecs} API commands: L{ClientError} carries the exit
code scripts rely on (L{ecs.exits}) and a message naming what was wrong,
with the HTTP status and the server's answer when there was one.
"""

from __future__ import annotations

from typing import Any

from ecs.client.commands import CommandError
from ecs.exits import EXIT_AUTH, EXIT_REFUSED


class ClientError(CommandError):
    """A failed API call: C{exit_code}, a message, and the HTTP status and body when there was an answer."""

    def __init__(self, exit_code: int, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(exit_code, message, body, status)


class StreamTimeout(ClientError):
    """L{EventStream.read}'s deadline passed; the stream is still usable."""


def exit_code_for(status: int, body: Any) -> int:
    """
    The exit code of an HTTP error answer.

    401 and 403 are L{EXIT_AUTH} (not logged in, token refused, role
    missing), except a 403 that names a control C{holder} field: that is
    "take control of the partition first", a refusal of the operation like
    the 409 "held by another user", so L{EXIT_REFUSED}.  Everything else
    (400, 404, 409, 423, 429, 5xx) is L{EXIT_REFUSED}.
    """
    if status == 401:
        return EXIT_AUTH
    if status == 403:
        return EXIT_REFUSED if isinstance(body, dict) and "holder" in body else EXIT_AUTH
    return EXIT_REFUSED


def reason(status: int, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("reason"), str):
        reason = body["reason"]
        code = body.get("error")
        return f"{reason} ({status} {code})" if isinstance(code, str) else f"{reason} ({status})"
    return f"HTTP {status}"


__all__ = ["ClientError", "StreamTimeout", "exit_code_for", "reason"]
