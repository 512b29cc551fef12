# -*- test-case-name: tests.test_fsm -*-
"""
The fixed vocabularies of the state tables: which summary states and which
inputs a table may use, by its C{kind}.  YAML gives topology only; the words
are code.

- C{system} (the default): a controlled system's table; the summary states
  are what the partition sees, the inputs the partition's commands and the
  action's outcome.
- C{agent}: the lifecycle of an agent the ECA supervises; the summary
  states are what operators see, the inputs are events.
"""

from __future__ import annotations

import attrs

SUMMARY_STATES = ("Unconfigured", "Configuring", "Active", "Recording", "Error")
INPUTS = ("configure", "success", "abort", "error", "resolved", "reset", "start", "stop")

#: What operators see of a supervised agent (the summary states of C{kind: agent}).
AGENT_STATES = ("stopped", "starting", "running", "restarting", "flapping", "failed", "unknown")
#: The events of an agent's lifecycle (the inputs of C{kind: agent}).
AGENT_INPUTS = (
    "start_requested", "launched", "launch_failed", "died_restartable", "died_flapping", "ended",
    "backoff_elapsed", "stop_requested", "stop_done", "stop_failed", "status_running",
    "status_unknown",
)


@attrs.frozen
class Vocabulary:
    """The summary states and inputs a kind of table may use (fixed in code)."""

    kind: str
    summaries: tuple[str, ...]
    inputs: tuple[str, ...]


#: C{kind:} of a table -> its vocabulary.  A table without C{kind} is a system table.
VOCABULARIES = {
    "system": Vocabulary("system", SUMMARY_STATES, INPUTS),
    "agent": Vocabulary("agent", AGENT_STATES, AGENT_INPUTS),
}


__all__ = ["AGENT_INPUTS", "AGENT_STATES", "INPUTS", "SUMMARY_STATES", "VOCABULARIES", "Vocabulary"]
