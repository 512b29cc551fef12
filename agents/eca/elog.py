# -*- test-case-name: tests.test_elog_eca -*-
"""
L{ELog}: the electronic logbook (issue 14, item 4; C{/api/logbook},
C{ecs log-entry}).  Not L{agents.eca.logbook}, the operator log lines.

People write entries (operator and up) and read them (viewer and up):
text, optionally a partition, a run number, up to
L{ecs.store.elog.MAX_ATTACHMENTS} small files, and the entry it corrects
(nothing is ever changed or deleted: a correction is a new entry, and
every entry read lists the entries that correct it).

The ECS writes automatic entries (author C{ECS}) through L{IELogNotes}:
runs started and ended, alarms raised, exclusions and inclusions, forced
take-overs of control, forced moves and deletions.  Those collaborators
call L{ELog.note} and never wait: the write goes to the store's one
thread in call order, and a failed write is logged, never raised into
the action it tells of.  (Not through L{agents.eca.audit.WriteBehind}: its
retries raise alarms, and raised alarms write entries here; a lost
automatic entry is logged in the ECA's log with its text instead.)

Every entry, once its row is stored, goes out as one C{logbook} event
(L{IEventSource}) holding the entry as C{GET /api/logbook} gives it
(attachments by name and size, never their bytes), scoped to the entry's
partition like the other events (a stream of C{?partition=P} gets P's
entries and those of no partition).  A write that fails emits nothing.
The event stream needs the viewer role, as reading the logbook does, so
the event reaches no one the API would refuse (C{tests.test_elog_eca}
holds the two roles together).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.errors import need, raise_store
from agents.eca.interfaces import IELogNotes, IEventSource
from ecs.control import ControlError, User
from ecs.store import NAME_RE, Attachment, ELogRow, Store
from ecs.store.elog import MAX_RUN, MAX_TEXT

#: The author of automatic entries.
AUTHOR = "ECS"
#: The type of the live event of a new entry.
EVENT = "logbook"


def entry_json(row: ELogRow) -> dict[str, Any]:
    """An entry for the interfaces (attachments without their bytes)."""
    entry = dataclasses.asdict(row)
    entry["corrected_by"] = list(row.corrected_by)
    entry["attachments"] = [dataclasses.asdict(a) for a in row.attachments]
    return entry


def _bad(field: str, reason: str) -> ControlError:
    return ControlError("bad_request", f"{field}: {reason}", field=field)


def check_entry(text: object, partition: object, run: object, corrects: object) -> None:
    """Refuse (400, naming the field) a bad text, partition, run number or corrected id."""
    if not isinstance(text, str) or not text.strip():
        raise _bad("text", "must be non-empty text")
    if len(text) > MAX_TEXT:
        raise _bad("text", f"at most {MAX_TEXT} characters")
    if partition is not None and (not isinstance(partition, str) or not NAME_RE.fullmatch(partition)):
        raise _bad("partition", "must be a partition id (letters, digits, _ . : @ -)")
    for field, value in (("run", run), ("corrects", corrects)):
        if value is not None and (type(value) is not int or not 1 <= value <= MAX_RUN):
            raise _bad(field, "must be a whole number from 1")


@implementer(IELogNotes)
class ELog:
    """The electronic logbook; see the module docstring."""

    _log = Logger()

    def __init__(self, store: Store, events: IEventSource | None = None) -> None:
        self._store = store
        self._events = events

    def _published(self, row: ELogRow) -> dict[str, Any]:
        """A stored entry: emitted as one C{logbook} event (a failing emit is logged: the entry stays written)."""
        entry = entry_json(row)
        if self._events is not None:
            try:
                self._events.emit(EVENT, entry, row.partition)
            except Exception:
                self._log.failure("logbook entry {id} stored but not sent live", id=row.id)
        return entry

    # -- people -----------------------------------------------------------------------------

    def add(
        self, user: User, text: object, partition: object = None, run: object = None, corrects: object = None,
        attachments: Sequence[Mapping[str, Any]] = (),
    ) -> defer.Deferred[dict[str, Any]]:
        """
        Write an entry by C{user} (operator and up); the entry.
        C{attachments}: C{{name, content_type, data (bytes)}} each.
        """
        try:
            need(user, "operator")
            check_entry(text, partition, run, corrects)
            files = [Attachment(a["name"], a["content_type"], a["data"]) for a in attachments]
        except ControlError as e:
            return defer.fail(e)
        d = self._store.add_logbook_entry(
            user.name, text, partition, run, corrects, attachments=files  # type: ignore[arg-type]  # checked above
        )
        return d.addCallbacks(self._published, raise_store)

    def entries(
        self, user: User, text: str | None = None, partition: str | None = None, run: int | None = None,
        author: str | None = None, since: float | None = None, until: float | None = None, limit: int = 100,
        before: int | None = None,
    ) -> defer.Deferred[list[dict[str, Any]]]:
        """Entries newest first, filtered (viewer and up); see L{ecs.store.Store.logbook_entries}."""
        try:
            need(user, "viewer")
        except ControlError as e:
            return defer.fail(e)
        d = self._store.logbook_entries(text, partition, run, author, since, until, limit, before)
        return d.addCallbacks(lambda rows: [entry_json(r) for r in rows], raise_store)

    def attachment(self, user: User, entry: int, n: int) -> defer.Deferred[dict[str, Any]]:
        """Attachment C{n} of entry C{entry} (viewer and up): C{{name, content_type, data}}."""
        try:
            need(user, "viewer")
        except ControlError as e:
            return defer.fail(e)
        d = self._store.logbook_attachment(entry, n)
        return d.addCallbacks(dataclasses.asdict, raise_store)

    # -- the ECS itself (IELogNotes) --------------------------------------------------------

    def note(self, text: str, partition: str | None = None, run: int | None = None) -> None:
        """See L{IELogNotes.note}."""
        text = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
        try:
            d = self._store.add_logbook_entry(AUTHOR, text, partition, run, automatic=True)
        except Exception:  # a bug must not reach the action that asked for the note
            self._log.failure("logbook entry not written: {text}", text=text)
            return
        d.addCallback(self._published)
        d.addErrback(lambda f: self._log.error("logbook entry not written ({error}): {text}",
                                               error=f.getErrorMessage(), text=text))


def run_started_text(number: int, partition: str, run_type: str | None, comment: str | None) -> str:
    """The automatic entry of a run that started."""
    kind = f" ({run_type})" if run_type else ""
    return f"run {number}{kind} of partition {partition} started" + (f": {comment}" if comment else "")


def run_ended_text(name: str, partition: str, outcome: str, comment: str | None, why: str | None) -> str:
    """The automatic entry of a run that ended (C{name}: C{run N}, or C{the run} when its number was not written)."""
    text = f"{name} of partition {partition} ended: {outcome}"
    if why:
        text += f" ({why})"
    return text + (f"; end comment: {comment}" if comment else "")
