"""
The live pages in a real browser (headless Chromium from Debian, Selenium):
a shift through the monitor, a second user who cannot command, a killed
controller shown as Connection Problem, and the documentation's
screenshots (C{ECS_SCREENSHOTS=docs/screenshots} writes them there).

Each test starts its own C{ecs-demo} process (about two seconds) and its
browsers; see L{tests.browser}.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.browser import Browser, Demo, screenshot_dir, skip_without_browser, slow_subsystems

MARK = "return window.__ecsMarker === 'still-here'"
SET_MARK = "window.__ecsMarker = 'still-here'"
STATE = "#partitions .partition-state"


def row(system: str, column: str) -> str:
    """The CSS selector of one cell of a system's row."""
    return f'#partitions tr[data-system="{system}"] td.col-{column}'


class MonitorTests(TestCase):
    """The partition monitor and its control panel, as a shift crew uses them."""

    timeout = 150

    def setUp(self) -> None:
        skip_without_browser()

    async def test_shift(self) -> None:
        """
        Log in, take control, select tag demo in the dialog, configure with
        auto-configure and watch QA_Active arrive without a reload; a second
        user sees the controller and cannot command (disabled with the
        reason; a forced request is refused with 409 shown); start, stop,
        abort through its confirmation.
        """
        demo = await Demo.start(self)
        await demo.add_user("shifter", ["operator"])
        admin, shifter = await defer.gatherResults([
            defer.Deferred.fromCoroutine(Browser.open(self, demo, "admin")),
            defer.Deferred.fromCoroutine(Browser.open(self, demo, "shifter")),
        ])
        await admin.get("/partitions/demo")
        await admin.wait_text("#control-holder", "nobody")
        await admin.wait_text("#why", "Configure, Start, Stop, Abort: not in control")
        self.assertEqual(await admin.attribute("#cmd-abort", "title"), "Abort: not in control")
        await admin.js(SET_MARK)

        await admin.click("#take-control")
        await admin.wait_text("#control-holder", "you (admin)")
        await admin.wait_text("#reply", "Take control: done")
        await admin.wait_text("#why", "Start, Stop: not allowed in state Idle")
        await admin.wait_text("#why", "Configure: select a configuration first")

        # The second user: sees admin in control, every command disabled with the reason.
        await shifter.get("/partitions/demo")
        await shifter.js(SET_MARK)
        await shifter.wait_text("#control-holder", "admin")
        await shifter.wait_text("#why", "held by admin")
        for command in ("configure", "start", "stop", "abort"):
            self.assertTrue(await shifter.attribute(f"#cmd-{command}", "disabled"))
        self.assertIn("held by admin", await shifter.attribute("#cmd-abort", "title") or "")
        self.assertTrue(await shifter.attribute("#take-control", "disabled"))

        # The configuration dialog: tag demo fills every system's select.
        await admin.click("#select-config")
        await admin.select("#tag-select", "demo")
        await admin.wait_js("return document.querySelector('select[data-system=STS]').value === 'sts-default'")
        await admin.click('button.details[data-system="STS"]')
        await admin.wait_text('#config-table tr[data-system="STS"] dl', "threshold_adc")
        await admin.select('select.config-select[data-system="STS"]', "sts-low-threshold")
        self.assertEqual(await admin.js("return document.getElementById('tag-select').value"), "")  # custom now
        await admin.wait_text('#config-table tr[data-system="STS"] dl', "6")
        await admin.select("#tag-select", "demo")
        await admin.click("#config-select")
        await admin.wait_text("#selection", "tag demo")

        self.assertTrue(await admin.js("return document.getElementById('auto-configure').checked"))
        await admin.click("#cmd-configure")
        await admin.wait_text("#reply", "Configure: accepted, state ")
        await admin.wait_text(STATE, "QA_Active", timeout=60)
        await admin.wait_text(row("STS", "tag"), "sts-default")
        await shifter.wait_text(STATE, "QA_Active", timeout=30)
        self.assertTrue(await admin.js(MARK), "the monitor was reloaded")
        self.assertTrue(await shifter.js(MARK), "the second user's monitor was reloaded")

        # A forced request from the second user: the server refuses, the page shows it.
        await shifter.js("const b = document.getElementById('cmd-start'); b.disabled = false; b.click();")
        reply = await shifter.wait_text("#reply", "Start: 409")
        self.assertIn("held by admin", reply)
        _, body = await demo.api("GET", "/api/partitions/demo")
        self.assertEqual(body["state"], "QA_Active")

        await admin.click("#cmd-start")
        await admin.wait_text(STATE, "Recording", timeout=30)
        await admin.click("#cmd-stop")
        await admin.wait_text(STATE, "QA_Active", timeout=30)
        await admin.wait_text("#reply", "Stop: accepted, state ")

        # Abort asks first: Cancel sends nothing.
        await admin.click("#cmd-abort")
        await admin.wait_js("return document.getElementById('confirm-abort').open")
        await admin.click("#abort-cancel")
        await admin.wait_js("return !document.getElementById('confirm-abort').open")
        self.assertIn("Stop: accepted, state ", await admin.text("#reply"))
        await admin.click("#cmd-abort")
        await admin.click("#abort-confirm")
        await admin.wait_text("#reply", "Abort: accepted, state ")
        await admin.wait_text(STATE, "Idle", timeout=30)
        await shifter.wait_text(STATE, "Idle", timeout=30)
        self.assertTrue(await admin.js(MARK))
        self.assertEqual(await admin.console_errors(), [])
        self.assertEqual(await shifter.console_errors(), [])

    async def test_control_lost_banner(self) -> None:
        """An admin forcing control away shows the banner on the first user's monitor."""
        demo = await Demo.start(self)
        await demo.add_user("shifter", ["operator"])
        shifter = await Browser.open(self, demo, "shifter")
        await shifter.get("/partitions/demo")
        await shifter.click("#take-control")
        await shifter.wait_text("#control-holder", "you (shifter)")
        code, body = await demo.api("POST", "/api/partitions/demo/control?force=1")
        self.assertEqual(code, 200, body)
        await shifter.wait_text("#banner", "You lost control of demo: admin took it by force.")
        await shifter.wait_text("#control-holder", "admin")
        await shifter.wait_text("#why", "held by admin")


class OverviewTests(TestCase):
    """The overview, live."""

    timeout = 120

    def setUp(self) -> None:
        skip_without_browser()

    async def test_killed_controller(self) -> None:
        """
        Killing a detector's controller shows Connection Problem in its row,
        live (raw state hidden, not connected).  The ECA's supervision may
        start it again at once, so every rendering of the row is recorded
        and searched, rather than the row read at one moment.
        """
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/")
        await browser.wait_text(row("STS", "state"), "Unconfigured")
        await browser.wait_text(row("STS", "connected"), "yes")
        await browser.js(SET_MARK)
        await browser.js("""
            const tr = document.querySelector('#partitions tr[data-system="STS"]');
            const cell = (c) => tr.querySelector('td.col-' + c).textContent;
            window.__stsSeen = [];
            new MutationObserver(() => window.__stsSeen.push([cell('state'), cell('raw'), cell('connected')]))
              .observe(tr, {subtree: true, childList: true, characterData: true});
        """)
        os.kill(demo.children()["STS"], signal.SIGKILL)
        seen = await browser.wait_js(
            "return window.__stsSeen.some((s) => s[0] === 'Connection Problem') && window.__stsSeen",
            timeout=30, what="STS shown as Connection Problem")
        self.assertIn(["Connection Problem", "—", "no"], seen)
        self.assertEqual(await browser.text(row("MVD", "state")), "Unconfigured")
        self.assertTrue(await browser.js(MARK), "the overview was reloaded")

    async def test_burst_for_one_row(self) -> None:
        """
        A burst of 500 events for one row inside one frame leaves the row
        showing the newest (a disconnected system: Connection Problem, red),
        and an older event arriving after them changes nothing; the other
        rows are untouched.
        """
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/")
        await browser.wait_text(row("STS", "state"), "Unconfigured")
        shown = await browser.js_async("""
            const done = arguments[arguments.length - 1];
            const live = window.ECS_LIVE;
            const first = live.lastId + 1000000;
            const event = (n, state, connected) => ({partition: "demo", key: "system/STS", value: {
              id: "STS", kind: "detector", state, raw_state: state + "_" + n, tag: "t" + n, comment: "",
              connected}});
            for (let n = 0; n < 500; n++) {
              live.push("state", event(n, n % 2 ? "Configuring" : "Active", n !== 499), String(first + n));
            }
            live.push("state", event(-1, "Error", true), String(first - 1));  // older than the burst
            requestAnimationFrame(() => requestAnimationFrame(() => {
              const tr = document.querySelector('#partitions tr[data-system="STS"]');
              done([[...tr.querySelectorAll("td")].map((td) => td.textContent),
                    tr.querySelector(".state").className, live.queue.length]);
            }));
        """)
        self.assertEqual(shown, [["STS", "Connection Problem", "—", "t499", "", "no"], "state state-red", 0])
        self.assertEqual(await browser.text(row("MVD", "state")), "Unconfigured")


class AlarmTests(TestCase):
    """Agents that need a person are shown on every page."""

    timeout = 120

    def setUp(self) -> None:
        skip_without_browser()

    async def test_flapping_agent_alarm(self) -> None:
        """A flapping agent raises the alarm in the top bar, live; stopping it clears the alarm."""
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/")
        await browser.wait_text("#connection", "live")
        self.assertFalse(await browser.js("return document.getElementById('alarms').hidden === false"))
        placement = {"host": "localhost", "launcher": "local", "autostart": False,
                     "options": {"agent_args": ["--type", "NoSuchType"]}}
        self.assertEqual((await demo.api("PUT", "/api/agents/detector:BAD", body=placement))[0], 200)
        self.assertEqual((await demo.api("POST", "/api/agents/detector:BAD/start"))[0], 200)
        await browser.wait_text("#alarms", "1 agent needs attention: detector:BAD", timeout=60)
        self.assertIn("flapping", await browser.attribute("#alarms", "title"))
        self.assertEqual(await browser.attribute("#alarms", "href"), demo.base + "/clients")
        self.assertEqual((await demo.api("POST", "/api/agents/detector:BAD/stop"))[0], 200)
        await browser.wait_js("return document.getElementById('alarms').hidden === true", what="the alarm cleared")


class SessionEndTests(TestCase):
    """A page whose session ends stops receiving events and goes to the login page."""

    timeout = 90

    def setUp(self) -> None:
        skip_without_browser()

    async def test_logout_elsewhere_sends_page_to_login(self) -> None:
        """
        The session is logged out by another tab (a fetch with the page's own
        cookie and CSRF token): the ECA ends its event stream, the browser's
        reconnection is refused with 401, and the page goes to the login
        form instead of showing a stale overview as "reconnecting" forever.
        """
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/")
        await browser.wait_text(row("STS", "state"), "Unconfigured")
        await browser.wait_text("#connection", "live")
        status = await browser.js_async("""
            const done = arguments[arguments.length - 1];
            fetch("/api/logout", {method: "POST", credentials: "same-origin",
                                  headers: {"X-CSRF-Token": ECS.csrf()}}).then((r) => done(r.status));
        """)
        self.assertEqual(status, 200)
        await browser.wait(lambda d: "/login" in d.current_url, timeout=30, what="the login page")
        self.assertIn("next=%2F", await browser.run(lambda: browser.driver.current_url))


class ScreenshotTests(TestCase):
    """The documentation's screenshots, and the progress bar while configuring."""

    timeout = 150

    def setUp(self) -> None:
        skip_without_browser()

    async def test_screenshots(self) -> None:
        """Overview, configuration dialog, monitor mid-configure (slow simulated steps): the bar moves, then hides."""
        shots = screenshot_dir(self)
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir(parents=True)

        steps = {"STS": 0.4, "MVD": 0.8, "TOF": 1.2, "TRD": 1.6, "RICH": 2.0,
                 "TFC": 0.5, "DCS": 0.5, "QA": 0.5, "FLES": 0.5}
        demo = await Demo.start(self, detectors=15, subsystems=slow_subsystems(tmp, steps))
        browser = await Browser.open(self, demo, "admin", size=(1400, 1050))
        await browser.get("/partitions/demo")
        await browser.click("#take-control")
        await browser.wait_text("#control-holder", "you (admin)")
        await browser.click("#select-config")
        await browser.select("#tag-select", "demo")
        await browser.click('button.details[data-system="DCS"]')
        await browser.wait_text('#config-table tr[data-system="DCS"] dl', "hv_ramp_v_per_s")
        await browser.click('button.details[data-system="STS"]')
        await browser.wait_text('#config-table tr[data-system="STS"] dl', "threshold_adc")
        await browser.screenshot(shots, "config-dialog.png")
        await browser.click("#config-select")
        await browser.wait_text("#selection", "tag demo")
        await browser.click("#cmd-configure")
        # Mid-configure: the detectors' stage with some ready, some not.
        await browser.wait_js(
            "const b = document.getElementById('progress');"
            "return !document.getElementById('progress-box').hidden && b.max > 5 && b.value >= 1 && b.value < b.max",
            timeout=60, what="progress bar part-way")
        await browser.wait_text("#progress-text", "systems ready")
        await browser.screenshot(shots, "monitor-configuring.png")
        await browser.wait_text(STATE, "QA_Active", timeout=90)
        await browser.wait_js("return document.getElementById('progress-box').hidden", what="progress bar hidden")
        await browser.get("/")
        await browser.wait_text(row("sim9", "state"), "Active")
        await browser.wait_text(STATE, "QA_Active")
        await browser.screenshot(shots, "overview.png")
        for name in ("overview.png", "config-dialog.png", "monitor-configuring.png"):
            self.assertGreater((shots / name).stat().st_size, 10000, name)
