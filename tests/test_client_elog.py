# -*- test-case-name: tests.test_client_elog -*-
"""
C{ecs log-entry add|list} (issue 14, item 4) in both front ends of the one
command table: the command line over HTTP (each request matched against
the ECA's own Klein routes, without a network) and the SSH shell against
L{tests.fake_control.FakeControlCenter}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.cli import build_parser
from ecs.client.api import HttpApi
from ecs.client.commands import Run, run_now
from ecs.client.elog import format_entries
from tests import test_commands  # the module, not its test cases (trial would run them twice)
from tests.fake_control import FakeControlCenter
from tests.test_commands import Collected, RecordingClient

NOW = 1_800_000_000.0


class HttpTests(SynchronousTestCase):
    """The requests the command line sends."""

    def cli(self, line: list[str], answers: dict[str, Any] | None = None) -> tuple[RecordingClient, Collected]:
        client = RecordingClient(answers)
        printer = Collected()
        args = build_parser().parse_args(line)
        code = run_now(args.spec.run(Run(HttpApi(client), args, printer, now=lambda: NOW)))  # type: ignore[arg-type]
        self.assertEqual(code, 0, line)
        return client, printer

    def test_add(self) -> None:
        """add posts the text with the options given (and only those)."""
        client, printer = self.cli(["log-entry", "add", "HV trip on STS", "--partition", "demo", "--run", "12",
                                    "--corrects", "3"], {"add_entry": {"id": 4}})
        self.assertEqual(client.sent[-1][:4], ("POST", "add_entry", {}, {
            "text": "HV trip on STS", "partition": "demo", "run": 12, "corrects": 3}))
        self.assertEqual(printer.text, "logbook entry 4 written\n")
        client, _ = self.cli(["log-entry", "add", "plain"], {"add_entry": {"id": 5}})
        self.assertEqual(client.sent[-1][3], {"text": "plain"})

    def test_list(self) -> None:
        """list sends its filters; corrections and attachments are marked; a full page says how to go on."""
        rows = [{"id": 9, "time": NOW, "author": "olga", "text": "beam back", "partition": "demo", "run": 7,
                 "corrects": None, "corrected_by": [10], "attachments": [{"n": 1, "name": "a.png", "size": 3}]}]
        client, printer = self.cli(["log-entry", "list", "--text", "beam", "--partition", "demo", "--run", "7",
                                    "--author", "olga", "--since", "1h", "--before", "11", "--limit", "1"],
                                   {"logbook": rows})
        self.assertEqual(client.sent[-1][:2], ("GET", "logbook"))
        self.assertEqual(client.sent[-1][4], {"text": "beam", "partition": "demo", "run": 7, "author": "olga",
                                              "since": NOW - 3600, "before": 11, "limit": 1})
        self.assertRegex(printer.text.splitlines()[1],
                         r"^9 +.* olga +demo +7 +beam back \[corrected by #10\] \[a.png \(3 B\)\]$")
        self.assertIn("--before 9", printer.notes)

    def test_usage_errors(self) -> None:
        """An empty text, a bad run or id, a bad partition stop before any request (exit 2)."""
        for line in (["log-entry", "add", " "], ["log-entry", "add", "x", "--run", "0"],
                     ["log-entry", "add", "x", "--corrects", "a"], ["log-entry", "add", "x", "--partition", "a b"],
                     ["log-entry", "add", "x" * 10_001], ["log-entry", "list", "--run", "-1"]):
            with self.assertRaises(SystemExit) as caught:
                build_parser().parse_args(line)
            self.assertEqual(caught.exception.code, 2, line)

    def test_format_empty(self) -> None:
        """No entries says so."""
        self.assertEqual(format_entries([]), "no logbook entries\n")


class ShellCommandTests(SynchronousTestCase):
    """The same commands in the SSH shell, against the fake center."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.clock = Clock()

    def run_line(self, line: str, user: str = "operator") -> tuple[int, str, str]:
        outcome, out, err = test_commands.ShellTests.line(self.center, self.clock, line, user)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        return outcome.code, out, err

    def test_round_trip(self) -> None:
        """An operator writes and corrects; a viewer lists (marked) but may not write."""
        self.assertEqual(self.run_line('log-entry add "first note" --partition demo')[0], 0)
        self.assertEqual(self.run_line('log-entry add "better note" --corrects 1')[0], 0)
        code, _, err = self.run_line('log-entry add "nope"', user="viewer")
        self.assertEqual(code, 3, err)
        code, out, _ = self.run_line("log-entry list", user="viewer")
        self.assertEqual(code, 0)
        self.assertEqual([line.split()[0] for line in out.splitlines()[1:]], ["2", "1"])
        self.assertIn("[corrected by #2]", out)
        code, out, _ = self.run_line("log-entry list --partition demo --json", user="viewer")
        self.assertEqual([e["id"] for e in json.loads(out)], [1])
        code, _, err = self.run_line('log-entry add "x" --corrects 99')
        self.assertEqual(code, 1, err)
