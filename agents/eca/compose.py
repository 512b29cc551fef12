# -*- test-case-name: tests.test_eca -*-
"""
L{build_eca}: the ECA's collaborators, built from configuration and the
services they need, and wired in one readable place (the only one that
sees them all).  L{Eca} is what it returns: the L{ControlCenter} for the
interfaces, and what L{agents.eca.service} needs to start and stop it.

Constructor injection everywhere the graph is acyclic; C{wire()} or an
observer list only for the two back edges, both because a collaborator is
built from another one's output:

  1. the registry tells the partitions and the supervisor about
     (un)registrations (L{RegistryObservers}): they are built from its
     entries;
  2. the partitions tell the inventory when a partition or a system is
     seen again (L{Partitions.wire}): the inventory is built from the
     partitions.

(The sim hosts' presence also needs the supervisor's placements,
L{AgentPresence.wire}: the supervisor is built with that presence check.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from agents.eca.accounts import Accounts, IPasswords
from agents.eca.agents import AgentActions, AgentPresence, agent_partition
from agents.eca.alarms import Alarms, agent_conditions
from agents.eca.audit import Audit
from agents.eca.center import ControlCenter
from agents.eca.commands import Commands
from agents.eca.configs import ConfigLibrary
from agents.eca.elog import ELog
from agents.eca.events import EventLog
from agents.eca.exclusions import Exclusions
from agents.eca.inject import FaultInjector
from agents.eca.inventory import Inventory
from agents.eca.logbook import LogBook
from agents.eca.metrics import EcaMetrics
from agents.eca.partitions import Partitions
from agents.eca.records import Records
from agents.eca.recovery import WHO as RECOVERY_USER
from agents.eca.recovery import Recovery
from agents.eca.registry import RegistryObservers, StoreLookups
from agents.eca.reload import Reloader
from agents.eca.run_sequences import RunSequences
from agents.eca.runs import RunBook
from agents.eca.scopes import ControlScopes
from agents.eca.supervisor.supervisor import Supervisor
from agents.eca.unassigned import Unassigned
from ecs.config.run_sequences import RunSequence
from ecs.config.settings import Settings, Subsystems
from ecs.fsm.recovery import RecoveryRules
from ecs.fsm.reload import CoordinationFiles
from ecs.fsm.sequence import Sequence
from ecs.fsm.table import StateTable
from ecs.launch import ILauncher
from ecs.net.remote_registry import REGISTRY, RegistryService
from ecs.net.transport import INode
from ecs.store import Store

HOUSEKEEPING = 10.0
"""Seconds between two rounds of housekeeping (expired control, old log lines)."""


class RestartCounter:
    """
    Counts the supervisor's restarts for the metrics, from the C{agent}
    descriptions it publishes (C{supervision.restarts} grows by one per
    restart; it has no restart hook of its own).
    """

    def __init__(self, metrics: EcaMetrics) -> None:
        self._metrics = metrics
        self._seen: dict[str, int] = {}

    def changed(self, data: Mapping[str, Any]) -> None:
        """An agent's description changed."""
        agent = str(data.get("agent"))
        restarts = (data.get("supervision") or {}).get("restarts")
        if not isinstance(restarts, int):
            return
        before = self._seen.get(agent, restarts)
        for _ in range(max(0, restarts - before)):
            self._metrics.agent_restarted(agent)
        self._seen[agent] = restarts


@attrs.define
class Eca:
    """The built ECA: the facade, and what starting and stopping it needs."""

    _log = Logger()

    center: ControlCenter
    store: Store
    node: INode
    settings: Settings
    sequence: Sequence
    events: EventLog
    logbook: LogBook
    scopes: ControlScopes
    partitions: Partitions
    inventory: Inventory
    unassigned: Unassigned
    registry: RegistryService
    supervisor: Supervisor | None
    metrics: EcaMetrics
    log_retention: float
    clock: IReactorTime
    alarms: Alarms
    run_sequences: RunSequences
    address: str | None = None

    async def start(self) -> None:
        """Serve the registry, follow every partition, read who holds control."""
        await self.store.set_global_systems(self.sequence.global_systems())
        # The active alarms first: the partitions' first pictures clear those that are over.
        await self.alarms.load()
        server = self.node.serve(self.settings.registry_address)
        self.address = server.address
        server.register(REGISTRY, self.registry.handlers())
        # The open runs, before the partitions' first records reconcile them.
        await self.partitions.load()
        for row in await self.store.partitions():
            entry = self.registry.entries.get(("pca", row.id))
            self.partitions.watch(row.id, entry.info if entry is not None else None)
        # Management operations a dead ECA left open hold their locks before anyone can ask.
        await self.inventory.recover()
        await self.scopes.load()
        self._log.info("ECA registry at {address}", address=self.address)

    async def housekeeping(self) -> None:
        """Release control after inactivity; forget log lines older than the retention and expired tokens."""
        await self.scopes.expire()
        await self.store.prune_logs(self.clock.seconds() - self.log_retention)
        await self.store.expire_tokens()  # expired ones are refused anyway: this only tidies

    async def stop(self) -> None:
        """Stop following, store the last log lines, close the sockets."""
        self.run_sequences.stop()
        self.partitions.stop()
        await self.logbook.flush()
        await self.node.close()


def build_eca(
    store: Store,
    node: INode,
    clock: IReactorTime,
    settings: Settings,
    subsystems: Subsystems,
    sequence: Sequence,
    passwords: IPasswords,
    *,
    launchers: Mapping[str, ILauncher] | None = None,
    control_timeout: float = 1200.0,
    log_retention: float = 30 * 86400.0,
    metrics: EcaMetrics | None = None,
    supervision: Mapping[str, Any] | None = None,
    tables: Mapping[str, StateTable] | None = None,
    recovery_rules: RecoveryRules | None = None,
    run_sequences: Mapping[str, RunSequence] | None = None,
    coordination_files: CoordinationFiles | None = None,
) -> Eca:
    """
    Build and wire the ECA's collaborators (see the module docstring).

    @param launchers: the supervisor's launchers by name; None: an ECA
        that supervises no agent (tests).
    @param supervision: more keyword arguments of L{Supervisor} (back-off...).
    @param tables: the state tables in force by file, as read at start-up
        (a reload reports those that changed).
    @param recovery_rules: the declared recovery rules (None: none, an alarm only).
    @param run_sequences: the declared run sequences (C{etc/sequences/}), by name.
    @param coordination_files: where the recovery rules and run sequences
        were read, to read them again at a reload (None: not read again).
    """
    metrics = metrics if metrics is not None else EcaMetrics()
    events = EventLog(clock=clock)
    logbook = LogBook(store, events, clock)
    audit = Audit(store)
    elog = ELog(store, events)  # the electronic logbook: automatic entries from the collaborators given it as notes
    scopes = ControlScopes(store, events, audit, clock, timeout=control_timeout, notes=elog)
    accounts = Accounts(
        store, clock, passwords, scopes, audit, single_session=settings.single_session,
        session_lifetime=settings.session_lifetime, token_lifetime=settings.token_lifetime,
    )
    alarms = Alarms(store, events, logbook, audit, clock, metrics, notes=elog)
    runs = RunBook(store, logbook, metrics, alarms, clock, notes=elog)
    observers = RegistryObservers()
    lookups = StoreLookups(store)
    registry = RegistryService(
        node, clock, lookups.partitions, lookups.detectors_of, lookups.detector, on_change=observers.changed
    )
    partitions = Partitions(node, clock, settings, sequence, events, logbook, runs, scopes.holder, metrics, alarms)
    supervisor: Supervisor | None = None
    recovery = Recovery(
        recovery_rules or RecoveryRules(), store, partitions, audit, logbook, alarms, clock, notes=elog,
        restart=lambda name: supervisor.start(name) if supervisor is not None else defer.succeed(None),
        note_run=runs.note,
    )
    if launchers is not None:
        presence = AgentPresence(registry.entries, sequence)
        restarts = RestartCounter(metrics)
        agent_alarms = agent_conditions(alarms)

        def agent_changed(data: dict[str, Any]) -> None:
            restarts.changed(data)
            agent_alarms(data)
            recovery.agent_changed(data)
            events.emit("agent", data, None)

        supervisor = Supervisor(
            store,
            launchers,
            clock,
            registered=presence.registered,
            on_change=agent_changed,
            log_event=lambda level, message: logbook.log(level, "ECA", message, None),
            partition_of=lambda name: agent_partition(name, partitions),
            **dict(supervision or {}),
        )
        presence.wire(supervisor)
    agents = AgentActions(supervisor, audit, logbook)
    inventory = Inventory(
        store, node, registry.entries, partitions, scopes, audit, logbook, agents, sequence, subsystems, notes=elog
    )
    commands = Commands(store, partitions, scopes, audit, clock, metrics, runs, settings.run_types)
    recovery.wire(configure=lambda partition, tag: commands.reconfigure(partition, tag, RECOVERY_USER))
    exclusions = Exclusions(store, partitions, scopes, audit, logbook, notes=elog)
    sequences = RunSequences(
        run_sequences or {}, partitions, commands, scopes, events, alarms, clock, notes=elog, audit=audit
    )
    configs = ConfigLibrary(store, audit, subsystems, sequence)
    unassigned = Unassigned(node, registry.entries, store, events, settings)
    records = Records(store, subsystems, sequence)
    # subsystems and sequence are shared by all: a reload replaces them in place
    reloader = Reloader(
        subsystems, sequence, dict(tables or {}), partitions, store, audit, logbook, clock,
        coordination=coordination_files, recovery=recovery, run_sequences=sequences, run_types=settings.run_types,
    )

    observers.observe(
        lambda kind, agent, entry: (
            partitions.pca_changed(agent, entry.info if entry else None) if kind == "pca" else None
        )
    )  # back edge 1
    observers.observe(agents.registry_changed)  # back edge 1
    partitions.wire(inventory, exclusions, recovery)  # back edge 2
    metrics.observe_partitions(partitions.samples)

    center = ControlCenter(
        events, accounts, scopes, partitions, commands, inventory, configs, agents, unassigned, records, metrics,
        alarms, reloader, exclusions, FaultInjector(node, registry.entries, audit, logbook), elog,
        sequences, recovery,
    )
    return Eca(
        center,
        store,
        node,
        settings,
        sequence,
        events,
        logbook,
        scopes,
        partitions,
        inventory,
        unassigned,
        registry,
        supervisor,
        metrics,
        log_retention,
        clock,
        alarms,
        sequences,
    )
