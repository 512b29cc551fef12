# -*- test-case-name: tests.test_config -*-
"""
Reading one YAML configuration file: L{load_yaml} (C{yaml.safe_load} only,
every failure a L{ConfigError} naming the file and, for syntax errors, the
line and column), L{fail} for command lines and C{makeService}, and the
L{NAME} schema that every configuration file uses for names.

Shared by L{ecs.config.settings}, L{ecs.config.subsystems},
L{ecs.config.sources}, the sequence and the registry's inventory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import yaml

from ecs.schema import ConfigError, Str


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


def default_path(which: Callable[[], Path]) -> Path:
    """A shipped file's path, with a missing data folder as a L{ConfigError}."""
    try:
        return which()
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


NAME = Str(
    pattern=r"[A-Za-z0-9_.-]+",
    description="a name of letters, digits, '_', '-' and '.'",
)
"""The schema of a detector type or global system name."""
