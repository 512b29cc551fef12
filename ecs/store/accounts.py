# -*- test-case-name: tests.test_store -*-
"""
Users (with their roles), bearer tokens, and control ownership of the ECS
and of each partition.

One module although it is over 400 lines: it is one area of the store
(L{AccountOperations}, mixed into L{ecs.store.Store} by L{ecs.store.core}),
and its rules cross the three (deleting a user removes their tokens and
control ownership; the last admin stays).  Control ownership could become
an area of its own, with a change to the composition in L{ecs.store.core}.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from ecs.store.errors import (
    _TOKEN_HASH_RE,
    ECS_SCOPE,
    NAME_RE,
    ROLES,
    TOKEN_KINDS,
    StoreError,
    _check_number,
    _check_roles,
    _check_text,
    _iso,
    _show,
    check_name,
)
from ecs.store.rows import ControlRow, TokenRow, UserRow
from ecs.store.txn import _all, _deferred, _exists, _one, _StoreArea, _Txn

#: The fewest hex digits of a token's hash that name it (L{AccountOperations.revoke_token}).
TOKEN_ID_MIN = 8
_TOKEN_ID_RE = re.compile(f"[0-9a-fA-F]{{{TOKEN_ID_MIN},64}}")


def _user_row(txn: _Txn, row: Sequence[Any]) -> UserRow:
    roles = {r for (r,) in _all(txn, "SELECT role FROM user_roles WHERE user = ?", (row[0],))}
    return UserRow(row[0], row[1], tuple(r for r in ROLES if r in roles), row[2])


def _scope_text(scope: str) -> str:
    return "ECS control" if scope == ECS_SCOPE else f"control of partition {scope}"


def _check_scope(scope: object) -> str:
    return check_name(scope, "control scope")


def _is_admin(txn: _Txn, name: str) -> bool:
    return _one(txn, "SELECT 1 FROM user_roles WHERE user = ? AND role = 'admin'", (name,)) is not None


def _admins_left(txn: _Txn, without: str) -> int:
    row = _one(
        txn, "SELECT COUNT(*) FROM user_roles WHERE role = 'admin' AND user != ?", (without,)
    )
    return int(row[0])


class AccountOperations(_StoreArea):
    """The operations on users, tokens and control ownership."""

    # -- users and tokens --------------------------------------------------------

    @_deferred
    async def add_user(self, name: str, password_hash: str, roles: Iterable[str]) -> UserRow:
        """Create a user with a password hash (see L{ecs.users}) and roles."""
        check_name(name, "user name")
        _check_text(password_hash, "password hash")
        ordered = _check_roles(roles)
        now = self._now()

        def op(txn: _Txn) -> UserRow:
            if _exists(txn, "users", "name", name):
                raise StoreError("conflict", f"user {name} already exists")
            txn.execute(
                "INSERT INTO users (name, password_hash, created) VALUES (?, ?, ?)",
                (name, password_hash, now),
            )
            txn.executemany(
                "INSERT INTO user_roles (user, role) VALUES (?, ?)", [(name, r) for r in ordered]
            )
            return UserRow(name, password_hash, ordered, now)

        return await self._write(op, what=f"add user {name}")

    @_deferred
    async def user(self, name: str) -> UserRow | None:
        """
        One user, or C{None} (also for a name no user can have, so that a
        login with any text is simply unknown).
        """
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            return None

        def op(txn: _Txn) -> UserRow | None:
            row = _one(txn, "SELECT name, password_hash, created FROM users WHERE name = ?", (name,))
            return None if row is None else _user_row(txn, row)

        return await self._read(op, what=f"read user {name}")

    @_deferred
    async def users(self) -> list[UserRow]:
        """All users, by name."""

        def op(txn: _Txn) -> list[UserRow]:
            rows = _all(txn, "SELECT name, password_hash, created FROM users ORDER BY name")
            return [_user_row(txn, r) for r in rows]

        return await self._read(op, what="list users")

    @_deferred
    async def set_password(self, name: str, password_hash: str) -> None:
        """Replace a user's password hash (tokens are left to the caller)."""
        check_name(name, "user name")
        _check_text(password_hash, "password hash")

        def op(txn: _Txn) -> None:
            txn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))
            if txn.rowcount == 0:
                raise StoreError("not_found", f"no user {name}")

        await self._write(op, what=f"set password of {name}")

    @_deferred
    async def set_roles(self, name: str, roles: Iterable[str]) -> UserRow:
        """Replace a user's roles; C{conflict} if that would leave no admin."""
        check_name(name, "user name")
        ordered = _check_roles(roles)

        def op(txn: _Txn) -> UserRow:
            row = _one(txn, "SELECT name, password_hash, created FROM users WHERE name = ?", (name,))
            if row is None:
                raise StoreError("not_found", f"no user {name}")
            if "admin" not in ordered and _is_admin(txn, name) and _admins_left(txn, name) == 0:
                raise StoreError("conflict", f"{name} is the last admin and must keep the admin role")
            txn.execute("DELETE FROM user_roles WHERE user = ?", (name,))
            txn.executemany(
                "INSERT INTO user_roles (user, role) VALUES (?, ?)", [(name, r) for r in ordered]
            )
            return UserRow(row[0], row[1], ordered, row[2])

        return await self._write(op, what=f"set roles of {name}")

    @_deferred
    async def delete_user(self, name: str) -> None:
        """
        Delete a user with their roles, tokens and control ownership;
        C{conflict} for the last admin.
        """
        check_name(name, "user name")

        def op(txn: _Txn) -> None:
            if not _exists(txn, "users", "name", name):
                raise StoreError("not_found", f"no user {name}")
            if _is_admin(txn, name) and _admins_left(txn, name) == 0:
                raise StoreError("conflict", f"{name} is the last admin and cannot be deleted")
            # The foreign keys cascade too; explicit deletes keep it obvious.
            txn.execute("DELETE FROM control WHERE holder = ?", (name,))
            txn.execute("DELETE FROM tokens WHERE user = ?", (name,))
            txn.execute("DELETE FROM user_roles WHERE user = ?", (name,))
            txn.execute("DELETE FROM users WHERE name = ?", (name,))

        await self._write(op, what=f"delete user {name}")

    @_deferred
    async def add_token(
        self, token_hash: str, user: str, kind: str, expires: float | None = None
    ) -> TokenRow:
        """
        Store a token's hash (see L{ecs.users.new_token}) for C{user};
        C{kind} is C{"session"} or C{"api"}; C{expires} a POSIX time or
        C{None} (never).
        """
        if not isinstance(token_hash, str) or not _TOKEN_HASH_RE.fullmatch(token_hash):
            raise StoreError("bad_request", "a token hash is 64 lowercase hex digits (SHA-256)")
        check_name(user, "user name")
        if kind not in TOKEN_KINDS:
            raise StoreError("bad_request", f"invalid token kind {_show(kind)}: use session or api")
        if expires is not None:
            expires = _check_number(expires, "token expiry")
        now = self._now()

        def op(txn: _Txn) -> TokenRow:
            if not _exists(txn, "users", "name", user):
                raise StoreError("not_found", f"no user {user}")
            if _exists(txn, "tokens", "token_hash", token_hash):
                raise StoreError("conflict", f"a token of {user} with this hash already exists")
            txn.execute(
                "INSERT INTO tokens (token_hash, user, kind, created, last_used, expires)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash, user, kind, now, now, expires),
            )
            return TokenRow(token_hash, user, kind, now, now, expires)

        return await self._write(op, what=f"add token for {user}")

    @_deferred
    async def start_session(
        self, token_hash: str, user: str, expires: float, end_others: bool
    ) -> list[TokenRow]:
        """
        Store a new session token for C{user}; with C{end_others}, in the
        same transaction, delete the user's other sessions (one session per
        user; API tokens are not sessions and stay).  Fires with the ended
        sessions.
        """
        if not isinstance(token_hash, str) or not _TOKEN_HASH_RE.fullmatch(token_hash):
            raise StoreError("bad_request", "a token hash is 64 lowercase hex digits (SHA-256)")
        check_name(user, "user name")
        expires = _check_number(expires, "token expiry")
        now = self._now()

        def op(txn: _Txn) -> list[TokenRow]:
            if not _exists(txn, "users", "name", user):
                raise StoreError("not_found", f"no user {user}")
            ended: list[TokenRow] = []
            if end_others:
                rows = _all(
                    txn,
                    "SELECT token_hash, user, kind, created, last_used, expires FROM tokens"
                    " WHERE user = ? AND kind = 'session'"
                    " AND (expires IS NULL OR expires > ?)",
                    (user, now),
                )
                ended = [TokenRow(*r) for r in rows]
                txn.execute("DELETE FROM tokens WHERE user = ? AND kind = 'session'", (user,))
            txn.execute(
                "INSERT INTO tokens (token_hash, user, kind, created, last_used, expires)"
                " VALUES (?, ?, 'session', ?, ?, ?)",
                (token_hash, user, now, now, expires),
            )
            return ended

        return await self._write(op, what=f"start a session of {user}")

    @_deferred
    async def tokens(self, user: str | None = None) -> list[TokenRow]:
        """The tokens that have not expired (of C{user}), by user and age."""
        if user is not None:
            check_name(user, "user name")
        now = self._now()

        def op(txn: _Txn) -> list[TokenRow]:
            rows = _all(
                txn,
                "SELECT token_hash, user, kind, created, last_used, expires FROM tokens"
                " WHERE (expires IS NULL OR expires > ?) AND (? IS NULL OR user = ?) ORDER BY user, created",
                (now, user, user),
            )
            return [TokenRow(*r) for r in rows]

        return await self._read(op, what="list tokens")

    @_deferred
    async def revoke_token(self, token_id: str) -> TokenRow:
        """
        Delete the token whose hash starts with C{token_id} (at least
        L{TOKEN_ID_MIN} hex digits, as C{ecs user tokens list} shows them);
        C{not_found} if none, C{conflict} if several match.
        """
        if not isinstance(token_id, str) or not _TOKEN_ID_RE.fullmatch(token_id):
            raise StoreError(
                "bad_request", f"a token id is {TOKEN_ID_MIN} to 64 hex digits, got {_show(token_id)}"
            )
        prefix = token_id.lower()

        def op(txn: _Txn) -> TokenRow:
            rows = _all(
                txn,
                "SELECT token_hash, user, kind, created, last_used, expires FROM tokens"
                " WHERE substr(token_hash, 1, ?) = ?",
                (len(prefix), prefix),
            )
            if not rows:
                raise StoreError("not_found", f"no token {prefix}")
            if len(rows) > 1:
                raise StoreError("conflict", f"{len(rows)} tokens start with {prefix}: give more digits")
            txn.execute("DELETE FROM tokens WHERE token_hash = ?", (rows[0][0],))
            return TokenRow(*rows[0])

        return await self._write(op, what=f"revoke token {prefix}")

    @_deferred
    async def token(self, token_hash: str) -> TokenRow | None:
        """The token with this hash, or C{None} if unknown or expired."""
        if not isinstance(token_hash, str) or not _TOKEN_HASH_RE.fullmatch(token_hash):
            return None
        now = self._now()

        def op(txn: _Txn) -> TokenRow | None:
            row = _one(
                txn,
                "SELECT token_hash, user, kind, created, last_used, expires FROM tokens"
                " WHERE token_hash = ? AND (expires IS NULL OR expires > ?)",
                (token_hash, now),
            )
            return None if row is None else TokenRow(*row)

        return await self._read(op, what="read token")

    @_deferred
    async def touch_token(self, token_hash: str) -> None:
        """Record that a token was just used; C{not_found} if unknown."""
        now = self._now()

        def op(txn: _Txn) -> None:
            txn.execute("UPDATE tokens SET last_used = ? WHERE token_hash = ?", (now, token_hash))
            if txn.rowcount == 0:
                raise StoreError("not_found", "no such token")

        await self._write(op, what="touch token")

    @_deferred
    async def delete_token(self, token_hash: str) -> bool:
        """Delete a token; fires with whether there was one (logout is idempotent)."""

        def op(txn: _Txn) -> bool:
            txn.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))
            return bool(txn.rowcount)

        return await self._write(op, what="delete token")

    @_deferred
    async def delete_tokens(self, user: str, kind: str | None = None) -> int:
        """Delete a user's tokens (of one kind); fires with how many."""
        check_name(user, "user name")
        if kind is not None and kind not in TOKEN_KINDS:
            raise StoreError("bad_request", f"invalid token kind {_show(kind)}: use session or api")

        def op(txn: _Txn) -> int:
            if kind is None:
                txn.execute("DELETE FROM tokens WHERE user = ?", (user,))
            else:
                txn.execute("DELETE FROM tokens WHERE user = ? AND kind = ?", (user, kind))
            return int(txn.rowcount)

        return await self._write(op, what=f"delete tokens of {user}")

    @_deferred
    async def expire_tokens(self) -> int:
        """Delete the expired tokens; fires with how many."""
        now = self._now()

        def op(txn: _Txn) -> int:
            txn.execute("DELETE FROM tokens WHERE expires IS NOT NULL AND expires <= ?", (now,))
            return int(txn.rowcount)

        return await self._write(op, what="expire tokens")

    # -- control ownership -------------------------------------------------------

    @_deferred
    async def take_control(self, scope: str, user: str, force: bool = False) -> ControlRow:
        """
        Take control of C{scope} (a partition id or L{ECS_SCOPE}) for
        C{user}.  Atomic: of concurrent takers exactly one wins; the others
        get C{StoreError("conflict")} with C{.holder} and C{.since}.  The
        holder taking again succeeds (and counts as activity); C{force}
        replaces another holder (C{ControlRow.replaced} names them).
        """
        _check_scope(scope)
        check_name(user, "user name")
        now = self._now()

        def op(txn: _Txn) -> ControlRow:
            if scope != ECS_SCOPE and not _exists(txn, "partitions", "id", scope):
                raise StoreError("not_found", f"no partition {scope}")
            if not _exists(txn, "users", "name", user):
                raise StoreError("not_found", f"no user {user}")
            txn.execute(
                "INSERT INTO control (scope, holder, since, last_activity) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope) DO NOTHING",
                (scope, user, now, now),
            )
            if txn.rowcount == 1:
                return ControlRow(scope, user, now, now)
            holder, since = _one(txn, "SELECT holder, since FROM control WHERE scope = ?", (scope,))
            if holder == user:
                txn.execute("UPDATE control SET last_activity = ? WHERE scope = ?", (now, scope))
                return ControlRow(scope, user, since, now)
            if force:
                txn.execute(
                    "UPDATE control SET holder = ?, since = ?, last_activity = ? WHERE scope = ?",
                    (user, now, now, scope),
                )
                return ControlRow(scope, user, now, now, replaced=holder)
            raise StoreError(
                "conflict",
                f"{_scope_text(scope)} is held by {holder} since {_iso(since)}",
                holder=holder,
                since=since,
            )

        return await self._write(op, what=f"take {_scope_text(scope)}")

    @_deferred
    async def release_control(self, scope: str, user: str | None = None) -> ControlRow:
        """
        Release C{scope}; with C{user}, only if they hold it (C{conflict}
        otherwise).  C{not_found} if nobody holds it.  Fires with the
        released ownership.
        """
        _check_scope(scope)
        if user is not None:
            check_name(user, "user name")

        def op(txn: _Txn) -> ControlRow:
            row = _one(
                txn, "SELECT scope, holder, since, last_activity FROM control WHERE scope = ?", (scope,)
            )
            if row is None:
                raise StoreError("not_found", f"nobody holds {_scope_text(scope)}")
            if user is not None and row[1] != user:
                raise StoreError(
                    "conflict",
                    f"{_scope_text(scope)} is held by {row[1]} since {_iso(row[2])}, not by {user}",
                    holder=row[1],
                    since=row[2],
                )
            txn.execute("DELETE FROM control WHERE scope = ?", (scope,))
            return ControlRow(*row)

        return await self._write(op, what=f"release {_scope_text(scope)}")

    @_deferred
    async def control(self, scope: str) -> ControlRow | None:
        """Who holds C{scope}, or C{None}."""
        _check_scope(scope)

        def op(txn: _Txn) -> ControlRow | None:
            row = _one(
                txn, "SELECT scope, holder, since, last_activity FROM control WHERE scope = ?", (scope,)
            )
            return None if row is None else ControlRow(*row)

        return await self._read(op, what=f"read {_scope_text(scope)}")

    @_deferred
    async def controls(self) -> list[ControlRow]:
        """Every held scope, by scope."""

        def op(txn: _Txn) -> list[ControlRow]:
            rows = _all(txn, "SELECT scope, holder, since, last_activity FROM control ORDER BY scope")
            return [ControlRow(*r) for r in rows]

        return await self._read(op, what="list control")

    @_deferred
    async def touch_control(self, scope: str, user: str) -> ControlRow:
        """
        Record activity of the holder C{user} on C{scope}; C{not_found} if
        nobody holds it, C{conflict} if someone else does.
        """
        _check_scope(scope)
        check_name(user, "user name")
        now = self._now()

        def op(txn: _Txn) -> ControlRow:
            row = _one(txn, "SELECT holder, since FROM control WHERE scope = ?", (scope,))
            if row is None:
                raise StoreError("not_found", f"nobody holds {_scope_text(scope)}")
            if row[0] != user:
                raise StoreError(
                    "conflict",
                    f"{_scope_text(scope)} is held by {row[0]} since {_iso(row[1])}",
                    holder=row[0],
                    since=row[1],
                )
            txn.execute("UPDATE control SET last_activity = ? WHERE scope = ?", (now, scope))
            return ControlRow(scope, user, row[1], now)

        return await self._write(op, what=f"touch {_scope_text(scope)}")

    @_deferred
    async def expire_controls(self, idle_seconds: float, now: float | None = None) -> list[ControlRow]:
        """
        Release every scope idle for at least C{idle_seconds} at C{now}
        (default: the clock); fires with the released ones.
        """
        idle = _check_number(idle_seconds, "idle time")
        at = self._now() if now is None else _check_number(now, "time")

        def op(txn: _Txn) -> list[ControlRow]:
            rows = _all(
                txn,
                "SELECT scope, holder, since, last_activity FROM control"
                " WHERE last_activity <= ? ORDER BY scope",
                (at - idle,),
            )
            txn.executemany("DELETE FROM control WHERE scope = ?", [(r[0],) for r in rows])
            return [ControlRow(*r) for r in rows]

        return await self._write(op, what="expire control")

    @_deferred
    async def release_all(self, user: str) -> list[ControlRow]:
        """Release every scope C{user} holds (logout); fires with them."""
        check_name(user, "user name")

        def op(txn: _Txn) -> list[ControlRow]:
            rows = _all(
                txn,
                "SELECT scope, holder, since, last_activity FROM control"
                " WHERE holder = ? ORDER BY scope",
                (user,),
            )
            txn.execute("DELETE FROM control WHERE holder = ?", (user,))
            return [ControlRow(*r) for r in rows]

        return await self._write(op, what=f"release control of {user}")
