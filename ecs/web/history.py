# -*- test-case-name: tests.test_web_history -*-
"""
The API routes of what happened: run records (C{GET /api/runs}, filtered by
partition, type and start time, as JSON or CSV) and the audit trail
(C{GET /api/audit}, expert and up).  Routes of L{ecs.web.routes.WebAPI}'s
Klein app, added when L{ecs.web.api} imports this module, with its plumbing
(L{ecs.web.auth.authorized_route}, checked queries, errors naming the
field).

Times in queries (C{since}, C{until}) are seconds since the epoch or
ISO-8601 (UTC unless they carry an offset); C{since} is inclusive,
C{until} exclusive.  The audit trail pages newest first: C{?before=ID}
gives the entries older than entry C{ID} (the last one of the page seen).
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ecs import runinfo
from ecs.control import Session
from ecs.web.auth import authorized_route
from ecs.web.inputs import MAX_LIMIT, bad, query, query_int, query_time
from ecs.web.routes import WebAPI

#: The answers C{GET /api/runs?format=} gives.
RUN_FORMATS = ("json", "csv")


def _range(request: IRequest) -> tuple[float | None, float | None]:
    since, until = query_time(request, "since"), query_time(request, "until")
    if since is not None and until is not None and until <= since:
        bad("until", "must be after since")
    return since, until


@authorized_route(WebAPI.app, "viewer", "/api/runs", methods=["GET"])
async def runs(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """
    Run records, newest first (?partition=&type=&since=&until=&limit=;
    ?format=csv gives CSV, ?format=json JSON, both as a download).
    """
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    run_type = query(request, "type")
    if run_type is not None:
        try:
            runinfo.check_type(run_type, self.center.run_types())
        except runinfo.RunInfoError as e:
            bad(e.field, e.reason)
    form = query(request, "format")
    if form is not None and form not in RUN_FORMATS:
        bad("format", f"must be one of {', '.join(RUN_FORMATS)}")
    since, until = _range(request)
    rows = await self._call(self.center.runs, query(request, "partition"), limit, run_type, since, until)
    if form is None:
        return self._json(request, rows)
    request.setHeader(b"content-disposition", f'attachment; filename="runs.{form}"'.encode())
    if form == "json":
        return self._json(request, rows)
    request.setHeader(b"content-type", b"text/csv; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return runinfo.runs_csv(rows).encode("utf-8")


@authorized_route(WebAPI.app, "expert", "/api/audit", methods=["GET"])
async def audit(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """
    The audit trail, newest first (?user=&action=&since=&until=&limit=;
    ?before=ID: the next page, older than entry ID).
    """
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    before = query_int(request, "before", None, 1, 2**63 - 1)
    who, action = query(request, "user"), query(request, "action")
    for name, value in (("user", who), ("action", action)):
        if value is not None and len(value) > 200:
            bad(name, "at most 200 characters")
    since, until = _range(request)
    rows = await self._call(self.center.audit, session.user, who, action, since, until, limit, before)
    return self._json(request, rows)


__all__ = ["RUN_FORMATS", "audit", "runs"]
