# -*- test-case-name: tests.test_eca_parts -*-
"""
L{Audit}: every command and management change goes into the audit trail
with its outcome (C{ok}, or the refusal's code and reason).

L{WriteBehind}: the bookkeeping writes (run records, the audit rows of
partition commands) that a database which cannot be written must not
lose, nor let hold up a stop or an abort: kept in order and retried, with
the C{storage_failed} alarm while any waits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python import failure
from zope.interface import implementer

from agents.eca.alarms import IAlarms
from agents.eca.errors import store_error
from agents.eca.interfaces import IAudit
from ecs.control import ControlError, User
from ecs.store import Store, StoreError

T = TypeVar("T")


@implementer(IAudit)
class Audit:
    """The audited(user, action, arguments, work) helper over the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def record(self, user: str, action: str, arguments: dict[str, Any], outcome: str) -> defer.Deferred[Any]:
        """See L{IAudit.record}."""
        return self._store.audit(user, action, arguments, outcome)

    def audited(
        self, user: User, action: str, arguments: dict[str, Any], work: Callable[[], Awaitable[Any]]
    ) -> defer.Deferred[Any]:
        """Run C{work}; a L{StoreError} becomes its L{ControlError}; the outcome is recorded either way."""

        async def run() -> Any:
            try:
                result = await work()
            except StoreError as e:
                await self.record(user.name, action, arguments, f"{e.code}: {e.reason}")
                raise store_error(e) from None
            except ControlError as e:
                await self.record(user.name, action, arguments, f"{e.code}: {e.reason}")
                raise
            await self.record(user.name, action, arguments, "ok")
            return result

        return defer.Deferred.fromCoroutine(run())


#: Seconds between two tries of the writes that wait (L{WriteBehind}).
RETRY_DELAY = 2.0

#: The source of the C{storage_failed} alarm.
STORAGE_SOURCE = "ECA database"

#: The store refusals that are worth trying again (the database cannot be written or used now).
_RETRIED = ("storage", "unavailable")


class WriteBehind:
    """
    Bookkeeping writes that must neither be lost nor hold up a safety
    command: they run one after the other, in the order given; one the
    database refuses for now (full, read-only, locked) stays first in line
    and is tried again every L{RETRY_DELAY} seconds, with the
    C{storage_failed} alarm raised until the line is empty again.

    A write the store refuses for good (a bad argument, a conflict) is
    logged and dropped (its Deferred fails), so it never blocks the rest.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, alarms: IAlarms, retry: float = RETRY_DELAY) -> None:
        self._clock = clock
        self._alarms = alarms
        self._retry = retry
        self._queue: deque[_Write] = deque()
        self._busy = False
        self._timer: IDelayedCall | None = None
        #: Why the first write in line failed, while one waits.
        self.problem: str | None = None

    @property
    def waiting(self) -> int:
        """How many writes wait."""
        return len(self._queue)

    def write(self, what: str, work: Callable[[], Awaitable[T]]) -> defer.Deferred[T]:
        """Run C{work} after the writes already in line; fires with its result once written."""
        entry = _Write(what, work)
        self._queue.append(entry)
        self._pump()
        return entry.done

    def first_try(self, what: str, work: Callable[[], Awaitable[Any]]) -> defer.Deferred[bool]:
        """
        Like L{write}, but fires after its first try: C{True} if written
        (or refused for good, which the line logs), C{False} if it waits in
        line (the database cannot be written now).
        """
        entry = _Write(what, work, first=defer.Deferred())
        entry.done.addErrback(lambda f: None)  # a write refused for good is logged by the line itself
        first = entry.first
        assert first is not None
        self._queue.append(entry)
        self._pump()
        return first

    async def now(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """
        Run C{work} at once, unless writes wait because the database cannot
        be written: then refuse with C{StoreError("storage")} naming why.
        """
        if self.problem is not None:
            raise StoreError("storage", f"{what}: the database cannot be written ({self.problem})")
        return await work()

    def stop(self) -> None:
        """Stop retrying (the ECA stops; what waits is lost, as the log says)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._queue:
            self._log.error(
                "{count} bookkeeping writes not done at stop ({problem})", count=len(self._queue), problem=self.problem
            )

    def _pump(self) -> None:
        if self._busy or (self._timer is not None and self._timer.active()):
            if self.problem is not None:
                self._tell_waiting()
            return
        self._busy = True
        defer.Deferred.fromCoroutine(self._drain()).addErrback(lambda f: self._log.failure("write-behind", f))

    def _retry_now(self) -> None:
        self._timer = None
        self._pump()

    async def _drain(self) -> None:
        try:
            while self._queue:
                entry = self._queue[0]
                try:
                    result = await entry.work()
                except StoreError as e:
                    if e.code in _RETRIED:
                        self._failed(e)
                        self._tell_waiting()
                        return
                    self._queue.popleft()
                    self._log.error("{what} not recorded: {error}", what=entry.what, error=e)
                    entry.finish(failure.Failure(e))
                    continue
                except Exception:  # a bug in the work: logged, never blocks the line
                    self._queue.popleft()
                    self._log.failure("{what} failed", what=entry.what)
                    entry.finish(failure.Failure())
                    continue
                self._queue.popleft()
                entry.finish(result)
            if self.problem is not None:
                self.problem = None
                self._alarms.condition("storage_failed", STORAGE_SOURCE, None, False)
                self._log.info("the waiting bookkeeping writes are done: the database is writable again")
        finally:
            self._busy = False

    def _tell_waiting(self) -> None:
        """Every write whose caller waits for its first try waits in line now: tell them not to wait."""
        for entry in list(self._queue):
            if entry.first is not None and not entry.first.called:
                entry.first.callback(False)

    def _failed(self, error: StoreError) -> None:
        if self.problem is None:
            self._log.error(
                "the database cannot be written ({reason}): {count} bookkeeping writes wait, retried every {delay} s",
                reason=error.reason, count=len(self._queue), delay=self._retry,
            )
            self._alarms.condition(
                "storage_failed",
                STORAGE_SOURCE,
                None,
                True,
                f"the ECA's database cannot be written: {error.reason}",
                "free space on the ECA's state directory (or make it writable again); the waiting writes are retried",
            )
        self.problem = error.reason
        self._timer = self._clock.callLater(self._retry, self._retry_now)


@attrs.define(eq=False)
class _Write:
    """One write in line: what it is, the work, its Deferred, and who waits for its first try."""

    what: str
    work: Callable[[], Awaitable[Any]]
    first: defer.Deferred[bool] | None = None
    done: defer.Deferred[Any] = attrs.Factory(defer.Deferred)

    def finish(self, result: Any) -> None:
        if self.first is not None and not self.first.called:
            self.first.callback(True)
        self.done.callback(result)
