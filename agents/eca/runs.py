# -*- test-case-name: tests.test_eca -*-
"""
L{RunBook}: the run records.  A run opens when a partition enters the
recording state and closes when it leaves it, with the outcome judged from
the operators' last command (C{stop}: stopped, C{abort}: aborted,
anything else: failed, which the metrics count and which raises an alarm:
C{run_interrupted} when the ECA lost the PCA during the run, C{run_failed}
otherwise, raised cleared, so active until an operator acknowledges it).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.alarms import IAlarms
from agents.eca.interfaces import ILogBook, IRunBook
from agents.eca.metrics import EcaMetrics
from ecs.store import Store, StoreError


@implementer(IRunBook)
class RunBook:
    """Run records opened and closed; see the module docstring."""

    _log = Logger()

    def __init__(self, store: Store, logbook: ILogBook, metrics: EcaMetrics, alarms: IAlarms) -> None:
        self._store = store
        self._logbook = logbook
        self._metrics = metrics
        self._alarms = alarms

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

    async def ended(self, partition: str, last_command: str | None, interrupted: bool = False) -> None:
        """See L{IRunBook.ended}."""
        run = await self._store.open_run(partition)
        if run is None:
            return
        outcome = {"stop": "stopped", "abort": "aborted"}.get(last_command or "", "failed")
        await self._store.end_run(run.number, outcome)
        if outcome != "failed":
            self._logbook.log("info", "ECA", f"run {run.number} ended: {outcome}", partition)
            return
        self._metrics.run_failed(partition)
        self._logbook.log("error", "ECA", f"run {run.number} of partition {partition} ended: failed", partition)
        if interrupted:
            kind, text = "run_interrupted", f"run {run.number} of {partition} interrupted: the ECA lost its PCA"
        else:
            kind, text = "run_failed", f"run {run.number} of {partition} failed (ended without stop or abort)"
        self._alarms.event(
            kind, "run", partition, text, "find the cause in the log, acknowledge, then Configure and Start"
        )
