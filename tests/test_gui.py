"""
Tests for L{ecs.gui} and L{ecs.gui.pages}: the page shells served beside
the API (login redirect, roles, CSP, escaping, static files).  The
C{allowed} events the monitor's buttons follow are the ECA's
(C{tests.test_eca_picture.AllowedTests}).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs import runinfo
from ecs.gui.site import CSP, GuiPages, site_root
from ecs.web.api import WebAPI
from tests.fake_control import PASSWORD, FakeControlCenter

BASE = "http://ecs.test"
STATIC = Path(__file__).resolve().parent.parent / "templates" / "static"
HOSTILE = 'p"><img src=x onerror=alert(1)>'


class PageTestCase(SynchronousTestCase):
    """The API and the GUI over a FakeControlCenter, reached through StubTreq."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        api = WebAPI(self.center, Clock())
        self.stub = StubTreq(site_root(api.resource(), GuiPages(self.center).resource()))

    def cookie(self, user: str) -> str:
        """A session token of C{user} (the session cookie's value)."""
        session = self.successResultOf(self.center.login(user, PASSWORD, "session"))
        return str(session.token)

    def get(self, path: str, user: str | None = "operator") -> tuple[int, dict[str, list[str]], str]:
        """GET C{path} (as C{user}'s session): status, headers, body text."""
        headers = {"cookie": [f"ecs_session={self.cookie(user)}"]} if user else {}
        response = self.successResultOf(self.stub.get(BASE + path, headers=headers, allow_redirects=False))
        body = self.successResultOf(response.content()).decode("utf-8")
        raw = {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()}
        return response.code, raw, body


class PageTests(PageTestCase):
    """Login redirects, roles, headers."""

    def test_redirect_to_login(self) -> None:
        """Without a session, a page sends to the login form and back."""
        for path in ("/", "/partitions/demo"):
            code, headers, _ = self.get(path, user=None)
            self.assertEqual(code, 303)
            self.assertEqual(headers["location"], ["/login?next=" + path])

    def test_unknown_session_redirects(self) -> None:
        """A bogus cookie is no session."""
        response = self.successResultOf(self.stub.get(BASE + "/", headers={"cookie": ["ecs_session=bogus"]},
                                                      allow_redirects=False))
        self.assertEqual(response.code, 303)

    def test_overview(self) -> None:
        """The overview shell: CSP, CSRF meta, the live scripts, no inline script or style."""
        code, headers, body = self.get("/")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-security-policy"], [CSP.decode()])
        self.assertEqual(headers["x-frame-options"], ["DENY"])
        session = self.center.sessions[next(reversed(self.center.sessions))]
        self.assertIn(f'<meta name="csrf-token" content="{session.csrf}"', body)
        scripts = re.findall(r'<script src="([^"]+)"', body)
        self.assertEqual(scripts, ["/static/ecs.js", "/static/headline.js", "/static/live.js", "/static/overview.js"])
        self.assertIn('id="partitions"', body)
        self.assertIn('id="unassigned-box"', body)
        self.assertIn('id="log"', body)
        self.assert_no_inline(body)

    def test_monitor(self) -> None:
        """The monitor shell: the partition for the scripts, the panel, both dialogs."""
        code, headers, body = self.get("/partitions/demo")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-security-policy"], [CSP.decode()])
        self.assertIn('data-partition="demo"', body)
        scripts = re.findall(r'<script src="([^"]+)"', body)
        self.assertEqual(scripts, ["/static/ecs.js", "/static/headline.js", "/static/live.js",
                                   "/static/configdialog.js", "/static/sequences.js", "/static/monitor.js"])
        for element in ("take-control", "release-control", "select-config", "auto-configure", "cmd-configure",
                        "cmd-start", "cmd-stop", "cmd-abort", "progress", "why", "confirm-abort", "config-dialog",
                        "tag-select", "config-table", "save-tag", "config-select", "headline-box",
                        "start-dialog", "run-type", "run-comment", "start-confirm", "run-conditions",
                        "add-condition", "conditions-note", "sequence-panel", "sequence-select", "sequence-run",
                        "sequence-status", "sequence-progress", "sequence-pause", "sequence-resume",
                        "sequence-abort", "sequence-why"):
            self.assertIn(f'id="{element}"', body)
        # The start dialog offers the center's declared run types (issue 14), and its
        # conditions follow the limits of ecs.runinfo.
        self.assertIn('data-runtypes="physics,calibration,cosmics,test"', body)
        self.assertIn(f'data-condition-key="{runinfo.TYPE_RE.pattern}"', body)
        self.assertIn(f'data-condition-max="{runinfo.MAX_CONDITIONS}"', body)
        self.assertIn(f'data-condition-text="{runinfo.MAX_CONDITION_TEXT}"', body)
        self.assertRegex(body, r'<ul id="why"[^>]*tabindex="0"')
        self.assertIn("<h1>Partition demo</h1>", body)
        self.assert_no_inline(body)

    def test_layout_console(self) -> None:
        """Every page has the skip link to the content, the alarm button and panel, and the confirmation dialog."""
        for path in ("/", "/partitions/demo", "/runs"):
            _, _, body = self.get(path)
            self.assertIn('<a class="skip-link" href="#main">', body, path)
            self.assertIn('<main id="main" tabindex="-1">', body, path)
            for element in ("alarm-button", "alarm-panel", "alarm-list", "shelve-for", "shelve-reason", "confirm",
                            "confirm-text", "confirm-ok", "confirm-cancel"):
                self.assertIn(f'id="{element}"', body, path)
            self.assert_no_inline(body)

    def test_monitor_unknown_partition(self) -> None:
        """An unknown partition (and the ECS scope's name) is a 404 for a logged-in user."""
        for pid in ("nope", "ecs"):
            code, headers, body = self.get(f"/partitions/{pid}")
            self.assertEqual(code, 404, pid)
            self.assertIn("not_found", body)
            self.assertEqual(headers["content-type"], ["text/plain; charset=utf-8"])

    def test_no_role(self) -> None:
        """A user without the viewer role gets 403 naming the role, not the page."""
        for path in ("/", "/partitions/demo"):
            code, _, body = self.get(path, user="nobody")
            self.assertEqual(code, 403)
            self.assertIn("viewer", body)
            self.assertNotIn("monitor.js", body)
            self.assertNotIn("overview.js", body)

    def assert_no_inline(self, body: str) -> None:
        """No inline script, style attribute or event handler (the CSP would refuse them)."""
        self.assertNotRegex(body, r"<script(?![^>]*\bsrc=)[^>]*>")
        self.assertNotRegex(body, r"\sstyle=")
        self.assertNotRegex(body, r"\son[a-z]+=")


class EscapingTests(PageTestCase):
    """Hostile names never become markup."""

    def test_hostile_partition_id(self) -> None:
        """A partition id with markup is escaped in the heading, the data attribute and the navigation."""
        self.center.partitions_[HOSTILE] = {"id": HOSTILE, "state": "Idle", "tag": None, "locked": False, "systems": []}
        code, _, body = self.get("/partitions/" + quote(HOSTILE, safe=""))
        self.assertEqual(code, 200)
        self.assertNotIn("<img src=x", body)
        self.assertIn("<h1>Partition p\"&gt;&lt;img src=x onerror=alert(1)&gt;</h1>", body)
        self.assertIn('data-partition="p&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"', body)
        code, _, body = self.get("/")
        self.assertNotIn("<img src=x", body)
        self.assertIn('href="/partitions/p&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"', body)

    def test_hostile_user_name(self) -> None:
        """A user name with markup is escaped in the user menu and the body's data attribute."""
        name = "<img src=x onerror=alert(1)>"
        self.center.passwords[name] = PASSWORD
        self.center.roles[name] = ("viewer",)
        code, _, body = self.get("/", user=name)
        self.assertEqual(code, 200)
        self.assertNotIn("<img src=x", body)
        self.assertIn("&lt;img src=x onerror=alert(1)&gt;", body)

    def test_scripts_never_write_html(self) -> None:
        """The page scripts build the DOM from text only (no innerHTML and friends)."""
        for path in sorted(STATIC.glob("*.js")):
            text = path.read_text(encoding="utf-8")
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
                self.assertNotIn(sink, text, f"{path.name} uses {sink}")


def _luminance(colour: str) -> float:
    """WCAG relative luminance of C{#rrggbb}."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two C{#rrggbb} colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


class ColourTests(SynchronousTestCase):
    """State colours are readable and never the only cue."""

    CATEGORIES = ("resting", "working", "ready", "recording", "fault")
    #: Categories drawn in the resting colour with a shape of their own (a system left out of its partition).
    SHAPES_ONLY = ("excluded",)

    def setUp(self) -> None:
        self.css = (STATIC / "ecs.css").read_text(encoding="utf-8")
        self.colours = dict(re.findall(r"--([a-z]+): (#[0-9a-f]{6})", self.css))

    def test_contrast(self) -> None:
        """Each state category's colour has at least 3:1 against white and the page background."""
        for name in self.CATEGORIES:
            for background in ("#ffffff", self.colours["bg"]):
                ratio = contrast(self.colours[name], background)
                self.assertGreaterEqual(ratio, 3.0, f"{name} on {background}: {ratio:.2f}")

    def test_contrast_helper(self) -> None:
        """The helper gives the known ratios (black on white 21, equal colours 1)."""
        self.assertAlmostEqual(contrast("#000000", "#ffffff"), 21.0, places=3)
        self.assertAlmostEqual(contrast("#777777", "#777777"), 1.0)

    def test_shape_beside_colour(self) -> None:
        """Each category has its own glyph (shape) for states, tiles and heat-map squares, and they all differ."""
        glyphs = {}
        for name in self.CATEGORIES + self.SHAPES_ONLY:
            match = re.search(r"\.state-" + name + r'::before \{ content: "(.)"', self.css)
            self.assertIsNotNone(match, name)
            assert match is not None
            glyphs[name] = match.group(1)
            self.assertRegex(self.css, r"\.tile-" + name + r"( \.tile-state::before)? \{", name)
            self.assertRegex(self.css, r"\.cell-" + name if name != "resting" else r"\.cell \{", name)
        self.assertEqual(len(set(glyphs.values())), len(glyphs), glyphs)

    def test_focus_and_sticky_bar(self) -> None:
        """A visible focus style, the skip link shown on focus, the top bar sticky."""
        self.assertIn(":focus-visible { outline: 3px solid", self.css)
        self.assertIn(".skip-link:focus {", self.css)
        self.assertRegex(self.css, r"\.topbar \{[^}]*position: sticky; top: 0;")


class StaticTests(PageTestCase):
    """C{/static/}: our assets and nothing else."""

    def test_asset(self) -> None:
        """A script is served with its type and nosniff, without a session."""
        code, headers, body = self.get("/static/live.js", user=None)
        self.assertEqual(code, 200)
        self.assertIn("javascript", headers["content-type"][0])
        self.assertEqual(headers["x-content-type-options"], ["nosniff"])
        self.assertIn("window.LIVE", body)

    def test_traversal_refused(self) -> None:
        """Paths leaving templates/static answer 404."""
        for path in ("/static/../base.html", "/static/%2e%2e/base.html", "/static/..%2fbase.html",
                     "/static/%2e%2e%2f%2e%2e%2fecs%2fweb.py", "/static/%2Fetc%2Fpasswd", "/static/",
                     "/static/nope.js"):
            code, headers, body = self.get(path, user=None)
            if code == 308:  # the router merges '//': still under /static/, then 404
                location = headers["location"][0]
                self.assertTrue(location.startswith(("/static/", BASE + "/static/")), location)
                code, _, body = self.get(location.removeprefix(BASE), user=None)
            self.assertEqual(code, 404, path)
            self.assertNotIn("t:render", body)
            self.assertNotIn("import ", body)
