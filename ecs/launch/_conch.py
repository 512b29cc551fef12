# -*- test-case-name: tests.test_launch_ssh -*-
"""
One remote command over SSH with twisted.conch: connect, check the host key
against our own known-hosts file (L{ecs.launch.known_hosts}), authenticate with our key,
run the command, collect stdout, stderr and the exit status, disconnect.

Built on conch's public protocol classes (transport, user auth, connection,
channel) rather than C{SSHCommandClientEndpoint}: that endpoint drops
stderr, ignores the port in known-hosts lines and never tells its protocol
when the TCP connection dies (Twisted #7901), and fixing those means
subclassing its private classes.  Here every way a connection can end
settles the one L{Deferred} of the operation exactly once, and an overall
timeout aborts it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.conch.ssh import channel, common, connection, keys, transport, userauth
from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import provider

from ecs.launch import LaunchError
from ecs.launch.known_hosts import KnownHosts


@provider(ILogObserver)
def _warnings_only(event: dict[str, Any]) -> None:
    # conch logs every connection at info/debug (kex, channels, "Disconnecting
    # with error ... user closed connection" on a normal close): with status
    # polls every few seconds per host that would swamp the ECA's log.  Our
    # own log lines say what happened; conch's warnings and errors still pass.
    if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
        globalLogPublisher(event)


_QUIET = Logger(observer=_warnings_only)


MAX_OUTPUT = 1 << 20
"""Bytes of stdout (and of stderr) kept from one command; the rest is dropped."""


@attrs.define
class Result:
    """What a remote command did: exit status (or signal name), stdout, stderr."""

    exit_code: int | None = None
    signal: str | None = None
    out: bytes = b""
    err: bytes = b""


class Operation:
    """
    The state of one remote command: settles L{done} exactly once, with a
    L{Result} or a L{LaunchError}.

    @ivar on_output: called with each chunk of stdout, and may answer with
        bytes to send to the command's stdin (C{None}: nothing); used by the
        two-phase start.
    """

    _log = Logger()

    def __init__(
        self, host: str, port: int, user: str, key: keys.Key, known_hosts: KnownHosts, command: bytes,
        on_output: Callable[[bytes, Result], bytes | None] | None = None,
    ) -> None:
        self.host, self.port, self.user, self.key = host, port, user, key
        self.known_hosts = known_hosts
        self.command = command
        self.on_output = on_output
        self.result = Result()
        self.done: defer.Deferred[Result] = defer.Deferred()
        self.stage = "connecting"
        self.auth_refused = False
        self.host_key_error: LaunchError | None = None
        self.transport: _Transport | None = None

    def fail(self, error: LaunchError) -> None:
        """Settle with C{error} (once) and drop the connection."""
        if not self.done.called:
            self.done.errback(error)
        self.abort()

    def succeed(self) -> None:
        """Settle with the result (once)."""
        if not self.done.called:
            self.done.callback(self.result)

    def abort(self) -> None:
        """Close the TCP connection at once."""
        if self.transport is not None and self.transport.transport is not None:
            # HostnameEndpoint connects over TCP: adapting fails loudly otherwise
            ITCPTransport(self.transport.transport).abortConnection()

    def lost(self) -> None:
        """The TCP connection ended: whatever was not finished failed."""
        if self.done.called:
            return
        where = f"{self.user}@{self.host}:{self.port}"
        if self.host_key_error is not None:
            self.fail(self.host_key_error)
        elif self.auth_refused or self.stage == "authenticating":
            self.fail(LaunchError("auth", f"{where} refused our key"))
        else:
            self.fail(LaunchError("unreachable", f"connection to {where} lost while {self.stage}"))


class _Transport(transport.SSHClientTransport):
    _log = _QUIET

    def __init__(self, op: Operation) -> None:
        self.op = op
        op.transport = self
        kinds = [k.encode() for k in op.known_hosts.known_types(op.host, op.port)]
        wanted = set(kinds) | ({b"rsa-sha2-512", b"rsa-sha2-256"} if b"ssh-rsa" in kinds else set())
        # Ask only for the host key types we know for this host, as OpenSSH does.
        preferred = [k for k in self.supportedPublicKeys if k in wanted]
        if preferred:
            self.supportedPublicKeys = preferred

    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> defer.Deferred[bool]:
        self.op.stage = "checking the host key"
        try:
            self.op.known_hosts.check(self.op.host, self.op.port, hostKey)
        except LaunchError as e:
            self.op.host_key_error = e
            return defer.fail(e)
        return defer.succeed(True)

    def connectionSecure(self) -> None:
        self.op.stage = "authenticating"
        self.requestService(_UserAuth(self.op, _Connection(self.op)))

    def receiveError(self, reasonCode: int, description: bytes) -> None:
        self.op.stage += f" (server said: {description.decode('utf-8', 'replace')[:200]})"

    def connectionLost(self, reason: Failure | None = None) -> None:
        transport.SSHClientTransport.connectionLost(self, reason)
        self.op.lost()


class _UserAuth(userauth.SSHUserAuthClient):
    _log = _QUIET
    def __init__(self, op: Operation, service: connection.SSHConnection) -> None:
        super().__init__(op.user.encode(), service)
        self.preferredOrder = [b"publickey"]
        self.op = op
        self._offered = False

    def getPublicKey(self) -> keys.Key | None:
        if self._offered:
            self.op.auth_refused = True
            return None
        self._offered = True
        public: keys.Key = self.op.key.public()
        return public

    def getPrivateKey(self) -> defer.Deferred[keys.Key]:
        return defer.succeed(self.op.key)

    def getPassword(self, prompt: bytes | None = None) -> None:
        return None

    def getGenericAnswers(self, name: bytes, instruction: bytes, questions: Any) -> defer.Deferred[Any]:
        return defer.fail(LaunchError("auth", "keyboard-interactive authentication is not used"))


class _Connection(connection.SSHConnection):
    # SSHConnection is unannotated: its methods are called through the class,
    # whose name mypy's untyped_calls_exclude (twisted) recognises.
    _log = _QUIET

    def __init__(self, op: Operation) -> None:
        connection.SSHConnection.__init__(self)
        self.op = op

    def serviceStarted(self) -> None:
        connection.SSHConnection.serviceStarted(self)
        self.op.stage = "opening a session"
        connection.SSHConnection.openChannel(self, _Session(self.op, conn=self))


class _Session(channel.SSHChannel):
    _log = _QUIET
    name = b"session"

    def __init__(self, op: Operation, **kw: Any) -> None:
        super().__init__(**kw)
        self.op = op

    def openFailed(self, reason: Failure) -> None:
        self.op.fail(LaunchError("failed", f"{self.op.host} refused a session: {reason.getErrorMessage()}"))

    def _connection(self) -> connection.SSHConnection:
        # conch sets conn when it opens the channel, before any callback here
        assert self.conn is not None, "SSH channel used before its connection was set"
        return self.conn

    def channelOpen(self, specificData: bytes) -> None:
        self.op.stage = "running the command"
        d = self._connection().sendRequest(self, b"exec", common.NS(self.op.command), wantReply=True)
        d.addCallbacks(self._exec_started, self._exec_refused)

    def _exec_started(self, _: object) -> None:
        if self.op.on_output is None:
            self._connection().sendEOF(self)

    def _exec_refused(self, reason: Failure) -> None:
        self.op.fail(LaunchError("failed", f"{self.op.host} refused to run the command"))

    def dataReceived(self, data: bytes) -> None:
        result = self.op.result
        if len(result.out) < MAX_OUTPUT:
            result.out += data[: MAX_OUTPUT - len(result.out)]
        if self.op.on_output is not None:
            answer = self.op.on_output(data, result)
            if answer is not None:
                channel.SSHChannel.write(self, answer)
                self._connection().sendEOF(self)

    def extReceived(self, dataType: int, data: bytes) -> None:
        result = self.op.result
        if len(result.err) < MAX_OUTPUT:
            result.err += data[: MAX_OUTPUT - len(result.err)]

    def request_exit_status(self, data: bytes) -> int:
        (self.op.result.exit_code,) = struct.unpack(">L", data[:4])
        return 1

    def request_exit_signal(self, data: bytes) -> int:
        name, _ = common.getNS(data)
        self.op.result.signal = name.decode("ascii", "replace")
        return 1

    def closed(self) -> None:
        if self.op.result.exit_code is None and self.op.result.signal is None:
            # conch closes every channel when the connection is lost; a
            # command that really ended has sent its exit status first.
            self.op.stage = "running the command (no exit status came)"
            self.op.lost()
        else:
            self.op.succeed()
        ssh = self._connection().transport
        if ssh is not None:
            ssh.loseConnection()


class _OneConnection(protocol.Factory):
    """Builds the one transport of an operation, without "Starting factory" lines."""

    noisy = False

    def __init__(self, built: _Transport) -> None:
        self.built = built

    def buildProtocol(self, addr: Any) -> _Transport:
        return self.built


def run(
    reactor: Any, host: str, port: int, user: str, key: keys.Key, known_hosts: KnownHosts, command: bytes,
    timeout: float, on_output: Callable[[bytes, Result], bytes | None] | None = None,
) -> defer.Deferred[Result]:
    """
    Run C{command} on C{host} (one new connection); fire with its L{Result}
    or fail with L{LaunchError} (C{unreachable}, C{host_key}, C{auth},
    C{failed}, C{timeout} after C{timeout} seconds in all).
    """
    op = Operation(host, port, user, key, known_hosts, command, on_output)
    # The endpoint's own connect timeout is longer than ours, so ours decides.
    endpoint = HostnameEndpoint(reactor, host, port, timeout=int(timeout) + 2)
    connecting = endpoint.connect(_OneConnection(_Transport(op)))

    def refused(failure: Failure) -> None:
        if op.done.called:  # cancelled by the timeout
            return None
        reason = failure.getErrorMessage() if failure.check(ConnectError) else repr(failure.value)
        op.fail(LaunchError("unreachable", f"cannot connect to {host}:{port}: {reason}"))
        return None

    connecting.addErrback(refused)

    def timed_out() -> None:
        op.fail(LaunchError("timeout", f"no answer from {user}@{host}:{port} within {timeout} s ({op.stage})"))
        connecting.cancel()

    timer = reactor.callLater(timeout, timed_out)

    def finished(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    return op.done.addBoth(finished)


def load_identity(path: Path) -> keys.Key:
    """Our private key (ed25519 or ECDSA, unencrypted); L{LaunchError} C{invalid} otherwise."""
    try:
        key: keys.Key = keys.Key.fromFile(os.fspath(path))
    except (OSError, keys.BadKeyError, keys.EncryptedKeyError, ValueError) as e:
        raise LaunchError("invalid", f"cannot load SSH identity {path}: {e}") from None
    if not key.isPublic() and key.type() in ("Ed25519", "EC"):
        return key
    raise LaunchError("invalid", f"SSH identity {path} must be an ed25519 or ECDSA private key, not {key.type()}")
