"""Tests for the standalone registry (L{ecs.net.registry.InventoryRegistry})."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ecs.config.settings import ConfigError
from ecs.net.registry import AgentInfo, InventoryRegistry, RegistryError

INVENTORY = {
    "partitions": {"p1": {"endpoint": "tcp://127.0.0.1:7100", "detectors": ["STS", "MVD"]}},
    "detectors": {
        "STS": {"type": "STS", "endpoint": "tcp://127.0.0.1:7201"},
        "MVD": {"type": "MVD"},
        "TOF": {"type": "TOF"},
    },
    "global_systems": {"TFC": {"endpoint": "tcp://127.0.0.1:7001"}},
}


class InventoryRegistryTests(SynchronousTestCase):
    """Identity and peers from an inventory."""

    def setUp(self) -> None:
        self.registry = InventoryRegistry(INVENTORY, "inv.yaml")

    def value(self, d):  # type: ignore[no-untyped-def]
        return self.successResultOf(d)

    def test_lookups(self) -> None:
        """Partitions, members, owners, types and configured endpoints."""
        self.assertEqual(self.value(self.registry.partitions()), ["p1"])
        self.assertEqual(self.value(self.registry.detectors_of("p1")), ["STS", "MVD"])
        self.assertEqual(self.value(self.registry.partition_of("MVD")), "p1")
        self.assertIsNone(self.value(self.registry.partition_of("TOF")))
        self.assertEqual(self.value(self.registry.detector_type("TOF")), "TOF")
        self.assertIsNone(self.value(self.registry.detector_type("XYZ")))
        self.assertEqual(self.value(self.registry.endpoint_of("pca", "p1")), "tcp://127.0.0.1:7100")
        self.assertEqual(self.value(self.registry.bind_address("global", "TFC")), "tcp://127.0.0.1:7001")
        self.assertIsNone(self.value(self.registry.bind_address("detector", "MVD")))

    def test_registered_endpoint_wins(self) -> None:
        """An agent that registered its run-time endpoint is found there."""
        self.value(self.registry.register(AgentInfo("MVD", "detector", "tcp://127.0.0.1:40001")))
        self.assertEqual(
            self.value(self.registry.endpoint_of("detector", "MVD")), "tcp://127.0.0.1:40001"
        )
        self.value(self.registry.unregister("detector", "MVD"))
        self.assertIsNone(self.value(self.registry.endpoint_of("detector", "MVD")))

    def test_second_agent_with_same_id_refused(self) -> None:
        """A live agent's id cannot be registered by another process; the error names it."""
        self.value(self.registry.register(AgentInfo("STS", "detector", "tcp://a:1", host="h1", pid=11)))
        failure = self.failureResultOf(
            self.registry.register(AgentInfo("STS", "detector", "tcp://b:2", host="h2", pid=22)),
            RegistryError,
        )
        self.assertEqual(failure.value.code, "already_running")
        self.assertIn("h1", failure.value.reason)
        self.assertIn("11", failure.value.reason)

    def test_validation_errors(self) -> None:
        """Undeclared members, doubly assigned detectors and bad endpoints are named."""
        bad = {
            "partitions": {
                "p1": {"detectors": ["STS", "GHOST"]},
                "p2": {"detectors": ["STS"], "endpoint": "http://x"},
            },
            "detectors": {"STS": {"type": "STS"}},
        }
        error = self.assertRaises(ConfigError, InventoryRegistry, bad, "inv.yaml")
        text = str(error)
        self.assertIn("inv.yaml: partitions.p2.endpoint", text)
        bad["partitions"]["p2"].pop("endpoint")
        text = str(self.assertRaises(ConfigError, InventoryRegistry, bad, "inv.yaml"))
        self.assertIn("GHOST", text)
        self.assertIn("already in partition 'p1'", text)

    def test_from_file(self) -> None:
        """A YAML inventory file loads; a missing one is a ConfigError naming it."""
        path = Path(self.mktemp())
        path.write_text("detectors:\n  STS: {type: STS}\n")
        registry = InventoryRegistry.from_file(path)
        self.assertEqual(registry.detector_type_now("STS"), "STS")
        error = self.assertRaises(ConfigError, InventoryRegistry.from_file, path.with_name("nope.yaml"))
        self.assertIn("nope.yaml", str(error))
