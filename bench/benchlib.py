"""
What the benchmarks that run real processes share: progress lines, free
ports, a process's CPU time and liveness from /proc, a reactor sleep,
following an agent's log file (L{LogFollower}), and a process's garbage
collector pauses (L{on_gc_pause}).
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class BenchError(Exception):
    """The benchmark cannot go on (with the reason)."""


def on_gc_pause(report: Callable[[float, int, float], None]) -> None:
    """
    From now on, call C{report(start, generation, milliseconds)} after each
    pause of this process's cyclic garbage collector (C{start} is
    C{time.time()}): a full scan (generation 2) stops the whole process.
    """
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.time()
        else:
            report(started[0], info["generation"], (time.time() - started[0]) * 1000)

    gc.callbacks.append(callback)


def say(message: str) -> None:
    """Progress for humans, on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_ports(count: int) -> list[int]:
    """C{count} distinct free TCP ports on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cpu_ticks(pid: int) -> int:
    """utime + stime of process C{pid}, in clock ticks (all its threads); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def exists(pid: int) -> bool:
    """Whether C{pid} is alive (not a zombie); reaps it if it is our child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def sleep(seconds: float) -> Any:
    """A Deferred that fires after C{seconds} on the reactor."""
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: None)


class LogFollower:
    """The lines a process appends to its log file, read as they come."""

    def __init__(self, path: Path) -> None:
        self.log_path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        """Log lines written since the last call."""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def tail(self, count: int = 25) -> str:
        """The last C{count} lines, indented, for an error message."""
        try:
            lines = self.log_path.read_bytes().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in lines[-count:])
