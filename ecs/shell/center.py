# -*- test-case-name: tests.test_shell -*-
"""
The L{ecs.client.commands.Api} of the SSH shell: the shared commands
(L{ecs.client.table}) act through the L{IControlCenter} as the logged-in
user, exactly as the web routes do for the command line.  A refusal of
the center becomes a L{CommandError} with the command line's exit code and
the status the web would have answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer

from ecs.client.commands import CommandError
from ecs.control import ControlError, IControlCenter, User
from ecs.exits import EXIT_AUTH, EXIT_REFUSED, EXIT_USAGE


def exit_code(error: ControlError) -> int:
    """The CLI's exit code for a refusal of the center (see L{ecs.client.http.exit_code_for})."""
    if error.code == "unauthenticated" or (error.code == "forbidden" and "holder" not in error.details):
        return EXIT_AUTH
    return EXIT_REFUSED


def refusal(error: ControlError) -> str:
    """A refusal as one line: C{code: reason}, naming the holder of a control."""
    text = f"{error.code}: {error.reason}"
    holder = error.details.get("holder")
    if holder and holder not in error.reason:
        text += f" (held by {holder})"
    return text


async def _call(f: Callable[..., Any], *args: Any) -> Any:
    try:
        return await defer.maybeDeferred(f, *args)
    except ControlError as e:
        raise CommandError(exit_code(e), refusal(e), e.body(), e.status) from None


class CenterApi:
    """L{ecs.client.commands.Api} for C{user} through C{center}."""

    def __init__(self, center: IControlCenter, user: User, now: Callable[[], float] = time.time) -> None:
        self.center = center
        self.user = user
        self.now = now
        """The clock a shelving C{--for} counts from (the ECA's own: the shell runs inside it)."""

    async def partitions(self) -> list[dict[str, Any]]:
        return list(await _call(self.center.partitions))

    async def partition(self, partition: str) -> dict[str, Any]:
        return dict(await _call(self.center.partition, partition))

    async def take_control(self, scope: str, force: bool) -> dict[str, Any]:
        return dict(await _call(self.center.take_control, self.user, scope, force) or {})

    async def release_control(self, scope: str) -> Any:
        return await _call(self.center.release_control, self.user, scope)

    async def command(self, partition: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        if command in ("exclude", "include"):  # the HTTP API's routes of the same names
            change = self.center.exclude if command == "exclude" else self.center.include
            answer = await _call(change, self.user, partition, body.get("system"))
            return answer if isinstance(answer, dict) else {}
        answer = await _call(self.center.command, self.user, partition, command, body)
        return answer if isinstance(answer, dict) else {}

    async def create_partition(self, partition: str) -> dict[str, Any]:
        return dict(await _call(self.center.create_partition, self.user, partition) or {})

    async def delete_partition(self, partition: str, force: bool) -> Any:
        return await _call(self.center.delete_partition, self.user, partition, force)

    async def systems(self) -> dict[str, Any]:
        return dict(await _call(self.center.systems) or {})

    async def unassigned(self) -> list[dict[str, Any]]:
        return list(await _call(self.center.unassigned) or [])

    async def create_detector(self, detector: str, type: str) -> dict[str, Any]:
        return dict(await _call(self.center.create_detector, self.user, detector, type) or {})

    async def delete_detector(self, detector: str, force: bool) -> Any:
        return await _call(self.center.delete_detector, self.user, detector, force)

    async def move_detector(self, detector: str, to: str | None, force: bool) -> dict[str, Any]:
        return dict(await _call(self.center.move_detector, self.user, detector, to, force) or {})

    async def configs(self, system: str | None) -> list[dict[str, Any]]:
        return list(await _call(self.center.configs, system) or [])

    async def config(self, config: str, version: int | None) -> dict[str, Any]:
        return dict(await _call(self.center.config, config, version) or {})

    async def save_config(self, config: str, system: str, parameters: dict[str, Any]) -> dict[str, Any]:
        return dict(await _call(self.center.save_config, self.user, config, system, parameters) or {})

    async def delete_config(self, config: str) -> Any:
        return await _call(self.center.delete_config, self.user, config)

    async def tags(self, partition: str | None) -> list[dict[str, Any]]:
        return list(await _call(self.center.tags, partition) or [])

    async def tag(self, name: str) -> dict[str, Any]:
        return dict(await _call(self.center.tag, name) or {})

    async def save_tag(self, name: str, configs: list[str]) -> dict[str, Any]:
        return dict(await _call(self.center.save_tag, self.user, name, configs) or {})

    async def delete_tag(self, name: str) -> Any:
        return await _call(self.center.delete_tag, self.user, name)

    async def users(self) -> list[dict[str, Any]]:
        return list(await _call(self.center.users, self.user) or [])

    async def add_user(self, name: str, password: str, roles: list[str]) -> dict[str, Any]:
        return dict(await _call(self.center.add_user, self.user, name, password, roles) or {})

    async def update_user(self, name: str, password: str | None, roles: list[str] | None) -> dict[str, Any]:
        return dict(await _call(self.center.update_user, self.user, name, password, roles) or {})

    async def delete_user(self, name: str) -> Any:
        return await _call(self.center.delete_user, self.user, name)

    async def agents(self) -> list[dict[str, Any]]:
        return list(await _call(self.center.agents) or [])

    async def agent(self, agent: str) -> dict[str, Any]:
        return dict(await _call(self.center.agent, agent) or {})

    async def set_placement(
        self, agent: str, host: str, launcher: str, options: dict[str, Any], autostart: bool
    ) -> dict[str, Any]:
        return dict(await _call(self.center.set_placement, self.user, agent, host, launcher, options, autostart) or {})

    async def delete_placement(self, agent: str) -> Any:
        return await _call(self.center.delete_placement, self.user, agent)

    async def agent_command(self, agent: str, command: str) -> dict[str, Any]:
        return dict(await _call(self.center.agent_command, self.user, agent, command) or {})

    async def agent_output(self, agent: str, lines: int) -> dict[str, Any]:
        return dict(await _call(self.center.agent_output, self.user, agent, lines) or {})

    async def runs(
        self, partition: str | None, limit: int, run_type: str | None = None, since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        return list(await _call(self.center.runs, partition, limit, run_type, since, until) or [])

    async def audit(
        self, user: str | None, action: str | None, since: float | None, until: float | None, limit: int,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        return list(await _call(self.center.audit, self.user, user, action, since, until, limit, before) or [])

    async def run_sequences(self) -> list[dict[str, Any]]:
        return list(await _call(self.center.run_sequences, self.user) or [])

    async def run_sequence(self, name: str, partition: str) -> dict[str, Any]:
        return dict(await _call(self.center.run_sequence, self.user, name, partition) or {})

    async def sequence_status(self, partition: str) -> dict[str, Any]:
        return dict(await _call(self.center.sequence_status, self.user, partition) or {})

    async def sequence_control(self, partition: str, action: str) -> dict[str, Any]:
        return dict(await _call(self.center.sequence_control, self.user, partition, action) or {})

    async def logbook(
        self, text: str | None, partition: str | None, run: int | None, author: str | None, since: float | None,
        until: float | None, limit: int, before: int | None = None,
    ) -> list[dict[str, Any]]:
        return list(await _call(self.center.logbook, self.user, text, partition, run, author, since, until, limit,
                                before) or [])

    async def add_logbook_entry(
        self, text: str, partition: str | None, run: int | None, corrects: int | None,
        attachments: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        return dict(await _call(self.center.add_logbook_entry, self.user, text, partition, run, corrects,
                                attachments) or {})

    async def logbook_attachment(self, entry: int, n: int) -> dict[str, Any]:
        return dict(await _call(self.center.logbook_attachment, self.user, entry, n) or {})

    async def logs(
        self, partition: str | None, level: str | None, since: float | None, q: str | None, limit: int
    ) -> list[dict[str, Any]]:
        return list(await _call(self.center.logs, partition, level, since, q, limit) or [])

    async def alarms(self, include_all: bool, partition: str | None) -> list[dict[str, Any]]:
        return list(await _call(self.center.alarms, self.user, include_all, partition) or [])

    async def acknowledge_alarm(self, alarm_id: int) -> dict[str, Any]:
        return dict(await _call(self.center.acknowledge_alarm, self.user, alarm_id) or {})

    async def shelve_alarm(
        self, alarm_id: int, seconds: float | None, until: float | None, reason: str
    ) -> dict[str, Any]:
        absolute = self.now() + seconds if seconds is not None else until
        if absolute is None:
            raise CommandError(EXIT_USAGE, "alarms shelve: give --for or --until")
        return dict(await _call(self.center.shelve_alarm, self.user, alarm_id, absolute, reason) or {})

    async def reload(self) -> dict[str, Any]:
        return dict(await _call(self.center.reload, self.user) or {})



__all__ = ["CenterApi", "exit_code", "refusal"]
