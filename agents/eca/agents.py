# -*- test-case-name: tests.test_supervision_e2e -*-
"""
The ECA's agent actions (L{ecs.control.IControlCenter} C{agents},
C{set_placement}, C{start_agent}...) over its L{Supervisor}
(L{AgentActions}), and which registration proves an agent runs
(L{AgentPresence}).

Which registration proves an agent runs: C{pca:P} registers as (pca, P),
C{detector:D} as (detector, D), C{global:all} as every global system of the
sequence, C{global:G} as (global, G), and a sim host C{simhost:S} as the
first detector of its C{--ids} (with its C{--prefix}).  When the launch
record has a pid (local, ssh), the registration must come from that pid:
a stale entry of a dead process does not count.

The PCA of a partition created at run time is placed C{local} on
C{localhost} and started when the ECA starts agents on its own; it is
stopped and unplaced with its partition.  So is the agent of a detector
created at run time, placed with its type (C{--type}); a deleted detector's
agent is stopped and unplaced (its placement row goes with the detector,
L{ecs.store.Store.commit_operation}).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from agents.eca.errors import need
from agents.eca.interfaces import IAudit, ILogBook
from agents.eca.supervisor.supervisor import Supervisor, agent_args
from ecs.control import ControlError, User
from ecs.fsm.sequence import Sequence
from ecs.launch import LaunchError, LaunchRecord
from ecs.net.remote_registry import Entry

PCA_HOST = "localhost"
"""Where the PCA of a partition created at run time is placed."""

MAX_OUTPUT_LINES = 2000


def first_simulated(options: Mapping[str, Any]) -> str | None:
    """The first detector id a sim host's C{agent_args} name (C{--prefix} + first of C{--ids})."""
    try:
        args = agent_args(options)
    except LaunchError:
        return None
    values = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    ids = values.get("--ids")
    if not ids:
        return None
    first = ids.split(",")[0].split("-")[0].strip()
    return f"{values.get('--prefix', '')}{first}" if first else None


def agent_partition(name: str, partitions: Iterable[Any]) -> str | None:
    """
    The partition an agent serves, for its log lines: a PCA's own, a
    detector's that whose PCA has it (C{partitions}: objects with C{id} and
    C{records}, the ECA's L{agents.eca.partitions.Partition}s); C{None} else.
    """
    kind, _, agent_id = name.partition(":")
    if kind == "pca":
        return agent_id
    if kind == "detector":
        return next((p.id for p in partitions if f"system/{agent_id}" in p.records), None)
    return None


class AgentPresence:
    """
    Whether the registry proves an agent runs (see the module docstring).
    A sim host is known by its placement's options: the supervisor is
    wired in after construction (it is built with L{registered}).
    """

    def __init__(self, entries: Mapping[tuple[str, str], Entry], sequence: Sequence) -> None:
        self._entries = entries
        self._sequence = sequence
        self._supervisor: Supervisor | None = None

    def wire(self, supervisor: Supervisor) -> None:
        """The supervisor whose placements name the sim hosts' detectors."""
        self._supervisor = supervisor

    def registered(self, name: str, record: LaunchRecord | None) -> bool:
        """C{registered(agent, record)} for L{Supervisor}."""
        kind, _, agent_id = name.partition(":")
        pid = record.pid if record is not None and record.launcher != "slurm" else None

        def live(key: tuple[str, str]) -> bool:
            entry = self._entries.get(key)
            return entry is not None and (pid is None or entry.info.pid in (pid, -1))

        if kind == "global" and agent_id == "all":
            systems = self._sequence.global_systems()
            return bool(systems) and all(live(("global", s)) for s in systems)
        if kind == "simhost":
            supervised = self._supervisor.entries.get(name) if self._supervisor else None
            first = first_simulated(supervised.placement.options) if supervised and supervised.placement else None
            return first is not None and live(("detector", first))
        return live((kind, agent_id))


class AgentActions:
    """The agent actions; C{supervisor} is None for an ECA that supervises nothing."""

    _log = Logger()

    def __init__(self, supervisor: Supervisor | None, audit: IAudit, logbook: ILogBook) -> None:
        self.supervisor = supervisor
        self._audit = audit
        self._logbook = logbook

    def registry_changed(self, kind: str, agent_id: str, entry: Entry | None) -> None:
        """The registry changed: the supervisor re-checks the agents it concerns."""
        if self.supervisor is None:
            return
        names = [f"{kind}:{agent_id}"]
        if kind == "global":
            names.append("global:all")
        elif kind == "detector":
            names += [n for n in self.supervisor.entries if n.startswith("simhost:")]
        self.supervisor.registry_changed(names)

    def _supervisor(self) -> Supervisor:
        if self.supervisor is None:
            raise ControlError("unavailable", "this ECA does not supervise agents")
        return self.supervisor

    # -- reading ---------------------------------------------------------------------

    def agents(self) -> list[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.agents}."""
        return self.supervisor.agents() if self.supervisor is not None else []

    def agent(self, agent: str) -> dict[str, Any]:
        """See L{ecs.control.IControlCenter.agent}."""
        return self._supervisor().agent(agent)

    # -- actions (expert, placing: admin) -----------------------------------------------

    def set_placement(
        self, user: User, agent: str, host: str, launcher: str, options: dict[str, Any], autostart: bool
    ) -> defer.Deferred[dict[str, Any]]:
        """
        See L{ecs.control.IControlCenter.set_placement}.  Admin only: a
        placement says which program runs where, with which environment
        (C{twistd}, C{env}, C{args}), with the ECA's SSH key and SLURM account.
        """
        need(user, "admin")
        supervisor = self._supervisor()
        return self._audit.audited(
            user,
            "set_placement",
            {"agent": agent, "host": host, "launcher": launcher, "autostart": autostart},
            lambda: supervisor.place(agent, host, launcher, options, autostart, user.name),
        )

    def delete_placement(self, user: User, agent: str) -> defer.Deferred[None]:
        """See L{ecs.control.IControlCenter.delete_placement} (admin only, as placing)."""
        need(user, "admin")
        supervisor = self._supervisor()
        return self._audit.audited(user, "delete_placement", {"agent": agent}, lambda: supervisor.unplace(agent))

    def agent_command(self, user: User, agent: str, command: str) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.agent_command}."""
        need(user, "expert")
        supervisor = self._supervisor()
        actions = {"start": supervisor.start, "stop": supervisor.stop, "restart": supervisor.restart}
        if command not in actions:
            raise ControlError("not_found", f"no agent command {command!r} (start, stop, restart)")
        return self._audit.audited(user, f"{command}_agent", {"agent": agent}, lambda: actions[command](agent))

    def agent_output(self, user: User, agent: str, lines: int) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.agent_output}."""
        need(user, "expert")
        if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= MAX_OUTPUT_LINES:
            raise ControlError("bad_request", f"lines must be 1 to {MAX_OUTPUT_LINES}", field="lines")
        return defer.Deferred.fromCoroutine(self._supervisor().output(agent, lines))

    # -- partitions and detectors created and deleted at run time ------------------------

    async def _placed(self, user: User, name: str, options: dict[str, Any], what: str) -> None:
        """Place C{name} C{local} on L{PCA_HOST} unless placed, and start it when agents start on their own."""
        supervisor = self.supervisor
        if supervisor is None:
            return
        try:
            if name not in supervisor.entries and "local" in supervisor.launchers:
                await supervisor.place(name, PCA_HOST, "local", options, True, user.name)
            if supervisor.autostart and name in supervisor.entries:
                await supervisor.start(name)
        except ControlError as e:
            self._logbook.log("warn", "ECA", f"{what} not started: {e.reason}", None)

    async def _unplaced(self, name: str, stop: bool, what: str) -> None:
        """Stop (if C{stop}) and unplace C{name}; a failure is a WARN line."""
        supervisor = self.supervisor
        if supervisor is None or name not in supervisor.entries:
            return
        try:
            if stop:
                await supervisor.stop(name)
            await supervisor.unplace(name)
        except ControlError as e:
            self._logbook.log("warn", "ECA", f"{what}: {e.reason}", None)

    async def partition_created(self, user: User, partition_id: str) -> None:
        """Place (and start, when agents start on their own) the PCA of a new partition."""
        await self._placed(user, f"pca:{partition_id}", {}, f"PCA of {partition_id}")

    async def partition_deleted(self, partition_id: str) -> None:
        """Stop and unplace the PCA of a deleted partition."""
        await self._unplaced(f"pca:{partition_id}", True, f"PCA of deleted partition {partition_id}")

    async def detector_created(self, user: User, detector_id: str, type: str) -> None:
        """Place a new detector's agent with its type (and start it, when agents start on their own)."""
        options: dict[str, Any] = {"agent_args": ["--type", type]}
        await self._placed(user, f"detector:{detector_id}", options, f"agent of new detector {detector_id}")

    async def stop_detector_agent(self, detector_id: str) -> None:
        """Stop the agent of a detector about to be deleted (its failure refuses the deletion)."""
        supervisor = self.supervisor
        name = f"detector:{detector_id}"
        if supervisor is not None and name in supervisor.entries:
            await supervisor.stop(name)

    async def detector_deleted(self, detector_id: str) -> None:
        """Forget the supervision of a deleted detector's agent (stopped before)."""
        await self._unplaced(f"detector:{detector_id}", False, f"agent of deleted detector {detector_id}")
