# -*- test-case-name: tests.test_batch -*-
"""
The client half of request batches (the serving half is
L{ecs.net.dispatcher.Dispatcher}; see its module docstring).

A L{RequestBatcher} collects the requests made to one endpoint, with one
deadline, during a reactor turn, and sends them when the turn ends: one
alone as an ordinary request, several as L{BATCH} requests of at most
C{limit} each.  Every request still gets exactly one answer, its own: the
reply's body, or a L{RequestError} with the code and reason its handler
gave (or the batch's, when the whole batch failed: unreachable, timed
out).  A batch too large to encode, or refused by a server that does not
serve batches, is sent again one request at a time.

The cost it saves is per message (encoding, a ZeroMQ send, a wake-up and
a decode on each side), which dominates a burst: a PCA configuring a
thousand detectors of one sim host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from ecs import protocol
from ecs.net.dispatcher import BATCH, MAX_BATCH
from ecs.net.transport import IClient, RequestError

#: Requests per batch by default: a reply waits for all of them.
DEFAULT_LIMIT = 100

#: Codes of a batch's refusal after which its requests go one by one.
_ONE_BY_ONE = (protocol.TOO_LARGE, protocol.UNKNOWN_TARGET, protocol.UNKNOWN_TYPE)

class _Item:
    """One request waiting for its turn's end, then for its answer."""

    __slots__ = ("body", "cancelled", "d", "on_cancel", "target", "type")

    def __init__(self, target: str, type: str, body: dict[str, Any]) -> None:
        self.target, self.type, self.body = target, type, body
        self.cancelled = False
        #: What a cancel does once the request is sent (cancel its own
        #: request, or count down its batch's).
        self.on_cancel: Callable[[], None] | None = None
        self.d: defer.Deferred[dict[str, Any]] = defer.Deferred(self._cancel)

    def _cancel(self, d: defer.Deferred[dict[str, Any]]) -> None:
        self.cancelled = True
        if self.on_cancel is not None:
            self.on_cancel()


class RequestBatcher:
    """Requests of one reactor turn to one endpoint, sent as batches (see the module docstring)."""

    def __init__(self, clock: IReactorTime, limit: int = DEFAULT_LIMIT) -> None:
        if not 1 <= limit <= MAX_BATCH:
            raise ValueError(f"limit must be 1 to {MAX_BATCH}, not {limit}")
        self._clock = clock
        self._limit = limit
        self._queues: dict[tuple[str, float | None], tuple[IClient, list[_Item]]] = {}
        self._flush_call: IDelayedCall | None = None
        #: Batches sent, and requests sent in them (for tests and metrics).
        self.batches = 0
        self.batched = 0

    def request(
        self, address: str, client: IClient, target: str, type: str, body: dict[str, Any],
        timeout: float | None = None,
    ) -> defer.Deferred[dict[str, Any]]:
        """
        Send C{type} to C{target} through C{client} (connected to
        C{address}) when this turn ends.  Cancelling the result before then
        sends nothing; after, it cancels the request, or, in a batch, the
        batch once every request in it was cancelled (a queued batch is then
        never delivered, as a queued request would not be).
        """
        item = _Item(target, type, body)
        key = (address, timeout)
        queue = self._queues.get(key)
        if queue is None or queue[0] is not client:
            if queue is not None:  # a new connection to that address: send what the old one has
                self._send(queue[0], queue[1], timeout)
            queue = self._queues[key] = (client, [])
        queue[1].append(item)
        if self._flush_call is None:
            self._flush_call = self._clock.callLater(0, self.flush)
        return item.d

    def flush(self) -> None:
        """Send everything collected (the end of the turn)."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        queues, self._queues = self._queues, {}
        for (_, timeout), (client, items) in queues.items():
            self._send(client, items, timeout)

    def _send(self, client: IClient, items: list[_Item], timeout: float | None) -> None:
        items = [item for item in items if not item.cancelled]
        for start in range(0, len(items), self._limit):
            chunk = items[start:start + self._limit]
            if len(chunk) == 1:
                self._one(client, chunk[0], timeout)
                continue
            body = {"requests": [{"target": i.target, "type": i.type, "body": i.body} for i in chunk]}
            self.batches += 1
            self.batched += len(chunk)
            sent = client.request(protocol.ENDPOINT_TARGET, BATCH, body, timeout)
            live = [len(chunk)]

            def one_cancelled(sent: defer.Deferred[dict[str, Any]] = sent, live: list[int] = live) -> None:
                live[0] -= 1
                if live[0] == 0:
                    sent.cancel()

            for item in chunk:
                item.on_cancel = one_cancelled
            sent.addCallbacks(
                self._answered, self._failed, callbackArgs=(chunk,), errbackArgs=(client, chunk, timeout)
            )

    def _one(self, client: IClient, item: _Item, timeout: float | None) -> None:
        sent = client.request(item.target, item.type, item.body, timeout)
        item.on_cancel = sent.cancel
        sent.addBoth(_settle(item.d))

    def _answered(self, reply: dict[str, Any], chunk: list[_Item]) -> None:
        replies = reply.get("replies")
        if not isinstance(replies, list) or len(replies) != len(chunk):
            problem = RequestError(protocol.INTERNAL, f"a batch of {len(chunk)} requests got a malformed reply")
            for item in chunk:
                _settle(item.d)(Failure(problem))
            return
        for item, answer in zip(chunk, replies, strict=True):
            if isinstance(answer, dict) and answer.get("status") == "ok" and isinstance(answer.get("body"), dict):
                _settle(item.d)(answer["body"])
            elif isinstance(answer, dict) and answer.get("status") == "error":
                _settle(item.d)(Failure(RequestError(str(answer.get("code")), str(answer.get("reason")))))
            else:
                what = f"malformed answer to {item.type} of {item.target}"
                _settle(item.d)(Failure(RequestError(protocol.INTERNAL, what)))

    def _failed(self, failure: Failure, client: IClient, chunk: list[_Item], timeout: float | None) -> None:
        error = failure.value
        if isinstance(error, defer.CancelledError):
            return  # every request in it was cancelled
        if isinstance(error, RequestError) and error.code in _ONE_BY_ONE:
            self._send_each(client, chunk, timeout)
            return
        for item in chunk:
            # each its own failure: one request's errback cannot change another's
            if isinstance(error, RequestError):
                _settle(item.d)(Failure(RequestError(error.code, error.reason)))
            else:
                _settle(item.d)(Failure(RequestError(protocol.INTERNAL, f"batch failed: {error}")))

    def _send_each(self, client: IClient, chunk: list[_Item], timeout: float | None) -> None:
        for item in chunk:
            if not item.cancelled:
                self._one(client, item, timeout)


def _settle(d: defer.Deferred[dict[str, Any]]) -> Callable[[Any], None]:
    """Fire C{d} with a result or a failure, unless it was cancelled meanwhile."""

    def settle(result: Any) -> None:
        if d.called:
            return
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)

    return settle


__all__ = ["DEFAULT_LIMIT", "RequestBatcher"]
