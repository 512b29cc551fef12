"""
Tests for L{agents.eca.metrics}: the ECA's Prometheus metrics, read back
through C{prometheus_client}'s own text parser.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from agents.eca.metrics import CONTENT_TYPE, EcaMetrics, PartitionSample
from ecs.store.alarms import ALARM_KINDS


def parse(metrics: EcaMetrics) -> dict[str, Metric]:
    """The families of a render, by name."""
    return {family.name: family for family in text_string_to_metric_families(metrics.render().decode("utf-8"))}


def values(metrics: EcaMetrics, sample_name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called C{sample_name}: sorted labels -> value."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        for sample in family.samples:
            if sample.name == sample_name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def sample(partition: str = "p1", state: str = "Idle", connected: bool = True,
           systems: dict[str, int] | None = None, connected_systems: int = 0) -> PartitionSample:
    return PartitionSample(partition=partition, state=state, connected=connected,
                           systems=systems or {}, connected_systems=connected_systems)


class EcaMetricsTests(SynchronousTestCase):
    """The metrics' names, types, labels and values."""

    def setUp(self) -> None:
        self.metrics = EcaMetrics()

    def test_content_type(self) -> None:
        """The content type is the client's latest text format."""
        self.assertEqual(CONTENT_TYPE, CONTENT_TYPE_LATEST)
        self.assertTrue(CONTENT_TYPE.startswith("text/plain; version="), CONTENT_TYPE)

    def test_own_registry(self) -> None:
        """The metrics live on a registry of their own, not the client's global one."""
        self.assertIsInstance(self.metrics.registry, CollectorRegistry)
        self.assertIsNot(self.metrics.registry, REGISTRY)
        self.assertIsNone(REGISTRY.get_sample_value("ecs_commands_total", {"command": "x", "outcome": "ok"}))
        self.metrics.command_done("x", "ok", 1.0)
        self.assertIsNone(REGISTRY.get_sample_value("ecs_commands_total", {"command": "x", "outcome": "ok"}))
        self.assertEqual(self.metrics.registry.get_sample_value("ecs_commands_total",
                                                                {"command": "x", "outcome": "ok"}), 1.0)

    def test_instances_independent(self) -> None:
        """Two instances count separately (no shared or global state), and creating a second one does not clash."""
        other = EcaMetrics()
        self.metrics.command_done("start", "ok", 0.1)
        self.metrics.command_done("start", "ok", 0.1)
        other.command_done("start", "ok", 0.1)
        key = (("command", "start"), ("outcome", "ok"))
        self.assertEqual(values(self.metrics, "ecs_commands_total")[key], 2.0)
        self.assertEqual(values(other, "ecs_commands_total")[key], 1.0)
        other.observe_streams(lambda: 7)
        self.assertEqual(values(self.metrics, "ecs_event_streams_open"), {(): 0.0})

    def test_help_and_types(self) -> None:
        """Every ECS family is there from the start, with its type and a help text."""
        families = parse(self.metrics)
        expected = {
            "ecs_partition_state": "gauge",
            "ecs_partition_connected": "gauge",
            "ecs_systems": "gauge",
            "ecs_systems_connected": "gauge",
            "ecs_event_streams_open": "gauge",
            "ecs_commands": "counter",
            "ecs_command_duration_seconds": "histogram",
            "ecs_configure_stage_duration_seconds": "histogram",
            "ecs_heartbeat_losses": "counter",
            "ecs_agent_restarts": "counter",
            "ecs_runs_failed": "counter",
        }
        for name, kind in expected.items():
            self.assertIn(name, families)
            family = families[name]
            self.assertEqual(family.type, kind, name)
            self.assertTrue(family.documentation, name)

    def test_process_metrics(self) -> None:
        """The process, platform and garbage-collector metrics are exposed."""
        families = parse(self.metrics)
        for name in ("process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
                     "process_start_time_seconds", "python_info", "python_gc_collections"):
            self.assertIn(name, families)
        self.assertGreater(values(self.metrics, "process_resident_memory_bytes")[()], 0)

    def test_commands(self) -> None:
        """A command counts by command and outcome, and its latency falls into the histogram's buckets."""
        self.metrics.command_done("configure", "ok", 12.5)
        self.metrics.command_done("configure", "conflict", 0.002)
        self.metrics.command_done("start", "ok", 0.04)
        counts = values(self.metrics, "ecs_commands_total")
        self.assertEqual(counts, {
            (("command", "configure"), ("outcome", "ok")): 1.0,
            (("command", "configure"), ("outcome", "conflict")): 1.0,
            (("command", "start"), ("outcome", "ok")): 1.0,
        })
        sums = values(self.metrics, "ecs_command_duration_seconds_sum")
        self.assertAlmostEqual(sums[(("command", "configure"),)], 12.502)
        self.assertAlmostEqual(sums[(("command", "start"),)], 0.04)
        self.assertEqual(values(self.metrics, "ecs_command_duration_seconds_count")[(("command", "configure"),)], 2.0)
        buckets = values(self.metrics, "ecs_command_duration_seconds_bucket")
        self.assertEqual(buckets[(("command", "configure"), ("le", "0.005"))], 1.0)
        self.assertEqual(buckets[(("command", "configure"), ("le", "10.0"))], 1.0)
        self.assertEqual(buckets[(("command", "configure"), ("le", "30.0"))], 2.0)
        self.assertEqual(buckets[(("command", "configure"), ("le", "+Inf"))], 2.0)
        self.assertEqual(buckets[(("command", "start"), ("le", "0.05"))], 1.0)
        self.assertEqual(buckets[(("command", "start"), ("le", "0.025"))], 0.0)

    def test_negative_duration(self) -> None:
        """A negative duration (a clock set back) counts as 0, never lowers the sum."""
        self.metrics.command_done("stop", "ok", -3.0)
        self.assertEqual(values(self.metrics, "ecs_command_duration_seconds_sum")[(("command", "stop"),)], 0.0)

    def test_stages(self) -> None:
        """A configure stage's duration goes into the stage histogram, labelled by stage only."""
        self.metrics.stage_done("p1", "TFC", 0.3)
        self.metrics.stage_done("p2", "TFC", 40.0)
        self.metrics.stage_done("p1", "Detectors", 2.0)
        counts = values(self.metrics, "ecs_configure_stage_duration_seconds_count")
        self.assertEqual(counts, {(("stage", "TFC"),): 2.0, (("stage", "Detectors"),): 1.0})
        self.assertAlmostEqual(values(self.metrics, "ecs_configure_stage_duration_seconds_sum")[(("stage", "TFC"),)],
                               40.3)
        buckets = values(self.metrics, "ecs_configure_stage_duration_seconds_bucket")
        self.assertEqual(buckets[(("le", "0.5"), ("stage", "TFC"))], 1.0)
        self.assertEqual(buckets[(("le", "30.0"), ("stage", "TFC"))], 1.0)
        self.assertEqual(buckets[(("le", "60.0"), ("stage", "TFC"))], 2.0)

    def test_counters(self) -> None:
        """Heartbeat losses, agent restarts and failed runs count per partition or agent."""
        self.metrics.heartbeat_lost("p1")
        self.metrics.heartbeat_lost("p1")
        self.metrics.agent_restarted("pca:p1")
        self.metrics.agent_restarted("controller:TPC")
        self.metrics.agent_restarted("pca:p1")
        self.metrics.run_failed("p2")
        self.assertEqual(values(self.metrics, "ecs_heartbeat_losses_total"), {(("partition", "p1"),): 2.0})
        self.assertEqual(values(self.metrics, "ecs_agent_restarts_total"),
                         {(("agent", "pca:p1"),): 2.0, (("agent", "controller:TPC"),): 1.0})
        self.assertEqual(values(self.metrics, "ecs_runs_failed_total"), {(("partition", "p2"),): 1.0})

    def test_partitions(self) -> None:
        """The partition gauges come from the sample callable: state 1, connected, systems per state."""
        self.metrics.observe_partitions(lambda: [
            sample("p1", "QA_Active", True, {"Ready": 3, "Error": 1}, 4),
            sample("p2", "Idle", False, {}, 0),
        ])
        self.assertEqual(values(self.metrics, "ecs_partition_state"),
                         {(("partition", "p1"), ("state", "QA_Active")): 1.0,
                          (("partition", "p2"), ("state", "Idle")): 1.0})
        self.assertEqual(values(self.metrics, "ecs_partition_connected"),
                         {(("partition", "p1"),): 1.0, (("partition", "p2"),): 0.0})
        self.assertEqual(values(self.metrics, "ecs_systems"),
                         {(("partition", "p1"), ("state", "Ready")): 3.0,
                          (("partition", "p1"), ("state", "Error")): 1.0})
        self.assertEqual(values(self.metrics, "ecs_systems_connected"),
                         {(("partition", "p1"),): 4.0, (("partition", "p2"),): 0.0})

    def test_partitions_follow_sample(self) -> None:
        """Every scrape samples again: a changed state replaces the old series, a deleted partition disappears."""
        current = [sample("p1", "Idle"), sample("p2", "Idle")]
        self.metrics.observe_partitions(lambda: current)
        self.assertEqual(len(values(self.metrics, "ecs_partition_state")), 2)
        current[:] = [sample("p1", "Configuring_TFC", systems={"Configuring": 2}, connected_systems=2)]
        self.assertEqual(values(self.metrics, "ecs_partition_state"),
                         {(("partition", "p1"), ("state", "Configuring_TFC")): 1.0})
        self.assertEqual(values(self.metrics, "ecs_systems"), {(("partition", "p1"), ("state", "Configuring")): 2.0})
        self.assertEqual(values(self.metrics, "ecs_systems_connected"), {(("partition", "p1"),): 2.0})

    def test_partition_counters_start_at_zero(self) -> None:
        """Every sampled partition has its heartbeat-loss and failed-run counters at 0 before any event."""
        self.metrics.observe_partitions(lambda: [sample("p1"), sample("p2")])
        self.assertEqual(values(self.metrics, "ecs_heartbeat_losses_total"),
                         {(("partition", "p1"),): 0.0, (("partition", "p2"),): 0.0})
        self.assertEqual(values(self.metrics, "ecs_runs_failed_total"),
                         {(("partition", "p1"),): 0.0, (("partition", "p2"),): 0.0})

    def test_failing_sample(self) -> None:
        """A sample callable that raises is logged; the scrape still answers, without partition series."""
        def broken() -> list[PartitionSample]:
            raise RuntimeError("boom")

        self.metrics.observe_partitions(broken)
        self.metrics.command_done("start", "ok", 0.1)
        self.assertEqual(values(self.metrics, "ecs_partition_state"), {})
        self.assertEqual(len(values(self.metrics, "ecs_commands_total")), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_streams(self) -> None:
        """The open-streams gauge reads its callable at every scrape (0 before one is given)."""
        self.assertEqual(values(self.metrics, "ecs_event_streams_open"), {(): 0.0})
        open_streams = [3]
        self.metrics.observe_streams(lambda: open_streams[0])
        self.assertEqual(values(self.metrics, "ecs_event_streams_open"), {(): 3.0})
        open_streams[0] = 1
        self.assertEqual(values(self.metrics, "ecs_event_streams_open"), {(): 1.0})

    def test_alarms(self) -> None:
        """Active alarms by severity (every severity, read at scrape time); raised alarms by kind from 0."""
        self.assertEqual(values(self.metrics, "ecs_alarms_active"),
                         {(("severity", s),): 0.0 for s in ("warning", "error", "critical")})
        active = {"error": 2}
        self.metrics.observe_alarms(lambda: active)
        self.assertEqual(values(self.metrics, "ecs_alarms_active")[(("severity", "error"),)], 2.0)
        active["critical"] = 1
        self.assertEqual(values(self.metrics, "ecs_alarms_active")[(("severity", "critical"),)], 1.0)
        raised = values(self.metrics, "ecs_alarms_raised_total")
        self.assertEqual(len(raised), len(ALARM_KINDS))
        self.assertEqual(set(raised.values()), {0.0})
        self.metrics.alarm_raised("pca_lost")
        self.assertEqual(values(self.metrics, "ecs_alarms_raised_total")[(("kind", "pca_lost"),)], 1.0)

    def test_label_escaping(self) -> None:
        """Label values with quotes, backslashes and newlines come back intact."""
        name = 'odd "p"\\\n'
        self.metrics.heartbeat_lost(name)
        self.assertEqual(values(self.metrics, "ecs_heartbeat_losses_total"), {(("partition", name),): 1.0})

    def test_sample_frozen(self) -> None:
        """A partition sample is immutable."""
        s = sample()
        with self.assertRaises(AttributeError):
            s.state = "Error"  # type: ignore[misc]
