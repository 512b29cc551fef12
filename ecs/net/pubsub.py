# -*- test-case-name: tests.test_pubsub -*-
"""
Publish/subscribe with sequence numbers, and the "clone" pattern on top.

A publisher numbers its events 1, 2, 3... within an I{epoch} (a random id
for its lifetime; a restarted publisher has a new epoch).  Between events it
sends a tick on topic L{TICK_TOPIC} carrying its current number, so that an
idle subscriber still notices what it missed.

L{StateStore} is the publishing side of a key/value state table (system id
-> state record): every change is stored and published, and
L{StateStore.snapshot} answers snapshot requests.

L{Mirror} is the subscribing side (ZeroMQ guide, "clone" pattern): it
subscribes first, then asks for a snapshot, buffers events meanwhile, and
afterwards applies only events newer than the snapshot.  A gap in the
numbers, a new epoch or a tick ahead of what it holds makes it take a new
snapshot.  There is no fixed sleep for slow joiners anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ecs import protocol
from ecs.net.transport import new_epoch
from ecs.protocol import Envelope, ProtocolError

TICK_TOPIC = "_tick"


class PublisherCore:
    """Numbering and encoding of events; the medium sends the frames."""

    _log = Logger()

    def __init__(self, sender: str, max_size: int = protocol.DEFAULT_MAX_SIZE) -> None:
        self.sender = sender
        self.epoch = new_epoch()
        self.seq = 0
        self._max_size = max_size

    def publish(self, topic: str, type: str, body: dict[str, Any]) -> int:
        """Publish one event; return its sequence number."""
        seq = self.seq + 1
        frame = protocol.encode(
            protocol.event(type, self.sender, topic, self.epoch, seq, body), self._max_size
        )
        # Numbered only once encoded: an event that cannot be sent must not
        # leave a gap that makes every subscriber resynchronise.
        self.seq = seq
        self.send_frames([topic.encode("utf-8"), frame])
        return self.seq

    def tick(self) -> None:
        """Tell subscribers the current number without a new event."""
        frame = protocol.encode(
            protocol.event("tick", self.sender, TICK_TOPIC, self.epoch, self.seq, {}),
            self._max_size,
        )
        self.send_frames([TICK_TOPIC.encode("utf-8"), frame])

    def send_frames(self, frames: list[bytes]) -> None:
        """Put C{[topic, envelope]} on the medium (implemented by it)."""
        raise NotImplementedError


class SubscriberCore:
    """Validation of received events; the medium feeds the frames."""

    _log = Logger()

    def __init__(
        self,
        address: str,
        callback: Callable[[Envelope], None],
        max_size: int = protocol.DEFAULT_MAX_SIZE,
    ) -> None:
        self.address = address
        self._callback = callback
        self._max_size = max_size
        self.dropped = 0

    def frames_received(self, frames: list[bytes]) -> None:
        """Validate one message and hand it to the callback."""
        if len(frames) != 2:
            self.dropped += 1
            self._log.warn(
                "subscriber {address}: dropped a message of {count} frames (expected 2)",
                address=self.address,
                count=len(frames),
            )
            return
        try:
            envelope = protocol.decode(frames[1], self._max_size)
        except ProtocolError as e:
            self.dropped += 1
            self._log.warn(
                "subscriber {address}: dropped malformed event: {reason}",
                address=self.address,
                reason=e.reason,
            )
            return
        if envelope.kind != "event" or (envelope.topic or "").encode("utf-8") != frames[0]:
            self.dropped += 1
            self._log.warn(
                "subscriber {address}: dropped a {kind} whose topic does not match its frame",
                address=self.address,
                kind=envelope.kind,
            )
            return
        try:
            self._callback(envelope)
        except Exception:
            self._log.failure("subscriber {address}: event handler raised", address=self.address)


class StateStore:
    """
    The publishing side of a replicated key/value table.

    @ivar entries: key -> (value, seq of the event that set it).
    """

    def __init__(self, publisher: Any, prefix: str = "state/") -> None:
        self.publisher = publisher
        self.prefix = prefix
        self.entries: dict[str, tuple[dict[str, Any], int]] = {}

    def set(self, key: str, value: dict[str, Any]) -> int:
        """Store and publish C{value} under C{key}."""
        seq: int = self.publisher.publish(self.prefix + key, "state", {"key": key, "value": value})
        self.entries[key] = (value, seq)
        return seq

    def remove(self, key: str) -> int | None:
        """Delete C{key} and publish the removal."""
        if key not in self.entries:
            return None
        del self.entries[key]
        seq: int = self.publisher.publish(self.prefix + key, "removed", {"key": key})
        return seq

    def get(self, key: str) -> dict[str, Any] | None:
        """The current value of C{key}."""
        entry = self.entries.get(key)
        return entry[0] if entry else None

    def snapshot(self, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """
        The body of a snapshot reply, or one page of it.

        With C{limit}, entries come in key order, those after key C{after};
        C{next} is the key to ask for the following page (L{None} on the
        last).  Every page carries the publisher's C{seq} at the time it was
        taken: L{fetch_paged_snapshot} keeps the first page's, so events
        after it are applied over the whole table (values on later pages may
        be newer, which the events then confirm).
        """
        if limit is None:
            items = list(self.entries.items())
            following = None
        else:
            keys = sorted(k for k in self.entries if after is None or k > after)
            page = keys[:limit]
            items = [(k, self.entries[k]) for k in page]
            following = page[-1] if len(keys) > limit else None
        return {
            "epoch": self.publisher.epoch,
            "seq": self.publisher.seq,
            "entries": {k: {"value": v, "seq": s} for k, (v, s) in items},
            "next": following,
        }


async def _fetch_pages(
    fetch_page: Callable[[str | None], defer.Deferred[dict[str, Any]]],
) -> dict[str, Any]:
    first = await fetch_page(None)
    merged = dict(first["entries"])
    following = first.get("next")
    while following is not None:
        page = await fetch_page(following)
        if page.get("epoch") != first.get("epoch"):
            raise ValueError("publisher restarted during the snapshot")
        merged.update(page["entries"])
        following = page.get("next")
    return {"epoch": first["epoch"], "seq": first["seq"], "entries": merged}


def fetch_paged_snapshot(
    fetch_page: Callable[[str | None], defer.Deferred[dict[str, Any]]],
) -> defer.Deferred[dict[str, Any]]:
    """
    A whole snapshot from C{fetch_page(after)} calls (see
    L{StateStore.snapshot}), for L{Mirror}'s C{fetch_snapshot}: large tables
    stay within the message size limit.
    """
    return defer.Deferred.fromCoroutine(_fetch_pages(fetch_page))


class Mirror:
    """
    The subscribing side of a L{StateStore}: a local copy kept in sync.

    Feed it I{every} event of the publisher (all topics: the numbering
    counts them all, and a filtered subscription would look like gaps)
    through L{event_received}; it applies state changes only.  It calls
    C{fetch_snapshot()} (a Deferred of a L{StateStore.snapshot} body) when it
    must resynchronise, and reports changes through C{on_change(key, value)}
    (value L{None}: removed) and C{on_reset()} (the table was replaced).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        fetch_snapshot: Callable[[], defer.Deferred[dict[str, Any]]],
        on_change: Callable[[str, dict[str, Any] | None], None],
        on_reset: Callable[[], None] = lambda: None,
        retry_delay: float = 1.0,
        name: str = "mirror",
    ) -> None:
        self._clock = clock
        self._fetch = fetch_snapshot
        self._on_change = on_change
        self._on_reset = on_reset
        self._retry_delay = retry_delay
        self.name = name
        self.entries: dict[str, dict[str, Any]] = {}
        self.epoch: str | None = None
        self.seq = 0
        self.synced = False
        self.resyncs = 0
        self._buffer: list[Envelope] = []
        self._fetching: defer.Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._stopped = False

    def start(self) -> None:
        """Take the first snapshot (subscribe before calling this)."""
        self._stopped = False
        self._resync("start")

    def stop(self) -> None:
        """Stop resynchronising."""
        self._stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._fetching is not None:
            self._fetching.cancel()
            self._fetching = None

    def event_received(self, envelope: Envelope) -> None:
        """Apply one event (or buffer it while a snapshot is pending)."""
        if not self.synced:
            if self._fetching is not None:
                self._buffer.append(envelope)
            return
        if envelope.epoch != self.epoch:
            self._resync("publisher restarted (new epoch)")
            return
        assert envelope.seq is not None
        if envelope.type == "tick":
            if envelope.seq > self.seq:
                self._resync(f"missed events {self.seq + 1}..{envelope.seq}")
            return
        if envelope.seq <= self.seq:
            return
        if envelope.seq != self.seq + 1:
            self._resync(f"gap: expected event {self.seq + 1}, got {envelope.seq}")
            return
        self._apply(envelope)

    def _apply(self, envelope: Envelope) -> None:
        assert envelope.seq is not None
        self.seq = envelope.seq
        key = envelope.body.get("key")
        if not isinstance(key, str):
            return
        if envelope.type == "state" and isinstance(envelope.body.get("value"), dict):
            self.entries[key] = envelope.body["value"]
            self._notify(key, envelope.body["value"])
        elif envelope.type == "removed" and self.entries.pop(key, None) is not None:
            self._notify(key, None)

    def _notify(self, key: str, value: dict[str, Any] | None) -> None:
        try:
            self._on_change(key, value)
        except Exception:
            self._log.failure("{name}: change handler raised for {key}", name=self.name, key=key)

    def _resync(self, why: str) -> None:
        if self._stopped or self._fetching is not None:
            return
        if why != "start":
            self.resyncs += 1
            self._log.info("{name}: resynchronising: {why}", name=self.name, why=why)
        self.synced = False
        self._buffer = []
        d = defer.maybeDeferred(self._fetch)  # a fetch that raises is a failed snapshot
        self._fetching = d
        d.addCallbacks(self._got_snapshot, self._snapshot_failed)

    def _got_snapshot(self, body: dict[str, Any]) -> None:
        self._fetching = None
        try:
            epoch = body["epoch"]
            seq = body["seq"]
            entries = {k: v["value"] for k, v in body["entries"].items()}
            if not isinstance(epoch, str) or not isinstance(seq, int):
                raise TypeError("epoch/seq")
        except (KeyError, TypeError, AttributeError) as e:
            self._snapshot_failed(ValueError(f"malformed snapshot ({e})"))
            return
        old = self.entries
        self.epoch, self.seq, self.entries = epoch, seq, dict(entries)
        try:
            self._on_reset()
        except Exception:
            self._log.failure("{name}: reset handler raised", name=self.name)
        for key in old:
            if key not in self.entries:
                self._notify(key, None)
        for key, value in self.entries.items():
            self._notify(key, value)
        self.synced = True
        buffered, self._buffer = self._buffer, []
        for envelope in buffered:
            self.event_received(envelope)

    def _snapshot_failed(self, reason: object) -> None:
        self._fetching = None
        if self._stopped:
            return
        self._log.warn(
            "{name}: snapshot failed ({reason}); retrying in {delay} s",
            name=self.name,
            reason=getattr(reason, "value", reason),
            delay=self._retry_delay,
        )
        self._retry = self._clock.callLater(self._retry_delay, self._resync, "retry")
