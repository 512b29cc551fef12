# -*- test-case-name: tests.test_service -*-
"""
C{twistd -n ecs-detector --id D}: one detector controller.

The detector's type (and so its state table and action) comes from
C{--type} or the inventory; its partition from the registry.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from agents._tap import Composition, ControllerOptions
from agents.controller.host import controller_host
from ecs.config.settings import fail


class Options(ControllerOptions):
    """Options of C{ecs-detector}."""

    optParameters: ClassVar[list[list[Any]]] = [
        ["id", None, None, "Detector id (required)."],
        ["type", "t", None, "Detector type from subsystems.yaml (default: from the inventory)."],
        ["start-state", "s", None, "Start in this state instead of the table's initial one (debugging)."],
        ["start-tag", None, None, "Start with this configuration tag (debugging)."],
    ]

    def postOptions(self) -> None:
        """Require --id."""
        super().postOptions()
        if not self["id"]:
            raise usage.UsageError("--id is required")


def makeService(options: Options) -> IService:
    """Compose the detector controller."""
    composition = Composition(options)
    detector = options["id"]
    type_name = options["type"] or composition.detector_type_now(detector)
    if type_name is None:
        fail(f"detector {detector}: give --type (or an --inventory that names its type)")
    system_type = composition.system_type(type_name, is_global=False)
    if options["start-state"]:
        from ecs.fsm.machine import load_table

        table = load_table(system_type.fsm_path)
        if options["start-state"] not in table.states:
            fail(
                f"--start-state {options['start-state']!r} is not a state of {table.source} "
                f"(states: {', '.join(table.states)})"
            )
    host = controller_host(composition, f"detector:{detector}", options["bind"])
    host.add_detector(detector, system_type, options["start-state"], options["start-tag"])
    return host
