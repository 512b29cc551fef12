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

L{LoginLimiter} throttles password guessing: an exponential back-off per
user name and address together, a sliding window per address, and a
refilled allowance per user name that only slows addresses this user never
logged in from; the login route answers 429 C{too_many} with C{Retry-After}
and "try again in N s" without asking the center.  A wrong password never
locks the real user out from another address.  L{SignOuts} remembers why a
cookie session ended when a newer login of its user ended it (one session
per user), so that the old page can say "signed out: you signed in
elsewhere at TIME from ADDRESS".

One module although it is over 400 lines: everything here decides who a
request comes from and whether they may try; the limiter and the sign-outs
could move to a module of their own (C{ecs.web.logins}) if it grows again.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import attrs
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


class SignOuts:
    """
    Why a cookie session ended when a newer login of its user ended it (one
    session per user): the message its page shows.  Kept in memory for the
    last C{max_keys} sessions seen, keyed by the token's hash; an ECA
    restart forgets it (the old page then reads the plain "session
    expired").
    """

    def __init__(self, max_keys: int = 10000) -> None:
        self._max_keys = max_keys
        #: token hash -> (user, when it was last seen valid)
        self._seen: dict[str, tuple[str, float]] = {}
        #: user -> (when, from where, its token's hash) of their last session login
        self._logins: dict[str, tuple[float, str, str]] = {}

    @staticmethod
    def _key(token: str | bytes) -> str:
        data = token if isinstance(token, bytes) else token.encode("utf-8", "replace")
        return hashlib.sha256(data).hexdigest()

    def seen(self, token: str | bytes, user: str, now: float) -> None:
        """A cookie session of C{user} was valid at C{now}."""
        key = self._key(token)
        self._seen.pop(key, None)
        self._seen[key] = (user, now)
        while len(self._seen) > self._max_keys:
            del self._seen[next(iter(self._seen))]

    def signed_in(self, user: str, token: str, now: float, address: str) -> None:
        """C{user} logged in with a new session from C{address}."""
        self.seen(token, user, now)
        self._logins.pop(user, None)
        self._logins[user] = (now, address, self._key(token))
        while len(self._logins) > self._max_keys:
            del self._logins[next(iter(self._logins))]

    def reason(self, token: str | bytes) -> str | None:
        """The message for a session that is no longer valid, if a newer login explains it."""
        key = self._key(token)
        entry = self._seen.get(key)
        if entry is None:
            return None
        user, last_valid = entry
        login = self._logins.get(user)
        if login is None or login[2] == key or login[0] < last_valid:
            return None
        when = datetime.fromtimestamp(login[0], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"signed out: you signed in elsewhere at {when} from {login[1]}"


async def request_session(center: IControlCenter, request: IRequest, role: str,
                          sign_outs: SignOuts | None = None, now: float = 0.0) -> Session:
    """The request's session (bearer, or cookie plus CSRF), which must have C{role}:
    401 or 403 L{ControlError}s naming what is missing.  With C{sign_outs},
    a cookie session valid at C{now} is noted there, and one ended by a newer
    login is refused with that reason."""
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
            reason = sign_outs.reason(cookie) if sign_outs is not None else None
            raise ControlError("unauthenticated", reason or "session expired, log in again")
        if sign_outs is not None:
            sign_outs.seen(cookie, session.user.name, now)
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
            sign_outs = getattr(self, "sign_outs", None)  # the API's (the GUI has none)
            now = getattr(self, "clock", None)
            session = await request_session(self.center, request, role, sign_outs,
                                            now.seconds() if now is not None else 0.0)
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


@attrs.define
class _Pair:
    """Failed logins of one user name from one address: how many in a row, the last one's time."""

    failures: int = 0
    last: float = 0.0


@attrs.define
class _Bucket:
    """A user name's allowance of failed logins from any address (refilled over time)."""

    tokens: float
    updated: float


class LoginLimiter:
    """
    Throttles password guessing without locking out the real user (see the
    module docstring).  Keys are the user name as typed (case-folded by the
    caller) and the client's address.

      - Per user and address: L{free} failures in a row are free; after
        them each try waits C{base * 2**(n - free)} seconds from the last
        failure (at most C{max_backoff}).  A success resets it.  This is the
        only limit a typing user meets, and only at their own address.
      - Per address, any user name: at most C{per_address} failures in
        C{window} seconds (one address trying many names).
      - Per user name, any address: a bucket of C{per_user} failures
        refilled at one every C{user_interval} seconds.  When it is empty, a
        try from an address that has not logged in as this user before
        waits for the next refill (at most C{user_interval} seconds): an
        attacker spreading over addresses gets C{1 / user_interval} guesses
        a second in all, the real user a short wait, and an address this
        user logged in from before is not slowed by it at all.

    L{attempt} counts a try as failed at once (so that tries in flight
    together cannot all pass the check); L{succeeded} or L{cancelled} take
    it back.  Memory is bounded by C{max_keys} entries per table.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        free: int = 3,
        base: float = 1.0,
        max_backoff: float = 300.0,
        per_address: int = 20,
        window: float = 60.0,
        per_user: int = 20,
        user_interval: float = 3.0,
        forget: float = 3600.0,
        known_for: float = 30 * 86400.0,
        max_keys: int = 10000,
    ) -> None:
        self._clock = clock
        self.free = free
        self.base = base
        self.max_backoff = max_backoff
        self.per_address = per_address
        self.window = window
        self.per_user = per_user
        self.user_interval = user_interval
        self._forget = forget
        self._known_for = known_for
        self._max_keys = max_keys
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._addresses: dict[str, collections.deque[float]] = {}
        self._users: dict[str, _Bucket] = {}
        self._known: dict[tuple[str, str], float] = {}

    # -- the three limits ------------------------------------------------------

    def _pair_wait(self, pair: _Pair | None, now: float) -> float:
        if pair is None or pair.failures < self.free:
            return 0.0
        delay = min(self.base * 2.0 ** (pair.failures - self.free), self.max_backoff)
        return pair.last + delay - now

    def _address_times(self, address: str, now: float) -> collections.deque[float]:
        times = self._addresses.get(address)
        if times is None:
            times = self._addresses[address] = collections.deque(maxlen=self.per_address)
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def _bucket(self, user: str, now: float) -> _Bucket:
        bucket = self._users.get(user)
        if bucket is None:
            bucket = self._users[user] = _Bucket(float(self.per_user), now)
        bucket.tokens = min(float(self.per_user), bucket.tokens + (now - bucket.updated) / self.user_interval)
        bucket.updated = now
        return bucket

    def _is_known(self, user: str, address: str, now: float) -> bool:
        seen = self._known.get((user, address))
        return seen is not None and seen > now - self._known_for

    def retry_after(self, user: str, address: str) -> tuple[float, str] | None:
        """How long a login as C{user} from C{address} must wait, and why; None: it may try now."""
        user, address = _short(user), _short(address)
        now = self._clock.seconds()
        waits: list[tuple[float, str]] = []
        pair_wait = self._pair_wait(self._pairs.get((user, address)), now)
        if pair_wait > 0:
            waits.append((pair_wait, "too many failed logins for this user from this address"))
        # Read only: a refused try must not add entries (random names and addresses).
        if address in self._addresses:
            times = self._address_times(address, now)
            if len(times) >= self.per_address:
                waits.append((times[0] + self.window - now, "too many failed logins from this address"))
        if user in self._users:
            tokens = self._bucket(user, now).tokens
            if tokens < 1 and not self._is_known(user, address, now):
                waits.append(((1 - tokens) * self.user_interval,
                              "too many failed logins for this user from elsewhere"))
        return max(waits) if waits else None

    def attempt(self, user: str, address: str) -> tuple[float, str] | None:
        """
        L{retry_after}; when the try may go ahead it is counted as failed
        until L{succeeded} or L{cancelled} says otherwise.
        """
        user, address = _short(user), _short(address)
        wait = self.retry_after(user, address)
        if wait is not None:
            return wait
        now = self._clock.seconds()
        self._bound(now)
        pair = self._pairs.setdefault((user, address), _Pair())
        pair.failures += 1
        pair.last = now
        self._address_times(address, now).append(now)
        bucket = self._bucket(user, now)
        bucket.tokens = max(0.0, bucket.tokens - 1)
        return None

    def _refund(self, user: str, address: str) -> None:
        pair = self._pairs.get((user, address))
        if pair is not None:
            pair.failures = max(0, pair.failures - 1)
        times = self._addresses.get(address)
        if times:
            times.pop()
        bucket = self._users.get(user)
        if bucket is not None:
            bucket.tokens = min(float(self.per_user), bucket.tokens + 1)

    def succeeded(self, user: str, address: str) -> None:
        """The password was right: the try was no failure, the pair starts
        again, and the address is known for this user from now on."""
        user, address = _short(user), _short(address)
        self._refund(user, address)
        self._pairs.pop((user, address), None)
        self._known.pop((user, address), None)  # re-inserted last: the newest
        self._known[(user, address)] = self._clock.seconds()

    def cancelled(self, user: str, address: str) -> None:
        """The try ended without an answer on the password (a database
        error, say): it does not count."""
        user, address = _short(user), _short(address)
        self._refund(user, address)

    def _bound(self, now: float) -> None:
        """Forget what no longer matters once a table is full; drop the oldest if still full."""
        if len(self._pairs) >= self._max_keys:
            for key, pair in list(self._pairs.items()):
                if pair.last <= now - self._forget and self._pair_wait(pair, now) <= 0:
                    del self._pairs[key]
        if len(self._addresses) >= self._max_keys:
            for address in list(self._addresses):
                if not self._address_times(address, now):
                    del self._addresses[address]
        if len(self._users) >= self._max_keys:
            for user in list(self._users):
                if self._bucket(user, now).tokens >= self.per_user:
                    del self._users[user]
        if len(self._known) >= self._max_keys:
            for key, seen in list(self._known.items()):
                if seen <= now - self._known_for:
                    del self._known[key]
        _drop_oldest(self._pairs, self._max_keys)
        _drop_oldest(self._addresses, self._max_keys)
        _drop_oldest(self._users, self._max_keys)
        _drop_oldest(self._known, self._max_keys)


def _short(key: str) -> str:
    """A table key of bounded size: a long text (no user name is over 128
    characters) stands as its SHA-256, so a megabyte name costs 71 bytes."""
    return key if len(key) <= 128 else "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _drop_oldest(table: dict[Any, Any], size: int) -> None:
    """Remove the oldest entries of C{table} until fewer than C{size} remain."""
    while len(table) >= size:
        del table[next(iter(table))]


__all__ = ["COOKIE", "CSRF_HEADER", "SAFE_METHODS", "HasCenter", "LoginLimiter", "SignOuts", "authenticate",
           "authorized_route", "client_host", "public_route", "request_session", "route_access", "set_cookie"]
