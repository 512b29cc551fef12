# -*- test-case-name: tests.test_exclusions_eca -*-
"""
L{Exclusions}: a system excluded from its partition's configure and runs,
or included again, by the partition's controller (issue 14).

The ECA's database holds the exclusions in force (L{ecs.store.exclusions});
each PCA holds its own copy (it needs it to derive its state, and keeps it
in its state file across its restarts) and is made to agree with the
database whenever the ECA gets a fresh picture of it: the PCA started or
restarted, or the ECA did (L{Exclusions.partition_fresh}).  A PCA that
refused then (an operation ran) is asked again when its record changes.

An exclusion asked for by a person: the role (operator) and the
partition's control are checked, the system must be one the partition
shows, the PCA decides (not while recording or configuring, never for a
system its sequence never excludes), then the database is written; if that
fails, the PCA is put back as it was.  Each request is audited with its
outcome and logged for operators.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.errors import need, pca_error
from agents.eca.interfaces import NO_NOTES, IAudit, IControlScopes, IELogNotes, IExclusionEvents, ILogBook
from agents.eca.partitions import Partition, Partitions
from ecs import protocol
from ecs.control import ControlError, User
from ecs.net.transport import RequestError
from ecs.store import NAME_RE, Store, StoreError

SYSTEM_PREFIX = "system/"


def excluded_in(partition: Partition) -> set[str]:
    """The systems the PCA of C{partition} shows as excluded."""
    return {
        key[len(SYSTEM_PREFIX):]
        for key, value in partition.records.items()
        if key.startswith(SYSTEM_PREFIX) and value.get("excluded")
    }


@implementer(IExclusionEvents)
class Exclusions:
    """Exclude and include; the PCAs kept in agreement with the database."""

    _log = Logger()

    def __init__(
        self, store: Store, partitions: Partitions, scopes: IControlScopes, audit: IAudit, logbook: ILogBook,
        notes: IELogNotes = NO_NOTES,
    ) -> None:
        self._store = store
        self._notes = notes
        self._partitions = partitions
        self._scopes = scopes
        self._audit = audit
        self._logbook = logbook
        #: Partitions with a change or an agreement in progress (one at a time each).
        self._busy: set[str] = set()
        #: Partitions whose PCA has not yet agreed with the database.
        self._disagree: set[str] = set()
        #: Of those, the ones whose disagreement is logged already.
        self._warned: set[str] = set()

    # -- asked by people ---------------------------------------------------------------------

    def change(self, user: User, partition_id: str, system: object, exclude: bool) -> defer.Deferred[dict[str, Any]]:
        """
        Exclude C{system} from partition C{partition_id} (or include it):
        C{forbidden} without the operator role, C{not_found} for an unknown
        partition or system, C{bad_request} for a bad name, C{conflict} when
        the user does not hold the partition's control or the PCA refuses
        (recording, configuring, a system never excluded).
        """
        return defer.Deferred.fromCoroutine(self._change(user, partition_id, system, exclude))

    async def _change(self, user: User, partition_id: str, system: object, exclude: bool) -> dict[str, Any]:
        need(user, "operator")
        if not isinstance(system, str) or not NAME_RE.fullmatch(system):
            raise ControlError("bad_request", "'system' must be a system id (letters, digits, _ . : @ -)")
        partition = self._partitions.get(partition_id)
        action = "exclude" if exclude else "include"

        async def work() -> dict[str, Any]:
            await self._scopes.require_holder(user, partition_id)
            if SYSTEM_PREFIX + system not in partition.records:
                raise ControlError("not_found", f"no system {system!r} in partition {partition_id}")
            if partition_id in self._busy:
                raise ControlError("conflict", f"an exclusion of partition {partition_id} is being changed: try again")
            self._busy.add(partition_id)
            try:
                reply = await self._tell(partition, action, system, user.name)
                await self._write(partition, system, exclude, user.name)
            finally:
                self._busy.discard(partition_id)
            done = "excluded" if exclude else "included again (the next configure configures it)"
            self._logbook.log("info", "ECA", f"{user.name}: {system} {done} in partition {partition_id}", partition_id)
            self._notes.note(f"{user.name}: {system} {done} in partition {partition_id}", partition_id)
            return reply

        result: dict[str, Any] = await self._audit.audited(
            user, action, {"partition": partition_id, "system": system}, work
        )
        return result

    async def _tell(self, partition: Partition, action: str, system: str, who: str) -> dict[str, Any]:
        try:
            return await partition.command(action, {"system": system}, who)
        except RequestError as e:
            if e.code == protocol.UNKNOWN_SYSTEM:
                raise ControlError("not_found", e.reason) from None
            raise pca_error(e) from None

    async def _write(self, partition: Partition, system: str, exclude: bool, user: str) -> None:
        """The database follows the PCA; if it cannot, the PCA is put back (the database is the truth)."""
        try:
            if exclude:
                await self._store.exclude_system(partition.id, system, user)
            else:
                await self._store.include_system(partition.id, system)
        except StoreError:
            undo = "include" if exclude else "exclude"
            try:
                await partition.command(undo, {"system": system}, "ECA")
            except RequestError as e:
                self._disagree.add(partition.id)  # told again at its next change
                self._logbook.log(
                    "warn", "ECA", f"PCA {partition.id} not put back ({undo} {system}): {e.reason}", partition.id
                )
            raise

    # -- the PCAs kept in agreement (IExclusionEvents) --------------------------------------

    def partition_fresh(self, partition: str) -> None:
        """See L{IExclusionEvents.partition_fresh}: make the PCA's exclusions those of the database."""
        self._disagree.add(partition)
        self._agree_soon(partition)

    def partition_seen(self, partition: str) -> None:
        """See L{IExclusionEvents.partition_seen}: try again if the PCA did not agree yet."""
        if partition in self._disagree:
            self._agree_soon(partition)

    def _agree_soon(self, partition: str) -> None:
        if partition in self._busy:
            return
        self._busy.add(partition)
        d = defer.Deferred.fromCoroutine(self._agree(partition))
        d.addErrback(lambda f: self._log.failure("exclusions of {partition}", f, partition=partition))
        d.addBoth(lambda _: self._busy.discard(partition))

    async def _agree(self, partition_id: str) -> None:
        if partition_id not in self._partitions:
            self._disagree.discard(partition_id)
            return
        try:
            want = {row.system for row in await self._store.exclusions(partition_id)}
        except StoreError as e:
            self._log.warn("exclusions of {partition} not read: {error}", partition=partition_id, error=e.reason)
            return
        partition = self._partitions.get(partition_id)
        present = {k[len(SYSTEM_PREFIX):] for k in partition.records if k.startswith(SYSTEM_PREFIX)}
        have = excluded_in(partition)
        changes = [("exclude", s) for s in sorted((want - have) & present)]
        changes += [("include", s) for s in sorted(have - want)]
        refused = []
        for action, system in changes:
            try:
                await partition.command(action, {"system": system}, "ECA")
            except RequestError as e:
                refused.append(f"{action} {system}: {e.code}: {e.reason}")
        if refused:
            if partition_id not in self._warned:  # said once per disagreement, tried again at each change
                self._warned.add(partition_id)
                self._logbook.log(
                    "warn", "ECA", f"PCA {partition_id} does not agree with the exclusions yet: "
                    + "; ".join(refused), partition_id,
                )
            return
        self._disagree.discard(partition_id)
        self._warned.discard(partition_id)
        if changes:
            told = ", ".join(f"{a} {s}" for a, s in changes)
            self._logbook.log("info", "ECA", f"PCA {partition_id} told the exclusions of the database ({told})",
                              partition_id)
