"""
Faults injected through the ECA (L{agents.eca.inject}): the request goes
with the ECA's key to the controller's registered endpoint, is audited under
the expert's name with its outcome, and bad bodies are refused by name.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.audit import Audit
from agents.eca.inject import FaultInjector
from ecs.control import ControlError, User
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.registry import AgentInfo
from ecs.net.remote_registry import Entry
from ecs.net.transport import Request, RequestError
from tests.support.eca_parts import FakeLogBook, inline_store

EXPERT = User("erin", ("expert",))
OPERATOR = User("otto", ("operator",))


class FaultInjectorTests(SynchronousTestCase):
    """The injector on a memory network, with a real store for the audit trail."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.network = MemoryNetwork(self.clock)
        self.received: list[Request] = []

        def inject(request: Request) -> dict[str, Any]:
            self.received.append(request)
            if request.body.get("partition") == "nowhere":
                raise RequestError("unknown_partition", "STS does not serve partition 'nowhere'")
            return {"system": "STS", "results": {"STS": "Error"}}

        MemoryNode(self.network, "detector:STS").serve("mem://sts").register("STS", {"inject": inject})
        self.entries = {("detector", "STS"): Entry(AgentInfo("STS", "detector", "mem://sts"), 0.0)}
        self.store = inline_store(self, self.clock)
        self.logbook = FakeLogBook()
        self.injector = FaultInjector(
            MemoryNode(self.network, "eca"), self.entries, Audit(self.store), self.logbook  # type: ignore[arg-type]
        )

    def inject_now(self, user: User, system: str, body: Any) -> Any:
        d = self.injector.inject(user, system, body)
        self.network.flush()
        self.clock.advance(0)
        self.network.flush()
        return d

    def audit(self) -> list[tuple[str, str, dict[str, Any], str]]:
        rows = self.successResultOf(self.store.audit_entries())
        return [(r.user, r.action, r.arguments, r.outcome) for r in rows]

    def test_sent_by_the_eca_and_audited(self) -> None:
        """The controller gets the request from the ECA; the answer comes back; audit and log name the expert."""
        reply = self.successResultOf(self.inject_now(EXPERT, "STS", {"what": "error"}))
        self.assertEqual(reply, {"system": "STS", "results": {"STS": "Error"}})
        self.assertEqual([(r.type, r.body, r.sender) for r in self.received], [("inject", {"what": "error"}, "eca")])
        self.assertEqual(self.audit(), [("erin", "inject", {"system": "STS", "what": "error"}, "ok")])
        self.assertEqual(self.logbook.lines, [("warn", "ECA", "erin injected error into STS", None)])

    def test_refusals_are_audited_with_the_reason(self) -> None:
        """A controller's refusal is a 409 naming it, audited; an unknown system is 404, audited."""
        error = self.failureResultOf(self.inject_now(EXPERT, "STS", {"what": "resolved", "partition": "nowhere"}),
                                     ControlError).value
        self.assertEqual((error.code, error.status), ("conflict", 409))
        self.assertIn("nowhere", error.reason)
        missing = self.failureResultOf(self.inject_now(EXPERT, "TOF", {"what": "error"}), ControlError).value
        self.assertEqual(missing.code, "not_found")
        self.assertIn("TOF", missing.reason)
        outcomes = [(a[2]["system"], a[3]) for a in reversed(self.audit())]  # newest first
        self.assertEqual([s for s, _ in outcomes], ["STS", "TOF"])
        self.assertIn("nowhere", outcomes[0][1])
        self.assertTrue(outcomes[1][1].startswith("not_found"), outcomes)
        self.assertEqual(self.logbook.lines, [])

    def test_bad_bodies_named(self) -> None:
        """Each wrong body is refused before anything is sent, naming what was wrong."""
        cases = [
            ([], "must be an object"),
            ({"what": "explode"}, "'what' must be one of error, resolved, detector_error"),
            ({"what": "error", "colour": 1}, "unknown field(s) colour"),
            ({"what": "detector_error"}, "needs 'detector'"),
            ({"what": "error", "detector": "TRD"}, "takes no 'detector'"),
            ({"what": "error", "partition": 7}, "'partition' must be an id"),
        ]
        for body, reason in cases:
            error = self.assertRaises(ControlError, self.injector.inject, EXPERT, "STS", body)
            self.assertEqual(error.code, "bad_request", body)
            self.assertIn(reason, error.reason)
        self.assertEqual(self.received, [])

    def test_needs_expert(self) -> None:
        """An operator may not inject."""
        error = self.assertRaises(ControlError, self.injector.inject, OPERATOR, "STS", {"what": "error"})
        self.assertEqual(error.code, "forbidden")
        self.assertEqual(self.received, [])

    def test_detector_error_through_a_global_system(self) -> None:
        """detector-error (the CLI's spelling) goes to the named global system with the detector."""
        seen: list[dict[str, Any]] = []
        MemoryNode(self.network, "global:all").serve("mem://dcs").register(
            "DCS", {"inject": lambda r: seen.append(r.body) or {"partition": "demo", "reply": {}}}
        )
        self.entries[("global", "DCS")] = Entry(AgentInfo("DCS", "global", "mem://dcs"), 0.0)
        self.successResultOf(self.inject_now(EXPERT, "DCS", {"what": "detector-error", "detector": "STS"}))
        self.assertEqual(seen, [{"what": "detector_error", "detector": "STS"}])
