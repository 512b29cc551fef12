# -*- test-case-name: tests.test_store -*-
"""
The database schema: L{SCHEMA_VERSION}, the statements of each version
(L{UPGRADES}) and the table that records the version of a database.

Applying the versions is L{ecs.store.core}'s job (L{ecs.store.Store.open}).
"""

from __future__ import annotations

from ecs.store.errors import ROLES, TOKEN_KINDS
from ecs.store.txn import _one, _Txn


def _v1() -> list[str]:
    roles = ", ".join(f"'{r}'" for r in ROLES)  # constants, not user values
    kinds = ", ".join(f"'{k}'" for k in TOKEN_KINDS)
    return [
        """CREATE TABLE partitions (
            id TEXT PRIMARY KEY,
            created REAL NOT NULL)""",
        # No ON DELETE action: delete_partition moves or refuses explicitly.
        """CREATE TABLE detectors (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            partition TEXT REFERENCES partitions(id),
            created REAL NOT NULL)""",
        "CREATE INDEX detectors_by_partition ON detectors(partition)",
        "CREATE TABLE global_systems (id TEXT PRIMARY KEY)",
        # One row per configuration id: its system (fixed) and deletion mark.
        """CREATE TABLE configurations (
            config_id TEXT PRIMARY KEY,
            system TEXT NOT NULL,
            deleted REAL,
            UNIQUE (config_id, system))""",
        "CREATE INDEX configurations_by_system ON configurations(system)",
        """CREATE TABLE configuration_versions (
            config_id TEXT NOT NULL REFERENCES configurations(config_id),
            version INTEGER NOT NULL CHECK (version >= 1),
            parameters TEXT NOT NULL,
            created REAL NOT NULL,
            author TEXT NOT NULL,
            PRIMARY KEY (config_id, version))""",
        """CREATE TABLE tags (
            name TEXT PRIMARY KEY,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            author TEXT NOT NULL)""",
        # The system is copied into the member row (and kept equal to the
        # configuration's by the composite foreign key) so that a unique
        # index can hold a tag to one configuration per system.
        """CREATE TABLE tag_members (
            tag TEXT NOT NULL REFERENCES tags(name) ON DELETE CASCADE,
            config_id TEXT NOT NULL,
            system TEXT NOT NULL,
            PRIMARY KEY (tag, config_id),
            FOREIGN KEY (config_id, system)
                REFERENCES configurations(config_id, system))""",
        "CREATE UNIQUE INDEX tag_members_one_per_system ON tag_members(tag, system)",
        "CREATE INDEX tag_members_by_config ON tag_members(config_id, system)",
        """CREATE TABLE users (
            name TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created REAL NOT NULL)""",
        f"""CREATE TABLE user_roles (
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ({roles})),
            PRIMARY KEY (user, role))""",
        f"""CREATE TABLE tokens (
            token_hash TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ({kinds})),
            created REAL NOT NULL,
            last_used REAL NOT NULL,
            expires REAL)""",
        "CREATE INDEX tokens_by_user ON tokens(user)",
        """CREATE TABLE control (
            scope TEXT PRIMARY KEY,
            holder TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            since REAL NOT NULL,
            last_activity REAL NOT NULL)""",
        "CREATE INDEX control_by_holder ON control(holder)",
        # Runs outlive partitions and users: plain text, no foreign keys.
        """CREATE TABLE runs (
            number INTEGER PRIMARY KEY,
            partition TEXT NOT NULL,
            tag TEXT,
            configs TEXT NOT NULL,
            operator TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,
            outcome TEXT,
            CHECK ((ended IS NULL) = (outcome IS NULL)))""",
        "CREATE UNIQUE INDEX runs_one_open ON runs(partition) WHERE ended IS NULL",
        "CREATE INDEX runs_by_partition ON runs(partition, number)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            user TEXT NOT NULL,
            action TEXT NOT NULL,
            arguments TEXT NOT NULL,
            outcome TEXT NOT NULL)""",
        "CREATE INDEX audit_by_user ON audit(user, id)",
        "CREATE INDEX audit_by_action ON audit(action, id)",
        """CREATE TABLE logs (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            partition TEXT,
            level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 4),
            source TEXT NOT NULL,
            message TEXT NOT NULL)""",
        "CREATE INDEX logs_by_time ON logs(time)",
        "CREATE INDEX logs_by_partition ON logs(partition, time)",
    ]


def _v2() -> list[str]:
    """Placement of agents, their current launch records, users' SSH keys."""
    return [
        # Where and how each agent runs (issue 6).  options is a JSON object
        # whose keys depend on the launcher (ecs.launch).
        """CREATE TABLE placements (
            agent TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('pca', 'detector', 'global', 'simhost')),
            host TEXT NOT NULL,
            launcher TEXT NOT NULL CHECK (launcher IN ('local', 'ssh', 'slurm')),
            options TEXT NOT NULL DEFAULT '{}',
            autostart INTEGER NOT NULL DEFAULT 1 CHECK (autostart IN (0, 1)),
            updated REAL NOT NULL,
            author TEXT NOT NULL)""",
        # The launch record of each agent the ECA started (pid, process
        # group, job id...): what a restarted ECA adopts instead of starting
        # a duplicate.  Deleted when the agent is stopped or found gone.
        """CREATE TABLE launches (
            agent TEXT PRIMARY KEY,
            launcher TEXT NOT NULL,
            host TEXT NOT NULL,
            record TEXT NOT NULL,
            started REAL NOT NULL)""",
        # OpenSSH public keys of users, for the SSH admin shell.
        """CREATE TABLE user_keys (
            fingerprint TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            key TEXT NOT NULL,
            comment TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL)""",
        "CREATE INDEX user_keys_by_user ON user_keys(user)",
    ]


def _v3() -> list[str]:
    """Alarms (issue 13; L{ecs.store.alarms})."""
    return [
        # Plain text, no foreign keys: alarms outlive partitions and users.
        """CREATE TABLE alarms (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT NOT NULL,
            partition TEXT,
            severity TEXT NOT NULL CHECK (severity IN ('warning', 'error', 'critical')),
            text TEXT NOT NULL,
            action TEXT NOT NULL,
            raised_at REAL NOT NULL,
            cleared_at REAL,
            acknowledged_by TEXT,
            acknowledged_at REAL,
            shelved_until REAL,
            shelved_by TEXT,
            shelve_reason TEXT,
            CHECK ((acknowledged_by IS NULL) = (acknowledged_at IS NULL)))""",
        # At most one active alarm (not cleared, or not acknowledged) per condition.
        """CREATE UNIQUE INDEX alarms_one_active ON alarms(kind, source, IFNULL(partition, ''))
            WHERE cleared_at IS NULL OR acknowledged_at IS NULL""",
        "CREATE INDEX alarms_by_partition ON alarms(partition, id)",
    ]


def _v4_runs() -> list[str]:
    """Run records written ahead of the commands (issue 11; L{ecs.store.records})."""
    return [
        # What interrupted a run that went on (a PCA restart, a lost PCA).
        "ALTER TABLE runs ADD COLUMN note TEXT",
        # The stop or abort sent for an open run (or a start: then the run
        # had stopped recording), written before the request goes out (with
        # when, and its audit row), so that a restarted ECA closes the run
        # with the outcome of the command the PCA carried out.
        "ALTER TABLE runs ADD COLUMN pending TEXT CHECK (pending IN ('stop', 'abort', 'start'))",
        "ALTER TABLE runs ADD COLUMN pending_at REAL",
        "ALTER TABLE runs ADD COLUMN pending_audit INTEGER",
        "CREATE INDEX audit_pending ON audit(outcome) WHERE outcome = 'pending'",
    ]


def _v4_accounts() -> list[str]:
    """Sessions and tokens that expire and can be listed and revoked (issues 11, 12)."""
    return [
        # Every token now expires: housekeeping deletes the expired ones by this
        # index, and a user's sessions are found by tokens_by_user.
        "CREATE INDEX tokens_by_expiry ON tokens(expires)",
    ]


def _v4_management() -> list[str]:
    """Management operations recorded before they act (issue 11; moves, locks)."""
    return [
        # The journal of management operations (L{ecs.store.inventory}): a
        # row is written before the operation acts (phase 'prepared'), its
        # change of the inventory commits with phase 'committed', and it is
        # closed with its outcome.  A row still open when the ECA starts is an
        # interrupted operation: rolled forward (committed) or back.
        """CREATE TABLE management_ops (
            id INTEGER PRIMARY KEY,
            action TEXT NOT NULL CHECK (action IN ('move_detector', 'delete_detector', 'delete_partition')),
            detector TEXT,
            source TEXT,
            target TEXT,
            force INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),
            user TEXT NOT NULL,
            phase TEXT NOT NULL CHECK (phase IN ('prepared', 'committed')),
            started REAL NOT NULL,
            ended REAL,
            outcome TEXT,
            CHECK ((ended IS NULL) = (outcome IS NULL)))""",
        # At most one open operation per detector (the ECA also locks in memory).
        "CREATE UNIQUE INDEX management_ops_one_per_detector ON management_ops(detector) WHERE ended IS NULL",
        "CREATE INDEX management_ops_open ON management_ops(ended, id)",
    ]


def _v5_runs() -> list[str]:
    """Run types, comments, shift crew and conditions (issue 14)."""
    return [
        # One of the declared run types (settings runs.types), or NULL.
        "ALTER TABLE runs ADD COLUMN type TEXT",
        "ALTER TABLE runs ADD COLUMN start_comment TEXT",
        # Written with the stop that ends the run (before its request goes out).
        "ALTER TABLE runs ADD COLUMN end_comment TEXT",
        # JSON: {"started_by": user, "control_holder": user, "ecs_control": user or null}.
        "ALTER TABLE runs ADD COLUMN crew TEXT NOT NULL DEFAULT '{}'",
        # JSON: free {key: scalar} conditions (ecs.runinfo.check_conditions).
        "ALTER TABLE runs ADD COLUMN conditions TEXT NOT NULL DEFAULT '{}'",
        "CREATE INDEX runs_by_type ON runs(type, number)",
        "CREATE INDEX runs_by_start ON runs(started)",
        # The audit page and `ecs audit` filter by time.
        "CREATE INDEX audit_by_time ON audit(time, id)",
    ]


def _v5_exclusions() -> list[str]:
    """Systems excluded from their partition's runs (issue 14)."""
    return [
        # The exclusions in force (the ECA's truth: PCAs are made to agree).
        """CREATE TABLE exclusions (
            partition TEXT NOT NULL REFERENCES partitions(id) ON DELETE CASCADE,
            system TEXT NOT NULL,
            excluded_by TEXT NOT NULL,
            excluded_at REAL NOT NULL,
            PRIMARY KEY (partition, system))""",
        # Who was excluded from each run: copied when the run row is written,
        # in its transaction.  Runs outlive partitions: no foreign keys.
        """CREATE TABLE run_exclusions (
            run INTEGER NOT NULL,
            system TEXT NOT NULL,
            excluded_by TEXT NOT NULL,
            excluded_at REAL NOT NULL,
            PRIMARY KEY (run, system))""",
        """CREATE TRIGGER runs_record_exclusions AFTER INSERT ON runs BEGIN
            INSERT INTO run_exclusions (run, system, excluded_by, excluded_at)
            SELECT NEW.number, system, excluded_by, excluded_at FROM exclusions
            WHERE partition = NEW.partition;
        END""",
        # A detector that leaves its partition (moved, deleted) leaves its exclusion behind.
        """CREATE TRIGGER detectors_moved_exclusions AFTER UPDATE OF partition ON detectors
            WHEN OLD.partition IS NOT NEW.partition BEGIN
            DELETE FROM exclusions WHERE partition = OLD.partition AND system = OLD.id;
        END""",
        """CREATE TRIGGER detectors_deleted_exclusions AFTER DELETE ON detectors BEGIN
            DELETE FROM exclusions WHERE partition = OLD.partition AND system = OLD.id;
        END""",
    ]


def _v5_logbook() -> list[str]:
    """The electronic logbook (issue 14; L{ecs.store.elog}): entries are never changed nor deleted."""
    return [
        # Plain text, no foreign keys to partitions or runs: entries outlive them.
        # corrects: the entry this one corrects (a correction is a new entry).
        """CREATE TABLE logbook_entries (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            author TEXT NOT NULL,
            automatic INTEGER NOT NULL DEFAULT 0 CHECK (automatic IN (0, 1)),
            text TEXT NOT NULL CHECK (length(text) BETWEEN 1 AND 10000),
            partition TEXT,
            run INTEGER,
            corrects INTEGER REFERENCES logbook_entries(id))""",
        "CREATE INDEX logbook_by_partition ON logbook_entries(partition, id)",
        "CREATE INDEX logbook_by_run ON logbook_entries(run, id)",
        "CREATE INDEX logbook_by_author ON logbook_entries(author, id)",
        "CREATE INDEX logbook_by_time ON logbook_entries(time, id)",
        "CREATE INDEX logbook_by_corrects ON logbook_entries(corrects) WHERE corrects IS NOT NULL",
        # Files attached to an entry, numbered from 1 (kept small: ecs.store.elog's limits).
        """CREATE TABLE logbook_attachments (
            entry INTEGER NOT NULL REFERENCES logbook_entries(id),
            n INTEGER NOT NULL CHECK (n >= 1),
            name TEXT NOT NULL,
            content_type TEXT NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (entry, n))""",
        # Nothing in the logbook is ever changed or deleted, whoever asks.
        """CREATE TRIGGER logbook_entries_kept BEFORE UPDATE ON logbook_entries BEGIN
            SELECT RAISE(ABORT, 'logbook entries are never changed');
        END""",
        """CREATE TRIGGER logbook_entries_never_deleted BEFORE DELETE ON logbook_entries BEGIN
            SELECT RAISE(ABORT, 'logbook entries are never deleted');
        END""",
        """CREATE TRIGGER logbook_attachments_kept BEFORE UPDATE ON logbook_attachments BEGIN
            SELECT RAISE(ABORT, 'logbook attachments are never changed');
        END""",
        """CREATE TRIGGER logbook_attachments_never_deleted BEFORE DELETE ON logbook_attachments BEGIN
            SELECT RAISE(ABORT, 'logbook attachments are never deleted');
        END""",
    ]


def _v6_run_exclusions() -> list[str]:
    """A system excluded while its partition records (a recovery rule's exclude_and_continue) is named in that run."""
    return [
        """CREATE TRIGGER exclusions_during_run AFTER INSERT ON exclusions BEGIN
            INSERT OR IGNORE INTO run_exclusions (run, system, excluded_by, excluded_at)
            SELECT number, NEW.system, NEW.excluded_by, NEW.excluded_at FROM runs
            WHERE partition = NEW.partition AND ended IS NULL;
        END""",
    ]


SCHEMA_VERSION = 6
"""The schema version this code reads and writes."""

UPGRADES: dict[int, list[str]] = {
    1: _v1(),
    2: _v2(),
    3: _v3(),
    4: _v4_runs() + _v4_management() + _v4_accounts(),
    5: _v5_runs() + _v5_exclusions() + _v5_logbook(),
    6: _v6_run_exclusions(),
}
"""
The statements that bring a database from version C{n - 1} to C{n}, for
each C{n} from 1 to L{SCHEMA_VERSION}.  Each version is applied in one
transaction.  Add a version by adding an entry; never edit a shipped one.
"""

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL)"""


def _read_version(txn: _Txn) -> int:
    txn.execute(_VERSION_TABLE)
    txn.execute("INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING")
    return int(_one(txn, "SELECT version FROM schema_version WHERE id = 1")[0])
