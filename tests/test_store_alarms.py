# -*- test-case-name: tests.test_store_alarms -*-
"""
Tests for L{ecs.store.alarms}: the alarm rows (one active per condition,
raise, clear, acknowledge, shelve, history) on a real SQLite file with the
inline runner and a C{Clock}, and the upgrade of a version 2 database.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.store import SCHEMA_VERSION, Store, StoreError
from ecs.store import core as store_module
from ecs.store.core import inline_runner
from ecs.store.schema import UPGRADES

T0 = 1_800_000_000.0


class AlarmStoreTests(SynchronousTestCase):
    """The alarm operations on one store."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.path = Path(self.mktemp()) / "ecs.sqlite"
        self.store = self.successResultOf(Store.open(self.path, self.clock, runner=inline_runner))
        self.addCleanup(lambda: self.successResultOf(self.store.close()))

    def raise_(self, kind: str = "system_error", source: str = "STS", partition: str | None = "demo",
               text: str = "STS in Error", cleared: bool = False) -> tuple[int, bool]:
        row, new = self.successResultOf(
            self.store.raise_alarm(kind, source, partition, "error", text, "reset STS, then Configure", cleared)
        )
        return row.id, new

    def test_raise_dedupes(self) -> None:
        """Raising an open alarm again updates its text: one row, the first raise time kept."""
        first, new = self.raise_()
        self.assertTrue(new)
        self.clock.advance(5)
        again, new = self.raise_(text="STS in Error: HV trip")
        self.assertEqual((again, new), (first, False))
        rows = self.successResultOf(self.store.alarms())
        self.assertEqual([(r.id, r.text, r.raised_at) for r in rows], [(first, "STS in Error: HV trip", T0)])

    def test_keys_distinct(self) -> None:
        """Another kind, source or partition is another alarm; None is a partition of its own."""
        ids = {self.raise_()[0], self.raise_(kind="dcs_alarm")[0], self.raise_(source="MVD")[0],
               self.raise_(partition="p2")[0], self.raise_(partition=None)[0], self.raise_(partition=None)[0]}
        self.assertEqual(len(ids), 5)

    def test_clear_then_ack_is_history(self) -> None:
        """A cleared alarm stays active until acknowledged; then it is history and a new raise is a new row."""
        alarm_id, _ = self.raise_()
        self.clock.advance(2)
        cleared = self.successResultOf(self.store.clear_alarm("system_error", "STS", "demo"))
        assert cleared is not None
        self.assertEqual(cleared.cleared_at, T0 + 2)
        self.assertTrue(cleared.active)
        self.assertIsNone(self.successResultOf(self.store.clear_alarm("system_error", "STS", "demo")))
        acked = self.successResultOf(self.store.acknowledge_alarm(alarm_id, "alice"))
        self.assertEqual((acked.acknowledged_by, acked.acknowledged_at, acked.active), ("alice", T0 + 2, False))
        self.assertEqual(self.successResultOf(self.store.alarms()), [])
        self.assertEqual(len(self.successResultOf(self.store.alarms(active_only=False))), 1)
        new_id, new = self.raise_()
        self.assertNotEqual(new_id, alarm_id)
        self.assertTrue(new)

    def test_reopen_cleared_unacknowledged(self) -> None:
        """A cleared, unacknowledged alarm raised again is reopened (a new raise time), not duplicated."""
        alarm_id, _ = self.raise_()
        self.successResultOf(self.store.clear_alarm("system_error", "STS", "demo"))
        self.clock.advance(10)
        again, new = self.raise_()
        self.assertEqual((again, new), (alarm_id, True))
        row = self.successResultOf(self.store.alarm(alarm_id))
        assert row is not None
        self.assertEqual((row.cleared_at, row.raised_at), (None, T0 + 10))

    def test_raised_cleared(self) -> None:
        """An alarm of an event that is over is raised cleared: active until acknowledged."""
        alarm_id, new = self.raise_(kind="run_failed", source="run", cleared=True)
        self.assertTrue(new)
        row = self.successResultOf(self.store.alarm(alarm_id))
        assert row is not None
        self.assertEqual(row.cleared_at, T0)
        self.assertTrue(row.active)

    def test_ack_keeps_first(self) -> None:
        """Acknowledging again keeps the first acknowledgement; an unknown id is not_found."""
        alarm_id, _ = self.raise_()
        self.successResultOf(self.store.acknowledge_alarm(alarm_id, "alice"))
        self.clock.advance(1)
        row = self.successResultOf(self.store.acknowledge_alarm(alarm_id, "bob"))
        self.assertEqual((row.acknowledged_by, row.acknowledged_at), ("alice", T0))
        error = self.failureResultOf(self.store.acknowledge_alarm(999, "alice"), StoreError).value
        self.assertEqual(error.code, "not_found")

    def test_shelve(self) -> None:
        """Shelving stores until, who and why; history cannot be shelved; the reason is checked."""
        alarm_id, _ = self.raise_()
        row = self.successResultOf(self.store.shelve_alarm(alarm_id, T0 + 3600, "eve", "known noise"))
        self.assertEqual((row.shelved_until, row.shelved_by, row.shelve_reason), (T0 + 3600, "eve", "known noise"))
        self.assertTrue(row.shelved(T0))
        self.assertFalse(row.shelved(T0 + 3600))
        for reason in ("", " ", "x" * 501):
            error = self.failureResultOf(self.store.shelve_alarm(alarm_id, T0 + 1, "eve", reason), StoreError).value
            self.assertEqual(error.code, "bad_request")
        self.successResultOf(self.store.clear_alarm("system_error", "STS", "demo"))
        self.successResultOf(self.store.acknowledge_alarm(alarm_id, "alice"))
        error = self.failureResultOf(self.store.shelve_alarm(alarm_id, T0 + 1, "eve", "late"), StoreError).value
        self.assertEqual(error.code, "conflict")
        self.assertEqual(self.failureResultOf(self.store.shelve_alarm(7, T0 + 1, "eve", "x"), StoreError).value.code,
                         "not_found")

    def test_list_filters(self) -> None:
        """Newest first, by partition."""
        a, _ = self.raise_()
        b, _ = self.raise_(partition="p2")
        c, _ = self.raise_(source="MVD")
        self.assertEqual([r.id for r in self.successResultOf(self.store.alarms())], [c, b, a])
        self.assertEqual([r.id for r in self.successResultOf(self.store.alarms(partition="demo"))], [c, a])

    def test_checks(self) -> None:
        """Unknown kinds and severities are refused; long texts are cut."""
        bad = self.store.raise_alarm("nonsense", "STS", None, "error", "t", "a")
        self.assertEqual(self.failureResultOf(bad, StoreError).value.code, "bad_request")
        bad = self.store.raise_alarm("system_error", "STS", None, "fatal", "t", "a")
        self.assertEqual(self.failureResultOf(bad, StoreError).value.code, "bad_request")
        row, _ = self.successResultOf(self.store.raise_alarm("system_error", "STS", None, "error", "t" * 5000, "a"))
        self.assertEqual(len(row.text), 2000)

    def test_one_active_enforced(self) -> None:
        """The database itself refuses a second active alarm of one condition."""
        self.raise_()
        self.successResultOf(self.store.close())
        with closing(sqlite3.connect(self.path)) as conn, self.assertRaises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO alarms (kind, source, partition, severity, text, action, raised_at)"
                " VALUES ('system_error', 'STS', 'demo', 'error', 't', 'a', 1)"
            )
        self.store = self.successResultOf(Store.open(self.path, self.clock, runner=inline_runner))


class UpgradeTests(SynchronousTestCase):
    """A version 2 database (before alarms) is upgraded, its data kept."""

    def test_v2_upgraded(self) -> None:
        """Opening a version 2 database adds the alarm table and keeps the partitions."""
        self.assertGreaterEqual(SCHEMA_VERSION, 3)
        clock = Clock()
        path = Path(self.mktemp()) / "ecs.sqlite"
        self.patch(store_module, "SCHEMA_VERSION", 2)
        self.patch(store_module, "UPGRADES", {k: v for k, v in UPGRADES.items() if k <= 2})
        old = self.successResultOf(Store.open(path, clock, runner=inline_runner))
        self.successResultOf(old.add_partition("p1"))
        self.successResultOf(old.close())
        with closing(sqlite3.connect(path)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertNotIn("alarms", tables)
        self.patch(store_module, "SCHEMA_VERSION", 3)
        self.patch(store_module, "UPGRADES", {k: v for k, v in UPGRADES.items() if k <= 3})
        store = self.successResultOf(Store.open(path, clock, runner=inline_runner))
        self.addCleanup(lambda: self.successResultOf(store.close()))
        self.assertEqual(store.upgraded_from, 2)
        self.assertEqual([p.id for p in self.successResultOf(store.partitions())], ["p1"])
        row, new = self.successResultOf(store.raise_alarm("pca_lost", "pca:p1", "p1", "critical", "gone", "start it"))
        self.assertTrue(new)
        self.assertEqual([r.id for r in self.successResultOf(store.alarms())], [row.id])
