# -*- test-case-name: tests.test_client_history -*-
"""
The commands of issue 14 in both front ends of the one command table: the
command line over HTTP (each request matched against the ECA's own Klein
routes, without a network: L{tests.test_commands.RecordingClient}) and the
SSH shell against L{tests.fake_control.FakeControlCenter}:
C{start --type --comment --condition}, C{stop --comment}, C{runs} with its
filters and exports, C{audit}.
"""

from __future__ import annotations

import csv
import io
import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.cli import build_parser
from ecs.client.api import HttpApi
from ecs.client.commands import Run, run_now
from tests import test_commands  # the module, not its test cases (trial would run them twice)
from tests.fake_control import FakeControlCenter
from tests.test_commands import CliRequests, Collected, RecordingClient

NOW = 1_800_000_000.0


class HttpTests(CliRequests):
    """The requests the command line sends."""

    def test_start_and_stop_bodies(self) -> None:
        """start sends type, comment and conditions (numbers kept); stop its comment; without options, {}."""
        client, _ = self.cli(["start", "demo", "--type", "physics", "--comment", "first beam",
                              "--condition", "magnet=0.5", "--condition", "beam=true", "--condition", "target=Au"])
        self.assertEqual(client.sent[-1][:4], ("POST", "command", {"pid": "demo", "command": "start"}, {
            "type": "physics", "comment": "first beam", "conditions": {"magnet": 0.5, "beam": True, "target": "Au"},
        }))
        client, _ = self.cli(["stop", "demo", "--comment", "end of fill"])
        self.assertEqual(client.sent[-1][3], {"comment": "end of fill"})
        client, _ = self.cli(["start", "demo"])
        self.assertIsNone(client.sent[-1][3])  # no body at all, as before issue 14

    def test_bad_options_are_usage_errors(self) -> None:
        """A malformed type or condition, or one given twice, stops before any request (exit 2)."""
        for line in (["start", "demo", "--type", "two words"], ["start", "demo", "--condition", "novalue"],
                     ["start", "demo", "--condition", "a b=1"]):
            with self.assertRaises(SystemExit) as caught:
                build_parser().parse_args(line)
            self.assertEqual(caught.exception.code, 2, line)
        client = RecordingClient()
        args = build_parser().parse_args(["start", "demo", "--condition", "a=1", "--condition", "a=2"])
        with self.assertRaises(Exception) as refused:
            run_now(args.spec.run(Run(HttpApi(client), args, Collected())))  # type: ignore[arg-type]
        self.assertIn("given twice", str(refused.exception))
        self.assertEqual(client.sent, [])

    def test_runs_filters_and_exports(self) -> None:
        """runs sends type, since and until; --format csv prints CSV, json the rows."""
        rows = [{"number": 3, "partition": "demo", "type": "test", "tag": "demo", "operator": "olga",
                 "started": NOW - 60, "ended": None, "outcome": None, "start_comment": "a, b"}]
        client, printer = self.cli(["runs", "--type", "test", "--since", "1h", "--until", "30s", "--format", "csv"],
                                   {"runs": rows})
        self.assertEqual(client.sent[-1][:2], ("GET", "runs"))
        self.assertEqual(client.sent[-1][4], {"limit": 100, "type": "test", "since": NOW - 3600, "until": NOW - 30})
        parsed = list(csv.DictReader(io.StringIO(printer.text)))
        self.assertEqual([(r["number"], r["type"], r["start_comment"], r["outcome"]) for r in parsed],
                         [("3", "test", "a, b", "running")])
        _, printer = self.cli(["runs", "--format", "json"], {"runs": rows})
        self.assertEqual(json.loads(printer.text), rows)
        _, printer = self.cli(["runs"], {"runs": rows})
        self.assertRegex(printer.text.splitlines()[1], r"^3 +demo +test +demo +olga")

    def test_audit(self) -> None:
        """audit sends its filters to /api/audit; a full page says how to get the next."""
        rows = [{"id": 9, "time": NOW, "user": "olga", "action": "start", "arguments": {"type": "test"},
                 "outcome": "ok"}]
        client, printer = self.cli(["audit", "--user", "olga", "--action", "start", "--since", "1d",
                                    "--before", "10", "--limit", "1"], {"audit": rows})
        self.assertEqual(client.sent[-1][:2], ("GET", "audit"))
        self.assertEqual(client.sent[-1][4], {"user": "olga", "action": "start", "since": NOW - 86400,
                                              "before": 10, "limit": 1})
        self.assertRegex(printer.text.splitlines()[1], r"^9 +.* olga +start +\{\"type\":\"test\"\} +ok")
        self.assertIn("--before 9", printer.notes)
        with self.assertRaises(SystemExit):
            build_parser().parse_args(["audit", "--limit", "0"])


class ShellCommandTests(SynchronousTestCase):
    """The same commands in the SSH shell, against the fake center."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.clock = Clock()

    def run_line(self, line: str, user: str = "expert") -> tuple[int, str, str]:
        outcome, out, err = test_commands.ShellTests.line(self.center, self.clock, line, user)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        return outcome.code, out, err

    def test_audit_roles_and_filters(self) -> None:
        """audit needs an expert; it lists newest first, filtered by user and action."""
        code, _, err = self.run_line("audit", user="operator")
        self.assertEqual(code, 3, err)
        code, out, _ = self.run_line("audit --user operator")
        self.assertEqual(code, 0)
        self.assertEqual([line.split()[0] for line in out.splitlines()[1:]], ["4", "2", "1"])
        code, out, _ = self.run_line("audit --action save_tag --json")
        self.assertEqual([e["id"] for e in json.loads(out)], [3])

    def test_start_types_and_runs(self) -> None:
        """start --type reaches the center (an unknown type refused naming the allowed ones); runs --type filters."""
        self.assertEqual(self.run_line("control take demo", user="operator")[0], 0)
        self.center.partitions_["demo"]["state"] = "Configured"
        code, _, err = self.run_line("start demo --type beam", user="operator")
        self.assertEqual(code, 1)
        self.assertIn("allowed: physics, calibration, cosmics, test", err)
        self.assertEqual(self.run_line("start demo --type test --comment hi --condition n=2", user="operator")[0], 0)
        self.assertEqual(self.center.commands[-1][2:], ("start", {"type": "test", "comment": "hi",
                                                                  "conditions": {"n": 2}}))
        self.center.run_records = [{"number": 1, "partition": "demo", "type": "physics", "started": 1.0},
                                   {"number": 2, "partition": "demo", "type": "test", "started": 2.0}]
        code, out, _ = self.run_line("runs --type test --json", user="viewer")
        self.assertEqual((code, [r["number"] for r in json.loads(out)]), (0, [2]))
