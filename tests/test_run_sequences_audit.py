# -*- test-case-name: tests.test_run_sequences_audit -*-
"""
The audit trail of scripted run sequences (issue 14: "the audit page lists
each of these actions"): starting a sequence and its pause, resume and
abort are audited with the user, the arguments and the outcome, refusals
with their reason; the whole system in memory on a clock
(L{tests.test_run_sequences_eca.SequenceHarness}).
"""

from __future__ import annotations

from typing import Any

from tests.test_run_sequences_eca import SequenceHarness


class SequenceAuditTests(SequenceHarness):
    async def audited(self) -> list[tuple[str, str, dict[str, Any], str]]:
        """The audit rows of sequences, oldest first: (user, action, arguments, outcome)."""
        return [(row.user, row.action, row.arguments, row.outcome)
                for row in reversed(await self.store.audit_entries(limit=100)) if row.action.startswith("sequence_")]

    async def test_run_pause_resume_abort(self) -> None:
        """Each action on a sequence is one audit row, as the user who did it."""
        await self.take("operator")
        self.assertEqual((await self.launch("hold")).code, 200)
        await self.in_step(1)
        self.assertEqual((await self.act("pause")).code, 200)
        self.assertEqual((await self.act("resume")).code, 200)
        await self.in_step(2, "QA_Active")
        self.assertEqual((await self.act("abort")).code, 200)
        self.assertEqual((await self.ended())["state"], "aborted")
        demo = {"partition": "demo"}
        self.assertEqual(await self.audited(), [
            ("operator", "sequence_run", {**demo, "sequence": "hold"}, "ok"),
            ("operator", "sequence_pause", demo, "ok"),
            ("operator", "sequence_resume", demo, "ok"),
            ("operator", "sequence_abort", demo, "ok"),
        ])

    async def test_refusals(self) -> None:
        """A refused start or abort is audited with its reason (the role check alone is not)."""
        await self.take("operator")
        self.assertEqual((await self.act("abort")).code, 409)  # none runs
        self.assertEqual((await self.launch("hold")).code, 200)
        self.assertEqual((await self.launch("scan")).code, 409)  # one runs
        self.assertEqual((await self.launch("hold", user="operator2")).code, 409)  # control held by operator
        self.assertEqual((await self.launch("hold", user="viewer")).code, 403)
        self.assertEqual((await self.launch("nope")).code, 404)
        rows = await self.audited()
        self.assertEqual([(user, action, outcome.split(":")[0]) for user, action, _, outcome in rows], [
            ("operator", "sequence_abort", "conflict"),
            ("operator", "sequence_run", "ok"),
            ("operator", "sequence_run", "conflict"),
            ("operator2", "sequence_run", "conflict"),
        ])
        self.assertIn("sequence hold runs on partition demo", rows[2][3])
        await self.act("abort")
        await self.ended()
