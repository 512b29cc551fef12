# -*- test-case-name: tests.test_browser_logbook -*-
"""
The logbook page follows new entries live, in a real browser (headless
Chromium, see L{tests.browser}): an entry written through the API while a
viewer has the page open appears at the top without a reload, once; one
that does not match the page's filters does not; when the page cannot
tell (a search text that is not ASCII), a refresh notice shows instead.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.browser import Browser, Demo, skip_without_browser

ROWS = "return [...document.querySelectorAll('#logbook tbody tr')].map(r => r.dataset.id)"


class LiveLogbookTests(TestCase):
    """The logbook page, live."""

    timeout = 150

    def setUp(self) -> None:
        skip_without_browser()

    async def test_new_entry_appears(self) -> None:
        """A matching entry appears at the top without reload and only once; a non-matching one never;
        a search the page cannot match exactly shows a refresh notice instead."""
        demo = await Demo.start(self)
        await demo.add_user("vera", ["viewer"])
        browser = await Browser.open(self, demo, "vera")
        await browser.get("/logbook?partition=demo")
        await browser.wait_text("#connection", "live")
        await browser.wait_text("#logbook-count", "entries shown")
        before = await browser.js(ROWS)
        await browser.js("window.__ecsMarker = 'still-here'")

        code, other = await demo.api("POST", "/api/logbook", body={"text": "beam tuning, no partition"})
        self.assertEqual(code, 200, other)
        code, entry = await demo.api("POST", "/api/logbook", body={"text": "STS noisy", "partition": "demo", "run": 4})
        self.assertEqual(code, 200, entry)

        row = f'#logbook tbody tr[data-id="{entry["id"]}"]'
        await browser.wait_text(row, "STS noisy")
        self.assertTrue(await browser.js("return window.__ecsMarker === 'still-here'"), "the page was reloaded")
        shown = await browser.js(ROWS)
        self.assertEqual(shown, [str(entry["id"]), *before])  # at the top, once; the other one not at all
        self.assertNotIn(str(other["id"]), shown)
        self.assertEqual(await browser.text("#logbook-count"), f"{len(before) + 1} entries shown")

        # A search text the page cannot match as the ECA does (not ASCII): a notice, and the refresh shows it.
        await browser.js("document.getElementById('logbook-fpartition').value = '';"
                         "document.getElementById('logbook-q').value = 'café';")
        await browser.click("#logbook-show")
        await browser.wait_text("#logbook-count", "0 entries shown")
        code, cafe = await demo.api("POST", "/api/logbook", body={"text": "Café closed at 22:00"})
        self.assertEqual(code, 200, cafe)
        await browser.wait_js("return !document.getElementById('logbook-new').hidden", what="the refresh notice")
        self.assertEqual(await browser.js(ROWS), [])
        await browser.click("#logbook-refresh")
        await browser.wait_text(f'#logbook tbody tr[data-id="{cafe["id"]}"]', "Café closed")
        self.assertTrue(await browser.js("return document.getElementById('logbook-new').hidden"))
