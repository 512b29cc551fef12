# -*- test-case-name: tests.test_zmq_transport -*-
"""
L{ecs.net.transport.INode} over ZeroMQ, through txZMQ.

This is the only module that imports txZMQ and makes its connections
(L{ecs.net.handshake} connects them, through a typed interface, and watches
their handshakes), and it stays one module (over 400 lines) for that
reason: txZMQ is untyped, and its C{Any} is kept at this one edge (the mypy
override in C{pyproject.toml} that allows subclassing C{Any} names this
module alone); the logic it wraps is already in the sans-IO cores
(dispatcher, correlator, pubsub).  Socket roles:

- requests: ROUTER (serving, bound) <- DEALER (client, connected);
  one frame per message, the envelope;
- events: PUB (bound) -> SUB (connected); two frames, C{[topic, envelope]}.

Choices, each for a reason found when txZMQ was tried and measured:

- txZMQ's own timeouts use the global reactor; we keep every deadline in
  L{ecs.net.correlator.Correlator} with our clock.
- Every socket gets a finite high-water mark (txZMQ's default is unbounded).
- DEALERs set C{IMMEDIATE}: a message to a peer that is not connected is
  refused at once (and retried by the Correlator until its deadline) instead
  of waiting in a queue and being delivered minutes later, when the peer
  comes back and the command is stale.
- ROUTERs set C{ROUTER_MANDATORY}, so a reply to a vanished client is
  logged rather than silently dropped.
- CURVE options are set before bind/connect; the allow-list and the
  handshake monitoring of connecting sockets are in L{ecs.net.curve} and
  L{ecs.net.handshake}.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import Any

import zmq
from twisted.internet import defer, task
from twisted.logger import Logger
from txzmq import ZmqEndpoint, ZmqEndpointType, ZmqFactory
from txzmq.connection import ZmqConnection
from txzmq.pubsub import ZmqPubConnection, ZmqSubConnection
from txzmq.router_dealer import ZmqDealerConnection, ZmqRouterConnection
from zope.interface import implementer

from ecs import protocol
from ecs.net.correlator import CorrelatedClient, Correlator
from ecs.net.curve import KeyAllowList
from ecs.net.dispatcher import Dispatcher
from ecs.net.handshake import ConnectingSocket
from ecs.net.keys import KEY_MARK, CurveKeys, endpoint_with_key, split_endpoint
from ecs.net.pubsub import TICK_TOPIC, PublisherCore, SubscriberCore, batch_prefixes
from ecs.net.transport import (
    Handler,
    IClient,
    INode,
    IPublisher,
    IServer,
    ISubscriber,
    WouldBlock,
    new_epoch,
)
from ecs.protocol import Envelope

#: Connections whose key a ROUTER remembers (beyond: it reads them again).
MAX_PEERS_REMEMBERED = 100_000

#: Seconds between re-reads of the allow-list (revocations take effect).
ALLOW_LIST_RELOAD = 2.0

#: The most messages one socket hands over before the reactor gets a turn.
MAX_READ_BATCH = 256


class _BoundedRead:
    """
    txZMQ's C{doRead} reads a socket until it is empty: under a flood (ten
    thousand replies) heartbeats and every other socket wait behind it.  This
    one reads at most L{MAX_READ_BATCH} messages (a SUB: events, a batch
    counting for each it carried), then comes back on the next
    reactor turn (ZeroMQ's descriptor is edge-triggered: it would not wake
    us again for what is already queued).
    """

    factory: Any  # carries the node's read_batch
    socket: Any
    read_scheduled: Any

    def doRead(self) -> None:
        if self.read_scheduled is not None:
            if not self.read_scheduled.called:
                self.read_scheduled.cancel()
            self.read_scheduled = None
        budget = getattr(self.factory, "read_batch", MAX_READ_BATCH) if self.factory else 0
        while budget > 0:
            if self.factory is None:
                return  # closed meanwhile
            if not self.socket.get(zmq.EVENTS) & zmq.POLLIN:
                return
            try:
                # txZMQ's, on the connection class this is mixed into
                message = self._readMultipart()  # type: ignore[attr-defined]
            except zmq.ZMQError as e:
                if e.errno == errno.EAGAIN:
                    budget -= 1
                    continue
                raise
            # A SUB counts the events a message carried (a batch is many).
            cost = self.messageReceived(message)  # type: ignore[attr-defined]  # likewise
            budget -= cost if isinstance(cost, int) and cost > 0 else 1
        if self.factory is not None:
            self.read_scheduled = self.factory.reactor.callLater(0, self.doRead)


class _Connecting:
    """A connecting socket as L{ecs.net.handshake.ConnectingSocket} drives it."""

    addEndpoints: Any  # txZMQ's

    def connect_to(self, address: str) -> None:
        """Connect to C{address} (see L{ecs.net.handshake.Connection})."""
        self.addEndpoints([ZmqEndpoint(ZmqEndpointType.connect, address)])


class _Router(_BoundedRead, ZmqRouterConnection):
    """
    txZMQ ROUTER handing every message to its server's dispatcher, with
    the identity of the key that sent it (with CURVE): the frames are read
    without copying so that their C{User-Id} (the sender's public key, set
    by the ZAP handshake) can be read, which txZMQ's own read loses.
    """

    socketType = zmq.ROUTER

    def __init__(self, factory: ZmqFactory, owner: ZmqServer) -> None:
        self.owner = owner
        self._user_id: str | None = None
        # The key of each connection (by the routing id ROUTER gives it,
        # never reused): the metadata is read from the first message only,
        # later ones are read as cheaply as txZMQ does.
        self._peer_keys: dict[bytes, str] = {}
        super().__init__(factory)

    def _readMultipart(self) -> list[bytes]:
        socket = self.socket
        peer = socket.recv(zmq.NOBLOCK)
        frames = [peer]
        curve = self.owner.node.keys is not None
        user_id = self._peer_keys.get(peer) if curve else ""
        while socket.getsockopt(zmq.RCVMORE):
            if user_id is None:
                frame = socket.recv(copy=False)
                user_id = frame.get("User-Id")
                if len(self._peer_keys) >= MAX_PEERS_REMEMBERED:
                    self._peer_keys.clear()
                self._peer_keys[peer] = user_id
                frames.append(frame.bytes)
            else:
                frames.append(socket.recv())
        # With CURVE a message always has a key; a missing one ("") is refused.
        self._user_id = (user_id or "") if curve else None
        return frames

    def messageReceived(self, message: list[bytes]) -> None:
        identity = self.owner.node.identity_of(self._user_id)
        if identity is _REFUSED:
            return
        self.owner.dispatcher.frame_received(message[0], message[1:], identity)


class _Dealer(_Connecting, _BoundedRead, ZmqDealerConnection):
    """txZMQ DEALER handing every message to its client's correlator."""

    socketType = zmq.DEALER

    def __init__(self, factory: ZmqFactory, owner: ZmqClient) -> None:
        self.owner = owner
        super().__init__(factory)

    def messageReceived(self, message: list[bytes]) -> None:
        self.owner.correlator.frame_received(message)


class _Pub(ZmqPubConnection):
    """txZMQ PUB (frames are sent by L{_send})."""

    socketType = zmq.PUB


class _Sub(_Connecting, _BoundedRead, ZmqSubConnection):
    """txZMQ SUB handing every message's frames to its subscriber."""

    socketType = zmq.SUB

    def __init__(self, factory: ZmqFactory, owner: ZmqSubscriber) -> None:
        self.owner = owner
        super().__init__(factory)

    def messageReceived(self, message: list[bytes]) -> int:
        return self.owner.frames_received(message)


def _send(connection: Any, frames: list[bytes]) -> None:
    """Send without blocking; EAGAIN becomes L{WouldBlock}."""
    socket = connection.socket
    try:
        for part in frames[:-1]:
            socket.send(part, zmq.NOBLOCK | zmq.SNDMORE)
        socket.send(frames[-1], zmq.NOBLOCK)
    except zmq.ZMQError as e:
        if e.errno == errno.EAGAIN:
            raise WouldBlock(str(e)) from e
        raise
    # ZeroMQ may not signal readability after a write: check for input on
    # the next turn, as txZMQ's own send() does (but with our reactor).
    if connection.read_scheduled is None:
        connection.read_scheduled = connection.factory.reactor.callLater(0, connection.doRead)


#: What L{ZmqNode.identity_of} answers for a key that is no longer allowed.
_REFUSED = "\0refused"


@implementer(IServer)
class ZmqServer:
    """A bound ROUTER serving any number of agents."""

    def __init__(self, node: ZmqNode, address: str) -> None:
        self.node = node
        self.connection = _Router(node.factory, self)
        node.configure_socket(self.connection.socket, server=True)
        self.connection.socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.dispatcher = Dispatcher(
            self._send,
            node.reactor,
            name=f"{node.name} server",
            max_size=node.max_size,
            handler_timeout=node.handler_timeout,
        )
        self.address = node.bind(self.connection, address)

    def _send(self, peer: object, frame: bytes) -> None:
        assert isinstance(peer, bytes)
        _send(self.connection, [peer, frame])

    def register(self, agent_id: str, handlers: Mapping[str, Handler]) -> None:
        """See L{IServer.register}."""
        self.dispatcher.register(agent_id, handlers)

    def unregister(self, agent_id: str) -> None:
        """See L{IServer.unregister}."""
        self.dispatcher.unregister(agent_id)

    def last_heard_from(self, sender: str) -> float | None:
        """See L{IServer.last_heard_from}."""
        return self.dispatcher.last_heard_from(sender)

    def close(self) -> None:
        """Unbind and close."""
        self.dispatcher.close()
        if self.connection.socket is not None:
            self.connection.shutdown()


@implementer(IClient)
class ZmqClient(CorrelatedClient):
    """A DEALER connected to one endpoint."""

    def __init__(self, node: ZmqNode, address: str) -> None:
        self.node = node
        self.address = address
        endpoint, self._server_key = split_endpoint(address)
        self.correlator = Correlator(
            lambda frame: _send(self.connection, [frame]),
            node.reactor,
            sender=node.name,
            address=address,
            default_timeout=node.request_timeout,
            max_size=node.max_size,
        )
        self.link = ConnectingSocket(
            node,
            endpoint,
            self._open,
            refused=self.correlator.handshake_refused,
            accepted=self.correlator.handshake_succeeded,
        )

    def _open(self) -> _Dealer:
        """A configured DEALER, not connected yet."""
        connection = _Dealer(self.node.factory, self)
        self.node.configure_socket(connection.socket, server=False, server_key=self._server_key)
        connection.socket.setsockopt(zmq.IMMEDIATE, 1)
        return connection

    @property
    def connection(self) -> ZmqConnection:
        """The current txZMQ connection (replaced after a refused handshake)."""
        return self.link.connection

    def close(self) -> None:
        """Fail pending requests, stop retrying and close the socket."""
        self.correlator.close()
        self.link.close()


@implementer(IPublisher)
class ZmqPublisher(PublisherCore):
    """A bound PUB socket."""

    def __init__(self, node: ZmqNode, address: str) -> None:
        super().__init__(node.name, node.max_size)
        self.connection = _Pub(node.factory)
        node.configure_socket(self.connection.socket, server=True)
        self.address = node.bind(self.connection, address)
        self.lost = 0

    def send_frames(self, frames: list[bytes]) -> None:
        """PUB never blocks: at the high-water mark ZeroMQ drops, and
        subscribers see the gap in the numbers and resynchronise."""
        try:
            _send(self.connection, frames)
        except WouldBlock:
            self.lost += 1

    def call_soon(self, call: Callable[[], None]) -> None:
        """On the reactor's next turn (staged state changes go as one message)."""
        self.connection.factory.reactor.callLater(0, call)

    def now(self) -> float:
        """The reactor's clock."""
        return float(self.connection.factory.reactor.seconds())

    def close(self) -> None:
        """Send what is staged, unbind and close."""
        if self.connection.socket is not None:
            self.send_staged()
            self.connection.shutdown()


@implementer(ISubscriber)
class ZmqSubscriber(SubscriberCore):
    """A SUB socket connected to one publisher."""

    def __init__(
        self,
        node: ZmqNode,
        address: str,
        prefixes: list[str],
        callback: Callable[[Envelope], None],
    ) -> None:
        super().__init__(address, callback, node.max_size, [*prefixes, TICK_TOPIC])
        self.node = node
        self._prefixes = batch_prefixes([*prefixes, TICK_TOPIC])
        endpoint, self._server_key = split_endpoint(address)
        self.link = ConnectingSocket(node, endpoint, self._open)

    def _open(self) -> _Sub:
        """A configured SUB with our subscriptions, not connected yet."""
        connection = _Sub(self.node.factory, self)
        self.node.configure_socket(connection.socket, server=False, server_key=self._server_key)
        for prefix in self._prefixes:
            connection.socket.setsockopt(zmq.SUBSCRIBE, prefix.encode("utf-8"))
        return connection

    @property
    def connection(self) -> ZmqConnection:
        """The current txZMQ connection (replaced after a refused handshake)."""
        return self.link.connection

    def close(self) -> None:
        """Stop receiving and retrying."""
        self.link.close()


@implementer(INode)
class ZmqNode:
    """
    One process's ZeroMQ context and sockets.

    @param keys: CURVE key material, or L{None} for C{security: none}.
    @param refused_retry_delay: with CURVE, how long a client or subscriber
        whose handshake was refused waits before trying again with a new
        socket; the wait doubles while refusals go on ...
    @param refused_retry_max: ... up to this many seconds.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        name: str,
        keys: CurveKeys | None = None,
        request_timeout: float = 5.0,
        handler_timeout: float = 30.0,
        max_size: int = protocol.DEFAULT_MAX_SIZE,
        high_water_mark: int = 10_000,
        refused_retry_delay: float = 2.0,
        refused_retry_max: float = 30.0,
        read_batch: int = MAX_READ_BATCH,
    ) -> None:
        self.reactor = reactor
        self.name = name
        self.keys = keys
        self.request_timeout = request_timeout
        self.handler_timeout = handler_timeout
        self.max_size = max_size
        self.high_water_mark = high_water_mark
        self.refused_retry_delay = refused_retry_delay
        self.refused_retry_max = refused_retry_max
        self.epoch = new_epoch()
        self.factory = ZmqFactory()
        # Our reactor, not txZMQ's module-level global.
        self.factory.reactor = reactor
        self.factory.lingerPeriod = 0
        # Messages one socket hands over per reactor turn: smaller for a
        # process that must pass events on quickly (the ECA).
        self.factory.read_batch = read_batch
        self._clients: dict[str, ZmqClient] = {}
        self._closables: list[Any] = []
        self._auth: Any = None
        self.allow_list: KeyAllowList | None = None
        self._reload: task.LoopingCall | None = None
        self._revoked_warned: set[str] = set()
        if keys is None:
            self._log.warn(
                "{name}: security is 'none': ZeroMQ traffic is neither authenticated nor "
                "encrypted; use `security: curve` outside a quick local test",
                name=name,
            )

    def _start_authenticator(self) -> None:
        if self._auth is not None or self.keys is None:
            return
        from zmq.auth.thread import ThreadAuthenticator

        self.allow_list = KeyAllowList(self.keys, self.reactor.callFromThread)
        self._auth = ThreadAuthenticator(self.factory.context)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self.allow_list)
        # A revoked key's connection stays up (ZAP runs at the handshake
        # only), so its messages are refused by identity_of once the
        # allow-list is re-read: at every handshake, and every few seconds
        # here (a stat of the directory and its files: small, on the reactor).
        self._reload = task.LoopingCall(self.allow_list.reload_if_changed)
        self._reload.clock = self.reactor
        self._reload.start(ALLOW_LIST_RELOAD, now=False)

    def identity_of(self, user_id: str | None) -> str | None:
        """
        The identity of the key that sent a message (its Z85 C{User-Id}):
        None without CURVE; L{_REFUSED} (the message is dropped, with a WARN
        line once per key) for a key no longer in the allow-list.
        """
        if user_id is None:
            return None
        if self.allow_list is None:
            return _REFUSED
        identity = self.allow_list.identity(user_id.encode("ascii", "replace"))
        if identity is not None:
            return identity
        if user_id not in self._revoked_warned and len(self._revoked_warned) < 1000:
            self._revoked_warned.add(user_id)
            self._log.warn(
                "{name}: dropped messages from CURVE key {key}: no longer in the allow-list (revoked)",
                name=self.name,
                key=user_id,
            )
        return _REFUSED

    def configure_socket(
        self, socket: zmq.Socket[Any], server: bool, server_key: bytes | None = None
    ) -> None:
        """
        Set limits and CURVE options; must precede bind/connect.

        @param server_key: for a client, the key its endpoint named
            (L{split_endpoint}); default: the server key of the key directory.
        """
        socket.setsockopt(zmq.SNDHWM, self.high_water_mark)
        socket.setsockopt(zmq.RCVHWM, self.high_water_mark)
        socket.setsockopt(zmq.MAXMSGSIZE, self.max_size + 4096)
        socket.setsockopt(zmq.LINGER, 0)
        if self.keys is None:
            return
        if server:
            pair = self.keys.serving_pair()
            if pair is None:
                raise ValueError("serving needs the server secret key or this host's own pair")
            self._start_authenticator()
            socket.curve_server = True
            socket.curve_publickey, socket.curve_secretkey = pair
        else:
            socket.curve_serverkey = server_key or self.keys.server_public
            socket.curve_publickey = self.keys.client_public
            socket.curve_secretkey = self.keys.client_secret

    def bind(self, connection: Any, address: str) -> str:
        """
        Bind C{connection}; return the endpoint actually bound, naming the
        key it is served with when that is this host's own
        (L{endpoint_with_key}).  A key in C{address} (an endpoint the
        registry remembered) is not part of what is bound.
        """
        address = address.partition(KEY_MARK)[0]
        try:
            connection.addEndpoints([ZmqEndpoint(ZmqEndpointType.bind, address)])
        except zmq.ZMQError as e:
            connection.shutdown()
            raise OSError(f"cannot bind {address}: {e}") from None
        bound = connection.socket.getsockopt(zmq.LAST_ENDPOINT)
        endpoint = bound.decode("utf-8") if isinstance(bound, bytes) else str(bound)
        return endpoint_with_key(endpoint, self.keys.advertised_key if self.keys else None)

    def serve(self, address: str) -> ZmqServer:
        """See L{INode.serve}."""
        server = ZmqServer(self, address)
        self._closables.append(server)
        return server

    def connect(self, address: str) -> ZmqClient:
        """See L{INode.connect}."""
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = ZmqClient(self, address)
        return client

    def publish(self, address: str) -> ZmqPublisher:
        """See L{INode.publish}."""
        publisher = ZmqPublisher(self, address)
        self._closables.append(publisher)
        return publisher

    def subscribe(
        self, address: str, prefixes: list[str], callback: Callable[[Envelope], None]
    ) -> ZmqSubscriber:
        """See L{INode.subscribe}."""
        subscriber = ZmqSubscriber(self, address, prefixes, callback)
        self._closables.append(subscriber)
        return subscriber

    def close(self) -> defer.Deferred[None]:
        """See L{INode.close}: close every socket, the authenticator, the context."""
        for client in self._clients.values():
            client.close()
        self._clients = {}
        for item in self._closables:
            item.close()
        self._closables = []
        if self._reload is not None and self._reload.running:
            self._reload.stop()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self.factory.context is not None:
            context = self.factory.context
            for connection in list(self.factory.connections):
                connection.shutdown()
            # destroy, not term: a socket left open by mistake must not hang
            # the process (term waits for every socket to be closed).
            context.destroy(linger=0)
            self.factory.connections = None
            self.factory.context = None
        return defer.succeed(None)
