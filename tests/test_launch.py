"""
Tests of the launcher interface's helpers (L{ecs.launch}): id, host and
argument checks, agent names, records as JSON.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyClass

from ecs.launch import (
    AgentSpec,
    ILauncher,
    LaunchError,
    LaunchRecord,
    Placement,
    agent_name,
    check_argument,
    check_host,
    check_id,
    split_name,
)
from ecs.launch.local import LocalLauncher
from ecs.launch.ssh import SshLauncher

SHELL_TRICKS = ["a;touch pwned", "$(id)", "`id`", "a b", "a|b", "a&b", "a>b", "a'b", 'a"b', "a\nb", "", "x" * 129,
                "a/b", "a\\b", "a*", "~root"]


class CheckTests(TestCase):
    """Validation of everything that reaches a command line."""

    def test_ids(self) -> None:
        """Ids with shell syntax, spaces or slashes are refused with `invalid`; plain ones pass."""
        for good in ("STS", "p-1", "a.b_c@d", "x" * 128):
            self.assertEqual(check_id(good), good)
        for bad in [*SHELL_TRICKS, None, 5, b"STS"]:
            error = self.assertRaises(LaunchError, check_id, bad)
            self.assertEqual(error.code, "invalid")
            self.assertIn(repr(bad), error.reason)

    def test_hosts(self) -> None:
        """Host names and addresses pass; option-like or shell-like ones do not."""
        for good in ("node-1.example.org", "127.0.0.1", "fe80::1"):
            self.assertEqual(check_host(good), good)
        for bad in ("-oProxyCommand=x", "a;b", "a b", "", "[::1]", None):
            self.assertEqual(self.assertRaises(LaunchError, check_host, bad).code, "invalid")

    def test_arguments(self) -> None:
        """Arguments may hold anything quotable; NUL, newlines and huge ones are refused."""
        for good in ("$(id)", "a b;c", "'\"`", "", "x" * 4096):
            self.assertEqual(check_argument(good), good)
        for bad in ("a\0b", "a\nb", "a\rb", "x" * 4097, None, ["a"]):
            self.assertEqual(self.assertRaises(LaunchError, check_argument, bad).code, "invalid")

    def test_names(self) -> None:
        """Agent names are <kind>:<id> with a known kind and a valid id."""
        self.assertEqual(agent_name("detector", "STS"), "detector:STS")
        self.assertEqual(split_name("simhost:h1"), ("simhost", "h1"))
        self.assertEqual(AgentSpec("pca", "p1", ()).name, "pca:p1")
        self.assertEqual(Placement("global:TFC", "h", "local").kind, "global")
        for bad in ("detector", "robot:x", "detector:a;b", ":x", None):
            self.assertEqual(self.assertRaises(LaunchError, split_name, bad).code, "invalid")
        self.assertRaises(LaunchError, lambda: AgentSpec("detector", "$(id)", ()).name)

    def test_error_codes(self) -> None:
        """A LaunchError carries its code and reason in its text."""
        error = LaunchError("timeout", "no answer")
        self.assertEqual((error.code, error.reason, str(error)), ("timeout", "no answer", "timeout: no answer"))


class RecordTests(TestCase):
    """Launch records as plain JSON."""

    def test_round_trip(self) -> None:
        """to_json and from_json give back the same record."""
        record = LaunchRecord("detector:STS", "ssh", "h1", 12.5, pid=42, log="/x.log",
                              extra={"starttime": 7, "user": "ecs", "port": 2222})
        self.assertEqual(LaunchRecord.from_json(record.to_json()), record)

    def test_invalid(self) -> None:
        """Text that is not a record is refused with `invalid`."""
        for text in ("not json", "[]", '{"agent": "x"}', '{"agent": "x", "launcher": "l", "host": "h", '
                     '"started": 1, "bogus": 2}'):
            self.assertEqual(self.assertRaises(LaunchError, LaunchRecord.from_json, text).code, "invalid")

    def test_launchers_implement_interface(self) -> None:
        """The local and ssh launchers provide ILauncher."""
        self.assertTrue(verifyClass(ILauncher, LocalLauncher))
        self.assertTrue(verifyClass(ILauncher, SshLauncher))
        self.assertEqual((LocalLauncher.name, SshLauncher.name), ("local", "ssh"))
