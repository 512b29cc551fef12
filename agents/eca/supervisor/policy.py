# -*- test-case-name: tests.test_agent_machine -*-
"""
What the supervisor does after an agent died: restart it after a back-off,
or give up because it is flapping.  Pure: no clock, no I/O.

- B{Restart with back-off.}  The first death waits C{initial} seconds, each
  further one twice as long, up to C{maximum}; a run of at least
  C{reset_after} seconds starts the doubling again from C{initial}.
- B{Flapping.}  C{flap_count} deaths within C{flap_window} seconds, each
  after a run shorter than C{flap_min_run} seconds: no more restarts.

L{after_death} is called by a plain method of the supervisor before it feeds
the agent machine C{died_restartable} or C{died_flapping}.
"""

from __future__ import annotations

import attrs

#: A death: (when, how long the run lasted), in seconds.
Death = tuple[float, float]


@attrs.frozen
class BackoffPolicy:
    """The back-off and flapping parameters (defaults: 1, 2, 4... 60 s; 5 quick deaths a minute)."""

    initial: float = 1.0
    maximum: float = 60.0
    reset_after: float = 60.0
    flap_count: int = 5
    flap_window: float = 60.0
    flap_min_run: float = 10.0


@attrs.frozen
class Restart:
    """Start the agent again after C{delay} seconds; the history to keep."""

    delay: float
    step: int
    deaths: tuple[Death, ...]


@attrs.frozen
class Flap:
    """Give up: the agent is flapping, C{reason} says why."""

    reason: str
    deaths: tuple[Death, ...]


def after_death(
    policy: BackoffPolicy,
    deaths: tuple[Death, ...],
    step: int,
    now: float,
    ran: float,
    detail: str,
) -> Restart | Flap:
    """
    Decide after a death at C{now}, after a run of C{ran} seconds.

    @param deaths: the earlier deaths remembered (oldest first).
    @param step: how many back-off doublings were made so far.
    @param detail: how the agent ended (for the flapping reason).
    """
    recent = tuple(d for d in (*deaths, (now, ran)) if d[0] >= now - policy.flap_window)
    quick = sum(1 for _, lasted in recent if lasted < policy.flap_min_run)
    if quick >= policy.flap_count:
        reason = (
            f"{quick} deaths within {policy.flap_window:g} s, each after less than "
            f"{policy.flap_min_run:g} s (last: {detail}): not restarted, start it by hand"
        )
        return Flap(reason, recent)
    if ran >= policy.reset_after:
        step = 0
    delay = min(policy.initial * 2**step, policy.maximum)
    return Restart(delay, step + 1, recent)


__all__ = ["BackoffPolicy", "Death", "Flap", "Restart", "after_death"]
