# -*- test-case-name: tests.test_commands -*-
"""
The bodies of the operators' commands of L{ecs.client.table}: status,
control, configure/start/stop/abort/reset, watch and logs (runs and the
audit trail: L{ecs.client.history}).  Each
acts through the L{ecs.client.commands.Api} and shows its answer with
L{ecs.textview}; following events is the front end's (L{ecs.client.commands.Follow}).
"""

from __future__ import annotations

from typing import Any

from ecs import textview
from ecs.client.commands import CommandError, Run, parse_since, usage
from ecs.exits import EXIT_OK, EXIT_REFUSED


def given_partition(run: Run) -> str | None:
    """The partition given as the positional argument or C{--partition} (not both, unless equal)."""
    a, b = getattr(run.args, "partition", None), getattr(run.args, "partition_flag", None)
    if a and b and a != b:
        raise usage(f"two partitions given: {a} and {b}")
    return a or b


def not_ecs(partition: str) -> str:
    # "ecs" is the ECS-wide control scope, never a partition (as in the web API)
    if partition == "ecs":
        raise CommandError(EXIT_REFUSED, "no partition ecs (ecs is the ECS-wide control: control take ecs)")
    return partition


# -- reading and operating partitions ---------------------------------------------------


async def active_alarms(run: Run, partition: str | None) -> list[dict[str, Any]] | None:
    """
    The active alarms (of C{partition}, or all) that C{status} shows beside
    the states; None when the ECA has none to give (an older one answers
    404): the states still show.
    """
    try:
        rows = await run.api.alarms(False, partition)
    except CommandError as e:
        if e.status == 404:
            return None
        raise
    return [a for a in rows if isinstance(a, dict)]


async def status(run: Run) -> int:
    """
    One partition (its state, then what is wrong and what to press: its
    active alarms, then its systems), or every partition with its alarm
    count.  With C{--json}: the API's answer (for one partition plus
    C{alarms}: the list, or None when the ECA has no alarms).
    """
    partition = given_partition(run)
    if partition:
        detail = await run.api.partition(not_ecs(partition))
        alarms = await active_alarms(run, partition)
        text = textview.format_partition(detail, color=run.color, alarms=alarms, now=run.now())
        run.out.result(text, {**detail, "alarms": alarms})
    else:
        rows = await run.api.partitions()
        alarms = await active_alarms(run, None)
        text = textview.format_partitions(rows, color=run.color, alarms=alarms, now=run.now())
        run.out.result(text, rows)  # the JSON stays the API's list (scripts read it); ecs alarms --json has them
    return EXIT_OK


async def control(run: Run) -> int:
    scope, take = run.args.partition, run.args.action == "take"
    if not take and run.args.force:
        raise usage("control release: --force only goes with take")
    if scope != "ecs":
        await run.api.partition(scope)  # a clear "no partition" before any control question
    what = "the ECS (management)" if scope == "ecs" else scope
    if take:
        answer = await run.api.take_control(scope, bool(run.args.force))
        previous = answer.get("previous") if isinstance(answer, dict) else None
        run.out.result(
            f"you control {what}" + (f" (taken from {textview.clean(previous)})" if previous else ""), answer
        )
    else:
        answer = await run.api.release_control(scope)
        run.out.result(f"released control of {what}", answer)
    return EXIT_OK


async def partition_command(run: Run) -> int:
    args = run.args
    command, partition = args.command, not_ecs(args.partition)
    body: dict[str, Any] = {}
    if command == "configure":
        body = {"auto": bool(args.auto)}
        if args.tag:
            body["tag"] = args.tag
        else:
            body["configs"] = args.config
    elif command == "reset":
        body = {"system": args.system}
    elif command == "start":
        conditions = dict(args.condition or [])
        if len(args.condition or []) != len(conditions):
            raise usage("a condition is given twice")
        given = {"type": args.type, "comment": args.comment, "conditions": conditions or None}
        body = {key: value for key, value in given.items() if value is not None}
    elif command == "stop" and args.comment is not None:
        body = {"comment": args.comment}
    if getattr(args, "wait", False):
        if run.follow is None:
            raise usage(f"{command} --wait is not available here")
        return await run.follow.command_wait(run, partition, command, body)
    reply = await run.api.command(partition, command, body)
    state = textview.clean(reply.get("state")) if isinstance(reply, dict) else "?"
    operation = reply.get("operation") if isinstance(reply, dict) else None
    if command == "reset":  # the answer is the system's status
        text = f"{partition}: reset of {args.system} accepted; {args.system} is {state}"
    else:
        text = f"{partition}: {command} accepted; {state}" + (f" ({textview.clean(operation)})" if operation else "")
    run.out.result(text, reply)
    return EXIT_OK


async def exclusion(run: Run) -> int:
    """C{ecs exclude|include P SYSTEM}: the partition's excluded systems after the change."""
    args = run.args
    command, partition = args.command, not_ecs(args.partition)
    reply = await run.api.command(partition, command, {"system": args.system})
    excluded = reply.get("excluded") if isinstance(reply, dict) else None
    shown = ", ".join(textview.clean(s) for s in excluded) if isinstance(excluded, list) and excluded else "none"
    done = "excluded" if command == "exclude" else "included (the next configure configures it)"
    run.out.result(f"{partition}: {textview.clean(args.system)} {done}; excluded now: {shown}", reply)
    return EXIT_OK


async def watch(run: Run) -> int:
    if run.follow is None:
        raise usage("watch is not available here")
    return await run.follow.watch(run, not_ecs(run.args.partition), run.args.until)


async def logs(run: Run) -> int:
    args = run.args
    try:
        since = parse_since(args.since, run.now()) if args.since else None
    except ValueError as e:
        raise usage(str(e)) from None
    if args.follow:
        if run.follow is None:
            raise usage("logs --follow is not available here")
        return await run.follow.logs_follow(run, since)
    rows = await run.api.logs(given_partition(run), args.level, since, args.grep, args.limit)
    run.out.result(textview.format_logs(rows, color=run.color), rows)
    return EXIT_OK

