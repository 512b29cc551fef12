# -*- test-case-name: tests.test_eca_picture -*-
"""
L{PartitionPicture}: what the ECA knows of one partition, from what its
PCA publishes (the partition record and every system's), with no I/O.

Each input (L{PartitionPicture.apply}, L{PartitionPicture.reset},
L{PartitionPicture.set_connected}, L{PartitionPicture.progress_received})
returns the effects it has, as small values, in order: the live events to
emit (L{Emit}), a run that started or ended (L{RunStarted}, L{RunEnded}),
the partition or one of its systems seen again (L{PartitionSeen},
L{SystemSeen}, for the moves a forced move left pending) and a configure
stage finished (L{StageDone}) and an alarm condition that holds or not
(L{Condition}: a system in Error, a system that stopped answering, the PCA
itself gone).  Whoever owns the picture carries them out
(L{agents.eca.partitions}); nothing here calls out, so nothing re-enters.

Stage durations are timed here from the PCA's C{progress} events (a stage
starts with its first progress, ends when all its systems are ready), not
parsed from the PCA's log text: the progress body is structured, and a
stage that fails never reaches ready == total, so only finished stages
are observed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any

import attrs

from ecs.fsm.sequence import Sequence
from ecs.protocol import CONNECTION_PROBLEM


@attrs.frozen
class Emit:
    """A live event of this partition."""

    type: str
    data: dict[str, Any]


@attrs.frozen
class RunStarted:
    """The partition entered the recording state (C{initial}: its first record was recording)."""

    tag: str | None
    initial: bool = False


@attrs.frozen
class RunEnded:
    """
    The partition left the recording state (C{initial}: its first record
    was not recording; a run left open by an earlier ECA is reconciled).
    """

    initial: bool = False


@attrs.frozen
class PartitionSeen:
    """The PCA answers again, or the partition record changed."""


@attrs.frozen
class SystemSeen:
    """A system of the partition is connected."""

    system: str


@attrs.frozen
class StageDone:
    """A configure stage finished (all its systems ready) after C{seconds}."""

    stage: str
    seconds: float


@attrs.frozen
class Condition:
    """
    An alarm condition of the partition holds (C{active}) or not, as the
    records show it now (level, not edge: the owner's alarms drop the
    repeats).  C{kind} is an alarm kind (C{system_error},
    C{system_unreachable}, C{dcs_alarm}, C{pca_lost}), C{source} the system
    (or C{pca:<partition>}), C{text} what is wrong (when active).
    """

    kind: str
    source: str
    active: bool
    text: str = ""


Effect = Emit | RunStarted | RunEnded | PartitionSeen | SystemSeen | StageDone | Condition


def _in_error(record: dict[str, Any] | None) -> bool:
    """Whether a system record is in Error (that allows C{reset})."""
    return record is not None and record.get("state") == "Error"


class PartitionPicture:
    """The records of one partition and what interfaces show of them."""

    def __init__(self, partition_id: str, sequence: Sequence) -> None:
        self.id = partition_id
        self.sequence = sequence
        self.records: dict[str, dict[str, Any]] = {}
        self.progress: dict[str, Any] | None = None
        self.connected = False
        #: The allowed commands last sent as an C{allowed} event.
        self._allowed: list[str] | None = None
        #: The stage being timed: (name, when its first progress came), or None once done.
        self._stage: tuple[str, float] | None = None
        #: The stage last timed to its end (its closing report may come twice).
        self._last_done: str | None = None
        #: Systems seen connected: only those can become unreachable (no
        #: alarm for a system that has not come up yet).
        self._came_up: set[str] = set()

    # -- inputs ------------------------------------------------------------------

    def apply(self, key: str, value: dict[str, Any] | None) -> list[Effect]:
        """A record changed (None: removed)."""
        old = self.records.get(key)
        if value is None:
            if key not in self.records:
                return []  # already dropped (by reset)
            del self.records[key]
        else:
            self.records[key] = value
        shown = value
        if value is not None and key.startswith("system/"):
            shown = self.shown_system(key[len("system/") :], value)
        effects: list[Effect] = [Emit("state", {"partition": self.id, "key": key, "value": shown})]
        if key == "partition" or _in_error(old) != _in_error(value):
            effects += self._allowed_changed()
        if key == "partition":
            effects += self._recording(old, value)
            effects.append(PartitionSeen())
        elif key.startswith("system/"):
            system = key[len("system/") :]
            if value is not None and value.get("connected"):
                effects.append(SystemSeen(system))
            effects += self._conditions(system, value)
        return effects

    def reset(self, present: Collection[str]) -> list[Effect]:
        """
        A fresh snapshot replaced the table.  A new mirror (the PCA
        registered at a new place: a restart) knows nothing of our older
        records, so those the snapshot lacks (a detector moved away
        meanwhile) are dropped, or they would be shown for ever.
        """
        effects: list[Effect] = []
        # A system must be seen connected again in the new table before it
        # can be called unreachable (a restarted PCA meets its systems anew).
        self._came_up.clear()
        for key in [k for k in self.records if k not in present]:
            effects += self.apply(key, None)
        effects.append(Emit("state", {"partition": self.id, "key": "reset", "value": None}))
        return effects

    def set_connected(self, connected: bool) -> list[Effect]:
        """The PCA answers again, or stopped answering."""
        if connected == self.connected:
            return []
        self.connected = connected
        effects: list[Effect] = [
            Emit("state", {"partition": self.id, "key": "connected", "value": {"connected": connected}})
        ]
        effects += self._allowed_changed()
        if connected:
            effects.append(PartitionSeen())  # it may have missed a forced move
        effects.append(Condition("pca_lost", f"pca:{self.id}", not connected, f"the PCA of {self.id} does not answer"))
        return effects

    def progress_received(self, body: dict[str, Any], now: float) -> list[Effect]:
        """Configure progress: shown, and the stage timed (see the module docstring)."""
        self.progress = body
        effects: list[Effect] = [Emit("progress", body)]
        stage, ready, total = body.get("stage"), body.get("ready"), body.get("total")
        if not isinstance(stage, str) or not isinstance(ready, int) or not isinstance(total, int):
            return effects
        if self._stage is None or self._stage[0] != stage:
            if ready >= total and self._stage is None and self._last_done == stage:
                return effects  # the closing report again: already counted
            self._stage = (stage, now)
        if ready >= total and self._stage is not None:
            effects.append(StageDone(stage, now - self._stage[1]))
            self._stage = None
            self._last_done = stage
        return effects

    # -- what interfaces show ----------------------------------------------------

    def system_states(self) -> Counter[str]:
        """How many systems are in each state (C{Unknown} while the PCA does not answer)."""
        return Counter(
            v.get("state", "?") if self.connected else "Unknown"
            for k, v in self.records.items()
            if k.startswith("system/")
        )

    def connected_systems(self) -> int:
        """How many systems answer (none while the PCA does not)."""
        if not self.connected:
            return 0
        return sum(1 for k, v in self.records.items() if k.startswith("system/") and v.get("connected"))

    def state(self) -> str | None:
        """The partition's state as shown (C{Connection Problem} while the PCA does not answer)."""
        record = self.records.get("partition", {})
        return record.get("state") if self.connected else CONNECTION_PROBLEM

    def summary(self, holder: str | None) -> dict[str, Any]:
        """C{{id, state, tag, controller, connected}}."""
        record = self.records.get("partition", {})
        return {
            "id": self.id,
            "state": self.state(),
            "tag": record.get("tag"),
            "controller": holder,
            "connected": self.connected,
        }

    def allowed(self) -> list[str]:
        """The commands the partition's state allows now (the PCA decides in the end)."""
        record = self.records.get("partition", {})
        if not self.connected or not record:
            return []
        sequence = self.sequence
        state = record.get("state")
        allowed = ["abort"]
        if any(v.get("state") == "Error" for k, v in self.records.items() if k.startswith("system/")):
            allowed.append("reset")
        if record.get("locked") or record.get("operation"):
            return allowed
        summary = sequence.summary_of(state) if state in sequence.states() else None
        if summary in ("Idle", "Active"):
            allowed.append("configure")
        if state == sequence.top_active:
            allowed.append("start")
        if sequence.recording is not None and state == sequence.recording.state:
            allowed.append("stop")
        return allowed

    def details(self, holder: str | None) -> dict[str, Any]:
        """The summary with the systems, what is allowed, lock and progress."""
        record = self.records.get("partition", {})
        systems = []
        for key, value in sorted(self.records.items()):
            if not key.startswith("system/"):
                continue
            shown = self.shown_system(key[len("system/") :], value)
            if not self.connected:
                shown["connected"] = False
            systems.append(shown)
        return {
            **self.summary(holder),
            "locked": bool(record.get("locked")),
            "operation": record.get("operation"),
            "allowed": self.allowed(),
            "progress": self.progress if record.get("operation") else None,
            "systems": systems,
        }

    def shown_system(self, system: str, value: dict[str, Any]) -> dict[str, Any]:
        """
        A system's record as interfaces show it (its details and its C{state}
        events): with C{excludable}, and C{exclusion_refused}, the reason it
        may never be excluded or None, as the PCA decides it
        (L{Sequence.exclusion_refused}), so the GUI disables the button with
        the server's reason instead of offering what is then refused.
        """
        refused = self.sequence.exclusion_refused(system, value.get("kind") == "detector")
        return {**value, "excludable": refused is None, "exclusion_refused": refused}

    # -- helpers ---------------------------------------------------------------------

    def _conditions(self, system: str, value: dict[str, Any] | None) -> list[Effect]:
        """
        The alarm conditions of one system record (None: it left the
        partition; or it is excluded: its faults do not count, none holds).
        """
        if value is None or value.get("excluded"):
            if value is None or not value.get("connected"):
                self._came_up.discard(system)
            return [Condition(kind, system, False) for kind in ("system_error", "system_unreachable", "dcs_alarm")]
        error = _in_error(value)
        connected = bool(value.get("connected"))
        if connected:
            self._came_up.add(system)
        comment = value.get("comment")
        why = f": {comment}" if isinstance(comment, str) and comment else ""
        effects: list[Effect] = [Condition("system_error", system, error, f"{system} in Error{why}")]
        if not error:
            effects.append(Condition("dcs_alarm", system, False))
        if connected or system in self._came_up:
            effects.append(
                Condition("system_unreachable", system, not connected, f"{system} does not answer (Connection Problem)")
            )
        return effects

    def _allowed_changed(self) -> list[Effect]:
        """An C{allowed} event when the commands allowed now changed (the GUI's buttons)."""
        allowed = self.allowed()
        if allowed == self._allowed:
            return []
        self._allowed = allowed
        return [Emit("allowed", {"partition": self.id, "allowed": allowed})]

    def _recording(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Effect]:
        recording = self.sequence.recording
        if recording is None:
            return []
        was = old is not None and old.get("state") == recording.state
        now = new is not None and new.get("state") == recording.state
        if now and not was:
            return [RunStarted(new.get("tag") if new is not None else None, initial=old is None)]
        if was and not now:
            return [RunEnded()]
        if old is None and new is not None:
            return [RunEnded(initial=True)]
        return []
