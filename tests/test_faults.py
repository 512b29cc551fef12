"""
The fault campaign in CI: a real deployment (L{tests.faultlib}) and at
least 30 seeded SIGKILLs during configure, start, stop, abort and detector
moves, each followed by the invariant checks and a configure to QA_Active.

The seed is C{ECS_FAULT_SEED} (default L{DEFAULT_SEED}: the same faults on
every run unless asked otherwise); C{ECS_FAULT_COUNT} changes the number
of faults (default 30).  A failure names each failed fault (seed, step,
what was killed and when) with what was wrong, and where the logs are.
The figures line is printed and logged.  The longer mode is
C{bench/faults.py}.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import faultlib
from tests.faultlib import Campaign, Deployment, failures, figures

DEFAULT_SEED = 11
FAULTS = 30
#: Seconds the faults may take (the set-up and the final stop come on top; trial's limit is L{timeout}).
BUDGET = 480.0

_log = Logger()


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)
    _log.info("{line}", line=line)


class FaultCampaignTests(TestCase):
    """The seeded fault campaign against real processes."""

    timeout = 600

    async def test_campaign(self) -> None:
        """Every fault heals: agents restarted, states true, no lock, controls kept, database and runs sound."""
        seed = int(os.environ.get("ECS_FAULT_SEED", DEFAULT_SEED))
        count = int(os.environ.get("ECS_FAULT_COUNT", FAULTS))
        root = Path(self.mktemp()).resolve()
        root.mkdir(parents=True)
        deployment = Deployment(self, root)
        campaign = Campaign(deployment, seed, count, BUDGET, say=_say)
        self.addCleanup(deployment.stop)
        outcomes = await campaign.run()
        line = figures(outcomes, seed)
        print(line, flush=True)
        _log.info("{line}", line=line)
        problems = failures(outcomes, deployment, campaign.stopped_early)
        if problems:
            self.fail(f"{line}\n{problems}")
        self.assertEqual(len(outcomes), count, line)


def _system(ident: str, state: str, kind: str = "detector", connected: bool = True) -> dict[str, Any]:
    return {"id": ident, "kind": kind, "state": state, "raw_state": state, "connected": connected}


def _partition(state: str, *systems: dict[str, Any], connected: bool = True) -> dict[str, Any]:
    return {"state": state, "connected": connected, "locked": False, "operation": None, "systems": list(systems)}


def _agent(pid: int, registered: bool = True) -> dict[str, Any]:
    return {"registered": registered, "status": {"pid": pid, "running": True, "detail": "running"},
            "supervision": {"state": "running", "reason": ""}}


class InvariantTests(SynchronousTestCase):
    """The campaign's checks find what they are meant to find (no processes)."""

    def test_runs_lost_split_open(self) -> None:
        """A recording with no run, one with two runs, a run open while Idle, a known run gone: each named."""
        book = faultlib.RunBook()
        book.episodes = {"demo": [[100.0, 110.0], [200.0, 210.0]]}
        view = faultlib.DatabaseView(["ok"], [
            {"number": 1, "partition": "demo", "started": 199.0, "ended": 206.0, "outcome": "failed"},
            {"number": 2, "partition": "demo", "started": 205.0, "ended": None, "outcome": None},
        ], {})
        problems = book.check(view, {"demo": _partition("Idle")})
        self.assertTrue(any("has no run record (lost)" in p for p in problems), problems)
        self.assertTrue(any("runs [1, 2] (split or duplicated)" in p for p in problems), problems)
        self.assertTrue(any("Idle with open runs [2]" in p for p in problems), problems)
        self.assertTrue(any("runs 1 and 2 of demo overlap" in p for p in problems), problems)
        gone = book.check(faultlib.DatabaseView(["ok"], view.runs[1:], {}), {"demo": _partition("Recording")})
        self.assertEqual(gone, ["run 1 of demo lost or rewritten: now None"])

    def test_runs_sound(self) -> None:
        """One run per recording, closed when the partition is not Recording: nothing to say."""
        book = faultlib.RunBook()
        book.saw("demo", "Recording")
        book.saw("demo", "Connection Problem")  # a PCA restart does not end the recording
        book.saw("demo", "Recording")
        book.saw("demo", "QA_Active")
        [(begun, last)] = book.episodes["demo"]
        run = {"number": 7, "partition": "demo", "started": begun - 1, "ended": last + 1, "outcome": "stopped"}
        self.assertEqual(book.check(faultlib.DatabaseView(["ok"], [run], {}), {"demo": _partition("QA_Active")}), [])

    def test_states_from_the_logs(self) -> None:
        """The truth is the last transition since the controller's last start; a stale shown state is named."""
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "detector-TRD.log").write_text(
            "2026 [x#info] TRD (demo): Unconfigured -configure-> Active\n"
            "2026 [twisted#info] twistd 26.10.0 (python) starting up.\n", encoding="utf-8")
        (folder / "global-all.log").write_text(
            "2026 [x#info] TFC (p2): Unconfigured -configure-> Active\n", encoding="utf-8")
        (folder / "detector-STS.log").write_text(
            "2026 [x#info] STS (demo): Unconfigured -configure-> Active\n"
            "2026 [x#info] STS now belongs to p2\n", encoding="utf-8")
        told = faultlib.Truth(folder)._read()
        self.assertEqual(told, faultlib.Told({("TFC", "p2"): "Active", ("STS", ""): "Active"}, {"STS": "p2"}))
        parts = {"demo": _partition("QA_Active", _system("TRD", "Active"), _system("TFC", "Unconfigured", "global"),
                                    _system("STS", "Active")),
                 "p2": _partition("Idle", _system("TFC", "Active", "global"))}
        self.assertEqual(faultlib.states_true(parts, told), [
            "stale: TRD in demo shown 'Active', its controller's log says 'Unconfigured'",
            "half-moved: STS shown in demo, its controller's log says it belongs to p2"])

    def test_half_moved_and_processes(self) -> None:
        """A detector shown in two partitions, two processes of one agent, an unplaced process: each named."""
        view = faultlib.DatabaseView(["ok"], [], {"TRD": "demo", "STS": "demo"})
        parts = {"demo": _partition("Idle", _system("TRD", "Unconfigured"), _system("STS", "Unconfigured")),
                 "p2": _partition("Idle", _system("TRD", "Unconfigured"))}
        self.assertEqual(faultlib.placed_once(view, parts),
                         ["half-moved: TRD is in demo in the database, shown in ['demo', 'p2']"])
        agents = {"detector:TRD": _agent(10), "simhost:sim": _agent(11)}
        self.assertEqual(faultlib.one_process_each(agents, {10: "detector:TRD", 11: "simhost:?"}), [])
        found = {10: "detector:TRD", 12: "detector:TRD", 13: "pca:x"}
        self.assertEqual(faultlib.one_process_each(agents, found), [
            "detector:TRD: 2 processes", "simhost:sim: no process", "pca:x: a process although not placed"])
        self.assertEqual(faultlib.database_sound(faultlib.DatabaseView(["row 3 missing"], [], {})),
                         ["pragma integrity_check: ['row 3 missing']"])

    def test_down_means_connection_problem(self) -> None:
        """While a killed agent is not back, its systems (or its partition) shown alive are stale."""
        parts = {"demo": _partition("QA_Active", _system("TRD", "Active"), _system("sim1", "Connection Problem",
                                                                                    connected=False))}
        self.assertEqual(faultlib.shown_while_down("detector:TRD", 10, {"detector:TRD": _agent(10)}, parts, 7.0), [
            "stale: TRD in demo shown 'Active' 7.0 s after detector:TRD died (expected Connection Problem)"])
        self.assertEqual(faultlib.shown_while_down("detector:TRD", 10, {"detector:TRD": _agent(20)}, parts, 7.0), [])
        self.assertEqual(faultlib.shown_while_down("simhost:sim", 11, {"simhost:sim": _agent(11)}, parts, 7.0), [])
        self.assertEqual(faultlib.shown_while_down("pca:demo", 12, {}, parts, 6.5),
                         ["demo shown connected (QA_Active) 6.5 s after its PCA died"])
        self.assertEqual(faultlib.agents_up({"detector:TRD": _agent(10)}, "detector:TRD", 10)[-1:],
                         ["detector:TRD: still shown with the killed pid 10"])
