"""
A picture of a system that runs ahead of the system itself (a state that
came from no message of its own: a forged C{states} message with a far
sequence number, as before states were bound to keys) is corrected by the
next reset or abort, which re-read the system's real state
(L{agents.pca.sequencer.Sequencer.reread}).
"""

from __future__ import annotations

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
