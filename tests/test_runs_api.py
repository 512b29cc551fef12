# -*- test-case-name: tests.test_runs_api -*-
"""
Run types, comments, crew and conditions through the ECA (issue 14, item
3), and the audit trail read back (item 6), on the ECA harness (real PCAs
and controllers on the in-memory network, the real store, a C{Clock}):

  - a start's type, comment and conditions, and who was on duty, reach the
    run record; a stop's comment becomes its end comment; the PCA is sent
    neither;
  - an unknown type is refused with 400 listing the declared ones, before
    the PCA is asked, and audited; a refused start leaves nothing for the
    next run;
  - C{GET /api/runs} filters by type and time and exports CSV;
  - C{GET /api/audit} is for experts, newest first, filtered and paged.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from ecs.store import RunRow
from tests.eca_harness import ClockedHarness


class RunsApiHarness(ClockedHarness):
    """Helpers: record with a start body, stop with one."""

    async def record(self, body: dict[str, Any] | None = None) -> RunRow:
        """Configure and start demo (as operator) with C{body}; its open run."""
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator", body if body is not None else {})
        await self.wait_state("demo", "Recording")
        return await self.wait_for(lambda: self.store.open_run("demo"), what="run record")

    async def stop(self, body: dict[str, Any] | None = None) -> RunRow:
        """Stop demo's run with C{body}; the closed run."""
        run = await self.store.open_run("demo")
        assert run is not None
        await self.ok("POST", "/api/partitions/demo/stop", "operator", body if body is not None else {})
        await self.wait_state("demo", "QA_Active")

        async def closed() -> RunRow | None:
            row = await self.store.run(run.number)
            return row if row.ended is not None else None

        return await self.wait_for(closed, what="run closed")

    async def call_as(self, user: str, method: str, path: str, body: Any = None) -> Any:
        token = await self.login(user)
        return await self.call(method, path, token=token, **({} if body is None else {"json": body}))


class RunDetailsTests(RunsApiHarness):
    """What a start and a stop say of the run."""

    async def test_round_trip(self) -> None:
        """Type, comments, conditions and crew reach the run record and GET /api/runs."""
        await self.take("expert", "ecs")
        run = await self.record({"type": "calibration", "comment": "threshold scan", "conditions": {"adc": 12}})
        self.assertEqual((run.type, run.start_comment, run.conditions), ("calibration", "threshold scan", {"adc": 12}))
        self.assertEqual(run.crew, {"started_by": "operator", "control_holder": "operator", "ecs_control": "expert"})
        ended = await self.stop({"comment": "scan complete"})
        self.assertEqual((ended.outcome, ended.end_comment, ended.type), ("stopped", "scan complete", "calibration"))
        [row] = await self.ok("GET", "/api/runs?type=calibration", "viewer")
        self.assertEqual((row["type"], row["start_comment"], row["end_comment"], row["conditions"]),
                         ("calibration", "threshold scan", "scan complete", {"adc": 12}))
        self.assertEqual(await self.ok("GET", "/api/runs?type=physics", "viewer"), [])

    async def test_without_details(self) -> None:
        """A start without a body opens a run of no type, its starter in the crew."""
        run = await self.record()
        self.assertEqual((run.type, run.start_comment, run.conditions), (None, None, {}))
        self.assertEqual(run.crew["started_by"], "operator")

    async def test_unknown_type(self) -> None:
        """An unknown type: 400 naming it and the declared ones, nothing sent, the refusal audited."""
        await self.take("operator")
        await self.configure()
        r = await self.call_as("operator", "POST", "/api/partitions/demo/start", {"type": "beam"})
        body = self.assertError(r, 400, "bad_request", field="type")
        self.assertIn("unknown run type 'beam' (allowed: physics, calibration, cosmics, test)", body["reason"])
        await self.settle()
        self.assertEqual(self.eca.partition("demo")["state"], "QA_Active")

        async def refused() -> list[Any]:
            return [e for e in await self.store.audit_entries(action="start") if e.outcome.startswith("bad_request")]

        [entry] = await self.wait_for(refused, what="the refused start audited")
        self.assertEqual(entry.arguments, {"partition": "demo", "type": "beam"})

    async def test_bad_bodies(self) -> None:
        """Wrong fields or forms are refused with 400 naming the field."""
        await self.take("operator")
        cases = [
            ("start", {"type": 3}, "type"),
            ("start", {"comment": ["x"]}, "comment"),
            ("start", {"conditions": {"x": {"nested": 1}}}, "conditions.x"),
            ("start", {"conditions": [1]}, "conditions"),
            ("start", {"operator": "me"}, "operator"),
            ("stop", {"type": "physics"}, "type"),
            ("stop", {"comment": "x" * 2001}, "comment"),
        ]
        for command, sent, field in cases:
            r = await self.call_as("operator", "POST", f"/api/partitions/demo/{command}", sent)
            self.assertError(r, 400, "bad_request", field=field)

    async def test_refused_start_leaves_nothing(self) -> None:
        """A start the PCA refuses (Idle) does not give its type to the next run."""
        await self.take("operator")
        r = await self.call_as("operator", "POST", "/api/partitions/demo/start", {"type": "test", "comment": "no"})
        self.assertEqual(r.code, 409, r.body)
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator", {})
        await self.wait_state("demo", "Recording")
        run = await self.wait_for(lambda: self.store.open_run("demo"), what="run record")
        self.assertEqual((run.type, run.start_comment), (None, None))

    async def test_filters_and_csv(self) -> None:
        """GET /api/runs: by type and time, as CSV; bad filters are 400 naming them."""
        run = await self.record({"type": "cosmics", "comment": "=cmd|' /C calc'!A0"})
        await self.stop({"comment": "fine"})
        r = await self.call_as("viewer", "GET", "/api/runs?format=csv&type=cosmics")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.response.headers.getRawHeaders("content-type"), ["text/csv; charset=utf-8"])
        self.assertIn('filename="runs.csv"', r.response.headers.getRawHeaders("content-disposition")[0])
        rows = list(csv.DictReader(io.StringIO(r.body.decode("utf-8"))))
        self.assertEqual([(x["number"], x["type"], x["end_comment"]) for x in rows],
                         [(str(run.number), "cosmics", "fine")])
        self.assertTrue(rows[0]["start_comment"].startswith("'="), "a formula is quoted")
        started = run.started
        self.assertEqual(len(await self.ok("GET", f"/api/runs?since={started}", "viewer")), 1)
        self.assertEqual(await self.ok("GET", f"/api/runs?until={started}", "viewer"), [])
        self.assertEqual(len(await self.ok("GET", "/api/runs?since=1970-01-01T00:00:00Z&format=json", "viewer")), 1)
        for query, field in [("type=beam", "type"), ("format=xml", "format"), ("since=yesterday", "since"),
                             ("since=10&until=5", "until"), ("limit=0", "limit")]:
            self.assertError(await self.call_as("viewer", "GET", f"/api/runs?{query}"), 400, "bad_request",
                             field=field)


class AuditApiTests(RunsApiHarness):
    """GET /api/audit."""

    async def test_roles_filters_and_pages(self) -> None:
        """Experts read it newest first, by user, action and time, page by page; operators get 403."""
        await self.take("operator")
        await self.ok("DELETE", "/api/partitions/demo/control", "operator")
        await self.take("operator2")
        await self.login("admin")  # its login is audited too: before the lists below
        self.assertError(await self.call_as("operator", "GET", "/api/audit"), 403, "forbidden")
        entries = await self.ok("GET", "/api/audit", "expert")
        self.assertEqual([e["id"] for e in entries], sorted((e["id"] for e in entries), reverse=True))
        mine = await self.ok("GET", "/api/audit?user=operator&action=take_control", "expert")
        self.assertEqual([(e["user"], e["action"], e["arguments"]) for e in mine],
                         [("operator", "take_control", {"scope": "demo", "force": False})])
        controls = await self.ok("GET", "/api/audit?action=take_control&limit=1", "admin")
        self.assertEqual([e["user"] for e in controls], ["operator2"])
        older = await self.ok("GET", f"/api/audit?action=take_control&limit=1&before={controls[0]['id']}", "admin")
        self.assertEqual([e["user"] for e in older], ["operator"])
        last = entries[0]["time"]
        self.assertEqual(await self.ok("GET", f"/api/audit?since={last + 1}", "expert"), [])
        self.assertEqual(len(await self.ok("GET", f"/api/audit?until={last + 1}", "expert")), len(entries))
        for query, field in [("limit=100001", "limit"), ("before=x", "before"), ("until=x", "until"),
                             ("since=5&until=5", "until"), ("user=" + "u" * 201, "user")]:
            self.assertError(await self.call_as("expert", "GET", f"/api/audit?{query}"), 400, "bad_request",
                             field=field)
