# -*- test-case-name: tests.test_sequence_e2e -*-
"""
The shipped threshold scan (C{etc/sequences/threshold-scan.yaml}, issue 14)
end to end, with real processes: C{twistd -n ecs-demo} on loopback (the
ECA, the PCA of C{demo}, every detector and global system), the scan run
with the real C{ecs} command line from Idle to its end unattended, then
again and aborted in a later step; the runs, the sequence's status, the
logbook and the audit read back through the HTTP API.  The demo is stopped
by its pid in cleanup (it stops the agents it started).
"""

from __future__ import annotations

from urllib.parse import urlencode

from tests.support.cli import CliDemoHarness

SCAN = "threshold-scan"
TAGS = ["demo", "demo-alt", "demo"]
STEPS = len(TAGS) * 4  # configure, start, wait, stop per tag
LOGBOOK = "/api/logbook?" + urlencode({"partition": "demo", "text": f"sequence {SCAN}", "limit": 200})


class SequenceE2ETests(CliDemoHarness):
    """The threshold scan: unattended to its end, then aborted in its third step."""

    timeout = 400

    async def test_threshold_scan(self) -> None:
        """Idle -> three calibration runs, one per tag, unattended; the second scan aborted while it waits."""
        await self.start_demo()
        await self.cli_login()
        [declared] = [s for s in (await self.ok_cli("--json", "sequence", "list")).json() if s["name"] == SCAN]
        self.assertEqual(declared["total"], STEPS, declared)
        await self.ok_cli("control", "take", "demo")

        # -- the whole scan, unattended -----------------------------------------------------
        result = await self.ok_cli("sequence", "run", SCAN, "demo", "--wait", "--timeout", "300", timeout=330)
        self.assertIn(f"{SCAN} done, step {STEPS}/{STEPS}", result.out + result.err, result)
        status = await self.ok("GET", "/api/partitions/demo/sequence")
        self.assertEqual((status["sequence"], status["state"], status["step"], status["total"], status["error"]),
                         (SCAN, "done", STEPS, STEPS, None), status)
        self.assertEqual((await self.partition())["state"], "QA_Active")
        runs = sorted(await self.ok("GET", "/api/runs?partition=demo"), key=lambda r: r["number"])
        self.assertEqual([r["tag"] for r in runs], TAGS, runs)
        for run, tag in zip(runs, TAGS, strict=True):
            self.assertEqual(
                (run["type"], run["start_comment"], run["end_comment"], run["outcome"], run["operator"]),
                ("calibration", f"threshold scan, tag {tag}", f"threshold scan, tag {tag} done", "stopped", "admin"),
                run,
            )
        entries = await self.ok("GET", LOGBOOK)
        texts = [e["text"] for e in entries]
        for step in range(1, STEPS + 1):
            for end in ("started", "done"):
                self.assertEqual(len([t for t in texts if t.startswith(f"sequence {SCAN}: step {step}/{STEPS} (")
                                      and t.endswith(f") {end}")]), 1, (step, end, texts))
        self.assertIn(f"sequence {SCAN}: ended: done", texts)
        self.assertTrue(all(e["author"] == "ECS" for e in entries), entries)

        # -- again, aborted in its third step (the first run records, the scan waits) --------
        result = await self.ok_cli("sequence", "run", SCAN, "demo")
        self.assertIn(f"sequence {SCAN} running", result.out)
        status = await self.until_api(
            "/api/partitions/demo/sequence",
            lambda s: s["state"] != "running" or (s["step"] == 3 and s["description"].startswith("wait")),
            "reached step 3 (wait)",
        )
        self.assertEqual((status["state"], status["step"]), ("running", 3), status)
        self.assertEqual((await self.partition())["state"], "Recording")
        result = await self.ok_cli("--json", "sequence", "abort", "demo")
        self.assertNotIn("abort_refused", result.json(), result)
        status = await self.until_api(
            "/api/partitions/demo/sequence", lambda s: s["state"] != "running", "ended after the abort"
        )
        self.assertEqual((status["state"], status["step"]), ("aborted", 3), status)
        await self.until_partition(lambda p: p["state"] == "Idle" and p["operation"] is None, "Idle (aborted)")
        runs = sorted(await self.ok("GET", "/api/runs?partition=demo"), key=lambda r: r["number"])
        self.assertEqual(len(runs), len(TAGS) + 1, runs)
        self.assertTrue(all(r["ended"] is not None and r["outcome"] is not None for r in runs), runs)
        self.assertNotEqual(runs[-1]["outcome"], "stopped", runs[-1])
        texts = [e["text"] for e in await self.ok("GET", LOGBOOK)]
        self.assertIn(f"sequence {SCAN}: aborted by admin in step 3", texts)
        self.assertIn(f"sequence {SCAN}: ended: aborted", texts)

        # -- the audit trail lists what the sequences did, as the user who ran them -----------
        audit = (await self.ok_cli("--json", "audit", "--user", "admin", "--limit", "200")).json()
        done = [(e["action"], e["arguments"], e["outcome"]) for e in reversed(audit)
                if e["action"] not in ("login", "take_control")]
        demo = {"partition": "demo"}
        steps = []
        for tag in TAGS:
            steps += [
                ("configure", {**demo, "tag": tag, "auto": True}, "ok"),
                ("start", {**demo, "type": "calibration", "comment": f"threshold scan, tag {tag}"}, "ok"),
                ("stop", {**demo, "comment": f"threshold scan, tag {tag} done"}, "ok"),
            ]
        self.assertEqual(done, [
            ("sequence_run", {**demo, "sequence": SCAN}, "ok"), *steps,
            ("sequence_run", {**demo, "sequence": SCAN}, "ok"), *steps[:2],
            ("abort", demo, "ok"),
            ("sequence_abort", demo, "ok"),
        ])
