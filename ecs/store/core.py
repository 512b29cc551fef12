# -*- test-case-name: tests.test_store -*-
"""
The L{Store} itself: opening (with the schema upgrades), closing, and the
read and write transactions every operation goes through.  The operations
of each area come from the mixins L{Store} combines: L{ecs.store.inventory},
L{ecs.store.configs}, L{ecs.store.accounts}, L{ecs.store.records} and
L{ecs.store.alarms}.

Where the transactions run is injected (L{IRunner}): by default the one
thread of an C{adbapi} pool with one connection (L{PoolRunner}); tests pass
L{InlineRunner}, which runs each transaction at once on the caller's
thread (as buildbot's C{NonThreadPool}), so they can run on a C{Clock}.

The database holds password hashes and tokens: its folder is created
0700 and the file 0600; an existing folder, database, WAL or SHM file with
a looser mode is tightened when the store opens, and the log says so.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ecs.store.accounts import AccountOperations
from ecs.store.alarms import AlarmOperations
from ecs.store.configs import ConfigOperations
from ecs.store.elog import ELogOperations
from ecs.store.errors import StoreError
from ecs.store.exclusions import ExclusionOperations
from ecs.store.inventory import InventoryOperations
from ecs.store.keys import KeyOperations
from ecs.store.placements import PlacementOperations
from ecs.store.records import RecordOperations

# SCHEMA_VERSION and UPGRADES are read from this module when a database is
# opened (tests patch them here).
from ecs.store.schema import SCHEMA_VERSION, UPGRADES, _read_version
from ecs.store.txn import IRunner, T, _deferred, _run, _Txn

DATABASE_NAME = "ecs.sqlite"
BUSY_TIMEOUT_MS = 10_000
#: While opening: a database another process holds locked (a second ECA on the
#: same state directory, a stuck backup) is refused after this long, so that
#: the ECA exits within seconds instead of waiting for BUSY_TIMEOUT_MS.
OPEN_BUSY_TIMEOUT_MS = 2_000
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600

_log = Logger()


def database_path(state_dir: str | Path) -> Path:
    """The database of the ECA whose state directory is C{state_dir}."""
    return Path(state_dir) / DATABASE_NAME


def _on_connect(conn: sqlite3.Connection) -> None:
    """Set up each new connection (called by the pool on its thread)."""
    try:
        # The short timeout of the opening; _migrate sets the normal one after.
        conn.execute(f"PRAGMA busy_timeout = {int(OPEN_BUSY_TIMEOUT_MS)}")
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise


def _make_pool(path: Path, reactor: Any) -> adbapi.ConnectionPool:
    """Today's default: one connection on one thread of the reactor's pool."""
    return adbapi.ConnectionPool(
        "sqlite3",
        str(path),
        check_same_thread=False,
        isolation_level=None,
        timeout=OPEN_BUSY_TIMEOUT_MS / 1000,
        cp_min=1,
        cp_max=1,
        cp_openfun=_on_connect,
        cp_reactor=reactor,
        cp_noisy=False,
    )


def PoolRunner(path: Path, reactor: Any) -> IRunner:
    """The default runner: an C{adbapi} pool of one connection on one thread."""
    return _make_pool(path, reactor)


class InlineRunner:
    """
    Runs each transaction at once on the caller's thread, on one connection
    (for tests: no thread, so a C{Clock} can drive everything; the Deferred
    it returns has already fired).  Blocks on SQL: never use it in an agent.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, timeout=OPEN_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
        _on_connect(self._conn)

    def runInteraction(self, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run C{interaction(cursor, *args)}; commit if it returns, roll back if it raises."""
        cursor = self._conn.cursor()
        try:
            result = interaction(cursor, *args)
            cursor.close()
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            return defer.fail()
        return defer.succeed(result)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def inline_runner(path: Path, reactor: Any) -> IRunner:
    """A runner factory for L{Store.open} (tests): L{InlineRunner}."""
    return InlineRunner(path)


RunnerFactory = Callable[[Path, Any], IRunner]


def _private_paths(path: Path) -> None:
    """
    Create the database folder 0700 and the database file 0600; tighten an
    existing folder, database, WAL or SHM file that is wider, with a WARN
    line (SQLite creates its WAL and SHM files with the database's mode).
    A sticky folder (C{/tmp}) is shared by design and left as it is.
    """
    if str(path) == ":memory:":
        return
    folder = path.parent
    try:
        folder.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError("unavailable", f"cannot create {folder}: {e}") from e
    folder_mode = folder.stat().st_mode
    if not folder_mode & stat.S_ISVTX:
        _tighten(folder, DIRECTORY_MODE, "state directory")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreError("unavailable", f"cannot create {path}: {e}") from e
    else:
        # Created empty with the right mode (whatever the umask): sqlite keeps
        # an existing file's mode.
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        _tighten(file, FILE_MODE, "database file")


def _tighten(path: Path, mode: int, what: str) -> None:
    """Give C{path} at most C{mode} (0600 or 0700), saying so when it was wider."""
    try:
        found = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not found & 0o077:
        return
    try:
        path.chmod(mode)
    except OSError as e:
        _log.warn("{what} {path} is mode {found:o} and could not be made {mode:o}: {error}",
                  what=what, path=str(path), found=found, mode=mode, error=e)
        return
    _log.warn("{what} {path} was mode {found:o}: made {mode:o} (it holds password hashes and tokens)",
              what=what, path=str(path), found=found, mode=mode)


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


async def _migrate(pool: IRunner, path: Path) -> tuple[int, int]:
    old = await _run(pool, True, _read_version, what=f"open {path}")
    if old > SCHEMA_VERSION:
        raise _too_new(path, old)
    for target in range(old + 1, SCHEMA_VERSION + 1):
        await _run(pool, True, _upgrade_step, path, target, what=f"upgrade {path} to {target}")
    await _run(pool, False, _normal_busy_timeout, what=f"open {path}")
    return old, SCHEMA_VERSION


def _normal_busy_timeout(txn: _Txn) -> None:
    """Once open, wait up to L{BUSY_TIMEOUT_MS} for a lock (a backup, C{ecs user} on the host)."""
    txn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")


class Store(
    InventoryOperations,
    ConfigOperations,
    AccountOperations,
    RecordOperations,
    PlacementOperations,
    KeyOperations,
    AlarmOperations,
    ExclusionOperations,
    ELogOperations,
):
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
        pool: IRunner,
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
        cls,
        path: str | Path,
        reactor: Any,
        clock: IReactorTime | None = None,
        runner: RunnerFactory = PoolRunner,
    ) -> Deferred[Store]:
        """
        Open (creating it and its folders if needed) the database at
        C{path}, bringing its schema up to L{SCHEMA_VERSION}.

        @param reactor: runs the pool's thread and delivers results.
        @param clock: the source of timestamps (default: C{reactor}).
        @param runner: makes the L{IRunner} from the path and the reactor
            (default L{PoolRunner}; tests: L{inline_runner}).
        """
        return Deferred.fromCoroutine(cls._open(Path(path), reactor, clock or reactor, runner))

    @classmethod
    async def _open(cls, path: Path, reactor: Any, clock: IReactorTime, runner: RunnerFactory) -> Store:
        _private_paths(path)
        try:
            pool = runner(path, reactor)
        except sqlite3.Error as e:
            raise StoreError("unavailable", f"cannot open {path}: {e}") from e
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
        except Exception as e:
            _log.warn("closing {path}: {error}", path=str(self.path), error=e)
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
