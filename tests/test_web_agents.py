"""Tests for the agents routes of L{ecs.web.api} (placement, start/stop/restart, output) over the fake center."""

from __future__ import annotations

from tests.test_web import WebTestCase


class AgentReadTests(WebTestCase):
    """GET /api/agents and /api/agents/{agent}."""

    def test_list_and_one(self) -> None:
        """A viewer reads every agent and one agent with the documented fields."""
        token = self.token("viewer")
        r = self.call("GET", "/api/agents", token=token)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual([a["agent"] for a in r.json], ["pca:demo"])
        agent = r.json[0]
        self.assertEqual(
            set(agent),
            {"agent", "kind", "id", "host", "launcher", "options", "autostart", "registered", "status", "supervision"},
        )
        self.assertEqual(set(agent["status"]), {"running", "pid", "job_id", "exit_code", "since", "detail"})
        self.assertEqual(set(agent["supervision"]), {"state", "restarts", "next_restart", "reason"})
        r = self.call("GET", "/api/agents/pca:demo", token=token)
        self.assertEqual((r.code, r.json["kind"], r.json["id"]), (200, "pca", "demo"))
        r = self.call("GET", "/api/agents/pca%3Ademo", token=token)  # as the GUI encodes it
        self.assertEqual((r.code, r.json["agent"]), (200, "pca:demo"))

    def test_unknown_and_unauthenticated(self) -> None:
        """An unknown agent is 404; no login is 401; no role is 403."""
        self.assertError(self.call("GET", "/api/agents/pca:nope", token=self.token("viewer")), 404, "not_found")
        self.assertError(self.call("GET", "/api/agents"), 401, "unauthenticated")
        self.assertError(self.call("GET", "/api/agents", token=self.token("nobody")), 403, "forbidden")


class AgentPlacementTests(WebTestCase):
    """PUT and DELETE /api/agents/{agent}."""

    def test_place(self) -> None:
        """An admin places an agent; options and autostart are optional."""
        token = self.token("admin")
        r = self.call(
            "PUT",
            "/api/agents/detector:STS",
            token=token,
            json={"host": "node1", "launcher": "ssh", "options": {"user": "daq"}, "autostart": False},
        )
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(
            (r.json["host"], r.json["launcher"], r.json["options"], r.json["autostart"]),
            ("node1", "ssh", {"user": "daq"}, False),
        )
        r = self.call("PUT", "/api/agents/global:all", token=token, json={"host": "localhost", "launcher": "local"})
        self.assertEqual((r.code, r.json["options"], r.json["autostart"]), (200, {}, True))
        self.assertIn(("admin", "set_placement", ("global:all", "localhost", "local")), self.center.audit_log)

    def test_place_validation(self) -> None:
        """Missing or mistyped fields are 400 naming the field; the center's refusals too."""
        token = self.token("admin")
        cases = [
            ({"launcher": "local"}, "host"),
            ({"host": "h"}, "launcher"),
            ({"host": "h", "launcher": "local", "options": [1]}, "options"),
            ({"host": "h", "launcher": "local", "autostart": "yes"}, "autostart"),
            ({"host": "h", "launcher": "local", "colour": "red"}, "colour"),
            ({"host": "h", "launcher": "telnet"}, "launcher"),
        ]
        for body, field in cases:
            r = self.call("PUT", "/api/agents/detector:STS", token=token, json=body)
            self.assertError(r, 400, "bad_request", field=field)
        self.assertError(
            self.call("PUT", "/api/agents/robot:1", token=token, json={"host": "h", "launcher": "local"}),
            400,
            "bad_request",
        )
        self.assertNotIn("detector:STS", self.center.agents_)

    def test_roles(self) -> None:
        """Operators may not place, delete, start or read output; experts may not place or delete
        (a placement says which program runs where)."""
        expert = self.token("expert")
        self.assertError(
            self.call(
                "PUT",
                "/api/agents/pca:demo",
                token=expert,
                json={"host": "h", "launcher": "local", "options": {"twistd": "/bin/sh"}},
            ),
            403,
            "forbidden",
            role="admin",
        )
        self.assertError(self.call("DELETE", "/api/agents/pca:demo", token=expert), 403, "forbidden", role="admin")
        token = self.token("operator")
        self.assertError(
            self.call("PUT", "/api/agents/pca:demo", token=token, json={"host": "h", "launcher": "local"}),
            403,
            "forbidden",
            role="admin",
        )
        self.assertError(self.call("DELETE", "/api/agents/pca:demo", token=token), 403, "forbidden")
        self.assertError(self.call("POST", "/api/agents/pca:demo/start", token=token), 403, "forbidden")
        self.assertError(self.call("GET", "/api/agents/pca:demo/output", token=token), 403, "forbidden")
        self.assertEqual(self.center.commands, [])

    def test_delete(self) -> None:
        """DELETE forgets a stopped agent (404 after); 409 while it runs."""
        token = self.token("admin")
        self.assertEqual(self.call("POST", "/api/agents/pca:demo/start", token=token).code, 200)
        self.assertError(self.call("DELETE", "/api/agents/pca:demo", token=token), 409, "conflict")
        self.assertEqual(self.call("POST", "/api/agents/pca:demo/stop", token=token).code, 200)
        self.assertEqual(self.call("DELETE", "/api/agents/pca:demo", token=token).code, 200)
        self.assertError(self.call("GET", "/api/agents/pca:demo", token=token), 404, "not_found")


class AgentCommandTests(WebTestCase):
    """POST /api/agents/{agent}/start|stop|restart and the output tail."""

    def test_commands(self) -> None:
        """start, restart and stop answer the agent after the command."""
        token = self.token("expert")
        for command, state in (("start", "running"), ("restart", "running"), ("stop", "stopped")):
            r = self.call("POST", f"/api/agents/pca:demo/{command}", token=token)
            self.assertEqual(r.code, 200, r.body)
            self.assertEqual(r.json["supervision"]["state"], state)
        self.assertEqual([c[2] for c in self.center.commands], ["start", "restart", "stop"])
        self.assertError(self.call("POST", "/api/agents/pca:demo/explode", token=token), 404, "not_found")
        self.assertError(self.call("POST", "/api/agents/pca:nope/start", token=token), 404, "not_found")

    def test_launcher_errors(self) -> None:
        """A launcher failure is 502 with its code (unreachable, timeout, host_key, auth, failed)."""
        token = self.token("expert")
        for code in ("unreachable", "timeout", "host_key", "auth", "failed"):
            self.center.launch_error = (code, f"node1: {code}")
            r = self.call("POST", "/api/agents/pca:demo/start", token=token)
            self.assertError(r, 502, code)
            self.assertEqual(r.json["reason"], f"node1: {code}")

    def test_cookie_needs_csrf(self) -> None:
        """With a session cookie, a start without the CSRF header is refused."""
        stub, csrf = self.cookie_login("expert")
        self.assertError(self.call("POST", "/api/agents/pca:demo/start", stub=stub), 403, "forbidden")
        r = self.call("POST", "/api/agents/pca:demo/start", stub=stub, headers={"X-CSRF-Token": csrf})
        self.assertEqual(r.code, 200, r.body)

    def test_output(self) -> None:
        """The output tail: 200 lines by default, ?lines=N up to 2000, else 400."""
        token = self.token("expert")
        r = self.call("GET", "/api/agents/pca:demo/output", token=token)
        self.assertEqual((r.code, r.json["agent"]), (200, "pca:demo"))
        self.assertEqual(r.json["text"].count("\n"), 200)
        self.assertEqual(
            self.call("GET", "/api/agents/pca:demo/output?lines=2000", token=token).json["text"].count("\n"), 2000
        )
        for bad in ("0", "2001", "x"):
            self.assertError(
                self.call("GET", f"/api/agents/pca:demo/output?lines={bad}", token=token),
                400,
                "bad_request",
                field="lines",
            )
        self.assertError(self.call("GET", "/api/agents/pca:nope/output", token=token), 404, "not_found")
