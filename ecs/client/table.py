# -*- test-case-name: tests.test_commands -*-
"""
(Over 400 lines: the one table of every command stays in one module, so
that both front ends and their help read the same declarations.)

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

from typing import Any

from ecs.client import alarms, elog, history, manage, operate, sequences
from ecs.client.alarms import alarm_id, duration, reason_text
from ecs.client.commands import Action, Command, arg, limit, name, roles, version
from ecs.config.logs import LEVELS

NOT_IN_SHELL = {
    "login": "the shell is logged in by your SSH key",
    "logout": "end the session with exit",
    "user, db": "local tools of the ECA host (the users' SSH keys, the database schema): run ecs there",
    "keys, fsm, inject, agent-status": "tools of your computer (key files, table files, agents reached directly)",
}


P = arg("partition", type=name("partition id"), help="partition id")
P_OPT = (
    arg("partition", type=name("partition id"), nargs="?", help="partition id"),
    arg("--partition", dest="partition_flag", metavar="P", type=name("partition id"), help="the same, as an option"),
)
FORCE = arg("--force", action="store_true")
WAIT = arg("--wait", action="store_true", help="wait for the end (see --timeout)")


# -- the table -------------------------------------------------------------------------------

ID = arg("id", type=name("configuration id", long=True))
AGENT = arg("agent", type=name("agent"), help="KIND:ID, e.g. pca:demo or detector:STS")
USER = arg("name", type=name("user name"))
PASSWORD = (arg("--generate", action="store_true", help="make up a password and show it once"),)


def _one(command: str, help: str, role: str, run: Any, *args: Any, follows: bool = False) -> Command:
    return Command(command, help, (Action("", help, role, run, tuple(args), follows),))


COMMANDS: tuple[Command, ...] = (
    _one("status", "partitions, or one partition with its systems", "viewer", operate.status, *P_OPT),
    _one(
        "control",
        "take or give up control of a partition, or of the ECS (P = ecs, experts: management)",
        "operator",
        operate.control,
        arg("action", choices=("take", "release")),
        P,
        arg("--force", action="store_true", help="take it from its holder (admin)"),
    ),
    _one(
        "configure",
        "configure a partition",
        "operator",
        operate.partition_command,
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
    _one(
        "start",
        "start a run on a partition",
        "operator",
        operate.partition_command,
        P,
        arg("--type", type=history.run_type, help="the run type (one the ECA declares: physics, calibration, ...)"),
        arg("--comment", type=history.comment, help="what this run is for"),
        arg(
            "--condition",
            action="append",
            metavar="KEY=VALUE",
            type=history.condition,
            help="a run condition (repeat; numbers and true/false/null are kept as such)",
        ),
        WAIT,
        follows=True,
    ),
    _one(
        "stop",
        "stop the run of a partition",
        "operator",
        operate.partition_command,
        P,
        arg("--comment", type=history.comment, help="the run's end comment"),
        WAIT,
        follows=True,
    ),
    _one("abort", "abort a partition to Idle", "operator", operate.partition_command, P, WAIT, follows=True),
    _one(
        "reset",
        "reset a system in Error",
        "operator",
        operate.partition_command,
        P,
        arg("system", type=name("system id"), help="detector or global system id"),
    ),
    _one(
        "exclude",
        "leave a system out of a partition's configure and runs (not while recording)",
        "operator",
        operate.exclusion,
        P,
        arg("system", type=name("system id"), help="detector or global system id"),
    ),
    _one(
        "include",
        "take an excluded system back (the next configure configures it)",
        "operator",
        operate.exclusion,
        P,
        arg("system", type=name("system id"), help="detector or global system id"),
    ),
    _one(
        "watch",
        "follow a partition live",
        "viewer",
        operate.watch,
        P,
        arg("--until", metavar="STATE", help="end (exit 0) once the partition is in STATE"),
        follows=True,
    ),
    _one(
        "logs",
        "stored log events, oldest first",
        "viewer",
        operate.logs,
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
        "run records, newest first; filter by type and start time, export CSV or JSON",
        "viewer",
        history.runs,
        *P_OPT,
        arg("--type", type=history.run_type, help="runs of this type"),
        arg("--since", help="started at or after: " + history.TIME_HELP),
        arg("--until", help="started before: " + history.TIME_HELP),
        arg("--format", choices=("table", "csv", "json"), default="table", help="csv or json: every column"),
        arg("--limit", type=limit, default=100, help="at most this many (default 100)"),
    ),
    _one(
        "audit",
        "the audit trail, newest first: who did what, with its outcome (expert)",
        "expert",
        history.audit,
        arg("--user", type=name("user name"), help="entries of this user"),
        arg("--action", type=name("action"), help="entries of this action (start, take_control, ...)"),
        arg("--since", help="written at or after: " + history.TIME_HELP),
        arg("--until", help="written before: " + history.TIME_HELP),
        arg("--before", type=version, metavar="ID", help="older than entry ID (the next page)"),
        arg("--limit", type=limit, default=100, help="at most this many (default 100)"),
    ),
    Command(
        "sequence",
        "scripted run sequences (etc/sequences/): list them, run one on a partition you control, follow it",
        (
            Action("list", "the declared run sequences", "viewer", sequences.sequence_list, ()),
            Action(
                "run",
                "run a sequence on a partition (its steps are your commands); --wait: until it ends",
                "operator",
                sequences.sequence_run,
                (arg("name", type=name("sequence name")), P, WAIT),
                True,
            ),
            Action("status", "the partition's sequence: its step, or how it ended", "viewer",
                   sequences.sequence_status, (P,)),
            *(
                Action(action, text, "operator", sequences.sequence_control, (P,))
                for action, text in (
                    ("pause", "pause the partition's sequence after its current step"),
                    ("resume", "resume the partition's paused sequence"),
                    ("abort", "abort the partition's sequence and the partition"),
                )
            ),
        ),
        default="list",
    ),
    Command(
        "log-entry",
        "the electronic logbook: write entries (with files), list and search them, save their files "
        "(never changed: correct with a new one)",
        (
            Action(
                "add",
                "write a logbook entry (operator)",
                "operator",
                elog.entry_add,
                (
                    arg("text", type=elog.entry_text, help="the entry (quote it; at most 10000 characters)"),
                    arg("--partition", type=name("partition id"), help="the partition it is about"),
                    arg("--run", type=elog.entry_id, metavar="N", help="the run it is about"),
                    arg("--corrects", type=elog.entry_id, metavar="ID", help="the entry this one corrects"),
                    arg("--attach", action="append", metavar="FILE",
                        help=f"attach FILE (again for more: at most {elog.MAX_ATTACHMENTS}, "
                             f"{elog.size_text(elog.MAX_ATTACHMENT)} each; not in the SSH shell)"),
                ),
            ),
            Action(
                "attachment",
                "save a file attached to an entry (by its name or number, as list shows them)",
                "viewer",
                elog.entry_attachment,
                (
                    arg("entry", type=elog.entry_id, metavar="ENTRY", help="the entry's id"),
                    arg("name", metavar="NAME", help="the attachment's name, or its number (1, 2, 3)"),
                    arg("-o", "--output", metavar="FILE",
                        help="where to save it (- for standard output; default: its name in this folder, "
                             "never over an existing file)"),
                ),
            ),
            Action(
                "list",
                "logbook entries, newest first; search by text, partition, run, author and time",
                "viewer",
                elog.entry_list,
                (
                    arg("--text", "-q", dest="text", metavar="TEXT", help="entries containing TEXT (any case)"),
                    arg("--partition", type=name("partition id"), help="entries about this partition"),
                    arg("--run", type=elog.entry_id, metavar="N", help="entries about this run"),
                    arg("--author", type=name("user name"), help="entries by this user (ECS: the automatic ones)"),
                    arg("--since", help="written at or after: " + history.TIME_HELP),
                    arg("--until", help="written before: " + history.TIME_HELP),
                    arg("--before", type=elog.entry_id, metavar="ID", help="older than entry ID (the next page)"),
                    arg("--limit", type=limit, default=100, help="at most this many (default 100)"),
                ),
            ),
        ),
        default="list",
    ),
    Command(
        "alarms",
        "what is wrong and what clears it: list, acknowledge and shelve alarms",
        (
            Action(
                "list",
                "the active alarms, worst first (--all: with the history)",
                "viewer",
                alarms.alarms_list,
                (
                    arg("--all", action="store_true", help="cleared and acknowledged ones too"),
                    P_OPT[1],
                ),
            ),
            Action(
                "ack",
                "acknowledge an alarm (operator; audited)",
                "operator",
                alarms.alarms_ack,
                (arg("id", type=alarm_id, help="the alarm's id (ecs alarms lists them)"),),
            ),
            Action(
                "shelve",
                "hide an alarm for a while, with a reason (expert; audited)",
                "expert",
                alarms.alarms_shelve,
                (
                    arg("id", type=alarm_id, help="the alarm's id (ecs alarms lists them)"),
                    arg(
                        "--for",
                        dest="seconds",
                        metavar="DURATION",
                        type=duration,
                        one_of="until",
                        help="90s, 30m, 1h, 2d (or 1h30m)",
                    ),
                    arg(
                        "--until",
                        metavar="TIME",
                        one_of="until",
                        help="an ISO-8601 time (local unless it has a zone), e.g. 2026-12-07T18:30",
                    ),
                    arg("--reason", required=True, type=reason_text, help="why (kept in the audit trail)"),
                ),
            ),
        ),
        default="list",
    ),
    Command(
        "agents",
        "the agents: where they run, their processes; place and supervise them",
        (
            Action("list", "every agent with its process and supervision", "viewer", manage.agents_list),
            Action("show", "one agent", "viewer", manage.agents_show, (AGENT,)),
            Action(
                "place",
                "place an agent on a host (admin)",
                "admin",
                manage.agents_place,
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
                "unplace",
                "forget an agent's placement (admin; not while it runs)",
                "admin",
                manage.agents_unplace,
                (AGENT,),
            ),
            *(
                Action(verb, f"{verb} an agent's process", "expert", manage.agents_command, (AGENT,))
                for verb in ("start", "stop", "restart")
            ),
            Action(
                "output",
                "the last lines an agent printed",
                "expert",
                manage.agents_output,
                (AGENT, arg("--lines", type=limit, default=200, help="how many (default 200)")),
            ),
        ),
        default="list",
    ),
    Command(
        "partitions",
        "list, create and delete partitions (changes need the ECS control)",
        (
            Action("list", "every partition", "viewer", manage.partitions_list),
            Action(
                "create", "a new partition", "expert", manage.partitions_create, (arg("id", type=name("partition id")),)
            ),
            Action(
                "delete",
                "delete a partition; its detectors become unassigned",
                "expert",
                manage.partitions_delete,
                (arg("id", type=name("partition id")), FORCE),
            ),
        ),
        default="list",
    ),
    Command(
        "detectors",
        "list, create, delete and move detectors (changes need the ECS control)",
        (
            Action("list", "every detector and its partition", "viewer", manage.detectors_list),
            Action(
                "create",
                "a new unassigned detector",
                "expert",
                manage.detectors_create,
                (arg("id", type=name("detector id")), arg("type", type=name("detector type"))),
            ),
            Action(
                "delete",
                "delete an unassigned detector",
                "expert",
                manage.detectors_delete,
                (arg("id", type=name("detector id")), FORCE),
            ),
            Action(
                "move",
                "move a detector to a partition, or out of its partition",
                "expert",
                manage.detectors_move,
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
                manage.configs_list,
                (arg("--system", type=name("system id")),),
            ),
            Action("show", "one configuration", "viewer", manage.configs_show, (ID, arg("--version", type=version))),
            Action(
                "diff",
                "what changed between two versions (default: the last change)",
                "viewer",
                manage.configs_diff,
                (ID, arg("first", type=version, nargs="?"), arg("second", type=version, nargs="?")),
            ),
            Action(
                "set",
                "save a new version from a YAML/JSON file or text, after showing what changes",
                "expert",
                manage.configs_set,
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
            Action(
                "delete", "delete a configuration (not while a tag uses it)", "expert", manage.configs_delete, (ID,)
            ),
        ),
        default="list",
    ),
    Command(
        "tags",
        "tags: one configuration per system, named",
        (
            Action("list", "every tag (with --partition: whether it fits)", "viewer", manage.tags_list, P_OPT[1:]),
            Action("show", "one tag", "viewer", manage.tags_show, (arg("name", type=name("tag", long=True)),)),
            Action(
                "set",
                "create or replace a tag",
                "expert",
                manage.tags_set,
                (
                    arg("name", type=name("tag", long=True)),
                    arg("configs", nargs="+", metavar="CONFIG", type=name("configuration id", long=True)),
                ),
            ),
            Action("delete", "delete a tag", "expert", manage.tags_delete, (arg("name", type=name("tag", long=True)),)),
        ),
        default="list",
    ),
    Command(
        "users",
        "the ECA's users and their roles (admin)",
        (
            Action("list", "every user with roles", "admin", manage.users_list),
            Action(
                "add",
                "a new user",
                "admin",
                manage.users_add,
                (
                    USER,
                    arg("--roles", required=True, type=roles, help="comma list of viewer, operator, expert, admin"),
                    *PASSWORD,
                ),
            ),
            Action("roles", "set a user's roles", "admin", manage.users_roles, (USER, arg("roles", type=roles))),
            Action("passwd", "set a user's password", "admin", manage.users_passwd, (USER, *PASSWORD)),
            Action("delete", "delete a user (not yourself)", "admin", manage.users_delete, (USER,)),
        ),
        default="list",
    ),
    _one(
        "reload",
        "read the detector types, state tables and partition sequence again, in the ECA and every PCA (admin)",
        "admin",
        manage.reload,
    ),
)

BY_NAME = {c.name: c for c in COMMANDS}


__all__ = ["BY_NAME", "COMMANDS", "NOT_IN_SHELL"]
