# -*- test-case-name: tests.test_alarms_api -*-
"""
The alarm tests against the API alone (no browser): a real ECA with its
PCAs and controllers on a C{Clock} and the memory network
(L{tests.eca_harness.ClockedHarness}), driven and read through
C{/api/alarms}, C{/api/events}, C{/api/logs} and C{/metrics}.

A fault injected into a detector is named in an alarm with its action and
an C{alarm} event, and cleared by its reset; a failed run raises an alarm
that stays until acknowledged; acknowledging and shelving work by role and
are audited; a lost PCA raises an alarm and its return clears it; a DCS
alarm is an alarm of its own; an ECA restart keeps the alarms and clears
those whose condition went away meanwhile.
"""

from __future__ import annotations

from typing import Any

from tests.eca_harness import EPOCH, ClockedHarness


class AlarmApiTests(ClockedHarness):
    """The alarm contract, end to end through the web API."""

    async def alarms(self, query: str = "", user: str = "viewer") -> list[dict[str, Any]]:
        """GET /api/alarms as C{user}."""
        result: list[dict[str, Any]] = await self.ok("GET", "/api/alarms" + query, user)
        return result

    async def alarm_of(self, kind: str, source: str, query: str = "") -> dict[str, Any]:
        """Until C{GET /api/alarms} lists an alarm of C{kind} and C{source}; that alarm."""

        async def find() -> dict[str, Any] | None:
            for alarm in await self.alarms(query):
                if alarm["kind"] == kind and alarm["source"] == source:
                    return alarm
            return None

        found: dict[str, Any] = await self.wait_for(find, what=f"alarm {kind} of {source}")
        return found

    async def inject(self, system: str, what: str = "error", **body: Any) -> None:
        """A fault injected into C{system}'s controller (as its hardware would report it)."""
        host = self.globals_host if system in ("TFC", "DCS", "QA", "FLES") else self.hosts[system]
        address = host.address
        assert address is not None
        await self.until(self.tester.connect(address).request(system, "inject", {"what": what, **body}))

    async def test_system_error_raised_and_cleared(self) -> None:
        """An error injected into STS: an alarm naming STS and its action, an event, a warn line; reset clears it."""
        stub, reader = await self.open_events()
        await self.inject("STS")
        alarm = await self.alarm_of("system_error", "STS")
        self.assertEqual((alarm["partition"], alarm["severity"]), ("demo", "error"))
        self.assertEqual(alarm["action"], "reset STS, then Configure")
        self.assertIn("STS in Error", alarm["text"])
        self.assertIn("error reported by the subsystem", alarm["text"])  # the controller's comment
        self.assertIsNone(alarm["cleared_at"])
        events = await self.events_until(
            stub, reader, lambda es: any(e["event"] == "alarm" and e["data"]["id"] == alarm["id"] for e in es)
        )
        raised = next(e["data"] for e in events if e["event"] == "alarm")
        self.assertEqual((raised["change"], raised["kind"], raised["source"]), ("raised", "system_error", "STS"))
        # The raise is a warn-or-worse log line naming the system and the partition.
        lines = await self.wait_for(lambda: self._logs_about("STS", "level=warn&partition=demo"), what="log line")
        self.assertTrue(any("partition demo" in line["message"] for line in lines), lines)
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/reset", "operator", {"system": "STS"})
        cleared = await self.wait_for(
            lambda: self._cleared(alarm["id"]), what="the alarm cleared"
        )
        self.assertIsNotNone(cleared["cleared_at"])
        # Cleared but not acknowledged: still listed; acknowledged: history only.
        acked = await self.ok("POST", f"/api/alarms/{alarm['id']}/ack", "operator")
        self.assertEqual(acked["acknowledged_by"], "operator")
        self.assertNotIn(alarm["id"], [a["id"] for a in await self.alarms()])
        self.assertIn(alarm["id"], [a["id"] for a in await self.alarms("?all=1")])

    async def _logs_about(self, word: str, query: str) -> list[dict[str, Any]] | None:
        lines: list[dict[str, Any]] = await self.ok("GET", f"/api/logs?{query}", "viewer")
        found = [line for line in lines if word in line["message"] and "alarm" in line["message"]]
        return found or None

    async def _cleared(self, alarm_id: int) -> dict[str, Any] | None:
        for alarm in await self.alarms():
            if alarm["id"] == alarm_id and alarm["cleared_at"] is not None:
                return alarm
        return None

    async def test_failed_run_stays_until_acknowledged(self) -> None:
        """A run ended by a fault raises run_failed; it stays after the fault is reset, until acknowledged."""
        await self.take("operator")
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        await self.inject("STS")
        alarm = await self.alarm_of("run_failed", "run")
        self.assertEqual((alarm["partition"], alarm["severity"]), ("demo", "error"))
        self.assertIn("failed", alarm["text"])
        self.assertIsNotNone(alarm["cleared_at"])  # the run is over: raised cleared
        await self.ok("POST", "/api/partitions/demo/reset", "operator", {"system": "STS"})
        await self.wait_for(lambda: self._cleared_kind("system_error", "STS"), what="STS error cleared")
        await self.settle(1.0)
        self.assertIn(alarm["id"], [a["id"] for a in await self.alarms()])
        # A viewer may not acknowledge; the operator does, and it is audited.
        r = await self.call("POST", f"/api/alarms/{alarm['id']}/ack", token=await self.login("viewer"))
        self.assertError(r, 403, "forbidden")
        await self.ok("POST", f"/api/alarms/{alarm['id']}/ack", "operator")
        self.assertNotIn(alarm["id"], [a["id"] for a in await self.alarms()])
        audit = [(a.user, a.action, a.arguments, a.outcome) for a in await self.store.audit_entries()]
        self.assertIn(("operator", "acknowledge_alarm", {"alarm": alarm["id"]}, "ok"), audit)
        # The failed run is an ERROR line.
        lines = await self.ok("GET", "/api/logs?level=error&partition=demo", "viewer")
        self.assertTrue(any("ended: failed" in line["message"] for line in lines), lines)

    async def _cleared_kind(self, kind: str, source: str) -> bool:
        return any(a["kind"] == kind and a["source"] == source and a["cleared_at"] for a in await self.alarms())

    async def test_ack_and_shelve_roles_and_inputs(self) -> None:
        """Shelving needs expert, checks until and reason by name, hides the alarm until then; all audited."""
        await self.inject("MVD")
        alarm = await self.alarm_of("system_error", "MVD")
        path = f"/api/alarms/{alarm['id']}/shelve"
        operator, expert = await self.login("operator"), await self.login("expert")
        r = await self.call("POST", path, token=operator, json={"until": 60, "reason": "noise"})
        self.assertError(r, 403, "forbidden")
        for body, field in [
            ({"reason": "noise"}, "until"),
            ({"until": -5, "reason": "noise"}, "until"),
            ({"until": "yesterday", "reason": "noise"}, "until"),
            ({"until": "2020-01-01T00:00:00Z", "reason": "noise"}, "until"),
            ({"until": 31 * 86400, "reason": "noise"}, "until"),
            ({"until": 60}, "reason"),
            ({"until": 60, "reason": ""}, "reason"),
            ({"until": 60, "reason": "x" * 501}, "reason"),
            ({"until": 60, "reason": "noise", "extra": 1}, "extra"),
        ]:
            self.assertError(await self.call("POST", path, token=expert, json=body), 400, "bad_request", field=field)
        shelved = await self.ok("POST", path, "expert", {"until": 120, "reason": "MVD noise, known"})
        self.assertEqual((shelved["shelved_by"], shelved["shelve_reason"]), ("expert", "MVD noise, known"))
        self.assertAlmostEqual(shelved["shelved_until"], self.clock.seconds() + 120, delta=1)
        self.assertNotIn(alarm["id"], [a["id"] for a in await self.alarms()])
        self.assertIn(alarm["id"], [a["id"] for a in await self.alarms("?all=1")])
        # An ISO time works too.
        iso = await self.ok("POST", path, "expert", {"until": "2027-01-16T08:00:00+00:00", "reason": "until Friday"})
        self.assertGreater(iso["shelved_until"], EPOCH)
        # Unknown ids are 404, not numbers are no route.
        self.assertError(await self.call("POST", "/api/alarms/9999/ack", token=operator), 404, "not_found")
        self.assertError(await self.call("POST", "/api/alarms/x/ack", token=operator), 404)
        # It comes back by itself.
        await self.settle(0.1)
        self.clock.advance(30 * 86400)
        self.tokens.clear()  # API tokens expire after a shift: log in again
        await self.settle(0.1)
        self.assertIn(alarm["id"], [a["id"] for a in await self.alarms()])
        # Audited with what was asked (the operator's attempt was refused at the door, as every 403 is).
        audit = [(a.user, a.action, a.arguments, a.outcome) for a in await self.store.audit_entries()]
        self.assertIn(("expert", "shelve_alarm", {"alarm": alarm["id"], "until": shelved["shelved_until"],
                                                  "reason": "MVD noise, known"}, "ok"), audit)
        self.assertNotIn("operator", [user for user, action, _, _ in audit if action == "shelve_alarm"])

    async def test_lost_pca(self) -> None:
        """A PCA that stops answering raises pca_lost (critical, an ERROR line); its return clears it."""
        address = self.pcas["p2"].address
        assert address is not None
        self.network.set_down(address, True)
        alarm = await self.alarm_of("pca_lost", "pca:p2")
        self.assertEqual((alarm["partition"], alarm["severity"]), ("p2", "critical"))
        self.assertIn("p2", alarm["action"])
        self.network.set_down(address, False)
        await self.wait_for(lambda: self._cleared_kind("pca_lost", "pca:p2"), what="pca_lost cleared")
        # Per partition: demo's list does not have it.
        self.assertEqual([a for a in await self.alarms("?partition=demo") if a["kind"] == "pca_lost"], [])
        metrics = (await self.call("GET", "/metrics")).body.decode()
        self.assertIn('ecs_alarms_raised_total{kind="pca_lost"} 1.0', metrics)
        self.assertIn('ecs_alarms_active{severity="critical"} 1.0', metrics)

    async def test_dcs_alarm(self) -> None:
        """A DCS alarm for a detector is a dcs_alarm of that detector (beside its Error), cleared by the reset."""
        await self.inject("DCS", "detector_error", detector="TOF")
        alarm = await self.alarm_of("dcs_alarm", "TOF")
        self.assertEqual(alarm["partition"], "demo")
        self.assertIn("DCS", alarm["text"])
        self.assertEqual(alarm["action"], "reset TOF, then Configure")
        await self.alarm_of("system_error", "TOF")
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/reset", "operator", {"system": "TOF"})
        await self.wait_for(lambda: self._cleared_kind("dcs_alarm", "TOF"), what="dcs_alarm cleared")

    async def test_restart_keeps_and_reconciles(self) -> None:
        """Alarms survive an ECA restart; one whose condition ended while the ECA was down is cleared."""
        await self.inject("STS")
        await self.inject("TRD")
        sts = await self.alarm_of("system_error", "STS")
        trd = await self.alarm_of("system_error", "TRD")
        await self.until(self.core.stopService())
        await self.inject("TRD", "resolved")
        await self.start_eca()
        self.tokens.clear()
        await self.wait_for(lambda: self.eca.partition("demo")["connected"], what="PCA registered again")
        await self.wait_for(lambda: self._cleared(trd["id"]), what="TRD's alarm cleared")
        await self.settle(0.5)
        shown = {a["id"]: a for a in await self.alarms()}
        self.assertIsNone(shown[sts["id"]]["cleared_at"])
        self.assertEqual(len([a for a in shown.values() if a["source"] == "STS"]), 1)
