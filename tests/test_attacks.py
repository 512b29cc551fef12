"""
Forgeries by a holder of one detector host's key, against the real agents of
C{ecs-demo} with real ZeroMQ sockets: each is refused with C{forbidden}, leaves
a WARN line naming the key and the message type, and the real agents go on
working (a configure through the API still reaches QA_Active).

The key is a valid one (detector STS's own, in the allow-list of every
agent), so every message passes CURVE: what stops it is authorisation by the
key that sent it (L{ecs.net.authz}).
"""

from __future__ import annotations

from twisted.internet import reactor, task

from tests.attack_harness import DemoHarness
from tests.procs import spawn, tool

STS = "detector.STS"


class RegistryHijackTests(DemoHarness):
    """The registry binds each agent id to its own key."""

    async def test_register_and_unregister_others_refused(self) -> None:
        """Registering the PCA or another detector elsewhere, or unregistering them, is refused and logged."""
        await self.start_demo()
        attacker = self.attacker(STS)
        registry = self.registry_address
        real_pca = await self.lookup(attacker, "pca", "demo")
        fake = {"kind": "pca", "id": "demo", "endpoint": "tcp://127.0.0.1:9", "host": "x", "pid": 1}
        for sender in ("pca:demo", "eca", "detector:STS"):
            error = await self.refused(attacker, registry, "registry", "register", fake, sender)
            self.assertIn(f"key {STS}", error.reason)
        await self.refused(attacker, registry, "registry", "unregister", {"kind": "pca", "id": "demo"}, "pca:demo")
        await self.refused(attacker, registry, "registry", "unregister", {"kind": "detector", "id": "TRD"}, "x")
        await self.refused(
            attacker, registry, "registry", "register",
            {"kind": "detector", "id": "TRD", "endpoint": "tcp://127.0.0.1:9"}, "detector:STS",
        )
        self.assertEqual(await self.lookup(attacker, "pca", "demo"), real_pca)
        await self.until_logged(f"ECA registry: 'register' from key {STS} refused", self.demo)
        await self.until_logged(f"ECA registry: 'unregister' from key {STS} refused", self.demo)
        await self.configure_works()


class CommandForgeryTests(DemoHarness):
    """Commands sent straight to the PCA or a controller, claiming to come from the ECA."""

    async def test_pca_refuses_commands_from_a_detector_key(self) -> None:
        """abort, configure with inline parameters, lock, unlock, reset to the PCA: all refused and logged."""
        await self.start_demo()
        attacker = self.attacker(STS)
        pca = await self.lookup(attacker, "pca", "demo")
        inline = {"configs": [{"system": "STS", "id": "evil", "parameters": {"hv": 9999}}]}
        for type, body in (("abort", {}), ("configure", inline), ("lock", {}), ("unlock", {}),
                           ("reset", {"system": "TRD"}), ("add_detector", {"detector": "X"}),
                           ("alarm", {"detector": "TRD", "source": "DCS", "message": "HV trip"})):
            for sender in ("eca", "detector:STS"):
                error = await self.refused(attacker, pca, "demo", type, body, sender)
                self.assertIn(f"'{type}' from key {STS} refused", error.reason)
        await self.until_logged(f"'configure' from key {STS} refused", ("pca", "demo"))
        self.assertEqual((await self.partition())["state"], "Idle")
        await self.configure_works()

    async def test_controllers_refuse_commands_from_another_detector_key(self) -> None:
        """Another detector and the global systems obey neither commands nor assign/inject from STS's key."""
        await self.start_demo()
        attacker = self.attacker(STS)
        trd = await self.lookup(attacker, "detector", "TRD")
        dcs = await self.lookup(attacker, "global", "DCS")
        for type, body in (("error", {}), ("configure", {"config": {}}), ("reset", {}), ("abort", {}),
                           ("assign", {"partition": None}), ("inject", {"what": "error"})):
            await self.refused(attacker, trd, "TRD", type, body, "eca")
        for type in ("error", "abort", "configure"):
            await self.refused(attacker, dcs, "DCS", type, {"partition": "demo"}, "pca:demo")
        await self.refused(attacker, dcs, "DCS", "remove_partition", {"partition": "demo"}, "eca")
        # STS's key does not even command STS: only the ECA and the PCA of its partition do.
        sts = await self.lookup(attacker, "detector", "STS")
        await self.refused(attacker, sts, "STS", "error", {}, "detector:STS")
        # Nor in a batch: each request of it meets its handler's authorisation, as if alone.
        batch = {"requests": [{"target": "TRD", "type": t, "body": {}} for t in ("error", "abort")]}
        reply = await attacker.connect(trd).request("*", "batch", batch, sender="pca:demo")
        self.assertEqual([(a["status"], a.get("code")) for a in reply["replies"]], [("error", "forbidden")] * 2)
        await self.until_logged(f"detector TRD: 'error' from key {STS} refused", ("detector", "TRD"))
        systems = {s["id"]: s for s in (await self.partition())["systems"]}
        self.assertNotEqual(systems["TRD"]["state"], "Error", systems["TRD"])
        self.assertNotEqual(systems["DCS"]["state"], "Error", systems["DCS"])
        await self.configure_works()


class StateForgeryTests(DemoHarness):
    """States are accepted only from the key of the system they describe."""

    async def test_forged_states_dropped(self) -> None:
        """A 'states' message for TRD (Error, sequence + 1000) from STS's key changes nothing the ECA shows."""
        await self.start_demo()
        attacker = self.attacker(STS)
        pca = await self.lookup(attacker, "pca", "demo")
        before = {s["id"]: s for s in (await self.partition())["systems"]}
        forged = {"system": "TRD", "partition": "demo", "state": "Error", "summary": "Error",
                  "seq": 100_000, "comment": "HV trip", "tag": None}
        for sender in ("detector:TRD", "detector:STS"):
            try:
                attacker.connect(pca).notify("demo", "states", {"updates": [forged]}, sender=sender)
            except Exception as e:  # the notification itself is not refused locally
                self.fail(f"notify raised {e!r}")
        await self.until_logged(f"'states' from key {STS} refused", ("pca", "demo"))
        await task.deferLater(reactor, 1.0, lambda: None)  # let anything that got through arrive
        after = {s["id"]: s for s in (await self.partition())["systems"]}
        self.assertEqual(after["TRD"]["state"], before["TRD"]["state"], after["TRD"])
        self.assertNotEqual(after["TRD"].get("comment"), "HV trip", after["TRD"])
        await self.configure_works()


class HostKeyTests(DemoHarness):
    """An agent host that holds no server secret serves with its own pair."""

    async def test_detector_on_a_host_without_the_server_secret(self) -> None:
        """
        STS moved to a "host" with the server's public key, the allow-list
        and STS's own pair only: it makes its host pair, registers an
        endpoint naming that key, and the PCA configures it.
        """
        import shutil

        await self.start_demo()
        code, body = await self.api("POST", "/api/agents/detector:STS/stop")
        self.assertEqual(code, 200, body)
        await self.until_partition(
            lambda p: not next(s for s in p["systems"] if s["id"] == "STS")["connected"], "without STS"
        )
        host = self.tmp / "daq07"
        keys = host / "keys"
        (keys / "agents").mkdir(parents=True)
        shutil.copyfile(self.var / "keys" / "server.key", keys / "server.key")
        shutil.copytree(self.var / "keys" / "authorized", keys / "authorized")
        for name in ("detector.STS.key", "detector.STS.key_secret"):
            shutil.copyfile(self.var / "keys" / "agents" / name, keys / "agents" / name)
        seen = len(self.demo.lines)
        detector, _ = spawn(
            self,
            "daq07-STS",
            [tool("twistd"), "-n", "--pidfile=", "ecs-detector", "--id", "STS", "--type", "STS",
             "--config", str(self.var / "demo-ecs.yaml"), "--state-dir", str(host)],
            cwd=str(host),
        )
        for _ in range(600):
            lines = [x for x in self.demo.lines[seen:] if "registered detector STS at" in x]
            if lines:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(lines, "\n".join(detector.lines[-40:]))
        self.assertIn("#curve=", lines[0])
        self.assertTrue((keys / "host.key_secret").exists())
        self.assertFalse((keys / "server.key_secret").exists())
        await self.until_partition(lambda p: all(s["connected"] for s in p["systems"]), "with STS again")
        await self.configure_works()
        self.assertFalse([x for x in detector.lines if "Traceback" in x], "\n".join(detector.lines[-40:]))
