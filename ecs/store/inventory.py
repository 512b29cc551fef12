# -*- test-case-name: tests.test_store -*-
"""
The inventory: partitions, detectors (and the partition each is assigned
to) and the global systems; and the journal of the management operations
that change it (table C{management_ops}, schema version 4).

A journalled operation is written before it acts (L{begin_operation},
phase C{prepared}); its change of the inventory and the phase
C{committed} are one transaction (L{commit_operation}); it is closed with
its outcome, and its audit row in the same transaction
(L{end_operation}).  A move commits only if the detector is still where the
operation found it, and its roll-back (L{undo_move}) only if the detector
is still where the move put it (compare-and-set): a roll-back never touches
a detector another operation owns.

(About 420 lines: the inventory and its journal belong together, the
journal's commit being the inventory's change.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ecs.store.errors import ANY, ECS_SCOPE, NAME_RE, StoreError, _AnyType, _show, check_name
from ecs.store.rows import DetectorRow, PartitionRow
from ecs.store.txn import _all, _deferred, _exists, _one, _StoreArea, _Txn

OPERATIONS = ("move_detector", "delete_detector", "delete_partition")
"""The journalled management operations."""


@dataclass(frozen=True, slots=True)
class OperationRow:
    """
    A journalled management operation: C{phase} C{prepared} (nothing
    changed yet) or C{committed} (the inventory changed); C{outcome} is
    C{None} while it is open.
    """

    id: int
    action: str
    detector: str | None
    source: str | None
    target: str | None
    force: bool
    user: str
    phase: str
    started: float
    outcome: str | None = None


_OP_COLUMNS = "id, action, detector, source, target, force, user, phase, started, outcome"


def _op_row(row: Any) -> OperationRow:
    return OperationRow(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7], row[8], row[9])


def _open_op(txn: _Txn, op_id: int) -> OperationRow:
    row = _one(txn, f"SELECT {_OP_COLUMNS} FROM management_ops WHERE id = ?", (op_id,))  # noqa: S608 - constant SQL
    if row is None or row[9] is not None:
        raise StoreError("conflict", f"management operation {op_id} is not open")
    return _op_row(row)


def _delete_partition(txn: _Txn, partition_id: str, unassign: bool) -> list[str]:
    if not _exists(txn, "partitions", "id", partition_id):
        raise StoreError("not_found", f"no partition {partition_id}")
    run = _one(txn, "SELECT number FROM runs WHERE partition = ? AND ended IS NULL", (partition_id,))
    if run is not None:
        raise StoreError("conflict", f"partition {partition_id} has run {run[0]} open")
    members = [d for (d,) in _all(txn, "SELECT id FROM detectors WHERE partition = ? ORDER BY id", (partition_id,))]
    if members and not unassign:
        raise StoreError(
            "conflict",
            f"partition {partition_id} still has detectors {', '.join(members)}",
        )
    txn.execute("UPDATE detectors SET partition = NULL WHERE partition = ?", (partition_id,))
    txn.execute("DELETE FROM control WHERE scope = ?", (partition_id,))
    txn.execute("DELETE FROM partitions WHERE id = ?", (partition_id,))
    return members


class InventoryOperations(_StoreArea):
    """The operations on partitions, detectors and global systems."""

    # -- partitions ------------------------------------------------------------

    @_deferred
    async def add_partition(self, partition_id: str) -> PartitionRow:
        """Create a partition; C{conflict} if it exists."""
        check_name(partition_id, "partition id")
        if partition_id == ECS_SCOPE:
            raise StoreError("bad_request", f"{ECS_SCOPE!r} is reserved and cannot name a partition")
        now = self._now()

        def op(txn: _Txn) -> PartitionRow:
            if _exists(txn, "partitions", "id", partition_id):
                raise StoreError("conflict", f"partition {partition_id} already exists")
            txn.execute("INSERT INTO partitions (id, created) VALUES (?, ?)", (partition_id, now))
            return PartitionRow(partition_id, now)

        return await self._write(op, what=f"add partition {partition_id}")

    @_deferred
    async def delete_partition(self, partition_id: str, unassign: bool = False) -> list[str]:
        """
        Delete a partition and its control ownership.  C{conflict} if it
        still has detectors, unless C{unassign}, which makes them unassigned
        in the same transaction; C{conflict} too while it has an open run.
        Fires with the ids of the detectors it had.
        """
        check_name(partition_id, "partition id")

        def op(txn: _Txn) -> list[str]:
            return _delete_partition(txn, partition_id, unassign)

        return await self._write(op, what=f"delete partition {partition_id}")

    @_deferred
    async def partitions(self) -> list[PartitionRow]:
        """All partitions, by id."""

        def op(txn: _Txn) -> list[PartitionRow]:
            return [PartitionRow(*r) for r in _all(txn, "SELECT id, created FROM partitions ORDER BY id")]

        return await self._read(op, what="list partitions")

    # -- detectors -------------------------------------------------------------

    @_deferred
    async def add_detector(self, detector_id: str, type: str, partition: str | None = None) -> DetectorRow:
        """
        Create a detector of C{type} (validated by the caller against
        C{etc/subsystems.yaml}), assigned to C{partition} or unassigned.
        """
        check_name(detector_id, "detector id")
        check_name(type, "detector type")
        if partition is not None:
            check_name(partition, "partition id")
        now = self._now()

        def op(txn: _Txn) -> DetectorRow:
            if _exists(txn, "detectors", "id", detector_id):
                raise StoreError("conflict", f"detector {detector_id} already exists")
            if _exists(txn, "global_systems", "id", detector_id):
                raise StoreError("conflict", f"{detector_id} is a global system")
            if partition is not None and not _exists(txn, "partitions", "id", partition):
                raise StoreError("not_found", f"no partition {partition}")
            txn.execute(
                "INSERT INTO detectors (id, type, partition, created) VALUES (?, ?, ?, ?)",
                (detector_id, type, partition, now),
            )
            return DetectorRow(detector_id, type, partition)

        return await self._write(op, what=f"add detector {detector_id}")

    @_deferred
    async def delete_detector(self, detector_id: str) -> DetectorRow:
        """Delete a detector; fires with the deleted row (its partition included)."""
        check_name(detector_id, "detector id")

        def op(txn: _Txn) -> DetectorRow:
            row = _one(txn, "SELECT id, type, partition FROM detectors WHERE id = ?", (detector_id,))
            if row is None:
                raise StoreError("not_found", f"no detector {detector_id}")
            txn.execute("DELETE FROM detectors WHERE id = ?", (detector_id,))
            return DetectorRow(*row)

        return await self._write(op, what=f"delete detector {detector_id}")

    @_deferred
    async def detector(self, detector_id: str) -> DetectorRow | None:
        """One detector, or C{None} (also for a name no detector can have)."""
        if not isinstance(detector_id, str) or not NAME_RE.fullmatch(detector_id):
            return None

        def op(txn: _Txn) -> DetectorRow | None:
            row = _one(txn, "SELECT id, type, partition FROM detectors WHERE id = ?", (detector_id,))
            return None if row is None else DetectorRow(*row)

        return await self._read(op, what=f"read detector {detector_id}")

    @_deferred
    async def detectors(self, partition: str | _AnyType | None = ANY) -> list[DetectorRow]:
        """
        Detectors by id: all (L{ANY}), the unassigned ones (C{None}) or
        those of one partition.
        """
        if partition is not ANY and partition is not None:
            check_name(partition, "partition id")
        sql = "SELECT id, type, partition FROM detectors"
        params: tuple[Any, ...] = ()
        if partition is None:
            sql += " WHERE partition IS NULL"
        elif partition is not ANY:
            sql += " WHERE partition = ?"
            params = (partition,)

        def op(txn: _Txn) -> list[DetectorRow]:
            return [DetectorRow(*r) for r in _all(txn, sql + " ORDER BY id", params)]

        return await self._read(op, what="list detectors")

    @_deferred
    async def move_detector(self, detector_id: str, to: str | None) -> DetectorRow:
        """
        Assign a detector to partition C{to} (C{None}: unassigned); fires
        with the row as it was before.
        """
        check_name(detector_id, "detector id")
        if to is not None:
            check_name(to, "partition id")

        def op(txn: _Txn) -> DetectorRow:
            row = _one(txn, "SELECT id, type, partition FROM detectors WHERE id = ?", (detector_id,))
            if row is None:
                raise StoreError("not_found", f"no detector {detector_id}")
            if to is not None and not _exists(txn, "partitions", "id", to):
                raise StoreError("not_found", f"no partition {to}")
            txn.execute("UPDATE detectors SET partition = ? WHERE id = ?", (to, detector_id))
            return DetectorRow(*row)

        return await self._write(op, what=f"move detector {detector_id}")

    # -- the journal of management operations -----------------------------------

    @_deferred
    async def begin_operation(
        self,
        action: str,
        user: str,
        detector: str | None = None,
        source: str | None = None,
        target: str | None = None,
        force: bool = False,
    ) -> OperationRow:
        """
        Journal an operation before it acts (phase C{prepared}).  A move or
        a detector's deletion needs the detector where C{source} says
        (C{conflict} otherwise: it moved meanwhile) and no other open
        operation on it (C{conflict} naming that one).
        """
        if action not in OPERATIONS:
            raise StoreError("bad_request", f"unknown management operation {_show(action)}")
        for value, what in ((detector, "detector id"), (source, "partition id"), (target, "partition id")):
            if value is not None:
                check_name(value, what)
        now = self._now()

        def op(txn: _Txn) -> OperationRow:
            if detector is not None:
                row = _one(txn, "SELECT partition FROM detectors WHERE id = ?", (detector,))
                if row is None:
                    raise StoreError("not_found", f"no detector {detector}")
                if row[0] != source:
                    raise StoreError("conflict", f"{detector} is in {row[0] or 'no partition'} now, not {source}")
                other = _one(
                    txn,
                    "SELECT id, action, user FROM management_ops WHERE detector = ? AND ended IS NULL",
                    (detector,),
                )
                if other is not None:
                    raise StoreError(
                        "conflict", f"{detector} is held by operation {other[0]} ({other[1]} by {other[2]})"
                    )
            if target is not None and not _exists(txn, "partitions", "id", target):
                raise StoreError("not_found", f"no partition {target}")
            txn.execute(
                "INSERT INTO management_ops (action, detector, source, target, force, user, phase, started)"
                " VALUES (?, ?, ?, ?, ?, ?, 'prepared', ?)",
                (action, detector, source, target, int(force), user, now),
            )
            return OperationRow(int(txn.lastrowid), action, detector, source, target, force, user, "prepared", now)

        return await self._write(op, what=f"journal {action}")

    @_deferred
    async def commit_operation(self, op_id: int) -> list[str]:
        """
        Make a prepared operation's change and mark it C{committed}, in one
        transaction: a move assigns the detector to the target if it is
        still in the source (C{conflict} otherwise); a detector's deletion
        deletes it and its agent's placement; a partition's deletion (see
        L{delete_partition}, its detectors made unassigned) fires with the
        detectors it had.
        """

        def op(txn: _Txn) -> list[str]:
            row = _open_op(txn, op_id)
            if row.phase != "prepared":
                raise StoreError("conflict", f"management operation {op_id} is already committed")
            members: list[str] = []
            if row.action == "move_detector":
                txn.execute(
                    "UPDATE detectors SET partition = ? WHERE id = ? AND partition IS ?",
                    (row.target, row.detector, row.source),
                )
                if txn.rowcount == 0:
                    raise StoreError("conflict", f"{row.detector} is no longer in {row.source or 'no partition'}")
            elif row.action == "delete_detector":
                txn.execute("DELETE FROM detectors WHERE id = ? AND partition IS ?", (row.detector, row.source))
                if txn.rowcount == 0:
                    raise StoreError("conflict", f"{row.detector} is no longer in {row.source or 'no partition'}")
                txn.execute("DELETE FROM placements WHERE agent = ?", (f"detector:{row.detector}",))
            else:
                assert row.source is not None
                members = _delete_partition(txn, row.source, True)
            txn.execute("UPDATE management_ops SET phase = 'committed' WHERE id = ?", (op_id,))
            return members

        return await self._write(op, what=f"commit management operation {op_id}")

    @_deferred
    async def undo_move(self, op_id: int) -> bool:
        """
        Roll a committed move back: the detector returns to the source only
        if it is still in the target (compare-and-set); fires with whether
        it did.  The operation stays open (L{end_operation} closes it).
        """

        def op(txn: _Txn) -> bool:
            row = _open_op(txn, op_id)
            if row.action != "move_detector" or row.phase != "committed":
                return False
            txn.execute(
                "UPDATE detectors SET partition = ? WHERE id = ? AND partition IS ?",
                (row.source, row.detector, row.target),
            )
            undone = bool(txn.rowcount)
            txn.execute("UPDATE management_ops SET phase = 'prepared' WHERE id = ?", (op_id,))
            return undone

        return await self._write(op, what=f"undo management operation {op_id}")

    @_deferred
    async def end_operation(self, op_id: int, outcome: str, audit: tuple[str, Mapping[str, Any]] | None = None) -> None:
        """
        Close an operation with its outcome (C{ok}, or what went wrong) and,
        with C{audit} C{(user, arguments)}, its audit row in the same
        transaction.
        """
        if not isinstance(outcome, str) or not outcome:
            raise StoreError("bad_request", "an operation's outcome is a non-empty text")
        now = self._now()
        text = json.dumps(dict(audit[1]), default=str, separators=(",", ":")) if audit is not None else ""

        def op(txn: _Txn) -> None:
            row = _open_op(txn, op_id)
            txn.execute("UPDATE management_ops SET ended = ?, outcome = ? WHERE id = ?", (now, outcome, op_id))
            if audit is not None:
                txn.execute(
                    "INSERT INTO audit (time, user, action, arguments, outcome) VALUES (?, ?, ?, ?, ?)",
                    (now, audit[0], row.action, text, outcome),
                )

        await self._write(op, what=f"end management operation {op_id}")

    @_deferred
    async def open_operations(self) -> list[OperationRow]:
        """The operations still open (interrupted, when the ECA starts), oldest first."""

        def op(txn: _Txn) -> list[OperationRow]:
            sql = f"SELECT {_OP_COLUMNS} FROM management_ops WHERE ended IS NULL ORDER BY id"  # noqa: S608 - constant SQL
            return [_op_row(r) for r in _all(txn, sql)]

        return await self._read(op, what="list open management operations")

    # -- global systems --------------------------------------------------------

    @_deferred
    async def set_global_systems(self, ids: Iterable[str]) -> list[str]:
        """Make the stored global systems exactly C{ids}; fires with them sorted."""
        if isinstance(ids, str) or not isinstance(ids, Iterable):
            raise StoreError("bad_request", f"global systems must be a list, not {_show(ids)}")
        wanted = sorted({check_name(i, "global system id") for i in ids})

        def op(txn: _Txn) -> list[str]:
            clashes = [i for i in wanted if _exists(txn, "detectors", "id", i)]
            if clashes:
                raise StoreError("conflict", f"{', '.join(clashes)} already named detectors")
            stored = {i for (i,) in _all(txn, "SELECT id FROM global_systems")}
            txn.executemany("DELETE FROM global_systems WHERE id = ?", [(i,) for i in sorted(stored - set(wanted))])
            txn.executemany("INSERT INTO global_systems (id) VALUES (?)", [(i,) for i in wanted if i not in stored])
            return wanted

        return await self._write(op, what="set global systems")

    @_deferred
    async def global_systems(self) -> list[str]:
        """The global system ids, sorted."""

        def op(txn: _Txn) -> list[str]:
            return [i for (i,) in _all(txn, "SELECT id FROM global_systems ORDER BY id")]

        return await self._read(op, what="list global systems")
