# -*- test-case-name: tests.test_security -*-
"""
CURVE keys: creation, loading and the allow-list of client keys.

About 440 lines, one module: the files of a key directory, who makes and
who reads each of them, and the endpoints that name a host's key are one
subject, read together when a deployment's keys are in question.

Layout of a key directory (created by C{ecs keys init --dir DIR})::

    DIR/server.key, DIR/server.key_secret   the ECA's host serves with this
                                            pair; clients verify servers
                                            against it (other hosts hold
                                            server.key only)
    DIR/host.key, DIR/host.key_secret       a host without the server secret
                                            serves with its own pair, made at
                                            its first start; its endpoints
                                            carry the public key
                                            (L{endpoint_with_key})
    DIR/client.key, DIR/client.key_secret   agents and the CLI on this host
                                            connect with this pair
    DIR/authorized/*.key                    public keys allowed to connect; the
                                            file's name is the key's identity
    DIR/agents/NAME.key, NAME.key_secret    an agent's own pair (identity NAME,
                                            e.g. pca.demo: L{ecs.net.identity})

Secret files are mode 0600 and the directory 0700.  A client whose public
key is not in C{authorized/} is refused during the CURVE handshake: none of
its messages reach a handler.  More clients (another host, an operator's
tool) get their own pair with C{ecs keys add NAME}.

The server secret never needs to leave the ECA's host.  An agent host that
has only C{server.key} serves with a pair of its own (C{host.key}), and
registers endpoints like C{tcp://10.0.0.7:7201#curve=<64 hex digits>}: whoever
connects learns the key to expect from the registry, which it reached with
the server key it trusts.  So one compromised agent host holds its own
serving secret, never one that would let it pose as the ECA or another host.

The allow-list is re-read by a serving process when C{authorized/} changes
(a file added, removed or rewritten; see
L{ecs.net.curve.KeyAllowList}): C{ecs keys add} takes effect for new
connections without a restart.  Connections already established stay up; a
client refused earlier is retried by its own process with a new socket after
a back-off (2 s doubling to 30 s), so it gets in at its next attempt.  A
damaged file in C{authorized/} is a L{KeyFileError} naming it when serving
starts; found at a reload, it is logged and the previous allow-list stays in
force.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import attrs
import zmq
import zmq.auth
from zmq.utils import z85


class KeyFileError(Exception):
    """A key directory that is missing, incomplete or unreadable."""


SERVER = "server"
CLIENT = "client"
HOST = "host"
AUTHORIZED = "authorized"

#: The mark between an endpoint and the public key (64 hex digits) of the
#: host pair it is served with.
KEY_MARK = "#curve="


def endpoint_with_key(endpoint: str, public: bytes | None) -> str:
    """C{endpoint} with C{public} (Z85) after L{KEY_MARK}; as is without a key."""
    if public is None:
        return endpoint
    return f"{endpoint}{KEY_MARK}{z85.decode(public).hex()}"


def split_endpoint(address: str) -> tuple[str, bytes | None]:
    """
    The endpoint to connect to and the server key (Z85) it names, if any.

    @raise ValueError: for a key after L{KEY_MARK} that is not 64 hex
        digits, naming the address.
    """
    endpoint, mark, key = address.partition(KEY_MARK)
    if not mark:
        return address, None
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"endpoint {address!r}: the key after {KEY_MARK!r} must be 64 hex digits")
    return endpoint, z85.encode(raw)


@attrs.frozen
class CurveKeys:
    """The key material one process needs."""

    server_public: bytes
    server_secret: bytes | None
    client_public: bytes
    client_secret: bytes
    authorized_dir: Path
    #: the name of the client pair (L{ecs.net.identity}): "client" for the
    #: host's shared operator pair, else an agent's own
    identity: str = CLIENT
    #: this host's own serving pair, on a host without the server secret
    host_public: bytes | None = None
    host_secret: bytes | None = None

    def serving_pair(self) -> tuple[bytes, bytes] | None:
        """The pair to serve with: the server pair where its secret is, else the host's; None for a pure client."""
        if self.server_secret is not None:
            return self.server_public, self.server_secret
        if self.host_public is not None and self.host_secret is not None:
            return self.host_public, self.host_secret
        return None

    @property
    def advertised_key(self) -> bytes | None:
        """The public key our endpoints must name: None when serving with the server pair every client knows."""
        return self.host_public if self.server_secret is None else None

    def authorized_keys(self) -> frozenset[bytes]:
        """
        The public keys currently allowed to connect (Z85 text).

        @raise KeyFileError: naming the allow-list directory when it is
            missing, or the first file in it that cannot be read or holds no
            valid public key, so that one damaged file is found at once.
        """
        if not self.authorized_dir.is_dir():
            raise KeyFileError(
                f"no allow-list directory {self.authorized_dir}: run "
                f"`ecs keys init --dir {self.authorized_dir.parent}`"
            )
        keys = set()
        for path in sorted(self.authorized_dir.glob("*.key")):
            try:
                public, _ = zmq.auth.load_certificate(path)
            except (OSError, ValueError) as e:
                raise KeyFileError(
                    f"cannot read authorised CURVE key {path}: {e}; "
                    "remove the file or replace it with a public key made by `ecs keys add`"
                ) from None
            if not _valid_key(public):
                raise KeyFileError(
                    f"cannot read authorised CURVE key {path}: the public key is not "
                    "40 characters of Z85; remove the file or replace it with a public key "
                    "made by `ecs keys add`"
                )
            keys.add(public)
        return frozenset(keys)

    def authorized_names(self) -> dict[bytes, str]:
        """
        Each allowed public key (Z85) and its identity: the name of its file
        (L{ecs.net.identity}).  A key found in two files keeps the first
        name in sorted order.

        @raise KeyFileError: as L{authorized_keys}.
        """
        names: dict[bytes, str] = {}
        self.authorized_keys()  # the checks and their errors
        for path in sorted(self.authorized_dir.glob("*.key")):
            public, _ = zmq.auth.load_certificate(path)
            names.setdefault(public, path.name[: -len(".key")])
        return names


def _secure_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _create_pair(directory: Path, name: str) -> tuple[Path, Path]:
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def init_keys(directory: str | Path, force: bool = False) -> list[Path]:
    """
    Create the server and client pairs and the allow-list in C{directory}.

    @raise KeyFileError: when keys exist already and C{force} is not set, so
        that a running installation's keys are never replaced by accident.
    @return: the files written.
    """
    directory = Path(directory)
    existing = [directory / f"{n}.key_secret" for n in (SERVER, CLIENT)]
    if any(p.exists() for p in existing) and not force:
        raise KeyFileError(
            f"{directory} already holds keys; use --force to replace them "
            "(every agent and client must then get the new ones)"
        )
    _secure_dir(directory)
    _secure_dir(directory / AUTHORIZED)
    written: list[Path] = []
    for name in (SERVER, CLIENT):
        written.extend(_create_pair(directory, name))
    client_public = directory / f"{CLIENT}.key"
    allowed = directory / AUTHORIZED / f"{CLIENT}.key"
    _authorise(client_public, allowed)
    written.append(allowed)
    return written


def add_client(directory: str | Path, name: str) -> tuple[Path, Path]:
    """
    Create a further client pair C{name} and authorise its public key.

    The pair is written to C{DIR/clients/NAME.key[_secret]}, for copying to
    the client's host.
    """
    directory = Path(directory)
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise KeyFileError(f"client name {name!r} must be letters, digits, '-', '_' or '.'")
    _load_pair(directory, SERVER, need_secret=False)
    clients = directory / "clients"
    _secure_dir(clients)
    public, secret = _create_pair(clients, name)
    _authorise(public, directory / AUTHORIZED / f"{name}.key")
    return public, secret


AGENTS = "agents"


def valid_identity(name: str) -> bool:
    """A name usable as an identity and a file name."""
    return (
        0 < len(name) <= 200
        and not name.startswith(".")
        and all(c.isalnum() or c in "-_.:@#," for c in name)
    )


def enrol_agent(directory: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """
    Create agent identity C{name}'s own pair in C{DIR/agents/} and authorise
    its public key as C{authorized/NAME.key}.

    With C{force}, an identity already enrolled gets a new pair (a key
    rotation: the old key is refused from the next re-read of the
    allow-list).  Without it, an existing pair is an error, and so is an
    allow-list entry for C{name} without its secret here (the identity was
    enrolled on another host: copy its pair from there).

    @raise KeyFileError: naming the problem and the command that solves it.
    """
    directory = Path(directory)
    if not valid_identity(name):
        raise KeyFileError(
            f"agent identity {name!r} must be 1-200 letters, digits or '-_.:@#,' "
            "and not start with '.'"
        )
    agents = directory / AGENTS
    allowed = directory / AUTHORIZED / f"{name}.key"
    secret = agents / f"{name}.key_secret"
    if not force and secret.exists():
        raise KeyFileError(f"{name} already has a key pair in {agents}; use --force to rotate it")
    if not force and allowed.exists():
        raise KeyFileError(
            f"{name} is enrolled ({allowed}) but its secret key is not in {agents}: copy "
            f"{name}.key and {name}.key_secret from the host that made them, or make a new "
            f"pair with `ecs keys add --agent {name} --force --dir {directory}`"
        )
    _secure_dir(agents)
    public_path, secret_path = _create_pair(agents, name)
    _authorise(public_path, allowed)
    return public_path, secret_path


def _authorise(public: Path, allowed: Path) -> None:
    """
    Copy a public key file into the allow-list atomically: a serving
    process re-reads C{authorized/} when it changes, and must never see a
    half-written file.
    """
    partial = allowed.with_name(f".{allowed.name}.partial")
    shutil.copyfile(public, partial)
    os.replace(partial, allowed)


def _load_pair(directory: Path, name: str, need_secret: bool) -> tuple[bytes, bytes | None]:
    secret_path = directory / f"{name}.key_secret"
    public_path = directory / f"{name}.key"
    path = secret_path if secret_path.exists() else public_path
    if need_secret and not secret_path.exists():
        raise KeyFileError(
            f"no CURVE key {secret_path}: run `ecs keys init --dir {directory}` "
            "(or set `security: none` for a quick local run)"
        )
    if not path.exists():
        raise KeyFileError(
            f"no CURVE key {public_path}: run `ecs keys init --dir {directory}` "
            "(or set `security: none` for a quick local run)"
        )
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read CURVE key {path}: {e}") from e
    if need_secret and secret is None:
        raise KeyFileError(
            f"no secret key in {path}: run `ecs keys init --dir {directory}` "
            "(or set `security: none` for a quick local run)"
        )
    for what, key in (("public", public), ("secret", secret)):
        if key is not None and not _valid_key(key):
            raise KeyFileError(
                f"cannot read CURVE key {path}: the {what} key is not 40 characters of Z85"
            )
    return public, secret


def _valid_key(key: bytes) -> bool:
    """True for a CURVE key in Z85 text (40 characters, 32 bytes decoded)."""
    try:
        return len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError, TypeError):
        return False


def load_keys(
    directory: str | Path,
    need_server_secret: bool = True,
    identity: str = CLIENT,
    enrol: bool = False,
) -> CurveKeys:
    """
    Load a key directory made by L{init_keys}.

    @param need_server_secret: False for pure clients (the CLI on another
        host), which only verify servers.  A serving process on a host
        without C{server.key_secret} serves with the host's own pair
        (L{host_pair}, made here at the first start).
    @param identity: whose client pair: C{client} (the host's operator
        pair) or an agent identity (C{DIR/agents/NAME.key_secret},
        L{enrol_agent}).
    @param enrol: make the agent's pair when it has none yet and none is
        authorised under its name (an agent placed on the host that holds
        the allow-list enrols itself at its first start).
    @raise KeyFileError: naming the missing file and the command that makes it.
    """
    directory = Path(directory)
    server_public, server_secret = _load_pair(directory, SERVER, False)
    host_public = host_secret = None
    if need_server_secret and server_secret is None:
        host_public, host_secret = host_pair(directory)
    if identity == CLIENT:
        client_public, client_secret = _load_pair(directory, CLIENT, True)
    else:
        agents = directory / AGENTS
        if enrol and not (agents / f"{identity}.key_secret").exists():
            enrol_agent(directory, identity)
        if not (agents / f"{identity}.key_secret").exists():
            raise KeyFileError(
                f"no key pair for agent identity {identity} in {agents}: run "
                f"`ecs keys add --agent {identity} --dir {directory}` on the host of the "
                "allow-list and copy the pair here"
            )
        client_public, client_secret = _load_pair(agents, identity, True)
    assert client_secret is not None
    authorized = directory / AUTHORIZED
    if need_server_secret and not authorized.is_dir():
        raise KeyFileError(f"no allow-list directory {authorized}: run `ecs keys init --dir {directory}`")
    return CurveKeys(
        server_public, server_secret, client_public, client_secret, authorized, identity,
        host_public, host_secret,
    )


def host_pair(directory: str | Path) -> tuple[bytes, bytes]:
    """
    This host's own serving pair (C{DIR/host.key[_secret]}), made at the
    first call: both files appear at once (made aside, then renamed), so
    two agents starting together on a host never read half a key; the
    second to rename wins, and each serves with what it read.
    """
    directory = Path(directory)
    if not (directory / f"{HOST}.key_secret").exists():
        _secure_dir(directory)
        aside = Path(tempfile.mkdtemp(prefix=".host-", dir=directory))
        try:
            public, secret = _create_pair(aside, HOST)
            os.replace(public, directory / public.name)
            os.replace(secret, directory / secret.name)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    public_key, secret_key = _load_pair(directory, HOST, True)
    assert secret_key is not None
    return public_key, secret_key


def ensure_ssh_key(path: str | Path) -> bool:
    """
    Make an ed25519 SSH private key at C{path} (OpenSSH format, mode 0600,
    folder 0700, its public key in C{path.pub}) unless one is there; a key
    readable by others is made 0600.  Used for the admin shell's host key
    and the ssh launcher's client key.  A few hundred bytes of file I/O, done
    at start-up.

    @return: whether a key was made.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from twisted.conch.ssh.keys import Key

    path = Path(path)
    made = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = ed25519.Ed25519PrivateKey.generate()
        data = secret.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        temporary = path.with_name(path.name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        made = True
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    key = Key.fromFile(str(path))
    if key.isPublic():
        raise KeyFileError(f"{path} holds a public key; a private key is needed")
    public = path.with_name(path.name + ".pub")
    line = key.public().toString("OPENSSH").decode("ascii") + "\n"
    if not public.exists() or public.read_text(encoding="ascii", errors="replace") != line:
        public.write_text(line, encoding="ascii")
    return made
