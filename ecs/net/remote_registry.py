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

Bulk forms serve a process with many agents (a sim host's thousands of
controllers) in one request each: C{register_many} (the liveness of the
replaced registrations is checked once per old endpoint, not once per
agent), C{locate} (where many agents of one kind are, with their
incarnations) and C{partitions_of} (the partition of many detectors).

The module is longer than most (over 400 lines) on purpose: the agent's and
the ECA's ends of the registry protocol stay side by side, so each
request's shape is read with the handler that answers it.
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
from ecs.net.keys import split_endpoint
from ecs.net.registry import BULK, AgentInfo, IRegistry, Location, RegistryError
from ecs.net.transport import INode, Request, RequestError, new_epoch

REGISTRY = "registry"

#: How long an endpoint found silent counts as dead for registrations that
#: would replace an agent there (the rest of a bulk registration).
DEAD_REMEMBERED = 10.0

#: Bulk registrations of up to this many agents log a line per agent.
BULK_LOGGED = 20


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
        infos = list(self._registered.values())
        if not infos:
            return
        self._log.info(
            "registering {count} agent(s) again with the ECA ({first}...)", count=len(infos), first=infos[0].id
        )
        self._register_in_bulk(infos).addCallbacks(self._refused_again, self._register_again_failed)

    def _refused_again(self, refused: dict[str, str]) -> None:
        for agent_id, reason in sorted(refused.items()):
            self._log.error("re-registration of {id} refused: {reason}", id=agent_id, reason=reason)

    def _register_again_failed(self, failure: Failure) -> None:
        self._log.error("re-registration failed: {error}", error=failure.getErrorMessage())

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

    def register_many(self, infos: list[AgentInfo]) -> defer.Deferred[dict[str, str]]:
        """See L{IRegistry.register_many}: requests of at most L{BULK} agents."""
        for info in infos:
            self._registered[(info.kind, info.id)] = info
        return self._register_in_bulk(infos)

    def _register_in_bulk(self, infos: list[AgentInfo]) -> defer.Deferred[dict[str, str]]:
        async def run() -> dict[str, str]:
            refused: dict[str, str] = {}
            for start in range(0, len(infos), BULK):
                chunk = [_info_body(info) for info in infos[start : start + BULK]]
                reply = await self._ask("register_many", {"agents": chunk})
                refused.update(reply.get("refused") or {})
            return refused

        return defer.Deferred.fromCoroutine(run())

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

    def locate(self, kind: str, agent_ids: list[str]) -> defer.Deferred[dict[str, Location]]:
        """See L{IRegistry.locate}: requests of at most L{BULK} ids."""

        async def run() -> dict[str, Location]:
            found: dict[str, Location] = {}
            for start in range(0, len(agent_ids), BULK):
                reply = await self._ask("locate", {"kind": kind, "ids": agent_ids[start : start + BULK]})
                for agent_id, where in (reply.get("agents") or {}).items():
                    if isinstance(where, dict):
                        found[agent_id] = Location(
                            where.get("endpoint"), where.get("publish"), where.get("incarnation")
                        )
            return found

        return defer.Deferred.fromCoroutine(run())

    def partitions_of(self, detectors: list[str]) -> defer.Deferred[dict[str, str | None]]:
        """See L{IRegistry.partitions_of}: one request."""
        return self._ask("partitions_of", {"ids": detectors}).addCallback(
            lambda r: {d: r["partitions"].get(d) for d in detectors}
        )

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
        self._dead: dict[str, float] = {}
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
            "register_many": self._register_many,
            "unregister": self._unregister,
            "lookup": self._lookup,
            "locate": self._locate,
            "partitions_of": self._partitions_of,
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
        endpoint = entry.info.endpoint
        if endpoint is None:
            return False
        # A sim host registering thousands of agents in several requests
        # waits for its old endpoint's silence once, not once per request.
        dead_since = self._dead.get(endpoint)
        if dead_since is not None and self.clock.seconds() - dead_since < DEAD_REMEMBERED:
            return False
        try:
            await self.node.connect(endpoint).request(
                protocol.ENDPOINT_TARGET, "heartbeat", {}, timeout=self._alive_timeout
            )
        except RequestError:
            if len(self._dead) > 10_000:
                self._dead.clear()
            self._dead[endpoint] = self.clock.seconds()
            return False
        self._dead.pop(endpoint, None)
        return True

    @classmethod
    def _endpoint(cls, body: dict[str, Any], key: str) -> str | None:
        """An endpoint of a registration; a server key it names must be one (L{split_endpoint})."""
        value: str | None = cls._text(body, key, optional=True)
        if value is not None:
            try:
                split_endpoint(value)
            except ValueError as e:
                raise RequestError(protocol.BAD_REQUEST, f"'{key}': {e}") from None
        return value

    def _info(self, body: Any) -> AgentInfo:
        if not isinstance(body, dict):
            raise RequestError(protocol.BAD_REQUEST, "an agent's registration must be an object")
        pid = body.get("pid")
        return AgentInfo(
            self._text(body, "id"),
            self._text(body, "kind"),
            self._endpoint(body, "endpoint"),
            self._endpoint(body, "publish"),
            host=self._text(body, "host", optional=True) or "?",
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else -1,
            version=self._text(body, "version", optional=True) or "?",
            incarnation=self._text(body, "incarnation", optional=True) or "?",
        )

    def _replaces_other(self, info: AgentInfo) -> Entry | None:
        """The registration C{info} would replace if it is another process's, else None."""
        old = self.entries.get((info.kind, info.id))
        if old is None or old.info.endpoint == info.endpoint:
            return None
        if old.info.incarnation == info.incarnation and old.info.incarnation != "?":
            return None  # the same process, registering again
        if (old.info.host, old.info.pid) == (info.host, info.pid):
            return None
        return old

    async def _register(self, request: Request) -> dict[str, Any]:
        info = self._info(request.body)
        old = self._replaces_other(info)
        if old is not None and await self._alive(old):
            raise RequestError("already_running", self._running_reason(old))
        self._record(info)
        return {"registered": True}

    @staticmethod
    def _running_reason(old: Entry) -> str:
        return (
            f"{old.info.kind} {old.info.id} is already running on {old.info.host} (pid {old.info.pid}) "
            f"at {old.info.endpoint}"
        )

    def _record(self, info: AgentInfo, quiet: bool = False) -> None:
        entry = Entry(info, self.clock.seconds())
        self.entries[(info.kind, info.id)] = entry
        if not quiet:
            self._log.info(
                "registered {kind} {id} at {endpoint} ({host}, pid {pid})",
                kind=info.kind, id=info.id, endpoint=info.endpoint, host=info.host, pid=info.pid,
            )
        self._on_change(info.kind, info.id, entry)

    async def _register_many(self, request: Request) -> dict[str, Any]:
        """Many agents at once: each replaced endpoint's liveness is asked once, all at the same time."""
        agents = request.body.get("agents")
        if not isinstance(agents, list) or not agents or len(agents) > BULK:
            raise RequestError(protocol.BAD_REQUEST, f"'agents' must be a list of 1 to {BULK} registrations")
        infos = [self._info(body) for body in agents]
        replaced = {info.id: old for info in infos if (old := self._replaces_other(info)) is not None}
        olds = {old.info.endpoint: old for old in replaced.values()}
        answers = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self._alive(old)) for old in olds.values()]
        )
        alive = {endpoint for endpoint, up in zip(olds, answers, strict=True) if up}
        refused: dict[str, str] = {}
        # A few agents get a line each, as single registrations do; a sim
        # host's hundreds one line for the request.
        quiet = len(infos) > BULK_LOGGED
        for info in infos:
            old = replaced.get(info.id)
            if old is not None and old.info.endpoint in alive:
                refused[info.id] = self._running_reason(old)
                self._log.warn("registration of {kind} {id} refused: {reason}", kind=info.kind, id=info.id,
                               reason=refused[info.id])
            else:
                self._record(info, quiet=quiet)
        if quiet:
            first = infos[0]
            self._log.info(
                "registered {count} agents at {endpoint} ({host}, pid {pid}; {refused} refused)",
                count=len(infos) - len(refused), endpoint=first.endpoint, host=first.host, pid=first.pid,
                refused=len(refused),
            )
        return {"refused": refused}

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
            return {"endpoint": None, "publish": None, "incarnation": None}
        return {"endpoint": entry.info.endpoint, "publish": entry.info.publish, "incarnation": entry.info.incarnation}

    def _ids(self, body: dict[str, Any]) -> list[str]:
        ids = body.get("ids")
        if not isinstance(ids, list) or len(ids) > 100_000:
            raise RequestError(protocol.BAD_REQUEST, "'ids' must be a list of agent ids")
        for agent_id in ids:
            if not isinstance(agent_id, str) or not agent_id or len(agent_id) > 256:
                raise RequestError(protocol.BAD_REQUEST, f"'ids' must hold non-empty strings, got {agent_id!r}")
        return ids

    def _locate(self, request: Request) -> dict[str, Any]:
        kind = self._text(request.body, "kind")
        found = {}
        for agent_id in self._ids(request.body):
            entry = self.entries.get((kind, agent_id))
            if entry is not None:
                info = entry.info
                found[agent_id] = {"endpoint": info.endpoint, "publish": info.publish, "incarnation": info.incarnation}
        return {"agents": found}

    async def _partitions_of(self, request: Request) -> dict[str, Any]:
        """The partition of each detector asked for: one query per partition, not per detector."""
        wanted = set(self._ids(request.body))
        owner: dict[str, str | None] = dict.fromkeys(wanted)
        for partition in await self._partitions():
            for detector in await self._detectors_of(partition):
                if detector in wanted:
                    owner[detector] = partition
        return {"partitions": owner}

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
    """This process's registration (with this process's incarnation)."""
    return AgentInfo(agent_id, kind, endpoint, publish, host=socket.gethostname(), pid=os.getpid())
