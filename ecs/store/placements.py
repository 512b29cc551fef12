# -*- test-case-name: tests.test_store_placements -*-
"""
Placement of agents (which host and launcher each one uses) and the launch
records of the agents the ECA started (tables C{placements} and
C{launches}, schema version 2).

An agent is named C{"<kind>:<id>"} (L{ecs.launch.agent_name}); its
placement holds the host, the launcher (C{local}, C{ssh}, C{slurm}), the
launcher's options (a JSON object of at most L{MAX_OPTIONS} bytes) and
whether the ECA starts it on its own (C{autostart}).  A launch record is
the JSON text of an L{ecs.launch.LaunchRecord}, kept while the agent runs so
that a restarted ECA adopts it instead of starting a duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ecs.launch import AGENT_KINDS, HOST_RE, ID_RE, LAUNCHERS
from ecs.store.errors import StoreError, _show, _to_json, check_name
from ecs.store.txn import _all, _deferred, _one, _StoreArea, _Txn

MAX_OPTIONS = 16_384
"""Largest placement options, in bytes of compact JSON."""

MAX_RECORD = 16_384
"""Largest launch record, in bytes of JSON."""


@dataclass(frozen=True, slots=True)
class PlacementRow:
    """Where and how an agent runs."""

    agent: str
    kind: str
    host: str
    launcher: str
    options: dict[str, Any] = field(default_factory=dict)
    autostart: bool = True
    updated: float = 0.0
    author: str = ""

    @property
    def id(self) -> str:
        """The agent's id (after the kind)."""
        return self.agent.partition(":")[2]


@dataclass(frozen=True, slots=True)
class LaunchRow:
    """The launch record of an agent the ECA started (C{record}: JSON text)."""

    agent: str
    launcher: str
    host: str
    record: str
    started: float


def check_agent(value: object) -> tuple[str, str]:
    """
    The (kind, id) of an agent name C{"<kind>:<id>"}, or
    C{StoreError("bad_request")} naming what is wrong.
    """
    if not isinstance(value, str):
        raise StoreError("bad_request", f"invalid agent name {_show(value)}: expected <kind>:<id>")
    kind, sep, agent_id = value.partition(":")
    if not sep or kind not in AGENT_KINDS:
        raise StoreError(
            "bad_request",
            f"invalid agent name {_show(value)}: expected <kind>:<id> with kind one of {', '.join(AGENT_KINDS)}",
        )
    if not ID_RE.fullmatch(agent_id):
        raise StoreError(
            "bad_request", f"invalid agent id in {_show(value)}: use 1 to 128 letters, digits or _ . @ -"
        )
    return kind, agent_id


def _check_host(value: object) -> str:
    if not isinstance(value, str) or not HOST_RE.fullmatch(value) or value.startswith("-"):
        raise StoreError("bad_request", f"invalid host {_show(value)}: a host name or address")
    return value


def _check_launcher(value: object) -> str:
    if value not in LAUNCHERS:
        raise StoreError("bad_request", f"invalid launcher {_show(value)}: use {', '.join(LAUNCHERS)}")
    assert isinstance(value, str)
    return value


def _check_options(value: object) -> str:
    text = _to_json(value, "placement options")
    if len(text.encode()) > MAX_OPTIONS:
        raise StoreError("bad_request", f"placement options too large: more than {MAX_OPTIONS} bytes of JSON")
    return text


def _check_record(value: object) -> str:
    if not isinstance(value, str) or len(value.encode()) > MAX_RECORD:
        raise StoreError("bad_request", f"a launch record is a JSON text of at most {MAX_RECORD} bytes")
    try:
        parsed = json.loads(value)
    except ValueError:
        raise StoreError("bad_request", "launch record is not valid JSON") from None
    if not isinstance(parsed, Mapping):
        raise StoreError("bad_request", "launch record must be a JSON object")
    return value


_PLACEMENT_COLUMNS = "agent, kind, host, launcher, options, autostart, updated, author"


def _placement_row(row: Sequence[Any]) -> PlacementRow:
    return PlacementRow(row[0], row[1], row[2], row[3], json.loads(row[4]), bool(row[5]), row[6], row[7])


class PlacementOperations(_StoreArea):
    """The operations on placements and launch records."""

    # -- placements ----------------------------------------------------------------

    @_deferred
    async def placements(self) -> list[PlacementRow]:
        """Every placement, by agent name."""

        def op(txn: _Txn) -> list[PlacementRow]:
            rows = _all(txn, f"SELECT {_PLACEMENT_COLUMNS} FROM placements ORDER BY agent")  # noqa: S608 - constant SQL, bound values
            return [_placement_row(r) for r in rows]

        return await self._read(op, what="list placements")

    @_deferred
    async def placement(self, agent: str) -> PlacementRow | None:
        """One agent's placement, or C{None}."""
        check_agent(agent)

        def op(txn: _Txn) -> PlacementRow | None:
            row = _one(txn, f"SELECT {_PLACEMENT_COLUMNS} FROM placements WHERE agent = ?", (agent,))  # noqa: S608 - constant SQL, bound values
            return None if row is None else _placement_row(row)

        return await self._read(op, what=f"read placement of {agent}")

    @_deferred
    async def set_placement(
        self,
        agent: str,
        host: str,
        launcher: str,
        options: Mapping[str, Any] | None = None,
        autostart: bool = True,
        author: str = "ECA",
    ) -> PlacementRow:
        """Place C{agent} (insert, or replace its placement)."""
        kind, _ = check_agent(agent)
        _check_host(host)
        _check_launcher(launcher)
        text = _check_options({} if options is None else options)
        if not isinstance(autostart, bool):
            raise StoreError("bad_request", f"invalid autostart {_show(autostart)}: true or false")
        check_name(author, "author")
        now = self._now()

        def op(txn: _Txn) -> PlacementRow:
            txn.execute(
                f"INSERT INTO placements ({_PLACEMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant SQL, bound values
                " ON CONFLICT (agent) DO UPDATE SET host = excluded.host, launcher = excluded.launcher,"
                " options = excluded.options, autostart = excluded.autostart,"
                " updated = excluded.updated, author = excluded.author",
                (agent, kind, host, launcher, text, int(autostart), now, author),
            )
            return PlacementRow(agent, kind, host, launcher, json.loads(text), autostart, now, author)

        return await self._write(op, what=f"place {agent}")

    @_deferred
    async def delete_placement(self, agent: str) -> None:
        """Forget an agent's placement; C{not_found} if it has none."""
        check_agent(agent)

        def op(txn: _Txn) -> None:
            txn.execute("DELETE FROM placements WHERE agent = ?", (agent,))
            if txn.rowcount == 0:
                raise StoreError("not_found", f"no placement for {agent}")

        await self._write(op, what=f"delete placement of {agent}")

    # -- launch records --------------------------------------------------------------

    @_deferred
    async def launches(self) -> list[LaunchRow]:
        """Every launch record, by agent name."""

        def op(txn: _Txn) -> list[LaunchRow]:
            rows = _all(txn, "SELECT agent, launcher, host, record, started FROM launches ORDER BY agent")
            return [LaunchRow(*r) for r in rows]

        return await self._read(op, what="list launch records")

    @_deferred
    async def record_launch(self, agent: str, launcher: str, host: str, record_json: str) -> LaunchRow:
        """Keep the launch record of C{agent} (replacing an older one)."""
        check_agent(agent)
        _check_launcher(launcher)
        _check_host(host)
        _check_record(record_json)
        now = self._now()

        def op(txn: _Txn) -> LaunchRow:
            txn.execute(
                "INSERT INTO launches (agent, launcher, host, record, started) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (agent) DO UPDATE SET launcher = excluded.launcher, host = excluded.host,"
                " record = excluded.record, started = excluded.started",
                (agent, launcher, host, record_json, now),
            )
            return LaunchRow(agent, launcher, host, record_json, now)

        return await self._write(op, what=f"record launch of {agent}")

    @_deferred
    async def delete_launch(self, agent: str) -> bool:
        """Forget C{agent}'s launch record; fires with whether there was one."""
        check_agent(agent)

        def op(txn: _Txn) -> bool:
            txn.execute("DELETE FROM launches WHERE agent = ?", (agent,))
            return bool(txn.rowcount)

        return await self._write(op, what=f"delete launch record of {agent}")
