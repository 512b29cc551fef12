# -*- test-case-name: tests.test_web -*-
"""
The ECA's JSON API and event stream, as a Klein app: L{WebAPI}, its
plumbing, its error answers and the operator routes (health, metrics,
login and logout, partitions with their control and commands, events).

L{WebAPI} is a class holding C{app = Klein()}; it talks only to an
L{IControlCenter} and an injected clock.  Mount it with
C{Site(WebAPI(center, reactor).resource())} on an endpoint service; never
C{app.run()}.  The endpoint string (C{tcp:8080:interface=127.0.0.1}, or
C{ssl:...}) belongs to the service that mounts it.  Import it from
L{ecs.web.api}, which also loads the routes for experts and admins
(L{ecs.web.admin}).  Who may ask is decided in L{ecs.web.auth}, what they
sent is checked in L{ecs.web.inputs}, an open event stream is an
L{ecs.web.stream.EventStream}.  (About 405 lines: the operator routes stay
together; the expert and admin ones are already in L{ecs.web.admin}.)

Routes
    Every route is declared with L{ecs.web.auth.authorized_route} (the
    role it needs; the handler gets the checked L{Session}) or
    L{ecs.web.auth.public_route} (health, metrics, login), never with a bare
    C{app.route}; C{tests.test_web} compares the declarations with the
    app's whole URL map.

Roles
    Reads need viewer; partition control and commands operator; the ECS
    control, management, configuration and tag writes expert; users and
    C{?force=1} on control admin.  The center checks again; this layer
    answers 403 naming the role first.

Bodies
    JSON objects only (C{Content-Type: application/json}), at most
    C{max_body} bytes (L{ecs.web.inputs.body}).  Unknown fields and fields
    of the wrong type give 400 naming the field.

Errors
    Always JSON C{{"error": code, "reason": text, ...details}};
    L{ControlError}s keep their status, unknown paths give 404, anything
    unexpected gives 500 C{{"error": "internal"}} and is logged here, never
    shown to the client.

Login throttling and sessions
    See L{ecs.web.auth}: a throttled login answers 429 C{too_many} with
    C{Retry-After} without asking the center; a session login may end the
    user's older sessions, whose streams get a C{session_ended} event.

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
    Last-Event-ID and resumes or reloads.  L{WebAPI.open_streams} counts
    the open streams (the ECA's C{ecs_event_streams_open} gauge).

Metrics (C{GET /metrics})
    The center's Prometheus text exposition, without authentication
    (scrapers have none), served as C{prometheus_client}'s
    C{CONTENT_TYPE_LATEST}.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from klein import Klein
from klein.resource import KleinResource
from prometheus_client import CONTENT_TYPE_LATEST
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ecs.control import ControlError, IControlCenter, Session
from ecs.web import auth, inputs
from ecs.web.auth import LoginLimiter, SignOuts, authorized_route, public_route
from ecs.web.inputs import MAX_BODY, RUN_FIELDS, ApiError, bad, configure_body, run_body, text
from ecs.web.stream import EventStream

KEEPALIVE = 15.0
SESSION_CHECK = 30.0
SSE_MAX_BUFFER = 1 << 20

#: a batch subscription: (callback of a turn's events, partition) -> unsubscribe
BatchSubscribe = Callable[[Callable[[list[tuple[int, str, dict[str, Any]]]], None], str | None], Callable[[], None]]


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
        limiter: LoginLimiter | None = None,
        session_check: float = SESSION_CHECK,
        subscribe_many: BatchSubscribe | None = None,
    ) -> None:
        """
        @param subscribe_many: the event source's batch subscription (the
            ECA's C{EventLog.subscribe_batch}: a turn's events in one call);
            None: the streams follow C{center.subscribe}, one event a call.
        """
        self.center = center
        self._subscribe_many = subscribe_many
        self.clock = clock
        self.max_body = max_body
        self.keepalive = keepalive
        self.sse_max_buffer = sse_max_buffer
        self.limiter = limiter if limiter is not None else LoginLimiter(clock)
        self.sign_outs = SignOuts()
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

    async def _check_sessions(self, streams: Iterable[EventStream] | None = None) -> None:
        for stream in list(self._streams if streams is None else streams):
            if stream.closed or stream.token is None:
                continue
            try:
                alive = await self._authenticate(stream.token.encode("ascii"))
            except Exception:  # a database hiccup must not end streams nor the check
                self._log.failure("checking the session of an event stream")
                continue
            if alive is None:
                stream.end(self.sign_outs.reason(stream.token))

    def _signed_in(self, session: Session, address: str) -> None:
        """A session login: end the user's other streams if it ended their sessions (the center's rule)."""
        self.sign_outs.signed_in(session.user.name, session.token, self.clock.seconds(), address)
        others = [s for s in self._streams if s.user == session.user.name and s.token != session.token]
        defer.Deferred.fromCoroutine(self._check_sessions(others))

    def resource(self) -> KleinResource:
        """The resource to mount with C{Site(api.resource())}."""
        return self.app.resource()

    @property
    def streams(self) -> frozenset[EventStream]:
        """The open event streams."""
        return frozenset(self._streams)

    def open_streams(self) -> int:
        """How many event streams are open now (for the C{ecs_event_streams_open} gauge)."""
        return len(self._streams)

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

    async def _authenticate(self, token: bytes) -> Session | None:
        return await auth.authenticate(self.center, token)

    def _body(self, request: IRequest, allowed: Iterable[str], required: bool = True) -> dict[str, Any]:
        """The JSON object body, at most L{max_body} bytes (see L{ecs.web.inputs.body})."""
        return inputs.body(request, allowed, self.max_body, required)

    def _force(self, request: IRequest, session: Session) -> bool:
        force = inputs.query_flag(request, "force")
        if force and not session.user.has("admin"):
            raise ControlError("forbidden", "force needs role admin", role="admin")
        return force

    # -- errors ----------------------------------------------------------------

    @app.handle_errors(ControlError, ApiError)
    def _domain_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, ControlError | ApiError)  # what handle_errors matched
        if isinstance(error, ApiError):
            for name, value in error.headers.items():
                request.setHeader(name, value)
        retry_after = error.body().get("retry_after")
        if error.status == 429 and isinstance(retry_after, int):
            request.setHeader(b"retry-after", str(retry_after).encode())
        return self._json(request, error.body(), error.status)

    @app.handle_errors(HTTPException)
    def _http_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, HTTPException)  # what handle_errors matched
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

    @public_route(app, "/api/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        """Liveness, no authentication."""
        return self._json(request, {"status": "ok"})

    @public_route(app, "/metrics", methods=["GET"])
    async def metrics(self, request: IRequest) -> bytes:
        """Prometheus text format, no authentication (scrapers have none)."""
        exposition = await self._call(self.center.metrics)
        if isinstance(exposition, str):
            exposition = exposition.encode("utf-8")
        if not isinstance(exposition, bytes):
            raise TypeError(f"IControlCenter.metrics gave {type(exposition).__name__}, not bytes or str")
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return exposition

    # -- login ---------------------------------------------------------------------

    @public_route(app, "/api/login", methods=["POST"])
    async def login(self, request: IRequest) -> bytes:
        """Check a password; answer the token and set the session cookie."""
        body = self._body(request, ("username", "password", "kind"))
        username = text(body, "username")
        password = text(body, "password")
        kind = body.get("kind", "session")
        if kind not in ("session", "api"):
            bad("kind", "must be session or api")
        name, address = username.casefold(), auth.client_host(request)
        throttled = self.limiter.attempt(name, address)
        if throttled is not None:
            seconds = max(1, math.ceil(throttled[0]))
            raise ControlError("too_many", f"{throttled[1]}: try again in {seconds} s", retry_after=seconds)
        try:
            session: Session = await self._call(self.center.login, username, password, kind)
        except BaseException as e:
            if not (isinstance(e, ControlError) and e.code == "unauthenticated"):
                self.limiter.cancelled(name, address)  # no answer on the password: not a failure
            raise
        self.limiter.succeeded(name, address)
        if kind == "session":
            auth.set_cookie(request, session.token, request.isSecure())
            self._signed_in(session, address)
        return self._json(request, {"token": session.token, "user": session.user.name,
                                    "roles": list(session.user.roles), "csrf": session.csrf})

    @authorized_route(app, "viewer", "/api/logout", methods=["POST"])
    async def logout(self, request: IRequest, session: Session) -> bytes:
        """Forget the token (the center releases its controls) and clear the cookie."""
        self._body(request, (), required=False)
        await self._call(self.center.logout, session.token)
        # A logged-out session sees nothing more: its open event streams end
        # (their reconnection is refused with 401).
        for stream in [s for s in self._streams if s.token == session.token]:
            stream.end()
        auth.set_cookie(request, "", request.isSecure(), clear=True)
        return self._json(request, None)

    # -- partitions -----------------------------------------------------------------

    @authorized_route(app, "viewer", "/api/partitions", methods=["GET"])
    async def partitions(self, request: IRequest, session: Session) -> bytes:
        """Every partition, short form."""
        return self._json(request, await self._call(self.center.partitions))

    @authorized_route(app, "viewer", "/api/partitions/<pid>", methods=["GET"])
    async def partition(self, request: IRequest, session: Session, pid: str) -> bytes:
        """One partition with its allowed commands and systems."""
        return self._json(request, await self._call(self.center.partition, pid))

    @authorized_route(app, "operator", "/api/partitions/<pid>/control", methods=["POST"])
    async def take_control(self, request: IRequest, session: Session, pid: str) -> bytes:
        """Take control of a partition (admin: ?force=1)."""
        force = self._force(request, session)
        self._body(request, (), required=False)
        await self._existing_partition(pid)
        return self._json(request, await self._call(self.center.take_control, session.user, pid, force))

    @authorized_route(app, "operator", "/api/partitions/<pid>/control", methods=["DELETE"])
    async def release_control(self, request: IRequest, session: Session, pid: str) -> bytes:
        """Give up control of a partition."""
        await self._existing_partition(pid)
        return self._json(request, await self._call(self.center.release_control, session.user, pid))

    @authorized_route(app, "operator",
                      "/api/partitions/<pid>/<any(configure,start,stop,abort,reset,exclude,include):command>",
                      methods=["POST"])
    async def command(self, request: IRequest, session: Session, pid: str, command: str) -> bytes:
        """A partition command, or the exclusion of one system; the user must hold its control."""
        if command == "configure":
            body = configure_body(self._body(request, ("tag", "configs", "auto")))
        elif command in ("reset", "exclude", "include"):
            body = {"system": text(self._body(request, ("system",)), "system")}
        else:
            body = run_body(self._body(request, RUN_FIELDS.get(command, ()), required=False))
        await self._existing_partition(pid)
        if command in ("exclude", "include"):
            change = self.center.exclude if command == "exclude" else self.center.include
            return self._json(request, await self._call(change, session.user, pid, body["system"]))
        return self._json(request, await self._call(self.center.command, session.user, pid, command, body))

    @authorized_route(app, "admin", "/api/reload", methods=["POST"])
    async def reload(self, request: IRequest, session: Session) -> bytes:
        """
        Read the detector types, state tables and partition sequence again,
        in the ECA and every PCA: what changed and each PCA's answer; 400
        naming the file, key path and reason when one is invalid (nothing
        changes then).
        """
        self._body(request, (), required=False)
        return self._json(request, await self._call(self.center.reload, session.user))

    async def _existing_partition(self, pid: str) -> None:
        # "ecs" is the ECS-wide control scope, never a partition: without this
        # an operator could take the ECS control through a partition path.
        if pid == "ecs":
            raise ControlError("not_found", "no partition ecs")
        await self._call(self.center.partition, pid)

    # -- events ----------------------------------------------------------------------------

    @authorized_route(app, "viewer", "/api/events", methods=["GET"])
    async def events(self, request: IRequest, session: Session) -> None:
        """The SSE stream (?partition=, Last-Event-ID or ?last_event_id=)."""
        partition = inputs.query(request, "partition")
        if partition is not None:
            await self._existing_partition(partition)
        last = request.getHeader(b"last-event-id")
        if last is not None:
            last_text: str | None = last.decode("ascii", "replace").strip()
        else:
            last_text = inputs.query(request, "last_event_id")
        replay: list[tuple[int, str, dict[str, Any]]] | None = []
        if last_text:
            try:
                last_id = int(last_text)
            except ValueError:
                bad("Last-Event-ID", "must be an integer")
            if last_id < 0:
                bad("Last-Event-ID", "must not be negative")
            replay = await self._call(self.center.events_since, last_id, partition)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        if request.method == b"HEAD":
            return
        if not isinstance(request, Request):
            # Site always builds a twisted.web.http.Request, which (unlike
            # IRequest) declares the producer and notifyFinish the stream needs.
            raise TypeError(f"an event stream needs a twisted.web.http.Request, not {type(request).__name__}")
        stream = EventStream(request, self.clock, self.keepalive, self.sse_max_buffer, self._stream_closed)
        stream.token, stream.user = session.token, session.user.name
        self._streams.add(stream)
        if not self._checking.running:
            self._checking.start(self.session_check, now=False)
        subscribe_many = self._subscribe_many
        stream.start(
            replay,
            lambda callback: self.center.subscribe(callback, partition),
            None if subscribe_many is None else (lambda callback: subscribe_many(callback, partition)),
        )
        # Ends when the client goes (Klein then cancels this Deferred, which
        # is fine: the stream has already cleaned up through notifyFinish).
        await stream.done


__all__ = ["ApiError", "EventStream", "LoginLimiter", "WebAPI"]
