# -*- test-case-name: tests.test_eca -*-
"""
L{ControlCenter}: the one object the web API, the GUI and the SSH shell
talk to (L{IControlCenter}).  It holds no state and decides nothing: each
method is one delegation to the collaborator that owns the concern
(L{agents.eca.compose.build_eca} wires them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from agents.eca.accounts import Accounts
from agents.eca.agents import AgentActions
from agents.eca.alarms import Alarms
from agents.eca.commands import Commands
from agents.eca.configs import ConfigLibrary
from agents.eca.elog import ELog
from agents.eca.events import EventLog
from agents.eca.exclusions import Exclusions
from agents.eca.inject import FaultInjector
from agents.eca.inventory import Inventory
from agents.eca.metrics import EcaMetrics
from agents.eca.partitions import Partitions
from agents.eca.records import Records
from agents.eca.recovery import Recovery
from agents.eca.reload import Reloader
from agents.eca.run_sequences import RunSequences
from agents.eca.scopes import ControlScopes
from agents.eca.unassigned import Unassigned
from ecs.control import IControlCenter, Session, User


@implementer(IControlCenter)
class ControlCenter:
    """The facade; see the module docstring."""

    def __init__(
        self,
        events: EventLog,
        accounts: Accounts,
        scopes: ControlScopes,
        partitions: Partitions,
        commands: Commands,
        inventory: Inventory,
        configs: ConfigLibrary,
        agents: AgentActions,
        unassigned: Unassigned,
        records: Records,
        metrics: EcaMetrics,
        alarms: Alarms,
        reloader: Reloader,
        exclusions: Exclusions,
        injector: FaultInjector,
        elog: ELog,
        sequences: RunSequences,
        recovery: Recovery,
    ) -> None:
        self._events = events
        self._accounts = accounts
        self._scopes = scopes
        self._partitions = partitions
        self._commands = commands
        self._inventory = inventory
        self._configs = configs
        self._agents = agents
        self._unassigned = unassigned
        self._records = records
        self._metrics = metrics
        self._alarms = alarms
        self._reloader = reloader
        self._exclusions = exclusions
        self._injector = injector
        self._elog = elog
        self._sequences = sequences
        self._recovery = recovery

    # -- authentication ---------------------------------------------------------------

    def login(self, username: str, password: str, kind: str = "session") -> defer.Deferred[Session]:
        """See L{IControlCenter.login}."""
        return self._accounts.login(username, password, kind)

    def logout(self, token: str) -> defer.Deferred[None]:
        """See L{IControlCenter.logout}."""
        return self._accounts.logout(token)

    def authenticate(self, token: str) -> defer.Deferred[Session | None]:
        """See L{IControlCenter.authenticate}."""
        return self._accounts.authenticate(token)

    # -- reading ----------------------------------------------------------------------

    def partitions(self) -> list[dict[str, Any]]:
        """See L{IControlCenter.partitions}."""
        return self._partitions.summaries()

    def partition(self, partition_id: str) -> dict[str, Any]:
        """See L{IControlCenter.partition}."""
        return self._partitions.details(partition_id)

    def unassigned(self) -> list[dict[str, Any]]:
        """See L{IControlCenter.unassigned}."""
        return self._unassigned.unassigned()

    def systems(self) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.systems}."""
        return self._reloader.systems()

    def reload(self, user: User) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.reload}."""
        return self._reloader.reload(user)

    # -- control and commands ------------------------------------------------------------

    def take_control(self, user: User, scope: str, force: bool = False) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.take_control}."""
        return self._scopes.take(user, scope, force, self._partitions)

    def release_control(self, user: User, scope: str) -> defer.Deferred[None]:
        """See L{IControlCenter.release_control}."""
        return self._scopes.release(user, scope)

    def ecs_control(self) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.ecs_control}."""
        return self._scopes.ecs_control()

    def command(
        self, user: User, partition_id: str, command: str, body: dict[str, Any]
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.command}."""
        return self._commands.command(user, partition_id, command, body)

    def exclude(self, user: User, partition_id: str, system: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.exclude}."""
        return self._exclusions.change(user, partition_id, system, exclude=True)

    def include(self, user: User, partition_id: str, system: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.include}."""
        return self._exclusions.change(user, partition_id, system, exclude=False)

    # -- partitions and detectors ----------------------------------------------------------

    def create_partition(self, user: User, partition_id: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.create_partition}."""
        return self._inventory.create_partition(user, partition_id)

    def delete_partition(self, user: User, partition_id: str, force: bool = False) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_partition}."""
        return self._inventory.delete_partition(user, partition_id, force)

    def create_detector(self, user: User, detector_id: str, type: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.create_detector}."""
        return self._inventory.create_detector(user, detector_id, type)

    def delete_detector(self, user: User, detector_id: str, force: bool = False) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_detector}."""
        return self._inventory.delete_detector(user, detector_id, force)

    def move_detector(
        self, user: User, detector_id: str, to: str | None, force: bool = False
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.move_detector}."""
        return self._inventory.move_detector(user, detector_id, to, force)

    # -- configurations and tags --------------------------------------------------------------

    def configs(self, system: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.configs}."""
        return self._configs.configs(system)

    def config(self, config_id: str, version: int | None = None) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.config}."""
        return self._configs.config(config_id, version)

    def save_config(
        self, user: User, config_id: str, system: str, parameters: dict[str, Any]
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.save_config}."""
        return self._configs.save_config(user, config_id, system, parameters)

    def delete_config(self, user: User, config_id: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_config}."""
        return self._configs.delete_config(user, config_id)

    def tags(self, partition_id: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.tags}."""
        return self._configs.tags(partition_id)

    def tag(self, name: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.tag}."""
        return self._configs.tag(name)

    def save_tag(self, user: User, name: str, config_ids: list[str]) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.save_tag}."""
        return self._configs.save_tag(user, name, config_ids)

    def delete_tag(self, user: User, name: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_tag}."""
        return self._configs.delete_tag(user, name)

    # -- users ----------------------------------------------------------------------------------

    def users(self, user: User) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.users}."""
        return self._accounts.users(user)

    def add_user(self, user: User, name: str, password: str, roles: list[str]) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.add_user}."""
        return self._accounts.add_user(user, name, password, roles)

    def update_user(
        self, user: User, name: str, password: str | None, roles: list[str] | None
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.update_user}."""
        return self._accounts.update_user(user, name, password, roles)

    def delete_user(self, user: User, name: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_user}."""
        return self._accounts.delete_user(user, name)

    # -- agents ------------------------------------------------------------------------------------

    def agents(self) -> list[dict[str, Any]]:
        """See L{IControlCenter.agents}."""
        return self._agents.agents()

    def agent(self, agent: str) -> dict[str, Any]:
        """See L{IControlCenter.agent}."""
        return self._agents.agent(agent)

    def set_placement(
        self, user: User, agent: str, host: str, launcher: str, options: dict[str, Any], autostart: bool
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.set_placement}."""
        return self._agents.set_placement(user, agent, host, launcher, options, autostart)

    def delete_placement(self, user: User, agent: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_placement}."""
        return self._agents.delete_placement(user, agent)

    def agent_command(self, user: User, agent: str, command: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.agent_command}."""
        return self._agents.agent_command(user, agent, command)

    def agent_output(self, user: User, agent: str, lines: int) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.agent_output}."""
        return self._agents.agent_output(user, agent, lines)

    def inject(self, user: User, system: str, body: Any) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.inject}."""
        return self._injector.inject(user, system, body)

    # -- alarms -------------------------------------------------------------------------------------

    def alarms(
        self, user: User, include_all: bool = False, partition: str | None = None
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.alarms}."""
        return self._alarms.alarms(user, include_all, partition)

    def acknowledge_alarm(self, user: User, alarm_id: int) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.acknowledge_alarm}."""
        return self._alarms.acknowledge(user, alarm_id)

    def shelve_alarm(self, user: User, alarm_id: int, until: float, reason: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.shelve_alarm}."""
        return self._alarms.shelve(user, alarm_id, until, reason)

    # -- history, events, metrics ---------------------------------------------------------------------

    def runs(
        self, partition_id: str | None = None, limit: int = 100, run_type: str | None = None,
        since: float | None = None, until: float | None = None,
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.runs}."""
        return self._records.runs(partition_id, limit, run_type, since, until)

    def run_types(self) -> list[str]:
        """See L{IControlCenter.run_types}."""
        return list(self._commands.run_types)

    def audit(
        self, user: User, who: str | None = None, action: str | None = None, since: float | None = None,
        until: float | None = None, limit: int = 100, before: int | None = None,
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.audit}."""
        return self._records.audit(user, who, action, since, until, limit, before)

    def logbook(
        self, user: User, text: str | None = None, partition: str | None = None, run: int | None = None,
        author: str | None = None, since: float | None = None, until: float | None = None, limit: int = 100,
        before: int | None = None,
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.logbook}."""
        return self._elog.entries(user, text, partition, run, author, since, until, limit, before)

    def add_logbook_entry(
        self, user: User, text: str, partition: str | None = None, run: int | None = None,
        corrects: int | None = None, attachments: Sequence[Mapping[str, Any]] = (),
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.add_logbook_entry}."""
        return self._elog.add(user, text, partition, run, corrects, attachments)

    def logbook_attachment(self, user: User, entry: int, n: int) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.logbook_attachment}."""
        return self._elog.attachment(user, entry, n)

    def recovery_rules(self, user: User) -> dict[str, Any]:
        """See L{IControlCenter.recovery_rules}."""
        return self._recovery.declared(user)

    def run_sequences(self, user: User) -> list[dict[str, Any]]:
        """See L{IControlCenter.run_sequences}."""
        return self._sequences.declared(user)

    def run_sequence(self, user: User, name: str, partition_id: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.run_sequence}."""
        return self._sequences.run(user, name, partition_id)

    def sequence_status(self, user: User, partition_id: str) -> dict[str, Any]:
        """See L{IControlCenter.sequence_status}."""
        return self._sequences.status(user, partition_id)

    def sequence_control(self, user: User, partition_id: str, action: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.sequence_control}."""
        return defer.Deferred.fromCoroutine(self._sequences.control(user, partition_id, action))

    def logs(
        self,
        partition_id: str | None,
        level: str | None,
        since: float | None,
        q: str | None,
        limit: int,
        until: float | None = None,
        before_id: int | None = None,
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.logs}."""
        return self._records.logs(partition_id, level, since, q, limit, until, before_id)

    def subscribe(
        self, callback: Callable[[int, str, dict[str, Any]], None], partition_id: str | None = None
    ) -> Callable[[], None]:
        """See L{IControlCenter.subscribe}."""
        return self._events.subscribe(callback, partition_id)

    def events_since(
        self, event_id: int, partition_id: str | None = None
    ) -> list[tuple[int, str, dict[str, Any]]] | None:
        """See L{IControlCenter.events_since}."""
        return self._events.events_since(event_id, partition_id)

    def metrics(self) -> bytes:
        """See L{IControlCenter.metrics}: the Prometheus text (L{EcaMetrics.render})."""
        return self._metrics.render()
