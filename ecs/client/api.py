# -*- test-case-name: tests.test_commands -*-
"""
The L{ecs.client.commands.Api} over the ECA's HTTP API (L{ecs.client.http}):
each method is one request to the route the web offers for the same
L{ecs.control.IControlCenter} method (L{ecs.web.routes}, L{ecs.web.admin}).

The methods are coroutines only to share the commands' bodies with the
shell: they block on HTTP and never suspend (see L{ecs.client.commands.run_now}).
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ecs.client.http import Client, ClientError, partition_path


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class HttpApi:
    """L{ecs.client.commands.Api} through a L{Client} (its token is the user)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def partitions(self) -> list[dict[str, Any]]:
        return list(self.client.get("/api/partitions") or [])

    async def partition(self, partition: str) -> dict[str, Any]:
        return dict(self.client.get(partition_path(partition)) or {})

    async def take_control(self, scope: str, force: bool) -> dict[str, Any]:
        path = "/api/control" if scope == "ecs" else partition_path(scope) + "/control"
        try:
            answer = self.client.call("POST", path, None, {"force": 1} if force else None)
        except ClientError as e:
            holder = e.body.get("holder") if isinstance(e.body, dict) else None
            if holder and str(holder) not in e.message:
                e.message += f" (held by {holder})"
            raise
        return dict(answer or {})

    async def release_control(self, scope: str) -> Any:
        return self.client.delete("/api/control" if scope == "ecs" else partition_path(scope) + "/control")

    async def command(self, partition: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.post(partition_path(partition) + "/" + command, body or None)
        return answer if isinstance(answer, dict) else {}

    async def create_partition(self, partition: str) -> dict[str, Any]:
        return dict(self.client.post("/api/partitions", {"id": partition}) or {})

    async def delete_partition(self, partition: str, force: bool) -> Any:
        return self.client.call("DELETE", partition_path(partition), None, {"force": 1} if force else None)

    async def systems(self) -> dict[str, Any]:
        return dict(self.client.get("/api/systems") or {})

    async def reload(self) -> dict[str, Any]:
        return dict(self.client.post("/api/reload") or {})

    async def unassigned(self) -> list[dict[str, Any]]:
        return list(self.client.get("/api/detectors/unassigned") or [])

    async def create_detector(self, detector: str, type: str) -> dict[str, Any]:
        return dict(self.client.post("/api/detectors", {"id": detector, "type": type}) or {})

    async def delete_detector(self, detector: str, force: bool) -> Any:
        return self.client.call("DELETE", "/api/detectors/" + _q(detector), None, {"force": 1} if force else None)

    async def move_detector(self, detector: str, to: str | None, force: bool) -> dict[str, Any]:
        return dict(self.client.post(f"/api/detectors/{_q(detector)}/move", {"to": to, "force": force}) or {})

    async def configs(self, system: str | None) -> list[dict[str, Any]]:
        return list(self.client.get("/api/configs", system=system) or [])

    async def config(self, config: str, version: int | None) -> dict[str, Any]:
        return dict(self.client.get("/api/configs/" + _q(config), version=version) or {})

    async def save_config(self, config: str, system: str, parameters: dict[str, Any]) -> dict[str, Any]:
        body = {"system": system, "parameters": parameters}
        return dict(self.client.call("PUT", "/api/configs/" + _q(config), body) or {})

    async def delete_config(self, config: str) -> Any:
        return self.client.delete("/api/configs/" + _q(config))

    async def tags(self, partition: str | None) -> list[dict[str, Any]]:
        return list(self.client.get("/api/tags", partition=partition) or [])

    async def tag(self, name: str) -> dict[str, Any]:
        return dict(self.client.get("/api/tags/" + _q(name)) or {})

    async def save_tag(self, name: str, configs: list[str]) -> dict[str, Any]:
        return dict(self.client.call("PUT", "/api/tags/" + _q(name), {"configs": configs}) or {})

    async def delete_tag(self, name: str) -> Any:
        return self.client.delete("/api/tags/" + _q(name))

    async def users(self) -> list[dict[str, Any]]:
        return list(self.client.get("/api/users") or [])

    async def add_user(self, name: str, password: str, roles: list[str]) -> dict[str, Any]:
        return dict(self.client.post("/api/users", {"username": name, "password": password, "roles": roles}) or {})

    async def update_user(self, name: str, password: str | None, roles: list[str] | None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if password is not None:
            body["password"] = password
        if roles is not None:
            body["roles"] = roles
        return dict(self.client.call("PUT", "/api/users/" + _q(name), body) or {})

    async def delete_user(self, name: str) -> Any:
        return self.client.delete("/api/users/" + _q(name))

    async def agents(self) -> list[dict[str, Any]]:
        try:
            return list(self.client.get("/api/agents") or [])
        except ClientError as e:
            if e.status == 404:
                e.message = f"this ECA has no /api/agents (an older version?): {e.message}"
            raise

    async def agent(self, agent: str) -> dict[str, Any]:
        return dict(self.client.get("/api/agents/" + _q(agent)) or {})

    async def set_placement(
        self, agent: str, host: str, launcher: str, options: dict[str, Any], autostart: bool
    ) -> dict[str, Any]:
        body = {"host": host, "launcher": launcher, "options": options, "autostart": autostart}
        return dict(self.client.call("PUT", "/api/agents/" + _q(agent), body) or {})

    async def delete_placement(self, agent: str) -> Any:
        return self.client.delete("/api/agents/" + _q(agent))

    async def agent_command(self, agent: str, command: str) -> dict[str, Any]:
        return dict(self.client.post(f"/api/agents/{_q(agent)}/{command}") or {})

    async def agent_output(self, agent: str, lines: int) -> dict[str, Any]:
        return dict(self.client.get(f"/api/agents/{_q(agent)}/output", lines=lines) or {})

    async def runs(
        self, partition: str | None, limit: int, run_type: str | None = None, since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        return list(
            self.client.get("/api/runs", partition=partition, limit=limit, type=run_type, since=since, until=until)
            or []
        )

    async def audit(
        self, user: str | None, action: str | None, since: float | None, until: float | None, limit: int,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        return list(
            self.client.get("/api/audit", user=user, action=action, since=since, until=until, limit=limit,
                            before=before)
            or []
        )

    async def run_sequences(self) -> list[dict[str, Any]]:
        return list(self.client.get("/api/sequences") or [])

    async def run_sequence(self, name: str, partition: str) -> dict[str, Any]:
        return dict(self.client.post(f"/api/sequences/{_q(name)}/run", {"partition": partition}) or {})

    async def sequence_status(self, partition: str) -> dict[str, Any]:
        return dict(self.client.get(partition_path(partition) + "/sequence") or {})

    async def sequence_control(self, partition: str, action: str) -> dict[str, Any]:
        return dict(self.client.post(partition_path(partition) + f"/sequence/{action}") or {})

    async def logbook(
        self, text: str | None, partition: str | None, run: int | None, author: str | None, since: float | None,
        until: float | None, limit: int, before: int | None = None,
    ) -> list[dict[str, Any]]:
        return list(
            self.client.get("/api/logbook", text=text, partition=partition, run=run, author=author, since=since,
                            until=until, limit=limit, before=before)
            or []
        )

    async def add_logbook_entry(
        self, text: str, partition: str | None, run: int | None, corrects: int | None,
        attachments: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text, "partition": partition, "run": run, "corrects": corrects}
        if attachments:  # the API takes the files' bytes in base64
            body["attachments"] = [
                {"name": a["name"], "content_type": a["content_type"], "data": base64.b64encode(a["data"]).decode()}
                for a in attachments
            ]
        return dict(self.client.post("/api/logbook", {k: v for k, v in body.items() if v is not None}) or {})

    async def logbook_attachment(self, entry: int, n: int) -> dict[str, Any]:
        data, content_type = self.client.download(f"/api/logbook/{entry}/attachments/{n}")
        return {"content_type": content_type, "data": data}

    async def logs(
        self, partition: str | None, level: str | None, since: float | None, q: str | None, limit: int
    ) -> list[dict[str, Any]]:
        return list(self.client.get("/api/logs", partition=partition, level=level, since=since, q=q, limit=limit) or [])

    async def alarms(self, include_all: bool, partition: str | None) -> list[dict[str, Any]]:
        return list(self.client.get("/api/alarms", all=1 if include_all else None, partition=partition) or [])

    async def acknowledge_alarm(self, alarm_id: int) -> dict[str, Any]:
        return dict(self.client.post(f"/api/alarms/{alarm_id}/ack") or {})

    async def shelve_alarm(
        self, alarm_id: int, seconds: float | None, until: float | None, reason: str
    ) -> dict[str, Any]:
        # A duration goes as seconds from now (the ECA's clock decides when it ends, whatever
        # this computer's clock says); a time as ISO-8601 in UTC.
        when: float | str = (
            seconds if seconds is not None else datetime.fromtimestamp(until or 0.0, UTC).isoformat()
        )
        return dict(self.client.post(f"/api/alarms/{alarm_id}/shelve", {"until": when, "reason": reason}) or {})


__all__ = ["HttpApi"]
