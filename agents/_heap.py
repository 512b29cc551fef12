# -*- test-case-name: tests.test_heap -*-
"""
Short pauses of Python's cyclic garbage collector in a running agent.

CPython stops the whole process while its cyclic collector scans a
generation, and a full scan (generation 2) visits every tracked object
that has survived so far.  In an agent, most of those are what it built to
start: modules, classes and functions (Twisted, ZeroMQ, Klein, our own),
the state tables, the settings.  None of that ever becomes garbage, yet
every full scan visits it again.  Measured with C{bench/events.py} (1,000
detectors, 20 consoles, 2 cores): a full scan stopped the ECA for 37-68 ms
in the middle of an abort burst, and the PCA for 18-27 ms, so every state
change in flight waited for it; they were the slowest 1 % of the delays.
Frozen, a full scan of the ECA takes at most about 12 ms.

L{settle} collects once and then moves every surviving object to the
permanent generation (C{gc.freeze}), which later scans skip.  What the
agent makes afterwards (records, events, sessions) is collected as
before; frozen objects are still freed by reference counting when
released.  The one cost: a cycle of frozen objects that later becomes
garbage is never collected.  The collection before the freeze leaves
none of start-up's own garbage, so that is bounded by what existed at
start.

L{settle_when_running} runs it once the reactor runs: twistd starts the
services first, so by then everything is imported and composed.  The
twistd plugins (C{twisted/plugins/ecs_plugins.py}) call it for every agent
process; tests, which compose agents inside the test runner, do not.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Protocol

from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger

_log = Logger()


class Collector(Protocol):
    """The parts of the C{gc} module L{settle} uses."""

    def collect(self) -> int: ...

    def freeze(self) -> None: ...

    def get_freeze_count(self) -> int: ...


def settle(collector: Collector = gc, clock: Callable[[], float] = time.perf_counter) -> int:
    """
    Collect once, then freeze what survived (see the module docstring).

    @return: how many objects are frozen now.
    """
    started = clock()
    collector.collect()
    collector.freeze()
    frozen: int = collector.get_freeze_count()
    _log.info(
        "start-up heap frozen: {frozen} objects left out of the garbage collector's full scans ({ms:.0f} ms)",
        frozen=frozen,
        ms=(clock() - started) * 1000,
    )
    return frozen


def settle_when_running(reactor: IReactorCore, collector: Collector = gc) -> None:
    """Run L{settle} once C{reactor} runs (the services started)."""
    reactor.callWhenRunning(settle, collector)
