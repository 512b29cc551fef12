# -*- test-case-name: tests.test_eca -*-
"""
L{RunBook}: the run records.  A run opens when a partition enters the
recording state and closes when it leaves it, with the outcome judged from
the operators' last command (C{stop}: stopped, C{abort}: aborted,
anything else: failed, which the metrics count).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.interfaces import ILogBook, IRunBook
from agents.eca.metrics import EcaMetrics
from ecs.store import Store, StoreError


@implementer(IRunBook)
class RunBook:
    """Run records opened and closed; see the module docstring."""

    _log = Logger()

    def __init__(self, store: Store, logbook: ILogBook, metrics: EcaMetrics) -> None:
        self._store = store
        self._logbook = logbook
        self._metrics = metrics

    async def started(self, partition: str, tag: str | None, configs: dict[str, dict[str, Any]], operator: str) -> None:
        """See L{IRunBook.started}."""
        if await self._store.open_run(partition) is not None:
            return  # still the same run (the ECA restarted while recording)
        try:
            run = await self._store.start_run(partition, tag, configs, operator)
        except StoreError as e:
            self._log.error("run for {partition} not recorded: {error}", partition=partition, error=e)
            return
        self._logbook.log("info", "ECA", f"run {run.number} started", partition)

    async def ended(self, partition: str, last_command: str | None) -> None:
        """See L{IRunBook.ended}."""
        run = await self._store.open_run(partition)
        if run is None:
            return
        outcome = {"stop": "stopped", "abort": "aborted"}.get(last_command or "", "failed")
        await self._store.end_run(run.number, outcome)
        if outcome == "failed":
            self._metrics.run_failed(partition)
        self._logbook.log(
            "info" if outcome == "stopped" else "warn", "ECA", f"run {run.number} ended: {outcome}", partition
        )
