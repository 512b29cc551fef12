"""
Tests for L{ecs.protocol}: the versioned JSON envelope, its builders,
L{encode} and L{decode}, and every validation rule of L{decode}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ecs import protocol
from ecs.protocol import Envelope, ProtocolError


def raw_frame(fields: dict[str, Any]) -> bytes:
    """Serialise C{fields} as-is, without any validation."""
    return json.dumps(fields).encode("utf-8")


def valid_fields(kind: str) -> dict[str, Any]:
    """A valid raw message of C{kind}, as a dict to mutate."""
    base: dict[str, Any] = {
        "v": 1,
        "kind": kind,
        "type": "configure",
        "sender": "demo",
        "target": "STS",
        "body": {"mode": "physics"},
    }
    if kind in ("request", "reply"):
        base["id"] = "abc-1"
    if kind == "reply":
        base["status"] = "ok"
    if kind == "event":
        base.update(target="*", topic="state/STS", epoch="e1f2", seq=7)
    return base


class RoundTripTests(SynchronousTestCase):
    """Every kind of envelope survives L{encode} then L{decode} unchanged."""

    def assertRoundTrip(self, envelope: Envelope) -> Envelope:
        frame = protocol.encode(envelope)
        self.assertIsInstance(frame, bytes)
        decoded = protocol.decode(frame)
        self.assertEqual(decoded, envelope)
        return decoded

    def test_request(self) -> None:
        """A request keeps its type, sender, target, id and body."""
        env = protocol.request("configure", "demo", "STS", "r-1", {"a": [1, 2.5, None, "x"]})
        decoded = self.assertRoundTrip(env)
        self.assertEqual(decoded.kind, "request")
        self.assertEqual(decoded.id, "r-1")
        self.assertIsNone(decoded.status)

    def test_notify(self) -> None:
        """A notification has no id and survives a round trip."""
        env = protocol.notify("states", "host-1", "PCA1", {"updates": [{"id": "STS"}]})
        decoded = self.assertRoundTrip(env)
        self.assertIsNone(decoded.id)
        self.assertNotIn("id", env.to_dict())

    def test_ok_reply(self) -> None:
        """An ok reply swaps sender and target and keeps the request id."""
        req = protocol.request("configure", "demo", "STS", "r-2", {})
        reply = protocol.ok_reply(req, {"state": "Active"})
        decoded = self.assertRoundTrip(reply)
        self.assertEqual(
            (decoded.kind, decoded.status, decoded.sender, decoded.target, decoded.id),
            ("reply", "ok", "STS", "demo", "r-2"),
        )
        self.assertIsNone(decoded.error_code)

    def test_error_reply(self) -> None:
        """An error reply carries code and reason in its body."""
        req = protocol.request("configure", "demo", "STS", "r-3", {})
        reply = protocol.error_reply(req, "busy", "already configuring")
        decoded = self.assertRoundTrip(reply)
        self.assertEqual(decoded.status, "error")
        self.assertEqual(decoded.body, {"code": "busy", "reason": "already configuring"})
        self.assertEqual(decoded.error_code, "busy")
        self.assertEqual((decoded.sender, decoded.target), ("STS", "demo"))

    def test_error_reply_for(self) -> None:
        """error_reply_for builds an answer from loose parts."""
        reply = protocol.error_reply_for("error", "*", "demo", "r-4", "bad_request", "nope")
        decoded = self.assertRoundTrip(reply)
        self.assertEqual((decoded.type, decoded.sender, decoded.target), ("error", "*", "demo"))
        self.assertEqual(decoded.error_code, "bad_request")

    def test_event(self) -> None:
        """An event keeps topic, epoch and seq and is addressed to the endpoint."""
        env = protocol.event("state", "PCA1", "state/STS", "ab12", 42, {"key": "STS"})
        decoded = self.assertRoundTrip(env)
        self.assertEqual(
            (decoded.target, decoded.topic, decoded.epoch, decoded.seq),
            (protocol.ENDPOINT_TARGET, "state/STS", "ab12", 42),
        )

    def test_event_seq_zero(self) -> None:
        """Sequence number 0 (a tick before any event) is valid."""
        self.assertRoundTrip(protocol.event("tick", "PCA1", "_tick", "ab12", 0, {}))

    def test_unicode_body(self) -> None:
        """Non-ASCII text in the body survives the round trip."""
        body = {"text": "Überstrom µA ✓"}
        self.assertRoundTrip(protocol.request("log", "demo", "STS", "r", body))

    def test_to_dict_omits_absent_fields(self) -> None:
        """to_dict writes the version and leaves out fields that are None."""
        out = protocol.notify("states", "a", "b", {}).to_dict()
        self.assertEqual(set(out), {"v", "kind", "type", "sender", "target", "body"})
        self.assertEqual(out["v"], protocol.VERSION)

    def test_encode_is_compact_json(self) -> None:
        """encode produces compact UTF-8 JSON of to_dict."""
        env = protocol.request("t", "a", "b", "i", {"k": "ü"})
        frame = protocol.encode(env)
        self.assertNotIn(b" ", frame)
        self.assertEqual(json.loads(frame.decode("utf-8")), env.to_dict())


class EncodeTests(SynchronousTestCase):
    """L{encode} refuses what must not go on the wire."""

    def test_too_large(self) -> None:
        """A frame over max_size fails with too_large, naming id and sender."""
        env = protocol.request("t", "demo", "STS", "r-9", {"blob": "x" * 200})
        with self.assertRaises(ProtocolError) as cm:
            protocol.encode(env, max_size=100)
        e = cm.exception
        self.assertEqual(e.code, protocol.TOO_LARGE)
        self.assertIn("exceeds the limit of 100 bytes", e.reason)
        self.assertEqual((e.request_id, e.sender, e.kind), ("r-9", "demo", "request"))

    def test_exact_limit(self) -> None:
        """A frame of exactly max_size bytes is accepted by encode and decode."""
        env = protocol.request("t", "demo", "STS", "r-9", {"blob": ""})
        size = len(protocol.encode(env))
        padded = protocol.request("t", "demo", "STS", "r-9", {"blob": "x" * 50})
        limit = size + 50
        frame = protocol.encode(padded, max_size=limit)
        self.assertEqual(len(frame), limit)
        self.assertEqual(protocol.decode(frame, max_size=limit), padded)
        with self.assertRaises(ProtocolError):
            protocol.decode(frame, max_size=limit - 1)

    def test_not_json_able(self) -> None:
        """A body JSON cannot represent raises TypeError."""
        with self.assertRaises(TypeError):
            protocol.encode(protocol.request("t", "a", "b", "i", {"x": object()}))

    def test_nan_refused(self) -> None:
        """NaN is not JSON and is refused rather than sent."""
        with self.assertRaises(ValueError):
            protocol.encode(protocol.request("t", "a", "b", "i", {"x": float("nan")}))


class FrameLevelTests(SynchronousTestCase):
    """L{decode} refuses frames that are not a JSON object within the limit."""

    def assertRefused(self, frame: Any, code: str, text: str, **kw: Any) -> ProtocolError:
        with self.assertRaises(ProtocolError) as cm:
            protocol.decode(frame, **kw)
        e = cm.exception
        self.assertEqual(e.code, code, e.reason)
        self.assertIn(text, e.reason)
        self.assertIn(text, str(e))
        return e

    def test_not_bytes(self) -> None:
        """A str frame is refused."""
        self.assertRefused('{"v": 1}', protocol.BAD_REQUEST, "must be bytes, got str")

    def test_size_checked_before_parsing(self) -> None:
        """An oversized frame is too_large even when it is not UTF-8 or JSON."""
        e = self.assertRefused(b"\xff" * 101, protocol.TOO_LARGE, "101 bytes", max_size=100)
        self.assertIsNone(e.request_id)

    def test_size_checked_before_json(self) -> None:
        """An oversized frame is never handed to the JSON parser."""
        calls = []
        self.patch(protocol.json, "loads", lambda *a, **kw: calls.append(a))
        frame = protocol.encode(protocol.request("t", "a", "b", "i", {"x": "y" * 100}))
        self.assertRefused(frame, protocol.TOO_LARGE, "exceeds the limit", max_size=50)
        self.assertEqual(calls, [])

    def test_default_limit(self) -> None:
        """The default limit is one MiB."""
        self.assertRefused(
            b" " * (protocol.DEFAULT_MAX_SIZE + 1), protocol.TOO_LARGE, "exceeds the limit"
        )

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 are refused with the offset."""
        self.assertRefused(b'{"v": 1, "x": "\xff"}', protocol.BAD_REQUEST, "not UTF-8")

    def test_not_json(self) -> None:
        """Text that is not JSON is refused."""
        for frame in (b"", b"{", b"hello", b'{"v": 1,}', b"{'v': 1}"):
            self.assertRefused(frame, protocol.BAD_REQUEST, "not JSON")

    def test_not_an_object(self) -> None:
        """JSON that is not an object is refused, naming what it is."""
        for frame, name in ((b"[]", "list"), (b"1", "int"), (b'"x"', "str"), (b"null", "NoneType")):
            self.assertRefused(frame, protocol.BAD_REQUEST, f"must be a JSON object, got {name}")

    def test_deeply_nested(self) -> None:
        """JSON nested too deeply for the parser is refused, not a crash."""
        self.assertRefused(b"[" * 100_000, protocol.BAD_REQUEST, "nested")

    def test_deeply_nested_body(self) -> None:
        """An envelope whose body nests too deeply for the parser is refused, not a crash."""
        fields = valid_fields("request")
        nested = b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        frame = raw_frame(fields).replace(b'{"mode": "physics"}', nested)
        with self.assertRaises(ProtocolError) as cm:
            protocol.decode(frame)
        self.assertEqual(cm.exception.code, protocol.BAD_REQUEST)


class FieldValidationTests(SynchronousTestCase):
    """Each field rule of L{decode} refuses bad values and names the field."""

    def assertRejected(
        self,
        fields: dict[str, Any],
        names: str,
        code: str = protocol.BAD_REQUEST,
    ) -> ProtocolError:
        frame = raw_frame(fields)
        with self.assertRaises(ProtocolError, msg=f"accepted {fields!r}") as cm:
            protocol.decode(frame)
        e = cm.exception
        self.assertEqual(e.code, code, f"{fields!r}: {e.reason}")
        self.assertIn(names, e.reason, f"{fields!r}")
        return e

    def mutated(self, kind: str, /, **changes: Any) -> dict[str, Any]:
        fields = valid_fields(kind)
        for name, value in changes.items():
            if value is _MISSING:
                fields.pop(name, None)
            else:
                fields[name] = value
        return fields

    def test_valid_base_messages(self) -> None:
        """The unmutated messages used below are valid (so the tests can fail)."""
        for kind in protocol.KINDS:
            env = protocol.decode(raw_frame(valid_fields(kind)))
            self.assertEqual(env.kind, kind)

    def test_version(self) -> None:
        """A missing, wrong or wrongly typed version is unsupported_version."""
        for value in (_MISSING, 0, 2, "1", True, None, 1.0, 1.5, [1]):
            self.assertRejected(
                self.mutated("request", v=value), "field 'v'", protocol.UNSUPPORTED_VERSION
            )

    def test_version_error_answerable(self) -> None:
        """A request of another version can still be answered: id and sender are kept."""
        e = self.assertRejected(
            self.mutated("request", v=2), "field 'v'", protocol.UNSUPPORTED_VERSION
        )
        self.assertEqual((e.request_id, e.sender, e.kind), ("abc-1", "demo", "request"))

    def test_kind(self) -> None:
        """A missing or unknown kind is refused."""
        for value in (_MISSING, "Request", "publish", 1, None, ["request"]):
            e = self.assertRejected(self.mutated("request", kind=value), "field 'kind'")
            self.assertIsNone(e.kind)

    def test_unknown_fields(self) -> None:
        """Fields not allowed for the kind are refused and listed."""
        cases = [
            ("request", {"extra": 1}, "extra"),
            ("request", {"status": "ok"}, "status"),
            ("request", {"seq": 1, "topic": "x"}, "seq, topic"),
            ("notify", {"id": "abc"}, "id"),
            ("reply", {"topic": "t"}, "topic"),
            ("event", {"id": "abc"}, "id"),
            ("event", {"status": "ok"}, "status"),
        ]
        for kind, extra, listed in cases:
            fields = valid_fields(kind)
            fields.update(extra)
            self.assertRejected(fields, f"unexpected field(s) for a {kind}: {listed}")

    def test_type(self) -> None:
        """The type must be an identifier of 1-64 characters starting with a letter."""
        bad = (_MISSING, None, 3, "", "1abc", "_x", "has space", "a/b", "x" * 65, ["t"], "é")
        for value in bad:
            self.assertRejected(self.mutated("request", type=value), "field 'type'")
        for good in ("a", "x" * 64, "get_state.v2-b"):
            self.assertEqual(protocol.decode(raw_frame(self.mutated("request", type=good))).type, good)

    def test_sender_and_target(self) -> None:
        """Sender and target must be agent ids of 1-128 allowed characters."""
        bad = (_MISSING, None, 7, "", "a b", "a/b", "x" * 129, "ä", {"id": "x"}, "a\n")
        for name in ("sender", "target"):
            for value in bad:
                self.assertRejected(self.mutated("request", **{name: value}), f"field '{name}'")
            for good in ("*", "x" * 128, "cli:1234", "user@host", "a.b_c-d"):
                env = protocol.decode(raw_frame(self.mutated("request", **{name: good})))
                self.assertEqual(getattr(env, name), good)

    def test_sender_unreadable(self) -> None:
        """With an invalid sender the error cannot be answered: sender is None."""
        e = self.assertRejected(self.mutated("request", sender="a b"), "field 'sender'")
        self.assertIsNone(e.sender)
        self.assertEqual(e.request_id, "abc-1")

    def test_id(self) -> None:
        """Requests and replies need an id of 1-64 allowed characters."""
        bad = (_MISSING, None, 5, "", "a b", "a/b", "x" * 65, ["abc"], "a*b")
        for kind in ("request", "reply"):
            for value in bad:
                e = self.assertRejected(self.mutated(kind, id=value), "field 'id'")
                self.assertIsNone(e.request_id)
                self.assertEqual(e.sender, "demo")
        self.assertEqual(protocol.decode(raw_frame(self.mutated("request", id="x" * 64))).id, "x" * 64)

    def test_body(self) -> None:
        """The body must be a JSON object for every kind."""
        for kind in protocol.KINDS:
            for value in (_MISSING, None, [], [{}], "body", 1, True):
                self.assertRejected(self.mutated(kind, body=value), "field 'body' must be an object")

    def test_reply_status(self) -> None:
        """A reply's status is ok or error."""
        for value in (_MISSING, None, "OK", "failed", 1, True):
            self.assertRejected(self.mutated("reply", status=value), "field 'status'")

    def test_error_body_code(self) -> None:
        """An error reply needs a lower-case identifier as code."""
        for code in (_MISSING, None, 3, "", "Bad", "1bad", "bad code", "x" * 65):
            body: dict[str, Any] = {"reason": "r"}
            if code is not _MISSING:
                body["code"] = code
            self.assertRejected(
                self.mutated("reply", status="error", body=body), "error body 'code'"
            )

    def test_error_body_reason(self) -> None:
        """An error reply needs a string reason."""
        for reason in (_MISSING, None, 3, ["r"], {"r": 1}):
            body: dict[str, Any] = {"code": "busy"}
            if reason is not _MISSING:
                body["reason"] = reason
            self.assertRejected(
                self.mutated("reply", status="error", body=body), "error body 'reason'"
            )

    def test_ok_reply_body_free(self) -> None:
        """An ok reply's body needs no code or reason."""
        env = protocol.decode(raw_frame(self.mutated("reply", body={})))
        self.assertEqual(env.status, "ok")

    def test_event_topic(self) -> None:
        """An event needs a topic name."""
        for value in (_MISSING, None, 1, "", "a b", "x" * 201, "tö"):
            self.assertRejected(self.mutated("event", topic=value), "field 'topic'")

    def test_event_epoch(self) -> None:
        """An event needs an epoch id string."""
        for value in (_MISSING, None, 1, "", "a b", "x" * 65, ["e"]):
            self.assertRejected(self.mutated("event", epoch=value), "field 'epoch'")

    def test_event_seq(self) -> None:
        """An event's seq is a non-negative integer, not a bool, float or string."""
        for value in (_MISSING, None, -1, -100, True, False, 1.5, 2.0, "3", [1]):
            self.assertRejected(self.mutated("event", seq=value), "field 'seq'")

    def test_error_message_is_bounded(self) -> None:
        """A huge bad value is not echoed whole into the reason."""
        e = self.assertRejected(self.mutated("request", type="!" * 10_000), "field 'type'")
        self.assertLess(len(e.reason), 200)
        self.assertIn("...", e.reason)

    def test_first_problem_reported(self) -> None:
        """With several problems the first field in order is named."""
        fields = self.mutated("request", type=1, target=2, body=3)
        self.assertRejected(fields, "field 'type'")


class ProtocolErrorTests(SynchronousTestCase):
    """L{ProtocolError} keeps what is needed to answer the sender."""

    def test_readable_request_fields(self) -> None:
        """For a malformed request with valid id and sender, both are on the error."""
        fields = valid_fields("request")
        fields["target"] = "no target"
        with self.assertRaises(ProtocolError) as cm:
            protocol.decode(raw_frame(fields))
        e = cm.exception
        self.assertEqual((e.request_id, e.sender, e.kind), ("abc-1", "demo", "request"))

    def test_unreadable(self) -> None:
        """For a frame that is not JSON nothing can be read."""
        with self.assertRaises(ProtocolError) as cm:
            protocol.decode(b"garbage")
        e = cm.exception
        self.assertEqual((e.request_id, e.sender, e.kind), (None, None, None))

    def test_wrongly_typed_id_not_kept(self) -> None:
        """An id of the wrong type is not reported as readable."""
        fields = valid_fields("request")
        fields.update(id=12, type=None)
        with self.assertRaises(ProtocolError) as cm:
            protocol.decode(raw_frame(fields))
        self.assertIsNone(cm.exception.request_id)

    def test_is_value_error(self) -> None:
        """ProtocolError is a ValueError whose text holds code and reason."""
        e = ProtocolError("bad_request", "because")
        self.assertIsInstance(e, ValueError)
        self.assertEqual(str(e), "bad_request: because")


class _Missing:
    """Marker: remove the field."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()
