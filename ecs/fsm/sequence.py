# -*- test-case-name: tests.test_sequence -*-
"""
The declared partition sequence (C{fsm/partition.yaml}).

A partition configures its systems in stages: the shipped file has TFC, then
the detectors, then FLES and DCS, then QA, and finally records with QA and
FLES.  Each stage names its systems, its C{Configuring_*} and C{*_Active}
states, a timeout, and the state a failure of one of its systems drops the
partition to.  L{load_sequence} reads and checks the file and returns a
L{Sequence}; the partition machine is derived from it in code.

The file is checked with L{ecs.schema} and then cross-checked (unique state
names, each system in one stage, C{detectors} in exactly one stage, fall-back
targets below the stage, known global systems).  Every problem is reported
in one L{ConfigError}, one line each, naming the file and the key path::

    fsm/partition.yaml: stages[2].systems[1]: 'FLEZ' is not a global system
    of subsystems.yaml (known: TFC, DCS, QA, FLES)

C{never_excluded} (optional) lists the systems an operator may never exclude
from a partition (global system ids configured by a stage, or C{detectors}
for every detector); the recording systems are never excludable either (a
run needs them), see L{Sequence.exclusion_refused}.

(About 460 lines, kept whole: the schema, the cross-checks that run on it
and the L{Sequence} they produce are one reading of one file.)
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import attrs

from ecs import paths
from ecs.config.settings import NAME, load_yaml
from ecs.schema import (
    INVALID,
    Anything,
    ConfigError,
    Field,
    KeyPath,
    ListOf,
    Number,
    Problems,
    Record,
    Str,
    format_path,
)

DETECTORS = "detectors"
"""The word that stands, in a stage's systems, for every detector of the partition."""

STATE_NAME = Str(
    pattern=r"[A-Za-z][A-Za-z0-9_]*",
    description="a state name (a letter, then letters, digits or '_')",
)
"""The schema of a state name (and of a stage name)."""


class UnknownNameError(KeyError):
    """A L{Sequence} look-up was given a name it does not have."""

    def __str__(self) -> str:
        return str(self.args[0])


@attrs.frozen
class Stage:
    """
    One stage of the sequence.

    @ivar systems: global system ids, or L{DETECTORS}.
    @ivar timeout: seconds allowed for the whole stage.
    @ivar falls_to: the state a failing system of this stage drops the
        partition to (resolved: never empty).
    @ivar index: the position in L{Sequence.stages}, from 0.
    """

    name: str
    systems: tuple[str, ...]
    configuring: str
    active: str
    timeout: float
    falls_to: str
    index: int


@attrs.frozen
class Recording:
    """The recording state, the systems that record (in start order), and their timeout."""

    state: str
    systems: tuple[str, ...]
    timeout: float


@attrs.define
class Sequence:
    """
    A checked partition sequence, as loaded by L{load_sequence}.

    Mutable only through L{adopt}: the ECA's collaborators share one
    sequence, which C{ecs reload} replaces in place.
    """

    name: str
    source: str
    idle: str
    stages: tuple[Stage, ...]
    recording: Recording | None
    #: Systems that may never be excluded (global ids, or L{DETECTORS}).
    never_excluded: tuple[str, ...] = ()

    def adopt(self, other: Sequence) -> None:
        """Take every field of C{other} (a reload): holders of this object see the new sequence."""
        for field in attrs.fields(Sequence):
            setattr(self, field.name, getattr(other, field.name))

    def states(self) -> list[str]:
        """Every state in hierarchy order: idle, configuring/active per stage, recording."""
        names = [self.idle]
        for stage in self.stages:
            names += [stage.configuring, stage.active]
        if self.recording is not None:
            names.append(self.recording.state)
        return names

    def stage_of_system(self, system: str, is_detector: bool) -> Stage:
        """
        The stage that configures C{system}; any detector maps to the stage
        that lists L{DETECTORS}.

        @raise KeyError: when no stage configures it.
        """
        wanted = DETECTORS if is_detector else system
        for stage in self.stages:
            if wanted in stage.systems:
                return stage
        what = f"detector {system!r}" if is_detector else f"system {system!r}"
        raise UnknownNameError(
            f"no stage of {self.source} configures {what} "
            f"(stages configure: {', '.join(self._all_systems())})"
        )

    def exclusion_refused(self, system: str, is_detector: bool) -> str | None:
        """
        Why C{system} may not be excluded from a partition (L{None}: it may):
        it is listed under C{never_excluded}, or it records.
        """
        if (DETECTORS if is_detector else system) in self.never_excluded:
            what = "detectors" if is_detector else system
            return f"{what} may never be excluded (never_excluded in {Path(self.source).name})"
        if not is_detector and self.recording is not None and system in self.recording.systems:
            return f"{system} records runs: a recording system may not be excluded"
        return None

    def global_systems(self) -> list[str]:
        """Every global system named, in order of first appearance."""
        return [name for name in self._all_systems() if name != DETECTORS]

    def stage_named(self, name: str) -> Stage:
        """The stage called C{name}; C{KeyError} if there is none."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise UnknownNameError(
            f"no stage {name!r} in {self.source} "
            f"(stages: {', '.join(s.name for s in self.stages)})"
        )

    @property
    def top_active(self) -> str:
        """The last stage's active state: everything configured."""
        return self.stages[-1].active

    def level_of_state(self, state: str) -> int:
        """
        How many stages are configured in C{state}: 0 for idle, k+1 for stage
        k's active state, k for its configuring state, all for recording.
        """
        return self._lookup(state)[0]

    def summary_of(self, state: str) -> str:
        """C{"Idle"}, C{"Configuring"}, C{"Active"} or C{"Recording"}."""
        return self._lookup(state)[1]

    def _all_systems(self) -> list[str]:
        names: list[str] = []
        for stage in self.stages:
            names += [s for s in stage.systems if s not in names]
        if self.recording is not None:
            names += [s for s in self.recording.systems if s not in names]
        return names

    def _lookup(self, state: str) -> tuple[int, str]:
        table = {self.idle: (0, "Idle")}
        for stage in self.stages:
            table[stage.configuring] = (stage.index, "Configuring")
            table[stage.active] = (stage.index + 1, "Active")
        if self.recording is not None:
            table[self.recording.state] = (len(self.stages), "Recording")
        if state not in table:
            raise UnknownNameError(
                f"unknown partition state {state!r} (states of {self.source}: "
                f"{', '.join(self.states())})"
            )
        return table[state]


# --- checking ----------------------------------------------------------------


def _non_empty(key: str, noun: str) -> Any:
    """A record check: the list under C{key} has at least one item."""

    def check(values: dict[str, Any], path: KeyPath, problems: Problems) -> None:
        if not values[key]:
            problems.add((*path, key), f"expected at least one {noun}, got an empty list")

    return check


_SYSTEMS = ListOf(NAME)

_TOP = Record(
    {
        "name": Field(Str()),
        "idle": Field(STATE_NAME),
        "stages": Field(ListOf(Anything())),
        "recording": Field(Anything(), default=None),
        "never_excluded": Field(_SYSTEMS, default=()),
    }
)

_STAGE = Record(
    {
        "name": Field(STATE_NAME),
        "systems": Field(_SYSTEMS),
        "configuring": Field(STATE_NAME),
        "active": Field(STATE_NAME),
        "timeout": Field(Number(gt=0)),
        "falls_to": Field(STATE_NAME, default=None),
    },
    checks=[_non_empty("systems", "system")],
)

_RECORDING = Record(
    {
        "state": Field(STATE_NAME),
        "systems": Field(_SYSTEMS),
        "timeout": Field(Number(gt=0)),
    },
    checks=[_non_empty("systems", "recording system")],
)


def _unique(
    items: list[tuple[KeyPath, str]], noun: str, why: str, problems: Problems
) -> None:
    """Report every item whose value was already used at an earlier path."""
    first: dict[str, KeyPath] = {}
    for path, value in items:
        if value in first:
            problems.add(
                path, f"{noun} {value!r} is already used at {format_path(first[value])}; {why}"
            )
        else:
            first[value] = path


def _cross_check(
    idle: str | None,
    stages: list[Any],
    recording: Any,
    global_systems: Collection[str] | None,
    systems_source: str,
    problems: Problems,
    never_excluded: Any = (),
) -> None:
    """The rules between keys, run on every part that passed the schema."""
    valid = [(i, s) for i, s in enumerate(stages) if s is not INVALID]
    # Rules about the whole list hold only when every stage could be read.
    complete = bool(stages) and len(valid) == len(stages) and idle is not None
    states: list[tuple[KeyPath, str]] = [(("idle",), idle)] if idle is not None else []
    for i, stage in valid:
        states += [(("stages", i, "configuring"), stage["configuring"])]
        states += [(("stages", i, "active"), stage["active"])]
    if recording not in (None, INVALID):
        states.append((("recording", "state"), recording["state"]))
    _unique(states, "state", "every state name must be unique", problems)
    names: list[tuple[KeyPath, str]] = [(("stages", i, "name"), s["name"]) for i, s in valid]
    _unique(names, "stage name", "every stage needs its own name", problems)

    def unknown(system: str) -> str:
        known = ", ".join(global_systems or ()) or "none"
        return f"{system!r} is not a global system of {systems_source} (known: {known})"

    placed: list[tuple[KeyPath, str]] = []
    for i, stage in valid:
        for j, system in enumerate(stage["systems"]):
            placed.append((("stages", i, "systems", j), system))
            if system != DETECTORS and global_systems is not None and system not in global_systems:
                problems.add(("stages", i, "systems", j), unknown(system))
    _unique(placed, "system", "a system belongs to at most one stage", problems)
    if complete and not any(system == DETECTORS for _, system in placed):
        problems.add(
            ("stages",),
            f"no stage lists {DETECTORS!r}; exactly one stage must configure "
            "the partition's detectors",
        )

    for i, stage in valid:
        earlier = [other["active"] for k, other in valid if k < i]
        target = stage["falls_to"]
        if target is None or idle is None or len(earlier) < i:
            continue  # nothing to check, or an earlier part is already reported
        allowed = [idle, *earlier]
        if target in allowed:
            continue
        problems.add(
            ("stages", i, "falls_to"),
            f"{target!r} is not {idle} or the active state of an earlier stage "
            f"(allowed: {', '.join(allowed)})",
        )

    configured = [system for _, system in placed]
    _check_never_excluded(never_excluded, configured, complete, problems)
    if recording in (None, INVALID):
        return
    for j, system in enumerate(recording["systems"]):
        path = ("recording", "systems", j)
        if system == DETECTORS:
            problems.add(path, f"{DETECTORS!r} cannot record: recording systems are global systems")
        elif global_systems is not None and system not in global_systems:
            problems.add(path, unknown(system))
        elif complete and system not in configured:
            problems.add(
                path,
                f"{system!r} is not configured by any stage (stages configure: "
                f"{', '.join(configured)}); a recording system must be configured first",
            )
    recorders: list[tuple[KeyPath, str]] = [
        (("recording", "systems", j), s) for j, s in enumerate(recording["systems"])
    ]
    _unique(recorders, "recording system", "list each system once", problems)


def _check_never_excluded(
    never_excluded: Any, configured: list[str], complete: bool, problems: Problems
) -> None:
    """Each C{never_excluded} entry is C{detectors} or a system a stage configures, listed once."""
    if not isinstance(never_excluded, (list, tuple)):
        return  # the schema reported it
    for j, system in enumerate(never_excluded):
        if complete and system not in configured:
            problems.add(
                ("never_excluded", j),
                f"{system!r} is not configured by any stage (stages configure: {', '.join(configured)})",
            )
    _unique(
        [(("never_excluded", j), s) for j, s in enumerate(never_excluded)],
        "never-excluded system",
        "list each system once",
        problems,
    )


def parse_sequence(
    data: object,
    source: str,
    global_systems: Collection[str] | None = None,
    *,
    systems_source: str = "subsystems.yaml",
) -> Sequence:
    """
    Check the partition sequence document C{data}, read from C{source}.

    @param global_systems: the global system ids every named system must be
        one of (C{detectors} is always allowed); C{None} skips that check.
    @param systems_source: where C{global_systems} came from, for messages.
    @raise ConfigError: listing every problem, each naming C{source} and the
        key path.
    """
    problems = Problems()
    top = _TOP.check(data, (), problems)
    raw = data if isinstance(data, dict) else {}
    raw_stages = raw.get("stages")
    raw_stages = raw_stages if isinstance(raw_stages, list) else []
    if "stages" in raw and isinstance(raw["stages"], list) and not raw_stages:
        problems.add(("stages",), "expected at least one stage, got an empty list")
    stages = [_STAGE.check(item, ("stages", i), problems) for i, item in enumerate(raw_stages)]
    recording = raw.get("recording")
    if recording is not None:
        recording = _RECORDING.check(recording, ("recording",), problems)
    idle = STATE_NAME.check(raw.get("idle"), (), Problems())
    _cross_check(
        None if idle is INVALID else idle,
        stages,
        recording,
        global_systems,
        systems_source,
        problems,
        raw.get("never_excluded", ()) if top is not INVALID else (),
    )
    if problems or top is INVALID:
        raise ConfigError(problems.lines(source))
    built: list[Stage] = []
    for i, values in enumerate(stages):
        below = built[-1].active if built else top["idle"]
        built.append(
            Stage(
                name=values["name"],
                systems=tuple(values["systems"]),
                configuring=values["configuring"],
                active=values["active"],
                timeout=values["timeout"],
                falls_to=values["falls_to"] or below,
                index=i,
            )
        )
    return Sequence(
        name=top["name"],
        source=source,
        idle=top["idle"],
        stages=tuple(built),
        recording=None
        if recording is None
        else Recording(
            state=recording["state"],
            systems=tuple(recording["systems"]),
            timeout=recording["timeout"],
        ),
        never_excluded=tuple(top["never_excluded"]),
    )


def load_sequence(
    path: str | Path | None = None,
    global_systems: Collection[str] | None = None,
    *,
    systems_source: str = "subsystems.yaml",
) -> Sequence:
    """
    Load and check a partition sequence file.

    @param path: the file; by default the shipped C{fsm/partition.yaml}.
    @param global_systems: the known global system ids, e.g.
        C{load_subsystems().global_systems}; see L{parse_sequence}.
    @raise ConfigError: when the file is missing, not YAML, or wrong.
    """
    if path is None:
        try:
            path = paths.data_dir("fsm") / "partition.yaml"
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    source = str(path)
    data = load_yaml(path)
    if data is None:
        raise ConfigError(f"{source}: file is empty (expected keys name, idle, stages, recording)")
    return parse_sequence(data, source, global_systems, systems_source=systems_source)
