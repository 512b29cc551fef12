# -*- test-case-name: tests.test_agent_machine -*-
"""
Tests for L{agents.eca.supervisor.agent_machine} (the agent lifecycle table
run by Automat) and L{agents.eca.supervisor.policy}: the machine wired to a
recording dummy of its outputs, with a L{Clock} for the back-off timer.
"""

from __future__ import annotations

import textwrap
from typing import Any, cast

from automat import NoTransition
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.supervisor.agent_machine import (
    BEHAVIOURS,
    Supervised,
    agent_machine,
    agent_table_path,
    new_machine,
)
from agents.eca.supervisor.policy import BackoffPolicy, Death, Flap, Restart, after_death
from ecs.fsm.draw import check_files
from ecs.fsm.table import AGENT_INPUTS, AGENT_STATES, load_table, parse_table
from ecs.launch import AgentStatus, LaunchError, LaunchRecord

Event = tuple[Any, ...]


class Dummy:
    """
    The agent machine's outputs, recording every call as C{("O.name", *args)}
    in one shared list (the agent is left out); C{T_schedule} also arms a
    real timer on a L{Clock} that feeds C{backoff_elapsed}.
    """

    def __init__(self, events: list[Event], clock: Clock) -> None:
        self.events = events
        self.clock = clock

    def _record(self, name: str, *args: object) -> None:
        self.events.append((f"O.{name}", *args))

    def L_start(self, agent: Supervised) -> None:
        """Record."""
        self._record("L_start")

    def L_stop(self, agent: Supervised) -> None:
        """Record."""
        self._record("L_stop")

    def S_forget(self, agent: Supervised) -> None:
        """Record."""
        self._record("S_forget")

    def T_schedule(self, agent: Supervised, delay: float) -> None:
        """Record, and feed backoff_elapsed after C{delay} on the clock."""
        self._record("T_schedule", delay)
        agent.next_restart = self.clock.seconds() + delay
        agent.timer = self.clock.callLater(delay, agent.machine.backoff_elapsed)

    def T_cancel(self, agent: Supervised) -> None:
        """Record and cancel the timer."""
        self._record("T_cancel")
        if agent.timer is not None and agent.timer.active():
            agent.timer.cancel()
        agent.timer = None

    def E_changed(self, agent: Supervised) -> None:
        """Record the state the agent is in when told."""
        self._record("E_changed", agent.state)

    def E_log(self, agent: Supervised, level: str, message: str) -> None:
        """Record."""
        self._record("E_log", level, message)

    def W_died(self, agent: Supervised, status: AgentStatus) -> None:
        """Record."""
        self._record("W_died", status.pid)


def record(pid: int = 7, started: float = 0.0) -> LaunchRecord:
    return LaunchRecord("detector:D1", "local", "localhost", started, pid=pid)


def dead(pid: int = 7, detail: str = "exited with code 1") -> AgentStatus:
    return AgentStatus("detector:D1", False, pid, exit_code=1, detail=detail)


class AgentMachineTests(SynchronousTestCase):
    """One agent's machine, its outputs recorded."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[Event] = []
        self.agent = new_machine(Supervised("detector:D1", Dummy(self.events, self.clock)))
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def feed(self, input: str, *args: object) -> list[Event]:
        """Feed one input; return what it did (and clear the record)."""
        getattr(self.agent.machine, input)(*args)
        done, self.events[:] = list(self.events), []
        return done

    def test_start_launch(self) -> None:
        """A start launches once; the launch makes it running with its record; a second start does nothing."""
        self.assertEqual(self.feed("start_requested"), [("O.L_start",), ("O.E_changed", "starting")])
        self.assertEqual(self.feed("start_requested"), [("O.E_changed", "starting")])
        self.assertEqual(self.feed("launched", record()), [("O.E_changed", "running")])
        self.assertEqual((self.agent.state, self.agent.record), ("running", record()))
        self.assertTrue(self.agent.status is not None and self.agent.status.running)
        self.assertEqual(self.feed("start_requested"), [("O.E_changed", "running")])

    def test_launch_failed(self) -> None:
        """A launch failure: failed, the reason with its code, an error line for operators."""
        self.feed("start_requested")
        done = self.feed("launch_failed", LaunchError("unreachable", "node9: refused"))
        self.assertEqual(done, [("O.E_log", "error", "detector:D1 could not be started: node9: refused"),
                                ("O.E_changed", "failed")])
        self.assertEqual((self.agent.state, self.agent.reason), ("failed", "unreachable: node9: refused"))

    def test_death_then_backoff_on_the_clock(self) -> None:
        """A restartable death forgets the record and schedules the restart; the clock starts it again."""
        self.feed("start_requested")
        self.feed("launched", record())
        decision = Restart(2.0, 2, ((5.0, 5.0),))
        done = self.feed("died_restartable", dead(), decision)
        self.assertEqual(done, [
            ("O.S_forget",),
            ("O.T_schedule", 2.0),
            ("O.E_log", "warn", "detector:D1 died (exited with code 1): restarting in 2 s"),
            ("O.E_changed", "restarting"),
        ])
        self.assertEqual((self.agent.record, self.agent.step, self.agent.deaths), (None, 2, ((5.0, 5.0),)))
        self.clock.advance(1.9)
        self.assertEqual((self.agent.state, self.events), ("restarting", []))
        self.clock.advance(0.1)
        self.assertEqual(self.events, [("O.L_start",), ("O.E_changed", "starting")])
        self.assertEqual((self.agent.state, self.agent.restarts, self.agent.next_restart), ("starting", 1, None))

    def test_flapping_then_manual_start(self) -> None:
        """Flapping gives up (an error line); a manual start clears the history and launches."""
        self.feed("start_requested")
        self.feed("launched", record())
        done = self.feed("died_flapping", dead(), Flap("5 deaths", ((1.0, 1.0),)))
        self.assertEqual(done, [("O.S_forget",), ("O.E_log", "error", "detector:D1 is flapping: 5 deaths"),
                                ("O.E_changed", "flapping")])
        self.assertRaises(NoTransition, self.agent.machine.backoff_elapsed)  # no timer to fire
        self.assertEqual(self.feed("start_requested"), [("O.L_start",), ("O.E_changed", "starting")])
        self.assertEqual((self.agent.deaths, self.agent.step, self.agent.restarts), ((), 0, 0))

    def test_stop_while_restarting(self) -> None:
        """A stop during the back-off cancels the timer and stops at once, without the launcher."""
        self.feed("start_requested")
        self.feed("launched", record())
        self.feed("died_restartable", dead(), Restart(1.0, 1, ()))
        self.assertEqual(self.feed("stop_requested"), [("O.T_cancel",), ("O.E_changed", "stopped")])
        self.clock.advance(10)
        self.assertEqual(self.events, [])

    def test_stop_goes_through_the_launcher(self) -> None:
        """A running agent is stopped by the launcher; a second stop while stopping does nothing."""
        self.feed("start_requested")
        self.feed("launched", record())
        self.assertEqual(self.feed("stop_requested"), [("O.L_stop",), ("O.E_changed", "stopping")])
        self.assertEqual(self.feed("stop_requested"), [("O.E_changed", "stopping")])
        stopped = AgentStatus("detector:D1", False, 7, exit_code=-15, detail="stopped")
        self.assertEqual(self.feed("stop_done", stopped), [("O.E_changed", "stopped")])
        self.assertEqual((self.agent.record, self.agent.status), (None, stopped))

    def test_stop_failed_is_unknown(self) -> None:
        """A stop the launcher refused leaves the agent unknown (it may still run), with its record."""
        self.feed("start_requested")
        self.feed("launched", record())
        self.feed("stop_requested")
        self.feed("stop_failed", LaunchError("timeout", "no answer"))
        self.assertEqual((self.agent.state, self.agent.reason), ("unknown", "stop failed: timeout: no answer"))
        self.assertEqual(self.agent.record, record())

    def test_early_exit_is_a_death(self) -> None:
        """An exit seen before the launch was answered is passed to the death watch once launched."""
        self.feed("start_requested")
        self.agent.early_exit = dead(pid=7)
        self.assertEqual(self.feed("launched", record(pid=7)), [("O.W_died", 7), ("O.E_changed", "running")])
        self.assertIsNone(self.agent.early_exit)

    def test_adoption(self) -> None:
        """From stopped, a running status adopts; an unknown one is unknown; a gone one stays stopped."""
        self.agent.record = record()
        self.feed("status_running", AgentStatus("detector:D1", True, 7, detail="running"))
        self.assertEqual(self.agent.state, "running")
        other = new_machine(Supervised("pca:p1", Dummy(self.events, self.clock)))
        other.machine.ended(dead(), "gone while the ECA was down (gone)")
        self.assertEqual((other.state, other.reason), ("stopped", "gone while the ECA was down (gone)"))

    def test_refused_input(self) -> None:
        """An input the table has no row for in the current state is refused by Automat; nothing happens."""
        self.assertRaises(NoTransition, self.agent.machine.launched, record())
        self.assertRaises(NoTransition, self.agent.machine.backoff_elapsed)
        self.assertEqual((self.agent.state, self.events), ("stopped", []))


class AgentTableTests(SynchronousTestCase):
    """The shipped table and the behaviours in code match."""

    def test_shipped_table_checks(self) -> None:
        """fsm/agent.yaml passes `ecs fsm check` and uses the agent vocabulary."""
        code, lines = check_files([str(agent_table_path())])
        self.assertEqual((code, lines), (0, [f"OK {agent_table_path()} (8 states, 34 rows)"]))
        table = load_table(agent_table_path())
        self.assertEqual(table.kind, "agent")
        self.assertEqual(set(table.states.values()), set(AGENT_STATES))
        self.assertEqual({i for _, i in table.rows}, set(AGENT_INPUTS))
        self.assertEqual(set(table.rows), set(BEHAVIOURS))

    def test_row_without_behaviour_refused(self) -> None:
        """A table row the code has no behaviour for is refused when the machine is built."""
        text = load_table(agent_table_path()).source
        with open(text, encoding="utf-8") as f:
            extra = f.read() + "  - [flapping, backoff_elapsed, starting]\n"
        table = parse_table(extra, "extra.yaml")
        error = self.assertRaises(ValueError, agent_machine, table)
        self.assertIn("[flapping, backoff_elapsed, starting] has no behaviour", str(error))

    def test_behaviour_without_row_refused(self) -> None:
        """A behaviour in code whose row the table lacks is refused too."""
        with open(agent_table_path(), encoding="utf-8") as f:
            text = f.read().replace("  - [unknown, ended, stopped]\n", "")
        error = self.assertRaises(ValueError, agent_machine, parse_table(text, "fewer.yaml"))
        self.assertIn("('unknown', 'ended')", str(error))

    def test_system_table_refused(self) -> None:
        """A controller's table is not an agent table."""
        text = textwrap.dedent("""
            name: tiny
            initial: Unconfigured
            states: {Unconfigured: Unconfigured, Active: Active}
            transitions: [[Unconfigured, configure, Active], [Active, abort, Unconfigured]]
            """)
        error = self.assertRaises(ValueError, agent_machine, parse_table(text, "tiny.yaml"))
        self.assertIn("not an agent table", str(error))


class PolicyTests(SynchronousTestCase):
    """The pure back-off and flapping decision."""

    policy = BackoffPolicy()

    def test_doubling_up_to_the_maximum(self) -> None:
        """1, 2, 4 ... seconds, never more than the maximum."""
        delays = []
        step, deaths = 0, cast(tuple[Death, ...], ())
        for n in range(8):
            decision = after_death(self.policy, deaths, step, 1000.0 + 100 * n, 20.0, "x")
            assert isinstance(decision, Restart)
            delays.append(decision.delay)
            step, deaths = decision.step, decision.deaths
        self.assertEqual(delays, [1, 2, 4, 8, 16, 32, 60, 60])

    def test_long_run_resets(self) -> None:
        """A run of at least reset_after seconds starts the doubling again."""
        decision = after_death(self.policy, (), 5, 1000.0, 60.0, "x")
        self.assertEqual(decision, Restart(1.0, 1, ((1000.0, 60.0),)))

    def test_flapping(self) -> None:
        """The fifth quick death within the window flaps, naming the count and the last detail."""
        deaths = tuple((1000.0 + n, 1.0) for n in range(4))
        decision = after_death(self.policy, deaths, 4, 1005.0, 1.0, "exited with code 1")
        assert isinstance(decision, Flap)
        self.assertIn("5 deaths within 60 s, each after less than 10 s (last: exited with code 1)", decision.reason)

    def test_old_and_slow_deaths_do_not_count(self) -> None:
        """Deaths outside the window are forgotten; slow ones never count towards flapping."""
        deaths = ((100.0, 1.0), (101.0, 1.0), (990.0, 30.0), (991.0, 30.0))
        decision = after_death(self.policy, deaths, 1, 1000.0, 1.0, "x")
        self.assertEqual(decision, Restart(2.0, 2, ((990.0, 30.0), (991.0, 30.0), (1000.0, 1.0))))
