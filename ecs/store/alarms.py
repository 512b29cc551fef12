# -*- test-case-name: tests.test_store_alarms -*-
"""
Alarms (table C{alarms}, schema version 3): what is wrong, what clears it,
and who saw it.

An alarm is keyed by C{(kind, source, partition)}.  It is I{active} while
it is not cleared, or cleared but not acknowledged; a partial unique index
holds at most one active alarm per key, so raising an active one again
updates it (its text, severity and action; a cleared one is reopened with
a new raise time) instead of adding a row.  Acknowledging and shelving
never delete: every alarm stays as history.

The caller (L{agents.eca.alarms}) decides when to raise and clear; the
store only keeps the rows and checks the values it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ecs.store.errors import StoreError, _show
from ecs.store.txn import _all, _deferred, _one, _StoreArea, _Txn

#: The kinds of alarm (machine-readable; see the alarm contract).
ALARM_KINDS = (
    "system_error",
    "system_unreachable",
    "run_failed",
    "run_interrupted",
    "agent_flapping",
    "agent_failed",
    "dcs_alarm",
    "pca_lost",
    "storage_failed",
    "recovery_action",
    "sequence_failed",
)

#: The severities, least severe first.
SEVERITIES = ("warning", "error", "critical")

#: Longest text, action, source or shelve reason stored (longer is cut, not refused: the system writes them).
MAX_ALARM_TEXT = 2000

#: Longest shelve reason an operator may give.
MAX_SHELVE_REASON = 500

#: At most this many alarms in one history listing.
MAX_ALARM_HISTORY = 1000


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One alarm (the fields of the alarm contract)."""

    id: int
    kind: str
    source: str
    partition: str | None
    severity: str
    text: str
    action: str
    raised_at: float
    cleared_at: float | None
    acknowledged_by: str | None
    acknowledged_at: float | None
    shelved_until: float | None
    shelved_by: str | None
    shelve_reason: str | None

    @property
    def active(self) -> bool:
        """Not cleared, or cleared but not acknowledged."""
        return self.cleared_at is None or self.acknowledged_at is None

    @property
    def key(self) -> tuple[str, str, str | None]:
        """What identifies the condition: C{(kind, source, partition)}."""
        return (self.kind, self.source, self.partition)

    def shelved(self, now: float) -> bool:
        """Whether it is shelved at C{now}."""
        return self.shelved_until is not None and self.shelved_until > now

    def to_json(self) -> dict[str, Any]:
        """The alarm as the API shows it."""
        return asdict(self)


_COLUMNS = (
    "id, kind, source, partition, severity, text, action, raised_at, cleared_at,"
    " acknowledged_by, acknowledged_at, shelved_until, shelved_by, shelve_reason"
)
_ACTIVE = "(cleared_at IS NULL OR acknowledged_at IS NULL)"
_KEY = "kind = ? AND source = ? AND IFNULL(partition, '') = IFNULL(?, '')"


def _row(row: Sequence[Any]) -> AlarmRow:
    return AlarmRow(*row)


def _cut(value: str) -> str:
    return value if len(value) <= MAX_ALARM_TEXT else value[: MAX_ALARM_TEXT - 1] + "\u2026"


def _check_key(kind: object, source: object, partition: object) -> None:
    if kind not in ALARM_KINDS:
        raise StoreError("bad_request", f"invalid alarm kind {_show(kind)}: use {', '.join(ALARM_KINDS)}")
    if not isinstance(source, str) or not source or len(source) > 300:
        raise StoreError("bad_request", f"invalid alarm source {_show(source)}: 1 to 300 characters")
    if partition is not None and (not isinstance(partition, str) or not partition):
        raise StoreError("bad_request", f"invalid alarm partition {_show(partition)}")


def _select_one(txn: _Txn, alarm_id: int) -> AlarmRow | None:
    row = _one(txn, f"SELECT {_COLUMNS} FROM alarms WHERE id = ?", (alarm_id,))  # noqa: S608 - constant SQL, bound values
    return None if row is None else _row(row)


class AlarmOperations(_StoreArea):
    """The operations on alarms."""

    @_deferred
    async def raise_alarm(
        self,
        kind: str,
        source: str,
        partition: str | None,
        severity: str,
        text: str,
        action: str,
        cleared: bool = False,
    ) -> tuple[AlarmRow, bool]:
        """
        Raise the alarm C{(kind, source, partition)}: a new row, or the
        active one updated (see the module docstring).  C{cleared}: the
        condition is already over (a failed run): the alarm is raised
        cleared, so it stays active until acknowledged.  Fires with the row
        and whether it is new (or reopened: a new raise, not an update).
        """
        _check_key(kind, source, partition)
        if severity not in SEVERITIES:
            raise StoreError("bad_request", f"invalid severity {_show(severity)}: use {', '.join(SEVERITIES)}")
        text, action = _cut(str(text)), _cut(str(action))
        now = self._now()
        cleared_at = now if cleared else None

        def op(txn: _Txn) -> tuple[AlarmRow, bool]:
            found = _one(
                txn,
                f"SELECT id, cleared_at FROM alarms WHERE {_KEY} AND {_ACTIVE}",  # noqa: S608 - constant SQL
                (kind, source, partition),
            )
            if found is None:
                txn.execute(
                    "INSERT INTO alarms (kind, source, partition, severity, text, action, raised_at, cleared_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, source, partition, severity, text, action, now, cleared_at),
                )
                alarm_id, new = int(txn.lastrowid), True
            else:
                alarm_id, was_cleared = int(found[0]), found[1] is not None
                # A cleared one raised again is a new raise (new time); an
                # open one raised again only gets its text updated.
                new = was_cleared and not cleared
                txn.execute(
                    "UPDATE alarms SET severity = ?, text = ?, action = ?, cleared_at = ?,"
                    " raised_at = CASE WHEN ? THEN ? ELSE raised_at END WHERE id = ?",
                    (severity, text, action, cleared_at, int(was_cleared or cleared), now, alarm_id),
                )
            row = _select_one(txn, alarm_id)
            assert row is not None
            return row, new

        return await self._write(op, what=f"raise alarm {kind} of {source}")

    @_deferred
    async def clear_alarm(self, kind: str, source: str, partition: str | None) -> AlarmRow | None:
        """Clear the open alarm C{(kind, source, partition)}; the row, or None when none was open."""
        _check_key(kind, source, partition)
        now = self._now()

        def op(txn: _Txn) -> AlarmRow | None:
            found = _one(
                txn,
                f"SELECT id FROM alarms WHERE {_KEY} AND cleared_at IS NULL",  # noqa: S608 - constant SQL
                (kind, source, partition),
            )
            if found is None:
                return None
            txn.execute("UPDATE alarms SET cleared_at = ? WHERE id = ?", (now, found[0]))
            return _select_one(txn, int(found[0]))

        return await self._write(op, what=f"clear alarm {kind} of {source}")

    @_deferred
    async def acknowledge_alarm(self, alarm_id: int, user: str) -> AlarmRow:
        """
        Acknowledge an alarm (C{not_found}); one already acknowledged keeps
        its first acknowledgement.
        """
        now = self._now()

        def op(txn: _Txn) -> AlarmRow:
            txn.execute(
                "UPDATE alarms SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ? AND acknowledged_at IS NULL",
                (user, now, alarm_id),
            )
            row = _select_one(txn, alarm_id)
            if row is None:
                raise StoreError("not_found", f"no alarm {alarm_id}")
            return row

        return await self._write(op, what=f"acknowledge alarm {alarm_id}")

    @_deferred
    async def shelve_alarm(self, alarm_id: int, until: float, user: str, reason: str) -> AlarmRow:
        """Shelve an active alarm until C{until} (C{not_found}; C{conflict} when it is no longer active)."""
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_SHELVE_REASON:
            raise StoreError("bad_request", f"reason: 1 to {MAX_SHELVE_REASON} characters")

        def op(txn: _Txn) -> AlarmRow:
            row = _select_one(txn, alarm_id)
            if row is None:
                raise StoreError("not_found", f"no alarm {alarm_id}")
            if not row.active:
                raise StoreError("conflict", f"alarm {alarm_id} is cleared and acknowledged: nothing to shelve")
            txn.execute(
                "UPDATE alarms SET shelved_until = ?, shelved_by = ?, shelve_reason = ? WHERE id = ?",
                (float(until), user, reason, alarm_id),
            )
            shelved = _select_one(txn, alarm_id)
            assert shelved is not None
            return shelved

        return await self._write(op, what=f"shelve alarm {alarm_id}")

    @_deferred
    async def alarm(self, alarm_id: int) -> AlarmRow | None:
        """One alarm, or None."""
        return await self._read(_select_one, alarm_id, what=f"read alarm {alarm_id}")

    @_deferred
    async def alarms(
        self, active_only: bool = True, partition: str | None = None, limit: int = MAX_ALARM_HISTORY
    ) -> list[AlarmRow]:
        """Alarms, newest first: the active ones, or (C{active_only=False}) the history too."""
        where, params = [], []
        if active_only:
            where.append(_ACTIVE)
        if partition is not None:
            where.append("partition = ?")
            params.append(partition)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_COLUMNS} FROM alarms {clause} ORDER BY id DESC LIMIT ?"  # noqa: S608 - constant SQL

        def op(txn: _Txn) -> list[AlarmRow]:
            return [_row(r) for r in _all(txn, sql, (*params, int(limit)))]

        return await self._read(op, what="list alarms")


__all__ = [
    "ALARM_KINDS",
    "MAX_ALARM_HISTORY",
    "MAX_SHELVE_REASON",
    "SEVERITIES",
    "AlarmOperations",
    "AlarmRow",
]
