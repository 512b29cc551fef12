# -*- test-case-name: tests.test_eca -*-
"""
The Experiment Control Agent: the top of the hierarchy.

It owns the database (L{ecs.store}), runs the registry on the one fixed
endpoint, follows every partition's PCA (clone-pattern mirror of what it
publishes, heartbeats), and is the L{IControlCenter} behind the web API:
authentication, control ownership, commands, runs, logs, configurations,
users and partition management.  Every command and management change goes
into the audit trail.

Live events for the interfaces (types C{state}, C{progress}, C{log},
C{control}, C{allowed}) are numbered and kept in a bounded buffer, so a reconnecting
SSE client resumes with C{Last-Event-ID}.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from agents._lifecycle import AsyncStartService
from agents.eca.agents import AgentsMixin
from agents.eca.manage import ManagementMixin
from agents.eca.partitions import PartitionWatch
from agents.eca.unassigned import UnassignedWatch
from ecs import protocol
from ecs import users as user_tools
from ecs.config.settings import Settings, Subsystems
from ecs.control import ControlError, IControlCenter, Session, User
from ecs.fsm.sequence import Sequence
from ecs.net.remote_registry import REGISTRY, Entry, RegistryService
from ecs.net.transport import INode, RequestError
from ecs.store import LogEntry, Store, StoreError

EVENT_BUFFER = 10_000
LOG_FLUSH = 0.5
SESSION_DAYS = 7

_STORE_CODES = {"not_found": "not_found", "conflict": "conflict", "bad_request": "bad_request"}
_PCA_CODES = {
    protocol.LOCKED: "locked",
    protocol.BAD_REQUEST: "bad_request",
    "unknown_tag": "not_found",
    "unknown_config": "not_found",
    protocol.TIMEOUT: "unavailable",
    protocol.OVERLOADED: "unavailable",
    "unauthorised": "unavailable",
    "closed": "unavailable",
}


def store_error(error: StoreError) -> ControlError:
    """A store refusal as an interface error."""
    return ControlError(_STORE_CODES.get(error.code, "conflict"), error.reason)


def pca_error(error: RequestError) -> ControlError:
    """A PCA refusal as an interface error (not possible now: 409)."""
    return ControlError(_PCA_CODES.get(error.code, "conflict"), error.reason, pca_code=error.code)


def csrf_for(token: str) -> str:
    """The CSRF token of a session: derived from it, never stored."""
    return hashlib.sha256(b"csrf:" + token.encode()).hexdigest()[:32]


@implementer(IControlCenter)
class ExperimentControlAgent(AgentsMixin, ManagementMixin, AsyncStartService):
    """The ECA service."""

    _log = Logger()

    def __init__(
        self,
        store: Store,
        node: INode,
        settings: Settings,
        subsystems: Subsystems,
        sequence: Sequence,
        reactor: Any,
        control_timeout: float = 1200.0,
        log_retention: float = 30 * 86400.0,
    ) -> None:
        self.store = store
        self.node = node
        self.settings = settings
        self.subsystems = subsystems
        self.sequence = sequence
        self.reactor = reactor
        self.control_timeout = control_timeout
        self.log_retention = log_retention
        self.watches: dict[str, PartitionWatch] = {}
        #: Who holds each control scope (a cache of the store's table).
        self.holders: dict[str, str] = {}
        self.registry = RegistryService(
            node,
            reactor,
            self._registry_partitions,
            self._registry_detectors_of,
            self._registry_detector,
            on_change=self._agent_changed,
        )
        self._events: deque[tuple[int, str, dict[str, Any], str | None]] = deque(maxlen=EVENT_BUFFER)
        self._next_event = 1
        self._subscribers: list[tuple[Callable[[int, str, dict[str, Any]], None], str | None]] = []
        self._log_buffer: list[LogEntry] = []
        self._loops: list[task.LoopingCall] = []
        self.commands = Counter[tuple[str, str]]()
        self.command_seconds = Counter[str]()
        self.address: str | None = None
        self.label = "ECA"
        #: Partitions whose PCA a forced move left out: told when it answers again.
        self._missed: set[str] = set()
        #: Detectors a forced move could not tell: told when their partition sees them again.
        self._tell_later: dict[str, str | None] = {}
        self.unassigned_watch = UnassignedWatch(self)
        self._catching_up: set[str] = set()
        self._telling: set[str] = set()
        self._moves = 0

    # -- start and stop --------------------------------------------------

    async def _start(self) -> None:
        await self.store.set_global_systems(self.sequence.global_systems())
        server = self.node.serve(self.settings.registry_address)
        self.address = server.address
        server.register(REGISTRY, self.registry.handlers())
        for row in await self.store.partitions():
            self._watch(row.id)
        self.holders = {row.scope: row.holder for row in await self.store.controls()}
        for interval, work in (
            (LOG_FLUSH, self._flush_logs),
            (10.0, self._housekeeping),
        ):
            loop = task.LoopingCall(lambda w=work: defer.Deferred.fromCoroutine(w()).addErrback(
                lambda f: self._log.failure("ECA housekeeping", f)))
            loop.clock = self.reactor
            loop.start(interval, now=False)
            self._loops.append(loop)
        self.unassigned_watch.start()
        self._log.info("ECA registry at {address}", address=self.address)

    def stopService(self) -> defer.Deferred[None]:
        """Stop following, flush the logs, close the sockets and the database."""
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        for watch in self.watches.values():
            watch.stop()
        self.unassigned_watch.stop()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._flush_logs()
        await self.node.close()

    async def _housekeeping(self) -> None:
        for row in await self.store.expire_controls(self.control_timeout, self.reactor.seconds()):
            self._log.info("control of {scope} released after inactivity ({user})", scope=row.scope, user=row.holder)
            self.emit("control", {"scope": row.scope, "holder": None, "previous": row.holder, "reason": "inactivity"},
                      row.scope if row.scope != "ecs" else None)
        await self.store.prune_logs(self.reactor.seconds() - self.log_retention)

    # -- registry and partitions -----------------------------------------

    async def _registry_partitions(self) -> list[str]:
        return [row.id for row in await self.store.partitions()]

    async def _registry_detectors_of(self, partition: str) -> list[str]:
        return [row.id for row in await self.store.detectors(partition)]

    async def _registry_detector(self, detector: str) -> dict[str, Any] | None:
        row = await self.store.detector(detector)
        return {"type": row.type, "partition": row.partition} if row else None

    def _agent_changed(self, kind: str, agent_id: str, entry: Entry | None) -> None:
        if kind == "pca" and agent_id in self.watches:
            self.watches[agent_id].pca_changed(entry.info if entry else None)

    def _watch(self, partition: str) -> PartitionWatch:
        watch = PartitionWatch(self, partition)
        self.watches[partition] = watch
        entry = self.registry.entries.get(("pca", partition))
        if entry is not None:
            watch.pca_changed(entry.info)
        return watch

    # -- events ------------------------------------------------------------

    def emit(self, type: str, data: dict[str, Any], partition: str | None = None) -> int:
        """Number, buffer and deliver one live event."""
        if type == "control":
            if data.get("holder"):
                self.holders[data["scope"]] = data["holder"]
            else:
                self.holders.pop(data["scope"], None)
        number = self._next_event
        self._next_event += 1
        self._events.append((number, type, data, partition))
        for callback, wanted in list(self._subscribers):
            if wanted is None or partition is None or wanted == partition:
                try:
                    callback(number, type, data)
                except Exception:
                    self._log.failure("event subscriber raised")
        return number

    def subscribe(self, callback: Callable[[int, str, dict[str, Any]], None], partition_id: str | None = None) -> Callable[[], None]:
        """See L{IControlCenter.subscribe}."""
        entry = (callback, partition_id)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    def events_since(self, event_id: int, partition_id: str | None = None) -> list[tuple[int, str, dict[str, Any]]] | None:
        """See L{IControlCenter.events_since}."""
        if self._events and event_id < self._events[0][0] - 1:
            return None
        return [
            (n, t, d)
            for n, t, d, p in self._events
            if n > event_id and (partition_id is None or p is None or p == partition_id)
        ]

    def log_event(self, level: str, source: str, message: str, partition: str | None, when: float | None = None) -> None:
        """A log line for operators: stored (in batches) and sent live."""
        entry = LogEntry(when if when is not None else self.reactor.seconds(), level, source, message, partition)
        self._log_buffer.append(entry)
        self.emit("log", dataclasses.asdict(entry), partition)

    async def _flush_logs(self) -> None:
        entries, self._log_buffer = self._log_buffer, []
        if entries:
            try:
                await self.store.add_logs(entries)
            except StoreError as e:
                self._log.error("{count} log lines not stored: {error}", count=len(entries), error=e)

    # -- authentication ----------------------------------------------------

    async def _login(self, username: str, password: str, kind: str) -> Session:
        row = await self.store.user(username) if isinstance(username, str) and username else None
        ok = row is not None and await user_tools.check_password_async(
            self.reactor, password if isinstance(password, str) else "", row.password_hash
        )
        if not ok or row is None:
            await self.store.audit(username or "?", "login", {}, "refused")
            raise ControlError("unauthenticated", "wrong user name or password")
        token, hashed = user_tools.new_token()
        expires = self.reactor.seconds() + SESSION_DAYS * 86400 if kind == "session" else None
        await self.store.add_token(hashed, row.name, kind, expires)
        await self.store.audit(row.name, "login", {"kind": kind}, "ok")
        return Session(User(row.name, tuple(row.roles)), token, csrf_for(token))

    def login(self, username: str, password: str, kind: str = "session") -> defer.Deferred[Session]:
        """See L{IControlCenter.login}."""
        return defer.Deferred.fromCoroutine(self._login(username, password, kind))

    async def _logout(self, token: str) -> None:
        session = await self._authenticate(token)
        await self.store.delete_token(user_tools.token_hash(token))
        if session is not None:
            for row in await self.store.release_all(session.user.name):
                self.emit("control", {"scope": row.scope, "holder": None, "previous": row.holder, "reason": "logout"},
                          row.scope if row.scope != "ecs" else None)
            await self.store.audit(session.user.name, "logout", {}, "ok")

    def logout(self, token: str) -> defer.Deferred[None]:
        """See L{IControlCenter.logout}."""
        return defer.Deferred.fromCoroutine(self._logout(token))

    async def _authenticate(self, token: str) -> Session | None:
        if not isinstance(token, str) or not token:
            return None
        row = await self.store.token(user_tools.token_hash(token))
        if row is None:
            return None
        user = await self.store.user(row.user)
        if user is None:
            return None
        return Session(User(user.name, tuple(user.roles)), token, csrf_for(token))

    def authenticate(self, token: str) -> defer.Deferred[Session | None]:
        """See L{IControlCenter.authenticate}."""
        return defer.Deferred.fromCoroutine(self._authenticate(token))

    # -- reading -------------------------------------------------------------

    def _get_watch(self, partition_id: str) -> PartitionWatch:
        watch = self.watches.get(partition_id)
        if watch is None:
            raise ControlError("not_found", f"no partition {partition_id!r}")
        return watch

    def partitions(self) -> list[dict[str, Any]]:
        """See L{IControlCenter.partitions}."""
        return [watch.summary() for watch in self.watches.values()]

    def partition(self, partition_id: str) -> dict[str, Any]:
        """See L{IControlCenter.partition}."""
        return self._get_watch(partition_id).details()

    def unassigned(self) -> list[dict[str, Any]]:
        """See L{IControlCenter.unassigned}: live states, polled (L{UnassignedWatch})."""
        return sorted(self.unassigned_watch.records.values(), key=lambda r: r["id"])

    # -- control and commands ----------------------------------------------

    @staticmethod
    def _need(user: User, role: str) -> None:
        if not user.has(role):
            raise ControlError("forbidden", f"this needs the {role} role")

    async def _take(self, user: User, scope: str, force: bool) -> dict[str, Any]:
        self._need(user, "operator" if scope != "ecs" else "expert")
        if force:
            self._need(user, "admin")
        if scope != "ecs":
            self._get_watch(scope)
        try:
            row = await self.store.take_control(scope, user.name, force)
        except StoreError as e:
            holder = getattr(e, "holder", None)
            raise ControlError("conflict", e.reason, holder=holder) from None
        await self.store.audit(user.name, "take_control", {"scope": scope, "force": force}, "ok")
        self.emit("control", {"scope": scope, "holder": row.holder, "previous": row.replaced, "reason": "force" if row.replaced else "take"},
                  scope if scope != "ecs" else None)
        return {"scope": scope, "holder": row.holder, "since": row.since}

    def take_control(self, user: User, scope: str, force: bool = False) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.take_control}."""
        return defer.Deferred.fromCoroutine(self._take(user, scope, force))

    async def _release(self, user: User, scope: str) -> None:
        row = await self.store.control(scope)
        if row is None:
            return
        if row.holder != user.name and not user.has("admin"):
            raise ControlError("conflict", f"{scope} is held by {row.holder}", holder=row.holder)
        await self.store.release_control(scope, row.holder)
        await self.store.audit(user.name, "release_control", {"scope": scope}, "ok")
        self.emit("control", {"scope": scope, "holder": None, "previous": row.holder, "reason": "release"},
                  scope if scope != "ecs" else None)

    def release_control(self, user: User, scope: str) -> defer.Deferred[None]:
        """See L{IControlCenter.release_control}."""
        return defer.Deferred.fromCoroutine(self._release(user, scope))

    async def _ecs_holder(self) -> dict[str, Any]:
        row = await self.store.control("ecs")
        return {"scope": "ecs", "holder": row.holder if row else None, "since": row.since if row else None}

    def ecs_control(self) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.ecs_control}."""
        return defer.Deferred.fromCoroutine(self._ecs_holder())

    async def _holding(self, user: User, scope: str) -> None:
        row = await self.store.control(scope)
        if row is None or row.holder != user.name:
            holder = row.holder if row else None
            where = "the ECS" if scope == "ecs" else f"partition {scope}"
            raise ControlError(
                "forbidden" if holder is None else "conflict",
                f"take control of {where} first" + (f" (held by {holder})" if holder else ""),
                holder=holder,
            )
        await self.store.touch_control(scope, user.name)

    async def _command(self, user: User, partition_id: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        self._need(user, "operator")
        watch = self._get_watch(partition_id)
        if command not in ("configure", "start", "stop", "abort", "reset"):
            raise ControlError("not_found", f"no command {command!r}")
        await self._holding(user, partition_id)
        started = self.reactor.seconds()
        outcome = "ok"
        try:
            request = dict(body)
            sent = None
            if command == "configure":
                request, sent = await self._resolve_configure(body)
            reply = await watch.command(command, request, user.name)
            if sent is not None:
                # Only once the PCA accepted, and without what it ignored
                # (systems not in the partition): the next run records these.
                ignored = reply.get("ignored", []) if isinstance(reply, dict) else []
                watch.sent = {system: c for system, c in sent.items() if system not in ignored}
            return reply
        except ControlError as e:
            outcome = f"{e.code}: {e.reason}"
            raise
        except RequestError as e:
            outcome = f"{e.code}: {e.reason}"
            raise pca_error(e) from None
        finally:
            self.commands[(command, "ok" if outcome == "ok" else "refused")] += 1
            self.command_seconds[command] += self.reactor.seconds() - started
            await self.store.audit(user.name, command, {"partition": partition_id, **body}, outcome)

    async def _resolve_configure(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The PCA's configure request (configurations inline) and their snapshot for run records."""
        auto = body.get("auto", False)
        if not isinstance(auto, bool):
            raise ControlError("bad_request", "'auto' must be true or false")
        try:
            if "tag" in body and "configs" not in body:
                tag = body["tag"]
                if not isinstance(tag, str):
                    raise ControlError("bad_request", "'tag' must be a name")
                rows = list((await self.store.resolve_tag(tag)).values())
            elif "configs" in body and isinstance(body["configs"], list) and all(isinstance(c, str) for c in body["configs"]):
                tag = None
                rows = [await self.store.config(c) for c in body["configs"]]
            else:
                raise ControlError("bad_request", "configure needs 'tag' (a name) or 'configs' (a list of configuration ids)")
        except StoreError as e:
            raise store_error(e) from None
        sent = {row.system: row.snapshot() for row in rows}
        inline = [{"config_id": r.config_id, "system": r.system, "parameters": r.parameters} for r in rows]
        request: dict[str, Any] = {"configs": inline, "auto": auto}
        if tag is not None:
            request["tag"] = tag
        return request, sent

    def command(self, user: User, partition_id: str, command: str, body: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.command}."""
        return defer.Deferred.fromCoroutine(self._command(user, partition_id, command, body))

    # -- runs ------------------------------------------------------------------

    async def run_started(self, watch: PartitionWatch) -> None:
        """The partition entered recording: a new run record (unless one is open)."""
        if await self.store.open_run(watch.id) is not None:
            return  # still the same run (the ECA restarted while recording)
        record = watch.records.get("partition", {})
        try:
            run = await self.store.start_run(watch.id, record.get("tag"), watch.sent, watch.last_operator or "unknown")
        except StoreError as e:
            self._log.error("run for {partition} not recorded: {error}", partition=watch.id, error=e)
            return
        self.log_event("info", "ECA", f"run {run.number} started", watch.id)

    async def run_ended(self, watch: PartitionWatch) -> None:
        """The partition left recording: close its run record."""
        run = await self.store.open_run(watch.id)
        if run is None:
            return
        outcome = {"stop": "stopped", "abort": "aborted"}.get(watch.last_command or "", "failed")
        await self.store.end_run(run.number, outcome)
        self.log_event("info" if outcome == "stopped" else "warn", "ECA", f"run {run.number} ended: {outcome}", watch.id)

    def systems(self) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.systems} (the tables are read once, then kept)."""
        from ecs.fsm.systems import systems_view, tables_json

        if getattr(self, "_tables", None) is None:
            self._tables = tables_json(self.subsystems, self.sequence)
        tables, table_of = self._tables
        d = self.store.detectors()
        return d.addCallbacks(lambda rows: systems_view(self.subsystems, self.sequence, [dataclasses.asdict(r) for r in rows],
                                                        tables, table_of), _raise_store)

    def runs(self, partition_id: str | None = None, limit: int = 100) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.runs}."""
        d = self.store.runs(partition_id, limit)
        return d.addCallbacks(lambda rows: [dataclasses.asdict(r) for r in rows], _raise_store)

    def logs(self, partition_id: str | None, level: str | None, since: float | None, q: str | None, limit: int,
             until: float | None = None, before_id: int | None = None) -> defer.Deferred[list[dict[str, Any]]]:
        """See L{IControlCenter.logs}."""
        d = self.store.logs(partition=partition_id, level=level, since=since, q=q, limit=limit, until=until,
                            before_id=before_id)
        return d.addCallbacks(lambda rows: [dataclasses.asdict(r) for r in rows], lambda f: _raise_store(f))

    # -- metrics -----------------------------------------------------------------

    def metrics(self) -> str:
        """See L{IControlCenter.metrics}."""
        lines = [
            "# HELP ecs_partition_state 1 for the current state of each partition",
            "# TYPE ecs_partition_state gauge",
        ]
        for watch in self.watches.values():
            summary = watch.summary()
            lines.append(f'ecs_partition_state{{partition="{watch.id}",state="{summary["state"]}"}} 1')
        lines += ["# HELP ecs_partition_connected 1 while the PCA answers", "# TYPE ecs_partition_connected gauge"]
        for watch in self.watches.values():
            lines.append(f'ecs_partition_connected{{partition="{watch.id}"}} {int(watch.connected)}')
        lines += ["# HELP ecs_systems systems per partition and state", "# TYPE ecs_systems gauge"]
        for watch in self.watches.values():
            for state, count in sorted(watch.system_states().items()):
                lines.append(f'ecs_systems{{partition="{watch.id}",state="{state}"}} {count}')
        lines += ["# HELP ecs_commands_total commands by outcome", "# TYPE ecs_commands_total counter"]
        for (command, outcome), count in sorted(self.commands.items()):
            lines.append(f'ecs_commands_total{{command="{command}",outcome="{outcome}"}} {count}')
        lines += ["# HELP ecs_command_seconds_total time spent in commands", "# TYPE ecs_command_seconds_total counter"]
        for command, seconds in sorted(self.command_seconds.items()):
            lines.append(f'ecs_command_seconds_total{{command="{command}"}} {seconds:.6f}')
        lines += ["# HELP ecs_heartbeat_losses_total PCA heartbeat losses", "# TYPE ecs_heartbeat_losses_total counter"]
        for watch in self.watches.values():
            lines.append(f'ecs_heartbeat_losses_total{{partition="{watch.id}"}} {watch.losses}')
        return "\n".join(lines) + "\n"


def _raise_store(failure: Any) -> Any:
    if failure.check(StoreError):
        raise store_error(failure.value)
    return failure
