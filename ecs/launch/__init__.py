# -*- test-case-name: tests.test_launch -*-
"""
Launching agents: where each one runs (L{Placement}), what it runs
(L{AgentSpec}), how to find it again (L{LaunchRecord}) and what it is doing
(L{AgentStatus}), behind one interface (L{ILauncher}) with three
implementations:

  - C{local} (L{ecs.launch.local}): a child process of the ECA, in its own
    process group, output to a per-agent log file under the state directory;
  - C{ssh} (L{ecs.launch.ssh}): a twisted.conch client starts the agent on
    another host, detached and in its own process group;
  - C{slurm} (L{ecs.launch.slurm}): a SLURM job (C{sbatch}/C{scancel}/
    C{squeue}/C{sacct}).

An agent's name is C{"<kind>:<id>"} (L{agent_name}); kinds are
L{AGENT_KINDS}.  A launch record is plain JSON (L{LaunchRecord.to_json}) so
that the ECA can store it and, after its own restart, adopt the agents
still running instead of starting duplicates.

Every id and argument that reaches a command line is validated here
(L{check_id}, L{check_argument}) and, where a shell is involved (ssh),
quoted with C{shlex.quote}: no caller value is ever interpreted by a shell.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

AGENT_KINDS = ("pca", "detector", "global", "simhost")
"""The kinds of agent a launcher starts."""

LAUNCHERS = ("local", "ssh", "slurm")
"""The launcher names a placement may use."""

ID_RE = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
"""An agent id (partition, detector, global system or sim host name)."""

HOST_RE = re.compile(r"[A-Za-z0-9_.:-]{1,253}")
"""A host name or address (IPv6 without brackets)."""

_ARG_MAX = 4096


class LaunchError(Exception):
    """
    A launcher could not do what was asked.

    @ivar code: C{invalid} (bad id, argument or placement), C{unreachable}
        (host down, connection refused or dropped), C{host_key} (the host's
        key is unknown or wrong), C{auth} (our key was refused), C{timeout},
        C{failed} (the command ran and failed), C{unknown} (no such agent or
        record).
    @ivar reason: a sentence naming what went wrong.
    """

    CODES = ("invalid", "unreachable", "host_key", "auth", "timeout", "failed", "unknown")

    def __init__(self, code: str, reason: str) -> None:
        assert code in self.CODES, code
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def check_id(value: object, what: str = "agent id") -> str:
    """Return C{value} if it is a valid id (L{ID_RE}), else raise L{LaunchError}."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise LaunchError("invalid", f"invalid {what} {value!r}: use 1 to 128 letters, digits or _ . @ -")
    return value


def check_host(value: object) -> str:
    """Return C{value} if it is a valid host name or address, else raise L{LaunchError}."""
    if not isinstance(value, str) or not HOST_RE.fullmatch(value) or value.startswith("-"):
        raise LaunchError("invalid", f"invalid host {value!r}")
    return value


def check_argument(value: object, what: str = "argument") -> str:
    """
    Return C{value} if it may be passed as one command-line argument: a
    string without NUL, newline or carriage return, at most 4096 characters.
    (Shell quoting is the caller's job; this only refuses what no quoting
    makes safe or sensible.)
    """
    if not isinstance(value, str) or len(value) > _ARG_MAX or any(c in value for c in "\0\n\r"):
        raise LaunchError("invalid", f"invalid {what} {value!r}")
    return value


def agent_name(kind: str, agent_id: str) -> str:
    """C{"<kind>:<id>"}, after checking both."""
    if kind not in AGENT_KINDS:
        raise LaunchError("invalid", f"unknown agent kind {kind!r}: one of {', '.join(AGENT_KINDS)}")
    return f"{kind}:{check_id(agent_id)}"


def split_name(name: str) -> tuple[str, str]:
    """The (kind, id) of an agent name, checked."""
    kind, sep, agent_id = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not sep:
        raise LaunchError("invalid", f"invalid agent name {name!r}: expected <kind>:<id>")
    agent_name(kind, agent_id)
    return kind, agent_id


@attrs.frozen
class AgentSpec:
    """
    What to run: C{twistd -n <plugin_args>} plus the common arguments the
    launcher adds (settings file, state directory...).

    @ivar kind: one of L{AGENT_KINDS}.
    @ivar id: the agent's id (C{--id} of its plugin).
    @ivar plugin_args: the twistd plugin and its options, e.g.
        C{("ecs-detector", "--id", "D1", "--type", "STS")}.
    """

    kind: str
    id: str
    plugin_args: tuple[str, ...]

    @property
    def name(self) -> str:
        """C{"<kind>:<id>"}."""
        return agent_name(self.kind, self.id)


@attrs.frozen
class Placement:
    """
    Where and how an agent runs (a row of the store's C{placements}).

    @ivar options: launcher-specific settings (JSON object).  Common keys:
        C{twistd} (path of twistd on that host), C{args} (list of extra
        common arguments for that host, e.g. its own C{--config} and
        C{--state-dir}), C{env} (object of environment variables).  ssh:
        C{user}, C{port}, C{workdir}.  slurm: C{partition}, C{account},
        C{time}, C{extra} (list of further sbatch options).
    @ivar autostart: whether the ECA starts it at start-up (when asked to)
        and supervises it.
    """

    agent: str
    host: str
    launcher: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    autostart: bool = True

    @property
    def kind(self) -> str:
        """The agent's kind."""
        return split_name(self.agent)[0]


@attrs.frozen
class LaunchRecord:
    """
    How to find a started agent again; plain JSON (L{to_json}/L{from_json}).

    @ivar pid: the agent's pid on its host (also its process group id:
        every launcher starts the agent as the leader of a new group).
    @ivar job_id: the SLURM job id.
    @ivar log: path of the agent's output file on its host.
    @ivar started: when it was started (POSIX time).
    @ivar extra: launcher-specific facts, e.g. the process start time used
        to tell a reused pid from ours.
    """

    agent: str
    launcher: str
    host: str
    started: float
    pid: int | None = None
    job_id: str | None = None
    log: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> str:
        """The record as a JSON text."""
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LaunchRecord:
        """Parse L{to_json}'s output; L{LaunchError} C{invalid} if it is not one."""
        try:
            data = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as e:
            raise LaunchError("invalid", f"invalid launch record: {e}") from None


@attrs.frozen
class AgentStatus:
    """
    What a launcher knows of an agent.

    @ivar running: the process (or job) exists.
    @ivar exit_code: when it ended and the launcher knows how.
    @ivar since: when it started (running) or ended (not running), if known.
    @ivar detail: a short human text: C{"running"}, C{"exited with code 1"},
        C{"killed by signal 9"}, C{"PENDING"}, C{"host unreachable: ..."}.
    """

    agent: str
    running: bool
    pid: int | None = None
    job_id: str | None = None
    exit_code: int | None = None
    since: float | None = None
    detail: str = ""


class ILauncher(Interface):
    """Starts, stops and watches agents with one method of launching."""

    name = Attribute("The launcher's name: one of LAUNCHERS.")

    def start(spec: AgentSpec, placement: Placement) -> Deferred[LaunchRecord]:
        """
        Start the agent as the leader of a new process group (or as a job);
        fire with its record once its pid (job id) is known.  Fail with
        L{LaunchError}; never leave a process behind when failing.
        """

    def stop(record: LaunchRecord, grace: float) -> Deferred[AgentStatus]:
        """
        SIGTERM the agent's process group (cancel the job); after C{grace}
        seconds SIGKILL the whole group.  Fire with the final status once it
        is gone (stopping one already gone succeeds).
        """

    def status(record: LaunchRecord) -> Deferred[AgentStatus]:
        """The agent's status now (a pid reused by another program is not ours)."""

    def tail(record: LaunchRecord, lines: int) -> Deferred[str]:
        """The last C{lines} lines of the agent's output."""
