# -*- test-case-name: tests.test_configs_page -*-
"""
Trustworthy configurations in a real browser (headless Chromium, Selenium;
see L{tests.browser}): the configuration editor refuses a value that does
not read as its parameter's type, naming the parameter and what was
expected, and shows the difference against the latest version before it
saves; the monitor's configuration dialog opens on the partition's current
tag even when that tag also covers a system outside the partition, and
says what the choice changes against what is running (also through
C{CONFIGDIALOG.changes}, for a confirmation before Configure).
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.browser import Browser, Demo, skip_without_browser

ROW = ("[...document.querySelectorAll('#cfg-params tbody tr')]"
       ".find((r) => r.querySelector('.param-name').value === {name!r})")


def set_param(name: str, value: str) -> str:
    """JavaScript that types C{value} into the row of parameter C{name}."""
    return f"{{ const r = {ROW.format(name=name)}; r.querySelector('.param-value').value = {value!r}; }}"


class ConfigEditorTests(TestCase):
    """Typed parameters and the diff before a save."""

    timeout = 150

    def setUp(self) -> None:
        skip_without_browser()

    async def test_bad_list_refused_then_diff_confirmed(self) -> None:
        """
        "[3, 17" for a list parameter is refused with a message naming it
        and a list; nothing is saved; "[3, 17]" shows the change against
        version 1 and saves version 2 only after Confirm.
        """
        demo = await Demo.start(self)
        browser = await Browser.open(self, demo, "admin")
        await browser.get("/configs")
        await browser.select("#cfg-system", "STS")
        await browser.select("#cfg-list", "sts-default")
        await browser.wait_js("return document.getElementById('cfg-version').options.length > 0")
        await browser.click("#cfg-edit")
        await browser.wait_js("return document.getElementById('cfg-id').value === 'sts-default'")
        types = await browser.js(
            "return Object.fromEntries([...document.querySelectorAll('#cfg-params tbody tr')].map("
            "(r) => [r.querySelector('.param-name').value, r.querySelector('.param-type').value]))")
        self.assertEqual(types["masked_channels"], "list")
        self.assertEqual(types["threshold_adc"], "number")
        self.assertEqual(types["adc_gain"], "text")

        # Refused before anything is sent: the message names the parameter and the type.
        await browser.js(set_param("masked_channels", "[3, 17"))
        await browser.click("#cfg-save")
        problem = await browser.wait_text("#cfg-problems", "masked_channels")
        self.assertIn("expected a list", problem)
        self.assertIn("[3, 17", problem)
        self.assertTrue(await browser.js("return document.getElementById('cfg-diff').hidden"))
        code, stored = await demo.api("GET", "/api/configs/sts-default")
        self.assertEqual((code, stored["version"], stored["parameters"]["masked_channels"]), (200, 1, []))

        # A number parameter refuses text the same way.
        await browser.js(set_param("masked_channels", "[3, 17]") + set_param("threshold_adc", "twelve"))
        await browser.click("#cfg-save")
        problem = await browser.wait_text("#cfg-problems", "threshold_adc")
        self.assertIn("expected a number", problem)

        # Valid: the diff against version 1 first, nothing saved yet.
        await browser.js(set_param("threshold_adc", "10"))
        await browser.click("#cfg-save")
        await browser.wait_text("#cfg-diff-title", "Changes against version 1 of sts-default")
        self.assertTrue(await browser.js("return document.getElementById('cfg-problems').hidden"))
        changed = await browser.js(
            "return [...document.querySelectorAll('#cfg-diff-table tbody tr')].map("
            "(r) => [...r.cells].map((c) => c.textContent))")
        self.assertEqual(changed, [["masked_channels", "changed", "[]", "[3,17]"],
                                   ["threshold_adc", "changed", "12", "10"]])
        code, stored = await demo.api("GET", "/api/configs/sts-default")
        self.assertEqual(stored["version"], 1)

        await browser.click("#cfg-confirm")
        await browser.wait_text("#reply", "Saved sts-default as version 2")
        code, stored = await demo.api("GET", "/api/configs/sts-default")
        params = stored["parameters"]
        self.assertEqual((stored["version"], params["masked_channels"], params["threshold_adc"]), (2, [3, 17], 10))

        # Saving the same again: no change, nothing to confirm, nothing saved.
        await browser.click("#cfg-save")
        await browser.wait_text("#cfg-diff-title", "No change against version 2")
        self.assertFalse(await browser.js("return document.getElementById('cfg-confirm').hidden === false"))
        code, stored = await demo.api("GET", "/api/configs/sts-default")
        self.assertEqual(stored["version"], 2)

        # A new parameter typed as "JSON or text": broken JSON is refused too.
        await browser.click("#cfg-add-row")
        await browser.js("const r = [...document.querySelectorAll('#cfg-params tbody tr')].pop();"
                         "r.querySelector('.param-name').value = 'windows';"
                         "r.querySelector('.param-value').value = '{\"a\": 1';")
        await browser.click("#cfg-save")
        problem = await browser.wait_text("#cfg-problems", "windows")
        self.assertIn("valid JSON", problem)


class ConfigDialogTests(TestCase):
    """The monitor's dialog: the current tag, the server's fit, the changes against what runs."""

    timeout = 180

    def setUp(self) -> None:
        skip_without_browser()

    async def test_dialog_opens_on_current_tag_with_changes(self) -> None:
        """
        A tag with a configuration for a system outside the partition
        configures it; the dialog opens on that tag, lists it as
        compatible, notes the extra system, and names what a different
        choice changes against what is running.
        """
        demo = await Demo.start(self)
        code, _ = await demo.api("POST", "/api/control", body={})  # the ECS control: detectors are created under it
        self.assertEqual(code, 200)
        code, answer = await demo.api("POST", "/api/detectors", body={"id": "SPARE", "type": "STS"})
        self.assertEqual(code, 200, answer)
        code, _ = await demo.api("PUT", "/api/configs/spare-default",
                                 body={"system": "SPARE", "parameters": {"threshold_adc": 12}})
        self.assertEqual(code, 200)
        code, tag = await demo.api("GET", "/api/tags/demo")
        members = [*sorted(tag["configs"].values()), "spare-default"]
        code, _ = await demo.api("PUT", "/api/tags/demo-plus", body={"configs": members})
        self.assertEqual(code, 200)
        code, tags = await demo.api("GET", "/api/tags?partition=demo")
        plus = next(t for t in tags if t["name"] == "demo-plus")
        self.assertEqual((plus["missing"], plus["extra"]), ([], ["SPARE"]))

        code, _ = await demo.api("POST", "/api/partitions/demo/control")
        self.assertEqual(code, 200)
        code, answer = await demo.api("POST", "/api/partitions/demo/configure", body={"tag": "demo-plus", "auto": True})
        self.assertEqual(code, 200, answer)
        await demo.until(lambda p: p["state"] == "QA_Active" and p["tag"] == "demo-plus", what="configured")

        browser = await Browser.open(self, demo, "admin")
        await browser.get("/partitions/demo")
        await browser.wait_text("#selection", "tag demo-plus")
        await browser.click("#select-config")
        await browser.wait_js("return document.getElementById('tag-select').value === 'demo-plus'",
                              what="the dialog on the current tag")
        group = await browser.js("return document.querySelector('#tag-select option[value=\"demo-plus\"]')"
                                 ".parentElement.label")
        self.assertEqual(group, "Compatible tags")
        self.assertIn("SPARE", await browser.text("#tag-note"))
        await browser.wait_text("#config-changes", "no system changes")
        sts = "return document.querySelector('select.config-select[data-system=\"STS\"]').value"
        self.assertEqual(await browser.js(sts), "sts-default")

        await browser.select('select.config-select[data-system="STS"]', "sts-low-threshold")
        summary = await browser.wait_text("#config-changes", "1 system(s) change")
        self.assertIn("STS sts-default → sts-low-threshold", summary)
        self.assertIn("running: sts-default → sts-low-threshold",
                      await browser.text('#config-table tr[data-system="STS"] .running'))

        # The same comparison, for a confirmation before Configure.
        script = ("const done = arguments[arguments.length - 1];"
                  "CONFIGDIALOG.changes('demo', arguments[0]).then((c) => done(c), (e) => done(String(e)));")
        same = await browser.js_async(script, {"tag": "demo-plus"})
        self.assertEqual((same["changed"], same["same"]), ([], 9))
        other = await browser.js_async(script, {"tag": "demo-alt"})
        self.assertEqual(sorted(c["system"] for c in other["changed"]), ["STS", "TFC"])
        self.assertIn("2 system(s) change configuration", other["text"])
        custom = await browser.js_async(script, {"configs": ["sts-low-threshold"]})
        self.assertEqual(custom["changed"],
                         [{"system": "STS", "running": "sts-default", "chosen": "sts-low-threshold"}])
