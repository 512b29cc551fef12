# -*- test-case-name: tests.test_launch_local -*-
"""
What C{/proc} says about a process on this host: its start time (to tell a
reused pid from ours), whether it is a zombie, and which processes are in a
process group.  Plain functions of a C{/proc} root so that tests can point
them at a fake tree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

PROC = Path("/proc")


class ProcStat(NamedTuple):
    """The fields of C{/proc/<pid>/stat} we use."""

    state: str
    pgid: int
    starttime: int


def parse_stat(text: str) -> ProcStat:
    """
    Parse the text of C{/proc/<pid>/stat}.  The command name (field 2) is
    in parentheses and may itself hold spaces and parentheses, so fields are
    counted from the last C{)}: state is field 3, pgid field 5, start time
    (clock ticks after boot) field 22.
    """
    rest = text[text.rindex(")") + 2 :].split()
    return ProcStat(state=rest[0], pgid=int(rest[2]), starttime=int(rest[19]))


def read_stat(pid: int, root: Path = PROC) -> ProcStat | None:
    """The stat of C{pid}, or C{None} if there is no such process."""
    try:
        return parse_stat((root / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def is_ours(pid: int, starttime: int | None, root: Path = PROC) -> bool:
    """
    Whether C{pid} is still the process we started (same start time) and
    not a zombie.  With no recorded start time, any live process counts.
    """
    stat = read_stat(pid, root)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return starttime is None or stat.starttime == starttime


def pid_reused(pid: int, starttime: int | None, root: Path = PROC) -> bool:
    """Whether C{pid} now belongs to another process than the one started at C{starttime}."""
    stat = read_stat(pid, root)
    return stat is not None and starttime is not None and stat.starttime != starttime


def group_members(pgid: int, root: Path = PROC) -> list[int]:
    """The pids of the live (not zombie) processes in process group C{pgid}."""
    members = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        stat = read_stat(int(name), root)
        if stat is not None and stat.pgid == pgid and stat.state not in ("Z", "X"):
            members.append(int(name))
    return members
