# -*- test-case-name: tests.test_exclusion -*-
"""
Include and exclude in the PCA (issue 14): a whole partition in memory
(L{tests.pca_harness}) on a L{Clock}; an excluded system is left out of
configure, start, stop and abort, its faults do not move the partition, and
included again the next configure configures it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ecs import protocol
from ecs.net.transport import RequestError
from tests.pca_harness import SETTINGS
from tests.test_sequencer import TOP, Scenario


class ExcludeTests(Scenario):
    def test_exclude_while_active(self) -> None:
        """Excluded while QA_Active: the partition stays there and STS is published as Excluded."""
        self.configure_to_top()
        reply = self.command("exclude", system="STS")
        self.assertEqual(reply["excluded"], ["STS"])
        self.assertEqual(reply["system"]["state"], "Excluded")
        self.assertEqual(reply["system"]["raw_state"], "Active")
        self.flush()
        self.assertEqual(self.state, TOP)
        record = self.system_records("STS")[-1]
        self.assertEqual((record["state"], record["raw_state"], record["excluded"]), ("Excluded", "Active", True))
        self.assertIn("STS excluded: left out of configure and recording", self.logs())

    def test_configure_and_start_skip_excluded(self) -> None:
        """Excluded while Idle: configure and start never reach it, and the partition records."""
        self.command("exclude", system="STS")
        self.configure_to_top()
        self.assertNotIn("configure", self.commands_to("STS"))
        self.assertEqual(self.controller("STS").state, "Unconfigured")
        self.assertEqual(self.command("start")["state"], TOP)
        self.advance(0.5)
        self.assertEqual(self.state, "Recording")
        self.command("stop")
        self.advance(0.5)
        self.command("abort")
        self.advance(0.5)
        self.assertEqual(self.commands_to("STS"), [])

    def test_no_configuration_needed(self) -> None:
        """A configuration list without one for the excluded detector is not missing_config."""
        self.command("exclude", system="STS")
        configs = [f"{s.lower()}-1" for s in ("TFC", "DCS", "QA", "FLES", "MVD", "TOF")]
        reply = self.command("configure", configs=configs, auto=True)
        self.assertNotIsInstance(reply, RequestError)
        self.advance(2)
        self.assertEqual(self.state, TOP)

    def test_error_does_not_move(self) -> None:
        """An excluded detector in Error (or unreachable) leaves the partition where it is, with a warning."""
        self.configure_to_top()
        self.command("exclude", system="MVD")
        mark = self.mark()
        self.to_system("detectors", "MVD", "inject", what="error")
        self.advance(0.5)
        self.assertEqual(self.controller("MVD").state, "Error")
        self.assertEqual(self.system("MVD").summary, "Error")
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.published_since(mark), [])
        self.assertLogged("MVD of partition p1 (excluded) is Error: the partition ignores it", mark)
        self.assertEqual(self.system_records("MVD")[-1]["state"], "Excluded")

    def test_global_system(self) -> None:
        """DCS (excludable in the shipped sequence) in Error does not move the partition once excluded."""
        self.configure_to_top()
        self.command("exclude", system="DCS")
        self.to_system("globals", "DCS", "inject", what="error", partition="p1")
        self.advance(0.5)
        self.assertEqual(self.state, TOP)

    def test_include_then_configure(self) -> None:
        """Included again, it is due for configure: the state says so until configure configures it."""
        self.command("exclude", system="STS")
        self.configure_to_top()
        reply = self.command("include", system="STS")
        self.assertEqual(reply["excluded"], [])
        self.flush()
        self.assertEqual(self.state, "TFC_Active")
        self.assertEqual(self.system_records("STS")[-1]["state"], "Unconfigured")
        self.assertIn("STS included: the next configure configures it", self.logs())
        self.command("configure", tag="v1", auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual([c for s, c, _ in self.received if s == "STS"], ["configure"])
        self.assertEqual(self.controller("STS").tag, "sts-1")

    def test_include_active_detector_reconfigured(self) -> None:
        """An excluded detector that stayed Active is still configured again after include."""
        self.configure_to_top()
        self.command("exclude", system="STS")
        self.command("include", system="STS")
        self.flush()
        self.assertNotEqual(self.state, TOP)
        self.command("configure", tag="v1", auto=True)
        self.advance(2)
        self.assertEqual(self.state, TOP)
        self.assertEqual(self.commands_to("STS")[-1], "configure")

    def test_twice_is_harmless(self) -> None:
        """Excluding an excluded system (or including an included one) changes nothing."""
        self.configure_to_top()
        self.command("exclude", system="STS")
        mark = self.mark()
        self.assertEqual(self.command("exclude", system="STS")["excluded"], ["STS"])
        self.assertEqual(self.command("include", system="TOF")["excluded"], ["STS"])
        self.flush()
        self.assertEqual(self.logs_since(mark), [])
        self.assertEqual(self.state, TOP)


class RefusalTests(Scenario):
    def test_recording(self) -> None:
        """Not while recording (not_allowed), neither exclude nor include."""
        self.record_on()
        error = self.refused(protocol.NOT_ALLOWED, "exclude", system="STS")
        self.assertIn("recording", error.reason)
        self.refused(protocol.NOT_ALLOWED, "include", system="STS")
        self.assertFalse(self.system("STS").excluded)

    def test_configuring(self) -> None:
        """Not while an operation runs (busy)."""
        self.command("configure", tag="v1", auto=True)
        self.refused(protocol.BUSY, "exclude", system="STS")
        self.advance(2)

    def test_never_excluded(self) -> None:
        """TFC (never_excluded) and the recording systems are refused with the reason."""
        error = self.refused(protocol.NOT_ALLOWED, "exclude", system="TFC")
        self.assertIn("never_excluded", error.reason)
        error = self.refused(protocol.NOT_ALLOWED, "exclude", system="QA")
        self.assertIn("recording system", error.reason)

    def test_bad_bodies(self) -> None:
        """An unknown system is unknown_system; a missing or non-string one bad_request."""
        self.assertIn("RICH", self.refused(protocol.UNKNOWN_SYSTEM, "exclude", system="RICH").reason)
        self.refused(protocol.UNKNOWN_SYSTEM, "include", system="RICH")
        self.refused(protocol.BAD_REQUEST, "exclude")
        self.refused(protocol.BAD_REQUEST, "include", system=3)


class RestartTests(Scenario):
    def setUp(self) -> None:
        self.state_path = Path(self.mktemp()) / "pca-p1.json"
        super().setUp()

    def test_survives_restart(self) -> None:
        """The exclusion is in the state file: a restarted PCA still ignores the excluded detector."""
        self.configure_to_top()
        self.command("exclude", system="MVD")
        self.advance(0.25)
        self.assertEqual(json.loads(self.state_path.read_text(encoding="utf-8"))["excluded"], ["MVD"])
        self.to_system("detectors", "MVD", "inject", what="error")
        self.pca.stopService()
        self.flush()
        self.pca = self.make_pca()
        self.pca.startService()
        self.advance(SETTINGS.heartbeat_interval)
        self.assertTrue(self.system("MVD").excluded)
        self.assertEqual(self.system("MVD").summary, "Error")
        self.assertEqual(self.state, TOP)
