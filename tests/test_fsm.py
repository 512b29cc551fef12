# -*- test-case-name: tests.test_fsm -*-
"""
Tests for L{ecs.fsm.machine}: the shipped state tables, the loader's checks, the
Automat-backed L{Machine}, DOT output and the command-line helpers.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import attrs
from automat import TypeMachineBuilder
from twisted.trial.unittest import SynchronousTestCase

from ecs.fsm import build
from ecs.fsm import machine as fsm
from ecs.fsm.machine import InvalidTransition, Machine, StateTable, TableError, Transition
from ecs.fsm.table import parse_table

FSM_DIR = Path(__file__).parent.parent / "fsm"


def _group(pattern: str, text: str) -> str:
    """The first group of C{pattern}'s first match in C{text} (the test fails without one)."""
    found = re.search(pattern, text)
    assert found is not None, (pattern, text)
    return found.group(1)
SHIPPED = ("detector-2step", "detector-3step", "global", "global-recording")

# The rows each shipped table must have, written out from the reference
# (original CSVs, see the header of each table).
_GLOBAL_ROWS = {
    ("Unconfigured", "configure"): "Configuring",
    ("Unconfigured", "error"): "Error",
    ("Configuring", "success"): "Active",
    ("Configuring", "abort"): "Unconfigured",
    ("Configuring", "error"): "Error",
    ("Active", "configure"): "Configuring",
    ("Active", "abort"): "Unconfigured",
    ("Active", "error"): "Error",
    ("Error", "resolved"): "Unconfigured",
    ("Error", "reset"): "Unconfigured",
}
EXPECTED_ROWS = {
    "detector-2step": {
        ("Unconfigured", "configure"): "Configuring_Step1",
        ("Unconfigured", "error"): "Error",
        ("Configuring_Step1", "success"): "Configuring_Step2",
        ("Configuring_Step1", "abort"): "Unconfigured",
        ("Configuring_Step1", "error"): "Error",
        ("Configuring_Step2", "success"): "Active",
        ("Configuring_Step2", "abort"): "Unconfigured",
        ("Configuring_Step2", "error"): "Error",
        ("Active", "configure"): "Configuring_Step1",
        ("Active", "abort"): "Unconfigured",
        ("Active", "error"): "Error",
        ("Error", "resolved"): "Unconfigured",
        ("Error", "reset"): "Unconfigured",
    },
    "detector-3step": {
        ("Unconfigured", "configure"): "Configuring_Step1",
        ("Configuring_Step1", "success"): "Configuring_Step2",
        ("Configuring_Step1", "abort"): "Unconfigured",
        ("Configuring_Step1", "error"): "Unconfigured",
        ("Configuring_Step2", "success"): "Configuring_Step3",
        ("Configuring_Step2", "abort"): "Unconfigured",
        ("Configuring_Step2", "error"): "Unconfigured",
        ("Configuring_Step3", "success"): "Active",
        ("Configuring_Step3", "abort"): "Unconfigured",
        ("Configuring_Step3", "error"): "Unconfigured",
        ("Active", "configure"): "Configuring_Step1",
        ("Active", "abort"): "Unconfigured",
        ("Active", "error"): "Unconfigured",
    },
    "global": _GLOBAL_ROWS,
    "global-recording": {
        **_GLOBAL_ROWS,
        ("Active", "start"): "Recording",
        ("Recording", "stop"): "Active",
        ("Recording", "abort"): "Unconfigured",
        ("Recording", "error"): "Error",
    },
}


def shipped(name: str) -> StateTable:
    """Load the shipped table C{name}."""
    return fsm.load_table(FSM_DIR / f"{name}.yaml")


class WalkMixin:
    """Helpers to drive a machine through a scripted scenario."""

    def walk(self, machine: Machine, steps: list[tuple[str, str]]) -> None:
        """Fire each input and check the state reached after it."""
        for input, expected in steps:
            self.assertEqual((input, machine.fire(input)), (input, expected))  # type: ignore[attr-defined]
            self.assertEqual(machine.state, expected)  # type: ignore[attr-defined]

    def assertRefused(self, machine: Machine, input: str) -> InvalidTransition:
        """C{input} is refused and the machine stays where it was."""
        before = machine.state
        self.assertFalse(machine.can(input))  # type: ignore[attr-defined]
        exc: InvalidTransition = self.assertRaises(InvalidTransition, machine.fire, input)  # type: ignore[attr-defined]
        self.assertEqual(machine.state, before)  # type: ignore[attr-defined]
        self.assertEqual((exc.state, exc.input), (before, input))  # type: ignore[attr-defined]
        self.assertEqual(exc.allowed, machine.allowed())  # type: ignore[attr-defined]
        return exc


class ShippedTableTests(WalkMixin, SynchronousTestCase):
    """The four shipped tables load and behave like the original CSVs."""

    def test_all_load_with_expected_rows(self) -> None:
        """Every shipped table loads, is named after its file and has exactly the reference rows."""
        for name in SHIPPED:
            table = shipped(name)
            self.assertEqual(table.name, name)
            self.assertEqual(table.initial, "Unconfigured")
            self.assertEqual(table.rows, EXPECTED_ROWS[name], name)

    def test_only_the_shipped_tables(self) -> None:
        """The fsm folder holds the four shipped tables (plus any others, which must also load)."""
        names = {p.stem for p in FSM_DIR.glob("*.yaml")}
        self.assertTrue(set(SHIPPED) <= names)
        code, lines = fsm.check_files(sorted(str(p) for p in FSM_DIR.glob("*.yaml")))
        self.assertEqual(code, 0, lines)

    def test_summaries(self) -> None:
        """Each state maps to the summary state of the reference's map.csv."""
        table = shipped("detector-3step")
        self.assertEqual(
            table.states,
            {
                "Unconfigured": "Unconfigured",
                "Configuring_Step1": "Configuring",
                "Configuring_Step2": "Configuring",
                "Configuring_Step3": "Configuring",
                "Active": "Active",
            },
        )
        self.assertEqual(shipped("global-recording").summary("Recording"), "Recording")
        self.assertEqual(shipped("detector-2step").summary("Error"), "Error")
        self.assertTrue(table.is_configuring("Configuring_Step3"))
        self.assertFalse(table.is_configuring("Active"))

    def test_detector_2step_configure(self) -> None:
        """detector-2step goes through both steps to Active, and reconfigures from Active."""
        machine = Machine(shipped("detector-2step"))
        self.assertEqual((machine.state, machine.summary), ("Unconfigured", "Unconfigured"))
        self.walk(machine, [("configure", "Configuring_Step1")])
        self.assertEqual(machine.summary, "Configuring")
        self.walk(machine, [("success", "Configuring_Step2"), ("success", "Active")])
        self.assertEqual(machine.summary, "Active")
        self.walk(machine, [("configure", "Configuring_Step1")])

    def test_detector_2step_abort(self) -> None:
        """detector-2step aborts to Unconfigured from each configuring state and from Active."""
        table = shipped("detector-2step")
        for state in ("Configuring_Step1", "Configuring_Step2", "Active"):
            machine = Machine(table, state)
            self.walk(machine, [("abort", "Unconfigured")])

    def test_detector_2step_error(self) -> None:
        """detector-2step errors from every other state, and leaves Error by resolved or reset."""
        table = shipped("detector-2step")
        for state in ("Unconfigured", "Configuring_Step1", "Configuring_Step2", "Active"):
            self.walk(Machine(table, state), [("error", "Error")])
        for way_out in ("resolved", "reset"):
            machine = Machine(table, "Error")
            self.assertEqual(machine.summary, "Error")
            self.walk(machine, [(way_out, "Unconfigured")])

    def test_detector_2step_refusals(self) -> None:
        """detector-2step refuses inputs it has no row for, staying in its state."""
        table = shipped("detector-2step")
        exc = self.assertRefused(Machine(table), "success")
        self.assertEqual(exc.allowed, ["configure", "error"])
        self.assertIn("'success'", str(exc))
        self.assertIn("configure, error", str(exc))
        self.assertRefused(Machine(table, "Error"), "configure")
        self.assertRefused(Machine(table, "Active"), "success")
        self.assertRefused(Machine(table, "Active"), "start")
        self.assertRefused(Machine(table, "Configuring_Step1"), "configure")

    def test_detector_3step(self) -> None:
        """detector-3step takes three steps and sends error and abort back to Unconfigured."""
        table = shipped("detector-3step")
        self.assertNotIn("Error", table.states)
        machine = Machine(table)
        self.walk(
            machine,
            [
                ("configure", "Configuring_Step1"),
                ("success", "Configuring_Step2"),
                ("success", "Configuring_Step3"),
                ("success", "Active"),
                ("configure", "Configuring_Step1"),
            ],
        )
        for state in ("Configuring_Step1", "Configuring_Step2", "Configuring_Step3", "Active"):
            for input in ("abort", "error"):
                self.walk(Machine(table, state), [(input, "Unconfigured")])
        unconfigured = Machine(table)
        for input in ("error", "reset", "abort", "resolved", "success"):
            self.assertRefused(unconfigured, input)
        self.assertEqual(unconfigured.allowed(), ["configure"])

    def test_global(self) -> None:
        """global configures in one step, aborts, errors and recovers; it cannot record."""
        table = shipped("global")
        machine = Machine(table)
        self.walk(
            machine,
            [
                ("configure", "Configuring"),
                ("success", "Active"),
                ("configure", "Configuring"),
                ("abort", "Unconfigured"),
                ("error", "Error"),
                ("resolved", "Unconfigured"),
                ("configure", "Configuring"),
                ("error", "Error"),
                ("reset", "Unconfigured"),
            ],
        )
        self.walk(Machine(table, "Active"), [("error", "Error")])
        self.walk(Machine(table, "Active"), [("abort", "Unconfigured")])
        self.assertRefused(Machine(table, "Active"), "start")
        self.assertRefused(Machine(table, "Error"), "abort")

    def test_global_recording(self) -> None:
        """global-recording starts and stops recording, and aborts or errors out of Recording."""
        table = shipped("global-recording")
        machine = Machine(table)
        self.walk(
            machine,
            [
                ("configure", "Configuring"),
                ("success", "Active"),
                ("start", "Recording"),
            ],
        )
        self.assertEqual(machine.summary, "Recording")
        self.assertRefused(machine, "start")
        self.assertRefused(machine, "configure")
        self.walk(machine, [("stop", "Active"), ("start", "Recording"), ("abort", "Unconfigured")])
        self.walk(Machine(table, "Recording"), [("error", "Error"), ("reset", "Unconfigured")])
        self.assertRefused(Machine(table), "start")
        self.assertRefused(Machine(table, "Active"), "stop")

    def test_global_recording_unconfigured_error(self) -> None:
        """global-recording adds the Unconfigured -error-> Error row the original CSV lacked."""
        self.walk(Machine(shipped("global-recording")), [("error", "Error")])


def write(tmp: Path, name: str, text: str) -> str:
    """Write C{text} (dedented) to C{tmp/name} and return the path."""
    path = tmp / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


GOOD = """
name: tiny
initial: Unconfigured
states:
  Unconfigured: Unconfigured
  Configuring: Configuring
  Active: Active
transitions:
  - [Unconfigured, configure, Configuring]
  - [Configuring, success, Active]
  - [Active, abort, Unconfigured]
"""


class LoaderRejectionTests(SynchronousTestCase):
    """The loader rejects bad tables, naming the file and the line of each problem."""

    def problems(self, text: str, source: str = "fsm/x.yaml") -> list[str]:
        """The problems reported for C{text}; fails if it is accepted."""
        exc: TableError = self.assertRaises(
            TableError, parse_table, textwrap.dedent(text).lstrip("\n"), source
        )
        self.assertEqual(str(exc), "\n".join(exc.problems))
        return exc.problems

    def only(self, text: str) -> str:
        """The single problem reported for C{text}."""
        problems = self.problems(text)
        self.assertEqual(len(problems), 1, problems)
        return problems[0]

    def test_tables_compare_by_contents(self) -> None:
        """Tables parsed from the same text are equal, hash alike, and cannot be changed."""
        one = parse_table(textwrap.dedent(GOOD), "fsm/tiny.yaml")
        two = parse_table(textwrap.dedent(GOOD), "fsm/tiny.yaml")
        self.assertEqual(one, two)
        self.assertEqual(len({one, two}), 1)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, one, "initial", "Active")

    def test_good_table_accepted(self) -> None:
        """The reference small table is accepted, keeping declaration and row order."""
        table = parse_table(textwrap.dedent(GOOD), "fsm/tiny.yaml")
        self.assertEqual(table.source, "fsm/tiny.yaml")
        self.assertEqual(list(table.states), ["Unconfigured", "Configuring", "Active"])
        self.assertEqual(table.next_state("Configuring", "success"), "Active")
        self.assertIsNone(table.next_state("Active", "success"))
        self.assertEqual(table.inputs_from("Active"), ["abort"])

    def test_not_a_mapping(self) -> None:
        """A top level that is a list is rejected on line 1."""
        problem = self.only("- [A, configure, B]\n")
        self.assertTrue(problem.startswith("fsm/x.yaml line 1: expected a mapping"), problem)
        self.assertIn("got a list", problem)

    def test_empty_file(self) -> None:
        """An empty file is rejected and called empty."""
        self.assertEqual(
            self.only("# nothing\n"),
            "fsm/x.yaml line 1: the file is empty; "
            "expected a mapping with keys name, initial, states, transitions",
        )

    def test_yaml_syntax_error(self) -> None:
        """A YAML syntax error is reported with its line."""
        problem = self.only("name: x\ninitial: A\nstates: [A: Active\n")
        self.assertRegex(problem, r"^fsm/x\.yaml line \d+: YAML syntax error")

    def test_missing_initial(self) -> None:
        """A table without 'initial' is rejected, naming the key."""
        problem = self.only(GOOD.replace("initial: Unconfigured\n", ""))
        self.assertEqual(
            problem,
            "fsm/x.yaml line 1: missing key 'initial' "
            "(required: name, initial, states, transitions)",
        )

    def test_missing_transitions(self) -> None:
        """A table without rows is rejected: 'transitions' is missing, states are unreachable."""
        problems = self.problems(GOOD.split("transitions:")[0])
        self.assertIn("fsm/x.yaml line 1: missing key 'transitions'", problems[0])
        self.assertIn(
            "fsm/x.yaml line 5: state 'Configuring' is not reachable from the initial state "
            "'Unconfigured' (no chain of rows leads to it)",
            problems,
        )

    def test_unknown_top_level_key(self) -> None:
        """An unknown top-level key is rejected on its line, with a suggestion."""
        problem = self.only(GOOD + "transition: []\n")
        self.assertTrue(problem.startswith("fsm/x.yaml line 11: unknown key 'transition'"), problem)
        self.assertIn("did you mean 'transitions'?", problem)
        self.assertIn("allowed: name, description, kind, initial, states, transitions", problem)

    def test_top_level_key_twice(self) -> None:
        """A top-level key given twice is rejected naming both lines."""
        problem = self.only(GOOD + "name: again\n")
        self.assertEqual(problem, "fsm/x.yaml line 11: key 'name' declared twice (lines 1 and 11)")

    def test_description_allowed(self) -> None:
        """An optional description is accepted."""
        parse_table("description: a test table\n" + textwrap.dedent(GOOD), "t.yaml")

    def test_initial_undeclared(self) -> None:
        """An initial state that is not declared is rejected on its line, listing the states."""
        problem = self.only(GOOD.replace("initial: Unconfigured", "initial: Unconfigurd"))
        self.assertEqual(
            problem,
            "fsm/x.yaml line 2: initial state 'Unconfigurd' is not declared under 'states'; "
            "did you mean 'Unconfigured'? (declared states: Unconfigured, Configuring, Active)",
        )

    def test_initial_list(self) -> None:
        """Two initial states given as a list are rejected: there is exactly one."""
        text = GOOD.replace("initial: Unconfigured", "initial: [Unconfigured, Active]")
        problem = self.only(text)
        self.assertTrue(problem.startswith("fsm/x.yaml line 2: 'initial' must name one state"))
        self.assertIn("got a list of 2 ([Unconfigured, Active])", problem)
        self.assertIn("exactly one initial state", problem)

    def test_unknown_summary_state(self) -> None:
        """A state with an unknown summary state is rejected on its line."""
        problem = self.only(GOOD.replace("Active: Active", "Active: Running"))
        self.assertEqual(
            problem,
            "fsm/x.yaml line 6: state 'Active': unknown summary state 'Running' (expected one of: "
            "Unconfigured, Configuring, Active, Recording, Error)",
        )

    def test_state_declared_twice(self) -> None:
        """A state declared twice (a YAML duplicate key) is rejected naming both lines."""
        text = GOOD.replace("  Active: Active\n", "  Active: Active\n  Configuring: Configuring\n")
        problem = self.only(text)
        self.assertEqual(
            problem, "fsm/x.yaml line 7: state 'Configuring' declared twice (lines 5 and 7)"
        )

    def test_row_too_short(self) -> None:
        """A row with two items is rejected on its line."""
        problem = self.only(GOOD + "  - [Active, configure]\n")
        self.assertEqual(
            problem,
            "fsm/x.yaml line 11: row [Active, configure]: expected [state, input, next state], "
            "got 2 items",
        )

    def test_row_too_long(self) -> None:
        """A row with four items is rejected on its line."""
        problem = self.only(GOOD + "  - [Active, configure, Configuring, Active]\n")
        self.assertTrue(problem.startswith("fsm/x.yaml line 11: row [Active, configure"), problem)
        self.assertIn("got 4 items", problem)

    def test_row_not_a_list(self) -> None:
        """A row given as a string or a mapping is rejected on its line."""
        problems = self.problems(GOOD + "  - Active configure Configuring\n  - {Active: x}\n")
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(problems[0].startswith("fsm/x.yaml line 11: row Active configure"))
        self.assertIn("got the string 'Active configure Configuring'", problems[0])
        self.assertTrue(problems[1].startswith("fsm/x.yaml line 12: row {Active: x}"))
        self.assertIn("got a mapping", problems[1])

    def test_row_item_not_a_string(self) -> None:
        """A row item that YAML reads as a number is rejected, saying which item."""
        problem = self.only(GOOD + "  - [Active, 3, Configuring]\n")
        self.assertEqual(
            problem,
            "fsm/x.yaml line 11: row [Active, 3, Configuring]: item 2 must be a name, "
            "got int '3' (quote it to make it a name)",
        )

    def test_unknown_state_in_row(self) -> None:
        """A row naming an undeclared state is rejected on its line, listing the declared ones."""
        problem = self.only(GOOD + "  - [Active, configure, Nowhere]\n")
        self.assertEqual(
            problem,
            "fsm/x.yaml line 11: row [Active, configure, Nowhere]: unknown state 'Nowhere' "
            "(declared states: Unconfigured, Configuring, Active)",
        )

    def test_unknown_from_state_in_row(self) -> None:
        """A row starting from an undeclared state is rejected too."""
        problem = self.only(GOOD + "  - [Actve, configure, Configuring]\n")
        self.assertTrue(
            problem.startswith(
                "fsm/x.yaml line 11: row [Actve, configure, Configuring]: unknown state 'Actve'; "
                "did you mean 'Active'?"
            ),
            problem,
        )

    def test_unknown_input(self) -> None:
        """A row with an input outside the vocabulary is rejected on its line."""
        problem = self.only(GOOD + "  - [Active, confgure, Configuring]\n")
        self.assertEqual(
            problem,
            "fsm/x.yaml line 11: row [Active, confgure, Configuring]: unknown input 'confgure'; "
            "did you mean 'configure'? (inputs: configure, success, abort, error, resolved, "
            "reset, start, stop)",
        )

    def test_duplicate_row(self) -> None:
        """Two rows for the same state and input are rejected naming both lines."""
        problem = self.only(GOOD + "  - [Configuring, success, Unconfigured]\n")
        self.assertEqual(
            problem,
            "fsm/x.yaml line 11: row [Configuring, success, Unconfigured]: duplicate row for "
            "state 'Configuring' and input 'success' (lines 9 and 11)",
        )

    def test_unreachable_state(self) -> None:
        """A state no row leads to is rejected on the line that declares it."""
        text = GOOD.replace("  Active: Active\n", "  Active: Active\n  Error: Error\n")
        text += "  - [Error, reset, Unconfigured]\n"
        self.assertEqual(
            self.only(text),
            "fsm/x.yaml line 7: state 'Error' is not reachable from the initial state "
            "'Unconfigured' (no chain of rows leads to it)",
        )

    def test_bad_sections(self) -> None:
        """A non-string name, a list of states and a mapping of transitions are each rejected."""
        text = """
        name: [a, b]
        initial: A
        states: [A, B]
        transitions: {A: B}
        """
        problems = self.problems(text)
        self.assertEqual(len(problems), 3, problems)
        self.assertTrue(problems[0].startswith("fsm/x.yaml line 1: 'name' must be a string"))
        self.assertTrue(problems[1].startswith("fsm/x.yaml line 3: 'states' must map state names"))
        self.assertTrue(problems[2].startswith("fsm/x.yaml line 4: 'transitions' must be a list"))

    def test_all_problems_reported(self) -> None:
        """Every problem in a file is reported, in line order, not just the first."""
        text = """
        name: broken
        initial: Unconfigured
        states:
          Unconfigured: Unconfigured
          Active: Actve
          Active: Active
          Lonely: Error
        transitions:
          - [Unconfigured, configure, Active]
          - [Unconfigured, configure, Active]
          - [Active, jump, Nowhere]
        extra: 1
        """
        problems = self.problems(text, "fsm/broken.yaml")
        lines = [int(_group(r"fsm/broken\.yaml line (\d+): ", p)) for p in problems]
        self.assertEqual(lines, [5, 6, 7, 10, 11, 11, 12], problems)
        self.assertIn("unknown summary state 'Actve'", problems[0])
        self.assertIn("state 'Active' declared twice (lines 5 and 6)", problems[1])
        self.assertIn("state 'Lonely' is not reachable", problems[2])
        self.assertIn("duplicate row", problems[3])
        self.assertIn("unknown state 'Nowhere'", problems[4])
        self.assertIn("unknown input 'jump'", problems[5])
        self.assertIn("unknown key 'extra'", problems[6])


class LoadTableTests(SynchronousTestCase):
    """load_table reads files, caches them and reports unreadable ones."""

    def setUp(self) -> None:
        """Make a fresh temporary folder."""
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()

    def test_cached_until_changed(self) -> None:
        """A file is parsed once until its modification time changes."""
        path = write(self.tmp, "tiny.yaml", GOOD)
        first = fsm.load_table(path)
        self.assertIs(fsm.load_table(path), first)
        Path(path).write_text(
            textwrap.dedent(GOOD).replace("name: tiny", "name: tinier"), encoding="utf-8"
        )
        stamp = os.stat(path).st_mtime_ns + 5_000_000_000
        os.utime(path, ns=(stamp, stamp))
        second = fsm.load_table(path)
        self.assertEqual(second.name, "tinier")

    def test_missing_file(self) -> None:
        """A missing file is a TableError naming the file."""
        path = str(self.tmp / "absent.yaml")
        exc = self.assertRaises(TableError, fsm.load_table, path)
        self.assertEqual(
            exc.problems, [f"{path}: cannot read the state table: No such file or directory"]
        )

    def test_four_step_table(self) -> None:
        """A new four-step detector type is a YAML file only: it loads and walks to Active."""
        path = write(
            self.tmp,
            "detector-4step.yaml",
            """
            name: detector-4step
            initial: Unconfigured
            states:
              Unconfigured: Unconfigured
              Configuring_Step1: Configuring
              Configuring_Step2: Configuring
              Configuring_Step3: Configuring
              Configuring_Step4: Configuring
              Active: Active
            transitions:
              - [Unconfigured, configure, Configuring_Step1]
              - [Configuring_Step1, success, Configuring_Step2]
              - [Configuring_Step2, success, Configuring_Step3]
              - [Configuring_Step3, success, Configuring_Step4]
              - [Configuring_Step4, success, Active]
              - [Active, abort, Unconfigured]
            """,
        )
        machine = Machine(fsm.load_table(path))
        seen = [machine.fire("configure")] + [machine.fire("success") for _ in range(4)]
        self.assertEqual(
            seen,
            [f"Configuring_Step{n}" for n in (1, 2, 3, 4)] + ["Active"],
        )
        self.assertEqual(machine.summary, "Active")


class MachineTests(SynchronousTestCase):
    """Machine runs a table on Automat, starts anywhere and tells observers."""

    def table(self, name: str = "tiny") -> StateTable:
        """A small table, named C{name} so that it gets its own factory."""
        text = textwrap.dedent(GOOD).replace("name: tiny", f"name: {name}")
        return parse_table(text, "t.yaml")

    def test_start_in_state(self) -> None:
        """A machine can start in a given state, and Automat follows from there."""
        machine = Machine(shipped("detector-2step"), "Configuring_Step2")
        self.assertEqual(machine.state, "Configuring_Step2")
        self.assertEqual(machine.fire("success"), "Active")
        self.assertEqual(machine.fire("abort"), "Unconfigured")

    def test_start_in_unknown_state(self) -> None:
        """Starting in an undeclared state is a ValueError naming the valid states."""
        exc = self.assertRaises(ValueError, Machine, self.table(), "Running")
        self.assertIn("unknown state 'Running'", str(exc))
        self.assertIn("Unconfigured, Configuring, Active", str(exc))

    def test_unknown_input(self) -> None:
        """An input outside the vocabulary is refused with a message listing the inputs."""
        machine = Machine(self.table())
        self.assertFalse(machine.can("explode"))
        exc = self.assertRaises(InvalidTransition, machine.fire, "explode")
        self.assertIn("unknown input 'explode'", str(exc))
        self.assertEqual(machine.state, "Unconfigured")

    def test_machines_are_independent(self) -> None:
        """Two machines of one table keep their own states."""
        table = self.table()
        one, two = Machine(table), Machine(table)
        one.fire("configure")
        self.assertEqual((one.state, two.state), ("Configuring", "Unconfigured"))

    def test_factory_cached(self) -> None:
        """The Automat factory is built once per table, however many machines use it."""
        builds = []
        real = TypeMachineBuilder

        def counting(*args: Any) -> Any:
            builds.append(args)
            return real(*args)

        self.patch(build, "TypeMachineBuilder", counting)
        table = self.table("cache-test")
        factory = fsm.machine_factory(table)
        Machine(table)
        Machine(table, "Active").fire("abort")
        self.assertIs(fsm.machine_factory(self.table("cache-test")), factory)
        self.assertEqual(len(builds), 1)
        fsm.machine_factory(self.table("cache-test-other"))
        self.assertEqual(len(builds), 2)

    def test_initial_not_declared_first(self) -> None:
        """A machine starts in the table's initial state even when it is not the first declared."""
        text = """
        name: initial-last
        initial: B
        states: {A: Active, B: Unconfigured}
        transitions: [[B, configure, A], [A, abort, B]]
        """
        machine = Machine(parse_table(textwrap.dedent(text), "last.yaml"))
        self.assertEqual(machine.state, "B")
        self.assertEqual(machine.fire("configure"), "A")
        self.assertEqual(machine.fire("abort"), "B")

    def test_self_loop(self) -> None:
        """A row leading back to its own state works."""
        text = textwrap.dedent(GOOD) + "  - [Active, configure, Active]\n"
        machine = Machine(parse_table(text, "loop.yaml"), "Active")
        self.assertEqual(machine.fire("configure"), "Active")
        self.assertEqual(machine.fire("abort"), "Unconfigured")

    def test_observers(self) -> None:
        """Observers see each transition, not refusals, and can unsubscribe."""
        machine = Machine(self.table())
        seen: list[tuple[str, str, str]] = []
        stop = machine.observe(lambda *event: seen.append(event))
        machine.fire("configure")
        self.assertRaises(InvalidTransition, machine.fire, "configure")
        machine.fire("success")
        stop()
        machine.fire("abort")
        self.assertEqual(
            seen,
            [("Unconfigured", "configure", "Configuring"), ("Configuring", "success", "Active")],
        )

    def test_failing_observer_logged(self) -> None:
        """An observer that raises is logged; the transition and other observers go on."""
        machine = Machine(self.table())
        seen: list[str] = []
        machine.observe(lambda old, input, new: 1 / 0)
        machine.observe(lambda old, input, new: seen.append(new))
        self.assertEqual(machine.fire("configure"), "Configuring")
        self.assertEqual(seen, ["Configuring"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_no_reentrant_fire(self) -> None:
        """An observer cannot fire the machine synchronously."""
        machine = Machine(self.table())
        errors: list[RuntimeError] = []

        def observer(old: str, input: str, new: str) -> None:
            try:
                machine.fire("success")
            except RuntimeError as exc:
                errors.append(exc)

        machine.observe(observer)
        machine.fire("configure")
        self.assertEqual(machine.state, "Configuring")
        self.assertEqual(len(errors), 1)
        self.assertIn("called from an observer", str(errors[0]))


class Recorder:
    """Outputs that record each call as C{(name, transition, *args)}."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def A_work(self, step: Transition, *args: object) -> None:
        """Record."""
        self.calls.append(("A_work", step, *args))

    def C_tell(self, step: Transition, *args: object) -> None:
        """Record."""
        self.calls.append(("C_tell", step, *args))


class MachineOutputsTests(SynchronousTestCase):
    """Automat decides each transition and runs the outputs registered for it."""

    registry: ClassVar[dict[tuple[str, str], tuple[str, ...]]] = {
        ("configure", "Configuring"): ("C_tell", "A_work"),
        ("success", "Active"): ("C_tell",),
    }

    def machine(self) -> tuple[Machine, Recorder]:
        outputs = Recorder()
        table = parse_table(textwrap.dedent(GOOD).replace("name: tiny", "name: outputs"), "o.yaml")
        return Machine(table, outputs=outputs, registry=self.registry), outputs

    def test_outputs_once_with_arguments(self) -> None:
        """Each transition runs its registered outputs once, in order, with the transition and fire's arguments."""
        machine, outputs = self.machine()
        machine.fire("configure", "note", 3)
        self.assertEqual(outputs.calls, [
            ("C_tell", Transition("Unconfigured", "configure", "Configuring"), "note", 3),
            ("A_work", Transition("Unconfigured", "configure", "Configuring"), "note", 3),
        ])
        machine.fire("success")
        machine.fire("abort")  # nothing registered for (abort, Unconfigured)
        self.assertEqual(outputs.calls[2:], [("C_tell", Transition("Configuring", "success", "Active"))])

    def test_outputs_see_the_new_state(self) -> None:
        """When an output runs, the machine is already in the target state; observers see it too."""
        machine, outputs = self.machine()
        states: list[str] = []
        outputs.A_work = lambda step, *args: states.append(machine.state)  # type: ignore[method-assign]
        machine.observe(lambda old, input, new: states.append(f"{old}->{new}:{machine.state}"))
        machine.fire("configure")
        self.assertEqual(states, ["Configuring", "Unconfigured->Configuring:Configuring"])

    def test_automat_refuses_not_the_dict(self) -> None:
        """Automat refuses an input the table has no row for, even if the table's lookup were to say yes."""
        machine, outputs = self.machine()
        self.patch(StateTable, "next_state", lambda self, state, input: "Active")
        self.patch(StateTable, "inputs_from", lambda self, state: ["configure"])
        exc = self.assertRaises(InvalidTransition, machine.fire, "start")
        self.assertEqual((exc.state, exc.input, exc.allowed), ("Unconfigured", "start", ["configure"]))
        self.assertIn("input 'start' is not possible in state 'Unconfigured'", str(exc))
        self.assertEqual((machine.state, outputs.calls), ("Unconfigured", []))

    def test_output_cannot_fire(self) -> None:
        """An output that fires the machine is refused (it must queue the input instead)."""
        machine, outputs = self.machine()
        errors: list[RuntimeError] = []

        def work(step: Transition, *args: object) -> None:
            try:
                machine.fire("success")
            except RuntimeError as e:
                errors.append(e)

        outputs.A_work = work  # type: ignore[method-assign]
        machine.fire("configure")
        self.assertEqual((machine.state, len(errors)), ("Configuring", 1))

    def test_registry_checked(self) -> None:
        """A registry naming a missing method or an unknown input is refused when the machine is made."""
        table = parse_table(textwrap.dedent(GOOD), "t.yaml")
        error = self.assertRaises(ValueError, Machine, table, None, Recorder(), {("configure", "Active"): ("nope",)})
        self.assertIn("lacks nope", str(error))
        error = self.assertRaises(ValueError, Machine, table, None, Recorder(), {("explode", "Active"): ("C_tell",)})
        self.assertIn("('explode', 'Active')", str(error))


class DotTests(SynchronousTestCase):
    """to_dot and dot_file draw tables."""

    def test_every_state_and_edge(self) -> None:
        """Every state and every row appears, edges labelled with their input."""
        for name in SHIPPED:
            table = shipped(name)
            dot = fsm.to_dot(table)
            self.assertTrue(dot.startswith(f'digraph "{name}" {{'))
            self.assertTrue(dot.rstrip().endswith("}"))
            for state in table.states:
                self.assertIn(f'\n  "{state}" [', dot)
            for (state, input), target in table.rows.items():
                self.assertIn(f'  "{state}" -> "{target}" [label="{input}"];', dot)
            self.assertNotIn("penwidth", dot)

    def test_colours_and_initial(self) -> None:
        """Nodes are red, yellow or green by summary state, and the initial state is marked."""
        dot = fsm.to_dot(shipped("global-recording"))
        colour = {
            state: _group(rf'\n  "{state}" \[color="(#\w+)"', dot)
            for state in ("Unconfigured", "Configuring", "Active", "Recording", "Error")
        }
        self.assertEqual(colour["Unconfigured"], colour["Error"])
        self.assertEqual(colour["Active"], colour["Recording"])
        self.assertEqual(len(set(colour.values())), 3)
        self.assertIn('"__start__" -> "Unconfigured";', dot)
        self.assertIn('"__start__" [shape=point', dot)

    def test_current_highlighted(self) -> None:
        """Only the current state is drawn bold with a thick border."""
        dot = fsm.to_dot(shipped("detector-2step"), current="Configuring_Step2")
        highlighted = [line for line in dot.splitlines() if "penwidth=3" in line]
        self.assertEqual(len(highlighted), 1)
        self.assertTrue(highlighted[0].startswith('  "Configuring_Step2" ['))
        self.assertIn('style="rounded,filled,bold"', highlighted[0])

    def test_quoting(self) -> None:
        """Names with quotes and backslashes are escaped in DOT ids."""
        table = StateTable(
            name='odd "one"',
            source="<test>",
            initial='A "x"',
            states={'A "x"': "Unconfigured", "B\\y": "Active"},
            rows={('A "x"', "configure"): "B\\y"},
        )
        dot = fsm.to_dot(table, current="B\\y")
        self.assertIn('digraph "odd \\"one\\"" {', dot)
        self.assertIn('  "A \\"x\\"" -> "B\\\\y" [label="configure"];', dot)

    def test_unknown_current(self) -> None:
        """Highlighting an undeclared state is a ValueError."""
        self.assertRaises(ValueError, fsm.to_dot, shipped("global"), "Recording")

    def test_dot_file(self) -> None:
        """dot_file draws a file with its current state; an unknown --state names the valid ones."""
        path = str(FSM_DIR / "global.yaml")
        self.assertIn('"Active" [color="#1b5e20", fillcolor', fsm.dot_file(path, "Active"))
        self.assertEqual(fsm.dot_file(path, None), fsm.to_dot(shipped("global")))
        exc = self.assertRaises(TableError, fsm.dot_file, path, "Recording")
        self.assertEqual(
            str(exc),
            f"{path}: unknown state 'Recording' for --state "
            "(states: Unconfigured, Configuring, Active, Error)",
        )


class CheckFilesTests(SynchronousTestCase):
    """check_files gives the exit code and lines of C{ecs fsm check}."""

    def setUp(self) -> None:
        """Make a fresh temporary folder."""
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()

    def test_all_good(self) -> None:
        """Good files give exit code 0 and one OK line each with counts."""
        paths = [str(FSM_DIR / f"{name}.yaml") for name in SHIPPED]
        code, lines = fsm.check_files(paths)
        self.assertEqual(code, 0)
        self.assertEqual(
            lines,
            [
                f"OK {paths[0]} (5 states, 13 rows)",
                f"OK {paths[1]} (5 states, 13 rows)",
                f"OK {paths[2]} (4 states, 10 rows)",
                f"OK {paths[3]} (5 states, 14 rows)",
            ],
        )

    def test_bad_and_good(self) -> None:
        """One bad file gives exit code 1, its problems, and OK for the others."""
        good = write(self.tmp, "good.yaml", GOOD)
        bad = write(self.tmp, "bad.yaml", GOOD + "  - [Active, configure, Nowhere]\n")
        code, lines = fsm.check_files([bad, good])
        self.assertEqual(code, 1)
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith(f"{bad} line 11: row [Active, configure, Nowhere]"))
        self.assertEqual(lines[1], f"OK {good} (3 states, 3 rows)")

    def test_missing_file(self) -> None:
        """A missing file gives exit code 1 and a line naming it."""
        path = str(self.tmp / "missing.yaml")
        code, lines = fsm.check_files([path])
        self.assertEqual((code, len(lines)), (1, 1))
        self.assertTrue(lines[0].startswith(f"{path}: cannot read the state table"))

    def test_syntax_error(self) -> None:
        """A YAML syntax error gives exit code 1 and names the file and line."""
        path = write(self.tmp, "broken.yaml", "name: x\nstates:\n  A: Active\n  - [A]\n")
        code, lines = fsm.check_files([path])
        self.assertEqual(code, 1)
        self.assertRegex(lines[0], rf"^{re.escape(path)} line [34]: YAML syntax error")

    def test_no_files(self) -> None:
        """No files at all is an error."""
        self.assertEqual(fsm.check_files([]), (1, ["no state table files given"]))
