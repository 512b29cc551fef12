# -*- test-case-name: tests.test_actions -*-
"""
Subsystem actions: the "hardware" work a controller runs for each configure step.

A controller asks :func:`make_action` once per system for an :class:`IAction` built from the
system's (already validated) configuration, then calls :meth:`IAction.run` with an
:class:`ActionRequest` for every step it works through.  The returned Deferred fires ``None``
when the step's work succeeded, fails with :class:`ActionFailed` when it did not, and can be
cancelled (abort), which stops the work at once and fails it with ``CancelledError``.

Three kinds exist:

* ``simulated`` (:class:`SimulatedAction`): waits ``duration`` seconds on the injected clock and
  fails with a seeded, reproducible probability.
* ``script`` (:class:`ScriptAction`): runs an executable, as the original ECS ran
  ``./detectorScript.sh`` per step, in its own session so that abort and timeout can kill the
  whole process group.
* ``python`` (:class:`PythonAction`): calls a user class given by dotted path, for example
  :class:`ExampleHook`.

One action object serves every partition of its system, so ``run`` may be called again while an
earlier run is still in progress; each run is independent.

The script machinery is kept in this one module, which is longer than the usual 250 lines, so
that the three kinds share one place and one interface.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import random
import shutil
import signal
import sys
from typing import Any, Callable, Mapping, Sequence

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = [
    "ActionFailed",
    "ActionRequest",
    "ExampleHook",
    "IAction",
    "LogLine",
    "PythonAction",
    "ScriptAction",
    "SimulatedAction",
    "make_action",
]

LogLine = Callable[[str, str], None]
"""``log_line(level, text)``, level ``"info"``, ``"warn"`` or ``"error"``: one agent-log line."""

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

_log = Logger()


@attrs.frozen
class ActionRequest:
    """One step of work for a system."""

    system: str
    """The detector or global system id."""
    partition: str | None
    """The partition served (global systems serve several); ``None`` for detectors."""
    transition: str
    """The input that started the work, e.g. ``"configure"``."""
    step: str
    """The state being worked through, e.g. ``"Configuring_Step1"``."""
    config: dict[str, Any] | None
    """``{"config_id": ..., "system": ..., "parameters": {...}}`` or ``None``."""


class ActionFailed(Exception):
    """The work of a step failed; :attr:`reason` says why, in words for the operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IAction(Interface):
    """The work a controller runs for each step of a transition."""

    def run(request: ActionRequest) -> Deferred[None]:
        """
        Do the work of one step.

        Fires ``None`` on success, fails with :class:`ActionFailed`.  Cancelling the Deferred
        (abort) stops the work at once (kills the process group for scripts) and the Deferred
        fails with ``CancelledError``.
        """


def make_action(
    kind: str, params: Mapping[str, Any], system: str, reactor: Any, log_line: LogLine
) -> IAction:
    """
    Build the action of ``kind`` for ``system`` from its configuration ``params``.

    ``reactor`` must provide ``IReactorTime`` (and ``IReactorProcess`` for scripts).  Optional
    parameters: ``failure_probability`` (default 0) and ``seed`` (default 0) for ``simulated``,
    ``args`` (default none) for ``script``, ``options`` (default empty) for ``python``.

    :raises ValueError: for an unknown kind, a missing parameter or a python class that cannot
        be imported or created.
    """

    def required(name: str) -> Any:
        if name not in params:
            raise ValueError(f"{kind} action for {system}: missing parameter {name!r}")
        return params[name]

    if kind == "simulated":
        return SimulatedAction(
            duration=float(required("duration")),
            failure_probability=float(params.get("failure_probability", 0.0)),
            seed=params.get("seed", 0),
            system=system,
            reactor=reactor,
        )
    if kind == "script":
        return ScriptAction(
            path=str(required("path")),
            args=[str(arg) for arg in params.get("args", ())],
            timeout=float(required("timeout")),
            system=system,
            reactor=reactor,
            log_line=log_line,
        )
    if kind == "python":
        return PythonAction(
            class_path=str(required("class")),
            options=dict(params.get("options", {})),
            system=system,
            reactor=reactor,
            log_line=log_line,
        )
    raise ValueError(
        f"unknown action kind {kind!r} for {system} (expected simulated, script or python)"
    )


# --- simulated ---------------------------------------------------------------------------------


@implementer(IAction)
class SimulatedAction:
    """
    Pretend work: each run takes ``duration`` seconds and fails with ``failure_probability``.

    Failures come from ``random.Random(f"{seed}:{system}")``, created once, with one draw per
    run (at its start, so a cancelled run still uses its draw): a given seed and system always
    give the same sequence.  With ``duration == 0`` the Deferred is returned already fired
    (synchronously), which keeps large simulated set-ups fast.
    """

    def __init__(
        self,
        *,
        duration: float,
        failure_probability: float,
        seed: object,
        system: str,
        reactor: Any,
    ) -> None:
        if duration < 0:
            raise ValueError(f"simulated action for {system}: negative duration {duration}")
        if not 0.0 <= failure_probability <= 1.0:
            raise ValueError(
                f"simulated action for {system}: failure_probability {failure_probability}"
                " is not between 0 and 1"
            )
        self._duration = duration
        self._probability = failure_probability
        self._system = system
        self._reactor = reactor
        self._random = random.Random(f"{seed}:{system}")

    def run(self, request: ActionRequest) -> Deferred[None]:
        """Wait ``duration`` seconds, then succeed or fail as drawn; see the class docstring."""
        failed = self._random.random() < self._probability
        if self._duration == 0:
            return fail(self._failure()) if failed else succeed(None)

        def finish() -> None:
            if failed:
                done.errback(self._failure())
            else:
                done.callback(None)

        def cancel(_: Deferred[None]) -> None:
            if call.active():
                call.cancel()

        done: Deferred[None] = Deferred(cancel)
        call = self._reactor.callLater(self._duration, finish)
        return done

    def _failure(self) -> ActionFailed:
        return ActionFailed(f"simulated failure (probability {self._probability:g})")


# --- script ------------------------------------------------------------------------------------


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


# --- python ------------------------------------------------------------------------------------


def _import_class(class_path: str) -> Any:
    """Import ``"pkg.mod.Class"``; any problem becomes a ValueError naming the path."""
    module_name, _, attribute = class_path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"python action class {class_path!r} is not of the form pkg.module.Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, but also errors raised while the module runs
        raise ValueError(
            f"python action class {class_path!r}: cannot import module {module_name!r}: {e}"
        ) from e
    try:
        cls = getattr(module, attribute)
    except AttributeError:
        raise ValueError(
            f"python action class {class_path!r}: module {module_name!r} has no {attribute!r}"
        ) from None
    if not callable(cls):
        raise ValueError(f"python action class {class_path!r} is not a class")
    return cls


@implementer(IAction)
class PythonAction:
    """
    Runs a user class's ``run(request)`` for each step.

    The class (dotted path ``class_path``) is imported and instantiated once, as
    ``cls(system=..., options=..., reactor=..., log_line=...)``.  Its ``run`` may return a
    Deferred, a coroutine or a plain value (success; the value is ignored).  Success means no
    exception: any exception other than :class:`ActionFailed` and ``CancelledError`` becomes an
    :class:`ActionFailed` carrying its text.  Cancelling cancels the hook's Deferred.
    """

    def __init__(
        self,
        *,
        class_path: str,
        options: Mapping[str, Any],
        system: str,
        reactor: Any,
        log_line: LogLine,
    ) -> None:
        cls = _import_class(class_path)
        try:
            hook = cls(system=system, options=dict(options), reactor=reactor, log_line=log_line)
        except Exception as e:
            raise ValueError(
                f"python action class {class_path!r} cannot be created for {system}: "
                f"{type(e).__name__}: {e}"
            ) from e
        if not callable(getattr(hook, "run", None)):
            raise ValueError(f"python action class {class_path!r} has no run(request) method")
        self._class_path = class_path
        self._system = system
        self._hook = hook

    def run(self, request: ActionRequest) -> Deferred[None]:
        """Call the hook's ``run``; see the class docstring."""
        try:
            result = self._hook.run(request)
        except Exception:
            return fail(self._as_failed(Failure()))
        if isinstance(result, Deferred):
            inner: Deferred[Any] = result
        elif inspect.iscoroutine(result):
            inner = Deferred.fromCoroutine(result)
        else:
            return succeed(None)

        outer: Deferred[None] = Deferred(lambda _: inner.cancel())

        def settle(outcome: object) -> None:
            if outer.called:
                return
            if isinstance(outcome, Failure):
                outer.errback(self._as_failed(outcome))
            else:
                outer.callback(None)

        inner.addBoth(settle)
        return outer

    def _as_failed(self, failure: Failure) -> Failure:
        if failure.check(ActionFailed, CancelledError):
            return failure
        _log.failure(
            "python action {cls} failed for {system}",
            failure,
            LogLevel.warn,
            cls=self._class_path,
            system=self._system,
        )
        error = failure.value
        return Failure(
            ActionFailed(f"{self._class_path} failed: {type(error).__name__}: {error}")
        )


class ExampleHook:
    """
    An example ``python`` action (``class: agents.actions.ExampleHook``): logs the step and
    succeeds, after ``options["delay"]`` seconds (default 0) on the reactor's clock.
    """

    def __init__(
        self, *, system: str, options: Mapping[str, Any], reactor: Any, log_line: LogLine
    ) -> None:
        self._system = system
        self._delay = float(options.get("delay", 0.0))
        self._reactor = reactor
        self._log_line = log_line

    async def run(self, request: ActionRequest) -> None:
        """Log the step, wait the configured delay, succeed."""
        where = f" for partition {request.partition}" if request.partition else ""
        self._log_line(
            "info", f"example hook: {request.system} {request.transition} {request.step}{where}"
        )
        if self._delay > 0:
            await deferLater(self._reactor, self._delay)
