# -*- test-case-name: tests.test_eca -*-
"""
L{PartitionLink}: the ECA's connection to the PCA of one partition, I/O
only.  It subscribes to the PCA's publisher, keeps a clone-pattern
L{Mirror} of its table, watches the PCA with heartbeats, sends it
requests, and tells an L{IPartitionObserver} what it learns.  When the PCA
registers again as a new process (a new incarnation: a restart, at a new
port or the same) it starts over from a fresh snapshot; the same process
registering again (after an ECA restart) changes nothing.  What the records mean is L{agents.eca.picture}'s business.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from agents.eca.interfaces import IPartitionObserver
from ecs import protocol
from ecs.config.settings import Settings
from ecs.net.heartbeat import Heartbeat
from ecs.net.pubsub import Mirror, fetch_paged_snapshot
from ecs.net.registry import AgentInfo
from ecs.net.transport import INode, RequestError
from ecs.protocol import Envelope

SNAPSHOT_PAGE = 2000


class PartitionLink:
    """Mirror, subscriber and heartbeat of one PCA."""

    _log = Logger()

    def __init__(
        self, partition_id: str, node: INode, clock: IReactorTime, settings: Settings, observer: IPartitionObserver
    ) -> None:
        self.id = partition_id
        self._node = node
        self._clock = clock
        self._settings = settings
        self._observer = observer
        self.endpoint: str | None = None
        self.publish: str | None = None
        #: The PCA process's incarnation, from its registration.
        self.incarnation: str | None = None
        self.connected = False
        self._subscriber: Any = None
        self._mirror: Mirror | None = None
        self._heartbeat: Heartbeat | None = None

    def pca_changed(self, info: AgentInfo | None) -> None:
        """The PCA registered (maybe at a new place) or went away."""
        if info is not None and (info.endpoint, info.publish, info.incarnation) == (
            self.endpoint, self.publish, self.incarnation
        ):
            return  # the same process registering again (e.g. after an ECA restart)
        self.stop()
        if info is None or info.endpoint is None or info.publish is None:
            self.endpoint = self.publish = self.incarnation = None
            self._set_connected(False)
            return
        self.endpoint, self.publish, self.incarnation = info.endpoint, info.publish, info.incarnation
        client = self._node.connect(info.endpoint)
        self._mirror = Mirror(
            self._clock,
            self._snapshot,
            self._observer.got_record,
            self._reset,
            retry_delay=self._settings.heartbeat_interval,
            name=f"ECA mirror of {self.id}",
        )
        self._subscriber = self._node.subscribe(info.publish, ["state/", "log/", "progress/"], self._received)
        self._mirror.start()
        self._heartbeat = Heartbeat(
            self._clock,
            self._settings.heartbeat_interval,
            self._settings.heartbeat_timeout,
            lambda timeout: client.request(protocol.ENDPOINT_TARGET, "heartbeat", {}, timeout),
            self._lost,
            lambda: self._set_connected(True),
            name=f"ECA: PCA {self.id} at {info.endpoint}",
            last_heard=lambda: client.last_received,
        )
        self._heartbeat.start()

    def stop(self) -> None:
        """Stop following (the PCA moved, or the ECA stops)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._mirror is not None:
            self._mirror.stop()
            self._mirror = None
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None

    def request(self, type: str, body: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """A request to the PCA (RequestError when refused or unreachable)."""
        if self.endpoint is None:
            return defer.fail(RequestError(protocol.TIMEOUT, f"the PCA of {self.id} is not registered"))
        client = self._node.connect(self.endpoint)
        return client.request(self.id, type, body, timeout=self._settings.request_timeout)

    def _snapshot(self) -> defer.Deferred[dict[str, Any]]:
        """A whole snapshot of the PCA's table, in pages."""
        if self.endpoint is None:
            return defer.fail(RequestError(protocol.TIMEOUT, f"the PCA of {self.id} is not registered"))
        client = self._node.connect(self.endpoint)

        def page(after: str | None) -> defer.Deferred[dict[str, Any]]:
            body: dict[str, Any] = {"limit": SNAPSHOT_PAGE}
            if after is not None:
                body["after"] = after
            return client.request(self.id, "snapshot", body)

        return fetch_paged_snapshot(page)

    async def detectors(self) -> set[str]:
        """The detectors the PCA has now (asked, not mirrored; RequestError when it does not answer)."""
        body = await self._snapshot()
        return {
            entry["value"]["id"]
            for key, entry in body["entries"].items()
            if key.startswith("system/") and entry["value"].get("kind") == "detector"
        }

    def _lost(self) -> None:
        self._set_connected(False)
        self._observer.got_lost()

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected and self._mirror is not None and self._mirror.synced:
            self._mirror.start()  # take a fresh snapshot: it may have missed everything
        self._observer.got_connected(connected)

    def _reset(self) -> None:
        entries = self._mirror.entries if self._mirror is not None else {}
        self._observer.got_reset(frozenset(entries))

    def _received(self, envelope: Envelope) -> None:
        body = envelope.body
        if self._mirror is not None:
            # Every event counts in the publisher's numbering: the mirror
            # must see them all (it applies only state changes) or it would
            # take log lines for gaps.
            self._mirror.event_received(envelope)
        if envelope.type == "log":
            when = body.get("time")
            self._observer.got_log(
                str(body.get("level", "info")),
                str(body.get("source", self.id)),
                str(body.get("message", "")),
                when if isinstance(when, (int, float)) else None,
            )
        elif envelope.type == "progress":
            self._observer.got_progress(body)
