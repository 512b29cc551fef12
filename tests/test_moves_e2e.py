# -*- test-case-name: tests.test_moves_e2e -*-
"""
Management that cannot tear, end to end (issue 11): C{twistd -n ecs-demo}
on loopback with its agents and three more partitions (their PCAs started
by the ECA), driven through the HTTP API.

  - ten concurrent moves of one detector over HTTP: exactly one wins, the
    detector is in exactly one partition, the database and the PCAs agree,
    no partition is locked, its agent keeps running;
  - the ECA SIGKILLed at random moments of a move (seeded) and started
    again: no lock left, no operation left open, the detector in exactly one
    partition, database and PCAs agreeing;
  - a detector created at run time runs with its type; deleted, its agent
    is stopped and its placement removed.

The database is read directly (read-only, the test's own process) to
compare it with what the PCAs say.  Agent processes are killed in cleanup
by pid and process group (L{kill_marked}), never by name.
"""

from __future__ import annotations

import random
import sqlite3
from typing import Any

from twisted.internet import defer, reactor, task

from tests.procs import pid_alive
from tests.test_supervision_e2e import DEMO_AGENTS, EcaProcessCase

PARTITIONS = ("demo", "p2", "p3", "p4")
SEED = 11
"""The seed of the moments the ECA is killed at (printed with each kill)."""

KILLS = 6


class MovesEndToEndTests(EcaProcessCase):
    """Concurrent moves, an ECA killed during moves, detectors created and deleted: real processes."""

    timeout = 420

    async def sleep(self, seconds: float) -> None:
        await task.deferLater(reactor, seconds, lambda: None)

    def db(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read of the ECA's database (read-only, from the test's process)."""
        connection = sqlite3.connect(f"file:{self.state_dir / 'ecs.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            return list(connection.execute(sql, params))
        finally:
            connection.close()

    async def partition(self, partition: str) -> dict[str, Any]:
        code, body = await self.api("GET", f"/api/partitions/{partition}")
        self.assertEqual(code, 200, body)
        assert isinstance(body, dict)
        return body

    async def holders(self, detector: str) -> dict[str, bool]:
        """For each partition, whether its PCA (as the ECA mirrors it) has C{detector}."""
        shown = {}
        for partition in PARTITIONS:
            details = await self.partition(partition)
            shown[partition] = any(s["id"] == detector for s in details["systems"])
        return shown

    async def settled(self, detector: str, timeout: float = 60.0) -> str | None:
        """
        Until every partition is connected and unlocked, no operation is
        open, and the PCAs agree with the database about C{detector}; its
        partition.
        """
        last: Any = None
        for _ in range(int(timeout / 0.25)):
            details = [await self.partition(p) for p in PARTITIONS]
            rows = self.db("SELECT partition FROM detectors WHERE id = ?", (detector,))
            open_ops = self.db("SELECT id, action, phase FROM management_ops WHERE ended IS NULL")
            where = rows[0][0] if rows else "gone"
            having = {d["id"] for d in details if any(s["id"] == detector for s in d["systems"])}
            last = (where, having, [(d["id"], d["connected"], d["locked"]) for d in details], open_ops)
            if (
                all(d["connected"] and not d["locked"] for d in details)
                and not open_ops
                and having == ({where} if where is not None else set())
            ):
                return str(where) if where is not None else None
            await self.sleep(0.25)
        raise AssertionError(f"never settled: database, PCAs having {detector}, partitions, open operations: {last}")

    async def start_demo(self) -> tuple[Any, Any]:
        proc, transport = self.start_eca("ecs-demo")
        await self.login(proc)
        return proc, transport

    async def test_moves_kills_and_inventory(self) -> None:
        """See the module docstring: one demo, the three scenarios in turn."""
        proc, transport = await self.start_demo()
        await self.until(self.all_up(DEMO_AGENTS), "all demo agents up")
        self.assertEqual((await self.api("POST", "/api/control"))[0], 200)
        for partition in PARTITIONS[1:]:
            code, body = await self.api("POST", "/api/partitions", {"id": partition})
            self.assertEqual(code, 200, body)
        agents = await self.until(self.all_up({f"pca:{p}" for p in PARTITIONS}), "every PCA up")
        trd_pid = agents["detector:TRD"]["status"]["pid"]
        self.assertEqual(await self.settled("TRD"), "demo")

        # -- ten concurrent moves over HTTP --------------------------------------------------
        targets = [PARTITIONS[1 + n % 3] if n % 4 != 3 else None for n in range(10)]
        results = await defer.gatherResults(
            [defer.ensureDeferred(self.api("POST", "/api/detectors/TRD/move", {"to": to})) for to in targets]
        )
        codes = [code for code, _ in results]
        self.assertEqual(codes.count(200), 1, results)
        for code, body in results:
            if code != 200:
                self.assertIn(code, (409, 423), body)
                self.assertIn("held by", body["reason"])
        winner = targets[codes.index(200)]
        self.assertEqual(await self.settled("TRD"), winner)
        agents = await self.until(self.all_up({"detector:TRD"}), "TRD still up")
        self.assertEqual(agents["detector:TRD"]["status"]["pid"], trd_pid)  # a move keeps the agent running

        # -- the ECA killed at random moments of a move ---------------------------------------
        rng = random.Random(SEED)
        where = winner
        for kill in range(KILLS):
            to = next(p for p in PARTITIONS if p != where)
            delay = rng.uniform(0.0, 0.03)
            moving = defer.ensureDeferred(self.api("POST", "/api/detectors/TRD/move", {"to": to}))
            moving.addErrback(lambda _: None)  # the ECA dies under it
            await self.sleep(delay)
            transport.signalProcess("KILL")
            await proc.ended
            print(f"kill {kill + 1}: seed {SEED}, move {where} -> {to}, SIGKILL after {delay * 1000:.0f} ms")
            await moving
            proc, transport = await self.start_demo()
            now = await self.settled("TRD", timeout=90.0)
            self.assertIn(now, (where, to))  # rolled back or forward, never elsewhere
            where = now
        self.assertEqual(self.db("SELECT COUNT(*) FROM management_ops WHERE ended IS NULL"), [(0,)])
        outcomes = [o for (o,) in self.db("SELECT outcome FROM management_ops WHERE action = 'move_detector'")]
        print("move outcomes:", {o: outcomes.count(o) for o in sorted(set(outcomes))})

        # -- a detector created and deleted at run time ---------------------------------------
        self.assertEqual((await self.api("POST", "/api/control"))[0], 200)
        code, body = await self.api("POST", "/api/detectors", {"id": "ECAL", "type": "STS"})
        self.assertEqual(code, 200, body)
        agents = await self.until(self.all_up({"detector:ECAL"}), "ECAL running with its type")
        self.assertEqual(agents["detector:ECAL"]["options"], {"agent_args": ["--type", "STS"]})
        ecal = agents["detector:ECAL"]["status"]["pid"]
        code, body = await self.api("DELETE", "/api/detectors/ECAL")
        self.assertEqual(code, 200, body)
        code, _ = await self.api("GET", "/api/agents/detector:ECAL")
        self.assertEqual(code, 404)
        self.assertEqual(self.db("SELECT COUNT(*) FROM placements WHERE agent = 'detector:ECAL'"), [(0,)])
        for _ in range(40):
            if not pid_alive(ecal):
                break
            await self.sleep(0.25)
        self.assertFalse(pid_alive(ecal))
