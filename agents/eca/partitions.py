# -*- test-case-name: tests.test_eca -*-
"""
How the ECA follows one partition: a mirror of what its PCA publishes.

L{PartitionWatch} subscribes to the PCA's publisher, keeps a clone-pattern
L{Mirror} of its table (the partition record and every system's), watches
the PCA with heartbeats (a PCA that stops answering is shown as
disconnected, not with its stale states), turns what arrives into the
ECA's live events, and notices when the partition starts and stops
recording (run records).  When the PCA registers again (a restart, a new
port) the watch starts over from a fresh snapshot.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from ecs import protocol
from ecs.net.heartbeat import Heartbeat
from ecs.net.pubsub import Mirror, fetch_paged_snapshot
from ecs.net.registry import AgentInfo
from ecs.protocol import Envelope

if TYPE_CHECKING:
    from agents.eca.agent import ExperimentControlAgent

SNAPSHOT_PAGE = 2000
OPERATOR_COMMANDS = ("configure", "start", "stop", "abort", "reset")


class PartitionWatch:
    """The ECA's live picture of one partition."""

    _log = Logger()

    def __init__(self, eca: ExperimentControlAgent, partition_id: str) -> None:
        self.eca = eca
        self.id = partition_id
        self.records: dict[str, dict[str, Any]] = {}
        self.progress: dict[str, Any] | None = None
        self.connected = False
        self.endpoint: str | None = None
        self.publish: str | None = None
        self.sent: dict[str, dict[str, Any]] = {}
        self.last_operator: str | None = None
        self.last_command: str | None = None
        self.losses = 0
        #: The allowed commands last sent as an C{allowed} event.
        self._allowed: list[str] | None = None
        self._subscriber: Any = None
        self._mirror: Mirror | None = None
        self._heartbeat: Heartbeat | None = None

    # -- following the PCA -------------------------------------------------

    def pca_changed(self, info: AgentInfo | None) -> None:
        """The PCA registered (maybe at a new place) or went away."""
        if info is not None and (info.endpoint, info.publish) == (self.endpoint, self.publish):
            return
        self.stop()
        if info is None or info.endpoint is None or info.publish is None:
            self.endpoint = self.publish = None
            self._set_connected(False)
            return
        self.endpoint, self.publish = info.endpoint, info.publish
        client = self.eca.node.connect(info.endpoint)
        self._mirror = Mirror(
            self.eca.reactor,
            self._snapshot,
            self._changed,
            self._reset,
            retry_delay=self.eca.settings.heartbeat_interval,
            name=f"ECA mirror of {self.id}",
        )
        self._subscriber = self.eca.node.subscribe(
            info.publish, ["state/", "log/", "progress/"], self._received
        )
        self._mirror.start()
        settings = self.eca.settings
        self._heartbeat = Heartbeat(
            self.eca.reactor,
            settings.heartbeat_interval,
            settings.heartbeat_timeout,
            lambda timeout: client.request(protocol.ENDPOINT_TARGET, "heartbeat", {}, timeout),
            self._lost,
            lambda: self._set_connected(True),
            name=f"ECA: PCA {self.id} at {info.endpoint}",
            last_heard=lambda: client.last_received,
        )
        self._heartbeat.start()

    def _snapshot(self) -> defer.Deferred[dict[str, Any]]:
        """A whole snapshot of the PCA's table, in pages."""
        from ecs.net.transport import RequestError

        if self.endpoint is None:
            return defer.fail(RequestError(protocol.TIMEOUT, f"the PCA of {self.id} is not registered"))
        client = self.eca.node.connect(self.endpoint)

        def page(after: str | None) -> defer.Deferred[dict[str, Any]]:
            body: dict[str, Any] = {"limit": SNAPSHOT_PAGE}
            if after is not None:
                body["after"] = after
            return client.request(self.id, "snapshot", body)

        return fetch_paged_snapshot(page)

    async def detectors(self) -> set[str]:
        """The detectors the PCA has now (asked, not mirrored; RequestError when it does not answer)."""
        body = await self._snapshot()
        return {
            entry["value"]["id"]
            for key, entry in body["entries"].items()
            if key.startswith("system/") and entry["value"].get("kind") == "detector"
        }

    def stop(self) -> None:
        """Stop following (the PCA moved, or the ECA stops)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._mirror is not None:
            self._mirror.stop()
            self._mirror = None
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None

    def _lost(self) -> None:
        self.losses += 1
        self._set_connected(False)
        self.eca.log_event("error", "ECA", f"PCA {self.id} does not answer", self.id)

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected and self._mirror is not None and self._mirror.synced:
            self._mirror.start()  # take a fresh snapshot: it may have missed everything
        self.eca.emit("state", {"partition": self.id, "key": "connected", "value": {"connected": connected}}, self.id)
        self._tell_allowed()
        if connected:
            self.eca.partition_seen(self)  # it may have missed a forced move

    def _received(self, envelope: Envelope) -> None:
        body = envelope.body
        if self._mirror is not None:
            # Every event counts in the publisher's numbering: the mirror
            # must see them all (it applies only state changes) or it would
            # take log lines for gaps.
            self._mirror.event_received(envelope)
        if envelope.type == "log":
            self.eca.log_event(
                str(body.get("level", "info")),
                str(body.get("source", self.id)),
                str(body.get("message", "")),
                self.id,
                body.get("time") if isinstance(body.get("time"), (int, float)) else None,
            )
        elif envelope.type == "progress":
            self.progress = body
            self.eca.emit("progress", body, self.id)

    def _reset(self) -> None:
        # A fresh snapshot replaces the table.  A new mirror (the PCA
        # registered at a new place: a restart) knows nothing of our older
        # records, so drop those the snapshot lacks (a detector moved away
        # meanwhile) or they would be shown for ever.
        entries = self._mirror.entries if self._mirror is not None else {}
        for key in [k for k in self.records if k not in entries]:
            self._changed(key, None)
        self.eca.emit("state", {"partition": self.id, "key": "reset", "value": None}, self.id)

    def _changed(self, key: str, value: dict[str, Any] | None) -> None:
        old = self.records.get(key)
        if value is None:
            if key not in self.records:
                return  # already dropped (by _reset)
            self.records.pop(key, None)
        else:
            self.records[key] = value
        self.eca.emit("state", {"partition": self.id, "key": key, "value": value}, self.id)
        if key == "partition" or _in_error(old) != _in_error(value):
            self._tell_allowed()
        if key == "partition":
            self._watch_recording(old, value)
            self.eca.partition_seen(self)
        elif key.startswith("system/") and value is not None and value.get("connected"):
            self.eca.system_seen(self, key[len("system/"):])

    def _watch_recording(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        recording = self.eca.sequence.recording
        if recording is None:
            return
        was = old is not None and old.get("state") == recording.state
        now = new is not None and new.get("state") == recording.state
        if now and not was:
            defer.Deferred.fromCoroutine(self.eca.run_started(self)).addErrback(
                lambda f: self._log.failure("run start", f))
        elif was and not now:
            defer.Deferred.fromCoroutine(self.eca.run_ended(self)).addErrback(
                lambda f: self._log.failure("run end", f))

    def _tell_allowed(self) -> None:
        """An C{allowed} event when the commands allowed now changed (the GUI's buttons)."""
        allowed = self.allowed()
        if allowed != self._allowed:
            self._allowed = allowed
            self.eca.emit("allowed", {"partition": self.id, "allowed": allowed}, self.id)

    # -- commands ------------------------------------------------------------

    def command(self, command: str, body: dict[str, Any], operator: str) -> defer.Deferred[dict[str, Any]]:
        """Send a command to the PCA (RequestError when refused or unreachable)."""
        from ecs.net.transport import RequestError

        if self.endpoint is None:
            return defer.fail(RequestError(protocol.TIMEOUT, f"the PCA of {self.id} is not registered"))
        if command in OPERATOR_COMMANDS:
            # What ends a run (stop, abort) is judged from the operators'
            # commands, not from the ECA's own status or lock requests.
            self.last_operator, self.last_command = operator, command
        client = self.eca.node.connect(self.endpoint)
        return client.request(self.id, command, body, timeout=self.eca.settings.request_timeout)

    # -- what interfaces show -----------------------------------------------

    def system_states(self) -> Counter[str]:
        """How many systems are in each state."""
        return Counter(
            v.get("state", "?") if self.connected else "Unknown"
            for k, v in self.records.items()
            if k.startswith("system/")
        )

    def summary(self) -> dict[str, Any]:
        """C{{id, state, tag, controller, connected}}."""
        record = self.records.get("partition", {})
        return {
            "id": self.id,
            "state": record.get("state") if self.connected else "Connection Problem",
            "tag": record.get("tag"),
            "controller": self.eca.holders.get(self.id),
            "connected": self.connected,
        }

    def allowed(self) -> list[str]:
        """The commands the partition's state allows now (the PCA decides in the end)."""
        record = self.records.get("partition", {})
        if not self.connected or not record:
            return []
        sequence = self.eca.sequence
        state = record.get("state")
        allowed = ["abort"]
        if any(v.get("state") == "Error" for k, v in self.records.items() if k.startswith("system/")):
            allowed.append("reset")
        if record.get("locked") or record.get("operation"):
            return allowed
        summary = sequence.summary_of(state) if state in sequence.states() else None
        if summary in ("Idle", "Active"):
            allowed.append("configure")
        if state == sequence.top_active:
            allowed.append("start")
        if sequence.recording is not None and state == sequence.recording.state:
            allowed.append("stop")
        return allowed

    def details(self) -> dict[str, Any]:
        """The summary with the systems, what is allowed, lock and progress."""
        record = self.records.get("partition", {})
        systems = []
        for key, value in sorted(self.records.items()):
            if not key.startswith("system/"):
                continue
            shown = dict(value)
            if not self.connected:
                shown["connected"] = False
            systems.append(shown)
        return {
            **self.summary(),
            "locked": bool(record.get("locked")),
            "operation": record.get("operation"),
            "allowed": self.allowed(),
            "progress": self.progress if record.get("operation") else None,
            "systems": systems,
        }


def _in_error(record: dict[str, Any] | None) -> bool:
    """Whether a system record is in Error (that allows C{reset})."""
    return record is not None and record.get("state") == "Error"
