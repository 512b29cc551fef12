"""
Tests for the parts of the C{ecs} API client that need no ECA: the event
stream parser, exit codes, credentials file, the --wait judgement, the
live view of C{ecs watch}, options; and the network failures (refused,
silent, not TLS) against sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from ecs.cli import build_parser
from ecs.client.cli import QUIET, Context, Waiter, parse_since
from ecs.client.http import (
    EXIT_AUTH,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    Client,
    ClientError,
    SSEParser,
    config_dir,
    credentials_path,
    exit_code_for,
    load_credentials,
    normalise_url,
    save_credentials,
)
from ecs.client.watch import LiveView


def record(
    state: str, level: int, operation: str | None = None, summary: str = "Active", stages: int = 4
) -> dict[str, Any]:
    """A partition record as the PCA publishes it."""
    return {
        "id": "demo",
        "state": state,
        "summary": summary,
        "tag": "demo",
        "level": level,
        "stages": stages,
        "locked": False,
        "operation": operation,
        "auto": False,
    }


class SSEParserTests(SynchronousTestCase):
    """The text/event-stream format."""

    def feed(self, parser: SSEParser, text: str) -> list[Any]:
        return [e for e in (parser.feed(line) for line in text.split("\n")) if e is not None]

    def test_events(self) -> None:
        """id/event/data blocks, comments and retry ignored, last id kept."""
        parser = SSEParser()
        events = self.feed(
            parser,
            'retry: 3000\n\n: keep-alive\n\nid: 7\nevent: state\ndata: {"a": 1}\n\n'
            'id: 8\nevent: log\ndata: {"m":\ndata: "x"}\n\n',
        )
        self.assertEqual(events, [(7, "state", {"a": 1}), (8, "log", {"m": "x"})])
        self.assertEqual(parser.last_id, 8)

    def test_reload_without_id(self) -> None:
        """An event without id (reload) keeps the last id."""
        parser = SSEParser()
        events = self.feed(parser, "id: 3\nevent: x\ndata: {}\n\nevent: reload\ndata: {}\n\n")
        self.assertEqual(events[-1], (None, "reload", {}))
        self.assertEqual(parser.last_id, 3)

    def test_bad_data_skipped(self) -> None:
        """Data that is not JSON, or an id that is not a number, does not break the stream."""
        parser = SSEParser()
        events = self.feed(parser, "id: x\nevent: a\ndata: {nope\n\nevent: b\ndata: [1]\n\n")
        self.assertEqual(events, [(None, "b", [1])])


class ExitCodeTests(SynchronousTestCase):
    """exit_code_for."""

    def test_codes(self) -> None:
        """401 and role 403 are auth (3); control 403 and every other refusal are 1."""
        self.assertEqual(exit_code_for(401, {"error": "unauthenticated"}), EXIT_AUTH)
        self.assertEqual(exit_code_for(403, {"error": "forbidden", "role": "operator"}), EXIT_AUTH)
        self.assertEqual(exit_code_for(403, None), EXIT_AUTH)
        self.assertEqual(exit_code_for(403, {"error": "forbidden", "holder": None}), EXIT_REFUSED)
        for status in (400, 404, 409, 423, 429, 500, 503):
            self.assertEqual(exit_code_for(status, {"error": "x"}), EXIT_REFUSED)


class CredentialsTests(SynchronousTestCase):
    """The credentials file."""

    def test_private_and_atomic(self) -> None:
        """Mode 0600 in a 0700 directory (tightened if it existed), no temporary file left, read back."""
        path = Path(self.mktemp()) / "ecs" / "credentials.json"
        path.parent.mkdir(parents=True, mode=0o755)
        os.chmod(path.parent, 0o755)
        save_credentials(path, "http://h:1", "alice", "tok1")
        save_credentials(path, "http://h:1", "alice", "tok2")
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(path.parent.stat().st_mode), 0o700)
        self.assertEqual(os.listdir(path.parent), ["credentials.json"])
        self.assertEqual(load_credentials(path), {"url": "http://h:1", "user": "alice", "token": "tok2"})

    def test_missing_and_malformed(self) -> None:
        """No file is None; a broken one is exit 3 naming the file."""
        path = Path(self.mktemp())
        self.assertIsNone(load_credentials(path))
        for text in ("{", "[]", '{"url": "http://x", "user": "a"}'):
            path.write_text(text)
            with self.assertRaises(ClientError) as caught:
                load_credentials(path)
            self.assertEqual(caught.exception.exit_code, EXIT_AUTH)
            self.assertIn(str(path), caught.exception.message)

    def test_config_dir(self) -> None:
        """$XDG_CONFIG_HOME/ecs, else ~/.config/ecs (a relative XDG path is ignored, as the spec says)."""
        self.assertEqual(config_dir({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}), Path("/x/ecs"))
        self.assertEqual(config_dir({"HOME": "/h"}), Path("/h/.config/ecs"))
        self.assertEqual(config_dir({"XDG_CONFIG_HOME": "rel", "HOME": "/h"}), Path("/h/.config/ecs"))
        self.assertEqual(credentials_path({"HOME": "/h"}), Path("/h/.config/ecs/credentials.json"))


class ContextTests(SynchronousTestCase):
    """Which URL and token a command uses."""

    def setUp(self) -> None:
        home = Path(self.mktemp()).resolve()
        patcher = mock.patch.dict(os.environ, {"XDG_CONFIG_HOME": str(home)})
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop("ECS_URL", None)
        self.path = credentials_path()

    def args(self, *argv: str) -> Any:
        return build_parser().parse_args(list(argv))

    def test_url_order(self) -> None:
        """--url, then the logged-in URL, then $ECS_URL, then the default."""
        self.assertEqual(Context(self.args("status"), need_login=False).url, "http://127.0.0.1:8080")
        with mock.patch.dict(os.environ, {"ECS_URL": "http://env:1/"}):
            self.assertEqual(Context(self.args("status"), need_login=False).url, "http://env:1")
            save_credentials(self.path, "https://stored:2", "a", "t")
            self.assertEqual(Context(self.args("status")).url, "https://stored:2")
            self.assertEqual(
                Context(self.args("status", "--url", "http://given:3"), need_login=False).url, "http://given:3"
            )

    def test_token_only_for_its_url(self) -> None:
        """The stored token is never sent to another URL: there you are not logged in (exit 3)."""
        save_credentials(self.path, "http://a:1", "alice", "secret")
        self.assertEqual(Context(self.args("status")).client.token, "secret")
        with self.assertRaises(ClientError) as caught:
            Context(self.args("--url", "http://b:1", "status"))
        self.assertEqual(caught.exception.exit_code, EXIT_AUTH)
        self.assertIsNone(Context(self.args("login", "--url", "http://b:1"), need_login=False).client.token)

    def test_broken_file(self) -> None:
        """A broken credentials file: commands say log in again (exit 3); login itself goes ahead."""
        self.path.parent.mkdir(parents=True)
        self.path.write_text('{"url": "gopher://x", "user": "a", "token": "t"}')
        with self.assertRaises(ClientError) as caught:
            Context(self.args("status"))
        self.assertEqual(caught.exception.exit_code, EXIT_AUTH)
        self.assertIn("gopher://x", caught.exception.message)
        self.assertIsNone(Context(self.args("login"), need_login=False).credentials)

    def test_options_before_or_after(self) -> None:
        """--json/--timeout/--url work before or after the command; agent-status keeps its own --timeout."""
        for argv in (["--json", "--timeout", "3", "status"], ["status", "--json", "--timeout", "3"]):
            args = self.args(*argv)
            self.assertEqual((args.api_json, args.api_timeout), (True, 3.0))
        args = self.args("agent-status", "STS", "--endpoint", "tcp://127.0.0.1:1")
        self.assertEqual(args.timeout, 5.0)

    def test_usage_errors(self) -> None:
        """Missing --tag, bad --limit, bad --timeout, unknown level: argparse exit 2."""
        for argv in (
            ["configure", "demo"],
            ["configure", "demo", "--tag", "t", "--config", "c"],
            ["logs", "--limit", "0"],
            ["status", "--timeout", "-1"],
            ["logs", "--level", "loud"],
            ["control", "grab", "demo"],
        ):
            with self.assertRaises(SystemExit) as caught, mock.patch("sys.stderr"):
                self.args(*argv)
            self.assertEqual(caught.exception.code, 2, argv)

    def test_bad_url(self) -> None:
        """A URL that is not http(s)://host is a usage error naming it."""
        for url in ("ftp://x", "http://", "http://h:99999", "http://h/?q=1"):
            with self.assertRaises(ValueError):
                normalise_url(url)
        with self.assertRaises(ClientError) as caught:
            Context(self.args("status", "--url", "ftp://x"), need_login=False)
        self.assertEqual(caught.exception.exit_code, 2)
        self.assertIn("ftp://x", caught.exception.message)


class WaiterTests(SynchronousTestCase):
    """When --wait is over."""

    def test_auto_configure(self) -> None:
        """Done at the last stage's active state once the operation ends; stale records ignored."""
        waiter = Waiter(
            "configure", True, record("Configuring_TFC", 0, "configuring stage TFC (1 of 4)", "Configuring"), 0.0
        )
        self.assertIsNone(waiter.outcome(0.1))
        waiter.update(record("Idle", 0, None, "Idle"))  # published before our command: stale
        self.assertIsNone(waiter.outcome(0.2))
        waiter.update(record("Configuring_TFC", 0, "configuring stage TFC (1 of 4)", "Configuring"))
        waiter.update(record("Configuring_QA", 3, "configuring stage QA (4 of 4)", "Configuring"))
        self.assertIsNone(waiter.outcome(1.0))
        waiter.update(record("QA_Active", 4))
        self.assertEqual(waiter.outcome(1.1), (True, "QA_Active"))

    def test_configure_fails(self) -> None:
        """An operation that ends short of the goal is a failure naming the state and the last error."""
        waiter = Waiter("configure", True, record("Configuring_TFC", 0, "x", "Configuring"), 0.0)
        waiter.update(record("Configuring_Detectors", 1, "x", "Configuring"))
        waiter.last_error = "configuring stage Detectors failed: STS is Error: HV trip"
        waiter.update(record("TFC_Active", 1))
        ok, why = waiter.outcome(2.0)  # type: ignore[misc]
        self.assertFalse(ok)
        self.assertIn("TFC_Active (1 of 4 stages configured)", why)
        self.assertIn("HV trip", why)

    def test_quiet_fallback(self) -> None:
        """Without any record showing the operation, the latest record is judged after QUIET seconds."""
        waiter = Waiter("stop", False, record("Recording", 4, "stopping recording", "Recording"), 10.0)
        waiter.update(record("QA_Active", 4))
        self.assertIsNone(waiter.outcome(10.0 + QUIET / 2))
        self.assertEqual(waiter.outcome(10.0 + QUIET), (True, "QA_Active"))

    def test_one_stage(self) -> None:
        """configure without --auto: one more stage configured."""
        waiter = Waiter("configure", False, record("Configuring_TFC", 0, "x", "Configuring"), 0.0)
        waiter.update(record("Configuring_TFC", 0, "x", "Configuring"))
        waiter.update(record("TFC_Active", 1))
        self.assertEqual(waiter.outcome(0.5), (True, "TFC_Active"))

    def test_nothing_to_do(self) -> None:
        """A reply without an operation (nothing to do) is judged at once."""
        waiter = Waiter("configure", True, record("QA_Active", 4), 0.0)
        self.assertEqual(waiter.outcome(0.0), (True, "QA_Active"))

    def test_start_and_abort(self) -> None:
        """start ends in recording; abort waits for the idle state (no operation there)."""
        start = Waiter("start", False, record("QA_Active", 4, "starting recording"), 0.0)
        start.update(record("QA_Active", 4, "starting recording"))
        start.update(record("QA_Active", 4))
        self.assertFalse(start.outcome(0.5)[0])  # type: ignore[index]
        abort = Waiter("abort", False, record("QA_Active", 4), 0.0)
        self.assertIsNone(abort.outcome(5.0))
        abort.update(record("TFC_Active", 1))
        self.assertIsNone(abort.outcome(5.0))
        abort.update(record("Idle", 0, None, "Idle"))
        self.assertEqual(abort.outcome(5.0), (True, "Idle"))


class ParseSinceTests(SynchronousTestCase):
    """--since."""

    def test_forms(self) -> None:
        """Durations ago, epoch seconds, ISO times; anything else names itself."""
        self.assertEqual(parse_since("30s", 1000.0), 970.0)
        self.assertEqual(parse_since("10m", 1000.0), 400.0)
        self.assertEqual(parse_since("2h", 10000.0), 2800.0)
        self.assertEqual(parse_since("1d", 100000.0), 13600.0)
        self.assertEqual(parse_since("1700000000"), 1700000000.0)
        self.assertEqual(parse_since("2024-01-02T03:04:05+00:00"), 1704164645.0)
        for bad in ("x", "10y", "nan", ""):
            with self.assertRaises(ValueError):
                parse_since(bad)


class LiveViewTests(SynchronousTestCase):
    """ecs watch's view."""

    def detail(self) -> dict[str, Any]:
        return {
            "id": "demo",
            "state": "Idle",
            "tag": None,
            "controller": None,
            "connected": True,
            "allowed": [],
            "progress": None,
            "systems": [
                {
                    "id": "STS",
                    "kind": "detector",
                    "state": "Unconfigured",
                    "raw_state": "Unconfigured",
                    "tag": None,
                    "comment": "",
                    "connected": True,
                }
            ],
        }

    def test_changes(self) -> None:
        """Each event updates the view and gives one clean line."""
        view = LiveView(self.detail())
        lines, _ = view.apply(
            "state",
            {
                "partition": "demo",
                "key": "partition",
                "value": record("Configuring_TFC", 0, "configuring stage TFC (1 of 4)"),
            },
        )
        self.assertEqual(lines, ["state Configuring_TFC (configuring stage TFC (1 of 4)) tag demo"])
        lines, _ = view.apply(
            "state",
            {
                "key": "system/STS",
                "value": {
                    "id": "STS",
                    "state": "Error",
                    "raw_state": "Trip",
                    "tag": "t",
                    "comment": "x\x1b[2Jy",
                    "connected": True,
                },
            },
        )
        self.assertEqual(lines, ["system STS Error (Trip) tag t comment xy"])
        lines, _ = view.apply("control", {"scope": "demo", "holder": "alice", "reason": "take"})
        self.assertEqual((lines, view.detail["controller"]), (["control: alice (take)"], "alice"))
        self.assertEqual(view.apply("control", {"scope": "other", "holder": "bob"}), ([], False))
        lines, _ = view.apply("progress", {"stage": "TFC", "ready": 1, "total": 2})
        self.assertIn("1/2", lines[0])
        self.assertIn("Error", view.screen())

    def test_connection_lost(self) -> None:
        """A lost PCA shows Connection Problem; its return asks for a fresh detail."""
        view = LiveView(self.detail())
        _lines, refetch = view.apply("state", {"key": "connected", "value": {"connected": False}})
        self.assertEqual((view.state, refetch), ("Connection Problem", False))
        self.assertIn("Connection Problem", view.screen())
        self.assertNotIn("Unconfigured ", view.screen().split("SYSTEM")[1])
        _lines, refetch = view.apply("state", {"key": "connected", "value": {"connected": True}})
        self.assertTrue(refetch)
        self.assertEqual(view.apply("reload", {}), ([], True))
        self.assertEqual(view.apply("state", {"key": "reset", "value": None}), ([], True))


class LiveViewAlarmTests(SynchronousTestCase):
    """ecs watch's view keeps the partition's active alarms from the alarm events."""

    def alarm(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "id": 1, "source": "STS", "partition": "demo", "severity": "error", "text": "STS in Error",
            "action": "reset STS, then Configure", "raised_at": 990.0, "cleared_at": None,
            "acknowledged_by": None, "acknowledged_at": None, "shelved_until": None, "shelved_by": None,
            "shelve_reason": None, "kind": "system_error",
        }
        base.update(overrides)
        return base

    def test_events(self) -> None:
        """Raised alarms are kept (ours and ECS-wide ones), others' left out, acknowledged-and-cleared ones dropped."""
        view = LiveView(LiveViewTests().detail(), [self.alarm()], now=lambda: 1000.0)
        self.assertEqual(view.alarm_lines()[0], "  alarms: 1 error")
        ecs_wide = self.alarm(id=2, severity="critical", partition=None)
        lines, refetch = view.apply("alarm", {**ecs_wide, "change": "raised"})
        self.assertEqual(
            (lines, refetch),
            (["alarm raised: 2 critical STS: STS in Error -> reset STS, then Configure (active)"], False),
        )
        self.assertEqual(view.apply("alarm", {**self.alarm(id=3, partition="other"), "change": "raised"}), ([], False))
        self.assertEqual(view.alarm_lines()[0], "  alarms: 1 critical, 1 error")
        lines, _ = view.apply("alarm", {**self.alarm(cleared_at=999.0), "change": "cleared"})
        self.assertIn("cleared-unacknowledged", lines[0])
        self.assertEqual(len(view.alarms_shown()), 2)  # cleared, not yet acknowledged: still active
        view.apply("alarm", {**self.alarm(cleared_at=999.0, acknowledged_by="ann"), "change": "acknowledged"})
        self.assertEqual([a["id"] for a in view.alarms_shown()], [2])
        self.assertNotIn("change", view.alarms_shown()[0])
        screen = view.screen()
        self.assertEqual(screen.splitlines()[1], "  alarms: 1 critical")
        self.assertIn("CRITICAL STS: STS in Error -> reset STS, then Configure", screen)

    def test_no_alarms_from_the_eca(self) -> None:
        """An ECA that gave no alarms: no alarm line at all (not a false none) until an alarm event comes."""
        view = LiveView(LiveViewTests().detail(), None)
        self.assertEqual(view.alarm_lines(), [])
        self.assertNotIn("alarms", view.screen())
        view = LiveView(LiveViewTests().detail(), [])
        self.assertEqual(view.alarm_lines(), ["  alarms: none"])
        view.reload(LiveViewTests().detail(), [self.alarm()])
        self.assertEqual(len(view.alarms_shown()), 1)


class NetworkFailureTests(SynchronousTestCase):
    """Exit codes for an ECA that cannot be reached or does not answer."""

    def listener(self, serve: Any = None, connections: int = 1) -> int:
        """A loopback socket; with C{serve}, a thread hands it the first C{connections} connections."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(5)
        sock.settimeout(10)
        self.addCleanup(sock.close)
        if serve is not None:

            def run() -> None:
                for _ in range(connections):
                    try:
                        conn, _ = sock.accept()
                    except OSError:
                        return
                    with conn:
                        serve(conn)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            self.addCleanup(thread.join, 5)
        return int(sock.getsockname()[1])

    def test_refused(self) -> None:
        """Nothing listening: exit 4 naming the URL."""
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            unused = free.getsockname()[1]
        with self.assertRaises(ClientError) as caught:
            Client(f"http://127.0.0.1:{unused}", timeout=2).get("/api/health")
        self.assertEqual(caught.exception.exit_code, EXIT_UNREACHABLE)
        self.assertIn(f"127.0.0.1:{unused}", caught.exception.message)

    def test_silent(self) -> None:
        """A server that accepts and never answers: exit 5 after the timeout."""
        port = self.listener()  # the kernel accepts into the backlog; nobody answers
        with self.assertRaises(ClientError) as caught:
            Client(f"http://127.0.0.1:{port}", timeout=0.3).get("/api/health")
        self.assertEqual(caught.exception.exit_code, EXIT_TIMEOUT)

    def test_not_tls(self) -> None:
        """https to a plain HTTP server: exit 4, TLS named."""

        def serve(conn: socket.socket) -> None:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        port = self.listener(serve)
        with self.assertRaises(ClientError) as caught:
            Client(f"https://127.0.0.1:{port}", timeout=2).get("/api/health")
        self.assertEqual(caught.exception.exit_code, EXIT_UNREACHABLE)
        self.assertIn("TLS", caught.exception.message)

    def test_tls_trust(self) -> None:
        """A certificate the system does not trust: exit 4 naming the failure; with --cacert it is trusted."""
        cert = self.certificate()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert)

        def serve(conn: socket.socket) -> None:
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
                        b'{"status": "ok"}'
                    )
            except (ssl.SSLError, OSError):
                pass  # the client refused our certificate

        port = self.listener(serve, connections=2)
        with self.assertRaises(ClientError) as caught:
            Client(f"https://127.0.0.1:{port}", timeout=5).get("/api/health")
        self.assertEqual(caught.exception.exit_code, EXIT_UNREACHABLE)
        self.assertIn("certificate", caught.exception.message)
        answer = Client(f"https://127.0.0.1:{port}", timeout=5, cafile=cert).get("/api/health")
        self.assertEqual(answer, {"status": "ok"})

    def certificate(self) -> str:
        """A self-signed certificate (and key) for 127.0.0.1 in one PEM file."""
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        path = Path(self.mktemp())
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return str(path)

    def test_error_body(self) -> None:
        """An error answer gives the server's reason and the status's exit code."""

        def serve(conn: socket.socket) -> None:
            conn.recv(4096)
            body = json.dumps({"error": "conflict", "reason": "demo is held by bob", "holder": "bob"}).encode()
            conn.sendall(
                b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )

        port = self.listener(serve)
        with self.assertRaises(ClientError) as caught:
            Client(f"http://127.0.0.1:{port}", token="t", timeout=2).post("/api/partitions/demo/control")
        error = caught.exception
        self.assertEqual((error.exit_code, error.status, error.body["holder"]), (EXIT_REFUSED, 409, "bob"))
        self.assertEqual(error.message, "demo is held by bob (409 conflict)")
