# -*- test-case-name: tests.test_heartbeat -*-
"""
Liveness of one peer: heartbeats sent every C{interval}, loss declared
C{timeout} after the last answer (checked at that very moment, not at the
next heartbeat: with the default C{timeout} of two intervals a peer killed
is seen lost within two intervals), recovery when the peer answers again.

Only answers count: a request the peer sends I{us} is no sign that it
still listens where we send (a restarted peer at a new address keeps
sending, and would never be noticed).  A reply carrying C{incarnation}
(the peer's process start) that differs from the last one seen calls
C{on_restarted}: the peer restarted between two heartbeats.

A heartbeat is a request (type C{heartbeat}) answered by the peer's
transport itself, so a peer answers as long as its reactor runs.  One
heartbeat per peer I{endpoint}, not per agent: a sim host with a thousand
controllers costs one heartbeat per interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class Heartbeat:
    """
    Watch one peer.

    @ivar alive: L{None} until the first answer or the first loss, then a bool.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        interval: float,
        timeout: float,
        ping: Callable[[float], defer.Deferred[Any]],
        on_lost: Callable[[], None],
        on_recovered: Callable[[], None],
        name: str = "peer",
        last_heard: Callable[[], float | None] | None = None,
        on_restarted: Callable[[str], None] | None = None,
    ) -> None:
        """
        @param last_heard: when the peer last I{answered} anything of ours
            (a reply to another request is as good as a heartbeat answer).
        @param on_restarted: called with the new incarnation when an answer
            carries one different from the last.
        """
        self._clock = clock
        self.interval = interval
        self.timeout = timeout
        self._ping = ping
        self._on_lost = on_lost
        self._on_recovered = on_recovered
        self.name = name
        self._last_heard = last_heard
        self.alive: bool | None = None
        self._last_ok = 0.0
        self._timer: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._in_flight: defer.Deferred[Any] | None = None
        self._on_restarted = on_restarted
        #: The peer's incarnation from its last answer that carried one.
        self.incarnation: str | None = None

    def start(self) -> None:
        """Start watching (sends the first heartbeat now)."""
        if self._timer is not None:
            return
        self._last_ok = self._clock.seconds()
        self._tick()

    def stop(self) -> None:
        """Stop watching; no callbacks after this."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if self._in_flight is not None:
            d, self._in_flight = self._in_flight, None
            d.cancel()

    def _tick(self) -> None:
        self._timer = self._clock.callLater(self.interval, self._tick)
        self._check()
        if not self._watching():
            return  # on_lost stopped us: no ping after stop()
        if self._in_flight is None:
            d = self._ping(self.timeout)
            self._in_flight = d
            d.addCallbacks(self._answered, self._unanswered, errbackArgs=(d,), callbackArgs=(d,))

    def _check(self) -> None:
        """Declare the peer lost if its last answer is C{timeout} old; else wake up then."""
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        now = self._clock.seconds()
        if self._last_heard is not None:
            heard = self._last_heard()
            if heard is not None and heard > self._last_ok:
                # Any answer from the peer is a sign of life: a peer busy
                # answering a flood is slow to answer pings, not lost.
                self._last_ok = heard
        silent = now - self._last_ok
        # A hair of slack: a deadline timer set for last_ok + timeout fires
        # at a time whose float difference may round just below timeout.
        if silent >= self.timeout - 1e-6:
            if self.alive is not False:
                self._lost(silent)
            return  # lost: the next answer re-arms the deadline
        self._deadline = self._clock.callLater(self.timeout - silent, self._check)

    def _lost(self, silent: float) -> None:
        if self.alive is None:
            self._log.warn(
                "{name}: not reachable ({seconds:.1f} s without an answer since start)",
                name=self.name,
                seconds=silent,
            )
        else:
            self._log.warn(
                "{name}: no heartbeat answer for {seconds:.1f} s: connection lost",
                name=self.name,
                seconds=silent,
            )
        self.alive = False
        self._call(self._on_lost)

    def _answered(self, reply: object, d: defer.Deferred[Any]) -> None:
        if self._in_flight is d:
            self._in_flight = None
        if self._timer is None:
            return
        self._last_ok = self._clock.seconds()
        incarnation = reply.get("incarnation") if isinstance(reply, dict) else None
        if isinstance(incarnation, str) and incarnation:
            previous, self.incarnation = self.incarnation, incarnation
            if previous is not None and previous != incarnation and self._on_restarted is not None:
                self._log.info("{name}: restarted (a new incarnation)", name=self.name)
                self._call(lambda: self._on_restarted(incarnation) if self._on_restarted else None)
                if not self._watching():
                    return
        if self.alive is not True:
            if self.alive is False:
                self._log.info("{name}: answers again: connection recovered", name=self.name)
            self.alive = True
            self._call(self._on_recovered)
        if self._watching() and (self._deadline is None or not self._deadline.active()):
            self._check()

    def _unanswered(self, failure: object, d: defer.Deferred[Any]) -> None:
        if self._in_flight is d:
            self._in_flight = None

    def _watching(self) -> bool:
        # A method, not an attribute test: a callback may have called stop()
        # since the caller last looked at self._timer.
        return self._timer is not None

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            self._log.failure("{name}: liveness callback raised", name=self.name)
