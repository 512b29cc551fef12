# -*- test-case-name: tests.test_transport -*-
"""
The client half of request/reply, shared by every transport.

A transport's client hands L{Correlator} a C{send(frame)} callable and every
frame it receives: every request has a deadline kept by our own timer,
frames the medium cannot take yet wait in an ordered outbox until their
deadline, late replies are dropped, and nothing is lost silently.  The
serving half is L{ecs.net.dispatcher.Dispatcher}; both are re-exported by
L{ecs.net.transport}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ecs import protocol
from ecs.net.transport import (
    UNAUTHORISED,
    RequestError,
    RequestTimeout,
    WouldBlock,
    log_frame_problem,
    new_epoch,
)
from ecs.protocol import Envelope, ProtocolError


class Correlator:
    """
    The client half of request/reply, independent of the medium.

    C{send(frame)} puts one frame on the wire, or raises L{WouldBlock} when
    the peer is not connected or its queue is full.  Such frames wait in an
    ordered outbox and are retried until their deadline, first after 1 ms
    and then after twice the previous wait, up to C{retry_interval} (a fresh
    peer is usually connected within a few milliseconds, so the first request
    need not wait a whole interval); the wait starts again at 1 ms after a
    frame is taken.  A request then fails with C{timeout} naming the peer as
    unreachable, a notification is logged as lost at its deadline.  A full
    outbox fails new messages at once with C{overloaded}: nothing is dropped
    silently.

    The medium reports a refused security handshake with
    L{handshake_refused}: pending requests fail at once with L{UNAUTHORISED}
    and so do new ones, until L{handshake_succeeded}.
    """

    _log = Logger()

    #: The first wait before retrying a refused frame, in seconds.
    first_retry = 0.001

    def __init__(
        self,
        send: Callable[[bytes], None],
        clock: IReactorTime,
        sender: str,
        address: str,
        default_timeout: float = 5.0,
        max_size: int = protocol.DEFAULT_MAX_SIZE,
        max_outbox: int = 100_000,
        retry_interval: float = 0.02,
    ) -> None:
        self._send = send
        self._clock = clock
        self.sender = sender
        self.address = address
        self._default_timeout = default_timeout
        self._max_size = max_size
        self._max_outbox = max_outbox
        self._retry_interval = retry_interval
        self._next_retry = min(self.first_retry, retry_interval)
        self._refusal: str | None = None
        self._prefix = new_epoch()
        self._counter = 0
        self._pending: dict[str, tuple[defer.Deferred[dict[str, Any]], IDelayedCall, str]] = {}
        self._outbox: deque[tuple[bytes, str | None, float, str]] = deque()
        self._retry: IDelayedCall | None = None
        self._closed = False
        self.late_replies = 0
        #: When the peer last sent anything (reactor time), or None.
        self.last_received: float | None = None
        self.lost_notifications = 0

    @property
    def pending(self) -> int:
        """How many requests await a reply."""
        return len(self._pending)

    @property
    def queued(self) -> int:
        """How many messages wait to be sent (peer unreachable or busy)."""
        return len(self._outbox)

    @property
    def refusal(self) -> str | None:
        """Why the peer refuses this client's handshake, or L{None}."""
        return self._refusal

    def request(
        self,
        target: str,
        type: str,
        body: dict[str, Any],
        timeout: float | None = None,
        sender: str | None = None,
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.net.transport.IClient.request}."""
        if self._closed:
            return defer.fail(RequestError("closed", f"connection to {self.address} is closed"))
        if self._refusal is not None:
            return defer.fail(self._unauthorised(f"{type} to {target}"))
        self._counter += 1
        request_id = f"{self._prefix}-{self._counter}"
        envelope = protocol.request(type, sender or self.sender, target, request_id, body)
        try:
            frame = self._encode(envelope)
        except RequestError as e:
            return defer.fail(e)
        what = f"{type} to {target}"
        if len(self._outbox) >= self._max_outbox:
            return defer.fail(self._overloaded(what))
        deadline = self._default_timeout if timeout is None else timeout

        def cancel(d: defer.Deferred[dict[str, Any]]) -> None:
            entry = self._pending.pop(request_id, None)
            if entry is not None and entry[1].active():
                entry[1].cancel()

        d: defer.Deferred[dict[str, Any]] = defer.Deferred(cancel)
        timer = self._clock.callLater(deadline, self._expired, request_id, deadline)
        self._pending[request_id] = (d, timer, what)
        self._outbox.append((frame, request_id, self._clock.seconds() + deadline, what))
        self._flush()
        return d

    def notify(self, target: str, type: str, body: dict[str, Any], sender: str | None = None) -> None:
        """
        See L{ecs.net.transport.IClient.notify}.

        @raise RequestError: when the message cannot be encoded or the outbox
            is full, so that a lost notification is never silent.
        """
        if self._closed:
            raise RequestError("closed", f"connection to {self.address} is closed")
        if self._refusal is not None:
            raise self._unauthorised(f"{type} to {target}")
        frame = self._encode(protocol.notify(type, sender or self.sender, target, body))
        what = f"{type} to {target}"
        if len(self._outbox) >= self._max_outbox:
            raise self._overloaded(what)
        self._outbox.append((frame, None, self._clock.seconds() + self._default_timeout, what))
        self._flush()

    def _encode(self, envelope: Envelope) -> bytes:
        try:
            return protocol.encode(envelope, self._max_size)
        except ProtocolError as e:
            raise RequestError(e.code, e.reason) from e
        except (TypeError, ValueError, RecursionError) as e:
            raise RequestError(protocol.BAD_REQUEST, f"body cannot be encoded: {e}") from e

    def _overloaded(self, what: str) -> RequestError:
        self._log.error(
            "client {address}: outbox full ({count} messages), refusing {what}",
            address=self.address,
            count=len(self._outbox),
            what=what,
        )
        return RequestError(
            protocol.OVERLOADED,
            f"{len(self._outbox)} messages already wait for {self.address}; refusing {what}",
        )

    def _flush(self) -> None:
        """Send what the medium takes now; retry the rest later, in order."""
        now = self._clock.seconds()
        while self._outbox:
            frame, request_id, expiry, what = self._outbox[0]
            if request_id is not None and request_id not in self._pending:
                self._outbox.popleft()  # expired or cancelled meanwhile
                continue
            if request_id is None and now >= expiry:
                self._outbox.popleft()
                self.lost_notifications += 1
                self._log.error(
                    "client {address}: {what} lost: peer unreachable for {seconds} s",
                    address=self.address,
                    what=what,
                    seconds=self._default_timeout,
                )
                continue
            try:
                self._send(frame)
            except WouldBlock:
                if self._retry is None or not self._retry.active():
                    delay = self._next_retry
                    self._next_retry = min(delay * 2, self._retry_interval)
                    if request_id is None:
                        # Come back at the notification's deadline at the
                        # latest, so that its loss is reported on time.
                        delay = min(delay, expiry - now)
                    self._retry = self._clock.callLater(delay, self._flush)
                return
            except Exception as e:
                self._outbox.popleft()
                self._fail_send(request_id, what, e)
                continue
            self._outbox.popleft()
            self._next_retry = min(self.first_retry, self._retry_interval)
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _unauthorised(self, what: str) -> RequestError:
        """The error for C{what} while the peer refuses us."""
        return RequestError(UNAUTHORISED, f"{what}: {self._refusal}")

    def handshake_refused(self, reason: str) -> None:
        """
        The peer refused this client's security handshake, for C{reason}
        (which names the endpoint and the likely cause).

        Every pending request fails now with L{UNAUTHORISED}, queued
        notifications are counted as lost (and logged), and new messages are
        refused at once until L{handshake_succeeded}: a client that cannot
        get in learns why at once instead of timing out as "unreachable".
        """
        if self._closed:
            return
        self._refusal = reason
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._next_retry = min(self.first_retry, self._retry_interval)
        unsent = sum(1 for item in self._outbox if item[1] is None)
        self._outbox.clear()
        if unsent:
            self.lost_notifications += unsent
            self._log.error(
                "client {address}: {count} notification(s) lost: {reason}",
                address=self.address,
                count=unsent,
                reason=reason,
            )
        pending, self._pending = self._pending, {}
        for d, timer, what in pending.values():
            if timer.active():
                timer.cancel()
            d.errback(self._unauthorised(what))

    def handshake_succeeded(self) -> None:
        """The peer accepted a handshake: messages are sent again."""
        self._refusal = None

    def _fail_send(self, request_id: str | None, what: str, error: Exception) -> None:
        reason = f"cannot send {what} to {self.address}: {error}"
        if request_id is None:
            self.lost_notifications += 1
            self._log.error("client {address}: {reason}", address=self.address, reason=reason)
            return
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            if entry[1].active():
                entry[1].cancel()
            entry[0].errback(RequestError(protocol.INTERNAL, reason))

    def _expired(self, request_id: str, deadline: float) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return
        d, _, what = entry
        unsent = any(item[1] == request_id for item in self._outbox)
        if unsent:
            reason = f"{what} not delivered within {deadline} s: {self.address} unreachable or busy"
        else:
            reason = f"no reply to {what} from {self.address} within {deadline} s"
        d.errback(RequestTimeout(reason))

    def frame_received(self, frames: list[bytes]) -> None:
        """Handle one received message: a reply, normally."""
        self.last_received = self._clock.seconds()
        if len(frames) != 1:
            self._log.warn(
                "client {address}: dropped a message of {count} frames",
                address=self.address,
                count=len(frames),
            )
            return
        try:
            envelope = protocol.decode(frames[0], self._max_size)
        except ProtocolError as e:
            log_frame_problem(self._log, f"client {self.address}", self.address, e)
            return
        if envelope.kind != "reply":
            self._log.warn(
                "client {address}: dropped a {kind} (expected replies only)",
                address=self.address,
                kind=envelope.kind,
            )
            return
        entry = self._pending.pop(str(envelope.id), None)
        if entry is None:
            self.late_replies += 1
            self._log.debug(
                "client {address}: dropped late or unknown reply {id}",
                address=self.address,
                id=envelope.id,
            )
            return
        d, timer, _ = entry
        if timer.active():
            timer.cancel()
        if envelope.status == "ok":
            d.callback(envelope.body)
        else:
            d.errback(RequestError(str(envelope.body["code"]), str(envelope.body["reason"])))

    def close(self) -> None:
        """Fail every pending request and refuse new ones."""
        self._closed = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        unsent = sum(1 for item in self._outbox if item[1] is None)
        if unsent:
            self.lost_notifications += unsent
            self._log.warn(
                "client {address}: closed with {count} notification(s) not sent",
                address=self.address,
                count=unsent,
            )
        self._outbox.clear()
        pending, self._pending = self._pending, {}
        for d, timer, what in pending.values():
            if timer.active():
                timer.cancel()
            d.errback(
                RequestError("closed", f"connection to {self.address} closed before reply to {what}")
            )


class CorrelatedClient:
    """
    The request side of an L{ecs.net.transport.IClient} whose messages go
    through C{self.correlator}; each medium's client provides the rest.
    """

    correlator: Correlator

    @property
    def last_received(self) -> float | None:
        """See L{ecs.net.transport.IClient.last_received}."""
        return self.correlator.last_received

    def request(
        self,
        target: str,
        type: str,
        body: dict[str, Any],
        timeout: float | None = None,
        sender: str | None = None,
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.net.transport.IClient.request}."""
        return self.correlator.request(target, type, body, timeout, sender)

    def notify(self, target: str, type: str, body: dict[str, Any], sender: str | None = None) -> None:
        """See L{ecs.net.transport.IClient.notify}."""
        self.correlator.notify(target, type, body, sender)
