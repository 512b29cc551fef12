# -*- test-case-name: tests.test_gui_admin,tests.test_fsmview -*-
"""
The state-machine page of the GUI (C{/fsm}) and its drawings.

Every table comes from L{IControlCenter.systems} (the partition machine
derived from the sequence, each subsystem's table, and the supervisor's
agent lifecycle, C{fsm/agent.yaml}), drawn by L{ecs.fsm.draw.to_dot} with
the current state lit.  With Debian's graphviz
installed (C{/usr/bin/dot}) C{GET /fsm/draw/<table>?state=S} answers
C{image/svg+xml} made by C{dot -Tsvg}, run as a child process through the
reactor (never blocking it) with a timeout, and kept per (table, state);
without it, the DOT text (C{text/plain}).  C{GET /fsm/dot/<table>} always
answers the DOT text.

Beside the tables the page shows the recovery rules in force
(L{IControlCenter.recovery_rules}: what the ECA does by itself when a
system fails), rendered by the server: they change only with the ECA.

Safety: only tables the center knows are drawn (anything else is 404,
whatever the name), a state must be one of the table's, and the SVG is
generated from our own tables, served with C{nosniff} and a CSP that
allows nothing, and shown by the page as an C{<img>} (which never runs
scripts).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.template import Tag, tags

from ecs.control import ControlError
from ecs.fsm.draw import to_dot
from ecs.fsm.systems import table_from_json
from ecs.gui.base import GuiPages

DOT = "/usr/bin/dot"
DOT_TIMEOUT = 10.0
MAX_SVG = 4 << 20
CACHE_SIZE = 256
SVG_CSP = b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"


class _DotProcess(protocol.ProcessProtocol):
    """Feed DOT text to C{dot -Tsvg}; collect its output (bounded)."""

    def __init__(self, source: bytes, done: defer.Deferred[tuple[bytes, bytes, int | None]]) -> None:
        self._source = source
        self._done = done
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._size = 0
        self.too_large = False

    def connectionMade(self) -> None:
        """Send the DOT text and close the child's stdin."""
        assert self.transport is not None
        self.transport.write(self._source)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        """Keep stdout, killing the child beyond L{MAX_SVG} bytes."""
        self._size += len(data)
        if self._size > MAX_SVG:
            if not self.too_large:
                self.too_large = True
                self.kill()
            return
        self._out.append(data)

    def errReceived(self, data: bytes) -> None:
        """Keep the start of stderr, for the error message."""
        if sum(map(len, self._err)) < 4096:
            self._err.append(data)

    def kill(self) -> None:
        """Kill the child (if it still runs)."""
        try:
            if self.transport is not None:
                self.transport.signalProcess("KILL")
        except ProcessExitedAlready:  # already gone: nothing to kill
            return

    def processEnded(self, reason: Failure) -> None:
        """Answer C{(stdout, stderr, exit code)}."""
        code = getattr(reason.value, "exitCode", None)
        if not self._done.called:
            self._done.callback((b"".join(self._out), b"".join(self._err), code))


class DotRenderer:
    """
    C{dot -Tsvg} through C{reactor.spawnProcess}, with a timeout and a cache
    per key; one child per key at a time (later callers wait for it).
    """

    _log = Logger()

    def __init__(self, reactor: Any, dot: str = DOT, timeout: float = DOT_TIMEOUT) -> None:
        self.reactor = reactor
        self.dot = dot
        self.timeout = timeout
        self.spawned = 0
        self._cache: OrderedDict[Any, bytes] = OrderedDict()
        self._waiting: dict[Any, list[defer.Deferred[bytes]]] = {}

    @property
    def available(self) -> bool:
        """Whether the dot program is installed (and the reactor can spawn)."""
        return IReactorProcess.providedBy(self.reactor) and os.access(self.dot, os.X_OK)

    def svg(self, key: Any, source: str) -> defer.Deferred[bytes]:
        """The SVG of C{source} (cached under C{key}); fails with a L{ControlError}."""
        if key in self._cache:
            self._cache.move_to_end(key)
            return defer.succeed(self._cache[key])
        waiter: defer.Deferred[bytes] = defer.Deferred()
        if key in self._waiting:
            self._waiting[key].append(waiter)
            return waiter
        self._waiting[key] = [waiter]
        d = defer.Deferred.fromCoroutine(self._run(source))
        d.addBoth(self._finished, key)
        return waiter

    def _finished(self, result: bytes | Failure, key: Any) -> None:
        if isinstance(result, bytes):
            self._cache[key] = result
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        for waiter in self._waiting.pop(key, []):
            waiter.callback(result) if isinstance(result, bytes) else waiter.errback(result)

    async def _run(self, source: str) -> bytes:
        done: defer.Deferred[tuple[bytes, bytes, int | None]] = defer.Deferred()
        child = _DotProcess(source.encode("utf-8"), done)
        self.spawned += 1
        self.reactor.spawnProcess(child, self.dot, [self.dot, "-Tsvg"], env={"PATH": "/usr/bin:/bin"})
        clock: IReactorTime = self.reactor
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            child.kill()

        timer = clock.callLater(self.timeout, expire)
        try:
            out, err, code = await done
        finally:
            if timer.active():
                timer.cancel()
        if child.too_large:
            raise ControlError("unavailable", f"dot produced more than {MAX_SVG} bytes")
        if code != 0:
            if expired:
                raise ControlError("unavailable", f"dot took longer than {self.timeout:g} s")
            message = err.decode("utf-8", "replace").strip()[:300]
            self._log.warn("dot failed ({code}): {text}", code=code, text=message)
            raise ControlError("unavailable", f"dot failed (exit {code}): {message}")
        return out


def renderer(pages: GuiPages) -> DotRenderer:
    """The pages' L{DotRenderer} (made on first use with the global reactor)."""
    found: DotRenderer | None = pages.__dict__.get("_dot_renderer")
    if found is None:
        from twisted.internet import reactor

        found = DotRenderer(reactor)
        pages.__dict__["_dot_renderer"] = found
    return found


async def _table_dot(self: GuiPages, request: IRequest, table: str) -> tuple[str, str | None] | bytes:
    """The DOT text of a known table with C{?state=} lit, or an error answer."""
    session = await self.session(request)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    if session is None:
        request.setResponseCode(401)
        return b"not logged in\n"
    systems = await defer.maybeDeferred(self.center.systems)
    tables = systems.get("tables", {})
    if table not in tables:
        request.setResponseCode(404)
        return b"no such state table\n"
    parsed = table_from_json(table, tables[table])
    state = None
    values = request.args.get(b"state")
    if values and values[-1]:
        state = values[-1].decode("utf-8", "replace")
        if state not in parsed.states:
            request.setResponseCode(404)
            return f"no state {state!r} in table {table} (states: {', '.join(parsed.states)})\n".encode()
    return to_dot(parsed, state), state


#: Who a recovery rule is for, by its scope.
_RULE_SCOPES = {"defaults": "every system", "type": "type {name}", "system": "system {name}"}


def recovery_rows(rules: dict[str, Any]) -> Tag:
    """
    The recovery rules in force (L{ecs.control.IControlCenter.recovery_rules})
    as the rows of the page's table: who, event, partition state, action, limit.
    """
    rows = []
    for rule in rules.get("rules", []):
        who = _RULE_SCOPES.get(rule["scope"], "{name}").format(name=rule["name"])
        limit = "—" if rule["action"] == "alarm_only" else f"{rule['max']} in {rule['within']:g} s, then an alarm"
        rows.append(tags.tr(tags.td(who), tags.td(rule["event"]), tags.td(rule["state"]),
                            tags.td(tags.code(rule["action"])), tags.td(limit), **{"data-scope": rule["scope"]}))
    if not rows:
        rows.append(tags.tr(tags.td("No rules: every failure raises its alarm, nothing more.", colspan="5")))
    return tags.tbody(*rows)


@GuiPages.app.route("/fsm", methods=["GET"])
async def fsm_page(self: GuiPages, request: IRequest) -> bytes:
    """Every state table, the current state of a chosen partition or system lit; the recovery rules in force."""
    session = await self.session(request)
    slots: dict[str, Any] = {"recovery_source": "", "recovery_rows": tags.tbody()}
    if session is not None and session.user.has("viewer"):
        rules = await defer.maybeDeferred(self.center.recovery_rules, session.user)
        slots = {"recovery_source": rules.get("source", ""), "recovery_rows": recovery_rows(rules)}
    return await self.page(request, "fsm", "State machines", role="viewer", scripts=["admin.js", "fsm.js"],
                           slots=slots, data={"page": "fsm", "svg": "1" if renderer(self).available else "0"})


@GuiPages.app.route("/fsm/dot/<table>", methods=["GET"])
async def fsm_dot(self: GuiPages, request: IRequest, table: str) -> bytes:
    """The DOT text of a table (C{?state=} lit)."""
    result = await _table_dot(self, request, table)
    if isinstance(result, bytes):
        return result
    request.setHeader(b"cache-control", b"no-cache")
    return result[0].encode("utf-8")


@GuiPages.app.route("/fsm/draw/<table>", methods=["GET"])
async def fsm_draw(self: GuiPages, request: IRequest, table: str) -> bytes:
    """SVG of a table by graphviz (C{?state=} lit), or its DOT text without graphviz."""
    result = await _table_dot(self, request, table)
    if isinstance(result, bytes):
        return result
    source, state = result
    dot = renderer(self)
    request.setHeader(b"cache-control", b"private, no-cache")
    if not dot.available:
        return source.encode("utf-8")
    try:
        svg = await dot.svg((table, state, source), source)
    except ControlError as e:
        request.setResponseCode(e.status)
        return f"{e.reason}\n".encode()
    request.setHeader(b"content-type", b"image/svg+xml; charset=utf-8")
    request.setHeader(b"content-security-policy", SVG_CSP)
    return svg


__all__ = ["DOT", "DotRenderer", "recovery_rows", "renderer"]
