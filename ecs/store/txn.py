# -*- test-case-name: tests.test_store -*-
"""
How operations run: every public method of L{ecs.store.Store} is an
C{async def} made to return a L{Deferred} (L{_deferred}), and its SQL is one
function run in one transaction on the pool's single thread (L{_run}), with
database errors translated into L{StoreError}.  Also the small query helpers
those functions use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred

from ecs.store.errors import StoreError

P = ParamSpec("P")
T = TypeVar("T")


_Txn = Any  # an adbapi Transaction (a cursor wrapper)


def _one(txn: _Txn, sql: str, params: Sequence[Any] = ()) -> Any:
    txn.execute(sql, params)
    return txn.fetchone()


def _all(txn: _Txn, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    txn.execute(sql, params)
    return list(txn.fetchall())


def _exists(txn: _Txn, table: str, column: str, value: Any) -> bool:
    # table and column are constants of the ecs.store modules, never caller values.
    return _one(txn, f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)) is not None  # noqa: S608 - constant names


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


class IRunner(Protocol):
    """
    Where the store's transactions run (L{ecs.store.core.Store.open}): by
    default the one thread of an C{adbapi} pool (L{ecs.store.core.PoolRunner});
    in tests, inline on the caller's thread (L{ecs.store.core.InlineRunner}).
    """

    def runInteraction(self, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run C{interaction(txn, *args)} in one transaction: committed if it returns, rolled back if it raises."""
        ...

    def close(self) -> None:
        """Close the connection (after the transactions already queued)."""
        ...


#: The SQLite result codes (their primary part) of a database that cannot be written.
_STORAGE_ERRORS = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN")
_STORAGE_TEXTS = ("disk is full", "readonly database", "read-only", "disk i/o error")


def storage_failure(error: sqlite3.Error) -> bool:
    """Whether C{error} says the database cannot be written (full, read-only, I/O), not that it is busy."""
    name = getattr(error, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith(_STORAGE_ERRORS):
        return True
    text = str(error).lower()
    return any(t in text for t in _STORAGE_TEXTS)


async def _run(runner: IRunner, write: bool, fn: Callable[..., T], *args: Any, what: str) -> T:
    """Run C{fn(txn, *args)} in one transaction, translating database errors."""
    try:
        result: T = await runner.runInteraction(_interaction, write, fn, args)
    except sqlite3.IntegrityError as e:
        raise StoreError("conflict", f"{what}: {e}") from e
    except sqlite3.Error as e:
        if storage_failure(e):
            raise StoreError("storage", f"{what}: the database cannot be written: {e}") from e
        raise StoreError("unavailable", f"{what}: database error: {e}") from e
    return result


class _StoreArea:
    """
    Base of the mixins that each add one area's operations to
    L{ecs.store.Store}.  They use only the clock and the two kinds of
    transaction, which L{ecs.store.core.Store} implements.
    """

    if TYPE_CHECKING:

        def _now(self) -> float: ...

        async def _write(self, fn: Callable[..., T], *args: Any, what: str) -> T: ...

        async def _read(self, fn: Callable[..., T], *args: Any, what: str) -> T: ...
