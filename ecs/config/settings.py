# -*- test-case-name: tests.test_config -*-
"""
Configuration: the agent-wide settings (C{etc/ecs.yaml}) and the subsystem
types (C{etc/subsystems.yaml}).

Both files are YAML, read with C{yaml.safe_load} only, and checked against a
schema before anything else looks at them.  Every problem becomes one line of a
L{ConfigError} that names the file, the key path and what was expected, for
example::

    etc/ecs.yaml: heartbeat.timeout: expected a number greater than
    heartbeat.interval (1.0), got 0.5

Agents load their configuration in C{makeService}, before binding anything,
and turn a L{ConfigError} into an exit with L{fail}.

The schemas are written with the generic helper in L{ecs.schema} (L{validate}
with L{Record}, L{Field}, L{MappingOf}, L{ListOf}, L{Tagged}, L{Str},
L{Int}, L{Number}, L{Bool}, L{OneOf}, L{Anything}); its names, and
L{ConfigError}, are re-exported here so existing imports keep working.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import attrs
import yaml

from ecs import paths

# Re-exported: defined in ecs.schema, still importable from ecs.config.settings.
from ecs.schema import (
    Anything,
    ConfigError,
    Field,
    Int,
    KeyPath,
    ListOf,
    MappingOf,
    Number,
    OneOf,
    Problems,
    Record,
    Str,
    Tagged,
    format_path,
    validate,
)


def fail(message: object) -> NoReturn:
    """
    Stop the program with C{message}, for C{makeService} and command lines.

    Raises C{SystemExit("ecs: <message>")}: Python (and so C{twistd}) prints
    the message on standard error and exits with status 1.
    """
    raise SystemExit(f"ecs: {message}")


def load_yaml(path: str | Path) -> object:
    """
    Read one YAML document with C{yaml.safe_load}.

    @return: the document (C{None} for an empty file).
    @raise ConfigError: when the file is missing, unreadable or not valid
        YAML; syntax errors name the line and column.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, expected a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{source}: cannot read file: {e.strerror or e}") from None
    try:
        return yaml.safe_load(raw)
    except yaml.reader.ReaderError as e:
        raise ConfigError(f"{source}: not UTF-8 text ({e.reason} at byte {e.position})") from None
    except yaml.MarkedYAMLError as e:
        raise ConfigError(f"{source}: {_describe_yaml_error(e)}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    """A YAML syntax error as "line L, column C: invalid YAML: problem"."""
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    message = f"{where}invalid YAML: {error.problem or error.context or 'syntax error'}"
    if error.context and error.problem and error.context_mark is not None:
        message += f" ({error.context} at line {error.context_mark.line + 1})"
    return message


# --------------------------------------------------------------------------
# Agent-wide settings: etc/ecs.yaml


def _check_heartbeat(values: dict[str, Any], path: KeyPath, problems: Problems) -> None:
    """The heartbeat timeout must exceed the interval, or every peer looks dead."""
    if values["timeout"] <= values["interval"]:
        problems.add(
            (*path, "timeout"),
            f"expected a number greater than {format_path((*path, 'interval'))} "
            f"({values['interval']!r}), got {values['timeout']!r}",
        )


_ENDPOINT = Str(
    pattern=r"tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):"
    r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
    r"|ipc://\S+|inproc://\S+",
    description="a ZeroMQ endpoint: tcp://HOST:PORT (port 1-65535), ipc://PATH or inproc://NAME",
)

SETTINGS_SCHEMA = Record(
    {
        "registry": Field(
            Record({"address": Field(_ENDPOINT, default="tcp://127.0.0.1:5000")}),
            default={"address": "tcp://127.0.0.1:5000"},
        ),
        "bind_host": Field(Str(pattern=r"\S+", description="a host name or address"), default="127.0.0.1"),
        "heartbeat": Field(
            Record(
                {
                    "interval": Field(Number(gt=0), default=1.0),
                    "timeout": Field(Number(gt=0), default=3.0),
                },
                checks=[_check_heartbeat],
            ),
            default={"interval": 1.0, "timeout": 3.0},
        ),
        "request_timeout": Field(Number(gt=0), default=5.0),
        "security": Field(OneOf("curve", "none"), default="curve"),
        "key_dir": Field(Str(), default="keys"),
        "state_dir": Field(Str(), default="./var"),
        "log_level": Field(OneOf("debug", "info", "warn", "error", "critical"), default="info"),
        "max_message_size": Field(Int(gt=0), default=1048576),
        "high_water_mark": Field(Int(gt=0), default=10000),
    }
)
"""The schema of C{etc/ecs.yaml}; every key is optional, defaults as shipped."""


@attrs.frozen
class Settings:
    """
    Agent-wide settings, as loaded by L{load_settings}.

    Durations are in seconds, sizes in bytes.  C{state_dir} and C{key_dir}
    are absolute and resolved.  C{source} is the file they were read from.
    """

    registry_address: str
    bind_host: str
    heartbeat_interval: float
    heartbeat_timeout: float
    request_timeout: float
    security: str
    state_dir: Path
    key_dir: Path
    log_level: str
    max_message_size: int
    high_water_mark: int
    source: str


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """C{base} with C{overrides} merged over it, mapping into mapping; inputs untouched."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _default_path(which: Callable[[], Path]) -> Path:
    """A shipped file's path, with a missing data folder as a L{ConfigError}."""
    try:
        return which()
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


def load_settings(
    path: str | Path | None = None,
    state_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """
    Load the agent-wide settings.

    @param path: the settings file; by default the shipped C{etc/ecs.yaml}.
        An empty file means "all defaults".
    @param state_dir: replaces the file's C{state_dir} (a command-line option).
    @param overrides: a nested mapping merged over the file before it is
        checked, e.g. C{{"heartbeat": {"timeout": 10}}}.  Problems it causes
        are reported against C{"<file> (with overrides)"}.
    @raise ConfigError: naming every problem.

    A relative C{state_dir} resolves against the current directory at load
    time; a relative C{key_dir} resolves against the state directory.
    """
    if path is None:
        path = _default_path(paths.default_settings_path)
    source = str(path)
    data = load_yaml(path)
    if data is None:
        data = {}
    label = source
    extra: dict[str, Any] = dict(overrides or {})
    if state_dir is not None:
        extra["state_dir"] = str(state_dir)
    if extra and isinstance(data, dict):
        data = _merge(data, extra)
        label = f"{source} (with overrides)"
    values = validate(data, SETTINGS_SCHEMA, label)
    state = (Path.cwd() / Path(values["state_dir"]).expanduser()).resolve()
    keys = (state / Path(values["key_dir"]).expanduser()).resolve()
    return Settings(
        registry_address=values["registry"]["address"],
        bind_host=values["bind_host"],
        heartbeat_interval=values["heartbeat"]["interval"],
        heartbeat_timeout=values["heartbeat"]["timeout"],
        request_timeout=values["request_timeout"],
        security=values["security"],
        state_dir=state,
        key_dir=keys,
        log_level=values["log_level"],
        max_message_size=values["max_message_size"],
        high_water_mark=values["high_water_mark"],
        source=source,
    )


# --------------------------------------------------------------------------
# Detector types and global systems: etc/subsystems.yaml

NAME = Str(
    pattern=r"[A-Za-z0-9_.-]+",
    description="a name of letters, digits, '_', '-' and '.'",
)
"""The schema of a detector type or global system name."""

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
        path = _default_path(paths.default_subsystems_path)
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
