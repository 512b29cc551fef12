# -*- test-case-name: tests.test_remote_registry -*-
"""
The registry over the network: what agents use when the ECA runs.

L{RemoteRegistry} implements L{ecs.net.registry.IRegistry} with requests to the
ECA's one fixed endpoint (C{registry.address} in C{etc/ecs.yaml}), target
L{REGISTRY}.  It remembers what its agents registered and registers them
again whenever the ECA answers after a silence (an ECA restart), so running
partitions are not disturbed.

L{RegistryService} is the ECA's side: a table of live agents, answering
C{register}, C{unregister}, C{lookup}; the partition and detector questions
are answered from the ECA's database through the callables it is given.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ecs import protocol
from ecs.net.authz import guarded, registry_rules
from ecs.net.heartbeat import Heartbeat
from ecs.net.registry import AgentInfo, IRegistry, RegistryError
from ecs.net.transport import INode, Request, RequestError, new_epoch

REGISTRY = "registry"


def _info_body(info: AgentInfo) -> dict[str, Any]:
    return attrs.asdict(info)


@implementer(IRegistry)
class RemoteRegistry:
    """L{IRegistry} through the ECA."""

    _log = Logger()

    def __init__(self, node: INode, address: str, clock: Any, interval: float, timeout: float) -> None:
        self.client = node.connect(address)
        self.address = address
        self._registered: dict[tuple[str, str], AgentInfo] = {}
        self.heartbeat = Heartbeat(
            clock,
            interval,
            timeout,
            self._ping,
            lambda: self._log.warn("ECA registry at {address} lost", address=address),
            self._recovered,
            name=f"ECA registry at {address}",
            last_heard=lambda: self.client.last_received,
        )
        self._recoveries = 0
        self._epoch: str | None = None
        self._clock = clock
        self._waiting = False
        self._stopped = False

    def start(self) -> None:
        """Watch the ECA (and register again after it comes back)."""
        self.heartbeat.start()

    def stop(self) -> None:
        """Stop watching (and stop waiting for answers)."""
        self._stopped = True
        self.heartbeat.stop()

    def _ping(self, timeout: float) -> defer.Deferred[dict[str, Any]]:
        """A heartbeat that also tells whether the ECA restarted (its epoch)."""

        def check(reply: dict[str, Any]) -> dict[str, Any]:
            epoch = reply.get("epoch")
            if isinstance(epoch, str):
                if self._epoch is not None and epoch != self._epoch:
                    self._log.info("the ECA restarted: registering again")
                    self._register_all()
                self._epoch = epoch
            return reply

        return self.client.request(REGISTRY, "epoch", {}, timeout).addCallback(check)

    def _recovered(self) -> None:
        if self._waiting:
            self._waiting = False
            self._log.info("the ECA registry at {address} answers", address=self.address)
        self._recoveries += 1
        if self._recoveries == 1:
            return  # the first answer: registrations just happened
        self._register_all()

    def _register_all(self) -> None:
        for info in list(self._registered.values()):
            self._log.info("registering {kind} {id} again with the ECA", kind=info.kind, id=info.id)
            self._ask("register", _info_body(info)).addErrback(self._register_again_failed, info.id)

    def _register_again_failed(self, failure: Failure, id: str) -> None:
        self._log.error("re-registration of {id} failed: {error}", id=id, error=failure.getErrorMessage())

    def _ask(self, type: str, body: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """Ask the ECA; while it does not answer, ask again (saying so once)."""
        return defer.Deferred.fromCoroutine(self._ask_until_answered(type, body))

    async def _ask_until_answered(self, type: str, body: dict[str, Any]) -> dict[str, Any]:
        delay = 0.5
        while True:
            try:
                return await self.client.request(REGISTRY, type, body)
            except RequestError as error:
                if error.code not in (protocol.TIMEOUT, protocol.OVERLOADED):
                    raise RegistryError(error.code, f"ECA registry: {error.reason}") from error
                if not self._waiting:
                    self._waiting = True
                    self._log.warn(
                        "waiting for the ECA registry at {address} (start the ECA, or give "
                        "--inventory FILE for standalone use): {reason}",
                        address=self.address,
                        reason=error.reason,
                    )
            await task.deferLater(self._clock, delay, lambda: None)
            delay = min(delay * 2, 5.0)
            if self._stopped:
                raise RegistryError("closed", "stopped while waiting for the ECA registry")

    def register(self, info: AgentInfo) -> defer.Deferred[None]:
        """See L{IRegistry.register}."""
        self._registered[(info.kind, info.id)] = info
        return self._ask("register", _info_body(info)).addCallback(lambda _: None)

    def unregister(self, kind: str, agent_id: str) -> defer.Deferred[None]:
        """See L{IRegistry.unregister}."""
        self._registered.pop((kind, agent_id), None)
        return self._ask("unregister", {"kind": kind, "id": agent_id}).addCallback(lambda _: None)

    def bind_address(self, kind: str, agent_id: str) -> defer.Deferred[str | None]:
        """With the ECA, agents always bind a free port."""
        return defer.succeed(None)

    def endpoint_of(self, kind: str, agent_id: str) -> defer.Deferred[str | None]:
        """See L{IRegistry.endpoint_of}."""
        return self._ask("lookup", {"kind": kind, "id": agent_id}).addCallback(lambda r: r.get("endpoint"))

    def publisher_of(self, kind: str, agent_id: str) -> defer.Deferred[str | None]:
        """Where an agent publishes, None when unknown."""
        return self._ask("lookup", {"kind": kind, "id": agent_id}).addCallback(lambda r: r.get("publish"))

    def partitions(self) -> defer.Deferred[list[str]]:
        """See L{IRegistry.partitions}."""
        return self._ask("partitions", {}).addCallback(lambda r: list(r["partitions"]))

    def detectors_of(self, partition: str) -> defer.Deferred[list[str]]:
        """See L{IRegistry.detectors_of}."""
        return self._ask("partition", {"id": partition}).addCallback(lambda r: list(r["detectors"]))

    def partition_of(self, detector: str) -> defer.Deferred[str | None]:
        """See L{IRegistry.partition_of}."""
        return self._ask("detector", {"id": detector}).addCallback(lambda r: r.get("partition"))

    def detector_type(self, detector: str) -> defer.Deferred[str | None]:
        """See L{IRegistry.detector_type}."""
        return self._ask("detector", {"id": detector}).addCallback(lambda r: r.get("type"))

    def detector_type_now(self, detector: str) -> None:
        """Not known before the reactor runs: the type comes later (or from --type)."""
        return None


@attrs.define
class Entry:
    """One registered agent."""

    info: AgentInfo
    registered: float


class RegistryService:
    """
    The ECA's registry: live agents, and the inventory questions answered
    from the database.

    @param inventory: async callables C{partitions()}, C{detectors_of(p)},
        C{detector(d) -> {"type", "partition"} | None}.
    @param on_change: called with C{(kind, id, entry or None)} after every
        (un)registration, so the ECA can connect to a new PCA.
    """

    _log = Logger()

    def __init__(
        self,
        node: INode,
        clock: Any,
        partitions: Callable[[], Awaitable[list[str]]],
        detectors_of: Callable[[str], Awaitable[list[str]]],
        detector: Callable[[str], Awaitable[dict[str, Any] | None]],
        on_change: Callable[[str, str, Entry | None], None] = lambda k, i, e: None,
        alive_timeout: float = 1.0,
    ) -> None:
        self.node = node
        self.clock = clock
        self._partitions = partitions
        self._detectors_of = detectors_of
        self._detector = detector
        self._on_change = on_change
        self._alive_timeout = alive_timeout
        self.entries: dict[tuple[str, str], Entry] = {}
        #: Changes with every ECA start: agents that see a new one register again.
        self.epoch = new_epoch()

    def handlers(self) -> dict[str, Callable[[Request], Any]]:
        """
        The request handlers, to register under L{REGISTRY}, each checked
        against the key that sent it (L{ecs.net.authz.registry_rules}: an id
        is registered or unregistered only by its own key).
        """
        return guarded("ECA registry", {
            "epoch": lambda request: {"epoch": self.epoch},
            "register": self._register,
            "unregister": self._unregister,
            "lookup": self._lookup,
            "partitions": self._partitions_handler,
            "partition": self._partition_handler,
            "detector": self._detector_handler,
        }, registry_rules())

    @staticmethod
    def _text(body: dict[str, Any], key: str, optional: bool = False) -> Any:
        value = body.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or len(value) > 256:
            raise RequestError(protocol.BAD_REQUEST, f"'{key}' must be a non-empty string")
        return value

    async def _alive(self, entry: Entry) -> bool:
        if entry.info.endpoint is None:
            return False
        try:
            await self.node.connect(entry.info.endpoint).request(
                protocol.ENDPOINT_TARGET, "heartbeat", {}, timeout=self._alive_timeout
            )
        except RequestError:
            return False
        return True

    async def _register(self, request: Request) -> dict[str, Any]:
        body = request.body
        kind = self._text(body, "kind")
        agent_id = self._text(body, "id")
        pid = body.get("pid")
        info = AgentInfo(
            agent_id,
            kind,
            self._text(body, "endpoint", optional=True),
            self._text(body, "publish", optional=True),
            host=self._text(body, "host", optional=True) or "?",
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else -1,
            version=self._text(body, "version", optional=True) or "?",
        )
        old = self.entries.get((kind, agent_id))
        if (
            old is not None
            and (old.info.host, old.info.pid) != (info.host, info.pid)
            and old.info.endpoint != info.endpoint
            and await self._alive(old)
        ):
            raise RequestError(
                "already_running",
                f"{kind} {agent_id} is already running on {old.info.host} (pid {old.info.pid}) "
                f"at {old.info.endpoint}",
            )
        entry = Entry(info, self.clock.seconds())
        self.entries[(kind, agent_id)] = entry
        self._log.info(
            "registered {kind} {id} at {endpoint} ({host}, pid {pid})",
            kind=kind, id=agent_id, endpoint=info.endpoint, host=info.host, pid=info.pid,
        )
        self._on_change(kind, agent_id, entry)
        return {"registered": True}

    def _unregister(self, request: Request) -> dict[str, Any]:
        kind = self._text(request.body, "kind")
        agent_id = self._text(request.body, "id")
        if self.entries.pop((kind, agent_id), None) is not None:
            self._log.info(
                "unregistered {kind} {id} (by key {identity})",
                kind=kind, id=agent_id, identity=request.identity or request.sender,
            )
            self._on_change(kind, agent_id, None)
        return {}

    def _lookup(self, request: Request) -> dict[str, Any]:
        kind = self._text(request.body, "kind")
        agent_id = self._text(request.body, "id")
        entry = self.entries.get((kind, agent_id))
        if entry is None:
            return {"endpoint": None, "publish": None}
        return {"endpoint": entry.info.endpoint, "publish": entry.info.publish}

    async def _partitions_handler(self, request: Request) -> dict[str, Any]:
        return {"partitions": await self._partitions()}

    async def _partition_handler(self, request: Request) -> dict[str, Any]:
        partition = self._text(request.body, "id")
        return {"detectors": await self._detectors_of(partition)}

    async def _detector_handler(self, request: Request) -> dict[str, Any]:
        detector = self._text(request.body, "id")
        found = await self._detector(detector)
        return found or {"type": None, "partition": None}


def local_info(agent_id: str, kind: str, endpoint: str | None, publish: str | None = None) -> AgentInfo:
    """This process's registration."""
    return AgentInfo(agent_id, kind, endpoint, publish, host=socket.gethostname(), pid=os.getpid())
