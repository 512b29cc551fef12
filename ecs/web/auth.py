# -*- test-case-name: tests.test_web -*-
"""
Who is asking: authentication, roles, the session cookie and the login rate
limit of the ECA's API (L{ecs.web.api}); the GUI shares the cookie.

A request is authenticated by C{Authorization: Bearer <token>} (scripts, the
CLI) or by the session cookie C{ecs_session} (HttpOnly, SameSite=Strict,
Path=/, Secure when the login came over TLS).  With a cookie, every request
other than GET/HEAD/OPTIONS must carry C{X-CSRF-Token} equal to the
session's csrf value; bearer requests need none, since a browser never adds
that header cross-site.  A bearer header wins over a cookie.  Klein's own
session system is not used (it raises C{NoSuchSession} on a bogus cookie).

Routes are declared with L{authorized_route} (authenticates, checks the
role, hands the handler the L{Session}) or L{public_route} (no
authentication, written down as such), never with a bare C{app.route}: a
route that forgot its check would be silently public.  L{route_access}
gives what each declared route needs, so a test can compare it with the
app's whole URL map.

L{LoginLimiter} counts failed logins per user name and per client address
in a sliding window; the login route answers 429 beyond the limit without
asking the center.
"""

from __future__ import annotations

import collections
import functools
import hmac
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from klein import Klein
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ecs.control import ROLES, ControlError, IControlCenter, Session

#: The session cookie's name.
COOKIE = b"ecs_session"
#: The header that carries the CSRF token with a cookie session.
CSRF_HEADER = b"x-csrf-token"
#: Methods that change nothing, so need no CSRF token.
SAFE_METHODS = (b"GET", b"HEAD", b"OPTIONS")


async def authenticate(center: IControlCenter, token: bytes) -> Session | None:
    """The session of a token as sent (None for an unknown, expired or non-ASCII one)."""
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        return None
    session: Session | None = await defer.maybeDeferred(center.authenticate, text)
    return session


async def request_session(center: IControlCenter, request: IRequest, role: str) -> Session:
    """The request's session (bearer, or cookie plus CSRF), which must have C{role}:
    401 or 403 L{ControlError}s naming what is missing."""
    session: Session | None
    auth = request.getHeader(b"authorization")
    if auth is not None:
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise ControlError("unauthenticated", "Authorization must be 'Bearer <token>'")
        session = await authenticate(center, token.strip())
        if session is None:
            raise ControlError("unauthenticated", "invalid or expired token")
    else:
        cookie = request.getCookie(COOKIE)
        if not cookie:
            raise ControlError("unauthenticated", "not logged in")
        session = await authenticate(center, cookie)
        if session is None:
            raise ControlError("unauthenticated", "session expired, log in again")
        if request.method not in SAFE_METHODS:
            sent = request.getHeader(CSRF_HEADER) or b""
            if not session.csrf or not hmac.compare_digest(sent, session.csrf.encode()):
                raise ControlError("forbidden", "missing or wrong CSRF token")
    if not session.user.has(role):
        raise ControlError("forbidden", f"needs role {role}", role=role)
    return session


class HasCenter(Protocol):
    """What an authorized route's C{self} must have: the center to ask."""

    @property
    def center(self) -> IControlCenter:
        """The control center the sessions are checked with."""
        ...


_Self = TypeVar("_Self", bound=HasCenter)
_Params = ParamSpec("_Params")
_Result = TypeVar("_Result", bound=bytes | None)  # what our routes render (None: a stream wrote it)
_Handler = TypeVar("_Handler", bound=Callable[..., Any])

#: id(app) -> (app, {(url, method): role or None}); the app is kept so that
#: its id is never reused while the entry exists.
_ACCESS: dict[int, tuple[Klein, dict[tuple[str, str], str | None]]] = {}


def _declare(app: Klein, url: str, methods: Iterable[str], role: str | None) -> None:
    table = _ACCESS.setdefault(id(app), (app, {}))[1]
    for method in methods:
        if (url, method) in table:
            raise ValueError(f"route {method} {url} declared twice")
        table[(url, method)] = role


def route_access(app: Klein) -> dict[tuple[str, str], str | None]:
    """C{(url rule, method) -> role} of every route declared on C{app} through
    L{authorized_route} (the role) or L{public_route} (None)."""
    entry = _ACCESS.get(id(app))
    return dict(entry[1]) if entry is not None and entry[0] is app else {}


def authorized_route(
    app: Klein, role: str, url: str, *, methods: list[str],
) -> Callable[
    [Callable[Concatenate[_Self, IRequest, Session, _Params], Awaitable[_Result]]],
    Callable[Concatenate[_Self, IRequest, _Params], Coroutine[Any, Any, _Result]],
]:
    """
    Declare a route on C{app} that needs a session with C{role}: the handler
    C{(self, request, session, **url_parts)} runs only once the request is
    authenticated (L{request_session}: 401 or 403 otherwise), and gets the
    session as its third argument.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")

    def declare(
        handler: Callable[Concatenate[_Self, IRequest, Session, _Params], Awaitable[_Result]],
    ) -> Callable[Concatenate[_Self, IRequest, _Params], Coroutine[Any, Any, _Result]]:
        @functools.wraps(handler)
        async def route(self: _Self, request: IRequest, /, *args: _Params.args, **kwargs: _Params.kwargs) -> _Result:
            session = await request_session(self.center, request, role)
            return await handler(self, request, session, *args, **kwargs)

        _declare(app, url, methods, role)
        app.route(url, methods=methods)(route)
        return route

    return declare


def public_route(app: Klein, url: str, *, methods: list[str]) -> Callable[[_Handler], _Handler]:
    """Declare a route on C{app} that anyone may call (health, metrics, the login itself)."""

    def declare(handler: _Handler) -> _Handler:
        _declare(app, url, methods, None)
        return app.route(url, methods=methods)(handler)

    return declare


def set_cookie(request: IRequest, token: str, secure: bool, clear: bool = False) -> None:
    """Set (or clear) the session cookie: HttpOnly, SameSite=Strict, Path=/, Secure over TLS."""
    parts = [COOKIE + b"=" + token.encode("ascii"), b"Path=/", b"HttpOnly", b"SameSite=Strict"]
    if clear:
        parts += [b"Max-Age=0", b"Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
    if secure:
        parts.append(b"Secure")
    # A raw header rather than IRequest.addCookie, which writes "SameSite=strict"
    # in lower case and has no way to say Expires in the past for a clear.
    request.responseHeaders.addRawHeader(b"set-cookie", b"; ".join(parts))


def client_host(request: IRequest) -> str:
    """The TCP peer's address (behind a proxy: the proxy's)."""
    address = request.getClientAddress()
    return str(getattr(address, "host", address))


class LoginLimiter:
    """Failed logins per key (C{("user", name)}, C{("address", host)}) in a sliding window."""

    def __init__(self, clock: IReactorTime, per_user: int = 5, per_address: int = 20, window: float = 60.0,
                 max_keys: int = 10000) -> None:
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


__all__ = ["COOKIE", "CSRF_HEADER", "SAFE_METHODS", "HasCenter", "LoginLimiter", "authenticate",
           "authorized_route", "client_host", "public_route", "request_session", "route_access", "set_cookie"]
