# -*- test-case-name: tests.test_eca -*-
"""
L{Partitions}: the partitions the ECA follows, one L{Partition} each (a
L{PartitionLink} to its PCA and a L{PartitionPicture} of what it
publishes), and what their changes set off: live events, operator log
lines, run records (L{IRunBook}), the metrics, and the inventory's
pending tells (L{IInventoryEvents}, wired after construction: the
inventory is built from the partitions, so this is a back edge), the
exclusions each PCA must be told (L{IExclusionEvents}, the same way), the
recovery rules (L{IRecoveryEvents}, the same way), and the
alarm conditions the records show (L{IAlarms}: a system in Error or not
answering, the PCA gone, a DCS alarm the PCA logged).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.alarms import IAlarms
from agents.eca.interfaces import (
    IEventSource,
    IExclusionEvents,
    IInventoryEvents,
    ILogBook,
    IPartitionObserver,
    IRecoveryEvents,
    IRunBook,
)
from agents.eca.link import PartitionLink
from agents.eca.metrics import EcaMetrics, PartitionSample
from agents.eca.picture import (
    Condition,
    Effect,
    Emit,
    PartitionPicture,
    PartitionSeen,
    RunEnded,
    RunStarted,
    StageDone,
    SystemSeen,
)
from agents.eca.runs import RunDetails, when
from ecs.config.settings import Settings
from ecs.control import ControlError
from ecs.fsm.sequence import Sequence
from ecs.net.registry import AgentInfo
from ecs.net.transport import INode

OPERATOR_COMMANDS = ("configure", "start", "stop", "abort", "reset")

#: How the PCA logs a DCS alarm for one of its detectors
#: (L{agents.pca.sequencer.Sequencer.alarm}: "alarm from SOURCE for DETECTOR: MESSAGE").
DCS_ALARM_LINE = re.compile(r"alarm from (?P<source>\S+) for (?P<detector>\S+): (?P<message>.*)", re.DOTALL)


def alarm_action(kind: str, source: str, partition: str) -> str:
    """What clears an alarm the records show (see L{agents.eca.picture.Condition})."""
    if kind in ("system_error", "dcs_alarm"):
        return f"reset {source}, then Configure"
    if kind == "system_unreachable":
        return f"check that the controller of {source} runs (agents page); once it answers, Configure"
    return f"check that the PCA of {partition} runs (agents page, pca:{partition}); the ECA reconnects by itself"


@implementer(IPartitionObserver)
class Partition:
    """One followed partition: its link, its picture, and what its runs need to know."""

    _log = Logger()

    def __init__(self, partition_id: str, owner: Partitions) -> None:
        self.id = partition_id
        self._owner = owner
        self.picture = PartitionPicture(partition_id, owner.sequence)
        self.link = PartitionLink(partition_id, owner.node, owner.clock, owner.settings, self)
        #: The configurations of the last configure the PCA accepted (for run records).
        self.sent: dict[str, dict[str, Any]] = {}
        self.last_operator: str | None = None
        self.last_command: str | None = None
        #: What the last start sent said of its run (type, comment, crew, conditions), until the run opens.
        self.next_run: RunDetails | None = None
        self.losses = 0
        #: The heartbeat losses when the current run started (a run that saw one more was interrupted).
        self.losses_at_start = 0
        #: The PCA left the registry (its next registration is a restart).
        self.pca_away = False

    # -- reading --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the PCA answers."""
        return self.picture.connected

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """The mirrored records (partition and systems)."""
        return self.picture.records

    def summary(self) -> dict[str, Any]:
        """See L{PartitionPicture.summary}, with the control holder."""
        return self.picture.summary(self._owner.holder(self.id))

    def details(self) -> dict[str, Any]:
        """
        See L{PartitionPicture.details}, with the control holder, and each
        system's C{config_version}: the version of its configuration that
        this ECA sent (when the system reports that configuration).
        """
        details = self.picture.details(self._owner.holder(self.id))
        details["systems"] = [self.with_version(system["id"], system) for system in details.get("systems", [])]
        return details

    def with_version(self, system: str, record: dict[str, Any]) -> dict[str, Any]:
        """C{record} with C{config_version} when it runs the configuration sent to it last."""
        sent = self.sent.get(system)
        if sent is None or record.get("tag") is None or sent.get("config_id") != record.get("tag"):
            return record
        return {**record, "config_version": sent.get("version")}

    # -- talking to the PCA -----------------------------------------------------------

    def command(self, command: str, body: dict[str, Any], operator: str) -> defer.Deferred[dict[str, Any]]:
        """Send a command to the PCA (RequestError when refused or unreachable)."""
        if command in OPERATOR_COMMANDS and self.link.endpoint is not None:
            # What ends a run (stop, abort) is judged from the operators'
            # commands, not from the ECA's own status or lock requests.
            self.last_operator, self.last_command = operator, command
        return self.link.request(command, body)

    def detectors(self) -> defer.Deferred[set[str]]:
        """The detectors the PCA has now (asked, not mirrored)."""
        return defer.Deferred.fromCoroutine(self.link.detectors())

    # -- IPartitionObserver --------------------------------------------------------------

    def got_record(self, key: str, value: dict[str, Any] | None) -> None:
        """See L{IPartitionObserver.got_record}."""
        old_excluded = bool(self.records.get(key, {}).get("excluded"))
        self._owner.carry_out(self, self.picture.apply(key, value))
        if self._owner.recovery is not None:
            self._owner.recovery.got_record(self, key, value, old_excluded)

    def got_reset(self, present: frozenset[str]) -> None:
        """See L{IPartitionObserver.got_reset}."""
        self._owner.carry_out(self, self.picture.reset(present))
        if self._owner.exclusions is not None:
            self._owner.exclusions.partition_fresh(self.id)
        if self._owner.recovery is not None:
            self._owner.recovery.partition_fresh(self.id)

    def got_connected(self, connected: bool) -> None:
        """See L{IPartitionObserver.got_connected}."""
        self._owner.carry_out(self, self.picture.set_connected(connected))
        self._owner.runs.connection(self.id, connected)

    def got_lost(self) -> None:
        """See L{IPartitionObserver.got_lost}."""
        self.losses += 1
        self._owner.metrics.heartbeat_lost(self.id)
        self._owner.logbook.log("error", "ECA", f"PCA {self.id} does not answer", self.id)
        self._owner.runs.interrupted(self.id, f"the ECA lost the PCA at {when(self._owner.clock.seconds())}")

    def got_log(self, level: str, source: str, message: str, when: float | None) -> None:
        """See L{IPartitionObserver.got_log}."""
        self._owner.logbook.log(level, source, message, self.id, when)
        dcs = DCS_ALARM_LINE.fullmatch(message) if level == "error" else None
        if dcs is not None:
            detector = dcs["detector"]
            self._owner.alarms.condition(
                "dcs_alarm",
                detector,
                self.id,
                True,
                f"{dcs['source']} alarm for {detector}: {dcs['message']}",
                alarm_action("dcs_alarm", detector, self.id),
            )

    def got_progress(self, body: dict[str, Any]) -> None:
        """See L{IPartitionObserver.got_progress}."""
        self._owner.carry_out(self, self.picture.progress_received(body, self._owner.clock.seconds()))


class Partitions:
    """The followed partitions; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        node: INode,
        clock: IReactorTime,
        settings: Settings,
        sequence: Sequence,
        events: IEventSource,
        logbook: ILogBook,
        runs: IRunBook,
        holder: Callable[[str], str | None],
        metrics: EcaMetrics,
        alarms: IAlarms,
    ) -> None:
        self.node = node
        self.clock = clock
        self.settings = settings
        self.sequence = sequence
        self.events = events
        self.logbook = logbook
        self.runs = runs
        self.holder = holder
        self.metrics = metrics
        self.alarms = alarms
        self._inventory: IInventoryEvents | None = None
        self.exclusions: IExclusionEvents | None = None
        #: The recovery rules (L{agents.eca.recovery.Recovery}), told of every record after its effects.
        self.recovery: IRecoveryEvents | None = None
        self._partitions: dict[str, Partition] = {}

    def wire(
        self, inventory: IInventoryEvents, exclusions: IExclusionEvents | None = None,
        recovery: IRecoveryEvents | None = None,
    ) -> None:
        """The back edges to the inventory, the exclusions and the recovery rules (see the module docstring)."""
        self._inventory = IInventoryEvents(inventory)
        self.exclusions = IExclusionEvents(exclusions) if exclusions is not None else None
        self.recovery = IRecoveryEvents(recovery) if recovery is not None else None

    # -- the set ---------------------------------------------------------------------

    def __contains__(self, partition_id: object) -> bool:
        return partition_id in self._partitions

    def __iter__(self) -> Iterator[Partition]:
        return iter(list(self._partitions.values()))

    def get(self, partition_id: str) -> Partition:
        """The partition, or C{ControlError("not_found")}."""
        partition = self._partitions.get(partition_id)
        if partition is None:
            raise ControlError("not_found", f"no partition {partition_id!r}")
        return partition

    def watch(self, partition_id: str, info: AgentInfo | None) -> Partition:
        """Follow a partition (its PCA registered with C{info}, or not yet)."""
        partition = Partition(partition_id, self)
        self._partitions[partition_id] = partition
        if info is not None:
            partition.link.pca_changed(info)
        return partition

    def unwatch(self, partition_id: str) -> None:
        """Stop following a deleted partition."""
        partition = self._partitions.pop(partition_id, None)
        if partition is not None:
            partition.link.stop()
            self.alarms.partition_gone(partition_id)
            self.runs.forget(partition_id)

    def pca_changed(self, partition_id: str, info: AgentInfo | None) -> None:
        """The registry says the PCA of C{partition_id} registered again or went away."""
        partition = self._partitions.get(partition_id)
        if partition is None:
            return
        link = partition.link
        now = when(self.clock.seconds())
        if info is None:
            if link.endpoint is not None:
                partition.pca_away = True
                self.runs.interrupted(partition_id, f"the PCA left the registry at {now}")
        elif (info.endpoint, info.publish) != (link.endpoint, link.publish) and (
            link.endpoint is not None or partition.pca_away
        ):
            # a new PCA: a run it finds recording goes on (RunBook)
            partition.pca_away = False
            self.runs.interrupted(partition_id, f"PCA restarted at {now}")
        link.pca_changed(info)

    def load(self) -> defer.Deferred[None]:
        """Read back what must survive an ECA restart (the open runs), before following the partitions."""
        return self.runs.load()

    def stop(self) -> None:
        """Stop following every partition (the ECA stops)."""
        for partition in self._partitions.values():
            partition.link.stop()
        self.runs.stop()

    # -- what interfaces show --------------------------------------------------------------

    def summaries(self) -> list[dict[str, Any]]:
        """Every partition's summary."""
        return [partition.summary() for partition in self._partitions.values()]

    def details(self, partition_id: str) -> dict[str, Any]:
        """One partition's details."""
        return self.get(partition_id).details()

    def samples(self) -> list[PartitionSample]:
        """The partitions as the metrics' gauges see them."""
        return [
            PartitionSample(
                partition=p.id,
                state=str(p.picture.state()),
                connected=p.connected,
                systems=dict(p.picture.system_states()),
                connected_systems=p.picture.connected_systems(),
            )
            for p in self._partitions.values()
        ]

    # -- effects ---------------------------------------------------------------------------

    def carry_out(self, partition: Partition, effects: list[Effect]) -> None:
        """Do what a change of C{partition}'s picture calls for (in order)."""
        for effect in effects:
            if isinstance(effect, Emit):
                data = effect.data
                key, value = data.get("key"), data.get("value")
                if effect.type == "state" and isinstance(key, str) and key.startswith("system/") and value:
                    data = {**data, "value": partition.with_version(key[len("system/"):], value)}
                self.events.emit(effect.type, data, partition.id)
            elif isinstance(effect, RunStarted):
                d = defer.Deferred.fromCoroutine(self._run_started(partition, effect.tag, effect.initial))
                d.addErrback(lambda f: self._log.failure("run start", f))
            elif isinstance(effect, RunEnded):
                d = defer.Deferred.fromCoroutine(
                    self._run_reconciled(partition) if effect.initial else self._run_ended(partition)
                )
                d.addErrback(lambda f: self._log.failure("run end", f))
            elif isinstance(effect, PartitionSeen):
                if self._inventory is not None:
                    self._inventory.partition_seen(partition.id)
                if self.exclusions is not None:
                    self.exclusions.partition_seen(partition.id)
            elif isinstance(effect, SystemSeen):
                self.runs.progress(partition.id)
                if self._inventory is not None:
                    self._inventory.system_seen(partition.id, effect.system)
            elif isinstance(effect, StageDone):
                self.metrics.stage_done(partition.id, effect.stage, effect.seconds)
            elif isinstance(effect, Condition):
                action = alarm_action(effect.kind, effect.source, partition.id) if effect.active else ""
                self.alarms.condition(effect.kind, effect.source, partition.id, effect.active, effect.text, action)

    async def _run_started(self, partition: Partition, tag: str | None, initial: bool) -> None:
        partition.losses_at_start = partition.losses
        details, partition.next_run = partition.next_run, None
        await self.runs.started(
            partition.id, tag, partition.sent, partition.last_operator or "unknown", initial, details
        )

    async def _run_reconciled(self, partition: Partition) -> None:
        await self.runs.not_recording(partition.id)

    async def _run_ended(self, partition: Partition) -> None:
        interrupted = partition.losses > partition.losses_at_start
        await self.runs.ended(partition.id, partition.last_command, interrupted)
