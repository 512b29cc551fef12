# -*- test-case-name: tests.test_launch_slurm -*-
"""
A real single-node SLURM cluster for end-to-end tests, in a temporary
directory: its own C{munged} (a fresh key, its socket in the directory),
a C{slurm.conf} for this host (C{hostname -s}, loopback addresses, free
ports, C{proctrack/linuxproc}, C{task/none}, no accounting), and real
C{slurmctld -D} and C{slurmd -D} processes.  Commands reach it through
C{SLURM_CONF} (L{SlurmCluster.env}).

Needs root (slurmd starts jobs as their user) and Debian's C{slurmctld},
C{slurmd}, C{slurm-client} and C{munge}; without them, or when a daemon
cannot start, the test is skipped with the reason (set C{ECS_REQUIRE_SLURM=1}
to make that a failure, as in CI).

Clean-up, in order: every job is killed and cancelled (its processes go
with it), the daemons get SIGTERM (SIGKILL after a grace period) by pid,
then any process still carrying this cluster's C{SLURM_CONF} in its
environment (a job step left behind) is killed by pid, and the directory is
removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import SkipTest

from ecs.launch.command import ProcessRunner
from tests.procs import Watched, spawn

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
READY_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _find(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class SlurmCluster:
    """The cluster of one test: L{start} it, the test's cleanups stop it."""

    def __init__(self, testcase: Any) -> None:
        self.testcase = testcase
        # Not under _trial_temp: munged's socket path must stay short.
        self.dir = Path("/tmp/ecs-slurm-unset")
        self.conf = self.dir / "slurm.conf"
        self.env: dict[str, str] = {}
        self.node = socket.gethostname().split(".")[0]
        self.procs: dict[str, Watched] = {}
        self.run = ProcessRunner(reactor, self.env)

    def skip(self, reason: str) -> None:
        """Skip the test (or fail it, with C{ECS_REQUIRE_SLURM=1})."""
        if os.environ.get("ECS_REQUIRE_SLURM") == "1":
            raise AssertionError(f"SLURM required but {reason}")
        raise SkipTest(reason)

    async def start(self) -> None:
        """Start munged, slurmctld and slurmd; fire once the node is idle."""
        missing = [name for name in DAEMONS + CLIENTS if _find(name) is None]
        if missing:
            self.skip(f"SLURM/munge not installed (missing {', '.join(missing)}): apt install slurmctld slurmd "
                      "slurm-client munge")
        if os.geteuid() != 0:
            self.skip("slurmd must run as root to start jobs")
        self.dir = Path(tempfile.mkdtemp(prefix="ecs-slurm-", dir="/tmp"))
        self.conf = self.dir / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.run = ProcessRunner(reactor, self.env)
        self.testcase.addCleanup(shutil.rmtree, self.dir, True)
        self.testcase.addCleanup(self.kill_leftovers)
        os.chmod(self.dir, 0o755)  # munged wants its socket's directory searchable by all
        key = os.open(self.dir / "munge.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.write(key, os.urandom(1024))
        finally:
            os.close(key)
        munged = self.daemon("munged", [
            "--foreground", f"--socket={self.dir / 'munge.sock'}", f"--key-file={self.dir / 'munge.key'}",
            f"--pid-file={self.dir / 'munged.pid'}", f"--log-file={self.dir / 'munged.log'}",
            f"--seed-file={self.dir / 'munged.seed'}",
        ])
        await self.until(lambda: (self.dir / "munge.sock").exists(), "munged's socket", munged)
        self.write_conf()
        for name in ("state", "spool"):
            (self.dir / name).mkdir()
        self.daemon("slurmctld", ["-D", "-f", str(self.conf)])
        self.daemon("slurmd", ["-D", "-f", str(self.conf)])
        self.testcase.addCleanup(self.cancel_all)
        await self.until_idle()

    def daemon(self, name: str, args: list[str]) -> Watched:
        """Start a daemon in the foreground; the test's cleanup stops it by pid."""
        binary = _find(name)
        assert binary is not None
        proc, _ = spawn(self.testcase, name, [binary, *args], cwd=str(self.dir), env=self.env)
        self.procs[name] = proc
        return proc

    def write_conf(self) -> None:
        """slurm.conf: this host alone, on loopback, everything in our directory."""
        d = self.dir
        cpus = max(1, min(os.cpu_count() or 1, 2))
        self.conf.write_text(
            f"ClusterName=ecstest\n"
            f"SlurmctldHost={self.node}(127.0.0.1)\n"
            f"SlurmctldPort={free_port()}\nSlurmdPort={free_port()}\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={d / 'munge.sock'}\n"
            f"StateSaveLocation={d / 'state'}\nSlurmdSpoolDir={d / 'spool'}\n"
            f"SlurmctldPidFile={d / 'slurmctld.pid'}\nSlurmdPidFile={d / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={d / 'slurmctld.log'}\nSlurmdLogFile={d / 'slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "SchedulerType=sched/backfill\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n"
            "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
            "JobCompType=jobcomp/none\nMpiDefault=none\nMailProg=/bin/true\n"
            "ReturnToService=2\nSlurmdParameters=config_overrides\nKillWait=5\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=100 State=UNKNOWN\n"
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )

    async def until(self, condition: Any, what: str, *watched: Watched) -> None:
        """Poll C{condition}; skip if a watched daemon exits or it takes too long."""
        for _ in range(int(READY_TIMEOUT / 0.1)):
            if condition():
                return
            for proc in watched or tuple(self.procs.values()):
                if proc.ended.called:
                    self.skip(f"{proc.name} could not start (exit {proc.exit_code}): " + " | ".join(proc.lines[-8:]))
            await task.deferLater(reactor, 0.1, lambda: None)
        self.skip(f"no {what} after {READY_TIMEOUT:g} s")

    async def until_idle(self) -> None:
        """Wait until C{sinfo} shows the node idle."""
        state = {"text": ""}

        async def ask() -> None:
            result = await self.run(["sinfo", "-h", "-N", "-o", "%T"], None, 10.0)
            state["text"] = result.out.strip() + result.err.strip()

        for _ in range(int(READY_TIMEOUT / 0.2)):
            await ask()
            if state["text"] == "idle":
                return
            for proc in self.procs.values():
                if proc.ended.called:
                    self.skip(f"{proc.name} could not start (exit {proc.exit_code}): " + " | ".join(proc.lines[-8:]))
            await task.deferLater(reactor, 0.2, lambda: None)
        self.skip(f"node {self.node} not idle after {READY_TIMEOUT:g} s (sinfo: {state['text']!r})")

    async def jobs(self) -> list[str]:
        """The ids of the jobs in the queue (any state still listed)."""
        result = await self.run(["squeue", "-h", "-o", "%i"], None, 10.0)
        return result.out.split()

    async def cancel_all(self) -> None:
        """Kill and cancel every job; wait (bounded) until the queue is empty."""
        if any(proc.ended.called for proc in self.procs.values()):
            return
        for _ in range(50):
            jobs = await self.jobs()
            if not jobs:
                return
            await self.run(["scancel", "--signal=KILL", "--full", *jobs], None, 10.0)
            await self.run(["scancel", *jobs], None, 10.0)
            await task.deferLater(reactor, 0.2, lambda: None)

    def kill_leftovers(self) -> None:
        """SIGKILL, by pid, any process whose environment names our slurm.conf (daemons are gone by now)."""
        marker = f"SLURM_CONF={self.conf}".encode()
        for pid in marked_pids(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def marked_pids(marker: bytes) -> list[int]:
    """The pids of the live processes with C{marker} as one entry of their environment."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if marker in environ and stat[stat.rindex(")") + 2] not in "ZX":
            found.append(int(name))
    return found


async def start_cluster(testcase: Any) -> SlurmCluster:
    """A running single-node SLURM cluster, stopped in C{testcase}'s cleanup."""
    cluster = SlurmCluster(testcase)
    await cluster.start()
    return cluster
