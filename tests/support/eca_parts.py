# -*- test-case-name: tests.test_eca_parts -*-
"""
Helpers for testing the ECA's collaborators one at a time: a real store
on the inline runner (L{inline_store}) and event-recording dummies that
provide the collaborators' interfaces (L{Recorder}), wormhole style.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides
from zope.interface.interface import InterfaceClass

from ecs import users
from ecs.store import Store
from ecs.store.core import inline_runner


class Recorder:
    """
    Provides C{iface}; each listed method appends C{("name.method", *args)}
    to the shared C{events} list and returns C{result(method)}.
    """

    def __init__(
        self,
        name: str,
        events: list[tuple[Any, ...]],
        iface: InterfaceClass | None,
        *methods: str,
        result: Callable[[str], Any] = lambda method: None,
    ) -> None:
        if iface is not None:
            directlyProvides(self, iface)
        for method in methods:

            def record(*args: Any, _method: str = method, **kwargs: Any) -> Any:
                events.append((f"{name}.{_method}", *args, *sorted(kwargs.items())))
                return result(_method)

            setattr(self, method, record)


class FakeLogBook:
    """Records operator log lines: (level, source, message, partition)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str, str | None]] = []

    def log(self, level: str, source: str, message: str, partition: str | None, when: float | None = None) -> None:
        self.lines.append((level, source, message, partition))


def inline_store(case: SynchronousTestCase, clock: Clock) -> Store:
    """A real store in a temporary folder whose operations fire at once; closed at cleanup."""
    store = case.successResultOf(Store.open(Path(case.mktemp()) / "ecs.sqlite", clock, runner=inline_runner))
    case.addCleanup(lambda: case.successResultOf(store.close()))
    return store


class InlinePasswords:
    """Password hashing on the caller's thread (tests: a low bcrypt cost, no thread pool)."""

    def hash(self, password: str) -> defer.Deferred[str]:
        """See L{agents.eca.accounts.IPasswords.hash}."""
        return defer.succeed(users.hash_password(password))

    def check(self, password: str, password_hash: str) -> defer.Deferred[bool]:
        """See L{agents.eca.accounts.IPasswords.check}."""
        return defer.succeed(users.check_password(password, password_hash))
