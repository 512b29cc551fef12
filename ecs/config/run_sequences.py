# -*- test-case-name: tests.test_run_sequences -*-
"""
Scripted run sequences (issue 14, item 5): the YAML files under
C{etc/sequences/}, read and checked here (no I/O but reading the files),
run by the ECA (L{agents.eca.run_sequences}).

One file is one sequence, named by its file name without C{.yaml}::

    description: Threshold scan over three tags
    steps:
      - loop:
          over: [scan-low, scan-mid, scan-high]
          as: tag
          steps:
            - configure: {tag: "{tag}", auto: true, timeout: 300}
            - start: {type: calibration, comment: "threshold scan {tag}"}
            - wait: {seconds: 30}
            - stop: {comment: "done with {tag}"}

The steps: C{configure {tag, auto?, timeout?}}, C{start {type?, comment?,
timeout?}}, C{stop {comment?, timeout?}}, C{abort {timeout?}} (each waits
until the partition settles in the state the command leads to, at most
C{timeout} seconds, L{DEFAULT_TIMEOUT} by default), C{wait {seconds}} (the
partition must stay where it is meanwhile) or C{wait {until: STATE,
timeout}}, and C{loop {over: [values], as: name, steps: [...]}}, whose
C{{name}} is replaced in every text field of its steps.  A step without
arguments may be written as its bare name (C{- stop}).

Loops are unrolled at load: a sequence is a flat list of L{Step}s, which
is what its progress counts.  Every problem of a file is reported at once
(L{ConfigError}), one line each naming the file, the step path
(C{steps[0].loop.steps[1].start.type}) and the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from ecs.schema import ConfigError

#: Seconds a command step waits for its state when the file says nothing.
DEFAULT_TIMEOUT = 600.0
#: The longest wait or timeout a file may declare (a day).
MAX_SECONDS = 86400.0
#: The most steps a sequence may have once its loops are unrolled.
MAX_STEPS = 1000
#: The longest text field.
MAX_TEXT = 2000

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")

#: Each step kind and its fields: name -> (types, required).
STEP_FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "configure": {"tag": ((str,), True), "auto": ((bool,), False), "timeout": ((int, float), False)},
    "start": {"type": ((str,), False), "comment": ((str,), False), "timeout": ((int, float), False)},
    "stop": {"comment": ((str,), False), "timeout": ((int, float), False)},
    "abort": {"timeout": ((int, float), False)},
    "wait": {"seconds": ((int, float), False), "until": ((str,), False), "timeout": ((int, float), False)},
}


@attrs.frozen
class Step:
    """One step of an unrolled sequence: its kind, checked arguments and where it was declared."""

    kind: str
    args: Mapping[str, Any]
    path: str

    def describe(self) -> str:
        """A short text for progress and the logbook: C{configure tag=scan-low}."""
        shown = " ".join(f"{k}={v}" for k, v in self.args.items() if k != "timeout")
        return f"{self.kind} {shown}".strip()


@attrs.frozen
class RunSequence:
    """A declared run sequence: its name (the file's), description, unrolled steps and file."""

    name: str
    description: str
    steps: tuple[Step, ...]
    source: str

    def summary(self) -> dict[str, Any]:
        """For C{GET /api/sequences}: name, description and the steps described."""
        return {
            "name": self.name,
            "description": self.description,
            "steps": [s.describe() for s in self.steps],
            "total": len(self.steps),
        }


class _Reader:
    """Checks one file's document, collecting every problem."""

    def __init__(self, source: str, states: Iterable[str] | None, run_types: Iterable[str] | None) -> None:
        self.source = source
        self.states = None if states is None else list(states)
        self.run_types = None if run_types is None else list(run_types)
        self.problems: list[str] = []
        self.steps: list[Step] = []

    def bad(self, path: str, reason: str) -> None:
        self.problems.append(f"{self.source}: {path}: {reason}")

    def steps_of(self, value: object, path: str, names: Mapping[str, str]) -> None:
        if not isinstance(value, list) or not value:
            self.bad(path, "must be a non-empty list of steps")
            return
        for i, item in enumerate(value):
            self.step(item, f"{path}[{i}]", names)

    def step(self, item: object, path: str, names: Mapping[str, str]) -> None:
        if isinstance(item, str):
            item = {item: None}
        if not isinstance(item, dict) or len(item) != 1:
            self.bad(path, "a step is a mapping of one step name to its arguments (or a bare step name)")
            return
        [(kind, args)] = item.items()
        where = f"{path}.{kind}"
        if kind == "loop":
            self.loop(args, where, names)
            return
        if kind not in STEP_FIELDS:
            self.bad(path, f"unknown step {kind!r}: use {', '.join([*STEP_FIELDS, 'loop'])}")
            return
        args = {} if args is None else args
        if not isinstance(args, dict):
            self.bad(where, "the arguments must be a mapping")
            return
        fields = STEP_FIELDS[kind]
        checked: dict[str, Any] = {}
        ok = True
        for key, value in args.items():
            if key not in fields:
                self.bad(f"{where}.{key}", f"unknown field of {kind}: use {', '.join(fields) or 'none'}")
                ok = False
                continue
            types, _ = fields[key]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                expected = "text" if str in types else "true or false" if bool in types else "a number of seconds"
                self.bad(f"{where}.{key}", f"must be {expected}")
                ok = False
                continue
            if isinstance(value, str):
                value = self.substitute(value, f"{where}.{key}", names)
                if value is None:
                    ok = False
                    continue
            elif isinstance(value, int | float) and bool not in types and (
                not math.isfinite(value) or not 0 < value <= MAX_SECONDS
            ):
                self.bad(f"{where}.{key}", f"must be more than 0 and at most {MAX_SECONDS:g} seconds")
                ok = False
                continue
            checked[key] = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        for key, (_, required) in fields.items():
            if required and key not in args:
                self.bad(where, f"needs {key!r}")
                ok = False
        if ok and self.cross_check(kind, checked, where):  # only on fields that passed
            self.steps.append(Step(kind, checked, where))

    def cross_check(self, kind: str, args: dict[str, Any], where: str) -> bool:
        if kind == "wait":
            if ("seconds" in args) == ("until" in args):
                self.bad(where, "needs either 'seconds' or 'until' (a partition state, with 'timeout')")
                return False
            if "seconds" in args and "timeout" in args:
                self.bad(f"{where}.timeout", "only with 'until'")
                return False
            if "until" in args:
                if self.states is not None and args["until"] not in self.states:
                    known = ", ".join(self.states)
                    self.bad(f"{where}.until", f"unknown partition state {args['until']!r}: use {known}")
                    return False
                args.setdefault("timeout", DEFAULT_TIMEOUT)
            return True
        if kind == "configure":
            args.setdefault("auto", True)
            if not NAME_RE.fullmatch(args["tag"]):
                self.bad(f"{where}.tag", f"{args['tag']!r} is not a tag name")
                return False
        if kind == "start" and "type" in args and self.run_types is not None and args["type"] not in self.run_types:
            self.bad(f"{where}.type", f"unknown run type {args['type']!r}: use {', '.join(self.run_types)}")
            return False
        args.setdefault("timeout", DEFAULT_TIMEOUT)
        return True

    def substitute(self, value: str, path: str, names: Mapping[str, str]) -> str | None:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                raise KeyError(name)
            return names[name]

        try:
            out = re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", one, value)
        except KeyError as e:
            known = ", ".join(names) or "none here"
            self.bad(path, f"{{{e.args[0]}}} is not a loop variable (known: {known})")
            return None
        if len(out) > MAX_TEXT:
            self.bad(path, f"at most {MAX_TEXT} characters")
            return None
        return out

    def loop(self, args: object, where: str, names: Mapping[str, str]) -> None:
        if not isinstance(args, dict):
            self.bad(where, "must be a mapping {over: [values], as: name, steps: [...]}")
            return
        unknown = sorted(set(args) - {"over", "as", "steps"})
        for key in unknown:
            self.bad(f"{where}.{key}", "unknown field of loop: use over, as, steps")
        over, var = args.get("over"), args.get("as")
        if not isinstance(over, list) or not over or not all(isinstance(v, str | int | float) and
                                                             not isinstance(v, bool) for v in over):
            self.bad(f"{where}.over", "must be a non-empty list of values (text or numbers)")
            return
        if not isinstance(var, str) or not _VAR_RE.fullmatch(var):
            self.bad(f"{where}.as", "must be a variable name (letters, digits, _)")
            return
        if var in names:
            self.bad(f"{where}.as", f"{var!r} is already the variable of an outer loop")
            return
        if unknown:
            return
        for value in over:
            before = len(self.problems)
            self.steps_of(args.get("steps"), f"{where}.steps", {**names, var: str(value)})
            if len(self.problems) > before:
                return  # the same problem for every value: said once
            if len(self.steps) > MAX_STEPS:
                self.bad(where, f"more than {MAX_STEPS} steps once unrolled")
                return


def parse_sequence(
    name: str, data: object, source: str, states: Iterable[str] | None = None, run_types: Iterable[str] | None = None
) -> RunSequence:
    """
    The sequence C{name} from the document C{data} read from C{source}; the
    partition C{states} and C{run_types}, when given, are checked too.

    @raise ConfigError: naming C{source}, the step path and the reason of every problem.
    """
    reader = _Reader(source, states, run_types)
    if not NAME_RE.fullmatch(name):
        reader.bad("name", f"{name!r}: a sequence's file name must be letters, digits, _ . - (at most 64)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping with 'description' and 'steps'")
    for key in sorted(set(data) - {"description", "steps"}):
        reader.bad(key, "unknown key: use description, steps")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_TEXT:
        reader.bad("description", f"must be text of at most {MAX_TEXT} characters")
        description = ""
    reader.steps_of(data.get("steps"), "steps", {})
    if len(reader.steps) > MAX_STEPS and not reader.problems:
        reader.bad("steps", f"more than {MAX_STEPS} steps once unrolled")
    if reader.problems:
        raise ConfigError(reader.problems)
    return RunSequence(name, description, tuple(reader.steps), source)


def load_sequences(
    folder: Path, states: Iterable[str] | None = None, run_types: Iterable[str] | None = None
) -> dict[str, RunSequence]:
    """
    Every C{*.yaml} of C{folder} (none when it does not exist), by name.

    @raise ConfigError: every problem of every file, each naming its file.
    """
    found: dict[str, RunSequence] = {}
    problems: list[str] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{path}: cannot be read: {e}")
            continue
        except yaml.YAMLError as e:
            problems.append(f"{path}: not valid YAML: {str(e).splitlines()[0]}")
            continue
        try:
            found[path.stem] = parse_sequence(path.stem, data, str(path), states, run_types)
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    return found


__all__ = ["DEFAULT_TIMEOUT", "STEP_FIELDS", "RunSequence", "Step", "load_sequences", "parse_sequence"]
