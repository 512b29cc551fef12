"""
A real OpenSSH server for tests, on a free loopback port, with its own host
key, an authorised user key and its configuration in a temp dir.

L{start_sshd} starts C{/usr/sbin/sshd -D -e -f <config>} as a child process
(killed by pid in cleanup), waits until it listens, and writes our
known-hosts file for C{[127.0.0.1]:<port>}.  Tests are skipped with a reason
when sshd or ssh-keygen is missing (CI installs C{openssh-server}).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor, utils
from twisted.trial.unittest import SkipTest

from tests.procs import Watched, free_port, spawn

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"


@attrs.define
class SshServer:
    """
    A running sshd.

    @ivar port: its loopback port.
    @ivar user: the user we log in as (the one running the tests).
    @ivar identity: our private key (ed25519), authorised for C{user}.
    @ivar known_hosts: our known-hosts file, naming the server's key.
    @ivar host_key_line: the server's public key, C{"ssh-ed25519 AAAA..."}.
    @ivar tmp: the temp dir holding it all.
    @ivar process: the sshd process (its output lines in C{process.lines}).
    @ivar pid: the pid of the listening sshd (per-connection sshds are its children).
    """

    port: int
    user: str
    identity: Path
    known_hosts: Path
    host_key_line: str
    tmp: Path
    process: Watched
    pid: int


async def keygen(path: Path, kind: str = "ed25519") -> str:
    """Make a key pair without passphrase at C{path}; return the public key line."""
    _out, err, code = await utils.getProcessOutputAndValue(
        SSH_KEYGEN, ["-q", "-t", kind, "-N", "", "-C", "ecs-test", "-f", str(path)], env={}
    )
    if code != 0:
        raise AssertionError(f"ssh-keygen failed: {err.decode(errors='replace')}")
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


async def start_sshd(testcase: Any) -> SshServer:
    """Start an sshd for C{testcase}; it is stopped in the test's cleanup."""
    for binary in (SSHD, SSH_KEYGEN):
        if not os.access(binary, os.X_OK):
            raise SkipTest(f"{binary} is missing (Debian package openssh-server / openssh-client)")
    if os.getuid() == 0:
        # sshd's privilege separation needs this directory when run as root.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    tmp = Path(testcase.mktemp()).resolve()
    tmp.mkdir(parents=True)
    host_key = await keygen(tmp / "host_ed25519")
    user_key = await keygen(tmp / "id_ed25519")
    (tmp / "authorized_keys").write_text(user_key + "\n")
    user = pwd.getpwuid(os.getuid()).pw_name
    for attempt in range(5):
        port = free_port()
        config = tmp / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\n"
            f"Port {port}\n"
            f"HostKey {tmp / 'host_ed25519'}\n"
            f"AuthorizedKeysFile {tmp / 'authorized_keys'}\n"
            f"PidFile {tmp / 'sshd.pid'}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            "LogLevel VERBOSE\n"
        )
        process, transport = spawn(testcase, "sshd", [SSHD, "-D", "-e", "-f", str(config)], cwd=str(tmp))
        try:
            await process.wait_for(rf"Server listening on 127\.0\.0\.1 port {port}", timeout=15)
        except AssertionError:
            if process.ended.called and attempt < 4:
                continue  # the port was taken in between: try another
            raise
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
        return SshServer(port, user, tmp / "id_ed25519", known_hosts, host_key, tmp, process, transport.pid)
    raise AssertionError("sshd did not start")


__all__ = ["SshServer", "free_port", "keygen", "reactor", "start_sshd"]
