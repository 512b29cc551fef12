# -*- test-case-name: tests.test_walkthrough -*-
"""
A walk through a partition, until the ECA and its web GUI exist.

C{python -m agents.walkthrough [--state-dir var] [--detectors N]} starts, as
real processes with CURVE keys under the state directory: the four global
systems (one C{ecs-global --id all}), the detectors STS, MVD, TOF, TRD and
RICH (one C{ecs-detector} each), a sim host with N more, and the PCA of
partition C{demo} with the configurations of C{etc/demo-configs.yaml}.  It
prints what the PCA publishes (partition state, each system's state, the
PCA's log), configures with tag C{demo} and auto-configure, starts and
stops recording, and keeps everything running until Ctrl-C, which stops
every process it started (by pid).

This is what C{make demo} runs until the ECA's C{ecs-demo} replaces it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, protocol, task
from twisted.internet.error import ProcessExitedAlready

from ecs.config.settings import Settings

DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")
GLOBALS = ("TFC", "DCS", "QA", "FLES")


def free_port() -> int:
    """A loopback port free now: the inventory names fixed endpoints."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Child(protocol.ProcessProtocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.ready: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.lines: list[str] = []

    def outReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.lines.append(line)
            if " serving " in line and not self.ready.called:
                self.ready.callback(line)
            if any(f"#{level}]" in line for level in ("warn", "error", "critical")):
                print(f"  [{self.name}] {line.split('] ', 1)[-1]}")

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            tail = "\n".join(self.lines[-10:])
            self.ready.errback(RuntimeError(f"{self.name} exited before serving:\n{tail}"))
        self.ended.callback(None)


class Walkthrough:
    """The processes started and the partition as published by its PCA."""

    def __init__(self, reactor: Any, state_dir: Path) -> None:
        self.reactor = reactor
        self.state_dir = state_dir
        self.children: list[tuple[_Child, Any]] = []
        self.partition: dict[str, Any] = {}
        self.waiters: list[tuple[str, defer.Deferred[None]]] = []

    def spawn(self, name: str, args: list[str]) -> _Child:
        twistd = str(Path(sys.executable).parent / "twistd")
        child = _Child(name)
        argv = [twistd, "-n", "--pidfile=", *args, "--state-dir", str(self.state_dir),
                "--inventory", str(self.state_dir / "demo-inventory.yaml")]
        transport = self.reactor.spawnProcess(child, twistd, argv, env=dict(os.environ))
        self.children.append((child, transport))
        print(f"started {name} (pid {transport.pid})")
        return child

    def event(self, envelope: Any) -> None:
        """Print what the PCA publishes; wake whoever waits for a state."""
        body = envelope.body
        if envelope.type == "log":
            print(f"  log  {body['source']:>6}: {body['message']}")
        elif envelope.type == "state" and body["key"] == "partition":
            record = body["value"]
            if record["state"] != self.partition.get("state"):
                print(f"PARTITION {record['state']}  (tag {record['tag']})")
            self.partition = record
            for waiter in list(self.waiters):
                if waiter[0] == record["state"] and record.get("operation") is None:
                    self.waiters.remove(waiter)
                    waiter[1].callback(None)
        elif envelope.type == "state" and body["key"].startswith("system/"):
            value = body["value"]
            print(f"  {value['id']:>6} {value['state']:<18} {value['raw_state'] or '':<18} "
                  f"tag={value['tag']} {value['comment']}")

    def until(self, state: str) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if self.partition.get("state") == state and self.partition.get("operation") is None:
            d.callback(None)
        else:
            self.waiters.append((state, d))
        return d

    async def stop(self) -> None:
        for _child, transport in self.children:
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                pass
        for child, _ in self.children:
            await child.ended


def write_inventory(path: Path, extra: list[str]) -> dict[str, str]:
    """The demo inventory with fixed loopback endpoints; returns them."""
    endpoint = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("pca", "globals", *DETECTORS)}
    endpoint["simhost"] = f"tcp://127.0.0.1:{free_port()}"
    detectors = "".join(f"  {d}: {{type: {d}, endpoint: '{endpoint[d]}'}}\n" for d in DETECTORS)
    detectors += "".join(f"  {d}: {{type: STS, endpoint: '{endpoint['simhost']}'}}\n" for d in extra)
    path.write_text(
        "# written by agents.walkthrough\n"
        f"partitions:\n  demo: {{endpoint: '{endpoint['pca']}', "
        f"detectors: [{', '.join([*DETECTORS, *extra])}]}}\n"
        f"detectors:\n{detectors}"
        "global_systems:\n" + "".join(f"  {g}: {{endpoint: '{endpoint['globals']}'}}\n" for g in GLOBALS)
    )
    return endpoint


def prepare(state: str, extra: list[str]) -> tuple[Path, Settings, dict[str, str], Path]:
    """
    The settings, keys (made if missing), the inventory and the
    configurations file under the state directory C{state}, before the
    reactor's part (a few small local files).

    @return: the state directory, the settings, the inventory's endpoints
        and the configurations file.
    """
    from ecs.config.settings import load_settings
    from ecs.net.keys import init_keys
    from ecs.paths import data_dir

    state_dir = Path(state).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(state_dir=state_dir)
    key_dir = settings.key_dir
    if not (key_dir / "server.key_secret").exists():
        init_keys(key_dir)
        print(f"created CURVE keys in {key_dir}")
    endpoint = write_inventory(state_dir / "demo-inventory.yaml", extra)
    configs = data_dir("etc") / "demo-configs.yaml"
    if extra:
        # the extra detectors need configurations too: add them to a copy
        data = yaml.safe_load(configs.read_text(encoding="utf-8"))
        for d in extra:
            data["configurations"][f"{d}-default"] = {"system": d, "parameters": {"threshold": 12}}
            data["tags"]["demo"].append(f"{d}-default")
        configs = state_dir / "demo-configs.yaml"
        configs.write_text(yaml.safe_dump(data), encoding="utf-8")
    return state_dir, settings, endpoint, configs


async def main(reactor: Any, argv: list[str]) -> None:
    """Run the walk-through (see the module docstring)."""
    from ecs.net.keys import load_keys
    from ecs.net.zeromq import ZmqNode

    parser = argparse.ArgumentParser(prog="python -m agents.walkthrough")
    parser.add_argument("--state-dir", default="var")
    parser.add_argument("--detectors", type=int, default=0, help="extra simulated detectors")
    args = parser.parse_args(argv)
    extra = [f"sim{n}" for n in range(1, args.detectors + 1)]
    state_dir, settings, endpoint, configs = prepare(args.state_dir, extra)
    # It plays the ECA (commands the PCA): with the ECA's own key.
    node = ZmqNode(reactor, "walkthrough", load_keys(settings.key_dir, identity="eca", enrol=True))
    walk = Walkthrough(reactor, state_dir)
    try:
        children = [walk.spawn("global", ["ecs-global", "--id", "all"])]
        children += [walk.spawn(d, ["ecs-detector", "--id", d]) for d in DETECTORS]
        if extra:
            children.append(walk.spawn("simhost", [
                "ecs-simhost", "--ids", f"1-{args.detectors}", "--prefix", "sim", "--type", "STS"]))
        pca = walk.spawn("pca", ["ecs-pca", "--id", "demo", "--configs", str(configs)])
        await defer.gatherResults([c.ready for c in [*children, pca]], consumeErrors=True)
        publish = next(line for line in pca.lines if "publishing at" in line)
        publish_address = publish.split("publishing at ", 1)[1].split(": ")[0]
        node.subscribe(publish_address, ["state/", "log/"], walk.event)
        client = node.connect(endpoint["pca"])
        first = await client.request("demo", "snapshot", {"limit": 2000})
        walk.partition = first["entries"]["partition"]["value"]
        await task.deferLater(reactor, settings.heartbeat_timeout, lambda: None)  # systems connect

        print("\nconfigure with tag 'demo', auto-configure")
        await client.request("demo", "configure", {"tag": "demo", "auto": True})
        await walk.until("QA_Active")
        print("\nstart recording")
        await client.request("demo", "start", {})
        await walk.until("Recording")
        print("\nstop recording")
        await client.request("demo", "stop", {})
        await walk.until("QA_Active")
        hint = f"--endpoint {endpoint['STS']} --state-dir {state_dir}"
        print("\nwalk-through done; agents keep running. Try:\n"
              f"  .venv/bin/ecs inject STS error {hint}\n"
              f"  .venv/bin/ecs agent-status STS {hint}\n"
              "Ctrl-C stops everything.")
        forever: defer.Deferred[None] = defer.Deferred()
        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: forever.callback(None) if not forever.called else None
        )
        await forever
    finally:
        await walk.stop()
        await node.close()


if __name__ == "__main__":
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, sys.argv[1:])))
