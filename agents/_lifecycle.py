# -*- test-case-name: tests.test_host -*-
"""
Services whose start-up is asynchronous (STYLE.md #2).

C{MultiService} ignores a Deferred returned by C{startService}, so an agent
that must bind, register and look things up models its start-up instead:
L{AsyncStartService.startService} runs the coroutine C{_start}, and
C{ready} fires when it is done.  A failure is logged (known, operator-level
failures as one line, others with their traceback) and the process exits
with status 1 once the reactor has stopped, so that whatever supervises the
agent sees it failed: twistd itself has no way to report a failure that
happens after the reactor started.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger


def exit_after_shutdown(reactor: Any) -> None:
    """Stop the reactor; exit with status 1 once it has shut down."""

    def exit_nonzero() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    reactor.addSystemEventTrigger("after", "shutdown", exit_nonzero)
    reactor.stop()


class AsyncStartService(service.Service):
    """A service started by the coroutine C{_start}; see the module docstring."""

    _log = Logger()
    reactor: Any
    #: How the agent names itself in the start-up failure message.
    label = "agent"
    #: Failures that are the operator's to fix: reported as one line.
    expected_failures: tuple[type[BaseException], ...] = (OSError,)

    @property
    def ready(self) -> defer.Deferred[None]:
        """Fires once started (or fails with the reason it could not)."""
        if not hasattr(self, "_ready"):
            self._ready: defer.Deferred[None] = defer.Deferred()
        return self._ready

    async def _start(self) -> None:
        raise NotImplementedError

    def startService(self) -> None:
        """Run C{_start}; C{ready} tells how it went."""
        super().startService()
        ready = self.ready
        defer.Deferred.fromCoroutine(self._start()).addCallbacks(ready.callback, self._start_failed)

    def _start_failed(self, failure: Any) -> None:
        if failure.check(*self.expected_failures):
            message = f"{self.label} cannot start: {failure.value}"
        else:
            self._log.failure("{label} cannot start", failure, label=self.label)
            message = f"{self.label} cannot start: {type(failure.value).__name__}: {failure.value}"
        self.fatal(message)
        self.ready.errback(failure)
        self.ready.addErrback(lambda _: None)

    def fatal(self, message: str) -> None:
        """Say why, and end the process with status 1 (when the reactor runs)."""
        self._log.critical("{message}", message=message)
        if getattr(self.reactor, "running", False):
            exit_after_shutdown(self.reactor)
