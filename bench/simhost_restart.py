"""
How fast a sim host's detectors are back after the sim host is killed and
started again (issue 11: "2,000 back within 10 s").

Run from the repository root::

    .venv/bin/python bench/simhost_restart.py [--detectors N] [--rounds R]

What it does, in a temporary directory:

1. serves the ECA's registry in this process (the real
   L{ecs.net.remote_registry.RegistryService} on a ZeroMQ endpoint, with
   partition C{bench} holding detectors C{D1..DN} of type C{BENCH}), so the
   agents find each other as under the ECA: at run-time ports, through the
   registry, with no inventory;
2. starts C{twistd -n ecs-pca --id bench} and C{twistd -n ecs-simhost
   --ids 1-N --prefix D --type BENCH} (through C{bench/configure_agent.py}:
   each in its own process group, killed by its pid at the end), settings
   C{security: none} and the shipped heartbeat (1 s interval, 2 s timeout);
3. waits until every detector is connected in the PCA (its C{snapshot},
   in pages);
4. R times: SIGKILLs the sim host's process group, starts a new one at
   once, and measures from the kill: C{registered_s} (every detector
   registered again at the new endpoint), C{connected_s} (every detector
   connected in the PCA again), and from the new process's start
   C{back_after_start_s} (the same, minus the kill-to-spawn gap).

Progress goes to stderr; the last line on stdout is one JSON object::

    {"detectors": N, "rounds": R, "registered_s": [..], "connected_s": [..],
     "back_after_start_s": [..], "median_connected_s": ..}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import configure_common as common  # noqa: E402
from benchlib import BenchError, free_ports, say, sleep  # noqa: E402
from configure import Agents, _signal_group, snapshot  # noqa: E402


class Registry:
    """The ECA's registry, served by this process, over the bench's one partition."""

    def __init__(self, reactor: Any, address: str, detectors: list[str]) -> None:
        from ecs.net.remote_registry import REGISTRY, RegistryService
        from ecs.net.zeromq import ZmqNode

        self.node = ZmqNode(reactor, "eca", None, request_timeout=10.0)
        members = set(detectors)

        async def partitions() -> list[str]:
            return [common.PARTITION]

        async def detectors_of(partition: str) -> list[str]:
            return list(detectors) if partition == common.PARTITION else []

        async def detector(detector_id: str) -> dict[str, Any] | None:
            if detector_id not in members:
                return None
            return {"type": common.DETECTOR_TYPE, "partition": common.PARTITION}

        self.service = RegistryService(self.node, reactor, partitions, detectors_of, detector)
        self.node.serve(address).register(REGISTRY, self.service.handlers())

    def endpoints(self, kind: str, ids: list[str]) -> set[str | None]:
        """The distinct endpoints C{ids} are registered at (None: not registered)."""
        entries = self.service.entries
        return {entries[(kind, i)].info.endpoint if (kind, i) in entries else None for i in ids}


def connected(entries: dict[str, Any], detectors: list[str]) -> int:
    """How many of C{detectors} the PCA shows connected."""
    return sum(1 for d in detectors if entries.get(f"system/{d}", {}).get("connected"))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import reactor

    tmp = Path(tempfile.mkdtemp(prefix="ecs-bench-simhost-"))
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["ECS_BENCH_PARENT"] = str(os.getpid())
    agents = Agents(tmp, env)
    registry: Registry | None = None
    try:
        (port,) = free_ports(1)
        address = f"tcp://127.0.0.1:{port}"
        (tmp / "ecs.yaml").write_text(
            f"registry: {{address: '{address}'}}\nsecurity: none\nlog_level: info\n"
            "heartbeat: {interval: 1.0, timeout: 2.0}\n"
        )
        (tmp / "subsystems.yaml").write_text(common.subsystems_yaml())
        detectors = [f"{common.PREFIX}{n}" for n in range(1, args.detectors + 1)]
        registry = Registry(reactor, address, detectors)
        common_args = ["--config", "ecs.yaml", "--subsystems", "subsystems.yaml", "--state-dir", str(tmp)]
        pca = agents.spawn("pca", ["ecs-pca", "--id", common.PARTITION, *common_args])
        simhost_args = ["ecs-simhost", "--ids", f"1-{args.detectors}", "--prefix", common.PREFIX,
                        "--type", common.DETECTOR_TYPE, *common_args]
        simhost = agents.spawn("simhost", simhost_args)
        await agents.wait_for(pca, r"PCA \S+ serving at", 60)
        await agents.wait_for(simhost, r"serving \d+ agent", 120)
        pca_endpoint = registry.endpoints("pca", [common.PARTITION]).pop()
        assert pca_endpoint is not None
        client = registry.node.connect(pca_endpoint)
        await until_connected(client, detectors, 120, agents)
        say(f"{args.detectors} detectors connected; killing and restarting the sim host {args.rounds} times")
        registered_s, connected_s, after_start_s = [], [], []
        for _ in range(args.rounds):
            old = registry.endpoints("detector", detectors)
            killed = time.monotonic()
            _signal_group(simhost.pid, signal.SIGKILL)
            simhost = agents.spawn("simhost", simhost_args)
            spawned = time.monotonic()
            registered = None
            while True:
                now = time.monotonic()
                if not simhost.alive:
                    raise BenchError(f"the new sim host exited ({simhost.exit_code}):\n{simhost.tail()}")
                if registered is None:
                    where = registry.endpoints("detector", detectors)
                    if len(where) == 1 and where.isdisjoint(old) and None not in where:
                        registered = now - killed
                if registered is not None and connected(await snapshot(client), detectors) == len(detectors):
                    break
                if now - killed > args.limit:
                    raise BenchError(f"not all back within {args.limit} s")
                await sleep(0.05)
            done = time.monotonic()
            registered_s.append(round(registered, 2))
            connected_s.append(round(done - killed, 2))
            after_start_s.append(round(done - spawned, 2))
            say(f"registered {registered:.2f} s, connected {done - killed:.2f} s after the kill")
            await sleep(2.0)  # settled before the next kill
        return {
            "detectors": args.detectors,
            "rounds": args.rounds,
            "registered_s": registered_s,
            "connected_s": connected_s,
            "back_after_start_s": after_start_s,
            "median_connected_s": statistics.median(connected_s),
        }
    finally:
        agents.kill_all()
        if registry is not None:
            await registry.node.close()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def until_connected(client: Any, detectors: list[str], timeout: float, agents: Agents) -> None:
    """Poll the PCA until every detector is connected."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        agents.check_alive()
        count = connected(await snapshot(client), detectors)
        if count == len(detectors):
            return
        await sleep(0.2)
    raise BenchError(f"only {count} of {len(detectors)} detectors connected after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Time for a restarted sim host's detectors to be back.")
    parser.add_argument("--detectors", type=int, default=2000, help="detectors in the sim host (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="kills and restarts (default 3)")
    parser.add_argument("--limit", type=float, default=120.0, help="give up a round after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, files)")
    args = parser.parse_args()
    if args.detectors < 1 or args.rounds < 1:
        parser.error("--detectors and --rounds must be at least 1")

    from twisted.internet import defer, task
    from twisted.python.failure import Failure

    def report(result: dict[str, Any]) -> None:
        print(json.dumps(result), flush=True)

    def failed(failure: Failure) -> None:
        failure.trap(BenchError)
        say(f"FAILED: {failure.value}")
        raise SystemExit(1)

    task.react(lambda reactor: defer.ensureDeferred(run(args)).addCallbacks(report, failed))


if __name__ == "__main__":
    main()
