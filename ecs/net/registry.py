# -*- test-case-name: tests.test_registry -*-
"""
Who is where: the registry interface, and its standalone implementation.

Agents learn their identity and their peers only through L{IRegistry}.  The
ECA implements it over the network (agents register their run-time chosen
endpoints there); until then, and for standalone use, L{InventoryRegistry}
reads a YAML inventory file::

    partitions:
      demo:
        endpoint: tcp://127.0.0.1:7100     # the PCA's request endpoint
        detectors: [STS, MVD]
    detectors:
      STS: {type: STS, endpoint: tcp://127.0.0.1:7201}
      MVD: {type: MVD}                     # binds a free port
    global_systems:
      TFC: {endpoint: tcp://127.0.0.1:7001}

An endpoint left out of the file means "any free port": the agent binds one
and registers it (visible to agents of the same process, and in its log).
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

import attrs
from twisted.internet import defer
from zope.interface import Interface, implementer

from ecs.config.yamlfile import NAME, load_yaml
from ecs.schema import (
    ConfigError,
    Field,
    ListOf,
    MappingOf,
    Problems,
    Record,
    Str,
    validate,
)

KINDS = ("pca", "detector", "global", "simhost", "eca", "cli")

#: This process's incarnation: its start, told in every registration.  A
#: peer whose incarnation changed restarted, even at the same address.
INCARNATION = f"{os.getpid()}-{secrets.token_hex(4)}"

#: The most agents in one bulk registration or look-up request (a few
#: hundred bytes each: far below the message size limit).
BULK = 500


class RegistryError(Exception):
    """A registry refusal: C{code} (C{unknown}, C{already_running}) and reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@attrs.frozen
class AgentInfo:
    """What an agent tells the registry about itself."""

    id: str
    kind: str
    endpoint: str | None
    publish: str | None = None
    host: str = attrs.field(factory=socket.gethostname)
    pid: int = attrs.field(factory=os.getpid)
    version: str = "0.1.0"
    incarnation: str = INCARNATION


@attrs.frozen
class Location:
    """Where a registered agent is, and which start of it registered there."""

    endpoint: str | None
    publish: str | None = None
    incarnation: str | None = None


class IRegistry(Interface):
    """Identity and peers of agents.  Every method returns a Deferred."""

    def register(info: AgentInfo) -> defer.Deferred[None]:
        """
        Record a running agent.  Fails with L{RegistryError}
        C{already_running} when another live agent has that kind and id.
        """

    def register_many(infos: list[AgentInfo]) -> defer.Deferred[dict[str, str]]:
        """
        Record many agents of one process (a sim host's controllers) in as
        few requests as possible; fire with the refused ids and why
        (empty when all were recorded).
        """

    def unregister(kind: str, agent_id: str) -> defer.Deferred[None]:
        """Forget a stopping agent."""

    def bind_address(kind: str, agent_id: str) -> defer.Deferred[str | None]:
        """The endpoint this agent must bind, or None for any free port."""

    def endpoint_of(kind: str, agent_id: str) -> defer.Deferred[str | None]:
        """Where to send requests for an agent, None when unknown."""

    def locate(kind: str, agent_ids: list[str]) -> defer.Deferred[dict[str, Location]]:
        """Where each of many agents of one kind is (unknown ones are left out), in bulk."""

    def partitions_of(detectors: list[str]) -> defer.Deferred[dict[str, str | None]]:
        """The partition of each of many detectors (None: unassigned or unknown), in bulk."""

    def partitions() -> defer.Deferred[list[str]]:
        """Every partition id."""

    def detectors_of(partition: str) -> defer.Deferred[list[str]]:
        """The detectors assigned to C{partition}."""

    def partition_of(detector: str) -> defer.Deferred[str | None]:
        """The partition a detector is assigned to, None when unassigned."""

    def detector_type(detector: str) -> defer.Deferred[str | None]:
        """A detector's type name, None when the detector is unknown."""


_ENDPOINT = Str(
    pattern=r"(tcp://[^\s#]+:(\d{1,5}|\*)(#curve=[0-9a-f]{64})?|ipc://\S+|inproc://\S+|mem://\S+)",
    description="an endpoint like tcp://HOST:PORT",
)

INVENTORY_SCHEMA = Record(
    {
        "partitions": Field(
            MappingOf(
                Record(
                    {
                        "endpoint": Field(_ENDPOINT, default=None),
                        "detectors": Field(ListOf(NAME), default=[]),
                    }
                ),
                keys=NAME,
            ),
            default={},
        ),
        "detectors": Field(
            MappingOf(
                Record({"type": Field(NAME), "endpoint": Field(_ENDPOINT, default=None)}),
                keys=NAME,
            ),
            default={},
        ),
        "global_systems": Field(
            MappingOf(Record({"endpoint": Field(_ENDPOINT, default=None)}), keys=NAME),
            default={},
        ),
    }
)


@implementer(IRegistry)
class InventoryRegistry:
    """L{IRegistry} from an inventory (a file, or a dict in tests)."""

    def __init__(self, data: object, source: str = "<inventory>") -> None:
        inventory = validate(data if data is not None else {}, INVENTORY_SCHEMA, source)
        problems = Problems()
        owner: dict[str, str] = {}
        for pid, partition in inventory["partitions"].items():
            for index, det in enumerate(partition["detectors"]):
                where = ("partitions", pid, "detectors", index)
                if det not in inventory["detectors"]:
                    problems.add(where, f"detector {det!r} is not declared under detectors")
                elif det in owner:
                    problems.add(where, f"detector {det!r} is already in partition {owner[det]!r}")
                else:
                    owner[det] = pid
        if problems:
            raise ConfigError(problems.lines(source))
        self.source = source
        self._inventory = inventory
        self._owner = owner
        self._live: dict[tuple[str, str], AgentInfo] = {}

    @classmethod
    def from_file(cls, path: str | Path) -> InventoryRegistry:
        """Load and validate an inventory file (raises L{ConfigError})."""
        return cls(load_yaml(path), str(path))

    def _configured(self, kind: str, agent_id: str) -> str | None:
        section = {"pca": "partitions", "detector": "detectors", "global": "global_systems"}.get(kind)
        if section is None:
            return None
        entry = self._inventory[section].get(agent_id)
        return entry["endpoint"] if entry else None

    def register(self, info: AgentInfo) -> defer.Deferred[None]:
        """See L{IRegistry.register}."""
        key = (info.kind, info.id)
        running = self._live.get(key)
        if running is not None and running.pid != info.pid:
            return defer.fail(
                RegistryError(
                    "already_running",
                    f"{info.kind} {info.id} is already running on {running.host} (pid {running.pid})",
                )
            )
        self._live[key] = info
        return defer.succeed(None)

    def register_many(self, infos: list[AgentInfo]) -> defer.Deferred[dict[str, str]]:
        """See L{IRegistry.register_many}."""
        refused: dict[str, str] = {}
        for info in infos:
            running = self._live.get((info.kind, info.id))
            if running is not None and running.pid != info.pid:
                refused[info.id] = f"{info.kind} {info.id} is already running on {running.host} (pid {running.pid})"
            else:
                self._live[(info.kind, info.id)] = info
        return defer.succeed(refused)

    def unregister(self, kind: str, agent_id: str) -> defer.Deferred[None]:
        """See L{IRegistry.unregister}."""
        self._live.pop((kind, agent_id), None)
        return defer.succeed(None)

    def bind_address(self, kind: str, agent_id: str) -> defer.Deferred[str | None]:
        """See L{IRegistry.bind_address}."""
        return defer.succeed(self._configured(kind, agent_id))

    def endpoint_of(self, kind: str, agent_id: str) -> defer.Deferred[str | None]:
        """See L{IRegistry.endpoint_of}."""
        live = self._live.get((kind, agent_id))
        if live is not None and live.endpoint is not None:
            return defer.succeed(live.endpoint)
        return defer.succeed(self._configured(kind, agent_id))

    def locate(self, kind: str, agent_ids: list[str]) -> defer.Deferred[dict[str, Location]]:
        """See L{IRegistry.locate}."""
        found: dict[str, Location] = {}
        for agent_id in agent_ids:
            live = self._live.get((kind, agent_id))
            if live is not None and live.endpoint is not None:
                found[agent_id] = Location(live.endpoint, live.publish, live.incarnation)
            elif (configured := self._configured(kind, agent_id)) is not None:
                found[agent_id] = Location(configured)
        return defer.succeed(found)

    def partitions_of(self, detectors: list[str]) -> defer.Deferred[dict[str, str | None]]:
        """See L{IRegistry.partitions_of}."""
        return defer.succeed({d: self._owner.get(d) for d in detectors})

    def partitions(self) -> defer.Deferred[list[str]]:
        """See L{IRegistry.partitions}."""
        return defer.succeed(list(self._inventory["partitions"]))

    def detectors_of(self, partition: str) -> defer.Deferred[list[str]]:
        """See L{IRegistry.detectors_of}."""
        entry = self._inventory["partitions"].get(partition)
        return defer.succeed(list(entry["detectors"]) if entry else [])

    def partition_of(self, detector: str) -> defer.Deferred[str | None]:
        """See L{IRegistry.partition_of}."""
        return defer.succeed(self._owner.get(detector))

    def detector_type(self, detector: str) -> defer.Deferred[str | None]:
        """See L{IRegistry.detector_type}."""
        entry = self._inventory["detectors"].get(detector)
        return defer.succeed(entry["type"] if entry else None)

    def detector_type_now(self, detector: str) -> str | None:
        """L{detector_type} without a Deferred, for composition at start-up."""
        entry = self._inventory["detectors"].get(detector)
        return entry["type"] if entry else None

    def global_systems(self) -> list[str]:
        """The global systems declared in the inventory."""
        return list(self._inventory["global_systems"])
