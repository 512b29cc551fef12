# -*- test-case-name: tests.test_transport -*-
"""
An in-process implementation of L{ecs.net.transport.INode}, for unit tests.

Every message still goes through L{ecs.protocol.encode}/L{decode} and the
same L{Dispatcher}/L{Correlator} as the ZeroMQ transport, so agents tested
here behave as they do on sockets.  Delivery is never synchronous: frames
are queued and delivered from a C{clock.callLater(0)}, so a test drives the
network with C{clock.advance(0)} (or L{MemoryNetwork.flush}) and nothing
re-enters a handler from inside a send.

Faults are injected with L{MemoryNetwork.set_down}: frames to or from a down
address are dropped (a sender sees the peer as unreachable, like ZeroMQ with
C{IMMEDIATE}).
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ecs import protocol
from ecs.net.correlator import CorrelatedClient, Correlator
from ecs.net.dispatcher import Dispatcher
from ecs.net.pubsub import PublisherCore, SubscriberCore, batch_prefixes
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


class MemoryNetwork:
    """The shared medium of several L{MemoryNode}s."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.servers: dict[str, MemoryServer] = {}
        self.publishers: dict[str, MemoryPublisher] = {}
        self.subscribers: dict[str, list[MemorySubscriber]] = {}
        self.down: set[str] = set()
        self._queue: deque[Callable[[], None]] = deque()
        self._scheduled = False
        self._ports = itertools.count(1)
        self.delivered = 0

    def allocate(self, address: str) -> str:
        """Resolve a C{*} port to a unique address."""
        if address.endswith("*"):
            return address[:-1] + str(next(self._ports))
        return address

    def set_down(self, address: str, down: bool = True) -> None:
        """Make C{address} unreachable (or reachable again)."""
        if down:
            self.down.add(address)
        else:
            self.down.discard(address)

    def schedule(self, deliver: Callable[[], None]) -> None:
        """Queue one delivery for the next turn of the clock."""
        self._queue.append(deliver)
        if not self._scheduled:
            self._scheduled = True
            self.clock.callLater(0, self._run)

    def _run(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Deliver everything queued, including what deliveries queue."""
        while self._queue:
            deliver = self._queue.popleft()
            self.delivered += 1
            deliver()


@implementer(IServer)
class MemoryServer:
    """A bound request endpoint."""

    def __init__(self, network: MemoryNetwork, address: str, dispatcher_args: dict[str, Any]) -> None:
        self.network = network
        self.address = address
        self.dispatcher = Dispatcher(self._send, network.clock, name=address, **dispatcher_args)

    def _send(self, peer: object, frame: bytes) -> None:
        # the dispatcher hands back the peer it was given by receive()
        client = peer
        assert isinstance(client, MemoryClient), f"reply to {client!r}, not a MemoryClient"
        if self.address in self.network.down:
            return  # the reply is lost, as on a dead link; the client times out
        self.network.schedule(lambda: client.correlator.frame_received([frame]))

    def register(self, agent_id: str, handlers: Mapping[str, Handler]) -> None:
        """See L{IServer.register}."""
        self.dispatcher.register(agent_id, handlers)

    def unregister(self, agent_id: str) -> None:
        """See L{IServer.unregister}."""
        self.dispatcher.unregister(agent_id)

    def last_heard_from(self, sender: str) -> float | None:
        """See L{IServer.last_heard_from}."""
        return self.dispatcher.last_heard_from(sender)

    def receive(self, peer: object, frames: list[bytes], identity: str | None = None) -> None:
        """A frame arrived for this endpoint (from a sender with C{identity}, as a CURVE key would tell)."""
        if self.address in self.network.down or self.network.servers.get(self.address) is not self:
            return  # down, or closed while the frame was in flight
        self.dispatcher.frame_received(peer, frames, identity)

    def close(self) -> None:
        """Unbind."""
        self.dispatcher.close()
        if self.network.servers.get(self.address) is self:
            del self.network.servers[self.address]


@implementer(IClient)
class MemoryClient(CorrelatedClient):
    """A connection to one L{MemoryServer} address."""

    def __init__(
        self,
        network: MemoryNetwork,
        address: str,
        correlator_args: dict[str, Any],
        identity: str | None = None,
    ) -> None:
        self.network = network
        self.address = address
        self.identity = identity
        self.correlator = Correlator(
            self._send, network.clock, address=address, **correlator_args
        )

    def _send(self, frame: bytes) -> None:
        server = self.network.servers.get(self.address)
        if server is None or self.address in self.network.down:
            raise WouldBlock(f"{self.address} not reachable")
        self.network.schedule(lambda: server.receive(self, [frame], self.identity))

    def close(self) -> None:
        """Fail pending requests."""
        self.correlator.close()


@implementer(IPublisher)
class MemoryPublisher(PublisherCore):
    """A bound publisher."""

    def __init__(self, network: MemoryNetwork, address: str, sender: str, max_size: int) -> None:
        super().__init__(sender, max_size)
        self.network = network
        self.address = address

    def send_frames(self, frames: list[bytes]) -> None:
        """Deliver to every matching subscriber, later."""
        if self.address in self.network.down:
            return
        topic = frames[0]
        for subscriber in list(self.network.subscribers.get(self.address, ())):
            if subscriber.matches(topic):
                self.network.schedule(functools.partial(self._deliver, subscriber, frames))

    def call_soon(self, call: Callable[[], None]) -> None:
        """After what the network has queued (a turn of its clock, or L{MemoryNetwork.flush})."""
        self.network.schedule(call)

    def now(self) -> float:
        """The network's clock."""
        return float(self.network.clock.seconds())

    def _deliver(self, subscriber: MemorySubscriber, frames: list[bytes]) -> None:
        # A subscriber closed while the frames were in flight gets nothing.
        if subscriber in self.network.subscribers.get(self.address, ()):
            subscriber.frames_received(list(frames))

    def close(self) -> None:
        """Unbind."""
        if self.network.publishers.get(self.address) is self:
            del self.network.publishers[self.address]


@implementer(ISubscriber)
class MemorySubscriber(SubscriberCore):
    """A subscription to one publisher address."""

    def __init__(
        self,
        network: MemoryNetwork,
        address: str,
        prefixes: list[str],
        callback: Callable[[Envelope], None],
        max_size: int,
    ) -> None:
        super().__init__(address, callback, max_size, prefixes)
        self.network = network
        self.prefixes = [p.encode() for p in batch_prefixes(prefixes)]

    def matches(self, topic: bytes) -> bool:
        """Whether C{topic} is subscribed to."""
        return any(topic.startswith(p) for p in self.prefixes)

    def close(self) -> None:
        """Stop receiving."""
        subs = self.network.subscribers.get(self.address, [])
        if self in subs:
            subs.remove(self)


@implementer(INode)
class MemoryNode:
    """One agent process's view of a L{MemoryNetwork}."""

    _log = Logger()

    def __init__(
        self,
        network: MemoryNetwork,
        name: str = "node",
        request_timeout: float = 5.0,
        max_size: int = protocol.DEFAULT_MAX_SIZE,
        handler_timeout: float = 30.0,
        identity: str | None = None,
    ) -> None:
        self.network = network
        self.name = name
        #: the identity its messages carry (as a CURVE key's name would),
        #: None: unauthenticated, as with C{security: none}
        self.identity = identity
        self._request_timeout = request_timeout
        self._max_size = max_size
        self._handler_timeout = handler_timeout
        self._servers: list[MemoryServer] = []
        self._clients: dict[str, MemoryClient] = {}
        self._publishers: list[MemoryPublisher] = []
        self._subscribers: list[MemorySubscriber] = []
        self.epoch = new_epoch()

    def serve(self, address: str) -> MemoryServer:
        """See L{INode.serve}."""
        address = self.network.allocate(address)
        if address in self.network.servers:
            raise OSError(f"address already in use: {address}")
        server = MemoryServer(
            self.network,
            address,
            {"max_size": self._max_size, "handler_timeout": self._handler_timeout},
        )
        self.network.servers[address] = server
        self._servers.append(server)
        return server

    def connect(self, address: str) -> MemoryClient:
        """See L{INode.connect}."""
        client = self._clients.get(address)
        if client is None:
            client = MemoryClient(
                self.network,
                address,
                {
                    "sender": self.name,
                    "default_timeout": self._request_timeout,
                    "max_size": self._max_size,
                },
                self.identity,
            )
            self._clients[address] = client
        return client

    def publish(self, address: str) -> MemoryPublisher:
        """See L{INode.publish}."""
        address = self.network.allocate(address)
        if address in self.network.publishers:
            raise OSError(f"address already in use: {address}")
        publisher = MemoryPublisher(self.network, address, self.name, self._max_size)
        self.network.publishers[address] = publisher
        self._publishers.append(publisher)
        return publisher

    def subscribe(
        self, address: str, prefixes: list[str], callback: Callable[[Envelope], None]
    ) -> MemorySubscriber:
        """See L{INode.subscribe}."""
        subscriber = MemorySubscriber(self.network, address, prefixes, callback, self._max_size)
        self.network.subscribers.setdefault(address, []).append(subscriber)
        self._subscribers.append(subscriber)
        return subscriber

    def close(self) -> defer.Deferred[None]:
        """See L{INode.close}."""
        for server in self._servers:
            server.close()
        for client in self._clients.values():
            client.close()
        for publisher in self._publishers:
            publisher.close()
        for subscriber in self._subscribers:
            subscriber.close()
        self._servers, self._clients, self._publishers, self._subscribers = [], {}, [], []
        return defer.succeed(None)
