# -*- test-case-name: tests.test_users -*-
"""
Users: passwords, bearer tokens, roles, the first admin, and the helpers
behind C{ecs user add|passwd|del|list|roles} and C{ecs db upgrade}.

One module although it is just over 400 lines: the command helpers are thin
(argument checks, one store call, one line of output) over the functions
above them, and moving them out needs a new layer entry (a module
C{ecs.users_cli} would fall in layer 0) or a home in C{ecs.cli}, outside
this layer; the tests and the ECA harness patch L{BCRYPT_ROUNDS} here.

  - Passwords are hashed with bcrypt (L{hash_password}, L{check_password}).
    bcrypt is slow on purpose (about 0.25 s at L{BCRYPT_ROUNDS}), so code
    running in the reactor uses L{hash_password_async},
    L{check_password_async} or L{authenticate}, which run it in the
    reactor's thread pool.
  - A token is C{secrets.token_urlsafe(32)}; only its SHA-256 is stored
    (L{new_token}, L{token_hash}).
  - Roles are ordered: admin > expert > operator > viewer (L{has_role}).
  - L{ensure_admin} creates the C{admin} user when there is no admin: its
    password is C{ECS_ADMIN_PASSWORD}, or a random one written to
    C{<state dir>/admin-password} (mode 0600) and returned for the caller
    to print once.  There is no default password anywhere.

The CLI helpers take the parsed arguments and a reactor and return an exit
code; C{ecs/cli.py} wires them.  They use C{args.state_dir} (default
C{var}); the database is L{ecs.store.database_path}C{(state_dir)}.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import bcrypt
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from ecs.store import ROLES, Store, StoreError, UserRow, check_name, database_path

__all__ = [
    "ADMIN_NAME",
    "ADMIN_PASSWORD_FILE",
    "ROLES",
    "PasswordError",
    "authenticate",
    "check_password",
    "check_password_async",
    "cli_db_upgrade",
    "cli_user",
    "cli_user_key",
    "ensure_admin",
    "format_time",
    "has_role",
    "hash_password",
    "hash_password_async",
    "new_token",
    "on_store",
    "parse_roles",
    "token_hash",
]

BCRYPT_ROUNDS = 12
"""bcrypt cost factor of new hashes (each step doubles the time)."""

PASSWORD_MAX_BYTES = 72  # bcrypt's limit; longer passwords are refused, not truncated

ADMIN_NAME = "admin"
ADMIN_PASSWORD_FILE = "admin-password"  # noqa: S105 - a file name, not a password
DEFAULT_STATE_DIR = "var"

_dummy_hash: str | None = None  # compared against for unknown users


class PasswordError(ValueError):
    """A password bcrypt cannot hash faithfully (empty, NUL, over 72 bytes)."""


def _password_bytes(password: object) -> bytes:
    if not isinstance(password, str) or not password:
        raise PasswordError("the password is empty")
    if "\0" in password:
        raise PasswordError("the password contains a NUL character")
    data = password.encode("utf-8")
    if len(data) > PASSWORD_MAX_BYTES:
        raise PasswordError(f"the password is longer than {PASSWORD_MAX_BYTES} bytes")
    return data


def hash_password(password: str, rounds: int | None = None) -> str:
    """
    The bcrypt hash of C{password} (blocking: see L{hash_password_async}).

    @raise PasswordError: if the password is empty, contains NUL or is
        longer than 72 bytes in UTF-8.
    """
    salt = bcrypt.gensalt(BCRYPT_ROUNDS if rounds is None else rounds)
    return bcrypt.hashpw(_password_bytes(password), salt).decode("ascii")


def check_password(password: str, password_hash: str) -> bool:
    """Whether C{password} matches C{password_hash} (blocking); never raises."""
    try:
        return bool(bcrypt.checkpw(_password_bytes(password), password_hash.encode("ascii")))
    except (ValueError, TypeError, AttributeError, UnicodeEncodeError):
        return False


def hash_password_async(reactor: Any, password: str) -> Deferred[str]:
    """L{hash_password} in the reactor's thread pool (bcrypt is slow by design)."""
    return deferToThreadPool(reactor, reactor.getThreadPool(), hash_password, password)


def check_password_async(reactor: Any, password: str, password_hash: str) -> Deferred[bool]:
    """L{check_password} in the reactor's thread pool."""
    return deferToThreadPool(
        reactor, reactor.getThreadPool(), check_password, password, password_hash
    )


def authenticate(reactor: Any, store: Store, name: str, password: str) -> Deferred[UserRow | None]:
    """
    The user C{name} if C{password} is theirs, else C{None}.  An unknown or
    invalid name costs one bcrypt check too, so timing does not reveal
    which names exist.
    """

    async def run() -> UserRow | None:
        global _dummy_hash
        user = await store.user(name)
        if user is None:
            if _dummy_hash is None:
                _dummy_hash = await hash_password_async(reactor, secrets.token_urlsafe(16))
            await check_password_async(reactor, "not the password", _dummy_hash)
            return None
        ok = await check_password_async(reactor, password, user.password_hash)
        return user if ok else None

    return Deferred.fromCoroutine(run())


def token_hash(token: str) -> str:
    """The stored form of a bearer token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A new bearer token and its hash: C{(token, token_hash(token))}."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def has_role(user_roles: Iterable[str], needed: str) -> bool:
    """
    Whether a user with C{user_roles} may act as C{needed}: admin > expert >
    operator > viewer, each including the weaker ones.

    @raise ValueError: if C{needed} is not one of L{ROLES}.
    """
    if needed not in ROLES:
        raise ValueError(f"unknown role {needed!r}")
    rank = ROLES.index(needed)
    return any(r in ROLES and ROLES.index(r) >= rank for r in user_roles)


def parse_roles(text: str) -> list[str]:
    """C{"operator, expert"} -> C{["operator", "expert"]} (checked by the store)."""
    return [r.strip() for r in text.split(",") if r.strip()]


# ---------------------------------------------------------------------------
# The first admin


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the file already existed
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_admin(
    store: Store, state_dir: str | Path, env: Mapping[str, str] | None = None
) -> Deferred[str | None]:
    """
    Create user C{admin} (role admin) when no user has the admin role and
    no user is called C{admin}: on a first start, say.

    The password is C{env["ECS_ADMIN_PASSWORD"]} when set and not empty;
    otherwise a random one is written to C{<state_dir>/admin-password}
    (mode 0600) and the Deferred fires with it, for the caller to print
    once.  Fires with C{None} when nothing was generated.
    """
    environ = os.environ if env is None else env

    async def run() -> str | None:
        users = await store.users()
        if any("admin" in u.roles or u.name == ADMIN_NAME for u in users):
            return None
        given = environ.get("ECS_ADMIN_PASSWORD") or None
        password = given or secrets.token_urlsafe(12)
        hashed = await hash_password_async(store.reactor, password)
        final, temporary = _admin_password_files(state_dir, None if given else password)
        try:
            await store.add_user(ADMIN_NAME, hashed, ["admin"])
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        if given is None:
            os.replace(temporary, final)
            return password
        final.unlink(missing_ok=True)  # a file from an earlier database would mislead
        return None

    return Deferred.fromCoroutine(run())


def _admin_password_files(state_dir: str | Path, password: str | None) -> tuple[Path, Path]:
    """
    The admin password file and its temporary name; C{password}, when
    given, is written to the temporary one.  Small local file operations,
    done once on a first start: not worth a thread.
    """
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / ADMIN_PASSWORD_FILE
    temporary = folder / (ADMIN_PASSWORD_FILE + ".new")
    if password is not None:
        _write_secret(temporary, password + "\n")
    return final, temporary


# ---------------------------------------------------------------------------
# Command-line helpers


def _read_password(args: Any, env: Mapping[str, str], name: str) -> str:
    path = getattr(args, "password_file", None)
    if path:
        with open(path, encoding="utf-8") as f:
            text = f.readline().rstrip("\r\n")
        _password_bytes(text)
        return text
    given = env.get("ECS_USER_PASSWORD")
    if given:
        _password_bytes(given)
        return given
    first = getpass.getpass(f"Password for {name}: ")
    _password_bytes(first)
    if getpass.getpass("Again: ") != first:
        raise PasswordError("the passwords differ")
    return first


def _read_key_text(source: str, stdin: TextIO) -> str:
    """The first megabyte of a public key file (C{-}: standard input): a small read by a one-shot command."""
    if source == "-":
        return stdin.read(1_000_000)
    with open(source, encoding="utf-8", errors="replace") as f:
        return f.read(1_000_000)


def format_time(t: float) -> str:
    """A POSIX time as the command-line tools print it (UTC)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_when = format_time


async def cli_user(
    reactor: Any,
    args: Any,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """
    C{ecs user ACTION}: C{args.action} is C{add}, C{passwd}, C{del},
    C{list} or C{roles}, with C{args.name} and C{args.roles} (a comma
    list; C{viewer} when absent for C{add}).  The password comes from
    C{args.password_file}, else C{ECS_USER_PASSWORD}, else the terminal
    (not echoed, asked twice).  Returns the exit code (0, or 1 with a
    message on C{stderr}).
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    environ = os.environ if env is None else env
    action = getattr(args, "action", None)
    given_name = getattr(args, "name", None)
    state_dir = getattr(args, "state_dir", None) or DEFAULT_STATE_DIR
    prefix = f"ecs user {action}"
    if action not in ("add", "passwd", "del", "list", "roles"):
        print(f"ecs user: unknown action {action!r}", file=err)
        return 1
    try:
        # every action but list names a user; list never reads the name
        name = "" if action == "list" else check_name(given_name, "user name")
        password_hash = None
        if action in ("add", "passwd"):
            password_hash = await hash_password_async(
                reactor, _read_password(args, environ, name)
            )
        roles = parse_roles(getattr(args, "roles", None) or ("viewer" if action == "add" else ""))
        store = await Store.open(database_path(state_dir), reactor)
        try:
            if action == "add":
                assert password_hash is not None
                user = await store.add_user(name, password_hash, roles)
                print(f"user {user.name} added with roles {', '.join(user.roles)}", file=out)
            elif action == "passwd":
                assert password_hash is not None
                await store.set_password(name, password_hash)
                ended = await store.delete_tokens(name, "session")
                print(f"password of {name} changed; {ended} session(s) ended", file=out)
            elif action == "del":
                await store.delete_user(name)
                print(f"user {name} deleted", file=out)
            elif action == "roles":
                user = await store.set_roles(name, roles)
                print(f"user {user.name} now has roles {', '.join(user.roles)}", file=out)
            else:
                for user in await store.users():
                    print(f"{user.name:<24} {','.join(user.roles):<30} {_when(user.created)}", file=out)
        finally:
            await store.close()
    except StoreError as e:
        print(f"{prefix}: {e.reason}", file=err)
        return 1
    except (PasswordError, OSError) as e:
        print(f"{prefix}: {e}", file=err)
        return 1
    return 0


async def cli_db_upgrade(
    reactor: Any, args: Any, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """
    C{ecs db upgrade}: bring C{<args.state_dir>/ecs.sqlite} to the current
    schema.  Returns the exit code (1 if there is no database or it cannot
    be upgraded).
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    path = database_path(getattr(args, "state_dir", None) or DEFAULT_STATE_DIR)
    if not path.is_file():
        print(f"ecs db upgrade: no database at {path}", file=err)
        return 1
    try:
        old, new = await Store.upgrade(path, reactor)
    except StoreError as e:
        print(f"ecs db upgrade: {e.reason}", file=err)
        return 1
    if old == new:
        print(f"database {path}: already at schema version {new}", file=out)
    else:
        print(f"database {path}: schema version {old} -> {new}", file=out)
    return 0


async def cli_user_key(
    reactor: Any, args: Any, stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """
    C{ecs user key add NAME FILE|-}, C{ecs user key list [NAME]}, C{ecs
    user key del FINGERPRINT}: the SSH public keys users log in to the
    ECA's SSH shell with (L{ecs.store.keys}).  C{args.name} is the
    sub-action, C{args.key_args} its arguments, C{args.comment} an optional
    comment for C{add}.  FILE holds one OpenSSH public key (C{-}: standard
    input; blank and C{#} lines are skipped).  Returns the exit code (0; 1
    refused, 2 bad usage, with a message on C{stderr}).
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    action = getattr(args, "name", None)
    rest = list(getattr(args, "key_args", None) or [])
    state_dir = getattr(args, "state_dir", None) or DEFAULT_STATE_DIR
    usage = {"add": (2, 2, "NAME FILE|-"), "list": (0, 1, "[NAME]"), "del": (1, 1, "FINGERPRINT")}
    if action not in usage:
        print("ecs user key: use add NAME FILE|-, list [NAME] or del FINGERPRINT", file=err)
        return 2
    low, high, shape = usage[action]
    if not low <= len(rest) <= high:
        print(f"ecs user key {action}: usage: ecs user key {action} {shape}", file=err)
        return 2
    prefix = f"ecs user key {action}"
    key_line = None
    if action == "add":
        source = rest[1]
        try:
            text = _read_key_text(source, stdin or sys.stdin)
        except OSError as e:
            print(f"{prefix}: {e}", file=err)
            return 1
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if len(lines) != 1:
            where = "standard input" if source == "-" else source
            print(f"{prefix}: {where} holds {len(lines)} keys: give exactly one public key", file=err)
            return 1
        key_line = lines[0]

    async def work(store: Store) -> int:
        if action == "add":
            assert key_line is not None
            row = await store.add_user_key(rest[0], key_line, getattr(args, "comment", None))
            print(f"key {row.fingerprint} ({row.type}) added for {row.user}", file=out)
        elif action == "list":
            for row in await store.user_keys(rest[0] if rest else None):
                line = f"{row.user:<24} {row.fingerprint}  {row.type:<20} {_when(row.created)}  {row.comment}"
                print(line.rstrip(), file=out)
        else:
            row = await store.delete_user_key(rest[0])
            print(f"key {row.fingerprint} of {row.user} deleted", file=out)
        return 0

    return await on_store(reactor, state_dir, prefix, err, work)


async def on_store(
    reactor: Any, state_dir: str | Path, prefix: str, err: TextIO, work: Callable[[Store], Awaitable[int]]
) -> int:
    """
    Open the ECA's database in C{state_dir}, run C{work(store)} and close
    it: a command-line helper's exit code, 1 with C{prefix: reason} on
    C{err} when the store refuses or the file cannot be opened.
    """
    try:
        store = await Store.open(database_path(state_dir), reactor)
        try:
            return await work(store)
        finally:
            await store.close()
    except StoreError as e:
        print(f"{prefix}: {e.reason}", file=err)
        return 1
    except OSError as e:
        print(f"{prefix}: {e}", file=err)
        return 1
