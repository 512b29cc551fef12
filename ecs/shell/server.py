# -*- test-case-name: tests.test_shell -*-
"""
The ECA's SSH admin shell: a twisted.conch server inside the ECA process.

Logging in
    Key authentication only (no passwords): the SSH login name is the ECS
    user name, and the key offered must be registered for that user
    (C{ecs user key add NAME FILE}, table C{user_keys}, L{ecs.store.keys}).
    Every login, accepted or refused, goes into the audit trail
    (C{ssh_login}, with the key's fingerprint).  The user's roles are read
    afresh for every command, so a role change or a deleted user takes
    effect at once.

What a session offers (L{ecs.shell.session})
    - C{ssh -p PORT alice@127.0.0.1 'status'} (or C{'ecs status'}): runs one
      command and returns its exit status: 0 done, 1 refused, 2 bad usage,
      3 not allowed for the role, 5 no answer in time (the codes of the
      C{ecs} command line).  Errors go to stderr.
    - C{ssh -p PORT alice@127.0.0.1}: an interactive command shell (line
      editing, history) with the same commands; C{help} lists them,
      C{exit} or Ctrl-D ends it.
    - For admins, the Python manhole into the running ECA, with C{eca} (the
      L{IControlCenter}), C{store} (the L{ecs.store.Store}) and C{reactor}
      in its namespace: the command C{python} switches the interactive
      shell to it (Ctrl-D returns to the shell); C{ssh -t ... python} opens
      it directly; C{ssh ... 'python SOURCE'} evaluates SOURCE and prints
      the result (a Deferred is waited for).  Each manhole line is audited
      (C{python}).  Code typed there runs in the reactor thread: a loop
      that never ends stops the ECA.

The server
    The host key (ed25519) is made on first start as
    C{<state dir>/ssh/host_ed25519} (mode 0600, its C{.pub} beside it for
    known_hosts files) and reused.  The endpoint is a Twisted endpoint
    string, L{DEFAULT_ENDPOINT} (loopback only) unless configured
    (C{twistd ecs-eca --ssh ... | --ssh-port N | --ssh none}).  When the
    default port is taken (a second ECA on the machine), the shell is
    left out with a warning; an endpoint given explicitly that cannot be
    listened on is an error.  Only session channels are served: no port
    forwarding, no subsystems, no environment variables.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, Protocol

from twisted.conch.avatar import ConchUser
from twisted.conch.error import ValidPublicKey
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh import factory, transport
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.session import SSHSession
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, endpoints
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from ecs.control import IControlCenter, User
from ecs.net.keys import ensure_ssh_key
from ecs.shell.commands import COMMAND_TIMEOUT
from ecs.shell.session import ShellSession

DEFAULT_PORT = 2222
DEFAULT_ENDPOINT = f"tcp:{DEFAULT_PORT}:interface=127.0.0.1"
HOST_KEY = Path("ssh") / "host_ed25519"
"""The host key, relative to the state directory."""


class Accounts(Protocol):
    """
    What the shell needs besides the center: whose SSH key this is, a
    user's current roles, and the audit trail.  The ECA passes its store
    (L{ecs.store.Store}); L{ecs.control} has no interface for these yet.
    """

    def user_for_key(self, key: bytes) -> Awaitable[str | None]:
        """The user a public key blob is registered for, or None."""

    def user(self, name: str) -> Awaitable[Any]:
        """The user (C{name}, C{roles}) as stored now, or None."""

    def audit(self, user: str, action: str, arguments: Mapping[str, Any], outcome: str) -> Any:
        """Write an audit entry (a Deferred)."""


def fingerprint(blob: bytes) -> str:
    """The SHA-256 fingerprint of a public key blob, as C{ssh-keygen -l} writes it (and the store keeps it)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


_log = Logger()


# -- the host key ------------------------------------------------------------------


def host_key_path(state_dir: str | Path) -> Path:
    """Where the shell's host key of the ECA with this state directory is."""
    return Path(state_dir) / HOST_KEY


def load_host_key(state_dir: str | Path) -> Key:
    """
    The host key under C{state_dir}, made (ed25519, mode 0600, with a
    C{.pub} file) if there is none.  Runs once at start-up: the file I/O is
    a few hundred bytes.
    """
    path = host_key_path(state_dir)
    if path.exists() and path.stat().st_mode & 0o077:
        _log.warn("SSH shell host key {path} was readable by others: made 0600", path=str(path))
    if ensure_ssh_key(path):
        _log.info("SSH shell host key created in {path}", path=str(path))
    key: Key = Key.fromFile(str(path))
    if key.isPublic() or key.sshType() != b"ssh-ed25519":
        raise ValueError(f"{path} is not an ed25519 private key")
    return key


# -- authentication -----------------------------------------------------------------


def _shown_name(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")[:128]
    return "".join(c if c.isprintable() else "?" for c in text)


@implementer(ICredentialsChecker)
class KeyChecker:
    """
    Accepts a login when the key offered is registered for the user named
    and the client proved it holds the private key.
    """

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, store: Accounts) -> None:
        self.store = store

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[bytes | tuple[()]]:
        """See L{ICredentialsChecker}: the user name, as bytes."""
        d: defer.Deferred[bytes | tuple[()]] = defer.Deferred.fromCoroutine(self._check(credentials))
        return d

    async def _check(self, credentials: Any) -> bytes:
        name = _shown_name(credentials.username)
        blob: bytes = credentials.blob
        key_print = fingerprint(blob)
        try:
            owner = await self.store.user_for_key(blob)
        except Exception as e:  # the store's StoreError, or any other failure: refuse, say why in the log
            _log.error(
                "SSH login of {name}: key lookup failed: {error}", name=name, error=getattr(e, "reason", repr(e))
            )
            raise UnauthorizedLogin("the key cannot be checked now") from None
        if owner is None or owner.encode("utf-8") != credentials.username:
            await self._audit(name, key_print, "refused: key not registered for this user")
            raise UnauthorizedLogin("key not registered for this user")
        if credentials.signature is None:
            raise ValidPublicKey()  # the client is asked to prove it holds the key
        try:
            valid = Key.fromString(blob).verify(credentials.signature, credentials.sigData)
        except Exception:
            valid = False
        if not valid:
            await self._audit(name, key_print, "refused: bad signature")
            raise UnauthorizedLogin("bad signature")
        await self._audit(owner, key_print, "ok")
        _log.info("SSH login of {name} with key {key}", name=owner, key=key_print)
        return owner.encode("utf-8")

    async def _audit(self, name: str, key_print: str, outcome: str) -> None:
        try:
            await self.store.audit(name, "ssh_login", {"key": key_print}, outcome)
        except Exception as e:  # the store's StoreError: the login goes on, the log says it was not audited
            _log.error("SSH login of {name} not audited: {error}", name=name, error=getattr(e, "reason", repr(e)))


# -- users and the server -------------------------------------------------------------


class ShellUser(ConchUser):
    """A logged-in user: only session channels (no forwarding, no subsystems)."""

    def __init__(self, name: str, shell: AdminShell) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # conch's ConchUser is not annotated
        self.name = name
        self.shell = shell
        self.channelLookup[b"session"] = SSHSession

    async def current(self) -> User | None:
        """The user as stored now (roles may have changed), or C{None} if deleted."""
        row = await self.shell.store.user(self.name)
        return None if row is None else User(row.name, tuple(row.roles))


@implementer(IRealm)
class _Realm:
    def __init__(self, shell: AdminShell) -> None:
        self.shell = shell

    def requestAvatar(self, avatar_id: bytes | tuple[()], mind: Any, *interfaces: Any) -> tuple[Any, ShellUser, Any]:
        if IConchUser not in interfaces:
            raise NotImplementedError("only SSH users")
        if not isinstance(avatar_id, bytes):
            raise NotImplementedError("only named users (no anonymous login)")
        return IConchUser, ShellUser(avatar_id.decode("utf-8"), self.shell), lambda: None


class _Transport(transport.SSHServerTransport):
    """The server transport, remembered by the shell while connected (closed on stop)."""

    def _shell(self) -> AdminShell:
        shell: AdminShell = getattr(self.factory, "shell")  # noqa: B009  (set by _Factory; SSHFactory has no such attribute)
        return shell

    def connectionMade(self) -> None:
        self._shell().connections.add(self)
        super().connectionMade()  # type: ignore[no-untyped-call]  # conch's transport is not annotated

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._shell().connections.discard(self)
        super().connectionLost(reason)


class _Factory(factory.SSHFactory):
    protocol = _Transport

    def __init__(self, shell: AdminShell) -> None:
        self.shell = shell
        self.portal = shell.portal
        # Class-level dicts in conch (shared by every factory): this instance's own.
        self.publicKeys = {b"ssh-ed25519": shell.host_key.public()}
        self.privateKeys = {b"ssh-ed25519": shell.host_key}
        self.primes = None


class AdminShell:
    """
    The SSH admin shell of one ECA.

    @param center: what commands act through.
    @param store: user keys and roles, the audit trail.
    @param state_dir: where the host key is (L{host_key_path}).
    @param namespace: the manhole's namespace (default C{eca}, C{store},
        C{reactor}).
    @param timeout: seconds a command may take.
    """

    def __init__(
        self,
        center: IControlCenter,
        store: Accounts,
        state_dir: str | Path,
        reactor: Any,
        namespace: dict[str, Any] | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self.center = center
        self.store = store
        self.reactor = reactor
        self.timeout = timeout
        self.namespace = namespace if namespace is not None else {"eca": center, "store": store, "reactor": reactor}
        self.host_key = load_host_key(state_dir)
        self.portal = Portal(_Realm(self), [KeyChecker(store)])
        self.connections: set[_Transport] = set()
        self.port: IListeningPort | None = None

    @property
    def host_key_fingerprint(self) -> str:
        """C{SHA256:...} of the host key, as C{ssh} shows it."""
        return fingerprint(self.host_key.public().blob())

    def factory(self) -> factory.SSHFactory:
        """The conch server factory."""
        return _Factory(self)

    async def listen(self, description: str) -> IListeningPort:
        """Listen on a Twisted endpoint string (C{tcp:2222:interface=127.0.0.1})."""
        endpoint = endpoints.serverFromString(self.reactor, description)
        self.port = await endpoint.listen(self.factory())
        address = self.port.getHost()
        _log.info(
            "ECA SSH shell at {host}:{port} (host key {key})",
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
            key=self.host_key_fingerprint,
        )
        return self.port

    def describe(self) -> str:
        """One line for the console: how to log in."""
        address = self.port.getHost() if self.port is not None else None
        where = f"-p {getattr(address, 'port', '?')} USER@{getattr(address, 'host', '?')}"
        return f"ECS SSH shell: ssh {where} (keys: ecs user key add USER FILE; host key {self.host_key_fingerprint})"

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self.port is not None:
            stopping = self.port.stopListening()
            self.port = None
            if stopping is not None:
                await stopping
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.loseConnection()


async def listen_shell(
    description: str | None,
    center: IControlCenter,
    store: Accounts,
    state_dir: str | Path,
    reactor: Any,
    namespace: dict[str, Any] | None = None,
) -> AdminShell | None:
    """
    Start the shell of an ECA (C{twistd ecs-eca --ssh}): C{description} is
    an endpoint string, C{"none"} (no shell) or C{None} (L{DEFAULT_ENDPOINT},
    left out with a warning when its port is taken).  The shell, or C{None}.
    """
    if description is not None and description.strip().lower() == "none":
        return None
    shell = AdminShell(center, store, state_dir, reactor, namespace)
    try:
        await shell.listen(description or DEFAULT_ENDPOINT)
    except CannotListenError as e:
        if description is not None:
            raise
        _log.warn(
            "SSH shell not started: {endpoint} is taken ({error}); choose another with --ssh-port",
            endpoint=DEFAULT_ENDPOINT,
            error=e.socketError,
        )
        return None
    return shell


# SSHSession asks ISession(avatar) for each session channel: a new ShellSession.
components.registerAdapter(ShellSession, ShellUser, ISession)

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_PORT",
    "AdminShell",
    "KeyChecker",
    "ShellUser",
    "host_key_path",
    "listen_shell",
    "load_host_key",
]
