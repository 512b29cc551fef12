# -*- test-case-name: tests.test_actions -*-
"""
Tests for :mod:`agents.controller.actions`: simulated, script and python subsystem actions.

The simulated and python actions run on a :class:`task.Clock`.  The script action runs real
subprocesses on the real reactor (tests may use the global reactor); every test cleans up by
cancelling what it started, killing leftover pids it recorded (by pid, never by name) and
waiting until the action reports itself idle.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from agents.controller.actions import (
    ActionFailed,
    ActionRequest,
    IAction,
    PythonAction,
    ScriptAction,
    SimulatedAction,
    make_action,
)
from agents.controller.script_action import _SETSID_WRAPPER, _LineSplitter

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")


def _request(**changes: Any) -> ActionRequest:
    """A configure step of detector TPC, with ``changes`` applied."""
    fields: dict[str, Any] = dict(
        system="TPC",
        partition=None,
        transition="configure",
        step="Configuring_Step1",
        config={"config_id": "cfg-1", "system": "TPC", "parameters": {}},
    )
    fields.update(changes)
    return ActionRequest(**fields)


class _Lines:
    """Records ``log_line`` calls."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level: str, text: str) -> None:
        self.lines.append((level, text))


# --- make_action --------------------------------------------------------------------------------


class MakeActionTests(SynchronousTestCase):
    """make_action builds each kind and rejects bad input readably."""

    def test_each_kind_provides_iaction(self) -> None:
        """Every kind of action provides IAction."""
        clock = Clock()
        kinds: list[tuple[str, dict[str, Any]]] = [
            ("simulated", {"duration": 1.0, "failure_probability": 0.0, "seed": 1}),
            ("script", {"path": os.path.join(SCRIPTS, "exit_status.sh"), "args": [], "timeout": 5}),
            ("python", {"class": "agents.controller.actions.ExampleHook", "options": {}}),
        ]
        for kind, params in kinds:
            verifyObject(IAction, make_action(kind, params, "TPC", clock, _Lines()))

    def test_unknown_kind(self) -> None:
        """An unknown kind is a ValueError naming it."""
        with self.assertRaises(ValueError) as cm:
            make_action("magic", {}, "TPC", Clock(), _Lines())
        self.assertIn("'magic'", str(cm.exception))

    def test_missing_parameter(self) -> None:
        """A missing required parameter is a ValueError naming it."""
        with self.assertRaises(ValueError) as cm:
            make_action("script", {"path": "/bin/true"}, "TPC", Clock(), _Lines())
        self.assertIn("'timeout'", str(cm.exception))

    def test_bad_values(self) -> None:
        """Negative durations, probabilities outside 0..1 and non-positive timeouts are refused."""
        for kind, params in [
            ("simulated", {"duration": -1.0}),
            ("simulated", {"duration": 1.0, "failure_probability": 1.5}),
            ("script", {"path": "/bin/true", "timeout": 0}),
        ]:
            self.assertRaises(ValueError, make_action, kind, params, "TPC", Clock(), _Lines())


# --- simulated ----------------------------------------------------------------------------------


class SimulatedActionTests(SynchronousTestCase):
    """The simulated action waits on the clock and fails reproducibly."""

    def setUp(self) -> None:
        self.clock = Clock()

    def make(self, duration: float = 2.0, probability: float = 0.0, seed: int = 7,
             system: str = "TPC") -> SimulatedAction:
        """A simulated action on the test clock."""
        return SimulatedAction(duration=duration, failure_probability=probability, seed=seed,
                               system=system, reactor=self.clock)

    def test_completes_after_duration(self) -> None:
        """The step succeeds when the duration has passed, not before."""
        d = self.make(duration=2.0).run(_request())
        self.clock.advance(1.99)
        self.assertNoResult(d)
        self.clock.advance(0.01)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_zero_duration_is_synchronous(self) -> None:
        """With duration 0 the Deferred is returned already fired, without a delayed call."""
        d = self.make(duration=0).run(_request())
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_reason(self) -> None:
        """A simulated failure is an ActionFailed stating the probability."""
        d = self.make(duration=1.0, probability=1.0).run(_request())
        self.clock.advance(1.0)
        failure = self.failureResultOf(d, ActionFailed)
        self.assertEqual(failure.value.reason, "simulated failure (probability 1)")

    def test_deterministic_sequence(self) -> None:
        """A seed and system give the same failure sequence, drawn from Random('seed:system')."""

        def outcomes(action: SimulatedAction) -> list[bool]:
            results: list[bool] = []
            for _ in range(40):
                outcome = self.successResultOf(
                    action.run(_request()).addCallbacks(
                        lambda _: False, lambda f: f.trap(ActionFailed) and True))
                results.append(outcome)
            return results

        first = outcomes(self.make(duration=0, probability=0.5, seed=42))
        again = outcomes(self.make(duration=0, probability=0.5, seed=42))
        other_system = outcomes(self.make(duration=0, probability=0.5, seed=42, system="TOF"))
        rng = random.Random("42:TPC")
        self.assertEqual(first, [rng.random() < 0.5 for _ in range(40)])
        self.assertEqual(first, again)
        self.assertNotEqual(first, other_system)
        self.assertIn(True, first)
        self.assertIn(False, first)

    def test_cancel(self) -> None:
        """Cancelling fails the step with CancelledError and leaves no delayed call."""
        d = self.make(duration=5.0).run(_request())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)

    def test_concurrent_runs(self) -> None:
        """Runs for several partitions proceed independently."""
        action = self.make(duration=3.0)
        first = action.run(_request(partition="PCA1"))
        self.clock.advance(1.0)
        second = action.run(_request(partition="PCA2"))
        first.cancel()
        self.clock.advance(3.0)
        self.failureResultOf(first, CancelledError)
        self.assertIsNone(self.successResultOf(second))


# --- line splitting -----------------------------------------------------------------------------


class LineSplitterTests(SynchronousTestCase):
    """Script output becomes bounded text lines."""

    def setUp(self) -> None:
        self.lines: list[str] = []
        self.splitter = _LineSplitter(self.lines.append, max_bytes=10)

    def test_lines_across_chunks(self) -> None:
        """Lines split over several chunks are joined; CR before LF is dropped."""
        self.splitter.feed(b"ab")
        self.splitter.feed(b"c\r\nde\nf")
        self.assertEqual(self.lines, ["abc", "de"])
        self.splitter.flush()
        self.assertEqual(self.lines, ["abc", "de", "f"])

    def test_long_line_is_truncated(self) -> None:
        """A line longer than the bound is cut once and the rest dropped up to its newline."""
        self.splitter.feed(b"0123456789ABCDEF")
        self.splitter.feed(b"GHIJ\nnext\n")
        self.assertEqual(self.lines, ["0123456789 [line truncated]", "next"])

    def test_invalid_utf8_is_replaced(self) -> None:
        """Bytes that are not UTF-8 become replacement characters."""
        self.splitter.feed(b"caf\xc3\xa9 \xff\n")
        self.assertEqual(self.lines, ["caf\u00e9 \ufffd"])


# --- python -------------------------------------------------------------------------------------


class FunctionHook:
    """Test hook whose ``run`` calls ``options["run"](request)``."""

    def __init__(self, *, system: str, options: dict[str, Any], reactor: Any,
                 log_line: Callable[[str, str], None]) -> None:
        self._run = options["run"]

    def run(self, request: ActionRequest) -> Any:
        """Delegate to the function given in the options."""
        return self._run(request)


class BrokenHook:
    """Test hook whose constructor fails."""

    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("no hardware")


class NoRunHook:
    """Test hook without a run method."""

    def __init__(self, **kwargs: Any) -> None:
        pass


class PythonActionTests(SynchronousTestCase):
    """The python action imports a class, runs it and converts its outcome."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.lines = _Lines()

    def make(self, run: Callable[[ActionRequest], Any]) -> PythonAction:
        """A python action on FunctionHook running ``run``."""
        return PythonAction(class_path="tests.test_actions.FunctionHook", options={"run": run},
                            system="TPC", reactor=self.clock, log_line=self.lines)

    def test_example_hook(self) -> None:
        """ExampleHook, named by dotted path, logs the step and succeeds."""
        action = make_action("python", {"class": "agents.controller.actions.ExampleHook"}, "TPC",
                             self.clock, self.lines)
        self.assertIsNone(self.successResultOf(action.run(_request(partition="PCA1"))))
        self.assertEqual(self.lines.lines,
                         [("info", "example hook: TPC configure Configuring_Step1"
                                   " for partition PCA1")])

    def test_example_hook_delay(self) -> None:
        """ExampleHook waits its delay option on the reactor's clock."""
        action = make_action("python", {"class": "agents.controller.actions.ExampleHook",
                                        "options": {"delay": 2}}, "TPC", self.clock, self.lines)
        d = action.run(_request())
        self.assertNoResult(d)
        self.clock.advance(2)
        self.assertIsNone(self.successResultOf(d))

    def test_plain_value_and_deferred(self) -> None:
        """A plain return value or a Deferred's value means success, reported as None."""
        self.assertIsNone(self.successResultOf(self.make(lambda r: 42).run(_request())))
        self.assertIsNone(self.successResultOf(self.make(lambda r: succeed("x")).run(_request())))

    def test_exception_becomes_action_failed(self) -> None:
        """An exception raised by run becomes ActionFailed with the exception text."""

        def run(request: ActionRequest) -> None:
            raise RuntimeError("no power")

        failure = self.failureResultOf(self.make(run).run(_request()), ActionFailed)
        self.assertEqual(failure.value.reason,
                         "tests.test_actions.FunctionHook failed: RuntimeError: no power")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failed_deferred_and_coroutine(self) -> None:
        """A failing Deferred or coroutine becomes ActionFailed."""

        async def broken(request: ActionRequest) -> None:
            raise KeyError("gain")

        inner: Deferred[None] = Deferred()
        d = self.make(lambda r: inner).run(_request())
        self.assertNoResult(d)
        inner.errback(ValueError("bad threshold"))
        self.assertIn("ValueError: bad threshold",
                      self.failureResultOf(d, ActionFailed).value.reason)
        self.assertIn("KeyError", self.failureResultOf(self.make(broken).run(_request()),
                                                       ActionFailed).value.reason)
        self.flushLoggedErrors(ValueError, KeyError)

    def test_action_failed_kept(self) -> None:
        """An ActionFailed from the hook keeps its own reason."""
        d = self.make(lambda r: fail(ActionFailed("HV trip"))).run(_request())
        self.assertEqual(self.failureResultOf(d, ActionFailed).value.reason, "HV trip")

    def test_cancel(self) -> None:
        """Cancelling cancels the hook's Deferred and fails with CancelledError."""
        inner: Deferred[None] = Deferred()
        d = self.make(lambda r: inner).run(_request())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(inner.called)

    def test_bad_dotted_paths(self) -> None:
        """Unimportable, missing, undotted, broken or run-less classes are ValueErrors."""
        for path in ["tests.no_such_module.Hook", "agents.controller.actions.NoSuchHook", "NoDots",
                     "tests.test_actions.BrokenHook", "tests.test_actions.NoRunHook"]:
            with self.assertRaises(ValueError) as cm:
                make_action("python", {"class": path, "options": {}}, "TPC", self.clock,
                            self.lines)
            self.assertIn(repr(path), str(cm.exception))


# --- script -------------------------------------------------------------------------------------


class _RecordingReactor:
    """Passes calls to the real reactor and remembers the delayed calls it was asked for."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.calls: list[Any] = []

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Schedule on the real reactor and record the call."""
        call = self._reactor.callLater(delay, f, *args, **kw)
        self.calls.append(call)
        return call

    def seconds(self) -> float:
        """The real reactor's time."""
        return float(self._reactor.seconds())

    def spawnProcess(self, *args: Any, **kw: Any) -> Any:
        """Spawn on the real reactor."""
        return self._reactor.spawnProcess(*args, **kw)

    def pending(self) -> list[Any]:
        """The recorded delayed calls that are still scheduled."""
        return [call for call in self.calls if call.active()]


def _start_time(pid: int) -> int | None:
    """The start time of a live, non-zombie process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] == "Z":  # dead, waiting to be reaped by its (new) parent
        return None
    return int(fields[19])


class ScriptActionTests(TestCase):
    """The script action runs real processes in their own process group."""

    timeout = 60
    launcher: ClassVar[list[str] | None] = None  # None: the default (setsid)

    def setUp(self) -> None:
        self.reactor = _RecordingReactor(global_reactor)
        self.lines: list[tuple[str, str]] = []
        self.ready: Deferred[None] = Deferred()
        self.actions: list[ScriptAction] = []
        self.started: list[Deferred[None]] = []
        self.processes: list[tuple[int, int]] = []  # (pid, start time) of processes to clean up
        self.addCleanup(self._clean_up)

    def _log_line(self, level: str, text: str) -> None:
        self.lines.append((level, text))
        if text == "ready" and not self.ready.called:
            self.ready.callback(None)

    def make(self, script: str, args: list[str] | None = None, timeout: float = 20.0,
             **kw: Any) -> ScriptAction:
        """A script action for a helper script, using the recording reactor."""
        if self.launcher is not None:
            kw.setdefault("launcher", self.launcher)
        action = ScriptAction(path=os.path.join(SCRIPTS, script), args=args or [],
                              timeout=timeout, system="TPC", reactor=self.reactor,
                              log_line=self._log_line, **kw)
        self.actions.append(action)
        return action

    def run_action(self, action: ScriptAction, request: ActionRequest) -> Deferred[None]:
        """Run and remember the Deferred, so cleanup can cancel it."""
        d = action.run(request)
        self.started.append(d)
        return d

    def read_pids(self, pidfile: str, require_alive: bool = True) -> list[int]:
        """The live pids written by group_sleeper.sh, remembered for cleanup."""
        with open(pidfile) as f:
            pids = [int(word) for word in f.read().split()]
        live = []
        for pid in pids:
            start = _start_time(pid)
            if start is None:
                self.assertFalse(require_alive, f"process {pid} should be running")
                continue
            self.processes.append((pid, start))
            live.append(pid)
        return live

    def alive(self) -> list[int]:
        """The remembered processes that still exist (same pid and start time, not zombie)."""
        return [pid for pid, start in self.processes if _start_time(pid) == start]

    async def wait_all_gone(self, total: float = 10.0) -> None:
        """Poll (on the reactor, bounded) until no remembered process is left."""
        deadline = global_reactor.seconds() + total
        while self.alive():
            if global_reactor.seconds() > deadline:
                self.fail(f"processes still running after {total} s: {self.alive()}")
            await deferLater(global_reactor, 0.05)

    async def _clean_up(self) -> None:
        for d in self.started:
            d.addErrback(lambda _: None)
            d.cancel()
        for pid in self.alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for action in self.actions:
            await action.when_idle()
        await self.wait_all_gone()

    async def test_success_logs_output_and_gets_config(self) -> None:
        """Exit 0 succeeds; argv, environment and stdin config arrive; output lines are logged."""
        config = {"config_id": "cfg-7", "system": "TPC",
                  "parameters": {"gain": 3, "label": "a\\b \"q\" \u00e9"}}
        action = self.make("echo_config.sh", args=["--flag", "two words"])
        await self.run_action(action, _request(partition="PCA1", config=config))  # succeeds
        stdin = [text for level, text in self.lines if text.startswith("stdin:")]
        self.assertEqual(len(stdin), 1)
        self.assertEqual(json.loads(stdin[0][len("stdin:"):]), config)
        self.assertEqual(
            [line for line in self.lines if not line[1].startswith("stdin:")],
            [("info", "args:--flag two words configure Configuring_Step1"),
             ("info", "env:TPC|PCA1|configure|Configuring_Step1"),
             ("warn", "a warning"),
             ("info", "last line without newline")],
        )
        await action.when_idle()
        self.assertEqual(self.reactor.pending(), [])

    async def test_no_config_no_partition(self) -> None:
        """A missing config is sent as null and a missing partition as an empty variable."""
        action = self.make("echo_config.sh")
        await self.run_action(action, _request(config=None, step="Configuring_Step2"))
        self.assertIn(("info", "stdin:null"), self.lines)
        self.assertIn(("info", "env:TPC||configure|Configuring_Step2"), self.lines)

    async def test_concurrent_runs(self) -> None:
        """Two runs of one action (two partitions) run side by side and both succeed."""
        action = self.make("echo_config.sh")
        first = self.run_action(action, _request(partition="PCA1"))
        second = self.run_action(action, _request(partition="PCA2"))
        await first  # both succeed
        await second
        self.assertEqual(len([t for _, t in self.lines if t.startswith("env:")]), 2)

    async def test_nonzero_exit(self) -> None:
        """A non-zero exit status is an ActionFailed naming the script and status."""
        action = self.make("exit_status.sh", args=["3"])
        with self.assertRaises(ActionFailed) as cm:
            await self.run_action(action, _request())
        self.assertEqual(cm.exception.reason,
                         f"script {SCRIPTS}/exit_status.sh exited with status 3")

    async def test_killed_by_signal(self) -> None:
        """A script killed by a signal is an ActionFailed naming the signal."""
        action = self.make("exit_status.sh", args=["kill-USR1"])
        with self.assertRaises(ActionFailed) as cm:
            await self.run_action(action, _request())
        self.assertIn(f"killed by signal {int(signal.SIGUSR1)}", cm.exception.reason)

    async def test_timeout_kills_process_group(self) -> None:
        """On timeout the step fails and the script and its background child are killed."""
        pidfile = self.mktemp()
        action = self.make("group_sleeper.sh", args=[pidfile], timeout=1.5)
        d = self.run_action(action, _request())
        await self.ready
        self.assertEqual(len(self.read_pids(pidfile)), 2)
        with self.assertRaises(ActionFailed) as cm:
            await d
        self.assertEqual(cm.exception.reason,
                         f"script {SCRIPTS}/group_sleeper.sh timed out after 1.5 s")
        await self.wait_all_gone()
        await action.when_idle()
        self.assertEqual(self.reactor.pending(), [])

    async def test_timeout_escalates_to_sigkill(self) -> None:
        """A group that ignores SIGTERM is killed with SIGKILL after the grace."""
        pidfile = self.mktemp()
        action = self.make("group_sleeper.sh", args=[pidfile, "ignore-term"], timeout=1.0,
                           kill_grace=0.3)
        d = self.run_action(action, _request())
        await self.ready
        self.read_pids(pidfile)
        with self.assertRaises(ActionFailed):
            await d
        self.assertTrue(self.alive(), "SIGTERM alone should not have stopped the group")
        await self.wait_all_gone()
        await action.when_idle()
        self.assertEqual(self.reactor.pending(), [])

    async def test_cancel_kills_process_group(self) -> None:
        """Cancelling (abort) fails at once with CancelledError and kills the whole group."""
        pidfile = self.mktemp()
        action = self.make("group_sleeper.sh", args=[pidfile])
        d = self.run_action(action, _request())
        await self.ready
        self.read_pids(pidfile)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        await self.wait_all_gone()
        await action.when_idle()
        self.assertEqual(self.reactor.pending(), [])

    async def test_cancel_right_after_start(self) -> None:
        """Cancelling before the script got going still stops it."""
        pidfile = self.mktemp()
        action = self.make("group_sleeper.sh", args=[pidfile], kill_grace=0.5)
        d = self.run_action(action, _request())
        d.cancel()
        self.failureResultOf(d, CancelledError)
        await action.when_idle()
        # the script got that far before the signal (a tiny local file: blocking is harmless)
        if os.path.exists(pidfile):
            self.read_pids(pidfile, require_alive=False)
            await self.wait_all_gone()
        self.assertEqual(self.reactor.pending(), [])

    async def test_background_child_keeps_output_open(self) -> None:
        """A script that exits 0 leaving a child on its stdout succeeds after the drain grace."""
        pidfile = self.mktemp()
        action = self.make("group_sleeper.sh", args=[pidfile, "exit"], drain_grace=0.2)
        await self.run_action(action, _request())  # succeeds
        self.assertIn(("info", "ready"), self.lines)
        await action.when_idle()
        self.assertEqual(self.reactor.pending(), [])
        with open(pidfile) as f:
            _leader, child = (int(word) for word in f.read().split())
        # The leader is gone, its child is still sleeping (the cleanup kills it by pid).
        self.assertEqual(self.read_pids(pidfile, require_alive=False), [child])


class ScriptActionWrapperTests(ScriptActionTests):
    """The same, spawning through the Python setsid wrapper used when setsid is missing."""

    launcher: ClassVar[list[str] | None] = [sys.executable, "-c", _SETSID_WRAPPER]


class ScriptActionPathTests(SynchronousTestCase):
    """Bad script paths fail the step at once with a clear reason."""

    def run_path(self, path: str, reactor: Any = None, **kw: Any) -> ActionFailed:
        """Run a script action for ``path`` and return its ActionFailed."""
        action = ScriptAction(path=path, args=[], timeout=5, system="TPC",
                              reactor=reactor or Clock(), log_line=_Lines(), **kw)
        error = self.failureResultOf(action.run(_request()), ActionFailed).value
        assert isinstance(error, ActionFailed)
        return error

    def test_missing_script(self) -> None:
        """A path that does not exist is reported as such."""
        self.assertIn("does not exist", self.run_path("/nonexistent/detectorScript.sh").reason)

    def test_not_executable(self) -> None:
        """A file without execute permission is reported as not executable."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o644)
        self.assertIn("is not executable", self.run_path(path).reason)

    def test_relative_path(self) -> None:
        """A relative path is refused."""
        self.assertIn("not absolute", self.run_path("detectorScript.sh").reason)

    def test_spawn_failure(self) -> None:
        """A launcher that cannot be started fails the step with the OS error."""
        failed = self.run_path(os.path.join(SCRIPTS, "exit_status.sh"), reactor=global_reactor,
                               launcher=["/nonexistent/launcher"])
        self.assertIn("cannot start script", failed.reason)
        self.assertIn("No such file", failed.reason)
        self.assertEqual(len(self.flushLoggedErrors(FileNotFoundError)), 1)
