# -*- test-case-name: tests.test_eca_parts -*-
"""
L{Audit}: every command and management change goes into the audit trail
with its outcome (C{ok}, or the refusal's code and reason).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from agents.eca.errors import store_error
from agents.eca.interfaces import IAudit
from ecs.control import ControlError, User
from ecs.store import Store, StoreError


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
