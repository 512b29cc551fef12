"""
The walk-through that C{make demo} runs: real processes, the configure
sequence to recording, and every process gone after it is stopped.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.procs import ROOT, pid_alive, spawn


class WalkthroughTests(TestCase):
    """python -m agents.walkthrough end to end."""

    timeout = 120

    def setUp(self) -> None:
        self.state = Path(self.mktemp()).resolve()
        self.state.mkdir()

    async def test_walk_and_stop(self) -> None:
        """The walk reaches recording and back; SIGTERM stops every agent it started."""
        state = self.state
        proc, transport = spawn(
            self,
            "walkthrough",
            [sys.executable, "-m", "agents.walkthrough", "--state-dir", str(state), "--detectors", "3"],
            cwd=str(ROOT),
        )
        await proc.wait_for(r"Ctrl-C stops everything", timeout=90)
        output = "\n".join(proc.lines)
        self.assertIn("PARTITION Recording", output)
        self.assertIn("PARTITION QA_Active", output)
        for system in ("TFC", "STS", "sim3", "FLES", "DCS", "QA"):
            self.assertRegex(output, rf"\s{system} Active\s")
        hint = re.search(r"(\S+/ecs) inject STS error --endpoint (\S+) --state-dir (\S+)", output)
        self.assertIsNotNone(hint, "the printed hint names the endpoint")
        inject, _ = spawn(self, "inject", [hint.group(1), "inject", "STS", "error", "--endpoint",
                                           hint.group(2), "--state-dir", hint.group(3)], cwd=str(ROOT))
        self.assertEqual(await inject.ended, 0, "\n".join(inject.lines))
        await proc.wait_for(r"STS Error", timeout=20)
        await proc.wait_for(r"PARTITION TFC_Active", timeout=20)  # the PCA fell back
        pids = [int(p) for p in re.findall(r"^started \S+ \(pid (\d+)\)", output, re.M)]
        self.assertEqual(len(pids), 8)  # global, five detectors, one sim host, the PCA
        transport.signalProcess("TERM")
        self.assertEqual(await proc.ended, 0)
        for _ in range(200):
            if not any(pid_alive(pid) for pid in pids):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual([pid for pid in pids if pid_alive(pid)], [])
