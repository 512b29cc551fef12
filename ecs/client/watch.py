# -*- test-case-name: tests.test_client_cli -*-
"""
A partition followed live from the ECA's event stream: C{ecs watch P}, and
the C{--wait} of C{ecs configure|start|stop|abort} (L{Waiter}, L{wait_for}).

On a terminal the table is redrawn (at most every L{REDRAW} seconds) from
the partition's detail, kept current by the events; elsewhere (a pipe, a
log file) one line per change is printed.  Ctrl-C ends it with exit code 0;
C{--until STATE} ends it with 0 once the partition is in STATE (and with 5
when C{--timeout} passes first).  A dropped stream is reopened with
C{Last-Event-ID}; a C{reload} (events lost) or C{reset} (the ECA took a
fresh snapshot) fetches the whole detail again.

L{LiveView} folds events into the detail and says what changed; it does no
I/O, so it is tested without a server.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ecs import textview
from ecs.client.http import EXIT_OK, EXIT_TIMEOUT, ClientError, EventStream, StreamTimeout, partition_path

if TYPE_CHECKING:
    from ecs.client.cli import Context

REDRAW = 0.2
LOG_LINES = 8
QUIET = 2.0
"""Seconds after which --wait judges the latest record even if none showed its operation running."""


class LiveView:
    """The detail of one partition (C{GET /api/partitions/{id}}) kept current by events."""

    def __init__(self, detail: dict[str, Any]) -> None:
        self.reload(detail)
        self.logs: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LINES)

    def reload(self, detail: dict[str, Any]) -> None:
        """Start again from a fresh detail."""
        self.detail = dict(detail)
        self.id = str(detail.get("id"))
        systems = detail.get("systems") if isinstance(detail.get("systems"), list) else []
        self.systems: dict[str, dict[str, Any]] = {str(s.get("id")): s for s in systems if isinstance(s, dict)}

    @property
    def state(self) -> str:
        """The partition's state as shown (Connection Problem when its PCA does not answer)."""
        if self.detail.get("connected") is False:
            return "Connection Problem"
        return str(self.detail.get("state"))

    def shown(self) -> dict[str, Any]:
        """The detail with the current systems."""
        return {**self.detail, "systems": [self.systems[k] for k in sorted(self.systems)]}

    def apply(self, kind: str, data: Any) -> tuple[list[str], bool]:
        """
        Fold one event in.  Returns the change lines (clean, one per change)
        and whether the whole detail must be fetched again.
        """
        if not isinstance(data, dict):
            return [], False
        if kind == "state":
            key, value = data.get("key"), data.get("value")
            if key == "partition" and isinstance(value, dict):
                before = self.state
                for field in ("state", "tag", "operation", "locked"):
                    if field in value:
                        self.detail[field] = value[field]
                if value.get("operation") is None:
                    self.detail["progress"] = None
                if self.state == before and "operation" not in value:
                    return [], False
                operation = value.get("operation")
                return [f"state {textview.clean(self.state)}" + (f" ({textview.clean(operation)})" if operation else "")
                        + f" tag {textview.clean(self.detail.get('tag'))}"], False
            if key == "connected" and isinstance(value, dict):
                self.detail["connected"] = value.get("connected") is True
                return [("PCA connected, state " + textview.clean(self.detail.get("state"))) if self.detail["connected"]
                        else "PCA not answering: Connection Problem"], self.detail["connected"]
            if key == "reset":
                return [], True
            if isinstance(key, str) and key.startswith("system/"):
                name = key[len("system/"):]
                if value is None:
                    self.systems.pop(name, None)
                    return [f"system {textview.clean(name)} removed"], False
                if isinstance(value, dict):
                    self.systems[name] = value
                    return [_system_line(value)], False
            return [], False
        if kind == "progress":
            self.detail["progress"] = data
            return [f"progress {textview.format_progress(data, 20)}"], False
        if kind == "control":
            if data.get("scope") != self.id:
                return [], False
            self.detail["controller"] = data.get("holder")
            holder = data.get("holder")
            return [f"control: {textview.clean(holder) if holder else 'nobody'} ({textview.clean(data.get('reason'))})"], False
        if kind == "log":
            self.logs.append(data)
            return [f"log {textview.clean(data.get('level'))} {textview.clean(data.get('source'))}: "
                    f"{textview.clean(data.get('message'))}"], False
        if kind == "reload":
            return [], True
        return [], False

    def screen(self, color: bool = False) -> str:
        """The whole terminal picture: the partition, then its latest log events."""
        text = textview.format_partition(self.shown(), color=color)
        if self.logs:
            text += "\nlatest log events:\n" + textview.format_logs(list(self.logs), color=color)
        return text


def _system_line(s: dict[str, Any]) -> str:
    up = s.get("connected") is True
    state = textview.clean(s.get("state")) if up else "Connection Problem"
    raw = f" ({textview.clean(s.get('raw_state'))})" if up else ""
    comment = f" comment {textview.clean(s.get('comment'))}" if s.get("comment") else ""
    return f"system {textview.clean(s.get('id'))} {state}{raw} tag {textview.clean(s.get('tag'))}{comment}"


class Waiter:
    """
    Judges from the partition's records (C{state} events with key
    C{partition}: state, summary, level, stages, operation) when a command's
    C{--wait} is over, and whether it reached its goal:

      - configure --auto: the operation ended with every stage configured
        (the last stage's active state, QA_Active in the shipped sequence);
      - configure: the operation ended one stage further than it began;
      - start: ended in the recording state; stop: ended in an active state;
      - abort: no operation and no stage configured (the idle state).

    The command's reply is the record right after the PCA accepted.  Records
    already on the stream before it (published earlier) are stale: an
    operation counts as ended only once a record showing it running was
    seen, or after L{QUIET} seconds without one.
    """

    def __init__(self, command: str, auto: bool, reply: Any, started: float) -> None:
        self.command = command
        self.auto = auto
        self.record: dict[str, Any] = reply if isinstance(reply, dict) else {}
        self.start_level = self.record.get("level")
        self.immediate = self.record.get("operation") is None
        self.seen_running = False
        self.started = started
        self.last_error: str | None = None
        """The last warning or error logged for the partition meanwhile (the reason it ended)."""

    def update(self, record: Any) -> None:
        """A newer partition record."""
        if isinstance(record, dict):
            self.record = record
            if record.get("operation") is not None:
                self.seen_running = True

    def outcome(self, now: float) -> tuple[bool, str] | None:
        """None while waiting; C{(True, state)} at the goal; C{(False, why)} when ended elsewhere."""
        r = self.record
        state = textview.clean(r.get("state"))
        if self.command == "abort":
            return (True, state) if r.get("operation") is None and r.get("level") == 0 else None
        if not (self.immediate or self.seen_running or now - self.started >= QUIET):
            return None
        if r.get("operation") is not None:
            return None
        level, stages = r.get("level"), r.get("stages")
        if self.command == "configure":
            if self.auto:
                ok, goal = level == stages, f"every stage configured ({stages})"
            else:
                ok = self.immediate or (isinstance(level, int) and isinstance(self.start_level, int) and level > self.start_level)
                goal = "one more stage configured"
        elif self.command == "start":
            ok, goal = r.get("summary") == "Recording", "recording"
        else:
            ok, goal = r.get("summary") == "Active", "an active state"
        if ok:
            return True, state
        why = f"ended in {state} ({level} of {stages} stages configured), not {goal}"
        if self.last_error:
            why += f": {self.last_error}"
        return False, why


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
                    raise ClientError(EXIT_TIMEOUT, f"{partition} {ctx.args.command}: still "
                                      f"{textview.clean(waiter.record.get('state'))} after {ctx.wait_timeout:g} s") from None
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


def use_colour() -> bool:
    """Colour on a terminal, unless C{NO_COLOR} is set."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def cmd_watch(ctx: Context) -> int:
    """Follow a partition until Ctrl-C (exit 0) or C{--until} (exit 0) or its deadline (exit 5)."""
    args = ctx.args
    partition = args.partition
    deadline = time.monotonic() + ctx.wait_timeout if args.until else None
    tty = sys.stdout.isatty()
    stream = ctx.client.events(partition)
    try:
        view = LiveView(ctx.client.get(partition_path(partition)))
        stamp = lambda: time.strftime("%H:%M:%S")  # noqa: E731
        if tty:
            _draw(view)
        else:
            print(f"{stamp()} {textview.clean(partition)} state {textview.clean(view.state)} "
                  f"tag {textview.clean(view.detail.get('tag'))}", flush=True)
        drawn, dirty = time.monotonic(), False
        while True:
            if args.until and view.state == args.until:
                if tty:
                    _draw(view)
                return EXIT_OK
            limit = deadline
            if tty and dirty:
                limit = min(deadline if deadline is not None else float("inf"), drawn + REDRAW)
            try:
                event = stream.read(limit)
            except StreamTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ClientError(EXIT_TIMEOUT, f"{partition} is {view.state}, not {args.until}, "
                                      f"after {ctx.wait_timeout:g} s") from None
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
                    view.reload(ctx.client.get(partition_path(partition)))
                    lines.append(f"reloaded: state {textview.clean(view.state)}")
                if tty:
                    dirty = dirty or bool(lines)
                else:
                    for line in lines:
                        print(f"{stamp()} {textview.clean(partition)} {line}", flush=True)
            if tty and dirty and time.monotonic() - drawn >= REDRAW:
                _draw(view)
                drawn, dirty = time.monotonic(), False
    except KeyboardInterrupt:
        if tty:
            print()
        return EXIT_OK
    finally:
        stream.close()


def _draw(view: LiveView) -> None:
    sys.stdout.write("\x1b[H\x1b[2J" + view.screen(color=use_colour()) + f"\n{time.strftime('%H:%M:%S')}  Ctrl-C to quit\n")
    sys.stdout.flush()


__all__ = ["QUIET", "LiveView", "Waiter", "cmd_watch", "use_colour", "wait_for"]
