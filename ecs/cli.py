# -*- test-case-name: tests.test_cli -*-
"""
The C{ecs} command line.

Local tools (no agent needed)::

    ecs fsm check FILE...            validate state tables (exit 1 with reasons)
    ecs fsm dot FILE [--state S]     DOT text of a table, S highlighted
    ecs keys init --dir DIR          create the CURVE key pairs
    ecs keys add NAME --dir DIR      create and authorise another client pair
    ecs keys add NAME --agent --dir DIR [--force]
                                     enrol agent identity NAME (pca.P, detector.D,
                                     global.G, simhost.PREFIX#RANGES); --force rotates
    ecs keys revoke NAME --dir DIR   remove NAME from the allow-list

Talking to an agent (authorised like any other client: CURVE keys)::

    ecs inject AGENT error|resolved [--partition P]
    ecs inject DCS detector-error DETECTOR
    ecs agent-status AGENT [--partition P]

On the ECA host::

    ecs user add|passwd|del|list|roles [NAME] [--roles R,R] [--state-dir DIR]
    ecs user key add NAME FILE|- | key list [NAME] | key del FINGERPRINT   (SSH shell keys)
    ecs user tokens list [NAME] | tokens revoke ID|NAME...   (sessions and API tokens)
    ecs db upgrade [--state-dir DIR]

The agent's endpoint comes from C{--endpoint} or from C{--inventory}
(C{inject} and C{agent-status} talk ZeroMQ to the agent, so they import
L{ecs.net}, inside their functions as the ECA-host tools import
L{ecs.users}).  Over the ECA's HTTP API (L{ecs.client.cli}; C{ecs --help}
lists them with their exit codes), the commands the SSH shell offers too,
from one table (L{ecs.client.table})::

    ecs login|logout, status [P], control take|release P|ecs, configure P
    (--tag T | --config ID...) [--auto] [--wait], start|stop|abort P [--wait],
    reset P SYSTEM, watch P, logs, runs,
    agents [list|show|place|unplace|start|stop|restart|output],
    partitions [list|create|delete], detectors [list|create|delete|move],
    configs [list|show|diff|set|delete], tags [list|show|set|delete],
    users [list|add|roles|passwd|delete]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ecs import __version__


def _fsm_check(args: argparse.Namespace) -> int:
    from ecs.fsm.machine import check_files

    code, lines = check_files(args.files)
    for line in lines:
        print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def _fsm_dot(args: argparse.Namespace) -> int:
    from ecs.fsm.machine import TableError, dot_file

    try:
        print(dot_file(args.file, args.state), end="")
    except TableError as e:
        print(f"ecs fsm dot: {e}", file=sys.stderr)
        return 1
    return 0


def _keys_init(args: argparse.Namespace) -> int:
    from ecs.net.keys import KeyFileError, init_keys

    try:
        written = init_keys(args.dir, force=args.force)
    except KeyFileError as e:
        print(f"ecs keys init: {e}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


def _keys_add(args: argparse.Namespace) -> int:
    from ecs.net.keys import KeyFileError, add_client, enrol_agent

    if args.force and not args.agent:
        print("ecs keys add: --force only rotates an agent's key (with --agent)", file=sys.stderr)
        return 1
    try:
        if args.agent:
            public, secret = enrol_agent(args.dir, args.name, force=args.force)
        else:
            public, secret = add_client(args.dir, args.name)
    except KeyFileError as e:
        print(f"ecs keys add: {e}", file=sys.stderr)
        return 1
    print(f"wrote {public} and {secret}; {args.name} is authorised")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ecs.net.keys import AUTHORIZED, valid_identity

    allowed = Path(args.dir) / AUTHORIZED / f"{args.name}.key"
    if not valid_identity(args.name) or not allowed.exists():
        print(f"ecs keys revoke: no authorised key {allowed}", file=sys.stderr)
        return 1
    allowed.unlink()
    print(f"removed {allowed}: serving processes refuse {args.name} within seconds")
    return 0


def _endpoint(args: argparse.Namespace) -> str:
    if args.endpoint:
        from ecs.net.keys import split_endpoint

        try:
            split_endpoint(args.endpoint)  # a key it names (as /api/agents shows it) must be one
        except ValueError as e:
            raise SystemExit(f"ecs: --endpoint: {e}") from None
        return str(args.endpoint)
    if not args.inventory:
        raise SystemExit("ecs: give --endpoint or --inventory to find the agent")
    from ecs.net.registry import InventoryRegistry
    from ecs.schema import ConfigError

    try:
        registry = InventoryRegistry.from_file(args.inventory)
    except ConfigError as e:
        raise SystemExit(f"ecs: {e}") from None
    for kind in ("detector", "global", "pca"):
        endpoint = registry.bind_address(kind, args.agent).result
        if endpoint:
            return str(endpoint)
    raise SystemExit(f"ecs: {args.agent} has no endpoint in {args.inventory}")


def _request(args: argparse.Namespace, type: str, body: dict[str, Any]) -> int:
    """Send one request to an agent (running a reactor) and return the exit code."""
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    _endpoint(args)  # argument errors exit here, before a reactor runs
    result: dict[str, int] = {}

    async def run(reactor: Any) -> None:
        result["code"] = await request_agent(reactor, args, type, body)

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return result.get("code", 1)


async def request_agent(reactor: Any, args: argparse.Namespace, type: str, body: dict[str, Any]) -> int:
    """
    Send one request to the agent named by C{args}; print the reply as JSON
    (exit code 0) or the refusal on stderr (exit code 1).
    """
    from ecs.config.settings import load_settings
    from ecs.net.keys import KeyFileError, load_keys
    from ecs.net.transport import RequestError, default_sender
    from ecs.net.zeromq import ZmqNode
    from ecs.schema import ConfigError

    endpoint = _endpoint(args)
    overrides = {"security": args.security} if args.security else None
    try:
        settings = load_settings(args.config, args.state_dir, overrides)
        keys = load_keys(settings.key_dir, need_server_secret=False) if settings.security == "curve" else None
    except (ConfigError, KeyFileError) as e:
        raise SystemExit(f"ecs: {e}") from None
    node = ZmqNode(reactor, default_sender(), keys, request_timeout=args.timeout)
    try:
        reply = await node.connect(endpoint).request(args.agent, type, body)
    except RequestError as e:
        print(f"ecs: {args.agent} refused: {e.code}: {e.reason}", file=sys.stderr)
        return 1
    finally:
        await node.close()
    print(json.dumps(reply, indent=2, sort_keys=True))
    return 0


def _inject(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"what": args.what.replace("-", "_")}
    if args.what == "detector-error":
        if not args.detector:
            raise SystemExit("ecs inject: detector-error needs the detector id")
        body["detector"] = args.detector
    elif args.detector:
        raise SystemExit(f"ecs inject: {args.what} takes no detector id")
    if args.partition:
        body["partition"] = args.partition
    if not args.endpoint and not args.inventory:
        from ecs.client.cli import inject_through_eca

        return inject_through_eca(args, body)
    return _request(args, "inject", body)



def _agent_status(args: argparse.Namespace) -> int:
    body = {"partition": args.partition} if args.partition else {}
    return _request(args, "status", body)


def _react(work: Any) -> int:
    """Run C{work(reactor)} (a coroutine function returning an exit code) on a reactor."""
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    result: dict[str, int] = {}

    async def run(reactor: Any) -> None:
        result["code"] = await work(reactor)

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return result.get("code", 1)


def _user(args: argparse.Namespace) -> int:
    from ecs.users import cli_user, cli_user_key

    if args.action == "key":
        return _react(lambda reactor: cli_user_key(reactor, args))
    if args.action == "tokens":
        return _react(lambda reactor: cli_user_tokens(reactor, args))
    if args.key_args:
        print(f"ecs user {args.action}: unexpected arguments {' '.join(args.key_args)}", file=sys.stderr)
        return 2
    return _react(lambda reactor: cli_user(reactor, args))


async def cli_user_tokens(reactor: Any, args: argparse.Namespace, stdout: Any = None, stderr: Any = None) -> int:
    """
    C{ecs user tokens list [NAME]}: the sessions and API tokens that have
    not expired (id, user, kind, created, last used, expires);
    C{ecs user tokens revoke ID|NAME...}: end a token by its id (the first
    hex digits of its hash, as listed; at least 8) or every token of a
    user.  Writes the database directly: the running ECA reads tokens on
    every request, so a revoked one is refused at its next request (an
    open event stream ends within the ECA's session check, 30 s).  Returns
    0, 1 (refused) or 2 (usage).
    """
    from ecs.store import StoreError
    from ecs.store.accounts import TOKEN_ID_MIN
    from ecs.users import DEFAULT_STATE_DIR, format_time, on_store

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    action = getattr(args, "name", None)
    rest = list(getattr(args, "key_args", None) or [])
    if action not in ("list", "revoke") or (action == "list" and len(rest) > 1) or (action == "revoke" and not rest):
        print("ecs user tokens: use list [NAME] or revoke ID|NAME...", file=err)
        return 2
    state_dir = getattr(args, "state_dir", None) or DEFAULT_STATE_DIR

    async def work(store: Any) -> int:
        if action == "list":
            print(f"{'ID':<14}{'USER':<20}{'KIND':<9}{'CREATED':<25}{'LAST USED':<25}EXPIRES", file=out)
            for row in await store.tokens(rest[0] if rest else None):
                expires = "never" if row.expires is None else format_time(row.expires)
                print(f"{row.token_hash[:12]:<14}{row.user:<20}{row.kind:<9}{format_time(row.created):<25}"
                      f"{format_time(row.last_used):<25}{expires}", file=out)
            return 0
        code = 0
        for what in rest:
            if len(what) >= TOKEN_ID_MIN and all(c in "0123456789abcdefABCDEF" for c in what):
                try:
                    row = await store.revoke_token(what)
                except StoreError as e:
                    if e.code != "not_found" or await store.user(what) is None:
                        print(f"ecs user tokens revoke: {e.reason}", file=err)
                        code = 1
                        continue
                else:
                    print(f"token {row.token_hash[:12]} ({row.kind}) of {row.user} revoked", file=out)
                    continue
            elif await store.user(what) is None:
                print(f"ecs user tokens revoke: no token and no user {what}", file=err)
                code = 1
                continue
            ended = await store.delete_tokens(what)
            print(f"{ended} token(s) of {what} revoked", file=out)
        return code

    return await on_store(reactor, state_dir, f"ecs user tokens {action}", err, work)


def _db_upgrade(args: argparse.Namespace) -> int:
    from ecs.users import cli_db_upgrade

    return _react(lambda reactor: cli_db_upgrade(reactor, args))


def _agent_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("agent", help="agent id, e.g. STS or DCS")
    parser.add_argument("--endpoint", help="the agent's endpoint, e.g. tcp://127.0.0.1:7201")
    parser.add_argument("--inventory", help="inventory file that names the agent's endpoint")
    parser.add_argument("--partition", help="partition (global systems serve several)")
    parser.add_argument("--config", help="settings file (default: the installed etc/ecs.yaml)")
    parser.add_argument("--state-dir", help="state directory (keys are under it)")
    parser.add_argument("--security", choices=("curve", "none"), help="override the security mode")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the reply")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of C{ecs}."""
    parser = argparse.ArgumentParser(prog="ecs", description="ECS experiment control system")
    parser.add_argument("--version", action="version", version=f"ecs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    fsm = commands.add_parser("fsm", help="state-table tools").add_subparsers(dest="fsm_command", required=True)
    check = fsm.add_parser("check", help="validate state tables")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=_fsm_check)
    dot = fsm.add_parser("dot", help="print a state table as DOT")
    dot.add_argument("file")
    dot.add_argument("--state", help="highlight this state")
    dot.set_defaults(func=_fsm_dot)

    keys = commands.add_parser("keys", help="CURVE keys").add_subparsers(dest="keys_command", required=True)
    init = keys.add_parser("init", help="create the key pairs and the allow-list")
    init.add_argument("--dir", required=True)
    init.add_argument("--force", action="store_true", help="replace existing keys")
    init.set_defaults(func=_keys_init)
    add = keys.add_parser("add", help="create and authorise another client key pair")
    add.add_argument("name")
    add.add_argument("--dir", required=True)
    add.add_argument("--agent", action="store_true", help="an agent identity (its pair in DIR/agents/)")
    add.add_argument("--force", action="store_true", help="with --agent: replace its pair (rotation)")
    add.set_defaults(func=_keys_add)
    revoke = keys.add_parser("revoke", help="remove a key from the allow-list")
    revoke.add_argument("name")
    revoke.add_argument("--dir", required=True)
    revoke.set_defaults(func=_keys_revoke)

    inject = commands.add_parser("inject", help="report a fault to a controller (through the ECA; --endpoint: direct)")
    _agent_options(inject)
    inject.add_argument("what", choices=("error", "resolved", "detector-error"))
    inject.add_argument("detector", nargs="?", help="detector id (detector-error only)")
    inject.set_defaults(func=_inject)

    status = commands.add_parser("agent-status", help="ask a controller for its state")
    _agent_options(status)
    status.set_defaults(func=_agent_status)

    user = commands.add_parser("user", help="users of the ECA (on the ECA host)")
    user.add_argument("action", choices=("add", "passwd", "del", "list", "roles", "key", "tokens"))
    user.add_argument("name", nargs="?")
    user.add_argument(
        "key_args", nargs="*", metavar="ARG",
        help="SSH keys: key add NAME FILE|-, key list [NAME], key del FINGERPRINT; "
        "tokens: tokens list [NAME], tokens revoke ID|NAME...",
    )
    user.add_argument("--comment", help="key add: the key's comment (default: the one in the file)")
    user.add_argument("--roles", help="comma list of viewer, operator, expert, admin")
    user.add_argument(
        "--password-file", help="read the password from this file (else ECS_USER_PASSWORD or the terminal)"
    )
    user.add_argument("--state-dir", default="var", help="the ECA's state directory")
    user.set_defaults(func=_user)

    db = commands.add_parser("db", help="the ECA database").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="upgrade the schema to this version of ECS")
    upgrade.add_argument("--state-dir", default="var", help="the ECA's state directory")
    upgrade.set_defaults(func=_db_upgrade)

    # The commands over the ECA's HTTP API (login, status, configure, watch, ...).
    from ecs.client.cli import add_commands

    add_commands(parser, commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the C{ecs} console script."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
