# -*- test-case-name: tests.test_alarms_cli -*-
"""
C{ecs alarms [ack|shelve]} and the alarms of C{status} and C{watch}, from
both front ends of the one command table:

  - the table: C{alarms} with its actions and roles, the same in the
    command line and the shell, parsed the same way;
  - the argument checks: durations, ids, reasons and times, each refused
    with a message naming the bad value;
  - the command line, run in this process (L{ecs.cli.main}) against a stub
    of the contract's HTTP routes on 127.0.0.1 (L{StubECA}): requests,
    bodies, text, C{--json} and exit codes, an ECA without alarms;
  - the command line's requests matched against the ECA's own Klein
    routes (no network), and its shelving body read by the web's own
    check (L{ecs.web.inputs.shelve_body});
  - the shell against L{tests.fake_control.FakeControlCenter}, on a
    L{Clock}: the same commands, the role checks, C{watch} following
    C{alarm} events.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
import time
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.cli import build_parser, main
from ecs.client.alarms import SHELVE_MAX, alarm_id, duration, parse_until, reason_text
from ecs.client.api import HttpApi
from ecs.client.commands import Run, run_now
from ecs.client.http import credentials_path, save_credentials
from ecs.client.table import BY_NAME
from ecs.control import User
from ecs.exits import EXIT_AUTH, EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from ecs.shell import commands as shell_commands
from ecs.shell.commands import CommandInterpreter, Outcome
from tests.fake_control import FakeControlCenter
from tests.test_commands import Collected, RecordingClient

NOW = 1_800_000_000.0
EVIL = "\x1b[2J\x1b]0;owned\x07bad"
ROLE_ORDER = ("viewer", "operator", "expert", "admin")


def alarms_seed(now: float) -> list[dict[str, Any]]:
    """Three alarms: an error in demo, a cleared unacknowledged warning in demo, a critical one in other."""
    base = {
        "acknowledged_by": None,
        "acknowledged_at": None,
        "cleared_at": None,
        "shelved_until": None,
        "shelved_by": None,
        "shelve_reason": None,
    }
    return [
        {
            **base,
            "id": 1,
            "source": "STS",
            "partition": "demo",
            "severity": "error",
            "text": "STS in Error",
            "action": "reset STS, then Configure",
            "raised_at": now - 125,
            "kind": "system_error",
        },
        {
            **base,
            "id": 2,
            "source": "run",
            "partition": "demo",
            "severity": "warning",
            "text": "run 7 interrupted",
            "action": "acknowledge",
            "raised_at": now - 7200,
            "cleared_at": now - 3600,
            "kind": "run_interrupted",
        },
        {
            **base,
            "id": 3,
            "source": "pca:other",
            "partition": "other",
            "severity": "critical",
            "text": "PCA other lost " + EVIL,
            "action": "restart pca:other " + EVIL,
            "raised_at": now - 30,
            "kind": "pca_lost",
        },
    ]


def _parse_until(value: Any, now: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return now + float(value)
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    raise ValueError("until")


# -- the stub ECA: the contract's routes over HTTP --------------------------------------------


class StubECA:
    """
    The contract's alarm routes (and the partition routes C{status} reads)
    on 127.0.0.1, in a thread: tokens C{<role>-token} are users of that
    role; C{requests} records C{(method, path, query, body)}.  With
    C{alarms=False} it is an older ECA: C{/api/alarms} answers 404.
    """

    def __init__(self, test: SynchronousTestCase, alarms: bool = True) -> None:
        self.alarms = alarms_seed(time.time())
        self.has_alarms = alarms
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.events: list[bytes] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub.handle(self, "GET")

            def do_POST(self) -> None:
                stub.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        test.addCleanup(thread.join, 5)
        test.addCleanup(self.server.server_close)
        test.addCleanup(self.server.shutdown)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length)) if length else None
        self.requests.append((method, parsed.path, query, body))
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        role = token.removesuffix("-token")
        if role not in ROLE_ORDER:
            return self.answer(request, 401, {"error": "unauthenticated", "reason": "log in first"})
        if parsed.path == "/api/events":
            return self.stream(request)
        status, answer = self.route(method, parsed.path, query, body, role)
        self.answer(request, status, answer)

    def route(self, method: str, path: str, query: dict[str, str], body: Any, role: str) -> tuple[int, Any]:
        if path == "/api/partitions":
            return 200, [{"id": p, "state": "Idle", "tag": None, "controller": None, "connected": True}
                         for p in ("demo", "other")]
        if path == "/api/partitions/demo":
            return 200, {"id": "demo", "state": "Idle", "tag": None, "controller": None, "connected": True,
                         "allowed": ["configure"], "systems": []}
        if not path.startswith("/api/alarms") or not self.has_alarms:
            return 404, {"error": "not_found", "reason": f"no route {path}"}
        if path == "/api/alarms" and method == "GET":
            rows = [a for a in self.alarms if query.get("all") == "1" or a["cleared_at"] is None
                    or a["acknowledged_by"] is None]
            if "partition" in query:
                rows = [a for a in rows if a["partition"] in (query["partition"], None)]
            return 200, rows
        found = re.fullmatch(r"/api/alarms/(\d+)/(ack|shelve)", path)
        if not found or method != "POST":
            return 404, {"error": "not_found", "reason": "no such route"}
        alarm = next((a for a in self.alarms if a["id"] == int(found.group(1))), None)
        need = "operator" if found.group(2) == "ack" else "expert"
        if ROLE_ORDER.index(role) < ROLE_ORDER.index(need):
            return 403, {"error": "forbidden", "reason": f"needs role {need}"}
        if alarm is None:
            return 404, {"error": "not_found", "reason": f"no alarm {found.group(1)}"}
        if found.group(2) == "ack":
            alarm.update(acknowledged_by=role, acknowledged_at=time.time())
            return 200, alarm
        try:
            until = _parse_until(body.get("until"), time.time())
        except (ValueError, AttributeError):
            return 400, {"error": "bad_request", "reason": "until: an ISO time or seconds"}
        alarm.update(shelved_until=until, shelved_by=role, shelve_reason=body.get("reason"))
        return 200, alarm

    def answer(self, request: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def stream(self, request: BaseHTTPRequestHandler) -> None:
        """The event stream: the subscription line, then C{events}, then silence until the client goes."""
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream")
        request.end_headers()
        request.wfile.write(b"retry: 1000\n\n" + b"".join(self.events))
        request.wfile.flush()
        request.rfile.read(1)  # returns when the client closes the connection


def sse(event_id: int, kind: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode()


class Ran:
    """What one C{ecs} run gave."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class CommandLineTests(SynchronousTestCase):
    """ecs alarms, status and watch over HTTP against the stub of the contract's routes."""

    def setUp(self) -> None:
        # Absolute: a relative XDG_CONFIG_HOME is ignored (the spec), and the
        # credentials would go to the real ~/.config/ecs, shared by trial's workers.
        self.home = Path(self.mktemp()).resolve()
        self.home.mkdir()
        patcher = mock.patch.dict(os.environ, {"XDG_CONFIG_HOME": str(self.home), "NO_COLOR": "1"})
        patcher.start()
        self.addCleanup(patcher.stop)
        self.eca = StubECA(self)

    def ecs(self, role: str, *argv: str, url: str | None = None) -> Ran:
        """Run C{ecs argv} logged in with C{role}'s token; its exit code and output."""
        save_credentials(credentials_path(), url or self.eca.url, role, f"{role}-token")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*argv, "--timeout", "5"])
            except SystemExit as e:  # argparse's usage errors
                code = int(e.code or 0)
        return Ran(code, out.getvalue(), err.getvalue())

    def test_list(self) -> None:
        """ecs alarms: the active ones worst first with every field; --all and --partition go as the query."""
        r = self.ecs("viewer", "alarms")
        self.assertEqual(r.code, EXIT_OK, r)
        self.assertEqual(self.eca.requests[-1][:3], ("GET", "/api/alarms", {}))
        lines = r.out.splitlines()
        self.assertEqual(
            lines[0].split(), ["ID", "SEVERITY", "PARTITION", "SOURCE", "TEXT", "ACTION", "RAISED", "STATE"]
        )
        self.assertEqual([line.split()[0] for line in lines[1:]], ["3", "1", "2"])  # critical, error, warning
        self.assertIn("reset STS, then Configure", lines[2])
        self.assertIn("2 min ago", lines[2])
        self.assertTrue(lines[2].rstrip().endswith("active"), lines[2])
        self.assertIn("cleared-unacknowledged", lines[3])
        self.assertNotIn("\x1b", r.out)
        self.assertNotIn("owned", r.out)
        self.assertEqual(self.ecs("viewer", "alarms", "--all", "--partition", "demo").code, EXIT_OK)
        self.assertEqual(self.eca.requests[-1][2], {"all": "1", "partition": "demo"})
        r = self.ecs("viewer", "alarms", "list", "--json")
        self.assertEqual([a["id"] for a in json.loads(r.out)], [1, 2, 3])  # the API's answer as is

    def test_ack(self) -> None:
        """ecs alarms ack: POST .../ack; the answer's state; unknown id exit 1, a viewer exit 3."""
        r = self.ecs("operator", "alarms", "ack", "1")
        self.assertEqual(r.code, EXIT_OK, r)
        self.assertEqual(self.eca.requests[-1][:2], ("POST", "/api/alarms/1/ack"))
        self.assertIn("acknowledged alarm 1 (error, STS): STS in Error; acknowledged by operator", r.out)
        r = self.ecs("operator", "alarms", "ack", "99")
        self.assertEqual(r.code, EXIT_REFUSED, r)
        self.assertIn("no alarm 99", r.err)
        r = self.ecs("viewer", "alarms", "ack", "2")
        self.assertEqual(r.code, EXIT_AUTH, r)
        self.assertIn("needs role operator", r.err)
        r = self.ecs("operator", "alarms", "ack", "2", "--json")
        self.assertEqual(json.loads(r.out)["acknowledged_by"], "operator")

    def test_shelve(self) -> None:
        """--for goes as seconds, --until as an ISO time; operators are refused (exit 3); bad values exit 2."""
        r = self.ecs("expert", "alarms", "shelve", "1", "--for", "1h30m", "--reason", "sensor known noisy")
        self.assertEqual(r.code, EXIT_OK, r)
        self.assertEqual(
            self.eca.requests[-1][1:], ("/api/alarms/1/shelve", {}, {"until": 5400.0, "reason": "sensor known noisy"})
        )
        self.assertIn("shelved alarm 1", r.out)
        self.assertIn("by expert (sensor known noisy)", r.out)
        later = datetime.fromtimestamp(time.time() + 7200).replace(microsecond=0)
        r = self.ecs("expert", "alarms", "shelve", "2", "--until", later.isoformat(), "--reason", "r")
        self.assertEqual(r.code, EXIT_OK, r)
        sent = self.eca.requests[-1][3]["until"]
        self.assertEqual(datetime.fromisoformat(sent).timestamp(), later.timestamp())
        self.assertIn("+00:00", sent)  # the time goes with its zone
        r = self.ecs("operator", "alarms", "shelve", "1", "--for", "1h", "--reason", "r")
        self.assertEqual(r.code, EXIT_AUTH, r)
        count = len(self.eca.requests)
        for argv, named in (
            (("--for", "5x", "--reason", "r"), "'5x' is not a duration like 90s, 30m, 1h or 2d"),
            (("--for", "1h"), "--reason"),
            (("--reason", "r"), "--for --until"),
            (("--for", "1h", "--until", later.isoformat(), "--reason", "r"), "not allowed with"),
            (("--until", "tomorrow", "--reason", "r"), "--until: 'tomorrow' is not an ISO-8601 time"),
            (("--until", "2001-01-01T00:00", "--reason", "r"), "not in the future"),
        ):
            r = self.ecs("expert", "alarms", "shelve", "1", *argv)
            self.assertEqual(r.code, EXIT_USAGE, (argv, r))
            self.assertIn(named, r.err, argv)
        self.assertEqual(len(self.eca.requests), count, "a bad command line sent a request")
        self.assertEqual(self.ecs("expert", "alarms", "ack", "x").code, EXIT_USAGE)

    def test_status(self) -> None:
        """status P shows the alarms under the state (worst first, with the action); status counts per partition."""
        r = self.ecs("viewer", "status", "demo")
        self.assertEqual(r.code, EXIT_OK, r)
        lines = r.out.splitlines()
        self.assertEqual(lines[0], "Partition demo: Idle")
        self.assertEqual(lines[1], "  alarms: 1 error, 1 warning")
        self.assertEqual(lines[2], "    ERROR STS: STS in Error -> reset STS, then Configure")
        self.assertIn("WARNING run: run 7 interrupted", lines[3])
        self.assertIn("acknowledge with ecs alarms ack 2", lines[3])
        self.assertEqual(self.eca.requests[-1][1:3], ("/api/alarms", {"partition": "demo"}))
        detail = json.loads(self.ecs("viewer", "status", "demo", "--json").out)
        self.assertEqual([a["id"] for a in detail["alarms"]], [1, 2])
        r = self.ecs("viewer", "status")
        lines = r.out.splitlines()
        self.assertEqual(lines[0].split(), ["PARTITION", "STATE", "TAG", "CONTROLLER", "PCA", "ALARMS"])
        self.assertTrue(lines[1].startswith("demo") and lines[1].endswith("1 error, 1 warning"), lines)
        self.assertTrue(lines[2].startswith("other") and lines[2].endswith("1 critical"), lines)
        self.assertEqual(len(json.loads(self.ecs("viewer", "status", "--json").out)), 2)  # the API's list

    def test_older_eca(self) -> None:
        """An ECA without /api/alarms: status works as before; ecs alarms says so (exit 1)."""
        old = StubECA(self, alarms=False)
        r = self.ecs("viewer", "status", "demo", url=old.url)
        self.assertEqual(r.code, EXIT_OK, r)
        self.assertNotIn("alarms", r.out)
        r = self.ecs("viewer", "status", url=old.url)
        self.assertNotIn("ALARMS", r.out)
        r = self.ecs("viewer", "alarms", url=old.url)
        self.assertEqual(r.code, EXIT_REFUSED, r)
        self.assertIn("404", r.err)

    def test_unreachable(self) -> None:
        """Nothing listening: exit 4."""
        url = self.eca.url
        self.eca.server.shutdown()
        self.eca.server.server_close()
        self.assertEqual(self.ecs("viewer", "alarms", url=url).code, EXIT_UNREACHABLE)

    def test_watch_follows_alarm_events(self) -> None:
        """watch (not on a terminal): the alarms under the state, then a line per alarm event."""
        raised = {**alarms_seed(time.time())[0], "id": 9, "text": "DCS alarm " + EVIL, "change": "raised"}
        self.eca.events = [
            sse(1, "alarm", raised),
            sse(2, "alarm", {**raised, "id": 3, "partition": "other", "change": "raised"}),  # not ours
            sse(3, "state", {"key": "partition", "value": {"state": "Configured", "tag": "demo"}}),
        ]
        r = self.ecs("viewer", "watch", "demo", "--until", "Configured")
        self.assertEqual(r.code, EXIT_OK, r)
        self.assertIn("demo alarms: 1 error, 1 warning", r.out)
        self.assertIn("demo ERROR STS: STS in Error -> reset STS, then Configure", r.out)
        self.assertIn("alarm raised: 9 error STS: DCS alarm bad -> reset STS, then Configure (active)", r.out)
        self.assertNotIn(" 3 error", r.out)
        self.assertNotIn("\x1b", r.out)


class WebRouteTests(SynchronousTestCase):
    """The command line's alarm requests are those the ECA's own routes serve, with bodies its checks accept."""

    def cli(self, line: str, now: float = NOW) -> RecordingClient:
        client = RecordingClient({"alarms": [], "acknowledge_alarm": {"id": 3}, "shelve_alarm": {"id": 3}})
        args = build_parser().parse_args(line.split())
        run = Run(HttpApi(client), args, Collected(), now=lambda: now)  # type: ignore[arg-type]  # the stand-in
        self.assertEqual(run_now(args.spec.run(run)), EXIT_OK, line)
        return client

    def test_routes(self) -> None:
        """list (with its query), ack and shelve reach the routes of the same names."""
        self.assertEqual(self.cli("alarms").sent, [("GET", "alarms", {}, None, {})])
        sent = self.cli("alarms --all --partition demo").sent[-1]
        self.assertEqual(sent, ("GET", "alarms", {}, None, {"all": 1, "partition": "demo"}))
        self.assertEqual(self.cli("alarms ack 3").sent[-1], ("POST", "acknowledge_alarm", {"alarm_id": 3}, None, {}))
        sent = self.cli("alarms shelve 3 --for 2h --reason noisy").sent[-1]
        self.assertEqual(sent, ("POST", "shelve_alarm", {"alarm_id": 3}, {"until": 7200.0, "reason": "noisy"}, {}))

    def test_shelve_body_accepted_by_the_web(self) -> None:
        """The web's own check of the shelving body reads --for and --until as the times meant."""
        from ecs.web.inputs import shelve_body

        body = self.cli("alarms shelve 3 --for 90m --reason r").sent[-1][3]
        self.assertEqual(shelve_body(body, NOW), (NOW + 5400, "r"))
        local = datetime.fromtimestamp(NOW + 86400).replace(microsecond=0).isoformat()  # no zone: local time
        body = self.cli(f"alarms shelve 3 --until {local} --reason why").sent[-1][3]
        self.assertEqual(shelve_body(body, NOW), (NOW + 86400, "why"))


# -- the table and the argument checks --------------------------------------------------------


class TableTests(SynchronousTestCase):
    """alarms is one command of the shared table, in both front ends."""

    def test_declared(self) -> None:
        """list (viewer, the default), ack (operator), shelve (expert)."""
        command = BY_NAME["alarms"]
        self.assertEqual(command.default, "list")
        self.assertEqual({a.name: a.role for a in command.actions}, {"list": "viewer", "ack": "operator",
                                                                     "shelve": "expert"})
        self.assertIn("alarms", shell_commands._PARSERS)

    def test_same_parse_in_both(self) -> None:
        """A line means the same to the command line and to the shell."""
        cli = build_parser()
        for line in (
            "alarms",
            "alarms --all --partition demo",
            "alarms list --all",
            "alarms ack 12",
            "alarms shelve 12 --for 30m --reason noisy",
            "alarms shelve 12 --until 2030-01-01T10:00 --reason noisy",
        ):
            words = line.split()
            a = cli.parse_args(words)
            b = shell_commands._PARSERS[words[0]][0].parse_args(words[1:])
            self.assertIs(a.spec, b.spec, line)
            shared = {k for k in vars(b) if not k.startswith("api_")}
            self.assertEqual({k: getattr(a, k) for k in shared}, {k: getattr(b, k) for k in shared}, line)


class ArgumentTests(SynchronousTestCase):
    """Durations, ids, reasons and times: accepted forms, and errors naming the bad value."""

    def test_durations(self) -> None:
        """90s, 30m, 1h, 2d, 1h30m and 1.5h in seconds."""
        forms = {"90s": 90, "30m": 1800, "1h": 3600, "2d": 172800, "1h30m": 5400, "1.5h": 5400, " 2H ": 7200}
        self.assertEqual({k: duration(k) for k in forms}, forms)

    def test_bad_durations(self) -> None:
        """Everything else is refused, naming the value."""
        import argparse

        for value in ("5x", "90", "", "h", "-1h", "1 h", "1e3s", "10000000000s"):
            with self.assertRaises(argparse.ArgumentTypeError, msg=value) as caught:
                duration(value)
            self.assertEqual(str(caught.exception), f"{value!r} is not a duration like 90s, 30m, 1h or 2d")
        for value in ("0s", "31d", "0.0h"):
            with self.assertRaises(argparse.ArgumentTypeError, msg=value) as caught:
                duration(value)
            self.assertIn(f"{value!r} is not a duration from 1s to 30d", str(caught.exception))

    def test_ids_and_reasons(self) -> None:
        """An id is a whole number from 1; a reason is 1 to 500 characters, trimmed."""
        import argparse

        self.assertEqual(alarm_id("42"), 42)
        for value in ("0", "-1", "x", "1.5", ""):
            with self.assertRaises(argparse.ArgumentTypeError) as caught:
                alarm_id(value)
            self.assertIn(repr(value), str(caught.exception))
        self.assertEqual(reason_text("  noisy  "), "noisy")
        for value in ("", "   ", "x" * 501):
            self.assertRaises(argparse.ArgumentTypeError, reason_text, value)

    def test_until(self) -> None:
        """An ISO time after now and at most 30 days ahead; a zone is honoured."""
        now = NOW
        ahead = datetime.fromtimestamp(now + 3600).replace(microsecond=0)
        self.assertEqual(parse_until(ahead.isoformat(), now), ahead.timestamp())
        self.assertEqual(parse_until("2027-01-15T10:00:00+01:00", now), now + 3600)  # NOW is 08:00 UTC that day
        for text, words in (
            ("soon", "'soon' is not an ISO-8601 time"),
            (datetime.fromtimestamp(now - 1).isoformat(), "not in the future"),
            (datetime.fromtimestamp(now + SHELVE_MAX + 60).isoformat(), "more than 30 days ahead"),
        ):
            with self.assertRaises(ValueError) as caught:
                parse_until(text, now)
            self.assertIn(words, str(caught.exception))


# -- the shell ------------------------------------------------------------------------------------


class ShellTests(SynchronousTestCase):
    """The same commands in the SSH shell, against the center's alarm methods."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.center = FakeControlCenter()
        self.center.alarm_records = {a["id"]: a for a in alarms_seed(NOW)}

    def start(self, line: str, user: str) -> tuple[defer.Deferred[Outcome], Any]:
        class Output:
            stdout = ""
            stderr = ""

            def out(self, text: str) -> None:
                self.stdout += text

            def err(self, text: str) -> None:
                self.stderr += text

        async def current() -> User | None:
            return User(user, self.center.roles[user])

        output = Output()
        return CommandInterpreter(self.center, current, self.clock).execute(line, output), output

    def run_line(self, line: str, user: str) -> tuple[int, str, str]:
        d, output = self.start(line, user)
        outcome = self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [], "a timer was left behind")
        return outcome.code, output.stdout, output.stderr

    def test_list(self) -> None:
        """alarms in the shell: the same table as the command line; --json gives the center's answer."""
        code, out, _ = self.run_line("alarms", "viewer")
        self.assertEqual(code, 0)
        self.assertEqual([line.split()[0] for line in out.splitlines()], ["ID", "3", "1", "2"])
        self.assertIn("2 min ago", out)
        self.assertNotIn("\x1b", out)
        code, out, _ = self.run_line("alarms --partition demo --json", "viewer")
        self.assertEqual(sorted(a["id"] for a in json.loads(out)), [1, 2])

    def test_ack_and_shelve(self) -> None:
        """ack (operator) and shelve (expert, until = the clock + --for) reach the center, which audits them."""
        code, out, _ = self.run_line("alarms ack 1", "operator")
        self.assertEqual(code, 0)
        self.assertIn("acknowledged by operator", out)
        code, out, _ = self.run_line("ecs alarms shelve 2 --for 30m --reason 'known noisy'", "expert")
        self.assertEqual(code, 0, out)
        self.assertEqual(self.center.audit_log[-1], ("expert", "shelve_alarm", (2, NOW + 1800, "known noisy")))
        self.assertIn("shelved until", out)
        self.assertIn("by expert (known noisy)", out)

    def test_refusals(self) -> None:
        """Roles are checked before the center is asked (exit 3); bad values exit 2 naming them; unknown id 1."""
        code, _, err = self.run_line("alarms ack 1", "viewer")
        self.assertEqual(code, 3)
        self.assertIn("needs the operator role", err)
        code, _, err = self.run_line("alarms shelve 1 --for 1h --reason x", "operator")
        self.assertEqual(code, 3)
        self.assertIn("needs the expert role", err)
        code, _, err = self.run_line("alarms shelve 1 --for 5x --reason x", "expert")
        self.assertEqual(code, 2)
        self.assertIn("'5x' is not a duration like 90s, 30m, 1h or 2d", err)
        code, _, err = self.run_line("alarms ack 77", "operator")
        self.assertEqual(code, 1)
        self.assertIn("no alarm 77", err)
        self.assertEqual(self.center.audit_log, [])

    def test_status(self) -> None:
        """status P shows what is wrong and what to press; status counts per partition."""
        code, out, _ = self.run_line("status demo", "viewer")
        self.assertEqual(code, 0)
        self.assertIn(
            "Partition demo: Idle\n  alarms: 1 error, 1 warning\n    ERROR STS: STS in Error -> reset STS", out
        )
        code, out, _ = self.run_line("status", "viewer")
        self.assertIn("ALARMS", out.splitlines()[0])
        self.assertIn("1 error, 1 warning", out.splitlines()[1])

    def test_watch(self) -> None:
        """watch shows the alarms under the state and a line per alarm event (others' are left out)."""
        d, output = self.start("watch demo --until Configured", "viewer")
        self.assertIn("demo alarms: 1 error, 1 warning", output.stdout)
        raised = {**alarms_seed(NOW)[0], "id": 5, "severity": "critical", "text": "DCS: magnet " + EVIL}
        self.center.emit("alarm", {**raised, "change": "raised"}, "demo")
        self.center.emit("alarm", {**raised, "id": 6, "partition": "other", "change": "raised"}, "demo")
        self.center.emit("alarm", {**raised, "cleared_at": NOW, "acknowledged_by": "op", "change": "acknowledged"},
                         "demo")
        self.center.emit("state", {"key": "partition", "value": {"state": "Configured", "tag": "demo"}}, "demo")
        for _ in range(5):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).code, 0)
        self.assertIn("alarm raised: 5 critical STS: DCS: magnet bad -> reset STS, then Configure (active)",
                      output.stdout)
        self.assertIn("alarm acknowledged: 5 critical", output.stdout)
        self.assertNotIn(": 6 ", output.stdout)
        self.assertNotIn("\x1b", output.stdout)

    def test_wait_names_the_alarm(self) -> None:
        """configure --wait that ends elsewhere gives the alarm raised meanwhile: what is wrong and what to press."""
        from tests.test_commands import OperationCenter

        center = OperationCenter()
        center.holders["demo"] = "operator"

        async def current() -> User | None:
            return User("operator", center.roles["operator"])

        class Output:
            stdout = ""
            stderr = ""

            def out(self, text: str) -> None:
                self.stdout += text

            def err(self, text: str) -> None:
                self.stderr += text

        output = Output()
        d = CommandInterpreter(center, current, self.clock).execute("configure demo --tag demo --auto --wait", output)
        center.record("Configuring_Detectors", 1, "configure", "Configuring")
        center.emit("alarm", {**alarms_seed(NOW)[0], "change": "raised"}, "demo")
        center.emit("alarm", {**alarms_seed(NOW)[0], "change": "acknowledged"}, "demo")  # no line, no reason
        center.record("TFC_Active", 1, None, "Active")
        for _ in range(4):
            self.clock.advance(0)
        self.assertEqual(self.successResultOf(d).code, 1)
        self.assertIn("demo: alarm: error STS: STS in Error -> reset STS, then Configure\n", output.stderr)
        self.assertIn("ended in TFC_Active", output.stderr)
        self.assertIn("not every stage configured (2): STS in Error -> reset STS, then Configure", output.stderr)
        self.assertEqual(output.stderr.count("alarm:"), 1)
