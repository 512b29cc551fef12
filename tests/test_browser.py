"""
The live pages in a real browser (headless Chromium from Debian, Selenium):
a shift through the monitor, a second user who cannot command, a killed
controller shown as Connection Problem, and the documentation's
screenshots (C{ECS_SCREENSHOTS=docs/screenshots} writes them there).

Each test starts its own C{ecs-demo} process (about two seconds) and its
browsers; see L{tests.browser}.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.browser import Browser, Demo, screenshot_dir, skip_without_browser, slow_subsystems
from tests.procs import ROOT, spawn, tool

#: A laptop screen: the window is 1366x768 (Chromium's viewport inside it is smaller still).
SMALL_SCREEN = (1366, 768)
#: JavaScript: is the element (arguments[0], a CSS selector) entirely on screen without scrolling, below the sticky bar?
ON_SCREEN = """
    const e = document.querySelector(arguments[0]);
    if (!e) return "missing";
    const r = e.getBoundingClientRect();
    const bar = document.querySelector(".topbar").getBoundingClientRect().bottom;
    const ok = r.height > 0 && r.width > 0 && r.top >= bar && r.bottom <= innerHeight
               && r.left >= 0 && r.right <= innerWidth;
    return ok ? true : [r.top, r.bottom, r.left, r.right, innerWidth, innerHeight, bar, scrollY];
"""
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
        reason; a forced request is refused with 409 shown); start (with the
        run type and comment of its dialog), stop (with the end comment of its
        confirmation), abort through its confirmation.
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
        await admin.wait_text("#reply", "Configure: accepted")
        # The reply quotes the state the command caused, then fades as the sequence moves on.
        reply = await admin.wait_text("#reply", ", now ")
        self.assertRegex(reply, r"^\d\d:\d\d:\d\d · Configure: accepted, now [A-Za-z_]+")
        await admin.wait_js("return document.getElementById('reply').classList.contains('reply-stale')",
                            what="the configure reply faded")
        await admin.wait_text(STATE, "QA_Active", timeout=60)
        await admin.wait_text(row("STS", "tag"), "sts-default")
        await shifter.wait_text(STATE, "QA_Active", timeout=30)
        self.assertTrue(await admin.js(MARK), "the monitor was reloaded")
        self.assertTrue(await shifter.js(MARK), "the second user's monitor was reloaded")

        # A forced request from the second user: the server refuses, the page shows it.
        await shifter.js("const b = document.getElementById('cmd-start'); b.disabled = false; b.click();")
        await shifter.click("#start-confirm")
        reply = await shifter.wait_text("#reply", "Start: 409")
        self.assertIn("held by admin", reply)
        _, body = await demo.api("GET", "/api/partitions/demo")
        self.assertEqual(body["state"], "QA_Active")

        # Start asks for the run type (the declared ones) and a comment; both reach the run record.
        await admin.click("#cmd-start")
        await admin.wait_js("return document.getElementById('start-dialog').open", what="the start dialog")
        self.assertEqual(await admin.js("return [...document.querySelectorAll('#run-type option')].map(o => o.value)"),
                         ["physics", "calibration", "cosmics", "test"])
        await admin.select("#run-type", "cosmics")
        await admin.js("document.getElementById('run-comment').value = 'overnight cosmics';")
        await admin.click("#start-confirm")
        await admin.wait_text(STATE, "Recording", timeout=30)
        _, runs = await demo.api("GET", "/api/runs?partition=demo&limit=1")
        self.assertEqual((runs[0]["type"], runs[0]["start_comment"]), ("cosmics", "overnight cosmics"))
        await admin.wait_text("#headline-box .tile-sub", "run ")
        # Stop while recording asks first: Cancel sends nothing.
        await admin.click("#cmd-stop")
        await admin.wait_js("return document.getElementById('stop-dialog').open", what="the stop confirmation")
        self.assertIn("The run ends", await admin.text("#stop-dialog-text"))
        await admin.click("#stop-cancel")
        await admin.wait_js("return !document.getElementById('stop-dialog').open")
        _, body = await demo.api("GET", "/api/partitions/demo")
        self.assertEqual(body["state"], "Recording")
        await admin.click("#cmd-stop")
        await admin.js("document.getElementById('stop-comment').value = 'quiet night';")
        await admin.click("#stop-confirm")
        await admin.wait_text(STATE, "QA_Active", timeout=30)
        _, runs = await demo.api("GET", "/api/runs?partition=demo&limit=1")
        self.assertEqual(runs[0]["end_comment"], "quiet night")
        await admin.wait_text("#reply", "Stop: accepted")
        await admin.wait_text("#reply", "now QA_Active")

        # Configure with another tag while configured: what changes against what
        # is running is shown first; Cancel sends nothing.
        await admin.click("#select-config")
        await admin.select("#tag-select", "demo-alt")
        await admin.click("#config-select")
        await admin.wait_text("#selection", "tag demo-alt")
        await admin.click("#cmd-configure")
        await admin.wait_js("return document.getElementById('confirm').open", what="the configure confirmation")
        self.assertIn("STS sts-default → sts-low-threshold", await admin.text("#confirm-text"))
        await admin.click("#confirm-cancel")
        await admin.wait_js("return !document.getElementById('confirm').open")
        _, body = await demo.api("GET", "/api/partitions/demo")
        self.assertEqual(body["state"], "QA_Active")
        self.assertEqual({s["id"]: s["tag"] for s in body["systems"]}["STS"], "sts-default")

        # Abort asks first: Cancel sends nothing.
        await admin.click("#cmd-abort")
        await admin.wait_js("return document.getElementById('confirm-abort').open")
        await admin.click("#abort-cancel")
        await admin.wait_js("return !document.getElementById('confirm-abort').open")
        self.assertIn("Stop: accepted", await admin.text("#reply"))
        await admin.click("#cmd-abort")
        await admin.click("#abort-confirm")
        await admin.wait_text("#reply", "Abort: accepted")
        # The reply quotes the first state the abort caused: the partition may
        # pass a lower active state on its way down (systems abort one by one),
        # and once it moves on the reply says "then" (a fast abort can pass
        # through both before the next look).
        await admin.wait_js(
            "return /Abort: accepted, (now|then) [A-Za-z_]+/.test(document.getElementById('reply').textContent)",
            what="the abort's reply quoting the state it caused",
        )
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
        self.assertEqual(shown, [["STS", "Connection Problem", "—", "t499", "", "no"], "state state-fault", 0])
        self.assertEqual(await browser.text(row("MVD", "state")), "Unconfigured")


async def inject_error(testcase: TestCase, demo: Demo, system: str) -> float:
    """Report a subsystem error to C{system}'s controller with C{ecs inject}; the time its reply came back."""
    output = "\n".join(demo.proc.lines)
    found = re.findall(rf"registered detector {system} at (tcp://\S+)", output)
    if not found:  # a sim host registers its detectors in one line (the demo has one sim host)
        found = re.findall(r"registered \d+ agents at (tcp://\S+)", output)
    testcase.assertTrue(found, f"the demo's output names {system}'s endpoint")
    # The last registration: a restarted controller has a new endpoint.
    inject, _ = spawn(testcase, "inject", [tool("ecs"), "inject", system, "error", "--endpoint", found[-1],
                                           "--state-dir", str(demo.state_dir)], cwd=str(ROOT))
    await inject.wait_for(rf'"{system}": "Error"', timeout=30)
    return time.time()


async def when_headline_says(browser: Browser, text: str) -> None:
    """Record (window.__saidAt) the wall-clock time the page's headline first contains C{text}."""
    await browser.js("""
        const want = arguments[0];
        window.__saidAt = null;
        const look = () => {
          if (window.__saidAt === null && [...document.querySelectorAll('.headline-line')]
              .some((e) => e.textContent.includes(want))) window.__saidAt = Date.now() / 1000;
        };
        new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
        look();
    """, text)


class ConsoleTests(TestCase):
    """The operator console at scale: what is wrong and what to press, at a glance, at 1366x768."""

    timeout = 240

    def setUp(self) -> None:
        skip_without_browser()

    async def test_error_in_300(self) -> None:
        """
        An error injected into one of 300 detectors is named in the
        headline with its next action (overview and monitor), without
        scrolling at 1366x768: the headline, the system's square in the
        heat map and (problems first) its table row; the monitor's button
        resets it and the headline then says that Configure brings it back.
        """
        demo = await Demo.start(self, detectors=300)
        # Two browsers are two sessions: one user each (one session per user).
        await demo.add_user("watcher", ["viewer"])
        overview, monitor = await defer.gatherResults([
            defer.Deferred.fromCoroutine(Browser.open(self, demo, "watcher", size=SMALL_SCREEN)),
            defer.Deferred.fromCoroutine(Browser.open(self, demo, "admin", size=SMALL_SCREEN)),
        ])
        await overview.get("/")
        await monitor.get("/partitions/demo")
        for browser in (overview, monitor):
            await browser.wait_js("return document.querySelectorAll('.heatmap .cell').length === 309", timeout=60,
                                  what="309 squares in the heat map")
            await browser.wait_text(".headline-line", "Not configured")
            await when_headline_says(browser, "sim150 in Error")
        sent = await inject_error(self, demo, "sim150")
        wanted = "sim150 in Error: reset sim150, then Configure"
        for browser in (overview, monitor):
            await browser.wait_text(".headline-line", wanted, timeout=10)
            latency = (await browser.js("return window.__saidAt")) - sent
            self.assertLess(latency, 5.0, "the headline named the error late")
            where = browser.driver.current_url
            print(f"\nheadline named sim150 {latency * 1000:.0f} ms after the inject reply ({where})")
        await monitor.wait_text("#headline-action", "Reset sim150")
        await overview.wait_js("return document.querySelector('.heatmap .cell[data-system=sim150]').title === "
                               "'sim150: Error'")
        await monitor.wait_js("return document.querySelector('#partitions tbody tr').dataset.system === 'sim150'",
                              what="sim150 first in the detectors table (problems first)")
        for browser, elements in ((overview, [".headline-line", ".heatmap .cell[data-system=sim150]", ".tile-fault"]),
                                  (monitor, ["#headline-box .headline-line", "#headline-action", ".tile-fault",
                                             "#partitions tr[data-system=sim150]",
                                             ".heatmap .cell[data-system=sim150]"])):
            await browser.js("window.scrollTo(0, 0)")
            for css in elements:
                shown = await browser.js(ON_SCREEN, css)
                self.assertIs(shown, True, f"{css} on screen at {browser.driver.current_url}: {shown}")
        # Three partitions of 300 detectors fit the overview: two more cards (fed the picture a partition of
        # 300 would load, as the page does) and every card's tile, line and heat map are on screen.
        await overview.js("""
            const live = window.ECS_LIVE;
            const seq = live.views.get("demo").seq;
            for (const pid of ["second", "third"]) {
              const systems = ["TFC", "FLES", "DCS", "QA"].map((id) => ({id, kind: "global", state: "Active",
                raw_state: "Active", tag: null, comment: "", connected: true}));
              for (let n = 1; n <= 300; n++) systems.push({id: pid + n, kind: "detector",
                state: n === 7 && pid === "third" ? "Error" : "Active", raw_state: "Active", tag: null, comment: "",
                connected: true});
              const view = new LIVE.PartitionView(pid, live.options.container, {...live.options, seq});
              live.views.set(pid, view);
              view.load({id: pid, state: "QA_Active", tag: "demo", controller: null, connected: true, locked: false,
                         operation: null, allowed: [], progress: null, systems}, live.lastId);
            }
            live.schedule();
        """)
        await overview.wait_text('.partition[data-partition="third"] .headline-line', "third7 in Error")
        await overview.js("window.scrollTo(0, 0)")
        for pid in ("demo", "second", "third"):
            for part in (".tile", ".headline-line", ".heatmap"):
                css = f'.partition[data-partition="{pid}"] {part}'
                shown = await overview.js(ON_SCREEN, css)
                self.assertIs(shown, True, f"{css} on screen with three partitions of 300: {shown}")
        await overview.screenshot(screenshot_dir(self), "overview-3x300.png")

        # The count by state filters the table to the one system in Error.
        await monitor.click('.counts button[data-state="Error"]')
        await monitor.wait_js("return [...document.querySelectorAll('#partitions tbody tr')]"
                              ".filter((tr) => !tr.hidden).length === 1")
        await monitor.wait_text(".shown-count", "1 of 309 shown")
        await monitor.click('.counts button[data-state="Error"]')
        await monitor.wait_js("return document.querySelectorAll('#partitions tbody tr[hidden]').length === 0")
        # The action: reset, then the headline names Configure as what brings it back.
        await monitor.click("#take-control")
        await monitor.wait_text("#control-holder", "you (admin)")
        await monitor.click("#headline-action")
        await monitor.wait_text(".headline-line", "then Configure", timeout=30)
        await monitor.wait_text(".headline-line", "Not configured")
        await monitor.wait_text("#reply", "Reset sim150: accepted")
        await monitor.wait_text("#reply", "now Unconfigured")
        self.assertEqual(await overview.console_errors(), [])
        self.assertEqual(await monitor.console_errors(), [])


def audit_rows(demo: Demo, action: str) -> list[tuple[str, str, str]]:
    """The demo's audit trail for C{action}: (user, arguments, outcome), read from its database."""
    db = sqlite3.connect(f"file:{demo.state_dir / 'ecs.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute("SELECT user, arguments, outcome FROM audit WHERE action = ? ORDER BY id", (action,)))
    finally:
        db.close()


async def record_and_start(demo: Demo) -> None:
    """As admin through the API: take control of demo, configure it with tag demo, start a run."""
    for path, body in (("control", None), ("configure", {"tag": "demo", "auto": True})):
        code, answer = await demo.api("POST", f"/api/partitions/demo/{path}", body=body)
        if code != 200:
            raise AssertionError(f"{path}: {code} {answer}")
    await demo.until(lambda p: p["state"] == "QA_Active", what="QA_Active")
    code, answer = await demo.api("POST", "/api/partitions/demo/start")
    if code != 200:
        raise AssertionError(f"start: {code} {answer}")
    await demo.until(lambda p: p["state"] == "Recording", what="Recording")


class HeadlineTests(TestCase):
    """The headline's rules (headline.js) run in the page, and the page when the ECA is gone."""

    timeout = 120

    def setUp(self) -> None:
        skip_without_browser()

    async def test_rules(self) -> None:
        """
        The sequence's stages come from the partition table in configure
        order with their systems; each situation gives its line, tile and
        action (the first problem wins: ECA gone, PCA gone, Error, no
        answer, then the state's next step).
        """
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/")
        await browser.wait_text(".headline-line", "Not configured")
        seen = await browser.js_async("""
            const done = arguments[arguments.length - 1];
            ECS.api("GET", "/api/systems").then((r) => {
              const seq = HEADLINE.sequence(r.data);
              const sys = (id, kind, state, live) => ({id, kind, state, live: live !== false});
              const systems = [sys("TFC", "global", "Active"), sys("STS", "detector", "Active"),
                               sys("MVD", "detector", "Configuring"), sys("FLES", "global", "Unconfigured"),
                               sys("DCS", "global", "Unconfigured"), sys("QA", "global", "Unconfigured")];
              const info = (state, more) => ({state, connected: true, operation: null, locked: false, ...more});
              const base = {pid: "demo", link: "live", systems, alarms: [], seq, progress: null, run: null};
              const say = (changes) => {
                const d = HEADLINE.diagnose({...base, ...changes});
                return [d.state, d.category, d.line, d.action && d.action.command];
              };
              const alarm = {id: 5, source: "STS", partition: "demo", severity: "error", kind: "system_error",
                             text: "STS in Error", action: "call the STS expert", raised_at: 1, cleared_at: null,
                             acknowledged_by: null, shelved_until: null};
              done({
                stages: seq.stages.map((s) => [s.name, s.configuring, s.active, s.systems]),
                recording: seq.recording, top: seq.top,
                progress: HEADLINE.stageProgress(seq, "Configuring_Detectors", systems)
                  .map((s) => [s.name, s.status, s.ready, s.total]),
                eca: say({link: "down", info: info("Idle")}),
                pca: say({info: info("Idle", {connected: false})}),
                error: say({info: info("TFC_Active"), systems: [...systems, sys("TOF", "detector", "Error")]}),
                errorAlarm: say({info: info("TFC_Active"), systems: [sys("STS", "detector", "Error")],
                                 alarms: [alarm]}),
                lost: say({info: info("TFC_Active"), systems: [sys("STS", "detector", "Active", false)]}),
                working: say({info: info("Configuring_Detectors", {operation: "configuring stage Detectors (2 of 4)"}),
                              progress: {stage: "Detectors", ready: 1, total: 2}}),
                idle: say({info: info("Idle")}),
                partial: say({info: info("TFC_Active")}),
                ready: say({info: info("QA_Active")}),
                run: say({info: info("Recording"), run: {number: 7, started: 0}}),
              });
            });
        """)
        self.assertEqual(seen["stages"], [["TFC", "Configuring_TFC", "TFC_Active", ["TFC"]],
                                          ["Detectors", "Configuring_Detectors", "Detectors_Active", None],
                                          ["FLES_and_DCS", "Configuring_FLES_and_DCS", "FLES_and_DCS_Active",
                                           ["FLES", "DCS"]],
                                          ["QA", "Configuring_QA", "QA_Active", ["QA"]]])
        self.assertEqual((seen["recording"], seen["top"]), ("Recording", "QA_Active"))
        self.assertEqual(seen["progress"], [["TFC", "done", 1, 1], ["Detectors", "current", 1, 2],
                                            ["FLES_and_DCS", "pending", 0, 2], ["QA", "pending", 0, 1]])
        self.assertEqual(seen["eca"][:2], ["ECA not reachable", "fault"])
        self.assertIn("ECA not reachable", seen["eca"][2])
        self.assertEqual(seen["pca"][:2], ["Connection Problem", "fault"])
        self.assertIn("PCA of demo does not answer", seen["pca"][2])
        self.assertEqual(seen["error"], ["TFC_Active", "fault", "TOF in Error: reset TOF, then Configure", "reset"])
        self.assertEqual(seen["errorAlarm"][2], "STS in Error: call the STS expert")
        self.assertEqual(seen["lost"][1], "fault")
        self.assertIn("STS does not answer (Connection Problem)", seen["lost"][2])
        self.assertEqual(seen["working"], ["Configuring_Detectors", "working",
                                           "Configuring stage Detectors (2 of 4): 1 of 2 ready; wait, or Abort", None])
        self.assertEqual(seen["idle"], ["Idle", "resting", "Not configured: choose a configuration, then Configure",
                                        "configure"])
        self.assertEqual(seen["partial"], ["TFC_Active", "resting",
                                           "Configured up to TFC_Active: Configure brings it to QA_Active",
                                           "configure"])
        self.assertEqual(seen["ready"], ["QA_Active", "ready", "Configured and ready: Start a run", "start"])
        self.assertEqual(seen["run"], ["Recording", "recording", "Recording run 7: Stop ends the run", "stop"])

    async def test_eca_gone(self) -> None:
        """With the ECA stopped the monitor says "ECA not reachable" (top bar, headline, disabled buttons)."""
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/partitions/demo")
        await browser.click("#take-control")
        await browser.wait_text("#control-holder", "you (admin)")
        demo.transport.signalProcess("TERM")
        await demo.proc.ended
        await browser.wait_text("#connection", "ECA not reachable", timeout=30)
        await browser.wait_text("#headline-box .tile-state", "ECA not reachable")
        await browser.wait_text("#why", "ECA not reachable")
        self.assertNotIn("PCA", await browser.text("#why"))
        self.assertTrue(await browser.attribute("#cmd-configure", "disabled"))


class AlarmTests(TestCase):
    """Alarms in the top bar, the tab title, the panel and the headline; agents that need a person."""

    timeout = 180

    def setUp(self) -> None:
        skip_without_browser()

    async def test_failed_run_alarm(self) -> None:
        """
        Killing STS while recording fails the run: the alarm shows in the
        top bar, the tab title and the headline, and stays after STS is
        back until an operator acknowledges it in the panel (audited).
        An expert shelves a subsystem's Error alarm with a reason (audited):
        it no longer counts.
        """
        demo = await Demo.start(self)
        await demo.add_user("shifter", ["operator"])
        await record_and_start(demo)
        shifter = await Browser.open(self, demo, "shifter", size=SMALL_SCREEN)
        await shifter.get("/partitions/demo")
        await shifter.wait_js("return document.querySelector('#headline-box .tile')?.dataset.category === 'recording'",
                              what="the recording tile")
        await shifter.wait_text("#headline-box .tile-sub", "run 1 · since ")
        await shifter.wait_text("#headline-box .tile-elapsed", " elapsed")
        await shifter.wait_text("#alarm-button", "No alarms")
        os.kill(demo.children()["STS"], signal.SIGKILL)
        await shifter.wait_text("#headline-box .headline-alarm", "run 1 of demo failed", timeout=60)
        await shifter.wait_js("return /^\\(\\d+\\) /.test(document.title)", what="the alarm count in the tab title")
        # STS comes back (supervision); the failed run's alarm stays until acknowledged.
        await demo.until(lambda p: all(s["connected"] for s in p["systems"]), timeout=60, what="STS back")
        await shifter.wait_text(row("STS", "connected"), "yes", timeout=30)
        _, alarms = await demo.api("GET", "/api/alarms")
        failed = next(a for a in alarms if a["kind"] == "run_failed")
        self.assertIsNone(failed["acknowledged_by"])
        self.assertIn("run 1 of demo failed", await shifter.text("#headline-box .headline-alarm"))
        await shifter.click("#alarm-button")
        await shifter.wait_js("return !document.getElementById('alarm-panel').hidden")
        item = f'#alarm-list li[data-alarm="{failed["id"]}"]'
        await shifter.wait_text(item, "run 1 of demo failed")
        await shifter.click(f"{item} button.alarm-ack")
        await shifter.wait_js(f"return !document.querySelector('{item}')", what="the acknowledged alarm gone")
        self.assertEqual(await shifter.console_errors(), [])
        self.assertEqual([(u, json.loads(a), o) for u, a, o in audit_rows(demo, "acknowledge_alarm")],
                         [("shifter", {"alarm": failed["id"]}, "ok")])

        # An expert shelves an Error alarm; the operator may not (the button says why).
        await inject_error(self, demo, "STS")
        await shifter.wait_text("#alarm-list", "STS in Error", timeout=30)
        _, alarms = await demo.api("GET", "/api/alarms")
        error = next(a for a in alarms if a["kind"] == "system_error" and a["source"] == "STS")
        item = f'#alarm-list li[data-alarm="{error["id"]}"]'
        self.assertEqual(await shifter.attribute(f"{item} button.alarm-shelve", "title"), "needs role expert")
        admin = await Browser.open(self, demo, "admin", size=SMALL_SCREEN)
        await admin.get("/")
        count = "return parseInt(document.getElementById('alarm-button').textContent, 10) || 0"
        await admin.click("#alarm-button")
        await admin.wait_text(item, "STS in Error")
        before = await admin.js(count)
        self.assertGreaterEqual(before, 1)
        await admin.run(lambda: admin.driver.find_element("id", "shelve-reason").send_keys("STS crate under repair"))
        await admin.click(f"{item} button.alarm-shelve")
        await admin.wait_text(item, "shelved by admin until ")
        await admin.wait_js(f"return ({count[7:]}) === {before - 1}",
                            what="the shelved alarm no longer counted")
        rows = audit_rows(demo, "shelve_alarm")
        self.assertEqual([(u, o) for u, _, o in rows], [("admin", "ok")])
        self.assertIn("STS crate under repair", rows[0][1])

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

    async def test_signed_in_elsewhere(self) -> None:
        """
        One session per user: the same user logs in with a second browser;
        the first page says it was signed out, when and from where, and
        stays on screen (no jump to the login form); its next request goes
        to the login form, which repeats the reason.
        """
        demo = await Demo.start(self)
        first = await Browser.open(self, demo, "admin")
        await first.get("/")
        await first.wait_text("#connection", "live", timeout=30)
        await first.js(SET_MARK)
        await Browser.open(self, demo, "admin")
        await first.wait_text("#banner", "signed out: you signed in elsewhere at ", timeout=30)
        self.assertRegex(await first.text("#banner"), r"from 127\.0\.0\.1$")
        self.assertTrue(await first.js(MARK), "the old page was replaced")
        await first.js("ECS.api('GET', '/api/partitions')")
        await first.wait(lambda d: "/login" in d.current_url, timeout=30, what="the login page")
        await first.wait_text("#logged-out", "Signed out: you signed in elsewhere at ", timeout=30)


class ScreenshotTests(TestCase):
    """
    The documentation's screenshots at 1366x768 (idle, the configuration
    dialog, configuring, recording, a fault with its alarm, the overview,
    300 detectors), and the progress bar and stages while configuring.
    """

    timeout = 300

    def setUp(self) -> None:
        skip_without_browser()

    async def test_screenshots(self) -> None:
        """A shift with slow simulated steps: each state photographed once it shows; the bar moves, then hides."""
        shots = screenshot_dir(self)
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir(parents=True)

        steps = {"STS": 0.4, "MVD": 0.8, "TOF": 1.2, "TRD": 1.6, "RICH": 2.0,
                 "TFC": 0.5, "DCS": 0.5, "QA": 0.5, "FLES": 0.5}
        demo = await Demo.start(self, detectors=15, subsystems=slow_subsystems(tmp, steps))
        browser = await Browser.open(self, demo, "admin", size=SMALL_SCREEN)
        await browser.get("/partitions/demo")
        await browser.click("#take-control")
        await browser.wait_text("#control-holder", "you (admin)")
        await browser.wait_text(".headline-line", "Not configured")
        await browser.screenshot(shots, "monitor-idle.png")
        await browser.click("#select-config")
        await browser.select("#tag-select", "demo")
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
        await browser.wait_text(".stage-current", "Detectors")
        await browser.screenshot(shots, "monitor-configuring.png")
        await browser.wait_text(STATE, "QA_Active", timeout=90)
        await browser.wait_js("return document.getElementById('progress-box').hidden", what="progress bar hidden")
        await browser.wait_text(".headline-line", "Start a run")
        await browser.click("#headline-action")
        await browser.click("#start-confirm")  # the start dialog: the first run type, no comment
        await browser.wait_text(STATE, "Recording", timeout=30)
        await browser.wait_text(".tile-elapsed", "00:00:02", timeout=30)
        await browser.screenshot(shots, "monitor-recording.png")
        # A fault: STS dies while recording (the run fails), then reports an Error when it is back.
        os.kill(demo.children()["STS"], signal.SIGKILL)
        await browser.wait_text(".headline-alarm", "failed", timeout=60)
        await demo.until(lambda p: all(s["connected"] for s in p["systems"]), timeout=60, what="STS back")
        await inject_error(self, demo, "STS")
        await browser.wait_text(".headline-line", "STS in Error: reset STS, then Configure", timeout=30)
        await browser.js("window.scrollTo(0, 0)")
        await browser.screenshot(shots, "monitor-fault.png")
        await browser.click("#alarm-button")
        await browser.wait_text("#alarm-list", "STS in Error")
        await browser.screenshot(shots, "alarms.png")
        await browser.get("/")
        await browser.wait_text(".headline-line", "STS in Error")
        await browser.screenshot(shots, "overview.png")
        for name in ("monitor-idle.png", "config-dialog.png", "monitor-configuring.png", "monitor-recording.png",
                     "monitor-fault.png", "alarms.png", "overview.png"):
            self.assertGreater((shots / name).stat().st_size, 10000, name)
        self.assertEqual(await browser.console_errors(), [])

    async def test_screenshots_300(self) -> None:
        """Overview and monitor of a partition of 300 detectors, one in Error."""
        shots = screenshot_dir(self)
        demo = await Demo.start(self, detectors=300)
        browser = await Browser.open(self, demo, "admin", size=SMALL_SCREEN)
        await inject_error(self, demo, "sim150")
        await browser.get("/")
        await browser.wait_text(".headline-line", "sim150 in Error")
        await browser.wait_js("return document.querySelectorAll('.heatmap .cell').length === 309", what="309 squares")
        await browser.screenshot(shots, "overview-300.png")
        await browser.get("/partitions/demo")
        await browser.wait_text(".headline-line", "sim150 in Error")
        await browser.wait_js("return document.querySelectorAll('.heatmap .cell').length === 309", what="309 squares")
        await browser.screenshot(shots, "monitor-300.png")
        for name in ("overview-300.png", "monitor-300.png"):
            self.assertGreater((shots / name).stat().st_size, 10000, name)
