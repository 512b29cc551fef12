# -*- test-case-name: tests.test_commands -*-
"""
The vocabulary of the operator and expert commands, shared by the C{ecs}
command line and the ECA's SSH shell: how a command is declared
(L{Command}, L{Action}, L{arg}), the door it acts through (L{Api}: the
HTTP API for the command line, L{ecs.control.IControlCenter} in the
shell), what it writes to (L{Printer}), the argument checks (L{name},
L{limit}, L{parse_since}) and how a declared command becomes an argparse
parser (L{add_parser}).

The table itself, with the bodies of the commands, is
L{ecs.client.table.COMMANDS}.  Nothing here does I/O: a body awaits the
L{Api}, whose HTTP implementation answers at once (the command line runs
the coroutine to its end with L{run_now}) and whose shell implementation
returns the center's Deferreds.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs

from ecs.exits import EXIT_USAGE

NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
"""What a name (partition, system, user, agent) may be; the store's rule (L{ecs.store.errors})."""
LONG_NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
"""The same for configuration ids and tag names."""
LIMIT_MAX = 10_000
ROLES = ("viewer", "operator", "expert", "admin")
"""The roles, lowest first (as L{ecs.control.ROLES}; the client may not import the control layer)."""


class CommandError(Exception):
    """A command that cannot go on: its exit code, a message naming what was wrong, the answer's body and status."""

    def __init__(self, exit_code: int, message: str, body: Any = None, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.body = body
        self.status = status
        """The HTTP status of the refusal (the shell gives the one the web would have)."""


class Api(Protocol):
    """The ECA as a command sees it: L{ecs.control.IControlCenter} for the logged-in user."""

    async def partitions(self) -> list[dict[str, Any]]: ...
    async def partition(self, partition: str) -> dict[str, Any]: ...
    async def take_control(self, scope: str, force: bool) -> dict[str, Any]: ...
    async def release_control(self, scope: str) -> Any: ...
    async def command(self, partition: str, command: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def create_partition(self, partition: str) -> dict[str, Any]: ...
    async def delete_partition(self, partition: str, force: bool) -> Any: ...
    async def systems(self) -> dict[str, Any]: ...
    async def unassigned(self) -> list[dict[str, Any]]: ...
    async def create_detector(self, detector: str, type: str) -> dict[str, Any]: ...
    async def delete_detector(self, detector: str, force: bool) -> Any: ...
    async def move_detector(self, detector: str, to: str | None, force: bool) -> dict[str, Any]: ...
    async def configs(self, system: str | None) -> list[dict[str, Any]]: ...
    async def config(self, config: str, version: int | None) -> dict[str, Any]: ...
    async def save_config(self, config: str, system: str, parameters: dict[str, Any]) -> dict[str, Any]: ...
    async def delete_config(self, config: str) -> Any: ...
    async def tags(self, partition: str | None) -> list[dict[str, Any]]: ...
    async def tag(self, name: str) -> dict[str, Any]: ...
    async def save_tag(self, name: str, configs: list[str]) -> dict[str, Any]: ...
    async def delete_tag(self, name: str) -> Any: ...
    async def users(self) -> list[dict[str, Any]]: ...
    async def add_user(self, name: str, password: str, roles: list[str]) -> dict[str, Any]: ...
    async def update_user(self, name: str, password: str | None, roles: list[str] | None) -> dict[str, Any]: ...
    async def delete_user(self, name: str) -> Any: ...
    async def agents(self) -> list[dict[str, Any]]: ...
    async def agent(self, agent: str) -> dict[str, Any]: ...
    async def set_placement(
        self, agent: str, host: str, launcher: str, options: dict[str, Any], autostart: bool
    ) -> dict[str, Any]: ...
    async def delete_placement(self, agent: str) -> Any: ...
    async def agent_command(self, agent: str, command: str) -> dict[str, Any]: ...
    async def agent_output(self, agent: str, lines: int) -> dict[str, Any]: ...
    async def runs(
        self, partition: str | None, limit: int, run_type: str | None = None, since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]: ...
    async def audit(
        self, user: str | None, action: str | None, since: float | None, until: float | None, limit: int,
        before: int | None = None,
    ) -> list[dict[str, Any]]: ...
    async def logs(
        self, partition: str | None, level: str | None, since: float | None, q: str | None, limit: int
    ) -> list[dict[str, Any]]: ...
    async def logbook(
        self, text: str | None, partition: str | None, run: int | None, author: str | None, since: float | None,
        until: float | None, limit: int, before: int | None = None,
    ) -> list[dict[str, Any]]: ...
    async def add_logbook_entry(
        self, text: str, partition: str | None, run: int | None, corrects: int | None,
        attachments: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]: ...
    async def logbook_attachment(self, entry: int, n: int) -> dict[str, Any]: ...
    async def run_sequences(self) -> list[dict[str, Any]]: ...
    async def run_sequence(self, name: str, partition: str) -> dict[str, Any]: ...
    async def sequence_status(self, partition: str) -> dict[str, Any]: ...
    async def sequence_control(self, partition: str, action: str) -> dict[str, Any]: ...
    async def alarms(self, include_all: bool, partition: str | None) -> list[dict[str, Any]]: ...
    async def acknowledge_alarm(self, alarm_id: int) -> dict[str, Any]: ...
    async def shelve_alarm(
        self, alarm_id: int, seconds: float | None, until: float | None, reason: str
    ) -> dict[str, Any]: ...
    async def reload(self) -> dict[str, Any]: ...


class Printer(Protocol):
    """Where a command writes: its answer (text, or the JSON with C{--json}) and notes (stderr)."""

    def result(self, text: str, data: Any) -> None: ...

    def note(self, text: str) -> None: ...


class Follow(Protocol):
    """The commands that follow the ECA's events; each front end has its own way to listen."""

    async def command_wait(self, run: Run, partition: str, command: str, body: dict[str, Any]) -> int: ...

    async def watch(self, run: Run, partition: str, until: str | None) -> int: ...

    async def logs_follow(self, run: Run, since: float | None) -> int: ...

    async def sequence_wait(self, run: Run, partition: str, name: str) -> int: ...


@attrs.define
class Run:
    """
    One command being run: the L{Api}, the parsed C{args}, the L{Printer},
    and what the front end can do for it (each C{None} where it cannot:
    the shell has no files of yours and no hidden password prompt).
    """

    api: Api
    args: argparse.Namespace
    out: Printer
    follow: Follow | None = None
    color: bool = False
    now: Callable[[], float] = time.time
    confirm: Callable[[str], bool] | None = None
    read_file: Callable[[str], str] | None = None
    read_password: Callable[[str], str] | None = None
    #: Read at most C{n} + 1 bytes of a file of yours (C{read_bytes(path, n)}), refused naming it when unreadable.
    read_bytes: Callable[[str, int], bytes] | None = None
    #: Write a file of yours (C{write_bytes(path, data, replace)}; C{-}: standard output).
    write_bytes: Callable[[str, bytes, bool], None] | None = None
    where: str = "the command line"


@attrs.frozen
class Arg:
    """
    One argparse argument: its flags and keyword options.  The arguments of
    one C{one_of} group exclude each other, and one of them is required.
    """

    flags: tuple[str, ...]
    options: dict[str, Any] = attrs.field(factory=dict)
    one_of: str | None = None


def arg(*flags: str, one_of: str | None = None, **options: Any) -> Arg:
    """An L{Arg}."""
    return Arg(flags, options, one_of)


@attrs.frozen
class Action:
    """
    What a command (or one of its actions, C{name}) does: the role it
    needs, its arguments, its body, and whether it may follow events for
    long (C{follows}: the shell then waits up to C{--timeout}).
    """

    name: str
    help: str
    role: str
    run: Callable[[Run], Awaitable[int]]
    args: tuple[Arg, ...] = ()
    follows: bool = False

    def role_for(self, args: argparse.Namespace) -> str:
        """The role this invocation needs (taking the ECS control or forcing needs more)."""
        if self.role == "operator" and getattr(args, "force", False):
            return "admin"
        if self.role == "operator" and getattr(args, "partition", None) == "ecs" and args.command == "control":
            return "expert"
        return self.role


@attrs.frozen
class Command:
    """A command: its name, a line of help, and one L{Action} (named C{""}) or several (with a C{default})."""

    name: str
    help: str
    actions: tuple[Action, ...]
    default: str | None = None

    @property
    def simple(self) -> bool:
        """Whether the command has no actions of its own."""
        return len(self.actions) == 1 and self.actions[0].name == ""

    def action(self, name: str | None) -> Action:
        """The action called C{name} (the default one for None)."""
        wanted = name if name is not None else (self.default or "")
        for action in self.actions:
            if action.name == wanted:
                return action
        raise KeyError(wanted)


def add_parser(
    parser: argparse.ArgumentParser, command: Command, common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """
    Give C{parser} the arguments of C{command} (a subparser per action),
    C{common(p)} adding the front end's own options to each; the parsed
    namespace has C{command} (its name) and C{spec} (the L{Action}).
    """
    parser.set_defaults(command=command.name)
    if command.simple:
        _add_args(parser, command.actions[0])
        common(parser)
        return
    common(parser)
    if command.default:
        # "configs --system S" is "configs list --system S": the default action's options work without its name
        _add_args(parser, command.action(None))
    else:
        parser.set_defaults(spec=None)
    actions = parser.add_subparsers(
        dest="action",
        metavar="ACTION",
        required=command.default is None,
        title="actions" + (f" (default: {command.default})" if command.default else ""),
    )
    for action in command.actions:
        sub = actions.add_parser(
            action.name, help=action.help, description=action.help, formatter_class=parser.formatter_class
        )
        _add_args(sub, action)
        common(sub)


def _add_args(parser: argparse.ArgumentParser, action: Action) -> None:
    groups: dict[str, Any] = {}
    for a in action.args:
        if a.one_of is None:
            parser.add_argument(*a.flags, **a.options)
        else:
            if a.one_of not in groups:
                groups[a.one_of] = parser.add_mutually_exclusive_group(required=True)
            groups[a.one_of].add_argument(*a.flags, **a.options)
    parser.set_defaults(spec=action)


def run_now(coroutine: Coroutine[Any, Any, int]) -> int:
    """
    Run a command's coroutine to its end at once.  The command line's
    L{Api} answers without ever suspending (it blocks on HTTP instead), so
    the first C{send} finishes the coroutine.
    """
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return int(stop.value)
    coroutine.close()
    raise RuntimeError("a command waited for something the command line cannot wait for")


# -- argument checks ------------------------------------------------------------------------


def name(what: str, long: bool = False) -> Callable[[str], str]:
    """An argparse type: a name as L{NAME_RE} (C{long}: L{LONG_NAME_RE}) allows, else an error naming C{what}."""
    pattern, most = (LONG_NAME_RE, 200) if long else (NAME_RE, 128)

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise argparse.ArgumentTypeError(f"invalid {what} {value!r}: use 1 to {most} letters, digits or _ . : @ -")
        return value

    check.__name__ = what  # argparse names the type in some messages
    return check


def limit(value: str) -> int:
    """An argparse type: a whole number from 1 to L{LIMIT_MAX}."""
    if not value.isdigit() or not 1 <= int(value) <= LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"invalid limit {value!r}: a number from 1 to {LIMIT_MAX}")
    return int(value)


def version(value: str) -> int:
    """An argparse type: a configuration version (1 or more)."""
    if not value.isdigit() or not 1 <= int(value) < 2**31:
        raise argparse.ArgumentTypeError(f"invalid version {value!r}: a number from 1 on")
    return int(value)


def roles(value: str) -> list[str]:
    """An argparse type: a comma list of roles."""
    found = [r.strip() for r in value.split(",") if r.strip()]
    wrong = [r for r in found if r not in ROLES]
    if not found or wrong:
        raise argparse.ArgumentTypeError(f"invalid roles {value!r}: a comma list of {', '.join(ROLES)}")
    return found


def parse_since(text: str, now: float | None = None) -> float:
    """
    C{30s}, C{10m}, C{2h}, C{1d} ago; an ISO date/time (local time unless it
    says otherwise); or seconds since the epoch.  ValueError naming the text.
    """
    now = time.time() if now is None else now
    value = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return now - float(value[:-1]) * units[value[-1]]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if number == number and abs(number) != float("inf"):
            return number
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r}: give 30s/10m/2h/1d ago, an ISO time, or epoch seconds") from None


def usage(message: str) -> CommandError:
    """A usage error (exit 2)."""
    return CommandError(EXIT_USAGE, message)


__all__ = [
    "LIMIT_MAX",
    "LONG_NAME_RE",
    "NAME_RE",
    "ROLES",
    "Action",
    "Api",
    "Arg",
    "Command",
    "CommandError",
    "Follow",
    "Printer",
    "Run",
    "add_parser",
    "arg",
    "limit",
    "name",
    "parse_since",
    "roles",
    "run_now",
    "usage",
    "version",
]
