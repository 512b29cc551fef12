"""
The fault campaign in CI: a real deployment (L{tests.faultlib}) and at
least 30 seeded SIGKILLs during configure, start, stop, abort and detector
moves, each followed by the invariant checks and a configure to QA_Active.

The seed is C{ECS_FAULT_SEED} (default L{DEFAULT_SEED}: the same faults on
every run unless asked otherwise); C{ECS_FAULT_COUNT} changes the number
of faults (default 30).  A failure names each failed fault (seed, step,
what was killed and when) with what was wrong, and where the logs are.
The figures line is printed and logged.  The longer mode is
C{bench/faults.py}.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from tests.faultlib import Campaign, Deployment, failures, figures

DEFAULT_SEED = 11
FAULTS = 30
#: Seconds the faults may take (the set-up and the final stop come on top; trial's limit is L{timeout}).
BUDGET = 480.0

_log = Logger()


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)
    _log.info("{line}", line=line)


class FaultCampaignTests(TestCase):
    """The seeded fault campaign against real processes."""

    timeout = 600

    async def test_campaign(self) -> None:
        """Every fault heals: agents restarted, states true, no lock, controls kept, database and runs sound."""
        seed = int(os.environ.get("ECS_FAULT_SEED", DEFAULT_SEED))
        count = int(os.environ.get("ECS_FAULT_COUNT", FAULTS))
        root = Path(self.mktemp()).resolve()
        root.mkdir(parents=True)
        deployment = Deployment(self, root)
        campaign = Campaign(deployment, seed, count, BUDGET, say=_say)
        self.addCleanup(deployment.stop)
        outcomes = await campaign.run()
        line = figures(outcomes, seed)
        print(line, flush=True)
        _log.info("{line}", line=line)
        problems = failures(outcomes, deployment, campaign.stopped_early)
        self.assertEqual(problems, "", f"{line}\n{problems}")
        self.assertEqual(len(outcomes), count, line)
