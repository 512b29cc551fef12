# -*- test-case-name: tests.test_pca_e2e -*-
"""
The Partition Control Agent: C{twistd -n ecs-pca --id P}.

The service wires the L{agents.pca.sequencer.Sequencer} to the network:

- it serves the partition's commands on one endpoint (target: the
  partition id) and receives the systems' C{states} notifications there;
- it publishes every system's record, its own record, log lines and
  configure progress on a PUB socket, with a snapshot request for
  late joiners (L{ecs.net.pubsub.StateStore}, in pages);
- it watches every system endpoint with heartbeats: a lost endpoint makes
  its systems C{Connection Problem}; a recovered one is asked for the
  status of each system, which is folded in;
- it keeps the partition's tag and the configurations it gave in a small
  JSON file under the state directory, written off the reactor thread, so
  that after a restart the tag is back and the state is re-derived from
  what the live systems report.

Command bodies (see C{docs/protocol.md}): C{configure} C{{"tag": T}} or
C{{"configs": [ids or configuration objects]}}, with C{"auto": bool};
C{start}, C{stop}, C{abort}, C{lock}, C{unlock}, C{status}; C{reset}
C{{"system": S}}; C{alarm} C{{"detector": D, "source": S}};
C{add_detector} C{{"detector": D, "type"?: T, "endpoint"?: E}};
C{remove_detector} C{{"detector": D}}; C{snapshot} C{{"after"?: key,
"limit"?: n}}; C{reload} (read the subsystems and the sequence again);
C{exclude}, C{include} C{{"system": S}} (sent by the ECA, whose database
holds the exclusions); C{recovery} C{{"exclude_on_fault": [S...]}} (the ECA's
recovery rules: L{agents.pca.sequencer.Sequencer.arm_recovery}).

About 400 lines: the start-up, the published outputs and the command
handlers (validation of each request body) stay together; the liveness of
the systems (L{agents.pca.liveness}), the state file
(L{agents.pca.state_file}) and the twistd part (L{agents.pca.tap}) are
their own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger, LogLevel

from agents._lifecycle import AsyncStartService
from agents.pca.liveness import SystemsWatch
from agents.pca.partition import Partition, SystemView
from agents.pca.sequencer import Sequencer
from agents.pca.state_file import PartitionStateFile, Writer
from ecs import protocol
from ecs.config.settings import ConfigError, Settings, Subsystems
from ecs.config.sources import ConfigLookupError, IConfigSource, normalise_inline
from ecs.fsm.reload import Vocabulary, VocabularyFiles, changes, globals_unchanged, read_off_reactor, snapshot
from ecs.fsm.sequence import Sequence
from ecs.net.authz import guarded, pca_rules
from ecs.net.batch import RequestBatcher
from ecs.net.heartbeat import Heartbeat
from ecs.net.pubsub import StateStore
from ecs.net.registry import AgentInfo, IRegistry, RegistryError
from ecs.net.transport import INode, IPublisher, Request, RequestError

SNAPSHOT_PAGE = 2000
MAX_UPDATES = 10_000
_LEVELS = {"debug", "info", "warn", "error", "critical"}


def _body_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise RequestError(protocol.BAD_REQUEST, f"'{key}' must be a non-empty string")
    return value


class PartitionAgent(AsyncStartService):
    """The PCA of one partition."""

    _log = Logger()

    def __init__(
        self,
        partition_id: str,
        node: INode,
        registry: IRegistry,
        settings: Settings,
        subsystems: Subsystems,
        sequence: Sequence,
        configs: IConfigSource,
        reactor: Any,
        bind: str | None = None,
        state_file: Path | None = None,
        writer: Writer | None = None,
        vocabulary_files: VocabularyFiles | None = None,
    ) -> None:
        self.id = partition_id
        self.node = node
        self.registry = registry
        self.settings = settings
        self.subsystems = subsystems
        self.sequence = sequence
        #: Where C{reload} reads the subsystems and the sequence again: the
        #: files they were read from at start-up, unless told otherwise.
        self.vocabulary_files = vocabulary_files or VocabularyFiles(subsystems.source, sequence.source)
        self.config_source = configs
        self.reactor = reactor
        self._batcher = RequestBatcher(reactor)
        self._bind = bind
        self.state_file = state_file
        self._saved: PartitionStateFile | None = (
            PartitionStateFile(state_file, reactor, writer) if state_file is not None else None
        )
        self._writes: defer.Deferred[None] = defer.succeed(None)
        self._settle_timer: Any = None
        self.address: str | None = None
        self.publisher: IPublisher | None = None
        self.store: StateStore | None = None
        self.sequencer: Sequencer | None = None
        self.watch: SystemsWatch | None = None
        self._ticker: task.LoopingCall | None = None
        self.label = f"PCA {partition_id}"
        self.expected_failures = (RegistryError, OSError)

    @property
    def heartbeats(self) -> dict[str, Heartbeat]:
        """The heartbeat of each system endpoint (none before the start)."""
        return self.watch.heartbeats if self.watch is not None else {}

    # -- start and stop --------------------------------------------------

    async def _start(self) -> None:
        registry_start = getattr(self.registry, "start", None)
        if registry_start is not None:
            registry_start()
        bind = self._bind or await self.registry.bind_address("pca", self.id)
        host = self.settings.bind_host
        server = self.node.serve(bind or f"tcp://{host}:*")
        self.address = server.address
        self.publisher = self.node.publish(f"tcp://{host}:*")
        # A burst (1,000 systems changing in one turn) goes as one message per
        # turn: subscribers unpack it into the same numbered events.
        self.store = StateStore(self.publisher, prefix="state/", batch=True)
        views = await self._views()
        partition = Partition(self.id, self.sequence, views)
        if self._saved is not None:
            self._saved.restore(partition)
        self.sequencer = Sequencer(
            partition, self._send, self, self.reactor, self._persist, settled=False
        )
        for view in views:
            self.system_changed(view)
        self.sequencer._changed()
        # Each command checked against the key that sent it (ecs.net.authz).
        server.register(self.id, guarded(self.label, self._handlers(), pca_rules()))
        # Registered once it can answer: the ECA asks for a snapshot at once.
        await self.registry.register(
            AgentInfo(self.id, "pca", self.address, publish=self.publisher.address)
        )
        self.watch = SystemsWatch(
            self.label, self.node, self.registry, self.settings, self.reactor, self.sequencer, self._send,
            self._maybe_settled,
        )
        self.watch.start()
        # Judge the whole partition once every system answered, or once the
        # silent ones count as lost.
        self._settle_timer = self.reactor.callLater(
            self.settings.heartbeat_timeout + self.settings.heartbeat_interval, self._settle
        )
        self._maybe_settled()
        # Every publisher has tick() (PublisherCore), but IPublisher does not declare it yet.
        tick: Callable[[], None] = self.publisher.tick
        self._ticker = task.LoopingCall(tick)
        self._ticker.clock = self.reactor
        self._ticker.start(self.settings.heartbeat_interval, now=False)
        self._log.info(
            "PCA {id} serving at {address}, publishing at {publish}: {count} systems",
            id=self.id,
            address=self.address,
            publish=self.publisher.address,
            count=len(views),
        )

    async def _views(self) -> list[SystemView]:
        views = []
        for system in self.sequence.global_systems():
            system_type = self.subsystems.global_systems.get(system)
            views.append(
                SystemView(
                    system,
                    "global",
                    self.sequence.stage_of_system(system, False).index,
                    endpoint=await self.registry.endpoint_of("global", system),
                    timeout=system_type.command_timeout if system_type else self.settings.request_timeout,
                    type=system,
                )
            )
        detectors = await self.registry.detectors_of(self.id)
        # Where they are in one request (a sim host's thousands), not one each.
        found = await self.registry.locate("detector", detectors) if detectors else {}
        for detector in detectors:
            where = found.get(detector)
            views.append(await self._detector_view(detector, endpoint=where.endpoint if where else None))
        for view in views:
            if view.endpoint is None:
                self._log.error(
                    "{system}: no endpoint known (registry): shown as Connection Problem",
                    system=view.id,
                )
        return views

    async def _detector_view(
        self, detector: str, type_name: str | None = None, endpoint: str | None = None
    ) -> SystemView:
        type_name = type_name or await self.registry.detector_type(detector)
        system_type = self.subsystems.detector_types.get(type_name or "")
        if system_type is None:
            self._log.error(
                "detector {detector} has unknown type {type}: default command timeout",
                detector=detector,
                type=type_name,
            )
        sequence = self.sequencer.partition.sequence if self.sequencer is not None else self.sequence
        return SystemView(
            detector,
            "detector",
            sequence.stage_of_system(detector, True).index,
            endpoint=endpoint or await self.registry.endpoint_of("detector", detector),
            timeout=system_type.command_timeout if system_type else self.settings.request_timeout,
            type=type_name,
        )

    def _settle(self) -> None:
        self._settle_timer = None
        if self.sequencer is not None:
            self.sequencer.settle()

    def _maybe_settled(self) -> None:
        sequencer = self.sequencer
        if sequencer is None or sequencer.settled:
            return
        if all(v.seq >= 0 for v in sequencer.partition.systems.values()):
            if self._settle_timer is not None and self._settle_timer.active():
                self._settle_timer.cancel()
            self._settle()

    def stopService(self) -> defer.Deferred[None]:
        """Stop watching, flush the state file, close the sockets."""
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's Service.stopService is unannotated
        if self._settle_timer is not None and self._settle_timer.active():
            self._settle_timer.cancel()
        if self._saved is not None:
            self._writes = self._saved.close()
        if self.watch is not None:
            self.watch.stop()
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if self.sequencer is not None:
            self.sequencer.stop_timers()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._writes
        try:
            await self.registry.unregister("pca", self.id)
        except Exception as e:
            self._log.warn("unregister failed: {error}", error=e)
        registry_stop = getattr(self.registry, "stop", None)
        if registry_stop is not None:
            registry_stop()
        await self.node.close()

    # -- the systems -----------------------------------------------------

    def _send(self, view: SystemView, command: str, body: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        if view.endpoint is None:
            return defer.fail(
                RequestError(protocol.UNKNOWN_SYSTEM, f"{view.id} has no known endpoint")
            )
        if view.kind == "global":
            body = {**body, "partition": self.id}
        # The commands of one reactor turn to one endpoint (a sim host's
        # thousand detectors) go as a few batches, not a message each.
        return self._batcher.request(
            view.endpoint, self.node.connect(view.endpoint), view.id, command, body, view.timeout
        )

    # -- outputs of the sequencer ----------------------------------------

    def system_changed(self, view: SystemView) -> None:
        """Publish a system's record."""
        if self.store is not None:
            self.store.set(f"system/{view.id}", view.event())

    def partition_changed(self, record: dict[str, Any]) -> None:
        """Publish the partition's record."""
        if self.store is not None:
            self.store.set("partition", record)

    def _persist(self) -> None:
        """The sequencer changed what the state file holds: save it soon."""
        if self._saved is not None:
            self._saved.save_soon()

    def log(self, level: str, source: str, message: str) -> None:
        """Log for operators: the agent log and a published log event."""
        self._log.emit(
            LogLevel.levelWithName(level if level in _LEVELS else "info"),
            "{partition}: {text}",
            partition=self.id,
            text=message,  # not "message": legacy log observers give that key a meaning
            source=source,
        )
        if self.publisher is not None:
            self.publisher.publish(
                f"log/{self.id}",
                "log",
                {
                    "partition": self.id,
                    "level": level,
                    "source": source,
                    "time": self.reactor.seconds(),
                    "message": message,
                },
            )

    def progress(self, stage: str, ready: int, total: int) -> None:
        """Publish configure progress."""
        if self.publisher is not None:
            self.publisher.publish(
                f"progress/{self.id}",
                "progress",
                {"partition": self.id, "stage": stage, "ready": ready, "total": total},
            )

    # -- commands --------------------------------------------------------

    def _handlers(self) -> dict[str, Callable[[Request], Any]]:
        s = self.sequencer
        assert s is not None
        return {
            "configure": self._configure,
            "start": lambda r: s.start(),
            "stop": lambda r: s.stop(),
            "abort": lambda r: s.abort(),
            "lock": lambda r: s.lock(),
            "unlock": lambda r: s.unlock(),
            "status": lambda r: s.status(),
            "reset": lambda r: s.reset(_body_str(r.body, "system")),
            "exclude": lambda r: s.exclude(_body_str(r.body, "system")),
            "include": lambda r: s.include(_body_str(r.body, "system")),
            "recovery": lambda r: s.arm_recovery(r.body.get("exclude_on_fault")),
            "alarm": self._alarm,
            "add_detector": self._add_detector,
            "remove_detector": self._remove_detector,
            "snapshot": self._snapshot,
            "states": self._states,
            "reload": self._reload,
        }

    async def _configure(self, request: Request) -> dict[str, Any]:
        body = request.body
        auto = body.get("auto", False)
        if not isinstance(auto, bool):
            raise RequestError(protocol.BAD_REQUEST, "'auto' must be true or false")
        has_tag, has_configs = "tag" in body, "configs" in body
        if not has_tag and not has_configs:
            raise RequestError(
                protocol.BAD_REQUEST, "configure needs 'tag' (a name) or 'configs' (a list), or both"
            )
        try:
            tag = _body_str(body, "tag") if has_tag else None
            if has_configs:
                # With both, the configurations are used and the tag names them
                # (the ECA resolves tags from its database and sends both).
                items = body["configs"]
                if not isinstance(items, list) or not items:
                    raise RequestError(protocol.BAD_REQUEST, "'configs' must be a non-empty list")
                if all(isinstance(i, str) for i in items):
                    configs = await self.config_source.configs(items)
                else:
                    configs = normalise_inline(items)
            else:
                assert tag is not None
                configs = await self.config_source.tag(tag)
        except ConfigLookupError as e:
            raise RequestError(e.code, e.reason) from None
        assert self.sequencer is not None
        return self.sequencer.configure(configs, tag, auto)

    def _alarm(self, request: Request) -> defer.Deferred[dict[str, Any]]:
        assert self.sequencer is not None
        detector = _body_str(request.body, "detector")
        source = request.body.get("source") or request.sender
        message = request.body.get("message") or "alarm"
        return self.sequencer.alarm(detector, str(source), str(message))

    async def _add_detector(self, request: Request) -> dict[str, Any]:
        sequencer = self.sequencer
        assert sequencer is not None
        detector = _body_str(request.body, "detector")
        if detector in sequencer.partition.systems:
            raise RequestError(protocol.NOT_ALLOWED, f"{detector} is already in partition {self.id}")
        sequencer.check_membership_change()
        type_name = request.body.get("type")
        endpoint = request.body.get("endpoint")
        view = await self._detector_view(
            detector,
            type_name if isinstance(type_name, str) else None,
            endpoint if isinstance(endpoint, str) else None,
        )
        sequencer.check_membership_change()  # again: the lookups took time
        if detector in sequencer.partition.systems:
            raise RequestError(protocol.NOT_ALLOWED, f"{detector} is already in partition {self.id}")
        sequencer.add_system(view)
        self.log("info", self.id, f"detector {detector} added")
        if self.watch is not None:
            self.watch.follow(view)
        return sequencer.record()

    def _remove_detector(self, request: Request) -> dict[str, Any]:
        sequencer = self.sequencer
        assert sequencer is not None and self.store is not None
        detector = _body_str(request.body, "detector")
        view = sequencer.partition.systems.get(detector)
        if view is None or view.kind != "detector":
            raise RequestError(protocol.UNKNOWN_SYSTEM, f"{detector} is not a detector of partition {self.id}")
        sequencer.check_membership_change()
        sequencer.remove_system(detector)
        self.store.remove(f"system/{detector}")
        if self.watch is not None:
            self.watch.unfollow(view)
        self.log("info", self.id, f"detector {detector} removed")
        return sequencer.record()

    def _snapshot(self, request: Request) -> dict[str, Any]:
        assert self.store is not None
        after = request.body.get("after")
        limit = request.body.get("limit", SNAPSHOT_PAGE)
        if after is not None and not isinstance(after, str):
            raise RequestError(protocol.BAD_REQUEST, "'after' must be a key (string)")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= SNAPSHOT_PAGE:
            raise RequestError(protocol.BAD_REQUEST, f"'limit' must be 1..{SNAPSHOT_PAGE}")
        return self.store.snapshot(after, limit)

    def _states(self, request: Request) -> None:
        sequencer = self.sequencer
        assert sequencer is not None
        updates = request.body.get("updates")
        incarnation = request.body.get("incarnation")
        if not isinstance(updates, list) or len(updates) > MAX_UPDATES:
            raise RequestError(protocol.BAD_REQUEST, f"'updates' must be a list of at most {MAX_UPDATES}")
        if incarnation is not None and not isinstance(incarnation, str):
            raise RequestError(protocol.BAD_REQUEST, "'incarnation' must be a string")
        for update in updates:
            if not isinstance(update, dict) or not isinstance(update.get("system"), str):
                continue
            partition = update.get("partition")
            if partition is not None and partition != self.id:
                continue
            sequencer.update(update["system"], update, incarnation)

    async def _reload(self, request: Request) -> dict[str, Any]:
        """
        Read the subsystems and the sequence again (C{docs/protocol.md}):
        new types at once, a changed sequence now if Idle, else at the next
        configure from Idle.  An invalid file changes nothing.
        """
        sequencer = self.sequencer
        assert sequencer is not None
        current = sequencer.pending_sequence or sequencer.partition.sequence
        try:
            new = await read_off_reactor(self.reactor, self.vocabulary_files)
            globals_unchanged(current, new.sequence)
        except ConfigError as e:
            self.log("error", self.id, "reload refused, the old types and sequence stay: " + "; ".join(e.problems))
            raise RequestError(protocol.BAD_REQUEST, "\n".join(e.problems)) from None
        summary = changes(snapshot(self.subsystems, {}, current), Vocabulary(new.subsystems, {}, new.sequence))
        del summary["tables_changed"]  # the PCA runs no table: the ECA reports them
        self.subsystems.adopt(new.subsystems)
        in_force = sequencer.next_sequence(new.sequence) if summary["sequence_changed"] else "unchanged"
        self.log("info", self.id, f"reloaded {self.subsystems.source}: types added {summary['types_added'] or 'none'}, "
                                  f"removed {summary['types_removed'] or 'none'}; sequence {in_force}")
        return {"partition": self.id, "changes": summary, "sequence": in_force}
