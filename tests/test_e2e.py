"""
End-to-end tests: real controller processes (twistd plugins) on loopback,
with CURVE keys, driven over ZeroMQ by a stand-in PCA in the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from ecs.net.keys import init_keys, load_keys
from ecs.net.transport import Request, RequestError
from ecs.net.zeromq import ZmqNode
from tests.procs import spawn, tool


class Collector:
    """The stand-in PCA: records state updates, lets tests wait for a state."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self._waiters: list[tuple[str, str, defer.Deferred[dict[str, Any]]]] = []

    def states(self, request: Request) -> None:
        for update in request.body["updates"]:
            self.updates.append(update)
            for waiter in list(self._waiters):
                system, state, d = waiter
                if update["system"] == system and update["state"] == state:
                    self._waiters.remove(waiter)
                    d.callback(update)

    def wait_state(self, system: str, state: str, timeout: float = 20.0) -> defer.Deferred[dict[str, Any]]:
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._waiters.append((system, state, d))
        d.addTimeout(timeout, reactor)
        return d


class DetectorProcessTests(TestCase):
    """A detector controller process through configure, abort, error and reset."""

    timeout = 120

    async def _setup(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir()
        init_keys(self.tmp / "keys")
        # the PCA's own key: the controller accepts commands from its partition's PCA
        keys = load_keys(self.tmp / "keys", identity="pca.p1", enrol=True)
        self.node = ZmqNode(reactor, "pca:p1", keys, request_timeout=5.0)
        self.addCleanup(self.node.close)
        self.pca = Collector()
        server = self.node.serve("tcp://127.0.0.1:*")
        server.register("p1", {"states": self.pca.states})
        (self.tmp / "inventory.yaml").write_text(
            "partitions:\n"
            f"  p1: {{endpoint: '{server.address}', detectors: [STS]}}\n"
            "detectors:\n"
            "  STS: {type: STS}\n"
        )
        initial = self.pca.wait_state("STS", "Unconfigured")
        self.proc, _ = spawn(
            self,
            "ecs-detector",
            [tool("twistd"), "-n", "--pidfile=", "ecs-detector", "--id", "STS",
             "--inventory", "inventory.yaml", "--state-dir", str(self.tmp)],
            cwd=str(self.tmp),
        )
        match = await self.proc.wait_for(r"serving 1 agent\(s\) at (tcp://\S+)")
        self.address = match.group(1)
        self.first = await initial
        self.client = self.node.connect(self.address)

    def command(self, type: str, **body: Any) -> defer.Deferred[dict[str, Any]]:
        return self.client.request("STS", type, body)

    async def test_configure_abort_error_reset(self) -> None:
        """The real process configures to Active, aborts, takes an injected error and a reset."""
        await self._setup()
        self.assertEqual(self.first["seq"], 0)

        active = self.pca.wait_state("STS", "Active")
        reply = await self.command("configure", config={"config_id": "sts-1", "parameters": {"hv": 1}})
        self.assertEqual(reply["state"], "Configuring_Step1")
        update = await active
        self.assertEqual(update["tag"], "sts-1")

        step1 = self.pca.wait_state("STS", "Configuring_Step1")
        await self.command("configure", config={"config_id": "sts-2"})
        await step1
        with self.assertRaises(RequestError) as busy:
            await self.command("configure", config={"config_id": "sts-3"})
        self.assertEqual(busy.exception.code, "busy")
        aborted = await self.command("abort")
        self.assertEqual((aborted["state"], aborted["tag"]), ("Unconfigured", None))

        error = self.pca.wait_state("STS", "Error")
        cli, _ = spawn(
            self,
            "ecs inject",
            [tool("ecs"), "inject", "STS", "error", "--endpoint", self.address,
             "--state-dir", str(self.tmp)],
            cwd=str(self.tmp),
        )
        self.assertEqual(await cli.ended, 0, "\n".join(cli.lines))
        await error
        reset = await self.command("reset")
        self.assertEqual(reset["state"], "Unconfigured")
        seqs = [u["seq"] for u in self.pca.updates]
        self.assertEqual(seqs, sorted(seqs))

    async def test_unknown_key_gets_nothing_through(self) -> None:
        """A client whose key is not authorised gets no request through: refused at once, nothing done."""
        await self._setup()
        other = self.tmp / "other-keys"
        init_keys(other)
        keys = load_keys(other)
        # The attacker knows the server's public key but has its own client pair.
        stranger = ZmqNode(
            reactor,
            "stranger",
            keys.__class__(
                load_keys(self.tmp / "keys").server_public,
                None,
                keys.client_public,
                keys.client_secret,
                keys.authorized_dir,
            ),
        )
        self.addCleanup(stranger.close)
        with self.assertRaises(RequestError) as refused:
            await stranger.connect(self.address).request("STS", "inject", {"what": "error"}, timeout=1.5)
        self.assertEqual(refused.exception.code, "unauthorised")
        status = await self.command("status")
        self.assertEqual(status["state"], "Unconfigured")


class StartupErrorTests(TestCase):
    """Configuration errors stop an agent before it binds anything."""

    timeout = 60

    async def test_bad_settings_exit_non_zero(self) -> None:
        """An unknown key in the settings file: exit status non-zero, message names file and key."""
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        (tmp / "bad.yaml").write_text("heartbeat:\n  intervall: 1\n")
        proc, _ = spawn(
            self,
            "ecs-detector",
            [tool("twistd"), "-n", "--pidfile=", "ecs-detector", "--id", "X", "--type", "STS",
             "--config", "bad.yaml"],
            cwd=str(tmp),
        )
        code = await proc.ended
        self.assertNotEqual(code, 0)
        output = "\n".join(proc.lines)
        self.assertIn("bad.yaml", output)
        self.assertIn("heartbeat", output)
        self.assertIn("intervall", output)

    async def test_missing_keys_named(self) -> None:
        """With security curve and no keys, the message says which file and how to make it."""
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        proc, _ = spawn(
            self,
            "ecs-detector",
            [tool("twistd"), "-n", "--pidfile=", "ecs-detector", "--id", "X", "--type", "STS",
             "--state-dir", str(tmp)],
            cwd=str(tmp),
        )
        self.assertNotEqual(await proc.ended, 0)
        self.assertIn("ecs keys init", "\n".join(proc.lines))
