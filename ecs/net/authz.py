# -*- test-case-name: tests.test_identity -*-
"""
Authorisation by sender: who may send what to whom.

A handler table registered on a server is wrapped by L{guarded} with a
table of rules, one per message type; a type without a rule is refused
(deny by default).  A rule sees the sender's L{Grant} (from the name of the
CURVE key that sent the message, L{ecs.net.identity}), never just the
C{sender} field, which the message merely claims: that field is checked
against the key too (a key of one agent claiming to be another is
refused).  A message whose identity is None (no authentication:
C{security: none}, the in-process transport of unit tests) is not checked.

The tables, declared here, side by side:

=================  =======================================  ============================
receiver           message types                            accepted from
=================  =======================================  ============================
registry (ECA)     register, register_many, unregister      the key of each agent id
                                                            (L{Grant.may_register}), the ECA
registry (ECA)     epoch, lookup, locate, partitions,       any allowed key
                   partition, partitions_of, detector
PCA of P           configure, start, stop, abort, lock,     the ECA
                   unlock, reset, add_detector,
                   remove_detector, reload
PCA of P           states                                   controllers: each update only
                                                            for a system the key speaks for
PCA of P           alarm                                    the ECA; a controller for a
                                                            source it speaks for
PCA of P           status, snapshot                         any allowed key
controller         configure, start, stop, abort, reset...  the ECA; the PCA of the partition
                   (every state-machine command)            the command is for
controller         assign, add_partition, remove_partition  the ECA
controller         inject                                   expert keys (L{Grant.is_expert}),
                                                            logged with the key's name
controller         status                                   any allowed key
=================  =======================================  ============================

Every refusal answers C{forbidden} with a reason naming the key and the
message type, and logs a WARN line saying the same (at most
L{WARN_PER_KIND} lines per key and type, then one per thousand refusals,
so that a flood cannot fill the log).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.logger import Logger

from ecs.net.identity import OPERATOR, Grant, grant_of, node_identity
from ecs.net.transport import Handler, Request, RequestError

#: Error code of a message refused because of who sent it.
FORBIDDEN = "forbidden"

#: WARN lines per (key, message type) before only every thousandth is logged.
WARN_PER_KIND = 20

#: A rule: the request to hand to the handler (possibly narrowed), or the
#: reason for refusing it.
Rule = Callable[[Grant, Request], "Request | str"]

_log = Logger()
_refusals: dict[tuple[str, str], int] = {}


def anyone(grant: Grant, request: Request) -> Request | str:
    """Any allowed key (reading)."""
    return request


def eca_only(grant: Grant, request: Request) -> Request | str:
    """Only the ECA's key."""
    return request if grant.is_eca else "only the ECA's key may send it"


def expert(grant: Grant, request: Request) -> Request | str:
    """The ECA or an expert key (fault injection); logged by the caller of L{guarded}."""
    if not grant.is_expert:
        return f"only the ECA or an expert key ({OPERATOR}, expert...) may send it"
    _log.warn(
        "expert action {type} to {target} by key {identity}: {body}",
        type=request.type,
        target=request.target,
        identity=grant.name,
        body=str(request.body)[:200],
    )
    return request


def _sender_matches(grant: Grant, sender: str) -> bool:
    """A sender naming an agent must be that key's agent (the ECA may name itself only)."""
    claimed = node_identity(sender)
    return claimed == OPERATOR or claimed == grant.name


def guarded(where: str, handlers: Mapping[str, Handler], rules: Mapping[str, Rule]) -> dict[str, Handler]:
    """
    C{handlers}, each checked against its rule in C{rules} before it runs.

    @param where: names the receiver in refusals and log lines (C{PCA demo}).
    """
    return {name: _guard(where, name, handler, rules.get(name)) for name, handler in handlers.items()}


def _guard(where: str, name: str, handler: Handler, rule: Rule | None) -> Handler:
    def checked(request: Request) -> Any:
        if request.identity is None:
            return handler(request)
        grant = grant_of(request.identity)
        if rule is None:
            result: Request | str = "no rule allows it"
        elif not _sender_matches(grant, request.sender):
            result = f"the message claims sender {request.sender!r}, which is not this key's"
        else:
            result = rule(grant, request)
        if isinstance(result, str):
            return refuse(where, grant, request, result)
        return handler(result)

    return checked


def refuse(where: str, grant: Grant, request: Request, reason: str) -> None:
    """Log the refusal (WARN, rate-limited) and, for a request, raise L{FORBIDDEN}."""
    text = f"{where}: {request.type!r} from key {grant.name} refused: {reason}"
    key = (grant.name, request.type)
    if len(_refusals) > 10_000:
        _refusals.clear()
    count = _refusals[key] = _refusals.get(key, 0) + 1
    if count <= WARN_PER_KIND or count % 1000 == 0:
        _log.warn(
            "{text} (sender claimed {sender!r}; refusal {count} of this kind)",
            text=text,
            sender=request.sender,
            count=count,
        )
    if request.id is not None:
        raise RequestError(FORBIDDEN, text)


# -- the tables ------------------------------------------------------------

REGISTRY_READS = ("epoch", "lookup", "locate", "partitions", "partition", "partitions_of", "detector")


def registry_rules() -> dict[str, Rule]:
    """The ECA's registry."""

    def own_id(grant: Grant, request: Request) -> Request | str:
        kind, agent_id = request.body.get("kind"), request.body.get("id")
        if grant.is_eca:
            return request
        if isinstance(kind, str) and isinstance(agent_id, str) and grant.may_register(kind, agent_id):
            return request
        return f"the key may not {request.type} {kind} {agent_id} (it speaks for {grant.name} only)"

    def own_ids(grant: Grant, request: Request) -> Request | str:
        """Bulk registration: every agent in it must be the key's own."""
        agents = request.body.get("agents")
        if grant.is_eca or not isinstance(agents, list):
            return request  # the handler says what is wrong with it
        for agent in agents:
            kind, agent_id = (agent.get("kind"), agent.get("id")) if isinstance(agent, dict) else (None, None)
            if not (isinstance(kind, str) and isinstance(agent_id, str) and grant.may_register(kind, agent_id)):
                return f"the key may not register {kind} {agent_id} (it speaks for {grant.name} only)"
        return request

    rules: dict[str, Rule] = {name: anyone for name in REGISTRY_READS}
    rules["register"] = rules["unregister"] = own_id
    rules["register_many"] = own_ids
    return rules


PCA_COMMANDS = (
    "configure", "start", "stop", "abort", "lock", "unlock", "reset", "add_detector", "remove_detector",
    "reload", "exclude", "include", "recovery",
)


def _states(grant: Grant, request: Request) -> Request | str:
    """Only the updates of systems the key speaks for; the rest is refused, logged."""
    updates = request.body.get("updates")
    if not isinstance(updates, list):
        return request  # the handler says what is wrong with it
    kept = [u for u in updates if isinstance(u, dict) and grant.speaks_for_system(str(u.get("system")))]
    if not kept and updates:
        return "the key speaks for none of the systems in it"
    if len(kept) != len(updates):
        others = sorted({str(u.get("system"))[:64] for u in updates if u not in kept})[:5]
        dropped = attrs.evolve(request, id=None)
        refuse(f"PCA {request.target}", grant, dropped, f"updates for {', '.join(others)} dropped")
        return attrs.evolve(request, body={**request.body, "updates": kept})
    return request


def _alarm(grant: Grant, request: Request) -> Request | str:
    source = request.body.get("source") or request.sender
    if grant.is_eca or (isinstance(source, str) and grant.speaks_for_system(source)):
        return request
    return f"an alarm from {source!r} must come from its own key"


def pca_rules() -> dict[str, Rule]:
    """A PCA."""
    rules: dict[str, Rule] = {name: eca_only for name in PCA_COMMANDS}
    rules.update(status=anyone, snapshot=anyone, states=_states, alarm=_alarm)
    return rules


def controller_rules(
    commands: tuple[str, ...], partition_of: Callable[[Request], str | None]
) -> dict[str, Rule]:
    """
    A controller.

    @param partition_of: the partition a command is for (a detector's
        current one; a global system's named in the request).
    """

    def eca_or_its_pca(grant: Grant, request: Request) -> Request | str:
        if grant.is_eca:
            return request
        partition = partition_of(request)
        if grant.is_pca_of(partition):
            return request
        return f"only the ECA or the PCA of partition {partition} may send it"

    rules: dict[str, Rule] = {name: eca_or_its_pca for name in commands}
    rules.update(
        status=anyone, inject=expert, assign=eca_only, add_partition=eca_only, remove_partition=eca_only
    )
    return rules
