# -*- test-case-name: tests.test_shell -*-
"""
One SSH session of the admin shell (L{ecs.shell.server}): an exec request, the
interactive command shell, or the admin's Python manhole.

The stock C{manhole_ssh.TerminalSession} drops the whole connection on an
exec request, a terminal resize and stdin EOF (seen with Twisted 26); here:

  - C{execCommand} runs one command line (L{CommandInterpreter}) and ends
    the channel with the command's exit status; with a pty (C{ssh -t}),
    C{python} opens the manhole instead;
  - C{windowChanged} tells the terminal protocol its new size;
  - C{eofReceived} (stdin closed, e.g. C{printf 'status\\nexit\\n' | ssh
    -tt ...}) lets the lines already received run, then ends the session
    with the last command's status, as a shell reading a pipe does.

The terminal is an L{insults.ServerProtocol} whose terminal protocol is
swapped between the command shell (L{CommandTerminal}) and the manhole
(L{AdminManhole}).
"""

from __future__ import annotations

import collections
import contextlib
import io
import traceback
from collections.abc import Callable
from typing import Any

from twisted.conch import manhole, recvline
from twisted.conch.insults import insults
from twisted.conch.interfaces import ISession
from twisted.internet import defer
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ecs.control import User
from ecs.shell.commands import LINE_MAX, CommandInterpreter, Outcome, within

_log = Logger()

MAX_PENDING = 1000
"""Lines typed ahead (or piped in) that wait for the running command, at most."""


class _Glue:
    """A minimal transport: C{write} and C{loseConnection} forwarded to callables."""

    def __init__(self, write: Callable[[bytes], None], lose: Callable[[], None]) -> None:
        self.write = write
        self._lose = lose

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self._lose()


def _run_source(source: str, namespace: dict[str, Any]) -> tuple[str, Any]:
    """Run Python source (an expression is evaluated): what it printed, and its value."""
    printed = io.StringIO()
    try:
        code = compile(source, "<ssh>", "eval")
    except SyntaxError:
        code = compile(source, "<ssh>", "exec")
    with contextlib.redirect_stdout(printed):
        value = eval(code, namespace)  # noqa: S307  (the admin manhole: evaluating is its purpose, admins only)
    return printed.getvalue(), value


class AdminManhole(manhole.ColoredManhole):
    """The interactive manhole; Ctrl-D leaves it (L{on_quit}); each line is audited."""

    def __init__(self, namespace: dict[str, Any], on_quit: Callable[[], None], on_line: Callable[[str], None]) -> None:
        super().__init__(namespace)  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated
        self.on_quit = on_quit
        self.on_line = on_line

    def handle_QUIT(self) -> None:
        """Ctrl-D on an empty line: leave the manhole (not the connection)."""
        self.on_quit()

    def lineReceived(self, line: bytes) -> None:
        """Audit, then run the line."""
        self.on_line(line.decode("utf-8", "replace"))
        super().lineReceived(line)  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated


class CommandTerminal(recvline.HistoricRecvLine):
    """The interactive command shell: lines run one at a time, in order."""

    ps = (b"ecs> ", b"... ")

    def __init__(self, session: ShellSession) -> None:
        super().__init__()
        self.session = session
        self.pending: collections.deque[bytes] = collections.deque()
        self.busy = False
        self.last_code = 0

    def connectionMade(self) -> None:
        """Greet, then prompt."""
        super().connectionMade()  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated
        self.keyHandlers[manhole.CTRL_D] = self.handle_EOF
        self.keyHandlers[manhole.CTRL_C] = self.handle_INT
        self.terminal.write(
            f"\rECS admin shell, user {self.session.avatar.name}. Type help for the commands.\n".encode()
        )
        self.drawInputLine()  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated

    def initializeScreen(self) -> None:
        """No screen reset: output stays readable in a scrollback or a log."""
        self.setInsertMode()  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated

    def out(self, text: str) -> None:
        """L{Output}: text to the terminal (which turns newlines into CR LF)."""
        self.terminal.write(text.encode("utf-8", "replace"))

    err = out

    def handle_EOF(self) -> None:
        """Ctrl-D on an empty line: like exit."""
        if self.lineBuffer:
            self.terminal.write(b"\a")
        else:
            self.lineReceived(b"exit")

    def handle_INT(self) -> None:
        """Ctrl-C: drop the line being typed; stop a command that follows events (watch, --wait, --follow)."""
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self.terminal.write(b"^C\r\n")
        if self.busy:
            self.session.interpreter.interrupt()
        else:
            self.drawInputLine()  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated

    def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None:
        """Type a character; a line longer than the interpreter takes rings the bell instead."""
        if len(self.lineBuffer) >= LINE_MAX:
            self.terminal.write(b"\a")
        else:
            super().characterReceived(ch, moreCharactersComing)  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated

    def lineReceived(self, line: bytes) -> None:
        """Queue the line; run it when the ones before it are done."""
        if len(self.pending) >= MAX_PENDING:
            self.out(f"\nmore than {MAX_PENDING} lines waiting: line dropped\n")
            return
        self.pending.append(line)
        self.run_next()

    def run_next(self) -> None:
        """Run the next queued line, or end the session at stdin EOF when none is left."""
        if self.busy or self.session.ended:
            return
        if not self.pending:
            if self.session.eof:
                self.session.end(self.last_code)
            return
        line = self.pending.popleft().decode("utf-8", "replace")
        self.busy = True
        self.session.interpreter.execute(line, self).addCallback(self._done)

    def _done(self, outcome: Outcome) -> None:
        self.busy = False
        self.last_code = outcome.code
        if self.session.ended:
            return
        if outcome.exit:
            self.session.end(outcome.code)
        elif outcome.python:
            self.session.open_manhole(then_shell=True, typed=list(self.pending))
            self.pending.clear()
        else:
            self.drawInputLine()  # type: ignore[no-untyped-call]  # conch's recvline/manhole are not annotated
            self.run_next()


@implementer(ISession)
class ShellSession:
    """
    L{ISession} of a L{ecs.shell.server.ShellUser}: one per session channel.

    @ivar avatar: the user (C{name}, C{shell}, C{current()}).
    @ivar ended: the exit status was sent, or the channel closed.
    @ivar eof: the client closed its stdin.
    """

    def __init__(self, avatar: Any) -> None:
        self.avatar = avatar
        self.shell = avatar.shell
        self.size: tuple[int, int] | None = None  # columns, rows, once a pty was asked for
        self.proto: Any = None
        self.server: insults.ServerProtocol | None = None
        self.ended = False
        self.eof = False
        self.interpreter = CommandInterpreter(
            self.shell.center,
            avatar.current,
            self.shell.reactor,
            timeout=self.shell.timeout,
            evaluate=self.evaluate,
            interactive=False,
        )

    # -- ISession ------------------------------------------------------------------

    def getPty(self, term: bytes, window_size: tuple[int, ...], modes: Any) -> None:
        """Remember the size (rows, columns, ...) of the client's terminal."""
        self.size = (int(window_size[1]) or 80, int(window_size[0]) or 24)
        self.interpreter.interactive = True

    def openShell(self, proto: Any) -> None:
        """The interactive command shell."""
        self.proto = proto
        self._terminal(CommandTerminal(self))

    def execCommand(self, proto: Any, command: bytes) -> None:
        """One command line; its exit status ends the channel."""
        self.proto = proto
        proto.makeConnection(_Glue(lambda data: None, self._lost))  # stdin is not read
        self.interpreter.info = self._info()
        line = command.decode("utf-8", "replace")
        d = self.interpreter.execute(line, _ExecOutput(self))
        d.addCallback(self._exec_done)

    def windowChanged(self, window_size: tuple[int, ...]) -> None:
        """The client's terminal was resized."""
        self.size = (int(window_size[1]) or 80, int(window_size[0]) or 24)
        if self.server is not None and self.server.terminalProtocol is not None:
            self.server.terminalProtocol.terminalSize(*self.size)

    def eofReceived(self) -> None:
        """stdin closed: finish what was typed, then end (see the module docstring)."""
        self.eof = True
        if self.server is None:
            return  # an exec command: it goes on
        terminal = self.server.terminalProtocol
        if isinstance(terminal, CommandTerminal):
            terminal.run_next()
        elif isinstance(terminal, AdminManhole) and not self.ended:
            self.end(0)  # manhole lines run as they arrive: all done

    def closed(self) -> None:
        """The channel is closed: write nothing more, and stop following events for it."""
        self.ended = True
        self.interpreter.interrupt()

    # -- ending ----------------------------------------------------------------------

    def end(self, code: int) -> None:
        """Send the exit status C{code} and close the channel (once)."""
        if self.ended:
            return
        self.ended = True
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)
        self.proto.processEnded(Failure(reason))

    def _lost(self) -> None:
        self.ended = True
        self.interpreter.interrupt()

    def _exec_done(self, outcome: Outcome) -> None:
        if outcome.python and not self.ended:
            self._terminal(None)
            self.open_manhole(then_shell=False, typed=[])
        else:
            self.end(outcome.code)

    def _info(self) -> str:
        try:
            peer = self.avatar.conn.transport.transport.getPeer()
            return f"logged in over SSH from {peer.host}:{peer.port}"
        except AttributeError:
            return "logged in over SSH"

    # -- the terminal ----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.ended:
            self.proto.write(data)

    def _terminal(self, first: Any) -> None:
        """Connect a terminal emulator between the channel and C{first} (a terminal protocol or None)."""
        server = self.server = insults.ServerProtocol()
        self.interpreter.info = self._info()
        self.proto.makeConnection(_Glue(server.dataReceived, self._lost))
        server.makeConnection(_Glue(self._write, lambda: self.end(0)))
        if first is not None:
            self._switch(first)

    def _switch(self, terminal: Any) -> None:
        assert self.server is not None
        self.server.terminalProtocol = terminal
        terminal.makeConnection(self.server)
        if self.size is not None:
            terminal.width, terminal.height = self.size

    def open_manhole(self, then_shell: bool, typed: list[bytes]) -> None:
        """
        Switch the terminal to the manhole (an admin's C{python}); Ctrl-D
        leaves it: back to the shell, or the end of the session.  C{typed}
        are lines already received, fed to it.
        """
        user = self.avatar.name
        namespace = {**self.shell.namespace, "user": user}

        def quit() -> None:
            if then_shell and not self.eof:
                self._switch(CommandTerminal(self))
            else:
                self.end(0)

        def audit(line: str) -> None:
            self.shell.store.audit(user, "python", {"source": line[:2000]}, "run").addErrback(
                lambda f: _log.failure("manhole line not audited", f)
            )

        self.shell.store.audit(user, "python", {"manhole": "open"}, "ok").addErrback(
            lambda f: _log.failure("manhole not audited", f)
        )
        self._switch(AdminManhole(namespace, quit, audit))
        assert self.server is not None
        if typed:
            self.server.dataReceived(b"".join(line + b"\r" for line in typed))
        if self.eof and not self.ended:
            self.end(0)

    # -- Python source in an exec request --------------------------------------------

    async def evaluate(self, user: User, source: str) -> str:
        """Run C{source} in a fresh copy of the manhole namespace; what it printed and its value."""
        try:
            await self.shell.store.audit(user.name, "python", {"source": source[:2000]}, "run")
        except Exception as e:  # the store's StoreError: the source still runs, the log says it was not audited
            _log.error("manhole source not audited: {error}", error=getattr(e, "reason", repr(e)))
        namespace = {**self.shell.namespace, "user": user.name}
        try:
            printed, value = _run_source(source, namespace)
            if isinstance(value, defer.Deferred):
                value = await within(value, self.shell.timeout, self.shell.reactor)
        except Exception as e:
            lines = traceback.format_exception(type(e), e, e.__traceback__)
            return "".join(lines)
        return printed + ("" if value is None else repr(value) + "\n")


class _ExecOutput:
    """Output of an exec request: stdout, and stderr (merged into stdout with a pty)."""

    def __init__(self, session: ShellSession) -> None:
        self.session = session

    def _bytes(self, text: str) -> bytes:
        if self.session.size is not None:
            text = text.replace("\n", "\r\n")  # a pty turns newlines into CR LF
        return text.encode("utf-8", "replace")

    def out(self, text: str) -> None:
        if not self.session.ended:
            self.session.proto.write(self._bytes(text))

    def err(self, text: str) -> None:
        if self.session.ended:
            return
        if self.session.size is not None:
            self.session.proto.write(self._bytes(text))
        else:
            self.session.proto.errReceived(self._bytes(text))


__all__ = ["AdminManhole", "CommandTerminal", "ShellSession"]
