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
