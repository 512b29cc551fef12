"""
The management pages in a real browser (headless Chromium from Debian,
Selenium; see L{tests.browser}): edit a configuration and see its new
version, add a user, list the agents, draw a state machine with the current
state lit, and move a detector between two partitions while both partition
monitors follow live.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.browser import Browser, Demo, skip_without_browser

MARK = "return window.__ecsMarker === 'still-here'"
SET_MARK = "window.__ecsMarker = 'still-here'"


async def script_errors(browser: Browser) -> list[str]:
    """Console errors other than the refused requests the test provoked on purpose."""
    return [e for e in await browser.console_errors() if "Failed to load resource" not in e]


def monitor_row(partition: str, system: str) -> str:
    """The CSS selector of a system's row on a partition monitor."""
    return f'#partitions section[data-partition="{partition}"] tr[data-system="{system}"]'


class AdminPagesTests(TestCase):
    """Configurations, users, clients, state machines, and every page without script errors."""

    timeout = 150

    def setUp(self) -> None:
        skip_without_browser()

    async def test_pages(self) -> None:
        """Save a configuration (new version shown), a single-parameter one, add a user; every page loads cleanly."""
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")

        # A new version of an existing configuration.
        await browser.get("/configs")
        await browser.select("#cfg-system", "STS")
        await browser.select("#cfg-list", "sts-default")
        await browser.wait_js("return document.getElementById('cfg-version').options.length > 0")
        await browser.click("#cfg-edit")
        await browser.wait_js("return document.getElementById('cfg-id').value === 'sts-default'")
        await browser.click("#cfg-add-row")
        await browser.js("const r = [...document.querySelectorAll('#cfg-params tbody tr')].pop();"
                         "r.querySelector('.param-name').value = 'threshold';"
                         "r.querySelector('.param-value').value = '42';")
        await browser.click("#cfg-save")
        await browser.wait_text("#cfg-diff", "threshold")  # the change is shown and confirmed before saving
        await browser.click("#cfg-confirm")
        try:
            await browser.wait_text("#reply", "Saved sts-default as version 2", timeout=10)
        except AssertionError:
            print("REPLY", await browser.text("#reply"), "DIFF", await browser.text("#cfg-diff"))
            raise
        await browser.wait_js("return document.getElementById('cfg-version').value === '2'")
        code, saved = await demo.api("GET", "/api/configs/sts-default")
        self.assertEqual((code, saved["version"], saved["parameters"]["threshold"]), (200, 2, 42))

        # A configuration with a single parameter saves (the original could not).
        await browser.click("#cfg-new")
        await browser.js("document.getElementById('cfg-id').value = 'tof-single';")
        await browser.select("#cfg-form-system", "TOF")
        await browser.js("const r = document.querySelector('#cfg-params tbody tr');"
                         "r.querySelector('.param-name').value = 'gain';"
                         "r.querySelector('.param-value').value = 'high';")
        await browser.click("#cfg-save")
        await browser.wait_text("#reply", "Saved tof-single as version 1")
        code, single = await demo.api("GET", "/api/configs/tof-single")
        self.assertEqual((code, single["parameters"]), (200, {"gain": "high"}))

        # A refusal is shown with its reason.
        await browser.click("#cfg-new")
        await browser.js("document.getElementById('cfg-id').value = 'bad name!';")
        await browser.select("#cfg-form-system", "TOF")
        await browser.click("#cfg-save")
        await browser.wait_text("#reply", "400")

        # The users page adds a user.
        await browser.get("/users")
        await browser.wait_text("#users", "admin")
        await browser.js("document.getElementById('new-username').value = 'newbie';"
                         "document.getElementById('new-password').value = 'long-enough-pw';"
                         "document.querySelector('#new-roles input[value=operator]').checked = true;")
        await browser.click("#add-user-button")
        await browser.wait_text("#users", "newbie")
        await browser.wait_text("#reply", "Add user newbie: done")
        code, users = await demo.api("GET", "/api/users")
        self.assertIn(["viewer", "operator"], [u["roles"] for u in users if u["name"] == "newbie"])

        # The clients page lists the agents (when the ECA supervises them).
        code, agents = await demo.api("GET", "/api/agents")
        await browser.get("/clients")
        if code == 200 and agents:
            first = agents[0]["agent"]
            await browser.wait_js(f"return !!document.querySelector('#clients tr[data-agent=\"{first}\"]')")
            rows = await browser.js("return document.querySelectorAll('#clients tbody tr[data-agent]').length")
            self.assertEqual(rows, len(agents))
        else:
            await browser.wait_js("return !document.getElementById('clients-unavailable').hidden")

        # The partition machine drawn with its current state lit.
        await browser.get("/fsm?show=p:demo")
        await browser.wait_text("#fsm-current", "current state Idle")
        await browser.wait_js("const i = document.getElementById('fsm-svg');"
                              "return i.hidden ? document.getElementById('fsm-dot').textContent.includes('digraph')"
                              " : i.complete && i.naturalWidth > 0")

        # The other pages load without script errors.
        for path, ready in [("/tags", "#tag-list option"), ("/manage", "#move-from option"),
                            ("/runs", "#runs tbody tr"), ("/logs", "#logs tbody tr"),
                            ("/audit", "#audit tbody tr[data-id]")]:
            await browser.get(path)
            await browser.wait_js(f"return !!document.querySelector('{ready}')", what=f"{path} loaded")
        self.assertEqual(await script_errors(browser), [])


class MoveTests(TestCase):
    """Moving a detector between partitions through the management page."""

    timeout = 150

    def setUp(self) -> None:
        skip_without_browser()

    async def test_move_detector(self) -> None:
        """Create a second partition, move STS into it: both monitors update live, without reload."""
        demo = await Demo.start(self)
        expert = await Browser.open(self, demo, "admin")
        await expert.get("/manage")
        await expert.click("#ecs-take")
        await expert.wait_text("#ecs-holder", "you")
        await expert.js("document.getElementById('new-partition').value = 'second';")
        await expert.click("#create-partition button[type=submit]")
        await expert.wait_text("#reply", "Create partition second: done")
        await demo.until(lambda p: p["connected"], partition="second", what="PCA of second connected")

        # One session per user: the two watchers are other users, or their
        # logins would sign the expert out.
        await demo.add_user("watcher1", ["viewer"])
        await demo.add_user("watcher2", ["viewer"])
        demo_view = await Browser.open(self, demo, "watcher1")
        await demo_view.get("/partitions/demo")
        await demo_view.wait_js(f"return !!document.querySelector('{monitor_row('demo', 'STS')}')")
        await demo_view.js(SET_MARK)
        second_view = await Browser.open(self, demo, "watcher2")
        await second_view.get("/partitions/second")
        await second_view.wait_js("return !!document.querySelector('#partitions section[data-partition=\"second\"]')")
        await second_view.js(SET_MARK)
        self.assertFalse(await second_view.js(f"return !!document.querySelector('{monitor_row('second', 'STS')}')"))

        await expert.get("/manage")
        await expert.wait_text("#ecs-holder", "Holder: you.")  # read from GET /api/control on load
        await expert.select("#move-from", "demo")
        await expert.select("#move-to", "second")
        await expert.wait_js("return !!document.querySelector('#move-detectors input[value=STS]')")
        await expert.js("document.querySelector('#move-detectors input[value=STS]').checked = true;")
        await expert.click("#move-button")
        await expert.wait_text("#reply", "Move STS to second: done")

        await second_view.wait_js(f"return !!document.querySelector('{monitor_row('second', 'STS')}')",
                                  what="STS on the monitor of second")
        await demo_view.wait_js(f"return !document.querySelector('{monitor_row('demo', 'STS')}')",
                                what="STS gone from the monitor of demo")
        self.assertTrue(await demo_view.js(MARK), "the demo monitor was reloaded")
        self.assertTrue(await second_view.js(MARK), "the second monitor was reloaded")
        _, systems = await demo.api("GET", "/api/systems")
        self.assertIn({"id": "STS", "type": "STS", "partition": "second"}, systems["detectors"])

        # A refused move is listed per detector with a force retry.
        await expert.select("#move-from", "second")
        await expert.select("#move-to", "demo")
        await expert.wait_js("return !!document.querySelector('#move-detectors input[value=STS]')")
        await expert.click("#ecs-release")
        await expert.wait_text("#ecs-holder", "nobody")
        await expert.js("document.querySelector('#move-detectors input[value=STS]').checked = true;")
        await expert.click("#move-button")
        await expert.wait_text("#manage-errors", "STS")
        self.assertIn("control of the ECS", await expert.text("#manage-errors"))
        self.assertEqual(await script_errors(expert), [])

    async def test_move_configured_asks(self) -> None:
        """Moving a configured (Active) detector out of its partition asks first; Cancel moves nothing."""
        demo = await Demo.start(self)
        for path, body in (("control", None), ("configure", {"tag": "demo", "auto": True})):
            code, answer = await demo.api("POST", f"/api/partitions/demo/{path}", body=body)
            self.assertEqual(code, 200, answer)
        await demo.until(lambda p: p["state"] == "QA_Active", what="QA_Active")
        expert = await Browser.open(self, demo, "admin")
        await expert.get("/manage")
        await expert.click("#ecs-take")
        await expert.wait_text("#ecs-holder", "you")
        await expert.select("#move-from", "demo")
        await expert.select("#move-to", "")
        await expert.wait_js("return !!document.querySelector('#move-detectors input[value=STS]')")
        await expert.js("document.querySelector('#move-detectors input[value=STS]').checked = true;")
        await expert.click("#move-button")
        await expert.wait_js("return document.getElementById('confirm').open", what="the move confirmation")
        text = await expert.text("#confirm-text")
        self.assertIn("configured detector(s) STS (Active) out of demo", text)
        self.assertIn("configured again", text)
        await expert.click("#confirm-cancel")
        await expert.wait_js("return !document.getElementById('confirm').open")
        _, systems = await demo.api("GET", "/api/systems")
        self.assertIn({"id": "STS", "type": "STS", "partition": "demo"}, systems["detectors"])
        self.assertEqual(await script_errors(expert), [])
