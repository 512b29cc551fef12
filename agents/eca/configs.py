# -*- test-case-name: tests.test_eca -*-
"""
L{ConfigLibrary}: configurations (versioned) and tags.  Reading is open
to every role; saving and deleting need the expert role and are audited.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet import defer

from agents.eca.errors import need, raise_store
from agents.eca.interfaces import IAudit
from ecs.config.settings import Subsystems
from ecs.control import ControlError, User
from ecs.fsm.sequence import Sequence
from ecs.store import Store


class ConfigLibrary:
    """Configurations and tags; see the module docstring."""

    def __init__(self, store: Store, audit: IAudit, subsystems: Subsystems, sequence: Sequence) -> None:
        self._store = store
        self._audit = audit
        self._subsystems = subsystems
        self._sequence = sequence

    def configs(self, system: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{ecs.control.IControlCenter.configs}."""
        return self._store.configs(system).addCallbacks(lambda rows: [dataclasses.asdict(r) for r in rows], raise_store)

    def config(self, config_id: str, version: int | None = None) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.config}."""

        async def get() -> dict[str, Any]:
            row = await self._store.config(config_id, version)
            versions = await self._store.config_versions(config_id)
            return {**dataclasses.asdict(row), "versions": [v.version for v in versions]}

        return defer.Deferred.fromCoroutine(get()).addErrback(raise_store)

    def save_config(
        self, user: User, config_id: str, system: str, parameters: dict[str, Any]
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.save_config}."""
        need(user, "expert")

        async def work() -> dict[str, Any]:
            detectors = {row.id for row in await self._store.detectors()}
            if system not in detectors and system not in self._subsystems.global_systems:
                raise ControlError("bad_request", f"no system {system!r} (detectors and global systems only)")
            return dataclasses.asdict(await self._store.save_config(config_id, system, parameters, user.name))

        return self._audit.audited(user, "save_config", {"config": config_id, "system": system}, work)

    def delete_config(self, user: User, config_id: str) -> defer.Deferred[None]:
        """See L{ecs.control.IControlCenter.delete_config}."""
        need(user, "expert")
        return self._audit.audited(
            user, "delete_config", {"config": config_id}, lambda: self._store.delete_config(config_id)
        )

    def tags(self, partition_id: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{ecs.control.IControlCenter.tags}."""

        async def get() -> list[dict[str, Any]]:
            rows = await self._store.tags()
            result = [dataclasses.asdict(r) for r in rows]
            if partition_id is not None:
                systems = set(self._sequence.global_systems()) | {
                    d.id for d in await self._store.detectors(partition_id)
                }
                for entry in result:
                    entry.update(await self._store.compatibility(entry["name"], systems))
            return result

        return defer.Deferred.fromCoroutine(get()).addErrback(raise_store)

    def tag(self, name: str) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.tag}."""
        return self._store.tag(name).addCallbacks(dataclasses.asdict, raise_store)

    def save_tag(self, user: User, name: str, config_ids: list[str]) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.save_tag}."""
        need(user, "expert")

        async def work() -> dict[str, Any]:
            return dataclasses.asdict(await self._store.save_tag(name, config_ids, user.name))

        return self._audit.audited(user, "save_tag", {"tag": name, "configs": list(config_ids)}, work)

    def delete_tag(self, user: User, name: str) -> defer.Deferred[None]:
        """See L{ecs.control.IControlCenter.delete_tag}."""
        need(user, "expert")
        return self._audit.audited(user, "delete_tag", {"tag": name}, lambda: self._store.delete_tag(name))
