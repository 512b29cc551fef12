# -*- test-case-name: tests.test_fsm -*-
"""
State tables: the YAML files that declare the topology of a state machine.

A state table (``fsm/*.yaml``) gives only the topology of a machine.  It
declares the states, each with its summary state, the initial state, and rows
of ``[state, input, next state]``.  The vocabulary is fixed here in code:
L{SUMMARY_STATES} and L{INPUTS} for a system's table, L{AGENT_STATES} and
L{AGENT_INPUTS} for a table with C{kind: agent} (the supervisor's agent
lifecycle).  What each input does is code: the outputs registered with
L{ecs.fsm.machine.Machine} or the agent machine's behaviours.

L{parse_table} and L{load_table} check a table and return a L{StateTable}.
When a table is bad they raise one L{TableError} that lists every problem,
each with the file and the line.  L{load_table} caches a table per file until
the file changes.  L{ecs.fsm.machine} runs tables and re-exports these names.

(About 400 lines, kept whole: one parser whose per-key checks share the
problem list and the line numbers; the vocabularies and the YAML-node
helpers are already in L{ecs.fsm.vocabulary} and L{ecs.fsm.nodes}.)
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ecs.fsm.nodes import Problems as _Problems
from ecs.fsm.nodes import TableError
from ecs.fsm.nodes import describe as _describe
from ecs.fsm.nodes import is_str as _is_str
from ecs.fsm.nodes import line as _line
from ecs.fsm.nodes import mapping as _mapping
from ecs.fsm.nodes import render as _render
from ecs.fsm.nodes import suggest as _suggest
from ecs.fsm.vocabulary import (
    AGENT_INPUTS,
    AGENT_STATES,
    INPUTS,
    SUMMARY_STATES,
    VOCABULARIES,
    Vocabulary,
)

TOP_LEVEL_KEYS = ("name", "description", "kind", "initial", "states", "transitions")


REQUIRED_KEYS = ("name", "initial", "states", "transitions")


def _copy(mapping: Mapping[Any, str]) -> dict[Any, str]:
    """A private copy of a mapping, so a table cannot be changed from outside."""
    return dict(mapping)


def _cache_key(table: StateTable) -> tuple[object, ...]:
    """A table's contents as a hashable key (its hash; the Automat factory cache)."""
    return (table.kind, table.name, table.initial, tuple(table.states.items()),
            tuple(table.rows.items()))


@attrs.frozen(hash=False)
class StateTable:
    """
    A checked state table.

    @ivar name: the table's name (its C{name} key).
    @ivar source: where it came from (a path), as used in messages.
    @ivar initial: the state a new machine starts in.
    @ivar states: state name -> summary state, in declaration order.
    @ivar rows: C{(state, input)} -> next state, in file order.
    @ivar kind: which L{Vocabulary} the table uses (C{system} or C{agent}).
    """

    name: str
    source: str
    initial: str
    states: dict[str, str] = attrs.field(converter=_copy)
    rows: dict[tuple[str, str], str] = attrs.field(converter=_copy)
    kind: str = attrs.field(default="system", validator=attrs.validators.in_(VOCABULARIES))

    @property
    def vocabulary(self) -> Vocabulary:
        """The summary states and inputs of this table's kind."""
        return VOCABULARIES[self.kind]

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

    vocabulary = _parse_kind(top.get("kind"), problems)
    states, state_lines = _parse_states(top.get("states"), vocabulary, problems)
    initial = _parse_initial(top.get("initial"), states, problems)
    rows = _parse_rows(top.get("transitions"), states, vocabulary, problems)

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
    return StateTable(name=name, source=source, initial=initial, states=states, rows=rows,
                      kind=vocabulary.kind)


def _parse_kind(entry: tuple[Node, Node] | None, problems: _Problems) -> Vocabulary:
    """The C{kind} key's vocabulary (a system table's when missing or wrong)."""
    if entry is None:
        return VOCABULARIES["system"]
    kinds = tuple(VOCABULARIES)
    node = entry[1]
    if not _is_str(node) or node.value not in VOCABULARIES:
        shown = repr(node.value) if _is_str(node) else _describe(node)
        hint = _suggest(node.value, kinds) if _is_str(node) else ""
        problems.add(_line(node), f"unknown kind {shown}{hint} (kinds: {', '.join(kinds)})")
        return VOCABULARIES["system"]
    return VOCABULARIES[node.value]


def _parse_states(
    entry: tuple[Node, Node] | None, vocabulary: Vocabulary, problems: _Problems
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
        summaries = vocabulary.summaries
        choices = ", ".join(summaries)
        placeholder = summaries[-1]  # so rows naming the state are not reported too
        if not _is_str(value):
            problems.add(
                _line(value),
                f"state {state!r}: expected a summary state ({choices}), got {_describe(value)}",
            )
            states[state] = placeholder
        elif value.value not in summaries:
            problems.add(
                _line(value),
                f"state {state!r}: unknown summary state {value.value!r}"
                f"{_suggest(value.value, summaries)} (expected one of: {choices})",
            )
            states[state] = placeholder
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
    entry: tuple[Node, Node] | None,
    states: dict[str, str],
    vocabulary: Vocabulary,
    problems: _Problems,
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
        inputs = vocabulary.inputs
        if input not in inputs:
            ok = False
            problems.add(
                line,
                f"{shown}: unknown input {input!r}{_suggest(input, inputs)} "
                f"(inputs: {', '.join(inputs)})",
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


__all__ = [
    "AGENT_INPUTS",
    "AGENT_STATES",
    "INPUTS",
    "SUMMARY_STATES",
    "VOCABULARIES",
    "StateTable",
    "TableError",
    "Vocabulary",
    "load_table",
    "parse_table",
]
