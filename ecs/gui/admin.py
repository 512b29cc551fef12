# -*- test-case-name: tests.test_gui_admin -*-
"""
The management pages of the GUI (see L{ecs.gui}): configurations, tags,
partitions and detectors, clients, runs, logs, the electronic logbook,
the audit trail and users.

Each page is a shell rendered here for the role it needs (a lower role gets
403 naming it, no session the login page); its script
(C{templates/static/<page>.js}, with the helpers of C{admin.js}) reads the
JSON API and follows the SSE stream.  The API checks roles and control
again on every change: the shell only spares a user pages they cannot use.
The state-table page is in L{ecs.gui.fsmview}.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ecs.gui.base import GuiPages

#: (route, template and script name, title, role needed)
PAGES = (
    ("/configs", "configs", "Configurations", "expert"),
    ("/tags", "tags", "Configuration tags", "expert"),
    ("/manage", "manage", "Partitions & detectors", "expert"),
    ("/clients", "clients", "Clients", "expert"),
    ("/runs", "runs", "Runs", "viewer"),
    ("/logs", "logs", "Logs", "viewer"),
    ("/logbook", "logbook", "Logbook", "viewer"),
    ("/audit", "audit", "Audit trail", "expert"),
    ("/users", "users", "Users", "admin"),
)


async def _shell(self: GuiPages, request: IRequest, name: str, title: str, role: str,
                 data: dict[str, str] | None = None) -> bytes:
    return await self.page(request, name, title, role=role, scripts=["admin.js", f"{name}.js"],
                           data={"page": name, **(data or {})})


@GuiPages.app.route("/configs", methods=["GET"])
async def configs_page(self: GuiPages, request: IRequest) -> bytes:
    """The configuration editor, with versions (expert)."""
    return await _shell(self, request, "configs", "Configurations", "expert")


@GuiPages.app.route("/tags", methods=["GET"])
async def tags_page(self: GuiPages, request: IRequest) -> bytes:
    """The tag editor (expert)."""
    return await _shell(self, request, "tags", "Configuration tags", "expert")


@GuiPages.app.route("/manage", methods=["GET"])
async def manage_page(self: GuiPages, request: IRequest) -> bytes:
    """Create, delete and move partitions and detectors (expert, with the ECS control)."""
    return await _shell(self, request, "manage", "Partitions & detectors", "expert")


@GuiPages.app.route("/clients", methods=["GET"])
async def clients_page(self: GuiPages, request: IRequest) -> bytes:
    """Every agent: where it runs, whether it runs, start/stop/restart (expert)."""
    return await _shell(self, request, "clients", "Clients", "expert")


@GuiPages.app.route("/runs", methods=["GET"])
async def runs_page(self: GuiPages, request: IRequest) -> bytes:
    """The run records with their types and comments, filtered, exported as CSV or JSON (viewer)."""
    return await _shell(self, request, "runs", "Runs", "viewer", {"runtypes": ",".join(self.center.run_types())})


@GuiPages.app.route("/logs", methods=["GET"])
async def logs_page(self: GuiPages, request: IRequest) -> bytes:
    """The stored log events with filters, and live ones (viewer)."""
    return await _shell(self, request, "logs", "Logs", "viewer")


@GuiPages.app.route("/logbook", methods=["GET"])
async def logbook_page(self: GuiPages, request: IRequest) -> bytes:
    """The electronic logbook: entries filtered and paged, corrections shown, a form to write one (viewer)."""
    return await _shell(self, request, "logbook", "Logbook", "viewer")


@GuiPages.app.route("/audit", methods=["GET"])
async def audit_page(self: GuiPages, request: IRequest) -> bytes:
    """The audit trail: who did what, with its outcome, filtered and paged (expert)."""
    return await _shell(self, request, "audit", "Audit trail", "expert")


@GuiPages.app.route("/users", methods=["GET"])
async def users_page(self: GuiPages, request: IRequest) -> bytes:
    """Users and roles (admin)."""
    return await _shell(self, request, "users", "Users", "admin")


__all__ = ["PAGES"]
