"""
Tests for L{ecs.store}: every operation on a real SQLite file, with the
real reactor and the store's one database thread.

Atomicity is checked by injecting a failure in the middle of an operation
(a trigger that aborts one of its later statements) and comparing every
table before and after.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from ecs.store import (
    ANY,
    ECS_SCOPE,
    SCHEMA_VERSION,
    UPGRADES,
    ConfigRow,
    ControlRow,
    DetectorRow,
    LogEntry,
    PartitionRow,
    Store,
    StoreError,
    database_path,
)
from ecs.store import core as store_module

T0 = 1_700_000_000.0


class StoreTestCase(TestCase):
    """A fresh store in a temporary directory, with a controllable clock."""

    def setUp(self) -> Deferred[None]:
        self.path = Path(self.mktemp()) / "state" / "ecs.sqlite"
        self.clock = Clock()
        self.clock.advance(T0)
        return Deferred.fromCoroutine(self._open())

    async def _open(self) -> None:
        self.store = await self.open_store()

    async def open_store(self) -> Store:
        store = await Store.open(self.path, reactor, clock=self.clock)
        self.addCleanup(store.close)
        return store

    async def fails(self, d: Deferred[Any], code: str, *words: str) -> StoreError:
        """Await C{d}, which must fail with a L{StoreError} of C{code} naming C{words}."""
        try:
            result = await d
        except StoreError as e:
            self.assertEqual(e.code, code, e.reason)
            for word in words:
                self.assertIn(word, e.reason)
            return e
        self.fail(f"expected StoreError({code!r}), got {result!r}")

    def raw(self) -> sqlite3.Connection:
        """A separate connection to the same file (for checks and injections)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(conn.close)
        return conn

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table."""
        with closing(sqlite3.connect(self.path)) as conn:
            tables = [
                n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            return {
                t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables
            }

    async def assert_atomic(self, trigger: str, call: Any) -> None:
        """
        Make C{trigger} (e.g. C{"BEFORE INSERT ON tags"}) abort, run
        C{call()}, and check it failed with nothing written.
        """
        before = self.dump()
        conn = self.raw()
        conn.execute(
            f"CREATE TRIGGER injected {trigger} BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        await self.fails(call(), "conflict", "injected failure")
        conn.execute("DROP TRIGGER injected")
        self.assertEqual(self.dump(), before)

    async def seed(self) -> None:
        """Partitions p1, p2; detectors STS, MVD in p1 and TOF unassigned; user alice (admin)."""
        await self.store.add_partition("p1")
        await self.store.add_partition("p2")
        await self.store.add_detector("STS", "STS", "p1")
        await self.store.add_detector("MVD", "MVD", "p1")
        await self.store.add_detector("TOF", "TOF")
        await self.store.add_user("alice", "hash-a", ["admin"])


class OpenTests(StoreTestCase):
    """Opening, versions, upgrades and closing."""

    async def test_creates_file_and_folders(self) -> None:
        """A new store creates the folders, the file, the schema in WAL mode."""
        self.assertTrue(self.path.is_file())
        self.assertEqual(self.store.upgraded_from, 0)
        conn = self.raw()
        self.assertEqual(conn.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")

    async def test_connection_settings(self) -> None:
        """The store's connection has foreign keys on and a busy timeout."""
        # The connection is private to the store: read the pragmas through its pool.
        fk, timeout = await self.store._pool.runInteraction(
            lambda txn: (
                txn.execute("PRAGMA foreign_keys").fetchone()[0],
                txn.execute("PRAGMA busy_timeout").fetchone()[0],
            )
        )
        self.assertEqual(fk, 1)
        self.assertEqual(timeout, store_module.BUSY_TIMEOUT_MS)

    async def test_reopen_keeps_data(self) -> None:
        """Data survives close and reopen; the second open finds the current version."""
        await self.store.add_partition("p1")
        await self.store.close()
        again = await self.open_store()
        self.assertEqual(again.upgraded_from, SCHEMA_VERSION)
        self.assertEqual(await again.partitions(), [PartitionRow("p1", T0)])

    async def test_database_path(self) -> None:
        """The database of a state directory is <state dir>/ecs.sqlite."""
        self.assertEqual(database_path("/srv/ecs"), Path("/srv/ecs/ecs.sqlite"))

    async def test_newer_database_refused(self) -> None:
        """A database newer than the code is refused, naming both versions."""
        await self.store.close()
        self.raw().execute("UPDATE schema_version SET version = 99")
        e = await self.fails(Store.open(self.path, reactor), "unavailable", "99", str(SCHEMA_VERSION))
        self.assertIn(str(self.path), e.reason)

    async def test_not_a_database(self) -> None:
        """A file that is not SQLite gives a StoreError, not a sqlite3 exception."""
        other = Path(self.mktemp())
        other.write_bytes(b"this is not a database" * 100)
        await self.fails(Store.open(other, reactor), "unavailable", "database error")

    async def test_upgrade_reports_versions(self) -> None:
        """Store.upgrade creates or upgrades and reports (old, new)."""
        other = Path(self.mktemp()) / "ecs.sqlite"
        self.assertEqual(await Store.upgrade(other, reactor), (0, SCHEMA_VERSION))
        self.assertEqual(await Store.upgrade(other, reactor), (SCHEMA_VERSION, SCHEMA_VERSION))

    async def test_upgrade_applies_new_versions(self) -> None:
        """A new version's statements are applied to an existing database, data kept."""
        await self.store.add_partition("p1")
        await self.store.close()
        self.patch(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        self.patch(
            store_module,
            "UPGRADES",
            {
                **UPGRADES,
                SCHEMA_VERSION + 1: [
                    "ALTER TABLE partitions ADD COLUMN note TEXT",
                    "UPDATE partitions SET note = 'old'",
                ],
            },
        )
        self.assertEqual(
            await Store.upgrade(self.path, reactor), (SCHEMA_VERSION, SCHEMA_VERSION + 1)
        )
        conn = self.raw()
        self.assertEqual(conn.execute("SELECT id, note FROM partitions").fetchall(), [("p1", "old")])
        self.assertEqual(conn.execute("SELECT version FROM schema_version").fetchone()[0], SCHEMA_VERSION + 1)

    async def test_failed_upgrade_changes_nothing(self) -> None:
        """An upgrade that fails half-way leaves the database at its old version."""
        await self.store.add_partition("p1")
        await self.store.close()
        before = self.dump()
        self.patch(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        self.patch(
            store_module,
            "UPGRADES",
            {**UPGRADES, SCHEMA_VERSION + 1: ["CREATE TABLE extra (x)", "THIS IS NOT SQL"]},
        )
        await self.fails(Store.open(self.path, reactor), "unavailable", "upgrade")
        self.assertEqual(self.dump(), before)

    async def test_closed_store_refuses(self) -> None:
        """After close, operations fail with unavailable; closing twice is fine."""
        await self.store.close()
        await self.store.close()
        await self.fails(self.store.partitions(), "unavailable", "closed")

    async def test_close_finishes_queued_work(self) -> None:
        """Operations queued before close complete before the database closes."""
        pending = [self.store.add_partition(f"p{i}") for i in range(20)]
        await self.store.close()
        rows = await gatherResults(pending)
        self.assertEqual(len(rows), 20)
        self.assertEqual(len(self.dump()["partitions"]), 20)

    async def test_failures_are_deferred(self) -> None:
        """Invalid arguments give a failed Deferred, never a synchronous exception."""
        d = self.store.add_partition("not valid!")
        self.assertIsInstance(d, Deferred)
        await self.fails(d, "bad_request")

    async def test_store_error_codes(self) -> None:
        """A StoreError has a known code, a reason and str() is the reason."""
        e = StoreError("conflict", "x is held")
        self.assertEqual((e.code, e.reason, str(e)), ("conflict", "x is held", "x is held"))
        self.assertRaises(ValueError, StoreError, "nope", "reason")


class NameTests(StoreTestCase):
    """Names are checked before any SQL runs."""

    BAD = ("", "a b", "x'; DROP TABLE partitions; --", "a" * 129, "ü", "a/b", "%", None, 5)

    async def test_bad_partition_names(self) -> None:
        """Invalid partition ids are bad requests and nothing is written."""
        for name in self.BAD:
            await self.fails(self.store.add_partition(name), "bad_request", "partition id")  # type: ignore[arg-type]
        self.assertEqual(self.dump()["partitions"], [])
        self.assertIn(("partitions",), self.raw().execute("SELECT name FROM sqlite_master").fetchall())

    async def test_allowed_characters(self) -> None:
        """Letters, digits and _ . : @ - up to 128 characters are accepted."""
        name = "Aa0_.:@-" + "x" * 120
        await self.store.add_partition(name)
        self.assertEqual([p.id for p in await self.store.partitions()], [name])

    async def test_long_names_for_configs_and_tags(self) -> None:
        """Configuration ids and tag names may have 200 characters, not 201."""
        await self.store.add_user("alice", "h", ["admin"])
        await self.store.save_config("c" * 200, "STS", {}, "alice")
        await self.fails(self.store.save_config("c" * 201, "STS", {}, "alice"), "bad_request")
        await self.store.save_tag("t" * 200, ["c" * 200], "alice")
        await self.fails(self.store.save_tag("t" * 201, ["c" * 200], "alice"), "bad_request")
        await self.fails(self.store.save_config("c", "S" * 129, {}, "alice"), "bad_request", "system id")

    async def test_ecs_is_reserved(self) -> None:
        """'ecs' cannot name a partition: it is the ECS control scope."""
        await self.fails(self.store.add_partition(ECS_SCOPE), "bad_request", "reserved")

    async def test_every_name_argument_checked(self) -> None:
        """Each kind of name argument is validated."""
        bad = "bad name"
        calls = [
            self.store.add_detector(bad, "STS"),
            self.store.add_detector("STS", bad),
            self.store.add_detector("STS", "STS", bad),
            self.store.move_detector("STS", bad),
            self.store.detectors(bad),
            self.store.set_global_systems(["TFC", bad]),
            self.store.config(bad),
            self.store.tag(bad),
            self.store.add_user(bad, "h", ["viewer"]),
            self.store.take_control(bad, "alice"),
            self.store.take_control("p1", bad),
            self.store.start_run(bad, None, {}, "alice"),
            self.store.logs(partition=bad),
        ]
        for d in calls:
            await self.fails(d, "bad_request")


class PartitionTests(StoreTestCase):
    """Partitions."""

    async def test_add_and_list(self) -> None:
        """Partitions are listed by id with their creation time."""
        self.assertEqual(await self.store.add_partition("p2"), PartitionRow("p2", T0))
        self.clock.advance(5)
        await self.store.add_partition("p1")
        self.assertEqual(
            await self.store.partitions(), [PartitionRow("p1", T0 + 5), PartitionRow("p2", T0)]
        )

    async def test_add_twice(self) -> None:
        """A second partition with the same id is a conflict."""
        await self.store.add_partition("p1")
        await self.fails(self.store.add_partition("p1"), "conflict", "p1")

    async def test_delete(self) -> None:
        """An empty partition is deleted; an unknown one is not found."""
        await self.store.add_partition("p1")
        self.assertEqual(await self.store.delete_partition("p1"), [])
        self.assertEqual(await self.store.partitions(), [])
        await self.fails(self.store.delete_partition("p1"), "not_found", "p1")

    async def test_delete_with_detectors(self) -> None:
        """A partition with detectors is not deleted, and the refusal names them."""
        await self.seed()
        await self.fails(self.store.delete_partition("p1"), "conflict", "MVD, STS")
        self.assertEqual(len(await self.store.detectors("p1")), 2)

    async def test_delete_unassign(self) -> None:
        """unassign=True moves the detectors to unassigned and releases control."""
        await self.seed()
        await self.store.take_control("p1", "alice")
        self.assertEqual(await self.store.delete_partition("p1", unassign=True), ["MVD", "STS"])
        self.assertEqual(
            [d.id for d in await self.store.detectors(None)], ["MVD", "STS", "TOF"]
        )
        self.assertIsNone(await self.store.control("p1"))

    async def test_delete_with_open_run(self) -> None:
        """A partition recording a run cannot be deleted."""
        await self.seed()
        await self.store.start_run("p2", None, {}, "alice")
        await self.fails(self.store.delete_partition("p2"), "conflict", "run 1")

    async def test_delete_unassign_atomic(self) -> None:
        """A failure at the last step of delete_partition leaves detectors and control as they were."""
        await self.seed()
        await self.store.take_control("p1", "alice")
        await self.assert_atomic(
            "BEFORE DELETE ON partitions", lambda: self.store.delete_partition("p1", unassign=True)
        )


class DetectorTests(StoreTestCase):
    """Detectors and their assignment."""

    async def test_add_and_filter(self) -> None:
        """detectors() lists all (ANY), unassigned (None) or one partition's."""
        await self.seed()
        self.assertEqual(
            await self.store.detectors(),
            [
                DetectorRow("MVD", "MVD", "p1"),
                DetectorRow("STS", "STS", "p1"),
                DetectorRow("TOF", "TOF", None),
            ],
        )
        self.assertEqual(await self.store.detectors(ANY), await self.store.detectors())
        self.assertEqual([d.id for d in await self.store.detectors(None)], ["TOF"])
        self.assertEqual([d.id for d in await self.store.detectors("p1")], ["MVD", "STS"])
        self.assertEqual(await self.store.detectors("p2"), [])
        self.assertEqual(await self.store.detector("TOF"), DetectorRow("TOF", "TOF", None))
        self.assertIsNone(await self.store.detector("RICH"))
        self.assertIsNone(await self.store.detector("no such name"))

    async def test_add_errors(self) -> None:
        """Duplicate ids conflict, unknown partitions are not found, global system ids clash."""
        await self.seed()
        await self.fails(self.store.add_detector("STS", "STS"), "conflict", "STS")
        await self.fails(self.store.add_detector("RICH", "RICH", "p9"), "not_found", "p9")
        await self.store.set_global_systems(["TFC"])
        await self.fails(self.store.add_detector("TFC", "STS"), "conflict", "TFC")
        self.assertIsNone(await self.store.detector("RICH"))

    async def test_delete(self) -> None:
        """Deleting a detector returns its row; an unknown one is not found."""
        await self.seed()
        self.assertEqual(await self.store.delete_detector("STS"), DetectorRow("STS", "STS", "p1"))
        self.assertEqual([d.id for d in await self.store.detectors("p1")], ["MVD"])
        await self.fails(self.store.delete_detector("STS"), "not_found", "STS")

    async def test_move(self) -> None:
        """move_detector returns the old row and assigns the new partition (or none)."""
        await self.seed()
        self.assertEqual(await self.store.move_detector("STS", "p2"), DetectorRow("STS", "STS", "p1"))
        self.assertEqual(await self.store.detector("STS"), DetectorRow("STS", "STS", "p2"))
        self.assertEqual(await self.store.move_detector("STS", None), DetectorRow("STS", "STS", "p2"))
        self.assertEqual(await self.store.move_detector("TOF", "p1"), DetectorRow("TOF", "TOF", None))
        self.assertEqual([d.id for d in await self.store.detectors(None)], ["STS"])

    async def test_move_errors(self) -> None:
        """Moving an unknown detector, or to an unknown partition, is not found."""
        await self.seed()
        await self.fails(self.store.move_detector("RICH", "p1"), "not_found", "RICH")
        await self.fails(self.store.move_detector("STS", "p9"), "not_found", "p9")
        self.assertEqual(await self.store.detector("STS"), DetectorRow("STS", "STS", "p1"))

    async def test_foreign_key_enforced(self) -> None:
        """The database itself refuses a detector in a missing partition."""
        await self.seed()
        await self.store.close()
        conn = self.raw()
        conn.execute("PRAGMA foreign_keys = ON")
        self.assertRaises(
            sqlite3.IntegrityError, conn.execute, "UPDATE detectors SET partition = 'nope'"
        )


class GlobalSystemTests(StoreTestCase):
    """Global systems."""

    async def test_set_and_sync(self) -> None:
        """set_global_systems makes the table exactly the given list."""
        self.assertEqual(await self.store.set_global_systems(["TFC", "DCS", "QA", "DCS"]), ["DCS", "QA", "TFC"])
        self.assertEqual(await self.store.set_global_systems(["FLES", "TFC"]), ["FLES", "TFC"])
        self.assertEqual(await self.store.global_systems(), ["FLES", "TFC"])
        self.assertEqual(await self.store.set_global_systems([]), [])
        self.assertEqual(await self.store.global_systems(), [])

    async def test_errors(self) -> None:
        """A detector id or a bad name is refused, and nothing changes."""
        await self.seed()
        await self.store.set_global_systems(["TFC"])
        await self.fails(self.store.set_global_systems(["QA", "STS"]), "conflict", "STS")
        await self.fails(self.store.set_global_systems("TFC"), "bad_request")  # type: ignore[arg-type]
        self.assertEqual(await self.store.global_systems(), ["TFC"])

    async def test_atomic(self) -> None:
        """A failure while inserting leaves the old set (deletes rolled back)."""
        await self.store.set_global_systems(["TFC", "DCS"])
        await self.assert_atomic(
            "BEFORE INSERT ON global_systems WHEN NEW.id = 'QA'",
            lambda: self.store.set_global_systems(["FLES", "QA"]),
        )


class ConfigTests(StoreTestCase):
    """Versioned configurations."""

    async def test_versions(self) -> None:
        """Each save makes the next version; config() reads the latest or a given one."""
        c1 = await self.store.save_config("sts-a", "STS", {"gain": 1}, "alice")
        self.clock.advance(1)
        c2 = await self.store.save_config("sts-a", "STS", {"gain": 2}, "bob")
        self.assertEqual(c1, ConfigRow("sts-a", 1, "STS", {"gain": 1}, T0, "alice"))
        self.assertEqual(c2, ConfigRow("sts-a", 2, "STS", {"gain": 2}, T0 + 1, "bob"))
        self.assertEqual(await self.store.config("sts-a"), c2)
        self.assertEqual(await self.store.config("sts-a", 1), c1)
        self.assertEqual(await self.store.config_versions("sts-a"), [c1, c2])
        await self.fails(self.store.config("sts-a", 3), "not_found", "version 3")
        await self.fails(self.store.config("nope"), "not_found", "nope")
        await self.fails(self.store.config_versions("nope"), "not_found", "nope")
        await self.fails(self.store.config("sts-a", 0), "bad_request")

    async def test_system_fixed(self) -> None:
        """A configuration's system cannot change between versions."""
        await self.store.save_config("c", "STS", {}, "alice")
        await self.fails(self.store.save_config("c", "MVD", {}, "alice"), "bad_request", "STS", "MVD")
        self.assertEqual(len(await self.store.config_versions("c")), 1)

    async def test_configs_lists_latest(self) -> None:
        """configs() gives the latest version of each, optionally of one system."""
        await self.store.save_config("b", "STS", {"v": 1}, "alice")
        await self.store.save_config("b", "STS", {"v": 2}, "alice")
        await self.store.save_config("a", "MVD", {"v": 1}, "alice")
        self.assertEqual([(c.config_id, c.version) for c in await self.store.configs()], [("a", 1), ("b", 2)])
        self.assertEqual([c.config_id for c in await self.store.configs("STS")], ["b"])
        self.assertEqual(await self.store.configs("TOF"), [])

    async def test_parameters(self) -> None:
        """Parameters must be a JSON object; the stored copy is independent of the caller's."""
        params: dict[str, Any] = {"nested": {"list": [1, 2.5, "x", None, True]}}
        row = await self.store.save_config("c", "STS", params, "alice")
        params["nested"]["list"].append("later")
        self.assertEqual((await self.store.config("c")).parameters, {"nested": {"list": [1, 2.5, "x", None, True]}})
        self.assertEqual(row.parameters["nested"]["list"][-1], True)
        for bad in ([1, 2], "text", {"x": {1, 2}}, {"x": float("nan")}):
            await self.fails(self.store.save_config("c", "STS", bad, "alice"), "bad_request", "parameters")  # type: ignore[arg-type]

    async def test_delete(self) -> None:
        """A deleted configuration is hidden but its versions stay readable by number."""
        await self.store.save_config("c", "STS", {"v": 1}, "alice")
        await self.store.save_config("c", "STS", {"v": 2}, "alice")
        await self.store.delete_config("c")
        self.assertEqual(await self.store.configs(), [])
        await self.fails(self.store.config("c"), "not_found")
        self.assertEqual((await self.store.config("c", 1)).parameters, {"v": 1})
        self.assertEqual(len(await self.store.config_versions("c")), 2)
        await self.fails(self.store.delete_config("c"), "not_found", "c")

    async def test_save_after_delete(self) -> None:
        """Saving a deleted configuration revives it and continues the version numbers."""
        await self.store.save_config("c", "STS", {"v": 1}, "alice")
        await self.store.delete_config("c")
        again = await self.store.save_config("c", "STS", {"v": 2}, "alice")
        self.assertEqual(again.version, 2)
        self.assertEqual(await self.store.config("c"), again)

    async def test_delete_used_by_tag(self) -> None:
        """A configuration in a tag cannot be deleted; the refusal names the tags."""
        await self.store.save_config("c", "STS", {}, "alice")
        await self.store.save_tag("t1", ["c"], "alice")
        await self.store.save_tag("t2", ["c"], "alice")
        await self.fails(self.store.delete_config("c"), "conflict", "t1, t2")
        self.assertEqual(len(await self.store.configs()), 1)

    async def test_save_new_atomic(self) -> None:
        """A failure storing the first version leaves no configuration behind."""
        await self.assert_atomic(
            "BEFORE INSERT ON configuration_versions",
            lambda: self.store.save_config("c", "STS", {}, "alice"),
        )

    async def test_save_revive_atomic(self) -> None:
        """A failure storing a revived configuration's version keeps it deleted."""
        await self.store.save_config("c", "STS", {}, "alice")
        await self.store.delete_config("c")
        await self.assert_atomic(
            "BEFORE INSERT ON configuration_versions",
            lambda: self.store.save_config("c", "STS", {"v": 2}, "alice"),
        )


class TagTests(StoreTestCase):
    """Tags: at most one configuration per system."""

    async def configs(self) -> None:
        await self.store.save_config("sts-1", "STS", {"v": 1}, "alice")
        await self.store.save_config("sts-2", "STS", {"v": 2}, "alice")
        await self.store.save_config("mvd-1", "MVD", {"v": 1}, "alice")
        await self.store.save_config("tfc-1", "TFC", {"v": 1}, "alice")

    async def test_save_and_read(self) -> None:
        """A tag maps each system to one configuration id."""
        await self.configs()
        row = await self.store.save_tag("physics", ["sts-1", "mvd-1"], "alice")
        self.assertEqual(row.configs, {"MVD": "mvd-1", "STS": "sts-1"})
        self.assertEqual((row.created, row.updated, row.author), (T0, T0, "alice"))
        self.assertEqual(await self.store.tag("physics"), row)
        await self.fails(self.store.tag("nope"), "not_found", "nope")

    async def test_replace(self) -> None:
        """Saving again replaces the members and keeps the creation time."""
        await self.configs()
        await self.store.save_tag("physics", ["sts-1", "mvd-1"], "alice")
        self.clock.advance(10)
        row = await self.store.save_tag("physics", ["sts-2", "tfc-1"], "bob")
        self.assertEqual(row.configs, {"STS": "sts-2", "TFC": "tfc-1"})
        self.assertEqual((row.created, row.updated, row.author), (T0, T0 + 10, "bob"))
        self.assertEqual(await self.store.tag("physics"), row)

    async def test_unknown_and_duplicate_systems(self) -> None:
        """Unknown ids and ids sharing a system are refused, each named."""
        await self.configs()
        await self.store.save_tag("physics", ["sts-1"], "alice")
        await self.fails(
            self.store.save_tag("physics", ["sts-1", "sts-2", "nope", "mvd-1", "gone"], "alice"),
            "bad_request",
            "unknown configurations nope, gone",
            "sts-1, sts-2 are all for system STS",
        )
        await self.fails(self.store.save_tag("physics", ["sts-1", "sts-1"], "alice"), "bad_request", "twice")
        await self.fails(self.store.save_tag("physics", [], "alice"), "bad_request", "at least one")
        await self.fails(self.store.save_tag("physics", "sts-1", "alice"), "bad_request")  # type: ignore[arg-type]
        self.assertEqual((await self.store.tag("physics")).configs, {"STS": "sts-1"})

    async def test_deleted_config_is_unknown(self) -> None:
        """A deleted configuration cannot go into a tag."""
        await self.configs()
        await self.store.delete_config("tfc-1")
        await self.fails(self.store.save_tag("t", ["tfc-1"], "alice"), "bad_request", "tfc-1")

    async def test_one_per_system_in_schema(self) -> None:
        """The database itself refuses a second configuration of a system in a tag."""
        await self.configs()
        await self.store.save_tag("t", ["sts-1"], "alice")
        conn = self.raw()
        self.assertRaises(
            sqlite3.IntegrityError,
            conn.execute,
            "INSERT INTO tag_members (tag, config_id, system) VALUES ('t', 'sts-2', 'STS')",
        )

    async def test_list_and_delete(self) -> None:
        """tags() lists by name; delete_tag removes a tag but not its configurations."""
        await self.configs()
        await self.store.save_tag("b", ["sts-1"], "alice")
        await self.store.save_tag("a", ["mvd-1"], "alice")
        self.assertEqual([t.name for t in await self.store.tags()], ["a", "b"])
        await self.store.delete_tag("b")
        self.assertEqual([t.name for t in await self.store.tags()], ["a"])
        await self.fails(self.store.delete_tag("b"), "not_found", "b")
        self.assertEqual(len(await self.store.configs()), 4)
        await self.store.delete_config("sts-1")

    async def test_resolve(self) -> None:
        """resolve_tag gives the latest version of each member, by system."""
        await self.configs()
        await self.store.save_tag("t", ["sts-1", "mvd-1"], "alice")
        newer = await self.store.save_config("sts-1", "STS", {"v": 9}, "alice")
        resolved = await self.store.resolve_tag("t")
        self.assertEqual(sorted(resolved), ["MVD", "STS"])
        self.assertEqual(resolved["STS"], newer)
        self.assertEqual(resolved["MVD"].version, 1)
        await self.fails(self.store.resolve_tag("nope"), "not_found")

    async def test_compatibility(self) -> None:
        """A tag is compatible when it misses no system (extra ones are named, not refused)."""
        await self.configs()
        await self.store.save_tag("t", ["sts-1", "mvd-1", "tfc-1"], "alice")
        self.assertEqual(
            await self.store.compatibility("t", {"STS", "MVD", "TFC"}),
            {"compatible": True, "missing": [], "extra": []},
        )
        self.assertEqual(
            await self.store.compatibility("t", {"STS", "TOF", "TFC", "DCS"}),
            {"compatible": False, "missing": ["DCS", "TOF"], "extra": ["MVD"]},
        )
        # more than the partition needs: still compatible (the PCA ignores the others)
        self.assertEqual(
            await self.store.compatibility("t", {"STS", "TFC"}),
            {"compatible": True, "missing": [], "extra": ["MVD"]},
        )
        await self.fails(self.store.compatibility("nope", {"STS"}), "not_found")

    async def test_replace_atomic(self) -> None:
        """A failure on the second new member leaves the old members and times."""
        await self.configs()
        await self.store.save_tag("t", ["sts-1", "mvd-1"], "alice")
        self.clock.advance(1)
        await self.assert_atomic(
            "BEFORE INSERT ON tag_members WHEN NEW.config_id = 'tfc-1'",
            lambda: self.store.save_tag("t", ["sts-2", "tfc-1"], "bob"),
        )

    async def test_create_atomic(self) -> None:
        """A failure inserting members of a new tag leaves no tag."""
        await self.configs()
        await self.assert_atomic(
            "BEFORE INSERT ON tag_members", lambda: self.store.save_tag("t", ["sts-1"], "alice")
        )

    async def test_delete_atomic(self) -> None:
        """A failure deleting the tag row keeps its members."""
        await self.configs()
        await self.store.save_tag("t", ["sts-1", "mvd-1"], "alice")
        await self.assert_atomic("BEFORE DELETE ON tags", lambda: self.store.delete_tag("t"))


class UserTests(StoreTestCase):
    """Users and roles."""

    async def test_add_and_read(self) -> None:
        """Users are stored with their roles ordered weakest first."""
        row = await self.store.add_user("bob", "hash-b", ["admin", "operator"])
        self.assertEqual(
            (row.name, row.password_hash, row.roles, row.created), ("bob", "hash-b", ("operator", "admin"), T0)
        )
        self.assertEqual(await self.store.user("bob"), row)
        self.assertIsNone(await self.store.user("carol"))
        self.assertIsNone(await self.store.user("x' OR 1=1 --"))
        self.assertIsNone(await self.store.user(None))  # type: ignore[arg-type]
        await self.store.add_user("alice", "hash-a", ["viewer"])
        self.assertEqual([u.name for u in await self.store.users()], ["alice", "bob"])
        self.assertNotIn("hash-b", repr(row))

    async def test_add_errors(self) -> None:
        """Duplicates conflict; unknown, missing or string roles and empty hashes are bad requests."""
        await self.store.add_user("bob", "h", ["viewer"])
        await self.fails(self.store.add_user("bob", "h", ["viewer"]), "conflict", "bob")
        await self.fails(self.store.add_user("carol", "h", ["boss"]), "bad_request", "boss")
        await self.fails(self.store.add_user("carol", "h", []), "bad_request", "at least one")
        await self.fails(self.store.add_user("carol", "h", "admin"), "bad_request")  # type: ignore[arg-type]
        await self.fails(self.store.add_user("carol", "", ["viewer"]), "bad_request", "password hash")
        self.assertEqual([u.name for u in await self.store.users()], ["bob"])

    async def test_password_and_roles(self) -> None:
        """set_password and set_roles change one user; unknown users are not found."""
        await self.store.add_user("alice", "h", ["admin"])
        await self.store.add_user("bob", "h", ["viewer"])
        await self.store.set_password("bob", "new")
        self.assertEqual((await self.store.user("bob")).password_hash, "new")
        self.assertEqual((await self.store.set_roles("bob", ["expert"])).roles, ("expert",))
        self.assertEqual((await self.store.user("bob")).roles, ("expert",))
        await self.fails(self.store.set_password("carol", "x"), "not_found", "carol")
        await self.fails(self.store.set_roles("carol", ["viewer"]), "not_found", "carol")

    async def test_last_admin_kept(self) -> None:
        """The last admin can neither be deleted nor lose the admin role."""
        await self.store.add_user("carol", "h", ["viewer"])
        await self.store.set_roles("carol", ["operator"])
        await self.store.delete_user("carol")
        await self.store.add_user("alice", "h", ["admin"])
        await self.fails(self.store.delete_user("alice"), "conflict", "last admin")
        await self.fails(self.store.set_roles("alice", ["expert"]), "conflict", "last admin")
        await self.store.add_user("bob", "h", ["admin"])
        await self.store.set_roles("alice", ["expert"])
        await self.store.delete_user("alice")
        self.assertEqual([u.name for u in await self.store.users()], ["bob"])

    async def test_delete_cascades(self) -> None:
        """Deleting a user removes their roles, tokens and control ownership."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.add_token("a" * 64, "bob", "session")
        await self.store.take_control("p1", "bob")
        await self.store.delete_user("bob")
        self.assertIsNone(await self.store.user("bob"))
        self.assertIsNone(await self.store.token("a" * 64))
        self.assertIsNone(await self.store.control("p1"))
        self.assertEqual(self.dump()["user_roles"], [("alice", "admin")])
        await self.fails(self.store.delete_user("bob"), "not_found", "bob")

    async def test_add_atomic(self) -> None:
        """A failure storing the second role leaves no user."""
        await self.assert_atomic(
            "BEFORE INSERT ON user_roles WHEN NEW.role = 'admin'",
            lambda: self.store.add_user("bob", "h", ["viewer", "admin"]),
        )

    async def test_set_roles_atomic(self) -> None:
        """A failure inserting the new roles keeps the old ones."""
        await self.store.add_user("bob", "h", ["viewer"])
        await self.assert_atomic(
            "BEFORE INSERT ON user_roles", lambda: self.store.set_roles("bob", ["operator"])
        )

    async def test_delete_atomic(self) -> None:
        """A failure deleting the user row keeps tokens, roles and control."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.add_token("b" * 64, "bob", "api")
        await self.store.take_control("p1", "bob")
        await self.assert_atomic("BEFORE DELETE ON users", lambda: self.store.delete_user("bob"))


class TokenTests(StoreTestCase):
    """Bearer tokens."""

    H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64

    def setUp(self) -> Deferred[None]:
        d = super().setUp()
        d.addCallback(lambda _: self.store.add_user("bob", "h", ["viewer"]))
        d.addCallback(lambda _: None)
        return d

    async def test_add_and_read(self) -> None:
        """A token is found by its hash with its user and kind."""
        row = await self.store.add_token(self.H1, "bob", "session", expires=T0 + 60)
        self.assertEqual(
            (row.user, row.kind, row.created, row.last_used, row.expires), ("bob", "session", T0, T0, T0 + 60)
        )
        self.assertEqual(await self.store.token(self.H1), row)
        self.assertIsNone(await self.store.token(self.H2))
        self.assertIsNone(await self.store.token("not a hash"))
        self.assertNotIn(self.H1, repr(row))

    async def test_add_errors(self) -> None:
        """Unknown users, duplicate hashes, bad hashes and kinds are refused."""
        await self.store.add_token(self.H1, "bob", "api")
        await self.fails(self.store.add_token(self.H2, "carol", "api"), "not_found", "carol")
        await self.fails(self.store.add_token(self.H1, "bob", "api"), "conflict")
        await self.fails(self.store.add_token("xyz", "bob", "api"), "bad_request", "hash")
        await self.fails(self.store.add_token(self.H2, "bob", "cookie"), "bad_request", "cookie")
        await self.fails(self.store.add_token(self.H2, "bob", "api", expires="soon"), "bad_request")  # type: ignore[arg-type]

    async def test_expiry(self) -> None:
        """An expired token is not returned, and expire_tokens deletes it."""
        await self.store.add_token(self.H1, "bob", "session", expires=T0 + 60)
        await self.store.add_token(self.H2, "bob", "api")
        self.clock.advance(59)
        self.assertIsNotNone(await self.store.token(self.H1))
        self.clock.advance(1)
        self.assertIsNone(await self.store.token(self.H1))
        self.assertIsNotNone(await self.store.token(self.H2))
        self.assertEqual(await self.store.expire_tokens(), 1)
        self.assertEqual(len(self.dump()["tokens"]), 1)

    async def test_touch(self) -> None:
        """touch_token records the time of use; unknown tokens are not found."""
        await self.store.add_token(self.H1, "bob", "session")
        self.clock.advance(30)
        await self.store.touch_token(self.H1)
        self.assertEqual((await self.store.token(self.H1)).last_used, T0 + 30)
        await self.fails(self.store.touch_token(self.H2), "not_found")

    async def test_delete(self) -> None:
        """delete_token says whether it deleted; delete_tokens deletes by user and kind."""
        await self.store.add_user("carol", "h", ["viewer"])
        await self.store.add_token(self.H1, "bob", "session")
        await self.store.add_token(self.H2, "bob", "api")
        await self.store.add_token(self.H3, "carol", "session")
        self.assertTrue(await self.store.delete_token(self.H1))
        self.assertFalse(await self.store.delete_token(self.H1))
        await self.store.add_token(self.H1, "bob", "session")
        self.assertEqual(await self.store.delete_tokens("bob", "session"), 1)
        self.assertIsNotNone(await self.store.token(self.H2))
        self.assertEqual(await self.store.delete_tokens("bob"), 1)
        self.assertIsNotNone(await self.store.token(self.H3))
        await self.fails(self.store.delete_tokens("bob", "other"), "bad_request")


class ControlTests(StoreTestCase):
    """Control ownership."""

    async def test_take_and_read(self) -> None:
        """Taking free control succeeds; control() and controls() show the holder."""
        await self.seed()
        row = await self.store.take_control("p1", "alice")
        self.assertEqual(row, ControlRow("p1", "alice", T0, T0))
        self.assertEqual(await self.store.control("p1"), row)
        self.assertIsNone(await self.store.control("p2"))
        await self.store.take_control(ECS_SCOPE, "alice")
        self.assertEqual([c.scope for c in await self.store.controls()], [ECS_SCOPE, "p1"])

    async def test_taken_by_other(self) -> None:
        """Another user is refused with the holder and the time they took it."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.take_control("p1", "alice")
        self.clock.advance(5)
        e = await self.fails(self.store.take_control("p1", "bob"), "conflict", "held by alice", "2023-11-14T22:13:20")
        self.assertEqual((e.holder, e.since), ("alice", T0))

    async def test_take_again(self) -> None:
        """The holder taking again succeeds, keeps since and counts as activity."""
        await self.seed()
        await self.store.take_control("p1", "alice")
        self.clock.advance(5)
        self.assertEqual(await self.store.take_control("p1", "alice"), ControlRow("p1", "alice", T0, T0 + 5))

    async def test_force(self) -> None:
        """force replaces the holder and names who was replaced."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.take_control("p1", "bob")
        self.clock.advance(5)
        row = await self.store.take_control("p1", "alice", force=True)
        self.assertEqual(row, ControlRow("p1", "alice", T0 + 5, T0 + 5, replaced="bob"))
        self.assertEqual((await self.store.control("p1")).holder, "alice")

    async def test_take_unknown(self) -> None:
        """Unknown partitions and users are not found."""
        await self.seed()
        await self.fails(self.store.take_control("p9", "alice"), "not_found", "p9")
        await self.fails(self.store.take_control("p1", "zed"), "not_found", "zed")
        self.assertEqual(await self.store.controls(), [])

    async def test_release(self) -> None:
        """Release by the holder or by anyone; not by another user; not when free."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.take_control("p1", "alice")
        e = await self.fails(self.store.release_control("p1", "bob"), "conflict", "alice")
        self.assertEqual(e.holder, "alice")
        self.assertEqual((await self.store.release_control("p1", "alice")).holder, "alice")
        await self.fails(self.store.release_control("p1"), "not_found", "p1")
        await self.store.take_control("p1", "bob")
        self.assertEqual((await self.store.release_control("p1")).holder, "bob")
        self.assertIsNone(await self.store.control("p1"))

    async def test_touch(self) -> None:
        """touch_control records activity of the holder only."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.take_control("p1", "alice")
        self.clock.advance(7)
        self.assertEqual((await self.store.touch_control("p1", "alice")).last_activity, T0 + 7)
        await self.fails(self.store.touch_control("p1", "bob"), "conflict", "alice")
        await self.fails(self.store.touch_control("p2", "alice"), "not_found", "p2")

    async def test_expire(self) -> None:
        """expire_controls releases the scopes idle for the given time and returns them."""
        await self.seed()
        await self.store.take_control("p1", "alice")
        self.clock.advance(100)
        await self.store.take_control("p2", "alice")
        released = await self.store.expire_controls(100)
        self.assertEqual([c.scope for c in released], ["p1"])
        self.assertEqual([c.scope for c in await self.store.controls()], ["p2"])
        self.assertEqual(await self.store.expire_controls(100, now=T0 + 150), [])
        self.assertEqual([c.scope for c in await self.store.expire_controls(100, now=T0 + 200)], ["p2"])

    async def test_release_all(self) -> None:
        """release_all frees every scope of one user (logout)."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.take_control("p1", "alice")
        await self.store.take_control(ECS_SCOPE, "alice")
        await self.store.take_control("p2", "bob")
        self.assertEqual([c.scope for c in await self.store.release_all("alice")], [ECS_SCOPE, "p1"])
        self.assertEqual([c.holder for c in await self.store.controls()], ["bob"])

    async def test_expire_atomic(self) -> None:
        """A failure releasing the second idle scope releases none."""
        await self.seed()
        await self.store.take_control("p1", "alice")
        await self.store.take_control("p2", "alice")
        self.clock.advance(100)
        await self.assert_atomic(
            "BEFORE DELETE ON control WHEN OLD.scope = 'p2'", lambda: self.store.expire_controls(10)
        )

    async def test_force_atomic(self) -> None:
        """A failure replacing the holder keeps the old holder."""
        await self.seed()
        await self.store.add_user("bob", "h", ["operator"])
        await self.store.take_control("p1", "bob")
        await self.assert_atomic(
            "BEFORE UPDATE ON control", lambda: self.store.take_control("p1", "alice", force=True)
        )

    async def race(self, stores: list[Store], takers: int) -> None:
        await self.store.add_partition("p1")
        for i in range(takers):
            await self.store.add_user(f"u{i:03}", "h", ["operator"])
        attempts = [
            stores[i % len(stores)].take_control("p1", f"u{i:03}").addErrback(lambda f: f.trap(StoreError) and f.value)
            for i in range(takers)
        ]
        results = await gatherResults(attempts)
        wins = [r for r in results if isinstance(r, ControlRow)]
        losses = [r for r in results if isinstance(r, StoreError)]
        self.assertEqual(len(wins), 1)
        self.assertEqual(len(losses), takers - 1)
        winner = wins[0].holder
        self.assertEqual({(e.code, e.holder) for e in losses}, {("conflict", winner)})
        self.assertEqual((await self.store.control("p1")).holder, winner)

    async def test_race_100_takers(self) -> None:
        """Of 100 concurrent take_control calls by 100 users exactly one wins."""
        await self.race([self.store], 100)

    async def test_race_two_connections(self) -> None:
        """Takers spread over two stores (two connections to one file) still give one winner."""
        other = await self.open_store()
        await self.race([self.store, other], 100)


class RunTests(StoreTestCase):
    """Runs and their configuration snapshots."""

    async def test_start_and_end(self) -> None:
        """A run records partition, tag, exact configurations and operator; end closes it."""
        await self.seed()
        sts = await self.store.save_config("sts-a", "STS", {"gain": 3}, "alice")
        run = await self.store.start_run(
            "p1", "physics", {"STS": sts, "TFC": {"config_id": "tfc", "version": 2, "parameters": {}}}, "alice"
        )
        self.assertEqual(run.number, 1)
        self.assertEqual(
            run.configs,
            {
                "STS": {"config_id": "sts-a", "version": 1, "parameters": {"gain": 3}},
                "TFC": {"config_id": "tfc", "version": 2, "parameters": {}},
            },
        )
        self.assertEqual(
            (run.partition, run.tag, run.operator, run.started, run.ended, run.outcome),
            ("p1", "physics", "alice", T0, None, None),
        )
        self.assertEqual(await self.store.open_run("p1"), run)
        self.assertEqual(await self.store.run(1), run)
        self.clock.advance(60)
        ended = await self.store.end_run(1, "stopped")
        self.assertEqual((ended.ended, ended.outcome, ended.configs), (T0 + 60, "stopped", run.configs))
        self.assertIsNone(await self.store.open_run("p1"))
        self.assertEqual(await self.store.run(1), ended)

    async def test_numbers_increase(self) -> None:
        """Run numbers are global and increase across partitions."""
        await self.seed()
        r1 = await self.store.start_run("p1", None, {}, "alice")
        r2 = await self.store.start_run("p2", None, {}, "alice")
        await self.store.end_run(r1.number, "stopped")
        r3 = await self.store.start_run("p1", None, {}, "alice")
        self.assertEqual([r1.number, r2.number, r3.number], [1, 2, 3])

    async def test_errors(self) -> None:
        """One open run per partition; unknown partitions and runs; ending twice."""
        await self.seed()
        await self.store.start_run("p1", None, {}, "alice")
        await self.fails(self.store.start_run("p1", None, {}, "alice"), "conflict", "run 1")
        await self.fails(self.store.start_run("p9", None, {}, "alice"), "not_found", "p9")
        await self.fails(self.store.end_run(7, "stopped"), "not_found", "7")
        await self.store.end_run(1, "aborted")
        await self.fails(self.store.end_run(1, "stopped"), "conflict", "aborted")
        await self.fails(self.store.run(2), "not_found")
        await self.fails(self.store.end_run(1, "bad outcome"), "bad_request")

    async def test_bad_snapshots(self) -> None:
        """A snapshot must give config_id, version and JSON parameters for each system."""
        await self.seed()
        for bad in (
            [],
            {"STS": "sts-a"},
            {"STS": {"config_id": "sts-a", "version": 1}},
            {"STS": {"config_id": "sts-a", "version": 0, "parameters": {}}},
            {"STS": {"config_id": "sts-a", "version": 1, "parameters": [1]}},
            {"bad name": {"config_id": "sts-a", "version": 1, "parameters": {}}},
        ):
            await self.fails(self.store.start_run("p1", None, bad, "alice"), "bad_request")  # type: ignore[arg-type]
        self.assertEqual(await self.store.runs(), [])

    async def test_list(self) -> None:
        """runs() lists newest first, by partition, before a number, up to a limit."""
        await self.seed()
        for i in range(6):
            run = await self.store.start_run("p1" if i % 2 else "p2", None, {}, "alice")
            await self.store.end_run(run.number, "stopped")
        self.assertEqual([r.number for r in await self.store.runs()], [6, 5, 4, 3, 2, 1])
        self.assertEqual([r.number for r in await self.store.runs("p1")], [6, 4, 2])
        self.assertEqual([r.number for r in await self.store.runs(limit=2)], [6, 5])
        self.assertEqual([r.number for r in await self.store.runs(before=3)], [2, 1])
        self.assertEqual([r.number for r in await self.store.runs("p2", limit=1, before=5)], [3])
        await self.fails(self.store.runs(limit=0), "bad_request")

    async def test_one_open_run_in_schema(self) -> None:
        """The database itself refuses a second open run of a partition."""
        await self.seed()
        await self.store.start_run("p1", None, {}, "alice")
        self.assertRaises(
            sqlite3.IntegrityError,
            self.raw().execute,
            "INSERT INTO runs (number, partition, configs, operator, started) VALUES (9, 'p1', '{}', 'x', 0)",
        )


class RunsWrittenAheadTests(StoreTestCase):
    """Commands written ahead with the open run and their audit row (schema version 4)."""

    async def test_stop_written_ahead_then_done(self) -> None:
        """A stop is written with its audit row (pending) and the run; its answer fills the outcome."""
        await self.seed()
        run = await self.store.start_run("p1", None, {}, "alice")
        self.clock.advance(5)
        audit_id, number = await self.store.command_ahead("alice", "stop", {"partition": "p1"}, "p1")
        self.assertEqual(number, run.number)
        pending = await self.store.open_run("p1")
        assert pending is not None
        self.assertEqual((pending.pending, pending.pending_at), ("stop", T0 + 5))
        [row] = await self.store.audit_entries(action="stop")
        self.assertEqual((row.id, row.outcome), (audit_id, "pending"))
        self.assertTrue(await self.store.command_done(audit_id, "ok"))
        self.assertFalse(await self.store.command_done(audit_id, "again"))  # answered once
        self.assertEqual((await self.store.audit_entries(action="stop"))[0].outcome, "ok")
        closed = await self.store.end_run(run.number, "stopped", ended=T0 + 6, note="n1")
        self.assertEqual((closed.ended, closed.outcome, closed.note, closed.pending), (T0 + 6, "stopped", "n1", None))

    async def test_refused_command_no_longer_pending(self) -> None:
        """A refused abort leaves the run open without it; a configure marks no run."""
        await self.seed()
        run = await self.store.start_run("p1", None, {}, "alice")
        audit_id, _ = await self.store.command_ahead("alice", "abort", {}, "p1")
        await self.store.command_done(audit_id, "timeout: no answer", refused=True)
        self.assertIsNone((await self.store.run(run.number)).pending)
        await self.store.command_ahead("alice", "configure", {"tag": "x"}, "p1")
        self.assertIsNone((await self.store.run(run.number)).pending)
        _, none = await self.store.command_ahead("alice", "abort", {}, "p2")
        self.assertIsNone(none)

    async def test_resolve_pending(self) -> None:
        """Carried out: closed with the command's outcome when it was written; not: kept open, audited so."""
        await self.seed()
        r1 = await self.store.start_run("p1", None, {}, "alice")
        await self.store.command_ahead("alice", "abort", {}, "p1")
        self.clock.advance(30)
        closed = await self.store.resolve_pending(r1.number, True)
        self.assertEqual((closed.outcome, closed.ended), ("aborted", T0))
        self.assertTrue((await self.store.audit_entries(action="abort"))[0].outcome.startswith("ok"))
        r2 = await self.store.start_run("p2", None, {}, "alice")
        await self.store.command_ahead("alice", "stop", {}, "p2")
        kept = await self.store.resolve_pending(r2.number, False)
        self.assertEqual((kept.ended, kept.pending), (None, None))
        self.assertTrue((await self.store.audit_entries(action="stop"))[0].outcome.startswith("not done"))
        self.assertEqual(await self.store.resolve_pending(r1.number, True), closed)  # nothing left to resolve

    async def test_settle_pending_audit(self) -> None:
        """At start, pending audit rows no open run waits for get the given outcome; the run's own stays."""
        await self.seed()
        await self.store.start_run("p1", None, {}, "alice")
        await self.store.command_ahead("alice", "stop", {}, "p1")
        await self.store.command_ahead("alice", "configure", {}, "p2")
        self.assertEqual(await self.store.settle_pending_audit("unknown"), 1)
        outcomes = {r.action: r.outcome for r in await self.store.audit_entries()}
        self.assertEqual(outcomes, {"stop": "pending", "configure": "unknown"})

    async def test_notes_accumulate(self) -> None:
        """Notes are appended, never replaced; an end before the start is moved to the start."""
        await self.seed()
        run = await self.store.start_run("p1", None, {}, "alice", started=T0 + 10)
        await self.store.note_run(run.number, "interrupted: PCA restarted at x")
        await self.store.note_run(run.number, "recording continued")
        closed = await self.store.end_run(run.number, "failed", ended=T0, note="did not resume")
        self.assertEqual(closed.note, "interrupted: PCA restarted at x; recording continued; did not resume")
        self.assertEqual(closed.ended, T0 + 10)
        await self.fails(self.store.note_run(99, "x"), "not_found")

    async def test_storage_error(self) -> None:
        """A write refused as a full disk is 'storage' naming the cause; a locked database stays 'unavailable'."""
        await self.seed()
        conn = self.raw()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        await self.store._pool.runInteraction(lambda txn: txn.execute(f"PRAGMA max_page_count = {pages}"))
        error = None
        for i in range(10_000):
            try:
                await self.store.audit("filler", "fill", {"i": i, "pad": "x" * 500}, "ok")
            except StoreError as e:
                error = e
                break
        assert error is not None
        self.assertEqual(error.code, "storage")
        self.assertIn("cannot be written", error.reason)
        self.assertEqual([p.id for p in await self.store.partitions()], ["p1", "p2"])  # reads still work


class AuditTests(StoreTestCase):
    """The audit trail."""

    async def test_record_and_list(self) -> None:
        """Entries are listed newest first and filtered by user and action."""
        first = await self.store.audit("alice", "take_control", {"scope": "p1"}, "ok")
        self.clock.advance(1)
        await self.store.audit("bob", "take_control", {"scope": "p1"}, "conflict: held by alice")
        await self.store.audit("alice", "configure", {"tag": "physics", "auto": True}, "ok")
        self.assertEqual(
            (first.user, first.action, first.arguments, first.outcome, first.time),
            ("alice", "take_control", {"scope": "p1"}, "ok", T0),
        )
        entries = await self.store.audit_entries()
        self.assertEqual([e.action for e in entries], ["configure", "take_control", "take_control"])
        self.assertEqual([e.id for e in await self.store.audit_entries(user="alice")], [3, 1])
        self.assertEqual([e.user for e in await self.store.audit_entries(action="take_control")], ["bob", "alice"])
        self.assertEqual(len(await self.store.audit_entries(limit=1)), 1)
        self.assertEqual([e.id for e in await self.store.audit_entries(before=3)], [2, 1])

    async def test_any_text_recorded(self) -> None:
        """A failed login's odd user name and non-JSON arguments are recorded as given."""
        name = "x' OR 1=1; --"
        row = await self.store.audit(name, "login", {"when": {1, 2}.__class__.__name__, "obj": object}, "refused")
        self.assertEqual(row.user, name)
        self.assertEqual((await self.store.audit_entries(user=name))[0].arguments["when"], "set")
        await self.fails(self.store.audit("a", "", {}, "ok"), "bad_request")
        await self.fails(self.store.audit("a", "x", [], "ok"), "bad_request")  # type: ignore[arg-type]


class LogTests(StoreTestCase):
    """Log events."""

    def entry(self, t: float, level: str, message: str, partition: str | None = "p1") -> LogEntry:
        return LogEntry(time=t, level=level, source="pca", message=message, partition=partition)

    async def test_ten_thousand(self) -> None:
        """10,000 events are stored in one call and all read back."""
        entries = [self.entry(T0 + i, "info", f"event {i}") for i in range(10_000)]
        self.assertEqual(await self.store.add_logs(entries), 10_000)
        rows = await self.store.logs(limit=20_000)
        self.assertEqual(len(rows), 10_000)
        self.assertEqual(rows[0].message, "event 9999")
        self.assertEqual(await self.store.add_logs([]), 0)

    async def test_filters(self) -> None:
        """Partition, minimum level, since and limit filter; newest first."""
        await self.store.add_logs(
            [
                self.entry(T0 + 1, "debug", "d"),
                self.entry(T0 + 2, "info", "i"),
                self.entry(T0 + 3, "warn", "w", partition="p2"),
                self.entry(T0 + 4, "error", "e", partition=None),
                self.entry(T0 + 5, "critical", "c"),
            ]
        )
        messages = lambda rows: [r.message for r in rows]  # noqa: E731
        self.assertEqual(messages(await self.store.logs()), ["c", "e", "w", "i", "d"])
        self.assertEqual(messages(await self.store.logs(partition="p1")), ["c", "i", "d"])
        self.assertEqual(messages(await self.store.logs(level="warn")), ["c", "e", "w"])
        self.assertEqual(messages(await self.store.logs(level="debug")), ["c", "e", "w", "i", "d"])
        self.assertEqual(messages(await self.store.logs(since=T0 + 3)), ["c", "e", "w"])
        self.assertEqual(messages(await self.store.logs(partition="p1", level="info", since=T0 + 2, limit=1)), ["c"])
        row = (await self.store.logs(level="error"))[1]
        self.assertEqual((row.time, row.partition, row.level, row.source), (T0 + 4, None, "error", "pca"))
        await self.fails(self.store.logs(level="verbose"), "bad_request", "verbose")

    async def test_paging_keeps_equal_times(self) -> None:
        """Paging with (until, before_id) from the last row shown skips no event of the same time."""
        await self.store.add_logs([self.entry(T0 + (1 if i < 5 else 2), "info", f"m{i}") for i in range(8)])
        seen: list[str] = []
        page = await self.store.logs(limit=3)
        while page:
            seen += [r.message for r in page]
            last = page[-1]
            page = await self.store.logs(limit=3, until=last.time, before_id=last.id)
        self.assertEqual(sorted(seen), [f"m{i}" for i in range(8)])
        self.assertEqual(len(seen), 8)
        # by time alone the rest of the page boundary's second would be lost
        first = await self.store.logs(limit=4)
        self.assertLess(len(first) + len(await self.store.logs(until=first[-1].time)), 8)
        await self.fails(self.store.logs(before_id=3), "bad_request", "until")

    async def test_search_escapes_wildcards(self) -> None:
        """q is a plain substring: % _ and backslash match only themselves."""
        texts = ["100% done", "100 done", "a_b", "axb", "back\\slash", "backslash", "Mixed Case"]
        await self.store.add_logs([self.entry(T0 + i, "info", t) for i, t in enumerate(texts)])

        async def search(q: str) -> list[str]:
            return sorted(r.message for r in await self.store.logs(q=q))

        self.assertEqual(await search("0%"), ["100% done"])
        self.assertEqual(await search("%"), ["100% done"])
        self.assertEqual(await search("a_b"), ["a_b"])
        self.assertEqual(await search("_"), ["a_b"])
        self.assertEqual(await search("k\\s"), ["back\\slash"])
        self.assertEqual(await search("mixed"), ["Mixed Case"])
        self.assertEqual(await search("'; DROP TABLE logs; --"), [])
        self.assertEqual(len(await search("")), len(texts))

    async def test_prune(self) -> None:
        """prune_logs deletes events older than a time and says how many."""
        await self.store.add_logs([self.entry(T0 + i, "info", str(i)) for i in range(10)])
        self.assertEqual(await self.store.prune_logs(T0 + 4), 4)
        self.assertEqual([r.message for r in await self.store.logs()][-1], "4")
        self.assertEqual(await self.store.prune_logs(T0), 0)

    async def test_bad_entries(self) -> None:
        """One invalid event refuses the whole batch, naming its index."""
        good = self.entry(T0, "info", "ok")
        for bad in (
            self.entry(T0, "loud", "x"),
            self.entry(float("nan"), "info", "x"),
            self.entry(T0, "info", "x", partition="bad name"),
            {"time": T0},
        ):
            await self.fails(self.store.add_logs([good, bad]), "bad_request", "1")  # type: ignore[list-item]
        self.assertEqual(await self.store.logs(), [])

    async def test_add_atomic(self) -> None:
        """A failure at the 5,000th of 10,000 events stores none of them."""
        await self.store.add_logs([self.entry(T0, "info", "before")])
        entries = [self.entry(T0 + i, "info", f"event {i}") for i in range(10_000)]
        await self.assert_atomic(
            "BEFORE INSERT ON logs WHEN NEW.message = 'event 5000'", lambda: self.store.add_logs(entries)
        )
