# -*- test-case-name: tests.test_moves -*-
"""
L{Inventory}: partitions and detectors created, deleted and moved
(original §5, corrected).

Each action needs the expert role and the ECS control, changes the
database in one transaction, tells the agents, and writes the audit trail
with its outcome.

Management that cannot tear (issue 11):

  - B{Exclusive locks.}  A move, a detector's or a partition's deletion
    takes the ECA's lock of every detector and partition it touches
    (L{OperationLocks}) before anything else; a second operation on one of
    them is refused (409 for a detector, 423 for a partition) with a reason
    naming the operation that holds it.  Of ten concurrent moves of one
    detector exactly one runs.
  - B{Journalled.}  The operation is written to the journal
    (L{ecs.store.Store.begin_operation}) before it locks a PCA; its change
    of the inventory commits together with the journal's phase; its
    outcome and audit row are one transaction.  At start (L{recover}) an
    operation left open by a dead ECA is rolled back (not committed) or
    forward (committed: the PCAs are made to agree with the database) once
    its PCAs answer, and a PCA found locked with no open operation is
    unlocked, with a WARN line.
  - B{Compare-and-set.}  A move commits only if the detector is still
    where it was found, and its roll-back only if it is still where the
    move put it.

Moving a detector is two-phase: both PCAs are locked (and must agree: not
configuring or recording), then the database is committed, then the PCAs
and the detector are told; a failure after the commit (a PCA refusing, the
detector not answering) moves the detector back; the locks are released on
every path.  With C{force}, an unreachable PCA is left out and made to
agree with the database when it answers again (a restarted one asks the
registry anyway), and a detector that does not answer is told once its new
partition's PCA sees it connected again: the pending tells this class
keeps, and learns about through L{IInventoryEvents}.  A forced move is a
WARN line naming the detector and both partitions.

Creating a detector places its agent with its type (when the ECA supervises
agents with the local launcher); deleting one stops its agent and removes its
placement (in the same transaction as the detector); moving one leaves its
agent running.

(About 690 lines, kept whole: the journal, the locks and the recovery are
the same three operations seen from the start, the failure and the restart;
the locks themselves are L{agents.eca.oplocks}.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.agents import AgentActions
from agents.eca.errors import need, store_error
from agents.eca.interfaces import NO_NOTES, IAudit, IControlScopes, IELogNotes, IInventoryEvents, ILogBook
from agents.eca.oplocks import OperationLocks
from agents.eca.partitions import Partitions
from ecs.config.settings import Subsystems
from ecs.control import ControlError, User
from ecs.fsm.sequence import Sequence
from ecs.net.remote_registry import Entry
from ecs.net.transport import INode, RequestError
from ecs.store import Store, StoreError
from ecs.store.inventory import OperationRow


class _Journalled:
    """What an operation in progress has journalled (its row, once begun)."""

    op: OperationRow | None = None


def forced_text(user: str, action: str, arguments: dict[str, Any]) -> str:
    """The automatic logbook entry of a forced management operation."""
    if action == "move_detector":
        to = arguments.get("to")
        return f"{user} moved detector {arguments.get('detector')} to {to or 'no partition'} by force"
    kind = "partition" if action == "delete_partition" else "detector"
    what = f"{kind} {arguments.get(kind)}"
    return f"{user} deleted {what} by force"


@implementer(IInventoryEvents)
class Inventory:
    """Partitions and detectors; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        store: Store,
        node: INode,
        registered: Mapping[tuple[str, str], Entry],
        partitions: Partitions,
        scopes: IControlScopes,
        audit: IAudit,
        logbook: ILogBook,
        agents: AgentActions,
        sequence: Sequence,
        subsystems: Subsystems,
        notes: IELogNotes = NO_NOTES,
    ) -> None:
        self._store = store
        self._notes = notes
        self._node = node
        self._registered = registered
        self._partitions = partitions
        self._scopes = scopes
        self._audit = audit
        self._logbook = logbook
        self._agents = agents
        self._sequence = sequence
        self._subsystems = subsystems
        #: Partitions whose PCA a forced move left out: told when it answers again.
        self._missed: set[str] = set()
        #: Detectors a forced move could not tell: told when their partition sees them again.
        self._tell_later: dict[str, str | None] = {}
        self._catching_up: set[str] = set()
        self._telling: set[str] = set()
        self._moves = 0
        self.locks = OperationLocks()
        #: Operations a dead ECA left open, by id: resumed when their PCAs answer.
        self._interrupted: dict[int, OperationRow] = {}
        self._resuming: set[int] = set()
        #: Partitions not yet checked for a lock left by a dead ECA.
        self._unchecked: set[str] = set()
        #: Whether the supervisor knows the running agents (L{agents_resumed}).
        self._agents_ready = agents.supervisor is None

    def _note(self, message: str, partition: str | None = None) -> None:
        self._logbook.log("info", "ECA", message, partition)

    async def _ecs_control(self, user: User) -> None:
        need(user, "expert")
        await self._scopes.require_holder(user, "ecs")

    def _endpoint(self, kind: str, agent: str) -> str | None:
        entry = self._registered.get((kind, agent))
        return entry.info.endpoint if entry is not None else None

    async def _tell_globals(self, type: str, partition: str, every: bool = False) -> list[str]:
        """
        Tell every global system; returns those that did what was asked.
        The first failure raises, unless C{every}: then each one is told
        whatever the others answer, and the failures raise at the end.
        """
        told: list[str] = []
        failures = []
        for system in self._sequence.global_systems():
            endpoint = self._endpoint("global", system)
            try:
                if endpoint is None:
                    raise ControlError("unavailable", f"global system {system} is not registered")
                try:
                    await self._node.connect(endpoint).request(system, type, {"partition": partition})
                except RequestError as e:
                    raise ControlError(
                        "unavailable", f"{system} did not {type.replace('_', ' ')}: {e.reason}"
                    ) from None
            except ControlError as e:
                if not every:
                    raise ControlError(e.code, e.reason, told=told) from None
                failures.append(e.reason)
                continue
            told.append(system)
        if failures:
            raise ControlError("unavailable", "; ".join(failures), told=told)
        return told

    def _journalled(
        self,
        user: User,
        action: str,
        arguments: dict[str, Any],
        work: Callable[[_Journalled], Awaitable[Any]],
    ) -> defer.Deferred[Any]:
        """
        Run C{work}; a L{StoreError} becomes its L{ControlError}.  Its outcome
        is audited: in the same transaction as the journal's end once
        C{work} journalled the operation, alone otherwise (nothing changed).
        """

        async def close(journal: _Journalled, outcome: str) -> None:
            if journal.op is None:
                await self._audit.record(user.name, action, arguments, outcome)
                return
            try:
                await self._store.end_operation(journal.op.id, outcome, (user.name, arguments))
            except StoreError as e:
                # Left open: the next start resumes it (the inventory agrees already).
                self._log.error(
                    "{action} {arguments} not closed in the journal: {error}",
                    action=action,
                    arguments=arguments,
                    error=e.reason,
                )

        async def run() -> Any:
            journal = _Journalled()
            try:
                result = await work(journal)
            except (ControlError, StoreError) as e:
                error = store_error(e) if isinstance(e, StoreError) else e
                await close(journal, f"{error.code}: {error.reason}")
                raise error from None
            await close(journal, "ok")
            if arguments.get("force"):
                where = arguments.get("partition") or arguments.get("to")
                self._notes.note(forced_text(user.name, action, arguments), where)
            return result

        return defer.Deferred.fromCoroutine(run())

    # -- partitions ----------------------------------------------------------------------

    def create_partition(self, user: User, partition_id: str) -> defer.Deferred[dict[str, Any]]:
        """
        See L{ecs.control.IControlCenter.create_partition}: database, then
        the global systems (undone on failure), then its PCA placed and
        started (L{AgentActions.partition_created}).
        """

        async def work() -> dict[str, Any]:
            await self._ecs_control(user)
            await self._store.add_partition(partition_id)
            try:
                await self._tell_globals("add_partition", partition_id)
            except ControlError:
                await self._store.delete_partition(partition_id)
                # Undone before we answer: every global system drops it again.
                try:
                    await self._tell_globals("remove_partition", partition_id, every=True)
                except ControlError as e:
                    self._logbook.log("warn", "ECA", f"creating {partition_id} undone: {e.reason}", None)
                raise
            entry = self._registered.get(("pca", partition_id))
            partition = self._partitions.watch(partition_id, entry.info if entry is not None else None)
            self._note(f"partition {partition_id} created by {user.name}")
            return partition.summary()

        async def created() -> dict[str, Any]:
            summary: dict[str, Any] = await self._audit.audited(
                user, "create_partition", {"partition": partition_id}, work
            )
            await self._agents.partition_created(user, partition_id)
            return summary

        return defer.Deferred.fromCoroutine(created())

    def delete_partition(self, user: User, partition_id: str, force: bool = False) -> defer.Deferred[None]:
        """
        See L{ecs.control.IControlCenter.delete_partition}: only when Idle
        (or forced); its detectors become unassigned; its PCA is stopped
        and unplaced (L{AgentActions.partition_deleted}).  Journalled, with
        the partition's lock held.
        """

        async def work(journal: _Journalled) -> None:
            await self._ecs_control(user)
            self.locks.take(f"the deletion of partition {partition_id} by {user.name}", (), [partition_id])
            try:
                partition = self._partitions.get(partition_id)
                state = partition.summary()["state"]
                if not force and partition.connected and state != self._sequence.idle:
                    raise ControlError("conflict", f"partition {partition_id} is {state}: abort it first (or force)")
                holder = await self._store.control(partition_id)
                journal.op = await self._store.begin_operation(
                    "delete_partition", user.name, source=partition_id, force=force
                )
                detectors = await self._store.commit_operation(journal.op.id)
                if holder is not None:  # the store dropped it with the partition
                    self._scopes.dropped(partition_id, holder.holder, "partition deleted")
                await self._partition_gone(partition_id)
                for detector in detectors:
                    self._tell_later.pop(detector, None)
                    await self._assign(detector, None, quiet=True)
                self._note(f"partition {partition_id} deleted by {user.name}")
            finally:
                self.locks.release((), [partition_id])

        async def deleted() -> None:
            await self._journalled(user, "delete_partition", {"partition": partition_id, "force": force}, work)
            await self._agents.partition_deleted(partition_id)

        return defer.Deferred.fromCoroutine(deleted())

    async def _partition_gone(self, partition_id: str) -> None:
        """A deleted partition: the global systems told, no longer followed."""
        try:
            await self._tell_globals("remove_partition", partition_id, every=True)
        except ControlError as e:
            self._logbook.log("warn", "ECA", f"deleting {partition_id}: {e.reason}", None)
        self._missed.discard(partition_id)
        self._unchecked.discard(partition_id)
        if partition_id in self._partitions:
            self._partitions.unwatch(partition_id)

    # -- detectors -----------------------------------------------------------------------

    def create_detector(self, user: User, detector_id: str, type: str) -> defer.Deferred[dict[str, Any]]:
        """
        See L{ecs.control.IControlCenter.create_detector}: a known type,
        unassigned; its agent placed with its type (and started when agents
        start on their own: L{AgentActions.detector_created}).
        """

        async def work() -> dict[str, Any]:
            await self._ecs_control(user)
            if type not in self._subsystems.detector_types:
                known = ", ".join(sorted(self._subsystems.detector_types))
                raise ControlError("bad_request", f"unknown detector type {type!r} (known: {known})")
            return dataclasses.asdict(await self._store.add_detector(detector_id, type))

        async def created() -> dict[str, Any]:
            row: dict[str, Any] = await self._audit.audited(
                user, "create_detector", {"detector": detector_id, "type": type}, work
            )
            await self._agents.detector_created(user, detector_id, type)
            return row

        return defer.Deferred.fromCoroutine(created())

    def delete_detector(self, user: User, detector_id: str, force: bool = False) -> defer.Deferred[None]:
        """
        See L{ecs.control.IControlCenter.delete_detector}: only unassigned
        detectors.  Journalled, with the detector's lock held: its agent is
        stopped, then the detector and its agent's placement are deleted in
        one transaction.
        """

        async def work(journal: _Journalled) -> None:
            await self._ecs_control(user)
            self.locks.take(f"the deletion of {detector_id} by {user.name}", [detector_id])
            try:
                row = await self._store.detector(detector_id)
                if row is None:
                    raise ControlError("not_found", f"no detector {detector_id!r}")
                if row.partition is not None:
                    raise ControlError("conflict", f"{detector_id} is in partition {row.partition}: move it out first")
                journal.op = await self._store.begin_operation("delete_detector", user.name, detector_id, force=force)
                await self._agents.stop_detector_agent(detector_id)
                await self._store.commit_operation(journal.op.id)
                self._tell_later.pop(detector_id, None)
                await self._agents.detector_deleted(detector_id)
            finally:
                self.locks.release([detector_id])

        return self._journalled(user, "delete_detector", {"detector": detector_id, "force": force}, work)

    async def _assign(self, detector: str, partition: str | None, quiet: bool = False) -> bool:
        """Tell a detector its partition; whether it was told (or is not running)."""
        endpoint = self._endpoint("detector", detector)
        if endpoint is None:
            return True  # not running: it asks the registry when it starts
        try:
            await self._node.connect(endpoint).request(detector, "assign", {"partition": partition})
        except RequestError as e:
            if not quiet:
                raise
            self._log.warn("{detector} not told of its partition: {error}", detector=detector, error=e.reason)
            return False
        return True

    async def _pca(self, partition: str, type: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._partitions.get(partition).command(type, body, "ECA")

    def _add_body(self, detector: str, type: str) -> dict[str, Any]:
        body: dict[str, Any] = {"detector": detector, "type": type}
        endpoint = self._endpoint("detector", detector)
        if endpoint:
            body["endpoint"] = endpoint
        return body

    # -- catching up after a forced move (IInventoryEvents) ------------------------------------

    def partition_seen(self, partition: str) -> None:
        """
        See L{IInventoryEvents.partition_seen}: release a lock a dead ECA
        left (L{_check_lock}); resume the interrupted operations it was
        waiting for; if a forced move left the partition's PCA out, make its
        detectors those of the database now (unless it is busy or locked:
        then at a later change).
        """
        self._check_lock(partition)
        for op in list(self._interrupted.values()):
            if partition in (op.source, op.target):
                self._try_resume(op)
        if partition not in self._missed or partition in self._catching_up or self._moves:
            return
        followed = self._partitions.get(partition) if partition in self._partitions else None
        if followed is None or not followed.connected:
            return
        record = followed.records.get("partition") or {}
        if record.get("locked") or record.get("operation"):
            return
        self._catching_up.add(partition)
        d = defer.Deferred.fromCoroutine(self._catch_up(partition))
        d.addErrback(lambda f: self._log.failure("catching up {partition}", f, partition=partition))
        d.addBoth(lambda _: self._catching_up.discard(partition))

    async def _reconcile(self, partition: str) -> list[str]:
        """Make the detectors of C{partition}'s PCA those of the database; those it changed."""
        have = await self._partitions.get(partition).detectors()
        want = {row.id: row.type for row in await self._store.detectors(partition)}
        for detector in sorted(have - set(want)):
            await self._pca(partition, "remove_detector", {"detector": detector})
        for detector in sorted(set(want) - have):
            await self._pca(partition, "add_detector", self._add_body(detector, want[detector]))
        return sorted(have ^ set(want))

    async def _catch_up(self, partition: str) -> None:
        if self._moves:
            return  # a move runs: after it
        try:
            changes = await self._reconcile(partition)
        except (RequestError, ControlError, StoreError) as e:
            self._log.warn(
                "PCA {partition} not yet told of the moves it missed: {error}",
                partition=partition,
                error=getattr(e, "reason", e),
            )
            return
        self._missed.discard(partition)
        if changes:
            self._note(f"PCA {partition} told of the detector moves it missed ({', '.join(changes)})", partition)

    def system_seen(self, partition: str, system: str) -> None:
        """
        See L{IInventoryEvents.system_seen}: tell it its partition if a
        forced move could not (and check the partition for a lock a dead ECA
        left, if its record had not come yet: L{_check_lock}).
        """
        self._check_lock(partition)
        if self._tell_later.get(system, "") != partition or system in self._telling:
            return
        self._telling.add(system)

        async def tell() -> None:
            if await self._assign(system, partition, quiet=True) and self._tell_later.get(system, "") == partition:
                del self._tell_later[system]
                self._note(f"{system} told it belongs to {partition}", partition)

        d = defer.Deferred.fromCoroutine(tell())
        d.addErrback(lambda f: self._log.failure("telling {system} its partition", f, system=system))
        d.addBoth(lambda _: self._telling.discard(system))

    # -- moving ----------------------------------------------------------------------------------

    def move_detector(
        self, user: User, detector_id: str, to: str | None, force: bool = False
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.move_detector} and the module docstring."""
        return self._journalled(
            user,
            "move_detector",
            {"detector": detector_id, "to": to, "force": force},
            lambda journal: self._move(journal, user, detector_id, to, force),
        )

    async def _move(
        self, journal: _Journalled, user: User, detector_id: str, to: str | None, force: bool
    ) -> dict[str, Any]:
        await self._ecs_control(user)
        what = f"the move of {detector_id} to {to or 'unassigned'} by {user.name}"
        # Taken in the turn the control check ends: of concurrent moves one wins.
        self.locks.take(what, [detector_id], [to])
        held: list[str | None] = [to]
        self._moves += 1
        try:
            row = await self._store.detector(detector_id)
            if row is None:
                raise ControlError("not_found", f"no detector {detector_id!r}")
            if to is not None:
                self._partitions.get(to)
            if row.partition == to:
                return dataclasses.asdict(row)
            self.locks.take(what, (), [row.partition])
            held.append(row.partition)
            journal.op = await self._store.begin_operation(
                "move_detector", user.name, detector_id, row.partition, to, force
            )
            return await self._move_locked(journal.op, row.type)
        finally:
            self._moves -= 1
            self.locks.release([detector_id], held)

    async def _move_locked(self, op: OperationRow, type: str) -> dict[str, Any]:
        """The journalled move, its locks held: lock the PCAs, commit, tell; undone on failure."""
        detector, source, to, force = op.detector, op.source, op.target, op.force
        assert detector is not None
        involved = [p for p in (source, to) if p is not None]
        locked: list[str] = []
        skipped: list[str] = []
        try:
            for partition in involved:  # phase 1: prepare and lock
                try:
                    record = await self._pca(partition, "status", {})
                except RequestError as e:
                    if force:
                        skipped.append(partition)
                        continue
                    raise ControlError("unavailable", f"PCA {partition} does not answer: {e.reason}") from None
                # A state the sequence does not know (renamed by a reload while
                # the PCA still runs the old one) counts as busy.
                known = record["state"] in self._sequence.states()
                if record.get("operation") or not known or self._sequence.summary_of(record["state"]) in (
                    "Configuring",
                    "Recording",
                ):
                    raise ControlError(
                        "conflict", f"partition {partition} is {record['state']}: cannot move detectors now"
                    )
                # Counted as locked before the answer: a lock taken whose
                # answer is lost is released too (unlocking is harmless).
                locked.append(partition)
                try:
                    await self._pca(partition, "lock", {})
                except RequestError as e:
                    raise ControlError("unavailable", f"PCA {partition} did not lock: {e.reason}") from None
            await self._store.commit_operation(op.id)  # phase 2: commit
            try:
                if source is not None and source not in skipped:
                    await self._pca(source, "remove_detector", {"detector": detector})
                if to is not None and to not in skipped:
                    await self._pca(to, "add_detector", self._add_body(detector, type))
                if await self._assign(detector, to, quiet=force):
                    self._tell_later.pop(detector, None)
                else:
                    self._tell_later[detector] = to  # forced: once its partition sees it again
            except (RequestError, ControlError) as e:
                await self._undo(op, type, skipped)
                raise ControlError("unavailable", f"move of {detector} undone: {e.reason}") from None
        finally:
            await self._unlock(locked)
        self._missed.update(skipped)  # they learn it when they answer again
        for partition in skipped:
            self.partition_seen(partition)
        moved = f"{detector} moved from {source or 'unassigned'} to {to or 'unassigned'}"
        if skipped:
            text = f"{moved}, forced past the PCA of {', '.join(skipped)} (told when it answers again)"
            self._log.warn("{text}", text=text)
            self._logbook.log("warn", "ECA", text, to or source)
        else:
            self._note(moved, to or source)
        return {"id": detector, "type": type, "partition": source}

    async def _unlock(self, partitions: list[str]) -> None:
        """Unlock PCAs; one that does not answer is unlocked when seen again (L{_check_lock})."""
        for partition in partitions:
            try:
                await self._pca(partition, "unlock", {})
            except (RequestError, ControlError) as e:
                self._log.error("unlock of {partition} failed: {error}", partition=partition, error=e)
                self._unchecked.add(partition)

    async def _undo(self, op: OperationRow, type: str, skipped: list[str]) -> None:
        """
        A move failed after the commit: the database first (only if the
        detector is still where this move put it), then what the PCAs were told.
        """
        detector, source, to = op.detector, op.source, op.target
        assert detector is not None
        if not await self._store.undo_move(op.id):
            self._logbook.log("error", "ECA", f"move of {detector} not undone: it is no longer in {to}", to)
            return
        if to is not None and to not in skipped:
            try:
                await self._pca(to, "remove_detector", {"detector": detector})
            except (RequestError, ControlError):
                pass  # best effort: it is told again when it asks the registry
        if source is not None and source not in skipped:
            try:
                await self._pca(source, "add_detector", {"detector": detector, "type": type})
            except (RequestError, ControlError):
                pass  # best effort, as above
        await self._assign(detector, source, quiet=True)

    # -- after a restart ---------------------------------------------------------------------------

    async def recover(self) -> None:
        """
        At start: every partition is checked once for a lock a dead ECA
        left (L{_check_lock}); the operations it left open hold their locks
        and are resumed once their PCAs answer (L{partition_seen}).
        """
        self._unchecked.update(row.id for row in await self._store.partitions())
        for op in await self._store.open_operations():
            where = op.source or op.target
            try:
                self.locks.take(
                    f"operation {op.id} ({op.action} by {op.user}, interrupted by an ECA restart)",
                    [op.detector],
                    [op.source, op.target],
                )
            except ControlError:
                pass  # an overlapping open operation already holds them: resumed first
            self._interrupted[op.id] = op
            self._log.warn("{text}", text=f"{_describe(op)} was interrupted: resumed when its PCAs answer")
            self._logbook.log("warn", "ECA", f"{_describe(op)} was interrupted by an ECA restart", where)
        for op in list(self._interrupted.values()):
            self._try_resume(op)

    def agents_resumed(self) -> None:
        """The supervisor has adopted the running agents: interrupted deletions may stop theirs now."""
        self._agents_ready = True
        for op in list(self._interrupted.values()):
            self._try_resume(op)

    def _check_lock(self, partition: str) -> None:
        """A PCA found locked while no operation of this ECA holds it is unlocked (a WARN line)."""
        if partition not in self._unchecked or partition not in self._partitions:
            return
        followed = self._partitions.get(partition)
        record = followed.records.get("partition")
        if not followed.connected or record is None:
            return
        self._unchecked.discard(partition)
        if not record.get("locked") or self.locks.holder("partition", partition) is not None:
            return
        text = f"partition {partition} was left locked by an operation that is over: unlocked"
        self._log.warn("{text}", text=text)
        self._logbook.log("warn", "ECA", text, partition)
        d = defer.Deferred.fromCoroutine(self._unlock([partition]))
        d.addErrback(lambda f: self._log.failure("unlocking {partition}", f, partition=partition))

    def _try_resume(self, op: OperationRow) -> None:
        """Resume C{op} if its PCAs answer (else when they do)."""
        watched = [p for p in (op.source, op.target) if p is not None and p in self._partitions]
        if op.id in self._resuming or not all(self._partitions.get(p).connected for p in watched):
            return
        if op.action != "move_detector" and not self._agents_ready:
            return  # after the supervisor has adopted the agents (a deleted one's is stopped)
        self._resuming.add(op.id)
        d = defer.Deferred.fromCoroutine(self._resume(op, watched))
        d.addErrback(lambda f: self._log.failure("resuming operation {id}", f, id=op.id))
        d.addBoth(lambda _: self._resuming.discard(op.id))

    async def _resume(self, op: OperationRow, watched: list[str]) -> None:
        """
        Roll C{op} forward (committed) or back (not): the database is the
        truth; the PCAs and the detector are made to agree with it, the
        PCAs unlocked, agents of deleted inventory stopped.
        """
        try:
            if op.action == "move_detector":
                for partition in watched:
                    await self._reconcile(partition)
                row = await self._store.detector(op.detector or "")
                if row is not None:
                    await self._assign(row.id, row.partition, quiet=True)
                for partition in watched:
                    await self._pca(partition, "unlock", {})
            elif op.phase == "committed" and op.action == "delete_detector" and op.detector is not None:
                await self._agents.stop_detector_agent(op.detector)
                await self._agents.detector_deleted(op.detector)
            elif op.phase == "committed" and op.source is not None:
                await self._partition_gone(op.source)
                await self._agents.partition_deleted(op.source)
        except (RequestError, ControlError, StoreError) as e:
            reason = getattr(e, "reason", e)
            self._log.warn("{op} not resumed yet: {error}", op=_describe(op), error=reason)
            return
        outcome = "completed after an ECA restart" if op.phase == "committed" else "rolled back after an ECA restart"
        arguments = {"detector": op.detector, "to": op.target, "force": op.force}
        if op.action == "delete_partition":
            arguments = {"partition": op.source, "force": op.force}
        elif op.action == "delete_detector":
            arguments = {"detector": op.detector, "force": op.force}
        await self._store.end_operation(op.id, outcome, (op.user, arguments))
        self._interrupted.pop(op.id, None)
        self.locks.release([op.detector], [op.source, op.target])
        self._log.warn("{op}: {outcome}", op=_describe(op), outcome=outcome)
        self._logbook.log("warn", "ECA", f"{_describe(op)}: {outcome}", op.source or op.target)


def _describe(op: OperationRow) -> str:
    """An operation for log lines, naming the detector and partitions."""
    if op.action == "move_detector":
        return f"move of {op.detector} from {op.source or 'unassigned'} to {op.target or 'unassigned'}"
    if op.action == "delete_detector":
        return f"deletion of detector {op.detector}"
    return f"deletion of partition {op.source}"
