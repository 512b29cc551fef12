# -*- test-case-name: tests.test_fsmview -*-
"""
Tests for the state-machines page (L{ecs.gui.fsmview}) and its tables
(L{ecs.fsm.systems}): the supervisor's agent lifecycle is drawn like the
other tables, through the fake center and StubTreq.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.config.settings import load_subsystems
from ecs.fsm.sequence import load_sequence
from ecs.fsm.systems import AGENT_TABLE, table_from_json, table_json, tables_json
from ecs.fsm.table import load_table
from ecs.gui.fsmview import DotRenderer
from ecs.gui.site import GuiPages, site_root
from ecs.web.api import WebAPI
from tests.fake_control import PASSWORD, FakeControlCenter
from tests.fake_process import FakeProcessReactor

BASE = "http://ecs.test"
AGENT_YAML = Path(__file__).resolve().parent.parent / "fsm" / "agent.yaml"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class AgentTableJsonTests(SynchronousTestCase):
    """The agent lifecycle is one of the tables the ECA hands to its interfaces."""

    def test_tables_json_has_the_agent_table(self) -> None:
        """tables_json carries fsm/agent.yaml under AGENT_TABLE, with its kind, and round-trips."""
        subsystems = load_subsystems()
        tables, table_of = tables_json(subsystems, load_sequence(None, list(subsystems.global_systems)))
        data = tables[AGENT_TABLE]
        shipped = load_table(AGENT_YAML)
        self.assertEqual((data["name"], data["kind"], data["initial"]), ("agent", "agent", "stopped"))
        self.assertEqual(data["states"]["stopping"], "running")
        self.assertEqual(len(data["rows"]), len(shipped.rows))
        back = table_from_json(AGENT_TABLE, data)
        self.assertEqual((back.kind, back.rows, back.states), ("agent", shipped.rows, shipped.states))
        self.assertNotIn(AGENT_TABLE, table_of.values())  # no system runs it

    def test_kind_defaults_to_system(self) -> None:
        """A table JSON without kind (an older ECA) is a system table."""
        data = table_json(load_table(AGENT_YAML.parent / "global.yaml"))
        del data["kind"]
        self.assertEqual(table_from_json("global", data).kind, "system")


class AgentTablePageTests(SynchronousTestCase):
    """The drawing routes and the page script show the agent lifecycle."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.gui = GuiPages(self.center)
        self.reactor = FakeProcessReactor()
        self.gui.__dict__["_dot_renderer"] = DotRenderer(self.reactor, dot="/nonexistent/dot")
        self.stub: Any = StubTreq(  # its request methods are made at run time
            site_root(WebAPI(self.center, Clock()).resource(), self.gui.resource()))

    def get(self, path: str) -> tuple[int, str, Any]:
        token = self.successResultOf(self.center.login("viewer", PASSWORD, "session")).token
        d = self.stub.get(BASE + path, headers={"Cookie": f"ecs_session={token}"}, allow_redirects=False)
        self.stub.flush()
        response = self.successResultOf(d)
        return response.code, self.successResultOf(response.content()).decode(), response

    def test_systems_name_the_agent_table(self) -> None:
        """GET /api/systems names the agent table and carries it."""
        code, body, _ = self.get("/api/systems")
        self.assertEqual(code, 200, body)
        data = json.loads(body)
        self.assertEqual(data["agent_table"], AGENT_TABLE)
        self.assertEqual(data["tables"][AGENT_TABLE]["kind"], "agent")

    def test_agent_table_drawn_with_state_lit(self) -> None:
        """The DOT of the agent table has every lifecycle state, coloured, the asked one lit."""
        code, text, _ = self.get(f"/fsm/dot/{AGENT_TABLE}?state=restarting")
        self.assertEqual(code, 200, text)
        self.assertTrue(text.startswith('digraph "agent"'))
        for state in ("stopped", "starting", "running", "stopping", "restarting", "flapping", "failed", "unknown"):
            self.assertIn(f'"{state}" [', text)
        lit = next(line for line in text.splitlines() if line.strip().startswith('"restarting" ['))
        self.assertIn("penwidth=3", lit)
        flapping = next(line for line in text.splitlines() if line.strip().startswith('"flapping" ['))
        self.assertIn('color="#b71c1c"', flapping)  # an alarm state is red
        self.assertIn('"restarting" -> "starting" [label="backoff_elapsed"]', text)

    def test_unknown_agent_state_refused(self) -> None:
        """A state that is not the agent table's is 404 naming the states."""
        code, text, _ = self.get(f"/fsm/dot/{AGENT_TABLE}?state=Configuring")
        self.assertEqual(code, 404)
        self.assertIn("no state 'Configuring' in table agent", text)

    def test_page_script_lists_agents(self) -> None:
        """The page's script offers each supervised agent with the agent table and lights its supervision state."""
        script = (TEMPLATES / "static" / "fsm.js").read_text()
        self.assertIn("systems.agent_table", script)
        self.assertIn('"/api/agents/" + enc(subject.agent)', script)
        self.assertIn("supervision.state", script)
        self.assertIn("agent: later", script)  # redrawn on agent events
