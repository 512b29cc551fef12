# -*- test-case-name: tests.test_walkthrough -*-
"""
A walk through the controller agents, until the PCA and ECA exist.

C{python -m agents.walkthrough [--state-dir var] [--detectors N]} starts, as
real processes, the four global systems (one C{ecs-global --id all}) and the
demo detectors STS, MVD, TOF, TRD, RICH (one C{ecs-detector} each, plus a sim
host with N more), all with CURVE keys under the state directory.  It then
plays a stand-in partition C{demo}: it prints every state update it
receives and configures the systems in the original's order (TFC, the
detectors, FLES and DCS, QA), starts and stops recording, and stays up until
Ctrl-C, which stops every process it started (by pid).

This is what C{make demo} runs until the ECA's C{ecs-demo} replaces it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.error import ProcessExitedAlready

DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")
STAGES = (("TFC",), DETECTORS, ("FLES", "DCS"), ("QA",))


class _Child(protocol.ProcessProtocol):
    def __init__(self, name: str, ready: defer.Deferred[str]) -> None:
        self.name = name
        self.ready = ready
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if "serving" in line and "agent(s) at" in line and not self.ready.called:
                self.ready.callback(line.rsplit(" ", 1)[-1])
            if " [" in line and ("WARN" in line.upper() or "ERROR" in line.upper() or "CRITICAL" in line.upper()):
                print(f"  {self.name}: {line}")

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"{self.name} exited before serving"))
        self.ended.callback(None)


class Walkthrough:
    """The stand-in partition and the processes it started."""

    def __init__(self, reactor: Any, state_dir: Path, extra: int) -> None:
        self.reactor = reactor
        self.state_dir = state_dir
        self.extra = extra
        self.children: list[tuple[_Child, Any]] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.waiters: list[tuple[set[str], str, defer.Deferred[None]]] = []

    def spawn(self, name: str, args: list[str]) -> defer.Deferred[str]:
        twistd = str(Path(sys.executable).parent / "twistd")
        ready: defer.Deferred[str] = defer.Deferred()
        child = _Child(name, ready)
        argv = [twistd, "-n", "--pidfile=", *args, "--state-dir", str(self.state_dir),
                "--inventory", str(self.state_dir / "demo-inventory.yaml")]
        transport = self.reactor.spawnProcess(child, twistd, argv, env=dict(os.environ))
        self.children.append((child, transport))
        print(f"started {name} (pid {transport.pid})")
        return ready

    def got_states(self, request: Any) -> None:
        for update in request.body["updates"]:
            self.states[update["system"]] = update
            print(f"  {update['system']:>6} {update['state']:<18} tag={update['tag']}  "
                  f"seq={update['seq']} {update['comment']}")
        self._check_waiters()

    def _check_waiters(self) -> None:
        for waiter in list(self.waiters):
            systems, summary, d = waiter
            if all(self.states.get(s, {}).get("summary") == summary for s in systems):
                self.waiters.remove(waiter)
                d.callback(None)

    def until(self, systems: tuple[str, ...], summary: str) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.waiters.append((set(systems), summary, d))
        self._check_waiters()
        return d

    async def stop(self) -> None:
        for child, transport in self.children:
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                pass
        for child, _ in self.children:
            await child.ended


async def main(reactor: Any, argv: list[str]) -> None:
    """Run the walk-through (see the module docstring)."""
    from ecs.config import load_settings
    from ecs.security import init_keys, load_keys
    from ecs.zmq_transport import ZmqNode

    parser = argparse.ArgumentParser(prog="python -m agents.walkthrough")
    parser.add_argument("--state-dir", default="var")
    parser.add_argument("--detectors", type=int, default=0, help="extra simulated detectors")
    args = parser.parse_args(argv)
    state_dir = Path(args.state_dir).resolve()
    settings = load_settings(state_dir=state_dir)
    if not (settings.key_dir / "server.key_secret").exists():
        init_keys(settings.key_dir)
        print(f"created CURVE keys in {settings.key_dir}")
    node = ZmqNode(reactor, "demo", load_keys(settings.key_dir))
    walk = Walkthrough(reactor, state_dir, args.detectors)
    server = node.serve(f"tcp://{settings.bind_host}:*")
    server.register("demo", {"states": walk.got_states})
    extra = [f"sim{n}" for n in range(1, args.detectors + 1)]
    detectors = "".join(f"  {d}: {{type: {d}}}\n" for d in DETECTORS)
    detectors += "".join(f"  {d}: {{type: STS}}\n" for d in extra)
    (state_dir / "demo-inventory.yaml").write_text(
        "# written by agents.walkthrough\n"
        f"partitions:\n  demo: {{endpoint: '{server.address}', detectors: [{', '.join([*DETECTORS, *extra])}]}}\n"
        f"detectors:\n{detectors}"
        "global_systems: {TFC: {}, DCS: {}, QA: {}, FLES: {}}\n"
    )
    print(f"stand-in partition 'demo' listens at {server.address}; starting agents")
    try:
        starting = [walk.spawn("global", ["ecs-global", "--id", "all"])]
        for d in DETECTORS:
            starting.append(walk.spawn(d, ["ecs-detector", "--id", d]))
        if extra:
            starting.append(walk.spawn("simhost", ["ecs-simhost", "--ids", f"1-{args.detectors}",
                                                   "--prefix", "sim", "--type", "STS"]))
        addresses = await defer.gatherResults(starting, consumeErrors=True)
        endpoint = {"TFC": addresses[0], "DCS": addresses[0], "QA": addresses[0], "FLES": addresses[0]}
        for d, address in zip(DETECTORS, addresses[1:]):
            endpoint[d] = address
        for d in extra:
            endpoint[d] = addresses[-1]
        stages = [*STAGES[:1], (*DETECTORS, *extra), *STAGES[2:]]
        await walk.until(tuple(endpoint), "Unconfigured")
        for stage in stages:
            print(f"configuring {', '.join(stage[:8])}{' ...' if len(stage) > 8 else ''}")
            started = reactor.seconds()
            for system in stage:
                body: dict[str, Any] = {"config": {"config_id": f"demo-{system}", "parameters": {}}}
                if system in ("TFC", "DCS", "QA", "FLES"):
                    body["partition"] = "demo"
                await node.connect(endpoint[system]).request(system, "configure", body)
            await walk.until(stage, "Active")
            print(f"stage done in {reactor.seconds() - started:.2f} s")
        for system in ("QA", "FLES"):
            await node.connect(endpoint[system]).request(system, "start", {"partition": "demo"})
        await walk.until(("QA", "FLES"), "Recording")
        print("recording; stopping again")
        for system in ("QA", "FLES"):
            await node.connect(endpoint[system]).request(system, "stop", {"partition": "demo"})
        print("walk-through done; agents keep running. Try:\n"
              f"  .venv/bin/ecs inject STS error --endpoint {endpoint['STS']} --state-dir {state_dir}\n"
              f"  .venv/bin/ecs agent-status STS --endpoint {endpoint['STS']} --state-dir {state_dir}\n"
              "Ctrl-C stops everything.")
        forever: defer.Deferred[None] = defer.Deferred()
        reactor.addSystemEventTrigger("before", "shutdown", lambda: forever.callback(None) if not forever.called else None)
        await forever
    finally:
        await walk.stop()
        await node.close()


if __name__ == "__main__":
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, sys.argv[1:])))
