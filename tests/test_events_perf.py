# -*- test-case-name: tests.test_events_perf -*-
"""
The event stream with many consoles (issue 13 item 7): an event is
encoded once for every open stream, and that never shows a console a
stale or another event's bytes.  Behaviour only; the timings are
C{bench/events.py --clients N}.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from treq.testing import StubTreq

from agents.eca.events import EventLog
from ecs.web.routes import WebAPI
from ecs.web.stream import IMMEDIATE
from tests.http_helpers import SSEReader
from tests.test_web import BASE, WebTestCase


class ManyStreamsTests(WebTestCase):
    """Several open /api/events streams fed by one event log."""

    def open_streams(self, count: int) -> list[SSEReader]:
        readers = []
        for _ in range(count):
            d = self.stub.get(BASE + "/api/events", headers={"Authorization": f"Bearer {self.token('viewer')}"},
                              unbuffered=True)
            self.stub.flush()
            reader = SSEReader()
            self.successResultOf(d).deliverBody(reader)
            self.stub.flush()
            readers.append(reader)
        return readers

    def close_all(self, readers: list[SSEReader]) -> None:
        for reader in readers:
            reader.hang_up()
        self.stub.flush()

    def test_one_encoding_for_every_stream(self) -> None:
        """Five streams get the same bytes of each event, in order, and each event is encoded once."""
        readers = self.open_streams(5)
        real_dumps = json.dumps
        calls: list[Any] = []

        def counting_dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
            calls.append(obj)
            return real_dumps(obj, *args, **kwargs)

        with mock.patch("ecs.web.stream.json.dumps", counting_dumps):
            for n in range(3):
                self.center.emit("state", {"key": f"system/S{n}", "value": {"state": "Active"}}, "demo")
        self.stub.flush()
        self.assertEqual(len(calls), 3)
        first = readers[0].events()
        self.assertEqual([e["data"]["key"] for e in first], ["system/S0", "system/S1", "system/S2"])
        for reader in readers[1:]:
            self.assertEqual(reader.events(), first)
        self.close_all(readers)

    def test_same_object_changed_is_encoded_again(self) -> None:
        """An event object changed and emitted again is sent with its new content (a new id is a new encoding)."""
        readers = self.open_streams(2)
        data: dict[str, Any] = {"key": "system/STS", "value": {"state": "Configuring"}}
        self.center.emit("state", data, "demo")
        data["value"] = {"state": "Active"}
        self.center.emit("state", data, "demo")
        self.stub.flush()
        for reader in readers:
            self.assertEqual([e["data"]["value"]["state"] for e in reader.events()], ["Configuring", "Active"])
        self.close_all(readers)

    def test_replay_and_live_mixed(self) -> None:
        """A stream that resumes (replay) and one that follows live both see every event once, in order."""
        live = self.open_streams(1)
        for n in range(3):
            self.center.emit("log", {"n": n}, "demo")
        d = self.stub.get(BASE + "/api/events", headers={"Authorization": f"Bearer {self.token('viewer')}",
                                                         "Last-Event-ID": "1"}, unbuffered=True)
        self.stub.flush()
        resumed = SSEReader()
        self.successResultOf(d).deliverBody(resumed)
        self.stub.flush()
        self.center.emit("log", {"n": 3}, "demo")
        self.stub.flush()
        self.assertEqual([e["id"] for e in live[0].events()], [1, 2, 3, 4])
        self.assertEqual([e["id"] for e in resumed.events()], [2, 3, 4])
        self.assertEqual(live[0].events()[1:], resumed.events())
        self.close_all([*live, resumed])


class BurstTests(WebTestCase):
    """A burst of events in one reactor turn: the first ones at once, the rest as one chunk when the turn ends."""

    def open_stream(self) -> tuple[Any, SSEReader]:
        d = self.stub.get(BASE + "/api/events", headers={"Authorization": f"Bearer {self.token('viewer')}"},
                          unbuffered=True)
        self.stub.flush()
        reader = SSEReader()
        self.successResultOf(d).deliverBody(reader)
        self.stub.flush()
        [stream] = self.api.streams
        return stream, reader

    def test_burst_written_as_one_chunk_at_turn_end(self) -> None:
        """100 events: IMMEDIATE of them at once, the other 84 in one write when the turn ends; all, in order."""
        stream, reader = self.open_stream()
        writes: list[bytes] = []
        real_write = stream.request.write

        def counting_write(data: bytes) -> None:
            writes.append(data)
            real_write(data)

        stream.request.write = counting_write
        for n in range(100):
            self.center.emit("state", {"key": "system/S", "value": {"n": n}}, "demo")
        self.stub.flush()
        self.assertEqual([e["data"]["value"]["n"] for e in reader.events()], list(range(IMMEDIATE)))
        self.assertEqual(len(writes), IMMEDIATE)
        self.clock.advance(0)
        self.stub.flush()
        self.assertEqual([e["data"]["value"]["n"] for e in reader.events()], list(range(100)))
        self.assertEqual(len(writes), IMMEDIATE + 1)
        # Right after a burst a turn is collected from its first event ...
        self.center.emit("state", {"key": "system/S", "value": {"n": 100}}, "demo")
        self.stub.flush()
        self.assertEqual(reader.events()[-1]["data"]["value"]["n"], 99)
        self.clock.advance(0)
        self.stub.flush()
        self.assertEqual(reader.events()[-1]["data"]["value"]["n"], 100)
        # ... and once a turn carried a single event, a lone event goes out at once again.
        self.center.emit("state", {"key": "system/S", "value": {"n": 101}}, "demo")
        self.stub.flush()
        self.assertEqual(reader.events()[-1]["data"]["value"]["n"], 101)
        self.assertEqual(len(writes), IMMEDIATE + 3)
        self.clock.advance(0)
        reader.hang_up()
        self.stub.flush()

    def test_keepalive_waits_behind_collected_events(self) -> None:
        """A keep-alive during a collecting turn is written after the events collected before it."""
        stream, reader = self.open_stream()
        for n in range(IMMEDIATE + 3):
            self.center.emit("log", {"n": n}, "demo")
        stream._send_keepalive()
        self.center.emit("log", {"n": "last"}, "demo")
        self.clock.advance(0)
        self.stub.flush()
        data = reader.data
        self.assertLess(data.index(b'{"n":%d}' % (IMMEDIATE + 2)), data.index(b": keep-alive"))
        self.assertLess(data.index(b": keep-alive"), data.index(b'{"n":"last"}'))
        self.assertEqual(len(reader.events()), IMMEDIATE + 4)
        reader.hang_up()
        self.stub.flush()

    def test_pause_mid_burst_keeps_order(self) -> None:
        """The connection pauses in a collecting turn: the collection is queued first; on resume all arrive in order."""
        stream, reader = self.open_stream()
        for n in range(IMMEDIATE + 5):
            self.center.emit("log", {"n": n}, "demo")
        stream.request.channel.pauseProducing()
        for n in range(IMMEDIATE + 5, IMMEDIATE + 10):
            self.center.emit("log", {"n": n}, "demo")
        self.clock.advance(0)
        self.stub.flush()
        stream.request.channel.resumeProducing()
        self.stub.flush()
        self.assertEqual([e["data"]["n"] for e in reader.events()], list(range(IMMEDIATE + 10)))
        reader.hang_up()
        self.stub.flush()

    def test_collected_bytes_bounded(self) -> None:
        """A turn's collection is written once it reaches max_buffer bytes (nothing dropped, no wait for the turn)."""
        self.api.sse_max_buffer = 2000
        stream, reader = self.open_stream()
        for n in range(200):
            self.center.emit("log", {"n": n, "text": "x" * 40}, "demo")
        self.stub.flush()
        self.assertFalse(stream.dropped)
        self.assertGreater(len(reader.events()), 150)
        self.clock.advance(0)
        self.stub.flush()
        self.assertEqual([e["data"]["n"] for e in reader.events()], list(range(200)))
        reader.hang_up()
        self.stub.flush()

    def test_close_mid_turn_leaves_no_timer(self) -> None:
        """A client that leaves during a collecting turn leaves no timer and gets nothing more."""
        stream, reader = self.open_stream()
        for n in range(IMMEDIATE + 5):
            self.center.emit("log", {"n": n}, "demo")
        reader.hang_up()
        self.stub.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(stream.closed)

    def test_burst_over_many_turns_one_write_per_turn(self) -> None:
        """A burst read a few events per turn: after its first turn, each turn is one write, in order."""
        stream, reader = self.open_stream()
        writes: list[bytes] = []
        real_write = stream.request.write

        def counting_write(data: bytes) -> None:
            writes.append(data)
            real_write(data)

        stream.request.write = counting_write
        n = 0
        for _ in range(10):
            for _ in range(5):
                self.center.emit("log", {"n": n}, "demo")
                n += 1
            self.clock.advance(0)
        self.stub.flush()
        self.assertEqual([e["data"]["n"] for e in reader.events()], list(range(50)))
        self.assertEqual(len(writes), 5 + 9)
        reader.hang_up()
        self.stub.flush()


class BatchStreamsTests(WebTestCase):
    """Streams fed a turn at a time by a real L{EventLog} on the test's clock (the ECA's wiring)."""

    def setUp(self) -> None:
        super().setUp()
        self.log = EventLog(clock=self.clock)
        self.center.events_since = self.log.events_since  # type: ignore[method-assign]
        self.api = WebAPI(self.center, self.clock, subscribe_many=self.log.subscribe_batch)
        self.stub = StubTreq(self.api.resource())

    def open(self, path: str = "/api/events", last: str | None = None) -> SSEReader:
        headers = {"Authorization": f"Bearer {self.token('viewer')}"}
        if last is not None:
            headers["Last-Event-ID"] = last
        d = self.stub.get(BASE + path, headers=headers, unbuffered=True)
        self.stub.flush()
        reader = SSEReader()
        self.successResultOf(d).deliverBody(reader)
        self.stub.flush()
        return reader

    def counted_writes(self) -> list[list[bytes]]:
        """Every open stream's writes, recorded from now on."""
        all_writes: list[list[bytes]] = []
        for stream in self.api.streams:
            writes: list[bytes] = []
            real_write = stream.request.write

            def counting_write(data: bytes, writes: list[bytes] = writes, real_write: Any = real_write) -> None:
                writes.append(data)
                real_write(data)

            stream.request.write = counting_write  # type: ignore[method-assign]
            all_writes.append(writes)
        return all_writes

    def close_all(self, readers: list[SSEReader]) -> None:
        for reader in readers:
            reader.hang_up()
        self.stub.flush()

    def test_one_write_per_turn_encoded_once(self) -> None:
        """100 events in a turn: each of five streams gets them all, in order, in one write; each encoded once."""
        readers = [self.open() for _ in range(5)]
        writes = self.counted_writes()
        real_dumps = json.dumps
        calls: list[Any] = []

        def counting_dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
            calls.append(obj)
            return real_dumps(obj, *args, **kwargs)

        with mock.patch("ecs.web.stream.json.dumps", counting_dumps):
            for n in range(100):
                self.log.emit("state", {"key": "system/S", "value": {"n": n}}, "demo")
            self.stub.flush()
            self.assertEqual(readers[0].events(), [])
            self.clock.advance(0)
        self.stub.flush()
        self.assertEqual(len(calls), 100)
        self.assertEqual([len(w) for w in writes], [1] * 5)
        first = readers[0].events()
        self.assertEqual([e["data"]["value"]["n"] for e in first], list(range(100)))
        self.assertEqual([e["id"] for e in first], list(range(1, 101)))
        for reader in readers[1:]:
            self.assertEqual(reader.events(), first)
        self.close_all(readers)
        self.assertEqual(self.log._batches, [])

    def test_partition_filter(self) -> None:
        """A ?partition= stream gets its partition's events and the global ones, in order."""
        demo = self.open("/api/events?partition=demo")
        every = self.open()
        self.log.emit("state", {"n": 0}, "demo")
        self.log.emit("state", {"n": 1}, "other")
        self.log.emit("agent", {"n": 2}, None)
        self.clock.advance(0)
        self.stub.flush()
        self.assertEqual([e["data"]["n"] for e in demo.events()], [0, 2])
        self.assertEqual([e["data"]["n"] for e in every.events()], [0, 1, 2])
        self.close_all([demo, every])

    def test_resume_no_duplicate(self) -> None:
        """A stream that resumes in the middle of a turn gets the replay, then the rest, each event once."""
        live = self.open()
        for n in range(3):
            self.log.emit("log", {"n": n}, "demo")
        resumed = self.open(last="1")
        self.log.emit("log", {"n": 3}, "demo")
        self.clock.advance(0)
        self.stub.flush()
        self.assertEqual([e["id"] for e in live.events()], [1, 2, 3, 4])
        self.assertEqual([e["id"] for e in resumed.events()], [2, 3, 4])
        self.close_all([live, resumed])

    def test_slow_client_dropped(self) -> None:
        """A paused stream whose queued turns pass max_buffer is dropped and unsubscribed; another is not."""
        self.api.sse_max_buffer = 500
        slow = self.open()
        fast = self.open()
        slow_stream = next(iter(self.api.streams))
        slow_stream.request.channel.pauseProducing()
        for turn in range(5):
            for n in range(3):
                self.log.emit("log", {"n": turn * 3 + n, "text": "x" * 40}, "demo")
            self.clock.advance(0)
        self.assertTrue(slow_stream.dropped)
        self.assertEqual(len(self.log._batches), 1)
        self.stub.flush()
        readers = [slow, fast]
        kept = [r for r in readers if r.lost is None]
        self.assertEqual(len(kept), 1)
        self.assertEqual([e["data"]["n"] for e in kept[0].events()], list(range(15)))
        self.close_all(kept)
