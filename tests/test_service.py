"""
Tests for the plugins' composition (L{agents._tap}, L{agents.controller.detector},
L{agents.controller.global_system}, L{agents.controller.simhost}): options and configuration
errors found before anything is bound.
"""

from __future__ import annotations

from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from agents.controller import detector, global_system, simhost
from agents.controller.host import ControllerHost
from agents.controller.simhost import parse_ids
from ecs.net.keys import init_keys


class ParseIdsTests(SynchronousTestCase):
    """The sim host's --ids."""

    def test_ranges_and_lists(self) -> None:
        """Numbers and ranges expand in order, with the prefix."""
        self.assertEqual(parse_ids("1-3,7", "sim"), ["sim1", "sim2", "sim3", "sim7"])

    def test_rejections(self) -> None:
        """Bad parts, backwards ranges, duplicates and absurd sizes are refused by name."""
        for spec, word in (("1-x", "1-x"), ("5-2", "5-2"), ("1-3,2", "twice"), ("1-999999", "more than")):
            error = self.assertRaises(ValueError, parse_ids, spec)
            self.assertIn(word, str(error))


class MakeServiceTests(SynchronousTestCase):
    """makeService composes a host, or exits with one readable message."""

    def setUp(self) -> None:
        self.state = Path(self.mktemp()).resolve()
        init_keys(self.state / "keys")

    def options(self, module, *argv: str):  # type: ignore[no-untyped-def]
        options = module.Options()
        options.parseOptions(["--state-dir", str(self.state), *argv])
        return options

    def test_detector(self) -> None:
        """A detector with --type composes into a host serving that id."""
        service = detector.makeService(self.options(detector, "--id", "STS", "--type", "STS"))
        self.assertIsInstance(service, ControllerHost)
        self.assertEqual(service.kinds, {"STS": "detector"})
        self.addCleanup(service.node.close)

    def test_detector_needs_id(self) -> None:
        """--id is required."""
        self.assertRaises(usage.UsageError, self.options, detector, "--type", "STS")

    def test_unknown_type(self) -> None:
        """An unknown type exits naming the known ones."""
        error = self.assertRaises(
            SystemExit, detector.makeService, self.options(detector, "--id", "X", "--type", "Nope")
        )
        self.assertIn("Nope", str(error.code))
        self.assertIn("STS", str(error.code))

    def test_global_type_is_not_a_detector(self) -> None:
        """A global system cannot be started as a detector."""
        error = self.assertRaises(
            SystemExit, detector.makeService, self.options(detector, "--id", "X", "--type", "TFC")
        )
        self.assertIn("global system", str(error.code))

    def test_bad_start_state(self) -> None:
        """--start-state must be a state of the detector's table."""
        error = self.assertRaises(
            SystemExit,
            detector.makeService,
            self.options(detector, "--id", "X", "--type", "STS", "--start-state", "Flying"),
        )
        self.assertIn("Flying", str(error.code))

    def test_global_all(self) -> None:
        """--id all hosts every global system of subsystems.yaml."""
        service = global_system.makeService(self.options(global_system, "--id", "all"))
        self.addCleanup(service.node.close)
        self.assertEqual(sorted(service.kinds), ["DCS", "FLES", "QA", "TFC"])

    def test_simhost(self) -> None:
        """The sim host hosts every id of --ids."""
        service = simhost.makeService(
            self.options(simhost, "--ids", "1-50", "--prefix", "d", "--type", "TOF")
        )
        self.addCleanup(service.node.close)
        self.assertEqual(len(service.kinds), 50)
        self.assertIn("d50", service.kinds)

    def test_missing_keys(self) -> None:
        """With curve security and no keys the message names the command that makes them."""
        options = detector.Options()
        options.parseOptions(["--state-dir", str(self.state / "elsewhere"), "--id", "X", "--type", "STS"])
        error = self.assertRaises(SystemExit, detector.makeService, options)
        self.assertIn("ecs keys init", str(error.code))

    def test_bad_security_option(self) -> None:
        """--security accepts curve or none only."""
        self.assertRaises(usage.UsageError, self.options, detector, "--id", "X", "--security", "maybe")


class DemoInventoryTests(SynchronousTestCase):
    """etc/demo-inventory.yaml, the README's inventory for running agents by hand."""

    def test_names_the_demo_partition(self) -> None:
        """It loads, holds partition demo with the five demo detectors of shipped types, and the global systems."""
        from ecs.config.settings import load_subsystems
        from ecs.net.registry import InventoryRegistry
        from tests.procs import ROOT

        registry = InventoryRegistry.from_file(ROOT / "etc" / "demo-inventory.yaml")
        subsystems = load_subsystems()
        detectors = self.successResultOf(registry.detectors_of("demo"))
        self.assertEqual(detectors, ["STS", "MVD", "TOF", "TRD", "RICH"])
        endpoints = set()
        for name in detectors:
            self.assertIn(registry.detector_type_now(name), subsystems.detector_types)
            endpoints.add(self.successResultOf(registry.bind_address("detector", name)))
        self.assertEqual(len(endpoints), 5, "each detector controller binds its own endpoint")
        shared = {self.successResultOf(registry.bind_address("global", g)) for g in subsystems.global_systems}
        self.assertEqual(len(shared), 1, "ecs-global --id all serves every global system on one endpoint")
        self.assertIsNotNone(self.successResultOf(registry.bind_address("pca", "demo")))

    def test_every_plugin_composes_with_it(self) -> None:
        """The README's commands compose: ecs-global --id all and ecs-detector --id STS take the endpoint it names."""
        state = Path(self.mktemp()).resolve()
        init_keys(state / "keys")
        inventory = str(Path(__file__).resolve().parent.parent / "etc" / "demo-inventory.yaml")
        for module, argv in ((global_system, ["--id", "all"]), (detector, ["--id", "STS"])):
            options = module.Options()
            options.parseOptions(["--state-dir", str(state), "--inventory", inventory, *argv])
            service = module.makeService(options)
            assert isinstance(service, ControllerHost)
            self.addCleanup(service.node.close)
