# -*- test-case-name: tests.test_shell -*-
"""
The commands of the ECA's SSH admin shell (L{ecs.shell.server}): one line in, text
out, an exit code back.

The commands are exactly those of the C{ecs} command line, from the one
table L{ecs.client.table} (parsing, help, checks and the text of every
answer are shared): here they act through the L{IControlCenter} as the
logged-in user (L{ecs.shell.center}), so the same rules apply (roles,
control ownership, partition locks) and the center writes the audit trail.
C{--wait}, C{watch} and C{logs --follow} follow the center's events
(L{ecs.shell.follow}).  Not offered, and why: C{help} says
(L{ecs.client.table.NOT_IN_SHELL}).  The shell's own::

    whoami | help [COMMAND] | exit
    python [SOURCE]                   admin: the Python manhole (see L{ecs.shell.server})

A leading C{ecs} is ignored (C{ssh host 'ecs status'} works as C{status}).
Exit codes are the CLI's (L{ecs.exits}): 0 done, 1 refused, 2 bad usage,
3 not allowed for your role, 5 no answer in time.  Nothing typed is ever
evaluated, except by C{python} for admins: a line is split like a shell
line (C{shlex}), and every argument is checked (names against
L{ecs.client.commands.NAME_RE}) with an error naming the argument.  Every
command has a timeout; an exception in a command is reported and logged,
never raised.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ecs import textview
from ecs.client.commands import Action, CommandError, Run, add_parser
from ecs.client.table import COMMANDS, NOT_IN_SHELL
from ecs.control import ControlError, IControlCenter, User
from ecs.exits import EXIT_AUTH, EXIT_OK, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_USAGE
from ecs.shell.center import CenterApi, exit_code, refusal
from ecs.shell.follow import ShellFollow

COMMAND_TIMEOUT = 30.0
"""Seconds a command may take before the shell stops waiting for it (a following one: its --timeout more)."""

LINE_MAX = 4096
T = TypeVar("T")
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


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 1e6:
        raise argparse.ArgumentTypeError(f"invalid timeout {value!r}: seconds, more than 0")
    return seconds


def _common(parser: argparse.ArgumentParser) -> None:
    """The shell's options of every shared command: --json, and --timeout for following."""
    parser.add_argument(
        "--json",
        dest="api_json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the answer as JSON, as ecs --json does",
    )
    parser.add_argument(
        "--timeout",
        dest="api_timeout",
        type=_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="for --wait, watch and logs --follow (default 300)",
    )


def _build_parsers() -> dict[str, tuple[argparse.ArgumentParser, str]]:
    parsers: dict[str, tuple[argparse.ArgumentParser, str]] = {}

    def new(name: str, summary: str) -> argparse.ArgumentParser:
        parser = _Parser(prog=name, description=summary, add_help=False)
        parsers[name] = (parser, summary)
        return parser

    for command in COMMANDS:
        add_parser(new(command.name, command.help), command, _common)
    new("whoami", "your user name and roles")
    new("help", "the commands, or one command's usage (help configs set: an action's)").add_argument("topic", nargs="*")
    new("exit", "end the session")
    new("python", "admin: the Python manhole (no argument: interactive; else evaluate SOURCE)").add_argument(
        "source", nargs=argparse.REMAINDER
    )
    return parsers


_PARSERS = _build_parsers()
_ALIASES = {"quit": "exit", "logout": "exit", "?": "help"}


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


def within(d: defer.Deferred[T], seconds: float, clock: IReactorTime) -> defer.Deferred[T]:
    """
    C{d}'s result, or L{CommandTimeout} after C{seconds}.  C{d} is not
    cancelled: the center finishes (and audits) what it started.
    """
    result: defer.Deferred[T] = defer.Deferred()

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


class _Printer:
    """L{ecs.client.commands.Printer} on a shell L{Output}: the answer on out (JSON with --json), notes on err."""

    def __init__(self, output: Output, as_json: bool) -> None:
        self.output = output
        self.json = as_json

    def result(self, text: str, data: Any) -> None:
        if self.json:
            self.output.out(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        else:
            self.output.out(text if text.endswith("\n") else text + "\n")

    def note(self, text: str) -> None:
        self.output.err(text if text.endswith("\n") else text + "\n")


class CommandInterpreter:
    """
    Runs shell command lines for one user.

    @param center: the ECA (or a fake).
    @param user: fetches the user afresh for every command (roles may have
        changed; C{None}: the user was deleted, and the session ends).
    @param clock: for timeouts and following events.
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
        self.follow = ShellFollow(center, clock)

    def execute(self, line: str, output: Output) -> defer.Deferred[Outcome]:
        """Run one command line; never fails (errors are written to C{output.err})."""
        return defer.Deferred.fromCoroutine(self._execute(line, output))

    def interrupt(self) -> None:
        """Ctrl-C while a command runs: a command following events stops (others finish)."""
        self.follow.interrupt()

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
            name = _ALIASES.get(words[0], words[0])
            args = self._parse(name, words)
            seconds = self.timeout
            if isinstance(getattr(args, "spec", None), Action) and args.spec.follows:
                seconds += ShellFollow.seconds(args)
            return await within(defer.Deferred.fromCoroutine(self._run(name, args, gate)), seconds, self.clock)
        except UsageError as e:
            text = str(e).rstrip("\n")
            output.err(f"{text}\n" if text else "")
            return Outcome(EXIT_USAGE)
        except CommandError as e:
            output.err(textview.clean(e.message) + "\n")
            return Outcome(e.exit_code)
        except ControlError as e:
            output.err(refusal(e) + "\n")
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

    @staticmethod
    def _parse(name: str, words: list[str]) -> argparse.Namespace:
        if name not in _PARSERS:
            why = next((reason for names, reason in NOT_IN_SHELL.items() if name in names.split(", ")), None)
            if why:
                raise UsageError(f"{words[0]} is not a shell command: {why}")
            raise UsageError(f"unknown command {words[0]!r}: type help for the commands")
        return _PARSERS[name][0].parse_args(words[1:])

    async def _run(self, name: str, args: argparse.Namespace, out: Output) -> Outcome:
        if name == "exit":
            return Outcome(EXIT_OK, exit=True)
        if name == "help":
            return self._help(args.topic, out)
        user = await self.user()
        if user is None:
            out.err("your user no longer exists\n")
            return Outcome(EXIT_AUTH, exit=True)
        if name == "whoami":
            line = f"{textview.clean(user.name)} (roles: {', '.join(user.roles) or 'none'})"
            out.out(line + (f"; {self.info}" if self.info else "") + "\n")
            return Outcome(EXIT_OK)
        if name == "python":
            return await self._python(user, args, out)
        spec: Action = args.spec
        action = getattr(args, "action", None)
        what = f"{name} {action}" if isinstance(action, str) else name
        if name == "control" and args.force:
            what += " --force"
        self._need(user, spec.role_for(args), what)
        run = Run(
            CenterApi(self.center, user, now=lambda: float(self.clock.seconds())),
            args,
            _Printer(out, bool(getattr(args, "api_json", False))),
            self.follow,
            now=lambda: float(self.clock.seconds()),
            where="the shell",
        )
        return Outcome(await spec.run(run))

    # -- the shell's own commands ------------------------------------------------------

    def _help(self, topic: list[str], out: Output) -> Outcome:
        if not topic:
            lines = ["commands (help COMMAND for its usage; every one takes --json, as ecs does):"]
            lines += [f"  {name:<10} {summary}" for name, (_, summary) in _PARSERS.items()]
            lines += ["not here:"] + [f"  {names}: {why}" for names, why in NOT_IN_SHELL.items()]
            out.out("\n".join(lines) + "\n")
            return Outcome(EXIT_OK)
        name = _ALIASES.get(topic[0], topic[0])
        if name not in _PARSERS:
            raise UsageError(f"help: unknown command {topic[0]!r}")
        parser = _PARSERS[name][0]
        for word in topic[1:]:
            actions = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
            if not isinstance(actions, dict) or word not in actions:
                raise UsageError(f"help: {name} has no action {word!r}")
            parser = actions[word]
        out.out(parser.format_help())
        return Outcome(EXIT_OK)

    @staticmethod
    def _need(user: User, role: str, what: str) -> None:
        if not user.has(role):
            roles = ", ".join(user.roles) or "none"
            raise ControlError("forbidden", f"{what} needs the {role} role (you have: {roles})")

    async def _python(self, user: User, args: argparse.Namespace, out: Output) -> Outcome:
        self._need(user, "admin", "python")
        if self.evaluate is None:
            raise ControlError("unavailable", "the Python manhole is not available here")
        source = " ".join(args.source).strip()
        if not source:
            if not self.interactive:
                raise UsageError(
                    "python: give SOURCE to evaluate, or use a terminal (ssh -t) for the interactive manhole"
                )
            return Outcome(EXIT_OK, python=True)
        out.out(await self.evaluate(user, source))
        return Outcome(EXIT_OK)


__all__ = [
    "COMMAND_TIMEOUT",
    "LINE_MAX",
    "CommandInterpreter",
    "CommandTimeout",
    "Outcome",
    "Output",
    "UsageError",
    "exit_code",
    "within",
]
