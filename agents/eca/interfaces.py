# -*- test-case-name: tests.test_eca -*-
"""
The narrow interfaces the ECA's collaborators give each other.

Each collaborator is built from configuration and the services it needs
(L{agents.eca.compose.build_eca}); these interfaces say what one may ask
of another, so a test can put a recording dummy in its place
(L{tests.support.eca_parts}).  The marker interfaces used by C{wire()}
(L{IInventoryEvents}) also make swapped arguments fail loudly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer
from zope.interface import Interface, implementer

from ecs.control import User


class IEventSource(Interface):
    """The numbered live events of the interfaces (L{agents.eca.events.EventLog})."""

    def emit(type: str, data: dict[str, Any], partition: str | None = None) -> int:
        """Number, buffer and deliver one event; its number."""

    def subscribe(
        callback: Callable[[int, str, dict[str, Any]], None], partition_id: str | None = None
    ) -> Callable[[], None]:
        """Deliver the events (of one partition, and the global ones) until the returned callable is called."""

    def subscribe_batch(
        callback: Callable[[list[tuple[int, str, dict[str, Any]]]], None], partition_id: str | None = None
    ) -> Callable[[], None]:
        """
        Like L{subscribe}, but once per reactor turn with the turn's events
        (in order; never an empty list; only events emitted after the call).
        The list is shared by the subscribers: it must not be changed.
        """

    def events_since(event_id: int, partition_id: str | None = None) -> list[tuple[int, str, dict[str, Any]]] | None:
        """
        The buffered events after C{event_id}, or None when some were
        dropped or C{event_id} was never given (a previous ECA's).
        """


class ILogBook(Interface):
    """Operator log lines (L{agents.eca.logbook.LogBook})."""

    def log(level: str, source: str, message: str, partition: str | None, when: float | None = None) -> None:
        """A log line for operators: sent live and stored (in batches)."""


class IELogNotes(Interface):
    """Automatic entries of the electronic logbook (L{agents.eca.elog.ELog}), author C{ECS}."""

    def note(text: str, partition: str | None = None, run: int | None = None) -> None:
        """Write an automatic entry; never fails nor waits (a failed write is logged)."""


class IAudit(Interface):
    """The audit trail (L{agents.eca.audit.Audit})."""

    def audited(
        user: User, action: str, arguments: dict[str, Any], work: Callable[[], Awaitable[Any]]
    ) -> defer.Deferred[Any]:
        """Run C{work} and record the action with its outcome."""

    def record(user: str, action: str, arguments: dict[str, Any], outcome: str) -> defer.Deferred[Any]:
        """Record an action already done (or refused)."""


class IControlScopes(Interface):
    """Who holds which control scope (L{agents.eca.scopes.ControlScopes})."""

    def holder(scope: str) -> str | None:
        """The holder of C{scope} (cached), or None."""

    def require_holder(user: User, scope: str) -> Awaitable[None]:
        """Refuse unless C{user} holds C{scope}; counts as activity."""

    def dropped(scope: str, previous: str, reason: str) -> None:
        """The store dropped the holder of C{scope} (its partition was deleted)."""


class IRunBook(Interface):
    """Run records (L{agents.eca.runs.RunBook})."""

    def started(
        partition: str, tag: str | None, configs: dict[str, dict[str, Any]], operator: str, initial: bool = False,
        details: Any = None,
    ) -> Awaitable[None]:
        """
        The partition entered recording (C{initial}: its first record seen
        by this ECA): a new run record, unless its open run goes on;
        C{details} (an L{agents.eca.runs.RunDetails} or None) are what the
        start command said of the run: type, comment, crew, conditions.
        """

    def ended(partition: str, last_command: str | None, interrupted: bool = False) -> Awaitable[None]:
        """The partition left recording: close its run record, or hold it (C{interrupted}: the PCA was lost)."""

    def not_recording(partition: str) -> Awaitable[None]:
        """The first record this ECA sees of the partition is not recording: reconcile its open run."""

    def interrupted(partition: str, why: str) -> None:
        """The PCA restarted or was lost (C{why}, with the time): noted in the open run."""

    def connection(partition: str, connected: bool) -> None:
        """The PCA answers again, or does not."""

    def progress(partition: str) -> None:
        """A system of the partition is seen connected (a held run waits longer while they come back)."""

    def forget(partition: str) -> None:
        """The partition was deleted."""

    def load() -> defer.Deferred[None]:
        """Read the open runs back (at ECA start)."""

    def stop() -> None:
        """Cancel the timers (the ECA stops)."""


class IInventoryEvents(Interface):
    """What the partitions tell the inventory (back edge: L{agents.eca.partitions.Partitions.wire})."""

    def partition_seen(partition: str) -> None:
        """The PCA of C{partition} answers again, or its record changed."""

    def system_seen(partition: str, system: str) -> None:
        """A system of C{partition} is connected."""


class IExclusionEvents(Interface):
    """What the partitions tell the exclusions (back edge: L{agents.eca.partitions.Partitions.wire})."""

    def partition_fresh(partition: str) -> None:
        """A fresh snapshot of C{partition}'s PCA came (it started, restarted, or the ECA did)."""

    def partition_seen(partition: str) -> None:
        """The record of C{partition}'s PCA changed (its operation may have ended)."""


class IRecoveryEvents(Interface):
    """What the partitions tell the recovery rules (L{agents.eca.recovery.Recovery}; back edge, wired)."""

    def got_record(partition: Any, key: str, value: dict[str, Any] | None, old_excluded: bool) -> None:
        """A record of C{partition} (an L{agents.eca.partitions.Partition}) changed, after its effects."""

    def partition_fresh(partition: str) -> None:
        """A fresh snapshot of C{partition}'s PCA came: arm it."""


class IPartitionObserver(Interface):
    """What a L{agents.eca.link.PartitionLink} tells about the PCA it follows."""

    def got_record(key: str, value: dict[str, Any] | None) -> None:
        """A record of the PCA's table changed (None: removed)."""

    def got_reset(present: frozenset[str]) -> None:
        """A fresh snapshot replaced the table: C{present} are its keys."""

    def got_connected(connected: bool) -> None:
        """The PCA answers again, or does not any more."""

    def got_lost() -> None:
        """The PCA missed its heartbeats."""

    def got_log(level: str, source: str, message: str, when: float | None) -> None:
        """The PCA published a log line."""

    def got_progress(body: dict[str, Any]) -> None:
        """The PCA published configure progress."""


@implementer(IELogNotes)
class NoNotes:
    """Writes no automatic logbook entry (the default of the collaborators that write some; tests)."""

    def note(self, text: str, partition: str | None = None, run: int | None = None) -> None:
        """See L{IELogNotes.note}: nothing."""


#: The one L{NoNotes}.
NO_NOTES = NoNotes()
