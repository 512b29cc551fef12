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

It knows nothing about sockets: the hosting service (L{agents.controller.host}) turns
requests into L{SystemController.command} calls and sends what C{emit}
receives.  A global system has one of these per partition, each with its
own action and abort flag (the original shared one across partitions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from agents.controller.actions import ActionFailed, ActionRequest, IAction
from ecs import protocol
from ecs.fsm.machine import Machine, StateTable
from ecs.net.transport import RequestError

#: Commands a partition may send to a system.
COMMANDS = ("configure", "abort", "reset", "error", "start", "stop")
#: Commands never refused as busy.
ALWAYS_ACCEPTED = ("abort", "reset")

Emit = Callable[[dict[str, Any]], None]


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
        self.machine = Machine(table, start_state)
        self.tag: str | None = start_tag
        self.comment = ""
        self.config: dict[str, Any] | None = None
        self.seq = 0
        self._announced = False
        self._running = False
        self._step: defer.Deferred[None] | None = None
        self._interrupt: str | None = None

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

    def _fire(self, input: str, comment: str | None = None) -> None:
        old = self.state
        self.machine.fire(input)
        if input in ("abort", "error", "reset", "resolved"):
            self.tag = None
            self.config = None
        if comment is not None:
            self.comment = comment
        if self._verbose:  # a sim host's thousands of transitions are not logged at all
            self._log.emit(
                LogLevel.info,
                "{system}{where}: {old} -{input}-> {new}",
                system=self.system,
                where=f" ({self.partition})" if self.partition else "",
                old=old,
                input=input,
                new=self.state,
            )
        self.publish()

    def _refuse_impossible(self, command: str) -> None:
        if not self.machine.can(command):
            possible = ", ".join(self.table.inputs_from(self.state)) or "none"
            raise RequestError(
                protocol.NOT_ALLOWED,
                f"{command} is not possible for {self.system} in state {self.state} "
                f"(possible: {possible})",
            )

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
        self._refuse_impossible(command)
        self._fire(command, comment="")
        return self.reply()

    def _configure(self, config: dict[str, Any]) -> dict[str, Any]:
        self._refuse_impossible("configure")
        same = (
            self.tag == config["config_id"]
            and self.table.summary(self.state) in ("Active", "Recording")
        )
        self.config = config
        self.tag = config["config_id"]
        self._fire("configure", comment="")
        if same:
            # Same configuration as now: walk through without work.
            while self.table.is_configuring(self.state) and self.machine.can("success"):
                self._fire("success", comment="same configuration, nothing to do")
            return self.reply()
        self._interrupt = None
        # Runs synchronously up to the first step that takes time.
        defer.Deferred.fromCoroutine(self._run_steps(config)).addErrback(self._unexpected)
        return self.reply()

    async def _run_steps(self, config: dict[str, Any]) -> None:
        self._running = True
        try:
            while self.table.is_configuring(self.state):
                if not self.machine.can("success"):
                    raise ActionFailed(f"state table has no success row from {self.state}")
                request = ActionRequest(
                    self.system, self.partition, "configure", self.state, config
                )
                self._step = self.action.run(request)
                await self._step
                self._step = None
                self._fire("success")
        except defer.CancelledError:
            self._finish_interrupted()
        except ActionFailed as e:
            self._finish_failed(e.reason)
        except Exception as e:
            self._log.failure("{system}: action raised", system=self.system)
            self._finish_failed(f"action raised {type(e).__name__}: {e}")
        finally:
            self._step = None
            self._running = False

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
        self._refuse_impossible("abort")
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
            self._refuse_impossible("error")
            self._fire("error", comment="error reported by the subsystem")
            return self.reply()
        if what == "resolved":
            self._refuse_impossible("resolved")
            self._fire("resolved", comment="error resolved")
            return self.reply()
        raise RequestError(protocol.BAD_REQUEST, f"cannot inject {what!r} (use error or resolved)")

    def stop(self) -> None:
        """Cancel a running action (agent shutting down)."""
        if self.busy:
            self._interrupt_running("abort")
