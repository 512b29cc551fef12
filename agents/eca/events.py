# -*- test-case-name: tests.test_eca_parts -*-
"""
L{EventLog}: the ECA's live events for the interfaces (types C{state},
C{progress}, C{log}, C{control}, C{allowed}, C{agent}), numbered and kept
in a bounded buffer, so that a reconnecting SSE client resumes with
C{Last-Event-ID}.  It knows nothing of what the events mean.

Two kinds of subscribers: L{EventLog.subscribe} calls back once per event,
as it is emitted (the SSH shell's follow, the CLI paths);
L{EventLog.subscribe_batch} calls back once per reactor turn with the
turn's events in order (the web's event streams: in a burst of a thousand
state changes, twenty consoles cost twenty calls a turn, not twenty
thousand).  The turn ends with a C{callLater(0)} on the injected clock;
without a clock each event is its own batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.interfaces import IEventSource

EVENT_BUFFER = 10_000

Event = tuple[int, str, dict[str, Any]]
Subscriber = Callable[[int, str, dict[str, Any]], None]
BatchSubscriber = Callable[[list[Event]], None]


class _Batch:
    """One batch subscriber: its callback, its partition, and the first event it may get."""

    __slots__ = ("callback", "first", "partition")

    def __init__(self, callback: BatchSubscriber, partition: str | None, first: int) -> None:
        self.callback = callback
        self.partition = partition
        self.first = first


@implementer(IEventSource)
class EventLog:
    """Numbered events, a bounded buffer and the subscribers."""

    _log = Logger()

    def __init__(self, size: int = EVENT_BUFFER, clock: IReactorTime | None = None) -> None:
        self._events: deque[tuple[int, str, dict[str, Any], str | None]] = deque(maxlen=size)
        self._next = 1
        self._subscribers: list[tuple[Subscriber, str | None]] = []
        self._clock = clock
        self._batches: list[_Batch] = []
        #: this turn's events for the batch subscribers, and the call that ends the turn
        self._turn: list[tuple[int, str, dict[str, Any], str | None]] = []
        self._flush_call: IDelayedCall | None = None

    def emit(self, type: str, data: dict[str, Any], partition: str | None = None) -> int:
        """Number, buffer and deliver one live event (a subscriber that raises is logged, never raised)."""
        number = self._next
        self._next += 1
        entry = (number, type, data, partition)
        self._events.append(entry)
        for callback, wanted in list(self._subscribers):
            if wanted is None or partition is None or wanted == partition:
                try:
                    callback(number, type, data)
                except Exception:
                    self._log.failure("event subscriber raised")
        if self._batches:
            self._turn.append(entry)
            if self._clock is None:
                self._flush()
            elif self._flush_call is None:
                self._flush_call = self._clock.callLater(0, self._flush)
        return number

    def subscribe(self, callback: Subscriber, partition_id: str | None = None) -> Callable[[], None]:
        """See L{IEventSource.subscribe}."""
        entry = (callback, partition_id)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def subscribe_batch(self, callback: BatchSubscriber, partition_id: str | None = None) -> Callable[[], None]:
        """See L{IEventSource.subscribe_batch}."""
        batch = _Batch(callback, partition_id, self._next)
        self._batches.append(batch)

        def unsubscribe() -> None:
            if batch in self._batches:
                self._batches.remove(batch)

        return unsubscribe

    def _flush(self) -> None:
        """The turn is over: give each batch subscriber the turn's events it wants, in order."""
        self._flush_call = None
        turn, self._turn = self._turn, []
        if not turn:
            return
        # One list per partition filter, shared by its subscribers (a
        # subscriber must not change it: the web encodes it once for all).
        shared: dict[str | None, list[Event]] = {}
        for batch in list(self._batches):
            if batch not in self._batches:  # unsubscribed by an earlier callback of this turn
                continue
            wanted = batch.partition
            events = shared.get(wanted)
            if events is None:
                events = shared[wanted] = [
                    (n, t, d) for n, t, d, p in turn if wanted is None or p is None or p == wanted
                ]
            if events and events[0][0] < batch.first:  # subscribed during the turn
                events = [e for e in events if e[0] >= batch.first]
            if not events:
                continue
            try:
                batch.callback(events)
            except Exception:
                self._log.failure("event batch subscriber raised")

    def events_since(
        self, event_id: int, partition_id: str | None = None
    ) -> list[tuple[int, str, dict[str, Any]]] | None:
        """See L{IEventSource.events_since}."""
        if self._events and event_id < self._events[0][0] - 1:
            return None
        if event_id >= self._next:
            return None  # an id from an ECA before a restart (ids start at 1 again)
        return [
            (n, t, d)
            for n, t, d, p in self._events
            if n > event_id and (partition_id is None or p is None or p == partition_id)
        ]
