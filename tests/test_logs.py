"""Tests for L{ecs.config.logs.apply_log_level}."""

from __future__ import annotations

import io
from typing import Any

from twisted.logger import LogBeginner, Logger, LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ecs.config.logs import apply_log_level


class LogLevelTests(SynchronousTestCase):
    """The configured level filters what twistd's observer receives."""

    def test_filters_below_level(self) -> None:
        """With level warn, info events are dropped and warnings pass."""
        publisher = LogPublisher()
        fake_sys = type("S", (), {"warnoptions": []})()
        fake_warnings = type("W", (), {"showwarning": None})()
        beginner = LogBeginner(publisher, io.StringIO(), fake_sys, fake_warnings)
        seen: list[dict[str, Any]] = []
        apply_log_level("warn", beginner)
        beginner.beginLoggingTo([seen.append], redirectStandardIO=False)
        log = Logger(observer=publisher)
        log.info("quiet")
        log.warn("loud")
        log.debug("quieter")
        self.assertEqual([e["log_level"] for e in seen], [LogLevel.warn])

    def test_debugging_follows_the_global_level(self) -> None:
        """Set on the global beginner, a level above debug makes L{debugging} false; debug makes it true."""
        from ecs.config import logs

        self.patch(logs, "_debug", True)
        for level, expected in (("info", False), ("debug", True), ("warn", False)):
            publisher = LogPublisher()
            fake_sys = type("S", (), {"warnoptions": []})()
            fake_warnings = type("W", (), {"showwarning": None})()
            beginner = LogBeginner(publisher, io.StringIO(), fake_sys, fake_warnings)
            self.patch(logs, "globalLogBeginner", beginner)
            apply_log_level(level, beginner)
            self.assertIs(logs.debugging(), expected, level)

    def test_other_beginner_leaves_debugging(self) -> None:
        """A beginner other than the global one (a test's) does not change L{debugging}."""
        from ecs.config import logs

        self.patch(logs, "_debug", True)
        publisher = LogPublisher()
        beginner = LogBeginner(publisher, io.StringIO(), type("S", (), {"warnoptions": []})(),
                               type("W", (), {"showwarning": None})())
        apply_log_level("error", beginner)
        self.assertTrue(logs.debugging())

    def test_transitions_logged_only_when_debugging(self) -> None:
        """A state machine's transition is a debug event only while L{debugging} is true."""
        from twisted.logger import globalLogPublisher

        from ecs.config import logs
        from ecs.fsm.machine import Machine, load_table
        from ecs.paths import data_dir

        table = load_table(data_dir("fsm") / "detector-2step.yaml")
        seen: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace", "").startswith("ecs.fsm") and "-{input}->" in event.get("log_format", ""):
                seen.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        for on in (False, True):
            self.patch(logs, "_debug", on)
            machine = Machine(table)
            machine.fire(sorted(machine.allowed())[0])
        self.assertEqual(len(seen), 1)
