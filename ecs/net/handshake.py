# -*- test-case-name: tests.test_zmq_transport -*-
"""
Connecting sockets that survive refused CURVE handshakes.

With CURVE, every connecting socket (DEALER, SUB) of L{ecs.net.zeromq} has a
socket monitor read in the reactor (L{_MonitorReader}).  libzmq 4.3.5 never
reconnects a socket whose handshake was refused (key not authorised, or
security settings that differ), and a wrong server key fails the same way at
every reconnection, so L{ConnectingSocket} logs the likely cause once, makes
the client's requests fail at once with L{ecs.net.transport.UNAUTHORISED},
and replaces the socket after a back-off until a handshake succeeds: a client
authorised later gets in without a restart.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

import zmq
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zmq.utils.monitor import parse_monitor_message
from zope.interface import implementer

from ecs.net.keys import CurveKeys


class Connection(Protocol):
    """
    What a L{ConnectingSocket} needs of a connection: one of the txZMQ
    connections of L{ecs.net.zeromq}, configured but not connected yet (txZMQ
    is untyped: it stays behind this interface, in that module).
    """

    @property
    def socket(self) -> zmq.Socket[Any] | None:
        """The ZeroMQ socket; L{None} once shut down."""

    def connect_to(self, address: str) -> None:
        """Connect to C{address} (raises on a malformed address)."""

    def shutdown(self) -> None:
        """Close the socket."""


class CurveNode(Protocol):
    """What a L{ConnectingSocket} needs of its node (L{ecs.net.zeromq.ZmqNode} provides it)."""

    name: str
    reactor: Any
    keys: CurveKeys | None
    refused_retry_delay: float
    refused_retry_max: float


@implementer(IReadDescriptor)
class _MonitorReader:
    """
    Reads the socket monitor of one ZeroMQ socket in the reactor.

    The monitor is a PAIR socket made by C{get_monitor_socket}; its file
    descriptor is registered with the reactor, and every read drains it
    with C{NOBLOCK} until C{EAGAIN} (ZeroMQ descriptors are edge-triggered),
    handing each parsed event (C{parse_monitor_message}) to C{received}.
    L{close} must be called before the watched socket is closed.
    """

    _log = Logger()
    _names = itertools.count()

    def __init__(
        self,
        reactor: Any,
        watched: zmq.Socket[Any],
        events: int,
        received: Callable[[dict[str, Any]], None],
    ) -> None:
        self._reactor = reactor
        self._watched = watched
        self._received = received
        # A name of our own: a replaced socket's mailbox descriptor (pyzmq's
        # default name) may be reused by the next one.
        address = f"inproc://ecs-monitor-{next(self._names)}"
        self.pipe: zmq.Socket[Any] | None = watched.get_monitor_socket(events, address)
        fd = self.pipe.getsockopt(zmq.FD)
        assert isinstance(fd, int), f"ZMQ_FD is an int option, got {fd!r}"
        self._fd = fd
        reactor.addReader(self)
        # Events queued before the descriptor was registered signal nothing.
        self._first_read: Any = reactor.callLater(0, self.doRead)

    def fileno(self) -> int:
        """The monitor socket's descriptor (IFileDescriptor)."""
        return self._fd

    def logPrefix(self) -> str:
        """ILoggingContext."""
        return "zmq monitor"

    def doRead(self) -> None:
        """Read every pending event (IReadDescriptor)."""
        while self.pipe is not None:
            try:
                frames = self.pipe.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                event = dict(parse_monitor_message(frames))
            except RuntimeError as e:
                self._log.warn("dropped a malformed socket monitor message: {error}", error=e)
                continue
            try:
                # May close this reader (the client's user closes the client).
                self._received(event)
            except Exception:
                self._log.failure("socket monitor event {event} not handled", event=event)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor dropped the descriptor (IFileDescriptor)."""
        self._reactor.removeReader(self)

    def close(self) -> None:
        """Stop monitoring and close the PAIR socket (idempotent)."""
        if self.pipe is None:
            return
        if self._first_read.active():
            self._first_read.cancel()
        self._reactor.removeReader(self)
        if not self._watched.closed:
            self._watched.disable_monitor()
        self.pipe.close(0)
        self.pipe = None


def _handshake_problem(event: int, value: int, address: str, failures: int) -> str | None:
    """
    What a failed handshake of a client socket most likely means, for the
    operator; L{None} while it may be a passing network problem.
    """
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            f"CURVE authentication refused by {address}: is this client's public key in the "
            "server's authorized/ directory, and is the server key right?"
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return (
                f"CURVE handshake with {address} failed: the server does not use CURVE; "
                "set `security: curve` on both sides"
            )
        return (
            f"CURVE handshake with {address} failed with protocol error {value:#x}: do both "
            "sides use the same security settings and key directory?"
        )
    # The server drops without a reason a client whose HELLO it cannot
    # decrypt (wrong server key) or whose mechanism is not its own (the
    # server's greeting may not have been read yet); once may also be a
    # server going away mid-handshake, twice in a row is not.
    if failures >= 2:
        return (
            f"CURVE handshake with {address} failed: is the server key right (this host's "
            "server.key must be the server's), and does the server use `security: curve`?"
        )
    return None


class ConnectingSocket:
    """
    One connecting socket (DEALER or SUB) that survives refused handshakes.

    C{open()} makes a configured txZMQ connection that is not connected yet;
    this class connects it to C{address}.  With CURVE it monitors the
    handshakes: a refusal is logged once per streak of failures (as an
    error naming the endpoint and the likely cause) and reported to
    C{refused(reason)}; the socket is then closed and replaced after
    C{retry_delay} seconds, doubling up to C{retry_max} while refusals go on,
    because libzmq never reconnects it by itself.  A successful handshake
    ends the streak, resets the back-off and calls C{accepted()}.
    """

    _log = Logger()

    HANDSHAKE_EVENTS = (
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )

    def __init__(
        self,
        node: CurveNode,
        address: str,
        open: Callable[[], Connection],
        refused: Callable[[str], None] = lambda reason: None,
        accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self._node = node
        self._reactor = node.reactor
        self.address = address
        self._open = open
        self._refused = refused
        self._accepted = accepted
        self._retry_delay = node.refused_retry_delay
        self._monitor: _MonitorReader | None = None
        self._reopen: Any = None
        self._closed = False
        self._failures = 0
        self.refusal: str | None = None
        self.refusals = 0
        self.reopened = 0
        self.handshakes = 0
        self.connection = self._connect()

    def _connect(self) -> Connection:
        """Open a socket, monitor it (with CURVE), then connect it."""
        connection = self._open()
        socket = connection.socket
        if socket is None:
            raise RuntimeError(f"a connection to {self.address} was opened without a socket")
        if self._node.keys is not None:
            self._monitor = _MonitorReader(self._reactor, socket, self.HANDSHAKE_EVENTS, self._event)
        try:
            connection.connect_to(self.address)
        except Exception:
            # A bad address: close what was opened, or the context never ends.
            if self._monitor is not None:
                self._monitor.close()
                self._monitor = None
            connection.shutdown()
            raise
        return connection

    def _event(self, event: dict[str, Any]) -> None:
        """Classify one monitor event into a success or a refusal."""
        if self._closed:
            return
        kind = event["event"]
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._handshake_succeeded()
            return
        self._failures += 1
        reason = _handshake_problem(kind, int(event["value"]), self.address, self._failures)
        if reason is not None:
            self._handshake_refused(reason)

    def _handshake_succeeded(self) -> None:
        """End any refusal streak: reset the back-off, tell the owner."""
        self.handshakes += 1
        self._failures = 0
        self._retry_delay = self._node.refused_retry_delay
        if self._reopen is not None and self._reopen.active():
            self._reopen.cancel()
        self._reopen = None
        if self.refusal is not None:
            self._log.info(
                "{node}: CURVE handshake with {address} succeeded after {count} refusal(s)",
                node=self._node.name,
                address=self.address,
                count=self.refusals,
            )
            self.refusal = None
            self.refusals = 0
            self._accepted()  # last, as in _handshake_refused

    def _handshake_refused(self, reason: str) -> None:
        """Log (once per streak), schedule a new socket, tell the owner."""
        self.refusals += 1
        if self.refusal is None:
            self._log.error(
                "{node}: {reason} (retrying with a new socket, first in {delay} s)",
                node=self._node.name,
                reason=reason,
                address=self.address,
                delay=self._retry_delay,
            )
        self.refusal = reason
        if self._reopen is None or not self._reopen.active():
            delay = self._retry_delay
            self._retry_delay = min(delay * 2, self._node.refused_retry_max)
            self._log.debug(
                "{address}: handshake refused, new socket in {delay} s",
                address=self.address,
                delay=delay,
            )
            self._reopen = self._reactor.callLater(delay, self._replace)
        # Last: this fires the client's Deferreds, whose callbacks may close us.
        self._refused(reason)

    def _replace(self) -> None:
        """Close the refused socket and connect a new one."""
        self._reopen = None
        self._close_socket()
        self._failures = 0
        self.reopened += 1
        self.connection = self._connect()

    def _close_socket(self) -> None:
        """Close the monitor first (it must stop before its socket), then the socket."""
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        if self.connection.socket is not None:
            self.connection.shutdown()

    def close(self) -> None:
        """Cancel the pending replacement, close the monitor, then the socket."""
        self._closed = True
        if self._reopen is not None and self._reopen.active():
            self._reopen.cancel()
        self._reopen = None
        self._close_socket()
