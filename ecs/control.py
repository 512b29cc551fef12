# -*- test-case-name: tests.test_web -*-
"""
What the ECA offers to its user interfaces: the JSON API and web pages
(L{ecs.web.api}, L{ecs.gui.site}), the CLI over HTTP and the SSH shell.

L{IControlCenter} is the one door: every read goes through its getters and
every change through its named actions, which check roles and control
ownership, write the audit trail and tell the agents.  Interfaces never
touch the store or the agents themselves: the ECA is the single writer of
its data.

Errors are L{ControlError}s with a code that maps to an HTTP status:

    bad_request 400, unauthenticated 401, forbidden 403, not_found 404,
    conflict 409 (not possible now, or held by another user),
    locked 423 (partition locked by a management operation),
    unavailable 503 (an agent does not answer),
    unreachable, timeout, host_key, auth, failed 502 (a launcher failed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from zope.interface import Interface

HTTP_STATUS = {
    "bad_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "locked": 423,
    "unavailable": 503,
    # the database cannot be written (disk full, read-only): the action was
    # not done; safety commands (stop, abort) go through regardless
    "storage": 507,
    # too many tries (the login throttle): the reason says when to try again
    "too_many": 429,
    # a launcher failed (ecs.launch.LaunchError codes): 502
    "unreachable": 502,
    "timeout": 502,
    "host_key": 502,
    "auth": 502,
    "failed": 502,
}

ROLES = ("viewer", "operator", "expert", "admin")


class ControlError(Exception):
    """A refused or failed action: C{code} (see L{HTTP_STATUS}) and C{reason}."""

    def __init__(self, code: str, reason: str, **details: Any) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code if code in HTTP_STATUS else "conflict"
        self.reason = reason
        self.details = details

    @property
    def status(self) -> int:
        """The HTTP status for this error."""
        return HTTP_STATUS[self.code]

    def body(self) -> dict[str, Any]:
        """The JSON error body: C{{"error": code, "reason": text, ...details}}."""
        return {"error": self.code, "reason": self.reason, **self.details}


@attrs.frozen
class User:
    """An authenticated user."""

    name: str
    roles: tuple[str, ...]

    def has(self, role: str) -> bool:
        """Whether the user has C{role} or a higher one (admin > expert > operator > viewer)."""
        rank = {r: i for i, r in enumerate(ROLES)}
        return any(rank.get(r, -1) >= rank[role] for r in self.roles)


@attrs.frozen
class Session:
    """A login: the user and the token that authenticates later requests."""

    user: User
    token: str
    csrf: str


class IControlCenter(Interface):
    """The ECA, as its interfaces see it.  Methods returning data may be
    synchronous (marked) or return Deferreds."""

    # -- authentication ----------------------------------------------------

    def login(username: str, password: str, kind: str = "session") -> defer.Deferred[Session]:
        """Check the password; a new token (kind session or api). unauthenticated on failure."""

    def logout(token: str) -> defer.Deferred[None]:
        """Forget the token and release every control its user holds."""

    def authenticate(token: str) -> defer.Deferred[Session | None]:
        """The session of a token, or None (unknown or expired)."""

    # -- partitions (reads are synchronous: from memory) -------------------

    def partitions() -> list[dict[str, Any]]:
        """C{[{id, state, tag, controller, connected}]}."""

    def partition(partition_id: str) -> dict[str, Any]:
        """C{{id, state, tag, controller, connected, locked, allowed: [...], progress,
        systems: [{id, kind, state, raw_state, tag, comment, connected}]}}; not_found."""

    def unassigned() -> list[dict[str, Any]]:
        """Detectors in no partition, with their live states."""

    def systems() -> defer.Deferred[dict[str, Any]]:
        """C{{detector_types: {type: {table}}, global_systems: {id: {table}},
        detectors: [{id, type, partition}], partition_table, agent_table, tables:
        {key: {name, kind, initial, states: {state: summary}, rows: [[state,
        input, next]]}}}}: what exists and the state tables, the supervised
        agent's lifecycle (C{fsm/agent.yaml}) among them (see
        L{ecs.fsm.systems})."""

    def reload(user: User) -> defer.Deferred[dict[str, Any]]:
        """Read the detector types, global systems, state tables and partition
        sequence again, in the ECA and every connected PCA (admin, audited):
        C{{types_added, types_removed, types_changed: [names], tables_changed:
        [files], sequence_changed: bool, pcas: {partition: {ok, sequence,
        changes} or {ok: false, error, reason}}}}; where the ECA reads them
        again, C{recovery_changed}, C{recovery_counters_kept},
        C{recovery_counters_dropped}, C{sequences_added}, C{sequences_removed},
        C{sequences_changed}, C{sequences_running_as_started}; and
        C{never_excludable_excluded: [{partition, system, reason}]}.  A PCA
        uses a changed sequence now when Idle, else from its next configure
        from Idle.
        An invalid file: bad_request naming the file, key path (or line) and
        reason, C{problems} listing them, and nothing changes."""

    # -- control -------------------------------------------------------------

    def take_control(user: User, scope: str, force: bool = False) -> defer.Deferred[dict[str, Any]]:
        """Take control of a partition (scope = its id) or of the ECS (scope "ecs");
        conflict with C{holder} when someone else holds it; force needs admin."""

    def release_control(user: User, scope: str) -> defer.Deferred[None]:
        """Give control up."""

    def ecs_control() -> defer.Deferred[dict[str, Any]]:
        """Who holds the ECS control: C{{"scope": "ecs", "holder": name or None, "since": time or None}}."""

    def command(user: User, partition_id: str, command: str, body: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """configure/start/stop/abort/reset on a partition; the user must hold its
        control (operator role); the PCA's refusal comes back as conflict/locked."""

    def exclude(user: User, partition_id: str, system: str) -> defer.Deferred[dict[str, Any]]:
        """Leave C{system} out of the partition's configure and runs (it stays assigned and
        watched, shown as Excluded); the user must hold the partition's control; conflict
        while it records or configures, or for a system never excluded; not_found for an
        unknown system; audited.  Fires with the PCA's record, C{system} and C{excluded}."""

    def include(user: User, partition_id: str, system: str) -> defer.Deferred[dict[str, Any]]:
        """Take an excluded C{system} back (the next configure configures it); as L{exclude}."""

    # -- management (need the ECS control, expert role) ---------------------

    def create_partition(user: User, partition_id: str) -> defer.Deferred[dict[str, Any]]:
        """A new partition (its PCA is registered or launched)."""

    def delete_partition(user: User, partition_id: str, force: bool = False) -> defer.Deferred[None]:
        """Delete a partition; its detectors become unassigned."""

    def create_detector(user: User, detector_id: str, type: str) -> defer.Deferred[dict[str, Any]]:
        """A new, unassigned detector of a known type."""

    def delete_detector(user: User, detector_id: str, force: bool = False) -> defer.Deferred[None]:
        """Delete an unassigned detector."""

    def move_detector(user: User, detector_id: str, to: str | None,
                      force: bool = False) -> defer.Deferred[dict[str, Any]]:
        """Move a detector to partition C{to} (None: unassigned), two-phase."""

    # -- configurations and tags --------------------------------------------

    def configs(system: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """Latest version of every configuration."""

    def config(config_id: str, version: int | None = None) -> defer.Deferred[dict[str, Any]]:
        """One configuration (with C{versions}); not_found."""

    def save_config(user: User, config_id: str, system: str,
                    parameters: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """A new version (expert role)."""

    def delete_config(user: User, config_id: str) -> defer.Deferred[None]:
        """Delete (expert); conflict while a tag uses it."""

    def tags(partition_id: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """Every tag; with a partition, each with compatible/missing/extra."""

    def tag(name: str) -> defer.Deferred[dict[str, Any]]:
        """One tag: C{{name, configs: {system: config_id}}}."""

    def save_tag(user: User, name: str, config_ids: list[str]) -> defer.Deferred[dict[str, Any]]:
        """Create or replace (expert)."""

    def delete_tag(user: User, name: str) -> defer.Deferred[None]:
        """Delete (expert)."""

    # -- users (admin) -------------------------------------------------------

    def users(user: User) -> defer.Deferred[list[dict[str, Any]]]:
        """Every user with roles (never hashes)."""

    def add_user(user: User, name: str, password: str, roles: list[str]) -> defer.Deferred[dict[str, Any]]:
        """A new user."""

    def update_user(user: User, name: str, password: str | None,
                    roles: list[str] | None) -> defer.Deferred[dict[str, Any]]:
        """Change password and/or roles."""

    def delete_user(user: User, name: str) -> defer.Deferred[None]:
        """Delete a user (not yourself)."""

    # -- agents: placement and supervision (see agents.eca.supervisor.supervisor) ---------

    def agents() -> list[dict[str, Any]]:
        """C{[{agent, kind, id, host, launcher, options, autostart, registered,
        status: {running, pid, job_id, exit_code, since, detail},
        supervision: {state, restarts, next_restart, reason}}]}, by name."""

    def agent(agent: str) -> dict[str, Any]:
        """One agent (C{"<kind>:<id>"}) as in L{agents}; not_found."""

    def set_placement(user: User, agent: str, host: str, launcher: str, options: dict[str, Any],
                      autostart: bool) -> defer.Deferred[dict[str, Any]]:
        """Place an agent (expert): insert or replace; the agent dict."""

    def delete_placement(user: User, agent: str) -> defer.Deferred[None]:
        """Forget a placement (expert); conflict while the agent runs."""

    def agent_command(user: User, agent: str, command: str) -> defer.Deferred[dict[str, Any]]:
        """start, stop or restart an agent (expert); the agent dict after it.
        A launcher failure is an error with the launcher's code (502)."""

    def agent_output(user: User, agent: str, lines: int) -> defer.Deferred[dict[str, Any]]:
        """C{{agent, text}}: the last lines of its output (expert)."""

    def inject(user: User, system: str, body: Any) -> defer.Deferred[dict[str, Any]]:
        """
        Report a fault to controller C{system} through the ECA (expert;
        audited): C{body} is C{{"what": "error" | "resolved" |
        "detector_error", "partition"?, "detector"?}}; the controller's
        answer.  404 when it is not running.
        """

    # -- alarms (see agents.eca.alarms) ----------------------------------------

    def alarms(user: User, include_all: bool = False,
               partition: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """The active alarms (not cleared, or not acknowledged), newest first,
        without those shelved now; C{include_all}: every alarm, history and
        shelved ones too; C{partition}: that partition's only.  Each alarm is
        C{{id, kind, source, partition, severity (warning, error, critical),
        text, action, raised_at, cleared_at, acknowledged_by, acknowledged_at,
        shelved_until, shelved_by, shelve_reason}}.  Viewer and up."""

    def acknowledge_alarm(user: User, alarm_id: int) -> defer.Deferred[dict[str, Any]]:
        """Acknowledge an alarm (operator and up; audited); the alarm.
        not_found for an unknown id; acknowledging again changes nothing."""

    def shelve_alarm(user: User, alarm_id: int, until: float, reason: str) -> defer.Deferred[dict[str, Any]]:
        """Hide an active alarm from the default list until C{until} (absolute
        unix seconds, in the future, at most 30 days ahead) with a reason (1 to
        500 characters): expert and up; audited; the alarm.  bad_request naming
        the field, not_found, conflict when it is no longer active."""

    # -- runs, logs, events, metrics -----------------------------------------

    def runs(partition_id: str | None = None, limit: int = 100, run_type: str | None = None,
             since: float | None = None, until: float | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """Run records, newest first: of one partition, of one type, started at
        or after C{since} and before C{until}.  Each has C{type},
        C{start_comment}, C{end_comment}, C{crew} and C{conditions} beside the
        tag and configuration versions."""

    def run_types() -> list[str]:
        """The declared run types (settings C{runs.types}) a start may name (synchronous)."""

    def audit(user: User, who: str | None = None, action: str | None = None, since: float | None = None,
              until: float | None = None, limit: int = 100,
              before: int | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """The audit trail, newest first (expert and up): entries C{{id, time,
        user, action, arguments, outcome}} of user C{who}, of C{action},
        written at or after C{since} and before C{until}, with id below
        C{before} (the next page), at most C{limit}."""

    def logbook(user: User, text: str | None = None, partition: str | None = None, run: int | None = None,
                author: str | None = None, since: float | None = None, until: float | None = None,
                limit: int = 100, before: int | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """The electronic logbook, newest first (viewer and up): entries
        C{{id, time, author, automatic, text, partition, run, corrects,
        corrected_by (ids), attachments ({n, name, content_type, size})}}
        containing C{text} (case-insensitive), of a partition, run or author,
        written at or after C{since} and before C{until}, with id below
        C{before} (the next page), at most C{limit}."""

    def add_logbook_entry(user: User, text: str, partition: str | None = None, run: int | None = None,
                          corrects: int | None = None,
                          attachments: Sequence[Mapping[str, Any]] = ()) -> defer.Deferred[dict[str, Any]]:
        """Write a logbook entry (operator and up); the entry.  C{corrects}:
        the id of the entry it corrects (entries are never changed nor
        deleted); C{attachments}: C{{name, content_type, data (bytes)}}
        each, at most 3 of at most 1 MiB.  bad_request naming the field,
        not_found for an unknown C{corrects}."""

    def logbook_attachment(user: User, entry: int, n: int) -> defer.Deferred[dict[str, Any]]:
        """Attachment C{n} (from 1) of logbook entry C{entry} (viewer and
        up): C{{name, content_type, data (bytes)}}; not_found."""

    def recovery_rules(user: User) -> dict[str, Any]:
        """The recovery rules in force (viewer and up): C{{source, rules}},
        each rule a row C{{scope (defaults, type, system), name, event,
        state, action, max, within}} (L{ecs.fsm.recovery.RecoveryRules.table})."""

    def run_sequences(user: User) -> list[dict[str, Any]]:
        """The declared run sequences (viewer and up): C{{name, description,
        steps (each described), total}} each, by name."""

    def run_sequence(user: User, name: str, partition_id: str) -> defer.Deferred[dict[str, Any]]:
        """Run sequence C{name} on a partition as C{user} (operator, the
        partition's controller; its steps are that user's commands); its
        status.  not_found for an unknown sequence or partition, conflict
        when one runs there already or the user does not hold control."""

    def sequence_status(user: User, partition_id: str) -> dict[str, Any]:
        """The partition's run sequence, running or the last one (viewer and
        up): C{{partition, sequence, user, state (running, paused, done,
        failed, aborted, interrupted; none when never run), step (from 1),
        total, description, pause_wanted, error, failed_step, started_at,
        ended_at}}."""

    def sequence_control(user: User, partition_id: str, action: str) -> defer.Deferred[dict[str, Any]]:
        """C{pause} (after the current step), C{resume} or C{abort} (stops
        waiting and aborts the partition) the partition's sequence (operator,
        its controller); its status.  conflict when none runs."""

    def logs(partition_id: str | None, level: str | None, since: float | None, q: str | None, limit: int,
             until: float | None = None, before_id: int | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """Stored log events, newest first (C{since} <= time < C{until}; with
        C{before_id}, the events after C{(until, before_id)} in (time, id)
        order: the next page, with no event of the same time skipped)."""

    def subscribe(callback: Callable[[int, str, dict[str, Any]], None],
                  partition_id: str | None = None) -> Callable[[], None]:
        """Live events C{callback(event_id, type, data)}: types state, progress,
        log, control, allowed, agent, alarm (the alarm with C{change}: raised,
        cleared, acknowledged or shelved); returns the unsubscribe function."""

    def events_since(event_id: int, partition_id: str | None = None) -> list[tuple[int, str, dict[str, Any]]] | None:
        """Buffered events after C{event_id} (for Last-Event-ID), or None when
        they are no longer buffered (the client must reload)."""

    def metrics() -> bytes | str:
        """The Prometheus text exposition of the ECA's metrics (synchronous):
        bytes as C{prometheus_client.generate_latest} gives them, or text;
        C{/metrics} serves it as C{prometheus_client.CONTENT_TYPE_LATEST}."""
