"""
Tests for L{agents.controller.host.ControllerHost}: controllers behind one endpoint,
driven over the in-memory transport with a L{Clock} and a stand-in PCA.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, ClassVar

import attrs
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from agents.controller import link as link_module
from agents.controller.host import ControllerHost
from ecs.config.settings import ActionSpec, load_settings, load_subsystems
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.registry import AgentInfo, InventoryRegistry
from ecs.net.transport import Request, RequestError

SETTINGS = load_settings(overrides={"security": "none"})
SUBSYSTEMS = load_subsystems()


class FakePCA:
    """A partition agent that records what the controllers tell it."""

    def __init__(self, network: MemoryNetwork, partition: str, address: str) -> None:
        self.node = MemoryNode(network, f"pca:{partition}")
        self.server = self.node.serve(address)
        self.notifications: list[dict[str, Any]] = []
        self.alarms: list[dict[str, Any]] = []
        self.server.register(
            partition, {"states": self._states, "alarm": self._alarm}
        )

    def _states(self, request: Request) -> None:
        self.notifications.append(request.body)

    def _alarm(self, request: Request) -> dict[str, Any]:
        self.alarms.append({"sender": request.sender, **request.body})
        return {"accepted": True}

    @property
    def updates(self) -> list[dict[str, Any]]:
        return [u for n in self.notifications for u in n["updates"]]

    def states_of(self, system: str) -> list[str]:
        return [u["state"] for u in self.updates if u["system"] == system]


def address_of(host: ControllerHost) -> str:
    """The address a started host serves at."""
    assert host.address is not None, "host not started"
    return host.address


class HostHarness(SynchronousTestCase):
    """A memory network, a clock, an inventory and helpers to send commands."""

    inventory: ClassVar[dict[str, Any]] = {
        "partitions": {
            "p1": {"endpoint": "mem://pca-p1", "detectors": ["STS", "MVD"]},
            "p2": {"endpoint": "mem://pca-p2", "detectors": ["TOF"]},
        },
        "detectors": {"STS": {"type": "STS"}, "MVD": {"type": "MVD"}, "TOF": {"type": "TOF"}},
        "global_systems": {"TFC": {}, "DCS": {}, "QA": {}, "FLES": {}},
    }

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.network = MemoryNetwork(self.clock)
        self.registry = InventoryRegistry(self.inventory)
        self.pcas = {
            p: FakePCA(self.network, p, f"mem://pca-{p}") for p in self.inventory["partitions"]
        }
        self.client_node = MemoryNode(self.network, "tester")
        self.hosts: list[ControllerHost] = []

    def tearDown(self) -> None:
        for host in self.hosts:
            if host.running:
                host.stopService()
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def start(self, host: ControllerHost) -> ControllerHost:
        self.hosts.append(host)
        host.startService()
        self.clock.advance(0)
        self.assertIsNotNone(host.address)
        return host

    def host(self, name: str = "host", subsystems: Any = SUBSYSTEMS, settings: Any = SETTINGS) -> ControllerHost:
        return ControllerHost(
            name, MemoryNode(self.network, name), self.registry, settings, self.clock, bind="mem://*"
        )

    def send(self, host: ControllerHost, target: str, type: str, **body: Any) -> Any:
        """Send one request and return its result (a dict or a RequestError)."""
        results: list[Any] = []
        d = self.client_node.connect(address_of(host)).request(target, type, body)
        d.addCallbacks(results.append, lambda f: results.append(f.value))
        self.clock.advance(0)
        self.assertEqual(len(results), 1, "no reply")
        return results[0]

    def run_for(self, seconds: float, step: float = 0.125) -> None:
        """Advance the clock in exact binary steps, then deliver what is due."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
        self.clock.advance(0)


class DetectorHostTests(HostHarness):
    """A process hosting detectors of two partitions."""

    def setUp(self) -> None:
        super().setUp()
        self.det = self.host()
        for name in ("STS", "TOF"):
            self.det.add_detector(name, SUBSYSTEMS.get(name))
        self.start(self.det)

    def test_first_update_after_start_has_sequence_zero(self) -> None:
        """Once the PCA answers a heartbeat, each detector reports its state with number 0."""
        self.assertEqual(
            [(u["system"], u["state"], u["seq"]) for u in self.pcas["p1"].updates],
            [("STS", "Unconfigured", 0)],
        )
        self.assertEqual(self.pcas["p2"].states_of("TOF"), ["Unconfigured"])
        self.assertEqual(self.pcas["p1"].notifications[0]["incarnation"], self.det.incarnation)

    def test_configure_to_active_with_updates(self) -> None:
        """Configure runs both simulated steps and every change reaches the PCA in order."""
        reply = self.send(self.det, "STS", "configure", config={"config_id": "c7", "parameters": {}})
        self.assertEqual(reply["state"], "Configuring_Step1")
        self.run_for(1.0)
        updates = [u for u in self.pcas["p1"].updates if u["system"] == "STS"]
        self.assertEqual(
            [u["state"] for u in updates],
            ["Unconfigured", "Configuring_Step1", "Configuring_Step2", "Active"],
        )
        self.assertEqual([u["seq"] for u in updates], [0, 1, 2, 3])
        self.assertEqual(updates[-1]["tag"], "c7")
        status = self.send(self.det, "STS", "status")
        self.assertEqual((status["state"], status["tag"], status["busy"]), ("Active", "c7", False))

    def test_busy_and_abort(self) -> None:
        """A second configure is refused as busy; abort is accepted and stops the work."""
        self.send(self.det, "STS", "configure", config={"config_id": "a"})
        busy = self.send(self.det, "STS", "configure", config={"config_id": "b"})
        self.assertIsInstance(busy, RequestError)
        self.assertEqual(busy.code, "busy")
        reply = self.send(self.det, "STS", "abort")
        self.assertEqual(reply["state"], "Unconfigured")
        self.run_for(1.0)
        self.assertEqual(self.pcas["p1"].states_of("STS")[-1], "Unconfigured")

    def test_error_and_reset(self) -> None:
        """Injected error puts the detector in Error; reset brings it back."""
        reply = self.send(self.det, "STS", "inject", what="error")
        self.assertEqual(reply["results"], {"STS": "Error"})
        refused = self.send(self.det, "STS", "configure", config={"config_id": "a"})
        self.assertEqual(refused.code, "not_allowed")
        self.assertEqual(self.send(self.det, "STS", "reset")["state"], "Unconfigured")
        self.clock.advance(0)
        self.assertEqual(self.pcas["p1"].states_of("STS")[-2:], ["Error", "Unconfigured"])

    def test_bad_requests_are_answered(self) -> None:
        """Unknown agents, unknown types and bad bodies get errors naming the problem."""
        self.assertEqual(self.send(self.det, "NOPE", "status").code, "unknown_target")
        self.assertEqual(self.send(self.det, "STS", "launch").code, "unknown_type")
        bad = self.send(self.det, "STS", "configure", config="yes")
        self.assertEqual(bad.code, "bad_request")
        self.assertEqual(self.send(self.det, "STS", "inject", what="fire").code, "bad_request")
        # and the host still serves
        self.assertEqual(self.send(self.det, "STS", "status")["state"], "Unconfigured")

    def test_pca_loss_and_return_resends_state(self) -> None:
        """When the PCA comes back after a loss, every detector reports its state again."""
        self.network.set_down("mem://pca-p1")
        self.run_for(SETTINGS.heartbeat_timeout + SETTINGS.heartbeat_interval)
        link = self.det.links["p1"]
        assert link.heartbeat is not None
        self.assertIs(link.heartbeat.alive, False)
        before = len(self.pcas["p1"].updates)
        self.network.set_down("mem://pca-p1", False)
        self.run_for(SETTINGS.heartbeat_interval * 2)
        assert link.heartbeat is not None
        self.assertIs(link.heartbeat.alive, True)
        resent = self.pcas["p1"].updates[before:]
        self.assertEqual([(u["system"], u["state"]) for u in resent], [("STS", "Unconfigured")])
        self.assertGreater(resent[0]["seq"], 0)

    def test_pca_restarted_elsewhere_is_found_although_it_commands_us(self) -> None:
        """
        A PCA restarted at a new endpoint is found through the registry within
        two heartbeat intervals of its registration, though its commands keep
        reaching us all along (they are no answers to our heartbeats).
        """
        link = self.det.links["p1"]
        self.network.set_down("mem://pca-p1")  # killed
        new = FakePCA(self.network, "p1", "mem://pca-p1-new")  # its sender name is pca:p1 again
        self.registry.register(AgentInfo("p1", "pca", "mem://pca-p1-new", incarnation="second"))
        asker = new.node.connect(address_of(self.det))
        limit = SETTINGS.heartbeat_timeout + 2 * SETTINGS.heartbeat_interval
        elapsed = 0.0
        while not new.updates and elapsed < limit + 1.0:
            asker.request("STS", "status", {}).addErrback(lambda _: None)  # the new PCA asks as it starts
            self.run_for(0.125)
            elapsed += 0.125
        self.assertEqual(link.endpoint, "mem://pca-p1-new")
        self.assertEqual(link.incarnation, "second")
        self.assertLessEqual(elapsed, limit)
        self.assertEqual(new.states_of("STS"), ["Unconfigured"])

    def test_pca_lost_looked_up_every_interval(self) -> None:
        """While the PCA does not answer, the registry is asked again every heartbeat interval."""
        asked: list[float] = []
        locate = self.registry.locate

        def counting(kind: str, ids: list[str]) -> Any:
            if ids == ["p1"]:
                asked.append(self.clock.seconds())
            return locate(kind, ids)

        self.patch(self.registry, "locate", counting)
        self.network.set_down("mem://pca-p1")
        self.run_for(SETTINGS.heartbeat_timeout + 4 * SETTINGS.heartbeat_interval)
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(asked)]
        self.assertGreaterEqual(len(asked), 4)
        self.assertEqual(set(gaps), {SETTINGS.heartbeat_interval})


class GlobalHostTests(HostHarness):
    """Global systems keep one state machine and one action per partition."""

    def setUp(self) -> None:
        super().setUp()
        self.glob = self.host("global")
        for name in ("TFC", "DCS", "QA", "FLES"):
            self.glob.add_global(name, SUBSYSTEMS.get(name))
        self.start(self.glob)

    def test_two_partitions_are_independent(self) -> None:
        """Configuring and aborting TFC in p1 leaves TFC in p2 alone, and the reverse."""
        self.send(self.glob, "TFC", "configure", partition="p1", config={"config_id": "t1"})
        self.send(self.glob, "TFC", "configure", partition="p2", config={"config_id": "t2"})
        self.send(self.glob, "TFC", "abort", partition="p1")
        self.run_for(2.0)
        self.assertEqual(self.pcas["p1"].states_of("TFC")[-1], "Unconfigured")
        self.assertEqual(self.pcas["p2"].states_of("TFC")[-1], "Active")
        status = self.send(self.glob, "TFC", "status")
        self.assertEqual(status["partitions"]["p1"]["state"], "Unconfigured")
        self.assertEqual(status["partitions"]["p2"]["tag"], "t2")

    def test_partition_required_and_checked(self) -> None:
        """A global-system command names its partition; an unknown one is refused."""
        self.assertEqual(self.send(self.glob, "TFC", "configure", config={"config_id": "x"}).code, "bad_request")
        unknown = self.send(self.glob, "TFC", "status", partition="p9")
        self.assertEqual(unknown.code, "unknown_partition")
        self.assertIn("p1", unknown.reason)

    def test_qa_records(self) -> None:
        """QA starts and stops recording per partition."""
        self.send(self.glob, "QA", "configure", partition="p1", config={"config_id": "q"})
        self.run_for(1.5)
        self.assertEqual(self.send(self.glob, "QA", "start", partition="p1")["state"], "Recording")
        self.assertEqual(self.send(self.glob, "QA", "status", partition="p2")["state"], "Unconfigured")
        self.assertEqual(self.send(self.glob, "QA", "stop", partition="p1")["state"], "Active")

    def test_injected_error_hits_every_partition(self) -> None:
        """A hardware error of a global system is an error in every partition it serves."""
        reply = self.send(self.glob, "DCS", "inject", what="error")
        self.assertEqual(reply["results"], {"p1": "Error", "p2": "Error"})

    def test_dcs_detector_alarm_reaches_owning_partition(self) -> None:
        """A DCS alarm for TOF is delivered to p2 (which owns TOF) and nowhere else."""
        reply = self.send(self.glob, "DCS", "inject", what="detector_error", detector="TOF")
        self.assertEqual(reply["partition"], "p2")
        self.assertEqual(
            self.pcas["p2"].alarms,
            [{"sender": "DCS", "source": "DCS", "detector": "TOF", "message": "detectorError"}],
        )
        self.assertEqual(self.pcas["p1"].alarms, [])

    def test_alarm_for_unassigned_detector_is_refused(self) -> None:
        """An alarm for a detector in no partition is refused with a reason."""
        reply = self.send(self.glob, "DCS", "inject", what="detector_error", detector="RICH")
        self.assertEqual(reply.code, "not_allowed")
        self.assertIn("RICH", reply.reason)


class SimHostTests(HostHarness):
    """Many detectors behind one endpoint."""

    inventory: ClassVar[dict[str, Any]] = {
        "partitions": {"p1": {"endpoint": "mem://pca-p1", "detectors": [str(n) for n in range(1, 201)]}},
        "detectors": {str(n): {"type": "STS"} for n in range(1, 201)},
    }

    def test_updates_are_batched(self) -> None:
        """Configuring 200 detectors at once costs a few notifications, not hundreds."""
        host = self.host("sim")
        for n in range(1, 201):
            host.add_detector(str(n), SUBSYSTEMS.get("STS"))
        self.start(host)
        pca = self.pcas["p1"]
        self.assertEqual(len(pca.updates), 200)
        for n in range(1, 201):
            self.client_node.connect(address_of(host)).request(
                str(n), "configure", {"config": {"config_id": "c"}}
            )
        self.clock.advance(0)
        self.run_for(1.0)
        active = {u["system"] for u in pca.updates if u["state"] == "Active"}
        self.assertEqual(len(active), 200)
        self.assertEqual(len(pca.updates), 200 * 4)
        self.assertLess(len(pca.notifications), 12)

    def test_only_latest_state_per_turn(self) -> None:
        """Zero-time configures pass three states in one turn: the PCA gets only the last of each."""
        instant = attrs.evolve(
            SUBSYSTEMS.get("STS"), action=ActionSpec("simulated", {"duration": 0.0})
        )
        host = self.host("sim")
        for n in range(1, 201):
            host.add_detector(str(n), instant)
        self.start(host)
        pca = self.pcas["p1"]
        before = len(pca.updates)
        for n in range(1, 201):
            self.client_node.connect(address_of(host)).request(str(n), "configure", {"config": {"config_id": "c"}})
        self.clock.advance(0)
        updates = pca.updates[before:]
        self.assertEqual(len(updates), 200)
        self.assertEqual({u["state"] for u in updates}, {"Active"})
        self.assertEqual({u["seq"] for u in updates}, {3})

    def test_large_batches_are_split(self) -> None:
        """A turn with more updates than a batch holds goes out in several notifications, none lost."""
        self.patch(link_module, "BATCH", 30)
        host = self.host("sim")
        for n in range(1, 201):
            host.add_detector(str(n), SUBSYSTEMS.get("STS"))
        self.start(host)
        pca = self.pcas["p1"]
        self.assertEqual(len(pca.updates), 200)
        self.assertEqual(max(len(n["updates"]) for n in pca.notifications), 30)
        self.assertEqual(len(pca.notifications), 7)


class NewTypeFromYamlTests(HostHarness):
    """A new detector type is a YAML change only."""

    inventory: ClassVar[dict[str, Any]] = {
        "partitions": {"p1": {"endpoint": "mem://pca-p1", "detectors": ["GEM"]}},
        "detectors": {"GEM": {"type": "FourStep"}},
    }

    def test_four_step_type(self) -> None:
        """A four-step table and type written to a temp dir drive a controller to Active."""
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "four-step.yaml").write_text(
            "name: four-step\n"
            "initial: Idle\n"
            "states: {Idle: Unconfigured, S1: Configuring, S2: Configuring, S3: Configuring,"
            " S4: Configuring, Ready: Active, Broken: Error}\n"
            "transitions:\n"
            "  - [Idle, configure, S1]\n"
            "  - [S1, success, S2]\n  - [S2, success, S3]\n  - [S3, success, S4]\n"
            "  - [S4, success, Ready]\n"
            "  - [Ready, configure, S1]\n"
            "  - [S1, abort, Idle]\n  - [S2, abort, Idle]\n  - [S3, abort, Idle]\n  - [S4, abort, Idle]\n"
            "  - [Ready, abort, Idle]\n"
            "  - [S1, error, Broken]\n  - [S2, error, Broken]\n  - [S3, error, Broken]\n"
            "  - [S4, error, Broken]\n  - [Ready, error, Broken]\n  - [Idle, error, Broken]\n"
            "  - [Broken, reset, Idle]\n  - [Broken, resolved, Idle]\n"
        )
        (tmp / "subsystems.yaml").write_text(
            "detector_types:\n"
            "  FourStep: {fsm: four-step.yaml, action: {kind: simulated, duration: 0.25}}\n"
            "global_systems: {}\n"
        )
        subsystems = load_subsystems(tmp / "subsystems.yaml")
        host = self.host("gem")
        host.add_detector("GEM", subsystems.get("FourStep"))
        self.start(host)
        self.send(host, "GEM", "configure", config={"config_id": "g1"})
        self.run_for(1.0)
        self.assertEqual(
            self.pcas["p1"].states_of("GEM"), ["Idle", "S1", "S2", "S3", "S4", "Ready"]
        )
        self.assertEqual(self.send(host, "GEM", "status")["summary"], "Active")
