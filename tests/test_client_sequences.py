# -*- test-case-name: tests.test_client_sequences -*-
"""
C{ecs sequence list|run|status|pause|resume|abort} (issue 14, item 5) in
both front ends of the one command table: the command line over HTTP
(requests matched against the ECA's Klein routes, no network) and the SSH
shell against L{tests.fake_control.FakeControlCenter}, with C{run --wait}
following the sequence to its end.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.cli import build_parser
from ecs.client.api import HttpApi
from ecs.client.commands import Run, run_now
from ecs.client.sequences import format_sequences, outcome, progress_line
from tests import test_commands  # the module, not its test cases (trial would run them twice)
from tests.fake_control import FakeControlCenter
from tests.test_commands import Collected, RecordingClient

RUNNING = {"partition": "demo", "sequence": "scan", "state": "running", "step": 2, "total": 12,
           "description": "start type=calibration", "pause_wanted": False, "error": None, "failed_step": None}


class HttpTests(SynchronousTestCase):
    """The requests the command line sends."""

    def cli(self, line: list[str], answers: dict[str, Any] | None = None) -> tuple[RecordingClient, Collected]:
        client = RecordingClient(answers)
        printer = Collected()
        args = build_parser().parse_args(line)
        code = run_now(args.spec.run(Run(HttpApi(client), args, printer)))  # type: ignore[arg-type]
        self.assertEqual(code, 0, line)
        return client, printer

    def test_list(self) -> None:
        client, printer = self.cli(["sequence", "list"], {"sequences": [
            {"name": "scan", "description": "three tags", "total": 12, "steps": []}]})
        self.assertEqual(client.sent[-1][:2], ("GET", "sequences"))
        self.assertRegex(printer.text.splitlines()[1], r"^scan +12 +three tags$")

    def test_run_status_control(self) -> None:
        client, printer = self.cli(["sequence", "run", "scan", "demo"], {"run_sequence": RUNNING})
        self.assertEqual(client.sent[-1][:4], ("POST", "run_sequence", {"name": "scan"}, {"partition": "demo"}))
        self.assertEqual(printer.text, "demo: sequence scan running, step 2/12: start type=calibration\n")
        client, printer = self.cli(["sequence", "status", "demo"], {"sequence_status": RUNNING})
        self.assertEqual(client.sent[-1][:3], ("GET", "sequence_status", {"pid": "demo"}))
        for action in ("pause", "resume", "abort"):
            client, printer = self.cli(["sequence", action, "demo"], {"sequence_control": RUNNING})
            self.assertEqual(client.sent[-1][:3], ("POST", "sequence_control", {"pid": "demo", "action": action}))
            self.assertTrue(printer.text.startswith(f"demo: {action} accepted; scan running"), printer.text)

    def test_usage_errors(self) -> None:
        for line in (["sequence", "run", "scan"], ["sequence", "run", "a b", "demo"], ["sequence", "pause"]):
            with self.assertRaises(SystemExit) as caught:
                build_parser().parse_args(line)
            self.assertEqual(caught.exception.code, 2, line)

    def test_judging(self) -> None:
        """Only an ended sequence has an outcome; a failed one names its step."""
        self.assertIsNone(outcome(RUNNING))
        self.assertEqual(outcome({**RUNNING, "state": "done", "step": 12}), (True, "scan done, step 12/12: "
                                                                            "start type=calibration"))
        ok, text = outcome({**RUNNING, "state": "failed", "error": "refused", "failed_step": "2: start"})  # type: ignore[misc]
        self.assertFalse(ok)
        self.assertIn("failed in step 2: start: refused", text)
        self.assertEqual(progress_line({"state": "none"}), "no sequence has run")
        self.assertEqual(format_sequences([]), "no run sequences declared (etc/sequences/)\n")


class ShellCommandTests(SynchronousTestCase):
    """The same commands in the SSH shell, against the fake center."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.clock = Clock()
        self.center.holders["demo"] = "operator"

    def run_line(self, line: str, user: str = "operator") -> tuple[int, str, str]:
        outcome, out, err = test_commands.ShellTests.line(self.center, self.clock, line, user)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        return outcome.code, out, err

    def test_list_and_status(self) -> None:
        code, out, _ = self.run_line("sequence list", user="viewer")
        self.assertEqual((code, out.splitlines()[1].split()[0]), (0, "threshold-scan"))
        code, out, _ = self.run_line("sequence status demo", user="viewer")
        self.assertEqual((code, out), (0, "demo: no sequence has run\n"))

    def test_run_wait_done(self) -> None:
        code, out, err = self.run_line("sequence run threshold-scan demo --wait")
        self.assertEqual(code, 0, err)
        self.assertIn("threshold-scan done, step 12/12", out)
        self.assertEqual(self.center.audit_log[-1], ("operator", "run_sequence", ("threshold-scan", "demo")))

    def test_run_wait_failed(self) -> None:
        """A failed sequence: non-zero, naming the failed step."""
        self.center.sequence_outcome = "failed"
        code, out, err = self.run_line("sequence run threshold-scan demo --wait")
        self.assertEqual(code, 1, (out, err))
        self.assertIn("failed in step 3: configure tag=demo", err)

    def test_control(self) -> None:
        self.center.sequence_outcome = None  # it keeps running
        self.assertEqual(self.run_line("sequence run threshold-scan demo")[0], 0)
        self.assertEqual(self.run_line("sequence pause demo")[0], 0)
        code, out, _ = self.run_line("sequence status demo --json", user="viewer")
        self.assertEqual(json.loads(out)["state"], "paused")
        code, _, err = self.run_line("sequence resume demo", user="operator2")
        self.assertEqual(code, 1, err)
        self.assertEqual(self.run_line("sequence abort demo")[0], 0)
        code, _, err = self.run_line("sequence abort demo")
        self.assertEqual(code, 1, err)
        code, _, err = self.run_line("sequence run threshold-scan demo", user="viewer")
        self.assertEqual(code, 3, err)
