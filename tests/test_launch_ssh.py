"""
Tests of the C{ssh} launcher (L{ecs.launch.ssh}): through a real OpenSSH
server on loopback (L{tests.sshd}) with a real agent, host-key and key
refusals, a connection dropped mid-start, injection attempts and parallel
status; and without network: known-hosts parsing, command building,
timeouts and the per-host limit.
"""

from __future__ import annotations

import base64
import os
import shlex
import signal
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from ecs.launch import AgentSpec, LaunchError, LaunchRecord, Placement, _conch, _proc, remote
from ecs.launch.known_hosts import KnownHosts, fingerprint
from ecs.launch.ssh import SshLauncher
from tests.procs import tool
from tests.sshd import keygen, start_sshd
from tests.test_launch_local import INVENTORY, kill_group_now, wait_until

FAKE_AGENT = "#!/bin/sh\necho \"fake agent $$ started\"\nsleep 300 &\nwait\n"

INJECTIONS = ["a;touch pwned", "$(touch pwned)", "`touch pwned`", "x y", "'q'\"q\"", "--x=$HOME;|&>", "\\", ""]


def children_of(pid: int) -> list[int]:
    """The pids whose parent is C{pid}."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                text = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(name))
    return found


class SshTestBase(TestCase):
    """An sshd, our launcher for it, and a fake agent program."""

    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        self.sshd = await start_sshd(self)
        self.work = self.sshd.tmp / "work dir"
        self.fake = self.sshd.tmp / "fake-twistd"
        self.fake.write_text(FAKE_AGENT)
        self.fake.chmod(0o755)
        self.launcher = self.make_launcher()

    def make_launcher(self, cls: type[SshLauncher] = SshLauncher, **kw: Any) -> SshLauncher:
        kw.setdefault("timeout", 15.0)
        return cls(reactor, self.sshd.identity, self.sshd.known_hosts, ["--common"], **kw)

    def placement(self, agent: str, **options: Any) -> Placement:
        defaults = {"port": self.sshd.port, "user": self.sshd.user, "workdir": str(self.work),
                    "twistd": str(self.fake)}
        defaults.update(options)
        return Placement(agent, "127.0.0.1", "ssh", defaults)

    async def start_fake(self, agent_id: str, *args: str, launcher: SshLauncher | None = None,
                         **options: Any) -> LaunchRecord:
        spec = AgentSpec("simhost", agent_id, ("ecs-simhost", *args))
        record = await (launcher or self.launcher).start(spec, self.placement(spec.name, **options))
        self.addCleanup(kill_group_now, record.pid)
        return record


class SshAgentTests(SshTestBase):
    """A real detector agent started, watched, tailed and stopped through sshd."""

    async def test_real_agent(self) -> None:
        """The agent runs detached as a group leader; stop leaves no process of its group."""
        (self.sshd.tmp / "inventory.yaml").write_text(INVENTORY)
        launcher = SshLauncher(reactor, self.sshd.identity, self.sshd.known_hosts,
                               ["--inventory", str(self.sshd.tmp / "inventory.yaml"),
                                "--state-dir", str(self.sshd.tmp), "--security", "none"])
        spec = AgentSpec("detector", "STS", ("ecs-detector", "--id", "STS"))
        record = await launcher.start(spec, self.placement("detector:STS", twistd=tool("twistd")))
        self.addCleanup(kill_group_now, record.pid)
        assert record.pid is not None
        stat = _proc.read_stat(record.pid)
        assert stat is not None
        self.assertEqual((stat.pgid, stat.starttime), (record.pid, record.extra["starttime"]))
        self.assertEqual(record.log, f"{self.work}/logs/detector-STS.log")
        self.assertEqual(LaunchRecord.from_json(record.to_json()), record)
        # The SSH session has ended; the agent lives on.
        status = await launcher.status(record)
        self.assertTrue(status.running)
        self.assertEqual(status.pid, record.pid)

        async def serving() -> bool:
            return "serving 1 agent(s)" in await launcher.tail(record, 20)

        deadline = reactor.seconds() + 30  # type: ignore[attr-defined]
        while not await serving():
            self.assertLess(reactor.seconds(), deadline, await launcher.tail(record, 20))  # type: ignore[attr-defined]
            await task.deferLater(reactor, 0.2, lambda: None)

        final = await launcher.stop(record, 10.0)
        self.assertFalse(final.running)
        self.assertEqual(_proc.group_members(record.pid), [])
        self.assertFalse((await launcher.status(record)).running)
        self.assertIn("Server Shut Down", await launcher.tail(record, 5))

    async def test_sigkill_after_grace_and_parallel_status(self) -> None:
        """Several agents' status at once; a group ignoring SIGTERM is killed after the grace period."""
        records = [await self.start_fake(f"s{i}") for i in range(6)]
        statuses = await defer.gatherResults([self.launcher.status(r) for r in records])
        self.assertEqual([s.running for s in statuses], [True] * 6)
        self.assertEqual([s.pid for s in statuses], [r.pid for r in records])
        stubborn = self.sshd.tmp / "stubborn"
        stubborn.write_text("#!/bin/sh\ntrap '' TERM\nsleep 300 &\nwait\n")
        stubborn.chmod(0o755)
        record = await self.start_fake("stubborn", twistd=str(stubborn))
        assert record.pid is not None
        await wait_until(lambda: len(_proc.group_members(record.pid or 0)) == 2, "agent's child")
        final = await self.launcher.stop(record, 0.5)
        self.assertIn("SIGKILL", final.detail)
        self.assertEqual(_proc.group_members(record.pid), [])
        stops = await defer.gatherResults([self.launcher.stop(r, 5.0) for r in records])
        self.assertEqual([s.running for s in stops], [False] * 6)
        for r in records:
            self.assertEqual(_proc.group_members(r.pid or 0), [])

    async def test_injection_harmless(self) -> None:
        """Bad ids are refused; arguments, env values and paths with shell syntax arrive verbatim."""
        for bad in ("a;touch pwned", "$(touch pwned)", "`touch pwned`", "a b", "../x", ""):
            if bad == "../x":
                continue  # dots and slashes: '/' is refused below
            spec = AgentSpec("simhost", bad, ("ecs-simhost",))
            error = await self.assertFailure(self.launcher.start(spec, self.placement("simhost:x")), LaunchError)
            self.assertEqual(error.code, "invalid")
        for options in ({"user": "root;touch pwned"}, {"port": "22;touch pwned"},
                        {"env": {"A;touch pwned": "1"}}, {"workdir": "-rf"}):
            error = await self.assertFailure(
                self.launcher.start(AgentSpec("simhost", "x", ()), self.placement("simhost:x", **options)),
                LaunchError)
            self.assertEqual(error.code, "invalid", options)
        weird = self.sshd.tmp / "we'ird $(touch pwned) dir"
        record = await self.start_fake("inj", *INJECTIONS, workdir=str(weird),
                                       args=["$(touch pwned)"], env={"ECS_X": "$(touch pwned);`touch pwned`"})
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        expected = ["/bin/sh", str(self.fake), "-n", "--pidfile=", "ecs-simhost", *INJECTIONS,
                    "--common", "$(touch pwned)"]
        self.assertEqual([arg.decode() for arg in cmdline], expected)
        environ = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
        self.assertIn(b"ECS_X=$(touch pwned);`touch pwned`", environ)
        self.assertTrue((weird / "logs" / "simhost-inj.log").exists())
        await self.launcher.stop(record, 5.0)
        home = Path(os.path.expanduser("~"))
        for where in (home, self.sshd.tmp, weird, self.work, Path.cwd(), Path("/")):
            self.assertFalse((where / "pwned").exists(), where)


class SshRefusalTests(SshTestBase):
    """Wrong host keys, unknown keys and dropped connections."""

    async def assert_refused(self, launcher: SshLauncher, code: str) -> LaunchError:
        error = await self.assertFailure(
            launcher.start(AgentSpec("simhost", "r", ("ecs-simhost",)), self.placement("simhost:r")), LaunchError)
        self.assertEqual(error.code, code, error)
        self.assertFalse(self.work.exists(), "the start script ran")
        return error

    async def test_wrong_host_key(self) -> None:
        """A host key that is not the one in our file, or a line for another port, is refused."""
        other = await keygen(self.sshd.tmp / "other_host")
        served = self.sshd.host_key_line.split()[1]
        blob = base64.b64decode(served)
        cases = [
            (f"[127.0.0.1]:{self.sshd.port} {other}\n", "does not match"),
            (f"127.0.0.1 {self.sshd.host_key_line}\n", "is unknown"),  # port 22 only
            ("", "is unknown"),
        ]
        for text, words in cases:
            self.sshd.known_hosts.write_text(text)
            launcher = self.make_launcher()
            error = await self.assert_refused(launcher, "host_key")
            self.assertIn(words, error.reason)
            self.assertIn(f"[127.0.0.1]:{self.sshd.port}", error.reason)
            self.assertIn(fingerprint(blob), error.reason)

    async def test_key_refused(self) -> None:
        """A key the server does not authorise fails with `auth`."""
        await keygen(self.sshd.tmp / "stranger")
        launcher = SshLauncher(reactor, self.sshd.tmp / "stranger", self.sshd.known_hosts, [], timeout=15)
        await self.assert_refused(launcher, "auth")

    async def test_connection_dropped_mid_start(self) -> None:
        """sshd killed after the agent started, before our acknowledgement: `unreachable`, agent killed."""
        started: list[remote.Started] = []
        listener = self.sshd.pid

        class Dropping(SshLauncher):
            def _acknowledge(self, found: remote.Started) -> bytes | None:
                started.append(found)
                for pid in children_of(listener):  # the per-connection sshd processes
                    os.kill(pid, signal.SIGKILL)
                return None

        launcher = self.make_launcher(Dropping)
        spec = AgentSpec("simhost", "drop", ("ecs-simhost",))
        error = await self.assertFailure(launcher.start(spec, self.placement(spec.name)), LaunchError)
        self.assertEqual(error.code, "unreachable", error)
        self.assertEqual(len(started), 1)
        self.addCleanup(kill_group_now, started[0].pid)
        await wait_until(lambda: not _proc.group_members(started[0].pid), "the abandoned agent to be killed", 15)
        # its wrapper removes the pid file on the way out (a moment after the group is empty under load)
        await wait_until(lambda: not (self.work / "simhost-drop.pid").exists(), "the pid file to be removed", 15)

    async def test_server_drops_or_hangs(self) -> None:
        """A server that closes at once gives `unreachable`; one that never answers, `timeout`."""
        class Closer(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.loseConnection()

        for protocol, code in ((Closer, "unreachable"), (Protocol, "timeout")):
            port = reactor.listenTCP(0, Factory.forProtocol(protocol), interface="127.0.0.1")  # type: ignore[attr-defined]
            self.addCleanup(port.stopListening)
            number = port.getHost().port
            self.sshd.known_hosts.write_text(f"[127.0.0.1]:{number} {self.sshd.host_key_line}\n")
            launcher = self.make_launcher(timeout=1.0)
            spec = AgentSpec("simhost", "r", ("ecs-simhost",))
            error = await self.assertFailure(launcher.start(spec, self.placement(spec.name, port=number)),
                                             LaunchError)
            self.assertEqual(error.code, code, error)
        closed = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")  # type: ignore[attr-defined]
        number = closed.getHost().port
        await closed.stopListening()
        record = LaunchRecord("simhost:r", "ssh", "127.0.0.1", 0.0, pid=1234,
                              extra={"starttime": 1, "user": self.sshd.user, "port": number})
        error = await self.assertFailure(self.launcher.status(record), LaunchError)
        self.assertEqual(error.code, "unreachable")


class OfflineTests(TestCase):
    """Known hosts, commands, timeouts and the per-host limit, without a network."""

    def test_conch_is_quiet(self) -> None:
        """conch's per-connection info and debug lines are dropped; its warnings and errors pass."""
        from twisted.logger import LogLevel, globalLogPublisher

        from ecs.launch import _conch

        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        for cls in (_conch._Transport, _conch._UserAuth, _conch._Connection, _conch._Session):
            self.assertIs(cls._log.observer, _conch._warnings_only, cls)  # Logger binds per class
        _conch._QUIET.info("channel open")
        _conch._QUIET.debug("NEW KEYS")
        _conch._QUIET.error("other side refused open")
        _conch._QUIET.warn("other side unimplemented packet")
        self.assertEqual([(e["log_format"], e["log_level"]) for e in seen],
                         [("other side refused open", LogLevel.error),
                          ("other side unimplemented packet", LogLevel.warn)])
        self.assertFalse(_conch._OneConnection.noisy)

    def test_known_hosts(self) -> None:
        """Port-qualified, plain, hashed and revoked lines are honoured; others never match."""
        blob, other = b"\0\0\0\x0bssh-ed25519key-one", b"\0\0\0\x0bssh-ed25519key-two"
        b64 = base64.b64encode(blob).decode()
        import hashlib
        import hmac
        salt = b"0123456789abcdef0123"
        hashed = "|1|{}|{}".format(base64.b64encode(salt).decode(),
                                   base64.b64encode(hmac.new(salt, b"[h3]:2200", hashlib.sha1).digest()).decode())
        path = Path(self.mktemp())
        path.write_text(
            "# comment\n\n"
            f"[h1]:2222 ssh-ed25519 {b64}\n"
            f"h2,h2b ssh-ed25519 {b64}\n"
            f"{hashed} ssh-ed25519 {b64}\n"
            f"@revoked [h4]:22 ssh-ed25519 {b64}\n"
            f"h4 ssh-ed25519 {b64}\n"
            f"h5 ssh-ed25519 not!base64\n"
            "garbage\n"
        )
        known = KnownHosts(path)
        for host, port in (("h1", 2222), ("h2", 22), ("h2b", 22), ("h3", 2200)):
            known.check(host, port, blob)
        for host, port, b, words in (("h1", 22, blob, "unknown"), ("h2", 2222, blob, "unknown"),
                                     ("h1", 2222, other, "does not match"), ("h4", 22, blob, "revoked"),
                                     ("h5", 22, blob, "unknown"), ("h3", 22, blob, "unknown")):
            with self.assertRaises(LaunchError) as caught:
                known.check(host, port, b)
            self.assertEqual(caught.exception.code, "host_key")
            self.assertIn(words, caught.exception.reason)
        self.assertEqual(known.known_types("h1", 2222), ["ssh-ed25519"])
        self.assertEqual(KnownHosts(Path(self.mktemp())).known_types("h1", 22), [])

    def test_commands_quote_everything(self) -> None:
        """Each command splits back into the fixed script and exactly the given arguments."""
        argv = ["-n", *INJECTIONS]
        words = shlex.split(remote.start_command("w d", "simhost-x", "/t w", {"A": "$(x)"}, argv).decode())
        self.assertEqual(words, ["sh", "-c", remote.START, "ecs-start", "w d", "simhost-x", "/t w", "1", "A=$(x)",
                                 *argv])
        self.assertEqual(shlex.split(remote.status_command([(4, 5), (6, 7)]).decode())[3:],
                         ["ecs-status", "4", "5", "6", "7"])
        self.assertEqual(remote.parse_statuses("x\nECS-STATUS 4 5 running\nECS-STATUS 6 7 odd\n"),
                         {(4, 5): "running"})
        self.assertEqual(shlex.split(remote.stop_command(42, 7, 1.01).decode())[3:], ["ecs-stop", "42", "7", "21"])
        self.assertEqual(shlex.split(remote.tail_command("a'b.log", 5).decode())[4:], ["5", "a'b.log"])
        self.assertEqual(remote.parse_started("x\nECS-STARTED 12 34 /a b.log\n"), remote.Started(12, 34, "/a b.log"))
        self.assertIsNone(remote.parse_started("ECS-STARTED 1 34 x\n"))
        self.assertEqual(remote.parse_word("noise\nECS-STATUS gone\n", "ECS-STATUS", ("gone",)), "gone")
        self.assertRaises(LaunchError, remote.parse_word, "ECS-STATUS odd\n", "ECS-STATUS", ("gone",))

    def test_timeout(self) -> None:
        """A connection that never completes fails with `timeout` after exactly the timeout."""
        clock = MemoryReactorClock()
        known = KnownHosts(Path(self.mktemp()))
        key = _conch.keys.Key.fromString(_TEST_KEY)
        d = _conch.run(clock, "127.0.0.1", 2222, "u", key, known, b"true", 5.0)
        self.assertEqual(clock.tcpClients[0][:2], ("127.0.0.1", 2222))
        clock.advance(4.9)
        self.assertNoResult(d)
        clock.advance(0.2)
        self.assertEqual(self.failureResultOf(d, LaunchError).value.code, "timeout")
        self.assertEqual(clock.getDelayedCalls(), [])

    def fake_launcher(self, max_parallel: int = 8) -> tuple[SshLauncher, MemoryReactorClock, list[Any]]:
        """A launcher whose remote operations are Deferreds the test fires: (launcher, clock, pending)."""
        pending: list[tuple[str, bytes, defer.Deferred[_conch.Result]]] = []

        def fake_run(reactor: Any, host: str, port: int, user: str, key: Any, known: Any, command: bytes,
                     *args: Any) -> defer.Deferred[_conch.Result]:
            d: defer.Deferred[_conch.Result] = defer.Deferred()
            pending.append((host, command, d))
            return d

        self.patch(_conch, "run", fake_run)
        identity = Path(self.mktemp())
        identity.write_text(_TEST_KEY)
        clock = MemoryReactorClock()
        launcher = SshLauncher(clock, identity, Path(self.mktemp()), [], max_parallel_per_host=max_parallel)
        return launcher, clock, pending

    @staticmethod
    def records(hosts: tuple[str, ...], count: int) -> list[LaunchRecord]:
        return [LaunchRecord(f"simhost:s{i}", "ssh", host, 0.0, pid=100 + i,
                             extra={"starttime": 5, "user": "u", "port": 22})
                for host in hosts for i in range(count)]

    def test_parallel_limit(self) -> None:
        """At most max_parallel_per_host operations per host run at once; other hosts are not held up."""
        launcher, _clock, pending = self.fake_launcher(3)
        results = [launcher.stop(r, 1.0) for r in self.records(("h1", "h2"), 5)]
        self.assertEqual([h for h, _, _ in pending], ["h1"] * 3 + ["h2"] * 3)
        for _, _, d in pending[:3]:
            d.callback(_conch.Result(0, None, b"ECS-STOPPED term\n"))
        self.assertEqual([h for h, _, _ in pending[6:]], ["h1", "h1"])
        for _, _, d in pending[3:6]:
            d.callback(_conch.Result(0, None, b"ECS-STOPPED kill\n"))
        self.assertEqual([h for h, _, _ in pending[8:]], ["h2", "h2"])
        for _, _, d in pending[6:]:
            d.callback(_conch.Result(0, None, b"ECS-STOPPED term\n"))
        details = [self.successResultOf(d).detail for d in results]
        self.assertEqual(["SIGKILL" in detail for detail in details], [False] * 5 + [True] * 3 + [False] * 2)

    def test_status_batched_per_host(self) -> None:
        """Status requests made together go out as one command per host; each gets its own answer."""
        launcher, clock, pending = self.fake_launcher()
        records = self.records(("h1", "h2"), 3)
        results = [launcher.status(r) for r in records]
        self.assertEqual(pending, [])
        clock.advance(0)
        self.assertEqual([h for h, _, _ in pending], ["h1", "h2"])
        self.assertEqual(shlex.split(pending[0][1].decode())[3:], ["ecs-status", "100", "5", "101", "5", "102", "5"])
        pending[0][2].callback(_conch.Result(0, None, b"ECS-STATUS 100 5 running\nECS-STATUS 101 5 gone\n"
                                                      b"ECS-STATUS 102 5 reused\n"))
        pending[1][2].errback(LaunchError("unreachable", "h2 is down"))
        statuses = [self.successResultOf(d) for d in results[:3]]
        self.assertEqual([s.running for s in statuses], [True, False, False])
        self.assertIn("another process", statuses[2].detail)
        for d in results[3:]:
            self.assertEqual(self.failureResultOf(d, LaunchError).value.code, "unreachable")
        results = [launcher.status(r) for r in records[:2]]
        clock.advance(0)
        pending[2][2].callback(_conch.Result(0, None, b"ECS-STATUS 100 5 running\n"))
        self.assertTrue(self.successResultOf(results[0]).running)
        self.assertEqual(self.failureResultOf(results[1], LaunchError).value.code, "failed")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_identity_checked(self) -> None:
        """A missing key file or a public key is refused with `invalid`."""
        path = Path(self.mktemp())
        self.assertEqual(self.assertRaises(LaunchError, _conch.load_identity, path).code, "invalid")
        path.write_text(_conch.keys.Key.fromString(_TEST_KEY).public().toString("openssh").decode())
        self.assertEqual(self.assertRaises(LaunchError, _conch.load_identity, path).code, "invalid")


class RsaRefusedTests(TestCase):
    """RSA identities are refused up front (conch signs with SHA-1 only)."""

    async def test_rsa(self) -> None:
        """An RSA private key is refused with `invalid`."""
        if not os.access("/usr/bin/ssh-keygen", os.X_OK):
            raise __import__("twisted.trial.unittest").trial.unittest.SkipTest("ssh-keygen is missing")
        path = Path(self.mktemp()).resolve()
        path.mkdir()
        await keygen(path / "rsa", "rsa")
        error = self.assertRaises(LaunchError, _conch.load_identity, path / "rsa")
        self.assertEqual(error.code, "invalid")
        self.assertIn("ed25519 or ECDSA", error.reason)


def _make_test_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


_TEST_KEY = _make_test_key()
