# -*- test-case-name: tests.test_actions -*-
"""
The ``script`` subsystem action: runs an executable for each configure step.

:class:`ScriptAction` runs the executable, as the original ECS ran ``./detectorScript.sh`` per
step, in its own session so that abort and timeout can kill the whole process group.  Each run
is a :class:`_ScriptRun` process protocol; :class:`_LineSplitter` turns the script's output into
agent-log lines.  Built by :func:`agents.controller.actions.make_action`, which re-exports
:class:`ScriptAction` and the constants below.

(About 410 lines, kept whole: the process protocol, its output splitter and the kill escalation
share the life of one child process group; split, each part would reach into the others' state.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from agents.controller.action_api import ActionFailed, ActionRequest, IAction, LogLine

__all__ = ["DRAIN_GRACE", "KILL_GRACE", "MAX_LINE_BYTES", "ScriptAction"]

#: The longest single line of script output passed to ``log_line``; longer lines are cut.
MAX_LINE_BYTES = 4096
#: Seconds between SIGTERM and SIGKILL to a script's process group on timeout or abort.
KILL_GRACE = 2.0
#: Seconds a script's output pipes may stay open after the script itself exited.
DRAIN_GRACE = 2.0

# Used when util-linux ``setsid`` is absent.  Python ignores SIGPIPE and SIGXFSZ at start-up and
# ignored signals survive exec, so the wrapper restores their defaults before exec'ing the script.
_SETSID_WRAPPER = (
    "import os, signal, sys\n"
    "for name in ('SIGPIPE', 'SIGXFSZ'):\n"
    "    if hasattr(signal, name):\n"
    "        signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
    "os.setsid()\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)

# Same log namespace as before the script machinery left agents.controller.actions.
_log = Logger()


def _session_launcher() -> list[str]:
    """The argv prefix that runs a program in a new session (so its pid is its group id)."""
    setsid = shutil.which("setsid")
    if setsid is not None:
        # The child is never a group leader, so setsid execs in place; -w only matters if it
        # ever had to fork.
        return [setsid, "-w", "--"]
    return [sys.executable, "-c", _SETSID_WRAPPER]


class _LineSplitter:
    """Turns a byte stream into text lines, each at most ``max_bytes`` long before decoding."""

    def __init__(self, emit: Callable[[str], None], max_bytes: int = MAX_LINE_BYTES) -> None:
        self._emit = emit
        self._max = max_bytes
        self._buffer = bytearray()
        self._discarding = False  # the rest of an over-long line is dropped up to its newline

    def feed(self, data: bytes) -> None:
        """Take the next chunk of output; emit every line it completes."""
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            self._append(data[start:newline])
            if self._discarding:
                self._discarding = False
            else:
                self._emit_buffer()
            start = newline + 1
        self._append(data[start:])

    def flush(self) -> None:
        """Emit a last line that had no newline."""
        if self._buffer and not self._discarding:
            self._emit_buffer()
        self._buffer.clear()
        self._discarding = False

    def _append(self, chunk: bytes) -> None:
        if self._discarding:
            return
        room = self._max - len(self._buffer)
        if len(chunk) <= room:
            self._buffer += chunk
            return
        self._buffer += chunk[:room]
        self._emit_buffer(" [line truncated]")
        self._discarding = True

    def _emit_buffer(self, suffix: str = "") -> None:
        line = bytes(self._buffer).rstrip(b"\r").decode("utf-8", "replace") + suffix
        self._buffer.clear()
        self._emit(line)


def _exit_failure(path: str, reason: Failure) -> Failure | None:
    """The outcome of a script from its exit reason: ``None`` for success."""
    if reason.check(ProcessDone):
        return None
    value = reason.value
    if isinstance(value, ProcessTerminated) and value.signal is not None:
        try:
            name = f" ({signal.Signals(value.signal).name})"
        except ValueError:
            name = ""
        text = f"script {path} was killed by signal {value.signal}{name}"
    elif isinstance(value, ProcessTerminated):
        text = f"script {path} exited with status {value.exitCode}"
    else:
        text = f"script {path} ended abnormally: {value}"
    return Failure(ActionFailed(text))


class _ScriptRun(ProcessProtocol):
    """
    One run of a script, from spawn until its process and output pipes are gone.

    :attr:`result` is the step's Deferred.  It fires when the script exited and its output was
    read (or :data:`DRAIN_GRACE` after the exit, if background processes keep the output open);
    it fails at once on timeout or cancel, while the kill sequence goes on: SIGTERM to the
    process group, SIGKILL after the kill grace, or as soon as the script itself is gone.
    ``on_ended`` is called when nothing of the run is left: process reaped, pipes closed, no
    delayed call pending.
    """

    def __init__(
        self,
        *,
        path: str,
        reactor: Any,
        log_line: LogLine,
        stdin_data: bytes,
        timeout: float,
        kill_grace: float,
        drain_grace: float,
        on_ended: Callable[[_ScriptRun], None],
    ) -> None:
        self.result: Deferred[None] = Deferred(self._cancelled)
        self._path = path
        self._reactor = reactor
        self._stdin_data = stdin_data
        self._timeout = timeout
        self._kill_grace = kill_grace
        self._drain_grace = drain_grace
        self._on_ended = on_ended
        self._pid: int | None = None
        self._exited = False
        self._killing = False
        self._outcome: Failure | None = None
        self._timeout_call: IDelayedCall | None = None
        self._kill_call: IDelayedCall | None = None
        self._drain_call: IDelayedCall | None = None

        def logger(level: str) -> Callable[[str], None]:
            def emit(text: str) -> None:
                try:
                    log_line(level, text)
                except Exception:
                    _log.failure("log_line raised for output of {path}", path=path)

            return emit

        self._stdout = _LineSplitter(logger("info"))
        self._stderr = _LineSplitter(logger("warn"))

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Spawn the script; raises what ``spawnProcess`` raises."""
        process = self._reactor.spawnProcess(self, argv[0], list(argv), env=dict(env))
        self._pid = process.pid
        _log.debug("started {path} as pid {pid}", path=self._path, pid=self._pid)
        if not self._exited:  # a very quick exit can be reaped inside spawnProcess
            self._timeout_call = self._reactor.callLater(self._timeout, self._timed_out)

    # ProcessProtocol

    def connectionMade(self) -> None:
        """Hand the config to the script and close its stdin."""
        assert self.transport is not None
        self.transport.write(self._stdin_data)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        """Log each stdout line at info level."""
        self._stdout.feed(data)

    def errReceived(self, data: bytes) -> None:
        """Log each stderr line at warn level."""
        self._stderr.feed(data)

    def processExited(self, reason: Failure) -> None:
        """The script itself is gone: note its outcome and wait (bounded) for its output."""
        self._exited = True
        self._cancel_call("_timeout_call")
        if self._killing:
            # The script finished its own clean-up: what is left of its group goes now.
            self._cancel_call("_kill_call")
            self._signal_group(signal.SIGKILL)
        self._outcome = _exit_failure(self._path, reason)
        self._drain_call = self._reactor.callLater(self._drain_grace, self._drain_expired)

    def processEnded(self, reason: Failure) -> None:
        """Process reaped and pipes closed: deliver the outcome and clean up."""
        if not self._exited:  # Twisted calls processExited first; be safe if it did not
            self._exited = True
            self._outcome = _exit_failure(self._path, reason)
        self._cancel_call("_drain_call")
        self._cancel_call("_timeout_call")
        self._cancel_call("_kill_call")
        self._stdout.flush()
        self._stderr.flush()
        self._deliver(self._outcome)
        self._on_ended(self)

    # time-outs and cancel

    def _timed_out(self) -> None:
        self._timeout_call = None
        _log.info("{path} timed out after {timeout} s", path=self._path, timeout=self._timeout)
        self._begin_kill()
        self._deliver(
            Failure(ActionFailed(f"script {self._path} timed out after {self._timeout} s"))
        )

    def _cancelled(self, _: Deferred[None]) -> None:
        _log.info("{path} aborted", path=self._path)
        self._cancel_call("_timeout_call")
        if not self._exited:
            self._begin_kill()
        else:  # only leftovers holding the output pipes are running: stop them and the pipes
            self._cancel_call("_drain_call")
            self._signal_group(signal.SIGKILL)
            self._close_pipes()

    def _drain_expired(self) -> None:
        self._drain_call = None
        _log.warn(
            "output of {path} still open {grace} s after it exited; closing it",
            path=self._path,
            grace=self._drain_grace,
        )
        self._close_pipes()

    def _begin_kill(self) -> None:
        if self._killing:
            return
        self._killing = True
        self._signal_group(signal.SIGTERM)
        self._kill_call = self._reactor.callLater(self._kill_grace, self._kill_expired)

    def _kill_expired(self) -> None:
        self._kill_call = None
        self._signal_group(signal.SIGKILL)

    # helpers

    def _signal_group(self, sig: int) -> None:
        """Send ``sig`` to the script's process group (its pgid is its pid)."""
        if self._pid is None:
            return
        try:
            os.killpg(self._pid, sig)
        except ProcessLookupError:
            # No such group: either empty, or the child has not reached setsid yet.  In the
            # latter case the pid is still unreaped, hence ours, and the child can be signalled.
            if not self._exited:
                try:
                    os.kill(self._pid, sig)
                except ProcessLookupError:
                    pass
        except OSError as e:
            _log.warn("cannot signal group {pgid} of {path}: {error}", pgid=self._pid,
                      path=self._path, error=e)

    def _close_pipes(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def _cancel_call(self, attribute: str) -> None:
        call: IDelayedCall | None = getattr(self, attribute)
        setattr(self, attribute, None)
        if call is not None and call.active():
            call.cancel()

    def _deliver(self, outcome: Failure | None) -> None:
        if self.result.called:
            return
        if outcome is None:
            self.result.callback(None)
        else:
            self.result.errback(outcome)


@implementer(IAction)
class ScriptAction:
    """
    Runs an executable for each step.

    The argv is ``[path, *args, transition, step]``; the environment is ``environ`` (default:
    the agent's own, read at each run) plus ``ECS_SYSTEM``, ``ECS_PARTITION`` (empty for
    ``None``), ``ECS_STEP`` and ``ECS_TRANSITION``; stdin gets the config as one JSON line
    (``null`` for no config) and is then closed.  Each stdout line is logged at ``info``, each
    stderr line at ``warn``.  Exit status 0 is success.

    The script runs in a new session, through ``launcher`` (default: util-linux ``setsid``, or a
    small Python wrapper where that is missing), so timeout and abort kill its whole process
    group: SIGTERM, then SIGKILL after ``kill_grace`` seconds.
    """

    def __init__(
        self,
        *,
        path: str,
        args: Sequence[str],
        timeout: float,
        system: str,
        reactor: Any,
        log_line: LogLine,
        kill_grace: float = KILL_GRACE,
        drain_grace: float = DRAIN_GRACE,
        environ: Mapping[str, str] | None = None,
        launcher: Sequence[str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"script action for {system}: timeout {timeout} is not positive")
        self._path = path
        self._args = list(args)
        self._timeout = timeout
        self._system = system
        self._reactor = reactor
        self._log_line = log_line
        self._kill_grace = kill_grace
        self._drain_grace = drain_grace
        self._environ = environ
        self._launcher = list(launcher) if launcher is not None else _session_launcher()
        self._runs: set[_ScriptRun] = set()
        self._idle_waiters: list[Deferred[None]] = []

    def run(self, request: ActionRequest) -> Deferred[None]:
        """Run the script for one step; see the class docstring."""
        problem = self._path_problem()
        if problem is not None:
            return fail(ActionFailed(problem))
        try:
            stdin_data = (json.dumps(request.config) + "\n").encode("utf-8")
        except (TypeError, ValueError) as e:
            return fail(ActionFailed(f"config for {request.system} is not JSON: {e}"))
        env = dict(os.environ if self._environ is None else self._environ)
        env.update(
            ECS_SYSTEM=request.system,
            ECS_PARTITION=request.partition or "",
            ECS_STEP=request.step,
            ECS_TRANSITION=request.transition,
        )
        argv = [*self._launcher, self._path, *self._args, request.transition, request.step]
        script_run = _ScriptRun(
            path=self._path,
            reactor=self._reactor,
            log_line=self._log_line,
            stdin_data=stdin_data,
            timeout=self._timeout,
            kill_grace=self._kill_grace,
            drain_grace=self._drain_grace,
            on_ended=self._run_ended,
        )
        self._runs.add(script_run)
        try:
            script_run.start(argv, env)
        except Exception as e:
            self._runs.discard(script_run)
            _log.failure("cannot start {path}", path=self._path)
            return fail(ActionFailed(f"cannot start script {self._path}: {e}"))
        return script_run.result

    def when_idle(self) -> Deferred[None]:
        """
        Fire when no run of this action is left: every process reaped, pipes closed and timer
        cancelled.  For clean shutdown (``stopService``) after cancelling the runs, and tests.
        """
        if not self._runs:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _run_ended(self, script_run: _ScriptRun) -> None:
        self._runs.discard(script_run)
        if not self._runs:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _path_problem(self) -> str | None:
        if not os.path.isabs(self._path):
            return f"script path {self._path} is not absolute"
        if not os.path.isfile(self._path):
            return f"script {self._path} does not exist or is not a file"
        if not os.access(self._path, os.X_OK):
            return f"script {self._path} is not executable"
        return None
