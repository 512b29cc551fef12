# -*- test-case-name: tests.test_store -*-
"""
The inventory: partitions, detectors (and the partition each is assigned
to) and the global systems.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ecs.store.errors import ANY, ECS_SCOPE, NAME_RE, StoreError, _AnyType, _show, check_name
from ecs.store.rows import DetectorRow, PartitionRow
from ecs.store.txn import _all, _deferred, _exists, _one, _StoreArea, _Txn


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
            if not _exists(txn, "partitions", "id", partition_id):
                raise StoreError("not_found", f"no partition {partition_id}")
            run = _one(
                txn, "SELECT number FROM runs WHERE partition = ? AND ended IS NULL", (partition_id,)
            )
            if run is not None:
                raise StoreError("conflict", f"partition {partition_id} has run {run[0]} open")
            members = [
                d
                for (d,) in _all(
                    txn, "SELECT id FROM detectors WHERE partition = ? ORDER BY id", (partition_id,)
                )
            ]
            if members and not unassign:
                raise StoreError(
                    "conflict",
                    f"partition {partition_id} still has detectors {', '.join(members)}",
                )
            txn.execute("UPDATE detectors SET partition = NULL WHERE partition = ?", (partition_id,))
            txn.execute("DELETE FROM control WHERE scope = ?", (partition_id,))
            txn.execute("DELETE FROM partitions WHERE id = ?", (partition_id,))
            return members

        return await self._write(op, what=f"delete partition {partition_id}")

    @_deferred
    async def partitions(self) -> list[PartitionRow]:
        """All partitions, by id."""

        def op(txn: _Txn) -> list[PartitionRow]:
            return [PartitionRow(*r) for r in _all(txn, "SELECT id, created FROM partitions ORDER BY id")]

        return await self._read(op, what="list partitions")

    # -- detectors -------------------------------------------------------------

    @_deferred
    async def add_detector(
        self, detector_id: str, type: str, partition: str | None = None
    ) -> DetectorRow:
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
            txn.executemany(
                "DELETE FROM global_systems WHERE id = ?", [(i,) for i in sorted(stored - set(wanted))]
            )
            txn.executemany(
                "INSERT INTO global_systems (id) VALUES (?)", [(i,) for i in wanted if i not in stored]
            )
            return wanted

        return await self._write(op, what="set global systems")

    @_deferred
    async def global_systems(self) -> list[str]:
        """The global system ids, sorted."""

        def op(txn: _Txn) -> list[str]:
            return [i for (i,) in _all(txn, "SELECT id FROM global_systems ORDER BY id")]

        return await self._read(op, what="list global systems")
