"""
Fuzzing every agent endpoint of a running C{ecs-demo} (the ECA's registry,
the PCA, a detector controller, the global systems) with allowed keys: random
bytes, broken JSON, envelopes with fields of the wrong type, unknown kinds
and message types, known types with bodies of the wrong types, and frames
over the size limit.  Afterwards every agent still runs and answers, the
partition and every system are as before, and no agent grew by more than
L{MAX_GROWTH_MB}; a configure through the API still works.

C{ECS_FUZZ_MESSAGES} sets the number of messages (default L{DEFAULT_MESSAGES};
C{bench/fuzz.py} runs tens of thousands and prints the figures).
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from typing import Any

import zmq
from twisted.internet import reactor, task, threads

from ecs import protocol
from ecs.net.keys import load_keys
from tests.attack_harness import DemoHarness

DEFAULT_MESSAGES = 3000
MAX_GROWTH_MB = 64

#: Message types with bodies the receiver validates, per receiver (types
#: that take no parameters, such as abort, would be obeyed from the ECA's
#: key whatever their body: they are sent from the other key only).
VALIDATED = {
    "registry": ["register", "unregister", "lookup", "partition", "detector"],
    "demo": ["configure", "reset", "alarm", "add_detector", "remove_detector", "snapshot", "states"],
    "TRD": ["inject", "assign"],
    "DCS": ["inject", "add_partition", "remove_partition", "status"],
}
ALL_TYPES = sorted({t for types in VALIDATED.values() for t in types} | {
    "abort", "start", "stop", "lock", "unlock", "error", "configure", "heartbeat", "epoch"})
#: Wrong values for any field; the strings only from the key that may not
#: command (from the ECA's key a string may be a valid argument: assign a
#: detector to partition "x" is a real change the ECA may ask for).
WRONG_VALUES: list[Any] = [1, -1, 2**70, 1.5, True, [], [1, "x"], {"a": {"b": []}}]
WRONG_STRINGS: list[Any] = ["", "x" * 5000, "\x00", "D1"]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def envelope(rng: random.Random, target: str, eca_key: bool) -> bytes:
    """One malformed or wrongly typed message."""
    wrong = WRONG_VALUES if eca_key else WRONG_VALUES + WRONG_STRINGS
    choice = rng.randrange(6)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 300))
    base: dict[str, Any] = {
        "v": protocol.VERSION, "kind": "request", "id": f"f{rng.randrange(10**9)}",
        "sender": "eca" if eca_key else "detector:STS",
        "target": target, "type": rng.choice(VALIDATED[target]), "body": {},
    }
    if choice == 1:
        return json.dumps(base).encode()[: rng.randrange(1, 60)]  # cut short
    if choice == 2:
        field = rng.choice(list(base))
        base[field] = copy.deepcopy(rng.choice(wrong))
    elif choice == 3:
        base[rng.choice(["kind", "type", "target"])] = f"unknown-{rng.randrange(1000)}"
    else:
        if not eca_key:
            base["type"] = rng.choice(ALL_TYPES)
        keys = ["kind", "id", "tag", "configs", "system", "detector", "after", "limit", "updates", "what",
                "partition", "config", "endpoint", "incarnation"]
        base["body"] = {rng.choice(keys): copy.deepcopy(rng.choice(wrong)) for _ in range(rng.randrange(1, 4))}
    if base["type"] in ("assign", "add_partition", "remove_partition") and isinstance(base["body"], dict):
        # never absent or None: an assign without a partition is a valid unassign
        base["body"]["partition"] = copy.deepcopy(rng.choice(wrong))
    return json.dumps(base).encode()


def blast(keys: Any, endpoints: dict[str, str], count: int, seed: int, eca_key: bool, max_size: int) -> dict[str, Any]:
    """
    Send C{count} messages spread over the endpoints from one DEALER per
    endpoint, reading whatever comes back (in a thread: plain pyzmq, so
    the test's reactor keeps running).
    """
    rng = random.Random(seed)
    context = zmq.Context()
    sockets = {}
    try:
        for target, address in endpoints.items():
            socket = context.socket(zmq.DEALER)
            socket.curve_serverkey = keys.server_public
            socket.curve_publickey = keys.client_public
            socket.curve_secretkey = keys.client_secret
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SNDHWM, 100_000)
            socket.connect(address)
            sockets[target] = socket
        replies = sent = 0
        started = time.monotonic()
        targets = list(endpoints)
        for n in range(count):
            target = targets[n % len(targets)]
            socket = sockets[target]
            if n % 500 == 499:
                frames = [b"x" * (max_size + 10_000)]  # over the limit: the peer drops the connection
            elif n % 97 == 0:
                frames = [b"a", b"b", b"c"]  # several frames
            else:
                frames = [envelope(rng, target, eca_key)]
            socket.send_multipart(frames)
            sent += 1
            for s in sockets.values():
                while s.poll(0):
                    s.recv_multipart()
                    replies += 1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not any(s.poll(100) for s in sockets.values()):
                break
            for s in sockets.values():
                while s.poll(0):
                    s.recv_multipart()
                    replies += 1
        return {"sent": sent, "replies": replies, "seconds": time.monotonic() - started}
    finally:
        for socket in sockets.values():
            socket.close(0)
        context.term()


class FuzzTests(DemoHarness):
    """Every agent endpoint under malformed traffic from allowed keys."""

    async def test_fuzz_every_endpoint(self) -> None:
        """No crash, no change of state, bounded memory; the agents still work afterwards."""
        count = int(os.environ.get("ECS_FUZZ_MESSAGES", DEFAULT_MESSAGES))
        await self.start_demo()
        eca_keys = load_keys(self.var / "keys", need_server_secret=False, identity="eca")
        sts_keys = load_keys(self.var / "keys", need_server_secret=False, identity="detector.STS")
        probe = self.attacker("detector.STS")
        endpoints = {
            "registry": self.registry_address,
            "demo": await self.lookup(probe, "pca", "demo"),
            "TRD": await self.lookup(probe, "detector", "TRD"),
            "DCS": await self.lookup(probe, "global", "DCS"),
        }
        before = await self.partition()
        code, agents = await self.api("GET", "/api/agents")
        self.assertEqual(code, 200, agents)
        pids = {
            str(agent.get("agent")): agent["status"]["pid"]
            for agent in agents
            if isinstance((agent.get("status") or {}).get("pid"), int)
        }
        self.assertGreaterEqual(len(pids), 7, agents)  # the PCA, 5 detectors, the global systems
        pids["eca"] = self.demo_pid()
        memory = {name: rss_mb(pid) for name, pid in pids.items()}
        results = []
        for keys, eca_key, seed in ((eca_keys, True, 1), (sts_keys, False, 2)):
            results.append(await threads.deferToThread(
                blast, keys, endpoints, count // 2, seed, eca_key, protocol.DEFAULT_MAX_SIZE))
        await task.deferLater(reactor, 1.0, lambda: None)
        grown = {name: rss_mb(pid) - memory[name] for name, pid in pids.items()}
        after = await self.partition()
        report = {
            "messages": sum(r["sent"] for r in results),
            "replies": sum(r["replies"] for r in results),
            "messages_per_s": round(sum(r["sent"] for r in results) / sum(r["seconds"] for r in results)),
            "agents": len(pids),
            "max_rss_growth_mb": round(max(grown.values()), 1),
        }
        if os.environ.get("ECS_FUZZ_REPORT"):
            with open(os.environ["ECS_FUZZ_REPORT"], "w", encoding="utf-8") as f:
                json.dump(report, f)
        self.assertEqual(report["messages"], count // 2 * 2)
        self.assertGreater(report["replies"], 0)
        for name, growth in grown.items():
            self.assertLess(growth, MAX_GROWTH_MB, f"{name} grew by {growth:.1f} MB")
        self.assertEqual(after["state"], before["state"])
        self.assertEqual(
            {s["id"]: (s["state"], s["connected"]) for s in after["systems"]},
            {s["id"]: (s["state"], s["connected"]) for s in before["systems"]},
        )
        await self.configure_works()

    def demo_pid(self) -> int:
        """The ECA's pid (the demo process)."""
        transport = self.demo_transport
        return int(transport.pid)
