# -*- test-case-name: tests.test_sequencer -*-
"""
Scenario tests of the Partition Control Agent: a whole partition in memory
(L{tests.pca_harness}), driven by commands and faults with a L{Clock}.

Each test checks one rule of issue 3 (and of the original behaviour,
reference §3.5-3.13, with its bugs fixed): the partition states published
and their order, the replies and error codes, the reasons, and what the
controllers themselves did (their states, and the commands they received).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet import defer

from agents.controller.actions import SimulatedAction
from agents.controller.host import ControllerHost
from ecs import protocol
from ecs.net.memory import MemoryNode
from ecs.net.pubsub import Mirror, fetch_paged_snapshot
from ecs.net.transport import RequestError
from tests.pca_harness import DETECTORS, GLOBALS, SETTINGS, PartitionHarness, config

ALL = (*GLOBALS, *DETECTORS)
TOP = "QA_Active"
#: Idle -> QA_Active with auto-configure, step 0.25 s: TFC 1 step, detectors
#: 2 steps, FLES/DCS 1 step, QA 1 step.
CONFIGURE_TIME = 1.25
AUTO_STATES = ["Configuring_TFC", "Configuring_Detectors", "Configuring_FLES_and_DCS", "Configuring_QA", TOP]


class Scenario(PartitionHarness):
    """The harness, with helpers to look at the controllers themselves."""

    def setUp(self) -> None:
        super().setUp()
        #: (system, command, config id or None) as the controllers received them.
        self.received: list[tuple[str, str, str | None]] = []
        for host in self.hosts.values():
            self.spy(host)

    def spy(self, host: ControllerHost) -> None:
        """Record every command the controllers of C{host} receive."""
        for controller in host.controllers.values():
            original = controller.command

            def command(
                name: str, config: object = None, _original: Any = original, _system: str = controller.system
            ) -> Any:
                config_id = config.get("config_id") if isinstance(config, dict) else None
                self.received.append((_system, name, config_id))
                return _original(name, config)

            controller.command = command  # type: ignore[method-assign]

    # -- the controllers -------------------------------------------------

    def controller(self, name: str) -> Any:
        """The controller of system C{name} (for partition p1)."""
        for host in self.hosts.values():
            for (system, partition), controller in host.controllers.items():
                if system == name and partition in (None, "p1"):
                    return controller
        raise KeyError(name)

    def controller_states(self) -> dict[str, tuple[str, int, str | None]]:
        """Every controller's (state, seq, tag)."""
        names = [*self.globals_, *self.detectors]
        return {n: (self.controller(n).state, self.controller(n).seq, self.controller(n).tag) for n in names}

    def remote(self, name: str) -> dict[str, Any]:
        """A controller's status, asked over the network as another client would."""
        host = "detectors" if name in self.detectors else "globals"
        body = {"partition": "p1"} if host == "globals" else {}
        status = self.to_system(host, name, "status", **body)
        self.assertNotIsInstance(status, RequestError)
        return status

    def commands_to(self, system: str) -> list[str]:
        return [c for s, c, _ in self.received if s == system]

    # -- driving ---------------------------------------------------------

    def configure_to_top(self, tag: str = "v1") -> None:
        """Configure with auto-configure to the last stage's active state."""
        reply = self.command("configure", tag=tag, auto=True)
        self.assertNotIsInstance(reply, RequestError)
        self.advance(CONFIGURE_TIME + 0.5)
        self.assertEqual(self.state, self.sequence.top_active)

    def record_on(self) -> None:
        """Configure and start recording."""
        self.configure_to_top()
        self.assertNotIsInstance(self.command("start"), RequestError)
        self.advance(0.25)
        self.assertEqual(self.state, "Recording")

    def mark(self) -> int:
        """The index of the next event: published_since(mark) reads from there."""
        return len(self.events)

    def published_since(self, mark: int) -> list[str]:
        """The partition states published after C{mark} that differ from the one before."""
        states = [
            e.body["value"]["state"]
            for e in self.events
            if e.type == "state" and e.body["key"] == "partition"
        ]
        before = [
            e for e in self.events[:mark] if e.type == "state" and e.body["key"] == "partition"
        ]
        out: list[str] = []
        last = before[-1].body["value"]["state"] if before else None
        for state in states[len(before):]:
            if state != last:
                out.append(state)
            last = state
        return out

    def send(self, type_: str, **body: Any) -> Any:
        """L{command} for bodies with a key named C{type} (which command() cannot take)."""
        results: list[Any] = []
        d = self.tester.connect("mem://pca").request("p1", type_, body)
        d.addCallbacks(results.append, lambda f: results.append(f.value))
        self.flush()
        self.assertEqual(len(results), 1, f"no reply to {type_}")
        return results[0]

    def logs_since(self, mark: int) -> list[str]:
        return [e.body["message"] for e in self.events[mark:] if e.type == "log"]

    def system_records(self, name: str) -> list[dict[str, Any]]:
        """The published records of system C{name}, in order."""
        return [
            e.body["value"] for e in self.events if e.type == "state" and e.body["key"] == f"system/{name}"
        ]

    def assertLogged(self, fragment: str, mark: int = 0) -> str:
        for line in self.logs_since(mark):
            if fragment in line:
                return line
        self.fail(f"no log line contains {fragment!r}; logs: {self.logs_since(mark)}")

    def assertNoChange(self, before: dict[str, tuple[str, int, str | None]], received: int) -> None:
        """No controller changed state and none received a command."""
        self.advance(1.0)
        self.assertEqual(self.controller_states(), before)
        self.assertEqual(self.received[received:], [])


# =========================================================================
# configure
# =========================================================================


class ConfigureTests(Scenario):
    def test_auto_configure_reaches_top(self) -> None:
        """Configure with a tag and auto goes Idle -> ... -> QA_Active, stage by stage."""
        reply = self.command("configure", tag="v1", auto=True)
        self.assertEqual(reply["state"], "Configuring_TFC")
        self.assertEqual(reply["tag"], "v1")
        self.assertTrue(reply["auto"])
        self.assertEqual(reply["operation"], "configuring stage TFC (1 of 4)")
        self.advance(CONFIGURE_TIME)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.published_states(), AUTO_STATES)
        for name in ALL:
            self.assertEqual(self.controller(name).state, "Active", name)
            self.assertEqual(self.controller(name).tag, config(name)["config_id"], name)
            self.assertEqual(self.remote(name)["tag"], config(name)["config_id"], name)
            self.assertEqual(self.commands_to(name), ["configure"], name)
        # stage order: TFC first, then the detectors, then FLES and DCS, then QA
        order = [s for s, c, _ in self.received if c == "configure"]
        self.assertEqual(order[0], "TFC")
        self.assertEqual(set(order[1:4]), set(DETECTORS))
        self.assertEqual(set(order[4:6]), {"FLES", "DCS"})
        self.assertEqual(order[6], "QA")
        record = self.pca.store.get("partition")
        self.assertEqual(record["state"], TOP)
        self.assertEqual(record["tag"], "v1")
        self.assertIsNone(record["operation"])
        self.assertEqual(record["level"], 4)

    def test_stage_durations_and_total_logged(self) -> None:
        """Each stage is logged with its duration and system count, and the total time."""
        self.configure_to_top()
        logs = self.logs()
        self.assertIn("configure with tag 'v1', auto-configure", logs)
        self.assertIn("stage TFC configured in 0.250 s (1 systems)", logs)
        self.assertIn("stage Detectors configured in 0.500 s (3 systems)", logs)
        self.assertIn("stage FLES_and_DCS configured in 0.250 s (2 systems)", logs)
        self.assertIn("stage QA configured in 0.250 s (1 systems)", logs)
        self.assertIn("configured to QA_Active in 1.250 s", logs)
        self.assertIn("partition state Configuring_QA -> QA_Active", logs)

    def test_progress_events(self) -> None:
        """Progress events per stage count ready systems of the stage and end with ready == total."""
        self.configure_to_top()
        progress = [e.body for e in self.events if e.type == "progress"]
        totals = {"TFC": 1, "Detectors": 3, "FLES_and_DCS": 2, "QA": 1}
        stages = [p["stage"] for p in progress]
        self.assertEqual(list(dict.fromkeys(stages)), list(totals))
        for stage, total in totals.items():
            mine = [p for p in progress if p["stage"] == stage]
            self.assertTrue(all(p["total"] == total and p["partition"] == "p1" for p in mine), mine)
            self.assertEqual(mine[0]["ready"], 0, stage)
            self.assertEqual(mine[-1]["ready"], total, stage)
            readies = [p["ready"] for p in mine]
            self.assertEqual(readies, sorted(readies), stage)
        self.assertEqual(progress[-1], {"partition": "p1", "stage": "QA", "ready": 1, "total": 1})

    def test_progress_not_swallowed(self) -> None:
        """A count that changes inside the progress interval is reported when it ends."""
        from agents.pca.sequencer import PROGRESS_INTERVAL

        self.command("configure", tag="v1", auto=True)
        sequencer = self.pca.sequencer
        op = sequencer.op
        counts = {"value": (1, 5)}
        self.patch(sequencer.partition, "stage_counts", lambda stage: counts["value"])
        self.clock.advance(PROGRESS_INTERVAL)
        sequencer._report_progress(op)
        counts["value"] = (2, 5)
        sequencer._report_progress(op)  # inside the interval: held back

        def readies() -> list[int]:
            return [e.body["ready"] for e in self.events if e.type == "progress" and e.body["total"] == 5]

        self.flush()
        self.assertEqual(readies(), [1])
        self.clock.advance(PROGRESS_INTERVAL)
        self.flush()
        self.assertEqual(readies(), [1, 2])

    def test_auto_never_records(self) -> None:
        """Auto-configure stops at QA_Active: recording is never started by configure."""
        self.configure_to_top()
        self.advance(30)
        self.assertEqual(self.state, TOP)
        self.assertNotIn("Recording", self.published_states())
        for name in ("QA", "FLES"):
            self.assertEqual(self.controller(name).state, "Active")
            self.assertNotIn("start", self.commands_to(name))

    def test_one_stage_per_command(self) -> None:
        """Without auto each configure command configures one stage; the same tag continues with the next."""
        expected = [
            ("Configuring_TFC", "TFC_Active", ["TFC"]),
            ("Configuring_Detectors", "Detectors_Active", list(DETECTORS)),
            ("Configuring_FLES_and_DCS", "FLES_and_DCS_Active", ["FLES", "DCS"]),
            ("Configuring_QA", "QA_Active", ["QA"]),
        ]
        for configuring, active, systems in expected:
            mark, received = self.mark(), len(self.received)
            reply = self.command("configure", tag="v1")
            self.assertEqual(reply["state"], configuring)
            self.assertFalse(reply["auto"])
            self.advance(1.0)
            self.assertEqual(self.state, active)
            self.assertEqual(self.published_since(mark), [configuring, active])
            self.assertEqual(sorted(s for s, _, _ in self.received[received:]), sorted(systems))
        reply = self.command("configure", tag="v1")
        self.assertEqual(reply["message"], "nothing to do: every system is configured")
        self.assertEqual(reply["state"], TOP)

    def test_by_configuration_ids(self) -> None:
        """Configure by a list of configuration ids gives each system its configuration."""
        ids = [config(s, "2" if s == "MVD" else "1")["config_id"] for s in ALL]
        reply = self.command("configure", configs=ids, auto=True)
        self.assertIsNone(reply["tag"])
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.controller("MVD").tag, "mvd-2")
        self.assertEqual(self.controller("STS").tag, "sts-1")
        self.assertIn("configure with a custom configuration, auto-configure", self.logs())
        self.assertIsNone(self.pca.store.get("partition")["tag"])

    def test_by_inline_configurations(self) -> None:
        """Configure by inline configuration objects sends exactly those configurations."""
        configs = [config(s, "x", gain=3) for s in ALL]
        self.command("configure", configs=configs, auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        for name in ALL:
            self.assertEqual(self.controller(name).tag, f"{name.lower()}-x")
            self.assertEqual(self.controller(name).config["parameters"], {"gain": 3})

    def test_unknown_tag(self) -> None:
        """An unknown tag is refused with unknown_tag naming it, nothing sent."""
        before, received = self.controller_states(), len(self.received)
        error = self.refused("unknown_tag", "configure", tag="v9", auto=True)
        self.assertIn("'v9'", error.reason)
        self.assertNoChange(before, received)
        self.assertEqual(self.state, "Idle")

    def test_unknown_ids(self) -> None:
        """Unknown configuration ids are refused with unknown_config naming them."""
        before, received = self.controller_states(), len(self.received)
        error = self.refused("unknown_config", "configure", configs=["tfc-1", "nope-1", "nope-2"])
        self.assertIn("'nope-1'", error.reason)
        self.assertIn("'nope-2'", error.reason)
        self.assertNotIn("'tfc-1'", error.reason)
        self.assertNoChange(before, received)

    def test_bad_bodies(self) -> None:
        """Neither tag nor configs, a non-bool auto, or a bad configs list are bad_request."""
        before, received = self.controller_states(), len(self.received)
        self.refused(protocol.BAD_REQUEST, "configure")
        self.refused(protocol.BAD_REQUEST, "configure", auto=True)
        error = self.refused(protocol.BAD_REQUEST, "configure", tag="v1", auto="yes")
        self.assertIn("auto", error.reason)
        self.refused(protocol.BAD_REQUEST, "configure", tag="v1", auto=1)
        self.refused(protocol.BAD_REQUEST, "configure", tag="")
        self.refused(protocol.BAD_REQUEST, "configure", tag=5)
        self.refused(protocol.BAD_REQUEST, "configure", configs=[])
        self.refused(protocol.BAD_REQUEST, "configure", configs="tfc-1")
        self.refused(protocol.BAD_REQUEST, "configure", configs=["tfc-1", "tfc-2"])  # one per system
        self.refused(protocol.BAD_REQUEST, "configure", configs=[{"config_id": "x"}])
        self.assertNoChange(before, received)
        self.assertEqual(self.state, "Idle")
        self.assertEqual(self.published_states(), [])

    def test_tag_names_inline_configs(self) -> None:
        """With both, the inline configurations are used and the tag is their name (as the ECA sends)."""
        configs = [config(s) for s in ALL]
        reply = self.command("configure", tag="from-eca", configs=configs, auto=True)
        self.assertEqual(reply["tag"], "from-eca")
        self.advance(2)
        self.assertEqual((self.state, self.pca.sequencer.partition.tag), (TOP, "from-eca"))

    def test_configs_for_foreign_system(self) -> None:
        """Configurations for systems not in the partition are ignored, named in the reply and the log."""
        mark = self.mark()
        configs = [config(s) for s in ALL] + [config("RICH")]
        reply = self.command("configure", configs=configs, auto=True)
        self.assertEqual(reply["ignored"], ["RICH"])
        self.assertLogged("configurations for systems not in this partition ignored: RICH", mark)
        self.advance(2)
        self.assertEqual(self.state, TOP)

    def test_auto_from_intermediate_state(self) -> None:
        """Auto-configure from a lower active state continues with the stages not ready."""
        self.command("configure", tag="v1")
        self.advance(0.5)
        self.assertEqual(self.state, "TFC_Active")
        received = len(self.received)
        self.command("configure", tag="v1", auto=True)
        self.advance(1.5)
        self.assertEqual(self.state, TOP)
        self.assertNotIn("TFC", [s for s, _, _ in self.received[received:]])


# =========================================================================
# refusals
# =========================================================================


class RefusalTests(Scenario):
    def test_locked(self) -> None:
        """While locked, configure, start and stop are refused (locked); unlock accepts them again."""
        reply = self.command("lock")
        self.assertTrue(reply["locked"])
        self.assertTrue(self.pca.store.get("partition")["locked"])
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.LOCKED, "configure", tag="v1", auto=True)
        self.assertIn("p1", error.reason)
        self.refused(protocol.LOCKED, "start")
        self.refused(protocol.LOCKED, "stop")
        self.assertNoChange(before, received)
        self.assertEqual(self.state, "Idle")
        self.assertFalse(self.command("unlock")["locked"])
        self.configure_to_top()

    def test_locked_while_recording(self) -> None:
        """Stop is refused while locked even when recording; the systems keep recording."""
        self.record_on()
        self.command("lock")
        before, received = self.controller_states(), len(self.received)
        self.refused(protocol.LOCKED, "stop")
        self.assertNoChange(before, received)
        self.assertEqual(self.state, "Recording")

    def test_busy_configure_while_configuring(self) -> None:
        """A second configure while configuring is busy; nothing more is sent."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.5)
        self.assertEqual(self.state, "Configuring_Detectors")
        received = len(self.received)
        error = self.refused(protocol.BUSY, "configure", tag="v2-sts", auto=True)
        self.assertIn("configuring stage Detectors", error.reason)
        self.assertEqual(self.received[received:], [])
        self.advance(1.5)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.controller("STS").tag, "sts-1")  # the refused tag was not applied

    def test_busy_start_while_configuring(self) -> None:
        """Start while configuring is busy."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.5)
        received = len(self.received)
        self.refused(protocol.BUSY, "start")
        self.refused(protocol.BUSY, "stop")
        self.assertEqual(self.received[received:], [])
        self.advance(1.5)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.controller("QA").state, "Active")

    def test_busy_when_a_system_configures_on_its_own(self) -> None:
        """Configure is busy while a system configures without an operation (someone else started it)."""
        self.configure_to_top()
        self.to_system("detectors", "STS", "configure", config={"config_id": "sts-2"})
        self.assertEqual(self.state, "Configuring_Detectors")
        self.assertIsNone(self.pca.sequencer.op)
        error = self.refused(protocol.BUSY, "configure", tag="v1")
        self.assertIn("Configuring_Detectors", error.reason)

    def test_start_not_allowed_unless_top(self) -> None:
        """Start is not allowed unless QA_Active; the reason names the state."""
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.NOT_ALLOWED, "start")
        self.assertIn("QA_Active", error.reason)
        self.assertIn("Idle", error.reason)
        self.assertNoChange(before, received)
        self.command("configure", tag="v1")
        self.advance(0.5)
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.NOT_ALLOWED, "start")
        self.assertIn("TFC_Active", error.reason)
        self.assertNoChange(before, received)

    def test_stop_not_allowed_unless_recording(self) -> None:
        """Stop is not allowed unless Recording."""
        self.configure_to_top()
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.NOT_ALLOWED, "stop")
        self.assertIn("QA_Active", error.reason)
        self.assertNoChange(before, received)

    def test_configure_not_allowed_while_recording(self) -> None:
        """Configure while Recording is not allowed (stop first)."""
        self.record_on()
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.NOT_ALLOWED, "configure", tag="v2-sts", auto=True)
        self.assertIn("recording", error.reason)
        self.assertNoChange(before, received)
        self.assertEqual(self.state, "Recording")
        self.assertEqual(self.pca.store.get("partition")["tag"], "v1")

    def test_missing_config(self) -> None:
        """Inline configurations missing a system are refused (missing_config) naming it, nothing sent."""
        before, received = self.controller_states(), len(self.received)
        configs = [config(s) for s in ALL if s != "MVD"]
        error = self.refused("missing_config", "configure", configs=configs, auto=True)
        self.assertIn("MVD", error.reason)
        self.assertNotIn("STS", error.reason)
        self.assertNoChange(before, received)
        self.assertEqual(self.state, "Idle")
        self.assertEqual(self.pca.sequencer.partition.expected, {})
        self.assertIsNone(self.pca.store.get("partition")["tag"])

    def test_not_allowed_when_stage_blocked(self) -> None:
        """Configure is refused (not_allowed) when the next stage has a system in Error, naming it."""
        self.to_system("globals", "TFC", "inject", what="error", partition="p1")
        self.flush()
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.NOT_ALLOWED, "configure", tag="v1", auto=True)
        self.assertIn("TFC is Error", error.reason)
        self.assertNoChange(before, received)
        self.assertEqual(self.pca.sequencer.partition.expected, {})


# =========================================================================
# abort
# =========================================================================


class AbortTests(Scenario):
    def test_abort_while_configuring(self) -> None:
        """Abort while configuring cancels the stage, aborts every system, decays to Idle, clears the tag."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.5)
        self.assertEqual(self.state, "Configuring_Detectors")
        self.assertEqual(self.controller("STS").state, "Configuring_Step2")
        received = len(self.received)
        reply = self.command("abort")
        self.assertIsNone(reply["operation"])
        self.assertIsNone(reply["tag"])
        self.advance(3)
        self.assertEqual(self.state, "Idle")
        self.assertEqual(self.published_states()[-1], "Idle")
        for name in ALL:
            self.assertEqual(self.controller(name).state, "Unconfigured", name)
            self.assertIsNone(self.controller(name).tag, name)
        self.assertEqual(sorted(s for s, c, _ in self.received[received:] if c == "abort"), sorted(ALL))
        self.assertEqual([c for _, c, _ in self.received[received:] if c != "abort"], [])
        self.assertIsNone(self.pca.sequencer.op)
        self.assertIsNone(self.pca.store.get("partition")["tag"])
        self.assertLogged("abort: configuring stage Detectors (2 of 4) cancelled")

    def test_abort_while_locked(self) -> None:
        """Abort is accepted while locked."""
        self.configure_to_top()
        self.command("lock")
        reply = self.command("abort")
        self.assertNotIsInstance(reply, RequestError)
        self.advance(1)
        self.assertEqual(self.state, "Idle")
        self.assertTrue(all(self.controller(n).state == "Unconfigured" for n in ALL))

    def test_abort_while_recording(self) -> None:
        """Abort while recording leaves Recording and ends in Idle with everything Unconfigured."""
        self.record_on()
        mark = self.mark()
        self.command("abort")
        self.advance(1)
        self.assertEqual(self.state, "Idle")
        self.assertEqual(self.published_since(mark)[-1], "Idle")
        self.assertNotIn("Recording", self.published_since(mark))
        for name in ALL:
            self.assertEqual(self.controller(name).state, "Unconfigured", name)

    def test_abort_when_idle(self) -> None:
        """Abort at Idle is accepted and harmless."""
        reply = self.command("abort")
        self.assertEqual(reply["state"], "Idle")
        self.advance(1)
        self.assertTrue(all(self.controller(n).state == "Unconfigured" for n in ALL))


# =========================================================================
# partial reconfiguration
# =========================================================================


class PartialReconfigurationTests(Scenario):
    def test_detector_change(self) -> None:
        """v2-sts at QA_Active reconfigures STS and every stage above it, not TFC, not the other detectors."""
        self.configure_to_top()
        tfc_seq = self.controller("TFC").seq
        mark, received = self.mark(), len(self.received)
        reply = self.command("configure", tag="v2-sts")
        self.assertEqual(reply["level"], 1)  # the detectors stage is no longer ready
        self.assertEqual(reply["state"], "Configuring_Detectors")
        self.advance(1)
        self.assertEqual(self.state, "Detectors_Active")
        self.assertEqual(self.received[received:], [("STS", "configure", "sts-2")])
        # a second configure with the same tag continues with the next stage ([BUG] 17 fixed)
        self.command("configure", tag="v2-sts")
        self.advance(1)
        self.assertEqual(self.state, "FLES_and_DCS_Active")
        self.command("configure", tag="v2-sts")
        self.advance(1)
        self.assertEqual(self.state, TOP)
        self.assertEqual(
            self.published_since(mark),
            # FLES, DCS and QA keep their configuration ids: their controllers
            # pass through at once (each stage's commands go when the turn
            # ends, batched per endpoint: each Configuring_ state is seen)
            ["Configuring_Detectors", "Detectors_Active", "Configuring_FLES_and_DCS", "FLES_and_DCS_Active",
             "Configuring_QA", TOP],
        )
        self.assertEqual(
            sorted(self.received[received:]),
            sorted(
                [
                    ("STS", "configure", "sts-2"),
                    ("FLES", "configure", "fles-1"),
                    ("DCS", "configure", "dcs-1"),
                    ("QA", "configure", "qa-1"),
                ]
            ),
        )
        self.assertEqual(self.controller("TFC").seq, tfc_seq)
        self.assertEqual(self.controller("STS").tag, "sts-2")
        self.assertEqual(self.pca.store.get("partition")["tag"], "v2-sts")
        reply = self.command("configure", tag="v2-sts")
        self.assertEqual(reply["message"], "nothing to do: every system is configured")

    def test_detector_change_auto(self) -> None:
        """v2-sts with auto at QA_Active ends in QA_Active again, TFC untouched."""
        self.configure_to_top()
        tfc = self.remote("TFC")
        mark, received = self.mark(), len(self.received)
        self.command("configure", tag="v2-sts", auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        states = self.published_since(mark)
        self.assertEqual(states[0], "Configuring_Detectors")
        self.assertEqual(states[-1], TOP)
        self.assertNotIn("Configuring_TFC", states)
        self.assertEqual({s for s, _, _ in self.received[received:]}, {"STS", "FLES", "DCS", "QA"})
        self.assertEqual(self.remote("TFC"), tfc)
        self.assertEqual(self.remote("STS")["tag"], "sts-2")
        self.assertEqual(self.remote("MVD")["tag"], "mvd-1")

    def test_tfc_change_reconfigures_everything(self) -> None:
        """v2-tfc at QA_Active reconfigures every system, starting with TFC."""
        self.configure_to_top()
        mark, received = self.mark(), len(self.received)
        self.command("configure", tag="v2-tfc", auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        # only TFC has a new configuration; the stages above pass through at
        # once (a turn each: their commands go when the turn ends)
        self.assertEqual(
            self.published_since(mark),
            ["Configuring_TFC", "Configuring_Detectors", "Configuring_FLES_and_DCS", "Configuring_QA", TOP],
        )
        self.assertEqual(sorted(s for s, c, _ in self.received[received:] if c == "configure"), sorted(ALL))
        self.assertEqual(self.received[received], ("TFC", "configure", "tfc-2"))
        self.assertEqual(self.controller("TFC").tag, "tfc-2")

    def test_same_tag_nothing_to_do(self) -> None:
        """The same tag again at QA_Active answers 'nothing to do' and sends nothing."""
        self.configure_to_top()
        before, received, mark = self.controller_states(), len(self.received), self.mark()
        reply = self.command("configure", tag="v1", auto=True)
        self.assertEqual(reply["message"], "nothing to do: every system is configured")
        self.assertEqual(reply["state"], TOP)
        self.assertNoChange(before, received)
        self.assertEqual(self.published_since(mark), [])

    def test_untouched_system_of_stage_falls_back(self) -> None:
        """A system of the stage being configured that was already ready and falls to Unconfigured fails the stage."""
        self.configure_to_top()
        self.command("configure", tag="v2-sts")  # configures STS only; MVD and TOF are ready
        self.advance(0.125)
        self.assertEqual(self.state, "Configuring_Detectors")
        mark = self.mark()
        self.to_system("detectors", "MVD", "abort")  # someone else aborts MVD
        self.advance(1)
        self.assertIsNone(self.pca.sequencer.op)
        self.assertLogged("configuring stage Detectors (2 of 4) failed: MVD is Unconfigured", mark)
        self.assertEqual(self.state, "TFC_Active")


    def test_fallen_system_reconfigures_above(self) -> None:
        """A system that fell back (Error, reset: Unconfigured) counts as changed: everything above is reconfigured."""
        self.configure_to_top()
        self.to_system("globals", "TFC", "inject", what="error", partition="p1")
        self.command("reset", system="TFC")
        self.flush()
        self.assertEqual(self.state, "Idle")
        received = len(self.received)
        self.command("configure", tag="v1", auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual(sorted(s for s, c, _ in self.received[received:] if c == "configure"), sorted(ALL))


    def test_lower_tag_only_configures_changed(self) -> None:
        """From Detectors_Active a change of a QA configuration leaves the lower stages alone."""
        self.configure_to_top()
        received = len(self.received)
        ids = [config(s, "2" if s == "QA" else "1")["config_id"] for s in ALL]
        self.command("configure", configs=ids, auto=True)
        self.advance(1)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.received[received:], [("QA", "configure", "qa-2")])


# =========================================================================
# verification of the reported configuration
# =========================================================================


class VerificationTests(Scenario):
    def test_mismatch_aborted(self) -> None:
        """A system reporting Active with another configuration than given is aborted; the log names both ids."""
        self.configure_to_top()
        mark, received = self.mark(), len(self.received)
        reply = self.to_system("detectors", "STS", "configure", config={"config_id": "other"})
        self.assertEqual(reply["state"], "Configuring_Step1")
        self.flush()
        self.assertEqual(self.state, "Configuring_Detectors")
        self.advance(1)
        self.assertEqual(self.controller("STS").state, "Unconfigured")
        self.assertEqual(self.received[received:], [("STS", "configure", "other"), ("STS", "abort", None)])
        self.assertLogged("STS reports configuration 'other', expected 'sts-1': aborting it", mark)
        self.assertEqual(self.published_since(mark), ["Configuring_Detectors", "TFC_Active"])
        self.assertEqual(self.state, "TFC_Active")
        # configuring again gives STS its configuration back, and only to STS and above
        received = len(self.received)
        self.command("configure", tag="v1", auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.received[received:][0], ("STS", "configure", "sts-1"))
        self.assertNotIn("TFC", {s for s, _, _ in self.received[received:]})

    def test_mismatch_during_configure(self) -> None:
        """A system of the stage being configured that ends Active with another configuration fails the stage."""
        self.command("configure", tag="v1")
        self.advance(0.5)
        mark = self.mark()
        self.command("configure", tag="v1")  # the detectors stage
        self.to_system("detectors", "MVD", "abort")
        self.to_system("detectors", "MVD", "configure", config={"config_id": "other"})
        self.advance(1)
        self.assertLogged("MVD reports configuration 'other', expected 'mvd-1': aborting it", mark)
        self.assertEqual(self.controller("MVD").state, "Unconfigured")
        self.assertIsNone(self.pca.sequencer.op)
        self.assertEqual(self.state, "TFC_Active")
        self.assertLogged("configuring stage Detectors (2 of 4) failed: MVD is Unconfigured", mark)


# =========================================================================
# fall-back
# =========================================================================


class FallBackTests(Scenario):
    def inject(self, name: str) -> None:
        if name in self.detectors:
            self.to_system("detectors", name, "inject", what="error")
        else:
            self.to_system("globals", name, "inject", what="error", partition="p1")
        self.flush()

    def check_fall(self, name: str, falls_to: str) -> None:
        self.configure_to_top()
        mark = self.mark()
        self.inject(name)
        self.assertEqual(self.controller(name).state, "Error")
        self.assertEqual(self.state, falls_to)
        self.assertEqual(self.published_since(mark), [falls_to])
        self.assertEqual(self.system_records(name)[-1]["state"], "Error")
        self.assertEqual(self.pca.store.get("partition")["state"], falls_to)

    def test_tfc(self) -> None:
        """TFC in Error drops the partition to Idle."""
        self.check_fall("TFC", "Idle")

    def test_detector(self) -> None:
        """A detector in Error drops the partition to TFC_Active."""
        self.check_fall("TOF", "TFC_Active")

    def test_dcs(self) -> None:
        """DCS in Error drops the partition to Detectors_Active."""
        self.check_fall("DCS", "Detectors_Active")

    def test_fles(self) -> None:
        """FLES in Error drops the partition to Detectors_Active."""
        self.check_fall("FLES", "Detectors_Active")

    def test_qa(self) -> None:
        """QA in Error drops the partition to FLES_and_DCS_Active."""
        self.check_fall("QA", "FLES_and_DCS_Active")

    def test_unconfigured_falls_back(self) -> None:
        """A system falling back to Unconfigured (aborted by someone else) drops the partition."""
        self.configure_to_top()
        self.to_system("globals", "DCS", "abort", partition="p1")
        self.flush()
        self.assertEqual(self.state, "Detectors_Active")
        self.to_system("detectors", "STS", "abort")
        self.flush()
        self.assertEqual(self.state, "TFC_Active")

    def check_fail_in_own_stage(self, name: str, stage_state: str, after: float, falls_to: str) -> None:
        self.command("configure", tag="v1", auto=True)
        self.advance(after)
        self.assertEqual(self.state, stage_state)
        self.assertTrue(self.controller(name).busy, name)
        mark = self.mark()
        self.inject(name)
        self.assertEqual(self.controller(name).state, "Error")
        self.assertEqual(self.state, falls_to)
        self.assertEqual(self.published_since(mark), [falls_to])
        self.assertIsNone(self.pca.sequencer.op)
        line = self.assertLogged("failed: ", mark)
        self.assertIn(f"{name} is Error", line)
        self.assertIn("error reported during the transition", line)
        received = len(self.received)
        self.advance(5)
        self.assertEqual(self.state, falls_to)  # nothing more happens: the operation is over
        self.assertEqual(self.received[received:], [])

    def test_tfc_fails_while_configuring(self) -> None:
        """TFC failing while Configuring_TFC ends the operation, logged, back to Idle ([BUG] 16a)."""
        self.check_fail_in_own_stage("TFC", "Configuring_TFC", 0.125, "Idle")

    def test_detector_fails_while_configuring(self) -> None:
        """A detector failing while Configuring_Detectors ends the operation, back to TFC_Active."""
        self.check_fail_in_own_stage("MVD", "Configuring_Detectors", 0.5, "TFC_Active")

    def test_dcs_fails_while_configuring(self) -> None:
        """DCS failing while Configuring_FLES_and_DCS ends the operation, back to Detectors_Active."""
        self.check_fail_in_own_stage("DCS", "Configuring_FLES_and_DCS", 0.875, "Detectors_Active")

    def test_qa_fails_while_configuring(self) -> None:
        """QA failing while Configuring_QA ends the operation, back to FLES_and_DCS_Active."""
        self.check_fail_in_own_stage("QA", "Configuring_QA", 1.125, "FLES_and_DCS_Active")

    def test_lower_stage_fails_while_higher_configures(self) -> None:
        """TFC failing while the detectors configure cancels the operation, naming TFC; back to Idle."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.5)
        self.assertEqual(self.state, "Configuring_Detectors")
        mark = self.mark()
        self.inject("TFC")
        self.assertEqual(self.state, "Idle")
        self.assertIsNone(self.pca.sequencer.op)
        self.assertLogged(
            "configuring stage Detectors (2 of 4) failed: stage TFC is no longer ready: TFC (Error)", mark
        )
        received = len(self.received)
        self.advance(3)
        self.assertEqual([c for _, c, _ in self.received[received:] if c == "configure"], [])
        self.assertEqual(self.state, "Idle")

    def test_refused_configure_fails_stage(self) -> None:
        """A system refusing configure fails the stage at once with its code and reason."""
        self.command("configure", tag="v1")
        self.advance(0.5)
        tof = self.controller("TOF")
        original = tof.command

        def refuse(name: str, config: object = None) -> Any:
            if name == "configure":
                raise RequestError(protocol.NOT_ALLOWED, "TOF crate is switched off")
            return original(name, config)

        tof.command = refuse
        mark = self.mark()
        self.command("configure", tag="v1")
        self.flush()
        self.assertLogged(
            "configuring stage Detectors (2 of 4) failed: TOF refused configure: not_allowed: "
            "TOF crate is switched off",
            mark,
        )
        self.assertIsNone(self.pca.sequencer.op)
        # the others keep configuring (they were not told to stop) and are folded in
        self.advance(1)
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.published_since(mark), ["Configuring_Detectors", "TFC_Active"])

    def test_reset_and_configure_again(self) -> None:
        """After a fall-back, resetting the system and configuring again reaches QA_Active."""
        self.configure_to_top()
        self.inject("STS")
        self.refused(protocol.NOT_ALLOWED, "configure", tag="v1", auto=True)
        self.command("reset", system="STS")
        self.flush()
        self.assertEqual(self.controller("STS").state, "Unconfigured")
        received = len(self.received)
        self.command("configure", tag="v1", auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.received[received:][0], ("STS", "configure", "sts-1"))


#: Every fall-back edge of the default table (reference §3.5): (state, failing system, state after).
ACTIVE_EDGES = [
    ("TFC_Active", "TFC", "Idle"),
    ("Detectors_Active", "TFC", "Idle"),
    ("Detectors_Active", "STS", "TFC_Active"),
    ("FLES_and_DCS_Active", "TFC", "Idle"),
    ("FLES_and_DCS_Active", "MVD", "TFC_Active"),
    ("FLES_and_DCS_Active", "DCS", "Detectors_Active"),
    ("FLES_and_DCS_Active", "FLES", "Detectors_Active"),
    ("QA_Active", "TFC", "Idle"),
    ("QA_Active", "TOF", "TFC_Active"),
    ("QA_Active", "DCS", "Detectors_Active"),
    ("QA_Active", "FLES", "Detectors_Active"),
    ("QA_Active", "QA", "FLES_and_DCS_Active"),
    ("Recording", "TFC", "Idle"),
    ("Recording", "STS", "TFC_Active"),
    ("Recording", "DCS", "Detectors_Active"),
    ("Recording", "FLES", "Detectors_Active"),
    ("Recording", "QA", "FLES_and_DCS_Active"),
]
#: (configuring state, seconds after an auto configure, failing system of a lower stage, state after).
CONFIGURING_EDGES = [
    ("Configuring_Detectors", 0.5, "TFC", "Idle"),
    ("Configuring_FLES_and_DCS", 0.875, "TFC", "Idle"),
    ("Configuring_FLES_and_DCS", 0.875, "MVD", "TFC_Active"),
    ("Configuring_QA", 1.125, "TFC", "Idle"),
    ("Configuring_QA", 1.125, "STS", "TFC_Active"),
    ("Configuring_QA", 1.125, "DCS", "Detectors_Active"),
    ("Configuring_QA", 1.125, "FLES", "Detectors_Active"),
]
LEVEL = {"TFC_Active": 1, "Detectors_Active": 2, "FLES_and_DCS_Active": 3, "QA_Active": 4}


class FallBackTableTests(Scenario):
    """Each error edge of the original PCAStatemachine.csv, from every state that has it."""

    def reach(self, state: str) -> None:
        if state == "Recording":
            self.record_on()
            return
        for _ in range(LEVEL[state]):
            self.command("configure", tag="v1")
            self.advance(1)
        self.assertEqual(self.state, state)

    def error(self, name: str) -> None:
        if name in self.detectors:
            self.to_system("detectors", name, "inject", what="error")
        else:
            self.to_system("globals", name, "inject", what="error", partition="p1")
        self.flush()


def _active_edge(state: str, name: str, after: str) -> Any:
    def test(self: FallBackTableTests) -> None:
        self.reach(state)
        mark = self.mark()
        self.error(name)
        self.assertEqual(self.state, after)
        self.assertEqual(self.published_since(mark), [after])
        self.advance(0.5)
        self.assertEqual(self.state, after)
        for recorder in ("QA", "FLES"):
            self.assertNotEqual(self.controller(recorder).state, "Recording", recorder)

    test.__doc__ = f"{name} in Error at {state} drops the partition to {after}."
    return test


def _configuring_edge(state: str, when: float, name: str, after: str) -> Any:
    def test(self: FallBackTableTests) -> None:
        self.command("configure", tag="v1", auto=True)
        self.advance(when)
        self.assertEqual(self.state, state)
        stage = self.pca.sequencer.op.describe(self.pca.sequencer.partition)
        mark = self.mark()
        self.error(name)
        self.assertEqual(self.state, after)
        self.assertIsNone(self.pca.sequencer.op)
        line = self.assertLogged(f"{stage} failed: stage ", mark)
        self.assertIn(f"is no longer ready: {name} (Error)", line)
        received = len(self.received)
        self.advance(2)
        self.assertEqual([c for _, c, _ in self.received[received:] if c == "configure"], [])

    test.__doc__ = f"{name} in Error at {state} cancels the operation and drops the partition to {after}."
    return test


for _state, _name, _after in ACTIVE_EDGES:
    setattr(FallBackTableTests, f"test_{_state}_{_name}", _active_edge(_state, _name, _after))
for _state, _when, _name, _after in CONFIGURING_EDGES:
    setattr(FallBackTableTests, f"test_{_state}_{_name}", _configuring_edge(_state, _when, _name, _after))


# =========================================================================
# connection problem
# =========================================================================


class ConnectionTests(Scenario):
    def test_detectors_lost_and_back(self) -> None:
        """Detectors unreachable show Connection Problem after the timeout; back, they are folded in again."""
        self.configure_to_top()
        mark = self.mark()
        self.network.set_down("mem://detectors")
        self.advance(SETTINGS.heartbeat_timeout - SETTINGS.heartbeat_interval)
        self.assertEqual(self.state, TOP)  # not yet
        self.advance(SETTINGS.heartbeat_interval + 0.25)
        self.assertEqual(self.state, "TFC_Active")
        for name in DETECTORS:
            record = self.system_records(name)[-1]
            self.assertEqual(record["state"], "Connection Problem")
            self.assertFalse(record["connected"])
            self.assertEqual(record["raw_state"], "Active")
        self.assertLogged("STS: connection lost", mark)
        self.assertEqual(self.published_since(mark), ["TFC_Active"])
        mark = self.mark()
        self.network.set_down("mem://detectors", False)
        self.advance(SETTINGS.heartbeat_interval * 2)
        self.assertEqual(self.state, TOP)
        for name in DETECTORS:
            record = self.system_records(name)[-1]
            self.assertEqual(record["state"], "Active")
            self.assertTrue(record["connected"])
        self.assertLogged("STS: connected (Active)", mark)
        self.assertEqual(self.published_since(mark), [TOP])

    def test_changes_while_lost_are_folded_in(self) -> None:
        """A detector that changed while unreachable is queried on return: the partition re-derives."""
        self.configure_to_top()
        self.network.set_down("mem://detectors")
        self.advance(SETTINGS.heartbeat_timeout + 1)
        self.controller("MVD").inject("error")  # the update is lost on the way
        self.advance(1)
        self.network.set_down("mem://detectors", False)
        self.advance(2)
        self.assertEqual(self.system("MVD").shown_state, "Error")
        self.assertEqual(self.state, "TFC_Active")

    def test_lost_while_recording(self) -> None:
        """Detectors lost while recording: recording is stopped and the partition falls back."""
        self.record_on()
        self.network.set_down("mem://detectors")
        self.advance(SETTINGS.heartbeat_timeout + 1)
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.controller("QA").state, "Active")
        self.assertEqual(self.controller("FLES").state, "Active")
        self.network.set_down("mem://detectors", False)
        self.advance(2)
        self.assertEqual(self.state, TOP)

    def test_configure_refused_while_unreachable(self) -> None:
        """Configure is refused naming the unreachable systems of the next stage."""
        self.network.set_down("mem://globals")
        self.advance(SETTINGS.heartbeat_timeout + 1)
        error = self.refused(protocol.NOT_ALLOWED, "configure", tag="v1", auto=True)
        self.assertIn("TFC is Connection Problem", error.reason)
        self.network.set_down("mem://globals", False)
        self.advance(2)


class SlowConnectionTests(Scenario):
    """Steps longer than the heartbeat timeout: a system is lost while its stage configures."""

    step = 4.0

    def test_globals_lost_while_configuring_tfc(self) -> None:
        """TFC unreachable while Configuring_TFC fails the operation (the original stayed stuck: [BUG] 16a)."""
        self.command("configure", tag="v1", auto=True)
        mark = self.mark()
        self.network.set_down("mem://globals")
        self.advance(SETTINGS.heartbeat_timeout + 0.5)
        self.assertIsNone(self.pca.sequencer.op)
        self.assertEqual(self.state, "Idle")
        self.assertEqual(self.published_since(mark), ["Idle"])
        self.assertLogged("configuring stage TFC (1 of 4) failed: TFC is Connection Problem", mark)
        self.network.set_down("mem://globals", False)
        self.advance(2)
        # TFC finished its configuration meanwhile: folded in; nothing else was configured
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.commands_to("STS"), [])

    def test_detectors_lost_while_configuring(self) -> None:
        """Detectors unreachable while Configuring_Detectors fail the operation, back to TFC_Active."""
        self.command("configure", tag="v1", auto=True)
        self.advance(5)
        self.assertEqual(self.state, "Configuring_Detectors")
        mark = self.mark()
        self.network.set_down("mem://detectors")
        self.advance(SETTINGS.heartbeat_timeout + 0.5)
        self.assertIsNone(self.pca.sequencer.op)
        self.assertEqual(self.state, "TFC_Active")
        self.assertLogged("configuring stage Detectors (2 of 4) failed: STS is Connection Problem", mark)
        self.network.set_down("mem://detectors", False)
        self.advance(6)
        self.assertEqual(self.state, "Detectors_Active")  # they finished meanwhile; the operation is over
        self.assertEqual(self.commands_to("FLES"), [])


    def test_no_stale_configure_after_failure(self) -> None:
        """Configure commands still queued for an unreachable system are not delivered after the operation failed."""
        self.command("configure", tag="v1", auto=True)
        self.advance(11)
        self.assertEqual(self.state, "Configuring_Detectors")
        self.network.set_down("mem://globals")
        self.advance(1)  # the FLES_and_DCS stage starts: its configure commands wait for the link
        self.assertEqual(self.state, "Configuring_FLES_and_DCS")
        self.advance(SETTINGS.heartbeat_timeout)
        self.assertIsNone(self.pca.sequencer.op)  # failed: TFC, FLES, DCS unreachable
        self.network.set_down("mem://globals", False)
        self.advance(8)
        self.assertEqual(self.controller("FLES").state, "Unconfigured")
        self.assertEqual(self.controller("DCS").state, "Unconfigured")
        self.assertEqual(self.state, "Detectors_Active")



# =========================================================================
# stage timeout
# =========================================================================

TIMEOUT_SEQUENCE = """\
name: partition-short
idle: Idle
stages:
  - {name: TFC, systems: [TFC], configuring: Configuring_TFC, active: TFC_Active, timeout: 30}
  - {name: Detectors, systems: [detectors], configuring: Configuring_Detectors, active: Detectors_Active,
     timeout: 0.375}
  - {name: FLES_and_DCS, systems: [FLES, DCS], configuring: Configuring_FLES_and_DCS,
     active: FLES_and_DCS_Active, timeout: 30}
  - {name: QA, systems: [QA], configuring: Configuring_QA, active: QA_Active, timeout: 30}
recording: {state: Recording, systems: [QA, FLES], timeout: 10}
"""


class StageTimeoutTests(Scenario):
    def setUp(self) -> None:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TIMEOUT_SEQUENCE, encoding="utf-8")
        self.sequence_file = str(path)
        super().setUp()

    def test_stage_timeout(self) -> None:
        """A stage slower than its timeout fails naming the stage and the systems; they are aborted."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.25)
        self.assertEqual(self.state, "Configuring_Detectors")
        mark, received = self.mark(), len(self.received)
        self.advance(0.375)
        line = self.assertLogged(
            "configuring stage Detectors (2 of 4) failed: stage Detectors timed out after 0.375 s", mark
        )
        for name in DETECTORS:
            self.assertIn(f"{name} (Configuring, '{name.lower()}-1')", line)
        self.assertEqual(sorted(self.received[received:]), sorted((d, "abort", None) for d in DETECTORS))
        self.advance(1)
        for name in DETECTORS:
            self.assertEqual(self.controller(name).state, "Unconfigured", name)
        self.assertEqual(self.controller("TFC").state, "Active")
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.published_since(mark), ["TFC_Active"])
        self.assertIsNone(self.pca.sequencer.op)
        for name in ("FLES", "DCS", "QA"):
            self.assertEqual(self.commands_to(name), [])


class SlowStepTests(Scenario):
    step = 40.0  # more than the shipped 30 s timeout of the TFC stage

    def test_slow_tfc(self) -> None:
        """The TFC stage exceeding the shipped 30 s fails; TFC is aborted, the partition stays Idle."""
        self.command("configure", tag="v1", auto=True)
        mark = self.mark()
        self.advance(30)
        self.assertLogged("stage TFC timed out after 30 s; not ready: TFC (Configuring, 'tfc-1')", mark)
        self.advance(0.25)
        self.assertEqual(self.controller("TFC").state, "Unconfigured")
        self.assertEqual(self.commands_to("TFC"), ["configure", "abort"])
        self.assertEqual(self.state, "Idle")
        self.assertEqual(self.published_since(mark), ["Idle"])
        self.advance(15)
        self.assertEqual(self.controller("TFC").state, "Unconfigured")  # the cancelled work never finishes


class OneSlowSystemTests(Scenario):
    def test_only_unfinished_aborted(self) -> None:
        """At the stage timeout only the unfinished systems are aborted; the finished ones stay Active."""
        self.controller("MVD").action = SimulatedAction(
            duration=100.0, failure_probability=0.0, seed=0, system="MVD", reactor=self.clock
        )
        self.command("configure", tag="v1", auto=True)
        self.advance(1)
        self.assertEqual(self.state, "Configuring_Detectors")
        mark, received = self.mark(), len(self.received)
        self.advance(60)
        line = self.assertLogged("stage Detectors timed out after 60 s; not ready: ", mark)
        self.assertTrue(line.endswith("not ready: MVD (Configuring, 'mvd-1')"), line)
        self.assertEqual(self.received[received:], [("MVD", "abort", None)])
        self.assertEqual(self.controller("MVD").state, "Unconfigured")
        self.assertEqual(self.controller("STS").state, "Active")
        self.assertEqual(self.controller("TOF").state, "Active")
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.commands_to("FLES"), [])


class NoRecordingSequenceTests(Scenario):
    def setUp(self) -> None:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TIMEOUT_SEQUENCE.replace("timeout: 0.375", "timeout: 60").rsplit("recording:", 1)[0])
        self.sequence_file = str(path)
        super().setUp()

    def test_start_not_allowed(self) -> None:
        """A sequence without recording refuses start (not_allowed), also at its last active state."""
        self.configure_to_top()
        error = self.refused(protocol.NOT_ALLOWED, "start")
        self.assertIn("no recording", error.reason)
        self.refused(protocol.NOT_ALLOWED, "stop")
        self.assertEqual(self.controller("QA").state, "Active")


# =========================================================================
# recording
# =========================================================================


class RecordingTests(Scenario):
    def test_start_stop(self) -> None:
        """Start enters Recording once QA and FLES both record; stop goes back to QA_Active."""
        self.configure_to_top()
        mark, received = self.mark(), len(self.received)
        reply = self.command("start")
        self.assertEqual(reply["operation"], "starting recording")
        self.flush()
        self.assertEqual(self.state, "Recording")
        self.assertEqual(self.received[received:], [("QA", "start", None), ("FLES", "start", None)])
        self.assertEqual(self.controller("QA").state, "Recording")
        self.assertEqual(self.controller("FLES").state, "Recording")
        self.assertIsNone(self.pca.sequencer.op)
        self.assertLogged("recording started in", mark)
        received = len(self.received)
        reply = self.command("stop")
        self.flush()
        self.assertEqual(self.state, TOP)
        self.assertEqual(sorted(self.received[received:]), [("FLES", "stop", None), ("QA", "stop", None)])
        self.assertEqual(self.published_since(mark), ["Recording", TOP])
        self.assertEqual(self.controller("QA").state, "Active")
        self.assertEqual(self.controller("QA").tag, "qa-1")  # keeps its configuration
        self.assertLogged("recording stopped in", mark)

    def test_only_when_every_recording_system_records(self) -> None:
        """One recording system recording is not Recording (and the other is stopped)."""
        self.configure_to_top()
        self.to_system("globals", "QA", "start", partition="p1")
        self.flush()
        self.assertNotEqual(self.state, "Recording")
        self.advance(0.5)
        self.assertEqual(self.controller("QA").state, "Active")
        self.assertEqual(self.state, TOP)
        self.assertNotIn("Recording", self.published_states())

    def test_qa_stops_on_its_own(self) -> None:
        """QA stopping on its own leaves Recording and FLES is stopped too."""
        self.record_on()
        mark, received = self.mark(), len(self.received)
        self.to_system("globals", "QA", "stop", partition="p1")
        self.advance(0.5)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.controller("FLES").state, "Active")
        self.assertEqual(self.received[received:], [("QA", "stop", None), ("FLES", "stop", None)])
        self.assertLogged("FLES records while the partition does not: stopping it", mark)
        self.assertEqual(self.published_since(mark), [TOP])

    def test_failure_while_recording(self) -> None:
        """A detector error while recording stops recording (QA and FLES) and falls back to TFC_Active."""
        self.record_on()
        mark, received = self.mark(), len(self.received)
        self.to_system("detectors", "MVD", "inject", what="error")
        self.advance(0.5)
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.published_since(mark), ["TFC_Active"])
        self.assertEqual(self.controller("QA").state, "Active")
        self.assertEqual(self.controller("FLES").state, "Active")
        self.assertEqual(sorted(self.received[received:]), [("FLES", "stop", None), ("QA", "stop", None)])

    def test_detector_configuring_while_recording(self) -> None:
        """A detector starting to configure while Recording stops recording first ([BUG] 16b fixed)."""
        self.record_on()
        mark, received = self.mark(), len(self.received)
        self.to_system("detectors", "STS", "configure", config={"config_id": "sts-2"})
        self.flush()
        self.assertEqual(self.state, "Configuring_Detectors")
        self.assertEqual(sorted(self.received[received + 1 :]), [("FLES", "stop", None), ("QA", "stop", None)])
        self.advance(1)
        self.assertEqual(self.controller("QA").state, "Active")
        self.assertEqual(self.controller("FLES").state, "Active")
        self.assertEqual(self.published_since(mark), ["Configuring_Detectors", "TFC_Active"])
        self.assertLogged("STS reports configuration 'sts-2', expected 'sts-1': aborting it", mark)

    def test_qa_error_while_recording(self) -> None:
        """QA in Error while recording: FLES is stopped, the partition falls to FLES_and_DCS_Active."""
        self.record_on()
        self.to_system("globals", "QA", "inject", what="error", partition="p1")
        self.advance(0.5)
        self.assertEqual(self.state, "FLES_and_DCS_Active")
        self.assertEqual(self.controller("FLES").state, "Active")

    def test_start_refused(self) -> None:
        """A recording system refusing start fails the operation and the other one is stopped."""
        self.configure_to_top()
        fles = self.controller("FLES")
        original = fles.command

        def refuse_start(name: str, config: object = None) -> Any:
            if name == "start":
                raise RequestError(protocol.BUSY, "FLES is flushing buffers")
            return original(name, config)

        fles.command = refuse_start
        mark = self.mark()
        self.command("start")
        self.advance(0.5)
        self.assertLogged("starting recording failed: FLES refused start: busy: FLES is flushing buffers", mark)
        self.assertIsNone(self.pca.sequencer.op)
        self.assertEqual(self.commands_to("QA")[-2:], ["start", "stop"])
        self.assertLogged("QA records while the partition does not: stopping it", mark)
        self.assertEqual(self.controller("QA").state, "Active")
        self.assertEqual(self.controller("FLES").state, "Active")
        self.assertEqual(self.state, TOP)
        self.assertNotIn("Recording", self.published_since(mark))

    def test_start_timeout(self) -> None:
        """A recording system that never answers start fails the operation after the recording timeout."""
        self.configure_to_top()
        fles = self.controller("FLES")
        original = fles.command
        fles.command = lambda name, config=None: defer.Deferred() if name == "start" else original(name, config)
        mark = self.mark()
        self.command("start")
        self.advance(11)
        self.assertLogged("starting recording failed", mark)
        self.assertIsNone(self.pca.sequencer.op)
        self.assertEqual(self.controller("QA").state, "Active")
        self.assertEqual(self.state, TOP)


# =========================================================================
# reset and alarms
# =========================================================================


class ResetTests(Scenario):
    def test_reset_error(self) -> None:
        """Reset of a system in Error makes it Unconfigured."""
        self.configure_to_top()
        self.to_system("globals", "DCS", "inject", what="error", partition="p1")
        self.flush()
        reply = self.command("reset", system="DCS")
        self.assertEqual(reply["state"], "Unconfigured")
        self.flush()
        self.assertEqual(self.controller("DCS").state, "Unconfigured")
        self.assertEqual(self.system("DCS").summary, "Unconfigured")
        self.assertEqual(self.state, "Detectors_Active")
        self.assertIn("reset DCS", self.logs())

    def test_reset_not_in_error(self) -> None:
        """Reset of a system not in Error is not_allowed, naming its state."""
        self.configure_to_top()
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.NOT_ALLOWED, "reset", system="STS")
        self.assertIn("STS is Active", error.reason)
        self.assertNoChange(before, received)

    def test_reset_unknown(self) -> None:
        """Reset of an unknown system is unknown_system; a missing name is bad_request."""
        error = self.refused(protocol.UNKNOWN_SYSTEM, "reset", system="RICH")
        self.assertIn("RICH", error.reason)
        self.refused(protocol.BAD_REQUEST, "reset")


class AlarmTests(Scenario):
    def test_alarm(self) -> None:
        """A DCS alarm for a detector of the partition puts it into Error, logged with its source."""
        self.configure_to_top()
        reply = self.command("alarm", detector="MVD", source="DCS", message="HV trip")
        self.assertEqual(reply["state"], "Error")
        self.flush()
        self.assertEqual(self.controller("MVD").state, "Error")
        self.assertEqual(self.commands_to("MVD")[-1], "error")
        self.assertEqual(self.state, "TFC_Active")
        alarm = [e.body for e in self.events if e.type == "log" and "alarm" in e.body["message"]]
        self.assertEqual(alarm[0]["message"], "alarm from DCS for MVD: HV trip")
        self.assertEqual(alarm[0]["source"], "DCS")
        self.assertEqual(alarm[0]["level"], "error")

    def test_alarm_foreign_detector(self) -> None:
        """An alarm for a detector not in the partition is unknown_system ([BUG] 20 fixed)."""
        self.configure_to_top()
        before, received = self.controller_states(), len(self.received)
        error = self.refused(protocol.UNKNOWN_SYSTEM, "alarm", detector="TRD", source="DCS")
        self.assertIn("TRD", error.reason)
        self.refused(protocol.UNKNOWN_SYSTEM, "alarm", detector="TFC", source="DCS")  # not a detector
        self.refused(protocol.BAD_REQUEST, "alarm", source="DCS")
        self.assertNoChange(before, received)
        self.assertEqual(self.state, TOP)

    def test_alarm_through_dcs(self) -> None:
        """The DCS controller's detector_error reaches the PCA and the detector goes to Error."""
        self.configure_to_top()
        reply = self.to_system("globals", "DCS", "inject", what="detector_error", detector="MVD")
        self.assertEqual(reply["partition"], "p1")
        self.assertEqual(reply["reply"]["state"], "Error")
        self.flush()
        self.assertEqual(self.controller("MVD").state, "Error")
        self.assertEqual(self.state, "TFC_Active")
        self.assertIn("alarm from DCS for MVD: detectorError", self.logs())


# =========================================================================
# add and remove detectors
# =========================================================================


class MembershipTests(Scenario):
    def make_host(self, name: str, address: str) -> ControllerHost:
        host = super().make_host(name, address)
        if name == "detectors":
            host.add_detector("TRD", self.subsystems.detector_types["STS"])  # hosted, in no partition
        return host

    def add_trd(self) -> Any:
        return self.send("add_detector", detector="TRD", type="STS", endpoint="mem://detectors")

    def test_add_at_top(self) -> None:
        """An added detector appears (published), is watched, and must be configured: partition drops."""
        self.configure_to_top()
        mark = self.mark()
        reply = self.add_trd()
        self.assertNotIsInstance(reply, RequestError)
        self.flush()
        self.assertIn("TRD", self.pca.sequencer.partition.systems)
        self.assertEqual(self.system_records("TRD")[-1]["state"], "Unconfigured")
        self.assertTrue(self.system_records("TRD")[-1]["connected"])
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.published_since(mark)[-1], "TFC_Active")
        self.assertLogged("detector TRD added", mark)
        # the tag has no configuration for TRD: refused before anything is sent
        error = self.refused("missing_config", "configure", tag="v1", auto=True)
        self.assertIn("TRD", error.reason)
        # TRD's own updates go to p1 once the ECA has remapped it (here: by hand)
        self.controller("TRD").partition = "p1"
        received = len(self.received)
        self.command("configure", configs=[config("TRD")], auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.received[received], ("TRD", "configure", "trd-1"))
        # a later error of TRD is seen: it is watched
        self.to_system("detectors", "TRD", "inject", what="error")
        self.flush()
        self.assertEqual(self.state, "TFC_Active")

    def test_add_watched_for_connection(self) -> None:
        """An added detector goes to Connection Problem with its endpoint."""
        self.add_trd()
        self.flush()
        self.network.set_down("mem://detectors")
        self.advance(SETTINGS.heartbeat_timeout + 1)
        self.assertEqual(self.system_records("TRD")[-1]["state"], "Connection Problem")
        self.network.set_down("mem://detectors", False)
        self.advance(2)
        self.assertEqual(self.system_records("TRD")[-1]["state"], "Unconfigured")

    def test_add_twice(self) -> None:
        """Adding a detector already in the partition is not allowed."""
        error = self.refused(protocol.NOT_ALLOWED, "add_detector", detector="STS")
        self.assertIn("STS", error.reason)

    def test_remove(self) -> None:
        """A removed detector's record is removed from the table and it no longer blocks readiness."""
        self.configure_to_top()
        self.to_system("detectors", "STS", "inject", what="error")
        self.flush()
        self.assertEqual(self.state, "TFC_Active")
        mark = self.mark()
        reply = self.command("remove_detector", detector="STS")
        self.assertEqual(reply["state"], TOP)
        removed = [e for e in self.events[mark:] if e.type == "removed"]
        self.assertEqual([e.body["key"] for e in removed], ["system/STS"])
        self.assertIsNone(self.pca.store.get("system/STS"))
        self.assertNotIn("STS", self.pca.sequencer.partition.systems)
        self.assertEqual(self.published_since(mark), [TOP])
        self.assertLogged("detector STS removed", mark)
        # its later updates are ignored
        self.to_system("detectors", "STS", "reset")
        self.advance(1)
        self.assertEqual(self.state, TOP)
        self.refused(protocol.UNKNOWN_SYSTEM, "remove_detector", detector="STS")
        self.refused(protocol.UNKNOWN_SYSTEM, "remove_detector", detector="TFC")

    def test_refused_while_configuring(self) -> None:
        """Add and remove are busy while configuring."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.5)
        self.refused(protocol.BUSY, "remove_detector", detector="MVD")
        error = self.send("add_detector", detector="TRD", type="STS", endpoint="mem://detectors")
        self.assertIsInstance(error, RequestError)
        self.assertEqual(error.code, protocol.BUSY)
        self.assertIn("MVD", self.pca.sequencer.partition.systems)
        self.assertNotIn("TRD", self.pca.sequencer.partition.systems)
        self.advance(1.5)
        self.assertEqual(self.state, TOP)

    def test_refused_while_recording(self) -> None:
        """Add and remove are busy while recording."""
        self.record_on()
        error = self.refused(protocol.BUSY, "remove_detector", detector="MVD")
        self.assertIn("Recording", error.reason)
        error = self.send("add_detector", detector="TRD", type="STS", endpoint="mem://detectors")
        self.assertIsInstance(error, RequestError)
        self.assertEqual(error.code, protocol.BUSY)
        self.assertEqual(self.state, "Recording")

    def test_accepted_when_idle_and_active(self) -> None:
        """Add and remove are accepted at Idle and at an active state; a removed detector is not configured."""
        self.assertNotIsInstance(self.add_trd(), RequestError)
        self.assertNotIsInstance(self.command("remove_detector", detector="TRD"), RequestError)
        self.command("configure", tag="v1")
        self.advance(0.5)
        self.assertEqual(self.state, "TFC_Active")
        self.assertNotIsInstance(self.command("remove_detector", detector="TOF"), RequestError)
        self.assertNotIn("TOF", self.pca.sequencer.partition.expected)
        # the tag still has a configuration for TOF: skipped and named, as the original did (§3.6 step 3)
        reply = self.command("configure", tag="v1", auto=True)
        self.assertEqual(reply["ignored"], ["TOF"])
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.commands_to("TOF"), [])

    def test_remove_last_detector_of_endpoint(self) -> None:
        """Removing every detector of an endpoint stops watching it (no timers left)."""
        for name in DETECTORS:
            self.command("remove_detector", detector=name)
        self.assertNotIn("mem://detectors", self.pca.heartbeats)
        self.network.set_down("mem://detectors")
        self.advance(5)
        self.assertEqual(self.logs()[-1], "detector TOF removed")


# =========================================================================
# restarts
# =========================================================================


class RestartTests(Scenario):
    def setUp(self) -> None:
        self.state_path = Path(self.mktemp()) / "pca-p1.json"
        super().setUp()

    def restart_pca(self) -> None:
        self.pca.stopService()
        self.flush()
        self.pca = self.make_pca()
        self.pca.startService()
        self.flush()
        self.events.clear()
        self.subscriber = self.tester.subscribe(
            self.pca.publisher.address, ["state/", "log/", "progress/"], self.events.append
        )

    def test_pca_restart(self) -> None:
        """A restarted PCA re-derives QA_Active from the live systems and has its tag back."""
        self.configure_to_top()
        saved = json.loads(self.state_path.read_text(encoding="utf-8"))
        self.assertEqual(saved["tag"], "v1")
        self.assertEqual(saved["expected"]["STS"], config("STS"))
        self.assertEqual(set(saved["expected"]), set(ALL))
        before, received = self.controller_states(), len(self.received)
        self.restart_pca()
        self.advance(SETTINGS.heartbeat_interval)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.pca.store.get("partition")["tag"], "v1")
        self.assertEqual(self.pca.store.get("partition")["state"], TOP)
        self.assertEqual(self.controller_states(), before)
        self.assertEqual(self.received[received:], [])  # nothing was reconfigured
        self.assertEqual(self.command("configure", tag="v1")["message"], "nothing to do: every system is configured")

    def test_pca_restart_mid_configure(self) -> None:
        """A PCA restarted while the detectors configure shows it, then Detectors_Active; configure continues."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.5)
        self.restart_pca()
        self.assertEqual(self.state, "Configuring_Detectors")
        self.assertIsNone(self.pca.sequencer.op)
        self.advance(1)
        self.assertEqual(self.state, "Detectors_Active")
        self.assertEqual(self.pca.store.get("partition")["tag"], "v1")
        self.command("configure", tag="v1", auto=True)
        self.advance(1)
        self.assertEqual(self.state, TOP)

    def test_pca_restart_recording(self) -> None:
        """A restarted PCA re-derives Recording (reference §3.13) and leaves the recording running."""
        self.record_on()
        self.restart_pca()
        self.advance(1)
        self.assertEqual(self.controller("QA").state, "Recording")
        self.assertEqual(self.controller("FLES").state, "Recording")
        self.assertEqual(self.state, "Recording")
        self.command("stop")
        self.flush()
        self.assertEqual(self.state, TOP)


    def test_pca_restart_keeps_pending_reconfiguration(self) -> None:
        """After a partial reconfiguration stopped half-way, a restarted PCA still knows the stages above are due."""
        self.configure_to_top()
        self.command("configure", tag="v2-sts")
        self.advance(1)
        self.assertEqual(self.state, "Detectors_Active")  # FLES, DCS and QA are due for reconfiguration
        self.restart_pca()
        self.advance(1)
        self.assertEqual(self.state, "Detectors_Active")
        received = len(self.received)
        self.command("configure", tag="v2-sts", auto=True)
        self.advance(1)
        self.assertEqual({s for s, _, _ in self.received[received:]}, {"FLES", "DCS", "QA"})


    def test_pca_restart_without_state_file(self) -> None:
        """Without a state file, the state is still re-derived from what the systems report (no tag)."""
        self.configure_to_top()
        self.state_path.unlink()
        self.restart_pca()
        self.advance(1)
        self.assertEqual(self.state, TOP)
        self.assertIsNone(self.pca.store.get("partition")["tag"])

    def test_pca_restart_after_abort(self) -> None:
        """The tag cleared by abort stays cleared after a restart."""
        self.configure_to_top()
        self.command("abort")
        self.advance(1)
        self.restart_pca()
        self.advance(1)
        self.assertEqual(self.state, "Idle")
        self.assertIsNone(self.pca.store.get("partition")["tag"])

    def test_restored_configurations_verified(self) -> None:
        """After a restart the restored configurations are checked: a wrong one is not ready."""
        self.configure_to_top()
        self.pca.stopService()
        self.flush()
        # while the PCA is away, STS is reconfigured by someone else
        self.to_system("detectors", "STS", "configure", config={"config_id": "other"})
        self.advance(1)
        self.assertEqual(self.controller("STS").tag, "other")
        self.pca = self.make_pca()
        self.pca.startService()
        self.advance(1)
        self.assertEqual(self.controller("STS").state, "Unconfigured")  # aborted: not its configuration
        self.assertEqual(self.state, "TFC_Active")

    def test_controller_restart(self) -> None:
        """A restarted controller host (new incarnation, sequence 0) is accepted, its updates folded in."""
        self.configure_to_top()
        old = self.detector_host
        old_incarnation = old.incarnation
        old_seq = {name: self.system(name).seq for name in DETECTORS}
        self.assertTrue(all(seq > 1 for seq in old_seq.values()))
        old.stopService()
        self.flush()
        del self.hosts["detectors"]
        host = self.make_host("detectors", "mem://detectors")
        for name in self.detectors:
            host.add_detector(name, self.subsystems.detector_types["STS"])
        host.startService()
        self.detector_host = host
        self.spy(host)
        self.advance(SETTINGS.heartbeat_interval)
        self.assertNotEqual(host.incarnation, old_incarnation)
        for name in DETECTORS:
            self.assertEqual(self.system(name).incarnation, host.incarnation)
            self.assertEqual(self.system(name).summary, "Unconfigured", name)
        self.assertEqual(self.state, "TFC_Active")
        self.command("configure", tag="v1", auto=True)
        self.advance(2)
        for name in DETECTORS:
            self.assertLessEqual(self.system(name).seq, old_seq[name])  # lower numbers, not dropped
        self.assertEqual(self.state, TOP)


# =========================================================================
# an alternative sequence, without code change
# =========================================================================

ALTERNATIVE = """\
name: no-qa-with-hlt
idle: Standby
stages:
  - {name: Timing, systems: [TFC], configuring: Configuring_Timing, active: Timing_Ready, timeout: 30}
  - {name: Detectors, systems: [detectors], configuring: Configuring_Detectors, active: Detectors_Ready, timeout: 60}
  - {name: HLT, systems: [HLT], configuring: Configuring_HLT, active: HLT_Ready, timeout: 30}
  - name: Readout
    systems: [FLES, DCS]
    configuring: Configuring_Readout
    active: Ready
    timeout: 30
    falls_to: Timing_Ready
recording: {state: Running, systems: [FLES], timeout: 10}
"""


class AlternativeSequenceTests(Scenario):
    globals_ = ("TFC", "DCS", "FLES", "HLT")

    def setUp(self) -> None:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ALTERNATIVE, encoding="utf-8")
        self.sequence_file = str(path)
        super().setUp()

    def test_configure_and_record(self) -> None:
        """A sequence without QA and with HLT configures to its last stage and records with FLES alone."""
        self.assertEqual(self.state, "Standby")
        self.assertNotIn("QA", self.pca.sequencer.partition.systems)
        reply = self.command("configure", tag="v1", auto=True)
        self.assertEqual(reply["stages"], 4)
        self.advance(2)
        self.assertEqual(self.state, "Ready")
        self.assertEqual(
            self.published_states(),
            ["Configuring_Timing", "Configuring_Detectors", "Configuring_HLT", "Configuring_Readout", "Ready"],
        )
        order = [s for s, c, _ in self.received if c == "configure"]
        self.assertEqual(order[0], "TFC")
        self.assertEqual(order[4], "HLT")
        self.assertEqual(self.controller("HLT").tag, "hlt-1")
        self.assertIn("configured to Ready in", "\n".join(self.logs()))
        self.assertEqual(self.command("start")["operation"], "starting recording")
        self.flush()
        self.assertEqual(self.state, "Running")
        self.assertEqual(self.controller("FLES").state, "Recording")
        self.command("stop")
        self.flush()
        self.assertEqual(self.state, "Ready")
        self.assertEqual(self.controller("FLES").state, "Active")

    def test_fall_back_declared(self) -> None:
        """The declared falls_to is used (DCS -> Timing_Ready) and HLT falls to Detectors_Ready."""
        self.configure_to_top()
        self.to_system("globals", "HLT", "inject", what="error", partition="p1")
        self.flush()
        self.assertEqual(self.state, "Detectors_Ready")
        self.command("reset", system="HLT")
        self.command("configure", tag="v1", auto=True)
        self.advance(2)
        self.assertEqual(self.state, "Ready")
        self.to_system("globals", "DCS", "inject", what="error", partition="p1")
        self.flush()
        self.assertEqual(self.state, "Timing_Ready")


# =========================================================================
# publication
# =========================================================================


class PublicationTests(Scenario):
    def test_snapshot_pages(self) -> None:
        """The snapshot request, in pages, returns every system and the partition record."""
        self.configure_to_top()
        entries: dict[str, Any] = {}
        after = None
        pages = 0
        while True:
            body = {"limit": 2} if after is None else {"limit": 2, "after": after}
            page = self.command("snapshot", **body)
            self.assertLessEqual(len(page["entries"]), 2)
            entries.update(page["entries"])
            pages += 1
            after = page["next"]
            if after is None:
                break
        self.assertEqual(pages, 4)
        self.assertEqual(set(entries), {"partition", *(f"system/{s}" for s in ALL)})
        self.assertEqual(entries["partition"]["value"]["state"], TOP)
        self.assertEqual(entries["partition"]["value"]["tag"], "v1")
        record = entries["system/STS"]["value"]
        self.assertEqual(
            record,
            {"id": "STS", "kind": "detector", "state": "Active", "raw_state": "Active", "tag": "sts-1",
             "comment": "", "connected": True},
        )
        self.refused(protocol.BAD_REQUEST, "snapshot", limit=0)
        self.refused(protocol.BAD_REQUEST, "snapshot", after=3)

    def test_status(self) -> None:
        """The status request answers the partition record and every system."""
        self.configure_to_top()
        status = self.command("status")
        self.assertEqual(status["state"], TOP)
        self.assertEqual({s["id"] for s in status["systems"]}, set(ALL))

    def test_events_carry_sequence_numbers(self) -> None:
        """Published events are numbered without gaps."""
        self.configure_to_top()
        seqs = [e.seq for e in self.events if e.type != "tick"]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))

    def test_late_subscriber_converges(self) -> None:
        """A subscriber joining late converges to the PCA's table via Mirror and paged snapshots."""
        self.command("configure", tag="v1", auto=True)
        self.advance(0.5)
        node = MemoryNode(self.network, "late")
        client = node.connect("mem://pca")

        def page(after: str | None) -> Any:
            return client.request("p1", "snapshot", {"limit": 2} if after is None else {"limit": 2, "after": after})

        mirror = Mirror(self.clock, lambda: fetch_paged_snapshot(page), lambda key, value: None)
        node.subscribe(self.pca.publisher.address, ["state/"], mirror.event_received)
        mirror.start()
        self.addCleanup(node.close)
        self.addCleanup(mirror.stop)
        self.advance(2)
        self.assertTrue(mirror.synced)
        self.assertEqual(mirror.entries, {k: v for k, (v, _) in self.pca.store.entries.items()})
        self.assertEqual(mirror.entries["partition"]["state"], TOP)
        self.command("remove_detector", detector="TOF")
        self.flush()
        self.assertNotIn("system/TOF", mirror.entries)
        self.assertEqual(mirror.entries, {k: v for k, (v, _) in self.pca.store.entries.items()})


class StatusTests(Scenario):
    def test_status_is_bounded(self) -> None:
        """A status reply lists at most `limit` systems and says how many there are (snapshot pages the rest)."""
        status = self.pca.sequencer.status(limit=2)
        self.assertEqual(len(status["systems"]), 2)
        self.assertEqual(status["systems_total"], len(ALL))
        self.assertEqual(len(self.command("status")["systems"]), len(ALL))
