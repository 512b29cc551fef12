# -*- test-case-name: tests.test_web -*-
"""
The ECA's JSON API and event stream (DESIGN.md section 7), as a Klein app.

L{WebAPI} is a class holding C{app = Klein()}; it talks only to an
L{IControlCenter} and an injected clock.  Mount it with
C{Site(WebAPI(center, reactor).resource())} on an endpoint service; never
C{app.run()}.  The endpoint string (C{tcp:8080:interface=127.0.0.1}, or
C{ssl:...}) belongs to the service that mounts it.  The routes for experts
and admins (agents, configurations, tags, runs, logs, users) are in
L{ecs.web.admin}, the event stream's connection in L{ecs.web.stream}.

Authentication
    C{Authorization: Bearer <token>} (scripts, the CLI) or the session
    cookie C{ecs_session} set by C{POST /api/login} (HttpOnly,
    SameSite=Strict, Path=/, Secure when the login came over TLS).  Klein's
    own session system is not used (it raises C{NoSuchSession} on a bogus
    cookie).  With a cookie, every POST/PUT/DELETE other than the login must
    carry C{X-CSRF-Token} equal to the session's csrf value; bearer requests
    need none, since a browser never adds that header cross-site.  A bearer
    header wins over a cookie.

Roles
    Reads need viewer; partition control and commands operator; the ECS
    control, management, configuration and tag writes expert; users and
    C{?force=1} on control admin.  The center checks again; this layer
    answers 403 naming the role first.

Bodies
    JSON objects only (C{Content-Type: application/json}), at most
    L{MAX_BODY} bytes.  Twisted has already buffered a request body (in a
    temporary file beyond 100 KiB) when a resource renders, so the limit is
    checked on C{Content-Length} first and then by reading at most one byte
    more than the limit, never by loading an unbounded body into memory.
    Unknown fields and fields of the wrong type give 400 naming the field.

Errors
    Always JSON C{{"error": code, "reason": text, ...details}};
    L{ControlError}s keep their status, unknown paths give 404, anything
    unexpected gives 500 C{{"error": "internal"}} and is logged here, never
    shown to the client.

Login rate limit
    Failed logins are counted per user name and per client address in a
    sliding window (defaults: 5 per user and 20 per address per minute, an
    address being shared by everyone behind one control-room NAT).  Beyond
    that the login answers 429 C{too_many_attempts} with C{Retry-After}
    without asking the center.  The address is the TCP peer: behind a proxy
    it is the proxy's.

Event stream (C{GET /api/events})
    C{text/event-stream} of C{id: N / event: TYPE / data: JSON} blocks.  A
    client reconnecting with C{Last-Event-ID} (or C{?last_event_id=}) gets
    the buffered events after that id first, or one C{reload} event (no id)
    when they are gone; then live events; a C{: keep-alive} comment every 15
    seconds.  The stream is a streaming producer on the connection: when
    the transport's buffer fills it pauses us and we queue events
    ourselves; if that queue passes C{sse_max_buffer} bytes the client is
    too slow and is dropped (connection aborted, unsubscribed) rather than
    letting memory grow without end.  The client reconnects with its
    Last-Event-ID and resumes or reloads.
"""

from __future__ import annotations

import collections
import hmac
import json
import math
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from klein import Klein
from klein.resource import KleinResource
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ecs.control import ROLES, ControlError, IControlCenter, Session
from ecs.web.stream import EventStream

MAX_BODY = 1 << 20
COOKIE = b"ecs_session"
CSRF_HEADER = b"x-csrf-token"
KEEPALIVE = 15.0
SESSION_CHECK = 30.0
SSE_MAX_BUFFER = 1 << 20
MAX_LIMIT = 10000
_SAFE_METHODS = (b"GET", b"HEAD", b"OPTIONS")
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")


class ApiError(Exception):
    """An HTTP error that is not a L{ControlError} (413, 429, 405 ...)."""

    def __init__(self, status: int, code: str, reason: str, headers: dict[bytes, bytes] | None = None, **details: Any) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.headers = headers or {}
        self._body = {"error": code, "reason": reason, **details}

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return self._body


def _bad(field: str, reason: str) -> NoReturn:
    """Raise a 400 naming C{field}."""
    raise ControlError("bad_request", f"{field}: {reason}", field=field)


class LoginLimiter:
    """Failed logins per key (user name, client address) in a sliding window."""

    def __init__(self, clock: IReactorTime, per_user: int = 5, per_address: int = 20, window: float = 60.0, max_keys: int = 10000) -> None:
        self._clock = clock
        self._limits = {"user": per_user, "address": per_address}
        self._window = window
        self._max_keys = max_keys
        self._failures: dict[tuple[str, str], collections.deque[float]] = {}

    def _prune(self, key: tuple[str, str], now: float) -> collections.deque[float] | None:
        times = self._failures.get(key)
        while times and times[0] <= now - self._window:
            times.popleft()
        if times is not None and not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, keys: Iterable[tuple[str, str]]) -> float | None:
        """Seconds until a login for C{keys} may be tried again, or None if it may now."""
        now = self._clock.seconds()
        wait = None
        for key in keys:
            times = self._prune(key, now)
            if times is not None and len(times) >= self._limits[key[0]]:
                until = times[-self._limits[key[0]]] + self._window - now
                wait = max(wait or 0.0, until)
        return wait

    def failed(self, keys: Iterable[tuple[str, str]]) -> None:
        """Count a failed login for every key."""
        now = self._clock.seconds()
        if len(self._failures) >= self._max_keys:
            for key in list(self._failures):
                self._prune(key, now)
        for key in keys:
            times = self._failures.setdefault(key, collections.deque(maxlen=max(self._limits.values())))
            times.append(now)

    def succeeded(self, key: tuple[str, str]) -> None:
        """A successful login clears that user's count (not the address's)."""
        self._failures.pop(key, None)


class WebAPI:
    """The JSON API, SSE and metrics of the ECA over an L{IControlCenter}."""

    app = Klein()
    _log = Logger()

    def __init__(
        self,
        center: IControlCenter,
        clock: IReactorTime,
        *,
        max_body: int = MAX_BODY,
        keepalive: float = KEEPALIVE,
        sse_max_buffer: int = SSE_MAX_BUFFER,
        login_limit_user: int = 5,
        login_limit_address: int = 20,
        login_window: float = 60.0,
        session_check: float = SESSION_CHECK,
    ) -> None:
        self.center = center
        self.clock = clock
        self.max_body = max_body
        self.keepalive = keepalive
        self.sse_max_buffer = sse_max_buffer
        self.limiter = LoginLimiter(clock, login_limit_user, login_limit_address, login_window)
        self._streams: set[EventStream] = set()
        # While streams are open their sessions are checked every
        # session_check seconds: a stream of a session that ended another way
        # than through its own logout (password changed, user deleted, token
        # expired or revoked) ends too.
        self.session_check = session_check
        self._checking = LoopingCall(lambda: defer.Deferred.fromCoroutine(self._check_sessions()))
        self._checking.clock = clock

    def _stream_closed(self, stream: EventStream) -> None:
        self._streams.discard(stream)
        if not self._streams and self._checking.running:
            self._checking.stop()

    async def _check_sessions(self) -> None:
        for stream in list(self._streams):
            if stream.closed or stream.token is None:
                continue
            try:
                alive = await self._authenticate(stream.token.encode("ascii"))
            except Exception:  # a database hiccup must not end streams nor the check
                self._log.failure("checking the session of an event stream")
                continue
            if alive is None:
                stream.end()

    def resource(self) -> KleinResource:
        """The resource to mount with C{Site(api.resource())}."""
        return self.app.resource()

    @property
    def streams(self) -> frozenset[EventStream]:
        """The open event streams."""
        return frozenset(self._streams)

    # -- plumbing ------------------------------------------------------------

    @staticmethod
    def _json(request: IRequest, obj: Any, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return json.dumps({"status": "ok"} if obj is None else obj).encode()

    @staticmethod
    async def _call(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a center method that may answer directly or with a Deferred."""
        return await defer.maybeDeferred(f, *args, **kwargs)

    async def _session(self, request: IRequest, role: str) -> Session:
        """Authenticate (bearer or cookie + CSRF) and check C{role}."""
        session: Session | None
        auth = request.getHeader(b"authorization")
        if auth is not None:
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not token.strip():
                raise ControlError("unauthenticated", "Authorization must be 'Bearer <token>'")
            session = await self._authenticate(token.strip())
            if session is None:
                raise ControlError("unauthenticated", "invalid or expired token")
        else:
            cookie = request.getCookie(COOKIE)
            if not cookie:
                raise ControlError("unauthenticated", "not logged in")
            session = await self._authenticate(cookie)
            if session is None:
                raise ControlError("unauthenticated", "session expired, log in again")
            if request.method not in _SAFE_METHODS:
                sent = request.getHeader(CSRF_HEADER) or b""
                if not session.csrf or not hmac.compare_digest(sent, session.csrf.encode()):
                    raise ControlError("forbidden", "missing or wrong CSRF token")
        if not session.user.has(role):
            raise ControlError("forbidden", f"needs role {role}", role=role)
        return session

    async def _authenticate(self, token: bytes) -> Session | None:
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            return None
        session: Session | None = await self._call(self.center.authenticate, text)
        return session

    def _body(self, request: IRequest, allowed: Iterable[str], required: bool = True) -> dict[str, Any]:
        """The JSON object body, size- and type-checked before it is parsed."""
        length = request.getHeader(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                _bad("Content-Length", "not a number")
            if size > self.max_body:
                raise ApiError(413, "too_large", f"body larger than {self.max_body} bytes")
        content = request.content
        data = b""
        if content is not None:
            content.seek(0)
            data = content.read(self.max_body + 1)
        if len(data) > self.max_body:
            raise ApiError(413, "too_large", f"body larger than {self.max_body} bytes")
        if not data:
            if required:
                _bad("body", "a JSON object is required")
            return {}
        ctype = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            _bad("Content-Type", "must be application/json")
        try:
            body = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError):
            _bad("body", "not valid JSON")
        if not isinstance(body, dict):
            _bad("body", "must be a JSON object")
        allowed = set(allowed)
        for key in body:
            if key not in allowed:
                _bad(str(key), "unknown field")
        return body

    @staticmethod
    def _query(request: IRequest, name: str) -> str | None:
        values = request.args.get(name.encode())
        if not values or not values[-1]:
            return None  # ?name= (empty) means "not given"
        try:
            return values[-1].decode("utf-8")
        except UnicodeDecodeError:
            _bad(name, "not UTF-8")

    def _flag(self, request: IRequest, name: str) -> bool:
        value = self._query(request, name)
        if value is None or value.lower() in _FALSE:
            return False
        if value.lower() in _TRUE:
            return True
        _bad(name, "must be 1 or 0")

    def _int(self, request: IRequest, name: str, default: int | None, low: int, high: int) -> int | None:
        value = self._query(request, name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            _bad(name, "must be an integer")
        if not low <= number <= high:
            _bad(name, f"must be between {low} and {high}")
        return number

    def _force(self, request: IRequest, session: Session) -> bool:
        force = self._flag(request, "force")
        if force and not session.user.has("admin"):
            raise ControlError("forbidden", "force needs role admin", role="admin")
        return force

    # -- errors ----------------------------------------------------------------

    @app.handle_errors(ControlError, ApiError)
    def _domain_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        for name, value in getattr(error, "headers", {}).items():
            request.setHeader(name, value)
        return self._json(request, error.body(), error.status)

    @app.handle_errors(HTTPException)
    def _http_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        if isinstance(error, NotFound):
            return self._json(request, {"error": "not_found", "reason": "no such resource"}, 404)
        if isinstance(error, MethodNotAllowed):
            allow = ", ".join(error.valid_methods or [])
            request.setHeader(b"allow", allow.encode())
            return self._json(request, {"error": "method_not_allowed", "reason": f"allowed: {allow}"}, 405)
        for name, value in error.get_response({}).headers:
            if name.lower() == "location":
                request.setHeader(b"location", value.encode())
        code = (error.name or "error").lower().replace(" ", "_")
        return self._json(request, {"error": code, "reason": error.description or code}, error.code or 500)

    @app.handle_errors(Exception)
    def _internal_error(self, request: IRequest, failure: Failure) -> bytes:
        self._log.failure("unexpected error in {method} {path}", failure, method=request.method, path=request.path)
        return self._json(request, {"error": "internal", "reason": "internal error"}, 500)

    # -- public ------------------------------------------------------------------

    @app.route("/api/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        """Liveness, no authentication."""
        return self._json(request, {"status": "ok"})

    @app.route("/metrics", methods=["GET"])
    async def metrics(self, request: IRequest) -> bytes:
        """Prometheus text format, no authentication (scrapers have none)."""
        text = await self._call(self.center.metrics)
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        return text.encode() if isinstance(text, str) else text

    # -- login ---------------------------------------------------------------------

    @app.route("/api/login", methods=["POST"])
    async def login(self, request: IRequest) -> bytes:
        """Check a password; answer the token and set the session cookie."""
        body = self._body(request, ("username", "password", "kind"))
        username = _text(body, "username")
        password = _text(body, "password")
        kind = body.get("kind", "session")
        if kind not in ("session", "api"):
            _bad("kind", "must be session or api")
        keys = [("user", username.casefold()), ("address", _client_host(request))]
        wait = self.limiter.retry_after(keys)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise ApiError(429, "too_many_attempts", "too many failed logins, try again later",
                           headers={b"retry-after": str(seconds).encode()}, retry_after=seconds)
        try:
            session: Session = await self._call(self.center.login, username, password, kind)
        except ControlError as e:
            if e.code == "unauthenticated":
                self.limiter.failed(keys)
            raise
        self.limiter.succeeded(keys[0])
        if kind == "session":
            _set_cookie(request, session.token, request.isSecure())
        return self._json(request, {"token": session.token, "user": session.user.name,
                                    "roles": list(session.user.roles), "csrf": session.csrf})

    @app.route("/api/logout", methods=["POST"])
    async def logout(self, request: IRequest) -> bytes:
        """Forget the token (the center releases its controls) and clear the cookie."""
        session = await self._session(request, "viewer")
        self._body(request, (), required=False)
        await self._call(self.center.logout, session.token)
        # A logged-out session sees nothing more: its open event streams end
        # (their reconnection is refused with 401).
        for stream in [s for s in self._streams if s.token == session.token]:
            stream.end()
        _set_cookie(request, "", request.isSecure(), clear=True)
        return self._json(request, None)

    # -- partitions -----------------------------------------------------------------

    @app.route("/api/partitions", methods=["GET"])
    async def partitions(self, request: IRequest) -> bytes:
        """Every partition, short form."""
        await self._session(request, "viewer")
        return self._json(request, await self._call(self.center.partitions))

    @app.route("/api/partitions/<pid>", methods=["GET"])
    async def partition(self, request: IRequest, pid: str) -> bytes:
        """One partition with its allowed commands and systems."""
        await self._session(request, "viewer")
        return self._json(request, await self._call(self.center.partition, pid))

    @app.route("/api/partitions/<pid>/control", methods=["POST"])
    async def take_control(self, request: IRequest, pid: str) -> bytes:
        """Take control of a partition (admin: ?force=1)."""
        session = await self._session(request, "operator")
        force = self._force(request, session)
        self._body(request, (), required=False)
        await self._existing_partition(pid)
        return self._json(request, await self._call(self.center.take_control, session.user, pid, force))

    @app.route("/api/partitions/<pid>/control", methods=["DELETE"])
    async def release_control(self, request: IRequest, pid: str) -> bytes:
        """Give up control of a partition."""
        session = await self._session(request, "operator")
        await self._existing_partition(pid)
        return self._json(request, await self._call(self.center.release_control, session.user, pid))

    @app.route("/api/partitions/<pid>/<any(configure,start,stop,abort,reset):command>", methods=["POST"])
    async def command(self, request: IRequest, pid: str, command: str) -> bytes:
        """A partition command; the user must hold its control."""
        session = await self._session(request, "operator")
        if command == "configure":
            body = _configure_body(self._body(request, ("tag", "configs", "auto")))
        elif command == "reset":
            body = {"system": _text(self._body(request, ("system",)), "system")}
        else:
            body = self._body(request, (), required=False)
        await self._existing_partition(pid)
        return self._json(request, await self._call(self.center.command, session.user, pid, command, body))

    async def _existing_partition(self, pid: str) -> None:
        # "ecs" is the ECS-wide control scope, never a partition: without this
        # an operator could take the ECS control through a partition path.
        if pid == "ecs":
            raise ControlError("not_found", "no partition ecs")
        await self._call(self.center.partition, pid)

    # -- management (expert, with the ECS control) ---------------------------------

    @app.route("/api/control", methods=["GET"])
    async def ecs_control(self, request: IRequest) -> bytes:
        """Who holds the ECS control (holder null when nobody)."""
        await self._session(request, "viewer")
        return self._json(request, await self._call(self.center.ecs_control))

    @app.route("/api/control", methods=["POST"])
    async def take_ecs_control(self, request: IRequest) -> bytes:
        """Take the ECS control, needed for management (admin: ?force=1)."""
        session = await self._session(request, "expert")
        force = self._force(request, session)
        body = self._body(request, ("scope",), required=False)
        if body.get("scope", "ecs") != "ecs":
            _bad("scope", "must be ecs")
        return self._json(request, await self._call(self.center.take_control, session.user, "ecs", force))

    @app.route("/api/control", methods=["DELETE"])
    async def release_ecs_control(self, request: IRequest) -> bytes:
        """Give up the ECS control."""
        session = await self._session(request, "expert")
        return self._json(request, await self._call(self.center.release_control, session.user, "ecs"))

    @app.route("/api/partitions", methods=["POST"])
    async def create_partition(self, request: IRequest) -> bytes:
        """Create a partition C{{"id"}}."""
        session = await self._session(request, "expert")
        pid = _text(self._body(request, ("id",)), "id")
        if pid == "ecs":
            _bad("id", "ecs is reserved")
        return self._json(request, await self._call(self.center.create_partition, session.user, pid))

    @app.route("/api/partitions/<pid>", methods=["DELETE"])
    async def delete_partition(self, request: IRequest, pid: str) -> bytes:
        """Delete a partition (?force=1)."""
        session = await self._session(request, "expert")
        force = self._flag(request, "force")
        return self._json(request, await self._call(self.center.delete_partition, session.user, pid, force))

    @app.route("/api/detectors/unassigned", methods=["GET"])
    async def unassigned(self, request: IRequest) -> bytes:
        """Detectors in no partition, with live states."""
        await self._session(request, "viewer")
        return self._json(request, await self._call(self.center.unassigned))

    @app.route("/api/systems", methods=["GET"])
    async def systems(self, request: IRequest) -> bytes:
        """Detector types, global systems, detectors and the state tables."""
        await self._session(request, "viewer")
        return self._json(request, await self._call(self.center.systems))

    @app.route("/api/detectors", methods=["POST"])
    async def create_detector(self, request: IRequest) -> bytes:
        """Create an unassigned detector C{{"id", "type"}}."""
        session = await self._session(request, "expert")
        body = self._body(request, ("id", "type"))
        did, dtype = _text(body, "id"), _text(body, "type")
        return self._json(request, await self._call(self.center.create_detector, session.user, did, dtype))

    @app.route("/api/detectors/<did>", methods=["DELETE"])
    async def delete_detector(self, request: IRequest, did: str) -> bytes:
        """Delete an unassigned detector (?force=1)."""
        session = await self._session(request, "expert")
        force = self._flag(request, "force")
        return self._json(request, await self._call(self.center.delete_detector, session.user, did, force))

    @app.route("/api/detectors/<did>/move", methods=["POST"])
    async def move_detector(self, request: IRequest, did: str) -> bytes:
        """Move a detector C{{"to": partition or null, "force"?}}."""
        session = await self._session(request, "expert")
        body = self._body(request, ("to", "force"))
        if "to" not in body:
            _bad("to", "required (a partition id or null)")
        to = body["to"]
        if to is not None and (not isinstance(to, str) or not to):
            _bad("to", "must be a partition id or null")
        force = _bool(body, "force")
        return self._json(request, await self._call(self.center.move_detector, session.user, did, to, force))

    # -- events ----------------------------------------------------------------------------

    @app.route("/api/events", methods=["GET"])
    async def events(self, request: IRequest) -> None:
        """The SSE stream (?partition=, Last-Event-ID or ?last_event_id=)."""
        session = await self._session(request, "viewer")
        partition = self._query(request, "partition")
        if partition is not None:
            await self._existing_partition(partition)
        last = request.getHeader(b"last-event-id")
        last_text = last.decode("ascii", "replace").strip() if last is not None else self._query(request, "last_event_id")
        replay: list[tuple[int, str, dict[str, Any]]] | None = []
        if last_text:
            try:
                last_id = int(last_text)
            except ValueError:
                _bad("Last-Event-ID", "must be an integer")
            if last_id < 0:
                _bad("Last-Event-ID", "must not be negative")
            replay = await self._call(self.center.events_since, last_id, partition)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        if request.method == b"HEAD":
            return
        stream = EventStream(request, self.clock, self.keepalive, self.sse_max_buffer, self._stream_closed)
        stream.token = session.token
        self._streams.add(stream)
        if not self._checking.running:
            self._checking.start(self.session_check, now=False)
        stream.start(replay, lambda callback: self.center.subscribe(callback, partition))
        # Ends when the client goes (Klein then cancels this Deferred, which
        # is fine: the stream has already cleaned up through notifyFinish).
        await stream.done


# -- helpers ------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        _bad(field, "must be a non-empty string")
    return value


def _bool(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        _bad(field, "must be true or false")
    return value


def _text_list(body: dict[str, Any], field: str) -> list[str]:
    value = body.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _bad(field, "must be a list of non-empty strings")
    return value


def _roles(body: dict[str, Any]) -> list[str]:
    roles = _text_list(body, "roles")
    for role in roles:
        if role not in ROLES:
            _bad("roles", f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return roles


def _configure_body(body: dict[str, Any]) -> dict[str, Any]:
    """C{{"tag", "auto"}} or C{{"configs", "auto"}}, exactly one of tag and configs."""
    if ("tag" in body) == ("configs" in body):
        _bad("tag", "give either tag or configs")
    result: dict[str, Any] = {"auto": _bool(body, "auto")}
    if "tag" in body:
        result["tag"] = _text(body, "tag")
    else:
        result["configs"] = _text_list(body, "configs")
        if not result["configs"]:
            _bad("configs", "must not be empty")
    return result


def _client_host(request: IRequest) -> str:
    address = request.getClientAddress()
    return str(getattr(address, "host", address))


def _set_cookie(request: IRequest, token: str, secure: bool, clear: bool = False) -> None:
    """Set (or clear) the session cookie: HttpOnly, SameSite=Strict, Path=/, Secure over TLS."""
    parts = [COOKIE + b"=" + token.encode("ascii"), b"Path=/", b"HttpOnly", b"SameSite=Strict"]
    if clear:
        parts += [b"Max-Age=0", b"Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
    if secure:
        parts.append(b"Secure")
    request.cookies.append(b"; ".join(parts))


__all__ = ["ApiError", "EventStream", "LoginLimiter", "WebAPI"]
