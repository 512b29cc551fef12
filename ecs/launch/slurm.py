# -*- test-case-name: tests.test_launch_slurm -*-
"""
The C{slurm} launcher: each agent a SLURM batch job.

C{start} submits with C{sbatch --parsable} a batch script written to
sbatch's standard input; the script ends in C{exec twistd -n --pidfile=
<plugin args> <common args> <placement args>}, so the job's batch step is
the agent itself (its signals reach the agent, its exit code is the job's).
C{stop} sends SIGTERM to the batch step and its children (C{scancel
--signal=TERM --full}; a pending job is simply cancelled), waits C{grace}
seconds for the job to leave the queue, then sends SIGKILL the same way and
cancels the job.  C{status} asks C{squeue}; once the job left the queue,
C{sacct} (accounting) and then C{scontrol show job} (recently ended jobs)
say how it ended; with neither, the status says "state unknown".  C{tail}
reads the output file with C{tail} if it is on this host's file systems.

Queue look-ups are batched: every C{squeue} question asked in one reactor
turn (the supervisor's status poll of all agents, the polls of C{stop})
goes out as one C{squeue -j ID1,ID2,...} per L{STATUS_BATCH} jobs, so a
poll of thousands of jobs costs a handful of commands and controller RPCs,
not one each.  A job the answer does not list left the queue (SLURM 22.05
omits unknown ids from a list and fails only when the one id asked is
unknown); should C{squeue} refuse a whole list with "Invalid job id", its
jobs are asked one by one.  Only jobs that ended go on to C{sacct} and
C{scontrol}, one by one.

No caller value can reach a shell: the SLURM commands are started without
a shell (C{spawnProcess} with an argument list), and the batch script is
built by L{ecs.launch.sbatch}, which says how it quotes.  Job ids from
records must be digits.

Every command has a timeout (the child is killed) and is run by a
L{Runner}, injected in tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ecs.launch import (
    AgentSpec,
    AgentStatus,
    ILauncher,
    LaunchError,
    LaunchRecord,
    Placement,
    check_argument,
)
from ecs.launch.command import CommandResult, ProcessRunner, Runner
from ecs.launch.options import ENV_NAME_RE, MAX_TAIL_LINES

# Re-exported: the job's options, command and script, and the parsing of
# SLURM's answers live in ecs.launch.sbatch.
from ecs.launch.sbatch import (
    OPTIONS,
    Submission,
    build_submission,
    check_options,
    describe,
    expand_output,
    parse_exit,
    parse_time,
)

__all__ = [
    "ENDED",
    "ENV_NAME_RE",
    "JOB_ID_RE",
    "OPTIONS",
    "STATUS_BATCH",
    "SlurmLauncher",
    "Submission",
    "build_submission",
    "check_options",
    "describe",
    "expand_output",
    "parse_exit",
    "parse_time",
]

JOB_ID_RE = re.compile(r"[0-9]{1,20}")
ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                   "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "TIMEOUT"})
"""Job states after which no process of the job is left."""
_GONE_ERRORS = ("Invalid job id", "already completing or completed", "Job/step already")
_UNREACHABLE = ("Unable to contact", "Socket timed out", "Connection refused", "Zero Bytes were transmitted")
STATUS_BATCH = 200
"""At most this many job ids in one C{squeue} command."""
_FALLBACK_PARALLEL = 8
"""Single-job C{squeue} commands at a time when a list was refused."""


@attrs.frozen
class _Queued:
    """One job as C{squeue} shows it."""

    state: str
    reason: str
    start: float | None
    node: str


class _SqueueFailed(Exception):
    """C{squeue} ended with an error (C{code}: a L{LaunchError} code) for a list of C{jobs} jobs."""

    def __init__(self, code: str, err: str, jobs: int) -> None:
        super().__init__(code, err, jobs)
        self.code = code
        self.err = err
        self.jobs = jobs


@implementer(ILauncher)
class SlurmLauncher:
    """
    Starts agents as SLURM batch jobs submitted from this host.

    @param common_args: arguments given to every agent after its plugin
        arguments (settings file, state directory...).
    @param timeout: seconds each SLURM command may take.
    @param env: environment variables for the SLURM commands (e.g.
        C{SLURM_CONF}); jobs inherit the submitting environment.
    @param log_dir: where output files go without a C{workdir} or
        C{output} option (default: the current directory).
    @param runner: runs the commands (a L{ProcessRunner} by default).
    @param poll_interval: seconds between queue polls while stopping.
    @param status_batch: at most this many job ids in one C{squeue}.
    """

    name = "slurm"
    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        common_args: Sequence[str],
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
        log_dir: str | None = None,
        runner: Runner | None = None,
        poll_interval: float = 0.5,
        status_batch: int = STATUS_BATCH,
    ) -> None:
        self.reactor = reactor
        self.common_args = [check_argument(a, "common argument") for a in common_args]
        self.timeout = timeout
        self.log_dir = check_argument(os.path.abspath(log_dir or "."), "log directory")
        self.run = runner or ProcessRunner(reactor, env, ": is the SLURM client installed?")
        self.poll_interval = poll_interval
        if not isinstance(status_batch, int) or status_batch < 1:
            raise ValueError(f"status_batch must be a positive integer, got {status_batch!r}")
        self.status_batch = status_batch
        self._asked: list[tuple[str, defer.Deferred[_Queued | None]]] | None = None
        self._fallback = defer.DeferredSemaphore(_FALLBACK_PARALLEL)

    def start(self, spec: AgentSpec, placement: Placement) -> defer.Deferred[LaunchRecord]:
        """Submit the agent's job; fire with its record once SLURM gave its id."""
        return defer.Deferred.fromCoroutine(self._start(spec, placement))

    async def _start(self, spec: AgentSpec, placement: Placement) -> LaunchRecord:
        sub = build_submission(spec, placement, self.common_args, self.log_dir)
        try:
            result = await self.run(sub.argv, sub.script.encode(), self.timeout)
        except LaunchError as e:
            if e.code == "timeout":  # it may have been queued: leave nothing behind
                self.run(["scancel", f"--name={sub.job_name}"], None, self.timeout).addErrback(lambda f: None)
            raise
        if result.code != 0:
            raise LaunchError("failed", f"sbatch refused {spec.name}: {result.err.strip() or result.out.strip()}")
        job_id = result.out.strip().split(";")[0]
        if not JOB_ID_RE.fullmatch(job_id):
            raise LaunchError("failed", f"sbatch printed no job id for {spec.name}: {result.out.strip()!r}")
        log = expand_output(sub.output, job_id, sub.job_name)
        self._log.info("{agent}: SLURM job {job}, output {log}", agent=spec.name, job=job_id, log=log)
        return LaunchRecord(spec.name, "slurm", placement.host, self.reactor.seconds(), job_id=job_id, log=log,
                            extra={"job_name": sub.job_name})

    def stop(self, record: LaunchRecord, grace: float) -> defer.Deferred[AgentStatus]:
        """SIGTERM the job's processes, SIGKILL them after C{grace}; fire once the job left the queue."""
        return defer.Deferred.fromCoroutine(self._stop(record, grace))

    async def _stop(self, record: LaunchRecord, grace: float) -> AgentStatus:
        job = self._job(record)
        queued = await self._queued(job)
        if queued is None or queued.state in ENDED:
            return await self._status(record)
        if queued.state == "PENDING":
            await self._scancel(job)
        else:
            await self._scancel("--signal=TERM", "--full", job)
        if not await self._left_queue(job, grace):
            self._log.warn("{agent}: job {job} still there after {grace} s: SIGKILL", agent=record.agent,
                           job=job, grace=grace)
            await self._scancel("--signal=KILL", "--full", job)
            await self._scancel(job)
            if not await self._left_queue(job, self.timeout):
                raise LaunchError("timeout", f"job {job} of {record.agent} still in the queue after SIGKILL")
        return await self._status(record)

    def status(self, record: LaunchRecord) -> defer.Deferred[AgentStatus]:
        """
        The job's state: from C{squeue}, else C{sacct}, else C{scontrol show
        job}.  Calls made in one reactor turn share their C{squeue} commands
        (see the module docstring); it fails for all of them alike.
        """
        return defer.Deferred.fromCoroutine(self._status(record))

    async def _status(self, record: LaunchRecord) -> AgentStatus:
        job = self._job(record)
        queued = await self._queued(job)
        if queued is not None and queued.state not in ENDED:
            where = f" on {queued.node}" if queued.node and queued.node != "n/a" else ""
            detail = f"{queued.state}{where}"
            if queued.reason and queued.reason != "None":
                detail += f" ({queued.reason})"
            since = queued.start if queued.state != "PENDING" else None
            return AgentStatus(record.agent, True, job_id=job, since=since, detail=detail)
        ended = await self._accounting(job)
        if ended is None:
            if queued is not None:
                return AgentStatus(record.agent, False, job_id=job, detail=describe(queued.state, None))
            return AgentStatus(record.agent, False, job_id=job,
                               detail="finished, state unknown (no longer known to SLURM, no accounting)")
        state, code, end = ended
        return AgentStatus(record.agent, False, job_id=job, exit_code=code, since=end, detail=describe(state, code))

    def tail(self, record: LaunchRecord, lines: int) -> defer.Deferred[str]:
        """The output file's last lines, if this host can read it (a shared file system)."""
        return defer.Deferred.fromCoroutine(self._tail(record, lines))

    async def _tail(self, record: LaunchRecord, lines: int) -> str:
        if not isinstance(lines, int) or not 0 < lines <= MAX_TAIL_LINES:
            raise LaunchError("invalid", f"lines must be 1 to {MAX_TAIL_LINES}, got {lines!r}")
        if not record.log:
            return f"no output file recorded for {record.agent}"
        path = check_argument(record.log, "output file")
        try:
            result = await self.run(["tail", "-n", str(lines), "--", path], None, self.timeout)
        except LaunchError as e:
            return f"cannot read {path}: {e.reason}"
        if result.code != 0:
            return (f"output of job {record.job_id} ({path}) is not readable on this host, only on the node "
                    f"that ran it (no shared file system?): {result.err.strip()}")
        return result.out

    # -- the SLURM commands ------------------------------------------------------

    @staticmethod
    def _job(record: LaunchRecord) -> str:
        if not isinstance(record.job_id, str) or not JOB_ID_RE.fullmatch(record.job_id):
            raise LaunchError("invalid", f"invalid SLURM job id {record.job_id!r} in the record of {record.agent}")
        return record.job_id

    def _queued(self, job: str) -> defer.Deferred[_Queued | None]:
        """
        The job in C{squeue}, or C{None} when it is not listed: asked at
        the end of this reactor turn, with every other job asked in it.
        """
        if self._asked is None:
            self._asked = []
            self.reactor.callLater(0, self._ask_queue)
        d: defer.Deferred[_Queued | None] = defer.Deferred()
        self._asked.append((job, d))
        return d

    def _ask_queue(self) -> None:
        """Send this turn's questions: one C{squeue} per L{status_batch} distinct jobs."""
        asked, self._asked = self._asked or [], None
        waiting: dict[str, list[defer.Deferred[_Queued | None]]] = {}
        for job, d in asked:
            waiting.setdefault(job, []).append(d)
        jobs = list(waiting)
        for first in range(0, len(jobs), self.status_batch):
            chunk = jobs[first : first + self.status_batch]
            answer = defer.Deferred.fromCoroutine(self._squeue(chunk))
            answer.addCallbacks(self._answer_queued, self._queue_failed, callbackArgs=(waiting,),
                                errbackArgs=(chunk, waiting))
            answer.addErrback(self._answering_failed, len(chunk))

    def _answering_failed(self, failure: Failure, n: int) -> None:
        self._log.failure("answering a squeue of {n} jobs", failure, n=n)

    @staticmethod
    def _answer_queued(
        found: dict[str, _Queued | None], waiting: dict[str, list[defer.Deferred[_Queued | None]]]
    ) -> None:
        for job, queued in found.items():
            for d in waiting.get(job, ()):
                if not d.called:  # a caller may have cancelled
                    d.callback(queued)

    @staticmethod
    def _queue_failed(failure: Failure, chunk: list[str],
                      waiting: dict[str, list[defer.Deferred[_Queued | None]]]) -> None:
        error = failure.value
        for job in chunk:
            for d in waiting.get(job, ()):
                if d.called:
                    continue
                if isinstance(error, _SqueueFailed):
                    others = f" (asked with {error.jobs - 1} other jobs)" if error.jobs > 1 else ""
                    d.errback(LaunchError(error.code, f"squeue failed for job {job}{others}: {error.err}"))
                elif isinstance(error, LaunchError):
                    d.errback(LaunchError(error.code, error.reason))
                else:
                    d.errback(failure)

    async def _squeue(self, jobs: list[str]) -> dict[str, _Queued | None]:
        """Each of C{jobs} as C{squeue} lists it, or C{None}; L{_SqueueFailed} if it fails."""
        result = await self.run(["squeue", "-h", "-j", ",".join(jobs), "-o", "%i|%T|%r|%S|%B"], None, self.timeout)
        if result.code != 0:
            err = result.err.strip()
            if any(text in result.err for text in _GONE_ERRORS):
                if len(jobs) == 1:
                    return {jobs[0]: None}
                self._log.debug("squeue refused a list of {n} jobs ({error}): asking one by one", n=len(jobs),
                                error=err)
                found: dict[str, _Queued | None] = {}
                try:
                    parts = await defer.gatherResults(
                        [self._fallback.run(self._squeue_one, job) for job in jobs], consumeErrors=True
                    )
                except defer.FirstError as e:
                    e.subFailure.raiseException()
                for part in parts:
                    found.update(part)
                return found
            code = "unreachable" if any(text in result.err for text in _UNREACHABLE) else "failed"
            raise _SqueueFailed(code, err, len(jobs))
        listed: dict[str, _Queued | None] = {job: None for job in jobs}
        for line in result.out.splitlines():
            job, state, reason, start, node = ([*line.strip().split("|", 4), "", "", "", ""])[:5]
            if job in listed and listed[job] is None:
                listed[job] = _Queued(state.split()[0] if state.strip() else "UNKNOWN", reason, parse_time(start),
                                      node)
        return listed

    def _squeue_one(self, job: str) -> defer.Deferred[dict[str, _Queued | None]]:
        return defer.Deferred.fromCoroutine(self._squeue([job]))

    async def _accounting(self, job: str) -> tuple[str, int | None, float | None] | None:
        """(state, exit code, end) of an ended job from C{sacct}, else C{scontrol}; C{None} if neither knows."""
        try:
            result = await self.run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "State,ExitCode,End"],
                                    None, self.timeout)
            line = result.out.strip().splitlines()[0] if result.code == 0 and result.out.strip() else ""
            if line.count("|") == 2:
                state, code, end = line.split("|")
                return state.split()[0] if state.strip() else "UNKNOWN", parse_exit(code), parse_time(end)
        except LaunchError as e:
            self._log.debug("sacct for job {job}: {error}", job=job, error=e)
        result = await self.run(["scontrol", "-o", "show", "job", job], None, self.timeout)
        if result.code != 0:
            return None
        fields = dict(re.findall(r"(?:^|\s)(JobState|ExitCode|EndTime)=(\S+)", result.out))
        if "JobState" not in fields:
            return None
        return fields["JobState"], parse_exit(fields.get("ExitCode", "")), parse_time(fields.get("EndTime", ""))

    async def _scancel(self, *args: str) -> None:
        result = await self.run(["scancel", *args], None, self.timeout)
        if result.code != 0 and not any(text in result.err for text in _GONE_ERRORS):
            raise LaunchError("failed", f"scancel {' '.join(args)}: {result.err.strip()}")

    async def _left_queue(self, job: str, seconds: float) -> bool:
        """Whether the job leaves the queue (or ends) within C{seconds}, asking every poll interval."""
        deadline = self.reactor.seconds() + seconds
        while True:
            queued = await self._queued(job)
            if queued is None or queued.state in ENDED:
                return True
            if self.reactor.seconds() >= deadline:
                return False
            await deferLater(self.reactor, self.poll_interval, lambda: None)


__all__ = ["CommandResult", "ProcessRunner", "SlurmLauncher", "Submission", "build_submission", "check_options"]
