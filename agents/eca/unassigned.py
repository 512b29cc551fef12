# -*- test-case-name: tests.test_eca -*-
"""
L{Unassigned}: detectors in no partition, supervised by the ECA (the
original's "unmapped detectors"): their live states on the overview.

Nobody receives their state updates (they report to no partition), so the
ECA asks each registered one for its status every heartbeat interval
(L{Unassigned.tick}, run by a C{TimerService}), in one burst; an
unregistered or silent one is shown as C{Connection Problem}.  Changes
become C{state} events with key C{unassigned/<id>}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from agents.eca.interfaces import IEventSource
from ecs.config.settings import Settings
from ecs.net.remote_registry import Entry
from ecs.net.transport import INode, RequestError
from ecs.protocol import CONNECTION_PROBLEM
from ecs.store import Store

REFRESH_EVERY = 5  # polls between two reads of the list from the database


class Unassigned:
    """Live states of the unassigned detectors."""

    _log = Logger()

    def __init__(
        self,
        node: INode,
        registered: Mapping[tuple[str, str], Entry],
        store: Store,
        events: IEventSource,
        settings: Settings,
    ) -> None:
        self._node = node
        self._registered = registered
        self._store = store
        self._events = events
        self._settings = settings
        self.records: dict[str, dict[str, Any]] = {}
        self._types: dict[str, str] = {}
        self._polls = 0
        self._busy = False

    def unassigned(self) -> list[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.unassigned}: live states, polled."""
        return sorted(self.records.values(), key=lambda r: r["id"])

    def tick(self) -> None:
        """One poll, unless the last burst is still out (never pile up)."""
        if self._busy:
            return
        self._busy = True
        d = defer.Deferred.fromCoroutine(self._poll())
        d.addErrback(lambda f: self._log.failure("polling unassigned detectors", f))
        d.addBoth(lambda _: setattr(self, "_busy", False))

    async def _poll(self) -> None:
        if self._polls % REFRESH_EVERY == 0:
            rows = await self._store.detectors(None)
            self._types = {row.id: row.type for row in rows}
            for gone in set(self.records) - set(self._types):
                del self.records[gone]
                self._events.emit("state", {"partition": None, "key": f"unassigned/{gone}", "value": None})
        self._polls += 1
        await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._ask(detector)) for detector in self._types],
            consumeErrors=True,
        )

    async def _ask(self, detector: str) -> None:
        entry = self._registered.get(("detector", detector))
        record: dict[str, Any] = {
            "id": detector,
            "kind": "detector",
            "type": self._types.get(detector),
            "state": CONNECTION_PROBLEM,
            "raw_state": None,
            "tag": None,
            "comment": "",
            "connected": False,
        }
        if entry is not None and entry.info.endpoint is not None:
            try:
                status = await self._node.connect(entry.info.endpoint).request(
                    detector, "status", {}, timeout=self._settings.heartbeat_timeout
                )
                record.update(
                    state=status.get("summary"),
                    raw_state=status.get("state"),
                    tag=status.get("tag"),
                    comment=status.get("comment", ""),
                    connected=True,
                )
            except RequestError as e:
                record["comment"] = e.reason
        if self.records.get(detector) != record:
            self.records[detector] = record
            self._events.emit("state", {"partition": None, "key": f"unassigned/{detector}", "value": record})
