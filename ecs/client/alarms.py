# -*- test-case-name: tests.test_alarms_cli -*-
"""
The argument checks (L{duration}, L{alarm_id}, L{reason_text},
L{parse_until}) and the bodies of C{alarms} (list, ack, shelve) in
L{ecs.client.table}; the alarms C{status} shows beside the states are
fetched by L{ecs.client.operate.active_alarms}.  Each body acts through the
L{ecs.client.commands.Api} (the HTTP routes C{/api/alarms...} on the
command line, L{ecs.control.IControlCenter} in the shell) and shows the
answer with L{ecs.textview}.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime

from ecs import textview
from ecs.client.commands import Run, usage
from ecs.client.operate import given_partition, not_ecs
from ecs.exits import EXIT_OK

# -- argument checks ------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(?:\d{1,9}(?:\.\d{1,6})?[smhd])+")
_DURATION_PART = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SHELVE_MAX = 30 * 86400
"""The longest shelving the command line asks for (30 days); longer is a mistake, not a plan."""
REASON_MAX = 500


def duration(value: str) -> float:
    """
    An argparse type (C{--for}): C{90s}, C{30m}, C{1h}, C{2d}, or several
    (C{1h30m}), in seconds; more than 0 and at most L{SHELVE_MAX}.  An
    error naming the value otherwise.
    """
    text = value.strip().lower()
    if not _DURATION_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration like 90s, 30m, 1h or 2d")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(text))
    if not 0 < seconds <= SHELVE_MAX:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration from 1s to {SHELVE_MAX // 86400}d")
    return seconds


def alarm_id(value: str) -> int:
    """An argparse type: an alarm id (a whole number from 1 on)."""
    if not value.isdigit() or not 1 <= int(value) < 2**63:
        raise argparse.ArgumentTypeError(f"invalid alarm id {value!r}: a number from 1 on (see ecs alarms)")
    return int(value)


def reason_text(value: str) -> str:
    """An argparse type: a shelving reason, 1 to L{REASON_MAX} characters of text."""
    if not value.strip() or len(value) > REASON_MAX:
        raise argparse.ArgumentTypeError(f"a reason of 1 to {REASON_MAX} characters is needed, not {value[:40]!r}")
    return value.strip()


def parse_until(text: str, now: float) -> float:
    """
    C{--until}: an ISO-8601 time (local time unless it says otherwise) after
    C{now} and at most L{SHELVE_MAX} later, as seconds since the epoch.
    ValueError naming the text.
    """
    try:
        when = datetime.fromisoformat(text.strip()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"--until: {text!r} is not an ISO-8601 time like 2026-12-07T18:30") from None
    if when <= now:
        raise ValueError(f"--until: {text!r} is not in the future")
    if when - now > SHELVE_MAX:
        raise ValueError(f"--until: {text!r} is more than {SHELVE_MAX // 86400} days ahead")
    return when



# -- the bodies -----------------------------------------------------------------------------


async def alarms_list(run: Run) -> int:
    """The active alarms (C{--all}: with the history), worst first; C{--partition}: of one partition."""
    partition = given_partition(run)
    include_all = bool(getattr(run.args, "all", False))
    rows = await run.api.alarms(include_all, not_ecs(partition) if partition else None)
    run.out.result(textview.format_alarms(rows, run.now(), color=run.color, history=include_all), rows)
    return EXIT_OK


async def alarms_ack(run: Run) -> int:
    """Acknowledge one alarm (operator and up; the ECA audits it)."""
    alarm = await run.api.acknowledge_alarm(run.args.id)
    run.out.result("acknowledged " + textview.format_alarm(alarm, run.now()), alarm)
    return EXIT_OK


async def alarms_shelve(run: Run) -> int:
    """Shelve one alarm for C{--for} or until C{--until}, with a C{--reason} (expert and up; audited)."""
    args = run.args
    until: float | None = None
    if args.until is not None:
        try:
            until = parse_until(args.until, run.now())
        except ValueError as e:
            raise usage(str(e)) from None
    alarm = await run.api.shelve_alarm(args.id, args.seconds, until, args.reason)
    run.out.result("shelved " + textview.format_alarm(alarm, run.now()), alarm)
    return EXIT_OK


__all__ = [
    "REASON_MAX",
    "SHELVE_MAX",
    "alarm_id",
    "alarms_ack",
    "alarms_list",
    "alarms_shelve",
    "duration",
    "parse_until",
    "reason_text",
]
