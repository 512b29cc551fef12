# -*- test-case-name: tests.test_run_sequences -*-
"""
L{ecs.config.run_sequences}: the shipped C{etc/sequences/} files, loops
unrolled with their variable substituted, and every rejection, each named
by file, step path and reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ecs import paths
from ecs.config.run_sequences import DEFAULT_TIMEOUT, load_sequences, parse_sequence
from ecs.config.settings import ConfigError
from ecs.fsm.sequence import load_sequence

STATES = ["Idle", "TFC_Active", "QA_Active", "Recording"]
TYPES = ["physics", "calibration"]


class ShippedTests(SynchronousTestCase):
    def test_threshold_scan(self) -> None:
        """The shipped scan: three tags, configure/start/wait/stop each, valid against the shipped vocabulary."""
        states = load_sequence(None, ["TFC", "DCS", "QA", "FLES"]).states()
        found = load_sequences(paths.data_dir("etc") / "sequences", states, TYPES)
        scan = found["threshold-scan"]
        self.assertEqual([s.kind for s in scan.steps], ["configure", "start", "wait", "stop"] * 3)
        self.assertEqual([s.args["tag"] for s in scan.steps if s.kind == "configure"], ["demo", "demo-alt", "demo"])
        self.assertEqual(scan.steps[1].args["comment"], "threshold scan, tag demo")
        self.assertEqual(scan.steps[5].path, "steps[0].loop.steps[1].start")
        self.assertEqual(scan.summary()["total"], 12)

    def test_defaults_and_bare_steps(self) -> None:
        s = parse_sequence("s", {"steps": ["stop", "abort", {"configure": {"tag": "t"}},
                                           {"wait": {"until": "Idle"}}]}, "s.yaml", STATES, TYPES)
        self.assertEqual([dict(step.args) for step in s.steps], [
            {"timeout": DEFAULT_TIMEOUT}, {"timeout": DEFAULT_TIMEOUT},
            {"tag": "t", "auto": True, "timeout": DEFAULT_TIMEOUT}, {"until": "Idle", "timeout": DEFAULT_TIMEOUT}])

    def test_missing_folder(self) -> None:
        self.assertEqual(load_sequences(Path(self.mktemp())), {})


class RejectionTests(SynchronousTestCase):
    def problems(self, data: Any) -> list[str]:
        with self.assertRaises(ConfigError) as caught:
            parse_sequence("bad", data, "bad.yaml", STATES, TYPES)
        return list(caught.exception.problems)

    def test_each_reason(self) -> None:
        cases = {
            "bad.yaml: steps: must be a non-empty list of steps": {"steps": []},
            "bad.yaml: steps[0]: unknown step 'jump'": {"steps": [{"jump": {}}]},
            "bad.yaml: steps[0].configure: needs 'tag'": {"steps": [{"configure": {}}]},
            "bad.yaml: steps[0].start.type: unknown run type 'party'": {"steps": [{"start": {"type": "party"}}]},
            "bad.yaml: steps[0].wait: needs either 'seconds' or 'until'": {"steps": [{"wait": {}}]},
            "bad.yaml: steps[0].wait.seconds: must be more than 0": {"steps": [{"wait": {"seconds": -1}}]},
            "bad.yaml: steps[0].wait.seconds: must be a number of seconds": {"steps": [{"wait": {"seconds": "x"}}]},
            "bad.yaml: steps[0].wait.until: unknown partition state 'Nowhere'":
                {"steps": [{"wait": {"until": "Nowhere", "timeout": 5}}]},
            "bad.yaml: steps[0].stop.force: unknown field of stop": {"steps": [{"stop": {"force": True}}]},
            "bad.yaml: steps[0].configure.auto: must be true or false":
                {"steps": [{"configure": {"tag": "t", "auto": "yes"}}]},
            "bad.yaml: steps[0].loop.steps[0].configure.tag: {x} is not a loop variable":
                {"steps": [{"loop": {"over": [1], "as": "tag", "steps": [{"configure": {"tag": "{x}"}}]}}]},
            "bad.yaml: steps[0].loop.over: must be a non-empty list": {"steps": [{"loop": {"over": [], "as": "t",
                                                                                            "steps": ["stop"]}}]},
            "bad.yaml: steps[0].loop.as: must be a variable name": {"steps": [{"loop": {"over": [1], "as": "a b",
                                                                                         "steps": ["stop"]}}]},
            "bad.yaml: colour: unknown key": {"colour": "red", "steps": ["stop"]},
        }
        for expected, data in cases.items():
            found = self.problems(data)
            self.assertTrue(any(p.startswith(expected) for p in found), (expected, found))

    def test_all_problems_of_all_files(self) -> None:
        """Every file is read; each problem names its file; bad YAML too."""
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "one.yaml").write_text("steps:\n  - wait: {seconds: 0}\n  - start: {comment: 5}\n")
        (folder / "two.yaml").write_text("steps: [\n")
        (folder / "fine.yaml").write_text("steps: [stop]\n")
        with self.assertRaises(ConfigError) as caught:
            load_sequences(folder, STATES, TYPES)
        lines = caught.exception.problems
        self.assertEqual(len(lines), 3, lines)
        self.assertIn(f"{folder / 'one.yaml'}: steps[0].wait.seconds", lines[0])
        self.assertIn(f"{folder / 'one.yaml'}: steps[1].start.comment: must be text", lines[1])
        self.assertIn(f"{folder / 'two.yaml'}: not valid YAML", lines[2])
