"""
Helpers for end-to-end tests that start real agent processes.

Processes are started with the real reactor, their output is collected line
by line, and tests wait for a line (never for a fixed time).  Every process
is killed by pid in cleanup, its process group too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ProcessDone, ProcessExitedAlready

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The console script C{name} of the running virtualenv."""
    return str(BIN / name)


class Watched(protocol.ProcessProtocol):
    """Collects output; fires Deferreds when a pattern is seen or on exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self._partial = b""
        self._waiters: list[tuple[re.Pattern[str], defer.Deferred[re.Match[str]]]] = []
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self._feed(data)

    errReceived = outReceived

    def _feed(self, data: bytes) -> None:
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for pattern, d in list(self._waiters):
                match = pattern.search(line)
                if match:
                    self._waiters.remove((pattern, d))
                    d.callback(match)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> defer.Deferred[re.Match[str]]:
        """Fire with the match of the first output line (past or future) matching C{pattern}."""
        regex = re.compile(pattern)
        for line in self.lines:
            match = regex.search(line)
            if match:
                return defer.succeed(match)
        d: defer.Deferred[re.Match[str]] = defer.Deferred()
        self._waiters.append((regex, d))
        d.addTimeout(timeout, reactor)
        d.addErrback(self._explain, pattern)
        return d

    def _explain(self, failure: Any, pattern: str) -> Any:
        tail = "\n".join(self.lines[-30:])
        raise AssertionError(f"{self.name}: no line matching {pattern!r}; output:\n{tail}")

    def processEnded(self, reason: Any) -> None:
        if self._partial:
            self._feed(b"\n")
        self.exit_code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        for _, d in self._waiters:
            if not d.called:
                d.errback(AssertionError(f"{self.name} exited ({self.exit_code})"))
        self._waiters = []
        self.ended.callback(self.exit_code)


class Collected(protocol.ProcessProtocol):
    """Feeds C{stdin} (then closes it), collects stdout and stderr; C{ended}
    fires with the exit code (None when a signal ended the process)."""

    def __init__(self, stdin: bytes | None = None) -> None:
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred[int | None] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.ended.callback(code)


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def call_api(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """One request to a real ECA's JSON API: (status, parsed JSON, or the text when it is not JSON)."""
    import treq

    headers = {"Content-Type": ["application/json"]}
    if token:
        headers["Authorization"] = [f"Bearer {token}"]
    data = json.dumps(body).encode() if body is not None else None
    response = await treq.request(method, base + path, headers=headers, data=data, persistent=False)
    content = await response.content()
    try:
        return response.code, json.loads(content) if content else None
    except ValueError:
        return response.code, content.decode("utf-8", "replace")


def spawn(
    testcase: Any,
    name: str,
    argv: list[str],
    cwd: str,
    env: dict[str, str] | None = None,
    isolated: bool = False,
) -> tuple[Watched, Any]:
    """
    Start C{argv}; kill it in cleanup.

    @param isolated: drop C{PYTHONPATH} (which trial's workers set to their
        own path) and C{VIRTUAL_ENV}, for a program of another virtualenv.
    """
    watched = Watched(name)
    environment = dict(os.environ)
    if isolated:
        for variable in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            environment.pop(variable, None)
    environment.update(env or {})
    transport = reactor.spawnProcess(  # type: ignore[attr-defined]
        watched, argv[0], argv, env=environment, path=cwd, usePTY=False
    )
    testcase.addCleanup(stop, watched, transport)
    return watched, transport


async def stop(watched: Watched, transport: Any) -> None:
    """SIGTERM, then SIGKILL after a grace period; wait for the exit."""
    if watched.ended.called:
        return
    try:
        transport.signalProcess("TERM")
    except ProcessExitedAlready:
        return
    timer = reactor.callLater(10, _kill, transport)  # type: ignore[attr-defined]
    await watched.ended
    if timer.active():
        timer.cancel()


def _kill(transport: Any) -> None:
    try:
        transport.signalProcess("KILL")
    except ProcessExitedAlready:
        pass


def pid_alive(pid: int) -> bool:
    """Whether a process with C{pid} exists (and is not a zombie we own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


__all__ = ["ROOT", "Watched", "pid_alive", "signal", "spawn", "stop", "tool"]
