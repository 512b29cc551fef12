# -*- test-case-name: tests.test_eca_parts -*-
"""
L{EventLog}: the ECA's live events for the interfaces (types C{state},
C{progress}, C{log}, C{control}, C{allowed}, C{agent}), numbered and kept
in a bounded buffer, so that a reconnecting SSE client resumes with
C{Last-Event-ID}.  It knows nothing of what the events mean.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.interfaces import IEventSource

EVENT_BUFFER = 10_000

Subscriber = Callable[[int, str, dict[str, Any]], None]


@implementer(IEventSource)
class EventLog:
    """Numbered events, a bounded buffer and the subscribers."""

    _log = Logger()

    def __init__(self, size: int = EVENT_BUFFER) -> None:
        self._events: deque[tuple[int, str, dict[str, Any], str | None]] = deque(maxlen=size)
        self._next = 1
        self._subscribers: list[tuple[Subscriber, str | None]] = []

    def emit(self, type: str, data: dict[str, Any], partition: str | None = None) -> int:
        """Number, buffer and deliver one live event (a subscriber that raises is logged, never raised)."""
        number = self._next
        self._next += 1
        self._events.append((number, type, data, partition))
        for callback, wanted in list(self._subscribers):
            if wanted is None or partition is None or wanted == partition:
                try:
                    callback(number, type, data)
                except Exception:
                    self._log.failure("event subscriber raised")
        return number

    def subscribe(self, callback: Subscriber, partition_id: str | None = None) -> Callable[[], None]:
        """See L{IEventSource.subscribe}."""
        entry = (callback, partition_id)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def events_since(
        self, event_id: int, partition_id: str | None = None
    ) -> list[tuple[int, str, dict[str, Any]]] | None:
        """See L{IEventSource.events_since}."""
        if self._events and event_id < self._events[0][0] - 1:
            return None
        return [
            (n, t, d)
            for n, t, d, p in self._events
            if n > event_id and (partition_id is None or p is None or p == partition_id)
        ]
