"""
The real C{ecs} command line against a running demo
(L{tests.attack_harness.DemoHarness}): each command a subprocess with
C{HOME} and C{XDG_CONFIG_HOME} in the test's temporary directory (its
credentials never reach the real C{~/.config/ecs}), killed by its pid when
it outlives its deadline or the test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.error import ProcessExitedAlready

from tests.attack_harness import ADMIN_PASSWORD, DemoHarness
from tests.procs import ROOT, Collected


class Result:
    """What one run of C{ecs} gave."""

    def __init__(self, code: int | None, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"

    def json(self) -> Any:
        return json.loads(self.out)


class CliDemoHarness(DemoHarness):
    """A demo and the C{ecs} command line logged in to it as admin (L{cli_login})."""

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ECS_", "XDG_"))}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "config"), PYTHONPATH=str(ROOT),
                   NO_COLOR="1")
        return env

    async def ecs(self, *argv: str, stdin: str | None = None, timeout: float = 120.0) -> Result:
        """Run C{ecs argv...} to its end (killed after C{timeout} seconds)."""
        collect = Collected(stdin.encode() if stdin is not None else None)
        args = [sys.executable, "-m", "ecs.cli", *argv]
        transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            collect, args[0], args, env=self.cli_env(), path=str(ROOT)
        )
        self.addCleanup(stop_collected, collect, transport)
        timer = reactor.callLater(timeout, kill, transport)  # type: ignore[attr-defined]
        code = await collect.ended
        if timer.active():
            timer.cancel()
        return Result(code, collect.out.decode("utf-8", "replace"), collect.err.decode("utf-8", "replace"))

    async def ok_cli(self, *argv: str, stdin: str | None = None, timeout: float = 120.0) -> Result:
        """C{ecs argv...}, which must exit 0."""
        result = await self.ecs(*argv, stdin=stdin, timeout=timeout)
        self.assertEqual(result.code, 0, f"ecs {' '.join(argv)}: {result!r}")
        return result

    async def until_api(self, path: str, predicate: Any, what: str, timeout: float = 90.0) -> Any:
        """GET C{path} until its answer satisfies C{predicate}; that answer."""
        body: Any = None
        for _ in range(int(timeout / 0.1)):
            code, body = await self.api("GET", path)
            if code == 200 and predicate(body):
                return body
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"GET {path} never {what}: {body}")

    async def cli_login(self) -> None:
        """C{ecs login} as admin to the demo (after L{start_demo})."""
        self.home = Path(self.tmp / "home")
        self.home.mkdir()
        await self.ok_cli("login", "--url", self.base, "--user", "admin", "--password-stdin",
                          stdin=ADMIN_PASSWORD + "\n", timeout=60.0)


def kill(transport: Any) -> None:
    """SIGKILL, unless the process ended already."""
    try:
        transport.signalProcess("KILL")
    except ProcessExitedAlready:
        pass


async def stop_collected(collect: Collected, transport: Any) -> None:
    """Kill a process still running (a cleanup); wait for its end."""
    if collect.ended.called:
        return
    kill(transport)
    await collect.ended
