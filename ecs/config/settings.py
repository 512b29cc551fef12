# -*- test-case-name: tests.test_config -*-
"""
Configuration: the agent-wide settings (C{etc/ecs.yaml}).

The file is YAML, read with C{yaml.safe_load} only, and checked against a
schema before anything else looks at it.  Every problem becomes one line of a
L{ConfigError} that names the file, the key path and what was expected, for
example::

    etc/ecs.yaml: heartbeat.timeout: expected a number greater than
    heartbeat.interval (1.0), got 0.5

Agents load their configuration in C{makeService}, before binding anything,
and turn a L{ConfigError} into an exit with L{fail}.

Re-exported here so that existing imports keep working: the subsystem types
(L{ecs.config.subsystems}: L{load_subsystems}, L{Subsystems},
L{SystemType}, L{ActionSpec}, ...), the YAML reading (L{ecs.config.yamlfile}:
L{load_yaml}, L{fail}, L{NAME}) and the schema helper of L{ecs.schema}
(L{validate}, L{Record}, L{Field}, L{ConfigError}, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ecs import paths
from ecs.config.subsystems import (
    ACTION_SCHEMA,
    SUBSYSTEMS_SCHEMA,
    ActionSpec,
    Subsystems,
    SystemType,
    UnknownSystemError,
    load_subsystems,
)
from ecs.config.yamlfile import NAME, default_path, fail, load_yaml
from ecs.runinfo import DEFAULT_RUN_TYPES
from ecs.schema import (
    Anything,
    Bool,
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

__all__ = [
    "ACTION_SCHEMA",
    "NAME",
    "SETTINGS_SCHEMA",
    "SUBSYSTEMS_SCHEMA",
    "ActionSpec",
    "Anything",
    "ConfigError",
    "Field",
    "Int",
    "KeyPath",
    "ListOf",
    "MappingOf",
    "Number",
    "OneOf",
    "Problems",
    "Record",
    "Settings",
    "Str",
    "Subsystems",
    "SystemType",
    "Tagged",
    "UnknownSystemError",
    "fail",
    "format_path",
    "load_settings",
    "load_subsystems",
    "load_yaml",
    "validate",
]


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


def _check_run_types(values: dict[str, Any], path: KeyPath, problems: Problems) -> None:
    """The run types: at least one, each named once."""
    types = values["types"]
    if not types:
        problems.add((*path, "types"), "expected at least one run type, got an empty list")
    seen: set[str] = set()
    for i, name in enumerate(types):
        if name in seen:
            problems.add((*path, "types", i), f"run type {name!r} is declared twice")
        seen.add(name)


_ENDPOINT = Str(
    pattern=r"tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):"
    r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
    r"|ipc://\S+|inproc://\S+",
    description="a ZeroMQ endpoint: tcp://HOST:PORT (port 1-65535), ipc://PATH or inproc://NAME",
)

#: Default lifetimes of a GUI session (a week) and of an API token (a
#: working shift), in seconds: C{accounts} in C{etc/ecs.yaml}.
SESSION_LIFETIME = 7 * 86400.0
TOKEN_LIFETIME = 8 * 3600.0

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
                    # Two intervals: a peer killed is seen lost within two
                    # heartbeat intervals (the loss is checked at its deadline).
                    "timeout": Field(Number(gt=0), default=2.0),
                },
                checks=[_check_heartbeat],
            ),
            default={"interval": 1.0, "timeout": 2.0},
        ),
        "request_timeout": Field(Number(gt=0), default=5.0),
        "security": Field(OneOf("curve", "none"), default="curve"),
        "key_dir": Field(Str(), default="keys"),
        "state_dir": Field(Str(), default="./var"),
        "log_level": Field(OneOf("debug", "info", "warn", "error", "critical"), default="info"),
        "max_message_size": Field(Int(gt=0), default=1048576),
        "high_water_mark": Field(Int(gt=0), default=10000),
        "accounts": Field(
            Record(
                {
                    "single_session": Field(Bool(), default=True),
                    "session_lifetime": Field(Number(gt=0), default=SESSION_LIFETIME),
                    "token_lifetime": Field(Number(gt=0), default=TOKEN_LIFETIME),
                }
            ),
            default={"single_session": True, "session_lifetime": SESSION_LIFETIME, "token_lifetime": TOKEN_LIFETIME},
        ),
        "runs": Field(
            Record(
                {
                    "types": Field(
                        ListOf(Str(pattern=r"[A-Za-z0-9_.:-]{1,64}", description="a run type name")),
                        default=list(DEFAULT_RUN_TYPES),
                    ),
                },
                checks=[_check_run_types],
            ),
            default={"types": list(DEFAULT_RUN_TYPES)},
        ),
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
    #: C{accounts}: a new GUI login ends the user's older sessions; the
    #: lifetimes of sessions and API tokens (seconds).
    single_session: bool = True
    session_lifetime: float = SESSION_LIFETIME
    token_lifetime: float = TOKEN_LIFETIME
    #: C{runs.types}: the types a run may have (a start without one records none).
    run_types: tuple[str, ...] = DEFAULT_RUN_TYPES


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """C{base} with C{overrides} merged over it, mapping into mapping; inputs untouched."""
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


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
        path = default_path(paths.default_settings_path)
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
        single_session=values["accounts"]["single_session"],
        session_lifetime=float(values["accounts"]["session_lifetime"]),
        token_lifetime=float(values["accounts"]["token_lifetime"]),
        run_types=tuple(values["runs"]["types"]),
    )
