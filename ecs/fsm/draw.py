# -*- test-case-name: tests.test_fsm -*-
"""
Drawing state tables and the C{ecs fsm} command helpers.

L{to_dot} draws a table as Graphviz DOT text, coloured by summary state,
with the current state lit.  L{check_files} and L{dot_file} back the
C{ecs fsm check} and C{ecs fsm dot} commands (also for the partition
sequence, which is checked against the installed global systems).
"""

from __future__ import annotations

from ecs.fsm.table import StateTable, TableError, load_table

# summary state -> (fill, border, fill when current)
_RED = ("#f8d7d7", "#b71c1c", "#e57373")
_YELLOW = ("#fff4c2", "#b28704", "#ffd54f")
_GREEN = ("#d9f2d9", "#1b5e20", "#66bb6a")
_GREY = ("#eeeeee", "#616161", "#bdbdbd")
_COLOURS = {
    "Unconfigured": _RED,
    "Error": _RED,
    "Configuring": _YELLOW,
    "Active": _GREEN,
    "Recording": _GREEN,
    # an agent's lifecycle (kind: agent)
    "stopped": _GREY,
    "starting": _YELLOW,
    "running": _GREEN,
    "restarting": _YELLOW,
    "flapping": _RED,
    "failed": _RED,
    "unknown": _GREY,
}


def _quote(text: str) -> str:
    """A DOT double-quoted id."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(table: StateTable, current: str | None = None) -> str:
    """
    Draw C{table} as Graphviz DOT text.

    States are coloured by summary state (red Unconfigured/Error, yellow
    Configuring, green Active/Recording; for an agent's lifecycle green
    running, yellow starting/restarting, red flapping/failed, grey
    stopped/unknown).  An arrow from a point marks the
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
        if _is_recovery(path):
            recovery_code, recovery_lines = _check_recovery(path)
            code = max(code, recovery_code)
            lines.extend(recovery_lines)
            continue
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


def _is_recovery(path: str) -> bool:
    """Whether C{path} is a recovery rules file (L{ecs.fsm.recovery}): it has C{defaults}, C{types} or C{systems}."""
    try:
        with open(path, encoding="utf-8") as f:
            return any(line.startswith(("defaults:", "types:", "systems:")) for line in f)
    except (OSError, UnicodeDecodeError):
        return False


def _check_recovery(path: str) -> tuple[int, list[str]]:
    """Check a recovery rules file."""
    from ecs.fsm.recovery import load_rules
    from ecs.schema import ConfigError

    try:
        rules = load_rules(path)
    except ConfigError as exc:
        return 1, [str(line) for line in exc.problems]
    return 0, [f"OK {path} (recovery rules: {len(rules.table())} rules)"]


def _check_sequence(path: str) -> tuple[int, list[str]]:
    """Check a partition sequence against the installed global systems."""
    from ecs.config.settings import load_subsystems
    from ecs.fsm.sequence import load_sequence
    from ecs.schema import ConfigError

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


__all__ = ["check_files", "dot_file", "to_dot"]
