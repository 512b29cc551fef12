"""
Agent identities and authorisation by sender: L{ecs.net.identity},
L{ecs.net.authz}, the identity half of L{ecs.net.keys} and
L{ecs.net.curve.KeyAllowList}, and the rule tables applied to the real PCA,
controllers and registry on the in-memory transport (whose nodes carry an
identity as a CURVE key would).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from ecs.net import authz
from ecs.net.authz import FORBIDDEN, guarded, pca_rules, registry_rules
from ecs.net.curve import KeyAllowList
from ecs.net.identity import agent_identity, grant_of, node_identity, simhost_identity
from ecs.net.keys import KeyFileError, enrol_agent, init_keys, load_keys
from ecs.net.transport import Request, RequestError


class Warnings:
    """Collects the text of every log event (a test's observer)."""

    def __init__(self, test: TestCase) -> None:
        self.lines: list[str] = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)
        test.patch(authz, "_refusals", {})

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent

        self.lines.append(f"{event.get('log_level').name if event.get('log_level') else '?'} {formatEvent(event)}")

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


class GrantTests(TestCase):
    """What each identity name speaks for."""

    def test_agents(self) -> None:
        """pca/detector/global names speak for their own ids only."""
        pca, detector = grant_of("pca.demo"), grant_of("detector.STS")
        self.assertTrue(pca.may_register("pca", "demo"))
        self.assertFalse(pca.may_register("pca", "p2"))
        self.assertFalse(pca.may_register("detector", "demo"))
        self.assertTrue(pca.is_pca_of("demo"))
        self.assertFalse(pca.is_pca_of("p2"))
        self.assertTrue(detector.may_register("detector", "STS"))
        self.assertFalse(detector.may_register("detector", "TRD"))
        self.assertFalse(detector.may_register("pca", "STS"))
        self.assertTrue(detector.speaks_for_system("STS"))
        self.assertFalse(detector.speaks_for_system("TFC"))
        every = grant_of("global.all")
        self.assertTrue(every.may_register("global", "TFC"))
        self.assertFalse(every.may_register("detector", "STS"))
        self.assertTrue(grant_of("global.TFC").speaks_for_system("TFC"))
        self.assertFalse(grant_of("global.TFC").speaks_for_system("DCS"))

    def test_simhost(self) -> None:
        """A sim host's key speaks for the numbered detectors of its ranges, no others."""
        name = simhost_identity("D", "1-500, 600")
        self.assertEqual(name, "simhost.D#1-500,600")
        grant = grant_of(name)
        for detector in ("D1", "D500", "D600"):
            self.assertTrue(grant.may_register("detector", detector), detector)
        for detector in ("D0", "D501", "D601", "D01", "E1", "D", "D1x"):
            self.assertFalse(grant.may_register("detector", detector), detector)
        self.assertEqual(grant_of("simhost.D#1-x").role, "client")

    def test_clients_and_eca(self) -> None:
        """The ECA is one name; anything else is a client that speaks for nothing."""
        self.assertTrue(grant_of("eca").is_eca)
        for name in ("client", "pca", "pca.", "operator-7", "simhost.D", "ecadmin"):
            grant = grant_of(name)
            self.assertFalse(grant.is_eca, name)
            self.assertFalse(grant.may_register("pca", "demo"), name)
            self.assertFalse(grant.speaks_for_system("STS"), name)
        self.assertTrue(grant_of("client").is_expert)
        self.assertTrue(grant_of("expert-alice").is_expert)
        self.assertFalse(grant_of("detector.STS").is_expert)

    def test_node_names(self) -> None:
        """Node names map to identities; names of no agent are the operator's."""
        self.assertEqual(node_identity("pca:demo"), "pca.demo")
        self.assertEqual(node_identity("detector:STS"), "detector.STS")
        self.assertEqual(node_identity("global:all"), "global.all")
        self.assertEqual(node_identity("eca"), "eca")
        self.assertEqual(node_identity("cli:123"), "client")
        self.assertEqual(node_identity("simhost:D1-5"), "client")
        self.assertEqual(agent_identity("eca", ""), "eca")


def request(type: str, identity: str | None, sender: str = "x", rid: str | None = "1", **body: Any) -> Request:
    return Request(type, sender, "demo", body, rid, identity)


class GuardTests(TestCase):
    """L{guarded} with the declared tables."""

    def setUp(self) -> None:
        self.warnings = Warnings(self)
        self.calls: list[Request] = []

    def handler(self, r: Request) -> dict[str, Any]:
        self.calls.append(r)
        return {"ok": True}

    def test_pca_commands_only_from_the_eca(self) -> None:
        """A detector's key cannot command the PCA, even claiming to be the ECA; the ECA can."""
        handlers = guarded("PCA demo", {"abort": self.handler}, pca_rules())
        for identity, sender in (("detector.STS", "eca"), ("detector.STS", "detector:STS"), ("client", "cli:1")):
            with self.assertRaises(RequestError) as caught:
                handlers["abort"](request("abort", identity, sender))
            self.assertEqual(caught.exception.code, FORBIDDEN)
            self.assertIn(f"key {identity}", caught.exception.reason)
        self.assertEqual(self.calls, [])
        self.assertEqual(len(self.warnings.matching("'abort' from key detector.STS refused")), 2)
        self.assertEqual(handlers["abort"](request("abort", "eca", "eca")), {"ok": True})
        self.assertEqual(handlers["abort"](request("abort", None, "anyone")), {"ok": True})

    def test_sender_checked_against_key(self) -> None:
        """The ECA's key claiming to be a PCA is refused too: the field must match the key."""
        handlers = guarded("PCA demo", {"abort": self.handler}, pca_rules())
        with self.assertRaises(RequestError) as caught:
            handlers["abort"](request("abort", "eca", "pca:demo"))
        self.assertIn("claims sender 'pca:demo'", caught.exception.reason)

    def test_states_only_for_own_systems(self) -> None:
        """Updates for systems the key does not speak for are dropped and logged; its own pass."""
        handlers = guarded("PCA demo", {"states": self.handler}, pca_rules())
        updates = [{"system": "STS", "seq": 1}, {"system": "TRD", "seq": 1000}]
        handlers["states"](request("states", "detector.STS", "detector:STS", None, updates=updates))
        self.assertEqual(self.calls[-1].body["updates"], [{"system": "STS", "seq": 1}])
        self.assertTrue(self.warnings.matching("updates for TRD dropped"))
        self.assertIsNone(
            handlers["states"](request("states", "detector.STS", "detector:STS", None, updates=updates[1:]))
        )
        self.assertEqual(len(self.calls), 1)
        self.assertTrue(self.warnings.matching("speaks for none of the systems"))

    def test_unknown_type_refused(self) -> None:
        """A handler without a rule is refused (deny by default)."""
        handlers = guarded("PCA demo", {"secret": self.handler}, pca_rules())
        with self.assertRaises(RequestError):
            handlers["secret"](request("secret", "eca", "eca"))

    def test_registry_binding(self) -> None:
        """Register and unregister only for the key's own id; lookups for anyone."""
        handlers = guarded("ECA registry", {"register": self.handler, "lookup": self.handler}, registry_rules())
        with self.assertRaises(RequestError):
            handlers["register"](request("register", "detector.STS", kind="pca", id="demo"))
        with self.assertRaises(RequestError):
            handlers["register"](request("register", "detector.STS", kind="detector", id="TRD"))
        handlers["register"](request("register", "detector.STS", kind="detector", id="STS"))
        handlers["lookup"](request("lookup", "detector.STS", kind="pca", id="demo"))
        self.assertEqual(len(self.calls), 2)
        self.assertTrue(self.warnings.matching("may not register pca demo"))

    def test_warnings_rate_limited(self) -> None:
        """A flood of refusals logs a bounded number of lines."""
        handlers = guarded("PCA demo", {"abort": self.handler}, pca_rules())
        for _ in range(3000):
            self.assertRaises(RequestError, handlers["abort"], request("abort", "client", "cli:1"))
        lines = self.warnings.matching("'abort' from key client refused")
        self.assertEqual(len(lines), authz.WARN_PER_KIND + 3)


class EnrolmentTests(TestCase):
    """Per-agent key pairs and the allow-list's names."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        init_keys(self.dir)
        self.warnings = Warnings(self)

    def test_enrol_and_load(self) -> None:
        """An agent's own pair is made once, authorised under its name, and loaded by identity."""
        keys = load_keys(self.dir, identity="pca.demo", enrol=True)
        self.assertEqual(keys.identity, "pca.demo")
        self.assertEqual(oct(os.stat(self.dir / "agents" / "pca.demo.key_secret").st_mode & 0o777), "0o600")
        self.assertNotEqual(keys.client_public, load_keys(self.dir).client_public)
        self.assertEqual(load_keys(self.dir, identity="pca.demo").client_public, keys.client_public)
        self.assertEqual(keys.authorized_names()[keys.client_public], "pca.demo")
        self.assertRaises(KeyFileError, load_keys, self.dir, identity="detector.X")
        self.assertRaises(KeyFileError, enrol_agent, self.dir, "pca.demo")
        self.assertRaises(KeyFileError, enrol_agent, self.dir, "../x")

    def test_enrolled_elsewhere(self) -> None:
        """An identity authorised here without its secret (made on another host) is not silently replaced."""
        enrol_agent(self.dir, "detector.STS")
        (self.dir / "agents" / "detector.STS.key_secret").unlink()
        with self.assertRaises(KeyFileError) as caught:
            load_keys(self.dir, identity="detector.STS", enrol=True)
        self.assertIn("copy", str(caught.exception))

    def test_rotation_and_revocation_logged(self) -> None:
        """The allow-list maps keys to names and logs rotation and revocation as WARN lines."""
        old = load_keys(self.dir, identity="detector.STS", enrol=True)
        allow = KeyAllowList(old)
        self.assertEqual(allow.identity(old.client_public), "detector.STS")
        allow.RACY = 0.0
        enrol_agent(self.dir, "detector.STS", force=True)
        new = load_keys(self.dir, identity="detector.STS")
        allow.reload_if_changed()
        self.assertIsNone(allow.identity(old.client_public))
        self.assertEqual(allow.identity(new.client_public), "detector.STS")
        self.assertTrue(self.warnings.matching("detector.STS rotated"))
        (self.dir / "authorized" / "detector.STS.key").unlink()
        allow.reload_if_changed()
        self.assertIsNone(allow.identity(new.client_public))
        self.assertTrue(self.warnings.matching("detector.STS revoked"))


class KeysCommandTests(TestCase):
    """C{ecs keys add --agent}, rotation with --force, C{ecs keys revoke}."""

    def test_enrol_rotate_revoke(self) -> None:
        """An agent identity is enrolled, rotated only with --force, and revoked."""
        from tests.test_cli import run

        directory = Path(self.mktemp())
        init_keys(directory)
        code, _, err = run("keys", "add", "detector.STS", "--agent", "--dir", str(directory))
        self.assertEqual(code, 0, err)
        first = load_keys(directory, identity="detector.STS").client_public
        code, _, err = run("keys", "add", "detector.STS", "--agent", "--dir", str(directory))
        self.assertEqual(code, 1)
        self.assertIn("--force", err)
        self.assertEqual(run("keys", "add", "detector.STS", "--agent", "--force", "--dir", str(directory))[0], 0)
        self.assertNotEqual(load_keys(directory, identity="detector.STS").client_public, first)
        self.assertEqual(run("keys", "add", "cli2", "--force", "--dir", str(directory))[0], 1)
        code, _, err = run("keys", "revoke", "detector.STS", "--dir", str(directory))
        self.assertEqual(code, 0, err)
        self.assertFalse((directory / "authorized" / "detector.STS.key").exists())
        self.assertEqual(run("keys", "revoke", "detector.STS", "--dir", str(directory))[0], 1)
        self.assertEqual(run("keys", "revoke", "../server", "--dir", str(directory))[0], 1)


class RevocationTests(TestCase):
    """A key removed from the allow-list is refused on a connection already up, without a restart."""

    timeout = 60

    async def test_revoked_key_dropped(self) -> None:
        """Requests carry the key's identity; after revocation they are dropped and a WARN line says so."""
        from twisted.internet import reactor, task

        from ecs.net.zeromq import ZmqNode

        directory = Path(self.mktemp()).resolve()
        init_keys(directory)
        warnings = Warnings(self)
        server_node = ZmqNode(reactor, "eca", load_keys(directory, identity="eca", enrol=True))
        self.addCleanup(server_node.close)
        seen: list[str | None] = []
        server = server_node.serve("tcp://127.0.0.1:*")
        server.register("x", {"status": lambda r: seen.append(r.identity) or {}})
        client_node = ZmqNode(
            reactor, "detector:STS", load_keys(directory, identity="detector.STS", enrol=True), request_timeout=1.0
        )
        self.addCleanup(client_node.close)
        client = client_node.connect(server.address)
        for _ in range(50):  # the handshake may be refused until the allow-list is re-read
            try:
                await client.request("x", "status", {})
                break
            except RequestError:
                await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(seen[-1], "detector.STS")
        (directory / "authorized" / "detector.STS.key").unlink()
        for _ in range(100):
            if warnings.matching("no longer in the allow-list"):
                break
            try:
                await client.request("x", "status", {}, timeout=0.3)
            except RequestError:
                pass
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(warnings.matching("no longer in the allow-list"), warnings.lines[-20:])
        self.assertTrue(warnings.matching("detector.STS revoked"))
        count = len(seen)
        with self.assertRaises(RequestError):
            await client.request("x", "status", {}, timeout=0.5)
        self.assertEqual(len(seen), count)


class BulkRegistrationTests(TestCase):
    """register_many (bulk registration) is bound to the key like register."""

    def test_register_many(self) -> None:
        """A sim host's key registers its own detectors in bulk, never one more."""
        Warnings(self)
        calls: list[Request] = []
        handlers = guarded("ECA registry", {"register_many": calls.append}, registry_rules())
        own = [{"kind": "detector", "id": f"D{n}"} for n in range(1, 11)]
        handlers["register_many"](request("register_many", "simhost.D#1-10", agents=own))
        self.assertEqual(len(calls), 1)
        with self.assertRaises(RequestError) as caught:
            foreign = [*own, {"kind": "pca", "id": "demo"}]
            handlers["register_many"](request("register_many", "simhost.D#1-10", agents=foreign))
        self.assertIn("may not register pca demo", caught.exception.reason)
        self.assertEqual(len(calls), 1)
