# -*- test-case-name: tests.test_run_sequences_eca -*-
"""
The API routes of scripted run sequences (issue 14, item 5): C{GET
/api/sequences} (viewer: the declared sequences), C{POST
/api/sequences/{name}/run {"partition": id}} (operator, the partition's
controller), C{GET /api/partitions/{id}/sequence} (viewer: the running or
last sequence, with its progress) and C{POST
/api/partitions/{id}/sequence/pause|resume|abort} (operator, the
controller).  Routes of L{ecs.web.routes.WebAPI}'s Klein app, added when
L{ecs.web.api} imports this module.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ecs.control import Session
from ecs.store import NAME_RE
from ecs.web.auth import authorized_route
from ecs.web.inputs import bad, text
from ecs.web.routes import WebAPI

#: What may be done to a running sequence.
ACTIONS = ("pause", "resume", "abort")


def _name(value: str, field: str) -> str:
    if not NAME_RE.fullmatch(value):
        bad(field, "must be a name of 1 to 128 letters, digits or _ . : @ -")
    return value


@authorized_route(WebAPI.app, "viewer", "/api/sequences", methods=["GET"])
async def sequences(self: WebAPI, request: IRequest, session: Session) -> bytes:
    """The declared run sequences: name, description, the steps described."""
    return self._json(request, await self._call(self.center.run_sequences, session.user))


@authorized_route(WebAPI.app, "operator", "/api/sequences/<name>/run", methods=["POST"])
async def run_sequence(self: WebAPI, request: IRequest, session: Session, name: str) -> bytes:
    """Run a sequence on a partition as this user: C{{"partition": id}}; its status."""
    partition = _name(text(self._body(request, ("partition",)), "partition"), "partition")
    _name(name, "name")
    await self._existing_partition(partition)
    return self._json(request, await self._call(self.center.run_sequence, session.user, name, partition))


@authorized_route(WebAPI.app, "viewer", "/api/partitions/<pid>/sequence", methods=["GET"])
async def sequence_status(self: WebAPI, request: IRequest, session: Session, pid: str) -> bytes:
    """The partition's run sequence: running, paused, or how the last one ended."""
    await self._existing_partition(pid)
    return self._json(request, await self._call(self.center.sequence_status, session.user, pid))


@authorized_route(WebAPI.app, "operator", "/api/partitions/<pid>/sequence/<any(pause,resume,abort):action>",
                  methods=["POST"])
async def sequence_control(self: WebAPI, request: IRequest, session: Session, pid: str, action: str) -> bytes:
    """Pause (after the current step), resume or abort (the partition too) the partition's sequence."""
    self._body(request, (), required=False)
    await self._existing_partition(pid)
    return self._json(request, await self._call(self.center.sequence_control, session.user, pid, action))


__all__ = ["ACTIONS", "run_sequence", "sequence_control", "sequence_status", "sequences"]
