# -*- test-case-name: tests.test_commands -*-
"""
The bodies of the management commands of L{ecs.client.table}:
partitions, detectors, configurations (versions, differences, a new
version from a file after showing what changes), tags, users and agents
(placement and supervision).  Each acts through the
L{ecs.client.commands.Api}; what only one front end can do (read your
files, ask you, read a password) comes through L{ecs.client.commands.Run}.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ecs import textview
from ecs.client.commands import CommandError, Run, usage
from ecs.client.operate import given_partition, not_ecs
from ecs.exits import EXIT_OK, EXIT_REFUSED

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
    answer = await run.api.delete_partition(not_ecs(run.args.id), bool(run.args.force))
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
    to = None if run.args.unassign else not_ecs(run.args.to)
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
    rows = await run.api.tags(given_partition(run))
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


# -- reload -----------------------------------------------------------------------------------


async def reload(run: Run) -> int:
    """
    C{ecs reload}: the ECA and every PCA read the detector types, state
    tables and partition sequence again.  Exit 1 when a file is invalid
    (each problem on its line; nothing changed) or a PCA did not reload.
    """
    try:
        answer = await run.api.reload()
    except CommandError as e:
        problems = e.body.get("problems") if isinstance(e.body, dict) else None
        if not isinstance(problems, list) or not problems:
            raise
        lines = "\n".join(f"  {textview.clean(problem)}" for problem in problems)
        raise CommandError(
            e.exit_code, f"reload refused, nothing changed (the types and tables in force stay):\n{lines}",
            e.body, e.status,
        ) from None
    run.out.result(format_reload(answer), answer)
    pcas = answer.get("pcas") or {}
    return EXIT_OK if all(isinstance(a, dict) and a.get("ok") for a in pcas.values()) else EXIT_REFUSED


def format_reload(answer: dict[str, Any]) -> str:
    """The answer of a reload as text: what changed, then each PCA's answer."""
    lines = []
    for key in ("types_added", "types_removed", "types_changed", "tables_changed"):
        names = answer.get(key) or []
        shown = ", ".join(textview.clean(n) for n in names) if isinstance(names, list) and names else "none"
        lines.append(f"{key.replace('_', ' ')}: {shown}")
    lines.append(f"partition sequence: {'changed' if answer.get('sequence_changed') else 'unchanged'}")
    if "recovery_changed" in answer:  # an ECA that reads them again (older ones do not say)
        lines.append(f"recovery rules: {'changed' if answer.get('recovery_changed') else 'unchanged'}")
    for key in ("sequences_added", "sequences_removed", "sequences_changed"):
        names = answer.get(key)
        if isinstance(names, list):
            lines.append(f"run {key.replace('_', ' ')}: {', '.join(textview.clean(n) for n in names) or 'none'}")
    running = answer.get("sequences_running_as_started") or []
    if isinstance(running, list) and running:
        lines.append("running as they started: " + ", ".join(textview.clean(r) for r in running))
    for excluded in answer.get("never_excludable_excluded") or []:
        if isinstance(excluded, dict):
            lines.append(f"warning: {textview.clean(excluded.get('system'))} stays excluded from "
                         f"{textview.clean(excluded.get('partition'))} although "
                         f"{textview.clean(excluded.get('reason'))}: include it")
    pcas = answer.get("pcas") or {}
    for partition in sorted(pcas):
        reply = pcas[partition] if isinstance(pcas[partition], dict) else {}
        pca = f"PCA {textview.clean(partition)}"
        if reply.get("ok"):
            lines.append(f"{pca}: reloaded (sequence {textview.clean(reply.get('sequence'))})")
        else:
            lines.append(f"{pca}: not reloaded: {textview.clean(reply.get('reason'))}")
    if not pcas:
        lines.append("no PCA to ask")
    return "\n".join(lines)
