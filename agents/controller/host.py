# -*- test-case-name: tests.test_host -*-
"""
A process hosting controllers behind one request endpoint.

The detector controller (one detector), the sim host (hundreds of
detectors) and the global-system controller (one or all global systems,
each with one state machine per partition) are all a L{ControllerHost}:
one ROUTER endpoint, one handler table per agent id, and one
L{agents.controller.link.PartitionLink} per partition that receives the
state updates and watches the partition's PCA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger, LogLevel

from agents._lifecycle import AsyncStartService
from agents.controller.actions import make_action
from agents.controller.link import PartitionLink
from agents.controller.system import COMMANDS, SystemController
from ecs import protocol
from ecs.config.logs import debugging
from ecs.config.settings import Settings, SystemType
from ecs.fsm.table import load_table
from ecs.net.authz import controller_rules, guarded
from ecs.net.registry import AgentInfo, IRegistry, RegistryError
from ecs.net.transport import INode, IServer, Request, RequestError, new_epoch

_LEVEL_NAMES = ("debug", "info", "warn", "error", "critical")

#: Hosts with more agents log each transition at debug level only.
VERBOSE_AGENTS = 20


class ControllerHost(AsyncStartService):
    """
    The service of C{ecs-detector}, C{ecs-simhost} and C{ecs-global}.

    @param bind: the endpoint to bind, or None to ask the registry (and
        fall back to a free port on C{settings.bind_host}).
    """

    _log = Logger()

    def __init__(
        self,
        name: str,
        node: INode,
        registry: IRegistry,
        settings: Settings,
        reactor: Any,
        bind: str | None = None,
    ) -> None:
        self.name = name
        self.node = node
        self.registry = registry
        self.settings = settings
        self.reactor = reactor
        self._bind = bind
        self.server: IServer | None = None
        self.address: str | None = None
        self._detectors: dict[str, tuple[SystemType, str | None, str | None]] = {}
        self._globals: dict[str, SystemType] = {}
        self.controllers: dict[tuple[str, str | None], SystemController] = {}
        self.kinds: dict[str, str] = {}
        self.links: dict[str, PartitionLink] = {}
        self.label = name
        self.expected_failures = (RegistryError, OSError)
        #: Changes with every start of the process: a PCA that sees a new
        #: incarnation knows the sequence numbers started again.
        self.incarnation = new_epoch()

    def add_detector(
        self, detector: str, system_type: SystemType, start_state: str | None = None,
        start_tag: str | None = None,
    ) -> None:
        """Host detector C{detector} (before the service starts)."""
        self._detectors[detector] = (system_type, start_state, start_tag)
        self.kinds[detector] = "detector"

    def add_global(self, system: str, system_type: SystemType) -> None:
        """Host global system C{system} (before the service starts)."""
        self._globals[system] = system_type
        self.kinds[system] = "global"

    def controllers_of_partition(self, partition: str) -> list[SystemController]:
        """Every controller whose updates go to C{partition}."""
        return [c for (_, p), c in self.controllers.items() if c.partition == partition]

    async def _start(self) -> None:
        registry_start = getattr(self.registry, "start", None)
        if registry_start is not None:
            registry_start()
        bind = self._bind
        if bind is None:
            # Agents served here share one endpoint: the registry must name
            # the same one for all of them, or none.
            wanted = {
                agent_id: await self.registry.bind_address(kind, agent_id)
                for agent_id, kind in self.kinds.items()
            }
            named = {address for address in wanted.values() if address is not None}
            if len(named) > 1:
                raise OSError(
                    "the registry names different endpoints for agents served by one process: "
                    + ", ".join(f"{a} at {e}" for a, e in sorted(wanted.items()) if e)
                )
            bind = named.pop() if named else None
        if bind is None:
            bind = f"tcp://{self.settings.bind_host}:*"
        try:
            self.server = self.node.serve(bind)
        except OSError as e:
            raise OSError(f"{e} (is another {', '.join(self.kinds)} already running?)") from None
        self.address = self.server.address
        # In bulk: a sim host's thousands of detectors ask once, not once each.
        owners = await self.registry.partitions_of(list(self._detectors)) if self._detectors else {}
        for detector, (system_type, start_state, start_tag) in self._detectors.items():
            self._create(detector, system_type, owners.get(detector), start_state, start_tag)
        partitions = await self.registry.partitions() if self._globals else []
        for system, system_type in self._globals.items():
            for partition in partitions:
                self._create(system, system_type, partition, None, None)
        for agent_id in self.kinds:
            # Each command checked against the key that sent it (ecs.net.authz).
            self.server.register(agent_id, self._guarded_handlers(agent_id))
        # Registered only once they answer: a PCA asks for their status as
        # soon as it learns where they are.
        refused = await self.registry.register_many(
            [AgentInfo(agent_id, kind, self.address) for agent_id, kind in self.kinds.items()]
        )
        if refused:
            raise RegistryError(
                "already_running",
                "; ".join(reason for _, reason in sorted(refused.items())[:5])
                + (f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""),
            )
        for link in list(self.links.values()):
            await link.start()
        for controller in self.controllers.values():
            if controller.partition is None:
                controller.publish()
        self._log.info(
            "{name} serving {count} agent(s) at {address}",
            name=self.name,
            count=len(self.kinds),
            address=self.address,
        )

    def _create(
        self,
        system: str,
        system_type: SystemType,
        partition: str | None,
        start_state: str | None,
        start_tag: str | None,
    ) -> SystemController:
        table = load_table(system_type.fsm_path)

        def log_line(level: str, text: str) -> None:
            log_level = LogLevel.levelWithName(level) if level in _LEVEL_NAMES else LogLevel.info
            self._log.emit(log_level, "{system}: {text}", system=system, text=text)

        action = make_action(
            system_type.action.kind, system_type.action.params, system, self.reactor, log_line
        )
        if partition is not None and partition not in self.links:
            self.links[partition] = PartitionLink(self, partition)
        controller = SystemController(
            system,
            table,
            action,
            self._emit,
            partition,
            start_state,
            start_tag,
            # A sim host's thousands of transitions would drown its log (and
            # cost half its time): there they are debug lines.
            verbose=len(self.kinds) <= VERBOSE_AGENTS,
        )
        self.controllers[(system, partition if system in self._globals else None)] = controller
        return controller

    def _emit(self, update: dict[str, Any]) -> None:
        partition = update.get("partition")
        link = self.links.get(partition) if partition else None
        if link is not None:
            link.add(update)

    def _controller(self, agent_id: str, body: dict[str, Any]) -> SystemController:
        if self.kinds[agent_id] == "detector":
            return self.controllers[(agent_id, None)]
        partition = body.get("partition")
        if not isinstance(partition, str):
            raise RequestError(
                protocol.BAD_REQUEST, f"global system {agent_id} needs 'partition' in the request"
            )
        controller = self.controllers.get((agent_id, partition))
        if controller is None:
            known = sorted(p for (s, p) in self.controllers if s == agent_id and p)
            raise RequestError(
                "unknown_partition",
                f"{agent_id} does not serve partition {partition!r} (serves: {', '.join(known) or 'none'})",
            )
        return controller

    def _guarded_handlers(self, agent_id: str) -> dict[str, Callable[[Request], Any]]:
        """L{_handlers}, each accepted only from the keys L{controller_rules} names."""

        def partition_of(request: Request) -> str | None:
            if self.kinds[agent_id] == "detector":
                return self.controllers[(agent_id, None)].partition
            partition = request.body.get("partition")
            return partition if isinstance(partition, str) else None

        rules = controller_rules(tuple(COMMANDS), partition_of)
        return guarded(f"{self.kinds[agent_id]} {agent_id}", self._handlers(agent_id), rules)

    def _handlers(self, agent_id: str) -> dict[str, Callable[[Request], Any]]:
        handlers = {command: self._command_handler(agent_id, command) for command in COMMANDS}
        handlers["status"] = lambda r: self._status(agent_id, r)
        handlers["inject"] = lambda r: self._inject(agent_id, r)
        if self.kinds[agent_id] == "global":
            handlers["add_partition"] = lambda r: self._add_partition(agent_id, r)
            handlers["remove_partition"] = lambda r: self._remove_partition(agent_id, r)
        else:
            handlers["assign"] = lambda r: self._assign(agent_id, r)
        return handlers

    @staticmethod
    def _partition_arg(request: Request, optional: bool = False) -> str | None:
        partition = request.body.get("partition")
        if partition is None and optional:
            return None
        if not isinstance(partition, str) or not partition:
            raise RequestError(protocol.BAD_REQUEST, "'partition' must be a partition id")
        return partition

    async def _add_partition(self, agent_id: str, request: Request) -> dict[str, Any]:
        """A global system starts serving a new partition (the ECA created it)."""
        partition = self._partition_arg(request)
        assert partition is not None
        if (agent_id, partition) not in self.controllers:
            controller = self._create(agent_id, self._globals[agent_id], partition, None, None)
            link = self.links[partition]
            if link.heartbeat is None:
                await link.start()
            elif link.heartbeat.alive:
                controller.publish()
        return self.controllers[(agent_id, partition)].reply()

    def _remove_partition(self, agent_id: str, request: Request) -> dict[str, Any]:
        """A global system stops serving a deleted partition."""
        partition = self._partition_arg(request)
        controller = self.controllers.pop((agent_id, partition), None)
        if controller is not None:
            controller.stop()
        if partition is not None and not self.controllers_of_partition(partition):
            link = self.links.pop(partition, None)
            if link is not None:
                link.stop()
        return {"removed": controller is not None}

    async def _assign(self, agent_id: str, request: Request) -> dict[str, Any]:
        """A detector now reports to another partition (or none): the ECA moved it."""
        partition = self._partition_arg(request, optional=True)
        controller = self.controllers[(agent_id, None)]
        old = controller.partition
        controller.partition = partition
        if old is not None and old != partition and not self.controllers_of_partition(old):
            link = self.links.pop(old, None)
            if link is not None:
                link.stop()
        if partition is not None:
            link = self.links.get(partition)
            if link is None:
                link = self.links[partition] = PartitionLink(self, partition)
                await link.start()
            if link.heartbeat is not None and link.heartbeat.alive:
                controller.publish()
        self._log.info("{detector} now belongs to {partition}", detector=agent_id, partition=partition)
        return controller.reply()

    def _command_handler(self, agent_id: str, command: str) -> Callable[[Request], Any]:
        def handle(request: Request) -> defer.Deferred[dict[str, Any]]:
            controller = self._controller(agent_id, request.body)
            if debugging():
                self._log.debug("{system}: {command} from {sender}", system=agent_id, command=command,
                                sender=request.sender)
            reply = defer.maybeDeferred(controller.command, command, request.body.get("config"))
            return reply.addCallback(lambda status: {**status, "incarnation": self.incarnation})

        return handle

    def _status(self, agent_id: str, request: Request) -> dict[str, Any]:
        if self.kinds[agent_id] == "global" and "partition" not in request.body:
            return {
                "system": agent_id,
                "partitions": {
                    p: c.reply()
                    for (s, p), c in self.controllers.items()
                    if s == agent_id
                },
            }
        return {**self._controller(agent_id, request.body).reply(), "incarnation": self.incarnation}

    async def _inject(self, agent_id: str, request: Request) -> dict[str, Any]:
        what = request.body.get("what")
        if what == "detector_error":
            return await self._detector_alarm(agent_id, request.body.get("detector"))
        if what not in ("error", "resolved"):
            raise RequestError(
                protocol.BAD_REQUEST,
                f"inject needs 'what': error, resolved or detector_error, got {what!r}",
            )
        targets = [c for (s, _), c in self.controllers.items() if s == agent_id]
        if "partition" in request.body:
            targets = [self._controller(agent_id, request.body)]
        results = {}
        for controller in targets:
            key = controller.partition if self.kinds[agent_id] == "global" else agent_id
            try:
                results[key] = controller.inject(what)["state"]
            except RequestError as e:
                results[key] = f"refused: {e.reason}"
        self._log.info("{system}: injected {what}: {results}", system=agent_id, what=what, results=results)
        return {"system": agent_id, "results": results}

    async def _detector_alarm(self, agent_id: str, detector: object) -> dict[str, Any]:
        if not isinstance(detector, str) or not detector:
            raise RequestError(protocol.BAD_REQUEST, "detector_error needs 'detector': a detector id")
        partition = await self.registry.partition_of(detector)
        if partition is None:
            raise RequestError(
                protocol.NOT_ALLOWED, f"detector {detector} is not assigned to any partition"
            )
        endpoint = await self.registry.endpoint_of("pca", partition)
        if endpoint is None:
            raise RequestError(
                protocol.UNKNOWN_SYSTEM, f"partition {partition} has no known PCA endpoint"
            )
        self._log.warn(
            "{system}: alarm for detector {detector}, sent to partition {partition}",
            system=agent_id,
            detector=detector,
            partition=partition,
        )
        reply = await self.node.connect(endpoint).request(
            partition,
            "alarm",
            {"source": agent_id, "detector": detector, "message": "detectorError"},
            sender=agent_id,
        )
        return {"partition": partition, "reply": reply}

    def stopService(self) -> defer.Deferred[None]:
        """Stop actions and heartbeats, unregister, close the sockets."""
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted leaves MultiService.stopService unannotated
        for controller in self.controllers.values():
            controller.stop()
        for link in self.links.values():
            link.stop()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        # Aborted scripts are being killed: wait until their processes are gone.
        for controller in self.controllers.values():
            when_idle = getattr(controller.action, "when_idle", None)
            if when_idle is not None:
                await when_idle()
        if self.server is not None:
            for agent_id, kind in self.kinds.items():
                try:
                    await self.registry.unregister(kind, agent_id)
                except Exception as e:
                    self._log.warn("unregister {agent} failed: {error}", agent=agent_id, error=e)
        registry_stop = getattr(self.registry, "stop", None)
        if registry_stop is not None:
            registry_stop()
        await self.node.close()


def controller_host(
    composition: Any, name: str, bind: str | None, identity: str | None = None
) -> ControllerHost:
    """
    The controller service of a plugin's L{agents._tap.Composition}, with
    its node (connecting with the keys of C{identity}, default: its name's).
    """
    from twisted.internet import reactor

    node = composition.node(name, identity)
    return ControllerHost(name, node, composition.registry, composition.settings, reactor, bind)
