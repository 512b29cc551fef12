"""
End-to-end tests of a partition: a real PCA, global systems and five
detector controllers as twistd processes on loopback (CURVE keys), driven
and watched over ZeroMQ as the ECA will: commands on the PCA's endpoint,
state from its publisher.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from ecs.net.keys import init_keys, load_keys
from ecs.net.transport import RequestError
from ecs.net.zeromq import ZmqNode
from ecs.protocol import Envelope
from tests.procs import Watched, spawn, tool

DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")
STEP = 0.4  # seconds per simulated configure step


def free_port() -> int:
    """A loopback port free right now (the agents bind fixed ports from the inventory)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PartitionProcesses(TestCase):
    """Files, processes and a watcher for one partition."""

    timeout = 180

    def write_files(self) -> None:
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir()
        init_keys(self.tmp / "keys")
        (self.tmp / "ecs.yaml").write_text(
            "heartbeat: {interval: 0.2, timeout: 0.8}\nrequest_timeout: 3.0\nlog_level: info\n"
        )
        action = f"{{kind: simulated, duration: {STEP}}}"
        (self.tmp / "subsystems.yaml").write_text(
            "detector_types:\n"
            f"  E2E: {{fsm: detector-2step.yaml, action: {action}, command_timeout: 3}}\n"
            "global_systems:\n"
            + "".join(
                f"  {g}: {{fsm: {fsm}, action: {action}, command_timeout: 3}}\n"
                for g, fsm in (("TFC", "global.yaml"), ("DCS", "global.yaml"),
                               ("QA", "global-recording.yaml"), ("FLES", "global-recording.yaml"))
            )
        )
        self.ports = {name: free_port() for name in ("pca", "globals", *DETECTORS)}
        endpoint = {name: f"tcp://127.0.0.1:{port}" for name, port in self.ports.items()}
        self.endpoint = endpoint
        (self.tmp / "inventory.yaml").write_text(
            "partitions:\n"
            f"  p1: {{endpoint: '{endpoint['pca']}', detectors: [{', '.join(DETECTORS)}]}}\n"
            "detectors:\n"
            + "".join(f"  {d}: {{type: E2E, endpoint: '{endpoint[d]}'}}\n" for d in DETECTORS)
            + "global_systems:\n"
            + "".join(f"  {g}: {{endpoint: '{endpoint['globals']}'}}\n" for g in ("TFC", "DCS", "QA", "FLES"))
        )
        systems = ("TFC", "DCS", "QA", "FLES", *DETECTORS)
        (self.tmp / "configs.yaml").write_text(
            "configurations:\n"
            + "".join(f"  {s.lower()}-1: {{system: {s}, parameters: {{gain: 1}}}}\n" for s in systems)
            + "tags:\n"
            + f"  run: [{', '.join(s.lower() + '-1' for s in systems)}]\n"
        )

    def common(self) -> list[str]:
        return ["--config", "ecs.yaml", "--subsystems", "subsystems.yaml", "--inventory",
                "inventory.yaml", "--state-dir", str(self.tmp)]

    def start_agent(self, name: str, args: list[str]) -> tuple[Watched, Any]:
        proc, transport = spawn(
            self, name, [tool("twistd"), "-n", "--pidfile=", *args, *self.common()], cwd=str(self.tmp)
        )
        return proc, transport

    def start_detector(self, name: str) -> tuple[Watched, Any]:
        return self.start_agent(name, ["ecs-detector", "--id", name])

    def start_pca(self) -> tuple[Watched, Any]:
        return self.start_agent("pca", ["ecs-pca", "--id", "p1", "--configs", "configs.yaml"])

    async def start_all(self) -> None:
        self.write_files()
        # the tester commands the PCA as the ECA does, with the ECA's key
        keys = load_keys(self.tmp / "keys", identity="eca", enrol=True)
        self.node = ZmqNode(reactor, "tester", keys, request_timeout=5.0)
        self.addCleanup(self.node.close)
        self.procs: dict[str, tuple[Watched, Any]] = {}
        self.procs["globals"] = self.start_agent("globals", ["ecs-global", "--id", "all"])
        for d in DETECTORS:
            self.procs[d] = self.start_detector(d)
        self.procs["pca"] = self.start_pca()
        for proc, _ in self.procs.values():
            await proc.wait_for(r"serving")
        await self.watch()
        await self.until(lambda: self.all_connected(), "every system connected")

    async def watch(self) -> None:
        """Subscribe to the PCA's publisher (address from its log)."""
        pca, _ = self.procs["pca"]
        match = await pca.wait_for(r"publishing at (tcp://[0-9.]+:[0-9]+)")
        self.records: dict[str, dict[str, Any]] = {}
        self.states: list[str] = []
        self.log_lines: list[str] = []

        def event(envelope: Envelope) -> None:
            if envelope.type == "state":
                self.records[envelope.body["key"]] = envelope.body["value"]
                if envelope.body["key"] == "partition":
                    state = envelope.body["value"]["state"]
                    if not self.states or self.states[-1] != state:
                        self.states.append(state)
            elif envelope.type == "log":
                self.log_lines.append(envelope.body["message"])

        self.subscriber = self.node.subscribe(match.group(1), ["state/", "log/"], event)
        self.addCleanup(self.subscriber.close)
        # The subscription may miss the first events: start from a snapshot.
        snapshot = await self.pca_command("snapshot", limit=2000)
        for key, entry in snapshot["entries"].items():
            self.records.setdefault(key, entry["value"])

    def pca_command(self, type: str, **body: Any) -> defer.Deferred[dict[str, Any]]:
        return self.node.connect(self.endpoint["pca"]).request("p1", type, body)

    def all_connected(self) -> bool:
        systems = [v for k, v in self.records.items() if k.startswith("system/")]
        return len(systems) == 9 and all(v["connected"] for v in systems)

    def partition_state(self) -> str | None:
        record = self.records.get("partition")
        return record["state"] if record else None

    async def until(self, condition: Any, what: str, timeout: float = 30.0) -> None:
        for _ in range(int(timeout / 0.02)):
            if condition():
                return
            await task.deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(
            f"timed out waiting for {what}; partition {self.partition_state()}; "
            f"states {self.states}; last log: {self.log_lines[-8:]}"
        )

    async def reach(self, state: str, timeout: float = 30.0) -> None:
        await self.until(lambda: self.partition_state() == state, f"partition {state}", timeout)


class PartitionEndToEndTests(PartitionProcesses):
    """The issue's end-to-end scenarios."""

    async def test_configure_record_stop(self) -> None:
        """Five detectors configured to QA_Active; recording started and stopped."""
        await self.start_all()
        reply = await self.pca_command("configure", tag="run", auto=True)
        self.assertEqual(reply["state"], "Configuring_TFC")
        await self.reach("QA_Active")
        self.assertEqual(self.records["partition"]["tag"], "run")
        self.assertIn("Configuring_Detectors", self.states)
        for d in DETECTORS:
            self.assertEqual(
                (self.records[f"system/{d}"]["state"], self.records[f"system/{d}"]["tag"]), ("Active", f"{d.lower()}-1")
            )
        self.assertTrue(any(re.match(r"stage Detectors configured in \d", line) for line in self.log_lines))
        await self.pca_command("start")
        await self.reach("Recording")
        self.assertEqual(self.records["system/QA"]["state"], "Recording")
        await self.pca_command("stop")
        await self.reach("QA_Active")
        with self.assertRaises(RequestError) as refused:
            await self.pca_command("stop")
        self.assertEqual(refused.exception.code, "not_allowed")

    async def test_controller_killed_mid_configure(self) -> None:
        """SIGKILL of a detector mid-configure: fall-back, Connection Problem; after a restart configure works."""
        await self.start_all()
        await self.pca_command("configure", tag="run", auto=True)
        await self.reach("Configuring_Detectors")
        proc, transport = self.procs["TOF"]
        transport.signalProcess("KILL")
        await proc.ended
        await self.until(
            lambda: self.records["system/TOF"]["state"] == "Connection Problem", "TOF Connection Problem"
        )
        await self.reach("TFC_Active")
        self.assertTrue(any("TOF" in line and "failed" in line for line in self.log_lines), self.log_lines)
        status = await self.pca_command("status")
        self.assertIsNone(status["operation"])
        self.procs["TOF"] = self.start_detector("TOF")
        await self.procs["TOF"][0].wait_for(r"serving")
        await self.until(lambda: self.records["system/TOF"]["connected"], "TOF reconnected")
        await self.pca_command("configure", tag="run", auto=True)
        await self.reach("QA_Active")

    async def test_pca_restart(self) -> None:
        """A PCA killed and restarted re-derives QA_Active from the live systems and has its tag back."""
        await self.start_all()
        await self.pca_command("configure", tag="run", auto=True)
        await self.reach("QA_Active")
        proc, transport = self.procs["pca"]
        transport.signalProcess("KILL")
        await proc.ended
        self.subscriber.close()
        self.procs["pca"] = self.start_pca()
        await self.procs["pca"][0].wait_for(r"serving")
        await self.watch()
        await self.until(lambda: self.all_connected(), "every system connected again")
        await self.reach("QA_Active")
        status = await self.pca_command("status")
        self.assertEqual((status["state"], status["tag"], status["operation"]), ("QA_Active", "run", None))
        # and it works: a full cycle after the restart
        await self.pca_command("start")
        await self.reach("Recording")
        await self.pca_command("abort")
        await self.reach("Idle")
