"""
The fault campaign's longer mode: C{python bench/faults.py --faults N --seed S
[--budget SECONDS] [--sim-detectors K] [--keep DIR]}.

Starts the same real deployment as C{tests/test_faults.py} (the ECA from
C{ecs-demo} with its supervised partition, a second partition for moves) in
a temporary folder, inflicts C{N} seeded SIGKILLs during configure, start,
stop, abort and detector moves, checks the invariants after each (see
C{tests/faultlib.py}), and prints one progress line a fault on stderr, then
the figures line and a JSON summary on stdout.  Exits 1 when any fault did
not heal or broke an invariant (each named with seed, step, victim and
moment, and the log folders).  Every process it started is killed by pid
at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    _p = str(Path(__file__).resolve().parent.parent)
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench.benchlib import say


class Cleanups:
    """What a trial C{TestCase} offers the deployment: C{addCleanup}, run last first by L{run}."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def addCleanup(self, call: Callable[..., Any], *args: Any) -> None:
        """Remember C{call(*args)}."""
        self.calls.append((call, args))

    async def run(self) -> None:
        """Call each, the last added first, awaiting what returns an awaitable."""
        while self.calls:
            call, args = self.calls.pop()
            try:
                result = call(*args)
                if hasattr(result, "__await__"):
                    await result
            except Exception as e:  # one failing cleanup must not keep processes alive
                say(f"cleanup {getattr(call, '__name__', call)}: {e}")


async def campaign(args: argparse.Namespace) -> int:
    """Run the campaign; the exit status."""
    from tests.faultlib import Campaign, Deployment, failures, figures

    root = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="ecs-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    cleanups = Cleanups()
    deployment = Deployment(cleanups, root, sim_detectors=args.sim_detectors)
    cleanups.addCleanup(deployment.stop)
    run = Campaign(deployment, args.seed, args.faults, args.budget, say=say)
    begun = time.monotonic()
    try:
        outcomes = await run.run()
    finally:
        await cleanups.run()
    line = figures(outcomes, args.seed)
    problems = failures(outcomes, deployment, run.stopped_early)
    if problems:
        say("FAILED:\n" + problems)
    print(line, flush=True)
    print(json.dumps({
        "seed": args.seed,
        "faults": len(outcomes),
        "converged": sum(o.converged for o in outcomes),
        "converge_s": [None if o.converge_s is None else round(o.converge_s, 2) for o in outcomes],
        "configure_s": [None if o.configure_s is None else round(o.configure_s, 2) for o in outcomes],
        "failed": [o.fault.describe() for o in outcomes if o.problems],
        "stopped_early": run.stopped_early,
        "seconds": round(time.monotonic() - begun, 1),
        "folder": str(root),
    }), flush=True)
    return 1 if problems or len(outcomes) < args.faults else 0


def main() -> None:
    """Parse the options, run the campaign on the reactor, exit with its status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=100, help="faults to inflict (default 100)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("ECS_FAULT_SEED", "11")),
                        help="random seed (default ECS_FAULT_SEED or 11)")
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds the faults may take (default 3600)")
    parser.add_argument("--sim-detectors", type=int, default=4, help="detectors on the sim host (default 4)")
    parser.add_argument("--keep", help="run in this folder and keep it (default: a new temporary folder)")
    args = parser.parse_args()
    if args.faults < 1 or args.sim_detectors < 1 or args.budget <= 0:
        parser.error("--faults and --sim-detectors must be at least 1, --budget positive")

    from twisted.internet import defer, task

    status: list[int] = []

    async def body(reactor: Any) -> None:
        status.append(await campaign(args))

    task.react(lambda reactor: defer.ensureDeferred(body(reactor)))
    raise SystemExit(status[0] if status else 1)


if __name__ == "__main__":
    main()
