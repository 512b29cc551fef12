# -*- test-case-name: tests.test_transport -*-
"""
The serving half of request/reply, shared by every transport.

A transport hands every frame its request endpoint receives to a
L{Dispatcher}, which routes it to the handlers registered for the target
agent and answers it: every request gets exactly one reply (handler result,
handler error or handler timeout), anything after the first answer is
dropped, and a handler that raises never stops the server.  The client half
is L{ecs.net.correlator.Correlator}; both are re-exported by L{ecs.net.transport}.

Batches: a request of type L{BATCH} to the endpoint (target
L{protocol.ENDPOINT_TARGET}) carries up to L{MAX_BATCH} requests to agents
served here, C{{"requests": [{"target", "type", "body"}, ...]}}, sent by a
client that had several for this endpoint in one reactor turn
(L{ecs.net.batch.RequestBatcher}).  Each is handled exactly as if it had
come alone, with the batch's sender and authenticated identity (so every
handler's authorisation applies to each one) and its own handler
deadline; the one reply, once every one is answered, carries their
answers in order, C{{"replies": [{"status": "ok", "body": ...} |
{"status": "error", "code": ..., "reason": ...}]}}.  A batch saves a
message, its encoding and a wake-up per request: a PCA configuring a
thousand detectors of one sim host sends ten messages instead of a
thousand.

About 400 lines: a batch goes through the very path of a single request
(the one-answer rule, refusals, deadlines), so both stay in one module.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ecs import protocol
from ecs.net.registry import INCARNATION
from ecs.net.transport import Handler, Request, RequestError, log_frame_problem
from ecs.protocol import Envelope, ProtocolError

#: Senders whose last message time is kept (for liveness); beyond that the
#: table starts again, so one-off clients cannot make it grow.
MAX_SENDERS_REMEMBERED = 10_000

#: The type of a request carrying several (see the module docstring).
BATCH = "batch"
#: The most requests one batch may carry.
MAX_BATCH = 500

#: Where a request's answer goes: the reply envelope.
Answer = Callable[[Envelope], None]


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
        self._heard: dict[str, float] = {}
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

    def frame_received(self, peer: object, frames: list[bytes], identity: str | None = None) -> None:
        """
        Handle one received message (a list of frames).

        @param identity: the sender's identity as the medium authenticated
            it (L{Request.identity}).
        """
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
            log_frame_problem(self._log, self._name, peer, e)
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
        self._dispatch(peer, envelope, identity)

    def last_heard_from(self, sender: str) -> float | None:
        """When a valid message from C{sender} last arrived (reactor time)."""
        return self._heard.get(sender)

    def _dispatch(self, peer: object, envelope: Envelope, identity: str | None = None) -> None:
        if len(self._heard) >= MAX_SENDERS_REMEMBERED and envelope.sender not in self._heard:
            self._heard.clear()  # many one-off clients: forget, never grow without bound
        self._heard[envelope.sender] = self._clock.seconds()
        is_request = envelope.kind == "request"
        handlers = self._agents.get(envelope.target)
        if envelope.type == "heartbeat" and (
            handlers is not None or envelope.target == protocol.ENDPOINT_TARGET
        ):
            if is_request:
                # The incarnation tells a peer that we restarted at the same
                # address between two of its heartbeats.
                body = {"agents": len(self._agents), "incarnation": INCARNATION}
                self._reply(peer, protocol.ok_reply(envelope, body))
            return
        if is_request and envelope.type == BATCH and envelope.target == protocol.ENDPOINT_TARGET:
            self._batch(peer, envelope, identity)
            return
        self._handle(envelope, identity, lambda reply: self._reply(peer, reply))

    def _handle(self, envelope: Envelope, identity: str | None, answer: Answer) -> None:
        """Hand C{envelope} to its handler; its one answer (a request's) goes to C{answer}."""
        is_request = envelope.kind == "request"
        handlers = self._agents.get(envelope.target)
        if handlers is None:
            self._refuse(
                answer,
                envelope,
                protocol.UNKNOWN_TARGET,
                f"no agent {envelope.target!r} at this endpoint",
            )
            return
        handler = handlers.get(envelope.type)
        if handler is None:
            self._refuse(
                answer,
                envelope,
                protocol.UNKNOWN_TYPE,
                f"agent {envelope.target!r} does not handle {envelope.type!r} "
                f"(known: {', '.join(sorted(handlers)) or 'none'})",
            )
            return
        request = Request(
            envelope.type, envelope.sender, envelope.target, envelope.body, envelope.id, identity
        )
        try:
            result = handler(request)
            if inspect.iscoroutine(result):
                result = defer.Deferred.fromCoroutine(result)
        except RequestError as e:
            self._refuse(answer, envelope, e.code, e.reason)
            return
        except Exception:
            self._log.failure(
                "{where}: handler for {type} of {target} raised",
                where=self._name,
                type=envelope.type,
                target=envelope.target,
            )
            self._refuse(
                answer, envelope, protocol.INTERNAL, f"internal error while handling {envelope.type!r}"
            )
            return
        if not is_request:
            if isinstance(result, defer.Deferred):
                result.addErrback(self._notification_failed, envelope)
            return
        if isinstance(result, defer.Deferred):
            self._await(answer, envelope, result)
        else:
            self._answer(answer, envelope, result)

    def _batch(self, peer: object, envelope: Envelope, identity: str | None) -> None:
        """Handle a L{BATCH} of requests (see the module docstring): one reply, once all are answered."""
        items = envelope.body.get("requests")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            self._refuse(
                lambda reply: self._reply(peer, reply),
                envelope,
                protocol.BAD_REQUEST,
                f"a batch needs 'requests': a list of 1 to {MAX_BATCH} requests",
            )
            return
        replies: list[dict[str, Any] | None] = [None] * len(items)
        waiting = [len(items)]

        def answered(index: int, reply: Envelope) -> None:
            if replies[index] is not None:
                return
            if reply.status == "ok":
                replies[index] = {"status": "ok", "body": reply.body}
            else:
                replies[index] = {"status": "error", "code": reply.body.get("code"),
                                  "reason": reply.body.get("reason")}
            waiting[0] -= 1
            if waiting[0] == 0:
                self._reply(peer, protocol.ok_reply(envelope, {"replies": replies}))

        for index, item in enumerate(items):
            sub_id = f"{envelope.id}/{index}"
            problem = _batch_item_problem(item)
            if problem is not None:
                answered(index, protocol.error_reply_for(
                    BATCH, envelope.target, envelope.sender, sub_id, protocol.BAD_REQUEST,
                    f"request {index} of the batch: {problem}"))
                continue
            sub = protocol.request(item["type"], envelope.sender, item["target"], sub_id, item["body"])
            self._handle(sub, identity, functools.partial(answered, index))

    def _await(self, answer: Answer, envelope: Envelope, result: defer.Deferred[Any]) -> None:
        key = object()
        answered = []

        def expired() -> None:
            self._running.pop(key, None)
            answered.append(True)
            self._refuse(
                answer,
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
                error = value.value
                if isinstance(error, RequestError):
                    self._refuse(answer, envelope, error.code, error.reason)
                else:
                    self._log.failure(
                        "{where}: handler for {type} of {target} failed",
                        value,
                        where=self._name,
                        type=envelope.type,
                        target=envelope.target,
                    )
                    self._refuse(
                        answer,
                        envelope,
                        protocol.INTERNAL,
                        f"internal error while handling {envelope.type!r}",
                    )
            else:
                self._answer(answer, envelope, value)

        result.addBoth(done)

    def _notification_failed(self, failure: Failure, envelope: Envelope) -> None:
        self._log.failure(
            "{where}: notification {type} from {sender} failed",
            failure,
            where=self._name,
            type=envelope.type,
            sender=envelope.sender,
        )

    def _answer(self, answer: Answer, envelope: Envelope, value: Any) -> None:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self._log.error(
                "{where}: handler for {type} returned {kind}, not a dict",
                where=self._name,
                type=envelope.type,
                kind=type(value).__name__,
            )
            self._refuse(answer, envelope, protocol.INTERNAL, "handler returned an invalid reply")
            return
        answer(protocol.ok_reply(envelope, value))

    def _refuse(self, answer: Answer, envelope: Envelope, code: str, reason: str) -> None:
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
        answer(protocol.error_reply(envelope, code, reason))

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


def _batch_item_problem(item: object) -> str | None:
    """What is wrong with one request of a batch, or None."""
    if not isinstance(item, dict):
        return "must be an object with 'target', 'type' and 'body'"
    target, type, body = item.get("target"), item.get("type"), item.get("body")
    if not isinstance(target, str) or not target or target == protocol.ENDPOINT_TARGET:
        return "'target' must be the id of an agent served here"
    if not isinstance(type, str) or not type or type == BATCH:
        return "'type' must be a request type (not a batch)"
    if not isinstance(body, dict):
        return "'body' must be an object"
    return None
