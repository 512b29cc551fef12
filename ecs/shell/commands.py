# -*- test-case-name: tests.test_shell -*-
"""
The commands of the ECA's SSH admin shell (L{ecs.shell.server}): one line in, text
out, an exit code back.

The commands are those of the C{ecs} command line, acting through the
L{IControlCenter} as the web does, so the same rules apply (roles, control
ownership, partition locks) and the center writes the audit trail::

    status [P]                        partitions, or one partition in full
    control take P [--force]          take control of partition P (--force: admin)
    control release P                 give it up
    configure P --tag T [--auto]      configure P with tag T (--auto: on to the top state)
    start P | stop P | abort P        run control
    reset P SYSTEM                    reset one system of P
    logs [P] [--level L] [--since WHEN] [--grep TEXT] [--limit N]
    runs [P] [--limit N]
    whoami | help [COMMAND] | exit
    python [SOURCE]                   admin: the Python manhole (see L{ecs.shell.server})

A leading C{ecs} is ignored (C{ssh host 'ecs status'} works as C{status}).
Exit codes are the CLI's (L{ecs.client.http}): 0 done, 1 refused (or no answer:
5), 2 bad usage, 3 not allowed for your role.  Nothing typed is ever
evaluated, except by C{python} for admins: a line is split like a shell
line (C{shlex}), and every argument is checked (names against the store's
L{NAME_RE}) with an error naming the argument.  Every command has a
timeout; an exception in a command is reported and logged, never raised.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ecs import textview
from ecs.config.logs import LEVELS
from ecs.control import ControlError, IControlCenter, User
from ecs.exits import EXIT_AUTH, EXIT_OK, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_USAGE
from ecs.store import NAME_RE

COMMAND_TIMEOUT = 30.0
"""Seconds a command may take before the shell stops waiting for it."""

LINE_MAX = 4096
LIMIT_MAX = 10_000
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PYTHON_RE = re.compile(r"\s*(?:ecs\s+)?python(?:\s+(.*?))?\s*", re.DOTALL)


class Output(Protocol):
    """Where a command writes: normal text and error text (each ends its own lines)."""

    def out(self, text: str) -> None: ...

    def err(self, text: str) -> None: ...


@attrs.frozen
class Outcome:
    """
    What a command line came to: its exit C{code}, and whether the session
    should end (C{exit}) or switch to the Python manhole (C{python}).
    """

    code: int
    exit: bool = False
    python: bool = False


class UsageError(Exception):
    """A command line that cannot be run as typed."""


class CommandTimeout(Exception):
    """A command did not finish in time."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises L{UsageError} instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or self.format_usage())


def _name(what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise argparse.ArgumentTypeError(
                f"invalid {what} {value!r}: use 1 to 128 letters, digits or _ . : @ -"
            )
        return value

    check.__name__ = what  # argparse names the type in some messages
    return check


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"invalid limit {value!r}: a number from 1 to {LIMIT_MAX}")
    return int(value)


def _partition_arg(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    parser.add_argument("partition", type=_name("partition id"), nargs="?" if optional else None, help="partition id")


def _build_parsers() -> dict[str, tuple[argparse.ArgumentParser, str]]:
    parsers: dict[str, tuple[argparse.ArgumentParser, str]] = {}

    def new(name: str, summary: str) -> argparse.ArgumentParser:
        parser = _Parser(prog=name, description=summary, add_help=False)
        parsers[name] = (parser, summary)
        return parser

    _partition_arg(new("status", "partitions, or one partition with its systems"), optional=True)
    control = new("control", "take or release control of a partition")
    control.add_argument("action", choices=("take", "release"))
    _partition_arg(control)
    control.add_argument("--force", action="store_true", help="take it from its holder (admin)")
    configure = new("configure", "configure a partition with a tag")
    _partition_arg(configure)
    configure.add_argument("--tag", required=True, type=_name("tag"), help="the tag to configure with")
    configure.add_argument("--auto", action="store_true", help="go on to the top active state")
    for command, what in (("start", "start a run"), ("stop", "stop the run"), ("abort", "abort to Idle")):
        _partition_arg(new(command, what))
    reset = new("reset", "reset one system of a partition")
    _partition_arg(reset)
    reset.add_argument("system", type=_name("system id"), help="detector or global system id")
    logs = new("logs", "stored log events, newest last")
    _partition_arg(logs, optional=True)
    logs.add_argument("--level", choices=LEVELS, help="only this level")
    logs.add_argument("--since", help="POSIX time, or an age such as 90s, 10m, 2h, 1d")
    logs.add_argument("--grep", "-q", dest="grep", help="only messages containing this text")
    logs.add_argument("--limit", type=_limit, default=50, help="at most this many (default 50)")
    runs = new("runs", "run records, newest first")
    _partition_arg(runs, optional=True)
    runs.add_argument("--limit", type=_limit, default=20, help="at most this many (default 20)")
    new("whoami", "your user name and roles")
    new("help", "the commands, or one command's usage").add_argument("topic", nargs="?")
    new("exit", "end the session")
    new("python", "admin: the Python manhole (no argument: interactive; else evaluate SOURCE)").add_argument(
        "source", nargs=argparse.REMAINDER
    )
    return parsers


_PARSERS = _build_parsers()
_ALIASES = {"quit": "exit", "logout": "exit", "?": "help"}


def exit_code(error: ControlError) -> int:
    """The CLI's exit code for a refusal of the center (see L{ecs.client.http.exit_code_for})."""
    if error.code == "unauthenticated" or (error.code == "forbidden" and "holder" not in error.details):
        return EXIT_AUTH
    return EXIT_REFUSED


class _Gate:
    """An L{Output} that stops passing text on once the command was given up."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.open = True

    def out(self, text: str) -> None:
        if self.open:
            self.output.out(text)

    def err(self, text: str) -> None:
        if self.open:
            self.output.err(text)


def within(d: defer.Deferred[Any], seconds: float, clock: IReactorTime) -> defer.Deferred[Any]:
    """
    C{d}'s result, or L{CommandTimeout} after C{seconds}.  C{d} is not
    cancelled: the center finishes (and audits) what it started.
    """
    result: defer.Deferred[Any] = defer.Deferred()

    def late() -> None:
        if not result.called:
            result.errback(CommandTimeout(seconds))

    timer = clock.callLater(seconds, late)

    def done(value: Any) -> None:
        if timer.active():
            timer.cancel()
        if not result.called:
            result.errback(value) if isinstance(value, Failure) else result.callback(value)

    d.addBoth(done)
    return result


class CommandInterpreter:
    """
    Runs shell command lines for one user.

    @param center: the ECA (or a fake).
    @param user: fetches the user afresh for every command (roles may have
        changed; C{None}: the user was deleted, and the session ends).
    @param clock: for timeouts.
    @param evaluate: runs Python source in the admin manhole and returns its
        output (the session provides it); C{None}: no manhole.
    @param interactive: whether C{python} without source may switch the
        session to the interactive manhole.
    @param info: a line for C{whoami} about how the user logged in.
    """

    _log = Logger()

    def __init__(
        self,
        center: IControlCenter,
        user: Callable[[], Awaitable[User | None]],
        clock: IReactorTime,
        *,
        timeout: float = COMMAND_TIMEOUT,
        evaluate: Callable[[User, str], Awaitable[str]] | None = None,
        interactive: bool = False,
        info: str = "",
    ) -> None:
        self.center = center
        self.user = user
        self.clock = clock
        self.timeout = timeout
        self.evaluate = evaluate
        self.interactive = interactive
        self.info = info

    def execute(self, line: str, output: Output) -> defer.Deferred[Outcome]:
        """Run one command line; never fails (errors are written to C{output.err})."""
        return defer.Deferred.fromCoroutine(self._execute(line, output))

    async def _execute(self, line: str, output: Output) -> Outcome:
        gate = _Gate(output)
        try:
            if len(line) > LINE_MAX:
                raise UsageError(f"the line is longer than {LINE_MAX} characters")
            python = _PYTHON_RE.fullmatch(line)
            # Python source is passed on as typed: shell-style splitting would eat its quotes.
            words = ["python", *([python.group(1)] if python.group(1) else [])] if python else self._split(line)
            if not words:
                return Outcome(EXIT_OK)
            return await within(defer.Deferred.fromCoroutine(self._run(words, gate)), self.timeout, self.clock)
        except UsageError as e:
            text = str(e).rstrip("\n")
            output.err(f"{text}\n" if text else "")
            return Outcome(EXIT_USAGE)
        except ControlError as e:
            output.err(self._refusal(e))
            return Outcome(exit_code(e))
        except CommandTimeout as e:
            gate.open = False
            output.err(f"no answer within {e.args[0]:g} s; the command may still complete (see status and logs)\n")
            return Outcome(EXIT_TIMEOUT)
        except Exception:
            gate.open = False
            self._log.failure("shell command {line!r} failed", line=line[:200])
            output.err("internal error: the command failed (the ECA log has the details)\n")
            return Outcome(EXIT_REFUSED)

    @staticmethod
    def _split(line: str) -> list[str]:
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise UsageError(f"cannot split the line: {e}") from None
        if words and words[0] == "ecs":
            words = words[1:] or ["help"]
        return words

    def _refusal(self, error: ControlError) -> str:
        text = f"{error.code}: {error.reason}"
        holder = error.details.get("holder")
        if holder and holder not in error.reason:
            text += f" (held by {holder})"
        return text + "\n"

    async def _run(self, words: list[str], out: Output) -> Outcome:
        name = _ALIASES.get(words[0], words[0])
        if name not in _PARSERS:
            raise UsageError(f"unknown command {words[0]!r}: type help for the commands")
        if name == "exit":
            if len(words) > 1:
                raise UsageError("exit: takes no arguments")
            return Outcome(EXIT_OK, exit=True)
        if name == "help":
            return self._help(_PARSERS["help"][0].parse_args(words[1:]).topic, out)
        args = _PARSERS[name][0].parse_args(words[1:])
        user = await self.user()
        if user is None:
            out.err("your user no longer exists\n")
            return Outcome(EXIT_AUTH, exit=True)
        handler = getattr(self, f"_cmd_{name}")
        result: Outcome = await handler(user, args, out)
        return result

    # -- the commands ---------------------------------------------------------------

    def _help(self, topic: str | None, out: Output) -> Outcome:
        if topic is None:
            lines = ["commands (help COMMAND for its usage):"]
            lines += [f"  {name:<10} {summary}" for name, (_, summary) in _PARSERS.items()]
            out.out("\n".join(lines) + "\n")
            return Outcome(EXIT_OK)
        name = _ALIASES.get(topic, topic)
        if name not in _PARSERS:
            raise UsageError(f"help: unknown command {topic!r}")
        out.out(_PARSERS[name][0].format_help())
        return Outcome(EXIT_OK)

    @staticmethod
    def _need(user: User, role: str, what: str) -> None:
        if not user.has(role):
            roles = ", ".join(user.roles) or "none"
            raise ControlError("forbidden", f"{what} needs the {role} role (you have: {roles})")

    @staticmethod
    def _no_ecs(partition: str) -> None:
        # "ecs" is the ECS-wide control scope, never a partition (as in the web API).
        if partition == "ecs":
            raise ControlError("not_found", "no partition ecs")

    async def _cmd_status(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        self._need(user, "viewer", "status")
        if args.partition is None:
            out.out(textview.format_partitions(await defer.maybeDeferred(self.center.partitions)))
        else:
            self._no_ecs(args.partition)
            out.out(textview.format_partition(await defer.maybeDeferred(self.center.partition, args.partition)))
        return Outcome(EXIT_OK)

    async def _cmd_control(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        partition = args.partition
        self._need(user, "operator", "control")
        self._no_ecs(partition)
        if args.action == "release":
            if args.force:
                raise UsageError("control release: --force only goes with take")
            await defer.maybeDeferred(self.center.partition, partition)
            await self.center.release_control(user, partition)
            out.out(f"released control of {partition}\n")
            return Outcome(EXIT_OK)
        if args.force:
            self._need(user, "admin", "control take --force")
        await defer.maybeDeferred(self.center.partition, partition)
        row = await self.center.take_control(user, partition, args.force)
        out.out(f"you control {partition}" + (f" (taken from {row['previous']})" if row.get("previous") else "") + "\n")
        return Outcome(EXIT_OK)

    async def _command(self, user: User, partition: str, command: str, body: dict[str, Any], out: Output) -> Outcome:
        self._need(user, "operator", command)
        self._no_ecs(partition)
        await defer.maybeDeferred(self.center.partition, partition)
        await self.center.command(user, partition, command, body)
        try:
            state = textview.clean(self.center.partition(partition).get("state"))
        except ControlError:
            state = "-"
        out.out(f"{command} {partition}: accepted; state {state}\n")
        return Outcome(EXIT_OK)

    async def _cmd_configure(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        return await self._command(user, args.partition, "configure", {"tag": args.tag, "auto": args.auto}, out)

    async def _cmd_start(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        return await self._command(user, args.partition, "start", {}, out)

    async def _cmd_stop(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        return await self._command(user, args.partition, "stop", {}, out)

    async def _cmd_abort(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        return await self._command(user, args.partition, "abort", {}, out)

    async def _cmd_reset(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        return await self._command(user, args.partition, "reset", {"system": args.system}, out)

    def _since(self, text: str | None) -> float | None:
        if text is None:
            return None
        match = _DURATION_RE.fullmatch(text)
        if match:
            return float(self.clock.seconds()) - float(match.group(1)) * _UNITS[match.group(2)]
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value >= 0 or value == float("inf"):
            raise UsageError(f"logs: argument --since: invalid time {text!r}: a POSIX time or an age like 10m, 2h, 1d")
        return value

    async def _cmd_logs(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        self._need(user, "viewer", "logs")
        since = self._since(args.since)
        rows = await self.center.logs(args.partition, args.level, since, args.grep, args.limit)
        out.out(textview.format_logs(rows))
        return Outcome(EXIT_OK)

    async def _cmd_runs(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        self._need(user, "viewer", "runs")
        out.out(textview.format_runs(await self.center.runs(args.partition, args.limit)))
        return Outcome(EXIT_OK)

    async def _cmd_whoami(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        line = f"{textview.clean(user.name)} (roles: {', '.join(user.roles) or 'none'})"
        out.out(line + (f"; {self.info}" if self.info else "") + "\n")
        return Outcome(EXIT_OK)

    async def _cmd_python(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        self._need(user, "admin", "python")
        if self.evaluate is None:
            raise ControlError("unavailable", "the Python manhole is not available here")
        source = " ".join(args.source).strip()
        if not source:
            if not self.interactive:
                raise UsageError("python: give SOURCE to evaluate, or use a terminal (ssh -t) for the interactive manhole")
            return Outcome(EXIT_OK, python=True)
        out.out(await self.evaluate(user, source))
        return Outcome(EXIT_OK)


__all__ = ["COMMAND_TIMEOUT", "CommandInterpreter", "CommandTimeout", "Outcome", "Output", "UsageError", "exit_code", "within"]
