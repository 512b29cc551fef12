# -*- test-case-name: tests.test_web_elog -*-
"""
The API routes of the electronic logbook (issue 14, item 4):
C{GET /api/logbook} (viewer: entries newest first, filtered by
C{?text=&partition=&run=&author=&since=&until=}, paged by
C{?limit=&before=ID}), C{POST /api/logbook} (operator: C{{text,
partition?, run?, corrects?, attachments?}}) and
C{GET /api/logbook/{id}/attachments/{n}} (viewer: one attached file, as a
download).  Routes of L{ecs.web.routes.WebAPI}'s Klein app, added when
L{ecs.web.api} imports this module.

Entries are never changed nor deleted: a correction is a new entry with
C{corrects: ID}, and each entry lists the entries that correct it
(C{corrected_by}).  Attachments travel in the JSON body as base64
(C{{name, content_type, data}}), at most
L{ecs.store.elog.MAX_ATTACHMENTS} of L{ecs.store.elog.MAX_ATTACHMENT}
bytes each, so this route reads a larger body than the others
(L{MAX_LOGBOOK_BODY}).  A file is served back as a download only
(C{Content-Disposition: attachment}, C{nosniff}, a sandboxing CSP), so an
uploaded page never runs in the ECA's origin.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import quote

from twisted.web.iweb import IRequest

from ecs.control import Session
from ecs.store import NAME_RE
from ecs.store.elog import MAX_ATTACHMENT, MAX_ATTACHMENT_NAME, MAX_ATTACHMENTS, MAX_RUN, MAX_TEXT
from ecs.web import inputs
from ecs.web.auth import authorized_route
from ecs.web.inputs import MAX_LIMIT, bad, query, query_int, query_time
from ecs.web.routes import WebAPI

#: The fields of C{POST /api/logbook}.
ENTRY_FIELDS = ("text", "partition", "run", "corrects", "attachments")
#: The fields of one attachment.
ATTACHMENT_FIELDS = ("name", "content_type", "data")
#: The largest body of C{POST /api/logbook}: the attachments in base64, the text and some room.
MAX_LOGBOOK_BODY = MAX_ATTACHMENTS * 4 * ((MAX_ATTACHMENT + 2) // 3) + 6 * MAX_TEXT + (64 << 10)
#: The longest C{?text=} searched for.
MAX_SEARCH = 1000

_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}")
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def _optional_name(fields: dict[str, Any], field: str) -> str | None:
    value = fields.get(field)
    if value is not None and (not isinstance(value, str) or not NAME_RE.fullmatch(value)):
        bad(field, "must be an id of 1 to 128 letters, digits or _ . : @ -")
    return value


def _optional_id(fields: dict[str, Any], field: str) -> int | None:
    value = fields.get(field)
    if value is not None and (type(value) is not int or not 1 <= value <= MAX_RUN):
        bad(field, "must be a whole number from 1")
    return value


def attachments_of(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The C{attachments} of an entry, decoded and checked (each refusal names the attachment and field)."""
    given = fields.get("attachments", [])
    if not isinstance(given, list):
        bad("attachments", "must be a list of {name, content_type, data (base64)}")
    if len(given) > MAX_ATTACHMENTS:
        bad("attachments", f"at most {MAX_ATTACHMENTS} per entry")
    found = []
    for n, item in enumerate(given, 1):
        where = f"attachments[{n}]"
        if not isinstance(item, dict):
            bad(where, "must be an object {name, content_type, data (base64)}")
        unknown = sorted(set(item) - set(ATTACHMENT_FIELDS))
        if unknown:
            bad(f"{where}.{unknown[0]}", "unknown field")
        name, ctype, data = item.get("name"), item.get("content_type"), item.get("data")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_ATTACHMENT_NAME or _BAD_NAME.search(name):
            bad(f"{where}.name", f"a file name of 1 to {MAX_ATTACHMENT_NAME} characters, no / \\ or control characters")
        if not isinstance(ctype, str) or not _CONTENT_TYPE.fullmatch(ctype):
            bad(f"{where}.content_type", "a media type such as image/png or text/plain")
        if not isinstance(data, str):
            bad(f"{where}.data", "must be the file's bytes in base64")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            bad(f"{where}.data", "not valid base64")
        if not raw or len(raw) > MAX_ATTACHMENT:
            bad(f"{where}.data", f"the file must have 1 to {MAX_ATTACHMENT} bytes")
        found.append({"name": name, "content_type": ctype.lower(), "data": raw})
    return found


@authorized_route(WebAPI.app, "viewer", "/api/logbook", methods=["GET"])
async def logbook(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """
    Logbook entries, newest first (?text=&partition=&run=&author=&since=&until=&limit=;
    ?before=ID: the next page, older than entry ID).
    """
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    before = query_int(request, "before", None, 1, MAX_RUN)
    run = query_int(request, "run", None, 1, MAX_RUN)
    text = query(request, "text")
    if text is not None and len(text) > MAX_SEARCH:
        bad("text", f"at most {MAX_SEARCH} characters")
    names = {}
    for field in ("partition", "author"):
        value = query(request, field)
        if value is not None and not NAME_RE.fullmatch(value):
            bad(field, "must be 1 to 128 letters, digits or _ . : @ -")
        names[field] = value
    since, until = query_time(request, "since"), query_time(request, "until")
    if since is not None and until is not None and until <= since:
        bad("until", "must be after since")
    rows = await self._call(
        self.center.logbook, session.user, text, names["partition"], run, names["author"], since, until, limit, before
    )
    return self._json(request, rows)


@authorized_route(WebAPI.app, "operator", "/api/logbook", methods=["POST"])
async def add_entry(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Write a logbook entry: C{{text, partition?, run?, corrects?, attachments?}}; the entry."""
    fields = inputs.body(request, ENTRY_FIELDS, max(self.max_body, MAX_LOGBOOK_BODY))
    text = fields.get("text")
    if not isinstance(text, str) or not text.strip():
        bad("text", "must be non-empty text")
    if len(text) > MAX_TEXT:
        bad("text", f"at most {MAX_TEXT} characters")
    partition = _optional_name(fields, "partition")
    run, corrects = _optional_id(fields, "run"), _optional_id(fields, "corrects")
    files = attachments_of(fields)
    entry = await self._call(self.center.add_logbook_entry, session.user, text, partition, run, corrects, files)
    return self._json(request, entry)


@authorized_route(WebAPI.app, "viewer", "/api/logbook/<int:entry>/attachments/<int:n>", methods=["GET"])
async def attachment(self: WebAPI, request: IRequest, session: Session, entry: int, n: int) -> bytes:
    """One attached file, as a download (never shown inline)."""
    if not 1 <= entry <= MAX_RUN:
        bad("entry", "must be a whole number from 1")
    if not 1 <= n <= MAX_ATTACHMENTS:
        bad("n", f"must be from 1 to {MAX_ATTACHMENTS}")
    found = await self._call(self.center.logbook_attachment, session.user, entry, n)
    name = str(found["name"])
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "attachment"
    request.setHeader(b"content-type", str(found["content_type"]).encode("ascii", "replace"))
    request.setHeader(
        b"content-disposition", f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}".encode()
    )
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"content-security-policy", b"sandbox; default-src 'none'")
    request.setHeader(b"cache-control", b"no-store")
    return bytes(found["data"])


__all__ = ["ENTRY_FIELDS", "MAX_LOGBOOK_BODY", "add_entry", "attachment", "attachments_of", "logbook"]
