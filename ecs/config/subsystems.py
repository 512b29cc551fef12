# -*- test-case-name: tests.test_config -*-
"""
The detector types and global systems (C{etc/subsystems.yaml}): for each,
its state table, what it runs for a configuration step (L{ActionSpec}) and
its command timeout.  L{load_subsystems} checks the file against
L{SUBSYSTEMS_SCHEMA}, finds every FSM table (beside the file, then in the
shipped C{fsm/} folder) and names every problem in one L{ConfigError}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from ecs import paths
from ecs.config.yamlfile import NAME, default_path, load_yaml
from ecs.schema import (
    Anything,
    ConfigError,
    Field,
    Int,
    KeyPath,
    ListOf,
    MappingOf,
    Number,
    Problems,
    Record,
    Str,
    Tagged,
    format_path,
    validate,
)

ACTION_SCHEMA = Tagged(
    "kind",
    {
        "simulated": Record(
            {
                "duration": Field(Number(ge=0), default=1.0),
                "failure_probability": Field(Number(ge=0, le=1), default=0.0),
                "seed": Field(Int(), default=0),
            }
        ),
        "script": Record(
            {
                "path": Field(Str()),
                "args": Field(ListOf(Str(allow_empty=True)), default=[]),
                "timeout": Field(Number(gt=0), default=30.0),
            }
        ),
        "python": Record(
            {
                "class": Field(
                    Str(
                        pattern=r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+",
                        description="a dotted Python path like pkg.module.Class",
                    )
                ),
                "options": Field(MappingOf(Anything()), default={}),
            }
        ),
    },
)
"""The schema of a subsystem's C{action}, by C{kind}."""

_SYSTEM = Record(
    {
        "fsm": Field(Str()),
        "action": Field(ACTION_SCHEMA),
        "command_timeout": Field(Number(gt=0), default=5.0),
    }
)

SUBSYSTEMS_SCHEMA = Record(
    {
        "detector_types": Field(MappingOf(_SYSTEM, keys=NAME)),
        "global_systems": Field(MappingOf(_SYSTEM, keys=NAME)),
    }
)
"""The schema of C{etc/subsystems.yaml}."""


@attrs.frozen
class ActionSpec:
    """
    What a subsystem runs for each configuration step.

    C{params} holds the checked keys of its kind with defaults filled in
    (C{kind} itself removed).  For C{script}, C{params["path"]} is an
    absolute path (a string).
    """

    kind: str
    params: dict[str, Any]


@attrs.frozen
class SystemType:
    """A detector type or a global system: its state table, action and timeout."""

    name: str
    fsm_path: Path
    action: ActionSpec
    command_timeout: float
    is_global: bool


class UnknownSystemError(KeyError):
    """L{Subsystems.get} was asked for a name it does not know."""

    def __str__(self) -> str:
        return str(self.args[0])


@attrs.frozen
class Subsystems:
    """The detector types and global systems, as loaded by L{load_subsystems}."""

    detector_types: dict[str, SystemType]
    global_systems: dict[str, SystemType]
    source: str

    def adopt(self, other: Subsystems) -> None:
        """
        Take C{other}'s types in place (C{ecs reload}): every holder of this
        object sees the new types at its next look-up.  Only the two
        mappings change (C{source} is the file both were read from).
        """
        for mine, theirs in ((self.detector_types, other.detector_types), (self.global_systems, other.global_systems)):
            mine.clear()
            mine.update(theirs)

    def get(self, name: str) -> SystemType:
        """
        The detector type or global system called C{name}.

        @raise UnknownSystemError: (a C{KeyError}) naming the known names.
        """
        for table in (self.detector_types, self.global_systems):
            if name in table:
                return table[name]
        raise UnknownSystemError(
            f"unknown subsystem {name!r} in {self.source} "
            f"(detector types: {', '.join(self.detector_types) or 'none'}; "
            f"global systems: {', '.join(self.global_systems) or 'none'})"
        )


def _find_fsm(
    name: str, here: Path, shipped: Path | str, where: KeyPath, problems: Problems
) -> Path | None:
    """
    Find an FSM table: beside the subsystems file first, then in C{shipped}.

    C{shipped} is the shipped C{fsm/} folder, or why it is unavailable.
    """
    wanted = Path(name).expanduser()
    candidates = [here / wanted]
    if not wanted.is_absolute() and isinstance(shipped, Path):
        candidates.append(shipped / wanted)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = " and ".join(str(c) for c in candidates)
    if not wanted.is_absolute() and isinstance(shipped, str):
        looked += f"; the shipped fsm folder is unavailable: {shipped}"
    problems.add(where, f"FSM file {name!r} not found (looked in {looked})")
    return None


def _action(values: dict[str, Any], here: Path) -> ActionSpec:
    """Build an L{ActionSpec}, resolving a script path against C{here}."""
    params = {key: value for key, value in values.items() if key != "kind"}
    if values["kind"] == "script":
        params["path"] = str((here / Path(params["path"]).expanduser()).resolve())
    return ActionSpec(kind=values["kind"], params=params)


def load_subsystems(path: str | Path | None = None, *, fsm_dir: str | Path | None = None) -> Subsystems:
    """
    Load the detector types and global systems.

    @param path: the subsystems file; by default the shipped
        C{etc/subsystems.yaml}.
    @param fsm_dir: where shipped FSM tables are looked for when not found
        beside the subsystems file; by default C{ecs.paths.data_dir("fsm")}.
    @raise ConfigError: naming every problem: schema errors, FSM files that
        do not exist, names used both as detector type and global system.

    Script paths are resolved against the subsystems file's folder but not
    required to exist: the script may live only on the host that runs it.
    """
    if path is None:
        path = default_path(paths.default_subsystems_path)
    source = str(path)
    data = load_yaml(path)
    if data is None:
        raise ConfigError(f"{source}: file is empty (expected keys detector_types and global_systems)")
    values = validate(data, SUBSYSTEMS_SCHEMA, source)
    here = Path(path).expanduser().resolve().parent
    shipped: Path | str
    if fsm_dir is not None:
        shipped = Path(fsm_dir)
    else:
        try:
            shipped = paths.data_dir("fsm")
        except FileNotFoundError as e:
            shipped = str(e)
    problems = Problems()
    tables: dict[str, dict[str, SystemType]] = {}
    for group, is_global in (("detector_types", False), ("global_systems", True)):
        tables[group] = {}
        for name, spec in values[group].items():
            fsm_path = _find_fsm(spec["fsm"], here, shipped, (group, name, "fsm"), problems)
            if fsm_path is None:
                continue
            tables[group][name] = SystemType(
                name=name,
                fsm_path=fsm_path,
                action=_action(spec["action"], here),
                command_timeout=spec["command_timeout"],
                is_global=is_global,
            )
    for name in values["global_systems"]:
        if name in values["detector_types"]:
            problems.add(
                ("global_systems", name),
                f"{name!r} is also a detector type ({format_path(('detector_types', name))}); "
                "a name must be either a detector type or a global system, not both",
            )
    if problems:
        raise ConfigError(problems.lines(source))
    return Subsystems(
        detector_types=tables["detector_types"],
        global_systems=tables["global_systems"],
        source=source,
    )
