# -*- test-case-name: tests.test_configs -*-
"""
Where a Partition Control Agent gets its configurations from.

One module although it is just over 400 lines: the interface, its two
sources (a file, and none) and the checks they share on ids, tags and
inline configurations are one concern, read together.

A I{configuration} is a named parameter set for one system::

    {"config_id": "sts-default", "system": "STS", "parameters": {"threshold_adc": 12}}

A I{tag} names a set of configuration ids, at most one per system.  A
configure request names a tag, or lists configuration ids, or (for a custom
set built by a GUI) carries full configuration objects.

L{IConfigSource} resolves tags and ids to C{{system id: configuration}}.  The
ECA will own configurations and tags in SQLite and implement it over the
network; until then L{FileConfigSource} serves standalone use and tests from a
YAML file (C{etc/demo-configs.yaml})::

    configurations:
      tfc-default: {system: TFC, parameters: {clock_mhz: 40}}
      sts-default: {system: STS, parameters: {threshold_adc: 12}}
    tags:
      demo: [tfc-default, sts-default]

L{EmptyConfigSource} is what a PCA has when it was given neither.
L{normalise_inline} checks configurations carried inline in a request.
Lookups fail with L{ConfigLookupError}; a bad file fails at load with
L{ConfigError}.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer
from zope.interface import Interface, implementer

from ecs.config.yamlfile import NAME, load_yaml
from ecs.schema import (
    INVALID,
    ConfigError,
    Field,
    KeyPath,
    ListOf,
    MappingOf,
    Problems,
    Record,
    Str,
    describe_value,
    validate,
)

UNKNOWN_TAG = "unknown_tag"
UNKNOWN_CONFIG = "unknown_config"
BAD_REQUEST = "bad_request"
CODES = (UNKNOWN_TAG, UNKNOWN_CONFIG, BAD_REQUEST)
"""The codes a L{ConfigLookupError} can carry (also used as reply error codes)."""

_ID_PATTERN = r"[A-Za-z0-9_.:-]{1,200}"
_ID_CHARS = "letters, digits, '_', '.', ':' and '-'"

CONFIG_ID = Str(pattern=_ID_PATTERN, description=f"a configuration id (1-200 {_ID_CHARS})")
"""The schema of a configuration id."""

TAG_NAME = Str(pattern=_ID_PATTERN, description=f"a tag name (1-200 {_ID_CHARS})")
"""The schema of a tag name."""

NO_SOURCE = (
    "no configuration source is configured "
    "(start the PCA with --configs FILE or run it under the ECA)"
)
"""Why L{EmptyConfigSource} knows nothing."""


class ConfigLookupError(Exception):
    """
    A tag or configuration lookup was refused.

    @ivar code: one of L{CODES}: C{unknown_tag}, C{unknown_config} or
        C{bad_request}.
    @ivar reason: a readable explanation naming what was wrong.
    """

    def __init__(self, code: str, reason: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown ConfigLookupError code {code!r} (expected one of {', '.join(CODES)})")
        super().__init__(reason)
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"ConfigLookupError({self.code!r}, {self.reason!r})"


class IConfigSource(Interface):
    """Resolves configuration tags and ids.  Every method returns a Deferred."""

    def tag(name: str) -> defer.Deferred[dict[str, dict[str, Any]]]:
        """
        The configurations named by tag C{name}, as C{{system id: configuration}}.

        Fails with L{ConfigLookupError} C{unknown_tag} (or C{bad_request} when
        C{name} is not a string).
        """

    def configs(ids: list[str]) -> defer.Deferred[dict[str, dict[str, Any]]]:
        """
        The configurations C{ids}, as C{{system id: configuration}}.

        Fails with L{ConfigLookupError}: C{unknown_config} naming every unknown
        id; C{bad_request} naming both ids when two are for the same system,
        naming an id listed twice, or when C{ids} is not a list of strings.
        """


@attrs.frozen
class JsonValue:
    """
    A value that survives a JSON round trip: string, finite number, boolean,
    null, list, or mapping with string keys (checked recursively, copied).

    Configuration parameters travel in JSON messages; this catches YAML values
    that would not (an unquoted date, C{.nan}) when the file is loaded.
    """

    def describe(self) -> str:
        """See L{ecs.schema.Schema.describe}."""
        return "a JSON value (string, number, true/false, null, list or mapping with string keys)"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{ecs.schema.Schema.check}."""
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            problems.add(path, f"expected a finite number, got {value!r}")
            return INVALID
        if isinstance(value, list):
            items = [self.check(item, (*path, i), problems) for i, item in enumerate(value)]
            return INVALID if any(item is INVALID for item in items) else items
        if isinstance(value, dict):
            result: dict[str, Any] = {}
            for key, item in value.items():
                if isinstance(key, str):
                    result[key] = self.check(item, (*path, key), problems)
                else:
                    problems.add((*path, repr(key)), f"expected a string key, got {describe_value(key)}")
                    result[repr(key)] = INVALID
            return INVALID if any(item is INVALID for item in result.values()) else result
        problems.add(path, f"expected {self.describe()}, got {describe_value(value)}")
        return INVALID


PARAMETERS = MappingOf(JsonValue(), keys=Str(description="a parameter name (a non-empty string)"))
"""The schema of a configuration's C{parameters}."""

INLINE_CONFIG_SCHEMA = Record(
    {"config_id": Field(CONFIG_ID), "system": Field(NAME), "parameters": Field(PARAMETERS)},
    context="an inline configuration",
)
"""The schema of one configuration carried inline in a configure request."""

CONFIGS_SCHEMA = Record(
    {
        "configurations": Field(
            MappingOf(Record({"system": Field(NAME), "parameters": Field(PARAMETERS)}), keys=CONFIG_ID),
            default={},
        ),
        "tags": Field(MappingOf(ListOf(CONFIG_ID), keys=TAG_NAME), default={}),
    }
)
"""The schema of a configurations file such as C{etc/demo-configs.yaml}."""


def _quoted(names: Iterable[str]) -> str:
    """C{'a'}, C{'a' and 'b'}, C{'a', 'b' and 'c'}: names for a sentence."""
    shown = [describe_value(name) for name in names]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _unknown(what: str, names: list[str], known: Iterable[str]) -> str:
    """C{"unknown <what>s 'x' (did you mean 'y'?), 'z'"}, with close matches from C{known}."""
    candidates = list(known)
    shown = []
    for name in names:
        # Names come from requests: skip the quadratic matching for absurd lengths.
        close = difflib.get_close_matches(name, candidates, n=2) if len(name) <= 200 else []
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        shown.append(describe_value(name) + hint)
    return f"unknown {what}{'s' if len(names) > 1 else ''} " + ", ".join(shown)


def _duplicates(items: list[str]) -> list[str]:
    """The items listed more than once, each once, in order of first appearance."""
    return [item for item in dict.fromkeys(items) if items.count(item) > 1]


def _clashes(systems: Mapping[str, str]) -> list[str]:
    """
    For C{{label: system}}, one sentence per system named by several labels:
    C{"'a' and 'b' are both for system 'STS'"}.  Labels are used as given.
    """
    by_system: dict[str, list[str]] = {}
    for label, system in systems.items():
        by_system.setdefault(system, []).append(label)
    sentences = []
    for system, labels in by_system.items():
        if len(labels) > 1:
            both = "both" if len(labels) == 2 else "all"
            sentences.append(f"{', '.join(labels[:-1])} and {labels[-1]} are {both} for system {system!r}")
    return sentences


def _id_list(ids: object) -> list[str]:
    """C{ids} when it is a list of strings; otherwise a C{bad_request}."""
    if not isinstance(ids, list):
        raise ConfigLookupError(
            BAD_REQUEST, f"expected a list of configuration ids, got {describe_value(ids)}"
        )
    for index, item in enumerate(ids):
        if not isinstance(item, str):
            raise ConfigLookupError(
                BAD_REQUEST, f"configuration ids[{index}]: expected a string, got {describe_value(item)}"
            )
    return ids


def _tag_name(name: object) -> str:
    """C{name} when it is a string; otherwise a C{bad_request}."""
    if not isinstance(name, str):
        raise ConfigLookupError(BAD_REQUEST, f"expected a tag name (a string), got {describe_value(name)}")
    return name


@implementer(IConfigSource)
class FileConfigSource:
    """
    L{IConfigSource} from a configurations document (a YAML file, or a dict in
    tests), checked in full when loaded.
    """

    def __init__(self, data: object, source: str = "<configs>") -> None:
        """
        Check C{data} (read from C{source}) and keep it.

        @raise ConfigError: naming every problem: schema errors, and tags that
            are empty, list an id twice, name unknown configurations or two
            configurations of the same system.
        """
        values = validate({} if data is None else data, CONFIGS_SCHEMA, source)
        configurations: dict[str, dict[str, Any]] = values["configurations"]
        problems = Problems()
        for tag, ids in values["tags"].items():
            where: KeyPath = ("tags", tag)
            if not ids:
                problems.add(where, "names no configuration (list at least one configuration id)")
            twice = _duplicates(ids)
            if twice:
                problems.add(where, f"lists {_quoted(twice)} more than once")
            unknown = [i for i in dict.fromkeys(ids) if i not in configurations]
            if unknown:
                problems.add(
                    where,
                    f"names {_unknown('configuration', unknown, configurations)} "
                    "(not defined under configurations)",
                )
            known = {repr(i): configurations[i]["system"] for i in dict.fromkeys(ids) if i in configurations}
            for clash in _clashes(known):
                problems.add(
                    where, f"configurations {clash} (a tag holds at most one configuration per system)"
                )
        if problems:
            raise ConfigError(problems.lines(source))
        self.source = source
        self._configurations = configurations
        self._tags: dict[str, list[str]] = values["tags"]

    @classmethod
    def from_dict(cls, data: object, source: str = "<configs>") -> FileConfigSource:
        """Check and load a configurations document (raises L{ConfigError})."""
        return cls(data, source)

    @classmethod
    def from_file(cls, path: str | Path) -> FileConfigSource:
        """Load and check a configurations file (raises L{ConfigError}); an empty file holds nothing."""
        return cls(load_yaml(path), str(path))

    def tag_names(self) -> list[str]:
        """Every tag, in file order."""
        return list(self._tags)

    def tag_now(self, name: str) -> dict[str, dict[str, Any]]:
        """L{tag} without a Deferred: the result, or raises L{ConfigLookupError}."""
        name = _tag_name(name)
        if name not in self._tags:
            reason = f"{_unknown('configuration tag', [name], self._tags)} in {self.source}"
            if len(name) > 200 or not difflib.get_close_matches(name, list(self._tags), n=1):
                known = self.tag_names()
                more = f" and {len(known) - 10} more" if len(known) > 10 else ""
                listed = f"known tags: {', '.join(known[:10])}{more}" if known else "it defines no tags"
                reason += f" ({listed})"
            raise ConfigLookupError(UNKNOWN_TAG, reason)
        return self._resolve(self._tags[name])

    def configs_now(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """L{configs} without a Deferred: the result, or raises L{ConfigLookupError}."""
        ids = _id_list(ids)
        unknown = [i for i in dict.fromkeys(ids) if i not in self._configurations]
        if unknown:
            raise ConfigLookupError(
                UNKNOWN_CONFIG, f"{_unknown('configuration', unknown, self._configurations)} in {self.source}"
            )
        twice = _duplicates(ids)
        if twice:
            raise ConfigLookupError(BAD_REQUEST, f"configuration {_quoted(twice)} listed more than once")
        clashes = _clashes({repr(i): self._configurations[i]["system"] for i in ids})
        if clashes:
            raise ConfigLookupError(
                BAD_REQUEST, f"configurations {'; '.join(clashes)} (choose one configuration per system)"
            )
        return self._resolve(ids)

    def tag(self, name: str) -> defer.Deferred[dict[str, dict[str, Any]]]:
        """See L{IConfigSource.tag}."""
        return defer.maybeDeferred(self.tag_now, name)

    def configs(self, ids: list[str]) -> defer.Deferred[dict[str, dict[str, Any]]]:
        """See L{IConfigSource.configs}."""
        return defer.maybeDeferred(self.configs_now, ids)

    def _resolve(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Fresh copies of the (known, one-per-system) configurations C{ids}, by system."""
        result = {}
        for config_id in ids:
            entry = self._configurations[config_id]
            result[entry["system"]] = {
                "config_id": config_id,
                "system": entry["system"],
                "parameters": copy.deepcopy(entry["parameters"]),
            }
        return result


@implementer(IConfigSource)
class EmptyConfigSource:
    """L{IConfigSource} of a PCA given no configurations: every tag and id is unknown."""

    def tag(self, name: str) -> defer.Deferred[dict[str, dict[str, Any]]]:
        """See L{IConfigSource.tag}: always fails, saying no source is configured."""
        try:
            name = _tag_name(name)
        except ConfigLookupError as e:
            return defer.fail(e)
        reason = f"unknown configuration tag {describe_value(name)}: {NO_SOURCE}"
        return defer.fail(ConfigLookupError(UNKNOWN_TAG, reason))

    def configs(self, ids: list[str]) -> defer.Deferred[dict[str, dict[str, Any]]]:
        """See L{IConfigSource.configs}: fails for any id, saying no source is configured."""
        try:
            ids = _id_list(ids)
        except ConfigLookupError as e:
            return defer.fail(e)
        if not ids:
            return defer.succeed({})
        unknown = list(dict.fromkeys(ids))
        reason = f"{_unknown('configuration', unknown, [])}: {NO_SOURCE}"
        return defer.fail(ConfigLookupError(UNKNOWN_CONFIG, reason))


def normalise_inline(configs: list[Any]) -> dict[str, dict[str, Any]]:
    """
    Check configurations carried inline in a configure request.

    Each item must be C{{"config_id": str, "system": str, "parameters": {...}}}
    with no other keys; config ids must be distinct and systems too.

    @return: C{{system id: configuration}}, the configurations copied.
    @raise ConfigLookupError: C{bad_request}, naming every problem with the
        index and field, as in C{"configurations[1]: system: expected ..."}.
    """
    if not isinstance(configs, list):
        raise ConfigLookupError(
            BAD_REQUEST, f"expected a list of configurations, got {describe_value(configs)}"
        )
    lines: list[str] = []
    valid: dict[int, dict[str, Any]] = {}
    for index, item in enumerate(configs):
        problems = Problems()
        checked = INLINE_CONFIG_SCHEMA.check(item, (), problems)
        lines.extend(problems.lines(f"configurations[{index}]"))
        if checked is not INVALID:
            valid[index] = checked
    by_id: dict[str, list[int]] = {}
    for index, config in valid.items():
        by_id.setdefault(config["config_id"], []).append(index)
    for config_id, indices in by_id.items():
        if len(indices) > 1:
            where = " and ".join(f"configurations[{i}]" for i in indices)
            lines.append(f"{where} have the same config_id {config_id!r}")
    labels = {f"configurations[{i}] ({c['config_id']!r})": c["system"] for i, c in valid.items()}
    lines.extend(f"{clash} (send one configuration per system)" for clash in _clashes(labels))
    if lines:
        raise ConfigLookupError(BAD_REQUEST, "; ".join(lines))
    return {config["system"]: config for config in valid.values()}
