# -*- test-case-name: tests.test_client_exclusion -*-
"""C{ecs exclude|include P SYSTEM} (issue 14): the HTTP request the command line sends, and the shell's run."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.exits import EXIT_OK, EXIT_REFUSED
from tests import test_commands
from tests.fake_control import FakeControlCenter
from tests.test_commands import _quiet


class HttpExclusionTests(SynchronousTestCase):
    """The command line sends the route's request and reports the excluded systems."""

    cli = test_commands.HttpCommandTests.cli

    def test_routes(self) -> None:
        """exclude and include post {"system"} to /api/partitions/P/exclude|include."""
        for command in ("exclude", "include"):
            client, printer, code = self.cli(f"{command} demo STS", {"command": {"excluded": ["STS"]}})
            self.assertEqual(code, EXIT_OK)
            self.assertEqual(
                client.sent[-1], ("POST", "command", {"pid": "demo", "command": command}, {"system": "STS"}, {})
            )
        self.assertIn("demo: STS included (the next configure configures it); excluded now: STS", printer.text)

    def test_bad_arguments(self) -> None:
        """A system id with a space, or none, is a usage error before any request."""
        for line in ("exclude demo", "include demo bad/name"):
            with _quiet(), self.assertRaises(SystemExit):
                self.cli(line)


class ShellExclusionTests(SynchronousTestCase):
    """The shell runs the same commands through the center's exclude and include."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.center.holders["demo"] = "operator"
        self.clock = Clock()

    def run_line(self, line: str, user: str = "operator") -> tuple[int, str, str]:
        outcome, out, err = test_commands.ShellTests.line(self.center, self.clock, line, user)
        return outcome.code, out, err

    def test_exclude_include(self) -> None:
        """exclude then include in the shell; TFC refused with the reason (exit 1)."""
        code, out, _ = self.run_line("exclude demo STS")
        self.assertEqual((code, out.strip()), (EXIT_OK, "demo: STS excluded; excluded now: STS"))
        code, _, err = self.run_line("exclude demo TFC")
        self.assertEqual(code, EXIT_REFUSED)
        self.assertIn("never", err)
        code, out, _ = self.run_line("include demo STS")
        self.assertEqual(code, EXIT_OK)
        self.assertIn("excluded now: none", out)
        self.assertEqual([c[2] for c in self.center.commands], ["exclude", "include"])
