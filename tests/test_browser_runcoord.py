"""
Run coordination in a real browser (issue 14; headless Chromium, see
L{tests.browser}): the exclude button of a system that is never excluded,
run conditions from the start dialog, the run sequences panel (run the
shipped threshold scan, pause, resume, abort through its confirmation), and
the recovery rules on the state machines page.  One demo for all of it.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.browser import Browser, Demo, skip_without_browser

STATE = '#partitions section[data-partition="demo"] .partition-state .state'


def exclusion(system: str) -> str:
    """The CSS selector of a system's exclude (or include) button, or never-excluded note, on the monitor."""
    return f'#partitions section[data-partition="demo"] tr[data-system="{system}"] .exclusion'


def set_condition(row: int, key: str, value: str) -> str:
    """JavaScript that fills condition row C{row} of the start dialog (and tells the page)."""
    return (f"const r = document.querySelectorAll('#run-conditions tbody tr')[{row}];"
            f"r.querySelector('.condition-key').value = {key!r};"
            f"r.querySelector('.condition-value').value = {value!r};"
            "r.querySelector('.condition-key').dispatchEvent(new Event('input', {bubbles: true}));")


class RunCoordinationTests(TestCase):
    """The GUI parts of run coordination, as a run coordinator uses them."""

    timeout = 240

    def setUp(self) -> None:
        skip_without_browser()

    async def test_run_coordination(self) -> None:
        """
        TFC, QA and FLES cannot be excluded (disabled, the ECA's reason in
        the title and the list); a start carries the dialog's conditions to the
        run record (a name given twice is refused by the form); the threshold
        scan runs from the panel with its progress, pauses after its step,
        resumes, and aborts (the partition too) after the confirmation; the
        state machines page lists the recovery rules.
        """
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/partitions/demo")
        await browser.wait_text("#sequence-status", "No sequence has run")
        await browser.wait_js("return [...document.querySelectorAll('#sequence-select option')]"
                              ".some(o => o.value === 'threshold-scan')", what="the declared sequences")
        self.assertEqual(await browser.attribute("#sequence-run", "title"), "Run: not in control")
        self.assertEqual(await browser.attribute("#sequence-abort", "title"), "Abort sequence: no sequence runs")

        # Systems the sequence never excludes: no button but a note, with the ECA's reason, whoever holds control.
        await browser.click("#take-control")
        await browser.wait_text("#control-holder", "you (admin)")
        await browser.wait_js(f"return !document.querySelector('{exclusion('STS')}').disabled",
                              what="STS may be excluded by the controller")
        self.assertEqual(await browser.js(f"return document.querySelector('{exclusion('STS')}').tagName"), "BUTTON")
        for system, reason in (("TFC", "may never be excluded (never_excluded in partition.yaml)"),
                               ("QA", "records runs"), ("FLES", "records runs")):
            self.assertEqual(await browser.text(exclusion(system)), "never excluded", system)
            self.assertEqual(await browser.js(f"return document.querySelector('{exclusion(system)}').tagName"), "SPAN")
            self.assertIn(reason, await browser.attribute(exclusion(system), "title") or "")
        self.assertNotIn("Exclude", await browser.text("#why"))  # a fact of the sequence, not a reason of the moment

        # Conditions from the start dialog reach the run record.
        code, body = await demo.api("POST", "/api/partitions/demo/configure", body={"tag": "demo", "auto": True})
        self.assertEqual(code, 200, body)
        await browser.wait_text(STATE, "QA_Active", timeout=60)
        await browser.open_dialog("#cmd-start", "start-dialog")
        for _ in range(3):
            await browser.click("#add-condition")
        await browser.js(set_condition(0, "magnet", "0.5"))
        await browser.js(set_condition(1, "beam", "false"))
        await browser.js(set_condition(2, "magnet", "night"))
        await browser.select("#run-type", "calibration")
        await browser.click("#start-confirm")  # refused by the form: a name given twice
        self.assertTrue(await browser.js("return document.getElementById('start-dialog').open"))
        self.assertIn("given twice", await browser.js(
            "return document.querySelectorAll('#run-conditions .condition-key')[2].validationMessage"))
        await browser.js(set_condition(2, "shift", "night"))
        await browser.click("#start-confirm")
        await browser.wait_text(STATE, "Recording", timeout=30)
        _, runs = await demo.api("GET", "/api/runs?partition=demo&limit=1")
        self.assertEqual((runs[0]["type"], runs[0]["conditions"]),
                         ("calibration", {"magnet": 0.5, "beam": False, "shift": "night"}))
        code, body = await demo.api("POST", "/api/partitions/demo/stop", body={})
        self.assertEqual(code, 200, body)
        await browser.wait_text(STATE, "QA_Active", timeout=30)

        # The threshold scan from the panel (one line until opened): progress, pause after the step, resume.
        await browser.wait_text("#sequence-status", "No sequence has run")
        await browser.click("#sequence-panel > summary")
        await browser.select("#sequence-select", "threshold-scan")
        await browser.wait_text("#sequence-description", "Threshold scan")
        await browser.click("#sequence-run")
        await browser.wait_text("#reply", "Run sequence threshold-scan: accepted")
        await browser.wait_text("#sequence-status", "threshold-scan running (run by admin), step ")
        self.assertIn("of 12", await browser.text("#sequence-status"))
        self.assertEqual(await browser.attribute("#sequence-run", "title"), "Run: sequence threshold-scan is running")
        await browser.click("#sequence-pause")
        await browser.wait_text("#reply", "Pause sequence: done")
        await browser.wait_text("#sequence-status", "threshold-scan paused (run by admin) after step ", timeout=60)
        await browser.wait_text("#sequence-state", "paused")
        self.assertEqual(await browser.attribute("#sequence-pause", "title"), "Pause: the sequence is paused")
        step = int(await browser.js("return document.getElementById('sequence-progress').value"))
        self.assertGreaterEqual(step, 1)
        await browser.click("#sequence-resume")
        await browser.wait_text("#reply", "Resume sequence: done")
        await browser.wait_text("#sequence-status", "threshold-scan running")
        await browser.wait_js(f"return document.getElementById('sequence-progress').value > {step}",
                              timeout=60, what="the scan's next step")
        _, status = await demo.api("GET", "/api/partitions/demo/sequence")
        self.assertEqual(status["state"], "running")

        # Abort asks first (Cancel sends nothing); then the sequence and the partition stop.
        await browser.open_dialog("#sequence-abort", "confirm")
        self.assertIn("the partition is aborted too", await browser.text("#confirm-text"))
        await browser.close_dialog("#confirm-cancel", "confirm")
        _, status = await demo.api("GET", "/api/partitions/demo/sequence")
        self.assertIn(status["state"], ("running", "paused"))
        await browser.open_dialog("#sequence-abort", "confirm")
        await browser.close_dialog("#confirm-ok", "confirm")
        await browser.wait_text("#reply", "Abort sequence: done")
        await browser.wait_text("#sequence-status", "threshold-scan aborted (run by admin) in step ")
        await browser.wait_text(STATE, "Idle", timeout=30)
        _, status = await demo.api("GET", "/api/partitions/demo/sequence")
        self.assertEqual(status["state"], "aborted")
        self.assertEqual(await browser.attribute("#sequence-run", "title"), "")

        # The audit page lists each of these actions: the start with its type and conditions, the
        # sequence's run, pause, resume and abort, an exclude and an include.
        for action in ("exclude", "include"):
            code, body = await demo.api("POST", f"/api/partitions/demo/{action}", body={"system": "STS"})
            self.assertEqual(code, 200, body)
        await browser.get("/audit")
        await browser.wait_js("return !!document.querySelector('#audit tbody tr[data-id]')", what="the audit trail")
        listed = await browser.js(
            "return [...document.querySelectorAll('#audit tbody td.action')].map(c => c.textContent)"
        )
        for action in ("start", "sequence_run", "sequence_pause", "sequence_resume", "sequence_abort", "exclude",
                       "include"):
            self.assertIn(action, listed)
        arguments = await browser.js("return [...document.querySelectorAll('#audit tbody tr')]"
                                     ".filter(r => r.querySelector('td.action').textContent === 'start')"
                                     ".map(r => r.querySelector('td.arguments').textContent)")
        self.assertTrue(any('"calibration"' in a and '"magnet"' in a for a in arguments), arguments)

        # The state machines page: the rules in force (the shipped file: an alarm for every event).
        await browser.get("/fsm")
        await browser.wait_text("#recovery-source", "recovery.yaml")
        rows = await browser.js("return [...document.querySelectorAll('#recovery-rules tbody tr')]"
                                ".map(r => [...r.cells].map(c => c.textContent))")
        self.assertEqual(rows, [["every system", event, "any", "alarm_only", "—"]
                                for event in ("error", "unreachable", "agent_died")])
        self.assertEqual(await browser.console_errors(), [])
