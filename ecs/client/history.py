# -*- test-case-name: tests.test_client_history -*-
"""
The bodies of C{ecs runs} and C{ecs audit} of L{ecs.client.table}: run
records filtered by partition, type and start time, shown as a table or
exported as CSV or JSON (L{ecs.runinfo.runs_csv}); the audit trail
(experts) filtered by user, action and time, newest first.  Both act
through the L{ecs.client.commands.Api}, so the SSH shell offers them too.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ecs import runinfo, textview
from ecs.client.commands import Run, parse_since, usage
from ecs.client.operate import given_partition
from ecs.exits import EXIT_OK

TIME_HELP = "30s, 10m, 2h, 1d ago; an ISO time; or epoch seconds"


def time_range(run: Run) -> tuple[float | None, float | None]:
    """C{--since} and C{--until} as epoch seconds (usage error naming the bad one)."""
    found: list[float | None] = []
    for flag in ("since", "until"):
        text = getattr(run.args, flag, None)
        try:
            found.append(parse_since(text, run.now()) if text else None)
        except ValueError as e:
            raise usage(str(e).replace("--since", f"--{flag}")) from None
    since, until = found
    if since is not None and until is not None and until <= since:
        raise usage("--until must be after --since")
    return since, until


def condition(text: str) -> tuple[str, Any]:
    """An argparse type: C{KEY=VALUE} of a run condition (numbers, true/false/null read as such)."""
    try:
        return runinfo.parse_condition(text)
    except runinfo.RunInfoError as e:
        raise argparse.ArgumentTypeError(f"invalid condition {text!r}: {e.reason}") from None


def comment(text: str) -> str:
    """An argparse type: a run comment (at most L{runinfo.MAX_COMMENT} characters)."""
    try:
        runinfo.check_comment(text)
    except runinfo.RunInfoError as e:
        raise argparse.ArgumentTypeError(f"invalid comment: {e.reason}") from None
    return text


def run_type(text: str) -> str:
    """An argparse type: a run type's form (the ECA says which are declared)."""
    try:
        return runinfo.check_type(text)
    except runinfo.RunInfoError as e:
        raise argparse.ArgumentTypeError(f"invalid run type {text!r}: {e.reason}") from None


async def runs(run: Run) -> int:
    """Run records, newest first; C{--format csv|json} exports them (all columns)."""
    args = run.args
    since, until = time_range(run)
    rows = await run.api.runs(given_partition(run), args.limit, args.type, since, until)
    form = getattr(args, "format", None)
    if form == "csv":
        run.out.result(runinfo.runs_csv(rows).replace("\r\n", "\n").rstrip("\n"), rows)
    elif form == "json":
        run.out.result(json.dumps(rows, indent=2, sort_keys=True), rows)
    else:
        run.out.result(textview.format_runs(rows, color=run.color), rows)
    return EXIT_OK


def format_audit(rows: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/audit}: id, time, user, action, arguments (compact JSON), outcome."""
    if not rows:
        return "no audit entries\n"
    body = [
        [
            row.get("id"),
            textview.format_time(row.get("time")),
            row.get("user") or "-",
            row.get("action"),
            json.dumps(row.get("arguments") or {}, sort_keys=True, separators=(",", ":")),
            row.get("outcome"),
        ]
        for row in rows
        if isinstance(row, dict)
    ]
    return textview.table(["ID", "TIME", "USER", "ACTION", "ARGUMENTS", "OUTCOME"], body, color)


async def audit(run: Run) -> int:
    """The audit trail, newest first (expert); C{--before ID} pages on."""
    args = run.args
    since, until = time_range(run)
    rows = await run.api.audit(args.user, args.action, since, until, args.limit, args.before)
    text = format_audit(rows, color=run.color)
    if rows and len(rows) == args.limit and isinstance(rows[-1], dict):
        run.out.note(f"more may be older: add --before {rows[-1].get('id')}")
    run.out.result(text, rows)
    return EXIT_OK


__all__ = ["TIME_HELP", "audit", "comment", "condition", "format_audit", "run_type", "runs", "time_range"]
