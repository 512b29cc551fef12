# -*- test-case-name: tests.test_reload -*-
"""
Reading the vocabulary of a process again: the detector types and global
systems (C{etc/subsystems.yaml}), every state table they name and the
partition sequence (C{fsm/partition.yaml}).

L{read_vocabulary} reads and checks them all, with the same checks as the
start-up and C{ecs fsm check}: a problem anywhere refuses the whole set
with a L{ConfigError} whose lines each name the file, the key path (or
line) and the reason, so the caller keeps the set it has.  L{changes}
says what differs between two sets (for the reply of C{ecs reload} and the
log).  Both are plain functions: the ECA and the PCA call
L{read_vocabulary} off the reactor thread (it reads files).

The ECA reads more (L{read_for_eca}): its recovery rules
(C{fsm/recovery.yaml} or C{ecs-eca --recovery FILE}) and the run sequences
(C{etc/sequences/} or C{--sequences DIR}), checked against the partition
sequence read with them; every problem of every file refuses the set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import attrs
from twisted.internet import defer, threads

from ecs import paths
from ecs.config.run_sequences import RunSequence, load_sequences
from ecs.config.subsystems import Subsystems, SystemType, load_subsystems
from ecs.fsm.recovery import RecoveryRules, load_rules
from ecs.fsm.sequence import Sequence, load_sequence
from ecs.fsm.table import StateTable, TableError, load_table
from ecs.schema import ConfigError, format_path

_T = TypeVar("_T")


@attrs.frozen
class VocabularyFiles:
    """
    Where a process reads its vocabulary: C{None} is the shipped file
    (C{ecs.paths}, which honours C{ECS_DATA_DIR}), as at start-up.
    """

    subsystems: str | None = None
    sequence: str | None = None


@attrs.frozen
class Vocabulary:
    """A checked set: the subsystems, the tables they name (by file), the sequence."""

    subsystems: Subsystems
    tables: dict[str, StateTable]
    sequence: Sequence


def read_vocabulary(files: VocabularyFiles, subsystems: Subsystems | None = None) -> Vocabulary:
    """
    Read and check the subsystems file, every table it names and the sequence.

    Blocking (it reads files): call it in a thread from the reactor.

    @param subsystems: already loaded (at start-up): only the tables and
        the sequence are read.
    @raise ConfigError: every problem found, one line each naming the file
        and the key path or line; nothing is half-read.
    """
    if subsystems is None:
        subsystems = load_subsystems(files.subsystems)
    tables: dict[str, StateTable] = {}
    problems: list[str] = []
    for group, types in (("detector_types", subsystems.detector_types), ("global_systems", subsystems.global_systems)):
        for name, spec in types.items():
            key = str(spec.fsm_path)
            if key in tables:
                continue
            try:
                tables[key] = load_table(spec.fsm_path)
            except TableError as e:
                where = format_path((group, name, "fsm"))
                problems.append(f"{subsystems.source}: {where}: the state table is invalid:")
                problems.extend(f"  {line}" for line in e.problems)
    try:
        sequence = load_sequence(
            files.sequence, list(subsystems.global_systems), systems_source=subsystems.source
        )
    except ConfigError as e:
        problems.extend(e.problems)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return Vocabulary(subsystems, tables, sequence)


def _type_changed(old: SystemType, new: SystemType, old_tables: dict[str, StateTable],
                  new_tables: dict[str, StateTable]) -> bool:
    if old != new:
        return True
    return old_tables.get(str(old.fsm_path)) != new_tables.get(str(new.fsm_path))


def changes(old: Vocabulary, new: Vocabulary) -> dict[str, Any]:
    """
    What differs from C{old} to C{new}: C{{"types_added", "types_removed",
    "types_changed"}} (names of detector types and global systems; changed:
    its table, action or timeout), C{"tables_changed"} (table files whose
    rows or states differ, added or gone) and C{"sequence_changed"} (bool).
    """
    before = {**old.subsystems.detector_types, **old.subsystems.global_systems}
    after = {**new.subsystems.detector_types, **new.subsystems.global_systems}
    tables = sorted(
        path
        for path in set(old.tables) | set(new.tables)
        if old.tables.get(path) != new.tables.get(path)
    )
    return {
        "types_added": sorted(set(after) - set(before)),
        "types_removed": sorted(set(before) - set(after)),
        "types_changed": sorted(
            name
            for name in set(before) & set(after)
            if _type_changed(before[name], after[name], old.tables, new.tables)
        ),
        "tables_changed": [str(Path(path)) for path in tables],
        # the same declaration read from another path is no change
        "sequence_changed": attrs.evolve(old.sequence, source=new.sequence.source) != new.sequence,
    }


def read_off_reactor(reactor: Any, files: VocabularyFiles) -> defer.Deferred[Vocabulary]:
    """
    L{read_vocabulary} in the reactor's thread pool (it reads and parses a
    few small files; the reactor goes on meanwhile).  A clock without a
    thread pool (unit tests) reads inline.
    """
    return _off_reactor(reactor, read_vocabulary, files)


def _off_reactor(reactor: Any, read: Callable[..., _T], *args: Any) -> defer.Deferred[_T]:
    pool = getattr(reactor, "getThreadPool", None)
    if pool is None:
        return defer.maybeDeferred(read, *args)
    return threads.deferToThreadPool(reactor, pool(), read, *args)


@attrs.frozen
class CoordinationFiles:
    """
    Where the ECA reads its recovery rules (a file) and run sequences (a
    folder): C{None} is the shipped one, as at start-up.
    """

    recovery: str | None = None
    sequences: str | None = None


@attrs.frozen
class Coordination:
    """The ECA's checked recovery rules and run sequences (by name)."""

    rules: RecoveryRules
    sequences: dict[str, RunSequence]


def read_coordination(files: CoordinationFiles, states: Iterable[str], run_types: Iterable[str]) -> Coordination:
    """
    Read and check the recovery rules and every run sequence (against the
    partition C{states} and C{run_types}).  Blocking.

    @raise ConfigError: every problem of both, each naming its file.
    """
    problems: list[str] = []
    rules = sequences = None
    try:
        rules = load_rules(files.recovery)
    except ConfigError as e:
        problems.extend(e.problems)
    try:
        folder = Path(files.sequences) if files.sequences else paths.data_dir("etc") / "sequences"
        sequences = load_sequences(folder, states, run_types)
    except ConfigError as e:
        problems.extend(e.problems)
    if problems or rules is None or sequences is None:
        raise ConfigError(problems)
    return Coordination(rules, sequences)


def read_for_eca(
    files: VocabularyFiles, coordination: CoordinationFiles | None, in_force: Sequence, run_types: Iterable[str]
) -> tuple[Vocabulary, Coordination | None]:
    """
    What C{ecs reload} reads in the ECA: the vocabulary (naming the same
    global systems as the sequence C{in_force}) and, unless C{coordination}
    is None, the recovery rules and run sequences, checked against the
    partition sequence read with them (the one in force when that is
    invalid, to name their problems too).  Blocking.

    @raise ConfigError: every problem of every file; nothing is half-read.
    """
    problems: list[str] = []
    vocabulary = None
    try:
        vocabulary = read_vocabulary(files)
        globals_unchanged(in_force, vocabulary.sequence)
    except ConfigError as e:
        problems.extend(e.problems)
    found = None
    if coordination is not None:
        states = (vocabulary.sequence if vocabulary is not None else in_force).states()
        try:
            found = read_coordination(coordination, states, run_types)
        except ConfigError as e:
            problems.extend(e.problems)
    if problems or vocabulary is None:
        raise ConfigError(problems)
    return vocabulary, found


def read_for_eca_off_reactor(
    reactor: Any, files: VocabularyFiles, coordination: CoordinationFiles | None, in_force: Sequence,
    run_types: Iterable[str],
) -> defer.Deferred[tuple[Vocabulary, Coordination | None]]:
    """L{read_for_eca} in the reactor's thread pool (inline on a clock without one)."""
    return _off_reactor(reactor, read_for_eca, files, coordination, in_force, tuple(run_types))


def globals_unchanged(old: Sequence, new: Sequence) -> None:
    """
    Refuse a sequence that names other global systems than C{old}: their
    agents, placements and links are made at start-up.

    @raise ConfigError: naming the file, the systems added and removed.
    """
    before, after = set(old.global_systems()), set(new.global_systems())
    if before == after:
        return
    added, removed = sorted(after - before), sorted(before - after)
    raise ConfigError(
        f"{new.source}: stages: the global systems changed (added: {', '.join(added) or 'none'}; "
        f"removed: {', '.join(removed) or 'none'}): that needs a restart of the ECA and the PCAs, "
        "not a reload"
    )


def snapshot(subsystems: Subsystems, tables: dict[str, StateTable], sequence: Sequence) -> Vocabulary:
    """A L{Vocabulary} of copies of the live objects (they change in place at a reload)."""
    copied = Subsystems(dict(subsystems.detector_types), dict(subsystems.global_systems), subsystems.source)
    return Vocabulary(copied, dict(tables), attrs.evolve(sequence))


__all__ = ["Coordination", "CoordinationFiles", "Vocabulary", "VocabularyFiles", "changes",
           "globals_unchanged", "read_coordination", "read_for_eca", "read_for_eca_off_reactor", "read_off_reactor",
           "read_vocabulary", "snapshot"]
