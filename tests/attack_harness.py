"""
A running C{ecs-demo} (ECA, PCA of C{demo}, its detectors and the global
systems, each agent with its own CURVE key) and an attacker holding one
detector host's key, for the attack and fuzz tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from ecs.net.keys import load_keys
from ecs.net.transport import RequestError
from ecs.net.zeromq import ZmqNode
from tests.procs import Watched, call_api, free_port, spawn, tool

ADMIN_PASSWORD = "admin-pass-123"


class DemoHarness(TestCase):
    """C{ecs-demo} on loopback, started by L{start_demo}, stopped by cleanups."""

    timeout = 240

    async def start_demo(self, *options: str) -> None:
        """Start the demo (C{options}: more options of C{ecs-demo}) and wait until partition demo
        is Idle with every system connected."""
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir()
        port, registry_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.registry_address = f"tcp://127.0.0.1:{registry_port}"
        self.var = self.tmp / "var"
        self.demo, self.demo_transport = spawn(
            self,
            "ecs-demo",
            [tool("twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(port),
             "--registry-port", str(registry_port), "--state-dir", str(self.var), *options],
            cwd=str(self.tmp),
            env={"ECS_ADMIN_PASSWORD": ADMIN_PASSWORD},
        )
        await self.demo.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=90)
        code, body = await call_api(
            self.base, "POST", "/api/login", body={"username": "admin", "password": ADMIN_PASSWORD, "kind": "api"}
        )
        self.assertEqual(code, 200, body)
        self.token = str(body["token"])
        await self.until_partition(lambda p: p["state"] == "Idle" and p["operation"] is None and all(
            s["connected"] for s in p["systems"]) and len(p["systems"]) == 9, "Idle, all connected")

    def attacker(self, identity: str, name: str = "attacker") -> ZmqNode:
        """A node connecting with the key of agent C{identity} (made by the demo's placement)."""
        keys = load_keys(self.var / "keys", need_server_secret=False, identity=identity)
        node = ZmqNode(reactor, name, keys, request_timeout=3.0)
        self.addCleanup(node.close)
        return node

    async def lookup(self, node: ZmqNode, kind: str, agent_id: str) -> str:
        """The registered endpoint of an agent (any allowed key may ask)."""
        reply = await node.connect(self.registry_address).request("registry", "lookup", {"kind": kind, "id": agent_id})
        endpoint = reply["endpoint"]
        self.assertIsInstance(endpoint, str, reply)
        return str(endpoint)

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await call_api(self.base, method, path, self.token, body)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        """An API request that must succeed (200); its answer."""
        code, reply = await self.api(method, path, body)
        self.assertEqual(code, 200, reply)
        return reply

    async def partition(self) -> dict[str, Any]:
        code, body = await self.api("GET", "/api/partitions/demo")
        self.assertEqual(code, 200, body)
        return dict(body)

    async def until_partition(self, predicate: Any, what: str, timeout: float = 90.0) -> dict[str, Any]:
        body: Any = None
        for _ in range(int(timeout / 0.1)):
            code, body = await self.api("GET", "/api/partitions/demo")
            if code == 200 and predicate(body):
                return dict(body)
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"partition demo never {what}: {body}")

    async def refused(self, node: ZmqNode, endpoint: str, target: str, type: str, body: dict[str, Any],
                      sender: str) -> RequestError:
        """Send a request that must be refused as forbidden; the error."""
        try:
            reply = await node.connect(endpoint).request(target, type, body, sender=sender)
        except RequestError as e:
            self.assertEqual(e.code, "forbidden", f"{type} to {target}: {e}")
            return e
        raise AssertionError(f"{type} to {target} as {sender!r} was obeyed: {reply}")

    def agent_log(self, kind: str, agent_id: str) -> str:
        """The output of a placed agent so far."""
        path = self.var / "logs" / "agents" / f"{kind}-{agent_id}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    async def until_logged(self, text: str, where: Watched | tuple[str, str], timeout: float = 20.0) -> None:
        """Until C{text} is in the ECA's output or in an agent's log file."""
        for _ in range(int(timeout / 0.1)):
            if isinstance(where, Watched):
                found = any(text in line for line in where.lines)
            else:
                found = text in self.agent_log(*where)
            if found:
                return
            await task.deferLater(reactor, 0.1, lambda: None)
        shown = "\n".join(where.lines[-40:]) if isinstance(where, Watched) else self.agent_log(*where)[-4000:]
        raise AssertionError(f"{text!r} never logged in {where}:\n{shown}")

    async def configure_works(self) -> None:
        """The real agents still obey the ECA: configure to QA_Active, abort to Idle, through the API."""
        code, body = await self.api("POST", "/api/partitions/demo/control")
        self.assertEqual(code, 200, body)
        code, body = await self.api("POST", "/api/partitions/demo/configure", {"tag": "demo", "auto": True})
        self.assertEqual(code, 200, body)
        await self.until_partition(lambda p: p["state"] == "QA_Active" and p["operation"] is None, "QA_Active")
        code, body = await self.api("POST", "/api/partitions/demo/abort")
        self.assertEqual(code, 200, body)
        await self.until_partition(lambda p: p["state"] == "Idle" and p["operation"] is None, "Idle again")
