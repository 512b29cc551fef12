# -*- test-case-name: tests.test_eca -*-
"""
How the ECA's collaborators turn what goes wrong below them into the
interfaces' L{ControlError}s: a store refusal (L{store_error},
L{raise_store}), a PCA refusal (L{pca_error}), a missing role (L{need}).
Also the CSRF token of a session (L{csrf_for}).  A leaf: it imports no
other module of L{agents.eca}.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.python.failure import Failure

from ecs import protocol
from ecs.control import ControlError, User
from ecs.net.transport import RequestError
from ecs.store import StoreError

_STORE_CODES = {
    "not_found": "not_found",
    "conflict": "conflict",
    "bad_request": "bad_request",
    # the database cannot be written (full, read-only): 507 with the cause
    "storage": "storage",
    # the database cannot be used now (locked, closed): 503, never a bare 500
    "unavailable": "unavailable",
}
_PCA_CODES = {
    protocol.LOCKED: "locked",
    protocol.BAD_REQUEST: "bad_request",
    "unknown_tag": "not_found",
    "unknown_config": "not_found",
    protocol.TIMEOUT: "unavailable",
    protocol.OVERLOADED: "unavailable",
    "unauthorised": "unavailable",
    "closed": "unavailable",
}


def store_error(error: StoreError) -> ControlError:
    """A store refusal as an interface error."""
    return ControlError(_STORE_CODES.get(error.code, "conflict"), error.reason)


def pca_error(error: RequestError) -> ControlError:
    """A PCA refusal as an interface error (not possible now: 409)."""
    return ControlError(_PCA_CODES.get(error.code, "conflict"), error.reason, pca_code=error.code)


def raise_store(failure: Failure) -> Any:
    """An errback: a L{StoreError} becomes its L{ControlError}; anything else passes."""
    if failure.check(StoreError):
        raise store_error(failure.value)  # type: ignore[arg-type]  # checked just above
    return failure


def need(user: User, role: str) -> None:
    """Refuse (403) unless C{user} has C{role}."""
    if not user.has(role):
        raise ControlError("forbidden", f"this needs the {role} role")


def csrf_for(token: str) -> str:
    """The CSRF token of a session: derived from it, never stored."""
    return hashlib.sha256(b"csrf:" + token.encode()).hexdigest()[:32]
