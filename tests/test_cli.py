"""
Tests for the C{ecs} command line (L{ecs.cli}): exit codes and what it
prints, run in-process with captured output.
"""

from __future__ import annotations

import io
import os
import stat
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ecs.cli import build_parser, main, request_agent
from ecs.exits import EXIT_AUTH

FSM = Path(__file__).resolve().parent.parent / "fsm"


def run(*argv: str) -> tuple[int, str, str]:
    """Run C{ecs argv...}; return exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                err.write(e.code)
    return code, out.getvalue(), err.getvalue()


class FsmCommandTests(SynchronousTestCase):
    """`ecs fsm check` and `ecs fsm dot`."""

    def test_check_shipped_tables(self) -> None:
        """Every shipped table passes, one OK line each, exit 0."""
        tables = sorted(str(p) for p in FSM.glob("*.yaml"))
        code, out, _ = run("fsm", "check", *tables)
        self.assertEqual(code, 0)
        self.assertEqual(out.count("OK"), len(tables))

    def test_check_bad_table(self) -> None:
        """A broken table: exit 1, the reason names the file and the line."""
        bad = Path(self.mktemp())
        bad.write_text(
            "name: bad\ninitial: A\nstates: {A: Unconfigured, B: Active}\n"
            "transitions:\n  - [A, configure, B]\n  - [A, configure, A]\n"
        )
        code, _, err = run("fsm", "check", str(bad))
        self.assertEqual(code, 1)
        self.assertIn(str(bad), err)
        self.assertIn("line 6", err)

    def test_check_missing_file(self) -> None:
        """A missing file is a failure naming it."""
        code, _, err = run("fsm", "check", "/nonexistent/table.yaml")
        self.assertEqual(code, 1)
        self.assertIn("/nonexistent/table.yaml", err)

    def test_dot_highlights_state(self) -> None:
        """`fsm dot --state` prints DOT text with every state and the current one marked."""
        code, out, _ = run("fsm", "dot", str(FSM / "detector-2step.yaml"), "--state", "Active")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("digraph"))
        for state in ("Unconfigured", "Configuring_Step1", "Configuring_Step2", "Active", "Error"):
            self.assertIn(f'"{state}"', out)
        plain = run("fsm", "dot", str(FSM / "detector-2step.yaml"))[1]
        self.assertNotEqual(out, plain)

    def test_dot_unknown_state(self) -> None:
        """An unknown --state is an error naming the valid states."""
        code, _, err = run("fsm", "dot", str(FSM / "global.yaml"), "--state", "Flying")
        self.assertEqual(code, 1)
        self.assertIn("Flying", err)
        self.assertIn("Configuring", err)


class KeysCommandTests(SynchronousTestCase):
    """`ecs keys init` and `ecs keys add`."""

    def test_init_then_refuse_overwrite(self) -> None:
        """init writes private files; a second init without --force refuses."""
        directory = Path(self.mktemp())
        code, out, _ = run("keys", "init", "--dir", str(directory))
        self.assertEqual(code, 0)
        self.assertIn("server.key_secret", out)
        mode = stat.S_IMODE(os.stat(directory / "server.key_secret").st_mode)
        self.assertEqual(mode, 0o600)
        code, _, err = run("keys", "init", "--dir", str(directory))
        self.assertEqual(code, 1)
        self.assertIn("--force", err)
        self.assertEqual(run("keys", "init", "--dir", str(directory), "--force")[0], 0)

    def test_add_client(self) -> None:
        """add creates a pair and authorises it."""
        directory = Path(self.mktemp())
        run("keys", "init", "--dir", str(directory))
        code, _out, _ = run("keys", "add", "operator1", "--dir", str(directory))
        self.assertEqual(code, 0)
        self.assertTrue((directory / "authorized" / "operator1.key").exists())
        self.assertEqual(run("keys", "add", "bad name!", "--dir", str(directory))[0], 1)


class InjectArgumentTests(SynchronousTestCase):
    """`ecs inject` checks its arguments before contacting anyone."""

    def test_detector_error_needs_detector(self) -> None:
        """detector-error without a detector id is refused."""
        code, _, err = run("inject", "DCS", "detector-error", "--endpoint", "tcp://127.0.0.1:1")
        self.assertNotEqual(code, 0)
        self.assertIn("detector id", err)

    def test_error_takes_no_detector(self) -> None:
        """error with a stray detector id is refused."""
        code, _, err = run("inject", "STS", "error", "TOF", "--endpoint", "tcp://127.0.0.1:1")
        self.assertNotEqual(code, 0)
        self.assertIn("takes no detector", err)

    def test_needs_endpoint_or_inventory(self) -> None:
        """Without --endpoint or --inventory the agent cannot be found."""
        code, _, err = run("agent-status", "STS")
        self.assertNotEqual(code, 0)
        self.assertIn("--endpoint or --inventory", err)

    def test_inject_without_endpoint_goes_through_the_eca(self) -> None:
        """Without --endpoint, inject asks the ECA the CLI is logged in to: not logged in, it says so."""
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        self.patch(os, "environ", {**os.environ, "XDG_CONFIG_HOME": home, "ECS_URL": "http://127.0.0.1:9"})
        code, _, err = run("inject", "STS", "error")
        self.assertEqual(code, EXIT_AUTH)
        self.assertIn("not logged in to http://127.0.0.1:9", err)
        self.assertIn("ecs login", err)

    def test_endpoint_with_a_mangled_key(self) -> None:
        """An endpoint whose server key is not one is named before anything is sent."""
        code, _, err = run("inject", "STS", "error", "--endpoint", "tcp://127.0.0.1:1#curve=abc")
        self.assertNotEqual(code, 0)
        self.assertIn("--endpoint", err)
        self.assertIn("64 hex digits", err)

    def test_unknown_what(self) -> None:
        """Only error, resolved and detector-error can be injected."""
        parser = build_parser()
        with redirect_stderr(io.StringIO()):
            self.assertRaises(SystemExit, parser.parse_args, ["inject", "STS", "explode"])


class RequestAgentTests(TestCase):
    """The part of `ecs inject` that talks to the agent, on the running reactor."""

    async def test_unreachable_agent_fails(self) -> None:
        """An agent that does not answer: exit code 1 with the reason, after the timeout."""
        state = Path(self.mktemp())
        run("keys", "init", "--dir", str(state / "keys"))
        args = build_parser().parse_args(
            ["inject", "STS", "error", "--endpoint", "tcp://127.0.0.1:9", "--state-dir", str(state), "--timeout", "0.3"]
        )
        err = io.StringIO()
        with redirect_stderr(err):
            code = await request_agent(reactor, args, "inject", {"what": "error"})
        self.assertEqual(code, 1)
        self.assertIn("timeout", err.getvalue())
        self.assertIn("unreachable", err.getvalue())


class SequenceCheckTests(SynchronousTestCase):
    """`ecs fsm check` also checks partition sequences."""

    def test_bad_sequence(self) -> None:
        """A sequence naming an unknown global system: exit 1, the key path named."""
        bad = Path(self.mktemp())
        bad.write_text(
            "name: p\nidle: Idle\nstages:\n"
            "  - {name: A, systems: [NOPE], configuring: C_A, active: A_Active, timeout: 5}\n"
            "  - {name: D, systems: [detectors], configuring: C_D, active: D_Active, timeout: 5}\n"
        )
        code, _, err = run("fsm", "check", str(bad))
        self.assertEqual(code, 1)
        self.assertIn("stages[0].systems[0]", err)
        self.assertIn("NOPE", err)
