# -*- test-case-name: tests.test_supervisor -*-
"""
What a placement runs (L{spec_for}), how an agent is described to the
interfaces (L{describe}) and how launcher and store errors reach them
(L{control_error}).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.eca.supervisor.agent_machine import Supervised
from ecs.control import ControlError
from ecs.launch import AgentSpec, LaunchError, Placement, check_argument
from ecs.store import StoreError

PLUGINS = {"pca": "ecs-pca", "detector": "ecs-detector", "global": "ecs-global", "simhost": "ecs-simhost"}

_LAUNCH_CODES = {"invalid": "bad_request", "unknown": "not_found"}


def control_error(error: LaunchError | StoreError) -> ControlError:
    """
    A launcher's or the store's error as an interface error: bad input 400,
    unknown 404, the launcher's own failures (C{unreachable}, C{timeout},
    C{host_key}, C{auth}, C{failed}) 502 with that code.
    """
    if isinstance(error, StoreError):
        code = {"not_found": "not_found", "bad_request": "bad_request", "conflict": "conflict"}.get(
            error.code, "unavailable")
        return ControlError(code, error.reason)
    return ControlError(_LAUNCH_CODES.get(error.code, error.code), error.reason)


def agent_args(options: Mapping[str, Any]) -> list[str]:
    """The placement's C{agent_args} option (extra plugin arguments), checked."""
    value = options.get("agent_args", [])
    if not isinstance(value, (list, tuple)):
        raise LaunchError("invalid", f"agent_args must be a list of strings, not {value!r}")
    return [check_argument(v, "agent argument") for v in value]


def spec_for(placement: Placement) -> AgentSpec:
    """
    What a placement runs: C{ecs-<kind> --id <id>} (a sim host: C{ecs-simhost}
    alone, its C{--ids} coming from the options) plus the C{agent_args}
    option, e.g. C{["--type", "STS"]}.
    """
    kind, _, agent_id = placement.agent.partition(":")
    extra = agent_args(placement.options)
    if kind == "simhost":
        if "--ids" not in extra:
            raise LaunchError("invalid", f"{placement.agent}: a sim host needs agent_args with --ids")
        args: tuple[str, ...] = (PLUGINS[kind], *extra)
    else:
        args = (PLUGINS[kind], "--id", agent_id, *extra)
    return AgentSpec(kind, agent_id, args)


def describe(entry: Supervised, shown_state: str, registered: bool) -> dict[str, Any]:
    """
    The API's view of an agent: its placement, its last status and its
    supervision (C{shown_state}: what operators see of its machine's state).
    """
    placement = entry.placement
    record = entry.record or entry.last_record
    kind, _, agent_id = entry.name.partition(":")
    status = entry.status
    return {
        "agent": entry.name,
        "kind": kind,
        "id": agent_id,
        "host": placement.host if placement else (record.host if record else None),
        "launcher": placement.launcher if placement else (record.launcher if record else None),
        "options": dict(placement.options) if placement else {},
        "autostart": bool(placement.autostart) if placement else False,
        "registered": registered,
        "status": {
            "running": bool(status and status.running),
            "pid": status.pid if status else None,
            "job_id": status.job_id if status else None,
            "exit_code": status.exit_code if status else None,
            "since": status.since if status else None,
            "detail": status.detail if status else "",
        },
        "supervision": {
            "state": shown_state,
            "restarts": entry.restarts,
            "next_restart": entry.next_restart,
            "reason": entry.reason,
        },
    }


def reason_of(error: BaseException) -> str:
    """A launcher error as C{"code: reason"}, any other as its text."""
    if isinstance(error, LaunchError):
        return f"{error.code}: {error.reason}"
    return str(error) or type(error).__name__


__all__ = ["PLUGINS", "agent_args", "control_error", "describe", "reason_of", "spec_for"]
