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


class _Recorder:
    """Stands for the logbook, the audit, the alarms and the store at once; records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def log(self, *args: object) -> None:
        self.calls.append(("log", args))

    def event(self, *args: object) -> None:
        self.calls.append(("alarm", args))

    async def record(self, *args: object) -> None:
        self.calls.append(("audit", args))

    async def detector(self, system: str) -> None:
        return None


class RestartTests(TestCase):
    def test_restart_up_to_limit_then_escalate(self) -> None:
        """restart: a dead agent is started again via the supervisor twice in the window, then an alarm."""
        from twisted.internet.task import Clock

        from agents.eca.recovery import Recovery

        clock, seen = Clock(), _Recorder()
        restarted: list[str] = []

        async def restart(name: str) -> None:
            restarted.append(name)

        rules = parse_rules({"systems": {"RICH": {"agent_died": {"action": "restart", "max": 2, "within": 60}}}}, "t")
        recovery = Recovery(rules, seen, _Partitions(), seen, seen, seen, clock, restart=restart)  # type: ignore[arg-type]

        def dies() -> None:
            recovery.agent_changed({"agent": "detector:RICH", "supervision": {"state": "restarting"}})
            recovery.agent_changed({"agent": "detector:RICH", "supervision": {"state": "running"}})

        for _ in range(3):
            dies()
            clock.advance(1)
        self.assertEqual(restarted, ["detector:RICH", "detector:RICH"])
        audits = [args[1] for kind, args in seen.calls if kind == "audit"]
        self.assertEqual(audits, ["recovery_restart", "recovery_restart", "recovery_escalate"])
        alarms = [args[0] for kind, args in seen.calls if kind == "alarm"]
        self.assertEqual(alarms, ["recovery_action"] * 3)
        clock.advance(60)  # the window is over: restarted again
        dies()
        self.assertEqual(len(restarted), 3)
        recovery.agent_changed({"agent": "detector:TOF", "supervision": {"state": "flapping"}})
        self.assertEqual(len(restarted), 3)  # no rule for TOF: alarm only


class _Partition:
    """What the recovery reads of a followed partition: its records and its sequence."""

    def __init__(self, partition_id: str, state: str) -> None:
        from ecs.fsm.sequence import load_sequence

        self.id = partition_id
        self.records = {"partition": {"state": state}}
        self.picture = type("Picture", (), {"sequence": load_sequence()})()


class _Partitions(dict[str, _Partition]):
    """The followed partitions, as L{agents.eca.partitions.Partitions} offers them to the recovery."""

    def __iter__(self):  # type: ignore[no-untyped-def, override]
        return iter(self.values())


#: Rules for dead agents by partition state.
DIED_RULES = {"types": {"RICH": {"agent_died": {"recording": "restart", "idle": "restart",
                                                "configured": "alarm_only"}},
                        "TFC": {"agent_died": {"recording": "restart"}}}}


class AgentDiedByStateTests(TestCase):
    """agent_died rules are chosen by the partition's state (recording, configured, idle), as the other events."""

    def died(self, states: dict[str, str], agent: str, partition: str | None) -> list[str]:
        """The agents restarted when C{agent} (serving C{partition}) dies with the partitions in C{states}."""
        from twisted.internet.task import Clock

        from agents.eca.recovery import Recovery

        restarted: list[str] = []

        async def restart(name: str) -> None:
            restarted.append(name)

        seen = _Recorder()
        partitions = _Partitions({p: _Partition(p, s) for p, s in states.items()})
        recovery = Recovery(parse_rules(DIED_RULES, "t"), seen, partitions, seen, seen, seen, Clock(),  # type: ignore[arg-type]
                            restart=restart)
        recovery.agent_changed({"agent": agent, "partition": partition, "supervision": {"state": "restarting"}})
        audits = [args[2] for kind, args in seen.calls if kind == "audit"]
        self.assertTrue(all(where["state"] in ("recording", "configured", "idle", "any") for where in audits))  # type: ignore[index]
        return restarted

    def test_by_partition_state(self) -> None:
        """The dead detector's partition state picks the rule: recording and idle restart, configured does not."""
        self.assertEqual(self.died({"demo": "Recording"}, "detector:RICH", "demo"), ["detector:RICH"])
        self.assertEqual(self.died({"demo": "Idle"}, "detector:RICH", "demo"), ["detector:RICH"])
        self.assertEqual(self.died({"demo": "Detectors_Active"}, "detector:RICH", "demo"), [])

    def test_agent_of_every_partition(self) -> None:
        """An agent of no one partition (a global system) takes the highest state of all partitions."""
        self.assertEqual(self.died({"a": "Idle", "b": "Recording"}, "global:TFC", None), ["global:TFC"])
        self.assertEqual(self.died({"a": "Idle", "b": "QA_Active"}, "global:TFC", None), [])
        self.assertEqual(self.died({}, "global:TFC", None), [])  # nothing followed: only an 'any' rule applies

    def test_agent_of_every_global_system(self) -> None:
        """global:all (the demo's one process for TFC, FLES, DCS, QA) is restarted when any of their rules says so."""
        self.assertEqual(self.died({"a": "Recording"}, "global:all", None), ["global:all"])  # TFC's rule
        self.assertEqual(self.died({"a": "Idle"}, "global:all", None), [])  # TFC restarts only while recording
