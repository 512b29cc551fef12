# -*- test-case-name: tests.test_client_elog -*-
"""
C{ecs log-entry add|list} (issue 14, item 4) in both front ends of the one
command table: the command line over HTTP (each request matched against
the ECA's own Klein routes, without a network) and the SSH shell against
L{tests.fake_control.FakeControlCenter}.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.cli import build_parser
from ecs.client.api import HttpApi
from ecs.client.cli import _read_bytes, _write_bytes
from ecs.client.commands import CommandError, Run, run_now
from ecs.client.elog import MAX_ATTACHMENT, format_entries, size_text
from ecs.client.errors import ClientError
from tests import test_commands  # the module, not its test cases (trial would run them twice)
from tests.fake_control import FakeControlCenter
from tests.test_commands import CliRequests, Collected, RecordingClient

NOW = 1_800_000_000.0


class HttpTests(CliRequests):
    """The requests the command line sends."""

    def test_add(self) -> None:
        """add posts the text with the options given (and only those)."""
        client, printer = self.cli(["log-entry", "add", "HV trip on STS", "--partition", "demo", "--run", "12",
                                    "--corrects", "3"], {"add_entry": {"id": 4}})
        self.assertEqual(client.sent[-1][:4], ("POST", "add_entry", {}, {
            "text": "HV trip on STS", "partition": "demo", "run": 12, "corrects": 3}))
        self.assertEqual(printer.text, "logbook entry 4 written\n")
        client, _ = self.cli(["log-entry", "add", "plain"], {"add_entry": {"id": 5}})
        self.assertEqual(client.sent[-1][3], {"text": "plain"})

    def test_list(self) -> None:
        """list sends its filters; corrections and attachments are marked; a full page says how to go on."""
        rows = [{"id": 9, "time": NOW, "author": "olga", "text": "beam back", "partition": "demo", "run": 7,
                 "corrects": None, "corrected_by": [10], "attachments": [{"n": 1, "name": "a.png", "size": 3}]}]
        client, printer = self.cli(["log-entry", "list", "--text", "beam", "--partition", "demo", "--run", "7",
                                    "--author", "olga", "--since", "1h", "--before", "11", "--limit", "1"],
                                   {"logbook": rows})
        self.assertEqual(client.sent[-1][:2], ("GET", "logbook"))
        self.assertEqual(client.sent[-1][4], {"text": "beam", "partition": "demo", "run": 7, "author": "olga",
                                              "since": NOW - 3600, "before": 11, "limit": 1})
        self.assertRegex(printer.text.splitlines()[1],
                         r"^9 +.* olga +demo +7 +beam back \[corrected by #10\] \[files: 1 a.png \(3 B\)\]$")
        self.assertIn("--before 9", printer.notes)

    def test_usage_errors(self) -> None:
        """An empty text, a bad run or id, a bad partition stop before any request (exit 2)."""
        for line in (["log-entry", "add", " "], ["log-entry", "add", "x", "--run", "0"],
                     ["log-entry", "add", "x", "--corrects", "a"], ["log-entry", "add", "x", "--partition", "a b"],
                     ["log-entry", "add", "x" * 10_001], ["log-entry", "list", "--run", "-1"]):
            with self.assertRaises(SystemExit) as caught:
                build_parser().parse_args(line)
            self.assertEqual(caught.exception.code, 2, line)

    def test_format_empty(self) -> None:
        """No entries says so."""
        self.assertEqual(format_entries([]), "no logbook entries\n")


class ShellCommandTests(SynchronousTestCase):
    """The same commands in the SSH shell, against the fake center."""

    def setUp(self) -> None:
        self.center = FakeControlCenter()
        self.clock = Clock()

    def run_line(self, line: str, user: str = "operator") -> tuple[int, str, str]:
        outcome, out, err = test_commands.ShellTests.line(self.center, self.clock, line, user)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        return outcome.code, out, err

    def test_round_trip(self) -> None:
        """An operator writes and corrects; a viewer lists (marked) but may not write."""
        self.assertEqual(self.run_line('log-entry add "first note" --partition demo')[0], 0)
        self.assertEqual(self.run_line('log-entry add "better note" --corrects 1')[0], 0)
        code, _, err = self.run_line('log-entry add "nope"', user="viewer")
        self.assertEqual(code, 3, err)
        code, out, _ = self.run_line("log-entry list", user="viewer")
        self.assertEqual(code, 0)
        self.assertEqual([line.split()[0] for line in out.splitlines()[1:]], ["2", "1"])
        self.assertIn("[corrected by #2]", out)
        code, out, _ = self.run_line("log-entry list --partition demo --json", user="viewer")
        self.assertEqual([e["id"] for e in json.loads(out)], [1])
        code, _, err = self.run_line('log-entry add "x" --corrects 99')
        self.assertEqual(code, 1, err)


class DownloadingClient(RecordingClient):
    """The recording client, also serving C{download} (an attachment's bytes) from C{files} by path."""

    def __init__(self, answers: dict[str, Any], files: dict[str, bytes]) -> None:
        super().__init__(answers)
        self.files = files

    def download(self, path: str) -> tuple[bytes, str]:
        self.call("GET", path)
        return self.files[path], "image/png"


ENTRY = {"id": 7, "time": NOW, "author": "olga", "text": "scope shot", "attachments": [
    {"n": 1, "name": "scope.png", "content_type": "image/png", "size": 4},
    {"n": 2, "name": "2", "content_type": "text/plain", "size": 1}]}


class AttachmentTests(SynchronousTestCase):
    """C{log-entry add --attach FILE} and C{log-entry attachment ENTRY NAME} over HTTP."""

    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.folder.mkdir()
        self.saved: list[tuple[str, bytes, bool]] = []

    def file(self, name: str, data: bytes) -> str:
        path = self.folder / name
        path.write_bytes(data)
        return str(path)

    def cli(self, line: list[str], client: RecordingClient, save: bool = False) -> tuple[int, Collected]:
        printer = Collected()
        args = build_parser().parse_args(line)

        def write(path: str, data: bytes, replace: bool) -> None:
            self.saved.append((path, data, replace))

        run = Run(HttpApi(client), args, printer, now=lambda: NOW, read_bytes=_read_bytes,  # type: ignore[arg-type]
                  write_bytes=_write_bytes if save else write)
        return run_now(args.spec.run(run)), printer

    def refused(self, line: list[str], *wanted: str) -> None:
        client = RecordingClient({"add_entry": {"id": 4}})
        with self.assertRaises(CommandError) as caught:
            self.cli(line, client)
        for text in wanted:
            self.assertIn(text, caught.exception.message)
        self.assertEqual(client.sent, [])  # checked before anything is sent

    def test_add_with_files(self) -> None:
        """Each --attach file goes as {name, content_type, data in base64}, named by its own name."""
        png, log = self.file("scope.png", b"\x89PNG"), self.file("run.log", b"ok\n")
        client = RecordingClient({"add_entry": {"id": 4}})
        code, printer = self.cli(["log-entry", "add", "scope shot", "--attach", png, "--attach", log], client)
        self.assertEqual(code, 0)
        body = client.sent[-1][3]
        self.assertEqual([(a["name"], a["content_type"]) for a in body["attachments"]],
                         [("scope.png", "image/png"), ("run.log", "application/octet-stream")])
        self.assertEqual(base64.b64decode(body["attachments"][0]["data"]), b"\x89PNG")
        self.assertEqual(printer.text, "logbook entry 4 written with 2 attached files\n")

    def test_bad_files_refused_before_sending(self) -> None:
        """A missing, a too large, an empty file, a directory and a fourth file: each named, nothing sent."""
        missing = str(self.folder / "nope.png")
        self.refused(["log-entry", "add", "x", "--attach", missing], f"cannot read {missing}", "No such file")
        big = self.file("big.bin", b"x" * (MAX_ATTACHMENT + 1))
        self.refused(["log-entry", "add", "x", "--attach", big], f"cannot attach {big}", "1.0 MiB",
                     f"{MAX_ATTACHMENT} bytes")
        self.refused(["log-entry", "add", "x", "--attach", self.file("empty.txt", b"")], "empty.txt", "empty")
        self.refused(["log-entry", "add", "x", "--attach", str(self.folder)], f"cannot read {self.folder}")
        small = self.file("a.txt", b"a")
        self.refused(["log-entry", "add", "x"] + ["--attach", small] * 4, "4 files given", "at most 3")
        exact = self.file("exact.bin", b"x" * MAX_ATTACHMENT)
        self.assertEqual(self.cli(["log-entry", "add", "x", "--attach", exact],
                                  RecordingClient({"add_entry": {"id": 4}}))[0], 0)

    def test_fetch_by_name_and_number(self) -> None:
        """attachment ENTRY NAME finds the file by name (a name that is a digit wins), else by number."""
        files = {"/api/logbook/7/attachments/1": b"\x89PNG", "/api/logbook/7/attachments/2": b"2"}
        client = DownloadingClient({"logbook": [ENTRY]}, files)
        code, printer = self.cli(["log-entry", "attachment", "7", "scope.png"], client)
        self.assertEqual(code, 0)
        self.assertEqual(client.sent[0][4], {"limit": 1, "before": 8})
        self.assertEqual(client.sent[1][:3], ("GET", "attachment", {"entry": 7, "n": 1}))
        self.assertEqual(self.saved, [("scope.png", b"\x89PNG", False)])
        self.assertIn("saved to scope.png (4 B)", printer.text)
        self.cli(["log-entry", "attachment", "7", "2", "-o", "two.txt"], client)
        self.assertEqual(self.saved[-1], ("two.txt", b"2", True))  # the file named "2", not number 2's name
        self.cli(["log-entry", "attachment", "7", "1", "-o", "-"], client)
        self.assertEqual(self.saved[-1], ("-", b"\x89PNG", True))

    def test_fetch_refusals(self) -> None:
        """An unknown entry or attachment is named, with the attachments the entry has."""
        client = DownloadingClient({"logbook": [ENTRY]}, {})
        with self.assertRaises(CommandError) as caught:
            self.cli(["log-entry", "attachment", "7", "other.png"], client)
        self.assertIn("no attachment 'other.png' (it has: 1 scope.png, 2 2)", caught.exception.message)
        with self.assertRaises(CommandError) as caught:
            self.cli(["log-entry", "attachment", "6", "scope.png"], client)
        self.assertIn("no logbook entry 6", caught.exception.message)

    def test_saved_never_over_a_file(self) -> None:
        """Without -o an existing file is kept and the error says how to choose; -o replaces."""
        target = self.file("scope.png", b"mine")
        _write_bytes(str(self.folder / "new.png"), b"new", False)
        self.assertEqual((self.folder / "new.png").read_bytes(), b"new")
        with self.assertRaises(ClientError) as caught:
            _write_bytes(target, b"theirs", False)
        self.assertIn("exists: give -o FILE", caught.exception.message)
        self.assertEqual(Path(target).read_bytes(), b"mine")
        _write_bytes(target, b"theirs", True)
        self.assertEqual(Path(target).read_bytes(), b"theirs")

    def test_sizes(self) -> None:
        """Sizes are shown for people."""
        self.assertEqual([size_text(n) for n in (3, 1536, 1 << 20, None)], ["3 B", "1.5 KiB", "1.0 MiB", "? B"])


class ShellAttachmentTests(SynchronousTestCase):
    """The SSH shell has no files of yours: --attach and attachment are refused, saying where to go."""

    def test_refused_in_shell(self) -> None:
        """Both refused with a usage error naming the shell; nothing is written."""
        center = FakeControlCenter()
        outcome, _, err = test_commands.ShellTests.line(center, Clock(), "log-entry add x --attach /etc/passwd",
                                                         "operator")
        self.assertEqual(outcome.code, 2, err)
        self.assertIn("--attach reads files of your computer", err)
        self.assertEqual(center.logbook_entries, [])
        outcome, _, err = test_commands.ShellTests.line(center, Clock(), "log-entry attachment 1 a.png", "viewer")
        self.assertEqual(outcome.code, 2, err)
        self.assertIn("writes a file of your computer", err)


class AgreementTests(SynchronousTestCase):
    """The command line checks what the ECA checks, and sends what its route accepts."""

    def test_limits_as_the_store(self) -> None:
        """The limits the command line checks are the store's."""
        from ecs.client import elog as client_elog
        from ecs.store import elog as store_elog

        self.assertEqual((client_elog.MAX_ATTACHMENT, client_elog.MAX_ATTACHMENTS, client_elog.MAX_ATTACHMENT_NAME),
                         (store_elog.MAX_ATTACHMENT, store_elog.MAX_ATTACHMENTS, store_elog.MAX_ATTACHMENT_NAME))

    def test_body_accepted_by_the_route(self) -> None:
        """The attachments the command line sends decode, through the route's own check, to the file's bytes."""
        from ecs.web.elog import attachments_of

        client = RecordingClient({"add_entry": {"id": 1}})
        sending = HttpApi(client).add_logbook_entry(  # type: ignore[arg-type]
            "x", None, None, None, [{"name": "a b.txt", "content_type": "text/plain", "data": b"\x00\xff"}])
        with self.assertRaises(StopIteration):
            sending.send(None)  # the HTTP API never suspends
        [decoded] = attachments_of(client.sent[-1][3])
        self.assertEqual(decoded, {"name": "a b.txt", "content_type": "text/plain", "data": b"\x00\xff"})
