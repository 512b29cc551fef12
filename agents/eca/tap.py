# -*- test-case-name: tests.test_demo -*-
"""
C{twistd -n ecs-eca} and C{twistd -n ecs-demo}: the ECA with its web API,
and the demo (the ECA, a seeded database, and every agent placed C{local}
on C{localhost} and started by the ECA's supervisor).

Start-up is asynchronous (the database is opened on the reactor's thread
pool), so L{ECAService} models it: C{startService} opens the store, makes
the first admin if there is none, starts the ECA, listens on the web
endpoint (a Twisted endpoint string: C{tcp:8080:interface=127.0.0.1}, or
C{ssl:...} for TLS) and, for the demo, seeds the inventory and the agents'
placements.  The supervisor (L{agents.eca.supervisor.supervisor}) then adopts the
agents still running from before and, with C{--autostart} (always on for
the demo), starts every placed autostart agent; when the ECA stops it stops
them all (unless C{--keep-agents}).  A failure is logged and the process
exits non-zero.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from agents._lifecycle import AsyncStartService
from ecs.config.settings import Settings, Subsystems
from ecs.fsm.sequence import Sequence

DEMO_DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")
#: The ECA passes each event on to the web: it reads few messages per turn
#: (bench/events.py: p99 from ~100 ms to ~40 ms at 1,000 detectors).
ECA_READ_BATCH = 16


SSH_CLIENT_KEY = Path("ssh") / "client_ed25519"
"""The ssh launcher's client key, under the state directory."""

SSH_KNOWN_HOSTS = Path("ssh") / "known_hosts"
"""The ssh launcher's known-hosts file (OpenSSH format), under the state directory."""


class ECAService(AsyncStartService):
    """The ECA process: database, registry, partitions, web."""

    _log = Logger()

    def __init__(
        self,
        settings: Settings,
        subsystems: Subsystems,
        sequence: Sequence,
        keys: Any,
        web: str,
        reactor: Any,
        demo_detectors: int | None = None,
        agent_args: list[str] | None = None,
        control_timeout: float = 1200.0,
        log_retention: float = 30 * 86400.0,
        autostart: bool = False,
        stop_agents: bool = True,
        ssh: str | None = None,
    ) -> None:
        self.ssh = ssh  # SSH shell endpoint; None: ecs.shell.server.DEFAULT_ENDPOINT if free; "none": no shell
        self.shell: Any = None
        self.autostart = autostart
        self.stop_agents = stop_agents
        self.control_timeout = control_timeout
        self.log_retention = log_retention
        self.settings = settings
        self.subsystems = subsystems
        self.sequence = sequence
        self.keys = keys
        self.web = web
        self.reactor = reactor
        self.demo_detectors = demo_detectors
        self.agent_args = agent_args or []
        self.eca: Any = None
        self.port: Any = None
        self.supervisor: Any = None
        self.store: Any = None
        self.label = "ECA"

    async def _start(self) -> None:
        from agents.eca.agent import ExperimentControlAgent
        from ecs.gui.site import GuiPages, site_root
        from ecs.net.zeromq import ZmqNode
        from ecs.store import Store, database_path
        from ecs.users import ensure_admin
        from ecs.web.api import WebAPI

        state_dir = self.settings.state_dir
        self.store = await Store.open(database_path(state_dir), self.reactor)
        password = await ensure_admin(self.store, state_dir)
        if self.demo_detectors is not None:
            await seed_demo(self.store, self.demo_detectors)
        node = ZmqNode(
            self.reactor,
            "eca",
            self.keys,
            request_timeout=self.settings.request_timeout,
            max_size=self.settings.max_message_size,
            high_water_mark=self.settings.high_water_mark,
            read_batch=ECA_READ_BATCH,
        )
        self.eca = ExperimentControlAgent(
            self.store,
            node,
            self.settings,
            self.subsystems,
            self.sequence,
            self.reactor,
            control_timeout=self.control_timeout,
            log_retention=self.log_retention,
        )
        self.eca.startService()
        await self.eca.ready
        if self.demo_detectors is not None:
            await seed_demo_placements(self.store, self.demo_detectors)
        from agents.eca.agents import attach_supervisor

        self.supervisor = attach_supervisor(self.eca, self.launchers(), self.reactor)
        api = WebAPI(self.eca, self.reactor)
        gui = GuiPages(self.eca)
        endpoint = endpoints.serverFromString(self.reactor, self.web)
        self.port = await endpoint.listen(Site(site_root(api.resource(), gui.resource())))
        from ecs.shell.server import listen_shell

        self.shell = await listen_shell(self.ssh, self.eca, self.store, state_dir, self.reactor)
        address = self.port.getHost()
        url = f"http://{address.host}:{address.port}/"
        await self.supervisor.resume(autostart=self.autostart)
        print(f"\nECS web: {url}", flush=True)
        if self.shell is not None:
            print(self.shell.describe(), flush=True)
        if password is not None:
            print(
                f"log in as admin with password {password} (also in {state_dir / 'admin-password'})",
                flush=True,
            )
        elif os.environ.get("ECS_ADMIN_PASSWORD"):
            print("log in as admin with the password in ECS_ADMIN_PASSWORD", flush=True)
        else:
            print(f"log in as admin (password in {state_dir / 'admin-password'}, if it was generated)", flush=True)
        self._log.info("ECA web at {url}", url=url)

    def launchers(self) -> dict[str, Any]:
        """The launchers this ECA's supervisor may use, by name."""
        from ecs.launch.local import LocalLauncher
        from ecs.launch.slurm import SlurmLauncher
        from ecs.launch.ssh import SshLauncher
        from ecs.net.keys import ensure_ssh_key

        state_dir = self.settings.state_dir
        common = ["--state-dir", str(state_dir), *self.agent_args]
        # ssh: the ECA's own client key and known-hosts file (docs/deployment.md);
        # a remote host has its own paths, so its settings come from the
        # placement's `args` only.  slurm: nodes usually share the file system,
        # so the jobs get the local common arguments.
        identity = state_dir / SSH_CLIENT_KEY
        if ensure_ssh_key(identity):
            self._log.info("ssh launcher key created: {path}.pub goes into agent hosts' authorized_keys", path=str(identity))
        known_hosts = state_dir / SSH_KNOWN_HOSTS
        known_hosts.touch(mode=0o644, exist_ok=True)
        return {
            "local": LocalLauncher(self.reactor, state_dir, common),
            "ssh": SshLauncher(self.reactor, identity, known_hosts, []),
            "slurm": SlurmLauncher(self.reactor, common, log_dir=str(state_dir / "logs" / "agents")),
        }

    def stopService(self) -> defer.Deferred[None]:
        """Stop the launched agents, the web, the ECA, the database."""
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.supervisor is not None:
            if self.stop_agents:
                await self.supervisor.stop_all()
            else:
                self.supervisor.detach()
        if self.shell is not None:
            await self.shell.stop()
        if self.port is not None:
            await self.port.stopListening()
        if self.eca is not None:
            await self.eca.stopService()
        if self.store is not None:
            await self.store.close()


async def seed_demo(store: Any, extra: int) -> None:
    """The demo inventory, configurations and tag; idempotent (a restart reuses it)."""
    import yaml

    from ecs.paths import data_dir
    from ecs.store import StoreError

    if "demo" not in {row.id for row in await store.partitions()}:
        await store.add_partition("demo")
    known = {row.id for row in await store.detectors()}
    detectors = [(d, d) for d in DEMO_DETECTORS] + [(f"sim{n}", "STS") for n in range(1, extra + 1)]
    for detector, type_name in detectors:
        if detector not in known:
            await store.add_detector(detector, type_name, "demo")
    data = yaml.safe_load((data_dir("etc") / "demo-configs.yaml").read_text(encoding="utf-8"))
    have = {row.config_id for row in await store.configs()}
    for config_id, config in data["configurations"].items():
        if config_id not in have:
            await store.save_config(config_id, config["system"], config["parameters"], "demo")
    members = list(data["tags"]["demo"])
    for detector, _ in detectors[len(DEMO_DETECTORS):]:
        if f"{detector}-default" not in have:
            await store.save_config(f"{detector}-default", detector, {"threshold": 12}, "demo")
        members.append(f"{detector}-default")
    for name, ids in data["tags"].items():
        try:
            await store.tag(name)
            if name != "demo":
                continue
        except StoreError:
            pass
        await store.save_tag(name, members if name == "demo" else ids, "demo")


async def seed_demo_placements(store: Any, extra: int) -> None:
    """
    The demo's agents, placed C{local} on C{localhost} with autostart:
    C{global:all}, C{detector:<D>} for the five demo detectors, C{pca:demo}
    and, with C{extra} simulated detectors, C{simhost:sim}.
    """
    await store.set_placement("global:all", "localhost", "local", {}, True, "demo")
    for detector in DEMO_DETECTORS:
        await store.set_placement(f"detector:{detector}", "localhost", "local",
                                  {"agent_args": ["--type", detector]}, True, "demo")
    if extra:
        args = ["--ids", f"1-{extra}", "--prefix", "sim", "--type", "STS"]
        await store.set_placement("simhost:sim", "localhost", "local", {"agent_args": args}, True, "demo")
    elif await store.placement("simhost:sim") is not None:
        await store.delete_placement("simhost:sim")
    await store.set_placement("pca:demo", "localhost", "local", {}, True, "demo")


class Options(usage.Options):
    """Options of C{ecs-eca}."""

    optParameters = [
        ["config", "c", None, "Settings file (default: the installed etc/ecs.yaml)."],
        ["subsystems", None, None, "Detector types and global systems (default: etc/subsystems.yaml)."],
        ["sequence", None, None, "Partition sequence (default: the installed fsm/partition.yaml)."],
        ["state-dir", None, None, "State directory: database, keys, logs (default ./var)."],
        ["web", None, "tcp:8080:interface=127.0.0.1", "Web endpoint (Twisted endpoint string; ssl:... for TLS)."],
        ["port", None, None, "Web port on 127.0.0.1 (shortcut for --web tcp:PORT:interface=127.0.0.1)."],
        ["registry-port", None, None, "Registry port on 127.0.0.1 (overrides registry.address)."],
        ["ssh", None, None, "SSH admin shell endpoint (default tcp:2222:interface=127.0.0.1, skipped if taken; none: no shell)."],
        ["ssh-port", None, None, "SSH admin shell port on 127.0.0.1 (shortcut for --ssh tcp:PORT:interface=127.0.0.1)."],
        ["security", None, None, "Override the settings' security mode: curve or none."],
        ["control-timeout", None, "1200", "Seconds without activity after which control is released."],
        ["log-retention", None, "30", "Days the stored log lines are kept."],
    ]
    optFlags = [
        ["autostart", None, "Start every placed agent with autostart at start-up (always on for ecs-demo)."],
        ["keep-agents", None, "Leave the agents running when the ECA stops (a restarted ECA adopts them)."],
    ]

    def postOptions(self) -> None:
        """Check what needs no files."""
        for name in ("control-timeout", "log-retention"):
            try:
                if float(self[name]) <= 0:
                    raise ValueError
            except ValueError:
                raise usage.UsageError(f"--{name} must be a positive number, got {self[name]!r}") from None
        for name in ("port", "registry-port", "ssh-port"):
            if self[name] is not None and not (str(self[name]).isdigit() and 0 < int(self[name]) < 65536):
                raise usage.UsageError(f"--{name} must be a port number, got {self[name]!r}")
        if self["port"]:
            self["web"] = f"tcp:{self['port']}:interface=127.0.0.1"
        if self["ssh-port"]:
            self["ssh"] = f"tcp:{self['ssh-port']}:interface=127.0.0.1"


class DemoOptions(Options):
    """Options of C{ecs-demo}."""

    optParameters = [["detectors", None, "0", "Extra simulated detectors in partition demo."]]

    def postOptions(self) -> None:
        """Check --detectors."""
        super().postOptions()
        if not str(self["detectors"]).isdigit():
            raise usage.UsageError("--detectors must be a number")


def _compose(options: Options, demo: int | None) -> service.IService:
    import attrs
    from twisted.internet import reactor

    from agents._tap import Composition
    from ecs.config.settings import ConfigError, fail
    from ecs.fsm.sequence import load_sequence

    options.setdefault("inventory", None)  # the ECA is the registry: no inventory
    composition = Composition(options)
    settings = composition.settings
    if options["registry-port"]:
        settings = attrs.evolve(settings, registry_address=f"tcp://127.0.0.1:{options['registry-port']}")
    try:
        sequence = load_sequence(options["sequence"], list(composition.subsystems.global_systems))
    except ConfigError as e:
        fail(e)
    agent_args: list[str] = []
    for name in ("config", "subsystems", "security"):
        if options[name]:
            agent_args += [f"--{name}", str(options[name])]
    if options["registry-port"]:
        # the agents must find this registry: give them a settings override file
        override = settings.state_dir / "demo-ecs.yaml"
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        from ecs.config.settings import load_yaml

        base = load_yaml(options["config"]) if options["config"] else {}
        data = dict(base) if isinstance(base, dict) else {}
        data["registry"] = {**(data.get("registry") or {}), "address": settings.registry_address}
        override.write_text(yaml.safe_dump(data), encoding="utf-8")
        if "--config" in agent_args:
            index = agent_args.index("--config")
            del agent_args[index : index + 2]
        agent_args += ["--config", str(override)]
    return ECAService(
        settings,
        composition.subsystems,
        sequence,
        composition.keys,
        options["web"],
        reactor,
        demo_detectors=demo,
        agent_args=agent_args,
        control_timeout=float(options["control-timeout"]),
        log_retention=float(options["log-retention"]) * 86400.0,
        autostart=bool(options["autostart"]) or demo is not None,
        stop_agents=not options["keep-agents"],
        ssh=options["ssh"],
    )


def makeService(options: Options) -> service.IService:
    """C{ecs-eca}."""
    return _compose(options, None)


def makeDemoService(options: DemoOptions) -> service.IService:
    """C{ecs-demo}: keys made if missing, the demo seeded, every agent launched."""
    from ecs.config.settings import load_settings
    from ecs.net.keys import init_keys

    settings = load_settings(options["config"], options["state-dir"])
    if settings.security == "curve" and not (settings.key_dir / "server.key_secret").exists():
        init_keys(settings.key_dir)
    return _compose(options, int(options["detectors"]))
