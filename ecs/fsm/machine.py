# -*- test-case-name: tests.test_fsm -*-
"""
Declarative state machines: YAML state tables run as Automat machines.

A state table (``fsm/*.yaml``) gives only the topology of a machine.  It
declares the states, each with its summary state, the initial state, and rows
of ``[state, input, next state]``.  The vocabulary is fixed in code:
L{SUMMARY_STATES} and L{INPUTS}.  What each input does is code in the
controllers.

L{parse_table} and L{load_table} check a table and return a L{StateTable}.
When a table is bad they raise one L{TableError} that lists every problem,
each with the file and the line.  Those live in L{ecs.fsm.table} and are
re-exported here.  L{Machine} runs a table on an Automat
machine built at run time with C{TypeMachineBuilder}; the built factory is
cached per table.  L{to_dot} draws a table as Graphviz DOT text.
L{check_files} and L{dot_file} back the C{ecs fsm check} and C{ecs fsm dot}
commands.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from automat import TypeMachineBuilder
from twisted.logger import Logger

# Re-exported: the table vocabulary, parser and loader, defined in ecs.fsm.table.
from ecs.fsm.table import (
    INPUTS,
    StateTable,
    TableError,
    _cache_key,
    load_table,
)

_log = Logger()


class InvalidTransition(Exception):
    """
    The table has no row for C{input} in C{state}; the machine did not move.

    @ivar state: the state the machine is in (and stays in).
    @ivar input: the input that was refused.
    @ivar allowed: the inputs the table accepts in C{state}.
    """

    def __init__(
        self, state: str, input: str, allowed: list[str], table: str | None = None
    ) -> None:
        self.state = state
        self.input = input
        self.allowed = list(allowed)
        self.table = table
        where = f"{table}: " if table else ""
        if input not in INPUTS:
            why = f"unknown input {input!r} (inputs: {', '.join(INPUTS)})"
        else:
            why = f"input {input!r} is not possible in state {state!r}"
        accepted = ", ".join(self.allowed) if self.allowed else "none"
        super().__init__(f"{where}{why}; inputs allowed in {state!r}: {accepted}")


# --- running -----------------------------------------------------------------


@attrs.define
class _Core:
    """The data behind a running machine: its current state name."""

    state: str


@attrs.frozen
class _Built:
    """A built Automat factory and its typed states by name."""

    factory: Any
    states: dict[str, Any]


_FACTORIES: dict[tuple[object, ...], _Built] = {}


def _input_method(name: str) -> Callable[[object], None]:
    def method(self: object) -> None:
        """Feed this input to the machine."""

    method.__name__ = method.__qualname__ = name
    return method


def _enter(target: str) -> Callable[[object, _Core], None]:
    def enter(inputs: object, core: _Core) -> None:
        core.state = target

    enter.__name__ = enter.__qualname__ = f"enter_{target}"
    return enter


def _built(table: StateTable) -> _Built:
    """Build (once per table contents) the Automat machine for C{table}."""
    key = _cache_key(table)
    built = _FACTORIES.get(key)
    if built is not None:
        return built
    used = [i for i in INPUTS if any(i == inp for _, inp in table.rows)]
    methods = {name: _input_method(name) for name in used}
    inputs = types.new_class(
        f"Inputs_{table.name}", (Protocol,), exec_body=lambda ns: ns.update(methods)
    )
    builder = TypeMachineBuilder(inputs, _Core)
    # Automat's first declared state is its initial state.
    order = [table.initial] + [s for s in table.states if s != table.initial]
    typed = {state: builder.state(state) for state in order}
    for (state, input), target in table.rows.items():
        typed[state].upon(getattr(inputs, input)).to(typed[target])(_enter(target))
    built = _FACTORIES[key] = _Built(factory=builder.build(), states=typed)
    _log.debug("built state machine for table {table}", table=table.name)
    return built


def machine_factory(table: StateTable) -> Any:
    """The Automat factory for C{table}, built on first use and then cached."""
    return _built(table).factory


Observer = Callable[[str, str, str], object]


class Machine:
    """
    A running state machine for one L{StateTable}.

    Inputs are fed with L{fire}.  Observers see every transition as
    C{(old, input, new)}.  They are told synchronously, so they must not fire
    the machine themselves: hand further inputs to an eventual queue instead.
    """

    _log = Logger()

    def __init__(self, table: StateTable, state: str | None = None) -> None:
        """Start a machine for C{table} in C{state} (default: the initial one)."""
        start = table.initial if state is None else state
        table.summary(start)  # ValueError naming the valid states if unknown
        built = _built(table)
        self._table = table
        self._core = _Core(start)
        if state is None:
            # Automat's own initial state: the table's initial one, declared first.
            self._inputs = built.factory(self._core)
        else:
            self._inputs = built.factory(self._core, built.states[start])
        self._observers: list[Observer] = []
        self._firing = False

    @property
    def table(self) -> StateTable:
        """The table this machine runs."""
        return self._table

    @property
    def state(self) -> str:
        """The current state name."""
        return self._core.state

    @property
    def summary(self) -> str:
        """The summary state of the current state."""
        return self._table.summary(self._core.state)

    def allowed(self) -> list[str]:
        """The inputs the table accepts in the current state."""
        return self._table.inputs_from(self._core.state)

    def can(self, input: str) -> bool:
        """Whether C{input} is possible in the current state."""
        return self._table.next_state(self._core.state, input) is not None

    def fire(self, input: str) -> str:
        """
        Feed C{input} and return the new state.

        @raise InvalidTransition: if the table has no such row; the machine
            stays in its state.
        @raise RuntimeError: if called from inside an observer.
        """
        if self._firing:
            raise RuntimeError(
                f"{self._table.name}: fire({input!r}) called from an observer while "
                f"handling another input; queue it for later instead"
            )
        old = self._core.state
        if not self.can(input):
            raise InvalidTransition(old, input, self.allowed(), self._table.name)
        self._firing = True
        try:
            getattr(self._inputs, input)()
            new = self._core.state
            self._log.debug(
                "{table}: {old} -{input}-> {new}",
                table=self._table.name, old=old, input=input, new=new,
            )
            for observer in list(self._observers):
                try:
                    observer(old, input, new)
                except Exception:
                    self._log.failure(
                        "{table}: observer {observer!r} failed on {old} -{input}-> {new}",
                        table=self._table.name, observer=observer,
                        old=old, input=input, new=new,
                    )
        finally:
            self._firing = False
        return new

    def observe(self, callback: Observer) -> Callable[[], None]:
        """Call C{callback(old, input, new)} after each transition; returns an unsubscriber."""
        self._observers.append(callback)

        def unsubscribe() -> None:
            if callback in self._observers:
                self._observers.remove(callback)

        return unsubscribe


# --- drawing and command-line helpers -----------------------------------------

# summary state -> (fill, border, fill when current)
_COLOURS = {
    "Unconfigured": ("#f8d7d7", "#b71c1c", "#e57373"),
    "Error": ("#f8d7d7", "#b71c1c", "#e57373"),
    "Configuring": ("#fff4c2", "#b28704", "#ffd54f"),
    "Active": ("#d9f2d9", "#1b5e20", "#66bb6a"),
    "Recording": ("#d9f2d9", "#1b5e20", "#66bb6a"),
}


def _quote(text: str) -> str:
    """A DOT double-quoted id."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(table: StateTable, current: str | None = None) -> str:
    """
    Draw C{table} as Graphviz DOT text.

    States are coloured by summary state (red Unconfigured/Error, yellow
    Configuring, green Active/Recording).  An arrow from a point marks the
    initial state, and C{current}, if given, is drawn bold and filled darker.
    """
    if current is not None:
        table.summary(current)
    start = "__start__"
    while start in table.states:
        start += "_"
    out = [
        f"digraph {_quote(table.name)} {{",
        f"  graph [rankdir=LR, label={_quote(table.name)}, labelloc=t];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
        f'  {_quote(start)} [shape=point, width=0.15, label="", tooltip="initial state"];',
        f"  {_quote(start)} -> {_quote(table.initial)};",
    ]
    for state, summary in table.states.items():
        fill, border, strong = _COLOURS[summary]
        notes = [summary]
        attrs_ = [f'color="{border}"']
        if state == table.initial:
            notes.append("initial")
        if state == current:
            notes.append("current")
            attrs_ += [f'fillcolor="{strong}"', 'style="rounded,filled,bold"', "penwidth=3"]
        else:
            attrs_.append(f'fillcolor="{fill}"')
        attrs_.append(f"tooltip={_quote(', '.join(notes))}")
        out.append(f"  {_quote(state)} [{', '.join(attrs_)}];")
    for (state, input), target in table.rows.items():
        out.append(f"  {_quote(state)} -> {_quote(target)} [label={_quote(input)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def check_files(paths: list[str]) -> tuple[int, list[str]]:
    """
    Check state table files for C{ecs fsm check}.

    @return: the exit code (0 if every file is good, else 1) and the lines to
        print: C{OK path (N states, M rows)} or the problems found.
    """
    if not paths:
        return 1, ["no state table files given"]
    code = 0
    lines: list[str] = []
    for path in paths:
        if _is_sequence(path):
            sequence_code, sequence_lines = _check_sequence(path)
            code = max(code, sequence_code)
            lines.extend(sequence_lines)
            continue
        try:
            table = load_table(path)
        except TableError as exc:
            code = 1
            lines.extend(exc.problems)
        else:
            lines.append(f"OK {path} ({len(table.states)} states, {len(table.rows)} rows)")
    return code, lines


def _is_sequence(path: str) -> bool:
    """Whether C{path} is a partition sequence (it has C{stages}), not a state table."""
    try:
        with open(path, encoding="utf-8") as f:
            return any(line.startswith("stages:") for line in f)
    except (OSError, UnicodeDecodeError):
        return False


def _check_sequence(path: str) -> tuple[int, list[str]]:
    """Check a partition sequence against the installed global systems."""
    from ecs.config.settings import ConfigError, load_subsystems
    from ecs.fsm.sequence import load_sequence

    try:
        globals_ = load_subsystems().global_systems
        sequence = load_sequence(path, globals_)
    except ConfigError as exc:
        return 1, [str(line) for line in exc.problems]
    return 0, [f"OK {path} (partition sequence: {len(sequence.stages)} stages, "
               f"{len(sequence.states())} states)"]


def dot_file(path: str, state: str | None) -> str:
    """
    The DOT text for C{ecs fsm dot path [--state S]}.

    @raise TableError: if the table is bad or C{state} is not one of its states.
    """
    table = load_table(path)
    if state is not None and state not in table.states:
        raise TableError(
            [f"{path}: unknown state {state!r} for --state (states: {', '.join(table.states)})"]
        )
    return to_dot(table, state)
