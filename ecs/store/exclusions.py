# -*- test-case-name: tests.test_store_exclusions -*-
"""
Exclusions (issue 14, schema version 5): the systems left out of their
partition's configure and runs, who excluded them and when (table
C{exclusions}), and who was excluded from each run (table
C{run_exclusions}, filled by a trigger in the transaction that writes the
run, so a run's record always says who sat it out).

A detector that leaves its partition (moved or deleted) loses its
exclusion there (triggers); deleting a partition deletes its exclusions.
The caller (L{agents.eca.exclusions}) checks the partition's state and
that the system is a member; the store checks names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ecs.store.errors import StoreError, check_name
from ecs.store.txn import _all, _deferred, _exists, _StoreArea, _Txn

#: Runs asked about per statement (SQLite limits the bound values of one statement).
RUNS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class ExclusionRow:
    """One system excluded from its partition."""

    partition: str
    system: str
    excluded_by: str
    excluded_at: float


class ExclusionOperations(_StoreArea):
    """The operations on exclusions."""

    @_deferred
    async def exclusions(self, partition: str | None = None) -> list[ExclusionRow]:
        """The exclusions in force (of C{partition}, or of every partition), by partition and system."""
        if partition is not None:
            check_name(partition, "partition id")

        def op(txn: _Txn) -> list[ExclusionRow]:
            sql = "SELECT partition, system, excluded_by, excluded_at FROM exclusions"
            args: tuple[str, ...] = ()
            if partition is not None:
                sql += " WHERE partition = ?"
                args = (partition,)
            return [ExclusionRow(*row) for row in _all(txn, sql + " ORDER BY partition, system", args)]

        return await self._read(op, what="list exclusions")

    @_deferred
    async def exclude_system(self, partition: str, system: str, user: str) -> bool:
        """
        Record C{system} excluded from C{partition} by C{user}; whether it was
        not already (C{not_found} for an unknown partition).
        """
        check_name(partition, "partition id")
        check_name(system, "system id")
        check_name(user, "user name")
        now = self._now()

        def op(txn: _Txn) -> bool:
            if not _exists(txn, "partitions", "id", partition):
                raise StoreError("not_found", f"no partition {partition!r}")
            txn.execute(
                "INSERT INTO exclusions (partition, system, excluded_by, excluded_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (partition, system, user, now),
            )
            return bool(txn.rowcount)

        return await self._write(op, what=f"exclude {system} from {partition}")

    @_deferred
    async def include_system(self, partition: str, system: str) -> bool:
        """Remove the exclusion of C{system} from C{partition}; whether there was one."""
        check_name(partition, "partition id")
        check_name(system, "system id")

        def op(txn: _Txn) -> bool:
            txn.execute("DELETE FROM exclusions WHERE partition = ? AND system = ?", (partition, system))
            return bool(txn.rowcount)

        return await self._write(op, what=f"include {system} in {partition}")

    @_deferred
    async def run_exclusions(self, runs: Sequence[int]) -> dict[int, list[ExclusionRow]]:
        """Who was excluded from each of C{runs} (runs without exclusions are left out)."""
        numbers = list(runs)
        if not all(type(n) is int for n in numbers):
            raise StoreError("bad_request", "run numbers: a list of integers")

        def op(txn: _Txn) -> dict[int, list[ExclusionRow]]:
            found: dict[int, list[ExclusionRow]] = {}
            for first in range(0, len(numbers), RUNS_PER_STATEMENT):
                chunk = numbers[first:first + RUNS_PER_STATEMENT]
                marks = ", ".join("?" * len(chunk))
                rows = _all(
                    txn,
                    "SELECT r.run, p.partition, r.system, r.excluded_by, r.excluded_at FROM run_exclusions r"  # noqa: S608 - placeholders only
                    f" JOIN runs p ON p.number = r.run WHERE r.run IN ({marks}) ORDER BY r.run, r.system",
                    chunk,
                )
                for run, *rest in rows:
                    found.setdefault(run, []).append(ExclusionRow(*rest))
            return found

        return await self._read(op, what="read run exclusions") if numbers else {}
