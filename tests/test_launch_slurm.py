"""
Tests of the C{slurm} launcher (L{ecs.launch.slurm}): command building,
parsing and state mapping with a scripted runner and a L{Clock}; injection
attempts; the real runner with a fake process reactor and with C{sh}; and,
end to end, a detector controller run as a job of a real single-node SLURM
(L{tests.slurm}) that registers with a real ECA and is then cancelled.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from ecs.launch import AgentSpec, ILauncher, LaunchError, LaunchRecord, Placement
from ecs.launch.command import CommandResult, ProcessRunner
from ecs.launch.slurm import SlurmLauncher, build_submission
from tests.fake_process import FakeProcessReactor
from tests.procs import call_api, free_port, pid_alive, spawn, tool

SPEC = AgentSpec("detector", "D1", ("ecs-detector", "--id", "D1", "--type", "STS"))
COMMON = ["--config", "/etc/ecs/ecs.yaml", "--state-dir", "/var/lib/ecs"]


def placement(**options: Any) -> Placement:
    """A slurm placement of detector D1."""
    return Placement("detector:D1", "cluster", "slurm", options)


def record(job_id: Any = "42") -> LaunchRecord:
    """The record of D1 as job C{job_id}."""
    return LaunchRecord("detector:D1", "slurm", "cluster", 1.0, job_id=job_id, log="/logs/d1-42.log")


class FakeRunner:
    """Records the commands; answers each with C{respond(argv)} (a result or a L{LaunchError})."""

    def __init__(self, respond: Callable[[list[str]], Any]) -> None:
        self.respond = respond
        self.calls: list[tuple[list[str], bytes | None, float]] = []

    def __call__(self, argv: Sequence[str], stdin: bytes | None, timeout: float) -> defer.Deferred[CommandResult]:
        self.calls.append((list(argv), stdin, timeout))
        answer = self.respond(list(argv))
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)

    def commands(self, name: str | None = None) -> list[list[str]]:
        """The argv of every call (of C{name} only, if given)."""
        return [argv for argv, _, _ in self.calls if name is None or argv[0] == name]


def ok(out: str = "", err: str = "", code: int = 0) -> CommandResult:
    """A command's result."""
    return CommandResult(code, out, err)


SACCT_OFF = ok(err="Slurm accounting storage is disabled\n", code=1)
NO_JOB = ok(err="slurm_load_jobs error: Invalid job id specified\n", code=1)


class SubmissionTests(SynchronousTestCase):
    """What C{start} submits, and what it refuses."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.runner = FakeRunner(lambda argv: ok("4242;ecstest\n"))
        self.launcher = SlurmLauncher(self.clock, COMMON, timeout=7.0, log_dir="/logs", runner=self.runner)

    def test_interface(self) -> None:
        """The launcher provides ILauncher and is called slurm."""
        self.assertTrue(verifyObject(ILauncher, self.launcher))
        self.assertEqual(self.launcher.name, "slurm")

    def test_sbatch_arguments(self) -> None:
        """Placement options become single sbatch arguments; the script execs twistd with every argument in order."""
        sub = build_submission(
            SPEC,
            placement(partition="debug", account="cbm", qos="normal", time="1-00:00:00", nodelist="node[01-02]",
                      workdir="/scratch/ecs", extra=["--mem=2G", "--exclusive=user"], twistd="/opt/ecs/bin/twistd",
                      args=["--bind", "tcp://0.0.0.0:7000"], env={"ECS_SITE": "cave 1"}),
            COMMON,
            "/logs",
        )
        self.assertEqual(sub.argv, (
            "sbatch", "--parsable", "--job-name=ecs-detector-D1", "--output=/scratch/ecs/ecs-detector-D1-%j.log",
            "--partition=debug", "--account=cbm", "--qos=normal", "--time=1-00:00:00", "--nodelist=node[01-02]",
            "--chdir=/scratch/ecs", "--mem=2G", "--exclusive=user",
        ))
        self.assertIn("\nexport ECS_SITE='cave 1'\n", sub.script)
        self.assertTrue(sub.script.startswith("#!/bin/sh\n"))
        self.assertTrue(sub.script.endswith(
            "\nexec /opt/ecs/bin/twistd -n --pidfile= ecs-detector --id D1 --type STS --config /etc/ecs/ecs.yaml "
            "--state-dir /var/lib/ecs --bind tcp://0.0.0.0:7000\n"
        ))
        self.assertNotIn("#SBATCH", sub.script)

    def test_start_records_job(self) -> None:
        """start feeds the script to sbatch's stdin and records the job id, expanded output file and job name."""
        started = self.successResultOf(self.launcher.start(SPEC, placement(job_name="d1", output="/out/%x.%j.log")))
        argv, stdin, timeout = self.runner.calls[0]
        self.assertEqual(argv[:3], ["sbatch", "--parsable", "--job-name=d1"])
        self.assertEqual(timeout, 7.0)
        assert stdin is not None
        self.assertIn(b"exec twistd -n --pidfile= ecs-detector --id D1", stdin)
        self.assertEqual(
            (started.agent, started.launcher, started.host, started.job_id, started.log, started.started,
             started.extra["job_name"]),
            ("detector:D1", "slurm", "cluster", "4242", "/out/d1.4242.log", 1000.0, "d1"),
        )
        self.assertEqual(LaunchRecord.from_json(started.to_json()), started)

    def test_default_output(self) -> None:
        """Without workdir or output the log goes to the launcher's log directory (the supervisor's agent_args pass)."""
        started = self.successResultOf(self.launcher.start(SPEC, placement(agent_args=["--type", "STS"])))
        self.assertEqual(started.log, "/logs/ecs-detector-D1-4242.log")

    def test_injection_in_ids_refused(self) -> None:
        """Ids like 'a;touch pwned' or '$(id)' are refused before any command runs."""
        for bad in ("a;touch pwned", "$(id)", "a b", "`id`", "x\ny"):
            spec = AgentSpec("detector", bad, ("ecs-detector", "--id", bad))
            failure = self.failureResultOf(self.launcher.start(spec, Placement(f"detector:{bad}", "h", "slurm")))
            self.assertEqual(failure.value.code, "invalid", bad)
        for bad_job in ("1;touch pwned", "$(id)", "42 43", None, 42):
            for call in (self.launcher.status(record(bad_job)), self.launcher.stop(record(bad_job), 1.0)):
                self.assertEqual(self.failureResultOf(call, LaunchError).value.code, "invalid")
        self.assertEqual(self.runner.calls, [])

    def test_bad_options_refused(self) -> None:
        """Malformed or unknown options are refused with a message naming them; nothing is submitted."""
        cases = {
            "partiton": {"partiton": "debug"},
            "partition": {"partition": "debug --wrap=id"},
            "time": {"time": "1h"},
            "form --name=value": {"extra": ["-o", "/x"]},
            "--wrap": {"extra": ["--wrap=touch pwned"]},
            "--output": {"extra": ["--output=/elsewhere"]},
            "list of strings": {"args": "--bind x"},
            "environment variable name": {"env": {"A B": "1"}},
            "environment variable X": {"env": {"X": "a\nb"}},
            "absolute": {"output": "relative.log"},
            "%j, %x": {"output": "/x/%N.log"},
            "job_name": {"job_name": "a;b"},
            "item of slurm option args": {"args": ["ok", "new\nline"]},
        }
        for expected, options in cases.items():
            failure = self.failureResultOf(self.launcher.start(SPEC, placement(**options)), LaunchError)
            self.assertEqual(failure.value.code, "invalid")
            self.assertIn(expected, failure.value.reason)
        other = Placement("detector:D1", "h", "ssh")
        self.assertIn("not slurm", self.failureResultOf(self.launcher.start(SPEC, other)).value.reason)
        self.assertEqual(self.runner.calls, [])

    def test_sbatch_refuses(self) -> None:
        """A non-zero sbatch fails the start with its error text."""
        self.runner.respond = lambda argv: ok(err="sbatch: error: invalid partition specified: nope\n", code=1)
        failure = self.failureResultOf(self.launcher.start(SPEC, placement(partition="nope")), LaunchError)
        self.assertEqual(failure.value.code, "failed")
        self.assertIn("invalid partition specified: nope", failure.value.reason)

    def test_sbatch_prints_no_job_id(self) -> None:
        """Output that is not a job id fails the start."""
        self.runner.respond = lambda argv: ok("Submitted batch job 12\n")
        self.assertIn("no job id", self.failureResultOf(self.launcher.start(SPEC, placement())).value.reason)

    def test_sbatch_timeout_cancels_by_name(self) -> None:
        """When sbatch times out the job may be queued: it is cancelled by its name, and the start fails."""
        timeout = LaunchError("timeout", "sbatch did not finish")
        self.runner.respond = lambda argv: timeout if argv[0] == "sbatch" else ok()
        failure = self.failureResultOf(self.launcher.start(SPEC, placement()), LaunchError)
        self.assertEqual(failure.value.code, "timeout")
        self.assertEqual(self.runner.commands("scancel"), [["scancel", "--name=ecs-detector-D1"]])


class ModuleSplitTests(SynchronousTestCase):
    def test_slurm_keeps_the_names_that_moved(self) -> None:
        """The job's options, script and parsing moved to ecs.launch.sbatch and are still importable from slurm."""
        from ecs.launch import local, options, sbatch, slurm

        for name in ("OPTIONS", "Submission", "build_submission", "check_options", "describe", "expand_output",
                     "parse_exit", "parse_time"):
            self.assertIs(getattr(slurm, name), getattr(sbatch, name), name)
        for name in ("ENV_NAME_RE", "MAX_TAIL_LINES", "check_args", "check_env", "check_lines"):
            self.assertIs(getattr(local, name), getattr(options, name), name)
        self.assertIs(slurm.ENV_NAME_RE, options.ENV_NAME_RE)


class StatusTests(SynchronousTestCase):
    """squeue, sacct and scontrol answers mapped to AgentStatus."""

    def status(self, answers: dict[str, CommandResult | Exception]) -> Any:
        runner = FakeRunner(lambda argv: answers[argv[0]])
        clock = Clock()
        launcher = SlurmLauncher(clock, [], runner=runner)
        self.runner = runner
        d = launcher.status(record())
        clock.advance(0)  # the end of the reactor turn: squeue is asked
        return d

    def test_running(self) -> None:
        """A RUNNING job is running since its start time, on its node."""
        status = self.successResultOf(self.status({"squeue": ok("42|RUNNING|None|2025-01-31T12:00:00|node7\n")}))
        self.assertEqual((status.running, status.job_id, status.detail), (True, "42", "RUNNING on node7"))
        self.assertEqual(status.since, time.mktime((2025, 1, 31, 12, 0, 0, 0, 0, -1)))
        self.assertEqual(self.runner.commands(), [["squeue", "-h", "-j", "42", "-o", "%i|%T|%r|%S|%B"]])

    def test_pending(self) -> None:
        """A PENDING job counts as running (it must not be started twice), with its reason."""
        status = self.successResultOf(self.status({"squeue": ok("42|PENDING|Resources|N/A|n/a\n")}))
        self.assertEqual((status.running, status.since, status.detail), (True, None, "PENDING (Resources)"))

    def test_ended_from_sacct(self) -> None:
        """A job gone from the queue: sacct says how it ended."""
        for line, code, detail in (
            ("COMPLETED|0:0|2025-01-31T12:05:00", 0, "COMPLETED, exited with code 0"),
            ("FAILED|3:0|2025-01-31T12:05:00", 3, "FAILED, exited with code 3"),
            ("CANCELLED by 0|0:15|2025-01-31T12:05:00", -15, "CANCELLED, killed by signal 15 (SIGTERM)"),
            ("TIMEOUT|0:1|Unknown", -1, "TIMEOUT, killed by signal 1 (SIGHUP)"),
        ):
            status = self.successResultOf(self.status({"squeue": ok(), "sacct": ok(line + "\n")}))
            self.assertEqual((status.running, status.exit_code, status.detail), (False, code, detail))
        self.assertEqual(self.runner.commands("sacct"),
                         [["sacct", "-n", "-P", "-X", "-j", "42", "-o", "State,ExitCode,End"]])

    def test_ended_from_scontrol(self) -> None:
        """Without accounting, scontrol show job (recently ended jobs) tells the state and exit code."""
        line = ("JobId=42 JobName=ecs-detector-D1 JobState=COMPLETED Reason=None ExitCode=0:0 "
                "StartTime=2025-01-31T12:00:00 EndTime=2025-01-31T12:05:00 Command=(null)\n")
        status = self.successResultOf(self.status({"squeue": NO_JOB, "sacct": SACCT_OFF, "scontrol": ok(line)}))
        self.assertEqual((status.running, status.exit_code, status.detail), (False, 0, "COMPLETED, exited with code 0"))
        self.assertIsNotNone(status.since)
        self.assertEqual(self.runner.commands("scontrol"), [["scontrol", "-o", "show", "job", "42"]])

    def test_state_unknown(self) -> None:
        """Forgotten by SLURM and no accounting: finished, state unknown."""
        status = self.successResultOf(self.status({"squeue": NO_JOB, "sacct": SACCT_OFF, "scontrol": NO_JOB}))
        self.assertEqual((status.running, status.exit_code), (False, None))
        self.assertIn("finished, state unknown", status.detail)

    def test_controller_unreachable(self) -> None:
        """squeue failing to reach slurmctld is 'unreachable', other failures 'failed'."""
        down = ok(err="squeue: error: Unable to contact slurm controller (connect failure)\n", code=1)
        self.assertEqual(self.failureResultOf(self.status({"squeue": down}), LaunchError).value.code, "unreachable")
        odd = ok(err="squeue: error: something else\n", code=1)
        self.assertEqual(self.failureResultOf(self.status({"squeue": odd}), LaunchError).value.code, "failed")


def agent(job_id: int) -> LaunchRecord:
    """The record of detector D<job_id> as job <job_id>."""
    return LaunchRecord(f"detector:D{job_id}", "slurm", "cluster", 1.0, job_id=str(job_id))


class BatchTests(SynchronousTestCase):
    """status() calls of one reactor turn share their squeue commands."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.queue = {"41": "RUNNING|None|2025-01-31T12:00:00|n1", "42": "PENDING|Priority|N/A|n/a",
                      "43": "RUNNING|None|2025-01-31T12:00:00|n3"}
        self.ended = {"44": "COMPLETED|0:0|2025-01-31T12:05:00"}

        def respond(argv: list[str]) -> Any:
            if argv[0] == "squeue":
                jobs = argv[argv.index("-j") + 1].split(",")
                if len(jobs) == 1 and jobs[0] not in self.queue:
                    return NO_JOB  # what SLURM 22.05 says when the only id asked is unknown
                return ok("".join(f"{job}|{self.queue[job]}\n" for job in reversed(jobs) if job in self.queue))
            if argv[0] == "sacct":
                line = self.ended.get(argv[argv.index("-j") + 1])
                return ok(line + "\n") if line else ok()
            return NO_JOB

        self.runner = FakeRunner(respond)
        self.launcher = SlurmLauncher(self.clock, [], runner=self.runner)

    def statuses(self, *jobs: int) -> list[Any]:
        """The statuses of C{jobs}, all asked in one reactor turn."""
        asked = len(self.runner.calls)
        calls = [self.launcher.status(agent(job)) for job in jobs]
        for d in calls:
            self.assertNoResult(d)
        self.assertEqual(len(self.runner.calls), asked)  # nothing asked before the turn ends
        self.clock.advance(0)
        return [self.successResultOf(d) for d in calls]

    def squeued(self) -> list[list[str]]:
        """The job ids of every squeue command, in order."""
        return [argv[3].split(",") for argv in self.runner.commands("squeue")]

    def test_one_squeue_per_turn(self) -> None:
        """Three status() calls in one turn: one squeue with the three ids; each caller gets its own job."""
        running, pending, other = self.statuses(41, 42, 43)
        self.assertEqual(self.runner.commands(), [["squeue", "-h", "-j", "41,42,43", "-o", "%i|%T|%r|%S|%B"]])
        self.assertEqual((running.agent, running.job_id, running.running, running.detail),
                         ("detector:D41", "41", True, "RUNNING on n1"))
        self.assertEqual((pending.agent, pending.job_id, pending.running, pending.since, pending.detail),
                         ("detector:D42", "42", True, None, "PENDING (Priority)"))
        self.assertEqual((other.agent, other.job_id, other.detail), ("detector:D43", "43", "RUNNING on n3"))
        self.statuses(43)  # a later turn asks again
        self.assertEqual(self.squeued(), [["41", "42", "43"], ["43"]])

    def test_ended_jobs_go_to_accounting(self) -> None:
        """Jobs the list does not show ask sacct, then scontrol, each on its own; listed jobs ask neither."""
        first, ended, forgotten = self.statuses(41, 44, 45)
        self.assertEqual(self.squeued(), [["41", "44", "45"]])
        self.assertTrue(first.running)
        self.assertEqual((ended.job_id, ended.running, ended.exit_code, ended.detail),
                         ("44", False, 0, "COMPLETED, exited with code 0"))
        self.assertEqual((forgotten.job_id, forgotten.running), ("45", False))
        self.assertIn("finished, state unknown", forgotten.detail)
        self.assertEqual([argv[5] for argv in self.runner.commands("sacct")], ["44", "45"])
        self.assertEqual(self.runner.commands("scontrol"), [["scontrol", "-o", "show", "job", "45"]])

    def test_error_fails_all(self) -> None:
        """An unreachable controller or a squeue timeout fails every status() of the batch alike."""
        for answer, code, text in (
            (ok(err="squeue: error: Unable to contact slurm controller (connect failure)\n", code=1), "unreachable",
             "Unable to contact slurm controller"),
            (LaunchError("timeout", "squeue did not finish within 30 s (killed)"), "timeout", "did not finish"),
            (LaunchError("failed", "squeue not found on PATH"), "failed", "not found"),
        ):
            self.runner.respond = lambda argv, answer=answer: answer
            calls = [self.launcher.status(agent(job)) for job in (41, 42, 43)]
            self.clock.advance(0)
            for job, d in zip((41, 42, 43), calls, strict=True):
                error = self.failureResultOf(d, LaunchError).value
                self.assertEqual(error.code, code)
                self.assertIn(text, error.reason)
                if code == "unreachable":
                    self.assertIn(f"squeue failed for job {job} (asked with 2 other jobs)", error.reason)
        self.assertEqual(len(self.runner.commands("squeue")), 3)
        self.assertEqual(self.runner.commands("sacct") + self.runner.commands("scontrol"), [])

    def test_chunks(self) -> None:
        """A big batch is split into squeue commands of at most status_batch ids; a job asked twice is asked once."""
        self.launcher = SlurmLauncher(self.clock, [], runner=self.runner, status_batch=2)
        self.ended.update({str(job): "COMPLETED|0:0|2025-01-31T12:05:00" for job in range(44, 48)})
        results = self.statuses(41, 42, 43, 44, 41, 45)
        self.assertEqual(self.squeued(), [["41", "42"], ["43", "44"], ["45"]])
        self.assertEqual([(s.job_id, s.running) for s in results],
                         [("41", True), ("42", True), ("43", True), ("44", False), ("41", True), ("45", False)])

    def test_default_chunk(self) -> None:
        """By default at most 200 ids go into one squeue."""
        self.statuses(*range(1000, 1401))
        self.assertEqual([len(jobs) for jobs in self.squeued()], [200, 200, 1])

    def test_list_refused_falls_back(self) -> None:
        """Should squeue refuse a whole list for one unknown id, each job is asked on its own."""
        answer = self.runner.respond

        def strict(argv: list[str]) -> Any:
            if argv[0] == "squeue" and any(job not in self.queue for job in argv[3].split(",")):
                return NO_JOB
            return answer(argv)

        self.runner.respond = strict
        running, ended, pending = self.statuses(41, 44, 42)
        self.assertEqual(self.squeued(), [["41", "44", "42"], ["41"], ["44"], ["42"]])
        self.assertEqual([(s.job_id, s.running, s.detail) for s in (running, ended, pending)], [
            ("41", True, "RUNNING on n1"), ("44", False, "COMPLETED, exited with code 0"),
            ("42", True, "PENDING (Priority)"),
        ])

    def test_stop_shares_the_turn(self) -> None:
        """stop's queue polls join the status() calls of the same turn; a cancelled caller does not disturb others."""
        self.runner.respond = lambda argv: ok("".join(f"{job}|{self.queue[job]}\n" for job in self.queue)) \
            if argv[0] == "squeue" else ok()
        stopping = self.launcher.stop(agent(42), 3.0)
        cancelled = self.launcher.status(agent(41))
        other = self.launcher.status(agent(43))
        cancelled.cancel()
        self.failureResultOf(cancelled, defer.CancelledError)
        self.clock.advance(0)
        self.assertEqual(self.squeued()[0], ["42", "41", "43"])
        self.assertEqual(self.runner.commands("scancel")[0], ["scancel", "42"])
        self.assertTrue(self.successResultOf(other).running)
        del self.queue["42"]
        self.clock.advance(0.5)
        self.assertFalse(self.successResultOf(stopping).running)


class StopTests(SynchronousTestCase):
    """stop: SIGTERM, then SIGKILL after the grace period, with a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.queue = "42|RUNNING|None|2025-01-31T12:00:00|n1\n"
        self.ignores_term = False

        def respond(argv: list[str]) -> Any:
            if argv[0] == "squeue":
                return ok(self.queue)
            if argv[0] == "scancel":
                if argv[1:] == ["42"] or "--signal=KILL" in argv or not self.ignores_term:
                    self.queue = ""
                return ok()
            return {"sacct": SACCT_OFF, "scontrol": ok("JobId=42 JobState=COMPLETED ExitCode=0:0\n")}[argv[0]]

        self.runner = FakeRunner(respond)
        self.launcher = SlurmLauncher(self.clock, [], timeout=5.0, runner=self.runner, poll_interval=0.5)

    def stop(self, grace: float) -> defer.Deferred[Any]:
        """Stop D1 and end the reactor turn (squeue questions go out at its end)."""
        d = self.launcher.stop(record(), grace)
        self.clock.advance(0)
        return d

    def test_graceful(self) -> None:
        """A job that ends on SIGTERM: one scancel --signal=TERM --full, no SIGKILL."""
        status = self.successResultOf(self.stop(10.0))
        self.assertEqual(self.runner.commands("scancel"), [["scancel", "--signal=TERM", "--full", "42"]])
        self.assertEqual((status.running, status.exit_code), (False, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_killed_after_grace(self) -> None:
        """A job still there after the grace period gets SIGKILL and a cancel; stop fires once it is gone."""
        self.ignores_term = True
        d = self.stop(3.0)
        self.clock.advance(2.5)
        self.assertNoResult(d)
        self.assertEqual(len(self.runner.commands("scancel")), 1)
        self.clock.pump([0.5] * 2)
        status = self.successResultOf(d)
        self.assertEqual(self.runner.commands("scancel"), [
            ["scancel", "--signal=TERM", "--full", "42"],
            ["scancel", "--signal=KILL", "--full", "42"],
            ["scancel", "42"],
        ])
        self.assertFalse(status.running)

    def test_pending_cancelled(self) -> None:
        """A pending job (no process to signal) is simply cancelled."""
        self.queue = "42|PENDING|Priority|N/A|n/a\n"
        self.successResultOf(self.stop(3.0))
        self.assertEqual(self.runner.commands("scancel"), [["scancel", "42"]])

    def test_already_gone(self) -> None:
        """Stopping a job that already left the queue succeeds without scancel."""
        self.queue = ""
        status = self.successResultOf(self.stop(3.0))
        self.assertFalse(status.running)
        self.assertEqual(self.runner.commands("scancel"), [])

    def test_never_leaves(self) -> None:
        """A job that stays after SIGKILL fails the stop with 'timeout' after the launcher's timeout."""
        self.runner.respond = lambda argv: ok("42|COMPLETING|None|N/A|n1\n") if argv[0] == "squeue" else ok()
        d = self.stop(1.0)
        self.clock.pump([0.5] * 20)
        self.assertEqual(self.failureResultOf(d, LaunchError).value.code, "timeout")

    def test_tail(self) -> None:
        """tail runs tail -n on the recorded output file; unreadable files give a clear message."""
        self.runner.respond = lambda argv: ok("line 1\nline 2\n")
        self.assertEqual(self.successResultOf(self.launcher.tail(record(), 2)), "line 1\nline 2\n")
        self.assertEqual(self.runner.commands("tail"), [["tail", "-n", "2", "--", "/logs/d1-42.log"]])
        self.runner.respond = lambda argv: ok(err="tail: cannot open '/logs/d1-42.log'\n", code=1)
        self.assertIn("not readable on this host", self.successResultOf(self.launcher.tail(record(), 2)))
        self.assertEqual(self.failureResultOf(self.launcher.tail(record(), 0), LaunchError).value.code, "invalid")


class ProcessRunnerTests(SynchronousTestCase):
    """The real runner with a fake process reactor."""

    def test_output_and_code(self) -> None:
        """stdin is written then closed; output and exit code come back; env has the extra variables."""
        fake = FakeProcessReactor()
        d = ProcessRunner(fake, {"SLURM_CONF": "/x/slurm.conf"})(["sh", "-s"], b"echo hi\n", 5.0)
        proto, executable, args, env, transport = fake.spawned[0]
        self.assertEqual((executable.endswith("/sh"), args, env["SLURM_CONF"]), (True, ["sh", "-s"], "/x/slurm.conf"))
        self.assertEqual((transport.written, transport.stdin_closed), (b"echo hi\n", True))
        proto.childDataReceived(1, b"out")
        proto.childDataReceived(2, b"err")
        proto.processEnded(Failure(ProcessTerminated(exitCode=3)))
        self.assertEqual(self.successResultOf(d), CommandResult(3, "out", "err"))
        self.assertEqual(fake.getDelayedCalls(), [])

    def test_signal(self) -> None:
        """A command killed by a signal has minus the signal as code."""
        fake = FakeProcessReactor()
        d = ProcessRunner(fake)(["sh"], None, 5.0)
        fake.spawned[0][0].processEnded(Failure(ProcessTerminated(signal=9)))
        self.assertEqual(self.successResultOf(d).code, -9)

    def test_timeout_kills(self) -> None:
        """A command still running after its timeout is killed and fails with 'timeout'."""
        fake = FakeProcessReactor()
        d = ProcessRunner(fake)(["sh"], None, 5.0)
        fake.advance(5.0)
        self.assertEqual(fake.spawned[0][4].signals, ["KILL"])
        self.assertEqual(self.failureResultOf(d, LaunchError).value.code, "timeout")
        fake.spawned[0][0].processEnded(Failure(ProcessDone(None)))  # the late end changes nothing

    def test_missing_binary(self) -> None:
        """A command not on the PATH fails clearly, nothing is spawned."""
        fake = FakeProcessReactor()
        d = ProcessRunner(fake, {"PATH": "/nonexistent"}, ": is the SLURM client installed?")(["sbatch"], None, 5.0)
        failure = self.failureResultOf(d, LaunchError)
        self.assertEqual(failure.value.code, "failed")
        self.assertIn("sbatch not found on PATH (/nonexistent): is the SLURM client installed?", failure.value.reason)
        self.assertEqual(fake.spawned, [])
        launcher = SlurmLauncher(fake, [], env={"PATH": "/nonexistent"})
        failure = self.failureResultOf(launcher.run(["squeue"], None, 5.0), LaunchError)
        self.assertIn("is the SLURM client installed?", failure.value.reason)


class ScriptTests(TestCase):
    """The batch script run by a real sh: arguments arrive verbatim, nothing is interpreted."""

    async def test_arguments_verbatim(self) -> None:
        """Quotes, spaces, $(...), backticks and ';' in arguments and env reach the program unchanged."""
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        printer = tmp / "print-args"
        printer.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\nprintf "ENV=%s\\n" "$ECS_X"\n')
        printer.chmod(0o755)
        nasty = ["it's", 'say "hi"', "$(touch pwned1)", "`touch pwned2`", f"; touch {tmp}/pwned3", "a b\tc",
                 "$HOME", "\\", "*", "-n", ""]
        spec = AgentSpec("detector", "D1", ("ecs-detector", "--id", "D1", *nasty))
        sub = build_submission(spec, placement(twistd=str(printer), args=["--x", "'; touch pwned4 '"],
                                               env={"ECS_X": "$(touch pwned5) 'q'"}), ["--common", "c d"], str(tmp))
        result = await ProcessRunner(reactor)(["sh", "-s"], sub.script.encode(), 10.0)
        self.assertEqual(result.code, 0, result.err)
        lines = result.out.splitlines()
        self.assertRegex(lines[0], r"^ecs-launch: agent detector:D1 job  pid \d+ on \S+$")
        self.assertEqual(lines[1:], ["-n", "--pidfile=", "ecs-detector", "--id", "D1", *nasty, "--common", "c d",
                                     "--x", "'; touch pwned4 '", "ENV=$(touch pwned5) 'q'"])
        self.assertEqual([p.name for p in tmp.iterdir() if "pwned" in p.name], [])
        self.assertFalse(any(Path(f"pwned{n}").exists() for n in range(1, 6)))


class SlurmEndToEndTests(TestCase):
    """A detector controller as a job of a real single-node SLURM, registered with a real ECA."""

    timeout = 120

    async def api(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        return await call_api(self.base, method, path, token, body)

    async def unassigned(self, token: str) -> dict[str, Any]:
        code, body = await self.api("GET", "/api/detectors/unassigned", token)
        self.assertEqual(code, 200, body)
        return {entry["id"]: entry for entry in body}

    async def poll(self, condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        for _ in range(int(timeout / 0.2)):
            value = await condition()
            if value:
                return value
            await task.deferLater(reactor, 0.2, lambda: None)
        raise AssertionError(f"timed out waiting for {what}")

    async def start_eca(self, tmp: Path) -> str:
        """A real ecs-eca whose store holds the unassigned detector SL1 (type STS); returns an admin token."""
        from ecs.net.keys import init_keys
        from ecs.store import Store, database_path

        state = tmp / "var"
        init_keys(state / "keys")
        (tmp / "ecs.yaml").write_text(
            f"registry: {{address: 'tcp://127.0.0.1:{free_port()}'}}\n"
            "heartbeat: {interval: 0.3, timeout: 1.2}\nrequest_timeout: 3.0\n"
        )
        store = await Store.open(database_path(state), reactor)
        try:
            await store.add_detector("SL1", "STS", None)
        finally:
            await store.close()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        argv = [tool("twistd"), "-n", "--pidfile=", "ecs-eca", "--config", str(tmp / "ecs.yaml"),
                "--state-dir", str(state), "--port", str(port)]
        eca, _ = spawn(self, "ecs-eca", argv, cwd=str(tmp), env={"ECS_ADMIN_PASSWORD": ""})
        await eca.wait_for(r"ECS web: http://", timeout=60)
        password = (state / "admin-password").read_text().strip()
        login = {"username": "admin", "password": password, "kind": "api"}
        code, body = await self.api("POST", "/api/login", body=login)
        self.assertEqual(code, 200, body)
        return str(body["token"])

    async def test_detector_job(self) -> None:
        """ecs-detector as a SLURM job: RUNNING, registered with the ECA; stop cancels it, its process is gone."""
        from tests.slurm import start_cluster

        cluster = await start_cluster(self)
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        token = await self.start_eca(tmp)
        launcher = SlurmLauncher(reactor, ["--config", str(tmp / "ecs.yaml"), "--state-dir", str(tmp / "var")],
                                 timeout=15.0, env=cluster.env, log_dir=str(tmp), poll_interval=0.2)
        spec = AgentSpec("detector", "SL1", ("ecs-detector", "--id", "SL1", "--type", "STS"))
        started = await launcher.start(spec, Placement("detector:SL1", cluster.node, "slurm",
                                                       {"twistd": tool("twistd"), "workdir": str(tmp)}))
        self.assertIsNotNone(started.job_id)
        self.assertEqual(started.log, f"{tmp}/ecs-detector-SL1-{started.job_id}.log")

        async def running() -> Any:
            status = await launcher.status(started)
            return status if status.detail.startswith("RUNNING") else None

        status = await self.poll(running, "job RUNNING")
        self.assertTrue(status.running)
        self.assertEqual(status.job_id, started.job_id)

        async def connected() -> bool:
            return bool((await self.unassigned(token)).get("SL1", {}).get("connected"))

        try:
            await self.poll(connected, "SL1 connected to the ECA")
        except AssertionError:
            raise AssertionError("SL1 never connected; job output:\n" + await launcher.tail(started, 30)) from None
        output = await launcher.tail(started, 200)
        match = re.search(r"ecs-launch: agent detector:SL1 job (\d+) pid (\d+) on", output)
        assert match is not None, output
        self.assertEqual(match.group(1), started.job_id)
        pid = int(match.group(2))
        self.assertTrue(pid_alive(pid))

        final = await launcher.stop(started, grace=10.0)
        self.assertFalse(final.running)
        # twistd shuts down cleanly on SIGTERM, then ends by that signal (so SLURM says FAILED)
        self.assertEqual((final.exit_code, final.detail), (-15, "FAILED, killed by signal 15 (SIGTERM)"))
        self.assertIn("Server Shut Down.", await launcher.tail(started, 5))
        self.assertNotIn(started.job_id, await cluster.jobs())
        self.assertFalse(pid_alive(pid))
        again = await launcher.stop(started, grace=1.0)  # stopping one already gone succeeds
        self.assertFalse(again.running)

        async def disconnected() -> bool:
            return not (await self.unassigned(token))["SL1"]["connected"]

        await self.poll(disconnected, "SL1 shown disconnected")

    async def test_batched_status(self) -> None:
        """Two running jobs, one ended and one unknown id asked in one turn: one squeue, each gets its own state."""
        from tests.slurm import start_cluster

        cluster = await start_cluster(self)
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        for name, body in (("sleeper", "exec sleep 300"), ("failer", "exit 3")):
            (tmp / name).write_text(f"#!/bin/sh\n{body}\n")
            (tmp / name).chmod(0o755)
        real = ProcessRunner(reactor, cluster.env)
        commands: list[list[str]] = []

        def counting(argv: Sequence[str], stdin: bytes | None, timeout: float) -> defer.Deferred[CommandResult]:
            commands.append(list(argv))
            return real(argv, stdin, timeout)

        launcher = SlurmLauncher(reactor, [], timeout=15.0, log_dir=str(tmp), runner=counting, poll_interval=0.2)

        async def start(agent_id: str, program: str) -> LaunchRecord:
            spec = AgentSpec("detector", agent_id, ("ecs-detector", "--id", agent_id))
            return await launcher.start(spec, Placement(f"detector:{agent_id}", cluster.node, "slurm",
                                                        {"twistd": str(tmp / program)}))

        failed = await start("F1", "failer")

        async def ended() -> Any:
            return not (await launcher.status(failed)).running

        await self.poll(ended, "the failing job to end")
        first, second = await start("R1", "sleeper"), await start("R2", "sleeper")

        async def both_running() -> Any:
            states = await defer.gatherResults([launcher.status(first), launcher.status(second)])
            return all(s.detail.startswith("RUNNING") for s in states)

        await self.poll(both_running, "two jobs RUNNING")
        unknown = LaunchRecord("detector:U1", "slurm", cluster.node, 1.0, job_id="999999")
        del commands[:]
        records = [first, failed, second, unknown]
        statuses = await defer.gatherResults([launcher.status(r) for r in records])
        squeues = [argv for argv in commands if argv[0] == "squeue"]
        self.assertEqual(squeues[0][3], ",".join(str(r.job_id) for r in records))
        # SLURM 22.05 leaves unknown ids out of a list (it refuses only a lone unknown id): no per-job fallback
        self.assertEqual(len(squeues), 1, squeues)
        expected = zip(records, (True, False, True, False), strict=True)
        self.assertEqual([(s.agent, s.job_id, s.running) for s in statuses],
                         [(r.agent, r.job_id, running) for r, running in expected])
        self.assertTrue(statuses[0].detail.startswith("RUNNING on "), statuses[0].detail)
        self.assertTrue(statuses[2].detail.startswith("RUNNING on "), statuses[2].detail)
        self.assertEqual((statuses[1].exit_code, statuses[1].detail), (3, "FAILED, exited with code 3"))
        self.assertIn("finished, state unknown", statuses[3].detail)

        stopped = await defer.gatherResults([launcher.stop(first, 5.0), launcher.stop(second, 5.0)])
        self.assertEqual([(s.running, s.exit_code) for s in stopped], [(False, -15), (False, -15)])
        self.assertEqual(await cluster.jobs(), [])
