# -*- test-case-name: tests.test_store_elog -*-
"""The electronic logbook of the store (issue 14) on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.store import Attachment, AttachmentInfo, Store, StoreError
from ecs.store.core import inline_runner
from ecs.store.elog import MAX_ATTACHMENT, MAX_ATTACHMENTS

T0 = 1_800_000_000.0


class ELogStoreTests(SynchronousTestCase):
    """Entries written, searched, paged and corrected; never changed."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.path = Path(self.mktemp()) / "ecs.sqlite"
        self.store = self.successResultOf(Store.open(self.path, self.clock, runner=inline_runner))
        self.addCleanup(lambda: self.successResultOf(self.store.close()))

    def add(self, author: str, text: str, **kw: object) -> int:
        self.clock.advance(10)
        return self.successResultOf(self.store.add_logbook_entry(author, text, **kw)).id  # type: ignore[arg-type]

    def ids(self, **kw: object) -> list[int]:
        return [r.id for r in self.successResultOf(self.store.logbook_entries(**kw))]  # type: ignore[arg-type]

    def refused(self, code: str, d: object) -> str:
        failure = self.failureResultOf(d, StoreError)  # type: ignore[arg-type]
        self.assertEqual(failure.value.code, code)
        return str(failure.value.reason)

    def test_filters(self) -> None:
        """Text (case-insensitive), partition, run, author, time and paging; newest first."""
        a = self.add("alice", "Beam is back", partition="p1", run=7)
        b = self.add("ECS", "run 8 of p2 started", partition="p2", run=8, automatic=True)
        c = self.add("bob", "beam lost again", partition="p1")
        self.assertEqual(self.ids(), [c, b, a])
        self.assertEqual(self.ids(text="BEAM"), [c, a])
        self.assertEqual(self.ids(partition="p1"), [c, a])
        self.assertEqual(self.ids(run=8), [b])
        self.assertEqual(self.ids(author="ECS"), [b])
        self.assertEqual(self.ids(since=T0 + 20), [c, b])
        self.assertEqual(self.ids(until=T0 + 20), [a])
        self.assertEqual(self.ids(limit=2), [c, b])
        self.assertEqual(self.ids(limit=2, before=b), [a])
        row = self.successResultOf(self.store.logbook_entries(run=8))[0]
        self.assertEqual((row.author, row.automatic, row.time, row.partition), ("ECS", True, T0 + 20, "p2"))

    def test_corrections(self) -> None:
        """A correction is a new entry; the corrected one says who corrects it; an unknown id is not_found."""
        a = self.add("alice", "HV at 1200 V")
        b = self.add("alice", "HV at 1250 V, not 1200", corrects=a)
        rows = {r.id: r for r in self.successResultOf(self.store.logbook_entries())}
        self.assertEqual(rows[a].corrected_by, (b,))
        self.assertEqual(rows[b].corrects, a)
        self.assertEqual(rows[a].text, "HV at 1200 V")
        self.refused("not_found", self.store.add_logbook_entry("alice", "x", corrects=99))

    def test_checks(self) -> None:
        """Blank or too long text, bad names, bad run numbers and ids are refused, naming them."""
        self.assertIn("blank", self.refused("bad_request", self.store.add_logbook_entry("alice", "  \n")))
        self.refused("bad_request", self.store.add_logbook_entry("alice", ""))
        self.refused("bad_request", self.store.add_logbook_entry("alice", "x" * 10_001))
        self.assertIn("partition", self.refused("bad_request", self.store.add_logbook_entry("a", "x", partition="a b")))
        self.assertIn("run", self.refused("bad_request", self.store.add_logbook_entry("a", "x", run=0)))
        self.assertIn("run", self.refused("bad_request", self.store.add_logbook_entry("a", "x", run=True)))
        self.assertIn("author", self.refused("bad_request", self.store.add_logbook_entry("a b", "x")))
        self.refused("bad_request", self.store.logbook_entries(before=0))
        self.assertEqual(self.ids(), [])

    def test_never_changed(self) -> None:
        """The database itself refuses to change or delete an entry."""
        self.add("alice", "kept")
        self.successResultOf(self.store.close())
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            for sql in ("UPDATE logbook_entries SET text = 'x'", "DELETE FROM logbook_entries"):
                with self.assertRaises(sqlite3.IntegrityError):
                    db.execute(sql)
            self.assertEqual(db.execute("SELECT text FROM logbook_entries").fetchall(), [("kept",)])
        finally:
            db.close()
        self.store = self.successResultOf(Store.open(self.path, self.clock, runner=inline_runner))

    def test_attachments(self) -> None:
        """Files are kept with the entry, listed with their size, read back; limits are checked."""
        files = [Attachment("plot.png", "image/png", b"\x89PNG"), Attachment("notes.txt", "text/plain", b"hi")]
        entry = self.add("alice", "see plot", attachments=files)
        row = self.successResultOf(self.store.logbook_entries())[0]
        self.assertEqual(
            row.attachments,
            (AttachmentInfo(1, "plot.png", "image/png", 4), AttachmentInfo(2, "notes.txt", "text/plain", 2)),
        )
        self.assertEqual(self.successResultOf(self.store.logbook_attachment(entry, 2)), files[1])
        self.refused("not_found", self.store.logbook_attachment(entry, 3))
        big = [Attachment("big", "application/octet-stream", b"x" * (MAX_ATTACHMENT + 1))]
        self.refused("bad_request", self.store.add_logbook_entry("a", "x", attachments=big))
        many = [files[1]] * (MAX_ATTACHMENTS + 1)
        self.refused("bad_request", self.store.add_logbook_entry("a", "x", attachments=many))
        self.refused("bad_request", self.store.add_logbook_entry("a", "x", attachments=[Attachment("", "t", b"1")]))
        self.assertEqual(self.ids(), [entry])
