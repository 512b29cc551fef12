# -*- test-case-name: tests.test_launch_ssh -*-
"""
The C{ssh} launcher: agents started on other hosts over SSH (twisted.conch,
one connection per operation, L{ecs.launch._conch}), with the remote
commands of L{ecs.launch.remote}.

The agent runs detached (C{setsid}, stdin from C{/dev/null}, output appended
to C{<workdir>/logs/<kind>-<id>.log}) as the leader of its own process
group; its pid and start time come back and go into the record, with the
user and port (C{extra}), so that status, stop and tail need nothing else.

Starting is two-phase: the remote script prints the pid and then waits for
our C{ok}; if the SSH session ends first (connection dropped), it kills the
agent's group itself.  So a start that fails with C{unreachable} leaves no
agent behind, except in the window between our C{ok} leaving and the
script's exit status arriving: then the agent runs, and its pid and start
time are in C{<workdir>/<kind>-<id>.pid} on that host.

Failures are L{LaunchError}s: C{host_key} (unknown or wrong host key, never
trusted on first use), C{auth}, C{unreachable}, C{timeout} (every operation
has one), C{failed}.  L{SshLauncher.status} fails too when the host cannot
be asked: an unreachable host says nothing about whether the agent runs.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ecs.launch import (
    AgentSpec,
    AgentStatus,
    ILauncher,
    LaunchError,
    LaunchRecord,
    Placement,
    _conch,
    check_argument,
    check_host,
    check_id,
    remote,
)
from ecs.launch.known_hosts import KnownHosts
from ecs.launch.options import check_args, check_env, check_lines

DEFAULT_WORKDIR = ".ecs"
"""Relative to the remote user's home directory, where SSH sessions start."""

_STOP_KILL_WAIT = 11.0

STATUS_BATCH = 200
"""At most this many agents in one remote status command."""


def _check_path(value: object, what: str) -> str:
    text = check_argument(value, what)
    if not text or text.startswith("-"):
        raise LaunchError("invalid", f"invalid {what} {value!r}: empty or starting with '-'")
    return text


def _check_port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise LaunchError("invalid", f"invalid port {value!r}: an integer from 1 to 65535")
    return value


def _extra_int(record: LaunchRecord, key: str) -> int:
    value = record.extra.get(key) if isinstance(record.extra, Mapping) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LaunchError("invalid", f"launch record of {record.agent!r} has no valid {key}: {value!r}")
    return value


@implementer(ILauncher)
class SshLauncher:
    """
    Start, watch and stop agents on other hosts over SSH.

    @param identity: our private key (ed25519 or ECDSA; RSA is refused:
        conch signs with SHA-1 only, which OpenSSH >= 8.8 rejects).
    @param known_hosts: our known-hosts file (OpenSSH format, C{[host]:port}
        lines for ports other than 22); a host not in it is refused.
    @param common_args: arguments every agent gets after its plugin arguments.
    @param timeout: seconds for each remote operation (stop adds its grace).
    @param max_parallel_per_host: operations in flight per host and port.

    Placement options: C{user} (default: the local user), C{port} (22),
    C{twistd} (remote path, default C{twistd} on the remote C{PATH}),
    C{args}, C{env}, C{workdir} (default C{.ecs}, relative to the remote
    home).
    """

    name = "ssh"
    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        identity: Path,
        known_hosts: Path,
        common_args: list[str],
        timeout: float = 20.0,
        max_parallel_per_host: int = 8,
    ) -> None:
        self.reactor = reactor
        self.key = _conch.load_identity(identity)
        self.known_hosts = KnownHosts(known_hosts)
        self.common_args = check_args(common_args, "common arguments")
        self.timeout = timeout
        self.max_parallel = max_parallel_per_host
        self._limits: dict[tuple[str, int], defer.DeferredSemaphore] = {}
        self._gone_since: dict[tuple[str, int, int], float] = {}
        self._status_batches: dict[tuple[str, int, str], list[Any]] = {}

    def _run(
        self, host: str, port: int, user: str, command: bytes, timeout: float, on_output: Any = None
    ) -> defer.Deferred[_conch.Result]:
        limit = self._limits.get((host, port))
        if limit is None:
            limit = self._limits[(host, port)] = defer.DeferredSemaphore(self.max_parallel)
        return limit.run(
            _conch.run, self.reactor, host, port, user, self.key, self.known_hosts, command, timeout, on_output
        )

    def _target(self, record: LaunchRecord) -> tuple[str, int, str, int, int]:
        """(host, port, user, pid, start time) of a record, checked."""
        host = check_host(record.host)
        port = _check_port(record.extra.get("port", 22) if isinstance(record.extra, Mapping) else None)
        user = check_id(record.extra.get("user"), "user")
        pid = record.pid
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
            raise LaunchError("invalid", f"launch record of {record.agent!r} has no valid pid: {pid!r}")
        return host, port, user, pid, _extra_int(record, "starttime")

    def start(self, spec: AgentSpec, placement: Placement) -> defer.Deferred[LaunchRecord]:
        """Start the agent on C{placement.host} (see L{ILauncher.start} and the module docstring)."""
        return defer.Deferred.fromCoroutine(self._start(spec, placement))

    async def _start(self, spec: AgentSpec, placement: Placement) -> LaunchRecord:
        name = spec.name
        if placement.agent != name:
            raise LaunchError("invalid", f"placement is for {placement.agent!r}, not {name!r}")
        host = check_host(placement.host)
        options = placement.options
        if not isinstance(options, Mapping):
            raise LaunchError("invalid", f"invalid placement options {options!r}")
        user = check_id(options.get("user", pwd.getpwuid(os.getuid()).pw_name), "user")
        port = _check_port(options.get("port", 22))
        twistd = _check_path(options.get("twistd", "twistd"), "twistd path")
        workdir = _check_path(options.get("workdir", DEFAULT_WORKDIR), "workdir")
        env = check_env(options.get("env"))
        argv = ["-n", "--pidfile=", *check_args(list(spec.plugin_args), "plugin arguments"),
                *self.common_args, *check_args(options.get("args"))]
        command = remote.start_command(workdir, f"{spec.kind}-{spec.id}", twistd, env, argv)
        seen: list[remote.Started] = []

        def on_output(data: bytes, result: _conch.Result) -> bytes | None:
            if seen:
                return None
            started = remote.parse_started(result.out.decode("utf-8", "replace"))
            if started is None:
                return None
            seen.append(started)
            return self._acknowledge(started)

        try:
            result = await self._run(host, port, user, command, self.timeout, on_output)
        except LaunchError as e:
            if seen:
                self._log.warn("{agent}: start on {host} ended with {error} after pid {pid} was started; "
                               "the remote script kills it unless it got our acknowledgement",
                               agent=name, host=host, error=e, pid=seen[0].pid)
            raise
        out = (result.out + result.err).decode("utf-8", "replace")
        if result.exit_code != 0 or not seen:
            raise LaunchError(
                "failed", f"starting {name} on {host} failed ({_exit_text(result)}): {out.strip()[-500:]}"
            )
        started = seen[0]
        self._log.info("started {agent} on {host} (pid {pid}), output in {log}",
                       agent=name, host=host, pid=started.pid, log=started.log)
        return LaunchRecord(
            agent=name,
            launcher=self.name,
            host=host,
            started=self.reactor.seconds(),
            pid=started.pid,
            log=started.log,
            extra={"starttime": started.starttime, "user": user, "port": port, "workdir": workdir},
        )

    def _acknowledge(self, started: remote.Started) -> bytes | None:
        """What to answer once the remote script printed the pid (tests override it)."""
        return b"ok\n"

    def status(self, record: LaunchRecord) -> defer.Deferred[AgentStatus]:
        """
        Ask the host whether the recorded pid runs with the recorded start
        time.  Status requests for one host made in the same reactor turn
        go out as one remote command (up to L{STATUS_BATCH} agents each),
        so asking for every agent at once costs one connection per host.
        """
        try:
            host, port, user, pid, starttime = self._target(record)
        except LaunchError as e:
            return defer.fail(e)
        key = (host, port, user)
        batch = self._status_batches.get(key)
        if batch is None:
            batch = self._status_batches[key] = []
            self.reactor.callLater(0, self._flush_status, key)
        d: defer.Deferred[AgentStatus] = defer.Deferred()
        batch.append((record, pid, starttime, d))
        return d

    def _flush_status(self, key: tuple[str, int, str]) -> None:
        batch = self._status_batches.pop(key, [])
        for first in range(0, len(batch), STATUS_BATCH):
            chunk = batch[first : first + STATUS_BATCH]
            command = remote.status_command([(pid, starttime) for _, pid, starttime, _ in chunk])
            d = self._run(key[0], key[1], key[2], command, self.timeout)
            d.addCallbacks(self._got_statuses, self._status_failed, callbackArgs=(key[0], chunk),
                           errbackArgs=(chunk,))

    def _got_statuses(self, result: _conch.Result, host: str, chunk: list[Any]) -> None:
        out = result.out.decode("utf-8", "replace")
        states = remote.parse_statuses(out)
        for record, pid, starttime, d in chunk:
            state = states.get((pid, starttime))
            if state is None:
                d.errback(LaunchError("failed", f"no status of {record.agent} from {host}: {out.strip()[-300:]!r}"))
            elif state == "running":
                d.callback(AgentStatus(record.agent, running=True, pid=pid, since=record.started, detail="running"))
            else:
                d.callback(self._gone(record, host, pid, starttime, state))

    def _status_failed(self, failure: Any, chunk: list[Any]) -> None:
        error = failure.value
        for _, _, _, d in chunk:
            if isinstance(error, LaunchError):
                d.errback(LaunchError(error.code, error.reason))
            else:
                d.errback(failure)

    def _gone(self, record: LaunchRecord, host: str, pid: int, starttime: int, state: str) -> AgentStatus:
        since = self._gone_since.setdefault((host, pid, starttime), self.reactor.seconds())
        detail = "not running (exit code unknown)"
        if state == "reused":
            detail += f"; pid {pid} now belongs to another process"
        return AgentStatus(record.agent, running=False, pid=pid, since=since, detail=detail)

    def stop(self, record: LaunchRecord, grace: float) -> defer.Deferred[AgentStatus]:
        """SIGTERM the remote group, SIGKILL it after C{grace} s; fire once no process of it is left."""
        return defer.Deferred.fromCoroutine(self._stop(record, grace))

    async def _stop(self, record: LaunchRecord, grace: float) -> AgentStatus:
        host, port, user, pid, starttime = self._target(record)
        if not isinstance(grace, (int, float)) or isinstance(grace, bool) or not 0 <= grace <= 3600:
            raise LaunchError("invalid", f"invalid grace period {grace!r}: 0 to 3600 s")
        result = await self._run(host, port, user, remote.stop_command(pid, starttime, grace),
                                 self.timeout + grace + _STOP_KILL_WAIT)
        out = result.out.decode("utf-8", "replace")
        if "ECS-STUCK" in out:
            raise LaunchError("timeout", f"process group {pid} of {record.agent} on {host} survived SIGKILL")
        how = remote.parse_word(out, "ECS-STOPPED", ("term", "kill", "reused"))
        status = self._gone(record, host, pid, starttime, "reused" if how == "reused" else "gone")
        if how == "kill":
            status = AgentStatus(status.agent, False, pid=pid, since=status.since,
                                 detail=f"killed by SIGKILL after {grace} s")
        self._log.info("stopped {agent} on {host} (pid {pid}): {how}", agent=record.agent, host=host, pid=pid, how=how)
        return status

    def tail(self, record: LaunchRecord, lines: int) -> defer.Deferred[str]:
        """The last C{lines} lines of the agent's remote log file."""
        return defer.Deferred.fromCoroutine(self._tail(record, lines))

    async def _tail(self, record: LaunchRecord, lines: int) -> str:
        check_lines(lines)
        host, port, user, _, _ = self._target(record)
        log = _check_path(record.log, "log path")
        if not log.endswith(".log"):
            raise LaunchError("invalid", f"invalid log path {log!r}")
        result = await self._run(host, port, user, remote.tail_command(log, lines), self.timeout)
        text = result.out.decode("utf-8", "replace")
        if result.exit_code != 0:
            raise LaunchError("failed", f"cannot read {log} on {host}: {text.strip()[-300:]}")
        return text


def _exit_text(result: _conch.Result) -> str:
    if result.signal:
        return f"signal {result.signal}"
    return f"exit status {result.exit_code}"
