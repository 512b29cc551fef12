# -*- test-case-name: tests.test_fsm -*-
"""
Declarative state machines: YAML state tables run as Automat machines.

A state table (``fsm/*.yaml``) gives only the topology of a machine.  It
declares the states, each with its summary state, the initial state, and rows
of ``[state, input, next state]``.  The vocabulary is fixed here in code:
L{SUMMARY_STATES} and L{INPUTS}.  What each input does is code in the
controllers.

L{parse_table} and L{load_table} check a table and return a L{StateTable}.
When a table is bad they raise one L{TableError} that lists every problem,
each with the file and the line.  L{Machine} runs a table on an Automat
machine built at run time with C{TypeMachineBuilder}; the built factory is
cached per table.  L{to_dot} draws a table as Graphviz DOT text.
L{check_files} and L{dot_file} back the C{ecs fsm check} and C{ecs fsm dot}
commands.
"""

from __future__ import annotations

import difflib
import os
import types
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs
import yaml
from automat import TypeMachineBuilder
from twisted.logger import Logger
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

SUMMARY_STATES = ("Unconfigured", "Configuring", "Active", "Recording", "Error")
INPUTS = ("configure", "success", "abort", "error", "resolved", "reset", "start", "stop")
TOP_LEVEL_KEYS = ("name", "description", "initial", "states", "transitions")
REQUIRED_KEYS = ("name", "initial", "states", "transitions")

_STR_TAG = "tag:yaml.org,2002:str"
_log = Logger()


class TableError(ValueError):
    """
    A state table was rejected.

    @ivar problems: every problem found, each naming the file and, where
        there is one, the line.  C{str()} puts one problem on each line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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


def _copy(mapping: Mapping[Any, str]) -> dict[Any, str]:
    """A private copy of a mapping, so a table cannot be changed from outside."""
    return dict(mapping)


@attrs.frozen(hash=False)
class StateTable:
    """
    A checked state table.

    @ivar name: the table's name (its C{name} key).
    @ivar source: where it came from (a path), as used in messages.
    @ivar initial: the state a new machine starts in.
    @ivar states: state name -> summary state, in declaration order.
    @ivar rows: C{(state, input)} -> next state, in file order.
    """

    name: str
    source: str
    initial: str
    states: dict[str, str] = attrs.field(converter=_copy)
    rows: dict[tuple[str, str], str] = attrs.field(converter=_copy)

    def __attrs_post_init__(self) -> None:
        """Refuse a table whose initial state or rows name undeclared states."""
        named = {self.initial} | {s for s, _ in self.rows} | set(self.rows.values())
        missing = sorted(named - set(self.states))
        if missing:
            raise ValueError(f"{self.source}: undeclared states {missing}")

    def __hash__(self) -> int:
        """Hash by contents, consistent with the generated equality."""
        return hash((self.source, _cache_key(self)))

    def next_state(self, state: str, input: str) -> str | None:
        """The state that C{input} leads to from C{state}, or C{None} if none."""
        return self.rows.get((state, input))

    def inputs_from(self, state: str) -> list[str]:
        """The inputs accepted in C{state}, in table order."""
        self._check_state(state)
        return [i for (s, i) in self.rows if s == state]

    def summary(self, state: str) -> str:
        """The summary state (one of L{SUMMARY_STATES}) of C{state}."""
        self._check_state(state)
        return self.states[state]

    def is_configuring(self, state: str) -> bool:
        """Whether C{state} is one of the table's configuring states."""
        return self.summary(state) == "Configuring"

    def _check_state(self, state: str) -> None:
        if state not in self.states:
            raise ValueError(
                f"unknown state {state!r} in table {self.name!r} "
                f"(states: {', '.join(self.states)})"
            )


# --- parsing -----------------------------------------------------------------


def _line(node: Node) -> int:
    """The 1-based line a YAML node starts on."""
    return node.start_mark.line + 1


def _is_str(node: Node | None) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _STR_TAG and node.value != ""


def _render(node: Node) -> str:
    """A short flow-style rendering of a node, for messages."""
    if isinstance(node, SequenceNode):
        return "[" + ", ".join(_render(n) for n in node.value) + "]"
    if isinstance(node, MappingNode):
        return "{" + ", ".join(f"{_render(k)}: {_render(v)}" for k, v in node.value) + "}"
    return str(node.value)


def _describe(node: Node | None) -> str:
    """What a node is, for "expected X, got Y" messages."""
    if node is None:
        return "nothing"
    if isinstance(node, SequenceNode):
        return f"a list of {len(node.value)} ({_render(node)})"
    if isinstance(node, MappingNode):
        return f"a mapping ({_render(node)})"
    if node.tag == _STR_TAG:
        return f"the string {node.value!r}" if node.value else "an empty string"
    if node.value in ("", "~", "null", "Null", "NULL"):
        return "nothing (null)"
    return f"{node.tag.rsplit(':', 1)[-1]} {node.value!r} (quote it to make it a name)"


class _Problems:
    """Collects problems as (line, message); formats them with the source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self.items.append((line, message))

    def error(self) -> TableError:
        ordered = sorted(self.items, key=lambda item: item[0])
        return TableError([f"{self.source} line {ln}: {msg}" for ln, msg in ordered])


def _mapping(node: MappingNode, noun: str, problems: _Problems) -> dict[str, tuple[Node, Node]]:
    """The string keys of a mapping node; duplicates and odd keys are reported."""
    result: dict[str, tuple[Node, Node]] = {}
    for key, value in node.value:
        if not _is_str(key):
            problems.add(_line(key), f"expected a {noun} name, got {_describe(key)}")
        elif key.value in result:
            first = _line(result[key.value][0])
            problems.add(
                _line(key),
                f"{noun} {key.value!r} declared twice (lines {first} and {_line(key)})",
            )
        else:
            result[key.value] = (key, value)
    return result


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_table(text: str, source: str) -> StateTable:
    """
    Check the YAML state table C{text} and return it as a L{StateTable}.

    @param source: the file name used in messages.
    @raise TableError: listing every problem found, each with its line.
    """
    problems = _Problems(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        column = f" at column {mark.column + 1}" if mark is not None else ""
        detail = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise TableError(
            [f"{source} line {line}: YAML syntax error{column}: {detail}"]
        ) from exc
    except yaml.YAMLError as exc:
        raise TableError([f"{source} line 1: YAML error: {exc}"]) from exc
    expected = "a mapping with keys " + ", ".join(REQUIRED_KEYS)
    if root is None:
        raise TableError([f"{source} line 1: the file is empty; expected {expected}"])
    if not isinstance(root, MappingNode):
        got = _describe(root)
        raise TableError([f"{source} line {_line(root)}: expected {expected}, got {got}"])

    top = _mapping(root, "key", problems)
    for key, (key_node, _) in top.items():
        if key not in TOP_LEVEL_KEYS:
            problems.add(
                _line(key_node),
                f"unknown key {key!r}{_suggest(key, TOP_LEVEL_KEYS)} "
                f"(allowed: {', '.join(TOP_LEVEL_KEYS)})",
            )
    for key in REQUIRED_KEYS:
        if key not in top:
            problems.add(_line(root), f"missing key {key!r} (required: {', '.join(REQUIRED_KEYS)})")

    name = Path(source).stem
    if "name" in top:
        node = top["name"][1]
        if _is_str(node):
            name = node.value
        else:
            problems.add(_line(node), f"'name' must be a string, got {_describe(node)}")
    if "description" in top and not isinstance(top["description"][1], ScalarNode):
        node = top["description"][1]
        problems.add(_line(node), f"'description' must be text, got {_describe(node)}")

    states, state_lines = _parse_states(top.get("states"), problems)
    initial = _parse_initial(top.get("initial"), states, problems)
    rows = _parse_rows(top.get("transitions"), states, problems)

    if initial is not None:
        reached = _reachable(initial, rows)
        for state, line in state_lines.items():
            if state not in reached:
                problems.add(
                    line,
                    f"state {state!r} is not reachable from the initial state "
                    f"{initial!r} (no chain of rows leads to it)",
                )
    if problems.items or initial is None:
        raise problems.error()
    return StateTable(name=name, source=source, initial=initial, states=states, rows=rows)


def _parse_states(
    entry: tuple[Node, Node] | None, problems: _Problems
) -> tuple[dict[str, str], dict[str, int]]:
    """The C{states} mapping: (state -> summary, state -> line)."""
    states: dict[str, str] = {}
    lines: dict[str, int] = {}
    if entry is None:
        return states, lines
    key, node = entry
    if not isinstance(node, MappingNode):
        problems.add(
            _line(node) if node.value else _line(key),
            f"'states' must map state names to summary states, got {_describe(node)}",
        )
        return states, lines
    if not node.value:
        problems.add(_line(key), "'states' is empty: declare at least the initial state")
    for state, (state_key, value) in _mapping(node, "state", problems).items():
        lines[state] = _line(state_key)
        choices = ", ".join(SUMMARY_STATES)
        if not _is_str(value):
            problems.add(
                _line(value),
                f"state {state!r}: expected a summary state ({choices}), got {_describe(value)}",
            )
            states[state] = "Error"  # placeholder so rows naming it are not reported too
        elif value.value not in SUMMARY_STATES:
            problems.add(
                _line(value),
                f"state {state!r}: unknown summary state {value.value!r}"
                f"{_suggest(value.value, SUMMARY_STATES)} (expected one of: {choices})",
            )
            states[state] = "Error"
        else:
            states[state] = value.value
    return states, lines


def _parse_initial(
    entry: tuple[Node, Node] | None, states: dict[str, str], problems: _Problems
) -> str | None:
    """The C{initial} state name, or C{None} if it is missing or wrong."""
    if entry is None:
        return None
    key, node = entry
    if isinstance(node, SequenceNode):
        problems.add(
            _line(node),
            f"'initial' must name one state, got {_describe(node)}: "
            "a table has exactly one initial state",
        )
        return None
    if not _is_str(node):
        problems.add(_line(key), f"'initial' must be a state name, got {_describe(node)}")
        return None
    if states and node.value not in states:
        problems.add(
            _line(node),
            f"initial state {node.value!r} is not declared under 'states'"
            f"{_suggest(node.value, list(states))} (declared states: {', '.join(states)})",
        )
        return None
    return node.value if states else None


def _parse_rows(
    entry: tuple[Node, Node] | None, states: dict[str, str], problems: _Problems
) -> dict[tuple[str, str], str]:
    """The C{transitions} rows, as (state, input) -> next state."""
    rows: dict[tuple[str, str], str] = {}
    if entry is None:
        return rows
    key, node = entry
    if not isinstance(node, SequenceNode):
        problems.add(
            _line(key),
            "'transitions' must be a list of [state, input, next state] rows, "
            f"got {_describe(node)}",
        )
        return rows
    first_line: dict[tuple[str, str], int] = {}
    declared = ", ".join(states)
    for row in node.value:
        line = _line(row)
        shown = f"row {_render(row)}"
        if not isinstance(row, SequenceNode) or len(row.value) != 3:
            got = (
                f"{len(row.value)} items" if isinstance(row, SequenceNode) else _describe(row)
            )
            problems.add(line, f"{shown}: expected [state, input, next state], got {got}")
            continue
        bad = [(n, item) for n, item in enumerate(row.value, 1) if not _is_str(item)]
        for n, item in bad:
            problems.add(line, f"{shown}: item {n} must be a name, got {_describe(item)}")
        if bad:
            continue
        state, input, target = (item.value for item in row.value)
        ok = True
        for name in (state, target):
            if name not in states:
                ok = False
                problems.add(
                    line,
                    f"{shown}: unknown state {name!r}{_suggest(name, list(states))} "
                    f"(declared states: {declared})",
                )
        if input not in INPUTS:
            ok = False
            problems.add(
                line,
                f"{shown}: unknown input {input!r}{_suggest(input, INPUTS)} "
                f"(inputs: {', '.join(INPUTS)})",
            )
        if (state, input) in first_line:
            problems.add(
                line,
                f"{shown}: duplicate row for state {state!r} and input {input!r} "
                f"(lines {first_line[state, input]} and {line})",
            )
            continue
        first_line[state, input] = line
        if ok:
            rows[state, input] = target
    return rows


def _reachable(initial: str, rows: dict[tuple[str, str], str]) -> set[str]:
    """Every state reachable from C{initial} through C{rows}."""
    edges: dict[str, list[str]] = {}
    for (state, _), target in rows.items():
        edges.setdefault(state, []).append(target)
    seen = {initial}
    todo = deque([initial])
    while todo:
        for target in edges.get(todo.popleft(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


_TABLE_CACHE: dict[tuple[str, str], tuple[tuple[int, int], StateTable]] = {}


def load_table(path: str | os.PathLike[str]) -> StateTable:
    """
    Load and check the state table at C{path}.

    The result is cached per file until the file's modification time or size
    changes.

    @raise TableError: if the file cannot be read or the table is bad.
    """
    source = os.fspath(path)
    file = Path(source)
    try:
        info = file.stat()
        key = (str(file.resolve()), source)
        stamp = (info.st_mtime_ns, info.st_size)
        cached = _TABLE_CACHE.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise TableError([f"{source}: cannot read the state table: {why}"]) from exc
    except UnicodeDecodeError as exc:
        why = f"{exc.reason} at byte {exc.start}"
        raise TableError([f"{source}: not UTF-8 text ({why})"]) from exc
    table = parse_table(text, source)
    _TABLE_CACHE[key] = (stamp, table)
    return table


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


def _cache_key(table: StateTable) -> tuple[object, ...]:
    return (table.name, table.initial, tuple(table.states.items()), tuple(table.rows.items()))


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
        try:
            table = load_table(path)
        except TableError as exc:
            code = 1
            lines.extend(exc.problems)
        else:
            lines.append(f"OK {path} ({len(table.states)} states, {len(table.rows)} rows)")
    return code, lines


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
