"""
L{agents._heap}: an agent process freezes the heap it built to start, once
its reactor runs, so that the garbage collector's full scans stay short.
"""

from __future__ import annotations

import gc
import sys
import types
from pathlib import Path
from typing import Any

from twisted.internet.testing import MemoryReactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from agents import _heap
from tests.procs import spawn, tool


class FakeCollector:
    """Records the calls L{_heap.settle} makes, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.frozen = 0

    def collect(self) -> int:
        self.calls.append("collect")
        return 0

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.frozen = 1234

    def get_freeze_count(self) -> int:
        return self.frozen


class SettleTests(SynchronousTestCase):
    """L{_heap.settle} and L{_heap.settle_when_running}."""

    def test_collects_then_freezes(self) -> None:
        """Start-up's garbage is collected before the survivors are frozen; the count is returned and logged."""
        collector = FakeCollector()
        ticks = iter([10.0, 10.025])
        with capturedLogs() as events:
            frozen = _heap.settle(collector, clock=lambda: next(ticks))
        self.assertEqual(collector.calls, ["collect", "freeze"])
        self.assertEqual(frozen, 1234)
        lines = [formatEvent(e) for e in events]
        self.assertIn(
            "start-up heap frozen: 1234 objects left out of the garbage collector's full scans (25 ms)", lines
        )

    def test_waits_for_the_reactor(self) -> None:
        """Nothing is frozen while the services are still being composed; once the reactor runs, once."""
        collector = FakeCollector()
        reactor = MemoryReactor()
        _heap.settle_when_running(reactor, collector)
        self.assertEqual(collector.calls, [])
        reactor.run()
        self.assertEqual(collector.calls, ["collect", "freeze"])


class PluginTests(SynchronousTestCase):
    """Every twistd plugin of ECS settles its process's heap; composing a service by hand does not."""

    def setUp(self) -> None:
        self.scheduled: list[Any] = []
        self.patch(_heap, "settle_when_running", lambda reactor, collector=gc: self.scheduled.append(reactor))
        module = types.ModuleType("ecs_test_heap_agent")
        self.made: list[Any] = []

        def makeService(options: Any) -> Any:
            self.made.append(options)
            return "the service"

        module.makeService = makeService  # type: ignore[attr-defined]
        sys.modules[module.__name__] = module
        self.addCleanup(sys.modules.pop, module.__name__)

    def test_every_plugin(self) -> None:
        """The six plugins are L{AgentMaker}s."""
        from twisted.plugins import ecs_plugins

        makers = [v for v in vars(ecs_plugins).values() if getattr(v, "tapname", "").startswith("ecs-")]
        self.assertEqual(
            sorted(m.tapname for m in makers),
            ["ecs-demo", "ecs-detector", "ecs-eca", "ecs-global", "ecs-pca", "ecs-simhost"],
        )
        for maker in makers:
            self.assertIsInstance(maker, ecs_plugins.AgentMaker, maker.tapname)

    def test_make_service_schedules_the_freeze(self) -> None:
        """The maker composes with the module's makeService, then schedules the freeze on the global reactor."""
        from twisted.internet import reactor

        from twisted.plugins import ecs_plugins

        maker = ecs_plugins.AgentMaker("test", "ecs_test_heap_agent", "a test agent", "ecs-test")
        self.assertEqual(maker.makeService({"id": "X"}), "the service")
        self.assertEqual(self.made, [{"id": "X"}])
        self.assertEqual(self.scheduled, [reactor])


class RealProcessTests(TestCase):
    """A detector controller started by twistd freezes its start-up heap once it runs."""

    timeout = 120

    async def test_detector_process(self) -> None:
        """C{twistd -n ecs-detector} logs the freeze (with what it froze) and keeps serving."""
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        (tmp / "inventory.yaml").write_text("detectors:\n  STS: {type: STS}\n", encoding="utf-8")
        argv = [tool("twistd"), "-n", "--pidfile=", "ecs-detector", "--id", "STS", "--type", "STS",
                "--inventory", str(tmp / "inventory.yaml"), "--state-dir", str(tmp / "state"),
                "--security", "none", "--bind", "tcp://127.0.0.1:*"]
        proc, _ = spawn(self, "ecs-detector", argv, cwd=str(tmp))
        match = await proc.wait_for(r"start-up heap frozen: (\d+) objects", timeout=60)
        self.assertGreater(int(match.group(1)), 1000)
        self.assertFalse(proc.ended.called, "\n".join(proc.lines))
