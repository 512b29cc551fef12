# -*- test-case-name: tests.test_commands -*-
"""
The one command table (L{ecs.client.table}) and its two front ends: the
C{ecs} command line (over HTTP, L{ecs.client.api}) and the SSH shell
(against the control center, L{ecs.shell.commands}).

  - the table: both front ends offer the same commands and actions, with
    generated help that lists them, and say what is left out and why;
  - the command line: every command sends the request of the web route
    that serves it (matched against the ECA's own Klein routes, without a
    network), with the right body;
  - the shell: the management commands, C{--json}, C{--wait}, C{watch}
    and C{logs --follow} against L{tests.fake_control.FakeControlCenter}
    and a L{Clock}.

Longer than most test modules: the three parts test one table from its
two sides, and belong together.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.cli import build_parser
from ecs.client.api import HttpApi
from ecs.client.commands import ROLES, CommandError, Run, run_now
from ecs.client.table import COMMANDS, NOT_IN_SHELL
from ecs.control import User
from ecs.shell import commands as shell_commands
from ecs.shell.commands import CommandInterpreter, Outcome
from tests.fake_control import FakeControlCenter

LOCAL_ONLY = {"login", "logout", "fsm", "keys", "inject", "agent-status", "user", "db"}
SHELL_ONLY = {"whoami", "help", "exit", "python"}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


class TableTests(SynchronousTestCase):
    """The command line and the shell offer the same commands, from one table."""

    def test_same_commands_and_actions(self) -> None:
        """Every CLI command has a shell counterpart with the same actions, and vice versa."""
        cli = _subcommands(build_parser())
        shell = {name: parser for name, (parser, _) in shell_commands._PARSERS.items()}
        table = {c.name for c in COMMANDS}
        self.assertEqual(set(cli) - LOCAL_ONLY, table)
        self.assertEqual(set(shell) - SHELL_ONLY, table)
        for command in COMMANDS:
            expected = set() if command.simple else {a.name for a in command.actions}
            self.assertEqual(set(_subcommands(cli[command.name])), expected, command.name)
            self.assertEqual(set(_subcommands(shell[command.name])), expected, command.name)

    def test_left_out_of_the_shell_is_explained(self) -> None:
        """What the shell lacks is a CLI command, named in the shell's help with the reason."""
        named = {n for names in NOT_IN_SHELL for n in names.split(", ")}
        self.assertEqual(named, LOCAL_ONLY)
        outcome, out, _ = ShellTests.line(FakeControlCenter(), Clock(), "help")
        self.assertEqual(outcome.code, 0)
        for command in COMMANDS:
            self.assertIn(f"  {command.name} ", out)
        for names, why in NOT_IN_SHELL.items():
            self.assertIn(f"{names}: {why}", out)
        outcome, out, _ = ShellTests.line(FakeControlCenter(), Clock(), "help configs set")
        self.assertEqual(outcome.code, 0)
        self.assertIn("--params", out)
        self.assertEqual(ShellTests.line(FakeControlCenter(), Clock(), "help configs nope")[0].code, 2)
        outcome, _, err = ShellTests.line(FakeControlCenter(), Clock(), "login")
        self.assertEqual(outcome.code, 2)
        self.assertIn("SSH key", err)

    def test_cli_help_lists_the_table(self) -> None:
        """ecs --help lists every command of the table with its help line; actions are listed per command."""
        text = build_parser().format_help()
        for command in COMMANDS:
            self.assertIn(command.name, text)
        configs = _subcommands(build_parser())["configs"].format_help()
        for action in ("list", "show", "diff", "set", "delete"):
            self.assertIn(action, configs)

    def test_declarations(self) -> None:
        """Every action names a known role, has help, and a coroutine body."""
        for command in COMMANDS:
            self.assertTrue(command.help)
            if command.default is not None:
                self.assertEqual(command.action(None).name, command.default)
            for action in command.actions:
                self.assertIn(action.role, ROLES, (command.name, action.name))
                self.assertTrue(action.help)

    def test_same_parse_in_both(self) -> None:
        """A line means the same to both front ends (same action, same arguments)."""
        lines = [
            "configure demo --tag demo --auto",
            "logs demo --level error --limit 5",
            "agents",
            "detectors move TOF --to demo --force",
            "configs diff c 1 2",
            "users add bob --roles operator,viewer",
            "tags set t a b",
            "agents place detector:X --host h --launcher local --option k=v",
        ]
        cli = build_parser()
        for line in lines:
            words = line.split()
            a = cli.parse_args(words)
            b = shell_commands._PARSERS[words[0]][0].parse_args(words[1:])
            self.assertIs(a.spec, b.spec, line)
            shared = {k for k in vars(b) if not k.startswith("api_")}
            self.assertEqual({k: getattr(a, k) for k in shared}, {k: getattr(b, k) for k in shared}, line)


# -- the command line over HTTP: requests checked against the web routes --------------------


class RecordingClient:
    """A L{ecs.client.http.Client} stand-in: records each request and answers from C{answers} (by route)."""

    def __init__(self, answers: Mapping[str, Any] | None = None) -> None:
        import ecs.web.api  # noqa: F401  (adds the admin routes to WebAPI.app)
        from ecs.web.routes import WebAPI

        self.routes = WebAPI.app.url_map.bind("localhost")
        self.answers = dict(answers or {})
        self.sent: list[tuple[str, str, dict[str, Any], Any, dict[str, Any]]] = []

    def call(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        # Twisted unquotes each path segment before Klein matches it.
        unquoted = "/".join(urllib.parse.unquote(part) for part in path.split("/"))
        endpoint, values = self.routes.match(unquoted, method=method)
        query_sent = {k: v for k, v in (query or {}).items() if v is not None}
        self.sent.append((method, str(endpoint), dict(values), body, query_sent))
        answer = self.answers.get(endpoint, {})
        return answer(values, query or {}) if callable(answer) else answer

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, None, query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


class Collected:
    """A printer (and shell output) that keeps what was written."""

    def __init__(self) -> None:
        self.text = ""
        self.data: list[Any] = []
        self.notes = ""

    def result(self, text: str, data: Any) -> None:
        self.text += text + "\n"
        self.data.append(data)

    def note(self, text: str) -> None:
        self.notes += text


class CliRequests(SynchronousTestCase):
    """Base of tests of the requests a command line sends (a recording client; the clock at L{NOW})."""

    NOW = 1_800_000_000.0

    def cli(self, line: list[str], answers: dict[str, Any] | None = None) -> tuple[RecordingClient, Collected]:
        """Run C{ecs LINE} against a recording client answering C{answers}; it must succeed."""
        client = RecordingClient(answers)
        printer = Collected()
        args = build_parser().parse_args(line)
        code = run_now(args.spec.run(Run(HttpApi(client), args, printer, now=lambda: self.NOW)))  # type: ignore[arg-type]
        self.assertEqual(code, 0, line)
        return client, printer


def _versions(values: dict[str, Any], query: Mapping[str, Any]) -> dict[str, Any]:
    version = query.get("version") or 3
    return {
        "id": values["cid"],
        "system": "STS",
        "version": version,
        "versions": [1, 2, 3],
        "parameters": {"gain": version, "mode": "x"},
    }


class HttpCommandTests(SynchronousTestCase):
    """Each command sends the request of the web route that serves it."""

    def cli(
        self, line: str, answers: Mapping[str, Any] | None = None, **run: Any
    ) -> tuple[RecordingClient, Collected, int]:
        client = RecordingClient(answers)
        printer = Collected()
        args = build_parser().parse_args(line.split())
        code = run_now(args.spec.run(Run(HttpApi(client), args, printer, **run)))  # type: ignore[arg-type]  # the stand-in
        return client, printer, code

    def sent(
        self, line: str, answers: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str, dict[str, Any], Any, dict[str, Any]]]:
        client, _, code = self.cli(line, answers)
        self.assertEqual(code, 0, line)
        return client.sent

    def test_management_routes(self) -> None:
        """partitions, detectors, tags, users, agents and control: route, values and body of each request."""
        expected: dict[str, tuple[str, str, dict[str, Any], Any, dict[str, Any]]] = {
            "partitions create p2": ("POST", "create_partition", {}, {"id": "p2"}, {}),
            "partitions delete p2 --force": ("DELETE", "delete_partition", {"pid": "p2"}, None, {"force": 1}),
            "detectors create X sts": ("POST", "create_detector", {}, {"id": "X", "type": "sts"}, {}),
            "detectors delete X": ("DELETE", "delete_detector", {"did": "X"}, None, {}),
            "detectors move X --to p2": ("POST", "move_detector", {"did": "X"}, {"to": "p2", "force": False}, {}),
            "detectors move X --unassign --force": (
                "POST",
                "move_detector",
                {"did": "X"},
                {"to": None, "force": True},
                {},
            ),
            "configs": ("GET", "configs", {}, None, {}),
            "configs list --system STS": ("GET", "configs", {}, None, {"system": "STS"}),
            "configs show c1 --version 2": ("GET", "config", {"cid": "c1"}, None, {"version": 2}),
            "configs delete c1": ("DELETE", "delete_config", {"cid": "c1"}, None, {}),
            "tags list --partition demo": ("GET", "tags", {}, None, {"partition": "demo"}),
            "tags show t1": ("GET", "tag", {"name": "t1"}, None, {}),
            "tags set t1 a b": ("PUT", "save_tag", {"name": "t1"}, {"configs": ["a", "b"]}, {}),
            "tags delete t1": ("DELETE", "delete_tag", {"name": "t1"}, None, {}),
            "users": ("GET", "users", {}, None, {}),
            "users roles bob operator,expert": (
                "PUT",
                "update_user",
                {"name": "bob"},
                {"roles": ["operator", "expert"]},
                {},
            ),
            "users delete bob": ("DELETE", "delete_user", {"name": "bob"}, None, {}),
            "agents show pca:demo": ("GET", "agent_get", {"agent": "pca:demo"}, None, {}),
            "agents place detector:X --host h1 --launcher ssh --option user=daq --no-autostart": (
                "PUT",
                "agent_place",
                {"agent": "detector:X"},
                {"host": "h1", "launcher": "ssh", "options": {"user": "daq"}, "autostart": False},
                {},
            ),
            "agents unplace detector:X": ("DELETE", "agent_unplace", {"agent": "detector:X"}, None, {}),
            "agents restart pca:demo": ("POST", "agent_command", {"agent": "pca:demo", "command": "restart"}, None, {}),
            "agents output pca:demo --lines 7": ("GET", "agent_output", {"agent": "pca:demo"}, None, {"lines": 7}),
            "control take ecs": ("POST", "take_ecs_control", {}, None, {}),
            "control release ecs": ("DELETE", "release_ecs_control", {}, None, {}),
        }
        for line, request in expected.items():
            self.assertEqual(self.sent(line)[-1], request, line)

    def test_partition_commands(self) -> None:
        """status, control, configure, reset, logs and runs keep their routes and bodies."""
        self.assertEqual(self.sent("control take demo --force")[-1][:2], ("POST", "take_control"))
        self.assertEqual(self.sent("control take demo --force")[-1][4], {"force": 1})
        self.assertEqual(
            self.sent("configure demo --config a --config b")[-1],
            ("POST", "command", {"pid": "demo", "command": "configure"}, {"auto": False, "configs": ["a", "b"]}, {}),
        )
        self.assertEqual(self.sent("reset demo STS")[-1][3], {"system": "STS"})
        self.assertEqual(
            self.sent("logs --partition demo --level warn --limit 3")[-1],
            ("GET", "logs", {}, None, {"partition": "demo", "level": "warn", "limit": 3}),
        )
        self.assertEqual(self.sent("runs demo")[-1], ("GET", "runs", {}, None, {"partition": "demo", "limit": 100}))

    def test_users_add_password(self) -> None:
        """users add reads the password from the front end, or makes one up and shows it once."""
        client, printer, _ = self.cli("users add bob --roles operator", read_password=lambda prompt: "s3cret-pass")
        self.assertEqual(client.sent[-1][3], {"username": "bob", "password": "s3cret-pass", "roles": ["operator"]})
        self.assertNotIn("s3cret-pass", printer.text)
        client, printer, _ = self.cli("users passwd bob --generate")
        password = client.sent[-1][3]["password"]
        self.assertGreaterEqual(len(password), 12)
        self.assertIn(f"password: {password}", printer.text)
        with self.assertRaises(CommandError) as caught:
            self.cli("users add bob --roles operator")  # no way to read one: say how
        self.assertEqual(caught.exception.exit_code, 2)
        self.assertIn("--generate", caught.exception.message)

    def test_configs_diff(self) -> None:
        """configs diff: the last change by default, or two given versions; the changed keys only."""
        client, printer, _ = self.cli("configs diff c1", {"config": _versions})
        self.assertEqual([s[4] for s in client.sent], [{}, {"version": 2}])
        self.assertIn("- gain: 2\n+ gain: 3\n", printer.text)
        self.assertNotIn("mode", printer.text)
        self.assertEqual(printer.data[-1]["changes"], [{"key": "gain", "from": "2", "to": "3"}])
        client, printer, _ = self.cli("configs diff c1 1 2", {"config": _versions})
        self.assertIn("- gain: 1\n+ gain: 2\n", printer.text)

    def test_configs_set_confirms(self) -> None:
        """configs set shows what changes and saves only when confirmed (or --yes); an unchanged file saves nothing."""
        asked: list[str] = []

        def no(question: str) -> bool:
            asked.append(question)
            return False

        files = {
            "new.yaml": "gain: 5\nmode: x\n",
            "same.json": '{"system": "STS", "parameters": {"gain": 3, "mode": "x"}}',
        }
        with self.assertRaises(CommandError) as caught:
            self.cli("configs set c1 --file new.yaml", {"config": _versions}, confirm=no, read_file=files.__getitem__)
        self.assertEqual(caught.exception.exit_code, 1)
        self.assertEqual(len(asked), 1)
        client, printer, code = self.cli(
            "configs set c1 --file new.yaml", {"config": _versions}, confirm=lambda q: True, read_file=files.__getitem__
        )
        self.assertIn("- gain: 3\n+ gain: 5", printer.notes)
        self.assertEqual(
            client.sent[-1][:4],
            ("PUT", "save_config", {"cid": "c1"}, {"system": "STS", "parameters": {"gain": 5, "mode": "x"}}),
        )
        client, printer, code = self.cli(
            "configs set c1 --file same.json", {"config": _versions}, read_file=files.__getitem__
        )
        self.assertEqual((code, [s[1] for s in client.sent]), (0, ["config"]))
        self.assertIn("no change", printer.text)
        with self.assertRaises(CommandError) as caught:  # no terminal to ask: --yes is needed
            self.cli('configs set c1 --params {"gain":9}', {"config": _versions})
        self.assertIn("--yes", caught.exception.message)
        client, _, code = self.cli('configs set c1 --params {"gain":9} --yes', {"config": _versions})
        self.assertEqual(client.sent[-1][3], {"system": "STS", "parameters": {"gain": 9}})

    def test_configs_set_new_needs_system(self) -> None:
        """A new configuration needs --system; a 404 is how the API says it is new."""
        from ecs.client.http import ClientError

        def missing(values: dict[str, Any], query: Mapping[str, Any]) -> Any:
            raise ClientError(1, "no configuration", 404, {"error": "not_found"})

        with self.assertRaises(CommandError) as caught:
            self.cli("configs set c9 --params {} --yes", {"config": missing})
        self.assertEqual(caught.exception.exit_code, 2)
        self.assertIn("--system", caught.exception.message)
        client, _, _ = self.cli("configs set c9 --params {} --system STS --yes", {"config": missing})
        self.assertEqual(client.sent[-1][3], {"system": "STS", "parameters": {}})

    def test_bad_input_named(self) -> None:
        """Bad names, roles, options and documents are refused before any request, naming what was wrong."""
        for argv in (
            ["tags", "show", "a;b"],
            ["users", "add", "bob", "--roles", "boss"],
            ["detectors", "move", "X"],
            ["detectors", "move", "X", "--to", "p", "--unassign"],
            ["configs", "set", "c1"],
        ):
            with self.assertRaises(SystemExit, msg=argv), _quiet():
                build_parser().parse_args(argv)
        for line, word in (
            ("agents place pca:x --host h --launcher local --option novalue", "--option"),
            ("configs set c1 --params [1] --yes", "mapping"),
            ("partitions create ecs", "reserved"),
        ):
            with self.assertRaises(CommandError, msg=line) as caught:
                self.cli(line)
            self.assertIn(word, caught.exception.message)


class _quiet:
    """Silence argparse's usage text on stderr."""

    def __enter__(self) -> None:
        import contextlib
        import io

        self._redirect = contextlib.redirect_stderr(io.StringIO())
        self._redirect.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._redirect.__exit__(*exc)


# -- the shell ---------------------------------------------------------------------------------


class ShellOutput:
    def __init__(self) -> None:
        self.stdout = ""
        self.stderr = ""

    def out(self, text: str) -> None:
        self.stdout += text

    def err(self, text: str) -> None:
        self.stderr += text


class OperationCenter(FakeControlCenter):
    """The fake center whose commands start an operation (as a PCA's do): the record comes by event."""

    def command(
        self, user: User, partition_id: str, command: str, body: dict[str, Any]
    ) -> defer.Deferred[dict[str, Any]]:
        self.commands.append((user.name, partition_id, command, body))
        return defer.succeed(
            {"state": "Configuring_TFC", "operation": command, "level": 0, "stages": 2, "summary": "Configuring"}
        )

    def record(self, state: str, level: int, operation: str | None = None, summary: str = "Active") -> None:
        self.emit(
            "state",
            {
                "key": "partition",
                "value": {"state": state, "operation": operation, "level": level, "stages": 2, "summary": summary},
            },
            "demo",
        )


class ShellTests(SynchronousTestCase):
    """The shared commands in the shell, against the fake center."""

    @staticmethod
    def interpreter(center: FakeControlCenter, clock: Clock, user: str = "expert") -> CommandInterpreter:
        async def current() -> User | None:
            return User(user, center.roles[user])

        return CommandInterpreter(center, current, clock)

    @staticmethod
    def line(center: FakeControlCenter, clock: Clock, line: str, user: str = "expert") -> tuple[Outcome, str, str]:
        output = ShellOutput()
        d = ShellTests.interpreter(center, clock, user).execute(line, output)
        result: list[Outcome] = []
        d.addCallback(result.append)
        assert result, f"{line!r} did not finish"
        return result[0], output.stdout, output.stderr

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.clock = Clock()

    def run_line(self, line: str, user: str = "expert") -> tuple[int, str, str]:
        outcome, out, err = self.line(self.center, self.clock, line, user)
        self.assertEqual(self.clock.getDelayedCalls(), [], "a timer was left behind")
        return outcome.code, out, err

    def test_partitions_and_detectors(self) -> None:
        """Management needs the ECS control (an expert's); then partitions and detectors change in the center."""
        code, _, err = self.run_line("partitions create p2")
        self.assertEqual(code, 1)
        self.assertIn("take the ECS control first", err)
        self.assertEqual(self.run_line("control take ecs", user="operator")[0], 3)
        self.assertEqual(self.run_line("control take ecs")[:2], (0, "you control the ECS (management)\n"))
        self.assertEqual(self.run_line("partitions create p2")[0], 0)
        self.assertIn("p2", self.center.partitions_)
        self.assertEqual(self.run_line("detectors move TOF --to p2")[0], 0)
        self.assertEqual(self.center.detectors["TOF"]["partition"], "p2")
        code, out, _ = self.run_line("detectors", user="viewer")
        self.assertRegex(out, r"TOF +tof +p2")
        self.assertEqual(self.run_line("detectors create RICH1 rich")[0], 0)
        code, _, err = self.run_line("detectors create R2 nonsense")
        self.assertEqual(code, 1)
        self.assertIn("unknown detector type nonsense", err)
        self.assertEqual(self.run_line("detectors delete RICH1")[0], 0)
        self.assertEqual(self.run_line("partitions delete p2")[0], 0)
        self.assertIsNone(self.center.detectors["TOF"]["partition"])
        self.assertEqual(self.run_line("control release ecs")[0], 0)
        self.assertNotIn("ecs", self.center.holders)

    def test_configs_and_tags(self) -> None:
        """configs show/set (with --yes after seeing the diff)/diff, tags set/show/delete, through the center."""
        code, out, _ = self.run_line("configs show sts-default", user="viewer")
        self.assertIn("Configuration sts-default of STS, version 1", out)
        code, out, err = self.run_line('configs set sts-default --params \'{"mode": "fast"}\'')
        self.assertEqual(code, 1)
        self.assertIn('- mode: "default"\n+ mode: "fast"', err)
        self.assertIn("not saved (add --yes to save)", err)
        self.assertEqual(len(self.center.config_versions["sts-default"]), 1)
        code, out, _ = self.run_line('configs set sts-default --params \'{"mode": "fast"}\' --yes')
        self.assertEqual((code, out), (0, "saved sts-default version 2\n"))
        code, out, _ = self.run_line("configs diff sts-default", user="viewer")
        self.assertIn('- mode: "default"\n+ mode: "fast"\n', out)
        code, _, err = self.run_line("configs set sts-default --file /etc/passwd --yes")
        self.assertEqual(code, 2)
        self.assertIn("not available in the shell", err)
        self.assertEqual(self.run_line("configs set sts-default --params '{}' --yes", user="operator")[0], 3)
        self.assertEqual(self.run_line("tags set t2 sts-default qa-default")[0], 0)
        code, out, _ = self.run_line("tags show t2", user="viewer")
        self.assertRegex(out, r"STS +sts-default")
        code, out, _ = self.run_line("tags --partition demo", user="viewer")
        self.assertRegex(out, r"t2 .* missing ")
        self.assertEqual(self.run_line("tags delete t2")[0], 0)
        self.assertNotIn("t2", self.center.tags_)

    def test_users(self) -> None:
        """users is for admins; the shell cannot read a password, so it makes one up and shows it once."""
        code, _, err = self.run_line("users")
        self.assertEqual(code, 3)
        self.assertIn("users needs the admin role", err)
        code, _, err = self.run_line("users add bob --roles operator", user="admin")
        self.assertEqual(code, 2)
        self.assertIn("--generate", err)
        code, out, _ = self.run_line("users add bob --roles operator,viewer --generate", user="admin")
        self.assertEqual(code, 0)
        self.assertEqual(out.splitlines()[-1], f"password: {self.center.passwords['bob']}")
        self.assertEqual(self.center.roles["bob"], ("operator", "viewer"))
        self.assertEqual(self.run_line("users roles bob expert", user="admin")[0], 0)
        self.assertEqual(self.center.roles["bob"], ("expert",))
        code, out, _ = self.run_line("users --json", user="admin")
        self.assertIn({"name": "bob", "roles": ["expert"]}, json.loads(out))
        self.assertEqual(self.run_line("users delete bob", user="admin")[0], 0)
        self.assertNotIn("bob", self.center.passwords)

    def test_agents(self) -> None:
        """agents lists for viewers; place/unplace for admins; start/stop/output for experts."""
        code, out, _ = self.run_line("agents", user="viewer")
        self.assertRegex(out, r"pca:demo +pca +localhost +local")
        self.assertEqual(self.run_line("agents place detector:X --host h --launcher local")[0], 3)
        self.assertEqual(
            self.run_line("agents place detector:X --host h --launcher local --option a=b", user="admin")[0], 0
        )
        self.assertEqual(self.center.agents_["detector:X"]["options"], {"a": "b"})
        code, out, _ = self.run_line("agents start detector:X")
        self.assertEqual(code, 0)
        self.assertIn("running (pid 4242)", out)
        code, out, _ = self.run_line("agents output detector:X --lines 3")
        self.assertEqual(out, "line 1\nline 2\nline 3\n")
        code, _, err = self.run_line("agents unplace detector:X", user="admin")
        self.assertEqual(code, 1)
        self.assertIn("stop it first", err)
        self.assertEqual(self.run_line("agents stop detector:X")[0], 0)
        self.assertEqual(self.run_line("agents unplace detector:X", user="admin")[0], 0)
        self.assertEqual(self.run_line("agents start detector:X")[0], 1)

    def test_json(self) -> None:
        """--json prints the center's answer as JSON, as ecs --json does."""
        _, out, _ = self.run_line("status demo --json", user="viewer")
        self.assertEqual(json.loads(out)["id"], "demo")

    def start(
        self, center: FakeControlCenter, line: str, user: str = "operator"
    ) -> tuple[defer.Deferred[Outcome], ShellOutput]:
        output = ShellOutput()
        return self.interpreter(center, self.clock, user).execute(line, output), output

    def test_wait(self) -> None:
        """configure --auto --wait follows the partition's records to the goal; notes each state on stderr."""
        center = OperationCenter()
        center.holders["demo"] = "operator"
        d, output = self.start(center, "configure demo --tag demo --auto --wait")
        self.assertNoResult(d)
        center.record("Configuring_TFC", 0, "configure", "Configuring")
        center.record("Configuring_QA", 1, "configure", "Configuring")
        self.clock.advance(0)
        center.record("QA_Active", 2)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).code, 0)
        self.assertIn("demo: QA_Active", output.stdout)
        self.assertIn("demo: Configuring_QA\n", output.stderr)
        self.assertEqual(center.subscribers, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_wait_ends_elsewhere_or_times_out(self) -> None:
        """--wait exits 1 naming where it ended, 5 after --timeout, 130 on Ctrl-C."""
        center = OperationCenter()
        center.holders["demo"] = "operator"
        d, output = self.start(center, "start demo --wait")
        center.record("Starting", 1, "start", "Starting")
        center.emit("log", {"level": "error", "message": "STS lost"}, "demo")
        center.record("Error", 1, None, "Error")
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).code, 1)
        self.assertIn("ended in Error", output.stderr)
        self.assertIn("STS lost", output.stderr)
        d, output = self.start(center, "start demo --wait --timeout 5")
        self.clock.advance(2)
        self.clock.advance(3)
        self.assertEqual(self.successResultOf(d).code, 5)
        self.assertIn("after 5 s", output.stderr)
        interpreter = self.interpreter(center, self.clock, "operator")
        d = interpreter.execute("start demo --wait", ShellOutput())
        interpreter.interrupt()
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).code, 130)
        self.assertEqual((center.subscribers, self.clock.getDelayedCalls()), ([], []))

    def test_watch(self) -> None:
        """watch prints a line per change until --until, or until Ctrl-C (exit 0)."""
        d, output = self.start(self.center, "watch demo --until Configured", user="viewer")
        self.assertIn("demo state Idle", output.stdout)
        self.center.emit("state", {"key": "partition", "value": {"state": "Configured", "tag": "demo"}}, "demo")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).code, 0)
        self.assertIn("demo state Configured tag demo", output.stdout)
        interpreter = self.interpreter(self.center, self.clock, "viewer")
        d = interpreter.execute("watch demo", ShellOutput())
        self.assertNoResult(d)
        interpreter.interrupt()
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).code, 0)
        d, output = self.start(self.center, "watch demo --timeout 10", user="viewer")
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(d).code, 0)
        self.assertIn("watched demo for 10 s", output.stderr)
        self.assertEqual((self.center.subscribers, self.clock.getDelayedCalls()), ([], []))

    def test_logs_follow(self) -> None:
        """logs --follow prints the stored events, then the new ones of the level asked, until --timeout."""
        d, output = self.start(self.center, "logs demo --follow --level warn --timeout 60", user="viewer")
        self.center.emit("log", {"time": 300.0, "level": "info", "source": "x", "message": "chatter"}, "demo")
        self.center.emit("log", {"time": 301.0, "level": "error", "source": "STS", "message": "fell over"}, "demo")
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertNoResult(d)
        self.clock.advance(60)
        self.assertEqual(self.successResultOf(d).code, 0)
        self.assertIn("fell over", output.stdout)
        self.assertNotIn("chatter", output.stdout)
        self.assertEqual(self.clock.getDelayedCalls(), [])
