# -*- test-case-name: tests.test_agent_machine -*-
"""
The lifecycle of one supervised agent: the table C{fsm/agent.yaml} run by
Automat, one machine per placed agent.

The table gives the topology (states as operators see them, inputs as
events); this module gives the behaviour of each row (L{BEHAVIOURS}, keyed
by C{(state, input)}), checked against the table when the machine is built:
a row without behaviour, or a behaviour without row, is refused.  A row's
behaviour updates the agent's data (L{Supervised}, the machine's core) and
calls the supervisor through L{AgentOutputs}, whose names say which peer
they reach: C{L_} the launcher, C{S_} the store, C{T_} the back-off timer,
C{E_} the events and the operators' log, C{W_} the death watch.

Nothing here does I/O or reads a clock: the supervisor
(L{agents.eca.supervisor.supervisor}) turns launcher answers, deaths
(classified by L{agents.eca.supervisor.policy}) and timers into inputs.  An
input fed from inside an output is queued by Automat and handled after the
current transition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from agents.eca.supervisor.policy import Death, Flap, Restart
from ecs.fsm.build import Behaviour, Built, build_machine
from ecs.fsm.systems import agent_table_path
from ecs.fsm.table import StateTable, load_table
from ecs.launch import AgentStatus, LaunchError, LaunchRecord


class AgentInputs(Protocol):
    """The events of an agent's lifecycle (the inputs of C{fsm/agent.yaml})."""

    def start_requested(self) -> None:
        """An operator (or autostart) asked for the agent to run."""

    def launched(self, record: LaunchRecord) -> None:
        """The launcher started it and its record is stored."""

    def launch_failed(self, error: LaunchError) -> None:
        """The launcher could not start it."""

    def died_restartable(self, status: AgentStatus, decision: Restart) -> None:
        """It died and the policy says: restart after the back-off."""

    def died_flapping(self, status: AgentStatus, decision: Flap) -> None:
        """It died and the policy says: flapping, give up."""

    def ended(self, status: AgentStatus | None, reason: str) -> None:
        """It is gone and is not to be restarted (ECA shutting down, or gone before it started)."""

    def backoff_elapsed(self) -> None:
        """The back-off timer fired."""

    def stop_requested(self) -> None:
        """An operator (or the ECA's shutdown) asked for the agent to stop."""

    def stop_done(self, status: AgentStatus | None) -> None:
        """The launcher stopped it (C{None}: there was nothing to stop)."""

    def stop_failed(self, error: LaunchError) -> None:
        """The launcher could not stop it."""

    def status_running(self, status: AgentStatus) -> None:
        """The launcher says it runs."""

    def status_unknown(self, reason: str) -> None:
        """The launcher cannot tell now."""


class AgentOutputs(Protocol):
    """What an agent machine asks of the supervisor."""

    def L_start(self, agent: Supervised) -> None:
        """Start the agent; feed C{launched} or C{launch_failed} when the launcher answers."""

    def L_stop(self, agent: Supervised) -> None:
        """Stop the agent; feed C{stop_done} or C{stop_failed} when the launcher answers."""

    def S_forget(self, agent: Supervised) -> None:
        """Delete the agent's stored launch record."""

    def T_schedule(self, agent: Supervised, delay: float) -> None:
        """Feed C{backoff_elapsed} in C{delay} seconds (sets C{agent.timer}, C{next_restart})."""

    def T_cancel(self, agent: Supervised) -> None:
        """Cancel the back-off timer."""

    def E_changed(self, agent: Supervised) -> None:
        """The agent's description may have changed: tell the subscribers if it did."""

    def E_log(self, agent: Supervised, level: str, message: str) -> None:
        """A log line for operators."""

    def W_died(self, agent: Supervised, status: AgentStatus) -> None:
        """It died (seen before its launch was answered): classify the death and feed it."""


@attrs.define(eq=False)
class Supervised:
    """
    What the supervisor knows of one agent: the core of its machine.

    C{state} is the table's state, written by the machine only; the
    operators see its summary (L{Supervisor.describe}).  The remaining
    fields are data, not sub-states: what the launcher and the store said
    (C{record}, C{status}, C{early_exit}: an exit seen before the launch
    was answered; C{unstored}: a record the store refused, stored again at
    the next poll), the back-off history and the I/O in flight (C{polling},
    C{storing}: at most one status poll and one store retry per agent).
    """

    name: str
    out: AgentOutputs
    placement: Any = None  # a PlacementRow, or None for a record without placement
    state: str = "stopped"
    record: LaunchRecord | None = None
    last_record: LaunchRecord | None = None
    status: AgentStatus | None = None
    reason: str = ""
    error: LaunchError | None = None
    restarts: int = 0
    next_restart: float | None = None
    step: int = 0
    deaths: tuple[Death, ...] = ()
    timer: IDelayedCall | None = None
    early_exit: AgentStatus | None = None
    sent: dict[str, Any] | None = None
    unstored: LaunchRecord | None = None
    last_polled: float | None = None
    polling: bool = False
    storing: bool = False
    machine: Any = None  # the AgentInputs of its Automat machine (set by new_machine)
    feeding: int = 0  # nesting of inputs being fed (the supervisor settles at 0)
    waiters: list[defer.Deferred[None]] = attrs.field(factory=list)


# --- behaviours: what each row of fsm/agent.yaml does -------------------------------


def _nothing(agent: Supervised, *args: object) -> None:
    """An input that changes nothing here (e.g. a second start while starting)."""


def _reset(agent: Supervised) -> None:
    agent.deaths = ()
    agent.step = 0
    agent.restarts = 0
    agent.reason = ""


def _start(agent: Supervised) -> None:
    _reset(agent)
    agent.out.L_start(agent)


def _cancel_and_start(agent: Supervised) -> None:
    agent.out.T_cancel(agent)
    _start(agent)


def _backoff_elapsed(agent: Supervised) -> None:
    agent.timer = None
    agent.next_restart = None
    agent.restarts += 1
    agent.out.L_start(agent)


def _launched(agent: Supervised, record: LaunchRecord) -> None:
    agent.record = agent.last_record = record
    agent.status = AgentStatus(agent.name, True, record.pid, record.job_id, None, record.started, "running")
    agent.reason = ""
    early, agent.early_exit = agent.early_exit, None
    if early is not None and early.pid == record.pid:
        agent.out.W_died(agent, early)


def _launch_failed(agent: Supervised, error: LaunchError) -> None:
    agent.error = error
    agent.reason = f"{error.code}: {error.reason}"
    agent.out.E_log(agent, "error", f"{agent.name} could not be started: {error.reason}")


def _gone(agent: Supervised, status: AgentStatus | None) -> None:
    agent.record = None
    if status is not None:
        agent.status = status
    agent.out.S_forget(agent)


def _died_restartable(agent: Supervised, status: AgentStatus, decision: Restart) -> None:
    _gone(agent, status)
    agent.deaths, agent.step = decision.deaths, decision.step
    agent.out.T_schedule(agent, decision.delay)
    agent.out.E_log(agent, "warn", f"{agent.name} died ({status.detail}): restarting in {decision.delay:g} s")
    agent.reason = f"{status.detail}: restarting in {decision.delay:g} s"


def _died_flapping(agent: Supervised, status: AgentStatus, decision: Flap) -> None:
    _gone(agent, status)
    agent.deaths = decision.deaths
    agent.next_restart = None
    agent.out.E_log(agent, "error", f"{agent.name} is flapping: {decision.reason}")
    agent.reason = decision.reason


def _ended(agent: Supervised, status: AgentStatus | None, reason: str) -> None:
    _gone(agent, status)
    agent.reason = reason


def _ended_before(agent: Supervised, status: AgentStatus | None, reason: str) -> None:
    if status is not None:
        agent.status = status
    agent.reason = reason


def _stop(agent: Supervised) -> None:
    agent.out.L_stop(agent)


def _stopped(agent: Supervised) -> None:
    agent.next_restart = None
    agent.reason = ""


def _cancel_and_stopped(agent: Supervised) -> None:
    agent.out.T_cancel(agent)
    _stopped(agent)


def _stop_done(agent: Supervised, status: AgentStatus | None) -> None:
    agent.record = None
    if status is not None:
        agent.status = status
    _stopped(agent)


def _stop_failed(agent: Supervised, error: LaunchError) -> None:
    agent.error = error
    agent.reason = f"stop failed: {error.code}: {error.reason}"


def _status_running(agent: Supervised, status: AgentStatus) -> None:
    agent.status = status
    agent.reason = ""


def _status_unknown(agent: Supervised, reason: str) -> None:
    agent.reason = reason


#: The behaviour of every row of C{fsm/agent.yaml}, by (state, input).
BEHAVIOURS: dict[tuple[str, str], Callable[..., None]] = {
    ("stopped", "start_requested"): _start,
    ("stopped", "stop_requested"): _nothing,
    ("stopped", "status_running"): _status_running,
    ("stopped", "status_unknown"): _status_unknown,
    ("stopped", "ended"): _ended_before,
    ("starting", "start_requested"): _nothing,
    ("starting", "stop_requested"): _nothing,
    ("starting", "launched"): _launched,
    ("starting", "launch_failed"): _launch_failed,
    ("running", "start_requested"): _nothing,
    ("running", "stop_requested"): _stop,
    ("running", "status_running"): _status_running,
    ("running", "status_unknown"): _status_unknown,
    ("running", "died_restartable"): _died_restartable,
    ("running", "died_flapping"): _died_flapping,
    ("running", "ended"): _ended,
    ("stopping", "start_requested"): _nothing,
    ("stopping", "stop_requested"): _nothing,
    ("stopping", "stop_done"): _stop_done,
    ("stopping", "stop_failed"): _stop_failed,
    ("restarting", "start_requested"): _cancel_and_start,
    ("restarting", "stop_requested"): _cancel_and_stopped,
    ("restarting", "backoff_elapsed"): _backoff_elapsed,
    ("flapping", "start_requested"): _start,
    ("flapping", "stop_requested"): _stopped,
    ("failed", "start_requested"): _start,
    ("failed", "stop_requested"): _stopped,
    ("unknown", "start_requested"): _reset,
    ("unknown", "stop_requested"): _stop,
    ("unknown", "status_running"): _status_running,
    ("unknown", "status_unknown"): _status_unknown,
    ("unknown", "died_restartable"): _died_restartable,
    ("unknown", "died_flapping"): _died_flapping,
    ("unknown", "ended"): _ended,
}


_log = Logger()


def _behaviour_for(state: str, input: str, target: str) -> Behaviour:
    """Row C{[state, input, target]}: trace it, run its behaviour, tell the change."""
    try:
        behaviour = BEHAVIOURS[state, input]
    except KeyError:
        raise ValueError(f"agent table row [{state}, {input}, {target}] has no behaviour in code") from None

    def run(agent: Supervised, *args: Any) -> None:
        _log.debug("agent {agent}: {old} -{input}-> {new}", agent=agent.name, old=state, input=input, new=target)
        behaviour(agent, *args)
        agent.out.E_changed(agent)

    return run


_BUILT: dict[StateTable, Built] = {}


def agent_machine(table: StateTable | None = None) -> Built:
    """
    The Automat machine of the agent table (the shipped one by default),
    built once per table.

    @raise ValueError: if the table is not an agent table, or its rows and
        L{BEHAVIOURS} do not match.
    """
    table = load_table(agent_table_path()) if table is None else table
    built = _BUILT.get(table)
    if built is not None:
        return built
    if table.kind != "agent":
        raise ValueError(f"{table.source}: not an agent table (kind: {table.kind})")
    extra = sorted(set(BEHAVIOURS) - set(table.rows))
    if extra:
        raise ValueError(f"{table.source}: behaviours in code for rows the table lacks: {extra}")
    built = _BUILT[table] = build_machine(table, AgentInputs, Supervised, _behaviour_for)
    return built


def new_machine(agent: Supervised, table: StateTable | None = None) -> Supervised:
    """Give C{agent} its machine, in its current C{state}; returns C{agent}."""
    built = agent_machine(table)
    agent.machine = built.start(agent, agent.state)
    return agent


__all__ = ["BEHAVIOURS", "AgentInputs", "AgentOutputs", "Supervised", "agent_machine", "agent_table_path",
           "new_machine"]
