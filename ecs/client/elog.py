# -*- test-case-name: tests.test_client_elog -*-
"""
The bodies of C{ecs log-entry add}, C{list} and C{attachment} of
L{ecs.client.table}: the electronic logbook (C{/api/logbook}), not the
operator log lines of C{ecs logs}.  Entries are never changed: a
correction is a new entry (C{--corrects ID}), and the list marks each
corrected entry with the ids of its corrections and shows its attached
files (number, name, size).  All act through the
L{ecs.client.commands.Api}, so the SSH shell offers them too, except
what reads or writes files of your computer: C{add --attach FILE} (each
file checked before anything is sent: readable, not empty, at most
L{MAX_ATTACHMENT} bytes, at most L{MAX_ATTACHMENTS} files) and
C{attachment ENTRY NAME} (saved under its name, or C{-o FILE}).
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import re
from typing import Any

from ecs import textview
from ecs.client.commands import CommandError, Run
from ecs.client.history import time_range
from ecs.exits import EXIT_OK, EXIT_REFUSED, EXIT_USAGE

#: The longest entry, in characters (as the ECA checks).
MAX_TEXT = 10_000
#: The largest attached file, in bytes, and the most files per entry (as the ECA checks, L{ecs.store.elog}).
MAX_ATTACHMENT = 1 << 20
MAX_ATTACHMENTS = 3
#: The longest attachment name (as the ECA checks).
MAX_ATTACHMENT_NAME = 200
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


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
        marks.append("files: " + ", ".join(
            f"{a.get('n')} {a.get('name')} ({size_text(a.get('size'))})" for a in row["attachments"]
            if isinstance(a, dict)
        ))
    return text + "".join(f" [{m}]" for m in marks)


def size_text(size: object) -> str:
    """A number of bytes for people: C{512 B}, C{1.5 KiB}, C{1.0 MiB}."""
    if not isinstance(size, int) or isinstance(size, bool):
        return "? B"
    if size < 1024:
        return f"{size} B"
    if size < 1 << 20:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1 << 20):.1f} MiB"


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


def read_attachments(run: Run, files: list[str]) -> list[dict[str, Any]]:
    """
    The files to attach, read and checked before anything is sent: each
    refusal names the file and the limit.  C{{name, content_type, data}}
    each (the name is the file's own, the type guessed from it).
    """
    if not files:
        return []
    if run.read_bytes is None:
        raise CommandError(EXIT_USAGE, f"--attach reads files of your computer, not available in {run.where}: "
                                       "use the ecs command line there or the Logbook page")
    if len(files) > MAX_ATTACHMENTS:
        raise CommandError(EXIT_USAGE, f"{len(files)} files given: at most {MAX_ATTACHMENTS} per entry")
    found = []
    for path in files:
        name = os.path.basename(path.rstrip("/" + os.sep))
        if not name.strip() or len(name) > MAX_ATTACHMENT_NAME or _BAD_NAME.search(name):
            raise CommandError(EXIT_USAGE, f"cannot attach {path}: its name must be 1 to {MAX_ATTACHMENT_NAME} "
                                           "characters with no control characters")
        data = run.read_bytes(path, MAX_ATTACHMENT)
        if not data:
            raise CommandError(EXIT_USAGE, f"cannot attach {path}: the file is empty")
        if len(data) > MAX_ATTACHMENT:
            raise CommandError(EXIT_USAGE, f"cannot attach {path}: larger than the limit of "
                                           f"{size_text(MAX_ATTACHMENT)} ({MAX_ATTACHMENT} bytes) per file")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        found.append({"name": name, "content_type": content_type, "data": data})
    return found


async def entry_add(run: Run) -> int:
    """Write a logbook entry (operator), with the files of C{--attach}; prints its id."""
    args = run.args
    attachments = read_attachments(run, list(getattr(args, "attach", None) or []))
    entry = await run.api.add_logbook_entry(args.text, args.partition, args.run, args.corrects, attachments)
    files = f" with {len(attachments)} attached file{'s' if len(attachments) > 1 else ''}" if attachments else ""
    run.out.result(f"logbook entry {entry.get('id')} written{files}", entry)
    return EXIT_OK


async def entry_attachment(run: Run) -> int:
    """
    Save one attached file of an entry, named by its name or number (as
    C{list} shows them): under its own name in this folder (never over an
    existing file), or C{-o FILE} (C{-o -}: standard output).
    """
    args = run.args
    if run.write_bytes is None:
        raise CommandError(EXIT_USAGE, f"saving an attachment writes a file of your computer, not available in "
                                       f"{run.where}: use the ecs command line there or the Logbook page")
    rows = await run.api.logbook(None, None, None, None, None, None, 1, args.entry + 1)
    entry = rows[0] if rows and isinstance(rows[0], dict) and rows[0].get("id") == args.entry else None
    if entry is None:
        raise CommandError(EXIT_REFUSED, f"no logbook entry {args.entry}")
    files = [a for a in entry.get("attachments") or [] if isinstance(a, dict)]
    chosen = next((a for a in files if a.get("name") == args.name), None)
    if chosen is None and args.name.isdigit():
        chosen = next((a for a in files if a.get("n") == int(args.name)), None)
    if chosen is None:
        have = ", ".join(f"{a.get('n')} {a.get('name')}" for a in files) or "none"
        raise CommandError(EXIT_REFUSED, f"logbook entry {args.entry} has no attachment {args.name!r} (it has: {have})")
    name = str(chosen.get("name"))
    found = await run.api.logbook_attachment(args.entry, int(chosen.get("n") or 0))
    data = bytes(found.get("data") or b"")
    target = args.output or (os.path.basename(name) if name not in (".", "..") else "attachment")
    run.write_bytes(target, data, args.output is not None)
    summary = {"entry": args.entry, "n": chosen.get("n"), "name": name, "size": len(data), "path": target,
               "content_type": found.get("content_type")}
    if target == "-":
        run.out.note(f"attachment {name} of entry {args.entry}: {size_text(len(data))} written to standard output")
    else:
        run.out.result(f"attachment {name} of entry {args.entry} saved to {target} ({size_text(len(data))})", summary)
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


__all__ = ["MAX_ATTACHMENT", "MAX_ATTACHMENTS", "entry_add", "entry_attachment", "entry_id", "entry_list",
           "entry_text", "format_entries", "read_attachments", "size_text"]
