"""
The configure benchmark's partition assembled in ONE process on the
in-memory transport (L{ecs.net.memory}) with a clock (a heap-based
L{task.Clock}, see L{heap_clock}): the
same L{PartitionAgent}, the same L{ControllerHost}s (K sim hosts and one
global-systems host), the same documents as L{bench/configure.py}, and one
subscriber to everything the PCA publishes (as the ECA would be).

Used by C{bench/configure.py --memory-check} to cross-check the message
count (C{MemoryNetwork.delivered} counts every delivered message: requests,
replies, notifications and events to the one subscriber) and by
C{--memory-profile} to cProfile one configure without sockets: the time is
all the Python work of PCA + controllers + one subscriber on one core.

Run alone::

    .venv/bin/python bench/configure_memory.py --detectors 1000 [--profile out.pstats]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import configure_common as common  # noqa: E402

HEARTBEAT_TYPES = ("heartbeat",)


def heap_clock() -> Any:
    """
    A L{task.Clock} with a heap of calls.

    L{task.Clock} sorts its whole list of calls on every C{callLater} and
    removes cancelled calls with C{list.remove}: with one deadline timer per
    request in flight (10,000 during a configure of 10,000 detectors) that
    is quadratic, and it, not the agents, dominated the in-memory time
    beyond a few thousand systems.  Same interface, same order of calls.
    """
    import heapq
    import itertools

    from twisted.internet import base, task

    class HeapClock(task.Clock):
        def __init__(self) -> None:
            super().__init__()
            self._heap: list[tuple[float, int, Any]] = []
            self._order = itertools.count()

        def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any:
            call = base.DelayedCall(
                self.seconds() + delay, callable, args, kw, lambda c: None, self._push, seconds=self.seconds
            )
            self._push(call)
            return call

        def _push(self, call: Any) -> None:
            heapq.heappush(self._heap, (call.getTime(), next(self._order), call))

        def getDelayedCalls(self) -> list[Any]:
            return [c for t, _, c in self._heap if not (c.cancelled or c.called) and t == c.getTime()]

        def advance(self, amount: float) -> None:
            self.rightNow += amount
            heap = self._heap
            while heap and heap[0][0] <= self.seconds():
                when, _, call = heapq.heappop(heap)
                if call.cancelled or call.called or when != call.getTime():
                    continue  # cancelled, or reset (a newer entry exists)
                call.called = 1
                call.func(*call.args, **call.kw)

    return HeapClock()


def _begin_logging(level: str) -> None:
    """Format every agent log event at C{level} into /dev/null, as twistd would to its log."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    sink = open(os.devnull, "w")  # noqa: SIM115 - the log sink of the whole run, closed at exit
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sink), [predicate])],
        redirectStandardIO=False,
        discardBuffer=True,
    )


def run(
    detectors: int,
    simhosts: int,
    repeat: int = 1,
    profile: str | None = None,
    log_level: str = "info",
    begin_logging: bool = True,
    twisted_clock: bool = False,
) -> dict[str, Any]:
    """Configure the in-memory partition C{repeat} times; count and time it."""
    from twisted.internet import defer, task

    from agents.controller.host import ControllerHost
    from agents.pca.agent import PartitionAgent
    from ecs import protocol
    from ecs.config.settings import load_settings, load_subsystems
    from ecs.config.sources import FileConfigSource
    from ecs.fsm.sequence import load_sequence
    from ecs.net.memory import MemoryNetwork, MemoryNode
    from ecs.net.registry import InventoryRegistry

    if begin_logging:
        _begin_logging(log_level)
    tmp = Path(tempfile.mkdtemp(prefix="ecs-bench-mem-"))
    try:
        (tmp / "subsystems.yaml").write_text(common.subsystems_yaml())
        subsystems = load_subsystems(tmp / "subsystems.yaml")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    settings = load_settings(overrides={"security": "none", "log_level": log_level})
    sequence = load_sequence(None, list(subsystems.global_systems))
    sim_endpoints = [f"mem://sim{i}" for i in range(simhosts)]
    registry = InventoryRegistry(
        common.inventory(detectors, sim_endpoints, "mem://pca", "mem://globals")
    )
    source = FileConfigSource.from_dict(common.configs(detectors))

    clock = task.Clock() if twisted_clock else heap_clock()
    network = MemoryNetwork(clock)
    hosts = []
    globals_host = ControllerHost("globals", MemoryNode(network, "globals"), registry, settings, clock, bind="mem://globals")
    for name in common.GLOBALS:
        globals_host.add_global(name, subsystems.global_systems[name])
    hosts.append(globals_host)
    bench_type = subsystems.detector_types[common.DETECTOR_TYPE]
    ranges = common.split(detectors, simhosts)  # fewer ranges than hosts when detectors are few
    for i, ((first, last), endpoint) in enumerate(zip(ranges, sim_endpoints, strict=False)):
        host = ControllerHost(f"sim{i}", MemoryNode(network, f"sim{i}"), registry, settings, clock, bind=endpoint)
        for n in range(first, last + 1):
            host.add_detector(f"{common.PREFIX}{n}", bench_type)
        hosts.append(host)
    pca = PartitionAgent(
        common.PARTITION,
        MemoryNode(network, "pca:bench"),
        registry,
        settings,
        subsystems,
        sequence,
        source,
        clock,
        bind="mem://pca",
        state_file=None,
        writer=lambda write: defer.succeed(write()),
    )
    t_start = time.perf_counter()
    for host in hosts:
        host.startService()
    pca.startService()
    clock.advance(0)
    events: Counter[str] = Counter()

    def on_event(envelope: Any) -> None:
        events[envelope.type] += 1

    tester = MemoryNode(network, "bench")
    tester.subscribe(pca.publisher.address, ["state/", "log/", "progress/"], on_event)
    # As tests/pca_harness.py: let heartbeats go round in small steps until
    # the PCA sees every system and every host's link sees the PCA.
    for _ in range(int(4 * settings.heartbeat_interval / 0.125)):
        clock.advance(0.125)
        links = [link for host in hosts for link in host.links.values()]
        if all(link.heartbeat is not None and link.heartbeat.alive for link in links) and all(
            v.connected for v in pca.sequencer.partition.systems.values()
        ):
            break
    clock.advance(0)
    startup_s = time.perf_counter() - t_start
    partition = pca.sequencer.partition
    connected = sum(1 for v in partition.systems.values() if v.connected)
    if connected != detectors + len(common.GLOBALS) or partition.state != "Idle":
        raise RuntimeError(f"memory partition not ready: {connected} connected, state {partition.state}")

    received: Counter[str] = Counter()
    original_decode = protocol.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        envelope = original_decode(*args, **kwargs)
        received[f"{envelope.kind}:{envelope.type}"] += 1
        return envelope

    client = tester.connect("mem://pca")
    results: list[dict[str, Any]] = []
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    try:
        protocol.decode = counting_decode  # type: ignore[assignment]
        for r in range(repeat):
            received.clear()
            events.clear()
            before = network.delivered
            replies: list[Any] = []
            t0 = time.perf_counter()
            if profiler is not None and r == 0:
                profiler.enable()
            client.request(common.PARTITION, "configure", {"tag": common.TAG, "auto": True}).addBoth(replies.append)
            clock.advance(0)
            if profiler is not None and r == 0:
                profiler.disable()
            elapsed = time.perf_counter() - t0
            if partition.state != "QA_Active":
                raise RuntimeError(f"memory configure ended in {partition.state}: {replies}")
            delivered = network.delivered - before
            # What the bench itself sent and got (its configure request and
            # reply) is not partition traffic.
            between = sum(
                c
                for k, c in received.items()
                if k.split(":")[0] in ("request", "reply", "notify")
                and k.split(":")[1] not in HEARTBEAT_TYPES
            ) - 2
            results.append(
                {
                    "configure_s": elapsed,
                    "delivered": delivered,
                    "between_agents": between,
                    "events": sum(events.values()),
                    "by_type": dict(received),
                }
            )
            client.request(common.PARTITION, "abort", {})
            clock.advance(0)
            if partition.state != "Idle":
                raise RuntimeError(f"memory abort ended in {partition.state}")
    finally:
        protocol.decode = original_decode  # type: ignore[assignment]
        pca.stopService()
        for host in hosts:
            host.stopService()
        clock.advance(0)
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    best = min(results, key=lambda r: r["configure_s"])
    first = results[0]
    return {
        "memory_startup_s": round(startup_s, 3),
        "memory_configure_s": round(best["configure_s"], 4),
        "memory_delivered_per_detector": round(first["delivered"] / detectors, 3),
        "memory_messages_per_detector": round(first["between_agents"] / detectors, 3),
        "memory_events_per_detector": round(first["events"] / detectors, 3),
        "memory_by_type": first["by_type"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", type=int, default=1000)
    parser.add_argument("--simhosts", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", default=None, help="write a cProfile of the first configure here")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--top", type=int, default=30, help="functions to print from the profile")
    parser.add_argument("--twisted-clock", action="store_true",
                        help="use twisted's task.Clock (quadratic in pending timers) instead of a heap clock")
    args = parser.parse_args()
    simhosts = args.simhosts or common.default_simhosts(args.detectors)
    result = run(args.detectors, simhosts, args.repeat, args.profile, args.log_level,
                 twisted_clock=args.twisted_clock)
    if args.profile:
        import pstats

        stats = pstats.Stats(args.profile, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    print(json.dumps({"detectors": args.detectors, "simhosts": simhosts, **result}))


if __name__ == "__main__":
    main()
