# -*- test-case-name: tests.test_client_cli -*-
"""
The C{ecs} commands that work over the ECA's HTTP API (DESIGN.md section 7).

::

    ecs login [--user NAME] [--password-stdin]      ecs logout
    ecs status [P]                                  ecs control take|release P [--force]
    ecs configure P (--tag T | --config ID...) [--auto] [--wait]
    ecs start|stop|abort P [--wait]                 ecs reset P SYSTEM
    ecs watch P [--until STATE]                     ecs agents
    ecs logs [--partition P] [--level L] [--since S] [--grep TEXT] [--limit N] [--follow]
    ecs runs [--partition P] [--limit N]

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
from typing import Any

from ecs import textview
from ecs.client.http import (
    DEFAULT_URL,
    EXIT_AUTH,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Client,
    ClientError,
    credentials_path,
    delete_credentials,
    load_credentials,
    normalise_url,
    partition_path,
    save_credentials,
)
from ecs.client.watch import QUIET, Waiter, cmd_watch, use_colour, wait_for

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
DEFAULT_TIMEOUT = 10.0
DEFAULT_WAIT = 300.0
LEVELS = ("debug", "info", "warn", "error", "critical")


# -- context: URL, credentials, client ------------------------------------------------


class Context:
    """What a command needs: the parsed options, the client, how to print."""

    def __init__(self, args: argparse.Namespace, need_login: bool = True) -> None:
        self.args = args
        self.json = bool(getattr(args, "api_json", False))
        self.path = credentials_path()
        try:
            self.credentials = load_credentials(self.path)
        except ClientError:
            if need_login:
                raise
            self.credentials = None  # login replaces a broken file, logout removes it
        given = getattr(args, "api_url", None)
        url = given or (self.credentials or {}).get("url") or os.environ.get("ECS_URL") or DEFAULT_URL
        try:
            self.url = normalise_url(url)
        except ValueError as e:
            raise ClientError(EXIT_USAGE, str(e)) from None
        token = None
        if self.credentials is not None and self.credentials["url"] == self.url:
            token = self.credentials["token"]  # never sent to another URL than the one it came from
        if need_login and token is None:
            raise ClientError(EXIT_AUTH, f"not logged in to {self.url}: run ecs login")
        self.token = token
        timeout = getattr(args, "api_timeout", None)
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self.wait_timeout = timeout if timeout is not None else DEFAULT_WAIT
        self.client = Client(self.url, token, self.timeout, getattr(args, "api_cacert", None))

    def out(self, text: str, data: Any) -> None:
        """Print C{data} as JSON with C{--json}, else C{text}."""
        if self.json:
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            print(text, end="" if text.endswith("\n") else "\n")
        sys.stdout.flush()


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
    ctx.out(f"logged in to {ctx.url} as {textview.clean(answer.get('user') or user)} (roles: {roles or 'none'})",
            {"url": ctx.url, "user": answer.get("user"), "roles": answer.get("roles")})
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
            raise ClientError(e.exit_code, f"{e.message}; the local token was deleted, "
                                           f"but the ECA may still accept it") from None
    delete_credentials(ctx.path)
    ctx.out(f"logged out of {ctx.url}", {"status": "ok"})
    return EXIT_OK


# -- reading ------------------------------------------------------------------------------


def cmd_status(ctx: Context) -> int:
    """Every partition, or one with its systems."""
    if ctx.args.partition:
        detail = ctx.client.get(partition_path(ctx.args.partition))
        ctx.out(textview.format_partition(detail, color=use_colour()), detail)
    else:
        rows = ctx.client.get("/api/partitions")
        ctx.out(textview.format_partitions(rows, color=use_colour()), rows)
    return EXIT_OK


def cmd_runs(ctx: Context) -> int:
    """Run records, newest first."""
    rows = ctx.client.get("/api/runs", partition=ctx.args.partition, limit=ctx.args.limit)
    ctx.out(textview.format_runs(rows, color=use_colour()), rows)
    return EXIT_OK


def cmd_agents(ctx: Context) -> int:
    """The agents of the inventory, with their processes."""
    try:
        rows = ctx.client.get("/api/agents")
    except ClientError as e:
        if e.status == 404:
            e.message = f"this ECA has no /api/agents (an older version?): {e.message}"
        raise
    ctx.out(textview.format_agents(rows, color=use_colour()), rows)
    return EXIT_OK


def parse_since(text: str, now: float | None = None) -> float:
    """
    C{30s}, C{10m}, C{2h}, C{1d} ago; an ISO date/time (local time unless it
    says otherwise); or seconds since the epoch.  ValueError naming the text.
    """
    from datetime import datetime

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


def cmd_logs(ctx: Context) -> int:
    """Stored log events (oldest first), then with --follow the live ones."""
    args = ctx.args
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as e:
        raise ClientError(EXIT_USAGE, str(e)) from None
    stream = ctx.client.events(args.partition) if args.follow else None
    try:
        rows = ctx.client.get("/api/logs", partition=args.partition, level=args.level, since=since,
                              q=args.grep, limit=args.limit)
        if not args.follow:
            ctx.out(textview.format_logs(rows, color=use_colour()), rows)
            return EXIT_OK
        assert stream is not None
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
        if stream is not None:
            stream.close()


def _print_log(ctx: Context, row: dict[str, Any]) -> None:
    print(json.dumps(row, sort_keys=True) if ctx.json else textview.format_log_line(row), flush=True)


# -- control and commands ------------------------------------------------------------------


def cmd_control(ctx: Context) -> int:
    """Take or give up control of a partition."""
    args = ctx.args
    if args.action == "take":
        query = {"force": 1} if args.force else None
        try:
            answer = ctx.client.call("POST", partition_path(args.partition) + "/control", None, query)
        except ClientError as e:
            holder = e.body.get("holder") if isinstance(e.body, dict) else None
            if holder and str(holder) not in e.message:
                e.message += f" (held by {holder})"
            raise
        ctx.out(f"control of {args.partition}: {textview.clean(answer.get('holder'))}", answer)
    else:
        answer = ctx.client.delete(partition_path(args.partition) + "/control")
        ctx.out(f"control of {args.partition} given up", answer)
    return EXIT_OK


def cmd_command(ctx: Context) -> int:
    """configure, start, stop, abort (optionally waiting) and reset."""
    args = ctx.args
    command = args.command
    body: dict[str, Any] = {}
    if command == "configure":
        body = {"auto": bool(args.auto)}
        if args.tag:
            body["tag"] = args.tag
        else:
            body["configs"] = args.config
    elif command == "reset":
        body = {"system": args.system}
    wait = bool(getattr(args, "wait", False))
    deadline = time.monotonic() + ctx.wait_timeout
    stream = ctx.client.events(args.partition) if wait else None
    try:
        reply = ctx.client.post(partition_path(args.partition) + "/" + command, body or None)
        if not wait:
            state = textview.clean(reply.get("state")) if isinstance(reply, dict) else "?"
            operation = reply.get("operation") if isinstance(reply, dict) else None
            if command == "reset":  # the answer is the system's status
                text = f"{args.partition}: reset of {args.system} accepted; {args.system} is {state}"
            else:
                text = f"{args.partition}: {command} accepted; {state}" + (f" ({textview.clean(operation)})" if operation else "")
            ctx.out(text, reply)
            return EXIT_OK
        assert stream is not None
        waiter = Waiter(command, bool(body.get("auto")), reply, time.monotonic())
        stream, opened = None, stream
        ok, text = wait_for(ctx, opened, waiter, deadline)
    finally:
        if stream is not None:
            stream.close()
    detail = ctx.client.get(partition_path(args.partition))
    if not ok:
        raise ClientError(EXIT_REFUSED, f"{args.partition} {text}", body=detail)
    ctx.out(f"{args.partition}: {text}", detail)
    return EXIT_OK


# -- the parser ---------------------------------------------------------------------------


def run(handler: Callable[[Context], int], need_login: bool = True) -> Callable[[argparse.Namespace], int]:
    """The C{func} of a subcommand: build the context, run, turn errors into exit codes."""

    def func(args: argparse.Namespace) -> int:
        try:
            return handler(Context(args, need_login))
        except ClientError as e:
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
    group.add_argument("--url", dest="api_url", metavar="URL", default=default, help=f"the ECA (default: the logged-in URL, else $ECS_URL, else {DEFAULT_URL})")
    group.add_argument("--json", dest="api_json", action="store_true", default=default if not top else False, help="print the API's JSON as is")
    group.add_argument("--timeout", dest="api_timeout", metavar="SECONDS", type=_seconds, default=default,
                       help=f"seconds for each request ({DEFAULT_TIMEOUT:g}) and for --wait ({DEFAULT_WAIT:g})")
    group.add_argument("--cacert", dest="api_cacert", metavar="FILE", default=default, help="CA certificates (PEM) to trust for https")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 10000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


def add_commands(parser: argparse.ArgumentParser, commands: Any) -> None:
    """Add the API commands to the C{ecs} parser and its subparsers."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    _api_options(parser, top=True)

    def sub(name: str, help: str, handler: Callable[[Context], int], need_login: bool = True) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        _api_options(p, top=False)
        p.set_defaults(func=run(handler, need_login), command=name)
        return p

    login = sub("login", "log in to the ECA (token kept in ~/.config/ecs)", cmd_login, need_login=False)
    login.add_argument("--user", help="user name (default: the last one, else your login name)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sub("logout", "log out (the ECA forgets the token and releases your controls)", cmd_logout, need_login=False)
    status = sub("status", "partitions, or one partition with its systems", cmd_status)
    status.add_argument("partition", nargs="?")
    control = sub("control", "take or give up control of a partition", cmd_control)
    control.add_argument("action", choices=("take", "release"))
    control.add_argument("partition")
    control.add_argument("--force", action="store_true", help="take it from its holder (admin)")
    configure = sub("configure", "configure a partition", cmd_command)
    configure.add_argument("partition")
    chosen = configure.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--tag", help="the tag to configure with")
    chosen.add_argument("--config", action="append", metavar="ID", help="a configuration id (repeat for each system)")
    configure.add_argument("--auto", action="store_true", help="configure every stage in turn")
    configure.add_argument("--wait", action="store_true", help="wait for the end, with a progress bar")
    for name, goal in (("start", "recording"), ("stop", "an active state"), ("abort", "Idle")):
        p = sub(name, f"{name} on a partition", cmd_command)
        p.add_argument("partition")
        p.add_argument("--wait", action="store_true", help=f"wait until it is {goal}")
    reset = sub("reset", "reset a system in Error", cmd_command)
    reset.add_argument("partition")
    reset.add_argument("system")
    watch = sub("watch", "follow a partition live (Ctrl-C ends)", cmd_watch)
    watch.add_argument("partition")
    watch.add_argument("--until", metavar="STATE", help="exit 0 once the partition is in STATE")
    logs = sub("logs", "log events", cmd_logs)
    logs.add_argument("--partition")
    logs.add_argument("--level", choices=LEVELS, help="this level or above")
    logs.add_argument("--since", help="30s, 10m, 2h, 1d ago; an ISO time; or epoch seconds")
    logs.add_argument("--grep", metavar="TEXT", help="messages containing TEXT (case-insensitive)")
    logs.add_argument("--limit", type=_limit, default=100)
    logs.add_argument("--follow", "-f", action="store_true", help="then print new events as they come")
    runs = sub("runs", "run records, newest first", cmd_runs)
    runs.add_argument("--partition")
    runs.add_argument("--limit", type=_limit, default=100)
    sub("agents", "the agents and their processes", cmd_agents)


__all__ = ["EPILOG", "QUIET", "Context", "Waiter", "add_commands", "parse_since", "run"]
