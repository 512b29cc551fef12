# -*- test-case-name: tests.test_partition -*-
"""
What a partition knows about its systems, and the state it is in.

The partition's state is not a second machine that must be kept in step
with its systems (the original's source of stuck states): it is I{derived}
from them, from the declared sequence (L{ecs.fsm.sequence}) and from the one
operation that may be running.  With C{level} the number of stages, from
the first, whose systems are all ready:

- every recording system records (and every stage is ready): the
  recording state;
- an operation is configuring the stage at C{level}, or a system of that
  stage is configuring (someone else started it; or we restarted while it
  ran) and none of them failed: that stage's configuring state;
- a system of the stage at C{level} is in Error or unreachable: the
  stage's C{falls_to} state (by default the previous stage's active state);
- otherwise the active state of the stage below C{level}, or idle.

A system is I{ready} when it is connected, Active or Recording, not marked
for (re)configuration, and reports the configuration it was given (when
one was given: after a restart without saved configurations, the state
is re-derived from what the systems report, as the original did).

An I{excluded} system (L{Partition.set_excluded}) stays a member and is
still watched, but counts in no stage: it is neither ready nor failed nor
configuring, so its faults do not move the partition, and it is shown as
C{Excluded} (its own state kept in C{raw_state}).  Included again, it is
due for configure: until the next configure configures it, its stage is not
ready.

Counters per stage are kept as views change, so deriving the state costs a
few operations per stage, not per system: ten thousand detectors are fine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from ecs.fsm.sequence import DETECTORS, Sequence
from ecs.protocol import CONNECTION_PROBLEM

EXCLUDED = "Excluded"
"""The state shown for a system excluded from its partition."""


@attrs.define
class SystemView:
    """The partition's picture of one system."""

    id: str
    kind: str  # "detector" or "global"
    stage: int
    endpoint: str | None = None
    timeout: float = 5.0
    type: str | None = None
    state: str | None = None
    summary: str | None = None
    tag: str | None = None
    comment: str = ""
    connected: bool = False
    seq: int = -1
    incarnation: str | None = None
    needs_configure: bool = False
    excluded: bool = False

    @property
    def shown_state(self) -> str:
        """C{Excluded}, or the summary state, or C{Connection Problem} while unreachable."""
        if self.excluded:
            return EXCLUDED
        if not self.connected:
            return CONNECTION_PROBLEM
        return self.summary or "Unknown"

    def event(self) -> dict[str, Any]:
        """The published record of this system (C{excluded: true} only when it is)."""
        record = {
            "id": self.id,
            "kind": self.kind,
            "state": self.shown_state,
            "raw_state": self.state,
            "tag": self.tag,
            "comment": self.comment,
            "connected": self.connected,
        }
        if self.excluded:
            record["excluded"] = True
        return record


def accept_status(view: SystemView, status: dict[str, Any], incarnation: str | None = None) -> bool:
    """
    Fold a status (an update or a reply) into C{view} if it is newer.

    Newer means: a later sequence number, or a new incarnation (the
    controller restarted; its numbers start again at 0).  A status without
    an incarnation counts number 0 as a restart.

    @return: whether C{view} changed.
    """
    seq = status.get("seq")
    state = status.get("state")
    summary = status.get("summary")
    if type(seq) is not int or not isinstance(state, str) or not isinstance(summary, str):
        return False
    if incarnation is not None:
        restarted = incarnation != view.incarnation
    else:
        # Without an incarnation (older controllers), number 0 means a restart.
        restarted = seq == 0
    if not restarted and seq <= view.seq:
        return False
    view.seq = seq
    if incarnation is not None:
        view.incarnation = incarnation
    tag = status.get("tag")
    comment = status.get("comment")
    view.state = state
    view.summary = summary
    view.tag = tag if isinstance(tag, str) else None
    view.comment = comment if isinstance(comment, str) else ""
    return True


class Partition:
    """The systems of one partition and the derived partition state."""

    def __init__(self, partition_id: str, sequence: Sequence, systems: Iterable[SystemView] = ()) -> None:
        self.id = partition_id
        self.sequence = sequence
        self.systems: dict[str, SystemView] = {}
        self.expected: dict[str, dict[str, Any]] = {}
        self.tag: str | None = None
        self.running_stage: int | None = None
        n = len(sequence.stages)
        self._size = [0] * n
        self._ready = [0] * n
        self._failed = [0] * n
        self._configuring = [0] * n
        self._flags: dict[str, tuple[bool, bool, bool]] = {}
        for view in systems:
            self.add(view)

    # -- membership ------------------------------------------------------

    def stage_for(self, system: str, is_detector: bool) -> int:
        """The stage index a system belongs to (KeyError if none)."""
        return self.sequence.stage_of_system(system, is_detector).index

    def add(self, view: SystemView) -> None:
        """Add a system (its counters start from its current view)."""
        if view.id in self.systems:
            raise KeyError(f"{view.id} is already in partition {self.id}")
        self.systems[view.id] = view
        self._size[view.stage] += not view.excluded
        self._flags[view.id] = (False, False, False)
        self.refresh(view)

    def remove(self, system: str) -> SystemView:
        """Remove a system and its counters."""
        view = self.systems.pop(system)
        ready, failed, configuring = self._flags.pop(system)
        k = view.stage
        self._size[k] -= not view.excluded
        self._ready[k] -= ready
        self._failed[k] -= failed
        self._configuring[k] -= configuring
        self.expected.pop(system, None)
        return view

    def members(self, stage: int) -> list[SystemView]:
        """The systems of stage C{stage} that take part (excluded ones left out)."""
        return [v for v in self.systems.values() if v.stage == stage and not v.excluded]

    def excluded(self) -> list[str]:
        """The excluded systems, sorted."""
        return sorted(v.id for v in self.systems.values() if v.excluded)

    def set_excluded(self, system: str, excluded: bool) -> bool:
        """
        Exclude C{system} from the partition's stages, or include it again
        (then it is due for configure); whether anything changed.
        """
        view = self.systems[system]
        if view.excluded == excluded:
            return False
        view.excluded = excluded
        self._size[view.stage] += -1 if excluded else 1
        if not excluded:
            view.needs_configure = True
        self.refresh(view)
        return True

    # -- per-system judgements -------------------------------------------

    def is_ready(self, view: SystemView) -> bool:
        """Connected, Active/Recording, not due for configure, right configuration."""
        if not view.connected or view.needs_configure:
            return False
        if view.summary not in ("Active", "Recording"):
            return False
        expected = self.expected.get(view.id)
        return expected is None or view.tag == expected["config_id"]

    @staticmethod
    def is_failed(view: SystemView) -> bool:
        """In Error, or unreachable."""
        return not view.connected or view.summary == "Error"

    def mismatch(self, view: SystemView) -> str | None:
        """
        The configuration id C{view} should report when it reports another
        one while Active (and is not due for configure), else L{None}.
        """
        expected = self.expected.get(view.id)
        if (
            expected is None
            or view.excluded
            or view.needs_configure
            or not view.connected
            or view.summary not in ("Active", "Recording")
            or view.tag == expected["config_id"]
        ):
            return None
        return str(expected["config_id"])

    def refresh(self, view: SystemView) -> None:
        """Recount C{view} after it changed (an excluded system counts nowhere)."""
        new = (
            not view.excluded and self.is_ready(view),
            not view.excluded and self.is_failed(view),
            not view.excluded and view.connected and view.summary == "Configuring",
        )
        old = self._flags[view.id]
        if new == old:
            return
        k = view.stage
        self._ready[k] += new[0] - old[0]
        self._failed[k] += new[1] - old[1]
        self._configuring[k] += new[2] - old[2]
        self._flags[view.id] = new

    def refresh_all(self) -> None:
        """Recount every system (after the expected configurations changed)."""
        for view in self.systems.values():
            self.refresh(view)

    # -- derived state ---------------------------------------------------

    def stage_ready(self, stage: int) -> bool:
        """Every system of C{stage} is ready (a stage without systems is)."""
        return self._ready[stage] == self._size[stage]

    def stage_counts(self, stage: int) -> tuple[int, int]:
        """(ready, total) systems of C{stage}, for progress bars."""
        return self._ready[stage], self._size[stage]

    def stage_failed(self, stage: int) -> bool:
        """Some system of C{stage} is in Error or unreachable."""
        return self._failed[stage] > 0

    @property
    def level(self) -> int:
        """How many stages, from the first, are ready."""
        for k in range(len(self.sequence.stages)):
            if not self.stage_ready(k):
                return k
        return len(self.sequence.stages)

    def recording(self) -> bool:
        """Every stage ready and every recording system records."""
        rec = self.sequence.recording
        if rec is None or self.level < len(self.sequence.stages):
            return False
        return all(
            (view := self.systems.get(name)) is not None
            and view.connected
            and view.summary == "Recording"
            for name in rec.systems
        )

    def recording_systems(self) -> list[SystemView]:
        """The recording systems present in this partition."""
        rec = self.sequence.recording
        names = rec.systems if rec is not None else ()
        return [self.systems[n] for n in names if n in self.systems]

    @property
    def state(self) -> str:
        """The partition state, derived (see the module docstring)."""
        sequence = self.sequence
        if self.recording():
            assert sequence.recording is not None
            return sequence.recording.state
        level = self.level
        if level < len(sequence.stages):
            stage = sequence.stages[level]
            if self.running_stage == level:
                return stage.configuring
            if self.stage_failed(level):
                return stage.falls_to
            if self._configuring[level] > 0:
                return stage.configuring
        if level == 0:
            return sequence.idle
        return sequence.stages[level - 1].active

    def event(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The published record of the partition itself."""
        record = {
            "id": self.id,
            "state": self.state,
            "summary": self.sequence.summary_of(self.state),
            "tag": self.tag,
            "level": self.level,
            "stages": len(self.sequence.stages),
        }
        record.update(extra or {})
        return record


def detector_stage(sequence: Sequence) -> int:
    """The index of the stage that configures the detectors."""
    for stage in sequence.stages:
        if DETECTORS in stage.systems:
            return stage.index
    raise KeyError(f"{sequence.source}: no stage configures the detectors")
