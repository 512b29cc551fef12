# -*- test-case-name: tests.test_gui_admin,tests.test_fsmview -*-
"""
What systems the ECA knows, for its interfaces (L{IControlCenter.systems}):
the detector types and global systems of C{subsystems.yaml}, each with the
name of its state table, every detector with its type and partition, and
the state tables themselves as plain JSON (the GUI draws them).

The partition sequence (C{fsm/partition.yaml}) is not a table of rows: its
machine is derived here, as the PCA runs it (L{sequence_table}): Idle, then
per stage C{configure} to its configuring state, C{success} to its active
state, C{error} to the state it falls to; C{abort} from every state back to
Idle; C{start}/C{stop} between the last active state and recording.

The agent lifecycle the ECA's supervisor runs (C{fsm/agent.yaml}) is one of
the tables too, under L{AGENT_TABLE}; each table's JSON says its C{kind}
(C{system} or C{agent}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecs import paths
from ecs.config.settings import Subsystems
from ecs.fsm.sequence import Sequence
from ecs.fsm.table import StateTable, load_table

#: The key of the partition machine in L{tables_json}.
PARTITION_TABLE = "partition"
#: The key of the agent lifecycle table in L{tables_json}.
AGENT_TABLE = "agent"

_SUMMARY = {"Idle": "Unconfigured", "Configuring": "Configuring", "Active": "Active", "Recording": "Recording"}


def sequence_table(sequence: Sequence) -> StateTable:
    """The partition machine of C{sequence} as a L{StateTable} (for drawing)."""
    states = {state: _SUMMARY[sequence.summary_of(state)] for state in sequence.states()}
    rows: dict[tuple[str, str], str] = {}
    before = sequence.idle
    for stage in sequence.stages:
        rows[(before, "configure")] = stage.configuring
        rows[(stage.configuring, "success")] = stage.active
        rows[(stage.configuring, "error")] = stage.falls_to
        before = stage.active
    if sequence.recording is not None:
        rows[(sequence.top_active, "start")] = sequence.recording.state
        rows[(sequence.recording.state, "stop")] = sequence.top_active
    for state in states:
        if state != sequence.idle:
            rows[(state, "abort")] = sequence.idle
    return StateTable(name=sequence.name, source=sequence.source, initial=sequence.idle, states=states, rows=rows)


def table_json(table: StateTable) -> dict[str, Any]:
    """A table as JSON: C{{name, kind, initial, states: {state: summary}, rows: [[state, input, next]]}}."""
    return {
        "name": table.name,
        "kind": table.kind,
        "initial": table.initial,
        "states": dict(table.states),
        "rows": [[state, input, target] for (state, input), target in table.rows.items()],
    }


def table_from_json(key: str, data: dict[str, Any]) -> StateTable:
    """The L{StateTable} of a L{table_json} answer (C{ValueError} if it is inconsistent)."""
    rows = {(str(s), str(i)): str(t) for s, i, t in data["rows"]}
    return StateTable(name=str(data["name"]), source=key, initial=str(data["initial"]),
                      states={str(k): str(v) for k, v in data["states"].items()}, rows=rows,
                      kind=str(data.get("kind", "system")))


def tables_json(subsystems: Subsystems, sequence: Sequence) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """
    Every state table (the partition machine under L{PARTITION_TABLE}, the
    agent lifecycle under L{AGENT_TABLE}, the others under their file's
    stem) and each system type's table key.
    """
    tables = {
        PARTITION_TABLE: table_json(sequence_table(sequence)),
        AGENT_TABLE: table_json(load_table(agent_table_path())),
    }
    table_of: dict[str, str] = {}
    for group in (subsystems.detector_types, subsystems.global_systems):
        for name, spec in group.items():
            key = Path(spec.fsm_path).stem
            if key in (PARTITION_TABLE, AGENT_TABLE):
                key += "-table"
            if key not in tables:
                tables[key] = table_json(load_table(str(spec.fsm_path)))
            table_of[name] = key
    return tables, table_of


def systems_view(subsystems: Subsystems, sequence: Sequence, detectors: list[dict[str, Any]],
                 tables: dict[str, dict[str, Any]], table_of: dict[str, str]) -> dict[str, Any]:
    """The answer of L{IControlCenter.systems} (see L{ecs.control})."""
    return {
        "detector_types": {name: {"table": table_of[name]} for name in subsystems.detector_types},
        "global_systems": {name: {"table": table_of[name]} for name in sequence.global_systems()
                           if name in table_of},
        "detectors": detectors,
        "partition_table": PARTITION_TABLE,
        "agent_table": AGENT_TABLE,
        "tables": tables,
    }


def agent_table_path() -> Path:
    """The shipped agent lifecycle table, C{fsm/agent.yaml}."""
    return paths.data_dir("fsm") / "agent.yaml"


__all__ = ["AGENT_TABLE", "PARTITION_TABLE", "agent_table_path", "sequence_table", "systems_view", "table_from_json",
           "table_json", "tables_json"]
