# -*- test-case-name: tests.test_identity -*-
"""
Who a CURVE key speaks for: agent identities.

Every agent process connects with its own key pair, and every message it
sends carries that key (ZeroMQ's ZAP gives the receiver the sender's public
key; L{ecs.net.zeromq} maps it to a name through the allow-list).  The name
of the key is the name of its file in the allow-list,
C{authorized/<name>.key}, and the name says what the key may speak for:

==============================  ==============================================
name                            speaks for
==============================  ==============================================
C{eca}                          the ECA: commands PCAs and controllers
C{pca.<P>}                      the PCA of partition C{P}
C{detector.<D>}                 the controller of detector C{D}
C{global.<G>}                   global system C{G}; C{global.all}: every one
C{simhost.<prefix>#<ranges>}    a sim host's detectors, e.g. C{simhost.D#1-500}
anything else (C{client}, ...)  nothing: a client (the CLI) that may read
==============================  ==============================================

So the binding of agent id to key is the allow-list itself, which only the
administrator writes (C{ecs keys add --agent NAME}): the registry accepts a
registration or an unregister for an id only from a key whose name speaks
for that id (L{Grant.may_register}), and a PCA accepts a state only for the
systems the sending key speaks for.  Replacing the file is a key rotation,
removing it a revocation; both are logged by the allow-list when it
re-reads the directory (L{ecs.net.curve.KeyAllowList}).
"""

from __future__ import annotations

import functools

import attrs

#: The ECA's identity (the one that commands PCAs and controllers).
ECA = "eca"
#: Identity names of keys that may inject faults (an expert action, logged
#: by the controller with the key's name): the ECA and the operator's
#: client key made by C{ecs keys init}, or any key named C{expert...}.
EXPERT_PREFIX = "expert"
OPERATOR = "client"

#: Most detectors one sim-host key may speak for (as many as a sim host serves).
MAX_RANGE = 100_000


@attrs.frozen
class Grant:
    """What one identity speaks for (parsed from its name by L{grant_of})."""

    name: str
    #: "eca", "pca", "detector", "global", "simhost" or "client"
    role: str
    #: the agent id (pca, detector, global), or the sim host's prefix
    id: str = ""
    #: a sim host's numeric ranges
    ranges: tuple[tuple[int, int], ...] = ()

    @property
    def is_eca(self) -> bool:
        """The ECA's key."""
        return self.role == "eca"

    @property
    def is_expert(self) -> bool:
        """May inject faults (logged)."""
        return self.role == "eca" or self.name == OPERATOR or self.name.startswith(EXPERT_PREFIX)

    def speaks_for_system(self, system: str) -> bool:
        """May this key report the state of system (detector or global) C{system}?"""
        if self.role == "detector":
            return system == self.id
        if self.role == "global":
            return self.id == "all" or system == self.id
        if self.role == "simhost":
            return _in_ranges(system, self.id, self.ranges)
        return False

    def may_register(self, kind: str, agent_id: str) -> bool:
        """May this key register (or unregister) agent C{agent_id} of C{kind}?"""
        if self.role == "pca":
            return kind == "pca" and agent_id == self.id
        if self.role == "global":
            return kind == "global" and self.speaks_for_system(agent_id)
        if self.role in ("detector", "simhost"):
            return kind == "detector" and self.speaks_for_system(agent_id)
        return False

    def is_pca_of(self, partition: str | None) -> bool:
        """The key of the PCA of C{partition}."""
        return self.role == "pca" and partition is not None and self.id == partition


def _in_ranges(system: str, prefix: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    if not system.startswith(prefix):
        return False
    number = system[len(prefix) :]
    if not number.isdigit() or (len(number) > 1 and number.startswith("0")):
        return False
    value = int(number)
    return any(first <= value <= last for first, last in ranges)


def parse_ranges(spec: str) -> tuple[tuple[int, int], ...]:
    """C{"1-500,600"} as C{((1, 500), (600, 600))}; ValueError naming what is wrong."""
    ranges = []
    total = 0
    for part in spec.split(","):
        first_text, _, last_text = part.partition("-")
        if not first_text.isdigit() or (last_text and not last_text.isdigit()):
            raise ValueError(f"{part!r} is not a number or a range like 1-500")
        first = int(first_text)
        last = int(last_text) if last_text else first
        if last < first:
            raise ValueError(f"range {part!r} ends before it starts")
        total += last - first + 1
        if total > MAX_RANGE:
            raise ValueError(f"more than {MAX_RANGE} detectors")
        ranges.append((first, last))
    return tuple(ranges)


@functools.lru_cache(maxsize=4096)
def grant_of(name: str) -> Grant:
    """The grant of identity C{name} (a name that fits no pattern is a client); cached: one parse per key."""
    if name == ECA:
        return Grant(name, "eca")
    role, dot, rest = name.partition(".")
    if not dot or not rest:
        return Grant(name, "client")
    if role in ("pca", "detector", "global"):
        return Grant(name, role, rest)
    if role == "simhost":
        prefix, hash_, spec = rest.rpartition("#")
        if hash_:
            try:
                return Grant(name, "simhost", prefix, parse_ranges(spec))
            except ValueError:
                pass
    return Grant(name, "client")


def agent_identity(kind: str, agent_id: str) -> str:
    """The identity name of an agent process: C{pca.demo}, C{detector.STS}, C{global.all}, C{eca}."""
    if kind == "eca":
        return ECA
    return f"{kind}.{agent_id}"


def simhost_identity(prefix: str, ids: str) -> str:
    """The identity name of a sim host serving C{ids} (C{1-500,600}) with C{prefix}."""
    return f"simhost.{prefix}#{ids.replace(' ', '')}"


def node_identity(node_name: str) -> str:
    """
    The identity of an agent from its node name (C{pca:demo}, C{detector:STS},
    C{global:all}, C{eca}); a name of no agent is the operator's client key.
    """
    if node_name == ECA:
        return ECA
    kind, colon, agent_id = node_name.partition(":")
    if colon and kind in ("pca", "detector", "global") and agent_id:
        return agent_identity(kind, agent_id)
    return OPERATOR
