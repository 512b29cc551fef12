# -*- test-case-name: tests.test_actions -*-
"""
The interface shared by every subsystem action: what a controller asks for and gets back.

A controller calls :meth:`IAction.run` with an :class:`ActionRequest` for every step it works
through; the returned Deferred fires ``None`` on success or fails with :class:`ActionFailed`.
:data:`LogLine` is how actions write lines to the agent log.  These names are re-exported by
:mod:`agents.controller.actions`, where the actions themselves are built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

__all__ = ["ActionFailed", "ActionRequest", "IAction", "LogLine"]

LogLine = Callable[[str, str], None]
"""``log_line(level, text)``, level ``"info"``, ``"warn"`` or ``"error"``: one agent-log line."""


@attrs.frozen
class ActionRequest:
    """One step of work for a system."""

    system: str
    """The detector or global system id."""
    partition: str | None
    """The partition served (global systems serve several); ``None`` for detectors."""
    transition: str
    """The input that started the work, e.g. ``"configure"``."""
    step: str
    """The state being worked through, e.g. ``"Configuring_Step1"``."""
    config: dict[str, Any] | None
    """``{"config_id": ..., "system": ..., "parameters": {...}}`` or ``None``."""


class ActionFailed(Exception):
    """The work of a step failed; :attr:`reason` says why, in words for the operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IAction(Interface):
    """The work a controller runs for each step of a transition."""

    def run(request: ActionRequest) -> Deferred[None]:
        """
        Do the work of one step.

        Fires ``None`` on success, fails with :class:`ActionFailed`.  Cancelling the Deferred
        (abort) stops the work at once (kills the process group for scripts) and the Deferred
        fails with ``CancelledError``.
        """
