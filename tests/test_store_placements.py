"""
Tests for L{ecs.store.placements}: placements and launch records on a real
SQLite file (the store's one database thread).
"""

from __future__ import annotations

import json

from ecs.store.placements import MAX_OPTIONS, LaunchRow, PlacementRow
from tests.test_store import T0, StoreTestCase


class PlacementTests(StoreTestCase):
    """Placements: insert, update, read, delete, validation."""

    async def test_set_and_read(self) -> None:
        """A placement is stored with its kind, options and author, and read back."""
        row = await self.store.set_placement("detector:STS", "localhost", "local", {"args": ["--type", "STS"]},
                                             True, "alice")
        self.assertEqual(row, PlacementRow("detector:STS", "detector", "localhost", "local",
                                           {"args": ["--type", "STS"]}, True, T0, "alice"))
        self.assertEqual(row.id, "STS")
        self.assertEqual(await self.store.placement("detector:STS"), row)
        self.assertIsNone(await self.store.placement("detector:MVD"))
        await self.store.set_placement("pca:demo", "node1", "ssh")
        self.assertEqual([r.agent for r in await self.store.placements()], ["detector:STS", "pca:demo"])

    async def test_update(self) -> None:
        """Setting again replaces host, launcher, options, autostart and author."""
        await self.store.set_placement("global:all", "localhost", "local", {}, True, "alice")
        self.clock.advance(5)
        row = await self.store.set_placement("global:all", "node7", "slurm", {"partition": "daq"}, False, "bob")
        self.assertEqual(await self.store.placement("global:all"), row)
        self.assertEqual((row.host, row.launcher, row.options, row.autostart, row.updated, row.author),
                         ("node7", "slurm", {"partition": "daq"}, False, T0 + 5, "bob"))
        self.assertEqual(len(await self.store.placements()), 1)

    async def test_delete(self) -> None:
        """Deleting removes the placement; deleting it again is not_found."""
        await self.store.set_placement("simhost:sim", "localhost", "local")
        await self.store.delete_placement("simhost:sim")
        self.assertEqual(await self.store.placements(), [])
        await self.fails(self.store.delete_placement("simhost:sim"), "not_found", "simhost:sim")

    async def test_validation(self) -> None:
        """Bad agent names, hosts, launchers, options and autostart are refused, naming the field."""
        cases = [
            (("STS", "localhost", "local"), "agent name"),
            (("robot:STS", "localhost", "local"), "kind"),
            (("detector:a;touch pwned", "localhost", "local"), "agent id"),
            (("detector:$(id)", "localhost", "local"), "agent id"),
            (("detector:STS", "-oProxyCommand=x", "local"), "host"),
            (("detector:STS", "a b", "local"), "host"),
            (("detector:STS", "localhost", "rsh"), "launcher"),
            (("detector:STS", "localhost", "local", ["x"]), "options"),
            (("detector:STS", "localhost", "local", {"x": float("nan")}), "options"),
            (("detector:STS", "localhost", "local", {"x": "y" * MAX_OPTIONS}), "too large"),
            (("detector:STS", "localhost", "local", {}, "yes"), "autostart"),
            (("detector:STS", "localhost", "local", {}, True, "bad user"), "author"),
        ]
        for args, word in cases:
            await self.fails(self.store.set_placement(*args), "bad_request", word)
        await self.fails(self.store.placement("nope"), "bad_request", "agent name")
        self.assertEqual(await self.store.placements(), [])


class LaunchTests(StoreTestCase):
    """Launch records: record, replace, list, delete, validation."""

    async def test_record_and_delete(self) -> None:
        """A record is kept (replaced on a new launch) until deleted."""
        record = json.dumps({"agent": "pca:demo", "pid": 1234})
        row = await self.store.record_launch("pca:demo", "local", "localhost", record)
        self.assertEqual(row, LaunchRow("pca:demo", "local", "localhost", record, T0))
        self.clock.advance(3)
        newer = json.dumps({"agent": "pca:demo", "pid": 99})
        await self.store.record_launch("pca:demo", "local", "localhost", newer)
        self.assertEqual(await self.store.launches(), [LaunchRow("pca:demo", "local", "localhost", newer, T0 + 3)])
        self.assertTrue(await self.store.delete_launch("pca:demo"))
        self.assertFalse(await self.store.delete_launch("pca:demo"))
        self.assertEqual(await self.store.launches(), [])

    async def test_validation(self) -> None:
        """Records must be JSON objects of bounded size, for valid agents, launchers and hosts."""
        await self.fails(self.store.record_launch("pca:demo", "local", "localhost", "not json"), "bad_request", "JSON")
        await self.fails(self.store.record_launch("pca:demo", "local", "localhost", "[1]"), "bad_request", "object")
        await self.fails(self.store.record_launch("pca:demo", "local", "localhost", "x" * 20000), "bad_request")
        await self.fails(self.store.record_launch("pca", "local", "localhost", "{}"), "bad_request", "agent")
        await self.fails(self.store.record_launch("pca:demo", "telnet", "localhost", "{}"), "bad_request", "launcher")
        await self.fails(self.store.record_launch("pca:demo", "local", "", "{}"), "bad_request", "host")
        self.assertEqual(await self.store.launches(), [])
