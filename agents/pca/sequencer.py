# -*- test-case-name: tests.test_sequencer -*-
"""
The partition's operations: configure stage by stage, start and stop
recording, abort, reset, alarms.

One operation runs at a time (L{Sequencer.op}); abort is always accepted
and ends it.  The partition state is derived (L{agents.pca.partition}); the
sequencer drives operations from it after every change of a system
(L{Sequencer.update}, L{Sequencer.connection}):

- a configure operation works on one stage: it sends C{configure} to every
  system of the stage that is not ready, and the stage is done when all are
  ready (each reporting the configuration it was given); with
  auto-configure it goes on with the next stage that is not ready, up to
  the last stage's active state (never into recording);
- the stage fails, with a reason, when one of its systems refuses, goes to
  Error, becomes unreachable or falls back to Unconfigured, when a lower
  stage stops being ready, or when the stage's timeout passes (then the
  systems still working are aborted: nothing is left half-done);
- a system that reports Active with another configuration than the one it
  was given is aborted (once per report);
- recording is entered when every recording system records and left when
  any stops; a recording system that records alone is stopped.

Nothing here touches the network: commands go through C{send(view,
command, body)}, which returns a Deferred of the reply body, and what is
to be published goes to an L{Outputs}.

An excluded system (L{Sequencer.exclude}, L{Sequencer.include}) is sent no
configure, start, stop or abort, and needs no configuration; its state
updates are still folded in and published (as C{Excluded}).

Why one module of ~880 lines: the operations share one driver.  Every
change of a system re-drives whichever operation runs (L{Sequencer._drive}),
and every operation ends through the same failure and abort path
(C{_fail}, C{_end_op}) on the same derived partition, so splitting the
operations into modules today would mean mixins sharing one C{self} (what
issue 10 removed from the ECA).  A split into one module per operation
needs the operations as objects first: C{ConfigureOp} and
C{RecordingOp} each with C{drive(partition)}, C{timeout()} and C{abort()},
the L{Sequencer} keeping only the current operation, the derived state and
the admission checks; then C{configure.py} (about 250 lines) and
C{recording.py} (about 100) stand alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from agents.pca.partition import Partition, SystemView, accept_status
from ecs import protocol
from ecs.fsm.sequence import Sequence
from ecs.net.transport import RequestError

Send = Callable[[SystemView, str, dict[str, Any]], "defer.Deferred[dict[str, Any]]"]

MISSING_CONFIG = "missing_config"
#: Commands sent per reactor turn: the replies of the first ones are handled
#: while the rest go out (ten thousand at once would hold every reply back).
SEND_CHUNK = 50
PROGRESS_INTERVAL = 0.05


def _behind(view: SystemView, reply: dict[str, Any]) -> bool:
    """A system's own answer numbered before the picture's state of it (same incarnation)."""
    seq, incarnation = reply.get("seq"), reply.get("incarnation")
    return type(seq) is int and seq < view.seq and incarnation in (None, view.incarnation)


class Outputs(Protocol):
    """Where the sequencer's news goes (the PCA publishes it)."""

    def system_changed(self, view: SystemView) -> None:
        """A system's view changed."""

    def partition_changed(self, record: dict[str, Any]) -> None:
        """The partition's own record changed."""

    def log(self, level: str, source: str, message: str) -> None:
        """A log event for operators."""

    def progress(self, stage: str, ready: int, total: int) -> None:
        """How far the stage being configured is."""


@attrs.define(eq=False)
class ConfigureOp:
    """Configuring one stage (and, with auto, the ones after it)."""

    stage: int
    auto: bool
    started: float
    accepted: set[str] = attrs.field(factory=set)
    fallen: str | None = None
    requests: list[defer.Deferred[Any]] = attrs.field(factory=list)
    sending: IDelayedCall | None = None
    timer: IDelayedCall | None = None
    last_progress: tuple[int, float] = (-1, 0.0)
    progress_call: IDelayedCall | None = None

    def describe(self, partition: Partition) -> str:
        stage = partition.sequence.stages[self.stage]
        return f"configuring stage {stage.name} ({self.stage + 1} of {len(partition.sequence.stages)})"


@attrs.define(eq=False)
class RecordingOp:
    """Starting or stopping recording."""

    kind: str
    started: float
    timer: IDelayedCall | None = None

    def describe(self, partition: Partition) -> str:
        return "starting recording" if self.kind == "start" else "stopping recording"


class Sequencer:
    """The operations of one partition."""

    _log = Logger()

    def __init__(
        self,
        partition: Partition,
        send: Send,
        outputs: Outputs,
        clock: IReactorTime,
        persist: Callable[[], None] = lambda: None,
        settled: bool = True,
    ) -> None:
        self.partition = partition
        self._send = send
        self.outputs = outputs
        self.clock = clock
        self.persist = persist
        #: False until every system has been heard from (or given up on)
        #: after a start: until then nothing is judged from a partial view.
        self.settled = settled
        self.locked = False
        self.op: ConfigureOp | RecordingOp | None = None
        self._configure_started: float | None = None
        self._in_drive = False
        self._dirty = False
        self._published: dict[str, Any] | None = None
        self._publish_call: IDelayedCall | None = None
        self._mismatch_handled: dict[str, int] = {}
        self._stop_sent: dict[str, int] = {}
        self._abort_sending: IDelayedCall | None = None
        #: A reloaded sequence waiting for the partition to be Idle (L{next_sequence}).
        self.pending_sequence: Sequence | None = None
        #: Systems excluded at once when they fail while the partition records
        #: (the ECA's recovery rule C{exclude_and_continue}: L{arm_recovery}).
        self.exclude_on_fault: frozenset[str] = frozenset()

    # -- helpers ---------------------------------------------------------

    def _say(self, level: str, message: str, source: str | None = None) -> None:
        self.outputs.log(level, source or self.partition.id, message)

    def send(
        self, view: SystemView, command: str, body: dict[str, Any] | None = None
    ) -> defer.Deferred[dict[str, Any]]:
        """Send C{command} to a system; fold the status it answers into its view."""
        d = self._send(view, command, body or {})

        def answered(reply: dict[str, Any]) -> dict[str, Any]:
            incarnation = reply.get("incarnation")
            folded = self._fold(view, reply, incarnation if isinstance(incarnation, str) else None)
            if not folded and command in ("abort", "reset") and _behind(view, reply):
                self.reread(view)
            return reply

        return d.addCallback(answered)

    def reread(self, view: SystemView) -> None:
        """
        Ask a system for its state and take it, even when the picture holds a
        later sequence number than the system's own: after an abort or a
        reset the system's answer is the truth (a picture ahead of the system
        itself came from no message of its own; it is logged).
        """

        def got(reply: dict[str, Any]) -> None:
            incarnation = reply.get("incarnation")
            if _behind(view, reply):
                self._say(
                    "warn",
                    f"{view.id} reports {reply.get('state')} (#{reply.get('seq')}), the picture had "
                    f"{view.state} (#{view.seq}): taking the system's own state",
                    view.id,
                )
                view.seq = int(reply["seq"]) - 1
            self._fold(view, reply, incarnation if isinstance(incarnation, str) else None)

        d = self._send(view, "status", {}).addCallback(got)
        d.addErrback(self._ignore_refusal, view, "status")

    def _fold(self, view: SystemView, status: dict[str, Any], incarnation: str | None = None) -> bool:
        if self.partition.systems.get(view.id) is not view:
            return False
        before = view.summary
        if not accept_status(view, status, incarnation):
            return False
        if view.summary != before and "Error" in (view.summary, before):
            self._error_changed(view, before)
        op = self.op
        if (
            isinstance(op, ConfigureOp)
            and view.stage == op.stage
            and not view.excluded
            and view.summary == "Unconfigured"
            and before != "Unconfigured"
        ):
            op.fallen = view.id  # went back while its stage configures
        self._exclude_on_fault(view)
        self.partition.refresh(view)
        self.outputs.system_changed(view)
        self._check_mismatch(view)
        self._changed()
        return True

    def _error_changed(self, view: SystemView, before: str | None) -> None:
        """A system went into Error (an error line naming it and the partition) or left it."""
        where = f"{view.id} of partition {self.partition.id}"
        if view.excluded:
            self._say("warn", f"{where} (excluded) is {view.summary}: the partition ignores it", view.id)
        elif view.summary == "Error":
            why = f": {view.comment}" if view.comment else ""
            self._say("error", f"{where} in Error{why}", view.id)
        else:
            self._say("info", f"{where} left Error ({view.summary})", view.id)

    def _ignore_refusal(self, failure: Failure, view: SystemView, command: str) -> None:
        error = failure.value
        if isinstance(error, RequestError):
            if error.code != protocol.NOT_ALLOWED:
                self._say("warn", f"{command} refused by {view.id}: {error.code}: {error.reason}", view.id)
        else:
            self._log.failure("{command} to {system} failed", failure, command=command, system=view.id)

    def record(self) -> dict[str, Any]:
        """The partition's published record: state, tag, lock, operation."""
        op = self.op
        return self.partition.event(
            {
                "locked": self.locked,
                "operation": op.describe(self.partition) if op is not None else None,
                "auto": op.auto if isinstance(op, ConfigureOp) else False,
            }
        )

    def status(self, limit: int = 2000) -> dict[str, Any]:
        """
        The partition and its systems (at most C{limit}, so that the reply
        stays within the message size limit: C{snapshot} pages through all).
        """
        systems = list(self.partition.systems.values())
        return {
            **self.record(),
            "systems": [v.event() for v in systems[:limit]],
            "systems_total": len(systems),
        }

    # -- changes from the systems ----------------------------------------

    def update(self, system: str, status: dict[str, Any], incarnation: str | None = None) -> bool:
        """A state update from a system; returns whether it was new."""
        view = self.partition.systems.get(system)
        if view is None:
            self._log.debug("update for {system}, not in this partition", system=system)
            return False
        return self._fold(view, status, incarnation)

    def connection(self, system: str, connected: bool) -> None:
        """A system became reachable or unreachable."""
        view = self.partition.systems.get(system)
        if view is None or view.connected == connected:
            return
        view.connected = connected
        if not connected:
            # warn: a system that stops answering is an alarm the ECA raises
            # and clears on its return (issue 13), not an error of the PCA.
            self._say("warn", f"{system}: connection lost", system)
        else:
            self._say("info", f"{system}: connected ({view.state})", system)
        self._exclude_on_fault(view)
        self.partition.refresh(view)
        self.outputs.system_changed(view)
        if connected:
            self._check_mismatch(view)
        self._changed()

    def _check_mismatch(self, view: SystemView) -> None:
        expected = self.partition.mismatch(view)
        if expected is None or self._mismatch_handled.get(view.id) == view.seq:
            return
        self._mismatch_handled[view.id] = view.seq
        self._say(
            "error",
            f"{view.id} reports configuration {view.tag!r}, expected {expected!r}: aborting it",
            view.id,
        )
        self.send(view, "abort").addErrback(self._ignore_refusal, view, "abort")

    # -- the driver ------------------------------------------------------

    def _changed(self) -> None:
        """Re-derive and drive; never re-entered (changes made meanwhile loop)."""
        if self._in_drive:
            self._dirty = True
            return
        self._in_drive = True
        try:
            while True:
                self._dirty = False
                self._drive()
                if not self._dirty:
                    break
        finally:
            self._in_drive = False
        # Once per reactor turn, however many systems changed in it.
        if self._publish_call is None or not self._publish_call.active():
            self._publish_call = self.clock.callLater(0, self._publish)

    def _publish(self) -> None:
        self._publish_call = None
        record = self.record()
        if record != self._published:
            old = self._published["state"] if self._published else None
            if old is not None and old != record["state"]:
                self._say("info", f"partition state {old} -> {record['state']}")
            self._published = record
            self.outputs.partition_changed(record)

    def _drive(self) -> None:
        op = self.op
        if isinstance(op, ConfigureOp):
            self._drive_configure(op)
        elif isinstance(op, RecordingOp):
            self._drive_recording(op)
        else:
            self._reconcile_recording()

    def _not_ready(self, stage: int, limit: int = 5) -> str:
        partition = self.partition
        names = [
            f"{v.id} ({v.shown_state}{', ' + repr(v.tag) if v.tag else ''})"
            for v in partition.members(stage)
            if not partition.is_ready(v)
        ]
        more = f" and {len(names) - limit} more" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    def _drive_configure(self, op: ConfigureOp) -> None:
        partition = self.partition
        stages = partition.sequence.stages
        level = partition.level
        stage = stages[op.stage]
        if level < op.stage:
            below = stages[level]
            self._fail(f"stage {below.name} is no longer ready: {self._not_ready(level)}")
            return
        if level > op.stage:
            now = self.clock.seconds()
            ready, total = partition.stage_counts(op.stage)
            self.outputs.progress(stage.name, ready, total)
            self._say("info", f"stage {stage.name} configured in {now - op.started:.3f} s ({total} systems)")
            self._end_op()
            if op.auto and level < len(stages):
                self._start_stage(level, auto=True)
            elif level == len(stages) and self._configure_started is not None:
                self._say(
                    "info",
                    f"configured to {stages[-1].active} in {now - self._configure_started:.3f} s",
                )
                self._configure_started = None
            return
        culprit: SystemView | None = None
        if op.fallen is not None:
            culprit = partition.systems.get(op.fallen)
        elif partition.stage_failed(op.stage):
            culprit = next(v for v in partition.members(op.stage) if partition.is_failed(v))
        if culprit is not None:
            detail = f": {culprit.comment}" if culprit.comment else ""
            self._fail(f"{culprit.id} is {culprit.shown_state}{detail}")
            return
        self._report_progress(op)

    def _report_progress(self, op: ConfigureOp) -> None:
        # At most one report per PROGRESS_INTERVAL, and never a swallowed
        # last value: a change inside the interval is reported when it ends.
        if self.op is not op:
            return
        ready, total = self.partition.stage_counts(op.stage)
        now = self.clock.seconds()
        last_ready, last_time = op.last_progress
        if ready == last_ready:
            return
        # One expression for the test and the delay: with clock times near
        # 1.8e9, "now - last_time >= interval" could be false while
        # "last_time + interval - now" rounded to 0, a call at the same time,
        # again and again (the reactor never got back).
        due = last_time + PROGRESS_INTERVAL
        if now >= due or ready == total:
            op.last_progress = (ready, now)
            self.outputs.progress(self.partition.sequence.stages[op.stage].name, ready, total)
        elif op.progress_call is None or not op.progress_call.active():
            op.progress_call = self.clock.callLater(due - now, self._report_progress, op)

    def _drive_recording(self, op: RecordingOp) -> None:
        partition = self.partition
        if op.kind == "start":
            if partition.recording():
                self._say("info", f"recording started in {self.clock.seconds() - op.started:.3f} s")
                self._end_op()
            elif partition.level < len(partition.sequence.stages):
                self._fail(f"cannot record: stage {partition.sequence.stages[partition.level].name} "
                           f"is not ready: {self._not_ready(partition.level)}")
        elif not any(v.summary == "Recording" for v in partition.recording_systems()):
            self._say("info", f"recording stopped in {self.clock.seconds() - op.started:.3f} s")
            self._end_op()

    def settle(self) -> None:
        """Every system has been heard from (or given up on): judge from now on."""
        if not self.settled:
            self.settled = True
            self._changed()

    def _reconcile_recording(self) -> None:
        """No system records alone: stop the others when one stops or a stage fails."""
        partition = self.partition
        if not self.settled or partition.recording():
            return
        for view in partition.recording_systems():
            if view.connected and view.summary == "Recording" and self._stop_sent.get(view.id) != view.seq:
                self._stop_sent[view.id] = view.seq
                self._say("warn", f"{view.id} records while the partition does not: stopping it", view.id)
                self.send(view, "stop").addErrback(self._ignore_refusal, view, "stop")

    def _end_op(self) -> None:
        op, self.op = self.op, None
        self.partition.running_stage = None
        if op is not None and op.timer is not None and op.timer.active():
            op.timer.cancel()
        if isinstance(op, ConfigureOp):
            if op.sending is not None and op.sending.active():
                op.sending.cancel()
            if op.progress_call is not None and op.progress_call.active():
                op.progress_call.cancel()
            # A request still waiting for an unreachable peer must not be
            # delivered later, when nobody wants it any more.
            for request in op.requests:
                if not request.called:
                    request.cancel()
        self._dirty = True

    def _fail(self, reason: str, abort_unfinished: bool = False) -> None:
        op = self.op
        if op is None:
            return
        what = op.describe(self.partition)
        stage = op.stage if isinstance(op, ConfigureOp) else None
        self._end_op()
        self._configure_started = None
        self._say("error", f"{what} failed: {reason}")
        if stage is not None and abort_unfinished:
            for view in self.partition.members(stage):
                if not self.partition.is_ready(view) and view.connected:
                    self.send(view, "abort").addErrback(self._ignore_refusal, view, "abort")
        if isinstance(op, RecordingOp) and op.kind == "start":
            self._stop_sent.clear()

    # -- configure -------------------------------------------------------

    def _check_free(self) -> None:
        if self.locked:
            raise RequestError(
                protocol.LOCKED, f"partition {self.partition.id} is locked by a management operation"
            )
        if self.op is not None:
            raise RequestError(
                protocol.BUSY,
                f"partition {self.partition.id} is busy: {self.op.describe(self.partition)}",
            )

    def configure(self, configs: dict[str, dict[str, Any]], tag: str | None, auto: bool) -> dict[str, Any]:
        """
        Configure with C{configs} (system -> configuration): the lowest stage
        that is not ready, and with C{auto} every stage after it.

        @raise RequestError: C{locked}, C{busy}, C{not_allowed},
            C{unknown_system} (configurations for systems not in the
            partition) or C{missing_config} (systems without one), all
            before anything is sent.
        """
        self._check_free()
        self._adopt_pending_sequence()
        partition = self.partition
        sequence = partition.sequence
        state = partition.state
        if sequence.recording is not None and state == sequence.recording.state:
            raise RequestError(protocol.NOT_ALLOWED, f"partition {partition.id} is recording: stop it first")
        if sequence.summary_of(state) == "Configuring":
            raise RequestError(
                protocol.BUSY, f"partition {partition.id} is {state}: systems are configuring"
            )
        extra = sorted(set(configs) - set(partition.systems))
        configs = {s: c for s, c in configs.items() if s in partition.systems}
        merged = {**partition.expected, **configs}
        missing = [s for s, v in partition.systems.items() if s not in merged and not v.excluded]
        if missing:
            raise RequestError(
                MISSING_CONFIG,
                f"no configuration for {', '.join(missing)}"
                f"{' in tag ' + repr(tag) if tag else ''}: every system of partition "
                f"{partition.id} needs one",
            )
        saved = (dict(partition.expected), {v.id: v.needs_configure for v in partition.systems.values()})
        # Changed: a new configuration, or a system that does not have the
        # one it is to have (fallen back, configured by someone else): it and
        # every stage above it are configured again.
        changed_stages = [
            partition.systems[s].stage
            for s, c in configs.items()
            if not partition.systems[s].excluded
            and (partition.expected.get(s) != c or partition.systems[s].tag != c["config_id"])
        ]
        partition.expected = merged
        for system, config in configs.items():
            if saved[0].get(system) != config:
                partition.systems[system].needs_configure = True
        if changed_stages:
            lowest = min(changed_stages)
            for view in partition.systems.values():
                if view.stage > lowest:
                    view.needs_configure = True
        partition.refresh_all()
        level = partition.level
        if level < len(sequence.stages):
            blocked = [
                f"{v.id} is {v.shown_state}" for v in partition.members(level) if partition.is_failed(v)
            ]
            if blocked:
                partition.expected = saved[0]
                for system, flag in saved[1].items():
                    partition.systems[system].needs_configure = flag
                partition.refresh_all()
                raise RequestError(
                    protocol.NOT_ALLOWED,
                    f"cannot configure stage {sequence.stages[level].name}: {', '.join(blocked[:10])}"
                    " (reset systems in Error, reconnect unreachable ones)",
                )
        partition.tag = tag
        self.persist()
        self._say(
            "info",
            f"configure with {'tag ' + repr(tag) if tag else 'a custom configuration'}"
            f"{', auto-configure' if auto else ''}",
        )
        ignored = {"ignored": extra} if extra else {}
        left_out = partition.excluded()
        if left_out:
            self._say("info", f"excluded, not configured: {', '.join(left_out)}")
        if extra:
            self._say("warn", f"configurations for systems not in this partition ignored: {', '.join(extra)}")
        if level == len(sequence.stages):
            self._changed()
            return {**self.record(), **ignored, "message": "nothing to do: every system is configured"}
        self._configure_started = self.clock.seconds()
        self._start_stage(level, auto)
        self._changed()
        return {**self.record(), **ignored}

    def _start_stage(self, level: int, auto: bool) -> None:
        partition = self.partition
        stage = partition.sequence.stages[level]
        op = ConfigureOp(level, auto, self.clock.seconds())
        self.op = op
        partition.running_stage = level
        op.timer = self.clock.callLater(stage.timeout, self._stage_timeout, op)
        targets = [v for v in partition.members(level) if not partition.is_ready(v)]
        ready, total = partition.stage_counts(level)
        self.outputs.progress(stage.name, ready, total)
        op.last_progress = (ready, self.clock.seconds())
        self._say("info", f"configuring stage {stage.name}: {len(targets)} of {total} systems")
        unreachable = next((v for v in targets if not v.connected), None)
        if unreachable is not None:
            self._fail(f"{unreachable.id} is not connected")
            return
        self._send_configure(op, targets)
        self._dirty = True

    def _send_configure(self, op: ConfigureOp, targets: list[SystemView]) -> None:
        """Send configure to the first L{SEND_CHUNK} targets, the rest on later turns."""
        if op is not self.op:
            return  # ended meanwhile
        partition = self.partition
        for view in targets[:SEND_CHUNK]:
            if partition.systems.get(view.id) is not view:
                continue
            d = self._send(view, "configure", {"config": partition.expected[view.id]})
            op.requests.append(d)
            d.addCallbacks(self._accepted, self._refused, callbackArgs=(op, view), errbackArgs=(op, view))
        rest = targets[SEND_CHUNK:]
        if rest:
            op.sending = self.clock.callLater(0, self._send_configure, op, rest)
        else:
            op.sending = None

    def _accepted(self, reply: dict[str, Any], op: ConfigureOp, view: SystemView) -> None:
        partition = self.partition
        if partition.systems.get(view.id) is not view:
            return
        expected = partition.expected.get(view.id)
        if expected is not None and reply.get("tag") == expected["config_id"] and view.needs_configure:
            view.needs_configure = False  # it works on the configuration it was given
            self.persist()
        if self.op is op:
            op.accepted.add(view.id)
        incarnation = reply.get("incarnation")
        if not self._fold(view, reply, incarnation if isinstance(incarnation, str) else None):
            partition.refresh(view)
            self._changed()

    def _refused(self, failure: Failure, op: ConfigureOp, view: SystemView) -> None:
        if self.op is not op or failure.check(defer.CancelledError):
            return
        error = failure.value
        if isinstance(error, RequestError):
            reason = f"{view.id} refused configure: {error.code}: {error.reason}"
        else:
            self._log.failure("configure to {system}", failure, system=view.id)
            reason = f"{view.id}: configure failed: {failure.getErrorMessage()}"
        self._fail(reason)
        self._changed()

    def _stage_timeout(self, op: ConfigureOp | RecordingOp) -> None:
        if self.op is not op:
            return
        op.timer = None
        if isinstance(op, ConfigureOp):
            stage = self.partition.sequence.stages[op.stage]
            self._fail(
                f"stage {stage.name} timed out after {stage.timeout:g} s; not ready: "
                f"{self._not_ready(op.stage)}",
                abort_unfinished=True,
            )
        else:
            self._fail(f"timed out after {self.partition.sequence.recording.timeout:g} s")  # type: ignore[union-attr]
        self._changed()

    # -- recording -------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start recording: every recording system, in the declared order."""
        self._check_free()
        partition = self.partition
        sequence = partition.sequence
        if sequence.recording is None:
            raise RequestError(protocol.NOT_ALLOWED, "this partition's sequence has no recording")
        if partition.state != sequence.top_active:
            raise RequestError(
                protocol.NOT_ALLOWED,
                f"start needs {sequence.top_active}; partition {partition.id} is {partition.state}",
            )
        op = RecordingOp("start", self.clock.seconds())
        self.op = op
        op.timer = self.clock.callLater(sequence.recording.timeout, self._stage_timeout, op)
        self._say("info", "start recording")
        defer.Deferred.fromCoroutine(self._start_each(op)).addErrback(
            lambda f: self._log.failure("start recording", f)
        )
        self._changed()
        return self.record()

    async def _start_each(self, op: RecordingOp) -> None:
        for view in self.partition.recording_systems():
            if self.op is not op:
                return
            try:
                await self.send(view, "start")
            except RequestError as e:
                if self.op is op:
                    self._fail(f"{view.id} refused start: {e.code}: {e.reason}")
                    self._changed()
                return

    def stop(self) -> dict[str, Any]:
        """Stop recording: every recording system."""
        self._check_free()
        partition = self.partition
        rec = partition.sequence.recording
        if rec is None or partition.state != rec.state:
            raise RequestError(
                protocol.NOT_ALLOWED, f"partition {partition.id} is {partition.state}, not recording"
            )
        op = RecordingOp("stop", self.clock.seconds())
        self.op = op
        op.timer = self.clock.callLater(rec.timeout, self._stage_timeout, op)
        self._say("info", "stop recording")
        for view in partition.recording_systems():
            self.send(view, "stop").addErrback(self._ignore_refusal, view, "stop")
        self._changed()
        return self.record()

    # -- abort, reset, alarms, lock --------------------------------------

    def abort(self) -> dict[str, Any]:
        """End any operation and abort every system (always accepted)."""
        if self.op is not None:
            self._say("warn", f"abort: {self.op.describe(self.partition)} cancelled")
        self._end_op()
        self._configure_started = None
        self.partition.tag = None
        self.persist()
        self._say("info", "abort")
        self._send_abort([v for v in self.partition.systems.values() if v.connected and not v.excluded])
        self._changed()
        return self.record()

    def _send_abort(self, views: list[SystemView]) -> None:
        """Abort the first L{SEND_CHUNK} systems, the rest on later turns."""
        for view in views[:SEND_CHUNK]:
            if self.partition.systems.get(view.id) is view:
                self.send(view, "abort").addErrback(self._ignore_refusal, view, "abort")
        if views[SEND_CHUNK:]:
            self._abort_sending = self.clock.callLater(0, self._send_abort, views[SEND_CHUNK:])
        else:
            self._abort_sending = None

    def reset(self, system: str) -> defer.Deferred[dict[str, Any]]:
        """Reset one system that is in Error."""
        view = self.partition.systems.get(system)
        if view is None:
            return defer.fail(
                RequestError(protocol.UNKNOWN_SYSTEM, f"{system} is not in partition {self.partition.id}")
            )
        if view.summary != "Error" or not view.connected:
            return defer.fail(
                RequestError(protocol.NOT_ALLOWED, f"{system} is {view.shown_state}, not in Error")
            )
        self._say("info", f"reset {system}", system)

        def refused(failure: Failure) -> Failure:
            # The system disagrees with the picture (it is not in Error):
            # read its real state again, and still report the refusal.
            if isinstance(failure.value, RequestError) and failure.value.code == protocol.NOT_ALLOWED:
                self.reread(view)
            return failure

        return self.send(view, "reset").addErrback(refused)

    def alarm(self, detector: str, source: str, message: str) -> defer.Deferred[dict[str, Any]]:
        """An alarm (DCS detectorError) for one of our detectors: put it into Error."""
        view = self.partition.systems.get(detector)
        if view is None or view.kind != "detector":
            return defer.fail(
                RequestError(
                    protocol.UNKNOWN_SYSTEM,
                    f"{detector} is not a detector of partition {self.partition.id}",
                )
            )
        self._say("error", f"alarm from {source} for {detector}: {message}", source)
        return self.send(view, "error")

    def lock(self) -> dict[str, Any]:
        """Refuse configure, start and stop until L{unlock}."""
        self.locked = True
        self._say("info", "partition locked by a management operation")
        self._changed()
        return self.record()

    def unlock(self) -> dict[str, Any]:
        """Accept configure, start and stop again."""
        self.locked = False
        self._say("info", "partition unlocked")
        self._changed()
        return self.record()

    def exclude(self, system: str) -> dict[str, Any]:
        """
        Leave C{system} out of the partition's configure and recording
        (see L{Partition.set_excluded}); refused while an operation runs or
        the partition records, and for a system the sequence never excludes.
        """
        view = self._exclusion_target(system)
        refused = self.partition.sequence.exclusion_refused(view.id, view.kind == "detector")
        if refused is not None:
            raise RequestError(protocol.NOT_ALLOWED, f"{system} cannot be excluded: {refused}")
        return self._set_excluded(view, True)

    def include(self, system: str) -> dict[str, Any]:
        """Take an excluded C{system} back: the next configure configures it."""
        return self._set_excluded(self._exclusion_target(system), False)

    def arm_recovery(self, systems: object) -> dict[str, Any]:
        """
        The systems to exclude at once when they fail (Error, unreachable)
        while the partition records, so that the run goes on without them
        (the ECA's recovery rules; it is told of each such exclusion by the
        system's record and makes it its own).  Replaces the previous list.
        """
        if not isinstance(systems, list) or not all(isinstance(s, str) for s in systems) or len(systems) > 10000:
            raise RequestError(protocol.BAD_REQUEST, "'exclude_on_fault' must be a list of system ids")
        self.exclude_on_fault = frozenset(systems)
        return {**self.record(), "exclude_on_fault": sorted(self.exclude_on_fault)}

    def _exclude_on_fault(self, view: SystemView) -> None:
        """Exclude C{view}, armed by the recovery rules, if it just failed while the partition records."""
        partition = self.partition
        if (
            view.id not in self.exclude_on_fault
            or view.excluded
            or not partition.is_failed(view)
            or not partition.recording()  # counted before this change: the run as it was
            or partition.sequence.exclusion_refused(view.id, view.kind == "detector") is not None
        ):
            return
        partition.set_excluded(view.id, True)
        self._say("warn", f"{view.id} is {'unreachable' if not view.connected else view.summary} while recording: "
                  "excluded by the recovery rules (exclude_and_continue), the run goes on", view.id)
        self.persist()

    def _exclusion_target(self, system: str) -> SystemView:
        view = self.partition.systems.get(system)
        if view is None:
            raise RequestError(protocol.UNKNOWN_SYSTEM, f"{system} is not in partition {self.partition.id}")
        self._check_free()
        rec = self.partition.sequence.recording
        state = self.partition.state
        if rec is not None and state == rec.state:
            raise RequestError(
                protocol.NOT_ALLOWED, f"partition {self.partition.id} is recording: stop it first"
            )
        if self.partition.sequence.summary_of(state) == "Configuring":
            raise RequestError(protocol.BUSY, f"partition {self.partition.id} is {state}: systems are configuring")
        return view

    def _set_excluded(self, view: SystemView, excluded: bool) -> dict[str, Any]:
        if self.partition.set_excluded(view.id, excluded):
            self._say(
                "info",
                f"{view.id} excluded: left out of configure and recording"
                if excluded
                else f"{view.id} included: the next configure configures it",
                view.id,
            )
            self.persist()
            self.outputs.system_changed(view)
            self._changed()
        return {**self.record(), "system": view.event(), "excluded": self.partition.excluded()}

    def check_membership_change(self) -> None:
        """Adding or removing detectors is refused while configuring or recording."""
        state = self.partition.state
        summary = self.partition.sequence.summary_of(state)
        if self.op is not None or summary in ("Configuring", "Recording"):
            raise RequestError(
                protocol.BUSY, f"partition {self.partition.id} is {state}: no detector changes now"
            )

    def add_system(self, view: SystemView) -> None:
        """A new member (after L{check_membership_change})."""
        self.partition.add(view)
        self.outputs.system_changed(view)
        self._changed()

    def remove_system(self, system: str) -> SystemView:
        """A member leaves (after L{check_membership_change})."""
        view = self.partition.remove(system)
        self._changed()
        return view

    # -- reload ----------------------------------------------------------

    def next_sequence(self, sequence: Sequence) -> str:
        """
        A reloaded sequence (its global systems are this partition's): used
        now when the partition is Idle with nothing running (C{"applied"}),
        else kept for the next configure from Idle (C{"pending"}).
        """
        self.pending_sequence = sequence
        if self._adopt_pending_sequence():
            self._changed()
            return "applied"
        return "pending"

    def _adopt_pending_sequence(self) -> bool:
        """Rebuild the partition over the pending sequence if it is Idle and free."""
        old = self.partition
        sequence = self.pending_sequence
        if sequence is None or self.op is not None or old.state != old.sequence.idle:
            return False
        self.pending_sequence = None
        new = Partition(old.id, sequence)
        new.expected, new.tag = old.expected, old.tag
        for view in old.systems.values():
            view.stage = new.stage_for(view.id, view.kind == "detector")
            new.add(view)
        self.partition = new
        self._say("info", f"partition sequence {sequence.name} of {sequence.source} in force "
                          f"({len(sequence.stages)} stages)")
        return True

    def stop_timers(self) -> None:
        """Cancel the running operation's timer (the agent stops)."""
        for call in (self._publish_call, self._abort_sending):
            if call is not None and call.active():
                call.cancel()
        op = self.op
        if isinstance(op, ConfigureOp) and op.sending is not None and op.sending.active():
            op.sending.cancel()
        if isinstance(op, ConfigureOp) and op.progress_call is not None and op.progress_call.active():
            op.progress_call.cancel()
        if op is not None and op.timer is not None and op.timer.active():
            op.timer.cancel()
