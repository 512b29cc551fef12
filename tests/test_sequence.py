# -*- test-case-name: tests.test_sequence -*-
"""
Tests for L{ecs.fsm.sequence}: the shipped C{fsm/partition.yaml}, the look-up
helpers of L{Sequence}, an alternative sequence, and every rejection, each
named by file and key path.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ecs import paths
from ecs.config.settings import ConfigError, load_subsystems
from ecs.fsm.sequence import (
    DETECTORS,
    Recording,
    Sequence,
    Stage,
    load_sequence,
    parse_sequence,
)

SHIPPED = paths.data_dir("fsm") / "partition.yaml"
ORIGINAL_STATES = [
    "Idle",
    "Configuring_TFC",
    "TFC_Active",
    "Configuring_Detectors",
    "Detectors_Active",
    "Configuring_FLES_and_DCS",
    "FLES_and_DCS_Active",
    "Configuring_QA",
    "QA_Active",
    "Recording",
]
GLOBALS = ("TFC", "DCS", "QA", "FLES")
KNOWN = "(known: TFC, DCS, QA, FLES)"

ALTERNATIVE = """\
name: no-qa
idle: Idle
stages:
  - {name: TFC, systems: [TFC], configuring: Configuring_TFC, active: TFC_Active, timeout: 30}
  - {name: Detectors, systems: [detectors], configuring: Configuring_Detectors,
     active: Detectors_Active, timeout: 60}
  - {name: HLT, systems: [HLT], configuring: Configuring_HLT, active: HLT_Active, timeout: 20}
  - {name: FLES_and_DCS, systems: [FLES, DCS], configuring: Configuring_FLES_and_DCS,
     active: FLES_and_DCS_Active, timeout: 30}
recording:
  state: Recording
  systems: [FLES]
  timeout: 5
"""


def shipped_data() -> dict[str, Any]:
    """A fresh copy of the shipped document, to change in a test."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return copy.deepcopy(data)


class ShippedSequenceTests(SynchronousTestCase):
    """The shipped C{fsm/partition.yaml} reproduces the original partition FSM."""

    def setUp(self) -> None:
        self.sequence = load_sequence(global_systems=load_subsystems().global_systems)

    def test_default_path_is_shipped_file(self) -> None:
        """With no path, the shipped file is loaded and named as the source."""
        self.assertEqual(self.sequence.source, str(SHIPPED))
        self.assertEqual(self.sequence.name, "partition")

    def test_original_states(self) -> None:
        """The states are exactly the original ones, in hierarchy order."""
        self.assertEqual(self.sequence.states(), ORIGINAL_STATES)

    def test_stages(self) -> None:
        """Four stages with the original systems, states, indices and timeouts."""
        self.assertEqual(
            self.sequence.stages[2],
            Stage(
                name="FLES_and_DCS",
                systems=("FLES", "DCS"),
                configuring="Configuring_FLES_and_DCS",
                active="FLES_and_DCS_Active",
                timeout=30.0,
                falls_to="Detectors_Active",
                index=2,
            ),
        )
        self.assertEqual([s.name for s in self.sequence.stages], ["TFC", "Detectors", "FLES_and_DCS", "QA"])
        self.assertEqual([s.index for s in self.sequence.stages], [0, 1, 2, 3])
        self.assertEqual([s.timeout for s in self.sequence.stages], [30.0, 60.0, 30.0, 30.0])
        self.assertEqual(self.sequence.stages[1].systems, (DETECTORS,))

    def test_fall_back_targets(self) -> None:
        """A failing system drops the partition to the original target state."""
        falls = {
            ("TFC", False): "Idle",
            ("STS", True): "TFC_Active",
            ("FLES", False): "Detectors_Active",
            ("DCS", False): "Detectors_Active",
            ("QA", False): "FLES_and_DCS_Active",
        }
        for (system, is_detector), target in falls.items():
            self.assertEqual(self.sequence.stage_of_system(system, is_detector).falls_to, target)

    def test_recording(self) -> None:
        """Recording is entered by QA then FLES, with a 10 s confirmation timeout."""
        self.assertEqual(
            self.sequence.recording, Recording(state="Recording", systems=("QA", "FLES"), timeout=10.0)
        )

    def test_loads_without_global_systems(self) -> None:
        """Without the global systems to check against, the same sequence loads."""
        self.assertEqual(load_sequence(SHIPPED), self.sequence)


class HelperTests(SynchronousTestCase):
    """The look-up helpers of L{Sequence}, on the shipped sequence."""

    def setUp(self) -> None:
        self.sequence = load_sequence(SHIPPED, GLOBALS)

    def test_stage_of_global_system(self) -> None:
        """A global system maps to the stage that lists it."""
        self.assertEqual(self.sequence.stage_of_system("TFC", False).name, "TFC")
        self.assertEqual(self.sequence.stage_of_system("DCS", False).name, "FLES_and_DCS")
        self.assertEqual(self.sequence.stage_of_system("QA", False).index, 3)

    def test_stage_of_detector(self) -> None:
        """Any detector maps to the stage listing C{detectors}, whatever its id."""
        self.assertEqual(self.sequence.stage_of_system("MVD", True).name, "Detectors")
        self.assertEqual(self.sequence.stage_of_system("TFC", True).name, "Detectors")

    def test_stage_of_unknown_system(self) -> None:
        """An unconfigured system is a KeyError naming it and the configured systems."""
        error = self.assertRaises(KeyError, self.sequence.stage_of_system, "HLT", False)
        self.assertEqual(
            str(error),
            f"no stage of {SHIPPED} configures system 'HLT' "
            "(stages configure: TFC, detectors, FLES, DCS, QA)",
        )

    def test_stage_of_detector_without_detector_stage(self) -> None:
        """A sequence with no C{detectors} stage cannot place a detector (KeyError)."""
        stage = Stage("TFC", ("TFC",), "Configuring_TFC", "TFC_Active", 1.0, "Idle", 0)
        sequence = Sequence("s", "s.yaml", "Idle", (stage,), None)
        error = self.assertRaises(KeyError, sequence.stage_of_system, "STS", True)
        self.assertIn("detector 'STS'", str(error))

    def test_level_of_state(self) -> None:
        """Levels count configured stages: Idle 0, TFC_Active 1, ..., Recording 4."""
        levels = [self.sequence.level_of_state(state) for state in ORIGINAL_STATES]
        self.assertEqual(levels, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])

    def test_level_of_unknown_state(self) -> None:
        """An unknown state is a KeyError listing the known ones."""
        error = self.assertRaises(KeyError, self.sequence.level_of_state, "Flying")
        self.assertIn("'Flying'", str(error))
        self.assertIn("Configuring_TFC", str(error))

    def test_summary_of(self) -> None:
        """Each state has the summary Idle, Configuring, Active or Recording."""
        summaries = [self.sequence.summary_of(state) for state in ORIGINAL_STATES]
        self.assertEqual(summaries, ["Idle"] + ["Configuring", "Active"] * 4 + ["Recording"])

    def test_global_systems(self) -> None:
        """Global systems in order of first appearance, without C{detectors}."""
        self.assertEqual(self.sequence.global_systems(), ["TFC", "FLES", "DCS", "QA"])

    def test_top_active(self) -> None:
        """The top active state is the last stage's active state."""
        self.assertEqual(self.sequence.top_active, "QA_Active")

    def test_stage_named(self) -> None:
        """Stages are found by name; an unknown name is a KeyError listing the stages."""
        self.assertEqual(self.sequence.stage_named("Detectors").index, 1)
        error = self.assertRaises(KeyError, self.sequence.stage_named, "HLT")
        self.assertIn("(stages: TFC, Detectors, FLES_and_DCS, QA)", str(error))


class AlternativeSequenceTests(SynchronousTestCase):
    """A sequence other than the shipped one: no QA, an HLT stage, FLES records alone."""

    def setUp(self) -> None:
        path = Path(self.mktemp())
        path.write_text(ALTERNATIVE, encoding="utf-8")
        self.sequence = load_sequence(path, ("TFC", "DCS", "FLES", "HLT"))

    def test_states(self) -> None:
        """The states follow the declared stages."""
        self.assertEqual(
            self.sequence.states(),
            [
                "Idle",
                "Configuring_TFC",
                "TFC_Active",
                "Configuring_Detectors",
                "Detectors_Active",
                "Configuring_HLT",
                "HLT_Active",
                "Configuring_FLES_and_DCS",
                "FLES_and_DCS_Active",
                "Recording",
            ],
        )

    def test_fall_back_and_levels(self) -> None:
        """HLT falls to Detectors_Active, FLES to HLT_Active; Recording is level 4."""
        self.assertEqual(self.sequence.stage_of_system("HLT", False).falls_to, "Detectors_Active")
        self.assertEqual(self.sequence.stage_of_system("FLES", False).falls_to, "HLT_Active")
        self.assertEqual(self.sequence.level_of_state("Recording"), 4)
        self.assertEqual(self.sequence.top_active, "FLES_and_DCS_Active")

    def test_recording_by_fles_only(self) -> None:
        """FLES alone records."""
        assert self.sequence.recording is not None
        self.assertEqual(self.sequence.recording.systems, ("FLES",))
        self.assertEqual(self.sequence.recording.timeout, 5.0)

    def test_explicit_falls_to(self) -> None:
        """C{falls_to} may name Idle or an earlier active state instead of the default."""
        data = shipped_data()
        data["stages"][2]["falls_to"] = "TFC_Active"
        data["stages"][3]["falls_to"] = "Idle"
        sequence = parse_sequence(data, "partition.yaml", GLOBALS)
        self.assertEqual([s.falls_to for s in sequence.stages], ["Idle", "TFC_Active", "TFC_Active", "Idle"])

    def test_no_recording(self) -> None:
        """Without a recording section there is no recording state."""
        data = shipped_data()
        del data["recording"]
        sequence = parse_sequence(data, "partition.yaml", GLOBALS)
        self.assertIsNone(sequence.recording)
        self.assertEqual(sequence.states(), ORIGINAL_STATES[:-1])
        self.assertRaises(KeyError, sequence.level_of_state, "Recording")


class RejectionTests(SynchronousTestCase):
    """Every rule: a broken document is refused, naming the file and the key path."""

    def rejected(self, data: object, global_systems: Any = GLOBALS) -> list[str]:
        """The problem lines for C{data}, which must be refused."""
        error = self.assertRaises(ConfigError, parse_sequence, data, "partition.yaml", global_systems)
        for line in error.problems:
            self.assertTrue(line.startswith("partition.yaml: "), line)
        return list(error.problems)

    def assert_rejected(self, data: object, *lines: str, global_systems: Any = GLOBALS) -> None:
        """C{data} is refused with exactly these problem lines."""
        self.assertEqual(self.rejected(data, global_systems), list(lines))

    def test_unknown_global_system(self) -> None:
        """A misspelt global system names its stage, its place and the known systems."""
        data = shipped_data()
        data["stages"][2]["systems"][1] = "FLEZ"
        self.assert_rejected(
            data,
            "partition.yaml: stages[2].systems[1]: 'FLEZ' is not a global system "
            "of subsystems.yaml (known: TFC, DCS, QA, FLES)",
        )

    def test_unknown_global_system_names_source(self) -> None:
        """The message names where the global systems came from, when told."""
        data = shipped_data()
        data["stages"][0]["systems"] = ["TCF"]
        error = self.assertRaises(
            ConfigError, parse_sequence, data, "p.yaml", GLOBALS, systems_source="etc/other.yaml"
        )
        self.assertIn(
            "p.yaml: stages[0].systems[0]: 'TCF' is not a global system of etc/other.yaml " + KNOWN,
            error.problems,
        )

    def test_never_excluded(self) -> None:
        """never_excluded names systems a stage configures (or detectors), each once, in a list."""
        data = shipped_data()
        data["never_excluded"] = ["TFC", "XYZ", "TFC", "detectors"]
        self.assert_rejected(
            data,
            "partition.yaml: never_excluded[1]: 'XYZ' is not configured by any stage "
            "(stages configure: TFC, detectors, FLES, DCS, QA)",
            "partition.yaml: never_excluded[2]: never-excluded system 'TFC' is already used at "
            "never_excluded[0]; list each system once",
        )
        data["never_excluded"] = "TFC"
        [line] = self.rejected(data)
        self.assertIn("never_excluded: expected a list", line)

    def test_exclusion_refused(self) -> None:
        """The shipped sequence never excludes TFC nor the recording systems; detectors and DCS may be."""
        sequence = parse_sequence(shipped_data(), "partition.yaml", GLOBALS)
        self.assertIn("never_excluded", sequence.exclusion_refused("TFC", False) or "")
        self.assertIn("recording system", sequence.exclusion_refused("FLES", False) or "")
        self.assertIsNone(sequence.exclusion_refused("DCS", False))
        self.assertIsNone(sequence.exclusion_refused("STS", True))
        data = shipped_data()
        data["never_excluded"] = ["detectors"]
        self.assertIsNotNone(parse_sequence(data, "p.yaml", GLOBALS).exclusion_refused("STS", True))
        del data["never_excluded"]
        self.assertIsNone(parse_sequence(data, "p.yaml", GLOBALS).exclusion_refused("TFC", False))

    def test_unknown_top_level_key(self) -> None:
        """An unknown top-level key is refused with a suggestion."""
        data = shipped_data()
        data["stagez"] = []
        [line] = self.rejected(data)
        self.assertTrue(line.startswith("partition.yaml: unknown key 'stagez' (did you mean 'stages'?"))

    def test_unknown_stage_key(self) -> None:
        """An unknown key in a stage names the stage."""
        data = shipped_data()
        data["stages"][1]["timout"] = 5
        [line] = self.rejected(data)
        self.assertTrue(
            line.startswith("partition.yaml: stages[1]: unknown key 'timout' (did you mean 'timeout'?")
        )

    def test_unknown_recording_key(self) -> None:
        """An unknown key under recording is refused."""
        data = shipped_data()
        data["recording"]["start_order"] = ["QA"]
        [line] = self.rejected(data)
        self.assertTrue(line.startswith("partition.yaml: recording: unknown key 'start_order'"))

    def test_missing_keys(self) -> None:
        """Required keys are named with their path."""
        data = shipped_data()
        del data["idle"]
        del data["stages"][0]["active"]
        lines = self.rejected(data)
        self.assertIn("partition.yaml: idle: required key is missing", lines[0])
        self.assertIn("partition.yaml: stages[0].active: required key is missing", lines[1])

    def test_not_a_mapping(self) -> None:
        """A document that is not a mapping is refused."""
        self.assert_rejected(["Idle"], "partition.yaml: expected a mapping, got a list")

    def test_stage_not_a_mapping(self) -> None:
        """A stage that is not a mapping is refused at its index."""
        data = shipped_data()
        data["stages"][3] = "QA"
        self.assert_rejected(data, "partition.yaml: stages[3]: expected a mapping, got 'QA'")

    def test_stages_not_a_list(self) -> None:
        """C{stages} must be a list."""
        data = shipped_data()
        data["stages"] = {"TFC": {}}
        [line] = self.rejected(data)
        self.assertTrue(line.startswith("partition.yaml: stages: expected a list"))

    def test_no_stages(self) -> None:
        """At least one stage is needed."""
        data = shipped_data()
        data["stages"] = []
        del data["recording"]
        self.assert_rejected(data, "partition.yaml: stages: expected at least one stage, got an empty list")

    def test_stage_without_systems(self) -> None:
        """A stage must configure at least one system."""
        data = shipped_data()
        data["stages"][0]["systems"] = []
        self.assert_rejected(
            data, "partition.yaml: stages[0].systems: expected at least one system, got an empty list"
        )

    def test_recording_without_systems(self) -> None:
        """Recording needs at least one recording system."""
        data = shipped_data()
        data["recording"]["systems"] = []
        self.assert_rejected(
            data,
            "partition.yaml: recording.systems: expected at least one recording system, got an empty list",
        )

    def test_bad_types(self) -> None:
        """Wrong types are named with their path and what was found."""
        data = shipped_data()
        data["stages"][0]["timeout"] = "thirty"
        data["stages"][1]["systems"] = "detectors"
        data["name"] = 7
        lines = self.rejected(data)
        self.assertEqual(lines[0], "partition.yaml: name: expected a non-empty string, got 7")
        self.assertEqual(
            lines[1], "partition.yaml: stages[0].timeout: expected a number greater than 0, got 'thirty'"
        )
        self.assertTrue(lines[2].startswith("partition.yaml: stages[1].systems: expected a list"))
        self.assertEqual(len(lines), 3)

    def test_timeouts_must_be_positive(self) -> None:
        """Stage and recording timeouts must be greater than 0."""
        data = shipped_data()
        data["stages"][3]["timeout"] = 0
        data["recording"]["timeout"] = -1
        self.assert_rejected(
            data,
            "partition.yaml: stages[3].timeout: expected a number greater than 0, got 0",
            "partition.yaml: recording.timeout: expected a number greater than 0, got -1",
        )

    def test_bad_state_names(self) -> None:
        """State names start with a letter and hold only letters, digits and '_'."""
        data = shipped_data()
        data["idle"] = "1dle"
        data["stages"][0]["configuring"] = "Configuring TFC"
        data["recording"]["state"] = "Recording!"
        lines = self.rejected(data)
        expected = "expected a state name (a letter, then letters, digits or '_')"
        self.assertEqual(
            lines,
            [
                f"partition.yaml: idle: {expected}, got '1dle'",
                f"partition.yaml: stages[0].configuring: {expected}, got 'Configuring TFC'",
                f"partition.yaml: recording.state: {expected}, got 'Recording!'",
            ],
        )

    def test_duplicate_state_names(self) -> None:
        """Every state name is unique across idle, stages and recording."""
        data = shipped_data()
        data["stages"][1]["active"] = "TFC_Active"
        data["stages"][3]["configuring"] = "QA_Active"
        data["recording"]["state"] = "Idle"
        self.assert_rejected(
            data,
            "partition.yaml: stages[1].active: state 'TFC_Active' is already used at "
            "stages[0].active; every state name must be unique",
            "partition.yaml: stages[3].active: state 'QA_Active' is already used at "
            "stages[3].configuring; every state name must be unique",
            "partition.yaml: recording.state: state 'Idle' is already used at idle; "
            "every state name must be unique",
        )

    def test_duplicate_stage_names(self) -> None:
        """Stage names are unique."""
        data = shipped_data()
        data["stages"][3]["name"] = "TFC"
        self.assert_rejected(
            data,
            "partition.yaml: stages[3].name: stage name 'TFC' is already used at "
            "stages[0].name; every stage needs its own name",
        )

    def test_system_in_two_stages(self) -> None:
        """A system belongs to at most one stage."""
        data = shipped_data()
        data["stages"][3]["systems"] = ["QA", "TFC"]
        self.assert_rejected(
            data,
            "partition.yaml: stages[3].systems[1]: system 'TFC' is already used at "
            "stages[0].systems[0]; a system belongs to at most one stage",
        )

    def test_detectors_twice(self) -> None:
        """C{detectors} may not appear in two stages."""
        data = shipped_data()
        data["stages"][0]["systems"].append("detectors")
        self.assert_rejected(
            data,
            "partition.yaml: stages[1].systems[0]: system 'detectors' is already used at "
            "stages[0].systems[1]; a system belongs to at most one stage",
        )

    def test_detectors_missing(self) -> None:
        """Exactly one stage lists C{detectors}."""
        data = shipped_data()
        data["stages"][1]["systems"] = ["DCS"]
        data["stages"][2]["systems"] = ["FLES"]
        self.assert_rejected(
            data,
            "partition.yaml: stages: no stage lists 'detectors'; exactly one stage must "
            "configure the partition's detectors",
        )

    def test_falls_to_later_or_own_state(self) -> None:
        """C{falls_to} may not name the stage's own states or a later stage's."""
        data = shipped_data()
        data["stages"][1]["falls_to"] = "QA_Active"
        data["stages"][2]["falls_to"] = "FLES_and_DCS_Active"
        data["stages"][3]["falls_to"] = "Configuring_TFC"
        self.assert_rejected(
            data,
            "partition.yaml: stages[1].falls_to: 'QA_Active' is not Idle or the active state "
            "of an earlier stage (allowed: Idle, TFC_Active)",
            "partition.yaml: stages[2].falls_to: 'FLES_and_DCS_Active' is not Idle or the active "
            "state of an earlier stage (allowed: Idle, TFC_Active, Detectors_Active)",
            "partition.yaml: stages[3].falls_to: 'Configuring_TFC' is not Idle or the active "
            "state of an earlier stage (allowed: Idle, TFC_Active, Detectors_Active, "
            "FLES_and_DCS_Active)",
        )

    def test_recording_system_not_in_stages(self) -> None:
        """A recording system must be configured by some stage."""
        data = shipped_data()
        data["recording"]["systems"] = ["QA", "HLT"]
        self.assert_rejected(
            data,
            "partition.yaml: recording.systems[1]: 'HLT' is not configured by any stage "
            "(stages configure: TFC, detectors, FLES, DCS, QA); a recording system must be "
            "configured first",
            global_systems=(*GLOBALS, "HLT"),
        )

    def test_recording_system_not_global(self) -> None:
        """Recording systems are global systems: not C{detectors}, not unknown ids."""
        data = shipped_data()
        data["recording"]["systems"] = ["detectors", "FLEZ", "QA", "QA"]
        self.assert_rejected(
            data,
            "partition.yaml: recording.systems[0]: 'detectors' cannot record: recording "
            "systems are global systems",
            f"partition.yaml: recording.systems[1]: 'FLEZ' is not a global system of subsystems.yaml {KNOWN}",
            "partition.yaml: recording.systems[3]: recording system 'QA' is already used at "
            "recording.systems[2]; list each system once",
        )

    def test_recording_checked_without_global_systems(self) -> None:
        """Without the global systems, an unconfigured recording system is still refused."""
        data = shipped_data()
        data["recording"]["systems"] = ["FLEZ"]
        [line] = self.rejected(data, global_systems=None)
        self.assertTrue(line.startswith("partition.yaml: recording.systems[0]: 'FLEZ' is not configured"))

    def test_all_problems_together(self) -> None:
        """Schema and cross-check problems from different parts come in one error."""
        data = shipped_data()
        data["stages"][0]["timeout"] = 0
        data["stages"][2]["systems"][1] = "FLEZ"
        data["stages"][3]["active"] = "Recording"
        lines = self.rejected(data)
        self.assertEqual(
            lines,
            [
                "partition.yaml: stages[0].timeout: expected a number greater than 0, got 0",
                "partition.yaml: recording.state: state 'Recording' is already used at "
                "stages[3].active; every state name must be unique",
                f"partition.yaml: stages[2].systems[1]: 'FLEZ' is not a global system of subsystems.yaml {KNOWN}",
            ],
        )


class LoadFileTests(SynchronousTestCase):
    """L{load_sequence} on files: the file's name is in every message."""

    def write(self, text: str) -> Path:
        """A temporary sequence file holding C{text}."""
        path = Path(self.mktemp())
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def test_problem_names_file(self) -> None:
        """A bad file's problems start with its path and the key path."""
        path = self.write(ALTERNATIVE.replace("[FLES, DCS]", "[FLES, DSC]"))
        error = self.assertRaises(ConfigError, load_sequence, path, (*GLOBALS, "HLT"))
        self.assertEqual(
            error.problems,
            (
                f"{path}: stages[3].systems[1]: 'DSC' is not a global system of subsystems.yaml "
                "(known: TFC, DCS, QA, FLES, HLT)",
            ),
        )

    def test_shipped_global_systems_reject_hlt(self) -> None:
        """The alternative file needs HLT to be a global system."""
        path = self.write(ALTERNATIVE)
        error = self.assertRaises(ConfigError, load_sequence, path, load_subsystems().global_systems)
        self.assertEqual(
            error.problems,
            (f"{path}: stages[2].systems[0]: 'HLT' is not a global system of subsystems.yaml {KNOWN}",),
        )

    def test_empty_file(self) -> None:
        """An empty file is refused, naming it."""
        path = self.write("")
        error = self.assertRaises(ConfigError, load_sequence, path)
        self.assertEqual(
            str(error), f"{path}: file is empty (expected keys name, idle, stages, recording)"
        )

    def test_missing_file(self) -> None:
        """A missing file is refused, naming it."""
        error = self.assertRaises(ConfigError, load_sequence, "/nonexistent/partition.yaml")
        self.assertEqual(str(error), "/nonexistent/partition.yaml: file not found")

    def test_yaml_syntax_error(self) -> None:
        """A YAML syntax error names the file and the line."""
        path = self.write("name: p\nidle: Idle\nstages: [\n  {name: TFC\n")
        error = self.assertRaises(ConfigError, load_sequence, path)
        self.assertTrue(str(error).startswith(f"{path}: line "), str(error))
        self.assertIn("invalid YAML", str(error))
