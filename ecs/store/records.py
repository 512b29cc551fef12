# -*- test-case-name: tests.test_store -*-
"""
What happened: runs (with a snapshot of their configurations), the audit
trail and log events.

(About 600 lines, longer than most: runs and the audit trail stay in one
module because a partition command is written ahead with both in one
transaction (L{RecordOperations.command_ahead}, L{RecordOperations.resolve_pending}).)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ecs import runinfo
from ecs.config.logs import LEVELS as LOG_LEVELS
from ecs.store.errors import (
    _LIMIT_MAX,
    StoreError,
    _check_int,
    _check_number,
    _check_text,
    _show,
    _to_json,
    check_name,
)
from ecs.store.rows import AuditRow, ConfigRow, LogEntry, LogRow, RunRow
from ecs.store.txn import _all, _deferred, _exists, _one, _StoreArea, _Txn

_RUN_COLUMNS = (
    "number, partition, tag, configs, operator, started, ended, outcome, note, pending, pending_at,"
    " type, start_comment, end_comment, crew, conditions"
)

#: The commands written ahead with an open run (L{RecordOperations.command_ahead}), and the outcome each
#: gives it once carried out (a start: the run had stopped recording before, without stop or abort).
PENDING_OUTCOMES = {"stop": "stopped", "abort": "aborted", "start": "failed"}

#: The outcome of an audit row written ahead of its command, until the command is answered.
AUDIT_PENDING = "pending"


def _run_row(row: Sequence[Any]) -> RunRow:
    return RunRow(
        row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], row[7], row[8], row[9], row[10],
        row[11], row[12], row[13], json.loads(row[14] or "{}"), json.loads(row[15] or "{}"),
    )


def _joined(old: str | None, note: str | None) -> str | None:
    """A run's note with C{note} appended (notes accumulate, never replace)."""
    if not note:
        return old
    return note if not old else f"{old}; {note}"


def _select_run(txn: _Txn, number: int) -> Any:
    return _one(txn, f"SELECT {_RUN_COLUMNS} FROM runs WHERE number = ?", (number,))  # noqa: S608 - constant SQL, bound values


def _close_run(txn: _Txn, number: int, outcome: str, ended: float, note: str | None) -> RunRow:
    """Close open run C{number} (C{not_found}, or C{conflict} when it is closed already)."""
    row = _select_run(txn, number)
    if row is None:
        raise StoreError("not_found", f"no run {number}")
    if row[6] is not None:
        raise StoreError("conflict", f"run {number} already ended ({row[7]})")
    ended = max(ended, row[5])  # never before it started
    text = _joined(row[8], note)
    txn.execute(
        "UPDATE runs SET ended = ?, outcome = ?, note = ?, pending = NULL, pending_at = NULL, pending_audit = NULL"
        " WHERE number = ?",
        (ended, outcome, text, number),
    )
    return _run_row((*row[:6], ended, outcome, text, None, None, *row[11:]))


class RecordOperations(_StoreArea):
    """The operations on runs, the audit trail and log events."""

    # -- runs --------------------------------------------------------------------

    @_deferred
    async def start_run(
        self,
        partition: str,
        tag: str | None,
        configs: Mapping[str, ConfigRow | Mapping[str, Any]],
        operator: str,
        started: float | None = None,
        *,
        run_type: str | None = None,
        comment: str | None = None,
        crew: Mapping[str, str | None] | None = None,
        conditions: Mapping[str, Any] | None = None,
    ) -> RunRow:
        """
        Open the next run of C{partition}, recording the exact
        configurations (C{{system: ConfigRow}} or C{{system: {config_id,
        version, parameters}}}), started at C{started} (default now), with
        its type, start comment, crew (C{{role: user name or None}}) and
        conditions (checked as L{ecs.runinfo} says); C{conflict} while the
        partition has a run open.
        """
        check_name(partition, "partition id")
        if tag is not None:
            check_name(tag, "tag name", long=True)
        check_name(operator, "operator")
        snapshot = _snapshot(configs)
        text = json.dumps(snapshot, separators=(",", ":"))
        now = self._now() if started is None else _check_number(started, "run start")
        try:
            kind = None if run_type is None else runinfo.check_type(run_type)
            said = runinfo.check_comment(comment)
            checked = runinfo.check_conditions(conditions)
        except runinfo.RunInfoError as e:
            raise StoreError("bad_request", f"run {e.field}: {e.reason}") from None
        team = _crew(crew)
        extra = (kind, said, json.dumps(team, separators=(",", ":")), json.dumps(checked, separators=(",", ":")))

        def op(txn: _Txn) -> RunRow:
            if not _exists(txn, "partitions", "id", partition):
                raise StoreError("not_found", f"no partition {partition}")
            run = _one(
                txn, "SELECT number FROM runs WHERE partition = ? AND ended IS NULL", (partition,)
            )
            if run is not None:
                raise StoreError("conflict", f"partition {partition} already has run {run[0]} open")
            (number,) = _one(txn, "SELECT COALESCE(MAX(number), 0) + 1 FROM runs")
            txn.execute(
                "INSERT INTO runs (number, partition, tag, configs, operator, started,"
                " type, start_comment, crew, conditions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (number, partition, tag, text, operator, now, *extra),
            )
            return RunRow(number, partition, tag, json.loads(text), operator, now, None, None,
                          type=kind, start_comment=said, crew=team, conditions=checked)

        return await self._write(op, what=f"start run of {partition}")

    @_deferred
    async def end_run(
        self, number: int, outcome: str, ended: float | None = None, note: str | None = None
    ) -> RunRow:
        """
        Close an open run with C{outcome} (e.g. C{stopped}, C{aborted}), at
        C{ended} (default now; never before it started), appending C{note}
        to its note.  A command pending on it is forgotten (its audit row
        keeps its own outcome).
        """
        _check_int(number, "run number")
        check_name(outcome, "run outcome")
        when = self._now() if ended is None else _check_number(ended, "run end")
        if note is not None:
            _check_text(note, "run note")
        return await self._write(_close_run, number, outcome, when, note, what=f"end run {number}")

    @_deferred
    async def note_run(self, number: int, note: str) -> RunRow:
        """Append C{note} to the note of run C{number} (open or not)."""
        _check_int(number, "run number")
        _check_text(note, "run note")

        def op(txn: _Txn) -> RunRow:
            row = _select_run(txn, number)
            if row is None:
                raise StoreError("not_found", f"no run {number}")
            text = _joined(row[8], note)
            txn.execute("UPDATE runs SET note = ? WHERE number = ?", (text, number))
            return _run_row((*row[:8], text, *row[9:]))

        return await self._write(op, what=f"note run {number}")

    @_deferred
    async def command_ahead(
        self, user: str, action: str, arguments: Mapping[str, Any], partition: str,
        end_comment: str | None = None,
    ) -> tuple[int, int | None]:
        """
        Before a partition command goes out: its audit row (outcome
        C{pending}, see L{command_done}) and, for a stop or an abort, the
        command written on the partition's open run, in one transaction; a
        stop's C{end_comment} becomes the open run's end comment.
        Fires with C{(audit id, the open run's number or None)}.
        """
        check_name(partition, "partition id")
        try:
            end_comment = runinfo.check_comment(end_comment)
        except runinfo.RunInfoError as e:
            raise StoreError("bad_request", f"run end {e.field}: {e.reason}") from None
        _check_text(user, "audit user", empty=True)
        _check_text(action, "audit action")
        text = json.dumps(dict(arguments), default=str, separators=(",", ":"))
        now = self._now()

        def op(txn: _Txn) -> tuple[int, int | None]:
            txn.execute(
                "INSERT INTO audit (time, user, action, arguments, outcome) VALUES (?, ?, ?, ?, ?)",
                (now, user, action, text, AUDIT_PENDING),
            )
            audit_id = int(txn.lastrowid)
            run = _one(txn, "SELECT number FROM runs WHERE partition = ? AND ended IS NULL", (partition,))
            if run is None:
                return audit_id, None
            if action in PENDING_OUTCOMES:
                txn.execute(
                    "UPDATE runs SET pending = ?, pending_at = ?, pending_audit = ? WHERE number = ?",
                    (action, now, audit_id, run[0]),
                )
            if action == "stop" and end_comment is not None:
                txn.execute("UPDATE runs SET end_comment = ? WHERE number = ?", (end_comment, run[0]))
            return audit_id, int(run[0])

        return await self._write(op, what=f"record {action} of {partition}")

    @_deferred
    async def command_done(self, audit_id: int, outcome: str, refused: bool = False) -> bool:
        """
        The command of audit row C{audit_id} was answered: its outcome
        replaces C{pending}; if it was C{refused}, the open run no longer
        waits for it.  Fires with whether the row was still pending.
        """
        _check_int(audit_id, "audit id")
        _check_text(outcome, "audit outcome")

        def op(txn: _Txn) -> bool:
            txn.execute(
                "UPDATE audit SET outcome = ? WHERE id = ? AND outcome = ?", (outcome, audit_id, AUDIT_PENDING)
            )
            changed = bool(txn.rowcount)
            if refused:
                # a refused stop did not end the run: its comment is not the run's end comment
                txn.execute(
                    "UPDATE runs SET end_comment = CASE WHEN pending = 'stop' THEN NULL ELSE end_comment END,"
                    " pending = NULL, pending_at = NULL, pending_audit = NULL"
                    " WHERE pending_audit = ? AND ended IS NULL",
                    (audit_id,),
                )
            return changed

        return await self._write(op, what=f"audit outcome {audit_id}")

    @_deferred
    async def resolve_pending(self, number: int, done: bool) -> RunRow:
        """
        A restarted ECA found out whether the command pending on open run
        C{number} was carried out: if C{done}, the run closes with that
        command's outcome at the time it was written; if not, the run stays
        open without it.  Its audit row says which, in the same transaction.
        """
        _check_int(number, "run number")

        def op(txn: _Txn) -> RunRow:
            row = _select_run(txn, number)
            if row is None:
                raise StoreError("not_found", f"no run {number}")
            command = row[9]
            if row[6] is not None or command is None:
                return _run_row(row)
            (audit_id,) = _one(txn, "SELECT pending_audit FROM runs WHERE number = ?", (number,))
            if done:
                outcome = "ok (carried out; the ECA restarted before the answer)"
                note = "recording had stopped before the next start" if command == "start" else None
                result = _close_run(txn, number, PENDING_OUTCOMES[command], row[10], note)
            else:
                outcome = "not done: the ECA restarted before the request reached the PCA"
                txn.execute(
                    "UPDATE runs SET pending = NULL, pending_at = NULL, pending_audit = NULL WHERE number = ?",
                    (number,),
                )
                result = _run_row((*row[:9], None, None, *row[11:]))
            if audit_id is not None:
                txn.execute(
                    "UPDATE audit SET outcome = ? WHERE id = ? AND outcome = ?", (outcome, audit_id, AUDIT_PENDING)
                )
            return result

        return await self._write(op, what=f"resolve the command pending on run {number}")

    @_deferred
    async def settle_pending_audit(self, outcome: str) -> int:
        """
        At start: the audit rows still C{pending} whose command no open run
        waits for get C{outcome} (their answer was lost with the previous
        ECA).  Fires with how many.
        """
        _check_text(outcome, "audit outcome")

        def op(txn: _Txn) -> int:
            txn.execute(
                "UPDATE audit SET outcome = ? WHERE outcome = ? AND id NOT IN"
                " (SELECT pending_audit FROM runs WHERE ended IS NULL AND pending_audit IS NOT NULL)",
                (outcome, AUDIT_PENDING),
            )
            return int(txn.rowcount)

        return await self._write(op, what="settle pending audit rows")

    @_deferred
    async def open_runs(self) -> list[RunRow]:
        """Every open run (at most one per partition)."""

        def op(txn: _Txn) -> list[RunRow]:
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE ended IS NULL ORDER BY number"  # noqa: S608 - constant SQL
            return [_run_row(r) for r in _all(txn, sql)]

        return await self._read(op, what="read open runs")

    @_deferred
    async def run(self, number: int) -> RunRow:
        """One run; C{not_found} if there is none."""
        _check_int(number, "run number")

        def op(txn: _Txn) -> RunRow:
            row = _select_run(txn, number)
            if row is None:
                raise StoreError("not_found", f"no run {number}")
            return _run_row(row)

        return await self._read(op, what=f"read run {number}")

    @_deferred
    async def open_run(self, partition: str) -> RunRow | None:
        """The open run of C{partition}, or C{None}."""
        check_name(partition, "partition id")

        def op(txn: _Txn) -> RunRow | None:
            row = _one(
                txn,
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE partition = ? AND ended IS NULL",  # noqa: S608 - constant SQL, bound values
                (partition,),
            )
            return None if row is None else _run_row(row)

        return await self._read(op, what=f"read open run of {partition}")

    @_deferred
    async def runs(
        self,
        partition: str | None = None,
        limit: int = 100,
        before: int | None = None,
        *,
        run_type: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[RunRow]:
        """
        Runs newest first: of one partition, numbered below C{before}, of
        one type, started at or after C{since} and before C{until}, at most
        C{limit}.
        """
        _check_int(limit, "limit", 1, _LIMIT_MAX)
        where: list[str] = []
        params: list[str | int | float] = []
        if partition is not None:
            where.append("partition = ?")
            params.append(check_name(partition, "partition id"))
        if run_type is not None:
            try:
                params.append(runinfo.check_type(run_type))
            except runinfo.RunInfoError as e:
                raise StoreError("bad_request", f"run {e.field}: {e.reason}") from None
            where.append("type = ?")
        _time_range(where, params, "started", since, until)
        if before is not None:
            where.append("number < ?")
            params.append(_check_int(before, "run number"))
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608 - constant SQL, bound values
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY number DESC LIMIT ?"
        params.append(limit)

        def op(txn: _Txn) -> list[RunRow]:
            return [_run_row(r) for r in _all(txn, sql, params)]

        return await self._read(op, what="list runs")

    # -- audit trail ---------------------------------------------------------------

    @_deferred
    async def audit(
        self, user: str, action: str, arguments: Mapping[str, Any], outcome: str
    ) -> AuditRow:
        """
        Record that C{user} did C{action} with C{arguments} and C{outcome}.
        The user is free text (a failed login's name is recorded as given);
        arguments that are not JSON are recorded as their C{str}.
        """
        _check_text(user, "audit user", empty=True)
        _check_text(action, "audit action")
        _check_text(outcome, "audit outcome", empty=True)
        if not isinstance(arguments, Mapping):
            raise StoreError("bad_request", "audit arguments must be a mapping")
        text = json.dumps(dict(arguments), default=str, separators=(",", ":"))
        now = self._now()

        def op(txn: _Txn) -> AuditRow:
            txn.execute(
                "INSERT INTO audit (time, user, action, arguments, outcome) VALUES (?, ?, ?, ?, ?)",
                (now, user, action, text, outcome),
            )
            return AuditRow(int(txn.lastrowid), now, user, action, json.loads(text), outcome)

        return await self._write(op, what=f"audit {action}")

    @_deferred
    async def audit_entries(
        self,
        limit: int = 100,
        user: str | None = None,
        action: str | None = None,
        before: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[AuditRow]:
        """
        Audit entries newest first, by user or action, with id below
        C{before}, written at or after C{since} and before C{until}.
        """
        _check_int(limit, "limit", 1, _LIMIT_MAX)
        where: list[str] = []
        params: list[str | int | float] = []
        if user is not None:
            where.append("user = ?")
            params.append(_check_text(user, "audit user", empty=True))
        if action is not None:
            where.append("action = ?")
            params.append(_check_text(action, "audit action"))
        if before is not None:
            where.append("id < ?")
            params.append(_check_int(before, "audit id"))
        _time_range(where, params, "time", since, until)
        sql = "SELECT id, time, user, action, arguments, outcome FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)

        def op(txn: _Txn) -> list[AuditRow]:
            return [
                AuditRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in _all(txn, sql, params)
            ]

        return await self._read(op, what="list audit entries")

    # -- logs ------------------------------------------------------------------

    @_deferred
    async def add_logs(self, entries: Iterable[LogEntry]) -> int:
        """Store log events in one transaction; fires with how many."""
        rows = [_log_params(i, e) for i, e in enumerate(entries)]
        if not rows:
            return 0

        def op(txn: _Txn) -> int:
            txn.executemany(
                "INSERT INTO logs (time, partition, level, source, message) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            return len(rows)

        return await self._write(op, what=f"add {len(rows)} log events")

    @_deferred
    async def logs(
        self,
        partition: str | None = None,
        level: str | None = None,
        since: float | None = None,
        q: str | None = None,
        limit: int = 500,
        until: float | None = None,
        before_id: int | None = None,
    ) -> list[LogRow]:
        """
        Log events newest first: of one partition, at C{level} or above,
        at or after C{since}, before C{until}, whose message contains C{q}
        (plain text, no wildcards; ASCII case-insensitive), at most C{limit}.

        With C{before_id} (and C{until}), the page after the event
        C{(until, before_id)} in that order: events at exactly C{until} with a
        smaller id are included, so paging never skips events that share a
        time stamp.
        """
        _check_int(limit, "limit", 1, _LIMIT_MAX)
        where: list[str] = []
        params: list[str | int | float] = []
        if partition is not None:
            where.append("partition = ?")
            params.append(check_name(partition, "partition id"))
        if level is not None:
            if level not in LOG_LEVELS:
                raise StoreError(
                    "bad_request", f"invalid log level {_show(level)}: use {', '.join(LOG_LEVELS)}"
                )
            where.append("level >= ?")
            params.append(LOG_LEVELS.index(level))
        if since is not None:
            where.append("time >= ?")
            params.append(_check_number(since, "since"))
        if until is not None and before_id is not None:
            # the order is (time DESC, id DESC): strictly after the cursor
            where.append("(time < ? OR (time = ? AND id < ?))")
            cursor = _check_number(until, "until")
            params += [cursor, cursor, _check_int(before_id, "before_id", 0)]
        elif before_id is not None:
            raise StoreError("bad_request", "before_id needs until (the time of that event)")
        elif until is not None:
            where.append("time < ?")
            params.append(_check_number(until, "until"))
        if q is not None:
            _check_text(q, "search text", empty=True)
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("message LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        sql = "SELECT id, time, partition, level, source, message FROM logs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC LIMIT ?"
        params.append(limit)

        def op(txn: _Txn) -> list[LogRow]:
            return [
                LogRow(r[0], r[1], r[2], LOG_LEVELS[r[3]], r[4], r[5]) for r in _all(txn, sql, params)
            ]

        return await self._read(op, what="list log events")

    @_deferred
    async def prune_logs(self, before: float) -> int:
        """Delete the log events older than C{before}; fires with how many."""
        cutoff = _check_number(before, "before")

        def op(txn: _Txn) -> int:
            txn.execute("DELETE FROM logs WHERE time < ?", (cutoff,))
            return int(txn.rowcount)

        return await self._write(op, what="prune log events")


def _time_range(where: list[str], params: list[str | int | float], column: str,
                since: float | None, until: float | None) -> None:
    """C{since <= column < until} (each when given) added to a query's conditions."""
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(_check_number(since, "since"))
    if until is not None:
        where.append(f"{column} < ?")
        params.append(_check_number(until, "until"))


def _crew(crew: object) -> dict[str, str | None]:
    """Who was on duty: C{{role: user name or None}}, at most 8 roles."""
    if crew is None:
        return {}
    if not isinstance(crew, Mapping) or len(crew) > 8:
        raise StoreError("bad_request", "run crew must be a mapping of at most 8 roles to user names")
    result: dict[str, str | None] = {}
    for role, user in crew.items():
        check_name(role, "crew role")
        result[role] = None if user is None else _check_text(user, f"crew {role}")
    return result


def _snapshot(configs: object) -> dict[str, dict[str, Any]]:
    if not isinstance(configs, Mapping):
        raise StoreError("bad_request", "run configurations must be a mapping of system to configuration")
    result: dict[str, dict[str, Any]] = {}
    for system, value in configs.items():
        check_name(system, "system id")
        if isinstance(value, ConfigRow):
            value = value.snapshot()
        if not isinstance(value, Mapping) or set(value) != {"config_id", "version", "parameters"}:
            raise StoreError(
                "bad_request",
                f"configuration of {system} in a run needs exactly config_id, version and parameters",
            )
        check_name(value["config_id"], "configuration id", long=True)
        _check_int(value["version"], "configuration version")
        _to_json(value["parameters"], f"parameters of {value['config_id']}")
        result[system] = {
            "config_id": value["config_id"],
            "version": value["version"],
            "parameters": value["parameters"],
        }
    return result


def _log_params(index: int, entry: object) -> tuple[Any, ...]:
    if not isinstance(entry, LogEntry):
        raise StoreError("bad_request", f"log event {index} is not a LogEntry: {_show(entry)}")
    if entry.level not in LOG_LEVELS:
        raise StoreError("bad_request", f"log event {index}: invalid level {_show(entry.level)}")
    if entry.partition is not None:
        check_name(entry.partition, f"partition of log event {index}")
    if not isinstance(entry.source, str) or not isinstance(entry.message, str):
        raise StoreError("bad_request", f"log event {index}: source and message must be text")
    return (
        _check_number(entry.time, f"time of log event {index}"),
        entry.partition,
        LOG_LEVELS.index(entry.level),
        entry.source,
        entry.message,
    )
