# -*- test-case-name: tests.test_reload_coordination -*-
"""
C{ecs reload} reads the recovery rules and the run sequences again
(issue 14): checked with the vocabulary, all or nothing
(L{ecs.fsm.reload.read_for_eca}); put in force by the L{Reloader}
(L{Recovery.adopt}: attempt counters kept for the rules still declared;
L{RunSequences.adopt}: a running sequence goes on with its steps); a
system excluded that the new partition sequence never excludes is
warned about and stays excluded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.audit import Audit
from agents.eca.recovery import Recovery
from agents.eca.reload import Reloader
from ecs.config.run_sequences import RunSequence
from ecs.control import ControlError, User
from ecs.fsm.recovery import RecoveryRules, parse_rules
from ecs.fsm.reload import CoordinationFiles, read_coordination
from tests.support.eca_parts import FakeLogBook, inline_store
from tests.test_reload import FakePartition, copy_data, edit
from tests.test_run_sequences_eca import SequenceHarness, sequence

ADMIN = User("root", ("admin",))
RUN_TYPES = ("physics", "calibration", "cosmics", "test")

RULES = {"types": {"TRD": {"error": {"recording": {"action": "exclude_and_continue", "max": 2}}}}}
SCAN = {"description": "scan", "steps": [{"configure": {"tag": "demo"}}, {"wait": {"seconds": 10}}, "stop"]}


def write(path: Path, data: Any) -> None:
    """C{data} as a YAML file."""
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


class Holder:
    """Stands for the recovery or the run sequences: records what it is given to put in force."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.adopted: list[Any] = []
        self.answer = answer

    def adopt(self, new: Any) -> dict[str, Any]:
        self.adopted.append(new)
        return dict(self.answer)


class ReadTests(SynchronousTestCase):
    """Reading both files: every problem of both named, each with its file and key path."""

    def setUp(self) -> None:
        folder = Path(self.mktemp())
        (folder / "sequences").mkdir(parents=True)
        self.files = CoordinationFiles(str(folder / "recovery.yaml"), str(folder / "sequences"))
        write(folder / "recovery.yaml", RULES)
        write(folder / "sequences" / "scan.yaml", SCAN)

    def test_reads_both(self) -> None:
        """Valid files: the rules and the sequences by name."""
        found = read_coordination(self.files, ["Idle", "QA_Active"], RUN_TYPES)
        self.assertEqual(found.rules.rule("error", "recording", "TRD", "TRD").action, "exclude_and_continue")
        self.assertEqual(list(found.sequences), ["scan"])

    def test_every_problem(self) -> None:
        """A bad rule and a bad step: both refused in one error, each line naming its file and key path."""
        write(Path(str(self.files.recovery)), {"types": {"TRD": {"error": {"recording": "explode"}}}})
        write(Path(str(self.files.sequences)) / "scan.yaml", {"steps": [{"start": {"type": "calib"}}]})
        with self.assertRaises(Exception) as caught:
            read_coordination(self.files, ["Idle"], RUN_TYPES)
        problems = caught.exception.problems  # type: ignore[attr-defined]
        self.assertEqual(len(problems), 2, problems)
        self.assertIn(f"{self.files.recovery}: types.TRD.error.recording.action: unknown action 'explode'",
                      problems[0])
        self.assertIn("scan.yaml: steps[0].start.type: unknown run type 'calib'", problems[1])


class ReloaderTests(SynchronousTestCase):
    """The ECA's reload puts the rules and sequences in force with the rest, or nothing at all."""

    def setUp(self) -> None:
        self.clock = Clock()
        folder = Path(self.mktemp())
        self.files = copy_data(folder / "data")
        (folder / "sequences").mkdir()
        self.coordination = CoordinationFiles(str(folder / "recovery.yaml"), str(folder / "sequences"))
        write(folder / "recovery.yaml", RULES)
        write(folder / "sequences" / "scan.yaml", SCAN)
        start = self.read()
        self.subsystems, self.sequence = start.subsystems, start.sequence
        self.store = inline_store(self, self.clock)
        self.partitions = [FakePartition("demo", False)]
        self.logbook = FakeLogBook()
        self.recovery = Holder({"recovery_changed": True, "recovery_counters_kept": 1, "recovery_counters_dropped": 0})
        self.sequences = Holder({"sequences_added": ["scan"], "sequences_removed": [], "sequences_changed": [],
                                 "sequences_running_as_started": []})
        self.reloader = Reloader(
            self.subsystems, self.sequence, start.tables, self.partitions,  # type: ignore[arg-type]
            self.store, Audit(self.store), self.logbook, self.clock, self.files, self.coordination,
            self.recovery, self.sequences, RUN_TYPES,
        )

    def read(self) -> Any:
        from ecs.fsm.reload import read_vocabulary

        return read_vocabulary(self.files)

    def refused(self) -> ControlError:
        error = self.failureResultOf(self.reloader.reload(ADMIN), ControlError).value
        self.assertEqual(error.code, "bad_request")
        self.assertEqual(self.recovery.adopted, [])
        self.assertEqual(self.sequences.adopted, [])
        return error

    def test_put_in_force_and_said(self) -> None:
        """Both are read again and handed over; the answer and the log line say what changed."""
        result = self.successResultOf(self.reloader.reload(ADMIN))
        [rules] = self.recovery.adopted
        self.assertIsInstance(rules, RecoveryRules)
        self.assertEqual(rules.source, self.coordination.recovery)
        [sequences] = self.sequences.adopted
        self.assertEqual(list(sequences), ["scan"])
        self.assertTrue(result["recovery_changed"])
        self.assertEqual(result["sequences_added"], ["scan"])
        self.assertEqual(result["never_excludable_excluded"], [])
        [info] = [line[2] for line in self.logbook.lines if line[0] == "info"]
        self.assertIn("the recovery rules and run sequences", info)
        self.assertIn("recovery rules changed (attempt counters kept: 1, forgotten: 0)", info)
        self.assertIn("sequences added: scan", info)

    def test_not_read_without_files(self) -> None:
        """An ECA that does not know where they came from (tests) reloads without them."""
        self.reloader.coordination = None
        result = self.successResultOf(self.reloader.reload(ADMIN))
        self.assertEqual(self.recovery.adopted, [])
        self.assertNotIn("recovery_changed", result)

    def test_bad_rules_refuse_everything(self) -> None:
        """A bad rules file refuses the whole reload: a new detector type in a valid file is not taken either."""
        from tests.test_reload import add_type

        add_type(self.files)
        write(Path(str(self.coordination.recovery)), {"systems": {"RICH": {"agent_died": {"action": "restart",
                                                                                         "max": 0}}}})
        error = self.refused()
        where = f"{self.coordination.recovery}: systems.RICH.agent_died.max"
        self.assertIn(f"{where}: must be a whole number", error.reason)
        self.assertNotIn("ECAL", self.subsystems.detector_types)
        self.assertEqual(self.audit_outcome()[:11], "bad_request")

    def test_bad_sequence_refuses_everything(self) -> None:
        """A sequence file with a bad step refuses the reload, naming the file and the step path."""
        write(Path(str(self.coordination.sequences)) / "scan.yaml", {"steps": [{"wait": {"until": "Nowhere"}}]})
        error = self.refused()
        self.assertIn("scan.yaml: steps[0].wait.until", error.reason)
        self.assertIn("Nowhere", error.reason)

    def test_sequences_checked_against_the_new_partition_sequence(self) -> None:
        """A sequence waiting for a state the new partition.yaml renames is refused with it."""
        write(Path(str(self.coordination.sequences)) / "scan.yaml",
              {"steps": [{"wait": {"until": "QA_Active", "timeout": 5}}]})
        edit(self.files.sequence, "active: QA_Active", "active: QA_Ready")
        error = self.refused()
        self.assertIn("steps[0].wait.until", error.reason)
        self.assertIn("QA_Active", error.reason)
        self.assertIn("QA_Active", self.sequence.states())  # the sequence in force stays

    def test_problems_of_every_file_together(self) -> None:
        """An invalid partition sequence and an invalid rules file: both named in one refusal."""
        edit(self.files.sequence, "timeout: 60", "timeout: -1")
        write(Path(str(self.coordination.recovery)), {"defaults": {"dying": "alarm_only"}})
        problems = self.refused().details["problems"]
        self.assertTrue(any(str(self.files.sequence) in p and "timeout" in p for p in problems), problems)
        self.assertTrue(any("defaults.dying: unknown event" in p for p in problems), problems)

    def audit_outcome(self) -> str:
        [row] = self.successResultOf(self.store.audit_entries())
        return str(row.outcome)

    def test_excluded_system_made_never_excludable(self) -> None:
        """
        A reload that makes an excluded system never excludable keeps it
        excluded, says so in the answer and a warning, and the reload is
        not refused: the partition's controller includes it.
        """
        self.successResultOf(self.store.add_partition("demo"))
        self.successResultOf(self.store.exclude_system("demo", "DCS", "alice"))
        edit(self.files.sequence, "never_excluded: [TFC]", "never_excluded: [TFC, DCS]")
        result = self.successResultOf(self.reloader.reload(ADMIN))
        [found] = result["never_excludable_excluded"]
        self.assertEqual((found["partition"], found["system"]), ("demo", "DCS"))
        self.assertIn("never_excluded", found["reason"])
        [warning] = [line for line in self.logbook.lines if line[0] == "warn" and "DCS" in line[2]]
        self.assertEqual(warning[3], "demo")
        self.assertIn("stays excluded from demo", warning[2])
        self.assertIn("ecs include demo DCS", warning[2])
        rows = self.successResultOf(self.store.exclusions("demo"))
        self.assertEqual([row.system for row in rows], ["DCS"])  # still excluded
        self.assertIsNotNone(self.sequence.exclusion_refused("DCS", False))  # a new exclusion would be refused


class _Store:
    async def detector(self, system: str) -> None:
        return None


class _Told:
    """The logbook, audit and alarms of the recovery: what it said."""

    def __init__(self) -> None:
        self.audits: list[str] = []

    def log(self, *args: object) -> None:
        pass

    def event(self, *args: object) -> None:
        pass

    async def record(self, user: str, action: str, *args: object) -> None:
        self.audits.append(action)


class RecoveryAdoptTests(SynchronousTestCase):
    """Counters of attempts survive a reload for the rules still declared, and only for them."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.restarted: list[str] = []
        self.told = _Told()

        async def restart(name: str) -> None:
            self.restarted.append(name)

        self.recovery = Recovery(self.rules("systems"), _Store(), [], self.told, self.told, self.told,  # type: ignore[arg-type]
                                 self.clock, restart=restart)

    def rules(self, scope: str, action: str = "restart", most: int = 2) -> RecoveryRules:
        """A restart rule for RICH under C{scope} (systems or types)."""
        return parse_rules({scope: {"RICH": {"agent_died": {"action": action, "max": most, "within": 600}}}}, "r.yaml")

    def die(self) -> None:
        self.recovery.agent_changed({"agent": "detector:RICH", "supervision": {"state": "restarting"}})
        self.recovery.agent_changed({"agent": "detector:RICH", "supervision": {"state": "running"}})
        self.clock.advance(1)

    def test_counter_kept_for_the_same_rule(self) -> None:
        """The same rule read again (its limit raised): the two restarts counted before still count."""
        self.die()
        self.die()
        summary = self.recovery.adopt(self.rules("systems", most=3))
        self.assertEqual(summary, {"recovery_changed": True, "recovery_counters_kept": 1,
                                   "recovery_counters_dropped": 0})
        self.die()
        self.die()
        self.assertEqual(len(self.restarted), 3)
        self.assertEqual(self.told.audits[-1], "recovery_escalate")

    def test_unchanged_rules(self) -> None:
        """The same file read again is no change, and keeps the counters."""
        self.die()
        summary = self.recovery.adopt(self.rules("systems"))
        self.assertFalse(summary["recovery_changed"])
        self.assertEqual(summary["recovery_counters_kept"], 1)

    def test_counter_forgotten_when_the_rule_went(self) -> None:
        """A rule moved elsewhere (now by type) is another rule: it starts counting afresh."""
        self.die()
        self.die()
        self.assertEqual(self.recovery.adopt(self.rules("types"))["recovery_counters_dropped"], 1)
        self.die()
        self.die()
        self.assertEqual(len(self.restarted), 4)

    def test_counter_forgotten_when_the_action_changed(self) -> None:
        """The same place with another action is another rule too."""
        self.die()
        self.assertEqual(self.recovery.adopt(self.rules("systems", action="stop_run"))["recovery_counters_dropped"], 1)


class RunningSequenceTests(SequenceHarness):
    """A running sequence keeps the steps it started with when the declarations are read again."""

    async def test_running_sequence_as_started(self) -> None:
        """'hold' changed and 'record' removed while 'hold' runs: it ends as it started; later runs are new."""
        await self.take("operator")
        self.assertEqual((await self.launch("hold")).code, 200)
        await self.in_step(2)
        new: Mapping[str, RunSequence] = {
            "hold": sequence("hold", {"steps": [{"wait": {"seconds": 1}}]}),
            "scan": self.parts.run_sequences.sequences["scan"],
        }
        summary = self.parts.run_sequences.adopt(new)
        self.assertEqual(summary["sequences_changed"], ["hold"])
        self.assertEqual(summary["sequences_removed"], ["bad-tag", "never", "record"])
        self.assertEqual(summary["sequences_running_as_started"], ["demo: hold"])
        self.assertEqual((await self.status())["total"], 2)
        self.assertEqual((await self.ended(200))["state"], "done")
        self.assertEqual((await self.launch("record")).code, 404)
        self.assertEqual((await self.launch("hold")).code, 200)
        self.assertEqual((await self.status())["total"], 1)
        self.assertEqual((await self.ended())["state"], "done")


class CommandLineTests(SynchronousTestCase):
    """C{ecs reload} shows what changed in the rules and sequences, and the warnings."""

    def test_shows_rules_sequences_and_warnings(self) -> None:
        """The recovery rules, the run sequences and a never-excludable system still excluded are shown."""
        from ecs.client.manage import format_reload
        from tests.test_reload import ANSWER

        text = format_reload({
            **ANSWER, "recovery_changed": True, "sequences_added": ["scan"], "sequences_removed": [],
            "sequences_changed": ["hold"], "sequences_running_as_started": ["demo: hold"],
            "never_excludable_excluded": [{"partition": "demo", "system": "DCS",
                                           "reason": "DCS may never be excluded (never_excluded in p.yaml)"}],
        })
        self.assertIn("recovery rules: changed", text)
        self.assertIn("run sequences added: scan", text)
        self.assertIn("run sequences removed: none", text)
        self.assertIn("run sequences changed: hold", text)
        self.assertIn("running as they started: demo: hold", text)
        self.assertIn("warning: DCS stays excluded from demo although DCS may never be excluded", text)
        self.assertNotIn("recovery rules", format_reload(dict(ANSWER)))  # an older ECA says nothing of them
