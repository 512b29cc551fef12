"""
Tests for L{ecs.net.pubsub}: event numbering (L{PublisherCore}), event
validation (L{SubscriberCore}), the replicated table (L{StateStore}) and
the clone-pattern subscriber (L{Mirror}), alone with a fake snapshot source
and end to end over L{ecs.net.memory}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ecs import protocol
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.pubsub import (
    BATCH_TYPE,
    TICK_TOPIC,
    Mirror,
    PublisherCore,
    StateStore,
    SubscriberCore,
    batch_prefixes,
    fetch_paged_snapshot,
    unpack_batch,
)
from ecs.protocol import Envelope, ProtocolError


class Logs:
    """Collect what some classes log, by giving them a L{Logger} of our own."""

    def __init__(self, case: SynchronousTestCase, *classes: type) -> None:
        self.events: list[dict[str, Any]] = []
        for cls in classes:
            case.patch(cls, "_log", Logger(namespace=cls.__name__, observer=self.events.append))

    def texts(self, level: LogLevel | None = None) -> list[str]:
        """The formatted messages (of C{level})."""
        return [formatEvent(e) for e in self.events if level is None or e["log_level"] == level]

    def failures(self) -> list[Failure]:
        """The failures logged with C{Logger.failure}."""
        return [e["log_failure"] for e in self.events if "log_failure" in e]


class RecordingPublisher(PublisherCore):
    """A publisher whose medium is a list."""

    def __init__(self, sender: str = "PCA1", max_size: int = protocol.DEFAULT_MAX_SIZE) -> None:
        super().__init__(sender, max_size)
        self.sent: list[list[bytes]] = []

    def send_frames(self, frames: list[bytes]) -> None:
        self.sent.append(frames)

    def events(self) -> list[Envelope]:
        return [protocol.decode(frames[1]) for frames in self.sent]


class PublisherCoreTests(SynchronousTestCase):
    """Numbering and framing of published events."""

    def test_numbering(self) -> None:
        """Events are numbered 1, 2, 3 within the publisher's epoch."""
        pub = RecordingPublisher()
        self.assertEqual(pub.seq, 0)
        self.assertEqual([pub.publish("state/a", "state", {"i": i}) for i in range(3)], [1, 2, 3])
        events = pub.events()
        self.assertEqual([e.seq for e in events], [1, 2, 3])
        self.assertEqual({e.epoch for e in events}, {pub.epoch})
        self.assertEqual({(e.kind, e.sender, e.target) for e in events}, {("event", "PCA1", "*")})
        self.assertEqual(events[1].body, {"i": 1})

    def test_frames(self) -> None:
        """Each event goes out as [topic, envelope] with the same topic."""
        pub = RecordingPublisher()
        pub.publish("log/STS", "log", {})
        [[topic, frame]] = pub.sent
        self.assertEqual(topic, b"log/STS")
        self.assertEqual(protocol.decode(frame).topic, "log/STS")

    def test_tick(self) -> None:
        """A tick carries the current number on the tick topic without advancing it."""
        pub = RecordingPublisher()
        pub.tick()
        pub.publish("a", "t", {})
        pub.tick()
        self.assertEqual(pub.seq, 1)
        ticks = [e for e in pub.events() if e.topic == TICK_TOPIC]
        self.assertEqual([(t.type, t.seq) for t in ticks], [("tick", 0), ("tick", 1)])
        self.assertEqual(pub.sent[0][0], TICK_TOPIC.encode())

    def test_epochs_differ(self) -> None:
        """Two publisher lifetimes have different epochs."""
        self.assertNotEqual(RecordingPublisher().epoch, RecordingPublisher().epoch)

    def test_failed_publish_keeps_numbering(self) -> None:
        """An event that cannot be encoded raises and does not use up a number (no false gap)."""
        pub = RecordingPublisher(max_size=300)
        pub.publish("a", "t", {})
        with self.assertRaises(ProtocolError):
            pub.publish("a", "t", {"blob": "x" * 1000})
        with self.assertRaises(TypeError):
            pub.publish("a", "t", {"x": object()})
        self.assertEqual(pub.seq, 1)
        self.assertEqual(pub.publish("a", "t", {}), 2)
        self.assertEqual([e.seq for e in pub.events()], [1, 2])

    def test_medium_required(self) -> None:
        """The bare core has no medium."""
        with self.assertRaises(NotImplementedError):
            PublisherCore("x").publish("a", "t", {})


class SubscriberCoreTests(SynchronousTestCase):
    """Validation of received events before the callback sees them."""

    def setUp(self) -> None:
        self.logs = Logs(self, SubscriberCore)
        self.got: list[Envelope] = []
        self.sub = SubscriberCore("mem://pub:1", self.got.append)
        self.pub = RecordingPublisher()

    def test_valid(self) -> None:
        """A valid event reaches the callback."""
        self.pub.publish("state/a", "state", {"k": 1})
        self.sub.frames_received(self.pub.sent[0])
        self.assertEqual([e.body for e in self.got], [{"k": 1}])
        self.assertEqual(self.sub.dropped, 0)

    def assertDropped(self, frames: list[bytes], text: str) -> None:
        before = self.sub.dropped
        self.sub.frames_received(frames)
        self.assertEqual(self.got, [])
        self.assertEqual(self.sub.dropped, before + 1)
        self.assertIn(text, self.logs.texts(LogLevel.warn)[-1])

    def test_frame_count(self) -> None:
        """Messages of other than two frames are dropped."""
        self.pub.publish("a", "t", {})
        topic, frame = self.pub.sent[0]
        self.assertDropped([frame], "1 frames")
        self.assertDropped([topic, frame, frame], "3 frames")

    def test_malformed(self) -> None:
        """A malformed envelope is dropped with its reason."""
        self.assertDropped([b"a", b"not json"], "not JSON")
        self.assertDropped([b"a", b"\xff" * 10], "not UTF-8")

    def test_too_large(self) -> None:
        """An event over the subscriber's limit is dropped."""
        sub = SubscriberCore("x", self.got.append, max_size=100)
        self.pub.publish("a", "t", {"blob": "x" * 200})
        sub.frames_received(self.pub.sent[0])
        self.assertEqual((self.got, sub.dropped), ([], 1))

    def test_topic_mismatch(self) -> None:
        """An event whose topic frame differs from its envelope is dropped."""
        self.pub.publish("state/a", "t", {})
        self.assertDropped([b"state/b", self.pub.sent[0][1]], "topic does not match")

    def test_not_an_event(self) -> None:
        """A request on the publish channel is dropped."""
        frame = protocol.encode(protocol.request("t", "a", "b", "i", {}))
        self.assertDropped([b"", frame], "a request")

    def test_callback_raising(self) -> None:
        """A callback that raises is logged and does not stop later events."""

        def callback(envelope: Envelope) -> None:
            self.got.append(envelope)
            if len(self.got) == 1:
                raise ValueError("consumer bug")

        sub = SubscriberCore("x", callback)
        self.pub.publish("a", "t", {})
        self.pub.publish("a", "t", {})
        for frames in self.pub.sent:
            sub.frames_received(frames)
        self.assertEqual(len(self.got), 2)
        [failure] = self.logs.failures()
        self.assertTrue(failure.check(ValueError))


class StateStoreTests(SynchronousTestCase):
    """The publishing side of a replicated table."""

    def setUp(self) -> None:
        self.pub = RecordingPublisher()
        self.store = StateStore(self.pub)

    def test_set(self) -> None:
        """set stores the value with its seq and publishes it under the prefix."""
        self.assertEqual(self.store.set("STS", {"state": "Active"}), 1)
        self.assertEqual(self.store.set("TPC", {"state": "Error"}), 2)
        self.assertEqual(self.store.set("STS", {"state": "Configuring"}), 3)
        self.assertEqual(self.store.get("STS"), {"state": "Configuring"})
        self.assertEqual(self.store.entries["TPC"], ({"state": "Error"}, 2))
        last = self.pub.events()[-1]
        self.assertEqual((last.topic, last.type), ("state/STS", "state"))
        self.assertEqual(last.body, {"key": "STS", "value": {"state": "Configuring"}})

    def test_remove(self) -> None:
        """remove deletes the key and publishes the removal; removing a missing key does nothing."""
        self.store.set("STS", {"s": 1})
        self.assertEqual(self.store.remove("STS"), 2)
        self.assertIsNone(self.store.get("STS"))
        last = self.pub.events()[-1]
        self.assertEqual((last.type, last.body, last.seq), ("removed", {"key": "STS"}, 2))
        self.assertIsNone(self.store.remove("STS"))
        self.assertEqual(len(self.pub.sent), 2)

    def test_snapshot(self) -> None:
        """snapshot holds the epoch, the current seq and every entry with its seq."""
        self.store.set("a", {"v": 1})
        self.store.set("b", {"v": 2})
        self.store.remove("a")
        self.store.set("c", {"v": 3})
        self.assertEqual(
            self.store.snapshot(),
            {
                "epoch": self.pub.epoch,
                "seq": 4,
                "entries": {"b": {"value": {"v": 2}, "seq": 2}, "c": {"value": {"v": 3}, "seq": 4}},
                "next": None,
            },
        )

    def test_snapshot_pages(self) -> None:
        """Pages come in key order and fetch_paged_snapshot joins them into one table."""
        for key in ("d", "a", "c", "b", "e"):
            self.store.set(key, {"k": key})
        first = self.store.snapshot(limit=2)
        self.assertEqual(list(first["entries"]), ["a", "b"])
        self.assertEqual(first["next"], "b")
        last = self.store.snapshot(after="d", limit=2)
        self.assertEqual((list(last["entries"]), last["next"]), (["e"], None))
        calls: list[str | None] = []

        def fetch(after: str | None) -> defer.Deferred[dict]:
            calls.append(after)
            return defer.succeed(self.store.snapshot(after=after, limit=2))

        whole = self.successResultOf(fetch_paged_snapshot(fetch))
        self.assertEqual(calls, [None, "b", "d"])
        self.assertEqual(sorted(whole["entries"]), ["a", "b", "c", "d", "e"])
        self.assertEqual((whole["seq"], whole["epoch"]), (5, self.pub.epoch))

    def test_paged_snapshot_refuses_mixed_epochs(self) -> None:
        """A publisher restart between pages fails the snapshot (the mirror retries)."""
        pages = iter([{"epoch": "e1", "seq": 1, "entries": {}, "next": "x"},
                      {"epoch": "e2", "seq": 0, "entries": {}, "next": None}])
        failure = self.failureResultOf(fetch_paged_snapshot(lambda after: defer.succeed(next(pages))))
        self.assertIn("restarted", str(failure.value))

    def test_custom_prefix(self) -> None:
        """The topic prefix is configurable."""
        StateStore(self.pub, prefix="det/").set("x", {})
        self.assertEqual(self.pub.events()[-1].topic, "det/x")

    def test_failed_set_not_stored(self) -> None:
        """A value that cannot be published is not stored either."""
        with self.assertRaises(TypeError):
            self.store.set("a", {"x": object()})
        self.assertIsNone(self.store.get("a"))
        self.assertEqual(self.store.snapshot()["seq"], 0)


def ev(seq: int, key: str = "a", value: Any = None, epoch: str = "E1", type: str = "state") -> Envelope:
    """An event of a state table."""
    body: dict[str, Any] = {"key": key}
    if type == "state":
        body["value"] = {"n": seq} if value is None else value
    return protocol.event(type, "PCA1", "state/" + key, epoch, seq, body)


def tick(seq: int, epoch: str = "E1") -> Envelope:
    """A tick."""
    return protocol.event("tick", "PCA1", TICK_TOPIC, epoch, seq, {})


def snap(seq: int, entries: dict[str, Any], epoch: str = "E1") -> dict[str, Any]:
    """A snapshot body."""
    return {
        "epoch": epoch,
        "seq": seq,
        "entries": {k: {"value": v, "seq": seq} for k, v in entries.items()},
    }


class MirrorTests(SynchronousTestCase):
    """The clone-pattern subscriber with a snapshot source the test controls."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.logs = Logs(self, Mirror)
        self.fetches: list[Deferred[dict]] = []
        self.cancelled: list[Deferred[dict]] = []
        self.changes: list[tuple[str, Any]] = []
        self.resets = 0
        self.mirror = Mirror(
            self.clock, self.fetch, self.on_change, self.on_reset, retry_delay=2.0, name="m"
        )

    def fetch(self) -> Deferred[dict]:
        d: Deferred[dict] = Deferred(self.cancelled.append)
        self.fetches.append(d)
        return d

    def on_change(self, key: str, value: Any) -> None:
        self.changes.append((key, value))

    def on_reset(self) -> None:
        self.resets += 1

    def synced_at(self, seq: int, entries: dict[str, Any], epoch: str = "E1") -> None:
        """Start and answer the first snapshot."""
        self.mirror.start()
        self.fetches[-1].callback(snap(seq, entries, epoch))
        self.changes.clear()

    def test_initial_snapshot(self) -> None:
        """start takes a snapshot; its entries are reported after a reset."""
        self.mirror.start()
        self.assertEqual(len(self.fetches), 1)
        self.assertFalse(self.mirror.synced)
        self.fetches[0].callback(snap(5, {"a": {"s": 1}, "b": {"s": 2}}))
        self.assertTrue(self.mirror.synced)
        self.assertEqual((self.mirror.epoch, self.mirror.seq), ("E1", 5))
        self.assertEqual(self.mirror.entries, {"a": {"s": 1}, "b": {"s": 2}})
        self.assertEqual(self.resets, 1)
        self.assertEqual(sorted(self.changes), [("a", {"s": 1}), ("b", {"s": 2})])
        self.assertEqual(self.mirror.resyncs, 0)

    def test_buffered_during_snapshot(self) -> None:
        """Events that arrive during the snapshot are applied afterwards, only if newer."""
        self.mirror.start()
        for seq in (2, 3, 4, 5):
            self.mirror.event_received(ev(seq, "a"))
        self.assertEqual(self.mirror.entries, {})
        self.assertEqual(self.changes, [])
        self.fetches[0].callback(snap(3, {"a": {"n": 3}}))
        self.assertEqual(self.changes, [("a", {"n": 3}), ("a", {"n": 4}), ("a", {"n": 5})])
        self.assertEqual((self.mirror.seq, self.mirror.entries), (5, {"a": {"n": 5}}))
        self.assertEqual(self.mirror.resyncs, 0)
        self.assertEqual(len(self.fetches), 1)

    def test_events_before_start_ignored(self) -> None:
        """Events before start (no snapshot pending) are neither applied nor buffered."""
        self.mirror.event_received(ev(1, "a"))
        self.mirror.start()
        self.fetches[0].callback(snap(0, {}))
        self.assertEqual((self.mirror.entries, self.mirror.seq), ({}, 0))

    def test_in_order(self) -> None:
        """Consecutive events are applied and reported."""
        self.synced_at(1, {"a": {"n": 1}})
        self.mirror.event_received(ev(2, "b"))
        self.mirror.event_received(ev(3, "a", type="removed"))
        self.assertEqual(self.changes, [("b", {"n": 2}), ("a", None)])
        self.assertEqual(self.mirror.entries, {"b": {"n": 2}})
        self.assertEqual(self.mirror.seq, 3)

    def test_remove_unknown_key(self) -> None:
        """Removing a key the mirror does not hold reports nothing but advances seq."""
        self.synced_at(1, {})
        self.mirror.event_received(ev(2, "zz", type="removed"))
        self.assertEqual((self.changes, self.mirror.seq), ([], 2))

    def test_unusable_body(self) -> None:
        """Events without a usable key or value advance seq without a change."""
        self.synced_at(0, {})
        self.mirror.event_received(protocol.event("state", "P", "state/x", "E1", 1, {"key": 3}))
        self.mirror.event_received(ev(2, "a", value=[1]))
        self.mirror.event_received(ev(3, "a", type="other"))
        self.assertEqual((self.changes, self.mirror.entries, self.mirror.seq), ([], {}, 3))
        self.assertEqual(self.mirror.resyncs, 0)

    def test_duplicates_ignored(self) -> None:
        """Events already applied (same or lower seq) are ignored."""
        self.synced_at(3, {"a": {"n": 3}})
        self.mirror.event_received(ev(4, "a"))
        self.mirror.event_received(ev(4, "a", value={"dup": True}))
        self.mirror.event_received(ev(2, "a", value={"old": True}))
        self.assertEqual(self.changes, [("a", {"n": 4})])
        self.assertEqual(self.mirror.entries, {"a": {"n": 4}})
        self.assertEqual(self.mirror.resyncs, 0)

    def test_gap(self) -> None:
        """A gap in the numbers triggers one resync; later events are buffered for it."""
        self.synced_at(3, {"a": {"n": 3}})
        self.mirror.event_received(ev(5, "a"))
        self.assertEqual(self.mirror.resyncs, 1)
        self.assertFalse(self.mirror.synced)
        self.assertEqual(len(self.fetches), 2)
        self.assertEqual(self.mirror.entries, {"a": {"n": 3}})
        self.mirror.event_received(ev(6, "b"))
        self.mirror.event_received(ev(8, "b"))
        self.assertEqual(len(self.fetches), 2)
        self.fetches[1].callback(snap(6, {"a": {"n": 5}, "b": {"n": 6}}))
        self.assertEqual(self.mirror.resyncs, 2)
        self.assertEqual(len(self.fetches), 3)
        self.fetches[2].callback(snap(8, {"a": {"n": 5}, "b": {"n": 8}}))
        self.assertTrue(self.mirror.synced)
        self.assertEqual((self.mirror.seq, self.mirror.entries), (8, {"a": {"n": 5}, "b": {"n": 8}}))
        self.assertIn("gap: expected event 4, got 5", " ".join(self.logs.texts(LogLevel.info)))

    def test_new_epoch(self) -> None:
        """A publisher restart (new epoch) resyncs; keys gone from the new table are reported as None."""
        self.synced_at(10, {"a": {"n": 1}, "b": {"n": 2}})
        self.mirror.event_received(ev(1, "a", epoch="E2"))
        self.assertEqual(self.mirror.resyncs, 1)
        self.assertEqual(len(self.fetches), 2)
        self.mirror.event_received(ev(2, "c", epoch="E2"))
        self.fetches[1].callback(snap(1, {"a": {"n": 1}}, epoch="E2"))
        self.assertEqual(self.mirror.epoch, "E2")
        self.assertEqual(self.mirror.entries, {"a": {"n": 1}, "c": {"n": 2}})
        self.assertIn(("b", None), self.changes)
        self.assertNotIn(("a", None), self.changes)
        self.assertEqual(self.changes[-1], ("c", {"n": 2}))
        self.assertEqual(self.resets, 2)

    def test_old_epoch_after_restart(self) -> None:
        """After resyncing to a new epoch, a straggler from the old one triggers another resync."""
        self.synced_at(10, {}, epoch="E2")
        self.mirror.event_received(ev(11, epoch="E1"))
        self.assertEqual(self.mirror.resyncs, 1)

    def test_tick_ahead(self) -> None:
        """A tick ahead of the mirror reveals missed events and resyncs."""
        self.synced_at(3, {})
        self.mirror.event_received(tick(3))
        self.mirror.event_received(tick(2))
        self.assertEqual((self.mirror.resyncs, len(self.fetches)), (0, 1))
        self.mirror.event_received(tick(4))
        self.assertEqual((self.mirror.resyncs, len(self.fetches)), (1, 2))
        self.assertIn("missed events 4..4", " ".join(self.logs.texts(LogLevel.info)))

    def test_tick_new_epoch(self) -> None:
        """A tick of another epoch resyncs even with a lower number."""
        self.synced_at(3, {})
        self.mirror.event_received(tick(0, epoch="E2"))
        self.assertEqual(self.mirror.resyncs, 1)

    def test_tick_does_not_change(self) -> None:
        """A tick is not applied as a change."""
        self.synced_at(3, {"a": {}})
        self.mirror.event_received(tick(3))
        self.assertEqual((self.changes, self.mirror.seq), ([], 3))

    def test_buffered_tick(self) -> None:
        """A tick buffered during a snapshot and ahead of it resyncs again."""
        self.mirror.start()
        self.mirror.event_received(tick(7))
        self.fetches[0].callback(snap(5, {}))
        self.assertEqual((self.mirror.resyncs, len(self.fetches)), (1, 2))

    def test_snapshot_failure_retried(self) -> None:
        """A failed snapshot is retried after retry_delay, not before."""
        self.mirror.start()
        self.fetches[0].errback(RuntimeError("peer down"))
        self.assertFalse(self.mirror.synced)
        self.assertIn("peer down", self.logs.texts(LogLevel.warn)[0])
        self.mirror.event_received(ev(1))
        self.clock.advance(1.9)
        self.assertEqual(len(self.fetches), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.fetches), 2)
        self.fetches[1].callback(snap(1, {"a": {"n": 1}}))
        self.assertTrue(self.mirror.synced)
        self.assertEqual(self.mirror.entries, {"a": {"n": 1}})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_malformed_snapshot_retried(self) -> None:
        """A snapshot body of the wrong shape counts as a failure and is retried."""
        bad = [
            {},
            {"epoch": "E1", "seq": "3", "entries": {}},
            {"epoch": 1, "seq": 3, "entries": {}},
            {"epoch": "E1", "seq": 3, "entries": {"a": {"no": "value"}}},
            {"epoch": "E1", "seq": 3, "entries": {"a": 5}},
            {"epoch": "E1", "seq": 3, "entries": []},
        ]
        self.mirror.start()
        for i, body in enumerate(bad):
            self.fetches[i].callback(body)
            self.assertFalse(self.mirror.synced, body)
            self.assertEqual(self.mirror.entries, {}, body)
            self.clock.advance(2.0)
            self.assertEqual(len(self.fetches), i + 2, body)
        self.assertTrue(all("malformed snapshot" in t for t in self.logs.texts(LogLevel.warn)))

    def test_fetch_raising_retried(self) -> None:
        """A snapshot source that raises at once is treated as a failed snapshot and retried."""
        calls = []

        def fetch() -> Deferred[dict]:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("not connected yet")
            return defer.succeed(snap(2, {"a": {}}))

        mirror = Mirror(self.clock, fetch, self.on_change, retry_delay=2.0)
        mirror.start()
        self.assertFalse(mirror.synced)
        self.clock.advance(2.0)
        self.assertTrue(mirror.synced)
        self.assertEqual(mirror.entries, {"a": {}})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_during_snapshot(self) -> None:
        """stop() cancels the pending snapshot; nothing is retried or applied afterwards."""
        self.mirror.start()
        self.mirror.stop()
        self.assertEqual(self.cancelled, [self.fetches[0]])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.mirror.event_received(ev(1))
        self.clock.advance(10)
        self.assertEqual((len(self.fetches), self.mirror.entries, self.changes), (1, {}, []))

    def test_stop_during_retry(self) -> None:
        """stop() cancels a scheduled retry."""
        self.mirror.start()
        self.fetches[0].errback(RuntimeError("x"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.mirror.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(len(self.fetches), 1)

    def test_stopped_does_not_resync(self) -> None:
        """After stop() a gap does not start a snapshot."""
        self.synced_at(1, {})
        self.mirror.stop()
        self.mirror.event_received(ev(5))
        self.assertEqual(len(self.fetches), 1)

    def test_restart_after_stop(self) -> None:
        """start() after stop() takes a fresh snapshot."""
        self.synced_at(1, {"a": {}})
        self.mirror.stop()
        self.mirror.start()
        self.assertEqual(len(self.fetches), 2)
        self.fetches[1].callback(snap(4, {"b": {}}))
        self.assertEqual(self.mirror.entries, {"b": {}})
        self.assertIn(("a", None), self.changes)

    def test_change_callback_raising(self) -> None:
        """A change callback that raises is logged and the mirror keeps applying events."""
        seen = []

        def on_change(key: str, value: Any) -> None:
            seen.append(key)
            raise RuntimeError("GUI bug")

        def on_reset() -> None:
            raise KeyError("reset bug")

        mirror = Mirror(self.clock, self.fetch, on_change, on_reset)
        mirror.start()
        self.fetches[0].callback(snap(1, {"a": {}}))
        mirror.event_received(ev(2, "b"))
        mirror.event_received(ev(3, "c"))
        self.assertTrue(mirror.synced)
        self.assertEqual((mirror.seq, seen), (3, ["a", "b", "c"]))
        self.assertEqual(set(mirror.entries), {"a", "b", "c"})
        failures = self.logs.failures()
        self.assertEqual(len(failures), 4)
        self.assertTrue(failures[0].check(KeyError))
        self.assertTrue(all(f.check(RuntimeError) for f in failures[1:]))
        self.assertEqual(mirror.resyncs, 0)


class CloneEndToEndTests(SynchronousTestCase):
    """
    A L{StateStore} published over a L{MemoryNode} and mirrored by a
    L{Mirror} on another node, taking snapshots over request/reply.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.logs = Logs(self, Mirror)
        self.network = MemoryNetwork(self.clock)
        self.pub_node = MemoryNode(self.network, "pca")
        self.publisher = self.pub_node.publish("mem://pca-pub:*")
        self.store = self.make_store(self.publisher)
        self.server = self.pub_node.serve("mem://pca-req:*")
        self.server.register("PCA", {"snapshot": lambda r: self.store.snapshot()})
        self.sub_node = MemoryNode(self.network, "gui", request_timeout=1.0)
        client = self.sub_node.connect(self.server.address)
        self.view: dict[str, Any] = {}
        self.mirror = Mirror(
            self.clock,
            lambda: client.request("PCA", "snapshot", {}),
            self.on_change,
            retry_delay=0.5,
        )
        self.sub_node.subscribe(
            self.publisher.address, ["state/", TICK_TOPIC], self.mirror.event_received
        )

    def make_store(self, publisher: Any) -> StateStore:
        return StateStore(publisher)

    def on_change(self, key: str, value: Any) -> None:
        if value is None:
            self.view.pop(key, None)
        else:
            self.view[key] = value

    def assertConverged(self) -> None:
        expected = {k: v for k, (v, _) in self.store.entries.items()}
        self.assertTrue(self.mirror.synced)
        self.assertEqual(self.mirror.entries, expected)
        self.assertEqual(self.view, expected)
        publisher = self.store.publisher
        self.assertEqual((self.mirror.epoch, self.mirror.seq), (publisher.epoch, publisher.seq))

    def join(self) -> None:
        """The subscriber joins after the publisher has published."""
        self.store.set("STS", {"state": "Unconfigured"})
        self.store.set("TPC", {"state": "Unconfigured"})
        self.store.set("MVD", {"state": "Error"})
        self.store.remove("MVD")
        self.clock.advance(0)
        self.mirror.start()
        # Published while the snapshot request is on its way.
        self.store.set("STS", {"state": "Configuring"})
        self.assertFalse(self.mirror.synced)
        self.clock.advance(0)
        self.assertConverged()

    def test_join_and_follow(self) -> None:
        """A late joiner converges by snapshot, then follows events without resyncing."""
        self.join()
        self.store.set("TPC", {"state": "Active"})
        self.store.set("ZDC", {"state": "Unconfigured"})
        self.store.remove("STS")
        self.clock.advance(0)
        self.assertConverged()
        self.assertEqual(self.mirror.resyncs, 0)

    def test_lost_events_revealed_by_next_event(self) -> None:
        """Events lost while the publisher was unreachable are recovered at the next event."""
        self.join()
        self.network.set_down(self.publisher.address)
        self.store.set("TPC", {"state": "Active"})
        self.store.remove("STS")
        self.clock.advance(0)
        self.assertNotEqual(self.mirror.entries, {k: v for k, (v, _) in self.store.entries.items()})
        self.network.set_down(self.publisher.address, False)
        self.store.set("ZDC", {"state": "Unconfigured"})
        self.clock.advance(0)
        self.assertEqual(self.mirror.resyncs, 1)
        self.assertConverged()
        self.assertNotIn("STS", self.view)

    def test_lost_events_revealed_by_tick(self) -> None:
        """An idle publisher's tick reveals lost events and the mirror converges."""
        self.join()
        self.network.set_down(self.publisher.address)
        self.store.set("TPC", {"state": "Active"})
        self.clock.advance(0)
        self.network.set_down(self.publisher.address, False)
        self.publisher.tick()
        self.clock.advance(0)
        self.assertEqual(self.mirror.resyncs, 1)
        self.assertConverged()

    def test_publisher_restart(self) -> None:
        """A restarted publisher (new epoch, new table) is mirrored with the old keys removed."""
        self.join()
        old_epoch = self.publisher.epoch
        self.publisher.close()
        self.publisher = self.pub_node.publish(self.publisher.address)
        self.assertNotEqual(self.publisher.epoch, old_epoch)
        self.store = self.make_store(self.publisher)
        self.store.set("TPC", {"state": "Unconfigured"})
        self.clock.advance(0)
        self.assertEqual(self.mirror.resyncs, 1)
        self.assertConverged()
        self.assertEqual(set(self.view), {"TPC"})

    def test_snapshot_server_unreachable(self) -> None:
        """If the snapshot cannot be had, the mirror retries until the server answers."""
        self.store.set("STS", {"state": "Active"})
        self.network.set_down(self.server.address)
        self.mirror.start()
        self.clock.pump([0.02] * 60)
        self.assertFalse(self.mirror.synced)
        self.network.set_down(self.server.address, False)
        self.clock.pump([0.02] * 50)
        self.assertConverged()
        self.assertTrue(self.logs.texts(LogLevel.warn))
        self.mirror.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TurnPublisher(RecordingPublisher):
    """A L{RecordingPublisher} whose reactor turn ends when the test says."""

    def __init__(self, sender: str = "PCA1", max_size: int = protocol.DEFAULT_MAX_SIZE) -> None:
        super().__init__(sender, max_size)
        self.soon: list[Any] = []

    def call_soon(self, call: Any) -> None:
        self.soon.append(call)

    def end_turn(self) -> None:
        calls, self.soon = self.soon, []
        for call in calls:
            call()


def unpacked(publisher: RecordingPublisher) -> list[Envelope]:
    """What a subscriber's callback gets from everything C{publisher} sent."""
    got: list[Envelope] = []
    sub = SubscriberCore("mem://pub:1", got.append)
    for frames in publisher.sent:
        sub.frames_received(frames)
    return got


class BatchPublishingTests(SynchronousTestCase):
    """L{PublisherCore.stage}: one message per turn, the same numbered events once unpacked."""

    def setUp(self) -> None:
        self.logs = Logs(self, PublisherCore)
        self.pub = TurnPublisher()
        self.store = StateStore(self.pub, batch=True)

    def test_one_message_per_turn(self) -> None:
        """A turn's changes go as one states event, numbered at once, unpacked in order."""
        self.assertEqual(self.store.set("a", {"s": 1}), 1)
        self.assertEqual(self.store.set("b", {"s": 2}), 2)
        self.assertEqual(self.store.remove("a"), 3)
        self.assertEqual(self.pub.sent, [])
        self.assertEqual(self.pub.seq, 3)
        self.pub.end_turn()
        [batch] = self.pub.events()
        self.assertEqual((batch.type, batch.topic, batch.seq), (BATCH_TYPE, "state/", 3))
        self.assertEqual(self.pub.sent[0][0], b"state/")
        self.assertEqual(batch.body["first"], 1)
        got = unpacked(self.pub)
        self.assertEqual(
            [(e.type, e.topic, e.seq, e.body) for e in got],
            [
                ("state", "state/a", 1, {"key": "a", "value": {"s": 1}}),
                ("state", "state/b", 2, {"key": "b", "value": {"s": 2}}),
                ("removed", "state/a", 3, {"key": "a"}),
            ],
        )
        self.assertEqual({e.epoch for e in got}, {self.pub.epoch})
        self.assertEqual(self.pub.batches, 1)

    def test_single_change_is_a_plain_event(self) -> None:
        """A turn with one change sends the ordinary state event."""
        self.store.set("a", {"s": 1})
        self.pub.end_turn()
        self.store.remove("a")
        self.pub.end_turn()
        events = self.pub.events()
        self.assertEqual(
            [(e.type, e.topic, e.seq) for e in events], [("state", "state/a", 1), ("removed", "state/a", 2)]
        )
        self.assertEqual(events[0].body, {"key": "a", "value": {"s": 1}})
        self.assertEqual(self.pub.batches, 0)

    def test_same_key_twice_kept(self) -> None:
        """Two changes of one key in a turn are both sent, the last one last."""
        self.store.set("a", {"s": 1})
        self.store.set("a", {"s": 2})
        self.pub.end_turn()
        self.assertEqual([e.body["value"] for e in unpacked(self.pub)], [{"s": 1}, {"s": 2}])
        self.assertEqual(self.store.entries["a"], ({"s": 2}, 2))

    def test_other_events_keep_their_place(self) -> None:
        """An event or a tick published mid-turn sends the staged changes first."""
        self.store.set("a", {"s": 1})
        self.store.set("b", {"s": 1})
        self.assertEqual(self.pub.publish("log/x", "log", {"message": "m"}), 3)
        self.store.set("c", {"s": 1})
        self.pub.tick()
        self.pub.end_turn()
        self.assertEqual(
            [(e.type, e.seq) for e in unpacked(self.pub)],
            [("state", 1), ("state", 2), ("log", 3), ("state", 4), ("tick", 4)],
        )
        self.assertEqual(len(self.pub.sent), 4)

    def test_snapshot_sends_staged_first(self) -> None:
        """A snapshot's seq counts only events already sent."""
        self.store.set("a", {"s": 1})
        self.store.set("b", {"s": 1})
        body = self.store.snapshot()
        self.assertEqual(body["seq"], 2)
        self.assertEqual(len(self.pub.sent), 1)
        self.assertEqual(body["entries"]["b"], {"value": {"s": 1}, "seq": 2})
        self.pub.end_turn()
        self.assertEqual(len(self.pub.sent), 1)

    def test_split_across_size_limit(self) -> None:
        """A batch too large for one message goes as several, numbers consecutive, each within the limit."""
        pub = TurnPublisher(max_size=2000)
        store = StateStore(pub, batch=True)
        for i in range(40):
            store.set(f"system/d{i:02}", {"state": "Unconfigured", "pad": "x" * 60})
        pub.end_turn()
        self.assertGreater(len(pub.sent), 1)
        self.assertTrue(all(len(frames[1]) <= 2000 for frames in pub.sent))
        got = unpacked(pub)
        self.assertEqual([e.seq for e in got], list(range(1, 41)))
        self.assertEqual([e.body["key"] for e in got], [f"system/d{i:02}" for i in range(40)])

    def test_batch_limit(self) -> None:
        """Once batch_limit changes are staged they go at once: a long turn publishes as it goes."""
        self.pub.batch_limit = 4
        for i in range(10):
            self.store.set(f"k{i}", {"i": i})
        self.assertEqual([e.seq for e in self.pub.events()], [4, 8])
        self.pub.end_turn()
        self.assertEqual([e.seq for e in self.pub.events()], [4, 8, 10])
        self.assertEqual([e.seq for e in unpacked(self.pub)], list(range(1, 11)))

    def test_max_wait(self) -> None:
        """In a long turn, staged changes go once the first has waited max_wait (by the medium's clock)."""
        clock = [10.0]
        self.pub.now = lambda: clock[0]  # type: ignore[method-assign]
        self.pub.max_wait = 0.5  # exact in binary: the sums below are too
        self.store.set("a", {"i": 1})
        clock[0] += self.pub.max_wait / 2
        self.store.set("b", {"i": 2})
        self.assertEqual(self.pub.sent, [])
        clock[0] += self.pub.max_wait / 2
        self.store.set("c", {"i": 3})
        self.assertEqual([e.seq for e in self.pub.events()], [3])
        self.store.set("d", {"i": 4})  # a new batch: its own wait starts now
        clock[0] += self.pub.max_wait / 2
        self.store.set("e", {"i": 5})
        self.pub.end_turn()
        self.assertEqual([e.seq for e in self.pub.events()], [3, 5])
        self.assertEqual([e.body["key"] for e in unpacked(self.pub)], ["a", "b", "c", "d", "e"])

    def test_entry_too_large_leaves_a_gap(self) -> None:
        """A change too large for any message is logged and its number skipped (subscribers resynchronise)."""
        pub = TurnPublisher(max_size=600)
        store = StateStore(pub, batch=True)
        store.set("a", {"s": 1})
        store.set("big", {"s": "x" * 1000})
        store.set("c", {"s": 1})
        pub.end_turn()
        self.assertEqual([e.seq for e in unpacked(pub)], [1, 3])
        self.assertIn("change 2 of big not sent", self.logs.texts(LogLevel.error)[0])

    def test_without_a_turn_no_batching(self) -> None:
        """A medium without call_soon sends each change at once (PublisherCore's default)."""
        pub = RecordingPublisher()
        store = StateStore(pub, batch=True)
        store.set("a", {"s": 1})
        store.set("b", {"s": 1})
        self.assertEqual([e.type for e in pub.events()], ["state", "state"])

    def test_prefix_change_sends_staged(self) -> None:
        """Changes staged under another prefix are sent before a new prefix's."""
        other = StateStore(self.pub, prefix="det/", batch=True)
        self.store.set("a", {"s": 1})
        self.store.set("b", {"s": 1})
        other.set("x", {"s": 1})
        self.pub.end_turn()
        self.assertEqual([e.topic for e in unpacked(self.pub)], ["state/a", "state/b", "det/x"])


class BatchValidationTests(SynchronousTestCase):
    """A malformed states event is dropped whole (its numbers then look missing)."""

    def setUp(self) -> None:
        self.logs = Logs(self, SubscriberCore)
        self.got: list[Envelope] = []
        self.sub = SubscriberCore("mem://pub:1", self.got.append)

    def batch(self, seq: int, body: dict[str, Any]) -> list[bytes]:
        return [b"state/", protocol.encode(protocol.event(BATCH_TYPE, "P", "state/", "E1", seq, body))]

    def assertDropped(self, frames: list[bytes], text: str) -> None:
        self.sub.frames_received(frames)
        self.assertEqual(self.got, [])
        self.assertEqual(self.sub.dropped, 1)
        self.assertIn(text, self.logs.texts(LogLevel.warn)[-1])

    def test_first(self) -> None:
        self.assertDropped(self.batch(2, {"first": "1", "entries": [{"key": "a", "value": {}}] * 2}), "'first'")

    def test_entries(self) -> None:
        self.assertDropped(self.batch(2, {"first": 2, "entries": []}), "'entries'")

    def test_count(self) -> None:
        self.assertDropped(self.batch(5, {"first": 1, "entries": [{"key": "a", "value": {}}] * 2}), "seq 5")

    def test_key(self) -> None:
        entries = [{"key": "a", "value": {}}, {"value": {}}]
        self.assertDropped(self.batch(2, {"first": 1, "entries": entries}), "entry 2")

    def test_value(self) -> None:
        self.assertDropped(self.batch(2, {"first": 1, "entries": [{"key": "a", "value": {}}, {"key": "b"}]}), "entry 2")

    def test_unpack_direct(self) -> None:
        """unpack_batch raises ValueError naming the problem."""
        envelope = protocol.event(BATCH_TYPE, "P", "state/", "E1", 1, {"first": 0, "entries": [{"key": "a"}]})
        self.assertRaises(ValueError, unpack_batch, envelope)


class BatchedMirrorTests(SynchronousTestCase):
    """A L{Mirror} fed from a batching publisher: gaps and the snapshot interplay."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.logs = Logs(self, Mirror)
        self.pub = TurnPublisher()
        self.store = StateStore(self.pub, batch=True)
        self.fetches: list[Deferred[dict[str, Any]]] = []
        self.mirror = Mirror(self.clock, self.fetch, lambda k, v: None)
        self.sub = SubscriberCore("mem://pub:1", self.mirror.event_received)
        self.delivered = 0

    def fetch(self) -> Deferred[dict[str, Any]]:
        d: Deferred[dict[str, Any]] = Deferred()
        self.fetches.append(d)
        return d

    def deliver(self) -> None:
        for frames in self.pub.sent[self.delivered:]:
            self.sub.frames_received(frames)
        self.delivered = len(self.pub.sent)

    def expected(self) -> dict[str, Any]:
        return {k: v for k, (v, _) in self.store.entries.items()}

    def test_snapshot_in_the_middle_of_a_batch(self) -> None:
        """Events buffered during the snapshot apply only after its seq, even inside one batch."""
        self.mirror.start()
        self.store.set("a", {"s": 1})
        self.store.set("b", {"s": 1})
        snapshot = self.store.snapshot()  # taken at seq 2: the first batch is sent
        self.store.set("a", {"s": 2})
        self.store.set("c", {"s": 1})
        self.pub.end_turn()
        self.deliver()  # buffered: the snapshot is pending
        self.assertEqual(len(self.pub.sent), 2)
        self.fetches[0].callback(snapshot)
        self.assertTrue(self.mirror.synced)
        self.assertEqual(self.mirror.entries, self.expected())
        self.assertEqual(self.mirror.seq, 4)
        self.assertEqual(self.mirror.resyncs, 0)

    def test_lost_batch_is_a_gap(self) -> None:
        """A lost batch shows as a gap at the next one: the mirror resynchronises and converges."""
        self.mirror.start()
        self.fetches[0].callback(self.store.snapshot())
        for turn in range(3):
            self.store.set("a", {"turn": turn})
            self.store.set("b", {"turn": turn})
            self.pub.end_turn()
            if turn == 1:
                self.delivered = len(self.pub.sent)  # lost
            self.deliver()
        self.assertEqual(self.mirror.resyncs, 1)
        self.assertFalse(self.mirror.synced)
        self.fetches[1].callback(self.store.snapshot())
        self.assertEqual(self.mirror.entries, self.expected())
        self.assertEqual(self.mirror.seq, 6)

    def test_old_batch_ignored(self) -> None:
        """A batch received again (or after a newer snapshot) changes nothing."""
        self.mirror.start()
        self.store.set("a", {"s": 1})
        self.store.set("b", {"s": 1})
        self.pub.end_turn()
        self.fetches[0].callback(self.store.snapshot())
        self.store.set("a", {"s": 9})
        self.deliver()
        self.assertEqual(self.mirror.entries, {"a": {"s": 1}, "b": {"s": 1}})
        self.assertEqual(self.mirror.resyncs, 0)


class BatchedCloneEndToEndTests(CloneEndToEndTests):
    """L{CloneEndToEndTests} with a batching store: the same convergence over the memory transport."""

    def make_store(self, publisher: Any) -> StateStore:
        return StateStore(publisher, batch=True)

    def test_burst_is_one_message(self) -> None:
        """A burst of one turn is one delivery per subscriber, and the mirror follows it."""
        self.join()
        before = self.network.delivered
        for i in range(50):
            self.store.set(f"d{i}", {"state": "Active"})
        self.clock.advance(0)
        # the staged send itself and one delivery
        self.assertEqual(self.network.delivered - before, 2)
        self.assertConverged()
        self.assertEqual(self.mirror.resyncs, 0)


class NarrowSubscriptionTests(SynchronousTestCase):
    """A subscriber of a narrower prefix than the table's still gets its keys' changes out of batches."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.network = MemoryNetwork(self.clock)
        self.publisher = MemoryNode(self.network, "pca").publish("mem://pub:*")
        self.store = StateStore(self.publisher, batch=True)
        self.got: list[Envelope] = []
        gui = MemoryNode(self.network, "gui")
        gui.subscribe(self.publisher.address, ["state/partition", "log/"], self.got.append)

    def test_batch_prefixes(self) -> None:
        """Each prefix and its ancestors ending in '/', once each."""
        self.assertEqual(
            batch_prefixes(["state/system/STS", "state/partition", "log/", "_tick"]),
            ["state/", "state/system/", "state/system/STS", "state/partition", "log/", "_tick"],
        )

    def test_only_subscribed_keys(self) -> None:
        """From a batch and from plain events, only the subscribed topics reach the callback."""
        self.store.set("system/STS", {"s": 1})
        self.store.set("partition", {"state": "Configuring"})
        self.store.set("system/TOF", {"s": 1})
        self.clock.advance(0)
        self.store.set("system/STS", {"s": 2})  # alone: a plain event on state/system/STS
        self.clock.advance(0)
        self.publisher.publish("log/p", "log", {"message": "m"})
        self.store.set("partition", {"state": "Ready"})
        self.clock.advance(0)
        self.assertEqual(
            [(e.type, e.topic, e.seq) for e in self.got],
            [("state", "state/partition", 2), ("log", "log/p", 5), ("state", "state/partition", 6)],
        )
