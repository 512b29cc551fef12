# -*- test-case-name: tests.test_supervisor -*-
"""
Supervision of the agents the ECA launches (issue 6).

L{Supervisor} holds the configured launchers by name (C{local}, C{ssh},
C{slurm}) and, for every placed agent (L{ecs.store.placements}), what it
knows: the launch record, the launcher's last status and a supervision
state:

  - C{stopped}: not wanted (never started, or stopped by hand);
  - C{starting}: the launcher is starting it;
  - C{running}: the launcher says it runs;
  - C{restarting}: it died and waits for its back-off before a new start;
  - C{flapping}: it died too often too soon: no more restarts (an alarm);
  - C{failed}: the launcher failed (host unreachable, bad command...);
  - C{unknown}: its launcher cannot tell now (not configured, no answer).

Rules:

  - B{Restart with back-off.}  An agent that dies without being stopped by
    us is started again after C{backoff_initial} seconds, doubling at each
    death up to C{backoff_max} (defaults 1, 2, 4... 60 s); a run longer than
    C{reset_after} (60 s) starts the doubling again from the first delay.
  - B{Flapping.}  C{flap_count} deaths (5) within C{flap_window} seconds
    (60), each after a run shorter than C{flap_min_run} seconds (10), mark
    the agent C{flapping}: it is not restarted, and an ECA log line at level
    error says so (shown in the GUI's log and through the C{agent} event).
    A manual start clears it.
  - B{Prompt deaths.}  A launcher that has C{on_exit(callback)} (the local
    one) tells us at once; every agent with a launch record is also polled
    with C{status()} every C{poll_interval} seconds (C{remote_poll_interval},
    15 s, for the C{ssh} and C{slurm} launchers: each poll of a remote host
    is a new SSH connection or a C{squeue} call), in parallel, with at
    most one poll in flight per agent (each launcher keeps its own timeout).
  - B{One operation at a time per agent}: start, stop and restart of one
    agent are serialised, so concurrent starts start it once.
  - B{Persist, then tell.}  The launch record is stored when an agent has
    started and deleted when it is stopped or found gone; on its start the
    ECA asks each stored record's launcher for its status and adopts the
    agents still running (no duplicate is started) and forgets the others
    (L{resume}).  L{stop_all} stops everything it started or adopted.
  - Every change of an agent's description (L{describe}) is passed to
    C{on_change} (the ECA publishes it as an C{agent} event), once per
    change.

All timing uses the injected clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from agents.eca.supervisor.deaths import DeathWatch, _reason
from ecs.control import ControlError
from ecs.launch import (
    AgentSpec,
    AgentStatus,
    ILauncher,
    LaunchError,
    LaunchRecord,
    Placement,
    check_argument,
)
from ecs.store import StoreError

STATES = ("stopped", "starting", "running", "restarting", "flapping", "failed", "unknown")
"""The supervision states (see the module docstring)."""

PLUGINS = {"pca": "ecs-pca", "detector": "ecs-detector", "global": "ecs-global", "simhost": "ecs-simhost"}

_LAUNCH_CODES = {"invalid": "bad_request", "unknown": "not_found"}


def control_error(error: LaunchError | StoreError) -> ControlError:
    """
    A launcher's or the store's error as an interface error: bad input 400,
    unknown 404, the launcher's own failures (C{unreachable}, C{timeout},
    C{host_key}, C{auth}, C{failed}) 502 with that code.
    """
    if isinstance(error, StoreError):
        code = {"not_found": "not_found", "bad_request": "bad_request", "conflict": "conflict"}.get(
            error.code, "unavailable")
        return ControlError(code, error.reason)
    return ControlError(_LAUNCH_CODES.get(error.code, error.code), error.reason)


def agent_args(options: Mapping[str, Any]) -> list[str]:
    """The placement's C{agent_args} option (extra plugin arguments), checked."""
    value = options.get("agent_args", [])
    if not isinstance(value, (list, tuple)):
        raise LaunchError("invalid", f"agent_args must be a list of strings, not {value!r}")
    return [check_argument(v, "agent argument") for v in value]


def spec_for(placement: Placement) -> AgentSpec:
    """
    What a placement runs: C{ecs-<kind> --id <id>} (a sim host: C{ecs-simhost}
    alone, its C{--ids} coming from the options) plus the C{agent_args}
    option, e.g. C{["--type", "STS"]}.
    """
    kind, _, agent_id = placement.agent.partition(":")
    extra = agent_args(placement.options)
    if kind == "simhost":
        if "--ids" not in extra:
            raise LaunchError("invalid", f"{placement.agent}: a sim host needs agent_args with --ids")
        args: tuple[str, ...] = (PLUGINS[kind], *extra)
    else:
        args = (PLUGINS[kind], "--id", agent_id, *extra)
    return AgentSpec(kind, agent_id, args)


@attrs.define(eq=False)
class Supervised:
    """What the supervisor knows of one agent."""

    name: str
    placement: Any = None  # a PlacementRow, or None for a record without placement
    record: LaunchRecord | None = None
    last_record: LaunchRecord | None = None
    status: AgentStatus | None = None
    state: str = "stopped"
    reason: str = ""
    restarts: int = 0
    next_restart: float | None = None
    wanted: bool = False
    stopping: bool = False
    step: int = 0
    deaths: deque[tuple[float, float]] = attrs.field(factory=deque)
    timer: IDelayedCall | None = None
    lock: defer.DeferredLock = attrs.field(factory=defer.DeferredLock)
    polling: bool = False
    early_exit: AgentStatus | None = None
    sent: dict[str, Any] | None = None
    unstored: LaunchRecord | None = None  # its launch record could not be stored yet
    last_polled: float | None = None
    storing: bool = False


class Supervisor(DeathWatch):
    """
    Starts, stops and watches the placed agents (see the module docstring).

    @param store: the ECA's store (placements and launch records).
    @param launchers: the configured L{ILauncher}s by name.
    @param clock: the reactor (C{IReactorTime}).
    @param registered: C{registered(agent, record)}: whether the registry
        knows the agent (and, for a record with a pid, that very process).
    @param on_change: called with L{describe} of an agent whenever it changes.
    @param log_event: C{log_event(level, message)}: a log line for operators.
    """

    _log = Logger()

    def __init__(
        self,
        store: Any,
        launchers: Mapping[str, ILauncher],
        clock: Any,
        *,
        registered: Callable[[str, LaunchRecord | None], bool] = lambda name, record: False,
        on_change: Callable[[dict[str, Any]], None] = lambda agent: None,
        log_event: Callable[[str, str], None] = lambda level, message: None,
        make_spec: Callable[[Placement], AgentSpec] = spec_for,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        reset_after: float = 60.0,
        flap_count: int = 5,
        flap_window: float = 60.0,
        flap_min_run: float = 10.0,
        poll_interval: float = 3.0,
        remote_poll_interval: float = 15.0,
        grace: float = 10.0,
    ) -> None:
        self.store = store
        self.launchers = dict(launchers)
        self.clock = clock
        self.registered = registered
        self.on_change = on_change
        self.log_event = log_event
        self.make_spec = make_spec
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.reset_after = reset_after
        self.flap_count = flap_count
        self.flap_window = flap_window
        self.flap_min_run = flap_min_run
        self.poll_interval = poll_interval
        self.remote_poll_interval = remote_poll_interval
        self.grace = grace
        self.entries: dict[str, Supervised] = {}
        self._poll = task.LoopingCall(self.poll)
        self._poll.clock = clock
        self._pending: set[defer.Deferred[Any]] = set()
        self._closed = False
        #: Whether agents are started on their own (L{resume}'s C{autostart}).
        self.autostart = False

    # -- reading -----------------------------------------------------------------

    def describe(self, entry: Supervised) -> dict[str, Any]:
        """The API's view of an agent."""
        placement = entry.placement
        record = entry.record or entry.last_record
        kind, _, agent_id = entry.name.partition(":")
        status = entry.status
        return {
            "agent": entry.name,
            "kind": kind,
            "id": agent_id,
            "host": placement.host if placement else (record.host if record else None),
            "launcher": placement.launcher if placement else (record.launcher if record else None),
            "options": dict(placement.options) if placement else {},
            "autostart": bool(placement.autostart) if placement else False,
            "registered": bool(self.registered(entry.name, entry.record)),
            "status": {
                "running": bool(status and status.running),
                "pid": status.pid if status else None,
                "job_id": status.job_id if status else None,
                "exit_code": status.exit_code if status else None,
                "since": status.since if status else None,
                "detail": status.detail if status else "",
            },
            "supervision": {
                "state": entry.state,
                "restarts": entry.restarts,
                "next_restart": entry.next_restart,
                "reason": entry.reason,
            },
        }

    def agents(self) -> list[dict[str, Any]]:
        """Every agent (placed, or running without a placement), by name."""
        return [self.describe(self.entries[name]) for name in sorted(self.entries)]

    def agent(self, name: str) -> dict[str, Any]:
        """One agent; C{not_found}."""
        return self.describe(self._entry(name))

    def _entry(self, name: str) -> Supervised:
        entry = self.entries.get(name) if isinstance(name, str) else None
        if entry is None:
            raise ControlError("not_found", f"no agent {name!r} (place it first)")
        return entry

    def _changed(self, entry: Supervised) -> None:
        """Tell C{on_change} if the description changed since it was last told."""
        if entry.name not in self.entries:
            return
        data = self.describe(entry)
        if data != entry.sent:
            entry.sent = data
            try:
                self.on_change(data)
            except Exception:
                self._log.failure("agent change subscriber failed")

    def registry_changed(self, names: list[str] | None = None) -> None:
        """The registry changed: re-describe C{names} (default: every agent)."""
        for name in self.entries if names is None else names:
            entry = self.entries.get(name)
            if entry is not None:
                self._changed(entry)

    def _set(self, entry: Supervised, state: str, reason: str = "") -> None:
        entry.state = state
        entry.reason = reason
        self._changed(entry)

    # -- start-up and shut-down --------------------------------------------------------

    async def resume(self, autostart: bool = False) -> None:
        """
        Load the placements, adopt the agents of the stored launch records
        that still run (forget the others), start every autostart agent
        that does not run when C{autostart}, and start watching.
        """
        self.autostart = autostart
        for row in await self.store.placements():
            self.entries[row.agent] = Supervised(row.agent, row)
        for launcher in self.launchers.values():
            hook = getattr(launcher, "on_exit", None)
            if callable(hook):
                hook(self._exited)
        rows = await self.store.launches()
        await defer.DeferredList([defer.Deferred.fromCoroutine(self._adopt(row)) for row in rows],
                                 consumeErrors=True)
        if autostart:
            wanted = [e for e in self.entries.values()
                      if e.placement is not None and e.placement.autostart and e.record is None]
            await defer.DeferredList([defer.Deferred.fromCoroutine(self._autostart(e)) for e in wanted],
                                     consumeErrors=True)
        self._poll.start(self.poll_interval, now=False)

    async def _adopt(self, row: Any) -> None:
        entry = self.entries.setdefault(row.agent, Supervised(row.agent))
        try:
            record = LaunchRecord.from_json(row.record)
        except LaunchError as e:
            self._log.warn("launch record of {agent} unreadable, forgotten: {error}", agent=row.agent, error=e)
            await self._forget(row.agent)
            return
        entry.record = record
        entry.last_record = record
        entry.wanted = True
        launcher = self.launchers.get(record.launcher)
        if launcher is None:
            self._set(entry, "unknown", f"launcher {record.launcher} is not configured on this ECA")
            return
        try:
            status = await launcher.status(record)
        except Exception as e:
            self._set(entry, "unknown", f"status unknown: {_reason(e)}")
            return
        entry.status = status
        if status.running:
            self._log.info("adopted {agent} (pid {pid}, job {job}) started before this ECA",
                           agent=row.agent, pid=record.pid, job=record.job_id)
            self._set(entry, "running")
        else:
            entry.record = None
            entry.wanted = False
            await self._forget(row.agent)
            if entry.placement is None:
                del self.entries[row.agent]
                return
            self._set(entry, "stopped", f"gone while the ECA was down ({status.detail})")

    async def _autostart(self, entry: Supervised) -> None:
        try:
            await self.start(entry.name)
        except ControlError as e:
            self._log.warn("autostart of {agent} failed: {reason}", agent=entry.name, reason=e.reason)

    def detach(self) -> None:
        """Stop watching (timers, polls); leave the agents running."""
        self._closed = True
        if self._poll.running:
            self._poll.stop()
        for entry in self.entries.values():
            _cancel(entry)

    async def stop_all(self) -> None:
        """Stop every agent started or adopted (in parallel), then stop watching."""
        self.detach()
        running = [e for e in self.entries.values() if e.record is not None or e.lock.locked]
        results = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(self._stop(e)) for e in running], consumeErrors=True)
        for entry, (ok, result) in zip(running, results):
            if not ok:
                self._log.error("{agent} not stopped: {error}", agent=entry.name, error=result.getErrorMessage())

    # -- placement ------------------------------------------------------------------------

    async def place(self, name: str, host: str, launcher: str, options: Mapping[str, Any],
                    autostart: bool, author: str) -> dict[str, Any]:
        """Place (or move) an agent; takes effect at its next start."""
        if launcher not in self.launchers:
            configured = ", ".join(sorted(self.launchers)) or "none"
            raise ControlError("bad_request", f"launcher {launcher!r} is not configured on this ECA "
                               f"(configured: {configured})", field="launcher")
        try:
            self.make_spec(Placement(name, host, launcher, dict(options), bool(autostart)))
        except LaunchError as e:
            raise ControlError("bad_request", e.reason, field="options") from None
        except (TypeError, ValueError) as e:
            raise ControlError("bad_request", f"invalid placement: {e}") from None
        try:
            row = await self.store.set_placement(name, host, launcher, options, autostart, author)
        except StoreError as e:
            raise control_error(e) from None
        entry = self.entries.setdefault(name, Supervised(name))
        entry.placement = row
        self._changed(entry)
        return self.describe(entry)

    async def unplace(self, name: str) -> None:
        """Forget an agent's placement; C{conflict} while it runs."""
        entry = self._entry(name)
        if entry.record is not None or entry.lock.locked or entry.state == "restarting":
            raise ControlError("conflict", f"{name} is {entry.state}: stop it first")
        try:
            await self.store.delete_placement(name)
        except StoreError as e:
            if e.code != "not_found":
                raise control_error(e) from None
        _cancel(entry)
        del self.entries[name]

    # -- commands -----------------------------------------------------------------------------

    async def start(self, name: str) -> dict[str, Any]:
        """
        Start an agent (a no-op if it runs); clears flapping, failures and
        back-off.  Fails with the launcher's error (the state is then
        C{failed}).
        """
        entry = self._entry(name)
        entry.wanted = True
        _cancel(entry)
        if entry.state in ("flapping", "failed", "restarting", "stopped", "unknown"):
            entry.deaths.clear()
            entry.step = 0
            entry.restarts = 0
        await self._locked(entry, self._launch)
        return self.describe(entry)

    async def stop(self, name: str) -> dict[str, Any]:
        """Stop an agent (graceful, then its group killed after the grace period)."""
        entry = self._entry(name)
        await self._stop(entry)
        return self.describe(entry)

    async def restart(self, name: str) -> dict[str, Any]:
        """Stop, then start (a manual start: flapping is cleared)."""
        await self.stop(name)
        return await self.start(name)

    async def output(self, name: str, lines: int) -> dict[str, Any]:
        """The last C{lines} lines of the agent's output (its current or last run)."""
        entry = self._entry(name)
        record = entry.record or entry.last_record
        if record is None:
            raise ControlError("conflict", f"{name} has not been started by this ECA: no output known")
        launcher = self.launchers.get(record.launcher)
        if launcher is None:
            raise ControlError("conflict", f"launcher {record.launcher} is not configured on this ECA")
        try:
            text = await launcher.tail(record, lines)
        except LaunchError as e:
            raise control_error(e) from None
        return {"agent": name, "text": text}

    async def _locked(self, entry: Supervised, work: Callable[[Supervised], Awaitable[None]]) -> None:
        await entry.lock.acquire()
        try:
            await work(entry)
        finally:
            entry.lock.release()

    async def _launch(self, entry: Supervised) -> None:
        """Start C{entry} unless it runs (the caller holds its lock)."""
        if entry.record is not None or not entry.wanted:
            return
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
            self._set(entry, "starting")
            record = await launcher.start(spec, where)
        except Exception as e:
            error = e if isinstance(e, LaunchError) else LaunchError("failed", f"{type(e).__name__}: {e}")
            if not isinstance(e, LaunchError):
                self._log.failure("starting {agent}", agent=entry.name)
            self.log_event("error", f"{entry.name} could not be started: {error.reason}")
            self._set(entry, "failed", f"{error.code}: {error.reason}")
            raise control_error(error) from None
        entry.record = entry.last_record = record
        entry.status = AgentStatus(entry.name, True, record.pid, record.job_id, None, record.started, "running")
        entry.unstored = None
        try:
            await self.store.record_launch(entry.name, record.launcher, record.host, record.to_json())
        except StoreError as e:
            # Until it is stored a restarted ECA would not adopt the agent:
            # every poll tries again (DeathWatch.poll).
            entry.unstored = record
            self._log.error("launch record of {agent} not stored, trying again: {error}",
                            agent=entry.name, error=e.reason)
        if entry.record is not record:
            return  # it died meanwhile (and _died has dealt with it)
        self._set(entry, "running")
        early, entry.early_exit = entry.early_exit, None
        if early is not None and early.pid == record.pid:
            self._died(entry, early)

    async def _stop(self, entry: Supervised) -> None:
        entry.wanted = False
        _cancel(entry)
        await entry.lock.acquire()
        try:
            record = entry.record
            if record is None:
                entry.next_restart = None
                if entry.state != "stopped":
                    self._set(entry, "stopped")
                return
            launcher = self.launchers.get(record.launcher)
            if launcher is None:
                raise ControlError("conflict", f"launcher {record.launcher} is not configured on this ECA")
            entry.stopping = True
            try:
                status = await launcher.stop(record, self.grace)
            except LaunchError as e:
                self._set(entry, "failed", f"stop failed: {e.code}: {e.reason}")
                raise control_error(e) from None
            finally:
                entry.stopping = False
            entry.record = None
            entry.status = status
            await self._forget(entry.name)
            self._set(entry, "stopped")
        finally:
            entry.lock.release()

    async def _forget(self, name: str) -> None:
        try:
            await self.store.delete_launch(name)
        except StoreError as e:
            self._log.error("launch record of {agent} not deleted: {error}", agent=name, error=e.reason)


def _cancel(entry: Supervised) -> None:
    if entry.timer is not None and entry.timer.active():
        entry.timer.cancel()
    entry.timer = None
    entry.next_restart = None
