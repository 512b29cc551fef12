"""
Benchmark of the delay from a controller's state change to its event on
the ECA's C{GET /api/events} stream (issue 4; the goal: p99 at most 50 ms
with 1,000 detectors).

One script although it is over 400 lines: a benchmark driver read from top
to bottom (agents, load, measurement, report); the helpers it shares with
the other benchmarks are in C{bench/benchlib.py}.

Run from the repository root::

    .venv/bin/python bench/events.py [--detectors 1000] [--cycles 3]
        [--security curve|none] [--duration 0|SECONDS|shipped]
        [--profile DIR] [--keep] [--eca-read-batch K] [--pca-send-chunk K]
        [--clients N] [--zmq-subscribers N] [--timeline FILE]
        [--simhost-nice N] [--no-heap-freeze]

What it does, in a temporary directory:

1. writes the settings (C{security} as chosen: C{curve}, the shipped
   default, unless C{--security none}; the demo makes its keys) and a copy
   of the shipped C{etc/subsystems.yaml} whose simulated actions all take
   C{--duration} seconds per step (default 0: a detector goes
   Unconfigured -> Active while its configure request is handled, so all
   of them change in one burst; C{shipped} keeps the shipped durations);
2. starts the demo, C{twistd -n ecs-demo --detectors N} (partition C{demo}:
   STS MVD TOF TRD RICH, sim1..simN in one sim host, the four global
   systems), with C{ECS_ADMIN_PASSWORD} in its environment, through
   C{bench/events_agent.py}, which also runs every agent the demo launches
   (global systems, detectors, sim host, PCA) through itself: separate real
   processes, as the demo starts them, each of which takes timestamps where
   a state change passes (see there);
3. waits for the web address, logs in (C{kind: api}, bearer token), polls
   C{GET /api/partitions/demo} until all N + 9 systems are connected and
   the partition is Idle, waits until every controller host has sent its
   first C{states} report to the PCA (its link to the PCA is up; the
   message counters of C{bench/configure_agent.py}, read by SIGUSR2), takes
   control, and opens C{GET
   /api/events?partition=demo} (a raw C{twisted.web.client.Agent}
   response; each chunk is timestamped with C{time.time()} on arrival);
4. C{--cycles} times: C{configure {"tag": "demo", "auto": true}} until the
   stream shows the partition QA_Active and every system Active, then
   C{abort} until Idle and every system Unconfigured (each phase followed
   by a short quiet period so that late events still count);
5. asks every process for its timestamps (a signal), and pairs each
   system state event on the stream with the controller's state change it
   shows: for the event of system S in raw state R received at time T, the
   latest change of S to R at or before T that no earlier event showed.
   The delay is T minus the change's time, both C{time.time()} on one
   machine.  Changes overtaken by a later change of the same system before
   any event showed them (a sim host sends only the latest state of a
   system per reactor turn: with duration 0, Configuring_Step1 and _Step2
   are overtaken by Active in the same turn) are counted as C{superseded},
   not as delays; a change never shown although nothing overtook it would
   be a lost update (C{unshown}, must be 0).

C{--clients N} opens N event streams at once, like N consoles: the first
drives the phases and gives the stage split; the others only timestamp
each chunk on arrival and are parsed after the run (so that this process
spends its time reading).  The result's C{clients} gives p50/p99 per
phase over the events of all N clients (each paired as above) and the
worst client's p99 per phase.  C{--zmq-subscribers N} is the ZeroMQ
fan-out case: N subscribers of the PCA's PUB socket (the product's
C{ZmqNode}, the demo's client keys), paired the same way
(C{zmq_fan_out}).

The same pairing, with the points the processes stamped on the way
(C{pca_fold}: the PCA folds the status into its view, from the reply to
its command or from the host's batched C{states} notification, whichever
comes first; C{pca_pub}: it publishes the record (stages it: the PCA
sends a reactor turn's records as one C{states} message when the turn
ends, every 100, or once the first has waited 2 ms; see
L{ecs.net.pubsub.PublisherCore.stage}); C{pca_sent}: the staged records
go to the PUB socket; C{eca_in}: the ECA's link gets the event (an
entry of a batch: after the batch's earlier entries were applied);
C{eca_emit}: the ECA hands it to the event streams;
C{eca_tcp_send}: the ECA's next write of web bytes to the kernel), splits
each delay into stages (C{stages_ms}, and C{tail_stages_ms}: the mean of
each stage over the slowest 1 % of events), which says what dominates.

Start-up: a natural start of the demo can stall with part of the sim
host's detectors never connected (a race in the product: the sim host
registers its detectors before it serves them, and a PCA whose status
query was refused meanwhile never asks again).  After C{--stall} seconds
without progress the benchmark kills that demo and starts a fresh one in
which the PCA is launched only once every controller process serves
(C{--start-attempts}, C{--ordered-start}; reported in the result as
C{stalled_starts} and C{pca_started_after_controllers}).  The measured
path is not affected by the order of the start.

What-if experiments, not product settings (C{bench/events_agent.py}
patches the running process): C{--eca-read-batch K} lets the ECA read at
most K ZeroMQ messages per reactor turn (shipped 256), C{--pca-send-chunk
K} makes the PCA send at most K commands to systems per reactor turn (the
shipped PCA sends one per system in a single loop).

C{--timeline FILE} writes every counted event as one JSON line (phase,
system, state, fire time from the phase's start, delay and each stage in
ms): where in a burst the slow events are, and in which stage.
C{--simhost-nice N} runs the sim host at nice N (what-if: front-end hosts
do not share the ECA's cores).  C{--no-heap-freeze} leaves every agent's
start-up heap in the garbage collector's full scans (what-if: the agents
as before L{agents._heap}).  Each process records its collector pauses;
the result's C{gc_pauses} gives, per process, the pauses during the
counted phases (how many, the longest, the sum, and the full scans).
This process's own collector is off during each phase (collected just
before it): a full scan of its growing event lists stopped its readers for
20-37 ms, which was counted as delay of the product.

C{--profile DIR} adds one more (uncounted) cycle during which the ECA,
the PCA and the sim host run cProfile (SIGUSR1, as in
C{bench/configure.py}); stats go to DIR and the top functions to stderr.

Progress goes to stderr; the last line on stdout is one JSON object::

    {"detectors": N, "events": .., "p50_ms": .., "p99_ms": .., "max_ms": .., ...}

Every process (the demo and each agent it launched, known by the pid
files the wrapper writes) is killed by pid at the end, also on failure or
Ctrl-C; each also dies with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from benchlib import BenchError, LogFollower, cpu_ticks, exists, free_ports, on_gc_pause, say, sleep  # noqa: E402

WRAPPER = HERE / "events_agent.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTITION = "demo"
TAG = "demo"
#: Systems of the demo besides the N simulated detectors.
DEMO_SYSTEMS = 9
PASSWORD = "bench-events-admin-1"
DUMP_SIGNAL = signal.SIGRTMIN + 2
#: Where a state change passes, in order (see bench/events_agent.py).
STAGES = ("fire", "pca_fold", "pca_pub", "pca_sent", "eca_in", "eca_emit", "eca_tcp_send", "sse")
STAGE_NAMES = {
    ("fire", "pca_fold"): "controller_to_pca",
    ("pca_fold", "pca_pub"): "pca_fold_to_published",
    ("pca_pub", "pca_sent"): "pca_staged_to_sent",
    ("pca_sent", "eca_in"): "pca_sent_to_eca_received",
    ("eca_in", "eca_emit"): "eca_received_to_emitted",
    ("eca_emit", "eca_tcp_send"): "eca_emitted_to_tcp_send",
    ("eca_tcp_send", "sse"): "eca_tcp_send_to_client_received",
}


class StartStalled(BenchError):
    """The demo's systems stopped connecting before all of them were."""


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary_ms(values: list[float]) -> dict[str, Any]:
    """count, p50, p90, p99, max and mean of delays in seconds, in ms."""
    v = sorted(values)
    if not v:
        return {"count": 0}
    return {
        "count": len(v),
        "p50_ms": round(percentile(v, 50) * 1000, 2),
        "p90_ms": round(percentile(v, 90) * 1000, 2),
        "p99_ms": round(percentile(v, 99) * 1000, 2),
        "max_ms": round(v[-1] * 1000, 2),
        "mean_ms": round(statistics.fmean(v) * 1000, 2),
    }


# ---------------------------------------------------------------------------
# Processes


class Demo(LogFollower):
    """The demo process tree: started by us, every pid killed by us."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "demo.log")
        self.tmp = tmp
        self.out = tmp / "points"
        self.out.mkdir()
        self.pid: int | None = None
        self.ended: Any = None

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        from twisted.internet import defer, protocol, reactor

        demo = self

        class Proc(protocol.ProcessProtocol):
            def processEnded(self, reason: Any) -> None:
                demo.exit_code = getattr(reason.value, "exitCode", None)
                demo.ended.callback(None)

        self.exit_code: int | None = None
        self.ended = defer.Deferred()
        with open(self.log_path, "wb") as log_file:  # the child keeps its own copy of the descriptor
            transport = reactor.spawnProcess(  # type: ignore[attr-defined]
                Proc(), sys.executable,
                [sys.executable, str(WRAPPER), str(self.out), *argv],
                env=env, path=str(self.tmp),
                childFDs={0: "w", 1: log_file.fileno(), 2: log_file.fileno()},
            )
        self.pid = transport.pid

    @property
    def alive(self) -> bool:
        return self.ended is not None and not self.ended.called

    def processes(self) -> dict[int, str]:
        """pid -> plugin of every process started through the wrapper."""
        found = {}
        for path in self.out.glob("pid.*"):
            try:
                found[int(path.name.split(".", 1)[1])] = path.read_text().strip()
            except (OSError, ValueError):
                pass
        return found

    def tail(self, count: int = 30) -> str:
        return super().tail(count)

    def check(self) -> None:
        if not self.alive:
            raise BenchError(f"the demo exited ({self.exit_code}):\n{self.tail()}")

    async def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.new_lines():
                match = regex.search(line)
                if match:
                    return match
                if "CRITICAL" in line or "Traceback" in line or "#critical]" in line:
                    say(f"demo: {line}")
            self.check()
            if time.monotonic() > deadline:
                raise BenchError(f"no line matching {pattern!r} in {timeout:.0f} s:\n{self.tail()}")
            await sleep(0.05)

    async def signal_all(self, pids: list[int], sig: int, marker: str, timeout: float = 60) -> list[Path]:
        """Send C{sig} to C{pids}; wait for the marker file each one writes."""
        for pid in pids:
            (self.out / marker.format(pid=pid)).unlink(missing_ok=True)
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        paths = [self.out / marker.format(pid=pid) for pid in pids]
        while not all(p.exists() for p in paths):
            self.check()
            if time.monotonic() > deadline:
                raise BenchError(f"no {marker} from {[p.name for p in paths if not p.exists()]}")
            await sleep(0.02)
        return paths

    def kill_all(self, grace: float = 5.0) -> None:
        """SIGTERM the demo (it stops its agents), then SIGKILL every pid left (synchronous)."""
        pids = set(self.processes())
        if self.pid is not None:
            pids.add(self.pid)
            if exists(self.pid):
                try:
                    os.kill(self.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        living = [p for p in pids if exists(p)]
        while living and time.monotonic() < deadline:
            time.sleep(0.05)
            living = [p for p in living if exists(p)]
        for pid in living:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while living and time.monotonic() < deadline:
            time.sleep(0.05)
            living = [p for p in living if exists(p)]
        for pid in living:
            say(f"warning: pid {pid} survived SIGKILL")


# ---------------------------------------------------------------------------
# HTTP


class Api:
    """JSON calls with a bearer token (treq)."""

    def __init__(self, base: str) -> None:
        from twisted.internet import reactor
        from twisted.web.client import HTTPConnectionPool

        self.base = base
        self.token: str | None = None
        self.pool = HTTPConnectionPool(reactor, persistent=True)

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
        import treq

        headers = {"Content-Type": ["application/json"]}
        if self.token:
            headers["Authorization"] = [f"Bearer {self.token}"]
        data = json.dumps(body).encode() if body is not None else None
        response = await treq.request(method, self.base + path, headers=headers, data=data,
                                      pool=self.pool, timeout=timeout)
        content = await response.content()
        try:
            parsed = json.loads(content) if content else None
        except ValueError:
            parsed = content.decode("utf-8", "replace")
        return response.code, parsed

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        code, answer = await self.call(method, path, body)
        if code != 200:
            raise BenchError(f"{method} {path}: {code} {answer}")
        return answer


class Stream:
    """
    The C{/api/events} stream: every block timestamped on arrival, the
    systems' and the partition's states kept up to date, and waiters.
    """

    def __init__(self) -> None:
        from twisted.internet import defer

        self.system_events: list[tuple[float, str, str | None, int]] = []  # (t, system, raw state, id)
        self.types: Counter[str] = Counter()
        self.summary: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self.partition_state: str | None = None
        self.last_event = 0.0
        self.ended: defer.Deferred[Any] = defer.Deferred()
        self._buffer = b""
        self._waiter: tuple[Callable[[], bool], Any] | None = None
        #: extra clients keep (arrival time, bytes) and parse them in L{parse_raw}
        self.raw: list[tuple[float, bytes]] | None = None

    def parse_raw(self) -> None:
        """Parse what an extra client recorded (each block with its chunk's arrival time)."""
        raw, self.raw = self.raw or [], None
        for t, data in raw:
            self._buffer += data
            *blocks, self._buffer = self._buffer.split(b"\n\n")
            for block in blocks:
                self._block(t, block)

    def seed(self, details: dict[str, Any]) -> None:
        """Start from C{GET /api/partitions/demo}."""
        self.partition_state = details["state"]
        for system in details["systems"]:
            self._set(system["id"], system["state"])

    def _set(self, system: str, state: str) -> None:
        old = self.summary.get(system)
        if old is not None:
            self.counts[old] -= 1
        self.summary[system] = state
        self.counts[state] += 1

    def data_received(self, data: bytes) -> None:
        t = time.time()
        if self.raw is not None:
            # An extra client: timestamp now, parse after the run (keeps
            # this process's reactor free for the other clients' reads).
            self.raw.append((t, data))
            self.last_event = t
            return
        self._buffer += data
        *blocks, self._buffer = self._buffer.split(b"\n\n")
        for block in blocks:
            self._block(t, block)
        if blocks:
            self.last_event = t
            self._check()

    def _block(self, t: float, block: bytes) -> None:
        kind, payload, event_id = "message", None, -1
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                kind = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                payload = line[5:].strip()
            elif line.startswith(b"id:"):
                event_id = int(line[3:])
        if payload is None:
            return
        self.types[kind] += 1
        if kind != "state":
            return
        data = json.loads(payload)
        key = data.get("key")
        value = data.get("value")
        if not isinstance(value, dict):
            return
        if key == "partition":
            self.partition_state = value.get("state")
        elif isinstance(key, str) and key.startswith("system/"):
            system = key[7:]
            self.system_events.append((t, system, value.get("raw_state"), event_id))
            self._set(system, value.get("state"))

    def until(self, predicate: Callable[[], bool]) -> Any:
        from twisted.internet import defer

        d: defer.Deferred[None] = defer.Deferred()
        self._waiter = (predicate, d)
        self._check()
        return d

    def _check(self) -> None:
        if self._waiter is not None and self._waiter[0]():
            _, d = self._waiter
            self._waiter = None
            d.callback(None)

    def cancel(self) -> None:
        self._waiter = None

    def lost(self, why: str) -> None:
        """The stream ended: whoever waits fails."""
        if not self.ended.called:
            self.ended.callback(why)
        if self._waiter is not None:
            _, d = self._waiter
            self._waiter = None
            d.errback(BenchError(f"the event stream ended: {why}"))


class FanOut:
    """
    C{--zmq-subscribers N}: N subscribers of the PCA's PUB socket, the
    ZeroMQ fan-out case.  Raw pyzmq SUB sockets (CURVE with the demo's
    client keys, like any agent) read by one thread of this process that
    only timestamps each message on arrival; the envelopes are decoded
    after the run (so that N subscribers in one process cost little more
    than one: a console would be a process of its own).
    """

    def __init__(self) -> None:
        self.events: list[list[tuple[float, str, str | None, int]]] = []
        self._raw: list[list[tuple[float, bytes]]] = []
        self._sockets: list[Any] = []
        self._context: Any = None
        self._thread: Any = None
        self._stop = False

    async def open(self, var: Path, security: str, registry_port: int, count: int) -> None:
        import threading

        import zmq
        from twisted.internet import reactor

        from ecs.net.keys import load_keys
        from ecs.net.remote_registry import RemoteRegistry
        from ecs.net.zeromq import ZmqNode

        keys = load_keys(var / "keys", need_server_secret=False) if security == "curve" else None
        node = ZmqNode(reactor, "bench-lookup", keys=keys)
        try:
            registry = RemoteRegistry(node, f"tcp://127.0.0.1:{registry_port}", reactor, 1.0, 5.0)
            address = await registry.publisher_of("pca", PARTITION)
        finally:
            node.close()
        if not address:
            raise BenchError("the PCA's publisher is not registered")
        self._context = zmq.Context()
        for _ in range(count):
            socket = self._context.socket(zmq.SUB)
            socket.setsockopt(zmq.RCVHWM, 100_000)
            socket.setsockopt(zmq.LINGER, 0)
            if keys is not None:
                socket.curve_serverkey = keys.server_public
                socket.curve_publickey = keys.client_public
                socket.curve_secretkey = keys.client_secret
            # "state/": the PCA sends a turn's records as one "states" message on that topic.
            socket.setsockopt(zmq.SUBSCRIBE, b"state/")
            socket.connect(address)
            self._sockets.append(socket)
            self._raw.append([])
        self._thread = threading.Thread(target=self._read, name="bench-zmq-fan-out", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import zmq

        poller = zmq.Poller()
        for socket in self._sockets:
            poller.register(socket, zmq.POLLIN)
        index = {socket: i for i, socket in enumerate(self._sockets)}
        while not self._stop:
            for socket, _ in poller.poll(100):
                into = self._raw[index[socket]]
                while True:
                    try:
                        frames = socket.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    into.append((time.time(), frames[-1]))

    def close(self) -> None:
        """Stop the reader, close the sockets, decode what arrived into L{events}."""
        from ecs import protocol
        from ecs.net.pubsub import BATCH_TYPE, unpack_batch

        if self._thread is None:
            return
        self._stop = True
        self._thread.join()
        self._thread = None
        for socket in self._sockets:
            socket.close(linger=0)
        self._context.term()
        for raw in self._raw:
            mine: list[tuple[float, str, str | None, int]] = []
            for t, frame in raw:
                envelope = protocol.decode(frame)
                for event in unpack_batch(envelope) if envelope.type == BATCH_TYPE else [envelope]:
                    key, value = event.body.get("key"), event.body.get("value")
                    if isinstance(key, str) and key.startswith("system/") and isinstance(value, dict):
                        mine.append((t, key[7:], value.get("raw_state"), -1))
            self.events.append(mine)


async def open_stream(base: str, token: str, stream: Stream) -> None:
    """GET /api/events?partition=demo; the body goes to C{stream} as it arrives."""
    from twisted.internet import protocol, reactor
    from twisted.web.client import Agent
    from twisted.web.http_headers import Headers

    class Reader(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            stream.data_received(data)

        def connectionLost(self, reason: Any) -> None:
            stream.lost(reason.getErrorMessage())

    agent = Agent(reactor)
    response = await agent.request(
        b"GET", f"{base}/api/events?partition={PARTITION}".encode(),
        Headers({"Authorization": [f"Bearer {token}"], "Accept": ["text/event-stream"]}),
    )
    if response.code != 200:
        raise BenchError(f"GET /api/events: {response.code}")
    response.deliverBody(Reader())


# ---------------------------------------------------------------------------
# Pairing


def pair(
    fires: dict[str, list[tuple[float, str]]],
    events: list[tuple[float, str, str | None, int]],
) -> tuple[list[tuple[str, str, float, float]], Counter[str]]:
    """
    Pair each system event with the change it shows (see the module docstring).

    @param fires: system -> [(time, raw state)] sorted by time.
    @return: C{[(system, state, change time, event time)]} and counts of
        C{superseded}, C{unshown} changes and C{unmatched} events.
    """
    by_system: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
    for t, system, state, _ in events:
        by_system[system].append((t, state))
    pairs = []
    counts: Counter[str] = Counter()
    for system in set(fires) | set(by_system):
        changes = fires.get(system, [])
        next_change = 0
        for t_event, state in by_system.get(system, []):
            j, match = next_change, None
            while j < len(changes) and changes[j][0] <= t_event:
                if changes[j][1] == state:
                    match = j
                j += 1
            if match is None:
                counts["unmatched_events"] += 1
                continue
            counts["superseded"] += match - next_change
            pairs.append((system, state, changes[match][0], t_event))
            next_change = match + 1
        counts["unshown"] += len(changes) - next_change
    return pairs, counts


def stage_times(
    points: dict[tuple[str, str], list[tuple[float, str | None]]],
    system: str,
    state: str,
    t_fire: float,
    t_event: float,
) -> list[float] | None:
    """The time of each stage of one change (first point of that system and state after the previous stage)."""
    times = [t_fire]
    for stage in STAGES[1:-1]:
        if stage == "eca_tcp_send":
            # Not per system: the first send at or after the emit.
            series = points.get((stage, "*"))
            i = bisect.bisect_left(series, times[-1], key=lambda p: p[0]) if series else 0
            if not series or i == len(series) or series[i][0] > t_event:
                return None
            times.append(series[i][0])
            continue
        series = points.get((stage, system))
        if not series:
            return None
        i = bisect.bisect_left(series, times[-1], key=lambda p: p[0])
        while i < len(series) and series[i][1] != state:
            i += 1
        if i == len(series) or series[i][0] > t_event:
            return None
        times.append(series[i][0])
    times.append(t_event)
    return times


def learned_from(
    points: dict[tuple[str, str], list[tuple[float, str | None]]],
    system: str,
    state: str,
    t_fire: float,
    t_fold: float,
) -> str:
    """Whether the PCA folded the change from a C{states} notification or from a command's reply."""
    for t, s in points.get(("pca_in", system), []):
        if t_fire <= t <= t_fold and s == state:
            return "notification"
    return "reply"


# ---------------------------------------------------------------------------
# The run


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the demo and measure; start it again (fresh) if its start stalls (see L{StartStalled})."""
    stalls: list[str] = []
    for attempt in range(1, args.start_attempts + 1):
        # After a stalled start: the PCA only once every controller serves (events_agent.py).
        ordered = args.ordered_start or bool(stalls)
        try:
            result = await _attempt(args, ordered)
        except StartStalled as e:
            stalls.append(str(e).splitlines()[0])
            if attempt == args.start_attempts:
                raise
            say(f"start {attempt} stalled ({stalls[-1]}); starting a fresh demo")
            continue
        result["start_attempts"] = attempt
        result["stalled_starts"] = stalls
        result["pca_started_after_controllers"] = ordered
        return result
    raise AssertionError("unreachable")


async def _attempt(args: argparse.Namespace, ordered: bool) -> dict[str, Any]:
    from twisted.internet import reactor

    tmp = Path(tempfile.mkdtemp(prefix="ecs-bench-events-"))
    demo = Demo(tmp)
    done: list[bool] = []

    def clean_up() -> None:
        """Kill every process (by pid), remove the directory; once, also on Ctrl-C."""
        if done:
            return
        done.append(True)
        say("stopping the demo and its agents")
        demo.kill_all()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    trigger = reactor.addSystemEventTrigger("before", "shutdown", clean_up)  # type: ignore[attr-defined]
    try:
        return await _run(args, tmp, demo, ordered)
    finally:
        shutting_down = bool(done)  # clean_up already ran from the trigger (Ctrl-C, SIGTERM)
        clean_up()
        if not shutting_down:
            reactor.removeSystemEventTrigger(trigger)  # type: ignore[attr-defined]


def write_documents(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    import yaml

    settings = tmp / "ecs.yaml"
    # Block style: the demo appends a "registry:" block to this text.
    settings.write_text(f"security: {args.security}\nlog_level: info\n")
    subsystems = yaml.safe_load((ROOT / "etc" / "subsystems.yaml").read_text())
    if args.duration != "shipped":
        for group in ("detector_types", "global_systems"):
            for entry in subsystems[group].values():
                entry["action"]["duration"] = float(args.duration)
    # The state tables are looked up beside this file first, then in the shipped fsm/.
    path = tmp / "subsystems.yaml"
    path.write_text(yaml.safe_dump(subsystems, sort_keys=False))
    return settings, path


async def _run(args: argparse.Namespace, tmp: Path, demo: Demo, ordered: bool) -> dict[str, Any]:
    from twisted.internet import reactor

    n = args.detectors
    total = n + DEMO_SYSTEMS
    settings, subsystems = write_documents(args, tmp)
    web_port, registry_port = free_ports(2)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update({"PYTHONUNBUFFERED": "1", "ECS_BENCH_PARENT": str(os.getpid()), "ECS_ADMIN_PASSWORD": PASSWORD,
                "ECS_BENCH_ORDERED_START": "1" if ordered else "0",
                "ECS_BENCH_ECA_READ_BATCH": str(args.eca_read_batch or ""),
                "ECS_BENCH_PCA_SEND_CHUNK": str(args.pca_send_chunk or ""),
                "ECS_BENCH_PCA_BATCH_LIMIT": str(args.pca_batch_limit or ""),
                "ECS_BENCH_SIMHOST_NICE": str(args.simhost_nice or ""),
                "ECS_BENCH_NO_HEAP_FREEZE": "1" if args.no_heap_freeze else "0"})
    say(f"demo with {n} extra detectors ({total} systems), security {args.security}, "
        f"action duration {args.duration}, {args.cycles} cycle(s)"
        + (", PCA started once every controller serves" if ordered else "") + f"; in {tmp}")
    t_spawn = time.perf_counter()
    demo.start(
        ["-n", "--pidfile=", "ecs-demo", "--port", str(web_port), "--registry-port", str(registry_port),
         "--state-dir", str(tmp / "var"), "--detectors", str(n),
         "--config", str(settings), "--subsystems", str(subsystems)],
        env,
    )
    start_timeout = 120 + n / 20
    match = await demo.wait_for(r"ECS web: (http://\S+?)/?$", start_timeout)
    base = match.group(1).rstrip("/")
    say(f"web at {base} after {time.perf_counter() - t_spawn:.1f} s")

    api = Api(base)
    login = await api.ok("POST", "/api/login", {"username": "admin", "password": PASSWORD, "kind": "api"})
    api.token = login["token"]

    deadline = time.monotonic() + start_timeout
    last = ""
    progress = time.monotonic()
    while True:
        demo.check()
        code, details = await api.call("GET", f"/api/partitions/{PARTITION}")
        if code == 200:
            systems = details["systems"]
            connected = sum(1 for s in systems if s["connected"])
            status = f"{connected}/{total} systems connected, partition {details['state']}"
            all_there = len(systems) == total and connected == total
            if all_there and details["state"] == "Idle" and not details.get("operation"):
                break
        else:
            status = f"GET /api/partitions/{PARTITION}: {code}"
        if status != last:
            say(status)
            last = status
            progress = time.monotonic()
        if time.monotonic() - progress > args.stall:
            refused = sum(1 for line in demo.log_path.read_text(errors="replace").splitlines()
                          if "status query failed: unknown_target" in line)
            raise StartStalled(
                f"{status} for {args.stall:g} s; the PCA's status query was refused with unknown_target "
                f"{refused} times (the sim host registered its detectors before serving them, and the "
                f"PCA does not ask again: see the report of bench/events.py)\n{demo.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"not all systems connected in {start_timeout:.0f} s: {status}\n{demo.tail()}")
        await sleep(0.5)
    startup_s = time.perf_counter() - t_spawn
    processes = demo.processes()
    say(f"all {total} systems connected, Idle, {startup_s:.1f} s after start; processes: "
        + ", ".join(f"{plugin} {pid}" for pid, plugin in sorted(processes.items())))
    plugins = Counter(processes.values())
    if plugins["ecs-simhost"] != (1 if n else 0) or plugins["ecs-pca"] != 1 or plugins["ecs-demo"] != 1:
        raise BenchError(f"unexpected processes: {processes}")

    # Every controller host reports its states to the PCA once its own link
    # to the PCA is up (it looks the PCA up every heartbeat timeout): wait
    # for that, so that no start-up report falls into a measured phase and
    # the hosts' notifications are flowing (configure_agent.py's counters).
    controllers = [pid for pid, plugin in processes.items() if plugin in ("ecs-simhost", "ecs-detector", "ecs-global")]
    while True:
        paths = await demo.signal_all(controllers, signal.SIGUSR2, "counters.{pid}.json")
        missing = [processes[int(p.name.split(".")[1])] for p in paths
                   if not json.loads(p.read_text())["encoded"].get("notify:states")]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"no state report to the PCA from {missing}")
        await sleep(0.2)
    say(f"every controller host has reported to the PCA, {time.perf_counter() - t_spawn:.1f} s after start")

    await api.ok("POST", f"/api/partitions/{PARTITION}/control")
    stream = Stream()
    stream.seed(details)
    await open_stream(base, api.token, stream)
    # --clients N: N - 1 more consoles on the same stream (they only record;
    # the first one drives the phases).
    extra: list[Stream] = []
    for _ in range(args.clients - 1):
        other = Stream()
        other.raw = []
        await open_stream(base, api.token, other)
        extra.append(other)
    clients = [stream, *extra]
    fan_out = FanOut()
    if args.zmq_subscribers:
        await fan_out.open(tmp / "var", args.security, registry_port, args.zmq_subscribers)
        say(f"{args.zmq_subscribers} subscriber(s) of the PCA's PUB socket open")
    await sleep(0.5)  # the stream is subscribed once its headers arrived; let it settle
    say(f"control taken, {len(clients)} event stream(s) open")

    # -- cycles ------------------------------------------------------------
    phase_timeout = 60 + n / 20
    windows: list[tuple[str, int, float, float]] = []  # (phase, cycle, start, end); cycle -1: profiled
    phase_s: dict[str, list[float]] = {"configure": [], "abort": []}
    cpu: dict[str, list[float]] = defaultdict(list)
    names = {pid: (f"{plugin}" if Counter(processes.values())[plugin] == 1 else f"{plugin}:{pid}")
             for pid, plugin in processes.items()}
    names[os.getpid()] = "benchmark"
    own_pauses: list[tuple[float, int, float]] = []
    on_gc_pause(lambda start, generation, ms: own_pauses.append((start, generation, ms)))

    async def phase(name: str, cycle: int, command: str, body: dict[str, Any] | None,
                    done: Callable[[], bool]) -> None:
        # This process's own collector stays off while a phase is measured:
        # a full scan of its growing event lists (20-37 ms) delays every
        # arrival timestamp and was counted as the product's delay.
        gc.collect()
        gc.disable()
        try:
            await measured(name, cycle, command, body, done)
        finally:
            gc.enable()

    async def measured(name: str, cycle: int, command: str, body: dict[str, Any] | None,
                       done: Callable[[], bool]) -> None:
        ticks = {pid: cpu_ticks(pid) for pid in (*processes, os.getpid())}
        t0 = time.time()
        waiter = stream.until(done)
        try:
            await api.ok("POST", f"/api/partitions/{PARTITION}/{command}", body)
            waiter.addTimeout(phase_timeout, reactor)  # type: ignore[arg-type]
            await waiter
        except Exception as e:
            stream.cancel()
            raise BenchError(f"{name}: {e!r}; partition {stream.partition_state}, systems {dict(stream.counts)}\n"
                             f"{demo.tail()}") from None
        t_done = time.time()
        # Let late events arrive: quiet for a while (or 5 s at most).
        quiet_until = time.monotonic() + 5
        while (time.time() - max(c.last_event for c in clients) < args.quiet
               and time.monotonic() < quiet_until):
            await sleep(0.05)
        windows.append((name, cycle, t0, time.time()))
        if cycle >= 0:
            phase_s[name].append(t_done - t0)
            for pid, before in ticks.items():
                cpu[f"{name}:{names[pid]}"].append((cpu_ticks(pid) - before) / CLK_TCK)
        say(f"cycle {cycle + 1 if cycle >= 0 else '(profiled)'}: {name} {t_done - t0:.3f} s "
            f"(command -> partition {stream.partition_state} with every system on the stream)")

    def configured() -> bool:
        return stream.partition_state == "QA_Active" and stream.counts["Active"] == total

    def aborted() -> bool:
        return stream.partition_state == "Idle" and stream.counts["Unconfigured"] == total

    for cycle in range(args.cycles):
        await phase("configure", cycle, "configure", {"tag": TAG, "auto": True}, configured)
        await phase("abort", cycle, "abort", None, aborted)

    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
        profiled = [pid for pid, plugin in processes.items() if plugin in ("ecs-demo", "ecs-pca", "ecs-simhost")]
        await demo.signal_all(profiled, signal.SIGUSR1, "profile.{pid}.started")
        await phase("configure", -1, "configure", {"tag": TAG, "auto": True}, configured)
        await phase("abort", -1, "abort", None, aborted)
        before = set(demo.out.glob("profile.*.pstats"))
        for pid in profiled:
            os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while len(set(demo.out.glob("profile.*.pstats")) - before) < len(profiled):
            if time.monotonic() > deadline:
                raise BenchError("profilers did not answer")
            await sleep(0.05)
        await sleep(0.2)
        for path in set(demo.out.glob("profile.*.pstats")) - before:
            pid = int(path.name.split(".")[1])
            target = profile_dir / f"{processes[pid]}-n{n}.pstats"
            shutil.copy(path, target)
            say(f"profile of {processes[pid]} during a configure and an abort: {target}")
        print_profiles(profile_dir, n, args.top)

    # -- timestamps ----------------------------------------------------------
    paths = await demo.signal_all(list(processes), DUMP_SIGNAL, "points.{pid}.done")
    points: dict[tuple[str, str], list[tuple[float, str | None]]] = defaultdict(list)
    fires: dict[str, list[tuple[float, str]]] = defaultdict(list)
    pauses: dict[str, list[tuple[float, int, float]]] = defaultdict(list)
    for done_path in paths:
        data = json.loads(done_path.with_suffix(".json").read_text())
        for kind, t, system, state in data["points"]:
            if kind == "fire":
                fires[system].append((t, state))
            elif kind == "gc":
                generation, ms = state.split(":")
                name = data["plugin"] if data["plugin"] != "ecs-detector" else f"ecs-detector:{data['pid']}"
                pauses[name].append((t, int(generation), float(ms)))
            else:
                points[(kind, system)].append((t, state))
    for series in (*fires.values(), *points.values()):
        series.sort(key=lambda p: p[0])

    (tmp / "sse.json").write_text(json.dumps({"windows": windows, "events": stream.system_events}))
    pairs, counts = pair(fires, stream.system_events)
    result = analyse(args, n, pairs, counts, windows, points, stream)
    if extra:
        result["clients"] = analyse_clients(fires, clients, windows)
    fan_out.close()
    if fan_out.events:
        result["zmq_fan_out"] = analyse_series(fires, fan_out.events, windows)
        result["zmq_fan_out"]["method"] = ("delay = time.time() when a SUB socket of the PCA's PUB (pyzmq, "
                                           "a reader thread of this process) received the event - the change's time")
    losses = sum(1 for line in demo.log_path.read_text(errors="replace").splitlines()
                 if "no heartbeat answer" in line or "does not answer" in line)
    pauses["benchmark"] = own_pauses
    result["gc_pauses"] = gc_pauses(pauses, windows)
    result.update({
        "configure_s": round(statistics.median(phase_s["configure"]), 3),
        "abort_s": round(statistics.median(phase_s["abort"]), 3),
        "cpu_s_per_phase": {key: round(statistics.median(v), 3) for key, v in sorted(cpu.items())},
        "cpu_ms_per_phase_mean": {key: round(statistics.fmean(v) * 1000, 1) for key, v in sorted(cpu.items())
                                  if "ecs-detector" not in key},
        "startup_s": round(startup_s, 1),
        "heartbeat_losses": losses,
        "sse_events_by_type": dict(stream.types),
    })
    for client in clients:
        if client.ended.called:
            raise BenchError("an event stream ended during the run")
    return result


def gc_pauses(
    pauses: dict[str, list[tuple[float, int, float]]], windows: list[tuple[str, int, float, float]]
) -> dict[str, dict[str, float]]:
    """Per process, its collector pauses that began in a counted phase: count, longest, sum, full scans."""
    counted = [(start, end) for _, cycle, start, end in windows if cycle >= 0]
    out = {}
    for name, series in sorted(pauses.items()):
        inside = [(g, ms) for t, g, ms in series if any(start <= t <= end for start, end in counted)]
        if not inside:
            continue
        full = [ms for g, ms in inside if g == 2]
        out[name] = {"count": len(inside), "max_ms": round(max(ms for _, ms in inside), 1),
                     "total_ms": round(sum(ms for _, ms in inside), 1),
                     "full_scans": len(full), "full_max_ms": round(max(full, default=0.0), 1)}
    return out


def analyse(
    args: argparse.Namespace,
    n: int,
    pairs: list[tuple[str, str, float, float]],
    counts: Counter[str],
    windows: list[tuple[str, int, float, float]],
    points: dict[tuple[str, str], list[tuple[float, str | None]]],
    stream: Stream,
) -> dict[str, Any]:
    """Statistics of the counted phases (the profiled cycle is left out)."""
    counted = [(name, start, end) for name, cycle, start, end in windows if cycle >= 0]

    def phase_of(t: float) -> tuple[str, float] | None:
        for name, start, end in counted:
            if start <= t <= end:
                return name, start
        return None

    delays: list[float] = []
    by_phase: dict[str, list[float]] = defaultdict(list)
    by_state: dict[str, list[float]] = defaultdict(list)
    staged: list[tuple[float, list[float]]] = []
    via: Counter[str] = Counter()
    timeline = []
    for system, state, t_fire, t_event in pairs:
        found = phase_of(t_fire)
        if found is None:
            continue
        name, phase_start = found
        delay = t_event - t_fire
        delays.append(delay)
        by_phase[name].append(delay)
        by_state[state].append(delay)
        times = stage_times(points, system, state, t_fire, t_event)
        if times is not None:
            staged.append((delay, [b - a for a, b in itertools.pairwise(times)]))
            if args.timeline:
                timeline.append({"phase": name, "system": system, "state": state,
                                 "fire_ms": round((t_fire - phase_start) * 1000, 2),
                                 "delay_ms": round(delay * 1000, 2),
                                 **{key: round((b - a) * 1000, 2) for key, (a, b)
                                    in zip(STAGE_NAMES.values(), itertools.pairwise(times), strict=True)}})
            via[learned_from(points, system, state, t_fire, times[1])] += 1
    if not delays:
        raise BenchError("no state change was paired with an event")
    if args.timeline:
        with open(args.timeline, "w") as out:
            out.writelines(json.dumps(line) + "\n" for line in sorted(timeline, key=lambda e: e["fire_ms"]))
    overall = summary_ms(delays)
    stage_keys = list(STAGE_NAMES.values())
    stages = {key: summary_ms([s[i] for _, s in staged]) for i, key in enumerate(stage_keys)}
    staged.sort(key=lambda s: s[0])
    tail = staged[-max(1, len(staged) // 100):]
    tail_stages = {key: round(statistics.fmean(s[i] for _, s in tail) * 1000, 2) for i, key in enumerate(stage_keys)}
    return {
        "detectors": n,
        "events": overall["count"],
        "p50_ms": overall["p50_ms"],
        "p99_ms": overall["p99_ms"],
        "max_ms": overall["max_ms"],
        "p90_ms": overall["p90_ms"],
        "mean_ms": overall["mean_ms"],
        "target_p99_ms": 50,
        "cycles": args.cycles,
        "eca_read_batch": args.eca_read_batch,
        "pca_send_chunk": args.pca_send_chunk,
        "pca_batch_limit": args.pca_batch_limit,
        "heap_freeze": not args.no_heap_freeze,
        "security": args.security,
        "action_duration": args.duration,
        "by_phase": {name: summary_ms(v) for name, v in by_phase.items()},
        "by_state": {name: summary_ms(v) for name, v in sorted(by_state.items())},
        "stages_ms": stages,
        "staged_events": len(staged),
        "tail_stages_ms": {"events": len(tail), "mean_delay_ms": round(statistics.fmean(d for d, _ in tail) * 1000, 2),
                           **tail_stages},
        "pca_learned_from": dict(via),
        "superseded_changes": counts["superseded"],
        "unshown_changes": counts["unshown"],
        "unmatched_events": counts["unmatched_events"],
        "method": (
            "delay = time.time() when the benchmark's /api/events reader received the event of system S "
            "in raw state R - time.time() taken in the controller process just before SystemController._fire "
            "changed S to R (latest such change not shown before); all processes on one machine; "
            "configure (tag demo, auto) and abort of partition demo with every system, "
            "profiled cycle excluded"
        ),
    }


def analyse_clients(
    fires: dict[str, list[tuple[float, str]]],
    clients: list[Stream],
    windows: list[tuple[str, int, float, float]],
) -> dict[str, Any]:
    """
    Every client's delays (the same pairing as the first client's), per
    phase over all clients, and the worst client's p99 per phase.
    """
    for client in clients:
        client.parse_raw()
    return analyse_series(fires, [c.system_events for c in clients], windows)


def analyse_series(
    fires: dict[str, list[tuple[float, str]]],
    series: list[list[tuple[float, str, str | None, int]]],
    windows: list[tuple[str, int, float, float]],
) -> dict[str, Any]:
    """Pair each receiver's system events with the changes; p50/p99 per phase over all, worst receiver's p99."""
    counted = [(name, start, end) for name, cycle, start, end in windows if cycle >= 0]

    def phase_of(t: float) -> str | None:
        for name, start, end in counted:
            if start <= t <= end:
                return name
        return None

    all_phases: dict[str, list[float]] = defaultdict(list)
    worst: dict[str, float] = {}
    lost = 0
    for events in series:
        pairs, counts = pair(fires, events)
        lost += counts["unshown"]
        mine: dict[str, list[float]] = defaultdict(list)
        for _, _, t_fire, t_event in pairs:
            name = phase_of(t_fire)
            if name is not None:
                mine[name].append(t_event - t_fire)
        for name, delays in mine.items():
            all_phases[name].extend(delays)
            p99 = summary_ms(delays)["p99_ms"]
            worst[name] = max(worst.get(name, 0.0), p99)
    every = [d for v in all_phases.values() for d in v]
    overall = summary_ms(every)
    return {
        "count": len(series),
        "p50_ms": overall.get("p50_ms"),
        "p99_ms": overall.get("p99_ms"),
        "by_phase": {name: summary_ms(v) for name, v in sorted(all_phases.items())},
        "worst_client_p99_ms": worst,
        "unshown_changes": lost,
    }


def print_profiles(profile_dir: Path, n: int, top: int) -> None:
    """Top functions of each profile, by own time and by cumulative time, on stderr."""
    import pstats

    for path in sorted(profile_dir.glob(f"*-n{n}.pstats")):
        print(f"\n===== {path.name}: by own time =====", file=sys.stderr)
        stats = pstats.Stats(str(path), stream=sys.stderr)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        print(f"===== {path.name}: by cumulative time =====", file=sys.stderr)
        stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Controller state change -> /api/events delay, with the demo's real processes.",
        epilog="See the module docstring for the method.",
    )
    parser.add_argument("--detectors", type=int, default=1000, help="extra simulated detectors N (default 1000)")
    parser.add_argument("--cycles", type=int, default=3, help="configure/abort cycles (default 3)")
    parser.add_argument("--security", choices=("curve", "none"), default="curve",
                        help="ZeroMQ security of every agent (default curve, as shipped)")
    parser.add_argument("--duration", default="0",
                        help="seconds per simulated action step of every type (default 0), or 'shipped'")
    parser.add_argument("--quiet", type=float, default=0.3,
                        help="seconds without events that end a phase after its target state (default 0.3)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="one extra, uncounted cycle with cProfile in the ECA, PCA and sim host; stats to DIR")
    parser.add_argument("--top", type=int, default=25, help="functions printed per profile")
    parser.add_argument("--stall", type=float, default=30.0,
                        help="seconds without a change in the connected count that make a start stalled (default 30)")
    parser.add_argument("--start-attempts", type=int, default=2,
                        help="fresh starts of the demo tried when a start stalls (default 2); "
                        "starts after a stalled one launch the PCA only once every controller serves")
    parser.add_argument("--ordered-start", action="store_true",
                        help="launch the PCA only once every controller serves, from the first start")
    parser.add_argument("--eca-read-batch", type=int, default=None, metavar="K",
                        help="what-if: the ECA process reads at most K ZeroMQ messages per reactor turn "
                        "(ecs.net.zeromq.MAX_READ_BATCH, shipped 256); not a product setting")
    parser.add_argument("--pca-send-chunk", type=int, default=None, metavar="K",
                        help="what-if: the PCA sends at most K commands to systems per reactor turn "
                        "(the shipped PCA sends one per system in one loop); not a product setting")
    parser.add_argument("--pca-batch-limit", type=int, default=None, metavar="K",
                        help="what-if: the most state records one message of the PCA carries "
                        "(ecs.net.pubsub.PublisherCore.batch_limit, shipped 100; 1: one message per record, "
                        "as before batching); not a product setting")
    parser.add_argument("--clients", type=int, default=1, metavar="N",
                        help="N event-stream clients open at once, like N consoles (default 1); "
                        "the result's 'clients' gives p50/p99 per phase over all of them")
    parser.add_argument("--zmq-subscribers", type=int, default=0, metavar="N",
                        help="N subscribers of the PCA's PUB socket in this process (the ZeroMQ fan-out case); "
                        "the result's 'zmq_fan_out' gives p50/p99 per phase over all of them")
    parser.add_argument("--simhost-nice", type=int, default=None, metavar="N",
                        help="what-if: the sim host runs at nice N (front-end hosts do not share the ECA's cores)")
    parser.add_argument("--no-heap-freeze", action="store_true",
                        help="what-if: the agents do not freeze their start-up heap (agents._heap), so the "
                        "garbage collector's full scans visit it")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, timestamps)")
    parser.add_argument("--timeline", metavar="FILE", default=None,
                        help="write every counted event as a JSON line: phase, fire time from the phase's start, "
                             "delay and stage durations (ms)")
    args = parser.parse_args()
    if args.detectors < 0 or args.cycles < 1 or args.start_attempts < 1 or args.clients < 1:
        parser.error("--detectors must be at least 0, --cycles, --start-attempts and --clients at least 1")
    if args.duration != "shipped":
        try:
            if float(args.duration) < 0:
                raise ValueError
        except ValueError:
            parser.error("--duration must be a number of seconds (>= 0) or 'shipped'")

    from twisted.internet import defer, task

    async def body(reactor: Any) -> None:
        finished: list[bool] = []

        def interrupted() -> None:
            """The reactor stopped (Ctrl-C, SIGTERM) before the result: exit non-zero."""
            if not finished:
                say("interrupted: no result")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)

        reactor.addSystemEventTrigger("after", "shutdown", interrupted)
        try:
            result = await run(args)
        except BenchError as e:
            say(f"FAILED: {e}")
            raise SystemExit(1) from None
        finally:
            finished.append(True)
        print(json.dumps(result), flush=True)

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))  # exits


if __name__ == "__main__":
    main()
