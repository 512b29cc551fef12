# -*- test-case-name: tests.test_client_cli -*-
"""
The C{ecs} commands that work over the ECA's HTTP API.

The commands themselves (status, control, configure, start, stop, abort,
reset, exclude, include, watch, logs, runs, alarms, agents, partitions, detectors, configs,
tags, users) are declared once in L{ecs.client.table}, shared with the ECA's SSH
shell; here they get their argparse parsers, the HTTP L{Api}, and what
only a command line has: files, prompts, a terminal to redraw.  C{login}
and C{logout} are the command line's own (the shell is logged in by SSH).

Options of every one of them (before or after the command name): C{--url}
(default: the logged-in URL, else C{$ECS_URL}, else L{DEFAULT_URL}),
C{--json} (the API's JSON as is), C{--timeout} (seconds for each request and
for C{--wait}), C{--cacert} (CA file for https).  Exit codes: see L{EPILOG}.

Waiting (C{--wait}) follows the partition's records on the event stream,
opened before the command is sent so nothing is missed; that, and the live
table of C{ecs watch}, are in L{ecs.client.watch}.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ecs import textview
from ecs.client.api import HttpApi
from ecs.client.commands import Command, CommandError, Run, add_parser, parse_since, run_now
from ecs.client.context import DEFAULT_TIMEOUT, DEFAULT_WAIT, Context, use_colour
from ecs.client.following import QUIET, Waiter
from ecs.client.http import (
    DEFAULT_URL,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ClientError,
    EventStream,
    delete_credentials,
    partition_path,
    save_credentials,
)
from ecs.client.table import COMMANDS
from ecs.client.watch import cmd_watch, sequence_wait, wait_for

EPILOG = """\
exit codes (commands talking to the ECA):
  0  done (with --wait: the partition reached the goal state)
  1  the ECA refused or the operation failed (bad input, unknown partition/tag,
     not in control or held by another user, wrong state; --wait ended elsewhere)
  2  usage error
  3  not logged in, token refused, or role missing (HTTP 401/403)
  4  cannot reach the ECA (connection refused, DNS, TLS)
  5  timed out (a request, or --wait)
  130 interrupted (Ctrl-C) during a command; ecs watch and ecs logs --follow
     end with 0 on Ctrl-C
"""
LEVELS = ("debug", "info", "warn", "error", "critical")


# -- login, logout ------------------------------------------------------------------------


def cmd_login(ctx: Context) -> int:
    """Ask for the password, log in (an API token) and store url, user and token."""
    args = ctx.args
    user = args.user or (ctx.credentials or {}).get("user") or getpass.getuser()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {user} at {ctx.url}: ")
    if not password:
        raise ClientError(EXIT_USAGE, "empty password")
    answer = ctx.client.post("/api/login", {"username": user, "password": password, "kind": "api"})
    if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
        raise ClientError(EXIT_REFUSED, "the ECA's login answer has no token")
    save_credentials(ctx.path, ctx.url, str(answer.get("user") or user), answer["token"])
    roles = ", ".join(textview.clean(r) for r in answer.get("roles") or [])
    ctx.out(
        f"logged in to {ctx.url} as {textview.clean(answer.get('user') or user)} (roles: {roles or 'none'})",
        {"url": ctx.url, "user": answer.get("user"), "roles": answer.get("roles")},
    )
    return EXIT_OK


def cmd_logout(ctx: Context) -> int:
    """Forget the token on the ECA (which releases its controls), then here."""
    if ctx.token is None:
        if ctx.credentials is None:
            delete_credentials(ctx.path)  # a broken file, if there is one
        ctx.out(f"not logged in to {ctx.url}", {"status": "ok", "logged_in": False})
        return EXIT_OK
    try:
        ctx.client.post("/api/logout")
    except ClientError as e:
        if e.status != 401:  # an unknown token is logged out already
            delete_credentials(ctx.path)
            raise ClientError(
                e.exit_code, f"{e.message}; the local token was deleted, but the ECA may still accept it"
            ) from None
    delete_credentials(ctx.path)
    ctx.out(f"logged out of {ctx.url}", {"status": "ok"})
    return EXIT_OK


# -- what the command line gives the shared commands ------------------------------------


class _Printer:
    """L{ecs.client.commands.Printer} on stdout (JSON with --json) and stderr."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def result(self, text: str, data: Any) -> None:
        self.ctx.out(text, data)

    def note(self, text: str) -> None:
        print(text, end="" if text.endswith("\n") else "\n", file=sys.stderr, flush=True)


class _Follow:
    """L{ecs.client.commands.Follow} over the event stream (L{ecs.client.watch})."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def command_wait(self, run: Run, partition: str, command: str, body: dict[str, Any]) -> int:
        """Open the stream, send the command, then follow its records to the goal."""
        ctx = self.ctx
        deadline = time.monotonic() + ctx.wait_timeout
        stream: EventStream | None = ctx.client.events(partition)
        try:
            reply = ctx.client.post(partition_path(partition) + "/" + command, body or None)
            waiter = Waiter(command, bool(body.get("auto")), reply, time.monotonic())
            opened, stream = stream, None  # wait_for closes it from here on
            assert opened is not None
            ok, text = wait_for(ctx, opened, waiter, deadline)
        finally:
            if stream is not None:
                stream.close()
        detail = ctx.client.get(partition_path(partition))
        if not ok:
            raise ClientError(EXIT_REFUSED, f"{partition} {text}", body=detail)
        ctx.out(f"{partition}: {text}", detail)
        return EXIT_OK

    async def watch(self, run: Run, partition: str, until: str | None) -> int:
        return cmd_watch(self.ctx)

    async def sequence_wait(self, run: Run, partition: str, name: str) -> int:
        return await sequence_wait(self.ctx, run, partition, name)

    async def logs_follow(self, run: Run, since: float | None) -> int:
        """Stored log events (oldest first), then the live ones until Ctrl-C."""
        ctx, args = self.ctx, self.ctx.args
        partition = args.partition or args.partition_flag
        stream = ctx.client.events(partition)
        try:
            rows = ctx.client.get(
                "/api/logs", partition=partition, level=args.level, since=since, q=args.grep, limit=args.limit
            )
            seen = {(r.get("time"), r.get("source"), r.get("message")) for r in rows}
            for row in sorted(rows, key=lambda r: (r.get("time") or 0, r.get("id") or 0)):
                _print_log(ctx, row)
            minimum = LEVELS.index(args.level) if args.level else 0
            while True:
                event = stream.read()
                if event is None:
                    raise ClientError(EXIT_REFUSED, "the ECA closed the event stream")
                _, kind, data = event
                if kind != "log" or not isinstance(data, dict):
                    continue
                if (data.get("time"), data.get("source"), data.get("message")) in seen:
                    continue
                level = data.get("level")
                if level in LEVELS and LEVELS.index(level) < minimum:
                    continue
                if args.grep and args.grep.casefold() not in str(data.get("message", "")).casefold():
                    continue
                _print_log(ctx, data)
        except KeyboardInterrupt:
            return EXIT_OK
        finally:
            stream.close()


def _print_log(ctx: Context, row: dict[str, Any]) -> None:
    print(json.dumps(row, sort_keys=True) if ctx.json else textview.format_log_line(row), flush=True)


def _confirm(question: str) -> bool:
    """Ask on the terminal; never without one (a script gives --yes)."""
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _read_file(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ClientError(EXIT_USAGE, f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def _read_bytes(path: str, most: int) -> bytes:
    """At most C{most} + 1 bytes of a file (more says it is too large without reading it all)."""
    try:
        with open(path, "rb") as file:
            return file.read(most + 1)
    except OSError as e:
        raise ClientError(EXIT_USAGE, f"cannot read {path}: {e.strerror or e}") from None


def _write_bytes(path: str, data: bytes, replace: bool) -> None:
    """Write a file (C{-}: standard output); never over an existing one unless C{replace}."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with open(path, "wb" if replace else "xb") as file:
            file.write(data)
    except FileExistsError:
        raise ClientError(EXIT_USAGE, f"{path} exists: give -o FILE to save elsewhere or to replace it") from None
    except OSError as e:
        raise ClientError(EXIT_USAGE, f"cannot write {path}: {e.strerror or e}") from None


def _read_password(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def cmd_shared(ctx: Context) -> int:
    """Run a command of the shared table (L{ecs.client.table}) over HTTP."""
    run = Run(
        HttpApi(ctx.client),
        ctx.args,
        _Printer(ctx),
        _Follow(ctx),
        color=use_colour(),
        confirm=_confirm if sys.stdin.isatty() else None,
        read_file=_read_file,
        read_password=_read_password,
        read_bytes=_read_bytes,
        write_bytes=_write_bytes,
    )
    return run_now(ctx.args.spec.run(run))


def inject_through_eca(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """
    C{ecs inject} without C{--endpoint}: through the ECA the CLI is logged
    in to (C{POST /api/systems/{id}/inject}, expert, audited), which sends
    it with the ECA's key.
    """

    def handler(ctx: Context) -> int:
        answer = ctx.client.post(f"/api/systems/{quote(args.agent, safe='')}/inject", body)
        ctx.out(json.dumps(answer, indent=2, sort_keys=True), answer)
        return EXIT_OK

    return run(handler)(args)


# -- the parser ---------------------------------------------------------------------------


def run(handler: Callable[[Context], int], need_login: bool = True) -> Callable[[argparse.Namespace], int]:
    """The C{func} of a subcommand: build the context, run, turn errors into exit codes."""

    def func(args: argparse.Namespace) -> int:
        try:
            return handler(Context(args, need_login))
        except CommandError as e:
            if getattr(args, "api_json", False) and e.body is not None:
                print(json.dumps(e.body, indent=2, sort_keys=True))
            print(f"ecs {args.command}: {textview.clean(e.message)}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print(f"ecs {args.command}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # The reader went away (ecs logs | head): stop quietly, and keep
            # the interpreter from complaining when it flushes at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK

    return func


def _api_options(parser: argparse.ArgumentParser, top: bool) -> None:
    default: Any = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("ECA connection (API commands)")
    group.add_argument(
        "--url",
        dest="api_url",
        metavar="URL",
        default=default,
        help=f"the ECA (default: the logged-in URL, else $ECS_URL, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--json",
        dest="api_json",
        action="store_true",
        default=default if not top else False,
        help="print the API's JSON as is",
    )
    group.add_argument(
        "--timeout",
        dest="api_timeout",
        metavar="SECONDS",
        type=_seconds,
        default=default,
        help=f"seconds for each request ({DEFAULT_TIMEOUT:g}) and for --wait ({DEFAULT_WAIT:g})",
    )
    group.add_argument(
        "--cacert", dest="api_cacert", metavar="FILE", default=default, help="CA certificates (PEM) to trust for https"
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def add_commands(
    parser: argparse.ArgumentParser, commands: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    """Add login, logout and the shared commands (L{ecs.client.table}) to the C{ecs} parser and its subparsers."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    _api_options(parser, top=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.epilog = EPILOG
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        _api_options(p, top=False)

    def sub(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, formatter_class=argparse.RawDescriptionHelpFormatter
        )

    login = sub("login", "log in to the ECA (token kept in ~/.config/ecs)")
    login.add_argument("--user", help="user name (default: the last one, else your login name)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    common(login)
    login.set_defaults(func=run(cmd_login, need_login=False), command="login")
    logout = sub("logout", "log out (the ECA forgets the token and releases your controls)")
    common(logout)
    logout.set_defaults(func=run(cmd_logout, need_login=False), command="logout")
    for command in COMMANDS:
        add_command(sub(command.name, command.help), command, common)


def add_command(
    parser: argparse.ArgumentParser, command: Command, common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """One shared command as a subcommand of C{ecs}."""
    add_parser(parser, command, common)
    parser.set_defaults(func=run(cmd_shared))


__all__ = ["EPILOG", "QUIET", "Context", "Waiter", "add_commands", "parse_since", "run"]
