"""
Tests for L{ecs.textview}: the API's answers as terminal text, with
everything from the network sanitised.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ecs import textview
from ecs.textview import (
    clean,
    display_width,
    format_agents,
    format_logs,
    format_partition,
    format_partitions,
    format_runs,
    progress_bar,
    table,
)

EVIL = "ok\x1b[2J\x1b[H\x1b]0;owned\x07\x1b]52;c;ZXZpbA==\x1b\\\x9b31m\u202eevil\x07\r\nnext\tcol"


def detail(**overrides: Any) -> dict[str, Any]:
    """A partition detail as GET /api/partitions/{id} answers."""
    base: dict[str, Any] = {
        "id": "demo",
        "state": "Configuring_Detectors",
        "tag": "demo",
        "controller": "alice",
        "connected": True,
        "locked": False,
        "operation": "configuring stage Detectors (2 of 4)",
        "allowed": ["abort"],
        "progress": {"partition": "demo", "stage": "Detectors", "ready": 2, "total": 5},
        "systems": [
            {
                "id": "STS",
                "kind": "detector",
                "state": "Active",
                "raw_state": "Ready_Step2",
                "tag": "sts-default",
                "comment": "",
                "connected": True,
            },
            {
                "id": "TOF",
                "kind": "detector",
                "state": "Error",
                "raw_state": "HV_Trip",
                "tag": "tof-default",
                "comment": "HV trip on sector 3",
                "connected": True,
            },
            {
                "id": "MVD",
                "kind": "detector",
                "state": "Active",
                "raw_state": "Active_Stale",
                "tag": "mvd-default",
                "comment": "",
                "connected": False,
            },
        ],
    }
    base.update(overrides)
    return base


class CleanTests(SynchronousTestCase):
    """Server-provided text never drives the terminal."""

    def test_escapes_removed(self) -> None:
        """CSI, OSC (title, clipboard), 8-bit CSI and bidi overrides are gone; controls become spaces."""
        text = clean(EVIL)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x9b", text)
        self.assertNotIn("\x07", text)
        self.assertNotIn("\u202e", text)
        self.assertNotIn("owned", text)
        self.assertNotIn("ZXZpbA", text)
        self.assertEqual(text, "okevil   next col")  # BEL, CR, LF: three spaces

    def test_no_control_character_survives(self) -> None:
        """Every C0/C1 control character and DEL is removed or replaced."""
        text = clean("".join(chr(c) for c in list(range(32)) + list(range(127, 160))) + "x")
        self.assertTrue(all(c == " " or c == "x" for c in text), repr(text))

    def test_values(self) -> None:
        """None is '-', booleans yes/no, numbers as text."""
        self.assertEqual([clean(None), clean(True), clean(False), clean(3)], ["-", "yes", "no", "3"])

    def test_every_formatter_sanitises(self) -> None:
        """A hostile value in any field of any formatter leaves no escape in the output."""
        outputs = [
            format_partitions([{"id": EVIL, "state": EVIL, "tag": EVIL, "controller": EVIL, "connected": True}]),
            format_partition(
                detail(
                    id=EVIL,
                    tag=EVIL,
                    controller=EVIL,
                    operation=EVIL,
                    allowed=[EVIL],
                    progress={"stage": EVIL, "ready": 1, "total": 2},
                    systems=[
                        {
                            "id": EVIL,
                            "kind": EVIL,
                            "state": EVIL,
                            "raw_state": EVIL,
                            "tag": EVIL,
                            "comment": EVIL,
                            "connected": True,
                        }
                    ],
                )
            ),
            format_logs([{"time": 1.0, "level": EVIL, "source": EVIL, "message": EVIL, "partition": EVIL}]),
            format_runs(
                [
                    {
                        "number": EVIL,
                        "partition": EVIL,
                        "tag": EVIL,
                        "operator": EVIL,
                        "started": 1.0,
                        "ended": None,
                        "outcome": EVIL,
                    }
                ]
            ),
            format_agents(
                [
                    {
                        "agent": EVIL,
                        "kind": EVIL,
                        "host": EVIL,
                        "launcher": EVIL,
                        "registered": True,
                        "status": {"running": False, "exit_code": EVIL, "detail": EVIL},
                        "supervision": {"state": EVIL, "restarts": 2},
                    }
                ]
            ),
        ]
        for output in outputs:
            self.assertNotIn("\x1b", output)
            self.assertNotIn("\x07", output)
            self.assertNotIn("\r", output)
            self.assertIn("okevil", output)


class TableTests(SynchronousTestCase):
    """Columns fitted to content."""

    def test_widths_fit_content(self) -> None:
        """Each column is as wide as its widest cell, two spaces apart, no trailing spaces."""
        text = table(["A", "LONGHEADER"], [["xxxxx", "1"], ["y", "22"]])
        self.assertEqual(text, "A      LONGHEADER\nxxxxx  1\ny      22\n")

    def test_wide_characters(self) -> None:
        """East Asian wide characters count two columns."""
        self.assertEqual(display_width("検出器"), 6)
        text = table(["N", "X"], [["検出", "1"], ["abcd", "2"]])
        self.assertEqual(text.splitlines()[1], "検出  1")

    def test_long_cells_cut(self) -> None:
        """A cell longer than the cap is cut with an ellipsis."""
        text = table(["C"], [["x" * 500]], max_cell=20)
        self.assertEqual(text.splitlines()[1], "x" * 19 + "…")

    def test_colour_only_when_asked(self) -> None:
        """No escape codes by default; with color, states get their colour and keep their text."""
        rows = [{"id": "p", "state": "Error", "tag": None, "controller": None, "connected": True}]
        self.assertNotIn("\x1b", format_partitions(rows))
        coloured = format_partitions(rows, color=True)
        self.assertIn("\x1b[31mError\x1b[0m", coloured)
        self.assertEqual(textview.state_colour("QA_Active"), "green")
        self.assertEqual(textview.state_colour("Configuring_TFC"), "yellow")
        self.assertEqual(textview.state_colour("Connection Problem"), "red")


class ProgressBarTests(SynchronousTestCase):
    """progress_bar."""

    def test_bar(self) -> None:
        """Filled in proportion, with the count."""
        self.assertEqual(progress_bar(3, 10, 10), "[###-------] 3/10")
        self.assertEqual(progress_bar(10, 10, 4), "[####] 10/10")
        self.assertEqual(progress_bar(0, 5, 5), "[-----] 0/5")

    def test_edges(self) -> None:
        """No total, negative or too many done: no crash, clamped."""
        self.assertEqual(progress_bar(0, 0, 3), "[---] 0/0")
        self.assertEqual(progress_bar(-2, 4, 4), "[----] 0/4")
        self.assertEqual(progress_bar(9, 4, 4), "[####] 4/4")
        self.assertEqual(len(progress_bar(1, 3)), len("[] 1/3") + 30)


class PartitionTests(SynchronousTestCase):
    """format_partitions and format_partition."""

    def test_partitions(self) -> None:
        """One line per partition; a disconnected PCA shows Connection Problem, not its state."""
        text = format_partitions(
            [
                {"id": "demo", "state": "QA_Active", "tag": "demo", "controller": "alice", "connected": True},
                {"id": "p2", "state": "Recording", "tag": None, "controller": None, "connected": False},
            ]
        )
        lines = text.splitlines()
        self.assertEqual(lines[0].split(), ["PARTITION", "STATE", "TAG", "CONTROLLER", "PCA"])
        self.assertEqual(lines[1].split(), ["demo", "QA_Active", "demo", "alice", "connected"])
        self.assertIn("Connection Problem", lines[2])
        self.assertNotIn("Recording", lines[2])
        self.assertEqual(format_partitions([]), "no partitions\n")

    def test_header_and_systems(self) -> None:
        """State, tag, controller, operation, progress, allowed, then every system."""
        text = format_partition(detail())
        self.assertIn("Partition demo: Configuring_Detectors", text)
        self.assertIn("controller: alice", text)
        self.assertIn("operation: configuring stage Detectors (2 of 4)", text)
        self.assertIn("stage Detectors [" + "#" * 12 + "-" * 18 + "] 2/5", text)
        self.assertIn("allowed: abort", text)
        rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(("STS", "TOF", "MVD"))}
        self.assertEqual(
            rows["STS"].split(), ["STS", "detector", "Active", "Ready_Step2", "sts-default", "-", "connected"]
        )
        self.assertIn("HV trip on sector 3", rows["TOF"])

    def test_disconnected_system_not_shown_stale(self) -> None:
        """A disconnected system shows Connection Problem/disconnected, never its last state as current."""
        text = format_partition(detail())
        mvd = next(line for line in text.splitlines() if line.startswith("MVD"))
        self.assertIn("Connection Problem", mvd)
        self.assertIn("disconnected", mvd)
        self.assertNotIn("Active_Stale", mvd)
        self.assertNotIn(" Active ", mvd)

    def test_disconnected_pca(self) -> None:
        """Without its PCA every system is unknown and the header says so."""
        text = format_partition(detail(connected=False, state="Connection Problem"))
        self.assertIn("Partition demo: Connection Problem", text)
        self.assertIn("the PCA does not answer", text)
        for name in ("STS", "TOF"):
            line = next(line for line in text.splitlines() if line.startswith(name))
            self.assertIn("Connection Problem", line)
            self.assertNotIn("Error", line)

    def test_missing_fields(self) -> None:
        """An answer with fields missing or of the wrong type is shown with '-', not an exception."""
        text = format_partition({"id": "x", "systems": [{"id": "A"}, "junk"], "progress": {"ready": "a"}})
        self.assertIn("Partition x", text)
        self.assertIn("A", text)


class ListTests(SynchronousTestCase):
    """format_logs, format_runs, format_agents."""

    def test_logs_oldest_first(self) -> None:
        """Logs (API: newest first) are printed oldest first, with a readable time."""
        rows = [
            {"id": 2, "time": 2000.0, "level": "error", "source": "demo", "message": "second", "partition": "demo"},
            {"id": 1, "time": 1000.0, "level": "info", "source": "ECA", "message": "first", "partition": None},
        ]
        lines = format_logs(rows).splitlines()
        self.assertTrue(lines[1].endswith("first"))
        self.assertTrue(lines[2].endswith("second"))
        self.assertIn(textview.format_time(1000.0), lines[1])
        self.assertEqual(format_logs([]), "no log events\n")

    def test_runs(self) -> None:
        """A finished run has its duration and outcome; an open one is running."""
        text = format_runs(
            [
                {
                    "number": 2,
                    "partition": "demo",
                    "tag": "demo",
                    "operator": "alice",
                    "started": 100.0,
                    "ended": None,
                    "outcome": None,
                    "configs": {},
                },
                {
                    "number": 1,
                    "partition": "demo",
                    "tag": None,
                    "operator": "bob",
                    "started": 0.0,
                    "ended": 65.0,
                    "outcome": "stopped",
                    "configs": {},
                },
            ]
        )
        lines = text.splitlines()
        self.assertTrue(lines[1].startswith("2 ") and lines[1].endswith("running"))
        self.assertIn("1 min 05 s", lines[2])
        self.assertTrue(lines[2].endswith("stopped"))

    def test_agents(self) -> None:
        """Running with its pid, or exited with its code, and the supervision state."""
        text = format_agents(
            [
                {
                    "agent": "STS",
                    "kind": "detector",
                    "id": "STS",
                    "host": "node1",
                    "launcher": "local",
                    "registered": True,
                    "status": {
                        "running": True,
                        "pid": 4242,
                        "job_id": None,
                        "exit_code": None,
                        "since": 1.0,
                        "detail": None,
                    },
                    "supervision": {"state": "supervised", "restarts": 0},
                },
                {
                    "agent": "pca-demo",
                    "kind": "pca",
                    "id": "demo",
                    "host": "node2",
                    "launcher": "ssh",
                    "registered": False,
                    "status": {
                        "running": False,
                        "pid": None,
                        "job_id": None,
                        "exit_code": 3,
                        "since": 2.0,
                        "detail": "crashed",
                    },
                    "supervision": {"state": "backing_off", "restarts": 2},
                },
                {"agent": "odd"},
            ]
        )
        lines = text.splitlines()
        self.assertIn("running (pid 4242)", lines[1])
        self.assertIn("supervised", lines[1])
        self.assertIn("exited (3)", lines[2])
        self.assertIn("backing_off (2 restarts)", lines[2])
        self.assertIn("crashed", lines[2])
        self.assertTrue(lines[3].startswith("odd"))
        self.assertEqual(format_agents([]), "no agents\n")


class ManagementViewTests(SynchronousTestCase):
    """Configurations, their differences, tags, users and detectors as text."""

    def test_parameter_changes(self) -> None:
        """Only changed leaves, by dotted key: changed, added and removed; an empty tree is a leaf."""
        old = {"gain": 1, "hv": {"a": 1, "b": 2}, "gone": True, "empty": {}}
        new = {"gain": 1, "hv": {"a": 1, "b": 3}, "new": [1, 2], "empty": {}}
        self.assertEqual(
            textview.parameter_changes(old, new),
            [("gone", "true", None), ("hv.b", "2", "3"), ("new", None, "[1, 2]")],
        )
        self.assertEqual(textview.parameter_changes(None, {}), [])

    def test_diff_text(self) -> None:
        """- and + lines under --- / +++ headers; no differences said in words; escapes removed."""
        text = textview.format_diff({"a": 1}, {"a": 2, EVIL: "x"}, "v1", "v2")
        self.assertTrue(text.startswith("--- v1\n+++ v2\n"))
        self.assertIn("- a: 1\n+ a: 2\n", text)
        self.assertNotIn("\x1b", text)
        self.assertEqual(textview.format_diff({"a": 1}, {"a": 1}, "v1", "v2"), "no differences between v1 and v2\n")

    def test_configs(self) -> None:
        """The ECA's config_id (or an older id) names a configuration, in the list and in one shown."""
        text = textview.format_configs(
            [{"config_id": "sts-b", "system": "STS", "version": 2}, {"id": "mvd-a", "system": "MVD", "version": 1}]
        )
        self.assertEqual(
            [line.split() for line in text.splitlines()],
            [["CONFIGURATION", "SYSTEM", "VERSION"], ["mvd-a", "MVD", "1"], ["sts-b", "STS", "2"]],
        )
        shown = textview.format_config(
            {"config_id": "sts-b", "system": "STS", "version": 2, "versions": [1, 2], "parameters": {"gain": EVIL}}
        )
        self.assertTrue(shown.startswith("Configuration sts-b of STS, version 2 (versions: 1, 2)\n"))
        self.assertNotIn("\x1b", shown)
        self.assertEqual(textview.format_configs([]), "no configurations\n")

    def test_tags_users_detectors(self) -> None:
        """Tags with their configurations (and fit, with a partition), users with roles, detectors with partitions."""
        tags = textview.format_tags(
            [{"name": "t", "configs": {"STS": "s1", "MVD": "m1"}, "compatible": False, "missing": ["TOF"], "extra": []}]
        )
        self.assertEqual(tags.splitlines()[1].split(None, 1)[1].strip(), "MVD=m1, STS=s1  missing TOF")
        self.assertNotIn("FITS", textview.format_tags([{"name": "t", "configs": {}}]))
        self.assertEqual(
            "Tag t\nSYSTEM  CONFIGURATION\nSTS     s1\n", textview.format_tag({"name": "t", "configs": {"STS": "s1"}})
        )
        self.assertEqual(
            textview.format_users([{"name": "bob", "roles": ["viewer", "operator"]}]).splitlines()[1],
            "bob   viewer, operator",
        )
        detectors = textview.format_detectors(
            [{"id": "TOF", "type": "tof", "partition": None}, {"id": "STS", "type": "sts", "partition": "demo"}],
            [{"id": "TOF", "state": "Idle"}],
        )
        self.assertEqual(
            [line.split() for line in detectors.splitlines()[1:]],
            [["STS", "sts", "demo", "-"], ["TOF", "tof", "(unassigned)", "Idle"]],
        )


def alarm(**overrides: Any) -> dict[str, Any]:
    """An alarm as GET /api/alarms answers (raised 5 minutes before NOW)."""
    base: dict[str, Any] = {
        "id": 4,
        "source": "STS",
        "partition": "demo",
        "severity": "error",
        "text": "STS in Error",
        "action": "reset STS, then Configure",
        "raised_at": NOW - 300,
        "cleared_at": None,
        "acknowledged_by": None,
        "acknowledged_at": None,
        "shelved_until": None,
        "shelved_by": None,
        "shelve_reason": None,
        "kind": "system_error",
    }
    base.update(overrides)
    return base


NOW = 1_800_000_000.0


class AlarmTextTests(SynchronousTestCase):
    """Alarms as text: every field, the state in words, worst first, nothing from the network interpreted."""

    def test_table_fields(self) -> None:
        """Each row has id, severity, partition, source, text, action, how long ago and the state in words."""
        text = textview.format_alarms([alarm()], NOW)
        header, row = text.splitlines()
        self.assertEqual(header.split(), ["ID", "SEVERITY", "PARTITION", "SOURCE", "TEXT", "ACTION", "RAISED", "STATE"])
        for field in ("4", "error", "demo", "STS", "STS in Error", "reset STS, then Configure", "5 min ago", "active"):
            self.assertIn(field, row)
        self.assertEqual(textview.format_alarms([], NOW), "no active alarms\n")
        self.assertEqual(textview.format_alarms([], NOW, history=True), "no alarms\n")

    def test_states_in_words(self) -> None:
        """active, acknowledged by X, cleared-unacknowledged, cleared and acknowledged, shelved until T by X (why)."""
        state = textview.alarm_state
        self.assertEqual(state(alarm(), NOW), "active")
        self.assertEqual(state(alarm(acknowledged_by="ann"), NOW), "acknowledged by ann")
        self.assertEqual(state(alarm(cleared_at=NOW - 1), NOW), "cleared-unacknowledged")
        self.assertEqual(state(alarm(cleared_at=NOW - 1, acknowledged_by="ann"), NOW), "cleared, acknowledged by ann")
        shelved = alarm(shelved_until=NOW + 3600, shelved_by="bob", shelve_reason="known noisy")
        self.assertEqual(
            state(shelved, NOW), f"shelved until {textview.format_time(NOW + 3600)} by bob (known noisy)"
        )
        self.assertEqual(state(shelved, NOW + 3601), "active")  # the shelving ran out

    def test_worst_first(self) -> None:
        """critical, then error, then warning; within one severity the newest first."""
        rows = [
            alarm(id=1, severity="warning"),
            alarm(id=2, severity="error", raised_at=NOW - 600),
            alarm(id=3, severity="critical"),
            alarm(id=5, severity="error", raised_at=NOW - 10),
        ]
        ids = [line.split()[0] for line in textview.format_alarms(rows, NOW).splitlines()[1:]]
        self.assertEqual(ids, ["3", "5", "2", "1"])

    def test_ago(self) -> None:
        """How long ago, in the largest whole unit."""
        ago = textview.format_ago
        self.assertEqual(
            [ago(NOW - s, NOW) for s in (0.5, 12, 125, 7300, 200000)],
            ["just now", "12 s ago", "2 min ago", "2 h ago", "2 d ago"],
        )
        self.assertEqual(ago("x", NOW), "-")

    def test_summary(self) -> None:
        """Counts by severity (shelved apart), the worst ones' text and action, the rest counted; none said."""
        rows = [alarm(id=i, severity="warning", text=f"w{i}") for i in range(1, 5)]
        rows.append(alarm(id=9, severity="critical", text="magnet quench", action="call the magnet expert"))
        rows.append(alarm(id=10, shelved_until=NOW + 60, shelved_by="bob", text="shelved one"))
        rows.append(alarm(id=11, cleared_at=NOW - 5, acknowledged_by="ann", text="over"))  # not active
        lines = textview.alarm_summary(rows, NOW)
        self.assertEqual(lines[0], "  alarms: 1 critical, 4 warning (+1 shelved)")
        self.assertEqual(lines[1], "    CRITICAL STS: magnet quench -> call the magnet expert")
        self.assertEqual(len(lines), 5)
        self.assertEqual(lines[-1], "    ... and 2 more (see ecs alarms)")
        self.assertNotIn("shelved one", "\n".join(lines))
        self.assertNotIn("over", "\n".join(lines))
        self.assertEqual(textview.alarm_summary([], NOW), ["  alarms: none"])

    def test_partition_views(self) -> None:
        """format_partition puts the summary right under the state; format_partitions counts per partition."""
        text = format_partition(detail(), alarms=[alarm()], now=NOW)
        self.assertEqual(
            text.splitlines()[1:3], ["  alarms: 1 error", "    ERROR STS: STS in Error -> reset STS, then Configure"]
        )
        self.assertNotIn("alarms", format_partition(detail()))  # none given: no line, rather than a false "none"
        rows = [{"id": "demo", "state": "Idle", "connected": True}, {"id": "b", "state": "Idle", "connected": True}]
        text = format_partitions(rows, alarms=[alarm(), alarm(id=7, partition=None, severity="critical")], now=NOW)
        lines = text.splitlines()
        self.assertTrue(lines[0].endswith("ALARMS"))
        self.assertTrue(lines[1].endswith("1 error") and lines[2].endswith("none"), lines)
        self.assertIn("other alarms (ECS-wide, or of no partition above): 1 critical", lines[3])

    def test_colour_beside_the_words(self) -> None:
        """Severity colour only when asked, and always around the severity's own word."""
        self.assertNotIn("\x1b", textview.format_alarms([alarm()], NOW))
        self.assertIn("\x1b[31merror\x1b[0m", textview.format_alarms([alarm()], NOW, color=True))
        self.assertIn("\x1b[33mwarning\x1b[0m", textview.format_alarms([alarm(severity="warning")], NOW, color=True))
        summary = textview.alarm_summary([alarm(severity="critical")], NOW, color=True)
        self.assertEqual(summary[1], "    \x1b[31mCRITICAL\x1b[0m STS: STS in Error -> reset STS, then Configure")

    def test_sanitised(self) -> None:
        """A hostile value in any alarm field leaves no escape and no title text in any alarm view."""
        evil = alarm(
            id=EVIL, source=EVIL, partition=EVIL, severity=EVIL, text=EVIL, action=EVIL, shelved_by=EVIL,
            shelve_reason=EVIL, shelved_until=NOW + 5, acknowledged_by=EVIL, change=EVIL, raised_at=EVIL,
        )
        outputs = [
            textview.format_alarms([evil, alarm(cleared_at=NOW, acknowledged_by=EVIL)], NOW, color=True),
            "\n".join(textview.alarm_summary([evil, alarm(cleared_at=NOW, id=EVIL)], NOW + 10)),  # not shelved now
            "\n".join(textview.alarm_summary([evil], NOW - 10)),  # shelved
            textview.format_alarm(evil, NOW),
            textview.format_alarm_event(evil, NOW),
            format_partition(detail(), alarms=[evil], now=NOW + 10),
            format_partitions([{"id": EVIL, "state": "Idle"}], alarms=[evil], now=NOW),
        ]
        self.assertIn("okevil", outputs[1])  # the hostile source and text are shown, cleaned
        for text in outputs:
            self.assertNotIn("\x1b]", text)
            self.assertNotIn("\x1b[2J", text)
            self.assertNotIn("\x9b", text)
            self.assertNotIn("owned", text)
            self.assertNotIn("\u202e", text)
            self.assertNotIn("\r", text)

    def test_missing_fields(self) -> None:
        """An alarm with fields missing or mistyped shows '-' and never raises."""
        text = textview.format_alarms([{"id": 1}, {"severity": 3}, "junk"], NOW)  # type: ignore[list-item]
        self.assertEqual(len(text.splitlines()), 3)
        self.assertIn("-", text)
        self.assertEqual(textview.alarm_counts([{"severity": "loud"}], NOW), "1 other")
