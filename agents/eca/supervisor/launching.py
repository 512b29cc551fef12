# -*- test-case-name: tests.test_supervisor -*-
"""
The supervisor's edge to the launchers and the store: what the agent
machines' C{L_start}, C{L_stop} and C{S_forget} outputs do.  Each answer of
a launcher becomes one input of the agent's machine, after the launch
record is stored (or deleted): persist, then tell.  At the ECA's start
L{Launching.adopt} asks a stored record's launcher whether its agent still
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import Logger

from agents.eca.supervisor.agent_machine import Supervised
from agents.eca.supervisor.spec import reason_of
from agents.eca.supervisor.watch import Feed
from ecs.launch import AgentSpec, ILauncher, LaunchError, LaunchRecord, Placement
from ecs.store import StoreError


class Launching:
    """Starts and stops agents through their launchers (see the module docstring)."""

    _log = Logger()

    def __init__(
        self,
        launchers: Mapping[str, ILauncher],
        store: object,
        make_spec: Callable[[Placement], AgentSpec],
        grace: float,
        feed: Feed,
    ) -> None:
        self.launchers = launchers
        self.store: Any = store
        self.make_spec = make_spec
        self.grace = grace
        self.feed = feed

    async def launch(self, entry: Supervised) -> None:
        """Start C{entry}; store its record; feed C{launched} or C{launch_failed}."""
        placement = entry.placement
        launcher = self.launchers.get(placement.launcher) if placement is not None else None
        try:
            if placement is None:
                raise LaunchError("unknown", f"{entry.name} has no placement")
            if launcher is None:
                raise LaunchError("invalid", f"launcher {placement.launcher} is not configured on this ECA")
            where = Placement(entry.name, placement.host, placement.launcher, dict(placement.options),
                              bool(placement.autostart))
            spec = self.make_spec(where)
            entry.early_exit = None
            entry.status = None
            record = await launcher.start(spec, where)
        except Exception as e:
            error = e if isinstance(e, LaunchError) else LaunchError("failed", f"{type(e).__name__}: {e}")
            if not isinstance(e, LaunchError):
                self._log.failure("starting {agent}", agent=entry.name)
            self.feed(entry, "launch_failed", error)
            return
        entry.unstored = None
        try:
            await self.store.record_launch(entry.name, record.launcher, record.host, record.to_json())
        except StoreError as e:
            # Until it is stored a restarted ECA would not adopt the agent:
            # every poll tries again (DeathWatch.poll).
            entry.unstored = record
            self._log.error("launch record of {agent} not stored, trying again: {error}",
                            agent=entry.name, error=e.reason)
        self.feed(entry, "launched", record)

    async def halt(self, entry: Supervised) -> None:
        """Stop C{entry}; forget its record; feed C{stop_done} or C{stop_failed}."""
        record = entry.record
        if record is None:
            self.feed(entry, "stop_done", None)
            return
        launcher = self.launchers.get(record.launcher)
        try:
            if launcher is None:
                raise LaunchError("invalid", f"launcher {record.launcher} is not configured on this ECA")
            status = await launcher.stop(record, self.grace)
        except Exception as e:
            error = e if isinstance(e, LaunchError) else LaunchError("failed", f"{type(e).__name__}: {e}")
            if not isinstance(e, LaunchError):
                self._log.failure("stopping {agent}", agent=entry.name)
            self.feed(entry, "stop_failed", error)
            return
        await self.forget(entry.name)
        self.feed(entry, "stop_done", status)

    async def forget(self, name: str) -> None:
        """Delete C{name}'s launch record (an error is logged: the record is then stale)."""
        try:
            await self.store.delete_launch(name)
        except StoreError as e:
            self._log.error("launch record of {agent} not deleted: {error}", agent=name, error=e.reason)

    async def adopt(self, entry: Supervised, record_json: str) -> bool:
        """
        Adopt the agent of a stored launch record if it still runs (its
        machine goes C{running}, or C{unknown} if its launcher cannot tell);
        forget the record otherwise.

        @return: whether the record was of a running or unknown agent.
        """
        try:
            record = LaunchRecord.from_json(record_json)
        except LaunchError as e:
            self._log.warn("launch record of {agent} unreadable, forgotten: {error}", agent=entry.name, error=e)
            await self.forget(entry.name)
            return False
        entry.record = entry.last_record = record
        launcher = self.launchers.get(record.launcher)
        if launcher is None:
            self.feed(entry, "status_unknown", f"launcher {record.launcher} is not configured on this ECA")
            return True
        try:
            status = await launcher.status(record)
        except Exception as e:
            self.feed(entry, "status_unknown", f"status unknown: {reason_of(e)}")
            return True
        if status.running:
            self._log.info("adopted {agent} (pid {pid}, job {job}) started before this ECA",
                           agent=entry.name, pid=record.pid, job=record.job_id)
            self.feed(entry, "status_running", status)
            return True
        entry.record = None
        await self.forget(entry.name)
        if entry.placement is not None:
            self.feed(entry, "ended", status, f"gone while the ECA was down ({status.detail})")
        return False


__all__ = ["Launching"]
