"""
Tests for L{ecs.users}: password hashing, tokens, roles, the first admin
and the C{ecs user} / C{ecs db upgrade} helpers, on a real SQLite file.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from argparse import Namespace
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ecs import users
from ecs.store import SCHEMA_VERSION, Store, database_path
from ecs.users import (
    ADMIN_PASSWORD_FILE,
    ROLES,
    PasswordError,
    authenticate,
    check_password,
    check_password_async,
    cli_db_upgrade,
    cli_user,
    ensure_admin,
    has_role,
    hash_password,
    hash_password_async,
    new_token,
    parse_roles,
    token_hash,
)


class PasswordTests(SynchronousTestCase):
    """bcrypt hashing."""

    def setUp(self) -> None:
        self.patch(users, "BCRYPT_ROUNDS", 4)  # the cheapest cost: these tests check behaviour

    def test_round_trip(self) -> None:
        """A hash checks against its password only, and salts differ."""
        h = hash_password("correct horse")
        self.assertTrue(h.startswith("$2b$04$"))
        self.assertTrue(check_password("correct horse", h))
        self.assertFalse(check_password("wrong horse", h))
        self.assertNotEqual(hash_password("correct horse"), h)
        self.assertTrue(check_password("ünïcødé", hash_password("ünïcødé")))

    def test_cost(self) -> None:
        """hash_password uses BCRYPT_ROUNDS unless given rounds."""
        self.assertEqual(hash_password("pw").split("$")[2], "04")
        self.assertEqual(hash_password("pw", rounds=5).split("$")[2], "05")

    def test_refused_passwords(self) -> None:
        """Empty, NUL-containing and over-72-byte passwords are refused, not truncated."""
        for bad in ("", "a\0b", "x" * 73, "é" * 37):
            self.assertRaises(PasswordError, hash_password, bad)
        hash_password("x" * 72)

    def test_check_never_raises(self) -> None:
        """Malformed hashes and unusable passwords simply do not match."""
        h = hash_password("pw")
        for password, hashed in (("pw", "garbage"), ("pw", ""), ("x" * 100, h), ("", h), (None, h)):
            self.assertFalse(check_password(password, hashed))  # type: ignore[arg-type]


class TokenAndRoleTests(SynchronousTestCase):
    """Tokens and role ordering."""

    def test_new_token(self) -> None:
        """A token is long and URL-safe; its hash is its SHA-256 in hex."""
        token, hashed = new_token()
        self.assertGreaterEqual(len(token), 43)
        self.assertRegex(token, r"^[A-Za-z0-9_-]+$")
        self.assertEqual(hashed, hashlib.sha256(token.encode()).hexdigest())
        self.assertEqual(token_hash(token), hashed)
        self.assertNotEqual(new_token()[0], token)

    def test_has_role(self) -> None:
        """admin > expert > operator > viewer, each including the weaker ones."""
        self.assertEqual(ROLES, ("viewer", "operator", "expert", "admin"))
        self.assertTrue(has_role(["admin"], "viewer"))
        self.assertTrue(has_role(["expert"], "operator"))
        self.assertTrue(has_role(("viewer", "operator"), "operator"))
        self.assertFalse(has_role(["operator"], "expert"))
        self.assertFalse(has_role([], "viewer"))
        self.assertFalse(has_role(["superuser"], "viewer"))
        self.assertRaises(ValueError, has_role, ["admin"], "root")

    def test_default_cost(self) -> None:
        """New hashes cost 2**12 bcrypt rounds unless patched."""
        self.assertEqual(users.BCRYPT_ROUNDS, 12)

    def test_parse_roles(self) -> None:
        """A comma list becomes a list of role names."""
        self.assertEqual(parse_roles("operator, expert,,"), ["operator", "expert"])
        self.assertEqual(parse_roles(""), [])


class StoreCase(TestCase):
    """A state directory with a store in it."""

    def setUp(self) -> Deferred[None]:
        self.patch(users, "BCRYPT_ROUNDS", 4)
        self.state = Path(self.mktemp())
        return Deferred.fromCoroutine(self._open())

    async def _open(self) -> None:
        self.store = await Store.open(database_path(self.state), reactor)
        self.addCleanup(self.store.close)


class AsyncPasswordTests(StoreCase):
    """Hashing off the reactor thread, and logging in."""

    async def test_async_helpers(self) -> None:
        """hash_password_async and check_password_async run bcrypt in the thread pool."""
        h = await hash_password_async(reactor, "pw")
        self.assertTrue(await check_password_async(reactor, "pw", h))
        self.assertFalse(await check_password_async(reactor, "no", h))
        with self.assertRaises(PasswordError):
            await hash_password_async(reactor, "")

    async def test_authenticate(self) -> None:
        """The right password gives the user; wrong ones, unknown or invalid names give None."""
        await self.store.add_user("bob", hash_password("secret"), ["operator"])
        user = await authenticate(reactor, self.store, "bob", "secret")
        self.assertEqual(user.name if user else None, "bob")
        self.assertIsNone(await authenticate(reactor, self.store, "bob", "Secret"))
        self.assertIsNone(await authenticate(reactor, self.store, "carol", "secret"))
        self.assertIsNone(await authenticate(reactor, self.store, "x' OR '1'='1", "secret"))


class EnsureAdminTests(StoreCase):
    """The first admin."""

    async def test_random_password(self) -> None:
        """Without ECS_ADMIN_PASSWORD a random password is written (0600) and returned."""
        password = await ensure_admin(self.store, self.state, env={})
        self.assertIsNotNone(password)
        assert password is not None
        self.assertGreaterEqual(len(password), 16)
        path = self.state / ADMIN_PASSWORD_FILE
        self.assertEqual(path.read_text(), password + "\n")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        admin = await self.store.user("admin")
        assert admin is not None
        self.assertEqual(admin.roles, ("admin",))
        self.assertTrue(check_password(password, admin.password_hash))
        self.assertFalse((self.state / (ADMIN_PASSWORD_FILE + ".new")).exists())

    async def test_random_passwords_differ(self) -> None:
        """Two first starts get different passwords (no fixed default)."""
        first = await ensure_admin(self.store, self.state, env={})
        other = await Store.open(Path(self.mktemp()) / "ecs.sqlite", reactor)
        self.addCleanup(other.close)
        second = await ensure_admin(other, Path(self.mktemp()), env={})
        self.assertNotEqual(first, second)

    async def test_env_password(self) -> None:
        """ECS_ADMIN_PASSWORD is used; nothing is written or returned; a stale file goes."""
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / ADMIN_PASSWORD_FILE).write_text("old\n")
        result = await ensure_admin(self.store, self.state, env={"ECS_ADMIN_PASSWORD": "from-env"})
        self.assertIsNone(result)
        self.assertFalse((self.state / ADMIN_PASSWORD_FILE).exists())
        admin = await self.store.user("admin")
        assert admin is not None
        self.assertTrue(check_password("from-env", admin.password_hash))

    async def test_only_once(self) -> None:
        """A second start with an admin present changes nothing."""
        password = await ensure_admin(self.store, self.state, env={})
        before = await self.store.user("admin")
        self.assertIsNone(await ensure_admin(self.store, self.state, env={"ECS_ADMIN_PASSWORD": "x"}))
        self.assertEqual(await self.store.user("admin"), before)
        self.assertEqual((self.state / ADMIN_PASSWORD_FILE).read_text(), f"{password}\n")

    async def test_other_admin_exists(self) -> None:
        """An admin created beforehand (ecs user add) means no 'admin' user is made."""
        await self.store.add_user("alice", "h", ["admin"])
        self.assertIsNone(await ensure_admin(self.store, self.state, env={}))
        self.assertIsNone(await self.store.user("admin"))

    async def test_no_admin_among_users(self) -> None:
        """Users without any admin still get the admin account."""
        await self.store.add_user("bob", "h", ["operator"])
        self.assertIsNotNone(await ensure_admin(self.store, self.state, env={}))
        self.assertIsNotNone(await self.store.user("admin"))

    async def test_bad_env_password(self) -> None:
        """An unusable ECS_ADMIN_PASSWORD fails loudly and creates nothing."""
        with self.assertRaises(PasswordError):
            await ensure_admin(self.store, self.state, env={"ECS_ADMIN_PASSWORD": "x" * 80})
        self.assertEqual(await self.store.users(), [])


class CliTests(TestCase):
    """ecs user add/passwd/del/list/roles and ecs db upgrade."""

    def setUp(self) -> None:
        self.patch(users, "BCRYPT_ROUNDS", 4)
        self.state = Path(self.mktemp())
        self.out = io.StringIO()
        self.err = io.StringIO()

    def password_file(self, text: str) -> str:
        path = Path(self.mktemp())
        path.write_text(text + "\n")
        return str(path)

    async def user(self, env: dict[str, str] | None = None, **kw: Any) -> int:
        fields: dict[str, Any] = {"name": None, "roles": None, "password_file": None}
        args = Namespace(state_dir=str(self.state), **{**fields, **kw})
        self.out.seek(0)
        self.out.truncate()
        self.err.seek(0)
        self.err.truncate()
        return await cli_user(reactor, args, env=env or {}, stdout=self.out, stderr=self.err)

    async def stored(self, name: str) -> Any:
        store = await Store.open(database_path(self.state), reactor)
        try:
            return await store.user(name)
        finally:
            await store.close()

    async def test_add(self) -> None:
        """add stores the user with the roles and the password from a file."""
        pw1 = self.password_file("pw1")
        code = await self.user(action="add", name="bob", roles="operator,expert", password_file=pw1)
        self.assertEqual(code, 0, self.err.getvalue())
        self.assertIn("bob added with roles operator, expert", self.out.getvalue())
        bob = await self.stored("bob")
        self.assertEqual(bob.roles, ("operator", "expert"))
        self.assertTrue(check_password("pw1", bob.password_hash))
        self.assertTrue(database_path(self.state).is_file())

    async def test_add_defaults_and_env(self) -> None:
        """Without roles a user is a viewer; ECS_USER_PASSWORD gives the password."""
        self.assertEqual(await self.user(env={"ECS_USER_PASSWORD": "pw2"}, action="add", name="carol"), 0)
        carol = await self.stored("carol")
        self.assertEqual(carol.roles, ("viewer",))
        self.assertTrue(check_password("pw2", carol.password_hash))

    async def test_add_from_terminal(self) -> None:
        """Without file or env the password is asked twice, not echoed; a mismatch fails."""
        answers = iter(["pw3", "pw3", "pw4", "other"])
        self.patch(users.getpass, "getpass", lambda prompt: next(answers))
        self.assertEqual(await self.user(action="add", name="dave"), 0)
        self.assertTrue(check_password("pw3", (await self.stored("dave")).password_hash))
        self.assertEqual(await self.user(action="add", name="erin"), 1)
        self.assertIn("differ", self.err.getvalue())
        self.assertIsNone(await self.stored("erin"))

    async def test_add_errors(self) -> None:
        """Duplicates, bad roles, bad names and bad passwords exit 1 with a message."""
        pw = self.password_file("pw")
        self.assertEqual(await self.user(action="add", name="bob", password_file=pw), 0)
        self.assertEqual(await self.user(action="add", name="bob", password_file=pw), 1)
        self.assertIn("ecs user add: user bob already exists", self.err.getvalue())
        self.assertEqual(await self.user(action="add", name="fred", roles="boss", password_file=pw), 1)
        self.assertIn("boss", self.err.getvalue())
        self.assertEqual(await self.user(action="add", name="no good", password_file=pw), 1)
        self.assertIn("user name", self.err.getvalue())
        self.assertEqual(await self.user(action="add", name="gina", password_file=self.password_file("")), 1)
        self.assertIn("empty", self.err.getvalue())
        self.assertEqual(await self.user(action="add", name="hal", password_file="/nonexistent/pw"), 1)
        self.assertEqual(await self.user(action="frobnicate", name="bob"), 1)

    async def test_passwd_ends_sessions(self) -> None:
        """passwd changes the hash and ends the user's sessions, keeping API tokens."""
        await self.user(action="add", name="bob", password_file=self.password_file("old"))
        store = await Store.open(database_path(self.state), reactor)
        await store.add_token("1" * 64, "bob", "session")
        await store.add_token("2" * 64, "bob", "api")
        await store.close()
        self.assertEqual(await self.user(action="passwd", name="bob", password_file=self.password_file("new")), 0)
        self.assertIn("1 session(s) ended", self.out.getvalue())
        self.assertTrue(check_password("new", (await self.stored("bob")).password_hash))
        store = await Store.open(database_path(self.state), reactor)
        try:
            self.assertIsNone(await store.token("1" * 64))
            self.assertIsNotNone(await store.token("2" * 64))
        finally:
            await store.close()
        self.assertEqual(await self.user(action="passwd", name="zed", password_file=self.password_file("x")), 1)
        self.assertIn("no user zed", self.err.getvalue())

    async def test_del_roles_list(self) -> None:
        """del removes a user (not the last admin), roles changes roles, list prints all."""
        pw = self.password_file("pw")
        await self.user(action="add", name="root", roles="admin", password_file=pw)
        await self.user(action="add", name="bob", password_file=pw)
        self.assertEqual(await self.user(action="roles", name="bob", roles="expert"), 0)
        self.assertEqual(await self.user(action="list"), 0)
        lines = self.out.getvalue().splitlines()
        self.assertEqual([line.split()[:2] for line in lines], [["bob", "expert"], ["root", "admin"]])
        self.assertEqual(await self.user(action="del", name="root"), 1)
        self.assertIn("last admin", self.err.getvalue())
        self.assertEqual(await self.user(action="del", name="bob"), 0)
        self.assertIsNone(await self.stored("bob"))
        self.assertEqual(await self.user(action="del", name="bob"), 1)

    async def test_db_upgrade(self) -> None:
        """db upgrade needs an existing database and reports the versions."""
        args = Namespace(state_dir=str(self.state))
        self.assertEqual(await cli_db_upgrade(reactor, args, stdout=self.out, stderr=self.err), 1)
        self.assertIn("no database", self.err.getvalue())
        store = await Store.open(database_path(self.state), reactor)
        await store.close()
        self.assertEqual(await cli_db_upgrade(reactor, args, stdout=self.out, stderr=self.err), 0)
        self.assertIn(f"already at schema version {SCHEMA_VERSION}", self.out.getvalue())

    async def test_db_upgrade_newer(self) -> None:
        """A database newer than the code makes db upgrade exit 1 naming both versions."""
        import sqlite3

        store = await Store.open(database_path(self.state), reactor)
        await store.close()
        conn = sqlite3.connect(database_path(self.state), isolation_level=None)
        conn.execute("UPDATE schema_version SET version = 7")
        conn.close()
        args = Namespace(state_dir=str(self.state))
        self.assertEqual(await cli_db_upgrade(reactor, args, stdout=self.out, stderr=self.err), 1)
        self.assertIn("version 7", self.err.getvalue())
        self.assertIn(f"(version {SCHEMA_VERSION})", self.err.getvalue())
