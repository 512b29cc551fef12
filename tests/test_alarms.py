# -*- test-case-name: tests.test_alarms -*-
"""
Tests for L{agents.eca.alarms.Alarms} alone, on a C{Clock} with a real
store on the inline runner, the real L{EventLog}, L{LogBook}, L{Audit} and
L{EcaMetrics}: raise, de-duplication, clear, acknowledge, shelve and its
expiry, reload after a restart, log lines and their levels, audit rows,
metrics; and the supervisor's agent descriptions turned into alarms.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.alarms import Alarms, agent_conditions, check_shelve
from agents.eca.audit import Audit
from agents.eca.events import EventLog
from agents.eca.logbook import LogBook
from agents.eca.metrics import EcaMetrics
from agents.eca.runs import RunBook
from agents.eca.supervisor.supervisor import Supervisor
from ecs.control import ControlError, User
from ecs.store import StoreError
from tests.support.eca_parts import inline_store
from tests.test_supervisor import FakeLauncher, FakeStore

T0 = 1_800_000_000.0
VIEWER = User("vera", ("viewer",))
OPERATOR = User("olga", ("operator",))
EXPERT = User("erik", ("expert",))
ACTION = "reset STS, then Configure"


class AlarmsTestCase(SynchronousTestCase):
    """One L{Alarms} with its real neighbours."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = inline_store(self, self.clock)
        self.build()

    def build(self) -> None:
        """(Re)build the collaborator and its neighbours on the same store (a restarted ECA)."""
        self.events = EventLog()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.events.subscribe(lambda n, t, d: self.seen.append((t, d)))
        self.logbook = LogBook(self.store, self.events, self.clock)
        self.metrics = EcaMetrics()
        self.alarms = Alarms(self.store, self.events, self.logbook, Audit(self.store), self.clock, self.metrics)
        self.successResultOf(Deferred.fromCoroutine(self.alarms.load()))

    def alarm_events(self) -> list[tuple[str, str, str]]:
        """(change, kind, source) of the alarm events so far."""
        return [(d["change"], d["kind"], d["source"]) for t, d in self.seen if t == "alarm"]

    def logs(self) -> list[tuple[str, str]]:
        """(level, message) of the log lines so far."""
        return [(d["level"], d["message"]) for t, d in self.seen if t == "log"]

    def listed(self, user: User = VIEWER, include_all: bool = False, partition: str | None = None) -> list[Any]:
        """The alarms as the interfaces list them."""
        return self.successResultOf(self.alarms.alarms(user, include_all, partition))

    def sts_error(self, active: bool = True, text: str = "STS in Error: HV trip") -> None:
        """STS of demo in Error (or not)."""
        self.alarms.condition("system_error", "STS", "demo", active, text, ACTION)

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the metrics' registry."""
        return self.metrics.registry.get_sample_value(name, labels)

    def audit(self) -> list[tuple[str, str, dict[str, Any], str]]:
        """(user, action, arguments, outcome) of the audit rows."""
        rows = self.successResultOf(self.store.audit_entries())
        return [(r.user, r.action, r.arguments, r.outcome) for r in rows]


class RaiseClearTests(AlarmsTestCase):
    """Conditions become alarms, once each."""

    def test_raise(self) -> None:
        """A condition that holds is an alarm with the contract's fields, an event and a warn log line."""
        self.sts_error()
        [alarm] = self.listed()
        self.assertEqual(
            {k: alarm[k] for k in ("kind", "source", "partition", "severity", "text", "action", "raised_at")},
            {"kind": "system_error", "source": "STS", "partition": "demo", "severity": "error",
             "text": "STS in Error: HV trip", "action": ACTION, "raised_at": T0},
        )
        for field in ("cleared_at", "acknowledged_by", "acknowledged_at", "shelved_until", "shelved_by",
                      "shelve_reason"):
            self.assertIsNone(alarm[field])
        self.assertEqual(self.alarm_events(), [("raised", "system_error", "STS")])
        [(level, message)] = self.logs()
        self.assertEqual(level, "warn")
        self.assertIn("STS", message)
        self.assertIn("partition demo", message)

    def test_dedupe(self) -> None:
        """The same condition again changes nothing; a new text updates the one alarm."""
        self.sts_error()
        self.sts_error()
        self.assertEqual(len(self.alarm_events()), 1)
        self.sts_error(text="STS in Error: another trip")
        [alarm] = self.listed()
        self.assertEqual(alarm["text"], "STS in Error: another trip")
        self.assertEqual(self.alarm_events(), [("raised", "system_error", "STS")] * 2)
        self.assertEqual(len(self.successResultOf(self.store.alarms(active_only=False))), 1)
        self.assertEqual(self.metric("ecs_alarms_raised_total", kind="system_error"), 1.0)

    def test_clear(self) -> None:
        """The condition gone: cleared (event, log line), still listed until acknowledged."""
        self.sts_error()
        self.clock.advance(3)
        self.sts_error(active=False)
        self.sts_error(active=False)
        self.assertEqual(self.alarm_events(), [("raised", "system_error", "STS"), ("cleared", "system_error", "STS")])
        [alarm] = self.listed()
        self.assertEqual(alarm["cleared_at"], T0 + 3)
        level, message = self.logs()[-1]
        self.assertEqual(level, "warn")
        self.assertIn("cleared", message)
        self.assertIn("partition demo", message)

    def test_nothing_to_clear(self) -> None:
        """A condition that does not hold and never did costs nothing."""
        self.sts_error(active=False)
        self.assertEqual(self.seen, [])

    def test_levels(self) -> None:
        """Unreachable system: warn; lost PCA, failed run, flapping agent, DCS alarm: error (issue 13)."""
        self.alarms.condition("system_unreachable", "MVD", "demo", True, "MVD does not answer", "check it")
        self.alarms.condition("pca_lost", "pca:demo", "demo", True, "the PCA of demo does not answer", "start it")
        self.alarms.event("run_failed", "run", "demo", "run 1 failed", "acknowledge")
        self.alarms.condition("agent_flapping", "agent:detector:STS", None, True, "flapping", "start it")
        self.alarms.condition("dcs_alarm", "TOF", "demo", True, "DCS alarm for TOF", "reset TOF")
        self.assertEqual([level for level, _ in self.logs()], ["warn", "error", "error", "error", "error"])
        self.assertEqual(self.metric("ecs_alarms_active", severity="warning"), 1.0)
        self.assertEqual(self.metric("ecs_alarms_active", severity="critical"), 1.0)
        self.assertEqual(self.metric("ecs_alarms_active", severity="error"), 3.0)

    def test_event_raised_cleared(self) -> None:
        """A failed run is raised cleared: listed until acknowledged, then history."""
        self.alarms.event("run_failed", "run", "demo", "run 3 of demo failed", "acknowledge")
        [alarm] = self.listed()
        self.assertEqual(alarm["cleared_at"], T0)
        self.successResultOf(self.alarms.acknowledge(OPERATOR, alarm["id"]))
        self.assertEqual(self.listed(), [])
        self.assertEqual(len(self.listed(include_all=True)), 1)
        self.assertEqual(self.metric("ecs_alarms_active", severity="error"), 0.0)
        self.assertEqual(self.metric("ecs_alarms_raised_total", kind="run_failed"), 1.0)

    def test_partition_gone(self) -> None:
        """A deleted partition's open conditions are cleared, others stay."""
        self.sts_error()
        self.alarms.condition("system_error", "STS2", "p2", True, "STS2 in Error", "reset STS2, then Configure")
        self.alarms.partition_gone("demo")
        self.assertEqual(
            {(a["source"], a["cleared_at"] is None) for a in self.listed()}, {("STS", False), ("STS2", True)}
        )

    def test_store_failure_retried(self) -> None:
        """A raise the store refused is logged, and the next report of the condition tries again."""
        real = self.store.raise_alarm
        self.patch(self.store, "raise_alarm", lambda *a: fail(StoreError("unavailable", "disk full")))
        self.sts_error()
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)
        self.patch(self.store, "raise_alarm", real)
        self.sts_error()
        self.assertEqual([a["source"] for a in self.listed()], ["STS"])

    def test_partition_filter(self) -> None:
        """?partition lists that partition's alarms."""
        self.sts_error()
        self.alarms.condition("agent_failed", "agent:pca:p2", None, True, "failed", "start it")
        self.assertEqual([a["source"] for a in self.listed(partition="demo")], ["STS"])
        self.assertEqual(len(self.listed()), 2)


class OperatorTests(AlarmsTestCase):
    """Acknowledging and shelving: roles, audit rows, events."""

    def test_ack(self) -> None:
        """An operator acknowledges (audited, an event); a viewer may not (audited as refused)."""
        self.sts_error()
        [alarm] = self.listed()
        refused = self.failureResultOf(self.alarms.acknowledge(VIEWER, alarm["id"]), ControlError).value
        self.assertEqual(refused.code, "forbidden")
        self.clock.advance(1)
        acked = self.successResultOf(self.alarms.acknowledge(OPERATOR, alarm["id"]))
        self.assertEqual((acked["acknowledged_by"], acked["acknowledged_at"]), ("olga", T0 + 1))
        self.assertEqual(self.alarm_events()[-1], ("acknowledged", "system_error", "STS"))
        # Acknowledged but not cleared: still active.
        self.assertEqual(len(self.listed()), 1)
        audit = self.audit()
        self.assertIn(("olga", "acknowledge_alarm", {"alarm": alarm["id"]}, "ok"), audit)
        self.assertTrue(any(u == "vera" and a == "acknowledge_alarm" and o.startswith("forbidden")
                            for u, a, _, o in audit))
        # Cleared now: history.
        self.sts_error(active=False)
        self.assertEqual(self.listed(), [])

    def test_ack_unknown(self) -> None:
        """An unknown alarm is not_found."""
        error = self.failureResultOf(self.alarms.acknowledge(OPERATOR, 42), ControlError).value
        self.assertEqual(error.code, "not_found")

    def test_shelve_and_expiry(self) -> None:
        """An expert shelves: hidden from the default list until the time passes, always in ?all."""
        self.sts_error()
        [alarm] = self.listed()
        refused = self.failureResultOf(self.alarms.shelve(OPERATOR, alarm["id"], T0 + 60, "noise"), ControlError)
        self.assertEqual(refused.value.code, "forbidden")
        shelved = self.successResultOf(self.alarms.shelve(EXPERT, alarm["id"], T0 + 60, "known HV noise"))
        self.assertEqual((shelved["shelved_until"], shelved["shelved_by"], shelved["shelve_reason"]),
                         (T0 + 60, "erik", "known HV noise"))
        self.assertEqual(self.alarm_events()[-1], ("shelved", "system_error", "STS"))
        self.assertEqual(self.listed(), [])
        self.assertEqual([a["id"] for a in self.listed(include_all=True)], [alarm["id"]])
        self.assertIn(("erik", "shelve_alarm", {"alarm": alarm["id"], "until": T0 + 60, "reason": "known HV noise"},
                       "ok"), self.audit())
        # Still active for the gauge while shelved.
        self.assertEqual(self.metric("ecs_alarms_active", severity="error"), 1.0)
        self.clock.advance(60)
        self.assertEqual([a["id"] for a in self.listed()], [alarm["id"]])

    def test_shelve_checks(self) -> None:
        """until in the future and at most 30 days away, a reason of 1 to 500 characters: each named."""
        self.sts_error()
        [alarm] = self.listed()
        for until, reason, field in [(T0, "r", "until"), (T0 + 31 * 86400, "r", "until"), (T0 + 1, "", "reason"),
                                     (T0 + 1, "x" * 501, "reason")]:
            error = self.failureResultOf(self.alarms.shelve(EXPERT, alarm["id"], until, reason), ControlError).value
            self.assertEqual((error.code, error.details.get("field")), ("bad_request", field))
        check_shelve(T0 + 30 * 86400, "x" * 500, T0)


class RestartTests(AlarmsTestCase):
    """Active alarms survive a restart; a condition seen gone is cleared then."""

    def test_reload(self) -> None:
        """A rebuilt collaborator knows the open alarms: a repeat is no new raise, the clear works."""
        self.sts_error()
        self.alarms.condition("pca_lost", "pca:demo", "demo", True, "gone", "start it")
        self.successResultOf(Deferred.fromCoroutine(self.logbook.flush()))
        self.build()
        self.sts_error()
        self.assertEqual(self.alarm_events(), [])
        self.assertEqual(self.metric("ecs_alarms_active", severity="error"), 1.0)
        self.alarms.condition("pca_lost", "pca:demo", "demo", False)
        self.assertEqual(self.alarm_events(), [("cleared", "pca_lost", "pca:demo")])

    def test_stored_logs(self) -> None:
        """The raise and clear lines reach the stored log with their levels (what /api/logs?level= reads)."""
        self.sts_error()
        self.sts_error(active=False)
        self.successResultOf(Deferred.fromCoroutine(self.logbook.flush()))
        rows = self.successResultOf(self.store.logs(level="warn"))
        self.assertEqual(len([r for r in rows if "system_error" in r.message]), 2)


class AgentConditionTests(AlarmsTestCase):
    """The supervisor's agent descriptions raise and clear flapping and failed alarms."""

    def describe(self, state: str, reason: str = "") -> dict[str, Any]:
        """An agent description as the supervisor publishes it."""
        return {"agent": "detector:STS", "supervision": {"state": state, "restarts": 5, "reason": reason}}

    def test_flapping(self) -> None:
        """Flapping raises agent_flapping (error level), a manual start clears it."""
        changed = agent_conditions(self.alarms)
        changed(self.describe("running"))
        self.assertEqual(self.alarm_events(), [])
        changed(self.describe("flapping", "5 deaths in 60 s"))
        [alarm] = self.listed()
        self.assertEqual((alarm["kind"], alarm["source"], alarm["partition"]),
                         ("agent_flapping", "agent:detector:STS", None))
        self.assertIn("5 deaths in 60 s", alarm["text"])
        self.assertEqual(self.logs()[-1][0], "error")
        changed(self.describe("starting"))
        self.assertEqual(self.alarm_events()[-1], ("cleared", "agent_flapping", "agent:detector:STS"))

    def test_failed(self) -> None:
        """A launch failure raises agent_failed."""
        agent_conditions(self.alarms)(self.describe("failed", "unreachable: no route"))
        self.assertEqual([a["kind"] for a in self.listed()], ["agent_failed"])

    def test_garbage_ignored(self) -> None:
        """A description without an agent name raises nothing."""
        agent_conditions(self.alarms)({"supervision": {"state": "flapping"}})
        self.assertEqual(self.listed(), [])



class SupervisedAgentTests(AlarmsTestCase):
    """A real supervisor's descriptions (fake launcher) raise agent_flapping; a manual start clears it."""

    def test_flapping_agent(self) -> None:
        """Five quick deaths: agent_flapping of agent:detector:D1 with its reason; started by hand: cleared."""
        launcher = FakeLauncher(self.clock)
        placements = FakeStore()
        placements.set_placement("detector:D1", "localhost", "local", {})
        supervisor = Supervisor(placements, {"local": launcher}, self.clock, on_change=agent_conditions(self.alarms))
        self.addCleanup(lambda: self.successResultOf(Deferred.fromCoroutine(supervisor.stop_all())))
        self.successResultOf(Deferred.fromCoroutine(supervisor.resume(False)))
        self.successResultOf(supervisor.start("detector:D1"))
        for delay in (1, 2, 4, 8, 0):
            launcher.kill("detector:D1", supervisor.agent("detector:D1")["status"]["pid"])
            self.clock.advance(delay)
        [alarm] = self.listed()
        self.assertEqual((alarm["kind"], alarm["source"]), ("agent_flapping", "agent:detector:D1"))
        self.assertIn("5 deaths", alarm["text"])
        self.successResultOf(supervisor.start("detector:D1"))
        self.assertEqual(self.alarm_events()[-1], ("cleared", "agent_flapping", "agent:detector:D1"))


class RunBookTests(AlarmsTestCase):
    """The run book raises run_failed or run_interrupted for a run that ends without stop or abort."""

    def end(self, last_command: str | None, interrupted: bool = False) -> None:
        """
        A run of demo opened, then ended after C{last_command} (an
        interrupted one is held for the grace, then judged).
        """
        runs = RunBook(self.store, self.logbook, self.metrics, self.alarms, self.clock)
        runs.connection("demo", True)
        if not self.successResultOf(self.store.partitions()):
            self.successResultOf(self.store.add_partition("demo"))
        self.successResultOf(Deferred.fromCoroutine(runs.started("demo", "t", {}, "olga")))
        self.successResultOf(Deferred.fromCoroutine(runs.ended("demo", last_command, interrupted)))
        self.clock.advance(runs.grace)

    def test_stopped_and_aborted(self) -> None:
        """An operator's stop or abort raises nothing."""
        self.end("stop")
        self.end("abort")
        self.assertEqual(self.listed(), [])

    def test_failed(self) -> None:
        """Any other end is run_failed, raised cleared, with an error line; one lost PCA meanwhile: interrupted."""
        self.end("start")
        [alarm] = self.listed()
        self.assertEqual((alarm["kind"], alarm["source"], alarm["partition"]), ("run_failed", "run", "demo"))
        self.assertEqual(alarm["cleared_at"], T0)
        self.assertIn(("error", "run 1 of partition demo ended: failed"), self.logs())
        self.end(None, interrupted=True)
        self.assertIn("run_interrupted", [a["kind"] for a in self.listed()])
