# -*- test-case-name: tests.test_runs_survive -*-
"""
L{RunBook}: the run records.  The run belongs to the ECA's database, not
to the PCA's memory.  (About 410 lines: one book of the runs' lifecycle;
its store writes are already L{agents.eca.audit.WriteBehind}'s.)

A run opens when a partition enters the recording state.  It closes with
the outcome of the operators' command that ended it (C{stop}: stopped,
C{abort}: aborted); that command is written with the run I{before} its
request goes out (L{RunBook.command_ahead}, with its audit row in the same
transaction), so an ECA killed at any moment leaves a run its successor
can close right.

Leaving the recording state without a stop or an abort is a failed run,
unless the PCA was lost or restarted meanwhile: then the run is I{held}
(kept open, an C{interrupted: ...} note in its record) until the PCA has
answered for L{RUN_GRACE} seconds with no system coming back meanwhile
(a restarted PCA meets its systems again one by one; at most
L{MAX_HOLD} seconds after the run left recording).  If recording resumes without a new
start (the recording systems kept recording: a PCA restarted while
Recording comes back Recording), it is the same run; if not, it failed
when it left recording (alarm C{run_interrupted}).  A start sent while a
run is held ends that run first: two recordings are never merged.

At ECA start the open runs are read back (L{RunBook.load}) and reconciled
against the first record of each partition: still recording, kept; not
recording, closed with the outcome of the command pending on it (at the
time that command was written) or, after the same grace, failed.

Decisions are taken on this in-memory picture of the open runs, at once
and in order; the writes go through a L{WriteBehind} (retried while the
database cannot be written, with the C{storage_failed} alarm), so a full
disk never holds up a stop or an abort.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from agents.eca.alarms import IAlarms
from agents.eca.audit import WriteBehind
from agents.eca.elog import run_ended_text, run_started_text
from agents.eca.interfaces import NO_NOTES, IELogNotes, ILogBook, IRunBook
from agents.eca.metrics import EcaMetrics
from ecs.store import Store, StoreError

#: Seconds a held run waits, with its PCA answering and no system coming back meanwhile, for recording to resume.
RUN_GRACE = 15.0

#: At most this many seconds after it left recording, systems still coming back no longer extend the wait.
MAX_HOLD = 120.0

#: The commands written with the open run before they go out, and the outcome each gives it.
OUTCOMES = {"stop": "stopped", "abort": "aborted", "start": "failed"}

#: The outcome of the audit rows whose answer a previous ECA never saw.
LOST_ANSWER = "unknown: the ECA restarted before the answer"


def when(seconds: float) -> str:
    """A time for notes and log lines (UTC, to the second)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


@attrs.frozen
class RunDetails:
    """What the operators' start said of the run it opens (checked by L{agents.eca.commands})."""

    type: str | None = None
    comment: str | None = None
    #: C{{"started_by", "control_holder", "ecs_control"}}: user names, or None.
    crew: dict[str, str | None] = attrs.Factory(dict)
    conditions: dict[str, Any] = attrs.Factory(dict)


@attrs.define(eq=False)
class Ahead:
    """A partition command written ahead: its audit row's id once written."""

    partition: str
    command: str
    audit_id: int | None = None


@attrs.define(eq=False)
class _Open:
    """What the run book knows of a partition's open run."""

    number: int | None  # None until its opening is written
    started: float
    pending: str | None = None
    pending_at: float | None = None
    ahead: Ahead | None = None
    #: Interruptions seen while it ran (for its note and its alarm).
    why: str | None = None
    #: When it left recording while held (its end, if recording does not resume).
    left_at: float | None = None
    timer: IDelayedCall | None = None
    end_comment: str | None = None

    @property
    def name(self) -> str:
        return f"run {self.number}" if self.number is not None else "the run"


@implementer(IRunBook)
class RunBook:
    """Run records opened, held and closed; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        store: Store,
        logbook: ILogBook,
        metrics: EcaMetrics,
        alarms: IAlarms,
        clock: IReactorTime,
        grace: float = RUN_GRACE,
        notes: IELogNotes = NO_NOTES,
    ) -> None:
        self._store = store
        self._notes = notes
        self._logbook = logbook
        self._metrics = metrics
        self._alarms = alarms
        self._clock = clock
        self.grace = grace
        self.writer = WriteBehind(clock, alarms)
        self._open: dict[str, _Open] = {}
        self._connected: dict[str, bool] = {}
        self._loading: defer.Deferred[None] | None = None

    # -- loading and stopping ----------------------------------------------------

    def load(self) -> defer.Deferred[None]:
        """Read the open runs back (once; every other input waits for it)."""
        if self._loading is None:
            self._loading = defer.Deferred.fromCoroutine(self._load())
        return self._loading

    async def _load(self) -> None:
        try:
            rows = await self._store.open_runs()
        except StoreError as e:
            self._loading = None  # the next input tries again
            raise e
        for row in rows:
            self._open.setdefault(
                row.partition, _Open(row.number, row.started, row.pending, row.pending_at, why=row.note)
            )
        settle = lambda: self._store.settle_pending_audit(LOST_ANSWER)  # noqa: E731
        self.writer.write("settle the audit rows of lost answers", settle).addErrback(self._ignore)

    def stop(self) -> None:
        """Cancel the timers (the ECA stops; held runs stay open for the next ECA)."""
        for run in self._open.values():
            self._cancel(run)
        self.writer.stop()

    def forget(self, partition: str) -> None:
        """The partition was deleted: stop judging its run."""
        run = self._open.get(partition)
        if run is not None:
            self._cancel(run)
        self._connected.pop(partition, None)

    # -- inputs from the partitions ---------------------------------------------

    async def started(
        self, partition: str, tag: str | None, configs: dict[str, dict[str, Any]], operator: str, initial: bool = False,
        details: RunDetails | None = None,
    ) -> None:
        """See L{IRunBook.started}."""
        await self.load()
        run = self._open.get(partition)
        if run is not None and run.pending == "start":
            # a start went out after it stopped recording: it ended then (never merged with this one)
            self._close(partition, run, "failed", run.pending_at or self._clock.seconds(),
                        "recording had stopped before the next start")
            run = None
        if run is not None:
            self._resume(partition, run, initial)
            return
        now = self._clock.seconds()
        run = self._open[partition] = _Open(None, now)

        def opened(row: Any) -> None:
            run.number = row.number
            self._logbook.log("info", "ECA", f"run {row.number} of partition {partition} started", partition)
            self._notes.note(run_started_text(row.number, partition, info.type, info.comment), partition, row.number)

        info = details if details is not None else RunDetails(crew={"started_by": operator})
        work = lambda: self._store.start_run(  # noqa: E731
            partition, tag, configs, operator, started=now,
            run_type=info.type, comment=info.comment, crew=info.crew, conditions=info.conditions,
        )
        self.writer.write(f"open a run of {partition}", work).addCallbacks(opened, self._ignore)

    async def ended(self, partition: str, last_command: str | None, interrupted: bool = False) -> None:
        """See L{IRunBook.ended}."""
        await self.load()
        run = self._open.get(partition)
        if run is None or run.left_at is not None:
            return
        now = self._clock.seconds()
        command = run.pending if run.pending in ("stop", "abort") else last_command
        if command in ("stop", "abort"):
            self._close(partition, run, OUTCOMES[command], now, None)
            return
        if interrupted and run.why is None:
            self._note(partition, run, f"interrupted: the ECA lost the PCA before {when(now)}")
        if run.why is not None or not self._connected.get(partition, True):
            self._hold(partition, run, now)
            return
        self._close(partition, run, "failed", now, None)

    async def not_recording(self, partition: str) -> None:
        """See L{IRunBook.not_recording}."""
        await self.load()
        run = self._open.get(partition)
        if run is None or run.left_at is not None:
            return
        if run.pending is not None and run.pending_at is not None:
            # the command written ahead was carried out: closed at the time it was written
            number, command = run.number, run.pending
            self._drop(partition, run)
            self._closed(partition, number, OUTCOMES[command], run.why, run.end_comment)
            if number is not None:
                self.writer.write(
                    f"close run {number}", lambda: self._store.resolve_pending(number, True)
                ).addErrback(self._ignore)
            return
        if run.why is None:
            self._note(partition, run, f"interrupted: the partition was not recording when the ECA started at "
                                       f"{when(self._clock.seconds())}")
        self._hold(partition, run, self._clock.seconds())

    def interrupted(self, partition: str, why: str) -> None:
        """See L{IRunBook.interrupted}."""
        run = self._open.get(partition)
        if run is not None:
            self._note(partition, run, f"interrupted: {why}")
            self._logbook.log("warn", "ECA", f"{run.name} of partition {partition} interrupted: {why}", partition)

    def note(self, partition: str, text: str) -> None:
        """Note C{text} in the open run of C{partition} (a recovery's exclusion), if any."""
        run = self._open.get(partition)
        if run is not None:
            self._note(partition, run, text)

    def progress(self, partition: str) -> None:
        """See L{IRunBook.progress}."""
        run = self._open.get(partition)
        if run is None or run.left_at is None or run.timer is None or not run.timer.active():
            return
        if self._clock.seconds() - run.left_at < MAX_HOLD:
            run.timer.reset(self.grace)

    def connection(self, partition: str, connected: bool) -> None:
        """See L{IRunBook.connection}."""
        self._connected[partition] = connected
        run = self._open.get(partition)
        if run is None or run.left_at is None:
            return
        self._cancel(run)
        if connected:  # the grace counts from when the PCA answers again
            run.timer = self._clock.callLater(self.grace, self._judge, partition, run)

    # -- commands written ahead ----------------------------------------------------

    async def command_ahead(
        self, user: str, command: str, arguments: dict[str, Any], partition: str, safety: bool,
        end_comment: str | None = None,
    ) -> Ahead:
        """
        Write the command's audit row (and, for a stop, an abort or a start,
        the command on the open run; a stop's C{end_comment} with it) before
        its request goes out.  A
        C{safety} command never waits for a database that cannot be written
        (the write waits in line instead); any other fails with
        C{StoreError("storage")} then.
        """
        await self.load()
        ahead = Ahead(partition, command)
        run = self._open.get(partition)
        if run is not None and run.left_at is not None and command == "configure":
            # held after an interruption, and the operators moved on: recording did not resume
            self._close(partition, run, "failed", run.left_at, "recording did not resume before a configure")
            run = None

        def written(result: tuple[int, int | None]) -> None:
            ahead.audit_id = result[0]

        async def work() -> None:
            written(await self._store.command_ahead(user, command, arguments, partition, end_comment))

        what = f"record {command} of {partition}"
        if safety:
            if self.writer.problem is not None:  # the database cannot be written: do not wait at all
                self.writer.write(what, work).addErrback(self._ignore)
            else:  # written before the request goes out, unless that first try fails
                await self.writer.first_try(what, work)
        else:
            await self.writer.now(what, work)
        if run is not None and command in OUTCOMES and self._open.get(partition) is run:
            run.pending, run.pending_at, run.ahead, run.end_comment = command, self._clock.seconds(), ahead, end_comment
        return ahead

    def command_done(self, ahead: Ahead, outcome: str, refused: bool) -> None:
        """The command's answer: its audit row's outcome (a refused one no longer pending on the run)."""
        run = self._open.get(ahead.partition)
        if refused and run is not None and run.ahead is ahead:
            run.pending = run.pending_at = run.ahead = None

        async def work() -> None:
            if ahead.audit_id is not None:
                await self._store.command_done(ahead.audit_id, outcome, refused)

        self.writer.write(f"audit {ahead.command} of {ahead.partition}", work).addErrback(self._ignore)

    # -- helpers ---------------------------------------------------------------------

    def _resume(self, partition: str, run: _Open, initial: bool) -> None:
        """Recording again (or still, seen by a new ECA): the same run."""
        if run.left_at is not None:
            self._cancel(run)
            run.left_at = None
            self._logbook.log(
                "warn", "ECA", f"{run.name} of partition {partition} continues: recording resumed ({run.why})",
                partition,
            )
            self._note(partition, run, "recording continued")
        if initial and run.pending in ("stop", "abort") and run.number is not None:
            number = run.number  # the command written ahead never reached the PCA
            run.pending = run.pending_at = run.ahead = None
            self.writer.write(
                f"resolve run {number}", lambda: self._store.resolve_pending(number, False)
            ).addErrback(self._ignore)

    def _hold(self, partition: str, run: _Open, now: float) -> None:
        run.left_at = now
        self._logbook.log(
            "warn", "ECA",
            f"{run.name} of partition {partition} left recording after an interruption ({run.why}): "
            f"kept open until the PCA has answered for {self.grace:g} s, in case recording resumes",
            partition,
        )
        self.connection(partition, self._connected.get(partition, False))

    def _judge(self, partition: str, run: _Open) -> None:
        run.timer = None
        if self._open.get(partition) is run and run.left_at is not None:
            self._close(partition, run, "failed", run.left_at, "recording did not resume")

    def _note(self, partition: str, run: _Open, note: str) -> None:
        run.why = note if run.why is None else f"{run.why}; {note}"

        async def work() -> None:
            if run.number is not None:
                await self._store.note_run(run.number, note)

        self.writer.write(f"note {run.name} of {partition}", work).addErrback(self._ignore)

    def _close(self, partition: str, run: _Open, outcome: str, ended: float, note: str | None) -> None:
        self._drop(partition, run)

        async def work() -> None:
            if run.number is not None:
                await self._store.end_run(run.number, outcome, ended=ended, note=note)

        self.writer.write(f"close {run.name} of {partition}", work).addErrback(self._ignore)
        self._closed(partition, run.number, outcome, run.why, run.end_comment)

    def _drop(self, partition: str, run: _Open) -> None:
        self._cancel(run)
        if self._open.get(partition) is run:
            del self._open[partition]

    def _closed(self, partition: str, number: int | None, outcome: str, why: str | None, comment: str | None) -> None:
        """Log, count, write in the logbook and raise the alarm of a run that ended with C{outcome}."""
        name = f"run {number}" if number is not None else "the run"
        self._notes.note(run_ended_text(name, partition, outcome, comment, why), partition, number)
        if outcome != "failed":
            self._logbook.log("info", "ECA", f"{name} of partition {partition} ended: {outcome}", partition)
            return
        self._metrics.run_failed(partition)
        self._logbook.log("error", "ECA", f"{name} of partition {partition} ended: failed", partition)
        if why is not None:
            kind, text = "run_interrupted", f"{name} of {partition} interrupted and did not resume ({why})"
        else:
            kind, text = "run_failed", f"{name} of {partition} failed (ended without stop or abort)"
        action = "find the cause in the log, acknowledge, then Configure and Start"
        self._alarms.event(kind, "run", partition, text, action)

    @staticmethod
    def _cancel(run: _Open) -> None:
        if run.timer is not None and run.timer.active():
            run.timer.cancel()
        run.timer = None

    def _ignore(self, failure: Any) -> None:
        """A write the store refused for good (the write-behind logged it)."""
        failure.trap(StoreError)
