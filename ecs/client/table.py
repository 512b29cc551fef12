# -*- test-case-name: tests.test_commands -*-
"""
THE table of the operator and expert commands: what C{ecs} offers over
HTTP and the ECA's SSH shell offers against the control center.  Each
entry names the command, its actions, the role each needs, its arguments
and help; each body talks to an L{Api} and shows the answer through
L{ecs.textview} (or as JSON with C{--json}).

Not here, and why (L{NOT_IN_SHELL} is what the shell's help says):
C{login} and C{logout} (a shell session is logged in by its SSH key, and
ends with C{exit}), and the tools of the ECA host or of your own computer
(C{user}, C{db}, C{keys}, C{fsm}, C{inject}, C{agent-status}: they read
local files or talk to agents directly, see L{ecs.cli}).  The shell adds
its own C{whoami}, C{help}, C{exit} and the admin's C{python}.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ecs import textview
from ecs.client.commands import (
    Action,
    Command,
    CommandError,
    Run,
    arg,
    limit,
    name,
    parse_since,
    roles,
    usage,
    version,
)
from ecs.config.logs import LEVELS
from ecs.exits import EXIT_OK, EXIT_REFUSED

NOT_IN_SHELL = {
    "login": "the shell is logged in by your SSH key",
    "logout": "end the session with exit",
    "user, db": "local tools of the ECA host (the users' SSH keys, the database schema): run ecs there",
    "keys, fsm, inject, agent-status": "tools of your computer (key files, table files, agents reached directly)",
}


def _partition(run: Run) -> str | None:
    """The partition given as the positional argument or C{--partition} (not both, unless equal)."""
    a, b = getattr(run.args, "partition", None), getattr(run.args, "partition_flag", None)
    if a and b and a != b:
        raise usage(f"two partitions given: {a} and {b}")
    return a or b


def _not_ecs(partition: str) -> str:
    # "ecs" is the ECS-wide control scope, never a partition (as in the web API)
    if partition == "ecs":
        raise CommandError(EXIT_REFUSED, "no partition ecs (ecs is the ECS-wide control: control take ecs)")
    return partition


P = arg("partition", type=name("partition id"), help="partition id")
P_OPT = (
    arg("partition", type=name("partition id"), nargs="?", help="partition id"),
    arg("--partition", dest="partition_flag", metavar="P", type=name("partition id"), help="the same, as an option"),
)
FORCE = arg("--force", action="store_true")
WAIT = arg("--wait", action="store_true", help="wait for the end (see --timeout)")


# -- reading and operating partitions ---------------------------------------------------


async def status(run: Run) -> int:
    partition = _partition(run)
    if partition:
        detail = await run.api.partition(_not_ecs(partition))
        run.out.result(textview.format_partition(detail, color=run.color), detail)
    else:
        rows = await run.api.partitions()
        run.out.result(textview.format_partitions(rows, color=run.color), rows)
    return EXIT_OK


async def control(run: Run) -> int:
    scope, take = run.args.partition, run.args.action == "take"
    if not take and run.args.force:
        raise usage("control release: --force only goes with take")
    if scope != "ecs":
        await run.api.partition(scope)  # a clear "no partition" before any control question
    what = "the ECS (management)" if scope == "ecs" else scope
    if take:
        answer = await run.api.take_control(scope, bool(run.args.force))
        previous = answer.get("previous") if isinstance(answer, dict) else None
        run.out.result(
            f"you control {what}" + (f" (taken from {textview.clean(previous)})" if previous else ""), answer
        )
    else:
        answer = await run.api.release_control(scope)
        run.out.result(f"released control of {what}", answer)
    return EXIT_OK


async def partition_command(run: Run) -> int:
    args = run.args
    command, partition = args.command, _not_ecs(args.partition)
    body: dict[str, Any] = {}
    if command == "configure":
        body = {"auto": bool(args.auto)}
        if args.tag:
            body["tag"] = args.tag
        else:
            body["configs"] = args.config
    elif command == "reset":
        body = {"system": args.system}
    if getattr(args, "wait", False):
        if run.follow is None:
            raise usage(f"{command} --wait is not available here")
        return await run.follow.command_wait(run, partition, command, body)
    reply = await run.api.command(partition, command, body)
    state = textview.clean(reply.get("state")) if isinstance(reply, dict) else "?"
    operation = reply.get("operation") if isinstance(reply, dict) else None
    if command == "reset":  # the answer is the system's status
        text = f"{partition}: reset of {args.system} accepted; {args.system} is {state}"
    else:
        text = f"{partition}: {command} accepted; {state}" + (f" ({textview.clean(operation)})" if operation else "")
    run.out.result(text, reply)
    return EXIT_OK


async def watch(run: Run) -> int:
    if run.follow is None:
        raise usage("watch is not available here")
    return await run.follow.watch(run, _not_ecs(run.args.partition), run.args.until)


async def logs(run: Run) -> int:
    args = run.args
    try:
        since = parse_since(args.since, run.now()) if args.since else None
    except ValueError as e:
        raise usage(str(e)) from None
    if args.follow:
        if run.follow is None:
            raise usage("logs --follow is not available here")
        return await run.follow.logs_follow(run, since)
    rows = await run.api.logs(_partition(run), args.level, since, args.grep, args.limit)
    run.out.result(textview.format_logs(rows, color=run.color), rows)
    return EXIT_OK


async def runs(run: Run) -> int:
    rows = await run.api.runs(_partition(run), run.args.limit)
    run.out.result(textview.format_runs(rows, color=run.color), rows)
    return EXIT_OK


# -- management: partitions, detectors ----------------------------------------------------


async def partitions_list(run: Run) -> int:
    rows = await run.api.partitions()
    run.out.result(textview.format_partitions(rows, color=run.color), rows)
    return EXIT_OK


async def partitions_create(run: Run) -> int:
    if run.args.id == "ecs":
        raise usage("partitions create: ecs is reserved (the ECS-wide control)")
    row = await run.api.create_partition(run.args.id)
    run.out.result(f"created partition {run.args.id}", row)
    return EXIT_OK


async def partitions_delete(run: Run) -> int:
    answer = await run.api.delete_partition(_not_ecs(run.args.id), bool(run.args.force))
    run.out.result(f"deleted partition {run.args.id}; its detectors are unassigned", answer)
    return EXIT_OK


async def detectors_list(run: Run) -> int:
    systems = await run.api.systems()
    detectors = systems.get("detectors") if isinstance(systems, dict) else None
    rows = [d for d in detectors or [] if isinstance(d, dict)]
    unassigned = await run.api.unassigned()
    run.out.result(
        textview.format_detectors(rows, unassigned, color=run.color), {"detectors": rows, "unassigned": unassigned}
    )
    return EXIT_OK


async def detectors_create(run: Run) -> int:
    row = await run.api.create_detector(run.args.id, run.args.type)
    run.out.result(f"created detector {run.args.id} ({run.args.type}), unassigned", row)
    return EXIT_OK


async def detectors_delete(run: Run) -> int:
    answer = await run.api.delete_detector(run.args.id, bool(run.args.force))
    run.out.result(f"deleted detector {run.args.id}", answer)
    return EXIT_OK


async def detectors_move(run: Run) -> int:
    to = None if run.args.unassign else _not_ecs(run.args.to)
    row = await run.api.move_detector(run.args.id, to, bool(run.args.force))
    run.out.result(f"moved detector {run.args.id} to {to or 'unassigned'}", row)
    return EXIT_OK


# -- configurations and tags ---------------------------------------------------------------


async def configs_list(run: Run) -> int:
    rows = await run.api.configs(run.args.system)
    run.out.result(textview.format_configs(rows, color=run.color), rows)
    return EXIT_OK


async def configs_show(run: Run) -> int:
    row = await run.api.config(run.args.id, run.args.version)
    run.out.result(textview.format_config(row), row)
    return EXIT_OK


async def configs_diff(run: Run) -> int:
    """Two versions (default: the one before the latest, and the latest)."""
    cid, first, second = run.args.id, run.args.first, run.args.second
    latest = await run.api.config(cid, None)
    if second is None:
        second = latest.get("version")
    if first is None:
        versions = sorted(v for v in latest.get("versions") or [] if isinstance(v, int) and v < (second or 0))
        if not versions:
            raise CommandError(EXIT_REFUSED, f"{cid} has no version before {second}: nothing to compare")
        first = versions[-1]
    old = await run.api.config(cid, first)
    new = latest if second == latest.get("version") else await run.api.config(cid, second)
    changes = textview.parameter_changes(old.get("parameters"), new.get("parameters"))
    data = {"id": cid, "from": first, "to": second, "changes": [{"key": k, "from": a, "to": b} for k, a, b in changes]}
    run.out.result(
        textview.format_diff(
            old.get("parameters"), new.get("parameters"), f"{cid} version {first}", f"{cid} version {second}"
        ),
        data,
    )
    return EXIT_OK


def _parameters(run: Run) -> tuple[dict[str, Any], str | None]:
    """The new parameters (and a system, when the document names one) from --file or --params."""
    args = run.args
    if args.file is not None:
        if run.read_file is None:
            raise usage(
                f"configs set --file reads a file of your computer, not available in {run.where}: give --params JSON"
            )
        text = run.read_file(args.file)
        source = args.file
    else:
        text, source = args.params, "--params"
    try:
        import yaml  # JSON is YAML too

        document = yaml.safe_load(text)
    except Exception as e:  # yaml's errors name the line and column
        raise usage(f"{source} is not YAML or JSON: {e}") from None
    if not isinstance(document, dict):
        raise usage(f"{source} must hold a mapping (the parameters, or {{system, parameters}})")
    if isinstance(document.get("parameters"), dict) and set(document) <= {"id", "system", "version", "parameters"}:
        system = document.get("system")
        return document["parameters"], system if isinstance(system, str) else None
    return document, None


async def configs_set(run: Run) -> int:
    """Save a new version, after showing what changes (and asking, unless --yes)."""
    args = run.args
    parameters, named = _parameters(run)
    try:
        current: dict[str, Any] | None = await run.api.config(args.id, None)
    except CommandError as e:
        if e.status != 404:
            raise
        current = None
    system = args.system or named or (current or {}).get("system")
    if not system:
        raise usage(f"configs set: {args.id} is new: give --system")
    old_name = f"{args.id} version {current.get('version')}" if current else f"{args.id} (new)"
    changes = textview.format_diff((current or {}).get("parameters"), parameters, old_name, f"{args.id} as given")
    if (
        current is not None
        and not textview.parameter_changes(current.get("parameters"), parameters)
        and system == current.get("system")
    ):
        run.out.result(f"{args.id}: no change, nothing saved", current)
        return EXIT_OK
    if not args.yes:
        run.out.note(changes)
        if run.confirm is None or not run.confirm(f"save these changes as a new version of {args.id}?"):
            raise CommandError(EXIT_REFUSED, f"{args.id}: not saved" + ("" if run.confirm else " (add --yes to save)"))
    row = await run.api.save_config(args.id, system, parameters)
    run.out.result(f"saved {args.id} version {textview.clean(row.get('version'))}", row)
    return EXIT_OK


async def configs_delete(run: Run) -> int:
    answer = await run.api.delete_config(run.args.id)
    run.out.result(f"deleted configuration {run.args.id}", answer)
    return EXIT_OK


async def tags_list(run: Run) -> int:
    rows = await run.api.tags(_partition(run))
    run.out.result(textview.format_tags(rows, color=run.color), rows)
    return EXIT_OK


async def tags_show(run: Run) -> int:
    row = await run.api.tag(run.args.name)
    run.out.result(textview.format_tag(row), row)
    return EXIT_OK


async def tags_set(run: Run) -> int:
    row = await run.api.save_tag(run.args.name, list(run.args.configs))
    run.out.result(f"saved tag {run.args.name}\n" + textview.format_tag(row), row)
    return EXIT_OK


async def tags_delete(run: Run) -> int:
    answer = await run.api.delete_tag(run.args.name)
    run.out.result(f"deleted tag {run.args.name}", answer)
    return EXIT_OK


# -- users ---------------------------------------------------------------------------------


def _password(run: Run, user: str) -> tuple[str, bool]:
    """A new password for C{user}: generated (and then shown once), or read by the front end."""
    if run.args.generate:
        return secrets.token_urlsafe(12), True
    if run.read_password is None:
        raise usage(f"{run.where} cannot read a password safely: give --generate (the new password is shown once)")
    password = run.read_password(f"New password for {user}: ")
    if not password:
        raise usage("empty password")
    return password, False


async def users_list(run: Run) -> int:
    rows = await run.api.users()
    run.out.result(textview.format_users(rows, color=run.color), rows)
    return EXIT_OK


async def users_add(run: Run) -> int:
    password, shown = _password(run, run.args.name)
    row = await run.api.add_user(run.args.name, password, run.args.roles)
    text = f"added user {run.args.name} (roles: {', '.join(run.args.roles)})"
    run.out.result(
        text + (f"\npassword: {password}" if shown else ""), {**row, **({"password": password} if shown else {})}
    )
    return EXIT_OK


async def users_roles(run: Run) -> int:
    row = await run.api.update_user(run.args.name, None, run.args.roles)
    run.out.result(f"{run.args.name} now has roles: {', '.join(run.args.roles)}", row)
    return EXIT_OK


async def users_passwd(run: Run) -> int:
    password, shown = _password(run, run.args.name)
    row = await run.api.update_user(run.args.name, password, None)
    text = f"changed the password of {run.args.name}" + (f"\npassword: {password}" if shown else "")
    run.out.result(text, {**row, **({"password": password} if shown else {})})
    return EXIT_OK


async def users_delete(run: Run) -> int:
    answer = await run.api.delete_user(run.args.name)
    run.out.result(f"deleted user {run.args.name}", answer)
    return EXIT_OK


# -- agents: placement and supervision -----------------------------------------------------


async def agents_list(run: Run) -> int:
    rows = await run.api.agents()
    run.out.result(textview.format_agents(rows, color=run.color), rows)
    return EXIT_OK


async def agents_show(run: Run) -> int:
    row = await run.api.agent(run.args.agent)
    run.out.result(textview.format_agents([row], color=run.color), row)
    return EXIT_OK


def _options(pairs: list[str] | None, text: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if text:
        try:
            loaded = json.loads(text)
        except ValueError as e:
            raise usage(f"--options-json is not JSON: {e}") from None
        if not isinstance(loaded, dict):
            raise usage("--options-json must be a JSON object")
        options.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise usage(f"--option {pair!r}: give KEY=VALUE")
        options[key] = value
    return options


async def agents_place(run: Run) -> int:
    a = run.args
    row = await run.api.set_placement(
        a.agent, a.host, a.launcher, _options(a.option, a.options_json), not a.no_autostart
    )
    run.out.result(f"placed {a.agent} on {a.host} ({a.launcher})", row)
    return EXIT_OK


async def agents_unplace(run: Run) -> int:
    answer = await run.api.delete_placement(run.args.agent)
    run.out.result(f"forgot the placement of {run.args.agent}", answer)
    return EXIT_OK


async def agents_command(run: Run) -> int:
    row = await run.api.agent_command(run.args.agent, run.args.action)
    run.out.result(f"{run.args.action} {run.args.agent}: done\n" + textview.format_agents([row], color=run.color), row)
    return EXIT_OK


async def agents_output(run: Run) -> int:
    row = await run.api.agent_output(run.args.agent, run.args.lines)
    text = str(row.get("text") or "") if isinstance(row, dict) else ""
    run.out.result("\n".join(textview.clean(line) for line in text.splitlines()) or "(no output)", row)
    return EXIT_OK


# -- the table -------------------------------------------------------------------------------

ID = arg("id", type=name("configuration id", long=True))
AGENT = arg("agent", type=name("agent"), help="KIND:ID, e.g. pca:demo or detector:STS")
USER = arg("name", type=name("user name"))
PASSWORD = (arg("--generate", action="store_true", help="make up a password and show it once"),)


def _one(command: str, help: str, role: str, run: Any, *args: Any, follows: bool = False) -> Command:
    return Command(command, help, (Action("", help, role, run, tuple(args), follows),))


COMMANDS: tuple[Command, ...] = (
    _one("status", "partitions, or one partition with its systems", "viewer", status, *P_OPT),
    _one(
        "control",
        "take or give up control of a partition, or of the ECS (P = ecs, experts: management)",
        "operator",
        control,
        arg("action", choices=("take", "release")),
        P,
        arg("--force", action="store_true", help="take it from its holder (admin)"),
    ),
    _one(
        "configure",
        "configure a partition",
        "operator",
        partition_command,
        P,
        arg("--tag", type=name("tag", long=True), help="the tag to configure with", one_of="what"),
        arg(
            "--config",
            action="append",
            metavar="ID",
            type=name("configuration id", long=True),
            one_of="what",
            help="a configuration id (repeat for each system)",
        ),
        arg("--auto", action="store_true", help="configure every stage in turn"),
        WAIT,
        follows=True,
    ),
    _one("start", "start a run on a partition", "operator", partition_command, P, WAIT, follows=True),
    _one("stop", "stop the run of a partition", "operator", partition_command, P, WAIT, follows=True),
    _one("abort", "abort a partition to Idle", "operator", partition_command, P, WAIT, follows=True),
    _one(
        "reset",
        "reset a system in Error",
        "operator",
        partition_command,
        P,
        arg("system", type=name("system id"), help="detector or global system id"),
    ),
    _one(
        "watch",
        "follow a partition live",
        "viewer",
        watch,
        P,
        arg("--until", metavar="STATE", help="end (exit 0) once the partition is in STATE"),
        follows=True,
    ),
    _one(
        "logs",
        "stored log events, oldest first",
        "viewer",
        logs,
        *P_OPT,
        arg("--level", choices=LEVELS, help="this level or above"),
        arg("--since", help="30s, 10m, 2h, 1d ago; an ISO time; or epoch seconds"),
        arg("--grep", "-q", dest="grep", metavar="TEXT", help="messages containing TEXT (case-insensitive)"),
        arg("--limit", type=limit, default=100, help="at most this many (default 100)"),
        arg("--follow", "-f", action="store_true", help="then print new events as they come"),
        follows=True,
    ),
    _one(
        "runs",
        "run records, newest first",
        "viewer",
        runs,
        *P_OPT,
        arg("--limit", type=limit, default=100, help="at most this many (default 100)"),
    ),
    Command(
        "agents",
        "the agents: where they run, their processes; place and supervise them",
        (
            Action("list", "every agent with its process and supervision", "viewer", agents_list),
            Action("show", "one agent", "viewer", agents_show, (AGENT,)),
            Action(
                "place",
                "place an agent on a host (admin)",
                "admin",
                agents_place,
                (
                    AGENT,
                    arg("--host", required=True, type=name("host")),
                    arg("--launcher", required=True, type=name("launcher"), help="local, ssh or slurm"),
                    arg("--option", action="append", metavar="KEY=VALUE", help="a launcher option (repeat)"),
                    arg("--options-json", metavar="JSON", help="the launcher options as a JSON object"),
                    arg("--no-autostart", action="store_true", help="do not start it with the ECA"),
                ),
            ),
            Action(
                "unplace", "forget an agent's placement (admin; not while it runs)", "admin", agents_unplace, (AGENT,)
            ),
            *(
                Action(verb, f"{verb} an agent's process", "expert", agents_command, (AGENT,))
                for verb in ("start", "stop", "restart")
            ),
            Action(
                "output",
                "the last lines an agent printed",
                "expert",
                agents_output,
                (AGENT, arg("--lines", type=limit, default=200, help="how many (default 200)")),
            ),
        ),
        default="list",
    ),
    Command(
        "partitions",
        "list, create and delete partitions (changes need the ECS control)",
        (
            Action("list", "every partition", "viewer", partitions_list),
            Action("create", "a new partition", "expert", partitions_create, (arg("id", type=name("partition id")),)),
            Action(
                "delete",
                "delete a partition; its detectors become unassigned",
                "expert",
                partitions_delete,
                (arg("id", type=name("partition id")), FORCE),
            ),
        ),
        default="list",
    ),
    Command(
        "detectors",
        "list, create, delete and move detectors (changes need the ECS control)",
        (
            Action("list", "every detector and its partition", "viewer", detectors_list),
            Action(
                "create",
                "a new unassigned detector",
                "expert",
                detectors_create,
                (arg("id", type=name("detector id")), arg("type", type=name("detector type"))),
            ),
            Action(
                "delete",
                "delete an unassigned detector",
                "expert",
                detectors_delete,
                (arg("id", type=name("detector id")), FORCE),
            ),
            Action(
                "move",
                "move a detector to a partition, or out of its partition",
                "expert",
                detectors_move,
                (
                    arg("id", type=name("detector id")),
                    arg("--to", metavar="P", type=name("partition id"), one_of="to"),
                    arg("--unassign", action="store_true", help="out of its partition", one_of="to"),
                    FORCE,
                ),
            ),
        ),
        default="list",
    ),
    Command(
        "configs",
        "configurations, their versions and differences; save a new version",
        (
            Action(
                "list",
                "the latest version of every configuration",
                "viewer",
                configs_list,
                (arg("--system", type=name("system id")),),
            ),
            Action("show", "one configuration", "viewer", configs_show, (ID, arg("--version", type=version))),
            Action(
                "diff",
                "what changed between two versions (default: the last change)",
                "viewer",
                configs_diff,
                (ID, arg("first", type=version, nargs="?"), arg("second", type=version, nargs="?")),
            ),
            Action(
                "set",
                "save a new version from a YAML/JSON file or text, after showing what changes",
                "expert",
                configs_set,
                (
                    ID,
                    arg("--system", type=name("system id"), help="needed for a new configuration"),
                    arg(
                        "--file",
                        help="YAML or JSON: the parameters, or {system, parameters}; - for stdin",
                        one_of="source",
                    ),
                    arg("--params", metavar="JSON", help="the parameters as text instead of a file", one_of="source"),
                    arg("--yes", "-y", action="store_true", help="save without asking"),
                ),
            ),
            Action("delete", "delete a configuration (not while a tag uses it)", "expert", configs_delete, (ID,)),
        ),
        default="list",
    ),
    Command(
        "tags",
        "tags: one configuration per system, named",
        (
            Action("list", "every tag (with --partition: whether it fits)", "viewer", tags_list, P_OPT[1:]),
            Action("show", "one tag", "viewer", tags_show, (arg("name", type=name("tag", long=True)),)),
            Action(
                "set",
                "create or replace a tag",
                "expert",
                tags_set,
                (
                    arg("name", type=name("tag", long=True)),
                    arg("configs", nargs="+", metavar="CONFIG", type=name("configuration id", long=True)),
                ),
            ),
            Action("delete", "delete a tag", "expert", tags_delete, (arg("name", type=name("tag", long=True)),)),
        ),
        default="list",
    ),
    Command(
        "users",
        "the ECA's users and their roles (admin)",
        (
            Action("list", "every user with roles", "admin", users_list),
            Action(
                "add",
                "a new user",
                "admin",
                users_add,
                (
                    USER,
                    arg("--roles", required=True, type=roles, help="comma list of viewer, operator, expert, admin"),
                    *PASSWORD,
                ),
            ),
            Action("roles", "set a user's roles", "admin", users_roles, (USER, arg("roles", type=roles))),
            Action("passwd", "set a user's password", "admin", users_passwd, (USER, *PASSWORD)),
            Action("delete", "delete a user (not yourself)", "admin", users_delete, (USER,)),
        ),
        default="list",
    ),
)

BY_NAME = {c.name: c for c in COMMANDS}


__all__ = ["BY_NAME", "COMMANDS", "NOT_IN_SHELL"]
