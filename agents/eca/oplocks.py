# -*- test-case-name: tests.test_moves -*-
"""
L{OperationLocks}: the ECA's exclusive locks of management operations,
one per detector and one per partition.

An operation takes all its locks at once or none
(L{OperationLocks.take}); a lock another operation holds refuses it with
a reason naming that operation: a detector held is C{conflict} (409), a
partition held is C{locked} (423).  Pure and synchronous: taken and
released within one reactor turn, so two coroutines can never both win.
"""

from __future__ import annotations

from collections.abc import Iterable

from ecs.control import ControlError


class OperationLocks:
    """Who holds each detector and partition (see the module docstring)."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], str] = {}

    def holder(self, kind: str, name: str) -> str | None:
        """What holds C{kind} (C{"detector"} or C{"partition"}) C{name}, or C{None}."""
        return self._held.get((kind, name))

    def take(self, what: str, detectors: Iterable[str | None] = (), partitions: Iterable[str | None] = ()) -> None:
        """
        Take every lock named (C{None}s are skipped) for the operation
        described by C{what}, or none and raise the L{ControlError} naming
        the operation that holds the first one taken.
        """
        keys = [("detector", d) for d in detectors if d is not None]
        keys += [("partition", p) for p in partitions if p is not None]
        for kind, name in keys:
            holder = self._held.get((kind, name))
            if holder is not None:
                code = "conflict" if kind == "detector" else "locked"
                raise ControlError(code, f"{kind} {name} is held by {holder}: try again when it has ended")
        for key in keys:
            self._held[key] = what

    def release(self, detectors: Iterable[str | None] = (), partitions: Iterable[str | None] = ()) -> None:
        """Release the locks named (those not held are ignored)."""
        for d in detectors:
            if d is not None:
                self._held.pop(("detector", d), None)
        for p in partitions:
            if p is not None:
                self._held.pop(("partition", p), None)

    def __len__(self) -> int:
        return len(self._held)
