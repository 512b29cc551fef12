# -*- test-case-name: tests.test_web -*-
"""
One open C{GET /api/events} response of the ECA's API (L{ecs.web.api}): the
events as SSE blocks, keep-alive comments, and the rule for slow clients
(the stream is a push producer on its connection; past C{max_buffer} queued
bytes the client is dropped and resumes later with its Last-Event-ID).

Bursts (a thousand detectors changing state in one reactor turn, twenty
consoles open) cost the ECA one write per event per console; two things
keep that cheap, neither dropping nor reordering anything:

- an event is encoded once for every stream (L{_Encoded}: the last event's
  bytes, kept with the very objects they were made from);
- the first L{IMMEDIATE} events of a reactor turn are written at once (a
  lone state change leaves with no added delay); from the next one on, the
  stream collects the turn's events and writes them as one chunk when the
  turn ends (C{callLater(0)} on the injected clock), or as soon as they
  reach C{max_buffer} bytes.  In a burst (the previous turn carried more
  than one event: the ECA reads the PCA's burst a few messages per turn)
  it collects from the first event, so each turn costs one write per
  stream.  Keep-alives and later events queue behind what was collected,
  so the order on the wire is the order of the events.

When the ECA gives the web a batch subscription (C{subscribe_many}: its
L{agents.eca.events.EventLog} calls back once per reactor turn with the
turn's events), a stream takes a turn's events in one call,
L{EventStream.send_many}, and writes them as one chunk; the chunk is made
once for every stream given the same list (L{_EncodedTurn}).

A stream whose session ends (logout, a newer login of the user, expiry,
revocation) is closed by the ECA; when a newer login ended it, a last
C{session_ended} event says so first (L{EventStream.end}).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.http import Request
from zope.interface import implementer

#: Events of one reactor turn written one by one before a stream collects
#: the rest of the turn into one chunk (see the module docstring).
IMMEDIATE = 16


class _Encoded:
    """
    The SSE block of the last event encoded, reused while the next stream
    sends the same event: same id, same type, the same C{data} object (the
    reference is kept, so its identity cannot be reused by another object).
    """

    def __init__(self) -> None:
        self._key: tuple[int, str, Any] | None = None
        self._block = b""

    def block(self, event_id: int, kind: str, data: dict[str, Any]) -> bytes:
        """The bytes of one event, encoded at most once in a row."""
        key = self._key
        if key is not None and key[0] == event_id and key[1] == kind and key[2] is data:
            return self._block
        clean = "".join(c for c in str(kind) if c not in "\r\n")
        payload = json.dumps(data, separators=(",", ":"), default=str)
        self._block = f"id: {int(event_id)}\nevent: {clean}\ndata: {payload}\n\n".encode()
        self._key = (event_id, kind, data)
        return self._block


_ENCODED = _Encoded()


class _EncodedTurn:
    """
    The chunk of the last list of events encoded whole, reused while the
    next stream sends the same list (the event source hands one list to
    every stream with the same partition filter; the reference is kept).
    """

    def __init__(self) -> None:
        self._events: list[tuple[int, str, dict[str, Any]]] | None = None
        self._length = 0
        self._chunk = b""

    def chunk(self, events: list[tuple[int, str, dict[str, Any]]]) -> bytes:
        """The bytes of a turn's events, encoded at most once in a row."""
        if events is self._events and len(events) == self._length:
            return self._chunk
        self._chunk = b"".join(_ENCODED.block(n, t, d) for n, t, d in events)
        self._events, self._length = events, len(events)
        return self._chunk


_ENCODED_TURN = _EncodedTurn()

Events = list[tuple[int, str, dict[str, Any]]]


@implementer(IPushProducer)
class EventStream:
    """One open C{/api/events} response: writes events, keep-alives, and
    drops itself when its client cannot keep up (see the module docstring)."""

    _log = Logger()

    def __init__(self, request: Request, clock: IReactorTime, keepalive: float, max_buffer: int,
                 on_close: Callable[[EventStream], None]) -> None:
        self.request = request
        self._max_buffer = max_buffer
        self._on_close = on_close
        self._paused = False
        self._queue: list[bytes] = []
        self._queued = 0
        self._last_id = -1
        self._unsubscribe: Callable[[], None] | None = None
        self.closed = False
        self.dropped = False
        #: the session token that opened the stream, and its user
        #: (L{ecs.web.api} ends the streams of a session when it logs out or
        #: a newer login of the user ends it)
        self.token: str | None = None
        self.user: str | None = None
        self.done: defer.Deferred[None] = defer.Deferred()
        self._keepalive = LoopingCall(self._send_keepalive)
        self._keepalive.clock = clock
        self._keepalive_interval = keepalive
        self._clock = clock
        #: events sent in this reactor turn, the call that ends the turn,
        #: and the turn's collected chunks (None: writing through)
        self._in_turn = 0
        self._burst = False
        self._turn: IDelayedCall | None = None
        self._pending: list[bytes] | None = None
        self._pending_size = 0

    def start(self, replay: list[tuple[int, str, dict[str, Any]]] | None,
              subscribe: Callable[[Callable[[int, str, dict[str, Any]], None]], Callable[[], None]],
              subscribe_many: Callable[[Callable[[Events], None]], Callable[[], None]] | None = None) -> None:
        """Send the replay (None: a reload event), then follow live events
        (a turn at a time through C{subscribe_many} when given, else one by one)."""
        request = self.request
        if getattr(request, "channel", None) is None:
            # Gone already: notifyFinish would never fire.
            self._finished(None)
            return
        request.notifyFinish().addBoth(self._finished)
        request.registerProducer(self, True)
        self._write(b"retry: 3000\n\n")
        if replay is None:
            self._write(b"event: reload\ndata: {}\n\n")
        else:
            for event_id, kind, data in replay:
                self.send(event_id, kind, data)
        if not self.closed:
            if subscribe_many is not None:
                self._unsubscribe = subscribe_many(self.send_many)
            else:
                self._unsubscribe = subscribe(self.send)
            self._keepalive.start(self._keepalive_interval, now=False)

    def send(self, event_id: int, kind: str, data: dict[str, Any]) -> None:
        """Write one event (the center's subscriber callback)."""
        if self.closed or event_id <= self._last_id:
            return
        self._last_id = event_id
        self._in_turn += 1
        if self._turn is None:
            self._turn = self._clock.callLater(0, self._end_turn)
        if self._in_turn > (0 if self._burst else IMMEDIATE) and self._pending is None and not self._paused:
            self._pending, self._pending_size = [], 0
        self._write(_ENCODED.block(event_id, kind, data))

    def send_many(self, events: Events) -> None:
        """Write a reactor turn's events, in order, as one chunk (the batch subscriber callback)."""
        if self.closed or not events:
            return
        if events[0][0] > self._last_id:
            chunk = _ENCODED_TURN.chunk(events)
        else:  # some were in the replay already
            chunk = b"".join(_ENCODED.block(n, t, d) for n, t, d in events if n > self._last_id)
        self._last_id = max(self._last_id, events[-1][0])
        if chunk:
            self._write(chunk)

    def _end_turn(self) -> None:
        """The reactor turn is over: write what it collected, as one chunk."""
        self._turn = None
        self._burst = self._in_turn > 1
        self._in_turn = 0
        self._flush_pending()

    def _flush_pending(self) -> None:
        pending, self._pending, self._pending_size = self._pending, None, 0
        if pending:
            self._write(b"".join(pending))

    def _send_keepalive(self) -> None:
        if not self._paused:
            self._write(b": keep-alive\n\n")

    def _write(self, chunk: bytes) -> None:
        if self.closed:
            return
        if self._pending is not None:
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size >= self._max_buffer:
                self._flush_pending()
            return
        if not self._paused:
            self.request.write(chunk)
            return
        self._queue.append(chunk)
        self._queued += len(chunk)
        if self._queued > self._max_buffer:
            self._drop()

    def end(self, reason: str | None = None) -> None:
        """
        Close the stream from our side (its session ended): the client's
        reconnection is then refused with 401 and a page goes to its login.
        With C{reason}, a last C{session_ended} event (no id) carries it
        first, and the connection is closed once that is written (aborted at
        once if the client was not reading anyway).
        """
        if reason is None or self.closed or self._paused:
            self._close()
            self._abort()
            return
        self._flush_pending()
        payload = json.dumps({"reason": reason}, separators=(",", ":"))
        self._write(f"event: session_ended\ndata: {payload}\n\n".encode())
        self._close()
        transport = getattr(self.request, "transport", None)
        if transport is not None:
            transport.loseConnection()

    def _drop(self) -> None:
        self._log.warn("dropping a slow event-stream client ({queued} bytes queued)", queued=self._queued)
        self.dropped = True
        self._close()
        self._abort()

    def _abort(self) -> None:
        transport = getattr(self.request, "transport", None)
        if transport is not None:
            abort = getattr(transport, "abortConnection", None) or transport.loseConnection
            abort()

    # IPushProducer: the connection tells us when its buffer is full.
    def pauseProducing(self) -> None:
        """The transport's buffer is full: queue from now on (what the turn collected first)."""
        self._paused = True
        self._flush_pending()

    def resumeProducing(self) -> None:
        """The transport drained: write what was queued."""
        self._paused = False
        queue, self._queue, self._queued = self._queue, [], 0
        for chunk in queue:
            self._write(chunk)

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._close()

    def _finished(self, result: object) -> None:
        self._close()
        if not self.done.called:
            self.done.callback(None)

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue, self._queued = [], 0
        self._pending, self._pending_size = None, 0
        if self._turn is not None:
            if self._turn.active():
                self._turn.cancel()
            self._turn = None
        if self._keepalive.running:
            self._keepalive.stop()
        if self._unsubscribe is not None:
            unsubscribe, self._unsubscribe = self._unsubscribe, None
            unsubscribe()
        self._on_close(self)


__all__ = ["EventStream"]
