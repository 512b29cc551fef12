# -*- test-case-name: tests.test_reload -*-
"""
L{Reloader}: C{ecs reload}, C{POST /api/reload} and SIGHUP.  It reads the
detector types and global systems, every state table they name and the
partition sequence again (off the reactor thread), with the ECA's own
recovery rules and run sequences, and when every file is valid puts them
in force in the ECA and asks each connected PCA to do the same (C{reload},
L{agents.pca.agent}; the PCAs have no rules nor sequences).  The rules go
to L{agents.eca.recovery.Recovery.adopt} (counters kept for the rules
still declared), the sequences to
L{agents.eca.run_sequences.RunSequences.adopt} (a running one keeps its
steps).  Systems excluded now that the new sequence never excludes stay
excluded, each named in a warning and the reply: including them is their
partition controller's decision.

The ECA's collaborators share one L{Subsystems} and one L{Sequence}; they
are replaced in place (C{adopt}), so the inventory knows a new detector
type, the configurations a new global system's parameters and the pages
the new tables at their next look-up, with no restart.  An invalid file is
refused with its problems (file, key path or line, reason) and nothing
changes.  The reply says what changed and what each PCA answered.

The state tables the interfaces draw (L{systems}) are kept here too: they
are drawn again after a reload.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from agents.eca.errors import need
from agents.eca.interfaces import IAudit, ILogBook
from agents.eca.partitions import Partitions
from agents.eca.records import Records
from ecs.config.run_sequences import RunSequence
from ecs.config.settings import ConfigError, Subsystems
from ecs.control import ControlError, User
from ecs.fsm.recovery import RecoveryRules
from ecs.fsm.reload import (
    Coordination,
    CoordinationFiles,
    VocabularyFiles,
    changes,
    read_for_eca_off_reactor,
    snapshot,
)
from ecs.fsm.sequence import Sequence
from ecs.fsm.table import StateTable
from ecs.net.transport import RequestError
from ecs.store import Store, StoreError

#: The audit action of a reload.
ACTION = "reload"


class RecoveryHolder(Protocol):
    """Where the recovery rules are in force (L{agents.eca.recovery.Recovery})."""

    def adopt(self, rules: RecoveryRules) -> dict[str, Any]:
        """Put C{rules} in force; what changed."""


class SequencesHolder(Protocol):
    """Where the run sequences are in force (L{agents.eca.run_sequences.RunSequences})."""

    def adopt(self, sequences: Mapping[str, RunSequence]) -> dict[str, Any]:
        """Put C{sequences} in force; what changed."""


class Reloader:
    """Reads the vocabulary again and puts it in force; see the module docstring."""

    _log = Logger()

    def __init__(
        self,
        subsystems: Subsystems,
        sequence: Sequence,
        tables: dict[str, StateTable],
        partitions: Partitions,
        store: Store,
        audit: IAudit,
        logbook: ILogBook,
        reactor: Any,
        files: VocabularyFiles | None = None,
        coordination: CoordinationFiles | None = None,
        recovery: RecoveryHolder | None = None,
        run_sequences: SequencesHolder | None = None,
        run_types: Iterable[str] = (),
    ) -> None:
        """
        @param tables: the state tables in force, by file (to tell which
            changed); empty when unknown.
        @param files: where to read; by default the files the subsystems
            and the sequence were read from.
        @param coordination: where the recovery rules and run sequences
            are read again, put in force in C{recovery} and
            C{run_sequences} (the run sequences checked against
            C{run_types}); None: they are not read again (an ECA built
            without them: tests).
        """
        self._subsystems = subsystems
        self._sequence = sequence
        self._tables = dict(tables)
        self._partitions = partitions
        self._store = store
        self._audit = audit
        self._logbook = logbook
        self._reactor = reactor
        self.files = files or VocabularyFiles(subsystems.source, sequence.source)
        self.coordination = coordination
        self._recovery = recovery
        self._run_sequences = run_sequences
        self._run_types = tuple(run_types)
        self._drawn: Records | None = None
        self._running = False

    # -- reload ------------------------------------------------------------------------

    def reload(self, user: User) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.reload}: admin only, audited."""
        need(user, "admin")
        return self._audit.audited(user, ACTION, {}, self._reload)

    async def _reload(self) -> dict[str, Any]:
        if self._running:
            raise ControlError("conflict", "a reload is running: wait for its answer")
        self._running = True
        try:
            return await self._read_and_apply()
        finally:
            self._running = False

    async def _read_and_apply(self) -> dict[str, Any]:
        wanted = self._recovery is not None or self._run_sequences is not None
        coordination = self.coordination if wanted else None
        try:
            new, extra = await read_for_eca_off_reactor(
                self._reactor, self.files, coordination, self._sequence, self._run_types
            )
        except ConfigError as e:
            self._log.error(
                "reload refused, the detector types, state tables, recovery rules and run sequences in force "
                "stay: {problems}",
                problems="; ".join(e.problems),
            )
            self._logbook.log("error", "ECA", "reload refused: " + "; ".join(e.problems), None)
            raise ControlError(
                "bad_request",
                "invalid file, nothing reloaded (the types, tables, rules and sequences in force stay): "
                + "; ".join(e.problems),
                problems=list(e.problems),
            ) from None
        summary = changes(snapshot(self._subsystems, self._tables, self._sequence), new)
        self._subsystems.adopt(new.subsystems)
        self._sequence.adopt(new.sequence)
        self._tables = dict(new.tables)
        self._drawn = None
        if extra is not None:
            summary.update(self._adopt_coordination(extra))
        summary["never_excludable_excluded"] = await self._never_excludable_excluded()
        pcas = await self._ask_pcas()
        read = [str(self.files.subsystems), str(self.files.sequence)]
        if extra is not None:
            read.append("the recovery rules and run sequences")
        message = (
            f"reloaded {', '.join(read)}: "
            f"{_describe(summary) or 'nothing changed'}"
        )
        self._log.info("{text}", text=message)
        self._logbook.log("info", "ECA", message, None)
        for partition, answer in sorted(pcas.items()):
            if not answer["ok"]:
                self._logbook.log("warn", "ECA", f"PCA {partition} did not reload: {answer['reason']}", partition)
        return {**summary, "pcas": pcas}

    def _adopt_coordination(self, new: Coordination) -> dict[str, Any]:
        """The recovery rules and run sequences read again, put in force; what changed."""
        summary: dict[str, Any] = {}
        if self._recovery is not None:
            summary.update(self._recovery.adopt(new.rules))
        if self._run_sequences is not None:
            summary.update(self._run_sequences.adopt(new.sequences))
        return summary

    async def _never_excludable_excluded(self) -> list[dict[str, str]]:
        """
        The systems excluded now that the sequence in force never excludes
        (a reload added them to C{never_excluded}): they stay excluded (an
        include is the partition controller's decision, refused while it
        records), each said in a warning, until someone includes them.
        """
        try:
            rows = await self._store.exclusions()
        except StoreError as e:
            self._log.warn("exclusions not read after the reload: {error}", error=e.reason)
            return []
        found = []
        global_systems = set(self._sequence.global_systems())
        for row in rows:
            refused = self._sequence.exclusion_refused(row.system, row.system not in global_systems)
            if refused is None:
                continue
            found.append({"partition": row.partition, "system": row.system, "reason": refused})
            self._logbook.log(
                "warn", "ECA",
                f"{row.system} stays excluded from {row.partition} although {refused}: include it "
                f"(ecs include {row.partition} {row.system}) when the partition does not record",
                row.partition,
            )
        return found

    async def _ask_pcas(self) -> dict[str, dict[str, Any]]:
        """Ask every connected PCA to reload; what each answered."""
        asked: dict[str, defer.Deferred[dict[str, Any]]] = {}
        answers: dict[str, dict[str, Any]] = {}
        for partition in self._partitions:
            if partition.connected:
                asked[partition.id] = partition.link.request("reload", {})
            else:
                answers[partition.id] = {
                    "ok": False,
                    "error": "unavailable",
                    "reason": f"the PCA of {partition.id} is not connected: it reads the files when it starts",
                }
        for partition_id, d in asked.items():
            try:
                reply = await d
            except RequestError as e:
                answers[partition_id] = {"ok": False, "error": e.code, "reason": e.reason}
            except Exception as e:  # an answer per PCA, whatever went wrong
                self._log.failure("reload of the PCA of {partition}", partition=partition_id)
                answers[partition_id] = {"ok": False, "error": "failed", "reason": str(e)}
            else:
                answers[partition_id] = {
                    "ok": True,
                    "sequence": reply.get("sequence"),
                    "changes": reply.get("changes"),
                }
        return answers

    # -- drawing ---------------------------------------------------------------------------

    def systems(self) -> defer.Deferred[dict[str, Any]]:
        """
        See L{ecs.control.IControlCenter.systems}: the tables are drawn once
        per reload (L{Records} keeps them drawn; a reload starts a new one).
        """
        if self._drawn is None:
            self._drawn = Records(self._store, self._subsystems, self._sequence)
        return self._drawn.systems()


#: Who a reload by SIGHUP is audited as.
SIGHUP_USER = User("SIGHUP", ("admin",))


class HangUpReload:
    """
    SIGHUP to the ECA process reloads, as C{POST /api/reload} by an admin
    (audited as L{SIGHUP_USER}); the outcome goes to the log.  The handler
    only schedules the reload on the reactor (C{callFromThread} is safe from
    a signal handler); L{uninstall} puts the previous handler back.
    """

    _log = Logger()

    def __init__(self, reactor: Any, reload: Callable[[User], defer.Deferred[dict[str, Any]]]) -> None:
        self._reactor = reactor
        self._reload = reload
        self._previous: Any = None
        self._installed = False
        #: The reload a signal started, while it runs (tests wait for it).
        self.running: defer.Deferred[None] | None = None

    def install(self) -> None:
        """Handle SIGHUP (where the platform has it)."""
        if not hasattr(signal, "SIGHUP") or self._installed:
            return
        self._previous = signal.signal(signal.SIGHUP, self._signalled)
        self._installed = True

    def uninstall(self) -> None:
        """Put the previous handler back."""
        if self._installed:
            signal.signal(signal.SIGHUP, self._previous)
            self._installed = False

    def _signalled(self, signum: int, frame: Any) -> None:
        self._reactor.callFromThread(self.hang_up)

    def hang_up(self) -> defer.Deferred[None]:
        """Reload now (what a SIGHUP does, on the reactor thread)."""
        self._log.info("SIGHUP: reading the detector types and state tables again")

        def done(result: dict[str, Any]) -> None:
            failed = sorted(p for p, answer in result["pcas"].items() if not answer["ok"])
            self._log.info(
                "SIGHUP reload done: {summary}; PCAs not reloaded: {failed}",
                summary=_describe(result) or "nothing changed",
                failed=", ".join(failed) or "none",
            )

        def refused(failure: Failure) -> None:
            if failure.check(ControlError):
                self._log.error("SIGHUP reload refused: {reason}", reason=failure.value.reason)  # type: ignore[union-attr]
            else:
                self._log.failure("SIGHUP reload", failure)

        d = defer.maybeDeferred(self._reload, SIGHUP_USER).addCallbacks(done, refused)
        self.running = d
        return d


#: The lists of names in a reload's answer, in the order the log says them.
LISTED = ("types_added", "types_removed", "types_changed", "tables_changed", "sequences_added", "sequences_removed",
          "sequences_changed", "sequences_running_as_started")


def _describe(summary: dict[str, Any]) -> str:
    """The changes of a reload (and its warnings), in one line for the log."""
    parts = []
    for key in LISTED:
        if summary.get(key):
            parts.append(f"{key.replace('_', ' ')}: {', '.join(summary[key])}")
    if summary.get("sequence_changed"):
        parts.append("sequence changed (each PCA uses it from its next configure from Idle)")
    if summary.get("recovery_changed"):
        parts.append(f"recovery rules changed (attempt counters kept: {summary.get('recovery_counters_kept', 0)}, "
                     f"forgotten: {summary.get('recovery_counters_dropped', 0)})")
    for excluded in summary.get("never_excludable_excluded") or ():
        parts.append(f"{excluded['system']} stays excluded from {excluded['partition']} "
                     "although it may now never be excluded")
    return "; ".join(parts)


__all__ = ["ACTION", "SIGHUP_USER", "HangUpReload", "Reloader"]
