"""
Tests for the standalone registry (L{ecs.net.registry.InventoryRegistry}) and
the bulk requests of the ECA's (L{ecs.net.remote_registry.RegistryService}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.config.settings import ConfigError
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.registry import AgentInfo, InventoryRegistry, Location, RegistryError
from ecs.net.remote_registry import REGISTRY, RegistryService, RemoteRegistry

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


class InventoryBulkTests(SynchronousTestCase):
    """The bulk forms of the standalone registry."""

    def test_register_many_locate_partitions_of(self) -> None:
        """Many agents are registered in one call; located with their incarnations; partitions told at once."""
        registry = InventoryRegistry(INVENTORY, "inv.yaml")
        infos = [AgentInfo(d, "detector", "tcp://h:9", pid=5, incarnation="i1") for d in ("STS", "MVD", "TOF")]
        self.assertEqual(self.successResultOf(registry.register_many(infos)), {})
        found = self.successResultOf(registry.locate("detector", ["STS", "TOF", "XYZ"]))
        self.assertEqual(found, {"STS": Location("tcp://h:9", None, "i1"), "TOF": Location("tcp://h:9", None, "i1")})
        refused = self.successResultOf(registry.register_many([AgentInfo("STS", "detector", "tcp://h:8", pid=6)]))
        self.assertEqual(list(refused), ["STS"])
        self.assertIn("pid 5", refused["STS"])
        self.assertEqual(
            self.successResultOf(registry.partitions_of(["STS", "TOF", "XYZ"])),
            {"STS": "p1", "TOF": None, "XYZ": None},
        )


class RegistryServiceTests(SynchronousTestCase):
    """The ECA's registry and the agents' client over the in-memory network."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.network = MemoryNetwork(self.clock)
        self.eca = MemoryNode(self.network, "eca")
        self.changes: list[tuple[str, str, bool]] = []

        async def partitions() -> list[str]:
            return ["p1", "p2"]

        async def detectors_of(partition: str) -> list[str]:
            return {"p1": ["d1", "d2"], "p2": ["d3"]}[partition]

        async def detector(detector: str) -> dict[str, Any] | None:
            return None

        self.service = RegistryService(
            self.eca, self.clock, partitions, detectors_of, detector,
            on_change=lambda kind, agent, entry: self.changes.append((kind, agent, entry is not None)),
            alive_timeout=1.0,
        )
        self.eca.serve("mem://registry").register(REGISTRY, self.service.handlers())
        self.agent = MemoryNode(self.network, "simhost")
        self.client = RemoteRegistry(self.agent, "mem://registry", self.clock, 1.0, 2.0)

    def result(self, d: Deferred[Any], seconds: float = 0.0) -> Any:
        self.network.flush()
        self.clock.advance(0)
        for _ in range(int(seconds * 10)):
            self.clock.advance(0.1)
        return self.successResultOf(d)

    def test_bulk_registration_of_a_restarted_sim_host(self) -> None:
        """
        2,000 agents re-registered from a new endpoint cost one liveness check of
        the old (dead) endpoint, not one per agent: all back within about one
        check timeout, in few requests.
        """
        ids = [f"sim{n}" for n in range(2000)]
        old = [AgentInfo(i, "detector", "mem://old", pid=1, incarnation="first") for i in ids]
        self.assertEqual(self.result(self.client.register_many(old)), {})
        self.network.set_down("mem://old")  # the sim host was killed
        new = [AgentInfo(i, "detector", "mem://new", pid=2, incarnation="second") for i in ids]
        received = self.network.delivered
        d = self.client.register_many(new)
        self.assertEqual(self.result(d, seconds=1.5), {})
        self.assertLess(self.network.delivered - received, 40)  # 4 requests of 500, a check, their replies
        found = self.result(self.client.locate("detector", ids))
        self.assertEqual({(f.endpoint, f.incarnation) for f in found.values()}, {("mem://new", "second")})
        self.assertEqual(len(found), 2000)
        self.assertEqual(len(self.changes), 4000)

    def test_live_agent_keeps_its_ids(self) -> None:
        """Ids whose registered endpoint still answers are refused by name; the others are taken."""
        self.eca.serve("mem://alive")  # another process, alive, serving d1
        self.result(self.client.register_many([AgentInfo("d1", "detector", "mem://alive", pid=1, incarnation="a")]))
        refused = self.result(
            self.client.register_many(
                [AgentInfo(d, "detector", "mem://mine", pid=2, incarnation="b") for d in ("d1", "d2")]
            )
        )
        self.assertEqual(list(refused), ["d1"])
        self.assertIn("already running", refused["d1"])
        self.assertIn("mem://alive", refused["d1"])
        found = self.result(self.client.locate("detector", ["d1", "d2"]))
        self.assertEqual((found["d1"].endpoint, found["d2"].endpoint), ("mem://alive", "mem://mine"))

    def test_same_incarnation_registers_again_without_a_check(self) -> None:
        """The same process registering again (a new endpoint, same incarnation) is never refused."""
        self.eca.serve("mem://first")
        self.result(self.client.register_many([AgentInfo("d1", "detector", "mem://first", pid=1, incarnation="x")]))
        refused = self.result(
            self.client.register_many([AgentInfo("d1", "detector", "mem://second", pid=1, incarnation="x")])
        )
        self.assertEqual(refused, {})

    def test_partitions_of_in_one_request(self) -> None:
        """The partition of many detectors in one request; unknown ones are None."""
        owners = self.result(self.client.partitions_of(["d3", "d1", "zz"]))
        self.assertEqual(owners, {"d3": "p2", "d1": "p1", "zz": None})

    def test_bad_bulk_requests_are_named(self) -> None:
        """Malformed bulk requests are refused with what was wrong."""
        node = MemoryNode(self.network, "attacker").connect("mem://registry")
        errors: list[Any] = []
        for body in ({"agents": []}, {"agents": ["x"]}, {"agents": [{"id": "a"}]}):
            node.request(REGISTRY, "register_many", body).addErrback(errors.append)
        node.request(REGISTRY, "locate", {"kind": "detector", "ids": [1]}).addErrback(errors.append)
        node.request(REGISTRY, "partitions_of", {"ids": "d1"}).addErrback(errors.append)
        self.network.flush()
        self.clock.advance(0)
        reasons = [e.value.reason for e in errors]
        self.assertEqual(len(reasons), 5)
        self.assertIn("'agents' must be a list of 1 to 500", reasons[0])
        self.assertIn("must be an object", reasons[1])
        self.assertIn("'kind' must be a non-empty string", reasons[2])
        self.assertIn("'ids' must hold non-empty strings", reasons[3])
        self.assertIn("'ids' must be a list", reasons[4])

    def test_endpoint_key_must_be_one(self) -> None:
        """An endpoint naming its server key is registered as is; a mangled key is refused by name."""
        key = "ab" * 32
        self.result(self.client.register(AgentInfo("d1", "detector", f"mem://h#curve={key}", pid=1)))
        found = self.result(self.client.locate("detector", ["d1"]))
        self.assertEqual(found["d1"].endpoint, f"mem://h#curve={key}")
        node = MemoryNode(self.network, "attacker").connect("mem://registry")
        errors: list[Any] = []
        for endpoint in ("mem://h#curve=zz", f"mem://h#curve={key}00"):
            body = {"id": "d2", "kind": "detector", "endpoint": endpoint}
            node.request(REGISTRY, "register", body).addErrback(errors.append)
        self.network.flush()
        self.clock.advance(0)
        self.assertEqual([e.value.code for e in errors], ["bad_request", "bad_request"])
        self.assertIn("'endpoint'", errors[0].value.reason)
        self.assertIn("64 hex digits", errors[1].value.reason)
        self.assertEqual(self.result(self.client.locate("detector", ["d2"])), {})
