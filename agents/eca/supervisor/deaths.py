# -*- test-case-name: tests.test_supervisor -*-
"""
How L{agents.eca.supervisor.supervisor.Supervisor} learns that an agent died (the
launcher's exit hook, or polling its status) and what it does then:
restart after the back-off, or give up and raise the flapping alarm.  See
the rules in L{agents.eca.supervisor.supervisor}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from ecs.control import ControlError
from ecs.launch import AgentStatus, LaunchError, LaunchRecord
from ecs.store import StoreError

if TYPE_CHECKING:
    from agents.eca.supervisor.supervisor import Supervised


class DeathWatch:
    """The death-handling half of L{agents.eca.supervisor.supervisor.Supervisor} (a mixin)."""

    if TYPE_CHECKING:
        entries: dict[str, Supervised]
        launchers: Any
        clock: Any
        store: Any
        _log: Any
        _closed: bool
        _pending: set[defer.Deferred[Any]]
        log_event: Any
        flap_window: float
        flap_min_run: float
        flap_count: int
        reset_after: float
        poll_interval: float
        remote_poll_interval: float
        backoff_initial: float
        backoff_max: float

        def _set(self, entry: Supervised, state: str, reason: str = "") -> None: ...
        def _changed(self, entry: Supervised) -> None: ...
        async def _locked(self, entry: Supervised, work: Any) -> None: ...
        async def _launch(self, entry: Supervised) -> None: ...

    def _exited(self, name: str, status: AgentStatus) -> None:
        """The launcher's exit hook."""
        entry = self.entries.get(name)
        if entry is None or entry.stopping:
            return
        if entry.record is None:
            if entry.state == "starting":
                entry.early_exit = status  # before start() answered: handled once it has
            return
        if status.pid is not None and entry.record.pid is not None and status.pid != entry.record.pid:
            return  # an older run
        self._died(entry, status)

    def poll(self) -> None:
        """Ask for the status of every agent with a launch record (one poll per agent at a time)."""
        for entry in list(self.entries.values()):
            if entry.unstored is not None and entry.unstored is entry.record and not entry.storing:
                self._track(defer.Deferred.fromCoroutine(self._store_record(entry)))
            if entry.record is None or entry.polling or entry.lock.locked or entry.stopping:
                continue
            launcher = self.launchers.get(entry.record.launcher)
            if launcher is None:
                continue
            every = self.poll_interval if entry.record.launcher == "local" else self.remote_poll_interval
            now = self.clock.seconds()
            if entry.last_polled is not None and now - entry.last_polled < every - 1e-6:
                continue
            entry.last_polled = now
            entry.polling = True
            record = entry.record
            d = defer.maybeDeferred(launcher.status, record)
            d.addCallbacks(self._polled, self._poll_failed, callbackArgs=(entry, record),
                           errbackArgs=(entry, record))
            d.addErrback(lambda f, e=entry: self._log.failure("polling {agent}", f, agent=e.name))
            d.addBoth(lambda _, e=entry: setattr(e, "polling", False))

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

    def _polled(self, status: AgentStatus, entry: Supervised, record: LaunchRecord) -> None:
        if entry.record is not record or entry.stopping or self._closed:
            return
        if status.running:
            entry.status = status
            if entry.state != "running":
                self._set(entry, "running")
            else:
                self._changed(entry)
        else:
            self._died(entry, status)

    def _poll_failed(self, failure: Any, entry: Supervised, record: LaunchRecord) -> None:
        if entry.record is not record or entry.stopping or self._closed:
            return
        self._set(entry, "unknown", f"status unknown: {_reason(failure.value)}")

    def _died(self, entry: Supervised, status: AgentStatus) -> None:
        """An agent we did not stop is gone: restart it after its back-off, or give up."""
        record, entry.record = entry.record, None
        if record is None:
            return
        entry.status = status
        self._track(self.store.delete_launch(entry.name))
        now = self.clock.seconds()
        ran = max(0.0, now - record.started)
        self._log.warn("{agent} died after {ran:.1f} s: {detail}", agent=entry.name, ran=ran, detail=status.detail)
        if not entry.wanted or self._closed:
            self._set(entry, "stopped", f"ended: {status.detail}")
            return
        entry.deaths.append((now, ran))
        while entry.deaths and entry.deaths[0][0] < now - self.flap_window:
            entry.deaths.popleft()
        quick = sum(1 for _, lasted in entry.deaths if lasted < self.flap_min_run)
        if quick >= self.flap_count:
            reason = (f"{quick} deaths within {self.flap_window:g} s, each after less than "
                      f"{self.flap_min_run:g} s (last: {status.detail}): not restarted, start it by hand")
            self.log_event("error", f"{entry.name} is flapping: {reason}")
            entry.next_restart = None
            self._set(entry, "flapping", reason)
            return
        if ran >= self.reset_after:
            entry.step = 0
        delay = min(self.backoff_initial * 2 ** entry.step, self.backoff_max)
        entry.step += 1
        entry.next_restart = now + delay
        entry.timer = self.clock.callLater(delay, self._restart_due, entry)
        self.log_event("warn", f"{entry.name} died ({status.detail}): restarting in {delay:g} s")
        self._set(entry, "restarting", f"{status.detail}: restarting in {delay:g} s")

    def _restart_due(self, entry: Supervised) -> None:
        entry.timer = None
        entry.next_restart = None
        if not entry.wanted or entry.state != "restarting" or self._closed:
            return
        entry.restarts += 1
        d = defer.Deferred.fromCoroutine(self._locked(entry, self._launch))
        d.addErrback(lambda f: f.trap(ControlError))  # already shown as failed
        self._track(d)

    def _track(self, d: defer.Deferred[Any]) -> None:
        """Keep a background Deferred until it fires (errors are logged)."""
        self._pending.add(d)
        d.addErrback(lambda f: self._log.failure("supervisor background work", f))
        d.addBoth(lambda _: self._pending.discard(d))


def _reason(error: BaseException) -> str:
    """A launcher error as C{"code: reason"}, any other as its text."""
    if isinstance(error, LaunchError):
        return f"{error.code}: {error.reason}"
    return str(error) or type(error).__name__
