# -*- test-case-name: tests.test_pca_e2e -*-
"""
Liveness of a partition's systems, for the PCA (L{agents.pca.agent}).

One heartbeat per system endpoint (several systems may share one): a lost
endpoint makes its systems C{Connection Problem}; a recovered one is asked
for the status of each of its systems, which is folded in.  Systems whose
endpoint is unknown or lost are looked up in the registry again every
heartbeat interval, all in one bulk request per kind, so a controller (or a
sim host's two thousand) restarted elsewhere is found within an interval
of registering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from agents.pca.partition import SystemView
from agents.pca.sequencer import Send, Sequencer
from ecs import protocol
from ecs.config.settings import Settings
from ecs.net.heartbeat import Heartbeat
from ecs.net.registry import IRegistry, Location
from ecs.net.transport import INode


class SystemsWatch:
    """Heartbeats, re-resolution and status queries of one partition's systems."""

    _log = Logger()

    def __init__(
        self,
        name: str,
        node: INode,
        registry: IRegistry,
        settings: Settings,
        reactor: Any,
        sequencer: Sequencer,
        send: Send,
        answered: Callable[[], None],
    ) -> None:
        """
        @param answered: called after a system's status was folded in (the
            PCA checks whether the whole partition has answered).
        """
        self.name = name
        self.node = node
        self.registry = registry
        self.settings = settings
        self.reactor = reactor
        self.sequencer = sequencer
        self.send = send
        self.answered = answered
        self.heartbeats: dict[str, Heartbeat] = {}
        self._resolver: task.LoopingCall | None = None
        self._resolving = False
        self._query_retries: dict[str, Any] = {}
        self._stopped = False

    def start(self) -> None:
        """Watch every known endpoint; look lost systems up again periodically."""
        systems = self.sequencer.partition.systems.values()
        for endpoint in sorted({v.endpoint for v in systems if v.endpoint}):
            self.watch(endpoint)
        self._resolver = task.LoopingCall(self.resolve_lost)
        self._resolver.clock = self.reactor
        self._resolver.start(self.settings.heartbeat_interval, now=False)

    def stop(self) -> None:
        """Stop every heartbeat, the periodic lookup and the pending queries."""
        self._stopped = True
        for heartbeat in self.heartbeats.values():
            heartbeat.stop()
        if self._resolver is not None and self._resolver.running:
            self._resolver.stop()
        for retry in self._query_retries.values():
            if retry.active():
                retry.cancel()
        self._query_retries.clear()

    def watch(self, endpoint: str) -> None:
        """Start a heartbeat to C{endpoint}."""
        client = self.node.connect(endpoint)
        heartbeat = Heartbeat(
            self.reactor,
            self.settings.heartbeat_interval,
            self.settings.heartbeat_timeout,
            lambda timeout: client.request(protocol.ENDPOINT_TARGET, "heartbeat", {}, timeout),
            lambda: self._endpoint_lost(endpoint),
            lambda: self._endpoint_back(endpoint),
            name=f"{self.name}: systems at {endpoint}",
            last_heard=lambda: client.last_received,
        )
        self.heartbeats[endpoint] = heartbeat
        heartbeat.start()

    def follow(self, view: SystemView) -> None:
        """A system was added: ask it now if its endpoint is alive, else watch the endpoint."""
        if view.endpoint is None:
            return
        if view.endpoint in self.heartbeats:
            if self.heartbeats[view.endpoint].alive:
                self.query(view)
        else:
            self.watch(view.endpoint)

    def unfollow(self, view: SystemView) -> None:
        """A system was removed: stop the heartbeat of its endpoint if nobody else is there."""
        if view.endpoint is not None and not self.at(view.endpoint) and view.endpoint in self.heartbeats:
            self.heartbeats.pop(view.endpoint).stop()

    def at(self, endpoint: str) -> list[SystemView]:
        """The partition's systems served at C{endpoint}."""
        return [v for v in self.sequencer.partition.systems.values() if v.endpoint == endpoint]

    def resolve_lost(self) -> None:
        """Ask the registry again where unknown or lost systems are now."""
        if self._resolving:
            return
        lost = [
            v
            for v in self.sequencer.partition.systems.values()
            if v.endpoint is None or self.heartbeats.get(v.endpoint, None) is None
            or self.heartbeats[v.endpoint].alive is False
        ]
        if lost:
            self._resolving = True
            d = defer.Deferred.fromCoroutine(self._relocate(lost))
            d.addErrback(lambda f: self._log.failure("resolving systems", f))
            d.addBoth(lambda _: setattr(self, "_resolving", False))

    async def _relocate(self, views: list[SystemView]) -> None:
        by_kind: dict[str, list[SystemView]] = {}
        for view in views:
            by_kind.setdefault("global" if view.kind == "global" else "detector", []).append(view)
        for kind, group in sorted(by_kind.items()):
            try:
                found = await self.registry.locate(kind, [view.id for view in group])
            except Exception as e:
                self._log.warn(
                    "{partition}: registry lookup of {count} system(s) failed: {error}",
                    partition=self.name, count=len(group), error=e,
                )
                return
            moved = [
                (view, view.endpoint)
                for view in group
                if (location := found.get(view.id)) is not None
                and location.endpoint is not None
                and location.endpoint != view.endpoint
                and not self._stopped
                and self.sequencer.partition.systems.get(view.id) is view
            ]
            self._move(moved, found)

    def _move(self, moved: list[tuple[SystemView, str | None]], found: dict[str, Location]) -> None:
        """Systems found at new endpoints: watch those, stop watching the ones nobody is at any more."""
        for view, _ in moved:
            view.endpoint = found[view.id].endpoint
            if len(moved) <= 20:
                self._log.info("{system} is now at {endpoint}", system=view.id, endpoint=view.endpoint)
        if len(moved) > 20:
            self._log.info("{partition}: {count} systems found at new endpoints", partition=self.name, count=len(moved))
        in_use = {v.endpoint for v in self.sequencer.partition.systems.values()}
        for old in {old for _, old in moved}:
            if old is not None and old not in in_use and old in self.heartbeats:
                self.heartbeats.pop(old).stop()
        for view, _ in moved:
            endpoint = view.endpoint
            assert endpoint is not None
            if endpoint not in self.heartbeats:
                self.watch(endpoint)  # its first answer asks every system there
            elif self.heartbeats[endpoint].alive:
                self.query(view)

    def _endpoint_lost(self, endpoint: str) -> None:
        for view in self.at(endpoint):
            self.sequencer.connection(view.id, False)

    def _endpoint_back(self, endpoint: str) -> None:
        for view in self.at(endpoint):
            self.query(view)

    def query(self, view: SystemView) -> None:
        """Ask a (re)connected system for its status, then count it as connected."""
        sequencer = self.sequencer
        d = self.send(view, "status", {})

        def got(status: dict[str, Any]) -> None:
            incarnation = status.get("incarnation")
            sequencer.update(view.id, status, incarnation if isinstance(incarnation, str) else None)
            sequencer.connection(view.id, True)
            self.answered()

        def failed(failure: Any) -> None:
            self._log.warn(
                "{system}: status query failed: {error}; asking again in {delay} s",
                system=view.id,
                error=failure.getErrorMessage(),
                delay=self.settings.heartbeat_interval,
            )
            self._retry_query(view)

        d.addCallbacks(got, failed)

    def _retry_query(self, view: SystemView) -> None:
        """Ask again later, while the system is ours, unconnected and its endpoint answers."""

        def again() -> None:
            self._query_retries.pop(view.id, None)
            if self._stopped or self.sequencer.partition.systems.get(view.id) is not view:
                return
            heartbeat = self.heartbeats.get(view.endpoint or "")
            if not view.connected and heartbeat is not None and heartbeat.alive:
                self.query(view)

        if view.id not in self._query_retries and not self._stopped:
            self._query_retries[view.id] = self.reactor.callLater(self.settings.heartbeat_interval, again)
