# -*- test-case-name: tests.test_eca_parts -*-
"""
L{LogBook}: log lines for operators (the ECA's own and those its PCAs
publish), sent live as C{log} events at once and stored in batches
(L{LogBook.flush}, run by a C{TimerService} of the ECA).  Warnings and
errors also go to the ECA's own log at their level, naming the partition.
"""

from __future__ import annotations

import dataclasses

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from agents.eca.interfaces import IEventSource, ILogBook
from ecs.store import LogEntry, Store, StoreError

LOG_FLUSH = 0.5
"""Seconds between two batches written to the store."""

#: The operator log levels also written to the ECA's own log.
_TOLD = ("warn", "error", "critical")


@implementer(ILogBook)
class LogBook:
    """Operator log lines: live, then stored."""

    _log = Logger()

    def __init__(self, store: Store, events: IEventSource, clock: IReactorTime) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self._unflushed: list[LogEntry] = []

    def log(self, level: str, source: str, message: str, partition: str | None, when: float | None = None) -> None:
        """See L{ILogBook.log}."""
        entry = LogEntry(when if when is not None else self._clock.seconds(), level, source, message, partition)
        self._unflushed.append(entry)
        self._events.emit("log", dataclasses.asdict(entry), partition)
        if level in _TOLD:
            # What went wrong is in the ECA's own log too (journal, twistd output), at its level.
            self._log.emit(
                # ("text", not "message": the legacy log's key of that name would replace it)
                LogLevel.levelWithName(level), "{source} ({where}): {text}",
                source=source, where=f"partition {partition}" if partition else "ECS", text=message,
            )

    async def flush(self) -> None:
        """Store the lines logged since the last flush (a store failure loses them, with an error)."""
        entries, self._unflushed = self._unflushed, []
        if entries:
            try:
                await self._store.add_logs(entries)
            except StoreError as e:
                self._log.error("{count} log lines not stored: {error}", count=len(entries), error=e)
