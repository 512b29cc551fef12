# -*- test-case-name: tests.test_supervision_ssh -*-
"""
Supervision through the C{ssh} launcher, end to end: a real C{ecs-eca}
(CURVE security, its own SSH client key and known-hosts file in its state
directory) starts a real detector agent through a real OpenSSH server on
loopback (L{tests.sshd}), driven through the HTTP API.

The agent gets its settings only from its placement's C{args} (a settings
file naming the ECA's registry and key directory, and a state directory of
its own), as a remote agent would.  Everything it writes lives under the
ECA's temporary state directory, so the agent processes are found and
killed in cleanup by that marker (L{tests.test_supervision_e2e}), by pid
and process group: never by name.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import yaml

from ecs.launch import _proc
from ecs.net.keys import init_keys
from tests import test_supervision_e2e as local_e2e
from tests.procs import pid_alive, spawn, tool
from tests.sshd import SSHD, SshServer, start_sshd
from tests.test_supervision_e2e import EcaProcessCase  # no tests of its own: not run twice

AGENT = "detector:SSH1"


class SshSupervisionTests(EcaProcessCase):
    """An agent placed on an SSH host: refused host key, start, restart, adoption, stop, ECA stop."""

    timeout = 150

    async def setUp(self) -> None:  # type: ignore[override]  # trial awaits an async setUp
        self.sshd: SshServer = await start_sshd(self)  # stopped last: the ECA's stop needs it
        EcaProcessCase.setUp(self)
        init_keys(self.state_dir / "keys")
        self.remote = self.state_dir / "remote"  # the "remote host's" files, under the marker
        self.workdir = self.remote / "work"

    def placement(self) -> dict[str, Any]:
        """The agent's placement on the sshd: its own settings file and state directory in C{args}."""
        self.remote.mkdir(parents=True, exist_ok=True)
        settings = self.remote / "ecs.yaml"
        settings.write_text(yaml.safe_dump({
            "registry": {"address": f"tcp://127.0.0.1:{self.registry_port}"},
            "security": "curve",
            "key_dir": str(self.state_dir / "keys"),
        }), encoding="utf-8")
        options = {
            "port": self.sshd.port,
            "user": self.sshd.user,
            "twistd": tool("twistd"),
            "workdir": str(self.workdir),
            "args": ["--config", str(settings), "--state-dir", str(self.remote / "var")],
            "agent_args": ["--type", "STS"],
        }
        return {"host": "127.0.0.1", "launcher": "ssh", "autostart": False, "options": options}

    def running(self, old: int | None = None) -> Any:
        """A check for L{until}: the agent runs, with a pid (not C{old}), and is registered."""
        def check(agents: dict[str, dict[str, Any]]) -> bool:
            agent = agents[AGENT]
            pid = agent["status"]["pid"]
            return (agent["supervision"]["state"] == "running" and agent["status"]["running"]
                    and isinstance(pid, int) and pid != old and agent["registered"])
        return check

    def assert_group_leader(self, pid: int) -> None:
        """C{pid} lives as the leader of its own process group, and is our agent."""
        stat = _proc.read_stat(pid)
        assert stat is not None, f"no process {pid}"
        self.assertEqual(stat.pgid, pid)
        self.assertEqual(local_e2e.agent_processes(self.marker), {pid: AGENT})

    async def test_ssh_agent_lifecycle(self) -> None:
        """
        An unknown host key fails the start (502 C{host_key}, state
        C{failed}, nothing run); once the key is known the agent runs as a
        group leader and registers, its output is readable, a SIGKILLed agent
        is restarted, a crashed ECA's successor adopts it, an unreachable host
        makes its state unknown (not stopped), a stop leaves no process of its
        group, and a graceful ECA stop stops a running one.
        """
        proc, transport = self.start_eca("ecs-eca", "--ssh", "none")
        await self.login(proc)
        ssh_dir = self.state_dir / "ssh"
        public = (ssh_dir / "client_ed25519.pub").read_text().split()
        self.assertEqual(public[0], "ssh-ed25519")
        with (self.sshd.tmp / "authorized_keys").open("a") as keys:
            keys.write(" ".join(public[:2]) + "\n")
        known_hosts = ssh_dir / "known_hosts"
        self.assertEqual(known_hosts.read_text(), "")

        self.assertEqual((await self.api("POST", "/api/control"))[0], 200)
        code, body = await self.api("POST", "/api/detectors", {"id": "SSH1", "type": "STS"})
        self.assertEqual(code, 200, body)
        code, body = await self.api("PUT", f"/api/agents/{AGENT}", self.placement())
        self.assertEqual(code, 200, body)
        self.assertEqual((body["launcher"], body["host"]), ("ssh", "127.0.0.1"))

        # The sshd's key is not in the ECA's known-hosts file: refused, nothing run.
        code, body = await self.api("POST", f"/api/agents/{AGENT}/start")
        self.assertEqual((code, body["error"]), (502, "host_key"), body)
        self.assertIn(f"[127.0.0.1]:{self.sshd.port}", body["reason"])
        code, body = await self.api("GET", f"/api/agents/{AGENT}")
        self.assertEqual(body["supervision"]["state"], "failed")
        self.assertIn("host_key", body["supervision"]["reason"])
        self.assertIn("is unknown", body["supervision"]["reason"])
        self.assertFalse(body["status"]["running"])
        self.assertFalse(self.workdir.exists(), "the start script ran")
        self.assertEqual(local_e2e.agent_processes(self.marker), {})

        known_hosts.write_text(f"[127.0.0.1]:{self.sshd.port} {self.sshd.host_key_line}\n")
        code, body = await self.api("POST", f"/api/agents/{AGENT}/start")
        self.assertEqual(code, 200, body)
        agents = await self.until(self.running(), "the ssh agent running and registered")
        pid = agents[AGENT]["status"]["pid"]
        self.assert_group_leader(pid)
        self.assertEqual(agents[AGENT]["supervision"]["restarts"], 0)

        code, body = await self.api("GET", f"/api/agents/{AGENT}/output?lines=50")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["agent"], AGENT)
        self.assertIn(f"{AGENT} serving 1 agent(s)", body["text"])
        self.assertTrue((self.workdir / "logs" / "detector-SSH1.log").exists())

        os.kill(pid, signal.SIGKILL)
        agents = await self.until(self.running(old=pid), "the killed ssh agent restarted")
        self.assertEqual(agents[AGENT]["supervision"]["restarts"], 1)
        self.assertFalse(pid_alive(pid))
        pid = agents[AGENT]["status"]["pid"]
        self.assert_group_leader(pid)

        # A crashed ECA leaves the remote agent running; the next one adopts it.
        transport.signalProcess("KILL")
        await proc.ended
        self.assert_group_leader(pid)
        proc, transport = self.start_eca("ecs-eca", "--ssh", "none")
        await self.login(proc)
        agents = await self.until(self.running(), "the ssh agent adopted")
        self.assertEqual(agents[AGENT]["status"]["pid"], pid)
        self.assert_group_leader(pid)

        # An unreachable host: the agent's state is unknown (never stopped, not restarted) until it answers.
        os.kill(self.sshd.pid, signal.SIGKILL)
        await self.sshd.process.ended
        agents = await self.until(lambda a: a[AGENT]["supervision"]["state"] == "unknown", "state unknown")
        self.assertIn("unreachable", agents[AGENT]["supervision"]["reason"])
        self.assertEqual(agents[AGENT]["supervision"]["restarts"], 0)
        self.assert_group_leader(pid)
        sshd, _ = spawn(self, "sshd", [SSHD, "-D", "-e", "-f", str(self.sshd.tmp / "sshd_config")],
                        cwd=str(self.sshd.tmp))
        await sshd.wait_for(rf"Server listening on 127\.0\.0\.1 port {self.sshd.port}", timeout=15)
        agents = await self.until(self.running(), "the ssh agent known to run again")
        self.assertEqual(agents[AGENT]["status"]["pid"], pid)

        code, body = await self.api("POST", f"/api/agents/{AGENT}/stop")
        self.assertEqual(code, 200, body)
        self.assertEqual(body["supervision"]["state"], "stopped")
        self.assertFalse(body["status"]["running"])
        self.assertEqual(_proc.group_members(pid), [])
        self.assertEqual(local_e2e.agent_processes(self.marker), {})

        code, body = await self.api("POST", f"/api/agents/{AGENT}/start")
        self.assertEqual(code, 200, body)
        agents = await self.until(self.running(old=pid), "the ssh agent started again")
        pid = agents[AGENT]["status"]["pid"]
        self.assert_group_leader(pid)
        transport.signalProcess("TERM")
        await proc.ended
        self.assertEqual(_proc.group_members(pid), [])
        self.assertEqual(local_e2e.agent_processes(self.marker), {})
        self.assertTrue(any(f"stopped {AGENT} on 127.0.0.1" in line for line in proc.lines), proc.lines[-30:])


__all__ = ["SshSupervisionTests"]
