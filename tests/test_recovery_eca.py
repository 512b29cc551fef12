# -*- test-case-name: tests.test_recovery_eca -*-
"""
The recovery rules carried out by the ECA (issue 14, item 2): the whole
system in memory on a clock (L{tests.eca_harness}).
"""

from __future__ import annotations

from typing import Any

from agents.eca.recovery import WHO, Recovery
from ecs.control import ControlError, User
from ecs.fsm.recovery import parse_rules
from tests.test_exclusions_eca import ExclusionHarness


class RecoveryHarness(ExclusionHarness):
    """Helpers: rules in force, a run going."""

    @property
    def recovery(self) -> Recovery:
        recovery = self.parts.partitions.recovery
        assert isinstance(recovery, Recovery)
        return recovery

    async def use_rules(self, data: dict[str, Any]) -> None:
        self.recovery.rules = parse_rules(data, "test")
        await self.until(defer_of(self.recovery.arm("demo")))

    async def record(self) -> Any:
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator", {})
        await self.wait_state("demo", "Recording")
        return await self.wait_for(lambda: self.store.open_run("demo"), what="run record")

    async def recovery_audit(self) -> list[Any]:
        return [e for e in await self.store.audit_entries(user=WHO)]


def defer_of(coroutine: Any) -> Any:
    from twisted.internet import defer

    return defer.Deferred.fromCoroutine(coroutine)


class RecoveryTests(RecoveryHarness):
    async def test_rules_in_force_for_the_gui(self) -> None:
        """The center answers the rules in force (the state machines page shows them): viewer and up."""
        await self.use_rules({"types": {"TRD": {"error": {"recording": {"action": "exclude_and_continue", "max": 2}}}},
                              "systems": {"RICH": {"agent_died": "restart"}}})
        answer = self.eca.recovery_rules(User("v", ("viewer",)))
        self.assertEqual(answer["source"], "test")
        self.assertEqual(answer["rules"], [
            {"scope": "type", "name": "TRD", "event": "error", "state": "recording",
             "action": "exclude_and_continue", "max": 2, "within": 600.0},
            {"scope": "system", "name": "RICH", "event": "agent_died", "state": "any",
             "action": "restart", "max": 3, "within": 600.0},
        ])
        with self.assertRaises(ControlError) as refused:
            self.eca.recovery_rules(User("n", ()))
        self.assertEqual(refused.exception.code, "forbidden")

    async def test_default_rules_alarm_only(self) -> None:
        """Without rules a detector in Error while recording ends the run as today: no recovery action."""
        await self.record()
        await self.inject_error("TRD")
        await self.wait_for(lambda: self.eca.partition("demo")["state"] != "Recording", what="run ends")
        await self.settle(1.0)
        self.assertEqual(self.pca_excluded(), [])
        self.assertEqual(await self.recovery_audit(), [])
        alarms = await self.store.alarms()
        self.assertEqual([a.kind for a in alarms if a.kind == "recovery_action"], [])
        self.assertIn("system_error", [a.kind for a in alarms if a.source == "TRD"])

    async def test_exclude_and_continue(self) -> None:
        """TRD (non-critical) in Error while recording is excluded: the run goes on, told everywhere."""
        await self.use_rules({"types": {"TRD": {"error": {"recording": "exclude_and_continue"}}}})
        run = await self.record()
        await self.inject_error("TRD")
        await self.wait_for(lambda: self.pca_excluded() == ["TRD"], what="TRD excluded")
        await self.settle(1.0)
        self.assertEqual(self.eca.partition("demo")["state"], "Recording")
        self.assertEqual(await self.db_excluded(), ["TRD"])
        still = await self.store.open_run("demo")
        assert still is not None
        self.assertEqual(still.number, run.number)
        self.assertIn(f"TRD excluded by {WHO}", still.note or "")
        [alarm] = [a for a in await self.store.alarms() if a.kind == "recovery_action"]
        self.assertIn("exclude_and_continue", alarm.text)
        self.assertEqual([e.action for e in await self.recovery_audit()], ["recovery_exclude_and_continue"])
        entries = await self.store.logbook_entries(text="exclude_and_continue")
        self.assertTrue(entries)
        # a person still may not exclude while recording
        r = await self.change("exclude", "RICH")
        self.assertEqual(r.code, 409)

    async def test_stop_run(self) -> None:
        """stop_run: the run is stopped by the recovery, audited."""
        await self.use_rules({"types": {"TRD": {"error": {"recording": "stop_run"}}}})
        await self.record()
        await self.inject_error("TRD")
        await self.wait_for(lambda: self.eca.partition("demo")["state"] != "Recording", what="run ends")

        async def audited() -> list[Any]:
            return [e.action for e in await self.recovery_audit()]

        self.assertEqual(await self.wait_for(audited, what="audited"), ["recovery_stop_run"])
        # The PCA had stopped the run itself (a recording system failed): the recovery's
        # stop is then refused, and the audit row says so rather than "ok".
        [entry] = await self.recovery_audit()
        self.assertTrue(entry.outcome == "ok" or entry.outcome.startswith("failed: "), entry.outcome)

    async def test_reset_and_reconfigure(self) -> None:
        """reset_and_reconfigure: TRD in Error while configured is reset and the partition configured again."""
        await self.use_rules({"types": {"TRD": {"error": {"configured": "reset_and_reconfigure"}}}})
        await self.take("operator")
        await self.configure()
        await self.inject_error("TRD")

        async def audited() -> list[Any]:
            return [e.action for e in await self.recovery_audit()]

        self.assertEqual(await self.wait_for(audited, what="audited"), ["recovery_reset_and_reconfigure"])
        [alarm] = [a for a in await self.store.alarms() if a.kind == "recovery_action"]
        self.assertIn("TRD reset after error, demo configured again with tag", alarm.text)
        await self.wait_state("demo", "QA_Active")
        systems = {s["id"]: s for s in self.eca.partition("demo")["systems"]}
        self.assertEqual(systems["TRD"]["state"], "Active", systems["TRD"])
