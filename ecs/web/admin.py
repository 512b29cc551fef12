# -*- test-case-name: tests.test_web -*-
"""
The API routes for experts and admins: the ECS control and the management
of partitions and detectors, agents and their placement, configurations
and tags, runs and logs, alarms (read by viewers, acknowledged by
operators, shelved by experts), users.  They are routes of
L{ecs.web.routes.WebAPI}'s Klein app (added when L{ecs.web.api} imports this
module) with the same plumbing: declared with the role they need
(L{ecs.web.auth.authorized_route}), bounded JSON bodies and checked queries
(L{ecs.web.inputs}), errors as JSON naming the field.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ecs.control import Session
from ecs.web.auth import authorized_route
from ecs.web.inputs import (
    MAX_LIMIT,
    bad,
    boolean,
    query,
    query_flag,
    query_int,
    query_time,
    roles,
    shelve_body,
    text,
    text_list,
)
from ecs.web.routes import WebAPI

# -- management (expert, with the ECS control) ---------------------------------

@authorized_route(WebAPI.app, "viewer", "/api/control", methods=["GET"])
async def ecs_control(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Who holds the ECS control (holder null when nobody)."""
    return self._json(request, await self._call(self.center.ecs_control))

@authorized_route(WebAPI.app, "expert", "/api/control", methods=["POST"])
async def take_ecs_control(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Take the ECS control, needed for management (admin: ?force=1)."""
    force = self._force(request, session)
    body = self._body(request, ("scope",), required=False)
    if body.get("scope", "ecs") != "ecs":
        bad("scope", "must be ecs")
    return self._json(request, await self._call(self.center.take_control, session.user, "ecs", force))

@authorized_route(WebAPI.app, "expert", "/api/control", methods=["DELETE"])
async def release_ecs_control(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Give up the ECS control."""
    return self._json(request, await self._call(self.center.release_control, session.user, "ecs"))

@authorized_route(WebAPI.app, "expert", "/api/partitions", methods=["POST"])
async def create_partition(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Create a partition C{{"id"}}."""
    pid = text(self._body(request, ("id",)), "id")
    if pid == "ecs":
        bad("id", "ecs is reserved")
    return self._json(request, await self._call(self.center.create_partition, session.user, pid))

@authorized_route(WebAPI.app, "expert", "/api/partitions/<pid>", methods=["DELETE"])
async def delete_partition(self: WebAPI, request: IRequest, session: Session, pid: str) -> bytes:
    """Delete a partition (?force=1)."""
    force = query_flag(request, "force")
    return self._json(request, await self._call(self.center.delete_partition, session.user, pid, force))

@authorized_route(WebAPI.app, "viewer", "/api/detectors/unassigned", methods=["GET"])
async def unassigned(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Detectors in no partition, with live states."""
    return self._json(request, await self._call(self.center.unassigned))

@authorized_route(WebAPI.app, "viewer", "/api/systems", methods=["GET"])
async def systems(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Detector types, global systems, detectors and the state tables."""
    return self._json(request, await self._call(self.center.systems))

@authorized_route(WebAPI.app, "expert", "/api/detectors", methods=["POST"])
async def create_detector(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Create an unassigned detector C{{"id", "type"}}."""
    body = self._body(request, ("id", "type"))
    did, dtype = text(body, "id"), text(body, "type")
    return self._json(request, await self._call(self.center.create_detector, session.user, did, dtype))

@authorized_route(WebAPI.app, "expert", "/api/detectors/<did>", methods=["DELETE"])
async def delete_detector(self: WebAPI, request: IRequest, session: Session, did: str) -> bytes:
    """Delete an unassigned detector (?force=1)."""
    force = query_flag(request, "force")
    return self._json(request, await self._call(self.center.delete_detector, session.user, did, force))

@authorized_route(WebAPI.app, "expert", "/api/detectors/<did>/move", methods=["POST"])
async def move_detector(self: WebAPI, request: IRequest, session: Session, did: str) -> bytes:
    """Move a detector C{{"to": partition or null, "force"?}}."""
    body = self._body(request, ("to", "force"))
    if "to" not in body:
        bad("to", "required (a partition id or null)")
    to = body["to"]
    if to is not None and (not isinstance(to, str) or not to):
        bad("to", "must be a partition id or null")
    force = boolean(body, "force")
    return self._json(request, await self._call(self.center.move_detector, session.user, did, to, force))

# -- agents: placement (admin) and supervision (reads viewer, commands expert) --

@authorized_route(WebAPI.app, "viewer", "/api/agents", methods=["GET"])
async def agents_list(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Every placed agent: placement, launcher status, registration, supervision."""
    return self._json(request, await self._call(self.center.agents))

@authorized_route(WebAPI.app, "viewer", "/api/agents/<agent>", methods=["GET"])
async def agent_get(self: WebAPI, request: IRequest, session: Session, agent: str) -> bytes:
    """One agent (C{<kind>:<id>})."""
    return self._json(request, await self._call(self.center.agent, agent))

@authorized_route(WebAPI.app, "admin", "/api/agents/<agent>", methods=["PUT"])
async def agent_place(self: WebAPI, request: IRequest, session: Session, agent: str) -> bytes:
    """Place an agent C{{"host", "launcher", "options"?, "autostart"?}} (admin: it says what runs where)."""
    body = self._body(request, ("host", "launcher", "options", "autostart"))
    host, launcher = text(body, "host"), text(body, "launcher")
    options = body.get("options", {})
    if not isinstance(options, dict):
        bad("options", "must be an object")
    autostart = body.get("autostart", True)
    if not isinstance(autostart, bool):
        bad("autostart", "must be true or false")
    return self._json(request, await self._call(self.center.set_placement, session.user, agent, host, launcher,
                                                options, autostart))

@authorized_route(WebAPI.app, "admin", "/api/agents/<agent>", methods=["DELETE"])
async def agent_unplace(self: WebAPI, request: IRequest, session: Session, agent: str) -> bytes:
    """Forget an agent's placement (admin; 409 while it runs)."""
    return self._json(request, await self._call(self.center.delete_placement, session.user, agent))

@authorized_route(WebAPI.app, "expert", "/api/agents/<agent>/<any(start,stop,restart):command>", methods=["POST"])
async def agent_command(self: WebAPI, request: IRequest, session: Session, agent: str, command: str) -> bytes:
    """Start, stop or restart an agent; the agent after it (launcher failures 502)."""
    self._body(request, (), required=False)
    return self._json(request, await self._call(self.center.agent_command, session.user, agent, command))

@authorized_route(WebAPI.app, "expert", "/api/systems/<system>/inject", methods=["POST"])
async def system_inject(self: WebAPI, request: IRequest, session: Session, system: str) -> bytes:
    """Report a fault to a controller through the ECA (expert; audited): {what, partition?, detector?}."""
    body = self._body(request, ("what", "partition", "detector"))
    return self._json(request, await self._call(self.center.inject, session.user, system, body))

@authorized_route(WebAPI.app, "expert", "/api/agents/<agent>/output", methods=["GET"])
async def agent_output(self: WebAPI, request: IRequest, session: Session, agent: str) -> bytes:
    """The last lines of an agent's output (?lines=N, at most 2000, default 200)."""
    lines = query_int(request, "lines", 200, 1, 2000)
    return self._json(request, await self._call(self.center.agent_output, session.user, agent, lines))

# -- configurations and tags --------------------------------------------------

@authorized_route(WebAPI.app, "viewer", "/api/configs", methods=["GET"])
async def configs(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Latest version of every configuration (?system=)."""
    return self._json(request, await self._call(self.center.configs, query(request, "system")))

@authorized_route(WebAPI.app, "viewer", "/api/configs/<cid>", methods=["GET"])
async def config(self: WebAPI, request: IRequest, session: Session, cid: str) -> bytes:
    """One configuration (?version=N)."""
    version = query_int(request, "version", None, 1, 2**31)
    return self._json(request, await self._call(self.center.config, cid, version))

@authorized_route(WebAPI.app, "expert", "/api/configs/<cid>", methods=["PUT"])
async def save_config(self: WebAPI, request: IRequest, session: Session, cid: str) -> bytes:
    """A new version of a configuration C{{"system", "parameters"}}."""
    body = self._body(request, ("system", "parameters"))
    system = text(body, "system")
    parameters = body.get("parameters")
    if not isinstance(parameters, dict):
        bad("parameters", "must be an object")
    return self._json(request, await self._call(self.center.save_config, session.user, cid, system, parameters))

@authorized_route(WebAPI.app, "expert", "/api/configs/<cid>", methods=["DELETE"])
async def delete_config(self: WebAPI, request: IRequest, session: Session, cid: str) -> bytes:
    """Delete a configuration."""
    return self._json(request, await self._call(self.center.delete_config, session.user, cid))

@authorized_route(WebAPI.app, "viewer", "/api/tags", methods=["GET"])
async def tags(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Every tag (?partition= adds compatible/missing/extra)."""
    return self._json(request, await self._call(self.center.tags, query(request, "partition")))

@authorized_route(WebAPI.app, "viewer", "/api/tags/<name>", methods=["GET"])
async def tag(self: WebAPI, request: IRequest, session: Session, name: str) -> bytes:
    """One tag."""
    return self._json(request, await self._call(self.center.tag, name))

@authorized_route(WebAPI.app, "expert", "/api/tags/<name>", methods=["PUT"])
async def save_tag(self: WebAPI, request: IRequest, session: Session, name: str) -> bytes:
    """Create or replace a tag C{{"configs": [ids]}}."""
    ids = text_list(self._body(request, ("configs",)), "configs")
    return self._json(request, await self._call(self.center.save_tag, session.user, name, ids))

@authorized_route(WebAPI.app, "expert", "/api/tags/<name>", methods=["DELETE"])
async def delete_tag(self: WebAPI, request: IRequest, session: Session, name: str) -> bytes:
    """Delete a tag."""
    return self._json(request, await self._call(self.center.delete_tag, session.user, name))

# -- logs (runs and the audit trail: ecs.web.history) ----------------------------------------------------------------

@authorized_route(WebAPI.app, "viewer", "/api/logs", methods=["GET"])
async def logs(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Stored log events (?partition=&level=&since=&until=&before_id=&q=&limit=; before_id with until
    pages from the event (until, before_id) on, skipping none of the same time)."""
    times = {name: query_time(request, name) for name in ("since", "until")}
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    before_id = query_int(request, "before_id", None, 0, 2**63 - 1)
    if before_id is not None and times["until"] is None:
        bad("before_id", "needs until (the time of that event)")
    result = await self._call(self.center.logs, query(request, "partition"), query(request, "level"),
                              times["since"], query(request, "q"), limit, times["until"], before_id)
    return self._json(request, result)

# -- users (admin) -------------------------------------------------------------------

# -- alarms ------------------------------------------------------------------------

@authorized_route(WebAPI.app, "viewer", "/api/alarms", methods=["GET"])
async def alarms(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """The active alarms (?all=1: with history and shelved ones; ?partition=P)."""
    include_all = query_flag(request, "all")
    partition = query(request, "partition")
    return self._json(request, await self._call(self.center.alarms, session.user, include_all, partition))

@authorized_route(WebAPI.app, "operator", "/api/alarms/<int:alarm_id>/ack", methods=["POST"])
async def acknowledge_alarm(self: WebAPI, request: IRequest, session: Session, alarm_id: int) -> bytes:
    """Acknowledge an alarm (audited)."""
    self._body(request, (), required=False)
    return self._json(request, await self._call(self.center.acknowledge_alarm, session.user, alarm_id))

@authorized_route(WebAPI.app, "expert", "/api/alarms/<int:alarm_id>/shelve", methods=["POST"])
async def shelve_alarm(self: WebAPI, request: IRequest, session: Session, alarm_id: int) -> bytes:
    """Shelve an alarm C{{"until": ISO time or seconds from now, "reason"}} (audited)."""
    until, reason = shelve_body(self._body(request, ("until", "reason")), self.clock.seconds())
    return self._json(request, await self._call(self.center.shelve_alarm, session.user, alarm_id, until, reason))

@authorized_route(WebAPI.app, "admin", "/api/users", methods=["GET"])
async def users(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """Every user with roles."""
    return self._json(request, await self._call(self.center.users, session.user))

@authorized_route(WebAPI.app, "admin", "/api/users", methods=["POST"])
async def add_user(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """A new user C{{username, password, roles}}."""
    body = self._body(request, ("username", "password", "roles"))
    name, password = text(body, "username"), text(body, "password")
    role_names = roles(body)
    return self._json(request, await self._call(self.center.add_user, session.user, name, password, role_names))

@authorized_route(WebAPI.app, "admin", "/api/users/<name>", methods=["PUT"])
async def update_user(self: WebAPI, request: IRequest, session: Session, name: str) -> bytes:
    """Change a user's password and/or roles."""
    body = self._body(request, ("password", "roles"))
    if not body:
        bad("body", "give password and/or roles")
    password = text(body, "password") if "password" in body else None
    role_names = roles(body) if "roles" in body else None
    return self._json(request, await self._call(self.center.update_user, session.user, name, password,
                                                role_names))

@authorized_route(WebAPI.app, "admin", "/api/users/<name>", methods=["DELETE"])
async def delete_user(self: WebAPI, request: IRequest, session: Session, name: str) -> bytes:
    """Delete a user."""
    return self._json(request, await self._call(self.center.delete_user, session.user, name))
