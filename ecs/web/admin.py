# -*- test-case-name: tests.test_web -*-
"""
The API routes for experts and admins: the ECS control and the management
of partitions and detectors, agents and their placement, configurations
and tags, runs and logs, users.  They are routes of
L{ecs.web.routes.WebAPI}'s Klein app (added when L{ecs.web.api} imports this
module) with the same plumbing: authentication and roles
(L{ecs.web.auth}), bounded JSON bodies and checked queries
(L{ecs.web.inputs}), errors as JSON naming the field.
"""

from __future__ import annotations

import math

from twisted.web.iweb import IRequest

from ecs.web.inputs import MAX_LIMIT, bad, boolean, query, query_flag, query_int, roles, text, text_list
from ecs.web.routes import WebAPI

# -- management (expert, with the ECS control) ---------------------------------

@WebAPI.app.route("/api/control", methods=["GET"])
async def ecs_control(self: WebAPI, request: IRequest) -> bytes:
    """Who holds the ECS control (holder null when nobody)."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.ecs_control))

@WebAPI.app.route("/api/control", methods=["POST"])
async def take_ecs_control(self: WebAPI, request: IRequest) -> bytes:
    """Take the ECS control, needed for management (admin: ?force=1)."""
    session = await self._session(request, "expert")
    force = self._force(request, session)
    body = self._body(request, ("scope",), required=False)
    if body.get("scope", "ecs") != "ecs":
        bad("scope", "must be ecs")
    return self._json(request, await self._call(self.center.take_control, session.user, "ecs", force))

@WebAPI.app.route("/api/control", methods=["DELETE"])
async def release_ecs_control(self: WebAPI, request: IRequest) -> bytes:
    """Give up the ECS control."""
    session = await self._session(request, "expert")
    return self._json(request, await self._call(self.center.release_control, session.user, "ecs"))

@WebAPI.app.route("/api/partitions", methods=["POST"])
async def create_partition(self: WebAPI, request: IRequest) -> bytes:
    """Create a partition C{{"id"}}."""
    session = await self._session(request, "expert")
    pid = text(self._body(request, ("id",)), "id")
    if pid == "ecs":
        bad("id", "ecs is reserved")
    return self._json(request, await self._call(self.center.create_partition, session.user, pid))

@WebAPI.app.route("/api/partitions/<pid>", methods=["DELETE"])
async def delete_partition(self: WebAPI, request: IRequest, pid: str) -> bytes:
    """Delete a partition (?force=1)."""
    session = await self._session(request, "expert")
    force = query_flag(request, "force")
    return self._json(request, await self._call(self.center.delete_partition, session.user, pid, force))

@WebAPI.app.route("/api/detectors/unassigned", methods=["GET"])
async def unassigned(self: WebAPI, request: IRequest) -> bytes:
    """Detectors in no partition, with live states."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.unassigned))

@WebAPI.app.route("/api/systems", methods=["GET"])
async def systems(self: WebAPI, request: IRequest) -> bytes:
    """Detector types, global systems, detectors and the state tables."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.systems))

@WebAPI.app.route("/api/detectors", methods=["POST"])
async def create_detector(self: WebAPI, request: IRequest) -> bytes:
    """Create an unassigned detector C{{"id", "type"}}."""
    session = await self._session(request, "expert")
    body = self._body(request, ("id", "type"))
    did, dtype = text(body, "id"), text(body, "type")
    return self._json(request, await self._call(self.center.create_detector, session.user, did, dtype))

@WebAPI.app.route("/api/detectors/<did>", methods=["DELETE"])
async def delete_detector(self: WebAPI, request: IRequest, did: str) -> bytes:
    """Delete an unassigned detector (?force=1)."""
    session = await self._session(request, "expert")
    force = query_flag(request, "force")
    return self._json(request, await self._call(self.center.delete_detector, session.user, did, force))

@WebAPI.app.route("/api/detectors/<did>/move", methods=["POST"])
async def move_detector(self: WebAPI, request: IRequest, did: str) -> bytes:
    """Move a detector C{{"to": partition or null, "force"?}}."""
    session = await self._session(request, "expert")
    body = self._body(request, ("to", "force"))
    if "to" not in body:
        bad("to", "required (a partition id or null)")
    to = body["to"]
    if to is not None and (not isinstance(to, str) or not to):
        bad("to", "must be a partition id or null")
    force = boolean(body, "force")
    return self._json(request, await self._call(self.center.move_detector, session.user, did, to, force))

# -- agents: placement (admin) and supervision (reads viewer, commands expert) --

@WebAPI.app.route("/api/agents", methods=["GET"])
async def agents_list(self: WebAPI, request: IRequest) -> bytes:
    """Every placed agent: placement, launcher status, registration, supervision."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.agents))

@WebAPI.app.route("/api/agents/<agent>", methods=["GET"])
async def agent_get(self: WebAPI, request: IRequest, agent: str) -> bytes:
    """One agent (C{<kind>:<id>})."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.agent, agent))

@WebAPI.app.route("/api/agents/<agent>", methods=["PUT"])
async def agent_place(self: WebAPI, request: IRequest, agent: str) -> bytes:
    """Place an agent C{{"host", "launcher", "options"?, "autostart"?}} (admin: it says what runs where)."""
    session = await self._session(request, "admin")
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

@WebAPI.app.route("/api/agents/<agent>", methods=["DELETE"])
async def agent_unplace(self: WebAPI, request: IRequest, agent: str) -> bytes:
    """Forget an agent's placement (admin; 409 while it runs)."""
    session = await self._session(request, "admin")
    return self._json(request, await self._call(self.center.delete_placement, session.user, agent))

@WebAPI.app.route("/api/agents/<agent>/<any(start,stop,restart):command>", methods=["POST"])
async def agent_command(self: WebAPI, request: IRequest, agent: str, command: str) -> bytes:
    """Start, stop or restart an agent; the agent after it (launcher failures 502)."""
    session = await self._session(request, "expert")
    self._body(request, (), required=False)
    return self._json(request, await self._call(self.center.agent_command, session.user, agent, command))

@WebAPI.app.route("/api/agents/<agent>/output", methods=["GET"])
async def agent_output(self: WebAPI, request: IRequest, agent: str) -> bytes:
    """The last lines of an agent's output (?lines=N, at most 2000, default 200)."""
    session = await self._session(request, "expert")
    lines = query_int(request, "lines", 200, 1, 2000)
    return self._json(request, await self._call(self.center.agent_output, session.user, agent, lines))

# -- configurations and tags --------------------------------------------------

@WebAPI.app.route("/api/configs", methods=["GET"])
async def configs(self: WebAPI, request: IRequest) -> bytes:
    """Latest version of every configuration (?system=)."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.configs, query(request, "system")))

@WebAPI.app.route("/api/configs/<cid>", methods=["GET"])
async def config(self: WebAPI, request: IRequest, cid: str) -> bytes:
    """One configuration (?version=N)."""
    await self._session(request, "viewer")
    version = query_int(request, "version", None, 1, 2**31)
    return self._json(request, await self._call(self.center.config, cid, version))

@WebAPI.app.route("/api/configs/<cid>", methods=["PUT"])
async def save_config(self: WebAPI, request: IRequest, cid: str) -> bytes:
    """A new version of a configuration C{{"system", "parameters"}}."""
    session = await self._session(request, "expert")
    body = self._body(request, ("system", "parameters"))
    system = text(body, "system")
    parameters = body.get("parameters")
    if not isinstance(parameters, dict):
        bad("parameters", "must be an object")
    return self._json(request, await self._call(self.center.save_config, session.user, cid, system, parameters))

@WebAPI.app.route("/api/configs/<cid>", methods=["DELETE"])
async def delete_config(self: WebAPI, request: IRequest, cid: str) -> bytes:
    """Delete a configuration."""
    session = await self._session(request, "expert")
    return self._json(request, await self._call(self.center.delete_config, session.user, cid))

@WebAPI.app.route("/api/tags", methods=["GET"])
async def tags(self: WebAPI, request: IRequest) -> bytes:
    """Every tag (?partition= adds compatible/missing/extra)."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.tags, query(request, "partition")))

@WebAPI.app.route("/api/tags/<name>", methods=["GET"])
async def tag(self: WebAPI, request: IRequest, name: str) -> bytes:
    """One tag."""
    await self._session(request, "viewer")
    return self._json(request, await self._call(self.center.tag, name))

@WebAPI.app.route("/api/tags/<name>", methods=["PUT"])
async def save_tag(self: WebAPI, request: IRequest, name: str) -> bytes:
    """Create or replace a tag C{{"configs": [ids]}}."""
    session = await self._session(request, "expert")
    ids = text_list(self._body(request, ("configs",)), "configs")
    return self._json(request, await self._call(self.center.save_tag, session.user, name, ids))

@WebAPI.app.route("/api/tags/<name>", methods=["DELETE"])
async def delete_tag(self: WebAPI, request: IRequest, name: str) -> bytes:
    """Delete a tag."""
    session = await self._session(request, "expert")
    return self._json(request, await self._call(self.center.delete_tag, session.user, name))

# -- runs and logs ----------------------------------------------------------------

@WebAPI.app.route("/api/runs", methods=["GET"])
async def runs(self: WebAPI, request: IRequest) -> bytes:
    """Run records, newest first (?partition=&limit=)."""
    await self._session(request, "viewer")
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    return self._json(request, await self._call(self.center.runs, query(request, "partition"), limit))

@WebAPI.app.route("/api/logs", methods=["GET"])
async def logs(self: WebAPI, request: IRequest) -> bytes:
    """Stored log events (?partition=&level=&since=&until=&before_id=&q=&limit=; before_id with until
    pages from the event (until, before_id) on, skipping none of the same time)."""
    await self._session(request, "viewer")
    times = {name: _query_time(request, name) for name in ("since", "until")}
    limit = query_int(request, "limit", 100, 1, MAX_LIMIT)
    before_id = query_int(request, "before_id", None, 0, 2**63 - 1)
    if before_id is not None and times["until"] is None:
        bad("before_id", "needs until (the time of that event)")
    result = await self._call(self.center.logs, query(request, "partition"), query(request, "level"),
                              times["since"], query(request, "q"), limit, times["until"], before_id)
    return self._json(request, result)

def _query_time(request: IRequest, name: str) -> float | None:
    """C{?name=} as finite seconds since the epoch, or None."""
    value = query(request, name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        bad(name, "must be a number (seconds since the epoch)")
    if not math.isfinite(seconds):
        bad(name, "must be finite")
    return seconds

# -- users (admin) -------------------------------------------------------------------

@WebAPI.app.route("/api/users", methods=["GET"])
async def users(self: WebAPI, request: IRequest) -> bytes:
    """Every user with roles."""
    session = await self._session(request, "admin")
    return self._json(request, await self._call(self.center.users, session.user))

@WebAPI.app.route("/api/users", methods=["POST"])
async def add_user(self: WebAPI, request: IRequest) -> bytes:
    """A new user C{{username, password, roles}}."""
    session = await self._session(request, "admin")
    body = self._body(request, ("username", "password", "roles"))
    name, password = text(body, "username"), text(body, "password")
    role_names = roles(body)
    return self._json(request, await self._call(self.center.add_user, session.user, name, password, role_names))

@WebAPI.app.route("/api/users/<name>", methods=["PUT"])
async def update_user(self: WebAPI, request: IRequest, name: str) -> bytes:
    """Change a user's password and/or roles."""
    session = await self._session(request, "admin")
    body = self._body(request, ("password", "roles"))
    if not body:
        bad("body", "give password and/or roles")
    password = text(body, "password") if "password" in body else None
    role_names = roles(body) if "roles" in body else None
    return self._json(request, await self._call(self.center.update_user, session.user, name, password,
                                                role_names))

@WebAPI.app.route("/api/users/<name>", methods=["DELETE"])
async def delete_user(self: WebAPI, request: IRequest, name: str) -> bytes:
    """Delete a user."""
    session = await self._session(request, "admin")
    return self._json(request, await self._call(self.center.delete_user, session.user, name))
