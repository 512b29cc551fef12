"""
Tests of the C{local} launcher (L{ecs.launch.local}): real twistd agents and
small stand-in programs started as process groups, watched, tailed and
stopped; records adopted by a second launcher; pid reuse; bad input.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from ecs.launch import AgentSpec, AgentStatus, LaunchError, LaunchRecord, Placement, _proc
from ecs.launch.local import LocalLauncher, check_env, describe_exit, tail_file
from tests.procs import pid_alive

INVENTORY = (
    "partitions:\n"
    "  p1: {endpoint: 'tcp://127.0.0.1:9', detectors: [STS]}\n"
    "detectors:\n"
    "  STS: {type: STS}\n"
)


async def wait_until(predicate: object, what: str, timeout: float = 20.0) -> None:
    """Poll C{predicate()} every 20 ms until true; fail after C{timeout} s."""
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]
    while not predicate():  # type: ignore[operator]
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


def kill_group_now(pgid: int) -> None:
    """Cleanup: SIGKILL a process group if it still exists."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def detector_setup(testcase: TestCase) -> tuple[Path, list[str]]:
    """A temp dir with an inventory; the common args of a detector agent without keys."""
    tmp = Path(testcase.mktemp()).resolve()
    tmp.mkdir()
    (tmp / "inventory.yaml").write_text(INVENTORY)
    return tmp, ["--inventory", str(tmp / "inventory.yaml"), "--state-dir", str(tmp), "--security", "none"]


def script(tmp: Path, name: str, body: str) -> str:
    """An executable shell script standing in for twistd."""
    path = tmp / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


class LocalAgentTests(TestCase):
    """A real detector agent through start, status, tail and stop."""

    timeout = 60

    async def test_start_status_tail_stop(self) -> None:
        """The agent leads its own group, logs to its file, and stop leaves no process of the group."""
        tmp, common = detector_setup(self)
        launcher = LocalLauncher(reactor, tmp, common)
        ended: list[tuple[str, AgentStatus]] = []
        launcher.on_exit(lambda name, status: ended.append((name, status)))
        spec = AgentSpec("detector", "STS", ("ecs-detector", "--id", "STS"))
        record = await launcher.start(spec, Placement("detector:STS", "localhost", "local"))
        self.addCleanup(kill_group_now, record.pid)
        self.assertEqual(record.agent, "detector:STS")
        self.assertEqual(record.log, str(tmp / "logs" / "agents" / "detector-STS.log"))
        stat = _proc.read_stat(record.pid)
        assert stat is not None
        self.assertEqual(stat.pgid, record.pid)
        self.assertEqual(record.extra["starttime"], stat.starttime)
        self.assertEqual(LaunchRecord.from_json(record.to_json()), record)

        log = Path(record.log)
        await wait_until(lambda: log.exists() and "serving 1 agent(s)" in log.read_text(), "serving line")
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
        self.assertIn(b"ecs-detector", cmdline)
        self.assertIn(b"--pidfile=", cmdline)
        status = await launcher.status(record)
        self.assertTrue(status.running)
        self.assertEqual((status.pid, status.since), (record.pid, record.started))
        tail = await launcher.tail(record, 50)
        self.assertIn("serving 1 agent(s)", tail)
        self.assertLessEqual(len((await launcher.tail(record, 1)).splitlines()), 1)

        final = await launcher.stop(record, 10.0)
        self.assertFalse(final.running)
        # twistd ends a graceful shutdown on SIGTERM by re-raising the signal.
        self.assertEqual(final.exit_code, -signal.SIGTERM, final.detail)
        self.assertEqual(_proc.group_members(record.pid), [])
        self.assertEqual((await launcher.status(record)).exit_code, -signal.SIGTERM)
        self.assertEqual([name for name, _ in ended], ["detector:STS"])
        # Stopping it again succeeds with the same final status.
        self.assertEqual(await launcher.stop(record, 1.0), final)


class LocalProcessTests(TestCase):
    """Exit codes, the SIGKILL escalation, adoption and pid reuse, with small stand-in programs."""

    timeout = 30

    def setUp(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir()
        self.launcher = LocalLauncher(reactor, self.tmp, ["--common"])

    async def start(self, body: str, agent_id: str = "x") -> LaunchRecord:
        twistd = script(self.tmp, f"fake-{agent_id}", body)
        spec = AgentSpec("simhost", agent_id, ("ecs-simhost", "--id", agent_id))
        placement = Placement(f"simhost:{agent_id}", "localhost", "local",
                              {"twistd": twistd, "args": ["a b", "c;d"], "env": {"ECS_TEST_VAR": "v w"}})
        record = await self.launcher.start(spec, placement)
        self.addCleanup(kill_group_now, record.pid)
        return record

    async def test_exit_code_and_callback(self) -> None:
        """A child that exits reports its code at once through on_exit and status; args and env arrive."""
        ended: list[AgentStatus] = []
        self.launcher.on_exit(lambda name, status: ended.append(status))
        record = await self.start('echo "argv: $*"; echo "env: $ECS_TEST_VAR"; echo oops >&2; exit 3\n')
        await wait_until(lambda: ended, "exit callback")
        self.assertEqual((ended[0].exit_code, ended[0].detail), (3, "exited with code 3"))
        status = await self.launcher.status(record)
        self.assertEqual((status.running, status.exit_code), (False, 3))
        self.assertEqual(
            await self.launcher.tail(record, 10),
            "argv: -n --pidfile= ecs-simhost --id x --common a b c;d\nenv: v w\noops\n",
        )

    async def test_sigkill_after_grace(self) -> None:
        """A group that ignores SIGTERM is killed whole after the grace period."""
        record = await self.start("trap '' TERM\nsleep 300 &\necho started\nwait\n")
        log = Path(record.log or "")
        await wait_until(lambda: "started" in log.read_text(), "started line")
        await wait_until(lambda: len(_proc.group_members(record.pid)) == 2, "two processes in the group")
        final = await self.launcher.stop(record, 0.3)
        self.assertEqual(final.exit_code, -signal.SIGKILL)
        self.assertIn("killed by signal 9", final.detail)
        self.assertEqual(_proc.group_members(record.pid), [])

    async def test_stop_right_after_start(self) -> None:
        """A stop at once after start reaches the whole group (start waits for setsid)."""
        record = await self.start("sleep 300 &\nexec sleep 300\n")
        final = await self.launcher.stop(record, 5.0)
        self.assertFalse(final.running)
        self.assertEqual(_proc.group_members(record.pid), [])

    async def test_adopted_record(self) -> None:
        """Another launcher (the ECA after a restart) sees the agent running and stops its whole group."""
        record = await self.start("sleep 300 &\necho started\nwait\n")
        log = Path(record.log or "")
        await wait_until(lambda: "started" in log.read_text(), "started line")
        adopter = LocalLauncher(reactor, self.tmp, [])
        adopted = LaunchRecord.from_json(record.to_json())
        self.assertTrue((await adopter.status(adopted)).running)
        final = await adopter.stop(adopted, 5.0)
        self.assertFalse(final.running)
        self.assertIsNotNone(final.since)
        self.assertEqual(_proc.group_members(record.pid), [])
        self.assertFalse((await adopter.status(adopted)).running)

    async def test_reused_pid_not_signalled(self) -> None:
        """A record whose start time does not match the live pid is not ours: not running, never killed."""
        other = subprocess.Popen(["sleep", "300"], start_new_session=True)
        self.addCleanup(other.wait)
        self.addCleanup(other.kill)
        stat = _proc.read_stat(other.pid)
        assert stat is not None
        record = LaunchRecord("simhost:x", "local", "localhost", 0.0, pid=other.pid,
                              log=str(self.tmp / "logs" / "agents" / "simhost-x.log"),
                              extra={"starttime": stat.starttime - 1})
        self.assertFalse((await self.launcher.status(record)).running)
        final = await self.launcher.stop(record, 0.1)
        self.assertFalse(final.running)
        self.assertTrue(pid_alive(other.pid))

    async def test_refused(self) -> None:
        """Bad placements, arguments, environments and records are refused with `invalid`."""
        spec = AgentSpec("simhost", "x", ("ecs-simhost",))
        cases = [
            (spec, Placement("simhost:y", "localhost", "local")),
            (spec, Placement("simhost:x", "localhost", "local", {"args": ["a\nb"]})),
            (spec, Placement("simhost:x", "localhost", "local", {"args": "--x"})),
            (spec, Placement("simhost:x", "localhost", "local", {"env": {"A=B": "1"}})),
            (spec, Placement("simhost:x", "localhost", "local", {"twistd": str(self.tmp / "missing")})),
            (AgentSpec("simhost", "a;touch pwned", ()), Placement("simhost:x", "localhost", "local")),
        ]
        for spec_, placement in cases:
            failure = await self.assertFailure(self.launcher.start(spec_, placement), LaunchError)
            self.assertEqual(failure.code, "invalid", failure)
        for pid in (None, 0, 1, -5):
            record = LaunchRecord("simhost:x", "local", "localhost", 0.0, pid=pid)
            self.assertEqual((await self.assertFailure(self.launcher.stop(record, 1), LaunchError)).code, "invalid")
        record = LaunchRecord("simhost:x", "local", "localhost", 0.0, pid=5, log="/etc/passwd")
        self.assertEqual((await self.assertFailure(self.launcher.tail(record, 5), LaunchError)).code, "invalid")
        self.assertFalse((self.tmp / "pwned").exists())


class HelperTests(TestCase):
    """Pure helpers: tail, /proc parsing, env checks."""

    def test_tail_large_file(self) -> None:
        """Only the end of a large file is returned, lines intact."""
        path = Path(self.mktemp())
        with open(path, "w") as f:
            for i in range(200_000):
                f.write(f"line {i}\n")
        self.assertEqual(tail_file(path, 3), "line 199997\nline 199998\nline 199999\n")
        self.assertEqual(tail_file(Path(self.mktemp()), 3), "")
        path.write_text("no newline at end")
        self.assertEqual(tail_file(path, 3), "no newline at end\n")

    def test_parse_stat(self) -> None:
        """The command name may hold spaces and parentheses."""
        fields = ["S", "1", "4242"] + ["0"] * 16 + ["987654"] + ["0"] * 10
        stat = _proc.parse_stat("4242 (we) ird (name)) " + " ".join(fields))
        self.assertEqual(stat, _proc.ProcStat("S", 4242, 987654))

    def test_env_and_exit_text(self) -> None:
        """Env must be name → string; exit texts name code or signal."""
        self.assertEqual(check_env({"A_1": "x y"}), {"A_1": "x y"})
        for bad in ([], {"1A": "x"}, {"A": 1}, {"A": "x\0"}):
            self.assertRaises(LaunchError, check_env, bad)
        self.assertEqual(describe_exit(-15), "killed by signal 15 (SIGTERM)")
        self.assertEqual(describe_exit(0), "exited with code 0")
