# -*- test-case-name: tests.test_transport -*-
"""
The messaging interface every agent uses, independent of the medium.

An agent process owns one L{INode}.  Through it, it:

- serves requests on one endpoint (L{INode.serve}), where any number of
  agents register handlers by id (a sim host hosts hundreds behind one
  socket);
- sends requests and notifications to other endpoints (L{INode.connect});
- publishes events with sequence numbers (L{INode.publish});
- subscribes to other publishers (L{INode.subscribe}).

Two implementations share the request/reply logic in this module:
L{ecs.zmq_transport} (ZeroMQ through txZMQ: ROUTER, DEALER, PUB, SUB) and
L{ecs.memory_transport} (in-process, for unit tests with a
L{twisted.internet.task.Clock}).  Neither leaks into agent code.

The request/reply contract lives in L{Dispatcher} (serving side) and
L{Correlator} (client side): every request gets exactly one reply, every
request has a deadline kept by our own timer, late replies are dropped, and
a handler that raises never stops the server.
"""

from __future__ import annotations

import inspect
import os
import secrets
from collections import deque
from typing import Any, Awaitable, Callable, Mapping, Union

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

from ecs import protocol
from ecs.protocol import Envelope, ProtocolError

#: Error code of a request refused locally because the peer refused this
#: client's security handshake (CURVE key not authorised, wrong server key,
#: security settings that differ).  Defined here rather than in
#: L{ecs.protocol} because it never travels on the wire: the client's
#: transport makes it up from what its socket reports.
UNAUTHORISED = "unauthorised"

HandlerResult = Union[dict, "defer.Deferred[dict]", Awaitable[dict], None]
Handler = Callable[["Request"], HandlerResult]


class RequestError(Exception):
    """
    A request answered with an error, or not answered in time.

    @ivar code: machine-readable code (see L{ecs.protocol}).
    @ivar reason: human-readable reason.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class RequestTimeout(RequestError):
    """No reply before the deadline."""

    def __init__(self, reason: str) -> None:
        super().__init__(protocol.TIMEOUT, reason)


@attrs.frozen
class Request:
    """A validated request (or notification) as a handler sees it."""

    type: str
    sender: str
    target: str
    body: dict[str, Any]
    id: str | None = None

    @property
    def is_notification(self) -> bool:
        """True for one-way messages, which get no reply."""
        return self.id is None


class IServer(Interface):
    """The serving side of one endpoint."""

    address = Attribute("The endpoint actually bound, e.g. tcp://127.0.0.1:40123.")

    def register(agent_id: str, handlers: Mapping[str, Handler]) -> None:
        """Serve C{handlers} (message type -> handler) for C{agent_id}."""

    def unregister(agent_id: str) -> None:
        """Stop serving C{agent_id}; its requests get C{unknown_target}."""


class IClient(Interface):
    """A connection to one remote endpoint."""

    address = Attribute("The endpoint connected to.")

    def request(
        target: str, type: str, body: dict, timeout: float | None = None, sender: str | None = None
    ) -> "defer.Deferred[dict]":
        """
        Send a request; fire with the reply body, or fail with
        L{RequestError} (error reply) or L{RequestTimeout}.
        """

    def notify(target: str, type: str, body: dict, sender: str | None = None) -> None:
        """Send a one-way message."""


class IPublisher(Interface):
    """One publish socket with its own epoch and sequence counter."""

    address = Attribute("The endpoint actually bound.")
    epoch = Attribute("Identifies this publisher's lifetime; changes on restart.")
    seq = Attribute("Sequence number of the last published event (0: none yet).")

    def publish(topic: str, type: str, body: dict) -> int:
        """Publish one event and return its sequence number."""


class ISubscriber(Interface):
    """A subscription to one publisher."""

    address = Attribute("The publisher's endpoint.")

    def close() -> None:
        """Stop receiving."""


class INode(Interface):
    """Everything an agent process needs to talk to others."""

    def serve(address: str) -> IServer:
        """Bind the request endpoint (C{*} as port: any free port)."""

    def connect(address: str) -> IClient:
        """A client for C{address}; one per address, shared."""

    def publish(address: str) -> IPublisher:
        """Bind a publisher."""

    def subscribe(
        address: str, prefixes: list[str], callback: Callable[[Envelope], None]
    ) -> ISubscriber:
        """Subscribe to topics starting with any of C{prefixes}."""

    def close() -> "defer.Deferred[None]":
        """Close every socket; pending requests fail."""


def new_epoch() -> str:
    """A fresh random id for a publisher's or client's lifetime."""
    return secrets.token_hex(6)


def _log_frame_problem(log: Logger, where: str, peer: object, error: ProtocolError) -> None:
    log.warn(
        "{where}: dropped malformed message from {peer!r}: {reason}",
        where=where,
        peer=peer,
        reason=error.reason,
        code=error.code,
    )


class Dispatcher:
    """
    The serving half of request/reply, independent of the medium.

    The medium hands every received frame to L{frame_received} with an
    opaque peer reference, and gives a C{send(peer, frame)} callable for
    replies.  The dispatcher guarantees one reply per request: handler
    results, handler exceptions and handler timeouts are all answered, and
    anything after the first answer is dropped.
    """

    _log = Logger()

    def __init__(
        self,
        send: Callable[[object, bytes], None],
        clock: IReactorTime,
        name: str = "server",
        max_size: int = protocol.DEFAULT_MAX_SIZE,
        handler_timeout: float = 30.0,
    ) -> None:
        self._send = send
        self._clock = clock
        self._name = name
        self._max_size = max_size
        self._handler_timeout = handler_timeout
        self._agents: dict[str, Mapping[str, Handler]] = {}
        self._closed = False
        # One entry per awaited handler; keyed by a fresh token, not by
        # (peer, id), so that a peer reusing an id cannot make one request's
        # completion cancel another's deadline.
        self._running: dict[object, IDelayedCall] = {}
        self.received = 0
        self.dropped = 0

    def register(self, agent_id: str, handlers: Mapping[str, Handler]) -> None:
        """Serve C{handlers} for C{agent_id} (replacing any earlier set)."""
        self._agents[agent_id] = dict(handlers)

    def unregister(self, agent_id: str) -> None:
        """Stop serving C{agent_id}."""
        self._agents.pop(agent_id, None)

    @property
    def agents(self) -> list[str]:
        """The ids served here."""
        return list(self._agents)

    def frame_received(self, peer: object, frames: list[bytes]) -> None:
        """Handle one received message (a list of frames)."""
        self.received += 1
        if len(frames) != 1:
            # A well-behaved peer sends exactly one frame; there is no
            # request id to answer to without parsing an arbitrary one.
            self.dropped += 1
            self._log.warn(
                "{where}: dropped a message of {count} frames from {peer!r} (expected 1)",
                where=self._name,
                count=len(frames),
                peer=peer,
            )
            return
        try:
            envelope = protocol.decode(frames[0], self._max_size)
        except ProtocolError as e:
            _log_frame_problem(self._log, self._name, peer, e)
            if e.request_id is not None and e.sender is not None and e.kind == "request":
                self._reply(
                    peer,
                    protocol.error_reply_for(
                        "error", protocol.ENDPOINT_TARGET, e.sender, e.request_id, e.code, e.reason
                    ),
                )
            else:
                self.dropped += 1
            return
        if envelope.kind not in ("request", "notify"):
            self.dropped += 1
            self._log.warn(
                "{where}: dropped a {kind} from {sender} (only requests are served here)",
                where=self._name,
                kind=envelope.kind,
                sender=envelope.sender,
            )
            return
        self._dispatch(peer, envelope)

    def _dispatch(self, peer: object, envelope: Envelope) -> None:
        is_request = envelope.kind == "request"
        handlers = self._agents.get(envelope.target)
        if envelope.type == "heartbeat" and (
            handlers is not None or envelope.target == protocol.ENDPOINT_TARGET
        ):
            if is_request:
                self._reply(peer, protocol.ok_reply(envelope, {"agents": len(self._agents)}))
            return
        if handlers is None:
            self._refuse(
                peer,
                envelope,
                protocol.UNKNOWN_TARGET,
                f"no agent {envelope.target!r} at this endpoint",
            )
            return
        handler = handlers.get(envelope.type)
        if handler is None:
            self._refuse(
                peer,
                envelope,
                protocol.UNKNOWN_TYPE,
                f"agent {envelope.target!r} does not handle {envelope.type!r} "
                f"(known: {', '.join(sorted(handlers)) or 'none'})",
            )
            return
        request = Request(envelope.type, envelope.sender, envelope.target, envelope.body, envelope.id)
        try:
            result = handler(request)
            if inspect.iscoroutine(result):
                result = defer.Deferred.fromCoroutine(result)
        except RequestError as e:
            self._refuse(peer, envelope, e.code, e.reason)
            return
        except Exception:
            self._log.failure(
                "{where}: handler for {type} of {target} raised",
                where=self._name,
                type=envelope.type,
                target=envelope.target,
            )
            self._refuse(
                peer, envelope, protocol.INTERNAL, f"internal error while handling {envelope.type!r}"
            )
            return
        if not is_request:
            if isinstance(result, defer.Deferred):
                result.addErrback(self._notification_failed, envelope)
            return
        if isinstance(result, defer.Deferred):
            self._await(peer, envelope, result)
        else:
            self._answer(peer, envelope, result)

    def _await(self, peer: object, envelope: Envelope, result: "defer.Deferred[Any]") -> None:
        key = object()
        answered = []

        def expired() -> None:
            self._running.pop(key, None)
            answered.append(True)
            self._refuse(
                peer,
                envelope,
                protocol.TIMEOUT,
                f"{envelope.type!r} not handled within {self._handler_timeout} s",
            )

        self._running[key] = self._clock.callLater(self._handler_timeout, expired)

        def done(value: Any) -> None:
            timer = self._running.pop(key, None)
            if timer is not None and timer.active():
                timer.cancel()
            if answered:
                return
            if isinstance(value, Failure):
                if value.check(RequestError):
                    error = value.value
                    self._refuse(peer, envelope, error.code, error.reason)
                else:
                    self._log.failure(
                        "{where}: handler for {type} of {target} failed",
                        value,
                        where=self._name,
                        type=envelope.type,
                        target=envelope.target,
                    )
                    self._refuse(
                        peer,
                        envelope,
                        protocol.INTERNAL,
                        f"internal error while handling {envelope.type!r}",
                    )
            else:
                self._answer(peer, envelope, value)

        result.addBoth(done)

    def _notification_failed(self, failure: Failure, envelope: Envelope) -> None:
        self._log.failure(
            "{where}: notification {type} from {sender} failed",
            failure,
            where=self._name,
            type=envelope.type,
            sender=envelope.sender,
        )

    def _answer(self, peer: object, envelope: Envelope, value: Any) -> None:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self._log.error(
                "{where}: handler for {type} returned {kind}, not a dict",
                where=self._name,
                type=envelope.type,
                kind=type(value).__name__,
            )
            self._refuse(peer, envelope, protocol.INTERNAL, "handler returned an invalid reply")
            return
        self._reply(peer, protocol.ok_reply(envelope, value))

    def _refuse(self, peer: object, envelope: Envelope, code: str, reason: str) -> None:
        if envelope.kind != "request":
            self._log.warn(
                "{where}: notification {type} from {sender} to {target} refused: {reason}",
                where=self._name,
                type=envelope.type,
                sender=envelope.sender,
                target=envelope.target,
                reason=reason,
            )
            return
        self._reply(peer, protocol.error_reply(envelope, code, reason))

    def _reply(self, peer: object, envelope: Envelope) -> None:
        if self._closed:
            self._log.info(
                "{where}: closed; reply to {target} ({type}) not sent",
                where=self._name,
                target=envelope.target,
                type=envelope.type,
            )
            return
        try:
            frame = protocol.encode(envelope, self._max_size)
        except (ProtocolError, TypeError, ValueError, RecursionError) as e:
            self._log.error(
                "{where}: reply to {type} could not be encoded: {error}",
                where=self._name,
                type=envelope.type,
                error=e,
            )
            frame = protocol.encode(
                protocol.error_reply_for(
                    envelope.type,
                    envelope.sender,
                    envelope.target,
                    str(envelope.id),
                    protocol.INTERNAL,
                    f"reply could not be encoded: {str(e)[:200]}",
                ),
                self._max_size,
            )
        try:
            self._send(peer, frame)
        except Exception as e:
            self._log.warn(
                "{where}: reply to {target} ({type}) not sent: {error}",
                where=self._name,
                target=envelope.target,
                type=envelope.type,
                error=e,
            )

    def close(self) -> None:
        """Cancel the handler deadlines; later handler results are not sent."""
        self._closed = True
        for timer in self._running.values():
            if timer.active():
                timer.cancel()
        self._running.clear()


class WouldBlock(Exception):
    """
    The medium cannot take a frame now (peer not connected yet, or its
    queue is at the high-water mark).  The L{Correlator} keeps the frame and
    retries until the message's deadline.
    """


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
        self._pending: dict[str, tuple[defer.Deferred[dict], IDelayedCall, str]] = {}
        self._outbox: deque[tuple[bytes, str | None, float, str]] = deque()
        self._retry: IDelayedCall | None = None
        self._closed = False
        self.late_replies = 0
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
        body: dict,
        timeout: float | None = None,
        sender: str | None = None,
    ) -> defer.Deferred[dict]:
        """See L{IClient.request}."""
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

        def cancel(d: defer.Deferred[dict]) -> None:
            entry = self._pending.pop(request_id, None)
            if entry is not None and entry[1].active():
                entry[1].cancel()

        d: defer.Deferred[dict] = defer.Deferred(cancel)
        timer = self._clock.callLater(deadline, self._expired, request_id, deadline)
        self._pending[request_id] = (d, timer, what)
        self._outbox.append((frame, request_id, self._clock.seconds() + deadline, what))
        self._flush()
        return d

    def notify(self, target: str, type: str, body: dict, sender: str | None = None) -> None:
        """
        See L{IClient.notify}.

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
            raise RequestError(e.code, e.reason)
        except (TypeError, ValueError, RecursionError) as e:
            raise RequestError(protocol.BAD_REQUEST, f"body cannot be encoded: {e}")

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
            _log_frame_problem(self._log, f"client {self.address}", self.address, e)
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


def default_sender() -> str:
    """A sender id for tools that are not agents (the CLI): C{cli:<pid>}."""
    return f"cli:{os.getpid()}"
