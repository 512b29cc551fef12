# -*- test-case-name: tests.test_store -*-
"""
The ECA's database: L{Store} is the only way to it.

One SQLite file (by convention C{<state dir>/ecs.sqlite}, see
L{database_path}) holds partitions, detectors, global systems,
configurations (versioned), tags, users, roles, tokens, control ownership,
runs, the audit trail, log events, alarms, exclusions and the electronic
logbook.

How it is used::

    store = await Store.open(database_path(state_dir), reactor)
    await store.add_partition("p1")
    row = await store.take_control("p1", "alice")
    ...
    await store.close()

Rules the module keeps (and its tests check):

  - B{One worker.}  Every statement runs on the single thread of a
    L{twisted.enterprise.adbapi.ConnectionPool} with one connection; the
    reactor never waits on SQL.  Every public method returns a L{Deferred}.
  - B{Atomic.}  Every operation is one transaction (C{BEGIN IMMEDIATE} for
    writes, so another process writing the same file waits up to
    L{BUSY_TIMEOUT_MS} instead of failing half-way); an exception rolls the
    whole operation back.
  - B{Errors propagate} as failed Deferreds of L{StoreError} with a
    C{.code} (L{CODES}) and a C{.reason} naming the item.  No C{sqlite3}
    exception reaches a caller: integrity errors become C{conflict}, other
    database errors C{unavailable}.
  - B{Plain values.}  Results are frozen dataclasses, lists and dicts, never
    cursors or rows.
  - B{Bound parameters.}  Values are never formatted into SQL; names are
    checked against L{NAME_RE} (L{check_name}) before any SQL runs.
  - B{Versioned schema.}  L{UPGRADES} maps each version to its statements;
    L{Store.open} applies the missing ones in order, one transaction per
    version, and refuses a database newer than L{SCHEMA_VERSION}.

Choices worth knowing:

  - Deleting a configuration marks it deleted (it disappears from
    L{Store.configs} and L{Store.config} without a version); every version
    stays readable with L{Store.config}C{(id, version)} and
    L{Store.config_versions}, and saving the same id again continues the
    version numbers, so a (config id, version) pair always means one
    parameter set.  Runs also keep a full snapshot of their parameters.
  - Detector types are not stored here (they come from
    C{etc/subsystems.yaml}); the caller validates them.
  - A detector id may not also be a global system id (configurations and
    tags are keyed by system id).
  - The last admin cannot be deleted or lose the admin role.
  - Deleting a user removes their roles, tokens and control ownership;
    runs and audit entries keep the name as text.
  - Timestamps are POSIX seconds from the injected clock.

The package, one concern a module (the public names are all importable from
C{ecs.store} itself):

  - L{ecs.store.errors}: L{StoreError}, the shared constants and the
    argument checks;
  - L{ecs.store.rows}: the result dataclasses;
  - L{ecs.store.schema}: L{SCHEMA_VERSION} and L{UPGRADES};
  - L{ecs.store.txn}: how an operation runs (one transaction on the
    database thread, a L{Deferred} for the caller);
  - L{ecs.store.core}: L{Store}, its opening, upgrading and closing;
  - L{ecs.store.inventory}, L{ecs.store.configs}, L{ecs.store.accounts},
    L{ecs.store.records}, L{ecs.store.alarms}, L{ecs.store.exclusions},
    L{ecs.store.elog} (the electronic logbook): the
    operations of each area,
    mixed into L{Store}.
"""

from __future__ import annotations

from ecs.config.logs import LEVELS as LOG_LEVELS
from ecs.store.alarms import ALARM_KINDS, MAX_SHELVE_REASON, SEVERITIES, AlarmRow
from ecs.store.core import BUSY_TIMEOUT_MS, DATABASE_NAME, Store, database_path
from ecs.store.elog import Attachment, AttachmentInfo, ELogRow
from ecs.store.errors import (
    ANY,
    CODES,
    ECS_SCOPE,
    LONG_NAME_RE,
    NAME_RE,
    ROLES,
    TOKEN_KINDS,
    StoreError,
    check_name,
)
from ecs.store.exclusions import ExclusionRow
from ecs.store.rows import (
    AuditRow,
    ConfigRow,
    ControlRow,
    DetectorRow,
    LogEntry,
    LogRow,
    PartitionRow,
    RunRow,
    TagRow,
    TokenRow,
    UserRow,
)
from ecs.store.schema import SCHEMA_VERSION, UPGRADES

__all__ = [
    "ALARM_KINDS",
    "ANY",
    "BUSY_TIMEOUT_MS",
    "CODES",
    "DATABASE_NAME",
    "ECS_SCOPE",
    "LOG_LEVELS",
    "LONG_NAME_RE",
    "MAX_SHELVE_REASON",
    "NAME_RE",
    "ROLES",
    "SCHEMA_VERSION",
    "SEVERITIES",
    "TOKEN_KINDS",
    "UPGRADES",
    "AlarmRow",
    "Attachment",
    "AttachmentInfo",
    "AuditRow",
    "ConfigRow",
    "ControlRow",
    "DetectorRow",
    "ELogRow",
    "ExclusionRow",
    "LogEntry",
    "LogRow",
    "PartitionRow",
    "RunRow",
    "Store",
    "StoreError",
    "TagRow",
    "TokenRow",
    "UserRow",
    "check_name",
    "database_path",
]
