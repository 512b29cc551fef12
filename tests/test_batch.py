"""
Tests for request batches: the serving half in L{ecs.net.dispatcher} and
the client half, L{ecs.net.batch.RequestBatcher} (on a fake client and on
the in-memory network, end to end).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs import protocol
from ecs.net.batch import RequestBatcher
from ecs.net.dispatcher import BATCH, MAX_BATCH
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.transport import Request, RequestError
from tests.test_transport import DispatcherCase


def batch_frame(requests: Any, sender: str = "pca", id: str = "b-1") -> bytes:
    """An encoded batch request."""
    return protocol.encode(protocol.request(BATCH, sender, protocol.ENDPOINT_TARGET, id, {"requests": requests}))


def item(target: str, type: str = "echo", body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"target": target, "type": type, "body": body if body is not None else {}}


class DispatcherBatchTests(DispatcherCase):
    """A batch: each request handled as if alone, one reply with every answer in order."""

    def batch(self, requests: Any, identity: str | None = "pca.demo") -> None:
        self.dispatcher.frame_received("peer-1", [batch_frame(requests)], identity)

    def test_answers_in_order(self) -> None:
        """Ok, refused, unknown type and unknown target: four answers in the order asked."""
        self.serve({"echo": lambda r: {"got": r.body}, "no": lambda r: defer.fail(RequestError("locked", "held"))})
        self.batch([item("STS", body={"n": 1}), item("STS", "no"), item("STS", "what"), item("TOF")])
        reply = self.only_reply()
        self.assertEqual((reply.status, reply.id, reply.target), ("ok", "b-1", "pca"))
        first, refused, unknown_type, unknown_target = reply.body["replies"]
        self.assertEqual(first, {"status": "ok", "body": {"got": {"n": 1}}})
        self.assertEqual((refused["status"], refused["code"], refused["reason"]), ("error", "locked", "held"))
        self.assertEqual(unknown_type["code"], protocol.UNKNOWN_TYPE)
        self.assertEqual(unknown_target["code"], protocol.UNKNOWN_TARGET)

    def test_each_with_the_batch_sender_and_identity(self) -> None:
        """Handlers see the batch's sender and authenticated identity (their authorisation applies to each)."""
        self.serve({"echo": lambda r: {}})
        self.serve({"echo": lambda r: {}}, agent="TOF")
        self.batch([item("STS"), item("TOF")], identity="pca.demo")
        self.assertEqual(
            [(r.target, r.sender, r.identity, r.id) for r in self.calls],
            [("STS", "pca", "pca.demo", "b-1/0"), ("TOF", "pca", "pca.demo", "b-1/1")],
        )

    def test_waits_for_every_answer(self) -> None:
        """The reply goes once the last (deferred) answer is in; a handler's deadline counts for itself."""
        gate: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.serve({"echo": lambda r: {"a": 1}, "slow": lambda r: gate, "never": lambda r: defer.Deferred()})
        self.batch([item("STS"), item("STS", "slow"), item("STS", "never")])
        self.assertEqual(self.sent, [])
        gate.callback({"b": 2})
        self.assertEqual(self.sent, [])
        self.clock.advance(10.0)
        answers = self.only_reply().body["replies"]
        self.assertEqual([a["status"] for a in answers], ["ok", "ok", "error"])
        self.assertEqual(answers[1]["body"], {"b": 2})
        self.assertEqual(answers[2]["code"], protocol.TIMEOUT)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bad_batches(self) -> None:
        """Not a list, empty, or too many: one bad_request naming the limit; nothing handled."""
        self.serve({"echo": lambda r: {}})
        for requests in ("x", [], [item("STS")] * (MAX_BATCH + 1)):
            self.sent.clear()
            self.batch(requests)
            reply = self.only_reply()
            self.assertError(reply, protocol.BAD_REQUEST)
            self.assertIn(str(MAX_BATCH), reply.body["reason"])
        self.assertEqual(self.calls, [])

    def test_bad_items(self) -> None:
        """A malformed request, a nested batch or one to the endpoint is refused by itself; the others are handled."""
        self.serve({"echo": lambda r: {}})
        self.batch([
            "x", item("STS", BATCH), item(protocol.ENDPOINT_TARGET), {"target": "STS", "type": "echo", "body": []},
            item("STS"),
        ])
        answers = self.only_reply().body["replies"]
        self.assertEqual([a["status"] for a in answers], ["error"] * 4 + ["ok"])
        self.assertEqual({a["code"] for a in answers[:4]}, {protocol.BAD_REQUEST})
        self.assertIn("request 3 of the batch: 'body'", answers[3]["reason"])
        self.assertEqual(len(self.calls), 1)

    def test_handler_raising(self) -> None:
        """A handler that raises answers internal for its request only; the server goes on."""
        self.serve({"echo": lambda r: {}, "boom": lambda r: 1 / 0})
        self.batch([item("STS", "boom"), item("STS")])
        answers = self.only_reply().body["replies"]
        self.assertEqual([a["status"] for a in answers], ["error", "ok"])
        self.assertEqual(answers[0]["code"], protocol.INTERNAL)
        self.assertEqual([f.type for f in self.logs.failures()], [ZeroDivisionError])


class FakeClient:
    """An L{IClient} recording requests; the test answers them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any], float | None, defer.Deferred[dict[str, Any]]]] = []
        self.cancelled: list[str] = []

    def request(self, target: str, type: str, body: dict[str, Any], timeout: float | None = None,
                sender: str | None = None) -> defer.Deferred[dict[str, Any]]:
        d: defer.Deferred[dict[str, Any]] = defer.Deferred(lambda _: self.cancelled.append(type))
        self.requests.append((target, type, body, timeout, d))
        return d


class BatcherTests(SynchronousTestCase):
    """L{RequestBatcher}: a turn's requests to one endpoint as batches, each answered on its own."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.batcher = RequestBatcher(self.clock, limit=3)
        self.client = FakeClient()

    def ask(self, target: str, body: dict[str, Any] | None = None, timeout: float | None = 5.0,
            client: FakeClient | None = None, address: str = "mem://host") -> list[Any]:
        got: list[Any] = []
        self.batcher.request(address, client or self.client, target, "configure", body or {}, timeout).addBoth(
            got.append
        )
        return got

    def test_alone_is_a_plain_request(self) -> None:
        """One request in a turn goes as itself, when the turn ends."""
        got = self.ask("STS", {"config": 1})
        self.assertEqual(self.client.requests, [])
        self.clock.advance(0)
        [(target, type, body, timeout, d)] = self.client.requests
        self.assertEqual((target, type, body, timeout), ("STS", "configure", {"config": 1}, 5.0))
        d.callback({"state": "Active"})
        self.assertEqual(got, [{"state": "Active"}])

    def test_batches_and_answers(self) -> None:
        """Five requests, limit 3: a batch of 3 and one of 2; each gets its own answer or error."""
        got = [self.ask(f"d{i}") for i in range(5)]
        self.clock.advance(0)
        self.assertEqual([(t, k, len(b["requests"])) for t, k, b, _, _ in self.client.requests],
                         [("*", BATCH, 3), ("*", BATCH, 2)])
        self.assertEqual([r["target"] for r in self.client.requests[0][2]["requests"]], ["d0", "d1", "d2"])
        self.client.requests[0][4].callback({"replies": [
            {"status": "ok", "body": {"n": 0}},
            {"status": "error", "code": "locked", "reason": "held"},
            {"status": "ok", "body": "not a dict"},
        ]})
        self.assertEqual(got[0], [{"n": 0}])
        self.assertEqual((got[1][0].value.code, got[1][0].value.reason), ("locked", "held"))
        self.assertEqual(got[2][0].value.code, protocol.INTERNAL)
        self.assertEqual((got[3], got[4]), ([], []))
        self.assertEqual((self.batcher.batches, self.batcher.batched), (2, 5))

    def test_batch_failure_fails_each(self) -> None:
        """A batch that timed out fails every request in it, each with its own error."""
        got = [self.ask(f"d{i}") for i in range(2)]
        self.clock.advance(0)
        self.client.requests[0][4].errback(RequestError(protocol.TIMEOUT, "no reply within 5 s"))
        errors = [g[0].value for g in got]
        self.assertEqual([(e.code, e.reason) for e in errors], [(protocol.TIMEOUT, "no reply within 5 s")] * 2)
        self.assertIsNot(errors[0], errors[1])

    def test_malformed_reply(self) -> None:
        """A reply whose answers do not match the requests fails each of them (internal)."""
        got = [self.ask(f"d{i}") for i in range(2)]
        self.clock.advance(0)
        self.client.requests[0][4].callback({"replies": [{"status": "ok", "body": {}}]})
        self.assertEqual([g[0].value.code for g in got], [protocol.INTERNAL] * 2)

    def test_one_by_one_when_refused(self) -> None:
        """Too large to send, or a server without batches: the requests go again one at a time."""
        for code in (protocol.TOO_LARGE, protocol.UNKNOWN_TARGET):
            self.client.requests.clear()
            got = [self.ask(f"d{i}") for i in range(2)]
            self.clock.advance(0)
            self.client.requests[0][4].errback(RequestError(code, "no"))
            again = [(t, k) for t, k, *_ in self.client.requests[1:]]
            self.assertEqual(again, [("d0", "configure"), ("d1", "configure")])
            self.client.requests[2][4].callback({"ok": 1})
            self.assertEqual((got[0], got[1]), ([], [{"ok": 1}]))

    def test_by_endpoint_and_deadline(self) -> None:
        """Requests to other endpoints, or with another deadline, go in other batches."""
        other = FakeClient()
        self.ask("a", timeout=5.0)
        self.ask("b", timeout=5.0)
        self.ask("c", timeout=9.0)
        self.ask("d", timeout=5.0, client=other, address="mem://other")
        self.clock.advance(0)
        sent = [(t, k, to) for t, k, _, to, _ in self.client.requests]
        self.assertEqual(sent, [("*", BATCH, 5.0), ("c", "configure", 9.0)])
        self.assertEqual([(t, to) for t, _, _, to, _ in other.requests], [("d", 5.0)])

    def test_cancel_before_the_turn_ends(self) -> None:
        """A request cancelled before its turn ends is never sent."""
        d = self.batcher.request("mem://host", self.client, "a", "configure", {}, 5.0)
        kept = self.ask("b")
        d.addErrback(lambda f: f.trap(defer.CancelledError))
        d.cancel()
        self.clock.advance(0)
        self.assertEqual([(t, k) for t, k, *_ in self.client.requests], [("b", "configure")])
        self.assertEqual(kept, [])

    def test_cancel_every_request_of_a_batch(self) -> None:
        """Once every request of a sent batch is cancelled, the batch is (a queued one is never delivered)."""
        ds = [self.batcher.request("mem://host", self.client, t, "configure", {}, 5.0) for t in "ab"]
        for d in ds:
            d.addErrback(lambda f: f.trap(defer.CancelledError))
        self.clock.advance(0)
        ds[0].cancel()
        self.assertEqual(self.client.cancelled, [])
        ds[1].cancel()
        self.assertEqual(self.client.cancelled, [BATCH])

    def test_limit_checked(self) -> None:
        """A limit outside 1..MAX_BATCH is refused."""
        for limit in (0, MAX_BATCH + 1):
            self.assertRaises(ValueError, RequestBatcher, self.clock, limit)


class EndToEndTests(SynchronousTestCase):
    """Through the in-memory network: a thousand requests to one endpoint, a handful of messages."""

    def test_many_requests(self) -> None:
        clock = Clock()
        network = MemoryNetwork(clock)
        server_node = MemoryNode(network, "host")
        server = server_node.serve("mem://host")
        seen: list[Request] = []

        def handler(request: Request) -> dict[str, Any]:
            seen.append(request)
            if request.body.get("fail"):
                raise RequestError(protocol.NOT_ALLOWED, f"{request.target} refuses")
            return {"system": request.target, "state": "Active"}

        for i in range(250):
            server.register(f"d{i}", {"configure": handler})
        client_node = MemoryNode(network, "pca")
        client = client_node.connect("mem://host")
        batcher = RequestBatcher(clock)
        results: dict[int, Any] = {}
        for i in range(250):
            batcher.request("mem://host", client, f"d{i}", "configure", {"fail": i == 7}, 5.0).addBoth(
                lambda r, i=i: results.__setitem__(i, r)
            )
        for _ in range(10):
            clock.advance(0)
        self.assertEqual(len(results), 250)
        self.assertEqual(results[0], {"system": "d0", "state": "Active"})
        self.assertEqual(results[249], {"system": "d249", "state": "Active"})
        self.assertEqual(results[7].value.code, protocol.NOT_ALLOWED)
        self.assertEqual(len(seen), 250)
        self.assertEqual({r.sender for r in seen}, {"pca"})
        self.assertEqual(batcher.batches, 3)  # 100 + 100 + 50
        self.assertEqual(server.dispatcher.received, 3)
