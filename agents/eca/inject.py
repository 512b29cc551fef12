# -*- test-case-name: tests.test_inject -*-
"""
L{FaultInjector}: C{ecs inject} through the ECA (C{POST
/api/systems/{id}/inject}).  An expert reports a local fault to a
controller, or tells it the fault is resolved, or makes a global system
raise a detector alarm; the ECA sends the request with its own key (the
controllers accept C{inject} from it, L{ecs.net.authz}), audits it under the
user's name and writes a warning to the operator log.  What was refused is
audited too, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet import defer

from agents.eca.errors import need, pca_error
from agents.eca.interfaces import IAudit, ILogBook
from ecs.control import ControlError, User
from ecs.net.remote_registry import Entry
from ecs.net.transport import INode, RequestError

#: What can be injected, as the controllers name it.
WHATS = ("error", "resolved", "detector_error")

#: Seconds the controller has to answer.
INJECT_TIMEOUT = 10.0


class FaultInjector:
    """Faults injected into controllers by experts, through the ECA's key."""

    def __init__(
        self, node: INode, registered: Mapping[tuple[str, str], Entry], audit: IAudit, logbook: ILogBook
    ) -> None:
        self._node = node
        self._registered = registered
        self._audit = audit
        self._logbook = logbook

    def inject(self, user: User, system: str, body: Any) -> defer.Deferred[dict[str, Any]]:
        """
        See L{ecs.control.IControlCenter.inject}: C{body} is C{{"what",
        "partition"?, "detector"?}}.
        """
        need(user, "expert")
        request = self._checked(body)
        arguments = {"system": system, **request}
        return self._audit.audited(user, "inject", arguments, lambda: self._send(user, system, request))

    @staticmethod
    def _checked(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ControlError("bad_request", "the body must be an object: {\"what\": ...}")
        unknown = sorted(set(body) - {"what", "partition", "detector"})
        if unknown:
            raise ControlError("bad_request", f"unknown field(s) {', '.join(unknown)}: what, partition, detector")
        what = body.get("what")
        if isinstance(what, str):
            what = what.replace("-", "_")
        if what not in WHATS:
            raise ControlError("bad_request", f"'what' must be one of {', '.join(WHATS)}, got {what!r}")
        request: dict[str, Any] = {"what": what}
        for key in ("partition", "detector"):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value or len(value) > 200:
                raise ControlError("bad_request", f"'{key}' must be an id (a non-empty string)")
            request[key] = value
        if what == "detector_error" and "detector" not in request:
            raise ControlError("bad_request", "detector_error needs 'detector': the detector id")
        if what != "detector_error" and "detector" in request:
            raise ControlError("bad_request", f"{what} takes no 'detector'")
        return request

    async def _send(self, user: User, system: str, request: dict[str, Any]) -> dict[str, Any]:
        entry = self._registered.get(("detector", system)) or self._registered.get(("global", system))
        if entry is None or entry.info.endpoint is None:
            raise ControlError("not_found", f"no running controller {system!r} is registered")
        try:
            reply = await self._node.connect(entry.info.endpoint).request(
                system, "inject", request, timeout=INJECT_TIMEOUT
            )
        except RequestError as e:
            raise pca_error(e) from None
        detail = f" for {request['detector']}" if "detector" in request else ""
        self._logbook.log("warn", "ECA", f"{user.name} injected {request['what']}{detail} into {system}",
                          request.get("partition"))
        return dict(reply)
