# -*- test-case-name: tests.test_recovery_rules -*-
"""The recovery rules file (L{ecs.fsm.recovery}) and C{ecs fsm check} of it."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from ecs import paths
from ecs.fsm.draw import check_files
from ecs.fsm.recovery import load_rules, parse_rules


class RulesTests(TestCase):
    def test_shipped_is_alarm_only(self) -> None:
        """The shipped rules change nothing: every event is alarm_only."""
        rules = load_rules(paths.data_dir("fsm") / "recovery.yaml")
        for event in ("error", "unreachable", "agent_died"):
            for state in ("recording", "configured", "idle"):
                self.assertEqual(rules.rule(event, state, "TRD", "TRD").action, "alarm_only")

    def test_system_wins_over_type(self) -> None:
        rules = parse_rules({"types": {"TRD": {"error": "stop_run"}},
                             "systems": {"TRD1": {"error": {"recording": "exclude_and_continue"}}}}, "t")
        self.assertEqual(rules.rule("error", "recording", "TRD1", "TRD").action, "exclude_and_continue")
        self.assertEqual(rules.rule("error", "idle", "TRD1", "TRD").action, "stop_run")
        self.assertEqual(rules.rule("error", "idle", "TRD2", "TRD").action, "stop_run")

    def test_check_bad_file(self) -> None:
        """ecs fsm check names the file, the key path and the reason of every problem."""
        path = Path(self.mktemp())
        path.write_text("defaults:\n  error: {action: reboot}\n  dying: alarm_only\ntypes:\n  TOF:\n    error:\n"
                        "      running: stop_run\n      recording: {action: restart, max: 0, within: -1}\n")
        code, lines = check_files([str(path)])
        self.assertEqual(code, 1)
        self.assertEqual([line.split(": ")[1] for line in lines], [
            "defaults.error.action", "defaults.dying", "types.TOF.error.running",
            "types.TOF.error.recording.action", "types.TOF.error.recording.max",
            "types.TOF.error.recording.within",
        ])
        self.assertTrue(all(line.startswith(str(path)) for line in lines))

    def test_check_good_file(self) -> None:
        code, lines = check_files([str(paths.data_dir("fsm") / "recovery.yaml")])
        self.assertEqual(code, 0, lines)
