# -*- test-case-name: tests.test_eca -*-
"""
Tests for the ECA's collaborators (L{agents.eca.compose}, L{agents.eca.center},
L{agents.eca.inventory}, L{agents.eca.partitions}...): the real Experiment
Control Agent behind the HTTP API, with real PCAs and
controllers on the in-memory transport and a real SQLite store
(L{tests.eca_harness}).

(About 1,000 lines, one class per area of the ECA, all on the one harness;
the collaborators alone are tested in tests/test_eca_parts.py and
tests/test_eca_picture.py.)
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from zope.interface.verify import verifyObject

from ecs import protocol, users
from ecs.control import ControlError, IControlCenter, User
from ecs.net.transport import Request, RequestError
from tests.eca_harness import PASSWORD, ClockedHarness

ALL_SYSTEMS_DEMO = {"TFC", "DCS", "QA", "FLES", "STS", "MVD", "TOF", "TRD", "RICH"}


class AuthTests(ClockedHarness):
    """Login, logout and roles."""

    async def test_login_logout_releases_control(self) -> None:
        """Logout forgets the token and releases every control its user held."""
        r = await self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual((r.json["user"], r.json["roles"]), ("operator", ["operator"]))
        token = r.json["token"]
        self.assertEqual((await self.call("POST", "/api/partitions/demo/control", token=token)).code, 200)
        self.assertEqual(self.eca.partition("demo")["controller"], "operator")
        self.assertEqual((await self.call("POST", "/api/logout", token=token)).code, 200)
        self.assertIsNone(self.eca.partition("demo")["controller"])
        self.assertIsNone(await self.store.control("demo"))
        self.assertError(await self.call("GET", "/api/partitions", token=token), 401, "unauthenticated")
        await self.take("operator2")  # free for others

    async def test_wrong_password(self) -> None:
        """A wrong password or an unknown user gives 401, and the refusal is audited."""
        for name in ("operator", "nobody"):
            r = await self.call("POST", "/api/login", json={"username": name, "password": "wrong password"})
            self.assertError(r, 401, "unauthenticated")
        outcomes = [(a.user, a.outcome) for a in await self.store.audit_entries() if a.action == "login"]
        self.assertIn(("operator", "refused"), outcomes)

    def test_provides_the_interface(self) -> None:
        """The ECA's facade provides IControlCenter, every method with the interface's parameters."""
        verifyObject(IControlCenter, self.eca)

    async def test_unauthenticated(self) -> None:
        """Without a token, or with a bad one, every API path but health and metrics answers 401."""
        for method, path in [
            ("GET", "/api/partitions"),
            ("POST", "/api/partitions/demo/control"),
            ("GET", "/api/runs"),
            ("PUT", "/api/configs/x"),
            ("POST", "/api/detectors/TRD/move"),
        ]:
            self.assertError(await self.call(method, path), 401, "unauthenticated")
            self.assertError(await self.call(method, path, token="not-a-token"), 401, "unauthenticated")
        self.assertEqual((await self.call("GET", "/api/health")).code, 200)

    async def test_roles(self) -> None:
        """Each action needs its role: 403 names it, and nothing changes."""
        cases = [
            ("viewer", "POST", "/api/partitions/demo/control", None, "operator"),
            ("operator", "POST", "/api/control", None, "expert"),
            ("operator", "PUT", "/api/configs/sts-x", {"system": "STS", "parameters": {}}, "expert"),
            ("operator", "POST", "/api/partitions", {"id": "p9"}, "expert"),
            ("expert", "GET", "/api/users", None, "admin"),
            ("operator", "POST", "/api/partitions/demo/control?force=1", None, "admin"),
        ]
        for user, method, path, body, role in cases:
            kwargs: dict[str, Any] = {"json": body} if body is not None else {}
            r = await self.call(method, path, token=await self.login(user), **kwargs)
            self.assertError(r, 403, "forbidden")
            self.assertIn(role, r.json["reason"])
        self.assertEqual(await self.store.controls(), [])
        self.assertEqual([p.id for p in await self.store.partitions()], ["demo", "p2"])
        self.assertEqual(len(await self.ok("GET", "/api/users", "admin")), 5)


class ControlTests(ClockedHarness):
    """Control ownership of partitions and of the ECS."""

    async def test_take_control_held(self) -> None:
        """A second operator gets 409 naming the holder; taking again as holder is fine."""
        await self.take("operator")
        r = await self.call("POST", "/api/partitions/demo/control", token=await self.login("operator2"))
        self.assertError(r, 409, "conflict", holder="operator")
        await self.take("operator")
        self.assertEqual((await self.store.control("demo")).holder, "operator")
        r = await self.call("DELETE", "/api/partitions/demo/control", token=await self.login("operator2"))
        self.assertError(r, 409, "conflict", holder="operator")
        await self.ok("DELETE", "/api/partitions/demo/control", "operator")
        self.assertIsNone(await self.store.control("demo"))

    async def test_admin_force(self) -> None:
        """An admin takes a held control with ?force=1; the previous holder loses it."""
        await self.take("operator")
        r = await self.call("POST", "/api/partitions/demo/control", token=await self.login("admin"))
        self.assertError(r, 409, "conflict", holder="operator")
        body = await self.ok("POST", "/api/partitions/demo/control?force=1", "admin")
        self.assertEqual(body["holder"], "admin")
        self.assertEqual(self.eca.partition("demo")["controller"], "admin")
        self.assertEqual((await self.store.control("demo")).holder, "admin")
        r = await self.call("POST", "/api/partitions/demo/start", token=await self.login("operator"))
        self.assertError(r, 409, "conflict", holder="admin")

    async def test_ecs_control(self) -> None:
        """The ECS control is separate from partitions and needs the expert role."""
        r = await self.call("GET", "/api/control", token=await self.login("viewer"))
        self.assertEqual((r.code, r.json["holder"], r.json["since"]), (200, None, None))
        await self.take("expert", "ecs")
        self.assertEqual((await self.store.control("ecs")).holder, "expert")
        r = await self.call("GET", "/api/control", token=await self.login("viewer"))
        self.assertEqual((r.json["scope"], r.json["holder"]), ("ecs", "expert"))
        self.assertIsInstance(r.json["since"], float)
        self.assertIsNone(await self.store.control("demo"))
        r = await self.call("POST", "/api/control", token=await self.login("admin"))
        self.assertError(r, 409, "conflict", holder="expert")
        r = await self.call("POST", "/api/partitions/ecs/control", token=await self.login("operator"))
        self.assertError(r, 404, "not_found")

    async def test_concurrent_takers(self) -> None:
        """Of 100 users taking control at once through the center exactly one wins; the rest learn who."""
        hashed = users.hash_password("irrelevant password")
        for i in range(100):
            await self.store.add_user(f"racer{i}", hashed, ["operator"])
        attempts = [self.eca.take_control(User(f"racer{i}", ("operator",)), "demo") for i in range(100)]
        results = await self.until(defer.DeferredList(attempts, consumeErrors=True))
        winners = [value["holder"] for ok, value in results if ok]
        self.assertEqual(len(winners), 1)
        losers = [value.value for ok, value in results if not ok]
        self.assertEqual(len(losers), 99)
        for error in losers:
            self.assertIsInstance(error, ControlError)
            self.assertEqual((error.code, error.details["holder"]), ("conflict", winners[0]))
        self.assertEqual((await self.store.control("demo")).holder, winners[0])
        self.assertEqual(self.eca.partition("demo")["controller"], winners[0])


class CommandTests(ClockedHarness):
    """Partition commands through the API, run records."""

    async def test_partition_reads(self) -> None:
        """GET /api/partitions and /api/partitions/{id} show the live state; an unknown id is 404."""
        listed = await self.ok("GET", "/api/partitions", "viewer")
        self.assertEqual(
            [(p["id"], p["state"], p["connected"], p["controller"]) for p in listed],
            [("demo", "Idle", True, None), ("p2", "Idle", True, None)],
        )
        details = await self.ok("GET", "/api/partitions/p2", "viewer")
        self.assertEqual(
            {s["id"]: s["kind"] for s in details["systems"]},
            {"TFC": "global", "DCS": "global", "QA": "global", "FLES": "global", "STS2": "detector"},
        )
        self.assertEqual(details["allowed"], ["abort", "configure"])
        self.assertFalse(details["locked"])
        self.assertError(
            await self.call("GET", "/api/partitions/nope", token=await self.login("viewer")), 404, "not_found"
        )

    async def test_reset(self) -> None:
        """A system in Error is reset through the API; one that is not in Error cannot be."""
        await self.take("operator")
        operator = await self.login("operator")
        r = await self.call("POST", "/api/partitions/demo/reset", token=operator, json={"system": "TRD"})
        self.assertError(r, 409, "conflict", pca_code=protocol.NOT_ALLOWED)
        await self.until(self.tester.connect(self.hosts["TRD"].address).request("TRD", "inject", {"what": "error"}))
        await self.wait_for(lambda: "reset" in self.eca.partition("demo")["allowed"], what="TRD in Error")
        await self.ok("POST", "/api/partitions/demo/reset", "operator", {"system": "TRD"})
        await self.wait_for(lambda: "reset" not in self.eca.partition("demo")["allowed"], what="TRD reset")
        self.assertNotEqual(self.pcas["demo"].sequencer.partition.systems["TRD"].summary, "Error")

    async def test_runs_list(self) -> None:
        """GET /api/runs lists runs newest first, by partition, limited."""
        for partition, tag in (("demo", "demo"), ("p2", "p2")):
            await self.take("operator", partition)
            await self.configure(partition=partition, tag=tag)
            await self.ok("POST", f"/api/partitions/{partition}/start", "operator")
            await self.wait_state(partition, "Recording")
            await self.ok("POST", f"/api/partitions/{partition}/stop", "operator")
            await self.wait_state(partition, "QA_Active")
        runs = await self.wait_for_runs(lambda rs: len(rs) == 2 and all(r["outcome"] for r in rs), "")
        self.assertEqual([(r["number"], r["partition"]) for r in runs], [(2, "p2"), (1, "demo")])
        self.assertEqual([r["number"] for r in await self.ok("GET", "/api/runs?partition=demo", "viewer")], [1])
        self.assertEqual([r["number"] for r in await self.ok("GET", "/api/runs?limit=1", "viewer")], [2])
        self.assertError(
            await self.call("GET", "/api/runs?limit=0", token=await self.login("viewer")), 400, "bad_request"
        )

    async def test_configure_by_tag_auto(self) -> None:
        """Configure with tag demo and auto reaches QA_Active with every system configured."""
        await self.take("operator")
        reply = await self.ok("POST", "/api/partitions/demo/configure", "operator", {"tag": "demo", "auto": True})
        self.assertEqual(reply["tag"], "demo")
        details = await self.wait_state("demo", "QA_Active")
        self.assertEqual(details["tag"], "demo")
        self.assertEqual({s["id"] for s in details["systems"]}, ALL_SYSTEMS_DEMO)
        self.assertEqual(details["allowed"], ["abort", "configure", "start"])
        tags = {s["id"]: s["tag"] for s in details["systems"]}
        self.assertEqual(tags["STS"], "sts-default")
        self.assertEqual(tags["TFC"], "tfc-default")
        # the PCA agrees, and the command is in the audit trail
        self.assertEqual(self.pcas["demo"].sequencer.partition.state, "QA_Active")
        audit = [(a.user, a.action, a.outcome) for a in await self.store.audit_entries() if a.action == "configure"]
        self.assertEqual(audit, [("operator", "configure", "ok")])

    async def test_configure_without_control(self) -> None:
        """Without control configure is 403; with someone else holding it 409 naming them."""
        body = {"tag": "demo", "auto": True}
        r = await self.call("POST", "/api/partitions/demo/configure", token=await self.login("operator"), json=body)
        self.assertError(r, 403, "forbidden")
        await self.take("operator2")
        r = await self.call("POST", "/api/partitions/demo/configure", token=await self.login("operator"), json=body)
        self.assertError(r, 409, "conflict", holder="operator2")
        await self.settle()
        self.assertEqual(self.pcas["demo"].sequencer.partition.state, "Idle")
        self.assertIsNone(self.pcas["demo"].sequencer.op)

    async def test_configure_locked(self) -> None:
        """A partition locked by a management operation answers 423."""
        await self.take("operator")
        self.assertTrue((await self.to_pca("demo", "lock"))["locked"])
        await self.wait_for(lambda: self.eca.partition("demo")["locked"])
        r = await self.call(
            "POST",
            "/api/partitions/demo/configure",
            token=await self.login("operator"),
            json={"tag": "demo", "auto": True},
        )
        self.assertError(r, 423, "locked")
        await self.to_pca("demo", "unlock")
        await self.configure()

    async def test_pca_refusal(self) -> None:
        """A command the PCA refuses is 409 with its reason and code."""
        await self.take("operator")
        r = await self.call("POST", "/api/partitions/demo/start", token=await self.login("operator"))
        body = self.assertError(r, 409, "conflict", pca_code=protocol.NOT_ALLOWED)
        self.assertIn("QA_Active", body["reason"])
        r = await self.call(
            "POST",
            "/api/partitions/demo/configure",
            token=await self.login("operator"),
            json={"tag": "no-such-tag", "auto": True},
        )
        self.assertError(r, 404, "not_found")
        r = await self.call(
            "POST", "/api/partitions/p2/configure", token=await self.login("operator"), json={"tag": "p2", "auto": True}
        )
        self.assertError(r, 403, "forbidden")  # control of demo is not control of p2

    async def test_configure_by_config_ids(self) -> None:
        """Configure with a list of configuration ids (no tag) works too."""
        await self.take("operator", "p2")
        ids = ["tfc-pulser", "dcs-default", "qa-default", "fles-default", "sts2-default"]
        await self.ok("POST", "/api/partitions/p2/configure", "operator", {"configs": ids, "auto": True})
        details = await self.wait_state("p2", "QA_Active")
        self.assertEqual({s["id"]: s["tag"] for s in details["systems"]}["TFC"], "tfc-pulser")
        self.assertIsNone(details["tag"])

    async def test_config_versions_shown(self) -> None:
        """Each system shows the version of the configuration it runs, in the details and in its state events."""
        edited = {"system": "STS", "parameters": {"threshold_adc": 7}}
        await self.ok("PUT", "/api/configs/sts-default", "expert", edited)
        stub, reader = await self.open_events("/api/events?partition=demo")
        await self.take("operator")
        await self.configure()
        details = await self.ok("GET", "/api/partitions/demo", "viewer")
        systems = {s["id"]: s for s in details["systems"]}
        self.assertEqual((systems["STS"]["tag"], systems["STS"]["config_version"]), ("sts-default", 2))
        self.assertEqual((systems["TFC"]["tag"], systems["TFC"]["config_version"]), ("tfc-default", 1))
        events = await self.events_until(
            stub,
            reader,
            lambda es: any(
                e["data"].get("key") == "system/STS" and (e["data"].get("value") or {}).get("tag") == "sts-default"
                for e in es
            ),
        )
        sts = [e["data"]["value"] for e in events if e["data"].get("key") == "system/STS" and e["data"]["value"]]
        self.assertEqual([v.get("config_version") for v in sts if v.get("tag") == "sts-default"][-1], 2)
        # Before any configure the ECA sent, a system shows no version.
        p2 = await self.ok("GET", "/api/partitions/p2", "viewer")
        self.assertNotIn("config_version", {s["id"]: s for s in p2["systems"]}["STS2"])

    async def test_start_stop_run_record(self) -> None:
        """Start then stop records a run with the exact configuration versions used, even after an edit."""
        await self.take("operator")
        await self.configure()
        original = (await self.store.config("sts-default")).parameters
        saved = await self.ok(
            "PUT", "/api/configs/sts-default", "expert", {"system": "STS", "parameters": {"threshold_adc": 99}}
        )
        self.assertEqual(saved["version"], 2)
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        run = await self.wait_for(lambda: self.store.open_run("demo"), what="run record")
        self.assertEqual((run.partition, run.tag, run.operator, run.outcome), ("demo", "demo", "operator", None))
        self.assertEqual(set(run.configs), ALL_SYSTEMS_DEMO)
        self.assertEqual(run.configs["STS"], {"config_id": "sts-default", "version": 1, "parameters": original})
        self.assertEqual(run.configs["TFC"]["config_id"], "tfc-default")
        await self.ok("POST", "/api/partitions/demo/stop", "operator")
        await self.wait_state("demo", "QA_Active")
        runs = await self.wait_for_runs(lambda rs: rs and rs[0]["outcome"] == "stopped")
        self.assertEqual(len(runs), 1)
        self.assertEqual(runs[0]["number"], run.number)
        self.assertEqual(runs[0]["configs"]["STS"]["version"], 1)
        self.assertIsNotNone(runs[0]["ended"])

    async def wait_for_runs(self, predicate: Any, query: str = "?partition=demo") -> list[dict[str, Any]]:
        """Poll GET /api/runs until C{predicate(runs)}."""
        for _ in range(250):
            runs = await self.ok("GET", "/api/runs" + query, "viewer")
            if predicate(runs):
                return runs
            await self.settle(0.04)
        self.fail(f"runs never matched: {runs}")

    async def test_abort_recording(self) -> None:
        """Abort while recording goes back to Idle and closes the run as aborted."""
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        await self.ok("POST", "/api/partitions/demo/abort", "operator")
        await self.wait_state("demo", "Idle")
        runs = await self.wait_for_runs(lambda rs: rs and rs[0]["outcome"] is not None)
        self.assertEqual([r["outcome"] for r in runs], ["aborted"])
        self.assertIsNone(self.eca.partition("demo")["tag"])

    async def test_abort_when_active(self) -> None:
        """Abort from QA_Active goes back to Idle and records no run."""
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/abort", "operator")
        await self.wait_state("demo", "Idle")
        await self.settle()
        self.assertEqual(await self.ok("GET", "/api/runs", "viewer"), [])

    async def test_refused_configure_keeps_run_configs(self) -> None:
        """A configure the PCA refuses does not change which configurations the next run records."""
        await self.take("operator")
        await self.configure()
        await self.to_pca("demo", "lock")
        r = await self.call(
            "POST",
            "/api/partitions/demo/configure",
            token=await self.login("operator"),
            json={"tag": "demo-alt", "auto": True},
        )
        self.assertError(r, 423, "locked")
        await self.to_pca("demo", "unlock")
        await self.wait_for(lambda: not self.eca.partition("demo")["locked"])
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        runs = await self.wait_for_runs(lambda rs: bool(rs))
        self.assertEqual(runs[0]["configs"]["STS"]["config_id"], "sts-default")
        self.assertEqual(runs[0]["configs"]["TFC"]["config_id"], "tfc-default")
        self.assertEqual(runs[0]["tag"], "demo")

    async def test_run_records_partition_systems_only(self) -> None:
        """Configurations the PCA ignored (systems not in the partition) are not in the run record."""
        await self.ok(
            "PUT",
            "/api/tags/p2-plus",
            "expert",
            {"configs": ["tfc-default", "dcs-default", "qa-default", "fles-default", "sts2-default", "trd-default"]},
        )
        await self.take("operator", "p2")
        reply = await self.ok("POST", "/api/partitions/p2/configure", "operator", {"tag": "p2-plus", "auto": True})
        self.assertEqual(reply["ignored"], ["TRD"])
        await self.wait_state("p2", "QA_Active")
        await self.ok("POST", "/api/partitions/p2/start", "operator")
        await self.wait_state("p2", "Recording")
        runs = await self.wait_for_runs(bool, "?partition=p2")
        self.assertEqual(set(runs[0]["configs"]), {"TFC", "DCS", "QA", "FLES", "STS2"})

    async def test_stopped_run_outcome_despite_management(self) -> None:
        """A move attempted while a run stops does not turn the run's outcome into failed."""
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        await self.take("expert", "ecs")
        self.network.set_down(self.globals_host.address)  # the stop waits to be delivered
        await self.ok("POST", "/api/partitions/demo/stop", "operator")
        r = await self.call("POST", "/api/detectors/TRD/move", token=await self.login("expert"), json={"to": "p2"})
        self.network.set_down(self.globals_host.address, False)
        self.assertError(r, 409, "conflict")
        runs = await self.wait_for_runs(lambda rs: rs and rs[0]["outcome"] is not None)
        self.assertEqual(runs[0]["outcome"], "stopped")

    async def test_disconnected_pca(self) -> None:
        """A PCA that stops answering is shown as disconnected, not with its stale state."""
        self.network.set_down(self.pcas["p2"].address)
        await self.wait_for(lambda: not self.eca.partition("p2")["connected"], what="p2 disconnected")
        details = self.eca.partition("p2")
        self.assertEqual(details["state"], "Connection Problem")
        self.assertEqual(details["allowed"], [])
        self.assertTrue(all(s["connected"] is False for s in details["systems"]))
        self.network.set_down(self.pcas["p2"].address, False)
        await self.wait_idle("p2")
        self.assertEqual(self.parts.partitions.get("p2").losses, 1)


class HousekeepingTests(ClockedHarness):
    """What the ECA does on its own: inactive control released, old logs pruned."""

    async def test_inactive_control_released(self) -> None:
        """A control unused for longer than the inactivity time is released, and the stream says why."""
        stub, reader = await self.open_events()
        await self.take("operator")
        self.parts.scopes.timeout = 0.0
        await self.parts.housekeeping()
        self.assertIsNone(await self.store.control("demo"))
        self.assertIsNone(self.eca.partition("demo")["controller"])
        released = lambda e: e["event"] == "control" and e["data"]["reason"] == "inactivity"  # noqa: E731
        events = await self.events_until(stub, reader, lambda es: any(released(e) for e in es))
        # other events (the partition's allowed commands) may follow it
        self.assertEqual([e["data"]["previous"] for e in events if released(e)], ["operator"])

    async def test_old_logs_pruned(self) -> None:
        """Log lines older than the retention are deleted."""
        self.parts.logbook.log("info", "test", "old news", None, when=self.clock.seconds() - 100)
        await self.parts.logbook.flush()
        self.assertEqual(len(await self.store.logs(q="old news")), 1)
        self.parts.log_retention = 50.0
        await self.parts.housekeeping()
        self.assertEqual(await self.store.logs(q="old news"), [])


class RestartTests(ClockedHarness):
    """An ECA restart does not disturb running partitions."""

    async def test_eca_restart(self) -> None:
        """After an ECA restart the agents register again and the partition is seen as it is, undisturbed."""
        await self.take("operator")
        await self.configure()
        await self.wait_state("demo", "QA_Active")
        pca_seq = self.pcas["demo"].publisher.seq
        await self.until(self.core.stopService())
        await self.start_eca()
        await self.wait_for(lambda: self.eca.partition("demo")["connected"], what="PCA registered again")
        await self.wait_for(lambda: self.eca.partition("demo")["state"] == "QA_Active", what="state mirrored")
        self.assertEqual(self.pcas["demo"].sequencer.partition.state, "QA_Active")
        self.assertIsNone(self.pcas["demo"].sequencer.op)
        self.assertGreaterEqual(self.pcas["demo"].publisher.seq, pca_seq)  # the same PCA, not restarted
        self.assertEqual(self.eca.partition("demo")["tag"], "demo")


class UserTests(ClockedHarness):
    """User administration through the API, against the real store."""

    async def test_user_lifecycle(self) -> None:
        """An admin adds a user, changes the password (old tokens end) and deletes the user."""
        added = await self.ok(
            "POST", "/api/users", "admin", {"username": "newbie", "password": "first password", "roles": ["operator"]}
        )
        self.assertEqual((added["name"], added["roles"]), ("newbie", ["operator"]))
        self.assertNotIn("password_hash", added)
        r = await self.call("POST", "/api/login", json={"username": "newbie", "password": "first password"})
        token = r.json["token"]
        self.assertEqual((await self.call("GET", "/api/partitions", token=token)).code, 200)
        await self.ok("PUT", "/api/users/newbie", "admin", {"password": "second password", "roles": ["expert"]})
        self.assertError(await self.call("GET", "/api/partitions", token=token), 401, "unauthenticated")
        r = await self.call("POST", "/api/login", json={"username": "newbie", "password": "second password"})
        self.assertEqual(r.json["roles"], ["expert"])
        await self.ok("DELETE", "/api/users/newbie", "admin")
        r = await self.call("POST", "/api/login", json={"username": "newbie", "password": "second password"})
        self.assertError(r, 401, "unauthenticated")
        self.assertNotIn("newbie", {u["name"] for u in await self.ok("GET", "/api/users", "admin")})

    async def test_user_refusals(self) -> None:
        """Short passwords and unknown roles 400, duplicates and self-deletion 409, unknown users 404."""
        admin = await self.login("admin")
        cases = [
            ("POST", "/api/users", {"username": "x", "password": "short", "roles": ["viewer"]}, 400),
            ("POST", "/api/users", {"username": "x", "password": "long enough", "roles": ["king"]}, 400),
            ("POST", "/api/users", {"username": "operator", "password": "long enough", "roles": ["viewer"]}, 409),
            ("PUT", "/api/users/nobody", {"roles": ["viewer"]}, 404),
            ("DELETE", "/api/users/admin", None, 409),
        ]
        for method, path, body, code in cases:
            kwargs: dict[str, Any] = {"json": body} if body is not None else {}
            self.assertEqual((await self.call(method, path, token=admin, **kwargs)).code, code, (method, path, body))
        self.assertEqual(len(await self.store.users()), 5)


class ConfigTests(ClockedHarness):
    """Versioned configurations and tags."""

    async def test_config_versions(self) -> None:
        """PUT twice gives versions 1 and 2; ?version=1 still reads the first."""
        first = await self.ok("PUT", "/api/configs/trd-test", "expert", {"system": "TRD", "parameters": {"gain": 1}})
        second = await self.ok("PUT", "/api/configs/trd-test", "expert", {"system": "TRD", "parameters": {"gain": 2}})
        self.assertEqual((first["version"], second["version"]), (1, 2))
        latest = await self.ok("GET", "/api/configs/trd-test", "viewer")
        self.assertEqual((latest["version"], latest["versions"], latest["parameters"]), (2, [1, 2], {"gain": 2}))
        old = await self.ok("GET", "/api/configs/trd-test?version=1", "viewer")
        self.assertEqual((old["version"], old["parameters"]), (1, {"gain": 1}))
        self.assertError(
            await self.call("GET", "/api/configs/trd-test?version=3", token=await self.login("viewer")),
            404,
            "not_found",
        )
        listed = {c["config_id"]: c["version"] for c in await self.ok("GET", "/api/configs?system=TRD", "viewer")}
        self.assertEqual(listed, {"trd-default": 1, "trd-test": 2})

    async def test_config_validation(self) -> None:
        """Unknown systems, a changed system, bad names: 400; unknown ids 404; in-use delete 409."""
        expert = await self.login("expert")
        cases = [
            ("/api/configs/x1", {"system": "NOPE", "parameters": {}}),
            ("/api/configs/sts-default", {"system": "MVD", "parameters": {}}),
            ("/api/configs/bad%20name", {"system": "STS", "parameters": {}}),
            ("/api/configs/x2", {"system": "STS", "parameters": []}),
        ]
        for path, body in cases:
            self.assertError(await self.call("PUT", path, token=expert, json=body), 400, "bad_request")
        self.assertError(await self.call("GET", "/api/configs/nope", token=expert), 404, "not_found")
        self.assertError(await self.call("DELETE", "/api/configs/sts-default", token=expert), 409, "conflict")
        self.assertEqual([v.version for v in await self.store.config_versions("sts-default")], [1])

    async def test_tag_validation(self) -> None:
        """A tag with two configurations of one system, or an unknown one, is 400 and not saved."""
        expert = await self.login("expert")
        await self.ok("PUT", "/api/configs/sts-b", "expert", {"system": "STS", "parameters": {"threshold_adc": 3}})
        r = await self.call("PUT", "/api/tags/two-sts", token=expert, json={"configs": ["sts-default", "sts-b"]})
        body = self.assertError(r, 400, "bad_request")
        self.assertIn("STS", body["reason"])
        r = await self.call("PUT", "/api/tags/unknown", token=expert, json={"configs": ["sts-default", "nope"]})
        self.assertIn("nope", self.assertError(r, 400, "bad_request")["reason"])
        self.assertEqual({t["name"] for t in await self.ok("GET", "/api/tags", "viewer")}, {"demo", "demo-alt", "p2"})
        saved = await self.ok("PUT", "/api/tags/small", "expert", {"configs": ["sts-b", "tfc-pulser"]})
        self.assertEqual(saved["configs"], {"STS": "sts-b", "TFC": "tfc-pulser"})
        self.assertEqual((await self.ok("GET", "/api/tags/small", "viewer"))["configs"], saved["configs"])

    async def test_tag_compatibility(self) -> None:
        """?partition= says which tags can configure its systems (none missing), and what is missing or extra."""
        tags = {t["name"]: t for t in await self.ok("GET", "/api/tags?partition=p2", "viewer")}
        self.assertEqual((tags["p2"]["compatible"], tags["p2"]["missing"], tags["p2"]["extra"]), (True, [], []))
        self.assertFalse(tags["demo"]["compatible"])
        self.assertEqual(tags["demo"]["missing"], ["STS2"])
        self.assertEqual(tags["demo"]["extra"], ["MVD", "RICH", "STS", "TOF", "TRD"])
        tags = {t["name"]: t for t in await self.ok("GET", "/api/tags?partition=demo", "viewer")}
        self.assertTrue(tags["demo"]["compatible"])
        self.assertTrue(tags["demo-alt"]["compatible"])
        self.assertEqual((tags["p2"]["missing"], tags["p2"]["extra"]), (["MVD", "RICH", "STS", "TOF", "TRD"], ["STS2"]))
        self.assertNotIn("compatible", (await self.ok("GET", "/api/tags", "viewer"))[0])


class LogTests(ClockedHarness):
    """Logs of the PCAs and of the ECA, stored and queried."""

    async def logs(self, query: str, predicate: Any = bool) -> list[dict[str, Any]]:
        """Poll GET /api/logs until C{predicate(entries)} (logs are stored in batches)."""
        for _ in range(150):
            entries = await self.ok("GET", "/api/logs" + query, "viewer")
            if predicate(entries):
                return entries
            await self.settle(0.04)
        self.fail(f"logs never matched for {query}: {entries}")

    async def test_pca_logs_reach_store(self) -> None:
        """A PCA's log lines are stored with its partition, source, level and time."""
        await self.take("operator")
        await self.configure()
        entries = await self.logs("?partition=demo&q=configure%20with%20tag")
        self.assertEqual(entries[0]["partition"], "demo")
        self.assertEqual(entries[0]["source"], "demo")
        self.assertEqual(entries[0]["level"], "info")
        self.assertIn("configure with tag 'demo'", entries[0]["message"])
        stored = await self.store.logs(partition="demo", q="configure with tag")
        self.assertEqual([e.message for e in stored], [e["message"] for e in entries])
        self.assertEqual(await self.ok("GET", "/api/logs?partition=p2&q=configure%20with%20tag", "viewer"), [])

    async def test_log_filters(self) -> None:
        """?level= gives that level and worse, ?since= later lines, ?q= plain text (no wildcards)."""
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/configure", "operator", {"tag": "demo", "auto": True})
        await self.logs("?partition=demo&q=configure%20with%20tag")
        since = self.clock.seconds()
        await self.ok("POST", "/api/partitions/demo/abort", "operator")  # cancels the configure: a warning
        warnings = await self.logs(
            "?partition=demo&level=warn", lambda es: any("cancelled" in e["message"] for e in es)
        )
        self.assertTrue(all(e["level"] in ("warn", "error", "critical") for e in warnings))
        later = await self.logs(f"?partition=demo&since={since}", lambda es: any(e["message"] == "abort" for e in es))
        self.assertTrue(all(e["time"] >= since for e in later))
        self.assertFalse(any("configure with tag" in e["message"] for e in later))
        self.assertEqual(await self.ok("GET", "/api/logs?q=%25", "viewer"), [])
        self.assertError(
            await self.call("GET", "/api/logs?level=loud", token=await self.login("viewer")), 400, "bad_request"
        )
        self.assertError(
            await self.call("GET", "/api/logs?since=soon", token=await self.login("viewer")), 400, "bad_request"
        )


class EventTests(ClockedHarness):
    """The SSE stream and metrics with the real center."""

    async def test_live_events(self) -> None:
        """Control, state and log events of a configure arrive numbered in order."""
        stub, reader = await self.open_events()
        await self.take("operator")
        await self.configure()
        events = await self.events_until(
            stub,
            reader,
            lambda es: any(
                e["event"] == "state" and e["data"]["key"] == "partition" and e["data"]["value"]["state"] == "QA_Active"
                for e in es
            ),
        )
        ids = [e["id"] for e in events]
        self.assertEqual(ids, sorted(set(ids)))
        control = [e["data"] for e in events if e["event"] == "control"]
        self.assertEqual(control[0]["scope"], "demo")
        self.assertEqual(control[0]["holder"], "operator")
        self.assertIn("log", {e["event"] for e in events})
        self.assertTrue(any(e["event"] == "progress" for e in events))
        states = [
            e["data"]["value"]["state"] for e in events if e["event"] == "state" and e["data"]["key"] == "partition"
        ]
        self.assertIn("Configuring_TFC", states)

    async def test_resume_with_last_event_id(self) -> None:
        """A client reconnecting with Last-Event-ID gets exactly the events it missed, then live ones."""
        stub, reader = await self.open_events()
        await self.take("operator")
        seen = await self.events_until(stub, reader, lambda es: any(e["event"] == "control" for e in es))
        last = seen[-1]["id"]
        self.close_events(stub, reader)
        await self.ok("DELETE", "/api/partitions/demo/control", "operator")
        await self.take("operator2")
        stub2, reader2 = await self.open_events(headers={"Last-Event-ID": str(last)})
        events = await self.events_until(
            stub2, reader2, lambda es: len([e for e in es if e["event"] == "control"]) >= 2
        )
        self.assertGreater(events[0]["id"], last)
        controls = [(e["data"]["holder"], e["data"]["reason"]) for e in events if e["event"] == "control"]
        self.assertEqual(controls[:2], [(None, "release"), ("operator2", "take")])
        await self.ok("DELETE", "/api/partitions/demo/control", "operator2")  # live, after the replay
        events = await self.events_until(
            stub2, reader2, lambda es: len([e for e in es if e["event"] == "control"]) >= 3
        )
        ids = [e["id"] for e in events]
        self.assertEqual(ids, sorted(set(ids)))

    async def test_partition_filter(self) -> None:
        """?partition= carries that partition's events and global ones only."""
        stub, reader = await self.open_events("/api/events?partition=p2")
        await self.take("operator", "demo")
        await self.take("operator", "p2")
        events = await self.events_until(stub, reader, lambda es: any(e["event"] == "control" for e in es))
        self.assertEqual([e["data"]["scope"] for e in events if e["event"] == "control"], ["p2"])
        self.assertFalse(any(e["data"].get("partition") == "demo" for e in events))

    async def test_metrics(self) -> None:
        """/metrics shows partition states, connections, systems and command counts."""
        await self.take("operator")
        await self.call("POST", "/api/partitions/demo/start", token=await self.login("operator"))
        r = await self.call("GET", "/metrics")
        self.assertEqual(r.code, 200)
        self.assertIn("text/plain", r.header("Content-Type")[0])
        text = r.body.decode()
        self.assertIn('ecs_partition_state{partition="demo",state="Idle"} 1.0', text)
        self.assertIn('ecs_partition_connected{partition="p2"} 1.0', text)
        self.assertIn('ecs_commands_total{command="start",outcome="conflict"} 1.0', text)
        self.assertIn('ecs_command_duration_seconds_count{command="start"} 1.0', text)
        self.assertIn('ecs_heartbeat_losses_total{partition="demo"} 0.0', text)
        self.assertIn('ecs_systems{partition="p2",state="Unconfigured"} 5.0', text)
        self.assertIn('ecs_systems_connected{partition="demo"} 9.0', text)
        self.assertIn("ecs_event_streams_open 0.0", text)

    async def test_metrics_of_a_configure_and_a_stream(self) -> None:
        """A configure times each of its stages once; an open event stream is counted; a heartbeat loss too."""
        await self.take("operator")
        await self.configure()
        await self.open_events()
        self.network.set_down(self.pcas["p2"].address, True)
        await self.wait_for(lambda: not self.eca.partition("p2")["connected"], what="p2 lost")
        self.network.set_down(self.pcas["p2"].address, False)
        await self.wait_idle("p2")
        text = (await self.call("GET", "/metrics")).body.decode()
        for stage in self.sequence.stages:
            self.assertIn(f'ecs_configure_stage_duration_seconds_count{{stage="{stage.name}"}} 1.0', text)
        self.assertIn('ecs_commands_total{command="configure",outcome="ok"} 1.0', text)
        self.assertIn("ecs_event_streams_open 1.0", text)
        self.assertIn('ecs_heartbeat_losses_total{partition="p2"} 1.0', text)


class PartitionManagementTests(ClockedHarness):
    """Creating and deleting partitions (original section 5, corrected)."""

    def served(self, partition: str) -> set[str]:
        """The global systems that serve C{partition}."""
        return {s for (s, p) in self.globals_host.controllers if p == partition}

    async def test_create_and_delete(self) -> None:
        """A new partition is stored, followed and served by every global system; delete undoes it."""
        await self.take("expert", "ecs")
        summary = await self.ok("POST", "/api/partitions", "expert", {"id": "p3"})
        self.assertEqual(summary["id"], "p3")
        self.assertIn("p3", [p.id for p in await self.store.partitions()])
        self.assertEqual(self.served("p3"), {"TFC", "DCS", "QA", "FLES"})
        self.start_pca("p3")
        await self.wait_idle("p3")
        self.assertEqual({s["id"] for s in self.eca.partition("p3")["systems"]}, {"TFC", "DCS", "QA", "FLES"})
        await self.until(self.pcas.pop("p3").stopService())
        await self.ok("DELETE", "/api/partitions/p3", "expert")
        self.assertNotIn("p3", [p.id for p in await self.store.partitions()])
        self.assertEqual(self.served("p3"), set())
        self.assertNotIn("p3", self.parts.partitions)
        actions = [(a.action, a.outcome) for a in await self.store.audit_entries() if a.action.endswith("_partition")]
        self.assertEqual(sorted(actions), [("create_partition", "ok"), ("delete_partition", "ok")])

    async def test_needs_ecs_control(self) -> None:
        """Management without the ECS control is refused and changes nothing."""
        r = await self.call("POST", "/api/partitions", token=await self.login("expert"), json={"id": "p3"})
        self.assertError(r, 403, "forbidden")
        await self.take("admin", "ecs")
        r = await self.call("POST", "/api/partitions", token=await self.login("expert"), json={"id": "p3"})
        self.assertError(r, 409, "conflict", holder="admin")
        self.assertEqual([p.id for p in await self.store.partitions()], ["demo", "p2"])
        self.assertEqual(self.served("p3"), set())
        r = await self.call("POST", "/api/partitions", token=await self.login("admin"), json={"id": "demo"})
        self.assertError(r, 409, "conflict")
        r = await self.call("POST", "/api/partitions", token=await self.login("admin"), json={"id": "bad name"})
        self.assertError(r, 400, "bad_request")

    async def test_create_rolled_back(self) -> None:
        """A global system refusing the new partition rolls everything back."""
        original = self.globals_host._add_partition

        async def refuse_qa(agent_id: str, request: Request) -> dict[str, Any]:
            if agent_id == "QA":
                raise RequestError("refused", "QA is out of order")
            return await original(agent_id, request)

        self.patch(self.globals_host, "_add_partition", refuse_qa)
        await self.take("expert", "ecs")
        r = await self.call("POST", "/api/partitions", token=await self.login("expert"), json={"id": "p3"})
        body = self.assertError(r, 503, "unavailable")
        self.assertIn("QA", body["reason"])
        self.assertEqual([p.id for p in await self.store.partitions()], ["demo", "p2"])
        self.assertNotIn("p3", self.parts.partitions)
        self.assertEqual(self.served("p3"), set())
        audit = [a.outcome for a in await self.store.audit_entries() if a.action == "create_partition"]
        self.assertEqual(len(audit), 1)
        self.assertTrue(audit[0].startswith("unavailable"))

    async def test_create_with_global_system_down(self) -> None:
        """With the global systems unreachable nothing is created."""
        await self.take("expert", "ecs")
        self.network.set_down(self.globals_host.address)
        r = await self.call("POST", "/api/partitions", token=await self.login("expert"), json={"id": "p3"})
        self.assertError(r, 503, "unavailable")
        self.network.set_down(self.globals_host.address, False)
        self.assertEqual([p.id for p in await self.store.partitions()], ["demo", "p2"])
        self.assertEqual(self.served("p3"), set())
        self.assertNotIn("p3", self.parts.partitions)

    async def test_delete_busy_partition(self) -> None:
        """A configured partition is deleted only with force; its detectors become unassigned."""
        await self.take("operator", "p2")
        await self.configure(partition="p2", tag="p2")
        await self.take("expert", "ecs")
        r = await self.call("DELETE", "/api/partitions/p2", token=await self.login("expert"))
        self.assertError(r, 409, "conflict")
        self.assertEqual(await self.db_partition("STS2"), "p2")
        await self.ok("DELETE", "/api/partitions/p2?force=1", "expert")
        self.assertIsNone(await self.db_partition("STS2"))
        self.assertIsNone(self.detector_partition("STS2"))
        self.assertEqual(self.served("p2"), set())
        self.assertIsNone(await self.store.control("p2"))

    async def test_delete_tells_every_global_system(self) -> None:
        """One global system failing to drop a deleted partition does not keep the others serving it."""
        original = self.globals_host._remove_partition

        def refuse_tfc(agent_id: str, request: Request) -> dict[str, Any]:
            if agent_id == "TFC":
                raise RequestError("refused", "TFC is out of order")
            return original(agent_id, request)

        self.patch(self.globals_host, "_remove_partition", refuse_tfc)
        await self.take("expert", "ecs")
        await self.ok("POST", "/api/partitions", "expert", {"id": "p3"})
        await self.ok("DELETE", "/api/partitions/p3", "expert")
        self.assertNotIn("p3", [p.id for p in await self.store.partitions()])
        self.assertEqual(self.served("p3"), {"TFC"})

    async def test_recreated_partition_has_no_controller(self) -> None:
        """The control of a deleted partition does not reappear when one of that name is created again."""
        await self.take("expert", "ecs")
        await self.ok("POST", "/api/partitions", "expert", {"id": "p3"})
        await self.take("operator", "p3")
        self.assertEqual(self.eca.partition("p3")["controller"], "operator")
        await self.ok("DELETE", "/api/partitions/p3", "expert")
        await self.ok("POST", "/api/partitions", "expert", {"id": "p3"})
        self.assertIsNone(await self.store.control("p3"))
        self.assertIsNone(self.eca.partition("p3")["controller"])
        self.assertIsNone({p["id"]: p for p in await self.ok("GET", "/api/partitions", "viewer")}["p3"]["controller"])

    async def test_no_resolve_left_after_stop(self) -> None:
        """A host whose global systems were told of a new partition leaves no timer when it stops."""
        await self.take("expert", "ecs")
        await self.ok("POST", "/api/partitions", "expert", {"id": "p3"})  # no PCA: the links keep looking
        await self.until(self.globals_host.stopService())
        leftover = [
            c
            for c in self.clock.getDelayedCalls()
            if getattr(c.func, "__name__", "") == "_resolve_soon" and c.func.__self__.host is self.globals_host
        ]
        self.assertEqual(leftover, [])


class DetectorManagementTests(ClockedHarness):
    """Creating and deleting detectors."""

    async def test_unassigned_live_states(self) -> None:
        """Unassigned detectors are shown with live states; an unreachable one as Connection Problem."""

        def tof2() -> Any:
            return next((d for d in self.eca.unassigned() if d["id"] == "TOF2"), None)

        await self.wait_for(lambda: (tof2() or {}).get("state") == "Unconfigured", what="TOF2 polled")
        listed = await self.ok("GET", "/api/detectors/unassigned", "viewer")
        self.assertEqual([d["id"] for d in listed], ["TOF2"])
        self.assertTrue(listed[0]["connected"])
        self.network.set_down(self.hosts["TOF2"].address)
        await self.wait_for(lambda: tof2()["state"] == "Connection Problem", what="TOF2 unreachable")
        self.assertFalse(tof2()["connected"])
        self.network.set_down(self.hosts["TOF2"].address, False)

    async def test_create_and_delete(self) -> None:
        """A detector of a known type is created unassigned and can be deleted."""
        await self.take("expert", "ecs")
        row = await self.ok("POST", "/api/detectors", "expert", {"id": "ECAL", "type": "STS"})
        self.assertEqual(row, {"id": "ECAL", "type": "STS", "partition": None})
        self.assertEqual((await self.store.detector("ECAL")).type, "STS")
        await self.ok("DELETE", "/api/detectors/ECAL", "expert")
        self.assertIsNone(await self.store.detector("ECAL"))

    async def test_refusals(self) -> None:
        """Unknown type 400, duplicate or assigned 409, unknown 404, no ECS control 403."""
        expert = await self.login("expert")
        r = await self.call("POST", "/api/detectors", token=expert, json={"id": "ECAL", "type": "STS"})
        self.assertError(r, 403, "forbidden")
        await self.take("expert", "ecs")
        r = await self.call("POST", "/api/detectors", token=expert, json={"id": "ECAL", "type": "Calorimeter"})
        self.assertIn("Calorimeter", self.assertError(r, 400, "bad_request")["reason"])
        self.assertIsNone(await self.store.detector("ECAL"))
        r = await self.call("POST", "/api/detectors", token=expert, json={"id": "STS", "type": "STS"})
        self.assertError(r, 409, "conflict")
        r = await self.call("POST", "/api/detectors", token=expert, json={"id": "TFC", "type": "STS"})
        self.assertError(r, 409, "conflict")
        self.assertError(await self.call("DELETE", "/api/detectors/TRD", token=expert), 409, "conflict")
        self.assertError(await self.call("DELETE", "/api/detectors/NOPE", token=expert), 404, "not_found")
        self.assertEqual(await self.db_partition("TRD"), "demo")


class MoveTests(ClockedHarness):
    """The two-phase move of a detector between partitions, with failures injected at every step."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        await self.take("expert", "ecs")

    async def move(self, detector: str, to: str | None, force: bool = False) -> Any:
        """POST /api/detectors/{detector}/move as the expert."""
        return await self.call(
            "POST", f"/api/detectors/{detector}/move", token=await self.login("expert"), json={"to": to, "force": force}
        )

    async def assertEndState(self, detector: str, db: str | None, holders: set[str]) -> None:
        """The database says C{db}; exactly the PCAs in C{holders} have the detector; no lock anywhere."""
        self.assertEqual(await self.db_partition(detector), db)
        for partition in self.pcas:
            if partition in holders:
                self.assertIn(detector, self.members(partition), f"{partition} lacks {detector}")
            else:
                self.assertNotIn(detector, self.members(partition), f"{partition} still has {detector}")
            self.assertFalse(self.locked(partition), f"{partition} left locked")
        for partition in self.pcas:
            await self.wait_for(
                lambda p=partition: self.eca.partition(p)["connected"] and not self.eca.partition(p)["locked"],
                what=f"{partition} unlocked in the ECA",
            )

    def shown(self, partition: str) -> set[str]:
        """The systems the ECA shows for C{partition}."""
        return {s["id"] for s in self.eca.partition(partition)["systems"]}

    async def test_move(self) -> None:
        """A move changes the database, both PCAs and the detector's own assignment; no lock is left."""
        row = (await self.move("TRD", "p2")).json
        self.assertEqual(row["partition"], "demo")  # the row as it was
        await self.assertEndState("TRD", "p2", {"p2"})
        self.assertEqual(self.detector_partition("TRD"), "p2")
        await self.wait_for(lambda: "TRD" in self.shown("p2") and "TRD" not in self.shown("demo"), what="ECA view")
        view = self.pcas["p2"].sequencer.partition.systems["TRD"]
        await self.wait_for(lambda: view.connected, what="TRD connected in p2")
        audit = [
            (a.action, a.arguments, a.outcome) for a in await self.store.audit_entries() if a.action == "move_detector"
        ]
        self.assertEqual(audit, [("move_detector", {"detector": "TRD", "to": "p2", "force": False}, "ok")])

    async def test_move_to_and_from_unassigned(self) -> None:
        """An unassigned detector joins a partition; a member leaves to unassigned."""
        self.assertEqual((await self.move("TOF2", "p2")).code, 200)
        await self.assertEndState("TOF2", "p2", {"p2"})
        self.assertEqual(self.detector_partition("TOF2"), "p2")
        self.assertEqual((await self.move("STS2", None)).code, 200)
        await self.assertEndState("STS2", None, set())
        self.assertIsNone(self.detector_partition("STS2"))
        # p2 now configures with its one detector TOF2
        await self.ok(
            "PUT",
            "/api/tags/p2b",
            "expert",
            {"configs": ["tfc-default", "dcs-default", "qa-default", "fles-default", "tof2-default"]},
        )
        await self.take("operator", "p2")
        await self.configure(partition="p2", tag="p2b")

    async def test_move_refusals(self) -> None:
        """Unknown detector or partition 404, no ECS control 403; a move to where it is changes nothing."""
        self.assertError(await self.move("NOPE", "p2"), 404, "not_found")
        self.assertError(await self.move("TRD", "nowhere"), 404, "not_found")
        self.assertEqual((await self.move("TRD", "demo")).code, 200)
        await self.ok("DELETE", "/api/control", "expert")
        self.assertError(await self.move("TRD", "p2"), 403, "forbidden")
        await self.assertEndState("TRD", "demo", {"demo"})

    async def test_source_unreachable(self) -> None:
        """With the source PCA unreachable the move is refused and nothing changes."""
        self.network.set_down(self.pcas["demo"].address)
        r = await self.move("TRD", "p2")
        self.assertIn("demo", self.assertError(r, 503, "unavailable")["reason"])
        self.network.set_down(self.pcas["demo"].address, False)
        await self.assertEndState("TRD", "demo", {"demo"})
        self.assertEqual(self.detector_partition("TRD"), "demo")

    async def test_target_unreachable(self) -> None:
        """With the target PCA unreachable the move is refused and the source's lock released."""
        self.network.set_down(self.pcas["p2"].address)
        r = await self.move("TRD", "p2")
        self.assertIn("p2", self.assertError(r, 503, "unavailable")["reason"])
        self.assertFalse(self.locked("demo"))
        self.network.set_down(self.pcas["p2"].address, False)
        await self.assertEndState("TRD", "demo", {"demo"})

    async def test_source_unreachable_forced(self) -> None:
        """Forced past an unreachable source PCA the move completes, and the source learns it when back."""
        self.network.set_down(self.pcas["demo"].address)
        r = await self.move("TRD", "p2", force=True)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.db_partition("TRD"), "p2")
        self.assertIn("TRD", self.members("p2"))
        self.assertFalse(self.locked("p2"))
        self.assertFalse(self.locked("demo"))
        self.assertEqual(self.detector_partition("TRD"), "p2")
        self.network.set_down(self.pcas["demo"].address, False)
        await self.wait_for(lambda: "TRD" not in self.members("demo"), what="demo to drop TRD")
        await self.assertEndState("TRD", "p2", {"p2"})
        await self.wait_for(lambda: "TRD" not in self.shown("demo"), what="ECA view of demo")

    async def test_target_unreachable_forced(self) -> None:
        """Forced past an unreachable target PCA the move completes, and the target takes it when back."""
        self.network.set_down(self.pcas["p2"].address)
        r = await self.move("TRD", "p2", force=True)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(await self.db_partition("TRD"), "p2")
        self.assertNotIn("TRD", self.members("demo"))
        self.assertNotIn("TRD", self.members("p2"))
        self.assertEqual(self.detector_partition("TRD"), "p2")
        self.network.set_down(self.pcas["p2"].address, False)
        await self.wait_for(lambda: "TRD" in self.members("p2"), what="p2 to take TRD")
        await self.assertEndState("TRD", "p2", {"p2"})
        view = self.pcas["p2"].sequencer.partition.systems["TRD"]
        await self.wait_for(lambda: view.connected, what="TRD connected in p2")

    async def test_source_stopped_forced(self) -> None:
        """Forced past a stopped source PCA the move completes; the restarted PCA and the ECA's view agree."""
        await self.until(self.pcas["demo"].stopService())
        r = await self.move("TRD", "p2")
        self.assertError(r, 503, "unavailable")
        r = await self.move("TRD", "p2", force=True)
        self.assertEqual(r.code, 200, r.body)
        self.start_pca("demo")
        await self.wait_idle("demo")
        await self.assertEndState("TRD", "p2", {"p2"})
        self.assertNotIn("TRD", self.shown("demo"))
        self.assertIn("TRD", self.shown("p2"))

    async def test_target_refuses(self) -> None:
        """The target PCA refusing add_detector rolls the move back everywhere."""

        def refuse() -> None:
            raise RequestError(protocol.BUSY, "p2 does not want detectors now")

        self.patch(self.pcas["p2"].sequencer, "check_membership_change", refuse)
        r = await self.move("TRD", "p2")
        body = self.assertError(r, 503, "unavailable")
        self.assertIn("undone", body["reason"])
        await self.assertEndState("TRD", "demo", {"demo"})
        self.assertEqual(self.detector_partition("TRD"), "demo")
        view = self.pcas["demo"].sequencer.partition.systems["TRD"]
        await self.wait_for(lambda: view.connected, what="TRD back in demo")
        outcomes = [a.outcome for a in await self.store.audit_entries() if a.action == "move_detector"]
        self.assertTrue(outcomes[0].startswith("unavailable"))

    async def test_source_refuses_removal(self) -> None:
        """The source PCA refusing remove_detector after the commit rolls the move back."""

        def refuse() -> None:
            raise RequestError(protocol.BUSY, "demo does not let detectors go now")

        self.patch(self.pcas["demo"].sequencer, "check_membership_change", refuse)
        r = await self.move("TRD", "p2")
        self.assertError(r, 503, "unavailable")
        await self.assertEndState("TRD", "demo", {"demo"})
        self.assertEqual(self.detector_partition("TRD"), "demo")

    async def test_detector_unreachable(self) -> None:
        """An unreachable detector cannot be told: the move is undone (no force)."""
        self.network.set_down(self.hosts["TRD"].address)
        r = await self.move("TRD", "p2")
        self.assertIn("undone", self.assertError(r, 503, "unavailable")["reason"])
        await self.assertEndState("TRD", "demo", {"demo"})
        self.network.set_down(self.hosts["TRD"].address, False)
        view = self.pcas["demo"].sequencer.partition.systems["TRD"]
        await self.wait_for(lambda: view.connected, what="TRD reconnected to demo")
        self.assertEqual(self.detector_partition("TRD"), "demo")

    async def test_detector_unreachable_forced(self) -> None:
        """Forced past an unreachable detector the move completes; the detector is told once it is back."""
        self.network.set_down(self.hosts["TRD"].address)
        r = await self.move("TRD", "p2", force=True)
        self.assertEqual(r.code, 200, r.body)
        await self.assertEndState("TRD", "p2", {"p2"})
        self.network.set_down(self.hosts["TRD"].address, False)
        await self.wait_for(lambda: self.detector_partition("TRD") == "p2", what="TRD told of p2")

    async def test_lock_answer_lost(self) -> None:
        """A lock taken whose answer fails is released too: 503, and no lock is left."""
        sequencer = self.pcas["p2"].sequencer
        original = sequencer.lock

        def lock_then_fail() -> Any:
            original()
            raise RequestError(protocol.TIMEOUT, "the answer was lost")

        self.patch(sequencer, "lock", lock_then_fail)
        r = await self.move("TRD", "p2")
        self.assertIn("p2", self.assertError(r, 503, "unavailable")["reason"])
        await self.assertEndState("TRD", "demo", {"demo"})

    async def test_target_busy_configuring(self) -> None:
        """A target partition busy configuring refuses the move with 409 and no lock is left."""
        await self.take("operator", "p2")
        await self.ok("POST", "/api/partitions/p2/configure", "operator", {"tag": "p2", "auto": True})
        r = await self.move("TRD", "p2")
        self.assertIn("p2", self.assertError(r, 409, "conflict")["reason"])
        self.assertFalse(self.locked("demo"))
        self.assertFalse(self.locked("p2"))
        await self.wait_state("p2", "QA_Active")
        await self.assertEndState("TRD", "demo", {"demo"})

    async def test_source_busy_configuring(self) -> None:
        """A source partition busy configuring refuses the move with 409 and no lock is taken."""
        await self.take("operator", "demo")
        await self.ok("POST", "/api/partitions/demo/configure", "operator", {"tag": "demo", "auto": True})
        r = await self.move("TRD", None)
        self.assertIn("demo", self.assertError(r, 409, "conflict")["reason"])
        self.assertFalse(self.locked("demo"))
        await self.wait_state("demo", "QA_Active")
        await self.assertEndState("TRD", "demo", {"demo"})

    async def test_commands_locked_during_move(self) -> None:
        """While a move holds the locks, a configure of either partition answers 423."""
        await self.take("operator", "p2")
        started: defer.Deferred[None] = defer.Deferred()
        release: defer.Deferred[None] = defer.Deferred()
        original = self.store.commit_operation

        async def slow_move(op_id: int) -> Any:
            if not started.called:
                started.callback(None)
                await release
            return await original(op_id)

        self.patch(self.store, "commit_operation", slow_move)
        moving = defer.ensureDeferred(self.move("TRD", "p2"))
        await self.until(started)
        r = await self.call(
            "POST", "/api/partitions/p2/configure", token=await self.login("operator"), json={"tag": "p2", "auto": True}
        )
        self.assertError(r, 423, "locked")
        release.callback(None)
        self.assertEqual((await self.until(moving)).code, 200)
        await self.assertEndState("TRD", "p2", {"p2"})
