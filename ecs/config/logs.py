# -*- test-case-name: tests.test_logs -*-
"""
The C{log_level} setting, applied to the log of a twistd-run agent.

twistd sets up its log observer after the plugin's C{makeService} has run,
through L{twisted.logger.globalLogBeginner}.  L{apply_log_level}, called from
C{makeService}, makes that beginner wrap every observer it is given in a
filter for the configured level, so the setting needs no twistd option.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogBeginner,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
)

LEVELS = ("debug", "info", "warn", "error", "critical")


def apply_log_level(level: str, beginner: LogBeginner = globalLogBeginner) -> None:
    """
    Show only events at C{level} or above in the observers that C{beginner}
    is about to be given (twistd's log file or stdout).
    """
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    original = beginner.beginLoggingTo

    def begin_logging_to(observers: Iterable[ILogObserver], *args: Any, **kwargs: Any) -> None:
        filtered = [FilteringLogObserver(observer, [predicate]) for observer in observers]
        original(filtered, *args, **kwargs)

    # Replaces the method on this one beginner, which twistd calls later:
    # mypy refuses assigning to a method, which is the point here.
    beginner.beginLoggingTo = begin_logging_to  # type: ignore[method-assign]
