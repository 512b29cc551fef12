# -*- test-case-name: tests.test_reload -*-
"""
Reload without restart: the detector types, state tables and partition
sequence read again (L{ecs.fsm.reload}), put in force in the ECA
(L{agents.eca.reload.Reloader}) and in a PCA (its C{reload} request and
L{agents.pca.sequencer.Sequencer.next_sequence}), through the web route,
the command line table and the shell, and SIGHUP.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from agents.eca.audit import Audit
from agents.eca.reload import SIGHUP_USER, HangUpReload, Reloader
from ecs import paths, protocol
from ecs.client.commands import CommandError
from ecs.config.settings import ConfigError, load_subsystems
from ecs.control import ControlError, User
from ecs.exits import EXIT_AUTH
from ecs.fsm.reload import VocabularyFiles, changes, read_vocabulary
from ecs.fsm.sequence import load_sequence
from ecs.net.transport import RequestError
from tests import test_commands
from tests.fake_control import FakeControlCenter
from tests.pca_harness import PartitionHarness
from tests.procs import ROOT, Collected, call_api, free_port, spawn, tool
from tests.procs import stop as stop_watched
from tests.support.eca_parts import FakeLogBook, inline_store
from tests.test_web import WebTestCase

ADMIN = User("root", ("admin",))
EXPERT = User("ex", ("expert",))

NEW_TYPE = """
  ECAL:
    fsm: detector-3step.yaml
    action: {kind: simulated, duration: 0.1}
    command_timeout: 7.5
"""


def copy_data(folder: Path) -> VocabularyFiles:
    """The shipped subsystems file, its tables and the sequence, copied flat into C{folder}."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(paths.default_subsystems_path(), folder / "subsystems.yaml")
    for table in paths.data_dir("fsm").glob("*.yaml"):
        shutil.copy(table, folder / table.name)
    return VocabularyFiles(str(folder / "subsystems.yaml"), str(folder / "partition.yaml"))


def add_type(files: VocabularyFiles, text: str = NEW_TYPE) -> None:
    """Add a detector type to the copied subsystems file."""
    path = Path(str(files.subsystems))
    path.write_text(path.read_text().replace("detector_types:\n", "detector_types:" + text, 1))


def edit(path: str | None, old: str, new: str) -> None:
    """Replace C{old} (which must be there) by C{new} in a copied file."""
    file = Path(str(path))
    text = file.read_text()
    assert old in text, (old, file)
    file.write_text(text.replace(old, new))


class VocabularyTests(SynchronousTestCase):
    """Reading the set again: all valid or refused with every problem named."""

    def setUp(self) -> None:
        self.files = copy_data(Path(self.mktemp()))
        self.old = read_vocabulary(self.files)

    def test_reads_everything(self) -> None:
        """The copies give the shipped types, one table per file named and the sequence."""
        self.assertEqual(set(self.old.subsystems.detector_types), set(load_subsystems().detector_types))
        self.assertIn(str(Path(str(self.files.subsystems)).parent.resolve() / "detector-2step.yaml"), self.old.tables)
        self.assertEqual(self.old.sequence.top_active, "QA_Active")

    def test_new_type(self) -> None:
        """A type added to the file is reported as added, nothing else changed."""
        add_type(self.files)
        new = read_vocabulary(self.files)
        self.assertEqual(new.subsystems.detector_types["ECAL"].command_timeout, 7.5)
        self.assertEqual(
            changes(self.old, new),
            {"types_added": ["ECAL"], "types_removed": [], "types_changed": [], "tables_changed": [],
             "sequence_changed": False},
        )

    def test_changed_table_and_sequence(self) -> None:
        """A table's new row changes it and every type using it; a new timeout changes the sequence."""
        folder = Path(str(self.files.subsystems)).parent
        edit(str(folder / "detector-3step.yaml"), "name:", "# edited\nname:")
        self.assertEqual(changes(self.old, read_vocabulary(self.files))["tables_changed"], [])  # a comment only
        edit(str(folder / "detector-3step.yaml"), "[Configuring_Step3, error, Unconfigured]",
             "[Configuring_Step3, error, Configuring_Step1]")
        edit(self.files.sequence, "timeout: 60", "timeout: 90")
        summary = changes(self.old, read_vocabulary(self.files))
        self.assertEqual(summary["tables_changed"], [str((folder / "detector-3step.yaml").resolve())])
        users = sorted(name for name, t in self.old.subsystems.detector_types.items()
                       if t.fsm_path.name == "detector-3step.yaml")
        self.assertTrue(users)
        self.assertEqual(summary["types_changed"], users)
        self.assertTrue(summary["sequence_changed"])

    def test_bad_subsystems_names_key_path(self) -> None:
        """A wrong value names the file, the key path and what was expected."""
        add_type(self.files, NEW_TYPE.replace("7.5", "-1"))
        with self.assertRaises(ConfigError) as caught:
            read_vocabulary(self.files)
        line = caught.exception.problems[0]
        self.assertIn(str(self.files.subsystems), line)
        self.assertIn("detector_types.ECAL.command_timeout", line)
        self.assertIn("greater than 0", line)

    def test_bad_table_names_file_and_line(self) -> None:
        """A table that does not parse is named with its type's key path and its own problems."""
        add_type(self.files, NEW_TYPE.replace("detector-3step.yaml", "broken.yaml"))
        folder = Path(str(self.files.subsystems)).parent
        (folder / "broken.yaml").write_text("name: broken\nstates: [\n")
        with self.assertRaises(ConfigError) as caught:
            read_vocabulary(self.files)
        text = "\n".join(caught.exception.problems)
        self.assertIn("detector_types.ECAL.fsm: the state table is invalid", text)
        self.assertIn(str(folder / "broken.yaml"), text)

    def test_bad_sequence_names_key_path(self) -> None:
        """A sequence naming an unknown global system is refused with its key path."""
        edit(self.files.sequence, "systems: [QA]", "systems: [QAX]")
        with self.assertRaises(ConfigError) as caught:
            read_vocabulary(self.files)
        text = "\n".join(caught.exception.problems)
        self.assertIn(f"{self.files.sequence}: stages[3].systems[0]", text)
        self.assertIn("QAX", text)


class FakeLink:
    """A PCA link whose C{reload} answers are given by the test."""

    def __init__(self) -> None:
        self.asked: list[defer.Deferred[dict[str, Any]]] = []

    def request(self, type: str, body: dict[str, Any]) -> defer.Deferred[dict[str, Any]]:
        assert type == "reload" and body == {}
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.asked.append(d)
        return d


class FakePartition:
    """What the reloader needs of a followed partition."""

    def __init__(self, partition_id: str, connected: bool) -> None:
        self.id = partition_id
        self.connected = connected
        self.link = FakeLink()


class ReloaderTests(SynchronousTestCase):
    """The ECA's reload on a clock: valid change applied, invalid refused, PCAs asked."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.files = copy_data(Path(self.mktemp()))
        start = read_vocabulary(self.files)
        self.subsystems, self.sequence = start.subsystems, start.sequence
        self.store = inline_store(self, self.clock)
        self.partitions = [FakePartition("demo", True), FakePartition("spare", False)]
        self.logbook = FakeLogBook()
        self.reloader = Reloader(
            self.subsystems, self.sequence, start.tables, self.partitions,  # type: ignore[arg-type]
            self.store, Audit(self.store), self.logbook, self.clock,
        )

    def audit(self) -> list[tuple[str, str, str]]:
        rows = self.successResultOf(self.store.audit_entries())
        return [(r.user, r.action, r.outcome) for r in rows]

    def test_reads_the_files_it_started_from(self) -> None:
        """By default the reloader reads the files the subsystems and the sequence came from."""
        self.assertEqual(self.reloader.files, self.files)

    def test_admin_only(self) -> None:
        """An expert is refused before anything is read."""
        with self.assertRaises(ControlError) as caught:
            self.reloader.reload(EXPERT)
        self.assertEqual(caught.exception.code, "forbidden")

    def test_new_type_in_force_and_pcas_asked(self) -> None:
        """A new type is known at once to every holder; each connected PCA is asked; audited."""
        add_type(self.files)
        d = self.reloader.reload(ADMIN)
        self.assertNoResult(d)  # waiting for the PCA
        self.assertIn("ECAL", self.subsystems.detector_types)  # already in force in the ECA
        [asked] = self.partitions[0].link.asked
        self.assertEqual(self.partitions[1].link.asked, [])
        asked.callback({"partition": "demo", "sequence": "unchanged", "changes": {"types_added": ["ECAL"]}})
        result = self.successResultOf(d)
        self.assertEqual(result["types_added"], ["ECAL"])
        self.assertEqual(result["pcas"]["demo"], {"ok": True, "sequence": "unchanged",
                                                  "changes": {"types_added": ["ECAL"]}})
        self.assertFalse(result["pcas"]["spare"]["ok"])
        self.assertIn("not connected", result["pcas"]["spare"]["reason"])
        self.assertEqual(self.audit(), [("root", "reload", "ok")])
        self.assertTrue(any("types added: ECAL" in line[2] for line in self.logbook.lines))
        self.assertIn("spare", [line[3] for line in self.logbook.lines if line[0] == "warn"])

    def test_drawn_again(self) -> None:
        """The systems view has the new type and its table after the reload, not before."""
        before = self.successResultOf(self.reloader.systems())
        add_type(self.files)
        self.assertNotIn("ECAL", self.successResultOf(self.reloader.systems())["detector_types"])
        self.assertEqual(before["detector_types"].keys(),
                         self.successResultOf(self.reloader.systems())["detector_types"].keys())
        d = self.reloader.reload(ADMIN)
        self.partitions[0].link.asked[0].callback({"sequence": "unchanged", "changes": {}})
        self.successResultOf(d)
        view = self.successResultOf(self.reloader.systems())
        self.assertEqual(view["detector_types"]["ECAL"], {"table": "detector-3step"})
        self.assertIn("detector-3step", view["tables"])

    def test_invalid_file_refused_old_in_force(self) -> None:
        """An invalid file: bad_request naming file, key path and reason; nothing changes; no PCA asked."""
        add_type(self.files, NEW_TYPE.replace("simulated", "teleport"))
        sequence_before = self.sequence.stages
        f = self.failureResultOf(self.reloader.reload(ADMIN), ControlError)
        error = f.value
        self.assertEqual(error.code, "bad_request")
        self.assertIn(str(self.files.subsystems), error.reason)
        self.assertIn("detector_types.ECAL.action", error.reason)
        self.assertIn("teleport", error.reason)
        self.assertTrue(error.details["problems"])
        self.assertNotIn("ECAL", self.subsystems.detector_types)
        self.assertIs(self.sequence.stages, sequence_before)
        self.assertEqual(self.partitions[0].link.asked, [])
        self.assertEqual(self.audit()[0][:2], ("root", "reload"))
        self.assertTrue(self.audit()[0][2].startswith("bad_request"))

    def test_global_systems_change_refused(self) -> None:
        """A sequence naming other global systems needs a restart: refused, the old one stays."""
        edit(self.files.sequence, "systems: [FLES, DCS]", "systems: [FLES]")
        edit(self.files.sequence, "systems: [QA, FLES]", "systems: [QA]")
        error = self.failureResultOf(self.reloader.reload(ADMIN), ControlError).value
        self.assertIn("global systems changed", error.reason)
        self.assertIn("removed: DCS", error.reason)
        self.assertIn("DCS", self.sequence.global_systems())

    def test_sequence_adopted_in_place(self) -> None:
        """A changed sequence is the same object with the new stages (its holders see it)."""
        edit(self.files.sequence, "timeout: 60", "timeout: 90")
        d = self.reloader.reload(ADMIN)
        self.partitions[0].link.asked[0].callback({"sequence": "applied", "changes": {}})
        self.assertTrue(self.successResultOf(d)["sequence_changed"])
        self.assertEqual(self.sequence.stage_named("Detectors").timeout, 90)

    def test_pca_refusal_reported(self) -> None:
        """A PCA that refuses (its own copy is invalid) or does not answer is named with its reason."""
        self.partitions.append(FakePartition("other", True))
        d = self.reloader.reload(ADMIN)
        self.partitions[0].link.asked[0].errback(RequestError(protocol.BAD_REQUEST, "partition.yaml: bad"))
        self.partitions[2].link.asked[0].errback(RequestError(protocol.TIMEOUT, "no answer in 5 s"))
        pcas = self.successResultOf(d)["pcas"]
        self.assertEqual(pcas["demo"], {"ok": False, "error": "bad_request", "reason": "partition.yaml: bad"})
        self.assertEqual(pcas["other"]["error"], "timeout")

    def test_one_at_a_time(self) -> None:
        """A second reload while one waits for its PCAs is refused (conflict)."""
        first = self.reloader.reload(ADMIN)
        error = self.failureResultOf(self.reloader.reload(ADMIN), ControlError).value
        self.assertEqual(error.code, "conflict")
        self.partitions[0].link.asked[0].callback({"sequence": "unchanged", "changes": {}})
        self.successResultOf(first)


class HangUpTests(SynchronousTestCase):
    """SIGHUP reloads as an admin would, and its outcome is logged, never raised."""

    def test_hang_up_reloads_as_sighup(self) -> None:
        """The reload runs as the SIGHUP user; a refusal is swallowed (logged)."""
        users: list[User] = []

        def reload(user: User) -> defer.Deferred[dict[str, Any]]:
            users.append(user)
            if len(users) == 1:
                return defer.succeed({"types_added": ["X"], "types_removed": [], "types_changed": [],
                                      "tables_changed": [], "sequence_changed": False, "pcas": {}})
            raise ControlError("bad_request", "subsystems.yaml: detector_types.X: bad")

        hang_up = HangUpReload(Clock(), reload)
        self.successResultOf(hang_up.hang_up())
        self.successResultOf(hang_up.hang_up())
        self.assertEqual(users, [SIGHUP_USER, SIGHUP_USER])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_install_and_uninstall(self) -> None:
        """The handler is installed and the previous one restored."""
        import signal

        before = signal.getsignal(signal.SIGHUP)
        hang_up = HangUpReload(Clock(), lambda user: defer.succeed({}))
        hang_up.install()
        self.addCleanup(hang_up.uninstall)
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), before)
        hang_up.uninstall()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)


class PcaReloadTests(PartitionHarness):
    """A PCA's reload: new types at once, a new sequence now when Idle, else at the next configure from Idle."""

    def setUp(self) -> None:
        super().setUp()
        self.files = copy_data(Path(self.mktemp()))
        self.pca.vocabulary_files = self.files

    def rename_top(self) -> None:
        edit(self.files.sequence, "active: QA_Active", "active: QA_Ready")

    def test_new_type_known(self) -> None:
        """A new detector type is known to the PCA (its timeout) after a reload."""
        add_type(self.files)
        reply = self.command("reload")
        self.assertEqual(reply["changes"]["types_added"], ["ECAL"])
        self.assertNotIn("tables_changed", reply["changes"])
        self.assertEqual(reply["sequence"], "unchanged")
        self.assertEqual(self.pca.subsystems.detector_types["ECAL"].command_timeout, 7.5)

    def test_idle_applies_now(self) -> None:
        """Idle: the new sequence is in force at once and the next configure follows it."""
        self.rename_top()
        self.assertEqual(self.command("reload")["sequence"], "applied")
        self.assertEqual(self.pca.sequencer.partition.sequence.top_active, "QA_Ready")
        self.assertNotIsInstance(self.command("configure", tag="v1", auto=True), RequestError)
        self.advance(2.0)
        self.assertEqual(self.state, "QA_Ready")

    def test_busy_applies_at_next_configure_from_idle(self) -> None:
        """Configured: the new sequence waits; after abort, the configure from Idle uses it."""
        self.assertNotIsInstance(self.command("configure", tag="v1", auto=True), RequestError)
        self.advance(2.0)
        self.assertEqual(self.state, "QA_Active")
        self.rename_top()
        self.assertEqual(self.command("reload")["sequence"], "pending")
        self.assertEqual(self.state, "QA_Active")
        self.command("abort")
        self.advance(1.0)
        self.assertEqual(self.state, "Idle")
        self.assertEqual(self.pca.sequencer.partition.sequence.top_active, "QA_Active")  # not yet
        self.assertNotIsInstance(self.command("configure", tag="v1", auto=True), RequestError)
        self.advance(2.0)
        self.assertEqual(self.state, "QA_Ready")
        self.assertIn("partition sequence partition", "\n".join(self.logs()))

    def test_invalid_refused_old_stays(self) -> None:
        """An invalid sequence: bad_request naming the file and key path; the old one stays."""
        edit(self.files.sequence, "timeout: 60", "timeout: -60")
        error = self.refused(protocol.BAD_REQUEST, "reload")
        self.assertIn(f"{self.files.sequence}: stages[1].timeout", error.reason)
        self.assertEqual(self.pca.sequencer.partition.sequence.stage_named("Detectors").timeout, 60)
        self.assertIn("reload refused", "\n".join(self.logs()))

    def test_global_systems_change_refused(self) -> None:
        """A sequence without DCS is refused by the PCA too."""
        edit(self.files.sequence, "systems: [FLES, DCS]", "systems: [FLES]")
        error = self.refused(protocol.BAD_REQUEST, "reload")
        self.assertIn("global systems changed", error.reason)


class ReloadRouteTests(WebTestCase):
    """POST /api/reload: 401 without login, 403 below admin, 400 naming the problems, 200 with the changes."""

    def test_needs_login(self) -> None:
        """No token: 401."""
        self.assertError(self.call("POST", "/api/reload"), 401, "unauthenticated")

    def test_needs_admin(self) -> None:
        """An expert: 403; nothing reloaded."""
        self.center.reload_types = {"ECAL"}
        self.assertError(self.call("POST", "/api/reload", token=self.token("expert")), 403, "forbidden")
        self.assertNotIn("ECAL", self.center.detector_types)

    def test_invalid_file(self) -> None:
        """An invalid file: 400 with the reason and the problems listed."""
        self.center.reload_problems = ["etc/subsystems.yaml: detector_types.X.fsm: FSM file 'x.yaml' not found"]
        body = self.assertError(self.call("POST", "/api/reload", token=self.token("admin")), 400, "bad_request")
        self.assertIn("detector_types.X.fsm", body["reason"])
        self.assertEqual(body["problems"], self.center.reload_problems)

    def test_reloaded(self) -> None:
        """An admin: 200 with what changed; the new type can be created at once."""
        self.center.reload_types = {"ECAL"}
        admin = self.token("admin")
        r = self.call("POST", "/api/reload", token=admin)
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual(r.json["types_added"], ["ECAL"])
        self.assertTrue(r.json["pcas"]["demo"]["ok"])
        self.assertIn(("admin", "reload", ()), self.center.audit_log)

    def test_body_checked(self) -> None:
        """An unexpected body key is refused with its name."""
        body = self.assertError(self.call("POST", "/api/reload", token=self.token("admin"), json={"x": 1}),
                                400, "bad_request")
        self.assertIn("x", body["reason"])


class SequenceAdoptTests(SynchronousTestCase):
    """L{Sequence.adopt} and L{Subsystems.adopt} change the shared objects in place."""

    def test_adopt(self) -> None:
        """Every field is taken; the object stays the same."""
        files = copy_data(Path(self.mktemp()))
        live = load_sequence(files.sequence)
        edit(files.sequence, "name: partition", "name: other")
        other = load_sequence(files.sequence)
        holder = [live]
        live.adopt(other)
        self.assertIs(holder[0], live)
        self.assertEqual(live, other)
        subsystems = load_subsystems(files.subsystems)
        types = subsystems.detector_types
        add_type(files)
        subsystems.adopt(load_subsystems(files.subsystems))
        self.assertIs(subsystems.detector_types, types)
        self.assertIn("ECAL", types)


ANSWER = {"types_added": ["ECAL"], "types_removed": [], "types_changed": [], "tables_changed": [],
          "sequence_changed": True,
          "pcas": {"demo": {"ok": True, "sequence": "pending", "changes": {}},
                   "spare": {"ok": False, "error": "unavailable", "reason": "not connected"}}}


class CommandLineTests(SynchronousTestCase):
    """C{ecs reload} over HTTP and in the shell, from the shared table."""

    def test_cli_posts_and_shows(self) -> None:
        """It posts /api/reload; what changed and each PCA's answer are shown; a PCA not reloaded: exit 1."""
        client, printer, code = test_commands.HttpCommandTests.cli(self, "reload", {"reload": ANSWER})  # type: ignore[arg-type]
        self.assertEqual(client.sent[-1], ("POST", "reload", {}, None, {}))
        self.assertEqual(code, 1)
        self.assertIn("types added: ECAL", printer.text)
        self.assertIn("partition sequence: changed", printer.text)
        self.assertIn("PCA demo: reloaded (sequence pending)", printer.text)
        self.assertIn("PCA spare: not reloaded: not connected", printer.text)
        all_ok = {**ANSWER, "pcas": {"demo": ANSWER["pcas"]["demo"]}}  # type: ignore[index]
        self.assertEqual(test_commands.HttpCommandTests.cli(self, "reload", {"reload": all_ok})[2], 0)  # type: ignore[arg-type]

    def test_cli_refusal_lists_problems(self) -> None:
        """A refused reload names each problem on its own line."""
        problems = ["etc/subsystems.yaml: detector_types.X.fsm: FSM file 'x.yaml' not found",
                    "fsm/partition.yaml: stages[1].timeout: expected a number greater than 0, got -1"]

        def refuse(values: Any, query: Any) -> Any:
            raise CommandError(1, "bad_request: invalid file", {"error": "bad_request", "problems": problems}, 400)

        with self.assertRaises(CommandError) as caught:
            test_commands.HttpCommandTests.cli(self, "reload", {"reload": refuse})  # type: ignore[arg-type]
        message = caught.exception.message
        self.assertIn("nothing changed", message)
        self.assertIn("\n  etc/subsystems.yaml: detector_types.X.fsm", message)
        self.assertIn("\n  fsm/partition.yaml: stages[1].timeout", message)

    def test_shell(self) -> None:
        """In the shell an admin reloads; an expert is refused for the role."""
        center = FakeControlCenter()
        center.reload_types = {"ECAL"}
        outcome, _, err = test_commands.ShellTests.line(center, Clock(), "reload", user="expert")
        self.assertEqual(outcome.code, EXIT_AUTH, err)
        self.assertNotIn("ECAL", center.detector_types)
        outcome, out, err = test_commands.ShellTests.line(center, Clock(), "reload", user="admin")
        self.assertEqual(outcome.code, 0, err)
        self.assertIn("types added: ECAL", out)
        self.assertIn("ECAL", center.detector_types)

    def test_shell_refusal(self) -> None:
        """A refusal in the shell shows the problems and exits 1."""
        center = FakeControlCenter()
        center.reload_problems = ["etc/subsystems.yaml: detector_types.X: bad"]
        outcome, _, err = test_commands.ShellTests.line(center, Clock(), "reload", user="admin")
        self.assertEqual(outcome.code, 1)
        self.assertIn("detector_types.X: bad", err)


class ReloadEndToEndTests(TestCase):
    """
    Real processes: C{ecs-demo} (the ECA, its PCA and every agent, launched
    by its supervisor) over copies of the data folders (C{ECS_DATA_DIR}); a
    detector type added to the copy, C{ecs reload} with the real client, a
    detector of the new type created, configured and drawn; SIGHUP too.
    """

    timeout = 240

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await call_api(self.base, method, path, self.token, body)

    async def ecs(self, *argv: str, stdin: str | None = None) -> tuple[int | None, str, str]:
        """The real C{ecs} client, its configuration under an absolute temporary folder."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ECS_", "XDG_"))}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / "config"), PYTHONPATH=str(ROOT), NO_COLOR="1")
        collect = Collected(stdin.encode() if stdin is not None else None)
        args = [sys.executable, "-m", "ecs.cli", *argv]
        transport = reactor.spawnProcess(collect, args[0], args, env=env, path=str(ROOT))  # type: ignore[attr-defined]
        self.addCleanup(stop_watched, collect, transport)
        timer = reactor.callLater(60, transport.signalProcess, "KILL")  # type: ignore[attr-defined]
        code = await collect.ended
        if timer.active():
            timer.cancel()
        return code, collect.out.decode("utf-8", "replace"), collect.err.decode("utf-8", "replace")

    async def until(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        """Poll C{check()} (a coroutine giving a truthy value when done) every 0.1 s."""
        last: Any = None
        for _ in range(int(timeout / 0.1)):
            last = await check()
            if last:
                return last
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"{what}: not within {timeout} s ({last!r}); ECA output:\n"
                             + "\n".join(self.demo.lines[-40:]))

    async def page(self, path: str) -> str:
        """A page of the GUI as a browser logged in as admin gets it (session cookie)."""
        import treq

        login = await treq.post(self.base + "/api/login", json={"username": "admin", "password": "admin-pass-123"},
                                persistent=False)
        await login.content()
        cookie = login.headers.getRawHeaders(b"set-cookie")[0].split(b";")[0]
        response = await treq.get(self.base + path, headers={b"Cookie": [cookie]}, persistent=False)
        text = (await response.content()).decode("utf-8", "replace")
        self.assertEqual(response.code, 200, text)
        return text

    async def partition(self) -> dict[str, Any]:
        code, body = await self.api("GET", "/api/partitions/demo")
        self.assertEqual(code, 200, body)
        return dict(body)

    async def test_new_type_without_restart(self) -> None:
        """A type added to the YAML files is created, configured to QA_Active and drawn after `ecs reload`."""
        tmp = Path(self.mktemp()).resolve()
        data = tmp / "data"
        data.mkdir(parents=True)
        root = paths.data_root()
        shutil.copytree(root / "etc", data / "etc", ignore=shutil.ignore_patterns("systemd"))
        shutil.copytree(root / "fsm", data / "fsm")
        (data / "templates").symlink_to(root / "templates")
        files = VocabularyFiles(str(data / "etc" / "subsystems.yaml"), str(data / "fsm" / "partition.yaml"))
        self.home = tmp / "home"
        self.home.mkdir()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.demo, demo_transport = spawn(
            self, "ecs-demo",
            [tool("twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(port),
             "--registry-port", str(free_port()), "--state-dir", str(tmp / "var")],
            cwd=str(tmp), env={"ECS_ADMIN_PASSWORD": "admin-pass-123", "ECS_DATA_DIR": str(data)},
        )
        await self.demo.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=90)
        code, out, err = await self.ecs("login", "--url", self.base, "--user", "admin", "--password-stdin",
                                        stdin="admin-pass-123\n")
        self.assertEqual(code, 0, out + err)
        code, body = await call_api(self.base, "POST", "/api/login",
                                    body={"username": "admin", "password": "admin-pass-123", "kind": "api"})
        self.token = body["token"]

        async def idle_and_connected() -> Any:
            p = await self.partition()
            return p["state"] == "Idle" and p["systems"] and all(s["connected"] for s in p["systems"]) and p

        before = await self.until("demo Idle and connected", idle_and_connected, 90)
        self.assertEqual((await self.api("POST", "/api/control"))[0], 200)
        code, body = await self.api("POST", "/api/detectors", {"id": "ECAL1", "type": "ECAL"})
        self.assertEqual((code, body["error"]), (400, "bad_request"), body)
        self.assertIn("unknown detector type 'ECAL'", body["reason"])

        # -- an invalid file: refused with file, key path and reason; nothing changes --
        add_type(files, NEW_TYPE.replace("detector-3step.yaml", "missing.yaml"))
        code, out, err = await self.ecs("reload")
        self.assertEqual(code, 1, out + err)
        self.assertIn(f"{files.subsystems}: detector_types.ECAL.fsm: FSM file 'missing.yaml' not found", err)
        self.assertIn("nothing changed", err)
        self.assertEqual((await self.api("POST", "/api/detectors", {"id": "ECAL1", "type": "ECAL"}))[0], 400)

        # -- the new type with a new table, and a changed sequence (Idle: in force at once) --
        table = (data / "fsm" / "detector-3step.yaml").read_text().replace("name: detector-3step", "name: ecal")
        (data / "fsm" / "ecal.yaml").write_text(table)
        edit(files.subsystems, "missing.yaml", "ecal.yaml")
        edit(files.sequence, "timeout: 60", "timeout: 61")
        code, out, err = await self.ecs("reload")
        self.assertEqual(code, 0, out + err)
        self.assertIn("types added: ECAL", out)
        self.assertIn(f"tables changed: {data / 'fsm' / 'ecal.yaml'}", out)
        self.assertIn("partition sequence: changed", out)
        self.assertIn("PCA demo: reloaded (sequence applied)", out)

        code, body = await self.api("POST", "/api/detectors", {"id": "ECAL1", "type": "ECAL"})
        self.assertEqual(code, 200, body)

        async def agent_up() -> Any:
            code, rows = await self.api("GET", "/api/detectors/unassigned")
            return code == 200 and any(r["id"] == "ECAL1" and r.get("connected") for r in rows)

        await self.until("the agent of ECAL1 started with its type", agent_up, 60)
        code, body = await self.api("POST", "/api/detectors/ECAL1/move", {"to": "demo"})
        self.assertEqual(code, 200, body)
        code, body = await self.api("PUT", "/api/configs/ecal1-default",
                                    {"system": "ECAL1", "parameters": {"threshold": 3}})
        self.assertEqual(code, 200, body)
        code, tag = await self.api("GET", "/api/tags/demo")
        self.assertEqual(code, 200, tag)
        ids = list(tag["configs"].values())  # system -> configuration id
        code, body = await self.api("PUT", "/api/tags/with-ecal", {"configs": [*ids, "ecal1-default"]})
        self.assertEqual(code, 200, body)
        self.assertEqual((await self.api("POST", "/api/partitions/demo/control"))[0], 200)
        code, body = await self.api("POST", "/api/partitions/demo/configure", {"tag": "with-ecal", "auto": True})
        self.assertEqual(code, 200, body)

        async def configured() -> Any:
            p = await self.partition()
            return p["state"] == "QA_Active" and p["operation"] is None and p

        ready = await self.until("demo configured with ECAL1", configured, 90)
        ecal = [s for s in ready["systems"] if s["id"] == "ECAL1"]
        self.assertEqual(len(ready["systems"]), len(before["systems"]) + 1)
        self.assertEqual((ecal[0]["state"], ecal[0]["tag"]), ("Active", "ecal1-default"), ecal)
        code, systems = await self.api("GET", "/api/systems")
        self.assertEqual(systems["detector_types"]["ECAL"], {"table": "ecal"})
        self.assertEqual(systems["tables"]["ecal"]["name"], "ecal")
        self.assertIn('"Configuring_Step3" -> "Active"', await self.page("/fsm/dot/ecal?state=Configuring_Step3"))
        code, out, err = await self.ecs("fsm", "dot", str(data / "fsm" / "ecal.yaml"), "--state", "Active")
        self.assertEqual(code, 0, err)
        self.assertIn('digraph "ecal"', out)

        # -- SIGHUP: an invalid file is refused (logged), a valid one put in force --
        edit(files.subsystems, "detector_types:\n", "detector_types:\n  HCAL: {fsm: detector-2step.yaml}\n")
        mark = len(self.demo.lines)
        os.kill(demo_transport.pid, signal.SIGHUP)
        await self.demo.wait_for(r"SIGHUP reload refused", timeout=30)
        refusal = "\n".join(self.demo.lines[mark:])
        self.assertIn("detector_types.HCAL.action", refusal)
        self.assertEqual((await self.api("POST", "/api/detectors", {"id": "HCAL1", "type": "HCAL"}))[0], 400)
        edit(files.subsystems, "HCAL: {fsm: detector-2step.yaml}",
             "HCAL: {fsm: detector-2step.yaml, action: {kind: simulated, duration: 0.1}}")
        os.kill(demo_transport.pid, signal.SIGHUP)
        await self.demo.wait_for(r"SIGHUP reload done: types added: HCAL", timeout=30)
        self.assertEqual((await self.api("POST", "/api/detectors", {"id": "HCAL1", "type": "HCAL"}))[0], 200)
