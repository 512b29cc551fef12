# -*- test-case-name: tests.test_demo -*-
"""
The ECA process as services.

L{ECAService} is a C{MultiService} whose start-up is asynchronous
(L{AsyncStartService}: a failure in any step is logged and the process
exits non-zero): it opens the store, makes the first admin if there is
none, seeds the demo, builds the ECA (L{build_eca}), then adds its
children one by one as each is ready: the store's closing, the ECA core
(L{EcaCore}: registry, partitions, and C{TimerService}s for the log
flush, the housekeeping and the unassigned detectors' poll), the web
endpoint, the SSH shell and the supervisor.  Stopping is
C{MultiService}'s reverse order: the agents first (unless
C{--keep-agents}), the shell, the web, the ECA, the store last.  The
banners (web URL with the scheme it really serves, shell, admin password)
go through the logger.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.application.internet import TimerService
from twisted.internet import defer, endpoints
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.web.server import Site

from agents._lifecycle import AsyncStartService
from agents.eca.accounts import ThreadPasswords
from agents.eca.compose import HOUSEKEEPING, Eca, build_eca
from agents.eca.demo import seed_demo, seed_demo_placements
from agents.eca.logbook import LOG_FLUSH
from agents.eca.reload import HangUpReload
from ecs.config.settings import Settings, Subsystems
from ecs.fsm.sequence import Sequence
from ecs.schema import ConfigError
from ecs.store import StoreError

#: The ECA passes each event on to the web: it reads few messages per turn
#: (bench/events.py: p99 from ~100 ms to ~40 ms at 1,000 detectors).
ECA_READ_BATCH = 16

SSH_CLIENT_KEY = Path("ssh") / "client_ed25519"
"""The ssh launcher's client key, under the state directory."""

SSH_KNOWN_HOSTS = Path("ssh") / "known_hosts"
"""The ssh launcher's known-hosts file (OpenSSH format), under the state directory."""

#: Server endpoint types that speak TLS (their URL is https).
TLS_ENDPOINTS = frozenset({"ssl", "tls"})


def web_url(description: str, host: str, port: int) -> str:
    """The URL of a web endpoint: https when its endpoint type speaks TLS."""
    kind = description.split(":", 1)[0].strip().lower()
    scheme = "https" if kind in TLS_ENDPOINTS else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}/"


def _timer(step: float, work: Callable[[], Awaitable[None] | None], what: str, clock: Any) -> TimerService:
    """A TimerService whose failures are logged, never ending the loop."""
    log = Logger(namespace="agents.eca.service")

    def run() -> defer.Deferred[None] | None:
        try:
            result = work()
        except Exception:
            log.failure("ECA {what}", what=what)
            return None
        if result is None:
            return None

        async def wait() -> None:
            await result

        d = defer.Deferred.fromCoroutine(wait())
        d.addErrback(lambda f: log.failure("ECA {what}", f, what=what))
        return d

    timer = TimerService(step, run)
    timer.clock = clock
    return timer


def _add(parent: service.MultiService, child: service.IService) -> None:
    """C{parent.addService(child)}: started at once if C{parent} runs (through the class: Twisted's is untyped)."""
    service.MultiService.addService(parent, child)


class EcaCore(service.MultiService):
    """
    The ECA without its interfaces: L{open} serves the registry and
    follows the partitions; started, its children are the timers; stopped,
    it stops following, flushes the log lines and closes its node.
    """

    def __init__(self, eca: Eca) -> None:
        service.MultiService.__init__(self)
        self.eca = eca
        clock = eca.clock
        _add(self, _timer(LOG_FLUSH, eca.logbook.flush, "log flush", clock))
        _add(self, _timer(HOUSEKEEPING, eca.housekeeping, "housekeeping", clock))
        _add(self, _timer(eca.settings.heartbeat_interval, eca.unassigned.tick, "unassigned poll", clock))

    async def open(self) -> None:
        """Serve the registry and follow the partitions (before C{startService})."""
        await self.eca.start()

    def stopService(self) -> defer.Deferred[None]:
        """Stop the timers, then the ECA."""
        stopped = service.MultiService.stopService(self)

        async def stop() -> None:
            await stopped
            await self.eca.stop()

        return defer.Deferred.fromCoroutine(stop())


class _Closing(service.Service):
    """A child whose stop runs C{close} (the store, a port, the shell)."""

    def __init__(self, close: Callable[[], Awaitable[Any] | None]) -> None:
        self._close = close

    def stopService(self) -> defer.Deferred[None]:
        """Run C{close}."""
        service.Service.stopService(self)

        async def close() -> None:
            result = self._close()
            if result is not None:  # stopListening may answer None
                await result

        return defer.Deferred.fromCoroutine(close())


class ECAService(AsyncStartService, service.MultiService):
    """The ECA process: database, registry, partitions, web, shell, supervisor."""

    _log = Logger()
    label = "ECA"
    #: Reported as one line: the operator's to fix (a port taken, an unreadable database...).
    expected_failures = (OSError, StoreError, CannotListenError, ConfigError)

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
        tables: dict[str, Any] | None = None,
        recovery: Any = None,
        run_sequences: dict[str, Any] | None = None,
        coordination_files: Any = None,
    ) -> None:
        service.MultiService.__init__(self)
        self.recovery = recovery  # the recovery rules (ecs.fsm.recovery.RecoveryRules), None: alarm only
        self.run_sequences = run_sequences  # the declared run sequences (etc/sequences), read at start-up
        # where both were read (ecs.fsm.reload.CoordinationFiles): a reload reads them again; None: it does not
        self.coordination_files = coordination_files
        self.tables = tables  # the state tables read at start-up, by file (a reload tells which changed)
        self.hang_up: HangUpReload | None = None
        self.ssh = ssh  # SSH shell endpoint; None: ecs.shell.server.DEFAULT_ENDPOINT if free; "none": no shell
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
        self.eca: Eca | None = None
        self.url: str | None = None

    async def _start(self) -> None:
        from ecs.gui.site import GuiPages, site_root
        from ecs.net.zeromq import ZmqNode
        from ecs.shell.server import listen_shell
        from ecs.store import Store, database_path
        from ecs.users import ensure_admin
        from ecs.web.api import WebAPI

        state_dir = self.settings.state_dir
        store = await Store.open(database_path(state_dir), self.reactor)
        _add(self, _Closing(store.close))  # first child: closed last
        password = await ensure_admin(store, state_dir)
        if self.demo_detectors is not None:
            await seed_demo(store, self.demo_detectors)
            await seed_demo_placements(store, self.demo_detectors)
        node = ZmqNode(
            self.reactor,
            "eca",
            self.keys,
            request_timeout=self.settings.request_timeout,
            max_size=self.settings.max_message_size,
            high_water_mark=self.settings.high_water_mark,
            read_batch=ECA_READ_BATCH,
        )
        eca = self.eca = build_eca(
            store,
            node,
            self.reactor,
            self.settings,
            self.subsystems,
            self.sequence,
            ThreadPasswords(self.reactor),
            launchers=self.launchers(),
            control_timeout=self.control_timeout,
            log_retention=self.log_retention,
            tables=self.tables,
            recovery_rules=self.recovery,
            run_sequences=self.run_sequences,
            coordination_files=self.coordination_files,
        )
        core = EcaCore(eca)
        try:
            await core.open()
        except BaseException:
            await eca.stop()
            raise
        _add(self, core)
        api = WebAPI(eca.center, self.reactor, subscribe_many=eca.events.subscribe_batch)
        eca.metrics.observe_streams(api.open_streams)
        gui = GuiPages(eca.center)
        port = await endpoints.serverFromString(self.reactor, self.web).listen(
            Site(site_root(api.resource(), gui.resource()))
        )
        _add(self, _Closing(port.stopListening))
        shell = await listen_shell(self.ssh, eca.center, store, state_dir, self.reactor)
        if shell is not None:
            _add(self, _Closing(shell.stop))
        supervisor = eca.supervisor
        assert supervisor is not None  # built with launchers
        _add(self, _Closing(self._stop_agents))  # last child: stopped first
        await supervisor.resume(autostart=self.autostart)
        eca.inventory.agents_resumed()  # interrupted deletions stop their agents now
        self.hang_up = HangUpReload(self.reactor, eca.center.reload)
        self.hang_up.install()  # SIGHUP reloads; uninstalled at stop
        address = port.getHost()
        self.url = web_url(self.web, address.host, address.port)
        self._log.info("ECS web: {url}", url=self.url)
        if shell is not None:
            self._log.info("{shell}", shell=shell.describe())
        if password is not None:
            self._log.info(
                "log in as admin with password {password} (also in {path})",
                password=password,
                path=str(state_dir / "admin-password"),
            )
        elif os.environ.get("ECS_ADMIN_PASSWORD"):
            self._log.info("log in as admin with the password in ECS_ADMIN_PASSWORD")
        else:
            self._log.info(
                "log in as admin (password in {path}, if it was generated)", path=str(state_dir / "admin-password")
            )

    async def _stop_agents(self) -> None:
        supervisor = self.eca.supervisor if self.eca is not None else None
        if supervisor is None:
            return
        if self.stop_agents:
            await supervisor.stop_all()
        else:
            supervisor.detach()

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
            self._log.info(
                "ssh launcher key created: {path}.pub goes into agent hosts' authorized_keys", path=str(identity)
            )
        known_hosts = state_dir / SSH_KNOWN_HOSTS
        known_hosts.touch(mode=0o644, exist_ok=True)
        return {
            "local": LocalLauncher(self.reactor, state_dir, common),
            "ssh": SshLauncher(self.reactor, identity, known_hosts, []),
            "slurm": SlurmLauncher(self.reactor, common, log_dir=str(state_dir / "logs" / "agents")),
        }

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop the children in reverse order, each once the one before it has
        stopped (C{MultiService} would stop them all at once: the store
        would close under the last log lines).
        """
        service.Service.stopService(self)
        if self.hang_up is not None:
            self.hang_up.uninstall()

        async def stop() -> None:
            for child in reversed(list(self)):
                try:
                    await defer.maybeDeferred(child.stopService)
                except Exception:
                    self._log.failure("stopping {child}", child=child)

        return defer.Deferred.fromCoroutine(stop())
