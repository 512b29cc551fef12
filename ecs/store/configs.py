# -*- test-case-name: tests.test_store -*-
"""
Configurations (versioned parameter sets, one system each) and tags (at
most one configuration per system).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ecs.store.errors import StoreError, _check_int, _show, _to_json, check_name
from ecs.store.rows import ConfigRow, TagRow
from ecs.store.txn import _all, _deferred, _exists, _one, _StoreArea, _Txn

_CONFIG_COLUMNS = "v.config_id, v.version, c.system, v.parameters, v.created, v.author"
_CONFIG_FROM = "configurations c JOIN configuration_versions v ON v.config_id = c.config_id"
_LATEST = "v.version = (SELECT MAX(version) FROM configuration_versions WHERE config_id = c.config_id)"


def _config_row(row: Sequence[Any]) -> ConfigRow:
    return ConfigRow(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])


def _tag_rows(txn: _Txn, where: str = "", params: Sequence[Any] = ()) -> list[TagRow]:
    tags = _all(txn, f"SELECT name, created, updated, author FROM tags {where} ORDER BY name", params)  # noqa: S608 - constant SQL, bound values
    result = []
    for name, created, updated, author in tags:
        members = _all(
            txn, "SELECT system, config_id FROM tag_members WHERE tag = ? ORDER BY system", (name,)
        )
        result.append(TagRow(name, dict(members), created, updated, author))
    return result


class ConfigOperations(_StoreArea):
    """The operations on configurations and tags."""

    # -- configurations --------------------------------------------------------

    @_deferred
    async def save_config(
        self, config_id: str, system: str, parameters: Mapping[str, Any], author: str
    ) -> ConfigRow:
        """
        Save a new version of configuration C{config_id} (version 1 when
        new).  Its system cannot change (C{bad_request}).  Saving a deleted
        configuration revives it with the next version.
        """
        check_name(config_id, "configuration id", long=True)
        check_name(system, "system id")
        check_name(author, "author")
        text = _to_json(parameters, f"parameters of {config_id}")
        now = self._now()

        def op(txn: _Txn) -> ConfigRow:
            head = _one(
                txn, "SELECT system, deleted FROM configurations WHERE config_id = ?", (config_id,)
            )
            if head is None:
                txn.execute(
                    "INSERT INTO configurations (config_id, system) VALUES (?, ?)", (config_id, system)
                )
            elif head[0] != system:
                raise StoreError(
                    "bad_request",
                    f"configuration {config_id} is for system {head[0]}, not {system}",
                )
            elif head[1] is not None:
                txn.execute(
                    "UPDATE configurations SET deleted = NULL WHERE config_id = ?", (config_id,)
                )
            (version,) = _one(
                txn,
                "SELECT COALESCE(MAX(version), 0) + 1 FROM configuration_versions"
                " WHERE config_id = ?",
                (config_id,),
            )
            txn.execute(
                "INSERT INTO configuration_versions"
                " (config_id, version, parameters, created, author) VALUES (?, ?, ?, ?, ?)",
                (config_id, version, text, now, author),
            )
            return ConfigRow(config_id, version, system, json.loads(text), now, author)

        return await self._write(op, what=f"save configuration {config_id}")

    @_deferred
    async def config(self, config_id: str, version: int | None = None) -> ConfigRow:
        """
        Version C{version} of a configuration (also of a deleted one), or
        the latest version of a live one when C{version} is C{None}.
        """
        check_name(config_id, "configuration id", long=True)
        if version is not None:
            _check_int(version, "configuration version")

        def op(txn: _Txn) -> ConfigRow:
            if version is None:
                row = _one(
                    txn,
                    f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM}"  # noqa: S608 - constant SQL, bound values
                    f" WHERE c.config_id = ? AND c.deleted IS NULL AND {_LATEST}",
                    (config_id,),
                )
                if row is None:
                    raise StoreError("not_found", f"no configuration {config_id}")
            else:
                row = _one(
                    txn,
                    f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM}"  # noqa: S608 - constant SQL, bound values
                    " WHERE c.config_id = ? AND v.version = ?",
                    (config_id, version),
                )
                if row is None:
                    raise StoreError("not_found", f"no version {version} of configuration {config_id}")
            return _config_row(row)

        return await self._read(op, what=f"read configuration {config_id}")

    @_deferred
    async def config_versions(self, config_id: str) -> list[ConfigRow]:
        """Every version of a configuration (deleted ones too), oldest first."""
        check_name(config_id, "configuration id", long=True)

        def op(txn: _Txn) -> list[ConfigRow]:
            rows = _all(
                txn,
                f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM}"  # noqa: S608 - constant SQL, bound values
                " WHERE c.config_id = ? ORDER BY v.version",
                (config_id,),
            )
            if not rows:
                raise StoreError("not_found", f"no configuration {config_id}")
            return [_config_row(r) for r in rows]

        return await self._read(op, what=f"list versions of configuration {config_id}")

    @_deferred
    async def configs(self, system: str | None = None) -> list[ConfigRow]:
        """The latest version of every live configuration (of one system), by id."""
        sql = f"SELECT {_CONFIG_COLUMNS} FROM {_CONFIG_FROM} WHERE c.deleted IS NULL AND {_LATEST}"  # noqa: S608 - constant SQL, bound values
        params: tuple[Any, ...] = ()
        if system is not None:
            check_name(system, "system id")
            sql += " AND c.system = ?"
            params = (system,)

        def op(txn: _Txn) -> list[ConfigRow]:
            return [_config_row(r) for r in _all(txn, sql + " ORDER BY c.config_id", params)]

        return await self._read(op, what="list configurations")

    @_deferred
    async def delete_config(self, config_id: str) -> None:
        """
        Mark a configuration deleted; C{conflict} while a tag uses it.  Its
        versions stay readable by number (runs refer to them).
        """
        check_name(config_id, "configuration id", long=True)
        now = self._now()

        def op(txn: _Txn) -> None:
            head = _one(txn, "SELECT deleted FROM configurations WHERE config_id = ?", (config_id,))
            if head is None or head[0] is not None:
                raise StoreError("not_found", f"no configuration {config_id}")
            tags = [
                t
                for (t,) in _all(
                    txn, "SELECT tag FROM tag_members WHERE config_id = ? ORDER BY tag", (config_id,)
                )
            ]
            if tags:
                raise StoreError(
                    "conflict", f"configuration {config_id} is used by tags {', '.join(tags)}"
                )
            txn.execute("UPDATE configurations SET deleted = ? WHERE config_id = ?", (now, config_id))

        await self._write(op, what=f"delete configuration {config_id}")

    # -- tags ------------------------------------------------------------------

    @_deferred
    async def save_tag(self, name: str, config_ids: Iterable[str], author: str) -> TagRow:
        """
        Create tag C{name}, or replace its configurations, atomically.
        C{bad_request} names the unknown ids and the ids that share a system.
        """
        check_name(name, "tag name", long=True)
        check_name(author, "author")
        if isinstance(config_ids, str) or not isinstance(config_ids, Iterable):
            raise StoreError("bad_request", f"configurations of tag {name} must be a list")
        ids = [check_name(c, "configuration id", long=True) for c in config_ids]
        if not ids:
            raise StoreError("bad_request", f"tag {name} needs at least one configuration")
        twice = sorted({c for c in ids if ids.count(c) > 1})
        if twice:
            raise StoreError("bad_request", f"tag {name}: configurations listed twice: {', '.join(twice)}")
        now = self._now()

        def op(txn: _Txn) -> TagRow:
            unknown = []
            by_system: dict[str, list[str]] = {}
            for c in ids:
                row = _one(
                    txn,
                    "SELECT system FROM configurations WHERE config_id = ? AND deleted IS NULL",
                    (c,),
                )
                if row is None:
                    unknown.append(c)
                else:
                    by_system.setdefault(row[0], []).append(c)
            problems = []
            if unknown:
                problems.append(f"unknown configurations {', '.join(unknown)}")
            for system, members in sorted(by_system.items()):
                if len(members) > 1:
                    problems.append(f"{', '.join(members)} are all for system {system}")
            if problems:
                raise StoreError("bad_request", f"tag {name}: " + "; ".join(problems))
            old = _one(txn, "SELECT created FROM tags WHERE name = ?", (name,))
            if old is None:
                created = now
                txn.execute(
                    "INSERT INTO tags (name, created, updated, author) VALUES (?, ?, ?, ?)",
                    (name, now, now, author),
                )
            else:
                created = old[0]
                txn.execute(
                    "UPDATE tags SET updated = ?, author = ? WHERE name = ?", (now, author, name)
                )
                txn.execute("DELETE FROM tag_members WHERE tag = ?", (name,))
            chosen = sorted((system, ms[0]) for system, ms in by_system.items())
            txn.executemany(
                "INSERT INTO tag_members (tag, config_id, system) VALUES (?, ?, ?)",
                [(name, c, s) for s, c in chosen],
            )
            return TagRow(name, dict(chosen), created, now, author)

        return await self._write(op, what=f"save tag {name}")

    @_deferred
    async def tag(self, name: str) -> TagRow:
        """One tag; C{not_found} if there is none."""
        check_name(name, "tag name", long=True)

        def op(txn: _Txn) -> TagRow:
            rows = _tag_rows(txn, "WHERE name = ?", (name,))
            if not rows:
                raise StoreError("not_found", f"no tag {name}")
            return rows[0]

        return await self._read(op, what=f"read tag {name}")

    @_deferred
    async def tags(self) -> list[TagRow]:
        """All tags, by name."""
        return await self._read(_tag_rows, what="list tags")

    @_deferred
    async def delete_tag(self, name: str) -> None:
        """Delete a tag (its configurations stay)."""
        check_name(name, "tag name", long=True)

        def op(txn: _Txn) -> None:
            if not _exists(txn, "tags", "name", name):
                raise StoreError("not_found", f"no tag {name}")
            txn.execute("DELETE FROM tag_members WHERE tag = ?", (name,))
            txn.execute("DELETE FROM tags WHERE name = ?", (name,))

        await self._write(op, what=f"delete tag {name}")

    @_deferred
    async def resolve_tag(self, name: str) -> dict[str, ConfigRow]:
        """The latest version of each configuration of a tag, by system."""
        check_name(name, "tag name", long=True)

        def op(txn: _Txn) -> dict[str, ConfigRow]:
            if not _exists(txn, "tags", "name", name):
                raise StoreError("not_found", f"no tag {name}")
            rows = _all(
                txn,
                f"SELECT {_CONFIG_COLUMNS} FROM tag_members m"  # noqa: S608 - constant SQL, bound values
                " JOIN configurations c ON c.config_id = m.config_id"
                " JOIN configuration_versions v ON v.config_id = c.config_id"
                f" WHERE m.tag = ? AND {_LATEST} ORDER BY c.system",
                (name,),
            )
            return {r[2]: _config_row(r) for r in rows}

        return await self._read(op, what=f"resolve tag {name}")

    @_deferred
    async def compatibility(self, name: str, systems: Iterable[str]) -> dict[str, Any]:
        """
        Whether tag C{name} can configure C{systems} (a partition's
        detectors and the global systems): C{{"compatible": bool,
        "missing": [systems without a configuration], "extra": [systems
        of the tag not in C{systems}]}}.  Compatible means nothing is
        missing: the PCA configures a partition from a tag that also names
        other systems (it ignores those), so extra systems are only noted.
        """
        if isinstance(systems, str) or not isinstance(systems, Iterable):
            raise StoreError("bad_request", f"systems must be a set of ids, not {_show(systems)}")
        wanted = {check_name(s, "system id") for s in systems}
        row = await self.tag(name)
        have = set(row.configs)
        missing, extra = sorted(wanted - have), sorted(have - wanted)
        return {"compatible": not missing, "missing": missing, "extra": extra}
