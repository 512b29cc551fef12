"""
Benchmark of a partition's configure, start, stop and abort with real agent
processes on loopback (issue 3, "Performance").

One script although it is over 400 lines: a benchmark driver read from top
to bottom (agents, scenario, measurement, report); what it shares with the
in-memory variant is in C{bench/configure_common.py}, and with the other
benchmarks in C{bench/benchlib.py}.

Run from the repository root::

    .venv/bin/python bench/configure.py --detectors N [--simhosts K]
        [--security none|curve] [--repeat R]

What it does, in a temporary directory:

1. writes C{subsystems.yaml} (detector type C{BENCH} with
   C{detector-2step.yaml}, the four global systems with C{global.yaml} /
   C{global-recording.yaml}, every action simulated with duration 0), an
   inventory (partition C{bench} with a fixed PCA endpoint, detectors
   C{D1..DN} spread over K sim hosts, K = ceil(N/2500) by default, each sim
   host on its own fixed loopback port, the global systems on one port), a
   configurations file (one configuration per system, tag C{bench}) and the
   agent settings (C{security: none}, or C{curve} with keys made by
   C{ecs keys init});
2. starts, with C{reactor.spawnProcess}, C{twistd -n ecs-global --id all},
   the K C{twistd -n ecs-simhost} and C{twistd -n ecs-pca --id bench},
   each through C{bench/configure_agent.py}, which puts the process in its
   own process group, counts the messages it receives and sends, and runs
   twistd's own C{run()} in that process (see there).  Every process is
   killed by its pid (its group) at the end, also on failure;
3. waits for each agent's "serving" log line, then polls the PCA's
   C{snapshot} (in pages) until every system is connected and the
   partition is Idle, and until every controller host has reported its
   states to the PCA (its link is up);
4. measures the PCA's CPU share over C{--idle-seconds} (10) while all
   systems are connected and idle: only heartbeats (from
   C{/proc/<pid>/stat}, utime + stime);
5. R times: C{configure {"tag": "bench", "auto": true}} until the
   published partition state is QA_Active, C{start} until Recording,
   C{stop} until QA_Active, C{abort} until Idle (then, not timed in
   C{abort_s}, until every system is Unconfigured: C{abort_settled_s}).
   The times run from sending the request (a L{ZmqNode} client) to
   receiving the partition's state event (a SUB on the PCA's publisher,
   address from its "publishing at" log line).  Medians are reported.

Message counting (C{messages_per_detector}): every agent process counts,
by C{kind:type}, the messages it decodes (receives).  Just before each
configure and once the counts stop changing after QA_Active, the benchmark
reads the counters of every agent (SIGUSR2 writes them to a file).  The
difference, summed over the PCA, the sim hosts and the global systems, is
every request, reply and notification exchanged between the PCA and the
controllers during the configure; heartbeats (time-driven, not
configure-driven) and the benchmark's own command to the PCA are left out.
C{events_per_detector} is, separately, the number of events the PCA
published during the configure (state, log, progress): what each
subscriber that follows the whole partition (the ECA, a GUI) receives in
addition.  C{--memory-check} cross-checks with the same partition in one
process on the in-memory transport (C{MemoryNetwork.delivered}).

C{--profile DIR} adds one more (untimed) configure during which the PCA and
the sim hosts run cProfile (toggled by SIGUSR1); the stats are written to
DIR and the top functions printed to stderr.

Progress goes to stderr; the last line on stdout is one JSON object::

    {"detectors": N, "configure_s": .., "start_s": .., "stop_s": ..,
     "abort_s": .., "messages_per_detector": .., "pca_cpu_idle_pct": .., ...}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import configure_common as common  # noqa: E402
from benchlib import BenchError, LogFollower, cpu_ticks, exists, free_ports, say, sleep  # noqa: E402

BIN = Path(sys.executable).parent
AGENT = HERE / "configure_agent.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Request types only the benchmark sends to the PCA (never a controller).
BENCH_TO_PCA = {"configure", "start", "stop", "abort", "snapshot", "status"}
HEARTBEAT = "heartbeat"


# ---------------------------------------------------------------------------
# Agent processes


def _agent_protocol():  # type: ignore[no-untyped-def]
    from twisted.internet import defer, protocol

    class AgentProcess(protocol.ProcessProtocol, LogFollower):
        """One agent: output goes straight to a log file; we only watch its exit."""

        def __init__(self, name: str, log_path: Path) -> None:
            self.name = name
            self.log_path = log_path
            self.pid: int | None = None
            self.exit_code: int | None = None
            self.ended: defer.Deferred[int | None] = defer.Deferred()
            LogFollower.__init__(self, log_path)

        def connectionMade(self) -> None:
            self.pid = self.transport.pid  # type: ignore[union-attr]

        def processEnded(self, reason: Any) -> None:
            self.exit_code = getattr(reason.value, "exitCode", None)
            self.ended.callback(self.exit_code)

        @property
        def alive(self) -> bool:
            return not self.ended.called

    return AgentProcess


class Agents:
    """The agent processes of the benchmark, started and always killed by pid."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.all: list[Any] = []
        self.counters_dir = tmp / "counters"
        self.counters_dir.mkdir()

    def spawn(self, name: str, twistd_args: list[str]) -> Any:
        from twisted.internet import reactor

        AgentProcess = _agent_protocol()
        log_path = self.tmp / f"{name}.log"
        agent = AgentProcess(name, log_path)
        argv = [sys.executable, str(AGENT), str(self.counters_dir), "-n", "--pidfile=", *twistd_args]
        with open(log_path, "wb") as log_file:  # the child keeps its own copy of the descriptor
            reactor.spawnProcess(  # type: ignore[attr-defined]
                agent,
                sys.executable,
                argv,
                env=self.env,
                path=str(self.tmp),
                childFDs={0: "w", 1: log_file.fileno(), 2: log_file.fileno()},
            )
        self.all.append(agent)
        return agent

    async def wait_for(self, agent: Any, pattern: str, timeout: float) -> re.Match[str]:
        """The first log line of C{agent} matching C{pattern}, read from its log file."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in agent.new_lines():
                match = regex.search(line)
                if match:
                    return match
                if "CRITICAL" in line or "Traceback" in line:
                    say(f"{agent.name}: {line}")
            if not agent.alive:
                raise BenchError(f"{agent.name} exited ({agent.exit_code}) before {pattern!r}:\n{agent.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{agent.name}: no line matching {pattern!r} in {timeout:.0f} s:\n{agent.tail()}")
            await sleep(0.05)

    def check_alive(self) -> None:
        for agent in self.all:
            if not agent.alive:
                raise BenchError(f"{agent.name} exited ({agent.exit_code}):\n{agent.tail()}")

    async def counters(self, agents: list[Any] | None = None) -> dict[str, dict[str, Any]]:
        """Every agent's message counters (SIGUSR2 makes it write them)."""
        agents = self.all if agents is None else agents
        paths = {}
        for agent in agents:
            path = self.counters_dir / f"counters.{agent.pid}.json"
            path.unlink(missing_ok=True)
            paths[agent.name] = path
            os.kill(agent.pid, signal.SIGUSR2)
        result: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 30
        while len(result) < len(paths):
            for name, path in paths.items():
                if name not in result and path.exists():
                    result[name] = json.loads(path.read_text())
            if len(result) < len(paths):
                if time.monotonic() > deadline:
                    raise BenchError(f"no counters from {sorted(set(paths) - set(result))}")
                self.check_alive()
                await sleep(0.01)
        return result

    async def toggle_profile(self, agents: list[Any], start: bool) -> list[Path]:
        """Start (or stop and collect) cProfile in C{agents} (SIGUSR1)."""
        before = {a.pid: set(self.counters_dir.glob(f"profile.{a.pid}.*.pstats")) for a in agents}
        for agent in agents:
            os.kill(agent.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 120
        written: list[Path] = []
        for agent in agents:
            while True:
                if start and (self.counters_dir / f"profile.{agent.pid}.started").exists():
                    break
                if not start:
                    done = sorted(self.counters_dir.glob(f"profile.{agent.pid}.*.done"))
                    pstats = self.counters_dir.glob(f"profile.{agent.pid}.*.pstats")
                    new = [p for p in pstats if p not in before[agent.pid]]
                    if done and new:
                        written.extend(new)
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"{agent.name}: profiler did not answer")
                await sleep(0.02)
        return written

    def kill_all(self, grace: float = 3.0) -> None:
        """SIGTERM each agent's process group, SIGKILL what is left after C{grace} (synchronous)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            living = [a for a in self.all if a.pid is not None and exists(a.pid)]
            for agent in living:
                _signal_group(agent.pid, sig)
            deadline = time.monotonic() + grace
            while living and time.monotonic() < deadline:
                living = [a for a in living if exists(a.pid)]
                if living:
                    time.sleep(0.05)
            if not living:
                return
        for agent in self.all:
            if agent.pid is not None and exists(agent.pid):
                say(f"warning: {agent.name} (pid {agent.pid}) survived SIGKILL")


def _signal_group(pid: int, sig: int) -> None:
    """Signal the group led by C{pid} (the agent made it), else the pid alone."""
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:
        pass
    except PermissionError:
        pass
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------
# Following the PCA


class Follower:
    """The partition's state from the PCA's published events."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.ticks = 0
        self.events: Counter[str] = Counter()
        self.errors: list[str] = []
        self.logs: list[tuple[float, str, str]] = []
        self._waiter: tuple[set[str], Any] | None = None

    def received(self, envelope: Any) -> None:
        from time import perf_counter

        now = perf_counter()
        self.events[envelope.type] += 1
        if envelope.type == "tick":
            self.ticks += 1
            return
        body = envelope.body
        if envelope.type == "state" and body.get("key") == "partition":
            self.state = body["value"]["state"]
            if self._waiter is not None and self.state in self._waiter[0]:
                _states, d = self._waiter
                self._waiter = None
                d.callback((now, self.state))
        elif envelope.type == "log":
            level, message = body.get("level", "info"), str(body.get("message", ""))
            self.logs.append((now, level, message))
            if level in ("error", "critical"):
                self.errors.append(message)
                if len(self.errors) <= 5:
                    say(f"PCA error log: {message}")
                elif len(self.errors) == 6:
                    say("(more PCA error logs: counted, not shown)")
                if self._waiter is not None:
                    _, d = self._waiter
                    self._waiter = None
                    d.errback(BenchError(f"PCA logged an error: {message}"))

    def expect(self, *states: str) -> Any:
        from twisted.internet import defer

        d: Any = defer.Deferred()
        self._waiter = (set(states), d)
        return d

    def cancel(self) -> None:
        self._waiter = None


def _with_timeout(d: Any, seconds: float, what: str) -> Any:
    from twisted.internet import defer, reactor

    def timed_out(failure: Any) -> Any:
        if failure.check(defer.TimeoutError, defer.CancelledError):
            raise BenchError(f"{what}: not reached within {seconds:.0f} s")
        return failure

    d.addTimeout(seconds, reactor)
    d.addErrback(timed_out)
    return d


async def snapshot(client: Any) -> dict[str, Any]:
    """The PCA's whole state table, page by page."""
    entries: dict[str, Any] = {}
    after = None
    while True:
        body: dict[str, Any] = {"limit": 2000}
        if after is not None:
            body["after"] = after
        page = await client.request(common.PARTITION, "snapshot", body, timeout=30)
        entries.update({k: v["value"] for k, v in page["entries"].items()})
        after = page.get("next")
        if after is None:
            return entries


def message_counts(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], pca: str) -> dict[str, Any]:
    """Messages between the agents in a window, from the counters of each agent."""
    received: Counter[str] = Counter()
    published: Counter[str] = Counter()
    for name, data in after.items():
        old = before.get(name, {"received": {}, "encoded": {}})
        for key, count in data["received"].items():
            kind, type_ = key.split(":", 1)
            diff = count - old["received"].get(key, 0)
            if not diff or type_ == HEARTBEAT or kind == "event":
                continue
            if name == pca and kind == "request" and type_ in BENCH_TO_PCA:
                continue  # the benchmark's own commands
            received[key] += diff
        if name == pca:
            for key, count in data["encoded"].items():
                kind, type_ = key.split(":", 1)
                if kind == "event" and type_ != "tick":
                    published[key] += count - old["encoded"].get(key, 0)
    return {"between_agents": sum(received.values()), "by_type": dict(received),
            "events": sum(published.values()), "events_by_type": dict(published)}


def _quiet(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """No non-heartbeat message moved between two counter readings."""
    def total(snap: dict[str, Any]) -> int:
        return sum(
            c
            for data in snap.values()
            for key, c in (*data["received"].items(), *data["encoded"].items())
            if not key.endswith(":" + HEARTBEAT) and key != "event:tick"
        )

    return total(before) == total(after)


# ---------------------------------------------------------------------------
# The run


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import reactor

    n = args.detectors
    k = args.simhosts or common.default_simhosts(n)
    k = max(1, min(k, n))
    tmp = Path(tempfile.mkdtemp(prefix="ecs-bench-configure-"))
    say(f"{n} detectors on {k} sim host(s), security {args.security}, {args.repeat} repeat(s); in {tmp}")
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["ECS_BENCH_PARENT"] = str(os.getpid())
    env.pop("PYTHONPATH", None)
    agents = Agents(tmp, env)
    done: list[bool] = []

    def clean_up() -> None:
        """Kill every agent (by pid), remove the directory; once, also on Ctrl-C."""
        if done:
            return
        done.append(True)
        say("stopping the agents")
        agents.kill_all()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    trigger = reactor.addSystemEventTrigger("before", "shutdown", clean_up)  # type: ignore[attr-defined]
    try:
        return await _run(args, n, k, tmp, agents)
    finally:
        clean_up()
        reactor.removeSystemEventTrigger(trigger)  # type: ignore[attr-defined]


async def _run(args: argparse.Namespace, n: int, k: int, tmp: Path, agents: Agents) -> dict[str, Any]:
    from twisted.internet import reactor

    from ecs.net.zeromq import ZmqNode

    # -- documents -------------------------------------------------------
    ports = free_ports(2 + k)
    pca_endpoint = f"tcp://127.0.0.1:{ports[0]}"
    global_endpoint = f"tcp://127.0.0.1:{ports[1]}"
    sim_endpoints = [f"tcp://127.0.0.1:{p}" for p in ports[2:]]
    (tmp / "subsystems.yaml").write_text(common.subsystems_yaml(args.command_timeout))
    common.write_json_yaml(common.inventory(n, sim_endpoints, pca_endpoint, global_endpoint), tmp / "inventory.yaml")
    common.write_json_yaml(common.configs(n), tmp / "configs.yaml")
    settings: dict[str, Any] = {"security": args.security, "state_dir": str(tmp), "log_level": "info"}
    if args.heartbeat_timeout is not None:
        settings["heartbeat"] = {"interval": 1.0, "timeout": args.heartbeat_timeout}
    (tmp / "ecs.yaml").write_text(json.dumps(settings) + "\n")
    if args.simhost_log_level != "info":
        (tmp / "ecs-simhost.yaml").write_text(json.dumps({**settings, "log_level": args.simhost_log_level}) + "\n")
    keys = None
    if args.security == "curve":
        subprocess.run([str(BIN / "ecs"), "keys", "init", "--dir", str(tmp / "keys")], check=True,
                       stdout=subprocess.DEVNULL, env=agents.env)
        from ecs.net.keys import load_keys

        keys = load_keys(tmp / "keys", identity="eca", enrol=True)  # the bench commands the PCA as the ECA
    common_args = ["--config", str(tmp / "ecs.yaml"), "--subsystems", str(tmp / "subsystems.yaml"),
                   "--inventory", str(tmp / "inventory.yaml"), "--state-dir", str(tmp)]
    sim_args = list(common_args)
    if args.simhost_log_level != "info":
        sim_args[1] = str(tmp / "ecs-simhost.yaml")

    # -- processes -------------------------------------------------------
    t_spawn = time.perf_counter()
    glob = agents.spawn("global", ["ecs-global", "--id", "all", "--bind", global_endpoint, *common_args])
    sims = []
    # split() makes fewer ranges than endpoints when there are fewer detectors than hosts
    for i, ((first, last), endpoint) in enumerate(zip(common.split(n, k), sim_endpoints, strict=False)):
        sims.append(agents.spawn(
            f"simhost{i}",
            ["ecs-simhost", "--ids", f"{first}-{last}", "--prefix", common.PREFIX, "--type",
             common.DETECTOR_TYPE, "--bind", endpoint, *sim_args],
        ))
    pca = agents.spawn("pca", ["ecs-pca", "--id", common.PARTITION, "--configs", str(tmp / "configs.yaml"),
                               "--bind", pca_endpoint, *common_args])
    controllers = [glob, *sims]
    start_timeout = 60 + n / 50
    serving = r"serving \d+ agent\(s\) at (tcp://\S+)"
    await agents.wait_for(glob, serving, start_timeout)
    if args.simhost_log_level in ("debug", "info"):
        for sim in sims:
            await agents.wait_for(sim, serving, start_timeout)
    match = await agents.wait_for(pca, r"PCA \S+ serving at (tcp://[\d.]+:\d+), publishing at (tcp://[\d.]+:\d+)",
                                  start_timeout)
    pca_address, pub_address = match.group(1), match.group(2)
    say(
        f"agents serving after {time.perf_counter() - t_spawn:.1f} s; "
        f"PCA at {pca_address}, publishing at {pub_address}"
    )

    node = ZmqNode(reactor, "bench", keys, request_timeout=30.0)
    try:
        return await _measure(args, n, k, agents, pca, controllers, sims, node, pca_address, pub_address, t_spawn)
    finally:
        await node.close()


async def _measure(
    args: argparse.Namespace, n: int, k: int, agents: Agents, pca: Any, controllers: list[Any],
    sims: list[Any], node: Any, pca_address: str, pub_address: str, t_spawn: float,
) -> dict[str, Any]:
    from time import perf_counter

    follower = Follower()
    prefixes = ["state/", "log/", "progress/"] if args.subscribe_all else ["state/partition", "log/", "progress/"]
    node.subscribe(pub_address, prefixes, follower.received)
    client = node.connect(pca_address)
    expected = n + len(common.GLOBALS)
    start_timeout = 60 + n / 50

    # -- everything connected --------------------------------------------
    deadline = time.monotonic() + start_timeout
    last = ""
    while True:
        agents.check_alive()
        try:
            entries = await snapshot(client)
        except Exception as e:  # the PCA may not answer yet
            entries, status = {}, f"snapshot failed: {e}"
        else:
            systems = [v for key, v in entries.items() if key.startswith("system/")]
            connected = sum(1 for v in systems if v.get("connected"))
            state = entries.get("partition", {}).get("state")
            status = f"{connected}/{expected} systems connected, partition {state}"
            if connected == expected and len(systems) == expected and state == "Idle":
                break
        if status != last:
            say(status)
            last = status
        if time.monotonic() > deadline:
            raise BenchError(f"not all systems connected in {start_timeout:.0f} s: {status}\n{pca.tail()}")
        await sleep(0.1 if n <= 1000 else 0.5)
    # Every controller host reports its states once its link to the PCA is
    # up: wait for that, so that no start-up report falls into a window.
    while True:
        counts = await agents.counters(controllers)
        missing = [name for name, data in counts.items() if not data["encoded"].get("notify:states")]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"no state report to the PCA from {missing}")
        await sleep(0.2)
    while follower.ticks == 0:  # our SUB is connected: the publisher's tick arrived
        if time.monotonic() > deadline:
            raise BenchError("no event from the PCA's publisher")
        await sleep(0.05)
    startup_s = time.perf_counter() - t_spawn
    say(f"all {expected} systems connected, partition Idle, {startup_s:.1f} s after start")

    # -- idle CPU --------------------------------------------------------
    await sleep(1.0)
    idle: dict[str, tuple[int, float]] = {a.name: (cpu_ticks(a.pid), perf_counter()) for a in [pca, *controllers]}
    await sleep(args.idle_seconds)
    idle_pct = {}
    for agent in [pca, *controllers]:
        ticks, t0 = idle[agent.name]
        idle_pct[agent.name] = (cpu_ticks(agent.pid) - ticks) / CLK_TCK / (perf_counter() - t0) * 100
    say(f"idle for {args.idle_seconds:g} s: PCA CPU {idle_pct['pca']:.2f} % of one core; "
        + ", ".join(f"{name} {pct:.2f} %" for name, pct in idle_pct.items() if name != "pca"))

    # -- the cycles ------------------------------------------------------
    wait = 30 + n / 100
    measured = ("configure_s", "start_s", "stop_s", "abort_s", "abort_settled_s")
    results: dict[str, list[float]] = {k_: [] for k_ in measured}
    messages: list[dict[str, Any]] = []
    cpu_configure: dict[str, list[float]] = {a.name: [] for a in [pca, *controllers]}
    reported: list[float] = []

    async def timed(command: str, body: dict[str, Any], *targets: str) -> float:
        waiter = _with_timeout(follower.expect(*targets), wait, f"{command} -> {'/'.join(targets)}")
        t0 = perf_counter()
        try:
            await client.request(common.PARTITION, command, body, timeout=wait)
        except Exception:
            follower.cancel()
            waiter.addErrback(lambda _: None)
            waiter.cancel()
            raise
        t1, _state = await waiter
        return t1 - t0

    async def cycle(r: int, profile_dir: Path | None = None) -> None:
        profiled = [pca, *sims]
        before = await agents.counters()
        ticks = {a.name: cpu_ticks(a.pid) for a in [pca, *controllers]}
        if profile_dir is not None:
            await agents.toggle_profile(profiled, start=True)
        n_logs = len(follower.logs)
        configure_s = await timed("configure", {"tag": common.TAG, "auto": True}, "QA_Active")
        if profile_dir is not None:
            for path in await agents.toggle_profile(profiled, start=False):
                name = next(a.name for a in profiled if f".{a.pid}." in path.name)
                target = profile_dir / f"{name}-n{n}.pstats"
                shutil.copy(path, target)
                say(f"profile of {name} during configure: {target}")
            say(f"profiled configure took {configure_s:.3f} s (not counted)")
        # Late state reports (batched notifications) still belong to the configure.
        after = await agents.counters()
        for _ in range(50):
            await sleep(0.1)
            later = await agents.counters()
            if _quiet(after, later):
                break
            after = later
        if profile_dir is None:
            for agent in [pca, *controllers]:
                cpu_configure[agent.name].append((after[agent.name]["cpu_ticks"] - ticks[agent.name]) / CLK_TCK)
            counts = message_counts(before, after, pca.name)
            messages.append(counts)
            results["configure_s"].append(configure_s)
            for _, _, message in follower.logs[n_logs:]:
                found = re.search(r"configured to \S+ in ([\d.]+) s", message)
                if found:
                    reported.append(float(found.group(1)))
        start_s = await timed("start", {}, "Recording")
        stop_s = await timed("stop", {}, "QA_Active")
        t0 = perf_counter()
        abort_s = await timed("abort", {}, "Idle")
        # abort_s ends at Idle, which the derived state reaches as soon as the
        # first stage (TFC) is unconfigured; wait for every system as well.
        settle_deadline = time.monotonic() + wait
        while True:
            entries = await snapshot(client)
            busy = [key for key, v in entries.items() if key.startswith("system/") and v.get("state") != "Unconfigured"]
            if not busy:
                break
            if time.monotonic() > settle_deadline:
                raise BenchError(f"after abort, {len(busy)} systems not Unconfigured, e.g. {busy[:5]}")
            await sleep(0.02)
        settled = perf_counter() - t0
        if profile_dir is None:
            results["start_s"].append(start_s)
            results["stop_s"].append(stop_s)
            results["abort_s"].append(abort_s)
            results["abort_settled_s"].append(settled)
            counts = messages[-1]
            say(
                f"cycle {r + 1}: configure {configure_s:.3f} s, start {start_s:.3f} s, stop {stop_s:.3f} s, "
                f"abort {abort_s:.3f} s (all Unconfigured {settled:.3f} s); configure messages "
                f"{counts['between_agents']} ({counts['between_agents'] / n:.3f}/detector: "
                + ", ".join(f"{key} {c}" for key, c in sorted(counts["by_type"].items()))
                + f"), events published {counts['events']} ({counts['events'] / n:.3f}/detector); CPU s "
                + ", ".join(f"{name} {cpu_configure[name][-1]:.2f}" for name in cpu_configure)
            )
        else:
            say(f"profiled cycle: start {start_s:.3f} s, stop {stop_s:.3f} s, abort {abort_s:.3f} s")

    for r in range(args.repeat):
        await cycle(r)
    if args.profile:
        profile_dir = Path(args.profile).resolve()
        profile_dir.mkdir(parents=True, exist_ok=True)
        await cycle(args.repeat, profile_dir)
        print_profiles(profile_dir, n, args.top)

    # -- result ------------------------------------------------------------
    final = await agents.counters()
    losses = heartbeat_losses(agents)
    if any(losses.values()):
        say(f"heartbeat losses during the run (\"no heartbeat answer ... connection lost\" log lines): {losses}")
    median = {key: statistics.median(values) for key, values in results.items()}
    mid = sorted(messages, key=lambda c: c["between_agents"])[len(messages) // 2]
    result: dict[str, Any] = {
        "detectors": n,
        "configure_s": round(median["configure_s"], 4),
        "start_s": round(median["start_s"], 4),
        "stop_s": round(median["stop_s"], 4),
        "abort_s": round(median["abort_s"], 4),
        "messages_per_detector": round(mid["between_agents"] / n, 3),
        "pca_cpu_idle_pct": round(idle_pct["pca"], 2),
        "simhosts": k,
        "security": args.security,
        "repeat": args.repeat,
        "configure_s_all": [round(v, 4) for v in results["configure_s"]],
        "pca_reported_configure_s": round(statistics.median(reported), 4) if reported else None,
        "abort_settled_s": round(median["abort_settled_s"], 4),
        "events_per_detector": round(mid["events"] / n, 3),
        "messages_by_type": mid["by_type"],
        "events_by_type": mid["events_by_type"],
        "pca_cpu_configure_s": round(statistics.median(cpu_configure["pca"]), 3),
        "simhosts_cpu_configure_s": round(sum(statistics.median(cpu_configure[s.name]) for s in sims), 3),
        "global_cpu_configure_s": round(statistics.median(cpu_configure[controllers[0].name]), 3),
        "simhosts_cpu_idle_pct": round(sum(idle_pct[s.name] for s in sims), 2),
        "pca_rss_mb": round(final[pca.name]["hwm_kb"] / 1024, 1),
        "simhost_rss_mb": round(max(final[s.name]["hwm_kb"] for s in sims) / 1024, 1),
        "startup_s": round(startup_s, 2),
        "heartbeat_losses": losses,
        "pca_error_logs": len(follower.errors),
        "subscribed": "state/ (all)" if args.subscribe_all else "state/partition only",
        "simhost_log_level": args.simhost_log_level,
        "heartbeat_timeout": args.heartbeat_timeout or 2.0,
        "method": (
            "times: request sent -> partition state event received (SUB), median of repeats; "
            "messages_per_detector: requests+replies+notifications between PCA and controllers "
            "during one configure (counted in every agent process on decode; heartbeats and the "
            "benchmark's own command excluded) / N; events_per_detector: events the PCA published "
            "meanwhile (each whole-partition subscriber receives them in addition); "
            "pca_cpu_idle_pct: /proc utime+stime over the idle window"
        ),
    }
    if args.memory_check:
        import configure_memory

        say("cross-check: the same partition in one process on the in-memory transport")
        memory = configure_memory.run(n, k, repeat=1, begin_logging=False)
        result.update({key: value for key, value in memory.items() if key != "memory_by_type"})
    return result


def heartbeat_losses(agents: Agents) -> dict[str, int]:
    """How often each agent declared a peer lost (its log), over the whole run."""
    counts = {}
    for agent in agents.all:
        count = 0
        with open(agent.log_path, "rb") as f:
            for line in f:
                if b"no heartbeat answer" in line:
                    count += 1
        counts[agent.name] = count
    return counts


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
        description="Configure/start/stop/abort benchmark of a partition with real agent processes.",
        epilog="See the module docstring for the method.",
    )
    parser.add_argument("--detectors", type=int, required=True, help="number of detectors N")
    parser.add_argument("--simhosts", type=int, default=None, help="sim hosts K (default ceil(N/2500))")
    parser.add_argument("--security", choices=("none", "curve"), default="none")
    parser.add_argument("--repeat", type=int, default=3, help="configure/start/stop/abort cycles (median)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle window for pca_cpu_idle_pct")
    parser.add_argument("--command-timeout", type=float, default=None,
                        help="command_timeout of every type (default: the shipped default, 5 s)")
    parser.add_argument("--heartbeat-timeout", type=float, default=None,
                        help="heartbeat timeout of every agent (default: the shipped 2 s); "
                        "raise it for --profile at large N, where profiling slows the agents")
    parser.add_argument("--subscribe-all", action="store_true",
                        help="the benchmark's SUB takes every state event (as an ECA would), not only the partition's")
    parser.add_argument("--simhost-log-level", default="info", choices=("debug", "info", "warn", "error"),
                        help="log_level of the sim hosts (default info, as shipped)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="one extra, untimed configure with cProfile in the PCA and sim hosts; stats to DIR")
    parser.add_argument("--top", type=int, default=25, help="functions printed per profile")
    parser.add_argument("--memory-check", action="store_true",
                        help="also count messages of one configure on the in-memory transport")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, files)")
    args = parser.parse_args()
    if args.detectors < 1 or args.repeat < 1:
        parser.error("--detectors and --repeat must be at least 1")

    from twisted.internet import defer, task

    async def body(reactor: Any) -> None:
        try:
            result = await run(args)
        except BenchError as e:
            say(f"FAILED: {e}")
            raise SystemExit(1) from None
        print(json.dumps(result), flush=True)

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))  # exits


if __name__ == "__main__":
    main()
