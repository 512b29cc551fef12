# -*- test-case-name: tests.test_store_runner -*-
"""
Tests for the store's injectable runner (L{ecs.store.core.InlineRunner},
L{ecs.store.core.PoolRunner}) and the modes of the state directory and the
database file.
"""

from __future__ import annotations

import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ecs.store import Store, StoreError
from ecs.store.core import BUSY_TIMEOUT_MS, OPEN_BUSY_TIMEOUT_MS, InlineRunner, inline_runner


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class InlineRunnerTests(SynchronousTestCase):
    """Each transaction runs at once: no thread, no reactor turn."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.path = Path(self.mktemp()) / "state" / "ecs.sqlite"
        self.store = self.successResultOf(Store.open(self.path, self.clock, runner=inline_runner))
        self.addCleanup(lambda: self.successResultOf(self.store.close()))

    def test_operations_fire_at_once(self) -> None:
        """A write and a read through the store have fired when they return."""
        self.successResultOf(self.store.add_partition("p1"))
        self.assertEqual([row.id for row in self.successResultOf(self.store.partitions())], ["p1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_clock_stamps(self) -> None:
        """Timestamps come from the injected clock."""
        self.clock.advance(1234)
        row = self.successResultOf(self.store.audit("alice", "test", {}, "ok"))
        self.assertEqual(row.time, 1234)

    def test_failure_rolls_back(self) -> None:
        """A failing operation fires its Deferred with StoreError and leaves nothing behind."""
        self.successResultOf(self.store.add_partition("p1"))
        failure = self.failureResultOf(self.store.add_partition("p1"), StoreError)
        self.assertEqual(failure.value.code, "conflict")
        self.assertEqual([row.id for row in self.successResultOf(self.store.partitions())], ["p1"])

    def test_interaction_rolled_back(self) -> None:
        """The runner itself: an interaction that raises rolls back its statements."""
        runner = InlineRunner(Path(self.mktemp()))
        self.addCleanup(runner.close)
        self.successResultOf(runner.runInteraction(lambda txn: txn.execute("CREATE TABLE t (x)")))

        def half(txn: Any) -> None:
            txn.execute("BEGIN")
            txn.execute("INSERT INTO t VALUES (1)")
            raise ValueError("half-way")

        self.failureResultOf(runner.runInteraction(half), ValueError)

        def count(txn: Any) -> int:
            txn.execute("SELECT count(*) FROM t")
            return int(txn.fetchone()[0])

        self.assertEqual(self.successResultOf(runner.runInteraction(count)), 0)


class LockedTests(SynchronousTestCase):
    """A database another process holds locked is refused within seconds at open."""

    def test_normal_timeout_once_open(self) -> None:
        """The short busy timeout of the opening is replaced by the normal one."""
        store = self.successResultOf(Store.open(Path(self.mktemp()) / "ecs.sqlite", Clock(), runner=inline_runner))
        self.addCleanup(lambda: self.successResultOf(store.close()))

        def busy_timeout(txn: Any) -> int:
            txn.execute("PRAGMA busy_timeout")
            return int(txn.fetchone()[0])

        self.assertEqual(self.successResultOf(store._pool.runInteraction(busy_timeout)), BUSY_TIMEOUT_MS)

    def test_locked_refused_after_open_timeout(self) -> None:
        """An exclusive lock held elsewhere: open fails naming the lock after the short timeout."""
        path = Path(self.mktemp()) / "ecs.sqlite"
        path.parent.mkdir()
        holder = sqlite3.connect(str(path), isolation_level=None)
        self.addCleanup(holder.close)
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        failure = self.failureResultOf(Store.open(path, Clock(), runner=inline_runner), StoreError)
        elapsed = time.monotonic() - started
        self.assertIn("database is locked", str(failure.value))
        # the wait is the opening's, not the normal one (a generous bound: a loaded machine)
        self.assertGreaterEqual(elapsed, OPEN_BUSY_TIMEOUT_MS / 1000 * 0.9)
        self.assertLess(elapsed, BUSY_TIMEOUT_MS / 1000)


class ModeTests(SynchronousTestCase):
    """The state directory is created 0700 and the database 0600."""

    def test_new_paths_private(self) -> None:
        """A new folder is 0700 and a new database file 0600."""
        path = Path(self.mktemp()) / "state" / "ecs.sqlite"
        store = self.successResultOf(Store.open(path, Clock(), runner=inline_runner))
        self.successResultOf(store.close())
        self.assertEqual(_mode(path.parent), 0o700)
        self.assertEqual(_mode(path), 0o600)

    def test_existing_file_tightened(self) -> None:
        """An existing database readable by others is made 0600, and the log says so."""
        path = Path(self.mktemp()) / "ecs.sqlite"
        store = self.successResultOf(Store.open(path, Clock(), runner=inline_runner))
        self.successResultOf(store.close())
        path.chmod(0o644)
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        store = self.successResultOf(Store.open(path, Clock(), runner=inline_runner))
        self.successResultOf(store.close())
        self.assertEqual(_mode(path), 0o600)
        warnings = [e for e in events if "was mode 644: made 600" in formatEvent(e)]
        self.assertEqual(len(warnings), 1)
        self.assertEqual((warnings[0]["found"], warnings[0]["mode"]), (0o644, 0o600))


class PoolRunnerTests(TestCase):
    """The default runner still works on the reactor's thread pool."""

    async def test_default_runner(self) -> None:
        """Store.open without a runner uses the pool: results arrive through the reactor."""
        path = Path(self.mktemp()) / "ecs.sqlite"
        store = await Store.open(path, reactor)
        try:
            d = store.add_partition("p1")
            await d
            self.assertEqual([row.id for row in await store.partitions()], ["p1"])
        finally:
            await store.close()
        self.assertEqual(_mode(path), 0o600)
