# -*- test-case-name: tests.test_client_parts -*-
"""
Following a partition from its events, without any I/O: L{LiveView} folds
events into the partition's detail and says what changed (C{ecs watch});
L{Waiter} judges when a command's C{--wait} is over and whether it reached
its goal.  Shared by the command line (L{ecs.client.watch}, over the event
stream) and the SSH shell (L{ecs.shell.follow}, over the ECA's event log).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable
from typing import Any

from ecs import textview

LOG_LINES = 8
QUIET = 2.0
"""Seconds after which --wait judges the latest record even if none showed its operation running."""


class LiveView:
    """
    The detail of one partition (C{GET /api/partitions/{id}}) and its active
    alarms (C{GET /api/alarms?partition=P}) kept current by events.
    C{alarms} is None while the ECA has given none (an older ECA without
    alarms): the screen then shows no alarm line rather than a false "none".
    """

    def __init__(
        self,
        detail: dict[str, Any],
        alarms: Iterable[Any] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.now = now
        self.alarms: dict[Any, dict[str, Any]] | None = None
        self.reload(detail, alarms)
        self.logs: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_LINES)

    def set_alarms(self, alarms: Iterable[Any] | None) -> None:
        """Start the alarms again from a fresh list (None: the ECA has no alarms)."""
        if alarms is None:
            self.alarms = None
            return
        self.alarms = {}
        for alarm in alarms:
            if isinstance(alarm, dict) and textview.is_active(alarm):
                self.alarms[alarm.get("id")] = alarm

    def _alarm(self, data: dict[str, Any]) -> tuple[list[str], bool]:
        """An C{alarm} event: the partition's (or an ECS-wide one) is kept while active."""
        if data.get("partition") not in (self.id, None):
            return [], False
        if self.alarms is None:
            self.alarms = {}
        alarm = {k: v for k, v in data.items() if k != "change"}
        if textview.is_active(alarm):
            self.alarms[alarm.get("id")] = alarm
        else:
            self.alarms.pop(alarm.get("id"), None)
        return [textview.format_alarm_event(data, self.now())], False

    def reload(self, detail: dict[str, Any], alarms: Iterable[Any] | None = None) -> None:
        """Start again from a fresh detail (and, when given, fresh alarms)."""
        if alarms is not None:
            self.set_alarms(alarms)
        self.detail = dict(detail)
        self.id = str(detail.get("id"))
        raw = detail.get("systems")
        systems: list[Any] = raw if isinstance(raw, list) else []
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
                return [
                    f"state {textview.clean(self.state)}"
                    + (f" ({textview.clean(operation)})" if operation else "")
                    + f" tag {textview.clean(self.detail.get('tag'))}"
                ], False
            if key == "connected" and isinstance(value, dict):
                self.detail["connected"] = value.get("connected") is True
                return [
                    ("PCA connected, state " + textview.clean(self.detail.get("state")))
                    if self.detail["connected"]
                    else "PCA not answering: Connection Problem"
                ], self.detail["connected"]
            if key == "reset":
                return [], True
            if isinstance(key, str) and key.startswith("system/"):
                name = key[len("system/") :]
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
            return [
                f"control: {textview.clean(holder) if holder else 'nobody'} ({textview.clean(data.get('reason'))})"
            ], False
        if kind == "log":
            self.logs.append(data)
            return [
                f"log {textview.clean(data.get('level'))} {textview.clean(data.get('source'))}: "
                f"{textview.clean(data.get('message'))}"
            ], False
        if kind == "alarm":
            return self._alarm(data)
        if kind == "reload":
            return [], True
        return [], False

    def alarms_shown(self) -> list[dict[str, Any]]:
        """The active alarms kept (none while the ECA has given none)."""
        return list((self.alarms or {}).values())

    def alarm_lines(self) -> list[str]:
        """What is wrong and what to press (L{textview.alarm_summary}); nothing while the ECA has no alarms."""
        if self.alarms is None:
            return []
        return textview.alarm_summary(self.alarms_shown(), self.now())

    def screen(self, color: bool = False) -> str:
        """The whole terminal picture: the partition with its alarms, then its latest log events."""
        alarms = None if self.alarms is None else self.alarms_shown()
        text = textview.format_partition(self.shown(), color=color, alarms=alarms, now=self.now())
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

    def alarm(self, data: Any) -> str | None:
        """
        An C{alarm} event while waiting: a raised one becomes the reason
        given if the command ends elsewhere (what is wrong, and what clears
        it); the line to show, or None for the other changes.
        """
        if not isinstance(data, dict) or data.get("change") != "raised":
            return None
        action = data.get("action")
        self.last_error = textview.clean(data.get("text")) + (f" -> {textview.clean(action)}" if action else "")
        return f"alarm: {textview.clean(data.get('severity'))} {textview.clean(data.get('source'))}: {self.last_error}"

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
                ok = self.immediate or (
                    isinstance(level, int) and isinstance(self.start_level, int) and level > self.start_level
                )
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


__all__ = ["LOG_LINES", "QUIET", "LiveView", "Waiter"]
