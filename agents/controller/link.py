# -*- test-case-name: tests.test_host -*-
"""
The link from a controller host to one partition's PCA (L{PartitionLink}).

State updates are one-way C{states} notifications to the partition's PCA,
batched per reactor turn (a sim host configuring a thousand detectors sends
a handful of messages, not thousands), each entry with the system's own
sequence number.  The link finds the PCA through the registry and watches
it with heartbeats; only the PCA's I{answers} count as its life (the PCA's
commands to us do not: a PCA restarted at a new port keeps commanding us
while we would keep sending to the old one).  While the PCA is unknown or
lost the link asks the registry again every heartbeat interval; a new
endpoint or a new incarnation (a restart at the same address) makes every
system of the partition report its state again.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from agents.controller.system import SystemController
from ecs import protocol
from ecs.config.settings import Settings
from ecs.net.heartbeat import Heartbeat
from ecs.net.registry import IRegistry, Location
from ecs.net.transport import INode, IServer, RequestError

#: The most state updates in one notification: a few hundred bytes each, so
#: a batch stays far below the message size limit however many systems
#: change in one reactor turn.
BATCH = 500


class ILinkHost(Protocol):
    """What a L{PartitionLink} uses of its host (L{agents.controller.host.ControllerHost})."""

    name: str | None
    incarnation: Any
    settings: Settings
    reactor: Any

    @property
    def registry(self) -> IRegistry:
        """Where the PCA's endpoint is looked up."""

    @property
    def node(self) -> INode:
        """The host's node, to reach the PCA."""

    @property
    def server(self) -> IServer | None:
        """The host's request endpoint (who last sent us a command)."""

    def controllers_of_partition(self, partition: str) -> list[SystemController]:
        """The controllers serving C{partition}."""


class PartitionLink:
    """Sends one partition's state updates to its PCA, and watches the PCA."""

    _log = Logger()

    def __init__(self, host: ILinkHost, partition: str) -> None:
        self.host = host
        self.partition = partition
        self.endpoint: str | None = None
        self._batch: dict[str, dict[str, Any]] = {}
        self._flush_call: Any = None
        self.heartbeat: Heartbeat | None = None
        self.sent = 0
        self._resolving: Any = None
        #: The PCA's incarnation as the registry last told it.
        self.incarnation: str | None = None
        self._started = False
        self._stopped = False
        self._told_unknown = False

    async def start(self) -> None:
        """Find the PCA and start watching it (looking again until it is known); once."""
        if self._started:
            return
        self._started = True
        await self._resolve()

    async def _resolve(self) -> None:
        """Look the PCA up; watch it at its (new) endpoint; look again while unknown or lost."""
        self._resolving = None
        if self.is_stopped():
            return
        try:
            found = await self.host.registry.locate("pca", [self.partition])
            location = found.get(self.partition)
        except Exception as e:
            self._log.warn("PCA {partition}: registry lookup failed: {error}", partition=self.partition, error=e)
            location = None if self.endpoint is None else Location(self.endpoint, None, self.incarnation)
        if self.is_stopped():  # stopped while the registry answered
            return
        if location is None or location.endpoint is None:
            if not self._told_unknown and self.endpoint is None:
                self._told_unknown = True
                self._log.warn(
                    "partition {partition} has no known PCA endpoint yet: looking again every {seconds} s",
                    partition=self.partition,
                    seconds=self.host.settings.heartbeat_timeout,
                )
            self._look_again()
            return
        endpoint, incarnation = location.endpoint, location.incarnation
        if endpoint == self.endpoint and self.heartbeat is not None:
            if incarnation is not None and self.incarnation is not None and incarnation != self.incarnation:
                self._log.info(
                    "PCA {partition} restarted at {endpoint}: reporting every state again",
                    partition=self.partition, endpoint=endpoint,
                )
                self.incarnation = incarnation
                if self.heartbeat.alive:
                    self._recovered()
            elif incarnation is not None:
                self.incarnation = incarnation
            if self.heartbeat.alive is not True:
                self._look_again()
            return
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self._log.info("PCA {partition} moved to {endpoint}", partition=self.partition, endpoint=endpoint)
        self.endpoint = endpoint
        self.incarnation = incarnation
        client = self.host.node.connect(endpoint)
        settings = self.host.settings
        self.heartbeat = Heartbeat(
            self.host.reactor,
            settings.heartbeat_interval,
            settings.heartbeat_timeout,
            lambda timeout: client.request(protocol.ENDPOINT_TARGET, "heartbeat", {}, timeout),
            self._lost,
            self._recovered,
            name=f"PCA {self.partition} at {self.endpoint}",
            last_heard=lambda: client.last_received,
            on_restarted=lambda _: self._recovered(),
        )
        self.heartbeat.start()

    def _look_again(self) -> None:
        """
        Ask the registry again (once): in a heartbeat interval when a PCA
        we knew is lost (it is being restarted: find it as soon as it
        registers), in a heartbeat timeout while none was ever known.
        """
        settings = self.host.settings
        delay = settings.heartbeat_interval if self.endpoint is not None else settings.heartbeat_timeout
        if self._resolving is None or not self._resolving.active():
            self._resolving = self.host.reactor.callLater(delay, self._resolve_soon)

    def _resolve_soon(self) -> None:
        defer.Deferred.fromCoroutine(self._resolve()).addErrback(
            lambda f: self._log.failure("resolving PCA {partition}", f, partition=self.partition)
        )

    def is_stopped(self) -> bool:
        """Whether L{stop} was called (a method: it changes while we await)."""
        return self._stopped

    def stop(self) -> None:
        """Stop watching and drop what is not sent."""
        self._stopped = True
        if self._resolving is not None and self._resolving.active():
            self._resolving.cancel()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None

    def add(self, update: dict[str, Any]) -> None:
        """
        Queue one update; all updates of this reactor turn go together.

        Until the PCA first answers, nothing is queued: its first answer
        makes every system report its current state (L{_recovered}).
        """
        if self.endpoint is None or self.heartbeat is None or self.heartbeat.alive is None:
            return
        # Only the latest state of a system in this turn matters to the PCA
        # (a sim host passes three states per detector in one turn).
        self._batch.pop(update["system"], None)
        self._batch[update["system"]] = update
        if self._flush_call is None:
            self._flush_call = self.host.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Send the queued updates now, in notifications of at most L{BATCH} updates."""
        self._flush_call = None
        batch, self._batch = list(self._batch.values()), {}
        if not batch or self.endpoint is None:
            return
        client = self.host.node.connect(self.endpoint)
        for start in range(0, len(batch), BATCH):
            chunk = batch[start : start + BATCH]
            try:
                client.notify(
                    self.partition,
                    "states",
                    {"incarnation": self.host.incarnation, "updates": chunk},
                    sender=self.host.name,
                )
                self.sent += 1
            except RequestError as e:
                self._log.error(
                    "{count} state updates for partition {partition} not sent: {reason}",
                    count=len(chunk),
                    partition=self.partition,
                    reason=e.reason,
                )

    def _lost(self) -> None:
        self._log.warn(
            "PCA of partition {partition} lost (at {endpoint}): asking the registry where it is",
            partition=self.partition, endpoint=self.endpoint,
        )
        # It may have restarted elsewhere (a new port): ask the registry now,
        # and again every interval while it does not answer.
        if self._resolving is not None and self._resolving.active():
            self._resolving.cancel()
        self._resolving = self.host.reactor.callLater(0, self._resolve_soon)

    def _recovered(self) -> None:
        # First contact, or the PCA may have restarted or missed updates:
        # every system of the partition reports its state.
        for controller in self.host.controllers_of_partition(self.partition):
            controller.publish()


__all__ = ["BATCH", "ILinkHost", "PartitionLink"]
