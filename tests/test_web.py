"""Tests for L{ecs.web.api}: the JSON API, SSE and metrics over a fake control center."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime
from typing import Any

import treq
from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from agents.eca.metrics import EcaMetrics
from ecs.control import ControlError, IControlCenter, Session
from ecs.web.api import WebAPI
from ecs.web.auth import authorized_route, public_route, route_access
from tests.fake_control import PASSWORD, FakeControlCenter
from tests.http_helpers import _UNSET, Result, SSEReader, parse_events

BASE = "http://ecs.test"
@implementer(IBodyProducer)
class ChunkedBody:
    """A body of unknown length, so the request has no Content-Length."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes) -> None:
        self.data = data

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        consumer.write(self.data)
        return defer.succeed(None)

    def stopProducing(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass


class WebTestCase(SynchronousTestCase):
    """A WebAPI over a FakeControlCenter with a Clock, reached through StubTreq."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.center = FakeControlCenter()
        self.api = WebAPI(self.center, self.clock)
        self.stub = StubTreq(self.api.resource())
        self.addCleanup(self._check_no_timers)

    def _check_no_timers(self) -> None:
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def call(self, method: str, path: str, *, stub: StubTreq | None = None, token: str | None = None,
             json: Any = _UNSET, data: bytes | None = None, headers: dict[str, str] | None = None,
             base: str = BASE) -> Result:
        """Make one request and read the whole answer."""
        stub = stub or self.stub
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {}
        if json is not _UNSET:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        d = stub.request(method, base + path, headers=hdrs, **kwargs)
        stub.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(response.content())
        return Result(response.code, body, response)

    def token(self, name: str) -> str:
        """A bearer token for C{name}."""
        return self.successResultOf(self.center.login(name, PASSWORD, "api")).token

    def cookie_login(self, name: str, base: str = BASE) -> tuple[StubTreq, str]:
        """A fresh browser-like client logged in as C{name}, and its CSRF token."""
        stub = StubTreq(self.api.resource())
        r = self.call("POST", "/api/login", stub=stub, json={"username": name, "password": PASSWORD}, base=base)
        self.assertEqual(r.code, 200, r.body)
        return stub, r.json["csrf"]

    def assertError(self, result: Result, code: int, error: str, **details: Any) -> dict[str, Any]:
        """The result is a JSON error with this status, code and details."""
        self.assertEqual(result.code, code, result.body)
        self.assertIn("application/json", result.header("Content-Type")[0])
        body = result.json
        self.assertEqual(body["error"], error)
        self.assertIsInstance(body["reason"], str)
        for key, value in details.items():
            self.assertEqual(body[key], value)
        return body

    def hold(self, name: str, scope: str = "demo") -> None:
        """Make C{name} hold a control directly in the center."""
        self.center.holders[scope] = name


class FakeControlCenterTests(SynchronousTestCase):
    """The fake stays honest to the interface."""

    def test_provides_interface(self) -> None:
        """verifyObject passes and every method has the interface's parameter names."""
        center = FakeControlCenter()
        self.assertTrue(verifyObject(IControlCenter, center))
        for name in IControlCenter.names():
            wanted = IControlCenter[name].getSignatureInfo()["positional"]
            got = tuple(inspect.signature(getattr(center, name)).parameters)
            self.assertEqual(got, tuple(wanted), name)

    def test_events_since(self) -> None:
        """events_since gives later events, or None once the buffer has moved past the id."""
        center = FakeControlCenter(buffer_size=2)
        for n in range(3):
            center.emit("log", {"n": n}, "demo")
        self.assertEqual([e[0] for e in center.events_since(1) or []], [2, 3])
        self.assertEqual(center.events_since(3), [])
        self.assertIsNone(center.events_since(0))
        self.assertIsNone(center.events_since(9))


#: Every route of the API, (path rule, method) -> the role it needs (None:
#: public): the operator routes of ecs.web.routes and the expert and admin
#: routes of ecs.web.admin.
ROUTES: dict[tuple[str, str], str | None] = {
    ("/metrics", "GET"): None,
    ("/api/health", "GET"): None,
    ("/api/login", "POST"): None,
    ("/api/logout", "POST"): "viewer",
    ("/api/events", "GET"): "viewer",
    ("/api/partitions", "GET"): "viewer",
    ("/api/partitions", "POST"): "expert",
    ("/api/partitions/<pid>", "GET"): "viewer",
    ("/api/partitions/<pid>", "DELETE"): "expert",
    ("/api/partitions/<pid>/control", "POST"): "operator",
    ("/api/partitions/<pid>/control", "DELETE"): "operator",
    ("/api/partitions/<pid>/<any(configure,start,stop,abort,reset,exclude,include):command>", "POST"): "operator",
    ("/api/control", "GET"): "viewer",
    ("/api/control", "POST"): "expert",
    ("/api/control", "DELETE"): "expert",
    ("/api/detectors", "POST"): "expert",
    ("/api/detectors/unassigned", "GET"): "viewer",
    ("/api/detectors/<did>", "DELETE"): "expert",
    ("/api/detectors/<did>/move", "POST"): "expert",
    ("/api/systems", "GET"): "viewer",
    ("/api/agents", "GET"): "viewer",
    ("/api/agents/<agent>", "GET"): "viewer",
    ("/api/agents/<agent>", "PUT"): "admin",
    ("/api/agents/<agent>", "DELETE"): "admin",
    ("/api/agents/<agent>/<any(start,stop,restart):command>", "POST"): "expert",
    ("/api/agents/<agent>/output", "GET"): "expert",
    ("/api/systems/<system>/inject", "POST"): "expert",
    ("/api/configs", "GET"): "viewer",
    ("/api/configs/<cid>", "GET"): "viewer",
    ("/api/configs/<cid>", "PUT"): "expert",
    ("/api/configs/<cid>", "DELETE"): "expert",
    ("/api/tags", "GET"): "viewer",
    ("/api/tags/<name>", "GET"): "viewer",
    ("/api/tags/<name>", "PUT"): "expert",
    ("/api/tags/<name>", "DELETE"): "expert",
    ("/api/runs", "GET"): "viewer",
    ("/api/audit", "GET"): "expert",
    ("/api/logbook", "GET"): "viewer",
    ("/api/logbook", "POST"): "operator",
    ("/api/logbook/<int:entry>/attachments/<int:n>", "GET"): "viewer",
    ("/api/sequences", "GET"): "viewer",
    ("/api/sequences/<name>/run", "POST"): "operator",
    ("/api/partitions/<pid>/sequence", "GET"): "viewer",
    ("/api/partitions/<pid>/sequence/<any(pause,resume,abort):action>", "POST"): "operator",
    ("/api/logs", "GET"): "viewer",
    ("/api/alarms", "GET"): "viewer",
    ("/api/alarms/<int:alarm_id>/ack", "POST"): "operator",
    ("/api/alarms/<int:alarm_id>/shelve", "POST"): "expert",
    ("/api/users", "GET"): "admin",
    ("/api/users", "POST"): "admin",
    ("/api/users/<name>", "PUT"): "admin",
    ("/api/users/<name>", "DELETE"): "admin",
    ("/api/reload", "POST"): "admin",
}


def url_map_routes(app: Klein) -> set[tuple[str, str]]:
    """(path rule, method) of every rule of a Klein app (HEAD and OPTIONS left out: werkzeug adds them)."""
    found = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((rule.rule, method))
    return found


class RouteTableTests(SynchronousTestCase):
    """Every route of WebAPI is declared with the access it needs, however the modules are split."""

    def test_every_route(self) -> None:
        """The Klein app has exactly the API's routes, each with its one method."""
        self.assertEqual(url_map_routes(WebAPI.app), set(ROUTES))

    def test_every_route_declared(self) -> None:
        """Every rule came through authorized_route or public_route, with the role the API documents."""
        self.assertEqual(route_access(WebAPI.app), ROUTES)

    def test_public_routes(self) -> None:
        """Only health, metrics and the login itself answer without a session."""
        public = {route for route, role in route_access(WebAPI.app).items() if role is None}
        self.assertEqual(public, {("/api/health", "GET"), ("/metrics", "GET"), ("/api/login", "POST")})


class _Owner:
    """A minimal route owner: authorized_route needs only a center."""

    app = Klein()

    def __init__(self, center: FakeControlCenter) -> None:
        self.center = center

    @authorized_route(app, "expert", "/secret/<name>", methods=["GET"])
    async def secret(self, request: Any, session: Session, name: str) -> bytes:
        return f"{session.user.name} {name}".encode()

    @public_route(app, "/open", methods=["GET", "POST"])
    def open(self, request: Any) -> bytes:
        return b"open"


class RouteDecoratorTests(SynchronousTestCase):
    """authorized_route and public_route on an app of their own."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.stub = StubTreq(_Owner(self.center).app.resource())

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        d = self.stub.get(BASE + path, headers=headers)
        self.stub.flush()
        response = self.successResultOf(d)
        return response.code, self.successResultOf(response.content())

    def test_session_passed(self) -> None:
        """With the role, the handler runs with the session and the URL parts."""
        token = self.successResultOf(self.center.login("expert", PASSWORD, "api")).token
        self.assertEqual(self.get("/secret/x", token), (200, b"expert x"))

    def test_refused_before_the_handler(self) -> None:
        """Without a session, or with a lower role, the handler never runs (the error propagates to the app's
        handlers: here none, so Klein's 500, with the ControlError logged)."""
        self.assertEqual(self.get("/secret/x")[0], 500)
        token = self.successResultOf(self.center.login("viewer", PASSWORD, "api")).token
        self.assertEqual(self.get("/secret/x", token)[0], 500)
        errors = self.flushLoggedErrors(ControlError)
        self.assertEqual([e.value.code for e in errors], ["unauthenticated", "forbidden"])

    def test_public(self) -> None:
        """A public route needs nothing."""
        self.assertEqual(self.get("/open"), (200, b"open"))

    def test_access_table(self) -> None:
        """route_access lists both declarations, one entry per method."""
        self.assertEqual(route_access(_Owner.app), {("/secret/<name>", "GET"): "expert", ("/open", "GET"): None,
                                                    ("/open", "POST"): None})

    def test_unknown_role(self) -> None:
        """A misspelt role is refused when the route is declared."""
        with self.assertRaises(ValueError):
            authorized_route(Klein(), "superuser", "/x", methods=["GET"])

    def test_declared_twice(self) -> None:
        """The same path and method declared twice is refused."""
        app = Klein()
        public_route(app, "/x", methods=["GET"])(lambda self, request: b"")
        with self.assertRaises(ValueError):
            public_route(app, "/x", methods=["GET"])(lambda self, request: b"")


class PublicTests(WebTestCase):
    """Endpoints without authentication, and the error shapes."""

    def test_health(self) -> None:
        """GET /api/health answers ok without authentication."""
        r = self.call("GET", "/api/health")
        self.assertEqual((r.code, r.json), (200, {"status": "ok"}))

    def test_metrics(self) -> None:
        """GET /metrics is the center's Prometheus exposition, without authentication, as CONTENT_TYPE_LATEST."""
        r = self.call("GET", "/metrics")
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("Content-Type"), [CONTENT_TYPE_LATEST])
        self.assertEqual(r.body, self.center.metrics())
        families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
        [state] = families["ecs_partition_state"].samples
        self.assertEqual((state.labels, state.value), ({"partition": "demo", "state": "Idle"}, 1.0))

    def test_metrics_text(self) -> None:
        """A center that answers text (str) is served as UTF-8 bytes."""
        self.center.metrics = lambda: 'ecs_x{partition="π"} 1\n'  # type: ignore[method-assign]
        r = self.call("GET", "/metrics")
        self.assertEqual((r.code, r.body), (200, 'ecs_x{partition="π"} 1\n'.encode()))
        self.assertEqual(r.header("Content-Type"), [CONTENT_TYPE_LATEST])

    def test_metrics_deferred(self) -> None:
        """A center that answers with a Deferred is waited for."""
        self.center.metrics = lambda: defer.succeed(b"ecs_y 2\n")  # type: ignore[method-assign, assignment, return-value]
        r = self.call("GET", "/metrics")
        self.assertEqual((r.code, r.body), (200, b"ecs_y 2\n"))

    def test_metrics_wrong_type(self) -> None:
        """A center answering neither bytes nor text is a bug: 500, logged, naming the type."""
        self.center.metrics = lambda: {"not": "text"}  # type: ignore[method-assign, assignment, return-value]
        r = self.call("GET", "/metrics")
        self.assertError(r, 500, "internal")
        [error] = self.flushLoggedErrors(TypeError)
        self.assertIn("dict", str(error.value))

    def test_unknown_path(self) -> None:
        """An unknown path is a JSON 404."""
        self.assertError(self.call("GET", "/api/nothing/here"), 404, "not_found")
        self.assertError(self.call("GET", "/index.php"), 404, "not_found")

    def test_wrong_method(self) -> None:
        """A known path with the wrong method is a JSON 405 with Allow."""
        r = self.call("PUT", "/api/health")
        self.assertError(r, 405, "method_not_allowed")
        self.assertIn("GET", r.header("Allow")[0])

    def test_internal_error_hides_traceback(self) -> None:
        """An unexpected exception is a 500 without details, and it is logged."""

        def boom(*args: Any) -> Any:
            raise RuntimeError("database password is hunter2")

        self.center.runs = boom  # type: ignore[method-assign]
        r = self.call("GET", "/api/runs", token=self.token("viewer"))
        self.assertEqual(r.json, {"error": "internal", "reason": "internal error"})
        self.assertEqual(r.code, 500)
        self.assertNotIn(b"hunter2", r.body)
        self.assertNotIn(b"Traceback", r.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class LoginTests(WebTestCase):
    """POST /api/login, the cookie, logout, rate limits."""

    def test_login(self) -> None:
        """A right password gives token, user, roles, csrf and an HttpOnly SameSite=Strict cookie."""
        r = self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD})
        self.assertEqual(r.code, 200)
        body = r.json
        self.assertEqual((body["user"], body["roles"]), ("operator", ["operator"]))
        session = self.center.sessions[body["token"]]
        self.assertEqual(body["csrf"], session.csrf)
        [cookie] = r.header("Set-Cookie")
        parts = [p.strip() for p in cookie.split(";")]
        self.assertEqual(parts[0], f"ecs_session={body['token']}")
        self.assertIn("HttpOnly", parts)
        self.assertIn("SameSite=Strict", parts)
        self.assertIn("Path=/", parts)
        self.assertNotIn("Secure", parts)

    def test_login_secure_cookie_over_tls(self) -> None:
        """Over HTTPS the cookie is also Secure."""
        r = self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD},
                      base="https://ecs.test")
        self.assertIn("Secure", [p.strip() for p in r.header("Set-Cookie")[0].split(";")])

    def test_login_api_token(self) -> None:
        """kind=api gives a token for scripts and no cookie."""
        r = self.call("POST", "/api/login", json={"username": "viewer", "password": PASSWORD, "kind": "api"})
        self.assertEqual(r.code, 200)
        self.assertEqual(r.header("Set-Cookie"), [])
        self.assertEqual(self.center.logins, [("viewer", "api")])
        self.assertEqual(self.call("GET", "/api/partitions", token=r.json["token"]).code, 200)

    def test_login_wrong_password(self) -> None:
        """A wrong password is 401 and sets no cookie."""
        r = self.call("POST", "/api/login", json={"username": "operator", "password": "guess"})
        self.assertError(r, 401, "unauthenticated")
        self.assertEqual(r.header("Set-Cookie"), [])

    def test_login_validation(self) -> None:
        """Missing, mistyped and unknown fields are 400 naming the field."""
        cases = [({"username": "operator"}, "password"), ({"username": 3, "password": "x"}, "username"),
                 ({"username": "a", "password": "b", "kind": "forever"}, "kind"),
                 ({"username": "a", "password": "b", "admin": True}, "admin")]
        for body, field in cases:
            self.assertError(self.call("POST", "/api/login", json=body), 400, "bad_request", field=field)

    def test_login_needs_json(self) -> None:
        """A form-encoded or non-JSON body is 400."""
        r = self.call("POST", "/api/login", data=b"username=operator&password=secret",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertError(r, 400, "bad_request", field="Content-Type")
        r = self.call("POST", "/api/login", data=b"{not json", headers={"Content-Type": "application/json"})
        self.assertError(r, 400, "bad_request", field="body")
        r = self.call("POST", "/api/login", data=b'{"a": NaN}', headers={"Content-Type": "application/json"})
        self.assertError(r, 400, "bad_request", field="body")

    def test_body_must_be_object(self) -> None:
        """A JSON array or string body is 400."""
        self.assertError(self.call("POST", "/api/login", json=["operator", PASSWORD]), 400, "bad_request", field="body")
        self.assertError(self.call("POST", "/api/login", json="x"), 400, "bad_request", field="body")

    def test_body_too_large(self) -> None:
        """A body over 1 MiB is refused with 413 before it is parsed."""
        big = json.dumps({"username": "x" * (1 << 20), "password": PASSWORD}).encode()
        r = self.call("POST", "/api/login", data=big, headers={"Content-Type": "application/json"})
        self.assertError(r, 413, "too_large")
        self.assertEqual(self.center.logins, [])

    def test_body_too_large_without_content_length(self) -> None:
        """A chunked body (no Content-Length) is bounded by the read itself."""
        agent = RequestTraversalAgent(self.api.resource())
        big = json.dumps({"username": "x" * (1 << 20), "password": PASSWORD}).encode()
        d = agent.request(b"POST", b"http://ecs.test/api/login",
                          Headers({b"content-type": [b"application/json"]}), ChunkedBody(big))
        agent.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 413)
        self.assertEqual(json.loads(self.successResultOf(treq.content(response)))["error"], "too_large")

    def test_small_chunked_body_accepted(self) -> None:
        """A chunked body within the limit is read normally."""
        agent = RequestTraversalAgent(self.api.resource())
        body = json.dumps({"username": "viewer", "password": PASSWORD}).encode()
        d = agent.request(b"POST", b"http://ecs.test/api/login",
                          Headers({b"content-type": [b"application/json"]}), ChunkedBody(body))
        agent.flush()
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_rate_limit_per_user(self) -> None:
        """Three failures are free; the fourth try from the same address waits (429, Retry-After),
        without the center being asked; another user is not slowed."""
        for _ in range(3):
            self.assertEqual(self.call("POST", "/api/login", json={"username": "operator", "password": "no"}).code, 401)
        r = self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD})
        body = self.assertError(r, 429, "too_many", retry_after=1)
        self.assertIn("try again in 1 s", body["reason"])
        self.assertEqual(r.header("Retry-After"), ["1"])
        self.assertEqual(self.center.logins, [])
        other = self.call("POST", "/api/login", json={"username": "viewer", "password": PASSWORD})
        self.assertEqual(other.code, 200)

    def test_rate_limit_expires(self) -> None:
        """The back-off doubles with each failure; once it has passed on the clock, the right password gets in."""
        waits = []
        for _ in range(3):
            self.call("POST", "/api/login", json={"username": "operator", "password": "no"})
        for _ in range(3):
            r = self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD})
            waits.append(self.assertError(r, 429, "too_many")["retry_after"])
            self.clock.advance(waits[-1])
            self.assertEqual(self.call("POST", "/api/login", json={"username": "operator", "password": "no"}).code, 401)
        self.assertEqual(waits, [1, 2, 4])
        self.assertError(self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD}),
                         429, "too_many", retry_after=8)
        self.clock.advance(8)
        self.assertEqual(self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD}).code, 200)

    def test_rate_limit_per_address(self) -> None:
        """Twenty failures from one address, spread over user names, slow that address."""
        for n in range(20):
            self.call("POST", "/api/login", json={"username": f"user{n}", "password": "no"})
        r = self.call("POST", "/api/login", json={"username": "viewer", "password": PASSWORD})
        self.assertIn("from this address", self.assertError(r, 429, "too_many")["reason"])

    def test_success_resets_user_count(self) -> None:
        """A successful login clears that user's failures: the back-off starts again at 1 s."""
        for _ in range(3):
            self.call("POST", "/api/login", json={"username": "operator", "password": "no"})
        self.clock.advance(1)
        self.assertEqual(self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD}).code, 200)
        for _ in range(3):
            self.call("POST", "/api/login", json={"username": "operator", "password": "no"})
        self.assertError(self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD}),
                         429, "too_many", retry_after=1)
        self.clock.advance(1)
        self.assertEqual(self.call("POST", "/api/login", json={"username": "operator", "password": PASSWORD}).code, 200)

    def test_logout(self) -> None:
        """Logout forgets the token, releases controls and expires the cookie."""
        stub, csrf = self.cookie_login("operator")
        self.assertEqual(self.call("POST", "/api/partitions/demo/control", stub=stub,
                                   headers={"X-CSRF-Token": csrf}).code, 200)
        r = self.call("POST", "/api/logout", stub=stub, headers={"X-CSRF-Token": csrf})
        self.assertEqual((r.code, r.json), (200, {"status": "ok"}))
        self.assertEqual(self.center.holders, {})
        self.assertEqual(self.center.sessions, {})
        self.assertIn("Max-Age=0", r.header("Set-Cookie")[0])
        self.assertError(self.call("GET", "/api/partitions", stub=stub), 401, "unauthenticated")

    def test_logout_bearer(self) -> None:
        """A script logs out with its bearer token and no CSRF token."""
        token = self.token("viewer")
        self.assertEqual(self.call("POST", "/api/logout", token=token).code, 200)
        self.assertNotIn(token, self.center.sessions)


class AuthTests(WebTestCase):
    """Bearer tokens, cookie sessions with CSRF, roles."""

    def test_no_credentials(self) -> None:
        """Without a token or cookie every API call but health and login is 401."""
        for method, path in [("GET", "/api/partitions"), ("GET", "/api/events"), ("POST", "/api/partitions/demo/start"),
                             ("GET", "/api/users"), ("PUT", "/api/tags/x"), ("POST", "/api/logout")]:
            self.assertError(self.call(method, path), 401, "unauthenticated")

    def test_bad_bearer(self) -> None:
        """An unknown token or another auth scheme is 401."""
        self.assertError(self.call("GET", "/api/partitions", token="tok-forged"), 401, "unauthenticated")
        r = self.call("GET", "/api/partitions", headers={"Authorization": "Basic b3BlcmF0b3I6c2VjcmV0"})
        self.assertError(r, 401, "unauthenticated")

    def test_bogus_cookie(self) -> None:
        """A bogus session cookie is 401, not a 500 (Klein's NoSuchSession trap)."""
        r = self.call("POST", "/api/partitions/demo/control",
                      headers={"Cookie": "ecs_session=forged", "X-CSRF-Token": "x"})
        self.assertError(r, 401, "unauthenticated")

    def test_cookie_reads_need_no_csrf(self) -> None:
        """A cookie session reads without the CSRF header."""
        stub, _ = self.cookie_login("viewer")
        self.assertEqual(self.call("GET", "/api/partitions", stub=stub).code, 200)

    def test_cookie_writes_need_csrf(self) -> None:
        """With a cookie, POST/PUT/DELETE without or with a wrong CSRF token are 403."""
        stub, csrf = self.cookie_login("operator")
        for headers in [{}, {"X-CSRF-Token": "wrong"}]:
            r = self.call("POST", "/api/partitions/demo/control", stub=stub, headers=headers)
            self.assertEqual(r.json, {"error": "forbidden", "reason": "missing or wrong CSRF token"})
            self.assertEqual(r.code, 403)
            self.assertEqual(self.call("DELETE", "/api/partitions/demo/control", stub=stub, headers=headers).code, 403)
        self.assertEqual(self.center.holders, {})
        r = self.call("POST", "/api/partitions/demo/control", stub=stub, headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.code, 200)
        self.assertEqual(self.center.holders, {"demo": "operator"})

    def test_cookie_put_needs_csrf(self) -> None:
        """PUT with a cookie needs the CSRF token too."""
        stub, csrf = self.cookie_login("expert")
        body = {"system": "STS", "parameters": {}}
        self.assertEqual(self.call("PUT", "/api/configs/sts-x", stub=stub, json=body).code, 403)
        self.assertEqual(self.call("PUT", "/api/configs/sts-x", stub=stub, json=body,
                                   headers={"X-CSRF-Token": csrf}).code, 200)

    def test_bearer_needs_no_csrf(self) -> None:
        """A bearer request changes state without a CSRF token."""
        r = self.call("POST", "/api/partitions/demo/control", token=self.token("operator"))
        self.assertEqual(r.code, 200)

    def test_roles(self) -> None:
        """Each kind of endpoint refuses a too-low role with 403 naming the role."""
        viewer, operator, expert = self.token("viewer"), self.token("operator"), self.token("expert")
        self.assertError(self.call("GET", "/api/partitions", token=self.token("nobody")), 403, "forbidden",
                         role="viewer")
        self.assertError(self.call("POST", "/api/partitions/demo/control", token=viewer), 403, "forbidden",
                         role="operator")
        self.assertError(self.call("POST", "/api/partitions/demo/start", token=viewer), 403, "forbidden",
                         role="operator")
        self.assertError(self.call("POST", "/api/partitions", token=operator, json={"id": "p2"}), 403, "forbidden",
                         role="expert")
        self.assertError(self.call("PUT", "/api/tags/t", token=operator, json={"configs": []}), 403, "forbidden",
                         role="expert")
        self.assertError(self.call("GET", "/api/users", token=expert), 403, "forbidden", role="admin")
        self.assertEqual(self.center.commands, [])


class PartitionTests(WebTestCase):
    """Partitions, control and commands."""

    def setUp(self) -> None:
        super().setUp()
        self.op = self.token("operator")

    def test_list(self) -> None:
        """GET /api/partitions lists id, state, tag, controller, connected."""
        self.hold("operator")
        r = self.call("GET", "/api/partitions", token=self.token("viewer"))
        self.assertEqual(r.json, [{"id": "demo", "state": "Idle", "tag": None, "controller": "operator",
                                   "connected": True}])

    def test_detail(self) -> None:
        """GET /api/partitions/demo has allowed commands and systems; unknown is 404."""
        r = self.call("GET", "/api/partitions/demo", token=self.op)
        self.assertEqual(r.json["allowed"], ["configure", "reset"])
        self.assertEqual([s["id"] for s in r.json["systems"]], ["TFC", "DCS", "QA", "FLES", "STS", "MVD"])
        self.assertError(self.call("GET", "/api/partitions/nope", token=self.op), 404, "not_found")

    def test_take_control_conflict(self) -> None:
        """A second operator gets 409 with the holder."""
        self.assertEqual(self.call("POST", "/api/partitions/demo/control", token=self.op).json,
                         {"scope": "demo", "holder": "operator"})
        r = self.call("POST", "/api/partitions/demo/control", token=self.token("operator2"))
        self.assertError(r, 409, "conflict", holder="operator")

    def test_force_needs_admin(self) -> None:
        """?force=1 is 403 naming admin for an operator, and takes control for an admin."""
        self.hold("operator")
        r = self.call("POST", "/api/partitions/demo/control?force=1", token=self.token("operator2"))
        self.assertError(r, 403, "forbidden", role="admin")
        r = self.call("POST", "/api/partitions/demo/control?force=1", token=self.token("admin"))
        self.assertEqual(r.code, 200)
        self.assertEqual(self.center.holders["demo"], "admin")
        r = self.call("POST", "/api/partitions/demo/control?force=perhaps", token=self.token("admin"))
        self.assertError(r, 400, "bad_request", field="force")

    def test_control_unknown_partition(self) -> None:
        """Control of an unknown partition, or of 'ecs' through the partition path, is 404."""
        self.assertError(self.call("POST", "/api/partitions/nope/control", token=self.op), 404, "not_found")
        self.assertError(self.call("POST", "/api/partitions/ecs/control", token=self.op), 404, "not_found")
        self.assertNotIn("ecs", self.center.holders)

    def test_release_control(self) -> None:
        """DELETE gives control up; releasing what someone else holds is 409."""
        self.hold("operator2")
        self.assertError(self.call("DELETE", "/api/partitions/demo/control", token=self.op), 409, "conflict")
        self.hold("operator")
        r = self.call("DELETE", "/api/partitions/demo/control", token=self.op)
        self.assertEqual((r.code, r.json), (200, {"status": "ok"}))
        self.assertEqual(self.center.holders, {})

    def test_commands(self) -> None:
        """configure, start, stop, abort, reset reach the center with validated bodies."""
        self.hold("operator")
        steps = [("configure", {"tag": "demo", "auto": True}), ("start", None), ("stop", None),
                 ("reset", {"system": "STS"}), ("abort", {}), ("configure", {"configs": ["sts-default"]})]
        for command, body in steps:
            kwargs = {} if body is None else {"json": body}
            r = self.call("POST", f"/api/partitions/demo/{command}", token=self.op, **kwargs)
            self.assertEqual(r.code, 200, (command, r.body))
        self.assertEqual(self.center.commands, [
            ("operator", "demo", "configure", {"tag": "demo", "auto": True}),
            ("operator", "demo", "start", {}), ("operator", "demo", "stop", {}),
            ("operator", "demo", "reset", {"system": "STS"}), ("operator", "demo", "abort", {}),
            ("operator", "demo", "configure", {"configs": ["sts-default"], "auto": False}),
        ])

    def test_configure_validation(self) -> None:
        """configure needs exactly one of tag and configs, the right types, and JSON."""
        self.hold("operator")
        cases = [({"tag": "demo", "configs": ["a"]}, "tag"), ({}, "tag"), ({"auto": True}, "tag"),
                 ({"tag": "demo", "auto": "yes"}, "auto"), ({"configs": "sts-default"}, "configs"),
                 ({"configs": []}, "configs"), ({"tag": 5}, "tag"), ({"tag": "demo", "mode": 1}, "mode")]
        for body, field in cases:
            r = self.call("POST", "/api/partitions/demo/configure", token=self.op, json=body)
            self.assertError(r, 400, "bad_request", field=field)
        r = self.call("POST", "/api/partitions/demo/configure", token=self.op, data=b"tag=demo",
                      headers={"Content-Type": "text/plain"})
        self.assertError(r, 400, "bad_request", field="Content-Type")
        self.assertEqual(self.center.commands, [])

    def test_reset_needs_system(self) -> None:
        """reset without a system string is 400 naming system."""
        self.hold("operator")
        self.assertError(self.call("POST", "/api/partitions/demo/reset", token=self.op), 400, "bad_request",
                         field="body")
        self.assertError(self.call("POST", "/api/partitions/demo/reset", token=self.op, json={}), 400, "bad_request",
                         field="system")
        self.assertError(self.call("POST", "/api/partitions/demo/reset", token=self.op, json={"system": ["STS"]}),
                         400, "bad_request", field="system")

    def test_command_without_control(self) -> None:
        """A command from someone not holding control is 409 with the holder."""
        self.hold("operator2")
        r = self.call("POST", "/api/partitions/demo/configure", token=self.op, json={"tag": "demo"})
        self.assertError(r, 409, "conflict", holder="operator2")

    def test_command_wrong_state(self) -> None:
        """A command the state does not allow is 409."""
        self.hold("operator")
        self.assertError(self.call("POST", "/api/partitions/demo/start", token=self.op), 409, "conflict")

    def test_command_locked(self) -> None:
        """A command on a partition locked by management is 423."""
        self.hold("operator")
        self.center.partitions_["demo"]["locked"] = True
        self.assertError(self.call("POST", "/api/partitions/demo/configure", token=self.op, json={"tag": "demo"}),
                         423, "locked")

    def test_unknown_command_and_partition(self) -> None:
        """An unknown command path is 404, a command on an unknown partition is 404."""
        self.assertError(self.call("POST", "/api/partitions/demo/explode", token=self.op), 404, "not_found")
        self.assertError(self.call("POST", "/api/partitions/nope/start", token=self.op), 404, "not_found")


class ManagementTests(WebTestCase):
    """The ECS control, partitions and detectors."""

    def setUp(self) -> None:
        super().setUp()
        self.ex = self.token("expert")

    def take_ecs(self) -> None:
        """The expert takes the ECS control through the API."""
        self.assertEqual(self.call("POST", "/api/control", token=self.ex, json={"scope": "ecs"}).code, 200)

    def test_ecs_control(self) -> None:
        """An expert takes and releases the ECS control; an operator may not; a wrong scope is 400."""
        self.assertError(self.call("POST", "/api/control", token=self.token("operator")), 403, "forbidden",
                         role="expert")
        self.assertError(self.call("POST", "/api/control", token=self.ex, json={"scope": "demo"}), 400, "bad_request",
                         field="scope")
        self.assertEqual(self.call("GET", "/api/control", token=self.token("viewer")).json["holder"], None)
        r = self.call("POST", "/api/control", token=self.ex)
        self.assertEqual(r.json, {"scope": "ecs", "holder": "expert"})
        self.assertEqual(self.call("GET", "/api/control", token=self.token("viewer")).json["holder"], "expert")
        self.assertError(self.call("POST", "/api/control", token=self.token("admin")), 409, "conflict", holder="expert")
        self.assertEqual(self.call("DELETE", "/api/control", token=self.ex).code, 200)
        self.assertEqual(self.center.holders, {})

    def test_create_partition(self) -> None:
        """POST /api/partitions creates; without the ECS control 409; existing 409; bad id 400."""
        self.assertError(self.call("POST", "/api/partitions", token=self.ex, json={"id": "p2"}), 409, "conflict")
        self.take_ecs()
        r = self.call("POST", "/api/partitions", token=self.ex, json={"id": "p2"})
        self.assertEqual((r.code, r.json["id"]), (200, "p2"))
        self.assertError(self.call("POST", "/api/partitions", token=self.ex, json={"id": "p2"}), 409, "conflict")
        self.assertError(self.call("POST", "/api/partitions", token=self.ex, json={"id": ""}), 400, "bad_request",
                         field="id")
        self.assertError(self.call("POST", "/api/partitions", token=self.ex, json={"id": "ecs"}), 400, "bad_request",
                         field="id")

    def test_delete_partition(self) -> None:
        """DELETE removes a partition; a running one needs ?force=1; unknown 404."""
        self.take_ecs()
        self.center.partitions_["demo"]["state"] = "Running"
        self.assertError(self.call("DELETE", "/api/partitions/demo", token=self.ex), 409, "conflict")
        self.assertError(self.call("DELETE", "/api/partitions/demo?force=x", token=self.ex), 400, "bad_request",
                         field="force")
        self.assertEqual(self.call("DELETE", "/api/partitions/demo?force=1", token=self.ex).code, 200)
        self.assertNotIn("demo", self.center.partitions_)
        self.assertError(self.call("DELETE", "/api/partitions/demo", token=self.ex), 404, "not_found")

    def test_detectors(self) -> None:
        """Create, list unassigned and delete detectors, with type and field checks."""
        self.take_ecs()
        r = self.call("POST", "/api/detectors", token=self.ex, json={"id": "TRD", "type": "trd"})
        self.assertEqual(r.json, {"id": "TRD", "type": "trd"})
        self.assertError(self.call("POST", "/api/detectors", token=self.ex, json={"id": "X", "type": "toaster"}),
                         400, "bad_request", field="type")
        self.assertError(self.call("POST", "/api/detectors", token=self.ex, json={"id": "X"}), 400, "bad_request",
                         field="type")
        r = self.call("GET", "/api/detectors/unassigned", token=self.token("viewer"))
        self.assertEqual(sorted(d["id"] for d in r.json), ["TOF", "TRD"])
        self.assertEqual(self.call("DELETE", "/api/detectors/TRD", token=self.ex).code, 200)
        self.assertError(self.call("DELETE", "/api/detectors/TRD", token=self.ex), 404, "not_found")
        self.assertError(self.call("DELETE", "/api/detectors/STS", token=self.ex), 409, "conflict")
        self.assertEqual(self.call("DELETE", "/api/detectors/STS?force=1", token=self.ex).code, 200)

    def test_move_detector(self) -> None:
        """Move to a partition and back to unassigned; locked 423; bad fields 400."""
        self.take_ecs()
        r = self.call("POST", "/api/detectors/TOF/move", token=self.ex, json={"to": "demo"})
        self.assertEqual(r.json, {"id": "TOF", "partition": "demo"})
        self.assertEqual(self.center.audit_log[-1], ("expert", "move_detector", ("TOF", "demo", False)))
        r = self.call("POST", "/api/detectors/TOF/move", token=self.ex, json={"to": None, "force": True})
        self.assertEqual(r.json, {"id": "TOF", "partition": None})
        self.assertEqual(self.center.audit_log[-1], ("expert", "move_detector", ("TOF", None, True)))
        for body, field in [({}, "to"), ({"force": True}, "to"), ({"to": 3}, "to"),
                            ({"to": "demo", "force": 1}, "force")]:
            self.assertError(self.call("POST", "/api/detectors/TOF/move", token=self.ex, json=body), 400,
                             "bad_request", field=field)
        self.center.partitions_["demo"]["locked"] = True
        self.assertError(self.call("POST", "/api/detectors/TOF/move", token=self.ex, json={"to": "demo"}), 423,
                         "locked")
        self.assertError(self.call("POST", "/api/detectors/NOPE/move", token=self.ex, json={"to": None}), 404,
                         "not_found")


class ConfigTests(WebTestCase):
    """Configurations and tags."""

    def setUp(self) -> None:
        super().setUp()
        self.ex, self.viewer = self.token("expert"), self.token("viewer")

    def test_configs(self) -> None:
        """GET /api/configs lists latest versions, ?system= filters."""
        self.assertEqual(len(self.call("GET", "/api/configs", token=self.viewer).json), 6)
        r = self.call("GET", "/api/configs?system=STS", token=self.viewer)
        self.assertEqual([c["id"] for c in r.json], ["sts-default"])

    def test_config_versions(self) -> None:
        """PUT adds a version; GET gives the latest or ?version=N; bad or unknown versions 400/404."""
        r = self.call("PUT", "/api/configs/sts-default", token=self.ex, json={"system": "STS",
                                                                              "parameters": {"mode": "fast"}})
        self.assertEqual(r.json["version"], 2)
        r = self.call("GET", "/api/configs/sts-default", token=self.viewer)
        self.assertEqual((r.json["parameters"], r.json["versions"]), ({"mode": "fast"}, [1, 2]))
        r = self.call("GET", "/api/configs/sts-default?version=1", token=self.viewer)
        self.assertEqual(r.json["parameters"], {"mode": "default"})
        self.assertError(self.call("GET", "/api/configs/sts-default?version=one", token=self.viewer), 400,
                         "bad_request", field="version")
        self.assertError(self.call("GET", "/api/configs/sts-default?version=0", token=self.viewer), 400,
                         "bad_request", field="version")
        self.assertError(self.call("GET", "/api/configs/sts-default?version=9", token=self.viewer), 404, "not_found")
        self.assertError(self.call("GET", "/api/configs/nope", token=self.viewer), 404, "not_found")

    def test_config_put_validation(self) -> None:
        """PUT needs a system string and a parameters object; a viewer gets 403."""
        for body, field in [({"system": "STS"}, "parameters"), ({"system": "STS", "parameters": [1]}, "parameters"),
                            ({"parameters": {}}, "system")]:
            self.assertError(self.call("PUT", "/api/configs/c", token=self.ex, json=body), 400, "bad_request",
                             field=field)
        self.assertError(self.call("PUT", "/api/configs/c", token=self.viewer, json={"system": "STS",
                                                                                     "parameters": {}}),
                         403, "forbidden")

    def test_config_delete(self) -> None:
        """DELETE a configuration used by a tag is 409; unused it goes."""
        self.assertError(self.call("DELETE", "/api/configs/sts-default", token=self.ex), 409, "conflict", tags=["demo"])
        self.call("PUT", "/api/configs/spare", token=self.ex, json={"system": "STS", "parameters": {}})
        self.assertEqual(self.call("DELETE", "/api/configs/spare", token=self.ex).code, 200)
        self.assertError(self.call("DELETE", "/api/configs/spare", token=self.ex), 404, "not_found")

    def test_tags(self) -> None:
        """GET /api/tags lists tags; ?partition= adds compatible, missing and extra."""
        self.assertEqual([t["name"] for t in self.call("GET", "/api/tags", token=self.viewer).json], ["demo"])
        [tag] = self.call("GET", "/api/tags?partition=demo", token=self.viewer).json
        self.assertEqual((tag["compatible"], tag["missing"], tag["extra"]), (True, [], []))
        self.assertError(self.call("GET", "/api/tags?partition=nope", token=self.viewer), 404, "not_found")

    def test_tag_crud(self) -> None:
        """PUT, GET and DELETE a tag, with field and reference checks."""
        r = self.call("PUT", "/api/tags/small", token=self.ex, json={"configs": ["sts-default", "tfc-default"]})
        self.assertEqual(r.json["configs"], {"STS": "sts-default", "TFC": "tfc-default"})
        self.assertEqual(self.call("GET", "/api/tags/small", token=self.viewer).json["name"], "small")
        self.assertError(self.call("PUT", "/api/tags/t", token=self.ex, json={"configs": "sts-default"}), 400,
                         "bad_request", field="configs")
        self.assertError(self.call("PUT", "/api/tags/t", token=self.ex, json={"configs": ["nope"]}), 404, "not_found")
        self.assertEqual(self.call("DELETE", "/api/tags/small", token=self.ex).code, 200)
        self.assertError(self.call("GET", "/api/tags/small", token=self.viewer), 404, "not_found")
        self.assertError(self.call("DELETE", "/api/tags/small", token=self.ex), 404, "not_found")


class RecordTests(WebTestCase):
    """Runs and logs."""

    def setUp(self) -> None:
        super().setUp()
        self.viewer = self.token("viewer")

    def test_runs(self) -> None:
        """GET /api/runs lists runs, filtered by ?partition= and bounded by ?limit=."""
        self.center.run_records.append({"run": 2, "partition": "demo", "tag": "demo", "outcome": "aborted"})
        self.assertEqual([r["run"] for r in self.call("GET", "/api/runs", token=self.viewer).json], [2, 1])
        self.assertEqual([r["run"] for r in self.call("GET", "/api/runs?partition=demo&limit=1",
                                                      token=self.viewer).json], [2])
        self.assertEqual(self.call("GET", "/api/runs?partition=other", token=self.viewer).json, [])
        self.assertEqual(len(self.call("GET", "/api/runs?partition=&limit=", token=self.viewer).json), 2)
        for bad in ["0", "x", "100001"]:
            self.assertError(self.call("GET", f"/api/runs?limit={bad}", token=self.viewer), 400, "bad_request",
                             field="limit")

    def test_logs(self) -> None:
        """GET /api/logs filters by level, since and text; a bad since is 400."""
        get = lambda q: self.call("GET", "/api/logs" + q, token=self.viewer)  # noqa: E731
        self.assertEqual(len(get("").json), 2)
        self.assertEqual([r["message"] for r in get("?level=error").json], ["STS failed"])
        self.assertEqual([r["message"] for r in get("?since=150&partition=demo").json], ["STS failed"])
        self.assertEqual([r["message"] for r in get("?q=configured&limit=5").json], ["configured"])
        self.assertError(get("?since=yesterday"), 400, "bad_request", field="since")
        self.assertError(get("?since=nan"), 400, "bad_request", field="since")

    def test_logs_iso_times(self) -> None:
        """GET /api/logs reads since and until as ISO 8601 too (UTC without an offset), as /api/runs does."""
        get = lambda q: self.call("GET", "/api/logs" + q, token=self.viewer)  # noqa: E731
        self.assertEqual([r["message"] for r in get("?since=1970-01-01T00:02:30Z").json], ["STS failed"])
        self.assertEqual([r["message"] for r in get("?since=1970-01-01T00:02:30").json], ["STS failed"])
        self.assertEqual([r["message"] for r in get("?until=1970-01-01T01:02:30%2B01:00").json], ["configured"])
        self.assertEqual([r["message"] for r in get("?since=1970-01-01T00:01:00Z&until=250").json],
                         ["STS failed", "configured"])
        refused = get("?until=1970-13-01")
        self.assertError(refused, 400, "bad_request", field="until")
        self.assertIn("ISO-8601", refused.json["reason"])


class AlarmRouteTests(WebTestCase):
    """The alarm routes: roles, filters, the shelving body checked by name before the center."""

    def setUp(self) -> None:
        super().setUp()
        self.clock.advance(1_800_000_000.0)
        self.center.alarm_records[2] = self.center.alarm_record(2, "pca_lost", "pca:p2", "p2", "gone", "start it")

    def test_list(self) -> None:
        """Viewers list alarms, newest first; ?partition= and ?all=1 reach the center; ?all=x is refused."""
        viewer = self.token("viewer")
        self.assertEqual([a["id"] for a in self.call("GET", "/api/alarms", token=viewer).json], [2, 1])
        self.assertEqual([a["id"] for a in self.call("GET", "/api/alarms?partition=demo", token=viewer).json], [1])
        self.center.alarm_records[1].update(cleared_at=1.0, acknowledged_at=2.0, acknowledged_by="x")
        self.assertEqual([a["id"] for a in self.call("GET", "/api/alarms", token=viewer).json], [2])
        self.assertEqual([a["id"] for a in self.call("GET", "/api/alarms?all=1", token=viewer).json], [2, 1])
        self.assertError(self.call("GET", "/api/alarms?all=maybe", token=viewer), 400, "bad_request", field="all")
        self.assertError(self.call("GET", "/api/alarms"), 401, "unauthenticated")

    def test_ack(self) -> None:
        """Operators acknowledge (an event on the stream); viewers get 403; unknown ids 404."""
        got: list[tuple[str, dict[str, Any]]] = []
        self.center.subscribe(lambda n, t, d: got.append((t, d)))
        self.assertError(self.call("POST", "/api/alarms/1/ack", token=self.token("viewer")), 403, "forbidden")
        r = self.call("POST", "/api/alarms/1/ack", token=self.token("operator"))
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["acknowledged_by"], "operator")
        self.assertEqual([(t, d["change"]) for t, d in got], [("alarm", "acknowledged")])
        self.assertError(self.call("POST", "/api/alarms/77/ack", token=self.token("operator")), 404, "not_found")

    def test_shelve_body(self) -> None:
        """until (seconds or ISO time, future, at most 30 days) and reason (1-500) are checked by name."""
        expert = self.token("expert")
        now = self.clock.seconds()
        path = "/api/alarms/1/shelve"
        self.assertError(self.call("POST", path, token=self.token("operator"), json={"until": 60, "reason": "r"}),
                         403, "forbidden")
        for body, field in [({"reason": "r"}, "until"), ({"until": True, "reason": "r"}, "until"),
                            ({"until": 0, "reason": "r"}, "until"), ({"until": [1], "reason": "r"}, "until"),
                            ({"until": "soon", "reason": "r"}, "until"),
                            ({"until": "2020-01-01T00:00:00", "reason": "r"}, "until"),
                            ({"until": 30 * 86400 + 1, "reason": "r"}, "until"), ({"until": 60}, "reason"),
                            ({"until": 60, "reason": "   "}, "reason"), ({"until": 60, "reason": 5}, "reason"),
                            ({"until": 60, "reason": "x" * 501}, "reason")]:
            self.assertError(self.call("POST", path, token=expert, json=body), 400, "bad_request", field=field)
        self.assertEqual(self.center.audit_log, [])
        r = self.call("POST", path, token=expert, json={"until": 90, "reason": "x" * 500})
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["shelved_until"], now + 90)
        iso = datetime.fromtimestamp(now + 3600, UTC).isoformat().replace("+00:00", "Z")
        r = self.call("POST", path, token=expert, json={"until": iso, "reason": "until the shift ends"})
        self.assertEqual(r.json["shelved_until"], now + 3600)
        naive = datetime.fromtimestamp(now + 7200, UTC).replace(tzinfo=None).isoformat()
        r = self.call("POST", path, token=expert, json={"until": naive, "reason": "UTC without offset"})
        self.assertEqual(r.json["shelved_until"], now + 7200)
        self.assertEqual([a[1] for a in self.center.audit_log], ["shelve_alarm"] * 3)
        self.assertError(self.call("POST", "/api/alarms/77/shelve", token=expert, json={"until": 9, "reason": "r"}),
                         404, "not_found")


class UserTests(WebTestCase):
    """User administration (admin only)."""

    def setUp(self) -> None:
        super().setUp()
        self.admin = self.token("admin")

    def test_list(self) -> None:
        """An admin lists users; an expert gets 403 naming admin."""
        names = [u["name"] for u in self.call("GET", "/api/users", token=self.admin).json]
        self.assertIn("operator", names)
        self.assertError(self.call("GET", "/api/users", token=self.token("expert")), 403, "forbidden", role="admin")

    def test_add(self) -> None:
        """POST adds a user who can then log in; bad roles 400; duplicate 409."""
        r = self.call("POST", "/api/users", token=self.admin, json={"username": "eve", "password": "pw",
                                                                    "roles": ["viewer"]})
        self.assertEqual(r.json, {"name": "eve", "roles": ["viewer"]})
        self.assertEqual(self.call("POST", "/api/login", json={"username": "eve", "password": "pw"}).code, 200)
        for body, field in [({"username": "x", "password": "p", "roles": ["god"]}, "roles"),
                            ({"username": "x", "password": "p", "roles": "viewer"}, "roles"),
                            ({"username": "x", "roles": []}, "password")]:
            self.assertError(self.call("POST", "/api/users", token=self.admin, json=body), 400, "bad_request",
                             field=field)
        r = self.call("POST", "/api/users", token=self.admin, json={"username": "eve", "password": "pw", "roles": []})
        self.assertError(r, 409, "conflict")

    def test_update(self) -> None:
        """PUT changes roles or password; an empty body is 400; unknown user 404."""
        r = self.call("PUT", "/api/users/viewer", token=self.admin, json={"roles": ["operator"]})
        self.assertEqual(r.json["roles"], ["operator"])
        self.call("PUT", "/api/users/viewer", token=self.admin, json={"password": "new"})
        self.assertEqual(self.center.passwords["viewer"], "new")
        self.assertError(self.call("PUT", "/api/users/viewer", token=self.admin, json={}), 400, "bad_request",
                         field="body")
        self.assertError(self.call("PUT", "/api/users/nope", token=self.admin, json={"roles": []}), 404, "not_found")

    def test_delete(self) -> None:
        """DELETE removes a user; deleting yourself is 409."""
        self.assertEqual(self.call("DELETE", "/api/users/viewer", token=self.admin).code, 200)
        self.assertNotIn("viewer", self.center.passwords)
        self.assertError(self.call("DELETE", "/api/users/admin", token=self.admin), 409, "conflict")


class EventTests(WebTestCase):
    """GET /api/events: the SSE stream."""

    def open(self, path: str = "/api/events", headers: dict[str, str] | None = None,
             stub: StubTreq | None = None) -> tuple[Any, SSEReader]:
        """Open a stream as the viewer; the response and a reader attached to its body."""
        stub = stub or self.stub
        hdrs = {"Authorization": f"Bearer {self.token('viewer')}", **(headers or {})}
        d = stub.get(BASE + path, headers=hdrs, unbuffered=True)
        stub.flush()
        response = self.successResultOf(d)
        reader = SSEReader()
        response.deliverBody(reader)
        stub.flush()
        return response, reader

    def close(self, reader: SSEReader) -> None:
        """Hang up and let both sides see it."""
        reader.hang_up()
        self.stub.flush()

    def test_live_events(self) -> None:
        """The stream is text/event-stream and carries live events with ids."""
        response, reader = self.open()
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["text/event-stream; charset=utf-8"])
        self.assertEqual(response.headers.getRawHeaders("Cache-Control"), ["no-cache"])
        self.assertEqual(reader.events(), [])
        self.center.emit("state", {"partition": "demo", "state": "Configuring"}, "demo")
        self.center.emit("log", {"message": "hello\nworld"}, "demo")
        self.stub.flush()
        self.assertIn(b'id: 1\nevent: state\ndata: {"partition":"demo","state":"Configuring"}\n\n', reader.data)
        self.assertEqual([(e["id"], e["event"]) for e in reader.events()], [(1, "state"), (2, "log")])
        self.assertEqual(reader.events()[1]["data"], {"message": "hello\nworld"})
        self.close(reader)

    def test_events_from_commands(self) -> None:
        """A control change and a command made through the API show up on the stream."""
        _, reader = self.open()
        op = self.token("operator")
        self.call("POST", "/api/partitions/demo/control", token=op)
        self.call("POST", "/api/partitions/demo/configure", token=op, json={"tag": "demo"})
        self.stub.flush()
        self.assertEqual([e["event"] for e in reader.events()], ["control", "state"])
        self.assertEqual(reader.events()[1]["data"], {"partition": "demo", "state": "Configured"})
        self.close(reader)

    def test_partition_filter(self) -> None:
        """?partition= passes only that partition's events; an unknown partition is 404."""
        self.center.partitions_["other"] = {"id": "other", "state": "Idle", "tag": None, "locked": False, "systems": []}
        _, reader = self.open("/api/events?partition=demo")
        self.center.emit("state", {"p": "other"}, "other")
        self.center.emit("state", {"p": "demo"}, "demo")
        self.stub.flush()
        self.assertEqual([e["data"] for e in reader.events()], [{"p": "demo"}])
        self.close(reader)
        r = self.call("GET", "/api/events?partition=nope", token=self.token("viewer"))
        self.assertError(r, 404, "not_found")

    def test_resume_last_event_id(self) -> None:
        """With Last-Event-ID the buffered later events come first, then live ones."""
        for n in range(4):
            self.center.emit("log", {"n": n}, "demo")
        _, reader = self.open(headers={"Last-Event-ID": "2"})
        self.assertEqual([e["id"] for e in reader.events()], [3, 4])
        self.center.emit("log", {"n": 4}, "demo")
        self.stub.flush()
        self.assertEqual([e["id"] for e in reader.events()], [3, 4, 5])
        self.close(reader)

    def test_resume_query_parameter(self) -> None:
        """?last_event_id= works like the header (for clients that cannot set it)."""
        for n in range(3):
            self.center.emit("log", {"n": n}, "demo")
        _, reader = self.open("/api/events?last_event_id=1")
        self.assertEqual([e["id"] for e in reader.events()], [2, 3])
        self.close(reader)

    def test_reload_when_gone(self) -> None:
        """When the events after Last-Event-ID are no longer buffered the client is told to reload."""
        self.center = FakeControlCenter(buffer_size=2)
        self.api = WebAPI(self.center, self.clock)
        self.stub = StubTreq(self.api.resource())
        for n in range(5):
            self.center.emit("log", {"n": n}, "demo")
        _, reader = self.open(headers={"Last-Event-ID": "1"})
        self.assertEqual([e["event"] for e in reader.events()], ["reload"])
        self.assertNotIn("id", reader.events()[0])
        self.center.emit("state", {}, "demo")
        self.stub.flush()
        self.assertEqual([(e.get("id"), e["event"]) for e in reader.events()], [(None, "reload"), (6, "state")])
        self.close(reader)

    def test_bad_last_event_id(self) -> None:
        """A Last-Event-ID that is not a non-negative integer is 400."""
        for value in ["abc", "-1"]:
            r = self.call("GET", "/api/events", token=self.token("viewer"), headers={"Last-Event-ID": value})
            self.assertError(r, 400, "bad_request", field="Last-Event-ID")

    def test_keepalive(self) -> None:
        """A keep-alive comment goes out every 15 seconds on the injected clock."""
        _, reader = self.open()
        self.clock.advance(14)
        self.stub.flush()
        self.assertNotIn(b": keep-alive", reader.data)
        self.clock.advance(1)
        self.stub.flush()
        self.assertEqual(reader.data.count(b": keep-alive\n\n"), 1)
        self.clock.pump([15, 15])
        self.stub.flush()
        self.assertEqual(reader.data.count(b": keep-alive\n\n"), 3)
        self.close(reader)

    def test_open_streams(self) -> None:
        """open_streams counts the open streams (the ECA's ecs_event_streams_open gauge); HEAD opens none."""
        self.assertEqual(self.api.open_streams(), 0)
        _, first = self.open()
        _, second = self.open()
        self.assertEqual(self.api.open_streams(), 2)
        self.call("HEAD", "/api/events", token=self.token("viewer"))
        self.assertEqual(self.api.open_streams(), 2)
        self.close(first)
        self.assertEqual(self.api.open_streams(), 1)
        self.close(second)
        self.assertEqual(self.api.open_streams(), 0)

    def test_open_streams_metric(self) -> None:
        """open_streams is what the ECA hands to EcaMetrics.observe_streams: the gauge follows the streams."""
        metrics = EcaMetrics()
        metrics.observe_streams(self.api.open_streams)

        def gauge() -> float | None:
            return metrics.registry.get_sample_value("ecs_event_streams_open")

        self.assertEqual(gauge(), 0.0)
        _, reader = self.open()
        self.assertEqual(gauge(), 1.0)
        self.close(reader)
        self.assertEqual(gauge(), 0.0)

    def test_unsubscribe_on_disconnect(self) -> None:
        """When the client goes the stream unsubscribes and stops its keep-alive timer."""
        _, reader = self.open()
        self.assertEqual(len(self.center.subscribers), 1)
        self.assertEqual(len(self.api.streams), 1)
        self.close(reader)
        self.assertEqual(self.center.subscribers, [])
        self.assertEqual(self.api.streams, frozenset())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.center.emit("state", {}, "demo")

    def test_collect_incrementally(self) -> None:
        """treq.collect sees each event as it is sent, and a collector that hangs up ends the stream."""
        d = self.stub.get(BASE + "/api/events", headers={"Authorization": f"Bearer {self.token('viewer')}"},
                          unbuffered=True)
        self.stub.flush()
        response = self.successResultOf(d)
        chunks: list[bytes] = []
        hang_up = []

        def collector(data: bytes) -> None:
            if hang_up:
                raise ConnectionAbortedError("client leaves")
            chunks.append(data)

        done = treq.collect(response, collector)
        self.stub.flush()
        for n in range(3):
            self.center.emit("progress", {"percent": n * 50}, "demo")
            self.stub.flush()
            self.assertEqual(parse_events(b"".join(chunks))[-1]["data"], {"percent": n * 50})
        self.assertNoResult(done)
        hang_up.append(True)
        self.clock.advance(15)
        self.stub.flush()
        self.failureResultOf(done, ConnectionAbortedError)
        self.assertEqual(self.center.subscribers, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_paused_client_gets_queued_events(self) -> None:
        """While the connection's buffer is full events are queued and sent in order on resume."""
        _, reader = self.open()
        [stream] = self.api.streams
        stream.request.channel.pauseProducing()
        for n in range(3):
            self.center.emit("log", {"n": n}, "demo")
        self.clock.advance(15)
        self.stub.flush()
        self.assertEqual(reader.events(), [])
        stream.request.channel.resumeProducing()
        self.stub.flush()
        self.assertEqual([e["data"]["n"] for e in reader.events()], [0, 1, 2])
        self.assertNotIn(b"keep-alive", reader.data)
        self.close(reader)

    def test_slow_client_dropped(self) -> None:
        """A client whose queued output passes the bound is disconnected and unsubscribed."""
        self.api.sse_max_buffer = 500
        _, reader = self.open()
        [stream] = self.api.streams
        stream.request.channel.pauseProducing()
        for n in range(20):
            self.center.emit("log", {"n": n, "text": "x" * 40}, "demo")
        self.assertTrue(stream.dropped)
        self.assertEqual(self.center.subscribers, [])
        self.assertEqual(self.api.streams, frozenset())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.stub.flush()
        self.assertIsNotNone(reader.lost)

    def test_logout_ends_its_streams(self) -> None:
        """Logging out ends that session's event streams; another session's goes on."""
        mine, other = self.token("viewer"), self.token("viewer")
        _, reader = self.open(headers={"Authorization": f"Bearer {mine}"})
        _, reader2 = self.open(headers={"Authorization": f"Bearer {other}"})
        self.assertEqual(self.call("POST", "/api/logout", token=mine).code, 200)
        self.stub.flush()
        self.assertIsNotNone(reader.lost)
        self.assertIsNone(reader2.lost)
        self.assertEqual(len(self.api.streams), 1)
        self.center.emit("log", {"n": 1}, "demo")
        self.stub.flush()
        self.assertEqual([e["data"] for e in reader2.events()], [{"n": 1}])
        self.assertEqual([e["data"] for e in reader.events()], [])
        self.assertError(self.call("GET", "/api/events", token=mine), 401, "unauthenticated")
        self.close(reader2)

    def test_ended_session_ends_stream(self) -> None:
        """A session that ends another way (password changed, user deleted) loses its stream at the next check."""
        token = self.token("viewer")
        _, reader = self.open(headers={"Authorization": f"Bearer {token}"})
        _, other = self.open()
        self.clock.advance(self.api.session_check)
        self.stub.flush()
        self.assertIsNone(reader.lost)
        del self.center.sessions[token]  # as a password change does in the store
        self.clock.advance(self.api.session_check)
        self.stub.flush()
        self.assertIsNotNone(reader.lost)
        self.assertIsNone(other.lost)
        self.close(other)
        self.assertEqual(self.api.streams, frozenset())
        self.assertEqual(self.clock.getDelayedCalls(), [])  # no check runs without streams

    def test_head(self) -> None:
        """HEAD answers the stream's headers and ends without subscribing."""
        r = self.call("HEAD", "/api/events", token=self.token("viewer"))
        self.assertEqual((r.code, r.body), (200, b""))
        self.assertEqual(r.header("Content-Type"), ["text/event-stream; charset=utf-8"])
        self.assertEqual(self.center.subscribers, [])

    def test_needs_auth(self) -> None:
        """The stream needs a viewer login."""
        self.assertError(self.call("GET", "/api/events"), 401, "unauthenticated")
        self.assertError(self.call("GET", "/api/events", token=self.token("nobody")), 403, "forbidden", role="viewer")

    def test_cookie_stream(self) -> None:
        """A browser's cookie session opens the stream (GET needs no CSRF token)."""
        stub, _ = self.cookie_login("viewer")
        d = stub.get(BASE + "/api/events", unbuffered=True)
        stub.flush()
        response = self.successResultOf(d)
        reader = SSEReader()
        response.deliverBody(reader)
        self.center.emit("state", {}, "demo")
        stub.flush()
        self.assertEqual(len(reader.events()), 1)
        reader.hang_up()
        stub.flush()
        self.assertEqual(self.center.subscribers, [])
