# -*- test-case-name: tests.test_metrics -*-
"""
The ECA's Prometheus metrics (C{GET /metrics}), on C{prometheus_client}.

L{EcaMetrics} owns its own C{CollectorRegistry}: nothing goes to the
client's global registry, so two ECAs in one process (tests, the demo) never
share or clash.  The ECA calls the event methods (L{EcaMetrics.command_done},
L{EcaMetrics.stage_done}, ...) as things happen, and hands over two callables
read at scrape time (L{EcaMetrics.observe_partitions},
L{EcaMetrics.observe_streams}), so the gauges are never stale and a deleted
partition's series simply stop.  L{EcaMetrics.render} is the body of
C{/metrics}, served with L{CONTENT_TYPE}.

Metrics (names follow the Prometheus conventions: base units, C{_total}
for counters, C{_seconds} for durations)::

    ecs_partition_state{partition,state}          gauge, 1 for the current state
    ecs_partition_connected{partition}            gauge, 1 while the PCA answers
    ecs_systems{partition,state}                  gauge, systems per summary state
    ecs_systems_connected{partition}              gauge, systems that answer
    ecs_event_streams_open                        gauge, open SSE streams
    ecs_commands_total{command,outcome}           counter
    ecs_command_duration_seconds{command}         histogram (replaces
                                                  ecs_command_seconds_total: that
                                                  value is now its _sum)
    ecs_configure_stage_duration_seconds{stage}   histogram
    ecs_heartbeat_losses_total{partition}         counter
    ecs_agent_restarts_total{agent}               counter
    ecs_runs_failed_total{partition}              counter
    ecs_alarms_active{severity}                   gauge, active alarms (not cleared,
                                                  or not acknowledged), every severity
    ecs_alarms_raised_total{kind}                 counter, alarms raised (a new
                                                  alarm or a cleared one reopened),
                                                  every kind from 0
    process_*, python_info, python_gc_*           the client's process metrics

Label cardinality stays bounded: commands are the five partition commands,
outcomes the error codes of L{ecs.control}, stages the stages declared in
C{fsm/partition.yaml}, agents and partitions the configured ones.  The stage
histogram has no partition label on purpose: a histogram costs one series
per bucket, partitions are created and deleted at run time (a counter of a
deleted partition stays until the ECA restarts), and a stage's duration is
set by the systems of the stage, not by which partition ran it.

The partition counters (heartbeat losses, failed runs) start at 0 for every
partition the sample names, so that C{rate()} sees the first increment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import attrs
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from twisted.logger import Logger

from ecs.store.alarms import ALARM_KINDS, SEVERITIES

#: The content type of L{EcaMetrics.render}'s text.
CONTENT_TYPE: str = CONTENT_TYPE_LATEST

#: Command latency: a start or stop answers in milliseconds, a configure
#: may take minutes (up to its timeout).
COMMAND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: One configure stage: from a fraction of a second (simulated systems) to
#: the tens of minutes a stage's timeout allows.
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0)


@attrs.frozen
class PartitionSample:
    """One partition as the gauges see it at scrape time."""

    partition: str
    #: the partition's current state (C{ecs_partition_state})
    state: str
    #: whether its PCA answers
    connected: bool
    #: summary state -> number of systems in it
    systems: Mapping[str, int]
    #: systems that answer
    connected_systems: int


class _PartitionCollector:
    """The partition gauges, computed from a sample callable at scrape time."""

    _log = Logger()

    def __init__(self, touch: Callable[[str], None]) -> None:
        self._sample: Callable[[], Iterable[PartitionSample]] = tuple
        self._touch = touch

    def observe(self, sample: Callable[[], Iterable[PartitionSample]]) -> None:
        self._sample = sample

    def describe(self) -> Iterator[Metric]:
        """The families (without samples), so that the registry checks names without sampling."""
        return iter(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("ecs_partition_state", "1 for the current state of each partition",
                              labels=("partition", "state")),
            GaugeMetricFamily("ecs_partition_connected", "1 while the partition's PCA answers", labels=("partition",)),
            GaugeMetricFamily("ecs_systems", "Systems of a partition per summary state", labels=("partition", "state")),
            GaugeMetricFamily("ecs_systems_connected", "Systems of a partition that answer", labels=("partition",)),
        )

    def collect(self) -> Iterator[Metric]:
        """Sample the partitions now; a failing sample is logged and gives no partition series."""
        families = self._families()
        state, connected, systems, systems_connected = families
        try:
            samples = list(self._sample())
        except Exception:
            # A scrape must not fail as a whole (the process metrics and the
            # counters are still worth having): log the bug, skip the gauges.
            self._log.failure("sampling the partitions for /metrics")
            samples = []
        for s in samples:
            state.add_metric((s.partition, s.state), 1)
            connected.add_metric((s.partition,), 1 if s.connected else 0)
            for summary, count in sorted(s.systems.items()):
                systems.add_metric((s.partition, summary), count)
            systems_connected.add_metric((s.partition,), s.connected_systems)
            self._touch(s.partition)
        return iter(families)


class _AlarmCollector:
    """C{ecs_alarms_active{severity}}, counted at scrape time (every severity, 0 when none)."""

    def __init__(self) -> None:
        self.count: Callable[[], Mapping[str, int]] = dict

    def describe(self) -> Iterator[Metric]:
        """The family without samples."""
        return iter((self._family(),))

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("ecs_alarms_active", "Active alarms (not cleared, or not acknowledged) by severity",
                                 labels=("severity",))

    def collect(self) -> Iterator[Metric]:
        """The active alarms now."""
        family = self._family()
        counts = self.count()
        for severity in SEVERITIES:
            family.add_metric((severity,), counts.get(severity, 0))
        return iter((family,))


class EcaMetrics:
    """The ECA's metrics on a registry of their own; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Registered first: its collect() creates the 0-valued partition
        # counters before the counters below are collected (the registry
        # collects in registration order).
        self._partitions = _PartitionCollector(self._touch_partition)
        self.registry.register(self._partitions)
        self._streams = Gauge("ecs_event_streams_open", "Open event streams (GET /api/events)",
                              registry=self.registry)
        self._streams.set_function(lambda: 0)
        self._commands = Counter("ecs_commands", "Partition commands by outcome", ("command", "outcome"),
                                 registry=self.registry)
        self._command_seconds = Histogram("ecs_command_duration_seconds", "Time from a command's request to its answer",
                                          ("command",), buckets=COMMAND_BUCKETS, registry=self.registry)
        self._stage_seconds = Histogram("ecs_configure_stage_duration_seconds", "Time one stage of a configure took",
                                        ("stage",), buckets=STAGE_BUCKETS, registry=self.registry)
        self._heartbeat_losses = Counter("ecs_heartbeat_losses", "PCA heartbeat losses", ("partition",),
                                         registry=self.registry)
        self._agent_restarts = Counter("ecs_agent_restarts", "Agent restarts by the supervisor", ("agent",),
                                       registry=self.registry)
        self._runs_failed = Counter("ecs_runs_failed", "Runs that ended in failure", ("partition",),
                                    registry=self.registry)
        self._alarms_active = _AlarmCollector()
        self.registry.register(self._alarms_active)
        self._alarms_raised = Counter("ecs_alarms_raised", "Alarms raised, by kind", ("kind",),
                                      registry=self.registry)
        for kind in ALARM_KINDS:
            self._alarms_raised.labels(kind=kind)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def _touch_partition(self, partition: str) -> None:
        self._heartbeat_losses.labels(partition=partition)
        self._runs_failed.labels(partition=partition)

    # -- gauges read at scrape time -------------------------------------------------

    def observe_partitions(self, sample: Callable[[], Iterable[PartitionSample]]) -> None:
        """Read the partition gauges from C{sample()} at every scrape (replaces an earlier callable)."""
        self._partitions.observe(sample)

    def observe_alarms(self, count: Callable[[], Mapping[str, int]]) -> None:
        """Read C{ecs_alarms_active} from C{count()} (severity -> active alarms) at every scrape."""
        self._alarms_active.count = count

    def observe_streams(self, count: Callable[[], int]) -> None:
        """Read C{ecs_event_streams_open} from C{count()} at every scrape."""
        self._streams.set_function(lambda: float(count()))

    # -- events ---------------------------------------------------------------------

    def command_done(self, command: str, outcome: str, seconds: float) -> None:
        """A partition command answered (C{outcome}: ok or the error code) after C{seconds}."""
        self._commands.labels(command=command, outcome=outcome).inc()
        self._command_seconds.labels(command=command).observe(max(0.0, seconds))

    def stage_done(self, partition: str, stage: str, seconds: float) -> None:
        """One configure stage of C{partition} finished in C{seconds}
        (the partition is not a label: see the module docstring)."""
        self._stage_seconds.labels(stage=stage).observe(max(0.0, seconds))

    def heartbeat_lost(self, partition: str) -> None:
        """The PCA of C{partition} missed its heartbeats."""
        self._heartbeat_losses.labels(partition=partition).inc()

    def agent_restarted(self, agent: str) -> None:
        """The supervisor restarted C{agent} (C{<kind>:<id>})."""
        self._agent_restarts.labels(agent=agent).inc()

    def run_failed(self, partition: str) -> None:
        """A run of C{partition} ended in failure."""
        self._runs_failed.labels(partition=partition).inc()

    def alarm_raised(self, kind: str) -> None:
        """An alarm of C{kind} was raised (new, or reopened)."""
        self._alarms_raised.labels(kind=kind).inc()

    # -- exposition -----------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (serve it with L{CONTENT_TYPE})."""
        return generate_latest(self.registry)


__all__ = ["COMMAND_BUCKETS", "CONTENT_TYPE", "STAGE_BUCKETS", "EcaMetrics", "PartitionSample"]
