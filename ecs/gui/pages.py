# -*- test-case-name: tests.test_gui -*-
"""
The overview and partition monitor pages (see L{ecs.gui}).

Both are shells: the server renders the layout and the ids the page is
about; C{live.js} fetches C{/api/partitions...} and follows C{/api/events}
(see its header for the live-update rules), C{headline.js} derives each
partition's headline (state tile, what is wrong and the next action, the
sequence's stages) from the partition, its systems and the alarms,
C{monitor.js} adds the control panel (with the start dialog: run type,
comment and conditions, whose limits it gets from L{ecs.runinfo}),
C{sequences.js} the run sequences panel and C{configdialog.js} the
configuration dialog.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.web.iweb import IRequest

from ecs import runinfo
from ecs.control import ControlError
from ecs.gui.base import GuiPages

LIVE_SCRIPTS = ["headline.js", "live.js"]


@GuiPages.app.route("/", methods=["GET"])
async def overview(self: GuiPages, request: IRequest) -> bytes:
    """Every partition and the unassigned detectors, live."""
    return await self.page(request, "overview", "ECS overview", scripts=[*LIVE_SCRIPTS, "overview.js"])


@GuiPages.app.route("/partitions/<pid>", methods=["GET"])
async def monitor(self: GuiPages, request: IRequest, pid: str) -> bytes:
    """One partition, its log and its control panel; 404 for an unknown one."""
    self.secure_headers(request)
    if await self.session(request) is not None:
        # Only a logged-in user learns whether a partition exists.
        if pid == "ecs":
            raise ControlError("not_found", "no partition 'ecs'")
        await defer.maybeDeferred(self.center.partition, pid)
    return await self.page(
        request,
        "monitor",
        f"Partition {pid}",
        scripts=[*LIVE_SCRIPTS, "configdialog.js", "sequences.js", "monitor.js"],
        slots={"partition": pid},
        data={
            "partition": pid,
            "runtypes": ",".join(self.center.run_types()),
            # What a run's conditions may be (ecs.runinfo), for the start dialog's fields.
            "condition-key": runinfo.TYPE_RE.pattern,
            "condition-max": str(runinfo.MAX_CONDITIONS),
            "condition-text": str(runinfo.MAX_CONDITION_TEXT),
        },
    )
