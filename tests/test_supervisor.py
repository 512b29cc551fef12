"""
Tests for L{agents.eca.supervisor.supervisor}: a L{Clock}, a fake launcher that
records its calls, and an in-memory store of placements and launch records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from agents.eca.supervisor.supervisor import Supervisor, spec_for
from ecs.control import ControlError
from ecs.launch import AgentSpec, AgentStatus, ILauncher, LaunchError, LaunchRecord, Placement
from ecs.store import StoreError
from ecs.store.placements import LaunchRow, PlacementRow


@implementer(ILauncher)
class FakeLauncher:
    """Records calls; processes are pids in C{alive}; C{kill} ends one."""

    name = "local"

    def __init__(self, clock: Clock, hook: bool = True) -> None:
        self.clock = clock
        self.calls: list[tuple[str, str]] = []
        self.alive: set[int] = set()
        self.next_pid = 100
        self.hold = False
        self.held: list[defer.Deferred[None]] = []
        self.fail: LaunchError | None = None
        self.callbacks: list[Callable[[str, AgentStatus], object]] = []
        if hook:
            self.on_exit = self.callbacks.append

    def start(self, spec: AgentSpec, placement: Placement) -> defer.Deferred[LaunchRecord]:
        self.calls.append(("start", spec.name))
        if self.fail is not None:
            return defer.fail(self.fail)
        self.next_pid += 1
        record = LaunchRecord(spec.name, placement.launcher, placement.host, self.clock.seconds(), pid=self.next_pid)
        self.alive.add(record.pid or 0)
        if self.hold:
            d: defer.Deferred[None] = defer.Deferred()
            self.held.append(d)
            return d.addCallback(lambda _: record)
        return defer.succeed(record)

    def stop(self, record: LaunchRecord, grace: float) -> defer.Deferred[AgentStatus]:
        self.calls.append(("stop", record.agent))
        self.alive.discard(record.pid or 0)
        return defer.succeed(AgentStatus(record.agent, False, record.pid, exit_code=-15, detail="stopped"))

    def status(self, record: LaunchRecord) -> defer.Deferred[AgentStatus]:
        self.calls.append(("status", record.agent))
        running = record.pid in self.alive
        return defer.succeed(AgentStatus(record.agent, running, record.pid, detail="running" if running else "gone"))

    def tail(self, record: LaunchRecord, lines: int) -> defer.Deferred[str]:
        return defer.succeed(f"output of {record.agent}\n")

    def kill(self, agent: str, pid: int) -> None:
        """The process dies (exit code 1); the hook is told."""
        self.alive.discard(pid)
        for callback in self.callbacks:
            callback(agent, AgentStatus(agent, False, pid, exit_code=1, detail="exited with code 1"))

    def starts(self) -> int:
        return sum(1 for call, _ in self.calls if call == "start")


class FakeStore:
    """Placements and launch records in dicts (the supervisor's part of the store)."""

    def __init__(self) -> None:
        self.placements_: dict[str, PlacementRow] = {}
        self.launches_: dict[str, LaunchRow] = {}

    def placements(self) -> defer.Deferred[list[PlacementRow]]:
        return defer.succeed([self.placements_[k] for k in sorted(self.placements_)])

    def set_placement(self, agent: str, host: str, launcher: str, options: Any = None, autostart: bool = True,
                      author: str = "ECA") -> defer.Deferred[PlacementRow]:
        row = PlacementRow(agent, agent.split(":")[0], host, launcher, dict(options or {}), autostart, 0.0, author)
        self.placements_[agent] = row
        return defer.succeed(row)

    def delete_placement(self, agent: str) -> defer.Deferred[None]:
        del self.placements_[agent]
        return defer.succeed(None)

    def launches(self) -> defer.Deferred[list[LaunchRow]]:
        return defer.succeed(list(self.launches_.values()))

    def record_launch(self, agent: str, launcher: str, host: str, record_json: str) -> defer.Deferred[LaunchRow]:
        self.launches_[agent] = LaunchRow(agent, launcher, host, record_json, 0.0)
        return defer.succeed(self.launches_[agent])

    def delete_launch(self, agent: str) -> defer.Deferred[bool]:
        return defer.succeed(self.launches_.pop(agent, None) is not None)


class SupervisorTestCase(SynchronousTestCase):
    """A supervisor over the fakes, with agents detector:D1 and pca:p1 placed."""

    hook = True

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.launcher = FakeLauncher(self.clock, hook=self.hook)
        self.store = FakeStore()
        self.store.set_placement("detector:D1", "localhost", "local", {"agent_args": ["--type", "STS"]})
        self.store.set_placement("pca:p1", "localhost", "local", {}, autostart=False)
        self.logs: list[tuple[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.supervisor = Supervisor(
            self.store, {"local": self.launcher}, self.clock,
            on_change=self.events.append, log_event=lambda level, message: self.logs.append((level, message)),
            poll_interval=3.0,
        )
        self.addCleanup(self._clean)

    def _clean(self) -> None:
        self.successResultOf(defer.Deferred.fromCoroutine(self.supervisor.stop_all()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def resume(self, autostart: bool = False) -> None:
        self.successResultOf(defer.Deferred.fromCoroutine(self.supervisor.resume(autostart)))

    def run_(self, coroutine: Any) -> Any:
        return self.successResultOf(defer.Deferred.fromCoroutine(coroutine))

    def state(self, name: str = "detector:D1") -> str:
        return str(self.supervisor.agent(name)["supervision"]["state"])

    def pid(self, name: str = "detector:D1") -> int:
        pid = self.supervisor.agent(name)["status"]["pid"]
        assert isinstance(pid, int)
        return pid


class SupervisorTests(SupervisorTestCase):
    """Starting, restarting, flapping, stopping."""

    def test_fake_is_a_launcher(self) -> None:
        """The fake provides ILauncher (so the tests talk to the real interface)."""
        self.assertTrue(verifyObject(ILauncher, self.launcher))

    def test_start_records_launch(self) -> None:
        """A start runs the placement's command, stores the record and describes the agent running."""
        self.resume()
        self.assertEqual(self.state(), "stopped")
        agent = self.run_(self.supervisor.start("detector:D1"))
        self.assertEqual(agent["supervision"]["state"], "running")
        self.assertEqual((agent["kind"], agent["id"], agent["host"], agent["launcher"]),
                         ("detector", "D1", "localhost", "local"))
        self.assertTrue(agent["status"]["running"])
        record = json.loads(self.store.launches_["detector:D1"].record)
        self.assertEqual(record["pid"], agent["status"]["pid"])
        self.assertEqual([e["supervision"]["state"] for e in self.events], ["starting", "running"])

    def test_unstored_record_stored_at_next_poll(self) -> None:
        """A launch record the database refused is stored at the next poll (so a restarted ECA adopts it)."""
        self.resume()
        real = self.store.record_launch
        failures = [StoreError("unavailable", "database is locked")]

        def flaky(*args: Any) -> defer.Deferred[LaunchRow]:
            return defer.fail(failures.pop()) if failures else real(*args)

        self.patch(self.store, "record_launch", flaky)
        self.run_(self.supervisor.start("detector:D1"))
        self.assertEqual(self.state(), "running")
        self.assertNotIn("detector:D1", self.store.launches_)
        self.clock.advance(3.0)
        record = json.loads(self.store.launches_["detector:D1"].record)
        self.assertEqual(record["pid"], self.pid())
        self.assertIsNone(self.supervisor.entries["detector:D1"].unstored)

    def test_remote_agents_polled_less_often(self) -> None:
        """Agents of the ssh and slurm launchers are polled every remote_poll_interval, local ones every
        poll_interval."""
        self.supervisor.launchers["ssh"] = self.launcher
        self.store.set_placement("detector:R1", "node1", "ssh", {"agent_args": ["--type", "STS"]})
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        self.run_(self.supervisor.start("detector:R1"))
        polls = lambda name: self.launcher.calls.count(("status", name))  # noqa: E731
        for _ in range(10):
            self.clock.advance(3.0)
        self.assertEqual((polls("detector:D1"), polls("detector:R1")), (10, 2))
        dead = self.pid("detector:R1")
        self.launcher.alive.discard(dead)  # a remote death is still found, within one remote interval
        for _ in range(5):
            self.clock.advance(3.0)
        self.assertEqual(self.supervisor.agent("detector:R1")["supervision"]["restarts"], 1)
        self.assertNotEqual(self.pid("detector:R1"), dead)

    def test_restart_with_backoff(self) -> None:
        """A death restarts the agent after 1 s, then 2 s, then 4 s."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        for delay in (1, 2, 4):
            self.launcher.kill("detector:D1", self.pid())
            agent = self.supervisor.agent("detector:D1")
            self.assertEqual(agent["supervision"]["state"], "restarting")
            self.assertEqual(agent["supervision"]["next_restart"], self.clock.seconds() + delay)
            self.assertNotIn("detector:D1", self.store.launches_)
            starts = self.launcher.starts()
            self.clock.advance(delay - 0.5)
            self.assertEqual(self.launcher.starts(), starts)
            self.clock.advance(0.5)
            self.assertEqual(self.launcher.starts(), starts + 1)
            self.assertEqual(self.state(), "running")
        self.assertEqual(self.supervisor.agent("detector:D1")["supervision"]["restarts"], 3)
        self.assertIn(("warn", "detector:D1 died (exited with code 1): restarting in 1 s"), self.logs)

    def test_backoff_resets_after_long_run(self) -> None:
        """After a run longer than reset_after, the next restart waits the first delay again."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        for delay in (1, 2):
            self.launcher.kill("detector:D1", self.pid())
            self.clock.advance(delay)
        self.clock.advance(100)
        self.launcher.kill("detector:D1", self.pid())
        self.assertEqual(self.supervisor.agent("detector:D1")["supervision"]["next_restart"], self.clock.seconds() + 1)

    def test_flapping(self) -> None:
        """Five quick deaths within a minute: flapping, an error log line, no more starts."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        for delay in (1, 2, 4, 8):
            self.launcher.kill("detector:D1", self.pid())
            self.clock.advance(delay)
        self.assertEqual(self.launcher.starts(), 5)
        self.launcher.kill("detector:D1", self.pid())
        agent = self.supervisor.agent("detector:D1")
        self.assertEqual(agent["supervision"]["state"], "flapping")
        self.assertIn("5 deaths", agent["supervision"]["reason"])
        self.assertIsNone(agent["supervision"]["next_restart"])
        self.assertEqual([m for level, m in self.logs if level == "error"],
                         [f"detector:D1 is flapping: {agent['supervision']['reason']}"])
        self.assertEqual(self.events[-1]["supervision"]["state"], "flapping")
        self.clock.advance(600)
        self.assertEqual(self.launcher.starts(), 5)

        agent = self.run_(self.supervisor.start("detector:D1"))
        self.assertEqual(self.launcher.starts(), 6)
        self.assertEqual((agent["supervision"]["state"], agent["supervision"]["restarts"]), ("running", 0))
        self.launcher.kill("detector:D1", self.pid())
        self.assertEqual(self.state(), "restarting")  # the count started again

    def test_slow_deaths_do_not_flap(self) -> None:
        """Deaths after runs longer than flap_min_run are restarted, never flapping."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        for _ in range(8):
            self.clock.advance(11)
            self.launcher.kill("detector:D1", self.pid())
            self.clock.advance(60)
        self.assertEqual(self.state(), "running")
        self.assertEqual(self.launcher.starts(), 9)

    def test_stopped_agent_is_not_restarted(self) -> None:
        """A stop by hand ends the agent for good: stopped, no record, no restart."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        agent = self.run_(self.supervisor.stop("detector:D1"))
        self.assertEqual(agent["supervision"]["state"], "stopped")
        self.assertFalse(agent["status"]["running"])
        self.assertEqual(self.store.launches_, {})
        self.clock.advance(120)
        self.assertEqual(self.launcher.starts(), 1)

    def test_stop_while_restarting(self) -> None:
        """A stop during the back-off cancels the restart."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        self.launcher.kill("detector:D1", self.pid())
        self.run_(self.supervisor.stop("detector:D1"))
        self.assertEqual(self.state(), "stopped")
        self.clock.advance(120)
        self.assertEqual(self.launcher.starts(), 1)

    def test_launcher_error(self) -> None:
        """A launcher failure: state failed with the reason, the error code for the API, no record."""
        self.resume()
        self.launcher.fail = LaunchError("unreachable", "node9: connection refused")
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(self.supervisor.start("detector:D1")), ControlError)
        self.assertEqual((failure.value.code, failure.value.status), ("unreachable", 502))
        agent = self.supervisor.agent("detector:D1")
        self.assertEqual(agent["supervision"]["state"], "failed")
        self.assertIn("connection refused", agent["supervision"]["reason"])
        self.assertEqual(self.store.launches_, {})
        self.assertTrue(any(level == "error" for level, _ in self.logs))
        self.launcher.fail = None
        self.assertEqual(self.run_(self.supervisor.start("detector:D1"))["supervision"]["state"], "running")

    def test_unconfigured_launcher(self) -> None:
        """Placing on a launcher the ECA has not configured is refused (400)."""
        self.resume()
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(
            self.supervisor.place("detector:D2", "node1", "slurm", {}, True, "alice")), ControlError)
        self.assertEqual(failure.value.code, "bad_request")
        self.assertIn("slurm", failure.value.reason)

    def test_place_checks_agent_args(self) -> None:
        """A placement whose agent_args cannot be run is refused when placed (400, options)."""
        self.resume()
        for name, options in (("simhost:s", {}), ("detector:D2", {"agent_args": "--type STS"})):
            failure = self.failureResultOf(defer.Deferred.fromCoroutine(
                self.supervisor.place(name, "localhost", "local", options, True, "alice")), ControlError)
            self.assertEqual((failure.value.code, failure.value.details), ("bad_request", {"field": "options"}))
        self.assertEqual(sorted(self.store.placements_), ["detector:D1", "pca:p1"])
        agent = self.run_(self.supervisor.place("detector:D2", "localhost", "local", {}, False, "alice"))
        self.assertEqual((agent["agent"], agent["autostart"], agent["supervision"]["state"]),
                         ("detector:D2", False, "stopped"))

    def test_concurrent_starts(self) -> None:
        """Two starts while the first is in flight start the agent once."""
        self.resume()
        self.launcher.hold = True
        first = defer.Deferred.fromCoroutine(self.supervisor.start("detector:D1"))
        second = defer.Deferred.fromCoroutine(self.supervisor.start("detector:D1"))
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual(self.state(), "starting")
        self.launcher.held.pop().callback(None)
        self.assertEqual(self.successResultOf(first)["supervision"]["state"], "running")
        self.assertEqual(self.successResultOf(second)["supervision"]["state"], "running")
        self.assertEqual(self.launcher.starts(), 1)

    def test_exit_during_start(self) -> None:
        """An agent that ends before its start answered is handled as a death once it has."""
        self.resume()
        self.launcher.hold = True
        d = defer.Deferred.fromCoroutine(self.supervisor.start("detector:D1"))
        self.launcher.kill("detector:D1", self.launcher.next_pid)
        self.launcher.held.pop().callback(None)
        self.successResultOf(d)
        self.assertEqual(self.state(), "restarting")

    def test_death_while_recording(self) -> None:
        """An agent that dies while its launch record is being stored is restarted, not shown running."""
        self.resume()
        pending: defer.Deferred[None] = defer.Deferred()
        self.patch(self.store, "record_launch", lambda *args: pending)
        d = defer.Deferred.fromCoroutine(self.supervisor.start("detector:D1"))
        self.launcher.kill("detector:D1", self.launcher.next_pid)
        pending.callback(None)
        self.successResultOf(d)
        self.assertEqual(self.state(), "restarting")

    def test_unplace(self) -> None:
        """A placement is deleted only while the agent is not running."""
        self.resume()
        self.run_(self.supervisor.start("pca:p1"))
        failure = self.failureResultOf(defer.Deferred.fromCoroutine(self.supervisor.unplace("pca:p1")), ControlError)
        self.assertEqual(failure.value.code, "conflict")
        self.run_(self.supervisor.stop("pca:p1"))
        self.run_(self.supervisor.unplace("pca:p1"))
        self.assertNotIn("pca:p1", self.store.placements_)
        self.assertEqual(self.failureResultOf(defer.Deferred.fromCoroutine(self.supervisor.start("pca:p1")),
                                              ControlError).value.code, "not_found")

    def test_output(self) -> None:
        """The output tail comes from the launcher, also after the agent ended."""
        self.resume()
        self.assertEqual(self.failureResultOf(defer.Deferred.fromCoroutine(
            self.supervisor.output("pca:p1", 10)), ControlError).value.code, "conflict")
        self.run_(self.supervisor.start("pca:p1"))
        self.run_(self.supervisor.stop("pca:p1"))
        self.assertEqual(self.run_(self.supervisor.output("pca:p1", 10)),
                         {"agent": "pca:p1", "text": "output of pca:p1\n"})


class StartUpTests(SupervisorTestCase):
    """Adoption of running agents, forgetting gone ones, autostart, stop of everything."""

    def record(self, name: str, pid: int, alive: bool) -> None:
        record = LaunchRecord(name, "local", "localhost", self.clock.seconds() - 50, pid=pid)
        self.store.record_launch(name, "local", "localhost", record.to_json())
        if alive:
            self.launcher.alive.add(pid)

    def test_adopt_running(self) -> None:
        """A stored record whose process runs is adopted: running, same pid, no start."""
        self.record("detector:D1", 4242, alive=True)
        self.resume(autostart=True)
        self.assertEqual(self.launcher.starts(), 0)
        self.assertEqual((self.state(), self.pid()), ("running", 4242))
        self.assertIn("detector:D1", self.store.launches_)
        # and it is supervised: its death is found by polling (no hook for adopted ones)
        self.launcher.alive.discard(4242)
        self.clock.advance(3)
        self.assertEqual(self.state(), "restarting")

    def test_forget_gone(self) -> None:
        """A stored record whose process is gone is forgotten; autostart then starts the agent anew."""
        self.record("detector:D1", 4242, alive=False)
        self.record("pca:p1", 4343, alive=False)
        self.resume(autostart=True)
        self.assertNotIn("pca:p1", self.store.launches_)
        self.assertEqual(self.state("pca:p1"), "stopped")  # autostart off for it
        self.assertEqual(self.launcher.calls.count(("start", "detector:D1")), 1)
        self.assertEqual(self.state(), "running")
        self.assertNotEqual(self.pid(), 4242)

    def test_no_autostart(self) -> None:
        """Without autostart nothing is started."""
        self.resume(autostart=False)
        self.assertEqual(self.launcher.starts(), 0)
        self.assertEqual([a["supervision"]["state"] for a in self.supervisor.agents()], ["stopped", "stopped"])

    def test_stop_all(self) -> None:
        """stop_all stops every started and adopted agent and forgets their records; no timers remain."""
        self.record("pca:p1", 4343, alive=True)
        self.resume(autostart=True)
        self.run_(self.supervisor.stop_all())
        self.assertEqual(sorted(a for c, a in self.launcher.calls if c == "stop"), ["detector:D1", "pca:p1"])
        self.assertEqual(self.store.launches_, {})
        self.assertEqual(self.launcher.alive, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_detach_keeps_agents(self) -> None:
        """detach (--keep-agents) leaves agents and records alone."""
        self.resume(autostart=True)
        self.supervisor.detach()
        self.assertEqual(len(self.launcher.alive), 1)
        self.assertIn("detector:D1", self.store.launches_)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PollingTests(SupervisorTestCase):
    """A launcher without an exit hook: deaths are found by polling."""

    hook = False

    def test_poll_finds_death(self) -> None:
        """A silent death is seen at the next poll and restarted after its back-off."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        self.launcher.alive.discard(self.pid())
        self.clock.advance(3)
        self.assertEqual(self.state(), "restarting")
        self.clock.advance(1)
        self.assertEqual(self.state(), "running")

    def test_one_poll_in_flight(self) -> None:
        """A slow status answer is not asked again until it comes."""
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        pending: defer.Deferred[AgentStatus] = defer.Deferred()
        def slow_status(record: LaunchRecord) -> defer.Deferred[AgentStatus]:
            self.launcher.calls.append(("status", record.agent))
            return pending

        self.patch(self.launcher, "status", slow_status)
        self.clock.advance(3)
        self.clock.advance(3)
        self.assertEqual(self.launcher.calls.count(("status", "detector:D1")), 1)
        pending.errback(LaunchError("timeout", "no answer in 10 s"))
        self.assertEqual(self.state(), "unknown")
        self.assertIn("timeout", self.supervisor.agent("detector:D1")["supervision"]["reason"])


class SpecTests(SynchronousTestCase):
    """What a placement runs."""

    def test_specs(self) -> None:
        """Each kind runs its plugin with --id; agent_args are appended; a sim host needs --ids."""
        sts = {"agent_args": ["--type", "STS"]}
        self.assertEqual(spec_for(Placement("detector:D1", "h", "local", sts)).plugin_args,
                         ("ecs-detector", "--id", "D1", "--type", "STS"))
        self.assertEqual(spec_for(Placement("global:all", "h", "local")).plugin_args, ("ecs-global", "--id", "all"))
        self.assertEqual(spec_for(Placement("simhost:s", "h", "local", {"agent_args": ["--ids", "1-5"]})).plugin_args,
                         ("ecs-simhost", "--ids", "1-5"))
        for options in ({}, {"agent_args": "--ids 1"}, {"agent_args": ["--ids", "a\nb"]}):
            self.assertRaises(LaunchError, spec_for, Placement("simhost:s", "h", "local", options))


class PartitionNamedTests(SupervisorTestCase):
    """A flapping agent's line names the partition it serves (issue 11, item 10)."""

    def test_flapping_names_partition(self) -> None:
        """The flapping line of a detector names its partition; a PCA's names its own by default."""
        self.supervisor.partition_of = lambda name: {"detector:D1": "p1"}.get(name)
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        for delay in (1, 2, 4, 8):
            self.launcher.kill("detector:D1", self.pid())
            self.clock.advance(delay)
        self.launcher.kill("detector:D1", self.pid())
        errors = [m for level, m in self.logs if level == "error"]
        self.assertEqual(len(errors), 1)
        self.assertIn("detector:D1 is flapping", errors[0])
        self.assertTrue(errors[0].endswith("(partition p1)"), errors[0])
        warnings = [m for level, m in self.logs if level == "warn"]
        self.assertTrue(warnings and all(m.endswith("(partition p1)") for m in warnings), warnings)
        default = Supervisor(self.store, {"local": self.launcher}, self.clock)
        self.assertEqual(default.partition_of("pca:p1"), "p1")
        self.assertIsNone(default.partition_of("detector:D1"))


class _Book:
    """A log book that keeps its lines (L{agents.eca.interfaces.ILogBook}'s C{log})."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def log(self, level: str, source: str, message: str, partition: str | None) -> None:
        self.lines.append((level, message))


class DetectorAgentTests(SupervisorTestCase):
    """A created detector's agent is placed with its type; a deleted one's is stopped and unplaced."""

    def actions(self) -> Any:
        from agents.eca.agents import AgentActions

        self.book = _Book()
        return AgentActions(self.supervisor, audit=None, logbook=self.book)  # type: ignore[arg-type]

    def test_created_placed_with_type(self) -> None:
        """The new detector's agent runs ecs-detector --id D2 --type TOF, started when agents autostart."""
        from ecs.control import User

        actions = self.actions()
        self.resume(autostart=True)
        self.run_(actions.detector_created(User("expert", ("expert",)), "D2", "TOF"))
        self.assertEqual(self.store.placements_["detector:D2"].options, {"agent_args": ["--type", "TOF"]})
        self.assertEqual(self.state("detector:D2"), "running")
        spec = spec_for(Placement("detector:D2", "localhost", "local", self.store.placements_["detector:D2"].options))
        self.assertEqual(spec.plugin_args, ("ecs-detector", "--id", "D2", "--type", "TOF"))

    def test_deleted_stopped_and_unplaced(self) -> None:
        """Stopping before the deletion, unplacing after: no agent runs, no supervision is left."""
        actions = self.actions()
        self.resume()
        self.run_(self.supervisor.start("detector:D1"))
        pid = self.pid()
        self.run_(actions.stop_detector_agent("D1"))
        self.assertNotIn(pid, self.launcher.alive)
        del self.store.placements_["detector:D1"]  # deleted with the detector, in its transaction

        def gone(agent: str) -> defer.Deferred[None]:
            return defer.fail(StoreError("not_found", f"no placement for {agent}"))  # as the real store

        self.patch(self.store, "delete_placement", gone)
        self.run_(actions.detector_deleted("D1"))
        self.assertNotIn("detector:D1", self.supervisor.entries)
        self.assertEqual(self.book.lines, [])
        self.clock.advance(120)
        self.assertEqual(self.launcher.starts(), 1)  # never started again
