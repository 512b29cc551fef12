# -*- test-case-name: tests.test_demo -*-
"""
C{twistd -n ecs-eca} and C{twistd -n ecs-demo}: the ECA with its web API,
and the demo (the ECA, a seeded database, and every agent launched as a
local child process).

Start-up is asynchronous (the database is opened on the reactor's thread
pool), so L{ECAService} models it: C{startService} opens the store, makes
the first admin if there is none, starts the ECA, listens on the web
endpoint (a Twisted endpoint string: C{tcp:8080:interface=127.0.0.1}, or
C{ssl:...} for TLS) and, for the demo, seeds the inventory and launches the
agents.  A failure is logged and the process exits non-zero.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, protocol
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from agents.lifecycle import AsyncStartService
from ecs.config import Settings, Subsystems
from ecs.sequence import Sequence

DEMO_DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")
#: The ECA passes each event on to the web: it reads few messages per turn
#: (bench/events.py: p99 from ~100 ms to ~40 ms at 1,000 detectors).
ECA_READ_BATCH = 16


class _Child(protocol.ProcessProtocol):
    """A launched agent: its output goes to our log, prefixed."""

    _log = Logger()

    def __init__(self, name: str) -> None:
        self.name = name
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            if "#warn]" in line or "#error]" in line or "#critical]" in line:
                self._log.warn("[{name}] {line}", name=self.name, line=line.split("] ", 1)[-1])

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self._log.info("{name} ended", name=self.name)
        self.ended.callback(None)


class LocalLauncher:
    """Starts agents as child processes of the ECA and stops them (by pid)."""

    def __init__(self, reactor: Any, state_dir: Path, common: list[str]) -> None:
        self.reactor = reactor
        self.state_dir = state_dir
        self.common = common
        self.children: dict[str, tuple[_Child, Any]] = {}

    def start(self, name: str, args: list[str]) -> None:
        """Start C{twistd -n <args>} as C{name}."""
        twistd = str(Path(sys.executable).parent / "twistd")
        child = _Child(name)
        argv = [twistd, "-n", "--pidfile=", *args, "--state-dir", str(self.state_dir), *self.common]
        transport = self.reactor.spawnProcess(child, twistd, argv, env=dict(os.environ))
        self.children[name] = (child, transport)

    async def stop_all(self) -> None:
        """SIGTERM every child, and wait until they are gone."""
        for child, transport in self.children.values():
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                pass
        for child, _ in self.children.values():
            await child.ended


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
    ) -> None:
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
        self.launcher: LocalLauncher | None = None
        self.store: Any = None
        self.label = "ECA"

    async def _start(self) -> None:
        from agents.eca import ExperimentControlAgent
        from ecs.store import Store, database_path
        from ecs.users import ensure_admin
        from ecs.gui import GuiPages, site_root
        from ecs.web import WebAPI
        from ecs.zmq_transport import ZmqNode

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
        api = WebAPI(self.eca, self.reactor)
        gui = GuiPages(self.eca)
        endpoint = endpoints.serverFromString(self.reactor, self.web)
        self.port = await endpoint.listen(Site(site_root(api.resource(), gui.resource())))
        address = self.port.getHost()
        url = f"http://{address.host}:{address.port}/"
        if self.demo_detectors is not None:
            await self._launch_demo()
        print(f"\nECS web: {url}", flush=True)
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

    async def _launch_demo(self) -> None:
        assert self.eca is not None
        self.launcher = LocalLauncher(self.reactor, self.settings.state_dir, self.agent_args)
        self.launcher.start("global", ["ecs-global", "--id", "all"])
        for detector in DEMO_DETECTORS:
            self.launcher.start(detector, ["ecs-detector", "--id", detector, "--type", detector])
        if self.demo_detectors:
            self.launcher.start(
                "simhost",
                ["ecs-simhost", "--ids", f"1-{self.demo_detectors}", "--prefix", "sim", "--type", "STS"],
            )
        self.launcher.start("pca-demo", ["ecs-pca", "--id", "demo"])

    def stopService(self) -> defer.Deferred[None]:
        """Stop the launched agents, the web, the ECA, the database."""
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.launcher is not None:
            await self.launcher.stop_all()
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
        ["security", None, None, "Override the settings' security mode: curve or none."],
        ["control-timeout", None, "1200", "Seconds without activity after which control is released."],
        ["log-retention", None, "30", "Days the stored log lines are kept."],
    ]

    def postOptions(self) -> None:
        """Check what needs no files."""
        for name in ("control-timeout", "log-retention"):
            try:
                if float(self[name]) <= 0:
                    raise ValueError
            except ValueError:
                raise usage.UsageError(f"--{name} must be a positive number, got {self[name]!r}") from None
        for name in ("port", "registry-port"):
            if self[name] is not None and not (str(self[name]).isdigit() and 0 < int(self[name]) < 65536):
                raise usage.UsageError(f"--{name} must be a port number, got {self[name]!r}")
        if self["port"]:
            self["web"] = f"tcp:{self['port']}:interface=127.0.0.1"


class DemoOptions(Options):
    """Options of C{ecs-demo}."""

    optParameters = [["detectors", None, "0", "Extra simulated detectors in partition demo."]]

    def postOptions(self) -> None:
        """Check --detectors."""
        super().postOptions()
        if not str(self["detectors"]).isdigit():
            raise usage.UsageError("--detectors must be a number")


def _compose(options: Options, demo: int | None) -> service.IService:
    from twisted.internet import reactor

    from agents.service import Composition
    from ecs.config import ConfigError, fail
    from ecs.sequence import load_sequence

    import attrs

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

        from ecs.config import load_yaml

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
    )


def makeService(options: Options) -> service.IService:
    """C{ecs-eca}."""
    return _compose(options, None)


def makeDemoService(options: DemoOptions) -> service.IService:
    """C{ecs-demo}: keys made if missing, the demo seeded, every agent launched."""
    from ecs.config import load_settings
    from ecs.security import init_keys

    settings = load_settings(options["config"], options["state-dir"])
    if settings.security == "curve" and not (settings.key_dir / "server.key_secret").exists():
        init_keys(settings.key_dir)
    return _compose(options, int(options["detectors"]))
