# -*- test-case-name: tests.test_eca -*-
"""
L{ControlScopes}: who holds the control of each partition and of the ECS
(scope C{ecs}).  The store is the truth; this keeps a cache of the holders
for the summaries, and is the one place that emits C{control} events, so
the cache and the events never disagree.  Control is released by its
holder, by an admin, at logout, after inactivity (L{ControlScopes.expire},
run by the ECA's housekeeping) and when the partition is deleted.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.errors import need
from agents.eca.interfaces import NO_NOTES, IAudit, IControlScopes, IELogNotes, IEventSource
from ecs.control import ControlError, User
from ecs.store import Store, StoreError


@implementer(IControlScopes)
class ControlScopes:
    """Control ownership; see the module docstring."""

    _log = Logger()

    def __init__(
        self, store: Store, events: IEventSource, audit: IAudit, clock: IReactorTime, timeout: float = 1200.0,
        notes: IELogNotes = NO_NOTES,
    ) -> None:
        self._store = store
        self._notes = notes
        self._events = events
        self._audit = audit
        self._clock = clock
        self.timeout = timeout
        self._holders: dict[str, str] = {}

    async def load(self) -> None:
        """Read the holders from the store (at start-up)."""
        self._holders = {row.scope: row.holder for row in await self._store.controls()}

    def holder(self, scope: str) -> str | None:
        """See L{IControlScopes.holder}."""
        return self._holders.get(scope)

    def _tell(self, scope: str, holder: str | None, previous: str | None, reason: str) -> None:
        if holder:
            self._holders[scope] = holder
        else:
            self._holders.pop(scope, None)
        self._events.emit(
            "control",
            {"scope": scope, "holder": holder, "previous": previous, "reason": reason},
            scope if scope != "ecs" else None,
        )

    def dropped(self, scope: str, previous: str, reason: str) -> None:
        """See L{IControlScopes.dropped}."""
        self._tell(scope, None, previous, reason)

    # -- actions ---------------------------------------------------------------

    async def _take(self, user: User, scope: str, force: bool, known: Container[str]) -> dict[str, Any]:
        need(user, "operator" if scope != "ecs" else "expert")
        if force:
            need(user, "admin")
        if scope != "ecs" and scope not in known:
            raise ControlError("not_found", f"no partition {scope!r}")
        try:
            row = await self._store.take_control(scope, user.name, force)
        except StoreError as e:
            raise ControlError("conflict", e.reason, holder=getattr(e, "holder", None)) from None
        await self._audit.record(user.name, "take_control", {"scope": scope, "force": force}, "ok")
        self._tell(scope, row.holder, row.replaced, "force" if row.replaced else "take")
        if row.replaced:
            where = "the ECS" if scope == "ecs" else f"partition {scope}"
            self._notes.note(f"{user.name} took the control of {where} by force from {row.replaced}",
                             scope if scope != "ecs" else None)
        return {"scope": scope, "holder": row.holder, "since": row.since}

    def take(self, user: User, scope: str, force: bool, known: Container[str]) -> defer.Deferred[dict[str, Any]]:
        """Take the control of C{scope} (one of C{known}, or C{ecs}); C{force}: from its holder (admin)."""
        return defer.Deferred.fromCoroutine(self._take(user, scope, force, known))

    async def _release(self, user: User, scope: str) -> None:
        row = await self._store.control(scope)
        if row is None:
            return
        if row.holder != user.name and not user.has("admin"):
            raise ControlError("conflict", f"{scope} is held by {row.holder}", holder=row.holder)
        await self._store.release_control(scope, row.holder)
        await self._audit.record(user.name, "release_control", {"scope": scope}, "ok")
        self._tell(scope, None, row.holder, "release")

    def release(self, user: User, scope: str) -> defer.Deferred[None]:
        """Release C{scope} (its holder, or an admin)."""
        return defer.Deferred.fromCoroutine(self._release(user, scope))

    async def release_all(self, user: str, reason: str) -> None:
        """Release every scope C{user} holds (logout)."""
        for row in await self._store.release_all(user):
            self._tell(row.scope, None, row.holder, reason)

    async def _ecs_holder(self) -> dict[str, Any]:
        row = await self._store.control("ecs")
        return {"scope": "ecs", "holder": row.holder if row else None, "since": row.since if row else None}

    def ecs_control(self) -> defer.Deferred[dict[str, Any]]:
        """Who holds the ECS control, since when."""
        return defer.Deferred.fromCoroutine(self._ecs_holder())

    async def require_holder(self, user: User, scope: str) -> None:
        """See L{IControlScopes.require_holder}."""
        row = await self._store.control(scope)
        if row is None or row.holder != user.name:
            holder = row.holder if row else None
            where = "the ECS" if scope == "ecs" else f"partition {scope}"
            raise ControlError(
                "forbidden" if holder is None else "conflict",
                f"take control of {where} first" + (f" (held by {holder})" if holder else ""),
                holder=holder,
            )
        try:
            await self._store.touch_control(scope, user.name)
        except StoreError as e:
            # Bookkeeping (the holder's last activity, for expiry): a command
            # never waits for it, and stop and abort must pass a full disk.
            self._log.warn("activity of {user} on {scope} not recorded: {error}", user=user.name, scope=scope, error=e)

    async def expire(self) -> None:
        """Release the scopes whose holder did nothing for L{timeout} seconds."""
        for row in await self._store.expire_controls(self.timeout, self._clock.seconds()):
            self._log.info("control of {scope} released after inactivity ({user})", scope=row.scope, user=row.holder)
            self._tell(row.scope, None, row.holder, "inactivity")
