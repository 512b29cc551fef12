# -*- test-case-name: tests.test_web -*-
"""
An in-memory L{IControlCenter} for the web tests.

It keeps the rules the real center keeps where the web layer depends on
them (roles, control holders with conflict and admin force, the ECS
control for management, partition locks, allowed commands per state, an
event buffer with ids) and records what it was asked (C{commands}).  It is
held honest by C{FakeControlCenterTests}: C{verifyObject} plus a check that
every method's parameters have the interface's names.
"""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from ecs.control import ControlError, IControlCenter, Session, User

PASSWORD = "secret"

#: state -> commands allowed in it, and what each command leads to.
TRANSITIONS = {
    "Idle": {"configure": "Configured", "reset": "Idle"},
    "Configured": {"start": "Running", "abort": "Idle", "configure": "Configured", "reset": "Configured"},
    "Running": {"stop": "Configured", "abort": "Idle"},
}


def _deferred(f: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    """Run C{f} and answer a Deferred (errors as failed Deferreds, as the real center does)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return defer.maybeDeferred(f, *args, **kwargs)

    return wrapper


@implementer(IControlCenter)
class FakeControlCenter:
    """In-memory control center with users, tokens, control, one partition 'demo'."""

    def __init__(self, buffer_size: int = 50) -> None:
        self.passwords: dict[str, str] = {}
        self.roles: dict[str, tuple[str, ...]] = {}
        for name, roles in [("admin", ("admin",)), ("expert", ("expert",)), ("operator", ("operator",)),
                            ("operator2", ("operator",)), ("viewer", ("viewer",)), ("nobody", ())]:
            self.passwords[name] = PASSWORD
            self.roles[name] = roles
        self.sessions: dict[str, Session] = {}
        self.logins: list[tuple[str, str]] = []
        self.holders: dict[str, str] = {}
        self.commands: list[tuple[str, str, str, dict[str, Any]]] = []
        self.audit_log: list[tuple[str, str, tuple[Any, ...]]] = []
        #: What C{audit} lists (the store's rows as dicts), oldest first.
        self.audit_entries: list[dict[str, Any]] = [
            {"id": i, "time": 100.0 * i, "user": user, "action": action, "arguments": {}, "outcome": "ok"}
            for i, (user, action) in enumerate([("operator", "take_control"), ("operator", "start"),
                                                 ("expert", "save_tag"), ("operator", "stop")], start=1)
        ]
        #: The electronic logbook's entries, oldest first (with their attachments' bytes).
        self.logbook_entries: list[dict[str, Any]] = []
        self.declared_run_types = ["physics", "calibration", "cosmics", "test"]
        self.detector_types = {"sts", "mvd", "tof", "trd", "rich"}
        #: What the next reload finds: problems (refused) or new detector types.
        self.reload_problems: list[str] = []
        self.reload_types: set[str] = set()
        self.partitions_: dict[str, dict[str, Any]] = {
            "demo": {"id": "demo", "state": "Idle", "tag": None, "locked": False,
                     "systems": ["TFC", "DCS", "QA", "FLES", "STS", "MVD"], "excluded": set()},
        }
        self.detectors: dict[str, dict[str, Any]] = {
            "STS": {"id": "STS", "type": "sts", "partition": "demo", "state": "Idle"},
            "MVD": {"id": "MVD", "type": "mvd", "partition": "demo", "state": "Idle"},
            "TOF": {"id": "TOF", "type": "tof", "partition": None, "state": "Idle"},
        }
        self.config_versions: dict[str, list[dict[str, Any]]] = {}
        for system in ["TFC", "DCS", "QA", "FLES", "STS", "MVD"]:
            cid = f"{system.lower()}-default"
            self.config_versions[cid] = [{"id": cid, "system": system, "version": 1, "parameters": {"mode": "default"}}]
        self.tags_: dict[str, dict[str, str]] = {"demo": {c[0]["system"]: cid for cid,
                                                          c in self.config_versions.items()}}
        self.run_records: list[dict[str, Any]] = [{"run": 1, "partition": "demo", "tag": "demo", "outcome": "stopped"}]
        self.log_records: list[dict[str, Any]] = [
            {"time": 100.0, "level": "info", "source": "demo", "partition": "demo", "message": "configured"},
            {"time": 200.0, "level": "error", "source": "STS", "partition": "demo", "message": "STS failed"},
        ]
        self.subscribers: list[tuple[Callable[[int, str, dict[str, Any]], None], str | None]] = []
        self.events: collections.deque[tuple[int, str, dict[str, Any],
                                             str | None]] = collections.deque(maxlen=buffer_size)
        self.agents_: dict[str, dict[str, Any]] = {
            "pca:demo": self._agent_record("pca:demo", "localhost", "local", {}, True),
        }
        self.launch_error: tuple[str, str] | None = None
        #: Alarms by id (the contract's fields): one active system_error of STS.
        self.alarm_records: dict[int, dict[str, Any]] = {
            1: self.alarm_record(1, "system_error", "STS", "demo", "STS in Error: threshold",
                                 "reset STS, then Configure"),
        }
        #: Run sequences: the declared ones, the status per partition, and how a run ends (None: it keeps running).
        self.declared_sequences = [{"name": "threshold-scan", "description": "three tags", "total": 12,
                                    "steps": ["configure tag=demo auto=True"] * 12}]
        self.sequence_runs: dict[str, dict[str, Any]] = {}
        self.sequence_outcome: str | None = "done"
        #: The recovery rules in force, as the ECA's Recovery answers them.
        self.recovery: dict[str, Any] = {"source": "fsm/recovery.yaml", "rules": [
            {"scope": "defaults", "name": "*", "event": "error", "state": "any", "action": "alarm_only",
             "max": 3, "within": 600.0},
            {"scope": "type", "name": "TRD", "event": "error", "state": "recording",
             "action": "exclude_and_continue", "max": 2, "within": 300.0},
            {"scope": "system", "name": "RICH", "event": "agent_died", "state": "any", "action": "restart",
             "max": 3, "within": 600.0},
        ]}
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)

    # -- helpers for tests ------------------------------------------------------

    def emit(self, kind: str, data: dict[str, Any], partition: str | None = None) -> int:
        """Buffer an event and tell the subscribers that want it; its id."""
        event_id = next(self._ids)
        self.events.append((event_id, kind, data, partition))
        for callback, wanted in list(self.subscribers):
            if wanted is None or partition in (None, wanted):
                callback(event_id, kind, data)
        return event_id

    @staticmethod
    def alarm_record(alarm_id: int, kind: str, source: str, partition: str | None, text: str,
                     action: str, severity: str = "error", raised_at: float = 100.0) -> dict[str, Any]:
        """An alarm as the API shows it, raised and not cleared."""
        return {"id": alarm_id, "kind": kind, "source": source, "partition": partition, "severity": severity,
                "text": text, "action": action, "raised_at": raised_at, "cleared_at": None,
                "acknowledged_by": None, "acknowledged_at": None, "shelved_until": None, "shelved_by": None,
                "shelve_reason": None}

    def _require(self, user: User, role: str) -> None:
        if not user.has(role):
            raise ControlError("forbidden", f"needs role {role}", role=role)

    def _need_ecs_control(self, user: User) -> None:
        self._require(user, "expert")
        if self.holders.get("ecs") != user.name:
            raise ControlError("conflict", "take the ECS control first", holder=self.holders.get("ecs"))

    def _partition(self, partition_id: str) -> dict[str, Any]:
        try:
            return self.partitions_[partition_id]
        except KeyError:
            raise ControlError("not_found", f"no partition {partition_id}") from None

    # -- authentication -----------------------------------------------------------

    @_deferred
    def login(self, username: str, password: str, kind: str = "session") -> Session:
        """A new token when the password is right."""
        if self.passwords.get(username) != password:
            raise ControlError("unauthenticated", "wrong user name or password")
        n = next(self._tokens)
        session = Session(User(username, self.roles[username]), f"tok-{kind}-{n}", f"csrf-{n}")
        self.sessions[session.token] = session
        self.logins.append((username, kind))
        return session

    @_deferred
    def logout(self, token: str) -> None:
        """Forget the token; release what its user holds."""
        session = self.sessions.pop(token, None)
        if session is not None:
            for scope, holder in list(self.holders.items()):
                if holder == session.user.name:
                    del self.holders[scope]

    @_deferred
    def authenticate(self, token: str) -> Session | None:
        """The session of a token, or None."""
        return self.sessions.get(token)

    # -- partitions -------------------------------------------------------------------

    def partitions(self) -> list[dict[str, Any]]:
        """Short form of every partition."""
        return [self._short(p) for p in self.partitions_.values()]

    def _short(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"id": p["id"], "state": p["state"], "tag": p["tag"], "controller": self.holders.get(p["id"]),
                "connected": True}

    def partition(self, partition_id: str) -> dict[str, Any]:
        """One partition in full; not_found."""
        p = self._partition(partition_id)
        excluded = p.get("excluded", set())
        systems = [{"id": s, "kind": "detector" if s in self.detectors else "global",
                    "state": "Excluded" if s in excluded else p["state"], "raw_state": p["state"], "tag": p["tag"],
                    "comment": "", "connected": True, **({"excluded": True} if s in excluded else {})}
                   for s in p["systems"]]
        return {**self._short(p), "locked": p["locked"], "allowed": sorted(TRANSITIONS[p["state"]]),
                "progress": None, "systems": systems}

    def unassigned(self) -> list[dict[str, Any]]:
        """Detectors in no partition."""
        return [{"id": d["id"], "type": d["type"], "state": d["state"], "connected": True}
                for d in self.detectors.values() if d["partition"] is None]

    @_deferred
    def systems(self) -> dict[str, Any]:
        """The shipped subsystems' tables, with this fake's detectors and detector types."""
        from ecs.config.settings import load_subsystems
        from ecs.fsm.sequence import load_sequence
        from ecs.fsm.systems import systems_view, tables_json

        subsystems = load_subsystems()
        sequence = load_sequence(None, list(subsystems.global_systems))
        tables, table_of = tables_json(subsystems, sequence)
        detectors = [{"id": d["id"], "type": d["type"], "partition": d["partition"]} for d in self.detectors.values()]
        view = systems_view(subsystems, sequence, detectors, tables, table_of)
        view["detector_types"] = {t: {"table": "detector-2step"} for t in sorted(self.detector_types)}
        return view

    @_deferred
    def reload(self, user: User) -> dict[str, Any]:
        """Admin: "read" the types again: C{self.reload_problems} set makes it refused (400)."""
        self._require(user, "admin")
        problems = self.reload_problems
        if problems:
            self.audit_log.append((user.name, "reload", ("refused",)))
            raise ControlError("bad_request", "invalid file, nothing reloaded: " + "; ".join(problems),
                               problems=list(problems))
        added = sorted(self.reload_types - self.detector_types)
        self.detector_types |= set(added)
        self.audit_log.append((user.name, "reload", ()))
        return {"types_added": added, "types_removed": [], "types_changed": [], "tables_changed": [],
                "sequence_changed": False,
                "pcas": {p: {"ok": True, "sequence": "unchanged", "changes": {}} for p in sorted(self.partitions_)}}

    # -- control -------------------------------------------------------------------------

    @_deferred
    def take_control(self, user: User, scope: str, force: bool = False) -> dict[str, Any]:
        """Take a partition's or the ECS control; conflict with holder; force needs admin."""
        self._require(user, "expert" if scope == "ecs" else "operator")
        if scope != "ecs":
            self._partition(scope)
        if force and not user.has("admin"):
            raise ControlError("forbidden", "force needs role admin", role="admin")
        holder = self.holders.get(scope)
        if holder not in (None, user.name) and not force:
            raise ControlError("conflict", f"{scope} is controlled by {holder}", holder=holder)
        self.holders[scope] = user.name
        self.emit("control", {"scope": scope, "holder": user.name}, None if scope == "ecs" else scope)
        return {"scope": scope, "holder": user.name}

    @_deferred
    def release_control(self, user: User, scope: str) -> None:
        """Give control up; conflict when someone else holds it."""
        if scope != "ecs":
            self._partition(scope)
        holder = self.holders.get(scope)
        if holder != user.name:
            raise ControlError("conflict", f"you do not hold {scope}", holder=holder)
        del self.holders[scope]
        self.emit("control", {"scope": scope, "holder": None}, None if scope == "ecs" else scope)

    @_deferred
    def ecs_control(self) -> dict[str, Any]:
        """Who holds the ECS control."""
        holder = self.holders.get("ecs")
        return {"scope": "ecs", "holder": holder, "since": 0.0 if holder else None}

    @_deferred
    def command(self, user: User, partition_id: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run a command when the user holds control and the state allows it."""
        self._require(user, "operator")
        p = self._partition(partition_id)
        if self.holders.get(partition_id) != user.name:
            raise ControlError("conflict", f"you do not hold {partition_id}", holder=self.holders.get(partition_id))
        if p["locked"]:
            raise ControlError("locked", f"{partition_id} is locked by a management operation")
        if command not in TRANSITIONS[p["state"]]:
            raise ControlError("conflict", f"{command} is not possible in {p['state']}")
        if command == "configure" and "tag" in body and body["tag"] not in self.tags_:
            raise ControlError("not_found", f"no tag {body['tag']}")
        if command == "start" and body.get("type") is not None and body["type"] not in self.declared_run_types:
            raise ControlError("bad_request", f"type: unknown run type {body['type']!r} "
                                              f"(allowed: {', '.join(self.declared_run_types)})", field="type")
        self.commands.append((user.name, partition_id, command, body))
        p["state"] = TRANSITIONS[p["state"]][command]
        if command == "configure":
            p["tag"] = body.get("tag")
        self.emit("state", {"partition": partition_id, "state": p["state"]}, partition_id)
        return {"partition": partition_id, "command": command, "state": p["state"]}

    def _exclusion(self, user: User, partition_id: str, system: str, exclude: bool) -> dict[str, Any]:
        """The rules of IControlCenter.exclude and include, on this fake's partition."""
        self._require(user, "operator")
        p = self._partition(partition_id)
        if self.holders.get(partition_id) != user.name:
            raise ControlError("conflict", f"you do not hold {partition_id}", holder=self.holders.get(partition_id))
        if system not in p["systems"]:
            raise ControlError("not_found", f"no system {system!r} in partition {partition_id}")
        if p["state"] == "Running":
            raise ControlError("conflict", f"partition {partition_id} is recording: stop it first")
        if exclude and system == "TFC":
            raise ControlError("conflict", "TFC cannot be excluded: TFC may never be excluded")
        excluded = p.setdefault("excluded", set())
        (excluded.add if exclude else excluded.discard)(system)
        action = "exclude" if exclude else "include"
        self.commands.append((user.name, partition_id, action, {"system": system}))
        self.emit("state", {"partition": partition_id, "key": f"system/{system}"}, partition_id)
        return {"id": partition_id, "state": p["state"], "excluded": sorted(excluded)}

    @_deferred
    def exclude(self, user: User, partition_id: str, system: str) -> dict[str, Any]:
        """Exclude a system (not while Running; never TFC)."""
        return self._exclusion(user, partition_id, system, True)

    @_deferred
    def include(self, user: User, partition_id: str, system: str) -> dict[str, Any]:
        """Include a system again."""
        return self._exclusion(user, partition_id, system, False)

    # -- management ------------------------------------------------------------------------

    @_deferred
    def create_partition(self, user: User, partition_id: str) -> dict[str, Any]:
        """A new, empty partition."""
        self._need_ecs_control(user)
        if partition_id in self.partitions_:
            raise ControlError("conflict", f"partition {partition_id} exists")
        self.partitions_[partition_id] = {"id": partition_id, "state": "Idle", "tag": None, "locked": False,
                                          "systems": []}
        self.audit_log.append((user.name, "create_partition", (partition_id,)))
        return self._short(self.partitions_[partition_id])

    @_deferred
    def delete_partition(self, user: User, partition_id: str, force: bool = False) -> None:
        """Delete a partition; conflict while it runs unless forced."""
        self._need_ecs_control(user)
        p = self._partition(partition_id)
        if p["state"] != "Idle" and not force:
            raise ControlError("conflict", f"{partition_id} is {p['state']}")
        for d in self.detectors.values():
            if d["partition"] == partition_id:
                d["partition"] = None
        del self.partitions_[partition_id]
        self.audit_log.append((user.name, "delete_partition", (partition_id, force)))

    @_deferred
    def create_detector(self, user: User, detector_id: str, type: str) -> dict[str, Any]:
        """A new unassigned detector of a known type."""
        self._need_ecs_control(user)
        if type not in self.detector_types:
            raise ControlError("bad_request", f"unknown detector type {type}", field="type")
        if detector_id in self.detectors:
            raise ControlError("conflict", f"detector {detector_id} exists")
        self.detectors[detector_id] = {"id": detector_id, "type": type, "partition": None, "state": "Idle"}
        return {"id": detector_id, "type": type}

    @_deferred
    def delete_detector(self, user: User, detector_id: str, force: bool = False) -> None:
        """Delete an unassigned detector."""
        self._need_ecs_control(user)
        d = self.detectors.get(detector_id)
        if d is None:
            raise ControlError("not_found", f"no detector {detector_id}")
        if d["partition"] is not None and not force:
            raise ControlError("conflict", f"{detector_id} is in partition {d['partition']}")
        del self.detectors[detector_id]

    @_deferred
    def move_detector(self, user: User, detector_id: str, to: str | None, force: bool = False) -> dict[str, Any]:
        """Move a detector; locked when a partition involved is locked."""
        self._need_ecs_control(user)
        d = self.detectors.get(detector_id)
        if d is None:
            raise ControlError("not_found", f"no detector {detector_id}")
        for pid in (d["partition"], to):
            if pid is not None and self._partition(pid)["locked"]:
                raise ControlError("locked", f"{pid} is locked by a management operation")
        if d["partition"] is not None:
            self.partitions_[d["partition"]]["systems"].remove(detector_id)
        if to is not None:
            self.partitions_[to]["systems"].append(detector_id)
        d["partition"] = to
        self.audit_log.append((user.name, "move_detector", (detector_id, to, force)))
        return {"id": detector_id, "partition": to}

    # -- configurations and tags ------------------------------------------------------------

    @_deferred
    def configs(self, system: str | None = None) -> list[dict[str, Any]]:
        """Latest version of every configuration."""
        return [v[-1] for v in self.config_versions.values() if system is None or v[-1]["system"] == system]

    @_deferred
    def config(self, config_id: str, version: int | None = None) -> dict[str, Any]:
        """One configuration with its version numbers."""
        versions = self.config_versions.get(config_id)
        if not versions:
            raise ControlError("not_found", f"no configuration {config_id}")
        chosen = versions[-1] if version is None else next((v for v in versions if v["version"] == version), None)
        if chosen is None:
            raise ControlError("not_found", f"no version {version} of {config_id}")
        return {**chosen, "versions": [v["version"] for v in versions]}

    @_deferred
    def save_config(self, user: User, config_id: str, system: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """A new version."""
        self._require(user, "expert")
        versions = self.config_versions.setdefault(config_id, [])
        if versions and versions[-1]["system"] != system:
            raise ControlError("conflict", f"{config_id} belongs to {versions[-1]['system']}")
        versions.append({"id": config_id, "system": system, "version": len(versions) + 1, "parameters": parameters})
        return versions[-1]

    @_deferred
    def delete_config(self, user: User, config_id: str) -> None:
        """Delete unless a tag uses it."""
        self._require(user, "expert")
        if config_id not in self.config_versions:
            raise ControlError("not_found", f"no configuration {config_id}")
        users = [t for t, cs in self.tags_.items() if config_id in cs.values()]
        if users:
            raise ControlError("conflict", f"{config_id} is used by tag {users[0]}", tags=users)
        del self.config_versions[config_id]

    @_deferred
    def tags(self, partition_id: str | None = None) -> list[dict[str, Any]]:
        """Every tag; with a partition, compatibility."""
        result = []
        for name, cs in sorted(self.tags_.items()):
            entry: dict[str, Any] = {"name": name, "configs": dict(cs)}
            if partition_id is not None:
                want = set(self._partition(partition_id)["systems"])
                entry["missing"] = sorted(want - set(cs))
                entry["extra"] = sorted(set(cs) - want)
                entry["compatible"] = not entry["missing"]
            result.append(entry)
        return result

    @_deferred
    def tag(self, name: str) -> dict[str, Any]:
        """One tag."""
        if name not in self.tags_:
            raise ControlError("not_found", f"no tag {name}")
        return {"name": name, "configs": dict(self.tags_[name])}

    @_deferred
    def save_tag(self, user: User, name: str, config_ids: list[str]) -> dict[str, Any]:
        """Create or replace; one configuration per system."""
        self._require(user, "expert")
        configs: dict[str, str] = {}
        for cid in config_ids:
            if cid not in self.config_versions:
                raise ControlError("not_found", f"no configuration {cid}")
            system = self.config_versions[cid][-1]["system"]
            if system in configs:
                raise ControlError("bad_request", f"two configurations for {system}", field="configs")
            configs[system] = cid
        self.tags_[name] = configs
        return {"name": name, "configs": configs}

    @_deferred
    def delete_tag(self, user: User, name: str) -> None:
        """Delete."""
        self._require(user, "expert")
        if self.tags_.pop(name, None) is None:
            raise ControlError("not_found", f"no tag {name}")

    # -- users -------------------------------------------------------------------------------

    @_deferred
    def users(self, user: User) -> list[dict[str, Any]]:
        """Every user with roles."""
        self._require(user, "admin")
        return [{"name": n, "roles": list(r)} for n, r in sorted(self.roles.items())]

    @_deferred
    def add_user(self, user: User, name: str, password: str, roles: list[str]) -> dict[str, Any]:
        """A new user."""
        self._require(user, "admin")
        if name in self.passwords:
            raise ControlError("conflict", f"user {name} exists")
        self.passwords[name], self.roles[name] = password, tuple(roles)
        return {"name": name, "roles": list(roles)}

    @_deferred
    def update_user(self, user: User, name: str, password: str | None, roles: list[str] | None) -> dict[str, Any]:
        """Change password and/or roles."""
        self._require(user, "admin")
        if name not in self.passwords:
            raise ControlError("not_found", f"no user {name}")
        if password is not None:
            self.passwords[name] = password
        if roles is not None:
            self.roles[name] = tuple(roles)
        return {"name": name, "roles": list(self.roles[name])}

    @_deferred
    def delete_user(self, user: User, name: str) -> None:
        """Delete (not yourself)."""
        self._require(user, "admin")
        if name == user.name:
            raise ControlError("conflict", "you cannot delete yourself")
        if name not in self.passwords:
            raise ControlError("not_found", f"no user {name}")
        del self.passwords[name], self.roles[name]

    # -- agents ----------------------------------------------------------------------------------

    def _agent_record(self, agent: str, host: str, launcher: str, options: dict[str, Any],
                      autostart: bool) -> dict[str, Any]:
        kind, _, agent_id = agent.partition(":")
        return {"agent": agent, "kind": kind, "id": agent_id, "host": host, "launcher": launcher, "options": options,
                "autostart": autostart, "registered": False,
                "status": {"running": False, "pid": None, "job_id": None, "exit_code": None, "since": None,
                           "detail": ""},
                "supervision": {"state": "stopped", "restarts": 0, "next_restart": None, "reason": ""}}

    def _agent(self, agent: str) -> dict[str, Any]:
        if agent not in self.agents_:
            raise ControlError("not_found", f"no agent {agent}")
        return self.agents_[agent]

    def agents(self) -> list[dict[str, Any]]:
        """Every placed agent."""
        return [self.agents_[name] for name in sorted(self.agents_)]

    def agent(self, agent: str) -> dict[str, Any]:
        """One agent; not_found."""
        return self._agent(agent)

    @_deferred
    def set_placement(self, user: User, agent: str, host: str, launcher: str, options: dict[str, Any],
                      autostart: bool) -> dict[str, Any]:
        """Place an agent (admin); bad names and launchers refused."""
        self._require(user, "admin")
        kind, sep, agent_id = agent.partition(":")
        if not sep or kind not in ("pca", "detector", "global", "simhost") or not agent_id:
            raise ControlError("bad_request", f"invalid agent name {agent!r}")
        if launcher not in ("local", "ssh", "slurm"):
            raise ControlError("bad_request", f"invalid launcher {launcher!r}", field="launcher")
        record = self._agent_record(agent, host, launcher, options, autostart)
        if agent in self.agents_:
            record["status"], record["supervision"] = self.agents_[agent]["status"], self.agents_[agent]["supervision"]
        self.agents_[agent] = record
        self.audit_log.append((user.name, "set_placement", (agent, host, launcher)))
        return record

    @_deferred
    def delete_placement(self, user: User, agent: str) -> None:
        """Forget a placement (admin); conflict while running."""
        self._require(user, "admin")
        if self._agent(agent)["status"]["running"]:
            raise ControlError("conflict", f"{agent} is running: stop it first")
        del self.agents_[agent]

    @_deferred
    def agent_command(self, user: User, agent: str, command: str) -> dict[str, Any]:
        """start/stop/restart; C{launch_error} (code, reason) makes starts fail."""
        self._require(user, "expert")
        record = self._agent(agent)
        if command not in ("start", "stop", "restart"):
            raise ControlError("not_found", f"no agent command {command}")
        self.commands.append((user.name, agent, command, {}))
        if command in ("start", "restart") and self.launch_error is not None:
            record["supervision"] = {**record["supervision"], "state": "failed", "reason": self.launch_error[1]}
            raise ControlError(*self.launch_error)
        running = command != "stop"
        record["status"] = {**record["status"], "running": running, "pid": 4242 if running else None}
        record["supervision"] = {**record["supervision"], "state": "running" if running else "stopped"}
        self.emit("agent", record)
        return record

    @_deferred
    def agent_output(self, user: User, agent: str, lines: int) -> dict[str, Any]:
        """The fake output: C{lines} numbered lines."""
        self._require(user, "expert")
        self._agent(agent)
        return {"agent": agent, "text": "".join(f"line {n}\n" for n in range(1, lines + 1))}

    def inject(self, user: User, system: str, body: Any) -> dict[str, Any]:
        """Expert: the real checks of the body; a system of any partition answers with its new state."""
        from agents.eca.inject import FaultInjector

        self._require(user, "expert")
        request = FaultInjector._checked(body)
        if not any(system in p["systems"] for p in self.partitions_.values()):
            raise ControlError("not_found", f"no running controller {system!r} is registered")
        self.audit_log.append((user.name, "inject", (system, request["what"])))
        state = "Error" if request["what"] == "error" else "Active"
        return {"system": system, "results": {system: state}}

    # -- alarms (no clock: shelving hides nothing here; the web layer checks the times) -----------

    def _alarm(self, alarm_id: int) -> dict[str, Any]:
        try:
            return self.alarm_records[alarm_id]
        except KeyError:
            raise ControlError("not_found", f"no alarm {alarm_id}") from None

    @_deferred
    def alarms(self, user: User, include_all: bool = False,
               partition: str | None = None) -> list[dict[str, Any]]:
        """Active alarms (or all), newest first, of one partition or all."""
        self._require(user, "viewer")
        rows = [dict(a) for _, a in sorted(self.alarm_records.items(), reverse=True)
                if (include_all or a["cleared_at"] is None or a["acknowledged_at"] is None)
                and (partition is None or a["partition"] == partition)]
        return rows

    @_deferred
    def acknowledge_alarm(self, user: User, alarm_id: int) -> dict[str, Any]:
        """Acknowledge (operator); the first acknowledgement stays."""
        self._require(user, "operator")
        alarm = self._alarm(alarm_id)
        if alarm["acknowledged_at"] is None:
            alarm.update(acknowledged_by=user.name, acknowledged_at=200.0)
            self.emit("alarm", {**alarm, "change": "acknowledged"}, alarm["partition"])
        self.audit_log.append((user.name, "acknowledge_alarm", (alarm_id,)))
        return dict(alarm)

    @_deferred
    def shelve_alarm(self, user: User, alarm_id: int, until: float, reason: str) -> dict[str, Any]:
        """Shelve (expert) until C{until} with a reason."""
        self._require(user, "expert")
        alarm = self._alarm(alarm_id)
        alarm.update(shelved_until=until, shelved_by=user.name, shelve_reason=reason)
        self.emit("alarm", {**alarm, "change": "shelved"}, alarm["partition"])
        self.audit_log.append((user.name, "shelve_alarm", (alarm_id, until, reason)))
        return dict(alarm)

    # -- runs, logs, events, metrics ------------------------------------------------------------

    @_deferred
    def runs(self, partition_id: str | None = None, limit: int = 100, run_type: str | None = None,
             since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Run records, newest first, filtered."""
        rows = [r for r in reversed(self.run_records)
                if (partition_id is None or r["partition"] == partition_id)
                and (run_type is None or r.get("type") == run_type)
                and (since is None or r.get("started", 0) >= since)
                and (until is None or r.get("started", 0) < until)]
        return rows[:limit]

    def run_types(self) -> list[str]:
        """The declared run types."""
        return list(self.declared_run_types)

    @_deferred
    def audit(self, user: User, who: str | None = None, action: str | None = None, since: float | None = None,
              until: float | None = None, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """The audit entries (expert), newest first, filtered."""
        self._require(user, "expert")
        rows = [r for r in reversed(self.audit_entries)
                if (who is None or r["user"] == who) and (action is None or r["action"] == action)
                and (since is None or r["time"] >= since) and (until is None or r["time"] < until)
                and (before is None or r["id"] < before)]
        return rows[:limit]

    @_deferred
    def logbook(self, user: User, text: str | None = None, partition: str | None = None, run: int | None = None,
                author: str | None = None, since: float | None = None, until: float | None = None,
                limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """Logbook entries (viewer), newest first, filtered; each with the ids of the entries correcting it."""
        self._require(user, "viewer")
        rows = [r for r in reversed(self.logbook_entries)
                if (text is None or text.lower() in r["text"].lower())
                and all(want is None or r[key] == want
                        for key, want in (("partition", partition), ("run", run), ("author", author)))
                and (since is None or r["time"] >= since) and (until is None or r["time"] < until)
                and (before is None or r["id"] < before)]
        return [{**r, "corrected_by": [c["id"] for c in self.logbook_entries if c["corrects"] == r["id"]],
                 "attachments": [{k: v for k, v in a.items() if k != "data"} for a in r["attachments"]]}
                for r in rows[:limit]]

    @_deferred
    def add_logbook_entry(self, user: User, text: str, partition: str | None = None, run: int | None = None,
                          corrects: int | None = None,
                          attachments: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """Write an entry (operator); not_found for an unknown C{corrects}."""
        self._require(user, "operator")
        if corrects is not None and not any(r["id"] == corrects for r in self.logbook_entries):
            raise ControlError("not_found", f"no logbook entry {corrects}")
        entry = {"id": len(self.logbook_entries) + 1, "time": 1000.0 + len(self.logbook_entries),
                 "author": user.name, "automatic": False, "text": text, "partition": partition, "run": run,
                 "corrects": corrects,
                 "attachments": [{"n": n, "name": a["name"], "content_type": a["content_type"],
                                  "size": len(a["data"]), "data": a["data"]} for n, a in enumerate(attachments, 1)]}
        self.logbook_entries.append(entry)
        self.audit_log.append((user.name, "add_logbook_entry", (text, partition, run, corrects)))
        return {**entry, "corrected_by": [], "attachments": [
            {k: v for k, v in a.items() if k != "data"} for a in entry["attachments"]]}

    @_deferred
    def logbook_attachment(self, user: User, entry: int, n: int) -> dict[str, Any]:
        """An attached file (viewer); not_found."""
        self._require(user, "viewer")
        for r in self.logbook_entries:
            for a in r["attachments"] if r["id"] == entry else ():
                if a["n"] == n:
                    return {"name": a["name"], "content_type": a["content_type"], "data": a["data"]}
        raise ControlError("not_found", f"no attachment {n} of logbook entry {entry}")

    def recovery_rules(self, user: User) -> dict[str, Any]:
        """The rules in force (viewer): C{recovery} as set by the test."""
        self._require(user, "viewer")
        return dict(self.recovery)

    def run_sequences(self, user: User) -> list[dict[str, Any]]:
        """The declared sequences (viewer)."""
        self._require(user, "viewer")
        return list(self.declared_sequences)

    @_deferred
    def run_sequence(self, user: User, name: str, partition_id: str) -> dict[str, Any]:
        """Start one (operator, the controller): emits its events, ending as C{sequence_outcome} says."""
        self._require(user, "operator")
        self._partition(partition_id)
        if not any(d["name"] == name for d in self.declared_sequences):
            raise ControlError("not_found", f"no sequence {name!r}")
        if self.holders.get(partition_id) != user.name:
            raise ControlError("conflict", f"you do not hold {partition_id}", holder=self.holders.get(partition_id))
        current = self.sequence_runs.get(partition_id)
        if current is not None and current["state"] in ("running", "paused"):
            raise ControlError("conflict", f"sequence {current['sequence']} runs on partition {partition_id}")
        status = {"partition": partition_id, "sequence": name, "user": user.name, "state": "running", "step": 1,
                  "total": 12, "description": "configure tag=demo auto=True", "pause_wanted": False,
                  "error": None, "failed_step": None}
        self.sequence_runs[partition_id] = status
        self.audit_log.append((user.name, "run_sequence", (name, partition_id)))
        started = dict(status)
        if self.sequence_outcome is not None:
            status.update(state=self.sequence_outcome, step=12 if self.sequence_outcome == "done" else 3)
            if self.sequence_outcome == "failed":
                status.update(error="QA_Active not reached within 120 s", failed_step="3: configure tag=demo")
            self.emit("sequence", dict(status), partition_id)
        return started

    def sequence_status(self, user: User, partition_id: str) -> dict[str, Any]:
        """The partition's sequence (viewer)."""
        self._require(user, "viewer")
        self._partition(partition_id)
        return dict(self.sequence_runs.get(partition_id, {"partition": partition_id, "state": "none"}))

    @_deferred
    def sequence_control(self, user: User, partition_id: str, action: str) -> dict[str, Any]:
        """Pause, resume or abort (operator, the controller); conflict when none runs."""
        self._require(user, "operator")
        self._partition(partition_id)
        if self.holders.get(partition_id) != user.name:
            raise ControlError("conflict", f"you do not hold {partition_id}", holder=self.holders.get(partition_id))
        status = self.sequence_runs.get(partition_id)
        if status is None or status["state"] not in ("running", "paused"):
            raise ControlError("conflict", f"no sequence runs on partition {partition_id}")
        status["state"] = {"pause": "paused", "resume": "running", "abort": "aborted"}[action]
        self.audit_log.append((user.name, f"sequence_{action}", (partition_id,)))
        return dict(status)

    @_deferred
    def logs(self, partition_id: str | None, level: str | None, since: float | None, q: str | None, limit: int,
             until: float | None = None, before_id: int | None = None) -> list[dict[str, Any]]:
        """Stored log events, newest first, filtered."""
        def older(r: dict[str, Any]) -> bool:
            if until is None:
                return True
            if before_id is None:
                return bool(r["time"] < until)
            return bool(r["time"] < until or (r["time"] == until and r.get("id", 0) < before_id))

        rows = [r for r in reversed(self.log_records)
                if (partition_id is None or r["partition"] == partition_id)
                and (level is None or r["level"] == level)
                and (since is None or r["time"] >= since)
                and older(r)
                and (q is None or q in r["message"])]
        return rows[:limit]

    def subscribe(self, callback: Callable[[int, str, dict[str, Any]], None],
                  partition_id: str | None = None) -> Callable[[], None]:
        """Add a subscriber; the returned function removes it."""
        entry = (callback, partition_id)
        self.subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self.subscribers:
                self.subscribers.remove(entry)

        return unsubscribe

    def events_since(self, event_id: int, partition_id: str | None = None) -> list[tuple[int, str, dict[str,
                                                                                                        Any]]] | None:
        """Buffered events after C{event_id}, or None when some are gone."""
        oldest = self.events[0][0] if self.events else None
        newest = self.events[-1][0] if self.events else 0
        if event_id < newest and oldest is not None and event_id < oldest - 1:
            return None
        if event_id > newest:
            return None
        return [(i, k, d) for i, k, d, p in self.events
                if i > event_id and (partition_id is None or p in (None, partition_id))]

    def metrics(self) -> bytes:
        """Prometheus text exposition (bytes, as the real center's prometheus_client answers)."""
        lines = ["# HELP ecs_partition_state 1 for the current state of each partition",
                 "# TYPE ecs_partition_state gauge"]
        for p in self.partitions_.values():
            lines.append(f'ecs_partition_state{{partition="{p["id"]}",state="{p["state"]}"}} 1.0')
        lines += ["# HELP ecs_commands_total Commands accepted.", "# TYPE ecs_commands_total counter",
                  f"ecs_commands_total {float(len(self.commands))}"]
        return ("\n".join(lines) + "\n").encode("utf-8")
