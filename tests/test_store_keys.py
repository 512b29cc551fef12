"""
Tests for L{ecs.store.keys}: users' SSH public keys on a real SQLite file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, TestCase

from ecs.store import Store, StoreError
from ecs.store.keys import UserKeyRow, fingerprint, parse_public_key

T0 = 1_700_000_000.0


def public_line(private: object, comment: str = "") -> str:
    """The OpenSSH public key line of a cryptography private key."""
    data = private.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode("ascii")
    return f"{data} {comment}".strip()


def ed25519_line(comment: str = "") -> str:
    """A fresh ed25519 public key line."""
    return public_line(ed25519.Ed25519PrivateKey.generate(), comment)


class KeyStoreTests(TestCase):
    """add_user_key, user_keys, delete_user_key, user_for_key."""

    def setUp(self) -> Deferred[None]:
        self.path = Path(self.mktemp()) / "ecs.sqlite"
        self.clock = Clock()
        self.clock.advance(T0)

        async def open_() -> None:
            self.store = await Store.open(self.path, reactor, clock=self.clock)
            self.addCleanup(self.store.close)
            await self.store.add_user("alice", "x", ["operator"])
            await self.store.add_user("bob", "x", ["viewer"])
            await self.store.add_user("root", "x", ["admin"])

        return Deferred.fromCoroutine(open_())

    async def refused(self, d: Deferred[object], code: str, *words: str) -> str:
        """C{d} fails with a StoreError of C{code} whose reason names C{words}; the reason."""
        try:
            await d
        except StoreError as e:
            self.assertEqual(e.code, code, e.reason)
            for word in words:
                self.assertIn(word, e.reason)
            return e.reason
        self.fail(f"no StoreError {code}")

    async def test_add_and_list(self) -> None:
        """A key is stored without the line's comment, keyed by its SHA-256 fingerprint, with that comment apart."""
        line = ed25519_line("alice@laptop")
        row = await self.store.add_user_key("alice", line)
        key, comment = parse_public_key(line)
        self.assertEqual(comment, "alice@laptop")
        stored = " ".join(line.split()[:2])
        self.assertEqual(row, UserKeyRow(fingerprint(key.blob()), "alice", stored, "alice@laptop", T0))
        self.assertTrue(row.fingerprint.startswith("SHA256:"))
        self.assertEqual(row.type, "ssh-ed25519")
        self.assertEqual(await self.store.user_keys(), [row])
        self.assertEqual(await self.store.user_keys("alice"), [row])
        self.assertEqual(await self.store.user_keys("bob"), [])

    async def test_given_comment_wins(self) -> None:
        """An explicit comment replaces the line's."""
        row = await self.store.add_user_key("alice", ed25519_line("old"), "new comment")
        self.assertEqual(row.comment, "new comment")

    async def test_ecdsa_and_rsa_accepted(self) -> None:
        """ECDSA and RSA (2048 bits) keys are accepted too."""
        ecdsa = await self.store.add_user_key("bob", public_line(ec.generate_private_key(ec.SECP256R1())))
        rsa_row = await self.store.add_user_key("bob", public_line(rsa.generate_private_key(65537, 2048)))
        self.assertEqual({ecdsa.type, rsa_row.type}, {"ecdsa-sha2-nistp256", "ssh-rsa"})
        self.assertEqual(len(await self.store.user_keys("bob")), 2)

    async def test_refused_keys(self) -> None:
        """Garbage, private keys, short RSA, DSA, several lines and mismatched types are refused, naming why."""
        await self.refused(
            self.store.add_user_key("alice", "hello"), "bad_request", "unsupported SSH key type", "hello"
        )
        await self.refused(self.store.add_user_key("alice", "ssh-ed25519"), "bad_request", "no key data")
        await self.refused(
            self.store.add_user_key("alice", "ssh-ed25519 AAAA!!notbase64"), "bad_request", "invalid ssh-ed25519"
        )
        await self.refused(self.store.add_user_key("alice", ""), "bad_request", "one line")
        two_lines = ed25519_line() + "\n" + ed25519_line()
        await self.refused(self.store.add_user_key("alice", two_lines), "bad_request", "one line")
        await self.refused(self.store.add_user_key("alice", 42), "bad_request", "42")  # type: ignore[arg-type]
        private = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode("ascii")
        await self.refused(self.store.add_user_key("alice", private), "bad_request", "private key")
        short = public_line(rsa.generate_private_key(65537, 1024))
        await self.refused(self.store.add_user_key("alice", short), "bad_request", "1024 bits", "2048")
        dss = public_line(dsa.generate_private_key(1024))
        await self.refused(self.store.add_user_key("alice", dss), "bad_request", "ssh-dss")
        # An ed25519 blob labelled as RSA.
        data = ed25519_line().split()[1]
        await self.refused(self.store.add_user_key("alice", f"ssh-rsa {data}"), "bad_request", "ssh-rsa")
        await self.refused(self.store.add_user_key("alice", ed25519_line(), "bad\x1bcomment"), "bad_request", "comment")
        self.assertEqual(await self.store.user_keys(), [])

    async def test_unknown_user_and_duplicates(self) -> None:
        """An unknown user is not_found; a key registered once (for anyone) is a conflict naming its owner."""
        line = ed25519_line()
        await self.refused(self.store.add_user_key("carol", line), "not_found", "carol")
        await self.refused(self.store.add_user_key("bad name", line), "bad_request", "user name")
        await self.store.add_user_key("alice", line)
        await self.refused(self.store.add_user_key("bob", line + " other comment"), "conflict", "alice")

    async def test_user_for_key(self) -> None:
        """A key blob or a fingerprint finds its user; unknown or malformed ones find nobody."""
        line = ed25519_line()
        row = await self.store.add_user_key("alice", line)
        key, _ = parse_public_key(line)
        self.assertEqual(await self.store.user_for_key(key.blob()), "alice")
        self.assertEqual(await self.store.user_for_key(row.fingerprint), "alice")
        other, _ = parse_public_key(ed25519_line())
        self.assertIsNone(await self.store.user_for_key(other.blob()))
        self.assertIsNone(await self.store.user_for_key("SHA256:nonsense"))
        self.assertIsNone(await self.store.user_for_key(3))  # type: ignore[arg-type]

    async def test_delete(self) -> None:
        """A key is deleted by fingerprint; an unknown or malformed fingerprint is refused."""
        row = await self.store.add_user_key("alice", ed25519_line())
        await self.refused(self.store.delete_user_key("nonsense"), "bad_request", "nonsense")
        missing = fingerprint(b"nothing")
        await self.refused(self.store.delete_user_key(missing), "not_found", missing)
        self.assertEqual(await self.store.delete_user_key(row.fingerprint), row)
        self.assertEqual(await self.store.user_keys(), [])
        self.assertIsNone(await self.store.user_for_key(row.fingerprint))

    async def test_deleting_user_deletes_keys(self) -> None:
        """Keys go with their user (ON DELETE CASCADE)."""
        row = await self.store.add_user_key("bob", ed25519_line())
        await self.store.add_user_key("alice", ed25519_line())
        await self.store.delete_user("bob")
        self.assertEqual([r.user for r in await self.store.user_keys()], ["alice"])
        self.assertIsNone(await self.store.user_for_key(row.fingerprint))

    def test_fingerprint_as_ssh_keygen(self) -> None:
        """The fingerprint is the one ssh-keygen -l shows."""
        if shutil.which("ssh-keygen") is None:
            raise SkipTest("ssh-keygen (openssh-client) is not installed")
        folder = Path(self.mktemp())
        folder.mkdir()
        line = ed25519_line("x")
        (folder / "k.pub").write_text(line + "\n")
        shown = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(folder / "k.pub")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        key, _ = parse_public_key(line)
        self.assertEqual(fingerprint(key.blob()), shown)


class CliUserKeyTests(TestCase):
    """C{ecs user key add|list|del} (L{ecs.users.cli_user_key})."""

    def setUp(self) -> Deferred[None]:
        self.state = Path(self.mktemp())

        async def seed() -> None:
            store = await Store.open(self.state / "ecs.sqlite", reactor)
            try:
                await store.add_user("alice", "x", ["operator"])
            finally:
                await store.close()

        return Deferred.fromCoroutine(seed())

    async def key(self, *words: str, stdin: str = "", comment: str | None = None) -> tuple[int, str, str]:
        """Run C{ecs user key WORDS...}; exit code, stdout, stderr."""
        import io

        from ecs.cli import build_parser
        from ecs.users import cli_user_key

        argv = ["user", "key", *words, "--state-dir", str(self.state)]
        if comment is not None:
            argv += ["--comment", comment]
        args = build_parser().parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        code = await cli_user_key(reactor, args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    async def test_add_list_delete(self) -> None:
        """A key from a file or stdin is added, listed with its fingerprint, and deleted by it."""
        folder = Path(self.mktemp())
        folder.mkdir()
        line = ed25519_line("alice@laptop")
        (folder / "id.pub").write_text("# my key\n\n" + line + "\n")
        code, out, err = await self.key("add", "alice", str(folder / "id.pub"))
        self.assertEqual(code, 0, err)
        key, _ = parse_public_key(line)
        printed = fingerprint(key.blob())
        self.assertEqual(out, f"key {printed} (ssh-ed25519) added for alice\n")
        code, out, err = await self.key("add", "alice", "-", stdin=ed25519_line(), comment="from stdin")
        self.assertEqual(code, 0, err)
        code, out, err = await self.key("list", "alice")
        self.assertEqual(code, 0, err)
        self.assertEqual(len(out.splitlines()), 2)
        self.assertIn(printed, out)
        self.assertIn("alice@laptop", out)
        self.assertIn("from stdin", out)
        code, out, err = await self.key("del", printed)
        self.assertEqual((code, out), (0, f"key {printed} of alice deleted\n"), err)
        code, out, err = await self.key("list")
        self.assertNotIn(printed, out)

    async def test_errors(self) -> None:
        """Bad usage exits 2; bad keys, unknown users, files and fingerprints exit 1, naming the problem."""
        self.assertEqual((await self.key("add", "alice"))[0], 2)
        self.assertEqual((await self.key("rotate"))[0], 2)
        self.assertEqual((await self.key("del"))[0], 2)
        code, _out, err = await self.key("add", "bob", "-", stdin=ed25519_line())
        self.assertEqual(code, 1)
        self.assertIn("no user bob", err)
        code, _out, err = await self.key("add", "alice", "-", stdin="ssh-ed25519 garbage")
        self.assertEqual(code, 1)
        self.assertIn("invalid ssh-ed25519", err)
        code, _out, err = await self.key("add", "alice", "-", stdin=ed25519_line() + "\n" + ed25519_line())
        self.assertEqual(code, 1)
        self.assertIn("holds 2 keys", err)
        code, _out, err = await self.key("add", "alice", "/nonexistent/id.pub")
        self.assertEqual(code, 1)
        self.assertIn("/nonexistent/id.pub", err)
        code, _out, err = await self.key("del", "SHA256:nope")
        self.assertEqual(code, 1)
        self.assertIn("SHA256:nope", err)
