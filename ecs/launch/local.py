# -*- test-case-name: tests.test_launch_local -*-
"""
The C{local} launcher: agents as child processes of the ECA.

One module although it is just over 400 lines: one launcher, spawning,
watching (spawned and adopted processes alike) and stopping, whose steps
share the pid and start-time checks that keep it from signalling a stranger.

Each agent runs C{twistd -n --pidfile= <plugin args> <common args> <placement
args>} as the leader of a new process group (a two-line Python wrapper calls
C{setsid()} and then C{exec}s twistd, so the group id is the pid we record),
with stdin from C{/dev/null} and stdout and stderr appended to
C{<state_dir>/logs/agents/<kind>-<id>.log}.

The record keeps the pid and, in C{extra["starttime"]}, the process start
time from C{/proc/<pid>/stat}: a pid that the kernel gave to another program
after ours ended is never taken for our agent, and never signalled.  Agents
this launcher did not spawn itself (records adopted after an ECA restart)
are watched and stopped through C{/proc} and their process group alone.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, threads
from twisted.internet.error import ProcessDone, ProcessTerminated
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
    _proc,
    check_argument,
)

# Re-exported: the option checks shared with the ssh launcher
from ecs.launch.options import ENV_NAME_RE, MAX_TAIL_LINES, check_args, check_env, check_lines

__all__ = [
    "ENV_NAME_RE",
    "MAX_TAIL_LINES",
    "LocalLauncher",
    "check_args",
    "check_env",
    "check_lines",
    "describe_exit",
    "tail_file",
]

_WRAPPER = (
    "import os, sys\n"
    "os.setsid()\n"
    "try:\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write('ecs launcher: cannot run %s: %s\\n' % (sys.argv[1], e))\n"
    "    os._exit(127)\n"
)
"""Run by C{python -I -S -c}: become a process group leader, then exec twistd."""

_TAIL_MAX_BYTES = 1 << 20
_POLL = 0.1
_KILL_WAIT = 10.0

ExitCallback = Callable[[str, AgentStatus], object]


def describe_exit(code: int | None) -> str:
    """C{"exited with code 1"}, C{"killed by signal 9"} (negative codes are signals)."""
    if code is None:
        return "ended (exit code unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"


def tail_file(path: Path, lines: int) -> str:
    """
    The last C{lines} lines of C{path}, reading backwards from its end in
    blocks and at most 1 MiB, so a huge log costs no more than a small one.
    """
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            position, data = end, b""
            while position > 0 and data.count(b"\n") <= lines and end - position < _TAIL_MAX_BYTES:
                step = min(65536, position)
                position -= step
                f.seek(position)
                data = f.read(step) + data
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise LaunchError("failed", f"cannot read {path}: {e.strerror}") from None
    text = data.decode("utf-8", "replace")
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")


class _Child(protocol.ProcessProtocol):
    """A process we spawned: learns how it ended."""

    def __init__(self, launcher: LocalLauncher, agent: str) -> None:
        self.launcher = launcher
        self.agent = agent
        self.pid: int | None = None
        self.starttime: int | None = None
        self.final: AgentStatus | None = None
        self._waiters: list[defer.Deferred[AgentStatus]] = []

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code: int | None
        if isinstance(value, ProcessDone):
            code = 0
        elif isinstance(value, ProcessTerminated):
            code = value.exitCode if value.exitCode is not None else -(value.signal or 0)
        else:
            code = None
        self.final = AgentStatus(
            agent=self.agent,
            running=False,
            pid=self.pid,
            exit_code=code,
            since=self.launcher.reactor.seconds(),
            detail=describe_exit(code),
        )
        self.launcher._child_ended(self, self.final)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(self.final)

    def ended(self) -> defer.Deferred[AgentStatus]:
        """Fire with the final status once the process has ended."""
        if self.final is not None:
            return defer.succeed(self.final)
        d: defer.Deferred[AgentStatus] = defer.Deferred()
        self._waiters.append(d)
        return d


@implementer(ILauncher)
class LocalLauncher:
    """
    Start agents as child processes of this one (see the module docstring).

    Besides L{ILauncher}: L{on_exit} registers C{callback(agent_name,
    status)}, called at once when a child this launcher spawned ends (not
    for adopted records, which L{status} finds out about when asked).

    @param reactor: provides C{IReactorProcess} and C{IReactorTime}.
    @param state_dir: logs go to C{<state_dir>/logs/agents/}.
    @param common_args: arguments every agent gets after its plugin
        arguments (settings file, state directory...).
    @param twistd: the twistd to run; default: the one beside
        C{sys.executable}.  A placement's C{twistd} option overrides it.
    """

    name = "local"
    _log = Logger()

    def __init__(
        self, reactor: Any, state_dir: Path, common_args: list[str], twistd: str | None = None
    ) -> None:
        self.reactor = reactor
        self.state_dir = Path(state_dir)
        self.common_args = check_args(common_args, "common arguments")
        self.twistd = twistd or str(Path(sys.executable).parent / "twistd")
        self.proc_root = _proc.PROC
        self._children: dict[int, _Child] = {}
        self._gone_since: dict[tuple[int, Any], float] = {}
        self._exit_callbacks: list[ExitCallback] = []

    def on_exit(self, callback: ExitCallback) -> None:
        """Call C{callback(agent_name, status)} whenever a spawned child ends."""
        self._exit_callbacks.append(callback)

    def log_path(self, spec: AgentSpec) -> Path:
        """Where the agent's output goes."""
        _ = spec.name  # the property checks kind and id, which make up the file name
        return self.state_dir / "logs" / "agents" / f"{spec.kind}-{spec.id}.log"

    def command(self, spec: AgentSpec, placement: Placement) -> list[str]:
        """The agent's command line, every part checked."""
        name = spec.name
        if placement.agent != name:
            raise LaunchError("invalid", f"placement is for {placement.agent!r}, not {name!r}")
        options = placement.options
        if not isinstance(options, Mapping):
            raise LaunchError("invalid", f"invalid placement options {options!r}")
        twistd = check_argument(options.get("twistd", self.twistd), "twistd path")
        if not twistd:
            raise LaunchError("invalid", "empty twistd path")
        plugin = check_args(list(spec.plugin_args), "plugin arguments")
        return [twistd, "-n", "--pidfile=", *plugin, *self.common_args, *check_args(options.get("args"))]

    def start(self, spec: AgentSpec, placement: Placement) -> defer.Deferred[LaunchRecord]:
        """
        Spawn the agent; fire with its record (see L{ILauncher.start}) once
        it leads its own process group, so that L{stop} reaches all of it.
        """
        return defer.Deferred.fromCoroutine(self._start(spec, placement))

    async def _start(self, spec: AgentSpec, placement: Placement) -> LaunchRecord:
        argv = self.command(spec, placement)
        env = dict(os.environ)
        env.update(check_env(placement.options.get("env")))
        for child in self._children.values():
            if child.agent == spec.name and child.final is None:
                raise LaunchError("failed", f"{spec.name} is already running here (pid {child.pid})")
        if not os.access(argv[0], os.X_OK):
            raise LaunchError("invalid", f"cannot run {argv[0]!r}: no such executable")
        log = self.log_path(spec)
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as e:
            raise LaunchError("failed", f"cannot open log file {log}: {e.strerror}") from None
        try:
            stdin = os.open(os.devnull, os.O_RDONLY)
            try:
                child = _Child(self, spec.name)
                transport = self.reactor.spawnProcess(
                    child,
                    sys.executable,
                    [sys.executable, "-I", "-S", "-c", _WRAPPER, *argv],
                    env=env,
                    childFDs={0: stdin, 1: out, 2: out},
                )
            finally:
                os.close(stdin)
        except OSError as e:
            raise LaunchError("failed", f"cannot start {spec.name}: {e}") from None
        finally:
            os.close(out)
        pid = transport.pid
        child.pid = pid
        stat = _proc.read_stat(pid, self.proc_root) if pid else None
        child.starttime = stat.starttime if stat else None
        for old_pid in [p for p, c in self._children.items() if c.agent == spec.name]:
            del self._children[old_pid]
        self._children[pid] = child
        await self._wait_group_leader(child, transport)
        self._log.info("started {agent} (pid {pid}), output in {log}", agent=spec.name, pid=pid, log=log)
        return LaunchRecord(
            agent=spec.name,
            launcher=self.name,
            host=placement.host,
            started=self.reactor.seconds(),
            pid=pid,
            log=str(log),
            extra={"starttime": child.starttime},
        )

    async def _wait_group_leader(self, child: _Child, transport: Any) -> None:
        """
        Wait until the wrapper has called C{setsid()} (pgid == pid): until
        then a signal to the group would miss the child.  A child that has
        already ended is fine (its exit is recorded).
        """
        assert child.pid is not None
        deadline = self.reactor.seconds() + _KILL_WAIT
        while child.final is None:
            stat = _proc.read_stat(child.pid, self.proc_root)
            if stat is None or stat.pgid == child.pid:
                return
            if self.reactor.seconds() > deadline:
                try:
                    transport.signalProcess("KILL")
                except Exception as e:  # gone already: the error below says what matters
                    self._log.debug("killing {agent}: {error}", agent=child.agent, error=e)
                raise LaunchError("timeout", f"{child.agent} (pid {child.pid}) did not start its process group")
            await deferLater(self.reactor, 0.005, lambda: None)

    def _child_ended(self, child: _Child, status: AgentStatus) -> None:
        self._log.info("{agent} (pid {pid}) {detail}", agent=child.agent, pid=child.pid, detail=status.detail)
        for callback in list(self._exit_callbacks):
            try:
                callback(child.agent, status)
            except Exception:
                self._log.failure("exit callback for {agent} failed", agent=child.agent)

    def _own(self, record: LaunchRecord) -> _Child | None:
        child = self._children.get(record.pid) if record.pid is not None else None
        if child is not None and child.agent == record.agent and child.starttime == _starttime(record):
            return child
        return None

    def _status_now(self, record: LaunchRecord) -> AgentStatus:
        pid = _pid(record)
        child = self._own(record)
        if child is not None and child.final is not None:
            return child.final
        if child is not None or _proc.is_ours(pid, _starttime(record), self.proc_root):
            return AgentStatus(record.agent, running=True, pid=pid, since=record.started, detail="running")
        key = (pid, _starttime(record))
        since = self._gone_since.setdefault(key, self.reactor.seconds())
        return AgentStatus(record.agent, running=False, pid=pid, since=since, detail=describe_exit(None))

    def status(self, record: LaunchRecord) -> defer.Deferred[AgentStatus]:
        """The agent's status (see L{ILauncher.status})."""
        return defer.maybeDeferred(self._status_now, record)

    def stop(self, record: LaunchRecord, grace: float) -> defer.Deferred[AgentStatus]:
        """SIGTERM the group, SIGKILL it after C{grace} s; fire once it is gone."""
        return defer.Deferred.fromCoroutine(self._stop(record, grace))

    def _group_alive(self, pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return bool(_proc.group_members(pgid, self.proc_root))

    def _signal_group(self, pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            raise LaunchError("failed", f"cannot signal process group {pgid}: {e.strerror}") from None

    async def _stop(self, record: LaunchRecord, grace: float) -> AgentStatus:
        pid = _pid(record)
        if not isinstance(grace, (int, float)) or grace < 0:
            raise LaunchError("invalid", f"invalid grace period {grace!r}")
        child = self._own(record)
        if child is None and _proc.pid_reused(pid, _starttime(record), self.proc_root):
            # The pid (so also the group id) belongs to another program now:
            # ours ended long ago and its group is empty.  Never signal it.
            return self._status_now(record)
        if child is not None and child.final is not None:
            return child.final
        self._signal_group(pid, signal.SIGTERM)
        clock = self.reactor
        deadline = clock.seconds() + grace
        killed_at: float | None = None
        while self._group_alive(pid):
            now = clock.seconds()
            if killed_at is None and now >= deadline:
                self._log.warn("{agent}: still running {grace} s after SIGTERM, sending SIGKILL",
                               agent=record.agent, grace=grace)
                self._signal_group(pid, signal.SIGKILL)
                killed_at = now
            elif killed_at is not None and now - killed_at > _KILL_WAIT:
                raise LaunchError("timeout", f"process group {pid} of {record.agent} survived SIGKILL")
            await deferLater(clock, _POLL, lambda: None)
        if child is not None:
            waiting = child.ended()
            waiting.addTimeout(_KILL_WAIT, clock)
            try:
                return await waiting
            except defer.TimeoutError:
                raise LaunchError("timeout", f"{record.agent}: no exit status from pid {pid}") from None
        return self._status_now(record)

    def tail(self, record: LaunchRecord, lines: int) -> defer.Deferred[str]:
        """
        The last C{lines} lines of the agent's log file, read in the
        reactor's thread pool (bounded: at most 1 MiB from the end; the state
        directory may be on a network file system that stalls).
        """
        try:
            path = self._log_path(record, lines)
        except LaunchError:
            return defer.fail()
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), tail_file, path, lines)

    def _log_path(self, record: LaunchRecord, lines: int) -> Path:
        check_lines(lines)
        if not record.log:
            raise LaunchError("unknown", f"no log file recorded for {record.agent}")
        path = Path(record.log)
        logs = self.state_dir / "logs" / "agents"
        if path.parent.resolve() != logs.resolve():
            raise LaunchError("invalid", f"log file {record.log!r} of {record.agent} is not under {logs}")
        return path


def _pid(record: LaunchRecord) -> int:
    if not isinstance(record.pid, int) or isinstance(record.pid, bool) or record.pid <= 1:
        raise LaunchError("invalid", f"launch record of {record.agent!r} has no valid pid: {record.pid!r}")
    return record.pid


def _starttime(record: LaunchRecord) -> int | None:
    value = record.extra.get("starttime") if isinstance(record.extra, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
