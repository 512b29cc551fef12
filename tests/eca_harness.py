# -*- test-case-name: tests.test_eca -*-
"""
A whole ECS in one process, for tests of the Experiment Control Agent.

L{ECAHarness} builds, on the in-memory transport driven by a
L{twisted.internet.task.Clock}:

  - a real SQLite L{Store} in a temporary directory, on the inline runner
    (each transaction runs at once: no thread), seeded like the demo
    (L{agents.eca.demo.seed_demo}: partition C{demo} with STS MVD TOF TRD
    RICH, their configurations, tags C{demo} and C{demo-alt}) plus a second
    partition C{p2} with detector C{STS2} (tag C{p2}) and an unassigned
    detector C{TOF2};
  - users of every role, created through the store (bcrypt at its lowest
    cost: these tests check behaviour, not hashing);
  - the real ECA (L{agents.eca.compose.build_eca}, started by an
    L{agents.eca.service.EcaCore}) serving the registry at
    C{inproc://registry} (the settings accept only ZeroMQ forms, so not
    C{mem://}; the memory network takes any name);
  - one L{ControllerHost} for every global system (as C{ecs-global --id
    all}) and one per detector (as C{ecs-detector}), each with its own
    L{RemoteRegistry}, simulated actions of L{STEP} seconds;
  - a L{PartitionAgent} per partition, with a L{RemoteRegistry};
  - a L{WebAPI} over the ECA, reached with L{StubTreq}.

Nothing sleeps and no real time passes: waiting advances the clock in
steps of L{TICK} (L{ECAHarness.wait_for}, L{ECAHarness.until}), giving the
real reactor one turn (no delay) per step so that two test coroutines
(a request and the test that releases it) can interleave.  A cleanup stops
every agent, then the ECA, then closes the store, and checks that the
clock has no delayed call left.  Timing: heartbeats every 0.1 s (lost
after 0.4 s), requests time out after L{SETTINGS}C{.request_timeout} = 1 s,
so a dead peer is found out quickly (in clock time).

(About 480 lines, kept whole: it is one fixture, and its parts, building,
waiting, HTTP and direct access to the agents, are what every ECA test uses
together.)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from agents.controller.host import ControllerHost
from agents.eca.compose import Eca, build_eca
from agents.eca.demo import seed_demo
from agents.eca.service import EcaCore
from agents.pca.agent import PartitionAgent
from ecs import users
from ecs.config.settings import load_settings
from ecs.config.sources import EmptyConfigSource
from ecs.fsm.sequence import Sequence, load_sequence
from ecs.net.memory import MemoryNetwork, MemoryNode
from ecs.net.remote_registry import RemoteRegistry
from ecs.net.transport import RequestError
from ecs.protocol import pca_node_name
from ecs.store import Store
from ecs.store.core import inline_runner
from ecs.web.api import WebAPI
from tests.http_helpers import _UNSET, Result, SSEReader, parse_events
from tests.pca_harness import subsystems_with
from tests.support.eca_parts import InlinePasswords

BASE = "http://ecs.test"
REGISTRY = "inproc://registry"
PASSWORD = "correct horse battery"
STEP = 0.05
"""Seconds per simulated action step."""
TICK = 0.01
"""Clock seconds per waiting step."""
EPOCH = 1_800_000_000.0
"""Where the clock starts (a plausible time, so stamps are not near zero)."""

SETTINGS = load_settings(
    overrides={
        "security": "none",
        "registry": {"address": REGISTRY},
        "heartbeat": {"interval": 0.1, "timeout": 0.4},
        # A dead peer is found out within a second (the default is 5 s).
        "request_timeout": 1.0,
    }
)

USERS = {
    "viewer": ["viewer"],
    "operator": ["operator"],
    "operator2": ["operator"],
    "expert": ["expert"],
    "admin": ["admin"],
}

DEMO_DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")
P2_DETECTORS = ("STS2",)
UNASSIGNED = ("TOF2",)
DETECTOR_TYPES = {"STS": "STS", "MVD": "MVD", "TOF": "TOF", "TRD": "TRD", "RICH": "RICH", "STS2": "STS", "TOF2": "TOF"}
GLOBALS = ("TFC", "DCS", "QA", "FLES")


class ECAHarness(TestCase):
    """
    The whole system, started in C{setUp} and stopped by a cleanup (L{stop_everything}).

    @cvar follow_real_time: whether the clock also follows the real
        reactor's time (advanced every L{TICK} real seconds), for tests that
        wait on real processes (an OpenSSH client, say) while the ECA must
        keep answering.  L{ClockedHarness} turns it off: only the test
        moves the clock.
    """

    timeout = 60
    follow_real_time = True

    # -- building ----------------------------------------------------------

    async def setUp(self) -> None:  # type: ignore[override]
        self.patch(users, "BCRYPT_ROUNDS", 4)
        self.clock = Clock()
        self.clock.advance(EPOCH)
        self._follower: task.LoopingCall | None = None
        self.network = MemoryNetwork(self.clock)
        self.subsystems = subsystems_with(STEP)
        self.sequence: Sequence = load_sequence(None, list(self.subsystems.global_systems))
        self.state_dir = Path(self.mktemp())
        self.hosts: dict[str, ControllerHost] = {}
        self.pcas: dict[str, PartitionAgent] = {}
        self._streams: list[tuple[StubTreq, SSEReader]] = []
        self.tokens: dict[str, str] = {}
        self.store = await Store.open(self.state_dir / "ecs.sqlite", self.clock, runner=inline_runner)
        # A cleanup, not tearDown: it also runs when setUp fails half-way.
        self.addCleanup(self.stop_everything)
        if self.follow_real_time:
            self._follow_from = reactor.seconds()
            self._follower = task.LoopingCall(self._follow)
            self._follower.start(TICK, now=False)
        await self.seed()
        await self.start_eca()
        self.tester = MemoryNode(self.network, "tester", request_timeout=SETTINGS.request_timeout)
        self.globals_host = self.make_host("globals")
        for system in GLOBALS:
            self.globals_host.add_global(system, self.subsystems.global_systems[system])
        for detector, type_name in DETECTOR_TYPES.items():
            host = self.make_host(detector)
            host.add_detector(detector, self.subsystems.detector_types[type_name])
        for host in self.hosts.values():
            host.startService()
        for host in self.hosts.values():
            await self.until(host.ready, what=f"host {host} ready")
        for partition in ("demo", "p2"):
            self.start_pca(partition)
        for pca in self.pcas.values():
            await self.until(pca.ready, what="PCA ready")
        for partition in self.pcas:
            await self.wait_idle(partition)

    async def seed(self) -> None:
        """The demo inventory, a second partition, an unassigned detector, the users."""
        await seed_demo(self.store, 0)
        await self.store.add_partition("p2")
        for detector in P2_DETECTORS:
            await self.store.add_detector(detector, DETECTOR_TYPES[detector], "p2")
        for detector in UNASSIGNED:
            await self.store.add_detector(detector, DETECTOR_TYPES[detector])
        await self.store.save_config("sts2-default", "STS2", {"threshold_adc": 10}, "seed")
        await self.store.save_config("tof2-default", "TOF2", {"threshold_mv": 150}, "seed")
        await self.store.save_tag(
            "p2", ["tfc-default", "dcs-default", "qa-default", "fles-default", "sts2-default"], "seed"
        )
        for name, roles in USERS.items():
            await self.store.add_user(name, users.hash_password(PASSWORD), roles)

    async def start_eca(self) -> None:
        """Start an ECA on the store and the network, with its web API (again after a restart)."""
        self.parts: Eca = build_eca(
            self.store,
            MemoryNode(self.network, "eca", request_timeout=SETTINGS.request_timeout),
            self.clock,
            SETTINGS,
            self.subsystems,
            self.sequence,
            InlinePasswords(),
        )
        self.core = EcaCore(self.parts)
        await self.until(defer.Deferred.fromCoroutine(self.core.open()), what="ECA open")
        self.core.startService()
        self.eca = self.parts.center
        # As the ECA's service wires it: streams take a turn's events in one call.
        self.api = WebAPI(self.eca, self.clock, subscribe_many=self.parts.events.subscribe_batch)
        self.parts.metrics.observe_streams(self.api.open_streams)
        self.stub = StubTreq(self.api.resource())

    def registry(self, node: MemoryNode) -> RemoteRegistry:
        """A registry client for one agent."""
        return RemoteRegistry(node, REGISTRY, self.clock, SETTINGS.heartbeat_interval, SETTINGS.heartbeat_timeout)

    def make_host(self, name: str) -> ControllerHost:
        """A controller host (not started) with its own node and registry client."""
        node = MemoryNode(self.network, name, request_timeout=SETTINGS.request_timeout)
        host = ControllerHost(name, node, self.registry(node), SETTINGS, self.clock)
        self.hosts[name] = host
        return host

    def start_pca(self, partition: str) -> PartitionAgent:
        """Start the PCA of C{partition}."""
        node = MemoryNode(self.network, pca_node_name(partition), request_timeout=SETTINGS.request_timeout)
        pca = PartitionAgent(
            partition,
            node,
            self.registry(node),
            SETTINGS,
            self.subsystems,
            self.sequence,
            EmptyConfigSource(),
            self.clock,
            state_file=None,
        )
        self.pcas[partition] = pca
        pca.startService()
        return pca

    def _follow(self) -> None:
        now = reactor.seconds()
        self.clock.advance(max(0.0, now - self._follow_from))
        self._follow_from = now

    async def stop_everything(self) -> None:
        """Hang up the event streams, stop the agents, then the ECA, then close the store."""
        for stub, reader in self._streams:
            reader.hang_up()
            stub.flush()
        api = getattr(self, "api", None)
        if api is not None:
            self.assertEqual(api.streams, frozenset(), "event streams left open")
        for pca in self.pcas.values():
            if pca.running:
                await self.until(pca.stopService(), what="PCA stopped")
        for host in self.hosts.values():
            if host.running:
                await self.until(host.stopService(), what="host stopped")
        if hasattr(self, "tester"):
            await self.until(self.tester.close(), what="tester closed")
        core = getattr(self, "core", None)
        if core is not None and core.running:
            await self.until(core.stopService(), what="ECA stopped")
        await self.store.close()
        if self._follower is not None and self._follower.running:
            self._follower.stop()
        self.clock.advance(0)  # what was scheduled for now
        self.assertEqual(self.clock.getDelayedCalls(), [], "delayed calls left on the clock")

    # -- waiting -------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        """
        Check C{predicate} (which may return an awaitable) after every
        L{TICK} of the clock until it is true, at most C{timeout} clock
        seconds; its value.
        """
        for _ in range(int(timeout / TICK) + 1):
            value = predicate()
            if inspect.isawaitable(value):
                value = await self.until(defer.ensureDeferred(value), timeout, what)  # type: ignore[arg-type]
            if value:
                return value
            await self.tick()
        self.fail(f"timed out after {timeout} s waiting for {what or predicate}")

    async def tick(self, seconds: float = TICK) -> None:
        """Advance the clock by C{seconds}, then give the real reactor one turn (no delay)."""
        self.clock.advance(seconds)
        await task.deferLater(reactor, 0, lambda: None)

    async def until(self, d: defer.Deferred[Any], timeout: float = 10.0, what: str = "") -> Any:
        """Advance the clock until C{d} fires (at most C{timeout} clock seconds); its result, or raise its failure."""
        results: list[Any] = []

        def got(result: Any) -> Any:
            results.append(result)
            return None if isinstance(result, Failure) else result

        d.addBoth(got)
        for _ in range(int(timeout / TICK) + 1):
            if results:
                break
            await self.tick()
        else:
            self.fail(f"timed out after {timeout} s waiting for {what or d}")
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    async def wait_idle(self, partition: str) -> None:
        """Until the PCA is settled and Idle with every system connected, and the ECA sees it so."""
        pca = self.pcas[partition]

        def ready() -> bool:
            s = pca.sequencer
            return (
                s is not None
                and s.settled
                and s.partition.state == self.sequence.idle
                and all(v.connected for v in s.partition.systems.values())
                and self.parts.partitions.get(partition).connected
                and self.eca.partition(partition)["state"] == self.sequence.idle
            )

        await self.wait_for(ready, what=f"{partition} Idle")

    async def wait_state(self, partition: str, state: str, timeout: float = 10.0) -> dict[str, Any]:
        """Until the ECA shows C{partition} in C{state} with no operation; its details."""

        def shown() -> dict[str, Any] | None:
            details = self.eca.partition(partition)
            return details if details["state"] == state and not details["operation"] else None

        return await self.wait_for(shown, timeout, f"{partition} in {state}")

    async def settle(self, seconds: float = 0.2) -> None:
        """Let the system run C{seconds} of clock time (for asserting that nothing happens)."""
        for _ in range(int(seconds / TICK)):
            await self.tick()

    # -- HTTP ------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = _UNSET,
        headers: dict[str, str] | None = None,
        stub: StubTreq | None = None,
        timeout: float = 10.0,
    ) -> Result:
        """One request through the web API, answered in full."""
        stub = stub or self.stub
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {}
        if json is not _UNSET:
            kwargs["json"] = json
        d = stub.request(method, BASE + path, headers=hdrs, **kwargs)
        response = await self._pumped(stub, d, timeout)
        body = await self._pumped(stub, response.content(), timeout)
        return Result(response.code, body, response)

    async def _pumped(self, stub: StubTreq, d: defer.Deferred[Any], timeout: float) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        for _ in range(int(timeout / TICK) + 1):
            stub.flush()
            if results:
                break
            await self.tick()
        else:
            self.fail("no answer from the web API")
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    async def login(self, name: str) -> str:
        """An API token of C{name} (through C{POST /api/login})."""
        if name not in self.tokens:
            r = await self.call("POST", "/api/login", json={"username": name, "password": PASSWORD, "kind": "api"})
            self.assertEqual(r.code, 200, r.body)
            self.tokens[name] = r.json["token"]
        return self.tokens[name]

    def assertError(self, result: Result, code: int, error: str | None = None, **details: Any) -> dict[str, Any]:
        """The result is a JSON error with this status (and code and details)."""
        self.assertEqual(result.code, code, result.body)
        body = result.json
        if error is not None:
            self.assertEqual(body["error"], error, body)
        self.assertIsInstance(body["reason"], str)
        for key, value in details.items():
            self.assertEqual(body[key], value, body)
        return body

    async def ok(self, method: str, path: str, user: str, body: Any = _UNSET) -> Any:
        """A request as C{user} that must succeed; its JSON answer."""
        r = await self.call(method, path, token=await self.login(user), json=body)
        self.assertEqual(r.code, 200, r.body)
        return r.json

    async def take(self, user: str, partition: str = "demo") -> None:
        """C{user} takes control of C{partition} (or of the ECS: C{"ecs"})."""
        path = "/api/control" if partition == "ecs" else f"/api/partitions/{partition}/control"
        await self.ok("POST", path, user)

    async def configure(self, user: str = "operator", partition: str = "demo", tag: str = "demo") -> None:
        """Configure C{partition} with C{tag}, auto, until its top active state."""
        await self.ok("POST", f"/api/partitions/{partition}/configure", user, {"tag": tag, "auto": True})
        await self.wait_state(partition, self.sequence.top_active)

    async def open_events(
        self, path: str = "/api/events", user: str = "viewer", headers: dict[str, str] | None = None
    ) -> tuple[StubTreq, SSEReader]:
        """Open an event stream as C{user} on a client of its own; the client and a reader."""
        stub = StubTreq(self.api.resource())
        hdrs = {"Authorization": f"Bearer {await self.login(user)}", **(headers or {})}
        response = await self._pumped(stub, stub.get(BASE + path, headers=hdrs, unbuffered=True), 10.0)
        self.assertEqual(response.code, 200)
        reader = SSEReader()
        response.deliverBody(reader)
        stub.flush()
        self._streams.append((stub, reader))
        return stub, reader

    async def events_until(
        self, stub: StubTreq, reader: SSEReader, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Until the events received satisfy C{predicate}; the events."""

        def check() -> list[dict[str, Any]] | None:
            stub.flush()
            events = reader.events()
            return events if predicate(events) else None

        return await self.wait_for(check, timeout, "events")

    def close_events(self, stub: StubTreq, reader: SSEReader) -> None:
        """Hang up a stream and let both sides see it."""
        reader.hang_up()
        stub.flush()

    # -- the agents, directly ----------------------------------------------------

    async def to_pca(self, partition: str, type: str, **body: Any) -> Any:
        """A request straight to a PCA (as another client would); its reply or the RequestError."""
        pca = self.pcas[partition]
        assert pca.address is not None
        try:
            return await self.until(self.tester.connect(pca.address).request(partition, type, body))
        except RequestError as e:
            return e

    def members(self, partition: str) -> set[str]:
        """The detectors the PCA of C{partition} has."""
        sequencer = self.pcas[partition].sequencer
        assert sequencer is not None
        return {v.id for v in sequencer.partition.systems.values() if v.kind == "detector"}

    def locked(self, partition: str) -> bool:
        """Whether the PCA of C{partition} is locked."""
        sequencer = self.pcas[partition].sequencer
        assert sequencer is not None
        return sequencer.locked

    def detector_partition(self, detector: str) -> str | None:
        """The partition the detector's own controller reports to."""
        return self.hosts[detector].controllers[(detector, None)].partition

    async def db_partition(self, detector: str) -> str | None:
        """The partition of C{detector} in the database."""
        row = await self.store.detector(detector)
        assert row is not None
        return row.partition


class ClockedHarness(ECAHarness):
    """The harness on its clock alone: no real time passes, only the test moves the clock."""

    follow_real_time = False


__all__ = [
    "BASE",
    "PASSWORD",
    "SETTINGS",
    "STEP",
    "TICK",
    "ClockedHarness",
    "ECAHarness",
    "Result",
    "SSEReader",
    "parse_events",
]
