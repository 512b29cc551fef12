# -*- test-case-name: tests.test_elog_events -*-
"""
The live C{logbook} event of L{agents.eca.elog.ELog}: one per stored
entry, with its stored id and no attachment bytes, scoped to the entry's
partition; none when the store refuses the write.  A real SQLite store
and L{agents.eca.events.EventLog} on a C{Clock}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.elog import ELog
from agents.eca.events import EventLog
from ecs.control import ControlError, User
from ecs.store import Store, StoreError
from ecs.store.core import inline_runner

T0 = 1_800_000_000.0
OPERATOR = User("alice", ("operator",))


class LiveEntryTests(SynchronousTestCase):
    """Entries written by people and by the ECS go out live once stored."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = self.successResultOf(
            Store.open(Path(self.mktemp()) / "ecs.sqlite", self.clock, runner=inline_runner)
        )
        self.addCleanup(lambda: self.successResultOf(self.store.close()))
        self.events = EventLog(clock=self.clock)
        self.elog = ELog(self.store, self.events)
        self.seen: dict[str | None, list[tuple[int, str, dict[str, Any]]]] = {}
        for partition in (None, "demo", "p2"):
            self.events.subscribe(lambda n, t, d, p=partition: self.seen.setdefault(p, []).append((n, t, d)), partition)
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def logbook_events(self, partition: str | None = None) -> list[dict[str, Any]]:
        return [d for _, t, d in self.seen.get(partition, []) if t == "logbook"]

    def refuse_writes(self) -> list[str]:
        """Make the store refuse every logbook write; the texts it was asked for."""
        asked: list[str] = []

        def refuse(author: str, text: str, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
            asked.append(text)
            return defer.fail(StoreError("storage", "disk full"))

        self.patch(self.store, "add_logbook_entry", refuse)
        return asked

    def test_entry_by_a_person(self) -> None:
        """One event with the stored entry (its id), as the API returns it; attachments without their bytes."""
        files = [{"name": "scan.txt", "content_type": "text/plain", "data": b"secret bytes"}]
        entry = self.successResultOf(self.elog.add(OPERATOR, "STS noisy", "demo", 12, attachments=files))
        [event] = self.logbook_events()
        self.assertEqual(event, entry)
        [stored] = self.successResultOf(self.store.logbook_entries())
        self.assertEqual((event["id"], event["author"], event["partition"], event["run"]),
                         (stored.id, "alice", "demo", 12))
        self.assertEqual(event["attachments"], [{"n": 1, "name": "scan.txt", "content_type": "text/plain", "size": 12}])
        self.assertNotIn("secret", repr(event))

    def test_automatic_entry(self) -> None:
        """An automatic entry (author ECS) goes out once, with its stored id."""
        self.elog.note("run 7 of partition demo started", "demo", 7)
        [event] = self.logbook_events()
        [stored] = self.successResultOf(self.store.logbook_entries())
        self.assertEqual((event["id"], event["author"], event["automatic"]), (stored.id, "ECS", True))

    def test_scoped_to_the_partition(self) -> None:
        """A partition's stream gets that partition's entries and those of none, not another's."""
        self.elog.note("about demo", "demo")
        self.elog.note("about everything")
        self.successResultOf(self.elog.add(OPERATOR, "about p2", "p2"))
        self.assertEqual([e["text"] for e in self.logbook_events("demo")], ["about demo", "about everything"])
        self.assertEqual([e["text"] for e in self.logbook_events("p2")], ["about everything", "about p2"])
        self.assertEqual(len(self.logbook_events()), 3)
        ids = [e["id"] for e in self.logbook_events()]
        self.assertEqual(ids, sorted(set(ids)))

    def test_failed_write_emits_nothing(self) -> None:
        """A write the store refuses emits no event (by a person: the refusal is the answer; automatic: logged)."""
        asked = self.refuse_writes()
        self.failureResultOf(self.elog.add(OPERATOR, "lost"), ControlError)
        self.elog.note("lost too")
        self.assertEqual(asked, ["lost", "lost too"])
        self.assertEqual(self.logbook_events(), [])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_refused_entry_emits_nothing(self) -> None:
        """A viewer's entry, a bad one, or one correcting no entry is refused and emits nothing."""
        self.failureResultOf(self.elog.add(User("v", ("viewer",)), "x"), ControlError)
        self.failureResultOf(self.elog.add(OPERATOR, "   "), ControlError)
        self.failureResultOf(self.elog.add(OPERATOR, "fix", corrects=99), ControlError)
        self.assertEqual(self.logbook_events(), [])

    def test_without_events(self) -> None:
        """An ELog without an event source still writes (tests and tools build it so)."""
        entry = self.successResultOf(ELog(self.store).add(OPERATOR, "quiet"))
        self.assertEqual(entry["text"], "quiet")
        self.assertEqual(self.logbook_events(), [])
