# -*- test-case-name: tests.test_partition -*-
"""
Unit tests of the derived partition state (L{agents.pca.partition}): hand-built
L{SystemView}s, no network, no clock.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from agents.pca.partition import Partition, SystemView, accept_status, detector_stage
from ecs.fsm.sequence import load_sequence, parse_sequence
from ecs.protocol import CONNECTION_PROBLEM

GLOBALS = ["TFC", "DCS", "QA", "FLES"]
SEQUENCE = load_sequence(None, GLOBALS)
STAGE = {"TFC": 0, "STS": 1, "MVD": 1, "FLES": 2, "DCS": 2, "QA": 3}


def view(
    name: str, summary: str | None = "Active", tag: str | None = None, connected: bool = True, seq: int = 1
) -> SystemView:
    """A view of C{name} in C{summary}, with tag C{<name>-1} unless given."""
    kind = "detector" if name in ("STS", "MVD", "TRD") else "global"
    return SystemView(
        name,
        kind,
        STAGE.get(name, 1),
        endpoint="mem://x",
        state=summary,
        summary=summary,
        tag=tag if tag is not None else (f"{name.lower()}-1" if summary in ("Active", "Recording") else None),
        connected=connected,
        seq=seq,
    )


def config(name: str, version: str = "1") -> dict[str, Any]:
    return {"config_id": f"{name.lower()}-{version}", "system": name, "parameters": {}}


class Fixture(SynchronousTestCase):
    def make(self, **summaries: str | None) -> Partition:
        """A partition of the default sequence; every system Active unless named."""
        views = [view(n, summaries.get(n, "Active")) for n in STAGE]
        return Partition("p1", SEQUENCE, views)

    def set(self, partition: Partition, name: str, **changes: Any) -> None:
        v = partition.systems[name]
        for key, value in changes.items():
            setattr(v, key, value)
        partition.refresh(v)


class LevelTests(Fixture):
    def test_all_active(self) -> None:
        """Every stage ready: level 4, the last active state."""
        p = self.make()
        self.assertEqual(p.level, 4)
        self.assertEqual(p.state, "QA_Active")
        for k, total in enumerate((1, 2, 2, 1)):
            self.assertEqual(p.stage_counts(k), (total, total))
            self.assertTrue(p.stage_ready(k))
            self.assertFalse(p.stage_failed(k))

    def test_all_unconfigured(self) -> None:
        """Nothing ready and nothing failed: Idle."""
        p = self.make(**{n: "Unconfigured" for n in STAGE})
        self.assertEqual(p.level, 0)
        self.assertEqual(p.state, "Idle")
        self.assertEqual(p.stage_counts(1), (0, 2))

    def test_nothing_known(self) -> None:
        """Views not yet connected: every system failed (Connection Problem), the partition Idle."""
        p = Partition("p1", SEQUENCE, [SystemView(n, "global", STAGE[n]) for n in STAGE])
        self.assertEqual(p.state, "Idle")
        self.assertTrue(p.stage_failed(0))
        self.assertEqual(p.systems["TFC"].shown_state, CONNECTION_PROBLEM)

    def test_levels(self) -> None:
        """The level counts ready stages from the first; a gap stops it."""
        p = self.make(MVD="Unconfigured")
        self.assertEqual(p.level, 1)
        self.assertEqual(p.state, "TFC_Active")
        self.assertEqual(p.stage_counts(1), (1, 2))
        p = self.make(DCS="Unconfigured")
        self.assertEqual(p.state, "Detectors_Active")
        p = self.make(QA="Unconfigured")
        self.assertEqual(p.state, "FLES_and_DCS_Active")
        p = self.make(TFC="Unconfigured")
        self.assertEqual(p.state, "Idle")  # higher stages ready do not count

    def test_configuring(self) -> None:
        """A system of the stage at the level configuring (no operation): that stage's configuring state."""
        p = self.make(STS="Configuring")
        self.assertEqual(p.state, "Configuring_Detectors")
        self.assertEqual(p._configuring[1], 1)
        p = self.make(TFC="Configuring")
        self.assertEqual(p.state, "Configuring_TFC")
        p = self.make(QA="Configuring")
        self.assertEqual(p.state, "Configuring_QA")

    def test_configuring_above_level_ignored(self) -> None:
        """A system configuring above the first stage that is not ready does not make the state configuring."""
        p = self.make(MVD="Unconfigured", QA="Configuring")
        self.assertEqual(p.state, "TFC_Active")

    def test_running_stage(self) -> None:
        """The stage an operation configures shows as configuring, even before any system moves."""
        p = self.make(**{n: "Unconfigured" for n in STAGE})
        p.running_stage = 0
        self.assertEqual(p.state, "Configuring_TFC")
        p.running_stage = 2  # not the stage at the level: ignored
        self.assertEqual(p.state, "Idle")

    def test_running_stage_before_failure(self) -> None:
        """While an operation runs its stage, the state stays configuring (the sequencer fails it)."""
        p = self.make(STS="Error")
        p.running_stage = 1
        self.assertEqual(p.state, "Configuring_Detectors")
        p.running_stage = None
        self.assertEqual(p.state, "TFC_Active")


class FallsToTests(Fixture):
    def test_error_falls_to(self) -> None:
        """A failed system of the stage at the level gives the stage's falls_to."""
        for name, expected in (("TFC", "Idle"), ("STS", "TFC_Active"), ("DCS", "Detectors_Active"),
                               ("FLES", "Detectors_Active"), ("QA", "FLES_and_DCS_Active")):
            p = self.make(**{name: "Error"})
            self.assertEqual(p.state, expected, name)
            self.assertTrue(p.stage_failed(STAGE[name]), name)

    def test_connection_problem_falls_to(self) -> None:
        """An unreachable system counts as failed."""
        p = self.make()
        self.set(p, "MVD", connected=False)
        self.assertEqual(p.state, "TFC_Active")
        self.assertEqual(p._failed[1], 1)
        self.assertEqual(p.systems["MVD"].event()["state"], CONNECTION_PROBLEM)
        self.set(p, "MVD", connected=True)
        self.assertEqual(p.state, "QA_Active")
        self.assertEqual(p._failed[1], 0)

    def test_error_beats_configuring(self) -> None:
        """A failed system wins over a configuring one of the same stage."""
        p = self.make(STS="Error", MVD="Configuring")
        self.assertEqual(p.state, "TFC_Active")

    def test_declared_falls_to(self) -> None:
        """A stage's declared falls_to is used instead of the previous active state."""
        sequence = parse_sequence(
            {
                "name": "x",
                "idle": "Idle",
                "stages": [
                    {"name": "A", "systems": ["TFC"], "configuring": "CA", "active": "AA", "timeout": 1},
                    {"name": "B", "systems": ["detectors"], "configuring": "CB", "active": "BA", "timeout": 1},
                    {"name": "C", "systems": ["QA"], "configuring": "CC", "active": "CCA", "timeout": 1,
                     "falls_to": "Idle"},
                ],
            },
            "<test>",
            GLOBALS,
        )
        qa = SystemView("QA", "global", 2, state="Error", summary="Error", connected=True)
        views = [view("TFC"), view("STS"), qa]
        p = Partition("p1", sequence, views)
        self.assertEqual(p.level, 2)
        self.assertEqual(p.state, "Idle")
        self.assertFalse(p.recording())  # no recording declared
        self.assertEqual(p.recording_systems(), [])


class RecordingTests(Fixture):
    def test_recording(self) -> None:
        """Every stage ready and QA and FLES recording: Recording."""
        p = self.make(QA="Recording", FLES="Recording")
        self.assertTrue(p.recording())
        self.assertEqual(p.state, "Recording")
        self.assertEqual([v.id for v in p.recording_systems()], ["QA", "FLES"])

    def test_one_recording(self) -> None:
        """Only one recording system recording: the last active state, not Recording."""
        p = self.make(QA="Recording")
        self.assertFalse(p.recording())
        self.assertEqual(p.state, "QA_Active")

    def test_recording_needs_every_stage(self) -> None:
        """Recording systems recording while a detector is not ready: not Recording; falls back."""
        p = self.make(QA="Recording", FLES="Recording", STS="Error")
        self.assertFalse(p.recording())
        self.assertEqual(p.state, "TFC_Active")

    def test_recording_needs_connection(self) -> None:
        """A recording system that is unreachable does not record for the partition."""
        p = self.make(QA="Recording", FLES="Recording")
        self.set(p, "FLES", connected=False)
        self.assertFalse(p.recording())
        self.assertEqual(p.state, "Detectors_Active")


class ReadinessTests(Fixture):
    def test_expected_configuration(self) -> None:
        """With expected configurations, only the reported right one is ready; refresh_all recounts."""
        p = self.make()
        p.expected = {n: config(n) for n in STAGE}
        p.expected["STS"] = config("STS", "2")
        p.refresh_all()
        self.assertFalse(p.is_ready(p.systems["STS"]))
        self.assertEqual(p.stage_counts(1), (1, 2))
        self.assertEqual(p.state, "TFC_Active")
        self.set(p, "STS", tag="sts-2")
        self.assertEqual(p.state, "QA_Active")

    def test_no_expected_configuration(self) -> None:
        """Without expected configurations (after a restart without a state file) any tag is ready."""
        p = self.make()
        self.set(p, "STS", tag="whatever")
        self.assertTrue(p.is_ready(p.systems["STS"]))

    def test_needs_configure(self) -> None:
        """A system marked for (re)configuration is not ready."""
        p = self.make()
        self.set(p, "DCS", needs_configure=True)
        self.assertEqual(p.state, "Detectors_Active")
        self.assertFalse(p.stage_failed(2))

    def test_recording_is_ready(self) -> None:
        """Recording counts as ready; Configuring, Unconfigured, Error and unknown do not."""
        p = self.make()
        for summary, ready in (("Recording", True), ("Configuring", False), ("Unconfigured", False),
                               ("Error", False), (None, False)):
            self.set(p, "QA", summary=summary)
            self.assertEqual(p.is_ready(p.systems["QA"]), ready, summary)
            self.assertEqual(p.stage_counts(3), (int(ready), 1), summary)

    def test_refresh_idempotent(self) -> None:
        """Refreshing a view twice counts it once."""
        p = self.make(STS="Error")
        v = p.systems["STS"]
        p.refresh(v)
        p.refresh(v)
        self.assertEqual(p._failed[1], 1)
        self.assertEqual(p._ready[1], 1)
        self.set(p, "STS", summary="Active", tag="sts-1")
        self.assertEqual((p._failed[1], p._ready[1]), (0, 2))


class MismatchTests(Fixture):
    def setUp(self) -> None:
        self.p = self.make()
        self.p.expected = {n: config(n) for n in STAGE}
        self.p.refresh_all()

    def test_mismatch(self) -> None:
        """Active with another configuration than expected: the expected id."""
        self.set(self.p, "STS", tag="other")
        self.assertEqual(self.p.mismatch(self.p.systems["STS"]), "sts-1")
        self.set(self.p, "QA", summary="Recording", tag="other")
        self.assertEqual(self.p.mismatch(self.p.systems["QA"]), "qa-1")

    def test_no_mismatch(self) -> None:
        """The right configuration, none expected, not Active, due for configure, or unreachable: no mismatch."""
        p = self.p
        self.assertIsNone(p.mismatch(p.systems["STS"]))
        self.set(p, "STS", tag="other", needs_configure=True)
        self.assertIsNone(p.mismatch(p.systems["STS"]))
        self.set(p, "STS", needs_configure=False, summary="Configuring")
        self.assertIsNone(p.mismatch(p.systems["STS"]))
        self.set(p, "STS", summary="Active", connected=False)
        self.assertIsNone(p.mismatch(p.systems["STS"]))
        del p.expected["MVD"]
        self.set(p, "MVD", tag="other")
        self.assertIsNone(p.mismatch(p.systems["MVD"]))


class AcceptStatusTests(SynchronousTestCase):
    def status(self, seq: Any, state: Any = "Active", summary: Any = "Active", **more: Any) -> dict[str, Any]:
        return {"seq": seq, "state": state, "summary": summary, **more}

    def test_newer(self) -> None:
        """A later sequence number is folded in, with tag and comment."""
        v = view("STS", "Unconfigured", seq=3)
        self.assertTrue(accept_status(v, self.status(4, "Configuring_Step1", "Configuring", tag="t", comment="c")))
        self.assertEqual(
            (v.seq, v.state, v.summary, v.tag, v.comment), (4, "Configuring_Step1", "Configuring", "t", "c")
        )

    def test_stale_dropped(self) -> None:
        """The same or an older sequence number (same incarnation) is dropped."""
        v = view("STS", "Active", seq=5)
        v.incarnation = "A"
        self.assertFalse(accept_status(v, self.status(5, "Error", "Error")))
        self.assertFalse(accept_status(v, self.status(4, "Error", "Error"), "A"))
        self.assertEqual((v.seq, v.summary), (5, "Active"))

    def test_seq_zero_restart(self) -> None:
        """Sequence number 0 means the controller restarted: accepted even when lower."""
        v = view("STS", "Active", seq=7)
        self.assertTrue(accept_status(v, self.status(0, "Unconfigured", "Unconfigured")))
        self.assertEqual((v.seq, v.summary, v.tag), (0, "Unconfigured", None))
        self.assertTrue(accept_status(v, self.status(1)))

    def test_new_incarnation(self) -> None:
        """A new incarnation is accepted with any number and remembered."""
        v = view("STS", "Active", seq=7)
        v.incarnation = "A"
        self.assertTrue(accept_status(v, self.status(2, "Unconfigured", "Unconfigured"), "B"))
        self.assertEqual((v.seq, v.incarnation, v.summary), (2, "B", "Unconfigured"))
        self.assertFalse(accept_status(v, self.status(1), "B"))
        self.assertTrue(accept_status(v, self.status(3), "B"))

    def test_first_incarnation(self) -> None:
        """The first update with an incarnation is accepted and records it."""
        v = SystemView("STS", "detector", 1)
        self.assertTrue(accept_status(v, self.status(5), "A"))
        self.assertEqual(v.incarnation, "A")

    def test_reply_without_incarnation(self) -> None:
        """A reply (no incarnation) keeps the known incarnation."""
        v = view("STS", "Active", seq=2)
        v.incarnation = "A"
        self.assertTrue(accept_status(v, self.status(3)))
        self.assertEqual(v.incarnation, "A")

    def test_malformed_ignored(self) -> None:
        """Statuses without an int seq and string state and summary are ignored."""
        v = view("STS", "Active", seq=2)
        for bad in (
            {"state": "Active", "summary": "Active"},
            self.status("3"),
            self.status(3.0),
            self.status(None),
            self.status(3, state=None),
            self.status(3, summary=5),
            {"seq": 3, "state": "Active"},
        ):
            self.assertFalse(accept_status(v, bad), bad)
        self.assertEqual((v.seq, v.summary), (2, "Active"))

    def test_boolean_seq_ignored(self) -> None:
        """A boolean seq (JSON true/false) is malformed, not the number 1 or 0."""
        v = view("STS", "Active", seq=0)
        self.assertFalse(accept_status(v, self.status(True, "Error", "Error")))
        self.assertFalse(accept_status(v, self.status(False, "Error", "Error")))
        self.assertEqual(v.summary, "Active")


    def test_bad_tag_and_comment(self) -> None:
        """A tag or comment of the wrong type is read as none."""
        v = view("STS", "Active", seq=2)
        self.assertTrue(accept_status(v, self.status(3, tag=5, comment=["x"])))
        self.assertIsNone(v.tag)
        self.assertEqual(v.comment, "")


class MembershipTests(Fixture):
    def test_add(self) -> None:
        """Adding a system counts it in its stage from its current view."""
        p = self.make()
        p.add(view("TRD", "Unconfigured"))
        self.assertEqual(p.stage_counts(1), (2, 3))
        self.assertEqual(p.state, "TFC_Active")
        p.add(SystemView("RICH", "detector", 1))  # not yet connected: failed
        self.assertEqual(p._failed[1], 1)
        self.assertEqual(p.members(1), [p.systems["STS"], p.systems["MVD"], p.systems["TRD"], p.systems["RICH"]])

    def test_add_twice(self) -> None:
        """Adding a system already there is an error."""
        p = self.make()
        self.assertRaises(KeyError, p.add, view("STS"))
        self.assertEqual(p.stage_counts(1), (2, 2))

    def test_remove(self) -> None:
        """Removing a system removes its counts and its expected configuration."""
        p = self.make(STS="Error")
        p.expected = {"STS": config("STS"), "MVD": config("MVD")}
        p.refresh_all()
        self.assertEqual(p.state, "TFC_Active")
        removed = p.remove("STS")
        self.assertEqual(removed.id, "STS")
        self.assertEqual((p._size[1], p._ready[1], p._failed[1], p._configuring[1]), (1, 1, 0, 0))
        self.assertEqual(p.state, "QA_Active")
        self.assertNotIn("STS", p.expected)
        self.assertIn("MVD", p.expected)
        self.assertRaises(KeyError, p.remove, "STS")

    def test_remove_configuring(self) -> None:
        """Removing a configuring system removes its configuring count."""
        p = self.make(MVD="Configuring")
        self.assertEqual(p.state, "Configuring_Detectors")
        p.remove("MVD")
        self.assertEqual(p._configuring[1], 0)
        self.assertEqual(p.state, "QA_Active")

    def test_empty_detector_stage(self) -> None:
        """A stage without systems (no detectors) is ready."""
        p = self.make()
        p.remove("STS")
        p.remove("MVD")
        self.assertTrue(p.stage_ready(1))
        self.assertEqual(p.stage_counts(1), (0, 0))
        self.assertEqual(p.state, "QA_Active")

    def test_stage_for(self) -> None:
        """Any detector maps to the detectors stage; global systems to theirs."""
        p = self.make()
        self.assertEqual(p.stage_for("ANY", True), 1)
        self.assertEqual(p.stage_for("QA", False), 3)
        self.assertRaises(KeyError, p.stage_for, "HLT", False)
        self.assertEqual(detector_stage(SEQUENCE), 1)


class RecordTests(Fixture):
    def test_partition_event(self) -> None:
        """The partition record: state, summary, tag, level, stages, and extras."""
        p = self.make(DCS="Configuring")
        p.tag = "v1"
        self.assertEqual(
            p.event({"locked": True}),
            {"id": "p1", "state": "Configuring_FLES_and_DCS", "summary": "Configuring", "tag": "v1",
             "level": 2, "stages": 4, "locked": True},
        )

    def test_system_event(self) -> None:
        """A system record: summary as state, raw state, tag, comment, connected."""
        v = view("STS", "Active")
        v.state = "Active"
        v.comment = "fine"
        self.assertEqual(
            v.event(),
            {"id": "STS", "kind": "detector", "state": "Active", "raw_state": "Active", "tag": "sts-1",
             "comment": "fine", "connected": True},
        )
        v.connected = False
        self.assertEqual(v.event()["state"], CONNECTION_PROBLEM)
        self.assertEqual(SystemView("X", "global", 0, connected=True).shown_state, "Unknown")
