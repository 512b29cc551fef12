# -*- test-case-name: tests.test_launch_ssh -*-
"""
Our SSH known-hosts file, in OpenSSH's format, and key fingerprints.

The SSH launcher checks every host key against this file (port included,
hashed host names too) before it authenticates: L{KnownHosts.check} either
returns or raises L{LaunchError} C{host_key} naming the host, the key's
fingerprint and the file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from ecs.launch import LaunchError


def fingerprint(blob: bytes) -> str:
    """The OpenSSH SHA256 fingerprint of a public key blob (C{SHA256:...})."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _host_patterns(host: str, port: int) -> list[str]:
    return [host, f"[{host}]:22"] if port == 22 else [f"[{host}]:{port}"]


def _matches(field: str, names: list[str]) -> bool:
    """Whether a known-hosts host field (comma list or hashed C{|1|salt|hash}) names one of C{names}."""
    if field.startswith("|1|"):
        try:
            _, _, salt, digest = field.split("|")
            salt_b, digest_b = base64.b64decode(salt), base64.b64decode(digest)
        except ValueError:
            return False
        return any(
            hmac.compare_digest(hmac.new(salt_b, name.encode(), hashlib.sha1).digest(), digest_b) for name in names
        )
    return any(pattern in names for pattern in field.split(","))


class KnownHosts:
    """
    Our known-hosts file, in OpenSSH's format: C{[host]:port keytype base64}
    lines (plain C{host} for port 22; hashed C{|1|...} hosts too;
    C{@revoked} lines refuse a key; wildcards and C{@cert-authority} are not
    supported and never match).  The file is re-read when it changes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._lines: list[tuple[str, str, str, bytes]] = []

    def _load(self) -> list[tuple[str, str, str, bytes]]:
        # A small local file, read again only when its mtime or size changed.
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise LaunchError("host_key", f"cannot read known-hosts file {self.path}: {e.strerror}") from None
        if self._stamp != (st.st_mtime_ns, st.st_size):
            self._lines = self.parse(self.path.read_text(errors="replace"))
            self._stamp = (st.st_mtime_ns, st.st_size)
        return self._lines

    @staticmethod
    def parse(text: str) -> list[tuple[str, str, str, bytes]]:
        """(marker, hosts, key type, key blob) of each valid line; others are skipped."""
        entries = []
        for line in text.splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            marker = fields.pop(0) if fields[0].startswith("@") else ""
            if len(fields) < 3:
                continue
            try:
                blob = base64.b64decode(fields[2], validate=True)
            except ValueError:
                continue
            entries.append((marker, fields[0], fields[1], blob))
        return entries

    def known_types(self, host: str, port: int) -> list[str]:
        """The key types listed for C{host}:C{port}."""
        names = _host_patterns(host, port)
        return [kind for marker, hosts, kind, _ in self._load() if not marker and _matches(hosts, names)]

    def check(self, host: str, port: int, blob: bytes) -> None:
        """Return if C{blob} is a known key of C{host}:C{port}; else raise L{LaunchError} C{host_key}."""
        names = _host_patterns(host, port)
        found = False
        for marker, hosts, _, known in self._load():
            if not _matches(hosts, names):
                continue
            if marker == "@revoked" and known == blob:
                raise LaunchError("host_key", f"host key of {names[0]} ({fingerprint(blob)}) is revoked")
            if not marker:
                found = True
                if hmac.compare_digest(known, blob):
                    return
        what = "does not match the known key" if found else "is unknown"
        raise LaunchError(
            "host_key", f"host key of {names[0]} ({fingerprint(blob)}) {what} in {self.path}"
        )
