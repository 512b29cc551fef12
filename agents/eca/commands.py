# -*- test-case-name: tests.test_eca -*-
"""
L{Commands}: the operators' partition commands (configure, start, stop,
abort, reset).  L{check_command} decides, with no I/O, whether a request
may go on; L{Commands.command} then checks the control, resolves the
configurations of a configure, writes the command ahead (its audit row,
and a stop or abort with the open run: L{agents.eca.runs.RunBook.command_ahead}),
sends the request to the PCA, and records the outcome in the audit trail
and the metrics.

Stop and abort never wait for bookkeeping: when the database cannot be
written they still go out (their rows wait in line and the
C{storage_failed} alarm is raised); configure and start are refused then
with C{ControlError("storage")} (507) naming the cause.

A start may say what its run is (C{type} from the declared run types,
C{comment}, C{conditions}); a stop may carry the run's end C{comment}
(L{run_details}, L{stop_comment}).  They go into the run record, not to
the PCA: its requests stay as they were.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from agents.eca.errors import need, pca_error, store_error
from agents.eca.interfaces import IAudit, IControlScopes
from agents.eca.metrics import EcaMetrics
from agents.eca.partitions import OPERATOR_COMMANDS, Partition, Partitions
from agents.eca.runs import Ahead, RunBook, RunDetails
from ecs import runinfo
from ecs.control import ControlError, User
from ecs.net.transport import RequestError
from ecs.store import ECS_SCOPE, Store, StoreError


def check_command(user: User, partition_id: str, command: str, known: Container[str]) -> None:
    """Refuse (with the interfaces' error) a command the user may not send, or to no partition."""
    need(user, "operator")
    if partition_id not in known:
        raise ControlError("not_found", f"no partition {partition_id!r}")
    if command not in OPERATOR_COMMANDS:
        raise ControlError("not_found", f"no command {command!r}")


#: The commands that must reach the PCA even when the database cannot be written.
SAFETY_COMMANDS = ("stop", "abort")

#: The fields of a start and of a stop that are about the run record (never sent to the PCA).
RUN_FIELDS = {"start": ("type", "comment", "conditions"), "stop": ("comment",)}


def _refuse(error: runinfo.RunInfoError) -> ControlError:
    return ControlError("bad_request", f"{error.field}: {error.reason}", field=error.field)


def run_details(body: dict[str, Any], run_types: Sequence[str], user: str,
                holder: str | None, ecs_holder: str | None) -> RunDetails:
    """
    The run a start opens, from its body (C{type} one of C{run_types},
    C{comment}, C{conditions}) and who is on duty; C{bad_request} naming the
    field (an unknown type lists the allowed ones).
    """
    unknown = sorted(set(body) - set(RUN_FIELDS["start"]))
    if unknown:
        raise ControlError("bad_request", f"{unknown[0]}: unknown field of start", field=unknown[0])
    try:
        kind = None if body.get("type") is None else runinfo.check_type(body["type"], run_types)
        comment = runinfo.check_comment(body.get("comment"))
        conditions = runinfo.check_conditions(body.get("conditions"))
    except runinfo.RunInfoError as e:
        raise _refuse(e) from None
    crew = {"started_by": user, "control_holder": holder, "ecs_control": ecs_holder}
    return RunDetails(kind, comment, crew, conditions)


def stop_comment(body: dict[str, Any]) -> str | None:
    """The end comment a stop carries (C{bad_request} naming the field)."""
    unknown = sorted(set(body) - set(RUN_FIELDS["stop"]))
    if unknown:
        raise ControlError("bad_request", f"{unknown[0]}: unknown field of stop", field=unknown[0])
    try:
        return runinfo.check_comment(body.get("comment"))
    except runinfo.RunInfoError as e:
        raise _refuse(e) from None


class Commands:
    """Partition commands; see the module docstring."""

    def __init__(
        self,
        store: Store,
        partitions: Partitions,
        scopes: IControlScopes,
        audit: IAudit,
        clock: IReactorTime,
        metrics: EcaMetrics,
        runs: RunBook,
        run_types: Sequence[str] = runinfo.DEFAULT_RUN_TYPES,
    ) -> None:
        self._store = store
        self._partitions = partitions
        self._scopes = scopes
        self._audit = audit
        self._clock = clock
        self._metrics = metrics
        self._runs = runs
        self.run_types = tuple(run_types)

    def command(
        self, user: User, partition_id: str, command: str, body: dict[str, Any]
    ) -> defer.Deferred[dict[str, Any]]:
        """See L{ecs.control.IControlCenter.command}."""
        return defer.Deferred.fromCoroutine(self._command(user, partition_id, command, body))

    async def _command(self, user: User, partition_id: str, command: str, body: dict[str, Any]) -> dict[str, Any]:
        check_command(user, partition_id, command, self._partitions)
        partition = self._partitions.get(partition_id)
        safety = command in SAFETY_COMMANDS
        try:
            await self._scopes.require_holder(user, partition_id)
        except StoreError as e:
            # The holder was read (a refusal is a ControlError); what failed
            # is writing the activity: a safety command goes on regardless.
            if not safety or e.code not in ("storage", "unavailable"):
                raise store_error(e) from None
        started = self._clock.seconds()
        outcome, code = "ok", "ok"
        arguments = {"partition": partition_id, **body}
        ahead: Ahead | None = None
        details: RunDetails | None = None
        try:
            request = dict(body)
            sent = None
            end_comment = None
            if command == "configure":
                request, sent = await self._resolve_configure(body)
            elif command == "start":
                request = {}
                details = run_details(body, self.run_types, user.name, self._scopes.holder(partition_id),
                                      self._scopes.holder(ECS_SCOPE))
            elif command == "stop":
                request, end_comment = {}, stop_comment(body)
            try:
                ahead = await self._runs.command_ahead(
                    user.name, command, arguments, partition_id, safety, end_comment
                )
            except StoreError as e:
                raise store_error(e) from None
            if command == "start":
                partition.next_run = details
            reply = await partition.command(command, request, user.name)
            if sent is not None:
                # Only once the PCA accepted, and without what it ignored
                # (systems not in the partition): the next run records these.
                ignored = reply.get("ignored", []) if isinstance(reply, dict) else []
                partition.sent = {system: c for system, c in sent.items() if system not in ignored}
            return reply
        except ControlError as e:
            outcome, code = f"{e.code}: {e.reason}", e.code
            raise
        except RequestError as e:
            error = pca_error(e)
            outcome, code = f"{e.code}: {e.reason}", error.code
            raise error from None
        finally:
            self._metrics.command_done(command, code, self._clock.seconds() - started)
            if command == "start" and code != "ok":
                partition.next_run = None  # refused: no run opens with what it said
            if ahead is not None:
                self._runs.command_done(ahead, outcome, refused=code != "ok")
            elif code != "storage":
                # refused before anything was written (bad request, unknown tag): recorded in line
                self._runs.writer.write(
                    f"audit {command} of {partition_id}",
                    lambda: self._audit.record(user.name, command, arguments, outcome),
                ).addErrback(lambda f: None)

    async def reconfigure(self, partition: Partition, tag: str, who: str) -> dict[str, Any]:
        """
        Configure C{partition} with C{tag} for the ECA itself (the recovery
        rules, as C{who}): no user to check; the caller audits it.
        """
        # auto: through every stage, as an operator's configure of a fallen partition would be
        request, sent = await self._resolve_configure({"tag": tag, "auto": True})
        reply = await partition.command("configure", request, who)
        ignored = reply.get("ignored", []) if isinstance(reply, dict) else []
        partition.sent = {system: c for system, c in sent.items() if system not in ignored}
        return reply

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
                rows = list((await self._store.resolve_tag(tag)).values())
            elif (
                "configs" in body
                and isinstance(body["configs"], list)
                and all(isinstance(c, str) for c in body["configs"])
            ):
                tag = None
                rows = [await self._store.config(c) for c in body["configs"]]
            else:
                raise ControlError(
                    "bad_request", "configure needs 'tag' (a name) or 'configs' (a list of configuration ids)"
                )
        except StoreError as e:
            raise store_error(e) from None
        sent = {row.system: row.snapshot() for row in rows}
        inline = [{"config_id": r.config_id, "system": r.system, "parameters": r.parameters} for r in rows]
        request: dict[str, Any] = {"configs": inline, "auto": auto}
        if tag is not None:
            request["tag"] = tag
        return request, sent
