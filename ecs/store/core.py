# -*- test-case-name: tests.test_store -*-
"""
The L{Store} itself: opening (with the pool of one connection on one
thread, and the schema upgrades), closing, and the read and write
transactions every operation goes through.  The operations of each area
come from the mixins L{Store} combines: L{ecs.store.inventory},
L{ecs.store.configs}, L{ecs.store.accounts} and L{ecs.store.records}.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ecs.store.accounts import AccountOperations
from ecs.store.configs import ConfigOperations
from ecs.store.errors import StoreError
from ecs.store.inventory import InventoryOperations
from ecs.store.keys import KeyOperations
from ecs.store.placements import PlacementOperations
from ecs.store.records import RecordOperations

# SCHEMA_VERSION and UPGRADES are read from this module when a database is
# opened (tests patch them here).
from ecs.store.schema import SCHEMA_VERSION, UPGRADES, _read_version
from ecs.store.txn import T, _deferred, _run, _Txn

DATABASE_NAME = "ecs.sqlite"
BUSY_TIMEOUT_MS = 10_000


def database_path(state_dir: str | Path) -> Path:
    """The database of the ECA whose state directory is C{state_dir}."""
    return Path(state_dir) / DATABASE_NAME


def _on_connect(conn: sqlite3.Connection) -> None:
    """Set up each new connection (called by the pool on its thread)."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_MS)}")
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise


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


class Store(
    InventoryOperations,
    ConfigOperations,
    AccountOperations,
    RecordOperations,
    PlacementOperations,
    KeyOperations,
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
