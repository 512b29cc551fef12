# -*- test-case-name: tests.test_recovery_e2e -*-
"""
A recovery rule end to end (issue 14), with real processes: C{twistd -n
ecs-demo --recovery FILE} on loopback (the ECA, the PCA of C{demo}, every
detector and global system), driven through the real C{ecs} command line
and read back through the HTTP API.  The rule says a TOF detector that
fails while the partition records is excluded and the run goes on
(C{exclude_and_continue}); the run is started and stopped with a run type
and comments, which round-trip to C{ecs runs --type}.  The demo is stopped
by its pid in cleanup (it stops the agents it started).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.cli import CliDemoHarness

TOP = "QA_Active"

RULES = """\
defaults:
  error: alarm_only
types:
  TOF:
    error:
      recording: {action: exclude_and_continue, max: 3, within: 600}
"""


def system(partition: dict[str, Any], system_id: str) -> dict[str, Any]:
    return next(dict(s) for s in partition["systems"] if s["id"] == system_id)


class RecoveryE2ETests(CliDemoHarness):
    """TOF fails while recording: excluded by the recovery, the run goes on, told everywhere."""

    timeout = 300

    async def test_exclude_and_continue(self) -> None:
        """A non-critical detector's Error while recording: same run, TOF Excluded, alarm, logbook, run, audit."""
        rules = Path(self.mktemp() + ".yaml").resolve()
        rules.write_text(RULES, encoding="utf-8")
        await self.start_demo("--recovery", str(rules))
        await self.cli_login()
        await self.ok_cli("control", "take", "demo")
        await self.ok_cli("configure", "demo", "--tag", "demo", "--auto", "--wait", "--timeout", "120")
        result = await self.ok_cli("start", "demo", "--type", "physics", "--comment", "beam on",
                                   "--wait", "--timeout", "120", "--json")
        self.assertEqual(result.json()["state"], "Recording", result)
        before = {s["id"]: s["state"] for s in (await self.partition())["systems"] if s["id"] != "TOF"}
        [run] = await self.ok("GET", "/api/runs?partition=demo")
        self.assertIsNone(run["outcome"], run)

        # TOF reports an Error (an expert injects it through the ECA): the ECA's armed rule
        # has the PCA exclude it at once, and the run goes on.
        await self.ok_cli("inject", "TOF", "error")
        partition = await self.until_partition(
            lambda p: system(p, "TOF")["state"] == "Excluded" and system(p, "TOF")["raw_state"] == "Error",
            "TOF excluded in Error",
        )
        self.assertEqual(partition["state"], "Recording", partition)
        self.assertEqual({s["id"]: s["state"] for s in partition["systems"] if s["id"] != "TOF"}, before)

        # The open run's record names the exclusion (its note: excluded after the run started).
        [current] = await self.until_api(
            "/api/runs?partition=demo", lambda runs: "TOF excluded by ecs-recovery" in (runs[0]["note"] or ""),
            "noted TOF's exclusion in the open run",
        )
        self.assertEqual((current["number"], current["outcome"]), (run["number"], None), current)
        self.assertEqual((await self.partition())["state"], "Recording")

        # The alarm (a warning, raised cleared: listed until acknowledged) ...
        alarms = await self.until_api(
            "/api/alarms", lambda rows: any(a["kind"] == "recovery_action" for a in rows), "listed the recovery alarm"
        )
        [alarm] = [a for a in alarms if a["kind"] == "recovery_action"]
        self.assertEqual((alarm["severity"], alarm["partition"]), ("warning", "demo"), alarm)
        self.assertIn("TOF", alarm["text"])
        self.assertIn("exclude_and_continue", alarm["text"])
        # ... the logbook entry (by the ECA) ...
        await self.until_api(
            "/api/logbook?partition=demo&text=exclude_and_continue",
            lambda entries: any(e["author"] == "ECS" and "TOF" in e["text"] for e in entries),
            "had the ECA's entry about TOF",
        )
        # ... and the audit row, as the recovery's user.
        audit = await self.until_api("/api/audit?user=ecs-recovery", bool, "listed the recovery action")
        self.assertEqual([(e["action"], e["outcome"]) for e in audit], [("recovery_exclude_and_continue", "ok")])
        cli_audit = (await self.ok_cli("--json", "audit", "--user", "ecs-recovery")).json()
        self.assertEqual([e["id"] for e in cli_audit], [e["id"] for e in audit])

        # People still may not exclude while recording; the run stops normally.
        code, refused = await self.api("POST", "/api/partitions/demo/exclude", {"system": "RICH"})
        self.assertEqual(code, 409, refused)
        await self.ok_cli("stop", "demo", "--comment", "TOF left out", "--wait", "--timeout", "120")
        partition = await self.until_partition(lambda p: p["state"] == TOP and p["operation"] is None, TOP)
        self.assertEqual(system(partition, "TOF")["state"], "Excluded", partition)

        # The run's record, through the command line: its type and both comments, ended well.
        [ended] = (await self.ok_cli("--json", "runs", "--type", "physics")).json()
        self.assertEqual(ended["number"], run["number"])
        self.assertEqual(ended["outcome"], "stopped", ended)
        self.assertEqual((ended["type"], ended["start_comment"], ended["end_comment"]),
                         ("physics", "beam on", "TOF left out"))
        self.assertIn("TOF excluded by ecs-recovery (Error)", ended["note"])
        self.assertEqual([(e["system"], e["excluded_by"]) for e in ended["excluded"]], [("TOF", "ecs-recovery")])
        self.assertEqual((await self.ok_cli("--json", "runs", "--type", "calibration")).json(), [])
        table = (await self.ok_cli("runs", "--type", "physics")).out.splitlines()
        self.assertTrue(table[1].endswith("beam on / TOF left out"), table)
