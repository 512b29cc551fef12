# -*- test-case-name: tests.test_runs_survive -*-
"""
Runs that survive restarts (L{agents.eca.runs}), on the ECA harness (real
PCAs and controllers on the in-memory network, the real store on the
inline runner, a C{Clock}): a PCA restarted while Recording continues the
same run with a note; an ECA killed at several moments of an abort leaves
no run open or merged and the abort's audit row present; a database that
cannot be written holds up neither stop nor abort, refuses configure with
507 and raises C{storage_failed} until the writes are done.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.audit import RETRY_DELAY, WriteBehind
from agents.eca.runs import MAX_HOLD, RunBook
from ecs.store import RunRow, StoreError
from ecs.store.core import InlineRunner
from tests.eca_harness import PASSWORD, ClockedHarness
from tests.test_alarms import AlarmsTestCase


class FailingWrites:
    """A store runner whose write transactions fail as a full disk does, while C{failing}."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self.failing = False
        self.refused = 0

    def runInteraction(self, interaction: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        write = bool(args and args[0] is True)
        if self.failing and write:
            self.refused += 1
            return defer.fail(sqlite3.OperationalError("database or disk is full"))
        return self._runner.runInteraction(interaction, *args)

    def close(self) -> None:
        self._runner.close()


class RunsHarness(ClockedHarness):
    """Helpers: recording in demo, restarts, the run rows."""

    async def record(self) -> RunRow:
        """Configure and start demo; its open run."""
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        return await self.wait_for(lambda: self.store.open_run("demo"), what="run record")

    async def runs(self) -> list[RunRow]:
        """demo's runs, oldest first."""
        return list(reversed(await self.store.runs("demo")))

    async def restart_pca(self) -> None:
        """Stop demo's PCA and start a new one (a new address: a restart as the registry sees it)."""
        await self.until(self.pcas["demo"].stopService(), what="PCA stopped")
        pca = self.start_pca("demo")
        await self.until(pca.ready, what="new PCA ready")

    async def restart_eca(self) -> None:
        """Stop the ECA (its memory is lost) and start a new one on the same store."""
        await self.until(self.core.stopService(), what="ECA stopped")
        self.tokens.clear()
        await self.start_eca()
        await self.wait_for(lambda: self.eca.partition("demo")["connected"], what="PCA followed again")

    async def audit_rows(self, action: str) -> list[Any]:
        """The audit rows of C{action}, oldest first."""
        return list(reversed(await self.store.audit_entries(action=action)))


class PcaRestartTests(RunsHarness):
    """A PCA restart while Recording continues the same run."""

    async def test_pca_restart_same_run(self) -> None:
        """Same run number, an 'interrupted: PCA restarted at' note, not failed; stop then closes it stopped."""
        run = await self.record()
        await self.restart_pca()
        await self.wait_state("demo", "Recording")
        await self.settle(1.0)
        [again] = await self.runs()
        self.assertEqual((again.number, again.outcome, again.ended), (run.number, None, None))
        self.assertIn("interrupted: PCA restarted at", again.note or "")
        await self.parts.logbook.flush()
        lines = [(r.level, r.message) for r in await self.store.logs(partition="demo", q="run 1 of partition demo")]
        self.assertIn("warn", {level for level, message in lines if "continues: recording resumed" in message})
        self.assertTrue(again.note.endswith("recording continued"), again.note)  # type: ignore[union-attr]
        await self.ok("POST", "/api/partitions/demo/stop", "operator")
        await self.wait_state("demo", "QA_Active")
        [closed] = await self.wait_for(
            lambda: self._closed_runs(), what="run closed"
        )
        self.assertEqual((closed.number, closed.outcome), (run.number, "stopped"))
        alarms = await self.ok("GET", "/api/alarms", "viewer")
        self.assertNotIn("run_interrupted", [a["kind"] for a in alarms])
        self.assertNotIn("run_failed", [a["kind"] for a in alarms])

    async def _closed_runs(self) -> list[RunRow] | None:
        runs = await self.runs()
        return runs if runs and all(r.ended is not None for r in runs) else None

    async def test_recording_stopped_while_pca_away(self) -> None:
        """A restarted PCA that finds recording stopped: the run fails (interrupted), ended when it left recording."""
        run = await self.record()
        await self.until(self.pcas["demo"].stopService(), what="PCA stopped")
        # Meanwhile a recording system stops on its own (as after a crash of its own).
        await self.until(self.tester.connect(self.globals_host.address).request("FLES", "stop", {"partition": "demo"}))
        pca = self.start_pca("demo")
        await self.until(pca.ready, what="new PCA ready")
        [closed] = await self.wait_for(self._closed_runs, timeout=60.0, what="run judged")
        self.assertEqual((closed.number, closed.outcome), (run.number, "failed"))
        self.assertIn("recording did not resume", closed.note or "")
        alarms = await self.ok("GET", "/api/alarms", "viewer")
        self.assertIn("run_interrupted", [a["kind"] for a in alarms])
        # A new start opens a new run: nothing merged.
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        runs = await self.wait_for(lambda: self._two_runs(), what="second run")
        self.assertGreater(runs[1].number, runs[0].number)
        self.assertLessEqual(runs[0].ended, runs[1].started)

    async def _two_runs(self) -> list[RunRow] | None:
        runs = await self.runs()
        return runs if len(runs) == 2 else None


class EcaKilledDuringAbortTests(RunsHarness):
    """An ECA killed at several moments of an abort leaves no run open or merged, and the audit row."""

    async def test_killed_after_write_ahead_before_request(self) -> None:
        """The abort written ahead but never sent: the run goes on, the audit row says it was not done."""
        run = await self.record()
        await self.store.command_ahead("operator", "abort", {"partition": "demo"}, "demo")
        await self.restart_eca()
        await self.wait_state("demo", "Recording")
        await self.settle(1.0)
        [kept] = await self.runs()
        self.assertEqual((kept.number, kept.ended, kept.pending), (run.number, None, None))
        [row] = await self.audit_rows("abort")
        self.assertTrue(row.outcome.startswith("not done"), row.outcome)

    async def test_killed_after_request_before_answer(self) -> None:
        """The abort reached the PCA, the ECA died before seeing it: closed aborted at the time it was written."""
        run = await self.record()
        self.clock.advance(5.0)
        audit_id, number = await self.store.command_ahead("operator", "abort", {"partition": "demo"}, "demo")
        written = self.clock.seconds()
        self.assertEqual(number, run.number)
        await self.until(self.core.stopService(), what="ECA stopped")
        await self.to_pca("demo", "abort")
        self.clock.advance(3.0)
        self.tokens.clear()
        await self.start_eca()
        await self.wait_state("demo", "Idle")
        [closed] = await self.wait_for(self._closed, what="run closed")
        self.assertEqual((closed.number, closed.outcome, closed.ended), (run.number, "aborted", written))
        [row] = await self.audit_rows("abort")
        self.assertEqual(row.id, audit_id)
        self.assertTrue(row.outcome.startswith("ok"), row.outcome)
        await self.assert_next_run_separate(closed)

    async def test_killed_after_answer_before_run_closed(self) -> None:
        """Abort answered (audit row ok), the ECA died before closing the run: closed aborted by the next ECA."""
        run = await self.record()
        # The abort goes out through the ECA; the run book's close is lost with the ECA.
        self.parts.partitions.runs.stop()
        self.patch(self.parts.partitions.runs, "ended", _never)
        await self.ok("POST", "/api/partitions/demo/abort", "operator")
        await self.wait_state("demo", "Idle")
        [row] = await self.audit_rows("abort")
        self.assertEqual(row.outcome, "ok")
        self.assertEqual((await self.store.open_run("demo")).pending, "abort")  # type: ignore[union-attr]
        await self.restart_eca()
        [closed] = await self.wait_for(self._closed, what="run closed")
        self.assertEqual((closed.number, closed.outcome), (run.number, "aborted"))
        await self.assert_next_run_separate(closed)

    async def test_no_pending_command_not_recording(self) -> None:
        """An open run with nothing pending, the partition not recording at ECA start: failed after the grace."""
        run = await self.record()
        await self.until(self.core.stopService(), what="ECA stopped")
        await self.until(self.tester.connect(self.globals_host.address).request("FLES", "stop", {"partition": "demo"}))
        self.tokens.clear()
        await self.start_eca()
        [closed] = await self.wait_for(self._closed, timeout=60.0, what="run judged")
        self.assertEqual((closed.number, closed.outcome), (run.number, "failed"))
        self.assertIn("not recording when the ECA started", closed.note or "")

    async def _closed(self) -> list[RunRow] | None:
        runs = await self.runs()
        return runs if runs and runs[-1].ended is not None else None

    async def assert_next_run_separate(self, closed: RunRow) -> None:
        """The next recording is a new run, started after the closed one ended."""
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        runs = await self.wait_for(lambda: self._with_open(), what="new run")
        self.assertEqual([r.number for r in runs], [closed.number, closed.number + 1])
        self.assertEqual(runs[0].ended, closed.ended)
        self.assertGreaterEqual(runs[1].started, closed.ended)

    async def _with_open(self) -> list[RunRow] | None:
        runs = await self.runs()
        return runs if len(runs) == 2 and runs[1].ended is None else None


async def _never(*args: Any, **kwargs: Any) -> None:
    """A run book input lost with a killed ECA."""


class StorageTests(RunsHarness):
    """A database that cannot be written: stop and abort still go out; configure is refused with 507."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.disk = FailingWrites(self.store._pool)
        self.store._pool = self.disk

    async def test_stop_while_full(self) -> None:
        """Stop reaches the PCA; the alarm is raised; once writable the run closes stopped and the alarm clears."""
        run = await self.record()
        await self.login("viewer")  # a login writes its session: before the disk fills
        self.disk.failing = True
        reply = await self.ok("POST", "/api/partitions/demo/stop", "operator")
        self.assertIsInstance(reply, dict)
        await self.wait_state("demo", "QA_Active")
        self.assertGreater(self.disk.refused, 0)
        alarms = await self.ok("GET", "/api/alarms", "viewer")
        self.assertIn("storage_failed", [a["kind"] for a in alarms])
        self.assertIsNone((await self.store.open_run("demo")).ended)  # type: ignore[union-attr]
        r = await self.call(
            "POST", "/api/partitions/demo/configure", token=await self.login("operator"), json={"tag": "demo"}
        )
        body = self.assertError(r, 507, "storage")
        self.assertIn("cannot be written", body["reason"])
        r = await self.call("POST", "/api/partitions/demo/start", token=await self.login("operator"))
        self.assertError(r, 507, "storage")
        self.disk.failing = False
        await self.settle(RETRY_DELAY + 0.5)
        [closed] = await self.runs()
        self.assertEqual((closed.number, closed.outcome), (run.number, "stopped"))
        self.assertIn("stop", [a.action for a in await self.store.audit_entries()])
        shown = {a["kind"]: a for a in await self.ok("GET", "/api/alarms", "viewer")}
        self.assertIsNotNone(shown["storage_failed"]["cleared_at"])  # over, until acknowledged
        self.assertGreater(shown["storage_failed"]["id"], 0)  # stored now

    async def test_abort_while_full(self) -> None:
        """Abort reaches the PCA with the database failing; the run is closed aborted once writes work."""
        run = await self.record()
        self.disk.failing = True
        await self.ok("POST", "/api/partitions/demo/abort", "operator")
        await self.wait_state("demo", "Idle")
        self.disk.failing = False
        await self.settle(RETRY_DELAY + 0.5)
        [closed] = await self.runs()
        self.assertEqual((closed.number, closed.outcome), (run.number, "aborted"))
        [row] = await self.audit_rows("abort")
        self.assertEqual(row.outcome, "ok")


    async def test_login_and_control_while_full(self) -> None:
        """A login that cannot be stored is 507 naming the cause; a holder's commands do not wait for bookkeeping."""
        await self.record()
        await self.login("operator")
        self.disk.failing = True
        r = await self.call("POST", "/api/login", json={"username": "viewer", "password": PASSWORD, "kind": "api"})
        body = self.assertError(r, 507, "storage")
        self.assertIn("cannot be written", body["reason"])
        # The holder's activity is not recorded, and stop goes out regardless.
        await self.ok("POST", "/api/partitions/demo/stop", "operator")
        await self.wait_state("demo", "QA_Active")


class SqliteFullTests(RunsHarness):
    """A real SQLITE_FULL (PRAGMA max_page_count) is the store's 'storage' error."""

    async def test_full_is_storage(self) -> None:
        """Filling the database to its page limit gives StoreError('storage') naming the cause."""
        runner = self.store._pool
        assert isinstance(runner, InlineRunner)
        conn = runner._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        error = None
        for i in range(10_000):
            try:
                await self.store.audit("filler", "fill", {"i": i, "pad": "x" * 500}, "ok")
            except StoreError as e:
                error = e
                break
        conn.execute("PRAGMA max_page_count = 1073741823")
        assert error is not None
        self.assertEqual(error.code, "storage")
        self.assertIn("full", error.reason)


class LogLevelTests(RunsHarness):
    """What operators read: a subsystem Error, an interrupted or failed run, at warn or error naming P and S."""

    async def lines(self, level: str, text: str) -> list[str]:
        """The stored log lines of demo at C{level} or above that contain C{text}."""
        await self.parts.logbook.flush()
        return [r.message for r in await self.store.logs(partition="demo", level=level, q=text)]

    async def test_subsystem_error_is_an_error_line(self) -> None:
        """A system in Error: the PCA's error line names the system and the partition."""
        await self.until(self.tester.connect(self.hosts["STS"].address).request("STS", "inject", {"what": "error"}))
        found = await self.wait_for(lambda: self.lines("error", "STS of partition demo in Error"), what="error line")
        self.assertTrue(found)

    async def test_failed_run_is_an_error_line(self) -> None:
        """A run that ends without stop or abort (a recording system in Error) is an error line; no hold."""
        run = await self.record()
        await self.until(self.tester.connect(self.hosts["STS"].address).request("STS", "inject", {"what": "error"}))
        [closed] = await self.wait_for(self._closed, what="run failed")
        self.assertEqual((closed.number, closed.outcome, closed.note), (run.number, "failed", None))
        found = await self.wait_for(
            lambda: self.lines("error", f"run {run.number} of partition demo ended: failed"), what="error line"
        )
        self.assertTrue(found)

    async def _closed(self) -> list[RunRow] | None:
        runs = await self.runs()
        return runs if runs and runs[-1].ended is not None else None

    def test_warnings_in_the_eca_log(self) -> None:
        """An operator warn or error line is also in the ECA's own log at its level, naming the partition."""
        with capturedLogs() as events:
            self.parts.logbook.log("error", "ECA", "run 7 of partition demo ended: failed", "demo")
            self.parts.logbook.log("info", "ECA", "run 8 of partition demo started", "demo")
        told = [(e["log_level"], formatEvent(e)) for e in events if "run " in formatEvent(e)]
        self.assertEqual(told, [(LogLevel.error, "ECA (partition demo): run 7 of partition demo ended: failed")])


class RecordingAlarms:
    """An event-recording dummy of L{agents.eca.alarms.IAlarms}."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def condition(self, kind: str, source: str, partition: str | None, active: bool, text: str = "",
                  action: str = "") -> None:
        self.seen.append((kind, active))

    def event(self, kind: str, source: str, partition: str | None, text: str, action: str) -> None:
        self.seen.append((kind, True))

    def partition_gone(self, partition: str) -> None:
        """Not used here."""


class WriteBehindTests(SynchronousTestCase):
    """The line of bookkeeping writes: in order, retried, never holding up who must not wait."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.alarms = RecordingAlarms()
        self.line = WriteBehind(self.clock, self.alarms)  # type: ignore[arg-type]
        self.full = True
        self.done: list[str] = []

    def work(self, name: str) -> Callable[[], defer.Deferred[str]]:
        def write() -> defer.Deferred[str]:
            if self.full:
                return defer.fail(StoreError("storage", "database or disk is full"))
            self.done.append(name)
            return defer.succeed(name)

        return write

    def test_retried_in_order_with_alarm(self) -> None:
        """A refused write waits (alarm raised), later ones wait behind it; all done in order once writable."""
        first = self.successResultOf(self.line.first_try("a", self.work("a")))
        self.assertFalse(first)
        b = self.line.write("b", self.work("b"))
        self.assertEqual((self.line.waiting, self.alarms.seen), (2, [("storage_failed", True)]))
        self.failureResultOf(defer.ensureDeferred(self.line.now("c", self.work("c"))), StoreError)
        self.clock.advance(RETRY_DELAY)
        self.assertEqual(self.line.waiting, 2)  # still full
        self.full = False
        self.clock.advance(RETRY_DELAY)
        self.assertEqual((self.done, self.successResultOf(b), self.line.waiting), (["a", "b"], "b", 0))
        self.assertEqual(self.alarms.seen, [("storage_failed", True), ("storage_failed", False)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refused_for_good_is_dropped(self) -> None:
        """A write refused as a bad request is logged and dropped; the next one goes on."""
        self.full = False
        bad = self.line.write("bad", lambda: defer.fail(StoreError("bad_request", "nonsense")))
        self.failureResultOf(bad, StoreError)
        self.assertTrue(self.successResultOf(self.line.first_try("ok", self.work("ok"))))
        self.assertEqual((self.done, self.alarms.seen), (["ok"], []))


class HoldTests(AlarmsTestCase):
    """A held run on the clock alone: systems coming back extend the wait, up to a limit."""

    def held(self) -> RunBook:
        """A run of demo, held after it left recording with the PCA restarted."""
        runs = RunBook(self.store, self.logbook, self.metrics, self.alarms, self.clock)
        self.successResultOf(self.store.add_partition("demo"))
        runs.connection("demo", True)
        self.successResultOf(Deferred.fromCoroutine(runs.started("demo", "t", {}, "olga")))
        runs.interrupted("demo", "PCA restarted at then")
        self.successResultOf(Deferred.fromCoroutine(runs.ended("demo", "start")))
        return runs

    def test_progress_extends_up_to_the_limit(self) -> None:
        """Each system seen again restarts the grace; past MAX_HOLD it no longer does; then failed, at the leave."""
        runs = self.held()
        left = self.clock.seconds()
        for _ in range(int(MAX_HOLD // (runs.grace / 2)) + 2):
            self.clock.advance(runs.grace / 2)
            runs.progress("demo")
        self.assertIsNone(self.successResultOf(self.store.open_run("demo")), "judged at the limit")
        [run] = self.successResultOf(self.store.runs("demo"))
        self.assertEqual((run.outcome, run.ended), ("failed", left))
        self.assertIn("PCA restarted at then", run.note or "")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_configure_ends_the_hold(self) -> None:
        """A configure while a run is held: the operators moved on, the run failed at its leave, at once."""
        runs = self.held()
        left = self.clock.seconds()
        self.clock.advance(1.0)
        self.successResultOf(Deferred.fromCoroutine(runs.command_ahead("olga", "configure", {}, "demo", False)))
        self.assertIsNone(self.successResultOf(self.store.open_run("demo")))
        [run] = self.successResultOf(self.store.runs("demo"))
        self.assertEqual((run.outcome, run.ended), ("failed", left))
        self.assertIn("recording did not resume before a configure", run.note or "")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_disconnected_waits(self) -> None:
        """While the PCA does not answer nothing is judged; the grace counts from its return."""
        runs = self.held()
        runs.connection("demo", False)
        self.clock.advance(10 * runs.grace)
        self.assertIsNotNone(self.successResultOf(self.store.open_run("demo")))
        runs.connection("demo", True)
        self.clock.advance(runs.grace - 1)
        self.assertIsNotNone(self.successResultOf(self.store.open_run("demo")))
        self.successResultOf(Deferred.fromCoroutine(runs.started("demo", "t", {}, "olga")))  # recording resumed
        self.clock.advance(runs.grace)
        run = self.successResultOf(self.store.open_run("demo"))
        self.assertEqual(run.number, 1)
        self.assertTrue(run.note.endswith("recording continued"), run.note)
