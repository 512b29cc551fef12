# -*- test-case-name: tests.test_eca -*-
"""
L{Accounts}: logging in and out, sessions and API tokens, and the users'
administration (admin only).  Passwords are hashed off the reactor thread
by an injected L{IPasswords} (L{ThreadPasswords}: the reactor's thread
pool; tests may hash inline).

Every token expires: a session (the GUI's cookie) after C{session_lifetime},
an API token (scripts, C{ecs login}) after C{token_lifetime} (default a
working shift).  With C{single_session} (the default) a new session ends the
user's older sessions in the same transaction; API tokens are not sessions
and are never ended by a login.  Tokens are read from the database on every
request (nothing is cached), so a revocation by C{ecs user tokens revoke} on
the ECA host takes effect at the next request.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from agents.eca.errors import csrf_for, need, raise_store
from agents.eca.interfaces import IAudit
from agents.eca.scopes import ControlScopes
from ecs import users as user_tools
from ecs.control import ControlError, Session, User
from ecs.store import Store

SESSION_LIFETIME = 7 * 86400.0
"""Default lifetime of a session, in seconds."""
TOKEN_LIFETIME = 8 * 3600.0
"""Default lifetime of an API token, in seconds (a working shift)."""
TOUCH_INTERVAL = 60.0
"""Seconds between two records of a token's last use."""


class IPasswords(Protocol):
    """Password hashing, which must not run on the reactor thread."""

    def hash(self, password: str) -> defer.Deferred[str]:
        """The hash of C{password}."""
        ...

    def check(self, password: str, password_hash: str) -> defer.Deferred[bool]:
        """Whether C{password} matches C{password_hash}."""
        ...


class ThreadPasswords:
    """Hashing in the reactor's thread pool (bcrypt is slow by design)."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def hash(self, password: str) -> defer.Deferred[str]:
        """See L{IPasswords.hash}."""
        return user_tools.hash_password_async(self._reactor, password)

    def check(self, password: str, password_hash: str) -> defer.Deferred[bool]:
        """See L{IPasswords.check}."""
        return user_tools.check_password_async(self._reactor, password, password_hash)


def _public(row: Any) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data.pop("password_hash", None)
    return data


def _check_password(password: Any) -> str:
    if not isinstance(password, str) or len(password) < 8:
        raise ControlError("bad_request", "the password needs at least 8 characters")
    return password


class Accounts:
    """Authentication and user administration; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        store: Store,
        clock: IReactorTime,
        passwords: IPasswords,
        scopes: ControlScopes,
        audit: IAudit,
        *,
        single_session: bool = True,
        session_lifetime: float = SESSION_LIFETIME,
        token_lifetime: float = TOKEN_LIFETIME,
    ) -> None:
        self._store = store
        self._clock = clock
        self._passwords = passwords
        self._scopes = scopes
        self._audit = audit
        self.single_session = single_session
        self._lifetimes = {"session": session_lifetime, "api": token_lifetime}
        self._dummy_hash: str | None = None

    # -- sessions ----------------------------------------------------------------

    async def _login(self, username: str, password: str, kind: str) -> Session:
        row = await self._store.user(username) if isinstance(username, str) and username else None
        if row is None:
            # An unknown name costs a password check too, so that the time of
            # the answer does not tell which names exist.
            if self._dummy_hash is None:
                self._dummy_hash = await self._passwords.hash(secrets.token_urlsafe(16))
            await self._passwords.check("not the password", self._dummy_hash)
        ok = row is not None and await self._passwords.check(
            password if isinstance(password, str) else "", row.password_hash
        )
        if not ok or row is None:
            await self._audit.record(username or "?", "login", {}, "refused")
            raise ControlError("unauthenticated", "wrong user name or password")
        token, hashed = user_tools.new_token()
        expires = self._clock.seconds() + self._lifetimes.get(kind, self._lifetimes["api"])
        details: dict[str, Any] = {"kind": kind}
        if kind == "session":
            ended = await self._store.start_session(hashed, row.name, expires, self.single_session)
            if ended:
                details["ended_sessions"] = len(ended)
                self._log.info("user {user} signed in again: {count} older session(s) ended",
                               user=row.name, count=len(ended))
        else:
            await self._store.add_token(hashed, row.name, kind, expires)
        await self._audit.record(row.name, "login", details, "ok")
        return Session(User(row.name, tuple(row.roles)), token, csrf_for(token))

    def login(self, username: str, password: str, kind: str = "session") -> defer.Deferred[Session]:
        """See L{ecs.control.IControlCenter.login}."""
        # A database that cannot be written (disk full) is 507 naming it, never a bare 500.
        return defer.Deferred.fromCoroutine(self._login(username, password, kind)).addErrback(raise_store)

    async def _logout(self, token: str) -> None:
        session = await self._authenticate(token)
        await self._store.delete_token(user_tools.token_hash(token))
        if session is not None:
            await self._scopes.release_all(session.user.name, "logout")
            await self._audit.record(session.user.name, "logout", {}, "ok")

    def logout(self, token: str) -> defer.Deferred[None]:
        """See L{ecs.control.IControlCenter.logout}: also releases every control the user held."""
        return defer.Deferred.fromCoroutine(self._logout(token))

    async def _authenticate(self, token: str) -> Session | None:
        if not isinstance(token, str) or not token:
            return None
        row = await self._store.token(user_tools.token_hash(token))
        if row is None:
            return None
        user = await self._store.user(row.user)
        if user is None:
            return None
        if self._clock.seconds() - row.last_used >= TOUCH_INTERVAL:
            # What `ecs user tokens list` shows as last used, written at most
            # once a minute per token; a failed write does not refuse the request.
            self._store.touch_token(row.token_hash).addErrback(
                lambda f: self._log.warn("recording the use of a token of {user}: {error}",
                                         user=row.user, error=f.getErrorMessage()))
        return Session(User(user.name, tuple(user.roles)), token, csrf_for(token))

    def authenticate(self, token: str) -> defer.Deferred[Session | None]:
        """See L{ecs.control.IControlCenter.authenticate}."""
        return defer.Deferred.fromCoroutine(self._authenticate(token))

    # -- administration (admin) ------------------------------------------------------

    def users(self, user: User) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{ecs.control.IControlCenter.users}."""
        need(user, "admin")
        return self._store.users().addCallback(lambda rows: [_public(r) for r in rows])

    def add_user(self, user: User, name: str, password: str, roles: list[str]) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.add_user}."""
        need(user, "admin")

        async def work() -> dict[str, Any]:
            hashed = await self._passwords.hash(_check_password(password))
            return _public(await self._store.add_user(name, hashed, roles))

        return self._audit.audited(user, "add_user", {"user": name, "roles": list(roles)}, work)

    def update_user(
        self, user: User, name: str, password: str | None, roles: list[str] | None
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.update_user}."""
        need(user, "admin")

        async def work() -> dict[str, Any]:
            if password is not None:
                await self._store.set_password(name, await self._passwords.hash(_check_password(password)))
                await self._store.delete_tokens(name)
            if roles is not None:
                await self._store.set_roles(name, roles)
            row = await self._store.user(name)
            if row is None:
                raise ControlError("not_found", f"no user {name!r}")
            return _public(row)

        return self._audit.audited(
            user, "update_user", {"user": name, "roles": roles, "password": password is not None}, work
        )

    def delete_user(self, user: User, name: str) -> defer.Deferred[None]:
        """See L{ecs.control.IControlCenter.delete_user}."""
        need(user, "admin")
        if name == user.name:
            raise ControlError("conflict", "you cannot delete yourself")
        return self._audit.audited(user, "delete_user", {"user": name}, lambda: self._store.delete_user(name))
