# -*- test-case-name: tests.test_exclusions_eca -*-
"""
Include and exclude through the ECA (issue 14): the whole system in memory
on a clock (L{tests.eca_harness}): the API, the audit trail, the database
as the truth across PCA and ECA restarts, the alarms, and the run record.
"""

from __future__ import annotations

from typing import Any

from tests.eca_harness import ClockedHarness

TOP = "QA_Active"


class ExclusionHarness(ClockedHarness):
    """Helpers: exclude/include as a user, what the PCA, the API and the database say."""

    async def change(self, action: str, system: str, user: str = "operator", partition: str = "demo") -> Any:
        return await self.call(
            "POST", f"/api/partitions/{partition}/{action}", token=await self.login(user), json={"system": system}
        )

    def pca_excluded(self, partition: str = "demo") -> list[str]:
        sequencer = self.pcas[partition].sequencer
        assert sequencer is not None
        return sequencer.partition.excluded()

    async def db_excluded(self, partition: str = "demo") -> list[str]:
        return [row.system for row in await self.store.exclusions(partition)]

    def shown(self, system: str, partition: str = "demo") -> dict[str, Any]:
        systems = {s["id"]: s for s in self.eca.partition(partition)["systems"]}
        return dict(systems[system])

    async def inject_error(self, detector: str) -> None:
        await self.until(
            self.tester.connect(self.hosts[detector].address).request(detector, "inject", {"what": "error"})
        )


class ExcludeTests(ExclusionHarness):
    async def test_exclude_audited_and_shown(self) -> None:
        """The controller excludes TRD: PCA, database, API and audit agree; its Error raises no alarm."""
        await self.take("operator")
        await self.configure()
        r = await self.change("exclude", "TRD")
        self.assertEqual((r.code, r.json["excluded"]), (200, ["TRD"]))
        self.assertEqual(self.pca_excluded(), ["TRD"])
        self.assertEqual(await self.db_excluded(), ["TRD"])
        await self.wait_for(lambda: self.shown("TRD")["state"] == "Excluded", what="TRD shown Excluded")
        self.assertEqual(self.shown("TRD")["raw_state"], "Active")
        [row] = await self.store.audit_entries(action="exclude")
        self.assertEqual(
            (row.user, row.arguments, row.outcome), ("operator", {"partition": "demo", "system": "TRD"}, "ok")
        )
        await self.inject_error("TRD")
        await self.settle(0.5)
        self.assertEqual(self.eca.partition("demo")["state"], TOP)
        self.assertEqual([a for a in await self.store.alarms() if a.source == "TRD"], [])
        self.assertEqual(self.parts.partitions.samples()[0].systems.get("Excluded"), 1)

    async def test_refusals(self) -> None:
        """Not the controller: 409; unknown system: 404; TFC: 409 with the reason; recording: 409; all audited."""
        await self.take("operator")
        self.assertEqual((await self.change("exclude", "TRD", user="operator2")).code, 409)
        r = await self.change("exclude", "RICHX")
        self.assertError(r, 404, "not_found")
        r = await self.change("exclude", "TFC")
        self.assertError(r, 409, "conflict")
        self.assertIn("never_excluded", r.json["reason"])
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        r = await self.change("exclude", "TRD")
        self.assertError(r, 409, "conflict")
        self.assertIn("recording", r.json["reason"])
        self.assertEqual(await self.db_excluded(), [])
        self.assertEqual(self.pca_excluded(), [])
        outcomes = [row.outcome for row in await self.store.audit_entries(action="exclude")]
        self.assertEqual(len(outcomes), 4)
        self.assertNotIn("ok", outcomes)

    async def test_include_then_configure(self) -> None:
        """Included again, TRD makes the partition honest until the next configure configures it."""
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/exclude", "operator", {"system": "TRD"})
        await self.configure()
        self.assertEqual(self.hosts["TRD"].controllers[("TRD", None)].state, "Unconfigured")
        await self.ok("POST", "/api/partitions/demo/include", "operator", {"system": "TRD"})
        self.assertEqual(await self.db_excluded(), [])
        await self.wait_state("demo", "TFC_Active")
        await self.configure()
        self.assertEqual(self.hosts["TRD"].controllers[("TRD", None)].state, "Active")

    async def test_run_record(self) -> None:
        """The run record says who was excluded."""
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/exclude", "operator", {"system": "TRD"})
        await self.configure()
        await self.ok("POST", "/api/partitions/demo/start", "operator")
        await self.wait_state("demo", "Recording")
        runs: list[dict[str, Any]] = []
        for _ in range(50):  # the run row is written behind the state change
            runs = await self.ok("GET", "/api/runs?partition=demo", "viewer")
            if runs:
                break
            await self.settle(0.1)
        self.assertEqual([(e["system"], e["excluded_by"]) for e in runs[0]["excluded"]], [("TRD", "operator")])


class RestartTests(ExclusionHarness):
    async def test_pca_restart_told_again(self) -> None:
        """A PCA restarted without its state file is told the exclusions by the ECA."""
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/exclude", "operator", {"system": "TRD"})
        await self.until(self.pcas["demo"].stopService(), what="PCA stopped")
        pca = self.start_pca("demo")
        await self.until(pca.ready, what="PCA ready")
        await self.wait_for(lambda: self.pca_excluded() == ["TRD"], what="PCA told TRD is excluded")
        await self.wait_for(lambda: self.shown("TRD")["state"] == "Excluded", what="TRD shown Excluded")

    async def test_eca_restart_database_is_the_truth(self) -> None:
        """A restarted ECA makes the PCA agree with its database, both ways."""
        await self.take("operator")
        await self.ok("POST", "/api/partitions/demo/exclude", "operator", {"system": "TRD"})
        await self.until(self.core.stopService(), what="ECA stopped")
        await self.store.include_system("demo", "TRD")
        await self.store.exclude_system("demo", "RICH", "admin")
        await self.start_eca()
        await self.wait_for(lambda: self.pca_excluded() == ["RICH"], what="PCA agrees with the database")
        await self.parts.logbook.flush()
        told = [row.message for row in await self.store.logs(q="told the exclusions")]
        self.assertEqual(told, ["PCA demo told the exclusions of the database (exclude RICH, include TRD)"])
