# -*- test-case-name: tests.test_startup -*-
"""
C{twistd -n ecs-pca --id P}: the options of the partition control agent and
its composition (L{makeService}), the plugin's entry point.

Everything that can be wrong in the configuration (settings, subsystems,
sequence, configurations file, keys) is found here, before anything is
bound, and ends the process with one readable line
(L{ecs.config.settings.fail}).
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.application import service
from twisted.python import usage

from agents.pca.agent import PartitionAgent


class Options(usage.Options):
    """Options of C{ecs-pca}."""

    optParameters: ClassVar[list[list[Any]]] = [
        ["id", None, None, "Partition id (required)."],
        ["config", "c", None, "Agent settings file (default: the installed etc/ecs.yaml)."],
        ["subsystems", None, None, "Detector types and global systems (default: etc/subsystems.yaml)."],
        ["sequence", None, None, "Partition sequence (default: the installed fsm/partition.yaml)."],
        ["inventory", "i", None, "YAML inventory: partitions, detectors, endpoints (standalone use)."],
        ["configs", None, None, "YAML file of configurations and tags (standalone use)."],
        ["state-dir", None, None, "State directory (overrides state_dir of the settings)."],
        ["bind", None, None, "Endpoint to serve on (default: from the inventory, else a free port)."],
        ["security", None, None, "Override the settings' security mode: curve or none."],
    ]

    def postOptions(self) -> None:
        """Require --id."""
        if not self["id"]:
            raise usage.UsageError("--id is required")
        if self["security"] not in (None, "curve", "none"):
            raise usage.UsageError(f"--security must be curve or none, got {self['security']!r}")


def makeService(options: Options) -> service.IService:
    """Compose the PCA; configuration errors exit before anything is bound."""
    from twisted.internet import reactor

    from agents._tap import Composition
    from ecs import protocol
    from ecs.config.settings import ConfigError, fail
    from ecs.config.sources import EmptyConfigSource, FileConfigSource, IConfigSource
    from ecs.fsm.sequence import load_sequence

    composition = Composition(options)
    try:
        sequence = load_sequence(options["sequence"], list(composition.subsystems.global_systems))
        source: IConfigSource = (
            FileConfigSource.from_file(options["configs"]) if options["configs"] else EmptyConfigSource()
        )
    except ConfigError as e:
        fail(e)
    partition = options["id"]
    node = composition.node(protocol.pca_node_name(partition))  # before .registry: it may need the node
    return PartitionAgent(
        partition,
        node,
        composition.registry,
        composition.settings,
        composition.subsystems,
        sequence,
        source,
        reactor,
        options["bind"],
        composition.settings.state_dir / f"pca-{partition}.json",
    )
