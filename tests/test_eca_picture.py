# -*- test-case-name: tests.test_eca_picture -*-
"""
Tests for L{agents.eca.picture.PartitionPicture}: what the ECA makes of
what a PCA publishes, as lists of effects (no I/O, no clock).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from agents.eca.picture import (
    Condition,
    Effect,
    Emit,
    PartitionPicture,
    PartitionSeen,
    RunEnded,
    RunStarted,
    StageDone,
    SystemSeen,
)
from ecs.fsm.sequence import load_sequence
from ecs.protocol import CONNECTION_PROBLEM

SEQUENCE = load_sequence(None, ["TFC", "DCS", "QA", "FLES"])


def record(state: str, **extra: Any) -> dict[str, Any]:
    """A partition record."""
    return {"id": "p", "state": state, "tag": None, "locked": False, "operation": None, **extra}


def allowed(effects: list[Effect]) -> list[list[str]]:
    """The allowed lists the effects announce."""
    return [e.data["allowed"] for e in effects if isinstance(e, Emit) and e.type == "allowed"]


class AllowedTests(SynchronousTestCase):
    """The picture announces which commands are allowed when that changes (the GUI's buttons)."""

    def setUp(self) -> None:
        self.picture = PartitionPicture("p", SEQUENCE)
        self.picture.set_connected(True)

    def test_partition_record(self) -> None:
        """A new partition state gives an allowed event, the same list again none."""
        top = SEQUENCE.top_active
        effects = []
        for r in (record("Idle"), record("Idle", tag="x"), record(top), record(top, locked=True)):
            effects += self.picture.apply("partition", r)
        self.assertEqual(allowed(effects), [["abort", "configure"], ["abort", "configure", "start"], ["abort"]])

    def test_system_error(self) -> None:
        """A system entering or leaving Error changes whether reset is allowed; other changes send nothing."""
        effects = self.picture.apply("partition", record("Idle"))
        system = {"id": "STS", "kind": "detector", "state": "Unconfigured", "connected": True}
        effects += self.picture.apply("system/STS", system)
        effects += self.picture.apply("system/STS", {**system, "state": "Error"})
        effects += self.picture.apply("system/STS", {**system, "state": "Error", "comment": "again"})
        effects += self.picture.apply("system/STS", None)
        self.assertEqual(
            allowed(effects), [["abort", "configure"], ["abort", "reset", "configure"], ["abort", "configure"]]
        )

    def test_connection(self) -> None:
        """Losing the PCA allows nothing, and the summary says Connection Problem."""
        self.picture.apply("partition", record("Idle"))
        effects = self.picture.set_connected(False)
        self.assertEqual(allowed(effects), [[]])
        self.assertEqual(self.picture.summary("alice")["state"], CONNECTION_PROBLEM)
        self.assertEqual(self.picture.summary("alice")["controller"], "alice")
        self.assertEqual(self.picture.set_connected(False), [])


def conditions(effects: list[Effect]) -> list[Condition]:
    """The alarm conditions among the effects."""
    return [e for e in effects if isinstance(e, Condition)]


class ConditionTests(SynchronousTestCase):
    """The alarm conditions the records show (level-triggered: the alarms drop repeats)."""

    def setUp(self) -> None:
        self.picture = PartitionPicture("p", SEQUENCE)

    def test_error_with_comment(self) -> None:
        """A system in Error holds system_error with its comment; leaving Error ends it and any DCS alarm."""
        up = {"id": "STS", "state": "Idle", "connected": True}
        first = conditions(self.picture.apply("system/STS", up))
        self.assertIn(Condition("system_error", "STS", False, "STS in Error"), first)
        error = conditions(self.picture.apply("system/STS", {**up, "state": "Error", "comment": "HV trip"}))
        self.assertIn(Condition("system_error", "STS", True, "STS in Error: HV trip"), error)
        self.assertNotIn("dcs_alarm", [c.kind for c in error])
        back = conditions(self.picture.apply("system/STS", up))
        self.assertIn(Condition("dcs_alarm", "STS", False), back)
        self.assertIn(Condition("system_error", "STS", False, "STS in Error"), back)

    def test_unreachable_only_after_up(self) -> None:
        """A system that never answered is not unreachable; one that answered and stopped is, until it answers."""
        down = {"id": "STS", "state": "Idle", "connected": False}
        self.assertEqual([c for c in conditions(self.picture.apply("system/STS", down))
                          if c.kind == "system_unreachable"], [])
        self.picture.apply("system/STS", {**down, "connected": True})
        lost = conditions(self.picture.apply("system/STS", down))
        self.assertIn(Condition("system_unreachable", "STS", True, "STS does not answer (Connection Problem)"), lost)
        # A fresh table (a restarted PCA) meets its systems anew.
        self.picture.reset(frozenset({"system/STS"}))
        self.assertEqual([c for c in conditions(self.picture.apply("system/STS", down))
                          if c.kind == "system_unreachable"], [])

    def test_pca_lost(self) -> None:
        """The PCA answering or not is the pca_lost condition."""
        self.picture.set_connected(True)
        self.assertEqual(conditions(self.picture.set_connected(False)),
                         [Condition("pca_lost", "pca:p", True, "the PCA of p does not answer")])


class EffectTests(SynchronousTestCase):
    """Each input gives its effects in order, as values."""

    def setUp(self) -> None:
        self.picture = PartitionPicture("p", SEQUENCE)

    def test_connected_again(self) -> None:
        """Answering again: a state event, what is allowed, and the partition seen (for pending moves)."""
        self.assertEqual(
            self.picture.set_connected(True),
            [
                Emit("state", {"partition": "p", "key": "connected", "value": {"connected": True}}),
                Emit("allowed", {"partition": "p", "allowed": []}),
                PartitionSeen(),
                Condition("pca_lost", "pca:p", False, "the PCA of p does not answer"),
            ],
        )

    def test_system_seen(self) -> None:
        """A connected system record is reported seen; a disconnected one is not."""
        effects = self.picture.apply("system/STS", {"id": "STS", "state": "Idle", "connected": True})
        self.assertIn(SystemSeen("STS"), effects)
        effects = self.picture.apply("system/MVD", {"id": "MVD", "state": "Idle", "connected": False})
        self.assertFalse([e for e in effects if isinstance(e, SystemSeen)])

    def test_excludable(self) -> None:
        """
        Each system as shown (its state event and the details) says whether it
        may be excluded, and why not, as the sequence decides it: TFC (never_excluded),
        QA and FLES (they record) not, a detector and DCS yes; a removed system stays None.
        """
        self.picture.set_connected(True)
        shown = {}
        for system, kind in (("TFC", "global"), ("QA", "global"), ("FLES", "global"), ("DCS", "global"),
                             ("STS", "detector")):
            effects = self.picture.apply(f"system/{system}", {"id": system, "kind": kind, "state": "Idle"})
            shown[system] = next(e.data["value"] for e in effects if isinstance(e, Emit) and e.type == "state")
            self.assertNotIn("excludable", self.picture.records[f"system/{system}"])  # the mirror is left as it came
        for system in ("TFC", "QA", "FLES"):
            self.assertFalse(shown[system]["excludable"], system)
            self.assertEqual(shown[system]["exclusion_refused"], SEQUENCE.exclusion_refused(system, False))
        self.assertIn("never_excluded", shown["TFC"]["exclusion_refused"])
        self.assertIn("records runs", shown["QA"]["exclusion_refused"])
        for system in ("DCS", "STS"):
            self.assertEqual((shown[system]["excludable"], shown[system]["exclusion_refused"]), (True, None))
        details = {s["id"]: s for s in self.picture.details(None)["systems"]}
        self.assertEqual({k: v["excludable"] for k, v in details.items()},
                         {"TFC": False, "QA": False, "FLES": False, "DCS": True, "STS": True})
        removed = self.picture.apply("system/STS", None)
        self.assertIn(Emit("state", {"partition": "p", "key": "system/STS", "value": None}), removed)

    def test_runs(self) -> None:
        """Entering the recording state starts a run (with the tag), leaving it ends the run."""
        recording = SEQUENCE.recording
        assert recording is not None
        self.picture.apply("partition", record(SEQUENCE.top_active, tag="t1"))
        started = self.picture.apply("partition", record(recording.state, tag="t1"))
        self.assertIn(RunStarted("t1"), started)
        again = self.picture.apply("partition", record(recording.state, tag="t1", locked=True))
        self.assertFalse([e for e in again if isinstance(e, RunStarted | RunEnded)])
        ended = self.picture.apply("partition", record(SEQUENCE.top_active, tag="t1"))
        self.assertIn(RunEnded(), ended)

    def test_first_record_reconciles_runs(self) -> None:
        """The first partition record this ECA sees: recording is an initial start, anything else an initial end."""
        recording = SEQUENCE.recording
        assert recording is not None
        first = self.picture.apply("partition", record(recording.state, tag="t1"))
        self.assertIn(RunStarted("t1", initial=True), first)
        other = PartitionPicture("p2", SEQUENCE)
        self.assertIn(RunEnded(initial=True), other.apply("partition", record(SEQUENCE.idle)))
        self.assertFalse(
            [e for e in other.apply("partition", record(SEQUENCE.top_active)) if isinstance(e, RunStarted | RunEnded)]
        )

    def test_reset_drops_missing(self) -> None:
        """A fresh snapshot drops the records it lacks, then says reset."""
        self.picture.apply("system/STS", {"id": "STS", "state": "Idle"})
        self.picture.apply("system/MVD", {"id": "MVD", "state": "Idle"})
        effects = self.picture.reset(frozenset({"system/STS"}))
        self.assertEqual(
            effects,
            [
                Emit("state", {"partition": "p", "key": "system/MVD", "value": None}),
                Condition("system_error", "MVD", False),
                Condition("system_unreachable", "MVD", False),
                Condition("dcs_alarm", "MVD", False),
                Emit("state", {"partition": "p", "key": "reset", "value": None}),
            ],
        )
        self.assertEqual(set(self.picture.records), {"system/STS"})
        self.assertEqual(self.picture.apply("system/MVD", None), [])


class StageTimingTests(SynchronousTestCase):
    """Configure stages are timed from the progress events."""

    def setUp(self) -> None:
        self.picture = PartitionPicture("p", SEQUENCE)

    def progress(self, stage: str, ready: int, total: int, now: float) -> list[Effect]:
        return self.picture.progress_received({"partition": "p", "stage": stage, "ready": ready, "total": total}, now)

    def done(self, effects: list[Effect]) -> list[StageDone]:
        return [e for e in effects if isinstance(e, StageDone)]

    def test_stage_timed_once(self) -> None:
        """From the first progress of a stage to all ready; the closing report again counts nothing."""
        self.assertEqual(self.done(self.progress("TFC", 0, 1, 10.0)), [])
        self.assertEqual(self.done(self.progress("TFC", 1, 1, 12.5)), [StageDone("TFC", 2.5)])
        self.assertEqual(self.done(self.progress("TFC", 1, 1, 12.6)), [])
        self.assertEqual(self.done(self.progress("DCS", 0, 2, 12.6)), [])
        self.assertEqual(self.done(self.progress("DCS", 2, 2, 13.6)), [StageDone("DCS", 1.0)])

    def test_failed_stage_not_timed(self) -> None:
        """A stage that never gets all its systems ready is not observed; its retry is timed afresh."""
        self.progress("TFC", 0, 2, 1.0)
        self.progress("TFC", 1, 2, 2.0)
        self.assertEqual(self.done(self.progress("DCS", 0, 1, 5.0)), [])
        self.assertEqual(self.done(self.progress("DCS", 1, 1, 6.0)), [StageDone("DCS", 1.0)])

    def test_progress_shown(self) -> None:
        """Every progress is an event, and a malformed one is shown but not timed."""
        effects = self.picture.progress_received({"stage": "TFC", "ready": "x"}, 1.0)
        self.assertEqual(effects, [Emit("progress", {"stage": "TFC", "ready": "x"})])
