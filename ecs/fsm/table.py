# -*- test-case-name: tests.test_fsm -*-
"""
State tables: the YAML files that declare the topology of a state machine.

A state table (``fsm/*.yaml``) gives only the topology of a machine.  It
declares the states, each with its summary state, the initial state, and rows
of ``[state, input, next state]``.  The vocabulary is fixed here in code:
L{SUMMARY_STATES} and L{INPUTS}.  What each input does is code in the
controllers.

L{parse_table} and L{load_table} check a table and return a L{StateTable}.
When a table is bad they raise one L{TableError} that lists every problem,
each with the file and the line.  L{load_table} caches a table per file until
the file changes.  L{ecs.fsm.machine} runs tables and re-exports these names.
"""

from __future__ import annotations

import difflib
import os
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

SUMMARY_STATES = ("Unconfigured", "Configuring", "Active", "Recording", "Error")
INPUTS = ("configure", "success", "abort", "error", "resolved", "reset", "start", "stop")
TOP_LEVEL_KEYS = ("name", "description", "initial", "states", "transitions")
REQUIRED_KEYS = ("name", "initial", "states", "transitions")

_STR_TAG = "tag:yaml.org,2002:str"


class TableError(ValueError):
    """
    A state table was rejected.

    @ivar problems: every problem found, each naming the file and, where
        there is one, the line.  C{str()} puts one problem on each line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _copy(mapping: Mapping[Any, str]) -> dict[Any, str]:
    """A private copy of a mapping, so a table cannot be changed from outside."""
    return dict(mapping)


def _cache_key(table: StateTable) -> tuple[object, ...]:
    """A table's contents as a hashable key (its hash; the Automat factory cache)."""
    return (table.name, table.initial, tuple(table.states.items()), tuple(table.rows.items()))


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
