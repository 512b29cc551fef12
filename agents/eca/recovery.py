# -*- test-case-name: tests.test_recovery_eca -*-
"""
L{Recovery}: the declared recovery rules carried out (issue 14;
L{ecs.fsm.recovery} reads and checks C{fsm/recovery.yaml}).

Fed by the partitions' system records (L{Recovery.got_record}, from
L{agents.eca.partitions.Partition.got_record}, after the picture's effects)
and by the supervisor's agent descriptions (L{Recovery.agent_changed}); each
event is taken on its edge (a system going to Error, becoming unreachable,
an agent found dead: C{restarting} or C{flapping}).  The partition's state
that selects the rule is the one its record shows when the system's record
arrives (the PCA publishes a system's change before the partition's); for
a dead agent, that of the partition it serves (the highest of all for an
agent that serves every partition: the global systems).

The actions, as user L{WHO}:

  - C{alarm_only}: nothing more (the alarm the ECA raises anyway);
  - C{restart}: the agent started again through the supervisor (at once,
    also when it is flapping);
  - C{reset_and_reconfigure}: C{reset} of the system, then C{configure} of
    the partition with its current tag (not while recording);
  - C{exclude_and_continue}: armed in advance: each PCA is told which of its
    systems to exclude at once when they fail while it records (C{recovery}
    request, L{arm}), so that the run never stops; when such an exclusion
    shows in a record, the ECA makes it its own (the database, the truth of
    the exclusions; the open run's record names it);
  - C{stop_run}: C{stop} of the partition.

Each action counts against its rule's limit (C{max} in C{within} seconds,
per rule and system, on the injected clock); beyond it, no action but an
alarm (escalation).  Every action and escalation is a C{warn} log line, an
audit row, an automatic logbook entry and a C{recovery_action} alarm
(raised cleared: it stays in the list until acknowledged).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.alarms import IAlarms
from agents.eca.errors import need
from agents.eca.interfaces import NO_NOTES, IAudit, IELogNotes, ILogBook, IRecoveryEvents
from agents.eca.partitions import Partition, Partitions
from ecs.control import ControlError, User
from ecs.fsm.recovery import RecoveryRules, Rule, Where
from ecs.net.transport import RequestError
from ecs.store import Store, StoreError

#: The user the recovery acts as (audit, logbook, the PCAs' log lines).
WHO = "ecs-recovery"

SYSTEM_PREFIX = "system/"


def state_class(partition: Partition) -> str:
    """C{recording}, C{idle} or C{configured}: the partition's state for the rules."""
    state = partition.records.get("partition", {}).get("state")
    sequence = partition.picture.sequence
    if sequence.recording is not None and state == sequence.recording.state:
        return "recording"
    if state not in sequence.states() or sequence.summary_of(state) == "Idle":
        return "idle"
    return "configured"


@implementer(IRecoveryEvents)
class Recovery:
    """The recovery rules in force, carried out; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        rules: RecoveryRules,
        store: Store,
        partitions: Partitions,
        audit: IAudit,
        logbook: ILogBook,
        alarms: IAlarms,
        clock: IReactorTime,
        notes: IELogNotes = NO_NOTES,
        restart: Callable[[str], Awaitable[Any]] | None = None,
        configure: Callable[[Partition, str], Awaitable[Any]] | None = None,
        note_run: Callable[[str, str], None] = lambda partition, text: None,
    ) -> None:
        self.rules = rules
        self._store = store
        self._partitions = partitions
        self._audit = audit
        self._logbook = logbook
        self._alarms = alarms
        self._clock = clock
        self._notes = notes
        self._restart = restart
        self._configure = configure
        self._note_run = note_run
        #: (partition, system) -> the events that hold now (edges only).
        self._holding: dict[tuple[str, str], set[str]] = {}
        #: (what failed, where its rule is declared) -> the times of the rule's recent actions there.
        self._attempts: dict[tuple[tuple[str, ...], Where], deque[float]] = {}
        #: partition -> the systems its PCA was told to exclude on fault.
        self._armed: dict[str, frozenset[str]] = {}
        #: agent -> whether it was seen dead (edges only).
        self._dead: dict[str, bool] = {}

    def wire(self, configure: Callable[[Partition, str], Awaitable[Any]]) -> None:
        """How to configure a partition with a tag (the commands are built after this)."""
        self._configure = configure

    def adopt(self, rules: RecoveryRules) -> dict[str, Any]:
        """
        Put C{rules} (read again by C{ecs reload}) in force.  The attempts
        counted against a rule that is still declared at the same place
        with the same action are kept (its new limit applies to them); the
        others are forgotten.  Every connected PCA is armed again (the
        systems to exclude on fault may have changed).

        @return: C{{"recovery_changed": bool, "recovery_counters_kept": n,
            "recovery_counters_dropped": n}}.
        """
        changed = attrs.evolve(self.rules, source=rules.source) != rules
        kept = dropped = 0
        for who, where in list(self._attempts):
            old, new = self.rules.at(where), rules.at(where)
            if old is not None and new is not None and old.action == new.action:
                kept += 1
            else:
                del self._attempts[(who, where)]
                dropped += 1
        self.rules = rules
        if changed:
            for partition in self._partitions:
                if partition.connected:
                    self.partition_fresh(partition.id)
        return {"recovery_changed": changed, "recovery_counters_kept": kept, "recovery_counters_dropped": dropped}

    # -- inputs ----------------------------------------------------------------------------

    def got_record(self, partition: Partition, key: str, value: dict[str, Any] | None, old_excluded: bool) -> None:
        """A record of C{partition} changed (C{old_excluded}: the system was excluded before)."""
        if not key.startswith(SYSTEM_PREFIX):
            return
        system = key[len(SYSTEM_PREFIX):]
        if value is None:
            self._holding.pop((partition.id, system), None)
            return
        if value.get("excluded"):
            armed = system in self._armed.get(partition.id, ())
            if not old_excluded and armed and state_class(partition) == "recording":
                self._spawn(self._took_over(partition, system, value), f"exclusion of {system}")
            return
        now = {"error"} if value.get("state") == "Error" else set()
        if value.get("connected") is False:
            now = {"unreachable"}
        before = self._holding.get((partition.id, system), set())
        self._holding[(partition.id, system)] = now
        for event in sorted(now - before):
            self._spawn(self._fault(partition, system, event), f"{event} of {system}")

    def agent_changed(self, data: dict[str, Any]) -> None:
        """The supervisor's description of an agent changed: dead (restarting, flapping) or not."""
        agent = data.get("agent")
        supervision = data.get("supervision") or {}
        if not isinstance(agent, str) or not isinstance(supervision, dict):
            return
        dead = supervision.get("state") in ("restarting", "flapping")
        was, self._dead[agent] = self._dead.get(agent, False), dead
        if dead and not was:
            self._spawn(self._agent_died(agent, data.get("partition")), f"death of {agent}")

    def partition_fresh(self, partition_id: str) -> None:
        """A fresh picture of the partition: tell its PCA what to exclude on fault."""
        self._spawn(self.arm(partition_id), f"recovery rules of {partition_id}")

    # -- arming exclude_and_continue ----------------------------------------------------------

    async def arm(self, partition_id: str) -> None:
        """Tell the PCA of C{partition_id} which systems to exclude when they fail while recording."""
        if partition_id not in self._partitions:
            return
        partition = self._partitions.get(partition_id)
        systems = [k[len(SYSTEM_PREFIX):] for k in partition.records if k.startswith(SYSTEM_PREFIX)]
        armed = []
        for system in systems:
            type_ = await self._type_of(system)
            if any(self.rules.rule(e, "recording", system, type_).action == "exclude_and_continue"
                   for e in ("error", "unreachable")):
                armed.append(system)
        if not armed and partition_id not in self._armed:
            return  # nothing to tell (and PCAs that never heard of recovery rules are left alone)
        try:
            await partition.command("recovery", {"exclude_on_fault": sorted(armed)}, WHO)
        except RequestError as e:
            self._logbook.log("warn", "ECA", f"recovery rules not armed in PCA {partition_id}: {e.reason}",
                              partition_id)
            return
        self._armed[partition_id] = frozenset(armed)

    async def _took_over(self, partition: Partition, system: str, value: dict[str, Any]) -> None:
        """The PCA excluded C{system} on fault while recording: the ECA's database follows, and all is told."""
        raw = value.get("raw_state") or "unreachable"
        try:
            await self._store.exclude_system(partition.id, system, WHO)
        except StoreError as e:
            self._logbook.log("error", "ECA", f"exclusion of {system} by recovery not stored: {e.reason}", partition.id)
        text = f"{system} ({raw}) excluded while recording (exclude_and_continue): the run goes on"
        self._note_run(partition.id, f"{system} excluded by {WHO} ({raw})")
        await self._tell(partition.id, system, "exclude_and_continue", text, {"system": system, "state": raw})

    # -- the rules -------------------------------------------------------------------------------

    def declared(self, user: User) -> dict[str, Any]:
        """The rules in force, as read (viewer and up): see L{ecs.control.IControlCenter.recovery_rules}."""
        need(user, "viewer")
        return {"source": self.rules.source, "rules": self.rules.table()}

    async def _type_of(self, system: str) -> str | None:
        try:
            row = await self._store.detector(system)
        except StoreError:
            return None
        return row.type if row is not None else system  # a global system is its own type

    def _allowed(self, who: tuple[str, ...], rule: Rule, where: Where) -> bool:
        """Count one action of C{rule} (declared at C{where}) for C{who}, unless its limit is reached."""
        now = self._clock.seconds()
        times = self._attempts.setdefault((who, where), deque())
        while times and times[0] <= now - rule.within:
            times.popleft()
        if len(times) >= rule.max:
            return False
        times.append(now)
        return True

    async def _fault(self, partition: Partition, system: str, event: str) -> None:
        state = state_class(partition)
        rule, declared = self.rules.locate(event, state, system, await self._type_of(system))
        if rule.action in ("alarm_only", "exclude_and_continue"):
            return  # the alarm is raised anyway; an armed exclusion was the PCA's (L{_took_over})
        if rule.action == "reset_and_reconfigure" and state == "recording":
            return
        where = {"partition": partition.id, "system": system, "event": event, "state": state}
        if not self._allowed((partition.id, system), rule, declared):
            await self._escalate(partition.id, system, rule, where)
            return
        try:
            if rule.action == "stop_run":
                await partition.command("stop", {}, WHO)
                done = f"run of {partition.id} stopped: {system} {event}"
            elif rule.action == "reset_and_reconfigure":
                tag = partition.records.get("partition", {}).get("tag")
                await partition.command("reset", {"system": system}, WHO)
                if not isinstance(tag, str) or self._configure is None:
                    done = f"{system} reset after {event} (no tag to configure {partition.id} with)"
                else:
                    await self._configure(partition, tag)
                    done = f"{system} reset after {event}, {partition.id} configured again with tag {tag}"
            else:
                return
        except (RequestError, StoreError, ControlError) as e:
            done = f"{rule.action} of {system} after {event} failed: {e.reason}"
            await self._tell(partition.id, system, rule.action, done, where, outcome=f"failed: {e.reason}")
            return
        await self._tell(partition.id, system, rule.action, done, where)

    def _state_of_agent(self, partition: str | None) -> str:
        """
        The partition state that selects an C{agent_died} rule: that of the
        agent's partition; for an agent of no one partition (the global
        systems, a sim host) the highest of every partition's (recording,
        then configured, then idle); C{any} when no partition is followed.
        """
        if partition is not None and partition in self._partitions:
            return state_class(self._partitions.get(partition))
        states = {state_class(p) for p in self._partitions}
        return next((s for s in ("recording", "configured", "idle") if s in states), "any")

    def _systems_of(self, agent: str) -> list[str]:
        """
        The systems an agent serves: the one in its name, or, for C{global:all}
        (every global system in one process, as the demo places them), each
        global system of the sequence.
        """
        kind, _, name = agent.partition(":")
        if kind == "global" and name == "all":
            for partition in self._partitions:
                return list(partition.picture.sequence.global_systems())
        return [name or agent]

    async def _agent_died(self, agent: str, partition: object) -> None:
        part = partition if isinstance(partition, str) else None
        state = self._state_of_agent(part)
        # An agent of several systems is restarted when the rule of any of them says so.
        chosen = None
        for system in self._systems_of(agent):
            rule, declared = self.rules.locate("agent_died", state, system, await self._type_of(system))
            if chosen is None or (rule.action == "restart" and chosen[0].action != "restart"):
                chosen = (rule, declared)
        where = {"agent": agent, "event": "agent_died", "state": state}
        if chosen is None or chosen[0].action != "restart" or self._restart is None:
            return
        rule, declared = chosen
        if not self._allowed((agent,), rule, declared):
            await self._escalate(part, agent, rule, where)
            return
        try:
            await self._restart(agent)
            done = f"agent {agent} died: restarted"
        except Exception as e:  # a ControlError, a launcher's failure: said, not raised
            await self._tell(part, agent, "restart", f"agent {agent} died: restart failed: {e}", where,
                             outcome=f"failed: {e}")
            return
        await self._tell(part, agent, "restart", done, where)

    async def _escalate(self, partition: str | None, source: str, rule: Rule, where: dict[str, Any]) -> None:
        text = (f"{source}: {rule.action} not done: limit of {rule.max} in {rule.within:g} s reached "
                f"({where.get('event')}); a person must act")
        await self._tell(partition, source, "escalate", text, where)

    async def _tell(
        self, partition: str | None, source: str, action: str, text: str, where: dict[str, Any], outcome: str = "ok"
    ) -> None:
        """Logged, audited (with C{outcome}), in the logbook and the alarm list."""
        self._logbook.log("warn", "ECA", f"recovery: {text}", partition)
        self._notes.note(f"{WHO}: {text}", partition)
        self._alarms.event("recovery_action", source, partition, text,
                           "see what failed, then acknowledge" if action != "escalate" else "fix the cause by hand")
        try:
            await self._audit.record(WHO, f"recovery_{action}", where, outcome)
        except StoreError as e:
            self._log.warn("recovery audit not written: {error}", error=e.reason)

    def _spawn(self, work: Any, what: str) -> None:
        d = defer.Deferred.fromCoroutine(work)
        d.addErrback(lambda f: self._log.failure("recovery: {what}", f, what=what))
