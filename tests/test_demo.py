"""
End to end through the HTTP API only: C{twistd -n ecs-demo} on loopback
(ECA, web, and every agent it launches), a shift through login, control,
configure, recording and abort, and a second user refused meanwhile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.procs import call_api, free_port, spawn, tool


class DemoTests(TestCase):
    """The demo, used as a shift crew would."""

    timeout = 180

    async def api(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        return await call_api(self.base, method, path, token, body)

    async def login(self, user: str, password: str) -> str:
        code, body = await self.api("POST", "/api/login", body={"username": user, "password": password, "kind": "api"})
        self.assertEqual(code, 200, body)
        return str(body["token"])

    async def until_state(self, token: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        body: Any = None
        for _ in range(int(timeout / 0.1)):
            code, body = await self.api("GET", "/api/partitions/demo", token)
            if code == 200 and body["state"] == state and body["operation"] is None:
                return dict(body)
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"partition never reached {state}: {body}")

    async def until_connected(self, token: str, timeout: float = 60.0) -> None:
        body: Any = None
        for _ in range(int(timeout / 0.1)):
            code, body = await self.api("GET", "/api/partitions/demo", token)
            if code == 200 and len(body["systems"]) == 9 and all(s["connected"] for s in body["systems"]):
                return
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"systems never all connected: {body}")

    def setUp(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir()

    async def test_shift(self) -> None:
        """Login, control, configure demo (auto) to QA_Active, record (a run with its configurations), abort to Idle."""
        tmp = self.tmp
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        proc, _ = spawn(
            self,
            "ecs-demo",
            [tool("twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(port),
             "--registry-port", str(free_port()), "--state-dir", str(tmp / "var")],
            cwd=str(tmp),
            env={"ECS_ADMIN_PASSWORD": "admin-pass-123"},
        )
        await proc.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=60)
        code, body = await self.api("GET", "/api/health")
        self.assertEqual((code, body), (200, {"status": "ok"}))
        self.assertEqual((await self.api("GET", "/api/partitions"))[0], 401)

        admin = await self.login("admin", "admin-pass-123")
        shifter = {"username": "shifter", "password": "shifter-pass-1", "roles": ["operator"]}
        self.assertEqual((await self.api("POST", "/api/users", admin, shifter))[0], 200)
        other = await self.login("shifter", "shifter-pass-1")
        await self.until_state(admin, "Idle")
        await self.until_connected(admin)

        code, body = await self.api("POST", "/api/partitions/demo/control", admin)
        self.assertEqual(code, 200, body)
        code, body = await self.api("POST", "/api/partitions/demo/control", other)
        self.assertEqual(code, 409, body)
        self.assertEqual(body["holder"], "admin")
        code, body = await self.api("POST", "/api/partitions/demo/configure", other, {"tag": "demo", "auto": True})
        self.assertEqual(code, 409, body)

        code, body = await self.api("POST", "/api/partitions/demo/configure", admin, {"tag": "demo", "auto": True})
        self.assertEqual(code, 200, body)
        ready = await self.until_state(admin, "QA_Active")
        self.assertEqual(ready["tag"], "demo")
        self.assertIn("start", ready["allowed"])

        self.assertEqual((await self.api("POST", "/api/partitions/demo/start", admin))[0], 200)
        await self.until_state(admin, "Recording")
        self.assertEqual((await self.api("POST", "/api/partitions/demo/stop", admin))[0], 200)
        await self.until_state(admin, "QA_Active")
        runs: Any = None
        for _ in range(50):
            code, runs = await self.api("GET", "/api/runs", admin)
            if runs and runs[0].get("outcome"):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        run = runs[0]
        self.assertEqual(
            (run["partition"], run["tag"], run["operator"], run["outcome"]), ("demo", "demo", "admin", "stopped")
        )
        self.assertEqual(run["configs"]["STS"]["config_id"], "sts-default")
        self.assertEqual(run["configs"]["STS"]["version"], 1)

        self.assertEqual((await self.api("POST", "/api/partitions/demo/abort", admin))[0], 200)
        await self.until_state(admin, "Idle")
        logs: Any = None
        for _ in range(50):  # stored in batches: poll a little
            code, logs = await self.api("GET", "/api/logs?partition=demo&q=configured", admin)
            self.assertEqual(code, 200)
            if any("configured to QA_Active" in entry["message"] for entry in logs):
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        else:
            self.fail(f"no 'configured to QA_Active' in {logs}; ECA output:\n" + "\n".join(proc.lines[-60:]))
        code, metrics = await self.api("GET", "/metrics")
        self.assertIn('ecs_partition_state{partition="demo",state="Idle"} 1', metrics)
