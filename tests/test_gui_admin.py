"""
Tests for the management pages of the GUI (L{ecs.gui.admin}), the state
machine page and its drawings (L{ecs.gui.fsmview}), the systems view
(L{ecs.fsm.systems}, C{GET /api/systems}) and C{GET /api/logs?until=},
over a fake control center.
"""

from __future__ import annotations

import os
import re
from typing import Any

from treq.testing import StubTreq
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from ecs.config.settings import load_subsystems
from ecs.control import ControlError
from ecs.fsm.sequence import load_sequence
from ecs.fsm.systems import PARTITION_TABLE, sequence_table, table_from_json, table_json
from ecs.gui.fsmview import DOT, DotRenderer
from ecs.gui.site import GuiPages, site_root
from ecs.web.api import WebAPI
from tests.fake_control import PASSWORD, FakeControlCenter
from tests.fake_process import FakeProcessReactor

BASE = "http://ecs.test"

#: page path -> the role it needs
PAGES = {
    "/configs": "expert",
    "/tags": "expert",
    "/manage": "expert",
    "/clients": "expert",
    "/runs": "viewer",
    "/logs": "viewer",
    "/logbook": "viewer",
    "/audit": "expert",
    "/fsm": "viewer",
    "/users": "admin",
}
#: a user holding exactly each role (the fake's users)
LOWER = {"viewer": "nobody", "expert": "operator", "admin": "expert"}


def finish(protocol: Any, out: bytes = b"", code: int = 0) -> None:
    """Make a spawned dot answer C{out} and exit with C{code}."""
    if out:
        protocol.outReceived(out)
    reason = error.ProcessDone(0) if code == 0 else error.ProcessTerminated(exitCode=code)
    protocol.processEnded(Failure(reason))


class GuiTestCase(SynchronousTestCase):
    """The API and the GUI side by side over a fake center, through StubTreq."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.clock = Clock()
        self.gui = GuiPages(self.center)
        self.reactor = FakeProcessReactor()
        self.dot = DotRenderer(self.reactor, dot=DOT if os.access(DOT, os.X_OK) else "/bin/true")
        self.gui.__dict__["_dot_renderer"] = self.dot
        root = site_root(WebAPI(self.center, self.clock).resource(), self.gui.resource())
        self.stub = StubTreq(root)

    def get(self, path: str, user: str | None = None) -> tuple[int, bytes, Any]:
        """GET C{path} as C{user} (a session cookie) or without a session."""
        headers = {}
        if user is not None:
            token = self.successResultOf(self.center.login(user, PASSWORD, "session")).token
            headers["Cookie"] = f"ecs_session={token}"
        d = self.stub.get(BASE + path, headers=headers, allow_redirects=False)
        self.stub.flush()
        response = self.successResultOf(d)
        return response.code, self.successResultOf(response.content()), response


class PageTests(GuiTestCase):
    """Each management page: its role, the refusal for a lower one, the login redirect."""

    def test_pages_render_for_their_role(self) -> None:
        """Every page renders for a user with its role, with its scripts and the CSP."""
        for path, role in PAGES.items():
            user = {"viewer": "viewer", "expert": "expert", "admin": "admin"}[role]
            code, body, response = self.get(path, user)
            self.assertEqual(code, 200, (path, body[:300]))
            name = path.strip("/")
            self.assertIn(f'src="/static/{name}.js"'.encode(), body, path)
            self.assertIn(b'src="/static/admin.js"', body, path)
            self.assertIn("script-src 'self'", response.headers.getRawHeaders("content-security-policy")[0])
            self.assertNotIn(b"<script>", body, path)
            self.assertNotIn(b"style=", body, path)
            self.assertNotIn(b"onclick", body.lower(), path)

    def test_lower_role_gets_403_naming_the_role(self) -> None:
        """A user below the page's role gets 403 and the page names the role needed."""
        for path, role in PAGES.items():
            code, body, _ = self.get(path, LOWER[role])
            self.assertEqual(code, 403, path)
            self.assertIn(f"<strong>{role}</strong>".encode(), body, path)

    def test_no_session_redirects_to_login(self) -> None:
        """Without a session every page redirects to the login page, coming back afterwards."""
        for path in PAGES:
            code, _, response = self.get(path)
            self.assertEqual(code, 303, path)
            self.assertEqual(response.headers.getRawHeaders("location"), [f"/login?next={path}"])

    def test_runs_and_audit_pages(self) -> None:
        """The runs page has the type filter (the declared types) and export links; the audit page its filters."""
        _, body, _ = self.get("/runs", "viewer")
        self.assertIn(b'data-runtypes="physics,calibration,cosmics,test"', body)
        for element in (b'id="runs-type"', b'id="runs-since"', b'id="runs-until"', b'href="/api/runs?format=csv"',
                        b'href="/api/runs?format=json"'):
            self.assertIn(element, body)
        _, body, _ = self.get("/audit", "expert")
        for element in (b'id="audit-user"', b'id="audit-action"', b'id="audit-since"', b'id="audit-older"'):
            self.assertIn(element, body)
        self.assertIn(b'href="/audit"', body)
        _, body, _ = self.get("/runs", "operator")
        self.assertNotIn(b'href="/audit"', body)

    def test_logbook_page(self) -> None:
        """The logbook page is in every user's navigation, with its filters, its form and its script."""
        _, body, _ = self.get("/logbook", "viewer")
        for element in (b'href="/logbook"', b'id="logbook-q"', b'id="logbook-author"', b'id="logbook-since"',
                        b'id="logbook-older"', b'id="logbook-text"', b'id="logbook-corrects"', b'id="logbook-files"',
                        b'src="/static/logbook.js"'):
            self.assertIn(element, body)

    def test_nav_lists_pages_by_role(self) -> None:
        """An expert's navigation shows the expert pages but not the users page."""
        _, body, _ = self.get("/runs", "expert")
        self.assertIn(b'href="/configs"', body)
        self.assertIn(b'href="/clients"', body)
        self.assertNotIn(b'href="/users"', body)

    def test_static_scripts_served(self) -> None:
        """Each page script is served as JavaScript and uses no innerHTML."""
        for name in ["admin", "configs", "tags", "manage", "clients", "runs", "logs", "logbook", "fsm", "users"]:
            code, body, response = self.get(f"/static/{name}.js")
            self.assertEqual(code, 200, name)
            self.assertIn("javascript", response.headers.getRawHeaders("content-type")[0])
            self.assertNotIn(b"innerHTML", body, name)
            self.assertNotIn(b"insertAdjacentHTML", body, name)


class FsmRouteTests(GuiTestCase):
    """C{/fsm/draw/<table>} and C{/fsm/dot/<table>}."""

    def test_dot_text_with_state_lit(self) -> None:
        """The DOT route answers the table's DOT text with the asked state drawn as current."""
        code, body, response = self.get("/fsm/dot/partition?state=Configuring_TFC", "viewer")
        self.assertEqual(code, 200, body)
        self.assertIn("text/plain", response.headers.getRawHeaders("content-type")[0])
        text = body.decode()
        self.assertIn('"Configuring_TFC" [color=', text)
        lit = next(line for line in text.splitlines() if line.strip().startswith('"Configuring_TFC" ['))
        self.assertIn("penwidth=3", lit)
        other = next(line for line in text.splitlines() if line.strip().startswith('"Idle" ['))
        self.assertNotIn("penwidth=3", other)

    def test_unknown_table_and_state_refused(self) -> None:
        """Unknown tables, hostile names and unknown states are 404; no process is started."""
        for path in ["/fsm/draw/nosuch", "/fsm/draw/..%2F..%2Fetc%2Fpasswd", "/fsm/draw/%3Cscript%3E",
                     "/fsm/dot/partition%00", "/fsm/draw/global?state=Nope", "/fsm/draw/global?state=%3Cb%3E"]:
            code, body, _ = self.get(path, "viewer")
            self.assertEqual(code, 404, (path, body))
            self.assertNotIn(b"<script>", body)
        self.assertEqual(self.reactor.spawned, [])

    def test_needs_a_session(self) -> None:
        """Without a session the drawing routes answer 401."""
        self.assertEqual(self.get("/fsm/draw/global")[0], 401)
        self.assertEqual(self.get("/fsm/dot/global")[0], 401)

    def test_svg_through_spawn_process_and_cached(self) -> None:
        """With dot, the SVG comes from a child process fed the DOT text; the answer waits
        for it without blocking, and a second request for the same state uses the cache."""
        if not self.dot.available:
            raise SkipTest("no /usr/bin/dot (Debian package graphviz)")
        d = self.stub.get(BASE + "/fsm/draw/global?state=Configuring", headers=self._cookie("viewer"))
        self.stub.flush()
        self.assertNoResult(d)  # waiting for the child, not blocking
        [(protocol, executable, args, _, _)] = self.reactor.spawned
        self.assertEqual((executable, args), (DOT, [DOT, "-Tsvg"]))
        transport = protocol.transport
        self.assertTrue(transport.stdin_closed)
        self.assertIn(b'"Configuring" [', transport.written)
        finish(protocol, b"<svg>drawn</svg>")
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        self.assertIn("image/svg+xml", response.headers.getRawHeaders("content-type")[0])
        self.assertEqual(response.headers.getRawHeaders("x-content-type-options"), ["nosniff"])
        self.assertIn("default-src 'none'", response.headers.getRawHeaders("content-security-policy")[0])
        self.assertEqual(self.successResultOf(response.content()), b"<svg>drawn</svg>")
        code, body, _ = self.get("/fsm/draw/global?state=Configuring", "viewer")
        self.assertEqual((code, body), (200, b"<svg>drawn</svg>"))
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_dot_timeout_kills_and_answers_503(self) -> None:
        """A dot that hangs is killed after the timeout and the request gets 503."""
        if not self.dot.available:
            raise SkipTest("no /usr/bin/dot (Debian package graphviz)")
        d = self.stub.get(BASE + "/fsm/draw/partition", headers=self._cookie("viewer"))
        self.stub.flush()
        [(protocol, *_)] = self.reactor.spawned
        self.reactor.advance(self.dot.timeout)
        self.assertEqual(protocol.transport.signals, ["KILL"])
        protocol.processEnded(Failure(error.ProcessTerminated(signal=9)))
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)
        self.assertIn(b"longer than", self.successResultOf(response.content()))

    def test_without_dot_the_draw_route_answers_dot_text(self) -> None:
        """Without graphviz the drawing route answers the DOT text, and the page says so."""
        self.gui.__dict__["_dot_renderer"] = DotRenderer(self.reactor, dot="/nonexistent/dot")
        code, body, response = self.get("/fsm/draw/partition?state=Idle", "viewer")
        self.assertEqual(code, 200)
        self.assertIn("text/plain", response.headers.getRawHeaders("content-type")[0])
        self.assertTrue(body.startswith(b'digraph "partition"'))
        self.assertEqual(self.reactor.spawned, [])
        _, page, _ = self.get("/fsm", "viewer")
        self.assertIn(b'data-svg="0"', page)

    def _cookie(self, user: str) -> dict[str, str]:
        token = self.successResultOf(self.center.login(user, PASSWORD, "session")).token
        return {"Cookie": f"ecs_session={token}"}


class RecoveryRulesPageTests(GuiTestCase):
    """The state machines page shows the recovery rules in force beside the tables (issue 14)."""

    def test_rules_shown(self) -> None:
        """Each rule is a row (who, event, partition state, action, limit), with the file they came from."""
        code, page, _ = self.get("/fsm", "viewer")
        self.assertEqual(code, 200)
        text = page.decode()
        self.assertIn('id="recovery-rules"', text)
        self.assertIn('<code id="recovery-source">fsm/recovery.yaml</code>', text)
        rows = re.findall(r'<tr data-scope="(\w+)"><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>'
                          r'<td><code>([^<]*)</code></td><td>([^<]*)</td></tr>', text)
        self.assertEqual(rows, [
            ("defaults", "every system", "error", "any", "alarm_only", "—"),
            ("type", "type TRD", "error", "recording", "exclude_and_continue", "2 in 300 s, then an alarm"),
            ("system", "system RICH", "agent_died", "any", "restart", "3 in 600 s, then an alarm"),
        ])

    def test_no_rules_and_escaping(self) -> None:
        """Without rules the table says what happens; text from the rules file is escaped, never markup."""
        self.center.recovery = {"source": "<b>x</b>.yaml", "rules": []}
        _, page, _ = self.get("/fsm", "viewer")
        self.assertIn(b"No rules: every failure raises its alarm, nothing more.", page)
        self.assertIn(b"&lt;b&gt;x&lt;/b&gt;.yaml", page)
        self.assertNotIn(b"<b>x</b>", page)

    def test_without_session(self) -> None:
        """Without a session the page sends to the login and reads no rules."""
        self.center.recovery = {}  # would fail if read
        code, _, _ = self.get("/fsm")
        self.assertEqual(code, 303)


class RealDotTests(TestCase):
    """The renderer with the real reactor and Debian's dot."""

    def setUp(self) -> None:
        if not os.access(DOT, os.X_OK):
            raise SkipTest("no /usr/bin/dot (Debian package graphviz)")

    async def test_real_svg(self) -> None:
        """dot -Tsvg draws the partition machine with the current state lit."""
        from twisted.internet import reactor

        from ecs.fsm.machine import to_dot

        table = sequence_table(load_sequence(None, list(load_subsystems().global_systems)))
        svg = await DotRenderer(reactor).svg("k", to_dot(table, "QA_Active"))
        self.assertIn(b"<svg", svg)
        self.assertIn(b"QA_Active", svg)
        self.assertIn(b'stroke-width="3"', svg)

    async def test_dot_error_is_reported(self) -> None:
        """A DOT text dot rejects gives a 503 ControlError with dot's message."""
        from twisted.internet import reactor

        with self.assertRaises(ControlError) as caught:
            await DotRenderer(reactor).svg("bad", "digraph { this is not dot")
        self.assertEqual(caught.exception.status, 503)
        self.assertIn("dot failed", caught.exception.reason)


class SystemsTests(GuiTestCase):
    """The systems view and the derived partition machine."""

    def test_sequence_table(self) -> None:
        """The partition machine: configure stage by stage, errors fall back, abort to Idle, start/stop."""
        table = sequence_table(load_sequence(None, list(load_subsystems().global_systems)))
        self.assertEqual(table.initial, "Idle")
        self.assertEqual(table.next_state("Idle", "configure"), "Configuring_TFC")
        self.assertEqual(table.next_state("Configuring_TFC", "success"), "TFC_Active")
        self.assertEqual(table.next_state("Configuring_Detectors", "error"), "TFC_Active")
        self.assertEqual(table.next_state("QA_Active", "start"), "Recording")
        self.assertEqual(table.next_state("Recording", "stop"), "QA_Active")
        self.assertEqual(table.next_state("Recording", "abort"), "Idle")
        self.assertEqual(table.states["Idle"], "Unconfigured")
        self.assertEqual(table_from_json("x", table_json(table)).rows, table.rows)

    def test_api_systems(self) -> None:
        """GET /api/systems lists types, globals, detectors and tables (viewer)."""
        token = self.successResultOf(self.center.login("viewer", PASSWORD, "api")).token
        d = self.stub.get(BASE + "/api/systems", headers={"Authorization": f"Bearer {token}"})
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 200)
        data = self.successResultOf(response.json())
        self.assertEqual(data["partition_table"], PARTITION_TABLE)
        self.assertEqual(set(data["global_systems"]), {"TFC", "DCS", "QA", "FLES"})
        self.assertIn(data["global_systems"]["TFC"]["table"], data["tables"])
        self.assertIn({"id": "TOF", "type": "tof", "partition": None}, data["detectors"])
        d = self.stub.get(BASE + "/api/systems")
        self.stub.flush()
        self.assertEqual(self.successResultOf(d).code, 401)

    def test_logs_until(self) -> None:
        """GET /api/logs?until= keeps only events before that time; a bad value is 400 naming it."""
        token = self.successResultOf(self.center.login("viewer", PASSWORD, "api")).token
        headers = {"Authorization": f"Bearer {token}"}
        d = self.stub.get(BASE + "/api/logs?until=150", headers=headers)
        self.stub.flush()
        rows = self.successResultOf(self.successResultOf(d).json())
        self.assertEqual([r["time"] for r in rows], [100.0])
        d = self.stub.get(BASE + "/api/logs?before_id=3", headers=headers)  # a cursor needs its time
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual((response.code, self.successResultOf(response.json())["field"]), (400, "before_id"))
        d = self.stub.get(BASE + "/api/logs?until=soon", headers=headers)
        self.stub.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 400)
        self.assertEqual(self.successResultOf(response.json())["field"], "until")
