# -*- test-case-name: tests.test_service -*-
"""
C{twistd -n ecs-simhost --ids 1-500 --type T}: many detector controllers in
one process, behind one endpoint (scale tests and demos).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from agents._tap import Composition, ControllerOptions
from agents.controller.host import controller_host
from ecs.config.settings import fail
from ecs.net.identity import simhost_identity

MAX_IDS = 100_000
_PART = re.compile(r"\A(\d+)(?:-(\d+))?\Z")


def parse_ids(spec: str, prefix: str = "") -> list[str]:
    """
    Expand C{"1-3,7"} to C{["1", "2", "3", "7"]} (each with C{prefix}).

    @raise ValueError: naming the part that is not a number or range.
    """
    ids: list[str] = []
    for part in spec.split(","):
        match = _PART.match(part.strip())
        if not match:
            raise ValueError(f"--ids: {part!r} is not a number or a range like 1-500")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        if last < first:
            raise ValueError(f"--ids: range {part!r} ends before it starts")
        if len(ids) + last - first + 1 > MAX_IDS:
            raise ValueError(f"--ids: more than {MAX_IDS} detectors in one sim host")
        ids.extend(f"{prefix}{n}" for n in range(first, last + 1))
    if len(set(ids)) != len(ids):
        raise ValueError("--ids: the same id appears twice")
    return ids


class Options(ControllerOptions):
    """Options of C{ecs-simhost}."""

    optParameters: ClassVar[list[list[Any]]] = [
        ["ids", None, None, "Detector ids: numbers and ranges, e.g. 1-500,600 (required)."],
        ["prefix", None, "", "Prefix of every id, e.g. sim for sim1..sim500."],
        ["type", "t", None, "Detector type of ids not in the inventory."],
    ]

    def postOptions(self) -> None:
        """Expand --ids."""
        super().postOptions()
        if not self["ids"]:
            raise usage.UsageError("--ids is required, e.g. --ids 1-500")
        try:
            self["detector_ids"] = parse_ids(self["ids"], self["prefix"])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options) -> IService:
    """Compose the sim host."""
    composition = Composition(options)
    host = controller_host(
        composition,
        f"simhost:{options['prefix']}{options['ids']}",
        options["bind"],
        simhost_identity(options["prefix"], options["ids"]),
    )
    types = {}
    for detector in options["detector_ids"]:
        type_name = composition.detector_type_now(detector) or options["type"]
        if type_name is None:
            fail(f"detector {detector}: not in the inventory and no --type given")
        if type_name not in types:
            types[type_name] = composition.system_type(type_name, is_global=False)
        host.add_detector(detector, types[type_name])
    return host
