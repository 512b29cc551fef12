# -*- test-case-name: tests.test_textview -*-
"""
The ECA's API answers as terminal text, for the C{ecs} command line and the
SSH admin shell.

Pure functions from the API's dicts (the routes of L{ecs.web}) to text: no I/O,
no terminal queries.  Columns are as wide as their content (capped, long
cells cut with an ellipsis); colour only when asked (C{color=True}), and
always beside the state's text, never instead of it.

Everything that came from the network goes through L{clean} first: a
detector comment, a log message or a user name could carry terminal escape
sequences (clear the screen, set the window title, rewrite the scrollback)
or control characters; they are removed, never interpreted.  Missing or
mistyped fields are shown as C{-}, never raise: a newer server may send
more, an older one less.

Longer than most modules on purpose: every answer's text lives here, one
small function each, so the command line and the shell cannot drift apart.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

MAX_CELL = 60
"""Widest a table cell gets before it is cut."""

_ESCAPES = re.compile(
    r"""
    \x1b\[[0-?]*[ -/]*[@-~]                 # CSI ... final byte (colours, cursor moves, clear)
    | \x1b[\]PX^_].*?(?:\x07|\x1b\\|$)      # OSC, DCS, SOS, PM, APC up to BEL or ST
    | \x1b[@-Z\\-_]                         # other two-byte escapes
    | \x9b[0-?]*[ -/]*[@-~]                 # 8-bit CSI
    | [\x90\x9d\x98\x9e\x9f].*?(?:\x07|\x9c|$)  # 8-bit OSC, DCS, SOS, PM, APC
    """,
    re.VERBOSE | re.DOTALL,
)
# Bidirectional overrides and isolates reorder what follows them on screen.
_BIDI = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"))

_GREEN = ("Active", "QA_Active", "Recording", "Running", "running")
_RED = ("Idle", "Unconfigured", "Error", "Connection Problem", "disconnected", "error", "critical", "failed")
_COLOURS = {"red": "\x1b[31m", "yellow": "\x1b[33m", "green": "\x1b[32m"}
_RESET = "\x1b[0m"


def clean(value: Any) -> str:
    """
    C{value} as one line of harmless text: escape sequences removed, every
    other control character (newlines and tabs included) turned into a
    space, bidirectional overrides dropped.  C{None} is C{-}.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = _ESCAPES.sub("", str(value))
    text = text.translate(_BIDI)
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def display_width(text: str) -> int:
    """Columns C{text} takes on a terminal (wide East Asian characters 2, combining marks 0)."""
    width = 0
    for c in text:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return width


def _cut(text: str, limit: int) -> str:
    if display_width(text) <= limit:
        return text
    out, width = [], 0
    for c in text:
        w = display_width(c)
        if width + w > limit - 1:
            break
        out.append(c)
        width += w
    return "".join(out) + "…"


def state_colour(state: str) -> str | None:
    """C{"red"}, C{"yellow"} or C{"green"} as the original GUI showed C{state}; None for plain."""
    if state in _GREEN or state.endswith("_Active"):
        return "green"
    if state in _RED:
        return "red"
    if state.startswith("Configuring") or state.endswith("ing") or state in ("warn", "Configuring"):
        return "yellow"
    return None


def _paint(text: str, colour: str | None, color: bool) -> str:
    if not color or colour is None:
        return text
    return f"{_COLOURS[colour]}{text}{_RESET}"


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    color: bool = False,
    coloured: Sequence[int] = (),
    max_cell: int = MAX_CELL,
) -> str:
    """
    A plain table: a header line, then one line per row, columns two spaces
    apart and as wide as their widest cell.  Cells are L{clean}ed and cut at
    C{max_cell} columns; with C{color}, the columns whose index is in
    C{coloured} are painted by L{state_colour}.  No trailing spaces.
    """
    cells = [[_cut(clean(c), max_cell) for c in row] for row in rows]
    widths = [display_width(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], display_width(cell))
    lines = []
    for n, row in enumerate([list(headers), *cells]):
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - display_width(cell)) if i < len(row) - 1 else ""
            painted = _paint(cell, state_colour(cell), color and n > 0 and i in coloured)
            parts.append(painted + pad)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def format_time(when: Any) -> str:
    """Seconds since the epoch as local C{YYYY-MM-DD HH:MM:SS}; C{-} when not a number."""
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    except (OverflowError, OSError, ValueError):
        return "-"


def format_duration(seconds: Any) -> str:
    """C{3.2 s}, C{4 min 05 s}, C{2 h 03 min}; C{-} when not a number."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """C{[#########---------------------] 3/10}: C{done} clamped to 0..C{total}."""
    width = max(1, width)
    if total <= 0:
        return "[" + "-" * width + "] 0/0"
    done = min(max(done, 0), total)
    filled = done * width // total
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


def _get(row: Any, key: str) -> Any:
    return row.get(key) if isinstance(row, dict) else None


def _connected_text(value: Any) -> str:
    return "connected" if value is True else "disconnected"


def format_partitions(
    rows: list[dict[str, Any]],
    color: bool = False,
    alarms: list[dict[str, Any]] | None = None,
    now: float | None = None,
) -> str:
    """
    Rows of C{GET /api/partitions}: id, state, tag, controller, connected;
    with C{alarms} (C{GET /api/alarms}), an ALARMS column counting each
    partition's active alarms by severity, and a line for the ECS-wide ones.
    """
    if not rows:
        return "no partitions\n"
    headers = ["PARTITION", "STATE", "TAG", "CONTROLLER", "PCA"]
    body = [
        [_get(r, "id"), _shown_state(r), _get(r, "tag"), _get(r, "controller"), _connected_text(_get(r, "connected"))]
        for r in rows
    ]
    if alarms is None:
        return table(headers, body, color, coloured=(1, 4))
    when = time.time() if now is None else now
    for row, record in zip(body, rows, strict=True):
        mine = [a for a in alarms if isinstance(a, dict) and a.get("partition") == _get(record, "id")]
        row.append(alarm_counts(mine, when) or "none")
    text = table([*headers, "ALARMS"], body, color, coloured=(1, 4))
    known = {_get(r, "id") for r in rows}
    wide = [a for a in alarms if isinstance(a, dict) and a.get("partition") not in known]
    counts = alarm_counts(wide, when)
    if counts:
        text += f"other alarms (ECS-wide, or of no partition above): {counts} (see ecs alarms)\n"
    return text


def _shown_state(record: Any) -> Any:
    """The state, or Connection Problem when not connected (never a stale state)."""
    if _get(record, "connected") is False:
        return "Connection Problem"
    return _get(record, "state")


def format_progress(progress: Any, width: int = 30) -> str:
    """C{stage Detectors [####------] 2/5} from a progress event or detail; empty if none."""
    if not isinstance(progress, dict):
        return ""
    ready, total = progress.get("ready"), progress.get("total")
    if not isinstance(ready, int) or not isinstance(total, int) or isinstance(ready, bool) or isinstance(total, bool):
        return ""
    return f"stage {clean(progress.get('stage'))} {progress_bar(ready, total, width)}"


def format_partition(
    detail: dict[str, Any],
    color: bool = False,
    alarms: list[dict[str, Any]] | None = None,
    now: float | None = None,
) -> str:
    """
    C{GET /api/partitions/{id}}: a header (state; with C{alarms}, what is
    wrong and what to press (L{alarm_summary}); tag, controller, PCA
    connection, operation, allowed commands, progress), then the systems.
    A system (or the whole partition) that is not connected is shown as
    C{Connection Problem} with no raw state: its last known state is stale.
    """
    connected = _get(detail, "connected") is True
    state = clean(_shown_state(detail))
    lines = [f"Partition {clean(_get(detail, 'id'))}: {_paint(state, state_colour(state), color)}"]
    if alarms is not None:
        lines += alarm_summary(alarms, time.time() if now is None else now, color)
    lines.append(
        f"  tag: {clean(_get(detail, 'tag'))}   controller: {clean(_get(detail, 'controller'))}   "
        f"PCA: {_connected_text(_get(detail, 'connected'))}"
        + ("   LOCKED (management operation)" if _get(detail, "locked") else "")
    )
    if not connected:
        lines.append("  the PCA does not answer: system states below are unknown")
    operation = _get(detail, "operation")
    if operation:
        lines.append(f"  operation: {clean(operation)}")
    progress = format_progress(_get(detail, "progress"))
    if progress:
        lines.append(f"  progress: {progress}")
    allowed = _get(detail, "allowed")
    if isinstance(allowed, list):
        lines.append(f"  allowed: {', '.join(clean(a) for a in allowed) or 'nothing'}")
    systems = _get(detail, "systems")
    if not isinstance(systems, list) or not systems:
        return "\n".join(lines) + "\n  no systems\n"
    return "\n".join(lines) + "\n\n" + format_systems(systems, connected, color)


def format_systems(systems: list[dict[str, Any]], pca_connected: bool = True, color: bool = False) -> str:
    """The systems table of a partition (see L{format_partition})."""
    body = []
    for s in systems:
        up = pca_connected and _get(s, "connected") is True
        body.append(
            [
                _get(s, "id"),
                _get(s, "kind"),
                _get(s, "state") if up else "Connection Problem",
                _get(s, "raw_state") if up else None,
                _get(s, "tag"),
                _get(s, "comment") or None,
                _connected_text(up),
            ]
        )
    return table(["SYSTEM", "KIND", "STATE", "RAW STATE", "TAG", "COMMENT", "CONNECTION"], body, color, coloured=(2, 6))


def format_logs(rows: list[dict[str, Any]], color: bool = False) -> str:
    """Log events (C{GET /api/logs} or SSE C{log} data), oldest first: time, level, partition, source, message."""
    if not rows:
        return "no log events\n"
    ordered = sorted(rows, key=lambda r: (_number(_get(r, "time")), _number(_get(r, "id"))))
    body = [
        [format_time(_get(r, "time")), _get(r, "level"), _get(r, "partition"), _get(r, "source"), _get(r, "message")]
        for r in ordered
    ]
    return table(["TIME", "LEVEL", "PARTITION", "SOURCE", "MESSAGE"], body, color, coloured=(1,), max_cell=200)


def format_log_line(row: dict[str, Any]) -> str:
    """One log event as one line (for C{--follow})."""
    return "  ".join(
        [
            format_time(_get(row, "time")),
            clean(_get(row, "level")),
            clean(_get(row, "partition")),
            clean(_get(row, "source")),
            clean(_get(row, "message")),
        ]
    )


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def format_runs(rows: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/runs}: number, partition, type, tag, operator, start, end, duration, outcome, comments."""
    if not rows:
        return "no runs\n"
    body = []
    for r in rows:
        started, ended = _get(r, "started"), _get(r, "ended")
        length = _number(ended) - _number(started) if ended is not None and started is not None else None
        body.append(
            [
                _get(r, "number"),
                _get(r, "partition"),
                _get(r, "type"),
                _get(r, "tag"),
                _get(r, "operator"),
                format_time(started),
                format_time(ended) if ended is not None else "-",
                format_duration(length),
                _get(r, "outcome") or "running",
                " / ".join(str(c) for c in (_get(r, "start_comment"), _get(r, "end_comment")) if c),
            ]
        )
    return table(
        ["RUN", "PARTITION", "TYPE", "TAG", "OPERATOR", "STARTED", "ENDED", "DURATION", "OUTCOME", "COMMENTS"],
        body, color, coloured=(8,),
    )


def format_agents(rows: list[dict[str, Any]], color: bool = False) -> str:
    """
    C{GET /api/agents}: agent, kind, host, launcher, registered, process
    (running with pid, or exited with its code), supervision and detail.
    """
    if not rows:
        return "no agents\n"
    body = []
    for r in rows:
        status = _get(r, "status") or {}
        supervision = _get(r, "supervision") or {}
        running = _get(status, "running")
        if running is True:
            process = f"running (pid {clean(_get(status, 'pid'))})"
        elif running is False:
            code = _get(status, "exit_code")
            process = "stopped" if code is None else f"exited ({clean(code)})"
        else:
            process = None
        sup_state = _get(supervision, "state")
        restarts = _get(supervision, "restarts")
        if sup_state is not None and restarts:
            sup_state = f"{clean(sup_state)} ({clean(restarts)} restarts)"
        notes = [
            str(n)
            for n in (_get(status, "detail"), _get(supervision, "reason"))
            if n and n not in ("running", sup_state)
        ]
        body.append(
            [
                _get(r, "agent"),
                _get(r, "kind"),
                _get(r, "host"),
                _get(r, "launcher"),
                _get(r, "registered"),
                process,
                sup_state,
                "; ".join(notes) or None,
            ]
        )
    return table(
        ["AGENT", "KIND", "HOST", "LAUNCHER", "REGISTERED", "PROCESS", "SUPERVISION", "DETAIL"],
        body,
        color,
        coloured=(5,),
    )


def format_detectors(detectors: list[dict[str, Any]], unassigned: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/systems} detectors (id, type, partition) with the live states of the unassigned ones."""
    if not detectors:
        return "no detectors\n"
    live = {_get(u, "id"): u for u in unassigned}
    body = []
    for d in sorted(detectors, key=lambda d: clean(_get(d, "id"))):
        u = live.get(_get(d, "id"))
        body.append(
            [
                _get(d, "id"),
                _get(d, "type"),
                _get(d, "partition") or "(unassigned)",
                _get(u, "state") if u is not None else None,
            ]
        )
    return table(["DETECTOR", "TYPE", "PARTITION", "STATE"], body, color, coloured=(3,))


def _config_id(row: Any) -> Any:
    """A configuration's id: C{config_id} in the ECA's answers (C{id} in older ones)."""
    found = _get(row, "config_id")
    return found if found is not None else _get(row, "id")


def format_configs(rows: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/configs}: id, system, latest version."""
    if not rows:
        return "no configurations\n"
    body = [
        [_config_id(r), _get(r, "system"), _get(r, "version")] for r in sorted(rows, key=lambda r: clean(_config_id(r)))
    ]
    return table(["CONFIGURATION", "SYSTEM", "VERSION"], body, color)


def format_config(config: dict[str, Any]) -> str:
    """C{GET /api/configs/<id>}: the header, the versions, the parameters as indented JSON (cleaned)."""
    versions = _get(config, "versions")
    shown = ", ".join(clean(v) for v in versions) if isinstance(versions, list) else "-"
    parameters = _get(config, "parameters")
    text = json.dumps(parameters if parameters is not None else {}, indent=2, sort_keys=True, default=str)
    head = (f"Configuration {clean(_config_id(config))} of {clean(_get(config, 'system'))}, "
            f"version {clean(_get(config, 'version'))}")
    return f"{head} (versions: {shown})\n" + "\n".join(clean(line) for line in text.splitlines()) + "\n"


def _flatten(value: Any, prefix: str, into: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key in value:
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), into)
    else:
        into[prefix or "(all)"] = json.dumps(value, sort_keys=True, default=str)


def parameter_changes(old: Any, new: Any) -> list[tuple[str, str | None, str | None]]:
    """The changed leaves of two parameter trees: C{(dotted key, old JSON or None, new JSON or None)}, sorted."""
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    _flatten(old if old is not None else {}, "", before)
    _flatten(new if new is not None else {}, "", after)
    keys = sorted(set(before) | set(after))
    return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]


def format_diff(old: Any, new: Any, old_name: str = "old", new_name: str = "new") -> str:
    """What changes from C{old} to C{new} parameters: C{- key: value} / C{+ key: value} lines, or that nothing does."""
    changes = parameter_changes(old, new)
    if not changes:
        return f"no differences between {clean(old_name)} and {clean(new_name)}\n"
    lines = [f"--- {clean(old_name)}", f"+++ {clean(new_name)}"]
    for key, before, after in changes:
        if before is not None:
            lines.append(f"- {clean(key)}: {clean(before)}")
        if after is not None:
            lines.append(f"+ {clean(key)}: {clean(after)}")
    return "\n".join(lines) + "\n"


def format_tags(rows: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/tags}: name, its configurations (system=id), and with a partition whether it fits."""
    if not rows:
        return "no tags\n"
    fits = any("compatible" in r for r in rows if isinstance(r, dict))
    body = []
    for r in rows:
        configs = _get(r, "configs")
        pairs = (
            ", ".join(f"{clean(k)}={clean(v)}" for k, v in sorted(configs.items()))
            if isinstance(configs, dict)
            else "-"
        )
        row = [_get(r, "name"), pairs]
        if fits:
            missing, extra = _get(r, "missing") or [], _get(r, "extra") or []
            note = (
                "yes"
                if _get(r, "compatible")
                else "; ".join(
                    ([f"missing {', '.join(map(clean, missing))}"] if missing else [])
                    + ([f"extra {', '.join(map(clean, extra))}"] if extra else [])
                )
                or "no"
            )
            row.append(note)
        body.append(row)
    return table(["TAG", "CONFIGURATIONS"] + (["FITS"] if fits else []), body, color, max_cell=120)


def format_tag(tag: dict[str, Any]) -> str:
    """C{GET /api/tags/<name>}: one line per system."""
    configs = _get(tag, "configs")
    rows = sorted(configs.items()) if isinstance(configs, dict) else []
    return f"Tag {clean(_get(tag, 'name'))}\n" + table(["SYSTEM", "CONFIGURATION"], rows)


def format_users(rows: list[dict[str, Any]], color: bool = False) -> str:
    """C{GET /api/users}: name and roles."""
    if not rows:
        return "no users\n"
    body = [[_get(r, "name"), ", ".join(clean(x) for x in _get(r, "roles") or [])] for r in rows]
    return table(["USER", "ROLES"], body, color)


# -- alarms ------------------------------------------------------------------------------

SEVERITIES = ("critical", "error", "warning")
"""The alarm severities, worst first."""
SUMMARY_LINES = 3
"""How many of the worst alarms L{alarm_summary} names."""


def _severity_rank(alarm: Any) -> int:
    severity = _get(alarm, "severity")
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _worst_first(alarms: Iterable[Any]) -> list[dict[str, Any]]:
    """Dict alarms, worst severity first, then the newest first."""
    rows = [a for a in alarms if isinstance(a, dict)]
    return sorted(rows, key=lambda a: (_severity_rank(a), -_number(a.get("raised_at")), _number(a.get("id"))))


def is_shelved(alarm: Any, now: float) -> bool:
    """Whether C{alarm} is shelved at C{now} (its C{shelved_until} is still ahead)."""
    until = _get(alarm, "shelved_until")
    return isinstance(until, (int, float)) and not isinstance(until, bool) and until > now


def is_active(alarm: Any) -> bool:
    """Active as the API means it: not cleared, or cleared but not acknowledged."""
    return _get(alarm, "cleared_at") is None or _get(alarm, "acknowledged_by") is None


def format_ago(when: Any, now: float) -> str:
    """C{12 s ago}, C{5 min ago}, C{3 h ago}, C{2 d ago} (C{just now} for a moment ahead); C{-} when not a number."""
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        return "-"
    seconds = now - when
    if seconds < 1:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def alarm_state(alarm: Any, now: float) -> str:
    """
    An alarm's state in words: C{shelved until T by X (reason)},
    C{active}, C{acknowledged by X}, C{cleared-unacknowledged} or
    C{cleared, acknowledged by X}.
    """
    if is_shelved(alarm, now):
        reason = _get(alarm, "shelve_reason")
        return (
            f"shelved until {format_time(_get(alarm, 'shelved_until'))} by {clean(_get(alarm, 'shelved_by'))}"
            + (f" ({clean(reason)})" if reason else "")
        )
    acknowledged = _get(alarm, "acknowledged_by")
    if _get(alarm, "cleared_at") is None:
        return "active" if acknowledged is None else f"acknowledged by {clean(acknowledged)}"
    return "cleared-unacknowledged" if acknowledged is None else f"cleared, acknowledged by {clean(acknowledged)}"


def alarm_counts(alarms: Iterable[Any], now: float) -> str:
    """C{1 critical, 2 warning} for the alarms not shelved at C{now}, C{(+1 shelved)} after; empty for none."""
    shown = [a for a in alarms if isinstance(a, dict)]
    shelved = sum(1 for a in shown if is_shelved(a, now))
    counts: dict[str, int] = {}
    for a in shown:
        if not is_shelved(a, now):
            severity = str(a.get("severity")) if a.get("severity") in SEVERITIES else "other"
            counts[severity] = counts.get(severity, 0) + 1
    text = ", ".join(f"{counts[s]} {s}" for s in (*SEVERITIES, "other") if s in counts)
    if shelved:
        text += (" " if text else "") + f"(+{shelved} shelved)"
    return text


def _alarm_line(alarm: dict[str, Any], now: float, color: bool) -> str:
    severity = clean(alarm.get("severity"))
    action = alarm.get("action")
    line = f"{_paint(severity.upper(), state_colour(severity), color)} {clean(alarm.get('source'))}: "
    line += clean(alarm.get("text")) + (f" -> {clean(action)}" if action else "")
    if alarm.get("cleared_at") is not None and alarm.get("acknowledged_by") is None:
        cleared = format_ago(alarm.get("cleared_at"), now)
        line += f" (cleared {cleared}: acknowledge with ecs alarms ack {clean(alarm.get('id'))})"
    return line


def alarm_summary(alarms: Iterable[Any], now: float, color: bool = False, most: int = SUMMARY_LINES) -> list[str]:
    """
    The lines under a partition's state: C{alarms: 1 error, 1 warning},
    then the C{most} worst alarms not shelved, each with its severity in
    words, its source, what is wrong and (after C{->}) what clears it.
    """
    rows = _worst_first(a for a in alarms if is_active(a))
    counts = alarm_counts(rows, now)
    if not counts:
        return ["  alarms: none"]
    lines = [f"  alarms: {counts}"]
    shown = [a for a in rows if not is_shelved(a, now)]
    lines += [f"    {_alarm_line(a, now, color)}" for a in shown[:most]]
    if len(shown) > most:
        lines.append(f"    ... and {len(shown) - most} more (see ecs alarms)")
    return lines


def format_alarms(rows: list[dict[str, Any]], now: float, color: bool = False, history: bool = False) -> str:
    """
    C{GET /api/alarms}, worst first: id, severity, partition, source, what
    is wrong, what clears it, when raised (how long ago) and the state in
    words (L{alarm_state}).  The severity column is painted with C{color}.
    """
    ordered = _worst_first(rows)
    if not ordered:
        return "no alarms\n" if history else "no active alarms\n"
    body = [
        [
            a.get("id"),
            a.get("severity"),
            a.get("partition"),
            a.get("source"),
            a.get("text"),
            a.get("action"),
            format_ago(a.get("raised_at"), now),
            alarm_state(a, now),
        ]
        for a in ordered
    ]
    return table(
        ["ID", "SEVERITY", "PARTITION", "SOURCE", "TEXT", "ACTION", "RAISED", "STATE"],
        body,
        color,
        coloured=(1,),
        max_cell=80,
    )


def format_alarm(alarm: Any, now: float) -> str:
    """One alarm on one line (the answer to ack and shelve): id, severity, source, text, state."""
    return (
        f"alarm {clean(_get(alarm, 'id'))} ({clean(_get(alarm, 'severity'))}, {clean(_get(alarm, 'source'))}): "
        f"{clean(_get(alarm, 'text'))}; {alarm_state(alarm, now)}"
    )


def format_alarm_event(alarm: Any, now: float) -> str:
    """An C{alarm} event of the stream as one line: its change, severity, source, text and action."""
    action = _get(alarm, "action")
    return (
        f"alarm {clean(_get(alarm, 'change'))}: {clean(_get(alarm, 'id'))} {clean(_get(alarm, 'severity'))} "
        f"{clean(_get(alarm, 'source'))}: {clean(_get(alarm, 'text'))}"
        + (f" -> {clean(action)}" if action else "")
        + f" ({alarm_state(alarm, now)})"
    )


__all__ = [
    "SEVERITIES",
    "alarm_counts",
    "alarm_state",
    "alarm_summary",
    "clean",
    "display_width",
    "format_agents",
    "format_ago",
    "format_alarm",
    "format_alarm_event",
    "format_alarms",
    "format_config",
    "format_configs",
    "format_detectors",
    "format_diff",
    "format_duration",
    "format_log_line",
    "format_logs",
    "format_partition",
    "format_partitions",
    "format_progress",
    "format_runs",
    "format_systems",
    "format_tag",
    "format_tags",
    "format_time",
    "format_users",
    "is_active",
    "is_shelved",
    "parameter_changes",
    "progress_bar",
    "state_colour",
    "table",
]
