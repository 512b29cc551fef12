"""
A partition in memory: a PCA, its global systems and detectors as real
L{ControllerHost}s with simulated actions, on the in-memory transport with
a L{Clock}.  Scenario tests drive it by commands and by faults
(L{MemoryNetwork.set_down}, injected errors) and read the published
records through a subscriber, as the ECA will.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from agents.controller.host import ControllerHost
from agents.pca.agent import PartitionAgent
from ecs.config.settings import ActionSpec, Subsystems, SystemType, load_settings, load_subsystems
from ecs.config.sources import FileConfigSource
from ecs.fsm.sequence import Sequence, load_sequence
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.registry import InventoryRegistry
from ecs.net.transport import RequestError
from ecs.protocol import Envelope

SETTINGS = load_settings(overrides={"security": "none"})
SHIPPED = load_subsystems()
DETECTORS = ("STS", "MVD", "TOF")
GLOBALS = ("TFC", "DCS", "QA", "FLES")


def subsystems_with(
    duration: float, names: tuple[str, ...] = (), fsm: dict[str, str] | None = None
) -> Subsystems:
    """The shipped types, every action simulated with C{duration} per step."""
    def retime(t: SystemType) -> SystemType:
        options = {"duration": duration, "failure_probability": 0.0, "seed": 0}
        return attrs.evolve(t, action=ActionSpec("simulated", options))

    detector_types = {n: retime(t) for n, t in SHIPPED.detector_types.items()}
    global_systems = {n: retime(t) for n, t in SHIPPED.global_systems.items()}
    for name in names:  # extra global systems, like TFC
        global_systems[name] = attrs.evolve(global_systems["TFC"], name=name)
    return Subsystems(detector_types, global_systems, "<test>")


def config(system: str, version: str = "1", **parameters: Any) -> dict[str, Any]:
    """A configuration for C{system}."""
    return {"config_id": f"{system.lower()}-{version}", "system": system, "parameters": parameters}


class PartitionHarness(SynchronousTestCase):
    """Builds the partition; subclasses say what it has."""

    detectors: tuple[str, ...] = DETECTORS
    globals_: tuple[str, ...] = GLOBALS
    step: float = 0.25
    sequence_file: str | None = None
    #: Where a new PCA keeps its state file (None: it keeps none).
    state_path: Any = None

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.network = MemoryNetwork(self.clock)
        self.subsystems = subsystems_with(self.step, tuple(g for g in self.globals_ if g not in GLOBALS))
        self.sequence: Sequence = load_sequence(self.sequence_file, list(self.subsystems.global_systems))
        inventory = {
            "partitions": {"p1": {"endpoint": "mem://pca", "detectors": list(self.detectors)}},
            "detectors": {d: {"type": "STS", "endpoint": "mem://detectors"} for d in self.detectors},
            "global_systems": {g: {"endpoint": "mem://globals"} for g in self.globals_},
        }
        self.registry = InventoryRegistry(inventory)
        all_systems = (*self.globals_, *self.detectors)
        self.configs = FileConfigSource.from_dict(
            {
                "configurations": {
                    c["config_id"]: {"system": c["system"], "parameters": c["parameters"]}
                    for s in all_systems
                    for c in (config(s, "1"), config(s, "2"))
                },
                "tags": {
                    "v1": [config(s, "1")["config_id"] for s in all_systems],
                    "v2-sts": [config(s, "2" if s == "STS" else "1")["config_id"] for s in all_systems],
                    "v2-tfc": [config(s, "2" if s == "TFC" else "1")["config_id"] for s in all_systems],
                },
            }
        )
        self.hosts: dict[str, ControllerHost] = {}
        self.globals_host = self.make_host("globals", "mem://globals")
        for g in self.globals_:
            self.globals_host.add_global(g, self.subsystems.global_systems[g])
        self.detector_host = self.make_host("detectors", "mem://detectors")
        for d in self.detectors:
            self.detector_host.add_detector(d, self.subsystems.detector_types["STS"])
        self.state_files: dict[str, str] = {}
        self.pca = self.make_pca()
        self.events: list[Envelope] = []
        self.tester = MemoryNode(self.network, "tester")
        for host in self.hosts.values():
            host.startService()
        self.pca.startService()
        self.flush()
        self.subscriber = self.tester.subscribe(
            self.pca.publisher.address, ["state/", "log/", "progress/"], self.events.append
        )
        self.advance(SETTINGS.heartbeat_interval)

    def make_host(self, name: str, address: str) -> ControllerHost:
        host = ControllerHost(name, MemoryNode(self.network, name), self.registry, SETTINGS, self.clock, bind=address)
        self.hosts[name] = host
        return host

    def make_pca(self) -> PartitionAgent:
        return PartitionAgent(
            "p1",
            MemoryNode(self.network, "pca:p1"),
            self.registry,
            SETTINGS,
            self.subsystems,
            self.sequence,
            self.configs,
            self.clock,
            bind="mem://pca",
            state_file=self.state_path,
            writer=lambda write: defer.succeed(write()),
        )

    def tearDown(self) -> None:
        if self.pca.running:
            self.pca.stopService()
        for host in self.hosts.values():
            if host.running:
                host.stopService()
        self.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    # -- driving -----------------------------------------------------------

    def flush(self) -> None:
        """Deliver everything due now."""
        self.clock.advance(0)

    def advance(self, seconds: float, step: float = 0.125) -> None:
        """Let C{seconds} pass in exact binary steps."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
        self.clock.advance(0)

    def command(self, type: str, **body: Any) -> Any:
        """Send a command to the PCA; its reply body, or the RequestError."""
        results: list[Any] = []
        d = self.tester.connect("mem://pca").request("p1", type, body)
        d.addCallbacks(results.append, lambda f: results.append(f.value))
        self.flush()
        self.assertEqual(len(results), 1, f"no reply to {type}")
        return results[0]

    def refused(self, code: str, type: str, **body: Any) -> RequestError:
        """Assert a command is refused with C{code}."""
        result = self.command(type, **body)
        self.assertIsInstance(result, RequestError, f"{type} was accepted: {result}")
        self.assertEqual(result.code, code, result.reason)
        return result

    def to_system(self, host: str, system: str, type: str, **body: Any) -> Any:
        """Send a request straight to a controller (as another client would)."""
        results: list[Any] = []
        address = "mem://globals" if host == "globals" else "mem://detectors"
        self.tester.connect(address).request(system, type, body).addCallbacks(
            results.append, lambda f: results.append(f.value)
        )
        self.flush()
        return results[0]

    # -- reading -----------------------------------------------------------

    @property
    def state(self) -> str:
        return self.pca.sequencer.partition.state

    def system(self, name: str) -> Any:
        return self.pca.sequencer.partition.systems[name]

    def logs(self) -> list[str]:
        return [e.body["message"] for e in self.events if e.type == "log"]

    def published_states(self) -> list[str]:
        """The partition states in the order they were published."""
        out: list[str] = []
        for e in self.events:
            if e.type == "state" and e.body["key"] == "partition":
                state = e.body["value"]["state"]
                if not out or out[-1] != state:
                    out.append(state)
        return out
