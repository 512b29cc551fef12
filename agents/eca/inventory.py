# -*- test-case-name: tests.test_eca -*-
"""
L{Inventory}: partitions and detectors created, deleted and moved
(original §5, corrected).

Each action needs the expert role and the ECS control, changes the
database in one transaction, tells the agents, and writes the audit trail
with its outcome.

Moving a detector is two-phase: both PCAs are locked (and must agree: not
configuring or recording), then the database is committed, then the PCAs
and the detector are told; a failure after the commit (a PCA refusing, the
detector not answering) moves the detector back; the locks are released on
every path.  With C{force}, an unreachable PCA is left out and made to
agree with the database when it answers again (a restarted one asks the
registry anyway), and a detector that does not answer is told once its new
partition's PCA sees it connected again: the pending tells this class
keeps, and learns about through L{IInventoryEvents}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.agents import AgentActions
from agents.eca.errors import need
from agents.eca.interfaces import IAudit, IControlScopes, IInventoryEvents, ILogBook
from agents.eca.partitions import Partitions
from ecs.config.settings import Subsystems
from ecs.control import ControlError, User
from ecs.fsm.sequence import Sequence
from ecs.net.remote_registry import Entry
from ecs.net.transport import INode, RequestError
from ecs.store import Store, StoreError


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
    ) -> None:
        self._store = store
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
        and unplaced (L{AgentActions.partition_deleted}).
        """

        async def work() -> None:
            await self._ecs_control(user)
            partition = self._partitions.get(partition_id)
            state = partition.summary()["state"]
            if not force and partition.connected and state != self._sequence.idle:
                raise ControlError("conflict", f"partition {partition_id} is {state}: abort it first (or force)")
            holder = await self._store.control(partition_id)
            detectors = await self._store.delete_partition(partition_id, unassign=True)
            if holder is not None:  # the store dropped it with the partition
                self._scopes.dropped(partition_id, holder.holder, "partition deleted")
            try:
                await self._tell_globals("remove_partition", partition_id, every=True)
            except ControlError as e:
                self._logbook.log("warn", "ECA", f"deleting {partition_id}: {e.reason}", None)
            for detector in detectors:
                self._tell_later.pop(detector, None)
                await self._assign(detector, None, quiet=True)
            self._missed.discard(partition_id)
            self._partitions.unwatch(partition_id)
            self._note(f"partition {partition_id} deleted by {user.name}")

        async def deleted() -> None:
            await self._audit.audited(user, "delete_partition", {"partition": partition_id, "force": force}, work)
            await self._agents.partition_deleted(partition_id)

        return defer.Deferred.fromCoroutine(deleted())

    # -- detectors -----------------------------------------------------------------------

    def create_detector(self, user: User, detector_id: str, type: str) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.create_detector}: a known type, unassigned."""

        async def work() -> dict[str, Any]:
            await self._ecs_control(user)
            if type not in self._subsystems.detector_types:
                known = ", ".join(sorted(self._subsystems.detector_types))
                raise ControlError("bad_request", f"unknown detector type {type!r} (known: {known})")
            return dataclasses.asdict(await self._store.add_detector(detector_id, type))

        return self._audit.audited(user, "create_detector", {"detector": detector_id, "type": type}, work)

    def delete_detector(self, user: User, detector_id: str, force: bool = False) -> defer.Deferred[None]:
        """See L{ecs.control.IControlCenter.delete_detector}: only unassigned detectors."""

        async def work() -> None:
            await self._ecs_control(user)
            row = await self._store.detector(detector_id)
            if row is None:
                raise ControlError("not_found", f"no detector {detector_id!r}")
            if row.partition is not None:
                raise ControlError("conflict", f"{detector_id} is in partition {row.partition}: move it out first")
            await self._store.delete_detector(detector_id)

        return self._audit.audited(user, "delete_detector", {"detector": detector_id, "force": force}, work)

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
        See L{IInventoryEvents.partition_seen}: if a forced move left the
        partition's PCA out, make its detectors those of the database now
        (unless it is busy or locked: then at a later change).
        """
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

    async def _catch_up(self, partition: str) -> None:
        try:
            have = await self._partitions.get(partition).detectors()
            want = {row.id: row.type for row in await self._store.detectors(partition)}
            if self._moves:
                return  # a move started meanwhile: after it
            for detector in sorted(have - set(want)):
                await self._pca(partition, "remove_detector", {"detector": detector})
            for detector in sorted(set(want) - have):
                await self._pca(partition, "add_detector", self._add_body(detector, want[detector]))
        except (RequestError, ControlError, StoreError) as e:
            self._log.warn(
                "PCA {partition} not yet told of the moves it missed: {error}",
                partition=partition,
                error=getattr(e, "reason", e),
            )
            return
        self._missed.discard(partition)
        changes = sorted(have ^ set(want))
        if changes:
            self._note(f"PCA {partition} told of the detector moves it missed ({', '.join(changes)})", partition)

    def system_seen(self, partition: str, system: str) -> None:
        """See L{IInventoryEvents.system_seen}: tell it its partition if a forced move could not."""
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
        return self._audit.audited(
            user,
            "move_detector",
            {"detector": detector_id, "to": to, "force": force},
            lambda: self._move(user, detector_id, to, force),
        )

    async def _move(self, user: User, detector_id: str, to: str | None, force: bool) -> dict[str, Any]:
        await self._ecs_control(user)
        row = await self._store.detector(detector_id)
        if row is None:
            raise ControlError("not_found", f"no detector {detector_id!r}")
        source = row.partition
        if to is not None:
            self._partitions.get(to)
        if source == to:
            return dataclasses.asdict(row)
        involved = [p for p in (source, to) if p is not None]
        locked: list[str] = []
        skipped: list[str] = []
        self._moves += 1
        try:
            for partition in involved:  # phase 1: prepare and lock
                try:
                    record = await self._pca(partition, "status", {})
                except RequestError as e:
                    if force:
                        skipped.append(partition)
                        continue
                    raise ControlError("unavailable", f"PCA {partition} does not answer: {e.reason}") from None
                if record.get("operation") or self._sequence.summary_of(record["state"]) in (
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
            moved = await self._store.move_detector(detector_id, to)  # phase 2: commit
            try:
                if source is not None and source not in skipped:
                    await self._pca(source, "remove_detector", {"detector": detector_id})
                if to is not None and to not in skipped:
                    await self._pca(to, "add_detector", self._add_body(detector_id, row.type))
                if await self._assign(detector_id, to, quiet=force):
                    self._tell_later.pop(detector_id, None)
                else:
                    self._tell_later[detector_id] = to  # forced: once its partition sees it again
            except (RequestError, ControlError) as e:
                await self._undo(detector_id, row.type, source, to, skipped)
                raise ControlError("unavailable", f"move of {detector_id} undone: {e.reason}") from None
        finally:
            for partition in locked:  # every lock taken is released, on every path
                try:
                    await self._pca(partition, "unlock", {})
                except (RequestError, ControlError) as e:
                    self._log.error("unlock of {partition} failed: {error}", partition=partition, error=e)
            self._moves -= 1
        self._missed.update(skipped)  # they learn it when they answer again
        for partition in skipped:
            self.partition_seen(partition)
        self._note(
            f"{detector_id} moved from {source or 'unassigned'} to {to or 'unassigned'}"
            + (f" (forced past {', '.join(skipped)})" if skipped else "")
        )
        return dataclasses.asdict(moved)

    async def _undo(self, detector: str, type: str, source: str | None, to: str | None, skipped: list[str]) -> None:
        """A move failed after the commit: the database first, then what the PCAs were told."""
        await self._store.move_detector(detector, source)
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
