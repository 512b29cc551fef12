# -*- test-case-name: tests.test_faults -*-
"""
A seeded fault campaign against a real deployment on 127.0.0.1.

L{Deployment} runs C{twistd -n ecs-demo} (the ECA, the supervised partition
C{demo}: its PCA, five detector controllers, the global systems and a sim
host with a few detectors) plus a second partition C{p2} for detector
moves, all under one temporary state folder, and drives it through the HTTP
API only.  L{Campaign} chooses faults with C{random.Random(seed)}: an
operation (configure, start, stop, abort, a detector move) and, at a random
moment of it, a SIGKILL by pid (pids from C{GET /api/agents}, the ECA's own
from its spawn) of a detector controller, the sim host, the global
systems, a PCA, the ECA (started again at once on the same state folder,
adopting the running agents) or any supervised agent (the supervisor's
child).  After each fault it checks the invariants (L{invariants}) through
the API, the database file (read-only, in a thread) and the controllers'
own log files (each logs every transition it makes: the truth against
which the shown states are compared), then configures again and times the
way to QA_Active.

(About 670 lines, kept whole: the deployment, the invariant checks, the
fault loop and the report are one campaign, read together when a fault
fails; split, the checks would be a second module nobody else imports.)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import treq
from twisted.internet import defer, reactor, task, threads
from twisted.internet.error import ProcessExitedAlready

from tests.procs import call_api, free_port, pid_alive, spawn, tool
from tests.test_supervision_e2e import agent_processes, kill_marked

PASSWORD = "fault-admin-pass-1"
OPERATIONS = ("configure", "start", "stop", "abort", "move")
VICTIMS = ("detector", "simhost", "global", "pca", "eca", "supervised")
#: Seconds after the request within which the kill falls (about each operation's duration here).
KILL_WINDOW = {"configure": 4.5, "start": 1.0, "stop": 1.0, "abort": 1.5, "move": 0.08}
DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")
PARTITIONS = ("demo", "p2")
CONFIGURE_DEADLINE = 15.0
#: A run held after an interruption (the PCA restarted while it recorded) is
#: kept open for the ECA's grace (RUN_GRACE, 15 s, from when the PCA answers
#: again) in case recording resumes: the check waits that long for it.
HELD_RUN_WAIT = 20.0


async def sleep(seconds: float) -> None:
    """Let the reactor run for C{seconds}."""
    await task.deferLater(reactor, seconds, lambda: None)


@attrs.frozen
class Fault:
    """One fault: the operation, what is killed, and when (seconds after the request)."""

    seed: int
    step: int
    operation: str
    victim: str
    delay: float

    def describe(self) -> str:
        """The fault as the failure messages name it (enough to replay it)."""
        return (f"seed {self.seed}, fault {self.step}: SIGKILL {self.victim} {self.delay * 1000:.0f} ms "
                f"into {self.operation}")


@attrs.define
class Outcome:
    """What one fault led to."""

    fault: Fault
    target: str = ""
    converged: bool = False
    converge_s: float | None = None
    configure_s: float | None = None
    problems: list[str] = attrs.Factory(list)


class Deployment:
    """
    The ECA (C{ecs-demo}) with its supervised agents, all under C{root};
    every process is killed by pid in C{owner}'s cleanup.

    @param owner: anything with C{addCleanup} (a trial C{TestCase}, or the
        bench's L{Cleanups}).
    """

    def __init__(self, owner: Any, root: Path, sim_detectors: int = 4) -> None:
        self.owner = owner
        self.root = root
        self.state_dir = root / "var"
        self.sim_detectors = sim_detectors
        self.port = free_port()
        self.registry_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.eca: Any = None
        self.eca_transport: Any = None
        self.eca_runs: list[Any] = []
        self.started = False
        owner.addCleanup(kill_marked, str(self.state_dir))
        owner.addCleanup(self.save_eca_output)

    @property
    def db_path(self) -> Path:
        """The ECA's database file."""
        return self.state_dir / "ecs.sqlite"

    @property
    def agent_logs(self) -> Path:
        """Where the agents' output goes."""
        return self.state_dir / "logs" / "agents"

    def where_logs(self) -> str:
        """The paths a failure message leaves for the reader."""
        self.save_eca_output()
        return f"ECA output: {self.root}/eca-*.log; agents: {self.agent_logs}/"

    def save_eca_output(self) -> None:
        """Write each ECA incarnation's output to C{root/eca-<n>.log}."""
        for number, watched in enumerate(self.eca_runs, 1):
            (self.root / f"eca-{number}.log").write_text("\n".join(watched.lines) + "\n", encoding="utf-8")

    async def start_eca(self) -> None:
        """
        Start the ECA (again) on the same state folder and log in.  A port
        taken meanwhile by another process (free ports are only free when
        chosen) gets a new one, three times at most: the web port always,
        the registry's only at the first start (running agents know it).
        """
        for attempt in range(3):
            argv = [tool("twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(self.port),
                    "--registry-port", str(self.registry_port), "--state-dir", str(self.state_dir),
                    "--detectors", str(self.sim_detectors), "--ssh", "none", "--control-timeout", "86400"]
            self.eca, self.eca_transport = spawn(self.owner, "ecs-demo", argv, cwd=str(self.root),
                                                 env={"ECS_ADMIN_PASSWORD": PASSWORD})
            self.eca_runs.append(self.eca)
            try:
                await self.eca.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=90)
                break
            except AssertionError:
                await self.eca.ended
                if attempt == 2 or not any("Address already in use" in line for line in self.eca.lines):
                    raise
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
            if not self.started:
                self.registry_port = free_port()
        self.started = True
        response = await treq.post(self.base + "/api/login", json={"username": "admin", "password": PASSWORD,
                                                                     "kind": "api"}, persistent=False)
        self.token = str((await response.json())["token"])

    @property
    def eca_pid(self) -> int:
        """The running ECA's pid."""
        return int(self.eca_transport.pid)

    async def kill_eca(self) -> None:
        """SIGKILL the ECA by pid and wait for its end."""
        os.kill(self.eca_pid, signal.SIGKILL)
        await self.eca.ended

    async def stop(self) -> None:
        """Stop the ECA gracefully (it stops its agents); leftovers are killed by the cleanup."""
        if self.eca is not None and not self.eca.ended.called:
            try:
                self.eca_transport.signalProcess("TERM")
            except ProcessExitedAlready:
                return
            timer = reactor.callLater(30, self.eca_transport.signalProcess, "KILL")  # type: ignore[attr-defined]
            await self.eca.ended
            if timer.active():
                timer.cancel()

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One API call; status 0 and the error text when the ECA cannot be reached."""
        try:
            return await call_api(self.base, method, path, self.token, body)
        except Exception as e:  # connection refused while the ECA is down
            return 0, f"{type(e).__name__}: {e}"

    async def agents(self) -> dict[str, dict[str, Any]]:
        """C{GET /api/agents} by agent name (empty when unreachable)."""
        code, body = await self.api("GET", "/api/agents")
        return {a["agent"]: a for a in body} if code == 200 else {}

    async def partition(self, name: str) -> dict[str, Any]:
        """C{GET /api/partitions/<name>} (empty when unreachable)."""
        code, body = await self.api("GET", f"/api/partitions/{name}")
        return dict(body) if code == 200 else {}

    def processes(self) -> dict[int, str]:
        """The live agent processes of this deployment, from /proc."""
        return agent_processes(str(self.state_dir))


# -- the invariants -------------------------------------------------------------

#: Seconds after a kill from which a system whose agent is still down must show Connection Problem.
DETECT_AFTER = 5.0
CONNECTION_PROBLEM = "Connection Problem"
#: Every state table of etc/subsystems.yaml starts here (a controller that logged no transition since its start).
INITIAL = "Unconfigured"
_TRANSITION = re.compile(r"\] (\S+) \((\S+)\): (\S+) -(\S+)-> (\S+)\s*$")
_BELONGS = re.compile(r"\] (\S+) now belongs to (\S+)\s*$")


def _owns(target: str, system: dict[str, Any]) -> bool:
    """Whether C{system} (an entry of a partition's systems) is served by agent C{target}."""
    kind, _, ident = target.partition(":")
    if kind == "global":
        return bool(system["kind"] == "global")
    if kind == "simhost":
        return str(system["id"]).startswith("sim")
    return kind == "detector" and system["id"] == ident


def held_runs(view: Any, parts: dict[str, dict[str, Any]]) -> list[int]:
    """Open runs of partitions that do not record (held after an interruption, or left open)."""
    return [run["number"] for run in view.runs
            if run["ended"] is None and parts.get(run["partition"], {}).get("state") != "Recording"]


def shown_while_down(target: str, old_pid: int, agents: dict[str, Any], parts: dict[str, Any],
                     since: float) -> list[str]:
    """What a partition shows as alive although C{target} is still down, C{since} seconds after its kill."""
    status = agents.get(target, {}).get("status", {})
    if status.get("pid") not in (old_pid, None) and status.get("running") and agents[target]["registered"]:
        return []
    wrong = []
    for name, body in parts.items():
        if target == f"pca:{name}" and body.get("connected"):
            wrong.append(f"{name} shown connected ({body.get('state')}) {since:.1f} s after its PCA died")
        for system in body.get("systems", []) if not target.startswith("pca:") else []:
            if _owns(target, system) and (system["connected"] or system["state"] != CONNECTION_PROBLEM):
                wrong.append(f"stale: {system['id']} in {name} shown {system['state']!r} {since:.1f} s after "
                             f"{target} died (expected {CONNECTION_PROBLEM})")
    return wrong


def agents_up(agents: dict[str, Any], target: str | None, old_pid: int) -> list[str]:
    """What keeps the supervised agents from being all up (the killed one with a new pid)."""
    if not agents:
        return ["GET /api/agents did not answer"]
    expected = {"pca:demo", "pca:p2", "global:all", "simhost:sim", *(f"detector:{d}" for d in DETECTORS)}
    problems = [f"{name} is not placed any more" for name in sorted(expected - set(agents))]
    for name, agent in sorted(agents.items()):
        status, supervision = agent["status"], agent["supervision"]
        if supervision["state"] != "running" or not status["running"] or not agent["registered"]:
            problems.append(f"{name}: supervision {supervision['state']} ({supervision['reason'] or status['detail']}),"
                            f" registered {agent['registered']}")
        elif name == target and status["pid"] == old_pid:
            problems.append(f"{name}: still shown with the killed pid {old_pid}")
        elif not pid_alive(int(status["pid"])):
            problems.append(f"{name}: shown running as pid {status['pid']}, which is dead")
    return problems


def partitions_quiet(parts: dict[str, dict[str, Any]]) -> list[str]:
    """What keeps the partitions from being connected, unlocked and quiet."""
    problems = []
    for name, body in parts.items():
        if not body:
            problems.append(f"GET /api/partitions/{name} did not answer")
            continue
        if not body["connected"] or body["locked"] or body["operation"] is not None:
            problems.append(f"{name}: {body['state']}, connected {body['connected']}, locked {body['locked']},"
                            f" operation {body['operation']!r}")
        down = [s["id"] for s in body["systems"] if not s["connected"] or s["state"] == CONNECTION_PROBLEM]
        if down:
            problems.append(f"{name}: not connected: {', '.join(down)}")
    return problems


@attrs.frozen
class Told:
    """What the controllers' logs say: each system's state, and the partition each detector believes it is in."""

    states: dict[tuple[str, str], str]
    belongs: dict[str, str]


class Truth:
    """Each system's real state, from its controller's log file (its transitions since its last start)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _read(self) -> Told:
        states: dict[tuple[str, str], str] = {}
        belongs: dict[str, str] = {}
        for path in sorted(self.folder.glob("*.log")):
            if path.name.startswith("pca-"):
                continue
            global_file = path.name.startswith("global-")
            mine: dict[tuple[str, str], str] = {}
            theirs: dict[str, str] = {}
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if "starting up." in line:
                    mine, theirs = {}, {}
                moved = _BELONGS.search(line)
                if moved:
                    theirs[moved.group(1)] = moved.group(2)
                match = _TRANSITION.search(line)
                if match:
                    system, partition, _, _, state = match.groups()
                    mine[(system, partition if global_file else "")] = state
                    if not global_file:
                        theirs[system] = partition
            states.update(mine)
            belongs.update(theirs)
        return Told(states, belongs)

    async def read(self) -> Told:
        """The logs' word (the files read in a thread); detectors' states are keyed C{(id, "")}."""
        return await threads.deferToThread(self._read)


def states_true(parts: dict[str, dict[str, Any]], told: Told) -> list[str]:
    """Every shown state that is not the controller's own (stale), every detector its controller places elsewhere."""
    wrong = []
    for name, body in parts.items():
        for system in body.get("systems", []):
            detector = system["kind"] != "global"
            real = told.states.get((system["id"], "" if detector else name), INITIAL)
            if system["raw_state"] != real:
                wrong.append(f"stale: {system['id']} in {name} shown {system['raw_state']!r}, its controller's log "
                             f"says {real!r}")
            if detector and told.belongs.get(system["id"], name) != name:
                wrong.append(f"half-moved: {system['id']} shown in {name}, its controller's log says it belongs to "
                             f"{told.belongs[system['id']]}")
    return wrong


def one_process_each(agents: dict[str, Any], processes: dict[int, str]) -> list[str]:
    """Exactly one process per placed agent, none unplaced (from /proc)."""
    names = sorted("simhost:sim" if n == "simhost:?" else n for n in processes.values())  # (found by --ids)
    problems = [f"{n}: {names.count(n)} processes" for n in sorted(set(names)) if names.count(n) > 1]
    problems += [f"{n}: no process" for n in sorted(set(agents) - set(names))]
    problems += [f"{n}: a process although not placed" for n in sorted(set(names) - set(agents))]
    return problems


@attrs.frozen
class DatabaseView:
    """What the checks read from the database file."""

    integrity: list[str]
    runs: list[dict[str, Any]]
    detectors: dict[str, str | None]


def _read_database(path: Path) -> DatabaseView:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        integrity = [str(row[0]) for row in db.execute("pragma integrity_check")]
        runs = [dict(zip(("number", "partition", "started", "ended", "outcome"), row, strict=True))
                for row in db.execute("select number, partition, started, ended, outcome from runs order by number")]
        detectors = {str(row[0]): row[1] for row in db.execute("select id, partition from detectors")}
    return DatabaseView(integrity, runs, detectors)


async def read_database(path: Path) -> DatabaseView:
    """Read the database file read-only, in a thread (never on the reactor)."""
    return await threads.deferToThread(_read_database, path)


def database_sound(view: DatabaseView) -> list[str]:
    """C{pragma integrity_check} says ok."""
    return [] if view.integrity == ["ok"] else [f"pragma integrity_check: {view.integrity[:5]}"]


def placed_once(view: DatabaseView, parts: dict[str, dict[str, Any]]) -> list[str]:
    """Every detector in exactly the partition the database names (none half-moved)."""
    problems = []
    for detector, partition in sorted(view.detectors.items()):
        shown_in = [name for name, body in parts.items()
                    if any(s["id"] == detector for s in body.get("systems", []))]
        if shown_in != ([partition] if partition else []):
            problems.append(f"half-moved: {detector} is in {partition} in the database, shown in {shown_in}")
    return problems


class RunBook:
    """
    The recordings seen through the API (from the first to the last
    Recording shown; Connection Problem does not end one), checked against
    the run records: none lost, split, merged or left open.
    """

    def __init__(self) -> None:
        self.episodes: dict[str, list[list[float]]] = {}
        self.open: dict[str, bool] = {}
        self.known: dict[int, tuple[str, float]] = {}

    def saw(self, partition: str, state: str | None) -> None:
        """A state shown for C{partition} now."""
        if state == "Recording":
            now = time.time()
            if self.open.get(partition):
                self.episodes[partition][-1][1] = now
            else:
                self.episodes.setdefault(partition, []).append([now, now])
                self.open[partition] = True
        elif state not in (None, CONNECTION_PROBLEM):
            self.open[partition] = False

    def check(self, view: DatabaseView, parts: dict[str, dict[str, Any]]) -> list[str]:
        """What is wrong with the run records now."""
        problems = []
        numbers = {run["number"]: run for run in view.runs}
        fresh = set(numbers) - set(self.known)
        for number, (partition, started) in sorted(self.known.items()):
            run = numbers.get(number)
            if run is None or (run["partition"], run["started"]) != (partition, started):
                problems.append(f"run {number} of {partition} lost or rewritten: now {run}")
        self.known.update({r["number"]: (r["partition"], r["started"]) for r in view.runs})
        for name, body in parts.items():
            runs = sorted((r for r in view.runs if r["partition"] == name), key=lambda r: r["started"])
            still = [r["number"] for r in runs if r["ended"] is None]
            if len(still) != (1 if body.get("state") == "Recording" else 0):
                problems.append(f"{name} is {body.get('state')} with open runs {still}")
            for first, second in itertools.pairwise(runs):
                if {first["number"], second["number"]} & fresh and (
                        first["ended"] is None or first["ended"] > second["started"]):
                    problems.append(f"runs {first['number']} and {second['number']} of {name} overlap (merged?)")
            for begun, last in self.episodes.get(name, []):
                covering = [r["number"] for r in runs
                            if r["started"] <= last and (r["ended"] is None or r["ended"] >= begun)]
                if len(covering) != 1:
                    what = "no run record (lost)" if not covering else f"runs {covering} (split or duplicated)"
                    problems.append(f"the recording of {name} seen {time.strftime('%H:%M:%S', time.localtime(begun))}"
                                    f"-{time.strftime('%H:%M:%S', time.localtime(last))} has {what}")
            if not self.open.get(name):
                self.episodes[name] = []
            elif self.episodes.get(name):
                self.episodes[name] = self.episodes[name][-1:]
        return problems


class Campaign:
    """
    C{faults} faults chosen by C{random.Random(seed)} against C{deployment};
    L{run} returns the outcomes.  C{budget} (seconds) ends the campaign
    early (reported as a failure).  C{say} receives a progress line a fault.
    """

    def __init__(self, deployment: Deployment, seed: int, faults: int, budget: float,
                 say: Callable[[str], None] = print, converge_deadline: float = 45.0) -> None:
        self.d = deployment
        self.seed = seed
        self.faults = faults
        self.budget = budget
        self.say = say
        self.converge_deadline = converge_deadline
        self.random = random.Random(seed)
        self.outcomes: list[Outcome] = []
        self.stopped_early = ""
        self.book = RunBook()
        self.truth = Truth(deployment.agent_logs)
        self.holders: dict[str, Any] = {}
        self.stuck = ""

    # -- set-up --------------------------------------------------------------

    async def prepare(self) -> None:
        """Start the deployment, add p2, take the controls, configure demo."""
        await self.d.start_eca()
        ends = time.monotonic() + 90
        for path, body in (("/api/control", None), ("/api/partitions", {"id": "p2"})):
            code, reply = await self.d.api("POST", path, body)
            while code == 503 and time.monotonic() < ends:  # the global systems not registered yet
                await sleep(0.5)
                code, reply = await self.d.api("POST", path, body)
            if code != 200:
                raise AssertionError(f"set-up: POST {path}: {code} {reply}; {self.d.where_logs()}")
        problems = await self.whole(None, 0, time.monotonic() + 90)
        if problems:
            raise AssertionError(f"set-up: the deployment never came up whole: {problems}; {self.d.where_logs()}")
        for name in PARTITIONS:
            code, reply = await self.d.api("POST", f"/api/partitions/{name}/control")
            if code != 200:
                raise AssertionError(f"set-up: control of {name}: {code} {reply}")
        self.holders = await self.control_holders()
        if (await self.configure()) is None:
            raise AssertionError(f"set-up: demo never reached QA_Active ({self.stuck}); {self.d.where_logs()}")

    async def control_holders(self) -> dict[str, Any]:
        """Who holds the ECS control and each partition's."""
        code, body = await self.d.api("GET", "/api/control")
        holders = {"ecs": body.get("holder") if code == 200 else f"unreadable ({code})"}
        for name in PARTITIONS:
            holders[name] = (await self.d.partition(name)).get("controller", "unreadable")
        return holders

    # -- states and commands ----------------------------------------------------

    async def until_state(self, name: str, states: tuple[str, ...], timeout: float) -> dict[str, Any] | None:
        """Poll partition C{name} until one of C{states} with no operation running; None at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = await self.d.partition(name)
            self.book.saw(name, body.get("state"))
            if body.get("state") in states and body.get("operation") is None:
                return body
            await sleep(0.1)
        return None

    async def command(self, name: str, verb: str, body: Any = None) -> tuple[int, Any]:
        """POST a partition command."""
        return await self.d.api("POST", f"/api/partitions/{name}/{verb}", body)

    async def configure(self) -> float | None:
        """
        Abort demo to Idle, then configure it: the seconds to QA_Active, or
        None (then aborted, with what it waited for in C{self.stuck}).
        """
        state = (await self.d.partition("demo")).get("state")
        if state == "Recording":
            await self.command("demo", "stop")
            await self.until_state("demo", ("QA_Active",), 30)
        if state != "Idle":
            await self.command("demo", "abort")
            await self.until_state("demo", ("Idle",), 30)
        begun = time.monotonic()
        code, _ = await self.command("demo", "configure", {"tag": "demo", "auto": True})
        if code == 200 and await self.until_state("demo", ("QA_Active",), CONFIGURE_DEADLINE):
            return time.monotonic() - begun
        body = await self.d.partition("demo")
        waiting = [f"{s['id']} {s['state']}" for s in body.get("systems", []) if s["state"] not in ("Active",)]
        self.stuck = (f"configure answered {code}; demo {body.get('state')}, operation {body.get('operation')!r}, "
                      f"systems not Active: {', '.join(waiting) or 'none'}")
        await self.command("demo", "abort")
        await self.until_state("demo", ("Idle", "QA_Active"), 60)
        return None

    async def ready_for(self, operation: str) -> None:
        """Bring the partitions to where C{operation} can begin."""
        if operation in ("configure", "move"):
            await self.command("demo", "abort")
            await self.until_state("demo", ("Idle",), 30)
        elif operation == "stop" or (operation == "abort" and self.random.random() < 0.5):
            await self.command("demo", "start")
            await self.until_state("demo", ("Recording",), 15)

    def request(self, operation: str) -> tuple[str, Any]:
        """The request of C{operation}: (what it is, a started Deferred of its answer)."""
        if operation == "move":
            detector = self.random.choice([*DETECTORS, *(f"sim{n}" for n in range(1, self.d.sim_detectors + 1))])
            return (f"move {detector} to p2",
                    defer.ensureDeferred(self.d.api("POST", f"/api/detectors/{detector}/move", {"to": "p2"})))
        body = {"tag": "demo", "auto": True} if operation == "configure" else None
        return operation, defer.ensureDeferred(self.command("demo", operation, body))

    async def pick_target(self, victim: str, operation: str) -> tuple[str, int]:
        """The agent (or C{eca}) to kill and its pid."""
        if victim == "eca":
            return "eca", self.d.eca_pid
        agents = await self.d.agents()
        name = {
            "detector": lambda: f"detector:{self.random.choice(DETECTORS)}",
            "simhost": lambda: "simhost:sim",
            "global": lambda: "global:all",
            "pca": lambda: f"pca:{self.random.choice(PARTITIONS) if operation == 'move' else 'demo'}",
            "supervised": lambda: self.random.choice(sorted(agents)),
        }[victim]()
        return name, int(agents[name]["status"]["pid"])

    # -- the campaign -------------------------------------------------------------

    async def run(self) -> list[Outcome]:
        """Prepare, then inflict every fault (or as many as the budget allows)."""
        ends = time.monotonic() + self.budget
        await self.prepare()
        for step in range(1, self.faults + 1):
            if time.monotonic() > ends:
                self.stopped_early = f"the {self.budget:.0f} s budget ran out after {step - 1} faults"
                break
            operation = self.random.choice(OPERATIONS)
            fault = Fault(self.seed, step, operation, self.random.choice(VICTIMS),
                          round(self.random.uniform(0, KILL_WINDOW[operation]), 3))
            outcome = await self.inflict(fault)
            self.outcomes.append(outcome)
            self.say(self.progress(outcome))
            if len(self.outcomes) >= 3 and all(o.converge_s is None for o in self.outcomes[-3:]):
                self.stopped_early = f"three faults in a row did not heal (last: {fault.describe()})"
                break
        return self.outcomes

    def progress(self, o: Outcome) -> str:
        """One line a fault."""
        took = "-" if o.converge_s is None else f"{o.converge_s:.1f} s"
        configured = "-" if o.configure_s is None else f"{o.configure_s:.1f} s"
        verdict = "ok" if not o.problems else "FAILED: " + "; ".join(o.problems)
        return f"{o.fault.describe()} ({o.target}): converged in {took}, configure {configured}: {verdict}"

    async def inflict(self, fault: Fault) -> Outcome:
        """Run C{fault}, wait for the deployment to heal, check every invariant, configure again."""
        outcome = Outcome(fault)
        await self.ready_for(fault.operation)
        target, pid = await self.pick_target(fault.victim, fault.operation)
        outcome.target = target
        before = await self.d.agents()
        what, answer = self.request(fault.operation)
        await sleep(fault.delay)
        killed_at = time.monotonic()
        if target == "eca":
            await self.d.kill_eca()
        else:
            os.kill(pid, signal.SIGKILL)
        code, _ = await answer
        outcome.target = f"{target} pid {pid}; {what} answered {code}"
        if target == "eca":
            await self.d.start_eca()
        problems = await self.whole(target, pid, killed_at + self.converge_deadline, killed_at)
        if problems:
            outcome.problems += [f"not healed {self.converge_deadline:.0f} s after the kill: " + "; ".join(problems)]
        else:
            outcome.converge_s = time.monotonic() - killed_at
        outcome.problems += await self.check(target, pid, before)
        if fault.operation == "move":
            outcome.problems += await self.move_back()
        outcome.configure_s = await self.configure()
        if outcome.configure_s is None:
            outcome.problems.append(f"a new configure did not reach QA_Active within {CONFIGURE_DEADLINE:.0f} s "
                                    f"({self.stuck})")
        outcome.converged = not outcome.problems
        return outcome

    async def whole(self, target: str | None, old_pid: int, deadline: float, killed_at: float = 0.0) -> list[str]:
        """
        Poll until every agent runs (the killed one with a new pid), every
        partition and system is connected, unlocked and quiet, and every
        shown state is the controller's own; the problems left at C{deadline}.
        While the killed agent is down its systems must show Connection Problem.
        """
        problems = ["never polled"]
        stale: list[str] = []
        while time.monotonic() < deadline:
            agents = await self.d.agents()
            parts = {name: await self.d.partition(name) for name in PARTITIONS}
            for name, body in parts.items():
                self.book.saw(name, body.get("state"))
            now = time.monotonic()
            if target and target != "eca" and now - killed_at > DETECT_AFTER:
                stale += shown_while_down(target, old_pid, agents, parts, now - killed_at)
            problems = agents_up(agents, target, old_pid) + partitions_quiet(parts)
            if not problems:
                problems = states_true(parts, await self.truth.read())
            if not problems:
                break
            await sleep(0.25)
        return stale[:3] + problems

    async def check(self, target: str, pid: int, before: dict[str, Any]) -> list[str]:
        """The invariants that hold once the deployment is whole again."""
        problems: list[str] = []
        agents = await self.d.agents()
        if target == "eca":
            problems += [f"{name}: not adopted by the restarted ECA (pid {agent['status']['pid']} before, "
                         f"{agents.get(name, {}).get('status', {}).get('pid')} after)"
                         for name, agent in sorted(before.items())
                         if agents.get(name, {}).get("status", {}).get("pid") != agent["status"]["pid"]]
        else:
            if pid_alive(pid):
                problems.append(f"{target}: the killed pid {pid} is still alive")
            restarts = before.get(target, {}).get("supervision", {}).get("restarts", 0)
            if agents.get(target, {}).get("supervision", {}).get("restarts", 0) <= restarts:
                problems.append(f"{target}: the supervisor's restart count did not grow ({restarts})")
        problems += one_process_each(agents, self.d.processes())
        holders = await self.control_holders()
        if holders != self.holders:
            problems.append(f"control holders changed: {self.holders} before, {holders} after")
        parts = {name: await self.d.partition(name) for name in PARTITIONS}
        view = await read_database(self.d.db_path)
        deadline = time.monotonic() + HELD_RUN_WAIT
        while held_runs(view, parts) and time.monotonic() < deadline:
            await sleep(0.5)
            parts = {name: await self.d.partition(name) for name in PARTITIONS}
            view = await read_database(self.d.db_path)
        problems += database_sound(view)
        problems += placed_once(view, parts)
        problems += self.book.check(view, parts)
        return problems

    async def move_back(self) -> list[str]:
        """Every detector back in demo (a move's fault may have left one in p2)."""
        view = await read_database(self.d.db_path)
        problems = []
        for detector, partition in sorted(view.detectors.items()):
            if partition != "demo":
                code, body = await self.d.api("POST", f"/api/detectors/{detector}/move", {"to": "demo"})
                if code != 200:
                    problems.append(f"moving {detector} back from {partition} to demo: {code} {body}")
        return problems


def figures(outcomes: list[Outcome], seed: int) -> str:
    """The figures line: faults, converged, time to converge (median, max)."""
    times = [o.converge_s for o in outcomes if o.converge_s is not None]
    configures = [o.configure_s for o in outcomes if o.configure_s is not None]

    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s" if values else "none"

    return (f"fault campaign (seed {seed}): faults {len(outcomes)}, converged "
            f"{sum(o.converged for o in outcomes)}, time to converge {spread(times)}; "
            f"configure to QA_Active {spread(configures)}")


def failures(outcomes: list[Outcome], deployment: Deployment, stopped_early: str) -> str:
    """Every failed fault with what was wrong, and where the logs are ("" when none)."""
    lines = [f"{o.fault.describe()} ({o.target}):\n    " + "\n    ".join(o.problems)
             for o in outcomes if o.problems]
    if stopped_early:
        lines.append(f"campaign stopped early: {stopped_early}")
    return "\n".join([*lines, deployment.where_logs()]) if lines else ""


__all__ = ["Campaign", "Deployment", "Fault", "Outcome", "failures", "figures"]
