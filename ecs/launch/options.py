# -*- test-case-name: tests.test_launch_local -*-
"""
Checks of the placement options that several launchers share: the
environment (C{env}), extra arguments (C{args}) and tail lengths.  Every
value that ends up on a command line has passed L{check_argument}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ecs.launch import LaunchError, check_argument

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
"""A valid environment variable name."""

MAX_TAIL_LINES = 10_000


def check_env(value: object) -> dict[str, str]:
    """The placement's C{env} option, checked: an object of name → string."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LaunchError("invalid", f"invalid env {value!r}: expected an object of name: value")
    env = {}
    for name, text in value.items():
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            raise LaunchError("invalid", f"invalid environment variable name {name!r}")
        env[name] = check_argument(text, f"value of environment variable {name}")
    return env


def check_args(value: object, what: str = "args") -> list[str]:
    """A list of command-line arguments (the placement's C{args}), checked."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise LaunchError("invalid", f"invalid {what} {value!r}: expected a list of strings")
    return [check_argument(arg, f"argument in {what}") for arg in value]


def check_lines(lines: object) -> int:
    """A tail length: an int from 1 to L{MAX_TAIL_LINES}."""
    if not isinstance(lines, int) or isinstance(lines, bool) or not 1 <= lines <= MAX_TAIL_LINES:
        raise LaunchError("invalid", f"invalid number of lines {lines!r}: 1 to {MAX_TAIL_LINES}")
    return lines
