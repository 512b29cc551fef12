# -*- test-case-name: tests.test_protocol -*-
"""
The ECS wire protocol: one versioned JSON envelope for every message.

Every frame on the wire is one UTF-8 JSON object::

    {"v": 1, "kind": "request", "type": "configure", "sender": "demo",
     "target": "STS", "id": "3f2a-17", "body": {...}}

``kind`` is one of:

- ``request``: needs exactly one ``reply`` with the same ``id``;
- ``reply``: carries ``status`` (``ok`` or ``error``); an error body is
  ``{"code": ..., "reason": ...}``;
- ``notify``: one-way message over the request channel (state updates from a
  controller to its partition), never answered;
- ``event``: publish/subscribe, with the publisher's ``epoch`` and ``seq``
  and a ``topic``.

L{decode} validates every field and raises L{ProtocolError} naming the first
field that is wrong; it never lets a malformed frame through half-parsed.
Unknown fields are refused rather than ignored: a newer peer must bump C{v}.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

VERSION = 1
DEFAULT_MAX_SIZE = 1024 * 1024

KINDS = ("request", "reply", "notify", "event")
STATUSES = ("ok", "error")

_NAME = re.compile(r"\A[A-Za-z0-9_.:@*-]{1,128}\Z")
_TYPE = re.compile(r"\A[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
_REQUEST_ID = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
_CODE = re.compile(r"\A[a-z][a-z0-9_]{0,63}\Z")
_TOPIC = re.compile(r"\A[A-Za-z0-9_.:/@*-]{1,200}\Z")

#: The address of an endpoint itself, not of one agent behind it.
ENDPOINT_TARGET = "*"

# Error codes shared by every agent.  Agents may add their own (lower-case
# identifiers); these are the ones the transport itself produces.
BAD_REQUEST = "bad_request"
TOO_LARGE = "too_large"
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_TYPE = "unknown_type"
UNKNOWN_TARGET = "unknown_target"
INTERNAL = "internal"
TIMEOUT = "timeout"
NOT_ALLOWED = "not_allowed"
BUSY = "busy"
LOCKED = "locked"
UNKNOWN_SYSTEM = "unknown_system"
OVERLOADED = "overloaded"

#: The state shown for a system (or partition) that is not reachable: the
#: PCA's picture, the ECA's unassigned detectors and the GUI all use it.
CONNECTION_PROBLEM = "Connection Problem"


def pca_node_name(partition: str) -> str:
    """The agent name (and sender name) of the PCA of C{partition}."""
    return f"pca:{partition}"


class ProtocolError(ValueError):
    """
    A frame that is not a valid envelope.

    @ivar code: the error code a reply would carry.
    @ivar reason: what was wrong, for people.
    @ivar request_id: the request id if it could be read, so that the sender
        can still be answered; L{None} otherwise.
    @ivar sender: the sender if it could be read.
    """

    def __init__(
        self,
        code: str,
        reason: str,
        request_id: str | None = None,
        sender: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.request_id = request_id
        self.sender = sender
        self.kind = kind


@attrs.frozen
class Envelope:
    """One validated message."""

    kind: str
    type: str
    sender: str
    target: str
    body: dict[str, Any] = attrs.field(factory=dict)
    id: str | None = None
    status: str | None = None
    topic: str | None = None
    epoch: str | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for this envelope, without absent fields."""
        out: dict[str, Any] = {
            "v": VERSION,
            "kind": self.kind,
            "type": self.type,
            "sender": self.sender,
            "target": self.target,
            "body": self.body,
        }
        for name in ("id", "status", "topic", "epoch", "seq"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @property
    def error_code(self) -> str | None:
        """The error code of an error reply, else L{None}."""
        if self.kind == "reply" and self.status == "error":
            return str(self.body.get("code"))
        return None


def request(type: str, sender: str, target: str, id: str, body: dict[str, Any]) -> Envelope:
    """Build a request envelope."""
    return Envelope("request", type, sender, target, body, id=id)


def notify(type: str, sender: str, target: str, body: dict[str, Any]) -> Envelope:
    """Build a one-way notification envelope."""
    return Envelope("notify", type, sender, target, body)


def ok_reply(to: Envelope, body: dict[str, Any]) -> Envelope:
    """The C{ok} reply to request C{to}."""
    return Envelope("reply", to.type, to.target, to.sender, body, id=to.id, status="ok")


def error_reply_for(
    type: str, sender: str, target: str, id: str, code: str, reason: str
) -> Envelope:
    """An C{error} reply from C{sender} to C{target} for request C{id}."""
    return Envelope(
        "reply", type, sender, target, {"code": code, "reason": reason}, id=id, status="error"
    )


def error_reply(to: Envelope, code: str, reason: str) -> Envelope:
    """The C{error} reply to request C{to}."""
    return error_reply_for(to.type, to.target, to.sender, str(to.id), code, reason)


def event(
    type: str, sender: str, topic: str, epoch: str, seq: int, body: dict[str, Any]
) -> Envelope:
    """A publish/subscribe event."""
    return Envelope("event", type, sender, ENDPOINT_TARGET, body, topic=topic, epoch=epoch, seq=seq)


def encode(envelope: Envelope, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """
    Serialise C{envelope}.

    @raise ProtocolError: with code C{too_large} when the frame would exceed
        C{max_size}, so that an oversized message fails loudly at its sender.
    @raise TypeError: when the body holds something JSON cannot encode.
    """
    data = json.dumps(envelope.to_dict(), separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(data) > max_size:
        raise ProtocolError(
            TOO_LARGE,
            f"message of {len(data)} bytes exceeds the limit of {max_size} bytes",
            envelope.id,
            envelope.sender,
            envelope.kind,
        )
    return data


_ALLOWED_FIELDS = {
    "request": {"v", "kind", "type", "sender", "target", "body", "id"},
    "reply": {"v", "kind", "type", "sender", "target", "body", "id", "status"},
    "notify": {"v", "kind", "type", "sender", "target", "body"},
    "event": {"v", "kind", "type", "sender", "target", "body", "topic", "epoch", "seq"},
}


def _bad(reason: str, raw: dict[str, Any]) -> ProtocolError:
    """A C{bad_request} error about C{raw}, carrying what could be read of it."""
    return _error(BAD_REQUEST, reason, raw)


def _error(code: str, reason: str, raw: dict[str, Any] | None) -> ProtocolError:
    request_id = sender = kind = None
    if raw is not None:
        candidate = raw.get("id")
        if isinstance(candidate, str) and _REQUEST_ID.match(candidate):
            request_id = candidate
        candidate = raw.get("sender")
        if isinstance(candidate, str) and _NAME.match(candidate):
            sender = candidate
        candidate = raw.get("kind")
        if candidate in KINDS:
            kind = candidate
    return ProtocolError(code, reason, request_id, sender, kind)


def decode(frame: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Envelope:
    """
    Parse and validate one frame.

    @raise ProtocolError: naming the first problem found.  When the request
        id and sender could be read, they are on the exception, so that the
        receiver can still answer.
    """
    if not isinstance(frame, bytes):
        raise ProtocolError(BAD_REQUEST, f"frame must be bytes, got {type(frame).__name__}")
    if len(frame) > max_size:
        # Not decoded at all: the size is checked before any parsing.
        raise ProtocolError(
            TOO_LARGE, f"message of {len(frame)} bytes exceeds the limit of {max_size} bytes"
        )
    try:
        raw = json.loads(frame.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ProtocolError(BAD_REQUEST, f"frame is not UTF-8 ({e.reason} at byte {e.start})") from None
    except ValueError as e:
        raise ProtocolError(BAD_REQUEST, f"frame is not JSON ({e})") from None
    except RecursionError:
        # A small frame such as b"[" * 100000 exhausts the parser's stack.
        raise ProtocolError(BAD_REQUEST, "frame is nested too deeply to parse") from None
    if not isinstance(raw, dict):
        raise ProtocolError(BAD_REQUEST, f"message must be a JSON object, got {type(raw).__name__}")
    version = raw.get("v")
    if type(version) is not int or version != VERSION:  # not True, not 1.0
        raise _error(
            UNSUPPORTED_VERSION, f"field 'v' must be {VERSION}, got {version!r}", raw
        )
    # Each check narrows the field's type for what follows; a message is
    # built only when the check fails, so a valid frame costs no repr() of
    # its (possibly large) fields.
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise _bad(f"field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}", raw)
    unknown = sorted(set(raw) - _ALLOWED_FIELDS[kind])
    if unknown:
        raise _bad(f"unexpected field(s) for a {kind}: {', '.join(unknown)}", raw)
    msg_type = raw.get("type")
    if not isinstance(msg_type, str) or not _TYPE.match(msg_type):
        raise _bad(f"field 'type' must be an identifier of at most 64 characters, got {_short(msg_type)}", raw)
    names: list[str] = []
    for name in ("sender", "target"):
        value = raw.get(name)
        if not isinstance(value, str) or not _NAME.match(value):
            raise _bad(
                f"field '{name}' must be an agent id (1-128 of A-Z a-z 0-9 _ . : @ * -), got {_short(value)}", raw
            )
        names.append(value)
    sender, target = names
    body = raw.get("body")
    if not isinstance(body, dict):
        raise _bad(f"field 'body' must be an object, got {_short(body)}", raw)
    fields: dict[str, Any] = {}
    if kind in ("request", "reply"):
        request_id = raw.get("id")
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            raise _bad(f"field 'id' must be a request id (1-64 of A-Z a-z 0-9 _ . : -), got {_short(request_id)}", raw)
        fields["id"] = request_id
    if kind == "reply":
        status = raw.get("status")
        if status not in STATUSES:
            raise _bad(f"field 'status' must be ok or error, got {_short(status)}", raw)
        fields["status"] = status
        if status == "error":
            code = body.get("code")
            if not isinstance(code, str) or not _CODE.match(code):
                raise _bad(f"error body 'code' must be a lower-case identifier, got {_short(code)}", raw)
            if not isinstance(body.get("reason"), str):
                raise _bad(f"error body 'reason' must be a string, got {_short(body.get('reason'))}", raw)
    if kind == "event":
        topic = raw.get("topic")
        if not isinstance(topic, str) or not _TOPIC.match(topic):
            raise _bad(f"field 'topic' must be a topic name, got {_short(topic)}", raw)
        epoch = raw.get("epoch")
        if not isinstance(epoch, str) or not _REQUEST_ID.match(epoch):
            raise _bad(f"field 'epoch' must be an id string, got {_short(epoch)}", raw)
        seq = raw.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise _bad(f"field 'seq' must be a non-negative integer, got {_short(seq)}", raw)
        fields.update(topic=topic, epoch=epoch, seq=seq)
    return Envelope(kind, msg_type, sender, target, body, **fields)


def _short(value: object, limit: int = 60) -> str:
    """A bounded repr for error messages (never echo a whole huge field)."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
