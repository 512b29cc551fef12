# -*- test-case-name: tests.test_pca_e2e -*-
"""
The PCA's small state file: the partition's tag, the configurations it gave,
the systems that still need a configure and the excluded ones, so that after a restart the tag
is back and the state is re-derived from what the live systems report.

Writes are coalesced (a burst of changes gives one write after
L{PERSIST_DELAY}) and done off the reactor thread, one after the other, by
replacing the file atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from agents.pca.partition import Partition

PERSIST_DELAY = 0.1

#: Runs a blocking write and fires when it is done (default: the reactor's thread pool).
Writer = Callable[[Callable[[], None]], defer.Deferred[None]]


class PartitionStateFile:
    """Restores a partition from, and saves it to, one JSON file."""

    _log = Logger()

    def __init__(self, path: Path, reactor: Any, writer: Writer | None = None) -> None:
        self.path = path
        self.reactor = reactor
        self._writer = writer
        self._writes: defer.Deferred[None] = defer.succeed(None)
        self._write_soon: Any = None
        self._partition: Partition | None = None

    def restore(self, partition: Partition) -> None:
        """Put the saved tag, configurations and pending configures into C{partition} (a small, local read)."""
        self._partition = partition
        if not self.path.exists():
            return
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            tag = saved.get("tag")
            expected = {s: c for s, c in saved.get("expected", {}).items() if s in partition.systems}
            needs = [s for s in saved.get("needs", []) if s in partition.systems]
            excluded = [s for s in saved.get("excluded", []) if s in partition.systems]
        except (OSError, ValueError, AttributeError) as e:
            self._log.error("state file {path} unreadable, ignored: {error}", path=self.path, error=e)
            return
        partition.tag = tag if isinstance(tag, str) else None
        partition.expected = expected
        for system in excluded:
            partition.set_excluded(system, True)
        for system in needs:
            partition.systems[system].needs_configure = True
        partition.refresh_all()
        self._log.info("restored tag {tag} and {count} configurations", tag=partition.tag, count=len(expected))

    def save_soon(self) -> None:
        """Save the partition soon (changes in a burst: one write)."""
        if self._partition is None:
            return
        if self._write_soon is None or not self._write_soon.active():
            self._write_soon = self.reactor.callLater(PERSIST_DELAY, self._write_now)

    def close(self) -> defer.Deferred[None]:
        """Write what is pending now; fires when every write is done."""
        if self._write_soon is not None and self._write_soon.active():
            self._write_soon.cancel()
            self._write_now()
        return self._writes

    def _write_now(self) -> None:
        """Write the file off the reactor thread, after earlier writes."""
        self._write_soon = None
        partition = self._partition
        assert partition is not None
        data = json.dumps(
            {
                "tag": partition.tag,
                "expected": partition.expected,
                "needs": sorted(v.id for v in partition.systems.values() if v.needs_configure),
                "excluded": partition.excluded(),
            },
            sort_keys=True,
        )
        path = self.path

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(data, encoding="utf-8")
            os.replace(temporary, path)

        def after(_: object) -> defer.Deferred[None]:
            if self._writer is not None:
                return self._writer(write)
            from twisted.internet.threads import deferToThreadPool

            return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), write)

        def failed(failure: Any) -> None:
            self._log.error("state file {path} not written: {error}", path=path, error=failure.value)

        self._writes = self._writes.addCallback(after).addErrback(failed)
