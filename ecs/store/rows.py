# -*- test-case-name: tests.test_store -*-
"""
The results of store operations: frozen dataclasses of plain values, never
cursors or rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PartitionRow:
    """A partition."""

    id: str
    created: float


@dataclass(frozen=True, slots=True)
class DetectorRow:
    """A detector and the partition it is assigned to (C{None}: unassigned)."""

    id: str
    type: str
    partition: str | None


@dataclass(frozen=True, slots=True)
class ConfigRow:
    """One version of a configuration: a parameter set for one system."""

    config_id: str
    version: int
    system: str
    parameters: dict[str, Any]
    created: float
    author: str

    def snapshot(self) -> dict[str, Any]:
        """The form stored in a run: C{{config_id, version, parameters}}."""
        return {"config_id": self.config_id, "version": self.version, "parameters": self.parameters}


@dataclass(frozen=True, slots=True)
class TagRow:
    """A tag: at most one configuration per system."""

    name: str
    configs: dict[str, str]
    created: float
    updated: float
    author: str


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user, with roles ordered weakest first (L{ROLES})."""

    name: str
    password_hash: str = field(repr=False)
    roles: tuple[str, ...]
    created: float


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A bearer token (only its hash is stored)."""

    token_hash: str = field(repr=False)
    user: str
    kind: str
    created: float
    last_used: float
    expires: float | None


@dataclass(frozen=True, slots=True)
class ControlRow:
    """
    Who controls a scope (a partition id or L{ECS_SCOPE}).

    @ivar replaced: after a forced L{Store.take_control}, the holder it
        displaced; otherwise C{None}.
    """

    scope: str
    holder: str
    since: float
    last_activity: float
    replaced: str | None = None


@dataclass(frozen=True, slots=True)
class RunRow:
    """
    A run.  C{configs} is the snapshot C{{system: {config_id, version,
    parameters}}}; C{ended} and C{outcome} are C{None} while it is open;
    C{pending} is the stop or abort written ahead of its request.
    """

    number: int
    partition: str
    tag: str | None
    configs: dict[str, dict[str, Any]]
    operator: str
    started: float
    ended: float | None
    outcome: str | None
    #: What interrupted the run while it went on (a PCA restart...), or None.
    note: str | None = None
    #: The stop or abort sent for it and not yet seen carried out, or None.
    pending: str | None = None
    #: When that command was written (before it was sent).
    pending_at: float | None = None
    #: The run type (one of the declared ones), or None.
    type: str | None = None
    #: The operator's comment at start, and the one given with the stop that ended it.
    start_comment: str | None = None
    end_comment: str | None = None
    #: Who was on duty: C{{started_by, control_holder, ecs_control}} (user names or None).
    crew: dict[str, str | None] = field(default_factory=dict)
    #: Free conditions C{{key: scalar}} given at start.
    conditions: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit-trail entry."""

    id: int
    time: float
    user: str
    action: str
    arguments: dict[str, Any]
    outcome: str


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A log event to store (L{Store.add_logs}); C{level} is one of L{LOG_LEVELS}."""

    time: float
    level: str
    source: str
    message: str
    partition: str | None = None


@dataclass(frozen=True, slots=True)
class LogRow:
    """A stored log event."""

    id: int
    time: float
    partition: str | None
    level: str
    source: str
    message: str
