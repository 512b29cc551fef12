# -*- test-case-name: tests.test_eca -*-
"""
L{Records}: what the interfaces read of the store's history and
inventory: runs, stored log lines, and the systems view (the state tables
are read once, then kept).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet import defer

from agents.eca.errors import need, raise_store
from ecs.config.settings import Subsystems
from ecs.control import ControlError, User
from ecs.fsm.sequence import Sequence
from ecs.fsm.systems import systems_view, tables_json
from ecs.store import RunRow, Store


def _run(row: RunRow) -> dict[str, Any]:
    """A run record for the interfaces."""
    return dataclasses.asdict(row)


class Records:
    """Runs, logs and systems for the interfaces."""

    def __init__(self, store: Store, subsystems: Subsystems, sequence: Sequence) -> None:
        self._store = store
        self._subsystems = subsystems
        self._sequence = sequence
        self._tables: tuple[dict[str, dict[str, Any]], dict[str, str]] | None = None

    def systems(self) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.systems}."""
        if self._tables is None:
            self._tables = tables_json(self._subsystems, self._sequence)
        tables, table_of = self._tables
        return self._store.detectors().addCallbacks(
            lambda rows: systems_view(
                self._subsystems, self._sequence, [dataclasses.asdict(r) for r in rows], tables, table_of
            ),
            raise_store,
        )

    def runs(
        self, partition_id: str | None = None, limit: int = 100, run_type: str | None = None,
        since: float | None = None, until: float | None = None,
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{ecs.control.IControlCenter.runs}; each run says who was excluded from it (C{excluded})."""
        d = defer.Deferred.fromCoroutine(self._runs(partition_id, limit, run_type, since, until))
        return d.addErrback(raise_store)

    async def _runs(
        self, partition_id: str | None, limit: int, run_type: str | None, since: float | None, until: float | None
    ) -> list[dict[str, Any]]:
        rows = await self._store.runs(partition_id, limit, run_type=run_type, since=since, until=until)
        excluded = await self._store.run_exclusions([r.number for r in rows])
        return [
            {
                **_run(r),
                "excluded": [
                    {"system": e.system, "excluded_by": e.excluded_by, "excluded_at": e.excluded_at}
                    for e in excluded.get(r.number, [])
                ],
            }
            for r in rows
        ]

    def audit(
        self, user: User, who: str | None, action: str | None, since: float | None, until: float | None,
        limit: int, before: int | None,
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{ecs.control.IControlCenter.audit} (expert and up)."""
        try:
            need(user, "expert")
        except ControlError as e:
            return defer.fail(e)
        d = self._store.audit_entries(limit, who, action, before, since=since, until=until)
        return d.addCallbacks(lambda rows: [dataclasses.asdict(r) for r in rows], raise_store)

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
        """See L{ecs.control.IControlCenter.logs}."""
        d = self._store.logs(
            partition=partition_id, level=level, since=since, q=q, limit=limit, until=until, before_id=before_id
        )
        return d.addCallbacks(lambda rows: [dataclasses.asdict(r) for r in rows], raise_store)
