# -*- test-case-name: tests.test_launch_ssh -*-
"""
The commands the C{ssh} launcher runs on an agent's host.

Each is C{sh -c '<fixed script>' <name> <argument>...}: the script text is a
constant of this module and every value (ids, paths, the agent's arguments)
reaches it only as a positional parameter, each C{shlex.quote}d, so no
caller value is ever parsed by a shell.  The remote host needs a POSIX
C{sh}, C{setsid}, C{tail} and Linux's C{/proc}; the user's login shell only
has to understand single quotes (any Bourne-style shell).

Replies are lines starting with C{ECS-}, parsed by L{parse_started} and
friends.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from typing import NamedTuple

from ecs.launch import LaunchError

# Parse /proc/$pid/stat after the last ") ": $1 state, $3 pgid, ${20} start time.
_READ_STAT = 'r=${s##*) }; set -- $r; st=$1; pg=$3; start=${20}'

START = f"""exec 2>&1
wd=$1 name=$2 twistd=$3 n=$4
shift 4
while [ "$n" -gt 0 ]; do export "$1"; shift; n=$((n - 1)); done
command -v "$twistd" >/dev/null 2>&1 || {{ echo "ECS-ERROR cannot run $twistd: not found"; exit 3; }}
command -v setsid >/dev/null 2>&1 || {{ echo "ECS-ERROR setsid is missing"; exit 3; }}
mkdir -p "$wd/logs" || {{ echo "ECS-ERROR cannot create $wd/logs"; exit 3; }}
log=$wd/logs/$name.log
setsid "$twistd" "$@" </dev/null >>"$log" 2>&1 &
pid=$!
trap '' PIPE
ok=
i=0
while [ $i -lt 250 ]; do
  read -r s 2>/dev/null </proc/$pid/stat || break
  {_READ_STAT}
  if [ "$pg" = "$pid" ] || [ "$st" = Z ]; then ok=1; break; fi
  i=$((i + 1)); sleep 0.02
done
if [ -z "$ok" ] || [ "$st" = Z ]; then
  [ -n "$ok" ] || kill -s KILL "$pid" 2>/dev/null
  echo "ECS-ERROR the agent did not start, end of $log:"; tail -n 20 "$log"; exit 4
fi
printf '%s %s\\n' "$pid" "$start" >"$wd/$name.pid"
echo "ECS-STARTED $pid $start $log"
read -r ack || ack=
if [ "$ack" != ok ]; then
  kill -s KILL -- "-$pid" 2>/dev/null; rm -f "$wd/$name.pid"; echo "ECS-ABANDONED"; exit 5
fi
"""
"""Start the agent detached, as leader of its own group; print its pid; wait for C{ok} on stdin."""

STATUS = f"""exec 2>&1
check() {{
  pid=$1 want=$2
  if read -r s 2>/dev/null </proc/$pid/stat; then
    {_READ_STAT}
    if [ "$start" != "$want" ]; then echo "ECS-STATUS $pid $want reused"
    elif [ "$st" = Z ]; then echo "ECS-STATUS $pid $want gone"
    else echo "ECS-STATUS $pid $want running"; fi
  else echo "ECS-STATUS $pid $want gone"; fi
}}
while [ $# -ge 2 ]; do check "$1" "$2"; shift 2; done
"""
"""For each (pid, start time) pair: whether that pid is alive with that start time."""

STOP = f"""exec 2>&1
pid=$1 want=$2 ticks=$3
if read -r s 2>/dev/null </proc/$pid/stat; then
  {_READ_STAT}
  if [ "$start" != "$want" ]; then echo "ECS-STOPPED reused"; exit 0; fi
fi
alive() {{
  kill -s 0 -- "-$pid" 2>/dev/null || return 1
  for f in /proc/[0-9]*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    r=${{s##*) }}; set -- $r
    [ "$3" = "$pid" ] && [ "$1" != Z ] && return 0
  done
  return 1
}}
kill -s TERM -- "-$pid" 2>/dev/null
how=term
i=0
while alive; do
  if [ $i -eq "$ticks" ]; then kill -s KILL -- "-$pid" 2>/dev/null; how=kill; fi
  if [ $i -gt $((ticks + 200)) ]; then echo "ECS-STUCK $pid"; exit 6; fi
  i=$((i + 1)); sleep 0.05
done
echo "ECS-STOPPED $how"
"""
"""SIGTERM the group, SIGKILL it after C{ticks} × 50 ms, wait until no live process is left in it."""

TAIL = """exec 2>&1
[ -e "$2" ] || exit 0
exec tail -n "$1" -- "$2"
"""
"""The last lines of the log (nothing if there is none yet)."""

STOP_TICK = 0.05


def command(script: str, name: str, args: Sequence[str]) -> bytes:
    """C{sh -c <script> <name> <args...>}, every part quoted, as the bytes of an SSH exec request."""
    return " ".join(["sh", "-c", shlex.quote(script), name, *map(shlex.quote, args)]).encode()


def start_command(workdir: str, log_name: str, twistd: str, env: dict[str, str], argv: Sequence[str]) -> bytes:
    """The start command: log in C{<workdir>/logs/<log_name>.log}, C{twistd <argv>} with C{env}."""
    assignments = [f"{name}={value}" for name, value in env.items()]
    return command(START, "ecs-start", [workdir, log_name, twistd, str(len(assignments)), *assignments, *argv])


def status_command(agents: Sequence[tuple[int, int]]) -> bytes:
    """The status command of several agents, given as (pid, start time) pairs."""
    return command(STATUS, "ecs-status", [str(n) for pair in agents for n in pair])


_STATUS_RE = re.compile(r"^ECS-STATUS ([0-9]+) ([0-9]+) (running|gone|reused)$", re.M)


def parse_statuses(out: str) -> dict[tuple[int, int], str]:
    """The status script's answers: (pid, start time) → C{running}, C{gone} or C{reused}."""
    return {(int(m.group(1)), int(m.group(2))): m.group(3) for m in _STATUS_RE.finditer(out)}


def stop_command(pid: int, starttime: int, grace: float) -> bytes:
    """The stop command: SIGKILL after C{grace} seconds."""
    return command(STOP, "ecs-stop", [str(pid), str(starttime), str(math.ceil(grace / STOP_TICK))])


def tail_command(log: str, lines: int) -> bytes:
    """The tail command."""
    return command(TAIL, "ecs-tail", [str(lines), log])


class Started(NamedTuple):
    """What the start script printed: pid (= pgid), its start time, the log path."""

    pid: int
    starttime: int
    log: str


_STARTED_RE = re.compile(r"^ECS-STARTED ([0-9]+) ([0-9]+) (.+)$", re.M)


def parse_started(out: str) -> Started | None:
    """The C{ECS-STARTED} line of the start script's output, if there is one."""
    match = _STARTED_RE.search(out)
    if not match or int(match.group(1)) <= 1:
        return None
    return Started(int(match.group(1)), int(match.group(2)), match.group(3))


def parse_word(out: str, tag: str, words: Sequence[str]) -> str:
    """The word after C{tag} (one of C{words}) in a script's output; L{LaunchError} C{failed} if none."""
    match = re.search(rf"^{tag} (\w+)$", out, re.M)
    if not match or match.group(1) not in words:
        raise LaunchError("failed", f"unexpected answer from the remote host: {out.strip()[-300:]!r}")
    return match.group(1)
