# -*- test-case-name: tests.test_web_hardening -*-
"""
The web items of the hardening work: login throttling, bodies nested too
deeply, static paths no file can have, tokens that expire and can be listed
and revoked, the modes of the state directory and database files, and one
session per user.

Unit tests on a L{Clock}; the accounts are the ECA's real L{Accounts} over a
real SQLite store (inline runner) behind the fake control center's other
methods; the token commands run as C{ecs user tokens} runs them, on the real
reactor with the store's thread.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from agents.eca.accounts import Accounts
from ecs import users
from ecs.cli import cli_user_tokens
from ecs.config.settings import ConfigError, load_settings
from ecs.control import Session
from ecs.gui.site import GuiPages, site_root
from ecs.store import Store
from ecs.store.core import inline_runner
from ecs.web.api import WebAPI
from ecs.web.auth import LoginLimiter
from ecs.web.inputs import MAX_DEPTH
from tests.fake_control import PASSWORD, FakeControlCenter
from tests.http_helpers import Result, SSEReader
from tests.support.eca_parts import InlinePasswords

BASE = "http://ecs.test"
T0 = 1_800_000_000.0


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


class _Audit:
    """Records audit rows (the real one's collaborators are not under test here)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict[str, Any], str]] = []

    def record(self, user: str, action: str, arguments: dict[str, Any], outcome: str) -> defer.Deferred[None]:
        self.rows.append((user, action, arguments, outcome))
        return defer.succeed(None)


class _Scopes:
    """Control scopes that nobody holds."""

    def release_all(self, user: str, why: str) -> defer.Deferred[list[Any]]:
        return defer.succeed([])


def _accounts(case: SynchronousTestCase, clock: Clock, **options: Any) -> tuple[Accounts, Store, _Audit]:
    """Real accounts over a real store in a temporary folder, users of each role."""
    old = users.BCRYPT_ROUNDS
    users.BCRYPT_ROUNDS = 4
    case.addCleanup(setattr, users, "BCRYPT_ROUNDS", old)
    path = Path(case.mktemp()) / "ecs.sqlite"
    store = case.successResultOf(Store.open(path, clock, runner=inline_runner))
    case.addCleanup(lambda: case.successResultOf(store.close()))
    for name, roles in (("admin", ["admin"]), ("operator", ["operator"]), ("viewer", ["viewer"])):
        case.successResultOf(store.add_user(name, users.hash_password(PASSWORD), roles))
    audit = _Audit()
    accounts = Accounts(store, clock, InlinePasswords(), _Scopes(), audit, **options)  # type: ignore[arg-type]
    return accounts, store, audit


class AccountsCenter(FakeControlCenter):
    """The fake center, with the ECA's real login, logout and authentication."""

    def __init__(self, accounts: Accounts) -> None:
        super().__init__()
        self.accounts = accounts

    def login(self, username: str, password: str, kind: str = "session") -> defer.Deferred[Session]:  # type: ignore[override]
        return self.accounts.login(username, password, kind)

    def logout(self, token: str) -> defer.Deferred[None]:
        return self.accounts.logout(token)

    def authenticate(self, token: str) -> defer.Deferred[Session | None]:
        return self.accounts.authenticate(token)


class _WebCase(SynchronousTestCase):
    """Requests through StubTreq to a WebAPI (and the GUI) on a Clock."""

    clock: Clock
    api: WebAPI
    stub: StubTreq

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)

    def mount(self, center: FakeControlCenter) -> None:
        self.center = center
        self.api = WebAPI(center, self.clock)
        self.stub = StubTreq(site_root(self.api.resource(), GuiPages(center).resource()))

    def request(self, method: str, path: str, *, stub: StubTreq | None = None, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> Result:
        stub = stub or self.stub
        d = stub.request(method, BASE + path, headers=headers or {}, data=data, allow_redirects=False)
        stub.flush()
        response = self.successResultOf(d)
        return Result(response.code, self.successResultOf(response.content()), response)

    def post_json(self, path: str, body: Any, *, stub: StubTreq | None = None,
                  headers: dict[str, str] | None = None) -> Result:
        return self.request("POST", path, stub=stub, data=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json", **(headers or {})})


class DeepBodyTests(_WebCase):
    """Every route that takes a JSON body refuses one nested too deeply with 400, never 500."""

    def setUp(self) -> None:
        super().setUp()
        self.mount(FakeControlCenter())
        self.admin = self.successResultOf(self.center.login("admin", PASSWORD, "api")).token

    def _body_routes(self) -> list[tuple[str, str]]:
        """(method, path) of every POST and PUT route of the API, with its parts filled in."""
        values = {"pid": "demo", "command": "start", "did": "STS", "agent": "STS", "cid": "sts-default",
                  "name": "demo", "alarm_id": 1, "system": "STS", "entry": 1, "n": 1,
                  "action": "pause"}
        adapter = WebAPI.app.url_map.bind("ecs.test")
        routes = []
        for rule in WebAPI.app.url_map.iter_rules():
            for method in sorted((rule.methods or set()) & {"POST", "PUT"}):
                args = {a: values[a] for a in rule.arguments}
                routes.append((method, adapter.build(rule.endpoint, args, method=method)))
        return routes

    def test_every_json_route(self) -> None:
        """Nested 40 deep (parsed, then refused) or 100,000 deep (the parser's RecursionError): 400 naming it."""
        routes = self._body_routes()
        self.assertGreater(len(routes), 15)
        too_deep = b"[" * 100_000 + b"]" * 100_000
        nested: Any = "x"
        for _ in range(MAX_DEPTH + 8):
            nested = [nested]
        for body in (json.dumps({"username": nested, "tag": nested}).encode(), too_deep):
            for method, path in routes:
                r = self.request(method, path, data=body, headers={
                    "Content-Type": "application/json", "Authorization": f"Bearer {self.admin}"})
                self.assertEqual(r.code, 400, f"{method} {path}: {r.body[:200]!r}")
                self.assertEqual(r.json["error"], "bad_request", path)
                self.assertIn("nested deeper", r.json["reason"], path)

    def test_nesting_within_the_limit_is_read(self) -> None:
        """A body nested to the limit reaches the field checks (which name the field)."""
        nested: Any = "x"
        for _ in range(MAX_DEPTH - 1):
            nested = [nested]
        r = self.post_json("/api/login", {"username": nested, "password": "p"})
        self.assertEqual((r.code, r.json.get("field")), (400, "username"))

    def test_too_large(self) -> None:
        """A body over the limit is refused before it is parsed (413 naming the limit)."""
        r = self.request("POST", "/api/login", data=b"[" * (self.api.max_body + 10),
                         headers={"Content-Type": "application/json"})
        self.assertEqual((r.code, r.json["error"]), (413, "too_large"))


class StaticPathTests(_WebCase):
    """/static/ paths no asset can have: 400 or 404, never 500."""

    def setUp(self) -> None:
        super().setUp()
        self.mount(FakeControlCenter())

    def test_unservable_names(self) -> None:
        """NUL bytes, control characters, 5,000-character names, traversal."""
        for path, expected in (
            ("/static/a%00b.js", 400),
            ("/static/%00", 400),
            ("/static/ecs.js%00.png", 400),
            ("/static/" + "a" * 5000, 400),
            ("/static/" + "a/" * 2500, 400),
            ("/static/%01%02", 400),
            ("/static/%ff%fe.js", 400),
            ("/static/../base.html", 404),
            ("/static/%2e%2e/%2e%2e/etc/passwd", 404),
            ("/static/nope.js", 404),
        ):
            r = self.request("GET", path)
            if r.code == 308:  # the router merges '//' first
                r = self.request("GET", r.header("Location")[0].removeprefix(BASE))
            self.assertEqual(r.code, expected, path[:60])

    def test_real_asset_still_served(self) -> None:
        """The check lets real assets through."""
        r = self.request("GET", "/static/ecs.js")
        self.assertEqual(r.code, 200)
        self.assertIn(b"window.ECS", r.body)


class LimiterTests(SynchronousTestCase):
    """L{LoginLimiter}: slows guessing, never locks the real user out."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.limiter = LoginLimiter(self.clock)

    def fail(self, user: str, address: str) -> None:
        self.assertIsNone(self.limiter.attempt(user, address))  # counted as failed until told otherwise

    def test_backoff_grows_per_user_and_address(self) -> None:
        """Three free failures, then 1, 2, 4, 8 ... s, at most five minutes."""
        for _ in range(3):
            self.fail("op", "10.0.0.1")
        waits = []
        for _ in range(12):
            wait = self.limiter.attempt("op", "10.0.0.1")
            assert wait is not None
            waits.append(wait[0])
            self.assertIn("this user from this address", wait[1])
            self.clock.advance(wait[0])
            self.fail("op", "10.0.0.1")
        self.assertEqual(waits[:6], [1, 2, 4, 8, 16, 32])
        self.assertEqual(max(waits), 300)

    def test_other_address_gets_in(self) -> None:
        """However long one address backs off, the user at another address is not slowed."""
        for _ in range(40):
            self.clock.advance(400)
            self.limiter.attempt("op", "10.6.6.6")
        self.assertIsNotNone(self.limiter.retry_after("op", "10.6.6.6"))
        self.assertIsNone(self.limiter.attempt("op", "10.0.0.2"))
        self.limiter.succeeded("op", "10.0.0.2")
        self.assertIsNone(self.limiter.retry_after("op", "10.0.0.2"))

    def test_success_starts_again(self) -> None:
        """The right password resets the pair's back-off."""
        for _ in range(3):
            self.fail("op", "a")
        self.clock.advance(1)
        self.assertIsNone(self.limiter.attempt("op", "a"))
        self.limiter.succeeded("op", "a")
        for _ in range(3):
            self.fail("op", "a")
        wait = self.limiter.retry_after("op", "a")
        self.assertEqual(wait and wait[0], 1)

    def test_spread_over_addresses(self) -> None:
        """Failures from many addresses use up the user's allowance: a fresh address then waits a
        few seconds at most and gets in; an address the user logged in from before is not slowed."""
        self.assertIsNone(self.limiter.attempt("op", "home"))
        self.limiter.succeeded("op", "home")
        tried = 0
        for n in range(200):
            if self.limiter.attempt("op", f"10.1.{n // 250}.{n % 250}") is None:
                tried += 1
        self.assertEqual(tried, self.limiter.per_user)  # the rest were refused without a check
        wait = self.limiter.retry_after("op", "fresh")
        assert wait is not None
        self.assertLessEqual(wait[0], self.limiter.user_interval)
        self.assertIn("from elsewhere", wait[1])
        self.assertIsNone(self.limiter.retry_after("op", "home"))
        self.clock.advance(wait[0])
        self.assertIsNone(self.limiter.attempt("op", "fresh"))
        self.limiter.succeeded("op", "fresh")

    def test_guesses_per_minute_bounded(self) -> None:
        """An attacker with any number of addresses gets about one guess per user_interval."""
        guesses = 0
        for second in range(600):
            self.clock.advance(1)
            for n in range(5):
                if self.limiter.attempt("op", f"{second}.{n}") is None:
                    guesses += 1
        self.assertLessEqual(guesses, self.limiter.per_user + 600 / self.limiter.user_interval + 1)

    def test_per_address_window(self) -> None:
        """One address trying many names is slowed by its own window only."""
        for n in range(20):
            self.fail(f"user{n}", "10.9.9.9")
        wait = self.limiter.retry_after("someone", "10.9.9.9")
        self.assertEqual(wait and wait[1], "too many failed logins from this address")
        self.assertIsNone(self.limiter.retry_after("someone", "10.9.9.10"))

    def test_cancelled_does_not_count(self) -> None:
        """A try that ended without an answer on the password (database down) is taken back."""
        for _ in range(10):
            self.assertIsNone(self.limiter.attempt("op", "a"))
            self.limiter.cancelled("op", "a")
        self.assertIsNone(self.limiter.retry_after("op", "a"))

    def test_memory_bounded(self) -> None:
        """A flood of names and addresses keeps every table within max_keys."""
        limiter = LoginLimiter(self.clock, max_keys=100)
        for n in range(5000):
            limiter.attempt(f"user{n}", f"10.{n // 250}.{n % 250}.1")
            if n % 7 == 0:
                limiter.succeeded(f"user{n}", f"10.{n // 250}.{n % 250}.1")
        for table in (limiter._pairs, limiter._addresses, limiter._users, limiter._known):
            self.assertLessEqual(len(table), 100)

    def test_long_names_kept_short(self) -> None:
        """A megabyte user name is kept as a short digest, and still counted as itself."""
        huge = "x" * (1 << 20)
        for _ in range(3):
            self.fail(huge, "a")
        self.assertIsNotNone(self.limiter.retry_after(huge, "a"))
        self.assertIsNone(self.limiter.retry_after(huge + "y", "a"))
        self.assertLess(max(len(user) for user, _ in self.limiter._pairs), 100)

    def test_refused_tries_add_nothing(self) -> None:
        """Tries refused at the door (an address over its window) leave no entry behind, whatever the names."""
        for n in range(20):
            self.fail(f"user{n}", "10.9.9.9")
        for n in range(1000):
            self.assertIsNotNone(self.limiter.attempt(f"random{n}", "10.9.9.9"))
        self.assertEqual(len(self.limiter._users), 20)
        self.assertEqual(len(self.limiter._pairs), 20)


class ThrottledLoginRouteTests(_WebCase):
    """The login route: 429 too_many with Retry-After and 'try again in N s', the center not asked."""

    def setUp(self) -> None:
        super().setUp()
        self.mount(FakeControlCenter())

    def test_answer(self) -> None:
        """The fourth wrong try in a row is throttled; the answer says how long to wait."""
        for _ in range(3):
            self.assertEqual(self.post_json("/api/login", {"username": "operator", "password": "no"}).code, 401)
        r = self.post_json("/api/login", {"username": "operator", "password": PASSWORD})
        self.assertEqual(r.code, 429)
        self.assertEqual(r.header("Retry-After"), ["1"])
        self.assertEqual((r.json["error"], r.json["retry_after"]), ("too_many", 1))
        self.assertTrue(r.json["reason"].endswith("try again in 1 s"), r.json["reason"])
        self.assertEqual(self.center.logins, [])
        self.clock.advance(1)
        self.assertEqual(self.post_json("/api/login", {"username": "operator", "password": PASSWORD}).code, 200)


class TokenExpiryTests(SynchronousTestCase):
    """Sessions and API tokens expire on the clock; the settings say when."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)

    def test_api_token_expires_after_a_shift(self) -> None:
        """By default an API token lasts 8 hours."""
        accounts, _, _ = _accounts(self, self.clock)
        token = self.successResultOf(accounts.login("operator", PASSWORD, "api")).token
        self.clock.advance(8 * 3600 - 1)
        self.assertIsNotNone(self.successResultOf(accounts.authenticate(token)))
        self.clock.advance(1)
        self.assertIsNone(self.successResultOf(accounts.authenticate(token)))

    def test_last_use_recorded(self) -> None:
        """A token's last use is written at most once a minute."""
        accounts, store, _ = _accounts(self, self.clock)
        token = self.successResultOf(accounts.login("operator", PASSWORD, "api")).token
        used = lambda: self.successResultOf(store.tokens("operator"))[0].last_used  # noqa: E731
        self.clock.advance(30)
        self.successResultOf(accounts.authenticate(token))
        self.assertEqual(used(), T0)
        self.clock.advance(30)
        self.successResultOf(accounts.authenticate(token))
        self.assertEqual(used(), T0 + 60)

    def test_configured_lifetimes(self) -> None:
        """session_lifetime and token_lifetime as given."""
        accounts, store, _ = _accounts(self, self.clock, session_lifetime=100, token_lifetime=50)
        session = self.successResultOf(accounts.login("operator", PASSWORD, "session")).token
        api = self.successResultOf(accounts.login("operator", PASSWORD, "api")).token
        rows = {r.kind: r.expires for r in self.successResultOf(store.tokens("operator"))}
        self.assertEqual(rows, {"session": T0 + 100, "api": T0 + 50})
        self.clock.advance(50)
        self.assertIsNone(self.successResultOf(accounts.authenticate(api)))
        self.assertIsNotNone(self.successResultOf(accounts.authenticate(session)))
        self.clock.advance(50)
        self.assertIsNone(self.successResultOf(accounts.authenticate(session)))
        self.assertEqual(self.successResultOf(store.expire_tokens()), 2)

    def test_settings(self) -> None:
        """The accounts settings are read and checked (key path named)."""
        path = Path(self.mktemp())
        path.write_text("accounts:\n  single_session: false\n  token_lifetime: 3600\n")
        settings = load_settings(path)
        self.assertEqual((settings.single_session, settings.token_lifetime, settings.session_lifetime),
                         (False, 3600.0, 7 * 86400.0))
        path.write_text("accounts:\n  single_session: sometimes\n  token_lifetime: -1\n")
        error = self.assertRaises(ConfigError, load_settings, path)
        self.assertIn("accounts.single_session", str(error))
        self.assertIn("accounts.token_lifetime", str(error))
        self.assertTrue(load_settings().single_session)


class TokenCommandTests(TestCase):
    """C{ecs user tokens list|revoke} against the database a running ECA reads."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.state = Path(self.mktemp())
        self.state.mkdir()
        old = users.BCRYPT_ROUNDS
        users.BCRYPT_ROUNDS = 4
        self.addCleanup(setattr, users, "BCRYPT_ROUNDS", old)

    async def _eca(self) -> Accounts:
        store = await Store.open(self.state / "ecs.sqlite", reactor, self.clock, runner=inline_runner)
        self.addCleanup(store.close)
        for name in ("operator", "viewer"):
            await store.add_user(name, users.hash_password(PASSWORD), ["operator"])
        return Accounts(store, self.clock, InlinePasswords(), _Scopes(), _Audit())  # type: ignore[arg-type]

    async def run_tokens(self, *argv: str) -> tuple[int, str, str]:
        args = argparse.Namespace(name=argv[0], key_args=list(argv[1:]), state_dir=str(self.state))
        out, err = io.StringIO(), io.StringIO()
        code = await cli_user_tokens(reactor, args, out, err)
        return code, out.getvalue(), err.getvalue()

    async def test_list_and_revoke_take_effect_at_once(self) -> None:
        """A token revoked on the ECA host is refused at the running ECA's next request (no cache)."""
        accounts = await self._eca()
        api = await accounts.login("operator", PASSWORD, "api")
        other = await accounts.login("viewer", PASSWORD, "api")
        self.assertIsNotNone(await accounts.authenticate(api.token))
        code, out, _ = await self.run_tokens("list")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(lines[0].split()[:3], ["ID", "USER", "KIND"])
        self.assertEqual(sorted(line.split()[1] for line in lines[1:]), ["operator", "viewer"])
        self.assertIn("2027-01-15 08:00:00 UTC", out)  # created at T0
        self.assertIn("2027-01-15 16:00:00 UTC", out)  # expires 8 h later
        ident = users.token_hash(api.token)[:12]
        code, out, _ = await self.run_tokens("list", "operator")
        self.assertEqual([line.split()[0] for line in out.splitlines()[1:]], [ident])
        code, out, err = await self.run_tokens("revoke", ident)
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"token {ident} (api) of operator revoked", out)
        self.assertIsNone(await accounts.authenticate(api.token))
        self.assertIsNotNone(await accounts.authenticate(other.token))
        code, out, _ = await self.run_tokens("revoke", "viewer")
        self.assertEqual((code, out.strip()), (0, "1 token(s) of viewer revoked"))
        self.assertIsNone(await accounts.authenticate(other.token))

    async def test_refusals(self) -> None:
        """Unknown ids and names, and bad usage, say so with exit codes 1 and 2."""
        await self._eca()
        code, _, err = await self.run_tokens("revoke", "0123456789ab")
        self.assertEqual(code, 1)
        self.assertIn("no token 0123456789ab", err)
        code, _, err = await self.run_tokens("revoke", "nobody")
        self.assertEqual(code, 1)
        self.assertIn("no token and no user nobody", err)
        self.assertEqual((await self.run_tokens("revoke"))[0], 2)
        self.assertEqual((await self.run_tokens("drop", "x"))[0], 2)

    def test_parser(self) -> None:
        """The command line accepts C{ecs user tokens ...}."""
        from ecs.cli import build_parser

        args = build_parser().parse_args(["user", "tokens", "revoke", "abcdef012345", "--state-dir", "/x"])
        self.assertEqual((args.action, args.name, args.key_args, args.state_dir),
                         ("tokens", "revoke", ["abcdef012345"], "/x"))


class _CountingPasswords(InlinePasswords):
    """Inline hashing that counts the password checks."""

    checks = 0

    def check(self, password: str, password_hash: str) -> defer.Deferred[bool]:
        self.checks += 1
        return super().check(password, password_hash)


class UnknownNameTests(SynchronousTestCase):
    """A login with an unknown name costs a password check like a known one (timing tells nothing)."""

    def test_unknown_name_checks_a_password(self) -> None:
        clock = Clock()
        accounts, _, audit = _accounts(self, clock)
        counting = _CountingPasswords()
        accounts._passwords = counting
        for name in ("operator", "nobody", "nobody"):
            self.failureResultOf(accounts.login(name, "wrong password", "session"))
        self.assertEqual(counting.checks, 3)
        self.assertEqual([(r[0], r[3]) for r in audit.rows], [("operator", "refused"), ("nobody", "refused"),
                                                              ("nobody", "refused")])


class FileModeTests(SynchronousTestCase):
    """The state directory 0700; the database, its WAL and SHM files 0600."""

    def setUp(self) -> None:
        old = os.umask(0)  # a permissive umask must not leak into the modes
        self.addCleanup(os.umask, old)
        self.clock = Clock()
        self.opened = 0
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def _open(self, path: Path) -> Store:
        store = self.successResultOf(Store.open(path, self.clock, runner=inline_runner))
        self.opened += 1
        self.successResultOf(store.add_user(f"u{self.opened}", "x" * 60, ["viewer"]))  # writes: WAL and SHM exist
        return store

    def test_created_private(self) -> None:
        """A new state directory and database are private, WAL and SHM too."""
        state = Path(self.mktemp()) / "var"
        db = state / "ecs.sqlite"
        store = self._open(db)
        self.addCleanup(lambda: self.successResultOf(store.close()))
        self.assertEqual(_mode(state), 0o700)
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            self.assertTrue(path.exists(), path)
            self.assertEqual(_mode(path), 0o600, path)
        self.assertEqual([e for e in self.logged if e.get("log_level") and e["log_level"].name == "warn"], [])

    def test_wider_modes_fixed_at_open(self) -> None:
        """Modes left wider (a restore, a copy) are tightened when the store opens, each with a WARN line."""
        state = Path(self.mktemp()) / "var"
        db = state / "ecs.sqlite"
        self.successResultOf(self._open(db).close())
        for path in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            path.write_bytes(b"")  # as a crash leaves them
        os.chmod(state, 0o755)
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            os.chmod(path, 0o644)
        store = self._open(db)
        self.addCleanup(lambda: self.successResultOf(store.close()))
        self.assertEqual(_mode(state), 0o700)
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            self.assertEqual(_mode(path), 0o600, path)
        warned = [e for e in self.logged if e.get("log_level") is not None and e["log_level"].name == "warn"
                  and "was mode" in e.get("log_format", "")]
        self.assertEqual(sorted(str(e["path"]) for e in warned),
                         sorted([str(state), str(db), f"{db}-wal", f"{db}-shm"]))

    def test_sticky_folder_left_alone(self) -> None:
        """A database put directly in a shared sticky folder does not change that folder."""
        shared = Path(self.mktemp())
        shared.mkdir()
        os.chmod(shared, 0o1777)
        store = self._open(shared / "ecs.sqlite")
        self.addCleanup(lambda: self.successResultOf(store.close()))
        self.assertEqual(stat.S_IMODE(shared.stat().st_mode), 0o1777)
        self.assertEqual(_mode(shared / "ecs.sqlite"), 0o600)


class OneSessionTests(_WebCase):
    """A new GUI login ends the user's older sessions and their streams, with the reason."""

    def setUp(self) -> None:
        super().setUp()

    def start(self, **options: Any) -> None:
        self.accounts, self.store, self.audit = _accounts(self, self.clock, **options)
        self.mount(AccountsCenter(self.accounts))

    def browser_login(self, name: str) -> tuple[StubTreq, str]:
        stub = StubTreq(site_root(self.api.resource(), GuiPages(self.center).resource()))
        r = self.post_json("/api/login", {"username": name, "password": PASSWORD}, stub=stub)
        self.assertEqual(r.code, 200, r.body)
        return stub, r.json["token"]

    def open_stream(self, stub: StubTreq) -> SSEReader:
        d = stub.get(BASE + "/api/events", unbuffered=True)
        stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        reader = SSEReader()
        response.deliverBody(reader)
        stub.flush()
        return reader

    def test_second_login_ends_the_first(self) -> None:
        """The old page's stream gets session_ended naming when and where, then closes; its cookie is
        refused with the same reason; the new session works; the audit row counts the ended session."""
        self.start()
        first, _ = self.browser_login("operator")
        reader = self.open_stream(first)
        self.clock.advance(60)
        second, _ = self.browser_login("operator")
        first.flush()
        events = reader.events()
        self.assertEqual([e["event"] for e in events], ["session_ended"])
        reason = events[0]["data"]["reason"]
        self.assertRegex(reason, r"^signed out: you signed in elsewhere at 2027-01-15 08:01:00 UTC from \S+$")
        self.assertIsNotNone(reader.lost)
        self.assertEqual(self.api.open_streams(), 0)
        r = self.request("GET", "/api/partitions", stub=first)
        self.assertEqual((r.code, r.json["reason"]), (401, reason))
        self.assertEqual(self.request("GET", "/api/partitions", stub=second).code, 200)
        self.assertIn(("operator", "login", {"kind": "session", "ended_sessions": 1}, "ok"), self.audit.rows)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_other_users_and_api_tokens_stay(self) -> None:
        """Another user's session and the user's own API token are not sessions of this login."""
        self.start()
        viewer, _ = self.browser_login("viewer")
        viewer_stream = self.open_stream(viewer)
        api = self.successResultOf(self.accounts.login("operator", PASSWORD, "api")).token
        self.browser_login("operator")
        self.browser_login("operator")
        self.assertEqual(self.request("GET", "/api/partitions", headers={"Authorization": f"Bearer {api}"}).code,
                         200)
        self.assertIsNone(viewer_stream.lost)
        self.assertEqual(self.request("GET", "/api/partitions", stub=viewer).code, 200)
        viewer_stream.hang_up()
        viewer.flush()

    def test_switched_off(self) -> None:
        """With single_session off both sessions and the first stream stay."""
        self.start(single_session=False)
        first, _ = self.browser_login("operator")
        reader = self.open_stream(first)
        second, _ = self.browser_login("operator")
        first.flush()
        self.assertEqual(reader.events(), [])
        self.assertIsNone(reader.lost)
        self.assertEqual(self.request("GET", "/api/partitions", stub=first).code, 200)
        self.assertEqual(self.request("GET", "/api/partitions", stub=second).code, 200)
        reader.hang_up()
        first.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])
