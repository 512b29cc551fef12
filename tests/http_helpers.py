"""
What the HTTP tests share: a finished response (L{Result}), the SSE parser
(L{parse_events}) and a protocol that reads an event stream piece by piece
(L{SSEReader}); C{_UNSET} marks "no JSON body" in the tests' C{call}.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

_UNSET = object()


@attrs.frozen
class Result:
    """A finished HTTP response: status, raw body, the treq response."""

    code: int
    body: bytes
    response: Any

    @property
    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> list[str]:
        """Every value of a response header."""
        return self.response.headers.getRawHeaders(name, [])


def parse_events(data: bytes) -> list[dict[str, Any]]:
    """Parse SSE blocks into C{{"id", "event", "data"}} dicts (comments skipped)."""
    events = []
    for block in data.decode().split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            if "id" in fields:
                fields["id"] = int(fields["id"])
            events.append(fields)
    return events


class SSEReader(Protocol):
    """Receives an event-stream body piece by piece; can hang up."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason

    def events(self) -> list[dict[str, Any]]:
        """The events (not comments or retry lines) received so far."""
        return parse_events(self.data)

    def hang_up(self) -> None:
        """Close the connection as a browser tab does."""
        if self.transport is not None and self.lost is None:
            self.transport.loseConnection()
