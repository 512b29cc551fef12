# -*- test-case-name: tests.test_exclusion_e2e -*-
"""
Include and exclude end to end (issue 14), with real processes: C{twistd
-n ecs-demo} on loopback (the ECA, the PCA of C{demo}, every detector and
global system, each with its own key), driven through the HTTP API, a fault
injected with C{ecs inject}.  The demo is stopped by its pid in cleanup
(it stops the agents it started).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task

from tests.attack_harness import DemoHarness
from tests.procs import spawn, tool

TOP = "QA_Active"


class ExclusionE2ETests(DemoHarness):
    """Exclude TRD, run without it, ignore its Error, include it again."""

    timeout = 300

    def trd(self, partition: dict[str, Any]) -> dict[str, Any]:
        return next(dict(s) for s in partition["systems"] if s["id"] == "TRD")

    async def until_state(self, state: str, what: str = "") -> dict[str, Any]:
        return await self.until_partition(
            lambda p: p["state"] == state and p["operation"] is None and p["connected"], what or state
        )

    async def test_exclude_run_fault_include(self) -> None:
        """Excluded TRD: configure and start skip it, its Error is ignored; included, configure configures it."""
        await self.start_demo()
        await self.ok("POST", "/api/partitions/demo/control")
        excluded = await self.ok("POST", "/api/partitions/demo/exclude", {"system": "TRD"})
        self.assertEqual(excluded["excluded"], ["TRD"])
        code, refused = await self.api("POST", "/api/partitions/demo/exclude", {"system": "TFC"})
        self.assertEqual(code, 409, refused)

        await self.ok("POST", "/api/partitions/demo/configure", {"tag": "demo", "auto": True})
        partition = await self.until_state(TOP)
        self.assertEqual((self.trd(partition)["state"], self.trd(partition)["raw_state"]), ("Excluded", "Unconfigured"))
        await self.ok("POST", "/api/partitions/demo/start")
        partition = await self.until_state("Recording")
        self.assertEqual(self.trd(partition)["raw_state"], "Unconfigured")
        code, refused = await self.api("POST", "/api/partitions/demo/include", {"system": "TRD"})
        self.assertEqual(code, 409, refused)
        self.assertIn("recording", refused["reason"])
        await self.ok("POST", "/api/partitions/demo/stop")
        await self.until_state(TOP)

        # An Error of the excluded detector: the partition stays where it is.
        node = self.attacker("eca")
        endpoint = await self.lookup(node, "detector", "TRD")
        cli, _ = spawn(
            self,
            "ecs inject",
            [tool("ecs"), "inject", "TRD", "error", "--endpoint", endpoint, "--state-dir", str(self.var)],
            cwd=str(self.tmp),
        )
        self.assertEqual(await cli.ended, 0, "\n".join(cli.lines))
        partition = await self.until_partition(lambda p: self.trd(p)["raw_state"] == "Error", "TRD in Error")
        self.assertEqual((partition["state"], self.trd(partition)["state"]), (TOP, "Excluded"))
        for _ in range(5):  # and stays there
            await task.deferLater(reactor, 0.2, lambda: None)
            self.assertEqual((await self.partition())["state"], TOP)

        # Reset, include: the partition says TRD needs a configure until one configures it.
        await self.ok("POST", "/api/partitions/demo/reset", {"system": "TRD"})
        await self.until_partition(lambda p: self.trd(p)["raw_state"] == "Unconfigured", "TRD reset")
        await self.ok("POST", "/api/partitions/demo/include", {"system": "TRD"})
        await self.until_state("TFC_Active", "TFC_Active once TRD is back unconfigured")
        await self.ok("POST", "/api/partitions/demo/configure", {"tag": "demo", "auto": True})
        partition = await self.until_state(TOP)
        self.assertEqual((self.trd(partition)["state"], self.trd(partition)["raw_state"]), ("Active", "Active"))

        code, runs = await self.api("GET", "/api/runs?partition=demo")
        self.assertEqual(code, 200, runs)
        self.assertEqual([e["system"] for e in runs[0]["excluded"]], ["TRD"])
