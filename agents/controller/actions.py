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

The shared interface (:class:`ActionRequest`, :class:`ActionFailed`, :class:`IAction`,
:data:`LogLine`) lives in :mod:`agents.controller.action_api` and the script machinery in
:mod:`agents.controller.script_action`; both are re-exported here, so callers import from this module.
"""

from __future__ import annotations

import importlib
import inspect
import random
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from agents.controller.action_api import ActionFailed, ActionRequest, IAction, LogLine

# ScriptAction and its constants are re-exported from agents.controller.script_action.
from agents.controller.script_action import ScriptAction

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

_log = Logger()


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
    An example ``python`` action (``class: agents.controller.actions.ExampleHook``): logs the step and
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
