# -*- test-case-name: tests.test_gui -*-
"""The overview and partition monitor pages (see L{ecs.gui})."""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ecs.gui import GuiPages


@GuiPages.app.route("/", methods=["GET"])
async def overview(self: GuiPages, request: IRequest) -> bytes:
    """Every partition and the unassigned detectors, live."""
    return await self.page(request, "overview", "ECS overview", scripts=["overview.js"])
