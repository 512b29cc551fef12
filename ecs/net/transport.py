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

Two implementations share the request/reply logic:
L{ecs.net.zeromq} (ZeroMQ through txZMQ: ROUTER, DEALER, PUB, SUB) and
L{ecs.net.memory} (in-process, for unit tests with a
L{twisted.internet.task.Clock}).  Neither leaks into agent code.

The request/reply contract lives in L{ecs.net.dispatcher.Dispatcher} (serving
side) and L{ecs.net.correlator.Correlator} (client side), both re-exported
here: every request gets exactly one reply, every request has a deadline
kept by our own timer, late replies are dropped, and a handler that raises
never stops the server.  This module defines what they share: the
interfaces, L{Request}, the errors and L{UNAUTHORISED}.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Union

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from ecs import protocol
from ecs.protocol import Envelope, ProtocolError

#: Error code of a request refused locally because the peer refused this
#: client's security handshake (CURVE key not authorised, wrong server key,
#: security settings that differ).  Defined here rather than in
#: L{ecs.protocol} because it never travels on the wire: the client's
#: transport makes it up from what its socket reports.
UNAUTHORISED = "unauthorised"

HandlerResult = Union[dict[str, Any], "defer.Deferred[dict[str, Any]]", Awaitable[dict[str, Any]], None]
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
    #: Who sent it, as the transport authenticated it (the name of the
    #: sender's CURVE key, L{ecs.net.identity}); None without
    #: authentication (C{security: none}, the in-process transport).  Unlike
    #: C{sender}, which the message merely claims, this is what
    #: authorisation decides on (L{ecs.net.authz}).
    identity: str | None = None

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

    def last_heard_from(sender: str) -> float | None:
        """When a message from C{sender} last arrived here (a sign of its life)."""


class IClient(Interface):
    """A connection to one remote endpoint."""

    address = Attribute("The endpoint connected to.")
    last_received = Attribute(
        "When the peer last sent anything (reactor time), or None: a sign of life "
        "that heartbeats count, so a peer busy answering is not declared lost."
    )

    def request(
        target: str, type: str, body: dict[str, Any], timeout: float | None = None, sender: str | None = None
    ) -> defer.Deferred[dict[str, Any]]:
        """
        Send a request; fire with the reply body, or fail with
        L{RequestError} (error reply) or L{RequestTimeout}.
        """

    def notify(target: str, type: str, body: dict[str, Any], sender: str | None = None) -> None:
        """Send a one-way message."""


class IPublisher(Interface):
    """One publish socket with its own epoch and sequence counter."""

    address = Attribute("The endpoint actually bound.")
    epoch = Attribute("Identifies this publisher's lifetime; changes on restart.")
    seq = Attribute("Sequence number of the last published event (0: none yet).")

    def publish(topic: str, type: str, body: dict[str, Any]) -> int:
        """Publish one event and return its sequence number."""

    def tick() -> None:
        """Tell subscribers the current sequence number without a new event (while idle)."""


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

    def close() -> defer.Deferred[None]:
        """Close every socket; pending requests fail."""


def new_epoch() -> str:
    """A fresh random id for a publisher's or client's lifetime."""
    return secrets.token_hex(6)


def log_frame_problem(log: Logger, where: str, peer: object, error: ProtocolError) -> None:
    """Log, on C{log}, that C{where} dropped a malformed frame from C{peer}."""
    log.warn(
        "{where}: dropped malformed message from {peer!r}: {reason}",
        where=where,
        peer=peer,
        reason=error.reason,
        code=error.code,
    )


class WouldBlock(Exception):
    """
    The medium cannot take a frame now (peer not connected yet, or its
    queue is at the high-water mark).  The L{ecs.net.correlator.Correlator}
    keeps the frame and retries until the message's deadline.
    """


def default_sender() -> str:
    """A sender id for tools that are not agents (the CLI): C{cli:<pid>}."""
    return f"cli:{os.getpid()}"
