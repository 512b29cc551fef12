"""
Tests for the ECA's SSH admin shell: L{ecs.shell.commands} with a fake
center and a L{Clock}; L{ecs.shell.session} with a fake channel; and the
whole shell in an ECA (L{tests.eca_harness}) driven by the real OpenSSH
client C{/usr/bin/ssh} as a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from ecs.control import User
from ecs.shell.commands import CommandInterpreter, Outcome
from ecs.shell.server import AdminShell, host_key_path, listen_shell, load_host_key
from ecs.shell.session import AdminManhole, CommandTerminal, ShellSession
from tests.eca_harness import ECAHarness
from tests.fake_control import FakeControlCenter
from tests.procs import Collected as ProcessOutput


class Collected:
    """An L{Output} that keeps what was written."""

    def __init__(self) -> None:
        self.stdout = ""
        self.stderr = ""

    def out(self, text: str) -> None:
        self.stdout += text

    def err(self, text: str) -> None:
        self.stderr += text


class InterpreterTests(SynchronousTestCase):
    """The command interpreter over the fake center."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.clock = Clock()
        self.users: dict[str, User | None] = {name: User(name, roles) for name, roles in self.center.roles.items()}
        self.evaluated: list[tuple[str, str]] = []

    def run_line(self, line: str, user: str = "operator", **kwargs: Any) -> tuple[Outcome, Collected]:
        """Run C{line} as C{user}; it must finish synchronously (the fake center is)."""

        async def current() -> User | None:
            return self.users[user]

        async def evaluate(who: User, source: str) -> str:
            self.evaluated.append((who.name, source))
            return "2\n"

        kwargs.setdefault("evaluate", evaluate)
        interpreter = CommandInterpreter(self.center, current, self.clock, **kwargs)
        output = Collected()
        outcome = self.successResultOf(interpreter.execute(line, output))
        self.assertEqual(self.clock.getDelayedCalls(), [], "the timeout was not cancelled")
        return outcome, output

    def test_status(self) -> None:
        """status lists partitions; status P shows one with its systems; a leading ecs is ignored."""
        outcome, output = self.run_line("status", user="viewer")
        self.assertEqual(outcome, Outcome(0))
        self.assertIn("demo", output.stdout)
        self.assertIn("Idle", output.stdout)
        outcome, output = self.run_line("ecs status demo", user="viewer")
        self.assertEqual(outcome.code, 0)
        self.assertIn("STS", output.stdout)
        self.assertIn("MVD", output.stdout)
        outcome, output = self.run_line("status nowhere")
        self.assertEqual(outcome.code, 1)
        self.assertIn("nowhere", output.stderr)

    def test_usage_errors_name_the_argument(self) -> None:
        """Bad lines exit 2 with a message naming what was wrong."""
        cases = {
            "frobnicate demo": "frobnicate",
            "configure demo": "--tag",
            "configure demo --tag": "--tag",
            "control take 'a;b'": "a;b",
            "control seize demo": "seize",
            "start": "partition",
            "start demo extra": "extra",
            "reset demo": "system",
            "logs --limit lots": "--limit",
            "logs --limit 0": "--limit",
            "logs --level loud": "--level",
            "logs --since yesterday": "--since",
            "status 'unclosed": "closing quotation",
            "help nothing": "nothing",
            "exit now": "exit",
            "status " + "x" * 5000: "longer than",
        }
        for line, word in cases.items():
            outcome, output = self.run_line(line)
            self.assertEqual(outcome.code, 2, line)
            self.assertIn(word, output.stderr, line)
            self.assertEqual(output.stdout, "", line)
        self.assertEqual(self.center.commands, [])

    def test_partition_names_are_checked(self) -> None:
        """A partition id that is not a name is refused before the center is asked."""
        outcome, output = self.run_line("status '$(id)'")
        self.assertEqual(outcome.code, 2)
        self.assertIn("invalid partition id '$(id)'", output.stderr)

    def test_viewer_cannot_start(self) -> None:
        """A viewer is forbidden (exit 3), with a message naming the role needed."""
        outcome, output = self.run_line("start demo", user="viewer")
        self.assertEqual(outcome.code, 3)
        self.assertIn("operator role", output.stderr)
        self.assertIn("you have: viewer", output.stderr)
        outcome, output = self.run_line("control take demo", user="viewer")
        self.assertEqual(outcome.code, 3)

    def test_operator_flow(self) -> None:
        """Take control, configure with a tag, start, stop, release: each through the center."""
        self.assertEqual(self.run_line("start demo")[0].code, 1)  # not holding control
        outcome, output = self.run_line("control take demo")
        self.assertEqual(outcome.code, 0, output.stderr)
        self.assertIn("you control demo", output.stdout)
        outcome, output = self.run_line("configure demo --tag demo --auto")
        self.assertEqual(outcome.code, 0, output.stderr)
        self.assertIn("demo: configure accepted; Configured", output.stdout)
        self.assertEqual(self.run_line("start demo")[0].code, 0)
        self.assertEqual(self.run_line("stop demo")[0].code, 0)
        self.assertEqual(self.run_line("reset demo STS")[0].code, 0)
        self.assertEqual(
            [(c[2], c[3]) for c in self.center.commands],
            [("configure", {"tag": "demo", "auto": True}), ("start", {}), ("stop", {}), ("reset", {"system": "STS"})],
        )
        outcome, output = self.run_line("control release demo")
        self.assertEqual(outcome.code, 0)
        self.assertNotIn("demo", self.center.holders)

    def test_refusals(self) -> None:
        """Refusals of the center exit 1 with its reason; another holder is named."""
        self.run_line("control take demo", user="operator2")
        outcome, output = self.run_line("control take demo")
        self.assertEqual(outcome.code, 1)
        self.assertIn("operator2", output.stderr)
        outcome, output = self.run_line("control take ecs")  # the ECS-wide control is for experts
        self.assertEqual(outcome.code, 3)
        self.assertIn("expert role", output.stderr)
        outcome, output = self.run_line("status ecs")
        self.assertEqual(outcome.code, 1)
        self.assertIn("no partition ecs", output.stderr)
        outcome, output = self.run_line("control take demo --force", user="operator")
        self.assertEqual(outcome.code, 3)
        self.assertIn("admin role", output.stderr)
        self.assertEqual(self.run_line("control take demo --force", user="admin")[0].code, 0)
        self.assertEqual(self.center.holders["demo"], "admin")

    def test_logs_and_runs(self) -> None:
        """logs and runs show the center's records, filtered."""
        outcome, output = self.run_line("logs demo --level error", user="viewer")
        self.assertEqual(outcome.code, 0)
        self.assertIn("STS failed", output.stdout)
        self.assertNotIn("configured", output.stdout)
        self.clock.advance(250)
        outcome, output = self.run_line("logs --since 100s", user="viewer")
        self.assertIn("STS failed", output.stdout)
        self.assertNotIn("configured", output.stdout)
        outcome, output = self.run_line("runs demo --limit 5", user="viewer")
        self.assertEqual(outcome.code, 0)
        self.assertIn("stopped", output.stdout)

    def test_help_whoami_exit(self) -> None:
        """help lists every command, help C shows its usage; whoami; exit ends the session."""
        _, output = self.run_line("help")
        for command in ("status", "control", "configure", "start", "logs", "runs", "whoami", "python", "exit"):
            self.assertIn(command, output.stdout)
        self.assertIn("--tag", self.run_line("help configure")[1].stdout)
        _, output = self.run_line("whoami", info="from test")
        self.assertEqual(output.stdout, "operator (roles: operator); from test\n")
        self.assertEqual(self.run_line("exit")[0], Outcome(0, exit=True))
        self.assertEqual(self.run_line("quit")[0], Outcome(0, exit=True))
        self.assertEqual(self.run_line("   ")[0], Outcome(0))

    def test_python_for_admins_only(self) -> None:
        """python evaluates for admins (source as typed), is forbidden to others, needs a terminal without source."""
        outcome, output = self.run_line("python print('a  b')", user="admin")
        self.assertEqual((outcome.code, output.stdout), (0, "2\n"))
        self.assertEqual(self.evaluated, [("admin", "print('a  b')")])
        outcome, output = self.run_line("python 1+1", user="expert")
        self.assertEqual(outcome.code, 3)
        self.assertIn("admin role", output.stderr)
        self.assertEqual(self.run_line("python", user="admin")[0].code, 2)
        self.assertEqual(self.run_line("python", user="admin", interactive=True)[0], Outcome(0, python=True))
        self.assertEqual(self.run_line("python", user="viewer", interactive=True)[0].code, 3)
        self.assertEqual(self.run_line("python 1", user="admin", evaluate=None)[0].code, 1)

    def test_deleted_user(self) -> None:
        """A user deleted since login is told so, and the session ends."""
        self.users["operator"] = None
        outcome, output = self.run_line("status")
        self.assertEqual(outcome, Outcome(3, exit=True))
        self.assertIn("no longer exists", output.stderr)

    def test_timeout(self) -> None:
        """A command that does not finish in time exits 5; its late output is dropped."""
        pending: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.center.take_control = lambda user, scope, force=False: pending  # type: ignore[method-assign]

        async def current() -> User | None:
            return User("operator", ("operator",))

        interpreter = CommandInterpreter(self.center, current, self.clock, timeout=10)
        output = Collected()
        d = interpreter.execute("control take demo", output)
        self.assertNoResult(d)
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(d).code, 5)
        self.assertIn("no answer within 10 s", output.stderr)
        pending.callback({"scope": "demo", "holder": "operator"})
        self.assertEqual(output.stdout, "")

    def test_exception_in_command(self) -> None:
        """A bug in a command prints an error and is logged; the interpreter goes on."""

        def broken() -> Any:
            raise RuntimeError("boom")

        self.center.partitions = broken  # type: ignore[method-assign]
        outcome, output = self.run_line("status")
        self.assertEqual(outcome.code, 1)
        self.assertIn("internal error", output.stderr)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.run_line("status demo")[0].code, 0)


class FakeProto:
    """The channel side of a session (an SSHSessionProcessProtocol's part we use)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.written = b""
        self.errors = b""
        self.ended: Failure | None = None

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def write(self, data: bytes) -> None:
        self.written += data

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Failure) -> None:
        self.ended = reason

    def type(self, text: str) -> None:
        """Keystrokes from the client."""
        self.transport.write(text.encode())

    @property
    def exit_code(self) -> int | None:
        if self.ended is None:
            return None
        code: int | None = getattr(self.ended.value, "exitCode", None)
        return code


class FakeStore:
    """The store's part a session uses: audit entries and users."""

    def __init__(self) -> None:
        self.audits: list[tuple[str, str, dict[str, Any], str]] = []

    def audit(self, user: str, action: str, arguments: dict[str, Any], outcome: str) -> defer.Deferred[None]:
        self.audits.append((user, action, dict(arguments), outcome))
        return defer.succeed(None)


class FakeAvatar:
    """A logged-in user as the session sees it."""

    def __init__(self, name: str, roles: tuple[str, ...], center: FakeControlCenter) -> None:
        self.name = name
        self.roles = roles
        self.shell = type("Shell", (), {})()
        self.shell.center = center
        self.shell.store = FakeStore()
        self.shell.reactor = Clock()
        self.shell.timeout = 30.0
        self.shell.namespace = {"eca": center, "answer": 42}

    async def current(self) -> User | None:
        return User(self.name, self.roles)


class SessionTests(SynchronousTestCase):
    """L{ShellSession} with a fake channel: terminal, resize, EOF, exec, manhole."""

    def session(self, name: str = "operator", roles: tuple[str, ...] = ("operator",)) -> tuple[ShellSession, FakeProto]:
        center = FakeControlCenter()
        session = ShellSession(FakeAvatar(name, roles, center))
        return session, FakeProto()

    def test_interactive_resize_and_eof(self) -> None:
        """Commands typed run in order; a resize and stdin EOF keep the session until the lines ran."""
        session, proto = self.session()
        session.getPty(b"xterm", (24, 80, 0, 0), b"")
        session.openShell(proto)
        self.assertIn(b"ecs> ", proto.written)
        session.windowChanged((50, 132, 0, 0))
        assert session.server is not None
        terminal = session.server.terminalProtocol
        assert isinstance(terminal, CommandTerminal)
        self.assertEqual((terminal.width, terminal.height), (132, 50))
        proto.type("whoami\rstatus\n")
        session.eofReceived()
        self.assertIn(b"operator (roles: operator)", proto.written)
        self.assertIn(b"demo", proto.written)
        self.assertNotIn(b"\r\r\n", proto.written)
        self.assertEqual(proto.exit_code, 0)
        self.assertTrue(session.ended)

    def test_ctrl_c_stops_following(self) -> None:
        """Ctrl-C while watch runs ends it (exit 0) and the prompt comes back; idle, it only drops the line."""
        session, proto = self.session()
        session.openShell(proto)
        proto.type("watch demo\r")
        self.assertIn(b"demo state Idle", proto.written)
        assert session.server is not None
        terminal = session.server.terminalProtocol
        assert isinstance(terminal, CommandTerminal)
        self.assertTrue(terminal.busy)
        proto.type("\x03")
        session.avatar.shell.reactor.advance(0)
        self.assertFalse(terminal.busy)
        self.assertEqual(terminal.last_code, 0)
        self.assertEqual(session.avatar.shell.center.subscribers, [])
        self.assertTrue(proto.written.endswith(b"ecs> "))

    def test_closed_channel_stops_following(self) -> None:
        """A channel closed while watch runs (the client went away) ends the watch: no subscriber, no timer left."""
        session, proto = self.session()
        session.execCommand(proto, b"watch demo")
        center = session.avatar.shell.center
        self.assertEqual(len(center.subscribers), 1)
        session.closed()
        session.avatar.shell.reactor.advance(0)
        self.assertEqual(center.subscribers, [])
        self.assertEqual(session.avatar.shell.reactor.getDelayedCalls(), [])

    def test_exit_status_of_last_command_at_eof(self) -> None:
        """At EOF the session ends with the last command's status; exit ends it at once."""
        session, proto = self.session("viewer", ("viewer",))
        session.getPty(b"xterm", (24, 80, 0, 0), b"")
        session.openShell(proto)
        proto.type("start demo\r")
        self.assertIn(b"operator role", proto.written)
        self.assertIsNone(proto.ended)
        session.eofReceived()
        self.assertEqual(proto.exit_code, 3)
        session, proto = self.session()
        session.openShell(proto)
        proto.type("exit\r")
        self.assertEqual(proto.exit_code, 0)

    def test_ctrl_d_and_closed(self) -> None:
        """Ctrl-D on an empty line ends the session; after the channel closed nothing is written."""
        session, proto = self.session()
        session.openShell(proto)
        proto.type("\x04")
        self.assertEqual(proto.exit_code, 0)
        session, proto = self.session()
        session.openShell(proto)
        session.closed()
        before = proto.written
        proto.type("status\r")
        self.assertEqual(proto.written, before)

    def test_input_bounds(self) -> None:
        """An overlong line rings the bell instead of growing; too many queued lines are dropped."""
        from ecs.shell.commands import LINE_MAX
        from ecs.shell.session import MAX_PENDING

        session, proto = self.session()
        session.openShell(proto)
        proto.type("x" * (LINE_MAX + 10))
        assert session.server is not None
        terminal = session.server.terminalProtocol
        assert isinstance(terminal, CommandTerminal)
        self.assertEqual(len(terminal.lineBuffer), LINE_MAX)
        self.assertIn(b"\a", proto.written)
        terminal.lineBuffer = []
        terminal.busy = True  # a command still running
        proto.type("whoami\r" * (MAX_PENDING + 5))
        self.assertEqual(len(terminal.pending), MAX_PENDING)
        self.assertIn(b"line dropped", proto.written)

    def test_exec(self) -> None:
        """An exec request runs one command: stdout, stderr, exit status; EOF does not end it early."""
        session, proto = self.session()
        session.eofReceived()
        session.execCommand(proto, b"ecs status")
        self.assertIn(b"demo", proto.written)
        self.assertEqual(proto.exit_code, 0)
        session, proto = self.session()
        session.execCommand(proto, b"configure demo")
        self.assertIn(b"--tag", proto.errors)
        self.assertEqual(proto.exit_code, 2)

    def test_manhole_from_shell(self) -> None:
        """An admin's python switches to the manhole (lines audited); Ctrl-D returns to the shell."""
        session, proto = self.session("admin", ("admin",))
        session.getPty(b"xterm", (24, 80, 0, 0), b"")
        session.openShell(proto)
        proto.type("python\ranswer + 1\r")
        self.assertIsInstance(session.server.terminalProtocol, AdminManhole)  # type: ignore[union-attr]
        self.assertIn(b"43", proto.written)
        session.windowChanged((30, 90, 0, 0))
        proto.type("\x04")
        self.assertIsInstance(session.server.terminalProtocol, CommandTerminal)  # type: ignore[union-attr]
        self.assertIsNone(proto.ended)
        audits = session.shell.store.audits
        self.assertIn(("admin", "python", {"source": "answer + 1"}, "run"), audits)

    def test_exec_python(self) -> None:
        """python SOURCE in an exec request prints the value; Deferreds are waited for; errors show a traceback."""
        session, proto = self.session("admin", ("admin",))
        session.execCommand(proto, b"python answer * 2")
        self.assertEqual((proto.written, proto.exit_code), (b"84\n", 0))
        session, proto = self.session("admin", ("admin",))
        session.execCommand(proto, b"python 1/0")
        self.assertIn(b"ZeroDivisionError", proto.written)
        session, proto = self.session("admin", ("admin",))
        session.execCommand(proto, b"python __import__('twisted.internet.defer').internet.defer.succeed(7)")
        self.assertEqual(proto.written, b"7\n")


class HostKeyTests(TestCase):
    """The host key: made once, private, reused."""

    def test_made_once_and_reused(self) -> None:
        """The key file is mode 0600 in <state>/ssh, with a .pub; a second load gives the same key."""
        state = Path(self.mktemp())
        first = load_host_key(state)
        path = host_key_path(state)
        self.assertEqual(path, state / "ssh" / "host_ed25519")
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(path.with_suffix(".pub").read_text().split()[0], "ssh-ed25519")
        second = load_host_key(state)
        self.assertEqual(first.public().blob(), second.public().blob())
        path.chmod(0o644)
        load_host_key(state)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)


class ShellEndToEndTests(ECAHarness):
    """The shell in a real ECA, driven by OpenSSH's client."""

    async def setUp(self) -> None:  # type: ignore[override]
        if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
            raise SkipTest("the OpenSSH client (ssh, ssh-keygen) is not installed")
        await super().setUp()
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir(mode=0o700)
        self.keys: dict[str, Path] = {}
        for name in ("viewer", "operator", "admin", "stranger"):
            path = self.home / f"id_{name}"
            _out, err, code = await _process(
                "ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)]
            )
            self.assertEqual(code, 0, err)
            self.keys[name] = path
            if name != "stranger":
                await self.store.add_user_key(name, (self.home / f"id_{name}.pub").read_text())
        self.shell = AdminShell(self.eca, self.store, self.state_dir, reactor)
        port = await self.shell.listen("tcp:0:interface=127.0.0.1")
        self.addCleanup(self.shell.stop)
        self.port = getattr(port.getHost(), "port")  # noqa: B009  (an IPv4Address; IAddress declares no port)
        self.known_hosts = self.home / "known_hosts"
        public = self.shell.host_key.public().toString("OPENSSH").decode()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public}\n")

    async def ssh(
        self, user: str, command: str | None = None, stdin: bytes = b"", tty: bool = False, key: str | None = None
    ) -> tuple[str, str, int]:
        """Run OpenSSH's client as C{user} (with C{key}'s identity); its stdout, stderr and exit status."""
        args = ["-tt"] if tty else ["-T"]
        args += [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-i",
            str(self.keys[key or user]),
            "-p",
            str(self.port),
            f"{user}@127.0.0.1",
        ]
        if command is not None:
            args.append(command)
        out, err, code = await _process(
            "ssh", args, stdin, env={"HOME": str(self.home), "PATH": os.environ.get("PATH", "")}
        )
        return out, err, code

    async def test_exec_requests(self) -> None:
        """'status' and 'ecs status P' run with their output and exit 0; usage errors exit 2 on stderr."""
        out, err, code = await self.ssh("viewer", "status")
        self.assertEqual(code, 0, err)
        self.assertIn("demo", out)
        self.assertIn("p2", out)
        out, err, code = await self.ssh("viewer", "ecs status demo")
        self.assertEqual(code, 0, err)
        self.assertIn("STS", out)
        self.assertIn("TFC", out)
        out, err, code = await self.ssh("viewer", "configure demo")
        self.assertEqual(code, 2)
        self.assertIn("--tag", err)
        self.assertEqual(out, "")

    async def test_refused_key(self) -> None:
        """An unregistered key, or a key of another user, is refused (ssh exits 255), and audited."""
        _out, err, code = await self.ssh("stranger", "status")
        self.assertEqual(code, 255)
        self.assertIn("Permission denied", err)
        _out, _err, code = await self.ssh("admin", "status", key="operator")
        self.assertEqual(code, 255)
        entries = await self.store.audit_entries(action="ssh_login")
        self.assertTrue(any(e.user == "admin" and e.outcome.startswith("refused") for e in entries), entries)

    async def test_roles_and_commands(self) -> None:
        """A viewer cannot start (exit 3, naming the role); an operator takes control and configures (audited)."""
        _out, err, code = await self.ssh("viewer", "start demo")
        self.assertEqual(code, 3)
        self.assertIn("operator role", err)
        _out, err, code = await self.ssh("operator", "control take demo")
        self.assertEqual(code, 0, err)
        _out, err, code = await self.ssh("operator", "configure demo --tag demo --auto")
        self.assertEqual(code, 0, err)
        await self.wait_state("demo", self.sequence.top_active)
        entries = await self.store.audit_entries(user="operator")
        actions = [(e.action, e.outcome) for e in entries]
        self.assertIn(("configure", "ok"), actions)
        self.assertIn(("take_control", "ok"), actions)
        self.assertIn(("ssh_login", "ok"), actions)

    async def test_shared_commands(self) -> None:
        """The command line's commands in a real ECA: --wait follows the events, management acts, users for admins."""
        _out, err, code = await self.ssh("operator", "control take demo")
        self.assertEqual(code, 0, err)
        out, err, code = await self.ssh("operator", "configure demo --tag demo --auto --wait --timeout 60")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), f"demo: {self.sequence.top_active}")
        self.assertIn("demo: Configuring_", err)  # each state on the way, on stderr
        out, err, code = await self.ssh("operator", "abort demo --wait --json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["state"], "Idle")
        _out, err, code = await self.ssh("admin", "control take ecs")
        self.assertEqual(code, 0, err)
        _out, err, code = await self.ssh("admin", "partitions create p3")
        self.assertEqual(code, 0, err)
        out, err, code = await self.ssh("viewer", "partitions --json")
        self.assertIn("p3", [p["id"] for p in json.loads(out)])
        configs = json.loads((await self.ssh("viewer", "configs --json"))[0])
        cid = configs[0]["config_id"]
        _out, err, code = await self.ssh("admin", f"configs set {cid} --params '{{\"shell\": 1}}' --yes")
        self.assertEqual(code, 0, err)
        out, err, code = await self.ssh("viewer", f"configs diff {cid}")
        self.assertEqual(code, 0, err)
        self.assertIn("+ shell: 1", out)
        out, err, code = await self.ssh("admin", "users add bob --roles viewer --generate")
        self.assertEqual(code, 0, err)
        self.assertIn("password: ", out)
        _out, err, code = await self.ssh("viewer", "users")
        self.assertEqual(code, 3)
        self.assertIn("admin role", err)

    async def test_interactive_session(self) -> None:
        """ssh -tt with typed lines: commands run in order, exit ends with status 0; EOF alone ends too."""
        out, err, code = await self.ssh("operator", tty=True, stdin=b"whoami\nstatus\nexit\n")
        self.assertEqual(code, 0, out + err)
        self.assertIn("operator (roles: operator)", out)
        self.assertIn("demo", out)
        out, err, code = await self.ssh("viewer", tty=True, stdin=b"status p2\n")
        self.assertEqual(code, 0, out + err)
        self.assertIn("STS2", out)

    async def test_manhole(self) -> None:
        """An admin evaluates Python in the ECA (exec and interactive); others are refused."""
        out, err, code = await self.ssh("admin", "python 1+1")
        self.assertEqual((out, code), ("2\n", 0), err)
        out, err, code = await self.ssh("admin", "python sorted(p['id'] for p in eca.partitions())")
        self.assertEqual(out, "['demo', 'p2']\n", err)
        out, err, code = await self.ssh("operator", "python 1+1")
        self.assertEqual(code, 3)
        self.assertIn("admin role", err)
        out, err, code = await self.ssh("admin", tty=True, stdin=b"python\n6*7\n")
        self.assertEqual(code, 0, out + err)
        self.assertIn("42", out)

    async def test_host_key_persists(self) -> None:
        """A restarted shell on the same state directory has the same host key (ssh still trusts it)."""
        before = self.shell.host_key_fingerprint
        await self.shell.stop()
        self.shell = AdminShell(self.eca, self.store, self.state_dir, reactor)
        await self.shell.listen(f"tcp:{self.port}:interface=127.0.0.1")
        self.addCleanup(self.shell.stop)
        self.assertEqual(self.shell.host_key_fingerprint, before)
        out, err, code = await self.ssh("viewer", "whoami")
        self.assertEqual(code, 0, err)
        self.assertIn("viewer (roles: viewer)", out)

    async def test_window_change_over_ssh(self) -> None:
        """A terminal resize (window-change) on a live session redraws the line and the session goes on."""
        from twisted.conch.ssh.session import packRequest_window_change
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory

        client = _ConchClient("operator", self.keys["operator"], self.shell.host_key)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=10)
        connected = await endpoint.connect(Factory.forProtocol(client.transport_class))
        self.addCleanup(lambda: getattr(connected, "transport").loseConnection())  # noqa: B009  (IProtocol declares no transport)
        chan = await within_seconds(client.opened, 10)
        await within_seconds(client.wait_for(b"ecs> "), 10)
        chan.conn.sendRequest(chan, b"window-change", packRequest_window_change((50, 132, 0, 0)))
        await within_seconds(client.wait_for(b"\x1b[2J"), 10)  # RecvLine.terminalSize redraws
        chan.write(b"whoami\r")
        await within_seconds(client.wait_for(b"roles: operator"), 10)
        chan.write(b"exit\r")
        await within_seconds(client.closed, 10)
        self.assertEqual(client.exit_status, 0)

    async def test_listen_shell_options(self) -> None:
        """--ssh none starts nothing; a taken default port is skipped with a warning; an explicit one fails."""
        self.assertIsNone(await listen_shell("none", self.eca, self.store, self.state_dir, reactor))
        taken = f"tcp:{self.port}:interface=127.0.0.1"
        from ecs.shell import server as shell_module

        self.patch(shell_module, "DEFAULT_ENDPOINT", taken)
        self.assertIsNone(await listen_shell(None, self.eca, self.store, self.state_dir, reactor))
        from twisted.internet.error import CannotListenError

        with self.assertRaises(CannotListenError):
            await listen_shell(taken, self.eca, self.store, self.state_dir, reactor)


class _ConchClient:
    """
    An in-process conch SSH client (OpenSSH's client sends window-change
    only on a real terminal's resize): opens a session with a pty and a
    shell, and records the output and the exit status.
    """

    def __init__(self, user: str, key_file: Path, host_key: Any) -> None:
        from twisted.conch.ssh import channel, connection, keys, transport, userauth
        from twisted.conch.ssh.session import packRequest_pty_req

        client = self
        self.output = b""
        self.exit_status: int | None = None
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.opened: defer.Deferred[Any] = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred[None]]] = []

        class Session(channel.SSHChannel):
            name = b"session"

            def channelOpen(self, data: bytes) -> None:
                async def start() -> None:
                    assert self.conn is not None
                    await self.conn.sendRequest(
                        self, b"pty-req", packRequest_pty_req(b"xterm", (24, 80, 0, 0), b""), wantReply=True
                    )
                    await self.conn.sendRequest(self, b"shell", b"", wantReply=True)
                    client.opened.callback(self)

                defer.Deferred.fromCoroutine(start()).addErrback(client.opened.errback)

            def dataReceived(self, data: bytes) -> None:
                client.output += data
                for waited in list(client._waiting):
                    if waited[0] in client.output:
                        client._waiting.remove(waited)
                        waited[1].callback(None)

            def request_exit_status(self, data: bytes) -> int:
                client.exit_status = int.from_bytes(data[:4], "big")
                return 1

            def closed(self) -> None:
                if self.conn is not None and self.conn.transport is not None:
                    self.conn.transport.loseConnection()
                if not client.closed.called:
                    client.closed.callback(None)

        class Connection(connection.SSHConnection):
            def serviceStarted(self) -> None:
                self.openChannel(Session(conn=self))

        class Auth(userauth.SSHUserAuthClient):
            def getPublicKey(self) -> Any:
                if self.lastPublicKey:
                    return None
                self.lastPublicKey = keys.Key.fromFile(str(key_file)).public()
                return self.lastPublicKey

            def getPrivateKey(self) -> defer.Deferred[Any]:
                return defer.succeed(keys.Key.fromFile(str(key_file)))

            def getPassword(self, prompt: Any = None) -> None:
                return None

        class Transport(transport.SSHClientTransport):
            def verifyHostKey(self, blob: bytes, fingerprint: bytes) -> defer.Deferred[bool]:
                if blob != host_key.public().blob():
                    return defer.fail(ValueError("wrong host key"))
                return defer.succeed(True)

            def connectionSecure(self) -> None:
                self.requestService(Auth(user.encode(), Connection()))

        self.transport_class = Transport

    def wait_for(self, text: bytes) -> defer.Deferred[None]:
        """Fires when C{text} was received."""
        d: defer.Deferred[None] = defer.Deferred()
        if text in self.output:
            d.callback(None)
        else:
            self._waiting.append((text, d))
        return d


def within_seconds(d: defer.Deferred[Any], seconds: float) -> defer.Deferred[Any]:
    """C{d}, failing with a timeout after C{seconds} (for waits on the network)."""
    return d.addTimeout(seconds, reactor)


async def _process(
    executable: str, args: list[str], stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[str, str, int]:
    """Run a program (not blocking the reactor); its stdout, stderr and exit status. Killed by pid after C{timeout}."""
    run = ProcessOutput(stdin)
    path = shutil.which(executable) or executable
    process = reactor.spawnProcess(run, path, [executable, *args], env=env if env is not None else dict(os.environ))

    def kill() -> None:
        try:
            process.signalProcess(signal.SIGKILL)
        except ProcessExitedAlready:
            pass

    timer = reactor.callLater(timeout, kill)
    try:
        ended = await run.ended
        code = -1 if ended is None else ended
    finally:
        if timer.active():
            timer.cancel()
    return run.out.decode("utf-8", "replace"), run.err.decode("utf-8", "replace"), code
