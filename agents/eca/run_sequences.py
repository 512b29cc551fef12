# -*- test-case-name: tests.test_run_sequences_eca -*-
"""
(Over 400 lines: the runner of one sequence and the set of them share
their state, the partition's events and the clock closely; split, each
half would reach into the other.)

L{RunSequences}: the declared run sequences (L{ecs.config.run_sequences},
read from C{etc/sequences/} when the ECA starts and again at C{ecs reload},
L{RunSequences.adopt}: a running sequence keeps the steps it started with),
run by the ECA for a partition (issue 14, item 5).

A sequence runs for the user who asked, who must hold the partition's
control: every command step goes through L{Commands.command} as that user,
so it is checked, audited and recorded like the same command from the API.
One sequence at a time per partition.

Each command step waits until the partition settles in the state the
command leads to (configure: the top active state; start: recording;
stop: the top active state; abort: idle), at most its C{timeout}; a wait
of C{seconds} requires the partition to stay where it was (no lower state,
no lost PCA).  The partition is watched through the live events
(L{IEventSource}), checked one turn later (never inside the emitter), and
time is the injected clock's: nothing sleeps.

A step that fails (a command refused, a state not reached in time, the
partition falling) ends the sequence C{failed}, with a C{sequence_failed}
alarm and a logbook entry.  Pause takes effect after the current step;
resume goes on; abort stops waiting at once and aborts the partition (as
the user who aborts).  Every step's start and end is a logbook entry
(L{IELogNotes}) and a C{sequence} live event on the partition's stream,
carrying the status L{SequenceRun.status} also answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from agents.eca.alarms import IAlarms
from agents.eca.commands import Commands
from agents.eca.errors import need
from agents.eca.interfaces import NO_NOTES, IControlScopes, IELogNotes, IEventSource
from agents.eca.partitions import Partitions
from ecs.config.run_sequences import RunSequence, Step
from ecs.control import ControlError, User

#: The alarm kind of a failed sequence.
ALARM_KIND = "sequence_failed"
#: Statuses of a sequence run that are over.
ENDED = ("done", "failed", "aborted", "interrupted")


class StepFailed(Exception):
    """A step did not do what it should; the reason."""


class Aborted(Exception):
    """The sequence was aborted while a step ran."""


class SequenceRun:
    """One run of a sequence for a partition: its status and the coroutine that drives it."""

    def __init__(self, owner: RunSequences, sequence: RunSequence, partition: str, user: User) -> None:
        self.owner = owner
        self.sequence = sequence
        self.partition = partition
        self.user = user
        self.state = "running"
        self.index = 0  # the current step, from 1; 0 before the first
        self.error: str | None = None
        self.failed_step: str | None = None
        self.started_at = owner.clock.seconds()
        self.ended_at: float | None = None
        self.pause_wanted = False
        self._resumed: defer.Deferred[None] | None = None
        self._waiting: defer.Deferred[None] | None = None
        self._timer: IDelayedCall | None = None
        self._check_call: IDelayedCall | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._check: Callable[[], bool] | None = None

    def status(self) -> dict[str, Any]:
        """What is running where: C{{partition, sequence, state, step, total, description, ...}}."""
        step = self.sequence.steps[self.index - 1] if self.index else None
        return {
            "partition": self.partition,
            "sequence": self.sequence.name,
            "user": self.user.name,
            "state": self.state,
            "step": self.index,
            "total": len(self.sequence.steps),
            "description": step.describe() if step else "",
            "pause_wanted": self.pause_wanted,
            "error": self.error,
            "failed_step": self.failed_step,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    # -- driving ----------------------------------------------------------------------------

    async def run(self) -> None:
        steps = self.sequence.steps
        try:
            for number, step in enumerate(steps, 1):
                if self.pause_wanted:
                    await self._paused()
                if self.state != "running":
                    raise Aborted()
                self.index = number
                where = f"step {number}/{len(steps)} ({step.describe()})"
                self.owner.tell(self, f"{where} started")
                await self.do(step)
                self.owner.tell(self, f"{where} done")
            self.end("done", None)
        except Aborted:
            self.end("aborted", None)
        except StepFailed as e:
            step = steps[self.index - 1]
            self.failed_step = f"{self.index}: {step.describe()} ({step.path})"
            self.end("failed", str(e))

    async def _paused(self) -> None:
        self.state = "paused"
        self.owner.tell(self, f"paused before step {self.index + 1}")
        self._resumed = defer.Deferred()
        try:
            await self._resumed
        finally:
            self._resumed = None
        self.state = "running"
        self.owner.tell(self, "resumed")

    async def do(self, step: Step) -> None:
        sequence = self.owner.partitions.sequence
        if step.kind == "wait":
            if "until" in step.args:
                await self.settle(step.args["until"], step.args["timeout"])
            else:
                await self.hold(step.args["seconds"])
            return
        body: dict[str, Any] = {}
        if step.kind == "configure":
            body, goal = {"tag": step.args["tag"], "auto": step.args["auto"]}, sequence.top_active
        elif step.kind == "start":
            body = {k: step.args[k] for k in ("type", "comment") if k in step.args}
            goal = sequence.recording.state if sequence.recording is not None else sequence.top_active
        elif step.kind == "stop":
            body = {"comment": step.args["comment"]} if "comment" in step.args else {}
            goal = sequence.top_active
        else:
            goal = sequence.idle
        before, _ = self.shown()
        try:
            reply = await self.owner.commands.command(self.user, self.partition, step.kind, body)
        except ControlError as e:
            raise StepFailed(f"{step.kind} refused: {e.code}: {e.reason}") from None
        if self.state == "aborting":
            raise Aborted()
        # An operation started (the PCA's reply says so) in the state it leads to (a reconfigure): the
        # goal counts only once the operation was seen and is over.
        started = isinstance(reply, dict) and bool(reply.get("operation")) and before == goal
        await self.settle(goal, step.args["timeout"], started)

    def shown(self) -> tuple[str, Any]:
        details = self.owner.partitions.get(self.partition).details()
        return str(details.get("state")), details.get("operation")

    async def settle(self, goal: str, timeout: float, started: bool = False) -> None:
        """
        Until the partition shows C{goal} with no operation (after the one
        C{started}, if one did); at most C{timeout} seconds.
        """
        seen_operation = [False]

        def check() -> bool:
            state, operation = self.shown()
            if operation:
                seen_operation[0] = True
                return False
            if state == goal and (seen_operation[0] or not started):
                return True
            if seen_operation[0]:
                raise StepFailed(f"the partition is {state}, not {goal}: its operation ended there")
            return False

        await self.watch(check, timeout, f"{goal} not reached within {timeout:g} s")

    async def hold(self, seconds: float) -> None:
        """C{seconds} on the clock, during which the partition must not fall nor lose its PCA."""
        sequence = self.owner.partitions.sequence
        state, _ = self.shown()
        try:
            level = sequence.level_of_state(state)
        except KeyError:
            raise StepFailed(f"cannot wait in state {state}") from None

        def check() -> bool:
            now, _ = self.shown()
            try:
                fell = sequence.level_of_state(now) < level
            except KeyError:
                fell = True
            if fell or not self.owner.partitions.get(self.partition).connected:
                raise StepFailed(f"the partition fell from {state} to {now} during the wait")
            return False

        await self.watch(check, seconds, None)

    async def watch(self, check: Callable[[], bool], seconds: float, timeout_reason: str | None) -> None:
        """Check C{check} now and at every event of the partition; at C{seconds}, fail (or end: no reason)."""
        if check():
            return
        self._check = check
        self._waiting = waiting = defer.Deferred[None]()
        self._timer = self.owner.clock.callLater(seconds, self._elapsed, timeout_reason)
        self._unsubscribe = self.owner.events.subscribe(lambda *_: self._soon(), self.partition)
        try:
            await waiting
        finally:
            self._stop_watching()

    def _soon(self) -> None:
        if self._check_call is None or not self._check_call.active():
            self._check_call = self.owner.clock.callLater(0, self._checked)

    def _checked(self) -> None:
        self._check_call = None
        if self._waiting is None or self._check is None:
            return
        try:
            done = self._check()
        except StepFailed as e:
            self._finish(e)
            return
        if done:
            self._finish(None)

    def _elapsed(self, reason: str | None) -> None:
        self._timer = None
        self._finish(StepFailed(reason) if reason else None)

    def _finish(self, error: Exception | None) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is None:
            return
        if error is None:
            waiting.callback(None)
        else:
            waiting.errback(error)

    def _stop_watching(self) -> None:
        for call in (self._timer, self._check_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._check_call = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._check = None

    # -- control ----------------------------------------------------------------------------

    def interrupt(self, state: str) -> None:
        """Stop waiting now (abort: C{aborting}; the ECA stopping: C{interrupted})."""
        self.state = state
        self._finish(Aborted())
        if self._resumed is not None:
            self._resumed.errback(Aborted())

    def resume(self) -> None:
        self.pause_wanted = False
        if self._resumed is not None:
            self._resumed.callback(None)

    def end(self, state: str, error: str | None) -> None:
        if self.state == "interrupted":
            state = "interrupted"
        self.state, self.error, self.ended_at = state, error, self.owner.clock.seconds()
        self._stop_watching()
        self.owner.ended(self)


class RunSequences:
    """The declared sequences and the one running per partition; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        sequences: Mapping[str, RunSequence],
        partitions: Partitions,
        commands: Commands,
        scopes: IControlScopes,
        events: IEventSource,
        alarms: IAlarms,
        clock: IReactorTime,
        notes: IELogNotes = NO_NOTES,
    ) -> None:
        self.sequences = dict(sequences)
        self.partitions = partitions
        self.commands = commands
        self.scopes = scopes
        self.events = events
        self.alarms = alarms
        self.clock = clock
        self.notes = notes
        #: the last run of each partition (running, paused or ended)
        self.runs: dict[str, SequenceRun] = {}

    def adopt(self, sequences: Mapping[str, RunSequence]) -> dict[str, Any]:
        """
        Put the sequences read again by C{ecs reload} in force: later runs
        use them; a running sequence goes on with the steps it started with
        (its L{SequenceRun} holds them).

        @return: C{{"sequences_added", "sequences_removed",
            "sequences_changed": [names], "sequences_running_as_started":
            [partition: name]}} (the last: running ones whose declaration
            changed or went).
        """
        old, new = self.sequences, dict(sequences)
        changed = sorted(name for name in set(old) & set(new) if old[name] != new[name])
        removed = sorted(set(old) - set(new))
        self.sequences = new
        running = sorted(
            f"{partition}: {run.sequence.name}"
            for partition, run in self.runs.items()
            if run.state not in ENDED and run.sequence.name in (*changed, *removed)
        )
        return {
            "sequences_added": sorted(set(new) - set(old)),
            "sequences_removed": removed,
            "sequences_changed": changed,
            "sequences_running_as_started": running,
        }

    def declared(self, user: User) -> list[dict[str, Any]]:
        """Every declared sequence (viewer and up)."""
        need(user, "viewer")
        return [self.sequences[name].summary() for name in sorted(self.sequences)]

    def status(self, user: User, partition: str) -> dict[str, Any]:
        """The partition's sequence, running or the last one (viewer and up)."""
        need(user, "viewer")
        self._known(partition)
        run = self.runs.get(partition)
        return run.status() if run is not None else {"partition": partition, "state": "none"}

    def run(self, user: User, name: str, partition: str) -> defer.Deferred[dict[str, Any]]:
        """Start sequence C{name} on C{partition} as C{user}; its status."""
        return defer.Deferred.fromCoroutine(self._run(user, name, partition))

    async def _run(self, user: User, name: str, partition: str) -> dict[str, Any]:
        need(user, "operator")
        if name not in self.sequences:
            raise ControlError("not_found", f"no sequence {name!r} (declared: {', '.join(sorted(self.sequences))})")
        self._known(partition)
        await self.scopes.require_holder(user, partition)
        current = self.runs.get(partition)
        if current is not None and current.state not in ENDED:
            raise ControlError("conflict", f"sequence {current.sequence.name} runs on partition {partition}")
        run = self.runs[partition] = SequenceRun(self, self.sequences[name], partition, user)
        self.tell(run, f"started by {user.name} ({len(run.sequence.steps)} steps)")
        d = defer.Deferred.fromCoroutine(run.run())
        d.addErrback(lambda f: self._log.failure("sequence {name} on {partition}", f, name=name, partition=partition))
        return run.status()

    async def control(self, user: User, partition: str, action: str) -> dict[str, Any]:
        """Pause, resume or abort the partition's sequence (the partition's controller)."""
        need(user, "operator")
        self._known(partition)
        await self.scopes.require_holder(user, partition)
        run = self.runs.get(partition)
        if run is None or run.state in ENDED:
            raise ControlError("conflict", f"no sequence runs on partition {partition}")
        if action == "pause":
            if run.state != "running":
                raise ControlError("conflict", f"the sequence is {run.state}")
            run.pause_wanted = True
            self.tell(run, f"pause asked by {user.name}: after step {run.index}")
        elif action == "resume":
            if run.state != "paused" and not run.pause_wanted:
                raise ControlError("conflict", f"the sequence is {run.state}, not paused")
            self.tell(run, f"resumed by {user.name}")
            run.resume()
        elif action == "abort":
            self.tell(run, f"aborted by {user.name} in step {run.index}")
            run.interrupt("aborting")
            try:
                await self.commands.command(user, partition, "abort", {})
            except ControlError as e:  # the sequence is aborted all the same
                return {**run.status(), "abort_refused": f"{e.code}: {e.reason}"}
        else:
            raise ControlError("not_found", f"no sequence action {action!r}")
        return run.status()

    def _known(self, partition: str) -> None:
        if partition not in self.partitions:
            raise ControlError("not_found", f"no partition {partition!r}")

    # -- what a run tells ------------------------------------------------------------------

    def tell(self, run: SequenceRun, what: str) -> None:
        """A logbook entry and a C{sequence} event of the partition."""
        self.notes.note(f"sequence {run.sequence.name}: {what}", run.partition)
        self.events.emit("sequence", {**run.status(), "message": what}, run.partition)

    def ended(self, run: SequenceRun) -> None:
        if run.state == "failed":
            text = f"sequence {run.sequence.name} failed in step {run.failed_step}: {run.error}"
            self.alarms.event(ALARM_KIND, f"sequence {run.sequence.name}", run.partition, text,
                              "see the partition's log; take over by hand or run the sequence again")
        self.tell(run, f"ended: {run.state}" + (f" in step {run.failed_step}: {run.error}" if run.error else ""))

    def stop(self) -> None:
        """The ECA stops: every running sequence is interrupted (the partition is left as it is)."""
        for run in self.runs.values():
            if run.state not in ENDED:
                run.interrupt("interrupted")


__all__ = ["ALARM_KIND", "RunSequences", "SequenceRun"]
