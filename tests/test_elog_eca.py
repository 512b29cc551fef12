# -*- test-case-name: tests.test_elog_eca -*-
"""
The electronic logbook through the ECA (issue 14, item 4), on the ECA
harness (real PCAs and controllers on the in-memory network, the real
store, a C{Clock}): entries written and searched through the API with
the roles and checks, corrections, attachments, and the automatic entries
(author C{ECS}) of runs, exclusions, alarms and forced actions; a logbook
that cannot be written never breaks the action it tells of.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet import defer

from ecs.control import ROLES
from ecs.store import StoreError
from ecs.web.api import WebAPI
from ecs.web.auth import route_access
from tests.eca_harness import ClockedHarness


class ELogHarness(ClockedHarness):
    """Helpers: post and list entries as a user."""

    async def post(self, body: Any, user: str = "operator") -> Any:
        return await self.call("POST", "/api/logbook", token=await self.login(user), json=body)

    async def entries(self, query: str = "", user: str = "viewer") -> list[dict[str, Any]]:
        return list(await self.ok("GET", "/api/logbook" + query, user))

    async def automatic(self, containing: str) -> list[dict[str, Any]]:
        """The automatic entries whose text contains C{containing}, waited for (they are written behind)."""

        async def found() -> list[dict[str, Any]] | None:
            rows = [r for r in await self.entries("?author=ECS") if containing in r["text"]]
            return rows or None

        rows: list[dict[str, Any]] = await self.wait_for(found, what=f"a logbook entry with {containing!r}")
        self.assertTrue(all(r["automatic"] and r["author"] == "ECS" for r in rows))
        return rows


class EntryTests(ELogHarness):
    """Entries by people."""

    async def test_write_search_correct(self) -> None:
        """An operator writes, a viewer reads and searches; a correction is new and marks the old one."""
        r = await self.post({"text": "Beam back at 14:02", "partition": "demo", "run": 12})
        self.assertEqual(r.code, 200, r.body)
        first = r.json
        self.assertEqual((first["author"], first["automatic"], first["corrects"]), ("operator", False, None))
        r = await self.post({"text": "Beam back at 14:05, not 14:02", "partition": "demo", "corrects": first["id"]})
        fix = r.json
        self.assertEqual(fix["corrects"], first["id"])
        rows = await self.entries("?text=BEAM")
        self.assertEqual([e["id"] for e in rows], [fix["id"], first["id"]])
        self.assertEqual(rows[1]["corrected_by"], [fix["id"]])
        self.assertEqual(rows[1]["text"], "Beam back at 14:02")  # never changed
        self.assertEqual([e["id"] for e in await self.entries("?run=12")], [first["id"]])
        self.assertEqual([e["id"] for e in await self.entries("?author=operator&limit=1")], [fix["id"]])
        self.assertEqual([e["id"] for e in await self.entries(f"?author=operator&before={fix['id']}")], [first["id"]])
        self.assertEqual(await self.entries("?partition=other"), [])

    async def test_roles_and_checks(self) -> None:
        """A viewer may not write (403); every bad field is a 400 naming it; an unknown corrected id 404."""
        self.assertError(await self.post({"text": "x"}, user="viewer"), 403, "forbidden")
        for body, field in (
            ({"text": ""}, "text"), ({"text": "   "}, "text"), ({"text": "x" * 10_001}, "text"), ({}, "text"),
            ({"text": "x", "run": "7"}, "run"), ({"text": "x", "run": 0}, "run"), ({"text": "x", "run": True}, "run"),
            ({"text": "x", "partition": "a b"}, "partition"), ({"text": "x", "corrects": -1}, "corrects"),
            ({"text": "x", "author": "me"}, "author"), ({"text": "x", "attachments": {}}, "attachments"),
        ):
            r = await self.post(body)
            self.assertError(r, 400, "bad_request", field=field)
        self.assertError(await self.post({"text": "x", "corrects": 999}), 404, "not_found")
        for query, field in (("?run=x", "run"), ("?limit=0", "limit"), ("?author=a%20b", "author"),
                             ("?since=10&until=5", "until"), ("?before=0", "before")):
            self.assertError(await self.call("GET", "/api/logbook" + query, token=await self.login("viewer")),
                             400, "bad_request", field=field)
        self.assertEqual(await self.entries(), [])

    async def test_attachments(self) -> None:
        """A file travels as base64, is listed with its size and served back as a download only."""
        data = b"<script>alert(1)</script>"
        files = [{"name": "page.html", "content_type": "text/html", "data": base64.b64encode(data).decode()}]
        r = await self.post({"text": "see the page", "attachments": files})
        self.assertEqual(r.code, 200, r.body)
        entry = r.json
        self.assertEqual(entry["attachments"], [{"n": 1, "name": "page.html", "content_type": "text/html",
                                                 "size": len(data)}])
        r = await self.call("GET", f"/api/logbook/{entry['id']}/attachments/1", token=await self.login("viewer"))
        self.assertEqual((r.code, r.body), (200, data))
        headers = r.response.headers
        self.assertTrue(headers.getRawHeaders("content-disposition")[0].startswith("attachment;"))
        self.assertIn("sandbox", headers.getRawHeaders("content-security-policy")[0])
        self.assertEqual(headers.getRawHeaders("x-content-type-options"), ["nosniff"])
        r = await self.call("GET", f"/api/logbook/{entry['id']}/attachments/2", token=await self.login("viewer"))
        self.assertError(r, 404, "not_found")
        for bad, field in (({**files[0], "data": "not base64!"}, "attachments[1].data"),
                           ({**files[0], "name": "../x"}, "attachments[1].name"),
                           ({**files[0], "content_type": "html"}, "attachments[1].content_type"),
                           ({**files[0], "size": 3}, "attachments[1].size")):
            self.assertError(await self.post({"text": "x", "attachments": [bad]}), 400, "bad_request", field=field)
        self.assertError(await self.post({"text": "x", "attachments": files * 4}), 400, "bad_request",
                         field="attachments")


class AutomaticTests(ELogHarness):
    """Entries by the ECS itself."""

    async def test_run_start_and_stop(self) -> None:
        """A run's start (type, comment) and its end (outcome, end comment) are written with its number."""
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator", {"type": "physics", "comment": "first fill"})
        await self.wait_state("demo", "Recording")
        [started] = await self.automatic("started")
        run = started["run"]
        self.assertIsInstance(run, int)
        self.assertEqual(started["partition"], "demo")
        self.assertEqual(started["text"], f"run {run} (physics) of partition demo started: first fill")
        await self.ok("POST", "/api/partitions/demo/stop", "operator", {"comment": "beam dump"})
        await self.wait_state("demo", "QA_Active")
        [ended] = await self.automatic("ended")
        self.assertEqual((ended["run"], ended["partition"]), (run, "demo"))
        self.assertEqual(ended["text"], f"run {run} of partition demo ended: stopped; end comment: beam dump")
        self.assertEqual([e["id"] for e in await self.entries(f"?run={run}")], [ended["id"], started["id"]])

    async def test_exclusion_and_forced_takeover(self) -> None:
        """An exclusion, an inclusion and a forced take-over of control are written."""
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/exclude", "operator", {"system": "TRD"})
        [excluded] = await self.automatic("TRD excluded")
        self.assertEqual(excluded["text"], "operator: TRD excluded in partition demo")
        self.assertEqual(excluded["partition"], "demo")
        await self.ok("POST", "/api/partitions/demo/include", "operator", {"system": "TRD"})
        await self.automatic("TRD included again")
        await self.ok("POST", "/api/partitions/demo/control?force=1", "admin")
        [forced] = await self.automatic("by force")
        self.assertEqual(forced["text"], "admin took the control of partition demo by force from operator")

    async def test_forced_move_and_delete(self) -> None:
        """A forced move and a forced deletion are written; an unforced move is not."""
        await self.take("expert", "ecs")
        await self.ok("POST", "/api/detectors/TRD/move", "expert", {"to": None, "force": True})
        [moved] = await self.automatic("moved")
        self.assertEqual(moved["text"], "expert moved detector TRD to no partition by force")
        await self.ok("POST", "/api/detectors/TRD/move", "expert", {"to": "demo"})
        await self.ok("POST", "/api/detectors/TRD/move", "expert", {"to": None})
        r = await self.call("DELETE", "/api/detectors/TRD?force=1", token=await self.login("expert"))
        self.assertEqual(r.code, 200, r.body)
        await self.automatic("deleted detector TRD by force")
        self.assertEqual(len(await self.entries("?author=ECS")), 2)

    async def test_alarm_raised(self) -> None:
        """A new alarm is written once (raised again with the same text, not again)."""
        self.parts.alarms.condition("storage_failed", "ECA database", None, True, "disk full", "free space")
        [entry] = await self.automatic("alarm storage_failed")
        self.assertIn("disk full", entry["text"])
        self.parts.alarms.condition("storage_failed", "ECA database", None, True, "disk full", "free space")
        await self.settle()
        self.assertEqual(len(await self.entries("?author=ECS")), 1)

    async def test_logbook_failure_never_breaks_the_action(self) -> None:
        """With the logbook refusing every write, an exclusion still succeeds and the failure is logged."""
        failed: list[str] = []
        real = self.store.add_logbook_entry

        def refuse(*args: Any, **kwargs: Any) -> defer.Deferred[Any]:
            failed.append(str(args[1]))
            return defer.fail(StoreError("storage", "disk full"))

        self.store.add_logbook_entry = refuse  # type: ignore[method-assign]
        self.addCleanup(setattr, self.store, "add_logbook_entry", real)
        await self.take("operator")
        r = await self.call("POST", "/api/partitions/demo/exclude", token=await self.login("operator"),
                            json={"system": "TRD"})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(failed, ["operator: TRD excluded in partition demo"])


class LiveTests(ELogHarness):
    """New entries on the event stream, for the readers the API allows."""

    def test_stream_no_wider_than_the_logbook(self) -> None:
        """Whoever may open the event stream may read the logbook: the event reaches no one the API refuses.

        (EventLog does not filter by role; every user has a role, the lowest
        being viewer, and both routes need it.  Should either change, this fails.)
        """
        access = route_access(WebAPI.app)
        stream, logbook = access[("/api/events", "GET")], access[("/api/logbook", "GET")]
        self.assertIsNotNone(stream)
        self.assertIsNotNone(logbook)
        self.assertGreaterEqual(ROLES.index(str(stream)), ROLES.index(str(logbook)))

    async def test_viewer_stream_gets_the_entry(self) -> None:
        """A viewer's stream of p2 gets p2's entry and a global one as GET returns them, never demo's."""
        stub, reader = await self.open_events("/api/events?partition=p2", user="viewer")
        for body in ({"text": "demo only", "partition": "demo"}, {"text": "for p2", "partition": "p2", "run": 3},
                     {"text": "for everyone"}):
            r = await self.post(body)
            self.assertEqual(r.code, 200, r.body)
        await self.events_until(stub, reader, lambda es: len([e for e in es if e["event"] == "logbook"]) >= 2)
        await self.settle()
        got = [e["data"] for e in reader.events() if e["event"] == "logbook"]
        self.assertEqual([e["text"] for e in got], ["for p2", "for everyone"])
        listed = {e["id"]: e for e in await self.entries()}
        self.assertEqual(got, [listed[e["id"]] for e in got])
