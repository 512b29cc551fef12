# -*- test-case-name: tests.test_supervisor -*-
"""
How the supervisor learns that an agent died or what its launcher says of
it: the launcher's exit hook (L{DeathWatch.exited}) and the status poll
(L{DeathWatch.poll}).  What is learnt is classified here, in plain methods,
and fed to the agent's machine as one input: C{status_running},
C{status_unknown}, or a death classified by L{agents.eca.supervisor.policy}
(C{died_restartable}, C{died_flapping}; C{ended} once the ECA shuts down).

A collaborator of L{agents.eca.supervisor.supervisor.Supervisor}, given the
agents, the launchers, the store, the clock and the supervisor's C{feed}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from agents.eca.supervisor.agent_machine import Supervised
from agents.eca.supervisor.policy import BackoffPolicy, Flap, after_death
from agents.eca.supervisor.spec import reason_of
from ecs.launch import AgentStatus, ILauncher, LaunchRecord
from ecs.store import StoreError

Feed = Callable[..., None]
"""C{feed(agent, input, *args)}: give an input to an agent's machine."""


class DeathWatch:
    """Deaths and statuses of the supervised agents (see the module docstring)."""

    _log = Logger()

    def __init__(
        self,
        entries: Mapping[str, Supervised],
        launchers: Mapping[str, ILauncher],
        store: Any,
        clock: Any,
        feed: Feed,
        track: Callable[[defer.Deferred[Any]], None],
        policy: BackoffPolicy,
        poll_interval: float,
        remote_poll_interval: float,
    ) -> None:
        self.entries = entries
        self.launchers = launchers
        self.store = store
        self.clock = clock
        self.feed = feed
        self.track = track
        self.policy = policy
        self.poll_interval = poll_interval
        self.remote_poll_interval = remote_poll_interval
        #: Set when the ECA shuts down: a death then ends the agent's supervision.
        self.closed = False

    def exited(self, name: str, status: AgentStatus) -> None:
        """The launcher's exit hook."""
        entry = self.entries.get(name)
        if entry is None or entry.state == "stopping":
            return
        if entry.record is None:
            if entry.state == "starting":
                entry.early_exit = status  # before the launch was answered: handled once it is
            return
        if status.pid is not None and entry.record.pid is not None and status.pid != entry.record.pid:
            return  # an older run
        self.died(entry, status)

    def died(self, entry: Supervised, status: AgentStatus) -> None:
        """An agent we did not stop is gone: classify the death and feed it."""
        record = entry.record
        if record is None:
            return
        now = self.clock.seconds()
        ran = max(0.0, now - record.started)
        self._log.warn("{agent} died after {ran:.1f} s: {detail}", agent=entry.name, ran=ran, detail=status.detail)
        if self.closed:
            self.feed(entry, "ended", status, f"ended: {status.detail}")
            return
        decision = after_death(self.policy, entry.deaths, entry.step, now, ran, status.detail)
        if isinstance(decision, Flap):
            self.feed(entry, "died_flapping", status, decision)
        else:
            self.feed(entry, "died_restartable", status, decision)

    def poll(self) -> None:
        """Ask for the status of every agent with a launch record (one poll per agent at a time)."""
        for entry in list(self.entries.values()):
            if entry.unstored is not None and entry.unstored is entry.record and not entry.storing:
                self.track(defer.Deferred.fromCoroutine(self._store_record(entry)))
            record = entry.record
            if record is None or entry.polling or entry.state in ("starting", "stopping"):
                continue
            launcher = self.launchers.get(record.launcher)
            if launcher is None:
                continue
            every = self.poll_interval if record.launcher == "local" else self.remote_poll_interval
            now = self.clock.seconds()
            if entry.last_polled is not None and now - entry.last_polled < every - 1e-6:
                continue
            entry.last_polled = now
            entry.polling = True
            self.track(defer.Deferred.fromCoroutine(self._poll_one(entry, launcher, record)))

    async def _poll_one(self, entry: Supervised, launcher: ILauncher, record: LaunchRecord) -> None:
        try:
            status: AgentStatus = await defer.maybeDeferred(launcher.status, record)
        except Exception as e:
            if self._current(entry, record):
                self.feed(entry, "status_unknown", f"status unknown: {reason_of(e)}")
            return
        finally:
            entry.polling = False
        if not self._current(entry, record):
            return
        if status.running:
            self.feed(entry, "status_running", status)
        else:
            self.died(entry, status)

    def _current(self, entry: Supervised, record: LaunchRecord) -> bool:
        """Whether an answer about C{record} still matters."""
        return entry.record is record and entry.state != "stopping" and not self.closed

    async def _store_record(self, entry: Supervised) -> None:
        """Store a launch record that could not be stored when the agent started."""
        record = entry.unstored
        if record is None:
            return
        entry.storing = True
        try:
            await self.store.record_launch(entry.name, record.launcher, record.host, record.to_json())
        except StoreError as e:
            self._log.error("launch record of {agent} still not stored: {error}", agent=entry.name, error=e.reason)
            return
        finally:
            entry.storing = False
        if entry.unstored is record:
            entry.unstored = None
        if entry.record is not record:  # gone meanwhile: the record must not outlive it
            await self.store.delete_launch(entry.name)


__all__ = ["DeathWatch", "Feed"]
