# -*- test-case-name: tests.test_store_keys -*-
"""
Users' SSH public keys, for the ECA's SSH admin shell (table C{user_keys},
schema version 2).

A key is registered for one user (C{ecs user key add NAME FILE}); logging in
to the shell with that key authenticates as that user.  Keys are parsed and
checked before any SQL runs (L{parse_public_key}): only public keys of the
types ed25519, ECDSA and RSA (at least L{RSA_MIN_BITS} bits) are accepted.
They are stored in the one-line OpenSSH form without comment, keyed by
their SHA-256 fingerprint written as C{ssh-keygen -l} writes it
(C{SHA256:} and unpadded base64 of the key blob).  Deleting a user deletes
their keys (C{ON DELETE CASCADE}).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from twisted.conch.ssh.keys import BadKeyError, Key

from ecs.store.errors import StoreError, _check_text, _show, check_name
from ecs.store.txn import _all, _deferred, _exists, _one, _StoreArea, _Txn

ACCEPTED_TYPES = {
    "ssh-ed25519": "ed25519",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "ssh-rsa": "RSA",
}
"""The OpenSSH key types a user may register, and their short names."""

RSA_MIN_BITS = 2048
KEY_LINE_MAX = 16_384
COMMENT_MAX = 200

_FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_COMMENT_RE = re.compile(r"[^\x00-\x1f\x7f]*")


@dataclass(frozen=True, slots=True)
class UserKeyRow:
    """
    A registered SSH public key.

    @ivar fingerprint: C{SHA256:...} as C{ssh-keygen -l} shows it.
    @ivar key: the OpenSSH public key line, C{TYPE BASE64}, no comment.
    @ivar type: the key's OpenSSH type, e.g. C{ssh-ed25519}.
    """

    fingerprint: str
    user: str
    key: str
    comment: str
    created: float

    @property
    def type(self) -> str:
        """The key's OpenSSH type (the first word of L{key})."""
        return self.key.split(" ", 1)[0]


def fingerprint(blob: bytes) -> str:
    """The SHA-256 fingerprint of a public key blob, as C{ssh-keygen -l} writes it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def parse_public_key(key_line: object) -> tuple[Key, str]:
    """
    Parse one OpenSSH public key line (C{TYPE BASE64 [COMMENT]}); the key
    and the comment of the line (C{""} if none).

    @raise StoreError: C{bad_request}, naming what is wrong: not one line,
        not a public key, a type other than L{ACCEPTED_TYPES}, an RSA key
        shorter than L{RSA_MIN_BITS} bits.
    """
    if not isinstance(key_line, str) or len(key_line) > KEY_LINE_MAX:
        raise StoreError("bad_request", f"invalid SSH public key {_show(key_line)}: one text line is needed")
    text = key_line.strip()
    if "PRIVATE KEY" in text:
        raise StoreError("bad_request", "this is a private key: give the public key (the .pub file)")
    if not text or "\n" in text or "\r" in text:
        raise StoreError("bad_request", "an SSH public key is one line: TYPE BASE64 [COMMENT]")
    words = text.split(None, 2)
    if words[0] not in ACCEPTED_TYPES:
        raise StoreError(
            "bad_request",
            f"unsupported SSH key type {_show(words[0])}: use {', '.join(sorted(ACCEPTED_TYPES))}",
        )
    if len(words) < 2:
        raise StoreError("bad_request", f"the {words[0]} key has no key data")
    try:
        key = Key.fromString(f"{words[0]} {words[1]}".encode("ascii"))
    except (BadKeyError, ValueError, TypeError, UnicodeEncodeError) as e:
        raise StoreError("bad_request", f"invalid {words[0]} public key: {e or 'cannot be decoded'}") from None
    except Exception as e:  # the key parsers raise assorted errors on garbage
        raise StoreError("bad_request", f"invalid {words[0]} public key: {type(e).__name__}") from None
    if not key.isPublic() or key.sshType().decode("ascii") != words[0]:
        raise StoreError("bad_request", f"invalid {words[0]} public key: the data is of another type")
    if words[0] == "ssh-rsa" and key.size() < RSA_MIN_BITS:
        raise StoreError("bad_request", f"RSA key of {key.size()} bits is too short: use at least {RSA_MIN_BITS}")
    return key, words[2].strip() if len(words) > 2 else ""


def _check_comment(comment: object) -> str:
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX or not _COMMENT_RE.fullmatch(comment):
        raise StoreError(
            "bad_request",
            f"invalid key comment {_show(comment)}: up to {COMMENT_MAX} characters, no control characters",
        )
    return comment


class KeyOperations(_StoreArea):
    """The operations on users' SSH public keys."""

    @_deferred
    async def add_user_key(self, user: str, key_line: str, comment: str | None = None) -> UserKeyRow:
        """
        Register an SSH public key (one OpenSSH line) for C{user}.
        C{comment} defaults to the line's own comment.  C{conflict} if the
        key is already registered (for anyone), C{not_found} for an unknown
        user, C{bad_request} for a key that is not accepted
        (L{parse_public_key}).
        """
        check_name(user, "user name")
        key, own_comment = parse_public_key(key_line)
        text = _check_comment(own_comment if comment is None else comment)
        line = key.toString("OPENSSH").decode("ascii")
        key_print = fingerprint(key.blob())
        now = self._now()

        def op(txn: _Txn) -> UserKeyRow:
            if not _exists(txn, "users", "name", user):
                raise StoreError("not_found", f"no user {user}")
            owner = _one(txn, "SELECT user FROM user_keys WHERE fingerprint = ?", (key_print,))
            if owner is not None:
                raise StoreError("conflict", f"key {key_print} is already registered for {owner[0]}")
            txn.execute(
                "INSERT INTO user_keys (fingerprint, user, key, comment, created) VALUES (?, ?, ?, ?, ?)",
                (key_print, user, line, text, now),
            )
            return UserKeyRow(key_print, user, line, text, now)

        return await self._write(op, what=f"add SSH key for {user}")

    @_deferred
    async def user_keys(self, user: str | None = None) -> list[UserKeyRow]:
        """The registered keys (of C{user}), by user and date."""
        if user is not None:
            check_name(user, "user name")
        sql = "SELECT fingerprint, user, key, comment, created FROM user_keys"
        params: tuple[str, ...] = ()
        if user is not None:
            sql += " WHERE user = ?"
            params = (user,)
        sql += " ORDER BY user, created, fingerprint"

        def op(txn: _Txn) -> list[UserKeyRow]:
            return [UserKeyRow(*row) for row in _all(txn, sql, params)]

        return await self._read(op, what="list SSH keys")

    @_deferred
    async def delete_user_key(self, fingerprint: str) -> UserKeyRow:
        """Forget a key; the row it was.  C{not_found} if no key has this fingerprint."""
        _check_text(fingerprint, "key fingerprint")
        if not _FINGERPRINT_RE.fullmatch(fingerprint):
            raise StoreError(
                "bad_request", f"invalid key fingerprint {_show(fingerprint)}: SHA256:... as ecs user key list shows"
            )

        def op(txn: _Txn) -> UserKeyRow:
            row = _one(
                txn,
                "SELECT fingerprint, user, key, comment, created FROM user_keys WHERE fingerprint = ?",
                (fingerprint,),
            )
            if row is None:
                raise StoreError("not_found", f"no SSH key {fingerprint}")
            txn.execute("DELETE FROM user_keys WHERE fingerprint = ?", (fingerprint,))
            return UserKeyRow(*row)

        return await self._write(op, what=f"delete SSH key {fingerprint}")

    @_deferred
    async def user_for_key(self, key: bytes | str) -> str | None:
        """
        The user a key is registered for, or C{None}: C{key} is a public key
        blob (as an SSH client offers it) or a fingerprint (C{SHA256:...}).
        """
        if isinstance(key, bytes):
            wanted = fingerprint(key)
        elif isinstance(key, str) and _FINGERPRINT_RE.fullmatch(key):
            wanted = key
        else:
            return None

        def op(txn: _Txn) -> str | None:
            row = _one(txn, "SELECT user FROM user_keys WHERE fingerprint = ?", (wanted,))
            return None if row is None else str(row[0])

        return await self._read(op, what="look up SSH key")
