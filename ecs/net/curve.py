# -*- test-case-name: tests.test_zmq_transport -*-
"""
CURVE security for L{ecs.net.zeromq}: the allow-list of client keys.

The allow-list is pyzmq's ZAP authenticator thread on the node's context,
whose callback is a set lookup (plus a C{stat} of C{authorized/}, re-read
when it changed: L{KeyAllowList}).  What a client does when a server refuses
its handshake is in L{ecs.net.handshake}.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from ecs.net.keys import CurveKeys, KeyFileError

_Signature = tuple[tuple[str, int, int], ...]


def _identity_changes(old: dict[bytes, str], new: dict[bytes, str]) -> list[str]:
    """What changed, per identity, between two loads of the allow-list."""
    before = {name: key.decode("ascii", "replace") for key, name in old.items()}
    after = {name: key.decode("ascii", "replace") for key, name in new.items()}
    changes = []
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name), after.get(name)
        if was == now:
            continue
        if was is None:
            changes.append(f"{name} enrolled: key {now}")
        elif now is None:
            changes.append(f"{name} revoked: key {was} no longer allowed")
        else:
            changes.append(f"{name} rotated: key {was} replaced by {now}")
    return changes


class KeyAllowList:
    """
    ZAP credentials provider: the set of authorised client keys.

    L{callback} runs in pyzmq's authenticator thread, once per handshake
    (rare: one per connecting socket).  It compares a signature of
    C{authorized/} (the directory's and each C{*.key} file's C{stat}) with
    the one at the last load and re-reads the keys when it changed, so
    C{ecs keys add} takes effect for new connections without a restart.  A
    load within L{RACY} seconds of a change is not trusted (file times may
    be that coarse, so a second change could keep the same signature): the
    next handshake loads again.  A reload that fails (a damaged file) is
    logged once per state of the directory, and the previous set stays.

    @param call_in_reactor: runs a log call in the reactor thread
        (C{reactor.callFromThread}); L{callback} never logs directly.
    """

    _log = Logger()

    #: How recent (in seconds) a change may be for a load to be re-done.
    RACY = 2.0

    def __init__(
        self,
        keys: CurveKeys,
        call_in_reactor: Callable[..., Any] = lambda f, *a, **kw: f(*a, **kw),
    ) -> None:
        self._source = keys
        self._call = call_in_reactor
        self._lock = threading.Lock()
        self._refused_keys: set[bytes] = set()
        self.refused = 0
        # The signature is taken before the keys are read, so that a change
        # in between is seen at the next handshake.
        try:
            self._signature, self._racy = self._signature_now()
        except OSError as e:
            raise KeyFileError(f"cannot read the CURVE allow-list: {e}") from None
        self.names = keys.authorized_names()
        self.keys = frozenset(self.names)
        self.loads = 1
        self._failed: _Signature | str | None = None

    def _signature_now(self) -> tuple[_Signature, bool]:
        """The directory's signature, and whether it changed too recently to trust."""
        directory = self._source.authorized_dir
        stats = [(".", os.stat(directory))]
        with os.scandir(directory) as entries:
            stats += [(e.name, e.stat()) for e in entries if e.name.endswith(".key")]
        signature = tuple(sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats))
        newest = max(st.st_mtime_ns for _, st in stats)
        return signature, time.time_ns() - newest < self.RACY * 1e9

    def reload_if_changed(self) -> None:
        """Re-read the keys if C{authorized/} changed since the last load."""
        with self._lock:
            signature: _Signature | None = None
            try:
                signature, racy = self._signature_now()
                if signature == self._signature and not self._racy:
                    return
                if signature == self._failed and not racy:
                    return
                names = self._source.authorized_names()
            except (OSError, KeyFileError) as e:
                # Log once per state of the directory (or per error, when
                # the directory itself cannot be read).
                failed = signature if signature is not None else str(e)
                if failed != self._failed:
                    self._failed = failed
                    self._call(
                        self._log.error,
                        "CURVE allow-list not reloaded, the previous {count} key(s) stay "
                        "authorised: {error}",
                        count=len(self.keys),
                        error=e,
                    )
                return
            keys = frozenset(names)
            added, removed = len(keys - self.keys), len(self.keys - keys)
            changes = _identity_changes(self.names, names)
            self.names, self.keys, self._signature, self._racy = names, keys, signature, racy
            self._failed = None
            self.loads += 1
            if added or removed:
                self._call(
                    self._log.info,
                    "CURVE allow-list {directory} reloaded: {count} key(s), "
                    "{added} added, {removed} removed",
                    directory=str(self._source.authorized_dir),
                    count=len(keys),
                    added=added,
                    removed=removed,
                )
            for change in changes:
                # The audit trail of rotations and revocations (a WARN line
                # in every serving process); enrolments are routine (every
                # agent placed on this host enrols at its first start).
                level = self._log.debug if " enrolled: " in change else self._log.warn
                self._call(level, "CURVE identity {change}", change=change)

    def identity(self, key: bytes) -> str | None:
        """The identity (file name) of an allowed key (Z85), None when it is not (or no longer) allowed."""
        return self.names.get(key)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP: is C{key} (Z85) allowed?  Runs in the authenticator thread."""
        try:
            self.reload_if_changed()
        except Exception:
            # Never let a bug here take down the authenticator thread.
            self._call(self._log.failure, "CURVE allow-list reload failed", Failure())
        allowed = key in self.keys
        if not allowed:
            self.refused += 1
            if key not in self._refused_keys and len(self._refused_keys) < 1000:
                self._refused_keys.add(key)
                self._call(
                    self._log.warn,
                    "refused a CURVE client with key {key}: not in {directory} "
                    "(add it with `ecs keys add`)",
                    key=key.decode("ascii", "replace"),
                    directory=str(self._source.authorized_dir),
                )
        return allowed
