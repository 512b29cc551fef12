# -*- test-case-name: tests.test_logs -*-
"""
The C{log_level} setting, applied to the log of a twistd-run agent.

twistd sets up its log observer after the plugin's C{makeService} has run,
through L{twisted.logger.globalLogBeginner}.  L{apply_log_level}, called from
C{makeService}, makes that beginner wrap every observer it is given in a
filter for the configured level, so the setting needs no twistd option.

A debug event costs about 15 microseconds even when the filter drops it
(the event is built and handed through the publisher first): the lines a
burst would log once per system (a state machine's transition, a command
handled) ask L{debugging} first, which is false once the global log was set
to a level above debug.
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

#: Whether debug events can reach the global log (see L{debugging}).
_debug = True


def debugging() -> bool:
    """
    Whether debug events may be shown: false once L{apply_log_level} set the
    global log to a higher level (true before, as in tests, which watch
    every event).
    """
    return _debug


def apply_log_level(level: str, beginner: LogBeginner = globalLogBeginner) -> None:
    """
    Show only events at C{level} or above in the observers that C{beginner}
    is about to be given (twistd's log file or stdout).
    """
    global _debug
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    if beginner is globalLogBeginner:
        _debug = level == "debug"
    original = beginner.beginLoggingTo

    def begin_logging_to(observers: Iterable[ILogObserver], *args: Any, **kwargs: Any) -> None:
        filtered = [FilteringLogObserver(observer, [predicate]) for observer in observers]
        original(filtered, *args, **kwargs)

    # Replaces the method on this one beginner, which twistd calls later:
    # mypy refuses assigning to a method, which is the point here.
    beginner.beginLoggingTo = begin_logging_to  # type: ignore[method-assign]
