# -*- test-case-name: tests.test_client_elog -*-
"""
The bodies of C{ecs log-entry add} and C{ecs log-entry list} of
L{ecs.client.table}: the electronic logbook (C{/api/logbook}), not the
operator log lines of C{ecs logs}.  Entries are never changed: a
correction is a new entry (C{--corrects ID}), and the list marks each
corrected entry with the ids of its corrections.  Both act through the
L{ecs.client.commands.Api}, so the SSH shell offers them too.
"""

from __future__ import annotations

import argparse
from typing import Any

from ecs import textview
from ecs.client.commands import Run
from ecs.client.history import time_range
from ecs.exits import EXIT_OK

#: The longest entry, in characters (as the ECA checks).
MAX_TEXT = 10_000


def entry_text(text: str) -> str:
    """An argparse type: an entry's text (non-empty, at most L{MAX_TEXT} characters)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the text must not be empty")
    if len(text) > MAX_TEXT:
        raise argparse.ArgumentTypeError(f"the text has {len(text)} characters: at most {MAX_TEXT}")
    return text


def entry_id(value: str) -> int:
    """An argparse type: an entry id or run number (a whole number from 1)."""
    if not value.isdigit() or not 1 <= int(value) < 2**63:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}: a whole number from 1")
    return int(value)


def _what(row: dict[str, Any]) -> str:
    """The text of an entry, with its correction marks and attachments."""
    text = " ".join(str(row.get("text", "")).split())
    marks = []
    if row.get("corrects"):
        marks.append(f"corrects #{row['corrects']}")
    if row.get("corrected_by"):
        marks.append("corrected by " + ", ".join(f"#{i}" for i in row["corrected_by"]))
    if row.get("attachments"):
        marks.append(", ".join(f"{a.get('name')} ({a.get('size')} B)" for a in row["attachments"]))
    return text + "".join(f" [{m}]" for m in marks)


def format_entries(rows: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/logbook}: id, time, author, partition, run, text (with correction marks)."""
    if not rows:
        return "no logbook entries\n"
    body = [
        [
            row.get("id"),
            textview.format_time(row.get("time")),
            row.get("author") or "-",
            row.get("partition") or "-",
            row.get("run") or "-",
            _what(row),
        ]
        for row in rows
        if isinstance(row, dict)
    ]
    return textview.table(["ID", "TIME", "AUTHOR", "PARTITION", "RUN", "TEXT"], body, color)


async def entry_add(run: Run) -> int:
    """Write a logbook entry (operator); prints its id."""
    args = run.args
    entry = await run.api.add_logbook_entry(args.text, args.partition, args.run, args.corrects)
    run.out.result(f"logbook entry {entry.get('id')} written", entry)
    return EXIT_OK


async def entry_list(run: Run) -> int:
    """Logbook entries, newest first, filtered; C{--before ID} pages on."""
    args = run.args
    since, until = time_range(run)
    rows = await run.api.logbook(args.text, args.partition, args.run, args.author, since, until, args.limit,
                                 args.before)
    if rows and len(rows) == args.limit and isinstance(rows[-1], dict):
        run.out.note(f"more may be older: add --before {rows[-1].get('id')}")
    run.out.result(format_entries(rows, color=run.color), rows)
    return EXIT_OK


__all__ = ["entry_add", "entry_id", "entry_list", "entry_text", "format_entries"]
