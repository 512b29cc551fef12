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

  - B{Restart with back-off, or flapping.}  An agent that dies without
    being stopped by us is started again after a back-off (1, 2, 4... 60 s);
    five quick deaths within a minute mark it C{flapping}: not restarted, an
    error line for operators, cleared by a manual start
    (L{agents.eca.supervisor.policy}; the constructor's C{backoff_*},
    C{reset_after} and C{flap_*} parameters).
  - B{Prompt deaths.}  A launcher that has C{on_exit(callback)} (the local
    one) tells us at once; every agent with a launch record is also polled
    with C{status()} every C{poll_interval} seconds (C{remote_poll_interval},
    15 s, for the C{ssh} and C{slurm} launchers: each poll of a remote host
    is a new SSH connection or a C{squeue} call), in parallel, with at
    most one poll in flight per agent (each launcher keeps its own timeout).
  - B{One operation at a time per agent}: the agent's machine (the table
    C{fsm/agent.yaml}, L{agents.eca.supervisor.agent_machine}) refuses to
    launch twice: a start while it is starting loops, and its caller waits
    for the machine to settle, so concurrent starts start it once.
  - B{Persist, then tell.}  The launch record is stored when an agent has
    started and deleted when it is stopped or found gone; on its start the
    ECA asks each stored record's launcher for its status and adopts the
    agents still running (no duplicate is started) and forgets the others
    (L{resume}).  L{stop_all} stops everything it started or adopted.
  - Every change of an agent's description (L{describe}) is passed to
    C{on_change} (the ECA publishes it as an C{agent} event), once per
    change.

The supervisor is the machines' peer: it implements their outputs
(L{agent_machine.AgentOutputs}: launcher, store, timer, events) and turns
what the launchers and the store answer into the machines' inputs.  Deaths
are found by L{agents.eca.supervisor.watch.DeathWatch} and classified by
the pure L{agents.eca.supervisor.policy} before they are fed.  A stop that
the launcher refuses leaves the agent C{unknown} (it may still run), with
the reason C{stop failed: ...}.

All timing uses the injected clock.

(About 420 lines: this is the one coordinator of the supervision, the
interfaces' agent commands and the machines' outputs side by side; its I/O
edges are L{agents.eca.supervisor.launching} and
L{agents.eca.supervisor.watch}, its decisions the table and the policy.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from automat import NoTransition
from twisted.internet import defer, task
from twisted.logger import Logger

from agents.eca.supervisor.agent_machine import Supervised, agent_machine, agent_table_path, new_machine
from agents.eca.supervisor.launching import Launching
from agents.eca.supervisor.policy import BackoffPolicy
from agents.eca.supervisor.spec import PLUGINS, agent_args, control_error, describe, spec_for
from agents.eca.supervisor.watch import DeathWatch
from ecs.control import ControlError
from ecs.fsm.table import AGENT_STATES, StateTable, load_table
from ecs.launch import AgentSpec, AgentStatus, ILauncher, LaunchError, LaunchRecord, Placement
from ecs.store import StoreError

STATES = AGENT_STATES
"""The supervision states (see the module docstring)."""

#: Table states in which a launch or a stop is in flight: requests wait for them.
_BUSY = ("starting", "stopping")


class Supervisor:
    """
    Starts, stops and watches the placed agents (see the module docstring).

    @param store: the ECA's store (placements and launch records).
    @param launchers: the configured L{ILauncher}s by name.
    @param clock: the reactor (C{IReactorTime}).
    @param registered: C{registered(agent, record)}: whether the registry
        knows the agent (and, for a record with a pid, that very process).
    @param on_change: called with L{describe} of an agent whenever it changes.
    @param log_event: C{log_event(level, message)}: a log line for operators.
    @param partition_of: the partition an agent serves, or C{None} (global
        systems, sim hosts): named in its log lines (a flapping detector's
        line says which partition loses it).  By default a PCA's own.
    @param table: the agent lifecycle table (default: the shipped C{fsm/agent.yaml}).
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
        partition_of: Callable[[str], str | None] | None = None,
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
        table: StateTable | None = None,
    ) -> None:
        self.store = store
        self.launchers = dict(launchers)
        self.clock = clock
        self.registered = registered
        self.on_change = on_change
        self.log_event = log_event
        self.partition_of = partition_of or _own_partition
        self.make_spec = make_spec
        self.policy = BackoffPolicy(backoff_initial, backoff_max, reset_after, flap_count, flap_window,
                                    flap_min_run)
        self.poll_interval = poll_interval
        self.remote_poll_interval = remote_poll_interval
        self.grace = grace
        self.table = table if table is not None else load_table(agent_table_path())
        agent_machine(self.table)  # refuse a table that does not match the behaviours now
        self.entries: dict[str, Supervised] = {}
        self.launching = Launching(self.launchers, store, make_spec, grace, self._feed)
        self.watch = DeathWatch(self.entries, self.launchers, store, clock, self._feed, self._track,
                                self.policy, poll_interval, remote_poll_interval)
        self._poll = task.LoopingCall(self.poll)
        self._poll.clock = clock
        self._pending: set[defer.Deferred[Any]] = set()
        #: Whether agents are started on their own (L{resume}'s C{autostart}).
        self.autostart = False

    # -- reading -----------------------------------------------------------------

    def shown_state(self, entry: Supervised) -> str:
        """What operators see of C{entry}'s machine state (one of L{STATES})."""
        return self.table.summary(entry.state)

    def describe(self, entry: Supervised) -> dict[str, Any]:
        """The API's view of an agent."""
        return describe(entry, self.shown_state(entry), bool(self.registered(entry.name, entry.record)))

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

    def _new_entry(self, name: str, placement: Any = None) -> Supervised:
        entry = self.entries.get(name)
        if entry is None:
            entry = self.entries[name] = new_machine(Supervised(name, self, placement), self.table)
        return entry

    def _changed(self, entry: Supervised) -> None:
        """Tell C{on_change} if the description changed since it was last told."""
        if entry.name not in self.entries or entry.state == "stopping":
            return  # a stop is told once its outcome is known
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

    # -- feeding the machines ----------------------------------------------------------

    def _feed(self, entry: Supervised, input: str, *args: Any) -> None:
        """
        Give C{input} to C{entry}'s machine.  Fed from one of its outputs it
        is queued by Automat until the transition ends; when the outermost
        input is done and no launch or stop is in flight, the callers
        waiting for the agent (L{_settled}) are resumed.
        """
        entry.feeding += 1
        try:
            getattr(entry.machine, input)(*args)
        except NoTransition:
            self._log.failure("{agent}: {input} refused in state {state}", agent=entry.name, input=input,
                              state=entry.state)
        finally:
            entry.feeding -= 1
        if entry.feeding == 0 and entry.state not in _BUSY:
            waiters, entry.waiters = entry.waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _settled(self, entry: Supervised) -> defer.Deferred[None]:
        """Fires once C{entry} has neither a launch nor a stop in flight."""
        waiter: defer.Deferred[None] = defer.Deferred()
        entry.waiters.append(waiter)
        return waiter

    # -- the machines' outputs (agent_machine.AgentOutputs) ------------------------------

    def L_start(self, agent: Supervised) -> None:
        """Start C{agent} with its placement's launcher."""
        self._track(defer.Deferred.fromCoroutine(self.launching.launch(agent)))

    def L_stop(self, agent: Supervised) -> None:
        """Stop C{agent} (graceful, then its group killed after the grace period)."""
        self._track(defer.Deferred.fromCoroutine(self.launching.halt(agent)))

    def S_forget(self, agent: Supervised) -> None:
        """Delete C{agent}'s launch record."""
        self._track(defer.Deferred.fromCoroutine(self.launching.forget(agent.name)))

    def T_schedule(self, agent: Supervised, delay: float) -> None:
        """Feed C{backoff_elapsed} in C{delay} seconds."""
        agent.next_restart = self.clock.seconds() + delay
        agent.timer = self.clock.callLater(delay, self._feed, agent, "backoff_elapsed")

    def T_cancel(self, agent: Supervised) -> None:
        """Cancel C{agent}'s back-off timer."""
        if agent.timer is not None and agent.timer.active():
            agent.timer.cancel()
        agent.timer = None
        agent.next_restart = None

    def E_changed(self, agent: Supervised) -> None:
        """Publish C{agent}'s description if it changed."""
        self._changed(agent)

    def E_log(self, agent: Supervised, level: str, message: str) -> None:
        """A log line for operators, naming the partition the agent serves."""
        partition = self.partition_of(agent.name)
        self.log_event(level, message if partition is None else f"{message} (partition {partition})")

    def W_died(self, agent: Supervised, status: AgentStatus) -> None:
        """C{agent} died before its launch was answered."""
        self.watch.died(agent, status)

    def _track(self, d: defer.Deferred[Any]) -> None:
        """Keep a background Deferred until it fires (errors are logged)."""
        self._pending.add(d)
        d.addErrback(lambda f: self._log.failure("supervisor background work", f))
        d.addBoth(lambda _: self._pending.discard(d))

    # -- start-up and shut-down --------------------------------------------------------

    async def resume(self, autostart: bool = False) -> None:
        """
        Load the placements, adopt the agents of the stored launch records
        that still run (forget the others), start every autostart agent
        that does not run when C{autostart}, and start watching.
        """
        self.autostart = autostart
        for row in await self.store.placements():
            self._new_entry(row.agent, row)
        for launcher in self.launchers.values():
            hook = getattr(launcher, "on_exit", None)
            if callable(hook):
                hook(self.watch.exited)
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
        entry = self._new_entry(row.agent)
        if not await self.launching.adopt(entry, row.record) and entry.placement is None:
            del self.entries[row.agent]

    async def _autostart(self, entry: Supervised) -> None:
        try:
            await self.start(entry.name)
        except ControlError as e:
            self._log.warn("autostart of {agent} failed: {reason}", agent=entry.name, reason=e.reason)

    def poll(self) -> None:
        """Ask for the status of every agent with a launch record (see L{DeathWatch.poll})."""
        self.watch.poll()

    def detach(self) -> None:
        """Stop watching (timers, polls); leave the agents running."""
        self.watch.closed = True
        if self._poll.running:
            self._poll.stop()
        for entry in self.entries.values():
            self.T_cancel(entry)

    async def stop_all(self) -> None:
        """Stop every agent started or adopted (in parallel), then stop watching."""
        self.detach()
        running = [e for e in self.entries.values() if e.record is not None or e.state in _BUSY]

        async def stop_one(entry: Supervised) -> None:
            try:
                await self._stop(entry)
            except Exception as e:
                self._log.error("{agent} not stopped: {error}", agent=entry.name, error=e)

        await defer.gatherResults([defer.Deferred.fromCoroutine(stop_one(e)) for e in running])

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
        entry = self._new_entry(name)
        entry.placement = row
        self._changed(entry)
        return self.describe(entry)

    async def unplace(self, name: str) -> None:
        """Forget an agent's placement; C{conflict} while it runs."""
        entry = self._entry(name)
        if entry.record is not None or entry.state in (*_BUSY, "restarting"):
            raise ControlError("conflict", f"{name} is {self.shown_state(entry)}: stop it first")
        try:
            await self.store.delete_placement(name)
        except StoreError as e:
            if e.code != "not_found":
                raise control_error(e) from None
        self.T_cancel(entry)
        del self.entries[name]

    # -- commands -----------------------------------------------------------------------------

    async def start(self, name: str) -> dict[str, Any]:
        """
        Start an agent (a no-op if it runs); clears flapping, failures and
        back-off.  Fails with the launcher's error (the state is then
        C{failed}).
        """
        entry = self._entry(name)
        while entry.state == "stopping":
            await self._settled(entry)
        entry.error = None
        self._feed(entry, "start_requested")
        while entry.state == "starting":
            await self._settled(entry)
        if entry.state == "failed" and entry.error is not None:
            raise control_error(entry.error)
        return self.describe(entry)

    async def stop(self, name: str) -> dict[str, Any]:
        """Stop an agent (graceful, then its group killed after the grace period)."""
        entry = self._entry(name)
        await self._stop(entry)
        return self.describe(entry)

    async def _stop(self, entry: Supervised) -> None:
        while entry.state == "starting":
            await self._settled(entry)
        record = entry.record
        if record is not None and entry.state != "stopping" and record.launcher not in self.launchers:
            raise ControlError("conflict", f"launcher {record.launcher} is not configured on this ECA")
        entry.error = None
        self._feed(entry, "stop_requested")
        while entry.state == "stopping":
            await self._settled(entry)
        if entry.state == "unknown" and entry.error is not None:
            raise control_error(entry.error)

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


def _own_partition(name: str) -> str | None:
    """A PCA's partition (C{pca:P}); C{None} for the other agents."""
    kind, _, agent_id = name.partition(":")
    return agent_id if kind == "pca" else None


__all__ = ["PLUGINS", "STATES", "Supervised", "Supervisor", "agent_args", "control_error", "spec_for"]
