# -*- test-case-name: tests.test_zmq_transport -*-
"""
Tests for L{ecs.net.zeromq}, L{ecs.net.curve} and L{ecs.net.handshake}: real
ZeroMQ sockets on 127.0.0.1, driven by the real reactor.

Every node binds C{tcp://127.0.0.1:*} and is closed in a cleanup.  There is
no fixed sleep anywhere: tests wait on Deferreds, and where they must wait
for a condition (a subscription to propagate, a counter to move) they poll
it every 10 ms with L{task.deferLater} in a loop bounded by a deadline.
Where a test must show that something did I{not} arrive, it sends a marker
after it over the same ordered connection and waits for the marker, or
waits until the handshake was refused (the authenticator's count and the
socket monitor's events) while an authorised peer is served meanwhile.

Covered: request/reply with C{security: none} and with CURVE, many requests
in flight, several agents behind one endpoint, the transport's error codes,
handler failures, unreachable peers, late replies, malformed frames from a
raw pyzmq DEALER, PUB/SUB prefix filtering, the clone L{Mirror} over real
sockets, and CURVE refusing unknown keys (requests and subscriptions) and
mismatched security settings: a refused client fails with C{unauthorised}
at once and says why, and gets in without a restart once its key is added
to C{authorized/} (the allow-list reload is also tested without sockets).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import zmq
import zmq.auth
from twisted.internet import defer, reactor, task
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zmq.utils.monitor import recv_monitor_message

from ecs import protocol
from ecs.net.curve import KeyAllowList
from ecs.net.handshake import ConnectingSocket
from ecs.net.keys import (
    KEY_MARK,
    CurveKeys,
    KeyFileError,
    add_client,
    endpoint_with_key,
    init_keys,
    load_keys,
    split_endpoint,
)
from ecs.net.pubsub import TICK_TOPIC, Mirror, StateStore
from ecs.net.registry import INCARNATION
from ecs.net.transport import UNAUTHORISED, Request, RequestError, RequestTimeout
from ecs.net.zeromq import ZmqNode
from ecs.protocol import Envelope

LOCAL = "tcp://127.0.0.1:*"
POLL = 0.01
T = TypeVar("T")


def async_test(f: Callable[..., Awaitable[T]]) -> Callable[..., defer.Deferred[T]]:
    """Run an C{async def} test method as a Deferred on the real reactor."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred[T]:
        return defer.Deferred.fromCoroutine(f(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


async def turn(delay: float = POLL) -> None:
    """Give the reactor one polling interval."""
    await task.deferLater(reactor, delay, lambda: None)


async def wait_until(
    predicate: Callable[[], bool],
    what: str,
    timeout: float = 5.0,
    between: Callable[[], Any] | None = None,
) -> None:
    """
    Poll C{predicate} every 10 ms until it holds; fail after C{timeout} s.

    @param between: called before every poll (e.g. to publish a probe).
    """
    deadline = reactor.seconds() + timeout
    while True:
        if between is not None:
            between()
        if predicate():
            return
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await turn()


def free_address() -> str:
    """A TCP address on 127.0.0.1 where nothing listens (just released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    finally:
        s.close()
    return f"tcp://127.0.0.1:{port}"


def write_public_key(path: Path, public: bytes) -> None:
    """Write C{public} as a ZeroMQ certificate file (what C{authorized/} holds), in place."""
    path.write_text(f'metadata\ncurve\n    public-key = "{public.decode()}"\n')


class Calls:
    """A handler that counts its calls and answers with what it was sent."""

    def __init__(self, answer: Callable[[Request], Any] | None = None) -> None:
        self.requests: list[Request] = []
        self._answer = answer

    @property
    def count(self) -> int:
        return len(self.requests)

    def __call__(self, request: Request) -> Any:
        self.requests.append(request)
        if self._answer is not None:
            return self._answer(request)
        return {"echo": request.body, "by": request.target}


class Logs:
    """What some classes log, collected by giving them a L{Logger} of our own."""

    def __init__(self, case: SynchronousTestCase, *classes: type) -> None:
        self.events: list[dict[str, Any]] = []
        for cls in classes:
            case.patch(cls, "_log", Logger(namespace=cls.__name__, observer=self.events.append))

    def texts(self, level: LogLevel) -> list[str]:
        """The formatted messages of C{level}."""
        return [formatEvent(e) for e in self.events if e["log_level"] == level]



class Monitor:
    """
    The events of one ZeroMQ socket's monitor, read without blocking.

    Only for sockets the transport does not monitor itself (bound ones,
    connecting ones without CURVE, raw ones): pyzmq allows one monitor per
    socket.
    """

    HANDSHAKE_FAILED = (
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    )

    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self.pipe = sock.get_monitor_socket()
        self.events: list[int] = []

    def read(self) -> list[int]:
        """Every event so far."""
        while self.pipe.poll(0, zmq.POLLIN):
            self.events.append(recv_monitor_message(self.pipe, zmq.NOBLOCK)["event"])
        return self.events

    def seen(self, mask: int) -> bool:
        """True once an event in C{mask} was reported."""
        return any(event & mask for event in self.read())

    def handshake_failed(self) -> bool:
        """True once a ZMTP/CURVE handshake failed."""
        return self.seen(self.HANDSHAKE_FAILED)

    def handshake_succeeded(self) -> bool:
        """True once a handshake succeeded."""
        return self.seen(zmq.EVENT_HANDSHAKE_SUCCEEDED)

    def close(self) -> None:
        """Stop monitoring (before the socket's context is terminated)."""
        if not self.sock.closed:
            self.sock.disable_monitor()
        self.pipe.close(0)


class ZmqTestCase(TestCase):
    """Helpers: nodes closed at cleanup, keys in a temporary directory."""

    timeout = 30

    def node(self, name: str, keys: CurveKeys | None = None, **kwargs: Any) -> ZmqNode:
        """A node on the real reactor, closed after the test."""
        node = ZmqNode(reactor, name, keys=keys, **kwargs)
        self.addCleanup(node.close)
        return node

    def monitor(self, sock: zmq.Socket) -> Monitor:
        """Monitor C{sock}; the monitor is closed before the socket's node."""
        monitor = Monitor(sock)
        self.addCleanup(monitor.close)
        return monitor

    def keys_dir(self) -> Path:
        """A fresh key directory made by L{init_keys}."""
        directory = Path(self.mktemp()) / "keys"
        init_keys(directory)
        return directory

    def keys(self) -> CurveKeys:
        """Fresh CURVE keys (server, client and allow-list)."""
        return load_keys(self.keys_dir())

    def key_pair_file(self, name: str) -> tuple[Path, bytes, bytes]:
        """A fresh client pair written outside any allow-list: (public file, public, secret)."""
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        public_path, secret_path = zmq.auth.create_certificates(directory, name)
        public, secret = zmq.auth.load_certificate(secret_path)
        assert secret is not None
        return Path(public_path), public, secret

    def authorise(self, keys: CurveKeys, public_path: Path) -> None:
        """Copy a public key file into C{keys}' allow-list, atomically (as C{ecs keys add})."""
        partial = keys.authorized_dir / f".{public_path.name}.partial"
        shutil.copyfile(public_path, partial)
        os.replace(partial, keys.authorized_dir / public_path.name)

    def unknown_client_keys(self, keys: CurveKeys) -> CurveKeys:
        """C{keys} with a freshly generated client pair that is not authorised."""
        public, secret = zmq.curve_keypair()
        self.assertNotIn(public, keys.authorized_keys())
        return attrs.evolve(keys, server_secret=None, client_public=public, client_secret=secret)

    def serve(self, node: ZmqNode, agents: dict[str, dict[str, Any]]) -> Any:
        """Serve C{agents} on a free local port."""
        server = node.serve(LOCAL)
        self.assertTrue(server.address.startswith("tcp://127.0.0.1:"), server.address)
        self.assertNotIn("*", server.address)
        for agent_id, handlers in agents.items():
            server.register(agent_id, handlers)
        return server


class RequestReplyTests(ZmqTestCase):
    """Requests and replies between two nodes over TCP."""

    async def _round_trip(self, keys: CurveKeys | None) -> None:
        echo = Calls()
        server = self.serve(self.node("srv", keys), {"STS": {"echo": echo}})
        client = self.node("cli", keys).connect(server.address)
        reply = await client.request("STS", "echo", {"n": 1, "text": "héllo"})
        self.assertEqual(reply, {"echo": {"n": 1, "text": "héllo"}, "by": "STS"})
        self.assertEqual(echo.count, 1)
        self.assertEqual(echo.requests[0].sender, "cli")
        self.assertEqual(echo.requests[0].type, "echo")
        self.assertFalse(echo.requests[0].is_notification)
        # The same client object is shared per address and keeps working.
        self.assertIs(client, client.node.connect(server.address))
        reply = await client.request("STS", "echo", {"n": 2}, sender="other")
        self.assertEqual(reply["echo"], {"n": 2})
        self.assertEqual(echo.requests[1].sender, "other")

    @async_test
    async def test_round_trip_security_none(self) -> None:
        """A request gets its reply with security none (keys=None)."""
        await self._round_trip(None)

    @async_test
    async def test_round_trip_curve(self) -> None:
        """A request gets its reply over CURVE with an authorised client key."""
        await self._round_trip(self.keys())

    @async_test
    async def test_async_handler(self) -> None:
        """A coroutine handler's result is the reply."""

        async def slow(request: Request) -> dict:
            await turn()
            return {"done": request.body["x"] * 2}

        server = self.serve(self.node("srv"), {"A": {"slow": slow}})
        client = self.node("cli").connect(server.address)
        self.assertEqual(await client.request("A", "slow", {"x": 21}), {"done": 42})

    @async_test
    async def test_reads_in_bounded_batches(self) -> None:
        """A flood is read at most MAX_READ_BATCH messages per reactor turn, and all of it is served."""
        from ecs.net import zeromq as zmq_transport

        count = 3 * zmq_transport.MAX_READ_BATCH
        server = self.serve(self.node("srv"), {"A": {"echo": lambda r: {"i": r.body["i"]}}})
        connection = server.connection
        batches: list[int] = []
        original_read, original_received = connection.doRead, connection.messageReceived

        def counting_read() -> None:
            batches.append(0)
            original_read()

        def counting_received(message: list[bytes]) -> None:
            batches[-1] += 1
            original_received(message)

        connection.doRead = counting_read
        connection.messageReceived = counting_received
        client = self.node("cli").connect(server.address)
        replies = await defer.gatherResults(
            [client.request("A", "echo", {"i": i}) for i in range(count)], consumeErrors=True
        )
        self.assertEqual(len(replies), count)
        self.assertEqual(sum(batches), count)
        self.assertLessEqual(max(batches), zmq_transport.MAX_READ_BATCH)

    async def test_many_in_flight(self) -> None:
        """500 concurrent requests, answered out of order, each get their own reply."""
        count = 500
        started = []

        def delayed(request: Request) -> defer.Deferred[dict]:
            started.append(request.body["i"])
            # Later requests are answered first.
            delay = (count - request.body["i"]) * 0.0002
            return task.deferLater(reactor, delay, lambda: {"i": request.body["i"]})

        server = self.serve(self.node("srv"), {"A": {"work": delayed}})
        client = self.node("cli").connect(server.address)
        replies = await defer.gatherResults(
            [client.request("A", "work", {"i": i}) for i in range(count)], consumeErrors=True
        )
        self.assertEqual([r["i"] for r in replies], list(range(count)))
        self.assertEqual(sorted(started), list(range(count)))
        self.assertEqual(client.correlator.pending, 0)
        self.assertEqual(client.correlator.late_replies, 0)

    @async_test
    async def test_several_agents_one_endpoint(self) -> None:
        """One endpoint serves several agents by id; an unknown id gets unknown_target."""
        handlers = {name: Calls() for name in ("STS", "MVD", "TOF")}
        server = self.serve(self.node("host"), {k: {"echo": v} for k, v in handlers.items()})
        client = self.node("cli").connect(server.address)
        replies = await defer.gatherResults(
            [client.request(name, "echo", {"to": name}) for name in ("TOF", "STS", "MVD", "STS")]
        )
        self.assertEqual([r["by"] for r in replies], ["TOF", "STS", "MVD", "STS"])
        self.assertEqual({k: v.count for k, v in handlers.items()}, {"STS": 2, "MVD": 1, "TOF": 1})

        error = await self.assertFailure(client.request("RICH", "echo", {}), RequestError)
        self.assertEqual(error.code, protocol.UNKNOWN_TARGET)
        self.assertIn("RICH", error.reason)

        server.unregister("MVD")
        error = await self.assertFailure(client.request("MVD", "echo", {}), RequestError)
        self.assertEqual(error.code, protocol.UNKNOWN_TARGET)
        self.assertEqual(handlers["MVD"].count, 1)

        # The endpoint itself answers heartbeats with the number of agents.
        beat = await client.request(protocol.ENDPOINT_TARGET, "heartbeat", {})
        self.assertEqual(beat, {"agents": 2, "incarnation": INCARNATION})

    @async_test
    async def test_unknown_type(self) -> None:
        """A type the agent does not handle gets unknown_type naming the known ones."""
        echo = Calls()
        server = self.serve(self.node("srv"), {"A": {"echo": echo, "status": echo}})
        client = self.node("cli").connect(server.address)
        error = await self.assertFailure(client.request("A", "explode", {}), RequestError)
        self.assertEqual(error.code, protocol.UNKNOWN_TYPE)
        self.assertIn("explode", error.reason)
        self.assertIn("echo, status", error.reason)
        self.assertEqual(echo.count, 0)

    @async_test
    async def test_handler_exception_internal(self) -> None:
        """A raising handler is answered internal and the server keeps serving."""

        def boom(request: Request) -> dict:
            raise ValueError("boom")

        async def async_boom(request: Request) -> dict:
            await turn()
            raise ValueError("async boom")

        def refuse(request: Request) -> dict:
            raise RequestError(protocol.NOT_ALLOWED, "not now")

        echo = Calls()
        server = self.serve(
            self.node("srv"),
            {"A": {"boom": boom, "aboom": async_boom, "refuse": refuse, "echo": echo}},
        )
        client = self.node("cli").connect(server.address)
        for type in ("boom", "aboom"):
            error = await self.assertFailure(client.request("A", type, {}), RequestError)
            self.assertEqual(error.code, protocol.INTERNAL)
            # The exception's text is logged, not sent to the client.
            self.assertEqual(error.reason, f"internal error while handling {type!r}")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)
        # A RequestError raised by a handler is the agent's own answer, not a crash.
        error = await self.assertFailure(client.request("A", "refuse", {}), RequestError)
        self.assertEqual((error.code, error.reason), (protocol.NOT_ALLOWED, "not now"))
        reply = await client.request("A", "echo", {"after": True})
        self.assertEqual(reply, {"echo": {"after": True}, "by": "A"})

    @async_test
    async def test_notification(self) -> None:
        """A notification reaches its handler; nothing is answered."""
        seen = Calls()
        server = self.serve(self.node("srv"), {"A": {"state": seen, "echo": Calls()}})
        client = self.node("cli").connect(server.address)
        client.notify("A", "state", {"s": "Ready"})
        await wait_until(lambda: seen.count == 1, "the notification")
        self.assertTrue(seen.requests[0].is_notification)
        self.assertEqual(seen.requests[0].body, {"s": "Ready"})
        # A request after it is answered with its own reply: no stray reply came first.
        self.assertEqual((await client.request("A", "echo", {}))["by"], "A")
        self.assertEqual(client.correlator.late_replies, 0)

    @async_test
    async def test_unreachable_times_out(self) -> None:
        """A request to an endpoint where nothing listens times out as unreachable."""
        client = self.node("cli").connect(free_address())
        started = reactor.seconds()
        d = client.request("A", "echo", {}, timeout=0.3)
        error = await self.assertFailure(d, RequestTimeout)
        elapsed = reactor.seconds() - started
        self.assertEqual(error.code, protocol.TIMEOUT)
        self.assertIn("unreachable", error.reason)
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 3.0)
        self.assertEqual(client.correlator.pending, 0)

    @async_test
    async def test_unreachable_then_reachable(self) -> None:
        """A request sent before the server binds is delivered once it does, within the deadline."""
        address = free_address()
        client = self.node("cli").connect(address)
        d = client.request("A", "echo", {"early": 1}, timeout=5.0)
        self.assertEqual(client.correlator.queued, 1)  # refused by the socket, kept for retry
        self.assertFalse(d.called)
        server_node = self.node("srv")
        server = server_node.serve(address)
        server.register("A", {"echo": Calls()})
        self.assertEqual((await d)["echo"], {"early": 1})

    @async_test
    async def test_late_reply_dropped(self) -> None:
        """A reply after the client's deadline is dropped; later requests are unaffected."""
        finished = []

        def slow(request: Request) -> defer.Deferred[dict]:
            def answer() -> dict:
                finished.append(request.body["n"])
                return {"n": request.body["n"]}

            return task.deferLater(reactor, 0.3, answer)

        server = self.serve(self.node("srv"), {"A": {"slow": slow, "echo": Calls()}})
        client = self.node("cli").connect(server.address)
        d = client.request("A", "slow", {"n": 1}, timeout=0.1)
        error = await self.assertFailure(d, RequestTimeout)
        self.assertIn("no reply", error.reason)
        self.assertEqual(finished, [])
        await wait_until(lambda: client.correlator.late_replies == 1, "the late reply")
        self.assertEqual(finished, [1])
        self.assertEqual(client.correlator.pending, 0)
        self.assertEqual(await client.request("A", "echo", {"k": 2}), {"echo": {"k": 2}, "by": "A"})
        self.assertEqual(client.correlator.late_replies, 1)

    @async_test
    async def test_handler_timeout(self) -> None:
        """A handler slower than handler_timeout is answered timeout by the server."""
        never: defer.Deferred[dict] = defer.Deferred()
        server = self.serve(self.node("srv", handler_timeout=0.1), {"A": {"hang": lambda r: never}})
        client = self.node("cli").connect(server.address)
        error = await self.assertFailure(client.request("A", "hang", {}, timeout=5), RequestError)
        self.assertEqual(error.code, protocol.TIMEOUT)
        self.assertIn("not handled within", error.reason)
        never.callback({})  # answered already: dropped by the dispatcher

    @async_test
    async def test_request_too_large_refused_at_sender(self) -> None:
        """A request above max_size fails at once with too_large; nothing is sent."""
        echo = Calls()
        server = self.serve(self.node("srv"), {"A": {"echo": echo}})
        client = self.node("cli", max_size=1000).connect(server.address)
        d = client.request("A", "echo", {"x": "y" * 2000})
        error = await self.assertFailure(d, RequestError)
        self.assertEqual(error.code, protocol.TOO_LARGE)
        self.assertEqual((await client.request("A", "echo", {}))["by"], "A")
        self.assertEqual(echo.count, 1)


class RawDealer:
    """A plain pyzmq DEALER in its own context, polled without blocking."""

    def __init__(self, address: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        self.monitor = Monitor(self.socket)
        self.socket.connect(address)

    def send(self, frames: list[bytes]) -> None:
        """Send one message of C{frames}."""
        self.socket.send_multipart(frames, zmq.NOBLOCK)

    def send_request(self, request_id: str, type: str = "echo", target: str = "A") -> None:
        """Send a well-formed request."""
        envelope = protocol.request(type, "raw", target, request_id, {"id": request_id})
        self.send([protocol.encode(envelope)])

    async def receive(self, what: str, timeout: float = 5.0) -> list[bytes]:
        """The next message, polled every 10 ms."""
        received: list[list[bytes]] = []

        def poll() -> bool:
            if self.socket.poll(0, zmq.POLLIN):
                received.append(self.socket.recv_multipart(zmq.NOBLOCK))
            return bool(received)

        await wait_until(poll, what, timeout)
        return received[0]

    def close(self) -> None:
        """Close the socket, its monitor and the context."""
        self.monitor.close()
        self.socket.close(0)
        self.context.term()


class MalformedInputTests(ZmqTestCase):
    """Garbage on the request socket never stops the server."""

    def setUp(self) -> None:
        self.echo = Calls()
        self.server = self.serve(self.node("srv", max_size=4096), {"A": {"echo": self.echo}})
        self.dispatcher = self.server.dispatcher

    def raw(self) -> RawDealer:
        dealer = RawDealer(self.server.address)
        self.addCleanup(dealer.close)
        return dealer

    async def assert_next_reply_is(self, dealer: RawDealer, request_id: str) -> dict:
        """The next message the raw dealer gets is the reply to C{request_id}."""
        frames = await dealer.receive(f"reply to {request_id}")
        self.assertEqual(len(frames), 1)
        reply = json.loads(frames[0])
        self.assertEqual((reply["kind"], reply["id"]), ("reply", request_id))
        return reply

    @async_test
    async def test_raw_valid_request(self) -> None:
        """A well-formed request from a raw DEALER is answered (the probe used below)."""
        dealer = self.raw()
        dealer.send_request("ok-1")
        reply = await self.assert_next_reply_is(dealer, "ok-1")
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(reply["body"], {"echo": {"id": "ok-1"}, "by": "A"})

    @async_test
    async def test_garbage_dropped(self) -> None:
        """Non-JSON, non-UTF-8, empty and non-object frames get no reply; serving goes on."""
        dealer = self.raw()
        garbage = [
            b"\xff\xfe\x00garbage",
            b"",
            b"not json",
            b"[1, 2, 3]",
            b'"just a string"',
            b"{}",
        ]
        for frame in garbage:
            dealer.send([frame])
        dealer.send_request("after-garbage")
        # The connection is ordered: a reply to any garbage would arrive first.
        reply = await self.assert_next_reply_is(dealer, "after-garbage")
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(self.dispatcher.dropped, len(garbage))
        self.assertEqual(self.dispatcher.received, len(garbage) + 1)
        self.assertEqual(self.echo.count, 1)

    @async_test
    async def test_answerable_bad_request(self) -> None:
        """A malformed request whose id and sender are readable is answered bad_request."""
        dealer = self.raw()
        bad = {
            "v": 1,
            "kind": "request",
            "type": "not a type!",
            "sender": "raw",
            "target": "A",
            "id": "bad-1",
            "body": {},
        }
        dealer.send([json.dumps(bad).encode()])
        reply = await self.assert_next_reply_is(dealer, "bad-1")
        self.assertEqual(reply["status"], "error")
        self.assertEqual(reply["body"]["code"], protocol.BAD_REQUEST)
        self.assertIn("type", reply["body"]["reason"])

        newer = dict(bad, v=2, type="echo", id="bad-2")
        dealer.send([json.dumps(newer).encode()])
        reply = await self.assert_next_reply_is(dealer, "bad-2")
        self.assertEqual(reply["body"]["code"], protocol.UNSUPPORTED_VERSION)

        extra = dict(bad, type="echo", id="bad-3", surprise=True)
        dealer.send([json.dumps(extra).encode()])
        reply = await self.assert_next_reply_is(dealer, "bad-3")
        self.assertEqual(reply["body"]["code"], protocol.BAD_REQUEST)
        self.assertIn("surprise", reply["body"]["reason"])
        self.assertEqual(self.echo.count, 0)

    @async_test
    async def test_replies_and_events_not_served(self) -> None:
        """A reply or an event sent to a server is dropped, not dispatched."""
        dealer = self.raw()
        request = protocol.request("echo", "raw", "A", "x-1", {})
        dealer.send([protocol.encode(protocol.ok_reply(request, {}))])
        dealer.send([protocol.encode(protocol.event("state", "raw", "state/A", "e1", 1, {}))])
        dealer.send_request("after")
        await self.assert_next_reply_is(dealer, "after")
        self.assertEqual(self.dispatcher.dropped, 2)
        self.assertEqual(self.echo.count, 1)

    @async_test
    async def test_multi_frame_dropped(self) -> None:
        """A message of several frames is dropped, even if one frame is a valid request."""
        dealer = self.raw()
        valid = protocol.encode(protocol.request("echo", "raw", "A", "multi", {}))
        dealer.send([valid, valid])
        dealer.send([b"a", b"b", b"c"])
        dealer.send_request("after-multi")
        await self.assert_next_reply_is(dealer, "after-multi")
        self.assertEqual(self.dispatcher.dropped, 2)
        self.assertEqual(self.echo.count, 1)

    @async_test
    async def test_over_max_size_dropped(self) -> None:
        """A frame above max_size (but within the socket limit) is dropped unparsed."""
        dealer = self.raw()
        big = protocol.request("echo", "raw", "A", "big", {"x": "y" * 5000})
        frame = protocol.encode(big, max_size=10 * 4096)
        self.assertGreater(len(frame), 4096)
        self.assertLess(len(frame), 4096 + 4096)
        dealer.send([frame])
        dealer.send_request("after-big")
        await self.assert_next_reply_is(dealer, "after-big")
        self.assertEqual(self.dispatcher.dropped, 1)
        self.assertEqual(self.echo.count, 1)

    @async_test
    async def test_huge_frame_disconnects_sender_only(self) -> None:
        """A frame far above max_size makes ZeroMQ drop that peer; others are still served."""
        bystander = self.raw()
        bystander.send_request("before")
        await self.assert_next_reply_is(bystander, "before")
        received = self.dispatcher.received

        attacker = self.raw()
        await wait_until(
            lambda: attacker.monitor.seen(zmq.EVENT_HANDSHAKE_SUCCEEDED), "attacker connected"
        )
        attacker.send([b"x" * (1024 * 1024)])
        await wait_until(
            lambda: attacker.monitor.seen(zmq.EVENT_DISCONNECTED), "the server to drop the attacker"
        )
        self.assertEqual(self.dispatcher.received, received)  # never reached the dispatcher

        bystander.send_request("after-huge")
        await self.assert_next_reply_is(bystander, "after-huge")
        client = self.node("cli").connect(self.server.address)
        self.assertEqual((await client.request("A", "echo", {}))["by"], "A")
        self.assertEqual(self.echo.count, 3)


class PubSubTests(ZmqTestCase):
    """Publish/subscribe over real sockets."""

    @async_test
    async def test_sub_reads_events_not_messages(self) -> None:
        """A SUB's bounded read counts the events a batch carries: a turn takes about
        MAX_READ_BATCH events, not MAX_READ_BATCH batches of a hundred."""
        from ecs.net import zeromq as zmq_transport

        publisher = self.node("pub").publish(LOCAL)
        store = StateStore(publisher, batch=True)
        got: list[Envelope] = []
        subscriber = self.node("sub").subscribe(publisher.address, ["state/"], got.append)
        await wait_until(lambda: bool(got), "the first tick", between=publisher.tick)
        connection = subscriber.connection
        turns: list[int] = []
        original_read = connection.doRead

        def counting_read() -> None:
            turns.append(len(got))
            original_read()
            turns[-1] = len(got) - turns[-1]

        connection.doRead = counting_read
        count = 4 * zmq_transport.MAX_READ_BATCH
        # Let the whole flood queue up before the subscriber reads.
        for i in range(count):
            store.set(f"d{i}", {"i": i})
        last = publisher.seq
        await wait_until(lambda: got[-1].seq == last, "every event")
        self.assertEqual(len([e for e in got if e.topic != TICK_TOPIC]), count)
        self.assertLessEqual(max(turns), zmq_transport.MAX_READ_BATCH + publisher.batch_limit - 1)
        self.assertGreaterEqual(len([t for t in turns if t]), 3)

    @async_test
    async def test_batches_reach_narrow_subscribers(self) -> None:
        """A batch of a turn arrives as one message and its entries as numbered events; a
        subscriber of one key (narrower than the batch's topic) gets that key's entries only."""
        publisher = self.node("pub").publish(LOCAL)
        store = StateStore(publisher, batch=True)
        everything: list[Envelope] = []
        partition: list[Envelope] = []
        self.node("sub").subscribe(publisher.address, ["state/"], everything.append)
        self.node("sub2").subscribe(publisher.address, ["state/partition"], partition.append)
        await wait_until(
            lambda: bool(everything) and bool(partition), "the first ticks", between=publisher.tick
        )
        start, start2 = len(everything), len(partition)
        for i in range(30):
            store.set(f"system/d{i}", {"i": i})
            if i % 10 == 0:
                store.set("partition", {"i": i})
        store.remove("system/d3")
        last = publisher.seq
        await wait_until(lambda: everything[-1].seq == last, "the batch")
        await wait_until(lambda: partition and partition[-1].seq == 24, "the partition's last change")
        events = [e for e in everything[start:] if e.topic != TICK_TOPIC]
        self.assertEqual([e.seq for e in events], list(range(1, last + 1)))
        self.assertEqual(events[-1].type, "removed")
        self.assertEqual(publisher.batches, 1)
        mine = [(e.topic, e.seq, e.body["value"]) for e in partition[start2:] if e.topic != TICK_TOPIC]
        self.assertEqual(mine, [("state/partition", 2, {"i": 0}), ("state/partition", 13, {"i": 10}),
                                ("state/partition", 24, {"i": 20})])

    @async_test
    async def test_prefix_filtering(self) -> None:
        """A subscriber gets only topics starting with its prefixes (and ticks), in order."""
        publisher = self.node("pub").publish(LOCAL)
        self.assertNotIn("*", publisher.address)
        got: list[Envelope] = []
        self.node("sub").subscribe(publisher.address, ["state/STS", "log/"], got.append)

        # Wait for the subscription to reach the publisher (slow joiner) by ticking.
        await wait_until(lambda: bool(got), "the first tick", between=publisher.tick)
        self.assertEqual(got[-1].topic, TICK_TOPIC)
        start = len(got)

        sent = [
            ("state/STS", True),
            ("state/MVD", False),
            ("log/STS", True),
            ("state/STS/sub", True),  # a prefix, not a whole topic
            ("stateless", False),
            ("state/ST", False),
            ("logs", False),
        ]
        seqs = {}
        for topic, _ in sent:
            seqs[topic] = publisher.publish(topic, "state", {"topic": topic})
        end = publisher.publish("log/end", "marker", {})
        await wait_until(lambda: any(e.type == "marker" for e in got), "the end marker")

        events = [e for e in got[start:] if e.topic != TICK_TOPIC]
        expected = [t for t, wanted in sent if wanted] + ["log/end"]
        self.assertEqual([e.topic for e in events], expected)
        self.assertEqual([e.seq for e in events], [seqs[t] for t in expected[:-1]] + [end])
        self.assertEqual({e.epoch for e in events}, {publisher.epoch})
        self.assertEqual({e.sender for e in events}, {"pub"})
        self.assertEqual(events[0].body, {"topic": "state/STS"})

    @async_test
    async def test_two_subscribers(self) -> None:
        """Every subscriber gets its own copy of the events it subscribed to."""
        publisher = self.node("pub").publish(LOCAL)
        a: list[Envelope] = []
        b: list[Envelope] = []
        self.node("a").subscribe(publisher.address, ["x/"], a.append)
        self.node("b").subscribe(publisher.address, ["x/", "y/"], b.append)
        await wait_until(lambda: bool(a) and bool(b), "both subscriptions", between=publisher.tick)
        a.clear()
        b.clear()
        publisher.publish("y/1", "e", {})
        publisher.publish("x/1", "e", {})
        publisher.publish("x/end", "marker", {})

        def done(got: list[Envelope]) -> bool:
            return any(e.type == "marker" for e in got)

        await wait_until(lambda: done(a) and done(b), "the marker at both")
        self.assertEqual([e.topic for e in a if e.topic != TICK_TOPIC], ["x/1", "x/end"])
        self.assertEqual([e.topic for e in b if e.topic != TICK_TOPIC], ["y/1", "x/1", "x/end"])

    @async_test
    async def test_mirror_converges_after_late_join(self) -> None:
        """A Mirror that joins after events were published converges through a snapshot."""
        await self.late_join(batch=False)

    @async_test
    async def test_batched_mirror_converges_after_late_join(self) -> None:
        """The same with a batching store: a turn's changes go as one message, the mirror converges alike."""
        publisher = await self.late_join(batch=True)
        self.assertGreaterEqual(publisher.batches, 2)  # the history, and the live burst

    async def late_join(self, batch: bool) -> Any:
        pub_node = self.node("pca")
        publisher = pub_node.publish(LOCAL)
        store = StateStore(publisher, batch=batch)
        snapshots = Calls(lambda request: store.snapshot())
        server = self.serve(pub_node, {"states": {"snapshot": snapshots}})

        # History the subscriber never sees as events.
        for i in range(20):
            store.set(f"det{i}", {"state": "Unconfigured", "i": i})
        store.remove("det3")
        store.set("det0", {"state": "Ready"})

        sub_node = self.node("eca")
        client = sub_node.connect(server.address)
        changes: list[tuple[str, Any]] = []
        mirror = Mirror(
            reactor,
            lambda: client.request("states", "snapshot", {}, timeout=2.0),
            lambda key, value: changes.append((key, value)),
            retry_delay=0.05,
            name="test mirror",
        )
        self.addCleanup(mirror.stop)
        sub_node.subscribe(publisher.address, ["state/"], mirror.event_received)
        mirror.start()
        # More changes while the subscription and the snapshot are in flight.
        store.set("det1", {"state": "Configuring"})
        store.set("det20", {"state": "Unconfigured", "i": 20})
        store.remove("det5")

        def expected() -> dict[str, Any]:
            return {k: v for k, (v, _) in store.entries.items()}

        def converged() -> bool:
            return (
                mirror.synced
                and mirror.epoch == publisher.epoch
                and mirror.seq == publisher.seq
                and mirror.entries == expected()
            )

        # Ticks are how an idle subscriber learns what it missed.
        await wait_until(converged, "the mirror to converge", between=publisher.tick)
        self.assertGreaterEqual(snapshots.count, 1)
        self.assertNotIn("det3", mirror.entries)
        self.assertNotIn("det5", mirror.entries)
        self.assertEqual(mirror.entries["det0"], {"state": "Ready"})
        self.assertEqual(mirror.entries["det20"]["i"], 20)

        # Now live: new changes arrive as events, without another snapshot.
        fetched = snapshots.count
        resyncs = mirror.resyncs
        for i in range(50):
            store.set(f"det{i % 7}", {"state": "Active", "round": i})
        store.remove("det6")
        await wait_until(converged, "the live changes")
        self.assertEqual(snapshots.count, fetched)
        self.assertEqual(mirror.resyncs, resyncs)
        self.assertEqual(changes[-1], ("det6", None))
        return publisher

    @async_test
    async def test_mirror_resyncs_after_publisher_restart(self) -> None:
        """A restarted publisher (new epoch, same address) makes the mirror take a new snapshot."""
        address = free_address()
        pub_node = self.node("pca-1")
        publisher = pub_node.publish(address)
        store = StateStore(publisher)
        store.set("a", {"v": 1})
        server = self.serve(pub_node, {"states": {"snapshot": lambda r: store.snapshot()}})
        holder = {"store": store, "server": server}

        sub_node = self.node("eca", request_timeout=1.0)

        def fetch() -> defer.Deferred[dict]:
            return sub_node.connect(holder["server"].address).request("states", "snapshot", {})

        mirror = Mirror(reactor, fetch, lambda k, v: None, retry_delay=0.05)
        self.addCleanup(mirror.stop)
        sub_node.subscribe(address, ["state/"], mirror.event_received)
        mirror.start()
        await wait_until(lambda: mirror.entries == {"a": {"v": 1}} and mirror.synced, "first sync")
        old_epoch = mirror.epoch

        await pub_node.close()
        pub_node2 = self.node("pca-2")
        publisher2 = pub_node2.publish(address)
        store2 = StateStore(publisher2)
        store2.set("b", {"v": 2})
        holder["server"] = self.serve(
            pub_node2, {"states": {"snapshot": lambda r: store2.snapshot()}}
        )

        await wait_until(
            lambda: mirror.epoch == publisher2.epoch and mirror.entries == {"b": {"v": 2}},
            "resync with the new publisher",
            between=publisher2.tick,
        )
        self.assertNotEqual(mirror.epoch, old_epoch)
        self.assertGreaterEqual(mirror.resyncs, 1)


class CurveTests(ZmqTestCase):
    """CURVE authentication: only authorised keys get anything through."""

    @async_test
    async def test_unknown_client_key_refused(self) -> None:
        """A client with an unauthorised key gets unauthorised at once (not a timeout) and one error log."""
        logs = Logs(self, ConnectingSocket)
        keys = self.keys()
        echo = Calls()
        server_node = self.node("srv", keys)
        server = self.serve(server_node, {"A": {"echo": echo}})

        rogue = self.node("rogue", self.unknown_client_keys(keys)).connect(server.address)
        started = reactor.seconds()
        d = rogue.request("A", "echo", {"x": 1}, timeout=5.0)
        error = await self.assertFailure(d, RequestError)
        self.assertNotIsInstance(error, RequestTimeout)
        self.assertLess(reactor.seconds() - started, 2.0)
        self.assertEqual(error.code, UNAUTHORISED)
        self.assertIn(f"CURVE authentication refused by {server.address}", error.reason)
        self.assertIn("authorized/", error.reason)
        errors = logs.texts(LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn(f"CURVE authentication refused by {server.address}", errors[0])
        self.assertIn("public key in the server's authorized/ directory", errors[0])
        self.assertIn("rogue", errors[0])
        self.assertEqual(echo.count, 0)
        assert server_node.allow_list is not None
        self.assertGreaterEqual(server_node.allow_list.refused, 1)

        # New requests fail at once, without waiting for any deadline.
        later = rogue.request("A", "echo", {"x": 2}, timeout=5.0)
        self.assertEqual(self.failureResultOf(later, RequestError).value.code, UNAUTHORISED)

        friend = self.node("friend", keys).connect(server.address)
        self.assertEqual(await friend.request("A", "echo", {"x": 2}), {"echo": {"x": 2}, "by": "A"})
        self.assertEqual(echo.count, 1)
        self.assertEqual([r.sender for r in echo.requests], ["friend"])
        self.assertEqual(server.dispatcher.received, 1)

        # A notification from the rogue is refused loudly, not queued.
        with self.assertRaises(RequestError) as cm:
            rogue.notify("A", "echo", {"x": 3})
        self.assertEqual(cm.exception.code, UNAUTHORISED)
        self.assertEqual(rogue.correlator.queued, 0)
        self.assertEqual(await friend.request("A", "echo", {"x": 4}), {"echo": {"x": 4}, "by": "A"})
        self.assertEqual([r.body["x"] for r in echo.requests], [2, 4])

    @async_test
    async def test_refused_client_recovers_when_key_added(self) -> None:
        """A refused client gets in once its key is added to the allow-list, without a restart."""
        logs = Logs(self, ConnectingSocket)
        keys = self.keys()
        echo = Calls()
        server_node = self.node("srv", keys)
        server = self.serve(server_node, {"A": {"echo": echo}})
        public_path, public, secret = self.key_pair_file("late")
        late_keys = attrs.evolve(keys, server_secret=None, client_public=public, client_secret=secret)
        late_node = self.node("late", late_keys, refused_retry_delay=0.05, refused_retry_max=0.2)
        client = late_node.connect(server.address)

        error = await self.assertFailure(client.request("A", "echo", {}, timeout=5.0), RequestError)
        self.assertEqual(error.code, UNAUTHORISED)
        self.assertIsNotNone(client.correlator.refusal)

        self.authorise(keys, public_path)
        await wait_until(lambda: client.correlator.refusal is None, "the client to get in")
        self.assertEqual(await client.request("A", "echo", {"n": 1}), {"echo": {"n": 1}, "by": "A"})
        self.assertIs(late_node.connect(server.address), client)
        self.assertGreaterEqual(client.link.reopened, 1)
        self.assertEqual([r.sender for r in echo.requests], ["late"])
        assert server_node.allow_list is not None
        self.assertGreaterEqual(server_node.allow_list.loads, 2)
        self.assertEqual(len(logs.texts(LogLevel.error)), 1)
        recovered = logs.texts(LogLevel.info)
        self.assertEqual(len(recovered), 1)
        self.assertIn(f"CURVE handshake with {server.address} succeeded", recovered[0])

    @async_test
    async def test_refused_subscriber_recovers_when_key_added(self) -> None:
        """A refused SUB logs the cause once and receives events once its key is authorised."""
        logs = Logs(self, ConnectingSocket)
        keys = self.keys()
        publisher = self.node("pub", keys).publish(LOCAL)
        public_path, public, secret = self.key_pair_file("viewer")
        viewer_keys = attrs.evolve(
            keys, server_secret=None, client_public=public, client_secret=secret
        )
        got: list[Envelope] = []
        subscriber = self.node(
            "viewer", viewer_keys, refused_retry_delay=0.05, refused_retry_max=0.2
        ).subscribe(publisher.address, ["state/"], got.append)

        await wait_until(lambda: subscriber.link.refusal is not None, "the refusal")
        errors = logs.texts(LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn(f"CURVE authentication refused by {publisher.address}", errors[0])

        self.authorise(keys, public_path)
        await wait_until(
            lambda: any(e.topic == "state/x" for e in got),
            "events at the subscriber",
            between=lambda: publisher.publish("state/x", "state", {}),
        )
        self.assertIsNone(subscriber.link.refusal)
        self.assertGreaterEqual(subscriber.link.reopened, 1)
        self.assertEqual(len(logs.texts(LogLevel.error)), 1)

    @async_test
    async def test_refused_retry_backs_off(self) -> None:
        """While refusals go on, new sockets are made after doubling waits up to the maximum, logged once."""
        logs = Logs(self, ConnectingSocket)
        keys = self.keys()
        server = self.serve(self.node("srv", keys), {"A": {"echo": Calls()}})
        rogue_node = self.node(
            "rogue", self.unknown_client_keys(keys), refused_retry_delay=0.02, refused_retry_max=0.08
        )
        rogue = rogue_node.connect(server.address)
        await wait_until(lambda: rogue.link.reopened >= 4, "four new sockets")
        waits = [e["delay"] for e in logs.events if e["log_level"] == LogLevel.debug]
        self.assertEqual(waits[:4], [0.02, 0.04, 0.08, 0.08])
        self.assertEqual(len(logs.texts(LogLevel.error)), 1)
        self.assertIsNotNone(rogue.correlator.refusal)

    @async_test
    async def test_close_while_refused(self) -> None:
        """Closing a refused client (even from its failed request's errback) leaves no timer or socket."""
        keys = self.keys()
        server = self.serve(self.node("srv", keys), {"A": {"echo": Calls()}})
        rogue_node = self.node("rogue", self.unknown_client_keys(keys))
        rogue = rogue_node.connect(server.address)
        d = rogue.request("A", "echo", {})
        closed: list[None] = []
        d.addErrback(lambda failure: rogue_node.close().addCallback(closed.append))
        await wait_until(lambda: bool(closed), "the close")
        self.assertIsNone(rogue.link._reopen)
        self.assertIsNone(rogue.link._monitor)
        self.assertIsNone(rogue.connection.socket)
        self.assertIsNone(rogue_node.factory.context)
        self.assertNotIn(
            "_replace", [getattr(c.func, "__name__", "") for c in reactor.getDelayedCalls()]
        )

    @async_test
    async def test_damaged_allow_list_file_at_serve(self) -> None:
        """Serving with a damaged file in authorized/ is a KeyFileError naming it."""
        keys = self.keys()
        broken = keys.authorized_dir / "broken.key"
        broken.write_bytes(b"\x00\xffnot a key\n")
        node = self.node("srv", keys)
        error = self.assertRaises(KeyFileError, node.serve, LOCAL)
        self.assertIn(str(broken), str(error))

    @async_test
    async def test_added_client_accepted(self) -> None:
        """A client pair made by add_client before the server starts gets through."""
        directory = self.keys_dir()
        _public_path, secret_path = add_client(directory, "operator")
        keys = load_keys(directory)
        public, secret = zmq.auth.load_certificate(secret_path)
        assert secret is not None
        echo = Calls()
        server = self.serve(self.node("srv", keys), {"A": {"echo": echo}})
        operator_keys = attrs.evolve(
            keys, server_secret=None, client_public=public, client_secret=secret
        )
        client = self.node("operator", operator_keys).connect(server.address)
        self.assertEqual((await client.request("A", "echo", {}))["by"], "A")

    @async_test
    async def test_wrong_server_key_refused(self) -> None:
        """A client expecting another server's key gets nothing through and is told to check the key."""
        keys = self.keys()
        other = self.keys()
        echo = Calls()
        server = self.serve(self.node("srv", keys), {"A": {"echo": echo}})
        # Authorised client key, but it expects the other installation's server key.
        confused = attrs.evolve(keys, server_public=other.server_public, server_secret=None)
        client = self.node("cli", confused).connect(server.address)
        error = await self.assertFailure(client.request("A", "echo", {}, timeout=5.0), RequestError)
        self.assertEqual(error.code, UNAUTHORISED)
        self.assertIn(f"CURVE handshake with {server.address} failed", error.reason)
        self.assertIn("is the server key right", error.reason)
        self.assertEqual(echo.count, 0)

    @async_test
    async def test_unknown_subscriber_gets_no_events(self) -> None:
        """A SUB with an unauthorised key receives no events while an authorised one does."""
        keys = self.keys()
        pub_node = self.node("pub", keys)
        publisher = pub_node.publish(LOCAL)
        good: list[Envelope] = []
        bad: list[Envelope] = []
        self.node("good", keys).subscribe(publisher.address, ["state/"], good.append)
        bad_sub = self.node("bad", self.unknown_client_keys(keys)).subscribe(
            publisher.address, ["state/"], bad.append
        )

        assert pub_node.allow_list is not None
        allow_list = pub_node.allow_list
        # Publish until the rogue has been refused by the authenticator (its
        # SUB socket's monitor reports the failed handshake) ...
        await wait_until(
            lambda: allow_list.refused >= 1 and bad_sub.link.refusal is not None,
            "the rogue's refusal",
            between=lambda: publisher.publish("state/x", "state", {}),
        )
        self.assertIn("CURVE authentication refused", bad_sub.link.refusal or "")
        # ... and the authorised subscriber has received events published since.
        mark = publisher.publish("state/mark", "marker", {})
        await wait_until(
            lambda: any(e.seq == mark for e in good),
            "the marker at the authorised subscriber",
            between=publisher.tick,
        )
        self.assertGreater(len(good), 1)
        self.assertEqual(bad, [])
        self.assertEqual(bad_sub.link.handshakes, 0)

    @async_test
    async def test_none_server_curve_client(self) -> None:
        """A CURVE client gets nothing from a security-none server and is told why."""
        echo = Calls()
        server = self.serve(self.node("srv"), {"A": {"echo": echo}})
        client = self.node("cli", self.keys()).connect(server.address)
        d = client.request("A", "echo", {}, timeout=5.0)
        error = await self.assertFailure(d, RequestError)
        self.assertEqual(error.code, UNAUTHORISED)
        # The server drops the handshake, or the client reads its greeting
        # first and sees the mechanism differ: either way the advice is given.
        self.assertIn("`security: curve`", error.reason)
        self.assertEqual(echo.count, 0)
        self.assertEqual(server.dispatcher.received, 0)

    @async_test
    async def test_curve_server_none_client(self) -> None:
        """A client without keys gets nothing from a CURVE server."""
        echo = Calls()
        server = self.serve(self.node("srv", self.keys()), {"A": {"echo": echo}})
        client = self.node("cli").connect(server.address)
        await self.assertFailure(client.request("A", "echo", {}, timeout=0.4), RequestTimeout)
        self.assertEqual(echo.count, 0)
        self.assertEqual(server.dispatcher.received, 0)

    @async_test
    async def test_curve_none_mismatch_pubsub(self) -> None:
        """A plain SUB gets no events from a CURVE PUB; a CURVE SUB gets none from a plain PUB."""
        keys = self.keys()
        curve_pub = self.node("cpub", keys).publish(LOCAL)
        # Watched before anyone connects, so that no handshake is missed: the
        # transport monitors only its connecting sockets (and only with CURVE).
        pub_monitor = self.monitor(curve_pub.connection.socket)
        plain_pub = self.node("ppub").publish(LOCAL)
        plain_got: list[Envelope] = []
        curve_got: list[Envelope] = []
        good: list[Envelope] = []
        self.node("psub").subscribe(curve_pub.address, [""], plain_got.append)
        curve_sub = self.node("csub", keys).subscribe(plain_pub.address, [""], curve_got.append)
        self.node("good", keys).subscribe(curve_pub.address, [""], good.append)

        def publish_both() -> None:
            curve_pub.publish("t", "e", {})
            plain_pub.publish("t", "e", {})

        # Both mismatched handshakes fail (the plain SUB's at the CURVE PUB,
        # the CURVE SUB's at its own monitor) while the authorised subscriber
        # of the same CURVE publisher is served.
        await wait_until(
            lambda: pub_monitor.handshake_failed()
            and curve_sub.link.refusal is not None
            and len(good) >= 5,
            "both handshakes to fail and the good subscriber to get events",
            between=publish_both,
        )
        self.assertEqual(plain_got, [])
        self.assertEqual(curve_got, [])
        self.assertEqual(curve_sub.link.handshakes, 0)
        self.assertIn("`security: curve`", curve_sub.link.refusal or "")

    def test_serving_curve_needs_server_secret(self) -> None:
        """A node with client-only keys (no server secret, no host pair) cannot serve."""
        keys = attrs.evolve(self.keys(), server_secret=None)
        node = self.node("cli", keys)
        error = self.assertRaises(ValueError, node.serve, LOCAL)
        self.assertIn("server secret", str(error))


class HostKeyTests(ZmqTestCase):
    """
    A host without the server secret serves with a pair of its own and
    names its public key in its endpoints: the secret never leaves the
    ECA's host.
    """

    def other_host(self, ca: Path) -> Path:
        """An agent host's key directory: the server's public key, the allow-list, a client pair."""
        directory = Path(self.mktemp()) / "keys"
        directory.mkdir(parents=True)
        shutil.copyfile(ca / "server.key", directory / "server.key")
        shutil.copytree(ca / "authorized", directory / "authorized")
        for name in ("client.key", "client.key_secret"):
            shutil.copyfile(ca / name, directory / name)
        return directory

    def test_host_pair_made_once(self) -> None:
        """The host's pair is made at the first load, private, and the same at the next."""
        host = self.other_host(self.keys_dir())
        keys = load_keys(host)
        self.assertIsNone(keys.server_secret)
        self.assertEqual(keys.serving_pair(), (keys.host_public, keys.host_secret))
        self.assertEqual(keys.advertised_key, keys.host_public)
        self.assertEqual((host / "host.key_secret").stat().st_mode & 0o777, 0o600)
        self.assertEqual(load_keys(host).host_public, keys.host_public)
        self.assertEqual([p.name for p in host.iterdir() if p.name.startswith(".")], [])
        # A pure client (the CLI) makes nothing; the ECA's host advertises nothing.
        self.assertIsNone(load_keys(self.other_host(self.keys_dir()), need_server_secret=False).host_public)
        self.assertIsNone(self.keys().advertised_key)

    def test_endpoint_names_its_key(self) -> None:
        """An endpoint and its key go together and come apart; a mangled key is named."""
        public, _ = zmq.curve_keypair()
        address = endpoint_with_key("tcp://10.0.0.7:7201", public)
        self.assertTrue(address.startswith("tcp://10.0.0.7:7201" + KEY_MARK))
        self.assertEqual(split_endpoint(address), ("tcp://10.0.0.7:7201", public))
        self.assertEqual(split_endpoint("tcp://10.0.0.7:7201"), ("tcp://10.0.0.7:7201", None))
        error = self.assertRaises(ValueError, split_endpoint, address[:-2])
        self.assertIn("64 hex digits", str(error))
        self.assertIn("tcp://10.0.0.7:7201", str(error))

    @async_test
    async def test_served_with_host_key(self) -> None:
        """
        Requests and events reach a server of another host through the
        endpoint it registered; the bare endpoint (the server key) is
        refused at the handshake, so no other key stands in for the host's.
        """
        ca = self.keys_dir()
        host_keys = load_keys(self.other_host(ca))
        assert host_keys.host_public is not None
        echo = Calls()
        server = self.serve(self.node("detector", host_keys), {"STS": {"echo": echo}})
        endpoint, key = split_endpoint(server.address)
        self.assertEqual(key, host_keys.host_public)
        eca_keys = load_keys(ca)
        reply = await self.node("eca", eca_keys).connect(server.address).request("STS", "echo", {"n": 1})
        self.assertEqual(reply["echo"], {"n": 1})

        bare = self.node("bare", eca_keys, refused_retry_delay=0.05).connect(endpoint)
        error = await self.assertFailure(bare.request("STS", "echo", {"n": 2}, timeout=5.0), RequestError)
        self.assertIn("server key", error.reason)
        self.assertEqual([r.body["n"] for r in echo.requests], [1])

        publisher = self.node("detector-pub", host_keys).publish(LOCAL)
        self.assertEqual(split_endpoint(publisher.address)[1], host_keys.host_public)
        store = StateStore(publisher)
        got: list[Envelope] = []
        self.node("eca-sub", eca_keys).subscribe(publisher.address, ["state/"], got.append)
        await wait_until(lambda: bool(got), "the first tick", between=publisher.tick)
        store.set("STS", {"state": "Active"})
        await wait_until(lambda: any(e.topic != TICK_TOPIC for e in got), "the state")

        # Binding again an endpoint the registry remembered (with its key) binds the endpoint.
        again = self.node("detector-2", host_keys).serve(server.address.replace(endpoint, LOCAL))
        self.assertEqual(split_endpoint(again.address)[1], host_keys.host_public)


class KeyAllowListTests(SynchronousTestCase):
    """
    The ZAP allow-list re-reads C{authorized/} when it changes, keeps the
    previous keys when a reload fails, and logs what it did.  No sockets:
    the callback is called as the authenticator thread would.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()) / "keys"
        init_keys(self.dir)
        self.keys = load_keys(self.dir)
        self.logs = Logs(self, KeyAllowList)
        self.original = self.keys.client_public

    def age(self, seconds: float = 60.0) -> None:
        """Make every file time in authorized/ C{seconds} old (no recent change)."""
        past = time.time_ns() - int(seconds * 1e9)
        for path in [*self.keys.authorized_dir.iterdir(), self.keys.authorized_dir]:
            os.utime(path, ns=(past, past))

    def allow_list(self) -> KeyAllowList:
        """A list loaded now; its log calls run at once (no reactor thread)."""
        return KeyAllowList(self.keys)

    def new_key(self, name: str) -> bytes:
        """Authorise a fresh client C{name} with add_client; its public key."""
        public_path, _ = add_client(self.dir, name)
        return zmq.auth.load_certificate(public_path)[0]

    def test_added_key_accepted_without_restart(self) -> None:
        """A key added by add_client after the load is accepted at the next handshake."""
        self.age()
        allow = self.allow_list()
        self.assertTrue(allow.callback("*", self.original))
        new = self.new_key("operator")
        self.assertTrue(allow.callback("*", new))
        self.assertEqual(allow.loads, 2)
        self.assertEqual(allow.refused, 0)
        infos = self.logs.texts(LogLevel.info)
        self.assertEqual(len(infos), 1)
        self.assertIn("2 key(s), 1 added, 0 removed", infos[0])

    def test_unchanged_directory_not_reread(self) -> None:
        """Without a change, handshakes only stat the directory: nothing is re-read."""
        self.age()
        allow = self.allow_list()
        for _ in range(5):
            self.assertTrue(allow.callback("*", self.original))
        self.assertEqual(allow.loads, 1)

    def test_recent_change_reread_until_settled(self) -> None:
        """A load right after a change is re-done (file times may be coarse), then no more."""
        allow = self.allow_list()  # init_keys has just written the directory
        allow.callback("*", self.original)
        allow.callback("*", self.original)
        self.assertEqual(allow.loads, 3)
        self.age()
        allow.callback("*", self.original)  # one more load sees settled times ...
        allow.callback("*", self.original)  # ... and then nothing is re-read
        allow.callback("*", self.original)
        self.assertEqual(allow.loads, 4)

    def test_removed_key_refused(self) -> None:
        """A key whose file is removed is refused at its next handshake, and the refusal logged once."""
        self.age()
        allow = self.allow_list()
        (self.keys.authorized_dir / "client.key").unlink()
        self.assertFalse(allow.callback("*", self.original))
        self.assertFalse(allow.callback("*", self.original))
        self.assertEqual(allow.refused, 2)
        texts = self.logs.texts(LogLevel.warn)
        # one line for the revocation (the audit trail), one for the refusals
        self.assertEqual(len([t for t in texts if "client revoked" in t]), 1, texts)
        warnings = [t for t in texts if "refused a CURVE client" in t]
        self.assertEqual(len(warnings), 1)
        self.assertIn(self.original.decode(), warnings[0])
        self.assertIn(str(self.keys.authorized_dir), warnings[0])

    def test_file_rewritten_in_place(self) -> None:
        """A key file rewritten in place (the directory's own time unchanged) is re-read."""
        self.age()
        allow = self.allow_list()
        public, _ = zmq.curve_keypair()
        directory = self.keys.authorized_dir
        before = os.stat(directory).st_mtime_ns
        write_public_key(directory / "client.key", public)
        os.utime(directory, ns=(before, before))
        self.assertTrue(allow.callback("*", public))
        self.assertFalse(allow.callback("*", self.original))

    def test_damaged_file_keeps_previous_keys(self) -> None:
        """A damaged new file is logged once, naming it; the previous keys stay until it is fixed."""
        self.age()
        allow = self.allow_list()
        broken = self.keys.authorized_dir / "broken.key"
        broken.write_bytes(b"\x00\xffnot a key\n")
        public, _ = zmq.curve_keypair()
        for _ in range(3):
            self.assertTrue(allow.callback("*", self.original))
            self.assertFalse(allow.callback("*", public))
        errors = self.logs.texts(LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn(str(broken), errors[0])
        self.assertIn("previous 1 key(s) stay authorised", errors[0])
        self.assertEqual(allow.loads, 1)

        write_public_key(broken, public)
        self.assertTrue(allow.callback("*", public))
        self.assertEqual(allow.loads, 2)
        self.assertEqual(len(self.logs.texts(LogLevel.error)), 1)

    def test_missing_directory_keeps_previous_keys(self) -> None:
        """An allow-list directory that vanished is logged; the previous keys stay."""
        self.age()
        allow = self.allow_list()
        self.keys.authorized_dir.rename(self.dir / "gone")
        self.assertTrue(allow.callback("*", self.original))
        self.assertTrue(allow.callback("*", self.original))
        errors = self.logs.texts(LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn(str(self.keys.authorized_dir), errors[0])

    def test_damaged_file_at_start(self) -> None:
        """A damaged file when the list is first loaded is a KeyFileError naming it."""
        broken = self.keys.authorized_dir / "broken.key"
        broken.write_text('curve\n    public-key = "tooshort"\n')
        error = self.assertRaises(KeyFileError, self.allow_list)
        self.assertIn(str(broken), str(error))

    def test_logs_through_reactor_thread(self) -> None:
        """Log calls made in the authenticator thread are handed to call_in_reactor, not run there."""
        self.age()
        handed: list[Any] = []
        allow = KeyAllowList(self.keys, lambda f, *a, **kw: handed.append((f, a, kw)))
        public, _ = zmq.curve_keypair()
        self.assertFalse(allow.callback("*", public))
        self.assertEqual(len(handed), 1)
        self.assertEqual(self.logs.events, [])
        f, a, kw = handed[0]
        f(*a, **kw)
        self.assertEqual(len(self.logs.texts(LogLevel.warn)), 1)
