# -*- test-case-name: tests.test_startup -*-
"""
Services whose start-up is asynchronous, and how a process
that cannot start ends.

C{MultiService} ignores a Deferred returned by C{startService}, so an agent
that must bind, register and look things up models its start-up instead:
L{AsyncStartService.startService} runs the coroutine C{_start}, and
C{ready} fires when it is done.  A failure is logged (known, operator-level
failures as one line, others with their traceback) and the process exits
with status 1, so that whatever supervises the agent (systemd's
C{Restart=on-failure}, the ECA's supervisor) sees it failed: twistd itself
has no way to report a failure that happens after C{makeService}.

The failure may come in either phase:

 - before the reactor runs: twistd calls C{startService} before
   C{reactor.run()}, so a C{_start} that fails before its first real wait
   (a port taken, a bad bind address) fails right there.  The exit is then
   scheduled with C{callWhenRunning}: stopping a reactor that has not
   started does nothing, which is how an agent used to stay up with no
   ports;
 - once it runs: the reactor is stopped at once.

Either way the services get a short grace period to stop (they may hold
sockets or a database); after it, or once the reactor has shut down, the
process ends with status 1, whatever a stuck C{stopService} is waiting for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import Logger
from twisted.python.failure import Failure

from ecs.net.keys import KeyFileError
from ecs.schema import ConfigError

#: Seconds the services get to stop after a failed start before the process
#: ends anyway (a stop may wait on a peer that will never answer).
SHUTDOWN_GRACE = 3.0

EXIT_START_FAILED = 1

#: Failures that are the operator's to fix (a port taken, a file missing or
#: damaged, bad settings), whatever the agent: reported as one line, with no
#: traceback.  An agent adds its own in C{expected_failures}.
OPERATOR_FAILURES: tuple[type[BaseException], ...] = (OSError, CannotListenError, KeyFileError, ConfigError)


def _exit_now(code: int = EXIT_START_FAILED) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_after_shutdown(
    reactor: Any, grace: float = SHUTDOWN_GRACE, exit: Callable[[], object] = _exit_now
) -> None:
    """
    Stop C{reactor} and end the process with status 1 once it has shut
    down, or after C{grace} seconds, whichever comes first.  Before the
    reactor runs, all of this waits until it does.

    @param exit: called (with no argument) to end the process; tests pass a
        recorder.
    """
    if not getattr(reactor, "running", False):
        when_running = getattr(reactor, "callWhenRunning", None)
        if when_running is not None:
            when_running(exit_after_shutdown, reactor, grace, exit)
        return
    ended = False

    def end() -> None:
        nonlocal ended
        if not ended:
            ended = True
            exit()

    reactor.addSystemEventTrigger("after", "shutdown", end)
    reactor.callLater(grace, end)
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass  # already stopping: a second failure (the ECA and its part) changes nothing


class _Started:
    """The outcome of a start that succeeded."""


class AsyncStartService(service.Service):
    """A service started by the coroutine C{_start}; see the module docstring."""

    _log = Logger()
    reactor: Any
    #: How the agent names itself in the start-up failure message.
    label = "agent"
    #: Failures that are the operator's to fix, besides L{OPERATOR_FAILURES}:
    #: reported as one line.
    expected_failures: tuple[type[BaseException], ...] = ()
    # Class-level defaults: subclasses need not call an __init__ of ours.
    _start_outcome: _Started | Failure | None = None
    _ready_waiters: tuple[defer.Deferred[None], ...] = ()

    @property
    def ready(self) -> defer.Deferred[None]:
        """
        A new Deferred that fires once started, or fails with the reason it
        could not; each caller gets its own (a one-shot observer), so a
        failure nobody waits for is not an unhandled error.
        """
        waiter: defer.Deferred[None] = defer.Deferred()
        outcome = self._start_outcome
        if outcome is None:
            self._ready_waiters = (*self._ready_waiters, waiter)
        elif isinstance(outcome, Failure):
            waiter.errback(outcome)
        else:
            waiter.callback(None)
        return waiter

    def _started(self, outcome: Failure | None) -> None:
        self._start_outcome = _Started() if outcome is None else outcome
        waiters, self._ready_waiters = self._ready_waiters, ()
        for waiter in waiters:
            if outcome is None:
                waiter.callback(None)
            else:
                waiter.errback(outcome)

    async def _start(self) -> None:
        raise NotImplementedError

    def startService(self) -> None:
        """Run C{_start}; C{ready} tells how it went."""
        super().startService()  # type: ignore[no-untyped-call]  # Service.startService is unannotated
        defer.Deferred.fromCoroutine(self._start()).addCallbacks(lambda _: self._started(None), self._start_failed)

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(*OPERATOR_FAILURES, *self.expected_failures):
            message = f"{self.label} cannot start: {failure.value}"
        else:
            self._log.failure("{label} cannot start", failure, label=self.label)
            message = f"{self.label} cannot start: {type(failure.value).__name__}: {failure.value}"
        self.fatal(message)
        self._started(failure)

    def fatal(self, message: str) -> None:
        """
        Say why, and end the process with status 1: now if the reactor
        runs, as soon as it runs if it does not yet (see the module
        docstring).  A reactor without C{running} (a test's C{Clock}) is
        left alone.
        """
        self._log.critical("{reason}", reason=message)
        exit_after_shutdown(self.reactor, exit=self.exit_process)

    def exit_process(self) -> None:
        """End the process with status 1 (tests override it)."""
        _exit_now(EXIT_START_FAILED)
