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

Bursts: a L{StateStore} made with C{batch=True} numbers each change at
once but sends the changes of one reactor turn as one C{states} event
(L{PublisherCore.stage}): entries numbered C{first}..C{seq}, in the order
they were made, none merged.  Anything else the publisher sends (an event,
a tick, a snapshot of the store) sends the staged changes first, so the
order on the wire is the order of the calls.  L{SubscriberCore} unpacks a
C{states} event into the C{state}/C{removed} events it stands for, each
with its own number, before any callback sees it: subscribers (and
L{Mirror}) see the same stream as without batching, at the cost of one
message per turn instead of one per change.

About 500 lines: numbering, batching and unpacking, the table and its
mirror are one protocol (each side's rules mirror the other's), kept
together so that a change to one is seen next to its counterpart.
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

#: The type of an event carrying several state changes (see L{PublisherCore.stage}).
BATCH_TYPE = "states"


class PublisherCore:
    """Numbering and encoding of events; the medium sends the frames."""

    _log = Logger()

    #: The most state changes one staged message carries (L{stage}).
    batch_limit = 100
    #: Seconds a staged change may wait for its turn's end (L{stage}): in a
    #: long turn (a burst of replies handled in one read) the changes go
    #: out every few milliseconds instead of at the turn's end.
    max_wait = 0.002

    def __init__(self, sender: str, max_size: int = protocol.DEFAULT_MAX_SIZE) -> None:
        self.sender = sender
        self.epoch = new_epoch()
        self.seq = 0
        self._max_size = max_size
        self._staged: list[dict[str, Any]] = []
        self._staged_prefix = ""
        self._staged_at = 0.0
        self.batches = 0

    def publish(self, topic: str, type: str, body: dict[str, Any]) -> int:
        """Publish one event; return its sequence number."""
        self.send_staged()
        seq = self.seq + 1
        frame = protocol.encode(
            protocol.event(type, self.sender, topic, self.epoch, seq, body), self._max_size
        )
        # Numbered only once encoded: an event that cannot be sent must not
        # leave a gap that makes every subscriber resynchronise.
        self.seq = seq
        self.send_frames([topic.encode("utf-8"), frame])
        return self.seq

    def stage(self, prefix: str, entry: dict[str, Any]) -> int:
        """
        Number one state change (C{{"key": k, "value": v}} or C{{"key": k,
        "removed": True}}) now and send it with the other changes of this
        reactor turn: one C{states} event on topic C{prefix}, when the turn
        ends (L{call_soon}), before anything else is sent, once
        L{batch_limit} changes are staged, or once the first of them has
        waited L{max_wait} seconds (by L{now}).  A turn's
        single change goes as the plain C{state}/C{removed} event on
        C{prefix + key}.  Return its number.
        """
        if self._staged and prefix != self._staged_prefix:
            self.send_staged()
        first_of_turn = not self._staged
        self._staged_prefix = prefix
        self._staged.append(entry)
        self.seq += 1
        seq = self.seq
        if first_of_turn:
            self._staged_at = self.now()
            self.call_soon(self.send_staged)
        elif len(self._staged) >= self.batch_limit or self.now() - self._staged_at >= self.max_wait:
            self.send_staged()  # a long turn: the first changes need not wait for its end
        return seq

    def send_staged(self) -> None:
        """Send the staged changes now (nothing when none are staged)."""
        if not self._staged:
            return
        entries, self._staged = self._staged, []
        self._send_batch(self._staged_prefix, self.seq - len(entries) + 1, entries)

    def _send_batch(self, prefix: str, first: int, entries: list[dict[str, Any]]) -> None:
        if len(entries) == 1:
            [entry] = entries
            if entry.get("removed"):
                type, body = "removed", {"key": entry["key"]}
            else:
                type, body = "state", entry
            topic = prefix + entry["key"]
        else:
            type, body, topic = BATCH_TYPE, {"first": first, "entries": entries}, prefix
        last = first + len(entries) - 1
        try:
            frame = protocol.encode(protocol.event(type, self.sender, topic, self.epoch, last, body), self._max_size)
        except (TypeError, ValueError) as e:  # ProtocolError (too large) is a ValueError
            if len(entries) > 1:
                half = len(entries) // 2
                self._send_batch(prefix, first, entries[:half])
                self._send_batch(prefix, first + half, entries[half:])
                return
            # Numbered already: subscribers see the gap and resynchronise.
            self._log.error(
                "publisher {sender}: change {seq} of {key} not sent: {reason}",
                sender=self.sender,
                seq=first,
                key=entries[0]["key"],
                reason=getattr(e, "reason", e),
            )
            return
        if type == BATCH_TYPE:
            self.batches += 1
        self.send_frames([topic.encode("utf-8"), frame])

    def tick(self) -> None:
        """Tell subscribers the current number without a new event."""
        self.send_staged()
        frame = protocol.encode(
            protocol.event("tick", self.sender, TICK_TOPIC, self.epoch, self.seq, {}),
            self._max_size,
        )
        self.send_frames([TICK_TOPIC.encode("utf-8"), frame])

    def send_frames(self, frames: list[bytes]) -> None:
        """Put C{[topic, envelope]} on the medium (implemented by it)."""
        raise NotImplementedError

    def call_soon(self, call: Callable[[], None]) -> None:
        """Call C{call} once this reactor turn's work is done (the medium
        knows when; without one, at once: no batching)."""
        call()

    def now(self) -> float:
        """The medium's clock, in seconds (for L{max_wait}; without a medium's
        clock it stands still: no time bound)."""
        return 0.0


class SubscriberCore:
    """Validation of received events; the medium feeds the frames."""

    _log = Logger()

    def __init__(
        self,
        address: str,
        callback: Callable[[Envelope], None],
        max_size: int = protocol.DEFAULT_MAX_SIZE,
        prefixes: list[str] | None = None,
    ) -> None:
        """
        @param prefixes: the topics asked for, when the medium subscribes
            L{batch_prefixes} of them: events on other topics (the other
            entries of a batch, plain events the wider subscription brought)
            are not delivered.
        """
        self.address = address
        self._callback = callback
        self._max_size = max_size
        self.dropped = 0
        self._only: tuple[str, ...] | None = None
        if prefixes is not None and set(batch_prefixes(prefixes)) != set(prefixes):
            self._only = tuple(prefixes)

    def frames_received(self, frames: list[bytes]) -> int:
        """Validate one message and hand its events to the callback; return how many."""
        if len(frames) != 2:
            self.dropped += 1
            self._log.warn(
                "subscriber {address}: dropped a message of {count} frames (expected 2)",
                address=self.address,
                count=len(frames),
            )
            return 0
        try:
            envelope = protocol.decode(frames[1], self._max_size)
        except ProtocolError as e:
            self.dropped += 1
            self._log.warn(
                "subscriber {address}: dropped malformed event: {reason}",
                address=self.address,
                reason=e.reason,
            )
            return 0
        if envelope.kind != "event" or (envelope.topic or "").encode("utf-8") != frames[0]:
            self.dropped += 1
            self._log.warn(
                "subscriber {address}: dropped a {kind} whose topic does not match its frame",
                address=self.address,
                kind=envelope.kind,
            )
            return 0
        if envelope.type == BATCH_TYPE:
            try:
                unpacked = unpack_batch(envelope)
            except ValueError as e:
                self.dropped += 1
                self._log.warn(
                    "subscriber {address}: dropped malformed batch: {reason}", address=self.address, reason=e
                )
                return 0
            for one in unpacked:
                self._deliver(one)
            return len(unpacked)
        self._deliver(envelope)
        return 1

    def _deliver(self, envelope: Envelope) -> None:
        if self._only is not None and not (envelope.topic or "").startswith(self._only):
            return
        try:
            self._callback(envelope)
        except Exception:
            self._log.failure("subscriber {address}: event handler raised", address=self.address)


def batch_prefixes(prefixes: list[str]) -> list[str]:
    """
    The subscriptions that receive every event of C{prefixes}, batches
    included: each prefix and each of its ancestors ending in C{/}
    (C{state/partition} needs C{state/}, the topic of the table's batches).
    """
    out: list[str] = []
    for prefix in prefixes:
        cut = prefix.find("/")
        while 0 <= cut < len(prefix) - 1:
            out.append(prefix[: cut + 1])
            cut = prefix.find("/", cut + 1)
        out.append(prefix)
    return list(dict.fromkeys(out))


def unpack_batch(batch: Envelope) -> list[Envelope]:
    """
    The C{state}/C{removed} events a C{states} event stands for, numbered
    C{first}..C{seq}, on topic C{batch topic + key}.

    @raise ValueError: naming what is malformed.
    """
    body = batch.body
    first = body.get("first")
    entries = body.get("entries")
    if not isinstance(first, int) or isinstance(first, bool) or first < 1:
        raise ValueError("'first' must be a positive integer")
    if not isinstance(entries, list) or not entries:
        raise ValueError("'entries' must be a non-empty list")
    if batch.seq != first + len(entries) - 1:
        raise ValueError(f"seq {batch.seq} is not first {first} + {len(entries)} entries - 1")
    prefix = batch.topic or ""
    out: list[Envelope] = []
    for seq, entry in enumerate(entries, first):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
            raise ValueError(f"entry {seq}: needs a non-empty string 'key'")
        key = entry["key"]
        if entry.get("removed") is True:
            type, one = "removed", {"key": key}
        elif isinstance(entry.get("value"), dict):
            type, one = "state", {"key": key, "value": entry["value"]}
        else:
            raise ValueError(f"entry {seq}: needs an object 'value' or 'removed': true")
        out.append(
            Envelope(
                "event", type, batch.sender, batch.target, one, topic=prefix + key, epoch=batch.epoch, seq=seq
            )
        )
    return out


class StateStore:
    """
    The publishing side of a replicated key/value table.

    @ivar entries: key -> (value, seq of the event that set it).
    @ivar batch: send the changes of one reactor turn as one event
        (L{PublisherCore.stage}); otherwise one event per change.
    """

    def __init__(self, publisher: Any, prefix: str = "state/", batch: bool = False) -> None:
        self.publisher = publisher
        self.prefix = prefix
        self.batch = batch
        self.entries: dict[str, tuple[dict[str, Any], int]] = {}

    def set(self, key: str, value: dict[str, Any]) -> int:
        """Store and publish C{value} under C{key}."""
        seq: int
        if self.batch:
            seq = self.publisher.stage(self.prefix, {"key": key, "value": value})
        else:
            seq = self.publisher.publish(self.prefix + key, "state", {"key": key, "value": value})
        self.entries[key] = (value, seq)
        return seq

    def remove(self, key: str) -> int | None:
        """Delete C{key} and publish the removal."""
        if key not in self.entries:
            return None
        del self.entries[key]
        seq: int
        if self.batch:
            seq = self.publisher.stage(self.prefix, {"key": key, "removed": True})
        else:
            seq = self.publisher.publish(self.prefix + key, "removed", {"key": key})
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
        be newer, which the events then confirm).  Staged changes are sent
        first, so that the snapshot's C{seq} counts only sent events.
        """
        if self.batch:
            self.publisher.send_staged()
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
