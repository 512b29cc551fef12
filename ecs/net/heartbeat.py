# -*- test-case-name: tests.test_heartbeat -*-
"""
Liveness of one peer: heartbeats sent every C{interval}, loss declared
after C{timeout} without an answer, recovery when the peer answers again.

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
    ) -> None:
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
        self._in_flight: defer.Deferred[Any] | None = None

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
        if self._in_flight is not None:
            d, self._in_flight = self._in_flight, None
            d.cancel()

    def _tick(self) -> None:
        self._timer = self._clock.callLater(self.interval, self._tick)
        now = self._clock.seconds()
        if self._last_heard is not None:
            heard = self._last_heard()
            if heard is not None and heard > self._last_ok:
                # Any message from the peer is a sign of life: a peer busy
                # answering a flood is slow to answer pings, not lost.
                self._last_ok = heard
        if now - self._last_ok >= self.timeout and self.alive is not False:
            if self.alive is None:
                self._log.warn(
                    "{name}: not reachable ({seconds:.1f} s without an answer since start)",
                    name=self.name,
                    seconds=now - self._last_ok,
                )
            else:
                self._log.warn(
                    "{name}: no heartbeat answer for {seconds:.1f} s: connection lost",
                    name=self.name,
                    seconds=now - self._last_ok,
                )
            self.alive = False
            self._call(self._on_lost)
            if not self._watching():
                return  # on_lost stopped us: no ping after stop()
        if self._in_flight is None:
            d = self._ping(self.timeout)
            self._in_flight = d
            d.addCallbacks(self._answered, self._unanswered, errbackArgs=(d,), callbackArgs=(d,))

    def _answered(self, _: object, d: defer.Deferred[Any]) -> None:
        if self._in_flight is d:
            self._in_flight = None
        if self._timer is None:
            return
        self._last_ok = self._clock.seconds()
        if self.alive is not True:
            if self.alive is False:
                self._log.info("{name}: answers again: connection recovered", name=self.name)
            self.alive = True
            self._call(self._on_recovered)

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
