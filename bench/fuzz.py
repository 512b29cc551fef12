"""
Fuzz every agent endpoint of a running C{ecs-demo} with tens of thousands of
malformed messages from allowed keys, and print the figures.

    PYTHONPATH=. .venv/bin/python bench/fuzz.py [--messages N]

Runs C{tests.test_fuzz} (which asserts: no crash, no change of state, memory
bounded, the agents still configure) with C{N} messages (default 40,000)
and prints its report: messages sent, replies read, messages per second,
agents watched and the largest growth of an agent's resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--messages", type=int, default=40_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecs-fuzz-") as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "ECS_FUZZ_MESSAGES": str(args.messages), "ECS_FUZZ_REPORT": str(report)}
        result = subprocess.run(
            [sys.executable, "-m", "twisted.trial", f"--temp-directory={tmp}/trial", "tests.test_fuzz"],
            env=env, capture_output=True, text=True, check=False,
        )
        if report.exists():
            print(json.dumps(json.loads(report.read_text()), indent=2))
        print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no output")
        return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
