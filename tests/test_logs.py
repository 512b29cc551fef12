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
