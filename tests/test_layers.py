"""
The import graph of C{ecs/} and C{agents/}: no cycles, and each layer
imports only the layers below it (docs/architecture.md, "Where each concern
lives").  Every C{import} statement counts, also those inside functions and
under C{TYPE_CHECKING}: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ecs", "agents")

#: (module prefix, layer).  The longest matching prefix decides.
LAYERS: dict[str, int] = {
    "ecs": 0,
    "ecs.protocol": 0,
    "ecs.schema": 0,
    "ecs.paths": 0,
    "ecs.textview": 0,
    "ecs.config": 1,
    "ecs.fsm": 1,
    "ecs.users": 2,
    "ecs.net": 2,
    "ecs.store": 2,
    "ecs.launch": 2,
    "ecs.control": 2,
    "ecs.web": 3,
    "ecs.gui": 3,
    "ecs.shell": 3,
    "ecs.client": 3,
    "ecs.cli": 3,
    "agents": 4,
    "agents._tap": 4,
    "agents._lifecycle": 4,
    "agents._heap": 4,
    "agents.eca": 4,
    "agents.pca": 4,
    "agents.controller": 4,
    "agents.demo": 5,
    "agents.walkthrough": 5,
}

#: Imports allowed although they go sideways within one layer.
ALLOWED_SIDEWAYS = {
    # state tables and the sequence are read with the settings' YAML loader
    # and name checks (never the other way round)
    ("ecs.fsm", "ecs.config"),
    # the GUI uses the API's authorisation decorators and input checks
    ("ecs.gui", "ecs.web"),
    # the `ecs` command dispatches to the API client's commands
    ("ecs.cli", "ecs.client"),
    # the shell offers the command line's commands from their one table
    # (ecs.client.commands, table, following: no HTTP)
    ("ecs.shell", "ecs.client"),
    # a placement is checked against the launchers' vocabulary (kinds, names)
    ("ecs.store", "ecs.launch"),
    # user administration (first admin, password changes) writes the store
    ("ecs.users", "ecs.store"),
}

#: The three agent subpackages talk over the network, never by import.
AGENT_KINDS = ("agents.eca", "agents.pca", "agents.controller")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules C{path} imports (C{from a import b} counts b when b is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from a import b": the module a.b when b is one, else the module a
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            ]
        for name in names:
            # the longest known module that is a prefix of the name
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {}
    for name, path in mods.items():
        targets = imports_of(path, known)
        targets.discard(name)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def prefix_of(name: str, table: dict[str, int] | tuple[str, ...]) -> str:
    best = ""
    for prefix in table:
        if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return best


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in sorted(edges.items()):
        s_prefix = prefix_of(source, LAYERS)
        s_layer = LAYERS[s_prefix]
        for target in sorted(targets):
            t_prefix = prefix_of(target, LAYERS)
            t_layer = LAYERS[t_prefix]
            s_kind = prefix_of(source, AGENT_KINDS)
            t_kind = prefix_of(target, AGENT_KINDS)
            if s_kind and t_kind and s_kind != t_kind:
                found.append(f"{source} -> {target}: agents never import another agent's package")
            elif t_layer > s_layer:
                found.append(f"{source} (layer {s_layer}) -> {target} (layer {t_layer}): upward import")
            elif (
                t_layer == s_layer
                and s_layer < 4
                and s_prefix != t_prefix
                and s_prefix.split(".")[:2] != t_prefix.split(".")[:2]
                and (s_prefix, t_prefix) not in ALLOWED_SIDEWAYS
            ):
                found.append(f"{source} -> {target}: sideways import within layer {s_layer}")
    return found


class ImportGraphTests(SynchronousTestCase):
    def test_finds_modules(self) -> None:
        """The walk sees the packages (a broken walk would pass everything)."""
        edges = graph()
        self.assertIn("ecs.net.zeromq", edges)
        self.assertIn("ecs.protocol", edges["ecs.net.zeromq"])

    def test_no_cycles(self) -> None:
        """No group of modules imports itself, even through function-local imports."""
        self.assertEqual(cycles(graph()), [])

    def test_cycle_detector(self) -> None:
        """The detector finds a cycle and leaves a chain alone."""
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}}), [])

    def test_layers(self) -> None:
        """Each module imports only from layers below its own (and never another agent)."""
        self.assertEqual(layer_violations(graph()), [])

    def test_layer_checker(self) -> None:
        """The checker names an upward import and an agent importing another agent."""
        found = layer_violations({"ecs.protocol": {"ecs.web.api"}, "agents.eca.agent": {"agents.pca.partition"}})
        self.assertEqual(len(found), 2)
        self.assertIn("upward", found[1] + found[0])


#: A module longer than this says at the top of its docstring why it stays one module.
LONG_MODULE = 400


def long_modules_without_reason() -> list[str]:
    """Modules of ecs/ and agents/ over L{LONG_MODULE} lines whose docstring gives no reason."""
    found = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= LONG_MODULE:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        # The reason names the length ("about 410 lines", "over 400 lines", "longer than most").
        if not re.search(r"\blines\b|\blonger\b", doc, re.IGNORECASE):
            found.append(f"{name}: {text.count(chr(10))} lines and no reason in its docstring")
    return found


class ModuleSizeTests(SynchronousTestCase):
    def test_long_modules_say_why(self) -> None:
        """Every module over 400 lines says why it stays one module."""
        self.assertEqual(long_modules_without_reason(), [])
