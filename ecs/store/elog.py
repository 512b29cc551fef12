# -*- test-case-name: tests.test_store_elog -*-
"""
The electronic logbook (issue 14, schema version 5): entries written by
people and by the ECS itself (table C{logbook_entries}), with small files
attached (table C{logbook_attachments}).

Nothing is ever changed or deleted (triggers refuse it, whoever asks): a
correction is a new entry whose C{corrects} names the entry it corrects,
and every entry read says which entries correct it (C{corrected_by}).

Not to be confused with L{ecs.store.records}' C{logs}: the operator log
lines, pruned after their retention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ecs.store.errors import _TEXT_MAX, StoreError, _check_int, _check_text, check_name
from ecs.store.records import _time_range
from ecs.store.txn import _all, _deferred, _one, _StoreArea, _Txn

#: The longest entry, in characters.
MAX_TEXT = _TEXT_MAX
#: The largest attachment, in bytes.
MAX_ATTACHMENT = 1 << 20
#: The most attachments an entry may have.
MAX_ATTACHMENTS = 3
#: The longest attachment name and content type, in characters.
MAX_ATTACHMENT_NAME = 200
#: The largest run number (an SQLite integer).
MAX_RUN = 2**63 - 1

_COLUMNS = "e.id, e.time, e.author, e.automatic, e.text, e.partition, e.run, e.corrects"


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """What an entry says of one of its files (the bytes are read alone)."""

    n: int
    name: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attached file with its bytes."""

    name: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ELogRow:
    """One logbook entry, with the ids of the entries that correct it (oldest first)."""

    id: int
    time: float
    author: str
    automatic: bool
    text: str
    partition: str | None
    run: int | None
    corrects: int | None
    corrected_by: tuple[int, ...]
    attachments: tuple[AttachmentInfo, ...]


def check_attachments(attachments: Sequence[Attachment]) -> None:
    """Refuse more than L{MAX_ATTACHMENTS}, an empty or too large file, or a bad name or type, naming it."""
    if len(attachments) > MAX_ATTACHMENTS:
        raise StoreError("bad_request", f"attachments: at most {MAX_ATTACHMENTS} per entry")
    for n, a in enumerate(attachments, 1):
        for what, value in (("name", a.name), ("content_type", a.content_type)):
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_ATTACHMENT_NAME:
                raise StoreError("bad_request", f"attachment {n}: {what} must be 1 to {MAX_ATTACHMENT_NAME} characters")
        if not isinstance(a.data, bytes) or not a.data or len(a.data) > MAX_ATTACHMENT:
            raise StoreError("bad_request", f"attachment {n} ({a.name}): 1 byte to {MAX_ATTACHMENT} bytes")


class ELogOperations(_StoreArea):
    """The operations on the electronic logbook."""

    @_deferred
    async def add_logbook_entry(
        self, author: str, text: str, partition: str | None = None, run: int | None = None,
        corrects: int | None = None, automatic: bool = False, attachments: Sequence[Attachment] = (),
    ) -> ELogRow:
        """
        Write an entry; the entry as stored.  C{bad_request} naming what is
        wrong, C{not_found} when C{corrects} names no entry.
        """
        check_name(author, "author")
        _check_text(text, "logbook text")
        if not text.strip():
            raise StoreError("bad_request", "logbook text: must not be blank")
        if partition is not None:
            check_name(partition, "partition id")
        if run is not None:
            _check_int(run, "run number", 1, MAX_RUN)
        if corrects is not None:
            _check_int(corrects, "corrected entry id", 1, MAX_RUN)
        files = list(attachments)
        check_attachments(files)
        now = self._now()

        def op(txn: _Txn) -> ELogRow:
            if corrects is not None and _one(txn, "SELECT 1 FROM logbook_entries WHERE id = ?", (corrects,)) is None:
                raise StoreError("not_found", f"no logbook entry {corrects}")
            txn.execute(
                "INSERT INTO logbook_entries (time, author, automatic, text, partition, run, corrects)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, author, int(automatic), text, partition, run, corrects),
            )
            entry = int(txn.lastrowid)
            txn.executemany(
                "INSERT INTO logbook_attachments (entry, n, name, content_type, data) VALUES (?, ?, ?, ?, ?)",
                [(entry, n, a.name, a.content_type, a.data) for n, a in enumerate(files, 1)],
            )
            return _rows(txn, "e.id = ?", [entry], 1)[0]

        return await self._write(op, what="add a logbook entry")

    @_deferred
    async def logbook_entries(
        self, text: str | None = None, partition: str | None = None, run: int | None = None,
        author: str | None = None, since: float | None = None, until: float | None = None,
        limit: int = 100, before: int | None = None,
    ) -> list[ELogRow]:
        """
        Entries newest first: containing C{text} (case-insensitive), of a
        partition, a run or an author, written at or after C{since} and
        before C{until}, with id below C{before} (the next page).
        """
        _check_int(limit, "limit", 1, 100_000)
        where: list[str] = []
        params: list[str | int | float] = []
        if text is not None:
            where.append("instr(lower(e.text), ?) > 0")
            params.append(_check_text(text, "text searched").lower())
        if partition is not None:
            where.append("e.partition = ?")
            params.append(check_name(partition, "partition id"))
        if run is not None:
            where.append("e.run = ?")
            params.append(_check_int(run, "run number", 1, MAX_RUN))
        if author is not None:
            where.append("e.author = ?")
            params.append(check_name(author, "author"))
        if before is not None:
            where.append("e.id < ?")
            params.append(_check_int(before, "entry id", 1, MAX_RUN))
        _time_range(where, params, "e.time", since, until)

        def op(txn: _Txn) -> list[ELogRow]:
            return _rows(txn, " AND ".join(where) or "1", params, limit)

        return await self._read(op, what="list logbook entries")

    @_deferred
    async def logbook_attachment(self, entry: int, n: int) -> Attachment:
        """Attachment C{n} (from 1) of entry C{entry}; C{not_found} when there is none."""
        _check_int(entry, "entry id", 1, MAX_RUN)
        _check_int(n, "attachment number", 1, MAX_ATTACHMENTS)

        def op(txn: _Txn) -> Attachment:
            row = _one(
                txn, "SELECT name, content_type, data FROM logbook_attachments WHERE entry = ? AND n = ?", (entry, n)
            )
            if row is None:
                raise StoreError("not_found", f"no attachment {n} of logbook entry {entry}")
            return Attachment(row[0], row[1], bytes(row[2]))

        return await self._read(op, what=f"read attachment {n} of logbook entry {entry}")


def _rows(txn: _Txn, where: str, params: Sequence[object], limit: int) -> list[ELogRow]:
    """The entries matching C{where}, newest first, with their corrections and attachments."""
    rows = _all(
        txn, f"SELECT {_COLUMNS} FROM logbook_entries e WHERE {where} ORDER BY e.id DESC LIMIT ?",  # noqa: S608 - our conditions, bound values
        [*params, limit],
    )
    ids = [r[0] for r in rows]
    fixes: dict[int, list[int]] = {}
    files: dict[int, list[AttachmentInfo]] = {}
    if ids:
        marks = ", ".join("?" * len(ids))
        for fixed, fix in _all(
            txn, f"SELECT corrects, id FROM logbook_entries WHERE corrects IN ({marks}) ORDER BY id", ids  # noqa: S608
        ):
            fixes.setdefault(fixed, []).append(fix)
        for entry, n, name, ctype, size in _all(
            txn,
            "SELECT entry, n, name, content_type, length(data) FROM logbook_attachments"  # noqa: S608 - placeholders
            f" WHERE entry IN ({marks}) ORDER BY entry, n",
            ids,
        ):
            files.setdefault(entry, []).append(AttachmentInfo(n, name, ctype, size))
    return [
        ELogRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7], tuple(fixes.get(r[0], ())),
                tuple(files.get(r[0], ())))
        for r in rows
    ]
