"""
The documents of the configure benchmark (L{bench/configure.py}), shared by
its real-process run and its in-memory assembly (L{configure_memory}).

- C{subsystems.yaml}: detector type C{BENCH} (C{detector-2step.yaml}) and
  the four global systems (C{global.yaml} / C{global-recording.yaml}), all
  with simulated actions of duration 0;
- the inventory: partition C{bench}, detectors C{D1..DN} spread over K sim
  hosts (one endpoint per sim host), the global systems on one endpoint;
- the configurations: one per system, all named by tag C{bench}.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PARTITION = "bench"
TAG = "bench"
DETECTOR_TYPE = "BENCH"
PREFIX = "D"
GLOBALS = {
    "TFC": "global.yaml",
    "DCS": "global.yaml",
    "QA": "global-recording.yaml",
    "FLES": "global-recording.yaml",
}


def default_simhosts(detectors: int) -> int:
    """One sim host per 2,500 detectors (at least one)."""
    return max(1, math.ceil(detectors / 2500))


def split(detectors: int, simhosts: int) -> list[tuple[int, int]]:
    """Contiguous id ranges C{(first, last)}, 1-based, as even as possible."""
    simhosts = max(1, min(simhosts, detectors))
    base, extra = divmod(detectors, simhosts)
    ranges = []
    first = 1
    for i in range(simhosts):
        size = base + (1 if i < extra else 0)
        ranges.append((first, first + size - 1))
        first += size
    return ranges


def subsystems_yaml(command_timeout: float | None = None) -> str:
    """The subsystems file: zero-time simulated actions everywhere."""
    timeout = f"\n    command_timeout: {command_timeout}" if command_timeout else ""
    action = "{kind: simulated, duration: 0, failure_probability: 0.0, seed: 0}"
    lines = [
        "# Written by bench/configure.py: zero-time simulated actions.",
        "detector_types:",
        f"  {DETECTOR_TYPE}:",
        "    fsm: detector-2step.yaml",
        f"    action: {action}{timeout}",
        "global_systems:",
    ]
    for name, fsm in GLOBALS.items():
        lines += [f"  {name}:", f"    fsm: {fsm}", f"    action: {action}{timeout}"]
    return "\n".join(lines) + "\n"


def inventory(
    detectors: int,
    simhost_endpoints: list[str],
    pca_endpoint: str,
    global_endpoint: str,
) -> dict[str, Any]:
    """The inventory document: detectors of sim host i share its endpoint."""
    ranges = split(detectors, len(simhost_endpoints))
    entries: dict[str, dict[str, str]] = {}
    for (first, last), endpoint in zip(ranges, simhost_endpoints, strict=False):  # fewer ranges: hosts unused
        for n in range(first, last + 1):
            entries[f"{PREFIX}{n}"] = {"type": DETECTOR_TYPE, "endpoint": endpoint}
    return {
        "partitions": {PARTITION: {"endpoint": pca_endpoint, "detectors": list(entries)}},
        "detectors": entries,
        "global_systems": {g: {"endpoint": global_endpoint} for g in GLOBALS},
    }


def config_id(system: str) -> str:
    return f"{system.lower()}-bench"


def configs(detectors: int) -> dict[str, Any]:
    """One configuration per system, and tag C{bench} naming all of them."""
    systems = [*GLOBALS, *(f"{PREFIX}{n}" for n in range(1, detectors + 1))]
    return {
        "configurations": {
            config_id(s): {"system": s, "parameters": {"threshold": 12, "mode": "bench"}} for s in systems
        },
        "tags": {TAG: [config_id(s) for s in systems]},
    }


def write_json_yaml(document: Any, path: Path) -> None:
    """Write C{document} as JSON (which is YAML), one entry per line."""
    path.write_text(json.dumps(document, indent=0) + "\n", encoding="utf-8")
