"""
Supervision end to end, with real processes: C{twistd -n ecs-demo} (or
C{ecs-eca}) on loopback, its agents started by the local launcher, driven
through the HTTP API.

Agent processes are found by scanning C{/proc} for command lines that hold
this test's own (unique, temporary) state directory, and killed in cleanup
by pid and process group: never by name.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.procs import call_api, free_port, pid_alive, spawn, tool

PASSWORD = "admin-pass-123"
PLUGINS = ("ecs-pca", "ecs-detector", "ecs-global", "ecs-simhost")
DEMO_AGENTS = {"global:all", "pca:demo", *(f"detector:{d}" for d in ("STS", "MVD", "TOF", "TRD", "RICH"))}


def agent_processes(marker: str) -> dict[int, str]:
    """
    The live agent processes whose command line holds C{marker} (a state
    directory of this test): C{{pid: "<kind>:<id>"}}.
    """
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            args = Path(f"/proc/{name}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("Z", "X") or not any(marker in a for a in args) or "-c" in args:
            continue  # "-c": the launcher's wrapper before it execs twistd
        plugin = next((a for a in args if a in PLUGINS), None)
        if plugin is None:
            continue
        kind = {"ecs-pca": "pca", "ecs-detector": "detector", "ecs-global": "global", "ecs-simhost": "simhost"}[plugin]
        agent_id = args[args.index("--id") + 1] if "--id" in args else "?"
        found[int(name)] = f"{kind}:{agent_id}"
    return found


def kill_marked(marker: str) -> None:
    """SIGKILL every agent process (and its group) that holds C{marker}."""
    for pid in agent_processes(marker):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class EcaProcessCase(TestCase):
    """
    A real ECA process on free ports with its state under one marker folder
    (every process started with it is killed by that marker in cleanup),
    and its API.  No tests here: the supervision tests derive from it.
    """

    token: str

    def setUp(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir(parents=True)
        self.state_dir = self.tmp / "var"
        self.marker = str(self.state_dir)
        self.addCleanup(kill_marked, self.marker)
        self.port = free_port()
        self.registry_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def start_eca(self, plugin: str, *extra: str) -> tuple[Any, Any]:
        argv = [tool("twistd"), "-n", "--pidfile=", plugin, "--port", str(self.port),
                "--registry-port", str(self.registry_port), "--state-dir", self.marker, *extra]
        return spawn(self, plugin, argv, cwd=str(self.tmp), env={"ECS_ADMIN_PASSWORD": PASSWORD})

    async def api(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return await call_api(self.base, method, path, token or self.token, body)

    async def login(self, proc: Any) -> None:
        await proc.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=60)
        response = await treq.post(self.base + "/api/login", json={"username": "admin", "password": PASSWORD,
                                                                     "kind": "api"}, persistent=False)
        self.token = str((await response.json())["token"])

    async def until(self, check: Callable[[dict[str, dict[str, Any]]], bool], what: str,
                    timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        """Poll GET /api/agents until C{check(agents by name)}."""
        agents: dict[str, dict[str, Any]] = {}
        for _ in range(int(timeout / 0.2)):
            code, body = await self.api("GET", "/api/agents")
            self.assertEqual(code, 200, body)
            agents = {a["agent"]: a for a in body}
            if check(agents):
                return agents
            await task.deferLater(reactor, 0.2, lambda: None)
        raise AssertionError(f"never {what}: {json.dumps(agents, indent=1)}")

    @staticmethod
    def all_up(names: set[str]) -> Callable[[dict[str, dict[str, Any]]], bool]:
        return lambda agents: names <= set(agents) and all(
            agents[n]["supervision"]["state"] == "running" and agents[n]["registered"] for n in names)

    def pids(self, agents: dict[str, dict[str, Any]], names: set[str]) -> dict[str, int]:
        return {name: agents[name]["status"]["pid"] for name in names}

    def assert_one_process_each(self, pids: dict[str, int]) -> None:
        found = agent_processes(self.marker)
        self.assertEqual(sorted(found.values()), sorted(pids), found)
        self.assertEqual({found[p] for p in pids.values()}, set(pids))


class SupervisionTests(EcaProcessCase):
    """Restart after a kill, adoption after an ECA crash, nothing left after a stop, flapping."""

    timeout = 240

    async def test_restart_adopt_and_stop(self) -> None:
        """
        A killed agent is restarted (new pid, registered again); after the
        ECA is SIGKILLed and started again it adopts the same processes (one
        per agent); a partition created at run time gets its PCA, deleted
        it loses it; a graceful stop leaves no agent process.
        """
        proc, transport = self.start_eca("ecs-demo")
        await self.login(proc)
        agents = await self.until(self.all_up(DEMO_AGENTS), "all demo agents up")
        pids = self.pids(agents, DEMO_AGENTS)
        self.assertEqual(set(agents), DEMO_AGENTS)
        self.assert_one_process_each(pids)

        old = pids["detector:STS"]
        os.kill(old, signal.SIGKILL)
        agents = await self.until(
            lambda a: self.all_up({"detector:STS"})(a) and a["detector:STS"]["status"]["pid"] != old,
            "STS restarted")
        self.assertEqual(agents["detector:STS"]["supervision"]["restarts"], 1)
        self.assertFalse(pid_alive(old))
        pids["detector:STS"] = agents["detector:STS"]["status"]["pid"]

        transport.signalProcess("KILL")
        await proc.ended
        self.assert_one_process_each(pids)  # the agents outlive a crashed ECA
        proc, transport = self.start_eca("ecs-demo")
        await self.login(proc)
        agents = await self.until(self.all_up(DEMO_AGENTS), "all demo agents adopted")
        self.assertEqual(self.pids(agents, DEMO_AGENTS), pids)
        self.assert_one_process_each(pids)

        self.assertEqual((await self.api("POST", "/api/control"))[0], 200)
        code, body = await self.api("POST", "/api/partitions", {"id": "p2"})
        self.assertEqual(code, 200, body)
        agents = await self.until(self.all_up({"pca:p2"}), "PCA of p2 up")
        self.assertEqual((agents["pca:p2"]["launcher"], agents["pca:p2"]["host"]), ("local", "localhost"))
        p2 = agents["pca:p2"]["status"]["pid"]
        code, body = await self.api("DELETE", "/api/partitions/p2")
        self.assertEqual(code, 200, body)
        code, _ = await self.api("GET", "/api/agents/pca:p2")
        self.assertEqual(code, 404)
        self.assertFalse(pid_alive(p2))

        transport.signalProcess("TERM")
        await proc.ended  # (twistd ends itself with the signal it got: no exit code to check)
        self.assertEqual(agent_processes(self.marker), {})

    async def test_flapping(self) -> None:
        """An agent that exits at once (unknown detector type) is marked flapping, with an error log line."""
        proc, _ = self.start_eca("ecs-eca", "--security", "none")
        await self.login(proc)
        placement = {"host": "localhost", "launcher": "local", "autostart": False,
                     "options": {"agent_args": ["--type", "NoSuchType"]}}
        code, body = await self.api("PUT", "/api/agents/detector:BAD", placement)
        self.assertEqual(code, 200, body)
        code, body = await self.api("POST", "/api/agents/detector:BAD/start")
        self.assertEqual(code, 200, body)
        agents = await self.until(lambda a: a["detector:BAD"]["supervision"]["state"] == "flapping", "flapping")
        self.assertEqual(agents["detector:BAD"]["supervision"]["restarts"], 4)
        self.assertFalse(agents["detector:BAD"]["status"]["running"])
        code, logs = await self.api("GET", "/api/logs?level=error&q=flapping")
        for _ in range(20):  # stored in batches
            if logs:
                break
            await task.deferLater(reactor, 0.2, lambda: None)
            code, logs = await self.api("GET", "/api/logs?level=error&q=flapping")
        self.assertTrue(any("detector:BAD is flapping" in entry["message"] for entry in logs), logs)
        code, body = await self.api("GET", "/api/agents/detector:BAD/output?lines=50")
        self.assertEqual(code, 200, body)
        self.assertIn("unknown subsystem 'NoSuchType'", body["text"])
        code, body = await self.api("POST", "/api/agents/detector:BAD/start")  # clears flapping
        self.assertEqual(code, 200, body)
        self.assertEqual(body["supervision"]["restarts"], 0)
        self.assertNotEqual(body["supervision"]["state"], "flapping")
        self.assertEqual((await self.api("POST", "/api/agents/detector:BAD/stop"))[0], 200)
        self.assertEqual((await self.api("DELETE", "/api/agents/detector:BAD"))[0], 200)
