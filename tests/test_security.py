# -*- test-case-name: tests.test_security -*-
"""
Tests for L{ecs.net.keys}: creating a CURVE key directory with safe file
modes, refusing to overwrite it by accident, authorising further clients,
and loading keys with errors that say which file is missing and which
command makes it.

Nothing here opens a socket; L{tests.test_zmq_transport} checks that the
keys written here are accepted (and unknown ones refused) on the wire.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zmq
import zmq.auth
from twisted.trial.unittest import SynchronousTestCase

from ecs.net.keys import CurveKeys, KeyFileError, add_client, init_keys, load_keys


def _mode(path: Path) -> int:
    """The permission bits of C{path}."""
    return stat.S_IMODE(os.stat(path).st_mode)


class InitKeysTests(SynchronousTestCase):
    """L{init_keys} writes a complete, private key directory."""

    def setUp(self) -> None:
        # A permissive umask must not leak into the modes of secret files.
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        self.dir = Path(self.mktemp()) / "keys"

    def test_files_written(self) -> None:
        """Both pairs and the allow-list entry are written and returned."""
        written = init_keys(self.dir)
        expected = {
            self.dir / "server.key",
            self.dir / "server.key_secret",
            self.dir / "client.key",
            self.dir / "client.key_secret",
            self.dir / "authorized" / "client.key",
        }
        self.assertEqual({Path(p) for p in written}, expected)
        for path in expected:
            self.assertTrue(path.is_file(), path)

    def test_secret_files_are_0600(self) -> None:
        """Secret key files are readable and writable by the owner only."""
        init_keys(self.dir)
        for name in ("server.key_secret", "client.key_secret"):
            self.assertEqual(_mode(self.dir / name), 0o600, name)

    def test_directories_are_0700(self) -> None:
        """The key directory and the allow-list directory are private."""
        init_keys(self.dir)
        self.assertEqual(_mode(self.dir), 0o700)
        self.assertEqual(_mode(self.dir / "authorized"), 0o700)

    def test_existing_directory_is_tightened(self) -> None:
        """A pre-existing world-readable directory is made 0700."""
        self.dir.mkdir(parents=True, mode=0o777)
        os.chmod(self.dir, 0o777)
        init_keys(self.dir)
        self.assertEqual(_mode(self.dir), 0o700)

    def test_client_key_authorised(self) -> None:
        """The generated client's public key is in the allow-list."""
        init_keys(self.dir)
        client_public, _ = zmq.auth.load_certificate(self.dir / "client.key")
        keys = load_keys(self.dir)
        self.assertEqual(keys.authorized_keys(), frozenset({client_public}))

    def test_keys_are_distinct_curve_keys(self) -> None:
        """Server and client pairs are different, valid 40-character Z85 keys."""
        init_keys(self.dir)
        keys = load_keys(self.dir)
        for key in (keys.server_public, keys.server_secret, keys.client_public, keys.client_secret):
            assert key is not None
            self.assertEqual(len(key), 40)
            self.assertEqual(len(zmq.utils.z85.decode(key)), 32)
        self.assertNotEqual(keys.server_public, keys.client_public)
        self.assertNotEqual(keys.server_secret, keys.client_secret)

    def test_refuses_to_overwrite(self) -> None:
        """A second init without force fails, mentions --force and keeps the keys."""
        init_keys(self.dir)
        before = {p.name: p.read_bytes() for p in self.dir.glob("*.key*")}
        error = self.assertRaises(KeyFileError, init_keys, self.dir)
        self.assertIn("--force", str(error))
        self.assertIn(str(self.dir), str(error))
        after = {p.name: p.read_bytes() for p in self.dir.glob("*.key*")}
        self.assertEqual(before, after)

    def test_refuses_when_only_one_secret_exists(self) -> None:
        """A directory holding just one of the secret keys is not overwritten either."""
        init_keys(self.dir)
        (self.dir / "server.key_secret").unlink()
        client_secret = (self.dir / "client.key_secret").read_bytes()
        self.assertRaises(KeyFileError, init_keys, self.dir)
        self.assertEqual((self.dir / "client.key_secret").read_bytes(), client_secret)

    def test_force_replaces(self) -> None:
        """With force the pairs are replaced by new ones, still private."""
        init_keys(self.dir)
        old = load_keys(self.dir)
        init_keys(self.dir, force=True)
        new = load_keys(self.dir)
        self.assertNotEqual(old.server_public, new.server_public)
        self.assertNotEqual(old.client_public, new.client_public)
        self.assertIn(new.client_public, new.authorized_keys())
        self.assertEqual(_mode(self.dir / "server.key_secret"), 0o600)


class AddClientTests(SynchronousTestCase):
    """L{add_client} creates and authorises further client pairs."""

    def setUp(self) -> None:
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        self.dir = Path(self.mktemp())
        init_keys(self.dir)

    def test_new_key_authorised(self) -> None:
        """The new client's public key joins the allow-list; the old one stays."""
        original = load_keys(self.dir).client_public
        public_path, secret_path = add_client(self.dir, "operator-1")
        public, secret = zmq.auth.load_certificate(secret_path)
        self.assertIsNotNone(secret)
        self.assertEqual(zmq.auth.load_certificate(public_path)[0], public)
        allowed = load_keys(self.dir).authorized_keys()
        self.assertEqual(allowed, frozenset({original, public}))
        self.assertTrue((self.dir / "authorized" / "operator-1.key").is_file())

    def test_new_pair_is_private(self) -> None:
        """The new pair lives in a 0700 clients/ directory with a 0600 secret."""
        public_path, secret_path = add_client(self.dir, "op.2")
        self.assertEqual(Path(public_path).parent, self.dir / "clients")
        self.assertEqual(_mode(self.dir / "clients"), 0o700)
        self.assertEqual(_mode(secret_path), 0o600)

    def test_secret_not_authorised_as_file(self) -> None:
        """Only public key files land in authorized/ (no secret is copied there)."""
        add_client(self.dir, "op3")
        for path in (self.dir / "authorized").iterdir():
            self.assertEqual(path.suffix, ".key", path)
            self.assertNotIn(b"secret-key", path.read_bytes())

    def test_no_partial_files_left(self) -> None:
        """Keys are placed in authorized/ whole (written aside, then renamed): no temporary file stays."""
        add_client(self.dir, "op4")
        names = sorted(p.name for p in (self.dir / "authorized").iterdir())
        self.assertEqual(names, ["client.key", "op4.key"])

    def test_bad_names_refused(self) -> None:
        """Names that could escape the directory or are empty are refused."""
        for name in ("", "../evil", "a/b", "sp ace"):
            self.assertRaises(KeyFileError, add_client, self.dir, name)
        self.assertFalse((self.dir.parent / "evil.key").exists())

    def test_without_init(self) -> None:
        """Adding a client to an empty directory names the init command."""
        empty = Path(self.mktemp())
        error = self.assertRaises(KeyFileError, add_client, empty, "op")
        self.assertIn(f"ecs keys init --dir {empty}", str(error))


class LoadKeysTests(SynchronousTestCase):
    """L{load_keys} loads what L{init_keys} wrote, or says what is missing."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        init_keys(self.dir)

    def test_round_trip(self) -> None:
        """The loaded keys are the ones in the files."""
        keys = load_keys(self.dir)
        self.assertIsInstance(keys, CurveKeys)
        server_public, server_secret = zmq.auth.load_certificate(self.dir / "server.key_secret")
        client_public, client_secret = zmq.auth.load_certificate(self.dir / "client.key_secret")
        self.assertEqual(
            (keys.server_public, keys.server_secret, keys.client_public, keys.client_secret),
            (server_public, server_secret, client_public, client_secret),
        )
        self.assertEqual(keys.authorized_dir, self.dir / "authorized")

    def test_missing_directory(self) -> None:
        """A missing directory names the server key file and the init command, and makes nothing."""
        missing = Path(self.mktemp())
        error = self.assertRaises(KeyFileError, load_keys, missing)
        self.assertIn(str(missing / "server.key"), str(error))
        self.assertIn(f"ecs keys init --dir {missing}", str(error))
        self.assertFalse(missing.exists())

    def test_missing_server_secret(self) -> None:
        """
        A serving host without the server secret (any agent host but the
        ECA's) serves with a pair of its own and still verifies servers
        with the server's public key.
        """
        server_public = load_keys(self.dir).server_public
        (self.dir / "server.key_secret").unlink()
        keys = load_keys(self.dir)
        self.assertIsNone(keys.server_secret)
        self.assertEqual(keys.server_public, server_public)
        self.assertIsNotNone(keys.host_secret)
        self.assertNotEqual(keys.host_public, server_public)
        self.assertEqual(keys.serving_pair(), (keys.host_public, keys.host_secret))

    def test_missing_client_secret(self) -> None:
        """A missing client secret is named, even for a pure client."""
        (self.dir / "client.key_secret").unlink()
        for need_server in (True, False):
            error = self.assertRaises(
                KeyFileError, load_keys, self.dir, need_server_secret=need_server
            )
            self.assertIn(str(self.dir / "client.key_secret"), str(error))
            self.assertIn("ecs keys init", str(error))

    def test_pure_client_needs_only_server_public(self) -> None:
        """A client-only host loads with just server.key: no server secret."""
        (self.dir / "server.key_secret").unlink()
        keys = load_keys(self.dir, need_server_secret=False)
        self.assertIsNone(keys.server_secret)
        self.assertEqual(keys.server_public, zmq.auth.load_certificate(self.dir / "server.key")[0])

    def test_pure_client_without_server_public(self) -> None:
        """A client without even the server's public key is told which file is missing."""
        (self.dir / "server.key_secret").unlink()
        (self.dir / "server.key").unlink()
        error = self.assertRaises(KeyFileError, load_keys, self.dir, need_server_secret=False)
        self.assertIn(str(self.dir / "server.key"), str(error))
        self.assertIn("ecs keys init", str(error))

    def test_missing_allow_list(self) -> None:
        """A server without authorized/ names that directory and the init command."""
        for path in (self.dir / "authorized").iterdir():
            path.unlink()
        (self.dir / "authorized").rmdir()
        error = self.assertRaises(KeyFileError, load_keys, self.dir)
        self.assertIn(str(self.dir / "authorized"), str(error))
        self.assertIn("ecs keys init", str(error))

    def test_unreadable_key_file(self) -> None:
        """A key file without a key is reported as unreadable, naming it."""
        (self.dir / "client.key_secret").write_bytes(b"\x00\xffnot a certificate\n")
        error = self.assertRaises(KeyFileError, load_keys, self.dir)
        self.assertIn(str(self.dir / "client.key_secret"), str(error))

    def test_secret_file_without_secret(self) -> None:
        """A secret file holding only a public key is a KeyFileError naming it."""
        public = (self.dir / "client.key").read_bytes()
        (self.dir / "client.key_secret").write_bytes(public)
        error = self.assertRaises(KeyFileError, load_keys, self.dir)
        self.assertIn(str(self.dir / "client.key_secret"), str(error))

    def test_malformed_key_text(self) -> None:
        """A key that is not 40 characters of Z85 is refused when loading, naming the file."""
        (self.dir / "server.key_secret").write_text(
            'metadata\ncurve\n    public-key = "tooshort"\n    secret-key = "tooshort"\n'
        )
        error = self.assertRaises(KeyFileError, load_keys, self.dir)
        self.assertIn(str(self.dir / "server.key_secret"), str(error))


class AuthorizedKeysTests(SynchronousTestCase):
    """L{CurveKeys.authorized_keys} reads the allow-list or names what is wrong with it."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        init_keys(self.dir)
        self.keys = load_keys(self.dir)
        self.authorized = self.dir / "authorized"

    def test_binary_garbage(self) -> None:
        """A file that is not a certificate is a KeyFileError naming it."""
        broken = self.authorized / "broken.key"
        broken.write_bytes(b"\x00\xffnot a certificate\n")
        error = self.assertRaises(KeyFileError, self.keys.authorized_keys)
        self.assertIn(str(broken), str(error))
        self.assertIn("ecs keys add", str(error))

    def test_malformed_key(self) -> None:
        """A public key that is not 40 characters of Z85 is a KeyFileError naming the file."""
        for text in ("tooshort", "", "~" * 40):
            broken = self.authorized / "short.key"
            broken.write_text(f'metadata\ncurve\n    public-key = "{text}"\n')
            error = self.assertRaises(KeyFileError, self.keys.authorized_keys)
            self.assertIn(str(broken), str(error))
            self.assertIn("Z85", str(error))

    def test_unreadable_entry(self) -> None:
        """An entry that cannot be read (here a directory named *.key) is a KeyFileError naming it."""
        odd = self.authorized / "odd.key"
        odd.mkdir()
        error = self.assertRaises(KeyFileError, self.keys.authorized_keys)
        self.assertIn(str(odd), str(error))

    def test_missing_directory(self) -> None:
        """A missing allow-list directory is a KeyFileError naming it and the init command."""
        for path in self.authorized.iterdir():
            path.unlink()
        self.authorized.rmdir()
        error = self.assertRaises(KeyFileError, self.keys.authorized_keys)
        self.assertIn(str(self.authorized), str(error))
        self.assertIn(f"ecs keys init --dir {self.dir}", str(error))

    def test_other_files_ignored(self) -> None:
        """Only *.key files count: secrets or notes next to them are not read."""
        (self.authorized / "README").write_bytes(b"\x00 not a key")
        (self.authorized / ".client.key.partial").write_bytes(b"half")
        self.assertEqual(self.keys.authorized_keys(), frozenset({self.keys.client_public}))
