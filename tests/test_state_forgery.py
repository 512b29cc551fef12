"""
A picture of a system that runs ahead of the system itself (a state that
came from no message of its own: a forged C{states} message with a far
sequence number, as before states were bound to keys) is corrected by the
next reset or abort, which re-read the system's real state
(L{agents.pca.sequencer.Sequencer.reread}); and controllers obey only the
ECA and the PCA of their own partition, whatever a message claims
(L{ecs.net.authz.controller_rules}).
"""

from __future__ import annotations

from typing import Any

from ecs.net.authz import FORBIDDEN
from ecs.net.memory import MemoryNode
from ecs.net.transport import RequestError
from tests.test_sequencer import Scenario


class RereadTests(Scenario):
    """Reset and abort take the system's own state."""

    def forge(self, system: str) -> None:
        view = self.system(system)
        forged = {"seq": view.seq + 1000, "state": "Error", "summary": "Error", "comment": "HV trip"}
        self.assertTrue(self.pca.sequencer.update(system, forged, view.incarnation))
        self.flush()
        self.assertEqual(self.system(system).summary, "Error")

    def test_reset_refused_rereads(self) -> None:
        """The real system refuses the reset (it is Active): the picture takes its state again."""
        self.configure_to_top()
        self.forge("STS")
        mark = self.mark()
        error = self.command("reset", system="STS")
        self.assertEqual(getattr(error, "code", None), "not_allowed", error)
        self.flush()
        self.assertEqual(self.system("STS").summary, "Active")
        self.assertEqual(self.system("STS").state, self.controller("STS").state)
        self.assertLogged("taking the system's own state", mark)

    def test_abort_rereads(self) -> None:
        """After an abort, every system shows what it really is, the forged one too."""
        self.configure_to_top()
        self.forge("MVD")
        self.command("abort")
        self.advance(2.0)
        self.assertEqual(self.system("MVD").state, self.controller("MVD").state)
        self.assertNotEqual(self.system("MVD").summary, "Error")
        self.assertEqual(self.state, "Idle")


class ControllerAuthorisationTests(Scenario):
    """Controllers obey the ECA and their own partition's PCA, by key (identities on the memory transport)."""

    def as_key(self, identity: str, name: str, address: str, target: str, type: str, **body: Any) -> Any:
        node = MemoryNode(self.network, name, identity=identity)
        results: list[Any] = []
        node.connect(address).request(target, type, body).addCallbacks(
            results.append, lambda f: results.append(f.value)
        )
        self.flush()
        return results[0]

    def test_pca_of_another_partition_refused(self) -> None:
        """The PCA of p2 neither commands a detector of p1 nor a global system for p1; p1's PCA does."""
        refused = self.as_key("pca.p2", "pca:p2", "mem://detectors", "STS", "error")
        self.assertIsInstance(refused, RequestError)
        self.assertEqual(refused.code, FORBIDDEN)
        self.assertIn("PCA of partition p1", refused.reason)
        refused = self.as_key("pca.p2", "pca:p2", "mem://globals", "DCS", "error", partition="p1")
        self.assertEqual(getattr(refused, "code", None), FORBIDDEN)
        self.assertNotEqual(self.controller("STS").state, "Error")
        obeyed = self.as_key("pca.p1", "pca:p1", "mem://detectors", "STS", "error")
        self.assertEqual(obeyed["state"], "Error")

    def test_claimed_sender_does_not_help(self) -> None:
        """A detector's key claiming to be the ECA is refused by the ECA-only assign."""
        refused = self.as_key("detector.MVD", "eca", "mem://detectors", "STS", "assign", partition=None)
        self.assertEqual(getattr(refused, "code", None), FORBIDDEN)
        self.assertIn("claims sender 'eca'", refused.reason)
        self.assertEqual(self.controller("STS").partition, "p1")
