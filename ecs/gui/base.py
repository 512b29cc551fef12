# -*- test-case-name: tests.test_gui -*-
"""
The ECA's web GUI: HTML pages from C{templates/} (twisted.web.template),
served by a Klein app beside the JSON API (L{ecs.web.api.WebAPI}).

How it fits together
    L{site_root} builds the resource mounted on the web endpoint: C{/api/...}
    and C{/metrics} go to the API's Klein app, everything else to
    L{GuiPages}.  Pages are thin: the server renders the page shell (layout,
    navigation, the user, the CSRF token, the ids the page is about) and the
    page's JavaScript (C{templates/static/*.js}) fetches the JSON API and
    follows the SSE stream (C{/api/events}) for live updates.  Every asset
    is served by the ECA itself from C{templates/static/} (no CDN, no
    outside fonts).

Security
    The session is the API's HttpOnly, SameSite=Strict cookie (set by
    C{POST /api/login}, which the login page calls, so the login rate limit
    is the API's).  Pages embed the session's CSRF token in
    C{<meta name="csrf-token">}; the JavaScript sends it as
    C{X-CSRF-Token} on every state-changing request.  Every page answer
    carries a Content-Security-Policy that allows only our own scripts and
    styles (no inline script), so text that reaches the page can never run.
    Hiding a button is never the check: the API checks roles and control.

Page modules
    Each page is a method on L{GuiPages} (routes are class-level, so the
    page modules C{ecs/gui/*.py} add theirs with C{@GuiPages.app.route} on
    plain functions taking C{(self, request, ...)}) that calls
    L{GuiPages.page}: the template C{templates/<name>.html} (a fragment with
    the C{t:} namespace) rendered inside C{templates/base.html}, plus the
    page's scripts.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from klein import Klein
from klein.resource import KleinResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.template import Element, Tag, XMLFile, flattenString, renderer, tags

from ecs.control import ControlError, IControlCenter, Session
from ecs.paths import data_dir
from ecs.web.auth import COOKIE

CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)

NAV = (
    # (path, label, role needed): the left-hand navigation.
    ("/", "Overview", "viewer"),
    ("/runs", "Runs", "viewer"),
    ("/logs", "Logs", "viewer"),
    ("/logbook", "Logbook", "viewer"),
    ("/fsm", "State machines", "viewer"),
    ("/configs", "Configurations", "expert"),
    ("/tags", "Tags", "expert"),
    ("/manage", "Partitions & detectors", "expert"),
    ("/clients", "Clients", "expert"),
    ("/audit", "Audit trail", "expert"),
    ("/users", "Users", "admin"),
)


#: What an asset's name under C{/static/} may be: no NUL, no control
#: character, short enough for any file system (".." is resolved, then
#: refused with 404 when it leaves the folder).
_STATIC_NAME = re.compile(r"[A-Za-z0-9_.\-/]{1,200}")


class Root(Resource):
    """C{/api/...} and C{/metrics} to the API, the rest to the GUI (each
    Klein app sees the whole path)."""

    def __init__(self, api: IResource, gui: IResource) -> None:
        # Named, not super(): mypy then sees Twisted's (unannotated) __init__,
        # which the configuration excludes from the untyped-call check.
        Resource.__init__(self)
        self._api = api
        self._gui = gui

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        """Give the segment back to the Klein app, which routes on the whole path
        (a path that is not UTF-8, which Klein cannot route, is answered 400 here)."""
        try:
            b"/".join(request.prepath + request.postpath).decode("utf-8")  # unquoted, as Klein reads it
        except UnicodeDecodeError:
            return _BadPath()  # type: ignore[no-untyped-call]
        request.postpath.insert(0, request.prepath.pop())
        return self._api if name in (b"api", b"metrics") else self._gui

    def render(self, request: IRequest) -> bytes:
        """C{GET /}: the GUI's overview."""
        return self._gui.render(request)  # type: ignore[no-any-return]


class _BadPath(Resource):
    """400 for a path no route can have (Klein would fail decoding it: a 500)."""

    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        """The JSON error answer of the API (the pages' scripts read it too)."""
        request.setResponseCode(400)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return b'{"error": "bad_request", "reason": "the path is not UTF-8"}'


def site_root(api_resource: IResource, gui_resource: IResource) -> Root:
    """The resource to mount: API and GUI side by side."""
    return Root(api_resource, gui_resource)


class _Content(Element):
    """A page's own template (C{templates/<name>.html}) with its slots filled."""

    def __init__(self, path: Path, slots: Mapping[str, Any]) -> None:
        super().__init__(loader=XMLFile(FilePath(str(path))))
        self._slots = slots

    @renderer
    def slots(self, request: IRequest, tag: Tag) -> Tag:
        """Fill every C{t:slot} of the tag this renderer is on."""
        return tag.fillSlots(**self._slots)


class _Layout(Element):
    """C{templates/base.html}: head, navigation bar, user menu, content."""

    def __init__(self, path: Path, title: str, session: Session, content: Element, scripts: Iterable[str],
                 partitions: Iterable[str], data: Mapping[str, str]) -> None:
        super().__init__(loader=XMLFile(FilePath(str(path))))
        self._title = title
        self._session = session
        self._content = content
        self._scripts = list(scripts)
        self._partitions = list(partitions)
        self._data = data

    @renderer
    def head(self, request: IRequest, tag: Tag) -> Tag:
        """Title and CSRF token."""
        return tag.fillSlots(title=f"{self._title} · ECS", csrf=self._session.csrf)

    @renderer
    def body(self, request: IRequest, tag: Tag) -> Tag:
        """The page's data attributes (ids the page's script needs)."""
        for key, value in self._data.items():
            tag.attributes["data-" + key] = value
        tag.attributes["data-user"] = self._session.user.name
        tag.attributes["data-roles"] = " ".join(self._session.user.roles)
        return tag

    @renderer
    def user(self, request: IRequest, tag: Tag) -> Tag:
        """The logged-in user and roles."""
        user = self._session.user
        return tag.fillSlots(name=user.name, roles=", ".join(user.roles))

    @renderer
    def nav(self, request: IRequest, tag: Tag) -> Iterable[Tag]:
        """One entry per page this user may open."""
        for path, label, role in NAV:
            if self._session.user.has(role):
                yield tag.clone().fillSlots(href=path, label=label)

    @renderer
    def partition_links(self, request: IRequest, tag: Tag) -> Iterable[Tag]:
        """One entry per partition."""
        for pid in self._partitions:
            yield tag.clone().fillSlots(href=f"/partitions/{pid}", label=pid)

    @renderer
    def title(self, request: IRequest, tag: Tag) -> Tag:
        """The page heading."""
        return tag(self._title)

    @renderer
    def content(self, request: IRequest, tag: Tag) -> Element:
        """The page's own template."""
        return self._content

    @renderer
    def scripts(self, request: IRequest, tag: Tag) -> Iterable[Tag]:
        """The common script, then the page's."""
        for name in ["ecs.js", *self._scripts]:
            yield tags.script(src=f"/static/{name}", defer="defer")


class GuiPages:
    """The HTML pages over an L{IControlCenter}; see the module docstring."""

    app = Klein()
    _log = Logger()

    def __init__(self, center: IControlCenter, template_dir: Path | None = None) -> None:
        self.center = center
        self.template_dir = template_dir or data_dir("templates")
        self.static_dir = self.template_dir / "static"

    def resource(self) -> KleinResource:
        """The GUI's resource (mount it with L{site_root})."""
        return self.app.resource()

    # -- plumbing ---------------------------------------------------------------

    async def session(self, request: IRequest) -> Session | None:
        """The cookie's session, or None."""
        cookie = request.getCookie(COOKIE)
        if not cookie:
            return None
        try:
            token = cookie.decode("ascii")
        except UnicodeDecodeError:
            return None
        result: Session | None = await defer.maybeDeferred(self.center.authenticate, token)
        return result

    @staticmethod
    def secure_headers(request: IRequest) -> None:
        """Headers on every HTML answer."""
        request.setHeader(b"content-security-policy", CSP)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"same-origin")
        request.setHeader(b"cache-control", b"no-store")

    def redirect_to_login(self, request: IRequest) -> bytes:
        """303 to the login page, coming back here afterwards."""
        target = request.uri.decode("utf-8", "replace")
        request.setResponseCode(303)
        request.setHeader(b"location", b"/login?next=" + quote(target, safe="/").encode())
        return b""

    async def page(
        self,
        request: IRequest,
        name: str,
        title: str,
        role: str = "viewer",
        scripts: Iterable[str] = (),
        slots: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> bytes:
        """
        Render C{templates/<name>.html} in the layout for the logged-in user,
        or redirect to the login page, or answer 403 naming C{role}.

        @param scripts: the page's own scripts under C{/static/}.
        @param slots: values for the C{t:slot}s inside elements of the page
            template that carry C{t:render="slots"}.
        @param data: C{data-*} attributes of C{<body>}, for the scripts.
        """
        self.secure_headers(request)
        session = await self.session(request)
        if session is None:
            return self.redirect_to_login(request)
        if not session.user.has(role):
            request.setResponseCode(403)
            return await self._render_forbidden(request, session, role)
        partitions = [p["id"] for p in await defer.maybeDeferred(self.center.partitions)]
        content = _Content(self.template_dir / f"{name}.html", slots or {})
        layout = _Layout(self.template_dir / "base.html", title, session, content, scripts, partitions, data or {})
        html: bytes = await flattenString(request, layout)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return b"<!DOCTYPE html>\n" + html

    async def _render_forbidden(self, request: IRequest, session: Session, role: str) -> bytes:
        content = _Content(self.template_dir / "forbidden.html", {"role": role})
        layout = _Layout(self.template_dir / "base.html", "Not allowed", session, content, (), [], {})
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return b"<!DOCTYPE html>\n" + await flattenString(request, layout)

    # -- routes -------------------------------------------------------------------

    @app.handle_errors(ControlError)
    def _control_error(self, request: IRequest, failure: Any) -> bytes:
        error = failure.value
        request.setResponseCode(error.status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"{error.code}: {error.reason}\n".encode()

    @app.route("/static/<path:name>", methods=["GET", "HEAD"])
    def static(self, request: IRequest, name: str) -> bytes:
        """An asset from C{templates/static/}; nothing outside it (400 for a
        name no asset can have, 404 for one that is not there)."""
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if not _STATIC_NAME.fullmatch(name):
            request.setResponseCode(400)
            return b"bad asset name: letters, digits, '.', '_', '-' and '/', at most 200 characters\n"
        root = self.static_dir.resolve()
        try:
            path = (root / name).resolve()
            found = root in path.parents and path.is_file()
        except (OSError, ValueError):  # a name the file system refuses
            found = False
        if not found:
            request.setResponseCode(404)
            return b"not found\n"
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
            ctype += "; charset=utf-8"
        request.setHeader(b"content-type", ctype.encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-cache")
        return path.read_bytes()

    @app.route("/login", methods=["GET"])
    def login(self, request: IRequest) -> bytes:
        """The login form (its script posts to C{/api/login})."""
        self.secure_headers(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return (self.template_dir / "login.html").read_bytes()

    @app.route("/favicon.ico", methods=["GET"])
    def favicon(self, request: IRequest) -> bytes:
        """No icon (and no 404 noise in the browser console)."""
        request.setResponseCode(204)
        return b""


__all__ = ["CSP", "NAV", "GuiPages", "Root", "site_root"]
