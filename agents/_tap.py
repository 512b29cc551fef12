# -*- test-case-name: tests.test_service -*-
"""
What every controller plugin shares: command-line options and the
composition of settings, tables, keys, registry and transport.

Everything that can be wrong in the configuration is found here, in
C{makeService}, before any socket is bound: the agent then exits non-zero
with one readable message (L{ecs.config.settings.fail}).
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.logger import Logger
from twisted.python import usage

from ecs.config.logs import apply_log_level
from ecs.config.settings import ConfigError, Settings, Subsystems, SystemType, fail, load_settings, load_subsystems
from ecs.fsm.machine import TableError, load_table
from ecs.net.identity import node_identity
from ecs.net.keys import AGENTS, CurveKeys, KeyFileError, load_keys
from ecs.net.registry import InventoryRegistry


class ControllerOptions(usage.Options):
    """Options common to C{ecs-detector}, C{ecs-global} and C{ecs-simhost}."""

    optParameters: ClassVar[list[list[Any]]] = [
        ["config", "c", None, "Agent settings file (default: the installed etc/ecs.yaml)."],
        ["subsystems", None, None, "Detector types and global systems (default: etc/subsystems.yaml)."],
        ["inventory", "i", None, "YAML inventory: partitions, detectors, endpoints (standalone use)."],
        ["state-dir", None, None, "State directory (overrides state_dir of the settings)."],
        ["bind", None, None, "Endpoint to serve on (default: from the inventory, else a free port)."],
        ["security", None, None, "Override the settings' security mode: curve or none."],
    ]

    def postOptions(self) -> None:
        """Check the option values that need no files."""
        if self["security"] not in (None, "curve", "none"):
            raise usage.UsageError(f"--security must be curve or none, got {self['security']!r}")


class Composition:
    """The loaded, validated configuration of one agent process."""

    def __init__(self, options: usage.Options) -> None:
        overrides: dict[str, Any] = {}
        if options["security"]:
            overrides["security"] = options["security"]
        try:
            self.settings: Settings = load_settings(
                options["config"], options["state-dir"], overrides or None
            )
            self.subsystems: Subsystems = load_subsystems(options["subsystems"])
            # Standalone with an inventory file; otherwise the ECA's registry
            # (made with the node, in node()).
            self.registry: Any = (
                InventoryRegistry.from_file(options["inventory"]) if options["inventory"] else None
            )
        except ConfigError as e:
            fail(e)
        apply_log_level(self.settings.log_level)
        # Each process loads the pair of its own identity (keys_for): an
        # agent host holds its agents' pairs, not necessarily the client pair.
        self.curve = self.settings.security == "curve"

    def keys_for(self, identity: str) -> CurveKeys | None:
        """
        The keys of agent identity C{identity} (L{ecs.net.identity}): its own
        client pair, made and authorised here at its first start when this
        host holds the allow-list and the identity is not enrolled yet
        (placement on the ECA's host); None with C{security: none}.
        """
        if not self.curve:
            return None
        key_dir = self.settings.key_dir
        new = not (key_dir / AGENTS / f"{identity}.key_secret").exists()
        try:
            keys = load_keys(key_dir, identity=identity, enrol=True)
        except KeyFileError as e:
            fail(e)
        if new:
            Logger().info(
                "enrolled agent identity {identity}: key pair made in {dir}, public key authorised",
                identity=identity,
                dir=str(key_dir / AGENTS),
            )
        return keys

    def detector_type_now(self, detector: str) -> str | None:
        """A detector's type from the inventory (None without one: give --type)."""
        if self.registry is None or not hasattr(self.registry, "detector_type_now"):
            return None
        result: str | None = self.registry.detector_type_now(detector)
        return result

    def system_type(self, name: str, is_global: bool) -> SystemType:
        """The type C{name}, with its state table loaded and checked."""
        try:
            system_type = self.subsystems.get(name)
        except KeyError as e:
            fail(e.args[0] if e.args else e)
        if system_type.is_global != is_global:
            fail(
                f"{name} is a {'global system' if system_type.is_global else 'detector type'} "
                f"in {self.subsystems.source}"
            )
        try:
            load_table(system_type.fsm_path)
        except TableError as e:
            fail(e)
        return system_type

    def node(self, name: str, identity: str | None = None) -> Any:
        """
        A ZeroMQ node for this process, configured from the settings and
        connecting with the keys of C{identity} (default: the identity its
        node name implies, L{ecs.net.identity.node_identity}); without an
        inventory, the registry becomes the ECA's, reached through it.
        """
        from twisted.internet import reactor

        from ecs.net.remote_registry import RemoteRegistry
        from ecs.net.zeromq import ZmqNode

        node = ZmqNode(
            reactor,
            name,
            self.keys_for(identity or node_identity(name)),
            request_timeout=self.settings.request_timeout,
            max_size=self.settings.max_message_size,
            high_water_mark=self.settings.high_water_mark,
        )
        if self.registry is None:
            self.registry = RemoteRegistry(
                node,
                self.settings.registry_address,
                reactor,
                self.settings.heartbeat_interval,
                self.settings.heartbeat_timeout,
            )
        return node
