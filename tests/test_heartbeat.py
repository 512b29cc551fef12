"""
Tests for L{ecs.net.heartbeat.Heartbeat}: loss after C{timeout} without an
answer, recovery when the peer answers, one ping in flight at most, and a
clean stop.  Time is a L{Clock}; pings are Deferreds the test fires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from ecs.net.heartbeat import Heartbeat


class Peer:
    """A fake ping: records each heartbeat and lets the test answer it."""

    def __init__(self) -> None:
        self.pings: list[tuple[float, Deferred[Any]]] = []
        self.cancelled = 0
        self.auto: Callable[[], Deferred[Any]] | None = None

    def ping(self, timeout: float) -> Deferred[Any]:
        if self.auto is not None:
            d = self.auto()
        else:
            d = Deferred(lambda _: self._cancel())
        self.pings.append((timeout, d))
        return d

    def _cancel(self) -> None:
        self.cancelled += 1

    @property
    def last(self) -> Deferred[Any]:
        return self.pings[-1][1]

    def answer(self) -> None:
        self.last.callback({"agents": 1})

    def fail(self) -> None:
        self.last.errback(TimeoutError("no reply"))


class HeartbeatTests(SynchronousTestCase):
    """Liveness of one peer with interval 1 s and timeout 3 s."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.peer = Peer()
        self.events: list[str] = []
        self.log_events: list[dict[str, Any]] = []
        self.patch(Heartbeat, "_log", Logger(observer=self.log_events.append))
        self.hb = self.make()

    def make(self, interval: float = 1.0, timeout: float = 3.0, **kw: Any) -> Heartbeat:
        args: dict[str, Any] = dict(
            on_lost=lambda: self.events.append("lost"),
            on_recovered=lambda: self.events.append("recovered"),
            name="PCA1",
        )
        args.update(kw)
        return Heartbeat(self.clock, interval, timeout, self.peer.ping, **args)

    def tick(self, n: int = 1) -> None:
        self.clock.pump([1.0] * n)

    def test_first_ping_at_start(self) -> None:
        """start sends a heartbeat at once; its deadline is the whole loss timeout."""
        self.assertIsNone(self.hb.alive)
        self.hb.start()
        self.assertEqual(len(self.peer.pings), 1)
        self.assertEqual(self.peer.pings[0][0], 3.0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)  # the next ping, the loss deadline
        self.assertEqual(self.events, [])

    def test_any_message_is_a_sign_of_life(self) -> None:
        """A peer that sends other messages but answers pings late is not declared lost."""
        heard = {"at": None}
        hb = self.make(last_heard=lambda: heard["at"])
        hb.start()
        for _ in range(10):
            heard["at"] = self.clock.seconds()  # replies keep coming, pings wait in the queue
            self.tick()
        self.assertEqual(self.events, [])
        self.tick(4)  # then silence
        self.assertEqual(self.events, ["lost"])
        hb.stop()

    def test_ping_deadline_bounded_by_timeout(self) -> None:
        """With an interval longer than the timeout, a ping waits at most the timeout."""
        self.make(interval=5.0, timeout=3.0).start()
        self.assertEqual(self.peer.pings[0][0], 3.0)

    def test_first_answer_recovers(self) -> None:
        """The first answer moves alive from None to True with one on_recovered."""
        self.hb.start()
        self.peer.answer()
        self.assertIs(self.hb.alive, True)
        self.assertEqual(self.events, ["recovered"])
        for _ in range(5):
            self.tick()
            self.peer.answer()
        self.assertEqual(self.events, ["recovered"])
        self.assertEqual(len(self.peer.pings), 6)

    def test_lost_after_timeout(self) -> None:
        """No answer for timeout seconds calls on_lost once, and only then."""
        self.hb.start()
        self.peer.answer()
        self.events.clear()
        self.tick(2)
        self.clock.advance(0.9)
        self.assertEqual(self.events, [])
        self.clock.advance(0.1)
        self.assertEqual(self.events, ["lost"])
        self.assertIs(self.hb.alive, False)
        self.tick(20)
        self.assertEqual(self.events, ["lost"])
        self.assertEqual(
            [e["log_level"].name for e in self.log_events if "connection lost" in e["log_format"]],
            ["warn"],
        )

    def test_never_answered(self) -> None:
        """A peer that never answers is lost without ever being recovered."""
        self.hb.start()
        self.tick(10)
        self.assertEqual(self.events, ["lost"])
        self.assertIs(self.hb.alive, False)

    def test_one_ping_in_flight(self) -> None:
        """While a heartbeat is unanswered no other is sent."""
        self.hb.start()
        self.tick(10)
        self.assertEqual(len(self.peer.pings), 1)
        self.peer.answer()
        self.tick()
        self.assertEqual(len(self.peer.pings), 2)

    def test_failed_ping_sent_again(self) -> None:
        """After a ping fails (its deadline passed) the next tick sends a new one."""
        self.hb.start()
        for _ in range(2):
            self.peer.fail()
            self.tick()
        self.assertEqual(len(self.peer.pings), 3)
        self.assertEqual(self.events, [])
        self.peer.fail()
        self.tick()
        self.assertEqual(self.events, ["lost"])
        self.assertEqual(len(self.peer.pings), 4)

    def test_recovery(self) -> None:
        """An answer after a loss calls on_recovered once and restarts the timeout."""
        self.hb.start()
        self.peer.answer()
        self.tick(3)
        self.assertEqual(self.events, ["recovered", "lost"])
        self.tick(2)
        self.peer.answer()
        self.assertEqual(self.events, ["recovered", "lost", "recovered"])
        self.assertIs(self.hb.alive, True)
        self.assertTrue(any("recovered" in e["log_format"] for e in self.log_events))
        self.tick()
        self.peer.answer()
        self.tick(2)
        self.assertEqual(self.events, ["recovered", "lost", "recovered"])
        self.tick(1)
        self.assertEqual(self.events, ["recovered", "lost", "recovered", "lost"])

    def test_steady_answers(self) -> None:
        """A peer that always answers is never lost."""
        self.peer.auto = lambda: defer.succeed({})
        self.hb.start()
        self.tick(100)
        self.assertEqual(self.events, ["recovered"])
        self.assertEqual(len(self.peer.pings), 101)

    def test_slow_but_within_timeout(self) -> None:
        """Answers slower than the interval but within the timeout keep the peer alive."""
        self.hb.start()
        self.peer.answer()
        for _ in range(5):
            self.tick(2)
            self.peer.answer()
        self.assertEqual(self.events, ["recovered"])

    def test_stop(self) -> None:
        """stop() cancels the timer and the ping in flight; nothing is called afterwards."""
        self.hb.start()
        self.hb.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.peer.cancelled, 1)
        self.assertTrue(self.peer.last.called)
        self.tick(10)
        self.assertEqual(self.events, [])
        self.assertEqual(len(self.peer.pings), 1)

    def test_answer_after_stop(self) -> None:
        """An answer that arrives after stop() (ping not cancellable) calls nothing."""
        late: Deferred[Any] = Deferred()
        self.peer.auto = lambda: late
        self.hb.start()
        self.hb.stop()
        late.callback({})  # cancelled without a canceller: the late result is swallowed
        self.tick(10)
        self.assertEqual(self.events, [])
        self.assertIsNone(self.hb.alive)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_after_loss(self) -> None:
        """After stop() neither loss nor recovery is reported."""
        self.hb.start()
        self.peer.answer()
        self.tick(2)
        self.hb.stop()
        self.tick(10)
        self.assertEqual(self.events, ["recovered"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_from_on_lost(self) -> None:
        """An on_lost callback that stops the heartbeat leaves no ping or timer behind."""
        self.peer.auto = lambda: defer.fail(TimeoutError("no reply"))
        hb = self.make(on_lost=lambda: (self.events.append("lost"), hb.stop()))
        hb.start()
        self.tick(10)
        self.assertEqual(self.events, ["lost"])
        self.assertEqual(len(self.peer.pings), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_twice(self) -> None:
        """A second start() is ignored."""
        self.hb.start()
        self.hb.start()
        self.assertEqual(len(self.peer.pings), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)

    def test_restart(self) -> None:
        """start() after stop() watches again, with a fresh timeout."""
        self.hb.start()
        self.tick(2)
        self.hb.stop()
        self.tick(10)
        self.hb.start()
        self.tick(2)
        self.assertEqual(self.events, [])
        self.tick()
        self.assertEqual(self.events, ["lost"])
        self.hb.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_callbacks_raising(self) -> None:
        """Callbacks that raise are logged and do not stop the heartbeat."""

        def boom() -> None:
            self.events.append("boom")
            raise RuntimeError("listener bug")

        hb = self.make(on_lost=boom, on_recovered=boom)
        hb.start()
        self.peer.answer()
        self.tick(3)
        self.tick()
        self.peer.answer()
        self.assertEqual(self.events, ["boom", "boom", "boom"])
        failures = [e["log_failure"] for e in self.log_events if "log_failure" in e]
        self.assertEqual(len(failures), 3)
        self.assertTrue(all(f.check(RuntimeError) for f in failures))
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        hb.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_loss_at_the_deadline_not_the_next_tick(self) -> None:
        """Loss is declared timeout after the last answer, even between two heartbeats."""
        hb = self.make(interval=1.0, timeout=2.5)
        hb.start()
        self.clock.advance(0.25)
        self.peer.answer()  # last answer at 0.25: lost at 2.75
        self.events.clear()
        self.clock.advance(2.49)
        self.assertEqual(self.events, [])
        self.clock.advance(0.01)
        self.assertEqual(self.events, ["lost"])
        hb.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_detection_within_two_intervals(self) -> None:
        """With timeout = 2 intervals, a peer that stops answering at any moment is lost within 2 intervals."""
        for death in (0.0, 0.3, 0.999):
            self.assertLessEqual(self.detection_time(death), 2.0 + 0.002, f"death at +{death}")

    def detection_time(self, death: float) -> float:
        """Seconds from a peer's death (C{death} after a heartbeat) to its loss, interval 1 s, timeout 2 s."""
        clock = Clock()
        events: list[str] = []
        peer = Peer()
        peer.auto = lambda: defer.succeed({"agents": 1})
        hb = Heartbeat(clock, 1.0, 2.0, peer.ping, lambda: events.append("lost"), lambda: None)
        hb.start()
        clock.pump([0.5] * 10)
        clock.advance(death)
        peer.auto = None  # dead from now on: pings are never answered
        died = clock.seconds()
        while not events:
            clock.advance(0.001)
        hb.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
        return clock.seconds() - died

    def test_new_incarnation_calls_on_restarted(self) -> None:
        """An answer with another incarnation than the last calls on_restarted with it, once."""
        restarts: list[str] = []
        hb = self.make(on_restarted=restarts.append)
        hb.start()
        self.peer.last.callback({"agents": 1, "incarnation": "a"})
        self.tick()
        self.peer.last.callback({"agents": 1, "incarnation": "a"})
        self.assertEqual(restarts, [])
        self.tick()
        self.peer.last.callback({"agents": 1, "incarnation": "b"})
        self.tick()
        self.peer.last.callback({"agents": 1})  # an answer without one changes nothing
        self.assertEqual(restarts, ["b"])
        self.assertEqual(hb.incarnation, "b")
        self.assertEqual(self.events, ["recovered"])
        hb.stop()
