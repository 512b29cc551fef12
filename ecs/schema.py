# -*- test-case-name: tests.test_config -*-
"""
A small, generic schema helper for checking documents read from YAML files.

One module although it is over 400 lines: it is one small vocabulary (the
node types, the L{Problems} they report into and L{validate}), whose types
share the private helpers for expectations and bounds; split, a reader
would have to follow one idea across files.

The helper (L{validate} with L{Record}, L{Field}, L{MappingOf},
L{ListOf}, L{Tagged}, L{Str}, L{Int}, L{Number}, L{Bool}, L{OneOf},
L{Anything}) is generic, so other loaders (an inventory file, say) can reuse
it::

    schema = Record({
        "name": Field(Str()),
        "port": Field(Int(ge=1, le=65535), default=8080),
        "tags": Field(ListOf(Str()), default=[]),
    })
    values = validate(load_yaml(path), schema, str(path))

A schema checks a value and returns the normalised value (numbers become
C{float}, defaults are filled in).  It never stops at the first problem: all
problems are collected and reported together, as one L{ConfigError}.

L{ecs.config.settings} uses it for C{etc/ecs.yaml} and C{etc/subsystems.yaml}, and
re-exports its names.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

KeyPath = tuple[str | int, ...]
"""Where a value sits in a document: mapping keys and list indices."""


class ConfigError(Exception):
    """
    A configuration file is missing, unreadable or invalid.

    C{str(error)} is the readable message: one line per problem, each naming
    the file and, where it applies, the key path.

    @ivar problems: the individual problem lines.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


def format_path(path: KeyPath) -> str:
    """
    Render a key path for humans: C{heartbeat.timeout}, C{args[0]}.

    Keys that are not plain words (a detector type called C{A.1}, say) are
    quoted, C{detector_types['A.1'].fsm}, so the path stays unambiguous.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def describe_value(value: object) -> str:
    """Describe a value found in a document, for the "got ..." part of a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (str, int, float)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} ({str(value)[:40]})"


class Problems:
    """The problems found while checking one document."""

    def __init__(self) -> None:
        self._found: list[tuple[KeyPath, str]] = []

    def add(self, path: KeyPath, message: str) -> None:
        """Record that the value at C{path} is wrong, as C{message}."""
        self._found.append((path, message))

    def __bool__(self) -> bool:
        return bool(self._found)

    def __len__(self) -> int:
        return len(self._found)

    def lines(self, source: str) -> list[str]:
        """The problems as C{"<source>: <key path>: <message>"} lines."""
        return [
            f"{source}: {format_path(path)}: {message}" if path else f"{source}: {message}"
            for path, message in self._found
        ]


class _Invalid:
    """The type of L{INVALID}."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()
"""What a schema returns for a value it reported a problem about."""


class Schema(Protocol):
    """What every schema object provides."""

    def describe(self) -> str:
        """What is expected, as in "expected I{a number greater than 0}"."""

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """
        Check C{value} found at C{path}.

        @return: the normalised value, or L{INVALID} after adding at least one
            entry to C{problems}.
        """


def _expected(problems: Problems, path: KeyPath, schema: Schema, value: object) -> Any:
    """Report that C{value} is not what C{schema} wants; return L{INVALID}."""
    problems.add(path, f"expected {schema.describe()}, got {describe_value(value)}")
    return INVALID


def _bounds(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> str:
    """Describe numeric bounds: "from 0 to 1", "greater than 0"."""
    if ge is not None and le is not None and gt is None and lt is None:
        return f" from {ge!r} to {le!r}"
    words = []
    if gt is not None:
        words.append(f"greater than {gt!r}")
    if ge is not None:
        words.append(f"at least {ge!r}")
    if lt is not None:
        words.append(f"less than {lt!r}")
    if le is not None:
        words.append(f"at most {le!r}")
    return (" " + " and ".join(words)) if words else ""


def _in_bounds(
    value: float, ge: float | None, gt: float | None, le: float | None, lt: float | None
) -> bool:
    """Whether C{value} satisfies every given bound."""
    return (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
        and (lt is None or value < lt)
    )


@attrs.frozen
class Anything:
    """Any value at all (copied, so defaults and results are never shared)."""

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return "any value"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        return copy.deepcopy(value)


@attrs.frozen
class Str:
    """
    A string.

    @ivar pattern: a regular expression the whole string must match.
    @ivar description: what to call a valid value in messages.
    @ivar allow_empty: whether C{""} is accepted.
    """

    pattern: str | None = None
    description: str | None = None
    allow_empty: bool = False

    def describe(self) -> str:
        """See L{Schema.describe}."""
        if self.description:
            return self.description
        return "a string" if self.allow_empty else "a non-empty string"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if not isinstance(value, str) or (not value and not self.allow_empty):
            return _expected(problems, path, self, value)
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return _expected(problems, path, self, value)
        return value


@attrs.frozen
class Int:
    """An integer (never a boolean, never a float), with optional bounds."""

    ge: int | None = None
    gt: int | None = None
    le: int | None = None
    lt: int | None = None

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return "an integer" + _bounds(self.ge, self.gt, self.le, self.lt)

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if type(value) is not int or not _in_bounds(value, self.ge, self.gt, self.le, self.lt):
            return _expected(problems, path, self, value)
        return value


@attrs.frozen
class Number:
    """A finite number, integer or float (never a boolean); returned as C{float}."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return "a number" + _bounds(self.ge, self.gt, self.le, self.lt)

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _expected(problems, path, self, value)
        number = float(value)
        if not math.isfinite(number) or not _in_bounds(number, self.ge, self.gt, self.le, self.lt):
            return _expected(problems, path, self, value)
        return number


@attrs.frozen
class Bool:
    """C{true} or C{false}."""

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return "true or false"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if not isinstance(value, bool):
            return _expected(problems, path, self, value)
        return value


class OneOf:
    """One of a fixed set of values (compared by type and value)."""

    def __init__(self, *choices: object) -> None:
        self.choices = choices

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return "one of " + ", ".join(str(choice) for choice in self.choices)

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        for choice in self.choices:
            if type(choice) is type(value) and choice == value:
                return value
        return _expected(problems, path, self, value)


@attrs.frozen
class ListOf:
    """A list whose every item matches C{item}."""

    item: Schema

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return f"a list (each item {self.item.describe()})"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if not isinstance(value, list):
            return _expected(problems, path, self, value)
        result = [self.item.check(item, (*path, i), problems) for i, item in enumerate(value)]
        return INVALID if any(item is INVALID for item in result) else result


@attrs.frozen
class MappingOf:
    """
    A mapping with free keys, such as names of things to their descriptions.

    @ivar values: the schema of every value.
    @ivar keys: the schema of every key.
    """

    values: Schema
    keys: Schema = Str()

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return "a mapping"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if not isinstance(value, dict):
            return _expected(problems, path, self, value)
        result = {}
        for key, item in value.items():
            where = (*path, key if isinstance(key, str) else repr(key))
            checked_key = self.keys.check(key, where, problems)
            checked = self.values.check(item, where, problems)
            result[key] = checked if checked_key is not INVALID else INVALID
        return INVALID if any(item is INVALID for item in result.values()) else result


_REQUIRED: Any = object()


@attrs.frozen
class Field:
    """
    One key of a L{Record}: required unless it has a C{default}.

    The default is deep-copied into every result, so a mutable default is safe.
    """

    schema: Schema
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        """Whether the key must be present."""
        return self.default is _REQUIRED


RecordCheck = Callable[[dict[str, Any], KeyPath, Problems], None]
"""A cross-key check run on a valid record: C{(values, path, problems)}."""


@attrs.frozen
class Record:
    """
    A mapping with known keys, each described by a L{Field}.

    Unknown keys are problems.  C{checks} run after every key is valid, for
    rules between keys (a timeout greater than an interval, say).
    """

    fields: Mapping[str, Field]
    checks: Sequence[RecordCheck] = ()
    context: str = ""

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return "a mapping"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if not isinstance(value, dict):
            return _expected(problems, path, self, value)
        for key in value:
            if key not in self.fields:
                problems.add(path, self._unknown(key))
        result: dict[str, Any] = {}
        for name, field in self.fields.items():
            if name in value:
                result[name] = field.schema.check(value[name], (*path, name), problems)
            elif field.required:
                problems.add(
                    (*path, name),
                    f"required key is missing (expected {field.schema.describe()})",
                )
                result[name] = INVALID
            else:
                result[name] = copy.deepcopy(field.default)
        if any(item is INVALID for item in result.values()) or any(k not in self.fields for k in value):
            return INVALID
        before = len(problems)
        for rule in self.checks:
            rule(result, path, problems)
        return INVALID if len(problems) > before else result

    def _unknown(self, key: object) -> str:
        """The message for an unknown key, with a guess at what was meant."""
        allowed = ", ".join(self.fields)
        hint = ""
        if isinstance(key, str):
            close = difflib.get_close_matches(key, list(self.fields), n=1)
            if close:
                hint = f"did you mean {close[0]!r}? "
        where = f" for {self.context}" if self.context else ""
        return f"unknown key {key!r} ({hint}allowed{where}: {allowed})"


class Tagged:
    """
    A mapping whose C{tag} key picks the L{Record} that checks the rest.

    The result keeps the tag key.  Used for actions: C{{kind: script, path: ...}}.
    """

    def __init__(self, tag: str, variants: Mapping[str, Record]) -> None:
        self.tag = tag
        self._tag_schema = OneOf(*variants)
        self._variants = {
            name: Record(
                {tag: Field(Anything()), **variant.fields},
                variant.checks,
                context=f"{tag} {name!r}",
            )
            for name, variant in variants.items()
        }

    def describe(self) -> str:
        """See L{Schema.describe}."""
        return f"a mapping with a {self.tag!r} key"

    def check(self, value: object, path: KeyPath, problems: Problems) -> Any:
        """See L{Schema.check}."""
        if not isinstance(value, dict):
            return _expected(problems, path, self, value)
        if self.tag not in value:
            problems.add(
                (*path, self.tag),
                f"required key is missing (expected {self._tag_schema.describe()})",
            )
            return INVALID
        tag = self._tag_schema.check(value[self.tag], (*path, self.tag), problems)
        if tag is INVALID:
            return INVALID
        return self._variants[tag].check(value, path, problems)


def validate(data: object, schema: Schema, source: str) -> Any:
    """
    Check C{data} (a document read from C{source}) against C{schema}.

    @return: the normalised data (defaults filled in, numbers as floats).
    @raise ConfigError: listing every problem found, one per line, each
        starting with C{source} and the key path.
    """
    problems = Problems()
    result = schema.check(data, (), problems)
    if problems:
        raise ConfigError(problems.lines(source))
    return result
