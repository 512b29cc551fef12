# -*- test-case-name: tests.test_fsm -*-
"""
Reading YAML node trees for the state-table loader (L{ecs.fsm.table}).

The loader works on C{yaml.compose} nodes, not on loaded values, so that
every problem can name its line.  These helpers say what a node is, render
it short for messages, collect problems per line and suggest close names.
"""

from __future__ import annotations

import difflib

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

STR_TAG = "tag:yaml.org,2002:str"


class TableError(ValueError):
    """
    A state table was rejected.

    @ivar problems: every problem found, each naming the file and, where
        there is one, the line.  C{str()} puts one problem on each line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def line(node: Node) -> int:
    """The 1-based line a YAML node starts on."""
    return node.start_mark.line + 1


def is_str(node: Node | None) -> bool:
    """Whether C{node} is a non-empty YAML string (a name)."""
    return isinstance(node, ScalarNode) and node.tag == STR_TAG and node.value != ""


def render(node: Node) -> str:
    """A short flow-style rendering of a node, for messages."""
    if isinstance(node, SequenceNode):
        return "[" + ", ".join(render(n) for n in node.value) + "]"
    if isinstance(node, MappingNode):
        return "{" + ", ".join(f"{render(k)}: {render(v)}" for k, v in node.value) + "}"
    return str(node.value)


def describe(node: Node | None) -> str:
    """What a node is, for "expected X, got Y" messages."""
    if node is None:
        return "nothing"
    if isinstance(node, SequenceNode):
        return f"a list of {len(node.value)} ({render(node)})"
    if isinstance(node, MappingNode):
        return f"a mapping ({render(node)})"
    if node.tag == STR_TAG:
        return f"the string {node.value!r}" if node.value else "an empty string"
    if node.value in ("", "~", "null", "Null", "NULL"):
        return "nothing (null)"
    return f"{node.tag.rsplit(':', 1)[-1]} {node.value!r} (quote it to make it a name)"


class Problems:
    """Collects problems as (line, message); formats them with the source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        """Note C{message} at C{line}."""
        self.items.append((line, message))

    def error(self) -> TableError:
        """One L{TableError} with every problem, in line order."""
        ordered = sorted(self.items, key=lambda item: item[0])
        return TableError([f"{self.source} line {ln}: {msg}" for ln, msg in ordered])


def mapping(node: MappingNode, noun: str, problems: Problems) -> dict[str, tuple[Node, Node]]:
    """The string keys of a mapping node; duplicates and odd keys are reported."""
    result: dict[str, tuple[Node, Node]] = {}
    for key, value in node.value:
        if not is_str(key):
            problems.add(line(key), f"expected a {noun} name, got {describe(key)}")
        elif key.value in result:
            first = line(result[key.value][0])
            problems.add(
                line(key),
                f"{noun} {key.value!r} declared twice (lines {first} and {line(key)})",
            )
        else:
            result[key.value] = (key, value)
    return result


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


