"""
A reactor for unit tests of code that runs programs: a L{Clock} whose
C{spawnProcess} records the call and connects the protocol to a
L{FakeTransport} instead of starting anything.  The test then plays the
program with the protocol (C{outReceived}, C{processEnded}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorProcess
from twisted.internet.task import Clock
from zope.interface import implementer


class FakeTransport:
    """The process transport a L{FakeProcessReactor} hands to a protocol."""

    def __init__(self) -> None:
        self.written = b""
        self.stdin_closed = False
        self.signals: list[str] = []

    def write(self, data: bytes) -> None:
        self.written += data

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)


@implementer(IReactorProcess)
class FakeProcessReactor(Clock):
    """A Clock recording C{spawnProcess} calls as (protocol, executable, args, env, transport)."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, str, list[str], dict[str, str], FakeTransport]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: Any = (), env: dict[str, str] | None = None,
                     path: str | None = None, uid: int | None = None, gid: int | None = None, usePTY: bool = False,
                     childFDs: Any = None) -> FakeTransport:
        transport = FakeTransport()
        self.spawned.append((protocol, executable, list(args), dict(env or {}), transport))
        protocol.makeConnection(transport)
        return transport
