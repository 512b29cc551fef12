# -*- test-case-name: tests.test_eca -*-
"""
The ECA's management actions: configurations, tags, users, partitions and
detectors (original §5, corrected).

Each checks the role it needs (and, for partitions and detectors, that the
user holds the ECS control), changes the database in one transaction,
tells the agents, and writes the audit trail with its outcome.

Moving a detector is two-phase: both PCAs are locked (and must agree: not
configuring or recording), then the database is committed, then the PCAs
and the detector are told; a failure after the commit (a PCA refusing, the
detector not answering) moves the detector back; the locks are released on
every path.  With C{force}, an unreachable PCA is left out and made to
agree with the database when it answers again (a restarted one asks the
registry anyway), and a detector that does not answer is told once its new
partition's PCA sees it connected again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from ecs import users as user_tools
from ecs.control import ControlError, User
from ecs.net.transport import RequestError
from ecs.store import StoreError

if TYPE_CHECKING:
    from agents.eca.agent import ExperimentControlAgent


def _public(row: Any) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data.pop("password_hash", None)
    return data


class ManagementMixin:
    """Management actions of L{agents.eca.agent.ExperimentControlAgent}."""

    _log = Logger()

    def _audited(
        self: ExperimentControlAgent, user: User, action: str, arguments: dict[str, Any], work: Callable[[], Awaitable[Any]]
    ) -> defer.Deferred[Any]:
        async def run() -> Any:
            try:
                result = await work()
            except StoreError as e:
                await self.store.audit(user.name, action, arguments, f"{e.code}: {e.reason}")
                from agents.eca.agent import store_error

                raise store_error(e) from None
            except ControlError as e:
                await self.store.audit(user.name, action, arguments, f"{e.code}: {e.reason}")
                raise
            await self.store.audit(user.name, action, arguments, "ok")
            return result

        return defer.Deferred.fromCoroutine(run())

    # -- configurations and tags ---------------------------------------------

    def configs(self: ExperimentControlAgent, system: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.configs}."""
        from agents.eca.agent import _raise_store

        return self.store.configs(system).addCallbacks(lambda rows: [dataclasses.asdict(r) for r in rows], _raise_store)

    def config(self: ExperimentControlAgent, config_id: str, version: int | None = None) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.config}."""
        from agents.eca.agent import _raise_store

        async def get() -> dict[str, Any]:
            row = await self.store.config(config_id, version)
            versions = await self.store.config_versions(config_id)
            return {**dataclasses.asdict(row), "versions": [v.version for v in versions]}

        return defer.Deferred.fromCoroutine(get()).addErrback(_raise_store)

    def save_config(self: ExperimentControlAgent, user: User, config_id: str, system: str, parameters: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.save_config}."""
        self._need(user, "expert")

        async def work() -> dict[str, Any]:
            detectors = {row.id for row in await self.store.detectors()}
            if system not in detectors and system not in self.subsystems.global_systems:
                raise ControlError("bad_request", f"no system {system!r} (detectors and global systems only)")
            return dataclasses.asdict(await self.store.save_config(config_id, system, parameters, user.name))

        return self._audited(user, "save_config", {"config": config_id, "system": system}, work)

    def delete_config(self: ExperimentControlAgent, user: User, config_id: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_config}."""
        self._need(user, "expert")
        return self._audited(user, "delete_config", {"config": config_id}, lambda: self.store.delete_config(config_id))

    def tags(self: ExperimentControlAgent, partition_id: str | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.tags}."""
        from agents.eca.agent import _raise_store

        async def get() -> list[dict[str, Any]]:
            rows = await self.store.tags()
            result = [dataclasses.asdict(r) for r in rows]
            if partition_id is not None:
                systems = set(self.sequence.global_systems()) | {
                    d.id for d in await self.store.detectors(partition_id)
                }
                for entry in result:
                    entry.update(await self.store.compatibility(entry["name"], systems))
            return result

        return defer.Deferred.fromCoroutine(get()).addErrback(_raise_store)

    def tag(self: ExperimentControlAgent, name: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.tag}."""
        from agents.eca.agent import _raise_store

        return self.store.tag(name).addCallbacks(dataclasses.asdict, _raise_store)

    def save_tag(self: ExperimentControlAgent, user: User, name: str, config_ids: list[str]) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.save_tag}."""
        self._need(user, "expert")

        async def work() -> dict[str, Any]:
            return dataclasses.asdict(await self.store.save_tag(name, config_ids, user.name))

        return self._audited(user, "save_tag", {"tag": name, "configs": list(config_ids)}, work)

    def delete_tag(self: ExperimentControlAgent, user: User, name: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_tag}."""
        self._need(user, "expert")
        return self._audited(user, "delete_tag", {"tag": name}, lambda: self.store.delete_tag(name))

    # -- users ---------------------------------------------------------------

    def users(self: ExperimentControlAgent, user: User) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.users}."""
        self._need(user, "admin")
        return self.store.users().addCallback(lambda rows: [_public(r) for r in rows])

    def add_user(self: ExperimentControlAgent, user: User, name: str, password: str, roles: list[str]) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.add_user}."""
        self._need(user, "admin")

        async def work() -> dict[str, Any]:
            if not isinstance(password, str) or len(password) < 8:
                raise ControlError("bad_request", "the password needs at least 8 characters")
            hashed = await user_tools.hash_password_async(self.reactor, password)
            return _public(await self.store.add_user(name, hashed, roles))

        return self._audited(user, "add_user", {"user": name, "roles": list(roles)}, work)

    def update_user(self: ExperimentControlAgent, user: User, name: str, password: str | None, roles: list[str] | None) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.update_user}."""
        self._need(user, "admin")

        async def work() -> dict[str, Any]:
            if password is not None:
                if not isinstance(password, str) or len(password) < 8:
                    raise ControlError("bad_request", "the password needs at least 8 characters")
                await self.store.set_password(name, await user_tools.hash_password_async(self.reactor, password))
                await self.store.delete_tokens(name)
            if roles is not None:
                await self.store.set_roles(name, roles)
            row = await self.store.user(name)
            if row is None:
                raise ControlError("not_found", f"no user {name!r}")
            return _public(row)

        return self._audited(user, "update_user", {"user": name, "roles": roles, "password": password is not None}, work)

    def delete_user(self: ExperimentControlAgent, user: User, name: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_user}."""
        self._need(user, "admin")
        if name == user.name:
            raise ControlError("conflict", "you cannot delete yourself")
        return self._audited(user, "delete_user", {"user": name}, lambda: self.store.delete_user(name))

    # -- partitions and detectors ----------------------------------------------

    async def _ecs_control(self: ExperimentControlAgent, user: User) -> None:
        self._need(user, "expert")
        await self._holding(user, "ecs")

    async def _tell_globals(self: ExperimentControlAgent, type: str, partition: str, every: bool = False) -> list[str]:
        """
        Tell every global system; returns those that did what was asked.
        The first failure raises, unless C{every}: then each one is told
        whatever the others answer, and the failures raise at the end.
        """
        told = []
        failures = []
        for system in self.sequence.global_systems():
            entry = self.registry.entries.get(("global", system))
            try:
                if entry is None or entry.info.endpoint is None:
                    raise ControlError("unavailable", f"global system {system} is not registered")
                try:
                    await self.node.connect(entry.info.endpoint).request(system, type, {"partition": partition})
                except RequestError as e:
                    raise ControlError("unavailable", f"{system} did not {type.replace('_', ' ')}: {e.reason}") from None
            except ControlError as e:
                if not every:
                    raise ControlError(e.code, e.reason, told=told) from None
                failures.append(e.reason)
                continue
            told.append(system)
        if failures:
            raise ControlError("unavailable", "; ".join(failures), told=told)
        return told

    def create_partition(self: ExperimentControlAgent, user: User, partition_id: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.create_partition}: database, then the global systems; undone on failure."""

        async def work() -> dict[str, Any]:
            await self._ecs_control(user)
            await self.store.add_partition(partition_id)
            try:
                await self._tell_globals("add_partition", partition_id)
            except ControlError:
                await self.store.delete_partition(partition_id)
                # Undone before we answer: every global system drops it again.
                try:
                    await self._tell_globals("remove_partition", partition_id, every=True)
                except ControlError as e:
                    self.log_event("warn", "ECA", f"creating {partition_id} undone: {e.reason}", None)
                raise
            watch = self._watch(partition_id)
            self.log_event("info", "ECA", f"partition {partition_id} created by {user.name}", None)
            return watch.summary()

        return self._audited(user, "create_partition", {"partition": partition_id}, work)

    def delete_partition(self: ExperimentControlAgent, user: User, partition_id: str, force: bool = False) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_partition}: only when Idle (or forced); detectors become unassigned."""

        async def work() -> None:
            await self._ecs_control(user)
            watch = self._get_watch(partition_id)
            state = watch.summary()["state"]
            if not force and watch.connected and state != self.sequence.idle:
                raise ControlError("conflict", f"partition {partition_id} is {state}: abort it first (or force)")
            holder = await self.store.control(partition_id)
            detectors = await self.store.delete_partition(partition_id, unassign=True)
            if holder is not None:  # the store dropped it with the partition
                self.emit("control", {"scope": partition_id, "holder": None, "previous": holder.holder,
                                      "reason": "partition deleted"}, partition_id)
            try:
                await self._tell_globals("remove_partition", partition_id, every=True)
            except ControlError as e:
                self.log_event("warn", "ECA", f"deleting {partition_id}: {e.reason}", None)
            for detector in detectors:
                self._tell_later.pop(detector, None)
                await self._assign(detector, None, quiet=True)
            self._missed.discard(partition_id)
            self.watches.pop(partition_id).stop()
            self.log_event("info", "ECA", f"partition {partition_id} deleted by {user.name}", None)

        return self._audited(user, "delete_partition", {"partition": partition_id, "force": force}, work)

    def create_detector(self: ExperimentControlAgent, user: User, detector_id: str, type: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.create_detector}: a known type, unassigned."""

        async def work() -> dict[str, Any]:
            await self._ecs_control(user)
            if type not in self.subsystems.detector_types:
                known = ", ".join(sorted(self.subsystems.detector_types))
                raise ControlError("bad_request", f"unknown detector type {type!r} (known: {known})")
            row = await self.store.add_detector(detector_id, type)
            return dataclasses.asdict(row)

        return self._audited(user, "create_detector", {"detector": detector_id, "type": type}, work)

    def delete_detector(self: ExperimentControlAgent, user: User, detector_id: str, force: bool = False) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_detector}: only unassigned detectors."""

        async def work() -> None:
            await self._ecs_control(user)
            row = await self.store.detector(detector_id)
            if row is None:
                raise ControlError("not_found", f"no detector {detector_id!r}")
            if row.partition is not None:
                raise ControlError("conflict", f"{detector_id} is in partition {row.partition}: move it out first")
            await self.store.delete_detector(detector_id)

        return self._audited(user, "delete_detector", {"detector": detector_id, "force": force}, work)

    async def _assign(self: ExperimentControlAgent, detector: str, partition: str | None, quiet: bool = False) -> bool:
        """Tell a detector its partition; whether it was told (or is not running)."""
        entry = self.registry.entries.get(("detector", detector))
        if entry is None or entry.info.endpoint is None:
            return True  # not running: it asks the registry when it starts
        try:
            await self.node.connect(entry.info.endpoint).request(detector, "assign", {"partition": partition})
        except RequestError as e:
            if not quiet:
                raise
            self._log.warn("{detector} not told of its partition: {error}", detector=detector, error=e.reason)
            return False
        return True

    # -- catching up after a forced move ------------------------------------------

    def partition_seen(self: ExperimentControlAgent, watch: Any) -> None:
        """
        The PCA of a partition answers again, or its record changed: if a
        forced move left it out, make its detectors those of the database
        now (unless it is busy or locked: then at a later change).
        """
        partition = watch.id
        if partition not in self._missed or partition in self._catching_up or self._moves or not watch.connected:
            return
        record = watch.records.get("partition") or {}
        if record.get("locked") or record.get("operation"):
            return
        self._catching_up.add(partition)
        d = defer.Deferred.fromCoroutine(self._catch_up(watch))
        d.addErrback(lambda f: self._log.failure("catching up {partition}", f, partition=partition))
        d.addBoth(lambda _: self._catching_up.discard(partition))

    async def _catch_up(self: ExperimentControlAgent, watch: Any) -> None:
        partition = watch.id
        try:
            have = await watch.detectors()
            want = {row.id: row.type for row in await self.store.detectors(partition)}
            if self._moves:
                return  # a move started meanwhile: after it
            for detector in sorted(have - set(want)):
                await self._pca(partition, "remove_detector", {"detector": detector})
            for detector in sorted(set(want) - have):
                body: dict[str, Any] = {"detector": detector, "type": want[detector]}
                entry = self.registry.entries.get(("detector", detector))
                if entry is not None and entry.info.endpoint:
                    body["endpoint"] = entry.info.endpoint
                await self._pca(partition, "add_detector", body)
        except (RequestError, ControlError, StoreError) as e:
            self._log.warn("PCA {partition} not yet told of the moves it missed: {error}",
                           partition=partition, error=getattr(e, "reason", e))
            return
        self._missed.discard(partition)
        changes = sorted(have ^ set(want))
        if changes:
            self.log_event("info", "ECA", f"PCA {partition} told of the detector moves it missed ({', '.join(changes)})",
                           partition)

    def system_seen(self: ExperimentControlAgent, watch: Any, system: str) -> None:
        """A partition's system is connected: tell it its partition if a forced move could not."""
        if self._tell_later.get(system, "") != watch.id or system in self._telling:
            return
        self._telling.add(system)

        async def tell() -> None:
            if await self._assign(system, watch.id, quiet=True) and self._tell_later.get(system, "") == watch.id:
                del self._tell_later[system]
                self.log_event("info", "ECA", f"{system} told it belongs to {watch.id}", watch.id)

        d = defer.Deferred.fromCoroutine(tell())
        d.addErrback(lambda f: self._log.failure("telling {system} its partition", f, system=system))
        d.addBoth(lambda _: self._telling.discard(system))

    async def _pca(self: ExperimentControlAgent, partition: str, type: str, body: dict[str, Any]) -> dict[str, Any]:
        watch = self._get_watch(partition)
        return await watch.command(type, body, "ECA")

    def move_detector(self: ExperimentControlAgent, user: User, detector_id: str, to: str | None, force: bool = False) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.move_detector} and the module docstring."""

        async def work() -> dict[str, Any]:
            await self._ecs_control(user)
            row = await self.store.detector(detector_id)
            if row is None:
                raise ControlError("not_found", f"no detector {detector_id!r}")
            source = row.partition
            if to is not None:
                self._get_watch(to)
            if source == to:
                return dataclasses.asdict(row)
            involved = [p for p in (source, to) if p is not None]
            locked: list[str] = []
            skipped: list[str] = []
            self._moves += 1
            try:
                for partition in involved:  # phase 1: prepare and lock
                    try:
                        record = await self._pca(partition, "status", {})
                    except RequestError as e:
                        if force:
                            skipped.append(partition)
                            continue
                        raise ControlError("unavailable", f"PCA {partition} does not answer: {e.reason}") from None
                    if record.get("operation") or self.sequence.summary_of(record["state"]) in ("Configuring", "Recording"):
                        raise ControlError("conflict", f"partition {partition} is {record['state']}: cannot move detectors now")
                    # Counted as locked before the answer: a lock taken whose
                    # answer is lost is released too (unlocking is harmless).
                    locked.append(partition)
                    try:
                        await self._pca(partition, "lock", {})
                    except RequestError as e:
                        raise ControlError("unavailable", f"PCA {partition} did not lock: {e.reason}") from None
                moved = await self.store.move_detector(detector_id, to)  # phase 2: commit
                try:
                    if source is not None and source not in skipped:
                        await self._pca(source, "remove_detector", {"detector": detector_id})
                    if to is not None and to not in skipped:
                        entry = self.registry.entries.get(("detector", detector_id))
                        body: dict[str, Any] = {"detector": detector_id, "type": row.type}
                        if entry is not None and entry.info.endpoint:
                            body["endpoint"] = entry.info.endpoint
                        await self._pca(to, "add_detector", body)
                    if await self._assign(detector_id, to, quiet=force):
                        self._tell_later.pop(detector_id, None)
                    else:
                        self._tell_later[detector_id] = to  # forced: once its partition sees it again
                except (RequestError, ControlError) as e:
                    # undo: the database first, then what the PCAs were told
                    await self.store.move_detector(detector_id, source)
                    if to is not None and to not in skipped:
                        try:
                            await self._pca(to, "remove_detector", {"detector": detector_id})
                        except (RequestError, ControlError):
                            pass
                    if source is not None and source not in skipped:
                        try:
                            await self._pca(source, "add_detector", {"detector": detector_id, "type": row.type})
                        except (RequestError, ControlError):
                            pass
                    await self._assign(detector_id, source, quiet=True)
                    reason = e.reason if hasattr(e, "reason") else str(e)
                    raise ControlError("unavailable", f"move of {detector_id} undone: {reason}") from None
            finally:
                for partition in locked:  # every lock taken is released, on every path
                    try:
                        await self._pca(partition, "unlock", {})
                    except (RequestError, ControlError) as e:
                        self._log.error("unlock of {partition} failed: {error}", partition=partition, error=e)
                self._moves -= 1
            self._missed.update(skipped)  # they learn it when they answer again
            for partition in skipped:
                self.partition_seen(self.watches[partition])
            self.log_event("info", "ECA", f"{detector_id} moved from {source or 'unassigned'} to {to or 'unassigned'}"
                           + (f" (forced past {', '.join(skipped)})" if skipped else ""), None)
            return dataclasses.asdict(moved)

        return self._audited(user, "move_detector", {"detector": detector_id, "to": to, "force": force}, work)
