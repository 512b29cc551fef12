# -*- test-case-name: tests.test_supervision_e2e -*-
"""
The ECA's agent actions (L{IControlCenter} C{agents}, C{set_placement},
C{start_agent}...), over its L{Supervisor}, and what ties the supervisor to
the ECA: the registry (is an agent registered?), the live C{agent} events,
operator log lines, and the PCA of a partition created or deleted at run
time (placed C{local} on C{localhost} and started when the ECA starts
agents on its own; stopped and unplaced with its partition).

Which registration proves an agent runs: C{pca:P} registers as (pca, P),
C{detector:D} as (detector, D), C{global:all} as every global system of the
sequence, C{global:G} as (global, G), and a sim host C{simhost:S} as the
first detector of its C{--ids} (with its C{--prefix}).  When the launch
record has a pid (local, ssh), the registration must come from that pid:
a stale entry of a dead process does not count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from agents.eca.supervisor.supervisor import Supervisor, agent_args
from ecs.control import ControlError, User
from ecs.launch import ILauncher, LaunchError, LaunchRecord
from ecs.net.remote_registry import Entry

if TYPE_CHECKING:
    from agents.eca.agent import ExperimentControlAgent

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


def attach_supervisor(eca: ExperimentControlAgent, launchers: Mapping[str, ILauncher], reactor: Any,
                      **parameters: Any) -> Supervisor:
    """Make the ECA's supervisor (see L{Supervisor} for C{parameters}) and attach it."""
    supervisor = Supervisor(
        eca.store,
        launchers,
        reactor,
        registered=eca._agent_registered,
        on_change=lambda data: eca.emit("agent", data, None),
        log_event=lambda level, message: eca.log_event(level, "ECA", message, None),
        **parameters,
    )
    eca.supervisor = supervisor
    return supervisor


class AgentsMixin:
    """Agent actions of L{agents.eca.agent.ExperimentControlAgent} (before L{ManagementMixin} in its bases)."""

    _log = Logger()
    supervisor: Supervisor | None = None

    # -- registry ------------------------------------------------------------------

    def _agent_registered(self: ExperimentControlAgent, name: str, record: LaunchRecord | None) -> bool:
        kind, _, agent_id = name.partition(":")
        pid = record.pid if record is not None and record.launcher != "slurm" else None
        entries = self.registry.entries

        def live(key: tuple[str, str]) -> bool:
            entry = entries.get(key)
            return entry is not None and (pid is None or entry.info.pid in (pid, -1))

        if kind == "global" and agent_id == "all":
            systems = self.sequence.global_systems()
            return bool(systems) and all(live(("global", s)) for s in systems)
        if kind == "simhost":
            supervised = self.supervisor.entries.get(name) if self.supervisor else None
            first = first_simulated(supervised.placement.options) if supervised and supervised.placement else None
            return first is not None and live(("detector", first))
        return live((kind, agent_id))

    def _agent_changed(self: ExperimentControlAgent, kind: str, agent_id: str, entry: Entry | None) -> None:
        super()._agent_changed(kind, agent_id, entry)  # type: ignore[misc]
        if self.supervisor is None:
            return
        names = [f"{kind}:{agent_id}"]
        if kind == "global":
            names.append("global:all")
        elif kind == "detector":
            names += [n for n in self.supervisor.entries if n.startswith("simhost:")]
        self.supervisor.registry_changed(names)

    # -- reading --------------------------------------------------------------------

    def _supervisor(self) -> Supervisor:
        if self.supervisor is None:
            raise ControlError("unavailable", "this ECA does not supervise agents")
        return self.supervisor

    def agents(self) -> list[dict[str, Any]]:
        """See L{IControlCenter.agents}."""
        return self.supervisor.agents() if self.supervisor is not None else []

    def agent(self, agent: str) -> dict[str, Any]:
        """See L{IControlCenter.agent}."""
        return self._supervisor().agent(agent)

    # -- actions (expert) -------------------------------------------------------------

    def set_placement(self: ExperimentControlAgent, user: User, agent: str, host: str, launcher: str,
                      options: dict[str, Any], autostart: bool) -> defer.Deferred[dict[str, Any]]:
        """
        See L{IControlCenter.set_placement}.  Admin only: a placement says
        which program runs where, with which environment (C{twistd},
        C{env}, C{args}), with the ECA's SSH key and SLURM account.
        """
        self._need(user, "admin")
        supervisor = self._supervisor()
        return self._audited(user, "set_placement",
                             {"agent": agent, "host": host, "launcher": launcher, "autostart": autostart},
                             lambda: supervisor.place(agent, host, launcher, options, autostart, user.name))

    def delete_placement(self: ExperimentControlAgent, user: User, agent: str) -> defer.Deferred[None]:
        """See L{IControlCenter.delete_placement} (admin only, as placing)."""
        self._need(user, "admin")
        supervisor = self._supervisor()
        return self._audited(user, "delete_placement", {"agent": agent}, lambda: supervisor.unplace(agent))

    def agent_command(self: ExperimentControlAgent, user: User, agent: str, command: str) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.agent_command}."""
        self._need(user, "expert")
        supervisor = self._supervisor()
        actions = {"start": supervisor.start, "stop": supervisor.stop, "restart": supervisor.restart}
        if command not in actions:
            raise ControlError("not_found", f"no agent command {command!r} (start, stop, restart)")
        return self._audited(user, f"{command}_agent", {"agent": agent}, lambda: actions[command](agent))

    def agent_output(self: ExperimentControlAgent, user: User, agent: str, lines: int) -> defer.Deferred[dict[str, Any]]:
        """See L{IControlCenter.agent_output}."""
        self._need(user, "expert")
        if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= MAX_OUTPUT_LINES:
            raise ControlError("bad_request", f"lines must be 1 to {MAX_OUTPUT_LINES}", field="lines")
        return defer.Deferred.fromCoroutine(self._supervisor().output(agent, lines))

    # -- partitions created and deleted at run time ------------------------------------

    def create_partition(self: ExperimentControlAgent, user: User, partition_id: str) -> defer.Deferred[dict[str, Any]]:
        """Create the partition (L{ManagementMixin}), then place (and start) its PCA."""
        d: defer.Deferred[dict[str, Any]] = super().create_partition(user, partition_id)  # type: ignore[misc]

        async def then(summary: dict[str, Any]) -> dict[str, Any]:
            supervisor = self.supervisor
            name = f"pca:{partition_id}"
            if supervisor is None:
                return summary
            try:
                if name not in supervisor.entries and "local" in supervisor.launchers:
                    await supervisor.place(name, PCA_HOST, "local", {}, True, user.name)
                if supervisor.autostart and name in supervisor.entries:
                    await supervisor.start(name)
            except ControlError as e:
                self.log_event("warn", "ECA", f"PCA of {partition_id} not started: {e.reason}", None)
            return summary

        return d.addCallback(lambda summary: defer.Deferred.fromCoroutine(then(summary)))

    def delete_partition(self: ExperimentControlAgent, user: User, partition_id: str, force: bool = False) -> defer.Deferred[None]:
        """Delete the partition (L{ManagementMixin}), then stop and unplace its PCA."""
        d: defer.Deferred[None] = super().delete_partition(user, partition_id, force)  # type: ignore[misc]

        async def then(result: None) -> None:
            supervisor = self.supervisor
            name = f"pca:{partition_id}"
            if supervisor is None or name not in supervisor.entries:
                return
            try:
                await supervisor.stop(name)
                await supervisor.unplace(name)
            except ControlError as e:
                self.log_event("warn", "ECA", f"PCA of deleted partition {partition_id}: {e.reason}", None)

        return d.addCallback(lambda result: defer.Deferred.fromCoroutine(then(result)))
