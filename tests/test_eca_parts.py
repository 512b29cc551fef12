# -*- test-case-name: tests.test_eca_parts -*-
"""
Tests for the ECA's leaf collaborators, each alone with a C{Clock}, a real
store on the inline runner and recording dummies
(L{tests.support.eca_parts}): L{agents.eca.events.EventLog},
L{agents.eca.logbook.LogBook}, L{agents.eca.audit.Audit},
L{agents.eca.scopes.ControlScopes}, L{agents.eca.compose.RestartCounter}
and L{agents.eca.service.web_url}.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.audit import Audit
from agents.eca.compose import RestartCounter
from agents.eca.events import EventLog
from agents.eca.interfaces import IEventSource, ILogBook
from agents.eca.logbook import LogBook
from agents.eca.scopes import ControlScopes
from agents.eca.service import ECAService, _add, _Closing, web_url
from agents.eca.tap import private_state_dir
from ecs.config.settings import load_settings
from ecs.control import ControlError, User
from ecs.fsm.sequence import load_sequence
from tests.pca_harness import subsystems_with
from tests.support.eca_parts import Recorder, inline_store

ALICE = User("alice", ("operator",))
BOB = User("bob", ("operator",))


class EventLogTests(SynchronousTestCase):
    """Numbering, filtering, the bounded buffer and failing subscribers."""

    def test_numbers_and_filter(self) -> None:
        """Events are numbered from 1; a partition subscriber gets its own and the global ones."""
        log = EventLog()
        got: list[tuple[int, str]] = []
        log.subscribe(lambda n, t, d: got.append((n, t)), "p1")
        self.assertEqual(log.emit("state", {}, "p1"), 1)
        log.emit("state", {}, "p2")
        log.emit("agent", {}, None)
        self.assertEqual(got, [(1, "state"), (3, "agent")])
        self.assertEqual([n for n, _, _ in log.events_since(1, "p2") or []], [2, 3])

    def test_buffer_overrun(self) -> None:
        """Asking from before the buffer's start gives None (the client must reload)."""
        log = EventLog(size=2)
        for _ in range(4):
            log.emit("log", {})
        self.assertIsNone(log.events_since(0))
        self.assertEqual([n for n, _, _ in log.events_since(2) or []], [3, 4])

    def test_id_from_before_a_restart(self) -> None:
        """An id this log never gave (the ECA restarted and numbers anew) gives None: reload."""
        log = EventLog()
        log.emit("log", {})
        self.assertEqual(log.events_since(1), [])
        self.assertIsNone(log.events_since(2))
        self.assertIsNone(EventLog().events_since(57))

    def test_subscriber_raises(self) -> None:
        """A subscriber that raises is logged; the others still get the event; unsubscribing works."""
        log = EventLog()
        got: list[int] = []

        def bad(n: int, t: str, d: dict[str, Any]) -> None:
            raise ValueError("bug")

        log.subscribe(bad)
        stop = log.subscribe(lambda n, t, d: got.append(n))
        log.emit("log", {})
        stop()
        stop()
        log.emit("log", {})
        self.assertEqual(got, [1])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)  # both events reached it
        self.assertTrue(IEventSource.providedBy(log))


class EventLogBatchTests(SynchronousTestCase):
    """The batch subscription: a reactor turn's events in one call, on the injected clock."""

    def test_one_call_per_turn_in_order(self) -> None:
        """A turn's events come in one call, in order, when the turn ends; the next turn is another call."""
        clock = Clock()
        log = EventLog(clock=clock)
        calls: list[list[int]] = []
        log.subscribe_batch(lambda events: calls.append([n for n, _, _ in events]))
        for _ in range(5):
            log.emit("state", {}, "p1")
        self.assertEqual(calls, [])
        clock.advance(0)
        self.assertEqual(calls, [[1, 2, 3, 4, 5]])
        clock.advance(0)
        self.assertEqual(calls, [[1, 2, 3, 4, 5]])  # no empty batch
        log.emit("log", {})
        clock.advance(0)
        self.assertEqual(calls, [[1, 2, 3, 4, 5], [6]])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_per_event_subscribers_unchanged(self) -> None:
        """A per-event subscriber still gets each event as it is emitted, before the turn ends."""
        clock = Clock()
        log = EventLog(clock=clock)
        single: list[int] = []
        log.subscribe(lambda n, t, d: single.append(n))
        log.subscribe_batch(lambda events: None)
        log.emit("state", {})
        log.emit("state", {})
        self.assertEqual(single, [1, 2])
        clock.advance(0)

    def test_partition_filter(self) -> None:
        """A partition's batch has its events and the global ones; an unfiltered one has all."""
        clock = Clock()
        log = EventLog(clock=clock)
        p1: list[list[int]] = []
        every: list[list[int]] = []
        log.subscribe_batch(lambda events: p1.append([n for n, _, _ in events]), "p1")
        log.subscribe_batch(lambda events: every.append([n for n, _, _ in events]))
        log.emit("state", {}, "p1")
        log.emit("state", {}, "p2")
        log.emit("agent", {}, None)
        clock.advance(0)
        self.assertEqual(p1, [[1, 3]])
        self.assertEqual(every, [[1, 2, 3]])
        log.emit("state", {}, "p2")
        clock.advance(0)
        self.assertEqual(p1, [[1, 3]])  # nothing for it this turn: not called
        self.assertEqual(every, [[1, 2, 3], [4]])

    def test_unsubscribe_mid_turn(self) -> None:
        """Unsubscribed before the turn ends, or by an earlier subscriber's callback: no call."""
        clock = Clock()
        log = EventLog(clock=clock)
        got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
        stops: dict[str, Any] = {}

        def first(events: list[tuple[int, str, dict[str, Any]]]) -> None:
            got["a"].extend(n for n, _, _ in events)
            stops["b"]()

        stops["a"] = log.subscribe_batch(first)
        stops["b"] = log.subscribe_batch(lambda events: got["b"].extend(n for n, _, _ in events))
        stops["c"] = log.subscribe_batch(lambda events: got["c"].extend(n for n, _, _ in events))
        log.emit("log", {})
        stops["c"]()
        clock.advance(0)
        self.assertEqual(got, {"a": [1], "b": [], "c": []})

    def test_subscribed_mid_turn(self) -> None:
        """A subscriber added during a turn gets only the events emitted after it subscribed."""
        clock = Clock()
        log = EventLog(clock=clock)
        early: list[int] = []
        late: list[int] = []
        log.subscribe_batch(lambda events: early.extend(n for n, _, _ in events))
        log.emit("log", {})
        log.subscribe_batch(lambda events: late.extend(n for n, _, _ in events))
        log.emit("log", {})
        clock.advance(0)
        self.assertEqual(early, [1, 2])
        self.assertEqual(late, [2])

    def test_subscriber_raises(self) -> None:
        """A batch subscriber that raises is logged; the others still get their batch, and later ones too."""
        clock = Clock()
        log = EventLog(clock=clock)
        got: list[int] = []

        def bad(events: list[tuple[int, str, dict[str, Any]]]) -> None:
            raise ValueError("bug")

        log.subscribe_batch(bad)
        log.subscribe_batch(lambda events: got.extend(n for n, _, _ in events))
        log.emit("log", {})
        clock.advance(0)
        log.emit("log", {})
        clock.advance(0)
        self.assertEqual(got, [1, 2])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)

    def test_without_clock(self) -> None:
        """Without a clock every event is its own batch, delivered at once."""
        log = EventLog()
        calls: list[list[int]] = []
        log.subscribe_batch(lambda events: calls.append([n for n, _, _ in events]))
        log.emit("log", {})
        log.emit("log", {})
        self.assertEqual(calls, [[1], [2]])


class LogBookTests(SynchronousTestCase):
    """Lines go live at once and to the store in batches."""

    def test_live_then_stored(self) -> None:
        """A line is an event at once, stamped by the clock, and stored at the next flush."""
        clock = Clock()
        clock.advance(100)
        store = inline_store(self, clock)
        events: list[tuple[Any, ...]] = []
        book = LogBook(store, Recorder("events", events, IEventSource, "emit"), clock)  # type: ignore[arg-type]
        self.assertTrue(ILogBook.providedBy(book))
        book.log("warn", "ECA", "hello", "p1")
        self.assertEqual(
            events,
            [
                (
                    "events.emit",
                    "log",
                    {"time": 100.0, "level": "warn", "source": "ECA", "message": "hello", "partition": "p1"},
                    "p1",
                )
            ],
        )
        self.assertEqual(self.successResultOf(store.logs(q="hello")), [])
        self.successResultOf(Deferred.fromCoroutine(book.flush()))
        self.assertEqual([row.message for row in self.successResultOf(store.logs(q="hello"))], ["hello"])


class ScopesTests(SynchronousTestCase):
    """Taking, releasing and expiring control: the store, the cache and the events agree."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = inline_store(self, self.clock)
        self.successResultOf(self.store.add_partition("p1"))
        for name in ("alice", "bob"):
            self.successResultOf(self.store.add_user(name, "x", ["operator"]))
        self.events: list[tuple[Any, ...]] = []
        self.scopes = ControlScopes(
            self.store,
            Recorder("events", self.events, IEventSource, "emit"),  # type: ignore[arg-type]
            Audit(self.store),
            self.clock,
            timeout=60.0,
        )

    def controls(self) -> list[tuple[Any, ...]]:
        return [(e[2]["scope"], e[2]["holder"], e[2]["reason"]) for e in self.events if e[1] == "control"]

    def test_take_release(self) -> None:
        """The holder is cached and announced; another operator is refused with the holder named."""
        self.successResultOf(self.scopes.take(ALICE, "p1", False, {"p1"}))
        self.assertEqual(self.scopes.holder("p1"), "alice")
        failure = self.failureResultOf(self.scopes.take(BOB, "p1", False, {"p1"}), ControlError)
        self.assertEqual((failure.value.code, failure.value.details.get("holder")), ("conflict", "alice"))
        self.successResultOf(self.scopes.release(ALICE, "p1"))
        self.assertIsNone(self.scopes.holder("p1"))
        self.assertEqual(self.controls(), [("p1", "alice", "take"), ("p1", None, "release")])

    def test_unknown_partition(self) -> None:
        """A scope that is neither a known partition nor the ECS is not found."""
        failure = self.failureResultOf(self.scopes.take(ALICE, "nope", False, {"p1"}), ControlError)
        self.assertEqual(failure.value.code, "not_found")

    def test_expire(self) -> None:
        """After the timeout without activity, control is released with the reason inactivity."""
        self.successResultOf(self.scopes.take(ALICE, "p1", False, {"p1"}))
        self.clock.advance(61)
        self.successResultOf(Deferred.fromCoroutine(self.scopes.expire()))
        self.assertIsNone(self.scopes.holder("p1"))
        self.assertEqual(self.controls()[-1], ("p1", None, "inactivity"))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RestartCounterTests(SynchronousTestCase):
    """Restarts are counted from the supervisor's agent descriptions."""

    def test_counts_increments(self) -> None:
        """Only growth of supervision.restarts counts, one per restart, per agent."""
        calls: list[tuple[Any, ...]] = []
        metrics = Recorder("metrics", calls, None, "agent_restarted")
        counter = RestartCounter(metrics)  # type: ignore[arg-type]
        for agent, restarts in (("pca:p", 0), ("pca:p", 0), ("pca:p", 2), ("pca:q", 5), ("pca:q", 6), ("pca:p", 0)):
            counter.changed({"agent": agent, "supervision": {"restarts": restarts}})
        counter.changed({"agent": "pca:p"})
        self.assertEqual(calls, [("metrics.agent_restarted", "pca:p")] * 2 + [("metrics.agent_restarted", "pca:q")])


class WebUrlTests(SynchronousTestCase):
    """The ECA shows the URL with the scheme its web endpoint serves."""

    def test_schemes(self) -> None:
        """tcp gives http, ssl gives https; an IPv6 host is bracketed."""
        self.assertEqual(web_url("tcp:8080:interface=127.0.0.1", "127.0.0.1", 8080), "http://127.0.0.1:8080/")
        self.assertEqual(web_url("ssl:8443:privateKey=k.pem", "0.0.0.0", 8443), "https://0.0.0.0:8443/")
        self.assertEqual(web_url("SSL:443", "::1", 443), "https://[::1]:443/")


class StateDirTests(SynchronousTestCase):
    """The ECA's state directory is created 0700; a looser existing one is reported."""

    def test_new_private(self) -> None:
        """A new state directory (and its missing parents) exists afterwards, itself 0700."""
        path = Path(self.mktemp()) / "a" / "var"
        private_state_dir(path)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o700)

    def test_existing_open_warned(self) -> None:
        """An existing directory open to others is left alone, with a warning naming its mode."""
        path = Path(self.mktemp())
        path.mkdir(mode=0o755)
        path.chmod(0o755)
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        private_state_dir(path)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o755)
        self.assertEqual([e["mode"] for e in events if "0700 is advised" in e.get("log_format", "")], [0o755])


class ServiceStopTests(SynchronousTestCase):
    """ECAService stops its children in reverse order, each after the one before it has stopped."""

    def test_sequential_reverse_stop(self) -> None:
        """The last child added stops first; the next waits for it; a failing stop is logged and the rest go on."""
        subsystems = subsystems_with(0.05)
        sequence = load_sequence(None, list(subsystems.global_systems))
        clock = Clock()
        eca = ECAService(load_settings(overrides={"security": "none"}), subsystems, sequence, None, "tcp:0", clock)
        order: list[str] = []
        gate: Deferred[None] = Deferred()

        def closer(name: str, wait: Deferred[None] | None = None, fail: bool = False) -> Any:
            async def close() -> None:
                order.append(f"{name} begins")
                if wait is not None:
                    await wait
                if fail:
                    raise RuntimeError(name)
                order.append(f"{name} ends")

            return close

        for child in (_Closing(closer("store")), _Closing(closer("web", fail=True)), _Closing(closer("agents", gate))):
            _add(eca, child)
        d = eca.stopService()
        self.assertEqual(order, ["agents begins"])
        self.assertNoResult(d)
        gate.callback(None)
        self.successResultOf(d)
        self.assertEqual(order, ["agents begins", "agents ends", "web begins", "store begins", "store ends"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(clock.getDelayedCalls(), [])
