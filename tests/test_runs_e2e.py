# -*- test-case-name: tests.test_runs_e2e -*-
"""
Runs that survive, end to end with real processes (C{twistd -n ecs-demo}
on loopback, its agents started by the local launcher, driven through the
HTTP API): a PCA killed with SIGKILL while Recording comes back and the
same run goes on, with a note; an ECA killed with SIGKILL at several
moments of an abort leaves, once started again, no run open, none merged,
and the abort's audit row; with the database's disk full (a small
tmpfs, where mounting is allowed) stop and abort still reach the PCA.

Processes are killed by pid (and the agents by the marker of this test's
own state directory) in cleanup, never by name.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any
from unittest import SkipTest

from twisted.internet import defer, reactor, task
from twisted.python import log

from agents.eca.runs import RUN_GRACE
from tests.procs import call_api
from tests.test_supervision_e2e import DEMO_AGENTS, EcaProcessCase


async def pause(seconds: float) -> None:
    """Let real time pass (polling intervals only; every wait has a deadline)."""
    await task.deferLater(reactor, seconds, lambda: None)


class RunsE2ECase(EcaProcessCase):
    """The demo's partition, runs and audit rows through the API (no tests here)."""

    timeout = 600

    async def partition(self) -> dict[str, Any]:
        code, body = await self.api("GET", "/api/partitions/demo")
        self.assertEqual(code, 200, body)
        return dict(body)

    async def until_state(self, state: str, timeout: float = 90.0) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for _ in range(int(timeout / 0.2)):
            body = await self.partition()
            if body["state"] == state and body["operation"] is None and body["connected"]:
                return body
            await pause(0.2)
        raise AssertionError(f"demo never reached {state}: {body}")

    async def runs(self) -> list[dict[str, Any]]:
        """demo's runs, oldest first."""
        code, body = await self.api("GET", "/api/runs?partition=demo")
        self.assertEqual(code, 200, body)
        return list(reversed(body))

    async def until_runs(self, check: Any, what: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        for _ in range(int(timeout / 0.2)):
            runs = await self.runs()
            if check(runs):
                return runs
            await pause(0.2)
        raise AssertionError(f"runs never {what}: {runs}")

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        code, reply = await self.api(method, path, body)
        self.assertEqual(code, 200, reply)
        return reply

    async def start_demo(self) -> tuple[Any, Any]:
        proc, transport = self.start_eca("ecs-demo")
        await self.login(proc)
        await self.until(self.all_up(DEMO_AGENTS), "all demo agents up", timeout=90)
        await self.ok("POST", "/api/partitions/demo/control")
        return proc, transport

    async def until_connected(self, timeout: float = 90.0) -> None:
        """Until every system of demo answers (a configure needs them all)."""
        body: dict[str, Any] = {}
        for _ in range(int(timeout / 0.2)):
            body = await self.partition()
            if body["connected"] and body["systems"] and all(s["connected"] for s in body["systems"]):
                return
            await pause(0.2)
        raise AssertionError(f"demo's systems never all connected: {body}")

    async def record(self) -> dict[str, Any]:
        """Configure and start demo (from Idle or QA_Active, every system answering); its open run."""
        await self.until_connected()
        if (await self.partition())["state"] != "QA_Active":
            await self.ok("POST", "/api/partitions/demo/configure", {"tag": "demo", "auto": True})
            await self.until_state("QA_Active")
        await self.ok("POST", "/api/partitions/demo/start")
        await self.until_state("Recording")
        runs = await self.until_runs(lambda rs: rs and rs[-1]["ended"] is None, "open")
        return runs[-1]

    def audit(self, action: str) -> list[tuple[float, str]]:
        """(time, outcome) of the audit rows of C{action}, read from the database (no API lists them yet)."""
        with closing(sqlite3.connect(f"file:{self.state_dir / 'ecs.sqlite'}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT time, outcome FROM audit WHERE action = ? ORDER BY id", (action,)).fetchall()
        return [(float(t), str(o)) for t, o in rows]

    def assert_runs_sound(self, runs: list[dict[str, Any]]) -> None:
        """Numbers increase, none open, none overlapping (nothing merged), outcomes known."""
        for before, after in itertools.pairwise(runs):
            self.assertLess(before["number"], after["number"])
            self.assertLessEqual(before["ended"], after["started"], runs)
        for run in runs:
            self.assertIsNotNone(run["ended"], runs)
            self.assertIn(run["outcome"], ("stopped", "aborted", "failed"), runs)

class RunsE2ETests(RunsE2ECase):
    """Runs across a killed PCA and a killed ECA."""

    async def test_pca_killed_while_recording(self) -> None:
        """SIGKILL of the PCA while Recording: restarted, Recording again, the same run, a note, not failed."""
        await self.start_demo()
        await self.until_state("Idle")
        run = await self.record()
        agents = await self.until(self.all_up({"pca:demo"}), "PCA up")
        old = agents["pca:demo"]["status"]["pid"]
        killed = reactor.seconds()
        os.kill(old, signal.SIGKILL)
        await self.until(
            lambda a: self.all_up({"pca:demo"})(a) and a["pca:demo"]["status"]["pid"] != old, "PCA restarted"
        )
        await self.until_state("Recording")
        log.msg(f"PCA SIGKILLed while Recording: Recording again (same run) after {reactor.seconds() - killed:.1f} s")
        await pause(RUN_GRACE + 3.0)  # past the grace a held run would have been judged in
        [again] = await self.runs()
        self.assertEqual((again["number"], again["ended"], again["outcome"]), (run["number"], None, None))
        self.assertIn("interrupted:", again["note"] or "")
        self.assertIn("PCA restarted at", again["note"] or "")
        await self.ok("POST", "/api/partitions/demo/stop")
        await self.until_state("QA_Active")
        [closed] = await self.until_runs(lambda rs: rs and rs[-1]["ended"] is not None, "closed")
        self.assertEqual((closed["number"], closed["outcome"]), (run["number"], "stopped"))
        code, alarms = await self.api("GET", "/api/alarms")
        self.assertEqual(code, 200, alarms)
        self.assertFalse({"run_failed", "run_interrupted"} & {a["kind"] for a in alarms}, alarms)

    async def test_eca_killed_during_abort(self) -> None:
        """
        The ECA SIGKILLed 0, 20, 50 and 200 ms after an abort was posted: after
        its restart no run is open or merged, and an abort that was carried
        out has its audit row with an outcome.
        """
        proc, transport = await self.start_demo()
        await self.until_state("Idle")
        #: (delay, the state the restarted ECA found): which moments were hit.
        self.cases: list[tuple[float, str]] = []
        for delay in (0.0, 0.02, 0.05, 0.2):
            run = await self.record()
            posted = defer.Deferred.fromCoroutine(call_api(self.base, "POST", "/api/partitions/demo/abort", self.token))
            await pause(delay)
            transport.signalProcess("KILL")
            await proc.ended
            await defer.Deferred.fromCoroutine(_settled(posted))
            proc, transport = await self.start_demo()
            for _ in range(300):
                shown = await self.partition()
                if shown["connected"] and shown["state"] in ("Idle", "Recording") and shown["operation"] is None:
                    break
                await pause(0.2)
            self.cases.append((delay, shown["state"]))
            if shown["state"] == "Recording":  # the abort never reached the PCA: the run goes on
                runs = await self.runs()
                self.assertEqual((runs[-1]["number"], runs[-1]["ended"]), (run["number"], None))
                await self.ok("POST", "/api/partitions/demo/abort")
                await self.until_state("Idle")
            runs = await self.until_runs(
                lambda rs: rs and rs[-1]["ended"] is not None, f"closed after a kill {delay} s into the abort",
                timeout=RUN_GRACE + 60.0,
            )
            self.assertEqual((runs[-1]["number"], runs[-1]["outcome"]), (run["number"], "aborted"), runs)
            audit = self.audit("abort")
            self.assertTrue(audit, "no audit row for the abort")
            self.assertNotIn("pending", [outcome for _, outcome in audit], audit)
        self.assert_runs_sound(await self.runs())
        self.assertEqual(len(await self.runs()), 4)
        log.msg(f"ECA killed during abort: (delay, state found) {self.cases}")


async def _settled(d: defer.Deferred[Any]) -> None:
    """Wait for a request whose server was killed (it fails or answers; either is fine)."""
    try:
        await d
    except Exception:  # the ECA was killed under it on purpose: no answer is fine
        return


class DiskFullE2ETests(RunsE2ECase):
    """The ECA's database on a small tmpfs that is filled while Recording (needs root for the mount)."""

    def mount_small_disk(self) -> Path:
        """
        A 64 MiB tmpfs (room for the WAL) holding the database, through a
        symlink; skipped where mounting is not allowed.
        """
        disk = self.tmp / "disk"
        disk.mkdir()
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)],
                           check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            raise SkipTest(f"cannot mount a tmpfs here: {e}") from None
        self.addCleanup(subprocess.run, ["umount", "-l", str(disk)], capture_output=True, timeout=30)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        target = disk / "ecs.sqlite"
        target.touch(mode=0o600)
        (self.state_dir / "ecs.sqlite").symlink_to(target)
        return disk

    @staticmethod
    def fill(disk: Path) -> Path:
        """Fill C{disk} up (a blocking write of a few MiB: test set-up, not the agents' reactor)."""
        filler = disk / "filler"
        # Unbuffered: a full disk refuses the write that fills it, and closing
        # has nothing left to flush (a buffered file raised ENOSPC at close).
        with filler.open("wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        return filler

    async def test_disk_full_while_recording(self) -> None:
        """
        Stop and abort reach the PCA; configure is 507 naming the cause;
        storage_failed is raised, then cleared once there is room, and the
        run and audit rows that waited are written.
        """
        disk = self.mount_small_disk()
        await self.start_demo()
        await self.until_state("Idle")
        run = await self.record()
        filler = self.fill(disk)
        code, body = await self.api("POST", "/api/partitions/demo/stop")
        self.assertEqual(code, 200, body)
        await self.until_state("QA_Active")
        code, body = await self.api("POST", "/api/partitions/demo/configure", {"tag": "demo", "auto": True})
        self.assertEqual((code, body["error"]), (507, "storage"), body)
        self.assertIn("cannot be written", body["reason"])
        alarms: Any = None
        for _ in range(300):  # up to a minute: the machine is shared
            code, alarms = await self.api("GET", "/api/alarms")
            if code == 200 and "storage_failed" in {a["kind"] for a in alarms}:
                break
            await pause(0.2)
        else:
            raise AssertionError(f"no storage_failed alarm: {alarms}")
        code, body = await self.api("POST", "/api/partitions/demo/abort")
        self.assertEqual(code, 200, body)
        await self.until_state("Idle")
        filler.unlink()
        [closed] = await self.until_runs(lambda rs: rs and rs[-1]["ended"] is not None, "closed once writable")
        self.assertEqual((closed["number"], closed["outcome"]), (run["number"], "stopped"))
        for _ in range(300):  # up to a minute: the machine is shared
            code, alarms = await self.api("GET", "/api/alarms")
            shown = {a["kind"]: a for a in alarms}
            if shown.get("storage_failed", {}).get("cleared_at") is not None:
                break
            await pause(0.2)
        else:
            raise AssertionError(f"storage_failed never cleared: {alarms}")
        self.assertEqual([outcome for _, outcome in self.audit("stop")], ["ok"])
        self.assertEqual([outcome for _, outcome in self.audit("abort")], ["ok"])
