# -*- test-case-name: tests.test_client_cli -*-
"""
A partition followed live from the ECA's event stream: C{ecs watch P}, and
the C{--wait} of C{ecs configure|start|stop|abort} (L{Waiter}, L{wait_for})
and of C{ecs sequence run} (L{sequence_wait}: the partition's C{sequence}
events until the sequence ends).

On a terminal the table is redrawn (at most every L{REDRAW} seconds) from
the partition's detail, kept current by the events; elsewhere (a pipe, a
log file) one line per change is printed.  Ctrl-C ends it with exit code 0;
C{--until STATE} ends it with 0 once the partition is in STATE (and with 5
when C{--timeout} passes first).  A dropped stream is reopened with
C{Last-Event-ID}; a C{reload} (events lost) or C{reset} (the ECA took a
fresh snapshot) fetches the whole detail again.

What an event means (L{LiveView}, L{Waiter}) is judged in
L{ecs.client.following}, without I/O, and shared with the SSH shell; this
module does the command line's part: the event stream, the terminal.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ecs import textview
from ecs.client import sequences
from ecs.client.commands import Run
from ecs.client.context import Context, use_colour
from ecs.client.following import QUIET, LiveView, Waiter
from ecs.client.http import EXIT_OK, EXIT_REFUSED, EXIT_TIMEOUT, ClientError, EventStream, StreamTimeout, partition_path

REDRAW = 0.2


def wait_for(ctx: Context, stream: EventStream, waiter: Waiter, deadline: float) -> tuple[bool, str]:
    """Read the partition's events until L{Waiter} has an outcome; reopen a broken stream where it was."""
    partition = ctx.args.partition
    show = _Progress(partition)
    show.state(waiter.record)
    try:
        while True:
            result = waiter.outcome(time.monotonic())
            if result is not None:
                return result
            try:
                event = stream.read(min(deadline, time.monotonic() + QUIET))
            except StreamTimeout:
                if time.monotonic() >= deadline:
                    raise ClientError(
                        EXIT_TIMEOUT,
                        f"{partition} {ctx.args.command}: still "
                        f"{textview.clean(waiter.record.get('state'))} after {ctx.wait_timeout:g} s",
                    ) from None
                continue  # a quiet moment: judge again
            except ClientError:
                event = None  # the connection broke
            if event is None:
                stream = _reopen(ctx, stream)
                continue
            _, kind, data = event
            if not isinstance(data, dict):
                continue
            if kind == "state" and data.get("key") == "partition":
                waiter.update(data.get("value"))
                show.state(waiter.record)
            elif kind == "state" and data.get("key") == "connected":
                connected = (data.get("value") or {}).get("connected")
                show.note("PCA connection lost: waiting for it" if connected is False else "PCA connected again")
            elif kind == "progress":
                show.progress(data)
            elif kind == "log" and data.get("level") in ("warn", "error", "critical"):
                waiter.last_error = textview.clean(data.get("message"))
            elif kind == "alarm":
                line = waiter.alarm(data)
                if line is not None:
                    show.note(line)
    finally:
        show.end()
        stream.close()


def _reopen(ctx: Context, stream: EventStream) -> EventStream:
    """The same event stream again, resumed after its last event (L{ClientError} when the ECA is gone)."""
    stream.close()
    return ctx.client.events(ctx.args.partition, stream.parser.last_id)


class _Progress:
    """The progress of a --wait on stderr: a redrawn bar on a terminal, else a line per state."""

    def __init__(self, partition: str) -> None:
        self.partition = partition
        self.tty = sys.stderr.isatty()
        self.last_state: str | None = None
        self.bar = ""
        self.drawn = False

    def state(self, record: dict[str, Any]) -> None:
        state = textview.clean(record.get("state"))
        if state != self.last_state:
            self.last_state = state
            if not self.tty:
                print(f"{self.partition}: {state}", file=sys.stderr, flush=True)
            self._draw()

    def progress(self, data: dict[str, Any]) -> None:
        self.bar = textview.format_progress(data)
        self._draw()

    def note(self, text: str) -> None:
        self._clear()
        print(f"{self.partition}: {text}", file=sys.stderr, flush=True)
        self._draw()

    def _draw(self) -> None:
        if self.tty:
            sys.stderr.write(f"\r\x1b[K{self.partition}: {self.last_state}  {self.bar}")
            sys.stderr.flush()
            self.drawn = True

    def _clear(self) -> None:
        if self.tty and self.drawn:
            sys.stderr.write("\r\x1b[K")

    def end(self) -> None:
        if self.tty and self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_watch(ctx: Context) -> int:
    """Follow a partition until Ctrl-C (exit 0) or C{--until} (exit 0) or its deadline (exit 5)."""
    args = ctx.args
    partition = args.partition
    deadline = time.monotonic() + ctx.wait_timeout if args.until else None
    tty = sys.stdout.isatty()
    stream = ctx.client.events(partition)
    try:
        view = LiveView(ctx.client.get(partition_path(partition)), _alarms(ctx, partition))
        if tty:
            _draw(view)
        else:
            print(
                f"{_stamp()} {textview.clean(partition)} state {textview.clean(view.state)} "
                f"tag {textview.clean(view.detail.get('tag'))}",
                flush=True,
            )
            for line in view.alarm_lines():
                print(f"{_stamp()} {textview.clean(partition)} {line.strip()}", flush=True)
        drawn, dirty = time.monotonic(), False
        while True:
            if args.until and view.state == args.until:
                if tty:
                    _draw(view)
                return EXIT_OK
            limit = deadline
            if tty and dirty:
                limit = min(deadline if deadline is not None else float("inf"), drawn + REDRAW)
            event: tuple[int | None, str, Any] | tuple[()] | None
            try:
                event = stream.read(limit)
            except StreamTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ClientError(
                        EXIT_TIMEOUT, f"{partition} is {view.state}, not {args.until}, after {ctx.wait_timeout:g} s"
                    ) from None
                event = ()  # time to redraw
            except ClientError:
                event = None  # the connection broke
            if event is None:  # reopen where we were
                stream.close()
                stream = ctx.client.events(partition, stream.parser.last_id)
            elif event:
                _, kind, data = event
                lines, refetch = view.apply(kind, data)
                if refetch:
                    view.reload(ctx.client.get(partition_path(partition)), _alarms(ctx, partition))
                    lines.append(f"reloaded: state {textview.clean(view.state)}")
                if tty:
                    dirty = dirty or bool(lines)
                else:
                    for line in lines:
                        print(f"{_stamp()} {textview.clean(partition)} {line}", flush=True)
            if tty and dirty and time.monotonic() - drawn >= REDRAW:
                _draw(view)
                drawn, dirty = time.monotonic(), False
    except KeyboardInterrupt:
        if tty:
            print()
        return EXIT_OK
    finally:
        stream.close()


def _alarms(ctx: Context, partition: str) -> list[Any] | None:
    """The partition's active alarms; None from an ECA without alarms (404)."""
    try:
        rows = ctx.client.get("/api/alarms", partition=partition)
    except ClientError as e:
        if e.status == 404:
            return None
        raise
    return list(rows) if isinstance(rows, list) else []


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _draw(view: LiveView) -> None:
    sys.stdout.write(
        "\x1b[H\x1b[2J" + view.screen(color=use_colour()) + f"\n{time.strftime('%H:%M:%S')}  Ctrl-C to quit\n"
    )
    sys.stdout.flush()


async def sequence_wait(ctx: Context, run: Run, partition: str, name: str) -> int:
    """Open the stream, start the sequence, then follow its C{sequence} events to its end (or --timeout)."""
    deadline = time.monotonic() + ctx.wait_timeout
    stream = ctx.client.events(partition)
    try:
        status = await run.api.run_sequence(name, partition)
        shown = sequences.progress_line(status)
        print(f"{partition}: {shown}", file=sys.stderr, flush=True)
        while (result := sequences.outcome(status)) is None:
            try:
                event = stream.read(min(deadline, time.monotonic() + QUIET))
            except StreamTimeout:
                if time.monotonic() >= deadline:
                    raise ClientError(EXIT_TIMEOUT, f"{partition}: sequence still {shown} after "
                                                    f"{ctx.wait_timeout:g} s (--timeout)") from None
                continue
            except ClientError:
                event = None
            if event is None:  # the stream broke: reopen it and read the status once
                stream.close()
                stream = ctx.client.events(partition)
                status = await run.api.sequence_status(partition)
                continue
            _, kind, data = event
            if kind == "sequence" and isinstance(data, dict) and data.get("sequence") == name:
                status = data
                line = sequences.progress_line(status)
                if line != shown:
                    shown = line
                    print(f"{partition}: {shown}", file=sys.stderr, flush=True)
    finally:
        stream.close()
    ok, text = result
    if not ok:
        raise ClientError(EXIT_REFUSED, f"{partition}: sequence {text}", body=status)
    ctx.out(f"{partition}: sequence {text}", status)
    return EXIT_OK


__all__ = ["QUIET", "LiveView", "Waiter", "cmd_watch", "sequence_wait", "use_colour", "wait_for"]
