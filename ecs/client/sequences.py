# -*- test-case-name: tests.test_client_sequences -*-
"""
The bodies of C{ecs sequence list|run|status|pause|resume|abort} of
L{ecs.client.table}: scripted run sequences (issue 14, item 5; the ECA
runs them, L{agents.eca.run_sequences}).  They act through the
L{ecs.client.commands.Api}, so the SSH shell offers them too; C{run
--wait} follows the partition's C{sequence} events through the front
end's L{ecs.client.commands.Follow} until the sequence ends: exit 0 when
it is done, L{EXIT_REFUSED} naming the failed step otherwise.
"""

from __future__ import annotations

from typing import Any

from ecs import textview
from ecs.client.commands import Run, usage
from ecs.exits import EXIT_OK

#: The states of a sequence that are over.
ENDED = ("done", "failed", "aborted", "interrupted")


def progress_line(status: dict[str, Any]) -> str:
    """C{running step 3/12: wait seconds=10.0}, the state of a sequence in one line."""
    state = textview.clean(status.get("state"))
    if state == "none":
        return "no sequence has run"
    line = f"{textview.clean(status.get('sequence'))} {state}, step {status.get('step')}/{status.get('total')}"
    if status.get("description"):
        line += f": {textview.clean(status.get('description'))}"
    if status.get("pause_wanted") and state == "running":
        line += " (pauses after this step)"
    if status.get("error"):
        line += f"; failed in step {textview.clean(status.get('failed_step'))}: {textview.clean(status.get('error'))}"
    return line


def outcome(status: Any) -> tuple[bool, str] | None:
    """None while the sequence runs; else whether it succeeded, and what to say."""
    if not isinstance(status, dict) or status.get("state") not in ENDED:
        return None
    return status.get("state") == "done", progress_line(status)


def format_sequences(rows: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/sequences}: name, steps, description."""
    if not rows:
        return "no run sequences declared (etc/sequences/)\n"
    body = [[r.get("name"), r.get("total"), r.get("description") or "-"] for r in rows if isinstance(r, dict)]
    return textview.table(["NAME", "STEPS", "DESCRIPTION"], body, color)


async def sequence_list(run: Run) -> int:
    """The declared sequences."""
    rows = await run.api.run_sequences()
    run.out.result(format_sequences(rows, color=run.color), rows)
    return EXIT_OK


async def sequence_run(run: Run) -> int:
    """Start a sequence on a partition (as you: hold its control); with --wait, follow it to its end."""
    args = run.args
    if args.wait:
        if run.follow is None:
            raise usage("sequence run --wait is not available here")
        return await run.follow.sequence_wait(run, args.partition, args.name)
    status = await run.api.run_sequence(args.name, args.partition)
    run.out.result(f"{args.partition}: sequence {progress_line(status)}", status)
    return EXIT_OK


async def sequence_status(run: Run) -> int:
    """The partition's sequence: running, paused, or how the last one ended."""
    status = await run.api.sequence_status(run.args.partition)
    run.out.result(f"{run.args.partition}: {progress_line(status)}", status)
    return EXIT_OK


async def sequence_control(run: Run) -> int:
    """Pause (after the current step), resume or abort the partition's sequence."""
    args = run.args
    status = await run.api.sequence_control(args.partition, args.action)
    text = f"{args.partition}: {args.action} accepted; {progress_line(status)}"
    if status.get("abort_refused"):
        text += f" (the partition's abort was refused: {textview.clean(status['abort_refused'])})"
    run.out.result(text, status)
    return EXIT_OK


__all__ = ["ENDED", "format_sequences", "outcome", "progress_line", "sequence_control", "sequence_list",
           "sequence_run", "sequence_status"]
