# -*- test-case-name: tests.test_controller -*-
"""
One controlled system: a state table, an action, and the rules between them.

L{SystemController} is the behaviour of the original detector and
global-system controllers (behaviour reference §3.2-3.3), without their
bugs:

- a command that arrives while a transition runs gets C{busy}, except
  C{abort} and C{reset}, which are always considered;
- a command the table does not allow in the current state gets
  C{not_allowed} with the state and the inputs that are possible;
- C{configure} with the configuration the system already has (same id, and
  the system Active) passes through the configuring states without work;
- C{abort} stops a running action at once (the script's process group is
  killed) and the system goes back along the table's C{abort} row;
- a failing step leads along C{error} (or C{abort} where the table has no
  error row, as the three-step detector) with the reason as comment;
- the configuration tag is kept while configured and cleared on abort,
  error and reset;
- every state change is reported through C{emit} with a sequence number;
  the first report after the process starts (L{SystemController.publish},
  called by the host once the partition is reachable) has number 0.

The transitions are made by the Automat machine built from the table
(L{ecs.fsm.machine.Machine}), which also runs what a transition does: the
outputs of L{OUTPUTS}, keyed by (input, summary of the target state), are
methods of the controller.  Entering a C{Configuring} state runs the step's
action (C{A_run_step}), C{configure} takes the configuration
(C{C_take_config}), C{abort}/C{error}/C{reset}/C{resolved} forget it
(C{C_forget_config}), and every transition is logged and reported
(C{C_report}).  An input the table refuses is answered C{not_allowed}.
Inputs that arise while the machine handles another (a step that finished
at once) are queued and fed after it, never reentrantly.

It knows nothing about sockets: the hosting service (L{agents.controller.host}) turns
requests into L{SystemController.command} calls and sends what C{emit}
receives.  A global system has one of these per partition, each with its
own action and abort flag (the original shared one across partitions).

(About 400 lines, kept whole: the command rules and the outputs the machine
runs share one system's state; the hosting is in L{agents.controller.host}.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from agents.controller.actions import ActionFailed, ActionRequest, IAction
from ecs import protocol
from ecs.fsm.machine import InvalidTransition, Machine, StateTable, Transition
from ecs.fsm.table import INPUTS, SUMMARY_STATES
from ecs.net.transport import RequestError

#: Commands a partition may send to a system.
COMMANDS = ("configure", "abort", "reset", "error", "start", "stop")
#: Commands never refused as busy.
ALWAYS_ACCEPTED = ("abort", "reset")

#: Inputs after which the configuration and its tag are forgotten.
FORGETTING = ("abort", "error", "reset", "resolved")

Emit = Callable[[dict[str, Any]], None]


def _outputs() -> dict[tuple[str, str], tuple[str, ...]]:
    """The outputs of every (input, target summary): see the module docstring."""
    registry: dict[tuple[str, str], tuple[str, ...]] = {}
    for input in INPUTS:
        for summary in SUMMARY_STATES:
            names: list[str] = []
            if input in FORGETTING:
                names.append("C_forget_config")
            if input == "configure":
                names.append("C_take_config")
            names.append("C_report")
            if summary == "Configuring" and input in ("configure", "success"):
                names.append("A_run_step")
            registry[input, summary] = tuple(names)
    return registry


#: Output method names of L{SystemController}, by (input, target summary).
OUTPUTS = _outputs()


@attrs.frozen
class Note:
    """What a transition is fed with, besides its input."""

    comment: str | None = None
    """The new comment, or C{None} to keep the current one."""
    config: dict[str, Any] | None = None
    """The checked configuration (C{configure} only)."""
    same: bool = False
    """Whether it is the configuration the system already has (walk through without work)."""


def validate_config(system: str, config: object) -> dict[str, Any]:
    """
    Check a configuration sent with C{configure}.

    @return: the configuration, normalised.
    @raise RequestError: C{bad_request} naming the field that is wrong.
    """
    if not isinstance(config, dict):
        raise RequestError(
            protocol.BAD_REQUEST,
            f"configure needs 'config': an object with config_id and parameters, got {type(config).__name__}",
        )
    config_id = config.get("config_id")
    if not isinstance(config_id, str) or not config_id or len(config_id) > 200:
        raise RequestError(
            protocol.BAD_REQUEST, "config.config_id must be a non-empty string of at most 200 characters"
        )
    parameters = config.get("parameters", {})
    if not isinstance(parameters, dict):
        raise RequestError(protocol.BAD_REQUEST, "config.parameters must be an object")
    target = config.get("system", system)
    if target != system:
        raise RequestError(
            protocol.BAD_REQUEST,
            f"configuration {config_id!r} is for system {target!r}, not {system!r}",
        )
    unknown = sorted(set(config) - {"config_id", "parameters", "system"})
    if unknown:
        raise RequestError(protocol.BAD_REQUEST, f"unexpected config field(s): {', '.join(unknown)}")
    return {"config_id": config_id, "system": system, "parameters": parameters}


class SystemController:
    """The state, tag and running action of one system (in one partition)."""

    _log = Logger()

    def __init__(
        self,
        system: str,
        table: StateTable,
        action: IAction,
        emit: Emit,
        partition: str | None = None,
        start_state: str | None = None,
        start_tag: str | None = None,
        verbose: bool = True,
    ) -> None:
        self.system = system
        self._verbose = verbose
        self.partition = partition
        self.table = table
        self.action = action
        self._emit = emit
        self.tag: str | None = start_tag
        self.comment = ""
        self.config: dict[str, Any] | None = None
        self.seq = 0
        self._announced = False
        self._running = False
        self._step: defer.Deferred[None] | None = None
        self._interrupt: str | None = None
        self._later: deque[Callable[[], None]] = deque()
        self._draining = False
        self.machine = Machine(table, start_state, outputs=self, registry=OUTPUTS)

    @property
    def state(self) -> str:
        """The current state of the table."""
        return self.machine.state

    @property
    def busy(self) -> bool:
        """Whether a transition's work is running."""
        return self._running

    def status(self) -> dict[str, Any]:
        """What a status query answers, and what every update carries."""
        return {
            "system": self.system,
            "partition": self.partition,
            "state": self.state,
            "summary": self.table.summary(self.state),
            "tag": self.tag,
            "comment": self.comment,
            "seq": self.seq,
        }

    def reply(self) -> dict[str, Any]:
        """What a command or status query answers: the status and C{busy}."""
        return {**self.status(), "busy": self.busy}

    def publish(self) -> None:
        """Report the current state, numbered 0 the first time, then counting up."""
        if self._announced:
            self.seq += 1
        self._announced = True
        try:
            self._emit(self.status())
        except Exception:
            self._log.failure("{system}: state update could not be sent", system=self.system)

    # -- feeding the machine --------------------------------------------------------

    def _fire(self, input: str, comment: str | None = None, config: dict[str, Any] | None = None,
              same: bool = False) -> None:
        """Feed C{input} now; C{not_allowed} if the table refuses it; then run what was queued."""
        try:
            self.machine.fire(input, Note(comment, config, same))
        except InvalidTransition as refused:
            possible = ", ".join(refused.allowed) or "none"
            raise RequestError(
                protocol.NOT_ALLOWED,
                f"{input} is not possible for {self.system} in state {refused.state} "
                f"(possible: {possible})",
            ) from None
        self._drain()

    def _soon(self, work: Callable[[], None]) -> None:
        """Run C{work} now, or after the input being handled if the machine is busy with one."""
        if self.machine.firing or self._draining:
            self._later.append(work)
            return
        work()
        self._drain()

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while self._later:
                self._later.popleft()()
        finally:
            self._draining = False

    # -- outputs (run by the machine; see OUTPUTS) ---------------------------------------

    def C_forget_config(self, step: Transition, note: Note) -> None:
        """Forget the configuration and its tag."""
        self.tag = None
        self.config = None

    def C_take_config(self, step: Transition, note: Note) -> None:
        """Keep the configuration being applied and tag the system with it."""
        if note.config is not None:
            self.config = note.config
            self.tag = note.config["config_id"]

    def C_report(self, step: Transition, note: Note) -> None:
        """Take the comment, log the transition and publish the new state."""
        if note.comment is not None:
            self.comment = note.comment
        if self._verbose:  # a sim host's thousands of transitions are not logged at all
            self._log.emit(
                LogLevel.info,
                "{system}{where}: {old} -{input}-> {new}",
                system=self.system,
                where=f" ({self.partition})" if self.partition else "",
                old=step.old,
                input=step.input,
                new=step.new,
            )
        self.publish()

    def A_run_step(self, step: Transition, note: Note) -> None:
        """Start the action for the configuring state entered (or walk through it)."""
        if note.same:
            if self.machine.can("success"):
                self._soon(lambda: self._fire("success", "same configuration, nothing to do",
                                              same=True))
            return
        if not self.machine.can("success"):
            reason = f"state table has no success row from {step.new}"
            self._soon(lambda: self._finish_failed(reason))
            return
        self._running = True
        request = ActionRequest(self.system, self.partition, "configure", step.new, self.config)
        try:
            running = self.action.run(request)
        except Exception as e:
            self._log.failure("{system}: action raised", system=self.system)
            self._running = False
            reason = f"action raised {type(e).__name__}: {e}"
            self._soon(lambda: self._finish_failed(reason))
            return
        self._step = running
        running.addCallbacks(self._step_succeeded, self._step_failed)
        running.addErrback(self._unexpected)

    def _step_succeeded(self, _: object) -> None:
        self._step = None
        self._running = False
        self._soon(lambda: self._fire("success"))

    def _step_failed(self, failure: Failure) -> None:
        self._step = None
        self._running = False
        if failure.check(defer.CancelledError):
            self._soon(self._finish_interrupted)
        elif isinstance(failure.value, ActionFailed):
            reason = failure.value.reason
            self._soon(lambda: self._finish_failed(reason))
        else:
            self._log.failure("{system}: action raised", failure, system=self.system)
            error = failure.value
            reason = f"action raised {type(error).__name__}: {error}"
            self._soon(lambda: self._finish_failed(reason))

    # -- commands -----------------------------------------------------------------------

    def command(self, command: str, config: object = None) -> dict[str, Any]:
        """
        Handle a command from the partition.

        @return: the status after the command was accepted.
        @raise RequestError: C{busy}, C{not_allowed} or C{bad_request}.
        """
        if command not in COMMANDS:
            raise RequestError(
                protocol.BAD_REQUEST,
                f"unknown command {command!r} (known: {', '.join(COMMANDS)})",
            )
        if self.busy and command not in ALWAYS_ACCEPTED:
            raise RequestError(
                protocol.BUSY, f"{self.system} is busy configuring (state {self.state})"
            )
        if command == "configure":
            return self._configure(validate_config(self.system, config))
        if command == "abort":
            return self._abort()
        if command == "error":
            return self.inject("error")
        self._fire(command, comment="")
        return self.reply()

    def _configure(self, config: dict[str, Any]) -> dict[str, Any]:
        same = (
            self.tag == config["config_id"]
            and self.table.summary(self.state) in ("Active", "Recording")
        )
        self._interrupt = None
        # The action runs synchronously up to the first step that takes time.
        self._fire("configure", comment="", config=config, same=same)
        return self.reply()

    def _finish_interrupted(self) -> None:
        how, self._interrupt = self._interrupt, None
        if how == "error" and self.machine.can("error"):
            self._fire("error", comment="error reported during the transition")
        elif self.machine.can("abort"):
            self._fire("abort", comment="transition aborted")

    def _finish_failed(self, reason: str) -> None:
        if self._interrupt is not None:
            self._finish_interrupted()
            return
        if self.machine.can("error"):
            self._fire("error", comment=f"transition failed: {reason}")
        elif self.machine.can("abort"):
            self._fire("abort", comment=f"transition failed: {reason}")

    def _unexpected(self, failure: Failure) -> None:
        self._log.failure("{system}: configure task failed", failure, system=self.system)

    def _interrupt_running(self, how: str) -> None:
        self._interrupt = how
        step = self._step
        if step is not None:
            step.cancel()

    def _abort(self) -> dict[str, Any]:
        if self.busy:
            self._interrupt_running("abort")
            return self.reply()
        if self.table.summary(self.state) == "Unconfigured" and not self.machine.can("abort"):
            return self.reply()  # nothing to abort: abort is idempotent
        self._fire("abort", comment="aborted")
        return self.reply()

    def inject(self, what: str) -> dict[str, Any]:
        """
        A local fault report from the hardware: C{error} or C{resolved}.

        C{error} interrupts a running transition.
        """
        if what == "error":
            if self.busy:
                self._interrupt_running("error")
                return self.reply()
            self._fire("error", comment="error reported by the subsystem")
            return self.reply()
        if what == "resolved":
            self._fire("resolved", comment="error resolved")
            return self.reply()
        raise RequestError(protocol.BAD_REQUEST, f"cannot inject {what!r} (use error or resolved)")

    def stop(self) -> None:
        """Cancel a running action (agent shutting down)."""
        if self.busy:
            self._interrupt_running("abort")
