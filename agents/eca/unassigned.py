# -*- test-case-name: tests.test_eca -*-
"""
Detectors in no partition, supervised by the ECA (the original's
"unmapped detectors"): their live states on the overview.

Nobody receives their state updates (they report to no partition), so the
ECA asks each registered one for its status every heartbeat interval, in
one burst; an unregistered or silent one is shown as C{Connection
Problem}.  Changes become C{state} events with key C{unassigned/<id>}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer, task
from twisted.logger import Logger

from ecs.net.transport import RequestError
from ecs.protocol import CONNECTION_PROBLEM

if TYPE_CHECKING:
    from agents.eca.agent import ExperimentControlAgent

REFRESH_EVERY = 5  # polls between two reads of the list from the database


class UnassignedWatch:
    """Live states of the unassigned detectors."""

    _log = Logger()

    def __init__(self, eca: ExperimentControlAgent) -> None:
        self.eca = eca
        self.records: dict[str, dict[str, Any]] = {}
        self._types: dict[str, str] = {}
        self._polls = 0
        self._loop: task.LoopingCall | None = None
        self._busy = False

    def start(self) -> None:
        """Poll every heartbeat interval."""
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.eca.reactor
        self._loop.start(self.eca.settings.heartbeat_interval, now=True)

    def stop(self) -> None:
        """Stop polling."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        if self._busy:
            return  # the last burst is still out: never pile up
        self._busy = True
        d = defer.Deferred.fromCoroutine(self._poll())
        d.addErrback(lambda f: self._log.failure("polling unassigned detectors", f))
        d.addBoth(lambda _: setattr(self, "_busy", False))

    async def _poll(self) -> None:
        if self._polls % REFRESH_EVERY == 0:
            rows = await self.eca.store.detectors(None)
            self._types = {row.id: row.type for row in rows}
            for gone in set(self.records) - set(self._types):
                del self.records[gone]
                self.eca.emit("state", {"partition": None, "key": f"unassigned/{gone}", "value": None})
        self._polls += 1
        await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._ask(detector)) for detector in self._types],
            consumeErrors=True,
        )

    async def _ask(self, detector: str) -> None:
        entry = self.eca.registry.entries.get(("detector", detector))
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
                status = await self.eca.node.connect(entry.info.endpoint).request(
                    detector, "status", {}, timeout=self.eca.settings.heartbeat_timeout
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
            self.eca.emit("state", {"partition": None, "key": f"unassigned/{detector}", "value": record})
