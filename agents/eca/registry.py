# -*- test-case-name: tests.test_eca -*-
"""
The ECA's side of the registry (L{ecs.net.remote_registry.RegistryService}):
the inventory questions agents ask, answered from the store
(L{StoreLookups}), and the fan-out of registry changes to whoever follows
them (L{RegistryObservers}: the partitions, for their PCAs, and the agent
actions, for the supervisor).  The observers are added after the registry
is built, because they are built from its entries: one of the two back
edges of L{agents.eca.compose.build_eca}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from ecs.net.remote_registry import Entry
from ecs.store import Store

RegistryObserver = Callable[[str, str, Entry | None], None]


class StoreLookups:
    """The registry's inventory questions, answered from the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def partitions(self) -> list[str]:
        """Every partition id."""
        return [row.id for row in await self._store.partitions()]

    async def detectors_of(self, partition: str) -> list[str]:
        """The detectors of one partition."""
        return [row.id for row in await self._store.detectors(partition)]

    async def detector(self, detector: str) -> dict[str, Any] | None:
        """C{{type, partition}} of one detector, or None."""
        row = await self._store.detector(detector)
        return {"type": row.type, "partition": row.partition} if row else None


class RegistryObservers:
    """Calls every observer, in the order they were added, after each (un)registration."""

    _log = Logger()

    def __init__(self) -> None:
        self._observers: list[RegistryObserver] = []

    def observe(self, observer: RegistryObserver) -> None:
        """Call C{observer(kind, id, entry or None)} after every change."""
        self._observers.append(observer)

    def changed(self, kind: str, agent_id: str, entry: Entry | None) -> None:
        """The registry changed (its C{on_change}); an observer that raises is logged."""
        for observer in self._observers:
            try:
                observer(kind, agent_id, entry)
            except Exception:
                self._log.failure("registry observer raised on {kind}:{agent}", kind=kind, agent=agent_id)
