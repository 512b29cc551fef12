# -*- test-case-name: tests.test_alarms -*-
"""
L{Alarms}: what is wrong, as a model (issue 13).  The ECA raises and
clears alarms as it sees conditions come and go; operators acknowledge
them and experts shelve them.

An alarm is one condition C{(kind, source, partition)} (L{KINDS} gives
each kind its severity and the level of its log lines).  It is I{active} while it is not cleared, or
cleared but not acknowledged: an operator has seen every fault, even one
that is over.  Raising an active alarm again updates its text (no second
row); raising one that is cleared and unacknowledged reopens it.

Where they come from (the callers):
  - the partitions' records (L{agents.eca.picture.Condition}): a system in
    Error (C{system_error}), a system that stopped answering
    (C{system_unreachable}), the PCA gone (C{pca_lost}), a DCS alarm
    (C{dcs_alarm}, from the PCA's log line, cleared with the Error);
  - the run book: a run that ended without an operator's stop or abort
    (C{run_failed}, or C{run_interrupted} when the ECA lost the PCA during
    the run).  Such an alarm is raised already cleared: the event is over,
    so it stays active exactly until someone acknowledges it;
  - the supervisor's agent descriptions: C{agent_flapping}, C{agent_failed};
  - the recovery rules (L{agents.eca.recovery}): C{recovery_action}, an
    action they took or an escalation, raised cleared;
  - a run sequence whose step failed (L{agents.eca.run_sequences}):
    C{sequence_failed}, raised cleared like a failed run;
  - the bookkeeping writes (L{agents.eca.audit.WriteBehind}): C{storage_failed}
    while the database cannot be written.  An alarm raised while it cannot
    be stored is kept in memory (shown, listed, logged) and stored, as
    raised cleared, when its condition clears.

Conditions are level-triggered: callers say "holds" or "does not hold" as
often as they like, and only changes reach the store (the open conditions
are cached).  That is also how a restarted ECA catches up: L{load} reads
the active alarms, and the first picture of each partition (or agent
description) clears those whose condition is gone.

Shelving hides an alarm from the default list until its C{shelved_until}
(read against the clock at every listing: it expires by itself).

Every raise and clear is a C{warn} or C{error} operator log line naming
the source and the partition, and an C{alarm} live event (the alarm with
C{change}: raised, cleared, acknowledged, shelved).  Store writes are
queued in call order (one database thread), and each event is emitted
after its write (persist, then emit).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from agents.eca.errors import need, store_error
from agents.eca.interfaces import NO_NOTES, IAudit, IELogNotes, IEventSource, ILogBook
from agents.eca.metrics import EcaMetrics
from ecs.control import ControlError, User
from ecs.store import MAX_SHELVE_REASON, AlarmRow, Store, StoreError

#: kind -> (severity, the level of its raise and clear log lines).  The
#: levels are the operators' (issue 13): a subsystem in Error or unreachable
#: is a warning in the log (a reset or a reconnection clears it), a lost PCA,
#: a failed run, a flapping or failed agent and a DCS alarm are errors.
KINDS: dict[str, tuple[str, str]] = {
    "system_error": ("error", "warn"),
    "system_unreachable": ("warning", "warn"),
    "run_failed": ("error", "error"),
    "run_interrupted": ("error", "error"),
    "agent_flapping": ("error", "error"),
    "agent_failed": ("error", "error"),
    "dcs_alarm": ("error", "error"),
    "pca_lost": ("critical", "error"),
    "storage_failed": ("critical", "error"),
    "recovery_action": ("warning", "warn"),
    "sequence_failed": ("error", "error"),
}

#: The longest shelving allowed, in seconds.
MAX_SHELVE = 30 * 86400.0

Key = tuple[str, str, str | None]


def log_level(kind: str) -> str:
    """The operator log level of the raise and clear lines of an alarm of C{kind}."""
    return KINDS[kind][1]


def where(partition: str | None) -> str:
    """C{" in partition P"}, or nothing for an alarm of no partition."""
    return f" in partition {partition}" if partition else ""


class IAlarms(Interface):
    """What the ECA's collaborators tell the alarms (L{Alarms})."""

    def condition(kind: str, source: str, partition: str | None, active: bool, text: str = "",
                  action: str = "") -> None:
        """The condition holds (raise or update) or not (clear); repeats are free."""

    def event(kind: str, source: str, partition: str | None, text: str, action: str) -> None:
        """Something went wrong and is over (a failed run): an alarm raised cleared, active until acknowledged."""

    def partition_gone(partition: str) -> None:
        """A partition was deleted: its open conditions are over."""


@implementer(IAlarms)
class Alarms:
    """The alarm model of the ECA; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        store: Store,
        events: IEventSource,
        logbook: ILogBook,
        audit: IAudit,
        clock: IReactorTime,
        metrics: EcaMetrics,
        notes: IELogNotes = NO_NOTES,
    ) -> None:
        self._store = store
        self._notes = notes
        self._events = events
        self._logbook = logbook
        self._audit = audit
        self._clock = clock
        self._metrics = metrics
        #: The active alarms by id (as last written).
        self._active: dict[int, AlarmRow] = {}
        #: The open (not cleared) conditions, with the (text, action) last raised.
        self._open: dict[Key, tuple[str, str]] = {}
        #: Alarms raised while the database could not be written (negative
        #: ids): shown and listed from memory, stored when they clear.
        self._unstored: dict[Key, AlarmRow] = {}
        metrics.observe_alarms(self.active_by_severity)

    # -- loading -------------------------------------------------------------------

    async def load(self) -> None:
        """Read the active alarms (at start: they survive a restart)."""
        for row in await self._store.alarms(active_only=True):
            self._remember(row)
            if row.cleared_at is None:
                self._open[row.key] = (row.text, row.action)

    def active_by_severity(self) -> dict[str, int]:
        """How many alarms are active, by severity (the C{ecs_alarms_active} gauge)."""
        return dict(Counter(row.severity for row in self._active.values()))

    # -- conditions (IAlarms) --------------------------------------------------------

    def condition(
        self, kind: str, source: str, partition: str | None, active: bool, text: str = "", action: str = ""
    ) -> None:
        """See L{IAlarms.condition}."""
        key = (kind, source, partition)
        if not active:
            if self._open.pop(key, None) is not None:
                self._later(self._clear(key), f"clear {kind} of {source}")
            return
        if self._open.get(key) == (text, action):
            return
        self._open[key] = (text, action)
        self._later(self._raise(key, text, action, cleared=False), f"raise {kind} of {source}")

    def event(self, kind: str, source: str, partition: str | None, text: str, action: str) -> None:
        """See L{IAlarms.event}."""
        self._later(self._raise((kind, source, partition), text, action, cleared=True), f"raise {kind} of {source}")

    def partition_gone(self, partition: str) -> None:
        """A partition was deleted: its open conditions are over."""
        for key in [k for k in self._open if k[2] == partition]:
            self.condition(key[0], key[1], partition, False)

    def _later(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run a store write and what follows it; a failure is logged (the caller does not wait)."""
        d = defer.Deferred.fromCoroutine(work)
        d.addErrback(lambda f: self._log.failure("alarm: {what}", f, what=what))

    async def _raise(self, key: Key, text: str, action: str, cleared: bool) -> None:
        kind, source, partition = key
        severity = KINDS[kind][0]
        try:
            row, new = await self._store.raise_alarm(kind, source, partition, severity, text, action, cleared)
        except StoreError as e:
            if e.code == "storage" and not cleared:
                self._raise_unstored(key, severity, text, action)
                return
            if not cleared and self._open.get(key) == (text, action):
                del self._open[key]  # not stored: the next report of the condition tries again
            raise
        self._remember(row)
        if new:
            self._metrics.alarm_raised(kind)
            self._notes.note(f"alarm {kind} ({severity}) raised for {source}{where(partition)}: {text}", partition)
        self._logbook.log(
            log_level(kind), "ECA", f"alarm {kind} raised for {source}{where(partition)}: {text} ({action})",
            partition,
        )
        self._emit(row, "raised")

    def _raise_unstored(self, key: Key, severity: str, text: str, action: str) -> None:
        """
        Raise an alarm the database cannot take now (it is full, say: the
        C{storage_failed} alarm itself): shown, logged and listed from
        memory; stored when it clears (L{_clear}), so it stays until acknowledged.
        """
        kind, source, partition = key
        old = self._unstored.get(key)
        row = AlarmRow(
            old.id if old is not None else -1 - len(self._unstored), kind, source, partition, severity, text, action,
            old.raised_at if old is not None else self._clock.seconds(), None, None, None, None, None, None,
        )
        self._unstored[key] = row
        self._remember(row)
        if old is None:
            self._metrics.alarm_raised(kind)
        self._logbook.log(
            log_level(kind), "ECA",
            f"alarm {kind} raised for {source}{where(partition)}: {text} ({action}; not stored yet)", partition,
        )
        self._emit(row, "raised")

    async def _clear(self, key: Key) -> None:
        kind, source, partition = key
        unstored = self._unstored.pop(key, None)
        if unstored is not None:
            self._active.pop(unstored.id, None)
            stored, _ = await self._store.raise_alarm(
                kind, source, partition, unstored.severity, unstored.text, unstored.action, True
            )
            self._remember(stored)
            self._logbook.log(
                log_level(kind), "ECA", f"alarm {kind} cleared for {source}{where(partition)}: {stored.text}",
                partition,
            )
            self._emit(stored, "cleared")
            return
        row = await self._store.clear_alarm(kind, source, partition)
        if row is None:
            return
        self._remember(row)
        self._logbook.log(
            log_level(kind), "ECA", f"alarm {kind} cleared for {source}{where(partition)}: {row.text}",
            partition,
        )
        self._emit(row, "cleared")

    def _remember(self, row: AlarmRow) -> None:
        if row.active:
            self._active[row.id] = row
        else:
            self._active.pop(row.id, None)

    def _emit(self, row: AlarmRow, change: str) -> None:
        self._events.emit("alarm", {**row.to_json(), "change": change}, row.partition)

    # -- the interfaces' reads and actions ---------------------------------------------

    def alarms(self, user: User, include_all: bool, partition: str | None) -> defer.Deferred[list[dict[str, Any]]]:
        """
        The active alarms, newest first, without those shelved now; with
        C{include_all}, every alarm (history and shelved ones too).
        """

        async def read() -> list[dict[str, Any]]:
            need(user, "viewer")
            try:
                rows = await self._store.alarms(active_only=not include_all, partition=partition)
            except StoreError as e:
                raise store_error(e) from None
            now = self._clock.seconds()
            rows = [
                row for row in self._unstored.values() if partition is None or row.partition == partition
            ] + rows
            return [row.to_json() for row in rows if include_all or not row.shelved(now)]

        return defer.Deferred.fromCoroutine(read())

    def acknowledge(self, user: User, alarm_id: int) -> defer.Deferred[dict[str, Any]]:
        """Acknowledge an alarm (operator and up; audited); an acknowledged one stays as it was."""

        async def work() -> dict[str, Any]:
            need(user, "operator")
            before = await self._store.alarm(alarm_id)
            row = await self._store.acknowledge_alarm(alarm_id, user.name)
            self._remember(row)
            if before is None or before.acknowledged_at is None:
                self._emit(row, "acknowledged")
            return row.to_json()

        return self._audit.audited(user, "acknowledge_alarm", {"alarm": alarm_id}, work)

    def shelve(self, user: User, alarm_id: int, until: float, reason: str) -> defer.Deferred[dict[str, Any]]:
        """Shelve an active alarm until C{until} (absolute) with a reason (expert and up; audited)."""

        async def work() -> dict[str, Any]:
            need(user, "expert")
            check_shelve(until, reason, self._clock.seconds())
            row = await self._store.shelve_alarm(alarm_id, until, user.name, reason)
            self._remember(row)
            self._emit(row, "shelved")
            return row.to_json()

        arguments = {"alarm": alarm_id, "until": until, "reason": reason}
        return self._audit.audited(user, "shelve_alarm", arguments, work)


def check_shelve(until: object, reason: object, now: float) -> None:
    """Refuse a shelving (C{bad_request} naming the field) unless C{now < until <= now + 30 days} and a reason."""
    if isinstance(until, bool) or not isinstance(until, (int, float)) or until != until:
        raise ControlError("bad_request", "until: must be a time", field="until")
    if until <= now:
        raise ControlError("bad_request", "until: must be in the future", field="until")
    if until > now + MAX_SHELVE:
        raise ControlError("bad_request", "until: at most 30 days from now", field="until")
    if not isinstance(reason, str) or not reason.strip():
        raise ControlError("bad_request", "reason: required", field="reason")
    if len(reason) > MAX_SHELVE_REASON:
        raise ControlError("bad_request", f"reason: at most {MAX_SHELVE_REASON} characters", field="reason")


def agent_conditions(alarms: IAlarms) -> Callable[[dict[str, Any]], None]:
    """
    A listener of the supervisor's agent descriptions that raises
    C{agent_flapping} and C{agent_failed} while an agent is in that state,
    and clears them when it leaves it.
    """

    def changed(data: dict[str, Any]) -> None:
        agent = data.get("agent")
        supervision = data.get("supervision") or {}
        if not isinstance(agent, str) or not isinstance(supervision, dict):
            return
        state, reason = supervision.get("state"), supervision.get("reason") or ""
        why = f": {reason}" if reason else ""
        action = f"read the output of {agent}, fix the cause, then start it"
        source = f"agent:{agent}"
        alarms.condition("agent_flapping", source, None, state == "flapping", f"{agent} is flapping{why}", action)
        alarms.condition("agent_failed", source, None, state == "failed", f"{agent} failed to start{why}", action)

    return changed


__all__ = ["KINDS", "MAX_SHELVE", "Alarms", "IAlarms", "agent_conditions", "check_shelve", "log_level"]
