"""
Tests for L{ecs.net.transport} (L{Dispatcher}, L{Correlator}) and for the
in-memory medium L{ecs.net.memory}, including unit-level protocol
fuzzing of the serving side.

No sockets, no sleeps: time is a L{Clock}, the medium is a list or a
L{MemoryNetwork}.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ecs import protocol
from ecs.net.correlator import Correlator
from ecs.net.dispatcher import Dispatcher
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.pubsub import SubscriberCore
from ecs.net.registry import INCARNATION
from ecs.net.transport import (
    UNAUTHORISED,
    IClient,
    INode,
    IPublisher,
    IServer,
    ISubscriber,
    Request,
    RequestError,
    RequestTimeout,
    WouldBlock,
)
from ecs.protocol import Envelope


class Logs:
    """Collect what some classes log, by giving them a L{Logger} of our own."""

    def __init__(self, case: SynchronousTestCase, *classes: type) -> None:
        self.events: list[dict[str, Any]] = []
        for cls in classes:
            case.patch(cls, "_log", Logger(namespace=cls.__name__, observer=self.events.append))

    def texts(self, level: LogLevel | None = None, since: int = 0) -> list[str]:
        """The formatted messages (of C{level}), from event C{since} on."""
        return [
            formatEvent(e)
            for e in self.events[since:]
            if level is None or e["log_level"] == level
        ]

    def failures(self) -> list[Failure]:
        """The failures logged with C{Logger.failure}."""
        return [e["log_failure"] for e in self.events if "log_failure" in e]


def request_frame(
    type: str = "echo",
    body: dict[str, Any] | None = None,
    target: str = "STS",
    sender: str = "demo",
    id: str = "r-1",
) -> bytes:
    """An encoded request."""
    return protocol.encode(protocol.request(type, sender, target, id, body or {}))


class DispatcherCase(SynchronousTestCase):
    """A L{Dispatcher} whose replies go to a list."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.logs = Logs(self, Dispatcher)
        self.sent: list[tuple[object, bytes]] = []
        self.dispatcher = Dispatcher(
            lambda peer, frame: self.sent.append((peer, frame)),
            self.clock,
            name="srv",
            handler_timeout=10.0,
        )
        self.calls: list[Request] = []

    def serve(self, handlers: dict[str, Callable[[Request], Any]], agent: str = "STS") -> None:
        def recording(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
            def wrapper(request: Request) -> Any:
                self.calls.append(request)
                return handler(request)

            return wrapper

        self.dispatcher.register(agent, {k: recording(v) for k, v in handlers.items()})

    def send(self, peer: object = "peer-1", **kw: Any) -> None:
        self.dispatcher.frame_received(peer, [request_frame(**kw)])

    def replies(self) -> list[Envelope]:
        return [protocol.decode(frame) for _, frame in self.sent]

    def only_reply(self) -> Envelope:
        replies = self.replies()
        self.assertEqual(len(replies), 1, replies)
        reply = replies[0]
        self.assertEqual(reply.kind, "reply")
        return reply

    def assertError(self, reply: Envelope, code: str) -> None:
        self.assertEqual(reply.status, "error", reply)
        self.assertEqual(reply.body["code"], code, reply.body)


class DispatcherResultTests(DispatcherCase):
    """Every way a handler can answer gives exactly one reply."""

    def test_sync_dict(self) -> None:
        """A dict returned at once is the ok reply, addressed back to the sender."""
        self.serve({"echo": lambda r: {"got": r.body}})
        self.send(peer="p", body={"a": 1}, id="id-7", sender="demo")
        reply = self.only_reply()
        self.assertEqual(self.sent[0][0], "p")
        self.assertEqual(reply.status, "ok")
        self.assertEqual(reply.body, {"got": {"a": 1}})
        self.assertEqual((reply.id, reply.sender, reply.target), ("id-7", "STS", "demo"))
        self.assertEqual(self.calls[0], Request("echo", "demo", "STS", {"a": 1}, "id-7"))
        self.assertFalse(self.calls[0].is_notification)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_none_is_empty_body(self) -> None:
        """A handler returning None gets an ok reply with an empty body."""
        self.serve({"echo": lambda r: None})
        self.send()
        reply = self.only_reply()
        self.assertEqual((reply.status, reply.body), ("ok", {}))

    def test_deferred(self) -> None:
        """A Deferred result is answered when it fires, once, and its deadline is cancelled."""
        gate: Deferred[dict] = Deferred()
        self.serve({"echo": lambda r: gate})
        self.send()
        self.assertEqual(self.sent, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        gate.callback({"done": True})
        reply = self.only_reply()
        self.assertEqual((reply.status, reply.body), ("ok", {"done": True}))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(100)
        self.assertEqual(len(self.sent), 1)

    def test_fired_deferred(self) -> None:
        """An already fired Deferred is answered at once."""
        self.serve({"echo": lambda r: defer.succeed({"x": 1})})
        self.send()
        self.assertEqual(self.only_reply().body, {"x": 1})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_coroutine(self) -> None:
        """An async def handler is awaited and answered once."""
        gate: Deferred[int] = Deferred()

        async def handler(request: Request) -> dict:
            value = await gate
            return {"value": value, "type": request.type}

        self.serve({"echo": handler})
        self.send()
        self.assertEqual(self.sent, [])
        gate.callback(5)
        self.assertEqual(self.only_reply().body, {"value": 5, "type": "echo"})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_coroutine_raising_request_error(self) -> None:
        """An async handler raising RequestError answers with its code."""

        async def handler(request: Request) -> dict:
            raise RequestError("busy", "configuring already")

        self.serve({"echo": handler})
        self.send()
        reply = self.only_reply()
        self.assertError(reply, "busy")
        self.assertEqual(reply.body["reason"], "configuring already")

    def test_request_error(self) -> None:
        """A handler raising RequestError answers with its code and reason, unlogged."""

        def handler(request: Request) -> dict:
            raise RequestError("not_allowed", "operator lock held by x")

        self.serve({"echo": handler})
        self.send(id="r-5")
        reply = self.only_reply()
        self.assertError(reply, "not_allowed")
        self.assertEqual(reply.body["reason"], "operator lock held by x")
        self.assertEqual(reply.id, "r-5")
        self.assertEqual(self.logs.failures(), [])

    def test_deferred_request_error(self) -> None:
        """A Deferred failing with RequestError answers with its code."""
        self.serve({"echo": lambda r: defer.fail(RequestError("locked", "locked by y"))})
        self.send()
        self.assertError(self.only_reply(), "locked")

    def test_exception(self) -> None:
        """A handler raising anything else answers internal and logs the failure."""
        self.serve({"echo": lambda r: 1 / 0})
        self.send()
        reply = self.only_reply()
        self.assertError(reply, protocol.INTERNAL)
        self.assertIn("'echo'", reply.body["reason"])
        self.assertNotIn("division", reply.body["reason"])
        [failure] = self.logs.failures()
        self.assertTrue(failure.check(ZeroDivisionError))

    def test_deferred_exception(self) -> None:
        """A handler Deferred failing with another exception answers internal and is logged."""
        gate: Deferred[dict] = Deferred()
        self.serve({"echo": lambda r: gate})
        self.send()
        gate.errback(KeyError("k"))
        self.assertError(self.only_reply(), protocol.INTERNAL)
        [failure] = self.logs.failures()
        self.assertTrue(failure.check(KeyError))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_exception_logged_globally(self) -> None:
        """Without a patched logger the failure reaches the log system (trial sees it)."""
        dispatcher = Dispatcher(lambda p, f: self.sent.append((p, f)), self.clock)
        self.patch(Dispatcher, "_log", Logger())
        dispatcher.register("STS", {"echo": lambda r: 1 / 0})
        dispatcher.frame_received("p", [request_frame()])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertError(self.only_reply(), protocol.INTERNAL)

    def test_non_dict(self) -> None:
        """A handler returning something other than a dict answers internal and logs it."""
        for value in ([1, 2], "text", 3, (1,)):
            self.sent.clear()
            self.serve({"echo": lambda r, v=value: v})
            self.send()
            reply = self.only_reply()
            self.assertError(reply, protocol.INTERNAL)
            self.assertIn("invalid reply", reply.body["reason"])
        self.assertEqual(len(self.logs.texts(LogLevel.error)), 4)
        self.assertIn("returned list, not a dict", self.logs.texts(LogLevel.error)[0])

    def test_deferred_non_dict(self) -> None:
        """A Deferred firing with a non-dict answers internal."""
        self.serve({"echo": lambda r: defer.succeed(["x"])})
        self.send()
        self.assertError(self.only_reply(), protocol.INTERNAL)

    def test_unencodable_result(self) -> None:
        """A result JSON cannot encode still gets one (internal) reply."""
        self.serve({"echo": lambda r: {"x": object()}})
        self.send(id="r-9")
        reply = self.only_reply()
        self.assertError(reply, protocol.INTERNAL)
        self.assertIn("could not be encoded", reply.body["reason"])
        self.assertEqual(reply.id, "r-9")
        self.assertTrue(any("could not be encoded" in t for t in self.logs.texts(LogLevel.error)))

    def test_too_large_result(self) -> None:
        """A result over the size limit gets one internal reply instead."""
        dispatcher = Dispatcher(
            lambda p, f: self.sent.append((p, f)), self.clock, max_size=1000
        )
        dispatcher.register("STS", {"echo": lambda r: {"blob": "x" * 5000}})
        dispatcher.frame_received("p", [request_frame()])
        reply = self.only_reply()
        self.assertError(reply, protocol.INTERNAL)
        self.assertIn("too_large", reply.body["reason"])
        self.assertLessEqual(len(self.sent[0][1]), 1000)

    def test_handler_timeout(self) -> None:
        """A handler that never answers gets a timeout reply at handler_timeout, and no other."""
        gate: Deferred[dict] = Deferred()
        self.serve({"echo": lambda r: gate})
        self.send(id="slow-1")
        self.clock.advance(9.9)
        self.assertEqual(self.sent, [])
        self.clock.advance(0.1)
        reply = self.only_reply()
        self.assertError(reply, protocol.TIMEOUT)
        self.assertIn("10.0 s", reply.body["reason"])
        self.assertEqual(reply.id, "slow-1")
        gate.callback({"late": True})
        self.assertEqual(len(self.sent), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_handler_timeout_late_failure(self) -> None:
        """A handler failing after its timeout reply sends nothing more."""
        gate: Deferred[dict] = Deferred()
        self.serve({"echo": lambda r: gate})
        self.send()
        self.clock.advance(10)
        gate.errback(RequestError("busy", "late"))
        self.assertEqual(len(self.sent), 1)
        self.assertError(self.only_reply(), protocol.TIMEOUT)

    def test_concurrent_requests(self) -> None:
        """Several slow requests each get their own single reply, in completion order."""
        gates: list[Deferred[dict]] = []

        def handler(request: Request) -> Deferred[dict]:
            gates.append(Deferred())
            return gates[-1]

        self.serve({"echo": handler})
        for i in range(3):
            self.send(id=f"r-{i}")
        gates[2].callback({"n": 2})
        gates[0].callback({"n": 0})
        self.clock.advance(10)
        gates[1].callback({"n": 1})
        replies = self.replies()
        self.assertEqual(
            [(r.id, r.status) for r in replies], [("r-2", "ok"), ("r-0", "ok"), ("r-1", "error")]
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_duplicate_ids(self) -> None:
        """Two slow requests with the same id from one peer still get one reply each."""
        gates: list[Deferred[dict]] = []

        def handler(request: Request) -> Deferred[dict]:
            gates.append(Deferred())
            return gates[-1]

        self.serve({"echo": handler})
        self.send(id="same", body={"n": 1})
        self.send(id="same", body={"n": 2})
        gates[0].callback({"n": 1})
        self.clock.advance(10)
        gates[1].callback({"n": 2})
        replies = self.replies()
        self.assertEqual([r.status for r in replies], ["ok", "error"])
        self.assertEqual(replies[0].body, {"n": 1})
        self.assertEqual(replies[1].body["code"], protocol.TIMEOUT)
        self.clock.advance(100)
        self.assertEqual(len(self.sent), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_cancels_deadlines(self) -> None:
        """close() cancels the timers of running handlers."""
        self.serve({"echo": lambda r: Deferred()})
        self.send(id="a")
        self.send(id="b")
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.dispatcher.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_send_failure(self) -> None:
        """A reply the medium cannot send is logged and the server keeps serving."""
        attempts = []

        def send(peer: object, frame: bytes) -> None:
            attempts.append(frame)
            if len(attempts) == 1:
                raise OSError("peer gone")
            self.sent.append((peer, frame))

        dispatcher = Dispatcher(send, self.clock)
        dispatcher.register("STS", {"echo": lambda r: {}})
        dispatcher.frame_received("p", [request_frame(id="a")])
        self.assertTrue(any("peer gone" in t for t in self.logs.texts(LogLevel.warn)))
        dispatcher.frame_received("p", [request_frame(id="b")])
        self.assertEqual(self.only_reply().id, "b")


class DispatcherRoutingTests(DispatcherCase):
    """Targets, types, heartbeats, notifications and registration."""

    def test_unknown_target(self) -> None:
        """A request for an agent not served here answers unknown_target."""
        self.serve({"echo": lambda r: {}})
        self.send(target="TPC")
        reply = self.only_reply()
        self.assertError(reply, protocol.UNKNOWN_TARGET)
        self.assertIn("'TPC'", reply.body["reason"])
        self.assertEqual(self.calls, [])

    def test_unknown_type(self) -> None:
        """An unknown type answers unknown_type, listing the known types."""
        self.serve({"configure": lambda r: {}, "abort": lambda r: {}, "reset": lambda r: {}})
        self.send(type="explode")
        reply = self.only_reply()
        self.assertError(reply, protocol.UNKNOWN_TYPE)
        self.assertIn("'explode'", reply.body["reason"])
        self.assertIn("known: abort, configure, reset", reply.body["reason"])

    def test_unknown_type_no_handlers(self) -> None:
        """An agent with no handlers says so."""
        self.dispatcher.register("STS", {})
        self.send(type="x")
        self.assertIn("known: none", self.only_reply().body["reason"])

    def test_endpoint_target_is_not_an_agent(self) -> None:
        """Only heartbeats may address the endpoint itself."""
        self.serve({"echo": lambda r: {}})
        self.send(target="*", type="echo")
        self.assertError(self.only_reply(), protocol.UNKNOWN_TARGET)

    def test_heartbeat_endpoint(self) -> None:
        """A heartbeat to '*' is answered by the transport with the agent count."""
        self.send(target="*", type="heartbeat", id="hb-1")
        reply = self.only_reply()
        expected = ("ok", {"agents": 0, "incarnation": INCARNATION}, "hb-1")
        self.assertEqual((reply.status, reply.body, reply.id), expected)
        self.serve({})
        self.serve({}, agent="TPC")
        self.sent.clear()
        self.send(target="*", type="heartbeat")
        self.assertEqual(self.only_reply().body, {"agents": 2, "incarnation": INCARNATION})

    def test_heartbeat_agent(self) -> None:
        """A heartbeat to a registered agent is answered without calling its handlers."""
        self.serve({"heartbeat": lambda r: {"from": "handler"}})
        self.send(target="STS", type="heartbeat")
        reply = self.only_reply()
        self.assertEqual((reply.status, reply.sender), ("ok", "STS"))
        self.assertEqual(reply.body, {"agents": 1, "incarnation": INCARNATION})
        self.assertEqual(self.calls, [])

    def test_heartbeat_unknown_agent(self) -> None:
        """A heartbeat to an agent not served here answers unknown_target."""
        self.send(target="TPC", type="heartbeat")
        self.assertError(self.only_reply(), protocol.UNKNOWN_TARGET)

    def test_heartbeat_notification(self) -> None:
        """A heartbeat sent as a notification is not answered."""
        frame = protocol.encode(protocol.notify("heartbeat", "demo", "*", {}))
        self.dispatcher.frame_received("p", [frame])
        self.assertEqual(self.sent, [])

    def test_unregister(self) -> None:
        """After unregister the agent's requests answer unknown_target."""
        self.serve({"echo": lambda r: {}})
        self.serve({"echo": lambda r: {}}, agent="TPC")
        self.assertEqual(sorted(self.dispatcher.agents), ["STS", "TPC"])
        self.dispatcher.unregister("STS")
        self.dispatcher.unregister("never-registered")
        self.assertEqual(self.dispatcher.agents, ["TPC"])
        self.send(target="STS")
        self.assertError(self.only_reply(), protocol.UNKNOWN_TARGET)
        self.assertEqual(self.calls, [])

    def test_register_replaces(self) -> None:
        """Registering again replaces the handler set; later edits of the mapping do not leak in."""
        handlers = {"old": lambda r: {"v": "old"}}
        self.dispatcher.register("STS", handlers)
        self.dispatcher.register("STS", {"new": lambda r: {"v": "new"}})
        handlers["new2"] = lambda r: {}
        self.send(type="old")
        self.assertError(self.only_reply(), protocol.UNKNOWN_TYPE)
        self.sent.clear()
        self.send(type="new")
        self.assertEqual(self.only_reply().body, {"v": "new"})

    def notify(self, target: str = "STS", type: str = "echo", body: dict | None = None) -> None:
        frame = protocol.encode(protocol.notify(type, "demo", target, body or {}))
        self.dispatcher.frame_received("p", [frame])

    def test_notify(self) -> None:
        """A notification reaches its handler and gets no reply."""
        self.serve({"echo": lambda r: {"ignored": True}})
        self.notify(body={"n": 1})
        self.assertEqual(self.sent, [])
        self.assertEqual(len(self.calls), 1)
        self.assertTrue(self.calls[0].is_notification)
        self.assertEqual(self.calls[0].body, {"n": 1})

    def test_notify_errors_never_answered(self) -> None:
        """A notification is never answered: not for unknown target, type, or raising handlers."""

        def raising(r: Request) -> dict:
            raise RequestError("busy", "no")

        self.serve({"raise": lambda r: 1 / 0, "refuse": raising, "bad": lambda r: [1]})
        self.notify(target="TPC")
        self.notify(type="nosuch")
        self.notify(type="raise")
        self.notify(type="refuse")
        self.notify(type="bad")
        self.assertEqual(self.sent, [])
        warnings = self.logs.texts(LogLevel.warn)
        self.assertTrue(any("no agent 'TPC'" in t for t in warnings), warnings)
        self.assertTrue(any("'nosuch'" in t for t in warnings), warnings)
        self.assertTrue(any("no" in t and "refused" in t for t in warnings), warnings)
        [failure] = self.logs.failures()
        self.assertTrue(failure.check(ZeroDivisionError))

    def test_notify_deferred(self) -> None:
        """A notification handler's Deferred gets no deadline and its failure is logged."""
        gate: Deferred[dict] = Deferred()
        self.serve({"echo": lambda r: gate})
        self.notify()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        gate.errback(ValueError("boom"))
        self.assertEqual(self.sent, [])
        [failure] = self.logs.failures()
        self.assertTrue(failure.check(ValueError))

    def test_replies_and_events_dropped(self) -> None:
        """Replies and events sent to a server are dropped with a log line."""
        req = protocol.request("echo", "STS", "demo", "x", {})
        for env in (
            protocol.ok_reply(req, {}),
            protocol.event("state", "PCA", "state/x", "ep", 1, {}),
        ):
            self.dispatcher.frame_received("p", [protocol.encode(env)])
        self.assertEqual(self.sent, [])
        self.assertEqual(self.dispatcher.dropped, 2)
        self.assertEqual(self.dispatcher.received, 2)
        self.assertEqual(len([t for t in self.logs.texts(LogLevel.warn) if "dropped a" in t]), 2)

    def test_malformed_answerable(self) -> None:
        """A malformed request with readable id and sender gets an error reply from '*'."""
        raw = json.loads(request_frame(id="q-1"))
        raw["body"] = [1]
        self.dispatcher.frame_received("p", [json.dumps(raw).encode()])
        reply = self.only_reply()
        self.assertError(reply, protocol.BAD_REQUEST)
        self.assertEqual((reply.id, reply.target, reply.sender), ("q-1", "demo", "*"))
        self.assertIn("field 'body'", reply.body["reason"])
        self.assertEqual(self.dispatcher.dropped, 0)

    def test_malformed_version_answered(self) -> None:
        """A request of an unsupported version is answered with unsupported_version."""
        raw = json.loads(request_frame(id="q-2"))
        raw["v"] = 99
        self.dispatcher.frame_received("p", [json.dumps(raw).encode()])
        self.assertError(self.only_reply(), protocol.UNSUPPORTED_VERSION)

    def test_malformed_notify_not_answered(self) -> None:
        """A malformed notification is dropped even though its sender is readable."""
        raw = protocol.notify("x", "demo", "STS", {}).to_dict()
        raw["id"] = "n-1"
        self.dispatcher.frame_received("p", [json.dumps(raw).encode()])
        self.assertEqual(self.sent, [])
        self.assertEqual(self.dispatcher.dropped, 1)


# --- Fuzzing --------------------------------------------------------------

_FIELD_POOLS: dict[str, tuple[list[Any], list[Any]]] = {
    # field: (valid values, invalid values)
    "v": ([1], [0, 2, "1", True, None, 1.0, [], {}]),
    "kind": (["request"], ["Request", "", None, 1, [], "publish", "reply", "event"]),
    "type": (["echo"], [None, 1, "", "1x", "a b", "x" * 65, [], "é"]),
    "sender": (["demo", "cli:42"], [None, 3, "", "a b", "x" * 129, {}, "a/b"]),
    "target": (["STS"], [None, 3, "", "a b", "x" * 129, ["STS"]]),
    "id": (["r-1", "x" * 64], [None, 5, "", "a b", "x" * 65, 1.5]),
    "body": ([{}, {"a": [1, {"b": None}], "s": "ü"}], [None, [], "s", 1, True]),
}
_EXTRAS: list[dict[str, Any]] = [{"status": "ok"}, {"topic": "t"}, {"extra": 1}, {"seq": 1}]


def expected_outcome(fields: dict[str, Any], valid: dict[str, bool], extra: bool) -> tuple[str, str]:
    """
    What a dispatcher serving C{STS: echo} must do with C{fields}, worked out
    from the rules (not from L{protocol.decode}): C{("drop", "")} or
    C{("ok"|"error", code)}.
    """
    if not (valid["kind"] and valid["id"] and valid["sender"]):
        return ("drop", "")
    if not valid["v"]:
        return ("error", protocol.UNSUPPORTED_VERSION)
    if extra or not all(valid.values()):
        return ("error", protocol.BAD_REQUEST)
    if fields["target"] != "STS":
        return ("error", protocol.UNKNOWN_TARGET)
    if fields["type"] != "echo":
        return ("error", protocol.UNKNOWN_TYPE)
    return ("ok", "")


class DispatcherFuzzTests(SynchronousTestCase):
    """
    Whatever arrives, the dispatcher answers with one error reply (when it
    can read an id and sender) or drops with a log line, never raises, and
    keeps serving.
    """

    MAX_SIZE = 4096

    def setUp(self) -> None:
        self.clock = Clock()
        self.logs = Logs(self, Dispatcher)
        self.sent: list[tuple[object, bytes]] = []
        self.dispatcher = Dispatcher(
            lambda peer, frame: self.sent.append((peer, frame)),
            self.clock,
            max_size=self.MAX_SIZE,
        )
        self.handled = 0

        def echo(request: Request) -> dict:
            self.handled += 1
            return {"echo": request.body}

        self.dispatcher.register("STS", {"echo": echo, "count": lambda r: {"n": len(r.body)}})
        self.probes = 0
        self.rng = random.Random(20240611)

    def feed(self, frames: list[bytes], label: str) -> tuple[list[Envelope], list[str]]:
        """Feed one message; return the replies and log lines it caused."""
        sent_before, logs_before = len(self.sent), len(self.logs.events)
        try:
            self.dispatcher.frame_received("fuzzer", frames)
        except Exception as e:  # pragma: no cover - reported as the failure
            self.fail(f"{label}: frame_received raised {e!r} for {frames!r:.300}")
        replies = []
        for _, frame in self.sent[sent_before:]:
            reply = protocol.decode(frame, self.MAX_SIZE)
            self.assertEqual(reply.kind, "reply", label)
            replies.append(reply)
        self.assertLessEqual(len(replies), 1, f"{label}: {replies}")
        return replies, self.logs.texts(since=logs_before)

    def assertDropped(self, frames: list[bytes], label: str) -> None:
        dropped_before = self.dispatcher.dropped
        replies, logs = self.feed(frames, label)
        self.assertEqual(replies, [], f"{label}: {frames!r:.300}")
        self.assertTrue(any("dropped" in t for t in logs), f"{label}: no log line: {logs}")
        self.assertEqual(self.dispatcher.dropped, dropped_before + 1, label)

    def assertAnsweredOrDropped(self, frames: list[bytes], label: str) -> None:
        replies, logs = self.feed(frames, label)
        if replies:
            self.assertIn(replies[0].status, ("ok", "error"), label)
        else:
            self.assertTrue(logs, f"{label}: neither answered nor logged: {frames!r:.300}")

    def assertStillServing(self) -> None:
        self.probes += 1
        request_id = f"probe-{self.probes}"
        replies, _ = self.feed([request_frame("echo", {"p": self.probes}, id=request_id)], "probe")
        self.assertEqual(len(replies), 1, "server stopped answering")
        self.assertEqual((replies[0].status, replies[0].id), ("ok", request_id))
        self.assertEqual(replies[0].body, {"echo": {"p": self.probes}})

    def tearDown(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_random_bytes(self) -> None:
        """Random byte strings are all dropped with a log line."""
        for i in range(1500):
            frame = self.rng.randbytes(self.rng.randint(0, 300))
            self.assertDropped([frame], f"random #{i}")
            self.assertStillServing()

    def test_truncated_frames(self) -> None:
        """Every proper prefix of a valid request is dropped; the whole frame is answered."""
        frame = request_frame("echo", {"list": [1, 2, {"x": "ü"}], "t": True}, id="full")
        for n in range(len(frame)):
            self.assertDropped([frame[:n]], f"prefix {n}")
            self.assertStillServing()
        replies, _ = self.feed([frame], "whole")
        self.assertEqual([(r.id, r.status) for r in replies], [("full", "ok")])

    def test_mutated_frames(self) -> None:
        """Valid frames with random byte edits get at most one reply or a log line."""
        base = request_frame("echo", {"a": [1, 2, 3], "b": {"c": "d"}}, id="mut-1")
        for i in range(1500):
            data = bytearray(base)
            for _ in range(self.rng.randint(1, 3)):
                op = self.rng.choice(("flip", "insert", "delete", "dup"))
                pos = self.rng.randrange(len(data))
                if op == "flip":
                    data[pos] = self.rng.randrange(256)
                elif op == "insert":
                    data.insert(pos, self.rng.choice(b'{}[]":,\\ 0a\x00\xff'))
                elif op == "delete" and len(data) > 1:
                    del data[pos]
                else:
                    data[pos:pos] = data[pos : pos + self.rng.randint(1, 20)]
            self.assertAnsweredOrDropped([bytes(data)], f"mutation #{i}")
            self.assertStillServing()

    def test_json_token_soup(self) -> None:
        """Random sequences of JSON tokens and envelope words never break the server."""
        tokens = [
            b"{", b"}", b"[", b"]", b":", b",", b'"v"', b"1", b"2", b'"kind"', b'"request"',
            b'"type"', b'"echo"', b'"sender"', b'"demo"', b'"target"', b'"STS"', b'"id"',
            b'"r-1"', b'"body"', b"{}", b"null", b"true", b"-1", b"1e999", b"NaN", b'"\\ud800"',
        ]
        for i in range(1500):
            frame = b"".join(self.rng.choice(tokens) for _ in range(self.rng.randint(1, 40)))
            self.assertAnsweredOrDropped([frame], f"soup #{i}")
            self.assertStillServing()

    def test_wrong_field_types(self) -> None:
        """Each field with each wrong value is answered with the right code iff id and sender are valid."""
        for name, (_, invalid) in _FIELD_POOLS.items():
            for value in [*invalid, _ABSENT]:
                fields = {k: pool[0][0] for k, pool in _FIELD_POOLS.items()}
                valid = {k: True for k in fields}
                valid[name] = False
                if value is _ABSENT:
                    del fields[name]
                else:
                    fields[name] = value
                self.check_fields(fields, valid, False, f"{name}={value!r:.40}")

    def test_random_envelopes(self) -> None:
        """Random mixes of valid and invalid field values get exactly the outcome the rules say."""
        outcomes: dict[str, int] = {}
        for i in range(2500):
            fields: dict[str, Any] = {}
            valid: dict[str, bool] = {}
            for name, (good, bad) in _FIELD_POOLS.items():
                roll = self.rng.random()
                if roll < 0.05:
                    valid[name] = False
                    continue
                valid[name] = roll < 0.7
                fields[name] = self.rng.choice(good if valid[name] else bad)
            if valid["type"] and self.rng.random() < 0.1:
                fields["type"] = "nosuch"
            if valid["target"] and self.rng.random() < 0.1:
                fields["target"] = "ghost"
            extra = self.rng.random() < 0.15
            if extra:
                fields.update(self.rng.choice(_EXTRAS))
            keys = list(fields)
            self.rng.shuffle(keys)
            outcome = self.check_fields({k: fields[k] for k in keys}, valid, extra, f"#{i}")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            self.assertStillServing()
        # The generator reaches every outcome, so the oracle is really exercised.
        self.assertEqual(
            set(outcomes),
            {"drop", "ok", protocol.BAD_REQUEST, protocol.UNSUPPORTED_VERSION,
             protocol.UNKNOWN_TARGET, protocol.UNKNOWN_TYPE},
        )

    def check_fields(
        self, fields: dict[str, Any], valid: dict[str, bool], extra: bool, label: str
    ) -> str:
        frame = json.dumps(fields).encode("utf-8")
        status, code = expected_outcome(fields, valid, extra)
        label = f"{label}: {fields!r:.300}"
        if status == "drop":
            self.assertDropped([frame], label)
            return "drop"
        handled = self.handled
        replies, _ = self.feed([frame], label)
        self.assertEqual(len(replies), 1, label)
        reply = replies[0]
        self.assertEqual(reply.status, status, f"{label}: {reply.body}")
        self.assertEqual((reply.id, reply.target), (fields["id"], fields["sender"]), label)
        if status == "ok":
            self.assertEqual(reply.body, {"echo": fields["body"]}, label)
            self.assertEqual(self.handled, handled + 1)
            return "ok"
        self.assertEqual(reply.body["code"], code, f"{label}: {reply.body}")
        self.assertEqual(self.handled, handled, label)
        return code

    def test_huge_messages(self) -> None:
        """Messages over the limit are dropped before parsing; at the limit they are served."""
        over = request_frame("echo", {"blob": "x" * self.MAX_SIZE}, id="big")
        self.assertDropped([over], "valid but too large")
        self.assertDropped([b"\xff" * (10 * 1024 * 1024)], "10 MiB of garbage")
        self.assertDropped([b"[" * (self.MAX_SIZE + 1)], "just over the limit")
        self.assertStillServing()
        # Exactly at the limit: parsed and served; the small reply goes out.
        small = request_frame("count", {"blob": ""}, id="edge")
        padded = request_frame("count", {"blob": "x" * (self.MAX_SIZE - len(small))}, id="edge")
        self.assertEqual(len(padded), self.MAX_SIZE)
        replies, _ = self.feed([padded], "at the limit")
        self.assertEqual([(r.status, r.body) for r in replies], [("ok", {"n": 1})])
        # At the limit, echoed back: the reply would be too large, so it is an error.
        echoed = request_frame("echo", {"blob": "x" * (self.MAX_SIZE - len(small))}, id="edge")
        replies, _ = self.feed([echoed], "echo at the limit")
        self.assertEqual([(r.status, r.body["code"]) for r in replies], [("error", "internal")])
        self.assertStillServing()

    def test_deep_nesting(self) -> None:
        """JSON nested deeper than the parser can go is dropped, not raised."""
        for depth in (500, 2000, self.MAX_SIZE // 2):
            frame = b"[" * depth + b"]" * depth
            self.assertDropped([frame[: self.MAX_SIZE]], f"depth {depth}")
            self.assertStillServing()

    def test_multi_frame(self) -> None:
        """Messages of zero or several frames are dropped, even if each part is valid."""
        valid = request_frame(id="mf")
        for frames in ([], [valid, valid], [b"", valid], [valid, b""], [valid] * 3):
            self.assertDropped(frames, f"{len(frames)} frames")
            self.assertStillServing()
        self.assertEqual(self.handled, self.probes)


class _Absent:
    """Marker: leave the field out."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


# --- Correlator -------------------------------------------------------------


class Wire:
    """A medium for a L{Correlator}: records frames, or refuses them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.blocked = False
        self.error: Exception | None = None

    def send(self, frame: bytes) -> None:
        if self.error is not None:
            raise self.error
        if self.blocked:
            raise WouldBlock("queue full")
        self.frames.append(frame)

    def decoded(self) -> list[Envelope]:
        return [protocol.decode(f) for f in self.frames]


class CorrelatorTests(SynchronousTestCase):
    """The client half: correlation, deadlines, outbox, retry, close."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.wire = Wire()
        self.logs = Logs(self, Correlator)
        self.correlator = self.make()

    def make(self, **kw: Any) -> Correlator:
        args: dict[str, Any] = dict(
            sender="me", address="tcp://peer:1", default_timeout=5.0, retry_interval=0.25
        )
        args.update(kw)
        return Correlator(self.wire.send, self.clock, **args)

    def answer(
        self, frame: bytes, body: dict | None = None, error: tuple[str, str] | None = None
    ) -> None:
        request = protocol.decode(frame)
        if error is None:
            reply = protocol.ok_reply(request, body or {})
        else:
            reply = protocol.error_reply(request, *error)
        self.correlator.frame_received([protocol.encode(reply)])

    def test_request_frame(self) -> None:
        """A request goes out as a valid envelope with a fresh id each time."""
        self.correlator.request("STS", "configure", {"mode": "x"})
        self.correlator.request("STS", "configure", {}, sender="cli:7")
        first, second = self.wire.decoded()
        self.assertEqual(
            (first.kind, first.type, first.sender, first.target, first.body),
            ("request", "configure", "me", "STS", {"mode": "x"}),
        )
        self.assertEqual(second.sender, "cli:7")
        self.assertNotEqual(first.id, second.id)
        self.assertEqual(self.correlator.pending, 2)

    def test_ids_differ_between_clients(self) -> None:
        """Two correlators never produce the same request id."""
        other = self.make()
        self.correlator.request("STS", "t", {})
        other.request("STS", "t", {})
        a, b = self.wire.decoded()
        self.assertNotEqual(a.id, b.id)

    def test_out_of_order(self) -> None:
        """Several requests in flight are matched to their replies in any order."""
        ds = [self.correlator.request("STS", "get", {"n": i}) for i in range(3)]
        frames = list(self.wire.frames)
        self.answer(frames[2], {"n": 2})
        self.answer(frames[0], {"n": 0})
        self.assertNoResult(ds[1])
        self.answer(frames[1], {"n": 1})
        self.assertEqual([self.successResultOf(d) for d in ds], [{"n": 0}, {"n": 1}, {"n": 2}])
        self.assertEqual(self.correlator.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_error_reply(self) -> None:
        """An error reply fails the Deferred with its code and reason."""
        d = self.correlator.request("STS", "configure", {})
        self.answer(self.wire.frames[0], error=("busy", "already configuring"))
        e = self.failureResultOf(d, RequestError).value
        self.assertNotIsInstance(e, RequestTimeout)
        self.assertEqual((e.code, e.reason), ("busy", "already configuring"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deadline(self) -> None:
        """No reply by the deadline fails with RequestTimeout; the late reply is dropped."""
        d = self.correlator.request("STS", "configure", {})
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        e = self.failureResultOf(d, RequestTimeout).value
        self.assertEqual(e.code, protocol.TIMEOUT)
        self.assertIn("no reply to configure to STS from tcp://peer:1 within 5.0 s", e.reason)
        self.assertEqual(self.correlator.pending, 0)
        self.answer(self.wire.frames[0], {"late": True})
        self.assertEqual(self.correlator.late_replies, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_own_timeout(self) -> None:
        """A per-request timeout overrides the default."""
        d = self.correlator.request("STS", "t", {}, timeout=1.0)
        self.clock.advance(1.0)
        self.failureResultOf(d, RequestTimeout)

    def test_unknown_reply(self) -> None:
        """A reply to an id never sent counts as late and changes nothing."""
        d = self.correlator.request("STS", "t", {})
        stray = protocol.ok_reply(protocol.request("t", "me", "STS", "nope-1", {}), {})
        self.correlator.frame_received([protocol.encode(stray)])
        self.assertEqual(self.correlator.late_replies, 1)
        self.assertNoResult(d)

    def next_retry_delay(self) -> float:
        """The wait before the pending retry (the earliest delayed call)."""
        retry = min(self.clock.getDelayedCalls(), key=lambda call: call.getTime())
        return round(retry.getTime() - self.clock.seconds(), 9)

    def test_would_block_then_sent(self) -> None:
        """A refused frame is retried after 1 ms, then ever later up to retry_interval, until sent."""
        self.wire.blocked = True
        d = self.correlator.request("STS", "t", {})
        self.assertEqual((self.wire.frames, self.correlator.queued), ([], 1))
        delays = []
        for _ in range(11):
            delays.append(self.next_retry_delay())
            self.clock.advance(delays[-1])
        self.assertEqual(
            delays, [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.25, 0.25, 0.25]
        )
        self.assertEqual(self.wire.frames, [])
        # Unblocked between two retries: sent at the next one, not before.
        self.wire.blocked = False
        self.clock.advance(0.2)
        self.assertEqual(self.wire.frames, [])
        self.clock.advance(0.05)
        self.assertEqual(len(self.wire.frames), 1)
        self.assertEqual(self.correlator.queued, 0)
        self.answer(self.wire.frames[0], {"ok": 1})
        self.assertEqual(self.successResultOf(d), {"ok": 1})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_fresh_peer_first_request_quick(self) -> None:
        """A request refused only until the peer connects goes out within a few ms, not a whole interval."""
        self.correlator = self.make(retry_interval=0.02)
        self.wire.blocked = True
        self.correlator.request("STS", "t", {})
        self.clock.advance(0.002)
        self.wire.blocked = False  # connected after 2 ms
        self.clock.advance(0.001)
        self.assertEqual(self.wire.frames, [])
        self.clock.advance(0.001)  # the third retry, at 1 + 2 + 4 ms
        self.assertEqual(len(self.wire.frames), 1)
        self.assertEqual(self.clock.seconds(), 0.004)

    def test_retry_backoff_resets_after_send(self) -> None:
        """After a frame is taken, the next refusal is retried after 1 ms again."""
        self.wire.blocked = True
        self.correlator.request("STS", "a", {})
        for _ in range(10):
            self.clock.advance(self.next_retry_delay())
        self.assertEqual(self.next_retry_delay(), 0.25)
        self.wire.blocked = False
        self.clock.advance(0.25)
        self.assertEqual(len(self.wire.frames), 1)
        self.wire.blocked = True
        self.correlator.request("STS", "b", {})
        self.assertEqual(self.next_retry_delay(), 0.001)

    def test_would_block_until_deadline(self) -> None:
        """A request never taken by the medium times out as unreachable, and retrying stops."""
        self.wire.blocked = True
        d = self.correlator.request("STS", "t", {})
        self.clock.pump([0.25] * 20)
        e = self.failureResultOf(d, RequestTimeout).value
        self.assertIn("not delivered within 5.0 s", e.reason)
        self.assertIn("unreachable", e.reason)
        self.clock.advance(0.25)
        self.assertEqual(self.correlator.queued, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.wire.blocked = False
        self.clock.advance(1)
        self.assertEqual(self.wire.frames, [])

    def test_notify_queued_in_order(self) -> None:
        """Notifications and requests queued while blocked go out in their order."""
        self.correlator.notify("PCA", "states", {"n": 0})
        self.wire.blocked = True
        self.correlator.notify("PCA", "states", {"n": 1})
        d = self.correlator.request("PCA", "get", {"n": 2})
        self.correlator.notify("PCA", "states", {"n": 3})
        self.assertEqual(self.correlator.queued, 3)
        self.wire.blocked = False
        self.clock.advance(0.25)
        sent = self.wire.decoded()
        self.assertEqual([e.body["n"] for e in sent], [0, 1, 2, 3])
        self.assertEqual([e.kind for e in sent], ["notify", "notify", "request", "notify"])
        self.assertIsNone(sent[0].id)
        self.answer(self.wire.frames[2])
        self.successResultOf(d)
        self.assertEqual(self.correlator.lost_notifications, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_notify_lost(self) -> None:
        """A notification not taken within the default timeout is lost, counted and logged."""
        self.wire.blocked = True
        self.correlator.notify("PCA", "states", {})
        self.clock.pump([0.25] * 19)
        self.assertEqual(self.correlator.lost_notifications, 0)
        self.clock.advance(0.25)
        self.assertEqual(self.correlator.lost_notifications, 1)
        self.assertEqual(self.correlator.queued, 0)
        errors = self.logs.texts(LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn("states to PCA lost", errors[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.wire.blocked = False
        self.clock.advance(1)
        self.assertEqual(self.wire.frames, [])

    def test_lost_notification_does_not_block_later_ones(self) -> None:
        """After a lost notification, a later one still goes out when the peer returns."""
        self.wire.blocked = True
        self.correlator.notify("PCA", "old", {})
        self.clock.advance(4.0)
        self.correlator.notify("PCA", "new", {})
        self.clock.advance(1.0)
        self.assertEqual(self.correlator.lost_notifications, 1)
        self.wire.blocked = False
        self.clock.advance(0.25)
        self.assertEqual([e.type for e in self.wire.decoded()], ["new"])

    def test_outbox_full(self) -> None:
        """With a full outbox new messages fail at once with overloaded."""
        self.correlator = self.make(max_outbox=2)
        self.wire.blocked = True
        self.correlator.notify("PCA", "a", {})
        self.correlator.request("PCA", "b", {})
        d = self.correlator.request("PCA", "c", {})
        e = self.failureResultOf(d, RequestError).value
        self.assertEqual(e.code, protocol.OVERLOADED)
        self.assertIn("c to PCA", e.reason)
        with self.assertRaises(RequestError) as cm:
            self.correlator.notify("PCA", "d", {})
        self.assertEqual(cm.exception.code, protocol.OVERLOADED)
        self.assertEqual(self.correlator.pending, 1)
        self.assertEqual(len(self.logs.texts(LogLevel.error)), 2)

    def test_close(self) -> None:
        """close() fails pending requests, stops retrying and refuses new messages."""
        d1 = self.correlator.request("STS", "a", {})
        self.wire.blocked = True
        d2 = self.correlator.request("STS", "b", {})
        self.correlator.close()
        for d in (d1, d2):
            e = self.failureResultOf(d, RequestError).value
            self.assertEqual(e.code, "closed")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((self.correlator.pending, self.correlator.queued), (0, 0))
        late = self.correlator.request("STS", "c", {})
        self.assertEqual(self.failureResultOf(late, RequestError).value.code, "closed")
        with self.assertRaises(RequestError) as cm:
            self.correlator.notify("STS", "d", {})
        self.assertEqual(cm.exception.code, "closed")

    def test_handshake_refused_fails_pending(self) -> None:
        """A refused handshake fails sent and queued requests at once with unauthorised."""
        sent = self.correlator.request("STS", "a", {})
        self.wire.blocked = True
        queued = self.correlator.request("STS", "b", {})
        self.correlator.notify("STS", "c", {})
        reason = "CURVE authentication refused by tcp://peer:1: is the key in authorized/?"
        self.correlator.handshake_refused(reason)
        for d, what in ((sent, "a to STS"), (queued, "b to STS")):
            e = self.failureResultOf(d, RequestError).value
            self.assertNotIsInstance(e, RequestTimeout)
            self.assertEqual(e.code, UNAUTHORISED)
            self.assertEqual(e.reason, f"{what}: {reason}")
        self.assertEqual((self.correlator.pending, self.correlator.queued), (0, 0))
        self.assertEqual(self.correlator.refusal, reason)
        # The queued notification is lost, counted and logged with the reason.
        self.assertEqual(self.correlator.lost_notifications, 1)
        errors = self.logs.texts(LogLevel.error)
        self.assertEqual(len(errors), 1)
        self.assertIn(reason, errors[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused_new_messages_fail_at_once(self) -> None:
        """While refused, new requests fail and notifications raise unauthorised, without sending."""
        self.correlator.handshake_refused("refused by tcp://peer:1")
        d = self.correlator.request("STS", "a", {})
        e = self.failureResultOf(d, RequestError).value
        self.assertEqual((e.code, e.reason), (UNAUTHORISED, "a to STS: refused by tcp://peer:1"))
        with self.assertRaises(RequestError) as cm:
            self.correlator.notify("STS", "n", {})
        self.assertEqual(cm.exception.code, UNAUTHORISED)
        self.assertEqual(self.wire.frames, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_handshake_succeeded_recovers(self) -> None:
        """After a successful handshake requests go out and are answered again."""
        self.correlator.handshake_refused("refused")
        self.correlator.handshake_succeeded()
        self.assertIsNone(self.correlator.refusal)
        d = self.correlator.request("STS", "a", {})
        self.answer(self.wire.frames[0], {"back": True})
        self.assertEqual(self.successResultOf(d), {"back": True})

    def test_refused_after_close_ignored(self) -> None:
        """A refusal reported after close() changes nothing: new requests still fail as closed."""
        self.correlator.close()
        self.correlator.handshake_refused("refused")
        d = self.correlator.request("STS", "a", {})
        self.assertEqual(self.failureResultOf(d, RequestError).value.code, "closed")

    def test_cancel(self) -> None:
        """Cancelling a request Deferred forgets it: no timer, and its reply counts as late."""
        d = self.correlator.request("STS", "a", {})
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.correlator.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.answer(self.wire.frames[0])
        self.assertEqual(self.correlator.late_replies, 1)

    def test_cancel_queued(self) -> None:
        """A request cancelled while queued is never sent."""
        self.wire.blocked = True
        d = self.correlator.request("STS", "a", {})
        self.correlator.notify("STS", "after", {})
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.wire.blocked = False
        self.clock.advance(0.25)
        self.assertEqual([e.type for e in self.wire.decoded()], ["after"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_body_not_json(self) -> None:
        """A body JSON cannot encode fails the request at once with bad_request."""
        for body in ({"x": object()}, {"x": {1, 2}}, {"x": float("inf")}):
            d = self.correlator.request("STS", "a", body)
            e = self.failureResultOf(d, RequestError).value
            self.assertEqual(e.code, protocol.BAD_REQUEST)
            self.assertIn("body cannot be encoded", e.reason)
        with self.assertRaises(RequestError) as cm:
            self.correlator.notify("STS", "a", {"x": object()})
        self.assertEqual(cm.exception.code, protocol.BAD_REQUEST)
        self.assertEqual(self.wire.frames, [])
        self.assertEqual(self.correlator.pending, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_body_too_large(self) -> None:
        """A request over the size limit fails at once with too_large."""
        self.correlator = self.make(max_size=500)
        d = self.correlator.request("STS", "a", {"blob": "x" * 1000})
        e = self.failureResultOf(d, RequestError).value
        self.assertEqual(e.code, protocol.TOO_LARGE)
        self.assertIn("exceeds the limit of 500 bytes", e.reason)
        with self.assertRaises(RequestError) as cm:
            self.correlator.notify("STS", "a", {"blob": "x" * 1000})
        self.assertEqual(cm.exception.code, protocol.TOO_LARGE)
        self.assertEqual(self.wire.frames, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_send_error(self) -> None:
        """A medium error other than WouldBlock fails requests (internal) and loses notifications."""
        self.wire.error = OSError("socket closed")
        d = self.correlator.request("STS", "a", {})
        e = self.failureResultOf(d, RequestError).value
        self.assertEqual(e.code, protocol.INTERNAL)
        self.assertIn("socket closed", e.reason)
        self.correlator.notify("STS", "b", {})
        self.assertEqual(self.correlator.lost_notifications, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_odd_frames_dropped(self) -> None:
        """Multi-frame messages, garbage and non-replies are dropped with a log line."""
        d = self.correlator.request("STS", "a", {})
        request = self.wire.frames[0]
        self.correlator.frame_received([request, request])
        self.correlator.frame_received([b"\x00garbage"])
        self.correlator.frame_received([request])
        self.assertEqual(len(self.logs.texts(LogLevel.warn)), 3)
        self.assertNoResult(d)
        self.assertEqual(self.correlator.pending, 1)
        self.answer(request, {"fine": True})
        self.assertEqual(self.successResultOf(d), {"fine": True})


# --- The in-memory medium ----------------------------------------------------


class MemoryTransportTests(SynchronousTestCase):
    """Two L{MemoryNode}s on a L{MemoryNetwork}, driven by a L{Clock}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.network = MemoryNetwork(self.clock)
        self.server_node = MemoryNode(self.network, "srv", handler_timeout=3.0)
        self.client_node = MemoryNode(self.network, "cli", request_timeout=2.0)
        self.server = self.server_node.serve("mem://srv:*")
        self.calls: list[Request] = []

        def get(request: Request) -> dict:
            self.calls.append(request)
            return {"answer": request.body.get("q")}

        self.server.register("STS", {"get": get, "slow": lambda r: Deferred()})
        self.client = self.client_node.connect(self.server.address)

    def test_interfaces(self) -> None:
        """The memory classes provide the interfaces of the real transport."""
        self.assertTrue(verifyObject(INode, self.client_node))
        self.assertTrue(verifyObject(IServer, self.server))
        self.assertTrue(verifyObject(IClient, self.client))
        publisher = self.server_node.publish("mem://pub:*")
        self.assertTrue(verifyObject(IPublisher, publisher))
        subscriber = self.client_node.subscribe(publisher.address, [""], lambda e: None)
        self.assertTrue(verifyObject(ISubscriber, subscriber))

    def test_addresses(self) -> None:
        """A '*' port gets a unique address; a bound address cannot be bound twice."""
        other = self.server_node.serve("mem://srv:*")
        self.assertNotEqual(other.address, self.server.address)
        self.assertTrue(other.address.startswith("mem://srv:"))
        with self.assertRaises(OSError):
            self.client_node.serve(self.server.address)
        self.assertIs(self.client_node.connect(self.server.address), self.client)

    def test_request(self) -> None:
        """A request is served and answered, but only once the clock turns."""
        d = self.client.request("STS", "get", {"q": 42})
        self.assertNoResult(d)
        self.assertEqual(self.calls, [])
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), {"answer": 42})
        self.assertEqual(self.calls[0].sender, "cli")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_error_reply(self) -> None:
        """An unknown type comes back as a RequestError with its code."""
        d = self.client.request("STS", "nosuch", {})
        self.clock.advance(0)
        e = self.failureResultOf(d, RequestError).value
        self.assertEqual(e.code, protocol.UNKNOWN_TYPE)
        self.assertIn("known: get, slow", e.reason)

    def test_handler_timeout(self) -> None:
        """A handler that never answers yields the server's timeout reply."""
        node = MemoryNode(self.network, "cli2", request_timeout=10.0)
        d = node.connect(self.server.address).request("STS", "slow", {})
        self.clock.advance(0)
        self.clock.advance(3.0)
        e = self.failureResultOf(d, RequestError).value
        self.assertEqual(e.code, protocol.TIMEOUT)
        self.assertIn("not handled within 3.0 s", e.reason)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_notify(self) -> None:
        """A notification reaches the handler after the clock turns and is not answered."""
        self.client.notify("STS", "get", {"q": 1})
        self.assertEqual(self.calls, [])
        self.clock.advance(0)
        self.assertTrue(self.calls[0].is_notification)
        self.assertEqual(self.client.correlator.late_replies, 0)

    def test_server_down(self) -> None:
        """While the server is down requests time out as unreachable; afterwards they work."""
        self.network.set_down(self.server.address)
        d = self.client.request("STS", "get", {"q": 1})
        self.clock.pump([0.02] * 120)
        e = self.failureResultOf(d, RequestTimeout).value
        self.assertIn("unreachable", e.reason)
        self.assertEqual(self.calls, [])
        self.network.set_down(self.server.address, False)
        d = self.client.request("STS", "get", {"q": 2})
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), {"answer": 2})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_server_back_before_deadline(self) -> None:
        """A request queued while the server is down is delivered when it returns."""
        self.network.set_down(self.server.address)
        d = self.client.request("STS", "get", {"q": 3})
        self.clock.advance(1.0)
        self.assertNoResult(d)
        self.network.set_down(self.server.address, False)
        self.clock.advance(0.02)
        self.assertEqual(self.successResultOf(d), {"answer": 3})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reply_lost(self) -> None:
        """A server that goes down after receiving loses the reply: the client gets no reply."""
        d = self.client.request("STS", "get", {"q": 4})
        self.network.set_down(self.server.address)
        self.network.servers[self.server.address].dispatcher.frame_received(
            self.client, [request_frame("get", {"q": 5}, id="direct")]
        )
        self.clock.advance(2.0)
        e = self.failureResultOf(d, RequestTimeout).value
        self.assertIn("no reply", e.reason)

    def test_no_server(self) -> None:
        """A client of an address nobody serves times out as unreachable."""
        d = self.client_node.connect("mem://nobody:9").request("X", "get", {}, timeout=0.5)
        self.clock.pump([0.02] * 30)
        self.assertIn("unreachable", self.failureResultOf(d, RequestTimeout).value.reason)

    def test_close(self) -> None:
        """Closing a node fails its pending requests and unbinds its endpoints."""
        d = self.client.request("STS", "slow", {})
        self.assertIsNone(self.successResultOf(self.client_node.close()))
        self.assertEqual(self.failureResultOf(d, RequestError).value.code, "closed")
        self.server_node.close()
        self.assertNotIn(self.server.address, self.network.servers)
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closed_server_receives_nothing(self) -> None:
        """A frame still in flight when its server closes is not handled."""
        d = self.client.request("STS", "get", {"q": 1}, timeout=1.0)
        self.server.close()
        self.clock.advance(0)
        self.assertEqual(self.calls, [])
        self.clock.advance(1.0)
        self.failureResultOf(d, RequestTimeout)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_publish_subscribe(self) -> None:
        """Subscribers get events whose topic starts with one of their prefixes, never synchronously."""
        publisher = self.server_node.publish("mem://pub:*")
        got: dict[str, list[Envelope]] = {"state": [], "both": [], "none": []}
        self.client_node.subscribe(publisher.address, ["state/"], got["state"].append)
        self.client_node.subscribe(publisher.address, ["state/STS", "log/"], got["both"].append)
        self.client_node.subscribe(publisher.address, ["other"], got["none"].append)
        self.assertEqual(publisher.publish("state/STS", "state", {"v": 1}), 1)
        self.assertEqual(publisher.publish("state/TPC", "state", {"v": 2}), 2)
        self.assertEqual(publisher.publish("log/STS", "log", {"v": 3}), 3)
        self.assertEqual(got, {"state": [], "both": [], "none": []})
        self.clock.advance(0)
        self.assertEqual([e.seq for e in got["state"]], [1, 2])
        self.assertEqual([e.topic for e in got["both"]], ["state/STS", "log/STS"])
        self.assertEqual(got["none"], [])
        self.assertEqual({e.epoch for e in got["state"]}, {publisher.epoch})
        self.assertEqual(got["state"][0].sender, "srv")

    def test_publisher_down(self) -> None:
        """Events of a down publisher are lost; later ones arrive with a gap in seq."""
        publisher = self.server_node.publish("mem://pub:*")
        got: list[Envelope] = []
        self.client_node.subscribe(publisher.address, [""], got.append)
        publisher.publish("a", "t", {})
        self.network.set_down(publisher.address)
        publisher.publish("a", "t", {})
        self.network.set_down(publisher.address, False)
        publisher.publish("a", "t", {})
        self.clock.advance(0)
        self.assertEqual([e.seq for e in got], [1, 3])

    def test_unsubscribe(self) -> None:
        """A closed subscriber gets nothing more."""
        publisher = self.server_node.publish("mem://pub:*")
        got: list[Envelope] = []
        subscriber = self.client_node.subscribe(publisher.address, [""], got.append)
        publisher.publish("a", "t", {})
        self.clock.advance(0)
        subscriber.close()
        publisher.publish("a", "t", {})
        self.clock.advance(0)
        self.assertEqual(len(got), 1)

    def test_unsubscribe_in_flight(self) -> None:
        """A subscriber closed before delivery does not get the events in flight."""
        publisher = self.server_node.publish("mem://pub:*")
        got: list[Envelope] = []
        subscriber = self.client_node.subscribe(publisher.address, [""], got.append)
        publisher.publish("a", "t", {})
        subscriber.close()
        self.clock.advance(0)
        self.assertEqual(got, [])

    def test_subscriber_errors_contained(self) -> None:
        """A subscriber callback that raises is logged and later events still arrive."""
        logs = Logs(self, SubscriberCore)
        publisher = self.server_node.publish("mem://pub:*")
        got: list[int] = []

        def callback(envelope: Envelope) -> None:
            got.append(envelope.seq or 0)
            if envelope.seq == 1:
                raise RuntimeError("bad consumer")

        self.client_node.subscribe(publisher.address, [""], callback)
        publisher.publish("a", "t", {})
        publisher.publish("a", "t", {})
        self.clock.advance(0)
        self.assertEqual(got, [1, 2])
        [failure] = logs.failures()
        self.assertTrue(failure.check(RuntimeError))

    def test_flush(self) -> None:
        """MemoryNetwork.flush delivers at once, including what deliveries queue."""
        d = self.client.request("STS", "get", {"q": 7})
        self.network.flush()
        self.assertEqual(self.successResultOf(d), {"answer": 7})
        self.assertEqual(self.network.delivered, 2)
