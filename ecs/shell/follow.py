# -*- test-case-name: tests.test_shell -*-
"""
The shell's way to follow the ECA's events (L{ecs.client.commands.Follow}):
C{--wait} of configure/start/stop/abort, C{watch} and C{logs --follow},
from L{IControlCenter.subscribe} instead of the HTTP event stream.

The judgement is the command line's (L{ecs.client.following}: L{Waiter},
L{LiveView}); what differs is the listening: L{EventQueue} subscribes
before the command is sent (so nothing is missed), hands events over on
the next turn of the reactor (never inside the center's emit), and waits
with the injected clock.  C{watch} and C{logs --follow} end at C{--timeout}
(default L{DEFAULT_WAIT} s) or with Ctrl-C (L{EventQueue.interrupt}), as a
shell session must not be held for ever.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ecs import textview
from ecs.client import sequences
from ecs.client.commands import CommandError, Run
from ecs.client.following import QUIET, LiveView, Waiter
from ecs.client.operate import active_alarms
from ecs.control import IControlCenter
from ecs.exits import EXIT_OK, EXIT_REFUSED, EXIT_TIMEOUT

DEFAULT_WAIT = 300.0
"""Seconds for --wait, watch and logs --follow without --timeout (as on the command line)."""
MAX_QUEUED = 10_000

_INTERRUPTED: tuple[str, dict[str, Any]] = ("interrupted", {})
_LOST: tuple[str, dict[str, Any]] = ("reload", {})


class EventQueue:
    """The center's events for one partition (or all), queued until read."""

    def __init__(self, center: IControlCenter, clock: IReactorTime, partition: str | None) -> None:
        self.clock = clock
        self.events: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self.interrupted = False
        self._waiting: defer.Deferred[tuple[str, dict[str, Any]] | None] | None = None
        self._timer: IDelayedCall | None = None
        self._delivery: IDelayedCall | None = None
        self._unsubscribe: Callable[[], None] | None = center.subscribe(self._got, partition)

    def _got(self, event_id: int, kind: str, data: dict[str, Any]) -> None:
        if len(self.events) >= MAX_QUEUED:
            self.events.clear()
            self.events.append(_LOST)  # too far behind: start again from a fresh picture
        else:
            self.events.append((kind, data))
        self._deliver_later()

    def _deliver_later(self) -> None:
        if self._waiting is not None and self._delivery is None:
            self._delivery = self.clock.callLater(0, self._deliver)

    def _deliver(self) -> None:
        self._delivery = None
        if self._waiting is None or not self.events:
            return
        waiting, self._waiting = self._waiting, None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waiting.callback(self.events.popleft())

    def _expired(self) -> None:
        self._timer = None
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.callback(None)

    def next(self, seconds: float) -> defer.Deferred[tuple[str, dict[str, Any]] | None]:
        """The next C{(type, data)}, or None when C{seconds} pass first."""
        if self.events:
            return defer.succeed(self.events.popleft())
        self._waiting = defer.Deferred()
        self._timer = self.clock.callLater(max(seconds, 0.0), self._expired)
        return self._waiting

    def interrupt(self) -> None:
        """Ctrl-C: the follower stops at its next event."""
        self.interrupted = True
        self.events.appendleft(_INTERRUPTED)
        self._deliver_later()

    def close(self) -> None:
        """Unsubscribe and cancel every timer."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for call in (self._timer, self._delivery):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._delivery = None
        self._waiting = None


class ShellFollow:
    """L{ecs.client.commands.Follow} over the center's events; C{queues} are those open (for Ctrl-C)."""

    def __init__(self, center: IControlCenter, clock: IReactorTime) -> None:
        self.center = center
        self.clock = clock
        self.queues: set[EventQueue] = set()

    def _open(self, partition: str | None) -> EventQueue:
        queue = EventQueue(self.center, self.clock, partition)
        self.queues.add(queue)
        return queue

    def _close(self, queue: EventQueue) -> None:
        queue.close()
        self.queues.discard(queue)

    def interrupt(self) -> None:
        """Ctrl-C in the interactive shell: stop following."""
        for queue in list(self.queues):
            queue.interrupt()

    @staticmethod
    def seconds(args: argparse.Namespace) -> float:
        """The --timeout of the command, else L{DEFAULT_WAIT}."""
        given = getattr(args, "api_timeout", None)
        return float(given) if given is not None else DEFAULT_WAIT

    async def command_wait(self, run: Run, partition: str, command: str, body: dict[str, Any]) -> int:
        """Subscribe, send the command, then judge its records (L{Waiter}) until the goal or --timeout."""
        wait = self.seconds(run.args)
        queue = self._open(partition)
        try:
            reply = await run.api.command(partition, command, body)
            now = float(self.clock.seconds())
            deadline = now + wait
            waiter = Waiter(command, bool(body.get("auto")), reply, now)
            shown = textview.clean(waiter.record.get("state"))
            run.out.note(f"{partition}: {shown}")
            while True:
                now = float(self.clock.seconds())
                result = waiter.outcome(now)
                if result is not None:
                    ok, text = result
                    break
                if now >= deadline:
                    raise CommandError(EXIT_TIMEOUT, f"{partition} {command}: still {shown} after {wait:g} s")
                event = await queue.next(min(deadline - now, QUIET))
                if event is None:
                    continue
                kind, data = event
                if queue.interrupted:
                    raise CommandError(130, f"{command} {partition}: interrupted; the operation goes on (see status)")
                if kind == "state" and data.get("key") == "partition":
                    waiter.update(data.get("value"))
                    state = textview.clean(waiter.record.get("state"))
                    if state != shown:
                        shown = state
                        run.out.note(f"{partition}: {shown}")
                elif kind == "log" and data.get("level") in ("warn", "error", "critical"):
                    waiter.last_error = textview.clean(data.get("message"))
                elif kind == "alarm":
                    line = waiter.alarm(data)
                    if line is not None:
                        run.out.note(f"{partition}: {line}")
        finally:
            self._close(queue)
        detail = await run.api.partition(partition)
        if not ok:
            raise CommandError(EXIT_REFUSED, f"{partition} {text}", detail)
        run.out.result(f"{partition}: {text}", detail)
        return EXIT_OK

    async def sequence_wait(self, run: Run, partition: str, name: str) -> int:
        """Subscribe, start the sequence, then follow its C{sequence} events to its end or --timeout."""
        wait = self.seconds(run.args)
        queue = self._open(partition)
        try:
            status = await run.api.run_sequence(name, partition)
            deadline = float(self.clock.seconds()) + wait
            shown = sequences.progress_line(status)
            run.out.note(f"{partition}: {shown}")
            while (result := sequences.outcome(status)) is None:
                left = deadline - float(self.clock.seconds())
                if left <= 0:
                    raise CommandError(EXIT_TIMEOUT, f"{partition}: sequence still {shown} after {wait:g} s")
                event = await queue.next(min(left, QUIET))
                if queue.interrupted:
                    raise CommandError(130, f"{partition}: interrupted; the sequence goes on (sequence status)")
                if event is None:
                    continue
                kind, data = event
                if kind == "sequence" and isinstance(data, dict) and data.get("sequence") == name:
                    status = data
                    line = sequences.progress_line(status)
                    if line != shown:
                        shown = line
                        run.out.note(f"{partition}: {shown}")
        finally:
            self._close(queue)
        ok, text = result
        if not ok:
            raise CommandError(EXIT_REFUSED, f"{partition}: sequence {text}", status)
        run.out.result(f"{partition}: sequence {text}", status)
        return EXIT_OK

    async def watch(self, run: Run, partition: str, until: str | None) -> int:
        """One line per change (L{LiveView}) until C{until}, --timeout or Ctrl-C."""
        wait = self.seconds(run.args)
        queue = self._open(partition)
        try:
            view = LiveView(
                await run.api.partition(partition),
                await active_alarms(run, partition),
                now=lambda: float(self.clock.seconds()),
            )
            deadline = float(self.clock.seconds()) + wait
            run.out.result(
                f"{self._stamp()} {partition} state {textview.clean(view.state)} "
                f"tag {textview.clean(view.detail.get('tag'))}",
                view.shown(),
            )
            for line in view.alarm_lines():
                run.out.result(f"{self._stamp()} {partition} {line.strip()}", {"alarms": view.alarms_shown()})
            while True:
                if until and view.state == until:
                    return EXIT_OK
                left = deadline - float(self.clock.seconds())
                if left <= 0:
                    if until:
                        raise CommandError(EXIT_TIMEOUT, f"{partition} is {view.state}, not {until}, after {wait:g} s")
                    run.out.note(f"watched {partition} for {wait:g} s (--timeout for longer)")
                    return EXIT_OK
                event = await queue.next(left)
                if event is None:
                    continue
                if queue.interrupted:
                    return EXIT_OK
                kind, data = event
                lines, refetch = view.apply(kind, data)
                if refetch:
                    view.reload(await run.api.partition(partition), await active_alarms(run, partition))
                    lines.append(f"reloaded: state {textview.clean(view.state)}")
                for line in lines:
                    run.out.result(f"{self._stamp()} {partition} {line}", {"type": kind, "data": data})
        finally:
            self._close(queue)

    async def logs_follow(self, run: Run, since: float | None) -> int:
        """The stored events, then the live ones until --timeout or Ctrl-C."""
        args = run.args
        partition = args.partition or args.partition_flag
        wait = self.seconds(run.args)
        queue = self._open(partition)
        try:
            rows = await run.api.logs(partition, args.level, since, args.grep, args.limit)
            run.out.result(textview.format_logs(rows, color=run.color), rows)
            levels = ("debug", "info", "warn", "error", "critical")
            minimum = levels.index(args.level) if args.level in levels else 0
            deadline = float(self.clock.seconds()) + wait
            while (left := deadline - float(self.clock.seconds())) > 0:
                event = await queue.next(left)
                if event is None:
                    continue
                if queue.interrupted:
                    return EXIT_OK
                kind, data = event
                if kind != "log" or (data.get("level") in levels and levels.index(data["level"]) < minimum):
                    continue
                if args.grep and args.grep.casefold() not in str(data.get("message", "")).casefold():
                    continue
                run.out.result(textview.format_log_line(data), data)
            return EXIT_OK
        finally:
            self._close(queue)

    def _stamp(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(float(self.clock.seconds())))


__all__ = ["DEFAULT_WAIT", "EventQueue", "ShellFollow"]
