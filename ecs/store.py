# -*- test-case-name: tests.test_store -*-
"""
The ECA's database: L{Store} is the only way to it.

One SQLite file (by convention C{<state dir>/ecs.sqlite}, see
L{database_path}) holds partitions, detectors, global systems,
configurations (versioned), tags, users, roles, tokens, control ownership,
runs, the audit trail and log events.

How it is used::

    store = await Store.open(database_path(state_dir), reactor)
    await store.add_partition("p1")
    row = await store.take_control("p1", "alice")
    ...
    await store.close()

Rules the module keeps (and its tests check):

  - B{One worker.}  Every statement runs on the single thread of a
    L{twisted.enterprise.adbapi.ConnectionPool} with one connection; the
    reactor never waits on SQL.  Every public method returns a L{Deferred}.
  - B{Atomic.}  Every operation is one transaction (C{BEGIN IMMEDIATE} for
    writes, so another process writing the same file waits up to
    L{BUSY_TIMEOUT_MS} instead of failing half-way); an exception rolls the
    whole operation back.
  - B{Errors propagate} as failed Deferreds of L{StoreError} with a
    C{.code} (L{CODES}) and a C{.reason} naming the item.  No C{sqlite3}
    exception reaches a caller: integrity errors become C{conflict}, other
    database errors C{unavailable}.
  - B{Plain values.}  Results are frozen dataclasses, lists and dicts, never
    cursors or rows.
  - B{Bound parameters.}  Values are never formatted into SQL; names are
    checked against L{NAME_RE} (L{check_name}) before any SQL runs.
  - B{Versioned schema.}  L{UPGRADES} maps each version to its statements;
    L{Store.open} applies the missing ones in order, one transaction per
    version, and refuses a database newer than L{SCHEMA_VERSION}.

Choices worth knowing:

  - Deleting a configuration marks it deleted (it disappears from
    L{Store.configs} and L{Store.config} without a version); every version
    stays readable with L{Store.config}C{(id, version)} and
    L{Store.config_versions}, and saving the same id again continues the
    version numbers, so a (config id, version) pair always means one
    parameter set.  Runs also keep a full snapshot of their parameters.
  - Detector types are not stored here (they come from
    C{etc/subsystems.yaml}); the caller validates them.
  - A detector id may not also be a global system id (configurations and
    tags are keyed by system id).
  - The last admin cannot be deleted or lose the admin role.
  - Deleting a user removes their roles, tokens and control ownership;
    runs and audit entries keep the name as text.
  - Timestamps are POSIX seconds from the injected clock.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import (
    Any,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    ParamSpec,
    Sequence,
    TypeVar,
)

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ecs.logs import LEVELS as LOG_LEVELS

__all__ = [
    "ANY",
    "CODES",
    "ECS_SCOPE",
    "LOG_LEVELS",
    "ROLES",
    "SCHEMA_VERSION",
    "UPGRADES",
    "AuditRow",
    "ConfigRow",
    "ControlRow",
    "DetectorRow",
    "LogEntry",
    "LogRow",
    "PartitionRow",
    "RunRow",
    "Store",
    "StoreError",
    "TagRow",
    "TokenRow",
    "UserRow",
    "check_name",
    "database_path",
]

DATABASE_NAME = "ecs.sqlite"
BUSY_TIMEOUT_MS = 10_000

CODES = ("not_found", "conflict", "bad_request", "unavailable")
"""
The values of L{StoreError.code}: an unknown item, a clash with what is
stored (duplicate, still referenced, held by someone else), an invalid
argument, and a database that cannot be used (I/O error, locked for too
long, not an ECS database, schema newer than this code, store closed).
"""

ROLES = ("viewer", "operator", "expert", "admin")
"""User roles, weakest first: each role includes the ones before it."""

TOKEN_KINDS = ("session", "api")

ECS_SCOPE = "ecs"
"""The control scope of the whole ECS (the others are partition ids)."""

NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
LONG_NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
_TOKEN_HASH_RE = re.compile(r"[0-9a-f]{64}")
_TEXT_MAX = 10_000
_LIMIT_MAX = 100_000

P = ParamSpec("P")
T = TypeVar("T")


# ---------------------------------------------------------------------------
# Schema


def _v1() -> list[str]:
    roles = ", ".join(f"'{r}'" for r in ROLES)  # constants, not user values
    kinds = ", ".join(f"'{k}'" for k in TOKEN_KINDS)
    return [
        """CREATE TABLE partitions (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL)""",
        # No ON DELETE action: delete_partition moves or refuses explicitly.
        """CREATE TABLE detectors (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            partition TEXT REFERENCES partitions(id),
            created REAL NOT NULL)""",
        "CREATE INDEX detectors_by_partition ON detectors(partition)",
        "CREATE TABLE global_systems (id TEXT PRIMARY KEY)",
        # One row per configuration id: its system (fixed) and deletion mark.
        """CREATE TABLE configurations (
            config_id TEXT PRIMARY KEY,
            system TEXT NOT NULL,
            deleted REAL,
            UNIQUE (config_id, system))""",
        "CREATE INDEX configurations_by_system ON configurations(system)",
        """CREATE TABLE configuration_versions (
            config_id TEXT NOT NULL REFERENCES configurations(config_id),
            version INTEGER NOT NULL CHECK (version >= 1),
            parameters TEXT NOT NULL,
            created REAL NOT NULL,
            author TEXT NOT NULL,
            PRIMARY KEY (config_id, version))""",
        """CREATE TABLE tags (
            name TEXT PRIMARY KEY,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            author TEXT NOT NULL)""",
        # The system is copied into the member row (and kept equal to the
        # configuration's by the composite foreign key) so that a unique
        # index can hold a tag to one configuration per system.
        """CREATE TABLE tag_members (
            tag TEXT NOT NULL REFERENCES tags(name) ON DELETE CASCADE,
            config_id TEXT NOT NULL,
            system TEXT NOT NULL,
            PRIMARY KEY (tag, config_id),
            FOREIGN KEY (config_id, system)
                REFERENCES configurations(config_id, system))""",
        "CREATE UNIQUE INDEX tag_members_one_per_system ON tag_members(tag, system)",
        "CREATE INDEX tag_members_by_config ON tag_members(config_id, system)",
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created REAL NOT NULL)""",
        f"""CREATE TABLE user_roles (
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ({roles})),
            PRIMARY KEY (user, role))""",
        f"""CREATE TABLE tokens (
            token_hash TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ({kinds})),
            created REAL NOT NULL,
            last_used REAL NOT NULL,
            expires REAL)""",
        "CREATE INDEX tokens_by_user ON tokens(user)",
        """CREATE TABLE control (
            scope TEXT PRIMARY KEY,
            holder TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            since REAL NOT NULL,
            last_activity REAL NOT NULL)""",
        "CREATE INDEX control_by_holder ON control(holder)",
        # Runs outlive partitions and users: plain text, no foreign keys.
        """CREATE TABLE runs (
            number INTEGER PRIMARY KEY,
            partition TEXT NOT NULL,
            tag TEXT,
            configs TEXT NOT NULL,
            operator TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,
            outcome TEXT,
            CHECK ((ended IS NULL) = (outcome IS NULL)))""",
        "CREATE UNIQUE INDEX runs_one_open ON runs(partition) WHERE ended IS NULL",
        "CREATE INDEX runs_by_partition ON runs(partition, number)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            arguments TEXT NOT NULL,
            outcome TEXT NOT NULL)""",
        "CREATE INDEX audit_by_user ON audit(user, id)",
        "CREATE INDEX audit_by_action ON audit(action, id)",
        """CREATE TABLE logs (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            partition TEXT,
            level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 4),
            source TEXT NOT NULL,
            message TEXT NOT NULL)""",
        "CREATE INDEX logs_by_time ON logs(time)",
        "CREATE INDEX logs_by_partition ON logs(partition, time)",
    ]


SCHEMA_VERSION = 1
"""The schema version this code reads and writes."""

UPGRADES: dict[int, list[str]] = {1: _v1()}
"""
The statements that bring a database from version C{n - 1} to C{n}, for
each C{n} from 1 to L{SCHEMA_VERSION}.  Each version is applied in one
transaction.  Add a version by adding an entry; never edit a shipped one.
"""

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL)"""


def database_path(state_dir: str | Path) -> Path:
    """The database of the ECA whose state directory is C{state_dir}."""
    return Path(state_dir) / DATABASE_NAME


# ---------------------------------------------------------------------------
# Errors, names and results


class StoreError(Exception):
    """
    A store operation failed.

    @ivar code: one of L{CODES}.
    @ivar reason: what went wrong, naming the item.
    @ivar holder: for a refused L{Store.take_control}, the current holder.
    @ivar since: for a refused L{Store.take_control}, when they took it.
    """

    def __init__(
        self, code: str, reason: str, *, holder: str | None = None, since: float | None = None
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown StoreError code {code!r}")
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.holder = holder
        self.since = since

    def __repr__(self) -> str:
        return f"StoreError({self.code!r}, {self.reason!r})"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(value: object, what: str, long: bool = False) -> str:
    """
    Return C{value} if it is a valid name (L{NAME_RE}; L{LONG_NAME_RE}, up to
    200 characters, when C{long}), else raise C{StoreError("bad_request")}.
    """
    pattern = LONG_NAME_RE if long else NAME_RE
    if not isinstance(value, str) or not pattern.fullmatch(value):
        limit = 200 if long else 128
        raise StoreError(
            "bad_request",
            f"invalid {what} {_show(value)}: use 1 to {limit} letters, digits or _ . : @ -",
        )
    return value


def _check_text(value: object, what: str, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > _TEXT_MAX or (not value and not empty):
        raise StoreError("bad_request", f"invalid {what} {_show(value)}")
    return value


def _check_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StoreError("bad_request", f"invalid {what} {_show(value)}: a finite number is needed")
    return float(value)


def _check_int(value: object, what: str, low: int = 1, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"from {low}" + (f" to {high}" if high is not None else "")
        raise StoreError("bad_request", f"invalid {what} {_show(value)}: an integer {bounds} is needed")
    return value


def _to_json(value: object, what: str) -> str:
    if not isinstance(value, Mapping):
        raise StoreError("bad_request", f"{what} must be a JSON object, not {type(value).__name__}")
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise StoreError("bad_request", f"{what} is not valid JSON: {e}") from None


def _check_roles(roles: object) -> tuple[str, ...]:
    if isinstance(roles, str) or not isinstance(roles, Iterable):
        raise StoreError("bad_request", f"roles must be a list of {', '.join(ROLES)}, not {_show(roles)}")
    given = list(roles)
    unknown = [r for r in given if r not in ROLES]
    if unknown:
        raise StoreError(
            "bad_request", f"unknown roles {', '.join(map(_show, unknown))}: use {', '.join(ROLES)}"
        )
    if not given:
        raise StoreError("bad_request", "a user needs at least one role")
    return tuple(r for r in ROLES if r in given)


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds")


class _AnyType:
    """The type of L{ANY}."""

    def __repr__(self) -> str:
        return "ANY"


ANY = _AnyType()
"""For L{Store.detectors}: no filter on the partition."""


@dataclass(frozen=True, slots=True)
class PartitionRow:
    """A partition."""

    id: str
    created: float


@dataclass(frozen=True, slots=True)
class DetectorRow:
    """A detector and the partition it is assigned to (C{None}: unassigned)."""

    id: str
    type: str
    partition: str | None


@dataclass(frozen=True, slots=True)
class ConfigRow:
    """One version of a configuration: a parameter set for one system."""

    config_id: str
    version: int
    system: str
    parameters: dict[str, Any]
    created: float
    author: str

    def snapshot(self) -> dict[str, Any]:
        """The form stored in a run: C{{config_id, version, parameters}}."""
        return {"config_id": self.config_id, "version": self.version, "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class TagRow:
    """A tag: at most one configuration per system."""

    name: str
    configs: dict[str, str]
    created: float
    updated: float
    author: str


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user, with roles ordered weakest first (L{ROLES})."""

    name: str
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]
    created: float


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A bearer token (only its hash is stored)."""

    token_hash: str = field(repr=False)
    user: str
    kind: str
    created: float
    last_used: float
    expires: float | None


@dataclass(frozen=True, slots=True)
class ControlRow:
    """
    Who controls a scope (a partition id or L{ECS_SCOPE}).

    @ivar replaced: after a forced L{Store.take_control}, the holder it
        displaced; otherwise C{None}.
    """

    scope: str
    holder: str
    since: float
    last_activity: float
    replaced: str | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    """
    A run.  C{configs} is the snapshot C{{system: {config_id, version,
    parameters}}}; C{ended} and C{outcome} are C{None} while it is open.
    """

    number: int
    partition: str
    tag: str | None
    configs: dict[str, dict[str, Any]]
    operator: str
    started: float
    ended: float | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit-trail entry."""

    id: int
    time: float
    user: str
    action: str
    arguments: dict[str, Any]
    outcome: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A log event to store (L{Store.add_logs}); C{level} is one of L{LOG_LEVELS}."""

    time: float
    level: str
    source: str
    message: str
    partition: str | None = None


@dataclass(frozen=True, slots=True)
class LogRow:
    """A stored log event."""

    id: int
    time: float
    partition: str | None
    level: str
    source: str
    message: str


# ---------------------------------------------------------------------------
# Helpers run on the database thread

_Txn = Any  # an adbapi Transaction (a cursor wrapper)


def _one(txn: _Txn, sql: str, params: Sequence[Any] = ()) -> Any:
    txn.execute(sql, params)
    return txn.fetchone()


def _all(txn: _Txn, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    txn.execute(sql, params)
    return list(txn.fetchall())


def _exists(txn: _Txn, table: str, column: str, value: Any) -> bool:
    # table and column are constants of this module, never caller values.
    return _one(txn, f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)) is not None


_CONFIG_COLUMNS = "v.config_id, v.version, c.system, v.parameters, v.created, v.author"
_CONFIG_FROM = "configurations c JOIN configuration_versions v ON v.config_id = c.config_id"
_LATEST = "v.version = (SELECT MAX(version) FROM configuration_versions WHERE config_id = c.config_id)"


def _config_row(row: Sequence[Any]) -> ConfigRow:
    return ConfigRow(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])


def _user_row(txn: _Txn, row: Sequence[Any]) -> UserRow:
    roles = {r for (r,) in _all(txn, "SELECT role FROM user_roles WHERE user = ?", (row[0],))}
    return UserRow(row[0], row[1], tuple(r for r in ROLES if r in roles), row[2])


_RUN_COLUMNS = "number, partition, tag, configs, operator, started, ended, outcome"


def _run_row(row: Sequence[Any]) -> RunRow:
    return RunRow(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6], row[7])


def _tag_rows(txn: _Txn, where: str = "", params: Sequence[Any] = ()) -> list[TagRow]:
    tags = _all(txn, f"SELECT name, created, updated, author FROM tags {where} ORDER BY name", params)
    result = []
    for name, created, updated, author in tags:
        members = _all(
            txn, "SELECT system, config_id FROM tag_members WHERE tag = ? ORDER BY system", (name,)
        )
        result.append(TagRow(name, dict(members), created, updated, author))
    return result


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


def _on_connect(conn: sqlite3.Connection) -> None:
    """Set up each new connection (called by the pool on its thread)."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise


def _interaction(txn: _Txn, write: bool, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    # The connection is in autocommit mode (isolation_level=None): the
    # transaction is ours.  adbapi commits after fn returns and rolls back
    # if it raises.  IMMEDIATE takes the write lock first, so a write never
    # fails half-way because another process wrote in between.
    txn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    return fn(txn, *args)


def _deferred(f: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Deferred[T]]:
    """Make an C{async def} method return a L{Deferred}."""

    @wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return Deferred.fromCoroutine(f(*args, **kwargs))

    return wrapper


async def _run(
    pool: adbapi.ConnectionPool, write: bool, fn: Callable[..., T], *args: Any, what: str
) -> T:
    """Run C{fn(txn, *args)} in one transaction, translating database errors."""
    try:
        result: T = await pool.runInteraction(_interaction, write, fn, args)
    except sqlite3.IntegrityError as e:
        raise StoreError("conflict", f"{what}: {e}") from e
    except sqlite3.Error as e:
        raise StoreError("unavailable", f"{what}: database error: {e}") from e
    return result


def _make_pool(path: Path, reactor: Any) -> adbapi.ConnectionPool:
    return adbapi.ConnectionPool(
        "sqlite3",
        str(path),
        check_same_thread=False,
        isolation_level=None,
        timeout=BUSY_TIMEOUT_MS / 1000,
        cp_min=1,
        cp_max=1,
        cp_openfun=_on_connect,
        cp_reactor=reactor,
        cp_noisy=False,
    )


def _read_version(txn: _Txn) -> int:
    txn.execute(_VERSION_TABLE)
    txn.execute("INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING")
    return int(_one(txn, "SELECT version FROM schema_version WHERE id = 1")[0])


def _too_new(path: Path, found: int) -> StoreError:
    return StoreError(
        "unavailable",
        f"database {path} has schema version {found}, newer than this ECS supports "
        f"(version {SCHEMA_VERSION}): use a newer ECS",
    )


def _upgrade_step(txn: _Txn, path: Path, target: int) -> None:
    current = _read_version(txn)
    if current >= target:
        return  # another process got there first
    if current != target - 1:
        raise StoreError("unavailable", f"database {path}: cannot upgrade from {current} to {target}")
    for statement in UPGRADES[target]:
        txn.execute(statement)
    txn.execute("UPDATE schema_version SET version = ? WHERE id = 1", (target,))


async def _migrate(pool: adbapi.ConnectionPool, path: Path) -> tuple[int, int]:
    old = await _run(pool, True, _read_version, what=f"open {path}")
    if old > SCHEMA_VERSION:
        raise _too_new(path, old)
    for target in range(old + 1, SCHEMA_VERSION + 1):
        await _run(pool, True, _upgrade_step, path, target, what=f"upgrade {path} to {target}")
    return old, SCHEMA_VERSION


# ---------------------------------------------------------------------------
# The store


class Store:
    """
    The ECA's database.  Create it with L{Store.open}; every method returns
    a L{Deferred} and fails with L{StoreError}.

    @ivar path: the database file.
    @ivar reactor: the reactor it was opened with (for callers that offload
        other work, such as password hashing, to its thread pool).
    @ivar upgraded_from: the schema version found when it was opened (0 for
        a new file).
    """

    def __init__(
        self,
        pool: adbapi.ConnectionPool,
        path: Path,
        reactor: Any,
        clock: IReactorTime,
        upgraded_from: int,
    ) -> None:
        self._pool = pool
        self.reactor = reactor
        self._clock = clock
        self._closed = False
        self.path = path
        self.upgraded_from = upgraded_from

    # -- opening and closing -------------------------------------------------

    @classmethod
    def open(
        cls, path: str | Path, reactor: Any, clock: IReactorTime | None = None
    ) -> Deferred[Store]:
        """
        Open (creating it and its folders if needed) the database at
        C{path}, bringing its schema up to L{SCHEMA_VERSION}.

        @param reactor: runs the pool's thread and delivers results.
        @param clock: the source of timestamps (default: C{reactor}).
        """
        return Deferred.fromCoroutine(cls._open(Path(path), reactor, clock or reactor))

    @classmethod
    async def _open(cls, path: Path, reactor: Any, clock: IReactorTime) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError("unavailable", f"cannot create {path.parent}: {e}") from e
        pool = _make_pool(path, reactor)
        try:
            old, _ = await _migrate(pool, path)
        except BaseException:
            pool.close()
            raise
        return cls(pool, path, reactor, clock, old)

    @classmethod
    def upgrade(cls, path: str | Path, reactor: Any) -> Deferred[tuple[int, int]]:
        """
        Bring the database at C{path} to L{SCHEMA_VERSION} and close it
        (C{ecs db upgrade}); fires with C{(old version, new version)}.
        """

        async def upgrade() -> tuple[int, int]:
            store = await cls.open(path, reactor)
            await store.close()
            return store.upgraded_from, SCHEMA_VERSION

        return Deferred.fromCoroutine(upgrade())

    @_deferred
    async def close(self) -> None:
        """Finish the queued operations and close the database."""
        if self._closed:
            return
        self._closed = True
        try:
            # The pool's one thread runs jobs in order: once this no-op is
            # done, everything queued before it is.
            await self._pool.runInteraction(lambda txn: None)
        except Exception:
            pass
        self._pool.close()

    def _now(self) -> float:
        return float(self._clock.seconds())

    async def _write(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        if self._closed:
            raise StoreError("unavailable", f"{what}: the store is closed")
        return await _run(self._pool, True, fn, *args, what=what)

    async def _read(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        if self._closed:
            raise StoreError("unavailable", f"{what}: the store is closed")
        return await _run(self._pool, False, fn, *args, what=what)

    # -- partitions ------------------------------------------------------------

    @_deferred
    async def add_partition(self, partition_id: str) -> PartitionRow:
        """Create a partition; C{conflict} if it exists."""
        check_name(partition_id, "partition id")
        if partition_id == ECS_SCOPE:
            raise StoreError("bad_request", f"{ECS_SCOPE!r} is reserved and cannot name a partition")
        now = self._now()

        def op(txn: _Txn) -> PartitionRow:
            if _exists(txn, "partitions", "id", partition_id):
                raise StoreError("conflict", f"partition {partition_id} already exists")
            txn.execute("INSERT INTO partitions (id, created) VALUES (?, ?)", (partition_id, now))
            return PartitionRow(partition_id, now)

        return await self._write(op, what=f"add partition {partition_id}")

    @_deferred
    async def delete_partition(self, partition_id: str, unassign: bool = False) -> list[str]:
        """
        Delete a partition and its control ownership.  C{conflict} if it
        still has detectors, unless C{unassign}, which makes them unassigned
        in the same transaction; C{conflict} too while it has an open run.
        Fires with the ids of the detectors it had.
        """
        check_name(partition_id, "partition id")

        def op(txn: _Txn) -> list[str]:
            if not _exists(txn, "partitions", "id", partition_id):
                raise StoreError("not_found", f"no partition {partition_id}")
            run = _one(
                txn, "SELECT number FROM runs WHERE partition = ? AND ended IS NULL", (partition_id,)
            )
            if run is not None:
                raise StoreError("conflict", f"partition {partition_id} has run {run[0]} open")
            members = [
                d
                for (d,) in _all(
                    txn, "SELECT id FROM detectors WHERE partition = ? ORDER BY id", (partition_id,)
                )
            ]
            if members and not unassign:
                raise StoreError(
                    "conflict",
                    f"partition {partition_id} still has detectors {', '.join(members)}",
                )
            txn.execute("UPDATE detectors SET partition = NULL WHERE partition = ?", (partition_id,))
            txn.execute("DELETE FROM control WHERE scope = ?", (partition_id,))
            txn.execute("DELETE FROM partitions WHERE id = ?", (partition_id,))
            return members

        return await self._write(op, what=f"delete partition {partition_id}")

    @_deferred
    async def partitions(self) -> list[PartitionRow]:
        """All partitions, by id."""

        def op(txn: _Txn) -> list[PartitionRow]:
            return [PartitionRow(*r) for r in _all(txn, "SELECT id, created FROM partitions ORDER BY id")]

        return await self._read(op, what="list partitions")

    # -- detectors -------------------------------------------------------------

    @_deferred
    async def add_detector(
        self, detector_id: str, type: str, partition: str | None = None
    ) -> DetectorRow:
        """
        Create a detector of C{type} (validated by the caller against
        C{etc/subsystems.yaml}), assigned to C{partition} or unassigned.
        """
        check_name(detector_id, "detector id")
        check_name(type, "detector type")
        if partition is not None:
            check_name(partition, "partition id")
        now = self._now()

        def op(txn: _Txn) -> DetectorRow:
            if _exists(txn, "detectors", "id", detector_id):
                raise StoreError("conflict", f"detector {detector_id} already exists")
            if _exists(txn, "global_systems", "id", detector_id):
                raise StoreError("conflict", f"{detector_id} is a global system")
            if partition is not None and not _exists(txn, "partitions", "id", partition):
                raise StoreError("not_found", f"no partition {partition}")
            txn.execute(
                "INSERT INTO detectors (id, type, partition, created) VALUES (?, ?, ?, ?)",
                (detector_id, type, partition, now),
            )
            return DetectorRow(detector_id, type, partition)

        return await self._write(op, what=f"add detector {detector_id}")

    @_deferred
    async def delete_detector(self, detector_id: str) -> DetectorRow:
        """Delete a detector; fires with the deleted row (its partition included)."""
        check_name(detector_id, "detector id")

        def op(txn: _Txn) -> DetectorRow:
            row = _one(txn, "SELECT id, type, partition FROM detectors WHERE id = ?", (detector_id,))
            if row is None:
                raise StoreError("not_found", f"no detector {detector_id}")
            txn.execute("DELETE FROM detectors WHERE id = ?", (detector_id,))
            return DetectorRow(*row)

        return await self._write(op, what=f"delete detector {detector_id}")

    @_deferred
    async def detector(self, detector_id: str) -> DetectorRow | None:
        """One detector, or C{None} (also for a name no detector can have)."""
        if not isinstance(detector_id, str) or not NAME_RE.fullmatch(detector_id):
            return None

        def op(txn: _Txn) -> DetectorRow | None:
            row = _one(txn, "SELECT id, type, partition FROM detectors WHERE id = ?", (detector_id,))
            return None if row is None else DetectorRow(*row)

        return await self._read(op, what=f"read detector {detector_id}")

    @_deferred
    async def detectors(self, partition: str | None | _AnyType = ANY) -> list[DetectorRow]:
        """
        Detectors by id: all (L{ANY}), the unassigned ones (C{None}) or
        those of one partition.
        """
        if partition is not ANY and partition is not None:
            check_name(partition, "partition id")
        sql = "SELECT id, type, partition FROM detectors"
        params: tuple[Any, ...] = ()
        if partition is None:
            sql += " WHERE partition IS NULL"
        elif partition is not ANY:
            sql += " WHERE partition = ?"
            params = (partition,)

        def op(txn: _Txn) -> list[DetectorRow]:
            return [DetectorRow(*r) for r in _all(txn, sql + " ORDER BY id", params)]

        return await self._read(op, what="list detectors")

    @_deferred
    async def move_detector(self, detector_id: str, to: str | None) -> DetectorRow:
        """
        Assign a detector to partition C{to} (C{None}: unassigned); fires
        with the row as it was before.
        """
        check_name(detector_id, "detector id")
        if to is not None:
            check_name(to, "partition id")

        def op(txn: _Txn) -> DetectorRow:
            row = _one(txn, "SELECT id, type, partition FROM detectors WHERE id = ?", (detector_id,))
            if row is None:
                raise StoreError("not_found", f"no detector {detector_id}")
            if to is not None and not _exists(txn, "partitions", "id", to):
                raise StoreError("not_found", f"no partition {to}")
            txn.execute("UPDATE detectors SET partition = ? WHERE id = ?", (to, detector_id))
            return DetectorRow(*row)

        return await self._write(op, what=f"move detector {detector_id}")

    # -- global systems --------------------------------------------------------

    @_deferred
    async def set_global_systems(self, ids: Iterable[str]) -> list[str]:
        """Make the stored global systems exactly C{ids}; fires with them sorted."""
        if isinstance(ids, str) or not isinstance(ids, Iterable):
            raise StoreError("bad_request", f"global systems must be a list, not {_show(ids)}")
        wanted = sorted({check_name(i, "global system id") for i in ids})

        def op(txn: _Txn) -> list[str]:
            clashes = [i for i in wanted if _exists(txn, "detectors", "id", i)]
            if clashes:
                raise StoreError("conflict", f"{', '.join(clashes)} already named detectors")
            stored = {i for (i,) in _all(txn, "SELECT id FROM global_systems")}
            txn.executemany(
                "DELETE FROM global_systems WHERE id = ?", [(i,) for i in sorted(stored - set(wanted))]
            )
            txn.executemany(
                "INSERT INTO global_systems (id) VALUES (?)", [(i,) for i in wanted if i not in stored]
            )
            return wanted

        return await self._write(op, what="set global systems")

    @_deferred
    async def global_systems(self) -> list[str]:
        """The global system ids, sorted."""

        def op(txn: _Txn) -> list[str]:
            return [i for (i,) in _all(txn, "SELECT id FROM global_systems ORDER BY id")]

        return await self._read(op, what="list global systems")

    # -- configurations --------------------------------------------------------

    @_deferred
    async def save_config(
        self, config_id: str, system: str, parameters: Mapping[str, Any], author: str
    ) -> ConfigRow:
        """
        Save a new version of configuration C{config_id} (version 1 when
        new).  Its system cannot change (C{bad_request}).  Saving a deleted
        configuration revives it with the next version.
        """
        check_name(config_id, "configuration id", long=True)
        check_name(system, "system id")
        check_name(author, "author")
        text = _to_json(parameters, f"parameters of {config_id}")
        now = self._now()

        def op(txn: _Txn) -> ConfigRow:
            head = _one(
                txn, "SELECT system, deleted FROM configurations WHERE config_id = ?", (config_id,)
            )
            if head is None:
                txn.execute(
                    "INSERT INTO configurations (config_id, system) VALUES (?, ?)", (config_id, system)
                )
            elif head[0] != system:
                raise StoreError(
                    "bad_request",
                    f"configuration {config_id} is for system {head[0]}, not {system}",
                )
            elif head[1] is not None:
                txn.execute(
                    "UPDATE configurations SET deleted = NULL WHERE config_id = ?", (config_id,)
                )
            (version,) = _one(
                txn,
                "SELECT COALESCE(MAX(version), 0) + 1 FROM configuration_versions"
                " WHERE config_id = ?",
                (config_id,),
            )
            txn.execute(
                "INSERT INTO configuration_versions"
                " (config_id, version, parameters, created, author) VALUES (?, ?, ?, ?, ?)",
                (config_id, version, text, now, author),
            )
            return ConfigRow(config_id, version, system, json.loads(text), now, author)

        return await self._write(op, what=f"save configuration {config_id}")

    @_deferred
    async def config(self, config_id: str, version: int | None = None) -> ConfigRow:
        """
        Version C{version} of a configuration (also of a deleted one), or
        the latest version of a live one when C{version} is C{None}.
        """
        check_name(config_id, "configuration id", long=True)
        if version is not None:
            _check_int(version, "configuration version")

        def op(txn: _Txn) -> ConfigRow:
            if version is None:
                row = _one(
                    txn,
                    f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM}"
                    f" WHERE c.config_id = ? AND c.deleted IS NULL AND {_LATEST}",
                    (config_id,),
                )
                if row is None:
                    raise StoreError("not_found", f"no configuration {config_id}")
            else:
                row = _one(
                    txn,
                    f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM}"
                    " WHERE c.config_id = ? AND v.version = ?",
                    (config_id, version),
                )
                if row is None:
                    raise StoreError("not_found", f"no version {version} of configuration {config_id}")
            return _config_row(row)

        return await self._read(op, what=f"read configuration {config_id}")

    @_deferred
    async def config_versions(self, config_id: str) -> list[ConfigRow]:
        """Every version of a configuration (deleted ones too), oldest first."""
        check_name(config_id, "configuration id", long=True)

        def op(txn: _Txn) -> list[ConfigRow]:
            rows = _all(
                txn,
                f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM}"
                " WHERE c.config_id = ? ORDER BY v.version",
                (config_id,),
            )
            if not rows:
                raise StoreError("not_found", f"no configuration {config_id}")
            return [_config_row(r) for r in rows]

        return await self._read(op, what=f"list versions of configuration {config_id}")

    @_deferred
    async def configs(self, system: str | None = None) -> list[ConfigRow]:
        """The latest version of every live configuration (of one system), by id."""
        sql = f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM} WHERE c.deleted IS NULL AND {_LATEST}"
        params: tuple[Any, ...] = ()
        if system is not None:
            check_name(system, "system id")
            sql += " AND c.system = ?"
            params = (system,)

        def op(txn: _Txn) -> list[ConfigRow]:
            return [_config_row(r) for r in _all(txn, sql + " ORDER BY c.config_id", params)]

        return await self._read(op, what="list configurations")

    @_deferred
    async def delete_config(self, config_id: str) -> None:
        """
        Mark a configuration deleted; C{conflict} while a tag uses it.  Its
        versions stay readable by number (runs refer to them).
        """
        check_name(config_id, "configuration id", long=True)
        now = self._now()

        def op(txn: _Txn) -> None:
            head = _one(txn, "SELECT deleted FROM configurations WHERE config_id = ?", (config_id,))
            if head is None or head[0] is not None:
                raise StoreError("not_found", f"no configuration {config_id}")
            tags = [
                t
                for (t,) in _all(
                    txn, "SELECT tag FROM tag_members WHERE config_id = ? ORDER BY tag", (config_id,)
                )
            ]
            if tags:
                raise StoreError(
                    "conflict", f"configuration {config_id} is used by tags {', '.join(tags)}"
                )
            txn.execute("UPDATE configurations SET deleted = ? WHERE config_id = ?", (now, config_id))

        await self._write(op, what=f"delete configuration {config_id}")

    # -- tags ------------------------------------------------------------------

    @_deferred
    async def save_tag(self, name: str, config_ids: Iterable[str], author: str) -> TagRow:
        """
        Create tag C{name}, or replace its configurations, atomically.
        C{bad_request} names the unknown ids and the ids that share a system.
        """
        check_name(name, "tag name", long=True)
        check_name(author, "author")
        if isinstance(config_ids, str) or not isinstance(config_ids, Iterable):
            raise StoreError("bad_request", f"configurations of tag {name} must be a list")
        ids = [check_name(c, "configuration id", long=True) for c in config_ids]
        if not ids:
            raise StoreError("bad_request", f"tag {name} needs at least one configuration")
        twice = sorted({c for c in ids if ids.count(c) > 1})
        if twice:
            raise StoreError("bad_request", f"tag {name}: configurations listed twice: {', '.join(twice)}")
        now = self._now()

        def op(txn: _Txn) -> TagRow:
            unknown = []
            by_system: dict[str, list[str]] = {}
            for c in ids:
                row = _one(
                    txn,
                    "SELECT system FROM configurations WHERE config_id = ? AND deleted IS NULL",
                    (c,),
                )
                if row is None:
                    unknown.append(c)
                else:
                    by_system.setdefault(row[0], []).append(c)
            problems = []
            if unknown:
                problems.append(f"unknown configurations {', '.join(unknown)}")
            for system, members in sorted(by_system.items()):
                if len(members) > 1:
                    problems.append(f"{', '.join(members)} are all for system {system}")
            if problems:
                raise StoreError("bad_request", f"tag {name}: " + "; ".join(problems))
            old = _one(txn, "SELECT created FROM tags WHERE name = ?", (name,))
            if old is None:
                created = now
                txn.execute(
                    "INSERT INTO tags (name, created, updated, author) VALUES (?, ?, ?, ?)",
                    (name, now, now, author),
                )
            else:
                created = old[0]
                txn.execute(
                    "UPDATE tags SET updated = ?, author = ? WHERE name = ?", (now, author, name)
                )
                txn.execute("DELETE FROM tag_members WHERE tag = ?", (name,))
            members = sorted((system, ms[0]) for system, ms in by_system.items())
            txn.executemany(
                "INSERT INTO tag_members (tag, config_id, system) VALUES (?, ?, ?)",
                [(name, c, s) for s, c in members],
            )
            return TagRow(name, dict(members), created, now, author)

        return await self._write(op, what=f"save tag {name}")

    @_deferred
    async def tag(self, name: str) -> TagRow:
        """One tag; C{not_found} if there is none."""
        check_name(name, "tag name", long=True)

        def op(txn: _Txn) -> TagRow:
            rows = _tag_rows(txn, "WHERE name = ?", (name,))
            if not rows:
                raise StoreError("not_found", f"no tag {name}")
            return rows[0]

        return await self._read(op, what=f"read tag {name}")

    @_deferred
    async def tags(self) -> list[TagRow]:
        """All tags, by name."""
        return await self._read(_tag_rows, what="list tags")

    @_deferred
    async def delete_tag(self, name: str) -> None:
        """Delete a tag (its configurations stay)."""
        check_name(name, "tag name", long=True)

        def op(txn: _Txn) -> None:
            if not _exists(txn, "tags", "name", name):
                raise StoreError("not_found", f"no tag {name}")
            txn.execute("DELETE FROM tag_members WHERE tag = ?", (name,))
            txn.execute("DELETE FROM tags WHERE name = ?", (name,))

        await self._write(op, what=f"delete tag {name}")

    @_deferred
    async def resolve_tag(self, name: str) -> dict[str, ConfigRow]:
        """The latest version of each configuration of a tag, by system."""
        check_name(name, "tag name", long=True)

        def op(txn: _Txn) -> dict[str, ConfigRow]:
            if not _exists(txn, "tags", "name", name):
                raise StoreError("not_found", f"no tag {name}")
            rows = _all(
                txn,
                f"SELECT {_CONFIG_COLUMNS} FROM tag_members m"
                " JOIN configurations c ON c.config_id = m.config_id"
                " JOIN configuration_versions v ON v.config_id = c.config_id"
                f" WHERE m.tag = ? AND {_LATEST} ORDER BY c.system",
                (name,),
            )
            return {r[2]: _config_row(r) for r in rows}

        return await self._read(op, what=f"resolve tag {name}")

    @_deferred
    async def compatibility(self, name: str, systems: Iterable[str]) -> dict[str, Any]:
        """
        Whether tag C{name} covers exactly C{systems} (a partition's
        detectors and the global systems): C{{"compatible": bool,
        "missing": [systems without a configuration], "extra": [systems
        of the tag not in C{systems}]}}.
        """
        if isinstance(systems, str) or not isinstance(systems, Iterable):
            raise StoreError("bad_request", f"systems must be a set of ids, not {_show(systems)}")
        wanted = {check_name(s, "system id") for s in systems}
        row = await self.tag(name)
        have = set(row.configs)
        missing, extra = sorted(wanted - have), sorted(have - wanted)
        return {"compatible": not missing and not extra, "missing": missing, "extra": extra}

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

    # -- runs --------------------------------------------------------------------

    @_deferred
    async def start_run(
        self,
        partition: str,
        tag: str | None,
        configs: Mapping[str, ConfigRow | Mapping[str, Any]],
        operator: str,
    ) -> RunRow:
        """
        Open the next run of C{partition}, recording the exact
        configurations (C{{system: ConfigRow}} or C{{system: {config_id,
        version, parameters}}}); C{conflict} while the partition has a run
        open.
        """
        check_name(partition, "partition id")
        if tag is not None:
            check_name(tag, "tag name", long=True)
        check_name(operator, "operator")
        snapshot = _snapshot(configs)
        text = json.dumps(snapshot, separators=(",", ":"))
        now = self._now()

        def op(txn: _Txn) -> RunRow:
            if not _exists(txn, "partitions", "id", partition):
                raise StoreError("not_found", f"no partition {partition}")
            run = _one(
                txn, "SELECT number FROM runs WHERE partition = ? AND ended IS NULL", (partition,)
            )
            if run is not None:
                raise StoreError("conflict", f"partition {partition} already has run {run[0]} open")
            (number,) = _one(txn, "SELECT COALESCE(MAX(number), 0) + 1 FROM runs")
            txn.execute(
                "INSERT INTO runs (number, partition, tag, configs, operator, started)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (number, partition, tag, text, operator, now),
            )
            return RunRow(number, partition, tag, json.loads(text), operator, now, None, None)

        return await self._write(op, what=f"start run of {partition}")

    @_deferred
    async def end_run(self, number: int, outcome: str) -> RunRow:
        """Close an open run with C{outcome} (e.g. C{stopped}, C{aborted})."""
        _check_int(number, "run number")
        check_name(outcome, "run outcome")
        now = self._now()

        def op(txn: _Txn) -> RunRow:
            row = _one(txn, f"SELECT {_RUN_COLUMNS} FROM runs WHERE number = ?", (number,))
            if row is None:
                raise StoreError("not_found", f"no run {number}")
            if row[6] is not None:
                raise StoreError("conflict", f"run {number} already ended ({row[7]})")
            txn.execute(
                "UPDATE runs SET ended = ?, outcome = ? WHERE number = ?", (now, outcome, number)
            )
            return _run_row(tuple(row[:6]) + (now, outcome))

        return await self._write(op, what=f"end run {number}")

    @_deferred
    async def run(self, number: int) -> RunRow:
        """One run; C{not_found} if there is none."""
        _check_int(number, "run number")

        def op(txn: _Txn) -> RunRow:
            row = _one(txn, f"SELECT {_RUN_COLUMNS} FROM runs WHERE number = ?", (number,))
            if row is None:
                raise StoreError("not_found", f"no run {number}")
            return _run_row(row)

        return await self._read(op, what=f"read run {number}")

    @_deferred
    async def open_run(self, partition: str) -> RunRow | None:
        """The open run of C{partition}, or C{None}."""
        check_name(partition, "partition id")

        def op(txn: _Txn) -> RunRow | None:
            row = _one(
                txn,
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE partition = ? AND ended IS NULL",
                (partition,),
            )
            return None if row is None else _run_row(row)

        return await self._read(op, what=f"read open run of {partition}")

    @_deferred
    async def runs(
        self, partition: str | None = None, limit: int = 100, before: int | None = None
    ) -> list[RunRow]:
        """Runs newest first: of one partition, numbered below C{before}, at most C{limit}."""
        _check_int(limit, "limit", 1, _LIMIT_MAX)
        where, params = [], []
        if partition is not None:
            where.append("partition = ?")
            params.append(check_name(partition, "partition id"))
        if before is not None:
            where.append("number < ?")
            params.append(_check_int(before, "run number"))
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY number DESC LIMIT ?"
        params.append(limit)

        def op(txn: _Txn) -> list[RunRow]:
            return [_run_row(r) for r in _all(txn, sql, params)]

        return await self._read(op, what="list runs")

    # -- audit trail ---------------------------------------------------------------

    @_deferred
    async def audit(
        self, user: str, action: str, arguments: Mapping[str, Any], outcome: str
    ) -> AuditRow:
        """
        Record that C{user} did C{action} with C{arguments} and C{outcome}.
        The user is free text (a failed login's name is recorded as given);
        arguments that are not JSON are recorded as their C{str}.
        """
        _check_text(user, "audit user", empty=True)
        _check_text(action, "audit action")
        _check_text(outcome, "audit outcome", empty=True)
        if not isinstance(arguments, Mapping):
            raise StoreError("bad_request", "audit arguments must be a mapping")
        text = json.dumps(dict(arguments), default=str, separators=(",", ":"))
        now = self._now()

        def op(txn: _Txn) -> AuditRow:
            txn.execute(
                "INSERT INTO audit (time, user, action, arguments, outcome) VALUES (?, ?, ?, ?, ?)",
                (now, user, action, text, outcome),
            )
            return AuditRow(int(txn.lastrowid), now, user, action, json.loads(text), outcome)

        return await self._write(op, what=f"audit {action}")

    @_deferred
    async def audit_entries(
        self,
        limit: int = 100,
        user: str | None = None,
        action: str | None = None,
        before: int | None = None,
    ) -> list[AuditRow]:
        """Audit entries newest first, by user or action, with id below C{before}."""
        _check_int(limit, "limit", 1, _LIMIT_MAX)
        where, params = [], []
        if user is not None:
            where.append("user = ?")
            params.append(_check_text(user, "audit user", empty=True))
        if action is not None:
            where.append("action = ?")
            params.append(_check_text(action, "audit action"))
        if before is not None:
            where.append("id < ?")
            params.append(_check_int(before, "audit id"))
        sql = "SELECT id, time, user, action, arguments, outcome FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)

        def op(txn: _Txn) -> list[AuditRow]:
            return [
                AuditRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in _all(txn, sql, params)
            ]

        return await self._read(op, what="list audit entries")

    # -- logs ------------------------------------------------------------------

    @_deferred
    async def add_logs(self, entries: Iterable[LogEntry]) -> int:
        """Store log events in one transaction; fires with how many."""
        rows = [_log_params(i, e) for i, e in enumerate(entries)]
        if not rows:
            return 0

        def op(txn: _Txn) -> int:
            txn.executemany(
                "INSERT INTO logs (time, partition, level, source, message) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            return len(rows)

        return await self._write(op, what=f"add {len(rows)} log events")

    @_deferred
    async def logs(
        self,
        partition: str | None = None,
        level: str | None = None,
        since: float | None = None,
        q: str | None = None,
        limit: int = 500,
    ) -> list[LogRow]:
        """
        Log events newest first: of one partition, at C{level} or above,
        at or after C{since}, whose message contains C{q} (plain text, no
        wildcards; ASCII case-insensitive), at most C{limit}.
        """
        _check_int(limit, "limit", 1, _LIMIT_MAX)
        where, params = [], []
        if partition is not None:
            where.append("partition = ?")
            params.append(check_name(partition, "partition id"))
        if level is not None:
            if level not in LOG_LEVELS:
                raise StoreError(
                    "bad_request", f"invalid log level {_show(level)}: use {', '.join(LOG_LEVELS)}"
                )
            where.append("level >= ?")
            params.append(LOG_LEVELS.index(level))
        if since is not None:
            where.append("time >= ?")
            params.append(_check_number(since, "since"))
        if q is not None:
            _check_text(q, "search text", empty=True)
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("message LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        sql = "SELECT id, time, partition, level, source, message FROM logs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC LIMIT ?"
        params.append(limit)

        def op(txn: _Txn) -> list[LogRow]:
            return [
                LogRow(r[0], r[1], r[2], LOG_LEVELS[r[3]], r[4], r[5]) for r in _all(txn, sql, params)
            ]

        return await self._read(op, what="list log events")

    @_deferred
    async def prune_logs(self, before: float) -> int:
        """Delete the log events older than C{before}; fires with how many."""
        cutoff = _check_number(before, "before")

        def op(txn: _Txn) -> int:
            txn.execute("DELETE FROM logs WHERE time < ?", (cutoff,))
            return int(txn.rowcount)

        return await self._write(op, what="prune log events")


def _snapshot(configs: object) -> dict[str, dict[str, Any]]:
    if not isinstance(configs, Mapping):
        raise StoreError("bad_request", "run configurations must be a mapping of system to configuration")
    result: dict[str, dict[str, Any]] = {}
    for system, value in configs.items():
        check_name(system, "system id")
        if isinstance(value, ConfigRow):
            value = value.snapshot()
        if not isinstance(value, Mapping) or set(value) != {"config_id", "version", "parameters"}:
            raise StoreError(
                "bad_request",
                f"configuration of {system} in a run needs exactly config_id, version and parameters",
            )
        check_name(value["config_id"], "configuration id", long=True)
        _check_int(value["version"], "configuration version")
        _to_json(value["parameters"], f"parameters of {value['config_id']}")
        result[system] = {
            "config_id": value["config_id"],
            "version": value["version"],
            "parameters": value["parameters"],
        }
    return result


def _log_params(index: int, entry: object) -> tuple[Any, ...]:
    if not isinstance(entry, LogEntry):
        raise StoreError("bad_request", f"log event {index} is not a LogEntry: {_show(entry)}")
    if entry.level not in LOG_LEVELS:
        raise StoreError("bad_request", f"log event {index}: invalid level {_show(entry.level)}")
    if entry.partition is not None:
        check_name(entry.partition, f"partition of log event {index}")
    if not isinstance(entry.source, str) or not isinstance(entry.message, str):
        raise StoreError("bad_request", f"log event {index}: source and message must be text")
    return (
        _check_number(entry.time, f"time of log event {index}"),
        entry.partition,
        LOG_LEVELS.index(entry.level),
        entry.source,
        entry.message,
    )
