# -*- test-case-name: tests.test_launch_slurm -*-
"""
Running a local command from the reactor: L{ProcessRunner} starts it with
C{reactor.spawnProcess} (no shell, an argument list), feeds its stdin,
gathers its output (capped) and kills it after a timeout.  The C{slurm}
launcher runs C{sbatch}, C{squeue}, C{scancel}... through it; tests inject
another L{Runner}.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet import defer, protocol
from twisted.internet.error import ProcessExitedAlready
from twisted.python.failure import Failure

from ecs.launch import LaunchError

_OUTPUT_CAP = 1 << 20
"""Bytes kept of a command's stdout (and of its stderr)."""


@attrs.frozen
class CommandResult:
    """What a command printed and how it ended (C{code}: negative for a signal)."""

    code: int
    out: str
    err: str


Runner = Callable[[Sequence[str], "bytes | None", float], "defer.Deferred[CommandResult]"]
"""C{runner(argv, stdin, timeout)}: run a command, fail with L{LaunchError}."""


class _Collector(protocol.ProcessProtocol):
    """Feeds stdin, gathers (capped) output, fires with a L{CommandResult}."""

    def __init__(self, stdin: bytes | None, done: defer.Deferred[CommandResult]) -> None:
        self.stdin = stdin
        self.done = done
        self.out: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None, "spawnProcess sets the transport before connectionMade"
        if self.stdin:
            transport.write(self.stdin)
        transport.closeStdin()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buffer = self.out.setdefault(fd, bytearray())
        if len(buffer) < _OUTPUT_CAP:
            buffer += data[: _OUTPUT_CAP - len(buffer)]

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", 0)
        if code is None:
            code = -(getattr(reason.value, "signal", None) or signal.SIGKILL)
        if not self.done.called:
            text = {fd: bytes(b).decode("utf-8", "replace") for fd, b in self.out.items()}
            self.done.callback(CommandResult(int(code), text[1], text[2]))


class ProcessRunner:
    """
    The real L{Runner}: C{reactor.spawnProcess}, no shell, the environment
    of the ECA plus C{env}; a command still running after its timeout is
    killed and fails with L{LaunchError} C{timeout}; a command not on the
    C{PATH} fails with C{failed} and C{missing_hint} appended.
    """

    def __init__(self, reactor: Any, env: Mapping[str, str] | None = None, missing_hint: str = "") -> None:
        self.reactor = reactor
        self.env = {**os.environ, **(env or {})}
        self.missing_hint = missing_hint

    def __call__(self, argv: Sequence[str], stdin: bytes | None, timeout: float) -> defer.Deferred[CommandResult]:
        """Run C{argv} (its first element looked up on the C{PATH})."""
        binary = shutil.which(argv[0], path=self.env.get("PATH"))
        if binary is None:
            return defer.fail(LaunchError(
                "failed", f"{argv[0]} not found on PATH ({self.env.get('PATH', '')}){self.missing_hint}"
            ))
        done: defer.Deferred[CommandResult] = defer.Deferred()
        try:
            transport = self.reactor.spawnProcess(
                _Collector(stdin, done), binary, list(argv), env=self.env, usePTY=False
            )
        except OSError as e:
            return defer.fail(LaunchError("failed", f"cannot run {argv[0]}: {e}"))

        def expire() -> None:
            try:
                transport.signalProcess("KILL")
            except (ProcessExitedAlready, OSError):
                pass
            if not done.called:
                done.errback(LaunchError("timeout", f"{argv[0]} did not finish within {timeout:g} s (killed)"))

        timer = self.reactor.callLater(timeout, expire)

        def finished(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return done.addBoth(finished)


__all__ = ["CommandResult", "ProcessRunner", "Runner"]
