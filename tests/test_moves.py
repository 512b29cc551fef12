# -*- test-case-name: tests.test_moves -*-
"""
Management that cannot tear (issue 11): exclusive locks of detectors and
partitions, the journal of management operations, the compare-and-set
roll-back, and the recovery of interrupted operations and stale PCA locks
at ECA start.  On the clocked in-memory harness (real ECA, PCAs,
controllers and SQLite; no sockets, no real time).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.oplocks import OperationLocks
from ecs import protocol
from ecs.control import ControlError, User
from ecs.net.transport import RequestError
from ecs.store import StoreError
from tests.eca_harness import ClockedHarness

EXPERT = User("expert", ("expert",))

EXTRA = tuple(f"q{n}" for n in range(1, 9))
"""Partitions besides demo and p2: ten different destinations with p2 and unassigned."""


class LockTests(SynchronousTestCase):
    """L{OperationLocks} alone."""

    def test_all_or_nothing(self) -> None:
        """A refused take takes nothing; the reason names the holder; 409 for a detector, 423 for a partition."""
        locks = OperationLocks()
        locks.take("the move of TRD", ["TRD"], ["p2", None])
        with self.assertRaises(ControlError) as caught:
            locks.take("the move of STS", ["STS"], ["p2"])
        self.assertEqual(caught.exception.code, "locked")
        self.assertIn("the move of TRD", caught.exception.reason)
        self.assertIsNone(locks.holder("detector", "STS"))
        with self.assertRaises(ControlError) as caught:
            locks.take("another move of TRD", ["TRD"])
        self.assertEqual(caught.exception.code, "conflict")
        locks.release(["TRD"], ["p2"])
        self.assertEqual(len(locks), 0)
        locks.take("the move of STS", ["STS"], ["p2"])
        self.assertEqual(locks.holder("partition", "p2"), "the move of STS")


class MovesHarness(ClockedHarness):
    """The harness with eight more partitions (PCAs running) and the expert holding the ECS control."""

    async def seed(self) -> None:
        await super().seed()
        for partition in EXTRA:
            await self.store.add_partition(partition)

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        for partition in EXTRA:
            self.start_pca(partition)
        for partition in EXTRA:
            await self.until(self.pcas[partition].ready, what=f"PCA {partition} ready")
            await self.wait_idle(partition)
        await self.take("expert", "ecs")
        await self.login("expert")

    async def move(self, detector: str, to: str | None, force: bool = False) -> Any:
        """POST /api/detectors/{detector}/move as the expert."""
        return await self.call(
            "POST", f"/api/detectors/{detector}/move", token=await self.login("expert"), json={"to": to, "force": force}
        )

    async def moves(self, detector: str, targets: list[str | None]) -> list[ControlError | dict[str, Any]]:
        """
        Moves of C{detector} to each of C{targets}, all started in the same
        turn straight at the ECA (the web stub answers one request after the
        other); each one's answer or refusal.
        """

        async def one(to: str | None) -> ControlError | dict[str, Any]:
            try:
                result: dict[str, Any] = await self.eca.move_detector(EXPERT, detector, to)
            except ControlError as e:
                return e
            return result

        started = [defer.ensureDeferred(one(to)) for to in targets]
        return [await self.until(d, what="a move answered") for d in started]

    async def assertAgreed(self, detector: str, db: str | None) -> None:
        """The database says C{db}; exactly that PCA has the detector; no PCA is locked; no operation open."""
        self.assertEqual(await self.db_partition(detector), db)
        holders = {p for p in self.pcas if detector in self.members(p)}
        self.assertEqual(holders, {db} if db is not None else set())
        for partition in self.pcas:
            await self.wait_for(lambda p=partition: not self.locked(p), what=f"{partition} unlocked")
            await self.wait_for(
                lambda p=partition: self.eca.partition(p)["connected"] and not self.eca.partition(p)["locked"],
                what=f"{partition} seen unlocked by the ECA",
            )
        self.assertEqual(await self.store.open_operations(), [])
        self.assertEqual(len(self.parts.inventory.locks), 0)

    async def restart_eca(self) -> None:
        """Stop the ECA (as if it died: its PCAs stay as they are) and start a new one on the same database."""
        await self.until(self.core.stopService(), what="ECA stopped")
        await self.start_eca()

    async def warnings(self) -> list[str]:
        """The WARN and ERROR lines stored so far."""
        await self.parts.logbook.flush()
        return [row.message for row in await self.store.logs(level="warn")]


class ConcurrentMoveTests(MovesHarness):
    """Concurrent operations on one detector or one partition."""

    async def test_ten_concurrent_moves(self) -> None:
        """Ten moves of one detector at once: exactly one wins, the others are refused naming it; all agree."""
        targets: list[str | None] = ["p2", *EXTRA, None]
        self.assertEqual(len(targets), 10)
        results = await self.moves("TRD", targets)
        winners = [to for to, r in zip(targets, results, strict=True) if not isinstance(r, ControlError)]
        self.assertEqual(len(winners), 1, results)
        for r in results:
            if isinstance(r, ControlError):
                self.assertEqual(r.code, "conflict")
                self.assertIn("held by the move of TRD", r.reason)
        await self.assertAgreed("TRD", winners[0])
        self.assertEqual(self.detector_partition("TRD"), winners[0])
        audit = [a.outcome for a in await self.store.audit_entries() if a.action == "move_detector"]
        self.assertEqual(audit.count("ok"), 1)
        self.assertEqual(len(audit), 10)

    async def test_rounds_of_concurrent_moves(self) -> None:
        """Three rounds of ten concurrent moves: after each, one partition, database and PCAs agreeing."""
        targets: list[str | None] = [*EXTRA, "p2", "demo"]
        for round_ in range(3):
            results = await self.moves("MVD", targets[round_:] + targets[:round_])
            self.assertEqual(sum(not isinstance(r, ControlError) for r in results), 1, results)
            row = await self.store.detector("MVD")
            assert row is not None
            self.assertEqual(row.partition, targets[round_])
            await self.assertAgreed("MVD", row.partition)

    async def test_partition_held(self) -> None:
        """Two moves into one partition at once: the second is refused 423 naming the first."""
        first = defer.ensureDeferred(self.eca.move_detector(EXPERT, "TRD", "p2"))
        second = defer.ensureDeferred(self.eca.move_detector(EXPERT, "TOF2", "p2"))
        with self.assertRaises(ControlError) as caught:
            await self.until(second)
        self.assertEqual(caught.exception.code, "locked")
        self.assertIn("held by the move of TRD", caught.exception.reason)
        await self.until(first)
        await self.assertAgreed("TRD", "p2")
        self.assertIsNone(await self.db_partition("TOF2"))

    async def test_state_unknown_to_a_reloaded_sequence(self) -> None:
        """A PCA in a state the (reloaded) sequence does not know counts as busy: the move is refused."""
        real = self.parts.inventory._sequence

        class Renamed:
            """The sequence after a reload that renamed Idle."""

            def states(self) -> list[str]:
                return [s for s in real.states() if s != "Idle"]

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        self.patch(self.parts.inventory, "_sequence", Renamed())
        before = await self.db_partition("TRD")
        with self.assertRaises(ControlError) as caught:
            await self.until(defer.ensureDeferred(self.eca.move_detector(EXPERT, "TRD", "p2")))
        self.assertEqual(caught.exception.code, "conflict")
        self.assertIn("cannot move detectors now", caught.exception.reason)
        await self.assertAgreed("TRD", before)

    async def test_rollback_spares_another_owner(self) -> None:
        """A failed move whose detector was taken meanwhile does not move it back (compare-and-set)."""

        def refuse() -> None:
            self.store.move_detector("TRD", "q1")  # another owner took it (the inline runner: done at once)
            raise RequestError(protocol.BUSY, "p2 does not want detectors now")

        self.patch(self.pcas["p2"].sequencer, "check_membership_change", refuse)
        r = await self.move("TRD", "p2")
        self.assertIn("undone", self.assertError(r, 503, "unavailable")["reason"])
        self.assertEqual(await self.db_partition("TRD"), "q1")
        self.assertTrue(any("not undone" in line for line in await self.warnings()))
        self.assertEqual(await self.store.open_operations(), [])

    async def test_forced_move_warns(self) -> None:
        """A move forced past an unreachable PCA is a WARN line naming the detector and both partitions."""
        self.network.set_down(self.pcas["demo"].address)
        self.assertEqual((await self.move("TRD", "p2", force=True)).code, 200)
        lines = await self.warnings()
        self.assertIn("TRD moved from demo to p2, forced past the PCA of demo (told when it answers again)", lines)
        self.network.set_down(self.pcas["demo"].address, False)
        await self.wait_for(lambda: "TRD" not in self.members("demo"), what="demo told")
        await self.assertAgreed("TRD", "p2")

    async def test_store_compare_and_set(self) -> None:
        """The store's journal: one open operation per detector; commit and undo only from where it was."""
        op = await self.store.begin_operation("move_detector", "expert", "TRD", "demo", "p2")
        with self.assertRaises(StoreError) as caught:
            await self.store.begin_operation("move_detector", "expert", "TRD", "demo", "q1")
        self.assertIn(f"operation {op.id}", caught.exception.reason)
        with self.assertRaises(StoreError):
            await self.store.begin_operation("move_detector", "expert", "STS", "p2", "q1")  # STS is in demo
        await self.store.commit_operation(op.id)
        self.assertEqual(await self.db_partition("TRD"), "p2")
        await self.store.move_detector("TRD", "q2")
        self.assertFalse(await self.store.undo_move(op.id))
        self.assertEqual(await self.db_partition("TRD"), "q2")
        await self.store.end_operation(op.id, "conflict: taken", ("expert", {"detector": "TRD"}))
        self.assertEqual(await self.store.open_operations(), [])
        audit = [(a.action, a.outcome) for a in await self.store.audit_entries()]
        self.assertIn(("move_detector", "conflict: taken"), audit)


class RecoveryTests(MovesHarness):
    """What an ECA that died in the middle of an operation leaves, put right by the next one."""

    async def test_interrupted_before_commit_rolled_back(self) -> None:
        """A move journalled, both PCAs locked, then the ECA dies: the next ECA unlocks them, nothing moves."""
        await self.restart_eca_with(lambda: self.store.begin_operation("move_detector", "expert", "TRD", "demo", "p2"))
        await self.assertAgreed("TRD", "demo")
        self.assertEqual(self.detector_partition("TRD"), "demo")
        audit = [a.outcome for a in await self.store.audit_entries() if a.action == "move_detector"]
        self.assertEqual(audit, ["rolled back after an ECA restart"])
        self.assertTrue(any("move of TRD from demo to p2" in line for line in await self.warnings()))

    async def test_interrupted_after_commit_rolled_forward(self) -> None:
        """A move committed, the PCAs not yet told, then the ECA dies: the next ECA completes it."""

        async def committed() -> Any:
            op = await self.store.begin_operation("move_detector", "expert", "TRD", "demo", "p2")
            await self.store.commit_operation(op.id)
            return op

        await self.restart_eca_with(committed)
        await self.wait_for(lambda: "TRD" in self.members("p2"), what="p2 given TRD")
        await self.assertAgreed("TRD", "p2")
        await self.wait_for(lambda: self.detector_partition("TRD") == "p2", what="TRD told")
        audit = [a.outcome for a in await self.store.audit_entries() if a.action == "move_detector"]
        self.assertEqual(audit, ["completed after an ECA restart"])

    async def test_interrupted_operation_holds_its_locks(self) -> None:
        """Until an interrupted move is resumed, a new move of its detector is refused naming it."""
        await self.restart_eca_with(
            lambda: self.store.begin_operation("move_detector", "expert", "TRD", "demo", "p2"),
            down=self.pcas["p2"].address,
        )
        r = await self.move("TRD", "q1")
        self.assertIn("interrupted by an ECA restart", self.assertError(r, 409, "conflict")["reason"])
        self.network.set_down(self.pcas["p2"].address, False)
        await self.assertAgreed("TRD", "demo")
        self.assertEqual((await self.move("TRD", "q1")).code, 200)
        await self.assertAgreed("TRD", "q1")

    async def test_interrupted_deletion_completed(self) -> None:
        """A detector's deletion committed when the ECA died is closed by the next one, audited."""

        async def committed() -> Any:
            op = await self.store.begin_operation("delete_detector", "expert", "TOF2")
            await self.store.commit_operation(op.id)

        await self.restart_eca_with(committed)
        await self.assertAgreed("TRD", "demo")
        self.assertIsNone(await self.store.detector("TOF2"))
        audit = [a.outcome for a in await self.store.audit_entries() if a.action == "delete_detector"]
        self.assertEqual(audit, ["completed after an ECA restart"])

    async def test_stale_lock_released(self) -> None:
        """A PCA locked with no operation open is unlocked by the next ECA, with a WARN line naming it."""
        await self.restart_eca_with(None)
        await self.assertAgreed("TRD", "demo")
        lines = await self.warnings()
        self.assertTrue(any("partition demo was left locked" in line for line in lines), lines)
        self.assertTrue(any("partition p2 was left locked" in line for line in lines), lines)

    async def test_lock_after_start_not_released(self) -> None:
        """A lock taken after the ECA's first look at a partition is not the ECA's to release."""
        await self.restart_eca_with(None)
        await self.assertAgreed("TRD", "demo")
        self.assertTrue((await self.to_pca("q1", "lock"))["locked"])
        await self.wait_for(lambda: self.eca.partition("q1")["locked"], what="q1 locked in the ECA")
        await self.settle(1.0)
        self.assertTrue(self.locked("q1"))
        await self.to_pca("q1", "unlock")

    async def restart_eca_with(self, journal: Any, down: str | None = None) -> None:
        """
        The ECA stops; demo and p2 are locked as a move would; C{journal()}
        is written; the address C{down} is cut; a new ECA starts.
        """
        await self.until(self.core.stopService(), what="ECA stopped")
        if journal is not None:
            await journal()
        for partition in ("demo", "p2"):
            await self.to_pca(partition, "lock")
            self.assertTrue(self.locked(partition))
        if down is not None:
            self.network.set_down(down)
        await self.start_eca()
        await self.wait_for(lambda: self.eca.partition("demo")["connected"], what="demo seen")


class InventoryChangeTests(MovesHarness):
    """Deleting a detector or a partition is journalled and audited in one transaction with its change."""

    async def test_delete_detector_removes_placement(self) -> None:
        """A deleted detector's placement goes with it; the journal is closed; the audit row says ok."""
        await self.store.set_placement("detector:TOF2", "localhost", "local", {"agent_args": ["--type", "TOF"]})
        await self.ok("DELETE", "/api/detectors/TOF2", "expert")
        self.assertIsNone(await self.store.detector("TOF2"))
        self.assertIsNone(await self.store.placement("detector:TOF2"))
        self.assertEqual(await self.store.open_operations(), [])
        audit = [(a.action, a.outcome) for a in await self.store.audit_entries() if a.action == "delete_detector"]
        self.assertEqual(audit, [("delete_detector", "ok")])

    async def test_delete_detector_while_moved(self) -> None:
        """A detector being moved cannot be deleted at the same time: 409 naming the move."""
        moving = defer.ensureDeferred(self.eca.move_detector(EXPERT, "TOF2", "p2"))
        with self.assertRaises(ControlError) as caught:
            await self.until(defer.ensureDeferred(self.eca.delete_detector(EXPERT, "TOF2")))
        self.assertEqual(caught.exception.code, "conflict")
        self.assertIn("held by the move of TOF2", caught.exception.reason)
        await self.until(moving)
        await self.assertAgreed("TOF2", "p2")

    async def test_delete_partition_journalled(self) -> None:
        """A partition's deletion unassigns its detectors in the journal's transaction; audited once, ok."""
        await self.ok("DELETE", "/api/partitions/q1", "expert")
        self.assertEqual(await self.store.open_operations(), [])
        audit = [(a.action, a.outcome) for a in await self.store.audit_entries() if a.action == "delete_partition"]
        self.assertEqual(audit, [("delete_partition", "ok")])
        self.assertNotIn("q1", {row.id for row in await self.store.partitions()})
