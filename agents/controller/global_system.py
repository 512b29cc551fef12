# -*- test-case-name: tests.test_service -*-
"""
C{twistd -n ecs-global --id TFC|DCS|QA|FLES|all}: global-system controllers.

One state machine per partition served, each with its own action.  C{all}
runs every global system of C{subsystems.yaml} in one process behind one
endpoint.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.application.service import IService
from twisted.python import usage

from agents._tap import Composition, ControllerOptions
from agents.controller.host import controller_host


class Options(ControllerOptions):
    """Options of C{ecs-global}."""

    optParameters: ClassVar[list[list[Any]]] = [["id", None, None, "Global system id, or 'all' (required)."]]

    def postOptions(self) -> None:
        """Require --id."""
        super().postOptions()
        if not self["id"]:
            raise usage.UsageError("--id is required (a global system, or all)")


def makeService(options: Options) -> IService:
    """Compose the global-system controller(s)."""
    composition = Composition(options)
    wanted = options["id"]
    names = list(composition.subsystems.global_systems) if wanted == "all" else [wanted]
    types = {name: composition.system_type(name, is_global=True) for name in names}
    host = controller_host(composition, f"global:{wanted}", options["bind"])
    for name, system_type in types.items():
        host.add_global(name, system_type)
    return host
