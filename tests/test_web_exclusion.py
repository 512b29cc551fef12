# -*- test-case-name: tests.test_web_exclusion -*-
"""The exclude and include routes (issue 14) against the fake control center, with StubTreq."""

from __future__ import annotations

from tests.test_web import WebTestCase


class ExclusionRouteTests(WebTestCase):
    """POST /api/partitions/{id}/exclude and /include."""

    def setUp(self) -> None:
        super().setUp()
        self.op = self.token("operator")

    def test_exclude_and_include(self) -> None:
        """The controller excludes and includes; the partition shows the system as Excluded with its raw state."""
        self.hold("operator")
        r = self.call("POST", "/api/partitions/demo/exclude", token=self.op, json={"system": "STS"})
        self.assertEqual((r.code, r.json["excluded"]), (200, ["STS"]))
        systems = {s["id"]: s for s in self.call("GET", "/api/partitions/demo", token=self.op).json["systems"]}
        self.assertEqual((systems["STS"]["state"], systems["STS"]["raw_state"]), ("Excluded", "Idle"))
        self.assertTrue(systems["STS"]["excluded"])
        self.assertEqual(systems["MVD"]["state"], "Idle")
        r = self.call("POST", "/api/partitions/demo/include", token=self.op, json={"system": "STS"})
        self.assertEqual((r.code, r.json["excluded"]), (200, []))
        self.assertEqual(self.center.commands, [
            ("operator", "demo", "exclude", {"system": "STS"}), ("operator", "demo", "include", {"system": "STS"}),
        ])

    def test_bad_bodies(self) -> None:
        """A missing body, a missing or non-string system, or another key is 400 naming the field."""
        self.hold("operator")
        for command in ("exclude", "include"):
            path = f"/api/partitions/demo/{command}"
            self.assertError(self.call("POST", path, token=self.op), 400, "bad_request", field="body")
            self.assertError(self.call("POST", path, token=self.op, json={}), 400, "bad_request", field="system")
            self.assertError(self.call("POST", path, token=self.op, json={"system": 3}), 400, "bad_request",
                             field="system")
            self.assertError(self.call("POST", path, token=self.op, json={"system": "STS", "why": "x"}), 400,
                             "bad_request", field="why")
        self.assertEqual(self.center.commands, [])

    def test_refusals(self) -> None:
        """409 without control, while recording, for TFC; 404 for an unknown system or partition; 403 for a viewer."""
        body = {"system": "STS"}
        self.hold("operator2")
        self.assertError(self.call("POST", "/api/partitions/demo/exclude", token=self.op, json=body), 409,
                         "conflict", holder="operator2")
        self.hold("operator")
        self.center.partitions_["demo"]["state"] = "Running"
        r = self.call("POST", "/api/partitions/demo/exclude", token=self.op, json=body)
        self.assertError(r, 409, "conflict")
        self.assertIn("recording", r.json["reason"])
        self.center.partitions_["demo"]["state"] = "Idle"
        r = self.call("POST", "/api/partitions/demo/exclude", token=self.op, json={"system": "TFC"})
        self.assertError(r, 409, "conflict")
        self.assertIn("never", r.json["reason"])
        self.assertError(self.call("POST", "/api/partitions/demo/exclude", token=self.op, json={"system": "RICH"}),
                         404, "not_found")
        self.assertError(self.call("POST", "/api/partitions/nope/exclude", token=self.op, json=body), 404,
                         "not_found")
        self.assertError(self.call("POST", "/api/partitions/demo/include", token=self.token("viewer"), json=body),
                         403, "forbidden", role="operator")
        self.assertEqual(self.center.commands, [])
